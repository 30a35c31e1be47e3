/*
 * internal.h — runtime/'s private pieces: the thread pool, the kernels, and
 * the model's building blocks (HC, norms, RoPE, compressor, indexer, MoE,
 * attention).  Only the runtime sources and the white-box runtime tests include it;
 * every other module uses runtime/runtime.h.
 */
#ifndef WP_RT_INTERNAL_H
#define WP_RT_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "runtime/runtime.h"

/* ---- Thread pool (pool.c) -------------------------------------------------------- */
typedef struct rt_pool rt_pool;
int rt_pool_new(rt_pool **out, int threads, wp_err *e);
void rt_pool_free(rt_pool *p);
int rt_pool_threads(const rt_pool *p);
/* Run fn(ctx, i0, i1) over [0, n) in chunks of at least `grain`, on all
 * workers and the caller; returns when every chunk is done.  p may be NULL. */
typedef void (*rt_range_fn)(void *ctx, int i0, int i1);
void rt_pool_for(rt_pool *p, int n, int grain, rt_range_fn fn, void *ctx);
/* Below this much work (in multiply-adds of an FP8 product: about 20-40 us
 * on one core) a job runs on the calling thread: waking the pool costs more
 * than it saves.  tiny-a's decode jobs all fall below it (its decode was
 * slower on two threads than on one); every V4-Flash decode product is
 * above it. */
#define RT_PAR_MIN_WORK (1 << 19)
/* rt_pool_for, or the caller alone when work < RT_PAR_MIN_WORK. */
void rt_pool_for_work(rt_pool *p, int n, int grain, double work, rt_range_fn fn, void *ctx);
/* Jobs so far: shared with the workers, and run by the caller alone. */
void rt_pool_counts(const rt_pool *p, unsigned long *shared, unsigned long *alone);

/* ---- Kernels (linear.c: the driver; linear_scalar/avx2/avx512.c: the sets) --------
 * The activation block of every FP8/FP4 linear (spec §3.6, §3.8). */
#define RT_ACT_BLOCK 128

typedef struct rt_kernels {
    const char *name;
    /* fp32 dot product */
    float (*dot)(const float *a, const float *b, int n);
    /* spec §3.8: sum over segments s of seg elements of
     * (xs[s*seg/128] * ws[s]) * P_s, P_s = sum_k xq[k] * wv[k] within the segment;
     * xq/wv hold the FP8/FP4 code values, xs/ws the scales. */
    float (*segdot)(const float *xq, const float *xs, const float *wv, const float *ws, int K,
                    int seg);
    /* The same sums fused with the decode of one weight row: E4M3 codes, or
     * packed E2M1 (K values); the same FMAs as segdot over the decoded row. */
    float (*qdot_e4m3)(const uint8_t *w, const float *xq, const float *xs, const float *ws,
                       int K, int seg);
    float (*qdot_e2m1)(const uint8_t *w, const float *xq, const float *xs, const float *ws,
                       int K, int seg);
    /* fp32 x . bf16 w */
    float (*dot_bf16)(const uint16_t *w, const float *x, int n);
    /* Decode n E4M3 codes / n packed E2M1 values (n even) / n bf16 to fp32. */
    void (*dec_e4m3)(const uint8_t *c, float *out, int n);
    void (*dec_e2m1)(const uint8_t *c, float *out, int n);
    void (*dec_bf16)(const uint16_t *c, float *out, int n);
    /* n E8M0 scales to fp32 */
    void (*dec_e8m0)(const uint8_t *c, float *out, int n);
    /* Optional (NULL if the set has none): the fused products with the
     * activation codes also given as bf16 (xb: exact, E4M3 values fit in
     * bf16), for bf16 dot-product instructions.  They sum pairs of products,
     * so they agree with qdot_* to rounding, not bit for bit. */
    float (*qdot_e4m3_bf)(const uint8_t *w, const float *xq, const uint16_t *xb, const float *xs,
                          const float *ws, int K, int seg);
    float (*qdot_e2m1_bf)(const uint8_t *w, const float *xq, const uint16_t *xb, const float *xs,
                          const float *ws, int K, int seg);
    /* With the bf16 products (else NULL): weight rows decoded to bf16 once, and
     * the same sums as qdot_*_bf over them, bit for bit (many activation rows) */
    void (*dec_e4m3_bf)(const uint8_t *c, uint16_t *out, int n);
    void (*dec_e2m1_bf)(const uint8_t *c, uint16_t *out, int n);
    float (*segdot_bf_e4m3)(const uint16_t *xb, const float *xs, const uint16_t *wb,
                            const float *ws, int K, int seg);
    float (*segdot_bf_e2m1)(const uint16_t *xb, const float *xs, const uint16_t *wb,
                            const float *ws, int K, int seg);
    /* Dense x . w of one FP8 row fused with its decode: exactly dot(x, v) where
     * v[i] = E4M3(w[i]) * ws[i / seg] (the row's exact values); seg % 16 == 0. */
    float (*dot_e4m3)(const uint8_t *w, const float *ws, int seg, const float *x, int n);
    /* o[i] = o[i] + a * x[i], the product rounded before the sum (never a fused
     * multiply-add), so every set gives the scalar loop's bits (attention's
     * weighted sum of value rows) */
    void (*axpy)(float *o, float a, const float *x, int n);
    /* 1: the fused decode products (qdot_*_bf, dot_e4m3, dot_bf16) request
     * their own weight row ahead as they read it, so the driver does not */
    int prefetches_rows;
} rt_kernels;

