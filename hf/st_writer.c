/*
 * st_writer.c — the safetensors writer and the sharded-index writer (see
 * safetensors.h).  Output is deterministic and always passes the strict
 * reader: the writer refuses anything the reader would refuse.
 */
#include "hf/internal.h"

#include <cjson/cJSON.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

typedef struct { char *name; wp_dtype dtype; int ndim; uint64_t shape[WP_MAX_DIMS];
                 uint64_t begin, end; } decl;

struct wp_st_writer {
    wp_out out;
    int opened;
    decl *t;
    size_t n, cap;
    char **meta;          /* key, value, ... */
    size_t nmeta, mcap;
    uint64_t total;       /* declared data bytes */
    uint64_t written;     /* data bytes written so far */
    int header_done;
};

static int writer_new(wp_st_writer **out, const char *path, int create, int force, wp_err *e)
{
    *out = NULL;
    wp_st_writer *w = wp_calloc(1, sizeof *w, e);
    if (!w) return WP_ENOMEM;
    int rc = create ? wp_out_create(&w->out, path, force, e) : wp_out_open(&w->out, path, e);
    if (rc) {
        free(w);
        return rc;
    }
    w->opened = 1;
    /* header, then every tensor's bytes in order: written around the page
     * cache (wp_out_direct; an export is large and not read back here) */
    wp_out_direct(&w->out);
    *out = w;
    return 0;
}

int wp_st_writer_open(wp_st_writer **out, const char *path, wp_err *e)
{
    return writer_new(out, path, 0, 0, e);
}

int wp_st_writer_create(wp_st_writer **out, const char *path, int force, wp_err *e)
{
    return writer_new(out, path, 1, force, e);
}

void wp_st_writer_abort(wp_st_writer *w)
{
    if (!w) return;
    if (w->opened) wp_out_abort(&w->out);
    for (size_t i = 0; i < w->n; i++) free(w->t[i].name);
    for (size_t i = 0; i < 2 * w->nmeta; i++) free(w->meta[i]);
    free(w->t);
    free(w->meta);
    free(w);
}

uint64_t wp_st_writer_data_size(const wp_st_writer *w) { return w->total; }

static int utf8_ok(const char *s)
{
    size_t l = strlen(s);
    return wp_st__utf8_check((const uint8_t *)s, l) == l;
}

int wp_st_writer_meta(wp_st_writer *w, const char *key, const char *val, wp_err *e)
{
    const char *p = w->out.path;
    if (w->header_done)
        return wp_fail(e, WP_EUSAGE, "%s: __metadata__: %s: added after data was written", p, key);
    if (!utf8_ok(key) || !utf8_ok(val))
        return wp_fail(e, WP_EUSAGE, "%s: __metadata__: %s: key or value is not UTF-8", p, key);
    for (size_t i = 0; i < w->nmeta; i++)
        if (strcmp(w->meta[2 * i], key) == 0)
            return wp_fail(e, WP_EUSAGE, "%s: __metadata__: duplicate key \"%s\"", p, key);
    if (w->nmeta == w->mcap) {
        size_t nc = w->mcap ? 2 * w->mcap : 8;
        char **m = realloc(w->meta, 2 * nc * sizeof *m);
        if (!m) return wp_oom(e, "safetensors writer");
        w->meta = m;
        w->mcap = nc;
    }
    char *k = wp_strdup(key, e), *v = k ? wp_strdup(val, e) : NULL;
    if (!v) {
        free(k);
        return WP_ENOMEM;
    }
    w->meta[2 * w->nmeta] = k;
    w->meta[2 * w->nmeta + 1] = v;
    w->nmeta++;
    return 0;
}

int wp_st_writer_add(wp_st_writer *w, const char *name, wp_dtype dtype, int ndim,
                     const uint64_t *shape, wp_err *e)
{
    const char *p = w->out.path;
    if (w->header_done)
        return wp_fail(e, WP_EUSAGE, "%s: %s: declared after data was written", p, name);
    if (!*name || strcmp(name, "__metadata__") == 0 || !utf8_ok(name))
        return wp_fail(e, WP_EUSAGE, "%s: \"%s\": not a valid tensor name", p, name);
    if ((unsigned)dtype >= WP_DTYPE_COUNT || ndim < 0 || ndim > WP_MAX_DIMS)
        return wp_fail(e, WP_EUSAGE, "%s: %s: bad dtype or %d dimensions", p, name, ndim);
    uint64_t nb, end;
    if (wp_dtype_nbytes(dtype, shape, ndim, &nb))
        return wp_fail(e, WP_EUSAGE, "%s: %s: shape does not give a whole number of %s bytes", p,
                       name, wp_dtype_name(dtype));
    if (wp_add_u64(w->total, nb, &end) || (double)end > WP_ST_MAX_INT)
        return wp_fail(e, WP_EUSAGE, "%s: %s: data buffer would exceed 2^53 bytes", p, name);
    /* duplicate names are caught when the header is emitted (sorted pass) */
    if (w->n == w->cap) {
        size_t nc = w->cap ? 2 * w->cap : 64;
        decl *t = realloc(w->t, nc * sizeof *t);
        if (!t) return wp_oom(e, "safetensors writer");
        w->t = t;
        w->cap = nc;
    }
    decl *d = &w->t[w->n];
    memset(d, 0, sizeof *d);
    if (!(d->name = wp_strdup(name, e))) return WP_ENOMEM;
    d->dtype = dtype;
    d->ndim = ndim;
    if (ndim) memcpy(d->shape, shape, (size_t)ndim * sizeof *shape);
    d->begin = w->total;
    d->end = end;
    w->total = end;
    w->n++;
    return 0;
}

