/* test_inventory.c — the expected inventory against tiny-a (exact), against
 * the spec's V4-Flash/V4-Pro counts and shapes (spec §2.4), against the
 * published byte sizes of all 46 official Flash shards, and the check's
 * report of missing / unexpected / mis-shaped / mis-typed tensors. */
#include <cjson/cJSON.h>

#include "model/model.h"
#include "tests/harness.h"
#include "tests/model_util.h"

#define TINY_HF WPT_TINY "/hf"

static int load_tiny(wp_config *c)
{
    wp_err e = {0};
    return wp_config_load(c, TINY_HF "/config.json", &e);
}

/* V4-Flash / V4-Pro configs built from the values of spec §1.1/§1.2 (not
 * from synth's presets, which the synth tests compare with these). */
static void spec_config(wp_config *c, int pro)
{
    REQUIRE(load_tiny(c) == 0);
    c->vocab_size = 129280;
    c->dim = pro ? 7168 : 4096;
    c->n_layers = pro ? 61 : 43;
    c->n_mtp_layers = 1;
    c->n_heads = pro ? 128 : 64;
    c->head_dim = 512;
    c->rope_head_dim = 64;
    c->q_lora_rank = pro ? 1536 : 1024;
    c->o_groups = pro ? 16 : 8;
    c->o_lora_rank = 1024;
    c->window_size = 128;
    c->n_routed_experts = pro ? 384 : 256;
    c->n_shared_experts = 1;
    c->n_activated_experts = 6;
    c->moe_inter_dim = pro ? 3072 : 2048;
    c->n_hash_layers = 3;
    c->index_n_heads = 64;
    c->index_head_dim = 128;
    c->index_topk = pro ? 1024 : 512;
    c->n_compress_ratios = c->n_layers + 1;
    for (int l = 0; l < c->n_layers; l++)   /* spec §1.2 */
        c->compress_ratios[l] = l < 2 ? (pro ? 128 : 0) : l % 2 == 0 ? 4 : 128;
    c->compress_ratios[c->n_layers] = 0;
}

static const wp_expect *find(const wp_expect *x, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (!strcmp(x[i].name, name)) return &x[i];
    return NULL;
}

/* Check one expected tensor: dtype and 2-D (or 1-D with d1 == 0) shape. */
#define CHECK_T(x, n, name, dt, d0, d1) do { const wp_expect *t_ = find(x, n, name); \
    CHECKF(t_, "no %s", name); \
    if (t_) { CHECKF(t_->dtype == (dt), "%s: dtype %s", name, wp_dtype_name(t_->dtype)); \
        CHECKF(t_->shape[0] == (uint64_t)(d0) && t_->shape[1] == (uint64_t)(d1) && \
               t_->ndim == ((d1) ? 2 : 1), "%s: shape [%llu,%llu] ndim %d", name, \
               (unsigned long long)t_->shape[0], (unsigned long long)t_->shape[1], t_->ndim); } \
} while (0)

static size_t count_required(const wp_expect *x, size_t n)
{
    size_t k = 0;
    for (size_t i = 0; i < n; i++) k += !x[i].optional;
    return k;
}

static size_t count_layer(const wp_expect *x, size_t n, int layer)
{
    size_t k = 0;
    for (size_t i = 0; i < n; i++) k += x[i].layer == layer && !x[i].optional;
    return k;
}

