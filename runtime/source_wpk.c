/*
 * source_wpk.c — the runtime's tensor source over a wpack build: a directory
 * of .wpk parts (plus manifest) or a lone .wpk file.
 *
 * The model asks for weights by official HF module name.  Tensors that kept
 * their name are found directly.  Stacked tensors (experts [E, out, in'],
 * fused w13 [E, 2I, in'], expert-parallel ranks holding a contiguous range)
 * are found through the source names the container records for every slice
 * (expert-major; k sources per slice when k projections are fused), so this
 * file needs no knowledge of profiles or of how the planner names stacks.
 *
 * A tensor-parallel build splits tensors across parts: the same name appears
 * in several parts with different bytes.  The CPU runtime runs unsplit models,
 * so that is refused with a message naming the tensor.
 */
#include <limits.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "runtime/source_wpk.h"
#include "trust/build.h"
#include "trust/trust.h"

typedef struct ent {
    const char *name;        /* key: points into a container's mapping */
    int file;
    const wpk_tensor *t;
    uint64_t slice;          /* stacked: which [E] slice */
    int part, nparts;        /* fused: which of the slice's row blocks */
} ent;

typedef struct wpk_src {
    wp_build *build;         /* owns the parts */
    wpk_file **files;        /* its parts, by name */
    int n_files;
    ent *ents;
    size_t n_ents, cap;
} wpk_src;

static int ent_cmp(const void *a, const void *b)
{
    const ent *x = a, *y = b;
    int c = strcmp(x->name, y->name);
    if (c) return c;
    return x->file - y->file;   /* stable: the first part wins among equals */
}

static const ent *lookup(const wpk_src *w, const char *name)
{
    size_t lo = 0, hi = w->n_ents;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        int c = strcmp(w->ents[mid].name, name);
        if (c < 0) lo = mid + 1;
        else hi = mid;
    }
    return lo < w->n_ents && !strcmp(w->ents[lo].name, name) ? &w->ents[lo] : NULL;
}

static int push(wpk_src *w, ent x, wp_err *e)
{
    if (w->n_ents == w->cap) {
        size_t cap = w->cap ? 2 * w->cap : 1024;
        ent *p = realloc(w->ents, cap * sizeof *p);
        if (!p) return wp_oom(e, "indexing a build");
        w->ents = p;
        w->cap = cap;
    }
    w->ents[w->n_ents++] = x;
    return 0;
}

/* Restrict q to rows [r0, r0 + n): data and scale move by whole rows (or whole
 * FP8 scale blocks, which the caller guarantees by fusing at block bounds). */
static int qweight_rows(wp_qweight *q, uint64_t r0, uint64_t n, const char *path,
                        const char *name, wp_err *e)
{
    uint64_t data_row, scale_row = 0, scale_r0 = r0;
    switch (q->enc) {
    case WP_ENC_BF16: case WP_ENC_F16: data_row = 2 * q->cols; break;
    case WP_ENC_F32: data_row = 4 * q->cols; break;
    case WP_ENC_FP8:
        data_row = q->cols;
        if (!q->br || r0 % q->br || n % q->br)
            return wp_fail(e, WP_EINVAL, "%s: %s: fused rows [%llu, +%llu) do not fall on %u-row "
                           "scale blocks", path, name, (unsigned long long)r0,
                           (unsigned long long)n, q->br);
        scale_row = ((q->cols + q->bc - 1) / q->bc) * (q->sfmt == WP_SCALE_F32 ? 4 : 1);
        scale_r0 = r0 / q->br;
        break;
    case WP_ENC_MXFP4: data_row = q->cols / 2; scale_row = q->cols / 32; break;
    case WP_ENC_NVFP4: data_row = q->cols / 2; scale_row = q->cols / 16; break;
    default: return wp_fail(e, WP_EINVAL, "%s: %s: unknown encoding", path, name);
    }
    q->data = (const uint8_t *)q->data + r0 * data_row;
    if (q->scale) q->scale = (const uint8_t *)q->scale + scale_r0 * scale_row;
    q->rows = n;
    return 0;
}

