/* manifest.c — canonical JSON and the build manifest (docs/signing.md §1-2). */
#include "trust/manifest.h"

#include <stdlib.h>
#include <string.h>

/* ---- canonical JSON writer ---------------------------------------------------- */

typedef struct sbuf {
    char *p;
    size_t n, cap;
    int oom;
} sbuf;

static void sb_put(sbuf *b, const void *s, size_t n)
{
    if (b->oom) return;
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->n + n + 1) cap *= 2;
        char *q = realloc(b->p, cap);
        if (!q) {
            b->oom = 1;
            return;
        }
        b->p = q;
        b->cap = cap;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = 0;
}

static void sb_str(sbuf *b, const char *s) { sb_put(b, s, strlen(s)); }

/* Strict UTF-8 (RFC 3629): no overlong forms, no surrogates, <= U+10FFFF. */
static int utf8_ok(const unsigned char *s)
{
    while (*s) {
        unsigned c = *s;
        int n;
        unsigned min;
        if (c < 0x80) {
            s++;
            continue;
        } else if ((c & 0xE0) == 0xC0) {
            n = 1, min = 0x80, c &= 0x1F;
        } else if ((c & 0xF0) == 0xE0) {
            n = 2, min = 0x800, c &= 0x0F;
        } else if ((c & 0xF8) == 0xF0) {
            n = 3, min = 0x10000, c &= 0x07;
        } else {
            return 0;
        }
        s++;
        for (int i = 0; i < n; i++, s++) {
            if ((*s & 0xC0) != 0x80) return 0;
            c = c << 6 | (*s & 0x3F);
        }
        if (c < min || c > 0x10FFFF || (c >= 0xD800 && c <= 0xDFFF)) return 0;
    }
    return 1;
}

static int put_string(sbuf *b, const char *s, const char *what, wp_err *e)
{
    if (!utf8_ok((const unsigned char *)s))
        return wp_fail(e, WP_EINVAL, "%s: string is not valid UTF-8", what);
    sb_put(b, "\"", 1);
    const char *run = s;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        const char *esc = NULL;
        char u[8];
        switch (*p) {
        case '"': esc = "\\\""; break;
        case '\\': esc = "\\\\"; break;
        case '\b': esc = "\\b"; break;
        case '\f': esc = "\\f"; break;
        case '\n': esc = "\\n"; break;
        case '\r': esc = "\\r"; break;
        case '\t': esc = "\\t"; break;
        default:
            if (*p < 0x20) {
                snprintf(u, sizeof u, "\\u%04x", *p);
                esc = u;
            }
        }
        if (!esc) continue;
        sb_put(b, run, (size_t)((const char *)p - run));
        sb_str(b, esc);
        run = (const char *)p + 1;
    }
    sb_str(b, run);
    sb_put(b, "\"", 1);
    return 0;
}

static int key_cmp(const void *a, const void *b)
{
    /* strcmp compares as unsigned char: UTF-8 byte order */
    return strcmp((*(const cJSON *const *)a)->string, (*(const cJSON *const *)b)->string);
}

#define MAX_SAFE_INT 9007199254740992.0   /* 2^53: every integer below is exact in a double */

