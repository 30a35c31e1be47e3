/*
 * sensitivity.h — what each lossy family of a plan does to the model, end to
 * end (`wpack quant --prompts FILE`, docs/profiles.md "Sensitivity").
 *
 * Per-tensor error statistics do not see how sensitive a tensor is: the
 * router gate in MXFP4 has NMSE 1e-2 and cosine 0.99 yet moves the logits
 * far more than an FP8 expert does.  For each family the plan re-quantises
 * (wp_loss_family of its lossy weights), the model is run on the prompts
 * from a tensor source where only that family is lossy — the checkpoint's
 * tensors, with that family's weights re-quantised on load exactly as the
 * plan would (same target encoding, block and scale rule) — and compared
 * with the checkpoint itself (the exact run: every other weight of the plan
 * is a copy or an exact re-encode, value-equal by rule).  Every position of
 * every prompt is compared: KL(exact || lossy) of the softmaxed logits (mean
 * and max), top-1 agreement and the worst cosine.  Families are ranked by
 * mean KL, largest first.  The exact run against itself is measured too, as
 * the zero it must be.
 */
#ifndef WP_SENSITIVITY_H
#define WP_SENSITIVITY_H

#include <stdint.h>

#include "common/wp.h"
#include "convert/convert.h"
#include "runtime/runtime.h"

typedef struct wp_sens_family {
    char family[96];          /* wp_loss_family; "(exact)" for the baseline */
    const char *sensitive;    /* wp_sensitive_family of its weights, or NULL */
    size_t weights;           /* lossy plan weights of the family */
    int positions;            /* logit rows compared */
    double kl_mean, kl_max;   /* nats */
    double top1_agree;        /* fraction of positions whose argmax matches */
    double cos_min;
} wp_sens_family;

typedef struct wp_sens_report {
    int n;                    /* families, ranked by kl_mean (largest first) */
    wp_sens_family *fam;
    wp_sens_family exact;     /* the exact source against the checkpoint */
    int prompts, positions;
    double seconds;
} wp_sens_report;

/* Run the sensitivity of every lossy family of plan p on the checkpoint at
 * ckpt_dir (the plan's source) over n prompts (token ids; each at least one
 * token).  0, or an error (WP_EUSAGE: no prompt, a token outside the
 * vocabulary; whatever the runtime reports).  A plan without a lossy weight
 * gives n = 0 and the baseline only. */
int wp_sensitivity(const wp_plan *p, const char *ckpt_dir, const int32_t *const *prompts, const int *lens,
                   int n_prompts, int threads, wp_sens_report *r, wp_err *e);
void wp_sens_report_free(wp_sens_report *r);
/* {prompts, positions, seconds, exact: {...}, families: [{family, sensitive,
 * weights, positions, kl_mean, kl_max, top1_agree, cosine_min}] ranked}. */
struct cJSON *wp_sens_report_json(const wp_sens_report *r);

#endif
