/*
 * check.c — what a number format can hold that no weight may: non-finite
 * floats, the E4M3 / E5M2 / E8M0 NaN (and E5M2 infinity) codes, and scales
 * that turn a finite block into infinities (docs/convert.md "Content checks").
 *
 * Two speeds.  The screens answer "anything at all?" over a whole band at
 * memory speed: eight bytes at a time, a lane compare done with the classic
 * has-zero-lane bit trick, one branch per 4 KiB.  The scans count and locate
 * (first index) element by element through the format's own decoders; they
 * run only on the rare tensor a screen flagged, so they are written to be
 * obviously right rather than fast.
 */
#include <math.h>
#include <string.h>

#include "quant/quant.h"
#include "quant/quant_priv.h"

static inline uint64_t ld64(const uint8_t *p)
{
    uint64_t x;
    memcpy(&x, p, 8);
    return x;
}

/* Non-zero iff some lane of t is zero (lanes of 8, 16 or 32 bits: `ones` has
 * 1 in each lane's low bit, `highs` each lane's top bit). */
#define HAS_ZERO(t, ones, highs) (((t) - (ones)) & ~(t) & (highs))

#define L8_1 0x0101010101010101ull
#define L8_H 0x8080808080808080ull
#define L16_1 0x0001000100010001ull
#define L16_H 0x8000800080008000ull
#define L32_1 0x0000000100000001ull
#define L32_H 0x8000000080000000ull

/* Any lane whose `mask` bits are all set, over n bytes (n % 8 handled by the
 * caller's tail).  Lanes of the masks never include the lane's top bit
 * except E8M0, which is compared through ~x instead. */
static int any_all_set(const uint8_t *p, size_t n8, uint64_t mask, uint64_t ones, uint64_t highs)
{
    size_t i = 0;
    while (i < n8) {
        size_t end = n8 - i > 4096 ? i + 4096 : n8;
        uint64_t acc = 0;
        for (; i < end; i += 8) {
            uint64_t t = (ld64(p + i) & mask) ^ mask;
            acc |= HAS_ZERO(t, ones, highs);
        }
        if (acc) return 1;
    }
    return 0;
}

static int any_ff(const uint8_t *p, size_t n8)
{
    size_t i = 0;
    while (i < n8) {
        size_t end = n8 - i > 4096 ? i + 4096 : n8;
        uint64_t acc = 0;
        for (; i < end; i += 8) {
            uint64_t t = ~ld64(p + i);
            acc |= HAS_ZERO(t, L8_1, L8_H);
        }
        if (acc) return 1;
    }
    return 0;
}

/* The one element rule, for tails and scans. */
static int elem_bad(wp_dtype t, const uint8_t *p)
{
    switch (t) {
    case WP_F32: { uint32_t u; memcpy(&u, p, 4); return (u & 0x7F800000u) == 0x7F800000u; }
    case WP_F64: { uint64_t u; memcpy(&u, p, 8); return (u & 0x7FF0000000000000ull) == 0x7FF0000000000000ull; }
    case WP_BF16: { uint16_t h; memcpy(&h, p, 2); return !isfinite(wp_bf16_to_f32(h)); }
    case WP_F16: { uint16_t h; memcpy(&h, p, 2); return !isfinite(wp_f16_to_f32(h)); }
    case WP_F8_E4M3: return isnan(wp_e4m3_to_f32(*p));
    case WP_F8_E5M2: return !isfinite(wp_e5m2_to_f32(*p));
    case WP_F8_E8M0: return isnan(wp_e8m0_to_f32(*p));
    default: return 0;
    }
}

int wp_dtype_has_nonfinite(wp_dtype t)
{
    switch (t) {
    case WP_F32: case WP_F64: case WP_BF16: case WP_F16:
    case WP_F8_E4M3: case WP_F8_E5M2: case WP_F8_E8M0:
        return 1;
    default:
        return 0;
    }
}

const char *wp_dtype_nonfinite_rule(wp_dtype t, int plural)
{
    switch (t) {
    case WP_F8_E4M3: return plural ? "NaN codes (E4M3 0x7F/0xFF)" : "NaN code (E4M3 0x7F/0xFF)";
    case WP_F8_E5M2: return plural ? "non-finite codes (E5M2 inf/NaN)" : "non-finite code (E5M2 inf/NaN)";
    case WP_F8_E8M0: return plural ? "NaN scales (E8M0 0xFF)" : "NaN scale (E8M0 0xFF)";
    default: return plural ? "non-finite values (NaN/inf)" : "non-finite value (NaN/inf)";
    }
}

