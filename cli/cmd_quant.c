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
#include "runtime/tokens.h"
#include "verify/recall.h"
#include "verify/sensitivity.h"

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
    {.name = "prompts", .kind = CLI_STR, .off = CV_A(prompts), .arg = "FILE", .complete = "file",
     .help = "measure each re-quantised family's end-to-end effect with the CPU runtime:\n"
             "that family lossy, the rest exact, every position of the prompts (token ids,\n"
             "one prompt per line) against the checkpoint: KL and top-1, ranked"},
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
    wp_sens_report sr;
    memset(&sr, 0, sizeof sr);
    if (a.prompts) {
        int32_t **pt = NULL;
        int *lens = NULL, np = 0;
        rc = wp_prompt_lines_load(a.prompts, &pt, &lens, &np, &e);
        if (!rc) rc = wp_sensitivity(p, a.ckpt, (const int32_t *const *)pt, lens, np, a.threads, &sr, &e);
        if (pt) wp_prompt_lines_free(pt, lens, np);
        if (rc) {
            code = cli_error(CMD, &e);
            goto out;
        }
    }
    if (a.json) {
        cJSON *j = wp_report_to_json(&rep);
        if (a.prompts) cJSON_AddItemToObject(j, "sensitivity", wp_sens_report_json(&sr));
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
        if (a.prompts) {
            printf("\nsensitivity: %d prompt(s), %d positions, each family lossy alone vs the checkpoint\n",
                   sr.prompts, sr.positions);
            printf("%-32s %-14s %7s %11s %11s %8s %10s\n", "family (largest KL first)", "sensitive", "weights",
                   "KL mean", "KL max", "top-1", "cos min");
            for (int i = -1; i < sr.n; i++) {
                const wp_sens_family *f = i < 0 ? &sr.exact : &sr.fam[i];
                printf("%-32s %-14s %7zu %11.3e %11.3e %8.4f %10.6f\n", f->family, f->sensitive ? f->sensitive : "",
                       f->weights, f->kl_mean, f->kl_max, f->top1_agree, f->cos_min);
            }
        }
        for (int i = 0; i < pr.n_recall; i++)
            printf("indexer layer %d: top-k recall vs the checkpoint mean %.4f, worst query %.4f (%d queries)  %s\n",
                   pr.recall[i].layer, pr.recall[i].mean, pr.recall[i].worst, pr.recall[i].queries,
                   pr.recall[i].pass ? "PASS" : "FAIL");
    }
    code = over || !recall_pass ? WP_EXIT_FAIL : WP_EXIT_OK;
    wp_sens_report_free(&sr);
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
