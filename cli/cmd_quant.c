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
#include <unistd.h>

#include "cli/convert_args.h"
#include "verify/parity.h"

#define CMD "quant"

static int make_prompts(const wp_config *c, int32_t *pr[2], int *lens)
{
    int n = 8 * c->index_topk;
    if (n < 64) n = 64;
    if (c->max_position_embeddings > 0 && n > c->max_position_embeddings) n = c->max_position_embeddings;
    uint64_t x = 0x9E3779B97F4A7C15ull;
    for (int p = 0; p < 2; p++) {
        pr[p] = malloc((size_t)n * sizeof **pr);
        if (!pr[p]) return -1;
        lens[p] = n;
        for (int i = 0; i < n; i++) {
            x = x * 6364136223846793005ull + 1442695040888963407ull;
            pr[p][i] = (int32_t)((x >> 33) % (uint64_t)c->vocab_size);
        }
    }
    return 0;
}

/* The end-to-end check of the indexer path (issue 3): build into a temporary
 * directory, then the runtime's teacher-forced top-k recall of that build
 * against the checkpoint.  Returns 0 when it ran (r->pass says), else an
 * error code. */
static int indexer_recall(const cv_args *a, const wp_plan *p, wp_parity_report *r, wp_err *e)
{
    char dir[4096];
    const char *tmp = getenv("TMPDIR");
    snprintf(dir, sizeof dir, "%s/wpack-quant-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(dir)) return wp_fail_errno(e, "%s: cannot create a temporary directory", dir);
    char build[4200];
    snprintf(build, sizeof build, "%s/build", dir);
    wp_sink sink;
    int rc = wp_dir_sink_new(&sink, build, 0, e);
    wp_convert_opts o = {.threads = a->threads, .mem_budget = a->mem_budget};
    if (!rc) {
        rc = wp_convert_run(p, &sink, &o, NULL, e);
        wp_dir_sink_free(&sink);
    }
    wp_tsrc *src = NULL, *ref = NULL;
    int32_t *pr[2] = {NULL, NULL};
    int lens[2];
    if (!rc) rc = wp_tsrc_open(&src, build, e);
    if (!rc) rc = wp_tsrc_open_hf(&ref, a->ckpt, e);
    if (!rc && make_prompts(&p->config, pr, lens)) rc = wp_fail(e, WP_ENOMEM, "quant: out of memory");
    wp_rt_opts ro = {.threads = a->threads > 0 ? a->threads : 1};
    if (!rc)
        rc = wp_parity_against(src, &ro, ref, &ro, (const int32_t *const *)pr, lens, 2, a->recall_min, r, e);
    free(pr[0]);
    free(pr[1]);
    wp_tsrc_close(src);
    wp_tsrc_close(ref);
    char cmd[8400];
    snprintf(cmd, sizeof cmd, "%s/manifest.json", build);
    unlink(cmd);
    for (int f = 0; f < p->n_files; f++) {
        snprintf(cmd, sizeof cmd, "%s/%s", build, p->files[f].name);
        unlink(cmd);
    }
    rmdir(build);
    rmdir(dir);
    return rc;
}

static const cli_operand cv_operands[] = {
    {.name = "CKPT", .help = "the checkpoint directory (safetensors shards + config.json)", .off = CV_A(ckpt),
     .required = 1, .complete = "dir"},
    {0},
};
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
    if (wp_report_init(&rep, p, &e)) {
        code = cli_error(CMD, &e);
        goto out;
    }
    cli_bar bar;
    cli_bar_init(&bar, a.json, 1);
    wp_convert_opts o = {
        .threads = a.threads, .mem_budget = a.mem_budget, .report = &rep,
        .progress = cli_progress, .progress_ud = &bar,
    };
    wp_convert_stats st;
    rc = wp_convert_run(p, NULL, &o, &st, &e);
    cli_bar_end(&bar);
    if (rc) {
        code = cli_error(CMD, &e);
        goto out;
    }
    size_t over = wp_report_check(&rep);
    if (a.report && (rc = cv_write_report(CMD, &rep, a.report)) >= 0) {
        code = rc;
        goto out;
    }
    int recall_pass = 1;
    wp_parity_report pr;
    memset(&pr, 0, sizeof pr);
    if (a.recall) {
        if ((rc = indexer_recall(&a, p, &pr, &e))) {
            code = cli_error(CMD, &e);
            goto out;
        }
        recall_pass = pr.pass;
    }
    if (a.json) {
        cJSON *j = wp_report_to_json(&rep);
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
        for (int i = 0; i < pr.n_recall; i++)
            printf("indexer layer %d: top-k recall vs the checkpoint mean %.4f, worst query %.4f (%d queries)  %s\n",
                   pr.recall[i].layer, pr.recall[i].mean, pr.recall[i].worst, pr.recall[i].queries,
                   pr.recall[i].pass ? "PASS" : "FAIL");
    }
    code = over || !recall_pass ? WP_EXIT_FAIL : WP_EXIT_OK;
out:
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
