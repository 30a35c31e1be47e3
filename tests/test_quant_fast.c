/*
 * test_quant_fast.c — the vector kernel sets of the lossy weight quantisers
 * (quant/block_avx2.c, quant/block_avx512.c) against the scalar oracle
 * (block.c, wp_qk_scalar), byte for byte: codes and scales of FP8 blocks
 * (E8M0 and F32 scales, ragged blocks), MXFP4 and NVFP4, over random data
 * salted with every special case — NaN (either sign, any payload), ±Inf, ±0,
 * fp32 denormals, exact rounding ties of E4M3 and E2M1, all-zero,
 * all-NaN and max-magnitude blocks, values at and beyond each format's
 * clamp — and over a sweep of fp32 bit patterns.  Every set this CPU runs
 * is checked (wp_qkernels_all(): each set is called directly, so no
 * environment switch is needed to force a path); a CPU without AVX-512 or
 * AVX2 checks fewer sets, and says so in the test log.
 */
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "quant/quant_priv.h"
#include "tests/harness.h"

static uint64_t rs = 0x243F6A8885A308D3ull;
static uint64_t rnd(void)
{
    rs ^= rs >> 12; rs ^= rs << 25; rs ^= rs >> 27;
    return rs * 0x2545F4914F6CDD1Dull;
}
static float fbits(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }

/* A value with few significant bits at a random binade: lands exactly on
 * E4M3/E2M1 grid points and half-way between them once scaled by a power
 * of two. */
static float tie_ish(int e)
{
    float m = (float)(int)(rnd() % 64) / 16.0f;   /* 0 .. 3.9375, 1/16 steps */
    float v = ldexpf(m, e);
    return rnd() & 1 ? -v : v;
}

/* One block of n values in one of several modes. */
static void fill_block(float *x, size_t n)
{
    int mode = (int)(rnd() % 12);
    int e = (int)(rnd() % 60) - 30;
    for (size_t i = 0; i < n; i++) {
        float v;
        switch (mode) {
        case 0: v = 0.0f; break;                                           /* all zero */
        case 1: v = rnd() & 1 ? -0.0f : 0.0f; break;
        case 2: v = fbits((uint32_t)rnd()); break;                         /* any bits: NaN, inf, denormal */
        case 3: v = fbits((uint32_t)rnd() & 0x807FFFFFu); break;           /* fp32 denormals */
        case 4: v = rnd() & 1 ? FLT_MAX : -FLT_MAX; break;                 /* max magnitude */
        case 5: v = fbits(0x7FC00000u | (uint32_t)(rnd() & 0x803FFFFFu)); break;   /* all NaN */
        case 6: v = tie_ish(e); break;                                      /* ties */
        case 7: v = tie_ish((int)(rnd() % 300) - 150); break;               /* ties, any binade */
        default: {
            double u = (double)(rnd() >> 11) / 9007199254740992.0 * 2.0 - 1.0;
            v = (float)ldexp(u, e);
            break;
        }
        }
        /* salt: a few specials anywhere */
        uint64_t r = rnd() % 64;
        if (r == 0) v = NAN;
        else if (r == 1) v = -NAN;
        else if (r == 2) v = INFINITY;
        else if (r == 3) v = -INFINITY;
        else if (r == 4) v = 448.0f;
        else if (r == 5) v = -6.0f;
        else if (r == 6) v = fbits(1);   /* smallest denormal */
        x[i] = v;
    }
}

static float *make(size_t rows, size_t cols, size_t br, size_t bc)
{
    float *w = malloc(rows * cols * sizeof *w);
    if (!w) return NULL;
    /* fill block by block so a block shares its mode */
    float tmp[4096];
    for (size_t r0 = 0; r0 < rows; r0 += br)
        for (size_t c0 = 0; c0 < cols; c0 += bc) {
            size_t r1 = r0 + br < rows ? r0 + br : rows, c1 = c0 + bc < cols ? c0 + bc : cols;
            size_t n = (r1 - r0) * (c1 - c0);
            for (size_t o = 0; o < n; o += sizeof tmp / sizeof *tmp) {
                size_t m = n - o < sizeof tmp / sizeof *tmp ? n - o : sizeof tmp / sizeof *tmp;
                fill_block(tmp, m);
                for (size_t i = 0; i < m; i++) {
                    size_t k = o + i, r = r0 + k / (c1 - c0), c = c0 + k % (c1 - c0);
                    w[r * cols + c] = tmp[i];
                }
            }
        }
    return w;
}

