/*
 * stats.h — how far a model's logits are from a reference's, row by row, in
 * the measures people already use to judge a quantised model (llama.cpp's
 * `llama-perplexity --kl-divergence`: mean KL, its percentiles, "same top p").
 * docs/parity.md states every definition; in short, for one row (one
 * position) with reference logits r and logits a over the vocabulary:
 *
 *   KL        KL(softmax(r) || softmax(a)) in nats, computed in double
 *   top-1     argmax a == argmax r (ties: the lower id), llama.cpp's "same top p"
 *   same top-k the sets of the k largest logits are equal (order ignored)
 *   cosine    a.r / (|a| |r|)
 *   rel RMS   |a - r| / |r|
 *
 * An accumulator gathers rows (every row's KL is kept for the percentiles:
 * 8 bytes a row) and summarises them.  Use one per scope (a prompt, a whole
 * run) and add each row to each.
 */
#ifndef WP_VERIFY_STATS_H
#define WP_VERIFY_STATS_H

#include <stddef.h>
#include <stdint.h>

#include "common/wp.h"

#define WP_STATS_TOPK 5       /* the default k of "same top-k" */
#define WP_STATS_TOPK_MAX 64

typedef struct wp_lstats {
    int k;                    /* of "same top-k" */
    size_t rows;
    double *kl;               /* [rows] */
    size_t cap;
    double kl_sum, kl_max;
    double cos_min, cos_sum, rel_sum, rel_max;
    size_t top1_agree, topk_same;
} wp_lstats;

typedef struct wp_lsummary {
    size_t rows;
    int k;
    double kl_mean, kl_p99, kl_max;
    double cos_min, cos_mean, rel_rms_mean, rel_rms_max;
    size_t top1_agree, topk_same;
    double top1_rate, topk_rate;  /* agree / rows (1 with no rows) */
} wp_lsummary;

/* k: 1..WP_STATS_TOPK_MAX (clamped). */
void wp_lstats_init(wp_lstats *s, int k);
void wp_lstats_free(wp_lstats *s);
/* One row: ref and a hold V logits each.  WP_ENOMEM only. */
int wp_lstats_add(wp_lstats *s, const float *ref, const float *a, size_t V, wp_err *e);
/* One row whose measures were computed elsewhere (a reduced golden's rows,
 * wp_kl_topk). */
int wp_lstats_add_measured(wp_lstats *s, double kl, double cos, double rel, int top1, int topk_same,
                           wp_err *e);
/* The summary (sorts the KL values it holds; adding more later is fine). */
void wp_lstats_summary(wp_lstats *s, wp_lsummary *out);

/* ---- Row measures --------------------------------------------------------------- */
/* KL(softmax(ref) || softmax(a)) in nats (>= 0), without allocating. */
double wp_kl_rows(const float *ref, const float *a, size_t V);
/* log sum exp of a row, in double */
double wp_logsumexp(const float *x, size_t V);
/* The k largest entries' ids, largest first (ties: lower id), k <= V. */
void wp_topk_ids(const float *x, size_t V, int k, int32_t *ids);
/* KL when the reference row is known only by its k largest logits (ids,
 * vals) and its log-sum-exp: the KL of the two distributions coarsened to
 * those k tokens plus one "rest" bucket (a lower bound of the full KL, equal
 * to it when the rest carries no mass; docs/parity.md). */
double wp_kl_topk(const int32_t *ids, const float *vals, int k, double ref_lse, const float *a,
                  size_t V);

#endif