static int cmp_decl_ptr(const void *a, const void *b)
{
    return strcmp((*(decl *const *)a)->name, (*(decl *const *)b)->name);
}

static int cmp_meta_idx(const void *a, const void *b, void *ctx)
{
    char **m = ctx;
    return strcmp(m[2 * *(const size_t *)a], m[2 * *(const size_t *)b]);
}

/* A plain decimal integer: cJSON prints large doubles as "1e+15", which the
 * strict reader (and the Rust one) refuse. */
static cJSON *raw_u64(uint64_t v)
{
    char b[24];
    snprintf(b, sizeof b, "%" PRIu64, v);
    return cJSON_CreateRaw(b);
}

static int emit_header(wp_st_writer *w, wp_err *e)
{
    const char *p = w->out.path;
    int rc = 0;
    cJSON *root = cJSON_CreateObject();
    decl **sorted = wp_malloc(w->n * sizeof *sorted, e);
    size_t *mi = wp_malloc(w->nmeta * sizeof *mi, e);
    char *json = NULL, *buf = NULL;
    if (!root || !sorted || !mi) {
        rc = wp_oom(e, "safetensors writer");
        goto out;
    }
    if (w->nmeta) {
        cJSON *m = cJSON_AddObjectToObject(root, "__metadata__");
        for (size_t i = 0; i < w->nmeta; i++) mi[i] = i;
        qsort_r(mi, w->nmeta, sizeof *mi, cmp_meta_idx, w->meta);
        for (size_t i = 0; m && i < w->nmeta; i++)
            if (!cJSON_AddStringToObject(m, w->meta[2 * mi[i]], w->meta[2 * mi[i] + 1])) m = NULL;
        if (!m) {
            rc = wp_oom(e, "safetensors writer");
            goto out;
        }
    }
    for (size_t i = 0; i < w->n; i++) sorted[i] = &w->t[i];
    qsort(sorted, w->n, sizeof *sorted, cmp_decl_ptr);
    for (size_t i = 0; i < w->n; i++) {
        decl *d = sorted[i];
        if (i && strcmp(sorted[i - 1]->name, d->name) == 0) {
            rc = wp_fail(e, WP_EUSAGE, "%s: %s: tensor declared twice", p, d->name);
            goto out;
        }
        cJSON *o = cJSON_CreateObject(), *sh = cJSON_CreateArray(), *of = cJSON_CreateArray();
        int ok = o && sh && of;
        if (ok) {
            cJSON_AddItemToObject(root, d->name, o);
            cJSON_AddStringToObject(o, "dtype", wp_dtype_name(d->dtype));
            cJSON_AddItemToObject(o, "shape", sh);
            cJSON_AddItemToObject(o, "data_offsets", of);
            for (int k = 0; k < d->ndim; k++) cJSON_AddItemToArray(sh, raw_u64(d->shape[k]));
            cJSON_AddItemToArray(of, raw_u64(d->begin));
            cJSON_AddItemToArray(of, raw_u64(d->end));
        } else {
            cJSON_Delete(o);
            cJSON_Delete(sh);
            cJSON_Delete(of);
            rc = wp_oom(e, "safetensors writer");
            goto out;
        }
    }
    if (!(json = cJSON_PrintUnformatted(root))) {
        rc = wp_oom(e, "printing the header");
        goto out;
    }
    /* pad with spaces so the data buffer starts 8-byte aligned (8 + N ≡ 0) */
    size_t jl = strlen(json), n = (size_t)wp_align_up(jl, 8);
    if (!(buf = wp_malloc(8 + n, e))) {
        rc = WP_ENOMEM;
        goto out;
    }
    for (int i = 0; i < 8; i++) buf[i] = (char)((uint64_t)n >> (8 * i));   /* little-endian */
    memcpy(buf + 8, json, jl);
    memset(buf + 8 + jl, ' ', n - jl);
    rc = wp_out_write(&w->out, buf, 8 + n, e);
    if (!rc) w->header_done = 1;
out:
    free(buf);
    free(json);
    free(mi);
    free(sorted);
    cJSON_Delete(root);
    return rc;
}

