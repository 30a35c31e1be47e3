/*
 * wpk_read.c — the .wpk validator (shared with the writer) and reader
 * (docs/format.md §2).  Every number read from a file is checked before it is
 * used as an offset, size or index; the layout is canonical, so "where must
 * this tensor start" has exactly one answer and gaps or overlaps cannot hide.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "format/wpk_internal.h"

/* ---- Encodings (docs/format.md §2.3) ------------------------------------------- */

static const char *const enc_names[WP_ENC_COUNT] = {"bf16", "f32", "f16", "fp8", "mxfp4", "nvfp4"};
static const char *const dtype_names[WP_DTYPE_COUNT] = {
    "BOOL", "U8", "I8", "I16", "U16", "I32", "U32", "I64", "U64", "F16",
    "BF16", "F32", "F64", "F8_E4M3", "F8_E5M2", "F8_E8M0", "F4", "F6_E2M3", "F6_E3M2"};
static const unsigned char dtype_bits[WP_DTYPE_COUNT] = {8, 8, 8, 16, 16, 32, 32, 64, 64, 16,
                                                         16, 32, 64, 8, 8, 8, 4, 6, 6};

unsigned wpk_dtype_bits(wp_dtype t) { return (unsigned)t < WP_DTYPE_COUNT ? dtype_bits[t] : 0; }

unsigned wpk_code_of(wpk_kind kind, wp_enc enc, wp_dtype dtype)
{
    if (kind == WPK_KIND_RAW) return (unsigned)dtype < WP_DTYPE_COUNT ? WPK_CODE_RAW + dtype : 0;
    return (unsigned)enc < WP_ENC_COUNT ? 1u + enc : 0;
}

/* code -> kind/enc/dtype; -1 if unknown. */
static int decode_code(unsigned code, wpk_kind *kind, wp_enc *enc, wp_dtype *dtype)
{
    if (code >= 1 && code <= WP_ENC_COUNT) {
        *kind = WPK_KIND_ENC;
        *enc = (wp_enc)(code - 1);
        return 0;
    }
    if (code >= WPK_CODE_RAW && code < WPK_CODE_RAW + WP_DTYPE_COUNT) {
        *kind = WPK_KIND_RAW;
        *dtype = (wp_dtype)(code - WPK_CODE_RAW);
        return 0;
    }
    return -1;
}

const char *wpk_code_name(unsigned code)
{
    wpk_kind k;
    wp_enc en = WP_ENC_BF16;
    wp_dtype dt = WP_U8;
    if (decode_code(code, &k, &en, &dt)) return NULL;
    return k == WPK_KIND_ENC ? enc_names[en] : dtype_names[dt];
}

const char *wpk_tensor_enc_name(const wpk_tensor *t)
{
    return wpk_code_name(wpk_code_of(t->kind, t->enc, t->dtype));
}

int wpk_tensor_bytes(wpk_kind kind, wp_enc enc, wp_dtype dtype, int ndim, const uint64_t *shape,
                     int stacked, uint64_t *out)
{
    if (ndim < 0 || ndim > WP_MAX_DIMS) return -1;
    int s = stacked ? 1 : 0;
    if (stacked && (ndim < 1 || shape[0] == 0)) return -1;
    uint64_t experts = stacked ? shape[0] : 1, per = 1;
    if (kind == WPK_KIND_RAW) {
        if ((unsigned)dtype >= WP_DTYPE_COUNT) return -1;
        for (int i = s; i < ndim; i++)
            if (wp_mul_u64(per, shape[i], &per)) return -1;
        if (wp_mul_u64(per, dtype_bits[dtype], &per) || per % 8) return -1;
        per /= 8;
    } else {
        int m = ndim - s;   /* dims of one expert */
        switch (enc) {
        case WP_ENC_BF16: case WP_ENC_F16: case WP_ENC_F32:
            if (m < 1) return -1;
            for (int i = s; i < ndim; i++)
                if (wp_mul_u64(per, shape[i], &per)) return -1;
            if (wp_mul_u64(per, enc == WP_ENC_F32 ? 4 : 2, &per)) return -1;
            break;
        case WP_ENC_FP8: case WP_ENC_MXFP4: case WP_ENC_NVFP4: {
            if (m != 2) return -1;
            uint64_t rows = shape[s], cols = shape[s + 1];
            if (enc == WP_ENC_MXFP4 && cols % 32) return -1;   /* spec §3.5: 1x32 groups */
            if (enc == WP_ENC_NVFP4 && cols % 16) return -1;   /* 1x16 groups */
            if (enc != WP_ENC_FP8) cols /= 2;                  /* two e2m1 per byte */
            if (wp_mul_u64(rows, cols, &per)) return -1;
            break;
        }
        default:
            return -1;
        }
    }
    return wp_mul_u64(experts, per, out) ? -1 : 0;
}

