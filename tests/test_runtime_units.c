/* test_runtime_units.c — the runtime's pieces against hand-computed cases
 * and independent references: Sinkhorn, hc_post's transposed mixing,
 * Hadamard, the YaRN table (spec §4.4 values), RoPE, top-k ties, routing,
 * the sink softmax, the compressor state machine, and every kernel set
 * against a double-precision reference built from quant/'s own codecs. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "quant/quant.h"
#include "runtime/internal.h"
#include "tests/harness.h"
#include "verify/parity.h"

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;
static uint32_t rng(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (uint32_t)(rng_state >> 11);
}
/* roughly normal(0, 1): sum of 4 uniforms, rescaled */
static float rnd(void)
{
    float s = 0;
    for (int i = 0; i < 4; i++) s += (float)(rng() & 0xFFFFFF) / 16777216.0f;
    return (s - 2.0f) * 1.7320508f;
}

static const rt_ctx *ctx_scalar(void)
{
    static rt_ctx c;
    c.k = rt_kernels_scalar();
    c.pool = NULL;
    c.flags = 0;
    return &c;
}

/* ---- Hyper-connections ------------------------------------------------------------ */

/* hc = 2, eps = 0: row softmax of [[0, 0], [ln 3, 0]] is [[.5, .5], [.75, .25]];
 * column sums 1.25 / .75 give [[.4, 2/3], [.6, 1/3]] (iters = 1).  One more
 * (row, column) round: rows -> [[.375, .625], [9/14, 5/14]], columns ->
 * [[.368421, .636364], [.631579, .363636]]. */
TEST(runtime_sinkhorn_hand)
{
    float mixes[8] = {1, 0, 0, 0, 0, 0, (float)log(3.0), 0};
    float scale[3] = {2, 1, 1}, base[8] = {-2, 0, 0, 0, 0, 0, 0, 0};
    float pre[2], post[2], comb[4];
    rt_sinkhorn(mixes, scale, base, 2, 1, 0.0f, pre, post, comb);
    CHECK_NEAR(pre[0], 0.5, 1e-7);                  /* sigmoid(1*2 - 2) */
    CHECK_NEAR(pre[1], 0.5, 1e-7);
    CHECK_NEAR(post[0], 1.0, 1e-7);                 /* 2 * sigmoid(0) */
    CHECK_NEAR(comb[0], 0.4, 1e-6);
    CHECK_NEAR(comb[1], 2.0 / 3, 1e-6);
    CHECK_NEAR(comb[2], 0.6, 1e-6);
    CHECK_NEAR(comb[3], 1.0 / 3, 1e-6);
    rt_sinkhorn(mixes, scale, base, 2, 2, 0.0f, pre, post, comb);
    CHECK_NEAR(comb[0], 0.375 / 1.017857142857, 1e-6);
    CHECK_NEAR(comb[1], 0.625 / 0.982142857143, 1e-6);
    CHECK_NEAR(comb[2], (9.0 / 14) / 1.017857142857, 1e-6);
    CHECK_NEAR(comb[3], (5.0 / 14) / 0.982142857143, 1e-6);
    /* eps enters pre and every normalisation: hc = 4, 20 iterations leave
     * columns summing to exactly S / (S + eps) and rows close to 1 */
    float m4[24], s4[3] = {0.7f, 1.3f, 0.9f}, b4[24], p4[4], q4[4], c4[16];
    for (int i = 0; i < 24; i++) {
        m4[i] = rnd();
        b4[i] = rnd() * 0.5f;
    }
    rt_sinkhorn(m4, s4, b4, 4, 20, 1e-6f, p4, q4, c4);
    for (int k = 0; k < 4; k++) {
        double col = 0, row = 0;
        for (int j = 0; j < 4; j++) col += c4[j * 4 + k], row += c4[k * 4 + j];
        CHECK_NEAR(col, 1.0, 1e-5);
        CHECK_NEAR(row, 1.0, 1e-3);
        CHECK(p4[k] > 1e-6f && p4[k] < 1.0f + 1e-6f);
        CHECK(q4[k] > 0 && q4[k] < 2);
    }
}

/* out[k] = post[k] x + sum_j comb[j][k] res[j]: a non-symmetric comb tells
 * the transpose apart. */
TEST(runtime_hc_post_transposed)
{
    float h[2 * 1] = {10, 1};           /* hc = 2 streams, d = 1 */
    float x[1] = {2}, post[2] = {0.5f, 3};
    float comb[4] = {0.1f, 0.2f,        /* row j = 0 (input stream 0) */
                     0.7f, 0.9f};       /* row j = 1 */
    rt_hc_post(ctx_scalar(), h, x, 1, 2, 1, post, comb);
    CHECK_NEAR(h[0], 0.5 * 2 + 0.1 * 10 + 0.7 * 1, 1e-6);
    CHECK_NEAR(h[1], 3.0 * 2 + 0.2 * 10 + 0.9 * 1, 1e-6);
}

/* ---- Hadamard, RoPE, YaRN ------------------------------------------------------------ */

