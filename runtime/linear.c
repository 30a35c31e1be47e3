/*
 * linear.c — the kernel driver: picks the kernel set this CPU runs
 * (linear_scalar.c, linear_avx2.c, linear_avx512.c; runtime/linear_kernels.h),
 * decodes weight rows for every wp_enc, quantises activations as the
 * reference does, and runs the linear products of spec §3.8 on the pool.
 *
 * An FP8/FP4 linear is computed the way the reference GEMM defines it:
 * C[m,n] = sum over K-segments s of (xs * ws) * P_s, where P_s is the fp32
 * sum of the products of the FP8 activation codes and the FP8/FP4 weight
 * codes within the segment.  A segment is the largest run on which both
 * scales are constant: 128 for 128x128 FP8, 32 for MXFP4 and 32x32 FP8, 16
 * for NVFP4.  Products of two E4M3 (or E4M3 x E2M1) values are exact in fp32,
 * so only the summation order differs from the GPU (spec §4.13).
 *
 * Vector kernels (AVX2+FMA, AVX-512F, AVX-512 BF16) are chosen at run time
 * with __builtin_cpu_supports; the scalar set is their reference in the tests.
 */
#include <cpuid.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/linear_kernels.h"

/* ---- Dispatch ----------------------------------------------------------------------------- */

static const rt_kernels *k_all[5];
static pthread_once_t k_once = PTHREAD_ONCE_INIT;

/* clang's __builtin_cpu_supports has no "f16c": ask CPUID leaf 1 (ECX bit 29) */
static int has_f16c(void)
{
    unsigned a, b, c, d;
    return __get_cpuid(1, &a, &b, &c, &d) && (c & bit_F16C);
}

static void k_init(void)
{
    int n = 0;
    __builtin_cpu_init();
    const int avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && has_f16c();
    const int avx512 = avx2 && __builtin_cpu_supports("avx512f");
    if (avx512 && __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vbmi") &&
        __builtin_cpu_supports("avx512bf16")) {
        rt_kernel_bf_tables_init();
        k_all[n++] = &rt_k_avx512bf;
    }
    if (avx512) k_all[n++] = &rt_k_avx512;
    if (avx2) k_all[n++] = &rt_k_avx2;
    k_all[n++] = &rt_k_scalar;
    k_all[n] = NULL;
}

const rt_kernels *rt_kernels_scalar(void)
{
    rt_kernel_luts_init();
    return &rt_k_scalar;
}

const rt_kernels *const *rt_kernels_all(void)
{
    rt_kernel_luts_init();
    pthread_once(&k_once, k_init);
    return k_all;
}

const rt_kernels *rt_kernels_best(void) { return rt_kernels_all()[0]; }

/* ---- Weight rows ------------------------------------------------------------------------- */

void rt_round(const rt_ctx *c, float *x, size_t n)
{
    if (!(c->flags & WP_RT_BF16)) return;
    for (size_t i = 0; i < n; i++) x[i] = wp_bf16_round(x[i]);
}

int rt_enc_quantised(wp_enc e) { return e == WP_ENC_FP8 || e == WP_ENC_MXFP4 || e == WP_ENC_NVFP4; }

static int gcd(int a, int b)
{
    while (b) {
        int t = a % b;
        a = b;
        b = t;
    }
    return a;
}

int rt_weight_seg(const wp_qweight *w)
{
    int blk;
    switch (w->enc) {
    case WP_ENC_FP8: blk = (int)w->bc; break;
    case WP_ENC_MXFP4: blk = 32; break;
    case WP_ENC_NVFP4: blk = 16; break;
    default: blk = RT_ACT_BLOCK; break;
    }
    return gcd(gcd(RT_ACT_BLOCK, blk), (int)w->cols);
}