const char *wpk_name_problem(const char *s, size_t len)
{
    if (len == 0) return "empty name";
    if (len > WPK_MAX_NAME) return "name longer than 1024 bytes";
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x21 || c > 0x7E) return "name has a byte outside 0x21..0x7E";
    }
    return NULL;
}

/* ---- The structural validator ---------------------------------------------------- */

static int all_zero(const void *p, size_t n)
{
    const uint8_t *b = p;
    for (size_t i = 0; i < n; i++)
        if (b[i]) return 0;
    return 1;
}

/* A ref into the string area: in range, NUL-terminated, no NUL inside. */
const char *wpk_ref_problem(const uint8_t *str, uint64_t str_size, wpk_ref r)
{
    if (r.len >= str_size || r.off > str_size - r.len - 1) return "out of the string area";
    if (str[r.off + r.len] != 0) return "not NUL-terminated";
    if (memchr(str + r.off, 0, r.len)) return "contains a NUL byte";
    return NULL;
}

int wpk_header_digest(const uint8_t *region, uint64_t data_offset, uint8_t out[32], wp_err *e)
{
    static const uint8_t zeros[32];
    wp_sha256 h;
    if (wp_sha256_init(&h, e)) return WP_ENOMEM;
    size_t at = offsetof(wpk_hdr, header_sha256);
    wp_sha256_update(&h, region, at);
    wp_sha256_update(&h, zeros, 32);
    wp_sha256_update(&h, region + at + 32, data_offset - at - 32);
    wp_sha256_final(&h, out);
    return 0;
}

void wpk_parsed_free(wpk_parsed *p)
{
    free(p->t);
    free((void *)p->srcs);
    free(p->sorted);
    memset(p, 0, sizeof *p);
}

typedef struct name_ix {
    const char *name;
    uint32_t i;
} name_ix;

static int cmp_name_ix(const void *a, const void *b)
{
    int c = strcmp(((const name_ix *)a)->name, ((const name_ix *)b)->name);
    if (c) return c;
    uint32_t x = ((const name_ix *)a)->i, y = ((const name_ix *)b)->i;
    return (x > y) - (x < y);
}

static int check_json(const uint8_t *str, uint64_t str_size, wpk_ref r, const char *what,
                      const char *path, const char **out, wp_err *e)
{
    const char *why = wpk_ref_problem(str, str_size, r);
    if (why) return wp_fail(e, WP_EINVAL, "%s: %s ref [%llu, +%llu) %s", path, what,
                            (unsigned long long)r.off, (unsigned long long)r.len, why);
    const char *s = (const char *)str + r.off;
    cJSON *j = cJSON_ParseWithLength(s, (size_t)r.len);
    int ok = j && cJSON_IsObject(j);
    cJSON_Delete(j);
    if (!ok) return wp_fail(e, WP_EINVAL, "%s: %s is not a JSON object", path, what);
    *out = s;
    return 0;
}

/* Expected dtype/shape of the scale (role 0) or NVFP4 global (role 1) of w. */
static void expected_aux(const wpk_tensor *w, int role, wp_dtype *dt, int *ndim, uint64_t shape[8])
{
    int s = w->stacked ? 1 : 0, k = 0;
    memset(shape, 0, 8 * sizeof shape[0]);
    if (s) shape[k++] = w->shape[0];
    if (role == 1) {
        *dt = WP_F32;   /* one f32 global per matrix: [1], or [E] stacked */
        if (!s) shape[k++] = 1;
        *ndim = k;
        return;
    }
    uint64_t rows = w->shape[s], cols = w->shape[s + 1];
    switch (w->enc) {
    case WP_ENC_FP8:
        *dt = w->sfmt == WP_SCALE_F32 ? WP_F32 : WP_F8_E8M0;
        shape[k++] = (rows + w->br - 1) / w->br;
        shape[k++] = (cols + w->bc - 1) / w->bc;
        break;
    case WP_ENC_MXFP4:
        *dt = WP_F8_E8M0;
        shape[k++] = rows;
        shape[k++] = cols / 32;
        break;
    default:   /* NVFP4 */
        *dt = WP_F8_E4M3;
        shape[k++] = rows;
        shape[k++] = cols / 16;
        break;
    }
    *ndim = k;
}

static void shape_str(const uint64_t *shape, int ndim, char *buf, size_t sz)
{
    size_t n = (size_t)snprintf(buf, sz, "[");
    for (int i = 0; i < ndim && n < sz; i++)
        n += (size_t)snprintf(buf + n, sz - n, "%s%llu", i ? ", " : "", (unsigned long long)shape[i]);
    if (n < sz) snprintf(buf + n, sz - n, "]");
}

static int is_quantised(const wpk_tensor *t)
{
    return t->kind == WPK_KIND_ENC &&
           (t->enc == WP_ENC_FP8 || t->enc == WP_ENC_MXFP4 || t->enc == WP_ENC_NVFP4);
}

