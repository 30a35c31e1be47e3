/*
 * checkpoint.c — a checkpoint as one set of tensors over its shards (spec
 * §2.1): a directory with model.safetensors.index.json and the shards it
 * names (or the index file itself), a directory with a single
 * model.safetensors, or one .safetensors file.  The index is cross-checked against the shard headers both ways, so a
 * tensor is never silently dropped nor read from the wrong shard.
 */
#include "hf/internal.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <libgen.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define INDEX_NAME "model.safetensors.index.json"
#define SINGLE_NAME "model.safetensors"
/* The V4-Pro index lists ~130k tensors in a few MB; 256 MB is far above any
 * real index and still refuses a runaway file. */
#define INDEX_MAX (256u << 20)

struct wp_ckpt {
    char *dir;
    wp_st_file **files;
    size_t nfiles;
    const wp_tensor_info **t;   /* all tensors, sorted by name */
    size_t n;
};

const char *wp_ckpt_dir(const wp_ckpt *c) { return c->dir; }
size_t wp_ckpt_file_count(const wp_ckpt *c) { return c->nfiles; }
wp_st_file *wp_ckpt_file(const wp_ckpt *c, size_t i) { return i < c->nfiles ? c->files[i] : NULL; }
size_t wp_ckpt_count(const wp_ckpt *c) { return c->n; }

const wp_tensor_info *wp_ckpt_tensor(const wp_ckpt *c, size_t i)
{
    return i < c->n ? c->t[i] : NULL;
}

const wp_tensor_info *wp_ckpt_find(const wp_ckpt *c, const char *name)
{
    size_t lo = 0, hi = c->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int r = strcmp(c->t[mid]->name, name);
        if (r == 0) return c->t[mid];
        if (r < 0) lo = mid + 1;
        else hi = mid;
    }
    return NULL;
}

static wp_st_file *file_of(const wp_ckpt *c, const wp_tensor_info *t, wp_err *e)
{
    if (t->file < 0 || (size_t)t->file >= c->nfiles) {
        wp_fail(e, WP_EUSAGE, "%s: tensor %s does not belong to this checkpoint", c->dir, t->name);
        return NULL;
    }
    return c->files[t->file];
}

int wp_ckpt_read(const wp_ckpt *c, const wp_tensor_info *t, uint64_t off, void *buf, size_t n,
                 wp_err *e)
{
    wp_st_file *f = file_of(c, t, e);
    return f ? wp_st_read(f, t, off, buf, n, e) : WP_EUSAGE;
}

const void *wp_ckpt_data(wp_ckpt *c, const wp_tensor_info *t, wp_err *e)
{
    wp_st_file *f = file_of(c, t, e);
    return f ? wp_st_data(f, t, e) : NULL;
}

void wp_ckpt_close(wp_ckpt *c)
{
    if (!c) return;
    for (size_t i = 0; i < c->nfiles; i++) wp_st_close(c->files[i]);
    free(c->files);
    free(c->t);
    free(c->dir);
    free(c);
}

static int cmp_tptr(const void *a, const void *b)
{
    return strcmp((*(const wp_tensor_info *const *)a)->name,
                  (*(const wp_tensor_info *const *)b)->name);
}