TEST(runtime_hadamard_known)
{
    float e2[4] = {0, 0, 1, 0}, e3[4] = {0, 0, 0, 1}, one[8] = {1, 1, 1, 1, 1, 1, 1, 1};
    rt_hadamard(e2, 4, 1.0f);     /* column 2 of natural-order H4 */
    CHECK(e2[0] == 1 && e2[1] == 1 && e2[2] == -1 && e2[3] == -1);
    rt_hadamard(e3, 4, 1.0f);
    CHECK(e3[0] == 1 && e3[1] == -1 && e3[2] == -1 && e3[3] == 1);
    rt_hadamard(one, 8, 1.0f / sqrtf(8));
    CHECK_NEAR(one[0], sqrt(8.0), 1e-6);
    for (int i = 1; i < 8; i++) CHECK(one[i] == 0);
    /* H H = n I: applied twice with scale 1 gives n x */
    float x[128], y[128];
    for (int i = 0; i < 128; i++) x[i] = y[i] = rnd();
    rt_hadamard(y, 128, 1.0f);
    for (int i = 0; i < 128; i++) CHECK_NEAR(y[i], 0, 40);   /* sanity: finite */
    rt_hadamard(y, 128, 1.0f);
    for (int i = 0; i < 128; i++) CHECK_NEAR(y[i], 128 * x[i], 1e-3);
    /* every entry of H128 is (-1)^popcount(a & b) */
    for (int b = 0; b < 128; b += 37) {
        float v[128] = {0};
        v[b] = 1;
        rt_hadamard(v, 128, 1.0f);
        for (int a = 0; a < 128; a++)
            CHECK(v[a] == (__builtin_popcount((unsigned)(a & b)) & 1 ? -1.0f : 1.0f));
    }
}

/* spec §4.4: base 160000, factor 16, original 65536 -> low 15, high 25 and
 * the listed frequencies. */
TEST(runtime_yarn_table)
{
    int lo, hi;
    rt_yarn_range(64, 160000, 65536, 32, 1, &lo, &hi);
    CHECK_EQ_INT(lo, 15);
    CHECK_EQ_INT(hi, 25);
    rt_rope r;
    rt_rope_init(&r, 64, 160000, 1, 16, 65536, 32, 1);
    CHECK_NEAR(r.freq[0], 1.0, 0);
    CHECK_NEAR(r.freq[1], 0.687656, 1e-6);
    CHECK_NEAR(r.freq[2], 0.472871, 1e-6);
    CHECK_NEAR(r.freq[15], 0.0036355, 1e-7);
    CHECK_NEAR(r.freq[16] / 0.0022656, 1, 1e-4);
    CHECK_NEAR(r.freq[24] / 1.95313e-5, 1, 1e-5);
    CHECK_NEAR(r.freq[25] / 5.37231e-6, 1, 1e-5);
    CHECK_NEAR(r.freq[31] / 5.68053e-7, 1, 1e-5);
    /* tiny-a's compressed layers: factor 4, original 64 -> low 0, high 7 */
    rt_yarn_range(64, 160000, 64, 32, 1, &lo, &hi);
    CHECK_EQ_INT(lo, 0);
    CHECK_EQ_INT(hi, 7);
    /* without YaRN: plain 1/base^(2i/64) */
    rt_rope_init(&r, 64, 10000, 0, 16, 65536, 32, 1);
    CHECK_NEAR(r.freq[1], pow(10000, -2.0 / 64), 1e-7);
    CHECK_NEAR(r.freq[31] / pow(10000, -62.0 / 64), 1, 1e-5);
}

TEST(runtime_rope_rotation)
{
    rt_rope r;
    rt_rope_init(&r, 4, 10000, 0, 1, 0, 0, 0);   /* f = 1, 0.01 */
    float cs[4], x[4] = {1, 0, 0, 2};
    rt_rope_cs(&r, 3, cs);
    rt_rope_apply(x, cs, 4, 0);
    /* interleaved pairs (x0, x1), (x2, x3) rotated by 3 and 0.03 radians */
    CHECK_NEAR(x[0], cos(3.0), 1e-6);
    CHECK_NEAR(x[1], sin(3.0), 1e-6);
    CHECK_NEAR(x[2], -2 * sin(0.03), 1e-6);
    CHECK_NEAR(x[3], 2 * cos(0.03), 1e-6);
    rt_rope_apply(x, cs, 4, 1);                    /* the inverse undoes it */
    CHECK_NEAR(x[0], 1, 1e-6);
    CHECK_NEAR(x[1], 0, 1e-6);
    CHECK_NEAR(x[2], 0, 1e-6);
    CHECK_NEAR(x[3], 2, 1e-6);
}

/* ---- Top-k and routing ---------------------------------------------------------------- */

