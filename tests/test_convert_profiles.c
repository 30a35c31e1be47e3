/*
 * test_profiles.c — build profiles as data: the built-ins parse to what
 * docs/profiles.md says, parsing is strict, --tensor-type grammar, rule
 * resolution (last match wins, "from" filters, block targets on matrices
 * only), and profiles loaded from a file.
 */
#include "tests/cv_util.h"

#define TINY WPT_TINY "/hf"

static int load_text(wp_profile *p, const char *json, wp_err *e)
{
    return wp_profile_parse(p, json, strlen(json), "test.json", e);
}

TEST(convert_profiles_builtin)
{
    const char *const *names = wp_profile_builtins();
    const char *want[] = {"bf16", "blackwell-nvfp4", "blackwell", "hopper", "reference"};
    size_t n = 0;
    while (names[n]) n++;
    CHECK_EQ_INT(n, 5);
    for (int i = 0; i < 5; i++) {
        wp_profile p;
        wp_err e = {0};
        int found = 0;
        for (size_t j = 0; j < n; j++) found |= !strcmp(names[j], want[i]);
        CHECKF(found, "built-in %s missing", want[i]);
        CHECKF(wp_profile_load(&p, want[i], &e) == 0, "%s: %s", want[i], e.msg);
        CHECK(!strcmp(p.name, want[i]) && p.align == 4096 && p.stack_experts && !p.fuse_w13);
        CHECK(p.description[0] != 0);
        CHECK_NEAR(p.nmse_max[WP_ENC_FP8], 2.5e-3, 0);
        wp_profile_free(&p);
    }
    wp_profile p;
    wp_err e = {0};
    REQUIRE(wp_profile_load(&p, "hopper", &e) == 0);
    REQUIRE(p.n_rules == 2);
    const wp_rule *r = &p.rules[0];
    /* the source's blocks (issue 11: a 32x32 checkpoint stays 32x32), F32 scales */
    CHECK(!r->passthrough && r->enc == WP_ENC_FP8 && r->br == WP_BLOCK_SOURCE && r->bc == WP_BLOCK_SOURCE &&
          r->sfmt == WP_SCALE_F32 && !r->lossy);
    CHECK(r->from == ((1u << WP_SRC_FP8) | (1u << WP_SRC_MXFP4)));
    CHECK(p.rules[1].enc == WP_ENC_BF16 && !strcmp(p.rules[1].pattern, "\\.attn\\.wo_a\\.weight$"));
    wp_profile_free(&p);
    REQUIRE(wp_profile_load(&p, "reference", &e) == 0);
    CHECK_EQ_INT(p.n_rules, 0);
    wp_profile_free(&p);
}

static void parse_fails(const char *json, const char *needle)
{
    wp_profile p;
    wp_err e = {0};
    int rc = load_text(&p, json, &e);
    CHECKF(rc == WP_EINVAL, "%s: parsed (rc %d), expected an error", json, rc);
    CHECK_CONTAINS(e.msg, needle);
    CHECK(strchr(e.msg, '\n') == NULL);
    if (!rc) wp_profile_free(&p);
}

TEST(convert_profiles_strict)
{
    parse_fails("{\"name\":\"x\",\"rulez\":[]}", "test.json: unknown key \"rulez\"");
    parse_fails("{\"name\":\"x\",\"rules\":[{\"match\":\".\",\"to\":\"fp9\"}]}",
                "test.json: rules[0]: unknown encoding \"fp9\"");
    parse_fails("{\"name\":\"x\",\"rules\":[{\"match\":\"(\",\"to\":\"bf16\"}]}",
                "test.json: rules[0]: bad regular expression '('");
    parse_fails("{\"name\":\"x\",\"rules\":[{\"match\":\".\",\"from\":[\"int8\"],\"to\":\"bf16\"}]}",
                "rules[0]: \"from\": unknown source kind \"int8\"");
    parse_fails("{\"name\":\"x\",\"rules\":[{\"match\":\".\",\"to\":\"mxfp4\",\"block\":[1,32]}]}",
                "\"block\" and \"scale\" apply to fp8 only");
    parse_fails("{\"name\":\"x\",\"rules\":[{\"match\":\".\",\"to\":\"fp8\",\"scale\":\"ue8m0\"}]}",
                "\"scale\" must be \"e8m0\" or \"f32\", not \"ue8m0\"");
    parse_fails("{\"name\":\"x\",\"rules\":[{\"to\":\"fp8\"}]}", "\"match\" (a regex string) is required");
    parse_fails("{\"name\":\"x\",\"rules\":[{\"match\":\".\",\"to\":\"fp8\",\"colour\":1}]}", "rules[0]: unknown key \"colour\"");
    parse_fails("{\"name\":\"x\",\"align\":1000}", "\"align\" must be a power of two in [4096, 2^30]");
    parse_fails("{\"name\":\"x\",\"stack_experts\":false,\"fuse_w13\":true}", "\"fuse_w13\" needs \"stack_experts\"");
    parse_fails("{\"name\":\"x\",\"thresholds\":{\"fp7\":1}}", "thresholds: \"fp7\"");
    parse_fails("{\"rules\":[]}", "\"name\" must be a non-empty string");
    parse_fails("[1]", "a profile is a JSON object");
    parse_fails("{\"name\":", "test.json: not valid JSON");
    wp_profile p;
    wp_err e = {0};
    CHECK_EQ_INT(wp_profile_load(&p, "no-such-profile", &e), WP_EUSAGE);
    CHECK_CONTAINS(e.msg, "unknown profile \"no-such-profile\" (built-in: ");
    CHECK_CONTAINS(e.msg, "hopper");
    CHECK(!strcmp(e.setting, "profile"));
}

