/* test_quant_check.c — the format-level content checks (quant/check.c): the
 * fast screens agree with the element-by-element scans on every dtype, at
 * every position (tails and odd lengths included), and the block scans find
 * exactly the scales that overflow their block. */
#include <math.h>

#include "quant/quant.h"
#include "tests/harness.h"

static uint64_t rng(uint64_t *s)   /* xorshift64*: fixed seed, same run every time */
{
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * 0x2545F4914F6CDD1Dull;
}

/* Every code of an 8-bit format, alone in a buffer at every position of a
 * 37-byte buffer (SWAR lanes, the tail): screen == scan == the decoder. */
TEST(quant_check_byte_formats_exhaustive)
{
    static const wp_dtype dts[] = {WP_F8_E4M3, WP_F8_E5M2, WP_F8_E8M0};
    for (size_t d = 0; d < 3; d++) {
        wp_dtype t = dts[d];
        int nan_codes = 0;
        for (int c = 0; c < 256; c++) {
            float v = t == WP_F8_E4M3 ? wp_e4m3_to_f32((uint8_t)c)
                      : t == WP_F8_E5M2 ? wp_e5m2_to_f32((uint8_t)c)
                                        : wp_e8m0_to_f32((uint8_t)c);
            int bad = !isfinite(v);
            nan_codes += bad;
            uint8_t clean = t == WP_F8_E8M0 ? 127 : 0x38;
            for (size_t pos = 0; pos < 37; pos += 1) {
                uint8_t buf[37];
                memset(buf, clean, sizeof buf);
                buf[pos] = (uint8_t)c;
                uint64_t first;
                CHECKF(!!wp_dtype_screen(t, buf, sizeof buf) == bad, "dtype %d code 0x%02x at %zu", (int)t, c, pos);
                CHECK_EQ_INT(wp_dtype_scan(t, buf, sizeof buf, &first), bad);
                if (bad) CHECK_EQ_INT(first, pos);
            }
        }
        /* E4M3: 0x7F/0xFF; E5M2: 0x7C..0x7F both signs; E8M0: 0xFF */
        CHECK_EQ_INT(nan_codes, t == WP_F8_E4M3 ? 2 : t == WP_F8_E5M2 ? 8 : 1);
    }
}

/* Every 16-bit pattern of BF16 and F16, at an odd position in an odd-length
 * buffer. */
TEST(quant_check_half_formats_exhaustive)
{
    static const wp_dtype dts[] = {WP_BF16, WP_F16};
    for (size_t d = 0; d < 2; d++) {
        uint64_t bad_total = 0;
        for (uint32_t h = 0; h < 65536; h++) {
            uint16_t buf[13] = {0};
            buf[(h % 13)] = (uint16_t)h;
            float v = dts[d] == WP_BF16 ? wp_bf16_to_f32((uint16_t)h) : wp_f16_to_f32((uint16_t)h);
            int bad = !isfinite(v);
            bad_total += bad;
            if (!!wp_dtype_screen(dts[d], buf, 13) != bad) {
                CHECKF(0, "dtype %d pattern 0x%04x", (int)dts[d], h);
                break;
            }
            uint64_t first;
            if (wp_dtype_scan(dts[d], buf, 13, &first) != (uint64_t)bad || (bad && first != h % 13)) {
                CHECKF(0, "scan dtype %d pattern 0x%04x", (int)dts[d], h);
                break;
            }
        }
        /* exponent all ones: 2 signs x 2^7 (bf16) or 2^10 (f16) mantissas */
        CHECK_EQ_INT(bad_total, dts[d] == WP_BF16 ? 256 : 2048);
    }
}

/* F32 / F64 with planted infinities and NaNs among random finite values;
 * random buffers: the screen is non-zero exactly when the scan counts. */
TEST(quant_check_f32_random)
{
    uint64_t s = 0x9E3779B97F4A7C15ull;
    float *f = malloc(4099 * sizeof *f);
    REQUIRE(f);
    for (int round = 0; round < 400; round++) {
        size_t n = 1 + rng(&s) % 4099;
        for (size_t i = 0; i < n; i++) {
            uint32_t u = (uint32_t)rng(&s);
            if ((u & 0x7F800000u) == 0x7F800000u) u &= 0xBFFFFFFFu;   /* keep it finite */
            memcpy(&f[i], &u, 4);
        }
        uint64_t want = 0, first_want = UINT64_MAX;
        int plant = (int)(rng(&s) % 4);
        for (int k = 0; k < plant; k++) {
            size_t i = rng(&s) % n;
            f[i] = k & 1 ? INFINITY : -NAN;
        }
        for (size_t i = 0; i < n; i++)
            if (!isfinite(f[i])) {
                if (!want) first_want = i;
                want++;
            }
        uint64_t first;
        CHECK_EQ_INT(wp_dtype_scan(WP_F32, f, n, &first), want);
        CHECK_EQ_INT(first, first_want);
        CHECK_EQ_INT(!!wp_dtype_screen(WP_F32, f, n), want > 0);
    }
    free(f);
    double dd[5] = {1, 2, 3, 4, 5};
    uint64_t first;
    CHECK(!wp_dtype_screen(WP_F64, dd, 5));
    dd[4] = NAN;
    CHECK(wp_dtype_screen(WP_F64, dd, 5));
    CHECK_EQ_INT(wp_dtype_scan(WP_F64, dd, 5, &first), 1);
    CHECK_EQ_INT(first, 4);
    /* integer dtypes have nothing to check */
    int64_t ii[2] = {-1, INT64_MAX};
    CHECK(!wp_dtype_has_nonfinite(WP_I64) && !wp_dtype_screen(WP_I64, ii, 2));
}

