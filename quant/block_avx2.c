/*
 * block_avx2.c — the AVX2 kernel set of the lossy weight quantisers
 * (quant_priv.h wp_qkernels), eight lanes at a time; bit for bit the scalar
 * oracle in block.c, by the same reasoning as block_avx512.c (same IEEE
 * operations per element, rounding on the fp32 bits as wp_rne_mag, NaN left
 * out of amax by VMAXPS's operand order).  Ragged block tails go through the
 * scalar encoders.  tests/test_quant_fast.c compares it with the scalar set.
 */
#if defined(__x86_64__)
#include <immintrin.h>
#include <math.h>

#include "quant/quant_priv.h"

#define QK2 __attribute__((target("avx2,fma")))

QK2 static inline __m256i sel(__m256i mask, __m256i a, __m256i b) { return _mm256_blendv_epi8(a, b, mask); }

/* a >= k for a, k in [0, 2^31) */
QK2 static inline __m256i ge(__m256i a, int k) { return _mm256_cmpgt_epi32(a, _mm256_set1_epi32(k - 1)); }

QK2 static inline __m256i rne_int(__m256 x)
{
    return _mm256_cvtps_epi32(_mm256_round_ps(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
}

/* E4M3 of 8 floats (see block_avx512.c e4m3_16). */
QK2 static inline __m256i e4m3_8(__m256 x)
{
    __m256i u = _mm256_castps_si256(x);
    __m256i s = _mm256_and_si256(_mm256_srli_epi32(u, 24), _mm256_set1_epi32(0x80));
    __m256i a = _mm256_and_si256(u, _mm256_set1_epi32(0x7FFFFFFF));
    __m256i v = _mm256_sub_epi32(a, _mm256_set1_epi32(120 << 23));
    v = _mm256_add_epi32(v, _mm256_add_epi32(_mm256_set1_epi32(0x7FFFF),
                                             _mm256_and_si256(_mm256_srli_epi32(v, 20), _mm256_set1_epi32(1))));
    __m256i cn = _mm256_srli_epi32(v, 20);
    __m256i cs = rne_int(_mm256_mul_ps(_mm256_castsi256_ps(a), _mm256_set1_ps(512.0f)));
    __m256i c = sel(ge(a, 0x3C800000), cs, cn);
    c = sel(ge(a, 0x43E00000), c, _mm256_set1_epi32(0x7E));
    c = sel(_mm256_cmpgt_epi32(a, _mm256_set1_epi32(0x7F800000)), c, _mm256_set1_epi32(0x7F));
    return _mm256_or_si256(c, s);
}

/* E2M1 of 8 floats (see block_avx512.c e2m1_16). */
QK2 static inline __m256i e2m1_8(__m256 x)
{
    __m256i u = _mm256_castps_si256(x);
    __m256i s = _mm256_and_si256(_mm256_srli_epi32(u, 28), _mm256_set1_epi32(8));
    __m256i a = _mm256_and_si256(u, _mm256_set1_epi32(0x7FFFFFFF));
    __m256i v = _mm256_sub_epi32(a, _mm256_set1_epi32(126 << 23));
    v = _mm256_add_epi32(v, _mm256_add_epi32(_mm256_set1_epi32(0x1FFFFF),
                                             _mm256_and_si256(_mm256_srli_epi32(v, 22), _mm256_set1_epi32(1))));
    __m256i cn = _mm256_srli_epi32(v, 22);
    __m256i cs = rne_int(_mm256_add_ps(_mm256_castsi256_ps(a), _mm256_castsi256_ps(a)));
    __m256i c = sel(ge(a, 0x3F800000), cs, cn);
    c = sel(ge(a, 0x40C00000), c, _mm256_set1_epi32(7));
    c = _mm256_or_si256(c, s);
    return sel(_mm256_cmpgt_epi32(a, _mm256_set1_epi32(0x7F800000)), c, _mm256_set1_epi32(7));
}

/* 16 codes (two vectors of 8, each < 256) -> 16 bytes in order */
QK2 static inline __m128i bytes16(__m256i c0, __m256i c1)
{
    __m128i a = _mm_packus_epi32(_mm256_castsi256_si128(c0), _mm256_extracti128_si256(c0, 1));
    __m128i b = _mm_packus_epi32(_mm256_castsi256_si128(c1), _mm256_extracti128_si256(c1, 1));
    return _mm_packus_epi16(a, b);
}

/* 8 codes -> 8 bytes in order */
QK2 static inline __m128i bytes8(__m256i c)
{
    __m128i a = _mm_packus_epi32(_mm256_castsi256_si128(c), _mm256_extracti128_si256(c, 1));
    return _mm_packus_epi16(a, a);
}

/* 16 E2M1 codes -> 8 bytes, element 2j in the low nibble */
QK2 static inline void pack4_16(__m256i c0, __m256i c1, uint8_t *out)
{
    __m128i b = bytes16(c0, c1);   /* 16-bit lane j: even code low byte, odd code high byte */
    __m128i r = _mm_or_si128(_mm_and_si128(b, _mm_set1_epi16(0x0F)), _mm_and_si128(_mm_srli_epi16(b, 4), _mm_set1_epi16(0xF0)));
    _mm_storel_epi64((__m128i *)out, _mm_packus_epi16(r, r));
}

QK2 static inline __m256 amax_step(__m256 m, __m256 x)
{
    __m256 ax = _mm256_castsi256_ps(_mm256_and_si256(_mm256_castps_si256(x), _mm256_set1_epi32(0x7FFFFFFF)));
    return _mm256_max_ps(ax, m);   /* NaN in ax: m */
}

QK2 static inline float hmax(__m256 m)
{
    __m128 x = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
    x = _mm_max_ps(x, _mm_movehl_ps(x, x));
    x = _mm_max_ss(x, _mm_shuffle_ps(x, x, 1));
    return _mm_cvtss_f32(x);
}

QK2 static float amax_avx2(const float *x, size_t n)
{
    __m256 m0 = _mm256_setzero_ps(), m1 = _mm256_setzero_ps();
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        m0 = amax_step(m0, _mm256_loadu_ps(x + i));
        m1 = amax_step(m1, _mm256_loadu_ps(x + i + 8));
    }
    for (; i + 8 <= n; i += 8) m0 = amax_step(m0, _mm256_loadu_ps(x + i));
    float m = hmax(_mm256_max_ps(m0, m1));
    for (; i < n; i++) {
        float a = fabsf(x[i]);
        m = a > m ? a : m;
    }
    return m;
}


QK2 static void fp8_block_quant_avx2(const float *w, size_t rows, size_t cols, size_t br, size_t bc,
                                     wp_scale_fmt fmt, uint8_t *q, void *scales)
{
    size_t nbc = (cols + bc - 1) / bc;
    for (size_t r0 = 0; r0 < rows; r0 += br) {
        size_t r1 = r0 + br < rows ? r0 + br : rows;
        size_t bi = r0 / br;
        for (size_t j0 = 0; j0 < nbc; j0 += WP_FP8_TILE_CHUNK) {
            size_t j1 = j0 + WP_FP8_TILE_CHUNK < nbc ? j0 + WP_FP8_TILE_CHUNK : nbc;
            float amax[WP_FP8_TILE_CHUNK] = {0};
            size_t c1 = j1 * bc < cols ? j1 * bc : cols;
            for (size_t r = r0; r < r1; r++) {
                const float *row = w + r * cols;
                for (size_t j = j0; j < j1; j++) {
                    size_t a = j * bc, b = a + bc < c1 ? a + bc : c1;
                    float m = amax_avx2(row + a, b - a);
                    amax[j - j0] = m > amax[j - j0] ? m : amax[j - j0];
                }
            }
            float kf[WP_FP8_TILE_CHUNK];   /* per block: the factor its values take */
            wp_fp8_block_scales(amax, j1 - j0, fmt, scales, bi * nbc + j0, kf);
            for (size_t r = r0; r < r1; r++) {
                const float *row = w + r * cols;
                uint8_t *qr = q + r * cols;
                for (size_t j = j0; j < j1; j++) {
                    size_t a = j * bc, b = a + bc < c1 ? a + bc : c1, c = a;
                    if (fmt == WP_SCALE_E8M0) {
                        float kk = kf[j - j0];
                        __m256 k = _mm256_set1_ps(kk);
                        for (; c + 8 <= b; c += 8)
                            _mm_storel_epi64((__m128i *)(qr + c), bytes8(e4m3_8(_mm256_mul_ps(_mm256_loadu_ps(row + c), k))));
                        for (; c < b; c++) qr[c] = wp_e4m3_enc(row[c] * kk);
                    } else {
                        float ss = kf[j - j0];
                        __m256 s = _mm256_set1_ps(ss);
                        for (; c + 8 <= b; c += 8)
                            _mm_storel_epi64((__m128i *)(qr + c), bytes8(e4m3_8(_mm256_div_ps(_mm256_loadu_ps(row + c), s))));
                        for (; c < b; c++) qr[c] = wp_e4m3_enc(row[c] / ss);
                    }
                }
            }
        }
    }
}

QK2 static void mxfp4_quant_avx2(const float *w, size_t rows, size_t cols, uint8_t *q, uint8_t *scales)
{
    size_t ng = rows * (cols / 32);
    for (size_t g = 0; g < ng; g++) {
        const float *v = w + g * 32;
        __m256 x[4];
        __m256 m = _mm256_setzero_ps();
        for (int i = 0; i < 4; i++) m = amax_step(m, x[i] = _mm256_loadu_ps(v + 8 * i));
        uint8_t c = wp_fp4_weight_scale_e8m0(hmax(m));
        scales[g] = c;
        __m256 k = _mm256_set1_ps(1.0f / wp_e8m0_dec(c));
        pack4_16(e2m1_8(_mm256_mul_ps(x[0], k)), e2m1_8(_mm256_mul_ps(x[1], k)), q + g * 16);
        pack4_16(e2m1_8(_mm256_mul_ps(x[2], k)), e2m1_8(_mm256_mul_ps(x[3], k)), q + g * 16 + 8);
    }
}

/* 8 groups at a time: amaxes in one vector, scales encoded together. */
QK2 static void nvfp4_quant_avx2(const float *w, size_t rows, size_t cols, float global, uint8_t *q,
                                 uint8_t *scales)
{
    size_t ng = rows * (cols / 16), g = 0;
    const __m256 six = _mm256_set1_ps(6.0f), gl = _mm256_set1_ps(global);
    for (; g + 8 <= ng; g += 8) {
        const float *v = w + g * 16;
        float am[8];
        for (int i = 0; i < 8; i++)
            am[i] = hmax(amax_step(amax_step(_mm256_setzero_ps(), _mm256_loadu_ps(v + 16 * i)),
                                   _mm256_loadu_ps(v + 16 * i + 8)));
        __m256 t = _mm256_div_ps(_mm256_div_ps(_mm256_loadu_ps(am), six), gl);
        __m256i sc = _mm256_and_si256(e4m3_8(t), _mm256_set1_epi32(0x7F));
        _mm_storel_epi64((__m128i *)(scales + g), bytes8(sc));
        __m256 s = _mm256_mul_ps(_mm256_i32gather_ps(wp_e4m3_lut, sc, 4), gl);
        float sv[8];
        _mm256_storeu_ps(sv, s);
        for (int i = 0; i < 8; i++) {
            uint8_t *o = q + (g + (size_t)i) * 8;
            if (sv[i] != 0.0f) {
                __m256 d = _mm256_set1_ps(sv[i]);
                pack4_16(e2m1_8(_mm256_div_ps(_mm256_loadu_ps(v + 16 * i), d)),
                         e2m1_8(_mm256_div_ps(_mm256_loadu_ps(v + 16 * i + 8), d)), o);
            } else {
                memset(o, 0, 8);
            }
        }
    }
    for (; g < ng; g++) {
        const float *v = w + g * 16;
        __m256 x0 = _mm256_loadu_ps(v), x1 = _mm256_loadu_ps(v + 8);
        float m = hmax(amax_step(amax_step(_mm256_setzero_ps(), x0), x1));
        uint8_t sc = wp_e4m3_enc(m / 6.0f / global) & 0x7F;
        scales[g] = sc;
        float s = wp_e4m3_lut[sc] * global;
        if (s != 0.0f) {
            __m256 d = _mm256_set1_ps(s);
            pack4_16(e2m1_8(_mm256_div_ps(x0, d)), e2m1_8(_mm256_div_ps(x1, d)), q + g * 8);
        } else {
            memset(q + g * 8, 0, 8);
        }
    }
}

/* ---- Row dequantisers (weight.c) ------------------------------------------------------ */

/* 8 E2M1 values from 4 bytes: the magnitude from the first half of the
 * codec's table, the sign bit (bit 3) moved to bit 31. */
QK2 static inline __m256 e2m1_dec8(const uint8_t *c, __m256 tab)
{
    uint32_t b;
    memcpy(&b, c, 4);
    __m256i w = _mm256_cvtepu8_epi64(_mm_cvtsi32_si128((int)b));
    __m256i v = _mm256_and_si256(_mm256_or_si256(w, _mm256_slli_epi64(w, 28)), _mm256_set1_epi32(15));
    __m256 m = _mm256_permutevar8x32_ps(tab, v);   /* uses the low 3 bits */
    __m256i sgn = _mm256_slli_epi32(_mm256_and_si256(v, _mm256_set1_epi32(8)), 28);
    return _mm256_castsi256_ps(_mm256_or_si256(_mm256_castps_si256(m), sgn));
}

QK2 static void fp8_dequant_seg_avx2(const uint8_t *q, size_t n, float s, float *out)
{
    __m256 k = _mm256_set1_ps(s);
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256i idx = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(q + i)));
        _mm256_storeu_ps(out + i, _mm256_mul_ps(_mm256_i32gather_ps(wp_e4m3_lut, idx, 4), k));
    }
    for (; i < n; i++) out[i] = wp_e4m3_lut[q[i]] * s;
}

