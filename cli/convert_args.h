/*
 * convert_args.h — what `wpack plan`, `convert` and `quant` share: their
 * options, opening the checkpoint + config + profile, building the plan, and
 * printing the quantisation report.
 */
#ifndef WP_CLI_CONVERT_ARGS_H
#define WP_CLI_CONVERT_ARGS_H

#include <stddef.h>

#include "cli/cli.h"
#include "convert/convert.h"

#define CV_MAX_TYPES 256

typedef struct cv_args {
    const char *ckpt, *profile, *out, *report;
    cli_list type_list;               /* --tensor-type, as parsed */
    const char *types[CV_MAX_TYPES];  /* the same, after cv_finish */
    int ntypes;
    int json, threads, force, list, top, recall;
    int allow_lossy, allow_sensitive;   /* the loss gate (docs/profiles.md "Lossless builds") */
    const char *prompts;                /* quant --prompts FILE */
    double recall_min;
    uint64_t mem_budget;
    wp_plan_opts po;
} cv_args;

/* The option table entries plan, convert and quant share (opt.h), by group. */
#define CV_A(f) offsetof(cv_args, f)
#define CV_OPTS_PLAN                                                                                        \
    {.name = "profile", .short_name = 'p', .kind = CLI_STR, .off = CV_A(profile), .arg = "P",                \
     .def = "reference", .complete = "file",                                                                 \
     .help = "reference, hopper, blackwell, blackwell-nvfp4, bf16, or a profile .json\n"                     \
             "file (docs/profiles.md)"},                                                                     \
    {.name = "tensor-type", .kind = CLI_LIST, .off = CV_A(type_list), .arg = "RE=ENC",                       \
     .help = "re-encode tensors whose output name matches the POSIX extended regex RE:\n"                    \
             "passthrough, bf16, f32, f16, mxfp4, nvfp4, fp8[-RxC][-e8m0|-f32];\n"                           \
             "repeatable, the last match wins"},                                                             \
    {.name = "ep", .kind = CLI_INT, .off = CV_A(po.ep), .arg = "N", .lo = 1, .hi = 4096, .def = "1",         \
     .help = "expert parallel ranks, one .wpk per rank (spec §2.5)"},                                       \
    {.name = "tp", .kind = CLI_INT, .off = CV_A(po.tp), .arg = "N", .lo = 1, .hi = 4096, .def = "1",         \
     .help = "tensor parallel ranks, one .wpk per rank (spec §2.5)"},                                       \
    {.name = "fuse-w13", .kind = CLI_FLAG, .off = CV_A(po.fuse_w13), .def_doc = "the profile's choice",      \
     .help = "stack experts' w1|w3 as experts.w13 [E, 2I, dim]"},                                           \
    {.name = "no-fuse-w13", .kind = CLI_FLAG, .off = CV_A(po.fuse_w13), .clear = 1,                          \
     .help = "keep experts' w1 and w3 apart, whatever the profile says"},                                    \
    {.name = "align", .kind = CLI_SIZE, .off = CV_A(po.align), .arg = "SIZE",                                \
     .def_doc = "the profile's, 4K", .help = "tensor alignment (2M for huge pages)"},                        \
    {.name = "allow-lossy", .kind = CLI_FLAG, .off = CV_A(allow_lossy),                                      \
     .help = "accept a re-quantisation the profile does not declare (\"lossy\": true),\n"                   \
             "and an exact re-encode that lost values; the build is then marked lossy"},                    \
    {.name = "allow-sensitive", .kind = CLI_FLAG, .off = CV_A(allow_sensitive),                              \
     .help = "accept a lossy re-encode of a sensitive family (router gate, embed, head,\n"                   \
             "HC parameters, indexer, compressor); measure it with quant --prompts"}
#define CV_OPTS_RUN                                                                                         \
    {.name = "threads", .short_name = 't', .kind = CLI_INT, .off = CV_A(threads), .arg = "N", .lo = 1,       \
     .hi = 256, .def_doc = "all online CPUs", .help = "worker threads"},                                     \
    {.name = "mem-budget", .short_name = 'm', .kind = CLI_SIZE, .off = CV_A(mem_budget), .arg = "SIZE",      \
     .def = "1G", .help = "peak memory for the whole run: work items are sized to fit"}
#define CV_OPTS_REPORT(what)                                                                                \
    {.name = "report", .short_name = 'r', .kind = CLI_STR, .off = CV_A(report), .arg = "FILE",               \
     .complete = "file", .help = what},                                                                      \
    {.name = "top", .kind = CLI_INT, .off = CV_A(top), .arg = "N", .lo = 0, .hi = 1 << 30, .def = "20",      \
     .help = "rows in the quantisation-error table"}

/* The one operand, CKPT. */
extern const cli_operand cv_operands[];

/* Take the parsed values from the context and the lists (call first in each
 * command); prints a usage error and returns its exit code, or -1. */
int cv_finish(const char *cmd, cli_ctx *c, cv_args *a);

/* Open the checkpoint and its config, load the profile with the overrides
 * and build the plan.  On failure prints the error and returns the exit code
 * (>= 0); on success returns -1. */
int cv_open(const char *cmd, const cv_args *a, wp_ckpt **k, wp_plan **p);
/* The plan's loss line on stdout ("lossless" / "lossy: N tensors (families
 * ...)"), `inexact` as in wp_plan_weight_loss (NULL: the plan's). */
void cv_print_loss(const wp_plan *p, const uint64_t *inexact);
/* The short report table on `f`, worst NMSE first (at most `top` rows). */
void cv_print_report(FILE *f, const wp_report *r, int top);
/* Write the report JSON to `path` atomically; prints and returns the exit
 * code on failure, -1 on success. */
int cv_write_report(const char *cmd, const wp_report *r, const char *path, int force);

#endif
