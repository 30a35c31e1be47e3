/*
 * config.c — HF config.json -> wp_config (spec §1.1) and back.
 *
 * Every rule is a one-line error naming the file and the key:
 *   "config.json: hidden_size: missing"
 *   "config.json: hidden_size: expected an integer, found string"
 *   "config.json: hidden_size: expected an integer, found 4096.5"
 * Which keys are required and which have defaults is documented in
 * docs/config.md; in short, a key the spec's table shows in the official
 * config.json is required, except those the spec marks as ModelArgs
 * defaults (num_nextn_predict_layers, hc_eps, rms_norm_eps) and expert_dtype
 * (absent from the initial Flash revision).
 */
#include <cjson/cJSON.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "model/model.h"

/* ---- limits ------------------------------------------------------------------
 * Every count read from config.json is bounded before anything is sized by
 * it (docs/config.md, "Limits"): generous maxima, 8x or more above the
 * largest official model (V4-Pro), so a hostile or mistyped file is refused
 * in one line instead of sizing an inventory, a buffer or a loop. */
#define MAX_VOCAB (1 << 21)          /* 129,280 */
#define MAX_DIM (1 << 16)            /* hidden_size, ranks, moe_intermediate_size: 7168, 1536, 3072 */
#define MAX_HEADS 1024               /* num_attention_heads, index_n_heads, o_groups: 128, 64, 16 */
#define MAX_HEAD_DIM 4096            /* head_dim, index_head_dim: 512, 128 */
#define MAX_WINDOW (1 << 16)         /* sliding_window, index_topk: 128, 1024 */
#define MAX_EXPERTS 4096             /* n_routed_experts, num_experts_per_tok: 384, 6 */
#define MAX_SHARED 64                /* n_shared_experts: 1 */
#define MAX_HC 64                    /* hc_mult: 4 */
#define MAX_SINKHORN 1000            /* hc_sinkhorn_iters: 20 */
#define MAX_POSITIONS (1 << 24)      /* max_position_embeddings, original_...: 2^20, 65536 */
#define MAX_RATIO 1024               /* compress_ratios[i]: 128 */
#define MAX_BLOCK 65536              /* weight_block_size[i]: 128 */
/* The inventory a config implies (an upper bound of wp_inventory's count):
 * V4-Pro implies 145,116 tensors. */
#define MAX_IMPLIED_TENSORS (1u << 19)
/* With the checkpoint known: its routed-expert tensors alone may not exceed
 * this many times the tensors the checkpoint holds. */
#define CKPT_EXPERT_FACTOR 4

/* ---- typed getters --------------------------------------------------------- */

static const char *json_type_name(const cJSON *v)
{
    if (cJSON_IsString(v)) return "string";
    if (cJSON_IsNumber(v)) return "number";
    if (cJSON_IsBool(v)) return "boolean";
    if (cJSON_IsNull(v)) return "null";
    if (cJSON_IsArray(v)) return "array";
    if (cJSON_IsObject(v)) return "object";
    return "invalid value";
}

/* Case-sensitive lookup that also rejects a key given twice: cJSON keeps
 * duplicates and would silently use the first. */
static int get_item(const cJSON *obj, const char *key, const char *path, const char *ctx,
                    const cJSON **out, wp_err *e)
{
    const cJSON *found = NULL;
    for (const cJSON *it = obj->child; it; it = it->next) {
        if (!it->string || strcmp(it->string, key)) continue;
        if (found) return wp_fail(e, WP_EINVAL, "%s: %s%s: duplicate key", path, ctx, key);
        found = it;
    }
    *out = found;
    return 0;
}

/* An integer must be an exact JSON integer in int range: 4096.5 or 1e10 is
 * an error, never truncated.  (4096.0 is the same number and accepted.) */
static int want_int(const cJSON *v, const char *path, const char *ctx, const char *key, int *out,
                    wp_err *e)
{
    if (!cJSON_IsNumber(v))
        return wp_fail(e, WP_EINVAL, "%s: %s%s: expected an integer, found %s", path, ctx, key,
                       json_type_name(v));
    double d = v->valuedouble;
    if (!(d == floor(d)) || d < -2147483648.0 || d > 2147483647.0)
        return wp_fail(e, WP_EINVAL, "%s: %s%s: expected an integer, found %.17g", path, ctx, key,
                       d);
    *out = (int)d;
    return 0;
}

