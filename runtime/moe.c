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

/* out[n, d] = w2(swiglu(w1 x, w3 x) * rw) for one expert */
static int expert(const rt_ctx *c, const wp_qweight *w1, const wp_qweight *w2,
                  const wp_qweight *w3, const float *x, const float *rw, int n, float lim,
                  float *out)
{
    const int I = (int)w1->rows;
    float *g = malloc(sizeof(float) * 2 * (size_t)n * I);
    if (!g) return WP_ENOMEM;
    float *u = g + (size_t)n * I;
    int rc = rt_linear(c, w1, x, n, g);
    if (!rc) rc = rt_linear(c, w3, x, n, u);
    if (!rc) {
        swiglu(c, g, u, rw, n, I, lim);
        rc = rt_linear(c, w2, g, n, out);
    }
    free(g);
    return rc;
}

int rt_moe(const rt_ctx *c, const wp_config *cfg, const rt_layer *L, const float *x,
           const int32_t *tokens, int n, float *out, wp_err *e)
{
    const int E = cfg->n_routed_experts, k = cfg->n_activated_experts, d = cfg->dim;
    const float lim = (float)cfg->swiglu_limit;
    /* an expert sees at most n*k rows (a hash table row may repeat an id) */
    const size_t nk = (size_t)n * k;
    size_t sz = (size_t)n * E + nk + (size_t)n * d + 2 * nk * d + nk;
    float *logits = malloc(sizeof(float) * sz);
    int32_t *ids = malloc(sizeof(int32_t) * 2 * nk);
    if (!logits || !ids) {
        free(logits);
        free(ids);
        return wp_oom(e, "%sffn", L->prefix);
    }
    float *rw = logits + (size_t)n * E, *y = rw + nk, *xe = y + (size_t)n * d;
    float *oe = xe + nk * d, *rwe = oe + nk * d;
    int32_t *rows = ids + nk;
    int rc = rt_linear_dense(c, &L->gate, x, n, logits);    /* fp32 router */
    if (rc) goto fail;
    for (int s = 0; s < n; s++)
        rt_route(cfg, L, logits + (size_t)s * E, tokens[s], ids + (size_t)s * k, rw + (size_t)s * k);
    memset(y, 0, sizeof(float) * (size_t)n * d);
    for (int ex = 0; ex < E; ex++) {
        int cnt = 0;
        for (int s = 0; s < n; s++)
            for (int i = 0; i < k; i++)
                if (ids[(size_t)s * k + i] == ex) {
                    memcpy(xe + (size_t)cnt * d, x + (size_t)s * d, sizeof(float) * d);
                    rwe[cnt] = rw[(size_t)s * k + i];
                    rows[cnt++] = s;
                }
        if (!cnt) continue;
        if ((rc = expert(c, &L->w1[ex], &L->w2[ex], &L->w3[ex], xe, rwe, cnt, lim, oe))) goto fail;
        for (int i = 0; i < cnt; i++) {
            float *ys = y + (size_t)rows[i] * d;
            const float *os = oe + (size_t)i * d;
            for (int t = 0; t < d; t++) ys[t] += os[t];
        }
    }
    if (L->has_shared) {
        if ((rc = expert(c, &L->sw1, &L->sw2, &L->sw3, x, NULL, n, lim, oe))) goto fail;
        for (size_t i = 0; i < (size_t)n * d; i++) y[i] += oe[i];
    }
    rt_round(c, y, (size_t)n * d);
    memcpy(out, y, sizeof(float) * (size_t)n * d);
    free(logits);
    free(ids);
    return 0;
fail:
    free(logits);
    free(ids);
    return wp_fail(e, rc, "%sffn: out of memory", L->prefix);
}
