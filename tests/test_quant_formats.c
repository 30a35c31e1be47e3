/*
 * test_quant_formats.c — the scalar number formats of spec §3, against an
 * independent oracle: the values of each code are computed here from the
 * format definition (ldexp on sign/exponent/mantissa), and the expected
 * encoding of a value is the nearest code by brute force in double, ties to
 * the even code.  Exhaustive over every code of every 8/4-bit format and of
 * bf16/f16; every rounding decision boundary (the midpoint between each pair
 * of adjacent values, and one fp32 ulp either side) is checked explicitly.
 */
#include "quant/quant.h"
#include "tests/harness.h"

static uint32_t bits(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }
static float fbits(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }
static float up(float f) { return nextafterf(f, INFINITY); }
static float dn(float f) { return nextafterf(f, -INFINITY); }

/* ---- Oracles: code -> value straight from the format definitions ---------------- */
static double e4m3_ref(int c)   /* spec §3.2; NaN for 0x7F/0xFF */
{
    int s = c >> 7, e = (c >> 3) & 15, m = c & 7;
    if (e == 15 && m == 7) return NAN;
    double v = e ? ldexp(1.0 + m / 8.0, e - 7) : ldexp(m / 8.0, -6);
    return s ? -v : v;
}
static double e5m2_ref(int c)   /* IEEE-like: bias 15, e = 31 inf/NaN */
{
    int s = c >> 7, e = (c >> 2) & 31, m = c & 3;
    double v = e == 31 ? (m ? NAN : INFINITY) : e ? ldexp(1.0 + m / 4.0, e - 15) : ldexp(m / 4.0, -14);
    return s ? -v : v;
}
static double e2m1_ref(int c)   /* spec §3.4: bias 1 */
{
    int s = (c >> 3) & 1, e = (c >> 1) & 3, m = c & 1;
    double v = e ? ldexp(1.0 + m / 2.0, e - 1) : m * 0.5;
    return s ? -v : v;
}
static double f16_ref(int c)
{
    int s = c >> 15, e = (c >> 10) & 31, m = c & 1023;
    double v = e == 31 ? (m ? NAN : INFINITY) : e ? ldexp(1.0 + m / 1024.0, e - 15) : ldexp(m / 1024.0, -14);
    return s ? -v : v;
}

/* Nearest positive code in [0, maxcode] to |x| clamped at `clamp`, ties to
 * the even code, sign bit `sbit` set for negative x (and -0). */
static int nearest(double (*val)(int), int maxcode, double clamp, int sbit, float x)
{
    double a = fabs((double)x);
    if (a > clamp) a = clamp;
    int best = 0;
    double bd = INFINITY;
    for (int c = 0; c <= maxcode; c++) {
        double d = fabs(val(c) - a);
        if (d < bd || (d == bd && (c & 1) == 0)) { bd = d; best = c; }
    }
    return signbit(x) ? best | sbit : best;
}

static int e4m3_oracle(float x) { return nearest(e4m3_ref, 0x7E, 448.0, 0x80, x); }
static int e2m1_oracle(float x) { return nearest(e2m1_ref, 0x7, 6.0, 0x8, x); }
static int e5m2_oracle(float x)
{
    if (isinf(x)) return x > 0 ? 0x7C : 0xFC;
    return nearest(e5m2_ref, 0x7B, 57344.0, 0x80, x);
}

/* Check one encoder at every decision boundary of a positive code ladder
 * 0..maxcode: each code's own value, the midpoint to the next code (exact in
 * fp32: narrow significands) and one ulp either side, with both signs. */
