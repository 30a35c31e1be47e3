/*
 * block_avx512.c — the AVX-512 (F, BW, VL, DQ) kernel set of the lossy weight
 * quantisers (quant_priv.h wp_qkernels).  Bit for bit the scalar oracle in
 * block.c: the same divisions and multiplies (IEEE, so a lane computes what
 * the scalar line does), the same E4M3/E2M1 rounding done on the fp32 bits
 * the way wp_rne_mag does it, NaN ignored by amax the way `a > m ? a : m`
 * ignores it (VMAXPS returns its second operand when either is NaN).  Every
 * function carries its target attribute; block.c hands this set out only on a
 * CPU that has the features.  tests/test_quant_fast.c compares it with the
 * scalar set.
 */
#if defined(__x86_64__)
#include <immintrin.h>

#include "quant/quant_priv.h"

#define QK512 __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx2,fma")))

/* spec §3.2 E4M3 of 16 floats: codes in the low byte of each 32-bit lane.
 * |x| >= 2^-6 rounds as wp_rne_mag's normal path (rebias, add half-1 plus the
 * odd bit, shift); below, RNE(|x| · 2^9) (exact scaling, round to nearest
 * even integer) is the subnormal code; >= 448 and inf clamp to 0x7E; NaN is
 * 0x7F; the sign is bit 7. */
QK512 static inline __m512i e4m3_16(__m512 x)
{
    __m512i u = _mm512_castps_si512(x);
    __m512i s = _mm512_and_si512(_mm512_srli_epi32(u, 24), _mm512_set1_epi32(0x80));
    __m512i a = _mm512_and_si512(u, _mm512_set1_epi32(0x7FFFFFFF));
    __m512i v = _mm512_sub_epi32(a, _mm512_set1_epi32(120 << 23));
    v = _mm512_add_epi32(v, _mm512_add_epi32(_mm512_set1_epi32(0x7FFFF),
                                             _mm512_and_si512(_mm512_srli_epi32(v, 20), _mm512_set1_epi32(1))));
    __m512i cn = _mm512_srli_epi32(v, 20);
    __m512 sub = _mm512_mul_ps(_mm512_castsi512_ps(a), _mm512_set1_ps(512.0f));
    __m512i cs = _mm512_cvt_roundps_epi32(sub, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512i c = _mm512_mask_blend_epi32(_mm512_cmpge_epi32_mask(a, _mm512_set1_epi32(0x3C800000)), cs, cn);
    c = _mm512_mask_blend_epi32(_mm512_cmpge_epi32_mask(a, _mm512_set1_epi32(0x43E00000)), c,
                                _mm512_set1_epi32(0x7E));
    c = _mm512_mask_blend_epi32(_mm512_cmpgt_epi32_mask(a, _mm512_set1_epi32(0x7F800000)), c,
                                _mm512_set1_epi32(0x7F));
    return _mm512_or_si512(c, s);
}

/* spec §3.4 E2M1 of 16 floats: |x| >= 1 as wp_rne_mag(a, 1, 0), below it
 * RNE(|x| · 2); >= 6 and inf clamp to 7; the sign is bit 3; NaN is +6 (7)
 * whatever its sign, as wp_e2m1_enc. */
QK512 static inline __m512i e2m1_16(__m512 x)
{
    __m512i u = _mm512_castps_si512(x);
    __m512i s = _mm512_and_si512(_mm512_srli_epi32(u, 28), _mm512_set1_epi32(8));
    __m512i a = _mm512_and_si512(u, _mm512_set1_epi32(0x7FFFFFFF));
    __m512i v = _mm512_sub_epi32(a, _mm512_set1_epi32(126 << 23));
    v = _mm512_add_epi32(v, _mm512_add_epi32(_mm512_set1_epi32(0x1FFFFF),
                                             _mm512_and_si512(_mm512_srli_epi32(v, 22), _mm512_set1_epi32(1))));
    __m512i cn = _mm512_srli_epi32(v, 22);
    __m512 sub = _mm512_add_ps(_mm512_castsi512_ps(a), _mm512_castsi512_ps(a));   /* |x| · 2, exact */
    __m512i cs = _mm512_cvt_roundps_epi32(sub, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512i c = _mm512_mask_blend_epi32(_mm512_cmpge_epi32_mask(a, _mm512_set1_epi32(0x3F800000)), cs, cn);
    c = _mm512_mask_blend_epi32(_mm512_cmpge_epi32_mask(a, _mm512_set1_epi32(0x40C00000)), c,
                                _mm512_set1_epi32(7));
    c = _mm512_or_si512(c, s);
    return _mm512_mask_blend_epi32(_mm512_cmpgt_epi32_mask(a, _mm512_set1_epi32(0x7F800000)), c,
                                   _mm512_set1_epi32(7));
}

/* 16 E2M1 codes -> 8 bytes, element 2j in the low nibble (spec §3.4). */
QK512 static inline void pack4_16(__m512i c, uint8_t *out)
{
    __m512i t = _mm512_or_si512(c, _mm512_srli_epi64(c, 28));
    _mm_storel_epi64((__m128i *)out, _mm512_cvtepi64_epi8(t));
}

QK512 static inline __m512 abs16(__m512 x)
{
    return _mm512_castsi512_ps(_mm512_and_si512(_mm512_castps_si512(x), _mm512_set1_epi32(0x7FFFFFFF)));
}

/* max(m, |x|) per lane, NaN in x ignored (VMAXPS returns its second operand). */
QK512 static inline __m512 amax_step(__m512 m, __m512 x) { return _mm512_max_ps(abs16(x), m); }

QK512 static float amax_512(const float *x, size_t n)
{
    __m512 m0 = _mm512_setzero_ps(), m1 = _mm512_setzero_ps();
    size_t i = 0;
    for (; i + 32 <= n; i += 32) {
        m0 = amax_step(m0, _mm512_loadu_ps(x + i));
        m1 = amax_step(m1, _mm512_loadu_ps(x + i + 16));
    }
    for (; i < n; i += 16) {
        __mmask16 k = n - i >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (n - i)) - 1);
        m0 = amax_step(m0, _mm512_maskz_loadu_ps(k, x + i));   /* zeros leave the max alone */
    }
    return _mm512_reduce_max_ps(_mm512_max_ps(m0, m1));
}