static int put_value(sbuf *b, const cJSON *v, const char *what, int depth, wp_err *e)
{
    if (depth > 64) return wp_fail(e, WP_EINVAL, "%s: JSON nested deeper than 64 levels", what);
    if (cJSON_IsNull(v)) {
        sb_str(b, "null");
    } else if (cJSON_IsTrue(v)) {
        sb_str(b, "true");
    } else if (cJSON_IsFalse(v)) {
        sb_str(b, "false");
    } else if (cJSON_IsNumber(v)) {
        double d = v->valuedouble;
        if (!(d >= -MAX_SAFE_INT && d <= MAX_SAFE_INT) || d != (double)(long long)d)
            return wp_fail(e, WP_EINVAL, "%s: number %.17g is not an integer in [-2^53, 2^53]",
                           what, d);
        char num[32];
        snprintf(num, sizeof num, "%lld", (long long)d);
        sb_str(b, num);
    } else if (cJSON_IsString(v)) {
        return put_string(b, v->valuestring, what, e);
    } else if (cJSON_IsArray(v)) {
        sb_put(b, "[", 1);
        int first = 1;
        for (const cJSON *c = v->child; c; c = c->next) {
            if (!first) sb_put(b, ",", 1);
            first = 0;
            int rc = put_value(b, c, what, depth + 1, e);
            if (rc) return rc;
        }
        sb_put(b, "]", 1);
    } else if (cJSON_IsObject(v)) {
        size_t n = 0;
        for (const cJSON *c = v->child; c; c = c->next) n++;
        const cJSON **kids = wp_calloc(n, sizeof *kids, e);
        if (!kids) return WP_ENOMEM;
        n = 0;
        for (const cJSON *c = v->child; c; c = c->next) kids[n++] = c;
        qsort(kids, n, sizeof *kids, key_cmp);
        sb_put(b, "{", 1);
        int rc = 0;
        for (size_t i = 0; i < n && !rc; i++) {
            if (i && !strcmp(kids[i - 1]->string, kids[i]->string)) {
                rc = wp_fail(e, WP_EINVAL, "%s: duplicate key \"%s\"", what, kids[i]->string);
                break;
            }
            if (i) sb_put(b, ",", 1);
            rc = put_string(b, kids[i]->string, what, e);
            if (!rc) {
                sb_put(b, ":", 1);
                rc = put_value(b, kids[i], what, depth + 1, e);
            }
        }
        free(kids);
        if (rc) return rc;
        sb_put(b, "}", 1);
    } else {
        return wp_fail(e, WP_EINVAL, "%s: unsupported JSON value", what);
    }
    return 0;
}

int wp_json_canonical(const cJSON *v, const char *what, char **out, size_t *len, wp_err *e)
{
    sbuf b = {0};
    *out = NULL;
    int rc = put_value(&b, v, what, 0, e);
    if (!rc && b.oom) rc = wp_oom(e, "%s (serialising JSON)", what);
    if (!rc && !b.p) sb_put(&b, "", 0);   /* never reached for a valid value */
    if (rc) {
        free(b.p);
        return rc;
    }
    *out = b.p;
    if (len) *len = b.n;
    return 0;
}

int wp_json_parse_canonical(const char *buf, size_t len, const char *what, cJSON **out, wp_err *e)
{
    *out = NULL;
    const char *end = NULL;
    cJSON *j = cJSON_ParseWithLengthOpts(buf, len, &end, 0);
    if (!j) {
        size_t at = cJSON_GetErrorPtr() && cJSON_GetErrorPtr() >= buf && cJSON_GetErrorPtr() <= buf + len
                        ? (size_t)(cJSON_GetErrorPtr() - buf) : 0;
        return wp_fail(e, WP_EINVAL, "%s: not valid JSON (near byte %zu)", what, at);
    }
    char *canon = NULL;
    size_t clen = 0;
    int rc = wp_json_canonical(j, what, &canon, &clen, e);
    if (rc) {
        cJSON_Delete(j);
        return rc;
    }
    if (clen != len || memcmp(canon, buf, len)) {
        size_t i = 0;
        while (i < clen && i < len && canon[i] == buf[i]) i++;
        free(canon);
        cJSON_Delete(j);
        return wp_fail(e, WP_EINVAL,
                       "%s: not in canonical form (first difference at byte %zu; docs/signing.md §1)",
                       what, i);
    }
    free(canon);
    *out = j;
    return 0;
}

/* ---- manifest -------------------------------------------------------------------- */

void wp_manifest_free(wp_manifest *m)
{
    if (!m) return;
    for (uint32_t i = 0; i < m->nfiles; i++) free(m->files[i].path);
    for (uint64_t i = 0; i < m->ntensors; i++) free(m->tensors[i].name);
    for (uint32_t i = 0; i < m->nfamilies; i++) free(m->families[i]);
    free(m->files);
    free(m->tensors);
    free(m->families);
    memset(m, 0, sizeof *m);
}

const char *wp_mloss_name(wp_mloss l)
{
    static const char *const n[] = {"", "copy", "exact", "lossy"};
    return (unsigned)l < 4 ? n[l] : "";
}

/* The "loss" fields agree with each other (docs/signing.md §2.2): every
 * tensor has one exactly when the manifest has the summary; lossless exactly
 * when no tensor is lossy, lossy_tensors is 0 and no family is named;
 * families sorted, distinct, non-empty. */
