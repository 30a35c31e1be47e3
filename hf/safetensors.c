/*
 * safetensors.c — the strict safetensors reader (see safetensors.h).
 *
 * Format (spec §2.1): u64 little-endian N, N bytes of UTF-8 JSON
 * {name: {dtype, shape, data_offsets: [begin, end)}, "__metadata__": {..}},
 * then the data buffer; offsets are relative to byte 8 + N.
 *
 * Open validates the whole header and the data layout but reads no tensor
 * bytes: a 3.6 GB shard costs one pread of its header.  Tensor bytes come
 * later through pread (wp_st_read) or a lazily created read-only mapping
 * (wp_st_data).
 */
#include "hf/internal.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- dtypes ----------------------------------------------------------------- */

static const struct { const char *name; unsigned bits; } g_dtypes[WP_DTYPE_COUNT] = {
    [WP_BOOL] = {"BOOL", 8},        [WP_U8] = {"U8", 8},
    [WP_I8] = {"I8", 8},            [WP_I16] = {"I16", 16},
    [WP_U16] = {"U16", 16},         [WP_I32] = {"I32", 32},
    [WP_U32] = {"U32", 32},         [WP_I64] = {"I64", 64},
    [WP_U64] = {"U64", 64},         [WP_F16] = {"F16", 16},
    [WP_BF16] = {"BF16", 16},       [WP_F32] = {"F32", 32},
    [WP_F64] = {"F64", 64},         [WP_F8_E4M3] = {"F8_E4M3", 8},
    [WP_F8_E5M2] = {"F8_E5M2", 8},  [WP_F8_E8M0] = {"F8_E8M0", 8},
    [WP_F4] = {"F4", 4},            [WP_F6_E2M3] = {"F6_E2M3", 6},
    [WP_F6_E3M2] = {"F6_E3M2", 6},
};

const char *wp_dtype_name(wp_dtype t)
{
    return (unsigned)t < WP_DTYPE_COUNT ? g_dtypes[t].name : "?";
}

int wp_dtype_parse(const char *s, wp_dtype *out)
{
    for (int i = 0; i < WP_DTYPE_COUNT; i++)
        if (strcmp(s, g_dtypes[i].name) == 0) {
            *out = (wp_dtype)i;
            return 0;
        }
    return -1;
}

unsigned wp_dtype_bits(wp_dtype t)
{
    return (unsigned)t < WP_DTYPE_COUNT ? g_dtypes[t].bits : 0;
}

/* Elements per whole-byte group: 1 for byte dtypes, 2 for F4, 4 for F6. */
static uint64_t elems_per_group(unsigned bits)
{
    unsigned g = bits % 8 == 0 ? 8 : bits % 4 == 0 ? 4 : 2;   /* gcd(bits, 8) */
    return 8 / g;
}

int wp_dtype_nbytes(wp_dtype t, const uint64_t *shape, int ndim, uint64_t *out)
{
    if ((unsigned)t >= WP_DTYPE_COUNT || ndim < 0 || ndim > WP_MAX_DIMS) return -1;
    uint64_t n = 1;
    for (int i = 0; i < ndim; i++)
        if (wp_mul_u64(n, shape[i], &n)) return -1;
    /* sub-byte dtypes (F4, F6) must fill whole bytes: a tensor never shares a
     * byte with its neighbour.  Bytes = groups * bytes-per-group, so no
     * intermediate bit count can overflow. */
    unsigned bits = g_dtypes[t].bits;
    uint64_t per = elems_per_group(bits);
    if (n % per) return -1;
    return wp_mul_u64(n / per, bits * per / 8, out);
}

/* ---- the file object ---------------------------------------------------------- */

struct wp_st_file {
    char *path;
    int fd;
    uint64_t size;        /* file size */
    uint64_t hlen;        /* N */
    wp_tensor_info *t;    /* header order */
    size_t n;
    size_t *by_name;      /* indices into t, sorted by strcmp(name) */
    char **meta;          /* key, value, key, value, ... */
    size_t nmeta;
    char *names;          /* one arena for all tensor names */
    void *map;            /* whole-file mapping, created on first wp_st_data */
};

