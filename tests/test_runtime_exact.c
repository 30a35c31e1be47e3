/* test_runtime_exact.c — a linear's bits depend on the site (dense or
 * activation-quantised, spec §4) and on the weight's values, never on how
 * they are stored (docs/runtime.md "Numerics"): an FP8 weight (E8M0 or F32
 * power-of-two scales), an MXFP4 weight at a dense site, and the same values
 * stored as BF16 (or F32 at a dense site) give identical bits, on every
 * kernel set this CPU has, one row (fused decode) or many (prefill), alone
 * or batched (rt_linear_many / rt_linear_dense_many).  The end-to-end form of
 * this is tests/test_verify_parity.c's verify_against_lossless_profiles. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "quant/quant.h"
#include "runtime/internal.h"
#include "tests/harness.h"

static uint64_t rng_state = 0x2545F4914F6CDD1Dull;
static uint32_t rng(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (uint32_t)(rng_state >> 11);
}
static float rnd(void)
{
    float s = 0;
    for (int i = 0; i < 4; i++) s += (float)(rng() & 0xFFFFFF) / 16777216.0f;
    return (s - 2.0f) * 1.7320508f;
}

typedef struct ew {
    wp_qweight w;
    void *data, *scale;
} ew;

static void ew_free(ew *q)
{
    free(q->data);
    free(q->scale);
}

/* the weight's values as BF16 (exact: at most 4 significant bits) or F32 */
static int plain_of(ew *out, const ew *q, wp_enc enc)
{
    const size_t n = (size_t)q->w.rows * q->w.cols;
    float *v = malloc(sizeof(float) * n);
    wp_qweight_dequant_rows(&q->w, 0, q->w.rows, v);
    memset(out, 0, sizeof *out);
    out->w = (wp_qweight){.enc = enc, .rows = q->w.rows, .cols = q->w.cols};
    out->data = malloc(n * (enc == WP_ENC_F32 ? 4 : 2));
    int inexact = 0;
    for (size_t i = 0; i < n; i++) {
        if (enc == WP_ENC_F32) {
            ((float *)out->data)[i] = v[i];
            continue;
        }
        uint32_t u;
        memcpy(&u, &v[i], 4);
        inexact += (u & 0xFFFF) != 0;
        ((uint16_t *)out->data)[i] = (uint16_t)(u >> 16);
    }
    out->w.data = out->data;
    free(v);
    return inexact;
}

static void make_fp8(ew *q, int rows, int cols, int spread)
{
    float *w = malloc(sizeof(float) * rows * cols);
    for (int i = 0; i < rows * cols; i++)
        w[i] = rnd() * 0.05f * (float)(1 << ((i / cols / 128 + i % cols / 128) % spread));
    memset(q, 0, sizeof *q);
    q->w = (wp_qweight){.enc = WP_ENC_FP8, .rows = (uint64_t)rows, .cols = (uint64_t)cols,
                        .sfmt = WP_SCALE_E8M0, .br = 128, .bc = 128};
    q->data = malloc(wp_enc_data_bytes(WP_ENC_FP8, rows, cols));
    q->scale = malloc(wp_enc_scale_bytes(WP_ENC_FP8, rows, cols, 128, 128, WP_SCALE_E8M0));
    wp_fp8_block_quant(w, rows, cols, 128, 128, WP_SCALE_E8M0, q->data, q->scale);
    q->w.data = q->data;
    q->w.scale = q->scale;
    free(w);
}

/* hopper's re-encode: the same codes, the same powers of two as F32 scales */
static void f32_scales_of(ew *out, const ew *q)
{
    const uint64_t rows = q->w.rows, cols = q->w.cols;
    const uint64_t nd = wp_enc_data_bytes(WP_ENC_FP8, rows, cols);
    const uint64_t ns = wp_enc_scale_bytes(WP_ENC_FP8, rows, cols, 128, 128, WP_SCALE_E8M0);
    *out = *q;
    out->data = malloc(nd);
    memcpy(out->data, q->data, nd);
    float *f = malloc(ns * 4);
    for (uint64_t i = 0; i < ns; i++) f[i] = wp_e8m0_to_f32(((const uint8_t *)q->scale)[i]);
    out->scale = f;
    out->w.sfmt = WP_SCALE_F32;
    out->w.data = out->data;
    out->w.scale = out->scale;
}

static void make_mxfp4(ew *q, int rows, int cols)
{
    float *w = malloc(sizeof(float) * rows * cols);
    for (int i = 0; i < rows * cols; i++) w[i] = rnd() * 0.05f * (float)(1 << (i / 32 % 4));
    memset(q, 0, sizeof *q);
    q->w = (wp_qweight){.enc = WP_ENC_MXFP4, .rows = (uint64_t)rows, .cols = (uint64_t)cols};
    q->data = malloc(wp_enc_data_bytes(WP_ENC_MXFP4, rows, cols));
    q->scale = malloc(wp_enc_scale_bytes(WP_ENC_MXFP4, rows, cols, 0, 0, WP_SCALE_E8M0));
    wp_mxfp4_quant(w, rows, cols, q->data, q->scale);
    q->w.data = q->data;
    q->w.scale = q->scale;
    free(w);
}

