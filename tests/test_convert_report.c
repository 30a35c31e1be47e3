/*
 * test_quant_report.c — the quantisation-error report: exact methods report
 * zero error, lossy statistics recomputed independently from the source and
 * the output, thresholds calibrated against the formats and gating `wpack
 * quant`'s exit code, indexer-path flags, and convert --report = quant.
 */
#include <cjson/cJSON.h>
#include <math.h>

#include "tests/cv_util.h"

#define TINY WPT_TINY "/hf"

static char out[1 << 20];

static const wp_qrecord *rec(const wp_report *r, const char *name)
{
    for (size_t i = 0; i < r->n; i++)
        if (!strcmp(r->plan->weights[r->rec[i].weight].name, name)) return &r->rec[i];
    CHECKF(0, "%s: no report record", name);
    return NULL;
}

static int run_report(const char *profile, const char *const *types, int nt, wp_ckpt **k, wp_plan **p, wp_report *r)
{
    wp_err e = {0};
    int rc = cvt_plan(TINY, profile, types, nt, NULL, k, p, &e);
    if (!rc) rc = wp_report_init(r, *p, &e);
    wp_convert_opts o = {.threads = 2, .report = r};
    if (!rc) rc = wp_convert_run(*p, NULL, &o, NULL, &e);
    CHECKF(rc == 0, "%s: %s", profile, e.msg);
    if (!rc) wp_report_check(r);
    return rc;
}

/* hopper on tiny-a: 44 FP8 scale widenings and 15 §3.7 casts, all exact */
TEST(convert_quant_exact_methods)
{
    wp_ckpt *k;
    wp_plan *p;
    wp_report r;
    REQUIRE(run_report("hopper", NULL, 0, &k, &p, &r) == 0);
    CHECK_EQ_INT(r.n, 59);
    CHECK_EQ_INT(r.n_over, 0);
    for (size_t i = 0; i < r.n; i++) {
        const wp_qrecord *q = &r.rec[i];
        const wp_plan_weight *w = &p->weights[q->weight];
        CHECK(w->method == WP_M_EXACT || w->method == WP_M_CAST37);
        CHECKF(q->err.n == (uint64_t)w->n_slices * w->rows * w->cols, "%s: %llu elements", w->name,
               (unsigned long long)q->err.n);
        CHECK(q->err.sum_sq_err == 0 && q->err.max_abs_err == 0 && q->n_inexact == 0 && q->err.n_saturated == 0);
        CHECK_NEAR(wp_qerr_cosine(&q->err), 1.0, 1e-12);
    }
    const wp_qrecord *q = rec(&r, "layers.1.ffn.experts.w1.weight");
    if (q) CHECK_EQ_INT(q->err.n, 8 * 128 * 256);
    wp_report_free(&r);
    cvt_free(k, p);
}

/* The statistics of a lossy record, recomputed here from the source and a
 * quantisation done in the test: BF16 compressor wkv -> FP8 E8M0 128x128,
 * and MXFP4 experts -> NVFP4 (with its saturated elements counted from the
 * stored scales, spec: |x| > 6 x group scale). */