/* The scalar kernels (the reference the vector ones are tested against) and
 * the best set this CPU supports (AVX-512 with BF16+VBMI / AVX-512 /
 * AVX2+FMA / scalar). */
const rt_kernels *rt_kernels_scalar(void);
const rt_kernels *rt_kernels_best(void);
/* Every kernel set usable on this CPU, for tests: NULL-terminated. */
const rt_kernels *const *rt_kernels_all(void);

/* ---- Read-ahead of mapped weights (prefetch.c) -------------------------------------------
 * A thread that passes ranges the forward pass will read soon to
 * madvise(MADV_WILLNEED), so a build larger than memory streams from disk in
 * large reads while the model computes.  Hints only: no value changes. */
typedef struct rt_prefetch rt_prefetch;
int rt_prefetch_new(rt_prefetch **out, wp_err *e);
void rt_prefetch_free(rt_prefetch *pf);
/* Queue [p, p+n) (dropped when the queue is full).  pf may be NULL. */
void rt_prefetch_range(rt_prefetch *pf, const void *p, size_t n);
/* Ranges handed to madvise, and hints dropped on a full queue. */
void rt_prefetch_stats(const rt_prefetch *pf, unsigned long *issued, unsigned long *dropped);

/* What every forward-pass function receives. */
typedef struct rt_ctx {
    rt_pool *pool;
    const rt_kernels *k;
    unsigned flags;          /* WP_RT_* */
    rt_prefetch *pf;         /* read-ahead of weights, or NULL (the build fits in memory) */
} rt_ctx;

/* Queue a weight's data and scales for read-ahead (no-op without c->pf). */
void rt_prefetch_weight(const rt_ctx *c, const wp_qweight *w);

/* bf16 rounding point: a no-op in fp32 mode (spec §4.0). */
void rt_round(const rt_ctx *c, float *x, size_t n);

/* Weight segment for act-quant linears: gcd(128, the weight's scale block
 * along K, K). */
int rt_weight_seg(const wp_qweight *w);
/* 1 if the encoding carries per-block scales (FP8, MXFP4, NVFP4). */
int rt_enc_quantised(wp_enc e);
/* Decode row r of w to fp32 code values wv[cols] and its per-segment scales
 * ws[cols/seg] (seg from rt_weight_seg).  Plain encodings: the values, ws
 * untouched. */
void rt_weight_row(const rt_kernels *k, const wp_qweight *w, uint64_t r, float *wv, float *ws,
                   int seg);
/* Decode row r of w fully (values x scales) to fp32. */
void rt_weight_row_f32(const rt_kernels *k, const wp_qweight *w, uint64_t r, float *out);

/* Activation quantisation as a linear input (spec §3.6 act_quant): per row
 * and 128-block, xq = the E4M3 code values, xs = the E8M0 scale. */
void rt_act_quant_rows(const float *x, int M, int K, float *xq, float *xs);

/* y[M, rows] = x[M, cols] . W^T.  rt_linear is an FP8/FP4 linear site of the
 * model (spec §3.8): act_quant(x, 128) and block-scaled accumulation whatever
 * W's storage (a bf16 build holds the same values; the activation
 * quantisation belongs to the model), unless WP_RT_ENC_DISPATCH asks for the
 * reference code's dispatch on the weight dtype (plain W: plain product).
 * rt_linear_dense always uses the dequantised weight without activation
 * quantisation (wo_a, weights_proj, compressors, router, head).
 * rt_linear's output is a bf16 rounding point; rt_linear_dense's is not.
 * Both return 0 or WP_ENOMEM. */
int rt_linear(const rt_ctx *c, const wp_qweight *w, const float *x, int M, float *y);
int rt_linear_dense(const rt_ctx *c, const wp_qweight *w, const float *x, int M, float *y);
/* Several products as one pool job (the experts of a MoE step, wq_a and wkv,
 * the wo_a groups, a compressor's wkv and wgate: one wake-up instead of one
 * per matrix).  rt_linear_many: each y gets the same bits as
 * rt_linear(c, w, x, M, y) (r0, nr, ldy unused); rt_linear_dense_many: as
 * rt_linear_dense_rows(c, w, r0, nr ? nr : rows, x, M, y, ldy ? ldy : nr).
 * 0 or WP_ENOMEM. */