void wp_st__set_file_index(wp_st_file *f, int index)
{
    for (size_t i = 0; i < f->n; i++) f->t[i].file = index;
}

const char *wp_st_path(const wp_st_file *f) { return f->path; }
uint64_t wp_st_file_size(const wp_st_file *f) { return f->size; }
uint64_t wp_st_header_len(const wp_st_file *f) { return f->hlen; }
size_t wp_st_count(const wp_st_file *f) { return f->n; }
int wp_st_fd(const wp_st_file *f) { return f->fd; }
size_t wp_st_meta_count(const wp_st_file *f) { return f->nmeta; }

const wp_tensor_info *wp_st_tensor(const wp_st_file *f, size_t i)
{
    return i < f->n ? &f->t[i] : NULL;
}

const wp_tensor_info *wp_st_find(const wp_st_file *f, const char *name)
{
    size_t lo = 0, hi = f->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        const wp_tensor_info *t = &f->t[f->by_name[mid]];
        int c = strcmp(t->name, name);
        if (c == 0) return t;
        if (c < 0) lo = mid + 1;
        else hi = mid;
    }
    return NULL;
}

int wp_st_meta(const wp_st_file *f, size_t i, const char **key, const char **val)
{
    if (i >= f->nmeta) return -1;
    *key = f->meta[2 * i];
    *val = f->meta[2 * i + 1];
    return 0;
}

void wp_st_close(wp_st_file *f)
{
    if (!f) return;
    void *m = __atomic_load_n(&f->map, __ATOMIC_ACQUIRE);
    if (m) munmap(m, f->size);
    if (f->fd >= 0) close(f->fd);
    for (size_t i = 0; i < 2 * f->nmeta; i++) free(f->meta[i]);
    free(f->meta);
    free(f->by_name);
    free(f->names);
    free(f->t);
    free(f->path);
    free(f);
}

int wp_st_read(const wp_st_file *f, const wp_tensor_info *t, uint64_t off, void *buf, size_t n,
               wp_err *e)
{
    uint64_t end;
    if (wp_add_u64(off, n, &end) || end > t->nbytes)
        return wp_fail(e, WP_EUSAGE, "%s: %s: read of %zu bytes at %" PRIu64
                       " is outside the tensor's %" PRIu64 " bytes", f->path, t->name, n, off,
                       t->nbytes);
    return wp_pread_full(f->fd, buf, n, t->offset + off, f->path, e);
}

const void *wp_st_data(wp_st_file *f, const wp_tensor_info *t, wp_err *e)
{
    void *m = __atomic_load_n(&f->map, __ATOMIC_ACQUIRE);
    if (!m) {
        /* MAP_SHARED + PROT_READ: pages come from the page cache on demand, so
         * mapping a 3.6 GB shard costs nothing until its bytes are touched. */
        m = mmap(NULL, f->size, PROT_READ, MAP_SHARED, f->fd, 0);
        if (m == MAP_FAILED) {
            wp_fail_errno(e, "%s: cannot mmap %" PRIu64 " bytes", f->path, f->size);
            return NULL;
        }
        void *expect = NULL;
        /* two threads may race to map; the loser unmaps its copy */
        if (!__atomic_compare_exchange_n(&f->map, &expect, m, 0, __ATOMIC_ACQ_REL,
                                         __ATOMIC_ACQUIRE)) {
            munmap(m, f->size);
            m = expect;
        }
    }
    return (const uint8_t *)m + t->offset;
}

/* ---- header validation --------------------------------------------------------- */

