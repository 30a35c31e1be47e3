/* build_list.c — the tensors of a build or a .wpkz, one row each (see build.h). */
#include <stdlib.h>
#include <string.h>

#include "format/pack.h"
#include "trust/build.h"

void wp_tensor_list_free(wp_tensor_list *l)
{
    if (!l) return;
    free(l->rows);
    wpz_list_close(l->z);
    memset(l, 0, sizeof *l);
}

/* The names tied to t in its own directory (at(i) resolves an index). */
typedef const wpk_tensor *(*at_fn)(const void *dir, size_t i);
static void ties(wp_tensor_row *r, const void *dir, at_fn at)
{
    const wpk_tensor *t = r->t, *x;
    if (t->scale != WPK_NONE && (x = at(dir, t->scale))) r->scale = x->name;
    if (t->owner != WPK_NONE && (x = at(dir, t->owner))) r->scale_of = x->name;
}

static const wpk_tensor *wpk_at(const void *f, size_t i) { return wpk_tensor_at(f, i); }

int wp_build_list(wp_build *b, wp_tensor_list *l, wp_err *e)
{
    memset(l, 0, sizeof *l);
    size_t np = 0, total = 0;
    int rc = wp_build_parts(b, &np, e);
    for (size_t p = 0; !rc && p < np; p++) {
        wpk_file *f;
        if (!(rc = wp_build_part(b, p, &f, e))) total += wpk_count(f);   /* each <= WPK_MAX_TENSORS */
    }
    if (!rc && !(l->rows = wp_calloc(total ? total : 1, sizeof *l->rows, e))) rc = WP_ENOMEM;
    for (size_t p = 0; !rc && p < np; p++) {
        wpk_file *f;
        if ((rc = wp_build_part(b, p, &f, e))) break;
        for (size_t i = 0; i < wpk_count(f); i++) {
            wp_tensor_row *r = &l->rows[l->n++];
            r->t = wpk_tensor_at(f, i);
            r->file = wp_build_part_name(b, p);
            r->part = p;
            ties(r, f, wpk_at);
        }
    }
    if (rc) {
        wp_tensor_list_free(l);
        return rc;
    }
    l->n_files = np;
    return 0;
}

typedef struct zdir {
    const wpz_list *z;
    size_t file, first, n;   /* the file's rows are [first, first + n) of the listing */
} zdir;
static const wpk_tensor *zdir_at(const void *d, size_t i)
{
    const zdir *x = d;
    const wpz_list_tensor *t = i < x->n ? wpz_list_tensor_at(x->z, x->first + i) : NULL;
    return t && t->file == x->file ? t->t : NULL;
}

int wp_wpkz_list(const char *wpkz, wp_tensor_list *l, wp_err *e)
{
    memset(l, 0, sizeof *l);
    l->packed = 1;
    int rc = wpz_list_open(&l->z, wpkz, e);
    size_t n = rc ? 0 : wpz_list_count(l->z);
    if (!rc && !(l->rows = wp_calloc(n ? n : 1, sizeof *l->rows, e))) rc = WP_ENOMEM;
    /* rows come file by file, each in directory order: entry j of a file is
     * row first + j */
    zdir d = {.z = l->z, .file = (size_t)-1};
    for (size_t i = 0; !rc && i < n; i++) {
        const wpz_list_tensor *t = wpz_list_tensor_at(l->z, i);
        if (t->file != d.file) {
            d.file = t->file, d.first = i, d.n = 0;
            while (i + d.n < n && wpz_list_tensor_at(l->z, i + d.n)->file == t->file) d.n++;
            l->n_files++;
        }
        wp_tensor_row *r = &l->rows[l->n++];
        r->t = t->t;
        r->file = wpz_list_file_name(l->z, t->file);
        r->part = t->file;
        r->comp_bytes = t->comp_bytes;
        ties(r, &d, zdir_at);
    }
    if (rc) wp_tensor_list_free(l);
    return rc;
}

/* A name's last decimal run that differs between expert 0 and expert n-1:
 * prefix/suffix lengths around it, or -1. */
static int split_num(const char *a, const char *b, size_t *pre, size_t *suf)
{
    size_t la = strlen(a), lb = strlen(b), p = 0, s = 0;
    while (p < la && p < lb && a[p] == b[p]) p++;
    while (s < la - p && s < lb - p && a[la - 1 - s] == b[lb - 1 - s]) s++;
    while (p && a[p - 1] >= '0' && a[p - 1] <= '9') p--;                 /* whole numbers only */
    while (s && a[la - s] >= '0' && a[la - s] <= '9') s--;
    if (p + s > la || p + s > lb || p + s == la || p + s == lb) return -1;
    for (size_t i = p; i < la - s; i++)
        if (a[i] < '0' || a[i] > '9') return -1;
    for (size_t i = p; i < lb - s; i++)
        if (b[i] < '0' || b[i] > '9') return -1;
    *pre = p;
    *suf = s;
    return 0;
}