static int check_loss(const wp_manifest *m, const char *what, wp_err *e)
{
    uint64_t lossy = 0;
    for (uint64_t i = 0; i < m->ntensors; i++) {
        const wp_mtensor *t = &m->tensors[i];
        if ((t->loss == WP_MLOSS_NONE) != !m->has_loss || (unsigned)t->loss > WP_MLOSS_LOSSY)
            return wp_fail(e, WP_EINVAL, "%s: tensor %s: \"loss\" must be %s", what, t->name,
                           m->has_loss ? "\"copy\", \"exact\" or \"lossy\" (the manifest has a \"loss\" summary)"
                                       : "absent (the manifest has no \"loss\" summary)");
        lossy += t->loss == WP_MLOSS_LOSSY;
    }
    if (!m->has_loss) return 0;
    if (m->nfamilies > WP_MANIFEST_MAX_FAMILIES)
        return wp_fail(e, WP_EINVAL, "%s: loss: more than %d families", what, WP_MANIFEST_MAX_FAMILIES);
    for (uint32_t i = 0; i < m->nfamilies; i++) {
        if (!m->families[i][0]) return wp_fail(e, WP_EINVAL, "%s: loss: families[%u] is empty", what, i);
        if (i && strcmp(m->families[i - 1], m->families[i]) >= 0)
            return wp_fail(e, WP_EINVAL, "%s: loss: family \"%s\": families not sorted or listed twice", what,
                           m->families[i]);
    }
    if (m->lossless ? (lossy || m->lossy_tensors || m->nfamilies)
                    : (!lossy || !m->lossy_tensors || !m->nfamilies || m->lossy_tensors > lossy))
        return wp_fail(e, WP_EINVAL,
                       "%s: loss: lossless %s with %llu lossy tensor(s) counted, %llu tensor entries marked "
                       "lossy and %u famil%s: inconsistent",
                       what, m->lossless ? "true" : "false", (unsigned long long)m->lossy_tensors,
                       (unsigned long long)lossy, m->nfamilies, m->nfamilies == 1 ? "y" : "ies");
    return 0;
}

int wp_rel_path_ok(const char *p)
{
    if (!p || !*p || *p == '/') return 0;
    for (const unsigned char *s = (const unsigned char *)p; *s; s++)
        if (*s < 0x20 || *s == 0x7F || *s == '\\') return 0;
    const char *c = p;
    for (;;) {
        const char *slash = strchr(c, '/');
        size_t n = slash ? (size_t)(slash - c) : strlen(c);
        if (n == 0) return 0;
        if ((n == 1 && c[0] == '.') || (n == 2 && c[0] == '.' && c[1] == '.')) return 0;
        if (!slash) return 1;
        c = slash + 1;
    }
}

int wp_manifest_find_file(const wp_manifest *m, const char *path)
{
    uint32_t lo = 0, hi = m->nfiles;   /* files are sorted by path */
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        int c = strcmp(m->files[mid].path, path);
        if (!c) return (int)mid;
        if (c < 0) lo = mid + 1;
        else hi = mid;
    }
    return -1;
}

static int tensor_cmp(const wp_mtensor *a, const wp_mtensor *b)
{
    if (a->file != b->file) return a->file < b->file ? -1 : 1;
    if (a->offset != b->offset) return a->offset < b->offset ? -1 : 1;
    return strcmp(a->name, b->name);
}

static int tensor_qcmp(const void *a, const void *b) { return tensor_cmp(a, b); }

static int file_qcmp(const void *a, const void *b)
{
    return strcmp(((const wp_mfile *)a)->path, ((const wp_mfile *)b)->path);
}