/* Per-entry rules that need only the entry itself (docs/format.md §2.2-2.4). */
static int parse_entry(const wpk_dirent *d, uint32_t i, const uint8_t *str, uint64_t str_size,
                       const wpk_hdr *h, const char *path, wpk_tensor *t, wp_err *e)
{
    wpk_ref nr = {d->name_off, d->name_len};
    const char *why = wpk_ref_problem(str, str_size, nr);
    if (why) return wp_fail(e, WP_EINVAL, "%s: tensor #%u: name ref [%llu, +%u) %s", path, i,
                            (unsigned long long)d->name_off, d->name_len, why);
    t->name = (const char *)str + d->name_off;
    if ((why = wpk_name_problem(t->name, d->name_len)))
        return wp_fail(e, WP_EINVAL, "%s: tensor #%u: %s", path, i, why);
    const char *nm = t->name;
    t->index = i;
    if (decode_code(d->enc, &t->kind, &t->enc, &t->dtype))
        return wp_fail(e, WP_EINVAL, "%s: %s: unknown encoding code %u", path, nm, d->enc);
    if (d->flags & ~WPK_FLAG_STACKED)
        return wp_fail(e, WP_EINVAL, "%s: %s: unknown flags 0x%x", path, nm, d->flags);
    if (!all_zero(d->reserved1, sizeof d->reserved1) || d->reserved2 ||
        !all_zero(d->reserved3, sizeof d->reserved3))
        return wp_fail(e, WP_EINVAL, "%s: %s: reserved bytes are not zero", path, nm);
    if (d->ndim > WP_MAX_DIMS)
        return wp_fail(e, WP_EINVAL, "%s: %s: ndim %u > %d", path, nm, d->ndim, WP_MAX_DIMS);
    t->ndim = d->ndim;
    for (int k = 0; k < WP_MAX_DIMS; k++) {
        if (k >= t->ndim && d->shape[k])
            return wp_fail(e, WP_EINVAL, "%s: %s: shape[%d] = %llu beyond ndim %d", path, nm, k,
                           (unsigned long long)d->shape[k], t->ndim);
        t->shape[k] = d->shape[k];
    }
    t->stacked = d->flags & WPK_FLAG_STACKED;
    char sh[200];
    shape_str(t->shape, t->ndim, sh, sizeof sh);
    const char *en = wpk_tensor_enc_name(t);
    uint64_t want;
    if (wpk_tensor_bytes(t->kind, t->enc, t->dtype, t->ndim, t->shape, t->stacked, &want))
        return wp_fail(e, WP_EINVAL, "%s: %s: shape %s%s is not valid for %s", path, nm, sh,
                       t->stacked ? " (stacked)" : "", en);
    if (d->size != want)
        return wp_fail(e, WP_EINVAL, "%s: %s: size %llu != %llu from %s %s", path, nm,
                       (unsigned long long)d->size, (unsigned long long)want, en, sh);
    t->offset = d->offset;
    t->size = d->size;
    t->n_experts = t->stacked ? t->shape[0] : 0;
    uint64_t stride = t->stacked ? t->size / t->n_experts : 0;
    if (d->expert_stride != stride)
        return wp_fail(e, WP_EINVAL, "%s: %s: expert_stride %llu != %llu", path, nm,
                       (unsigned long long)d->expert_stride, (unsigned long long)stride);
    t->expert_stride = stride;
    /* Scale layout fields, fixed per encoding (docs/format.md §2.2). */
    uint32_t br = 0, bc = 0;
    if (t->kind == WPK_KIND_ENC && t->enc == WP_ENC_MXFP4) br = 1, bc = 32;
    if (t->kind == WPK_KIND_ENC && t->enc == WP_ENC_NVFP4) br = 1, bc = 16;
    if (t->kind == WPK_KIND_ENC && t->enc == WP_ENC_FP8) {
        if (d->block_rows == 0 || d->block_cols == 0)
            return wp_fail(e, WP_EINVAL, "%s: %s: fp8 block %ux%u has a zero side", path, nm,
                           d->block_rows, d->block_cols);
        if (d->scale_fmt > 1)
            return wp_fail(e, WP_EINVAL, "%s: %s: unknown scale_fmt %u", path, nm, d->scale_fmt);
        br = d->block_rows, bc = d->block_cols;
    } else if (d->scale_fmt) {
        return wp_fail(e, WP_EINVAL, "%s: %s: scale_fmt %u set for %s", path, nm, d->scale_fmt, en);
    }
    if (d->block_rows != br || d->block_cols != bc)
        return wp_fail(e, WP_EINVAL, "%s: %s: scale block %ux%u, %s needs %ux%u", path, nm,
                       d->block_rows, d->block_cols, en, br, bc);
    t->br = br, t->bc = bc;
    t->sfmt = d->scale_fmt ? WP_SCALE_F32 : WP_SCALE_E8M0;
    t->scale = d->scale_index;
    t->global = d->global_index;
    t->owner = d->owner_index;
    uint64_t n = h->tensor_count;
    if ((t->scale != WPK_NONE && t->scale >= n) || (t->global != WPK_NONE && t->global >= n) ||
        (t->owner != WPK_NONE && t->owner >= n))
        return wp_fail(e, WP_EINVAL, "%s: %s: scale/global/owner index out of range (%llu tensors)",
                       path, nm, (unsigned long long)n);
    if (t->scale == i || t->global == i || t->owner == i)
        return wp_fail(e, WP_EINVAL, "%s: %s: refers to itself", path, nm);
    uint64_t src_end;
    if (wp_add_u64(d->src_first, d->src_count, &src_end) || src_end > h->src_count)
        return wp_fail(e, WP_EINVAL, "%s: %s: sources [%llu, +%u) past the source table (%llu)",
                       path, nm, (unsigned long long)d->src_first, d->src_count,
                       (unsigned long long)h->src_count);
    if (t->stacked && d->src_count % t->n_experts)
        return wp_fail(e, WP_EINVAL, "%s: %s: %u sources is not a multiple of %llu experts", path,
                       nm, d->src_count, (unsigned long long)t->n_experts);
    t->n_sources = d->src_count;
    memcpy(t->sha256, d->sha256, 32);
    return 0;
}

