/* test_source_wpk.c — the runtime reads a build exactly as it reads the HF
 * checkpoint it came from: for every linear weight of tiny-a, the build's
 * view (direct, stacked, fused or expert-parallel slice) dequantises to the
 * source's values — bit-exactly where the profile is lossless. */
#include <math.h>

#include "runtime/source_wpk.h"
#include "tests/harness.h"

/* Every linear module of tiny-a (HF name without ".weight"), from the
 * inventory: 2-D weights that are FP8/FP4/BF16 linears. */
static int linear_names(const wp_config *c, char (**out)[160], size_t *n)
{
    wp_expect *inv;
    size_t k;
    wp_err e = {0};
    if (wp_inventory(c, &inv, &k, &e)) return -1;
    *out = calloc(k, sizeof **out);
    *n = 0;
    for (size_t i = 0; i < k; i++) {
        size_t L = strlen(inv[i].name);
        if (inv[i].ndim != 2 || L < 7 || strcmp(inv[i].name + L - 7, ".weight")) continue;
        if (strstr(inv[i].name, "norm") || inv[i].optional) continue;
        if (!strcmp(inv[i].name, "embed.weight")) continue;   /* a table, not a linear */
        memcpy((*out)[*n], inv[i].name, L - 7);
        (*out)[*n][L - 7] = 0;
        (*n)++;
    }
    free(inv);
    return 0;
}

/* Compare every linear's dequantised rows; exact when tol == 0, else the
 * normalised error of each weight must stay under tol. */
static void compare_build(const char *profile, const char *extra, double tol, int parts)
{
    char out[8192];
    const char *dir = wpt_path("%s/b-%s", wpt_tmpdir(), profile);
    int rc = wpt_run(out, sizeof out, "%s convert %s/hf -o %s --profile %s %s", wpt_wpack(),
                     WPT_TINY, dir, profile, extra);
    CHECKF(rc == 0, "convert %s %s: rc %d: %s", profile, extra, rc, out);
    if (rc) return;
    wp_err e = {0};
    wp_tsrc *hf = NULL, *b = NULL;
    REQUIRE(wp_tsrc_open_hf(&hf, WPT_TINY "/hf", &e) == 0);
    rc = wp_tsrc_open_wpk(&b, dir, &e);
    CHECKF(rc == 0, "open %s: %s", dir, e.msg);
    if (rc) { wp_tsrc_close(hf); return; }
    CHECK_EQ_INT(wp_tsrc_wpk_parts(b), parts);
    CHECK_EQ_INT(b->cfg.dim, hf->cfg.dim);
    CHECK_EQ_INT(b->cfg.n_layers, hf->cfg.n_layers);
    char (*names)[160];
    size_t n;
    REQUIRE(linear_names(&hf->cfg, &names, &n) == 0);
    CHECK(n > 150);   /* tiny-a: 182 linears, 120 of them experts */
    size_t bad = 0;
    for (size_t i = 0; i < n; i++) {
        wp_qweight qa, qb;
        wp_err_clear(&e);
        if (hf->weight(hf, names[i], &qa, &e)) { CHECKF(0, "hf %s: %s", names[i], e.msg); continue; }
        if (b->weight(b, names[i], &qb, &e)) { CHECKF(0, "build %s: %s", names[i], e.msg); bad++; continue; }
        if (qa.rows != qb.rows || qa.cols != qb.cols) { CHECKF(0, "%s: shape differs", names[i]); continue; }
        float *ra = malloc(qa.rows * qa.cols * sizeof *ra), *rb = malloc(qb.rows * qb.cols * sizeof *rb);
        wp_qweight_dequant_rows(&qa, 0, qa.rows, ra);
        wp_qweight_dequant_rows(&qb, 0, qb.rows, rb);
        double se = 0, sr = 0;
        size_t neq = 0;
        for (uint64_t j = 0; j < qa.rows * qa.cols; j++) {
            double d = (double)ra[j] - rb[j];
            se += d * d;
            sr += (double)ra[j] * ra[j];
            neq += ra[j] != rb[j];
        }
        if (tol == 0) CHECKF(neq == 0, "%s %s: %zu values differ", profile, names[i], neq);
        else CHECKF(se <= tol * sr, "%s %s: nmse %.3g > %.3g", profile, names[i], se / sr, tol);
        free(ra);
        free(rb);
    }
    CHECK_EQ_INT(bad, 0);
    /* plain tensors come through unchanged */
    wp_tview ta, tb;
    REQUIRE(hf->tensor(hf, "layers.0.ffn.gate.tid2eid", &ta, &e) == 0);
    REQUIRE(b->tensor(b, "layers.0.ffn.gate.tid2eid", &tb, &e) == 0);
    CHECK(ta.shape[0] == tb.shape[0] && ta.shape[1] == tb.shape[1]);
    CHECK(memcmp(ta.data, tb.data, ta.shape[0] * ta.shape[1] * 8) == 0);
    CHECK(!b->has(b, "layers.0.attn.no_such"));
    CHECK(b->has(b, "layers.1.ffn.experts.7.w2"));
    free(names);
    wp_tsrc_close(b);
    wp_tsrc_close(hf);
}

