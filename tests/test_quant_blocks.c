/*
 * test_quant_blocks.c — block codecs (spec §3.5–3.7), the wp_qweight view
 * and wp_qerr.
 *
 * The scalar codecs are verified exhaustively in test_quant_formats.c, so
 * here they serve as the per-element oracle; what is tested is the block
 * logic: which elements share a scale (ragged edges included), the scale
 * rule (recomputed independently with frexp, not with wp_pow2ceil), nibble
 * order, and error bounds from the format's precision:
 *   E4M3 normal range: half an ulp = 2^-4 of the leading power of two, so
 *     |err| <= 2^-4·|x|; subnormal range: |err| <= 2^-10·s.
 *   E2M1: half the spacing is <= 2^-2·|x| (normal), 2^-2·s below 1·s.
 */
#include "quant/quant.h"
#include "tests/harness.h"

static uint32_t bits(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }

/* Deterministic test data: xorshift64*, uniform in [-1, 1). */
static uint64_t rng_state = 0x9E3779B97F4A7C15ull;
static float frand(void)
{
    rng_state ^= rng_state >> 12; rng_state ^= rng_state << 25; rng_state ^= rng_state >> 27;
    uint64_t r = rng_state * 0x2545F4914F6CDD1Dull;
    return (float)((double)(r >> 40) / (double)(1ull << 23) - 1.0);
}

static uint8_t rbyte(void) { (void)frand(); return (uint8_t)(rng_state >> 32); }

/* Independent pow2ceil: 2^ceil(log2 t) through frexp (t > 0, normal). */
static float pow2ceil_ref(float t)
{
    int e;
    double m = frexp((double)t, &e);   /* t = m·2^e, m in [0.5, 1) */
    return (float)(m == 0.5 ? ldexp(1.0, e - 1) : ldexp(1.0, e));
}
static float c448(void) { uint32_t u = 0x3B124925u; float f; memcpy(&f, &u, 4); return f; }
static float c6(void) { uint32_t u = 0x3E2AAAABu; float f; memcpy(&f, &u, 4); return f; }

/* Both error bounds of the header comment. */
static int e4m3_close(float x, float y, float s)
{
    double err = fabs((double)y - x);
    return err <= ldexp(fabs((double)x), -4) || err <= ldexp((double)s, -10);
}
static int e2m1_close(float x, float y, float s)
{
    double err = fabs((double)y - x);
    return err <= 0.25 * fabs((double)x) || err <= 0.25 * (double)s;
}

/* ---- Activations (spec §3.6) ------------------------------------------------------- */
TEST(quant_act_quant_hand_cases)
{
    /* Block 4.  amax 3 -> t = 3·fl32(1/448) -> s = 2^-7: x/s = 384, -140.8, 1.28, 0
     * round to 384, -144 (spacing 16), 1.25 (spacing 1/8), 0. */
    float x[12] = { 3.0f, -1.1f, 0.01f, 0.0f,
                    /* amax below the 1e-4 floor: s = pow2ceil(fl32(1e-4)·c448) = 2^-22 */
                    1e-6f, -2e-5f, 0.0f, 5e-5f,
                    /* amax exactly 448: 448·fl32(1/448) == 1, so s = 1, not 2 */
                    448.0f, 1.0f, -0.5f, 300.0f };
    uint8_t q[12], sc[3];
    wp_act_quant(x, 12, 4, q, sc);
    CHECK_EQ_INT(sc[0], 127 - 7);
    CHECK_EQ_INT(sc[1], 127 - 22);
    CHECK_EQ_INT(sc[2], 127);
    CHECK_EQ_INT(q[0], 0x7C); CHECK_EQ_INT(q[1], 0xF1); CHECK_EQ_INT(q[2], 0x3A); CHECK_EQ_INT(q[3], 0x00);
    CHECK_EQ_INT(q[8], 0x7E); CHECK_EQ_INT(q[9], 0x38); CHECK_EQ_INT(q[10], 0xB0); CHECK_EQ_INT(q[11], 0x79);
    float want[12] = { 3.0f, -1.125f, 0.009765625f, 0.0f,
                       ldexpf(4, -22), ldexpf(-80, -22), 0.0f, ldexpf(208, -22),
                       448.0f, 1.0f, -0.5f, 288.0f };
    wp_act_quant_sim(x, 12, 4);
    for (int i = 0; i < 12; i++)
        CHECKF(x[i] == want[i], "x[%d] = %a, want %a", i, (double)x[i], (double)want[i]);
    /* 449 > 448 pushes t over 1: s = 2, 449/2 -> 224. */
    float y[2] = { 449.0f, -3.0f };
    wp_act_quant(y, 2, 2, q, sc);
    CHECK_EQ_INT(sc[0], 128);
    CHECK(wp_e4m3_to_f32(q[0]) == 224.0f && wp_e4m3_to_f32(q[1]) == -1.5f);
}

