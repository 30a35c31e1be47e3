/* test_verify_parity.c — the logits statistics (verify/stats.h), the
 * lossless reader (trust/build.h wp_build_lossless), `wpack parity
 * --against` with its exact and lossy gates, and `wpack golden` (its schema,
 * reduced goldens, the round trip against the fixture's official golden).
 *
 * Thresholds: a build of the same values run by the same runtime must give
 * the same bits; docs/parity.md has the tiny-a figures the lossy gate and the
 * bounds below come from. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "hf/safetensors.h"
#include "tests/harness.h"
#include "trust/build.h"
#include "verify/parity.h"
#include "verify/stats.h"

#define TINY_HF WPT_TINY "/hf"
#define GOLDEN WPT_TINY "/golden-fp32.safetensors"

/* ---- Statistics ------------------------------------------------------------------------ */

TEST(verify_stats_measures)
{
    /* KL of two 2-token distributions, by hand: p = softmax(0, log 3) = (1/4, 3/4),
     * q = (1/2, 1/2): KL = 1/4 log(1/2) + 3/4 log(3/2) */
    const float r[2] = {0, (float)log(3.0)}, a[2] = {5, 5};
    CHECK_NEAR(wp_kl_rows(r, a, 2), 0.25 * log(0.5) + 0.75 * log(1.5), 1e-7);
    CHECK(wp_kl_rows(r, r, 2) == 0);
    CHECK_NEAR(wp_logsumexp(r, 2), log(4.0), 1e-7);
    /* top-k: largest first, ties to the lower id */
    const float x[6] = {1, 3, 3, -1, 2, 3};
    int32_t ids[4];
    wp_topk_ids(x, 6, 4, ids);
    CHECK(ids[0] == 1 && ids[1] == 2 && ids[2] == 5 && ids[3] == 4);
    /* the coarsened KL: equal to the full one with every token kept, a lower
     * bound with fewer */
    float ref[16], b[16];
    for (int i = 0; i < 16; i++) ref[i] = (float)sin(i * 1.7) * 2, b[i] = ref[i] + (float)cos(i * 0.9) * 0.3f;
    const double full = wp_kl_rows(ref, b, 16), lse = wp_logsumexp(ref, 16);
    int32_t all[16];
    float vals[16];
    wp_topk_ids(ref, 16, 16, all);
    for (int i = 0; i < 16; i++) vals[i] = ref[all[i]];
    CHECK_NEAR(wp_kl_topk(all, vals, 16, lse, b, 16), full, 1e-9);
    const double k4 = wp_kl_topk(all, vals, 4, lse, b, 16);
    CHECKF(k4 > 0 && k4 <= full + 1e-12, "top-4 KL %.6g, full %.6g", k4, full);
    /* the accumulator: 100 rows, one of them far off */
    wp_lstats s;
    wp_lstats_init(&s, 2);
    wp_err e = {0};
    for (int i = 0; i < 100; i++) {
        float rr[4] = {4, 1, 0, 0}, aa[4] = {4, 1, 0, 0};
        if (i == 7) aa[0] = -4;                       /* top-1 moves, KL large */
        if (i == 8) aa[2] = 1.5f;                     /* top-1 kept, top-2 set changes */
        REQUIRE(wp_lstats_add(&s, rr, aa, 4, &e) == 0);
    }
    wp_lsummary sm;
    wp_lstats_summary(&s, &sm);
    CHECK_EQ_INT(sm.rows, 100);
    CHECK_EQ_INT(sm.top1_agree, 99);
    CHECK_EQ_INT(sm.topk_same, 98);
    CHECK(sm.kl_max > 1 && sm.kl_mean > 0 && sm.kl_mean < sm.kl_max / 50);
    CHECK(sm.kl_p99 > 0 && sm.kl_p99 < sm.kl_max);   /* p99 of 100 interpolates below the max */
    CHECK(sm.cos_min < 0.5 && sm.cos_mean > 0.95);
    wp_lstats_free(&s);
}

/* ---- The lossless record ------------------------------------------------------------------ */

static void write_text(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    if (!f) return;
    fputs(text, f);
    fclose(f);
}