/* Per-segment scales of row r (seg from rt_weight_seg; plain weights: 1). */
static void weight_scales(const rt_kernels *k, const wp_qweight *w, uint64_t r, float *ws,
                          int seg)
{
    const int ns = (int)w->cols / seg;
    switch (w->enc) {
    case WP_ENC_FP8: {
        uint64_t ncb = (w->cols + w->bc - 1) / w->bc, row = (r / w->br) * ncb;
        if (w->sfmt == WP_SCALE_E8M0 && (uint32_t)seg == w->bc) {   /* one scale per segment */
            k->dec_e8m0((const uint8_t *)w->scale + row, ws, ns);
            return;
        }
        for (int s = 0; s < ns; s++) {
            uint64_t i = row + (uint64_t)s * seg / w->bc;
            ws[s] = w->sfmt == WP_SCALE_E8M0 ? rt_lut_e8m0[((const uint8_t *)w->scale)[i]]
                                             : ((const float *)w->scale)[i];
        }
        return;
    }
    case WP_ENC_MXFP4: {
        const uint8_t *sc = (const uint8_t *)w->scale + r * (w->cols / 32);
        if (seg == 32) {
            k->dec_e8m0(sc, ws, ns);
            return;
        }
        for (int s = 0; s < ns; s++) ws[s] = rt_lut_e8m0[sc[s * seg / 32]];
        return;
    }
    case WP_ENC_NVFP4: {
        const uint8_t *sc = (const uint8_t *)w->scale + r * (w->cols / 16);
        for (int s = 0; s < ns; s++) ws[s] = rt_lut_e4m3[sc[s * seg / 16]] * w->global;
        return;
    }
    default:
        for (int s = 0; s < ns; s++) ws[s] = 1.0f;   /* a plain weight is its own value */
        return;
    }
}

void rt_weight_row(const rt_kernels *k, const wp_qweight *w, uint64_t r, float *wv, float *ws,
                   int seg)
{
    const int K = (int)w->cols;
    if (ws) weight_scales(k, w, r, ws, seg);
    switch (w->enc) {
    case WP_ENC_BF16: k->dec_bf16((const uint16_t *)w->data + r * w->cols, wv, K); return;
    case WP_ENC_F32: memcpy(wv, (const float *)w->data + r * w->cols, (size_t)K * 4); return;
    case WP_ENC_F16: {
        const uint16_t *p = (const uint16_t *)w->data + r * w->cols;
        for (int i = 0; i < K; i++) wv[i] = wp_f16_to_f32(p[i]);
        return;
    }
    case WP_ENC_FP8: k->dec_e4m3((const uint8_t *)w->data + r * w->cols, wv, K); return;
    case WP_ENC_MXFP4:
    case WP_ENC_NVFP4: k->dec_e2m1((const uint8_t *)w->data + r * (w->cols / 2), wv, K); return;
    case WP_ENC_COUNT: break;
    }
}

void rt_weight_row_f32(const rt_kernels *k, const wp_qweight *w, uint64_t r, float *out)
{
    if (!rt_enc_quantised(w->enc)) {
        rt_weight_row(k, w, r, out, NULL, 1);
        return;
    }
    int seg = rt_weight_seg(w), K = (int)w->cols;
    float ws[K / seg];
    rt_weight_row(k, w, r, out, ws, seg);
    for (int s = 0; s < K / seg; s++)
        for (int i = s * seg; i < (s + 1) * seg; i++) out[i] *= ws[s];
}

void rt_act_quant_rows(const float *x, int M, int K, float *xq, float *xs)
{
    rt_kernel_luts_init();
    const int nb = (K + RT_ACT_BLOCK - 1) / RT_ACT_BLOCK;
    uint8_t q[RT_ACT_BLOCK];
    for (int m = 0; m < M; m++) {
        for (int b = 0; b < nb; b++) {
            int k0 = b * RT_ACT_BLOCK, len = K - k0 < RT_ACT_BLOCK ? K - k0 : RT_ACT_BLOCK;
            uint8_t s;
            /* a short last block is its own block, as the reference's ceil-division */
            wp_act_quant(x + (size_t)m * K + k0, (size_t)len, (size_t)len, q, &s);
            for (int i = 0; i < len; i++) xq[(size_t)m * K + k0 + i] = rt_lut_e4m3[q[i]];
            xs[(size_t)m * nb + b] = wp_e8m0_to_f32(s);
        }
    }
}

