/*
 * export.h — a wpack build back to a Hugging Face checkpoint directory that
 * serving engines load (issue 12; docs/export.md).
 *
 *   wp_export_opts o = WP_EXPORT_OPTS_INIT;
 *   wp_export_stats st;
 *   wp_export("BUILD", "OUT", &o, &st, &e);   ...   wp_export_stats_free(&st);
 *
 * What it writes into OUT (through common/outdir.h, kind checkpoint: nothing
 * at OUT until complete):
 *   - shards model-00001-of-0000N.safetensors of at most `shard_size` bytes of
 *     tensor data (a tensor larger than that gets a shard of its own), and
 *     model.safetensors.index.json (metadata.total_size, weight_map); a single
 *     shard is model.safetensors without an index, as transformers writes it;
 *   - every tensor of the model's inventory (model/model.h, from the config the
 *     build records) under its official name, in the official order: routed
 *     experts un-stacked to layers.L.ffn.experts.E.wK.weight + .scale, a fused
 *     w13 split back into w1 and w3;
 *   - config.json rewritten to what the shards hold (quantization_config and
 *     expert_dtype, or neither for BF16);
 *   - the source checkpoint's tokenizer and generation files, when the
 *     `source` setting names it (its config.json must be the one the build
 *     records: provenance config_sha256).
 *
 * The layout follows the build's routed experts (docs/export.md):
 *   mxfp4 -> the official layout: experts I8 (two E2M1) + F8_E8M0 1x32, every
 *            other FP8 pair F8_E4M3 + block scales, expert_dtype "fp4";
 *   fp8   -> the FP8-expert layout of convert.py --expert-dtype fp8 (spec
 *            §2.5 item 5): experts FP8 pairs, expert_dtype "fp8";
 *   bf16  -> plain BF16 weights, no quantization_config, no expert_dtype.
 * Every value is carried exactly: bytes are copied, F32 scales that are powers
 * of two are narrowed to E8M0 (else every scale is written F32 and
 * scale_fmt is null), a BF16 wo_a is re-encoded to FP8 only where every value
 * survives.  Anything no HF layout carries (nvfp4, f16 weights, ...) is refused
 * with one line naming the tensor and its encoding.
 *
 * Streaming: tensors are copied in bounded chunks (pread) and every build
 * tensor's SHA-256 (the .wpk directory's) is checked as its bytes go by; a
 * mismatch fails the export (WP_EVERIFY) and leaves nothing at OUT.  Shards are
 * written by `threads` workers; the bytes never depend on it (two exports of
 * one build are byte-identical).
 */
#ifndef WP_EXPORT_H
#define WP_EXPORT_H

#include <stddef.h>
#include <stdint.h>

#include "common/wp.h"

struct cJSON;

#define WP_EXPORT_SHARD_DEFAULT 5000000000ull   /* transformers' max_shard_size "5GB" */

typedef struct wp_export_opts {
    uint64_t shard_size;        /* tensor bytes per shard at most; 0 = WP_EXPORT_SHARD_DEFAULT */
    int threads;                /* shard writers; <= 0: online CPUs */
    int force;                  /* replace an existing checkpoint directory at OUT */
    const char *source;         /* the checkpoint the build was made from, or NULL */
    wp_progress_fn progress;    /* bytes of tensor data written; may be NULL */
    void *progress_ud;
} wp_export_opts;
#define WP_EXPORT_OPTS_INIT { 0, 0, 0, NULL, NULL, NULL }

typedef struct wp_export_stats {
    char layout[16];            /* "official", "fp8-experts", "bf16" */
    char profile[64];           /* the build's profile name */
    char expert_dtype[8];       /* "fp4", "fp8", "" (bf16) */
    char scale_fmt[8];          /* "ue8m0", "f32", "" (bf16) */
    uint32_t block[2];          /* weight_block_size, 0x0 for bf16 */
    size_t shards, tensors;
    uint64_t total_size;        /* tensor data bytes (the index's metadata.total_size) */
    size_t copied;              /* tensors whose bytes are the build's */
    size_t converted;           /* tensors re-encoded exactly (scale widened/narrowed, BF16 -> FP8) */
    uint64_t verified_bytes;    /* build tensor bytes whose SHA-256 was checked */
    size_t build_tensors;       /* build tensors read (all digests matched) */
    char **files;               /* tokenizer/generation files copied (n_files) */
    size_t n_files;
    char files_note[512];       /* why none were copied, or "" */
} wp_export_stats;

/* Export BUILD (a build directory or a lone .wpk) to the checkpoint
 * directory OUT.  0, or a WP_E* code with one line in e: WP_EEXIST (OUT
 * exists; setting "force"), WP_EINVAL (the build cannot be exported: a
 * tensor or encoding no HF layout carries, an incomplete build, a
 * mismatched source checkpoint), WP_EVERIFY (a tensor's bytes do not match
 * its recorded SHA-256), WP_EIO.  On failure nothing is left at OUT. */
int wp_export(const char *build, const char *out, const wp_export_opts *o, wp_export_stats *st,
              wp_err *e);
void wp_export_stats_free(wp_export_stats *st);
/* The stats as the `--json` document's body (cJSON *; NULL when out of memory). */
struct cJSON *wp_export_stats_json(const char *build, const char *out, const wp_export_stats *st);

#endif