TEST(verify_build_lossless_reader)
{
    const char *d = wpt_tmpdir();
    struct { const char *manifest; int want; } cases[] = {
        {"{\"files\": [], \"loss\": {\"lossless\": true, \"lossy_tensors\": 0, \"families\": []}}", 1},
        {"{\"files\": [], \"loss\": {\"lossless\": false, \"lossy_tensors\": 12, \"families\": [\"experts\"]}}", 0},
        {"{\"files\": [], \"tensors\": []}", -1},                   /* a build made before the field */
        {"{\"loss\": {\"lossless\": 1}}", -1},                       /* not a boolean */
        {"{\"loss\": true}", -1},
        {"not json", -1},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        const char *b = wpt_path("%s/b%zu", d, i);
        REQUIRE(wpt_run(NULL, 0, "mkdir -p %s", b) == 0);
        write_text(wpt_path("%s/manifest.json", b), cases[i].manifest);
        wp_build *bd;
        wp_err e = {0};
        REQUIRE(wp_build_open(&bd, b, &e) == 0);
        CHECKF(wp_build_lossless(bd) == cases[i].want, "case %zu: %d, expected %d", i,
               wp_build_lossless(bd), cases[i].want);
        wp_build_close(bd);
    }
    /* no manifest at all, and a lone .wpk */
    const char *empty = wpt_path("%s/empty", d), *lone = wpt_path("%s/x.wpk", d);
    REQUIRE(wpt_run(NULL, 0, "mkdir -p %s", empty) == 0);
    write_text(lone, "WPK");
    wp_build *bd;
    wp_err e = {0};
    REQUIRE(wp_build_open(&bd, empty, &e) == 0);
    CHECK_EQ_INT(wp_build_lossless(bd), -1);
    wp_build_close(bd);
    REQUIRE(wp_build_open(&bd, lone, &e) == 0);
    CHECK_EQ_INT(wp_build_lossless(bd), -1);
    wp_build_close(bd);
}

/* A copy of a path that outlives wpt_path's ring of buffers. */
static const char *keep(const char *p)
{
    static char ring[16][1024];
    static int k;
    if (!p) return NULL;
    char *b = ring[k++ % 16];
    snprintf(b, sizeof ring[0], "%s", p);
    return b;
}

/* ---- parity --against ------------------------------------------------------------------------ */

/* The golden prompts cut to n tokens each, one per line. */
static const char *prompts_file(int n)
{
    wp_err e = {0};
    wp_st_file *f;
    if (wp_st_open(&f, GOLDEN, &e)) return NULL;
    const wp_tensor_info *t = wp_st_find(f, "tokens");
    int32_t tok[2 * 253];
    if (!t || wp_st_read(f, t, 0, tok, sizeof tok, &e)) {
        wp_st_close(f);
        return NULL;
    }
    wp_st_close(f);
    const char *p = wpt_path("%s/prompts-%d.txt", wpt_tmpdir(), n);
    FILE *o = fopen(p, "w");
    if (!o) return NULL;
    fprintf(o, "# the fixture's two prompts, %d tokens each\n", n);
    for (int b = 0; b < 2; b++)
        for (int i = 0; i < n; i++) fprintf(o, "%d%c", tok[b * 253 + i], i == n - 1 ? '\n' : ' ');
    fclose(o);
    return keep(p);
}

static const char *convert_as(const char *name, const char *profile, const char *extra)
{
    static char out[8192];
    const char *dir = wpt_path("%s/%s", wpt_tmpdir(), name);
    int rc = wpt_run(out, sizeof out, "%s convert %s -o %s --profile %s --threads 2 -q %s", wpt_wpack(), TINY_HF,
                     dir, profile, extra ? extra : "");
    CHECKF(rc == 0, "convert %s: exit %d: %s", profile, rc, out);
    return rc ? NULL : keep(dir);
}

static const char *convert(const char *profile, const char *extra) { return convert_as(profile, profile, extra); }

