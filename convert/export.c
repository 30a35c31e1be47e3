/*
 * export.c — a build back to a Hugging Face checkpoint (convert/export.h,
 * docs/export.md).
 *
 * Plan first, then stream.  The plan walks the model's inventory (the
 * official names and order, model/model.h) and finds, for each tensor, the
 * bytes of the build that hold it: a tensor of the same name, or a slice of
 * a stacked tensor whose recorded sources name it (expert e, and for a fused
 * w13 its w1 or w3 half) -- the build's name index (trust/build.h,
 * wp_name_index), which inspect lists from too.  Each output tensor reads one byte range of one
 * build tensor and either copies it or re-encodes it exactly (E8M0 <-> F32
 * scales, BF16 -> FP8 where every value survives).  Anything else is refused
 * before a byte is written.
 *
 * Verification while streaming: every build tensor that is read is hashed
 * exactly once, in offset order, and compared with the SHA-256 of the .wpk
 * directory when its last byte has gone by.  The plan gives each output the
 * part of its build tensor it hashes (from where the previous reader
 * stopped to the end of its own range; gaps are read only to be hashed, the
 * tail of a tensor by its last reader).  Shards are taken in order by the
 * workers and an output waits only for earlier outputs of the same build
 * tensor, which sit in the same or an earlier shard, so no wait can close a
 * cycle.
 */
#include <cjson/cJSON.h>
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/outdir.h"
#include "convert/convert_priv.h"   /* wp_tp_split_dim: which tensors a tp build cuts */
#include "convert/export.h"
#include "format/wpk.h"
#include "hf/safetensors.h"
#include "model/model.h"
#include "quant/quant.h"
#include "trust/build.h"

#define CHUNK (8u << 20)      /* bytes read and written at a time */
#define MAX_WORKERS 64

typedef enum ex_layout { LAYOUT_FP4, LAYOUT_FP8, LAYOUT_BF16 } ex_layout;
static const char *const layout_names[] = {"official", "fp8-experts", "bf16"};

typedef enum ex_op {
    OP_COPY,            /* the bytes, untouched */
    OP_F32_TO_E8M0,     /* F32 scales that are powers of two -> E8M0 codes */
    OP_E8M0_TO_F32,     /* E8M0 scales widened to F32 */
    OP_FP8_FROM_BF16,   /* a BF16 matrix re-encoded FP8 with power-of-two block scales: the codes */
    OP_FP8_SCALE_BF16,  /* ... and its scales */
    OP_JOIN,            /* a tensor-parallel cut: the pieces of every rank, joined back (bytes untouched) */
} ex_op;

/* A build tensor as the export reads it. */
typedef struct ex_src {
    wpk_file *f;
    const wpk_tensor *t;
    const char *part;          /* its file (BUILD/name, for messages) */
    /* the plan */
    uint64_t maxend;
    long last;                 /* last output that hashes it, -1 if none */
    /* streaming: guarded by ctx->mu */
    uint64_t cursor;           /* bytes hashed so far */
    wp_sha256 h;
    int h_live;
} ex_src;

typedef struct ex_out {
    char *name;
    wp_dtype dtype;
    int ndim;
    uint64_t shape[WP_MAX_DIMS];
    uint64_t nbytes;
    ex_op op;
    size_t src;                /* index into ctx->src */
    uint64_t off, len;         /* the build tensor's bytes it reads */
    uint64_t rows, cols;       /* OP_FP8_*: the BF16 matrix */
    int hashes;                /* it hashes [ha, hb) of its build tensor */
    uint64_t ha, hb;
    size_t shard;
    size_t *join;              /* OP_JOIN: the piece of each rank (src indices, rank order) */
    int jdim;                  /* OP_JOIN: the dimension the pieces are cut along (0 rows, 1 columns) */
} ex_out;

typedef struct ex_shard {
    char file[64];
    size_t first, n;           /* outputs [first, first + n) */
    uint64_t bytes;
} ex_shard;

typedef struct ex_ctx {
    const char *build_path;
    wp_build *b;
    wp_config cfg;
    ex_src *src;               /* one per row of `list` */
    size_t n_src;
    wp_tensor_list list;       /* the build's tensors (trust/build.h) */
    wp_name_index names;       /* the names they provide: tensors and stacked experts' sources */
    ex_out *out;
    size_t n_out, cap_out;
    ex_shard *shards;
    size_t n_shards;
    ex_layout layout;
    wp_scale_fmt sfmt;         /* FP8 scales in the export */
    uint32_t br, bc;           /* FP8 block in the export */
    const char *profile;
    /* streaming */
    const char *tmp;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int abort;
    int tp;                    /* the build's tensor-parallel degree (provenance), 1 when none */
    size_t next_shard;
    uint64_t done, total;
    wp_progress_fn progress;
    void *progress_ud;
    double last_progress;
} ex_ctx;

/* ---- small helpers ------------------------------------------------------------ */

static const wp_build_name *find_name(const ex_ctx *c, const char *name)
{
    return wp_name_index_find(&c->names, name);
}

static int ends_with(const char *s, const char *suf)
{
    size_t a = strlen(s), b = strlen(suf);
    return a >= b && !memcmp(s + a - b, suf, b);
}

static uint64_t cdiv(uint64_t a, uint64_t b) { return (a + b - 1) / b; }

static const char *enc_of(const wpk_tensor *t) { return wpk_tensor_enc_name(t); }

/* Plain floating encodings that are a safetensors dtype as they stand. */
static int plain_dtype(const wpk_tensor *t, wp_dtype *dt)
{
    if (t->kind == WPK_KIND_RAW) {
        *dt = t->dtype;
        return 1;
    }
    switch (t->enc) {
    case WP_ENC_BF16: *dt = WP_BF16; return 1;
    case WP_ENC_F32: *dt = WP_F32; return 1;
    case WP_ENC_F16: *dt = WP_F16; return 1;
    default: return 0;
    }
}

static ex_out *add_out(ex_ctx *c, const char *name, wp_dtype dt, int ndim, const uint64_t *shape,
                       ex_op op, size_t src, uint64_t off, uint64_t len, wp_err *e)
{
    if (c->n_out == c->cap_out) {
        size_t cap = c->cap_out ? 2 * c->cap_out : 1024;
        ex_out *v = realloc(c->out, cap * sizeof *v);
        if (!v) {
            wp_oom(e, "the export plan");
            return NULL;
        }
        c->out = v;
        c->cap_out = cap;
    }
    ex_out *o = &c->out[c->n_out];
    memset(o, 0, sizeof *o);
    if (!(o->name = strdup(name))) {
        wp_oom(e, "the export plan");
        return NULL;
    }
    c->n_out++;
    o->dtype = dt;
    o->ndim = ndim;
    for (int i = 0; i < ndim; i++) o->shape[i] = shape[i];
    if (wp_dtype_nbytes(dt, shape, ndim, &o->nbytes)) {
        wp_fail(e, WP_EINVAL, "%s: %s: shape overflows", c->build_path, name);
        return NULL;
    }
    o->op = op;
    o->src = src;
    o->off = off;
    o->len = len;
    return o;
}

/* ---- opening the build: every part, every name it can provide ------------------ */

static int check_provenance(ex_ctx *c, const char *prov, const char **cfg_sha, cJSON **pj, wp_err *e);

/* A tensor-parallel build: every name in every part.  A name the tp layout
 * cuts keeps one entry per part (plan_join joins them); any other must be
 * the same bytes everywhere (replicated) and keeps the first. */
static int tp_names(ex_ctx *c, wp_err *e)
{
    int rc = wp_name_index_build_all(&c->list, c->build_path, &c->names, e);
    if (rc) return rc;
    wp_name_index *x = &c->names;
    size_t w = 0;
    for (size_t i = 0; i < x->n;) {
        size_t j = i + 1;
        while (j < x->n && !strcmp(x->v[j].name, x->v[i].name)) j++;
        if (wp_tp_split_dim(x->v[i].name) >= 0 && x->v[i].expert < 0) {
            for (size_t k = i; k < j; k++) x->v[w++] = x->v[k];
        } else {
            for (size_t k = i + 1; k < j; k++) {
                const wp_build_name *a = &x->v[i], *b = &x->v[k];
                const wpk_tensor *ta = c->list.rows[a->row].t, *tb = c->list.rows[b->row].t;
                if (a->expert != b->expert || a->slot != b->slot || a->per != b->per || ta->size != tb->size ||
                    memcmp(ta->sha256, tb->sha256, WP_SHA256_LEN))
                    return wp_fail(e, WP_EINVAL, "%s: %s: held twice, in %s and in %s, with different bytes",
                                   c->build_path, b->name, c->list.rows[a->row].file, c->list.rows[b->row].file);
            }
            x->v[w++] = x->v[i];
        }
        i = j;
    }
    x->n = w;
    return 0;
}