TEST(quant_fp4_act_quant_hand_cases)
{
    /* amax 6 -> 6·fl32(1/6) == 1 -> s = 1.  -0.7 -> -0.5, 0.1 -> 0. */
    /* amax 5 -> s = 1: 5 ties 4|6 -> 4, 2.9 -> 3, -0.2 -> -0, 1.3 -> 1.5. */
    /* all zero -> s = pow2ceil(6·2^-126·fl32(1/6)) = 2^-126, zeros stay zeros. */
    /* amax 12 -> s = 2: 12 -> 6·2, 7 -> 8 (3.5 ties 3|4 -> 4), 0.5 -> 0 (0.25 tie -> 0),
     * -2.6 -> -3 (-1.3 is nearer -1.5 than -1). */
    float x[16] = { 6, 1, -0.7f, 0.1f,   5, 2.9f, -0.2f, 1.3f,   0, 0, -0.0f, 0,   12, 7, 0.5f, -2.6f };
    float want[16] = { 6, 1, -0.5f, 0,   4, 3, -0.0f, 1.5f,   0, 0, -0.0f, 0,   12, 8, 0, -3 };
    wp_fp4_act_quant_sim(x, 16, 4);
    for (int i = 0; i < 16; i++)
        CHECKF(bits(x[i]) == bits(want[i]), "x[%d] = %a, want %a", i, (double)x[i], (double)want[i]);
    /* The floor bites: an fp32-subnormal block uses s = 2^-126 (not a smaller
     * scale), so 2^-127 -> 0.5·s exactly and 2^-128 -> 0 (0.25 tie -> 0). */
    float t[2] = { 0x1p-127f, 0x1p-128f };
    wp_fp4_act_quant_sim(t, 2, 2);
    CHECK(t[0] == 0x1p-127f && t[1] == 0.0f);
}

/* Random bf16 activations, several magnitudes; check each block against the
 * independent scale rule, the scalar oracle and the error bound, then
 * idempotence (a quantised vector is a fixed point). */
static void act_check(size_t n, size_t block, int fp4)
{
    float *x = malloc(n * sizeof(float)), *y = malloc(n * sizeof(float)), *z = malloc(n * sizeof(float));
    REQUIRE(x && y && z);
    for (size_t i = 0; i < n; i++) {
        float mag = ldexpf(1.0f, (int)((i / block) % 40) - 20);   /* 2^-20 .. 2^19 by block */
        x[i] = wp_bf16_round(frand() * mag);
    }
    memcpy(y, x, n * sizeof(float));
    if (fp4) wp_fp4_act_quant_sim(y, n, block); else wp_act_quant_sim(y, n, block);
    int bad = 0;
    for (size_t b = 0; b < n && bad < 5; b += block) {
        float amax = 0;
        for (size_t i = b; i < b + block; i++) amax = fmaxf(amax, fabsf(x[i]));
        float s = fp4 ? pow2ceil_ref(fmaxf(amax, 0x1.8p-124f) * c6())
                      : pow2ceil_ref(fmaxf(amax, 1e-4f) * c448());
        for (size_t i = b; i < b + block; i++) {
            float want = fp4 ? wp_e2m1_to_f32(wp_f32_to_e2m1(x[i] / s)) * s
                             : wp_e4m3_to_f32(wp_f32_to_e4m3(x[i] / s)) * s;
            int ok = bits(y[i]) == bits(want) &&
                     (fp4 ? e2m1_close(x[i], y[i], s) : e4m3_close(x[i], y[i], s)) &&
                     wp_bf16_round(y[i]) == y[i];
            if (!ok) {
                wpt_fail_at(__FILE__, __LINE__, "%s block %zu: x=%a y=%a want %a s=%a", fp4 ? "fp4" : "fp8",
                            b / block, (double)x[i], (double)y[i], (double)want, (double)s);
                bad++;
                break;
            }
        }
    }
    memcpy(z, y, n * sizeof(float));
    if (fp4) wp_fp4_act_quant_sim(z, n, block); else wp_act_quant_sim(z, n, block);
    CHECK(memcmp(y, z, n * sizeof(float)) == 0);
    free(x); free(y); free(z);
}

TEST(quant_act_quant_round_trips)
{
    act_check(128 * 80, 128, 0);   /* activation FP8 1x128 */
    act_check(64 * 80, 64, 0);     /* KV FP8 1x64 */
    act_check(32 * 80, 32, 1);     /* indexer FP4 1x32 */
}