TEST(runtime_topk_ties)
{
    float s[7] = {1, 3, 3, 2, 3, -INFINITY, -INFINITY};
    int32_t idx[7];
    rt_topk(s, 7, 2, idx);
    CHECK(idx[0] == 1 && idx[1] == 2);            /* equal scores: lower index first */
    rt_topk(s, 7, 5, idx);
    CHECK(idx[0] == 1 && idx[1] == 2 && idx[2] == 4 && idx[3] == 3 && idx[4] == 0);
    rt_topk(s, 7, 7, idx);
    CHECK(idx[5] == 5 && idx[6] == 6);            /* -inf ties too */
    /* against a brute-force selection on random data with many ties */
    float r[300];
    for (int i = 0; i < 300; i++) r[i] = (float)(rng() % 17);
    int32_t t[40];
    rt_topk(r, 300, 40, t);
    for (int i = 1; i < 40; i++)
        CHECK(r[t[i - 1]] > r[t[i]] || (r[t[i - 1]] == r[t[i]] && t[i - 1] < t[i]));
    int worse = 0;   /* nothing outside the set is better than its last member */
    for (int i = 0; i < 300; i++) {
        int in = 0;
        for (int j = 0; j < 40; j++) in |= t[j] == i;
        if (!in && (r[i] > r[t[39]] || (r[i] == r[t[39]] && i < t[39]))) worse++;
    }
    CHECK_EQ_INT(worse, 0);
}

TEST(runtime_route_hash_and_bias)
{
    wp_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.n_routed_experts = 4;
    cfg.n_activated_experts = 2;
    cfg.route_scale = 2.5;
    int32_t table[3 * 2] = {0, 1, 3, 0, 2, 2};
    rt_layer L;
    memset(&L, 0, sizeof L);
    L.tid2eid = table;
    float logits[4] = {0, 1, 2, 25};    /* 25 > 20: softplus returns it unchanged */
    int32_t ids[2];
    float w[2];
    rt_route(&cfg, &L, logits, 1, ids, w);
    CHECK(ids[0] == 3 && ids[1] == 0);  /* token 1's row of tid2eid, no bias */
    double s3 = 5.0, s0 = sqrt(log(2.0));
    CHECK_NEAR(w[0], s3 / (s3 + s0) * 2.5, 1e-6);
    CHECK_NEAR(w[1], s0 / (s3 + s0) * 2.5, 1e-6);
    /* biased layer: the bias picks experts 0 and 1, the weights ignore it */
    float bias[4] = {10, 9, 0, -10};
    L.tid2eid = NULL;
    L.gate_bias = bias;
    rt_route(&cfg, &L, logits, 1, ids, w);
    CHECK(ids[0] == 0 && ids[1] == 1);
    double a = sqrt(log(2.0)), b = sqrt(log1p(exp(1.0)));
    CHECK_NEAR(w[0], a / (a + b) * 2.5, 1e-6);
    CHECK_NEAR(w[1], b / (a + b) * 2.5, 1e-6);
}

/* ---- Attention softmax with sink ------------------------------------------------------ */

TEST(runtime_sparse_attn_sink)
{
    float k1[2] = {1, 0}, k2[2] = {0, 1}, q[2] = {2, 0}, o[2];
    const float *rows[3] = {k1, NULL, k2};
    rt_sparse_attn(ctx_scalar(), q, rows, 3, 2, 1.0f, 1.0f, o);
    /* logits 2, (skipped), 0; max 2; the sink adds exp(1 - 2) to the denominator only */
    double den = 1 + exp(-2.0) + exp(-1.0);
    CHECK_NEAR(o[0], 1 / den, 1e-6);
    CHECK_NEAR(o[1], exp(-2.0) / den, 1e-6);
    /* a sink above every logit is still not the running max */
    rt_sparse_attn(ctx_scalar(), q, rows, 3, 2, 1.0f, 5.0f, o);
    den = 1 + exp(-2.0) + exp(3.0);
    CHECK_NEAR(o[0], 1 / den, 1e-6);
    const float *none[2] = {NULL, NULL};
    o[0] = o[1] = 7;
    rt_sparse_attn(ctx_scalar(), q, none, 2, 2, 1.0f, 0.0f, o);
    CHECK(o[0] == 0 && o[1] == 0);
    /* 150 rows (3 blocks of 64): the online softmax equals a two-pass one */
    enum { N = 150, D = 16 };
    static float kv[N][D];
    const float *rp[N];
    float qq[D], out[D];
    for (int i = 0; i < D; i++) qq[i] = rnd();
    for (int j = 0; j < N; j++) {
        for (int i = 0; i < D; i++) kv[j][i] = rnd();
        rp[j] = j % 7 == 3 ? NULL : kv[j];
    }
    rt_sparse_attn(ctx_scalar(), qq, rp, N, D, 0.25f, 0.3f, out);
    double l[N], mx = -INFINITY, sum = 0, ref[D] = {0};
    for (int j = 0; j < N; j++) {
        if (!rp[j]) continue;
        l[j] = 0;
        for (int i = 0; i < D; i++) l[j] += (double)qq[i] * kv[j][i];
        l[j] *= 0.25;
        mx = l[j] > mx ? l[j] : mx;
    }
    for (int j = 0; j < N; j++)
        if (rp[j]) {
            sum += exp(l[j] - mx);
            for (int i = 0; i < D; i++) ref[i] += exp(l[j] - mx) * kv[j][i];
        }
    sum += exp(0.3 - mx);
    for (int i = 0; i < D; i++) CHECK_NEAR(out[i], ref[i] / sum, 1e-5);
}

