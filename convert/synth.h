/*
 * synth.h — random DeepSeek-V4 checkpoints in the exact official layout
 * (spec §2.1), at real per-layer shapes, for scale tests and benchmarks.
 *
 * Layout: shard 1 holds embed.weight, shard L+2 every tensor of main layer L,
 * the next shard head.weight, norm.weight and hc_head_*, the last one the
 * whole MTP block(s); names model-XXXXX-of-NNNNN.safetensors; inside a shard
 * the tensors are laid out as the official files are (the Rust safetensors
 * serializer: widest dtype first, then by name, no __metadata__), so a
 * full-size Flash synth has the published shard sizes to the byte.  Plus
 * model.safetensors.index.json and config.json.
 *
 * Contents are deterministic from the seed (xoshiro256** seeded per tensor
 * from the seed and the tensor name: the same seed gives byte-identical
 * files) and plausible for quantisation work: FP8 weights are E4M3 codes of a
 * normal-ish distribution (never the NaN codes 0x7F/0xFF), E8M0 scales are
 * 2^-9..2^-7, FP4 experts are uniform random nibbles, norm weights are about
 * 1, other BF16/F32 tensors normal-ish with std 1/sqrt(fan-in), tid2eid rows
 * hold distinct valid expert ids.
 */
#ifndef WP_SYNTH_H
#define WP_SYNTH_H

#include "model/model.h"

/* A preset config: "tiny" (the shape of the tiny-a fixture), "flash" or
 * "pro" (spec §1.1, §1.2; current revision: expert_dtype "fp4"). */
int wp_synth_preset(wp_config *c, const char *name, wp_err *e);

/* Shrink a config for a smaller checkpoint; 0 leaves a value alone.
 *   layers  keep the first N main layers: compress_ratios keeps its first N
 *           entries then the MTP entries; num_hash_layers is capped at N.
 *   experts n_routed_experts = N; num_experts_per_tok capped at N.
 *   block   FP8 weight_block_size = [block, block] (V4.1: 32). */
int wp_synth_trim(wp_config *c, int layers, int experts, int block, wp_err *e);

/* ---- the official shard plan (spec §2.1) ---------------------------------- */
int wp_shard_count(const wp_config *c);   /* n_layers + 2, + 1 with MTP */
/* 0-based shard of an expected tensor. */
int wp_shard_of(const wp_config *c, const wp_expect *x);
/* "model-00003-of-00046.safetensors" for 0-based shard 2 of 46. */
void wp_shard_name(const wp_config *c, int shard, char *buf, size_t n);
/* qsort comparator (const wp_expect *const *): the official order of the
 * tensors inside a shard (dtype widest first, then name). */
int wp_official_order(const void *a, const void *b);

typedef struct wp_synth_opts {
    uint64_t seed;
    int force;                 /* replace an existing checkpoint at dir */
    wp_progress_fn progress;   /* bytes done / total; may be NULL */
    void *progress_ud;
} wp_synth_opts;

typedef struct wp_synth_stats {
    size_t tensors, shards;
    uint64_t bytes;            /* tensor data bytes (= index total_size) */
} wp_synth_stats;

/* Write the checkpoint of config c into dir: built in a temporary directory
 * beside dir and moved into place when complete (common/outdir.h), so dir
 * never holds a partial checkpoint.  dir must not exist or be an empty
 * directory; otherwise WP_EEXIST (setting "force"), unless o->force and dir
 * is a checkpoint (config.json and *.safetensors), which is then replaced.
 * Memory is bounded (one chunk buffer), whatever the model size.  st may be
 * NULL. */
int wp_synth_write(const wp_config *c, const char *dir, const wp_synth_opts *o,
                   wp_synth_stats *st, wp_err *e);

#endif
