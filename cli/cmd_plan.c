/*
 * cmd_plan.c — `wpack plan CKPT --profile P [...]`: the complete output of a
 * build (every tensor's name, encoding, shape, bytes, file, aligned offset
 * and sources; totals per family) from headers and config.json alone.  The
 * same inputs always give the same plan, and `wpack convert` executes it.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/convert_args.h"

#define CMD "plan"

static void print_human(const wp_plan *p, int list)
{
    char a[32], b[32];
    printf("plan: %s -> profile %s, %d file(s), %zu tensors (%zu weights)\n", p->source, p->profile.name, p->n_files,
           p->n_tensors, p->n_weights);
    for (int i = 0; i < p->n_files; i++)
        printf("  %-32s %6zu tensors %12s\n", p->files[i].name, p->files[i].n_tensors,
               cli_bytes(p->files[i].data_bytes, a, sizeof a));
    size_t methods[4] = {0};
    for (size_t i = 0; i < p->n_weights; i++) methods[p->weights[i].method]++;
    printf("weights: %zu copied, %zu exact re-encodes, %zu spec §3.7 casts, %zu re-quantised\n", methods[WP_M_COPY],
           methods[WP_M_EXACT], methods[WP_M_CAST37], methods[WP_M_QUANT]);
    cv_print_loss(p, NULL);
    printf("\n%-16s %9s %12s %9s %12s\n", "family", "in", "in bytes", "out", "out bytes");
    for (int f = 0; f < WP_FAM_COUNT; f++) {
        const wp_plan_family *x = &p->family[f];
        if (!x->n_in && !x->n_out) continue;
        printf("%-16s %9llu %12s %9llu %12s\n", wp_family_name((wp_family)f), (unsigned long long)x->n_in,
               cli_bytes(x->in_bytes, a, sizeof a), (unsigned long long)x->n_out, cli_bytes(x->out_bytes, b, sizeof b));
    }
    printf("%-16s %9zu %12s %9zu %12s\n", "total", wp_ckpt_count(p->ckpt), cli_bytes(p->in_bytes, a, sizeof a),
           p->n_tensors, cli_bytes(p->out_bytes, b, sizeof b));
    if (!list) return;
    printf("\n%-4s %-12s %-12s %-52s %-8s %-7s %s\n", "file", "offset", "bytes", "tensor", "enc", "method", "shape");
    for (size_t i = 0; i < p->n_tensors; i++) {
        const wp_plan_tensor *t = &p->tensors[i];
        const wp_plan_weight *w = &p->weights[t->weight];
        char sh[128];
        size_t o = 0;
        for (int d = 0; d < t->ndim && o < sizeof sh; d++)
            o += (size_t)snprintf(sh + o, sizeof sh - o, "%s%llu", d ? "x" : "", (unsigned long long)t->shape[d]);
        if (!t->ndim) snprintf(sh, sizeof sh, "scalar");
        printf("%-4d %-12llu %-12llu %-52s %-8s %-7s %s\n", t->file, (unsigned long long)t->offset,
               (unsigned long long)t->nbytes, t->name, t->is_enc ? wp_enc_name(t->enc) : wp_dtype_name(t->dtype),
               t->role == WP_ROLE_WEIGHT || t->role == WP_ROLE_RAW ? wp_method_name(w->method) : "", sh);
    }
}

static const cli_option plan_opts[] = {
    CV_OPTS_PLAN,
    {.name = "tensors", .kind = CLI_FLAG, .off = CV_A(list), .help = "list every output tensor (as -v does)"},
    {0},
};

static int plan_run(cli_ctx *c, void *va)
{
    cv_args a = *(cv_args *)va;
    int rc = cv_finish(CMD, c, &a);
    if (rc >= 0) return rc;
    if (c->verbose) a.list = 1;
    wp_ckpt *k;
    wp_plan *p;
    if ((rc = cv_open(CMD, &a, &k, &p)) >= 0) return rc;
    if (a.json)
        cli_print_json(wp_plan_to_json(p));
    else
        print_human(p, a.list);
    wp_plan_free(p);
    wp_ckpt_close(k);
    return WP_EXIT_OK;
}

const cli_command cli_cmd_plan = {
    .name = "plan",
    .summary = "compute a build's complete output layout from headers alone",
    .about = "Compute a build's complete output layout from the checkpoint's headers and\n"
             "config.json alone (no tensor data is read): every output tensor with its\n"
             "encoding, shape, byte size, file and aligned offset and its source tensors,\n"
             "and totals per tensor family.  `wpack convert` executes exactly this plan.\n"
             "With -v, every output tensor is listed.",
    .operands = cv_operands,
    .options = plan_opts,
    .flags = CLI_VERBOSE,
    .args_size = sizeof(cv_args),
    .run = plan_run,
};