int wp_tensor_sources_range(const wpk_tensor *t, char *out, size_t n)
{
    if (!n) return -1;
    out[0] = 0;
    if (!t->stacked || !t->n_experts || !t->n_sources || t->n_sources % t->n_experts) return 0;
    uint64_t per = t->n_sources / t->n_experts, ne = t->n_experts;
    size_t used = 0;
    for (uint64_t s = 0; s < per; s++) {
        const char *first = t->sources[s], *last = t->sources[(ne - 1) * per + s];
        size_t pre = 0, suf = 0, lf = strlen(first);
        unsigned long long a = 0;
        if (ne == 1) {
            pre = lf, suf = 0;
        } else {
            if (split_num(first, last, &pre, &suf)) goto irregular;
            if (lf - pre - suf > 1 && first[pre] == '0') goto irregular;   /* no leading zeros */
            a = strtoull(first + pre, NULL, 10);
            if (a > UINT64_MAX - ne) goto irregular;
            /* every expert's name: PREFIX(a+e)SUFFIX */
            for (uint64_t e = 0; e < ne; e++) {
                const char *x = t->sources[e * per + s];
                char num[24];
                int k = snprintf(num, sizeof num, "%llu", a + (unsigned long long)e);
                size_t lx = strlen(x);
                if (lx != pre + (size_t)k + suf || memcmp(x, first, pre) || memcmp(x + pre, num, (size_t)k) ||
                    memcmp(x + pre + k, first + lf - suf, suf))
                    goto irregular;
            }
        }
        int k = ne == 1 ? snprintf(out + used, n - used, "%s%s", s ? " + " : "", first)
                        : snprintf(out + used, n - used, "%s%.*s{%llu..%llu}%s", s ? " + " : "", (int)pre, first, a,
                                   a + (unsigned long long)(ne - 1), first + lf - suf);
        if (k < 0 || (size_t)k >= n - used) {
            out[0] = 0;
            return -1;
        }
        used += (size_t)k;
    }
    return 0;
irregular:
    out[0] = 0;
    return 0;
}

cJSON *wp_tensor_list_json(const wp_tensor_list *l)
{
    cJSON *a = cJSON_CreateArray();
    if (!a) return NULL;
    for (size_t i = 0; i < l->n; i++) {
        const wp_tensor_row *r = &l->rows[i];
        const wpk_tensor *t = r->t;
        cJSON *o = cJSON_CreateObject();
        if (!o || !cJSON_AddItemToArray(a, o)) {
            cJSON_Delete(o);
            cJSON_Delete(a);
            return NULL;
        }
        char hex[2 * WP_SHA256_LEN + 1];
        wp_hex(t->sha256, WP_SHA256_LEN, hex);
        cJSON_AddStringToObject(o, "name", t->name);
        cJSON_AddStringToObject(o, "file", r->file);
        cJSON_AddStringToObject(o, "encoding", wpk_tensor_enc_name(t));
        cJSON *sh = cJSON_AddArrayToObject(o, "shape");
        for (int d = 0; sh && d < t->ndim; d++) cJSON_AddItemToArray(sh, cJSON_CreateNumber((double)t->shape[d]));
        cJSON_AddNumberToObject(o, "bytes", (double)t->size);
        cJSON_AddNumberToObject(o, "offset", (double)t->offset);
        cJSON_AddStringToObject(o, "sha256", hex);
        if (r->scale) cJSON_AddStringToObject(o, "scale", r->scale);
        else cJSON_AddNullToObject(o, "scale");
        if (r->scale_of) cJSON_AddStringToObject(o, "scale_of", r->scale_of);
        else cJSON_AddNullToObject(o, "scale_of");
        if (l->packed) cJSON_AddNumberToObject(o, "compressed_bytes", (double)r->comp_bytes);
        if (!t->stacked) {
            cJSON_AddNullToObject(o, "experts");
            continue;
        }
        cJSON *x = cJSON_AddObjectToObject(o, "experts");
        if (!x) continue;
        cJSON_AddNumberToObject(x, "count", (double)t->n_experts);
        cJSON_AddNumberToObject(x, "stride", (double)t->expert_stride);
        cJSON_AddNumberToObject(x, "per_expert",
                                t->n_experts && t->n_sources % t->n_experts == 0 ? (double)(t->n_sources / t->n_experts) : 0);
        char range[1024];
        if (!wp_tensor_sources_range(t, range, sizeof range) && range[0]) cJSON_AddStringToObject(x, "sources_range", range);
        else cJSON_AddNullToObject(x, "sources_range");
        cJSON *src = cJSON_AddArrayToObject(x, "sources");
        for (uint32_t k = 0; src && k < t->n_sources; k++) cJSON_AddItemToArray(src, cJSON_CreateString(t->sources[k]));
    }
    return a;
}

