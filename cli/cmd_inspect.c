/*
 * cmd_inspect.c — `wpack inspect PATH [--json]`: what a checkpoint holds and
 * whether it is the checkpoint its config.json describes.
 *
 * Headers only: the strict reader validates every header and the index on
 * open; no tensor byte is read.  Exit 0 ok, 1 inventory problems, 2
 * unreadable (the reader's or the config parser's one-line message).
 */
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli/cli.h"
#include "model/model.h"

#define CMD "inspect"
#define HUMAN_ISSUES 20   /* issues listed in human output; --json lists up to WP_INV_MAX_ISSUES */

typedef struct { uint64_t n, bytes; } tally;

typedef struct summary {
    const char *path;
    size_t tensors, shards;
    uint64_t bytes, file_bytes;
    tally dtype[WP_DTYPE_COUNT];
    tally fam[WP_FAM_COUNT];
    int max_layer;                 /* highest layers.L seen, -1 if none */
    int mtp_blocks;                /* distinct mtp.K seen (max K + 1) */
    int embed_copy, head_copy;     /* MTP copies of the shared embed/head */
    int have_config;
    int partial;                   /* PATH is one file: a part of the model, missing is no problem */
    char config_path[4096];
    const char *no_config_reason;
    wp_config cfg;
    int sw, csa, hca;              /* main layers by compress ratio */
    wp_inv_report inv;
} summary;

/* Problems that fail the check: everything for a checkpoint, all but
 * "missing" for one file of it. */
static size_t problems(const summary *s)
{
    const wp_inv_report *r = &s->inv;
    return wp_inv_problems(r) - (s->partial ? r->n_missing : 0);
}

static int shown(const summary *s, const wp_inv_issue *x)
{
    return !(s->partial && x->kind == WP_INV_MISSING);
}

static int is_dir(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

static void gather(summary *s, const wp_ckpt *k)
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
static int load_config(summary *s, const char *path, const wp_ckpt *k, wp_err *e)
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
    return wp_inventory_check(&s->cfg, k, &s->inv, e);
}

/* ---- output -------------------------------------------------------------------- */

static cJSON *tally_json(const tally *t)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "tensors", (double)t->n);
    cJSON_AddNumberToObject(o, "bytes", (double)t->bytes);
    return o;
}

static void print_json(const summary *s)
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
        cJSON_AddBoolToObject(inv, "ok", problems(s) == 0);
        cJSON_AddNumberToObject(inv, "expected", (double)r->n_expected);
        cJSON_AddNumberToObject(inv, "found", (double)r->n_found);
        cJSON_AddNumberToObject(inv, "optional_present", (double)r->n_optional_present);
        cJSON_AddNumberToObject(inv, s->partial ? "not_in_file" : "missing", (double)r->n_missing);
        cJSON_AddNumberToObject(inv, "unexpected", (double)r->n_unexpected);
        cJSON_AddNumberToObject(inv, "mis_shaped", (double)r->n_mis_shaped);
        cJSON_AddNumberToObject(inv, "mis_typed", (double)r->n_mis_typed);
        cJSON *a = cJSON_AddArrayToObject(inv, "issues");
        for (size_t i = 0; i < r->n_issues; i++) {
            if (!shown(s, &r->issues[i])) continue;
            cJSON *x = cJSON_CreateObject();
            cJSON_AddStringToObject(x, "kind", wp_inv_kind_name(r->issues[i].kind));
            cJSON_AddStringToObject(x, "name", r->issues[i].name);
            cJSON_AddStringToObject(x, "detail", r->issues[i].detail);
            cJSON_AddItemToArray(a, x);
        }
        cJSON_AddBoolToObject(inv, "issues_truncated", (size_t)cJSON_GetArraySize(a) < problems(s));
    }
    cli_print_json(o);
}