/* y of every weight in ws[0..n) for one product kind; 0 if all bit-identical */
enum { QUANT, DENSE, QUANT_MANY, DENSE_MANY };

static int product(const rt_ctx *c, int kind, const wp_qweight *w, const float *x, int M, float *y)
{
    rt_lin_spec sp[2] = {{.w = w, .x = x, .M = M, .y = y},
                         {.w = w, .x = x, .M = M, .y = y + (size_t)M * w->rows}};
    switch (kind) {
    case QUANT: return rt_linear(c, w, x, M, y);
    case DENSE: return rt_linear_dense(c, w, x, M, y);
    case QUANT_MANY: return rt_linear_many(c, sp, 2);   /* w1 and w3 style: shared input */
    default: return rt_linear_dense_many(c, sp, 2);
    }
}

static void same_bits(const char *what, const ew *const *ws, int n, int kind)
{
    static const char *kn[] = {"quantised", "dense", "quantised many", "dense many"};
    const rt_kernels *const *ks = rt_kernels_all();
    rt_pool *pool;
    wp_err e = {0};
    REQUIRE(rt_pool_new(&pool, 2, &e) == 0);
    const int N = (int)ws[0]->w.rows, K = (int)ws[0]->w.cols;
    const int Ms[] = {1, 2, 5};
    for (int ki = 0; ks[ki]; ki++) {
        rt_ctx c = {.pool = ki ? pool : NULL, .k = ks[ki], .flags = 0};
        for (int mi = 0; mi < 3; mi++) {
            const int M = Ms[mi];
            float *x = malloc(sizeof(float) * M * K);
            for (int i = 0; i < M * K; i++)
                x[i] = rnd() * (i % 61 == 0 ? 40.0f : 1.0f) * (i % 128 < 64 ? 1.0f : 1e-3f);
            float *y0 = calloc((size_t)2 * M * N, sizeof(float));
            float *y1 = calloc((size_t)2 * M * N, sizeof(float));
            REQUIRE(product(&c, kind, &ws[0]->w, x, M, y0) == 0);
            int nonzero = 0;
            for (int i = 0; i < M * N; i++) nonzero += y0[i] != 0;
            CHECK(nonzero > M * N / 2);
            for (int i = 1; i < n; i++) {
                REQUIRE(product(&c, kind, &ws[i]->w, x, M, y1) == 0);
                int diff = 0;
                for (int k = 0; k < 2 * M * N; k++) diff += memcmp(&y0[k], &y1[k], 4) != 0;
                CHECKF(diff == 0, "%s, %s, %s M=%d: %s vs %s: %d outputs differ", what,
                       ks[ki]->name, kn[kind], M, wp_enc_name(ws[0]->w.enc),
                       wp_enc_name(ws[i]->w.enc), diff);
            }
            free(x), free(y0), free(y1);
        }
    }
    rt_pool_free(pool);
}

/* FP8 128x128 (E8M0 scales, F32 scales) and its values in BF16: identical at
 * both kinds of site; F32 too at a dense site.  K = 384: three activation
 * blocks; K = 320: a short last block (segments of 64). */
TEST(runtime_exact_fp8_bf16_same_bits)
{
    const int shapes[][2] = {{130, 384}, {70, 320}, {33, 256}};
    for (int si = 0; si < 3; si++) {
        ew f8, f8f, bf, f32;
        make_fp8(&f8, shapes[si][0], shapes[si][1], 5);
        f32_scales_of(&f8f, &f8);
        CHECK_EQ_INT(plain_of(&bf, &f8, WP_ENC_BF16), 0);
        plain_of(&f32, &f8, WP_ENC_F32);
        char what[64];
        snprintf(what, sizeof what, "fp8 %dx%d", shapes[si][0], shapes[si][1]);
        const ew *q[] = {&f8, &f8f, &bf};
        same_bits(what, q, 3, QUANT);
        same_bits(what, q, 3, QUANT_MANY);
        const ew *d[] = {&f8, &f8f, &bf, &f32};
        same_bits(what, d, 4, DENSE);
        same_bits(what, d, 4, DENSE_MANY);
        ew_free(&f8), ew_free(&f8f), ew_free(&bf), ew_free(&f32);
    }
}

/* At a dense site every encoding is decoded to its values first: MXFP4 (1x32
 * scales) too. */
TEST(runtime_exact_mxfp4_dense_same_bits)
{
    ew fp4, bf, f32;
    make_mxfp4(&fp4, 66, 256);
    CHECK_EQ_INT(plain_of(&bf, &fp4, WP_ENC_BF16), 0);
    plain_of(&f32, &fp4, WP_ENC_F32);
    const ew *d[] = {&fp4, &bf, &f32};
    same_bits("mxfp4 66x256", d, 3, DENSE);
    same_bits("mxfp4 66x256", d, 3, DENSE_MANY);
    ew_free(&fp4), ew_free(&bf), ew_free(&f32);
}
