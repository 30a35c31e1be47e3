/* convert_args.c — options and plumbing shared by plan, convert and quant. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/convert_args.h"

static int parse_int(const char *s, int lo, int hi, int *out)
{
    char *end;
    long v = strtol(s, &end, 10);
    if (!*s || *end || v < lo || v > hi) return -1;
    *out = (int)v;
    return 0;
}

int cv_parse(const char *cmd, int argc, char **argv, unsigned allowed, void (*usage)(FILE *), cv_args *a)
{
    memset(a, 0, sizeof *a);
    wp_plan_opts po = WP_PLAN_OPTS_INIT;
    a->po = po;
    a->profile = "reference";
    a->top = 20;
    a->recall_min = 0.99;
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i], *v;
        if (cli_flag(arg, "--help") || cli_flag(arg, "-h")) {
            usage(stdout);
            return WP_EXIT_OK;
        } else if (cli_flag(arg, "--json")) {
            a->json = 1;
        } else if ((v = cli_opt(argc, argv, &i, "--profile"))) {
            a->profile = v;
        } else if ((v = cli_opt(argc, argv, &i, "--tensor-type"))) {
            if (a->ntypes == CV_MAX_TYPES) return cli_usage(cmd, "at most %d --tensor-type options", CV_MAX_TYPES);
            a->types[a->ntypes++] = v;
        } else if ((v = cli_opt(argc, argv, &i, "--ep"))) {
            if (parse_int(v, 1, 4096, &a->po.ep)) return cli_usage(cmd, "--ep: expected a rank count, got '%s'", v);
        } else if ((v = cli_opt(argc, argv, &i, "--tp"))) {
            if (parse_int(v, 1, 4096, &a->po.tp)) return cli_usage(cmd, "--tp: expected a rank count, got '%s'", v);
        } else if (cli_flag(arg, "--fuse-w13")) {
            a->po.fuse_w13 = 1;
        } else if (cli_flag(arg, "--no-fuse-w13")) {
            a->po.fuse_w13 = 0;
        } else if ((v = cli_opt(argc, argv, &i, "--align"))) {
            if (wp_parse_bytes(v, &a->po.align) || !a->po.align)
                return cli_usage(cmd, "--align: expected a size such as 4K or 2M, got '%s'", v);
        } else if ((allowed & CV_OUT) && ((v = cli_opt(argc, argv, &i, "-o")) || (v = cli_opt(argc, argv, &i, "--output")))) {
            a->out = v;
        } else if ((allowed & CV_OUT) && cli_flag(arg, "--force")) {
            a->force = 1;
        } else if ((allowed & CV_RUN) && (v = cli_opt(argc, argv, &i, "--threads"))) {
            if (parse_int(v, 1, 256, &a->threads)) return cli_usage(cmd, "--threads: expected 1..256, got '%s'", v);
        } else if ((allowed & CV_RUN) && (v = cli_opt(argc, argv, &i, "--mem-budget"))) {
            if (wp_parse_bytes(v, &a->mem_budget) || !a->mem_budget)
                return cli_usage(cmd, "--mem-budget: expected a size such as 1G or 512M, got '%s'", v);
        } else if ((allowed & CV_REPORT) && (v = cli_opt(argc, argv, &i, "--report"))) {
            a->report = v;
        } else if ((allowed & CV_LIST) && cli_flag(arg, "--tensors")) {
            a->list = 1;
        } else if ((allowed & CV_TOP) && (v = cli_opt(argc, argv, &i, "--top"))) {
            if (parse_int(v, 0, 1 << 30, &a->top)) return cli_usage(cmd, "--top: expected a count, got '%s'", v);
        } else if ((allowed & CV_RECALL) && cli_flag(arg, "--indexer-recall")) {
            a->recall = 1;
        } else if ((allowed & CV_RECALL) && (v = cli_opt(argc, argv, &i, "--recall-min"))) {
            char *end;
            a->recall_min = strtod(v, &end);
            if (*end || !(a->recall_min >= 0)) return cli_usage(cmd, "--recall-min: expected a number, got '%s'", v);
        } else if (arg[0] == '-' && arg[1]) {
            return cli_usage(cmd, "unknown or incomplete option '%s'", arg);
        } else if (!a->ckpt) {
            a->ckpt = arg;
        } else {
            return cli_usage(cmd, "unexpected argument '%s'", arg);
        }
    }
    if (!a->ckpt) return cli_usage(cmd, "missing the checkpoint CKPT");
    if ((allowed & CV_OUT) && !a->out) return cli_usage(cmd, "missing -o OUT");
    return -1;
}

int cv_open(const char *cmd, const cv_args *a, wp_ckpt **k, wp_plan **p)
{
    wp_err e = {0};
    *k = NULL;
    *p = NULL;
    wp_profile prof;
    memset(&prof, 0, sizeof prof);
    int rc = wp_ckpt_open(k, a->ckpt, &e);
    wp_config cfg;
    char cfg_path[4096];
    if (!rc && wp_path_join(cfg_path, sizeof cfg_path, wp_ckpt_dir(*k), "config.json"))
        rc = wp_fail(&e, WP_EUSAGE, "%s: path too long", wp_ckpt_dir(*k));
    if (!rc) rc = wp_config_load(&cfg, cfg_path, &e);
    if (!rc) rc = wp_profile_load(&prof, a->profile, &e);
    for (int i = 0; !rc && i < a->ntypes; i++) rc = wp_profile_add_override(&prof, a->types[i], &e);
    if (!rc) rc = wp_plan_build(p, *k, &cfg, &prof, &a->po, &e);
    wp_profile_free(&prof);
    if (rc) {
        wp_ckpt_close(*k);
        *k = NULL;
        return cli_error(cmd, &e);
    }
    return -1;
}

void cv_print_report(FILE *f, const wp_report *r, int top)
{
    wp_err e = {0};
    size_t *ord = wp_report_order(r, &e);
    if (!ord) return;
    size_t n = r->n < (size_t)top ? r->n : (size_t)top;
    if (r->n == 0) {
        fprintf(f, "no tensor is re-encoded: every output is a byte copy of its source\n");
        free(ord);
        return;
    }
    fprintf(f, "%-44s %-11s %-5s %10s %10s %9s %7s %s\n", "tensor (worst NMSE first)", "encoding", "meth",
            "nmse", "max|err|", "cosine", "sat%", "");
    for (size_t i = 0; i < n; i++) {
        const wp_qrecord *q = &r->rec[ord[i]];
        const wp_plan_weight *w = &r->plan->weights[q->weight];
        char enc[32];
        snprintf(enc, sizeof enc, "%s>%s", wp_src_kind_name(w->src), wp_enc_name(w->enc));
        double sat = q->err.n ? 100.0 * (double)q->err.n_saturated / (double)q->err.n : 0;
        const char *name = w->name;
        size_t len = strlen(name);
        fprintf(f, "%s%-43s %-11s %-5s %10.3g %10.3g %9.6f %7.3f %s%s%s\n", len > 43 ? "~" : "",
                len > 43 ? name + len - 42 : name, enc, wp_method_name(w->method), wp_qerr_nmse(&q->err),
                q->err.max_abs_err, wp_qerr_cosine(&q->err), sat, q->over ? "OVER " : "",
                w->indexer_path ? "[indexer] " : "", q->n_inexact ? "inexact" : "");
    }
    if (n < r->n) fprintf(f, "... %zu more (see --report FILE or --json)\n", r->n - n);
    fprintf(f, "%zu re-encoded tensor(s), %zu over threshold\n", r->n, r->n_over);
    free(ord);
}

int cv_write_report(const char *cmd, const wp_report *r, const char *path)
{
    wp_err e = {0};
    return wp_report_write_json(r, path, &e) ? cli_error(cmd, &e) : -1;
}