static int first_diff(const uint8_t *a, const uint8_t *b, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (a[i] != b[i]) return (int)i;
    return -1;
}

static int n_sets(void)
{
    int n = 0;
    for (const wp_qkernels *const *k = wp_qkernels_all(); *k; k++) n++;
    return n;
}

TEST(quant_fast_sets_listed)
{
    const wp_qkernels *const *all = wp_qkernels_all();
    int n = n_sets();
    REQUIRE(n >= 1);
    CHECK(all[n - 1] == &wp_qk_scalar);   /* the oracle is always there, last */
    CHECK(wp_qkernels_active() == all[0] || getenv("WPACK_QUANT_ISA"));
    for (int i = 0; i < n; i++) printf("quant kernel set: %s\n", all[i]->name);
#if defined(__x86_64__)
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) CHECK(n >= 2);
    if (__builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl") &&
        __builtin_cpu_supports("avx512dq"))
        CHECK(all[0] == &wp_qk_avx512);
#endif
}

TEST(quant_fast_fp8_blocks_match_scalar)
{
    static const size_t shapes[][4] = {
        {256, 512, 128, 128}, {200, 300, 128, 128}, {37, 130, 32, 32}, {9, 50, 3, 7},
        {5, 16, 1, 16}, {3, 1000, 1, 1000}, {130, 17, 128, 1}, {1, 5, 1, 128},
    };
    for (size_t si = 0; si < sizeof shapes / sizeof *shapes; si++) {
        size_t rows = shapes[si][0], cols = shapes[si][1], br = shapes[si][2], bc = shapes[si][3];
        size_t nsc = ((rows + br - 1) / br) * ((cols + bc - 1) / bc);
        for (int rep = 0; rep < 4; rep++) {
            float *w = make(rows, cols, br, bc);
            uint8_t *q0 = malloc(rows * cols), *q1 = malloc(rows * cols), *s0 = malloc(4 * nsc), *s1 = malloc(4 * nsc);
            REQUIRE(w && q0 && q1 && s0 && s1);
            for (int f = 0; f < 2; f++) {
                wp_scale_fmt fmt = f ? WP_SCALE_F32 : WP_SCALE_E8M0;
                size_t sb = nsc * (f ? 4 : 1);
                wp_qk_scalar.fp8_block_quant(w, rows, cols, br, bc, fmt, q0, s0);
                for (const wp_qkernels *const *k = wp_qkernels_all(); *k; k++) {
                    memset(q1, 0xA5, rows * cols);
                    memset(s1, 0xA5, sb);
                    (*k)->fp8_block_quant(w, rows, cols, br, bc, fmt, q1, s1);
                    int dq = first_diff(q0, q1, rows * cols), ds = first_diff(s0, s1, sb);
                    CHECKF(dq < 0, "%s fp8 %zux%zu/%zux%zu %s: code %d differs: %02x vs %02x (x = %a)", (*k)->name,
                           rows, cols, br, bc, f ? "f32" : "e8m0", dq, dq < 0 ? 0 : q1[dq], dq < 0 ? 0 : q0[dq],
                           dq < 0 ? 0.0 : (double)w[dq]);
                    CHECKF(ds < 0, "%s fp8 %zux%zu/%zux%zu %s: scale byte %d differs", (*k)->name, rows, cols, br, bc,
                           f ? "f32" : "e8m0", ds);
                }
            }
            free(w), free(q0), free(q1), free(s0), free(s1);
        }
    }
}

TEST(quant_fast_mxfp4_matches_scalar)
{
    static const size_t shapes[][2] = {{64, 4096}, {7, 32}, {33, 96}, {1, 2048}};
    for (size_t si = 0; si < sizeof shapes / sizeof *shapes; si++) {
        size_t rows = shapes[si][0], cols = shapes[si][1], ng = rows * cols / 32;
        for (int rep = 0; rep < 4; rep++) {
            float *w = make(rows, cols, 1, 32);
            uint8_t *q0 = malloc(rows * cols / 2), *q1 = malloc(rows * cols / 2), *s0 = malloc(ng), *s1 = malloc(ng);
            REQUIRE(w && q0 && q1 && s0 && s1);
            wp_qk_scalar.mxfp4_quant(w, rows, cols, q0, s0);
            for (const wp_qkernels *const *k = wp_qkernels_all(); *k; k++) {
                memset(q1, 0xA5, rows * cols / 2);
                memset(s1, 0xA5, ng);
                (*k)->mxfp4_quant(w, rows, cols, q1, s1);
                int dq = first_diff(q0, q1, rows * cols / 2), ds = first_diff(s0, s1, ng);
                CHECKF(dq < 0, "%s mxfp4 %zux%zu: byte %d differs: %02x vs %02x", (*k)->name, rows, cols, dq,
                       dq < 0 ? 0 : q1[dq], dq < 0 ? 0 : q0[dq]);
                CHECKF(ds < 0, "%s mxfp4 %zux%zu: scale %d differs", (*k)->name, rows, cols, ds);
            }
            free(w), free(q0), free(q1), free(s0), free(s1);
        }
    }
}

