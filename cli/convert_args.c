/* convert_args.c — options and plumbing shared by plan, convert and quant. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/convert_args.h"

const cli_operand cv_operands[] = {
    {.name = "CKPT", .help = "the checkpoint directory (safetensors shards + config.json)", .off = CV_A(ckpt),
     .required = 1, .complete = "dir"},
    {0},
};

int cv_finish(const char *cmd, cli_ctx *c, cv_args *a)
{
    a->json = c->json;
    a->force = c->force;
    if (a->type_list.n > CV_MAX_TYPES) return cli_usage(cmd, "at most %d --tensor-type options", CV_MAX_TYPES);
    for (int i = 0; i < a->type_list.n; i++) a->types[i] = a->type_list.v[i];
    a->ntypes = a->type_list.n;
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
    if (!rc) rc = wp_config_check_ckpt(&cfg, wp_ckpt_count(*k), cfg_path, &e);   /* docs/config.md */
    if (!rc) rc = wp_profile_load(&prof, a->profile, &e);
    for (int i = 0; !rc && i < a->ntypes; i++) rc = wp_profile_add_override(&prof, a->types[i], &e);
    if (!rc) rc = wp_plan_build(p, *k, &cfg, &prof, &a->po, &e);
    wp_profile_free(&prof);
    /* a lossy step nobody asked for, or of a sensitive family: exit 1 */
    if (!rc && (rc = wp_plan_check_loss(*p, a->allow_lossy, a->allow_sensitive, &e))) {
        wp_plan_free(*p);
        *p = NULL;
    }
    if (rc) {
        wp_ckpt_close(*k);
        *k = NULL;
        return cli_error(cmd, &e);
    }
    return -1;
}

void cv_print_loss(const wp_plan *p, const uint64_t *inexact)
{
    wp_loss_summary s;
    char line[1024];
    wp_plan_loss_summary(p, inexact, &s);
    wp_loss_summary_line(&s, line, sizeof line);
    printf("%s\n", line);
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

int cv_write_report(const char *cmd, const wp_report *r, const char *path, int force)
{
    wp_err e = {0};
    return wp_report_write_json(r, path, force, &e) ? cli_error(cmd, &e) : -1;
}
