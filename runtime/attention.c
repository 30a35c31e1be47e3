/*
 * attention.c — the attention sub-block (spec §4.5, §4.8): low-rank q with
 * per-head RMS normalisation, one shared KV head with the FP8 round trip,
 * a sliding-window ring buffer plus compressed entries (all of them for HCA,
 * the indexer's top-k for CSA), sink-aware softmax, inverse RoPE on the
 * output and the grouped low-rank output projection.
 */
#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/internal.h"

#define ATTN_BLOCK 64    /* spec §4.8: online softmax over blocks of 64 indices */

void rt_sparse_attn(const rt_ctx *c, const float *q, const float *const *rows, int nrows, int d,
                    float scale, float sink, float *o)
{
    const int bf16 = (c->flags & WP_RT_BF16) != 0;
    float mx = -INFINITY, sum = 0, l[ATTN_BLOCK];
    for (int i = 0; i < d; i++) o[i] = 0;
    for (int b0 = 0; b0 < nrows; b0 += ATTN_BLOCK) {
        const int nb = nrows - b0 < ATTN_BLOCK ? nrows - b0 : ATTN_BLOCK;
        float bm = mx;
        for (int j = 0; j < nb; j++) {
            const float *kv = rows[b0 + j];
            l[j] = kv ? scale * c->k->dot(q, kv, d) : -INFINITY;
            if (l[j] > bm) bm = l[j];
        }
        if (bm == -INFINITY) continue;          /* nothing valid yet */
        const float alpha = expf(mx - bm);      /* 0 on the first valid block */
        sum *= alpha;
        for (int i = 0; i < d; i++) o[i] *= alpha;
        for (int j = 0; j < nb; j++) {
            if (!rows[b0 + j]) continue;
            float p = expf(l[j] - bm);
            sum += p;
            if (bf16) p = wp_bf16_round(p);
            c->k->axpy(o, p, rows[b0 + j], d);   /* o += p * kv, elementwise */
        }
        mx = bm;
    }
    if (mx == -INFINITY) return;                /* no valid index: zero output */
    /* the sink is a raw logit, outside the running max, with no value */
    const float den = sum + expf(sink - mx);
    for (int i = 0; i < d; i++) o[i] /= den;
    rt_round(c, o, (size_t)d);
}

/* spec §4.5 step 1: per-head unweighted RMS norm; in bf16 mode every op
 * rounds, as the reference's in-place bf16 arithmetic does. */
static void head_norm(const rt_ctx *c, float *q, int d, float eps)
{
    if (!(c->flags & WP_RT_BF16)) {
        rt_rmsnorm(q, NULL, d, eps);
        return;
    }
    float ss = 0;
    for (int i = 0; i < d; i++) ss += wp_bf16_round(q[i] * q[i]);
    float ms = wp_bf16_round(ss / (float)d);
    float v = wp_bf16_round(ms + eps);
    float r = wp_bf16_round(1.0f / sqrtf(v));
    for (int i = 0; i < d; i++) q[i] = wp_bf16_round(q[i] * r);
}

static void sim_fp8(float *x, int n, int block)
{
    int full = n / block * block;
    if (full) wp_act_quant_sim(x, (size_t)full, (size_t)block);
    if (n > full) wp_act_quant_sim(x + full, (size_t)(n - full), (size_t)(n - full));
}

typedef struct attn_job {
    const rt_ctx *c;
    const wp_config *cfg;
    const rt_layer *L;
    rt_lstate *const *st;    /* one state, or one per row (batched decode) */
    int nst;
    const float *q, *kv;     /* this call's q [n, H, D] and kv [n, D] */
    const int32_t *topk;     /* [n, index_topk] for CSA */
    int n, p0, prefill;
    float *o;                /* [n, H, D] */
    atomic_int oom;
} attn_job;

/* Items are (position, head) pairs, so a one-token decode still spreads its
 * heads over the threads; each item rebuilds its position's row list (a few
 * hundred pointers against as many dot products per head). */
