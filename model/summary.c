/* summary.c — what a checkpoint holds, from its headers (see summary.h). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "model/summary.h"



/* Problems that fail the check: everything for a checkpoint, all but
 * "missing" for one file of it. */
size_t wp_ckpt_summary_problems(const wp_ckpt_summary *s)
{
    const wp_inv_report *r = &s->inv;
    return wp_inv_problems(r) - (s->partial ? r->n_missing : 0);
}

int wp_ckpt_summary_shows(const wp_ckpt_summary *s, const wp_inv_issue *x)
{
    return !(s->partial && x->kind == WP_INV_MISSING);
}

static int is_dir(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

static void gather(wp_ckpt_summary *s, const wp_ckpt *k)
{
    s->tensors = wp_ckpt_count(k);
    s->shards = wp_ckpt_file_count(k);
    s->max_layer = -1;
    for (size_t i = 0; i < s->shards; i++) s->file_bytes += wp_st_file_size(wp_ckpt_file(k, i));
    for (size_t i = 0; i < s->tensors; i++) {
        const wp_tensor_info *t = wp_ckpt_tensor(k, i);
        s->bytes += t->nbytes;
        s->dtype[t->dtype].n++;
        s->dtype[t->dtype].bytes += t->nbytes;
        wp_family f = wp_family_of(t->name);
        s->fam[f].n++;
        s->fam[f].bytes += t->nbytes;
        int l = wp_layer_of(t->name), m = wp_mtp_of(t->name);
        if (l > s->max_layer) s->max_layer = l;
        if (m >= s->mtp_blocks) s->mtp_blocks = m + 1;
        int cp = wp_mtp_copy_kind(t->name);
        s->embed_copy |= cp == 1;
        s->head_copy |= cp == 2;
    }
}

/* Load config.json from the checkpoint's directory.  Returns 0 (with or
 * without a config: see have_config) or an error code with e set. */
static int load_config(wp_ckpt_summary *s, const char *path, const wp_ckpt *k, wp_err *e)
{
    int rc = wp_path_join(s->config_path, sizeof s->config_path, wp_ckpt_dir(k), "config.json");
    if (rc) return wp_fail(e, WP_EUSAGE, "%s: path too long", path);
    if (access(s->config_path, F_OK) != 0) {
        if (errno != ENOENT) return wp_fail_errno(e, "%s", s->config_path);
        if (is_dir(path))
            return wp_fail(e, WP_EINVAL, "%s: missing (a checkpoint directory needs it)",
                           s->config_path);
        s->no_config_reason = "no config.json next to the file";
        return 0;
    }
    if ((rc = wp_config_load(&s->cfg, s->config_path, e))) return rc;
    s->have_config = 1;
    for (int l = 0; l < s->cfg.n_layers; l++) {
        int r = wp_config_ratio(&s->cfg, l);
        if (r == 0) s->sw++;
        else if (r == 4) s->csa++;
        else s->hca++;
    }
    /* a whole checkpoint bounds what its config may imply (docs/config.md) */
    if (!s->partial && (rc = wp_config_check_ckpt(&s->cfg, wp_ckpt_count(k), s->config_path, e)))
        return rc;
    return wp_inventory_check(&s->cfg, k, &s->inv, e);
}


static cJSON *tally_json(const wp_tally *t)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "tensors", (double)t->n);
    cJSON_AddNumberToObject(o, "bytes", (double)t->bytes);
    return o;
}