typedef struct rt_lin_spec {
    const wp_qweight *w;
    const float *x;
    int M;
    float *y;
    uint64_t r0;
    int nr, ldy;
} rt_lin_spec;
int rt_linear_many(const rt_ctx *c, const rt_lin_spec *sp, int n);
int rt_linear_dense_many(const rt_ctx *c, const rt_lin_spec *sp, int n);
/* Rows [r0, r0+nr) of W only: y[m * ldy + i] = x[m] . W[r0 + i] (the grouped
 * wo_a, spec §4.5 step 8). */
int rt_linear_dense_rows(const rt_ctx *c, const wp_qweight *w, uint64_t r0, int nr,
                         const float *x, int M, float *y, int ldy);

/* ---- Small math (hc.c) -------------------------------------------------------------- */
/* spec §4.3: y = w * (x * rsqrt(mean(x^2) + eps)), n elements, in place. */
void rt_rmsnorm(float *x, const float *w, int n, float eps);
/* spec §4.2 hc_split_sinkhorn for one token: mixes[(2+hc)*hc] ->
 * pre[hc], post[hc], comb[hc*hc] (row j = input stream, column k = output). */
void rt_sinkhorn(const float *mixes, const float *scale, const float *base, int hc, int iters,
                 float eps, float *pre, float *post, float *comb);
/* spec §4.2 hc_pre for n positions: h [n, hc, d] -> x [n, d], post [n, hc],
 * comb [n, hc, hc]. fn [(2+hc)*hc, hc*d]. */
void rt_hc_pre(const rt_ctx *c, const float *h, int n, int hc, int d, const float *fn,
               const float *scale, const float *base, int iters, float hc_eps, float norm_eps,
               float *x, float *post, float *comb);
/* spec §4.2 hc_post: h[s, k] <- post[k] x[s] + sum_j comb[j][k] h[s, j]. */
void rt_hc_post(const rt_ctx *c, float *h, const float *x, int n, int hc, int d,
                const float *post, const float *comb);
/* spec §4.10 head collapse of one position: h [hc, d] -> y [d]. */
void rt_hc_head(const float *h, int hc, int d, const float *fn, const float *scale,
                const float *base, float hc_eps, float norm_eps, float *y);

/* ---- RoPE (rope.c) --------------------------------------------------------------------- */
typedef struct rt_rope {
    int dim;            /* rope_head_dim (rotated dims, even) */
    float freq[256];    /* f_i, i < dim/2, after YaRN */
} rt_rope;
/* spec §4.4: f_i = 1/base^(2i/dim); with yarn (factor > 1 and
 * original_seq_len > 0) the low/high correction ramp is applied. */
void rt_rope_init(rt_rope *r, int dim, double base, int yarn, double factor, int orig_len,
                  double beta_fast, double beta_slow);
/* The YaRN correction range (low, high) for a table, as spec §4.4 defines it. */
void rt_yarn_range(int dim, double base, int orig_len, double beta_fast, double beta_slow,
                   int *low, int *high);
/* cos/sin of pos * f_i (fp32 angle, spec §4.4): cs[2i] = cos, cs[2i+1] = sin. */
void rt_rope_cs(const rt_rope *r, int pos, float *cs);
/* Rotate interleaved pairs of x[0..dim) by cs; inverse rotates by -theta. */
void rt_rope_apply(float *x, const float *cs, int dim, int inverse);

/* ---- Hadamard, top-k (indexer.c) ----------------------------------------------------- */
/* x <- H_n x * scale, natural (Sylvester) order, n a power of two. */
void rt_hadamard(float *x, int n, float scale);
/* Top k of score[0..n) by "higher score first, then lower index" (spec
 * §4.7 ties); writes k indices in that order.  k <= n. */
void rt_topk(const float *score, int n, int k, int32_t *idx);

/* ---- The model's pieces -------------------------------------------------------------- */
typedef struct rt_comp {        /* a compressor's weights (spec §4.6) */
    int present;
    int m, overlap, dc, rotate; /* ratio, c == 2, head dim, indexer-style */
    wp_qweight wkv, wgate;      /* [c*dc, dim] */
    float *ape;                 /* [m, c*dc] */
    float *norm;                /* [dc] */
} rt_comp;

typedef struct rt_comp_state {  /* kv_state / score_state, [c*m, c*dc] fp32 */
    float *kv, *score;
} rt_comp_state;