/* Strict UTF-8: no overlong forms, no surrogates, <= U+10FFFF. */
size_t wp_st__utf8_check(const uint8_t *s, size_t len)
{
    size_t i = 0;
    while (i < len) {
        uint8_t c = s[i];
        if (c < 0x80) { i++; continue; }
        size_t k;
        uint32_t cp, min;
        if ((c & 0xE0) == 0xC0) { k = 1; cp = c & 0x1F; min = 0x80; }
        else if ((c & 0xF0) == 0xE0) { k = 2; cp = c & 0x0F; min = 0x800; }
        else if ((c & 0xF8) == 0xF0) { k = 3; cp = c & 0x07; min = 0x10000; }
        else return i;
        if (len - i <= k) return i;
        for (size_t j = 1; j <= k; j++) {
            if ((s[i + j] & 0xC0) != 0x80) return i;
            cp = cp << 6 | (s[i + j] & 0x3F);
        }
        if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return i;
        i += k + 1;
    }
    return len;
}

/* A JSON number as an exact non-negative integer <= 2^53.  cJSON keeps only a
 * double (valueint saturates silently), so check the double itself; numbers
 * that are integral in value but not in spelling ("3.0", "1e3") are caught by
 * the lexical pass below. */
static int json_uint(const cJSON *j, uint64_t *out, const char **why)
{
    if (!cJSON_IsNumber(j)) { *why = "is not a number"; return -1; }
    double d = j->valuedouble;
    if (!isfinite(d) || d != floor(d)) { *why = "is not an integer"; return -1; }
    if (d < 0) { *why = "is negative"; return -1; }
    if (d > WP_ST_MAX_INT) { *why = "exceeds 2^53"; return -1; }
    *out = (uint64_t)d;
    return 0;
}

/* " 2.5" for a number (to quote it in a message), "" for anything else. */
static const char *num_text(const cJSON *j, char *buf)
{
    buf[0] = 0;
    if (cJSON_IsNumber(j)) snprintf(buf, 48, " %.17g", j->valuedouble);
    return buf;
}

/* Lexical pass over the header text: no string may contain \u0000, and
 * every number outside strings must be
 * written as plain decimal digits (what every safetensors writer emits and
 * what the reference Rust reader, which parses into u64, accepts), without a
 * leading zero, with a value <= 2^53.  The top-level key being read is kept so
 * the message can name the tensor. */