/* The ties between weights and their scale/global entries (docs/format.md §2.4). */
static int check_ties(const wpk_parsed *p, const char *path, wp_err *e)
{
    for (size_t i = 0; i < p->n; i++) {
        const wpk_tensor *t = &p->t[i];
        int q = is_quantised(t), nv = q && t->enc == WP_ENC_NVFP4;
        if (q && t->scale == WPK_NONE)
            return wp_fail(e, WP_EINVAL, "%s: %s: %s weight has no scale entry", path, t->name,
                           wpk_tensor_enc_name(t));
        if (!q && t->scale != WPK_NONE)
            return wp_fail(e, WP_EINVAL, "%s: %s: %s entry has a scale entry", path, t->name,
                           wpk_tensor_enc_name(t));
        if (nv != (t->global != WPK_NONE))
            return wp_fail(e, WP_EINVAL, "%s: %s: %s global-scale entry", path, t->name,
                           nv ? "nvfp4 weight has no" : "only nvfp4 weights have a");
        for (int role = 0; role < 2; role++) {
            uint32_t ai = role ? t->global : t->scale;
            if (ai == WPK_NONE) continue;
            const wpk_tensor *a = &p->t[ai];
            const char *what = role ? "global scale" : "scale";
            if (a->owner != i)
                return wp_fail(e, WP_EINVAL, "%s: %s: its %s %s does not name it as owner", path,
                               t->name, what, a->name);
            wp_dtype dt;
            int nd;
            uint64_t sh[8];
            expected_aux(t, role, &dt, &nd, sh);
            char want[200], got[200];
            shape_str(sh, nd, want, sizeof want);
            shape_str(a->shape, a->ndim, got, sizeof got);
            if (a->kind != WPK_KIND_RAW || a->dtype != dt || a->ndim != nd ||
                memcmp(a->shape, sh, sizeof sh) || a->stacked != t->stacked)
                return wp_fail(e, WP_EINVAL, "%s: %s: %s %s is %s %s%s, expected %s %s%s", path,
                               t->name, what, a->name, wpk_tensor_enc_name(a), got,
                               a->stacked ? " stacked" : "", dtype_names[dt], want,
                               t->stacked ? " stacked" : "");
        }
        if (t->owner != WPK_NONE) {
            const wpk_tensor *o = &p->t[t->owner];
            if (o->scale != i && o->global != i)
                return wp_fail(e, WP_EINVAL, "%s: %s: owner %s does not refer to it", path,
                               t->name, o->name);
            if (t->kind != WPK_KIND_RAW || t->scale != WPK_NONE)
                return wp_fail(e, WP_EINVAL, "%s: %s: a scale entry must be a plain raw array",
                               path, t->name);
        }
    }
    return 0;
}

