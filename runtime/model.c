/*
 * model.c — loading the model from a tensor source, the per-sequence caches,
 * and the forward pass (spec §4.1, §4.2, §4.10-§4.12): embedding, HC-wrapped
 * blocks, the head on the last position, the MTP block.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "runtime/internal.h"

/* ---- Loading ------------------------------------------------------------------------- */

typedef struct loader {
    wp_model *m;
    wp_tsrc *src;
    wp_err *e;
    void **owned;          /* float/int arrays the model frees */
    size_t n_owned, cap_owned;
} loader;

static void *own(loader *ld, size_t bytes)
{
    if (ld->n_owned == ld->cap_owned) {
        size_t nc = ld->cap_owned ? ld->cap_owned * 2 : 256;
        void **p = realloc(ld->owned, nc * sizeof *p);
        if (!p) return NULL;
        ld->owned = p;
        ld->cap_owned = nc;
    }
    void *p = malloc(bytes ? bytes : 1);
    if (p) ld->owned[ld->n_owned++] = p;
    return p;
}

/* A plain float vector/matrix of exactly n elements, converted to fp32. */
static int load_vec(loader *ld, const char *name, uint64_t n, float **out)
{
    wp_tview v;
    int rc = ld->src->tensor(ld->src, name, &v, ld->e);
    if (rc) return rc;
    uint64_t cnt = 1;
    for (int i = 0; i < v.ndim; i++) cnt *= v.shape[i];
    if (cnt != n)
        return wp_fail(ld->e, WP_EINVAL, "%s: %s: %llu elements, the config implies %llu",
                       ld->src->path, name, (unsigned long long)cnt, (unsigned long long)n);
    float *f = own(ld, sizeof(float) * n);
    if (!f) return wp_oom(ld->e, "%s", name);
    for (uint64_t i = 0; i < n; i++) {
        switch (v.dtype) {
        case WP_F32: memcpy(&f[i], (const char *)v.data + 4 * i, 4); break;
        case WP_BF16: { uint16_t h; memcpy(&h, (const char *)v.data + 2 * i, 2); f[i] = wp_bf16_to_f32(h); break; }
        case WP_F16: { uint16_t h; memcpy(&h, (const char *)v.data + 2 * i, 2); f[i] = wp_f16_to_f32(h); break; }
        default:
            return wp_fail(ld->e, WP_EINVAL, "%s: %s: dtype %s, expected F32, BF16 or F16",
                           ld->src->path, name, wp_dtype_name(v.dtype));
        }
    }
    *out = f;
    return 0;
}

/* The kernels load 2- and 4-byte elements directly: a source whose bytes are
 * not naturally aligned (safetensors does not promise it) gets an aligned copy. */
static const void *aligned(loader *ld, const void *p, size_t bytes, size_t align, const char *name)
{
    if ((uintptr_t)p % align == 0) return p;
    void *c = own(ld, bytes);
    if (!c) {
        wp_oom(ld->e, "%s", name);
        return NULL;
    }
    memcpy(c, p, bytes);
    return c;
}

static int load_w(loader *ld, const char *name, uint64_t rows, uint64_t cols, wp_qweight *w)
{
    int rc = ld->src->weight(ld->src, name, w, ld->e);
    if (rc) return rc;
    if (w->rows != rows || w->cols != cols)
        return wp_fail(ld->e, WP_EINVAL, "%s: %s.weight: logical shape [%llu, %llu], the config "
                       "implies [%llu, %llu]", ld->src->path, name, (unsigned long long)w->rows,
                       (unsigned long long)w->cols, (unsigned long long)rows,
                       (unsigned long long)cols);
    if ((w->enc == WP_ENC_MXFP4 || w->enc == WP_ENC_NVFP4) && cols % (w->enc == WP_ENC_MXFP4 ? 32 : 16))
        return wp_fail(ld->e, WP_EINVAL, "%s: %s.weight: %llu columns do not fill whole %s "
                       "scale groups", ld->src->path, name, (unsigned long long)cols,
                       wp_enc_name(w->enc));
    if (w->enc == WP_ENC_FP8 && (!w->br || !w->bc))
        return wp_fail(ld->e, WP_EINVAL, "%s: %s.weight: FP8 without a block size", ld->src->path,
                       name);
    size_t esz = w->enc == WP_ENC_F32 ? 4 : w->enc == WP_ENC_BF16 || w->enc == WP_ENC_F16 ? 2 : 1;
    if (!(w->data = aligned(ld, w->data, wp_enc_data_bytes(w->enc, rows, cols), esz, name)))
        return WP_ENOMEM;
    if (w->enc == WP_ENC_FP8 && w->sfmt == WP_SCALE_F32 &&
        !(w->scale = aligned(ld, w->scale, wp_enc_scale_bytes(w->enc, rows, cols, w->br, w->bc,
                                                              w->sfmt), 4, name)))
        return WP_ENOMEM;
    return 0;
}