static void attn_task(void *ctx, int i0, int i1)
{
    attn_job *j = ctx;
    const wp_config *cfg = j->cfg;
    const int H = cfg->n_heads, D = cfg->head_dim, W = cfg->window_size, m = j->L->ratio;
    int maxc = m == 4 ? cfg->index_topk : 0;
    for (int i = 0; m && m != 4 && i < j->nst; i++)
        maxc = j->st[i]->n_ckv > maxc ? j->st[i]->n_ckv : maxc;
    const float **rows = malloc(sizeof(*rows) * (size_t)(W + maxc + 1));
    if (!rows) {
        atomic_store(&j->oom, 1);
        return;
    }
    const float scale = 1.0f / sqrtf((float)D);   /* head_dim^-0.5, no mscale (spec §4.4) */
    int built = -1, nr = 0;
    for (int i = i0; i < i1; i++) {
        const int s = i / H, h = i % H;
        const rt_lstate *st = j->st[j->nst == 1 ? 0 : s];
        const int P = j->nst == 1 ? j->p0 + s : st->pos;
        if (s != built) {
            nr = 0;
            if (j->prefill) {                 /* chunk rows, ascending position */
                for (int p = P - W + 1 < 0 ? 0 : P - W + 1; p <= P; p++)
                    rows[nr++] = j->kv + (size_t)p * D;
            } else {                          /* ring slots in slot order */
                int ns = P < W - 1 ? P + 1 : W;
                for (int k = 0; k < ns; k++) rows[nr++] = st->ring + (size_t)k * D;
            }
            if (m == 4) {
                const int32_t *t = j->topk + (size_t)s * cfg->index_topk;
                for (int k = 0; k < cfg->index_topk; k++)
                    if (t[k] >= 0) rows[nr++] = st->ckv + (size_t)t[k] * D;
            } else if (m) {
                int vis = (P + 1) / m;        /* spec §4.5 step 4: j < floor((P+1)/m) */
                for (int k = 0; k < vis; k++) rows[nr++] = st->ckv + (size_t)k * D;
            }
            built = s;
        }
        size_t off = ((size_t)s * H + h) * D;
        rt_sparse_attn(j->c, j->q + off, rows, nr, D, scale, j->L->sink[h], j->o + off);
    }
    free(rows);
}