/* ---- FP8 weights, R x C blocks ------------------------------------------------------- */
static void fp8_weight_case(size_t rows, size_t cols, size_t br, size_t bc, wp_scale_fmt fmt)
{
    size_t nbr = (rows + br - 1) / br, nbc = (cols + bc - 1) / bc, ssz = fmt == WP_SCALE_F32 ? 4 : 1;
    float *w = malloc(rows * cols * 4), *d = malloc(rows * cols * 4), *d2 = malloc(rows * cols * 4);
    uint8_t *q = malloc(rows * cols), *q2 = malloc(rows * cols);
    uint8_t *s = malloc(nbr * nbc * ssz), *s2 = malloc(nbr * nbc * ssz);
    REQUIRE(w && d && d2 && q && q2 && s && s2);
    CHECK_EQ_INT(wp_enc_scale_bytes(WP_ENC_FP8, rows, cols, (uint32_t)br, (uint32_t)bc, fmt), nbr * nbc * ssz);
    /* Each block its own magnitude, so a wrong block index shows up as a wrong scale. */
    for (size_t r = 0; r < rows; r++)
        for (size_t c = 0; c < cols; c++)
            w[r * cols + c] = frand() * ldexpf(1.0f, (int)(((r / br) * 7 + (c / bc) * 3) % 23) - 11);
    w[0] = 0.0f;                                                  /* a zero element */
    wp_fp8_block_quant(w, rows, cols, br, bc, fmt, q, s);
    wp_fp8_block_dequant(q, s, rows, cols, br, bc, fmt, d);
    int bad = 0;
    for (size_t bi = 0; bi < nbr; bi++)
        for (size_t bj = 0; bj < nbc; bj++) {
            size_t r1 = bi * br + br < rows ? bi * br + br : rows, c1 = bj * bc + bc < cols ? bj * bc + bc : cols;
            float amax = 0, maxq = 0;
            for (size_t r = bi * br; r < r1; r++)
                for (size_t c = bj * bc; c < c1; c++) amax = fmaxf(amax, fabsf(w[r * cols + c]));
            float sv;
            if (fmt == WP_SCALE_E8M0) {
                sv = wp_e8m0_to_f32(s[bi * nbc + bj]);
                CHECKF(sv == pow2ceil_ref(amax * c448()), "block (%zu,%zu): scale %a, amax %a", bi, bj,
                       (double)sv, (double)amax);
            } else {
                memcpy(&sv, s + 4 * (bi * nbc + bj), 4);
                CHECKF(sv == amax / 448.0f, "block (%zu,%zu): f32 scale %a", bi, bj, (double)sv);
            }
            for (size_t r = bi * br; r < r1 && bad < 5; r++)
                for (size_t c = bj * bc; c < c1; c++) {
                    size_t i = r * cols + c;
                    uint8_t want = wp_f32_to_e4m3(fmt == WP_SCALE_E8M0 ? w[i] * (1.0f / sv) : w[i] / sv);
                    maxq = fmaxf(maxq, fabsf(wp_e4m3_to_f32(q[i])));
                    if (q[i] != want || d[i] != wp_e4m3_to_f32(q[i]) * sv || !e4m3_close(w[i], d[i], sv)) {
                        wpt_fail_at(__FILE__, __LINE__, "(%zu,%zu): w=%a q=0x%02x want 0x%02x d=%a", r, c,
                                    (double)w[i], q[i], want, (double)d[i]);
                        bad++;
                        break;
                    }
                }
            /* Tight: the reference rule puts the block max in (224, 448]. */
            CHECKF(maxq >= 224.0f && maxq <= 448.0f, "block (%zu,%zu) max code %g", bi, bj, (double)maxq);
        }
    /* Dequantise -> requantise: the same values; for E8M0, the same bytes too. */
    wp_fp8_block_quant(d, rows, cols, br, bc, fmt, q2, s2);
    wp_fp8_block_dequant(q2, s2, rows, cols, br, bc, fmt, d2);
    if (fmt == WP_SCALE_E8M0) {
        CHECK(memcmp(d, d2, rows * cols * 4) == 0);
        CHECK(memcmp(q, q2, rows * cols) == 0 && memcmp(s, s2, nbr * nbc) == 0);
    } else {
        /* amax'/448 re-rounds s, so values agree to an fp32 rounding or two. */
        for (size_t i = 0; i < rows * cols; i++)
            if (!(fabsf(d2[i] - d[i]) <= 0x1p-20f * fabsf(d[i]))) {
                wpt_fail_at(__FILE__, __LINE__, "f32 requant [%zu]: %a vs %a", i, (double)d[i], (double)d2[i]);
                break;
            }
    }
    free(w); free(d); free(d2); free(q); free(q2); free(s); free(s2);
}

TEST(quant_fp8_weight_blocks)
{
    fp8_weight_case(300, 200, 128, 128, WP_SCALE_E8M0);   /* ragged: 44 rows, 72 cols */
    fp8_weight_case(300, 200, 128, 128, WP_SCALE_F32);
    fp8_weight_case(70, 45, 32, 32, WP_SCALE_E8M0);       /* V4.1-style 32x32, ragged */
    fp8_weight_case(70, 45, 32, 32, WP_SCALE_F32);
    fp8_weight_case(256, 256, 128, 128, WP_SCALE_E8M0);
}

