/*
 * test_plan.c — wpack plan: determinism, the tiny-a layout (stacks, scales,
 * sources, aligned offsets, family totals), fused w13, ep/tp shapes, the
 * errors an impossible plan gives, and the CLI (human and --json).
 */
#include <cjson/cJSON.h>
#include <stdlib.h>

#include "convert/convert_priv.h"
#include "tests/cv_util.h"

#define TINY WPT_TINY "/hf"

static char out[1 << 20];

static char *plan_json(const char *profile, const wp_plan_opts *po)
{
    wp_ckpt *k;
    wp_plan *p;
    wp_err e = {0};
    if (cvt_plan(TINY, profile, NULL, 0, po, &k, &p, &e)) {
        CHECKF(0, "plan %s: %s", profile, e.msg);
        return NULL;
    }
    cJSON *j = wp_plan_to_json(p);
    char *s = cJSON_PrintUnformatted(j);
    cJSON_Delete(j);
    cvt_free(k, p);
    return s;
}

static const wp_plan_tensor *find(const wp_plan *p, int file, const char *name)
{
    size_t i = wp_plan_find(p, file, name);
    CHECKF(i != SIZE_MAX, "%s not in file %d of the plan", name, file);
    return i == SIZE_MAX ? NULL : &p->tensors[i];
}

/* Same inputs and options -> the same plan, byte for byte, every time. */
TEST(convert_plan_deterministic)
{
    const char *prof[] = {"reference", "hopper", "blackwell-nvfp4", "bf16"};
    for (int i = 0; i < 4; i++) {
        char *a = plan_json(prof[i], NULL), *b = plan_json(prof[i], NULL);
        REQUIRE(a && b);
        CHECKF(!strcmp(a, b), "%s: two plans differ", prof[i]);
        free(a);
        free(b);
    }
    /* and options do change it */
    wp_plan_opts po = WP_PLAN_OPTS_INIT;
    po.ep = 2;
    char *a = plan_json("reference", NULL), *b = plan_json("reference", &po);
    REQUIRE(a && b);
    CHECK(strcmp(a, b) != 0);
    free(a);
    free(b);
    /* the CLI prints the same plan twice too */
    char o2[1 << 16];
    REQUIRE(wpt_run(out, sizeof out, "%s plan %s --profile hopper --json", wpt_wpack(), TINY) == 0);
    REQUIRE(wpt_run(o2, sizeof o2, "%s plan %s --profile hopper --json | head -c 65535", wpt_wpack(), TINY) == 0);
    CHECK(!strncmp(out, o2, strlen(o2)));
}

/* tiny-a, reference: 8 experts x 3 projections x 5 blocks stacked, every
 * other tensor one output, offsets aligned and in order, sizes exact. */