int wpk_parse(const uint8_t *region, uint64_t len, uint64_t file_size, const char *path,
              unsigned flags, wpk_parsed *p, wp_err *e)
{
    memset(p, 0, sizeof *p);
    if (len < WPK_HEADER_SIZE)
        return wp_fail(e, WP_EINVAL, "%s: truncated: %llu bytes, the header alone is %u", path,
                       (unsigned long long)len, WPK_HEADER_SIZE);
    wpk_hdr *h = &p->hdr;
    memcpy(h, region, sizeof *h);
    if (memcmp(h->magic, WPK_MAGIC, 8))
        return wp_fail(e, WP_EINVAL, "%s: not a .wpk container (bad magic)", path);
    if (h->endian != WPK_ENDIAN_TAG)
        return wp_fail(e, WP_EINVAL, "%s: endianness tag 0x%08x, expected 0x%08x%s", path,
                       h->endian, WPK_ENDIAN_TAG,
                       h->endian == 0x0D0C0B0Au ? " (a big-endian container)" : "");
    if (h->version_major != WPK_VERSION_MAJOR)
        return wp_fail(e, WP_EINVAL, "%s: format version %u.%u, this reader reads %u.x", path,
                       h->version_major, h->version_minor, WPK_VERSION_MAJOR);
    if (h->header_size != WPK_HEADER_SIZE || h->entry_size != WPK_ENTRY_SIZE)
        return wp_fail(e, WP_EINVAL, "%s: header_size %u / entry_size %u, expected %u / %u", path,
                       h->header_size, h->entry_size, WPK_HEADER_SIZE, WPK_ENTRY_SIZE);
    if (h->flags) return wp_fail(e, WP_EINVAL, "%s: unknown header flags 0x%x", path, h->flags);
    if (h->align_log2 < WPK_ALIGN_LOG2_MIN || h->align_log2 > WPK_ALIGN_LOG2_MAX)
        return wp_fail(e, WP_EINVAL, "%s: align_log2 %u outside [%u, %u]", path, h->align_log2,
                       WPK_ALIGN_LOG2_MIN, WPK_ALIGN_LOG2_MAX);
    if (!all_zero(h->reserved, sizeof h->reserved))
        return wp_fail(e, WP_EINVAL, "%s: reserved header bytes are not zero", path);
    if (h->tensor_count > WPK_MAX_TENSORS)
        return wp_fail(e, WP_EINVAL, "%s: tensor_count %llu > %u", path,
                       (unsigned long long)h->tensor_count, WPK_MAX_TENSORS);
    if (h->src_count > WPK_MAX_SOURCES)
        return wp_fail(e, WP_EINVAL, "%s: src_count %llu > %u", path,
                       (unsigned long long)h->src_count, WPK_MAX_SOURCES);
    if (h->str_size > WPK_MAX_STRINGS)
        return wp_fail(e, WP_EINVAL, "%s: str_size %llu > %u", path,
                       (unsigned long long)h->str_size, WPK_MAX_STRINGS);
    /* Canonical section placement (docs/format.md §2).  The limits above keep
     * every sum below 2^40, so none of these can overflow. */
    uint64_t align = 1ull << h->align_log2;
    uint64_t dir_size = h->tensor_count * WPK_ENTRY_SIZE;
    uint64_t src_off = WPK_HEADER_SIZE + dir_size, str_off = src_off + h->src_count * 16;
    uint64_t data_off = wp_align_up(str_off + h->str_size, align);
    if (h->dir_offset != WPK_HEADER_SIZE || h->dir_size != dir_size || h->src_offset != src_off ||
        h->str_offset != str_off || h->data_offset != data_off)
        return wp_fail(e, WP_EINVAL,
                       "%s: section table lies: dir %llu+%llu, sources %llu, strings %llu, data "
                       "%llu; expected %u+%llu, %llu, %llu, %llu",
                       path, (unsigned long long)h->dir_offset, (unsigned long long)h->dir_size,
                       (unsigned long long)h->src_offset, (unsigned long long)h->str_offset,
                       (unsigned long long)h->data_offset, WPK_HEADER_SIZE,
                       (unsigned long long)dir_size, (unsigned long long)src_off,
                       (unsigned long long)str_off, (unsigned long long)data_off);
    if (h->file_size != file_size)
        return wp_fail(e, WP_EINVAL, "%s: header says %llu bytes, the file has %llu%s", path,
                       (unsigned long long)h->file_size, (unsigned long long)file_size,
                       file_size < h->file_size ? " (truncated)" : "");
    if (data_off > file_size || data_off > len)
        return wp_fail(e, WP_EINVAL, "%s: truncated: data starts at %llu, the file has %llu bytes",
                       path, (unsigned long long)data_off, (unsigned long long)file_size);
    if (h->part_count == 0 || h->part_index >= h->part_count)
        return wp_fail(e, WP_EINVAL, "%s: part %u of %u", path, h->part_index, h->part_count);
    const uint8_t *str = region + str_off;
    if (h->str_size && str[h->str_size - 1] != 0)
        return wp_fail(e, WP_EINVAL, "%s: string area does not end with NUL", path);
    int rc;
    if ((rc = check_json(str, h->str_size, h->model_json, "model_json", path, &p->model, e)) ||
        (rc = check_json(str, h->str_size, h->profile_json, "profile_json", path, &p->profile, e)) ||
        (rc = check_json(str, h->str_size, h->provenance_json, "provenance_json", path, &p->prov, e)))
        return rc;

    p->n = (size_t)h->tensor_count;
    p->t = calloc(p->n ? p->n : 1, sizeof *p->t);
    p->srcs = calloc(h->src_count ? h->src_count : 1, sizeof *p->srcs);
    p->sorted = calloc(p->n ? p->n : 1, sizeof *p->sorted);
    name_ix *ix = calloc(p->n ? p->n : 1, sizeof *ix);
    if (!p->t || !p->srcs || !p->sorted || !ix) {
        free(ix);
        wpk_parsed_free(p);
        return wp_oom(e, "%s (for %llu tensors)", path,
                       (unsigned long long)h->tensor_count);
    }
    for (uint64_t k = 0; k < h->src_count; k++) {
        wpk_ref r;
        memcpy(&r, region + src_off + 16 * k, sizeof r);
        const char *why = wpk_ref_problem(str, h->str_size, r);
        if (!why) why = wpk_name_problem((const char *)str + r.off, r.len);
        if (why) {
            rc = wp_fail(e, WP_EINVAL, "%s: source name #%llu: %s", path, (unsigned long long)k, why);
            goto fail;
        }
        p->srcs[k] = (const char *)str + r.off;
    }
    uint64_t expect = data_off;   /* where the next tensor must start */
    const char *prev = NULL;
    uint64_t prev_end = data_off;
    for (size_t i = 0; i < p->n; i++) {
        wpk_dirent d;
        memcpy(&d, region + WPK_HEADER_SIZE + i * WPK_ENTRY_SIZE, sizeof d);
        wpk_tensor *t = &p->t[i];
        if ((rc = parse_entry(&d, (uint32_t)i, str, h->str_size, h, path, t, e))) goto fail;
        t->sources = t->n_sources ? p->srcs + d.src_first : NULL;
        uint64_t end;
        if (t->offset > file_size || t->size > file_size - t->offset) {
            rc = wp_fail(e, WP_EINVAL, "%s: %s: data [%llu, +%llu) past end of file (%llu bytes)",
                         path, t->name, (unsigned long long)t->offset,
                         (unsigned long long)t->size, (unsigned long long)file_size);
            goto fail;
        }
        end = t->offset + t->size;
        if (t->offset < prev_end) {
            rc = prev ? wp_fail(e, WP_EINVAL, "%s: %s: data at %llu overlaps %s (ends at %llu)",
                                path, t->name, (unsigned long long)t->offset, prev,
                                (unsigned long long)prev_end)
                      : wp_fail(e, WP_EINVAL, "%s: %s: data at %llu is inside the header region "
                                "(data starts at %llu)", path, t->name,
                                (unsigned long long)t->offset, (unsigned long long)data_off);
            goto fail;
        }
        if (t->offset % align) {
            rc = wp_fail(e, WP_EINVAL, "%s: %s: data at %llu is not aligned to %llu", path,
                         t->name, (unsigned long long)t->offset, (unsigned long long)align);
            goto fail;
        }
        if (t->offset != expect) {
            rc = wp_fail(e, WP_EINVAL, "%s: %s: data at %llu, the canonical layout puts it at %llu",
                         path, t->name, (unsigned long long)t->offset, (unsigned long long)expect);
            goto fail;
        }
        prev = t->name;
        prev_end = end;
        expect = wp_align_up(end, align);
        ix[i].name = t->name;
        ix[i].i = (uint32_t)i;
    }
    if (prev_end != file_size) {
        rc = wp_fail(e, WP_EINVAL, "%s: %llu bytes after the last tensor's data (file ends at %llu)",
                     path, (unsigned long long)(file_size - prev_end), (unsigned long long)file_size);
        goto fail;
    }
    qsort(ix, p->n, sizeof *ix, cmp_name_ix);
    for (size_t i = 0; i < p->n; i++) {
        if (i && !strcmp(ix[i].name, ix[i - 1].name)) {
            rc = wp_fail(e, WP_EINVAL, "%s: %s: duplicate tensor name (entries %u and %u)", path,
                         ix[i].name, ix[i - 1].i, ix[i].i);
            goto fail;
        }
        p->sorted[i] = ix[i].i;
    }
    if ((rc = check_ties(p, path, e))) goto fail;
    if (!(flags & WPK_PARSE_NO_DIGEST)) {
        uint8_t dg[32];
        if ((rc = wpk_header_digest(region, data_off, dg, e))) goto fail;
        if (memcmp(dg, h->header_sha256, 32)) {
            rc = wp_fail(e, WP_EVERIFY, "%s: header digest mismatch in bytes [0, %llu) "
                         "(header, directory or strings altered)", path, (unsigned long long)data_off);
            goto fail;
        }
    }
    free(ix);
    return 0;
fail:
    free(ix);
    wpk_parsed_free(p);
    return rc;
}

