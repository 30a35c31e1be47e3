/*
 * block.c — block quantisers: the reference activation simulations (spec
 * §3.6), FP8 R×C weight blocks, MXFP4, NVFP4 and the MXFP4 -> FP8 cast of
 * spec §3.7.
 *
 * Every scale here is applied as a multiply by an exact power of two (or, for
 * F32 and NVFP4 scales, a true division), never through a function pointer
 * per element: these loops run over tens of GB in a conversion.
 *
 * The FP8, MXFP4 and NVFP4 weight quantisers here are the scalar oracle
 * (wp_qk_scalar); the public entry points run the best kernel set this CPU
 * has (block_avx2.c, block_avx512.c), which returns the same bytes.
 */
#include <assert.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "quant/quant.h"
#include "quant/quant_priv.h"

/* amax ignores NaN (a > m is false for NaN) so one NaN does not poison the
 * scale of its block; the NaN itself encodes to NaN (FP8) or saturates (FP4). */
static inline float amax_of(const float *x, size_t n)
{
    float m = 0.0f;
    for (size_t i = 0; i < n; i++) {
        float a = fabsf(x[i]);
        m = a > m ? a : m;
    }
    return m;
}

/* spec §3.6 act_quant step 1–3: s = pow2ceil(fl32(max(amax, 1e-4) · fl32(1/448))). */
static inline float act_scale_fp8(float amax)
{
    if (!(amax >= 1e-4f))
        amax = 1e-4f;
    return wp_pow2ceil_inl(amax * wp_f32_from_bits(WP_INV448_BITS));
}

/* spec §3.6 fp4_act_quant: floor 6·2^-126, multiply by fl32(1/6). */
static inline float act_scale_fp4(float amax)
{
    const float floor4 = 0x1.8p-124f;   /* 6·2^-126 */
    if (!(amax >= floor4))
        amax = floor4;
    return wp_pow2ceil_inl(amax * wp_f32_from_bits(WP_INV6_BITS));
}

/* x <- fp32(q) · s.  spec §3.6 writes bf16(fp32(q) · s); the product of an
 * E4M3/E2M1 value (<= 4 significant bits) and a power of two >= 2^-126 is
 * exact in fp32 and in bf16, so the bf16 rounding is the identity and is
 * skipped.  x · (1/s) equals x / s bit for bit because 1/s is exact. */
void wp_act_quant_sim(float *x, size_t n, size_t block)
{
    assert(block > 0 && n % block == 0);
    for (size_t b = 0; b < n; b += block) {
        float *v = x + b;
        float s = act_scale_fp8(amax_of(v, block));
        float inv = 1.0f / s;
        for (size_t i = 0; i < block; i++)
            v[i] = wp_e4m3_lut[wp_e4m3_enc(v[i] * inv)] * s;
    }
}

void wp_fp4_act_quant_sim(float *x, size_t n, size_t block)
{
    assert(block > 0 && n % block == 0);
    for (size_t b = 0; b < n; b += block) {
        float *v = x + b;
        float s = act_scale_fp4(amax_of(v, block));
        float inv = 1.0f / s;
        for (size_t i = 0; i < block; i++)
            v[i] = wp_e2m1_lut[wp_e2m1_enc(v[i] * inv)] * s;
    }
}

void wp_act_quant(const float *x, size_t n, size_t block, uint8_t *q, uint8_t *scale_e8m0)
{
    assert(block > 0 && n % block == 0);
    for (size_t b = 0; b < n; b += block) {
        float s = act_scale_fp8(amax_of(x + b, block));
        float inv = 1.0f / s;
        for (size_t i = 0; i < block; i++)
            q[b + i] = wp_e4m3_enc(x[b + i] * inv);
        /* s is a normal power of two in [2^-22, 2^127] here (amax >= 1e-4),
         * or inf for an infinite input, which E8M0 can only call NaN. */
        uint32_t u = wp_f32_bits(s);
        scale_e8m0[b / block] = u >= 0x7F800000u ? 0xFF : (uint8_t)(u >> 23);
    }
}

/* ---- FP8 weights, br × bc blocks ------------------------------------------------ */

/* The weight rule of spec §3.6 (mirroring act_quant): s = pow2ceil(amax ·
 * fl32(1/448)) kept inside E8M0's range.  An all-zero block has no natural
 * scale; it gets 1 (code 127), the same as the F32 rule
 * (wp_fp8_weight_scale_e8m0, quant_priv.h). */


