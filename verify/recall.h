/*
 * recall.h — the end-to-end check of the indexer path of a plan (`wpack quant
 * --indexer-recall`): the weight error alone can miss what FP4 indexer
 * weights do to the top-k selection, so the plan is built for real and run.
 */
#ifndef WP_VERIFY_RECALL_H
#define WP_VERIFY_RECALL_H

#include "convert/convert.h"
#include "verify/parity.h"

/* Build plan p into a temporary directory ($TMPDIR or /tmp), then measure each
 * CSA layer's teacher-forced indexer top-k recall of that build against the
 * checkpoint at ckpt_dir (spec §6) on two synthetic prompts, gated at
 * recall_min.  Returns 0 when it ran (r->pass says whether it passed), else
 * a WP_E* code.  The temporary build is
 * removed either way.  Practical for small models only. */
int wp_indexer_recall_of_plan(const wp_plan *p, const char *ckpt_dir, int threads, uint64_t mem_budget,
                              double recall_min, wp_parity_report *r, wp_err *e);

#endif