TEST(convert_plan_tiny_layout)
{
    wp_ckpt *k;
    wp_plan *p;
    wp_err e = {0};
    REQUIRE(cvt_plan(TINY, "reference", NULL, 0, NULL, &k, &p, &e) == 0);
    /* 427 sources: 5 blocks x 3 projections x 8 experts x 2 (weight, scale) = 240
     * become 15 stacks x 2 = 30, so 427 - 240 + 30 = 217 outputs */
    CHECK_EQ_INT(p->n_tensors, 217);
    CHECK_EQ_INT(p->n_files, 1);
    CHECK(!strcmp(p->files[0].name, "model.wpk"));
    const wp_plan_tensor *t = find(p, 0, "layers.0.ffn.experts.w1.weight");
    REQUIRE(t);
    const wp_plan_weight *w = &p->weights[t->weight];
    /* logical [E, I, d] = [8, 128, 256] in MXFP4: 128 x 128 bytes per expert */
    CHECK(t->is_enc && t->enc == WP_ENC_MXFP4 && t->stacked && t->ndim == 3);
    CHECK(t->shape[0] == 8 && t->shape[1] == 128 && t->shape[2] == 256);
    CHECK_EQ_INT(t->stride, 128 * 128);
    CHECK_EQ_INT(t->nbytes, 8 * 128 * 128);
    CHECK_EQ_INT(w->n_slices, 8);
    for (int x = 0; x < 8; x++)
        CHECK(!strcmp(w->srcs[x].w->name, wpt_path("layers.0.ffn.experts.%d.w1.weight", x)) &&
              !strcmp(w->srcs[x].s->name, wpt_path("layers.0.ffn.experts.%d.w1.scale", x)));
    const wp_plan_tensor *s = find(p, 0, "layers.0.ffn.experts.w1.scale");
    REQUIRE(s);
    CHECK(!s->is_enc && s->dtype == WP_F8_E8M0 && s->stacked && s->shape[0] == 8 && s->shape[1] == 128 &&
          s->shape[2] == 8 && s->stride == 1024);
    /* an FP8 linear: [512, 128] weight with [4, 1] E8M0 block scales */
    t = find(p, 0, "layers.1.attn.wq_b.weight");
    s = find(p, 0, "layers.1.attn.wq_b.scale");
    REQUIRE(t && s);
    CHECK(t->enc == WP_ENC_FP8 && t->shape[0] == 512 && t->shape[1] == 128 && t->nbytes == 512 * 128);
    CHECK(s->dtype == WP_F8_E8M0 && s->shape[0] == 4 && s->shape[1] == 1 && s->nbytes == 4);
    /* raw data is raw: tid2eid I64 [vocab, topk] on the hash layer only */
    t = find(p, 0, "layers.0.ffn.gate.tid2eid");
    REQUIRE(t);
    CHECK(!t->is_enc && t->dtype == WP_I64 && t->role == WP_ROLE_RAW && t->nbytes == 512 * 2 * 8);
    CHECK(wp_plan_find(p, 0, "layers.1.ffn.gate.tid2eid") == SIZE_MAX);
    /* layout: 4 KiB aligned, in order, no overlap; totals add up */
    uint64_t end = 0, sum = 0;
    for (size_t i = 0; i < p->n_tensors; i++) {
        const wp_plan_tensor *x = &p->tensors[i];
        CHECKF(x->offset % 4096 == 0 && x->offset >= end, "%s at %llu", x->name, (unsigned long long)x->offset);
        end = x->offset + x->nbytes;
        sum += x->nbytes;
    }
    CHECK_EQ_INT(p->files[0].data_bytes, end);
    CHECK_EQ_INT(p->out_bytes, sum);
    CHECK_EQ_INT(p->in_bytes, 7078066);   /* model.safetensors.index.json total_size */
    CHECK_EQ_INT(p->out_bytes, p->in_bytes);   /* reference: a byte copy */
    CHECK_EQ_INT(p->family[WP_FAM_EXPERTS].n_in, 4 * 3 * 8 * 2);
    CHECK_EQ_INT(p->family[WP_FAM_EXPERTS].n_out, 4 * 3 * 2);
    CHECK_EQ_INT(p->family[WP_FAM_MTP].n_in, 87);
    uint64_t fin = 0, fout = 0;
    for (int f = 0; f < WP_FAM_COUNT; f++) {
        fin += p->family[f].n_in;
        fout += p->family[f].n_out;
    }
    CHECK_EQ_INT(fin, 427);
    CHECK_EQ_INT(fout, 217);
    /* outputs follow the shards (a stack where its first expert is), so a
     * convert reads its input front to back */
    uint64_t prev = 0;
    for (size_t i = 0; i < p->n_weights; i++) {
        const wp_plan_weight *w = &p->weights[i];
        uint64_t first = UINT64_MAX;
        for (int x = 0; x < w->n_slices * w->srcs_per_slice; x++) {
            uint64_t o = ((uint64_t)w->srcs[x].w->file << 48) | w->srcs[x].w->offset;
            first = o < first ? o : first;
        }
        CHECKF(first >= prev, "%s is out of shard order", w->name);
        prev = first;
    }
    cvt_free(k, p);
}

/* --fuse-w13: experts.w13 [E, 2I, d] from w1_e then w3_e per expert */
TEST(convert_plan_fused)
{
    wp_ckpt *k;
    wp_plan *p;
    wp_err e = {0};
    wp_plan_opts po = WP_PLAN_OPTS_INIT;
    po.fuse_w13 = 1;
    REQUIRE(cvt_plan(TINY, "hopper", NULL, 0, &po, &k, &p, &e) == 0);
    CHECK(wp_plan_find(p, 0, "mtp.0.ffn.experts.w1.weight") == SIZE_MAX);
    CHECK(wp_plan_find(p, 0, "mtp.0.ffn.experts.w3.weight") == SIZE_MAX);
    CHECK(wp_plan_find(p, 0, "mtp.0.ffn.experts.w2.weight") != SIZE_MAX);
    const wp_plan_tensor *t = find(p, 0, "mtp.0.ffn.experts.w13.weight"), *s = find(p, 0, "mtp.0.ffn.experts.w13.scale");
    REQUIRE(t && s);
    const wp_plan_weight *w = &p->weights[t->weight];
    CHECK(t->enc == WP_ENC_FP8 && t->shape[0] == 8 && t->shape[1] == 256 && t->shape[2] == 256);
    CHECK(s->dtype == WP_F32 && s->shape[1] == 2 && s->shape[2] == 2);   /* [E, 2I/128, d/128] F32 */
    CHECK(w->srcs_per_slice == 2 && w->method == WP_M_CAST37);
    CHECK(!strcmp(w->srcs[6].w->name, "mtp.0.ffn.experts.3.w1.weight") && w->srcs[6].out_row0 == 0);
    CHECK(!strcmp(w->srcs[7].w->name, "mtp.0.ffn.experts.3.w3.weight") && w->srcs[7].out_row0 == 128);
    cvt_free(k, p);
}