/* The largest lane of each of 16 vectors, as one vector (lane i: vector i),
 * by a transposing tree of max (45 instructions instead of 16 horizontal
 * reductions).  No lane may be NaN (amax_step has removed them), so the order
 * of the max operations cannot matter. */
QK512 static inline __m512 hmax16x16(const __m512 *v)
{
    __m512 x[8], y[4], z[2];
    for (int i = 0; i < 8; i++)   /* per 128-bit lane: [a b a b] partials of v[2i], v[2i+1] */
        x[i] = _mm512_max_ps(_mm512_unpacklo_ps(v[2 * i], v[2 * i + 1]), _mm512_unpackhi_ps(v[2 * i], v[2 * i + 1]));
    for (int i = 0; i < 4; i++) {   /* per 128-bit lane: [a b c d] partials of v[4i..4i+3] */
        __m512d a = _mm512_castps_pd(x[2 * i]), b = _mm512_castps_pd(x[2 * i + 1]);
        y[i] = _mm512_max_ps(_mm512_castpd_ps(_mm512_unpacklo_pd(a, b)), _mm512_castpd_ps(_mm512_unpackhi_pd(a, b)));
    }
    for (int i = 0; i < 2; i++)   /* lanes 0,1: y[2i] halves; lanes 2,3: y[2i+1] halves */
        z[i] = _mm512_max_ps(_mm512_shuffle_f32x4(y[2 * i], y[2 * i + 1], 0x88),
                             _mm512_shuffle_f32x4(y[2 * i], y[2 * i + 1], 0xDD));
    return _mm512_max_ps(_mm512_shuffle_f32x4(z[0], z[1], 0x88), _mm512_shuffle_f32x4(z[0], z[1], 0xDD));
}

/* ---- FP8 br × bc blocks: block.c's passes, with vector amax and codes ------------ */