static int load_tid2eid(loader *ld, const char *name, rt_layer *L)
{
    const wp_config *c = &ld->m->cfg;
    wp_tview v;
    int rc = ld->src->tensor(ld->src, name, &v, ld->e);
    if (rc) return rc;
    const uint64_t V = (uint64_t)c->vocab_size, k = (uint64_t)c->n_activated_experts;
    if (v.ndim != 2 || v.shape[0] != V || v.shape[1] != k)
        return wp_fail(ld->e, WP_EINVAL, "%s: %s: shape is not [%llu, %llu]", ld->src->path,
                       name, (unsigned long long)V, (unsigned long long)k);
    if (v.dtype != WP_I64 && v.dtype != WP_I32)
        return wp_fail(ld->e, WP_EINVAL, "%s: %s: dtype %s, expected I64 or I32", ld->src->path,
                       name, wp_dtype_name(v.dtype));
    int32_t *t = own(ld, sizeof(int32_t) * V * k);
    if (!t) return wp_oom(ld->e, "%s", name);
    for (uint64_t i = 0; i < V * k; i++) {
        int64_t x;
        if (v.dtype == WP_I64) memcpy(&x, (const char *)v.data + 8 * i, 8);
        else { int32_t y; memcpy(&y, (const char *)v.data + 4 * i, 4); x = y; }
        if (x < 0 || x >= c->n_routed_experts)
            return wp_fail(ld->e, WP_EINVAL, "%s: %s: token %llu routes to expert %lld, not in "
                           "[0, %d)", ld->src->path, name, (unsigned long long)(i / k),
                           (long long)x, c->n_routed_experts);
        t[i] = (int32_t)x;
    }
    L->tid2eid = t;
    return 0;
}

#define NM(fmt, ...) (snprintf(nm, sizeof nm, "%s" fmt, L->prefix, ##__VA_ARGS__), nm)

static int load_comp(loader *ld, rt_layer *L, const char *pre, int dc, int rotate, rt_comp *cp)
{
    const wp_config *c = &ld->m->cfg;
    char nm[256];
    int rc;
    cp->present = 1;
    cp->m = L->ratio;
    cp->overlap = L->ratio == 4;      /* spec §4.6: overlap iff ratio 4 */
    cp->dc = dc;
    cp->rotate = rotate;
    uint64_t W = (uint64_t)(cp->overlap ? 2 : 1) * dc;
    if ((rc = load_w(ld, NM("%s.wkv", pre), W, (uint64_t)c->dim, &cp->wkv))) return rc;
    if ((rc = load_w(ld, NM("%s.wgate", pre), W, (uint64_t)c->dim, &cp->wgate))) return rc;
    if ((rc = load_vec(ld, NM("%s.ape", pre), (uint64_t)cp->m * W, &cp->ape))) return rc;
    return load_vec(ld, NM("%s.norm.weight", pre), (uint64_t)dc, &cp->norm);
}