static int open_build(ex_ctx *c, const char **model_json, const char **provenance, const char **cfg_sha, cJSON **pj,
                      wp_err *e)
{
    size_t np = 0;
    int rc = wp_build_parts(c->b, &np, e);
    if (rc) return rc;
    wpk_file **fs = calloc(np, sizeof *fs);
    if (!fs) return wp_oom(e, "the build's parts");
    for (size_t p = 0; p < np && !rc; p++) {
        rc = wp_build_part(c->b, p, &fs[p], e);
        if (rc) break;
        if (p == 0) {
            *model_json = wpk_model_json(fs[0]);
            *provenance = wpk_provenance_json(fs[0]);
            c->profile = wpk_profile_json(fs[0]);
        } else if (strcmp(wpk_model_json(fs[p]), *model_json) ||
                   strcmp(wpk_profile_json(fs[p]), c->profile)) {
            rc = wp_fail(e, WP_EINVAL, "%s: %s: its model or profile description differs from %s's",
                         c->build_path, wp_build_part_name(c->b, p), wp_build_part_name(c->b, 0));
        }
    }
    /* every tensor, parts in order, each in directory order (trust/build.h) */
    if (!rc) rc = wp_build_list(c->b, &c->list, e);
    if (!rc && !(c->src = calloc(c->list.n ? c->list.n : 1, sizeof *c->src))) rc = wp_oom(e, "the build's tensors");
    for (size_t i = 0; !rc && i < c->list.n; i++) {
        const wp_tensor_row *r = &c->list.rows[i];
        ex_src *s = &c->src[c->n_src++];
        s->f = fs[r->part];
        s->t = r->t;
        s->part = wp_build_part_path(c->b, r->part);
        s->last = -1;
    }
    free(fs);
    /* tp > 1 cuts tensors across the parts: say so before anything else */
    if (!rc) rc = check_provenance(c, *provenance, cfg_sha, pj, e);
    /* the names: each tensor's, and a stacked tensor's sources, expert-major */
    if (!rc && c->tp == 1) rc = wp_name_index_build(&c->list, c->build_path, &c->names, e);
    if (!rc && c->tp > 1) rc = tp_names(c, e);
    return rc;
}

/* tp > 1 cuts some tensors across the parts (spec §2.5 item 3): export joins
 * them back (plan_join), so it needs every part. */
static int check_provenance(ex_ctx *c, const char *prov, const char **cfg_sha, cJSON **pj, wp_err *e)
{
    *cfg_sha = NULL;
    *pj = cJSON_Parse(prov);
    if (!*pj) return 0;
    const cJSON *opt = cJSON_GetObjectItemCaseSensitive(*pj, "options");
    const cJSON *tp = opt ? cJSON_GetObjectItemCaseSensitive(opt, "tp") : NULL;
    c->tp = 1;
    if (cJSON_IsNumber(tp) && tp->valuedouble > 1) {
        size_t np = 0;
        wp_build_parts(c->b, &np, e);   /* listed already */
        if (tp->valuedouble > 4096 || (size_t)tp->valueint != np)
            return wp_fail(e, WP_EINVAL, "%s: a tensor-parallel build (tp %g) of %zu part%s: each cut tensor needs "
                           "its piece from every rank", c->build_path, tp->valuedouble, np, np == 1 ? "" : "s");
        c->tp = tp->valueint;
    }
    const cJSON *cs = cJSON_GetObjectItemCaseSensitive(*pj, "config_sha256");
    if (cJSON_IsString(cs)) *cfg_sha = cs->valuestring;
    return 0;
}

/* ---- the layout ------------------------------------------------------------------ */

/* Decided by the routed experts (the first one of the inventory). */
static int choose_layout(ex_ctx *c, const wp_expect *inv, size_t n, wp_err *e)
{
    const wp_expect *x = NULL;
    for (size_t i = 0; i < n && !x; i++)
        if (wp_family_inner(inv[i].name) == WP_FAM_EXPERTS && ends_with(inv[i].name, ".weight")) x = &inv[i];
    if (!x) {   /* no routed experts: keep the official layout */
        c->layout = wp_config_quantized(&c->cfg) ? LAYOUT_FP4 : LAYOUT_BF16;
        return 0;
    }
    const wp_build_name *m = find_name(c, x->name);
    if (!m) return wp_fail(e, WP_EINVAL, "%s: %s: not in the build", c->build_path, x->name);
    const wpk_tensor *t = c->src[m->row].t;
    if (t->kind == WPK_KIND_ENC && t->enc == WP_ENC_MXFP4) c->layout = LAYOUT_FP4;
    else if (t->kind == WPK_KIND_ENC && t->enc == WP_ENC_FP8) c->layout = LAYOUT_FP8;
    else if (t->kind == WPK_KIND_ENC && t->enc == WP_ENC_BF16) c->layout = LAYOUT_BF16;
    else
        return wp_fail(e, WP_EINVAL, "%s: %s: routed experts in %s: no Hugging Face layout carries them "
                       "(the official checkpoints hold MXFP4, FP8 or BF16 experts)",
                       c->src[m->row].part, t->name, enc_of(t));
    return 0;
}

/* One FP8 block for the whole export (config.json has one weight_block_size),
 * and E8M0 scales unless some F32 scale is not a power of two. */
static int choose_fp8(ex_ctx *c, void *buf, wp_err *e)
{
    c->br = (uint32_t)c->cfg.weight_block[0];
    c->bc = (uint32_t)c->cfg.weight_block[1];
    if (!c->br || !c->bc) c->br = c->bc = 128;
    c->sfmt = WP_SCALE_E8M0;
    const ex_src *first = NULL;
    for (size_t i = 0; i < c->n_src; i++) {
        const ex_src *s = &c->src[i];
        const wpk_tensor *t = s->t;
        if (t->kind != WPK_KIND_ENC || t->enc != WP_ENC_FP8) continue;
        if (!first) {
            first = s;
            c->br = t->br;
            c->bc = t->bc;
        } else if (t->br != c->br || t->bc != c->bc) {
            return wp_fail(e, WP_EINVAL, "%s: %s: FP8 block %ux%u, where %s has %ux%u: a checkpoint has one "
                           "weight_block_size", s->part, t->name, t->br, t->bc, first->t->name, c->br, c->bc);
        }
        if (t->sfmt != WP_SCALE_F32 || c->sfmt == WP_SCALE_F32 || t->scale == WPK_NONE) continue;
        const wpk_tensor *st = wpk_tensor_at(s->f, t->scale);
        for (uint64_t off = 0; off < st->size && c->sfmt == WP_SCALE_E8M0;) {
            size_t n = (size_t)(st->size - off < CHUNK ? st->size - off : CHUNK);
            int rc = wpk_read(s->f, st, off, buf, n, e);
            if (rc) return rc;
            for (size_t k = 0; k + 4 <= n; k += 4) {
                float v;
                memcpy(&v, (const uint8_t *)buf + k, 4);
                if (wp_f32_to_e8m0_exact(v) < 0) {
                    c->sfmt = WP_SCALE_F32;
                    break;
                }
            }
            off += n;
        }
    }
    return 0;
}

/* ---- the plan: one inventory entry ------------------------------------------------ */

typedef enum { K_PLAIN, K_FP8, K_FP4 } ex_kind;   /* how the official checkpoint holds it */

/* The byte range of name m's slice of its build tensor t (or of the scale
 * tensor st tied to it), and the slice's rows. */
static int slice_of(const ex_ctx *c, const wp_build_name *m, const wpk_tensor *t, int is_scale, uint64_t w_rows,
                    uint64_t *off, uint64_t *len, wp_err *e)
{
    if (m->expert < 0) {
        *off = 0;
        *len = t->size;
        return 0;
    }
    if (t->expert_stride % m->per)
        return wp_fail(e, WP_EINVAL, "%s: %s: %llu bytes per expert do not split into %u sources",
                       c->build_path, t->name, (unsigned long long)t->expert_stride, m->per);
    uint64_t slot = t->expert_stride / m->per;
    if (is_scale && m->per > 1 && t->ndim == 3 && c->src[m->row].t->enc == WP_ENC_FP8) {
        const wpk_tensor *w = c->src[m->row].t;
        if (w_rows % w->br)
            return wp_fail(e, WP_EINVAL, "%s: %s: a fused slice of %llu rows splits a %u-row FP8 scale block",
                           c->build_path, w->name, (unsigned long long)w_rows, w->br);
    }
    *off = (uint64_t)m->expert * t->expert_stride + m->slot * slot;
    *len = slot;
    return 0;
}

