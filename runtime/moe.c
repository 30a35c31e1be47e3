/*
 * moe.c — the MoE sub-block (spec §4.9): sqrt(softplus) router with the
 * selection-only bias (or hash routing through tid2eid), normalised weights
 * times route_scale, clamped SwiGLU experts with the routing weight applied
 * before w2, and the shared expert.  Experts are accumulated in ascending id,
 * as the reference does.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/internal.h"

static float softplus(float x) { return x > 20.0f ? x : log1pf(expf(x)); }  /* torch threshold 20 */

void rt_route(const wp_config *cfg, const rt_layer *L, const float *logits, int32_t token,
              int32_t *ids, float *w)
{
    const int E = cfg->n_routed_experts, k = cfg->n_activated_experts;
    float score[E], biased[E];
    for (int i = 0; i < E; i++) score[i] = sqrtf(softplus(logits[i]));
    if (L->tid2eid) {
        memcpy(ids, L->tid2eid + (size_t)token * k, sizeof(int32_t) * k);
    } else {
        /* the bias only chooses; the weights come from the unbiased scores */
        for (int i = 0; i < E; i++) biased[i] = score[i] + (L->gate_bias ? L->gate_bias[i] : 0);
        rt_topk(biased, E, k, ids);
    }
    float sum = 0;
    for (int i = 0; i < k; i++) sum += (w[i] = score[ids[i]]);
    for (int i = 0; i < k; i++) w[i] = w[i] / sum * (float)cfg->route_scale;
}

/* SwiGLU with the clamps (spec §4.9): up to [-lim, lim], gate to <= lim. */
static void swiglu(const rt_ctx *c, float *g, const float *u, const float *rw, int n, int I,
                   float lim)
{
    for (int s = 0; s < n; s++) {
        float *gs = g + (size_t)s * I;
        const float *us = u + (size_t)s * I;
        for (int i = 0; i < I; i++) {
            float gv = gs[i], uv = us[i];
            if (lim > 0) {
                uv = uv < -lim ? -lim : uv > lim ? lim : uv;
                gv = gv > lim ? lim : gv;
            }
            float a = gv / (1.0f + expf(-gv)) * uv;
            gs[i] = rw ? rw[s] * a : a;
        }
    }
    rt_round(c, g, (size_t)n * I);
}

/* Experts whose rows add up to at most this many run as one batch: every w1
 * and w3 of the batch in one pool job, then every w2 in another (a decode
 * step: 2 wake-ups instead of 3 per expert).  Bounds the scratch of a long
 * prefill, where each expert has rows enough to fill the threads alone. */
#define RT_MOE_BATCH_ROWS 256