TEST(model_inventory_tiny_a_exact)
{
    wp_config c;
    wp_err e = {0};
    REQUIRE(load_tiny(&c) == 0);
    wp_ckpt *k;
    REQUIRE(wp_ckpt_open(&k, TINY_HF, &e) == 0);
    wp_inv_report r;
    REQUIRE(wp_inventory_check(&c, k, &r, &e) == 0);
    CHECK_EQ_INT(r.n_expected, 427);
    CHECK_EQ_INT(r.n_found, 427);
    CHECK_EQ_INT(wp_inv_problems(&r), 0);
    CHECK_EQ_INT(r.n_issues, 0);
    CHECK_EQ_INT(r.n_optional_present, 0);
    for (size_t i = 0; i < r.n_issues && i < 5; i++)
        printf("    %s %s: %s\n", wp_inv_kind_name(r.issues[i].kind), r.issues[i].name,
               r.issues[i].detail);
    wp_inv_report_free(&r);
    /* per layer (spec §2.4): 15 + 6 + 2 + 6 + 6E, +4 compressor, +7 indexer */
    wp_expect *x;
    size_t n;
    REQUIRE(wp_inventory(&c, &x, &n, &e) == 0);
    CHECK_EQ_INT(count_required(x, n), 427);
    CHECK_EQ_INT(count_layer(x, n, 0), 77);   /* ratio 0 */
    CHECK_EQ_INT(count_layer(x, n, 1), 88);   /* ratio 4 */
    CHECK_EQ_INT(count_layer(x, n, 2), 81);   /* ratio 128 */
    CHECK_EQ_INT(count_layer(x, n, 4), 77 + 10);   /* MTP block: + e/h_proj, 3 norms, hc_head */
    size_t nopt = 0;
    for (size_t i = 0; i < n; i++) nopt += x[i].optional;
    CHECK_EQ_INT(nopt, 2);   /* mtp.0.embed.weight, mtp.0.head.weight */
    CHECK_EQ_INT(count_layer(x, n, -1), 6);
    /* official shard order: embed first, then the layers, head group, MTP */
    CHECK(!strcmp(x[0].name, "embed.weight"));
    CHECK(!strncmp(x[1].name, "layers.0.", 9));
    CHECK(!strncmp(x[n - 1].name, "mtp.0.", 6));
    /* every expected tensor matches the fixture's dtype, shape and byte size */
    for (size_t i = 0; i < n; i++) {
        const wp_tensor_info *t = wp_ckpt_find(k, x[i].name);
        if (x[i].optional) {
            CHECK(t == NULL);
            continue;
        }
        REQUIRE(t);
        CHECK_EQ_INT(wp_expect_nbytes(&x[i]), t->nbytes);
        CHECK_EQ_INT(x[i].family, wp_family_of(t->name));
    }
    free(x);
    wp_ckpt_close(k);
}