static int get_int(const cJSON *obj, const char *key, int required, int dflt, int min, int max,
                   const char *path, const char *ctx, int *out, wp_err *e)
{
    const cJSON *v;
    if (get_item(obj, key, path, ctx, &v, e)) return WP_EINVAL;
    if (!v) {
        if (required) return wp_fail(e, WP_EINVAL, "%s: %s%s: missing", path, ctx, key);
        *out = dflt;
        return 0;
    }
    if (want_int(v, path, ctx, key, out, e)) return WP_EINVAL;
    if (*out < min)
        return wp_fail(e, WP_EINVAL, "%s: %s%s: must be >= %d, found %d", path, ctx, key, min,
                       *out);
    if (*out > max)
        return wp_fail(e, WP_EINVAL, "%s: %s%s: must be <= %d (wpack's limit), found %d", path,
                       ctx, key, max, *out);
    return 0;
}

/* Finite number; `positive` rejects <= 0. */
static int get_num(const cJSON *obj, const char *key, int required, double dflt, int positive,
                   const char *path, const char *ctx, double *out, wp_err *e)
{
    const cJSON *v;
    if (get_item(obj, key, path, ctx, &v, e)) return WP_EINVAL;
    if (!v) {
        if (required) return wp_fail(e, WP_EINVAL, "%s: %s%s: missing", path, ctx, key);
        *out = dflt;
        return 0;
    }
    if (!cJSON_IsNumber(v))
        return wp_fail(e, WP_EINVAL, "%s: %s%s: expected a number, found %s", path, ctx, key,
                       json_type_name(v));
    *out = v->valuedouble;
    if (!isfinite(*out))
        return wp_fail(e, WP_EINVAL, "%s: %s%s: expected a finite number", path, ctx, key);
    if (positive ? !(*out > 0) : *out < 0)
        return wp_fail(e, WP_EINVAL, "%s: %s%s: must be %s, found %.17g", path, ctx, key,
                       positive ? "> 0" : ">= 0", *out);
    return 0;
}

/* A string from a fixed set (NULL-terminated `allowed`), copied into out. */
static int get_enum(const cJSON *obj, const char *key, int required, const char *dflt,
                    const char *const *allowed, const char *path, const char *ctx, char *out,
                    size_t outsz, wp_err *e)
{
    const cJSON *v;
    if (get_item(obj, key, path, ctx, &v, e)) return WP_EINVAL;
    const char *s = dflt;
    if (!v) {
        if (required) return wp_fail(e, WP_EINVAL, "%s: %s%s: missing", path, ctx, key);
    } else {
        if (!cJSON_IsString(v))
            return wp_fail(e, WP_EINVAL, "%s: %s%s: expected a string, found %s", path, ctx, key,
                           json_type_name(v));
        s = v->valuestring;
        int ok = 0;
        for (size_t i = 0; allowed[i]; i++) ok |= !strcmp(s, allowed[i]);
        if (!ok) {
            char list[128] = "";
            for (size_t i = 0; allowed[i]; i++) {
                strncat(list, i ? ", " : "", sizeof list - strlen(list) - 1);
                strncat(list, allowed[i], sizeof list - strlen(list) - 1);
            }
            return wp_fail(e, WP_EINVAL, "%s: %s%s: unsupported value \"%.64s\" (expected %s)",
                           path, ctx, key, s, list);
        }
    }
    snprintf(out, outsz, "%s", s);
    return 0;
}

static int get_object(const cJSON *obj, const char *key, const char *path, const cJSON **out,
                      wp_err *e)
{
    if (get_item(obj, key, path, "", out, e)) return WP_EINVAL;
    if (!*out) return wp_fail(e, WP_EINVAL, "%s: %s: missing", path, key);
    if (!cJSON_IsObject(*out))
        return wp_fail(e, WP_EINVAL, "%s: %s: expected an object, found %s", path, key,
                       json_type_name(*out));
    return 0;
}

/* ---- parse ----------------------------------------------------------------- */

static int is_pow2(int x) { return x > 0 && (x & (x - 1)) == 0; }