QK512 static void fp8_block_quant_512(const float *w, size_t rows, size_t cols, size_t br, size_t bc,
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
                    float m = amax_512(row + a, b - a);
                    amax[j - j0] = m > amax[j - j0] ? m : amax[j - j0];
                }
            }
            float kf[WP_FP8_TILE_CHUNK];   /* per block: the factor its values take */
            wp_fp8_block_scales(amax, j1 - j0, fmt, scales, bi * nbc + j0, kf);
            for (size_t r = r0; r < r1; r++) {
                const float *row = w + r * cols;
                uint8_t *qr = q + r * cols;
                for (size_t j = j0; j < j1; j++) {
                    size_t a = j * bc, b = a + bc < c1 ? a + bc : c1;
                    int e8 = fmt == WP_SCALE_E8M0;
                    __m512 k = _mm512_set1_ps(kf[j - j0]);
                    for (size_t c = a; c < b; c += 16) {
                        __mmask16 m = b - c >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (b - c)) - 1);
                        __m512 x = _mm512_maskz_loadu_ps(m, row + c);
                        x = e8 ? _mm512_mul_ps(x, k) : _mm512_div_ps(x, k);
                        _mm512_mask_cvtepi32_storeu_epi8(qr + c, m, e4m3_16(x));
                    }
                }
            }
        }
    }
}

/* ---- MXFP4 (1×32, E8M0) ------------------------------------------------------------ */

QK512 static void mxfp4_quant_512(const float *w, size_t rows, size_t cols, uint8_t *q, uint8_t *scales)
{
    size_t ng = rows * (cols / 32), g = 0;
    for (; g + 16 <= ng; g += 16) {   /* 16 groups: amaxes by one tree, then codes */
        const float *v = w + g * 32;
        __m512 x[16];
        for (int i = 0; i < 16; i++)
            x[i] = amax_step(amax_step(_mm512_setzero_ps(), _mm512_loadu_ps(v + 32 * i)), _mm512_loadu_ps(v + 32 * i + 16));
        float am[16];
        _mm512_storeu_ps(am, hmax16x16(x));
        for (int i = 0; i < 16; i++) {
            uint8_t c = wp_fp4_weight_scale_e8m0(am[i]);
            scales[g + (size_t)i] = c;
            __m512 k = _mm512_set1_ps(1.0f / wp_e8m0_dec(c));
            uint8_t *o = q + (g + (size_t)i) * 16;
            pack4_16(e2m1_16(_mm512_mul_ps(_mm512_loadu_ps(v + 32 * i), k)), o);
            pack4_16(e2m1_16(_mm512_mul_ps(_mm512_loadu_ps(v + 32 * i + 16), k)), o + 8);
        }
    }
    for (; g < ng; g++) {
        const float *v = w + g * 32;
        __m512 x0 = _mm512_loadu_ps(v), x1 = _mm512_loadu_ps(v + 16);
        float m = _mm512_reduce_max_ps(_mm512_max_ps(amax_step(_mm512_setzero_ps(), x0),
                                                     amax_step(_mm512_setzero_ps(), x1)));
        uint8_t c = wp_fp4_weight_scale_e8m0(m);
        scales[g] = c;
        __m512 k = _mm512_set1_ps(1.0f / wp_e8m0_dec(c));
        pack4_16(e2m1_16(_mm512_mul_ps(x0, k)), q + g * 16);
        pack4_16(e2m1_16(_mm512_mul_ps(x1, k)), q + g * 16 + 8);
    }
}

/* ---- NVFP4 (1×16, E4M3 scale, f32 global) ------------------------------------------- */

/* 16 groups at a time: their amaxes in one vector, the group scales
 * E4M3(amax / 6 / global) (two true divisions, as the scalar line) encoded
 * together, decoded through the table, then each group divided by its own. */