static int refuse(const ex_ctx *c, const ex_src *s, const char *want, wp_err *e)
{
    (void)c;
    return wp_fail(e, WP_EINVAL, "%s: %s: %s where the exported checkpoint holds %s: no exact Hugging Face "
                   "form of it", s->part, s->t->name, enc_of(s->t), want);
}

/* A tensor a tp build cuts (spec §2.5 item 3): one output joining the piece
 * of every rank along the cut dimension, bytes untouched -- for a plain
 * tensor and for an FP8 pair whose scales are already the export's (the cut
 * keeps whole blocks: the plan made sure); anything that would need
 * re-encoding is refused.  The pieces are in rank order (wpk_part). */
static int add_join(ex_ctx *c, const char *name, wp_dtype dt, int ndim, const uint64_t *shape, int dim,
                    const size_t *rows, wp_err *e)
{
    uint64_t len = 0;
    for (int r = 0; r < c->tp; r++) len += c->src[rows[r]].t->size;
    ex_out *o = add_out(c, name, dt, ndim, shape, OP_JOIN, rows[0], 0, len, e);
    if (!o) return WP_ENOMEM;
    if (!(o->join = malloc((size_t)c->tp * sizeof *o->join))) return wp_oom(e, "the export plan");
    memcpy(o->join, rows, (size_t)c->tp * sizeof *rows);
    o->jdim = dim;
    o->rows = shape[0];
    /* pieces of equal shape that add up along dim, the rest of the shape the model's */
    const wpk_tensor *t0 = c->src[rows[0]].t;
    for (int r = 0; r < c->tp; r++) {
        const wpk_tensor *t = c->src[rows[r]].t;
        int ok = t->ndim == ndim && t->size == t0->size && !t->stacked;
        for (int d = 0; ok && d < ndim; d++) ok = t->shape[d] == (d == dim ? shape[d] / (uint64_t)c->tp : shape[d]);
        if (!ok || shape[dim] % (uint64_t)c->tp)
            return wp_fail(e, WP_EINVAL, "%s: %s: this rank's piece is not 1/%d of the model's %s along dim %d",
                           c->src[rows[r]].part, t->name, c->tp, name, dim);
    }
    return 0;
}

static int plan_join(ex_ctx *c, const wp_expect *x, ex_kind kind, const char *base, int dim, wp_err *e)
{
    const wp_build_name *m = find_name(c, x->name);
    if (!m) {
        if (x->optional) return 0;
        return wp_fail(e, WP_EINVAL, "%s: %s: not in the build (the model's inventory has it)", c->build_path,
                       x->name);
    }
    size_t n = 0, rows[4096], srows[4096];
    const wp_build_name *end = c->names.v + c->names.n;
    for (const wp_build_name *k = m; k < end && !strcmp(k->name, x->name); k++) {
        const ex_src *s = &c->src[k->row];
        uint32_t idx, cnt;
        wpk_part(s->f, &idx, &cnt);
        if (n == (size_t)c->tp || cnt != (uint32_t)c->tp || idx >= cnt || k->expert >= 0)
            return wp_fail(e, WP_EINVAL, "%s: %s: a tp %d build holds it %s", c->build_path, x->name, c->tp,
                           k->expert >= 0 ? "as a stacked expert" : "more than once per rank");
        rows[idx] = k->row;
        srows[idx] = (size_t)-1;
        n++;
    }
    int seen[4096] = {0};
    for (const wp_build_name *k = m; k < end && !strcmp(k->name, x->name); k++) {
        uint32_t idx, cnt;
        wpk_part(c->src[k->row].f, &idx, &cnt);
        if (seen[idx]++) n = 0;   /* two pieces claim one rank */
    }
    if (n != (size_t)c->tp)
        return wp_fail(e, WP_EINVAL, "%s: %s: %zu of the %d ranks' pieces of this cut tensor", c->build_path, x->name,
                       n, c->tp);
    const ex_src *s0 = &c->src[rows[0]];
    const wpk_tensor *t0 = s0->t;
    if (kind == K_PLAIN || c->layout == LAYOUT_BF16) {   /* as plan_entry: BF16 for every pair of the bf16 layout */
        wp_dtype want = kind == K_PLAIN ? x->dtype : WP_BF16, have;
        for (int r = 0; r < c->tp; r++)
            if (!plain_dtype(c->src[rows[r]].t, &have) || have != want)
                return refuse(c, &c->src[rows[r]], wp_dtype_name(want), e);
        return add_join(c, x->name, want, x->ndim, x->shape, dim, rows, e);
    }
    if (kind != K_FP8 || t0->kind != WPK_KIND_ENC || t0->enc != WP_ENC_FP8)
        return wp_fail(e, WP_EINVAL, "%s: %s: %s, cut by tensor parallelism, where the exported checkpoint holds %s: "
                       "a cut tensor is joined back as it is stored, not re-encoded; export a build made with tp 1",
                       s0->part, t0->name, enc_of(t0), kind == K_FP8 ? "an FP8 pair" : "MXFP4");
    for (int r = 0; r < c->tp; r++) {
        const ex_src *s = &c->src[rows[r]];
        const wpk_tensor *t = s->t, *st = t->scale != WPK_NONE ? wpk_tensor_at(s->f, t->scale) : NULL;
        if (t->kind != WPK_KIND_ENC || t->enc != WP_ENC_FP8 || !st || t->sfmt != c->sfmt)
            return wp_fail(e, WP_EINVAL, "%s: %s: a cut FP8 piece whose scales are not the export's (%s): a cut "
                           "tensor is joined back as it is stored; export a build made with tp 1", s->part, t->name,
                           c->sfmt == WP_SCALE_F32 ? "F32" : "E8M0");
        srows[r] = rows[r] - t->index + st->index;
    }
    char sname[192];
    snprintf(sname, sizeof sname, "%s.scale", base);
    uint64_t ws[2] = {x->shape[0], x->shape[1]}, ss[2] = {cdiv(x->shape[0], c->br), cdiv(x->shape[1], c->bc)};
    int rc = add_join(c, x->name, WP_F8_E4M3, 2, ws, dim, rows, e);
    return rc ? rc : add_join(c, sname, c->sfmt == WP_SCALE_F32 ? WP_F32 : WP_F8_E8M0, 2, ss, dim, srows, e);
}