/* ---- Kernels ------------------------------------------------------------------------------- */

TEST(runtime_decoders_exhaustive)
{
    const rt_kernels *const *ks = rt_kernels_all();
    static uint8_t codes[259];
    static uint16_t h[65536 + 3];
    static float out[131072 + 16];
    for (int i = 0; i < 259; i++) codes[i] = (uint8_t)i;
    for (int i = 0; i < 65539; i++) h[i] = (uint16_t)i;
    for (int k = 0; ks[k]; k++) {
        int bad = 0;
        ks[k]->dec_e4m3(codes, out, 259);
        for (int i = 0; i < 259; i++) {
            float ref = wp_e4m3_to_f32(codes[i]);
            bad += isnan(ref) ? !isnan(out[i]) : memcmp(&ref, &out[i], 4) != 0;
        }
        ks[k]->dec_e2m1(codes, out, 2 * 258);
        for (int i = 0; i < 2 * 258; i++) {
            float ref = wp_e2m1_to_f32(i & 1 ? codes[i / 2] >> 4 : codes[i / 2] & 15);
            bad += memcmp(&ref, &out[i], 4) != 0;
        }
        ks[k]->dec_bf16(h, out, 65539);
        for (int i = 0; i < 65539; i++) {
            float ref = wp_bf16_to_f32(h[i]);
            bad += memcmp(&ref, &out[i], 4) != 0;
        }
        CHECKF(bad == 0, "kernel set %s: %d decoded values differ", ks[k]->name, bad);
    }
}

typedef struct qw {
    wp_qweight w;
    void *data, *scale;
} qw;

static void make_weight(qw *q, wp_enc enc, int rows, int cols, uint32_t br, uint32_t bc,
                        wp_scale_fmt sfmt)
{
    float *w = malloc(sizeof(float) * rows * cols);
    for (int i = 0; i < rows * cols; i++) w[i] = rnd() * (1 + (i / cols) % 5) * 0.05f;
    memset(q, 0, sizeof *q);
    q->w.enc = enc;
    q->w.rows = (uint64_t)rows;
    q->w.cols = (uint64_t)cols;
    q->w.br = br;
    q->w.bc = bc;
    q->w.sfmt = sfmt;
    q->data = malloc(wp_enc_data_bytes(enc, rows, cols));
    uint64_t sb = wp_enc_scale_bytes(enc, rows, cols, br, bc, sfmt);
    q->scale = sb ? malloc(sb) : NULL;
    switch (enc) {
    case WP_ENC_F32: memcpy(q->data, w, sizeof(float) * rows * cols); break;
    case WP_ENC_BF16:
        for (int i = 0; i < rows * cols; i++) ((uint16_t *)q->data)[i] = wp_f32_to_bf16(w[i]);
        break;
    case WP_ENC_F16:
        for (int i = 0; i < rows * cols; i++) ((uint16_t *)q->data)[i] = wp_f32_to_f16(w[i]);
        break;
    case WP_ENC_FP8: wp_fp8_block_quant(w, rows, cols, br, bc, sfmt, q->data, q->scale); break;
    case WP_ENC_MXFP4: wp_mxfp4_quant(w, rows, cols, q->data, q->scale); break;
    case WP_ENC_NVFP4:
        q->w.global = wp_nvfp4_global_scale(w, (size_t)rows * cols);
        wp_nvfp4_quant(w, rows, cols, q->w.global, q->data, q->scale);
        break;
    default: break;
    }
    q->w.data = q->data;
    q->w.scale = q->scale;
    free(w);
}

/* Every kernel set, every encoding: rt_linear against a double-precision
 * product of quant/'s act_quant simulation and quant/'s dequantiser. */