static void nvfp4_case(const float *w, size_t rows, size_t cols, float global, const char *what)
{
    size_t ng = rows * cols / 16;
    uint8_t *q0 = malloc(rows * cols / 2), *q1 = malloc(rows * cols / 2), *s0 = malloc(ng), *s1 = malloc(ng);
    REQUIRE(q0 && q1 && s0 && s1);
    wp_qk_scalar.nvfp4_quant(w, rows, cols, global, q0, s0);
    for (const wp_qkernels *const *k = wp_qkernels_all(); *k; k++) {
        memset(q1, 0xA5, rows * cols / 2);
        memset(s1, 0xA5, ng);
        (*k)->nvfp4_quant(w, rows, cols, global, q1, s1);
        int dq = first_diff(q0, q1, rows * cols / 2), ds = first_diff(s0, s1, ng);
        CHECKF(dq < 0, "%s nvfp4 %zux%zu global %a (%s): byte %d differs: %02x vs %02x", (*k)->name, rows, cols,
               (double)global, what, dq, dq < 0 ? 0 : q1[dq], dq < 0 ? 0 : q0[dq]);
        CHECKF(ds < 0, "%s nvfp4 %zux%zu global %a (%s): scale %d differs: %02x vs %02x", (*k)->name, rows, cols,
               (double)global, what, ds, ds < 0 ? 0 : s1[ds], ds < 0 ? 0 : s0[ds]);
    }
    free(q0), free(q1), free(s0), free(s1);
}

TEST(quant_fast_nvfp4_matches_scalar)
{
    /* 16-group batches and a tail: 4096x... has whole batches, 7x48 = 21 groups */
    static const size_t shapes[][2] = {{64, 4096}, {7, 48}, {3, 16}, {17, 272}};
    for (size_t si = 0; si < sizeof shapes / sizeof *shapes; si++) {
        size_t rows = shapes[si][0], cols = shapes[si][1];
        for (int rep = 0; rep < 4; rep++) {
            float *w = make(rows, cols, 1, 16);
            REQUIRE(w);
            /* the codec's own global (over the non-NaN values), then hostile ones */
            nvfp4_case(w, rows, cols, wp_qk_scalar.amax(w, rows * cols) / 2688.0f, "amax/2688");
            nvfp4_case(w, rows, cols, 1.0f, "1");
            const float odd[] = {0x1p-140f, 0x1p100f, -1.0f, 0.0f, INFINITY, NAN, 3.0e-3f};
            for (size_t i = 0; i < sizeof odd / sizeof *odd; i++) nvfp4_case(w, rows, cols, odd[i], "odd");
            free(w);
        }
    }
    /* ordinary tensor data with the real global scale: every group is in range */
    size_t rows = 128, cols = 1024;
    float *w = malloc(rows * cols * sizeof *w);
    REQUIRE(w);
    for (size_t i = 0; i < rows * cols; i++) w[i] = ldexpf((float)(int64_t)(rnd() % 2000001) - 1e6f, -20 - (int)(i / 16 % 8));
    nvfp4_case(w, rows, cols, wp_nvfp4_global_scale(w, rows * cols), "tensor");
    free(w);
}

/* Every 4099th fp32 bit pattern (both signs, NaN payloads, denormals, every
 * binade) through each quantiser at fixed, hand-set scales, so the encoders
 * see the whole input range rather than what one block's amax leaves. */
