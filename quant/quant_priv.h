/*
 * quant_priv.h — inline bit helpers shared by the quant/ sources only (not a
 * public header: other modules include quant/quant.h).  They are inline so
 * the block loops in block.c and weight.c compile to tight code with no call
 * per element.
 */
#ifndef WP_QUANT_PRIV_H
#define WP_QUANT_PRIV_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "quant/quant.h"

extern const float wp_e4m3_lut[256];
extern const float wp_e2m1_lut[16];

static inline uint32_t wp_f32_bits(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }
static inline float wp_f32_from_bits(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }

/*
 * Round |x| (fp32 bits `a`, finite, sign clear, already clamped to the
 * target's range) to a narrow binary format with `m` mantissa bits and
 * smallest normal exponent `emin`, round to nearest, ties to even, on the
 * bits.  Returns the magnitude code (exponent field << m | mantissa).  A
 * carry out of the mantissa correctly bumps the exponent (and lets the
 * largest subnormal round up to the smallest normal).
 */
static inline uint32_t wp_rne_mag(uint32_t a, int m, int emin)
{
    int E = (int)(a >> 23);
    int sh = 23 - m;
    if (E - 127 >= emin) {
        /* Rebias the exponent field in place so mantissa and exponent round
         * as one integer: target biased exponent = E - 127 - emin + 1. */
        uint32_t v = a - ((uint32_t)(127 + emin - 1) << 23);
        v += ((1u << (sh - 1)) - 1u) + ((v >> sh) & 1u);
        return v >> sh;
    }
    /* Target subnormal: q = RNE(sig · 2^(eE - 23) / 2^(emin - m)). */
    uint32_t sig = (a & 0x007FFFFFu) | (E ? 0x00800000u : 0u);
    int eE = E ? E - 127 : -126;
    int s = (emin - eE) + sh;          /* >= sh + 1 */
    if (s >= 25)                       /* sig < 2^24 <= half a unit: zero */
        return 0;
    uint32_t q = sig >> s, rem = sig & ((1u << s) - 1u), half = 1u << (s - 1);
    q += (rem > half) | ((rem == half) & q & 1u);
    return q;
}

/* spec §3.2: clamp to ±448, then RNE; NaN -> 0x7F|sign; no infinity. */
static inline uint8_t wp_e4m3_enc(float f)
{
    uint32_t u = wp_f32_bits(f);
    uint8_t s = (uint8_t)((u >> 24) & 0x80u);
    uint32_t a = u & 0x7FFFFFFFu;
    if (a > 0x7F800000u)
        return (uint8_t)(s | 0x7F);
    if (a >= 0x43E00000u)              /* >= 448 (incl. inf): clamp */
        return (uint8_t)(s | 0x7E);
    return (uint8_t)(s | wp_rne_mag(a, 3, -6));
}

/* spec §3.4: clamp to ±6, RNE onto {0,.5,1,1.5,2,3,4,6}, ties to the even
 * code.  E2M1 has no NaN: a NaN input saturates to +6 (0x7), the way a
 * satfinite cast treats out-of-range input (an assumption; spec §8.2). */
static inline uint8_t wp_e2m1_enc(float f)
{
    uint32_t u = wp_f32_bits(f);
    uint8_t s = (uint8_t)((u >> 28) & 0x8u);
    uint32_t a = u & 0x7FFFFFFFu;
    if (a > 0x7F800000u)
        return 0x7;
    if (a >= 0x40C00000u)              /* >= 6 (incl. inf): clamp */
        return (uint8_t)(s | 0x7);
    return (uint8_t)(s | wp_rne_mag(a, 1, 0));
}

/* spec §3.3: 2^(c-127); c = 0 is the fp32 subnormal 2^-127; 0xFF NaN. */
static inline float wp_e8m0_dec(uint8_t c)
{
    if (c == 0xFF)
        return wp_f32_from_bits(0x7FC00000u);
    return wp_f32_from_bits(c ? (uint32_t)c << 23 : 0x00400000u);
}

/*
 * spec §3.6: the smallest power of two >= t, on the fp32 bits: for a normal
 * t, 2^(e - 127 + (f != 0)).  Extended beyond the spec's positive normal
 * domain so no input is undefined: subnormal t -> the next power of two
 * (possibly 2^-126), t >= 2^127 non-power -> inf, inf -> inf, NaN -> NaN,
 * t <= 0 -> 0.
 */
static inline float wp_pow2ceil_inl(float t)
{
    uint32_t u = wp_f32_bits(t);
    if ((u & 0x7FFFFFFFu) > 0x7F800000u)
        return t;
    if ((u & 0x80000000u) || u == 0)
        return 0.0f;
    uint32_t E = u >> 23, f = u & 0x007FFFFFu;
    if (E == 0) {                      /* subnormal: round up to a power of two */
        if ((f & (f - 1)) == 0)
            return t;
        uint32_t p = 1u << (32 - __builtin_clz(f));
        return wp_f32_from_bits(p);    /* p == 0x00800000 is 2^-126, still right */
    }
    E += (f != 0);
    return wp_f32_from_bits(E >= 255 ? 0x7F800000u : E << 23);
}

/* Clamp a positive power of two (or 0/inf) into E8M0's range [2^-127, 2^127]
 * and return its code. */
