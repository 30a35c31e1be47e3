/*
 * model.h — the DeepSeek-V4 model description: HF config.json parsed into a
 * wp_config (spec §1.1), the tensor inventory that config implies (spec §2.4),
 * tensor families, and the comparison of an inventory with a checkpoint.
 */
#ifndef WP_MODEL_H
#define WP_MODEL_H

#include "common/wp.h"
#include "convert/safetensors.h"

#define WP_MAX_LAYERS 512

typedef struct wp_config {
    /* inference names (spec §1.1), filled from the HF keys */
    int vocab_size, dim, n_layers, n_mtp_layers;
    int n_heads, n_kv_heads, head_dim, rope_head_dim;
    int q_lora_rank, o_groups, o_lora_rank, window_size;
    int n_routed_experts, n_shared_experts, n_activated_experts, moe_inter_dim;
    int n_hash_layers;
    int index_n_heads, index_head_dim, index_topk;
    int hc_mult, hc_sinkhorn_iters;
    double hc_eps, norm_eps, route_scale, swiglu_limit;
    double rope_theta, compress_rope_theta, rope_factor, beta_fast, beta_slow;
    int original_seq_len, max_position_embeddings;
    int bos_token_id, eos_token_id;
    char score_func[32];         /* "sqrtsoftplus" */
    /* compress_ratios has n_layers + n_mtp_layers entries; MTP layer k uses
     * compress_ratios[n_layers + k] */
    int n_compress_ratios;
    int compress_ratios[WP_MAX_LAYERS];
    /* quantization_config */
    char quant_method[16];       /* "fp8" */
    char quant_fmt[16];          /* "e4m3" */
    char scale_fmt[16];          /* "ue8m0" (or "" for f32 scales) */
    int weight_block[2];         /* [rows, cols], e.g. 128x128, V4.1 32x32 */
    char expert_dtype[16];       /* "fp4" | "fp8" (absent in the initial revision: "fp4") */
} wp_config;

/* Parse config.json text; `path` only names the file in messages.  Missing or
 * ill-typed required keys are errors ("config.json: hidden_size: missing"). */
int wp_config_parse(wp_config *c, const char *json, size_t len, const char *path, wp_err *e);
int wp_config_load(wp_config *c, const char *path, wp_err *e);
/* The config as a JSON object under its HF key names (cJSON *), for the
 * container's model description.  Caller frees with cJSON_Delete. */
struct cJSON *wp_config_to_json(const wp_config *c);

/* Layer kind by compress ratio: 0 sliding window, 4 CSA (+indexer), 128 HCA. */
static inline int wp_config_ratio(const wp_config *c, int layer) { return c->compress_ratios[layer]; }

/* ---- Tensor families ------------------------------------------------------- */
typedef enum wp_family {
    WP_FAM_EMBED, WP_FAM_HEAD, WP_FAM_NORM, WP_FAM_HC, WP_FAM_ATTN, WP_FAM_INDEXER,
    WP_FAM_COMPRESSOR, WP_FAM_ROUTER, WP_FAM_SHARED_EXPERTS, WP_FAM_EXPERTS, WP_FAM_MTP,
    WP_FAM_OTHER, WP_FAM_COUNT
} wp_family;
const char *wp_family_name(wp_family f);           /* "attention", "experts", ... */
/* Family of an HF tensor name.  mtp.* tensors are WP_FAM_MTP (the MTP block
 * as a whole); *is_scale is set for ".scale" tensors when non-NULL. */
wp_family wp_family_of(const char *name);
/* Layer of "layers.L.*" (L), "mtp.K.*" (n_layers + K with a config, else -1
 * marker handled by caller), or -1 for globals. */
int wp_layer_of(const char *name);

/* ---- Expected inventory (spec §2.4) ---------------------------------------- */
typedef struct wp_expect {
    char name[160];
    wp_dtype dtype;
    int ndim;
    uint64_t shape[4];
    wp_family family;
    int layer;            /* -1 for globals; n_layers + k for mtp.k */
    int optional;         /* e.g. MTP embed/head copies (Flash-Base carries them) */
} wp_expect;

/* Every tensor the config implies, in a deterministic order. *out is malloc'd. */
int wp_inventory(const wp_config *c, wp_expect **out, size_t *n, wp_err *e);

typedef struct wp_inv_issue {
    enum { WP_INV_MISSING, WP_INV_UNEXPECTED, WP_INV_SHAPE, WP_INV_DTYPE } kind;
    char name[160];
    char detail[256];     /* "expected BF16 [512,256], found F32 [512,256]" */
} wp_inv_issue;

typedef struct wp_inv_report {
    size_t n_expected, n_found, n_optional_present;
    size_t n_issues;
    wp_inv_issue *issues;   /* malloc'd */
} wp_inv_report;

/* Compare the expected inventory with a checkpoint's tensors. */
int wp_inventory_check(const wp_config *c, const wp_ckpt *k, wp_inv_report *r, wp_err *e);
void wp_inv_report_free(wp_inv_report *r);

#endif