/* ---- Linear products ---------------------------------------------------------------------- */

#define RT_NB 4    /* weight rows decoded together: each activation row is reused 4 times */

typedef struct lin_job {
    const rt_kernels *k;
    const wp_qweight *w;
    const float *x, *xs;    /* x: activations (xq codes for quantised products) */
    const uint16_t *xb;     /* the xq codes in bf16 for the bf16 kernels, or NULL */
    int M, K, N, seg, nb, quant;
    uint64_t r0;            /* first weight row */
    int ldy;                /* output row stride */
    float *y;
    atomic_int oom;
} lin_job;

/* Few activation rows (decode): decode fused into the product, the weight
 * row is read once straight from the mapping.  Many rows (prefill): decode
 * RT_NB weight rows once and reuse them for every activation row. */
#define RT_FUSED_MAX_M 2

/* The bf16 kernels serve this product: activation codes given in bf16, and
 * the weight's segment a multiple of what the kernels step by (else both
 * paths fall back to the fp32 kernels, which agree with each other). */
static int bf_ok(const lin_job *j)
{
    if (!j->xb) return 0;
    /* a bf16 weight is its own bf16 operand: the FP8 kernel's loops with scale 1 */
    if (j->w->enc == WP_ENC_FP8 || j->w->enc == WP_ENC_BF16) return j->seg % 64 == 0;
    return (j->w->enc == WP_ENC_MXFP4 || j->w->enc == WP_ENC_NVFP4) && j->seg % 32 == 0;
}

static float fused(const lin_job *j, uint64_t r, const float *xr, const float *xs,
                   const float *ws)
{
    const wp_qweight *w = j->w;
    const int K = j->K;
    if (j->quant) {
        const uint8_t *wr = (const uint8_t *)w->data;
        const uint16_t *xb = bf_ok(j) ? j->xb + (xr - j->x) : NULL;
        if (w->enc == WP_ENC_BF16)      /* fusable only with xb (bf_ok) */
            return j->k->segdot_bf_e4m3(xb, xs, (const uint16_t *)w->data + r * w->cols, ws, K,
                                        j->seg);
        if (w->enc == WP_ENC_FP8)
            return xb ? j->k->qdot_e4m3_bf(wr + r * w->cols, xr, xb, xs, ws, K, j->seg)
                      : j->k->qdot_e4m3(wr + r * w->cols, xr, xs, ws, K, j->seg);
        return xb ? j->k->qdot_e2m1_bf(wr + r * (w->cols / 2), xr, xb, xs, ws, K, j->seg)
                  : j->k->qdot_e2m1(wr + r * (w->cols / 2), xr, xs, ws, K, j->seg);
    }
    if (w->enc == WP_ENC_F32) return j->k->dot(xr, (const float *)w->data + r * w->cols, K);
    if (w->enc == WP_ENC_FP8)   /* dense: dot over the exact values, decoded in registers */
        return j->k->dot_e4m3((const uint8_t *)w->data + r * w->cols, ws, j->seg, xr, K);
    return j->k->dot_bf16((const uint16_t *)w->data + r * w->cols, xr, K);
}

/* Bytes of one weight row in the mapping (0: unknown). */
static size_t row_bytes(const wp_qweight *w)
{
    switch (w->enc) {
    case WP_ENC_FP8: return (size_t)w->cols;
    case WP_ENC_MXFP4:
    case WP_ENC_NVFP4: return (size_t)w->cols / 2;
    case WP_ENC_BF16:
    case WP_ENC_F16: return (size_t)w->cols * 2;
    case WP_ENC_F32: return (size_t)w->cols * 4;
    case WP_ENC_COUNT: break;
    }
    return 0;
}

/* The fused (decode) products read each weight row once, straight from the
 * file mapping, whose pages are 4 KiB: the hardware prefetcher stops at every
 * page boundary, and a 4 KiB FP8 row (or two 2 KiB MXFP4 rows) is exactly
 * one page, so each row would start with cache misses.  A task keeps the
 * next RT_PF_AHEAD bytes of its rows requested while it computes.  A hint:
 * no value changes. */