cJSON *wp_ckpt_summary_json(const wp_ckpt_summary *s)
{
    cJSON *o = cJSON_CreateObject(), *d, *f, *l, *m, *inv;
    cJSON_AddStringToObject(o, "path", s->path);
    cJSON_AddNumberToObject(o, "tensors", (double)s->tensors);
    cJSON_AddNumberToObject(o, "bytes", (double)s->bytes);
    cJSON_AddNumberToObject(o, "file_bytes", (double)s->file_bytes);
    cJSON_AddNumberToObject(o, "shards", (double)s->shards);
    d = cJSON_AddObjectToObject(o, "dtypes");
    for (int i = 0; i < WP_DTYPE_COUNT; i++)
        if (s->dtype[i].n) cJSON_AddItemToObject(d, wp_dtype_name((wp_dtype)i), tally_json(&s->dtype[i]));
    f = cJSON_AddObjectToObject(o, "families");
    for (int i = 0; i < WP_FAM_COUNT; i++)
        if (s->fam[i].n) cJSON_AddItemToObject(f, wp_family_name((wp_family)i), tally_json(&s->fam[i]));
    if (s->have_config) cJSON_AddStringToObject(o, "config", s->config_path);
    else cJSON_AddNullToObject(o, "config");
    l = cJSON_AddObjectToObject(o, "layers");
    if (s->have_config) {
        cJSON_AddNumberToObject(l, "main", s->cfg.n_layers);
        cJSON_AddNumberToObject(l, "hash", s->cfg.n_hash_layers);
        cJSON_AddNumberToObject(l, "csa", s->csa);
        cJSON_AddNumberToObject(l, "hca", s->hca);
        cJSON_AddNumberToObject(l, "sliding_window", s->sw);
        cJSON_AddNumberToObject(l, "mtp", s->cfg.n_mtp_layers);
        cJSON *r = cJSON_CreateIntArray(s->cfg.compress_ratios, s->cfg.n_compress_ratios);
        cJSON_AddItemToObject(l, "compress_ratios", r);
    } else {
        cJSON_AddNumberToObject(l, "main", s->max_layer + 1);   /* from names alone */
    }
    m = cJSON_AddObjectToObject(o, "mtp");
    cJSON_AddBoolToObject(m, "present", s->mtp_blocks > 0);
    cJSON_AddNumberToObject(m, "blocks", s->mtp_blocks);
    cJSON_AddBoolToObject(m, "embed_copy", s->embed_copy);
    cJSON_AddBoolToObject(m, "head_copy", s->head_copy);
    inv = cJSON_AddObjectToObject(o, "inventory");
    cJSON_AddBoolToObject(inv, "checked", s->have_config);
    if (!s->have_config) {
        cJSON_AddStringToObject(inv, "reason", s->no_config_reason);
    } else {
        const wp_inv_report *r = &s->inv;
        cJSON_AddStringToObject(inv, "scope", s->partial ? "file" : "checkpoint");
        cJSON_AddBoolToObject(inv, "ok", wp_ckpt_summary_problems(s) == 0);
        cJSON_AddNumberToObject(inv, "expected", (double)r->n_expected);
        cJSON_AddNumberToObject(inv, "found", (double)r->n_found);
        cJSON_AddNumberToObject(inv, "optional_present", (double)r->n_optional_present);
        cJSON_AddNumberToObject(inv, s->partial ? "not_in_file" : "missing", (double)r->n_missing);
        cJSON_AddNumberToObject(inv, "unexpected", (double)r->n_unexpected);
        cJSON_AddNumberToObject(inv, "mis_shaped", (double)r->n_mis_shaped);
        cJSON_AddNumberToObject(inv, "mis_typed", (double)r->n_mis_typed);
        cJSON *ex = cJSON_AddObjectToObject(inv, "experts");
        cJSON_AddStringToObject(ex, "dtype", r->experts.fp8 ? "fp8" : "fp4");
        cJSON_AddStringToObject(ex, "scale_dtype", wp_dtype_name(r->experts.scale));
        cJSON_AddStringToObject(ex, "from", r->experts.from_checkpoint ? "checkpoint" : "config");
        cJSON *a = cJSON_AddArrayToObject(inv, "issues");
        for (size_t i = 0; i < r->n_issues; i++) {
            if (!wp_ckpt_summary_shows(s, &r->issues[i])) continue;
            cJSON *x = cJSON_CreateObject();
            cJSON_AddStringToObject(x, "kind", wp_inv_kind_name(r->issues[i].kind));
            cJSON_AddStringToObject(x, "name", r->issues[i].name);
            cJSON_AddStringToObject(x, "detail", r->issues[i].detail);
            cJSON_AddItemToArray(a, x);
        }
        cJSON_AddBoolToObject(inv, "issues_truncated", (size_t)cJSON_GetArraySize(a) < wp_ckpt_summary_problems(s));
    }
    return o;
}

int wp_ckpt_summarise(const char *path, wp_ckpt_summary **out, wp_err *e)
{
    *out = NULL;
    wp_ckpt_summary *s = calloc(1, sizeof *s);
    if (!s) return wp_oom(e, "%s: checkpoint summary", path);
    s->path = path;
    s->partial = !is_dir(path);
    wp_ckpt *k = NULL;
    int rc = wp_ckpt_open(&k, path, e);
    if (!rc) rc = load_config(s, path, k, e);
    if (!rc) gather(s, k);
    wp_ckpt_close(k);
    if (rc) {
        wp_ckpt_summary_free(s);
        return rc;
    }
    *out = s;
    return 0;
}

void wp_ckpt_summary_free(wp_ckpt_summary *s)
{
    if (!s) return;
    wp_inv_report_free(&s->inv);
    free(s);
}