TEST(model_inventory_flash_pro_counts)
{
    wp_config c;
    wp_err e = {0};
    wp_expect *x;
    size_t n;
    /* spec §2.4: Flash 1565/1569/1576 per ratio 0/128/4 layer, MTP 1575,
     * total 69,187; Pro 2333/2337/2344, MTP 2343, total 145,116. */
    spec_config(&c, 0);
    REQUIRE(wp_inventory(&c, &x, &n, &e) == 0);
    CHECK_EQ_INT(count_required(x, n), 69187);
    CHECK_EQ_INT(count_layer(x, n, 0), 1565);
    CHECK_EQ_INT(count_layer(x, n, 2), 1576);
    CHECK_EQ_INT(count_layer(x, n, 3), 1569);
    CHECK_EQ_INT(count_layer(x, n, 43), 1575);
    /* spec §2.4 table, Flash column */
    CHECK_T(x, n, "layers.2.attn.wq_a.scale", WP_F8_E8M0, 8, 32);
    CHECK_T(x, n, "layers.2.attn.wq_b.weight", WP_F8_E4M3, 32768, 1024);
    CHECK_T(x, n, "layers.2.attn.wq_b.scale", WP_F8_E8M0, 256, 8);
    CHECK_T(x, n, "layers.2.attn.wo_a.weight", WP_F8_E4M3, 8192, 4096);
    CHECK_T(x, n, "layers.2.attn.wo_b.scale", WP_F8_E8M0, 32, 64);
    CHECK_T(x, n, "layers.0.ffn.gate.tid2eid", WP_I64, 129280, 6);
    CHECK(find(x, n, "layers.0.ffn.gate.bias") == NULL);
    CHECK(find(x, n, "layers.3.ffn.gate.tid2eid") == NULL);
    CHECK_T(x, n, "layers.3.ffn.gate.bias", WP_F32, 256, 0);
    CHECK_T(x, n, "layers.5.ffn.experts.255.w1.weight", WP_I8, 2048, 2048);
    CHECK_T(x, n, "layers.5.ffn.experts.255.w1.scale", WP_F8_E8M0, 2048, 128);
    CHECK_T(x, n, "layers.5.ffn.experts.0.w2.weight", WP_I8, 4096, 1024);
    CHECK_T(x, n, "layers.5.ffn.experts.0.w2.scale", WP_F8_E8M0, 4096, 64);
    CHECK(find(x, n, "layers.5.ffn.experts.256.w1.weight") == NULL);
    CHECK_T(x, n, "layers.5.ffn.shared_experts.w2.scale", WP_F8_E8M0, 32, 16);
    CHECK_T(x, n, "layers.4.attn.compressor.wkv.weight", WP_BF16, 1024, 4096);
    CHECK_T(x, n, "layers.4.attn.compressor.ape", WP_F32, 4, 1024);
    CHECK_T(x, n, "layers.5.attn.compressor.wgate.weight", WP_BF16, 512, 4096);
    CHECK_T(x, n, "layers.5.attn.compressor.ape", WP_F32, 128, 512);
    CHECK(find(x, n, "layers.5.attn.indexer.wq_b.weight") == NULL);
    CHECK(find(x, n, "layers.1.attn.compressor.ape") == NULL);
    CHECK_T(x, n, "layers.4.attn.indexer.wq_b.scale", WP_F8_E8M0, 64, 8);
    CHECK_T(x, n, "layers.4.attn.indexer.compressor.wkv.weight", WP_BF16, 256, 4096);
    CHECK_T(x, n, "layers.4.attn.indexer.compressor.ape", WP_F32, 4, 256);
    CHECK_T(x, n, "layers.4.attn.indexer.weights_proj.weight", WP_BF16, 64, 4096);
    CHECK_T(x, n, "layers.4.hc_attn_fn", WP_F32, 24, 16384);
    CHECK_T(x, n, "hc_head_fn", WP_F32, 4, 16384);
    CHECK_T(x, n, "mtp.0.e_proj.scale", WP_F8_E8M0, 32, 32);
    CHECK_T(x, n, "mtp.0.ffn.gate.bias", WP_F32, 256, 0);
    CHECK(find(x, n, "mtp.0.attn.compressor.ape") == NULL);
    free(x);

    spec_config(&c, 1);
    REQUIRE(wp_inventory(&c, &x, &n, &e) == 0);
    CHECK_EQ_INT(count_required(x, n), 145116);
    CHECK_EQ_INT(count_layer(x, n, 0), 2337);   /* Pro layer 0 is HCA */
    CHECK_EQ_INT(count_layer(x, n, 2), 2344);
    CHECK_EQ_INT(count_layer(x, n, 61), 2343);
    /* spec §2.4 table, Pro column */
    CHECK_T(x, n, "layers.2.attn.wq_a.scale", WP_F8_E8M0, 12, 56);
    CHECK_T(x, n, "layers.2.attn.wq_b.scale", WP_F8_E8M0, 512, 12);
    CHECK_T(x, n, "layers.2.attn.wo_a.scale", WP_F8_E8M0, 128, 32);
    CHECK_T(x, n, "layers.2.attn.wo_b.weight", WP_F8_E4M3, 7168, 16384);
    CHECK_T(x, n, "layers.2.attn.wkv.scale", WP_F8_E8M0, 4, 56);
    CHECK_T(x, n, "layers.9.ffn.experts.383.w3.weight", WP_I8, 3072, 3584);
    CHECK_T(x, n, "layers.9.ffn.experts.383.w3.scale", WP_F8_E8M0, 3072, 224);
    CHECK_T(x, n, "layers.9.ffn.experts.1.w2.weight", WP_I8, 7168, 1536);
    CHECK_T(x, n, "layers.9.ffn.experts.1.w2.scale", WP_F8_E8M0, 7168, 96);
    CHECK_T(x, n, "layers.9.ffn.shared_experts.w1.scale", WP_F8_E8M0, 24, 56);
    CHECK_T(x, n, "layers.2.attn.indexer.wq_b.scale", WP_F8_E8M0, 64, 12);
    CHECK_T(x, n, "layers.2.attn.compressor.wkv.weight", WP_BF16, 1024, 7168);
    CHECK_T(x, n, "layers.0.attn.compressor.wkv.weight", WP_BF16, 512, 7168);
    free(x);
}