TEST(convert_quant_stats_recomputed)
{
    const char *t[] = {"attn\\.compressor\\.wkv\\.weight$=fp8"};
    wp_ckpt *k;
    wp_plan *p;
    wp_report r;
    REQUIRE(run_report("blackwell-nvfp4", t, 1, &k, &p, &r) == 0);
    /* FP8 */
    const char *name = "layers.1.attn.compressor.wkv.weight";
    const wp_qrecord *q = rec(&r, name);
    REQUIRE(q);
    const wp_plan_weight *w = &p->weights[q->weight];
    REQUIRE(w->rows == 256 && w->cols == 256);   /* [2 x head_dim, dim] on a CSA layer */
    float *ref = cvt_src_values(k, w, &w->srcs[0]), *o = malloc(256 * 256 * 4);
    uint8_t *qq = malloc(256 * 256), sc[4];
    REQUIRE(ref && o && qq);
    wp_fp8_block_quant(ref, 256, 256, 128, 128, WP_SCALE_E8M0, qq, sc);
    wp_fp8_block_dequant(qq, sc, 256, 256, 128, 128, WP_SCALE_E8M0, o);
    double se = 0, sr = 0, so = 0, dot = 0, mx = 0;
    for (int i = 0; i < 256 * 256; i++) {
        double d = (double)o[i] - ref[i];
        se += d * d, sr += (double)ref[i] * ref[i], so += (double)o[i] * o[i], dot += (double)ref[i] * o[i];
        mx = fmax(mx, fabs(d));
    }
    CHECK_NEAR(wp_qerr_nmse(&q->err), se / sr, 1e-9 * se / sr);
    CHECK_NEAR(wp_qerr_rmse(&q->err), sqrt(se / 65536), 1e-9 * sqrt(se / 65536));
    CHECK_NEAR(wp_qerr_cosine(&q->err), dot / sqrt(sr * so), 1e-12);
    CHECK(q->err.max_abs_err == mx);
    CHECK(se > 0 && q->err.n_saturated == 0);   /* pow2ceil scales never clamp (spec §3.6) */
    CHECK(p->weights[q->weight].method == WP_M_QUANT && !q->over);
    free(ref), free(o), free(qq);

    /* NVFP4: saturation from the written scales */
    name = "layers.2.ffn.experts.w2.weight";
    q = rec(&r, name);
    REQUIRE(q);
    w = &p->weights[q->weight];
    const char *b = wpt_path("%s/nv", wpt_tmpdir());
    char bdir[4096];
    snprintf(bdir, sizeof bdir, "%s", b);
    wp_err e = {0};
    REQUIRE(cvt_convert(p, bdir, NULL, 2, 0, &e) == 0);
    wpk_file *f = cvt_open_wpk(bdir, "model.wpk");
    REQUIRE(f);
    uint64_t sat = 0, n = 0;
    double sse = 0, ssr = 0;
    for (int ex = 0; ex < 8; ex++) {
        float *sr2 = cvt_src_values(k, w, &w->srcs[ex]), *scale = NULL;
        float *ov = cvt_out_values(f, name, (uint64_t)ex, 0, w->rows, w->cols, &scale);
        REQUIRE(sr2 && ov && scale);
        for (uint64_t i = 0; i < w->rows * w->cols; i++) {
            sat += fabsf(sr2[i]) > 6.0f * scale[i];
            double d = (double)ov[i] - sr2[i];
            sse += d * d, ssr += (double)sr2[i] * sr2[i];
            n++;
        }
        free(sr2), free(ov), free(scale);
    }
    wpk_close(f);
    CHECK_EQ_INT(q->err.n, n);
    CHECK_EQ_INT(q->err.n_saturated, sat);
    CHECK(sat > 0);   /* E4M3 group scales round down about half the time */
    CHECK_NEAR(wp_qerr_nmse(&q->err), sse / ssr, 1e-9 * sse / ssr);
    wp_report_free(&r);
    cvt_free(k, p);
}

static double lcg_gauss(uint64_t *s)
{
    double u[2];
    for (int i = 0; i < 2; i++) {
        *s = *s * 6364136223846793005ull + 1442695040888963407ull;
        u[i] = ((double)(*s >> 11) + 1) / 9007199254740993.0;
    }
    return sqrt(-2 * log(u[0])) * cos(6.283185307179586 * u[1]);
}

/* The default thresholds sit above what each format costs on Gaussian
 * weights (they must pass) and within 10x of it (so a real regression, say a
 * scale off by one binade, fails): docs/profiles.md "Thresholds". */
