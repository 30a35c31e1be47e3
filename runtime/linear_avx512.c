/*
 * linear_avx512.c — the AVX-512F kernel set, and the AVX-512 set with BF16 +
 * VBMI (runtime/linear_kernels.h).  Kernels fall back to the AVX2 ones for
 * segments they do not step by.  Every function carries its target
 * attribute; the driver (linear.c) hands these sets out only on a CPU that
 * has the features.
 */
#include <string.h>

#include "runtime/linear_kernels.h"

/* ---- AVX-512F -------------------------------------------------------------------------- */

RT_AVX512 static inline __m512 e4m3x16h(const uint8_t *c, __m128i *nan)
{
    __m128i b = _mm_loadu_si128((const __m128i *)c);
    *nan = _mm_or_si128(*nan, _mm_cmpeq_epi8(_mm_or_si128(b, _mm_set1_epi8((char)0x80)),
                                             _mm_set1_epi8((char)0xFF)));
    __m256i w = _mm256_srai_epi16(_mm256_slli_epi16(_mm256_cvtepu8_epi16(b), 8), 1);
    return _mm512_cvtph_ps(_mm256_and_si256(w, _mm256_set1_epi16((short)0xBF80)));
}

RT_AVX512 static inline __m512 e4m3x16(const uint8_t *c)
{
    __m128i nan = _mm_setzero_si128();
    __m512 f = _mm512_mul_ps(e4m3x16h(c, &nan), _mm512_set1_ps(RT_E4M3_HALF_SCALE));
    __mmask16 m = _mm512_test_epi32_mask(_mm512_cvtepi8_epi32(nan), _mm512_cvtepi8_epi32(nan));
    return _mm512_mask_blend_ps(m, f, _mm512_set1_ps(__builtin_nanf("")));
}

/* 16 E2M1 values from 8 bytes: byte j into 64-bit lane j, its high nibble
 * moved to bit 32, so each 32-bit lane holds one nibble in order */
RT_AVX512 static inline __m512 e2m1x16(const uint8_t *c)
{
    const __m512 tab = _mm512_setr_ps(0.f, .5f, 1.f, 1.5f, 2.f, 3.f, 4.f, 6.f, -0.f, -.5f, -1.f,
                                      -1.5f, -2.f, -3.f, -4.f, -6.f);
    __m512i w = _mm512_cvtepu8_epi64(_mm_loadl_epi64((const __m128i *)c));
    __m512i v = _mm512_and_si512(_mm512_or_si512(w, _mm512_slli_epi64(w, 28)),
                                 _mm512_set1_epi32(15));
    return _mm512_permutexvar_ps(v, tab);
}

RT_AVX512 static inline __m512 bf16x16(const uint16_t *c)
{
    __m512i v = _mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)c));
    return _mm512_castsi512_ps(_mm512_slli_epi32(v, 16));
}

RT_AVX512 static float dot_avx512(const float *a, const float *b, int n)
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

/* dot_avx512 over the row's values, decoded in registers (exact: code x power of two).
 * This is the reference form: a NaN code is blended in per 16 values. */
RT_AVX512 static float dot_e4m3_nan_avx512(const uint8_t *w, const float *ws, int seg,
                                           const float *x, int n)
{
    __m512 s0 = _mm512_setzero_ps(), s1 = _mm512_setzero_ps();
    int i = 0;
    for (; i + 32 <= n; i += 32) {
        s0 = _mm512_fmadd_ps(_mm512_loadu_ps(x + i),
                             _mm512_mul_ps(e4m3x16(w + i), _mm512_set1_ps(ws[i / seg])), s0);
        s1 = _mm512_fmadd_ps(_mm512_loadu_ps(x + i + 16),
                             _mm512_mul_ps(e4m3x16(w + i + 16), _mm512_set1_ps(ws[(i + 16) / seg])), s1);
    }
    for (; i + 16 <= n; i += 16)
        s0 = _mm512_fmadd_ps(_mm512_loadu_ps(x + i),
                             _mm512_mul_ps(e4m3x16(w + i), _mm512_set1_ps(ws[i / seg])), s0);
    float s = _mm512_reduce_add_ps(_mm512_add_ps(s0, s1));
    for (; i < n; i++) s += x[i] * (rt_lut_e4m3[w[i]] * ws[i / seg]);
    return s;
}

