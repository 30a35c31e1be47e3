/* rt_args.h — the runtime options that `wpack run` and `wpack parity` share. */
#ifndef WP_CLI_RT_ARGS_H
#define WP_CLI_RT_ARGS_H

#include <stddef.h>

#include "cli/opt.h"
#include "common/wp.h"

/* Embed in a command's argument struct as `rt`. */
typedef struct cli_rt_args {
    int threads;
    const char *precision, *act_quant;
} cli_rt_args;

/* The option table entries; S is the command's argument struct type. */
#define CLI_RT_OPTS(S)                                                                                  \
    {.name = "threads", .short_name = 't', .kind = CLI_INT, .off = offsetof(S, rt.threads), .arg = "N", \
     .lo = 1, .hi = 256, .def = "1", .help = "kernel threads"},                                         \
    {.name = "precision", .kind = CLI_STR, .off = offsetof(S, rt.precision), .arg = "P",                \
     .choices = "fp32 bf16", .def = "fp32",                                                              \
     .help = "fp32, or bf16: round at the reference's bf16 points"},                                     \
    {.name = "act-quant", .kind = CLI_STR, .off = offsetof(S, rt.act_quant), .arg = "M",                \
     .choices = "site weight", .def = "site",                                                            \
     .help = "site: FP8-quantise activations at every FP8/FP4 linear of the model;\n"                   \
             "weight: only where the build stores FP8/FP4 (the official code's\n"                       \
             "dispatch on the weight dtype)"}

/* The WP_RT_* flags (runtime/runtime.h) the parsed values ask for. */
unsigned cli_rt_flags(const cli_rt_args *a);

/* Open what `run`/`parity` will run (runtime/runtime.h wp_tsrc_open_opts):
 * a build verified against its digests first, with a progress bar, unless
 * no_verify, which says so on stderr (even with -q: the build runs
 * unchecked); an HF checkpoint gets a notice that nothing was verified
 * (not with -q, nor with --json, whose document says "verified"). */
struct wp_tsrc;
int cli_open_source(const char *cmd, const char *path, int no_verify, int json, struct wp_tsrc **src,
                    wp_err *e);
/* "digests", "skipped" or "no-digests": the document's "verified". */
const char *cli_verified_word(const struct wp_tsrc *src);

#endif