TEST(quant_fp8_weight_special_blocks)
{
    /* 2x2 blocks of 2x2: zeros; a NaN among normal values; +inf; tiny (fp32
     * subnormal amax, scale floored at E8M0's 2^-127). */
    float w[16] = { 0, 0,      1, NAN,
                    0, -0.0f,  2, -3,
                    INFINITY, 1,   0x1p-140f, 0,
                    -2, 5,         0, -0x1p-141f };
    uint8_t q[16], s[4];
    wp_fp8_block_quant(w, 4, 4, 2, 2, WP_SCALE_E8M0, q, s);
    CHECK_EQ_INT(s[0], 127);                       /* all-zero block: scale 1 */
    CHECK(q[0] == 0 && q[1] == 0 && q[4] == 0 && q[5] == 0x80);
    CHECK_EQ_INT(s[1], 127 - 7);                   /* NaN ignored: amax 3 -> 2^-7 */
    CHECK_EQ_INT(q[3], 0x7F);                      /* NaN stays NaN */
    CHECK_EQ_INT(q[2], 0x70);                      /* 1·128 = 128 */
    CHECK_EQ_INT(s[2], 254);                       /* inf: largest scale, codes saturate */
    CHECK_EQ_INT(q[8], 0x7E);
    CHECK_EQ_INT(s[3], 0);                         /* 2^-140·c448 < 2^-127: floor */
    CHECK_EQ_INT(q[10], wp_f32_to_e4m3(0x1p-13f)); /* 2^-140 / 2^-127 */
    float d[16];
    wp_fp8_block_dequant(q, s, 4, 4, 2, 2, WP_SCALE_E8M0, d);
    CHECK(isnan(d[3]) && d[2] == 1.0f && d[6] == 2.0f && d[7] == -3.0f);
    CHECK(d[10] == wp_e4m3_to_f32(q[10]) * 0x1p-127f);
}

/* ---- MXFP4 (1x32 E8M0) -------------------------------------------------------------- */
TEST(quant_mxfp4_round_trip)
{
    enum { R = 5, C = 96 };
    float w[R * C], d[R * C], d2[R * C];
    uint8_t q[R * C / 2], s[R * C / 32], q2[R * C / 2], s2[R * C / 32];
    CHECK_EQ_INT(wp_enc_data_bytes(WP_ENC_MXFP4, R, C), sizeof q);
    CHECK_EQ_INT(wp_enc_scale_bytes(WP_ENC_MXFP4, R, C, 0, 0, WP_SCALE_E8M0), sizeof s);
    for (int i = 0; i < R * C; i++)
        w[i] = frand() * ldexpf(1.0f, (i / 32) % 17 - 8);
    /* Nibble order (spec §3.4): group 0 gets amax 6 -> s = 1; element 0 = 1 (code 2),
     * element 1 = -6 (code 0xF): byte 0 == 0xF2. */
    for (int i = 0; i < 32; i++) w[i] = 0.0f;
    w[0] = 1.0f; w[1] = -6.0f; w[2] = 0.25f; w[3] = 0.75f;
    wp_mxfp4_quant(w, R, C, q, s);
    CHECK_EQ_INT(s[0], 127);
    CHECK_EQ_INT(q[0], 0xF2);
    CHECK_EQ_INT(q[1], 0x20);                       /* 0.25 -> 0 (tie), 0.75 -> 1 (tie) */
    wp_mxfp4_dequant(q, s, R, C, d);
    for (int g = 0; g < R * C / 32; g++) {
        float amax = 0;
        for (int j = 0; j < 32; j++) amax = fmaxf(amax, fabsf(w[g * 32 + j]));
        float sv = wp_e8m0_to_f32(s[g]);
        CHECKF(sv == pow2ceil_ref(amax * c6()), "group %d: scale %a", g, (double)sv);
        for (int j = 0; j < 32; j++) {
            int i = g * 32 + j;
            uint8_t code = (q[i / 2] >> (4 * (i & 1))) & 15;
            CHECKF(code == wp_f32_to_e2m1(w[i] / sv), "[%d] code %d", i, code);
            CHECKF(d[i] == wp_e2m1_to_f32(code) * sv && e2m1_close(w[i], d[i], sv), "[%d] %a -> %a", i,
                   (double)w[i], (double)d[i]);
        }
    }
    wp_mxfp4_quant(d, R, C, q2, s2);
    wp_mxfp4_dequant(q2, s2, R, C, d2);
    CHECK(memcmp(d, d2, sizeof d) == 0);
    /* Bytes agree wherever the group max is above 3 (spec §3.6 tight range). */
    for (int g = 0; g < R * C / 32; g++) {
        int maxc = 0;
        for (int j = 0; j < 16; j++) {
            maxc = (q[g * 16 + j] & 7) > maxc ? q[g * 16 + j] & 7 : maxc;
            maxc = (q[g * 16 + j] >> 4 & 7) > maxc ? q[g * 16 + j] >> 4 & 7 : maxc;
        }
        if (maxc > 5)
            CHECKF(s[g] == s2[g] && memcmp(q + g * 16, q2 + g * 16, 16) == 0, "group %d bytes", g);
    }
}