/* The same sums, faster: the NaN test is one OR per 16 codes and one branch
 * per row (a row with a NaN code takes the form above), and the two exact
 * scalings (x256 of the half-precision decode, x ws) are one multiply by
 * 256*ws, which is exact whenever it is finite: h*256 is exact, so
 * round(h*256*ws) is the same single rounding either way.  A row with a
 * scale above 2^100 takes the form above too. */
RT_AVX512 static float dot_e4m3_avx512(const uint8_t *w, const float *ws, int seg, const float *x,
                                       int n)
{
    const int ns = n / seg;
    for (int s = 0; s < ns; s++)
        if (!(ws[s] <= 0x1p100f && ws[s] >= -0x1p100f))
            return dot_e4m3_nan_avx512(w, ws, seg, x, n);
    __m512 s0 = _mm512_setzero_ps(), s1 = _mm512_setzero_ps();
    __m128i nan = _mm_setzero_si128();
    int i = 0;
    for (; i + 32 <= n; i += 32) {
        s0 = _mm512_fmadd_ps(_mm512_loadu_ps(x + i),
                             _mm512_mul_ps(e4m3x16h(w + i, &nan),
                                           _mm512_set1_ps(ws[i / seg] * RT_E4M3_HALF_SCALE)), s0);
        s1 = _mm512_fmadd_ps(_mm512_loadu_ps(x + i + 16),
                             _mm512_mul_ps(e4m3x16h(w + i + 16, &nan),
                                           _mm512_set1_ps(ws[(i + 16) / seg] * RT_E4M3_HALF_SCALE)), s1);
    }
    for (; i + 16 <= n; i += 16)
        s0 = _mm512_fmadd_ps(_mm512_loadu_ps(x + i),
                             _mm512_mul_ps(e4m3x16h(w + i, &nan),
                                           _mm512_set1_ps(ws[i / seg] * RT_E4M3_HALF_SCALE)), s0);
    if (rt_any_nan(nan)) return dot_e4m3_nan_avx512(w, ws, seg, x, n);
    float s = _mm512_reduce_add_ps(_mm512_add_ps(s0, s1));
    for (; i < n; i++) s += x[i] * (rt_lut_e4m3[w[i]] * ws[i / seg]);
    return s;
}

RT_AVX512 static float segdot_avx512(const float *xq, const float *xs, const float *wv,
                                     const float *ws, int K, int seg)
{
    if (seg % 16) return rt_segdot_avx2(xq, xs, wv, ws, K, seg);
    __m512 acc = _mm512_setzero_ps();
    for (int s = 0, k0 = 0; k0 < K; s++, k0 += seg) {
        __m512 p = _mm512_setzero_ps();
        for (int k = k0; k < k0 + seg; k += 16)
            p = _mm512_fmadd_ps(_mm512_loadu_ps(xq + k), _mm512_loadu_ps(wv + k), p);
        acc = _mm512_fmadd_ps(p, _mm512_set1_ps(xs[k0 / RT_ACT_BLOCK] * ws[s]), acc);
    }
    return _mm512_reduce_add_ps(acc);
}

RT_AVX512 static float qdot_e4m3_avx512(const uint8_t *w, const float *xq, const float *xs,
                                        const float *ws, int K, int seg)
{
    if (seg % 16) return rt_qdot_e4m3_avx2(w, xq, xs, ws, K, seg);
    __m512 acc = _mm512_setzero_ps();
    __m128i nan = _mm_setzero_si128();
    for (int s = 0, k0 = 0; k0 < K; s++, k0 += seg) {
        __m512 p = _mm512_setzero_ps();
        for (int k = k0; k < k0 + seg; k += 16)
            p = _mm512_fmadd_ps(_mm512_loadu_ps(xq + k), e4m3x16h(w + k, &nan), p);
        acc = _mm512_fmadd_ps(p, _mm512_set1_ps(xs[k0 / RT_ACT_BLOCK] * ws[s] * RT_E4M3_HALF_SCALE),
                              acc);
    }
    return rt_any_nan(nan) ? __builtin_nanf("") : _mm512_reduce_add_ps(acc);
}