static void fp8_block_quant_scalar(const float *w, size_t rows, size_t cols, size_t br, size_t bc,
                                   wp_scale_fmt fmt, uint8_t *q, void *scales)
{
    assert(br > 0 && bc > 0);
    size_t nbc = (cols + bc - 1) / bc;
    for (size_t r0 = 0; r0 < rows; r0 += br) {
        size_t r1 = r0 + br < rows ? r0 + br : rows;
        size_t bi = r0 / br;
        for (size_t j0 = 0; j0 < nbc; j0 += WP_FP8_TILE_CHUNK) {
            size_t j1 = j0 + WP_FP8_TILE_CHUNK < nbc ? j0 + WP_FP8_TILE_CHUNK : nbc;
            float amax[WP_FP8_TILE_CHUNK] = {0};
            size_t c1 = j1 * bc < cols ? j1 * bc : cols;
            /* Pass 1: amax of each block of this band, walking rows in order. */
            for (size_t r = r0; r < r1; r++) {
                const float *row = w + r * cols;
                for (size_t j = j0; j < j1; j++) {
                    size_t a = j * bc, b = a + bc < c1 ? a + bc : c1;
                    float m = amax_of(row + a, b - a);
                    amax[j - j0] = m > amax[j - j0] ? m : amax[j - j0];
                }
            }
            /* Pass 2: scales, then codes. */
            float kf[WP_FP8_TILE_CHUNK];   /* per block: the factor its values take */
            wp_fp8_block_scales(amax, j1 - j0, fmt, scales, bi * nbc + j0, kf);
            for (size_t r = r0; r < r1; r++) {
                const float *row = w + r * cols;
                uint8_t *qr = q + r * cols;
                for (size_t j = j0; j < j1; j++) {
                    size_t a = j * bc, b = a + bc < c1 ? a + bc : c1;
                    if (fmt == WP_SCALE_E8M0) {
                        float k = kf[j - j0];
                        for (size_t c = a; c < b; c++)
                            qr[c] = wp_e4m3_enc(row[c] * k);
                    } else {
                        float s = kf[j - j0];
                        for (size_t c = a; c < b; c++)
                            qr[c] = wp_e4m3_enc(row[c] / s);
                    }
                }
            }
        }
    }
}

void wp_fp8_block_dequant(const uint8_t *q, const void *scales, size_t rows, size_t cols,
                          size_t br, size_t bc, wp_scale_fmt fmt, float *out)
{
    wp_qweight w = {
        .enc = WP_ENC_FP8, .rows = rows, .cols = cols, .data = q, .scale = scales,
        .sfmt = fmt, .br = (uint32_t)br, .bc = (uint32_t)bc,
    };
    wp_qweight_dequant_rows(&w, 0, rows, out);
}

/* ---- MXFP4 (1×32, E8M0) ------------------------------------------------------------ */

/* spec §3.6 weight rule: s = pow2ceil(amax_32 · fl32(1/6)); all-zero group -> 1
 * (wp_fp4_weight_scale_e8m0, quant_priv.h). */

static void mxfp4_quant_scalar(const float *w, size_t rows, size_t cols, uint8_t *q, uint8_t *scales)
{
    assert(cols % 32 == 0);
    size_t ng = rows * (cols / 32);
    for (size_t g = 0; g < ng; g++) {
        const float *v = w + g * 32;
        uint8_t c = wp_fp4_weight_scale_e8m0(amax_of(v, 32));
        scales[g] = c;
        float k = 1.0f / wp_e8m0_dec(c);
        uint8_t *p = q + g * 16;
        /* spec §3.4: element 2j in the low nibble, 2j+1 in the high nibble. */
        for (size_t j = 0; j < 16; j++)
            p[j] = (uint8_t)(wp_e2m1_enc(v[2 * j] * k) | wp_e2m1_enc(v[2 * j + 1] * k) << 4);
    }
}

void wp_mxfp4_dequant(const uint8_t *q, const uint8_t *scales, size_t rows, size_t cols, float *out)
{
    wp_qweight w = { .enc = WP_ENC_MXFP4, .rows = rows, .cols = cols, .data = q, .scale = scales };
    wp_qweight_dequant_rows(&w, 0, rows, out);
}

/* The largest code magnitude (0..7, E2M1's magnitude order is its code
 * order) of one 32-element group: 16 bytes, two codes each. */
static inline unsigned fp4_group_maxmag(const uint8_t *p)
{
    unsigned m = 0;
    for (int j = 0; j < 16; j++) {
        unsigned lo = p[j] & 7u, hi = (p[j] >> 4) & 7u;
        m = lo > m ? lo : m;
        m = hi > m ? hi : m;
    }
    return m;
}