/* The invariants of a canonical manifest (docs/signing.md §2.2). */
static int check_order(const wp_manifest *m, const char *what, wp_err *e)
{
    for (uint32_t i = 0; i < m->nfiles; i++) {
        const char *p = m->files[i].path;
        if (!wp_rel_path_ok(p))
            return wp_fail(e, WP_EINVAL, "%s: file \"%s\": path must be relative without '.' or '..' components",
                           what, p);
        if (i && strcmp(m->files[i - 1].path, p) >= 0)
            return wp_fail(e, WP_EINVAL, "%s: file \"%s\": %s", what, p,
                           strcmp(m->files[i - 1].path, p) ? "files not sorted by path" : "listed twice");
    }
    for (uint64_t i = 0; i < m->ntensors; i++) {
        const wp_mtensor *t = &m->tensors[i];
        if (!t->name[0]) return wp_fail(e, WP_EINVAL, "%s: tensor #%llu has an empty name", what,
                                        (unsigned long long)i);
        if (t->file >= m->nfiles)
            return wp_fail(e, WP_EINVAL, "%s: tensor %s: file index out of range", what, t->name);
        const wp_mfile *f = &m->files[t->file];
        uint64_t end;
        if (wp_add_u64(t->offset, t->size, &end) || end > f->size)
            return wp_fail(e, WP_EINVAL, "%s: tensor %s: bytes [%llu, %llu) past the end of %s (%llu bytes)",
                           what, t->name, (unsigned long long)t->offset,
                           (unsigned long long)t->offset + t->size, f->path, (unsigned long long)f->size);
        if (!i) continue;
        const wp_mtensor *p = &m->tensors[i - 1];
        if (tensor_cmp(p, t) >= 0)
            return wp_fail(e, WP_EINVAL, "%s: tensor %s in %s: %s", what, t->name, f->path,
                           tensor_cmp(p, t) ? "tensors not sorted by (file, offset)" : "listed twice");
        if (p->file == t->file && p->offset + p->size > t->offset)
            return wp_fail(e, WP_EINVAL, "%s: tensor %s in %s: bytes [%llu, %llu) overlap tensor %s", what,
                           t->name, f->path, (unsigned long long)t->offset,
                           (unsigned long long)(t->offset + t->size), p->name);
    }
    return 0;
}

static int file_name_cmp(const void *a, const void *b)
{
    const wp_mtensor *x = *(const wp_mtensor *const *)a, *y = *(const wp_mtensor *const *)b;
    if (x->file != y->file) return x->file < y->file ? -1 : 1;
    return strcmp(x->name, y->name);
}

/* A name may repeat across files (one slice per rank), never within one. */
static int check_names(const wp_manifest *m, const char *what, wp_err *e)
{
    if (m->ntensors < 2) return 0;
    const wp_mtensor **v = wp_calloc((size_t)m->ntensors, sizeof *v, e);
    if (!v) return WP_ENOMEM;
    for (uint64_t i = 0; i < m->ntensors; i++) v[i] = &m->tensors[i];
    qsort(v, (size_t)m->ntensors, sizeof *v, file_name_cmp);
    int rc = 0;
    for (uint64_t i = 1; i < m->ntensors && !rc; i++)
        if (!file_name_cmp(&v[i - 1], &v[i]))
            rc = wp_fail(e, WP_EINVAL, "%s: tensor %s listed twice in %s", what, v[i]->name,
                         m->files[v[i]->file].path);
    free(v);
    return rc;
}

static void put_u32(wp_sha256 *h, uint32_t v)
{
    uint8_t b[4];
    for (int i = 0; i < 4; i++) b[i] = (uint8_t)(v >> (8 * i));
    wp_sha256_update(h, b, 4);
}

static void put_u64(wp_sha256 *h, uint64_t v)
{
    uint8_t b[8];
    for (int i = 0; i < 8; i++) b[i] = (uint8_t)(v >> (8 * i));
    wp_sha256_update(h, b, 8);
}

/* docs/signing.md §2.3: length-prefixed little-endian records, so no two
 * different manifests can feed the same bytes to the hash. */
void wp_manifest_root(const wp_manifest *m, uint8_t out[WP_SHA256_LEN])
{
    static const char tag[] = "wpack-manifest-root-v1";   /* hashed with its NUL */
    wp_sha256 h;
    if (wp_sha256_init(&h, NULL)) {
        memset(out, 0, WP_SHA256_LEN);
        return;
    }
    wp_sha256_update(&h, tag, sizeof tag);
    put_u32(&h, m->nfiles);
    for (uint32_t i = 0; i < m->nfiles; i++) {
        const wp_mfile *f = &m->files[i];
        size_t n = strlen(f->path);
        put_u32(&h, (uint32_t)n);
        wp_sha256_update(&h, f->path, n);
        put_u64(&h, f->size);
        wp_sha256_update(&h, f->sha256, WP_SHA256_LEN);
        wp_sha256_update(&h, f->nontensor_sha256, WP_SHA256_LEN);
    }
    put_u64(&h, m->ntensors);
    for (uint64_t i = 0; i < m->ntensors; i++) {
        const wp_mtensor *t = &m->tensors[i];
        size_t n = strlen(t->name);
        put_u32(&h, t->file);
        put_u32(&h, (uint32_t)n);
        wp_sha256_update(&h, t->name, n);
        put_u64(&h, t->offset);
        put_u64(&h, t->size);
        wp_sha256_update(&h, t->sha256, WP_SHA256_LEN);
    }
    if (m->has_loss) {   /* §2.3: only when present, so older manifests keep their root */
        uint8_t b = (uint8_t)(m->lossless ? 1 : 0);
        wp_sha256_update(&h, "loss", 4);
        wp_sha256_update(&h, &b, 1);
        put_u64(&h, m->lossy_tensors);
        put_u32(&h, m->nfamilies);
        for (uint32_t i = 0; i < m->nfamilies; i++) {
            size_t n = strlen(m->families[i]);
            put_u32(&h, (uint32_t)n);
            wp_sha256_update(&h, m->families[i], n);
        }
        for (uint64_t i = 0; i < m->ntensors; i++) {
            b = (uint8_t)m->tensors[i].loss;
            wp_sha256_update(&h, &b, 1);
        }
    }
    wp_sha256_final(&h, out);
}