RT_AVX512 static float qdot_e2m1_avx512(const uint8_t *w, const float *xq, const float *xs,
                                        const float *ws, int K, int seg)
{
    if (seg % 16) return rt_qdot_e2m1_avx2(w, xq, xs, ws, K, seg);
    __m512 acc = _mm512_setzero_ps();
    for (int s = 0, k0 = 0; k0 < K; s++, k0 += seg) {
        __m512 p = _mm512_setzero_ps();
        for (int k = k0; k < k0 + seg; k += 16)
            p = _mm512_fmadd_ps(_mm512_loadu_ps(xq + k), e2m1x16(w + k / 2), p);
        acc = _mm512_fmadd_ps(p, _mm512_set1_ps(xs[k0 / RT_ACT_BLOCK] * ws[s]), acc);
    }
    return _mm512_reduce_add_ps(acc);
}

/* dot over bf16 weights; pf: request the row RT_PF_DIST ahead as it is read
 * (a constant at each call, so each caller gets its own loop) */
RT_AVX512 static inline float dot_bf16_body(const uint16_t *w, const float *x, int n, int pf)
{
    __m512 s0 = _mm512_setzero_ps(), s1 = _mm512_setzero_ps();
    int i = 0;
    for (; i + 32 <= n; i += 32) {
        if (pf) RT_PF_ROW(w + i);
        s0 = _mm512_fmadd_ps(_mm512_loadu_ps(x + i), bf16x16(w + i), s0);
        s1 = _mm512_fmadd_ps(_mm512_loadu_ps(x + i + 16), bf16x16(w + i + 16), s1);
    }
    for (; i + 16 <= n; i += 16) s0 = _mm512_fmadd_ps(_mm512_loadu_ps(x + i), bf16x16(w + i), s0);
    float s = _mm512_reduce_add_ps(_mm512_add_ps(s0, s1));
    for (; i < n; i++) s += x[i] * wp_bf16_to_f32(w[i]);
    return s;
}

RT_AVX512 static float dot_bf16_avx512(const uint16_t *w, const float *x, int n)
{
    return dot_bf16_body(w, x, n, 0);
}

RT_AVX512 static void dec_e4m3_avx512(const uint8_t *c, float *out, int n)
{
    int i = 0;
    for (; i + 16 <= n; i += 16) _mm512_storeu_ps(out + i, e4m3x16(c + i));
    rt_dec_e4m3_avx2(c + i, out + i, n - i);
}

RT_AVX512 static void dec_e2m1_avx512(const uint8_t *c, float *out, int n)
{
    int i = 0;
    for (; i + 16 <= n; i += 16) _mm512_storeu_ps(out + i, e2m1x16(c + i / 2));
    rt_dec_e2m1_avx2(c + i / 2, out + i, n - i);
}

RT_AVX512 static void dec_bf16_avx512(const uint16_t *c, float *out, int n)
{
    int i = 0;
    for (; i + 16 <= n; i += 16) _mm512_storeu_ps(out + i, bf16x16(c + i));
    rt_dec_bf16_avx2(c + i, out + i, n - i);
}

RT_AVX512 static void axpy_avx512(float *o, float a, const float *x, int n)
{
    const __m512 av = _mm512_set1_ps(a);
    int i = 0;
    for (; i + 16 <= n; i += 16)
        _mm512_storeu_ps(o + i, _mm512_add_ps(_mm512_loadu_ps(o + i),
                                              _mm512_mul_ps(av, _mm512_loadu_ps(x + i))));
    rt_axpy_scalar(o + i, a, x + i, n - i);
}

