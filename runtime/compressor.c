/*
 * compressor.c — the KV compressor (spec §4.6): gated softmax pooling of m
 * tokens (ratio 128) or of 2m overlapping slots (ratio 4) into one entry,
 * then norm, RoPE at the window's first position and the FP8 (main) or
 * Hadamard + FP4 (indexer) simulation.
 *
 * Prefill and decode share one pooling function over "A" slots (the previous
 * window's channels [0, dc), overlap only) and "B" slots (the current
 * window).  The decode state holds rows [A | B] exactly as the reference's
 * kv_state/score_state; a missing A window is kv = 0, score = -inf, which
 * adds exact zeros, so prefill of n tokens then decode gives bit-identical
 * entries to a prefill of the longer sequence.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/internal.h"

size_t rt_comp_state_floats(const rt_comp *w)
{
    int c = w->overlap ? 2 : 1;
    return (size_t)c * w->m * c * w->dc;
}

void rt_comp_state_reset(const rt_comp *w, rt_comp_state *st)
{
    size_t n = rt_comp_state_floats(w);
    for (size_t i = 0; i < n; i++) {
        st->kv[i] = 0;
        st->score[i] = -INFINITY;
    }
}

/* Softmax per channel over the slots, then the weighted sum of K; rows are
 * W = c*dc wide, A slots use channels [0, dc), B slots [offB, offB + dc). */
static void pool(const float *kA, const float *sA, int nA, const float *kB, const float *sB,
                 int nB, int W, int offB, int dc, float *out)
{
    for (int ch = 0; ch < dc; ch++) {
        float mx = -INFINITY, sum = 0, acc = 0;
        for (int r = 0; r < nA; r++) mx = fmaxf(mx, sA[(size_t)r * W + ch]);
        for (int r = 0; r < nB; r++) mx = fmaxf(mx, sB[(size_t)r * W + offB + ch]);
        for (int r = 0; r < nA; r++) sum += expf(sA[(size_t)r * W + ch] - mx);
        for (int r = 0; r < nB; r++) sum += expf(sB[(size_t)r * W + offB + ch] - mx);
        for (int r = 0; r < nA; r++)
            acc += expf(sA[(size_t)r * W + ch] - mx) / sum * kA[(size_t)r * W + ch];
        for (int r = 0; r < nB; r++)
            acc += expf(sB[(size_t)r * W + offB + ch] - mx) / sum * kB[(size_t)r * W + offB + ch];
        out[ch] = acc;
    }
}

/* spec §3.6 in-place simulations over a span whose length need not be a
 * multiple of the block (a short last block is its own block) */
static void sim_fp8(float *x, int n, int block)
{
    int full = n / block * block;
    if (full) wp_act_quant_sim(x, (size_t)full, (size_t)block);
    if (n > full) wp_act_quant_sim(x + full, (size_t)(n - full), (size_t)(n - full));
}

static void sim_fp4(float *x, int n, int block)
{
    int full = n / block * block;
    if (full) wp_fp4_act_quant_sim(x, (size_t)full, (size_t)block);
    if (n > full) wp_fp4_act_quant_sim(x + full, (size_t)(n - full), (size_t)(n - full));
}

/* Post-processing of entry j (spec §4.6 steps 1-3). */
static void finish(const rt_ctx *c, const wp_config *cfg, const rt_comp *w, const rt_rope *rope,
                   int j, float *e)
{
    const int dc = w->dc, r = cfg->rope_head_dim;
    rt_round(c, e, (size_t)dc);
    rt_rmsnorm(e, w->norm, dc, (float)cfg->norm_eps);
    rt_round(c, e, (size_t)dc);
    float cs[512];
    rt_rope_cs(rope, j * w->m, cs);
    rt_rope_apply(e + dc - r, cs, r, 0);
    rt_round(c, e + dc - r, (size_t)r);
    if (!w->rotate) {
        sim_fp8(e, dc - r, 64);          /* KV FP8 round trip, non-rope dims */
    } else {
        rt_hadamard(e, dc, 1.0f / sqrtf((float)dc));
        rt_round(c, e, (size_t)dc);
        if (!(c->flags & WP_RT_INDEXER_HP)) sim_fp4(e, dc, 32);
    }
}

