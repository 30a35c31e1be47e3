/*
 * hc.c — hyper-connections (spec §4.2, §4.10) and the weighted RMSNorm
 * (spec §4.3).  Everything here is fp32 in the reference too; the only bf16
 * rounding points are the outputs of hc_pre and hc_post.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/internal.h"

void rt_rmsnorm(float *x, const float *w, int n, float eps)
{
    double ss = 0;
    for (int i = 0; i < n; i++) ss += (double)x[i] * x[i];
    float r = 1.0f / sqrtf((float)(ss / n) + eps);
    /* spec §4.3: normalise in fp32, multiply by the fp32 weight, round once */
    for (int i = 0; i < n; i++) x[i] = w ? w[i] * (x[i] * r) : x[i] * r;
}

static float sigmoidf(float x) { return 1.0f / (1.0f + expf(-x)); }

void rt_sinkhorn(const float *mixes, const float *scale, const float *base, int hc, int iters,
                 float eps, float *pre, float *post, float *comb)
{
    for (int j = 0; j < hc; j++) {
        pre[j] = sigmoidf(mixes[j] * scale[0] + base[j]) + eps;
        post[j] = 2.0f * sigmoidf(mixes[hc + j] * scale[1] + base[hc + j]);
    }
    float *c = comb;
    for (int j = 0; j < hc; j++) {          /* row j = input stream, softmax over k */
        float *row = c + j * hc, mx = -INFINITY, sum = 0;
        for (int k = 0; k < hc; k++) {
            row[k] = mixes[2 * hc + j * hc + k] * scale[2] + base[2 * hc + j * hc + k];
            if (row[k] > mx) mx = row[k];
        }
        for (int k = 0; k < hc; k++) sum += (row[k] = expf(row[k] - mx));
        for (int k = 0; k < hc; k++) row[k] = row[k] / sum + eps;
    }
    /* spec §4.2: one column normalisation, then iters-1 (row, column) rounds;
     * the last step is a column normalisation */
    for (int it = 0; it < iters; it++) {
        if (it > 0) {
            for (int j = 0; j < hc; j++) {
                float s = 0;
                for (int k = 0; k < hc; k++) s += c[j * hc + k];
                for (int k = 0; k < hc; k++) c[j * hc + k] /= s + eps;
            }
        }
        for (int k = 0; k < hc; k++) {
            float s = 0;
            for (int j = 0; j < hc; j++) s += c[j * hc + k];
            for (int j = 0; j < hc; j++) c[j * hc + k] /= s + eps;
        }
    }
}

/* mixes = (fn . X) * rsqrt(mean(X^2) + eps) over the flattened streams */
static float hc_rsqrt_ms(const float *h, int n, float norm_eps)
{
    double ss = 0;
    for (int i = 0; i < n; i++) ss += (double)h[i] * h[i];
    return 1.0f / sqrtf((float)(ss / n) + norm_eps);
}

static void hc_mixes(const rt_kernels *k, const float *h, int hc, int d, const float *fn, int nm,
                     float norm_eps, float *mixes)
{
    const int n = hc * d;
    float r = hc_rsqrt_ms(h, n, norm_eps);
    for (int i = 0; i < nm; i++) mixes[i] = k->dot(fn + (size_t)i * n, h, n) * r;
}

typedef struct hc_pre_job {
    const rt_ctx *c;
    const float *h, *fn, *scale, *base;
    int hc, d, iters, nm;
    float hc_eps, norm_eps;
    float *x, *post, *comb;
    float *mixes;               /* [n, nm]: fn . X, not yet scaled */
    float *r;                   /* [n]: rsqrt(mean(X^2) + eps) */
} hc_pre_job;

/* item i = (position i / nm, mix row i % nm): a decode (one position) still
 * spreads its 24 rows of fn (1.5 MB on V4-Flash) over the threads */
static void hc_mix_task(void *ctx, int i0, int i1)
{
    hc_pre_job *j = ctx;
    const int n = j->hc * j->d;
    for (int i = i0; i < i1; i++) {
        const int s = i / j->nm, m = i % j->nm;
        const float *h = j->h + (size_t)s * n;
        if (m == 0) j->r[s] = hc_rsqrt_ms(h, n, j->norm_eps);   /* one item per position */
        j->mixes[i] = j->c->k->dot(j->fn + (size_t)m * n, h, n);
    }
}