const rt_kernels rt_k_avx512 = {
    "avx512", dot_avx512, segdot_avx512, qdot_e4m3_avx512, qdot_e2m1_avx512, dot_bf16_avx512,
    dec_e4m3_avx512, dec_e2m1_avx512, dec_bf16_avx512, rt_dec_e8m0_avx2, NULL, NULL,
    NULL, NULL, NULL, NULL, dot_e4m3_avx512, axpy_avx512, 0,
};

/* ---- AVX-512 BF16 + VBMI ---------------------------------------------------------------------
 * Weight codes become bf16 by table lookup (E4M3: two 128-entry byte tables
 * through vpermi2b, then bytes interleaved into words; E2M1: a 16-entry word
 * table through vpermw), then vdpbf16ps multiplies 32 pairs at once against
 * the activation codes in bf16.  Every E4M3/E2M1 value is exact in bf16 and
 * every product exact in fp32, as in the fp32 kernels. */

static uint8_t bf_e4m3_lo[128], bf_e4m3_hi[128], bf_ilv[2][64], bf_f32_place[4][64];
static uint16_t bf_e2m1[32];

void rt_kernel_bf_tables_init(void)
{
    for (int i = 0; i < 128; i++) {
        uint32_t u;
        memcpy(&u, &rt_lut_e4m3[i], 4);
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
        memcpy(&u, &rt_lut_e2m1[i], 4);
        bf_e2m1[i] = (uint16_t)(u >> 16);
    }
    /* dot_e4m3_bf: code 16q+j's low bf16 byte (table 1) to byte 4j+2, its high
     * byte (table 2) to 4j+3; bytes 4j and 4j+1 are zeroed by the mask */
    for (int q = 0; q < 4; q++)
        for (int j = 0; j < 16; j++) {
            bf_f32_place[q][4 * j] = bf_f32_place[q][4 * j + 1] = 0;
            bf_f32_place[q][4 * j + 2] = (uint8_t)(16 * q + j);
            bf_f32_place[q][4 * j + 3] = (uint8_t)(64 + 16 * q + j);
        }
}

RT_AVX512BF static float qdot_e4m3_bf(const uint8_t *w, const float *xq, const uint16_t *xb,
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
            RT_PF_ROW(w + k);
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
RT_AVX512BF static inline __m512i e2m1x32_bf(const uint8_t *c, __m512i tab, __m512i nib)
{
    __m512i d = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)c));
    d = _mm512_ternarylogic_epi32(d, _mm512_slli_epi32(d, 12), nib, 0xA8);   /* (a|b)&c */
    return _mm512_permutexvar_epi16(d, tab);
}

