/*
 * linear.c — the runtime's kernels: weight-row decoding for every wp_enc, the
 * reference's activation quantisation, and the linear products of spec §3.8.
 *
 * An FP8/FP4 linear is computed the way the reference GEMM defines it:
 * C[m,n] = sum over K-segments s of (xs * ws) * P_s, where P_s is the fp32
 * sum of the products of the FP8 activation codes and the FP8/FP4 weight
 * codes within the segment.  A segment is the largest run on which both
 * scales are constant: 128 for 128x128 FP8, 32 for MXFP4 and 32x32 FP8, 16
 * for NVFP4.  Products of two E4M3 (or E4M3 x E2M1) values are exact in fp32,
 * so only the summation order differs from the GPU (spec §4.13).
 *
 * Vector kernels (AVX2+FMA, AVX-512F) are chosen at run time with
 * __builtin_cpu_supports; the scalar set is their reference in the tests.
 */
#include <cpuid.h>
#include <immintrin.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/internal.h"

/* ---- Scalar kernels ----------------------------------------------------------------- */

static float lut_e4m3[256];
static float lut_e2m1[16];
static float lut_e8m0[256];
static pthread_once_t lut_once = PTHREAD_ONCE_INIT;

static void lut_init(void)
{
    for (int i = 0; i < 256; i++) lut_e4m3[i] = wp_e4m3_to_f32((uint8_t)i);
    for (int i = 0; i < 16; i++) lut_e2m1[i] = wp_e2m1_to_f32((uint8_t)i);
    for (int i = 0; i < 256; i++) lut_e8m0[i] = wp_e8m0_to_f32((uint8_t)i);
}

static float dot_scalar(const float *a, const float *b, int n)
{
    float s = 0;
    for (int i = 0; i < n; i++) s += a[i] * b[i];
    return s;
}

static float segdot_scalar(const float *xq, const float *xs, const float *wv, const float *ws,
                           int K, int seg)
{
    float c = 0;
    for (int s = 0, k0 = 0; k0 < K; s++, k0 += seg) {
        float p = 0;
        for (int k = k0; k < k0 + seg; k++) p += xq[k] * wv[k];
        c += xs[k0 / RT_ACT_BLOCK] * ws[s] * p;
    }
    return c;
}

static float qdot_e4m3_scalar(const uint8_t *w, const float *xq, const float *xs, const float *ws,
                              int K, int seg)
{
    float c = 0;
    for (int s = 0, k0 = 0; k0 < K; s++, k0 += seg) {
        float p = 0;
        for (int k = k0; k < k0 + seg; k++) p += xq[k] * lut_e4m3[w[k]];
        c += xs[k0 / RT_ACT_BLOCK] * ws[s] * p;
    }
    return c;
}

static float qdot_e2m1_scalar(const uint8_t *w, const float *xq, const float *xs, const float *ws,
                              int K, int seg)
{
    float c = 0;
    for (int s = 0, k0 = 0; k0 < K; s++, k0 += seg) {
        float p = 0;
        for (int k = k0; k < k0 + seg; k++)
            p += xq[k] * lut_e2m1[k & 1 ? w[k / 2] >> 4 : w[k / 2] & 15];
        c += xs[k0 / RT_ACT_BLOCK] * ws[s] * p;
    }
    return c;
}

static float dot_bf16_scalar(const uint16_t *w, const float *x, int n)
{
    float s = 0;
    for (int i = 0; i < n; i++) s += x[i] * wp_bf16_to_f32(w[i]);
    return s;
}

static void dec_e4m3_scalar(const uint8_t *c, float *out, int n)
{
    for (int i = 0; i < n; i++) out[i] = lut_e4m3[c[i]];
}

static void dec_e2m1_scalar(const uint8_t *c, float *out, int n)
{
    for (int i = 0; i < n / 2; i++) {       /* spec §3.4: low nibble = even element */
        out[2 * i] = lut_e2m1[c[i] & 15];
        out[2 * i + 1] = lut_e2m1[c[i] >> 4];
    }
}

static void dec_bf16_scalar(const uint16_t *c, float *out, int n)
{
    for (int i = 0; i < n; i++) out[i] = wp_bf16_to_f32(c[i]);
}

static void dec_e8m0_scalar(const uint8_t *c, float *out, int n)
{
    for (int i = 0; i < n; i++) out[i] = lut_e8m0[c[i]];
}

static const rt_kernels k_scalar = {
    "scalar", dot_scalar, segdot_scalar, qdot_e4m3_scalar, qdot_e2m1_scalar, dot_bf16_scalar,
    dec_e4m3_scalar, dec_e2m1_scalar, dec_bf16_scalar, dec_e8m0_scalar, NULL, NULL,
    NULL, NULL, NULL, NULL,
};

/* ---- AVX2 + FMA ----------------------------------------------------------------------- */

#define AVX2 __attribute__((target("avx2,fma,f16c")))