/* The published sizes of the 46 official V4-Flash shards (revision 60d8d707,
 * data/deepseek-v4-flash-60d8d707.json, shipped with wpack): the inventory's names,
 * dtypes and shapes must reproduce every one to the byte, header included. */
TEST(model_inventory_flash_published_sizes)
{
    uint64_t pub[46];
    REQUIRE(wpt_flash_published_sizes(pub) == 46);
    wp_config c;
    wp_err e = {0};
    wp_expect *x;
    size_t n;
    spec_config(&c, 0);
    REQUIRE(wp_inventory(&c, &x, &n, &e) == 0);
    const wp_expect **t = malloc(n * sizeof *t);
    REQUIRE(t);
    uint64_t total = 0;
    for (int s = 0; s < 46; s++) {
        /* spec §2.1: shard 1 embed, k+2 layer k, 45 head/norm/hc_head, 46 MTP */
        size_t m = 0;
        for (size_t i = 0; i < n; i++) {
            if (x[i].optional) continue;
            int shard = x[i].layer >= 43                  ? 45
                        : x[i].layer >= 0                  ? x[i].layer + 1
                        : !strcmp(x[i].name, "embed.weight") ? 0
                                                             : 44;
            if (shard == s) t[m++] = &x[i];
        }
        uint64_t sz = wpt_official_size(t, m);
        CHECKF(sz == pub[s], "shard %d: predicted %llu, published %llu", s + 1,
               (unsigned long long)sz, (unsigned long long)pub[s]);
        total += sz;
    }
    CHECK_EQ_INT(total, 159617149040ull);   /* spec §2.1 */
    free(t);
    free(x);
}

TEST(model_inventory_block32_and_fp8_experts)
{
    wp_config c;
    wp_err e = {0};
    wp_expect *x;
    size_t n;
    REQUIRE(load_tiny(&c) == 0);
    c.weight_block[0] = c.weight_block[1] = 32;   /* V4.1 */
    REQUIRE(wp_inventory(&c, &x, &n, &e) == 0);
    CHECK_T(x, n, "layers.0.attn.wq_a.scale", WP_F8_E8M0, 4, 8);     /* [128,256] */
    CHECK_T(x, n, "layers.0.attn.wq_b.scale", WP_F8_E8M0, 16, 4);    /* [512,128] */
    CHECK_T(x, n, "mtp.0.e_proj.scale", WP_F8_E8M0, 8, 8);
    /* FP4 expert scales are 1x32 whatever the FP8 block */
    CHECK_T(x, n, "layers.0.ffn.experts.0.w1.scale", WP_F8_E8M0, 128, 8);
    free(x);
    /* ceil-division for dims that are not block multiples */
    c.weight_block[0] = 96;
    c.weight_block[1] = 100;
    REQUIRE(wp_inventory(&c, &x, &n, &e) == 0);
    CHECK_T(x, n, "layers.0.attn.wq_a.scale", WP_F8_E8M0, 2, 3);     /* ceil(128/96), ceil(256/100) */
    free(x);
    /* Base-style FP8 experts and V3-style F32 scales */
    c.weight_block[0] = c.weight_block[1] = 128;
    strcpy(c.expert_dtype, "fp8");
    c.scale_fmt[0] = 0;
    REQUIRE(wp_inventory(&c, &x, &n, &e) == 0);
    CHECK_T(x, n, "layers.0.ffn.experts.7.w1.weight", WP_F8_E4M3, 128, 256);
    CHECK_T(x, n, "layers.0.ffn.experts.7.w1.scale", WP_F32, 1, 2);
    CHECK_T(x, n, "layers.0.ffn.experts.7.w2.weight", WP_F8_E4M3, 256, 128);
    CHECK_T(x, n, "layers.0.attn.wkv.scale", WP_F32, 1, 2);
    CHECK_EQ_INT(count_required(x, n), 427);
    free(x);
}

