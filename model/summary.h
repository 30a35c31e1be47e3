/*
 * summary.h — what a checkpoint holds and whether it is the checkpoint its
 * config.json describes (`wpack inspect`): tensor count and bytes, shards,
 * dtype and family histograms, layer kinds, MTP, and the inventory check.
 * Headers only: the strict reader validates every header and the index on
 * open; no tensor byte is read.
 */
#ifndef WP_MODEL_SUMMARY_H
#define WP_MODEL_SUMMARY_H

#include <cjson/cJSON.h>

#include "model/model.h"

typedef struct wp_tally {
    uint64_t n, bytes;
} wp_tally;

typedef struct wp_ckpt_summary {
    const char *path;
    size_t tensors, shards;
    uint64_t bytes, file_bytes;
    wp_tally dtype[WP_DTYPE_COUNT];
    wp_tally fam[WP_FAM_COUNT];
    int max_layer;                 /* highest layers.L seen, -1 if none */
    int mtp_blocks;                /* distinct mtp.K seen (max K + 1) */
    int embed_copy, head_copy;     /* MTP copies of the shared embed/head */
    int have_config;
    int partial;                   /* path is one file: a part of the model, missing is no problem */
    char config_path[4096];
    const char *no_config_reason;
    wp_config cfg;
    int sw, csa, hca;              /* main layers by compress ratio */
    wp_inv_report inv;
} wp_ckpt_summary;

/* Summarise the checkpoint directory or single .safetensors file at path
 * (which must outlive the summary).  A directory needs its config.json; a
 * file is checked against a config.json beside it when there is one. */
int wp_ckpt_summarise(const char *path, wp_ckpt_summary **out, wp_err *e);
void wp_ckpt_summary_free(wp_ckpt_summary *s);
/* Problems that fail the check: everything for a checkpoint, all but
 * "missing" for one file of it. */
size_t wp_ckpt_summary_problems(const wp_ckpt_summary *s);
/* Whether an issue is one (missing tensors of a lone file are not). */
int wp_ckpt_summary_shows(const wp_ckpt_summary *s, const wp_inv_issue *x);
/* The summary as `wpack inspect --json` prints it. */
cJSON *wp_ckpt_summary_json(const wp_ckpt_summary *s);

#endif