static int load_layer(loader *ld, rt_layer *L)
{
    wp_model *m = ld->m;
    const wp_config *c = &m->cfg;
    const uint64_t d = (uint64_t)c->dim, H = (uint64_t)c->n_heads, D = (uint64_t)c->head_dim;
    const uint64_t Lq = (uint64_t)c->q_lora_rank, G = (uint64_t)c->o_groups,
                   R = (uint64_t)c->o_lora_rank, hc = (uint64_t)c->hc_mult;
    const uint64_t nmix = (2 + hc) * hc, E = (uint64_t)c->n_routed_experts,
                   I = (uint64_t)c->moe_inter_dim;
    char nm[256];
    int rc;
    if ((rc = load_vec(ld, NM("attn_norm.weight"), d, &L->attn_norm))) return rc;
    if ((rc = load_vec(ld, NM("ffn_norm.weight"), d, &L->ffn_norm))) return rc;
    if ((rc = load_vec(ld, NM("attn.q_norm.weight"), Lq, &L->q_norm))) return rc;
    if ((rc = load_vec(ld, NM("attn.kv_norm.weight"), D, &L->kv_norm))) return rc;
    if ((rc = load_vec(ld, NM("attn.attn_sink"), H, &L->sink))) return rc;
    if ((rc = load_vec(ld, NM("hc_attn_fn"), nmix * hc * d, &L->hc_attn_fn))) return rc;
    if ((rc = load_vec(ld, NM("hc_attn_base"), nmix, &L->hc_attn_base))) return rc;
    if ((rc = load_vec(ld, NM("hc_attn_scale"), 3, &L->hc_attn_scale))) return rc;
    if ((rc = load_vec(ld, NM("hc_ffn_fn"), nmix * hc * d, &L->hc_ffn_fn))) return rc;
    if ((rc = load_vec(ld, NM("hc_ffn_base"), nmix, &L->hc_ffn_base))) return rc;
    if ((rc = load_vec(ld, NM("hc_ffn_scale"), 3, &L->hc_ffn_scale))) return rc;
    if ((rc = load_w(ld, NM("attn.wq_a"), Lq, d, &L->wq_a))) return rc;
    if ((rc = load_w(ld, NM("attn.wq_b"), H * D, Lq, &L->wq_b))) return rc;
    if ((rc = load_w(ld, NM("attn.wkv"), D, d, &L->wkv))) return rc;
    if ((rc = load_w(ld, NM("attn.wo_a"), G * R, H * D / G, &L->wo_a))) return rc;
    if ((rc = load_w(ld, NM("attn.wo_b"), d, G * R, &L->wo_b))) return rc;
    if (L->ratio) {
        if ((rc = load_comp(ld, L, "attn.compressor", c->head_dim, 0, &L->comp))) return rc;
    }
    if (L->ratio == 4) {
        const uint64_t Hi = (uint64_t)c->index_n_heads, Di = (uint64_t)c->index_head_dim;
        if ((rc = load_w(ld, NM("attn.indexer.wq_b"), Hi * Di, Lq, &L->iq_b))) return rc;
        if ((rc = load_w(ld, NM("attn.indexer.weights_proj"), Hi, d, &L->iw))) return rc;
        if ((rc = load_comp(ld, L, "attn.indexer.compressor", c->index_head_dim, 1, &L->icomp)))
            return rc;
    }
    if ((rc = load_w(ld, NM("ffn.gate"), E, d, &L->gate))) return rc;
    if (L->hash) {
        if ((rc = load_tid2eid(ld, NM("ffn.gate.tid2eid"), L))) return rc;
    } else {
        if ((rc = load_vec(ld, NM("ffn.gate.bias"), E, &L->gate_bias))) return rc;
    }
    L->w1 = own(ld, sizeof(wp_qweight) * E * 3);
    if (!L->w1) return wp_oom(ld->e, "%sffn.experts", L->prefix);
    L->w2 = L->w1 + E;
    L->w3 = L->w2 + E;
    for (uint64_t x = 0; x < E; x++) {
        if ((rc = load_w(ld, NM("ffn.experts.%llu.w1", (unsigned long long)x), I, d, &L->w1[x])))
            return rc;
        if ((rc = load_w(ld, NM("ffn.experts.%llu.w2", (unsigned long long)x), d, I, &L->w2[x])))
            return rc;
        if ((rc = load_w(ld, NM("ffn.experts.%llu.w3", (unsigned long long)x), I, d, &L->w3[x])))
            return rc;
    }
    if (c->n_shared_experts > 0) {
        const uint64_t Is = (uint64_t)c->n_shared_experts * I;
        L->has_shared = 1;
        if ((rc = load_w(ld, NM("ffn.shared_experts.w1"), Is, d, &L->sw1))) return rc;
        if ((rc = load_w(ld, NM("ffn.shared_experts.w2"), d, Is, &L->sw2))) return rc;
        if ((rc = load_w(ld, NM("ffn.shared_experts.w3"), Is, d, &L->sw3))) return rc;
    }
    if (L->is_mtp) {
        if ((rc = load_w(ld, NM("e_proj"), d, d, &L->e_proj))) return rc;
        if ((rc = load_w(ld, NM("h_proj"), d, d, &L->h_proj))) return rc;
        if ((rc = load_vec(ld, NM("enorm.weight"), d, &L->enorm))) return rc;
        if ((rc = load_vec(ld, NM("hnorm.weight"), d, &L->hnorm))) return rc;
        if ((rc = load_vec(ld, NM("norm.weight"), d, &L->norm))) return rc;
        if ((rc = load_vec(ld, NM("hc_head_fn"), hc * hc * d, &L->hc_head_fn))) return rc;
        if ((rc = load_vec(ld, NM("hc_head_base"), hc, &L->hc_head_base))) return rc;
        if ((rc = load_vec(ld, NM("hc_head_scale"), 1, &L->hc_head_scale))) return rc;
    }
    return 0;
}

static uint64_t qw_bytes(const wp_qweight *w)
{
    if (!w->data) return 0;
    uint64_t s = w->scale ? wp_enc_scale_bytes(w->enc, w->rows, w->cols, w->br, w->bc, w->sfmt)
                          : 0;
    uint64_t d = wp_enc_data_bytes(w->enc, w->rows, w->cols);
    return (d == UINT64_MAX ? 0 : d) + (s == UINT64_MAX ? 0 : s);
}

uint64_t wp_model_weight_bytes(const wp_model *m)
{
    uint64_t t = qw_bytes(&m->embed) + qw_bytes(&m->head);
    for (int i = 0; i < m->n_layers_total; i++) {
        const rt_layer *L = &m->layers[i];
        const wp_qweight *ws[] = {&L->wq_a, &L->wq_b, &L->wkv, &L->wo_a, &L->wo_b,
                                  &L->comp.wkv, &L->comp.wgate, &L->iq_b, &L->iw,
                                  &L->icomp.wkv, &L->icomp.wgate, &L->gate, &L->sw1, &L->sw2,
                                  &L->sw3, &L->e_proj, &L->h_proj};
        for (size_t j = 0; j < sizeof ws / sizeof ws[0]; j++) t += qw_bytes(ws[j]);
        for (int x = 0; x < m->cfg.n_routed_experts && L->w1; x++)
            t += qw_bytes(&L->w1[x]) + qw_bytes(&L->w2[x]) + qw_bytes(&L->w3[x]);
    }
    return t;
}

/* The weights a block reads before its routed experts, in that order. */
static int block_weights(const rt_layer *L, const wp_qweight **out)
{
    const wp_qweight *ws[] = {&L->wq_a, &L->wq_b, &L->wkv, &L->iq_b, &L->icomp.wkv,
                              &L->icomp.wgate, &L->iw, &L->comp.wkv, &L->comp.wgate, &L->wo_a,
                              &L->wo_b, &L->gate, &L->sw1, &L->sw3, &L->sw2};
    int n = 0;
    for (size_t i = 0; i < sizeof ws / sizeof ws[0]; i++)
        if (ws[i]->data) out[n++] = ws[i];
    return n;
}

