/* cmd_golden.c — `wpack golden`: capture a golden file from a build or an HF
 * checkpoint, in the schema `parity --golden` reads (verify/golden.h). */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli/cli.h"
#include "cli/rt_args.h"
#include "runtime/tokens.h"
#include "verify/golden.h"

typedef struct golden_args {
    const char *build, *prompts, *out;
    int no_verify, positions, topk, no_states;
    cli_rt_args rt;
} golden_args;

static void golden_init(void *va)
{
    golden_args *a = va;
    wp_golden_opts o;
    wp_golden_opts_default(&o);
    a->positions = o.positions;
}

#define GA(f) offsetof(golden_args, f)
static const cli_operand golden_operands[] = {
    {.name = "BUILD", .help = "a wpack build (directory or .wpk) or an HF checkpoint directory", .off = GA(build),
     .required = 1, .complete = "file"},
    {0},
};
static const cli_option golden_opts[] = {
    {.name = "prompts", .kind = CLI_STR, .off = GA(prompts), .arg = "FILE", .complete = "file", .required = 1,
     .help = "one prompt per line, token ids separated by commas or spaces ('#'\n"
             "starts a comment); every prompt of the same length"},
    {.name = "output", .short_name = 'o', .kind = CLI_STR, .off = GA(out), .arg = "G.safetensors",
     .complete = "file", .required = 1, .help = "the golden file to write"},
    {.name = "positions", .kind = CLI_INT, .off = GA(positions), .arg = "N", .lo = 0, .hi = 4096,
     .help = "greedy decode positions after each prompt (decode_tokens/_logits)"},
    {.name = "topk", .kind = CLI_INT, .off = GA(topk), .arg = "K", .lo = 0, .hi = 64, .def = "0",
     .help = "store each logits row as its K largest logits (ids, values) and its\n"
             "log-sum-exp instead of the whole vocabulary; 0: whole rows"},
    {.name = "no-states", .kind = CLI_FLAG, .off = GA(no_states),
     .help = "leave out the per-layer states and indexer selections (logits only)"},
    CLI_RT_OPTS(golden_args),
    {.name = "no-verify", .kind = CLI_FLAG, .off = GA(no_verify),
     .help = "use the build without checking its tensors' digests first\n(says so on stderr)"},
    {0},
};

static int golden_run(cli_ctx *c, void *va)
{
    const golden_args *a = va;
    wp_err e = {0};
    int32_t **pr = NULL;
    int *lens = NULL, np = 0;
    if (wp_prompt_lines_load(a->prompts, &pr, &lens, &np, &e)) return cli_error("golden", &e);
    wp_tsrc *src = NULL;
    if (cli_open_source("golden", a->build, a->no_verify, c->json, &src, &e)) {
        wp_prompt_lines_free(pr, lens, np);
        return cli_error("golden", &e);
    }
    wp_golden_opts o;
    wp_golden_opts_default(&o);
    o.threads = a->rt.threads;
    o.rt_flags = cli_rt_flags(&a->rt);
    o.positions = a->positions;
    o.topk = a->topk;
    o.states = !a->no_states;
    o.force = c->force;
    const double t0 = wp_now();
    int rc = wp_golden_write(src, (const int32_t *const *)pr, lens, np, a->out, &o, &e);
    const double secs = wp_now() - t0;
    const int tokens = np ? lens[0] : 0;
    wp_prompt_lines_free(pr, lens, np);
    wp_tsrc_close(src);
    if (rc) return cli_error("golden", &e);
    struct stat st = {0};
    stat(a->out, &st);
    if (c->json) {
        cJSON *doc = cJSON_CreateObject();
        cJSON_AddStringToObject(doc, "build", a->build);
        cJSON_AddStringToObject(doc, "output", a->out);
        cJSON_AddNumberToObject(doc, "prompts", np);
        cJSON_AddNumberToObject(doc, "tokens", tokens);
        cJSON_AddNumberToObject(doc, "positions", o.positions);
        cJSON_AddNumberToObject(doc, "topk", o.topk);
        cJSON_AddBoolToObject(doc, "states", o.states);
        cJSON_AddNumberToObject(doc, "bytes", (double)st.st_size);
        cJSON_AddNumberToObject(doc, "seconds", secs);
        cli_print_json(doc);
    } else {
        char sz[32];
        printf("%s: %d prompt%s of %d tokens, %d decode positions, %s logits%s: %s\n", a->out, np,
               np == 1 ? "" : "s", tokens, o.positions, o.topk ? "top-k" : "whole",
               o.states ? ", per-layer states" : "", cli_bytes((uint64_t)st.st_size, sz, sizeof sz));
    }
    return WP_EXIT_OK;
}

const cli_command cli_cmd_golden = {
    .name = "golden",
    .summary = "capture golden outputs of a build for later parity checks",
    .synopsis = "BUILD --prompts FILE -o G.safetensors [options]",
    .about = "Runs BUILD (a build or an HF checkpoint) on the prompts and writes what\n"
             "`wpack parity --golden` checks, in the schema of the tiny-a fixture's golden:\n"
             "tokens, layer_h_in0, layer_h, indexer_topk.<l>, prefill_logits, decode_tokens,\n"
             "decode_logits (greedy), mtp_input_ids, mtp_logits.  --topk K keeps only each\n"
             "logits row's K largest entries and its log-sum-exp, and --no-states leaves out\n"
             "the per-layer states, so a large model's reference stays a few MB\n"
             "(docs/parity.md).  The file appears only when complete.",
    .operands = golden_operands,
    .options = golden_opts,
    .exit1 = NULL,
    .flags = CLI_WRITES,
    .args_size = sizeof(golden_args),
    .init = golden_init,
    .run = golden_run,
};
