/* test_config.c — config.json -> wp_config: tiny-a values, every rejection
 * rule with its one-line message, defaults, and the JSON round trip. */
#include <cjson/cJSON.h>

#include "model/model.h"
#include "tests/harness.h"

#define TINY_CONFIG WPT_TINY "/hf/config.json"

TEST(model_config_tiny_a)
{
    wp_config c;
    wp_err e = {0};
    REQUIRE(wp_config_load(&c, TINY_CONFIG, &e) == 0);
    /* values: tests/fixtures/tiny-a/hf/config.json (= fixtures README table) */
    CHECK_EQ_INT(c.vocab_size, 512);
    CHECK_EQ_INT(c.dim, 256);
    CHECK_EQ_INT(c.n_layers, 4);
    CHECK_EQ_INT(c.n_mtp_layers, 1);
    CHECK_EQ_INT(c.n_heads, 4);
    CHECK_EQ_INT(c.n_kv_heads, 1);
    CHECK_EQ_INT(c.head_dim, 128);
    CHECK_EQ_INT(c.rope_head_dim, 64);
    CHECK_EQ_INT(c.q_lora_rank, 128);
    CHECK_EQ_INT(c.o_groups, 2);
    CHECK_EQ_INT(c.o_lora_rank, 64);
    CHECK_EQ_INT(c.window_size, 32);
    CHECK_EQ_INT(c.n_routed_experts, 8);
    CHECK_EQ_INT(c.n_shared_experts, 1);
    CHECK_EQ_INT(c.n_activated_experts, 2);
    CHECK_EQ_INT(c.moe_inter_dim, 128);
    CHECK_EQ_INT(c.n_hash_layers, 1);
    CHECK_EQ_INT(c.index_n_heads, 16);
    CHECK_EQ_INT(c.index_head_dim, 128);
    CHECK_EQ_INT(c.index_topk, 16);
    CHECK_EQ_INT(c.hc_mult, 4);
    CHECK_EQ_INT(c.hc_sinkhorn_iters, 20);
    CHECK(c.hc_eps == 1e-6 && c.norm_eps == 1e-6);
    CHECK(c.route_scale == 2.5 && c.swiglu_limit == 10.0);
    CHECK(c.rope_theta == 10000.0 && c.compress_rope_theta == 160000.0);
    CHECK(c.rope_factor == 4.0 && c.beta_fast == 32 && c.beta_slow == 1);
    CHECK_EQ_INT(c.original_seq_len, 64);
    CHECK_EQ_INT(c.max_position_embeddings, 512);
    CHECK_EQ_INT(c.bos_token_id, 0);
    CHECK_EQ_INT(c.eos_token_id, 1);
    CHECK(!strcmp(c.score_func, "sqrtsoftplus"));
    CHECK_EQ_INT(c.n_compress_ratios, 5);
    static const int ratios[5] = {0, 4, 128, 4, 0};
    for (int i = 0; i < 5; i++) CHECK_EQ_INT(c.compress_ratios[i], ratios[i]);
    CHECK(!strcmp(c.quant_method, "fp8") && !strcmp(c.quant_fmt, "e4m3"));
    CHECK(!strcmp(c.scale_fmt, "ue8m0"));
    CHECK_EQ_INT(wp_config_scale_dtype(&c), WP_F8_E8M0);
    CHECK_EQ_INT(c.weight_block[0], 128);
    CHECK_EQ_INT(c.weight_block[1], 128);
    CHECK(!strcmp(c.expert_dtype, "fp4"));
    CHECK(wp_config_is_hash(&c, 0) && !wp_config_is_hash(&c, 1) && !wp_config_is_hash(&c, 4));
}

/* tiny-a's config as a cJSON tree, for mutation. */
static cJSON *tiny_json(void)
{
    uint8_t *d;
    size_t n;
    if (wpt_read_file(TINY_CONFIG, &d, &n)) return NULL;
    cJSON *j = cJSON_ParseWithLength((const char *)d, n);
    free(d);
    return j;
}

/* Parse a (mutated) tree; returns the rc and leaves the message in e. */
static int parse_tree(cJSON *j, wp_config *c, wp_err *e)
{
    char *s = cJSON_PrintUnformatted(j);
    wp_err_clear(e);
    int rc = wp_config_parse(c, s, strlen(s), "config.json", e);
    free(s);
    return rc;
}

static void set(cJSON *obj, const char *key, cJSON *v)
{
    if (cJSON_GetObjectItemCaseSensitive(obj, key))
        cJSON_ReplaceItemInObjectCaseSensitive(obj, key, v);
    else
        cJSON_AddItemToObject(obj, key, v);
}

static cJSON *int_array(const int *v, int n)
{
    return cJSON_CreateIntArray(v, n);
}