QK512 static void nvfp4_quant_512(const float *w, size_t rows, size_t cols, float global, uint8_t *q,
                                  uint8_t *scales)
{
    size_t ng = rows * (cols / 16), g = 0;
    const __m512 six = _mm512_set1_ps(6.0f), gl = _mm512_set1_ps(global);
    for (; g + 16 <= ng; g += 16) {
        const float *v = w + g * 16;
        __m512 x[16];
        for (int i = 0; i < 16; i++) x[i] = amax_step(_mm512_setzero_ps(), _mm512_loadu_ps(v + 16 * i));
        __m512 t = _mm512_div_ps(_mm512_div_ps(hmax16x16(x), six), gl);
        __m512i sc = _mm512_and_si512(e4m3_16(t), _mm512_set1_epi32(0x7F));
        _mm_storeu_si128((__m128i *)(scales + g), _mm512_cvtepi32_epi8(sc));
        __m512 s = _mm512_mul_ps(_mm512_i32gather_ps(sc, wp_e4m3_lut, 4), gl);
        float sv[16];
        _mm512_storeu_ps(sv, s);
        for (int i = 0; i < 16; i++) {
            __m512i c = sv[i] != 0.0f ? e2m1_16(_mm512_div_ps(_mm512_loadu_ps(v + 16 * i), _mm512_set1_ps(sv[i])))
                                      : _mm512_setzero_si512();
            pack4_16(c, q + (g + (size_t)i) * 8);
        }
    }
    for (; g < ng; g++) {
        const float *v = w + g * 16;
        __m512 x = _mm512_loadu_ps(v);
        float m = _mm512_reduce_max_ps(amax_step(_mm512_setzero_ps(), x));
        uint8_t sc = wp_e4m3_enc(m / 6.0f / global) & 0x7F;
        scales[g] = sc;
        float s = wp_e4m3_lut[sc] * global;
        pack4_16(s != 0.0f ? e2m1_16(_mm512_div_ps(x, _mm512_set1_ps(s))) : _mm512_setzero_si512(), q + g * 8);
    }
}

/* ---- The amax of MXFP4 codes (wp_mxfp4_amax) ------------------------------------------ */

/* 16 groups at a time: each group's largest code magnitude (the byte max of
 * its low and high nibbles & 7, reduced within its 128-bit lane), the 16
 * magnitudes gathered into one vector, then lut[m] * 2^(e-127) as the
 * scalar line multiplies (E8M0 decoded on the bits: 0 -> 2^-127, 0xFF ->
 * NaN), and the running max with NaN ignored (VMAXPS returns its second
 * operand when the first is NaN). */
QK512 static float mxfp4_amax_512(const uint8_t *q, const uint8_t *sc, size_t ng)
{
    const __m512i k7 = _mm512_set1_epi8(7);
    const __m512 tab = _mm512_loadu_ps(wp_e2m1_lut);   /* entries 0..7: the magnitudes */
    __m512 acc = _mm512_setzero_ps();
    size_t g = 0;
    for (; g + 16 <= ng; g += 16) {
        __m512i mm[4];
        for (int i = 0; i < 4; i++) {   /* 4 groups per vector, one per 128-bit lane */
            __m512i v = _mm512_loadu_si512((const void *)(q + (g + 4 * (size_t)i) * 16));
            __m512i m = _mm512_max_epu8(_mm512_and_si512(v, k7), _mm512_and_si512(_mm512_srli_epi16(v, 4), k7));
            m = _mm512_max_epu8(m, _mm512_bsrli_epi128(m, 8));
            m = _mm512_max_epu8(m, _mm512_bsrli_epi128(m, 4));
            m = _mm512_max_epu8(m, _mm512_bsrli_epi128(m, 2));
            m = _mm512_max_epu8(m, _mm512_bsrli_epi128(m, 1));
            mm[i] = _mm512_and_si512(m, _mm512_set1_epi32(0xFF));   /* lane 4j: group j's max, as a dword */
        }
        /* dword 4j of mm[i] is group 4i + j: gather dwords 0, 4, 8, 12 of each */
        const __m512i pick = _mm512_set_epi32(28, 24, 20, 16, 12, 8, 4, 0, 28, 24, 20, 16, 12, 8, 4, 0);
        __m512i lo = _mm512_permutex2var_epi32(mm[0], pick, mm[1]);   /* groups 0..7 in dwords 0..7 */
        __m512i hi = _mm512_permutex2var_epi32(mm[2], pick, mm[3]);   /* groups 8..15 in dwords 0..7 */
        __m512i idx = _mm512_inserti64x4(lo, _mm512_castsi512_si256(hi), 1);
        __m512 mag = _mm512_permutexvar_ps(idx, tab);
        __m512i e = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(sc + g)));
        __m512i bits = _mm512_slli_epi32(e, 23);
        bits = _mm512_mask_blend_epi32(_mm512_cmpeq_epi32_mask(e, _mm512_setzero_si512()), bits,
                                       _mm512_set1_epi32(0x00400000));
        bits = _mm512_mask_blend_epi32(_mm512_cmpeq_epi32_mask(e, _mm512_set1_epi32(255)), bits,
                                       _mm512_set1_epi32(0x7FC00000));
        acc = _mm512_max_ps(_mm512_mul_ps(mag, _mm512_castsi512_ps(bits)), acc);
    }
    float m = _mm512_reduce_max_ps(acc);   /* no NaN in acc */
    float t = wp_mxfp4_amax_scalar(q + g * 16, sc + g, ng - g);
    return t > m ? t : m;
}