/* Queue what the block reads before its experts: its attention (when the
 * previous layer did not already), and a hash layer's experts, known from
 * the tokens before attention runs (spec §4.9), so they load meanwhile. */
static void prefetch_block(const wp_model *m, const rt_layer *L, const int32_t *tokens, int n,
                           int own)
{
    const rt_ctx *c = &m->ctx;
    if (!c->pf) return;
    if (own) {
        const wp_qweight *ws[20];
        int nw = block_weights(L, ws);
        for (int i = 0; i < nw; i++) rt_prefetch_weight(c, ws[i]);
    }
    if (!L->tid2eid || n > 4) return;       /* a prefill reads every expert anyway */
    const int k = m->cfg.n_activated_experts;
    for (int s = 0; s < n; s++)
        for (int i = 0; i < k; i++) {
            int32_t ex = L->tid2eid[(size_t)tokens[s] * k + i];
            rt_prefetch_weight(c, &L->w1[ex]);
            rt_prefetch_weight(c, &L->w3[ex]);
            rt_prefetch_weight(c, &L->w2[ex]);
        }
}

/* Read-ahead pays off only when the weights cannot all stay in the page
 * cache: by default, a model whose weights exceed half of the RAM. */
static int start_prefetch(wp_model *m, unsigned flags, wp_err *e)
{
    if (flags & WP_RT_NO_PREFETCH) return 0;
    if (!(flags & WP_RT_PREFETCH)) {
        long pages = sysconf(_SC_PHYS_PAGES), pg = sysconf(_SC_PAGESIZE);
        if (pages <= 0 || pg <= 0) return 0;
        if (wp_model_weight_bytes(m) <= (uint64_t)pages * (uint64_t)pg / 2) return 0;
    }
    return rt_prefetch_new(&m->ctx.pf, e);
}

int wp_model_prefetching(const wp_model *m) { return m->ctx.pf != NULL; }

/* What this runtime supports of a config; everything else is refused up front. */
static int check_config(const wp_config *c, const char *path, wp_err *e)
{
#define NEED(cond, ...) do { if (!(cond)) return wp_fail(e, WP_EINVAL, __VA_ARGS__); } while (0)
    NEED(c->dim > 0 && c->n_layers > 0 && c->vocab_size > 0 && c->n_heads > 0,
         "%s: config: dim, num_hidden_layers, vocab_size and num_attention_heads must be > 0", path);
    NEED(c->n_kv_heads == 1, "%s: config: num_key_value_heads %d, the V4 attention has one shared "
         "KV head", path, c->n_kv_heads);
    NEED(c->rope_head_dim > 0 && c->rope_head_dim % 2 == 0 && c->rope_head_dim <= 512 &&
         c->rope_head_dim <= c->head_dim,
         "%s: config: qk_rope_head_dim %d must be even, <= 512 and <= head_dim %d", path,
         c->rope_head_dim, c->head_dim);
    NEED(c->o_groups > 0 && c->n_heads % c->o_groups == 0 && c->o_lora_rank > 0,
         "%s: config: num_attention_heads %d is not a multiple of o_groups %d", path, c->n_heads,
         c->o_groups);
    NEED(c->hc_mult > 0 && c->hc_mult <= 16, "%s: config: hc_mult %d not in [1, 16]", path,
         c->hc_mult);
    NEED(c->window_size > 0 && c->q_lora_rank > 0, "%s: config: sliding_window and q_lora_rank "
         "must be > 0", path);
    NEED(c->n_activated_experts > 0 && c->n_activated_experts <= c->n_routed_experts,
         "%s: config: num_experts_per_tok %d not in [1, n_routed_experts %d]", path,
         c->n_activated_experts, c->n_routed_experts);
    NEED(!strcmp(c->score_func, "sqrtsoftplus"), "%s: config: scoring_func \"%s\" (only "
         "sqrtsoftplus is implemented)", path, c->score_func);
    NEED(c->n_compress_ratios >= c->n_layers, "%s: config: compress_ratios has %d entries for "
         "%d layers", path, c->n_compress_ratios, c->n_layers);
    for (int i = 0; i < c->n_compress_ratios; i++) {
        int r = c->compress_ratios[i];
        NEED(r >= 0, "%s: config: compress_ratios[%d] = %d", path, i, r);
        if (r == 4) {
            int di = c->index_head_dim;
            NEED(di > 0 && (di & (di - 1)) == 0 && di >= c->rope_head_dim && c->index_n_heads > 0
                 && c->index_topk > 0, "%s: config: index_head_dim %d must be a power of two "
                 ">= qk_rope_head_dim (Hadamard)", path, di);
        }
    }
    return 0;
#undef NEED
}