#define RT_PF_AHEAD 4096
#define RT_PF_LOC 3     /* into every cache level: a non-temporal hint (0) was 1.7x slower */

typedef struct rows_pf {
    const uint8_t *base;
    uint64_t next, end;     /* byte offsets: next line to request, end of the task's rows */
} rows_pf;

static inline void rows_pf_to(rows_pf *pf, uint64_t upto)
{
    if (upto > pf->end) upto = pf->end;
    for (; pf->next < upto; pf->next += 64) __builtin_prefetch(pf->base + pf->next, 0, RT_PF_LOC);
}

static int fusable(const lin_job *j)
{
    wp_enc e = j->w->enc;
    if (j->M > RT_FUSED_MAX_M) return 0;
    if (j->quant)
        return e == WP_ENC_FP8 || e == WP_ENC_MXFP4 || e == WP_ENC_NVFP4 ||
               (e == WP_ENC_BF16 && bf_ok(j));
    return e == WP_ENC_F32 || e == WP_ENC_BF16 || (e == WP_ENC_FP8 && j->seg % 16 == 0);
}

/* many activation rows on the bf16 kernels: RT_NB weight rows decoded to bf16 */
static void lin_task_bf(lin_job *j, int t0, int t1, uint16_t *wb, float *ws)
{
    const int K = j->K, ns = K / j->seg, fp8 = j->w->enc != WP_ENC_MXFP4 && j->w->enc != WP_ENC_NVFP4;
    const wp_qweight *w = j->w;
    for (int t = t0; t < t1; t++) {
        int r0 = t * RT_NB, nr = j->N - r0 < RT_NB ? j->N - r0 : RT_NB;
        for (int i = 0; i < nr; i++) {
            uint64_t r = j->r0 + (uint64_t)(r0 + i);
            weight_scales(j->k, w, r, ws + (size_t)i * ns, j->seg);
            if (w->enc == WP_ENC_BF16)
                memcpy(wb + (size_t)i * K, (const uint16_t *)w->data + r * w->cols, (size_t)K * 2);
            else if (fp8) j->k->dec_e4m3_bf((const uint8_t *)w->data + r * w->cols, wb + (size_t)i * K, K);
            else j->k->dec_e2m1_bf((const uint8_t *)w->data + r * (w->cols / 2), wb + (size_t)i * K, K);
        }
        for (int m = 0; m < j->M; m++) {
            const uint16_t *xr = j->xb + (size_t)m * K;
            const float *xs = j->xs + (size_t)m * j->nb;
            float *yr = j->y + (size_t)m * j->ldy + r0;
            for (int i = 0; i < nr; i++)
                yr[i] = (fp8 ? j->k->segdot_bf_e4m3 : j->k->segdot_bf_e2m1)(
                    xr, xs, wb + (size_t)i * K, ws + (size_t)i * ns, K, j->seg);
        }
    }
}

