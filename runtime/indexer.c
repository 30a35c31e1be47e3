/*
 * indexer.c — the lightning indexer of CSA layers (spec §4.7): FP4-simulated,
 * Hadamard-rotated queries from the attention's q latent, its own compressor
 * for the keys, relu-weighted head scores and a deterministic top-k.
 */
#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/internal.h"

void rt_hadamard(float *x, int n, float scale)
{
    /* Sylvester butterfly: yields H_n[a][b] = (-1)^popcount(a & b), natural order */
    for (int h = 1; h < n; h <<= 1)
        for (int i = 0; i < n; i += 2 * h)
            for (int j = i; j < i + h; j++) {
                float a = x[j], b = x[j + h];
                x[j] = a + b;
                x[j + h] = a - b;
            }
    for (int i = 0; i < n; i++) x[i] *= scale;
}

/* spec §4.7 tie rule: higher score first, then lower index; NaN ranks last. */
static int better(const float *s, int32_t i, int32_t j)
{
    float a = s[i], b = s[j];
    if (isnan(a) || isnan(b)) return isnan(b) && (!isnan(a) || i < j);
    return a > b || (a == b && i < j);
}

/* min-heap on "better": the root is the worst element kept */
static void sift_down(const float *s, int32_t *h, int n, int i)
{
    for (;;) {
        int l = 2 * i + 1, r = l + 1, w = i;
        if (l < n && better(s, h[w], h[l])) w = l;
        if (r < n && better(s, h[w], h[r])) w = r;
        if (w == i) return;
        int32_t t = h[i];
        h[i] = h[w];
        h[w] = t;
        i = w;
    }
}

void rt_topk(const float *score, int n, int k, int32_t *idx)
{
    if (k <= 0) return;
    int size = 0;
    for (int32_t i = 0; i < n; i++) {
        if (size < k) {
            int c = size++;
            idx[c] = i;
            while (c > 0 && better(score, idx[(c - 1) / 2], idx[c])) {
                int p = (c - 1) / 2;
                int32_t t = idx[p];
                idx[p] = idx[c];
                idx[c] = t;
                c = p;
            }
        } else if (better(score, i, idx[0])) {
            idx[0] = i;
            sift_down(score, idx, size, 0);
        }
    }
    /* heap sort: move the worst to the back until sorted best-first */
    for (int end = size - 1; end > 0; end--) {
        int32_t t = idx[0];
        idx[0] = idx[end];
        idx[end] = t;
        sift_down(score, idx, end, 0);
    }
}

typedef struct score_job {
    const rt_ctx *c;
    const float *q, *w, *keys;
    int Hi, Di, T, topk, m, p0, prefill;
    int32_t *out;
    atomic_int oom;
} score_job;

/* score[t] of query s over entries [t0, t1) (spec §4.7 step 4) */
static void score_range(const score_job *j, int s, int t0, int t1, int visible, float *sc)
{
    const int Hi = j->Hi, Di = j->Di, bf16 = (j->c->flags & WP_RT_BF16) != 0;
    const float *q = j->q + (size_t)s * Hi * Di, *w = j->w + (size_t)s * Hi;
    for (int t = t0; t < t1; t++) {
        if (t >= visible) {
            sc[t] = -INFINITY;
            continue;
        }
        const float *k = j->keys + (size_t)t * Di;
        float acc = 0;
        for (int h = 0; h < Hi; h++) {
            float d = j->c->k->dot(q + (size_t)h * Di, k, Di);
            if (bf16) d = wp_bf16_round(d);
            float v = (d > 0 ? d : 0) * w[h];
            if (bf16) v = wp_bf16_round(v);
            acc += v;
        }
        sc[t] = bf16 ? wp_bf16_round(acc) : acc;
    }
}

static void select_topk(const score_job *j, int s, int visible, const float *sc, int32_t *sel)
{
    const int k = j->topk < j->T ? j->topk : j->T;
    rt_topk(sc, j->T, k, sel);
    int32_t *o = j->out + (size_t)s * j->topk;
    for (int i = 0; i < j->topk; i++) o[i] = i < k && sel[i] < visible ? sel[i] : -1;
}

/* prefill: one query position per item */
static void score_task(void *ctx, int s0, int s1)
{
    score_job *j = ctx;
    float *sc = malloc(sizeof(float) * (size_t)(j->T + 1));
    int32_t *sel = malloc(sizeof(int32_t) * (size_t)(j->topk + 1));
    if (!sc || !sel) {
        free(sc);
        free(sel);
        atomic_store(&j->oom, 1);
        return;
    }
    for (int s = s0; s < s1; s++) {
        /* spec §4.7 step 5: in prefill, entries not yet complete at this
         * query's position are masked; in decode all T entries are visible */
        const int visible = j->prefill ? (j->p0 + s + 1) / j->m : j->T;
        score_range(j, s, 0, j->T, visible, sc);
        select_topk(j, s, visible, sc, sel);
    }
    free(sc);
    free(sel);
}