static int parse_ratios(wp_config *c, const cJSON *root, const char *path, wp_err *e)
{
    const cJSON *a;
    if (get_item(root, "compress_ratios", path, "", &a, e)) return WP_EINVAL;
    if (!a) return wp_fail(e, WP_EINVAL, "%s: compress_ratios: missing", path);
    if (!cJSON_IsArray(a))
        return wp_fail(e, WP_EINVAL, "%s: compress_ratios: expected an array, found %s", path,
                       json_type_name(a));
    int n = cJSON_GetArraySize(a), want = c->n_layers + c->n_mtp_layers;
    /* spec §1.2: one entry per main layer, then one per MTP layer */
    if (n != want)
        return wp_fail(e, WP_EINVAL,
                       "%s: compress_ratios: has %d entries, expected num_hidden_layers + "
                       "num_nextn_predict_layers = %d",
                       path, n, want);
    int i = 0;
    for (const cJSON *v = a->child; v; v = v->next, i++) {
        char key[40];
        snprintf(key, sizeof key, "compress_ratios[%d]", i);
        if (want_int(v, path, "", key, &c->compress_ratios[i], e)) return WP_EINVAL;
        /* 0 = sliding window only; otherwise the compressor pools `ratio`
         * tokens (4 CSA, 128 HCA in the official models).  Any power of two
         * >= 2 is a well-defined compressor; other values are not models
         * anyone ships, so they are rejected as typos. */
        int r = c->compress_ratios[i];
        if (r != 0 && !(r >= 2 && is_pow2(r)))
            return wp_fail(e, WP_EINVAL,
                           "%s: %s: must be 0 or a power of two >= 2, found %d", path, key, r);
        if (r > MAX_RATIO)
            return wp_fail(e, WP_EINVAL, "%s: %s: must be <= %d (wpack's limit), found %d", path,
                           key, MAX_RATIO, r);
    }
    c->n_compress_ratios = n;
    return 0;
}

static int parse_rope_scaling(wp_config *c, const cJSON *root, const char *path, wp_err *e)
{
    static const char *const yarn[] = {"yarn", NULL};
    const cJSON *rs;
    const char *ctx = "rope_scaling.";
    char type[16];
    if (get_object(root, "rope_scaling", path, &rs, e)) return WP_EINVAL;
    /* HF spells the kind "type" in these files; newer transformers "rope_type" */
    const cJSON *t;
    if (get_item(rs, "type", path, ctx, &t, e)) return WP_EINVAL;
    if (get_enum(rs, t ? "type" : "rope_type", 1, NULL, yarn, path, ctx, type, sizeof type, e) ||
        get_num(rs, "factor", 1, 0, 1, path, ctx, &c->rope_factor, e) ||
        get_int(rs, "original_max_position_embeddings", 1, 0, 1, MAX_POSITIONS, path, ctx, &c->original_seq_len,
                e) ||
        get_num(rs, "beta_fast", 1, 0, 1, path, ctx, &c->beta_fast, e) ||
        get_num(rs, "beta_slow", 1, 0, 1, path, ctx, &c->beta_slow, e))
        return WP_EINVAL;
    return 0;
}

static int parse_quant(wp_config *c, const cJSON *root, const char *path, wp_err *e)
{
    static const char *const fp8[] = {"fp8", NULL}, *const e4m3[] = {"e4m3", NULL},
                             *const ue8m0[] = {"ue8m0", NULL};
    const char *ctx = "quantization_config.";
    const cJSON *q, *v;
    /* No quantization_config: an unquantized (BF16) checkpoint, as
     * fp8_cast_bf16.py and `wpack export` of a bf16 build write it: every
     * FP8/FP4 pair of the inventory is one BF16 weight. */
    if (get_item(root, "quantization_config", path, "", &q, e)) return WP_EINVAL;
    if (!q) {
        c->quant_method[0] = c->quant_fmt[0] = c->scale_fmt[0] = 0;
        c->weight_block[0] = c->weight_block[1] = 0;
        return 0;
    }
    if (get_object(root, "quantization_config", path, &q, e) ||
        get_enum(q, "quant_method", 1, NULL, fp8, path, ctx, c->quant_method,
                 sizeof c->quant_method, e) ||
        get_enum(q, "fmt", 0, "e4m3", e4m3, path, ctx, c->quant_fmt, sizeof c->quant_fmt, e))
        return WP_EINVAL;
    /* scale_fmt "ue8m0" (V4): E8M0 scales.  Absent or null (V3 style): F32
     * scales, which wpack reads as well. */
    if (get_item(q, "scale_fmt", path, ctx, &v, e)) return WP_EINVAL;
    if (v && !cJSON_IsNull(v)) {
        if (get_enum(q, "scale_fmt", 1, NULL, ue8m0, path, ctx, c->scale_fmt, sizeof c->scale_fmt,
                     e))
            return WP_EINVAL;
    } else {
        c->scale_fmt[0] = 0;
    }
    /* Never assume 128x128: V4.1 uses 32x32 (spec §0). */
    if (get_item(q, "weight_block_size", path, ctx, &v, e)) return WP_EINVAL;
    if (!v) return wp_fail(e, WP_EINVAL, "%s: %sweight_block_size: missing", path, ctx);
    if (!cJSON_IsArray(v) || cJSON_GetArraySize(v) != 2)
        return wp_fail(e, WP_EINVAL, "%s: %sweight_block_size: expected an array of 2 integers",
                       path, ctx);
    for (int i = 0; i < 2; i++) {
        char key[40];
        snprintf(key, sizeof key, "weight_block_size[%d]", i);
        if (want_int(cJSON_GetArrayItem(v, i), path, ctx, key, &c->weight_block[i], e))
            return WP_EINVAL;
        if (c->weight_block[i] < 1)
            return wp_fail(e, WP_EINVAL, "%s: %s%s: must be >= 1, found %d", path, ctx, key,
                           c->weight_block[i]);
        if (c->weight_block[i] > MAX_BLOCK)
            return wp_fail(e, WP_EINVAL, "%s: %s%s: must be <= %d (wpack's limit), found %d", path,
                           ctx, key, MAX_BLOCK, c->weight_block[i]);
    }
    return 0;
}

