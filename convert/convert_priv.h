/*
 * convert_priv.h — what plan.c, repack.c, pipeline.c and report.c share; not
 * part of the public API (convert/convert.h).
 */
#ifndef WP_CONVERT_PRIV_H
#define WP_CONVERT_PRIV_H

#include "convert/convert.h"

/* ---- repack.c: expert stacks and model-parallel splits (spec §2.5) -------- */

/* "P.ffn.experts.E.wK.weight" (P = layers.L or mtp.K): *prefix_len = strlen(P),
 * *expert = E, *proj = K (1, 2 or 3).  0 on a match, -1 otherwise. */
int wp_expert_name_parse(const char *name, size_t *prefix_len, int *expert, int *proj);
/* The stacked name "P.ffn.experts.wK.weight" ("w13" when fused, proj 13). */
int wp_expert_stack_name(char *out, size_t sz, const char *prefix, size_t prefix_len, int proj);
/* spec §2.5 item 3: the dim a --tp split cuts for this output weight name
 * (0 or 1), or -1 when the tensor is replicated on every rank. */
int wp_tp_split_dim(const char *name);
/* Experts of rank r out of `ranks`, contiguous like the official converter:
 * [r * E/ranks, (r+1) * E/ranks).  E % ranks must be 0 (checked by the plan). */
static inline int wp_ep_first(int n_experts, int ranks, int r) { return r * (n_experts / ranks); }
/* Whether a row/column cut at `n` elements keeps whole blocks of `blk`. */
static inline int wp_cut_ok(uint64_t n, uint64_t blk) { return blk == 0 || n % blk == 0; }

/* ---- cast.c ---------------------------------------------------------------- */
/* wp_mxfp4_to_fp8 (spec §3.7) with one table lookup per byte: identical
 * output, scales and inexact count (tests/test_convert.c checks). */
size_t wp_cv_mxfp4_to_fp8(const uint8_t *q4, const uint8_t *s4, size_t rows, size_t cols, wp_scale_fmt fmt,
                          uint8_t *q_out, void *scale_out);

#endif