/* ---- The reader ------------------------------------------------------------------ */

struct wpk_file {
    char *path;
    wp_map map;
    wpk_parsed p;
    const uint8_t *data;       /* bytes of [data_offset, file_size): mapping or huge copy */
    void *owned;               /* huge-page copy, released by release() */
    uint64_t owned_size;
    void (*release)(void *, uint64_t);
};

int wpk_open(wpk_file **out, const char *path, wp_err *e)
{
    *out = NULL;
    wpk_file *f = wp_calloc(1, sizeof *f, e);
    if (!f) return WP_ENOMEM;
    f->map.fd = -1;
    if (!(f->path = wp_strdup(path, e))) {
        free(f);
        return WP_ENOMEM;
    }
    int rc = wp_map_open(&f->map, path, e);
    if (!rc) rc = wpk_parse(f->map.data, f->map.size, f->map.size, path, 0, &f->p, e);
    if (rc) {
        wpk_close(f);
        return rc;
    }
    f->data = f->map.data + f->p.hdr.data_offset;
    *out = f;
    return 0;
}

void wpk_close(wpk_file *f)
{
    if (!f) return;
    if (f->owned && f->release) f->release(f->owned, f->owned_size);
    wpk_parsed_free(&f->p);
    wp_map_close(&f->map);
    free(f->path);
    free(f);
}