static int plan_entry(ex_ctx *c, const wp_expect *x, ex_kind kind, const char *base, wp_err *e)
{
    int dim = c->tp > 1 ? wp_tp_split_dim(x->name) : -1;
    if (dim >= 0) return plan_join(c, x, kind, base, dim, e);
    const wp_build_name *m = find_name(c, x->name);
    if (!m) {
        if (x->optional) return 0;
        return wp_fail(e, WP_EINVAL, "%s: %s: not in the build (the model's inventory has it)", c->build_path,
                       x->name);
    }
    const ex_src *s = &c->src[m->row];
    const wpk_tensor *t = s->t;
    /* the slice's logical shape */
    uint64_t rows = 0, cols = 0;
    if (t->kind == WPK_KIND_ENC && (t->ndim == 2 || (t->stacked && t->ndim == 3))) {
        int d = t->stacked ? 1 : 0;
        rows = t->shape[d] / m->per;
        cols = t->shape[d + 1];
        if (t->shape[d] % m->per)
            return wp_fail(e, WP_EINVAL, "%s: %s: %llu rows do not split into %u sources", s->part, t->name,
                           (unsigned long long)t->shape[d], m->per);
    }
    uint64_t off = 0, len = 0;
    int rc = slice_of(c, m, t, 0, rows, &off, &len, e);
    if (rc) return rc;

    if (kind == K_PLAIN || (c->layout == LAYOUT_BF16 && kind != K_PLAIN)) {
        /* one tensor: the official dtype (BF16 for every pair of the bf16 layout) */
        wp_dtype want = kind == K_PLAIN ? x->dtype : WP_BF16;
        uint64_t shape[WP_MAX_DIMS] = {0};
        int ndim = x->ndim;
        for (int i = 0; i < ndim; i++) shape[i] = x->shape[i];
        if (kind == K_FP4) shape[1] *= 2;   /* I8 [out, in/2] holds [out, in] */
        wp_dtype have;
        if (!plain_dtype(t, &have) || have != want) return refuse(c, s, wp_dtype_name(want), e);
        int ok = 1;
        if (m->expert >= 0) {
            ok = t->ndim == ndim + 1 && rows == shape[0] && (ndim < 2 || cols == shape[1]);
        } else {
            ok = t->ndim == ndim;
            for (int i = 0; ok && i < ndim; i++) ok = t->shape[i] == shape[i];
        }
        if (!ok)
            return wp_fail(e, WP_EINVAL, "%s: %s: its shape is not the model's for %s", s->part, t->name, x->name);
        return add_out(c, x->name, want, ndim, shape, OP_COPY, m->row, off, len, e) ? 0 : WP_ENOMEM;
    }

    /* a quantised pair: X.weight + X.scale */
    uint64_t out = x->shape[0], in = kind == K_FP4 ? x->shape[1] * 2 : x->shape[1];
    if (!rows || rows != out || cols != in) {
        wp_dtype have;
        if (t->kind != WPK_KIND_ENC && plain_dtype(t, &have)) return refuse(c, s, "a quantised pair", e);
        return wp_fail(e, WP_EINVAL, "%s: %s: [%llu, %llu] where the model has [%llu, %llu] for %s", s->part,
                       t->name, (unsigned long long)rows, (unsigned long long)cols, (unsigned long long)out,
                       (unsigned long long)in, x->name);
    }
    char sname[192];
    snprintf(sname, sizeof sname, "%s.scale", base);
    int fp4_target = kind == K_FP4 && c->layout == LAYOUT_FP4;
    if (fp4_target) {
        if (t->enc != WP_ENC_MXFP4) return refuse(c, s, "MXFP4 (I8 + E8M0 1x32)", e);
        uint64_t ws[2] = {out, in / 2}, ss[2] = {out, in / 32};
        const wpk_tensor *st = wpk_tensor_at(s->f, t->scale);
        uint64_t soff = 0, slen = 0;
        if (!st || (rc = slice_of(c, m, st, 1, rows, &soff, &slen, e))) return rc ? rc : WP_EINVAL;
        if (!add_out(c, x->name, WP_I8, 2, ws, OP_COPY, m->row, off, len, e)) return WP_ENOMEM;
        return add_out(c, sname, WP_F8_E8M0, 2, ss, OP_COPY, m->row - t->index + st->index, soff, slen, e)
                   ? 0 : WP_ENOMEM;
    }
    /* FP8: the official pairs, and the experts of the fp8 layout */
    uint64_t ws[2] = {out, in}, ss[2] = {cdiv(out, c->br), cdiv(in, c->bc)};
    wp_dtype sdt = c->sfmt == WP_SCALE_F32 ? WP_F32 : WP_F8_E8M0;
    if (t->enc == WP_ENC_FP8) {
        const wpk_tensor *st = wpk_tensor_at(s->f, t->scale);
        uint64_t soff = 0, slen = 0;
        if (!st || (rc = slice_of(c, m, st, 1, rows, &soff, &slen, e))) return rc ? rc : WP_EINVAL;
        if (!add_out(c, x->name, WP_F8_E4M3, 2, ws, OP_COPY, m->row, off, len, e)) return WP_ENOMEM;
        ex_op op = t->sfmt == c->sfmt ? OP_COPY : t->sfmt == WP_SCALE_F32 ? OP_F32_TO_E8M0 : OP_E8M0_TO_F32;
        return add_out(c, sname, sdt, 2, ss, op, m->row - t->index + st->index, soff, slen, e) ? 0 : WP_ENOMEM;
    }
    if (t->enc == WP_ENC_BF16) {   /* wo_a as convert.py writes it (spec §2.5 item 4), back to FP8 */
        ex_out *o = add_out(c, x->name, WP_F8_E4M3, 2, ws, OP_FP8_FROM_BF16, m->row, off, len, e);
        if (!o) return WP_ENOMEM;
        o->rows = rows;
        o->cols = cols;
        if (!(o = add_out(c, sname, sdt, 2, ss, OP_FP8_SCALE_BF16, m->row, off, len, e))) return WP_ENOMEM;
        o->rows = rows;
        o->cols = cols;
        return 0;
    }
    return refuse(c, s, kind == K_FP4 ? "FP8 routed experts" : "an FP8 pair", e);
}

static int plan(ex_ctx *c, uint64_t shard_size, wp_err *e)
{
    wp_expect *inv = NULL;
    size_t n = 0;
    int rc = wp_inventory(&c->cfg, &inv, &n, e);
    if (rc) return rc;
    if (!(rc = choose_layout(c, inv, n, e))) {
        void *buf = malloc(CHUNK);
        rc = buf ? choose_fp8(c, buf, e) : wp_oom(e, "a read buffer");
        free(buf);
    }
    for (size_t i = 0; i < n && !rc; i++) {
        const wp_expect *x = &inv[i];
        ex_kind kind = x->dtype == WP_F8_E4M3 ? K_FP8 : x->dtype == WP_I8 || x->dtype == WP_U8 ? K_FP4 : K_PLAIN;
        char base[192] = "";
        if (kind != K_PLAIN) {
            size_t l = strlen(x->name);
            if (l < 7 || !ends_with(x->name, ".weight") || i + 1 >= n)
                return free(inv), wp_fail(e, WP_EINVAL, "%s: an inventory pair without its scale", x->name);
            snprintf(base, sizeof base, "%.*s", (int)(l - 7), x->name);
            char sn[200];
            snprintf(sn, sizeof sn, "%s.scale", base);
            if (strcmp(inv[i + 1].name, sn))
                return free(inv), wp_fail(e, WP_EINVAL, "%s: an inventory pair without its scale", x->name);
            i++;   /* the scale comes with its weight */
        }
        rc = plan_entry(c, x, kind, base, e);
    }
    free(inv);
    if (rc) return rc;
    /* each output reads exactly the bytes it writes (or their conversion) */
    for (size_t i = 0; i < c->n_out; i++) {
        const ex_out *o = &c->out[i];
        uint64_t want = o->op == OP_COPY || o->op == OP_JOIN ? o->nbytes : o->op == OP_F32_TO_E8M0 ? o->nbytes * 4
                        : o->op == OP_E8M0_TO_F32 ? o->nbytes / 4 : o->rows * o->cols * 2;
        if (o->len != want || (o->op == OP_E8M0_TO_F32 && o->nbytes % 4))
            return wp_fail(e, WP_EINVAL, "%s: %s: %llu bytes of %s where %s needs %llu", c->src[o->src].part,
                           c->src[o->src].t->name, (unsigned long long)o->len, c->src[o->src].t->name, o->name,
                           (unsigned long long)want);
    }

    /* shards, as transformers cuts them: in order, a new one when the next
     * tensor would overflow the current (a tensor bigger than a shard gets one) */
    c->shards = calloc(c->n_out ? c->n_out : 1, sizeof *c->shards);
    if (!c->shards) return wp_oom(e, "the shard list");
    for (size_t i = 0; i < c->n_out; i++) {
        ex_shard *sh = c->n_shards ? &c->shards[c->n_shards - 1] : NULL;
        if (!sh || (sh->n && sh->bytes + c->out[i].nbytes > shard_size)) {
            sh = &c->shards[c->n_shards++];
            sh->first = i;
        }
        sh->n++;
        sh->bytes += c->out[i].nbytes;
        c->out[i].shard = c->n_shards - 1;
        c->total += c->out[i].nbytes;
    }
    for (size_t k = 0; k < c->n_shards; k++) {
        if (c->n_shards == 1) snprintf(c->shards[k].file, sizeof c->shards[k].file, "model.safetensors");
        else
            snprintf(c->shards[k].file, sizeof c->shards[k].file, "model-%05zu-of-%05zu.safetensors", k + 1,
                     c->n_shards);
    }

    /* who hashes what: each build tensor once, in offset order (a join's
     * pieces are its own: it reads and hashes each whole) */
    for (size_t i = 0; i < c->n_out; i++) {
        ex_out *o = &c->out[i];
        ex_src *s = &c->src[o->src];
        if (o->op == OP_JOIN) {
            for (int r = 0; r < c->tp; r++) c->src[o->join[r]].last = (long)i;
            continue;
        }
        uint64_t end = o->off + o->len;
        if (end > s->maxend) {
            o->hashes = 1;
            o->ha = s->maxend;
            o->hb = end;
            s->maxend = end;
            s->last = (long)i;
        }
    }
    for (size_t i = 0; i < c->n_src; i++)
        if (c->src[i].last >= 0 && c->out[c->src[i].last].op != OP_JOIN && c->src[i].maxend < c->src[i].t->size)
            c->out[c->src[i].last].hb = c->src[i].t->size;
    return 0;
}