typedef struct rt_layer {
    int id, ratio, hash, is_mtp;
    char prefix[24];            /* "layers.3." or "mtp.0." */
    const rt_rope *rope;
    float *attn_norm, *ffn_norm, *q_norm, *kv_norm, *sink;
    float *hc_attn_fn, *hc_attn_scale, *hc_attn_base;
    float *hc_ffn_fn, *hc_ffn_scale, *hc_ffn_base;
    wp_qweight wq_a, wq_b, wkv, wo_a, wo_b;
    rt_comp comp;
    /* indexer (ratio 4) */
    wp_qweight iq_b, iw;
    rt_comp icomp;
    /* MoE */
    wp_qweight gate;
    float *gate_bias;           /* NULL in hash layers */
    int32_t *tid2eid;           /* [vocab, topk], hash layers */
    wp_qweight *w1, *w2, *w3;   /* [n_routed_experts] */
    wp_qweight sw1, sw2, sw3;   /* shared expert (n_shared_experts * inter wide) */
    int has_shared;
    /* read-ahead (prefetch.c): what the forward pass reads after this layer's
     * routed experts — the next layer's attention, router and shared expert, or
     * the head after the last layer */
    const wp_qweight *pf_after[20];
    int n_pf_after;
    /* MTP only */
    wp_qweight e_proj, h_proj;
    float *enorm, *hnorm, *norm, *hc_head_fn, *hc_head_scale, *hc_head_base;
} rt_layer;

typedef struct rt_lstate {      /* one layer's caches for one sequence */
    int pos;                    /* tokens consumed */
    float *ring;                /* [window, head_dim] */
    float *ckv;                 /* [cap / ratio, head_dim] compressed entries */
    int n_ckv;
    rt_comp_state cs;
    float *ik;                  /* [cap / 4, index_head_dim] indexer keys */
    int n_ik;
    rt_comp_state ics;
    int32_t *cap_topk;          /* capture buffer (wp_seq_capture_topk) */
    int cap_rows, cap_used;
} rt_lstate;

struct wp_model {
    wp_tsrc *src;
    wp_config cfg;
    rt_ctx ctx;
    rt_rope rope_plain, rope_comp;
    int n_layers_total;         /* n_layers + n_mtp_layers */
    rt_layer *layers;
    wp_qweight embed, head;
    float *norm, *hc_head_fn, *hc_head_scale, *hc_head_base;
    void **owned;               /* fp32/int32 arrays converted at load */
    size_t n_owned;
};

struct wp_seq {
    const wp_model *m;
    int cap;
    rt_lstate *ls;              /* n_layers_total */
};

/* Compressor (compressor.c).  Prefill of n tokens from position 0 (state
 * reset, entries 0..n/m-1 written to out), or one decode token at pos (out
 * receives entry pos/m when it completes).  Returns entries written. */
int rt_comp_prefill(const rt_ctx *c, const wp_config *cfg, const rt_comp *w, const rt_rope *rope,
                    rt_comp_state *st, const float *x, int n, float *out);
int rt_comp_decode(const rt_ctx *c, const wp_config *cfg, const rt_comp *w, const rt_rope *rope,
                   rt_comp_state *st, const float *x, int pos, float *out);
void rt_comp_state_reset(const rt_comp *w, rt_comp_state *st);
size_t rt_comp_state_floats(const rt_comp *w);

/* Indexer (indexer.c): selects, for each of the n query positions starting
 * at st->pos, up to index_topk compressed entries; topk [n, index_topk]
 * entry indices, -1 for none.  Runs (and advances) the indexer compressor. */
int rt_indexer(const rt_ctx *c, const wp_config *cfg, const rt_layer *L, rt_lstate *st,
               const float *x, const float *qr, int n, int32_t *topk, wp_err *e);

/* Attention sub-block (attention.c): x [n, dim] (after attn_norm) -> out [n, dim].
 * With one state (nst = 1) the n rows are consecutive positions of that
 * sequence (a prefill from 0, or one decode token); with nst = n, row b is one
 * decode token of sequence sts[b] (a batch sharing every weight read). */
int rt_attention(const rt_ctx *c, const wp_config *cfg, const rt_layer *L, rt_lstate *const *sts,
                 int nst, const float *x, int n, float *out, wp_err *e);
/* spec §4.8 for one query and one head: rows[j] (NULL = skipped) of dim d. */
void rt_sparse_attn(const rt_ctx *c, const float *q, const float *const *rows, int nrows, int d,
                    float scale, float sink, float *o);

/* MoE sub-block (moe.c): x [n, dim] (after ffn_norm) -> out [n, dim]. */
int rt_moe(const rt_ctx *c, const wp_config *cfg, const rt_layer *L, const float *x,
           const int32_t *tokens, int n, float *out, wp_err *e);
/* The router for one token (spec §4.9): expert ids and weights (k of them). */
void rt_route(const wp_config *cfg, const rt_layer *L, const float *logits, int32_t token,
              int32_t *ids, float *w);

#endif