/* decode: one query, its entries spread over the threads in chunks */
#define SCORE_CHUNK 64
typedef struct chunk_job {
    const score_job *j;
    float *sc;
} chunk_job;

static void chunk_task(void *ctx, int c0, int c1)
{
    chunk_job *cj = ctx;
    int t0 = c0 * SCORE_CHUNK, t1 = c1 * SCORE_CHUNK;
    score_range(cj->j, 0, t0, t1 < cj->j->T ? t1 : cj->j->T, cj->j->T, cj->sc);
}

int rt_indexer(const rt_ctx *c, const wp_config *cfg, const rt_layer *L, rt_lstate *st,
               const float *x, const float *qr, int n, int32_t *topk, wp_err *e)
{
    const int Hi = cfg->index_n_heads, Di = cfg->index_head_dim, r = cfg->rope_head_dim;
    const int p0 = st->pos, prefill = p0 == 0;
    if (!prefill && n != 1)   /* spec §4.12: no chunked prefill; decode is one token */
        return wp_fail(e, WP_EUSAGE, "%sattn.indexer: %d tokens at position %d (decode takes one)",
                       L->prefix, n, p0);
    float *q = malloc(sizeof(float) * ((size_t)n * Hi * Di + (size_t)n * Hi));
    if (!q) return wp_oom(e, "%sattn.indexer", L->prefix);
    float *w = q + (size_t)n * Hi * Di;
    int rc = rt_linear(c, &L->iq_b, qr, n, q);
    if (rc) goto oom;
    float cs[512];
    const float hs = 1.0f / sqrtf((float)Di);
    for (int s = 0; s < n; s++) {
        rt_rope_cs(L->rope, p0 + s, cs);
        for (int h = 0; h < Hi; h++) {
            float *qh = q + ((size_t)s * Hi + h) * Di;
            rt_rope_apply(qh + Di - r, cs, r, 0);
            rt_round(c, qh + Di - r, (size_t)r);
            rt_hadamard(qh, Di, hs);
            rt_round(c, qh, (size_t)Di);
            /* spec §4.7: the FP4 round trip, block 32 */
            if (!(c->flags & WP_RT_INDEXER_HP)) wp_fp4_act_quant_sim(qh, (size_t)Di, 32);
        }
    }
    /* the indexer's own compressor runs before the scores (spec §4.6 order) */
    if (prefill) {
        rc = rt_comp_prefill(c, cfg, &L->icomp, L->rope, &st->ics, x, n, st->ik);
        if (rc < 0) goto oom;
        st->n_ik = rc;
    } else {
        rc = rt_comp_decode(c, cfg, &L->icomp, L->rope, &st->ics, x, p0,
                            st->ik + (size_t)st->n_ik * Di);
        if (rc < 0) goto oom;
        st->n_ik += rc;
    }
    rc = rt_linear_dense(c, &L->iw, x, n, w);
    if (rc) goto oom;
    rt_round(c, w, (size_t)n * Hi);        /* weights_proj is a bf16 linear */
    /* spec §4.7 step 3: w * index_head_dim^-0.5 * index_n_heads^-0.5 */
    const float wscale = (float)(1.0 / sqrt((double)Di) / sqrt((double)Hi));
    for (size_t i = 0; i < (size_t)n * Hi; i++) w[i] *= wscale;
    rt_round(c, w, (size_t)n * Hi);
    score_job j = {.c = c, .q = q, .w = w, .keys = st->ik, .Hi = Hi, .Di = Di, .T = st->n_ik,
                   .topk = cfg->index_topk, .m = L->ratio, .p0 = p0, .prefill = prefill,
                   .out = topk};
    atomic_init(&j.oom, 0);
    if (prefill) {
        rt_pool_for_work(c->pool, n, 1, (double)n * j.T * Hi * Di, score_task, &j);
        if (atomic_load(&j.oom)) goto oom;
    } else {
        float *sc = malloc(sizeof(float) * (size_t)(j.T + 1));
        int32_t *sel = malloc(sizeof(int32_t) * (size_t)(j.topk + 1));
        if (!sc || !sel) {
            free(sc);
            free(sel);
            goto oom;
        }
        chunk_job cj = {&j, sc};
        rt_pool_for_work(c->pool, (j.T + SCORE_CHUNK - 1) / SCORE_CHUNK, 1,
                         (double)j.T * Hi * Di, chunk_task, &cj);
        select_topk(&j, 0, j.T, sc, sel);
        free(sc);
        free(sel);
    }
    free(q);
    return 0;
oom:
    free(q);
    return wp_oom(e, "%sattn.indexer", L->prefix);
}