static int src_weight(wp_tsrc *s, const char *name, wp_qweight *out, wp_err *e)
{
    wpk_src *w = s->impl;
    char key[512];
    snprintf(key, sizeof key, "%s.weight", name);
    memset(out, 0, sizeof *out);
    const ent *x = lookup(w, key);
    if (!x) return wp_fail(e, WP_EINVAL, "%s: %s: not in this build", s->path, key);
    const wpk_tensor *t = x->t;
    wpk_file *f = w->files[x->file];
    if (t->kind == WPK_KIND_RAW) {
        /* plain matrices may be stored as raw arrays (e.g. a passthrough F32) */
        if (t->ndim != 2 || (t->dtype != WP_BF16 && t->dtype != WP_F32 && t->dtype != WP_F16))
            return wp_fail(e, WP_EINVAL, "%s: %s: raw %s [%d dims] is not a linear weight",
                           s->path, key, wp_dtype_name(t->dtype), t->ndim);
        out->enc = t->dtype == WP_BF16 ? WP_ENC_BF16 : t->dtype == WP_F32 ? WP_ENC_F32 : WP_ENC_F16;
        out->rows = t->shape[0];
        out->cols = t->shape[1];
        out->data = wpk_data(f, t);
        return 0;
    }
    int rc = wpk_qweight(f, t, t->stacked ? x->slice : 0, out, e);
    if (rc) return rc;
    if (x->nparts > 1) {
        if (out->rows % (uint64_t)x->nparts)
            return wp_fail(e, WP_EINVAL, "%s: %s: %llu rows do not split into %d fused parts",
                           s->path, t->name, (unsigned long long)out->rows, x->nparts);
        uint64_t n = out->rows / (uint64_t)x->nparts;
        rc = qweight_rows(out, (uint64_t)x->part * n, n, s->path, t->name, e);
    }
    return rc;
}

static int src_tensor(wp_tsrc *s, const char *name, wp_tview *out, wp_err *e)
{
    wpk_src *w = s->impl;
    memset(out, 0, sizeof *out);
    const ent *x = lookup(w, name);
    if (!x || x->t->stacked || x->nparts > 1 || strcmp(x->t->name, name))
        return wp_fail(e, WP_EINVAL, "%s: %s: not in this build", s->path, name);
    const wpk_tensor *t = x->t;
    if (t->kind == WPK_KIND_RAW) out->dtype = t->dtype;
    else if (t->enc == WP_ENC_BF16) out->dtype = WP_BF16;
    else if (t->enc == WP_ENC_F32) out->dtype = WP_F32;
    else if (t->enc == WP_ENC_F16) out->dtype = WP_F16;
    else
        return wp_fail(e, WP_EINVAL, "%s: %s: encoded as %s, expected a plain tensor", s->path,
                       name, wpk_tensor_enc_name(t));
    if (t->ndim > 4)
        return wp_fail(e, WP_EINVAL, "%s: %s: %d dimensions (at most 4)", s->path, name, t->ndim);
    out->ndim = t->ndim;
    for (int i = 0; i < t->ndim; i++) out->shape[i] = t->shape[i];
    out->data = wpk_data(w->files[x->file], t);
    return 0;
}

static int src_has(wp_tsrc *s, const char *name)
{
    wpk_src *w = s->impl;
    char key[512];
    snprintf(key, sizeof key, "%s.weight", name);
    return lookup(w, name) || lookup(w, key);
}

static void src_close(wp_tsrc *s)
{
    wpk_src *w = s->impl;
    if (w) {
        wp_build_close(w->build);
        free(w->files);
        free(w->ents);
        free(w);
    }
    free((char *)s->path);
    free(s);
}

/* Index every tensor by its own name, and every slice of a stacked tensor by
 * its source names.  Same name in two parts: fine when the bytes agree
 * (expert-parallel ranks replicate the dense weights), refused otherwise. */