RT_AVX512BF static float qdot_e2m1_bf(const uint8_t *w, const float *xq, const uint16_t *xb,
                                      const float *xs, const float *ws, int K, int seg)
{
    if (seg % 32) return qdot_e2m1_avx512(w, xq, xs, ws, K, seg);
    const __m512i tab = _mm512_loadu_si512(bf_e2m1), nib = _mm512_set1_epi32(0x000F000F);
    __m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps();
    int s = 0, k0 = 0;
    if (seg == 32 && K <= 32 * 1024) {
        /* MXFP4: four 32-wide segments per step, each its own partial sum and
         * scale, on two accumulators: no long dependency chain.  The scales
         * xs * ws (the same fp32 products) are made for the whole row first,
         * so the loop broadcasts them from memory, not from a register */
        float sc[1024];
        const int ns = K / 32;
        int t = 0;
        const __m512i q4 = _mm512_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3);
        for (; t + 16 <= ns; t += 16)
            _mm512_storeu_ps(sc + t, _mm512_mul_ps(_mm512_permutexvar_ps(q4, _mm512_maskz_loadu_ps(0xF, xs + t / 4)),
                                                   _mm512_loadu_ps(ws + t)));
        for (; t < ns; t++) sc[t] = xs[t / 4] * ws[t];
        for (; k0 + 128 <= K; k0 += 128, s += 4) {
            const __m512 z = _mm512_setzero_ps();
            RT_PF_ROW(w + k0 / 2);
            __m512 p0 = _mm512_dpbf16_ps(z, (__m512bh)_mm512_loadu_si512(xb + k0),
                                         (__m512bh)e2m1x32_bf(w + k0 / 2, tab, nib));
            __m512 p1 = _mm512_dpbf16_ps(z, (__m512bh)_mm512_loadu_si512(xb + k0 + 32),
                                         (__m512bh)e2m1x32_bf(w + k0 / 2 + 16, tab, nib));
            __m512 p2 = _mm512_dpbf16_ps(z, (__m512bh)_mm512_loadu_si512(xb + k0 + 64),
                                         (__m512bh)e2m1x32_bf(w + k0 / 2 + 32, tab, nib));
            __m512 p3 = _mm512_dpbf16_ps(z, (__m512bh)_mm512_loadu_si512(xb + k0 + 96),
                                         (__m512bh)e2m1x32_bf(w + k0 / 2 + 48, tab, nib));
            acc0 = _mm512_fmadd_ps(p0, _mm512_set1_ps(sc[s]), acc0);
            acc1 = _mm512_fmadd_ps(p1, _mm512_set1_ps(sc[s + 1]), acc1);
            acc0 = _mm512_fmadd_ps(p2, _mm512_set1_ps(sc[s + 2]), acc0);
            acc1 = _mm512_fmadd_ps(p3, _mm512_set1_ps(sc[s + 3]), acc1);
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
RT_AVX512BF static float segdot_bf_e4m3(const uint16_t *xb, const float *xs, const uint16_t *wb,
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

RT_AVX512BF static float segdot_bf_e2m1(const uint16_t *xb, const float *xs, const uint16_t *wb,
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

/* Dense FP8 (dot_e4m3): the sums of dot_e4m3_avx512 — each of the two
 * accumulators takes its 16 columns of every 32 in order, v = E4M3 x ws
 * rounded once — with the codes decoded by the byte tables instead of
 * through half precision: the two bf16 bytes of each code (vpermi2b) are
 * placed straight into the top half of its fp32 lane (a zero-masked vpermi2b),
 * which is the code's exact fp32 value.  About 15 vector instructions per 64
 * codes instead of 40, no NaN test in the loop and no limit on the scales:
 * v is the same single rounding of the exact product.  A row whose sum is NaN
 * (a NaN code, or NaN/inf in x) is summed again by the reference form, so its
 * bits are that form's whatever the NaN's origin. */
RT_AVX512BF static float dot_e4m3_bf(const uint8_t *w, const float *ws, int seg, const float *x,
                                     int n)
{
    const __m512i tl0 = _mm512_loadu_si512(bf_e4m3_lo), tl1 = _mm512_loadu_si512(bf_e4m3_lo + 64);
    const __m512i th0 = _mm512_loadu_si512(bf_e4m3_hi), th1 = _mm512_loadu_si512(bf_e4m3_hi + 64);
    const __m512i p0 = _mm512_loadu_si512(bf_f32_place[0]), p1 = _mm512_loadu_si512(bf_f32_place[1]);
    const __m512i p2 = _mm512_loadu_si512(bf_f32_place[2]), p3 = _mm512_loadu_si512(bf_f32_place[3]);
    const __m512i m80 = _mm512_set1_epi8((char)0x80);
    const __mmask64 top = 0xCCCCCCCCCCCCCCCCull;     /* bytes 2 and 3 of every fp32 lane */
    __m512 s0 = _mm512_setzero_ps(), s1 = _mm512_setzero_ps();
    int i = 0;
#define V(p) _mm512_castsi512_ps(_mm512_maskz_permutex2var_epi8(top, lo, p, hi))
    for (; i + 64 <= n; i += 64) {
        RT_PF_ROW(w + i);
        __m512i b = _mm512_loadu_si512(w + i);
        __m512i lo = _mm512_permutex2var_epi8(tl0, b, tl1);
        __m512i hi = _mm512_ternarylogic_epi32(_mm512_permutex2var_epi8(th0, b, th1), b, m80, 0xF8);
        s0 = _mm512_fmadd_ps(_mm512_loadu_ps(x + i), _mm512_mul_ps(V(p0), _mm512_set1_ps(ws[i / seg])), s0);
        s1 = _mm512_fmadd_ps(_mm512_loadu_ps(x + i + 16),
                             _mm512_mul_ps(V(p1), _mm512_set1_ps(ws[(i + 16) / seg])), s1);
        s0 = _mm512_fmadd_ps(_mm512_loadu_ps(x + i + 32),
                             _mm512_mul_ps(V(p2), _mm512_set1_ps(ws[(i + 32) / seg])), s0);
        s1 = _mm512_fmadd_ps(_mm512_loadu_ps(x + i + 48),
                             _mm512_mul_ps(V(p3), _mm512_set1_ps(ws[(i + 48) / seg])), s1);
    }
    if (i + 16 <= n) {      /* 16 or 32 or 48 codes left: the first 64 loaded under a mask */
        const int left = (n - i) & ~15;
        __m512i b = _mm512_maskz_loadu_epi8(left == 64 ? ~0ull : (1ull << left) - 1, w + i);
        __m512i lo = _mm512_permutex2var_epi8(tl0, b, tl1);
        __m512i hi = _mm512_ternarylogic_epi32(_mm512_permutex2var_epi8(th0, b, th1), b, m80, 0xF8);
        s0 = _mm512_fmadd_ps(_mm512_loadu_ps(x + i), _mm512_mul_ps(V(p0), _mm512_set1_ps(ws[i / seg])), s0);
        if (left >= 32)
            s1 = _mm512_fmadd_ps(_mm512_loadu_ps(x + i + 16),
                                 _mm512_mul_ps(V(p1), _mm512_set1_ps(ws[(i + 16) / seg])), s1);
        if (left >= 48)
            s0 = _mm512_fmadd_ps(_mm512_loadu_ps(x + i + 32),
                                 _mm512_mul_ps(V(p2), _mm512_set1_ps(ws[(i + 32) / seg])), s0);
        i += left;
    }
#undef V
    float s = _mm512_reduce_add_ps(_mm512_add_ps(s0, s1));
    for (; i < n; i++) s += x[i] * (rt_lut_e4m3[w[i]] * ws[i / seg]);
    return s == s ? s : dot_e4m3_nan_avx512(w, ws, seg, x, n);
}

/* dot_bf16_avx512's sums, requesting the row ahead as it reads it (RT_PF_ROW):
 * this set's dot_bf16 serves only weight rows (the fused dense products) */
RT_AVX512BF static float dot_bf16_bf(const uint16_t *w, const float *x, int n)
{
    return dot_bf16_body(w, x, n, 1);
}

static void dec_e4m3_bf_scalar(const uint8_t *c, uint16_t *out, int n)
{
    for (int i = 0; i < n; i++) {
        uint32_t u;
        memcpy(&u, &rt_lut_e4m3[c[i]], 4);
        out[i] = (uint16_t)(u >> 16);
    }
}

RT_AVX512BF static void dec_e4m3_bf(const uint8_t *c, uint16_t *out, int n)
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

RT_AVX512BF static void dec_e2m1_bf(const uint8_t *c, uint16_t *out, int n)
{
    const __m512i tab = _mm512_loadu_si512(bf_e2m1), nib = _mm512_set1_epi32(0x000F000F);
    int i = 0;
    for (; i + 32 <= n; i += 32) _mm512_storeu_si512(out + i, e2m1x32_bf(c + i / 2, tab, nib));
    for (; i < n; i++) out[i] = bf_e2m1[i & 1 ? c[i / 2] >> 4 : c[i / 2] & 15];
}

const rt_kernels rt_k_avx512bf = {
    "avx512bf16", dot_avx512, segdot_avx512, qdot_e4m3_avx512, qdot_e2m1_avx512, dot_bf16_bf,
    dec_e4m3_avx512, dec_e2m1_avx512, dec_bf16_avx512, rt_dec_e8m0_avx2, qdot_e4m3_bf, qdot_e2m1_bf,
    dec_e4m3_bf, dec_e2m1_bf, segdot_bf_e4m3, segdot_bf_e2m1, dot_e4m3_bf,
    axpy_avx512, 1,
};