uint64_t wp_config_max_tensors(const wp_config *c)
{
    /* per block (main layer or MTP block): 3 routed projections x (weight,
     * scale) per expert, the shared expert's 6, at most 64 others (attention,
     * compressor, indexer, norms, HC, gate); the MTP block's 16 extras; 8
     * globals.  Every factor is bounded, so this cannot overflow. */
    uint64_t blocks = (uint64_t)c->n_layers + (uint64_t)c->n_mtp_layers;
    return blocks * (6 * (uint64_t)c->n_routed_experts + 6 + 64) + 16 * (uint64_t)c->n_mtp_layers + 8;
}

int wp_config_check_ckpt(const wp_config *c, size_t n_tensors, const char *path, wp_err *e)
{
    uint64_t blocks = (uint64_t)c->n_layers + (uint64_t)c->n_mtp_layers;
    uint64_t need = 6 * (uint64_t)c->n_routed_experts * blocks;
    if (need > CKPT_EXPERT_FACTOR * (uint64_t)n_tensors)
        return wp_fail(e, WP_EINVAL,
                       "%s: n_routed_experts: %d experts in %llu layers need %llu expert tensors, "
                       "more than %d times the checkpoint's %zu tensors (not this checkpoint's config)",
                       path, c->n_routed_experts, (unsigned long long)blocks,
                       (unsigned long long)need, CKPT_EXPERT_FACTOR, n_tensors);
    return 0;
}

/* Relations the inventory relies on (spec §2.4), checked once here so that
 * shapes derived later can never be fractional or empty. */