TEST(convert_quant_thresholds_calibrated)
{
    enum { R = 256, C = 1024, N = R * C };
    float *w = malloc(N * 4), *o = malloc(N * 4);
    uint8_t *q = malloc(N), *sc = malloc(N * 4);
    REQUIRE(w && o && q && sc);
    uint64_t s = 42;
    for (int i = 0; i < N; i++) w[i] = (float)(0.02 * lcg_gauss(&s));
    for (int enc = 0; enc < WP_ENC_COUNT; enc++) {
        switch (enc) {
        case WP_ENC_FP8:
            wp_fp8_block_quant(w, R, C, 128, 128, WP_SCALE_E8M0, q, sc);
            wp_fp8_block_dequant(q, sc, R, C, 128, 128, WP_SCALE_E8M0, o);
            break;
        case WP_ENC_MXFP4:
            wp_mxfp4_quant(w, R, C, q, sc);
            wp_mxfp4_dequant(q, sc, R, C, o);
            break;
        case WP_ENC_NVFP4: {
            float g = wp_nvfp4_global_scale(w, N);
            wp_nvfp4_quant(w, R, C, g, q, sc);
            wp_nvfp4_dequant(q, sc, g, R, C, o);
            break;
        }
        case WP_ENC_BF16:
            for (int i = 0; i < N; i++) o[i] = wp_bf16_round(w[i]);
            break;
        case WP_ENC_F16:
            for (int i = 0; i < N; i++) o[i] = wp_f16_to_f32(wp_f32_to_f16(w[i]));
            break;
        default:
            continue;
        }
        wp_qerr e;
        memset(&e, 0, sizeof e);
        wp_qerr_add(&e, w, o, N, 0);
        double nmse = wp_qerr_nmse(&e), lim = wp_report_default_nmse_max((wp_enc)enc);
        CHECKF(nmse <= lim && nmse >= lim / 10, "%s: Gaussian NMSE %g vs threshold %g", wp_enc_name((wp_enc)enc), nmse, lim);
    }
    CHECK(wp_report_default_nmse_max(WP_ENC_F32) == 0);
    free(w), free(o), free(q), free(sc);
}

/* `wpack quant` exit codes: 0 within thresholds, 1 over; the table and the
 * JSON file say which; no build is written. */
TEST(convert_quant_cli_gate)
{
    const char *t = wpt_tmpdir();
    CHECK_EQ_INT(wpt_run(out, sizeof out, "%s quant %s --profile reference", wpt_wpack(), TINY), 0);
    CHECK_CONTAINS(out, "no tensor is re-encoded");
    CHECK_EQ_INT(wpt_run(out, sizeof out, "%s quant %s --profile blackwell-nvfp4 --top 3", wpt_wpack(), TINY), 0);
    CHECK_CONTAINS(out, "mxfp4>nvfp4");
    CHECK_CONTAINS(out, "... 17 more");
    CHECK_CONTAINS(out, "20 re-encoded tensor(s), 0 over threshold");
    const char *prof = "{\"name\": \"strict\", \"thresholds\": {\"nvfp4\": 1e-6},"
                       " \"rules\": [{\"match\": \"ffn[.]experts[.]\", \"to\": \"nvfp4\", \"lossy\": true}]}";
    REQUIRE(wpt_write_file(wpt_path("%s/strict.json", t), prof, strlen(prof)) == 0);
    CHECK_EQ_INT(wpt_run(out, sizeof out, "%s quant %s --profile %s/strict.json --report %s/r.json", wpt_wpack(), TINY,
                         t, t),
                 1);
    CHECK_CONTAINS(out, "OVER");
    CHECK_CONTAINS(out, "15 over threshold");
    uint8_t *d;
    size_t n;
    REQUIRE(wpt_read_file(wpt_path("%s/r.json", t), &d, &n) == 0);
    cJSON *j = cJSON_ParseWithLength((const char *)d, n);
    free(d);
    REQUIRE(j);
    const cJSON *sum = cJSON_GetObjectItem(j, "summary");
    CHECK(cJSON_GetObjectItem(sum, "over_threshold")->valuedouble == 15);
    CHECK(cJSON_IsFalse(cJSON_GetObjectItem(sum, "pass")));
    const cJSON *first = cJSON_GetArrayItem(cJSON_GetObjectItem(j, "tensors"), 0);
    static const char *keys[] = {"name", "family", "indexer_path", "from", "to", "method", "rmse", "nmse",
                                 "max_abs_err", "cosine", "saturated_fraction", "inexact_elements", "threshold", "pass"};
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++)
        CHECKF(cJSON_GetObjectItem(first, keys[i]) != NULL, "report record lacks \"%s\"", keys[i]);
    cJSON_Delete(j);
    /* `quant` writes nothing but its report */
    wpt_run(out, sizeof out, "ls -A %s", t);
    CHECK(!strcmp(out, "r.json\nstrict.json\n"));
    /* usage and unreadable input are exit 2 */
    CHECK_EQ_INT(wpt_run(out, sizeof out, "%s quant %s/none", wpt_wpack(), t), 2);
    CHECK_EQ_INT(wpt_run(out, sizeof out, "%s quant %s -o x", wpt_wpack(), TINY), 2);
}