int wp_dtype_screen(wp_dtype t, const void *buf, size_t n)
{
    if (!wp_dtype_has_nonfinite(t) || !n) return 0;
    const uint8_t *p = buf;
    size_t esz = wp_dtype_bits(t) / 8, bytes = n * esz, n8 = bytes & ~(size_t)7;
    int hit;
    switch (t) {
    case WP_F32: hit = any_all_set(p, n8, 0x7F8000007F800000ull, L32_1, L32_H); break;
    case WP_BF16: hit = any_all_set(p, n8, 0x7F807F807F807F80ull, L16_1, L16_H); break;
    case WP_F16: hit = any_all_set(p, n8, 0x7C007C007C007C00ull, L16_1, L16_H); break;
    case WP_F8_E4M3: hit = any_all_set(p, n8, 0x7F7F7F7F7F7F7F7Full, L8_1, L8_H); break;
    case WP_F8_E5M2: hit = any_all_set(p, n8, 0x7C7C7C7C7C7C7C7Cull, L8_1, L8_H); break;
    case WP_F8_E8M0: hit = any_ff(p, n8); break;
    default: n8 = 0; hit = 0; break;   /* F64: element by element below */
    }
    if (hit) return 1;
    for (size_t o = n8; o + esz <= bytes; o += esz)
        if (elem_bad(t, p + o)) return 1;
    return 0;
}

uint64_t wp_dtype_scan(wp_dtype t, const void *buf, size_t n, uint64_t *first)
{
    uint64_t bad = 0;
    *first = UINT64_MAX;
    if (!wp_dtype_has_nonfinite(t)) return 0;
    const uint8_t *p = buf;
    size_t esz = wp_dtype_bits(t) / 8;
    for (size_t i = 0; i < n; i++)
        if (elem_bad(t, p + i * esz)) {
            if (!bad) *first = i;
            bad++;
        }
    return bad;
}

/* ---- scales that make a block non-finite ------------------------------------------
 * Dequantised value = decoded code x scale in fp32 (wp_qweight_dequant_rows).
 * With a finite code of magnitude at most 448 (E4M3) or 6 (E2M1), only a
 * scale above FLT_MAX / 448 can overflow: E8M0 codes 247..254, or an F32
 * scale of magnitude above 2^119.  NaN scales are the dtype scan's. */
#define E8M0_RISKY 247
#define F32_RISKY 0x1p119f

int wp_scale_screen(wp_dtype t, const void *buf, size_t n)
{
    const uint8_t *p = buf;
    if (t == WP_F8_E8M0) {
        for (size_t i = 0; i < n; i++)
            if (p[i] >= E8M0_RISKY && p[i] != 0xFF) return 1;
        return 0;
    }
    if (t == WP_F32) {
        for (size_t i = 0; i < n; i++) {
            float s;
            memcpy(&s, p + 4 * i, 4);
            if (fabsf(s) > F32_RISKY && isfinite(s)) return 1;
        }
    }
    return 0;
}

static float scale_at(const void *sc, size_t i, wp_scale_fmt fmt)
{
    if (fmt == WP_SCALE_E8M0) return wp_e8m0_to_f32(((const uint8_t *)sc)[i]);
    float s;
    memcpy(&s, (const uint8_t *)sc + 4 * i, 4);
    return s;
}

uint64_t wp_fp8_scan_blocks(const uint8_t *q, const void *scales, size_t rows, size_t cols, size_t br,
                            size_t bc, wp_scale_fmt fmt, uint64_t *first)
{
    uint64_t bad = 0;
    *first = UINT64_MAX;
    size_t nbr = (rows + br - 1) / br, nbc = (cols + bc - 1) / bc;
    for (size_t bi = 0; bi < nbr; bi++)
        for (size_t bj = 0; bj < nbc; bj++) {
            size_t si = bi * nbc + bj;
            float s = scale_at(scales, si, fmt);
            if (isnan(s) || fabsf(s) * 448.0f <= 3.40282347e38f) continue;   /* cannot overflow */
            float amax = 0;
            size_t r1 = (bi + 1) * br < rows ? (bi + 1) * br : rows, c1 = (bj + 1) * bc < cols ? (bj + 1) * bc : cols;
            for (size_t r = bi * br; r < r1; r++)
                for (size_t c = bj * bc; c < c1; c++) {
                    float v = fabsf(wp_e4m3_to_f32(q[r * cols + c]));
                    if (v > amax) amax = v;   /* NaN codes are the dtype scan's */
                }
            if (!isfinite(amax * s)) {
                if (!bad) *first = si;
                bad++;
            }
        }
    return bad;
}

uint64_t wp_mxfp4_scan_blocks(const uint8_t *q, const uint8_t *scales, size_t rows, size_t cols, uint64_t *first)
{
    uint64_t bad = 0;
    *first = UINT64_MAX;
    size_t ng = cols / 32;
    for (size_t r = 0; r < rows; r++)
        for (size_t g = 0; g < ng; g++) {
            size_t si = r * ng + g;
            if (scales[si] < E8M0_RISKY || scales[si] == 0xFF) continue;
            float s = wp_e8m0_to_f32(scales[si]), amax = 0;
            const uint8_t *b = q + r * (cols / 2) + g * 16;
            for (int j = 0; j < 16; j++) {
                float lo = fabsf(wp_e2m1_to_f32(b[j] & 15)), hi = fabsf(wp_e2m1_to_f32(b[j] >> 4));
                if (lo > amax) amax = lo;
                if (hi > amax) amax = hi;
            }
            if (!isfinite(amax * s)) {
                if (!bad) *first = si;
                bad++;
            }
        }
    return bad;
}
