/*
 * cmd_convert.c — `wpack convert CKPT -o OUT --profile P [...]`: execute the
 * plan (see cmd_plan.c) into a build directory, streaming, in bounded memory.
 *
 * SIGINT/SIGTERM/SIGHUP stop the workers, the finishing (hashing back, the
 * manifest) and the move into place, the temporary directory is removed and
 * the signal is re-raised: a convert interrupted before its output was
 * complete leaves no OUT.  A signal that comes once OUT is in place still
 * ends the process by that signal; OUT stays, complete.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/convert_args.h"

#define CMD "convert"

static volatile sig_atomic_t g_stop;
static const int g_sigs[3] = {SIGINT, SIGTERM, SIGHUP};
static struct sigaction g_old[3];   /* the cleanup handlers of common/file.c */

/* The first signal asks the workers to stop (the sink then removes its
 * temporary directory); a second one goes straight to the cleanup handler,
 * which removes every registered temp and dies of the signal. */
static void on_signal(int sig)
{
    g_stop = sig;
    for (int i = 0; i < 3; i++)
        if (g_sigs[i] == sig) sigaction(sig, &g_old[i], NULL);
}

static const cli_option convert_opts[] = {
    {.name = "output", .short_name = 'o', .kind = CLI_STR, .off = CV_A(out), .arg = "OUT", .required = 1,
     .complete = "dir", .help = "the build directory to create (it appears only when complete)"},
    CV_OPTS_PLAN,
    CV_OPTS_RUN,
    CV_OPTS_REPORT("also write the quantisation-error report (JSON) to FILE"),
    {0},
};

static int convert_run(cli_ctx *c, void *va)
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
    wp_sink sink;
    memset(&sink, 0, sizeof sink);
    int code = WP_EXIT_OK;
    /* per weight: values an exact re-encode lost (the build's "loss") */
    uint64_t *inexact = calloc(p->n_weights ? p->n_weights : 1, sizeof *inexact);
    if (!inexact) wp_oom(&e, "convert");
    if (!inexact || (a.report && wp_report_init(&rep, p, &e)) || wp_dir_sink_new(&sink, a.out, a.force, &e)) {
        code = cli_error(CMD, &e);
        goto out;
    }
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    for (int i = 0; i < 3; i++) sigaction(g_sigs[i], &sa, &g_old[i]);

    cli_bar bar;
    cli_bar_init(&bar, a.json, 1);
    wp_convert_opts o = {
        .threads = a.threads, .mem_budget = a.mem_budget, .report = a.report ? &rep : NULL,
        .progress = cli_progress, .progress_ud = &bar, .cancel = &g_stop,
        .inexact = inexact, .allow_lossy = a.allow_lossy,
    };
    wp_convert_stats st;
    rc = wp_convert_run(p, &sink, &o, &st, &e);
    cli_bar_end(&bar);
    wp_dir_sink_free(&sink);
    if (g_stop) {
        /* die of the signal so callers see what happened */
        int sig = g_stop;
        if (rc)
            fprintf(stderr, "wpack %s: interrupted by signal %d; no output written\n", CMD, sig);
        else
            fprintf(stderr, "wpack %s: signal %d came after %s was complete; it is kept\n", CMD, sig, a.out);
        signal(sig, SIG_DFL);
        raise(sig);
    }
    for (int i = 0; i < 3; i++) sigaction(g_sigs[i], &g_old[i], NULL);
    if (rc) {
        code = cli_error(CMD, &e);
        goto out;
    }
    size_t over = 0;
    if (a.report) {
        over = wp_report_check(&rep);
        if ((rc = cv_write_report(CMD, &rep, a.report, a.force)) >= 0) {
            code = rc;
            goto out;
        }
    }
    double gbps = st.seconds > 0 ? (double)st.out_bytes / st.seconds / 1e9 : 0;
    if (a.json) {
        cJSON *j = cJSON_CreateObject();
        cJSON_AddStringToObject(j, "output", a.out);
        cJSON_AddStringToObject(j, "profile", p->profile.name);
        cJSON *fs = cJSON_AddArrayToObject(j, "files");
        for (int i = 0; i < p->n_files; i++) cJSON_AddItemToArray(fs, cJSON_CreateString(p->files[i].name));
        cJSON_AddNumberToObject(j, "tensors", (double)p->n_tensors);
        cJSON_AddNumberToObject(j, "weights", (double)p->n_weights);
        cJSON_AddNumberToObject(j, "bytes_in", (double)st.in_bytes);
        cJSON_AddNumberToObject(j, "bytes_out", (double)st.out_bytes);
        cJSON_AddNumberToObject(j, "seconds", st.seconds);
        cJSON_AddNumberToObject(j, "gb_per_s", gbps);
        cJSON_AddNumberToObject(j, "threads", st.threads);
        cJSON_AddNumberToObject(j, "items", (double)st.items);
        cJSON_AddNumberToObject(j, "max_worker_bytes", (double)st.max_item_bytes);
        cJSON_AddNumberToObject(j, "peak_rss_bytes", (double)st.peak_rss);
        cJSON_AddNumberToObject(j, "cast_inexact_elements", (double)st.cast_inexact);
        wp_loss_summary ls;
        wp_plan_loss_summary(p, inexact, &ls);
        cJSON_AddItemToObject(j, "loss", wp_loss_summary_json(&ls));
        if (a.report) {
            cJSON_AddStringToObject(j, "report", a.report);
            cJSON_AddNumberToObject(j, "report_over_threshold", (double)over);
        }
        cli_print_json(j);
    } else {
        char b1[32], b2[32];
        printf("wrote %s: %d file(s), %zu tensors, %s in %.2fs (%.2f GB/s), peak RSS %s, %d thread(s)\n", a.out,
               p->n_files, p->n_tensors, cli_bytes(st.out_bytes, b1, sizeof b1), st.seconds, gbps,
               cli_bytes(st.peak_rss, b2, sizeof b2), st.threads);
        cv_print_loss(p, inexact);
        if (a.report) cv_print_report(stdout, &rep, a.top);
    }
    if (st.cast_inexact)
        fprintf(stderr, "wpack %s: warning: %llu element(s) of the spec §3.7 MXFP4->FP8 cast were not exact\n", CMD,
                (unsigned long long)st.cast_inexact);
    if (over)
        fprintf(stderr, "wpack %s: warning: %zu tensor(s) over their error threshold (see %s)\n", CMD, over, a.report);
out:
    free(inexact);
    wp_dir_sink_free(&sink);
    wp_report_free(&rep);
    wp_plan_free(p);
    wp_ckpt_close(k);
    return code;
}

const cli_command cli_cmd_convert = {
    .name = "convert",
    .summary = "build a .wpk container from a checkpoint for a profile",
    .about = "Build the directory OUT (one .wpk per rank + manifest.json) from the checkpoint\n"
             "CKPT for a profile, executing `wpack plan` with the same options.  Inputs are\n"
             "streamed with pread in work items sized from the memory budget; every output\n"
             "tensor is hashed (SHA-256) as it is written; OUT appears only when complete.",
    .operands = cv_operands,
    .options = convert_opts,
    .flags = CLI_WRITES,
    .args_size = sizeof(cv_args),
    .run = convert_run,
};
