/*
 * parity.h — numerical parity of the runtime against golden reference
 * outputs (tests/fixtures/tiny-a/golden-fp32.safetensors, see
 * ../shared/fixtures/README.md) and between two builds.
 *
 * Golden parity runs three checks:
 *  1. every main layer alone, teacher-forced from the golden input of that
 *     layer (layer_h_in0, then layer_h[l-1]): per-position relative error
 *     ||out - gold|| / ||gold|| over the position's hc x dim values, as
 *     median / 90th percentile / max;
 *  2. logits: the prefill's last position, decode teacher-forced with the
 *     golden decode_tokens, and the MTP block from layer_h[3] and
 *     mtp_input_ids: per-row cosine, relative RMS, top-1 agreement, KL;
 *  3. the CSA layers' indexer top-k, teacher-forced: per-query recall
 *     |S_run & S_gold| / |S_gold| (mean and worst).
 * Thresholds default to the fixture README's recommendation.
 */
#ifndef WP_PARITY_H
#define WP_PARITY_H

#include <stddef.h>
#include <stdint.h>

#include "common/wp.h"
#include "runtime/runtime.h"
#include "verify/stats.h"

typedef struct wp_parity_opts {
    int threads;
    unsigned rt_flags;        /* WP_RT_* for the runtime under test */
    double layer_median_max;  /* default 1e-5 */
    double layer_p90_max;     /* default 1e-4 */
    double cos_min;           /* default 0.99 */
    double recall_min;        /* default 0.99 */
} wp_parity_opts;
void wp_parity_opts_default(wp_parity_opts *o);

typedef struct wp_parity_layer {
    int layer;
    double median, p90, max;
    int pass;
} wp_parity_layer;

typedef struct wp_parity_logits {
    const char *what;         /* "prefill", "decode", "mtp" */
    int rows;                 /* 0: not run (golden lacks the field) */
    double cos_min, cos_mean, rel_rms_max, kl_max;
    int top1_agree;           /* rows whose argmax matches */
    /* rows where the golden choice is clear (top-1 ahead of top-2 by at least
     * WP_PARITY_CLEAR x the row's RMS), and how many of those match: a near
     * tie can flip on rounding noise alone */
    int top1_clear_rows, top1_clear_agree;
    int pass;
} wp_parity_logits;

typedef struct wp_parity_recall {
    int layer;
    int queries;              /* queries with at least one golden entry */
    double mean, worst;
    int pass;
} wp_parity_recall;

#define WP_PARITY_MAX 64
#define WP_PARITY_CLEAR 0.1
typedef struct wp_parity_report {
    int n_layers;
    wp_parity_layer layers[WP_PARITY_MAX];
    wp_parity_logits prefill, decode, mtp;
    int n_recall;
    wp_parity_recall recall[WP_PARITY_MAX];
    int golden_topk;          /* 0, or K of a reduced golden (verify/golden.h) */
    int pass;
    double seconds;
} wp_parity_report;

/* Run the golden checks of `golden` (a safetensors file) on the model in
 * `src`.  Returns 0 when the checks ran (r->pass says whether they passed),
 * or an error code when they could not run. */
int wp_parity_golden(wp_tsrc *src, const char *golden, const wp_parity_opts *o,
                     wp_parity_report *r, wp_err *e);

/* Indexer recall of `src` against `ref` on the same prompts (teacher-forced:
 * both run the same tokens from position 0).  One wp_parity_recall per CSA
 * layer in r->recall; r->pass = every layer's worst-case mean >= recall_min. */
int wp_parity_against(wp_tsrc *src, const wp_rt_opts *src_opts, wp_tsrc *ref,
                      const wp_rt_opts *ref_opts, const int32_t *const *prompts,
                      const int *lens, int n_prompts, double recall_min, wp_parity_report *r,
                      wp_err *e);

/* ---- One build against a reference build (`parity --against`, compare.c) ---------
 * Both run in this process on the same prompts, each prompt from position 0,
 * one prompt at a time (memory: a few [tokens, hc, dim] buffers and two
 * logits rows, whatever the number of layers or prompts):
 *  - per layer, teacher-forced: REF's layer l input is fed to BUILD's layer l
 *    and the outputs compared per position (relative error, as for golden);
 *    a CSA layer's indexer selections on that same input give the recall;
 *  - logits at every prompt position, each model on its own trunk (end to
 *    end): verify/stats.h's KL, top-1, same top-k, cosine, rel RMS;
 *  - MTP, teacher-forced from REF's trunk with ids = the prompt shifted left
 *    by one and REF's greedy next token last: the last position's logits.
 * The exact gate passes when every compared value is bit-identical (the
 * first one that is not is named); the lossy gate on mean KL, p99 KL, top-1
 * agreement and indexer recall (docs/parity.md says why these values). */
enum { WP_GATE_EXACT = 1, WP_GATE_LOSSY = 2 };