static void print_human(const summary *s)
{
    char b1[32], b2[32];
    printf("%s: %zu tensors, %s (%llu bytes of tensor data) in %zu shard%s, %s on disk\n",
           s->path, s->tensors, cli_bytes(s->bytes, b1, sizeof b1),
           (unsigned long long)s->bytes, s->shards, s->shards == 1 ? "" : "s",
           cli_bytes(s->file_bytes, b2, sizeof b2));
    printf("dtypes:\n");
    for (int i = 0; i < WP_DTYPE_COUNT; i++)
        if (s->dtype[i].n)
            printf("  %-10s %8llu tensors  %12s\n", wp_dtype_name((wp_dtype)i),
                   (unsigned long long)s->dtype[i].n, cli_bytes(s->dtype[i].bytes, b1, sizeof b1));
    printf("families:\n");
    for (int i = 0; i < WP_FAM_COUNT; i++)
        if (s->fam[i].n)
            printf("  %-15s %8llu tensors  %12s\n", wp_family_name((wp_family)i),
                   (unsigned long long)s->fam[i].n, cli_bytes(s->fam[i].bytes, b1, sizeof b1));
    if (s->have_config)
        printf("layers: %d main: %d hash-routed; %d CSA, %d HCA, %d sliding-window; %d MTP\n",
               s->cfg.n_layers, s->cfg.n_hash_layers, s->csa, s->hca, s->sw,
               s->cfg.n_mtp_layers);
    else
        printf("layers: %d main (from tensor names; no config)\n", s->max_layer + 1);
    if (s->mtp_blocks)
        printf("MTP: present (%d block%s), %s\n", s->mtp_blocks, s->mtp_blocks == 1 ? "" : "s",
               s->embed_copy && s->head_copy ? "with embed and head copies"
               : s->embed_copy               ? "with an embed copy, no head copy"
               : s->head_copy                ? "with a head copy, no embed copy"
                                             : "without embed/head copies");
    else
        printf("MTP: absent\n");
    if (!s->have_config) {
        printf("inventory: not checked (%s)\n", s->no_config_reason);
        return;
    }
    const wp_inv_report *r = &s->inv;
    size_t np = problems(s);
    const char *scope = s->partial ? "one file: " : "";
    if (!np) {
        printf("inventory: ok (%s%zu expected, %zu found", scope, r->n_expected, r->n_found);
        if (s->partial) printf(", %zu in other files", r->n_missing);
        if (r->n_optional_present) printf(", %zu optional", r->n_optional_present);
        printf(")\n");
        return;
    }
    printf("inventory: %zu problem%s (%s", np, np == 1 ? "" : "s", scope);
    if (!s->partial) printf("%zu missing, ", r->n_missing);
    printf("%zu unexpected, %zu mis-shaped, %zu mis-typed; %zu expected, %zu found)\n",
           r->n_unexpected, r->n_mis_shaped, r->n_mis_typed, r->n_expected, r->n_found);
    size_t k = 0;
    for (size_t i = 0; i < r->n_issues && k < HUMAN_ISSUES; i++) {
        if (!shown(s, &r->issues[i])) continue;
        printf("  %-10s %s: %s\n", wp_inv_kind_name(r->issues[i].kind), r->issues[i].name,
               r->issues[i].detail);
        k++;
    }
    if (np > k)
        printf("  ... and %zu more (--json lists up to %d of each kind)\n", np - k,
               WP_INV_MAX_ISSUES);
}

static int fail(int json, const wp_err *e)
{
    (void)json;
    cli_error(CMD, e);
    if (cli_cur) cli_cur->err_code = WP_EXIT_BAD;
    return WP_EXIT_BAD;   /* unreadable, whatever the code */
}

typedef struct inspect_args {
    const char *path;
} inspect_args;

static const cli_operand inspect_operands[] = {
    {.name = "PATH", .off = offsetof(inspect_args, path), .required = 1, .complete = "file",
     .help = "a checkpoint directory (model.safetensors.index.json + shards, or a single\n"
             "model.safetensors; config.json required) or one .safetensors file"},
    {0},
};

static int inspect_run(cli_ctx *c, void *va)
{
    const char *path = ((inspect_args *)va)->path;
    int json = c->json;

    summary *s = calloc(1, sizeof *s);
    if (!s) return cli_fail(CMD, WP_EXIT_BAD, "out of memory");
    s->path = path;
    s->partial = !is_dir(path);
    wp_err e = {0};
    wp_ckpt *k = NULL;
    int rc;
    if (wp_ckpt_open(&k, path, &e) || load_config(s, path, k, &e)) {
        rc = fail(json, &e);
    } else {
        gather(s, k);
        if (json) print_json(s);
        else print_human(s);
        rc = s->have_config && problems(s) ? WP_EXIT_FAIL : WP_EXIT_OK;
    }
    wp_inv_report_free(&s->inv);
    wp_ckpt_close(k);
    free(s);
    return rc;
}

const cli_command cli_cmd_inspect = {
    .name = "inspect",
    .summary = "summarise a checkpoint and check its inventory against config.json",
    .about = "Summarise a DeepSeek-V4 checkpoint from its headers alone (no tensor data is\n"
             "read): tensor count and bytes, shards, dtype histogram, tensor families,\n"
             "layer kinds, and the check of its tensors against the inventory config.json\n"
             "implies (spec §2.4).\n"
             "\n"
             "For a single .safetensors file with a config.json beside it, its tensors are\n"
             "checked (unexpected, mis-shaped, mis-typed; tensors it lacks may live in other\n"
             "shards); without one the summary has no check.",
    .operands = inspect_operands,
    .exit1 = "the tensors differ from the inventory config.json implies",
    .args_size = sizeof(inspect_args),
    .run = inspect_run,
};