/* ---- streaming ------------------------------------------------------------------ */

typedef struct ex_worker {
    ex_ctx *c;
    uint8_t *buf;              /* CHUNK bytes */
    float *f;                  /* OP_FP8_*: a band of floats and its re-decoded copy */
    float *g;
    uint8_t *q, *sc;
    size_t band_cap;
    wp_err e;
    int rc;
    size_t failed_shard;
} ex_worker;

static void progress(ex_ctx *c, uint64_t n)
{
    pthread_mutex_lock(&c->mu);
    c->done += n;
    if (c->progress) {
        double now = wp_now();
        if (c->done == c->total || now - c->last_progress >= 0.1) {
            c->last_progress = now;
            c->progress(c->progress_ud, "export", c->done, c->total);
        }
    }
    pthread_mutex_unlock(&c->mu);
}

/* Wait until the build tensor has been hashed up to `at` (by earlier outputs). */
static int wait_cursor(ex_ctx *c, ex_src *s, uint64_t at, wp_err *e)
{
    pthread_mutex_lock(&c->mu);
    while (s->cursor != at && !c->abort) pthread_cond_wait(&c->cv, &c->mu);
    int ab = c->abort;
    if (!ab && !s->h_live) {
        if (wp_sha256_init(&s->h, e)) ab = 2;
        else s->h_live = 1;
    }
    pthread_mutex_unlock(&c->mu);
    return ab == 2 ? WP_ENOMEM : ab ? 1 : 0;
}

/* Hash bytes [pos, pos+n) of o's build tensor that are o's to hash. */
static void hash_part(ex_src *s, const ex_out *o, uint64_t pos, const uint8_t *p, size_t n)
{
    if (!o->hashes) return;
    uint64_t lo = pos > o->ha ? pos : o->ha, hi = pos + n < o->hb ? pos + n : o->hb;
    if (hi > lo) wp_sha256_update(&s->h, p + (lo - pos), (size_t)(hi - lo));
}

/* Read [a, b) only to hash it (a gap before o's range, or the tail after). */
static int hash_only(ex_worker *w, ex_src *s, const ex_out *o, uint64_t a, uint64_t b)
{
    for (uint64_t pos = a; pos < b;) {
        size_t n = (size_t)(b - pos < CHUNK ? b - pos : CHUNK);
        int rc = wpk_read(s->f, s->t, pos, w->buf, n, &w->e);
        if (rc) return rc;
        hash_part(s, o, pos, w->buf, n);
        pos += n;
    }
    return 0;
}

static int release_cursor(ex_worker *w, ex_src *s, const ex_out *o)
{
    ex_ctx *c = w->c;
    int rc = 0;
    pthread_mutex_lock(&c->mu);
    s->cursor = o->hb;
    if (s->cursor == s->t->size) {
        uint8_t d[WP_SHA256_LEN];
        wp_sha256_final(&s->h, d);
        s->h_live = 0;
        if (memcmp(d, s->t->sha256, WP_SHA256_LEN))
            rc = wp_fail(&w->e, WP_EVERIFY, "%s: %s: sha256 mismatch: the build's bytes are not the ones it "
                         "recorded", wpk_path(s->f), s->t->name);
    }
    pthread_cond_broadcast(&c->cv);
    pthread_mutex_unlock(&c->mu);
    return rc;
}

/* A value a conversion could not carry: if the build tensor's bytes are not
 * the recorded ones, that is the error to report. */
static int conv_fail(ex_worker *w, const ex_src *s, int rc)
{
    wp_err d = {0};
    if (wpk_check_tensor(s->f, s->t->index, &d) == WP_EVERIFY) {
        wp_err_clear(&w->e);
        return wp_fail(&w->e, WP_EVERIFY, "%s", d.msg);
    }
    return rc;
}

static int band_buffers(ex_worker *w, uint64_t rows, uint64_t cols)
{
    uint64_t n = rows * cols;
    if (n <= w->band_cap) return 0;
    free(w->f);
    free(w->g);
    free(w->q);
    free(w->sc);
    w->f = malloc(n * sizeof *w->f);
    w->g = malloc(n * sizeof *w->g);
    w->q = malloc(n);
    w->sc = malloc(n + 16);   /* one E8M0 scale per bc columns of a band */
    if (!w->f || !w->g || !w->q || !w->sc) {
        w->band_cap = 0;
        return wp_oom(&w->e, "a band of %llu x %llu values", (unsigned long long)rows, (unsigned long long)cols);
    }
    w->band_cap = n;
    return 0;
}

/* OP_FP8_FROM_BF16 / OP_FP8_SCALE_BF16: bands of br rows, re-encoded with
 * power-of-two scales (spec §3.6's rule), every value checked to come back. */
static int run_fp8_from_bf16(ex_worker *w, ex_out *o, ex_src *s, wp_st_writer *sw)
{
    ex_ctx *c = w->c;
    uint64_t br = c->br, bc = c->bc, cols = o->cols, nbc = cdiv(cols, bc);
    int rc = band_buffers(w, br, cols);
    if (rc) return rc;
    for (uint64_t r0 = 0; r0 < o->rows; r0 += br) {
        uint64_t nr = o->rows - r0 < br ? o->rows - r0 : br;
        uint64_t pos = o->off + r0 * cols * 2, nb = nr * cols * 2;
        /* the band's bytes, in CHUNK pieces (hashed in order) */
        for (uint64_t k = 0; k < nb;) {
            size_t n = (size_t)(nb - k < CHUNK ? nb - k : CHUNK);
            if ((rc = wpk_read(s->f, s->t, pos + k, w->buf, n, &w->e))) return rc;
            hash_part(s, o, pos + k, w->buf, n);
            for (size_t j = 0; j < n / 2; j++) {
                uint16_t h;
                memcpy(&h, w->buf + 2 * j, 2);
                w->f[k / 2 + j] = wp_bf16_to_f32(h);
            }
            k += n;
        }
        wp_fp8_block_quant(w->f, (size_t)nr, (size_t)cols, (size_t)br, (size_t)bc, WP_SCALE_E8M0, w->q, w->sc);
        wp_fp8_block_dequant(w->q, w->sc, (size_t)nr, (size_t)cols, (size_t)br, (size_t)bc, WP_SCALE_E8M0, w->g);
        for (uint64_t j = 0; j < nr * cols; j++)
            if (memcmp(&w->f[j], &w->g[j], sizeof(float))) {
                rc = wp_fail(&w->e, WP_EINVAL, "%s: %s: the BF16 value %g at [%llu, %llu] is no FP8 E4M3 code "
                             "times its block's power-of-two scale: %s cannot be written as the FP8 pair "
                             "the checkpoint holds", s->part, s->t->name, (double)w->f[j],
                             (unsigned long long)(r0 + j / cols), (unsigned long long)(j % cols), o->name);
                return conv_fail(w, s, rc);
            }
        if (o->op == OP_FP8_FROM_BF16) {
            rc = wp_st_writer_write(sw, w->q, (size_t)(nr * cols), &w->e);
            if (!rc) progress(c, nr * cols);
        } else if (c->sfmt == WP_SCALE_E8M0) {
            rc = wp_st_writer_write(sw, w->sc, (size_t)nbc, &w->e);
            if (!rc) progress(c, nbc);
        } else {
            float v[64];
            for (uint64_t j = 0; j < nbc && !rc; j += 64) {
                size_t m = (size_t)(nbc - j < 64 ? nbc - j : 64);
                for (size_t k = 0; k < m; k++) v[k] = wp_e8m0_to_f32(w->sc[j + k]);
                rc = wp_st_writer_write(sw, v, m * 4, &w->e);
            }
            if (!rc) progress(c, nbc * 4);
        }
        if (rc) return rc;
    }
    return 0;
}

/* OP_JOIN: the pieces read whole and hashed (each is this output's alone),
 * rows cut (dim 0) written one piece after the other, columns cut (dim 1)
 * interleaved row by row in bands. */