TEST(runtime_kernels_vs_reference)
{
    struct { wp_enc enc; uint32_t br, bc; wp_scale_fmt sf; int rows, cols; } cases[] = {
        {WP_ENC_FP8, 128, 128, WP_SCALE_E8M0, 130, 256},
        {WP_ENC_FP8, 128, 128, WP_SCALE_E8M0, 40, 320},   /* short last act block */
        {WP_ENC_FP8, 32, 32, WP_SCALE_E8M0, 70, 256},
        {WP_ENC_FP8, 128, 128, WP_SCALE_F32, 64, 384},
        {WP_ENC_MXFP4, 0, 0, WP_SCALE_E8M0, 66, 256},
        {WP_ENC_NVFP4, 0, 0, WP_SCALE_E8M0, 33, 256},
        {WP_ENC_BF16, 0, 0, WP_SCALE_E8M0, 50, 200},
        {WP_ENC_F16, 0, 0, WP_SCALE_E8M0, 20, 136},
        {WP_ENC_F32, 0, 0, WP_SCALE_E8M0, 19, 129},
    };
    const rt_kernels *const *ks = rt_kernels_all();
    rt_pool *pool;
    wp_err e = {0};
    REQUIRE(rt_pool_new(&pool, 3, &e) == 0);
    for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ci++) {
        qw q;
        make_weight(&q, cases[ci].enc, cases[ci].rows, cases[ci].cols, cases[ci].br,
                    cases[ci].bc, cases[ci].sf);
        const int M = 3, K = cases[ci].cols, N = cases[ci].rows;
        float *x = malloc(sizeof(float) * M * K), *xs = malloc(sizeof(float) * M * K);
        float *wd = malloc(sizeof(float) * N * K), *y = malloc(sizeof(float) * M * N);
        double *ref = malloc(sizeof(double) * M * N), *mag = malloc(sizeof(double) * M * N);
        for (int i = 0; i < M * K; i++) x[i] = rnd() * (i % 97 == 0 ? 30 : 1);
        memcpy(xs, x, sizeof(float) * M * K);
        /* an FP8/FP4 site quantises its input whatever the weight's storage */
        for (int m = 0; m < M; m++)
            for (int k0 = 0; k0 < K; k0 += 128) {
                int len = K - k0 < 128 ? K - k0 : 128;
                wp_act_quant_sim(xs + m * K + k0, (size_t)len, (size_t)len);
            }
        wp_qweight_dequant_rows(&q.w, 0, (uint64_t)N, wd);
        for (int m = 0; m < M; m++)
            for (int n = 0; n < N; n++) {
                double s = 0, a = 0;
                for (int k = 0; k < K; k++) {
                    s += (double)xs[m * K + k] * wd[n * K + k];
                    a += fabs((double)xs[m * K + k] * wd[n * K + k]);
                }
                ref[m * N + n] = s;
                mag[m * N + n] = a;
            }
        for (int ki = 0; ks[ki]; ki++) {
            rt_ctx c = {.pool = ki ? pool : NULL, .k = ks[ki], .flags = 0};
            REQUIRE(rt_linear(&c, &q.w, x, M, y) == 0);
            int bad = 0;
            for (int i = 0; i < M * N; i++)
                bad += !(fabs(y[i] - ref[i]) <= 2e-6 * mag[i] + 1e-30);
            CHECKF(bad == 0, "%s, %s %dx%d: %d outputs off the reference", ks[ki]->name,
                   wp_enc_name(q.w.enc), N, K, bad);
            /* one row (decode: the fused decode-and-multiply kernels) gives the
             * same bits as the same row among three (decoded-row kernels) */
            float *y1 = malloc(sizeof(float) * N);
            REQUIRE(rt_linear(&c, &q.w, x + K, 1, y1) == 0);
            CHECKF(memcmp(y1, y + N, sizeof(float) * N) == 0, "%s, %s: fused row differs",
                   ks[ki]->name, wp_enc_name(q.w.enc));
            /* dense: never quantises the activations */
            REQUIRE(rt_linear_dense(&c, &q.w, x, M, y) == 0);
            bad = 0;
            for (int m = 0; m < M; m++)
                for (int n = 0; n < N; n++) {
                    double s = 0, a = 0;
                    for (int k = 0; k < K; k++) {
                        s += (double)x[m * K + k] * wd[n * K + k];
                        a += fabs((double)x[m * K + k] * wd[n * K + k]);
                    }
                    bad += !(fabs(y[m * N + n] - s) <= 2e-6 * a + 1e-30);
                }
            CHECKF(bad == 0, "%s, %s dense: %d outputs off", ks[ki]->name, wp_enc_name(q.w.enc),
                   bad);
            REQUIRE(rt_linear_dense(&c, &q.w, x + 2 * K, 1, y1) == 0);
            CHECKF(memcmp(y1, y + 2 * N, sizeof(float) * N) == 0, "%s, %s: fused dense row differs",
                   ks[ki]->name, wp_enc_name(q.w.enc));
            free(y1);
        }
        free(x), free(xs), free(wd), free(y), free(ref), free(mag);
        free(q.data), free(q.scale);
    }
    rt_pool_free(pool);
}

/* Rows long enough for the decode kernels' whole-row steps (MXFP4 scales made
 * 16 segments at a time, then a tail; 128-wide steps, then a 32-wide tail) and
 * the dense FP8 kernel's two slow-path triggers (a NaN code, a scale above
 * 2^100): one fused row gives the bits of the same row among three, which
 * take the decoded-row kernels, on every kernel set. */