TEST(runtime_source_wpk_reference_exact) { compare_build("reference", "", 0, 1); }
TEST(runtime_source_wpk_fused_w13_exact) { compare_build("reference", "--fuse-w13", 0, 1); }
TEST(runtime_source_wpk_expert_parallel_exact) { compare_build("reference", "--ep 2", 0, 2); }
TEST(runtime_source_wpk_bf16_exact) { compare_build("bf16", "", 0, 1); }
TEST(runtime_source_wpk_blackwell_exact) { compare_build("blackwell", "", 0, 1); }
/* FP8 with F32 scales re-quantises the dense FP8 weights: each value moves by
 * at most half an e4m3 step (2^-4 relative), so NMSE stays far below 1e-3;
 * the experts' MXFP4->FP8 re-encode is lossless on tiny-a. */
TEST(runtime_source_wpk_hopper_close) { compare_build("hopper", "", 1e-3, 1); }

/* Parts that carry the same tensor with different bytes are what a
 * tensor-parallel split looks like; two different builds' files in one
 * directory are exactly that. */
TEST(runtime_source_wpk_refuses_conflicting_parts)
{
    char out[8192];
    const char *a = wpt_path("%s/a", wpt_tmpdir()), *b = wpt_path("%s/b", wpt_tmpdir());
    const char *mix = wpt_path("%s/mix", wpt_tmpdir());
    REQUIRE(wpt_run(out, sizeof out, "%s convert %s/hf -o %s", wpt_wpack(), WPT_TINY, a) == 0);
    REQUIRE(wpt_run(out, sizeof out, "%s convert %s/hf -o %s --profile bf16", wpt_wpack(), WPT_TINY, b) == 0);
    REQUIRE(wpt_run(out, sizeof out, "mkdir %s && cp %s/model.wpk %s/p0.wpk && cp %s/model.wpk %s/p1.wpk",
                    mix, a, mix, b, mix) == 0);
    wp_tsrc *s = NULL;
    wp_err e = {0};
    CHECK(wp_tsrc_open_wpk(&s, mix, &e) != 0);
    CHECK_CONTAINS(e.msg, "tensor-parallel");
    CHECK_CONTAINS(e.msg, "p1.wpk");
    wp_err_clear(&e);
    CHECK(wp_tsrc_open_wpk(&s, wpt_tmpdir(), &e) != 0);   /* no .wpk at all */
    CHECK_CONTAINS(e.msg, "no .wpk file");
}

/* --hugepages changes where the weights live, never what is computed: the
 * JSON of a greedy run is identical with and without it, whether the copy
 * succeeds or falls back (no pages reserved) with its one-line notice. */
TEST(runtime_source_wpk_run_hugepages_same_output)
{
    static char a[65536], b[65536], n[4096];
    const char *dir = wpt_path("%s/b", wpt_tmpdir());
    REQUIRE(wpt_run(a, sizeof a, "%s convert %s/hf -o %s", wpt_wpack(), WPT_TINY, dir) == 0);
    /* timings differ run to run; every other field must not */
    const char *strip = "grep -v -e _seconds -e per_s";
    REQUIRE(wpt_run(a, sizeof a, "%s run %s --tokens 0,17,42,99 --max-new 4 --json 2>/dev/null | %s",
                    wpt_wpack(), dir, strip) == 0);
    REQUIRE(wpt_run(b, sizeof b, "%s run %s --tokens 0,17,42,99 --max-new 4 --json --hugepages "
                    "2>/dev/null | %s", wpt_wpack(), dir, strip) == 0);
    CHECK_CONTAINS(a, "\"steps\"");
    CHECK(strcmp(a, b) == 0);
    /* stderr carries at most one notice line, never an error */
    REQUIRE(wpt_run(n, sizeof n, "%s run %s --tokens 0,17 --max-new 1 --hugepages 2>&1 >/dev/null",
                    wpt_wpack(), dir) == 0);
    int lines = 0;
    for (const char *p = n; *p; p++) lines += *p == '\n';
    CHECK(lines <= 1);
    if (lines) CHECK_CONTAINS(n, "huge pages");
}

/* A lone .wpk is a one-part build; a source that is not a build keeps its
 * plain mapping under huge pages, with a notice that names no flag. */
TEST(runtime_source_wpk_lone_part_and_neutral_notice)
{
    char out[8192];
    const char *dir = wpt_path("%s/b", wpt_tmpdir());
    REQUIRE(wpt_run(out, sizeof out, "%s convert %s/hf -o %s", wpt_wpack(), WPT_TINY, dir) == 0);
    wp_tsrc *s = NULL, *hf = NULL;
    wp_err e = {0};
    REQUIRE(wp_tsrc_open_wpk(&s, wpt_path("%s/model.wpk", dir), &e) == 0);
    CHECK_EQ_INT(wp_tsrc_wpk_parts(s), 1);
    CHECK(s->has(s, "embed"));
    wp_tsrc_close(s);
    CHECK(wp_tsrc_open_wpk(&s, wpt_path("%s/absent", wpt_tmpdir()), &e) != 0);
    CHECK_CONTAINS(e.msg, "absent: cannot open");
    REQUIRE(wp_tsrc_open_hf(&hf, WPT_TINY "/hf", &e) == 0);
    char notice[512];
    wp_err_clear(&e);
    CHECK_EQ_INT(wp_tsrc_hugepages(hf, notice, sizeof notice, &e), 0);
    CHECK(!strncmp(notice, "huge pages: ", 12));
    CHECK_CONTAINS(notice, "is not a .wpk build; using its plain mapping");
    CHECK(strstr(notice, "--") == NULL);
    wp_tsrc_close(hf);
}