int wp_model_load(wp_model **out, wp_tsrc *src, const wp_rt_opts *opts, wp_err *e)
{
    *out = NULL;
    int rc = check_config(&src->cfg, src->path, e);
    if (rc) return rc;
    wp_model *m = wp_calloc(1, sizeof *m, e);
    if (!m) return WP_ENOMEM;
    m->src = src;
    m->cfg = src->cfg;
    const wp_config *c = &m->cfg;
    m->ctx.flags = opts ? opts->flags : 0;
    m->ctx.k = (m->ctx.flags & WP_RT_SCALAR) ? rt_kernels_scalar() : rt_kernels_best();
    if ((rc = rt_pool_new(&m->ctx.pool, opts ? opts->threads : 1, e))) goto fail;
    /* spec §4.4: plain theta for ratio-0 layers and MTP, compress theta + YaRN otherwise */
    rt_rope_init(&m->rope_plain, c->rope_head_dim, c->rope_theta, 0, 1, 0, 0, 0);
    rt_rope_init(&m->rope_comp, c->rope_head_dim, c->compress_rope_theta, 1, c->rope_factor,
                 c->original_seq_len, c->beta_fast, c->beta_slow);
    char nm[64];
    snprintf(nm, sizeof nm, "mtp.0.e_proj");
    int n_mtp = c->n_mtp_layers > 0 && src->has(src, nm) ? 1 : 0;
    if (n_mtp && c->n_compress_ratios < c->n_layers + 1) n_mtp = 0;
    m->n_layers_total = c->n_layers + n_mtp;
    loader ld = {.m = m, .src = src, .e = e};
    m->layers = wp_calloc((size_t)m->n_layers_total, sizeof *m->layers, e);
    if (!m->layers) {
        rc = WP_ENOMEM;
        goto fail_ld;
    }
    if ((rc = load_w(&ld, "embed", (uint64_t)c->vocab_size, (uint64_t)c->dim, &m->embed))) goto fail_ld;
    if ((rc = load_w(&ld, "head", (uint64_t)c->vocab_size, (uint64_t)c->dim, &m->head))) goto fail_ld;
    const uint64_t hc = (uint64_t)c->hc_mult, d = (uint64_t)c->dim;
    if ((rc = load_vec(&ld, "norm.weight", d, &m->norm))) goto fail_ld;
    if ((rc = load_vec(&ld, "hc_head_fn", hc * hc * d, &m->hc_head_fn))) goto fail_ld;
    if ((rc = load_vec(&ld, "hc_head_base", hc, &m->hc_head_base))) goto fail_ld;
    if ((rc = load_vec(&ld, "hc_head_scale", 1, &m->hc_head_scale))) goto fail_ld;
    for (int i = 0; i < m->n_layers_total; i++) {
        rt_layer *L = &m->layers[i];
        L->id = i;
        L->is_mtp = i >= c->n_layers;
        L->ratio = c->compress_ratios[i];
        L->hash = !L->is_mtp && i < c->n_hash_layers;
        L->rope = L->ratio ? &m->rope_comp : &m->rope_plain;
        if (L->is_mtp) snprintf(L->prefix, sizeof L->prefix, "mtp.%d.", i - c->n_layers);
        else snprintf(L->prefix, sizeof L->prefix, "layers.%d.", i);
        if ((rc = load_layer(&ld, L))) goto fail_ld;
    }
    /* the loader's arrays live as long as the model */
    m->owned = ld.owned;
    m->n_owned = ld.n_owned;
    for (int i = 0; i < c->n_layers; i++) {        /* what follows each layer's experts */
        rt_layer *L = &m->layers[i];
        if (i + 1 < c->n_layers) {
            L->n_pf_after = block_weights(&m->layers[i + 1], L->pf_after);
        } else {
            L->pf_after[0] = &m->head;
            L->n_pf_after = 1;
        }
    }
    if ((rc = start_prefetch(m, opts ? opts->flags : 0, e))) {
        wp_model_free(m);
        return rc;
    }
    *out = m;
    return 0;
fail_ld:
    for (size_t i = 0; i < ld.n_owned; i++) free(ld.owned[i]);
    free(ld.owned);
fail:
    rt_pool_free(m->ctx.pool);
    free(m->layers);
    free(m);
    return rc;
}

void wp_model_free(wp_model *m)
{
    if (!m) return;
    rt_prefetch_free(m->ctx.pf);
    for (size_t i = 0; i < m->n_owned; i++) free(m->owned[i]);
    free(m->owned);
    rt_pool_free(m->ctx.pool);
    free(m->layers);
    free(m);
}

const wp_config *wp_model_config(const wp_model *m) { return &m->cfg; }
const char *wp_model_kernels(const wp_model *m) { return m->ctx.k->name; }

/* ---- Sequences ------------------------------------------------------------------------ */

int wp_seq_new(wp_seq **out, const wp_model *m, int max_len, wp_err *e)
{
    *out = NULL;
    if (max_len < 1) return wp_fail(e, WP_EUSAGE, "sequence length %d must be >= 1", max_len);
    const wp_config *c = &m->cfg;
    wp_seq *s = wp_calloc(1, sizeof *s, e);
    if (!s) return WP_ENOMEM;
    s->m = m;
    s->cap = max_len;
    s->ls = wp_calloc((size_t)m->n_layers_total, sizeof *s->ls, e);
    if (!s->ls) goto oom;
    for (int i = 0; i < m->n_layers_total; i++) {
        const rt_layer *L = &m->layers[i];
        rt_lstate *st = &s->ls[i];
        st->ring = calloc((size_t)c->window_size * c->head_dim, sizeof(float));
        if (!st->ring) goto oom;
        if (L->ratio) {
            size_t n = rt_comp_state_floats(&L->comp);
            st->ckv = calloc((size_t)(max_len / L->ratio + 1) * c->head_dim, sizeof(float));
            st->cs.kv = malloc(sizeof(float) * 2 * n);
            if (!st->ckv || !st->cs.kv) goto oom;
            st->cs.score = st->cs.kv + n;
        }
        if (L->ratio == 4) {
            size_t n = rt_comp_state_floats(&L->icomp);
            st->ik = calloc((size_t)(max_len / 4 + 1) * c->index_head_dim, sizeof(float));
            st->ics.kv = malloc(sizeof(float) * 2 * n);
            if (!st->ik || !st->ics.kv) goto oom;
            st->ics.score = st->ics.kv + n;
        }
    }
    wp_seq_reset(s);
    *out = s;
    return 0;
oom:
    wp_seq_free(s);
    return wp_oom(e, "sequence of %d positions", max_len);
}