/* --ep / --tp shapes: experts partitioned in contiguous ranges, spec §2.5
 * dims cut, everything else replicated. */
TEST(convert_plan_splits)
{
    wp_ckpt *k;
    wp_plan *p;
    wp_err e = {0};
    wp_plan_opts po = WP_PLAN_OPTS_INIT;
    po.ep = 4;
    REQUIRE(cvt_plan(TINY, "reference", NULL, 0, &po, &k, &p, &e) == 0);
    CHECK_EQ_INT(p->n_files, 4);
    CHECK(!strcmp(p->files[3].name, "model-rank00003-of-00004.wpk"));
    for (int r = 0; r < 4; r++) {
        const wp_plan_tensor *t = find(p, r, "layers.2.ffn.experts.w3.weight");
        const wp_plan_tensor *q = find(p, r, "layers.2.attn.wq_a.weight");
        if (!t || !q) continue;
        const wp_plan_weight *w = &p->weights[t->weight];
        CHECK(t->shape[0] == 2 && w->first_expert == 2 * r);
        CHECK(!strcmp(w->srcs[1].w->name, wpt_path("layers.2.ffn.experts.%d.w3.weight", 2 * r + 1)));
        CHECK(q->shape[0] == 128 && q->shape[1] == 256);   /* replicated whole */
    }
    cvt_free(k, p);

    po = (wp_plan_opts)WP_PLAN_OPTS_INIT;
    po.tp = 2;
    REQUIRE(cvt_plan(TINY, "bf16", NULL, 0, &po, &k, &p, &e) == 0);
    const wp_plan_tensor *em = find(p, 1, "embed.weight"), *wo = find(p, 1, "layers.0.attn.wo_b.weight");
    const wp_plan_tensor *sk = find(p, 1, "layers.0.attn.attn_sink"), *ex = find(p, 1, "layers.0.ffn.experts.w1.weight");
    REQUIRE(em && wo && sk && ex);
    CHECK(em->shape[0] == 256 && em->shape[1] == 256 && p->weights[em->weight].srcs[0].row0 == 256);
    CHECK(wo->shape[0] == 256 && wo->shape[1] == 64 && p->weights[wo->weight].srcs[0].col0 == 64);
    CHECK(sk->ndim == 1 && sk->shape[0] == 2);
    CHECK(ex->shape[0] == 8);   /* --tp alone keeps every expert on every rank */
    cvt_free(k, p);
}

/* Planning fails with `needle` in the message, naming `setting` (the option
 * that decides) and no command-line flag: the CLI adds the flag. */
static void plan_fails_opts(const char *profile, const wp_plan_opts *po, const char *needle, const char *setting)
{
    wp_ckpt *k;
    wp_plan *p;
    wp_err e = {0};
    int rc = cvt_plan(TINY, profile, NULL, 0, po, &k, &p, &e);
    CHECKF(rc != 0, "%s ep %d tp %d: planned, expected an error", profile, po->ep, po->tp);
    CHECK_CONTAINS(e.msg, needle);
    CHECKF(!strcmp(e.setting, setting), "setting \"%s\", expected \"%s\"", e.setting, setting);
    CHECKF(!strstr(e.msg, "--"), "a flag in a library message: %s", e.msg);
    if (!rc) cvt_free(k, p);
}

static void plan_fails(const char *profile, int ep, int tp, const char *needle, const char *setting)
{
    wp_plan_opts po = WP_PLAN_OPTS_INIT;
    po.ep = ep;
    po.tp = tp;
    plan_fails_opts(profile, &po, needle, setting);
}