/* A block overflows only when its largest code times its scale does:
 * E8M0 254 (2^127) over 448 overflows, over codes <= 1.0 does not. */
TEST(quant_check_fp8_blocks)
{
    enum { R = 4, C = 6 };   /* 2x2 blocks of 2x3 */
    uint8_t q[R * C];
    memset(q, 0x30, sizeof q);   /* 0.5 */
    uint8_t s[4] = {127, 127, 127, 127};
    uint64_t first;
    CHECK(!wp_scale_screen(WP_F8_E8M0, s, 4));
    CHECK_EQ_INT(wp_fp8_scan_blocks(q, s, R, C, 2, 3, WP_SCALE_E8M0, &first), 0);
    s[3] = 254;   /* 0.5 x 2^127: finite */
    CHECK(wp_scale_screen(WP_F8_E8M0, s, 4));
    CHECK_EQ_INT(wp_fp8_scan_blocks(q, s, R, C, 2, 3, WP_SCALE_E8M0, &first), 0);
    q[3 * C + 5] = 0x7E;   /* 448 in block (1, 1): 448 x 2^127 overflows */
    CHECK_EQ_INT(wp_fp8_scan_blocks(q, s, R, C, 2, 3, WP_SCALE_E8M0, &first), 1);
    CHECK_EQ_INT(first, 3);
    s[1] = 250;
    q[0 * C + 4] = 0xFE;   /* -448 in block (0, 1) */
    CHECK_EQ_INT(wp_fp8_scan_blocks(q, s, R, C, 2, 3, WP_SCALE_E8M0, &first), 2);
    CHECK_EQ_INT(first, 1);
    s[1] = 0xFF;   /* a NaN scale is the dtype rule's, not a block overflow */
    CHECK_EQ_INT(wp_fp8_scan_blocks(q, s, R, C, 2, 3, WP_SCALE_E8M0, &first), 1);
    CHECK(!wp_scale_screen(WP_F8_E8M0, (uint8_t[]){0xFF, 246, 0, 1}, 4));
    /* F32 scales */
    float fs[4] = {1, 1, 1, 1e36f};
    CHECK(wp_scale_screen(WP_F32, fs, 4));
    CHECK_EQ_INT(wp_fp8_scan_blocks(q, fs, R, C, 2, 3, WP_SCALE_F32, &first), 1);   /* 448 x 1e36 */
    fs[3] = 7e35f;   /* above 2^119: screened as risky, yet 448 x 7e35 < FLT_MAX */
    CHECK(wp_scale_screen(WP_F32, fs, 4));
    CHECK_EQ_INT(wp_fp8_scan_blocks(q, fs, R, C, 2, 3, WP_SCALE_F32, &first), 0);
    fs[3] = -3e38f;
    CHECK_EQ_INT(wp_fp8_scan_blocks(q, fs, R, C, 2, 3, WP_SCALE_F32, &first), 1);
}

/* MXFP4: 1x32 groups; e2m1 codes up to 6.  2^127 x 1.5 is finite, 2^127 x 2
 * is not. */
TEST(quant_check_mxfp4_blocks)
{
    enum { R = 2, C = 64 };
    uint8_t q[R * C / 2], s[R * 2];
    memset(q, 0x33, sizeof q);   /* 1.5 in both nibbles */
    memset(s, 127, sizeof s);
    uint64_t first;
    CHECK_EQ_INT(wp_mxfp4_scan_blocks(q, s, R, C, &first), 0);
    s[2] = 254;
    CHECK_EQ_INT(wp_mxfp4_scan_blocks(q, s, R, C, &first), 0);
    q[1 * (C / 2) + 7] = 0x40;   /* high nibble 2.0 in row 1, group 0 */
    CHECK_EQ_INT(wp_mxfp4_scan_blocks(q, s, R, C, &first), 1);
    CHECK_EQ_INT(first, 2);
    q[1 * (C / 2) + 7] = 0x0C;   /* low nibble -2.0 */
    CHECK_EQ_INT(wp_mxfp4_scan_blocks(q, s, R, C, &first), 1);
}