/* ---- NVFP4 (1x16 E4M3 + f32 global) -------------------------------------------------- */
TEST(quant_nvfp4_round_trip)
{
    enum { R = 4, C = 64 };
    float w[R * C], d[R * C];
    uint8_t q[R * C / 2], s[R * C / 16];
    CHECK_EQ_INT(wp_enc_scale_bytes(WP_ENC_NVFP4, R, C, 0, 0, WP_SCALE_E8M0), sizeof s);
    for (int i = 0; i < R * C; i++)
        w[i] = frand() * ldexpf(1.0f, (i / 16) % 9 - 3);
    float amax = 0;
    for (int i = 0; i < R * C; i++) amax = fmaxf(amax, fabsf(w[i]));
    float gl = wp_nvfp4_global_scale(w, R * C);
    CHECK(gl == amax / 2688.0f);
    wp_nvfp4_quant(w, R, C, gl, q, s);
    wp_nvfp4_dequant(q, s, gl, R, C, d);
    for (int g = 0; g < R * C / 16; g++) {
        float ga = 0;
        for (int j = 0; j < 16; j++) ga = fmaxf(ga, fabsf(w[g * 16 + j]));
        CHECKF(s[g] == wp_f32_to_e4m3(ga / 6.0f / gl), "group %d scale code 0x%02x", g, s[g]);
        float se = wp_e4m3_to_f32(s[g]) * gl;
        for (int j = 0; j < 16; j++) {
            int i = g * 16 + j;
            uint8_t code = (q[i / 2] >> (4 * (i & 1))) & 15;
            CHECKF(code == wp_f32_to_e2m1(w[i] / se), "[%d] code", i);
            CHECKF(d[i] == wp_e2m1_to_f32(code) * wp_e4m3_to_f32(s[g]) * gl && e2m1_close(w[i], d[i], se),
                   "[%d] %a -> %a", i, (double)w[i], (double)d[i]);
        }
    }
    /* Hand case: tensor amax 2688 -> global 1; group amax 6 -> scale 1.0 (0x38). */
    float h[16] = { 2688, 0 }, hd[16];
    for (int j = 2; j < 16; j++) h[j] = 0.0f;
    h[1] = 1.0f;
    CHECK(wp_nvfp4_global_scale(h, 16) == 1.0f);
    float z[16] = {0};
    CHECK(wp_nvfp4_global_scale(z, 16) == 1.0f);   /* all zero: 1, not 0 */
    uint8_t hq[8], hs[1];
    wp_nvfp4_quant(h, 1, 16, 1.0f, hq, hs);
    CHECK_EQ_INT(hs[0], 0x7E);                     /* 2688/6 = 448 */
    wp_nvfp4_dequant(hq, hs, 1.0f, 1, 16, hd);
    CHECK(hd[0] == 2688.0f && hd[1] == 0.0f);      /* 1/448 -> 0 (below 0.25) */
    wp_nvfp4_quant(z, 1, 16, 1.0f, hq, hs);
    CHECK(hs[0] == 0 && hq[0] == 0);
}

/* ---- spec §3.7: MXFP4 -> FP8 -------------------------------------------------------- */
/* Expected FP8 element for fp4 code c at exponent offset k, and whether it is exact. */
static uint8_t cast_ref(uint8_t c, int k, int *exact)
{
    double v = ldexp((double)wp_e2m1_to_f32(c), k);
    uint8_t q = wp_f32_to_e4m3((float)v);   /* v is exact in fp32 here (k >= -20) */
    *exact = (double)wp_e4m3_to_f32(q) == v;
    return q;
}