typedef struct wp_compare_opts {
    int topk;                 /* k of "same top-k"; default WP_STATS_TOPK */
    int gate;                 /* WP_GATE_*; default WP_GATE_LOSSY */
    double kl_mean_max;       /* lossy gate, defaults in wp_compare_opts_default */
    double kl_p99_max;
    double top1_min;
    double recall_min;
} wp_compare_opts;
void wp_compare_opts_default(wp_compare_opts *o);

typedef struct wp_compare_prompt {
    int tokens;
    wp_lsummary logits;       /* over the prompt's positions */
    int mtp;                  /* 1: MTP compared */
    double mtp_kl, mtp_cos;
    int mtp_top1;
    double layer_median[WP_PARITY_MAX], layer_max[WP_PARITY_MAX];   /* by layer */
    double recall[WP_PARITY_MAX];   /* mean recall by CSA layer (report order) */
    int identical;            /* every value of this prompt bit-identical */
} wp_compare_prompt;

typedef struct wp_compare_report {
    int n_prompts;
    wp_compare_prompt *prompts;
    int n_layers;
    wp_parity_layer layers[WP_PARITY_MAX];   /* over every position of every prompt */
    wp_lsummary logits, mtp;
    int n_recall;
    wp_parity_recall recall[WP_PARITY_MAX];
    int topk;
    int gate;                 /* the gate applied */
    wp_compare_opts opts;     /* its thresholds */
    int identical;            /* every compared value bit-identical */
    char mismatch[256];       /* the first that was not ("" if none) */
    int pass;
    double seconds;
} wp_compare_report;

/* Compare src with ref on n_prompts prompts (prompts[p] of lens[p] >= 1 ids).
 * 0 when it ran (r->pass); free r with wp_compare_report_free either way. */
int wp_parity_compare(wp_tsrc *src, const wp_rt_opts *src_opts, wp_tsrc *ref,
                      const wp_rt_opts *ref_opts, const int32_t *const *prompts, const int *lens,
                      int n_prompts, const wp_compare_opts *o, wp_compare_report *r, wp_err *e);
void wp_compare_report_free(wp_compare_report *r);
/* {reference, gate: "exact"|"lossy", thresholds: {...}, identical, first_mismatch,
 * layers: [{layer, median, p90, max}], logits: {rows, kl_mean, kl_p99, kl_max,
 * top1_agree, top1_rate, topk, topk_same, topk_rate, cosine_min, cosine_mean,
 * rel_rms_mean, rel_rms_max}, mtp: {same}, indexer_recall: [...], prompts:
 * [{tokens, identical, logits: {...}, mtp: {kl, cosine, top1}, layers:
 * [{layer, median, max}], recall: [..]}], seconds, pass}. */
struct cJSON *wp_compare_json(const wp_compare_report *r, const char *reference);
struct cJSON *wp_lsummary_json(const wp_lsummary *s);

/* Per-layer errors as a JSON array [{layer, median, p90, max[, pass]}]. */
struct cJSON *wp_parity_layers_json(const wp_parity_layer *layers, int n, int with_pass);
/* Per-CSA-layer recall as a JSON array [{layer, queries, mean, worst, pass}]. */
struct cJSON *wp_parity_recall_list_json(const wp_parity_recall *recall, int n);
/* ---- Reports as JSON (what `wpack parity --json` prints) ------------------------
 * The golden checks of r: {file, topk (a reduced golden only), layers: [{layer, median, p90, max, pass}],
 * prefill/decode/mtp: {rows, cosine_min, cosine_mean, rel_rms_max, kl_max,
 * top1_agree, top1_clear_rows, top1_clear_agree, pass}, indexer_recall:
 * [{layer, queries, mean, worst, pass}], seconds, pass}.  NULL if out of memory. */
struct cJSON *wp_parity_golden_json(const wp_parity_report *r, const char *golden);
/* The recall check of r (wp_parity_against): {reference (what it was checked
 * against, as the caller names it), prompts, gate, layers: [as above], pass}. */
struct cJSON *wp_parity_recall_json(const wp_parity_report *r, const char *reference,
                                    int n_prompts, double gate);

/* ---- The measures (exposed for tests) --------------------------------------- */
double wp_cosine(const float *a, const float *b, size_t n);
/* ||a - ref|| / ||ref|| */
double wp_rel_err(const float *a, const float *ref, size_t n);
/* KL(softmax(ref) || softmax(a)) in nats */
double wp_kl_logits(const float *ref, const float *a, size_t n);
size_t wp_argmax(const float *a, size_t n);
/* |{x in a, x >= 0} & {y in ref, y >= 0}| / |{y in ref, y >= 0}|; -1 if ref
 * has no entry.  Entries are sets (order ignored), -1 means none. */
double wp_topk_recall(const int32_t *a, const int32_t *ref, int k);
/* q-quantile (0..1) of v[n] by linear interpolation; sorts v in place. */
double wp_quantile(double *v, size_t n, double q);

#endif