/* ---- the names a build provides ------------------------------------------------- */

static int cmp_bname(const void *a, const void *b)
{
    return strcmp(((const wp_build_name *)a)->name, ((const wp_build_name *)b)->name);
}

/* by name, then row: of a replicated name the first part's is kept */
static int cmp_bname_row(const void *a, const void *b)
{
    int c = cmp_bname(a, b);
    if (c) return c;
    size_t x = ((const wp_build_name *)a)->row, y = ((const wp_build_name *)b)->row;
    return (x > y) - (x < y);
}

void wp_name_index_free(wp_name_index *x)
{
    if (!x) return;
    free(x->v);
    x->v = NULL;
    x->n = 0;
}

const wp_build_name *wp_name_index_find(const wp_name_index *x, const char *name)
{
    wp_build_name key = {.name = name};
    const wp_build_name *m = x->n ? bsearch(&key, x->v, x->n, sizeof key, cmp_bname) : NULL;
    while (m && m > x->v && !strcmp(m[-1].name, name)) m--;   /* the first of a run (build_all) */
    return m;
}

static int index_build(const wp_tensor_list *l, const char *what, int dedupe, wp_name_index *x, wp_err *e);

int wp_name_index_build(const wp_tensor_list *l, const char *what, wp_name_index *x, wp_err *e)
{
    return index_build(l, what, 1, x, e);
}

int wp_name_index_build_all(const wp_tensor_list *l, const char *what, wp_name_index *x, wp_err *e)
{
    return index_build(l, what, 0, x, e);
}

static int index_build(const wp_tensor_list *l, const char *what, int dedupe, wp_name_index *x, wp_err *e)
{
    memset(x, 0, sizeof *x);
    size_t nn = 0;   /* <= the containers' source and tensor limits: no overflow */
    for (size_t i = 0; i < l->n; i++) {
        const wpk_tensor *t = l->rows[i].t;
        if (t->owner == WPK_NONE) nn += t->stacked ? t->n_sources : 1;
    }
    if (!(x->v = wp_calloc(nn ? nn : 1, sizeof *x->v, e))) return WP_ENOMEM;
    for (size_t i = 0; i < l->n; i++) {
        const wpk_tensor *t = l->rows[i].t;
        if (t->owner != WPK_NONE) continue;   /* scales come with their weight */
        if (!t->stacked) {
            x->v[x->n++] = (wp_build_name){t->name, i, -1, 0, 1};
            continue;
        }
        if (!t->n_sources || !t->n_experts || t->n_sources % t->n_experts) {
            int rc = wp_fail(e, WP_EINVAL, "%s: %s: %s: a stack of %llu experts naming %u source tensors: its "
                             "experts cannot be told apart", what, l->rows[i].file, t->name,
                             (unsigned long long)t->n_experts, t->n_sources);
            wp_name_index_free(x);
            return rc;
        }
        unsigned per = (unsigned)(t->n_sources / t->n_experts);
        for (uint32_t k = 0; k < t->n_sources; k++)
            x->v[x->n++] = (wp_build_name){t->sources[k], i, (long)(k / per), k % per, per};
    }
    qsort(x->v, x->n, sizeof *x->v, cmp_bname_row);
    if (!dedupe) return 0;
    size_t w = 0;
    for (size_t i = 0; i < x->n; i++) {
        if (w && !strcmp(x->v[w - 1].name, x->v[i].name)) {
            const wp_build_name *a = &x->v[w - 1], *b = &x->v[i];
            const wpk_tensor *ta = l->rows[a->row].t, *tb = l->rows[b->row].t;
            if (a->expert >= 0 || b->expert >= 0 || ta->size != tb->size || memcmp(ta->sha256, tb->sha256, WP_SHA256_LEN)) {
                int rc = wp_fail(e, WP_EINVAL, "%s: %s: held twice, in %s and in %s, with different bytes", what,
                                 b->name, l->rows[a->row].file, l->rows[b->row].file);
                wp_name_index_free(x);
                return rc;
            }
            continue;
        }
        x->v[w++] = x->v[i];
    }
    x->n = w;
    return 0;
}