int wp_manifest_finish(wp_manifest *m, wp_err *e)
{
    /* sort files, remembering where each went so tensor indices follow */
    uint32_t *where = wp_calloc(m->nfiles, sizeof *where, e);
    char **old = wp_calloc(m->nfiles, sizeof *old, e);
    if (!where || !old) {
        free(where);
        free(old);
        return WP_ENOMEM;
    }
    for (uint32_t i = 0; i < m->nfiles; i++) old[i] = m->files[i].path;
    qsort(m->files, m->nfiles, sizeof *m->files, file_qcmp);
    for (uint32_t i = 0; i < m->nfiles; i++)
        for (uint32_t j = 0; j < m->nfiles; j++)
            if (m->files[j].path == old[i]) where[i] = j;
    int rc = 0;
    for (uint64_t i = 0; i < m->ntensors && !rc; i++) {
        if (m->tensors[i].file >= m->nfiles)
            rc = wp_fail(e, WP_EINVAL, "manifest: tensor %s: file index out of range", m->tensors[i].name);
        else
            m->tensors[i].file = where[m->tensors[i].file];
    }
    free(where);
    free(old);
    if (rc) return rc;
    qsort(m->tensors, (size_t)m->ntensors, sizeof *m->tensors, tensor_qcmp);
    rc = check_order(m, "manifest", e);
    if (!rc) rc = check_names(m, "manifest", e);
    if (!rc) rc = check_loss(m, "manifest", e);
    if (!rc) wp_manifest_root(m, m->root);
    return rc;
}

static cJSON *hex_item(const uint8_t d[WP_SHA256_LEN])
{
    char hex[2 * WP_SHA256_LEN + 1];
    wp_hex(d, WP_SHA256_LEN, hex);
    return cJSON_CreateString(hex);
}