static int lex_check(const char *path, const char *h, size_t n, wp_err *e)
{
    int depth = 0, in_str = 0, esc = 0, want_key = 0;
    size_t key_at = 0, key_len = 0, str_at = 0;
    for (size_t i = 0; i < n; i++) {
        char c = h[i];
        if (in_str) {
            if (esc) {
                esc = 0;
                /* cJSON decodes \u0000 into a NUL that silently cuts the
                 * string short: "a\u0000b" would read as tensor "a" */
                if (c == 'u' && n - i > 4 && memcmp(h + i + 1, "0000", 4) == 0)
                    return wp_fail(e, WP_EINVAL, "%s: header string contains \\u0000 (header "
                                   "offset %zu)", path, i - 1);
            } else if (c == '\\') esc = 1;
            else if (c == '"') {
                in_str = 0;
                if (depth == 1 && want_key) {
                    key_at = str_at;
                    key_len = i - str_at;
                    want_key = 0;
                }
            }
            continue;
        }
        if (c == '"') { in_str = 1; str_at = i + 1; continue; }
        if (c == '{' || c == '[') { depth++; want_key = depth == 1; continue; }
        if (c == '}' || c == ']') { depth--; continue; }
        if (c == ',') { want_key = depth == 1; continue; }
        if (c != '-' && (c < '0' || c > '9')) continue;
        size_t s = i;
        while (i < n && strchr("+-.eE0123456789", h[i]) && h[i]) i++;
        size_t tl = i - s;
        i--;
        const char *why = NULL;
        uint64_t v = 0;
        for (size_t k = s; k < s + tl && !why; k++) {
            if (h[k] < '0' || h[k] > '9') why = "is not written as a plain non-negative integer";
            else if (v > (1ull << 53) / 10 + 1) why = "exceeds 2^53";
            else v = v * 10 + (uint64_t)(h[k] - '0');
        }
        if (!why && tl > 1 && h[s] == '0') why = "has a leading zero";
        if (!why && v > (1ull << 53)) why = "exceeds 2^53";
        if (why)
            return wp_fail(e, WP_EINVAL, "%s: %.*s: number %.*s %s", path, (int)key_len,
                           h + key_at, (int)(tl > 40 ? 40 : tl), h + s, why);
    }
    return 0;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Reject two children of one JSON object with the same key (cJSON keeps
 * both and GetObjectItem silently returns the first). */
static int no_dup_keys(const char *path, const char *where, const cJSON *obj, wp_err *e)
{
    size_t n = 0;
    for (const cJSON *c = obj->child; c; c = c->next) n++;
    if (n < 2) return 0;
    const char **k = wp_malloc(n * sizeof *k, e);
    if (!k) return WP_ENOMEM;
    n = 0;
    for (const cJSON *c = obj->child; c; c = c->next) k[n++] = c->string;
    qsort(k, n, sizeof *k, cmp_str);
    int rc = 0;
    for (size_t i = 1; i < n && !rc; i++)
        if (strcmp(k[i - 1], k[i]) == 0)
            rc = wp_fail(e, WP_EINVAL, "%s: %s%sduplicate key \"%s\"", path, where,
                         *where ? ": " : "", k[i]);
    free(k);
    return rc;
}

static int parse_entry(wp_st_file *f, const cJSON *j, wp_tensor_info *t, uint64_t *begin,
                       uint64_t *end, wp_err *e)
{
    const char *p = f->path, *nm = j->string, *why;
    char num[48];
    if (!cJSON_IsObject(j))
        return wp_fail(e, WP_EINVAL, "%s: %s: entry is not a JSON object", p, nm);
    int rc = no_dup_keys(p, nm, j, e);
    if (rc) return rc;
    const cJSON *dt = NULL, *sh = NULL, *of = NULL;
    for (const cJSON *c = j->child; c; c = c->next) {
        if (strcmp(c->string, "dtype") == 0) dt = c;
        else if (strcmp(c->string, "shape") == 0) sh = c;
        else if (strcmp(c->string, "data_offsets") == 0) of = c;
        /* strict: a misspelt key ("data_offset") must not pass silently */
        else return wp_fail(e, WP_EINVAL, "%s: %s: unknown key \"%s\"", p, nm, c->string);
    }
    if (!dt || !cJSON_IsString(dt))
        return wp_fail(e, WP_EINVAL, "%s: %s: dtype %s", p, nm, dt ? "is not a string" : "missing");
    if (wp_dtype_parse(dt->valuestring, &t->dtype))
        return wp_fail(e, WP_EINVAL, "%s: %s: unknown dtype \"%s\"", p, nm, dt->valuestring);
    if (!sh || !cJSON_IsArray(sh))
        return wp_fail(e, WP_EINVAL, "%s: %s: shape %s", p, nm, sh ? "is not an array" : "missing");
    int nd = cJSON_GetArraySize(sh);
    if (nd > WP_MAX_DIMS)
        return wp_fail(e, WP_EINVAL, "%s: %s: shape has %d dimensions, more than %d", p, nm, nd,
                       WP_MAX_DIMS);
    t->ndim = 0;
    for (const cJSON *c = sh->child; c; c = c->next) {
        if (json_uint(c, &t->shape[t->ndim], &why))
            return wp_fail(e, WP_EINVAL, "%s: %s: shape[%d]%s %s", p, nm, t->ndim,
                           num_text(c, num), why);
        t->ndim++;
    }
    if (!of || !cJSON_IsArray(of) || cJSON_GetArraySize(of) != 2)
        return wp_fail(e, WP_EINVAL, "%s: %s: data_offsets %s", p, nm,
                       of ? "is not an array [begin, end]" : "missing");
    if (json_uint(of->child, begin, &why))
        return wp_fail(e, WP_EINVAL, "%s: %s: data_offsets begin%s %s", p, nm,
                       num_text(of->child, num), why);
    if (json_uint(of->child->next, end, &why))
        return wp_fail(e, WP_EINVAL, "%s: %s: data_offsets end%s %s", p, nm,
                       num_text(of->child->next, num), why);
    if (*begin > *end)
        return wp_fail(e, WP_EINVAL, "%s: %s: data_offsets [%" PRIu64 ", %" PRIu64
                       ") begin > end", p, nm, *begin, *end);
    if (wp_dtype_nbytes(t->dtype, t->shape, t->ndim, &t->nbytes)) {
        uint64_t cnt = 1;
        int ovf = 0;
        for (int i = 0; i < t->ndim; i++) ovf |= wp_mul_u64(cnt, t->shape[i], &cnt);
        if (ovf || cnt % elems_per_group(wp_dtype_bits(t->dtype)) == 0)
            return wp_fail(e, WP_EINVAL, "%s: %s: shape byte size overflows 64 bits", p, nm);
        return wp_fail(e, WP_EINVAL, "%s: %s: %" PRIu64 " elements of %s (%u bits) do not fill "
                       "whole bytes", p, nm, cnt, wp_dtype_name(t->dtype),
                       wp_dtype_bits(t->dtype));
    }
    if (*end - *begin != t->nbytes)
        return wp_fail(e, WP_EINVAL, "%s: %s: dtype %s shape needs %" PRIu64 " bytes but "
                       "data_offsets [%" PRIu64 ", %" PRIu64 ") hold %" PRIu64, p, nm,
                       wp_dtype_name(t->dtype), t->nbytes, *begin, *end, *end - *begin);
    return 0;
}

static int parse_meta(wp_st_file *f, const cJSON *j, wp_err *e)
{
    if (!cJSON_IsObject(j))
        return wp_fail(e, WP_EINVAL, "%s: __metadata__: is not a JSON object", f->path);
    int rc = no_dup_keys(f->path, "__metadata__", j, e);
    if (rc) return rc;
    size_t n = 0;
    for (const cJSON *c = j->child; c; c = c->next) {
        if (!cJSON_IsString(c))
            return wp_fail(e, WP_EINVAL, "%s: __metadata__: value of \"%s\" is not a string "
                           "(metadata is string -> string)", f->path, c->string);
        n++;
    }
    f->meta = wp_calloc(2 * n + 1, sizeof *f->meta, e);
    if (!f->meta) return WP_ENOMEM;
    for (const cJSON *c = j->child; c; c = c->next) {
        char *k = wp_strdup(c->string, e), *v = k ? wp_strdup(c->valuestring, e) : NULL;
        f->meta[2 * f->nmeta] = k;
        f->meta[2 * f->nmeta + 1] = v;
        if (!v) {
            if (k) f->nmeta++;   /* so close() frees k */
            return WP_ENOMEM;
        }
        f->nmeta++;
    }
    return 0;
}

/* Sort helpers work on a side table so the tensors keep header order. */
typedef struct { uint64_t begin, end; size_t i; } span;

static int cmp_span(const void *a, const void *b)
{
    const span *x = a, *y = b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end) return x->end < y->end ? -1 : 1;
    return x->i < y->i ? -1 : x->i > y->i;
}