TEST(convert_plan_errors)
{
    /* wo_b [256, 128] cut in 64 columns cannot keep 128-wide FP8 blocks */
    plan_fails("hopper", 1, 2,
               "layers.0.attn.wo_b.weight: tensor parallel degree 2 cuts 128 columns into 64, not a multiple of the "
               "output fp8 block 128", "tp");
    plan_fails("reference", 3, 1, "expert parallel degree 3 does not divide n_routed_experts 8", "ep");
    plan_fails("reference", 2, 4, "both must be equal", "ep");
    plan_fails("bf16", 1, 3, "layers.0.attn.attn_sink: tensor parallel degree 3 does not divide its 4 elements", "tp");
    plan_fails("reference", 0, 1, "expert parallel degree 0 must be in [1, 4096]", "ep");
    plan_fails("reference", 1, 4097, "tensor parallel degree 4097 must be in [1, 4096]", "tp");
    wp_plan_opts pa = WP_PLAN_OPTS_INIT;
    pa.align = 12288;
    plan_fails_opts("reference", &pa, "alignment 12288 must be a power of two in [4 KiB, 1 GiB]", "align");
    wp_plan_opts pf = WP_PLAN_OPTS_INIT;
    pf.fuse_w13 = 1;
    const char *flat = wpt_path("%s/flat.json", wpt_tmpdir()), *fj = "{\"name\":\"flat\",\"stack_experts\":false}";
    REQUIRE(wpt_write_file(flat, fj, strlen(fj)) == 0);
    plan_fails_opts(flat, &pf, "fusing w1 with w3 needs a profile that stacks experts", "fuse-w13");
    /* fused w1|w3 must keep whole FP8 blocks: 32-row blocks of a 128-row I are fine, 96 are not */
    wp_ckpt *k;
    wp_plan *p;
    wp_err e = {0};
    wp_plan_opts po = WP_PLAN_OPTS_INIT;
    po.fuse_w13 = 1;
    const char *t96[] = {"experts=fp8-96x128"};
    CHECK(cvt_plan(TINY, "reference", t96, 1, &po, &k, &p, &e) != 0);
    CHECK_CONTAINS(e.msg, "fusing w1|w3 of 128 rows each splits a 96-row fp8 block");
    const char *t32[] = {"experts=fp8-32x32"};
    CHECK(cvt_plan(TINY, "reference", t32, 1, &po, &k, &p, &(wp_err){0}) == 0);
    cvt_free(k, p);
}

TEST(convert_plan_cli)
{
    REQUIRE(wpt_run(out, sizeof out, "%s plan %s --profile blackwell-nvfp4 --json", wpt_wpack(), TINY) == 0);
    cJSON *j = cJSON_Parse(out);
    REQUIRE(j);
    const cJSON *ts = cJSON_GetObjectItem(j, "tensors");
    CHECK_EQ_INT(cJSON_GetArraySize(ts), 227);   /* 217 + 15 stacks x (scale + global) - 5 */
    int found = 0;
    for (const cJSON *t = ts ? ts->child : NULL; t; t = t->next) {
        const char *n = cJSON_GetObjectItem(t, "name")->valuestring;
        if (!strcmp(n, "layers.3.ffn.experts.w2.global_scale")) {
            const cJSON *sh = cJSON_GetObjectItem(t, "shape");
            CHECK(cJSON_GetArraySize(sh) == 1 && cJSON_GetArrayItem(sh, 0)->valuedouble == 8);
            CHECK(!strcmp(cJSON_GetObjectItem(t, "dtype")->valuestring, "F32"));
            found++;
        }
        if (!strcmp(n, "layers.3.ffn.experts.w2.weight")) {
            CHECK(!strcmp(cJSON_GetObjectItem(t, "encoding")->valuestring, "nvfp4"));
            CHECK(!strcmp(cJSON_GetObjectItem(t, "method")->valuestring, "quant"));
            CHECK_EQ_INT(cJSON_GetArraySize(cJSON_GetObjectItem(t, "sources")), 8);
            found++;
        }
    }
    CHECK_EQ_INT(found, 2);
    const cJSON *tot = cJSON_GetObjectItem(j, "totals");
    CHECK(tot && cJSON_GetObjectItem(tot, "source_tensors")->valuedouble == 427);
    cJSON_Delete(j);
    CHECK_EQ_INT(wpt_run(out, sizeof out, "%s plan %s --profile hopper", wpt_wpack(), TINY), 0);
    CHECK_CONTAINS(out, "15 spec §3.7 casts");
    CHECK_CONTAINS(out, "experts");
    CHECK_EQ_INT(wpt_run(out, sizeof out, "%s plan %s --profile nope", wpt_wpack(), TINY), 2);
    CHECK_CONTAINS(out, "wpack plan: unknown profile \"nope\" (built-in: ");
    CHECK_EQ_INT(wpt_run(out, sizeof out, "%s plan %s --ep x", wpt_wpack(), TINY), 2);
    CHECK_EQ_INT(wpt_run(out, sizeof out, "%s plan", wpt_wpack()), 2);
    CHECK_CONTAINS(out, "missing CKPT");
    CHECK_EQ_INT(wpt_run(out, sizeof out, "%s plan %s --tp 2 --profile hopper", wpt_wpack(), TINY), 2);
    CHECK_CONTAINS(out, "wo_b");
}