TEST(quant_fast_bit_pattern_sweep)
{
    const size_t n = 1u << 20;   /* 4099 * 2^20 > 2^32 */
    float *w = malloc(n * sizeof *w);
    REQUIRE(w);
    for (size_t i = 0; i < n; i++) w[i] = fbits((uint32_t)(i * 4099u + 12345u));
    /* rows of 4096 */
    size_t rows = n / 4096, cols = 4096;
    nvfp4_case(w, rows, cols, 1.0f, "sweep");
    nvfp4_case(w, rows, cols, 0x1p-20f, "sweep");
    uint8_t *q0 = malloc(n), *q1 = malloc(n), *s0 = malloc(n), *s1 = malloc(n);
    REQUIRE(q0 && q1 && s0 && s1);
    wp_qk_scalar.mxfp4_quant(w, rows, cols, q0, s0);
    for (const wp_qkernels *const *k = wp_qkernels_all(); *k; k++) {
        (*k)->mxfp4_quant(w, rows, cols, q1, s1);
        CHECKF(!memcmp(q0, q1, n / 2) && !memcmp(s0, s1, n / 32), "%s mxfp4 sweep differs", (*k)->name);
    }
    for (int f = 0; f < 2; f++) {
        wp_scale_fmt fmt = f ? WP_SCALE_F32 : WP_SCALE_E8M0;
        wp_qk_scalar.fp8_block_quant(w, rows, cols, 1, 16, fmt, q0, s0);
        for (const wp_qkernels *const *k = wp_qkernels_all(); *k; k++) {
            (*k)->fp8_block_quant(w, rows, cols, 1, 16, fmt, q1, s1);
            int d = first_diff(q0, q1, n);
            CHECKF(d < 0 && !memcmp(s0, s1, n / 16 * (f ? 4 : 1)), "%s fp8 sweep %s: code %d differs (x = %a)",
                   (*k)->name, f ? "f32" : "e8m0", d, d < 0 ? 0.0 : (double)w[d]);
        }
    }
    /* and the amax the NVFP4 global scale is made from */
    for (const wp_qkernels *const *k = wp_qkernels_all(); *k; k++)
        for (size_t len = 0; len < 100; len += 7) {
            float a = (*k)->amax(w + 3 * len, len), b = wp_qk_scalar.amax(w + 3 * len, len);
            CHECKF(!memcmp(&a, &b, 4), "%s amax over %zu: %a vs %a", (*k)->name, len, (double)a, (double)b);
        }
    free(w), free(q0), free(q1), free(s0), free(s1);
}

/* The public entry points run the active set: same bytes as the oracle. */
TEST(quant_fast_public_entry_points)
{
    size_t rows = 32, cols = 256;
    float *w = make(rows, cols, 1, 32);
    uint8_t q0[32 * 256], q1[32 * 256], s0[32 * 16], s1[32 * 16];
    REQUIRE(w);
    wp_qk_scalar.nvfp4_quant(w, rows, cols, 0.5f, q0, s0);
    wp_nvfp4_quant(w, rows, cols, 0.5f, q1, s1);
    CHECK(!memcmp(q0, q1, rows * cols / 2) && !memcmp(s0, s1, rows * cols / 16));
    wp_qk_scalar.mxfp4_quant(w, rows, cols, q0, s0);
    wp_mxfp4_quant(w, rows, cols, q1, s1);
    CHECK(!memcmp(q0, q1, rows * cols / 2) && !memcmp(s0, s1, rows * cols / 32));
    wp_qk_scalar.fp8_block_quant(w, rows, cols, 16, 16, WP_SCALE_E8M0, q0, s0);
    wp_fp8_block_quant(w, rows, cols, 16, 16, WP_SCALE_E8M0, q1, s1);
    CHECK(!memcmp(q0, q1, rows * cols) && !memcmp(s0, s1, 2 * 16));
    free(w);
}

/* The row dequantisers weight.c runs (wp_qweight_dequant_rows): every code
 * byte and scale byte, NaN scales included, against the scalar ones, bit for
 * bit (NaN payloads too). */