static void mxfp4_to_fp8_case(size_t rows, size_t cols, int spread, int emax_base, wp_scale_fmt fmt,
                              size_t *lossy_out)
{
    size_t ng = cols / 32, nbr = (rows + 127) / 128, nbc = (cols + 127) / 128;
    uint8_t *q4 = malloc(rows * cols / 2), *s4 = malloc(rows * ng), *q8 = malloc(rows * cols);
    uint8_t *s8 = malloc(nbr * nbc * 4);
    float *d4 = malloc(rows * cols * 4), *d8 = malloc(rows * cols * 4);
    REQUIRE(q4 && s4 && q8 && s8 && d4 && d8);
    for (size_t i = 0; i < rows * cols / 2; i++)
        q4[i] = rbyte();
    for (size_t i = 0; i < rows * ng; i++)
        s4[i] = (uint8_t)(emax_base - rbyte() % (spread + 1));
    /* Make sure every tile reaches exactly emax_base in one group and the
     * lowest exponent in another, so the spread is what the case says. */
    for (size_t ti = 0; ti < nbr; ti++)
        for (size_t tj = 0; tj < nbc; tj++) {
            s4[(ti * 128) * ng + tj * 4] = (uint8_t)emax_base;
            if ((tj * 4 + 1) < ng) s4[(ti * 128) * ng + tj * 4 + 1] = (uint8_t)(emax_base - spread);
        }
    size_t lossy = wp_mxfp4_to_fp8(q4, s4, rows, cols, fmt, q8, s8);
    size_t want_lossy = 0;
    int ep = emax_base - 6 < 0 ? 0 : emax_base - 6;
    for (size_t ti = 0; ti < nbr; ti++)
        for (size_t tj = 0; tj < nbc; tj++) {
            if (fmt == WP_SCALE_E8M0)
                CHECKF(s8[ti * nbc + tj] == ep, "tile (%zu,%zu) scale %d, want %d", ti, tj, s8[ti * nbc + tj], ep);
            else {
                float f; memcpy(&f, s8 + 4 * (ti * nbc + tj), 4);
                CHECKF(f == wp_e8m0_to_f32((uint8_t)ep), "tile (%zu,%zu) f32 scale", ti, tj);
            }
        }
    int bad = 0;
    for (size_t r = 0; r < rows; r++)
        for (size_t c = 0; c < cols && bad < 5; c++) {
            uint8_t c4 = (q4[r * cols / 2 + c / 2] >> (4 * (c & 1))) & 15;
            int exact, k = s4[r * ng + c / 32] - ep;
            uint8_t want = cast_ref(c4, k, &exact);
            want_lossy += !exact;
            if (q8[r * cols + c] != want) {
                wpt_fail_at(__FILE__, __LINE__, "(%zu,%zu) fp4 %d k %d -> 0x%02x want 0x%02x", r, c, c4, k,
                            q8[r * cols + c], want);
                bad++;
            }
        }
    CHECK_EQ_INT(lossy, want_lossy);
    if (want_lossy == 0) {   /* lossless: both dequantise to the same values */
        wp_mxfp4_dequant(q4, s4, rows, cols, d4);
        wp_fp8_block_dequant(q8, s8, rows, cols, 128, 128, fmt, d8);
        CHECK(memcmp(d4, d8, rows * cols * 4) == 0);
    }
    *lossy_out = lossy;
    free(q4); free(s4); free(q8); free(s8); free(d4); free(d8);
}

TEST(quant_mxfp4_to_fp8)
{
    size_t lossy;
    /* Exponents within 14 of the tile max: lossless (spec §3.7), ragged tiles. */
    mxfp4_to_fp8_case(200, 160, 14, 127, WP_SCALE_E8M0, &lossy);
    CHECK_EQ_INT(lossy, 0);
    mxfp4_to_fp8_case(128, 256, 14, 120, WP_SCALE_F32, &lossy);
    CHECK_EQ_INT(lossy, 0);
    /* Near E8M0's bottom: S' floored at 2^-127, still lossless. */
    mxfp4_to_fp8_case(130, 64, 3, 3, WP_SCALE_E8M0, &lossy);
    CHECK_EQ_INT(lossy, 0);
    /* Spread 20: small values of the low groups fall into E4M3 subnormals or
     * vanish; the count must be exact (checked inside against the oracle). */
    mxfp4_to_fp8_case(256, 128, 20, 130, WP_SCALE_E8M0, &lossy);
    CHECK(lossy > 0);
    /* A hand-made tile: one row, groups at exponents 127 and 127-15: the low
     * group's 0.5 -> 0.5·2^-9 = 2^-10 rounds to 0 (tie -> even), its 1.0 -> 2^-9
     * is exact, its 1.5 -> 1.5·2^-9 ties 2^-9|2^-8 -> 2^-8 (even code 2). */
    uint8_t q4[32] = {0}, s4[2] = { 127, 112 }, q8[64], s8[1];
    q4[16] = 0x21;   /* group 1: elements 0.5, 1.0 */
    q4[17] = 0x03;   /* element 1.5, 0 */
    CHECK_EQ_INT(wp_mxfp4_to_fp8(q4, s4, 1, 64, WP_SCALE_E8M0, q8, s8), 2);
    CHECK_EQ_INT(s8[0], 121);
    CHECK(q8[32] == 0x00 && q8[33] == 0x01 && q8[34] == 0x02);
}

