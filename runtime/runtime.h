/*
 * runtime.h — the reference CPU forward pass of DeepSeek-V4 (spec §4).
 *
 * Three objects:
 *   wp_tsrc   a tensor source: resolves official HF tensor names to weights
 *             (wp_qweight, any wp_enc) and plain typed views.  One
 *             implementation reads an HF checkpoint directly (zero-copy over
 *             the mmap'd shards); .wpk builds add another.  The model never
 *             sees where a tensor comes from.
 *   wp_model  the loaded model: per-layer weight views, RoPE tables, options.
 *   wp_seq    one sequence's caches: sliding-window ring, compressed KV,
 *             compressor states, indexer keys.  Independent sequences form a
 *             batch; each has its own wp_seq.
 *
 * Numerics (docs/runtime.md): by default everything that the reference keeps
 * in bf16 is fp32 here, and every deliberate low-precision step is exact:
 * FP8 act_quant before FP8/FP4 linears, the FP8 KV round trip, the indexer's
 * Hadamard + FP4 round trip.  This is what golden-fp32 was computed with.
 * WP_RT_BF16 additionally rounds to bf16 wherever the reference's tensors are
 * bf16 (spec §4.0).
 */
#ifndef WP_RUNTIME_H
#define WP_RUNTIME_H

#include <stdint.h>

#include "common/wp.h"
#include "model/model.h"
#include "hf/safetensors.h"
#include "quant/quant.h"

/* ---- Tensor source ------------------------------------------------------------ */

/* A plain (non-linear) tensor: norms, HC parameters, attn_sink, gate.bias,
 * ape, tid2eid.  data is little-endian, row-major, of `dtype`. */
typedef struct wp_tview {
    wp_dtype dtype;
    int ndim;
    uint64_t shape[4];
    const void *data;
} wp_tview;

/* What was checked of a source's bytes before use (wp_tsrc_open_opts). */
enum {
    WP_TSRC_UNVERIFIED = 0,   /* a build opened without verification */
    WP_TSRC_VERIFIED = 1,     /* a build whose every digest matched (trust/ wp_verify_build) */
    WP_TSRC_NO_DIGESTS = 2,   /* an HF checkpoint: it carries no digests to check */
};

typedef struct wp_tsrc wp_tsrc;
struct wp_tsrc {
    const char *path;        /* what was opened, for messages */
    const char *kind;        /* "hf", "wpk", ... */
    wp_config cfg;           /* the model description the source carries */
    int verified;            /* WP_TSRC_* */
    /* A linear weight by module name, without ".weight" (e.g.
     * "layers.0.attn.wq_a", "mtp.0.e_proj", "embed", "head",
     * "layers.1.ffn.experts.3.w1").  Routed experts are always asked for by
     * their per-expert name; a source that stores them stacked returns expert
     * e's slice.  The view stays valid until close. */
    int (*weight)(wp_tsrc *s, const char *name, wp_qweight *out, wp_err *e);
    /* A plain tensor by its full name (e.g. "layers.0.attn_norm.weight",
     * "hc_head_fn", "layers.0.ffn.gate.tid2eid"). */
    int (*tensor)(wp_tsrc *s, const char *name, wp_tview *out, wp_err *e);
    /* 1 if the source holds a tensor (full name) or a weight (module name). */
    int (*has)(wp_tsrc *s, const char *name);
    void (*close)(wp_tsrc *s);
    void *impl;
};

/* Open an HF checkpoint directory (config.json + safetensors shards).  FP8
 * pairs become WP_ENC_FP8 with E8M0 scales and the block size of
 * quantization_config.weight_block_size; I8 routed experts WP_ENC_MXFP4;
 * BF16/F32/F16 weights the plain encodings.  Scale shapes are checked. */
int wp_tsrc_open_hf(wp_tsrc **out, const char *dir, wp_err *e);
/* Open whatever `path` is: an HF checkpoint directory (config.json in it)
 * or a build (runtime/source_wpk.h).  Nothing is verified: see
 * wp_tsrc_open_opts. */
int wp_tsrc_open(wp_tsrc **out, const char *path, wp_err *e);

/* Nothing runs unverified (docs/runtime.md "Verification"): with `verify`,
 * a build's every tensor (and manifest, non-tensor bytes, file sizes) is
 * checked against its digests before the source is returned — trust/'s
 * wp_verify_build with an unchecked signature allowed, hashing in parallel —
 * once per process per build (a build whose files are unchanged since it
 * passed is not hashed again).  A corrupt build fails with verify's message
 * naming the file and the tensor (WP_EVERIFY).  An HF checkpoint has no
 * digests: it opens with verified = WP_TSRC_NO_DIGESTS. */