static int check_relations(const wp_config *c, const char *path, wp_err *e)
{
    if (c->n_kv_heads != 1)   /* spec §1.1: one KV head shared by all heads */
        return wp_fail(e, WP_EINVAL,
                       "%s: num_key_value_heads: DeepSeek-V4 has one shared KV head, found %d",
                       path, c->n_kv_heads);
    if (c->rope_head_dim % 2 || c->rope_head_dim > c->head_dim)
        return wp_fail(e, WP_EINVAL,
                       "%s: qk_rope_head_dim: must be even and <= head_dim (%d), found %d", path,
                       c->head_dim, c->rope_head_dim);
    if (c->rope_head_dim > c->index_head_dim)
        return wp_fail(e, WP_EINVAL,
                       "%s: qk_rope_head_dim: must be <= index_head_dim (%d), found %d", path,
                       c->index_head_dim, c->rope_head_dim);
    if (c->n_heads % c->o_groups)   /* wo_a input is n_heads*head_dim/o_groups */
        return wp_fail(e, WP_EINVAL,
                       "%s: o_groups: must divide num_attention_heads (%d), found %d", path,
                       c->n_heads, c->o_groups);
    if (c->n_hash_layers > c->n_layers)
        return wp_fail(e, WP_EINVAL,
                       "%s: num_hash_layers: must be <= num_hidden_layers (%d), found %d", path,
                       c->n_layers, c->n_hash_layers);
    if (c->n_activated_experts > c->n_routed_experts)
        return wp_fail(e, WP_EINVAL,
                       "%s: num_experts_per_tok: must be <= n_routed_experts (%d), found %d", path,
                       c->n_routed_experts, c->n_activated_experts);
    if (c->bos_token_id >= c->vocab_size || c->eos_token_id >= c->vocab_size)
        return wp_fail(e, WP_EINVAL, "%s: %s: must be < vocab_size (%d), found %d", path,
                       c->bos_token_id >= c->vocab_size ? "bos_token_id" : "eos_token_id",
                       c->vocab_size,
                       c->bos_token_id >= c->vocab_size ? c->bos_token_id : c->eos_token_id);
    uint64_t implied = wp_config_max_tensors(c);
    if (implied > MAX_IMPLIED_TENSORS)
        return wp_fail(e, WP_EINVAL,
                       "%s: n_routed_experts: %d experts in %d layers imply up to %llu tensors, "
                       "more than wpack's limit of %u",
                       path, c->n_routed_experts, c->n_layers + c->n_mtp_layers,
                       (unsigned long long)implied, MAX_IMPLIED_TENSORS);
    /* FP4 experts pack 2 per byte with one scale per 32 inputs (spec §3.5):
     * both expert input dims must be whole groups. */
    if (!strcmp(c->expert_dtype, "fp4")) {
        if (c->dim % 32)
            return wp_fail(e, WP_EINVAL,
                           "%s: hidden_size: must be a multiple of 32 for fp4 experts, found %d",
                           path, c->dim);
        if (c->moe_inter_dim % 32)
            return wp_fail(e, WP_EINVAL,
                           "%s: moe_intermediate_size: must be a multiple of 32 for fp4 "
                           "experts, found %d",
                           path, c->moe_inter_dim);
    }
    return 0;
}

