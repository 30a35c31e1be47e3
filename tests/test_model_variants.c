/* test_model_variants.c — the expected inventory follows config.json's
 * variant: FP4 or FP8 routed experts (V4-Flash-Base stores FP8 experts and its
 * config.json has no expert_dtype), 128x128 or 32x32 FP8 blocks, MTP copies
 * or not.  The Base-style checkpoint is made from tiny-a with the lossless
 * spec §3.7 cast, so the golden still applies to it. */
#include <cjson/cJSON.h>
#include <sys/stat.h>

#include "hf/safetensors.h"
#include "model/model.h"
#include "model/summary.h"
#include "quant/quant.h"
#include "tests/harness.h"

#define GOLDEN WPT_TINY "/golden-fp32.safetensors"

/* "P.ffn.experts.E.wK.weight" of an I8 payload: its module name length. */
static size_t expert_len(const wp_tensor_info *t)
{
    const char *x = strstr(t->name, ".ffn.experts.");
    size_t n = strlen(t->name);
    if (!x || t->dtype != WP_I8 || n < 7 || strcmp(t->name + n - 7, ".weight")) return 0;
    return n - 7;
}

typedef struct variant {
    wp_scale_fmt expert_scale;   /* FP8 experts' scale format */
    int keep_expert_dtype;       /* leave tiny-a's "expert_dtype": "fp4" in config.json */
    int head_copy;               /* add mtp.0.head.weight (Flash-Base carries it) */
} variant;

/* tiny-a with every routed expert cast MXFP4 -> FP8 128x128 (spec §3.7) into
 * DIR/model.safetensors + a config.json without expert_dtype.  Returns the
 * number of inexact elements the cast reported, or -1. */
