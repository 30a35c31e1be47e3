/*
 * cmd_merge.c — `wpack merge PART... -o BUILD`: join the parts of a per-rank
 * convert (`convert --rank R`) into one build, identical to the one a
 * single-machine convert writes (docs/distributed.md).  Every part is
 * checked before anything is written; BUILD appears only when complete.
 */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "convert/convert.h"

typedef struct merge_args {
    cli_list parts;
    const char *out;
    int threads, no_check;
} merge_args;

#define MA(f) offsetof(merge_args, f)
static const cli_operand merge_operands[] = {
    {.name = "PART", .help = "a part directory written by `wpack convert --rank R` (one per rank)", .off = MA(parts),
     .required = 1, .complete = "dir", .many = 1},
    {0},
};
static const cli_option merge_opts[] = {
    {.name = "output", .short_name = 'o', .kind = CLI_STR, .off = MA(out), .arg = "BUILD", .required = 1,
     .complete = "dir", .help = "the build directory to create (it appears only when complete)"},
    {.name = "threads", .short_name = 't', .kind = CLI_INT, .off = MA(threads), .arg = "N", .lo = 1, .hi = 1024,
     .def_doc = "all online CPUs", .help = "hashing threads for the parts' digest checks"},
    {.name = "no-check", .kind = CLI_FLAG, .off = MA(no_check),
     .help = "skip the parts' digest checks (their structure and plan are still checked)"},
    {0},
};

static int merge_run(cli_ctx *c, void *va)
{
    merge_args *a = va;
    cli_bar bar;
    cli_bar_init(&bar, c->json, 1);
    wp_merge_opts o = {.threads = a->threads, .force = c->force, .no_check = a->no_check, .progress = cli_progress,
                       .progress_ud = &bar};
    wp_merge_stats st;
    wp_err e = {0};
    int rc = wp_merge(a->parts.v, a->parts.n, a->out, &o, &st, &e);
    cli_bar_end(&bar);
    int code = rc ? cli_error("merge", &e) : WP_EXIT_OK;
    char root[65] = "";
    if (!rc) wp_hex(st.root, 32, root);
    if (c->json) {
        cJSON *j = cJSON_CreateObject();
        cJSON_AddStringToObject(j, "output", a->out);
        cJSON *ps = cJSON_AddArrayToObject(j, "parts");
        for (int i = 0; i < a->parts.n; i++) cJSON_AddItemToArray(ps, cJSON_CreateString(a->parts.v[i]));
        if (!rc) {
            cJSON_AddNumberToObject(j, "ranks", st.ranks);
            cJSON_AddStringToObject(j, "root_sha256", root);
            cJSON_AddNumberToObject(j, "bytes", (double)st.bytes);
            cJSON_AddNumberToObject(j, "bytes_hashed", (double)st.bytes_hashed);
            cJSON_AddNumberToObject(j, "linked", st.linked);
            cJSON_AddNumberToObject(j, "reflinked", st.reflinked);
            cJSON_AddNumberToObject(j, "copied", st.copied);
            cJSON_AddNumberToObject(j, "seconds", st.seconds);
        }
        if (rc) cJSON_AddStringToObject(j, "error", e.msg);
        cli_print_json(j);
    } else if (!rc) {
        char b[32];
        printf("wrote %s: %d rank(s), %s (%d linked, %d reflinked, %d copied), %s hashed in %.2fs\n", a->out, st.ranks,
               cli_bytes(st.bytes, b, sizeof b), st.linked, st.reflinked, st.copied,
               cli_bytes(st.bytes_hashed, (char[32]){0}, 32), st.seconds);
        printf("root sha256: %s\n", root);
    }
    return code;
}

const cli_command cli_cmd_merge = {
    .name = "merge",
    .summary = "join the parts of a per-rank convert into one build",
    .about = "Check that the PART directories (each written by `wpack convert --rank R`) come from one\n"
             "plan and hold every rank exactly once, verify every digest of each part, then write\n"
             "BUILD: each part's .wpk hard-linked (reflinked or copied on another filesystem) and\n"
             "one manifest.json, byte-identical to a single-machine `convert` of the same plan.\n"
             "The parts are never modified; BUILD appears only when complete (docs/distributed.md).",
    .operands = merge_operands,
    .options = merge_opts,
    .flags = CLI_WRITES,
    .exit1 = "a part is missing, duplicated, from another plan or does not verify (nothing is written)",
    .args_size = sizeof(merge_args),
    .run = merge_run,
};
