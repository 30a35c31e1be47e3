/*
 * golden.h — capture a golden file from any build or HF checkpoint (`wpack
 * golden`), in the schema `parity --golden` reads: the fields of
 * tests/fixtures/tiny-a/golden-fp32.safetensors (../shared/fixtures/README.md),
 * same names, dtypes and shapes:
 *
 *   tokens [B, S] i32, layer_h_in0 [B, S, hc, dim] f32, layer_h [L, B, S, hc, dim]
 *   f32, indexer_topk.<l> [B, S, index_topk] i32 (S + entry, -1 none) for each
 *   CSA layer, prefill_logits [B, V] f32, decode_tokens [B, N] i32 (greedy
 *   choices), decode_logits [B, N, V] f32, mtp_input_ids [B, S] i32 (the
 *   prompt shifted left, the greedy next token last), mtp_logits [B, V] f32
 *
 * Smaller goldens for a large vocabulary or model:
 *   - states = 0 leaves out layer_h_in0, layer_h and indexer_topk.* (and so
 *     the per-layer check and the MTP check, which needs the trunk);
 *   - topk = K > 0 stores, instead of each X_logits field, X_logits_topk_ids
 *     [..., K] i32 (the K largest logits' ids, largest first, ties: lower id),
 *     X_logits_topk [..., K] f32 (their values) and X_logits_lse [...] f64
 *     (the row's log-sum-exp), which is what KL and top-1 need (parity.h).
 * Metadata: "format": "wpack-golden", "source", "topk", "states".
 */
#ifndef WP_VERIFY_GOLDEN_H
#define WP_VERIFY_GOLDEN_H

#include <stdint.h>

#include "common/wp.h"
#include "runtime/runtime.h"

typedef struct wp_golden_opts {
    int threads;
    unsigned rt_flags;        /* WP_RT_* of the run that is captured */
    int positions;            /* greedy decode positions after the prompt (fixture: 6) */
    int topk;                 /* 0: full-vocabulary logits; K: top-K ids, values, lse */
    int states;               /* 1: per-layer states and indexer selections */
    int force;                /* replace an existing output file */
} wp_golden_opts;
void wp_golden_opts_default(wp_golden_opts *o);

/* Run src on n prompts of len tokens each (equal lengths: the schema's
 * tokens is [B, S]) and write the golden to path (wp_out_create: nothing
 * at path until it is complete).  Memory: B * S * hc * dim floats of states
 * and the selections of the CSA layers, whatever the number of layers. */
int wp_golden_write(wp_tsrc *src, const int32_t *const *prompts, const int *lens, int n,
                    const char *path, const wp_golden_opts *o, wp_err *e);

#endif