/* ---- Row dequantisers (weight.c) ------------------------------------------------------ */

/* 16 E2M1 values from 8 bytes through the codec's own table: byte j into
 * 64-bit lane j, its high nibble moved to bit 32. */
QK512 static inline __m512 e2m1_dec16(const uint8_t *c, __m512 tab)
{
    __m512i w = _mm512_cvtepu8_epi64(_mm_loadl_epi64((const __m128i *)c));
    __m512i v = _mm512_and_si512(_mm512_or_si512(w, _mm512_slli_epi64(w, 28)), _mm512_set1_epi32(15));
    return _mm512_permutexvar_ps(v, tab);
}

QK512 static void fp8_dequant_seg_512(const uint8_t *q, size_t n, float s, float *out)
{
    __m512 k = _mm512_set1_ps(s);
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m512i idx = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(q + i)));
        _mm512_storeu_ps(out + i, _mm512_mul_ps(_mm512_i32gather_ps(idx, wp_e4m3_lut, 4), k));
    }
    for (; i < n; i++) out[i] = wp_e4m3_lut[q[i]] * s;
}

QK512 static void mxfp4_dequant_row_512(const uint8_t *q, const uint8_t *sc, size_t cols, float *out)
{
    const __m512 tab = _mm512_loadu_ps(wp_e2m1_lut);
    for (size_t g = 0; g < cols / 32; g++) {
        __m512 s = _mm512_set1_ps(wp_e8m0_dec(sc[g]));
        _mm512_storeu_ps(out + g * 32, _mm512_mul_ps(e2m1_dec16(q + g * 16, tab), s));
        _mm512_storeu_ps(out + g * 32 + 16, _mm512_mul_ps(e2m1_dec16(q + g * 16 + 8, tab), s));
    }
}

QK512 static void nvfp4_dequant_row_512(const uint8_t *q, const uint8_t *sc, size_t cols, float global, float *out)
{
    const __m512 tab = _mm512_loadu_ps(wp_e2m1_lut), gl = _mm512_set1_ps(global);
    for (size_t g = 0; g < cols / 16; g++) {
        __m512 s = _mm512_set1_ps(wp_e4m3_lut[sc[g]]);
        _mm512_storeu_ps(out + g * 16, _mm512_mul_ps(_mm512_mul_ps(e2m1_dec16(q + g * 8, tab), s), gl));
    }
}

const wp_qkernels wp_qk_avx512 = {
    .name = "avx512",
    .fp8_block_quant = fp8_block_quant_512,
    .mxfp4_quant = mxfp4_quant_512,
    .nvfp4_quant = nvfp4_quant_512,
    .amax = amax_512,
    .mxfp4_amax = mxfp4_amax_512,
    .fp8_dequant_seg = fp8_dequant_seg_512,
    .mxfp4_dequant_row = mxfp4_dequant_row_512,
    .nvfp4_dequant_row = nvfp4_dequant_row_512,
};
#endif