QK2 static void mxfp4_dequant_row_avx2(const uint8_t *q, const uint8_t *sc, size_t cols, float *out)
{
    const __m256 tab = _mm256_loadu_ps(wp_e2m1_lut);
    for (size_t g = 0; g < cols / 32; g++) {
        __m256 s = _mm256_set1_ps(wp_e8m0_dec(sc[g]));
        for (int i = 0; i < 4; i++)
            _mm256_storeu_ps(out + g * 32 + 8 * i, _mm256_mul_ps(e2m1_dec8(q + g * 16 + 4 * i, tab), s));
    }
}

QK2 static void nvfp4_dequant_row_avx2(const uint8_t *q, const uint8_t *sc, size_t cols, float global, float *out)
{
    const __m256 tab = _mm256_loadu_ps(wp_e2m1_lut), gl = _mm256_set1_ps(global);
    for (size_t g = 0; g < cols / 16; g++) {
        __m256 s = _mm256_set1_ps(wp_e4m3_lut[sc[g]]);
        for (int i = 0; i < 2; i++)
            _mm256_storeu_ps(out + g * 16 + 8 * i, _mm256_mul_ps(_mm256_mul_ps(e2m1_dec8(q + g * 8 + 4 * i, tab), s), gl));
    }
}

const wp_qkernels wp_qk_avx2 = {
    .name = "avx2",
    .fp8_block_quant = fp8_block_quant_avx2,
    .mxfp4_quant = mxfp4_quant_avx2,
    .nvfp4_quant = nvfp4_quant_avx2,
    .amax = amax_avx2,
    .mxfp4_amax = wp_mxfp4_amax_scalar,   /* scalar: a small share of a convert */
    .fp8_dequant_seg = fp8_dequant_seg_avx2,
    .mxfp4_dequant_row = mxfp4_dequant_row_avx2,
    .nvfp4_dequant_row = nvfp4_dequant_row_avx2,
};
#endif