enum { DEL, NUM, STR, RAW };
static const struct {
    const char *sub;      /* NULL: root; else the nested object's key */
    const char *key;
    int op;
    double num;
    const char *str;      /* STR: string value; RAW: JSON text */
    const char *msg;      /* the whole expected message */
} bad_cases[] = {
    {NULL, "hidden_size", DEL, 0, NULL, "config.json: hidden_size: missing"},
    {NULL, "hidden_size", STR, 0, "256", "config.json: hidden_size: expected an integer, found string"},
    {NULL, "hidden_size", NUM, 4096.5, NULL, "config.json: hidden_size: expected an integer, found 4096.5"},
    {NULL, "hidden_size", NUM, 1e10, NULL, "config.json: hidden_size: expected an integer, found 10000000000"},
    {NULL, "hidden_size", NUM, 0, NULL, "config.json: hidden_size: must be >= 1, found 0"},
    {NULL, "vocab_size", RAW, 0, "null", "config.json: vocab_size: expected an integer, found null"},
    {NULL, "num_hidden_layers", RAW, 0, "true", "config.json: num_hidden_layers: expected an integer, found boolean"},
    {NULL, "num_hash_layers", NUM, 5, NULL, "config.json: num_hash_layers: must be <= num_hidden_layers (4), found 5"},
    {NULL, "num_key_value_heads", NUM, 8, NULL, "config.json: num_key_value_heads: DeepSeek-V4 has one shared KV head, found 8"},
    {NULL, "o_groups", NUM, 3, NULL, "config.json: o_groups: must divide num_attention_heads (4), found 3"},
    {NULL, "num_experts_per_tok", NUM, 9, NULL, "config.json: num_experts_per_tok: must be <= n_routed_experts (8), found 9"},
    {NULL, "qk_rope_head_dim", NUM, 63, NULL, "config.json: qk_rope_head_dim: must be even and <= head_dim (128), found 63"},
    {NULL, "moe_intermediate_size", NUM, 48, NULL, "config.json: moe_intermediate_size: must be a multiple of 32 for fp4 experts, found 48"},
    {NULL, "scoring_func", STR, 0, "relu", "config.json: scoring_func: unsupported value \"relu\" (expected sqrtsoftplus, softmax, sigmoid)"},
    {NULL, "expert_dtype", STR, 0, "fp6", "config.json: expert_dtype: unsupported value \"fp6\" (expected fp4, fp8)"},
    {NULL, "hc_eps", STR, 0, "1e-6", "config.json: hc_eps: expected a number, found string"},
    {NULL, "rms_norm_eps", NUM, 0, NULL, "config.json: rms_norm_eps: must be > 0, found 0"},
    {NULL, "rope_theta", DEL, 0, NULL, "config.json: rope_theta: missing"},
    {NULL, "compress_ratios", DEL, 0, NULL, "config.json: compress_ratios: missing"},
    {NULL, "compress_ratios", RAW, 0, "[0,4,128,4]", "config.json: compress_ratios: has 4 entries, expected num_hidden_layers + num_nextn_predict_layers = 5"},
    {NULL, "compress_ratios", RAW, 0, "[0,4,3,4,0]", "config.json: compress_ratios[2]: must be 0 or a power of two >= 2, found 3"},
    {NULL, "compress_ratios", RAW, 0, "[0,4,1,4,0]", "config.json: compress_ratios[2]: must be 0 or a power of two >= 2, found 1"},
    {NULL, "compress_ratios", RAW, 0, "[0,4.5,128,4,0]", "config.json: compress_ratios[1]: expected an integer, found 4.5"},
    {NULL, "compress_ratios", RAW, 0, "\"0,4\"", "config.json: compress_ratios: expected an array, found string"},
    {NULL, "num_nextn_predict_layers", NUM, 0, NULL, "config.json: compress_ratios: has 5 entries, expected num_hidden_layers + num_nextn_predict_layers = 4"},
    {NULL, "num_hidden_layers", NUM, 600, NULL, "config.json: num_hidden_layers + num_nextn_predict_layers: 601 exceeds wpack's limit of 512"},
    {NULL, "rope_scaling", DEL, 0, NULL, "config.json: rope_scaling: missing"},
    {NULL, "rope_scaling", RAW, 0, "[1]", "config.json: rope_scaling: expected an object, found array"},
    {"rope_scaling", "type", STR, 0, "linear", "config.json: rope_scaling.type: unsupported value \"linear\" (expected yarn)"},
    {"rope_scaling", "original_max_position_embeddings", NUM, 64.25, NULL, "config.json: rope_scaling.original_max_position_embeddings: expected an integer, found 64.25"},
    {"rope_scaling", "factor", DEL, 0, NULL, "config.json: rope_scaling.factor: missing"},
    {NULL, "quantization_config", STR, 0, "fp8", "config.json: quantization_config: expected an object, found string"},
    {"quantization_config", "quant_method", STR, 0, "awq", "config.json: quantization_config.quant_method: unsupported value \"awq\" (expected fp8)"},
    {"quantization_config", "weight_block_size", DEL, 0, NULL, "config.json: quantization_config.weight_block_size: missing"},
    {"quantization_config", "weight_block_size", RAW, 0, "[128]", "config.json: quantization_config.weight_block_size: expected an array of 2 integers"},
    {"quantization_config", "weight_block_size", RAW, 0, "[128, \"128\"]", "config.json: quantization_config.weight_block_size[1]: expected an integer, found string"},
    {"quantization_config", "weight_block_size", RAW, 0, "[0, 128]", "config.json: quantization_config.weight_block_size[0]: must be >= 1, found 0"},
    {"quantization_config", "scale_fmt", STR, 0, "e5m2", "config.json: quantization_config.scale_fmt: unsupported value \"e5m2\" (expected ue8m0)"},
};