static int build_index(wpk_src *w, const char *path, wp_err *e)
{
    int rc = 0;
    for (int fi = 0; fi < w->n_files && !rc; fi++) {
        wpk_file *f = w->files[fi];
        for (size_t i = 0; i < wpk_count(f) && !rc; i++) {
            const wpk_tensor *t = wpk_tensor_at(f, i);
            /* a stack is reached through its sources only: expert-parallel
             * ranks each hold a different stack under the same name */
            if (!t->stacked) {
                rc = push(w, (ent){t->name, fi, t, 0, 0, 1}, e);
                continue;
            }
            if (!t->n_sources) continue;   /* a stacked scale: found via its weight */
            if (t->n_sources % t->n_experts)
                return wp_fail(e, WP_EINVAL, "%s: %s: %u source names for %llu stacked experts",
                               wpk_path(f), t->name, t->n_sources,
                               (unsigned long long)t->n_experts);
            int per = (int)(t->n_sources / t->n_experts);
            for (uint32_t k = 0; k < t->n_sources && !rc; k++)
                rc = push(w, (ent){t->sources[k], fi, t, k / (uint32_t)per, (int)(k % (uint32_t)per), per}, e);
        }
    }
    if (rc) return rc;
    qsort(w->ents, w->n_ents, sizeof *w->ents, ent_cmp);
    size_t j = 0;
    for (size_t i = 0; i < w->n_ents; i++) {
        if (j && !strcmp(w->ents[j - 1].name, w->ents[i].name)) {
            const ent *a = &w->ents[j - 1], *b = &w->ents[i];
            if (a->file == b->file)
                return wp_fail(e, WP_EINVAL, "%s: %s: named twice in %s", path, a->name,
                               wpk_path(w->files[a->file]));
            if (a->t->size != b->t->size || memcmp(a->t->sha256, b->t->sha256, WP_SHA256_LEN))
                return wp_fail(e, WP_EINVAL, "%s: %s: differs between %s and %s (a tensor-parallel "
                               "build); the CPU runtime needs an unsplit or expert-parallel build",
                               path, a->name, wpk_path(w->files[a->file]),
                               wpk_path(w->files[b->file]));
            continue;   /* identical replica: keep the first */
        }
        w->ents[j++] = w->ents[i];
    }
    w->n_ents = j;
    return 0;
}

int wp_tsrc_open_wpk(wp_tsrc **out, const char *path, wp_err *e)
{
    *out = NULL;
    wp_tsrc *s = calloc(1, sizeof *s);
    wpk_src *w = calloc(1, sizeof *w);
    if (!s || !w) {
        free(s);
        free(w);
        return wp_oom(e, "a build source");
    }
    s->impl = w;
    s->kind = "wpk";
    s->weight = src_weight;
    s->tensor = src_tensor;
    s->has = src_has;
    s->close = src_close;
    if (!(s->path = strdup(path))) {
        src_close(s);
        return wp_oom(e, "a build source");
    }
    /* the parts: every .wpk of a build directory, by name, or the one file */
    size_t n = 0;
    int rc = wp_build_open(&w->build, path, e);
    if (!rc) rc = wp_build_parts(w->build, &n, e);
    if (!rc && n > INT_MAX) rc = wp_fail(e, WP_EINVAL, "%s: %zu parts", path, n);
    if (!rc && !(w->files = calloc(n, sizeof *w->files))) rc = wp_oom(e, "a build source");
    for (size_t i = 0; !rc && i < n; i++)
        if (!(rc = wp_build_part(w->build, i, &w->files[i], e))) w->n_files++;
    const char *mj = rc ? NULL : wpk_model_json(w->files[0]);
    if (!rc) rc = wp_config_parse(&s->cfg, mj, strlen(mj), wpk_path(w->files[0]), e);
    if (!rc) rc = build_index(w, path, e);
    if (rc) {
        src_close(s);
        return rc;
    }
    *out = s;
    return 0;
}

int wp_tsrc_wpk_parts(wp_tsrc *s)
{
    if (!s || strcmp(s->kind, "wpk")) return 0;
    return ((wpk_src *)s->impl)->n_files;
}

int wp_tsrc_hugepages(wp_tsrc *s, char *notice, size_t notice_sz, wp_err *e)
{
    if (notice_sz) notice[0] = 0;
    if (!s || strcmp(s->kind, "wpk")) {
        if (notice_sz)
            snprintf(notice, notice_sz, "huge pages: %s is not a .wpk build; using its plain "
                     "mapping", s ? s->path : "source");
        return 0;
    }
    wpk_src *w = s->impl;
    for (int i = 0; i < w->n_files; i++) {
        wpk_huge_kind kind;
        char why[512] = "";
        int rc = wpk_load_hugepages(w->files[i], WPK_HUGE_EXPLICIT, &kind, why, sizeof why, e);
        if (rc) return rc;
        /* one line for the whole build: the first part's reason stands for all */
        if (kind == WPK_HUGE_NONE && notice_sz && !notice[0])
            snprintf(notice, notice_sz, "%s", why);
    }
    return 0;
}