AVX2 static float hsum256(__m256 v)
{
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* E4M3 -> fp32 in a few integer ops and one conversion: the byte moved to
 * the top of a 16-bit lane and shifted right arithmetically puts the sign at
 * bit 15 and the 7 magnitude bits at 13..7, which read as an IEEE half is
 * exactly the E4M3 value / 256 (normals and subnormals alike, spec §3.2);
 * F16C widens it and the caller folds the 256 into its scale.  NaN codes
 * (0x7F/0xFF) are reported through *nan rather than decoded. */
#define E4M3_HALF_SCALE 256.0f

AVX2 static inline __m256 e4m3x8h(const uint8_t *c, __m128i *nan)
{
    __m128i b = _mm_loadl_epi64((const __m128i *)c);
    *nan = _mm_or_si128(*nan, _mm_cmpeq_epi8(_mm_or_si128(b, _mm_set1_epi8((char)0x80)),
                                             _mm_set1_epi8((char)0xFF)));
    __m128i w = _mm_srai_epi16(_mm_slli_epi16(_mm_cvtepu8_epi16(b), 8), 1);
    return _mm256_cvtph_ps(_mm_and_si128(w, _mm_set1_epi16((short)0xBF80)));
}

AVX2 static inline int any_nan(__m128i nan) { return !_mm_testz_si128(nan, nan); }

/* the exact E4M3 value, NaN included (decoders) */
AVX2 static inline __m256 e4m3x8(const uint8_t *c)
{
    __m128i nan = _mm_setzero_si128();
    __m256 f = _mm256_mul_ps(e4m3x8h(c, &nan), _mm256_set1_ps(E4M3_HALF_SCALE));
    __m256 m = _mm256_castsi256_ps(_mm256_cvtepi8_epi32(nan));
    return _mm256_blendv_ps(f, _mm256_set1_ps(__builtin_nanf("")), m);
}

/* 8 E2M1 values from 4 bytes, low nibble first */
AVX2 static inline __m256 e2m1x8(const uint8_t *c)
{
    const __m256 tab = _mm256_setr_ps(0.f, .5f, 1.f, 1.5f, 2.f, 3.f, 4.f, 6.f);
    uint32_t w;
    memcpy(&w, c, 4);
    __m256i v = _mm256_srlv_epi32(_mm256_set1_epi32((int)w),
                                  _mm256_setr_epi32(0, 4, 8, 12, 16, 20, 24, 28));
    __m256 f = _mm256_permutevar8x32_ps(tab, _mm256_and_si256(v, _mm256_set1_epi32(7)));
    __m256i sign = _mm256_slli_epi32(_mm256_and_si256(v, _mm256_set1_epi32(8)), 28);
    return _mm256_or_ps(f, _mm256_castsi256_ps(sign));
}

AVX2 static inline __m256 bf16x8(const uint16_t *c)
{
    __m256i v = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)c));
    return _mm256_castsi256_ps(_mm256_slli_epi32(v, 16));
}

AVX2 static float dot_avx2(const float *a, const float *b, int n)
{
    __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
    int i = 0;
    for (; i + 16 <= n; i += 16) {
        s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
        s1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8), s1);
    }
    for (; i + 8 <= n; i += 8)
        s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
    float s = hsum256(_mm256_add_ps(s0, s1));
    for (; i < n; i++) s += a[i] * b[i];
    return s;
}

AVX2 static float segdot_avx2(const float *xq, const float *xs, const float *wv, const float *ws,
                              int K, int seg)
{
    if (seg % 8) return segdot_scalar(xq, xs, wv, ws, K, seg);
    __m256 acc = _mm256_setzero_ps();
    for (int s = 0, k0 = 0; k0 < K; s++, k0 += seg) {
        __m256 p = _mm256_setzero_ps();
        for (int k = k0; k < k0 + seg; k += 8)
            p = _mm256_fmadd_ps(_mm256_loadu_ps(xq + k), _mm256_loadu_ps(wv + k), p);
        acc = _mm256_fmadd_ps(p, _mm256_set1_ps(xs[k0 / RT_ACT_BLOCK] * ws[s]), acc);
    }
    return hsum256(acc);
}

/* The fused products do the same FMAs in the same order as segdot over the
 * decoded row, so both paths give the same bits (tested). */
AVX2 static float qdot_e4m3_avx2(const uint8_t *w, const float *xq, const float *xs,
                                 const float *ws, int K, int seg)
{
    if (seg % 8) return qdot_e4m3_scalar(w, xq, xs, ws, K, seg);
    __m256 acc = _mm256_setzero_ps();
    __m128i nan = _mm_setzero_si128();
    for (int s = 0, k0 = 0; k0 < K; s++, k0 += seg) {
        __m256 p = _mm256_setzero_ps();
        for (int k = k0; k < k0 + seg; k += 8)
            p = _mm256_fmadd_ps(_mm256_loadu_ps(xq + k), e4m3x8h(w + k, &nan), p);
        acc = _mm256_fmadd_ps(p, _mm256_set1_ps(xs[k0 / RT_ACT_BLOCK] * ws[s] * E4M3_HALF_SCALE),
                              acc);
    }
    return any_nan(nan) ? __builtin_nanf("") : hsum256(acc);
}