float wp_mxfp4_amax_scalar(const uint8_t *q, const uint8_t *sc, size_t ng)
{
    float m = 0.0f;
    for (size_t g = 0; g < ng; g++) {
        /* the dequantiser's own multiply (weight.c: lut[c] * s), on the
         * largest magnitude: rounding (overflow to inf included) is monotone */
        float a = wp_e2m1_lut[fp4_group_maxmag(q + g * 16)] * wp_e8m0_dec(sc[g]);
        m = a > m ? a : m;   /* NaN (a 0xFF scale) ignored, as amax_of */
    }
    return m;
}

float wp_mxfp4_amax(const uint8_t *q, const uint8_t *scales, size_t rows, size_t cols)
{
    assert(cols % 32 == 0);
    return wp_qkernels_active()->mxfp4_amax(q, scales, rows * (cols / 32));
}

/* ---- NVFP4 (1×16, E4M3 scale, f32 global) ------------------------------------------- */

float wp_nvfp4_global_scale(const float *w, size_t n)
{
    float m = wp_qkernels_active()->amax(w, n);
    return m == 0.0f ? 1.0f : m / (448.0f * 6.0f);
}

static void nvfp4_quant_scalar(const float *w, size_t rows, size_t cols, float global, uint8_t *q,
                               uint8_t *scales)
{
    assert(cols % 16 == 0);
    size_t ng = rows * (cols / 16);
    for (size_t g = 0; g < ng; g++) {
        const float *v = w + g * 16;
        /* The group scale amax/6 is expressed in units of `global` and rounded
         * to E4M3 (clamped at 448, so global = amax_tensor/2688 keeps every
         * group in range); elements are then divided by the scale actually
         * stored, so rounding of the scale is absorbed by the codes. */
        uint8_t sc = wp_e4m3_enc(amax_of(v, 16) / 6.0f / global);
        sc &= 0x7F;   /* a negative global would flip it; scales are magnitudes */
        scales[g] = sc;
        float s = wp_e4m3_lut[sc] * global;
        uint8_t *p = q + g * 8;
        for (size_t j = 0; j < 8; j++) {
            uint8_t lo = 0, hi = 0;
            if (s != 0.0f) {
                lo = wp_e2m1_enc(v[2 * j] / s);
                hi = wp_e2m1_enc(v[2 * j + 1] / s);
            }
            p[j] = (uint8_t)(lo | hi << 4);
        }
    }
}

void wp_nvfp4_dequant(const uint8_t *q, const uint8_t *scales, float global, size_t rows,
                      size_t cols, float *out)
{
    wp_qweight w = { .enc = WP_ENC_NVFP4, .rows = rows, .cols = cols, .data = q, .scale = scales,
                     .global = global };
    wp_qweight_dequant_rows(&w, 0, rows, out);
}

/* ---- spec §3.7: MXFP4 -> FP8 128×128 ---------------------------------------------------
 * Tile scale S' = S_max / 2^6 (exponent e_max - 6, floored at E8M0's 0); each
 * element becomes e4m3(fp4 · 2^(e_i - e')).  fp4 · 2^k is exact in fp32 for
 * k >= -30 (|fp4| >= 0.5), and below 2^-10 it rounds to zero in E4M3 anyway,
 * so smaller k go straight to a signed zero.  An element is counted lossy
 * when the E4M3 value differs from the exact fp4 · 2^k, or when its group
 * scale is NaN (0xFF, which is left out of S_max). */