int wp_manifest_serialize(const wp_manifest *m, char **out, size_t *len, wp_err *e)
{
    *out = NULL;
    cJSON *doc = cJSON_CreateObject(), *files = cJSON_CreateArray(), *tensors = cJSON_CreateArray();
    int ok = doc && files && tensors;
    if (ok) {
        cJSON_AddItemToObject(doc, "files", files);
        cJSON_AddItemToObject(doc, "tensors", tensors);
    } else {
        cJSON_Delete(files);
        cJSON_Delete(tensors);
    }
    ok = ok && cJSON_AddStringToObject(doc, "format", "wpack-manifest") &&
         cJSON_AddNumberToObject(doc, "version", 1);
    if (ok && m->has_loss) {
        cJSON *lo = cJSON_AddObjectToObject(doc, "loss");
        cJSON *fa = lo ? cJSON_AddArrayToObject(lo, "families") : NULL;
        ok = fa && cJSON_AddBoolToObject(lo, "lossless", m->lossless) &&
             cJSON_AddNumberToObject(lo, "lossy_tensors", (double)m->lossy_tensors);
        for (uint32_t i = 0; ok && i < m->nfamilies; i++) {
            cJSON *x = cJSON_CreateString(m->families[i]);
            ok = x != NULL;
            if (ok) cJSON_AddItemToArray(fa, x);
        }
    }
    cJSON *root = ok ? hex_item(m->root) : NULL;
    ok = ok && root;
    if (ok) cJSON_AddItemToObject(doc, "root_sha256", root);
    for (uint32_t i = 0; ok && i < m->nfiles; i++) {
        const wp_mfile *f = &m->files[i];
        cJSON *o = cJSON_CreateObject(), *a = hex_item(f->sha256), *b = hex_item(f->nontensor_sha256);
        ok = o && a && b;
        if (!ok) {
            cJSON_Delete(o);
            cJSON_Delete(a);
            cJSON_Delete(b);
            break;
        }
        cJSON_AddItemToArray(files, o);
        cJSON_AddItemToObject(o, "sha256", a);
        cJSON_AddItemToObject(o, "nontensor_sha256", b);
        ok = cJSON_AddStringToObject(o, "path", f->path) &&
             cJSON_AddNumberToObject(o, "size", (double)f->size);
    }
    for (uint64_t i = 0; ok && i < m->ntensors; i++) {
        const wp_mtensor *t = &m->tensors[i];
        cJSON *o = cJSON_CreateObject(), *a = hex_item(t->sha256);
        ok = o && a && t->file < m->nfiles;
        if (!ok) {
            cJSON_Delete(o);
            cJSON_Delete(a);
            break;
        }
        cJSON_AddItemToArray(tensors, o);
        cJSON_AddItemToObject(o, "sha256", a);
        ok = cJSON_AddStringToObject(o, "name", t->name) &&
             cJSON_AddStringToObject(o, "file", m->files[t->file].path) &&
             cJSON_AddNumberToObject(o, "offset", (double)t->offset) &&
             cJSON_AddNumberToObject(o, "size", (double)t->size);
        if (ok && m->has_loss) ok = cJSON_AddStringToObject(o, "loss", wp_mloss_name(t->loss)) != NULL;
    }
    int rc = ok ? wp_json_canonical(doc, "manifest", out, len, e)
                : wp_oom(e, "manifest (building JSON)");
    cJSON_Delete(doc);
    return rc;
}

/* ---- strict reading -------------------------------------------------------- */

/* Require exactly the keys in `keys` (NULL-terminated), nothing else. */
static int exact_keys(const cJSON *o, const char *const *keys, const char *what, const char *obj,
                      wp_err *e)
{
    if (!cJSON_IsObject(o)) return wp_fail(e, WP_EINVAL, "%s: %s: expected a JSON object", what, obj);
    size_t want = 0;
    for (; keys[want]; want++)
        if (!cJSON_GetObjectItemCaseSensitive(o, keys[want]))
            return wp_fail(e, WP_EINVAL, "%s: %s: missing key \"%s\"", what, obj, keys[want]);
    for (const cJSON *c = o->child; c; c = c->next) {
        int known = 0;
        for (size_t k = 0; k < want && !known; k++) known = !strcmp(c->string, keys[k]);
        if (!known) return wp_fail(e, WP_EINVAL, "%s: %s: unknown key \"%s\"", what, obj, c->string);
    }
    return 0;
}

static int get_u64(const cJSON *o, const char *key, uint64_t *v, const char *what, const char *obj,
                   wp_err *e)
{
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(o, key);
    double d = cJSON_IsNumber(it) ? it->valuedouble : -1;
    /* the canonical check already guarantees an exact integer <= 2^53 */
    if (!cJSON_IsNumber(it) || d < 0 || d > MAX_SAFE_INT || d != (double)(uint64_t)d)
        return wp_fail(e, WP_EINVAL, "%s: %s: \"%s\" must be a non-negative integer", what, obj, key);
    *v = (uint64_t)d;
    return 0;
}

static int get_hex(const cJSON *o, const char *key, uint8_t out[WP_SHA256_LEN], const char *what,
                   const char *obj, wp_err *e)
{
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(o, key);
    const char *s = cJSON_IsString(it) ? it->valuestring : NULL;
    /* lowercase only: one digest, one spelling */
    int ok = s && strlen(s) == 2 * WP_SHA256_LEN && !wp_unhex(s, out, WP_SHA256_LEN);
    for (const char *p = s; ok && *p; p++)
        if (*p >= 'A' && *p <= 'F') ok = 0;
    if (!ok) return wp_fail(e, WP_EINVAL, "%s: %s: \"%s\" must be 64 lowercase hex digits", what, obj, key);
    return 0;
}

static const char *get_str(const cJSON *o, const char *key)
{
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsString(it) ? it->valuestring : NULL;
}