static cJSON *parity_json(int *rc, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static cJSON *parity_json(int *rc, const char *fmt, ...)
{
    static char cmd[4096], out[1 << 20];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    *rc = wpt_run(out, sizeof out, "%s parity %s --threads 2 --json 2>/dev/null", wpt_wpack(), cmd);
    cJSON *j = cJSON_Parse(out);
    CHECKF(j != NULL, "not JSON: %s", out);
    return j;
}

static double num(const cJSON *o, const char *path)
{
    char buf[256];
    snprintf(buf, sizeof buf, "%s", path);
    const cJSON *x = o;
    for (char *s = strtok(buf, "."); s && x; s = strtok(NULL, ".")) x = cJSON_GetObjectItem(x, s);
    return cJSON_IsNumber(x) ? x->valuedouble : NAN;
}

/* The same values through the same runtime give the same bits: the
 * reference build against the HF checkpoint it was made from, and a copy of
 * a build against the original (auto: the same bytes -> exact). */
TEST(verify_against_exact)
{
    const char *ref = convert("reference", NULL), *pf = prompts_file(96);
    REQUIRE(ref && pf);
    int rc;
    cJSON *j = parity_json(&rc, "%s --against %s --prompts %s --gate exact", ref, TINY_HF, pf);
    REQUIRE(j);
    CHECK_EQ_INT(rc, 0);
    cJSON *a = cJSON_GetObjectItem(j, "against");
    CHECK(!strcmp(cJSON_GetObjectItem(a, "gate")->valuestring, "exact"));
    CHECK(cJSON_IsTrue(cJSON_GetObjectItem(a, "identical")));
    CHECK(cJSON_IsNull(cJSON_GetObjectItem(a, "first_mismatch")));
    CHECK_EQ_INT(num(a, "logits.rows"), 192);          /* every position of both prompts */
    CHECK(num(a, "logits.kl_max") == 0 && num(a, "logits.top1_rate") == 1);
    CHECK_EQ_INT(num(a, "mtp.rows"), 2);
    CHECK_EQ_INT(cJSON_GetArraySize(cJSON_GetObjectItem(a, "layers")), 4);
    CHECK_EQ_INT(cJSON_GetArraySize(cJSON_GetObjectItem(a, "indexer_recall")), 2);
    cJSON *ps = cJSON_GetObjectItem(a, "prompts");
    REQUIRE(cJSON_GetArraySize(ps) == 2);
    CHECK_EQ_INT(num(cJSON_GetArrayItem(ps, 1), "tokens"), 96);
    CHECK_EQ_INT(cJSON_GetArraySize(cJSON_GetObjectItem(cJSON_GetArrayItem(ps, 0), "layers")), 4);
    CHECK(cJSON_IsTrue(cJSON_GetObjectItem(j, "pass")));
    cJSON_Delete(j);
    /* a copy: auto picks exact (the same manifest root) */
    const char *copy = wpt_path("%s/copy", wpt_tmpdir());
    REQUIRE(wpt_run(NULL, 0, "cp -r %s %s", ref, copy) == 0);
    static char out[65536];
    rc = wpt_run(out, sizeof out, "%s parity %s --against %s --prompts %s 2>&1", wpt_wpack(), copy, ref, pf);
    CHECKF(rc == 0, "exit %d: %s", rc, out);
    CHECK_CONTAINS(out, "exact gate (the same bytes)");
    CHECK_CONTAINS(out, "every compared value bit-identical  PASS");
    CHECK_CONTAINS(out, "prompt 1 (96 tokens)");
}

/* A different value anywhere fails the exact gate, naming the first
 * mismatch; the lossy gate reports KL and top-1 and passes the FP4 build
 * with the default thresholds, fails it with tight ones. */
TEST(verify_against_nvfp4_gates)
{
    const char *ref = convert("reference", NULL), *nv = convert("blackwell-nvfp4", NULL), *pf = prompts_file(128);
    REQUIRE(ref && nv && pf);
    static char out[65536];
    int rc = wpt_run(out, sizeof out, "%s parity %s --against %s --prompts %s --threads 2 --gate exact", wpt_wpack(),
                     nv, ref, pf);
    CHECK_EQ_INT(rc, 1);
    CHECK_CONTAINS(out, "exact gate: first mismatch: prompt 0, layer 0 (teacher-forced)");
    CHECK_CONTAINS(out, "\nFAIL");
    /* auto: the manifest's "loss" record says the NVFP4 build is lossy -> the lossy gate */
    rc = wpt_run(out, sizeof out, "%s parity %s --against %s --prompts %s --threads 2 2>&1", wpt_wpack(), nv, ref, pf);
    CHECKF(rc == 0, "exit %d: %s", rc, out);
    CHECK_CONTAINS(out, "lossy gate (build lossy, reference lossless)");
    CHECK_CONTAINS(out, "lossy gate: KL mean ");
    CHECK_CONTAINS(out, "top-1 ");
    CHECK(!strstr(out, "not known to be lossless"));
    /* a lone .wpk carries no record: unknown -> the lossy gate, with a notice
     * (the reference's own container still compares bit for bit) */
    rc = wpt_run(out, sizeof out, "%s parity %s/model.wpk --against %s --prompts %s --threads 2 2>&1", wpt_wpack(), ref,
                 ref, pf);
    CHECKF(rc == 0, "exit %d: %s", rc, out);
    CHECK_CONTAINS(out, "not known to be lossless");
    CHECK_CONTAINS(out, "lossy gate (build unknown, reference lossless)");
    CHECK_CONTAINS(out, "(and bit-identical)  PASS");
    int jrc;
    cJSON *j = parity_json(&jrc, "%s --against %s --prompts %s --gate lossy", nv, ref, pf);
    REQUIRE(j);
    CHECK_EQ_INT(jrc, 0);
    cJSON *a = cJSON_GetObjectItem(j, "against");
    CHECK(!strcmp(cJSON_GetObjectItem(a, "gate")->valuestring, "lossy"));
    CHECK(cJSON_IsFalse(cJSON_GetObjectItem(a, "identical")));
    const double kl = num(a, "logits.kl_mean"), p99 = num(a, "logits.kl_p99"), t1 = num(a, "logits.top1_rate");
    /* docs/parity.md: NVFP4 experts on tiny-a, KL mean ~0.07, top-1 ~0.56
     * (random weights, near-uniform logits); an unrelated model gives KL ~1 */
    CHECKF(kl > 0.005 && kl < 0.25, "KL mean %.4g", kl);
    CHECKF(p99 >= kl && p99 < 0.75, "KL p99 %.4g", p99);
    CHECKF(t1 > 0.3 && t1 < 1, "top-1 %.4f", t1);
    CHECK(num(a, "thresholds.kl_mean_max") == 0.25);
    /* the experts are lossy, the indexer is not: teacher-forced selections agree */
    cJSON *r;
    cJSON_ArrayForEach(r, cJSON_GetObjectItem(a, "indexer_recall")) CHECK(num(r, "mean") == 1.0);
    cJSON_Delete(j);
    /* a gate stated for a real checkpoint (docs/parity.md) fails it */
    rc = wpt_run(out, sizeof out, "%s parity %s --against %s --prompts %s --threads 2 --top1-min 0.9 "
                 "--kl-mean-max 0.05", wpt_wpack(), nv, ref, pf);
    CHECK_EQ_INT(rc, 1);
    CHECK_CONTAINS(out, "  FAIL\n");
    /* an unrelated model of the same shapes fails the default lossy gate */
    const char *other = wpt_path("%s/other", wpt_tmpdir());
    REQUIRE(wpt_run(out, sizeof out, "%s synth -p tiny -o %s --seed 1 -q", wpt_wpack(), other) == 0);
    j = parity_json(&jrc, "%s --against %s --prompts %s --gate lossy", other, ref, pf);
    REQUIRE(j);
    CHECK_EQ_INT(jrc, 1);
    CHECKF(num(j, "against.logits.kl_mean") > 0.5, "unrelated model: KL mean %.3g", num(j, "against.logits.kl_mean"));
    cJSON_Delete(j);
}

/* The lossless profiles store the reference's values, and a linear's bits
 * depend only on its site and its weight's values (docs/runtime.md
 * "Numerics"), so each is bit-identical to the reference build: the auto
 * gate picks exact (both manifests say lossless) and passes. */
TEST(verify_against_lossless_profiles)
{
    const char *ref = convert("reference", NULL), *pf = prompts_file(96);
    REQUIRE(ref && pf);
    const char *profiles[] = {"hopper", "blackwell", "bf16"};
    for (int i = 0; i < 3; i++) {
        const char *b = convert(profiles[i], NULL);
        REQUIRE(b);
        int rc;
        cJSON *j = parity_json(&rc, "%s --against %s --prompts %s --gate auto", b, ref, pf);
        REQUIRE(j);
        cJSON *a = cJSON_GetObjectItem(j, "against");
        CHECKF(rc == 0, "%s: exit %d, first mismatch %s", profiles[i], rc,
               cJSON_IsString(cJSON_GetObjectItem(a, "first_mismatch"))
                   ? cJSON_GetObjectItem(a, "first_mismatch")->valuestring : "none");
        CHECK(!strcmp(cJSON_GetObjectItem(a, "gate")->valuestring, "exact"));
        CHECK(!strcmp(cJSON_GetObjectItem(a, "gate_reason")->valuestring, "build lossless, reference lossless"));
        CHECKF(cJSON_IsTrue(cJSON_GetObjectItem(a, "identical")), "%s not bit-identical", profiles[i]);
        CHECK(cJSON_IsNull(cJSON_GetObjectItem(a, "first_mismatch")));
        CHECK(num(a, "logits.kl_max") == 0 && num(a, "logits.top1_rate") == 1);
        CHECK_EQ_INT(num(a, "logits.rows"), 192);
        cJSON *l;
        cJSON_ArrayForEach(l, cJSON_GetObjectItem(a, "layers"))
            CHECKF(num(l, "max") == 0, "%s layer %g: max %.3g", profiles[i], num(l, "layer"), num(l, "max"));
        cJSON_Delete(j);
        /* the same without --gate (auto is the default), as a person reads it */
        static char out[65536];
        rc = wpt_run(out, sizeof out, "%s parity %s --against %s --prompts %s --threads 2", wpt_wpack(), b, ref, pf);
        CHECKF(rc == 0, "%s: exit %d: %s", profiles[i], rc, out);
        CHECK_CONTAINS(out, "every compared value bit-identical  PASS");
    }
    /* a hopper build with wo_a kept FP8 (F32 scales): identical too */
    const char *h8 = convert_as("hopper-fp8-woa", "hopper", "--tensor-type 'attn\\.wo_a\\.weight$=fp8-128x128-f32'");
    REQUIRE(h8);
    static char out[65536];
    int rc = wpt_run(out, sizeof out, "%s parity %s --against %s --prompts %s --threads 2 --gate exact", wpt_wpack(),
                     h8, ref, pf);
    CHECKF(rc == 0, "exit %d: %s", rc, out);
    CHECK_CONTAINS(out, "every compared value bit-identical  PASS");
}

TEST(verify_parity_prompts_errors)
{
    const char *d = wpt_tmpdir(), *bad = wpt_path("%s/bad.txt", d), *far = wpt_path("%s/far.txt", d);
    write_text(bad, "1 2 3\n4 x 5\n");
    write_text(far, "1 2 70000\n");
    static char out[8192];
    int rc = wpt_run(out, sizeof out, "%s parity %s --against %s --prompts %s -q 2>&1 >/dev/null", wpt_wpack(), TINY_HF,
                     TINY_HF, bad);
    CHECK_EQ_INT(rc, 2);
    CHECK_CONTAINS(out, "bad.txt:2: not a token id");
    int lines = 0;
    for (const char *p = out; *p; p++) lines += *p == '\n';
    CHECKF(lines == 1, "stderr: %s", out);
    rc = wpt_run(out, sizeof out, "%s parity %s --against %s --prompts %s -q", wpt_wpack(), TINY_HF, TINY_HF, far);
    CHECK_EQ_INT(rc, 2);
    CHECK_CONTAINS(out, "70000");
    rc = wpt_run(out, sizeof out, "%s parity %s --against %s --prompts %s/none.txt --json 2>/dev/null", wpt_wpack(),
                 TINY_HF, TINY_HF, d);
    CHECK_EQ_INT(rc, 2);
    cJSON *j = cJSON_Parse(out);
    REQUIRE(j);
    CHECK(cJSON_IsFalse(cJSON_GetObjectItem(j, "ok")));
    CHECK_CONTAINS(cJSON_GetObjectItem(j, "error")->valuestring, "none.txt");
    cJSON_Delete(j);
    rc = wpt_run(out, sizeof out, "%s parity %s --against %s --prompts %s --gate maybe", wpt_wpack(), TINY_HF, TINY_HF,
                 bad);
    CHECK_EQ_INT(rc, 2);
    CHECK_CONTAINS(out, "not one of: auto exact lossy");
}

/* ---- wpack golden ---------------------------------------------------------------------------- */

/* The written golden has exactly the fixture golden's fields: names, dtypes, shapes. */
static void check_schema(const char *path)
{
    wp_err e = {0};
    wp_st_file *a, *b;
    REQUIRE(wp_st_open(&a, path, &e) == 0);
    REQUIRE(wp_st_open(&b, GOLDEN, &e) == 0);
    CHECK_EQ_INT(wp_st_count(a), wp_st_count(b));
    for (size_t i = 0; i < wp_st_count(b); i++) {
        const wp_tensor_info *tb = wp_st_tensor(b, i), *ta = wp_st_find(a, tb->name);
        CHECKF(ta != NULL, "%s: no %s", path, tb->name);
        if (!ta) continue;
        CHECK(ta->dtype == tb->dtype && ta->ndim == tb->ndim);
        for (int k = 0; k < tb->ndim && k < ta->ndim; k++)
            CHECKF(ta->shape[k] == tb->shape[k], "%s dim %d", tb->name, k);
    }
    wp_st_close(a);
    wp_st_close(b);
}

/* A golden of the reference build, then parity --golden of every lossless
 * profile against it (the fixture's gates) and of the NVFP4 build (fails);
 * a reduced golden (top-k, no states) is read the same way. */
TEST(verify_golden_of_reference_build)
{
    const char *ref = convert("reference", NULL), *pf = prompts_file(253);
    REQUIRE(ref && pf);
    const char *g = wpt_path("%s/g.safetensors", wpt_tmpdir()), *gk = wpt_path("%s/gk.safetensors", wpt_tmpdir());
    static char out[65536];
    int rc = wpt_run(out, sizeof out, "%s golden %s --prompts %s -o %s --threads 2", wpt_wpack(), ref, pf, g);
    CHECKF(rc == 0, "exit %d: %s", rc, out);
    check_schema(g);
    rc = wpt_run(out, sizeof out, "%s golden %s --prompts %s -o %s --topk 8 --no-states --positions 2 --json", wpt_wpack(),
                 ref, pf, gk);
    CHECKF(rc == 0, "exit %d: %s", rc, out);
    cJSON *j = cJSON_Parse(out);
    REQUIRE(j);
    /* tokens and mtp_input_ids (2 x 253 ids each) are most of it */
    CHECKF(num(j, "bytes") < 8192, "reduced golden of %g bytes", num(j, "bytes"));
    cJSON_Delete(j);
    /* existing output: refused, one line naming the remedy */
    rc = wpt_run(out, sizeof out, "%s golden %s --prompts %s -o %s 2>&1", wpt_wpack(), ref, pf, g);
    CHECK_EQ_INT(rc, 2);
    CHECK_CONTAINS(out, "already exists");
    const char *profiles[] = {"reference", "hopper", "blackwell", "bf16", "blackwell-nvfp4"};
    for (int i = 0; i < 5; i++) {
        const char *b = i ? convert(profiles[i], NULL) : ref;
        if (!b) continue;
        int jrc;
        j = parity_json(&jrc, "%s --golden %s", b, g);
        REQUIRE(j);
        cJSON *gd = cJSON_GetObjectItem(j, "golden");
        CHECKF(jrc == (i < 4 ? 0 : 1), "%s against the reference build's golden: exit %d", profiles[i], jrc);
        CHECK_EQ_INT(cJSON_GetArraySize(cJSON_GetObjectItem(gd, "layers")), 4);
        CHECK_EQ_INT(num(gd, "decode.rows"), 12);
        if (i < 4) /* the build the golden was taken from, and the lossless ones: the same bits */
            CHECK(num(gd, "prefill.rel_rms_max") == 0 && num(gd, "decode.rel_rms_max") == 0 &&
                  num(gd, "mtp.rel_rms_max") == 0);
        cJSON_Delete(j);
        j = parity_json(&jrc, "%s --golden %s", b, gk);
        REQUIRE(j);
        gd = cJSON_GetObjectItem(j, "golden");
        CHECKF(jrc == (i < 4 ? 0 : 1), "%s against the reduced golden: exit %d", profiles[i], jrc);
        CHECK_EQ_INT(num(gd, "topk"), 8);
        CHECK_EQ_INT(num(gd, "prefill.rows"), 2);
        CHECK_EQ_INT(num(gd, "decode.rows"), 4);
        CHECK_EQ_INT(cJSON_GetArraySize(cJSON_GetObjectItem(gd, "layers")), 0);
        if (i < 4) CHECK(num(gd, "prefill.kl_max") < 1e-9 && num(gd, "decode.cosine_min") == 1);
        cJSON_Delete(j);
    }
}

static void *read_field(const char *path, const char *name)
{
    wp_err e = {0};
    wp_st_file *f;
    if (wp_st_open(&f, path, &e)) return NULL;
    const wp_tensor_info *t = wp_st_find(f, name);
    void *buf = t ? malloc(t->nbytes) : NULL;
    if (buf && wp_st_read(f, t, 0, buf, t->nbytes, &e)) {
        free(buf);
        buf = NULL;
    }
    wp_st_close(f);
    return buf;
}

/* A golden written from the HF fixture checkpoint on the fixture's prompts
 * agrees with the official golden within the fixture README's tolerances. */
TEST(verify_golden_round_trip_fixture)
{
    const char *pf = prompts_file(253), *g = wpt_path("%s/hf.safetensors", wpt_tmpdir());
    REQUIRE(pf);
    static char out[65536];
    int rc = wpt_run(out, sizeof out, "%s golden %s --prompts %s -o %s --threads 2 -q", wpt_wpack(), TINY_HF, pf, g);
    REQUIRE(rc == 0);
    check_schema(g);
    int32_t *ta = read_field(g, "tokens"), *tb = read_field(GOLDEN, "tokens");
    int32_t *da = read_field(g, "decode_tokens"), *db = read_field(GOLDEN, "decode_tokens");
    int32_t *ma = read_field(g, "mtp_input_ids"), *mb = read_field(GOLDEN, "mtp_input_ids");
    float *pa = read_field(g, "prefill_logits"), *pb = read_field(GOLDEN, "prefill_logits");
    float *la = read_field(g, "layer_h"), *lb = read_field(GOLDEN, "layer_h");
    float *xa = read_field(g, "mtp_logits"), *xb = read_field(GOLDEN, "mtp_logits");
    REQUIRE(ta && tb && da && db && ma && mb && pa && pb && la && lb && xa && xb);
    CHECK(memcmp(ta, tb, sizeof(int32_t) * 2 * 253) == 0);
    CHECK(memcmp(ma, mb, sizeof(int32_t) * 2 * 253) == 0);   /* the greedy next token included */
    for (int b = 0; b < 2; b++) {
        /* the first two greedy choices are clear in the official golden (margins >= 0.11) */
        CHECK(da[b * 6] == db[b * 6] && da[b * 6 + 1] == db[b * 6 + 1]);
        CHECKF(wp_cosine(pa + b * 512, pb + b * 512, 512) >= 0.99, "prefill %d", b);
        CHECKF(wp_cosine(xa + b * 512, xb + b * 512, 512) >= 0.99, "mtp %d", b);
    }
    /* layer 0's output end to end is one layer from the same input: the
     * teacher-forced tolerance applies */
    double errs[2 * 253];
    for (int i = 0; i < 2 * 253; i++) errs[i] = wp_rel_err(la + (size_t)i * 1024, lb + (size_t)i * 1024, 1024);
    CHECK(wp_quantile(errs, 2 * 253, 0.5) <= 1e-5);
    free(ta), free(tb), free(da), free(db), free(ma), free(mb), free(pa), free(pb), free(la), free(lb), free(xa), free(xb);
    /* unequal prompt lengths cannot be one [B, S] golden */
    const char *uneq = wpt_path("%s/uneq.txt", wpt_tmpdir());
    write_text(uneq, "1 2 3\n4 5\n");
    rc = wpt_run(out, sizeof out, "%s golden %s --prompts %s -o %s/u.safetensors 2>&1", wpt_wpack(), TINY_HF, uneq,
                 wpt_tmpdir());
    CHECK_EQ_INT(rc, 2);
    CHECK_CONTAINS(out, "same length");
    CHECK(wpt_run(NULL, 0, "test -e %s/u.safetensors", wpt_tmpdir()) != 0);
}