static inline uint8_t wp_e8m0_clamp_code(float s)
{
    uint32_t u = wp_f32_bits(s);
    if (u >= 0x7F000000u)              /* >= 2^127, inf */
        return 254;
    if (u < 0x00800000u)               /* below 2^-126: 2^-127 is the floor */
        return 0;
    return (uint8_t)(u >> 23);
}

/* The weight scale rules of spec §3.6 shared by every kernel set: FP8
 * s = pow2ceil(amax · fl32(1/448)), FP4 s = pow2ceil(amax · fl32(1/6)), kept
 * inside E8M0's range; an all-zero block gets 1 (code 127). */
static inline uint8_t wp_fp8_weight_scale_e8m0(float amax)
{
    if (amax == 0.0f)
        return 127;
    return wp_e8m0_clamp_code(wp_pow2ceil_inl(amax * wp_f32_from_bits(WP_INV448_BITS)));
}

/* FP8 block quantisation works on bands of up to WP_FP8_TILE_CHUNK column
 * blocks.  The scale pass, shared by every kernel set: block j's scale from
 * its amax[j] (written at scales[first + j], E8M0 byte or F32) and the factor
 * its values take: k[j] multiplies (E8M0: 1/scale, exact for a power of two)
 * or divides (F32: the scale itself). */
#define WP_FP8_TILE_CHUNK 256
static inline void wp_fp8_block_scales(const float *amax, size_t n, wp_scale_fmt fmt, void *scales, size_t first,
                                       float *k)
{
    for (size_t j = 0; j < n; j++) {
        float m = amax[j];
        if (fmt == WP_SCALE_E8M0) {
            uint8_t c = wp_fp8_weight_scale_e8m0(m);
            ((uint8_t *)scales)[first + j] = c;
            k[j] = 1.0f / wp_e8m0_dec(c);   /* exact: power of two */
        } else {
            float s = m == 0.0f ? 1.0f : m / 448.0f;
            memcpy((uint8_t *)scales + 4 * (first + j), &s, 4);   /* any alignment */
            k[j] = s;
        }
    }
}

static inline uint8_t wp_fp4_weight_scale_e8m0(float amax)
{
    if (amax == 0.0f)
        return 127;
    return wp_e8m0_clamp_code(wp_pow2ceil_inl(amax * wp_f32_from_bits(WP_INV6_BITS)));
}

/*
 * Kernel sets for the lossy weight quantisers (block.c dispatches).  The
 * scalar set is the oracle: every other set returns the same bytes for every
 * input (NaN, Inf, denormals, ties, all-zero and max-magnitude blocks), which
 * tests/test_quant_fast.c checks on every set this CPU runs.  The vector sets
 * exist on x86-64 only and are handed out only where the CPU has the features.
 */
typedef struct wp_qkernels {
    const char *name;   /* "scalar", "avx2", "avx512" */
    void (*fp8_block_quant)(const float *w, size_t rows, size_t cols, size_t br, size_t bc, wp_scale_fmt fmt,
                            uint8_t *q, void *scales);
    void (*mxfp4_quant)(const float *w, size_t rows, size_t cols, uint8_t *q, uint8_t *scales);
    void (*nvfp4_quant)(const float *w, size_t rows, size_t cols, float global, uint8_t *q, uint8_t *scales);
    float (*amax)(const float *x, size_t n);   /* largest |x|, NaN ignored, 0 for none */
    /* wp_mxfp4_amax over ng 32-element groups (16 code bytes, one E8M0 each):
     * the amax of their dequantised values, from the codes */
    float (*mxfp4_amax)(const uint8_t *q, const uint8_t *sc, size_t ng);
    /* weight.c's row dequantisers: out[i] = e4m3(q[i]) · s over n codes;
     * one MXFP4 row (cols % 32 == 0); one NVFP4 row (cols % 16 == 0). */
    void (*fp8_dequant_seg)(const uint8_t *q, size_t n, float s, float *out);
    void (*mxfp4_dequant_row)(const uint8_t *q, const uint8_t *sc, size_t cols, float *out);
    void (*nvfp4_dequant_row)(const uint8_t *q, const uint8_t *sc, size_t cols, float global, float *out);
} wp_qkernels;

/* block.c's scalar codes amax (the AVX2 set uses it too) */
float wp_mxfp4_amax_scalar(const uint8_t *q, const uint8_t *sc, size_t ng);

/* weight.c's scalar row dequantisers (the oracle of the fields above) */
void wp_fp8_dequant_seg_scalar(const uint8_t *q, size_t n, float s, float *out);
void wp_mxfp4_dequant_row_scalar(const uint8_t *q, const uint8_t *sc, size_t cols, float *out);
void wp_nvfp4_dequant_row_scalar(const uint8_t *q, const uint8_t *sc, size_t cols, float global, float *out);

extern const wp_qkernels wp_qk_scalar;
#if defined(__x86_64__)
extern const wp_qkernels wp_qk_avx2, wp_qk_avx512;
#endif

/* Every set this CPU runs, best first, NULL-terminated (scalar is last). */
const wp_qkernels *const *wp_qkernels_all(void);
/* The set the public quantisers use: the best, or the one named by the
 * environment variable WPACK_QUANT_ISA (scalar, avx2, avx512) where this CPU
 * runs it (a bench facility: one binary measures every path). */
const wp_qkernels *wp_qkernels_active(void);

#endif
