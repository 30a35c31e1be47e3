/*
 * cmd_quant.c — `wpack quant CKPT --profile P [--report r.json]`: what a
 * profile's re-encodes cost, without writing a build.  Every tensor that is
 * not a byte copy is converted in memory (same pipeline, same bounded
 * budget) and compared with its dequantised source: RMSE, NMSE, max |err|,
 * cosine, saturated fraction.  Exit 1 when a tensor exceeds its encoding's
 * threshold (docs/profiles.md), so CI can gate a build on it.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/convert_args.h"
#include "verify/recall.h"

#define CMD "quant"

static const cli_option quant_opts[] = {
    CV_OPTS_PLAN,
    CV_OPTS_RUN,
    CV_OPTS_REPORT("write the full report (JSON) to FILE"),
    {.name = "indexer-recall", .kind = CLI_FLAG, .off = CV_A(recall),
     .help = "also build the profile into a temporary directory and measure each CSA\n"
             "layer's indexer top-k recall against the checkpoint with the CPU runtime\n"
             "(spec §6) on two synthetic prompts; practical for small models only"},
    {.name = "recall-min", .kind = CLI_NUM, .off = CV_A(recall_min), .arg = "X", .lo = 0, .hi = 1, .def = "0.99",
     .help = "the recall below which --indexer-recall fails"},
    {0},
};

static int quant_run(cli_ctx *c, void *va)
{
    cv_args a = *(cv_args *)va;
    int rc = cv_finish(CMD, c, &a);
    if (rc >= 0) return rc;
    wp_ckpt *k;
    wp_plan *p;
    if ((rc = cv_open(CMD, &a, &k, &p)) >= 0) return rc;
    wp_err e = {0};
    wp_report rep;
    memset(&rep, 0, sizeof rep);
    int code = WP_EXIT_OK;
    uint64_t *inexact = NULL;
    if (wp_report_init(&rep, p, &e)) {
        code = cli_error(CMD, &e);
        goto out;
    }
    cli_bar bar;
    cli_bar_init(&bar, a.json, 1);
    inexact = calloc(p->n_weights ? p->n_weights : 1, sizeof *inexact);
    if (!inexact) {
        cli_bar_end(&bar);
        code = cli_error(CMD, (wp_oom(&e, "quant"), &e));
        goto out;
    }
    wp_convert_opts o = {
        .threads = a.threads, .mem_budget = a.mem_budget, .report = &rep,
        .progress = cli_progress, .progress_ud = &bar, .inexact = inexact,
    };
    wp_convert_stats st;
    rc = wp_convert_run(p, NULL, &o, &st, &e);
    cli_bar_end(&bar);
    if (rc) {
        code = cli_error(CMD, &e);
        goto out;
    }
    size_t over = wp_report_check(&rep);
    if (a.report && (rc = cv_write_report(CMD, &rep, a.report, a.force)) >= 0) {
        code = rc;
        goto out;
    }
    int recall_pass = 1;
    wp_parity_report pr;
    memset(&pr, 0, sizeof pr);
    if (a.recall) {
        if ((rc = wp_indexer_recall_of_plan(p, a.ckpt, a.threads, a.mem_budget, a.recall_min, &pr, &e))) {
            code = cli_error(CMD, &e);
            goto out;
        }
        recall_pass = pr.pass;
    }
    if (a.json) {
        cJSON *j = wp_report_to_json(&rep);
        wp_loss_summary ls;
        wp_plan_loss_summary(p, inexact, &ls);
        cJSON_AddItemToObject(j, "loss", wp_loss_summary_json(&ls));
        if (a.recall) {
            cJSON *ra = cJSON_AddObjectToObject(j, "indexer_recall");
            cJSON_AddNumberToObject(ra, "gate", a.recall_min);
            cJSON *ls = cJSON_AddArrayToObject(ra, "layers");
            for (int i = 0; i < pr.n_recall; i++) {
                cJSON *l = cJSON_CreateObject();
                cJSON_AddNumberToObject(l, "layer", pr.recall[i].layer);
                cJSON_AddNumberToObject(l, "queries", pr.recall[i].queries);
                cJSON_AddNumberToObject(l, "mean", pr.recall[i].mean);
                cJSON_AddNumberToObject(l, "worst", pr.recall[i].worst);
                cJSON_AddBoolToObject(l, "pass", pr.recall[i].pass);
                cJSON_AddItemToArray(ls, l);
            }
            cJSON_AddBoolToObject(ra, "pass", pr.pass);
        }
        cli_print_json(j);
    } else {
        cv_print_report(stdout, &rep, a.top);
        cv_print_loss(p, inexact);
        for (int i = 0; i < pr.n_recall; i++)
            printf("indexer layer %d: top-k recall vs the checkpoint mean %.4f, worst query %.4f (%d queries)  %s\n",
                   pr.recall[i].layer, pr.recall[i].mean, pr.recall[i].worst, pr.recall[i].queries,
                   pr.recall[i].pass ? "PASS" : "FAIL");
    }
    code = over || !recall_pass ? WP_EXIT_FAIL : WP_EXIT_OK;
out:
    free(inexact);
    wp_report_free(&rep);
    wp_plan_free(p);
    wp_ckpt_close(k);
    return code;
}

const cli_command cli_cmd_quant = {
    .name = "quant",
    .summary = "report quantisation error of a profile (no output)",
    .about = "Quantisation report of a profile, no build written: every re-encoded tensor\n"
             "against its dequantised source (RMSE, NMSE, max |err|, cosine, saturated\n"
             "fraction), worst NMSE first.  Indexer-path tensors are flagged [indexer].",
    .operands = cv_operands,
    .options = quant_opts,
    .flags = CLI_WRITES,
    .exit1 = "a tensor's error, or with --indexer-recall a layer's recall, is past its threshold",
    .args_size = sizeof(cv_args),
    .run = quant_run,
};
