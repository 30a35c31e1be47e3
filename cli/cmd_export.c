/*
 * cmd_export.c — `wpack export BUILD -o DIR [--shard-size SIZE] [--threads N]
 * [--source CKPT]`: the build as a Hugging Face checkpoint directory that
 * serving engines load (convert/export.h, docs/export.md).
 * Exit 0 ok, 1 a tensor's SHA-256 did not match the build's record, 2 a
 * build no HF layout carries, unreadable input, bad usage or an I/O error.
 */
#include <stddef.h>
#include <stdio.h>

#include "cli/cli.h"
#include "convert/export.h"

#define CMD "export"

typedef struct export_args {
    const char *build, *out, *source;
    uint64_t shard_size;
    int threads;
} export_args;

#define XA(f) offsetof(export_args, f)
static const cli_operand export_operands[] = {
    {.name = "BUILD", .help = "a build directory or a lone .wpk", .off = XA(build), .required = 1, .complete = "file"},
    {0},
};
static const cli_option export_opts[] = {
    {.name = "output", .short_name = 'o', .kind = CLI_STR, .off = XA(out), .arg = "DIR", .required = 1,
     .complete = "dir", .help = "the checkpoint directory to create"},
    {.name = "shard-size", .kind = CLI_SIZE, .off = XA(shard_size), .arg = "SIZE",
     .def_doc = "5000000000, transformers' 5GB",
     .help = "tensor bytes per model-XXXXX-of-NNNNN.safetensors shard at most\n(a larger tensor gets a shard of its own)"},
    {.name = "threads", .short_name = 't', .kind = CLI_INT, .off = XA(threads), .arg = "N", .lo = 1, .hi = 1024,
     .def_doc = "all online CPUs", .help = "shards written at once"},
    {.name = "source", .kind = CLI_STR, .off = XA(source), .arg = "CKPT", .complete = "dir",
     .help = "the checkpoint the build was made from (its config.json must be the\none the build records): its config.json's other keys and its\ntokenizer and generation files go into DIR"},
    {0},
};

static int export_run(cli_ctx *cx, void *va)
{
    const export_args *a = va;
    wp_err e = {0};
    cli_bar bar;
    cli_bar_init(&bar, cx->json, 1);
    wp_export_opts o = {.shard_size = a->shard_size, .threads = a->threads, .force = cx->force,
                        .source = a->source, .progress = cli_progress, .progress_ud = &bar};
    wp_export_stats st;
    double t0 = wp_now();
    int rc = wp_export(a->build, a->out, &o, &st, &e);
    cli_bar_end(&bar);
    if (rc) return cli_error(CMD, &e);
    double dt = wp_now() - t0;
    if (cx->json) {
        cJSON *j = wp_export_stats_json(a->build, a->out, &st);
        if (j) {
            cJSON_AddNumberToObject(j, "seconds", dt);
            cJSON_AddNumberToObject(j, "peak_rss_bytes", (double)wp_peak_rss_bytes());
        }
        cli_print_json(j);
    } else {
        char b[32], r[32], m[32];
        printf("exported %s -> %s: %zu tensors, %s in %zu shard%s (%s layout", a->build, a->out, st.tensors,
               cli_bytes(st.total_size, b, sizeof b), st.shards, st.shards == 1 ? "" : "s", st.layout);
        if (st.expert_dtype[0])
            printf(", expert_dtype %s, scales %s %ux%u", st.expert_dtype, st.scale_fmt, st.block[0], st.block[1]);
        printf(", from profile %s) in %.1fs (%s, peak RSS %s)\n", st.profile[0] ? st.profile : "?", dt,
               cli_rate(dt > 0 ? (double)st.total_size / dt : 0, r, sizeof r),
               cli_bytes(wp_peak_rss_bytes(), m, sizeof m));
        printf("  %zu tensors copied, %zu re-encoded exactly; %zu build tensors read, every sha256 ok\n", st.copied,
               st.converted, st.build_tensors);
        if (st.n_files) {
            printf("  copied from the source:");
            for (size_t i = 0; i < st.n_files; i++) printf(" %s", st.files[i]);
            printf("\n");
        }
        if (st.files_note[0] && !a->source) cli_notice("%s (give it with --source)", st.files_note);
        else if (st.files_note[0]) cli_notice("%s", st.files_note);
    }
    wp_export_stats_free(&st);
    return WP_EXIT_OK;
}

const cli_command cli_cmd_export = {
    .name = "export",
    .summary = "write a build as a Hugging Face checkpoint directory",
    .about = "Write BUILD as a Hugging Face checkpoint directory that vLLM, SGLang and\n"
             "transformers load: safetensors shards under the official tensor names (routed\n"
             "experts un-stacked, a fused w13 split into w1 and w3), the index, config.json\n"
             "rewritten to what the shards hold, and with --source the tokenizer and\n"
             "generation files.  The layout follows the build's routed experts: MXFP4 gives\n"
             "the official FP4 layout, FP8 the FP8-expert layout, BF16 plain BF16 weights\n"
             "(docs/export.md).  Every value is carried exactly; a build no Hugging Face\n"
             "layout carries (nvfp4) is refused.  Each build tensor's SHA-256 is checked as\n"
             "it is copied.  DIR appears only when complete; two exports of one build are\n"
             "byte-identical.",
    .operands = export_operands,
    .options = export_opts,
    .flags = CLI_WRITES,
    .exit1 = "a tensor's bytes do not match the SHA-256 the build records (nothing is written)",
    .args_size = sizeof(export_args),
    .run = export_run,
};