TEST(convert_profiles_override_grammar)
{
    struct {
        const char *spec;
        int pass;
        wp_enc enc;
        uint32_t br, bc;
        wp_scale_fmt sf;
    } ok[] = {
        {"x=passthrough", 1, WP_ENC_BF16, 0, 0, WP_SCALE_E8M0},
        {"x=bf16", 0, WP_ENC_BF16, 0, 0, WP_SCALE_E8M0},
        {"x=nvfp4", 0, WP_ENC_NVFP4, 0, 0, WP_SCALE_E8M0},
        {"x=fp8", 0, WP_ENC_FP8, WP_BLOCK_SOURCE, WP_BLOCK_SOURCE, WP_SCALE_E8M0},
        {"x=fp8-f32", 0, WP_ENC_FP8, WP_BLOCK_SOURCE, WP_BLOCK_SOURCE, WP_SCALE_F32},
        {"x=fp8-32x32", 0, WP_ENC_FP8, 32, 32, WP_SCALE_E8M0},
        {"x=fp8-128x64-f32", 0, WP_ENC_FP8, 128, 64, WP_SCALE_F32},
        {"a=b=fp8-e8m0", 0, WP_ENC_FP8, WP_BLOCK_SOURCE, WP_BLOCK_SOURCE, WP_SCALE_E8M0},
    };
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        wp_profile p;
        wp_err e = {0};
        REQUIRE(wp_profile_load(&p, "reference", &e) == 0);
        CHECKF(wp_profile_add_override(&p, ok[i].spec, &e) == 0, "%s: %s", ok[i].spec, e.msg);
        if (p.n_rules == 1) {
            const wp_rule *r = &p.rules[0];
            CHECKF(r->passthrough == ok[i].pass && (r->passthrough || r->enc == ok[i].enc), "%s", ok[i].spec);
            if (!r->passthrough && r->enc == WP_ENC_FP8)
                CHECKF(r->br == ok[i].br && r->bc == ok[i].bc && r->sfmt == ok[i].sf, "%s: %ux%u", ok[i].spec, r->br,
                       r->bc);
            CHECK(r->origin == 1);
        }
        if (i == 7) CHECK(p.n_rules == 1 && !strcmp(p.rules[0].pattern, "a=b"));   /* split at the last '=' */
        wp_profile_free(&p);
    }
    const char *bad[][2] = {
        {"x=fp9", "unknown encoding \"fp9\""},
        {"x=fp8-33", "unknown encoding \"fp8-33\""},
        {"x=fp8-e8m0x", "unknown encoding"},
        {"=bf16", "expected REGEX=ENCODING"},
        {"wq_a", "expected REGEX=ENCODING"},
        {"x=", "expected REGEX=ENCODING"},
        {"[=bf16", "bad regular expression '['"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        wp_profile p;
        wp_err e = {0};
        REQUIRE(wp_profile_load(&p, "reference", &e) == 0);
        CHECKF(wp_profile_add_override(&p, bad[i][0], &e) != 0, "%s accepted", bad[i][0]);
        CHECK_CONTAINS(e.msg, bad[i][1]);
        /* the override named in neutral words, the setting recorded for the CLI */
        CHECK_CONTAINS(e.msg, "tensor type override '");
        CHECK(strstr(e.msg, "--") == NULL);
        CHECKF(!strcmp(e.setting, "tensor-type"), "setting \"%s\"", e.setting);
        CHECK_EQ_INT(p.n_rules, 0);
        wp_profile_free(&p);
    }
}