int wp_config_parse(wp_config *c, const char *json, size_t len, const char *path, wp_err *e)
{
    static const char *const scores[] = {"sqrtsoftplus", "softmax", "sigmoid", NULL};
    static const char *const edt[] = {"fp4", "fp8", NULL};
    memset(c, 0, sizeof *c);
    cJSON *root = cJSON_ParseWithLength(json, len);
    if (!root) return wp_fail(e, WP_EINVAL, "%s: not valid JSON", path);
    int rc = WP_EINVAL;
    const char *p = path, *n = "";
    if (!cJSON_IsObject(root)) {
        wp_fail(e, WP_EINVAL, "%s: expected a JSON object, found %s", path, json_type_name(root));
        goto out;
    }
    /* Order follows spec §1.1; the first failure is reported. */
    if (get_int(root, "vocab_size", 1, 0, 1, MAX_VOCAB, p, n, &c->vocab_size, e) ||
        get_int(root, "hidden_size", 1, 0, 1, MAX_DIM, p, n, &c->dim, e) ||
        get_int(root, "num_hidden_layers", 1, 0, 1, INT_MAX, p, n, &c->n_layers, e) ||
        get_int(root, "num_nextn_predict_layers", 0, 1, 0, INT_MAX, p, n, &c->n_mtp_layers, e) ||
        get_int(root, "num_attention_heads", 1, 0, 1, MAX_HEADS, p, n, &c->n_heads, e) ||
        get_int(root, "num_key_value_heads", 0, 1, 1, MAX_HEADS, p, n, &c->n_kv_heads, e) ||
        get_int(root, "head_dim", 1, 0, 1, MAX_HEAD_DIM, p, n, &c->head_dim, e) ||
        get_int(root, "qk_rope_head_dim", 1, 0, 1, MAX_HEAD_DIM, p, n, &c->rope_head_dim, e) ||
        get_int(root, "q_lora_rank", 1, 0, 1, MAX_DIM, p, n, &c->q_lora_rank, e) ||
        get_int(root, "o_groups", 1, 0, 1, MAX_HEADS, p, n, &c->o_groups, e) ||
        get_int(root, "o_lora_rank", 1, 0, 1, MAX_DIM, p, n, &c->o_lora_rank, e) ||
        get_int(root, "sliding_window", 1, 0, 1, MAX_WINDOW, p, n, &c->window_size, e) ||
        get_int(root, "n_routed_experts", 1, 0, 1, MAX_EXPERTS, p, n, &c->n_routed_experts, e) ||
        get_int(root, "n_shared_experts", 1, 0, 0, MAX_SHARED, p, n, &c->n_shared_experts, e) ||
        get_int(root, "num_experts_per_tok", 1, 0, 1, MAX_EXPERTS, p, n, &c->n_activated_experts, e) ||
        get_int(root, "moe_intermediate_size", 1, 0, 1, MAX_DIM, p, n, &c->moe_inter_dim, e) ||
        get_int(root, "num_hash_layers", 1, 0, 0, WP_MAX_LAYERS, p, n, &c->n_hash_layers, e) ||
        get_enum(root, "scoring_func", 1, NULL, scores, p, n, c->score_func, sizeof c->score_func,
                 e) ||
        get_num(root, "routed_scaling_factor", 1, 0, 1, p, n, &c->route_scale, e) ||
        get_num(root, "swiglu_limit", 1, 0, 0, p, n, &c->swiglu_limit, e) ||
        get_int(root, "index_n_heads", 1, 0, 1, MAX_HEADS, p, n, &c->index_n_heads, e) ||
        get_int(root, "index_head_dim", 1, 0, 1, MAX_HEAD_DIM, p, n, &c->index_head_dim, e) ||
        get_int(root, "index_topk", 1, 0, 1, MAX_WINDOW, p, n, &c->index_topk, e) ||
        get_int(root, "hc_mult", 1, 0, 1, MAX_HC, p, n, &c->hc_mult, e) ||
        get_int(root, "hc_sinkhorn_iters", 1, 0, 0, MAX_SINKHORN, p, n, &c->hc_sinkhorn_iters, e) ||
        get_num(root, "hc_eps", 0, 1e-6, 1, p, n, &c->hc_eps, e) ||
        get_num(root, "rms_norm_eps", 0, 1e-6, 1, p, n, &c->norm_eps, e) ||
        get_num(root, "rope_theta", 1, 0, 1, p, n, &c->rope_theta, e) ||
        get_num(root, "compress_rope_theta", 1, 0, 1, p, n, &c->compress_rope_theta, e) ||
        parse_rope_scaling(c, root, p, e) ||
        get_int(root, "max_position_embeddings", 0, 0, 1, MAX_POSITIONS, p, n, &c->max_position_embeddings,
                e) ||
        get_int(root, "bos_token_id", 0, -1, 0, MAX_VOCAB - 1, p, n, &c->bos_token_id, e) ||
        get_int(root, "eos_token_id", 0, -1, 0, MAX_VOCAB - 1, p, n, &c->eos_token_id, e) ||
        get_enum(root, "expert_dtype", 0, "fp4", edt, p, n, c->expert_dtype,
                 sizeof c->expert_dtype, e) ||
        parse_quant(c, root, p, e))
        goto out;
    c->expert_dtype_given = cJSON_GetObjectItemCaseSensitive(root, "expert_dtype") != NULL;
    /* compress_ratios[] capacity; the sum in long long (each may be INT_MAX) */
    if ((long long)c->n_layers + c->n_mtp_layers > WP_MAX_LAYERS) {
        wp_fail(e, WP_EINVAL,
                "%s: num_hidden_layers + num_nextn_predict_layers: %lld exceeds wpack's limit of %d",
                p, (long long)c->n_layers + c->n_mtp_layers, WP_MAX_LAYERS);
        goto out;
    }
    if (parse_ratios(c, root, p, e) || check_relations(c, p, e)) goto out;
    rc = 0;
out:
    cJSON_Delete(root);
    return rc;
}

int wp_config_load(wp_config *c, const char *path, wp_err *e)
{
    char *buf;
    size_t n;
    int rc = wp_read_small_file(path, 16u << 20, &buf, &n, e);
    if (rc) return rc;
    rc = wp_config_parse(c, buf, n, path, e);
    free(buf);
    return rc;
}

wp_dtype wp_config_scale_dtype(const wp_config *c)
{
    return !strcmp(c->scale_fmt, "ue8m0") ? WP_F8_E8M0 : WP_F32;
}

/* ---- back to JSON ---------------------------------------------------------- */

static int add_int(cJSON *o, const char *k, int v) { return cJSON_AddNumberToObject(o, k, v) != NULL; }
static int add_num(cJSON *o, const char *k, double v) { return cJSON_AddNumberToObject(o, k, v) != NULL; }
static int add_str(cJSON *o, const char *k, const char *v) { return cJSON_AddStringToObject(o, k, v) != NULL; }