AVX2 static float qdot_e2m1_avx2(const uint8_t *w, const float *xq, const float *xs,
                                 const float *ws, int K, int seg)
{
    if (seg % 8) return qdot_e2m1_scalar(w, xq, xs, ws, K, seg);
    __m256 acc = _mm256_setzero_ps();
    for (int s = 0, k0 = 0; k0 < K; s++, k0 += seg) {
        __m256 p = _mm256_setzero_ps();
        for (int k = k0; k < k0 + seg; k += 8)
            p = _mm256_fmadd_ps(_mm256_loadu_ps(xq + k), e2m1x8(w + k / 2), p);
        acc = _mm256_fmadd_ps(p, _mm256_set1_ps(xs[k0 / RT_ACT_BLOCK] * ws[s]), acc);
    }
    return hsum256(acc);
}

AVX2 static float dot_bf16_avx2(const uint16_t *w, const float *x, int n)
{
    __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
    int i = 0;
    for (; i + 16 <= n; i += 16) {
        s0 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i), bf16x8(w + i), s0);
        s1 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i + 8), bf16x8(w + i + 8), s1);
    }
    for (; i + 8 <= n; i += 8) s0 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i), bf16x8(w + i), s0);
    float s = hsum256(_mm256_add_ps(s0, s1));
    for (; i < n; i++) s += x[i] * wp_bf16_to_f32(w[i]);
    return s;
}

AVX2 static void dec_e4m3_avx2(const uint8_t *c, float *out, int n)
{
    int i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(out + i, e4m3x8(c + i));
    dec_e4m3_scalar(c + i, out + i, n - i);
}

AVX2 static void dec_e2m1_avx2(const uint8_t *c, float *out, int n)
{
    int i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(out + i, e2m1x8(c + i / 2));
    dec_e2m1_scalar(c + i / 2, out + i, n - i);
}

AVX2 static void dec_bf16_avx2(const uint16_t *c, float *out, int n)
{
    int i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(out + i, bf16x8(c + i));
    dec_bf16_scalar(c + i, out + i, n - i);
}

/* E8M0 -> fp32: the code is the fp32 exponent field; 0 is 2^-127 (an fp32
 * subnormal) and 0xFF is NaN (spec §3.3) */
AVX2 static void dec_e8m0_avx2(const uint8_t *c, float *out, int n)
{
    int i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256i v = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(c + i)));
        __m256i f = _mm256_slli_epi32(v, 23);
        f = _mm256_blendv_epi8(f, _mm256_set1_epi32(0x00400000),
                               _mm256_cmpeq_epi32(v, _mm256_setzero_si256()));
        f = _mm256_blendv_epi8(f, _mm256_set1_epi32(0x7FC00000),
                               _mm256_cmpeq_epi32(v, _mm256_set1_epi32(0xFF)));
        _mm256_storeu_si256((__m256i *)(out + i), f);
    }
    dec_e8m0_scalar(c + i, out + i, n - i);
}

static const rt_kernels k_avx2 = {
    "avx2", dot_avx2, segdot_avx2, qdot_e4m3_avx2, qdot_e2m1_avx2, dot_bf16_avx2,
    dec_e4m3_avx2, dec_e2m1_avx2, dec_bf16_avx2, dec_e8m0_avx2, NULL, NULL,
    NULL, NULL, NULL, NULL,
};

/* ---- AVX-512F -------------------------------------------------------------------------- */

#define AVX512 __attribute__((target("avx512f,avx2,fma,f16c")))

AVX512 static inline __m512 e4m3x16h(const uint8_t *c, __m128i *nan)
{
    __m128i b = _mm_loadu_si128((const __m128i *)c);
    *nan = _mm_or_si128(*nan, _mm_cmpeq_epi8(_mm_or_si128(b, _mm_set1_epi8((char)0x80)),
                                             _mm_set1_epi8((char)0xFF)));
    __m256i w = _mm256_srai_epi16(_mm256_slli_epi16(_mm256_cvtepu8_epi16(b), 8), 1);
    return _mm512_cvtph_ps(_mm256_and_si256(w, _mm256_set1_epi16((short)0xBF80)));
}

AVX512 static inline __m512 e4m3x16(const uint8_t *c)
{
    __m128i nan = _mm_setzero_si128();
    __m512 f = _mm512_mul_ps(e4m3x16h(c, &nan), _mm512_set1_ps(E4M3_HALF_SCALE));
    __mmask16 m = _mm512_test_epi32_mask(_mm512_cvtepi8_epi32(nan), _mm512_cvtepi8_epi32(nan));
    return _mm512_mask_blend_ps(m, f, _mm512_set1_ps(__builtin_nanf("")));
}

/* 16 E2M1 values from 8 bytes: byte j into 64-bit lane j, its high nibble
 * moved to bit 32, so each 32-bit lane holds one nibble in order */
AVX512 static inline __m512 e2m1x16(const uint8_t *c)
{
    const __m512 tab = _mm512_setr_ps(0.f, .5f, 1.f, 1.5f, 2.f, 3.f, 4.f, 6.f, -0.f, -.5f, -1.f,
                                      -1.5f, -2.f, -3.f, -4.f, -6.f);
    __m512i w = _mm512_cvtepu8_epi64(_mm_loadl_epi64((const __m128i *)c));
    __m512i v = _mm512_and_si512(_mm512_or_si512(w, _mm512_slli_epi64(w, 28)),
                                 _mm512_set1_epi32(15));
    return _mm512_permutexvar_ps(v, tab);
}

