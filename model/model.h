/*
 * model.h — the DeepSeek-V4 model description: HF config.json parsed into a
 * wp_config (spec §1.1), the tensor inventory that config implies (spec §2.4),
 * tensor families, and the comparison of an inventory with a checkpoint.
 * Keys, defaults and validation rules: docs/config.md.
 */
#ifndef WP_MODEL_H
#define WP_MODEL_H

#include "common/wp.h"
#include "hf/safetensors.h"

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
    int original_seq_len, max_position_embeddings;   /* max_position_embeddings 0: absent */
    int bos_token_id, eos_token_id;                  /* -1: absent */
    char score_func[32];         /* "sqrtsoftplus" | "softmax" | "sigmoid" */
    /* compress_ratios has n_layers + n_mtp_layers entries; MTP layer k uses
     * compress_ratios[n_layers + k] */
    int n_compress_ratios;
    int compress_ratios[WP_MAX_LAYERS];
    /* quantization_config; absent: an unquantized checkpoint (quant_method "",
     * weight_block 0x0), whose FP8/FP4 pairs are single BF16 weights */
    char quant_method[16];       /* "fp8" */
    char quant_fmt[16];          /* "e4m3" */
    char scale_fmt[16];          /* "ue8m0" (or "" for f32 scales) */
    int weight_block[2];         /* [rows, cols], e.g. 128x128, V4.1 32x32 */
    char expert_dtype[16];       /* "fp4" | "fp8" (absent in the initial revision: "fp4") */
    int expert_dtype_given;      /* 1 when config.json has the key; 0: "fp4" is a default
                                    and the checkpoint's experts decide (wp_expert_fmt_of) */
} wp_config;

/* Parse config.json text; `path` only names the file in messages.  Missing or
 * ill-typed required keys are errors ("config.json: hidden_size: missing",
 * "config.json: hidden_size: expected an integer, found string"), and so are
 * values the inventory cannot be derived from (docs/config.md lists every
 * rule).  On failure *c is unspecified. */
int wp_config_parse(wp_config *c, const char *json, size_t len, const char *path, wp_err *e);
/* Read and parse a config.json file (messages name `path`). */
int wp_config_load(wp_config *c, const char *path, wp_err *e);
/* An upper bound of the number of tensors wp_inventory lists for c (the
 * parser refuses a config above docs/config.md's limit). */
uint64_t wp_config_max_tensors(const wp_config *c);
/* With a whole checkpoint of n_tensors known: refuse (WP_EINVAL, naming
 * `path`, the config) a config whose routed-expert tensors alone exceed 4x
 * the checkpoint's count -- it cannot describe that checkpoint, and its
 * inventory would be sized by the config, not by the input. */
int wp_config_check_ckpt(const wp_config *c, size_t n_tensors, const char *path, wp_err *e);
/* The config as a JSON object under its HF key names (cJSON *), keys in a
 * fixed order, for the container's model description and for `synth`'s
 * config.json; wp_config_parse of its text gives back an equal wp_config.
 * Caller frees with cJSON_Delete.  NULL only when out of memory. */
struct cJSON *wp_config_to_json(const wp_config *c);

/* Layer kind by compress ratio: 0 sliding window, 4 CSA (+indexer), any
 * other (128 in the official models) HCA.  layer may be an MTP layer id
 * (n_layers + k). */
static inline int wp_config_ratio(const wp_config *c, int layer) { return c->compress_ratios[layer]; }
/* Hash-routed MoE gate (gate.tid2eid instead of gate.bias), spec §1.2. */
static inline int wp_config_is_hash(const wp_config *c, int layer) { return layer < c->n_hash_layers; }
/* Has a quantization_config (FP8/FP4 pairs), or none (every such weight BF16). */
static inline int wp_config_quantized(const wp_config *c) { return c->quant_method[0] != 0; }
/* Dtype of every FP8 scale tensor: F8_E8M0 when scale_fmt is "ue8m0", else F32. */
wp_dtype wp_config_scale_dtype(const wp_config *c);

/* ---- Tensor families ------------------------------------------------------- */
typedef enum wp_family {
    WP_FAM_EMBED, WP_FAM_HEAD, WP_FAM_NORM, WP_FAM_HC, WP_FAM_ATTN, WP_FAM_INDEXER,
    WP_FAM_COMPRESSOR, WP_FAM_ROUTER, WP_FAM_SHARED_EXPERTS, WP_FAM_EXPERTS, WP_FAM_MTP,
    WP_FAM_OTHER, WP_FAM_COUNT
} wp_family;
const char *wp_family_name(wp_family f);           /* "attention", "experts", ... */
/* Family of an HF tensor name (".weight" and ".scale" alike).  mtp.* tensors
 * are WP_FAM_MTP (the MTP block as a whole).  Families:
 *   embed       embed.weight            head   head.weight
 *   norm        norm.weight, layers.L.{attn,ffn}_norm.weight
 *   hc          hc_head_*, layers.L.hc_{attn,ffn}_*
 *   attention   layers.L.attn.{wq_a,wq_b,wkv,wo_a,wo_b,q_norm,kv_norm,attn_sink}
 *   indexer     layers.L.attn.indexer.* (its own compressor included)
 *   compressor  layers.L.attn.compressor.* (the main compressor)
 *   router      layers.L.ffn.gate.*     shared experts  layers.L.ffn.shared_experts.*
 *   experts     layers.L.ffn.experts.* (per-expert and stacked names)
 *   other       anything else. */