static void hc_pre_task(void *ctx, int s0, int s1)
{
    hc_pre_job *j = ctx;
    const int hc = j->hc, d = j->d, nm = j->nm;
    float mixes[nm], pre[hc];
    for (int s = s0; s < s1; s++) {
        const float *h = j->h + (size_t)s * hc * d;
        /* the same products as hc_mixes: dot, then times r */
        for (int i = 0; i < nm; i++) mixes[i] = j->mixes[(size_t)s * nm + i] * j->r[s];
        rt_sinkhorn(mixes, j->scale, j->base, hc, j->iters, j->hc_eps, pre, j->post + s * hc,
                    j->comb + (size_t)s * hc * hc);
        float *x = j->x + (size_t)s * d;
        for (int i = 0; i < d; i++) {
            float acc = 0;
            for (int k = 0; k < hc; k++) acc += pre[k] * h[(size_t)k * d + i];
            x[i] = acc;
        }
        rt_round(j->c, x, (size_t)d);
    }
}

void rt_hc_pre(const rt_ctx *c, const float *h, int n, int hc, int d, const float *fn,
               const float *scale, const float *base, int iters, float hc_eps, float norm_eps,
               float *x, float *post, float *comb)
{
    const int nm = (2 + hc) * hc;
    float *mx = malloc(sizeof(float) * ((size_t)n * nm + (size_t)n));
    hc_pre_job j = {c, h, fn, scale, base, hc, d, iters, nm, hc_eps, norm_eps, x, post, comb,
                    mx, mx ? mx + (size_t)n * nm : NULL};
    if (!mx) {      /* no scratch: the same sums, position by position, on this thread */
        float mixes[nm], pre[hc];
        for (int s = 0; s < n; s++) {
            const float *hs = h + (size_t)s * hc * d;
            hc_mixes(c->k, hs, hc, d, fn, nm, norm_eps, mixes);
            rt_sinkhorn(mixes, scale, base, hc, iters, hc_eps, pre, post + s * hc,
                        comb + (size_t)s * hc * hc);
            for (int i = 0; i < d; i++) {
                float acc = 0;
                for (int k = 0; k < hc; k++) acc += pre[k] * hs[(size_t)k * d + i];
                x[(size_t)s * d + i] = acc;
            }
            rt_round(c, x + (size_t)s * d, (size_t)d);
        }
        return;
    }
    /* work in FP8 multiply-adds: an fp32 row of fn reads four bytes per product */
    const double row = (double)hc * d;
    rt_pool_for_work(c->pool, n * nm, 4, 4.0 * n * nm * row, hc_mix_task, &j);
    rt_pool_for_work(c->pool, n, 4, (double)n * (row + 8.0 * iters * hc * hc), hc_pre_task, &j);
    free(mx);
}

void rt_hc_post(const rt_ctx *c, float *h, const float *x, int n, int hc, int d,
                const float *post, const float *comb)
{
    for (int s = 0; s < n; s++) {
        float *hs = h + (size_t)s * hc * d;
        const float *xs = x + (size_t)s * d, *pw = post + s * hc, *cb = comb + (size_t)s * hc * hc;
        for (int i = 0; i < d; i++) {
            float res[hc];
            for (int j = 0; j < hc; j++) res[j] = hs[(size_t)j * d + i];
            for (int k = 0; k < hc; k++) {
                /* spec §4.2: comb enters transposed, the sum runs over its first index */
                float acc = 0;
                for (int j = 0; j < hc; j++) acc += cb[j * hc + k] * res[j];
                hs[(size_t)k * d + i] = pw[k] * xs[i] + acc;
            }
        }
        rt_round(c, hs, (size_t)hc * d);
    }
}

void rt_hc_head(const float *h, int hc, int d, const float *fn, const float *scale,
                const float *base, float hc_eps, float norm_eps, float *y)
{
    float mixes[hc];
    hc_mixes(rt_kernels_scalar(), h, hc, d, fn, hc, norm_eps, mixes);
    for (int i = 0; i < d; i++) y[i] = 0;
    for (int j = 0; j < hc; j++) {
        float pre = sigmoidf(mixes[j] * scale[0] + base[j]) + hc_eps;
        for (int i = 0; i < d; i++) y[i] += pre * h[(size_t)j * d + i];
    }
}