void wp_seq_reset(wp_seq *s)
{
    const wp_model *m = s->m;
    for (int i = 0; i < m->n_layers_total; i++) {
        const rt_layer *L = &m->layers[i];
        rt_lstate *st = &s->ls[i];
        st->pos = 0;
        st->n_ckv = st->n_ik = 0;
        /* spec §4.6: compressor state starts from kv = 0, score = -inf in
         * every sequence (the demo's missing reset is not reproduced) */
        if (L->ratio) rt_comp_state_reset(&L->comp, &st->cs);
        if (L->ratio == 4) rt_comp_state_reset(&L->icomp, &st->ics);
    }
}

void wp_seq_free(wp_seq *s)
{
    if (!s) return;
    for (int i = 0; s->ls && i < s->m->n_layers_total; i++) {
        free(s->ls[i].ring);
        free(s->ls[i].ckv);
        free(s->ls[i].cs.kv);
        free(s->ls[i].ik);
        free(s->ls[i].ics.kv);
    }
    free(s->ls);
    free(s);
}

int wp_seq_pos(const wp_seq *s) { return s->ls[0].pos; }

int wp_seq_capture_topk(wp_seq *s, int layer, int32_t *buf, int rows, wp_err *e)
{
    if (layer < 0 || layer >= s->m->n_layers_total || s->m->layers[layer].ratio != 4)
        return wp_fail(e, WP_EUSAGE, "layer %d has no indexer", layer);
    rt_lstate *st = &s->ls[layer];
    st->cap_topk = buf;
    st->cap_rows = buf ? rows : 0;
    st->cap_used = 0;
    return 0;
}

/* ---- Forward ------------------------------------------------------------------------------ */

/* One block (spec §4.2) on n rows: with one state, n positions of that
 * sequence from the layer's position; with nst = n states, one decode token
 * of each sequence (rt_attention). */
static int block_rows(wp_model *m, const rt_layer *L, rt_lstate *const *sts, int nst, float *h,
                      const int32_t *tokens, int n, wp_err *e)
{
    const wp_config *c = &m->cfg;
    const rt_ctx *cx = &m->ctx;
    const int d = c->dim, hc = c->hc_mult;
    const float eps = (float)c->norm_eps;
    float *buf = malloc(sizeof(float) * ((size_t)n * d * 2 + (size_t)n * hc + (size_t)n * hc * hc));
    if (!buf) return wp_oom(e, "%s", L->prefix);
    float *x = buf, *a = x + (size_t)n * d, *post = a + (size_t)n * d, *comb = post + (size_t)n * hc;
    int rc;
    /* in a prefill the first layer queues its own weights and the next ones
     * were queued during the previous layer's experts; a decode step reads
     * the same fixed weights every time (they stay cached) and reads ahead
     * only the experts it chooses */
    prefetch_block(m, L, tokens, n, (L == m->layers || L->is_mtp) && n > 4);
    rt_hc_pre(cx, h, n, hc, d, L->hc_attn_fn, L->hc_attn_scale, L->hc_attn_base,
              c->hc_sinkhorn_iters, (float)c->hc_eps, eps, x, post, comb);
    for (int s = 0; s < n; s++) rt_rmsnorm(x + (size_t)s * d, L->attn_norm, d, eps);
    rt_round(cx, x, (size_t)n * d);
    if ((rc = rt_attention(cx, c, L, sts, nst, x, n, a, e))) goto out;
    rt_hc_post(cx, h, a, n, hc, d, post, comb);
    rt_hc_pre(cx, h, n, hc, d, L->hc_ffn_fn, L->hc_ffn_scale, L->hc_ffn_base,
              c->hc_sinkhorn_iters, (float)c->hc_eps, eps, x, post, comb);
    for (int s = 0; s < n; s++) rt_rmsnorm(x + (size_t)s * d, L->ffn_norm, d, eps);
    rt_round(cx, x, (size_t)n * d);
    if ((rc = rt_moe(cx, c, L, x, tokens, n, a, e))) goto out;
    rt_hc_post(cx, h, a, n, hc, d, post, comb);
    if (nst == 1) sts[0]->pos += n;
    else
        for (int b = 0; b < nst; b++) sts[b]->pos++;
out:
    free(buf);
    return rc;
}

static int block_once(wp_model *m, const rt_layer *L, rt_lstate *st, float *h,
                      const int32_t *tokens, int n, wp_err *e)
{
    return block_rows(m, L, &st, 1, h, tokens, n, e);
}