TEST(quant_fast_dequant_rows_match_scalar)
{
    enum { COLS = 4096 };
    uint8_t q[COLS], sc[COLS / 16];
    float o0[COLS], o1[COLS];
    const float globals[] = {1.0f, 0x1.8p-12f, -3.0f, INFINITY, NAN, 0x1p-149f};
    for (int rep = 0; rep < 64; rep++) {
        for (int i = 0; i < COLS; i++) q[i] = (uint8_t)(rep < 1 ? i : (int)rnd());
        for (int i = 0; i < COLS / 16; i++) sc[i] = (uint8_t)(rep < 1 ? i : (int)rnd());
        for (const wp_qkernels *const *k = wp_qkernels_all(); *k; k++) {
            for (size_t n = 0; n <= 40; n += 13) {   /* ragged FP8 segments */
                float s = rep % 3 ? ldexpf(1.0f, rep - 30) : 0.37f;
                wp_qk_scalar.fp8_dequant_seg(q + rep, COLS - n - 64, s, o0);
                (*k)->fp8_dequant_seg(q + rep, COLS - n - 64, s, o1);
                CHECKF(!memcmp(o0, o1, (COLS - n - 64) * 4), "%s fp8 dequant differs", (*k)->name);
            }
            wp_qk_scalar.mxfp4_dequant_row(q, sc, COLS, o0);
            (*k)->mxfp4_dequant_row(q, sc, COLS, o1);
            CHECKF(!memcmp(o0, o1, sizeof o0), "%s mxfp4 dequant differs", (*k)->name);
            float g = globals[rep % (int)(sizeof globals / sizeof *globals)];
            wp_qk_scalar.nvfp4_dequant_row(q, sc, COLS, g, o0);
            (*k)->nvfp4_dequant_row(q, sc, COLS, g, o1);
            CHECKF(!memcmp(o0, o1, sizeof o0), "%s nvfp4 dequant differs (global %a)", (*k)->name, (double)g);
        }
    }
}

/* End to end: tiny-a converted with each kernel set this CPU runs
 * (WPACK_QUANT_ISA), on 1 and 2 threads, gives the same .wpk byte for byte:
 * blackwell-nvfp4 (NVFP4 experts from MXFP4) and a recipe that re-quantises
 * BF16/FP8 sources to FP8 (E8M0 and F32 scales, ragged blocks), MXFP4 and
 * NVFP4.  The default set's bytes are pinned by house_builds_byte_identical. */
TEST(quant_fast_convert_same_bytes_every_set)
{
    static const char *const recipes[] = {
        "--profile blackwell-nvfp4",
        "--profile bf16 --tensor-type attn=fp8-32x32-f32 --tensor-type shared_experts=mxfp4 "
        "--tensor-type ffn.experts=fp8-16x64-e8m0 --tensor-type wq_a=nvfp4 --allow-sensitive",
    };
    char out[8192];
    for (size_t ri = 0; ri < sizeof recipes / sizeof *recipes; ri++) {
        uint8_t *ref = NULL;
        size_t ref_len = 0;
        for (const wp_qkernels *const *k = wp_qkernels_all(); *k; k++)
            for (int t = 1; t <= 2; t++) {
                const char *dir = wpt_path("%s/b%zu-%s-%d", wpt_tmpdir(), ri, (*k)->name, t);
                int rc = wpt_run(out, sizeof out, "WPACK_QUANT_ISA=%s %s convert %s/hf -o %s %s --threads %d -q",
                                 (*k)->name, wpt_wpack(), WPT_TINY, dir, recipes[ri], t);
                CHECKF(rc == 0, "%s, %s, %d thread(s): exit %d: %s", recipes[ri], (*k)->name, t, rc, out);
                uint8_t *b;
                size_t n;
                REQUIRE(wpt_read_file(wpt_path("%s/model.wpk", dir), &b, &n) == 0);
                if (!ref) {
                    ref = b, ref_len = n;
                    continue;
                }
                CHECKF(n == ref_len && !memcmp(b, ref, n), "%s: the %s set on %d thread(s) wrote other bytes than %s",
                       recipes[ri], (*k)->name, t, wp_qkernels_all()[0]->name);
                free(b);
            }
        free(ref);
    }
    /* the second recipe does re-quantise (not a pass-through that proves nothing) */
    int rc = wpt_run(out, sizeof out, "%s plan %s/hf %s", wpt_wpack(), WPT_TINY, recipes[1]);
    CHECK_EQ_INT(rc, 0);
    CHECK(!strstr(out, " 0 re-quantised"));
    CHECK_CONTAINS(out, "re-quantised");
}

/* NVFP4's global scale from an MXFP4 source straight from its codes and
 * E8M0 scales (wp_mxfp4_amax, what convert runs) against the oracle it
 * replaces: wp_amax over the dequantised values, and the global scale made
 * from each, bit for bit.  Every E8M0 scale (0: the fp32 subnormal 2^-127;
 * 254: 2^127, where 2 x 2^127 and up overflow to inf; 0xFF: NaN, its group
 * left out) with every code (0x8 is -0), one group at a time; then blocks of
 * random codes and scales salted with NaN scales, all-zero and -0 groups,
 * all-NaN blocks, and a NaN group holding the largest code. */