#define CHECK_LADDER(enc, ref, oracle, maxcode) do {                             \
    for (int c_ = 0; c_ < (maxcode); c_++) {                                     \
        float lo_ = (float)ref(c_), hi_ = (float)ref(c_ + 1);                   \
        float mid_ = (float)(((double)lo_ + hi_) / 2);                          \
        CHECKF((double)mid_ == ((double)lo_ + hi_) / 2, "midpoint not exact");  \
        int want_ = (c_ & 1) ? c_ + 1 : c_;      /* tie -> even code */         \
        float xs_[] = { lo_, mid_, dn(mid_), up(mid_), -lo_, -mid_, -dn(mid_), -up(mid_) }; \
        for (int k_ = 0; k_ < 8; k_++)                                         \
            CHECKF(enc(xs_[k_]) == oracle(xs_[k_]), #enc "(%a) = 0x%x, oracle 0x%x", \
                   (double)xs_[k_], enc(xs_[k_]), oracle(xs_[k_]));            \
        CHECKF(enc(mid_) == want_, #enc " tie %a -> 0x%x, want 0x%x", (double)mid_, enc(mid_), want_); \
        CHECKF(enc(dn(mid_)) == c_, #enc " below tie %a", (double)dn(mid_));   \
        CHECKF(enc(up(mid_)) == c_ + 1, #enc " above tie %a", (double)up(mid_)); \
    }                                                                          \
} while (0)

/* ---- E4M3FN (spec §3.2) ------------------------------------------------------------ */
TEST(quant_e4m3_decode_all_codes)
{
    for (int c = 0; c < 256; c++) {
        float v = wp_e4m3_to_f32((uint8_t)c);
        double r = e4m3_ref(c);
        if (isnan(r)) { CHECKF(isnan(v), "code 0x%02x should be NaN", c); continue; }
        CHECKF((double)v == r && !signbit(v) == !signbit(r), "0x%02x -> %a, want %a", c, (double)v, r);
    }
    /* Landmarks from the spec. */
    CHECK(wp_e4m3_to_f32(0x38) == 1.0f);
    CHECK(wp_e4m3_to_f32(0x7E) == 448.0f && wp_e4m3_to_f32(0xFE) == -448.0f);
    CHECK(wp_e4m3_to_f32(0x08) == 0x1p-6f);      /* smallest normal */
    CHECK(wp_e4m3_to_f32(0x01) == 0x1p-9f);      /* smallest subnormal */
    CHECK(wp_e4m3_to_f32(0x07) == 7 * 0x1p-9f);  /* largest subnormal */
    CHECK(wp_e4m3_to_f32(0x80) == 0.0f && signbit(wp_e4m3_to_f32(0x80)));
    CHECK(isnan(wp_e4m3_to_f32(0x7F)) && isnan(wp_e4m3_to_f32(0xFF)));
    /* No infinity: 0x78 (S.1111.000) is 256. */
    CHECK(wp_e4m3_to_f32(0x78) == 256.0f);
}

TEST(quant_e4m3_encode_identity_and_ties)
{
    for (int c = 0; c < 256; c++) {
        if (c == 0x7F || c == 0xFF) continue;
        CHECKF(wp_f32_to_e4m3(wp_e4m3_to_f32((uint8_t)c)) == c, "code 0x%02x does not round-trip", c);
    }
    CHECK_EQ_INT(wp_f32_to_e4m3(-0.0f), 0x80);
    CHECK_LADDER(wp_f32_to_e4m3, e4m3_ref, e4m3_oracle, 0x7E);
    /* Hand-picked ties: 1.0625 between 1 (0x38) and 1.125 (0x39) -> 0x38;
     * 1.1875 between 0x39 and 0x3A -> 0x3A; subnormal 2^-10 -> 0; 3·2^-10 -> 2·2^-9. */
    CHECK_EQ_INT(wp_f32_to_e4m3(1.0625f), 0x38);
    CHECK_EQ_INT(wp_f32_to_e4m3(1.1875f), 0x3A);
    CHECK_EQ_INT(wp_f32_to_e4m3(0x1p-10f), 0x00);
    CHECK_EQ_INT(wp_f32_to_e4m3(0x1.000002p-10f), 0x01);
    CHECK_EQ_INT(wp_f32_to_e4m3(3 * 0x1p-10f), 0x02);
    CHECK_EQ_INT(wp_f32_to_e4m3(15 * 0x1p-10f), 0x08);   /* largest subnormal / smallest normal tie */
    CHECK_EQ_INT(wp_f32_to_e4m3(-15 * 0x1p-10f), 0x88);
    CHECK_EQ_INT(wp_f32_to_e4m3(400.0f), 0x7C);           /* 384 | 416: even 0x7C */
    CHECK_EQ_INT(wp_f32_to_e4m3(432.0f), 0x7E);           /* 416 | 448: even 0x7E */
}

TEST(quant_e4m3_saturation_nan_subnormal_inputs)
{
    /* spec §3.2: clamp to ±448 first, so everything above saturates (incl. > 464,
     * which an unclamped RNE would send to NaN). */
    float big[] = { 448.0f, up(448.0f), 463.99f, 464.0f, 465.0f, 480.0f, 1e6f, 3.4e38f, INFINITY };
    for (size_t i = 0; i < sizeof big / sizeof big[0]; i++) {
        CHECKF(wp_f32_to_e4m3(big[i]) == 0x7E, "%g", (double)big[i]);
        CHECKF(wp_f32_to_e4m3(-big[i]) == 0xFE, "-%g", (double)big[i]);
    }
    CHECK_EQ_INT(wp_f32_to_e4m3(NAN), 0x7F);
    CHECK_EQ_INT(wp_f32_to_e4m3(-NAN), 0xFF);
    CHECK_EQ_INT(wp_f32_to_e4m3(fbits(0x7F800001u)), 0x7F);   /* signalling NaN */
    /* fp32 subnormal inputs are far below 2^-10: signed zero. */
    CHECK_EQ_INT(wp_f32_to_e4m3(fbits(0x00000001u)), 0x00);
    CHECK_EQ_INT(wp_f32_to_e4m3(fbits(0x807FFFFFu)), 0x80);
    CHECK_EQ_INT(wp_f32_to_e4m3(0x1p-126f), 0x00);
}

/* Sweep fp32 bit patterns over the whole finite range and densely around the
 * format's range: the encoder must agree with the brute-force oracle. */
static void sweep(uint8_t (*enc)(float), int (*oracle)(float), uint32_t lo, uint32_t hi,
                  uint32_t step, const char *what)
{
    int bad = 0;
    for (uint64_t u = lo; u <= hi && bad < 5; u += step) {
        for (int sgn = 0; sgn < 2; sgn++) {
            float x = fbits((uint32_t)u | (sgn ? 0x80000000u : 0));
            if (enc(x) != oracle(x)) {
                wpt_fail_at(__FILE__, __LINE__, "%s(%a) = 0x%x, oracle 0x%x", what, (double)x,
                            enc(x), oracle(x));
                bad++;
            }
        }
    }
}

TEST(quant_e4m3_sweep_vs_oracle)
{
    sweep(wp_f32_to_e4m3, e4m3_oracle, 0, 0x7F800000u, 65537, "e4m3");
    sweep(wp_f32_to_e4m3, e4m3_oracle, 0x3A000000u, 0x44000000u, 1543, "e4m3");   /* 2^-11..512 */
}

/* ---- E5M2 -------------------------------------------------------------------------- */
TEST(quant_e5m2_all_codes)
{
    for (int c = 0; c < 256; c++) {
        float v = wp_e5m2_to_f32((uint8_t)c);
        double r = e5m2_ref(c);
        if (isnan(r)) {
            CHECKF(isnan(v), "0x%02x should be NaN", c);
            CHECKF(isnan(wp_e5m2_to_f32(wp_f32_to_e5m2(v))), "NaN 0x%02x must stay NaN", c);
            continue;
        }
        CHECKF((double)v == r && !signbit(v) == !signbit(r), "0x%02x -> %a, want %a", c, (double)v, r);
        CHECKF(wp_f32_to_e5m2(v) == c, "code 0x%02x does not round-trip", c);
    }
    CHECK(wp_e5m2_to_f32(0x3C) == 1.0f && wp_e5m2_to_f32(0x7B) == 57344.0f);
    CHECK(wp_e5m2_to_f32(0x01) == 0x1p-16f && isinf(wp_e5m2_to_f32(0x7C)));
    CHECK_LADDER(wp_f32_to_e5m2, e5m2_ref, e5m2_oracle, 0x7B);
    /* Saturating ("satfinite") policy: finite overflow, even past the point
     * where RNE would give inf (61440), stays at ±57344; inf stays inf. */
    CHECK_EQ_INT(wp_f32_to_e5m2(61440.0f), 0x7B);
    CHECK_EQ_INT(wp_f32_to_e5m2(-1e30f), 0xFB);
    CHECK_EQ_INT(wp_f32_to_e5m2(INFINITY), 0x7C);
    CHECK_EQ_INT(wp_f32_to_e5m2(-INFINITY), 0xFC);
    CHECK_EQ_INT(wp_f32_to_e5m2(NAN) & 0x7F, 0x7E);
    CHECK_EQ_INT(wp_f32_to_e5m2(0x1p-17f), 0x00);          /* tie with 0 -> 0 */
    CHECK_EQ_INT(wp_f32_to_e5m2(3 * 0x1p-17f), 0x02);      /* tie 1|2 -> 2 */
    sweep(wp_f32_to_e5m2, e5m2_oracle, 0, 0x7F800000u, 65537, "e5m2");
    sweep(wp_f32_to_e5m2, e5m2_oracle, 0x37000000u, 0x47800000u, 4099, "e5m2");
}

/* ---- E8M0 (spec §3.3) ------------------------------------------------------------------ */
TEST(quant_e8m0_all_codes)
{
    for (int c = 0; c < 255; c++) {
        float v = wp_e8m0_to_f32((uint8_t)c);
        CHECKF((double)v == ldexp(1.0, c - 127), "0x%02x -> %a", c, (double)v);
        CHECKF(wp_f32_to_e8m0_exact(v) == c, "exact(0x%02x) = %d", c, wp_f32_to_e8m0_exact(v));
    }
    CHECK(bits(wp_e8m0_to_f32(0)) == 0x00400000u);   /* 2^-127: fp32 subnormal */
    CHECK(wp_e8m0_to_f32(127) == 1.0f);
    CHECK(isnan(wp_e8m0_to_f32(0xFF)));
    float no[] = { 0.0f, -1.0f, 3.0f, 1.5f, 0x1p-128f, 0x1p-149f, INFINITY, NAN, -0x1p-127f,
                   fbits(0x00400001u) };
    for (size_t i = 0; i < sizeof no / sizeof no[0]; i++)
        CHECKF(wp_f32_to_e8m0_exact(no[i]) == -1, "%a is not an E8M0 value", (double)no[i]);
}

/* ---- E2M1 (spec §3.4) ------------------------------------------------------------------ */
TEST(quant_e2m1_all_codes_and_ties)
{
    static const float table[16] = { 0, .5f, 1, 1.5f, 2, 3, 4, 6, -0.0f, -.5f, -1, -1.5f, -2, -3, -4, -6 };
    for (int c = 0; c < 16; c++) {
        float v = wp_e2m1_to_f32((uint8_t)c);
        CHECKF(v == table[c] && !signbit(v) == !signbit(table[c]) && (double)v == e2m1_ref(c), "code %d", c);
        CHECKF(wp_f32_to_e2m1(v) == c, "code %d does not round-trip", c);
        CHECK(wp_e2m1_to_f32((uint8_t)(c | 0xF0)) == v);   /* only the low nibble counts */
    }
    /* spec §3.4: ties to the even code. */
    static const float tie[] = { 0.25f, 0.75f, 1.25f, 1.75f, 2.5f, 3.5f, 5.0f };
    static const float want[] = { 0.0f, 1.0f, 1.0f, 2.0f, 2.0f, 4.0f, 4.0f };
    for (int i = 0; i < 7; i++) {
        CHECKF(wp_e2m1_to_f32(wp_f32_to_e2m1(tie[i])) == want[i], "%g", (double)tie[i]);
        CHECKF(wp_e2m1_to_f32(wp_f32_to_e2m1(-tie[i])) == -want[i], "-%g", (double)tie[i]);
    }
    CHECK_LADDER(wp_f32_to_e2m1, e2m1_ref, e2m1_oracle, 7);
    CHECK_EQ_INT(wp_f32_to_e2m1(6.5f), 0x7);
    CHECK_EQ_INT(wp_f32_to_e2m1(-1e20f), 0xF);
    CHECK_EQ_INT(wp_f32_to_e2m1(INFINITY), 0x7);
    CHECK_EQ_INT(wp_f32_to_e2m1(-0.0f), 0x8);
    CHECK_EQ_INT(wp_f32_to_e2m1(0x1p-149f), 0x0);
    CHECK_EQ_INT(wp_f32_to_e2m1(NAN), 0x7);   /* documented: no NaN code, saturates */
    sweep(wp_f32_to_e2m1, e2m1_oracle, 0, 0x7F800000u, 65537, "e2m1");
    sweep(wp_f32_to_e2m1, e2m1_oracle, 0x3D800000u, 0x41000000u, 257, "e2m1");   /* 1/16..8 */
}

/* ---- BF16 (spec §3.1) ------------------------------------------------------------------- */
/* Oracle: of the two bf16 neighbours of x, the nearer in double, tie -> even. */
static uint16_t bf16_oracle(float x)
{
    uint32_t u = bits(x);
    uint16_t lo = (uint16_t)(u >> 16), hi = (uint16_t)(lo + 1);
    double dl = fabs((double)x - (double)fbits((uint32_t)lo << 16));
    if ((hi & 0x7F80) == 0x7F80 && (lo & 0x7FFF) == 0x7F7F) {
        /* Above max finite: IEEE RNE overflows to inf past max + half ulp. */
        double half = ldexp(1.0, 127 - 8);
        return fabs((double)x) - 0x1.FEp127 >= half ? (uint16_t)(lo + 1) : lo;
    }
    double dh = fabs((double)x - (double)fbits((uint32_t)hi << 16));
    if (dl < dh) return lo;
    if (dh < dl) return hi;
    return (lo & 1) ? hi : lo;
}

TEST(quant_bf16_all_codes_and_specials)
{
    for (uint32_t c = 0; c < 65536; c++) {
        float v = wp_bf16_to_f32((uint16_t)c);
        CHECKF(bits(v) == c << 16, "decode 0x%04x", c);
        if (isnan(v)) {
            uint16_t r = wp_f32_to_bf16(v);
            CHECKF(isnan(wp_bf16_to_f32(r)) && (r & 0x0040) && (r & 0x8000) == (c & 0x8000),
                   "NaN 0x%04x -> 0x%04x must stay a quiet NaN of the same sign", c, r);
            continue;
        }
        CHECKF(wp_f32_to_bf16(v) == c, "0x%04x does not round-trip", c);
        /* The tie just above each finite code (not the last before inf). */
        if ((c & 0x7FFF) < 0x7F7F) {
            float mid = fbits(c << 16 | 0x8000);
            uint16_t want = (c & 1) ? (uint16_t)(c + 1) : (uint16_t)c;
            CHECKF(wp_f32_to_bf16(mid) == want, "tie 0x%08x -> 0x%04x", bits(mid), wp_f32_to_bf16(mid));
            CHECKF(wp_f32_to_bf16(dn(mid)) == bf16_oracle(dn(mid)) &&
                   wp_f32_to_bf16(up(mid)) == bf16_oracle(up(mid)), "near tie 0x%04x", c);
        }
    }
    CHECK_EQ_INT(wp_f32_to_bf16(0.0f), 0x0000);
    CHECK_EQ_INT(wp_f32_to_bf16(-0.0f), 0x8000);
    CHECK_EQ_INT(wp_f32_to_bf16(INFINITY), 0x7F80);
    CHECK_EQ_INT(wp_f32_to_bf16(-INFINITY), 0xFF80);
    CHECK_EQ_INT(wp_f32_to_bf16(fbits(0x3F808000u)), 0x3F80);   /* tie, even stays */
    CHECK_EQ_INT(wp_f32_to_bf16(fbits(0x3F818000u)), 0x3F82);   /* tie, odd goes up */
    CHECK_EQ_INT(wp_f32_to_bf16(fbits(0x3F808001u)), 0x3F81);
    CHECK_EQ_INT(wp_f32_to_bf16(fbits(0x7F7FFFFFu)), 0x7F80);   /* FLT_MAX rounds to inf */
    CHECK_EQ_INT(wp_f32_to_bf16(fbits(0x7F7F7FFFu)), 0x7F7F);
    CHECK_EQ_INT(wp_f32_to_bf16(fbits(0x7F7F8000u)), 0x7F80);   /* tie at the top: odd -> inf */
    /* A signalling NaN whose payload is only in the low half must not become
     * inf (the naive rounding would carry it there): it comes back quiet. */
    CHECK_EQ_INT(wp_f32_to_bf16(fbits(0x7F800001u)), 0x7FC0);
    CHECK_EQ_INT(wp_f32_to_bf16(fbits(0xFF800001u)), 0xFFC0);
    CHECK_EQ_INT(wp_f32_to_bf16(NAN) & 0x7FC0, 0x7FC0);
    CHECK_EQ_INT(wp_f32_to_bf16(fbits(0x00008000u)), 0x0000);   /* subnormal tie -> even */
    CHECK_EQ_INT(wp_f32_to_bf16(fbits(0x00018000u)), 0x0002);
    CHECK(wp_bf16_round(1.00390625f) == 1.0f);                  /* 1 + 2^-8: tie -> 1 */
    int bad = 0;
    for (uint64_t u = 0; u < 0x7F800000u && bad < 5; u += 9973) {
        float x = fbits((uint32_t)u);
        if (wp_f32_to_bf16(x) != bf16_oracle(x) || wp_f32_to_bf16(-x) != (bf16_oracle(x) | 0x8000)) {
            wpt_fail_at(__FILE__, __LINE__, "bf16(%a)", (double)x);
            bad++;
        }
    }
}

/* ---- F16 ------------------------------------------------------------------------------------ */
static uint16_t f16_oracle(float x)
{
    if (isnan(x)) return 0x7E00;
    double a = fabs((double)x);
    uint16_t sgn = signbit(x) ? 0x8000 : 0;
    if (a >= 65520.0) return sgn | 0x7C00;   /* max 65504 + half ulp (16) -> inf */
    /* Binary search the monotone positive ladder 0..0x7BFF, then RNE. */
    int lo = 0, hi = 0x7BFF;
    while (lo < hi) { int mid = (lo + hi + 1) / 2; if (f16_ref(mid) <= a) lo = mid; else hi = mid - 1; }
    if (lo == 0x7BFF) return sgn | 0x7BFF;
    double dl = a - f16_ref(lo), dh = f16_ref(lo + 1) - a;
    int c = dl < dh ? lo : dh < dl ? lo + 1 : (lo & 1 ? lo + 1 : lo);
    return (uint16_t)(sgn | c);
}

TEST(quant_f16_all_codes_and_ties)
{
    for (uint32_t c = 0; c < 65536; c++) {
        float v = wp_f16_to_f32((uint16_t)c);
        double r = f16_ref((int)c);
        if (isnan(r)) {
            CHECKF(isnan(v), "0x%04x should be NaN", c);
            CHECKF((wp_f32_to_f16(v) & 0x7E00) == 0x7E00, "NaN 0x%04x must stay a quiet NaN", c);
            continue;
        }
        CHECKF((double)v == r && !signbit(v) == !signbit(r), "decode 0x%04x -> %a", c, (double)v);
        CHECKF(wp_f32_to_f16(v) == c, "0x%04x does not round-trip", c);
        if ((c & 0x7FFF) < 0x7BFF) {   /* tie with the next code: even wins */
            float mid = (float)((r + f16_ref((int)c + 1)) / 2);
            uint16_t want = (c & 1) ? (uint16_t)(c + 1) : (uint16_t)c;
            CHECKF(wp_f32_to_f16(mid) == want, "tie %a -> 0x%04x", (double)mid, wp_f32_to_f16(mid));
            CHECKF(wp_f32_to_f16(dn(mid)) == f16_oracle(dn(mid)) &&
                   wp_f32_to_f16(up(mid)) == f16_oracle(up(mid)), "near tie 0x%04x", c);
        }
    }
    CHECK_EQ_INT(wp_f32_to_f16(65504.0f), 0x7BFF);
    CHECK_EQ_INT(wp_f32_to_f16(dn(65520.0f)), 0x7BFF);
    CHECK_EQ_INT(wp_f32_to_f16(65520.0f), 0x7C00);          /* IEEE: overflow -> inf */
    CHECK_EQ_INT(wp_f32_to_f16(-1e10f), 0xFC00);
    CHECK_EQ_INT(wp_f32_to_f16(0x1p-24f), 0x0001);          /* smallest subnormal */
    CHECK_EQ_INT(wp_f32_to_f16(0x1p-25f), 0x0000);          /* tie with 0 */
    CHECK_EQ_INT(wp_f32_to_f16(up(0x1p-25f)), 0x0001);
    CHECK_EQ_INT(wp_f32_to_f16(3 * 0x1p-25f), 0x0002);
    CHECK_EQ_INT(wp_f32_to_f16(fbits(0x80000001u)), 0x8000);
    CHECK_EQ_INT(wp_f32_to_f16(fbits(0x7F800001u)) & 0x7E00, 0x7E00);
    int bad = 0;
    for (uint64_t u = 0; u < 0x7F800000u && bad < 5; u += 7919) {
        float x = fbits((uint32_t)u);
        uint16_t want = f16_oracle(x);
#ifdef __FLT16_MAX__
        /* Second, independent opinion where the compiler has _Float16. */
        _Float16 h = (_Float16)x;
        uint16_t hb; memcpy(&hb, &h, 2);
        CHECKF(hb == want, "oracle disagrees with _Float16 at %a", (double)x);
#endif
        if (wp_f32_to_f16(x) != want || wp_f32_to_f16(-x) != (want | 0x8000)) {
            wpt_fail_at(__FILE__, __LINE__, "f16(%a) = 0x%04x, want 0x%04x", (double)x, wp_f32_to_f16(x), want);
            bad++;
        }
    }
}

/* ---- pow2ceil and the rounded reciprocals (spec §3.6) ------------------------------------- */
TEST(quant_pow2ceil_and_reciprocals)
{
    CHECK(bits(wp_inv448()) == 0x3B124925u && bits(wp_inv6()) == 0x3E2AAAABu);
    CHECK(wp_inv448() == (float)(1.0 / 448.0) && wp_inv6() == (float)(1.0 / 6.0));
    /* The detail the spec insists on: 448·fl32(1/448) is exactly 1 and
     * 224·fl32(1/448) exactly 1/2, so tight blocks keep their scale. */
    volatile float a448 = 448.0f, a6 = 6.0f;
    CHECK(a448 * wp_inv448() == 1.0f && a6 * wp_inv6() == 1.0f);
    /* Exact powers of two map to themselves; anything above goes up. */
    for (int e = -149; e <= 127; e++) {
        float p = ldexpf(1.0f, e);
        CHECKF(wp_pow2ceil(p) == p, "pow2ceil(2^%d)", e);
        if (e < 127 && e > -148) {
            float q = up(p);
            CHECKF(wp_pow2ceil(q) == ldexpf(1.0f, e + 1), "pow2ceil(up(2^%d))", e);
            CHECKF(wp_pow2ceil(dn(p)) == p, "pow2ceil(dn(2^%d))", e);
        }
    }
    CHECK(wp_pow2ceil(1.5f) == 2.0f && wp_pow2ceil(0.75f) == 1.0f && wp_pow2ceil(3.0f) == 4.0f);
    CHECK(wp_pow2ceil(0x1.df595ap-23f) == 0x1p-22f);        /* fl32(1e-4 · fl32(1/448)) */
    CHECK(wp_pow2ceil(fbits(0x00300000u)) == 0x1p-127f);    /* subnormal */
    CHECK(wp_pow2ceil(fbits(0x007FFFFFu)) == 0x1p-126f);
    CHECK(isinf(wp_pow2ceil(up(0x1p127f))) && isinf(wp_pow2ceil(INFINITY)));
    CHECK(isnan(wp_pow2ceil(NAN)));
    CHECK(wp_pow2ceil(0.0f) == 0.0f && wp_pow2ceil(-1.0f) == 0.0f);
}