/* qsort_r (glibc): files may be opened from several threads at once */
static int cmp_by_name(const void *a, const void *b, void *ctx)
{
    const wp_tensor_info *t = ctx;
    return strcmp(t[*(const size_t *)a].name, t[*(const size_t *)b].name);
}

static int parse_header(wp_st_file *f, char *h, wp_err *e)
{
    const char *p = f->path;
    size_t n = (size_t)f->hlen;
    size_t bad = wp_st__utf8_check((const uint8_t *)h, n);
    if (bad != n)
        return wp_fail(e, WP_EINVAL, "%s: header is not valid UTF-8 (byte 0x%02x at header "
                       "offset %zu)", p, (uint8_t)h[bad], bad);
    if (memchr(h, 0, n))
        return wp_fail(e, WP_EINVAL, "%s: header contains a NUL byte", p);
    if (h[0] != '{')
        return wp_fail(e, WP_EINVAL, "%s: header is not a JSON object (starts with 0x%02x)", p,
                       (uint8_t)h[0]);
    const char *endp = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(h, n, &endp, 0);
    if (!root) {
        size_t at = endp && endp >= h && endp <= h + n ? (size_t)(endp - h) : 0;
        return wp_fail(e, WP_EINVAL, "%s: header is not valid JSON (error near header offset "
                       "%zu of %zu)", p, at, n);
    }
    int rc = 0;
    span *sp = NULL;
    /* safetensors writers pad the header with spaces to 8-byte alignment */
    for (const char *q = endp; q < h + n; q++)
        if (*q != ' ' && *q != '\t' && *q != '\n' && *q != '\r') {
            rc = wp_fail(e, WP_EINVAL, "%s: header has bytes after the JSON object (header "
                         "offset %zu; only trailing spaces are allowed)", p, (size_t)(q - h));
            goto out;
        }
    if (!cJSON_IsObject(root)) {
        rc = wp_fail(e, WP_EINVAL, "%s: header is not a JSON object", p);
        goto out;
    }
    if ((rc = no_dup_keys(p, "", root, e))) goto out;

    size_t nt = 0, name_bytes = 0;
    for (const cJSON *c = root->child; c; c = c->next)
        if (strcmp(c->string, "__metadata__") != 0) {
            nt++;
            name_bytes += strlen(c->string) + 1;
        }
    f->t = wp_calloc(nt, sizeof *f->t, e);
    f->names = wp_malloc(name_bytes, e);
    f->by_name = wp_malloc(nt * sizeof *f->by_name, e);
    sp = wp_malloc(nt * sizeof *sp, e);
    if (!f->t || !f->names || !f->by_name || !sp) {
        rc = WP_ENOMEM;
        goto out;
    }
    char *np = f->names;
    for (const cJSON *c = root->child; c; c = c->next) {
        if (strcmp(c->string, "__metadata__") == 0) {
            if ((rc = parse_meta(f, c, e))) goto out;
            continue;
        }
        if (!c->string[0]) {
            rc = wp_fail(e, WP_EINVAL, "%s: empty tensor name", p);
            goto out;
        }
        wp_tensor_info *t = &f->t[f->n];
        size_t l = strlen(c->string) + 1;
        memcpy(np, c->string, l);
        t->name = np;
        np += l;
        if ((rc = parse_entry(f, c, t, &sp[f->n].begin, &sp[f->n].end, e))) goto out;
        sp[f->n].i = f->n;
        f->by_name[f->n] = f->n;
        f->n++;
    }
    if ((rc = lex_check(p, h, n, e))) goto out;

    /* spec §2.1 layout: the tensors, sorted by offset, tile the data buffer
     * [0, size - 8 - N) exactly — no gap, no overlap, nothing after. */
    uint64_t data_len = f->size - 8 - f->hlen, at = 0;
    qsort(sp, f->n, sizeof *sp, cmp_span);
    for (size_t k = 0; k < f->n; k++) {
        const wp_tensor_info *t = &f->t[sp[k].i];
        if (sp[k].begin < at) {
            rc = wp_fail(e, WP_EINVAL, "%s: %s: data_offsets [%" PRIu64 ", %" PRIu64 ") overlap "
                         "the previous tensor %s (ends at %" PRIu64 ")", p, t->name, sp[k].begin,
                         sp[k].end, f->t[sp[k - 1].i].name, at);
            goto out;
        }
        if (sp[k].begin > at) {
            rc = wp_fail(e, WP_EINVAL, "%s: %s: data_offsets [%" PRIu64 ", %" PRIu64 ") leave a "
                         "gap of %" PRIu64 " bytes after offset %" PRIu64, p, t->name,
                         sp[k].begin, sp[k].end, sp[k].begin - at, at);
            goto out;
        }
        if (sp[k].end > data_len) {
            rc = wp_fail(e, WP_EINVAL, "%s: %s: data_offsets end %" PRIu64 " past end of data (%"
                         PRIu64 "; file truncated?)", p, t->name, sp[k].end, data_len);
            goto out;
        }
        at = sp[k].end;
        f->t[sp[k].i].offset = 8 + f->hlen + sp[k].begin;
    }
    if (at != data_len) {
        rc = wp_fail(e, WP_EINVAL, "%s: %" PRIu64 " trailing bytes after the last tensor (data "
                     "buffer is %" PRIu64 " bytes, tensors cover %" PRIu64 ")", p, data_len - at,
                     data_len, at);
        goto out;
    }
    qsort_r(f->by_name, f->n, sizeof *f->by_name, cmp_by_name, f->t);
out:
    free(sp);
    cJSON_Delete(root);
    return rc;
}