cJSON *wp_config_to_json(const wp_config *c)
{
    cJSON *o = cJSON_CreateObject(), *rs = NULL, *q = NULL, *a = NULL, *b = NULL;
    if (!o) return NULL;
    int ok = add_int(o, "vocab_size", c->vocab_size) && add_int(o, "hidden_size", c->dim) &&
             add_int(o, "num_hidden_layers", c->n_layers) &&
             add_int(o, "num_nextn_predict_layers", c->n_mtp_layers) &&
             add_int(o, "num_attention_heads", c->n_heads) &&
             add_int(o, "num_key_value_heads", c->n_kv_heads) &&
             add_int(o, "head_dim", c->head_dim) &&
             add_int(o, "qk_rope_head_dim", c->rope_head_dim) &&
             add_int(o, "q_lora_rank", c->q_lora_rank) && add_int(o, "o_groups", c->o_groups) &&
             add_int(o, "o_lora_rank", c->o_lora_rank) &&
             add_int(o, "sliding_window", c->window_size) &&
             add_int(o, "n_routed_experts", c->n_routed_experts) &&
             add_int(o, "n_shared_experts", c->n_shared_experts) &&
             add_int(o, "num_experts_per_tok", c->n_activated_experts) &&
             add_int(o, "moe_intermediate_size", c->moe_inter_dim) &&
             add_int(o, "num_hash_layers", c->n_hash_layers) &&
             add_str(o, "scoring_func", c->score_func) &&
             add_num(o, "routed_scaling_factor", c->route_scale) &&
             add_num(o, "swiglu_limit", c->swiglu_limit) &&
             add_int(o, "index_n_heads", c->index_n_heads) &&
             add_int(o, "index_head_dim", c->index_head_dim) &&
             add_int(o, "index_topk", c->index_topk) && add_int(o, "hc_mult", c->hc_mult) &&
             add_int(o, "hc_sinkhorn_iters", c->hc_sinkhorn_iters) &&
             add_num(o, "hc_eps", c->hc_eps) && add_num(o, "rms_norm_eps", c->norm_eps) &&
             add_num(o, "rope_theta", c->rope_theta) &&
             add_num(o, "compress_rope_theta", c->compress_rope_theta);
    if (!ok) goto fail;
    if (!(rs = cJSON_AddObjectToObject(o, "rope_scaling")) || !add_str(rs, "type", "yarn") ||
        !add_num(rs, "factor", c->rope_factor) ||
        !add_int(rs, "original_max_position_embeddings", c->original_seq_len) ||
        !add_num(rs, "beta_fast", c->beta_fast) || !add_num(rs, "beta_slow", c->beta_slow))
        goto fail;
    if (!(a = cJSON_AddArrayToObject(o, "compress_ratios"))) goto fail;
    for (int i = 0; i < c->n_compress_ratios; i++) {
        cJSON *v = cJSON_CreateNumber(c->compress_ratios[i]);
        if (!v || !cJSON_AddItemToArray(a, v)) {
            cJSON_Delete(v);
            goto fail;
        }
    }
    if (c->max_position_embeddings > 0 &&
        !add_int(o, "max_position_embeddings", c->max_position_embeddings))
        goto fail;
    if (c->bos_token_id >= 0 && !add_int(o, "bos_token_id", c->bos_token_id)) goto fail;
    if (c->eos_token_id >= 0 && !add_int(o, "eos_token_id", c->eos_token_id)) goto fail;
    if (!add_str(o, "expert_dtype", c->expert_dtype)) goto fail;
    if (!wp_config_quantized(c)) return o;   /* unquantized: no quantization_config */
    if (!(q = cJSON_AddObjectToObject(o, "quantization_config")) ||
        !add_str(q, "quant_method", c->quant_method) || !add_str(q, "fmt", c->quant_fmt))
        goto fail;
    if (c->scale_fmt[0] && !add_str(q, "scale_fmt", c->scale_fmt)) goto fail;
    if (!(b = cJSON_AddArrayToObject(q, "weight_block_size"))) goto fail;
    for (int i = 0; i < 2; i++) {
        cJSON *v = cJSON_CreateNumber(c->weight_block[i]);
        if (!v || !cJSON_AddItemToArray(b, v)) {
            cJSON_Delete(v);
            goto fail;
        }
    }
    return o;
fail:
    cJSON_Delete(o);
    return NULL;
}