int wp_manifest_parse(const char *buf, size_t len, const char *what, wp_manifest *m, wp_err *e)
{
    memset(m, 0, sizeof *m);
    cJSON *doc = NULL;
    int rc = wp_json_parse_canonical(buf, len, what, &doc, e);
    if (rc) return rc;
    static const char *const top[] = {"files", "format", "root_sha256", "tensors", "version", NULL};
    static const char *const top_loss[] = {"files", "format", "loss", "root_sha256", "tensors", "version", NULL};
    static const char *const fk[] = {"nontensor_sha256", "path", "sha256", "size", NULL};
    static const char *const tk[] = {"file", "name", "offset", "sha256", "size", NULL};
    static const char *const tk_loss[] = {"file", "loss", "name", "offset", "sha256", "size", NULL};
    static const char *const lk[] = {"families", "lossless", "lossy_tensors", NULL};
    uint8_t root[WP_SHA256_LEN];
    uint64_t version = 0;
    /* "loss" (docs/signing.md §2.1) is optional: builds before it have none */
    const cJSON *loss = cJSON_GetObjectItemCaseSensitive(doc, "loss");
    m->has_loss = loss != NULL;
    rc = exact_keys(doc, m->has_loss ? top_loss : top, what, "top level", e);
    if (!rc && loss) rc = exact_keys(loss, lk, what, "loss", e);
    if (!rc && loss) {
        const cJSON *ll = cJSON_GetObjectItemCaseSensitive(loss, "lossless");
        const cJSON *fa = cJSON_GetObjectItemCaseSensitive(loss, "families");
        if (!cJSON_IsBool(ll)) rc = wp_fail(e, WP_EINVAL, "%s: loss: \"lossless\" must be true or false", what);
        if (!rc) rc = get_u64(loss, "lossy_tensors", &m->lossy_tensors, what, "loss", e);
        if (!rc && !cJSON_IsArray(fa)) rc = wp_fail(e, WP_EINVAL, "%s: loss: \"families\" must be an array", what);
        if (!rc && cJSON_GetArraySize(fa) > WP_MANIFEST_MAX_FAMILIES)
            rc = wp_fail(e, WP_EINVAL, "%s: loss: more than %d families", what, WP_MANIFEST_MAX_FAMILIES);
        if (!rc) {
            m->lossless = cJSON_IsTrue(ll);
            m->families = wp_calloc((size_t)cJSON_GetArraySize(fa) + 1, sizeof *m->families, e);
            if (!m->families) rc = WP_ENOMEM;
        }
        for (const cJSON *x = rc ? NULL : fa->child; x && !rc; x = x->next) {
            if (!cJSON_IsString(x))
                rc = wp_fail(e, WP_EINVAL, "%s: loss: families[%u] must be a string", what, m->nfamilies);
            else if (!(m->families[m->nfamilies] = wp_strdup(x->valuestring, e)))
                rc = WP_ENOMEM;
            else
                m->nfamilies++;
        }
    }
    if (!rc && (!get_str(doc, "format") || strcmp(get_str(doc, "format"), "wpack-manifest")))
        rc = wp_fail(e, WP_EINVAL, "%s: \"format\" must be \"wpack-manifest\"", what);
    if (!rc) rc = get_u64(doc, "version", &version, what, "top level", e);
    if (!rc && version != 1)
        rc = wp_fail(e, WP_EINVAL, "%s: manifest version %llu is not supported (this wpack reads 1)", what,
                     (unsigned long long)version);
    if (!rc) rc = get_hex(doc, "root_sha256", root, what, "top level", e);
    const cJSON *files = cJSON_GetObjectItemCaseSensitive(doc, "files");
    const cJSON *tensors = cJSON_GetObjectItemCaseSensitive(doc, "tensors");
    if (!rc && (!cJSON_IsArray(files) || !cJSON_IsArray(tensors)))
        rc = wp_fail(e, WP_EINVAL, "%s: \"files\" and \"tensors\" must be arrays", what);
    if (!rc) {
        int nf = cJSON_GetArraySize(files), nt = cJSON_GetArraySize(tensors);
        m->files = wp_calloc((size_t)nf, sizeof *m->files, e);
        m->tensors = wp_calloc((size_t)nt, sizeof *m->tensors, e);
        if (!m->files || !m->tensors) rc = WP_ENOMEM;
    }
    char obj[96];
    for (const cJSON *f = rc ? NULL : files->child; f && !rc; f = f->next) {
        snprintf(obj, sizeof obj, "files[%u]", m->nfiles);
        wp_mfile *mf = &m->files[m->nfiles];
        rc = exact_keys(f, fk, what, obj, e);
        if (!rc && !get_str(f, "path")) rc = wp_fail(e, WP_EINVAL, "%s: %s: \"path\" must be a string", what, obj);
        if (!rc && !(mf->path = wp_strdup(get_str(f, "path"), e))) rc = WP_ENOMEM;
        if (rc) break;
        m->nfiles++;
        snprintf(obj, sizeof obj, "file %.80s", mf->path);
        rc = get_u64(f, "size", &mf->size, what, obj, e);
        if (!rc) rc = get_hex(f, "sha256", mf->sha256, what, obj, e);
        if (!rc) rc = get_hex(f, "nontensor_sha256", mf->nontensor_sha256, what, obj, e);
    }
    if (!rc) rc = check_order(m, what, e);   /* files sorted: wp_manifest_find_file works */
    for (const cJSON *t = rc ? NULL : tensors->child; t && !rc; t = t->next) {
        snprintf(obj, sizeof obj, "tensors[%llu]", (unsigned long long)m->ntensors);
        wp_mtensor *mt = &m->tensors[m->ntensors];
        rc = exact_keys(t, m->has_loss ? tk_loss : tk, what, obj, e);
        if (!rc && (!get_str(t, "name") || !get_str(t, "file")))
            rc = wp_fail(e, WP_EINVAL, "%s: %s: \"name\" and \"file\" must be strings", what, obj);
        if (!rc && !(mt->name = wp_strdup(get_str(t, "name"), e))) rc = WP_ENOMEM;
        if (rc) break;
        m->ntensors++;
        snprintf(obj, sizeof obj, "tensor %.80s", mt->name);
        int fi = wp_manifest_find_file(m, get_str(t, "file"));
        if (fi < 0)
            rc = wp_fail(e, WP_EINVAL, "%s: %s: file \"%s\" is not listed in \"files\"", what, obj,
                         get_str(t, "file"));
        mt->file = (uint32_t)(fi < 0 ? 0 : fi);
        if (!rc) rc = get_u64(t, "offset", &mt->offset, what, obj, e);
        if (!rc) rc = get_u64(t, "size", &mt->size, what, obj, e);
        if (!rc) rc = get_hex(t, "sha256", mt->sha256, what, obj, e);
        if (!rc && m->has_loss) {
            const char *ls = get_str(t, "loss");
            for (int l = WP_MLOSS_COPY; ls && l <= WP_MLOSS_LOSSY && !mt->loss; l++)
                if (!strcmp(ls, wp_mloss_name((wp_mloss)l))) mt->loss = (wp_mloss)l;
            if (!mt->loss)
                rc = wp_fail(e, WP_EINVAL, "%s: %s: \"loss\" must be \"copy\", \"exact\" or \"lossy\"", what, obj);
        }
    }
    if (!rc) rc = check_order(m, what, e);
    if (!rc) rc = check_names(m, what, e);
    if (!rc) rc = check_loss(m, what, e);
    if (!rc) {
        wp_manifest_root(m, m->root);
        if (memcmp(root, m->root, WP_SHA256_LEN)) {
            char a[65], b[65];
            wp_hex(root, WP_SHA256_LEN, a);
            wp_hex(m->root, WP_SHA256_LEN, b);
            rc = wp_fail(e, WP_EVERIFY, "%s: root_sha256 %s does not match the listed files and tensors (%s)",
                         what, a, b);
        }
    }
    cJSON_Delete(doc);
    if (rc) wp_manifest_free(m);
    return rc;
}

int wp_manifest_write(const char *build_dir, const wp_manifest *m, wp_err *e)
{
    char path[4096];
    if (wp_path_join(path, sizeof path, build_dir, WP_MANIFEST_NAME))
        return wp_fail(e, WP_EUSAGE, "%s: path too long", build_dir);
    char *buf = NULL;
    size_t len = 0;
    int rc = wp_manifest_serialize(m, &buf, &len, e);
    if (!rc) rc = wp_write_file_atomic(path, buf, len, e);
    free(buf);
    return rc;
}