TEST(runtime_fused_rows_long_nan_bigscale)
{
    const rt_kernels *const *ks = rt_kernels_all();
    struct { wp_enc enc; uint32_t br, bc; wp_scale_fmt sf; int rows, cols; } cases[] = {
        {WP_ENC_MXFP4, 0, 0, WP_SCALE_E8M0, 9, 2080},    /* 65 segments: 4 x 16 + 1 */
        {WP_ENC_MXFP4, 0, 0, WP_SCALE_E8M0, 5, 4096},
        {WP_ENC_FP8, 128, 128, WP_SCALE_F32, 260, 1152},
        {WP_ENC_FP8, 128, 128, WP_SCALE_E8M0, 130, 4096},
    };
    for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ci++) {
        qw q;
        make_weight(&q, cases[ci].enc, cases[ci].rows, cases[ci].cols, cases[ci].br,
                    cases[ci].bc, cases[ci].sf);
        const int M = 3, K = cases[ci].cols, N = cases[ci].rows;
        if (cases[ci].enc == WP_ENC_FP8) {
            ((uint8_t *)q.data)[(size_t)1 * K + 77] = 0x7F;          /* NaN in row 1 */
            ((uint8_t *)q.data)[(size_t)N * K - 3] = 0xFF;           /* and in the last row */
            if (cases[ci].sf == WP_SCALE_F32)
                ((float *)q.scale)[(size_t)(K + 127) / 128 * 1 + 2] = 0x1p110f;   /* rows 128..255 */
        }
        float *x = malloc(sizeof(float) * M * K), *y = malloc(sizeof(float) * M * N);
        float *y1 = malloc(sizeof(float) * N);
        for (int i = 0; i < M * K; i++) x[i] = rnd() * (i % 97 == 0 ? 30 : 1);
        for (int ki = 0; ks[ki]; ki++) {
            rt_ctx c = {.pool = NULL, .k = ks[ki], .flags = 0};
            for (int dense = 0; dense < 2; dense++) {
                REQUIRE((dense ? rt_linear_dense(&c, &q.w, x, M, y) : rt_linear(&c, &q.w, x, M, y)) == 0);
                REQUIRE((dense ? rt_linear_dense(&c, &q.w, x + K, 1, y1)
                               : rt_linear(&c, &q.w, x + K, 1, y1)) == 0);
                int bad = 0, nan = 0;
                for (int n = 0; n < N; n++) {
                    float a = y1[n], b = y[N + n];
                    nan += isnan(a);
                    bad += isnan(a) || isnan(b) ? isnan(a) != isnan(b) : memcmp(&a, &b, 4) != 0;
                }
                CHECKF(bad == 0, "%s, %s %dx%d %s: %d fused outputs differ", ks[ki]->name,
                       wp_enc_name(q.w.enc), N, K, dense ? "dense" : "quantised", bad);
                if (cases[ci].enc == WP_ENC_FP8)    /* the NaN rows stay NaN */
                    CHECKF(nan >= 2, "%s: %d NaN outputs", ks[ki]->name, nan);
            }
        }
        free(x), free(y), free(y1);
        free(q.data), free(q.scale);
    }
}

/* Work is split by output row only: 1 or 3 threads give the same bits. */
TEST(runtime_threads_same_bits)
{
    qw q;
    make_weight(&q, WP_ENC_MXFP4, 301, 256, 0, 0, WP_SCALE_E8M0);
    float x[5 * 256], y1[5 * 301], y3[5 * 301];
    for (int i = 0; i < 5 * 256; i++) x[i] = rnd();
    rt_pool *p;
    wp_err e = {0};
    REQUIRE(rt_pool_new(&p, 3, &e) == 0);
    rt_ctx c1 = {.pool = NULL, .k = rt_kernels_best()}, c3 = {.pool = p, .k = rt_kernels_best()};
    REQUIRE(rt_linear(&c1, &q.w, x, 5, y1) == 0);
    REQUIRE(rt_linear(&c3, &q.w, x, 5, y3) == 0);
    CHECK(memcmp(y1, y3, sizeof y1) == 0);
    rt_pool_free(p);
    free(q.data), free(q.scale);
}

/* ---- Compressor state machine ---------------------------------------------------------------- */

/* spec §4.6: prefill of n tokens then decode of the rest must give the same
 * compressed entries, bit for bit, as one prefill of all tokens — for the
 * overlapping ratio-4 compressor (indexer style: Hadamard + FP4) and a
 * non-overlapping one (main style: FP8 KV simulation), and from position 0
 * by decode alone. */