static void lin_task(void *ctx, int t0, int t1)
{
    lin_job *j = ctx;
    const int K = j->K, ns = K / j->seg, fuse = fusable(j);
    /* the kernels that request their rows themselves (k->prefetches_rows): the
     * bf16 products, the dense FP8 and the dense bf16 ones */
    const int self_pf = fuse && j->k->prefetches_rows &&
                        (j->quant ? bf_ok(j) && j->w->enc != WP_ENC_BF16
                                  : j->w->enc == WP_ENC_FP8 || j->w->enc == WP_ENC_BF16);
    const size_t rb = fuse && !self_pf ? row_bytes(j->w) : 0;
    rows_pf pf = {0};
    if (rb) {
        const uint64_t rend = j->r0 + (uint64_t)(t1 * RT_NB < j->N ? t1 * RT_NB : j->N);
        pf = (rows_pf){(const uint8_t *)j->w->data, (j->r0 + (uint64_t)t0 * RT_NB) * rb, rend * rb};
        pf.next &= ~(uint64_t)63;
    }
    if (!fuse && j->quant && bf_ok(j)) {
        uint16_t *wb = malloc(sizeof(uint16_t) * (size_t)RT_NB * K);
        float *ws = malloc(sizeof(float) * ((size_t)RT_NB * ns + 1));
        if (wb && ws) lin_task_bf(j, t0, t1, wb, ws);
        else atomic_store(&j->oom, 1);
        free(wb);
        free(ws);
        return;
    }
    const size_t nwv = fuse ? 0 : (size_t)RT_NB * K;
    float *wv = malloc(sizeof(float) * (nwv + (size_t)RT_NB * ns + 1));
    if (!wv) {
        atomic_store(&j->oom, 1);
        return;
    }
    float *ws = wv + nwv;
    /* An FP8 weight's rows share their scales in blocks of br rows: the fused
     * path decodes them once per block, not once per row (the same values) */
    const int blk_scales = j->w->enc == WP_ENC_FP8 && j->w->br > 0;
    uint64_t ws_blk = UINT64_MAX;
    for (int t = t0; t < t1; t++) {
        int r0 = t * RT_NB, nr = j->N - r0 < RT_NB ? j->N - r0 : RT_NB;
        if (fuse) {
            for (int i = 0; i < nr; i++) {
                uint64_t r = j->r0 + (uint64_t)(r0 + i);
                if (rb) rows_pf_to(&pf, (r + 1) * rb + RT_PF_AHEAD);
                if (blk_scales) {
                    if (r / j->w->br != ws_blk) {
                        ws_blk = r / j->w->br;
                        weight_scales(j->k, j->w, r, ws, j->seg);
                    }
                } else if (j->quant || j->w->enc == WP_ENC_FP8) {
                    weight_scales(j->k, j->w, r, ws, j->seg);
                }
                for (int m = 0; m < j->M; m++)
                    j->y[(size_t)m * j->ldy + r0 + i] =
                        fused(j, r, j->x + (size_t)m * K, j->xs + (size_t)m * j->nb, ws);
            }
            continue;
        }
        for (int i = 0; i < nr; i++) {
            uint64_t r = j->r0 + (uint64_t)(r0 + i);
            if (j->quant)
                rt_weight_row(j->k, j->w, r, wv + (size_t)i * K, ws + (size_t)i * ns, j->seg);
            else if (j->w->enc == WP_ENC_F32)
                ;   /* read in place below */
            else
                rt_weight_row_f32(j->k, j->w, r, wv + (size_t)i * K);
        }
        for (int m = 0; m < j->M; m++) {
            const float *xr = j->x + (size_t)m * K;
            float *yr = j->y + (size_t)m * j->ldy + r0;
            for (int i = 0; i < nr; i++) {
                if (j->quant)
                    yr[i] = j->k->segdot(xr, j->xs + (size_t)m * j->nb, wv + (size_t)i * K,
                                         ws + (size_t)i * ns, K, j->seg);
                else if (j->w->enc == WP_ENC_F32)
                    yr[i] = j->k->dot(xr, (const float *)j->w->data + (j->r0 + r0 + i) * K, K);
                else
                    yr[i] = j->k->dot(xr, wv + (size_t)i * K, K);
            }
        }
    }
    free(wv);
}

static int lin_run(const rt_ctx *c, lin_job *j)
{
    atomic_init(&j->oom, 0);
    int tiles = (j->N + RT_NB - 1) / RT_NB;
    double work = (double)j->M * j->N * j->K;
    rt_pool_for_work(c->pool, tiles, 1, work, lin_task, j);
    return atomic_load(&j->oom) ? WP_ENOMEM : 0;
}

/* Several products as one pool job: tiles numbered across the jobs. */
typedef struct lin_many {
    lin_job *j;
    const int *t0;     /* first global tile of each job; t0[n] = total */
    int n;
} lin_many;

static void lin_many_task(void *ctx, int i0, int i1)
{
    lin_many *lm = ctx;
    int a = 0;
    while (lm->t0[a + 1] <= i0) a++;
    for (; a < lm->n && lm->t0[a] < i1; a++) {
        int lo = i0 > lm->t0[a] ? i0 : lm->t0[a], hi = i1 < lm->t0[a + 1] ? i1 : lm->t0[a + 1];
        if (lo < hi) lin_task(&lm->j[a], lo - lm->t0[a], hi - lm->t0[a]);
    }
}