/* Indexer-path tensors are flagged in the report and the table. */
TEST(convert_quant_indexer_flag)
{
    CHECK_EQ_INT(wpt_run(out, sizeof out,
                         "%s quant %s --profile hopper --tensor-type 'indexer\\.(wq_b|weights_proj|compressor\\.wkv)\\.weight$=mxfp4' --allow-sensitive --json",
                         wpt_wpack(), TINY),
                 0);
    cJSON *j = cJSON_Parse(out);
    REQUIRE(j);
    int flagged = 0, unflagged = 0;
    for (const cJSON *t = cJSON_GetObjectItem(j, "tensors")->child; t; t = t->next) {
        const char *n = cJSON_GetObjectItem(t, "name")->valuestring;
        int f = cJSON_IsTrue(cJSON_GetObjectItem(t, "indexer_path"));
        CHECKF(f == (strstr(n, ".attn.indexer.") != NULL), "%s: indexer_path %d", n, f);
        flagged += f;
        unflagged += !f;
    }
    CHECK_EQ_INT(flagged, 6);   /* 3 tensors x 2 CSA layers */
    CHECK_EQ_INT(unflagged, 59 - 2);   /* hopper's 59, the 2 indexer wq_b now flagged */
    CHECK(cJSON_GetObjectItem(cJSON_GetObjectItem(j, "summary"), "indexer_path")->valuedouble == 6);
    cJSON_Delete(j);
    CHECK_EQ_INT(wpt_run(out, sizeof out, "%s quant %s --profile hopper --tensor-type 'indexer\\.wq_b=mxfp4' --allow-sensitive --top 2",
                         wpt_wpack(), TINY),
                 0);
    CHECK_CONTAINS(out, "[indexer]");
}

/* convert --report writes what quant reports (same records, same numbers). */
TEST(convert_quant_convert_report_same)
{
    const char *t = wpt_tmpdir();
    REQUIRE(wpt_run(out, sizeof out, "%s quant %s --profile blackwell-nvfp4 --report %s/q.json", wpt_wpack(), TINY, t) == 0);
    REQUIRE(wpt_run(out, sizeof out, "%s convert %s -o %s/b --profile blackwell-nvfp4 --report %s/c.json", wpt_wpack(),
                    TINY, t, t) == 0);
    CHECK_CONTAINS(out, "20 re-encoded tensor(s)");
    CHECK_EQ_INT(wpt_run(out, sizeof out, "cmp %s/q.json %s/c.json", t, t), 0);
}

/* A memory budget that leaves the workers nothing is refused before any
 * work, in neutral words, naming the setting (the CLI turns it into the flag). */
TEST(convert_quant_budget_refused)
{
    wp_ckpt *k;
    wp_plan *p;
    wp_report r;
    wp_err e = {0};
    REQUIRE(cvt_plan(TINY, "bf16", NULL, 0, NULL, &k, &p, &e) == 0);
    REQUIRE(wp_report_init(&r, p, &e) == 0);
    wp_convert_opts o = {.threads = 2, .mem_budget = 1u << 20, .report = &r};
    CHECK_EQ_INT(wp_convert_run(p, NULL, &o, NULL, &e), WP_EUSAGE);
    CHECK_CONTAINS(e.msg, "a memory budget of 1048576 bytes leaves nothing for 2 worker(s)");
    CHECK(strstr(e.msg, "--") == NULL);
    CHECK(!strcmp(e.setting, "mem-budget"));
    wp_report_free(&r);
    cvt_free(k, p);
}