/* ---- Verification before use ------------------------------------------------------
 * Builds that passed in this process, by a fingerprint of what was hashed:
 * the canonical path and, for the manifest and every part, device, inode,
 * size and modification time.  A file replaced or rewritten since (a new
 * mtime or inode) makes a new fingerprint, so it is hashed again. */
#define VERIFIED_MAX 64
static struct {
    pthread_mutex_t mu;
    size_t n;
    uint8_t fp[VERIFIED_MAX][WP_SHA256_LEN];
} g_verified = {PTHREAD_MUTEX_INITIALIZER, 0, {{0}}};

static void fp_add(wp_sha256 *h, const char *path)
{
    struct stat st;
    uint64_t v[6] = {0};
    if (stat(path, &st) == 0) {
        v[0] = (uint64_t)st.st_dev;
        v[1] = (uint64_t)st.st_ino;
        v[2] = (uint64_t)st.st_size;
        v[3] = (uint64_t)st.st_mtim.tv_sec;
        v[4] = (uint64_t)st.st_mtim.tv_nsec;
        v[5] = 1;
    }
    wp_sha256_update(h, path, strlen(path) + 1);
    wp_sha256_update(h, v, sizeof v);
}

/* The fingerprint of the build at `path` as the source opened it. */
static int fingerprint(wp_tsrc *s, const char *path, uint8_t out[WP_SHA256_LEN], wp_err *e)
{
    wpk_src *w = s->impl;
    char real[PATH_MAX];
    if (!realpath(path, real)) return wp_fail_errno(e, "%s", path);
    wp_sha256 h;
    int rc = wp_sha256_init(&h, e);
    if (rc) return rc;
    fp_add(&h, real);
    if (wp_build_type(w->build) == WP_BUILD_DIR) {
        char m[PATH_MAX + 32];
        snprintf(m, sizeof m, "%s/%s", real, WP_MANIFEST_NAME);
        fp_add(&h, m);
    }
    for (int i = 0; i < w->n_files; i++) fp_add(&h, wp_build_part_path(w->build, (size_t)i));
    wp_sha256_final(&h, out);
    return 0;
}

static int verified_before(const uint8_t fp[WP_SHA256_LEN])
{
    int hit = 0;
    pthread_mutex_lock(&g_verified.mu);
    for (size_t i = 0; i < g_verified.n && !hit; i++) hit = !memcmp(g_verified.fp[i], fp, WP_SHA256_LEN);
    pthread_mutex_unlock(&g_verified.mu);
    return hit;
}

static void remember_verified(const uint8_t fp[WP_SHA256_LEN])
{
    pthread_mutex_lock(&g_verified.mu);
    size_t i = g_verified.n < VERIFIED_MAX ? g_verified.n++ : VERIFIED_MAX - 1;
    memcpy(g_verified.fp[i], fp, WP_SHA256_LEN);
    pthread_mutex_unlock(&g_verified.mu);
}

int wp_tsrc_open_opts(wp_tsrc **out, const char *path, const wp_tsrc_opts *o, wp_err *e)
{
    int rc = wp_tsrc_open(out, path, e);
    if (rc) return rc;
    wp_tsrc *s = *out;
    if (strcmp(s->kind, "wpk")) {   /* an HF checkpoint: nothing to check against */
        s->verified = WP_TSRC_NO_DIGESTS;
        return 0;
    }
    s->verified = WP_TSRC_UNVERIFIED;
    if (!o || !o->verify) return 0;
    uint8_t fp[WP_SHA256_LEN];
    rc = fingerprint(s, path, fp, e);
    if (!rc && !verified_before(fp)) {
        /* verify's own checks, the signature aside: what the manifest (or a
         * lone .wpk's directory) promises must be the bytes on disk */
        wp_verify_opts vo = {.allow_unsigned = 1, .threads = o->threads, .progress = o->progress,
                             .progress_ud = o->progress_ud};
        wp_verify_report r;
        rc = wp_verify_build(path, &vo, &r, e);
        wp_verify_report_free(&r);
        if (!rc) remember_verified(fp);
    }
    if (rc) {
        wp_tsrc_close(s);
        *out = NULL;
        return rc;
    }
    s->verified = WP_TSRC_VERIFIED;
    return 0;
}