/* tiny-a's tensor list, editable. */
typedef struct tlist {
    wp_tensor_info t[512];
    char names[512][160];
    size_t n;
} tlist;

static void tiny_list(tlist *L, const wp_ckpt *k)
{
    memset(L, 0, sizeof *L);
    L->n = wp_ckpt_count(k);
    REQUIRE(L->n <= 500);
    for (size_t i = 0; i < L->n; i++) {
        L->t[i] = *wp_ckpt_tensor(k, i);
        snprintf(L->names[i], sizeof L->names[i], "%s", L->t[i].name);
        L->t[i].name = L->names[i];
    }
}

static wp_tensor_info *lfind(tlist *L, const char *name)
{
    for (size_t i = 0; i < L->n; i++)
        if (!strcmp(L->names[i], name)) return &L->t[i];
    return NULL;
}

static void ladd(tlist *L, const char *name, wp_dtype dt, uint64_t d0, uint64_t d1)
{
    wp_tensor_info *t = &L->t[L->n];
    snprintf(L->names[L->n], sizeof L->names[0], "%s", name);
    memset(t, 0, sizeof *t);
    t->name = L->names[L->n++];
    t->dtype = dt;
    t->ndim = 2;
    t->shape[0] = d0;
    t->shape[1] = d1;
}

static void run_check(tlist *L, wp_inv_report *r)
{
    wp_config c;
    wp_err e = {0};
    REQUIRE(load_tiny(&c) == 0);
    REQUIRE(wp_inventory_check_list(&c, L->t, L->n, r, &e) == 0);
}