int wp_st_open(wp_st_file **out, const char *path, wp_err *e)
{
    *out = NULL;
    wp_st_file *f = wp_calloc(1, sizeof *f, e);
    if (!f) return WP_ENOMEM;
    f->fd = -1;
    int rc;
    char *h = NULL;
    if (!(f->path = wp_strdup(path, e))) {
        rc = WP_ENOMEM;
        goto fail;
    }
    f->fd = wp_open_read(path, e);
    if (f->fd < 0) {
        rc = wp_fail_errno(e, "%s: cannot open", path);
        goto fail;
    }
    struct stat st;
    if (fstat(f->fd, &st) != 0) {
        rc = wp_fail_errno(e, "%s: cannot stat", path);
        goto fail;
    }
    if (!S_ISREG(st.st_mode)) {
        rc = wp_fail(e, WP_EINVAL, "%s: not a regular file", path);
        goto fail;
    }
    f->size = (uint64_t)st.st_size;
    if (f->size < 8) {
        rc = wp_fail(e, WP_EINVAL, "%s: file is %" PRIu64 " bytes, too short for the 8-byte "
                     "header length (truncated?)", path, f->size);
        goto fail;
    }
    uint8_t b[8];
    if ((rc = wp_pread_full(f->fd, b, 8, 0, path, e))) goto fail;
    for (int i = 7; i >= 0; i--) f->hlen = f->hlen << 8 | b[i];   /* little-endian */
    if (f->hlen < 2) {
        rc = wp_fail(e, WP_EINVAL, "%s: header length %" PRIu64 " is less than 2", path, f->hlen);
        goto fail;
    }
    /* wpack's own containers (docs/format.md: .wpk, .wpkz magic) are not a
     * header length: say what the file is rather than a length nonsense */
    if (f->hlen > WP_ST_MAX_HEADER && (!memcmp(b, "\x89WPK\r\n\x1a\n", 8) || !memcmp(b, "\x89WPZ\r\n\x1a\n", 8))) {
        rc = wp_fail(e, WP_EINVAL, "%s: a wpack %s, not a safetensors file", path,
                     b[3] == 'K' ? ".wpk container (a build's file)" : ".wpkz archive (a packed build)");
        goto fail;
    }
    if (f->hlen > WP_ST_MAX_HEADER) {
        rc = wp_fail(e, WP_EINVAL, "%s: header length %" PRIu64 " exceeds the 100 MB limit",
                     path, f->hlen);
        goto fail;
    }
    if (f->hlen > f->size - 8) {
        rc = wp_fail(e, WP_EINVAL, "%s: header length %" PRIu64 " exceeds file size - 8 (%"
                     PRIu64 "; truncated?)", path, f->hlen, f->size - 8);
        goto fail;
    }
    if (!(h = wp_malloc((size_t)f->hlen + 1, e))) {
        rc = WP_ENOMEM;
        goto fail;
    }
    if ((rc = wp_pread_full(f->fd, h, (size_t)f->hlen, 8, path, e))) goto fail;
    h[f->hlen] = 0;
    if ((rc = parse_header(f, h, e))) goto fail;
    free(h);
    *out = f;
    return 0;
fail:
    free(h);
    wp_st_close(f);
    return rc ? rc : WP_EINVAL;
}
