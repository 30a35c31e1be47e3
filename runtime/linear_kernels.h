/*
 * linear_kernels.h — what the kernel sets share, private to runtime/linear*.c.
 *
 *   linear.c          the driver: picks a set for this CPU, decodes weight
 *                     rows, quantises activations, runs the products on the pool
 *   linear_scalar.c   the scalar set: the reference the vector sets are tested against
 *   linear_avx2.c     AVX2 + FMA (+ F16C)
 *   linear_avx512.c   AVX-512F, and AVX-512 with BF16 + VBMI
 *
 * Every vector kernel carries its instruction set as a per-function target
 * attribute (one set of CFLAGS builds the whole folder), and is called only
 * through its rt_kernels table, after the driver has checked the CPU.
 */
#ifndef WP_RT_LINEAR_KERNELS_H
#define WP_RT_LINEAR_KERNELS_H

#include <immintrin.h>
#include <stdint.h>

#include "runtime/internal.h"

#define RT_AVX2 __attribute__((target("avx2,fma,f16c")))
#define RT_AVX512 __attribute__((target("avx512f,avx2,fma,f16c")))
#define RT_AVX512BF __attribute__((target("avx512f,avx512bw,avx512vbmi,avx512bf16,avx2,fma,f16c")))

/* The decode-product kernels of the AVX-512 BF16 set request the weight row
 * RT_PF_DIST bytes ahead of the 64 they are about to read, one cache line per
 * 64 bytes consumed, so the requests are spread over the arithmetic instead of
 * issued in a burst per row (a burst fills the line-fill buffers and the core
 * waits at it).  Prefetches never fault, so one that runs past the weight's
 * end (at most RT_PF_DIST bytes) is harmless; no value depends on them. */
#ifndef RT_PF_DIST
#define RT_PF_DIST 4096
#endif
#define RT_PF_ROW(p) _mm_prefetch((const char *)(p) + RT_PF_DIST, _MM_HINT_T0)

/* Code -> fp32 tables (linear_scalar.c), filled once by rt_kernel_luts_init. */
extern float rt_lut_e4m3[256];
extern float rt_lut_e2m1[16];
extern float rt_lut_e8m0[256];
void rt_kernel_luts_init(void);

/* The sets (one per file), and the AVX-512 BF16 set's byte tables, built from
 * rt_lut_e4m3 / rt_lut_e2m1 (call after rt_kernel_luts_init). */
extern const rt_kernels rt_k_scalar, rt_k_avx2, rt_k_avx512, rt_k_avx512bf;
void rt_kernel_bf_tables_init(void);

/* ---- Scalar block-scaled sums -------------------------------------------------------
 * Defined here, not in linear_scalar.c, because the AVX2 kernels fall back to
 * them for segments that are not a multiple of 8 and have always compiled
 * them inside their own target: a compiler that contracts a * b + c into an
 * FMA where the target has one (clang does by default) gives the fallback
 * other bits than an out-of-line scalar copy would.  Each file that uses them
 * gets its own copy, compiled for its own target, as before the split. */

static inline float rt_segdot_scalar(const float *xq, const float *xs, const float *wv,
                                     const float *ws, int K, int seg)
{
    float c = 0;
    for (int s = 0, k0 = 0; k0 < K; s++, k0 += seg) {
        float p = 0;
        for (int k = k0; k < k0 + seg; k++) p += xq[k] * wv[k];
        c += xs[k0 / RT_ACT_BLOCK] * ws[s] * p;
    }
    return c;
}

static inline float rt_qdot_e4m3_scalar(const uint8_t *w, const float *xq, const float *xs,
                                        const float *ws, int K, int seg)
{
    float c = 0;
    for (int s = 0, k0 = 0; k0 < K; s++, k0 += seg) {
        float p = 0;
        for (int k = k0; k < k0 + seg; k++) p += xq[k] * rt_lut_e4m3[w[k]];
        c += xs[k0 / RT_ACT_BLOCK] * ws[s] * p;
    }
    return c;
}

static inline float rt_qdot_e2m1_scalar(const uint8_t *w, const float *xq, const float *xs,
                                        const float *ws, int K, int seg)
{
    float c = 0;
    for (int s = 0, k0 = 0; k0 < K; s++, k0 += seg) {
        float p = 0;
        for (int k = k0; k < k0 + seg; k++)
            p += xq[k] * rt_lut_e2m1[k & 1 ? w[k / 2] >> 4 : w[k / 2] & 15];
        c += xs[k0 / RT_ACT_BLOCK] * ws[s] * p;
    }
    return c;
}

/* axpy's scalar form: two statements, so no compiler contracts them into a
 * fused multiply-add whatever the target (the vector sets' tails use it too) */
static inline void rt_axpy_scalar(float *o, float a, const float *x, int n)
{
    for (int i = 0; i < n; i++) {
        const float t = a * x[i];
        o[i] += t;
    }
}

/* Scalar decoders (linear_scalar.c): the vector decoders' tails. */
void rt_dec_e4m3_scalar(const uint8_t *c, float *out, int n);
void rt_dec_e2m1_scalar(const uint8_t *c, float *out, int n);
void rt_dec_bf16_scalar(const uint16_t *c, float *out, int n);
void rt_dec_e8m0_scalar(const uint8_t *c, float *out, int n);

/* ---- AVX2 pieces the AVX-512 kernels fall back to (linear_avx2.c) ------------------- */

/* E4M3 -> fp32 through F16C yields the value / 256 (linear_avx2.c); the
 * kernels fold this factor into their scales. */
#define RT_E4M3_HALF_SCALE 256.0f

RT_AVX2 static inline int rt_any_nan(__m128i nan) { return !_mm_testz_si128(nan, nan); }

RT_AVX2 float rt_segdot_avx2(const float *xq, const float *xs, const float *wv, const float *ws,
                             int K, int seg);
RT_AVX2 float rt_qdot_e4m3_avx2(const uint8_t *w, const float *xq, const float *xs,
                                const float *ws, int K, int seg);
RT_AVX2 float rt_qdot_e2m1_avx2(const uint8_t *w, const float *xq, const float *xs,
                                const float *ws, int K, int seg);
RT_AVX2 void rt_dec_e4m3_avx2(const uint8_t *c, float *out, int n);
RT_AVX2 void rt_dec_e2m1_avx2(const uint8_t *c, float *out, int n);
RT_AVX2 void rt_dec_bf16_avx2(const uint16_t *c, float *out, int n);
RT_AVX2 void rt_dec_e8m0_avx2(const uint8_t *c, float *out, int n);

#endif