TEST(model_config_rejects)
{
    for (size_t i = 0; i < sizeof bad_cases / sizeof bad_cases[0]; i++) {
        cJSON *j = tiny_json();
        REQUIRE(j);
        cJSON *o = bad_cases[i].sub ? cJSON_GetObjectItemCaseSensitive(j, bad_cases[i].sub) : j;
        REQUIRE(o);
        switch (bad_cases[i].op) {
        case DEL: cJSON_DeleteItemFromObjectCaseSensitive(o, bad_cases[i].key); break;
        case NUM: set(o, bad_cases[i].key, cJSON_CreateNumber(bad_cases[i].num)); break;
        case STR: set(o, bad_cases[i].key, cJSON_CreateString(bad_cases[i].str)); break;
        case RAW: set(o, bad_cases[i].key, cJSON_Parse(bad_cases[i].str)); break;
        }
        wp_config c;
        wp_err e = {0};
        int rc = parse_tree(j, &c, &e);
        CHECKF(rc == WP_EINVAL, "case %zu (%s): rc %d", i, bad_cases[i].key, rc);
        CHECKF(!strcmp(e.msg, bad_cases[i].msg), "case %zu: got \"%s\", want \"%s\"", i, e.msg,
               bad_cases[i].msg);
        cJSON_Delete(j);
    }
}

TEST(model_config_rejects_text)
{
    wp_config c;
    wp_err e = {0};
    CHECK(wp_config_parse(&c, "{\"vocab", 7, "x/config.json", &e) == WP_EINVAL);
    CHECK(!strcmp(e.msg, "x/config.json: not valid JSON"));
    wp_err_clear(&e);
    CHECK(wp_config_parse(&c, "[1,2]", 5, "config.json", &e) == WP_EINVAL);
    CHECK(!strcmp(e.msg, "config.json: expected a JSON object, found array"));
    /* cJSON keeps duplicate keys and would silently use the first one */
    wp_err_clear(&e);
    const char *dup = "{\"vocab_size\": 512, \"vocab_size\": 1024}";
    CHECK(wp_config_parse(&c, dup, strlen(dup), "config.json", &e) == WP_EINVAL);
    CHECK(!strcmp(e.msg, "config.json: vocab_size: duplicate key"));
    /* keys are case-sensitive: "Hidden_Size" is not hidden_size */
    cJSON *j = tiny_json();
    REQUIRE(j);
    cJSON *v = cJSON_DetachItemFromObjectCaseSensitive(j, "hidden_size");
    cJSON_AddItemToObject(j, "Hidden_Size", v);
    CHECK(parse_tree(j, &c, &e) == WP_EINVAL);
    CHECK(!strcmp(e.msg, "config.json: hidden_size: missing"));
    cJSON_Delete(j);
    /* a missing file names the path */
    wp_err_clear(&e);
    CHECK(wp_config_load(&c, "/nonexistent/config.json", &e) != 0);
    CHECK_CONTAINS(e.msg, "/nonexistent/config.json");
}