void wpk_set_data_base(wpk_file *f, const uint8_t *base, void *owned, uint64_t owned_size,
                       void (*release)(void *, uint64_t))
{
    if (f->owned && f->release) f->release(f->owned, f->owned_size);
    f->data = base;
    f->owned = owned;
    f->owned_size = owned_size;
    f->release = release;
}

const char *wpk_path(const wpk_file *f) { return f->path; }
int wpk_fd(const wpk_file *f) { return f->map.fd; }
uint64_t wpk_file_size(const wpk_file *f) { return f->p.hdr.file_size; }
uint64_t wpk_data_offset(const wpk_file *f) { return f->p.hdr.data_offset; }
uint32_t wpk_align(const wpk_file *f) { return 1u << f->p.hdr.align_log2; }
unsigned wpk_version_minor(const wpk_file *f) { return f->p.hdr.version_minor; }
const uint8_t *wpk_header_sha256(const wpk_file *f) { return f->p.hdr.header_sha256; }
const char *wpk_model_json(const wpk_file *f) { return f->p.model; }
const char *wpk_profile_json(const wpk_file *f) { return f->p.profile; }
const char *wpk_provenance_json(const wpk_file *f) { return f->p.prov; }
size_t wpk_count(const wpk_file *f) { return f->p.n; }

void wpk_part(const wpk_file *f, uint32_t *index, uint32_t *count)
{
    if (index) *index = f->p.hdr.part_index;
    if (count) *count = f->p.hdr.part_count;
}

const wpk_tensor *wpk_tensor_at(const wpk_file *f, size_t i)
{
    return i < f->p.n ? &f->p.t[i] : NULL;
}

const wpk_tensor *wpk_find(const wpk_file *f, const char *name)
{
    size_t lo = 0, hi = f->p.n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        const wpk_tensor *t = &f->p.t[f->p.sorted[mid]];
        int c = strcmp(t->name, name);
        if (!c) return t;
        if (c < 0) lo = mid + 1;
        else hi = mid;
    }
    return NULL;
}

const void *wpk_data(const wpk_file *f, const wpk_tensor *t)
{
    if (!t->size) return NULL;
    return f->data + (t->offset - f->p.hdr.data_offset);
}

int wpk_expert(const wpk_file *f, const wpk_tensor *t, uint64_t expert, const void **p,
               uint64_t *n, wp_err *e)
{
    if (!t->stacked)
        return wp_fail(e, WP_EUSAGE, "%s: %s: not a stacked tensor", f->path, t->name);
    if (expert >= t->n_experts)
        return wp_fail(e, WP_EUSAGE, "%s: %s: expert %llu out of %llu", f->path, t->name,
                       (unsigned long long)expert, (unsigned long long)t->n_experts);
    *p = (const uint8_t *)wpk_data(f, t) + expert * t->expert_stride;
    *n = t->expert_stride;
    return 0;
}

int wpk_qweight(const wpk_file *f, const wpk_tensor *t, uint64_t expert, wp_qweight *out,
                wp_err *e)
{
    memset(out, 0, sizeof *out);
    int s = t->stacked ? 1 : 0;
    if (t->kind != WPK_KIND_ENC)
        return wp_fail(e, WP_EUSAGE, "%s: %s: %s is a raw array, not a weight", f->path, t->name,
                       wpk_tensor_enc_name(t));
    if (t->ndim - s < 1 || t->ndim - s > 2)
        return wp_fail(e, WP_EUSAGE, "%s: %s: a weight view needs a matrix, shape has %d dims",
                       f->path, t->name, t->ndim);
    if (s ? expert >= t->n_experts : expert != 0)
        return wp_fail(e, WP_EUSAGE, "%s: %s: expert %llu out of %llu", f->path, t->name,
                       (unsigned long long)expert, (unsigned long long)(s ? t->n_experts : 1));
    out->enc = t->enc;
    out->rows = t->ndim - s == 2 ? t->shape[s] : 1;
    out->cols = t->shape[t->ndim - 1];
    out->data = (const uint8_t *)f->data + (t->offset - f->p.hdr.data_offset) + expert * t->expert_stride;
    out->sfmt = t->sfmt;
    out->br = t->br;
    out->bc = t->bc;
    out->global = 1.0f;
    if (t->scale != WPK_NONE) {
        const wpk_tensor *st = &f->p.t[t->scale];
        out->scale = (const uint8_t *)f->data + (st->offset - f->p.hdr.data_offset) +
                     expert * st->expert_stride;
    }
    if (t->global != WPK_NONE) {
        const wpk_tensor *gt = &f->p.t[t->global];
        memcpy(&out->global, (const uint8_t *)f->data + (gt->offset - f->p.hdr.data_offset) +
                                 4 * expert, 4);
    }
    return 0;
}