wp_family wp_family_of(const char *name);
/* Like wp_family_of, but an mtp.K.* tensor gets the family of its part
 * (mtp.0.ffn.experts.3.w1.weight -> experts, mtp.0.enorm.weight -> norm,
 * mtp.0.hc_head_fn -> hc); only e_proj/h_proj and the embed/head copies stay
 * WP_FAM_MTP.  For encoding choices, where an MTP expert is an expert. */
wp_family wp_family_inner(const char *name);
/* L of "layers.L.*", else -1 (globals and mtp.*). */
int wp_layer_of(const char *name);
/* K of "mtp.K.*", else -1. */
int wp_mtp_of(const char *name);
/* Layer id in the config's numbering: L for layers.L.*, n_layers + K for
 * mtp.K.*, -1 for globals. */
int wp_layer_id(const wp_config *c, const char *name);
/* convert.py's rule for the MTP block's copies of the shared embedding and
 * head (spec §2.5 step 2): an mtp.* name containing "emb" is an embed copy
 * (returns 1), one ending in "head.weight" (not hc_head) a head copy
 * (returns 2); otherwise 0. */
int wp_mtp_copy_kind(const char *name);

/* ---- Routed-expert storage (docs/config.md "Variants") -----------------------
 * expert_dtype "fp4": FP4 pairs (I8 [out, in/2] + F8_E8M0 [out, in/32]);
 * "fp8": FP8 pairs whose scale follows scale_fmt.  A config.json without the
 * key is either the initial Flash revision (FP4 experts) or V4-Flash-Base
 * (FP8 experts, spec §1.1 "FP8 Mixed"), so there the checkpoint's own first
 * routed-expert weight decides: F8_E4M3 makes FP8 pairs, with that expert's
 * scale dtype (F8_E8M0 or F32); anything else FP4 pairs. */
typedef struct wp_expert_fmt {
    int fp8;                  /* 0: FP4 pairs; 1: FP8 pairs */
    wp_dtype scale;           /* scale dtype: F8_E8M0 (FP4, FP8 ue8m0) or F32 */
    int from_checkpoint;      /* decided by the tensors (config.json has no expert_dtype) */
} wp_expert_fmt;
/* The experts' storage for config c and a checkpoint's tensors t[0..n) (any
 * order; n may be 0, then the config alone decides). */
wp_expert_fmt wp_expert_fmt_of(const wp_config *c, const wp_tensor_info *const *t, size_t n);
/* The config with expert_dtype set from the checkpoint when config.json did
 * not give it (what a build made from that checkpoint records). */
void wp_config_resolve_experts(wp_config *c, const wp_tensor_info *const *t, size_t n);

/* ---- Expected inventory (spec §2.4) ---------------------------------------- */
typedef struct wp_expect {
    char name[160];
    wp_dtype dtype;
    int ndim;
    uint64_t shape[4];
    wp_family family;
    int layer;            /* -1 for globals; n_layers + k for mtp.k */
    int optional;         /* MTP embed/head copies (Flash-Base carries them) */
} wp_expect;

/* Every tensor the config implies, in the official shard order: embed.weight,
 * layers 0..n-1 (each layer's tensors together), head.weight, norm.weight,
 * hc_head_*, then mtp.0.* ... (the optional copies mtp.K.embed.weight and
 * mtp.K.head.weight last in their block).  *out is malloc'd. */
int wp_inventory(const wp_config *c, wp_expect **out, size_t *n, wp_err *e);
/* The same with the routed experts stored as `f` says (wp_expert_fmt_of). */
int wp_inventory_fmt(const wp_config *c, const wp_expert_fmt *f, wp_expect **out, size_t *n,
                     wp_err *e);
/* Byte size of one expected tensor (product(shape) * dtype bits / 8). */
uint64_t wp_expect_nbytes(const wp_expect *x);

typedef struct wp_inv_issue {
    enum { WP_INV_MISSING, WP_INV_UNEXPECTED, WP_INV_SHAPE, WP_INV_DTYPE } kind;
    char name[160];
    char detail[256];     /* "expected BF16 [512,256], found F32 [512,256]" */
} wp_inv_issue;
const char *wp_inv_kind_name(int kind);   /* "missing", "unexpected", "mis-shaped", "mis-typed" */

#define WP_INV_MAX_ISSUES 1000   /* issues kept in the list per kind; the counts are exact */

typedef struct wp_inv_report {
    size_t n_expected;            /* required (non-optional) tensors */
    size_t n_found;               /* tensors in the checkpoint */
    size_t n_optional_present;    /* optional tensors found (MTP copies) */
    size_t n_missing, n_unexpected, n_mis_shaped, n_mis_typed;
    size_t n_issues;              /* entries in issues (at most WP_INV_MAX_ISSUES per kind) */
    wp_expert_fmt experts;        /* how the routed experts were expected */
    wp_inv_issue *issues;         /* malloc'd; ordered by name */
} wp_inv_report;
static inline size_t wp_inv_problems(const wp_inv_report *r)
{
    return r->n_missing + r->n_unexpected + r->n_mis_shaped + r->n_mis_typed;
}

/* Compare the expected inventory with a checkpoint's tensors: every required
 * tensor present with its dtype and shape, nothing unexpected.  Returns 0
 * when the comparison ran (problems or not: see wp_inv_problems), a WP_E*
 * code only when it could not run (out of memory). */
int wp_inventory_check(const wp_config *c, const wp_ckpt *k, wp_inv_report *r, wp_err *e);
/* The same comparison against a plain list of tensor infos (any order);
 * wp_inventory_check is this over the checkpoint's tensors. */
int wp_inventory_check_list(const wp_config *c, const wp_tensor_info *t, size_t n,
                            wp_inv_report *r, wp_err *e);
void wp_inv_report_free(wp_inv_report *r);

#endif