AVX512 static inline __m512 bf16x16(const uint16_t *c)
{
    __m512i v = _mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)c));
    return _mm512_castsi512_ps(_mm512_slli_epi32(v, 16));
}

AVX512 static float dot_avx512(const float *a, const float *b, int n)
{
    __m512 s0 = _mm512_setzero_ps(), s1 = _mm512_setzero_ps();
    int i = 0;
    for (; i + 32 <= n; i += 32) {
        s0 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i), s0);
        s1 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i + 16), _mm512_loadu_ps(b + i + 16), s1);
    }
    for (; i + 16 <= n; i += 16)
        s0 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i), s0);
    float s = _mm512_reduce_add_ps(_mm512_add_ps(s0, s1));
    for (; i < n; i++) s += a[i] * b[i];
    return s;
}

AVX512 static float segdot_avx512(const float *xq, const float *xs, const float *wv,
                                  const float *ws, int K, int seg)
{
    if (seg % 16) return segdot_avx2(xq, xs, wv, ws, K, seg);
    __m512 acc = _mm512_setzero_ps();
    for (int s = 0, k0 = 0; k0 < K; s++, k0 += seg) {
        __m512 p = _mm512_setzero_ps();
        for (int k = k0; k < k0 + seg; k += 16)
            p = _mm512_fmadd_ps(_mm512_loadu_ps(xq + k), _mm512_loadu_ps(wv + k), p);
        acc = _mm512_fmadd_ps(p, _mm512_set1_ps(xs[k0 / RT_ACT_BLOCK] * ws[s]), acc);
    }
    return _mm512_reduce_add_ps(acc);
}

AVX512 static float qdot_e4m3_avx512(const uint8_t *w, const float *xq, const float *xs,
                                     const float *ws, int K, int seg)
{
    if (seg % 16) return qdot_e4m3_avx2(w, xq, xs, ws, K, seg);
    __m512 acc = _mm512_setzero_ps();
    __m128i nan = _mm_setzero_si128();
    for (int s = 0, k0 = 0; k0 < K; s++, k0 += seg) {
        __m512 p = _mm512_setzero_ps();
        for (int k = k0; k < k0 + seg; k += 16)
            p = _mm512_fmadd_ps(_mm512_loadu_ps(xq + k), e4m3x16h(w + k, &nan), p);
        acc = _mm512_fmadd_ps(p, _mm512_set1_ps(xs[k0 / RT_ACT_BLOCK] * ws[s] * E4M3_HALF_SCALE),
                              acc);
    }
    return any_nan(nan) ? __builtin_nanf("") : _mm512_reduce_add_ps(acc);
}

AVX512 static float qdot_e2m1_avx512(const uint8_t *w, const float *xq, const float *xs,
                                     const float *ws, int K, int seg)
{
    if (seg % 16) return qdot_e2m1_avx2(w, xq, xs, ws, K, seg);
    __m512 acc = _mm512_setzero_ps();
    for (int s = 0, k0 = 0; k0 < K; s++, k0 += seg) {
        __m512 p = _mm512_setzero_ps();
        for (int k = k0; k < k0 + seg; k += 16)
            p = _mm512_fmadd_ps(_mm512_loadu_ps(xq + k), e2m1x16(w + k / 2), p);
        acc = _mm512_fmadd_ps(p, _mm512_set1_ps(xs[k0 / RT_ACT_BLOCK] * ws[s]), acc);
    }
    return _mm512_reduce_add_ps(acc);
}

AVX512 static float dot_bf16_avx512(const uint16_t *w, const float *x, int n)
{
    __m512 s0 = _mm512_setzero_ps(), s1 = _mm512_setzero_ps();
    int i = 0;
    for (; i + 32 <= n; i += 32) {
        s0 = _mm512_fmadd_ps(_mm512_loadu_ps(x + i), bf16x16(w + i), s0);
        s1 = _mm512_fmadd_ps(_mm512_loadu_ps(x + i + 16), bf16x16(w + i + 16), s1);
    }
    for (; i + 16 <= n; i += 16) s0 = _mm512_fmadd_ps(_mm512_loadu_ps(x + i), bf16x16(w + i), s0);
    float s = _mm512_reduce_add_ps(_mm512_add_ps(s0, s1));
    for (; i < n; i++) s += x[i] * wp_bf16_to_f32(w[i]);
    return s;
}

AVX512 static void dec_e4m3_avx512(const uint8_t *c, float *out, int n)
{
    int i = 0;
    for (; i + 16 <= n; i += 16) _mm512_storeu_ps(out + i, e4m3x16(c + i));
    dec_e4m3_avx2(c + i, out + i, n - i);
}