static int run_join(ex_worker *w, ex_out *o, wp_st_writer *sw)
{
    ex_ctx *c = w->c;
    int n = c->tp, rc = 0, live = 0;
    wp_sha256 *h = calloc((size_t)n, sizeof *h);
    uint64_t *rb = calloc((size_t)n, sizeof *rb);
    uint8_t *tmp = o->jdim == 1 ? malloc(CHUNK) : NULL;
    if (!h || !rb || (o->jdim == 1 && !tmp)) rc = wp_oom(&w->e, "a join of %d pieces", n);
    while (!rc && live < n)
        if (!(rc = wp_sha256_init(&h[live], &w->e))) live++;
    uint64_t full = 0;
    for (int r = 0; !rc && r < n; r++) {
        const ex_src *s = &c->src[o->join[r]];
        rb[r] = o->rows ? s->t->size / o->rows : 0;
        full += rb[r];
        if (o->jdim == 1 && (!o->rows || s->t->size % o->rows))
            rc = wp_fail(&w->e, WP_EINVAL, "%s: %s: %llu bytes are not %llu rows", s->part, s->t->name,
                         (unsigned long long)s->t->size, (unsigned long long)o->rows);
    }
    if (!rc && o->jdim == 1 && (full == 0 || full > CHUNK))
        rc = wp_fail(&w->e, WP_EINVAL, "%s: rows of %llu bytes: not joined in %u-byte bands", o->name,
                     (unsigned long long)full, CHUNK);
    if (o->jdim == 0) {
        for (int r = 0; r < n && !rc; r++) {
            const ex_src *s = &c->src[o->join[r]];
            for (uint64_t pos = 0; pos < s->t->size && !rc;) {
                size_t k = (size_t)(s->t->size - pos < CHUNK ? s->t->size - pos : CHUNK);
                if ((rc = wpk_read(s->f, s->t, pos, w->buf, k, &w->e))) break;
                wp_sha256_update(&h[r], w->buf, k);
                rc = wp_st_writer_write(sw, w->buf, k, &w->e);
                if (!rc) progress(c, k);
                pos += k;
            }
        }
    } else {
        uint64_t band = full ? CHUNK / full : 0;
        for (uint64_t r0 = 0; !rc && r0 < o->rows; r0 += band) {
            uint64_t nr = o->rows - r0 < band ? o->rows - r0 : band, col = 0;
            for (int r = 0; r < n && !rc; r++) {
                const ex_src *s = &c->src[o->join[r]];
                if ((rc = wpk_read(s->f, s->t, r0 * rb[r], tmp, (size_t)(nr * rb[r]), &w->e))) break;
                wp_sha256_update(&h[r], tmp, (size_t)(nr * rb[r]));
                for (uint64_t i = 0; i < nr; i++) memcpy(w->buf + i * full + col, tmp + i * rb[r], (size_t)rb[r]);
                col += rb[r];
            }
            if (!rc) rc = wp_st_writer_write(sw, w->buf, (size_t)(nr * full), &w->e);
            if (!rc) progress(c, nr * full);
        }
    }
    for (int r = 0; r < live; r++) {
        uint8_t d[WP_SHA256_LEN];
        wp_sha256_final(&h[r], d);   /* frees the context */
        const ex_src *s = &c->src[o->join[r]];
        if (!rc && memcmp(d, s->t->sha256, WP_SHA256_LEN))
            rc = wp_fail(&w->e, WP_EVERIFY, "%s: %s: sha256 mismatch: the build's bytes are not the ones it recorded",
                         wpk_path(s->f), s->t->name);
    }
    free(tmp);
    free(rb);
    free(h);
    return rc;
}

static int run_out(ex_worker *w, ex_out *o, wp_st_writer *sw)
{
    if (o->op == OP_JOIN) return run_join(w, o, sw);
    ex_ctx *c = w->c;
    ex_src *s = &c->src[o->src];
    int rc = 0;
    if (o->hashes) {
        if ((rc = wait_cursor(c, s, o->ha, &w->e))) return rc;
        if (o->ha < o->off && (rc = hash_only(w, s, o, o->ha, o->off))) return rc;
    }
    if (o->op == OP_FP8_FROM_BF16 || o->op == OP_FP8_SCALE_BF16) {
        rc = run_fp8_from_bf16(w, o, s, sw);
    } else {
        /* COPY reads CHUNK at a time; the scale conversions write their
         * output into the buffer's upper half */
        uint64_t step = o->op == OP_COPY ? CHUNK : o->op == OP_E8M0_TO_F32 ? CHUNK / 8 : CHUNK / 2;
        for (uint64_t k = 0; k < o->len && !rc;) {
            size_t n = (size_t)(o->len - k < step ? o->len - k : step);
            if ((rc = wpk_read(s->f, s->t, o->off + k, w->buf, n, &w->e))) break;
            hash_part(s, o, o->off + k, w->buf, n);
            if (o->op == OP_COPY) {
                rc = wp_st_writer_write(sw, w->buf, n, &w->e);
                if (!rc) progress(c, n);
            } else if (o->op == OP_E8M0_TO_F32) {
                float *v = (float *)(w->buf + CHUNK / 2);   /* 4 bytes out per byte in */
                for (size_t j = 0; j < n; j++) v[j] = wp_e8m0_to_f32(w->buf[j]);
                rc = wp_st_writer_write(sw, v, n * 4, &w->e);
                if (!rc) progress(c, n * 4);
            } else {   /* OP_F32_TO_E8M0 */
                uint8_t *q = w->buf + CHUNK / 2;
                for (size_t j = 0; j + 4 <= n && !rc; j += 4) {
                    float v;
                    memcpy(&v, w->buf + j, 4);
                    int code = wp_f32_to_e8m0_exact(v);
                    if (code < 0)
                        rc = conv_fail(w, s, wp_fail(&w->e, WP_EIO, "%s: %s: changed while it was read (a scale "
                                                     "that was a power of two is %g)", s->part, s->t->name,
                                                     (double)v));
                    q[j / 4] = (uint8_t)code;
                }
                if (!rc) rc = wp_st_writer_write(sw, q, n / 4, &w->e);
                if (!rc) progress(c, n / 4);
            }
            k += n;
        }
    }
    if (rc) return rc;
    if (o->hashes) {
        if (o->hb > o->off + o->len && (rc = hash_only(w, s, o, o->off + o->len, o->hb))) return rc;
        rc = release_cursor(w, s, o);
    }
    return rc;
}

static int run_shard(ex_worker *w, size_t k)
{
    ex_ctx *c = w->c;
    ex_shard *sh = &c->shards[k];
    char path[4096];
    if (wp_path_join(path, sizeof path, c->tmp, sh->file)) return wp_fail(&w->e, WP_EUSAGE, "%s: path too long", c->tmp);
    wp_st_writer *sw = NULL;
    pthread_mutex_lock(&c->mu);
    int rc = wp_st_writer_open(&sw, path, &w->e);
    pthread_mutex_unlock(&c->mu);
    if (rc) return rc;
    rc = wp_st_writer_meta(sw, "format", "pt", &w->e);
    for (size_t i = sh->first; i < sh->first + sh->n && !rc; i++)
        rc = wp_st_writer_add(sw, c->out[i].name, c->out[i].dtype, c->out[i].ndim, c->out[i].shape, &w->e);
    for (size_t i = sh->first; i < sh->first + sh->n && !rc; i++) rc = run_out(w, &c->out[i], sw);
    pthread_mutex_lock(&c->mu);
    if (!rc) rc = wp_st_writer_commit(sw, &w->e);
    else wp_st_writer_abort(sw);
    pthread_mutex_unlock(&c->mu);
    return rc;
}

static void *worker(void *ud)
{
    ex_worker *w = ud;
    ex_ctx *c = w->c;
    for (;;) {
        pthread_mutex_lock(&c->mu);
        size_t k = c->abort ? c->n_shards : c->next_shard++;
        pthread_mutex_unlock(&c->mu);
        if (k >= c->n_shards) break;
        int rc = run_shard(w, k);
        if (rc) {
            pthread_mutex_lock(&c->mu);
            if (rc != 1 && !w->rc) {   /* 1: stopped because another worker failed */
                w->rc = rc;
                w->failed_shard = k;
            }
            c->abort = 1;
            pthread_cond_broadcast(&c->cv);
            pthread_mutex_unlock(&c->mu);
            break;
        }
    }
    return NULL;
}