int wp_st_writer_write(wp_st_writer *w, const void *buf, size_t n, wp_err *e)
{
    int rc;
    if (!w->header_done && (rc = emit_header(w, e))) return rc;
    if (n > w->total - w->written)
        return wp_fail(e, WP_EUSAGE, "%s: data write of %zu bytes past the declared %" PRIu64
                       " (%" PRIu64 " already written)", w->out.path, n, w->total, w->written);
    if (!n) return 0;
    if ((rc = wp_out_write(&w->out, buf, n, e))) return rc;
    w->written += n;
    return 0;
}

int wp_st_writer_commit(wp_st_writer *w, wp_err *e)
{
    int rc = 0;
    if (!w->header_done) rc = emit_header(w, e);
    if (!rc && w->written != w->total)
        rc = wp_fail(e, WP_EUSAGE, "%s: only %" PRIu64 " of the declared %" PRIu64
                     " data bytes were written", w->out.path, w->written, w->total);
    if (!rc) rc = wp_out_commit(&w->out, e);
    if (!rc) w->opened = 0;
    wp_st_writer_abort(w);
    return rc;
}

int wp_st_write_file(const char *path, const wp_st_entry *t, size_t n,
                     const char *const *meta, size_t nmeta, wp_err *e)
{
    wp_st_writer *w;
    int rc = wp_st_writer_open(&w, path, e);
    if (rc) return rc;
    for (size_t i = 0; i < nmeta && !rc; i++) rc = wp_st_writer_meta(w, meta[2 * i], meta[2 * i + 1], e);
    for (size_t i = 0; i < n && !rc; i++) rc = wp_st_writer_add(w, t[i].name, t[i].dtype, t[i].ndim, t[i].shape, e);
    for (size_t i = 0; i < n && !rc; i++) {
        uint64_t nb = w->t[i].end - w->t[i].begin;
        if (nb && !t[i].data) rc = wp_fail(e, WP_EUSAGE, "%s: %s: no data", path, t[i].name);
        else rc = wp_st_writer_write(w, t[i].data, (size_t)nb, e);
    }
    if (rc) {
        wp_st_writer_abort(w);
        return rc;
    }
    return wp_st_writer_commit(w, e);
}

typedef struct { const char *name, *shard; } wm_pair;

static int cmp_pair(const void *a, const void *b)
{
    return strcmp(((const wm_pair *)a)->name, ((const wm_pair *)b)->name);
}

int wp_st_write_index(const char *path, const char *const *names, const char *const *shards,
                      size_t n, uint64_t total_size, wp_err *e)
{
    int rc = 0;
    wm_pair *v = wp_malloc(n * sizeof *v, e);
    cJSON *root = cJSON_CreateObject();
    char *json = NULL, *pretty = NULL;
    if (!v || !root) {
        rc = wp_oom(e, "safetensors writer");
        goto out;
    }
    for (size_t i = 0; i < n; i++) v[i] = (wm_pair){names[i], shards[i]};
    qsort(v, n, sizeof *v, cmp_pair);
    cJSON *md = cJSON_AddObjectToObject(root, "metadata");
    cJSON *wm = cJSON_AddObjectToObject(root, "weight_map");
    if (!md || !wm || !cJSON_AddItemToObject(md, "total_size", raw_u64(total_size))) {
        rc = wp_oom(e, "safetensors writer");
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        if (i && strcmp(v[i - 1].name, v[i].name) == 0) {
            rc = wp_fail(e, WP_EUSAGE, "%s: weight_map: %s: listed twice", path, v[i].name);
            goto out;
        }
        if (!cJSON_AddStringToObject(wm, v[i].name, v[i].shard)) {
            rc = wp_oom(e, "safetensors writer");
            goto out;
        }
    }
    if (!(json = cJSON_Print(root))) {
        rc = wp_oom(e, "safetensors writer");
        goto out;
    }
    /* cJSON indents with tabs and writes "key":\tvalue; strings escape a
     * real tab as \t, so every literal tab is layout: make it json.dumps'
     * indent=2 look. */
    size_t jl = strlen(json), k = 0;
    if (!(pretty = wp_malloc(2 * jl + 2, e))) {
        rc = WP_ENOMEM;
        goto out;
    }
    for (size_t i = 0; i < jl; i++) {
        if (json[i] != '\t') pretty[k++] = json[i];
        else if (i && json[i - 1] == ':') pretty[k++] = ' ';
        else { pretty[k++] = ' '; pretty[k++] = ' '; }
    }
    pretty[k++] = '\n';
    rc = wp_write_file_atomic(path, pretty, k, e);
out:
    free(pretty);
    free(json);
    cJSON_Delete(root);
    free(v);
    return rc;
}