TEST(model_inventory_check_reports)
{
    tlist *L = malloc(sizeof *L);
    REQUIRE(L);
    wp_ckpt *k;
    wp_inv_report r;
    wp_err e = {0};
    REQUIRE(wp_ckpt_open(&k, TINY_HF, &e) == 0);
    tiny_list(L, k);

    /* removed: one missing, named, with what was expected */
    wp_tensor_info *t = lfind(L, "layers.1.attn.indexer.wq_b.scale");
    REQUIRE(t);
    *t = L->t[--L->n];
    run_check(L, &r);
    CHECK_EQ_INT(r.n_missing, 1);
    CHECK_EQ_INT(wp_inv_problems(&r), 1);
    REQUIRE(r.n_issues == 1);
    CHECK_EQ_INT(r.issues[0].kind, WP_INV_MISSING);
    CHECK(!strcmp(r.issues[0].name, "layers.1.attn.indexer.wq_b.scale"));
    CHECK(!strcmp(r.issues[0].detail, "expected F8_E8M0 [16,1], not in the checkpoint"));
    wp_inv_report_free(&r);

    /* renamed: missing + unexpected */
    tiny_list(L, k);
    t = lfind(L, "layers.2.ffn.gate.bias");
    snprintf((char *)t->name, 160, "layers.2.ffn.gate.tid2eid");
    run_check(L, &r);
    CHECK_EQ_INT(r.n_missing, 1);
    CHECK_EQ_INT(r.n_unexpected, 1);
    /* the tid2eid name exists in the inventory only for hash layers, so it
     * is unexpected here, whatever its dtype */
    CHECK_EQ_INT(wp_inv_problems(&r), 2);
    REQUIRE(r.n_issues == 2);
    CHECK(!strcmp(r.issues[0].name, "layers.2.ffn.gate.bias"));
    CHECK(!strcmp(r.issues[1].name, "layers.2.ffn.gate.tid2eid"));
    CHECK(!strcmp(r.issues[1].detail, "found F32 [8], not implied by config.json"));
    wp_inv_report_free(&r);

    /* reshaped and retyped */
    tiny_list(L, k);
    lfind(L, "layers.3.attn.compressor.ape")->shape[0] = 128;
    lfind(L, "mtp.0.norm.weight")->dtype = WP_F32;
    run_check(L, &r);
    CHECK_EQ_INT(r.n_mis_shaped, 1);
    CHECK_EQ_INT(r.n_mis_typed, 1);
    CHECK_EQ_INT(wp_inv_problems(&r), 2);
    REQUIRE(r.n_issues == 2);
    CHECK(!strcmp(r.issues[0].name, "layers.3.attn.compressor.ape"));
    CHECK(!strcmp(r.issues[0].detail, "expected F32 [4,256], found F32 [128,256]"));
    CHECK(!strcmp(r.issues[1].detail, "expected BF16 [256], found F32 [256]"));
    wp_inv_report_free(&r);

    /* a rank change is a shape problem too */
    tiny_list(L, k);
    t = lfind(L, "norm.weight");
    t->ndim = 2;
    t->shape[1] = 1;
    run_check(L, &r);
    CHECK_EQ_INT(r.n_mis_shaped, 1);
    wp_inv_report_free(&r);

    /* MTP embed/head copies (Flash-Base style) are optional, not problems */
    tiny_list(L, k);
    ladd(L, "mtp.0.head.weight", WP_BF16, 512, 256);
    ladd(L, "mtp.0.emb.tok_emb.weight", WP_BF16, 512, 256);
    run_check(L, &r);
    CHECK_EQ_INT(wp_inv_problems(&r), 0);
    CHECK_EQ_INT(r.n_optional_present, 2);
    CHECK_EQ_INT(r.n_expected, 427);
    wp_inv_report_free(&r);
    /* ...but a copy of the wrong shape is, and so is one on a missing MTP */
    tiny_list(L, k);
    ladd(L, "mtp.0.head.weight", WP_BF16, 256, 512);
    ladd(L, "mtp.1.embed.weight", WP_BF16, 512, 256);
    run_check(L, &r);
    CHECK_EQ_INT(r.n_mis_shaped, 1);
    CHECK_EQ_INT(r.n_unexpected, 1);
    wp_inv_report_free(&r);

    /* an empty checkpoint: everything missing */
    tiny_list(L, k);
    L->n = 0;
    run_check(L, &r);
    CHECK_EQ_INT(r.n_missing, 427);
    CHECK_EQ_INT(r.n_issues, 427);
    wp_inv_report_free(&r);

    /* tiny-a against the Flash config: the list is capped per kind, the
     * counts are exact, and 68k missing tensors do not hide a mis-shape */
    tiny_list(L, k);
    wp_config flash;
    spec_config(&flash, 0);
    REQUIRE(wp_inventory_check_list(&flash, L->t, L->n, &r, &e) == 0);
    size_t kept[4] = {0};
    for (size_t i = 0; i < r.n_issues; i++) kept[r.issues[i].kind]++;
    CHECK(r.n_missing > 60000);
    CHECK_EQ_INT(kept[WP_INV_MISSING], WP_INV_MAX_ISSUES);
    CHECK(r.n_mis_shaped > 100 && r.n_mis_shaped < WP_INV_MAX_ISSUES);
    CHECK_EQ_INT(kept[WP_INV_SHAPE], r.n_mis_shaped);
    CHECK_EQ_INT(kept[WP_INV_UNEXPECTED], r.n_unexpected);
    /* unexpected: layer 1 is CSA in tiny, sliding-window in Flash (4
     * compressor + 7 indexer); layer 3 CSA vs HCA (7 indexer); layers 1, 2
     * biased in tiny, hash-routed in Flash (2 gate.bias) */
    CHECK_EQ_INT(r.n_unexpected, 20);
    CHECK_EQ_INT(r.n_found, 427);
    wp_inv_report_free(&r);
    wp_ckpt_close(k);
    free(L);
}