static void comp_case(int m, int dc, int rotate)
{
    enum { DIM = 48, N = 37 };
    wp_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.rope_head_dim = 16;
    cfg.norm_eps = 1e-6;
    cfg.dim = DIM;
    rt_rope rope;
    rt_rope_init(&rope, 16, 160000, 1, 4, 64, 32, 1);
    rt_comp w;
    memset(&w, 0, sizeof w);
    w.present = 1;
    w.m = m;
    w.overlap = m == 4;
    w.dc = dc;
    w.rotate = rotate;
    const int W = (w.overlap ? 2 : 1) * dc;
    float *wk = malloc(sizeof(float) * W * DIM), *wg = malloc(sizeof(float) * W * DIM);
    w.ape = malloc(sizeof(float) * m * W);
    w.norm = malloc(sizeof(float) * dc);
    for (int i = 0; i < W * DIM; i++) wk[i] = rnd() * 0.2f, wg[i] = rnd() * 0.2f;
    for (int i = 0; i < m * W; i++) w.ape[i] = rnd();
    for (int i = 0; i < dc; i++) w.norm[i] = 1 + rnd() * 0.1f;
    w.wkv = (wp_qweight){.enc = WP_ENC_F32, .rows = (uint64_t)W, .cols = DIM, .data = wk};
    w.wgate = (wp_qweight){.enc = WP_ENC_F32, .rows = (uint64_t)W, .cols = DIM, .data = wg};
    size_t sf = rt_comp_state_floats(&w);
    rt_comp_state st = {malloc(sizeof(float) * sf), malloc(sizeof(float) * sf)};
    float x[N * DIM];
    for (int i = 0; i < N * DIM; i++) x[i] = rnd();
    float *full = calloc((size_t)(N / m + 1) * dc, sizeof(float));
    float *part = calloc((size_t)(N / m + 1) * dc, sizeof(float));
    const rt_ctx *c = ctx_scalar();
    int ne = rt_comp_prefill(c, &cfg, &w, &rope, &st, x, N, full);
    CHECK_EQ_INT(ne, N / m);
    int splits[] = {0, 1, 3, 4, 5, m, m + 1, 2 * m - 1, 17, N - 1};
    for (size_t si = 0; si < sizeof splits / sizeof splits[0]; si++) {
        int n0 = splits[si], got = 0;
        memset(part, 0, sizeof(float) * (N / m + 1) * dc);
        if (n0 > 0) {
            got = rt_comp_prefill(c, &cfg, &w, &rope, &st, x, n0, part);
            CHECK_EQ_INT(got, n0 / m);
        } else {
            rt_comp_state_reset(&w, &st);
        }
        for (int p = n0; p < N; p++) got += rt_comp_decode(c, &cfg, &w, &rope, &st, x + p * DIM, p,
                                                          part + (size_t)got * dc);
        CHECK_EQ_INT(got, N / m);
        CHECKF(memcmp(full, part, sizeof(float) * (size_t)ne * dc) == 0,
               "m=%d: prefill %d + decode differs from prefill %d", m, n0, N);
    }
    /* the entries are post-processed: FP8 grid on the non-rope dims (main),
     * FP4 grid x power-of-two scale everywhere (indexer) */
    for (int j = 0; j < ne; j++) {
        float t[512];
        memcpy(t, full + (size_t)j * dc, sizeof(float) * dc);
        if (rotate) wp_fp4_act_quant_sim(t, (size_t)dc, 32);
        else wp_act_quant_sim(t, (size_t)(dc - 16), (size_t)(dc - 16 < 64 ? dc - 16 : 64));
        CHECK(memcmp(t, full + (size_t)j * dc, sizeof(float) * dc) == 0);
    }
    free(wk), free(wg), free(w.ape), free(w.norm), free(st.kv), free(st.score), free(full),
        free(part);
}

TEST(runtime_compressor_state_machine)
{
    comp_case(4, 64, 1);     /* CSA / indexer: overlap, Hadamard + FP4 */
    comp_case(4, 80, 0);     /* CSA main: overlap, FP8 on 64 non-rope dims */
    comp_case(8, 80, 0);     /* HCA-like: no overlap */
}

/* ---- Parity measures ------------------------------------------------------------------------ */

TEST(runtime_parity_measures)
{
    float a[3] = {1, 2, 3}, b[3] = {2, 4, 6}, c[3] = {-1, -2, -3};
    CHECK_NEAR(wp_cosine(a, b, 3), 1, 1e-12);
    CHECK_NEAR(wp_cosine(a, c, 3), -1, 1e-12);
    CHECK_NEAR(wp_rel_err(b, a, 3), 1, 1e-12);
    CHECK_EQ_INT(wp_argmax(a, 3), 2);
    float p[2] = {0, 0}, q[2] = {(float)log(3.0), 0};
    /* KL([.5,.5] || [.75,.25]) = .5 ln(.5/.75) + .5 ln(.5/.25) */
    CHECK_NEAR(wp_kl_logits(p, q, 2), 0.5 * log(0.5 / 0.75) + 0.5 * log(2.0), 1e-7);
    CHECK_NEAR(wp_kl_logits(p, p, 2), 0, 1e-12);
    int32_t r1[4] = {5, 3, -1, 9}, r2[4] = {9, 4, 3, -1}, r3[4] = {-1, -1, -1, -1};
    CHECK_NEAR(wp_topk_recall(r2, r1, 4), 2.0 / 3, 1e-12);
    CHECK_NEAR(wp_topk_recall(r1, r3, 4), -1, 0);
    double v[5] = {5, 1, 4, 2, 3};
    CHECK_NEAR(wp_quantile(v, 5, 0.5), 3, 0);
    CHECK_NEAR(wp_quantile(v, 5, 0.9), 4.6, 1e-12);
}

/* The reports as JSON: every field of the structs under its key, in the
 * layout `wpack parity --json` has always printed. */