typedef struct wp_tsrc_opts {
    int verify;                /* check a build's digests first */
    int threads;               /* hashing threads; <= 0: every online CPU */
    wp_progress_fn progress;   /* bytes hashed; may be NULL */
    void *progress_ud;
} wp_tsrc_opts;
int wp_tsrc_open_opts(wp_tsrc **out, const char *path, const wp_tsrc_opts *o, wp_err *e);
void wp_tsrc_close(wp_tsrc *s);

/* ---- Model ---------------------------------------------------------------------- */

enum {
    WP_RT_BF16 = 1 << 0,          /* round at the reference's bf16 points (spec §4.0) */
    WP_RT_INDEXER_HP = 1 << 1,    /* indexer without its FP4 round trips of q and K (the
                                     Hadamard, orthogonal, stays): "--indexer-precision
                                     bf16", the reference of the recall DeepSeek quotes
                                     (spec §6) */
    WP_RT_SCALAR = 1 << 2,        /* scalar kernels only (the vector kernels' reference) */
    WP_RT_ENC_DISPATCH = 1 << 3,  /* quantise activations only where the weight is stored
                                     FP8/FP4, as the reference code's linear() dispatches;
                                     default: at every FP8/FP4 site of the model, whatever
                                     the build stores there (docs/runtime.md) */
    WP_RT_PREFETCH = 1 << 4,      /* read weights ahead (madvise WILLNEED from a thread)
                                     even when the source fits in memory; by default only
                                     a source larger than half of the RAM is read ahead */
    WP_RT_NO_PREFETCH = 1 << 5,   /* never read ahead */
};

typedef struct wp_rt_opts {
    int threads;      /* worker threads for the kernels; <= 0: 1 */
    unsigned flags;   /* WP_RT_* */
} wp_rt_opts;

typedef struct wp_model wp_model;

/* Load every weight view the forward pass needs from `src` (which must
 * outlive the model) and check its shape against the config. */
int wp_model_load(wp_model **out, wp_tsrc *src, const wp_rt_opts *opts, wp_err *e);
void wp_model_free(wp_model *m);
const wp_config *wp_model_config(const wp_model *m);
/* Name of the kernel set in use ("avx512", "avx2", "scalar"). */
const char *wp_model_kernels(const wp_model *m);
/* Bytes of every weight the model reads (data and scales, all layers). */
uint64_t wp_model_weight_bytes(const wp_model *m);
/* 1 if weights are read ahead (WP_RT_PREFETCH, or a model larger than half
 * of the RAM), 0 otherwise. */
int wp_model_prefetching(const wp_model *m);

/* ---- Sequences --------------------------------------------------------------------
 * A sequence holds the caches of every main layer and of the MTP block for up
 * to `max_len` positions.  Each layer counts the tokens it has consumed; a
 * fresh sequence starts at position 0. */
typedef struct wp_seq wp_seq;
int wp_seq_new(wp_seq **out, const wp_model *m, int max_len, wp_err *e);
/* Back to position 0: caches cleared, compressor states re-initialised
 * (kv_state = 0, score_state = -inf; spec §4.6). */
void wp_seq_reset(wp_seq *s);
void wp_seq_free(wp_seq *s);
int wp_seq_pos(const wp_seq *s);      /* tokens consumed by layer 0 */

/* Feed n tokens.  At position 0 the n tokens are one prefill (spec §4.12);
 * at position > 0 they are decoded one at a time.  logits: [vocab] fp32 of
 * the last position, or NULL.  h_last: if not NULL, [n, hc, dim] residual
 * after the last main layer (before the head's HC collapse) for the n
 * positions — the MTP block's input. */
int wp_model_forward(wp_model *m, wp_seq *s, const int32_t *tokens, int n, float *logits,
                     float *h_last, wp_err *e);

/* One decode step for B independent sequences at once, each already past its
 * prefill, at whatever positions: tokens[b] is fed to seqs[b] (all distinct);
 * logits [B, vocab] or NULL.  The B rows share every weight read, which is
 * what a memory-bound decode needs.  The result equals B separate
 * wp_model_forward calls up to summation order (bit for bit while B <= 2). */
int wp_model_decode_batch(wp_model *m, wp_seq *const *seqs, const int32_t *tokens, int B,
                          float *logits, wp_err *e);

/* One main layer (0..n_layers-1) alone, on its own current position: h is the
 * [n, hc, dim] residual, replaced by the layer's output; tokens are the ids of
 * the n positions (hash routing).  Used for teacher-forced parity. */
