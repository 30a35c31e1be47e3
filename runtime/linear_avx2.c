/*
 * linear_avx2.c — the AVX2 + FMA (+ F16C) kernel set (runtime/linear_kernels.h).
 * Every function carries its target attribute; the driver (linear.c) hands
 * this set out only on a CPU that has all three.
 */
#include <string.h>

#include "runtime/linear_kernels.h"

RT_AVX2 static float hsum256(__m256 v)
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

RT_AVX2 static inline __m256 e4m3x8h(const uint8_t *c, __m128i *nan)
{
    __m128i b = _mm_loadl_epi64((const __m128i *)c);
    *nan = _mm_or_si128(*nan, _mm_cmpeq_epi8(_mm_or_si128(b, _mm_set1_epi8((char)0x80)),
                                             _mm_set1_epi8((char)0xFF)));
    __m128i w = _mm_srai_epi16(_mm_slli_epi16(_mm_cvtepu8_epi16(b), 8), 1);
    return _mm256_cvtph_ps(_mm_and_si128(w, _mm_set1_epi16((short)0xBF80)));
}

/* the exact E4M3 value, NaN included (decoders) */
RT_AVX2 static inline __m256 e4m3x8(const uint8_t *c)
{
    __m128i nan = _mm_setzero_si128();
    __m256 f = _mm256_mul_ps(e4m3x8h(c, &nan), _mm256_set1_ps(RT_E4M3_HALF_SCALE));
    __m256 m = _mm256_castsi256_ps(_mm256_cvtepi8_epi32(nan));
    return _mm256_blendv_ps(f, _mm256_set1_ps(__builtin_nanf("")), m);
}

/* 8 E2M1 values from 4 bytes, low nibble first */
RT_AVX2 static inline __m256 e2m1x8(const uint8_t *c)
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

RT_AVX2 static inline __m256 bf16x8(const uint16_t *c)
{
    __m256i v = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)c));
    return _mm256_castsi256_ps(_mm256_slli_epi32(v, 16));
}

RT_AVX2 static float dot_avx2(const float *a, const float *b, int n)
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

/* dot_avx2 over the row's values, decoded in registers (exact: code x power of two) */
RT_AVX2 static float dot_e4m3_avx2(const uint8_t *w, const float *ws, int seg, const float *x, int n)
{
    __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
    int i = 0;
    for (; i + 16 <= n; i += 16) {
        __m256 sc = _mm256_set1_ps(ws[i / seg]);
        s0 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i), _mm256_mul_ps(e4m3x8(w + i), sc), s0);
        s1 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i + 8), _mm256_mul_ps(e4m3x8(w + i + 8), sc), s1);
    }
    for (; i + 8 <= n; i += 8)
        s0 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i),
                             _mm256_mul_ps(e4m3x8(w + i), _mm256_set1_ps(ws[i / seg])), s0);
    float s = hsum256(_mm256_add_ps(s0, s1));
    for (; i < n; i++) s += x[i] * (rt_lut_e4m3[w[i]] * ws[i / seg]);
    return s;
}

RT_AVX2 float rt_segdot_avx2(const float *xq, const float *xs, const float *wv, const float *ws,
                             int K, int seg)
{
    if (seg % 8) return rt_segdot_scalar(xq, xs, wv, ws, K, seg);
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
RT_AVX2 float rt_qdot_e4m3_avx2(const uint8_t *w, const float *xq, const float *xs,
                                const float *ws, int K, int seg)
{
    if (seg % 8) return rt_qdot_e4m3_scalar(w, xq, xs, ws, K, seg);
    __m256 acc = _mm256_setzero_ps();
    __m128i nan = _mm_setzero_si128();
    for (int s = 0, k0 = 0; k0 < K; s++, k0 += seg) {
        __m256 p = _mm256_setzero_ps();
        for (int k = k0; k < k0 + seg; k += 8)
            p = _mm256_fmadd_ps(_mm256_loadu_ps(xq + k), e4m3x8h(w + k, &nan), p);
        acc = _mm256_fmadd_ps(p, _mm256_set1_ps(xs[k0 / RT_ACT_BLOCK] * ws[s] * RT_E4M3_HALF_SCALE),
                              acc);
    }
    return rt_any_nan(nan) ? __builtin_nanf("") : hsum256(acc);
}

RT_AVX2 float rt_qdot_e2m1_avx2(const uint8_t *w, const float *xq, const float *xs,
                                const float *ws, int K, int seg)
{
    if (seg % 8) return rt_qdot_e2m1_scalar(w, xq, xs, ws, K, seg);
    __m256 acc = _mm256_setzero_ps();
    for (int s = 0, k0 = 0; k0 < K; s++, k0 += seg) {
        __m256 p = _mm256_setzero_ps();
        for (int k = k0; k < k0 + seg; k += 8)
            p = _mm256_fmadd_ps(_mm256_loadu_ps(xq + k), e2m1x8(w + k / 2), p);
        acc = _mm256_fmadd_ps(p, _mm256_set1_ps(xs[k0 / RT_ACT_BLOCK] * ws[s]), acc);
    }
    return hsum256(acc);
}

RT_AVX2 static float dot_bf16_avx2(const uint16_t *w, const float *x, int n)
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

RT_AVX2 void rt_dec_e4m3_avx2(const uint8_t *c, float *out, int n)
{
    int i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(out + i, e4m3x8(c + i));
    rt_dec_e4m3_scalar(c + i, out + i, n - i);
}

RT_AVX2 void rt_dec_e2m1_avx2(const uint8_t *c, float *out, int n)
{
    int i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(out + i, e2m1x8(c + i / 2));
    rt_dec_e2m1_scalar(c + i / 2, out + i, n - i);
}

RT_AVX2 void rt_dec_bf16_avx2(const uint16_t *c, float *out, int n)
{
    int i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(out + i, bf16x8(c + i));
    rt_dec_bf16_scalar(c + i, out + i, n - i);
}

/* E8M0 -> fp32: the code is the fp32 exponent field; 0 is 2^-127 (an fp32
 * subnormal) and 0xFF is NaN (spec §3.3) */
RT_AVX2 void rt_dec_e8m0_avx2(const uint8_t *c, float *out, int n)
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
    rt_dec_e8m0_scalar(c + i, out + i, n - i);
}

RT_AVX2 static void axpy_avx2(float *o, float a, const float *x, int n)
{
    const __m256 av = _mm256_set1_ps(a);
    int i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(o + i, _mm256_add_ps(_mm256_loadu_ps(o + i),
                                              _mm256_mul_ps(av, _mm256_loadu_ps(x + i))));
    rt_axpy_scalar(o + i, a, x + i, n - i);
}

const rt_kernels rt_k_avx2 = {
    "avx2", dot_avx2, rt_segdot_avx2, rt_qdot_e4m3_avx2, rt_qdot_e2m1_avx2, dot_bf16_avx2,
    rt_dec_e4m3_avx2, rt_dec_e2m1_avx2, rt_dec_bf16_avx2, rt_dec_e8m0_avx2, NULL, NULL,
    NULL, NULL, NULL, NULL, dot_e4m3_avx2, axpy_avx2, 0,
};