/* wp_report_write_json: the report document, formatted, newline-terminated,
 * at the path; an unwritable path is refused with the path named. */
TEST(convert_quant_report_write_json)
{
    wp_ckpt *k;
    wp_plan *p;
    wp_report r;
    REQUIRE(run_report("blackwell-nvfp4", NULL, 0, &k, &p, &r) == 0);
    const char *path = wpt_path("%s/r.json", wpt_tmpdir());
    wp_err e = {0};
    CHECKF(wp_report_write_json(&r, path, 0, &e) == 0, "%s", e.msg);
    size_t n;
    uint8_t *got = cvt_slurp(path, &n);
    REQUIRE(got);
    cJSON *j = wp_report_to_json(&r);
    char *want = cJSON_Print(j);
    REQUIRE(want);
    CHECK_EQ_INT(n, strlen(want) + 1);
    CHECK(n == strlen(want) + 1 && !memcmp(got, want, n - 1) && got[n - 1] == '\n');
    cJSON *summary = cJSON_GetObjectItem(j, "summary");
    CHECK_EQ_INT(cJSON_GetObjectItem(summary, "tensors")->valueint, (int)r.n);
    CHECK(r.n > 0);
    free(want);
    cJSON_Delete(j);
    free(got);
    const char *bad = wpt_path("%s/no-such-dir/r.json", wpt_tmpdir());
    CHECK(wp_report_write_json(&r, bad, 0, &e) != 0);
    CHECK_CONTAINS(e.msg, "no-such-dir");
    wp_report_free(&r);
    cvt_free(k, p);
}

/* --indexer-recall: the end-to-end check of the indexer path through the
 * runtime.  Exact re-encodes keep every choice (recall 1); re-quantising
 * the indexer weights to MXFP4 passes the NMSE gate but loses top-k entries,
 * which is what this check is for. */
TEST(convert_quant_indexer_recall)
{
    CHECK_EQ_INT(wpt_run(out, sizeof out, "TMPDIR=%s %s quant %s --profile bf16 --indexer-recall --json", wpt_tmpdir(), wpt_wpack(), TINY), 0);
    cJSON *j = cJSON_Parse(out);
    REQUIRE(j);
    const cJSON *ra = cJSON_GetObjectItem(j, "indexer_recall");
    REQUIRE(ra);
    const cJSON *ls = cJSON_GetObjectItem(ra, "layers");
    CHECK_EQ_INT(cJSON_GetArraySize(ls), 2);   /* the CSA layers 1 and 3 */
    for (const cJSON *l = ls ? ls->child : NULL; l; l = l->next) {
        CHECK(cJSON_GetObjectItem(l, "mean")->valuedouble == 1.0);
        CHECK(cJSON_GetObjectItem(l, "queries")->valuedouble > 100);
    }
    cJSON_Delete(j);
    int rc = wpt_run(out, sizeof out,
                     "TMPDIR=%s %s quant %s --profile hopper --tensor-type 'indexer\\.(wq_b|weights_proj)\\.weight$=mxfp4' "
                     "--allow-sensitive --indexer-recall",
                     wpt_tmpdir(), wpt_wpack(), TINY);
    CHECK_EQ_INT(rc, 1);
    CHECK_CONTAINS(out, "0 over threshold");        /* the weights pass their NMSE gate ... */
    CHECK_CONTAINS(out, "indexer layer 1: top-k recall");
    CHECK_CONTAINS(out, "FAIL");                    /* ... the selections do not */
    CHECK_EQ_INT(wpt_run(out, sizeof out,
                         "TMPDIR=%s %s quant %s --profile hopper --tensor-type 'indexer\\.wq_b\\.weight$=mxfp4' "
                         "--allow-sensitive --indexer-recall --recall-min 0.5",
                         wpt_tmpdir(), wpt_wpack(), TINY),
                 0);
    /* the temporary build is gone */
    CHECK_EQ_INT(wpt_run(out, sizeof out, "ls -A %s", wpt_tmpdir()), 0);
    CHECK(!strcmp(out, ""));
}