static void codes_amax_case(const uint8_t *q, const uint8_t *sc, size_t rows, size_t cols, const char *what)
{
    float *d = malloc(rows * cols * sizeof *d);
    REQUIRE(d);
    wp_mxfp4_dequant(q, sc, rows, cols, d);
    float want = wp_amax(d, rows * cols), got = wp_mxfp4_amax(q, sc, rows, cols);
    float gw = wp_nvfp4_global_scale(d, rows * cols), gg = wp_nvfp4_global_scale(&got, 1);
    CHECKF(!memcmp(&want, &got, 4), "%s: codes amax %a, dequantised amax %a", what, (double)got, (double)want);
    for (const wp_qkernels *const *k = wp_qkernels_all(); *k; k++) {   /* every set, called directly */
        float m = (*k)->mxfp4_amax(q, sc, rows * cols / 32);
        CHECKF(!memcmp(&want, &m, 4), "%s: the %s set's codes amax %a, dequantised amax %a", what, (*k)->name,
               (double)m, (double)want);
    }
    CHECKF(!memcmp(&gw, &gg, 4), "%s: global %a from codes, %a from values", what, (double)gg, (double)gw);
    /* the scalar oracle agrees with the active set's amax */
    float ws = wp_qk_scalar.amax(d, rows * cols);
    CHECKF(!memcmp(&want, &ws, 4), "%s: scalar amax %a, active %a", what, (double)ws, (double)want);
    free(d);
}

TEST(quant_fast_mxfp4_codes_amax_matches_dequantised)
{
    uint8_t q[16 * 64], sc[64];
    char what[96];
    /* 16 groups (one vector of the AVX-512 set): every scale with every code
     * (all groups at one scale, or the scale beside NaN-scaled groups holding
     * larger codes), and runs of 16 consecutive scales */
    for (int s = 0; s < 256; s++)
        for (int c = 0; c < 16; c++) {
            for (int g = 0; g < 16; g++) {
                sc[g] = (uint8_t)(g % 5 == 4 && c % 2 ? 0xFF : s);
                memset(q + 16 * g, sc[g] == 0xFF ? 0x77 : ((g + c) % 16 | ((g * 3 + c) % 16) << 4), 16);
            }
            snprintf(what, sizeof what, "16 groups, scale %d, codes %d..", s, c);
            codes_amax_case(q, sc, 1, 512, what);
            for (int g = 0; g < 16; g++) sc[g] = (uint8_t)((s + g) % 256);
            snprintf(what, sizeof what, "16 groups, scales %d.., codes %d..", s, c);
            codes_amax_case(q, sc, 1, 512, what);
        }
    for (int s = 0; s < 256; s++)
        for (int c = 0; c < 16; c++) {
            sc[0] = (uint8_t)s;
            memset(q, c | c << 4, 16);   /* every element code c */
            snprintf(what, sizeof what, "scale %d, all code %d", s, c);
            codes_amax_case(q, sc, 1, 32, what);
            for (int j = 0; j < 16; j++) q[j] = (uint8_t)(j == 5 ? c << 4 : 8 | 8 << 4);   /* one c among -0 */
            snprintf(what, sizeof what, "scale %d, code %d among -0", s, c);
            codes_amax_case(q, sc, 1, 32, what);
        }
    for (int rep = 0; rep < 400; rep++) {
        size_t rows = 1 + rnd() % 4, cols = 32 * (1 + rnd() % 16);   /* up to 64 groups: vector body and tail */
        int mode = (int)(rnd() % 6);
        for (size_t i = 0; i < rows * cols / 2; i++) q[i] = (uint8_t)rnd();
        for (size_t g = 0; g < rows * cols / 32; g++) {
            uint8_t s = (uint8_t)rnd();
            if (mode == 1) s = (uint8_t)(rnd() % 3 ? 0xFF : s);            /* mostly NaN scales */
            if (mode == 2) s = (uint8_t)(250 + rnd() % 6);                 /* near overflow, and NaN */
            if (mode == 3) s = (uint8_t)(rnd() % 4);                       /* subnormal products */
            if (mode == 4) s = 0xFF;                                       /* all NaN: amax 0 */
            sc[g] = s;
            if (rnd() % 5 == 0) memset(q + g * 16, rnd() & 1 ? 0x88 : 0, 16);   /* a -0 or +0 group */
        }
        if (mode == 5) {   /* the largest code sits in a NaN group */
            sc[0] = 0xFF;
            q[0] = 0x77;
        }
        snprintf(what, sizeof what, "random block %d (mode %d, %zux%zu)", rep, mode, rows, cols);
        codes_amax_case(q, sc, rows, cols, what);
    }
}