AVX512 static void dec_e2m1_avx512(const uint8_t *c, float *out, int n)
{
    int i = 0;
    for (; i + 16 <= n; i += 16) _mm512_storeu_ps(out + i, e2m1x16(c + i / 2));
    dec_e2m1_avx2(c + i / 2, out + i, n - i);
}

AVX512 static void dec_bf16_avx512(const uint16_t *c, float *out, int n)
{
    int i = 0;
    for (; i + 16 <= n; i += 16) _mm512_storeu_ps(out + i, bf16x16(c + i));
    dec_bf16_avx2(c + i, out + i, n - i);
}

static const rt_kernels k_avx512 = {
    "avx512", dot_avx512, segdot_avx512, qdot_e4m3_avx512, qdot_e2m1_avx512, dot_bf16_avx512,
    dec_e4m3_avx512, dec_e2m1_avx512, dec_bf16_avx512, dec_e8m0_avx2, NULL, NULL,
    NULL, NULL, NULL, NULL,
};

/* ---- AVX-512 BF16 + VBMI ---------------------------------------------------------------------
 * Weight codes become bf16 by table lookup (E4M3: two 128-entry byte tables
 * through vpermi2b, then bytes interleaved into words; E2M1: a 16-entry word
 * table through vpermw), then vdpbf16ps multiplies 32 pairs at once against
 * the activation codes in bf16.  Every E4M3/E2M1 value is exact in bf16 and
 * every product exact in fp32, as in the fp32 kernels. */

#define AVX512BF __attribute__((target("avx512f,avx512bw,avx512vbmi,avx512bf16,avx2,fma,f16c")))

static uint8_t bf_e4m3_lo[128], bf_e4m3_hi[128], bf_ilv[2][64];
static uint16_t bf_e2m1[32];

static void bf_tables_init(void)
{
    for (int i = 0; i < 128; i++) {
        uint32_t u;
        memcpy(&u, &lut_e4m3[i], 4);
        bf_e4m3_lo[i] = (uint8_t)(u >> 16);     /* exact: at most 4 significant bits */
        bf_e4m3_hi[i] = (uint8_t)(u >> 24);
    }
    for (int j = 0; j < 32; j++)
        for (int h = 0; h < 2; h++) {
            bf_ilv[h][2 * j] = (uint8_t)(32 * h + j);          /* low byte from table 1 */
            bf_ilv[h][2 * j + 1] = (uint8_t)(64 + 32 * h + j); /* high byte from table 2 */
        }
    for (int i = 0; i < 16; i++) {
        uint32_t u;
        memcpy(&u, &lut_e2m1[i], 4);
        bf_e2m1[i] = (uint16_t)(u >> 16);
    }
}

AVX512BF static float qdot_e4m3_bf(const uint8_t *w, const float *xq, const uint16_t *xb,
                                   const float *xs, const float *ws, int K, int seg)
{
    if (seg % 64) return qdot_e4m3_avx512(w, xq, xs, ws, K, seg);
    const __m512i tl0 = _mm512_loadu_si512(bf_e4m3_lo), tl1 = _mm512_loadu_si512(bf_e4m3_lo + 64);
    const __m512i th0 = _mm512_loadu_si512(bf_e4m3_hi), th1 = _mm512_loadu_si512(bf_e4m3_hi + 64);
    const __m512i i0 = _mm512_loadu_si512(bf_ilv[0]), i1 = _mm512_loadu_si512(bf_ilv[1]);
    const __m512i m80 = _mm512_set1_epi8((char)0x80);
    __m512 acc = _mm512_setzero_ps();
    for (int s = 0, k0 = 0; k0 < K; s++, k0 += seg) {
        /* two independent partial sums keep the dot-product latency off the path */
        __m512 pa = _mm512_setzero_ps(), pb = _mm512_setzero_ps();
        for (int k = k0; k < k0 + seg; k += 64) {
            __m512i b = _mm512_loadu_si512(w + k);
            __m512i lo = _mm512_permutex2var_epi8(tl0, b, tl1);     /* index bit 7 (sign) unused */
            __m512i hi = _mm512_permutex2var_epi8(th0, b, th1);
            hi = _mm512_ternarylogic_epi32(hi, b, m80, 0xF8);       /* hi | (b & 0x80) */
            __m512i w0 = _mm512_permutex2var_epi8(lo, i0, hi), w1 = _mm512_permutex2var_epi8(lo, i1, hi);
            pa = _mm512_dpbf16_ps(pa, (__m512bh)_mm512_loadu_si512(xb + k), (__m512bh)w0);
            pb = _mm512_dpbf16_ps(pb, (__m512bh)_mm512_loadu_si512(xb + k + 32), (__m512bh)w1);
        }
        acc = _mm512_fmadd_ps(_mm512_add_ps(pa, pb),
                              _mm512_set1_ps(xs[k0 / RT_ACT_BLOCK] * ws[s]), acc);
    }
    return _mm512_reduce_add_ps(acc);
}

/* byte j of 16 -> dword j = low nibble | high nibble << 16, so the 32 words are
 * the 32 E2M1 elements in order (spec §3.4 packing), mapped to bf16 by table */