int wpk_read(const wpk_file *f, const wpk_tensor *t, uint64_t off, void *buf, size_t n, wp_err *e)
{
    if (off > t->size || n > t->size - off)
        return wp_fail(e, WP_EUSAGE, "%s: %s: read [%llu, +%zu) past its %llu bytes", f->path,
                       t->name, (unsigned long long)off, n, (unsigned long long)t->size);
    return wp_pread_full(f->map.fd, buf, n, t->offset + off, f->path, e);
}

/* ---- Deep validation --------------------------------------------------------------- */

int wpk_check_tensor(const wpk_file *f, size_t i, wp_err *e)
{
    if (i >= f->p.n) return wp_fail(e, WP_EUSAGE, "%s: no tensor #%zu", f->path, i);
    const wpk_tensor *t = &f->p.t[i];
    uint8_t d[32];
    int rc = wp_sha256_fd_range(f->map.fd, t->offset, t->size, f->path, d, e);
    if (rc) return rc;
    if (memcmp(d, t->sha256, 32))
        return wp_fail(e, WP_EVERIFY, "%s: %s: sha256 mismatch in bytes [%llu, %llu)", f->path,
                       t->name, (unsigned long long)t->offset,
                       (unsigned long long)(t->offset + t->size));
    return 0;
}

static int check_zero_range(const wpk_file *f, uint64_t a, uint64_t b, const char *after,
                            uint8_t *buf, size_t bufsz, wp_err *e)
{
    while (a < b) {
        size_t n = b - a < bufsz ? (size_t)(b - a) : bufsz;
        int rc = wp_pread_full(f->map.fd, buf, n, a, f->path, e);
        if (rc) return rc;
        for (size_t k = 0; k < n; k++)
            if (buf[k])
                return wp_fail(e, WP_EVERIFY, "%s: non-zero padding at byte %llu (after %s)",
                               f->path, (unsigned long long)(a + k), after);
        a += n;
    }
    return 0;
}

int wpk_check_padding(const wpk_file *f, wp_err *e)
{
    uint8_t buf[65536];
    const wpk_hdr *h = &f->p.hdr;
    int rc = check_zero_range(f, h->str_offset + h->str_size, h->data_offset, "the string area",
                              buf, sizeof buf, e);
    for (size_t i = 0; !rc && i + 1 < f->p.n; i++)
        rc = check_zero_range(f, f->p.t[i].offset + f->p.t[i].size, f->p.t[i + 1].offset,
                              f->p.t[i].name, buf, sizeof buf, e);
    return rc;
}

typedef struct deep_job {
    const wpk_file *f;
    pthread_mutex_t mu;
    size_t next;
    size_t fail_at;        /* lowest failing index, SIZE_MAX if none */
    wp_err err;            /* its message */
    uint64_t done, total;
    wp_progress_fn progress;
    void *ud;
} deep_job;

static void *deep_worker(void *arg)
{
    deep_job *j = arg;
    for (;;) {
        pthread_mutex_lock(&j->mu);
        size_t i = j->next++;
        int stop = i >= j->f->p.n || i > j->fail_at;
        pthread_mutex_unlock(&j->mu);
        if (stop) return NULL;
        wp_err e = {0};
        int rc = wpk_check_tensor(j->f, i, &e);
        pthread_mutex_lock(&j->mu);
        if (rc && i < j->fail_at) {
            j->fail_at = i;
            j->err = e;
        }
        j->done += j->f->p.t[i].size;
        if (j->progress) j->progress(j->ud, "verify", j->done, j->total);
        pthread_mutex_unlock(&j->mu);
    }
}

int wpk_check_deep(const wpk_file *f, int threads, wp_progress_fn progress, void *ud, wp_err *e)
{
    deep_job j = {.f = f, .fail_at = SIZE_MAX, .progress = progress, .ud = ud};
    pthread_mutex_init(&j.mu, NULL);
    for (size_t i = 0; i < f->p.n; i++) j.total += f->p.t[i].size;
    if (threads < 1) threads = 1;
    if ((size_t)threads > f->p.n) threads = f->p.n ? (int)f->p.n : 1;
    pthread_t tid[64];
    if (threads > 64) threads = 64;
    int started = 0;
    for (int k = 1; k < threads; k++)
        if (!pthread_create(&tid[started], NULL, deep_worker, &j)) started++;
    deep_worker(&j);
    for (int k = 0; k < started; k++) pthread_join(tid[k], NULL);
    pthread_mutex_destroy(&j.mu);
    if (j.fail_at != SIZE_MAX) return wp_fail(e, j.err.code, "%s", j.err.msg);
    return wpk_check_padding(f, e);
}