int rt_linear_many(const rt_ctx *c, const rt_lin_spec *sp, int n)
{
    if (n <= 0) return 0;
    if (c->flags & WP_RT_ENC_DISPATCH) {        /* rare: the plain products one by one */
        for (int i = 0; i < n; i++) {
            int rc = rt_linear(c, sp[i].w, sp[i].x, sp[i].M, sp[i].y);
            if (rc) return rc;
        }
        return 0;
    }
    /* per job: the quantised activations (xq, xs) and their bf16 copy (xb);
     * a job whose input is the previous job's (w1 and w3) shares them */
    size_t fl = 0, hb = 0;
    for (int i = 0; i < n; i++) {
        const size_t K = sp[i].w->cols, nb = (K + RT_ACT_BLOCK - 1) / RT_ACT_BLOCK;
        fl += (size_t)sp[i].M * (K + nb);
        hb += (size_t)sp[i].M * K;
    }
    lin_job *jobs = calloc((size_t)n, sizeof *jobs);
    int *t0 = malloc(sizeof(int) * ((size_t)n + 1));
    float *xq = malloc(sizeof(float) * (fl + 1));
    uint16_t *xb = c->k->qdot_e4m3_bf ? malloc(sizeof(uint16_t) * (hb + 1)) : NULL;
    int rc = 0;
    if (!jobs || !t0 || !xq || (c->k->qdot_e4m3_bf && !xb)) {
        rc = WP_ENOMEM;
        goto out;
    }
    float *fp = xq;
    uint16_t *hp = xb;
    double work = 0;
    t0[0] = 0;
    for (int i = 0; i < n; i++) {
        const wp_qweight *w = sp[i].w;
        const int K = (int)w->cols, M = sp[i].M, nb = (K + RT_ACT_BLOCK - 1) / RT_ACT_BLOCK;
        lin_job *j = &jobs[i];
        *j = (lin_job){.k = c->k, .w = w, .M = M, .K = K, .N = (int)w->rows,
                       .seg = rt_weight_seg(w), .nb = nb, .quant = 1, .ldy = (int)w->rows,
                       .y = sp[i].y};
        atomic_init(&j->oom, 0);
        if (i > 0 && sp[i].x == sp[i - 1].x && M == sp[i - 1].M && K == jobs[i - 1].K) {
            j->x = jobs[i - 1].x;
            j->xs = jobs[i - 1].xs;
            j->xb = xb ? hp - (size_t)M * K : NULL;
        } else {
            float *q = fp, *qs = fp + (size_t)M * K;
            fp += (size_t)M * (K + nb);
            rt_act_quant_rows(sp[i].x, M, K, q, qs);
            j->x = q;
            j->xs = qs;
            if (xb) {
                for (size_t k = 0; k < (size_t)M * K; k++) {   /* exact: E4M3 fits bf16 */
                    uint32_t u;
                    memcpy(&u, &q[k], 4);
                    hp[k] = (uint16_t)(u >> 16);
                }
                j->xb = hp;
                hp += (size_t)M * K;
            }
        }
        if (!rt_enc_quantised(w->enc) && w->enc != WP_ENC_BF16) j->xb = NULL;   /* as rt_linear */
        t0[i + 1] = t0[i] + (j->N + RT_NB - 1) / RT_NB;
        work += (double)M * j->N * K;
    }
    lin_many lm = {jobs, t0, n};
    rt_pool_for_work(c->pool, t0[n], 1, work, lin_many_task, &lm);
    for (int i = 0; i < n && !rc; i++)
        if (atomic_load(&jobs[i].oom)) rc = WP_ENOMEM;
    for (int i = 0; i < n && !rc; i++) rt_round(c, sp[i].y, (size_t)sp[i].M * sp[i].w->rows);
out:
    free(jobs);
    free(t0);
    free(xq);
    free(xb);
    return rc;
}

/* A dense site (no activation quantisation) sums x . w over the weight's
 * values whatever their storage: a quantised weight's row is decoded to its
 * exact fp32 values (code x power-of-two scale) and takes the same dot kernel
 * as a bf16/f32 row (dot_bf16 does the FMAs of dot over the decoded row), so
 * the same values give the same bits in any encoding. */