AVX512BF static inline __m512i e2m1x32_bf(const uint8_t *c, __m512i tab, __m512i nib)
{
    __m512i d = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)c));
    d = _mm512_ternarylogic_epi32(d, _mm512_slli_epi32(d, 12), nib, 0xA8);   /* (a|b)&c */
    return _mm512_permutexvar_epi16(d, tab);
}

AVX512BF static float qdot_e2m1_bf(const uint8_t *w, const float *xq, const uint16_t *xb,
                                   const float *xs, const float *ws, int K, int seg)
{
    if (seg % 32) return qdot_e2m1_avx512(w, xq, xs, ws, K, seg);
    const __m512i tab = _mm512_loadu_si512(bf_e2m1), nib = _mm512_set1_epi32(0x000F000F);
    __m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps();
    int s = 0, k0 = 0;
    if (seg == 32) {
        /* MXFP4: four 32-wide segments per step, each its own partial sum and
         * scale, on two accumulators: no long dependency chain */
        for (; k0 + 128 <= K; k0 += 128, s += 4) {
            const __m512 z = _mm512_setzero_ps();
            __m512 p0 = _mm512_dpbf16_ps(z, (__m512bh)_mm512_loadu_si512(xb + k0),
                                         (__m512bh)e2m1x32_bf(w + k0 / 2, tab, nib));
            __m512 p1 = _mm512_dpbf16_ps(z, (__m512bh)_mm512_loadu_si512(xb + k0 + 32),
                                         (__m512bh)e2m1x32_bf(w + k0 / 2 + 16, tab, nib));
            __m512 p2 = _mm512_dpbf16_ps(z, (__m512bh)_mm512_loadu_si512(xb + k0 + 64),
                                         (__m512bh)e2m1x32_bf(w + k0 / 2 + 32, tab, nib));
            __m512 p3 = _mm512_dpbf16_ps(z, (__m512bh)_mm512_loadu_si512(xb + k0 + 96),
                                         (__m512bh)e2m1x32_bf(w + k0 / 2 + 48, tab, nib));
            const float x = xs[k0 / RT_ACT_BLOCK];
            acc0 = _mm512_fmadd_ps(p0, _mm512_set1_ps(x * ws[s]), acc0);
            acc1 = _mm512_fmadd_ps(p1, _mm512_set1_ps(x * ws[s + 1]), acc1);
            acc0 = _mm512_fmadd_ps(p2, _mm512_set1_ps(x * ws[s + 2]), acc0);
            acc1 = _mm512_fmadd_ps(p3, _mm512_set1_ps(x * ws[s + 3]), acc1);
        }
    }
    for (; k0 < K; s++, k0 += seg) {
        __m512 p = _mm512_setzero_ps();
        for (int k = k0; k < k0 + seg; k += 32)
            p = _mm512_dpbf16_ps(p, (__m512bh)_mm512_loadu_si512(xb + k),
                                 (__m512bh)e2m1x32_bf(w + k / 2, tab, nib));
        acc0 = _mm512_fmadd_ps(p, _mm512_set1_ps(xs[k0 / RT_ACT_BLOCK] * ws[s]), acc0);
    }
    return _mm512_reduce_add_ps(_mm512_add_ps(acc0, acc1));
}

/* The same two products over rows decoded to bf16 once (many activation
 * rows): identical loops with the table decode replaced by a load, so a row
 * gives the same bits on either path. */
AVX512BF static float segdot_bf_e4m3(const uint16_t *xb, const float *xs, const uint16_t *wb,
                                     const float *ws, int K, int seg)
{
    __m512 acc = _mm512_setzero_ps();
    for (int s = 0, k0 = 0; k0 < K; s++, k0 += seg) {
        __m512 pa = _mm512_setzero_ps(), pb = _mm512_setzero_ps();
        for (int k = k0; k < k0 + seg; k += 64) {
            pa = _mm512_dpbf16_ps(pa, (__m512bh)_mm512_loadu_si512(xb + k),
                                  (__m512bh)_mm512_loadu_si512(wb + k));
            pb = _mm512_dpbf16_ps(pb, (__m512bh)_mm512_loadu_si512(xb + k + 32),
                                  (__m512bh)_mm512_loadu_si512(wb + k + 32));
        }
        acc = _mm512_fmadd_ps(_mm512_add_ps(pa, pb),
                              _mm512_set1_ps(xs[k0 / RT_ACT_BLOCK] * ws[s]), acc);
    }
    return _mm512_reduce_add_ps(acc);
}