TEST(model_config_defaults)
{
    cJSON *j = tiny_json();
    REQUIRE(j);
    /* spec §1.1: ModelArgs defaults (n_mtp_layers 1, hc_eps and norm_eps
     * 1e-6); expert_dtype absent in the initial Flash revision means fp4. */
    static const char *const optional[] = {"num_nextn_predict_layers", "hc_eps", "rms_norm_eps",
                                           "expert_dtype", "num_key_value_heads",
                                           "max_position_embeddings", "bos_token_id",
                                           "eos_token_id"};
    for (size_t i = 0; i < sizeof optional / sizeof optional[0]; i++)
        cJSON_DeleteItemFromObjectCaseSensitive(j, optional[i]);
    wp_config c;
    wp_err e = {0};
    REQUIRE(parse_tree(j, &c, &e) == 0);
    CHECK_EQ_INT(c.n_mtp_layers, 1);
    CHECK(c.hc_eps == 1e-6 && c.norm_eps == 1e-6);
    CHECK(!strcmp(c.expert_dtype, "fp4"));
    CHECK_EQ_INT(c.n_kv_heads, 1);
    CHECK_EQ_INT(c.max_position_embeddings, 0);
    CHECK_EQ_INT(c.bos_token_id, -1);
    CHECK_EQ_INT(c.eos_token_id, -1);
    /* scale_fmt null (V3 style) means F32 scales */
    cJSON *q = cJSON_GetObjectItemCaseSensitive(j, "quantization_config");
    cJSON_ReplaceItemInObjectCaseSensitive(q, "scale_fmt", cJSON_CreateNull());
    REQUIRE(parse_tree(j, &c, &e) == 0);
    CHECK(c.scale_fmt[0] == 0);
    CHECK_EQ_INT(wp_config_scale_dtype(&c), WP_F32);
    /* V4.1 32x32 blocks are read, not assumed */
    static const int b32[2] = {32, 32};
    cJSON_ReplaceItemInObjectCaseSensitive(q, "weight_block_size", int_array(b32, 2));
    REQUIRE(parse_tree(j, &c, &e) == 0);
    CHECK_EQ_INT(c.weight_block[0], 32);
    CHECK_EQ_INT(c.weight_block[1], 32);
    /* no MTP: compress_ratios has exactly num_hidden_layers entries */
    static const int r4[4] = {0, 4, 128, 4};
    set(j, "num_nextn_predict_layers", cJSON_CreateNumber(0));
    set(j, "compress_ratios", int_array(r4, 4));
    REQUIRE(parse_tree(j, &c, &e) == 0);
    CHECK_EQ_INT(c.n_mtp_layers, 0);
    CHECK_EQ_INT(c.n_compress_ratios, 4);
    /* other powers of two are accepted as compressor ratios */
    static const int r5[5] = {0, 4, 16, 2, 0};
    set(j, "num_nextn_predict_layers", cJSON_CreateNumber(1));
    set(j, "compress_ratios", int_array(r5, 5));
    REQUIRE(parse_tree(j, &c, &e) == 0);
    CHECK_EQ_INT(c.compress_ratios[2], 16);
    cJSON_Delete(j);
}

/* 256.0 is the integer 256 (an exact value), 256.5 is not. */
TEST(model_config_integral_float)
{
    uint8_t *d;
    size_t n;
    REQUIRE(wpt_read_file(TINY_CONFIG, &d, &n) == 0);
    char *t = malloc(n + 8);
    REQUIRE(t);
    const char *k = "\"hidden_size\": 256", *p = strstr((const char *)d, k);
    REQUIRE(p);
    size_t at = (size_t)(p - (const char *)d) + strlen(k);
    memcpy(t, d, at);
    memcpy(t + at, ".0", 2);
    memcpy(t + at + 2, d + at, n - at);
    wp_config c;
    wp_err e = {0};
    CHECK(wp_config_parse(&c, t, n + 2, "config.json", &e) == 0);
    CHECK_EQ_INT(c.dim, 256);
    t[at + 1] = '5';
    CHECK(wp_config_parse(&c, t, n + 2, "config.json", &e) == WP_EINVAL);
    CHECK(!strcmp(e.msg, "config.json: hidden_size: expected an integer, found 256.5"));
    free(t);
    free(d);
}

TEST(model_config_json_roundtrip)
{
    wp_config a, b;
    wp_err e = {0};
    REQUIRE(wp_config_load(&a, TINY_CONFIG, &e) == 0);
    cJSON *j = wp_config_to_json(&a);
    REQUIRE(j);
    char *s1 = cJSON_Print(j);
    /* HF key names, all of them */
    CHECK_EQ_INT(cJSON_GetObjectItemCaseSensitive(j, "hidden_size")->valueint, 256);
    CHECK_EQ_INT(cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(j, "compress_ratios")), 5);
    CHECK(cJSON_GetObjectItemCaseSensitive(j, "dim") == NULL);
    CHECK_CONTAINS(s1, "\"weight_block_size\":\t[128, 128]");
    CHECK_CONTAINS(s1, "\"rms_norm_eps\":\t1e-06");
    REQUIRE(wp_config_parse(&b, s1, strlen(s1), "rt.json", &e) == 0);
    CHECK(memcmp(&a, &b, sizeof a) == 0);
    /* deterministic: the same config prints the same text */
    cJSON *j2 = wp_config_to_json(&b);
    char *s2 = cJSON_Print(j2);
    CHECK(!strcmp(s1, s2));
    free(s1);
    free(s2);
    cJSON_Delete(j);
    cJSON_Delete(j2);
}