int rt_comp_prefill(const rt_ctx *c, const wp_config *cfg, const rt_comp *w, const rt_rope *rope,
                    rt_comp_state *st, const float *x, int n, float *out)
{
    const int m = w->m, dc = w->dc, W = (w->overlap ? 2 : 1) * dc;
    float *K = malloc(sizeof(float) * 2 * (size_t)n * W);
    if (!K) return WP_ENOMEM;
    float *Z = K + (size_t)n * W;
    const rt_lin_spec sp[2] = {{.w = &w->wkv, .x = x, .M = n, .y = K},
                               {.w = &w->wgate, .x = x, .M = n, .y = Z}};
    int rc = rt_linear_dense_many(c, sp, 2);
    if (rc) {
        free(K);
        return rc;
    }
    for (int s = 0; s < n; s++)
        for (int i = 0; i < W; i++) Z[(size_t)s * W + i] += w->ape[(size_t)(s % m) * W + i];
    const int ne = n / m;
    for (int j = 0; j < ne; j++) {
        const size_t b = (size_t)j * m * W, a = b - (size_t)m * W;
        int nA = w->overlap && j > 0 ? m : 0;
        pool(nA ? K + a : NULL, nA ? Z + a : NULL, nA, K + b, Z + b, m, W, w->overlap ? dc : 0,
             dc, out + (size_t)j * dc);
        finish(c, cfg, w, rope, j, out + (size_t)j * dc);
    }
    /* spec §4.6 prefill state: the last full window (overlap) and the remainder */
    rt_comp_state_reset(w, st);
    const int cutoff = n - n % m;
    if (w->overlap && cutoff >= m) {
        memcpy(st->kv, K + (size_t)(cutoff - m) * W, sizeof(float) * m * W);
        memcpy(st->score, Z + (size_t)(cutoff - m) * W, sizeof(float) * m * W);
    }
    const int off = w->overlap ? m : 0;
    memcpy(st->kv + (size_t)off * W, K + (size_t)cutoff * W, sizeof(float) * (n - cutoff) * W);
    memcpy(st->score + (size_t)off * W, Z + (size_t)cutoff * W, sizeof(float) * (n - cutoff) * W);
    free(K);
    return ne;
}

int rt_comp_decode(const rt_ctx *c, const wp_config *cfg, const rt_comp *w, const rt_rope *rope,
                   rt_comp_state *st, const float *x, int pos, float *out)
{
    const int m = w->m, dc = w->dc, W = (w->overlap ? 2 : 1) * dc;
    const int o = pos % m, row = (w->overlap ? m : 0) + o;
    float *kv = st->kv + (size_t)row * W, *sc = st->score + (size_t)row * W;
    const rt_lin_spec sp[2] = {{.w = &w->wkv, .x = x, .M = 1, .y = kv},
                               {.w = &w->wgate, .x = x, .M = 1, .y = sc}};
    int rc = rt_linear_dense_many(c, sp, 2);
    if (rc) return rc;
    for (int i = 0; i < W; i++) sc[i] += w->ape[(size_t)o * W + i];
    if ((pos + 1) % m) return 0;
    if (w->overlap) {
        const size_t b = (size_t)m * W;
        pool(st->kv, st->score, m, st->kv + b, st->score + b, m, W, dc, dc, out);
        memcpy(st->kv, st->kv + b, sizeof(float) * b);
        memcpy(st->score, st->score + b, sizeof(float) * b);
    } else {
        pool(NULL, NULL, 0, st->kv, st->score, m, W, 0, dc, out);
    }
    finish(c, cfg, w, rope, pos / m, out);
    return 1;
}
