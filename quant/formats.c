/*
 * formats.c — scalar number formats (spec §3.1–3.4, §3.6).
 *
 * Every narrow encoder rounds on the fp32 bit pattern (round to nearest, ties
 * to even) so the result never depends on the FPU rounding mode, and handles
 * fp32 subnormals, infinities and NaN explicitly.  Decoders are exact.
 */
#include <math.h>
#include <string.h>

#include "quant/quant.h"
#include "quant/quant_priv.h"

/* ---- E4M3FN and E2M1 decode tables ------------------------------------------
 * Built from constant expressions so the tables are exact by construction and
 * need no run-time initialisation (thread-safe, no once-guard).  spec §3.2:
 * normal (8+m)·2^(e-10), subnormal m·2^-9, 0x7F/0xFF NaN. */
#define E4M3_MAG(c) ((((c) >> 3) & 15) ? (float)((8 + ((c) & 7)) << (((c) >> 3) & 15)) / 1024.0f \
                                       : (float)((c) & 7) / 512.0f)
#define E4M3_VAL(c) ((c) == 0x7F ? NAN : (c) == 0xFF ? -NAN \
                     : ((c) & 0x80) ? -E4M3_MAG((c) & 0x7F) : E4M3_MAG(c)),
#define R4_(b) E4M3_VAL(b) E4M3_VAL((b) + 1) E4M3_VAL((b) + 2) E4M3_VAL((b) + 3)
#define R16_(b) R4_(b) R4_((b) + 4) R4_((b) + 8) R4_((b) + 12)
#define R64_(b) R16_(b) R16_((b) + 16) R16_((b) + 32) R16_((b) + 48)
const float wp_e4m3_lut[256] = { R64_(0) R64_(64) R64_(128) R64_(192) };
#undef R64_
#undef R16_
#undef R4_
#undef E4M3_VAL
#undef E4M3_MAG

/* spec §3.4: the FP4_TABLE of convert.py. */
const float wp_e2m1_lut[16] = {
    0.0f, 0.5f, 1.0f, 1.5f, 2.0f, 3.0f, 4.0f, 6.0f,
    -0.0f, -0.5f, -1.0f, -1.5f, -2.0f, -3.0f, -4.0f, -6.0f,
};

/* ---- BF16 (spec §3.1) ------------------------------------------------------- */
float wp_bf16_to_f32(uint16_t h) { return wp_f32_from_bits((uint32_t)h << 16); }

uint16_t wp_f32_to_bf16(float f)
{
    uint32_t u = wp_f32_bits(f);
    /* NaN: keep sign and payload, force the quiet bit; RNE below could carry a
     * NaN with a low payload into an infinity. */
    if ((u & 0x7FFFFFFFu) > 0x7F800000u)
        return (uint16_t)((u >> 16) | 0x0040u);
    u += 0x7FFFu + ((u >> 16) & 1u);   /* RNE; max finite carries into inf, as IEEE */
    return (uint16_t)(u >> 16);
}

/* ---- F16 (IEEE binary16) ---------------------------------------------------- */
float wp_f16_to_f32(uint16_t h)
{
    uint32_t s = (uint32_t)(h & 0x8000u) << 16;
    uint32_t e = (h >> 10) & 31u, m = h & 0x3FFu;
    if (e == 31)
        return wp_f32_from_bits(s | 0x7F800000u | (m << 13));
    if (e == 0) {
        float v = (float)m * 0x1p-24f;   /* subnormal: exact */
        return s ? -v : v;
    }
    return wp_f32_from_bits(s | ((e + 112u) << 23) | (m << 13));
}

uint16_t wp_f32_to_f16(float f)
{
    uint32_t u = wp_f32_bits(f);
    uint16_t s = (uint16_t)((u >> 16) & 0x8000u);
    uint32_t a = u & 0x7FFFFFFFu;
    if (a > 0x7F800000u)
        return (uint16_t)(s | 0x7E00u | ((a >> 13) & 0x3FFu));   /* quiet NaN */
    if (a >= 0x47800000u)                                        /* >= 2^16: inf */
        return (uint16_t)(s | 0x7C00u);
    /* Values in [65520, 65536) carry into 0x7C00 = inf, as IEEE RNE requires. */
    return (uint16_t)(s | wp_rne_mag(a, 10, -14));
}

/* ---- E4M3FN (spec §3.2) ----------------------------------------------------- */
float wp_e4m3_to_f32(uint8_t c) { return wp_e4m3_lut[c]; }

uint8_t wp_f32_to_e4m3(float f) { return wp_e4m3_enc(f); }

/* ---- E5M2 ---------------------------------------------------------------------
 * E5M2 is the top byte of an IEEE binary16, so decoding goes through f16.
 * Encoding: RNE; a finite value beyond the largest finite code saturates to
 * ±57344 (0x7B), as the CUDA `cvt.rn.satfinite` the reference kernels use
 * would, instead of rounding to inf.  An infinite input stays ±inf (0x7C)
 * so every non-NaN code decodes and re-encodes to itself; NaN -> 0x7E|sign. */
float wp_e5m2_to_f32(uint8_t c) { return wp_f16_to_f32((uint16_t)(c << 8)); }

uint8_t wp_f32_to_e5m2(float f)
{
    uint32_t u = wp_f32_bits(f);
    uint8_t s = (uint8_t)((u >> 24) & 0x80u);
    uint32_t a = u & 0x7FFFFFFFu;
    if (a > 0x7F800000u)
        return (uint8_t)(s | 0x7E);
    if (a == 0x7F800000u)
        return (uint8_t)(s | 0x7C);
    if (a >= 0x47600000u)   /* 57344 = 1.75·2^15: satfinite */
        return (uint8_t)(s | 0x7B);
    return (uint8_t)(s | wp_rne_mag(a, 2, -14));
}

/* ---- E8M0 (spec §3.3) --------------------------------------------------------- */
float wp_e8m0_to_f32(uint8_t c) { return wp_e8m0_dec(c); }

int wp_f32_to_e8m0_exact(float f)
{
    uint32_t u = wp_f32_bits(f);
    if (u == 0x00400000u)                         /* 2^-127, fp32 subnormal */
        return 0;
    if ((u & 0x007FFFFFu) == 0 && u >= 0x00800000u && u < 0x7F800000u)
        return (int)(u >> 23);                    /* sign clear, normal, mantissa 0 */
    return -1;
}

/* ---- E2M1 (spec §3.4) ---------------------------------------------------------- */
float wp_e2m1_to_f32(uint8_t code) { return wp_e2m1_lut[code & 15]; }

uint8_t wp_f32_to_e2m1(float f) { return wp_e2m1_enc(f); }

/* ---- pow2ceil and the rounded reciprocals (spec §3.6) ------------------------ */
float wp_pow2ceil(float t) { return wp_pow2ceil_inl(t); }

float wp_inv448(void) { return wp_f32_from_bits(WP_INV448_BITS); }
float wp_inv6(void) { return wp_f32_from_bits(WP_INV6_BITS); }