static long make_base(const char *dir, const variant *v)
{
    wp_err e = {0};
    wp_ckpt *k = NULL;
    if (wp_ckpt_open(&k, WPT_TINY "/hf", &e)) return -1;
    size_t n = wp_ckpt_count(k), m = 0;
    wp_st_entry *ent = calloc(n + 1, sizeof *ent);
    void **bufs = calloc(2 * n + 2, sizeof *bufs);
    long lossy = 0;
    int nb = 0;
    if (mkdir(dir, 0755) != 0 || !ent || !bufs) lossy = -1;
    for (size_t i = 0; i < n && lossy >= 0; i++) {
        const wp_tensor_info *t = wp_ckpt_tensor(k, i);
        size_t nl = strlen(t->name);
        if (nl > 6 && !strcmp(t->name + nl - 6, ".scale") && strstr(t->name, ".ffn.experts.")) {
            /* an FP4 expert's scale: replaced with its weight below */
            char wn[256];
            snprintf(wn, sizeof wn, "%.*s.weight", (int)(nl - 6), t->name);
            const wp_tensor_info *w = wp_ckpt_find(k, wn);
            if (w && w->dtype == WP_I8) continue;
        }
        const void *src = wp_ckpt_data(k, t, &e);
        if (!src) {
            lossy = -1;
            break;
        }
        size_t ml = expert_len(t);
        if (!ml) {
            ent[m++] = (wp_st_entry){.name = t->name, .dtype = t->dtype, .ndim = t->ndim, .data = src};
            memcpy(ent[m - 1].shape, t->shape, sizeof t->shape);
            continue;
        }
        char sn[256];
        snprintf(sn, sizeof sn, "%.*s.scale", (int)ml, t->name);
        const wp_tensor_info *st = wp_ckpt_find(k, sn);
        const void *s4 = st ? wp_ckpt_data(k, st, &e) : NULL;
        size_t rows = t->shape[0], cols = 2 * t->shape[1];
        size_t srows = (rows + 127) / 128, scols = (cols + 127) / 128;
        size_t ssz = v->expert_scale == WP_SCALE_F32 ? 4 : 1;
        uint8_t *q = malloc(rows * cols), *sc = malloc(srows * scols * ssz);
        char *name = malloc(strlen(sn) + 1);
        if (!s4 || !q || !sc || !name) {
            free(q), free(sc), free(name);
            lossy = -1;
            break;
        }
        lossy += (long)wp_mxfp4_to_fp8(src, s4, rows, cols, v->expert_scale, q, sc);
        strcpy(name, sn);
        bufs[nb++] = q;
        bufs[nb++] = sc;
        bufs[nb++] = name;
        ent[m++] = (wp_st_entry){.name = t->name, .dtype = WP_F8_E4M3, .ndim = 2, .shape = {rows, cols}, .data = q};
        ent[m++] = (wp_st_entry){.name = name, .dtype = v->expert_scale == WP_SCALE_F32 ? WP_F32 : WP_F8_E8M0,
                                 .ndim = 2, .shape = {srows, scols}, .data = sc};
    }
    if (lossy >= 0 && v->head_copy) {
        const wp_tensor_info *h = wp_ckpt_find(k, "head.weight");
        ent[m++] = (wp_st_entry){.name = "mtp.0.head.weight", .dtype = h->dtype, .ndim = 2,
                                 .shape = {h->shape[0], h->shape[1]}, .data = wp_ckpt_data(k, h, &e)};
    }
    if (lossy >= 0 && wp_st_write_file(wpt_path("%s/model.safetensors", dir), ent, m, NULL, 0, &e)) {
        fprintf(stderr, "write: %s\n", e.msg);
        lossy = -1;
    }
    /* config.json: tiny-a's, without expert_dtype unless kept */
    uint8_t *txt = NULL;
    size_t tl = 0;
    if (lossy >= 0 && wpt_read_file(WPT_TINY "/hf/config.json", &txt, &tl) == 0) {
        cJSON *j = cJSON_ParseWithLength((const char *)txt, tl);
        if (!v->keep_expert_dtype) cJSON_DeleteItemFromObjectCaseSensitive(j, "expert_dtype");
        char *o = cJSON_Print(j);
        if (!o || wpt_write_file(wpt_path("%s/config.json", dir), o, strlen(o))) lossy = -1;
        free(o);
        cJSON_Delete(j);
    } else {
        lossy = -1;
    }
    free(txt);
    for (int i = 0; i < nb; i++) free(bufs[i]);
    free(bufs);
    free(ent);
    wp_ckpt_close(k);
    return lossy;
}

static cJSON *inspect_json(const char *dir, int *rc)
{
    static char out[1 << 20];
    *rc = wpt_run(out, sizeof out, "%s inspect %s --json", wpt_wpack(), dir);
    return cJSON_Parse(out);
}

static const char *jstr(const cJSON *o, const char *a, const char *b, const char *c)
{
    const cJSON *x = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(
                                                          cJSON_GetObjectItemCaseSensitive(o, a), b), c);
    return cJSON_IsString(x) ? x->valuestring : "";
}

/* V4-Flash-Base style: FP8 experts with E8M0 128x128 scales (convert.py
 * --expert-dtype fp8), head copy in the MTP block, no expert_dtype. */