/* spec §4.12: a prefill from position 0 is one call; after that, one token
 * at a time (the reference has no chunked prefill). */
static int block(wp_model *m, const rt_layer *L, rt_lstate *st, float *h, const int32_t *tokens,
                 int n, wp_err *e)
{
    if (st->pos == 0) return block_once(m, L, st, h, tokens, n, e);
    const size_t row = (size_t)m->cfg.hc_mult * m->cfg.dim;
    for (int i = 0; i < n; i++) {
        int rc = block_once(m, L, st, h + i * row, tokens + i, 1, e);
        if (rc) return rc;
    }
    return 0;
}

static int check_tokens(const wp_model *m, const int32_t *t, int n, wp_err *e)
{
    for (int i = 0; i < n; i++)
        if (t[i] < 0 || t[i] >= m->cfg.vocab_size)
            return wp_fail(e, WP_EUSAGE, "token %d at index %d is not in [0, %d)", t[i], i,
                           m->cfg.vocab_size);
    return 0;
}

static int check_room(const wp_seq *s, int layer, int n, wp_err *e)
{
    if (n < 1) return wp_fail(e, WP_EUSAGE, "no tokens to feed");
    if (s->ls[layer].pos + n > s->cap)
        return wp_fail(e, WP_EUSAGE, "position %d + %d tokens exceeds the sequence's %d positions",
                       s->ls[layer].pos, n, s->cap);
    return 0;
}

/* embed[t] copied to every HC stream (spec §4.1) */
static void embed(const wp_model *m, const int32_t *t, int n, float *h)
{
    const int d = m->cfg.dim, hc = m->cfg.hc_mult;
    for (int s = 0; s < n; s++) {
        float *hs = h + (size_t)s * hc * d;
        rt_weight_row_f32(m->ctx.k, &m->embed, (uint64_t)t[s], hs);
        rt_round(&m->ctx, hs, (size_t)d);
        for (int j = 1; j < hc; j++) memcpy(hs + (size_t)j * d, hs, sizeof(float) * d);
    }
}

/* spec §4.10: HC collapse, final norm, fp32 head on one position */
static int head(wp_model *m, const float *h, const float *fn, const float *scale,
                const float *base, const float *norm, float *logits)
{
    const wp_config *c = &m->cfg;
    float y[c->dim];
    rt_hc_head(h, c->hc_mult, c->dim, fn, scale, base, (float)c->hc_eps, (float)c->norm_eps, y);
    rt_round(&m->ctx, y, (size_t)c->dim);
    rt_rmsnorm(y, norm, c->dim, (float)c->norm_eps);
    rt_round(&m->ctx, y, (size_t)c->dim);
    return rt_linear_dense(&m->ctx, &m->head, y, 1, logits);
}

static int forward_chunk(wp_model *m, wp_seq *s, const int32_t *tokens, int n, float *logits,
                         float *h_last, wp_err *e)
{
    const wp_config *c = &m->cfg;
    const size_t row = (size_t)c->hc_mult * c->dim;
    float *h = malloc(sizeof(float) * row * n);
    if (!h) return wp_oom(e, "forward of %d tokens", n);
    embed(m, tokens, n, h);
    int rc = 0;
    for (int l = 0; l < c->n_layers && !rc; l++)
        rc = block_once(m, &m->layers[l], &s->ls[l], h, tokens, n, e);
    if (!rc && h_last) memcpy(h_last, h, sizeof(float) * row * n);
    if (!rc && logits) {
        rc = head(m, h + row * (n - 1), m->hc_head_fn, m->hc_head_scale, m->hc_head_base,
                  m->norm, logits);
        if (rc) wp_fail(e, rc, "head: out of memory");
    }
    free(h);
    return rc;
}

int wp_model_embed(wp_model *m, const int32_t *tokens, int n, float *h, wp_err *e)
{
    int rc = check_tokens(m, tokens, n, e);
    if (!rc) embed(m, tokens, n, h);
    return rc;
}

int wp_model_head(wp_model *m, const float *h, int n, float *logits, wp_err *e)
{
    const wp_config *c = &m->cfg;
    const size_t row = (size_t)c->hc_mult * c->dim;
    for (int i = 0; i < n; i++) {
        int rc = head(m, h + row * i, m->hc_head_fn, m->hc_head_scale, m->hc_head_base, m->norm,
                      logits + (size_t)i * c->vocab_size);
        if (rc) return wp_fail(e, rc, "head: out of memory");
    }
    return 0;
}

int wp_model_forward(wp_model *m, wp_seq *s, const int32_t *tokens, int n, float *logits,
                     float *h_last, wp_err *e)
{
    int rc = check_room(s, 0, n, e);
    if (!rc) rc = check_tokens(m, tokens, n, e);
    if (rc) return rc;
    if (s->ls[0].pos == 0) return forward_chunk(m, s, tokens, n, logits, h_last, e);
    const size_t row = (size_t)m->cfg.hc_mult * m->cfg.dim;
    for (int i = 0; i < n && !rc; i++)
        rc = forward_chunk(m, s, tokens + i, 1, i == n - 1 ? logits : NULL,
                           h_last ? h_last + row * i : NULL, e);
    return rc;
}