size_t wp_mxfp4_to_fp8(const uint8_t *q4, const uint8_t *s4, size_t rows, size_t cols,
                       wp_scale_fmt fmt, uint8_t *q_out, void *scale_out)
{
    assert(cols % 32 == 0);
    size_t ng = cols / 32, nbc = (cols + 127) / 128;
    size_t lossy = 0;
    for (size_t r0 = 0; r0 < rows; r0 += 128) {
        size_t r1 = r0 + 128 < rows ? r0 + 128 : rows;
        for (size_t tj = 0; tj < nbc; tj++) {
            size_t g0 = tj * 4, g1 = g0 + 4 < ng ? g0 + 4 : ng;
            int emax = -1;
            for (size_t r = r0; r < r1; r++)
                for (size_t g = g0; g < g1; g++) {
                    int e = s4[r * ng + g];
                    if (e != 0xFF && e > emax)
                        emax = e;
                }
            int ep = emax - 6 < 0 ? 0 : emax - 6;
            size_t si = (r0 / 128) * nbc + tj;
            if (fmt == WP_SCALE_E8M0)
                ((uint8_t *)scale_out)[si] = (uint8_t)ep;
            else {
                float f = wp_e8m0_dec((uint8_t)ep);
                memcpy((uint8_t *)scale_out + 4 * si, &f, 4);   /* any alignment */
            }
            for (size_t r = r0; r < r1; r++) {
                for (size_t g = g0; g < g1; g++) {
                    int e = s4[r * ng + g];
                    const uint8_t *p = q4 + r * (cols / 2) + g * 16;
                    uint8_t *o = q_out + r * cols + g * 32;
                    if (e == 0xFF) {
                        for (size_t j = 0; j < 32; j++)
                            o[j] = (uint8_t)(0x7F | ((p[j / 2] >> (4 * (j & 1))) & 8) << 4);
                        lossy += 32;
                        continue;
                    }
                    int k = e - ep;   /* <= 6 */
                    float mul = k >= -30 ? ldexpf(1.0f, k) : 0.0f;
                    for (size_t j = 0; j < 32; j++) {
                        uint8_t c4 = (p[j / 2] >> (4 * (j & 1))) & 15;
                        float v = wp_e2m1_lut[c4];
                        float exact = v * mul;           /* exact, see above */
                        uint8_t c8 = wp_e4m3_enc(exact);
                        o[j] = c8;
                        lossy += (wp_e4m3_lut[c8] != exact) || (k < -30 && (c4 & 7));
                    }
                }
            }
        }
    }
    return lossy;
}

/* ---- Kernel sets and dispatch ------------------------------------------------------ */

static float amax_scalar(const float *x, size_t n) { return amax_of(x, n); }

const wp_qkernels wp_qk_scalar = {
    .name = "scalar",
    .fp8_block_quant = fp8_block_quant_scalar,
    .mxfp4_quant = mxfp4_quant_scalar,
    .nvfp4_quant = nvfp4_quant_scalar,
    .amax = amax_scalar,
    .mxfp4_amax = wp_mxfp4_amax_scalar,
    .fp8_dequant_seg = wp_fp8_dequant_seg_scalar,
    .mxfp4_dequant_row = wp_mxfp4_dequant_row_scalar,
    .nvfp4_dequant_row = wp_nvfp4_dequant_row_scalar,
};

float wp_amax(const float *x, size_t n) { return wp_qkernels_active()->amax(x, n); }

static const wp_qkernels *qk_all[4];
static const wp_qkernels *qk_active;
static pthread_once_t qk_once = PTHREAD_ONCE_INIT;

static void qk_init(void)
{
    int n = 0;
#if defined(__x86_64__)
    __builtin_cpu_init();
    int avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    if (avx2 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
        __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq"))
        qk_all[n++] = &wp_qk_avx512;
    if (avx2) qk_all[n++] = &wp_qk_avx2;
#endif
    qk_all[n++] = &wp_qk_scalar;
    qk_all[n] = NULL;
    qk_active = qk_all[0];
    const char *want = getenv("WPACK_QUANT_ISA");
    for (int i = 0; want && qk_all[i]; i++)
        if (!strcmp(qk_all[i]->name, want)) qk_active = qk_all[i];
}

const wp_qkernels *const *wp_qkernels_all(void)
{
    pthread_once(&qk_once, qk_init);
    return qk_all;
}

const wp_qkernels *wp_qkernels_active(void)
{
    pthread_once(&qk_once, qk_init);
    return qk_active;
}

void wp_fp8_block_quant(const float *w, size_t rows, size_t cols, size_t br, size_t bc,
                        wp_scale_fmt fmt, uint8_t *q, void *scales)
{
    assert(br > 0 && bc > 0);
    wp_qkernels_active()->fp8_block_quant(w, rows, cols, br, bc, fmt, q, scales);
}

void wp_mxfp4_quant(const float *w, size_t rows, size_t cols, uint8_t *q, uint8_t *scales)
{
    assert(cols % 32 == 0);
    wp_qkernels_active()->mxfp4_quant(w, rows, cols, q, scales);
}

void wp_nvfp4_quant(const float *w, size_t rows, size_t cols, float global, uint8_t *q,
                    uint8_t *scales)
{
    assert(cols % 16 == 0);
    wp_qkernels_active()->nvfp4_quant(w, rows, cols, global, q, scales);
}