int wp_model_layer(wp_model *m, wp_seq *s, int layer, float *h, const int32_t *tokens, int n,
                   wp_err *e);

/* The pieces of wp_model_forward, for a caller that runs the layers one at a
 * time (wp_model_layer) and compares them (verify/'s teacher-forced parity
 * between builds): the embedding of n tokens copied to every HC stream ->
 * h [n, hc, dim] (layer 0's input), and the head (HC collapse, final norm,
 * logits) of each of n rows of the last layer's output -> logits [n, vocab].
 * The same functions as the forward pass, so the bits are the same. */
int wp_model_embed(wp_model *m, const int32_t *tokens, int n, float *h, wp_err *e);
int wp_model_head(wp_model *m, const float *h, int n, float *logits, wp_err *e);

/* The MTP block (spec §4.11) on n positions: h [n, hc, dim] from the last main
 * layer, ids the tokens given to the block (the next tokens).  logits of the
 * last position -> [vocab].  Uses and advances the sequence's MTP caches. */
int wp_model_mtp(wp_model *m, wp_seq *s, const float *h, const int32_t *ids, int n,
                 float *logits, wp_err *e);

/* Record the indexer's selection of a CSA layer during the next calls: for
 * each position consumed, index_topk int32 slots = chosen compressed entry
 * indices (no offset), -1 where none, in selection order.  buf must hold
 * rows * index_topk entries; NULL stops recording.  Returns WP_EUSAGE for a
 * layer without an indexer. */
int wp_seq_capture_topk(wp_seq *s, int layer, int32_t *buf, int rows, wp_err *e);

/* ---- Greedy generation (generate.c) --------------------------------------------------
 * Each prompt is prefilled on its own sequence from position 0; then every
 * sequence picks its next token greedily (argmax of its logits, ties: the
 * lower id) and feeds it back, up to max_new tokens each.  One sequence
 * decodes with wp_model_forward; several share each step through
 * wp_model_decode_batch (every weight read once per step; the bits equal
 * separate decodes while at most 2 sequences are left).  A sequence that picks
 * the config's eos_token_id stops there unless ignore_eos.  The last token
 * picked is not fed (no logits are needed after it). */

/* One greedy choice, as on_token sees it (valid during the call only). */
typedef struct wp_generate_step {
    int seq;                  /* which prompt */
    int index;                /* 0 for the first token generated for it, ... */
    int pos;                  /* the position the token will occupy: prompt length + index */
    int32_t token;            /* the choice */
    const float *logits;      /* [vocab]: what it was chosen from */
    int n_top;                /* min(top_k, vocab), 0 without top_k */
    const int32_t *top;       /* the n_top largest logits' ids, best first (top[0] == token) */
} wp_generate_step;

typedef struct wp_generate_opts {
    int max_new;              /* tokens to generate per sequence; 0: prefill only */
    int ignore_eos;           /* keep going after eos_token_id */
    int top_k;                /* > 0: on_token also receives the top_k best ids */
    /* Optional (NULL: not called), on the calling thread: on_prefill once every
     * prompt is prefilled, with the seconds that took; on_token after every
     * choice, in the order they are made (step by step, sequence by sequence). */
    void (*on_prefill)(void *ud, double seconds);
    void (*on_token)(void *ud, const wp_generate_step *s);
    void *ud;
} wp_generate_opts;

typedef struct wp_generate_seq {
    int32_t *tokens;          /* the n generated tokens */
    int n;
    int eos;                  /* 1: stopped at eos_token_id (tokens[n - 1]) */
} wp_generate_seq;

typedef struct wp_generate_result {
    int nseq;
    wp_generate_seq *seqs;    /* [nseq] */
    int decode_tokens;        /* tokens fed through decode steps, all sequences together */
    double prefill_seconds, decode_seconds;   /* decode: includes the on_token calls */
} wp_generate_result;

/* Generate from nseq >= 1 prompts (prompts[b] holds lens[b] >= 1 token ids).
 * On success *out holds the tokens (free with wp_generate_result_free); on
 * failure it is empty.  Errors: WP_EUSAGE (no prompt, an empty prompt, a
 * negative max_new, a token outside the vocabulary), WP_ENOMEM, and whatever
 * the forward pass reports. */
int wp_generate(wp_model *m, const wp_generate_opts *o, const int32_t *const *prompts,
                const int *lens, int nseq, wp_generate_result *out, wp_err *e);
void wp_generate_result_free(wp_generate_result *r);

#endif