int wp_model_decode_batch(wp_model *m, wp_seq *const *seqs, const int32_t *tokens, int B,
                          float *logits, wp_err *e)
{
    const wp_config *c = &m->cfg;
    if (B < 1) return wp_fail(e, WP_EUSAGE, "empty batch");
    int rc = check_tokens(m, tokens, B, e);
    for (int b = 0; b < B && !rc; b++)
        for (int j = 0; j < b && !rc; j++)
            if (seqs[j] == seqs[b])
                rc = wp_fail(e, WP_EUSAGE, "batch rows %d and %d are the same sequence", j, b);
    for (int b = 0; b < B && !rc; b++) {
        if (seqs[b]->m != m)
            return wp_fail(e, WP_EUSAGE, "batch row %d: a sequence of another model", b);
        if (wp_seq_pos(seqs[b]) == 0)
            return wp_fail(e, WP_EUSAGE, "batch row %d: decode needs a prefilled sequence", b);
        rc = check_room(seqs[b], 0, 1, e);
    }
    if (rc) return rc;
    const size_t row = (size_t)c->hc_mult * c->dim;
    float *h = malloc(sizeof(float) * row * B);
    rt_lstate **sts = malloc(sizeof(*sts) * B);
    if (!h || !sts) {
        free(h);
        free(sts);
        return wp_oom(e, "decode batch of %d", B);
    }
    embed(m, tokens, B, h);
    for (int l = 0; l < c->n_layers && !rc; l++) {
        for (int b = 0; b < B; b++) sts[b] = &seqs[b]->ls[l];
        rc = block_rows(m, &m->layers[l], sts, B, h, tokens, B, e);
    }
    for (int b = 0; b < B && !rc && logits; b++) {
        rc = head(m, h + row * b, m->hc_head_fn, m->hc_head_scale, m->hc_head_base, m->norm,
                  logits + (size_t)b * c->vocab_size);
        if (rc) wp_fail(e, rc, "head: out of memory");
    }
    free(h);
    free(sts);
    return rc;
}

int wp_model_layer(wp_model *m, wp_seq *s, int layer, float *h, const int32_t *tokens, int n,
                   wp_err *e)
{
    if (layer < 0 || layer >= m->cfg.n_layers)
        return wp_fail(e, WP_EUSAGE, "layer %d not in [0, %d)", layer, m->cfg.n_layers);
    int rc = check_room(s, layer, n, e);
    if (!rc) rc = check_tokens(m, tokens, n, e);
    if (rc) return rc;
    return block(m, &m->layers[layer], &s->ls[layer], h, tokens, n, e);
}

int wp_model_mtp(wp_model *m, wp_seq *s, const float *h, const int32_t *ids, int n,
                 float *logits, wp_err *e)
{
    const wp_config *c = &m->cfg;
    if (m->n_layers_total <= c->n_layers)
        return wp_fail(e, WP_EUSAGE, "%s: the checkpoint has no MTP block", m->src->path);
    const int li = c->n_layers, d = c->dim, hc = c->hc_mult;
    const rt_layer *L = &m->layers[li];
    rt_lstate *st = &s->ls[li];
    int rc = check_room(s, li, n, e);
    if (!rc) rc = check_tokens(m, ids, n, e);
    if (rc) return rc;
    const size_t row = (size_t)hc * d;
    float *buf = malloc(sizeof(float) * (row * n * 3 + (size_t)n * d * 2));
    if (!buf) return wp_oom(e, "mtp");
    float *x0 = buf, *hh = x0 + row * n, *hp = hh + row * n, *emb = hp + row * n,
          *ep = emb + (size_t)n * d;
    const float eps = (float)c->norm_eps;
    /* spec §4.11: e = enorm(embed[ids]); hh = hnorm(h) per stream;
     * x0[s, j] = e_proj(e)[s] + h_proj(hh)[s, j] */
    for (int t = 0; t < n; t++) {
        rt_weight_row_f32(m->ctx.k, &m->embed, (uint64_t)ids[t], emb + (size_t)t * d);
        rt_rmsnorm(emb + (size_t)t * d, L->enorm, d, eps);
    }
    rt_round(&m->ctx, emb, (size_t)n * d);
    memcpy(hh, h, sizeof(float) * row * n);
    for (int r = 0; r < n * hc; r++) rt_rmsnorm(hh + (size_t)r * d, L->hnorm, d, eps);
    rt_round(&m->ctx, hh, row * n);
    if ((rc = rt_linear(&m->ctx, &L->e_proj, emb, n, ep))) goto oom;
    if ((rc = rt_linear(&m->ctx, &L->h_proj, hh, n * hc, hp))) goto oom;
    for (int t = 0; t < n; t++)
        for (int j = 0; j < hc; j++)
            for (int i = 0; i < d; i++)
                x0[(size_t)t * row + (size_t)j * d + i] =
                    ep[(size_t)t * d + i] + hp[(size_t)t * row + (size_t)j * d + i];
    rt_round(&m->ctx, x0, row * n);
    if ((rc = block(m, L, st, x0, ids, n, e))) goto out;
    if (logits && (rc = head(m, x0 + row * (n - 1), L->hc_head_fn, L->hc_head_scale,
                             L->hc_head_base, L->norm, logits)))
        goto oom;
out:
    free(buf);
    return rc;
oom:
    free(buf);
    return wp_fail(e, rc, "mtp: out of memory");
}