int rt_moe(const rt_ctx *c, const wp_config *cfg, const rt_layer *L, const float *x,
           const int32_t *tokens, int n, float *out, wp_err *e)
{
    const int E = cfg->n_routed_experts, k = cfg->n_activated_experts, d = cfg->dim;
    const int I = cfg->moe_inter_dim, Is = L->has_shared ? (int)L->sw1.rows : 0;
    const float lim = (float)cfg->swiglu_limit;
    /* an expert sees at most n*k rows (a hash table row may repeat an id) */
    const size_t nk = (size_t)n * k;
    const size_t gb = nk < RT_MOE_BATCH_ROWS ? nk : RT_MOE_BATCH_ROWS;
    int rc = 0;
    float *logits = malloc(sizeof(float) * ((size_t)n * E + nk + (size_t)n * d + 2 * nk * d + nk));
    int32_t *ids = malloc(sizeof(int32_t) * (2 * nk + 2 * (size_t)E + 2));
    rt_lin_spec *sp = malloc(sizeof(rt_lin_spec) * (2 * (size_t)E + 2));
    float *gu = NULL, *sh = NULL;
    if (!logits || !ids || !sp) goto oom;
    float *rw = logits + (size_t)n * E, *y = rw + nk, *xe = y + (size_t)n * d;
    float *oe = xe + nk * d, *rwe = oe + nk * d;
    int32_t *rows = ids + nk, *cnt = rows + nk, *off = cnt + E + 1;
    if ((rc = rt_linear_dense(c, &L->gate, x, n, logits))) goto fail;    /* fp32 router */
    for (int s = 0; s < n; s++)
        rt_route(cfg, L, logits + (size_t)s * E, tokens[s], ids + (size_t)s * k, rw + (size_t)s * k);
    /* gather each expert's rows, ascending expert id, at its own offset */
    int used = 0;
    for (int ex = 0; ex < E; ex++) {
        off[ex] = used;
        cnt[ex] = 0;
        for (int s = 0; s < n; s++)
            for (int i = 0; i < k; i++)
                if (ids[(size_t)s * k + i] == ex) {
                    memcpy(xe + (size_t)used * d, x + (size_t)s * d, sizeof(float) * d);
                    rwe[used] = rw[(size_t)s * k + i];
                    rows[used++] = s;
                    cnt[ex]++;
                }
    }
    /* read-ahead (builds larger than memory) in the order the batches read:
     * every chosen expert's w1 and w3, then their w2 */
    for (int ex = 0; ex < E; ex++)
        if (cnt[ex]) {
            rt_prefetch_weight(c, &L->w1[ex]);
            rt_prefetch_weight(c, &L->w3[ex]);
        }
    for (int ex = 0; ex < E; ex++)
        if (cnt[ex]) rt_prefetch_weight(c, &L->w2[ex]);
    /* the next block's fixed weights only in a prefill: a decode reads them
     * every step, so they stay in the page cache and the hints would only
     * cost the hint thread's page-cache walks (measured: bench/realsize.sh) */
    for (int i = 0; n > 4 && i < L->n_pf_after; i++) rt_prefetch_weight(c, L->pf_after[i]);
    size_t most = gb;       /* the largest batch: RT_MOE_BATCH_ROWS, or one big expert */
    for (int ex = 0; ex < E; ex++) most = (size_t)cnt[ex] > most ? (size_t)cnt[ex] : most;
    if (!(gu = malloc(sizeof(float) * 2 * most * I))) goto oom;
    if (L->has_shared) {
        if (!(sh = malloc(sizeof(float) * ((size_t)n * 2 * Is + (size_t)n * d)))) goto oom;
    }
    memset(y, 0, sizeof(float) * (size_t)n * d);
    int first = 1;
    for (int e0 = 0; e0 < E;) {
        /* one batch: experts [e0, e1) with at most `most` rows together */
        int e1 = e0;
        size_t r = 0;
        while (e1 < E && (r + (size_t)cnt[e1] <= most || r == 0)) r += (size_t)cnt[e1++];
        if (r == 0 && !(first && L->has_shared)) {
            e0 = e1;
            continue;
        }
        float *g = gu, *u = gu + most * I;
        int ns = 0;
        for (int ex = e0; ex < e1; ex++) {
            if (!cnt[ex]) continue;
            const size_t o = (size_t)(off[ex] - off[e0]);
            const float *xr = xe + (size_t)off[ex] * d;
            sp[ns++] = (rt_lin_spec){.w = &L->w1[ex], .x = xr, .M = cnt[ex], .y = g + o * I};
            sp[ns++] = (rt_lin_spec){.w = &L->w3[ex], .x = xr, .M = cnt[ex], .y = u + o * I};
        }
        const int shared = first && L->has_shared;    /* the shared expert rides along */
        float *sg = sh, *su = sh ? sh + (size_t)n * Is : NULL, *so = sh ? su + (size_t)n * Is : NULL;
        if (shared) {
            sp[ns++] = (rt_lin_spec){.w = &L->sw1, .x = x, .M = n, .y = sg};
            sp[ns++] = (rt_lin_spec){.w = &L->sw3, .x = x, .M = n, .y = su};
        }
        if ((rc = rt_linear_many(c, sp, ns))) goto fail;
        ns = 0;
        for (int ex = e0; ex < e1; ex++) {
            if (!cnt[ex]) continue;
            const size_t o = (size_t)(off[ex] - off[e0]);
            swiglu(c, g + o * I, u + o * I, rwe + off[ex], cnt[ex], I, lim);
            sp[ns++] = (rt_lin_spec){.w = &L->w2[ex], .x = g + o * I, .M = cnt[ex],
                                     .y = oe + (size_t)off[ex] * d};
        }
        if (shared) {
            swiglu(c, sg, su, NULL, n, Is, lim);
            sp[ns++] = (rt_lin_spec){.w = &L->sw2, .x = sg, .M = n, .y = so};
        }
        if ((rc = rt_linear_many(c, sp, ns))) goto fail;
        /* experts are accumulated in ascending id, as the reference does */
        for (int ex = e0; ex < e1; ex++)
            for (int i = off[ex]; i < off[ex] + cnt[ex]; i++) {
                float *ys = y + (size_t)rows[i] * d;
                const float *os = oe + (size_t)i * d;
                for (int t = 0; t < d; t++) ys[t] += os[t];
            }
        first = 0;
        e0 = e1;
    }
    if (L->has_shared) {
        const float *so = sh + 2 * (size_t)n * Is;
        for (size_t i = 0; i < (size_t)n * d; i++) y[i] += so[i];
    }
    rt_round(c, y, (size_t)n * d);
    memcpy(out, y, sizeof(float) * (size_t)n * d);
    free(logits), free(ids), free(sp), free(gu), free(sh);
    return 0;
oom:
    rc = WP_ENOMEM;
fail:
    free(logits), free(ids), free(sp), free(gu), free(sh);
    return wp_fail(e, rc, "%sffn: out of memory", L->prefix);
}