/* ---- The wp_qweight view ---------------------------------------------------------------- */
TEST(quant_qweight_dequant_rows_every_encoding)
{
    wp_enc e;
    for (int i = 0; i < WP_ENC_COUNT; i++)
        CHECK(wp_enc_parse(wp_enc_name((wp_enc)i), &e) == 0 && e == (wp_enc)i);
    CHECK(wp_enc_parse("FP8", &e) == -1 && wp_enc_parse("", &e) == -1 && wp_enc_parse(NULL, &e) == -1);
    CHECK(strcmp(wp_enc_name(WP_ENC_MXFP4), "mxfp4") == 0);
    CHECK_EQ_INT(wp_enc_data_bytes(WP_ENC_BF16, 3, 5), 30);
    CHECK_EQ_INT(wp_enc_data_bytes(WP_ENC_F32, 3, 5), 60);
    CHECK_EQ_INT(wp_enc_data_bytes(WP_ENC_FP8, 3, 5), 15);
    CHECK_EQ_INT(wp_enc_data_bytes(WP_ENC_NVFP4, 2, 32), 32);
    CHECK(wp_enc_data_bytes(WP_ENC_F32, 1ull << 62, 4) == UINT64_MAX);
    CHECK_EQ_INT(wp_enc_scale_bytes(WP_ENC_FP8, 300, 200, 128, 128, WP_SCALE_E8M0), 6);
    CHECK_EQ_INT(wp_enc_scale_bytes(WP_ENC_FP8, 300, 200, 128, 128, WP_SCALE_F32), 24);
    CHECK_EQ_INT(wp_enc_scale_bytes(WP_ENC_BF16, 300, 200, 128, 128, WP_SCALE_F32), 0);
    CHECK(wp_enc_scale_bytes(WP_ENC_MXFP4, 4, 48, 0, 0, WP_SCALE_E8M0) == UINT64_MAX);

    enum { R = 6, C = 64 };
    float w[R * C], out[R * C];
    for (int i = 0; i < R * C; i++) w[i] = wp_bf16_round(frand() * 4);
    /* Data at an odd address: mapped safetensors promise no alignment. */
    uint8_t *raw = malloc(R * C * 4 + 1), *p = raw + 1;
    REQUIRE(raw);
    wp_qweight qw = { .rows = R, .cols = C, .data = p };

    qw.enc = WP_ENC_F32; memcpy(p, w, sizeof w);
    wp_qweight_dequant_rows(&qw, 2, 3, out);
    CHECK(memcmp(out, w + 2 * C, 3 * C * 4) == 0);

    qw.enc = WP_ENC_BF16;
    for (int i = 0; i < R * C; i++) { uint16_t h = wp_f32_to_bf16(w[i]); memcpy(p + 2 * i, &h, 2); }
    wp_qweight_dequant_rows(&qw, 1, 5, out);
    CHECK(memcmp(out, w + C, 5 * C * 4) == 0);

    qw.enc = WP_ENC_F16;
    for (int i = 0; i < R * C; i++) { uint16_t h = wp_f32_to_f16(w[i]); memcpy(p + 2 * i, &h, 2); }
    wp_qweight_dequant_rows(&qw, 0, R, out);
    for (int i = 0; i < R * C; i++)
        CHECKF(out[i] == wp_f16_to_f32(wp_f32_to_f16(w[i])), "f16 [%d]", i);

    /* FP8 32x32 with F32 scales, scales misaligned too; rows 3..5 straddle no
     * block edge, rows 30..35 do (R is small: use 40 rows for this one). */
    enum { R8 = 40 };
    float w8[R8 * C], ref8[R8 * C], o8[R8 * C];
    for (int i = 0; i < R8 * C; i++) w8[i] = frand() * (float)(1 + i / 500);
    uint8_t q8[R8 * C], sraw[2 * 2 * 4 + 1];
    wp_fp8_block_quant(w8, R8, C, 32, 32, WP_SCALE_F32, q8, sraw + 1);
    wp_fp8_block_dequant(q8, sraw + 1, R8, C, 32, 32, WP_SCALE_F32, ref8);
    wp_qweight q8w = { .enc = WP_ENC_FP8, .rows = R8, .cols = C, .data = q8, .scale = sraw + 1,
                       .sfmt = WP_SCALE_F32, .br = 32, .bc = 32 };
    wp_qweight_dequant_rows(&q8w, 30, 6, o8);
    CHECK(memcmp(o8, ref8 + 30 * C, 6 * C * 4) == 0);
    for (int c = 0; c < C; c++) {   /* row 33 is in block row 1: check against its own scale */
        float sc; memcpy(&sc, sraw + 1 + 4 * (1 * 2 + c / 32), 4);
        CHECKF(ref8[33 * C + c] == wp_e4m3_to_f32(q8[33 * C + c]) * sc, "fp8 (33,%d)", c);
    }

    /* MXFP4 and NVFP4 rows 4..5 against the whole-tensor dequantiser. */
    uint8_t q4[R * C / 2], s4[R * C / 16];
    float full[R * C];
    wp_mxfp4_quant(w, R, C, q4, s4);
    wp_mxfp4_dequant(q4, s4, R, C, full);
    wp_qweight m = { .enc = WP_ENC_MXFP4, .rows = R, .cols = C, .data = q4, .scale = s4 };
    wp_qweight_dequant_rows(&m, 4, 2, out);
    CHECK(memcmp(out, full + 4 * C, 2 * C * 4) == 0);
    CHECK(out[0] == wp_e2m1_to_f32(q4[4 * C / 2] & 15) * wp_e8m0_to_f32(s4[4 * C / 32]));
    float gl = wp_nvfp4_global_scale(w, R * C);
    wp_nvfp4_quant(w, R, C, gl, q4, s4);
    wp_nvfp4_dequant(q4, s4, gl, R, C, full);
    wp_qweight nv = { .enc = WP_ENC_NVFP4, .rows = R, .cols = C, .data = q4, .scale = s4, .global = gl };
    wp_qweight_dequant_rows(&nv, 4, 2, out);
    CHECK(memcmp(out, full + 4 * C, 2 * C * 4) == 0);
    CHECK(out[1] == wp_e2m1_to_f32(q4[4 * C / 2] >> 4) * wp_e4m3_to_f32(s4[4 * C / 16]) * gl);
    free(raw);
}