int rt_linear_dense_many(const rt_ctx *c, const rt_lin_spec *sp, int n)
{
    if (n <= 0) return 0;
    lin_job *jobs = calloc((size_t)n, sizeof *jobs);
    int *t0 = malloc(sizeof(int) * ((size_t)n + 1));
    int rc = 0;
    if (!jobs || !t0) {
        rc = WP_ENOMEM;
        goto out;
    }
    double work = 0;
    t0[0] = 0;
    for (int i = 0; i < n; i++) {
        const wp_qweight *w = sp[i].w;
        const int K = (int)w->cols, nr = sp[i].nr ? sp[i].nr : (int)w->rows;
        lin_job *j = &jobs[i];
        *j = (lin_job){.k = c->k, .w = w, .x = sp[i].x, .M = sp[i].M, .K = K, .N = nr,
                       .seg = rt_weight_seg(w), .r0 = sp[i].r0, .ldy = sp[i].ldy ? sp[i].ldy : nr, .y = sp[i].y};
        atomic_init(&j->oom, 0);
        t0[i + 1] = t0[i] + (nr + RT_NB - 1) / RT_NB;
        work += (double)sp[i].M * nr * K;
    }
    lin_many lm = {jobs, t0, n};
    rt_pool_for_work(c->pool, t0[n], 1, work, lin_many_task, &lm);
    for (int i = 0; i < n && !rc; i++)
        if (atomic_load(&jobs[i].oom)) rc = WP_ENOMEM;
out:
    free(jobs);
    free(t0);
    return rc;
}

int rt_linear_dense_rows(const rt_ctx *c, const wp_qweight *w, uint64_t r0, int nr,
                         const float *x, int M, float *y, int ldy)
{
    lin_job j = {.k = c->k, .w = w, .x = x, .M = M, .K = (int)w->cols, .N = nr, .seg = rt_weight_seg(w),
                 .r0 = r0, .ldy = ldy, .y = y};
    return lin_run(c, &j);
}

int rt_linear_dense(const rt_ctx *c, const wp_qweight *w, const float *x, int M, float *y)
{
    return rt_linear_dense_rows(c, w, 0, (int)w->rows, x, M, y, (int)w->rows);
}

int rt_linear(const rt_ctx *c, const wp_qweight *w, const float *x, int M, float *y)
{
    int rc;
    if (!rt_enc_quantised(w->enc) && (c->flags & WP_RT_ENC_DISPATCH)) {
        rc = rt_linear_dense(c, w, x, M, y);
    } else {
        const int K = (int)w->cols, nb = (K + RT_ACT_BLOCK - 1) / RT_ACT_BLOCK;
        float *xq = malloc(sizeof(float) * ((size_t)M * K + (size_t)M * nb));
        if (!xq) return WP_ENOMEM;
        float *xs = xq + (size_t)M * K;
        rt_act_quant_rows(x, M, K, xq, xs);
        lin_job j = {.k = c->k, .w = w, .x = xq, .xs = xs, .M = M, .K = K, .N = (int)w->rows,
                     .seg = rt_weight_seg(w), .nb = nb, .quant = 1, .ldy = (int)w->rows,
                     .y = y};
        uint16_t *xb = NULL;
        if (c->k->qdot_e4m3_bf && (rt_enc_quantised(w->enc) || w->enc == WP_ENC_BF16)) {
            if (!(xb = malloc(sizeof(uint16_t) * (size_t)M * K))) {
                free(xq);
                return WP_ENOMEM;
            }
            for (size_t i = 0; i < (size_t)M * K; i++) {    /* exact: E4M3 values fit bf16 */
                uint32_t u;
                memcpy(&u, &xq[i], 4);
                xb[i] = (uint16_t)(u >> 16);
            }
            j.xb = xb;
        }
        rc = lin_run(c, &j);
        free(xb);
        free(xq);
    }
    rt_round(c, y, (size_t)M * w->rows);
    return rc;
}