int rt_attention(const rt_ctx *c, const wp_config *cfg, const rt_layer *L, rt_lstate *const *sts,
                 int nst, const float *x, int n, float *out, wp_err *e)
{
    const int H = cfg->n_heads, D = cfg->head_dim, r = cfg->rope_head_dim, nope = D - r;
    const int Lq = cfg->q_lora_rank, G = cfg->o_groups, R = cfg->o_lora_rank;
    const int W = cfg->window_size, p0 = sts[0]->pos, prefill = nst == 1 && p0 == 0;
    const float eps = (float)cfg->norm_eps;
    if (nst == 1 && !prefill && n != 1)
        return wp_fail(e, WP_EUSAGE, "%sattn: %d tokens at position %d (decode takes one)",
                       L->prefix, n, p0);
    if (nst != 1 && nst != n)
        return wp_fail(e, WP_EUSAGE, "%sattn: %d states for %d rows", L->prefix, nst, n);
    for (int b = 0; nst > 1 && b < nst; b++)
        if (sts[b]->pos == 0)
            return wp_fail(e, WP_EUSAGE, "%sattn: a batched decode row at position 0 (prefill "
                           "first)", L->prefix);
    /* row s: its sequence's state and position */
#define POS(s) (nst == 1 ? p0 + (s) : sts[s]->pos)
    size_t nq = (size_t)n * Lq, nh = (size_t)n * H * D, nk = (size_t)n * D, nu = (size_t)n * G * R;
    size_t nt = L->ratio == 4 ? (size_t)n * cfg->index_topk : 0;
    size_t gk = (size_t)H * D / G;
    float *buf = malloc(sizeof(float) * (nq + 2 * nh + nk + nu) + sizeof(int32_t) * nt);
    if (!buf) return wp_oom(e, "%sattn", L->prefix);
    float *qr = buf, *q = qr + nq, *o = q + nh, *kv = o + nh, *u = kv + nk;
    int32_t *topk = (int32_t *)(u + nu);
    int rc;
    float cs[512];

    /* 1. query: q_norm(wq_a x), wq_b, per-head norm, RoPE on the last r dims;
     * wkv reads the same x, so it shares wq_a's pool job (used in step 2) */
    const rt_lin_spec qk[2] = {{.w = &L->wq_a, .x = x, .M = n, .y = qr},
                               {.w = &L->wkv, .x = x, .M = n, .y = kv}};
    if ((rc = rt_linear_many(c, qk, 2))) goto fail;
    for (int s = 0; s < n; s++) rt_rmsnorm(qr + (size_t)s * Lq, L->q_norm, Lq, eps);
    rt_round(c, qr, nq);
    if ((rc = rt_linear(c, &L->wq_b, qr, n, q))) goto fail;
    for (int s = 0; s < n; s++) {
        rt_rope_cs(L->rope, POS(s), cs);
        for (int h = 0; h < H; h++) {
            float *qh = q + ((size_t)s * H + h) * D;
            head_norm(c, qh, D, eps);
            rt_rope_apply(qh + nope, cs, r, 0);
            rt_round(c, qh + nope, (size_t)r);
        }
    }
    /* 2. window KV: kv_norm(wkv x), RoPE, FP8 round trip of the nope dims */
    for (int s = 0; s < n; s++) {
        float *k = kv + (size_t)s * D;
        rt_rmsnorm(k, L->kv_norm, D, eps);
        rt_round(c, k, (size_t)D);
        rt_rope_cs(L->rope, POS(s), cs);
        rt_rope_apply(k + nope, cs, r, 0);
        rt_round(c, k + nope, (size_t)r);
        sim_fp8(k, nope, 64);
    }
    /* 3-4. the indexer (before the main compressor), then the compressor; a
     * batched decode runs them per sequence */
    for (int b = 0; b < nst; b++) {
        rt_lstate *st = sts[b];
        const int r0 = nst == 1 ? 0 : b, nr = nst == 1 ? n : 1;
        if (L->ratio == 4) {
            int32_t *tk = topk + (size_t)r0 * cfg->index_topk;
            if ((rc = rt_indexer(c, cfg, L, st, x + (size_t)r0 * cfg->dim, qr + (size_t)r0 * Lq,
                                 nr, tk, e))) {
                free(buf);
                return rc;
            }
            for (int s = 0; st->cap_topk && s < nr && st->cap_used < st->cap_rows;
                 s++, st->cap_used++)
                memcpy(st->cap_topk + (size_t)st->cap_used * cfg->index_topk,
                       tk + (size_t)s * cfg->index_topk, sizeof(int32_t) * cfg->index_topk);
        }
        if (L->ratio) {
            if (prefill) {
                rc = rt_comp_prefill(c, cfg, &L->comp, L->rope, &st->cs, x, n, st->ckv);
                if (rc < 0) goto fail;
                st->n_ckv = rc;
            } else {
                rc = rt_comp_decode(c, cfg, &L->comp, L->rope, &st->cs, x + (size_t)r0 * cfg->dim,
                                    st->pos, st->ckv + (size_t)st->n_ckv * D);
                if (rc < 0) goto fail;
                st->n_ckv += rc;
            }
        }
        /* 5. ring buffer: position P lives in slot P mod W */
        if (!prefill)
            memcpy(st->ring + (size_t)(st->pos % W) * D, kv + (size_t)r0 * D, sizeof(float) * D);
    }
    /* 6. sparse attention */
    attn_job j = {.c = c, .cfg = cfg, .L = L, .st = sts, .nst = nst, .q = q, .kv = kv,
                  .topk = topk, .n = n, .p0 = p0, .prefill = prefill, .o = o};
    atomic_init(&j.oom, 0);
    /* work: every (position, head) item reads its window and compressed rows */
    int maxc = L->ratio == 4 ? cfg->index_topk : 0;
    for (int b = 0; L->ratio && L->ratio != 4 && b < nst; b++)
        maxc = sts[b]->n_ckv > maxc ? sts[b]->n_ckv : maxc;
    rt_pool_for_work(c->pool, n * H, 1, 2.0 * n * H * (double)(W + maxc) * D, attn_task, &j);
    if (atomic_load(&j.oom)) {
        rc = WP_ENOMEM;
        goto fail;
    }
    if (prefill)
        for (int s = n - W < 0 ? 0 : n - W; s < n; s++)
            memcpy(sts[0]->ring + (size_t)(s % W) * D, kv + (size_t)s * D, sizeof(float) * D);
    /* 7. inverse RoPE on the output's rope dims */
    for (int s = 0; s < n; s++) {
        rt_rope_cs(L->rope, POS(s), cs);
        for (int h = 0; h < H; h++) {
            float *oh = o + ((size_t)s * H + h) * D;
            rt_rope_apply(oh + nope, cs, r, 1);
            rt_round(c, oh + nope, (size_t)r);
        }
    }
#undef POS
    /* 8. grouped low-rank output: group g = heads [g*H/G, (g+1)*H/G) against
     * wo_a rows [g*R, (g+1)*R), no activation quantisation; then wo_b (FP8) */
    rt_lin_spec *sp = malloc(sizeof(rt_lin_spec) * (size_t)G);
    if (!sp) {
        rc = WP_ENOMEM;
        goto fail;
    }
    float *og = q;                  /* q is spent: the groups' inputs, [G][n][gk] */
    for (int g = 0; g < G; g++) {
        float *ogg = og + (size_t)g * n * gk;
        for (int s = 0; s < n; s++)
            memcpy(ogg + (size_t)s * gk, o + (size_t)s * H * D + (size_t)g * gk, sizeof(float) * gk);
        sp[g] = (rt_lin_spec){.w = &L->wo_a, .x = ogg, .M = n, .y = u + (size_t)g * R,
                              .r0 = (uint64_t)g * R, .nr = R, .ldy = G * R};
    }
    rc = rt_linear_dense_many(c, sp, G);    /* one pool job for every group */
    free(sp);
    if (rc) goto fail;
    rt_round(c, u, nu);
    if ((rc = rt_linear(c, &L->wo_b, u, n, out))) goto fail;
    free(buf);
    return 0;
fail:
    free(buf);
    return wp_fail(e, rc, "%sattn: out of memory", L->prefix);
}