/* ---- wp_qerr ---------------------------------------------------------------------------- */
TEST(quant_qerr_hand_values)
{
    const float ref[4] = { 1, 2, 3, 4 }, out[4] = { 1, 2, 3, 5 };
    wp_qerr s = {0}, a = {0}, b = {0};
    wp_qerr_add(&s, ref, out, 4, 3.5f);
    CHECK_NEAR(wp_qerr_rmse(&s), 0.5, 1e-15);                 /* sqrt(1/4) */
    CHECK_NEAR(wp_qerr_nmse(&s), 1.0 / 30.0, 1e-15);          /* 1 / (1+4+9+16) */
    CHECK_NEAR(wp_qerr_cosine(&s), 34.0 / sqrt(30.0 * 39.0), 1e-15);
    CHECK_NEAR(s.max_abs_err, 1.0, 0);
    CHECK_NEAR(wp_qerr_sat_fraction(&s), 0.25, 0);            /* |4| > 3.5 */
    /* Split and merged equals whole. */
    wp_qerr_add(&a, ref, out, 3, 3.5f);
    wp_qerr_add(&b, ref + 3, out + 3, 1, 3.5f);
    wp_qerr_merge(&a, &b);
    CHECK(a.n == 4 && a.n_saturated == 1 && a.sum_sq_err == s.sum_sq_err && a.dot == s.dot &&
          a.max_abs_err == s.max_abs_err);
    /* Edges: empty, zero vectors, sat disabled, NaN never hidden. */
    wp_qerr z = {0};
    CHECK(wp_qerr_rmse(&z) == 0 && wp_qerr_sat_fraction(&z) == 0);
    const float zero[2] = { 0, 0 }, one[2] = { 1, 0 }, nan2[2] = { NAN, 0 };
    wp_qerr_add(&z, zero, zero, 2, 0.0f);
    CHECK(wp_qerr_cosine(&z) == 1.0 && wp_qerr_nmse(&z) == 0.0 && z.n_saturated == 0);
    wp_qerr_add(&z, zero, one, 2, 0.0f);
    CHECK(wp_qerr_cosine(&z) == 0.0 && isinf(wp_qerr_nmse(&z)));
    wp_qerr n = {0};
    wp_qerr_add(&n, one, nan2, 2, 0.0f);
    CHECK(isnan(n.max_abs_err) && isnan(wp_qerr_rmse(&n)));
    wp_qerr m = {0};
    wp_qerr_add(&m, ref, out, 4, 0.0f);
    wp_qerr_merge(&m, &n);
    CHECK(isnan(m.max_abs_err));
    /* FP8 1x128 on random data: NMSE of E4M3 with a tight pow2 scale is small
     * but not zero (each element within 2^-4 relative: NMSE <= 2^-8). */
    float x[1024], y[1024];
    for (int i = 0; i < 1024; i++) x[i] = y[i] = frand();
    wp_act_quant_sim(y, 1024, 128);
    wp_qerr f = {0};
    wp_qerr_add(&f, x, y, 1024, 0.0f);
    CHECK(wp_qerr_nmse(&f) > 1e-5 && wp_qerr_nmse(&f) <= 1.0 / 256);
    CHECK(wp_qerr_cosine(&f) > 0.998 && wp_qerr_cosine(&f) < 1.0);
}