static int stream(ex_ctx *c, int threads, wp_err *e)
{
    if (threads <= 0) threads = (int)sysconf(_SC_NPROCESSORS_ONLN);
    if (threads < 1) threads = 1;
    if ((size_t)threads > c->n_shards) threads = (int)c->n_shards;
    if (threads > MAX_WORKERS) threads = MAX_WORKERS;
    if (threads < 1) threads = 1;
    ex_worker *w = calloc((size_t)threads, sizeof *w);
    pthread_t *tid = calloc((size_t)threads, sizeof *tid);
    int rc = 0;
    if (!w || !tid) rc = wp_oom(e, "the export workers");
    int started = 0;
    for (int i = 0; i < threads && !rc; i++) {
        w[i].c = c;
        if (!(w[i].buf = malloc(CHUNK))) rc = wp_oom(e, "a read buffer");
    }
    if (!rc && c->progress) c->progress(c->progress_ud, "export", 0, c->total);
    for (int i = 1; i < threads && !rc; i++) {
        if (pthread_create(&tid[i], NULL, worker, &w[i])) {
            rc = wp_fail(e, WP_EIO, "cannot start an export worker");
            pthread_mutex_lock(&c->mu);
            c->abort = 1;
            pthread_cond_broadcast(&c->cv);
            pthread_mutex_unlock(&c->mu);
            break;
        }
        started = i;
    }
    if (!rc || started) worker(&w[0]);
    for (int i = 1; i <= started; i++) pthread_join(tid[i], NULL);
    /* the first real failure, by shard (the same error whatever the timing
     * when only one thing is wrong) */
    int best = -1;
    for (int i = 0; w && i < threads; i++)
        if (w[i].rc && (best < 0 || w[i].failed_shard < w[best].failed_shard)) best = i;
    if (!rc && best >= 0) {
        *e = w[best].e;
        rc = w[best].rc;
    }
    for (int i = 0; w && i < threads; i++) {
        free(w[i].buf);
        free(w[i].f);
        free(w[i].g);
        free(w[i].q);
        free(w[i].sc);
    }
    for (size_t i = 0; i < c->n_src; i++)
        if (c->src[i].h_live) wp_sha256_free(&c->src[i].h);
    free(w);
    free(tid);
    return rc;
}

/* ---- config.json and the other files --------------------------------------------- */

static int write_text(const char *dir, const char *name, const char *text, wp_err *e)
{
    char path[4096];
    if (wp_path_join(path, sizeof path, dir, name)) return wp_fail(e, WP_EUSAGE, "%s: path too long", dir);
    return wp_write_file_atomic(path, text, strlen(text), e);
}

/* cJSON's tab layout as json.dumps(indent=2) writes it (a literal tab in a
 * string is escaped, so every tab is layout). */
static char *pretty(const cJSON *j)
{
    char *s = cJSON_Print(j);
    if (!s) return NULL;
    size_t n = strlen(s), k = 0;
    char *p = malloc(2 * n + 2);
    if (p) {
        for (size_t i = 0; i < n; i++) {
            if (s[i] != '\t') p[k++] = s[i];
            else if (i && s[i - 1] == ':') p[k++] = ' ';
            else {
                p[k++] = ' ';
                p[k++] = ' ';
            }
        }
        p[k++] = '\n';
        p[k] = 0;
    }
    free(s);
    return p;
}

static int set_item(cJSON *o, const char *k, cJSON *v)
{
    if (!v) return 0;
    if (cJSON_GetObjectItemCaseSensitive(o, k)) return cJSON_ReplaceItemInObjectCaseSensitive(o, k, v);
    return cJSON_AddItemToObject(o, k, v);
}

/* The source's config.json (its keys kept) or one made from the model the
 * build records plus the official constants (spec §1.1), then what the
 * shards hold: quantization_config and expert_dtype, or neither. */
static int write_config(ex_ctx *c, const char *src_cfg, wp_err *e)
{
    cJSON *j = NULL;
    int ok = 1;
    if (src_cfg) {
        j = cJSON_Parse(src_cfg);
        if (j && !cJSON_IsObject(j)) {
            cJSON_Delete(j);
            j = NULL;
        }
    } else if ((j = wp_config_to_json(&c->cfg))) {
        cJSON *arch = cJSON_CreateStringArray((const char *[]){"DeepseekV4ForCausalLM"}, 1);
        ok = arch && cJSON_AddItemToObject(j, "architectures", arch);
        if (!ok) cJSON_Delete(arch);
        ok = ok && cJSON_AddStringToObject(j, "model_type", "deepseek_v4") &&
             cJSON_AddStringToObject(j, "torch_dtype", "bfloat16") &&
             cJSON_AddStringToObject(j, "hidden_act", "silu") &&
             cJSON_AddBoolToObject(j, "tie_word_embeddings", 0) &&
             cJSON_AddBoolToObject(j, "norm_topk_prob", 1) &&
             cJSON_AddStringToObject(j, "topk_method", "noaux_tc");
    }
    if (!j || !ok) {
        cJSON_Delete(j);
        return src_cfg && !j ? wp_fail(e, WP_EINVAL, "the source's config.json is not JSON") : wp_oom(e, "config.json");
    }
    if (c->layout == LAYOUT_BF16) {
        cJSON_DeleteItemFromObjectCaseSensitive(j, "quantization_config");
        cJSON_DeleteItemFromObjectCaseSensitive(j, "expert_dtype");
    } else {
        ok = set_item(j, "expert_dtype", cJSON_CreateString(c->layout == LAYOUT_FP4 ? "fp4" : "fp8"));
        cJSON *q = cJSON_GetObjectItemCaseSensitive(j, "quantization_config");
        if (!cJSON_IsObject(q)) {
            q = cJSON_CreateObject();
            ok = ok && set_item(j, "quantization_config", q);
        }
        if (ok && !cJSON_GetObjectItemCaseSensitive(q, "activation_scheme"))
            ok = cJSON_AddStringToObject(q, "activation_scheme", "dynamic") != NULL;
        cJSON *blk = cJSON_CreateIntArray((const int[]){(int)c->br, (int)c->bc}, 2);
        ok = ok && set_item(q, "fmt", cJSON_CreateString("e4m3")) &&
             set_item(q, "quant_method", cJSON_CreateString("fp8")) &&
             set_item(q, "scale_fmt", c->sfmt == WP_SCALE_E8M0 ? cJSON_CreateString("ue8m0") : cJSON_CreateNull()) &&
             set_item(q, "weight_block_size", blk);
    }
    char *s = ok ? pretty(j) : NULL;
    cJSON_Delete(j);
    if (!s) return wp_oom(e, "config.json");
    int rc = write_text(c->tmp, "config.json", s, e);
    free(s);
    return rc;
}

static int write_index(ex_ctx *c, wp_err *e)
{
    if (c->n_shards < 2) return 0;
    const char **names = malloc(c->n_out * sizeof *names), **files = malloc(c->n_out * sizeof *files);
    int rc = names && files ? 0 : wp_oom(e, "the weight map");
    for (size_t i = 0; i < c->n_out && !rc; i++) {
        names[i] = c->out[i].name;
        files[i] = c->shards[c->out[i].shard].file;
    }
    char path[4096];
    if (!rc && wp_path_join(path, sizeof path, c->tmp, "model.safetensors.index.json"))
        rc = wp_fail(e, WP_EUSAGE, "%s: path too long", c->tmp);
    if (!rc) rc = wp_st_write_index(path, names, files, c->n_out, c->total, e);
    free(names);
    free(files);
    return rc;
}

/* The files of an HF repository that are neither weights nor config.json. */
static const char *const side_files[] = {
    "generation_config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
    "tokenizer.model", "chat_template.jinja", NULL,
};

static int copy_side_files(ex_ctx *c, const char *srcdir, wp_export_stats *st, wp_err *e)
{
    for (int i = 0; side_files[i]; i++) {
        char path[4096];
        struct stat sb;
        if (wp_path_join(path, sizeof path, srcdir, side_files[i]))
            return wp_fail(e, WP_EUSAGE, "%s: path too long", srcdir);
        if (stat(path, &sb) || !S_ISREG(sb.st_mode)) continue;
        char *text = NULL;
        size_t len = 0;
        int rc = wp_read_small_file(path, 256u << 20, &text, &len, e);
        if (rc) return rc;
        char dst[4096];
        if (wp_path_join(dst, sizeof dst, c->tmp, side_files[i])) rc = wp_fail(e, WP_EUSAGE, "%s: path too long", c->tmp);
        else rc = wp_write_file_atomic(dst, text, len, e);
        free(text);
        if (rc) return rc;
        char **v = realloc(st->files, (st->n_files + 1) * sizeof *v);
        if (!v || !(v[st->n_files] = strdup(side_files[i]))) {
            if (v) st->files = v;
            return wp_oom(e, "the copied files");
        }
        st->files = v;
        st->n_files++;
    }
    if (!st->n_files)
        snprintf(st->files_note, sizeof st->files_note, "%s has no tokenizer or generation files", srcdir);
    return 0;
}