AVX512BF static float segdot_bf_e2m1(const uint16_t *xb, const float *xs, const uint16_t *wb,
                                     const float *ws, int K, int seg)
{
    __m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps();
    int s = 0, k0 = 0;
#define LD(p) ((__m512bh)_mm512_loadu_si512(p))
    if (seg == 32) {
        for (; k0 + 128 <= K; k0 += 128, s += 4) {
            const __m512 z = _mm512_setzero_ps();
            __m512 p0 = _mm512_dpbf16_ps(z, LD(xb + k0), LD(wb + k0));
            __m512 p1 = _mm512_dpbf16_ps(z, LD(xb + k0 + 32), LD(wb + k0 + 32));
            __m512 p2 = _mm512_dpbf16_ps(z, LD(xb + k0 + 64), LD(wb + k0 + 64));
            __m512 p3 = _mm512_dpbf16_ps(z, LD(xb + k0 + 96), LD(wb + k0 + 96));
            const float x = xs[k0 / RT_ACT_BLOCK];
            acc0 = _mm512_fmadd_ps(p0, _mm512_set1_ps(x * ws[s]), acc0);
            acc1 = _mm512_fmadd_ps(p1, _mm512_set1_ps(x * ws[s + 1]), acc1);
            acc0 = _mm512_fmadd_ps(p2, _mm512_set1_ps(x * ws[s + 2]), acc0);
            acc1 = _mm512_fmadd_ps(p3, _mm512_set1_ps(x * ws[s + 3]), acc1);
        }
    }
    for (; k0 < K; s++, k0 += seg) {
        __m512 p = _mm512_setzero_ps();
        for (int k = k0; k < k0 + seg; k += 32) p = _mm512_dpbf16_ps(p, LD(xb + k), LD(wb + k));
        acc0 = _mm512_fmadd_ps(p, _mm512_set1_ps(xs[k0 / RT_ACT_BLOCK] * ws[s]), acc0);
    }
#undef LD
    return _mm512_reduce_add_ps(_mm512_add_ps(acc0, acc1));
}

static void dec_e4m3_bf_scalar(const uint8_t *c, uint16_t *out, int n)
{
    for (int i = 0; i < n; i++) {
        uint32_t u;
        memcpy(&u, &lut_e4m3[c[i]], 4);
        out[i] = (uint16_t)(u >> 16);
    }
}

AVX512BF static void dec_e4m3_bf(const uint8_t *c, uint16_t *out, int n)
{
    const __m512i tl0 = _mm512_loadu_si512(bf_e4m3_lo), tl1 = _mm512_loadu_si512(bf_e4m3_lo + 64);
    const __m512i th0 = _mm512_loadu_si512(bf_e4m3_hi), th1 = _mm512_loadu_si512(bf_e4m3_hi + 64);
    const __m512i i0 = _mm512_loadu_si512(bf_ilv[0]), i1 = _mm512_loadu_si512(bf_ilv[1]);
    const __m512i m80 = _mm512_set1_epi8((char)0x80);
    int i = 0;
    for (; i + 64 <= n; i += 64) {
        __m512i b = _mm512_loadu_si512(c + i);
        __m512i lo = _mm512_permutex2var_epi8(tl0, b, tl1);
        __m512i hi = _mm512_ternarylogic_epi32(_mm512_permutex2var_epi8(th0, b, th1), b, m80, 0xF8);
        _mm512_storeu_si512(out + i, _mm512_permutex2var_epi8(lo, i0, hi));
        _mm512_storeu_si512(out + i + 32, _mm512_permutex2var_epi8(lo, i1, hi));
    }
    dec_e4m3_bf_scalar(c + i, out + i, n - i);
}

AVX512BF static void dec_e2m1_bf(const uint8_t *c, uint16_t *out, int n)
{
    const __m512i tab = _mm512_loadu_si512(bf_e2m1), nib = _mm512_set1_epi32(0x000F000F);
    int i = 0;
    for (; i + 32 <= n; i += 32) _mm512_storeu_si512(out + i, e2m1x32_bf(c + i / 2, tab, nib));
    for (; i < n; i++) out[i] = bf_e2m1[i & 1 ? c[i / 2] >> 4 : c[i / 2] & 15];
}

static const rt_kernels k_avx512bf = {
    "avx512bf16", dot_avx512, segdot_avx512, qdot_e4m3_avx512, qdot_e2m1_avx512, dot_bf16_avx512,
    dec_e4m3_avx512, dec_e2m1_avx512, dec_bf16_avx512, dec_e8m0_avx2, qdot_e4m3_bf, qdot_e2m1_bf,
    dec_e4m3_bf, dec_e2m1_bf, segdot_bf_e4m3, segdot_bf_e2m1,
};

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
        bf_tables_init();
        k_all[n++] = &k_avx512bf;
    }
    if (avx512) k_all[n++] = &k_avx512;
    if (avx2) k_all[n++] = &k_avx2;
    k_all[n++] = &k_scalar;
    k_all[n] = NULL;
}

const rt_kernels *rt_kernels_scalar(void)
{
    pthread_once(&lut_once, lut_init);
    return &k_scalar;
}