TEST(model_inventory_family_counts_tiny_a)
{
    wp_config c;
    wp_err e = {0};
    wp_ckpt *k;
    REQUIRE(load_tiny(&c) == 0);
    REQUIRE(wp_ckpt_open(&k, TINY_HF, &e) == 0);
    size_t cnt[WP_FAM_COUNT] = {0};
    for (size_t i = 0; i < wp_ckpt_count(k); i++) cnt[wp_family_of(wp_ckpt_tensor(k, i)->name)]++;
    /* 4 main layers: attention 13 each; CSA layers 1,3 have a 7-tensor
     * indexer; layers 1,2,3 a 4-tensor compressor; 48 expert tensors each */
    CHECK_EQ_INT(cnt[WP_FAM_EMBED], 1);
    CHECK_EQ_INT(cnt[WP_FAM_HEAD], 1);
    CHECK_EQ_INT(cnt[WP_FAM_NORM], 1 + 4 * 2);
    CHECK_EQ_INT(cnt[WP_FAM_HC], 3 + 4 * 6);
    CHECK_EQ_INT(cnt[WP_FAM_ATTN], 4 * 13);
    CHECK_EQ_INT(cnt[WP_FAM_INDEXER], 2 * 7);
    CHECK_EQ_INT(cnt[WP_FAM_COMPRESSOR], 3 * 4);
    CHECK_EQ_INT(cnt[WP_FAM_ROUTER], 4 * 2);
    CHECK_EQ_INT(cnt[WP_FAM_SHARED_EXPERTS], 4 * 6);
    CHECK_EQ_INT(cnt[WP_FAM_EXPERTS], 4 * 48);
    CHECK_EQ_INT(cnt[WP_FAM_MTP], 87);
    CHECK_EQ_INT(cnt[WP_FAM_OTHER], 0);
    wp_ckpt_close(k);
}