/* The source checkpoint: its config.json must be the one the build was made
 * from (provenance config_sha256). */
static int read_source(ex_ctx *c, const char *source, const char *cfg_sha, char **cfg, wp_err *e)
{
    char path[4096];
    struct stat sb;
    if (stat(source, &sb))
        return wp_fail_setting(e, WP_EIO, "source", "%s: cannot open the source checkpoint: %s", source,
                               strerror(errno));
    if (!S_ISDIR(sb.st_mode))
        return wp_fail_setting(e, WP_EUSAGE, "source", "%s: the source checkpoint is a directory", source);
    if (wp_path_join(path, sizeof path, source, "config.json")) return wp_fail(e, WP_EUSAGE, "%s: path too long", source);
    size_t len = 0;
    int rc = wp_read_small_file(path, 16u << 20, cfg, &len, e);
    if (rc) return rc;
    if (!cfg_sha)
        return wp_fail_setting(e, WP_EINVAL, "source", "%s: the build records no config_sha256: %s cannot be "
                               "checked to be its source", c->build_path, source);
    uint8_t d[WP_SHA256_LEN];
    char hex[2 * WP_SHA256_LEN + 1];
    if ((rc = wp_sha256_buf(*cfg, len, d, e))) return rc;
    wp_hex(d, WP_SHA256_LEN, hex);
    if (strcmp(hex, cfg_sha))
        return wp_fail_setting(e, WP_EINVAL, "source", "%s: sha256 %.12s... is not the config.json the build was made "
                               "from (%.12s...): not its source checkpoint", path, hex, cfg_sha);
    return 0;
}

/* ---- the export -------------------------------------------------------------------- */

static void ctx_free(ex_ctx *c)
{
    for (size_t i = 0; i < c->n_out; i++) {
        free(c->out[i].name);
        free(c->out[i].join);
    }
    free(c->out);
    free(c->shards);
    wp_name_index_free(&c->names);
    wp_tensor_list_free(&c->list);
    free(c->src);
    wp_build_close(c->b);
}

int wp_export(const char *build, const char *out, const wp_export_opts *o, wp_export_stats *st, wp_err *e)
{
    wp_export_opts def = WP_EXPORT_OPTS_INIT;
    if (!o) o = &def;
    memset(st, 0, sizeof *st);
    ex_ctx c;
    memset(&c, 0, sizeof c);
    c.build_path = build;
    c.progress = o->progress;
    c.progress_ud = o->progress_ud;
    pthread_mutex_init(&c.mu, NULL);
    pthread_cond_init(&c.cv, NULL);
    const char *model_json = NULL, *prov = NULL, *cfg_sha = NULL;
    cJSON *pj = NULL, *prof = NULL;
    char *src_cfg = NULL;
    wp_outdir od;
    memset(&od, 0, sizeof od);
    int rc = wp_build_open(&c.b, build, e);
    if (!rc) rc = open_build(&c, &model_json, &prov, &cfg_sha, &pj, e);
    if (!rc) rc = wp_config_parse(&c.cfg, model_json, strlen(model_json), build, e);
    if (!rc && o->source) rc = read_source(&c, o->source, cfg_sha, &src_cfg, e);
    if (!rc) rc = plan(&c, o->shard_size ? o->shard_size : WP_EXPORT_SHARD_DEFAULT, e);
    if (rc) goto done;

    if ((rc = wp_outdir_begin(&od, out, &(wp_outdir_opts){.force = o->force, .kind = WP_OUTDIR_CHECKPOINT}, e)))
        goto done;
    c.tmp = wp_outdir_tmp(&od);
    rc = stream(&c, o->threads, e);
    if (!rc) rc = write_index(&c, e);
    if (!rc) rc = write_config(&c, src_cfg, e);
    if (!rc && o->source) rc = copy_side_files(&c, o->source, st, e);
    if (!rc) rc = wp_outdir_commit(&od, e);

done:
    if (!rc) {
        snprintf(st->layout, sizeof st->layout, "%s", layout_names[c.layout]);
        prof = c.profile ? cJSON_Parse(c.profile) : NULL;
        const cJSON *pn = prof ? cJSON_GetObjectItemCaseSensitive(prof, "name") : NULL;
        snprintf(st->profile, sizeof st->profile, "%s", cJSON_IsString(pn) ? pn->valuestring : "");
        snprintf(st->expert_dtype, sizeof st->expert_dtype, "%s",
                 c.layout == LAYOUT_FP4 ? "fp4" : c.layout == LAYOUT_FP8 ? "fp8" : "");
        snprintf(st->scale_fmt, sizeof st->scale_fmt, "%s",
                 c.layout == LAYOUT_BF16 ? "" : c.sfmt == WP_SCALE_E8M0 ? "ue8m0" : "f32");
        if (c.layout != LAYOUT_BF16) {
            st->block[0] = c.br;
            st->block[1] = c.bc;
        }
        st->shards = c.n_shards;
        st->tensors = c.n_out;
        st->total_size = c.total;
        for (size_t i = 0; i < c.n_out; i++) {
            if (c.out[i].op == OP_COPY || c.out[i].op == OP_JOIN) st->copied++;
            else st->converted++;
        }
        for (size_t i = 0; i < c.n_src; i++)
            if (c.src[i].last >= 0) {
                st->build_tensors++;
                st->verified_bytes += c.src[i].t->size;
            }
        if (!o->source)
            snprintf(st->files_note, sizeof st->files_note,
                     "no tokenizer or generation files: the build does not record where its source checkpoint "
                     "is");
    } else {
        wp_export_stats_free(st);
    }
    wp_outdir_abort(&od);   /* removes the temporary tree; nothing to do after a commit */
    cJSON_Delete(prof);
    cJSON_Delete(pj);
    free(src_cfg);
    ctx_free(&c);
    pthread_mutex_destroy(&c.mu);
    pthread_cond_destroy(&c.cv);
    return rc;
}

void wp_export_stats_free(wp_export_stats *st)
{
    if (!st) return;
    for (size_t i = 0; i < st->n_files; i++) free(st->files[i]);
    free(st->files);
    st->files = NULL;
    st->n_files = 0;
}

cJSON *wp_export_stats_json(const char *build, const char *out, const wp_export_stats *st)
{
    cJSON *j = cJSON_CreateObject();
    if (!j) return NULL;
    cJSON_AddStringToObject(j, "build", build);
    cJSON_AddStringToObject(j, "output", out);
    cJSON_AddStringToObject(j, "profile", st->profile);
    cJSON_AddStringToObject(j, "layout", st->layout);
    if (st->expert_dtype[0]) cJSON_AddStringToObject(j, "expert_dtype", st->expert_dtype);
    else cJSON_AddNullToObject(j, "expert_dtype");
    if (st->scale_fmt[0]) {
        cJSON_AddStringToObject(j, "scale_fmt", st->scale_fmt);
        cJSON_AddItemToObject(j, "weight_block_size", cJSON_CreateIntArray((const int[]){(int)st->block[0], (int)st->block[1]}, 2));
    } else {
        cJSON_AddNullToObject(j, "scale_fmt");
        cJSON_AddNullToObject(j, "weight_block_size");
    }
    cJSON_AddNumberToObject(j, "shards", (double)st->shards);
    cJSON_AddNumberToObject(j, "tensors", (double)st->tensors);
    cJSON_AddNumberToObject(j, "total_size", (double)st->total_size);
    cJSON_AddNumberToObject(j, "copied", (double)st->copied);
    cJSON_AddNumberToObject(j, "converted", (double)st->converted);
    cJSON_AddNumberToObject(j, "build_tensors_verified", (double)st->build_tensors);
    cJSON_AddNumberToObject(j, "verified_bytes", (double)st->verified_bytes);
    cJSON *f = cJSON_AddArrayToObject(j, "files");
    for (size_t i = 0; f && i < st->n_files; i++) cJSON_AddItemToArray(f, cJSON_CreateString(st->files[i]));
    if (st->files_note[0]) cJSON_AddStringToObject(j, "files_note", st->files_note);
    return j;
}
