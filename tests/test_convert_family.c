/* test_convert_family.c — the family rules (docs/profiles.md): which
 * encodings each kind of tensor may take, checked when the plan is made, for
 * profile rules and --tensor-type alike, so no build the runtime would refuse
 * is ever written. */
#include <sys/stat.h>

#include "convert/convert.h"
#include "tests/cv_util.h"
#include "tests/harness.h"

#define TINY WPT_TINY "/hf"

TEST(convert_family_rule_table)
{
    static const struct { const char *name; wp_enc enc; int ok; } c[] = {
        {"hc_head_fn", WP_ENC_MXFP4, 0},
        {"hc_head_fn", WP_ENC_BF16, 1},
        {"layers.0.hc_attn_fn", WP_ENC_FP8, 0},
        {"layers.3.hc_ffn_base", WP_ENC_F32, 1},
        {"mtp.0.hc_head_scale", WP_ENC_NVFP4, 0},
        {"layers.0.attn_norm.weight", WP_ENC_FP8, 0},
        {"layers.0.attn.q_norm.weight", WP_ENC_F16, 1},
        {"mtp.0.enorm.weight", WP_ENC_MXFP4, 0},
        {"norm.weight", WP_ENC_MXFP4, 0},
        {"layers.1.attn.compressor.norm.weight", WP_ENC_FP8, 0},
        {"layers.1.attn.indexer.compressor.ape", WP_ENC_FP8, 0},
        {"layers.1.attn.compressor.ape", WP_ENC_BF16, 1},
        {"layers.2.attn.attn_sink", WP_ENC_FP8, 0},
        {"layers.2.ffn.gate.bias", WP_ENC_NVFP4, 0},
        {"layers.0.ffn.gate.tid2eid", WP_ENC_BF16, 0},
        /* linear weights: anything */
        {"layers.2.ffn.gate.weight", WP_ENC_FP8, 1},
        {"layers.1.attn.compressor.wkv.weight", WP_ENC_MXFP4, 1},
        {"layers.1.ffn.experts.w13.weight", WP_ENC_NVFP4, 1},
        {"embed.weight", WP_ENC_FP8, 1},
        {"mtp.0.e_proj.weight", WP_ENC_BF16, 1},
        {"layers.0.attn.wo_a.weight", WP_ENC_MXFP4, 1},
    };
    for (size_t i = 0; i < sizeof c / sizeof c[0]; i++) {
        const char *why = wp_family_rule(c[i].name, c[i].enc);
        CHECKF((why == NULL) == c[i].ok, "%s as %s: %s", c[i].name, wp_enc_name(c[i].enc), why ? why : "allowed");
    }
    CHECK(!strcmp(wp_family_rule("layers.0.hc_attn_fn", WP_ENC_MXFP4), "HC parameters"));
    CHECK(!strcmp(wp_family_rule("layers.0.ffn.gate.tid2eid", WP_ENC_F32), "hash routing tables"));
}

/* The example: refused by plan and by convert, one line naming the
 * tensor and the rule, exit 2, nothing written. */
TEST(convert_family_override_refused)
{
    static char out[8192];
    int rc = wpt_run(out, sizeof out, "%s plan %s --tensor-type 'hc_.*fn$=mxfp4'", wpt_wpack(), TINY);
    CHECK_EQ_INT(rc, 2);
    CHECK_CONTAINS(out, "hc_");
    CHECK_CONTAINS(out, "_fn: HC parameters take only bf16, f16 or f32");
    CHECK_CONTAINS(out, "not mxfp4");
    CHECK_CONTAINS(out, "'hc_.*fn$=mxfp4'");
    CHECK_CONTAINS(out, "(see --tensor-type)");
    int lines = 0;
    for (const char *p = out; *p; p++) lines += *p == '\n';
    CHECK_EQ_INT(lines, 1);
    const char *b = wpt_path("%s/b", wpt_tmpdir());
    rc = wpt_run(out, sizeof out, "%s convert %s -o %s --profile hopper --tensor-type 'compressor\\.ape$=fp8'",
                 wpt_wpack(), TINY, b);
    CHECK_EQ_INT(rc, 2);
    CHECK_CONTAINS(out, "compressor.ape: compressor position biases take only");
    struct stat st;
    CHECK(stat(b, &st) != 0);
    rc = wpt_run(out, sizeof out, "ls -a %s", wpt_tmpdir());
    CHECK(strstr(out, ".b.tmp") == NULL);   /* no temp dir left either */
    /* norms, sinks, router biases */
    rc = wpt_run(out, sizeof out, "%s plan %s --tensor-type 'gate\\.bias$=nvfp4'", wpt_wpack(), TINY);
    CHECK_EQ_INT(rc, 0);   /* 1-D: block encodings skip vectors, as before */
    rc = wpt_run(out, sizeof out, "%s plan %s --json --tensor-type 'attn_sink$=f16'", wpt_wpack(), TINY);
    CHECK_EQ_INT(rc, 0);   /* a plain encoding is fine */
}

/* Broad rules skip what their encoding is not for: `.=mxfp4` re-encodes the
 * linear weights, leaves HC and ape parameters as they are — and the build
 * runs. */
TEST(convert_family_broad_rule_skips)
{
    const char *t[] = {".=mxfp4"};
    wp_ckpt *k;
    wp_plan *p;
    wp_err e = {0};
    REQUIRE(cvt_plan(TINY, "reference", t, 1, NULL, &k, &p, &e) == 0);
    size_t params = 0, linears = 0;
    for (size_t i = 0; i < p->n_weights; i++) {
        const wp_plan_weight *w = &p->weights[i];
        if (w->src == WP_SRC_RAW) continue;
        if (wp_family_rule(w->name, WP_ENC_MXFP4)) {
            CHECKF(w->passthrough, "%s re-encoded as %s", w->name, wp_enc_name(w->enc));
            params++;
        } else if (w->src != WP_SRC_MXFP4 && w->rows > 1) {
            CHECKF(w->enc == WP_ENC_MXFP4, "%s is %s", w->name, wp_enc_name(w->enc));
            linears++;
        }
    }
    CHECK(params > 20 && linears > 20);
    cvt_free(k, p);
    static char out[8192];
    const char *b = wpt_path("%s/b", wpt_tmpdir());
    REQUIRE(wpt_run(out, sizeof out, "%s convert %s -o %s --tensor-type '.=mxfp4' --allow-sensitive", wpt_wpack(), TINY, b) == 0);
    int rc = wpt_run(out, sizeof out, "%s run %s --tokens 1,2,3 --max-new 1", wpt_wpack(), b);
    CHECKF(rc == 0, "run exit %d: %s", rc, out);
}

/* A profile's own rule is held to the same table; the message names the
 * profile and the rule, and no option. */
TEST(convert_family_profile_rule_refused)
{
    const char *json = "{\"name\": \"bad\", \"rules\": [{\"match\": \"hc_\", \"to\": \"fp8\"}]}\n";
    const char *path = wpt_path("%s/bad.json", wpt_tmpdir());
    REQUIRE(wpt_write_file(path, json, strlen(json)) == 0);
    wp_ckpt *k = NULL;
    wp_plan *p = NULL;
    wp_err e = {0};
    CHECK_EQ_INT(cvt_plan(TINY, path, NULL, 0, NULL, &k, &p, &e), WP_EINVAL);
    CHECK(p == NULL);
    CHECK_CONTAINS(e.msg, "HC parameters take only bf16, f16 or f32");
    CHECK_CONTAINS(e.msg, "rule 0 ('hc_') of profile bad");
    CHECK_EQ_INT(e.setting[0], 0);
    wp_ckpt_close(k);
}