TEST(model_variants_flash_base_e8m0)
{
    const char *dir = wpt_path("%s/base", wpt_tmpdir());
    variant v = {.expert_scale = WP_SCALE_E8M0, .head_copy = 1};
    long lossy = make_base(dir, &v);
    REQUIRE(lossy >= 0);
    CHECK_EQ_INT(lossy, 0);   /* tiny-a's groups are within 14 of their tile: lossless */
    static char out[65536];
    int rc = wpt_run(out, sizeof out, "%s inspect %s", wpt_wpack(), dir);
    CHECKF(rc == 0, "inspect exit %d: %s", rc, out);
    CHECK_CONTAINS(out, "inventory: ok (427 expected, 428 found, 1 optional)");
    CHECK_CONTAINS(out, "experts: fp8, F8_E8M0 scales (config.json has no expert_dtype");
    CHECK_CONTAINS(out, "with a head copy, no embed copy");
    cJSON *j = inspect_json(dir, &rc);
    REQUIRE(j);
    CHECK_EQ_INT(rc, 0);
    CHECK(!strcmp(jstr(j, "inventory", "experts", "dtype"), "fp8"));
    CHECK(!strcmp(jstr(j, "inventory", "experts", "scale_dtype"), "F8_E8M0"));
    CHECK(!strcmp(jstr(j, "inventory", "experts", "from"), "checkpoint"));
    cJSON_Delete(j);
    /* the golden was made with the FP4 experts: the cast is value-exact */
    rc = wpt_run(out, sizeof out, "%s parity %s --golden %s", wpt_wpack(), dir, GOLDEN);
    CHECKF(rc == 0, "parity exit %d: %s", rc, out);
    CHECK_CONTAINS(out, "\nPASS");
}

/* The layout the issue describes for the released Base: F32 [out/128,
 * in/128] expert scales while every other FP8 pair keeps E8M0. */
TEST(model_variants_flash_base_f32_expert_scales)
{
    const char *dir = wpt_path("%s/base", wpt_tmpdir());
    variant v = {.expert_scale = WP_SCALE_F32};
    REQUIRE(make_base(dir, &v) == 0);
    static char out[65536];
    int rc = wpt_run(out, sizeof out, "%s inspect %s", wpt_wpack(), dir);
    CHECKF(rc == 0, "inspect exit %d: %s", rc, out);
    CHECK_CONTAINS(out, "inventory: ok (427 expected, 427 found)");
    CHECK_CONTAINS(out, "experts: fp8, F32 scales");
    rc = wpt_run(out, sizeof out, "%s parity %s --golden %s", wpt_wpack(), dir, GOLDEN);
    CHECKF(rc == 0, "parity exit %d: %s", rc, out);
    /* a build of it records the experts it holds, and still meets the golden */
    const char *b = wpt_path("%s/build", wpt_tmpdir());
    rc = wpt_run(out, sizeof out, "%s convert %s -o %s", wpt_wpack(), dir, b);
    REQUIRE(rc == 0);
    wp_err e = {0};
    wp_config c;
    rc = wpt_run(out, sizeof out, "%s parity %s --golden %s", wpt_wpack(), b, GOLDEN);
    CHECKF(rc == 0, "parity (build) exit %d: %s", rc, out);
    /* the plan resolves the config: what the build's model description says */
    wp_ckpt *k = NULL;
    REQUIRE(wp_ckpt_open(&k, dir, &e) == 0);
    REQUIRE(wp_config_load(&c, wpt_path("%s/config.json", dir), &e) == 0);
    CHECK_EQ_INT(c.expert_dtype_given, 0);
    CHECK(!strcmp(c.expert_dtype, "fp4"));   /* the parser's default ... */
    size_t n = wp_ckpt_count(k);
    const wp_tensor_info **tv = calloc(n, sizeof *tv);
    REQUIRE(tv);
    for (size_t i = 0; i < n; i++) tv[i] = wp_ckpt_tensor(k, i);
    wp_expert_fmt f = wp_expert_fmt_of(&c, tv, n);
    CHECK(f.fp8 && f.from_checkpoint && f.scale == WP_F32);
    wp_config_resolve_experts(&c, tv, n);
    CHECK(!strcmp(c.expert_dtype, "fp8"));   /* ... corrected by the checkpoint */
    free(tv);
    wp_ckpt_close(k);
}

/* A config that states its experts is taken at its word: FP8 experts under
 * "expert_dtype": "fp4" are mis-typed, every one of them. */