static int cmp_cstr(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Gather every shard's tensors into one name-sorted table; a name in two
 * shards is an error (which copy would a reader get?). */
static int build_table(wp_ckpt *c, wp_err *e)
{
    size_t n = 0;
    for (size_t i = 0; i < c->nfiles; i++) n += wp_st_count(c->files[i]);
    c->t = wp_malloc(n * sizeof *c->t, e);
    if (!c->t) return WP_ENOMEM;
    for (size_t i = 0; i < c->nfiles; i++)
        for (size_t k = 0; k < wp_st_count(c->files[i]); k++) c->t[c->n++] = wp_st_tensor(c->files[i], k);
    qsort(c->t, c->n, sizeof *c->t, cmp_tptr);
    for (size_t i = 1; i < c->n; i++)
        if (strcmp(c->t[i - 1]->name, c->t[i]->name) == 0)
            return wp_fail(e, WP_EINVAL, "%s: %s: tensor is in two shards (%s and %s)", c->dir,
                           c->t[i]->name, wp_st_path(c->files[c->t[i - 1]->file]),
                           wp_st_path(c->files[c->t[i]->file]));
    return 0;
}

/* Shard paths come from the index: they must stay inside the checkpoint
 * directory (no absolute path, no ".." component). */
static int shard_name_ok(const char *s)
{
    if (!*s || *s == '/') return 0;
    for (const char *p = s; *p;) {
        const char *q = strchr(p, '/');
        size_t l = q ? (size_t)(q - p) : strlen(p);
        if (l == 2 && p[0] == '.' && p[1] == '.') return 0;
        p += l;
        if (*p) p++;
    }
    return 1;
}

typedef struct { const char *name; const char *shard; } wm_entry;

static int cmp_wm(const void *a, const void *b)
{
    return strcmp(((const wm_entry *)a)->name, ((const wm_entry *)b)->name);
}

static int open_indexed(wp_ckpt *c, const char *ipath, wp_err *e)
{
    char *text = NULL;
    size_t len = 0;
    int rc = wp_read_small_file(ipath, INDEX_MAX, &text, &len, e);
    if (rc) return rc;
    cJSON *root = cJSON_ParseWithLength(text, len);
    wm_entry *wm = NULL;
    const char **shards = NULL;
    size_t nwm = 0, nsh = 0;
    if (!root) {
        rc = wp_fail(e, WP_EINVAL, "%s: not valid JSON", ipath);
        goto out;
    }
    const cJSON *map = cJSON_GetObjectItemCaseSensitive(root, "weight_map");
    if (!cJSON_IsObject(root) || !cJSON_IsObject(map)) {
        rc = wp_fail(e, WP_EINVAL, "%s: weight_map: missing or not a JSON object", ipath);
        goto out;
    }
    for (const cJSON *k = map->child; k; k = k->next) nwm++;
    wm = wp_malloc(nwm * sizeof *wm, e);
    shards = wp_malloc(nwm * sizeof *shards, e);
    if (!wm || !shards) {
        rc = WP_ENOMEM;
        goto out;
    }
    nwm = 0;
    for (const cJSON *k = map->child; k; k = k->next) {
        if (!cJSON_IsString(k)) {
            rc = wp_fail(e, WP_EINVAL, "%s: weight_map: %s: shard is not a string", ipath, k->string);
            goto out;
        }
        if (!shard_name_ok(k->valuestring)) {
            rc = wp_fail(e, WP_EINVAL, "%s: weight_map: %s: shard path \"%s\" escapes the "
                         "checkpoint directory (absolute or \"..\")", ipath, k->string,
                         k->valuestring);
            goto out;
        }
        wm[nwm].name = k->string;
        wm[nwm].shard = k->valuestring;
        shards[nwm] = k->valuestring;
        nwm++;
    }
    qsort(wm, nwm, sizeof *wm, cmp_wm);
    for (size_t i = 1; i < nwm; i++)
        if (strcmp(wm[i - 1].name, wm[i].name) == 0) {
            rc = wp_fail(e, WP_EINVAL, "%s: weight_map: %s: listed twice", ipath, wm[i].name);
            goto out;
        }
    /* the distinct shards, sorted: model-00001-... is file 0 */
    qsort(shards, nwm, sizeof *shards, cmp_cstr);
    for (size_t i = 0; i < nwm; i++)
        if (!nsh || strcmp(shards[nsh - 1], shards[i]) != 0) shards[nsh++] = shards[i];
    if (!(c->files = wp_calloc(nsh, sizeof *c->files, e))) {
        rc = WP_ENOMEM;
        goto out;
    }
    for (size_t s = 0; s < nsh; s++) {
        char p[PATH_MAX];
        if (wp_path_join(p, sizeof p, c->dir, shards[s])) {
            rc = wp_fail(e, WP_EINVAL, "%s: shard path %s is too long", ipath, shards[s]);
            goto out;
        }
        struct stat st;
        if (stat(p, &st) != 0 && errno == ENOENT) {
            rc = wp_fail(e, WP_EINVAL, "%s: shard %s named in the index does not exist", ipath,
                         shards[s]);
            goto out;
        }
        if ((rc = wp_st_open(&c->files[s], p, e))) goto out;
        c->nfiles++;
        wp_st__set_file_index(c->files[s], (int)s);
        /* every shard tensor must be listed for this shard */
        for (size_t k = 0; k < wp_st_count(c->files[s]); k++) {
            const wp_tensor_info *t = wp_st_tensor(c->files[s], k);
            wm_entry key = {t->name, NULL};
            const wm_entry *w = bsearch(&key, wm, nwm, sizeof *wm, cmp_wm);
            if (!w) {
                rc = wp_fail(e, WP_EINVAL, "%s: %s: tensor is not listed in %s", p, t->name,
                             INDEX_NAME);
                goto out;
            }
            if (strcmp(w->shard, shards[s]) != 0) {
                rc = wp_fail(e, WP_EINVAL, "%s: %s: tensor is listed in %s for shard %s", p,
                             t->name, INDEX_NAME, w->shard);
                goto out;
            }
        }
    }
    /* every listed tensor must be in its shard */
    for (size_t i = 0; i < nwm; i++) {
        const char **s = bsearch(&wm[i].shard, shards, nsh, sizeof *shards, cmp_cstr);
        if (!wp_st_find(c->files[s - shards], wm[i].name)) {
            rc = wp_fail(e, WP_EINVAL, "%s: weight_map: %s: tensor is not in shard %s", ipath,
                         wm[i].name, wm[i].shard);
            goto out;
        }
    }
    rc = build_table(c, e);
out:
    free(shards);
    free(wm);
    cJSON_Delete(root);
    free(text);
    return rc;
}

static int open_single(wp_ckpt *c, const char *path, wp_err *e)
{
    if (!(c->files = wp_calloc(1, sizeof *c->files, e))) return WP_ENOMEM;
    int rc = wp_st_open(&c->files[0], path, e);
    if (rc) return rc;
    c->nfiles = 1;
    wp_st__set_file_index(c->files[0], 0);
    return build_table(c, e);
}

int wp_ckpt_open(wp_ckpt **out, const char *path, wp_err *e)
{
    *out = NULL;
    struct stat st;
    if (stat(path, &st) != 0) return wp_fail_errno(e, "%s: cannot open", path);
    wp_ckpt *c = wp_calloc(1, sizeof *c, e);
    if (!c) return WP_ENOMEM;
    int rc;
    char p[PATH_MAX];
    if (S_ISDIR(st.st_mode)) {
        if (!(c->dir = wp_strdup(path, e))) {
            rc = WP_ENOMEM;
            goto fail;
        }
        if (wp_path_join(p, sizeof p, path, INDEX_NAME)) {
            rc = wp_fail(e, WP_EINVAL, "%s: path too long", path);
            goto fail;
        }
        if (stat(p, &st) == 0) {
            rc = open_indexed(c, p, e);
        } else {
            wp_path_join(p, sizeof p, path, SINGLE_NAME);   /* shorter than INDEX_NAME */
            if (stat(p, &st) != 0) {
                rc = wp_fail(e, WP_EINVAL, "%s: no %s or %s in this directory", path, INDEX_NAME,
                             SINGLE_NAME);
                goto fail;
            }
            rc = open_single(c, p, e);
        }
    } else {
        size_t pl = strlen(path), il = strlen(INDEX_NAME);
        /* the index file itself names a sharded checkpoint */
        int is_index = pl >= il && strcmp(path + pl - il, INDEX_NAME) == 0 &&
                       (pl == il || path[pl - il - 1] == '/');
        if (snprintf(p, sizeof p, "%s", path) >= (int)sizeof p) {
            rc = wp_fail(e, WP_EINVAL, "%s: path too long", path);
            goto fail;
        }
        if (!(c->dir = wp_strdup(dirname(p), e))) {
            rc = WP_ENOMEM;
            goto fail;
        }
        rc = is_index ? open_indexed(c, path, e) : open_single(c, path, e);
    }
    if (rc) goto fail;
    *out = c;
    return 0;
fail:
    wp_ckpt_close(c);
    return rc;
}
