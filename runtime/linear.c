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

static const rt_kernels k_scalar = {
    "scalar", dot_scalar, segdot_scalar, qdot_e4m3_scalar, qdot_e2m1_scalar, dot_bf16_scalar,
    dec_e4m3_scalar, dec_e2m1_scalar, dec_bf16_scalar,
};

/* ---- AVX2 + FMA ----------------------------------------------------------------------- */

#define AVX2 __attribute__((target("avx2,fma")))

AVX2 static float hsum256(__m256 v)
{
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* E4M3 -> fp32 without a table and without touching fp32 subnormals (which
 * cost microcode assists on some CPUs): a normal code's 7 magnitude bits
 * shifted into an fp32 (bits 26..20) need only the exponent rebiased (+120);
 * a subnormal code m is m * 2^-9, exactly, through an integer conversion.
 * 0x7F/0xFF stay NaN (spec §3.2). */
AVX2 static inline __m256 e4m3x8(const uint8_t *c)
{
    const __m256i m7f = _mm256_set1_epi32(0x7F), m80 = _mm256_set1_epi32(0x80);
    __m256i v = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)c));
    __m256i mag = _mm256_and_si256(v, m7f);
    __m256i sign = _mm256_slli_epi32(_mm256_and_si256(v, m80), 24);
    __m256 fn = _mm256_castsi256_ps(
        _mm256_add_epi32(_mm256_slli_epi32(mag, 20), _mm256_set1_epi32(120 << 23)));
    __m256 fs = _mm256_mul_ps(_mm256_cvtepi32_ps(mag), _mm256_set1_ps(0x1p-9f));
    __m256 sub = _mm256_castsi256_ps(_mm256_cmpgt_epi32(_mm256_set1_epi32(8), mag));
    __m256 f = _mm256_or_ps(_mm256_blendv_ps(fn, fs, sub), _mm256_castsi256_ps(sign));
    __m256 isnan = _mm256_castsi256_ps(_mm256_cmpeq_epi32(mag, m7f));
    return _mm256_blendv_ps(f, _mm256_set1_ps(__builtin_nanf("")), isnan);
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
    for (int s = 0, k0 = 0; k0 < K; s++, k0 += seg) {
        __m256 p = _mm256_setzero_ps();
        for (int k = k0; k < k0 + seg; k += 8)
            p = _mm256_fmadd_ps(_mm256_loadu_ps(xq + k), e4m3x8(w + k), p);
        acc = _mm256_fmadd_ps(p, _mm256_set1_ps(xs[k0 / RT_ACT_BLOCK] * ws[s]), acc);
    }
    return hsum256(acc);
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

static const rt_kernels k_avx2 = {
    "avx2", dot_avx2, segdot_avx2, qdot_e4m3_avx2, qdot_e2m1_avx2, dot_bf16_avx2,
    dec_e4m3_avx2, dec_e2m1_avx2, dec_bf16_avx2,
};

/* ---- AVX-512F -------------------------------------------------------------------------- */

#define AVX512 __attribute__((target("avx512f,avx2,fma")))

AVX512 static inline __m512 e4m3x16(const uint8_t *c)
{
    const __m512i m7f = _mm512_set1_epi32(0x7F), m80 = _mm512_set1_epi32(0x80);
    __m512i v = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)c));
    __m512i mag = _mm512_and_si512(v, m7f);
    __m512i sign = _mm512_slli_epi32(_mm512_and_si512(v, m80), 24);
    __m512i fn = _mm512_add_epi32(_mm512_slli_epi32(mag, 20), _mm512_set1_epi32(120 << 23));
    __m512 fs = _mm512_mul_ps(_mm512_cvtepi32_ps(mag), _mm512_set1_ps(0x1p-9f));
    __mmask16 sub = _mm512_cmplt_epi32_mask(mag, _mm512_set1_epi32(8));
    __m512i f = _mm512_mask_blend_epi32(sub, fn, _mm512_castps_si512(fs));
    __m512 r = _mm512_castsi512_ps(_mm512_or_si512(f, sign));
    __mmask16 isnan = _mm512_cmpeq_epi32_mask(mag, m7f);
    return _mm512_mask_blend_ps(isnan, r, _mm512_set1_ps(__builtin_nanf("")));
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
    for (int s = 0, k0 = 0; k0 < K; s++, k0 += seg) {
        __m512 p = _mm512_setzero_ps();
        for (int k = k0; k < k0 + seg; k += 16)
            p = _mm512_fmadd_ps(_mm512_loadu_ps(xq + k), e4m3x16(w + k), p);
        acc = _mm512_fmadd_ps(p, _mm512_set1_ps(xs[k0 / RT_ACT_BLOCK] * ws[s]), acc);
    }
    return _mm512_reduce_add_ps(acc);
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
    dec_e4m3_avx512, dec_e2m1_avx512, dec_bf16_avx512,
};

/* ---- Dispatch ----------------------------------------------------------------------------- */

static const rt_kernels *k_all[4];
static pthread_once_t k_once = PTHREAD_ONCE_INIT;

static void k_init(void)
{
    int n = 0;
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx2") &&
        __builtin_cpu_supports("fma"))
        k_all[n++] = &k_avx512;
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) k_all[n++] = &k_avx2;
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
static void weight_scales(const wp_qweight *w, uint64_t r, float *ws, int seg)
{
    const int ns = (int)w->cols / seg;
    switch (w->enc) {
    case WP_ENC_FP8: {
        uint64_t ncb = (w->cols + w->bc - 1) / w->bc, row = (r / w->br) * ncb;
        for (int s = 0; s < ns; s++) {
            uint64_t i = row + (uint64_t)s * seg / w->bc;
            ws[s] = w->sfmt == WP_SCALE_E8M0 ? lut_e8m0[((const uint8_t *)w->scale)[i]]
                                             : ((const float *)w->scale)[i];
        }
        return;
    }
    case WP_ENC_MXFP4: {
        const uint8_t *sc = (const uint8_t *)w->scale + r * (w->cols / 32);
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
    if (ws) weight_scales(w, r, ws, seg);
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

static float fused(const lin_job *j, uint64_t r, const float *xr, const float *xs,
                   const float *ws)
{
    const wp_qweight *w = j->w;
    const int K = j->K;
    if (j->quant) {
        if (w->enc == WP_ENC_FP8)
            return j->k->qdot_e4m3((const uint8_t *)w->data + r * w->cols, xr, xs, ws, K, j->seg);
        return j->k->qdot_e2m1((const uint8_t *)w->data + r * (w->cols / 2), xr, xs, ws, K,
                               j->seg);
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

static void lin_task(void *ctx, int t0, int t1)
{
    lin_job *j = ctx;
    const int K = j->K, ns = K / j->seg, fuse = fusable(j);
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
                if (j->quant) weight_scales(j->w, r, ws, j->seg);
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
        rc = lin_run(c, &j);
        free(xq);
    }
    rt_round(c, y, (size_t)M * w->rows);
    return rc;
}