TEST(model_family_names)
{
    static const struct { const char *name; wp_family fam, inner; } cases[] = {
        {"embed.weight", WP_FAM_EMBED, WP_FAM_EMBED},
        {"head.weight", WP_FAM_HEAD, WP_FAM_HEAD},
        {"norm.weight", WP_FAM_NORM, WP_FAM_NORM},
        {"hc_head_scale", WP_FAM_HC, WP_FAM_HC},
        {"layers.12.attn_norm.weight", WP_FAM_NORM, WP_FAM_NORM},
        {"layers.3.attn.q_norm.weight", WP_FAM_ATTN, WP_FAM_ATTN},
        {"layers.3.attn.wo_a.scale", WP_FAM_ATTN, WP_FAM_ATTN},
        {"layers.3.attn.attn_sink", WP_FAM_ATTN, WP_FAM_ATTN},
        {"layers.3.attn.compressor.ape", WP_FAM_COMPRESSOR, WP_FAM_COMPRESSOR},
        {"layers.3.attn.indexer.compressor.ape", WP_FAM_INDEXER, WP_FAM_INDEXER},
        {"layers.3.attn.indexer.wq_b.weight", WP_FAM_INDEXER, WP_FAM_INDEXER},
        {"layers.3.ffn.gate.tid2eid", WP_FAM_ROUTER, WP_FAM_ROUTER},
        {"layers.3.ffn.shared_experts.w2.scale", WP_FAM_SHARED_EXPERTS, WP_FAM_SHARED_EXPERTS},
        {"layers.3.ffn.experts.17.w3.weight", WP_FAM_EXPERTS, WP_FAM_EXPERTS},
        {"layers.3.ffn.experts.w13.weight", WP_FAM_EXPERTS, WP_FAM_EXPERTS},   /* stacked */
        {"layers.3.hc_ffn_fn", WP_FAM_HC, WP_FAM_HC},
        {"mtp.0.ffn.experts.3.w1.weight", WP_FAM_MTP, WP_FAM_EXPERTS},
        {"mtp.0.attn.wq_a.weight", WP_FAM_MTP, WP_FAM_ATTN},
        {"mtp.0.enorm.weight", WP_FAM_MTP, WP_FAM_NORM},
        {"mtp.0.norm.weight", WP_FAM_MTP, WP_FAM_NORM},
        {"mtp.0.hc_head_fn", WP_FAM_MTP, WP_FAM_HC},
        {"mtp.0.e_proj.weight", WP_FAM_MTP, WP_FAM_MTP},
        {"mtp.0.head.weight", WP_FAM_MTP, WP_FAM_MTP},
        {"layers.x.attn.wq_a.weight", WP_FAM_OTHER, WP_FAM_OTHER},
        {"model.layers.0.attn.wq_a.weight", WP_FAM_OTHER, WP_FAM_OTHER},
        {"layers.3.mlp.gate.weight", WP_FAM_OTHER, WP_FAM_OTHER},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        CHECKF(wp_family_of(cases[i].name) == cases[i].fam, "%s: %s", cases[i].name,
               wp_family_name(wp_family_of(cases[i].name)));
        CHECKF(wp_family_inner(cases[i].name) == cases[i].inner, "%s: inner %s", cases[i].name,
               wp_family_name(wp_family_inner(cases[i].name)));
    }
    CHECK(!strcmp(wp_family_name(WP_FAM_SHARED_EXPERTS), "shared_experts"));
    CHECK(!strcmp(wp_family_name(WP_FAM_ATTN), "attention"));
    CHECK_EQ_INT(wp_layer_of("layers.42.ffn_norm.weight"), 42);
    CHECK_EQ_INT(wp_layer_of("layers.0.x"), 0);
    CHECK_EQ_INT(wp_layer_of("layers.01.x"), -1);   /* not a canonical index */
    CHECK_EQ_INT(wp_layer_of("layers.7"), -1);
    CHECK_EQ_INT(wp_layer_of("layers..x"), -1);
    CHECK_EQ_INT(wp_layer_of("layers.-1.x"), -1);
    CHECK_EQ_INT(wp_layer_of("mtp.0.x"), -1);
    CHECK_EQ_INT(wp_mtp_of("mtp.2.enorm.weight"), 2);
    CHECK_EQ_INT(wp_mtp_of("layers.2.x"), -1);
    wp_config c;
    REQUIRE(load_tiny(&c) == 0);
    CHECK_EQ_INT(wp_layer_id(&c, "mtp.0.enorm.weight"), 4);
    CHECK_EQ_INT(wp_layer_id(&c, "layers.3.attn.attn_sink"), 3);
    CHECK_EQ_INT(wp_layer_id(&c, "hc_head_fn"), -1);
    CHECK_EQ_INT(wp_mtp_copy_kind("mtp.0.head.weight"), 2);
    CHECK_EQ_INT(wp_mtp_copy_kind("mtp.0.emb.tok_emb.weight"), 1);
    CHECK_EQ_INT(wp_mtp_copy_kind("mtp.0.embed.weight"), 1);
    CHECK_EQ_INT(wp_mtp_copy_kind("mtp.0.hc_head_fn"), 0);
    CHECK_EQ_INT(wp_mtp_copy_kind("mtp.0.norm.weight"), 0);
    CHECK_EQ_INT(wp_mtp_copy_kind("head.weight"), 0);
}