TEST(runtime_parity_report_json)
{
    wp_parity_report r;
    memset(&r, 0, sizeof r);
    r.n_layers = 2;
    r.layers[0] = (wp_parity_layer){.layer = 0, .median = 1e-7, .p90 = 2e-7, .max = 3e-3, .pass = 1};
    r.layers[1] = (wp_parity_layer){.layer = 1, .median = 5e-5, .p90 = 6e-5, .max = 0.5, .pass = 0};
    r.prefill = (wp_parity_logits){.what = "prefill", .rows = 2, .cos_min = 0.99, .cos_mean = 0.995,
                                   .rel_rms_max = 0.05, .kl_max = 0.002, .top1_agree = 2,
                                   .top1_clear_rows = 1, .top1_clear_agree = 1, .pass = 1};
    r.decode.what = "decode";
    r.mtp.what = "mtp";
    r.n_recall = 1;
    r.recall[0] = (wp_parity_recall){.layer = 1, .queries = 500, .mean = 0.98, .worst = 0.5};
    r.seconds = 1.5;
    cJSON *g = wp_parity_golden_json(&r, "g.safetensors");
    REQUIRE(g);
    const char *keys[] = {"file", "layers", "prefill", "decode", "mtp", "indexer_recall", "seconds", "pass"};
    int i = 0;
    for (cJSON *c = g->child; c; c = c->next, i++)
        CHECKF(i < 8 && !strcmp(c->string, keys[i]), "key %d: %s", i, c->string);
    CHECK_EQ_INT(i, 8);
    CHECK(!strcmp(cJSON_GetObjectItem(g, "file")->valuestring, "g.safetensors"));
    cJSON *ls = cJSON_GetObjectItem(g, "layers");
    REQUIRE(cJSON_GetArraySize(ls) == 2);
    cJSON *l1 = cJSON_GetArrayItem(ls, 1);
    CHECK_EQ_INT(cJSON_GetObjectItem(l1, "layer")->valueint, 1);
    CHECK(cJSON_GetObjectItem(l1, "median")->valuedouble == 5e-5);
    CHECK(cJSON_GetObjectItem(l1, "p90")->valuedouble == 6e-5);
    CHECK(cJSON_GetObjectItem(l1, "max")->valuedouble == 0.5);
    CHECK(cJSON_IsFalse(cJSON_GetObjectItem(l1, "pass")));
    cJSON *pre = cJSON_GetObjectItem(g, "prefill");
    CHECK_EQ_INT(cJSON_GetObjectItem(pre, "rows")->valueint, 2);
    CHECK(cJSON_GetObjectItem(pre, "cosine_min")->valuedouble == 0.99);
    CHECK(cJSON_GetObjectItem(pre, "cosine_mean")->valuedouble == 0.995);
    CHECK(cJSON_GetObjectItem(pre, "rel_rms_max")->valuedouble == 0.05);
    CHECK(cJSON_GetObjectItem(pre, "kl_max")->valuedouble == 0.002);
    CHECK_EQ_INT(cJSON_GetObjectItem(pre, "top1_agree")->valueint, 2);
    CHECK_EQ_INT(cJSON_GetObjectItem(pre, "top1_clear_rows")->valueint, 1);
    CHECK_EQ_INT(cJSON_GetObjectItem(pre, "top1_clear_agree")->valueint, 1);
    CHECK(cJSON_IsTrue(cJSON_GetObjectItem(pre, "pass")));
    CHECK_EQ_INT(cJSON_GetObjectItem(cJSON_GetObjectItem(g, "decode"), "rows")->valueint, 0);
    cJSON *rc = cJSON_GetArrayItem(cJSON_GetObjectItem(g, "indexer_recall"), 0);
    REQUIRE(rc);
    CHECK_EQ_INT(cJSON_GetObjectItem(rc, "queries")->valueint, 500);
    CHECK(cJSON_GetObjectItem(rc, "mean")->valuedouble == 0.98);
    CHECK(cJSON_GetObjectItem(rc, "worst")->valuedouble == 0.5);
    CHECK(cJSON_GetObjectItem(g, "seconds")->valuedouble == 1.5);
    CHECK(cJSON_IsFalse(cJSON_GetObjectItem(g, "pass")));
    cJSON_Delete(g);
    r.pass = 1;
    cJSON *a = wp_parity_recall_json(&r, "ref-build", 3, 0.9);
    REQUIRE(a);
    CHECK(!strcmp(cJSON_GetObjectItem(a, "reference")->valuestring, "ref-build"));
    CHECK_EQ_INT(cJSON_GetObjectItem(a, "prompts")->valueint, 3);
    CHECK(cJSON_GetObjectItem(a, "gate")->valuedouble == 0.9);
    CHECK_EQ_INT(cJSON_GetArraySize(cJSON_GetObjectItem(a, "layers")), 1);
    CHECK(cJSON_IsTrue(cJSON_GetObjectItem(a, "pass")));
    cJSON_Delete(a);
}