const rt_kernels *const *rt_kernels_all(void)
{
    pthread_once(&lut_once, lut_init);
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
            ws[s] = w->sfmt == WP_SCALE_E8M0 ? lut_e8m0[((const uint8_t *)w->scale)[i]]
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
        for (int s = 0; s < ns; s++) ws[s] = lut_e8m0[sc[s * seg / 32]];
        return;
    }
    case WP_ENC_NVFP4: {
        const uint8_t *sc = (const uint8_t *)w->scale + r * (w->cols / 16);
        for (int s = 0; s < ns; s++) ws[s] = lut_e4m3[sc[s * seg / 16]] * w->global;
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
    pthread_once(&lut_once, lut_init);
    const int nb = (K + RT_ACT_BLOCK - 1) / RT_ACT_BLOCK;
    uint8_t q[RT_ACT_BLOCK];
    for (int m = 0; m < M; m++) {
        for (int b = 0; b < nb; b++) {
            int k0 = b * RT_ACT_BLOCK, len = K - k0 < RT_ACT_BLOCK ? K - k0 : RT_ACT_BLOCK;
            uint8_t s;
            /* a short last block is its own block, as the reference's ceil-division */
            wp_act_quant(x + (size_t)m * K + k0, (size_t)len, (size_t)len, q, &s);
            for (int i = 0; i < len; i++) xq[(size_t)m * K + k0 + i] = lut_e4m3[q[i]];
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
    if (j->w->enc == WP_ENC_FP8) return j->seg % 64 == 0;
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
        if (w->enc == WP_ENC_FP8)
            return xb ? j->k->qdot_e4m3_bf(wr + r * w->cols, xr, xb, xs, ws, K, j->seg)
                      : j->k->qdot_e4m3(wr + r * w->cols, xr, xs, ws, K, j->seg);
        return xb ? j->k->qdot_e2m1_bf(wr + r * (w->cols / 2), xr, xb, xs, ws, K, j->seg)
                  : j->k->qdot_e2m1(wr + r * (w->cols / 2), xr, xs, ws, K, j->seg);
    }
    if (w->enc == WP_ENC_F32) return j->k->dot(xr, (const float *)w->data + r * w->cols, K);
    return j->k->dot_bf16((const uint16_t *)w->data + r * w->cols, xr, K);
}

static int fusable(const lin_job *j)
{
    wp_enc e = j->w->enc;
    if (j->M > RT_FUSED_MAX_M) return 0;
    if (j->quant) return e == WP_ENC_FP8 || e == WP_ENC_MXFP4 || e == WP_ENC_NVFP4;
    return e == WP_ENC_F32 || e == WP_ENC_BF16;
}

/* many activation rows on the bf16 kernels: RT_NB weight rows decoded to bf16 */
static void lin_task_bf(lin_job *j, int t0, int t1, uint16_t *wb, float *ws)
{
    const int K = j->K, ns = K / j->seg, fp8 = j->w->enc == WP_ENC_FP8;
    const wp_qweight *w = j->w;
    for (int t = t0; t < t1; t++) {
        int r0 = t * RT_NB, nr = j->N - r0 < RT_NB ? j->N - r0 : RT_NB;
        for (int i = 0; i < nr; i++) {
            uint64_t r = j->r0 + (uint64_t)(r0 + i);
            weight_scales(j->k, w, r, ws + (size_t)i * ns, j->seg);
            if (fp8) j->k->dec_e4m3_bf((const uint8_t *)w->data + r * w->cols, wb + (size_t)i * K, K);
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
    for (int t = t0; t < t1; t++) {
        int r0 = t * RT_NB, nr = j->N - r0 < RT_NB ? j->N - r0 : RT_NB;
        if (fuse) {
            for (int i = 0; i < nr; i++) {
                uint64_t r = j->r0 + (uint64_t)(r0 + i);
                if (j->quant) weight_scales(j->k, j->w, r, ws, j->seg);
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

/* below this many multiply-adds a product runs on the calling thread: waking
 * the pool costs more than it saves */
#define RT_PAR_MIN_WORK (1 << 17)

static int lin_run(const rt_ctx *c, lin_job *j)
{
    atomic_init(&j->oom, 0);
    int tiles = (j->N + RT_NB - 1) / RT_NB;
    double work = (double)j->M * j->N * j->K;
    rt_pool_for(work < RT_PAR_MIN_WORK ? NULL : c->pool, tiles, 1, lin_task, j);
    return atomic_load(&j->oom) ? WP_ENOMEM : 0;
}

int rt_linear_dense_rows(const rt_ctx *c, const wp_qweight *w, uint64_t r0, int nr,
                         const float *x, int M, float *y, int ldy)
{
    lin_job j = {.k = c->k, .w = w, .x = x, .M = M, .K = (int)w->cols, .N = nr, .seg = 1,
                 .r0 = r0, .ldy = ldy, .y = y};
    if (!rt_enc_quantised(w->enc)) return lin_run(c, &j);
    /* a quantised weight at a dense site: the block-scaled kernels with the
     * activations as they are (scale 1), so the weight is still read once and
     * its scales factored out of each block (powers of two: exact) */
    const int nb = (j.K + RT_ACT_BLOCK - 1) / RT_ACT_BLOCK;
    float *ones = malloc(sizeof(float) * (size_t)M * nb);
    if (!ones) return WP_ENOMEM;
    for (size_t i = 0; i < (size_t)M * nb; i++) ones[i] = 1.0f;
    j.xs = ones;
    j.nb = nb;
    j.quant = 1;
    j.seg = rt_weight_seg(w);
    int rc = lin_run(c, &j);
    free(ones);
    return rc;
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
        if (c->k->qdot_e4m3_bf && rt_enc_quantised(w->enc)) {
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