static const wp_plan_weight *weight(const wp_plan *p, const char *name)
{
    for (size_t i = 0; i < p->n_weights; i++)
        if (!strcmp(p->weights[i].name, name)) return &p->weights[i];
    CHECKF(0, "%s: no such weight in the plan", name);
    return NULL;
}

/* Which rule decides each tensor, on tiny-a. */
TEST(convert_profiles_resolution)
{
    wp_ckpt *k;
    wp_plan *p;
    wp_err e = {0};
    REQUIRE(cvt_plan(TINY, "hopper", NULL, 0, NULL, &k, &p, &e) == 0);
    const wp_plan_weight *w;
    if ((w = weight(p, "layers.1.attn.wq_a.weight"))) CHECK(w->rule == 0 && w->method == WP_M_EXACT);
    if ((w = weight(p, "layers.1.attn.wo_a.weight"))) CHECK(w->rule == 1 && w->enc == WP_ENC_BF16);   /* later rule wins */
    if ((w = weight(p, "layers.1.ffn.experts.w2.weight"))) CHECK(w->rule == 0 && w->method == WP_M_CAST37);
    if ((w = weight(p, "layers.1.attn_norm.weight"))) CHECK(w->rule == -1 && w->passthrough);   /* "from" excludes bf16 */
    if ((w = weight(p, "hc_head_fn"))) CHECK(w->rule == -1 && w->src == WP_SRC_F32);
    if ((w = weight(p, "layers.0.ffn.gate.tid2eid"))) CHECK(w->src == WP_SRC_RAW && w->passthrough);
    cvt_free(k, p);

    /* overrides come after the profile: they win; among them the last wins;
     * block encodings skip vectors, and raw data is never touched */
    const char *t[] = {".=fp8", "wq_a=f32", "wq_a=bf16", "tid2eid=bf16"};
    REQUIRE(cvt_plan(TINY, "hopper", t, 4, NULL, &k, &p, &e) == 0);
    if ((w = weight(p, "layers.1.attn.wq_a.weight"))) CHECK(w->enc == WP_ENC_BF16 && w->rule == 4);
    /* fp8 with the source's block and E8M0: what the file holds, so a copy */
    if ((w = weight(p, "layers.1.attn.wo_a.weight")))
        CHECK(w->enc == WP_ENC_FP8 && w->rule == 2 && w->sfmt == WP_SCALE_E8M0 && w->passthrough);
    if ((w = weight(p, "embed.weight"))) CHECK(w->enc == WP_ENC_FP8 && w->method == WP_M_QUANT && w->br == 128);
    if ((w = weight(p, "layers.1.attn_norm.weight"))) CHECK(w->passthrough && w->rule == -1);
    if ((w = weight(p, "layers.0.ffn.gate.tid2eid"))) CHECK(w->passthrough && w->src == WP_SRC_RAW);
    cvt_free(k, p);
}

/* A profile is a file too: `--profile path/to/x.json`. */
TEST(convert_profiles_file)
{
    const char *json = "{\"name\": \"mine\", \"align\": 65536, \"fuse_w13\": true,\n"
                       " \"thresholds\": {\"fp8\": 0.001},\n"
                       " \"rules\": [{\"match\": \"shared_experts\", \"from\": [\"fp8\"], \"to\": \"bf16\"}]}\n";
    char path[4096];
    snprintf(path, sizeof path, "%s/mine.json", wpt_tmpdir());
    REQUIRE(wpt_write_file(path, json, strlen(json)) == 0);
    wp_ckpt *k;
    wp_plan *p;
    wp_err e = {0};
    REQUIRE(cvt_plan(TINY, path, NULL, 0, NULL, &k, &p, &e) == 0);
    CHECK(!strcmp(p->profile.name, "mine") && p->profile.align == 65536 && p->profile.fuse_w13);
    CHECK_NEAR(p->profile.nmse_max[WP_ENC_FP8], 0.001, 0);
    for (size_t i = 0; i < p->n_tensors; i++) CHECK(p->tensors[i].offset % 65536 == 0);
    const wp_plan_weight *w = weight(p, "layers.2.ffn.shared_experts.w2.weight");
    if (w) CHECK(w->enc == WP_ENC_BF16 && w->method == WP_M_EXACT);
    CHECK(wp_plan_find(p, 0, "layers.2.ffn.experts.w13.weight") != SIZE_MAX);
    cvt_free(k, p);
    char out[4096];
    CHECK_EQ_INT(wpt_run(out, sizeof out, "%s plan %s --profile %s/missing.json", wpt_wpack(), TINY, wpt_tmpdir()), 2);
    CHECK_CONTAINS(out, "missing.json: cannot open");
}