TEST(model_variants_stated_expert_dtype_wins)
{
    const char *dir = wpt_path("%s/base", wpt_tmpdir());
    variant v = {.expert_scale = WP_SCALE_E8M0, .keep_expert_dtype = 1};
    REQUIRE(make_base(dir, &v) == 0);
    static char out[65536];
    int rc = wpt_run(out, sizeof out, "%s inspect %s", wpt_wpack(), dir);
    CHECK_EQ_INT(rc, 1);
    /* 5 blocks x 8 experts x 3 projections: each weight mis-typed, each
     * (E8M0) scale mis-shaped */
    CHECK_CONTAINS(out, "0 missing, 0 unexpected, 120 mis-shaped, 120 mis-typed");
    CHECK(strstr(out, "experts: fp8") == NULL);
    /* and tiny-a itself (no key removed, FP4 experts) says nothing new */
    rc = wpt_run(out, sizeof out, "%s inspect %s/hf", wpt_wpack(), WPT_TINY);
    CHECK_EQ_INT(rc, 0);
    CHECK(strstr(out, "experts:") == NULL);
}

/* The initial Flash revision: no expert_dtype and FP4 experts, as before. */
TEST(model_variants_initial_revision_fp4)
{
    wp_err e = {0};
    wp_config c;
    REQUIRE(wp_config_load(&c, WPT_TINY "/hf/config.json", &e) == 0);
    CHECK_EQ_INT(c.expert_dtype_given, 1);
    c.expert_dtype_given = 0;   /* as if the key were absent */
    wp_ckpt *k = NULL;
    REQUIRE(wp_ckpt_open(&k, WPT_TINY "/hf", &e) == 0);
    wp_inv_report r;
    REQUIRE(wp_inventory_check(&c, k, &r, &e) == 0);
    CHECK_EQ_INT(wp_inv_problems(&r), 0);
    CHECK(!r.experts.fp8 && r.experts.from_checkpoint && r.experts.scale == WP_F8_E8M0);
    wp_inv_report_free(&r);
    /* with no expert in the list at all, the config's default stands */
    wp_expert_fmt f = wp_expert_fmt_of(&c, NULL, 0);
    CHECK(!f.fp8 && !f.from_checkpoint);
    /* an unquantized config (no quantization_config): experts are BF16, nothing to read */
    size_t n = wp_ckpt_count(k);
    const wp_tensor_info **tv = calloc(n, sizeof *tv);
    REQUIRE(tv);
    for (size_t i = 0; i < n; i++) tv[i] = wp_ckpt_tensor(k, i);
    c.quant_method[0] = 0;
    f = wp_expert_fmt_of(&c, tv, n);
    CHECK(!f.from_checkpoint);
    free(tv);
    wp_ckpt_close(k);
}

/* FP8 blocks come from weight_block_size: a 32x32 config expects 32x32
 * scale grids for every FP8 pair, FP8 experts included. */
TEST(model_variants_block_32_fp8_experts)
{
    wp_err e = {0};
    wp_config c;
    REQUIRE(wp_config_load(&c, WPT_TINY "/hf/config.json", &e) == 0);
    c.weight_block[0] = c.weight_block[1] = 32;
    snprintf(c.expert_dtype, sizeof c.expert_dtype, "fp8");
    wp_expect *x = NULL;
    size_t n = 0;
    REQUIRE(wp_inventory(&c, &x, &n, &e) == 0);
    int seen = 0;
    for (size_t i = 0; i < n; i++) {
        if (!strcmp(x[i].name, "layers.0.ffn.experts.3.w2.scale")) {   /* w2 [d=256, I=128] */
            CHECK_EQ_INT(x[i].dtype, WP_F8_E8M0);
            CHECK_EQ_INT(x[i].shape[0], 8);
            CHECK_EQ_INT(x[i].shape[1], 4);
            seen++;
        }
        if (!strcmp(x[i].name, "layers.0.ffn.experts.3.w2.weight")) {
            CHECK_EQ_INT(x[i].dtype, WP_F8_E4M3);
            CHECK_EQ_INT(x[i].shape[1], 128);
            seen++;
        }
    }
    CHECK_EQ_INT(seen, 2);
    free(x);
}
