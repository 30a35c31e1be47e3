/*
 * cmd_pack.c — `wpack pack BUILD -o OUT.wpkz [--level N] [--threads N]`:
 * the zstd shipping form of a build (docs/format.md §3), with the compression
 * ratio per encoding.  Exit 0 ok, 1 the build's digests do not match (it is
 * not shipped), 2 unreadable input or bad usage.
 */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/pack_report.h"
#include "trust/build.h"

#define CMD "pack"

static double ratio(uint64_t raw, uint64_t comp) { return comp ? (double)raw / (double)comp : 0; }

cJSON *cli_wpz_stats_json(const wpz_stats *s)
{
    cJSON *j = cJSON_CreateObject();
    cJSON_AddNumberToObject(j, "files", (double)s->files);
    cJSON_AddNumberToObject(j, "tensors", (double)s->tensors);
    cJSON_AddNumberToObject(j, "frames", (double)s->frames);
    cJSON_AddNumberToObject(j, "raw_bytes", (double)s->raw_bytes);
    cJSON_AddNumberToObject(j, "compressed_bytes", (double)s->comp_bytes);
    cJSON_AddNumberToObject(j, "ratio", ratio(s->raw_bytes, s->comp_bytes));
    cJSON *c = cJSON_AddArrayToObject(j, "encodings");
    for (size_t i = 0; i < s->n_classes; i++) {
        const wpz_class_stat *k = &s->classes[i];
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "encoding", k->name);
        cJSON_AddNumberToObject(o, "tensors", (double)k->tensors);
        cJSON_AddNumberToObject(o, "raw_bytes", (double)k->raw);
        cJSON_AddNumberToObject(o, "compressed_bytes", (double)k->comp);
        cJSON_AddNumberToObject(o, "ratio", ratio(k->raw, k->comp));
        cJSON_AddItemToArray(c, o);
    }
    return j;
}

void cli_wpz_stats_print(const wpz_stats *s, double seconds, const char *verb)
{
    char a[32], b[32];
    printf("%-10s %8s %12s %12s %7s\n", "encoding", "tensors", "raw", "compressed", "ratio");
    for (size_t i = 0; i < s->n_classes; i++) {
        const wpz_class_stat *k = &s->classes[i];
        printf("%-10s %8llu %12s %12s %7.3f\n", k->name, (unsigned long long)k->tensors,
               cli_bytes(k->raw, a, sizeof a), cli_bytes(k->comp, b, sizeof b), ratio(k->raw, k->comp));
    }
    printf("%llu files, %llu tensors, %llu frames: %s -> %s (ratio %.3f, index and framing included)\n",
           (unsigned long long)s->files, (unsigned long long)s->tensors,
           (unsigned long long)s->frames, cli_bytes(s->raw_bytes, a, sizeof a),
           cli_bytes(s->comp_bytes, b, sizeof b), ratio(s->raw_bytes, s->comp_bytes));
    if (seconds > 0)
        printf("%s in %.2f s (%.1f MB/s of raw bytes)\n", verb, seconds,
               (double)s->raw_bytes / seconds / 1e6);
}

typedef struct pack_args {
    const char *build, *out;
    wpz_opts o;
} pack_args;

#define PA(f) offsetof(pack_args, f)
static const cli_operand pack_operands[] = {
    {.name = "BUILD", .help = "a build directory (.wpk files + manifest) or one .wpk", .off = PA(build),
     .required = 1, .complete = "file"},
    {0},
};
static const cli_option pack_opts[] = {
    {.name = "output", .short_name = 'o', .kind = CLI_STR, .off = PA(out), .arg = "OUT.wpkz", .required = 1,
     .complete = "file", .help = "the .wpkz to write (it appears only when complete)"},
    {.name = "level", .short_name = 'l', .kind = CLI_INT, .off = PA(o.level), .arg = "N", .lo = -7, .hi = 22,
     .def = "3", .help = "zstd level: -7..-1 (fast) or 1..22"},
    {.name = "threads", .short_name = 't', .kind = CLI_INT, .off = PA(o.threads), .arg = "N", .lo = 0, .hi = 256,
     .def = "2", .help = "frames compressed in parallel (the same .wpkz for any N >= 1;\n0 = one frame at a time, zstd single-threaded)"},
    {0},
};

static int pack_run(cli_ctx *c, void *va)
{
    pack_args *a = va;
    const char *build = a->build, *out = a->out;
    wpz_opts o = a->o;
    o.force = c->force;
    int json = c->json;
    if (o.level == 0) return cli_usage(CMD, "option '-l/--level': '0' is not a zstd level (-7..-1 or 1..22)");
    /* what is packed is a build as verify and run see it (format/ sits below
     * trust/, so the CLI checks this before handing the path over) */
    wp_err be = {0};
    wp_build *b = NULL;
    size_t nparts = 0;
    int brc = wp_build_open(&b, build, &be);
    if (!brc) brc = wp_build_parts(b, &nparts, &be);
    wp_build_close(b);
    if (brc) return cli_error(CMD, &be);
    cli_bar bar;
    cli_bar_init(&bar, json, 1);
    o.progress = cli_progress;
    o.ud = &bar;
    wp_err e = {0};
    wpz_stats st;
    double t0 = wp_now();
    int rc = wpz_pack(build, out, &o, &st, &e);
    double dt = wp_now() - t0;
    cli_bar_end(&bar);
    if (rc) return cli_error(CMD, &e);
    if (json) {
        cJSON *j = cli_wpz_stats_json(&st);
        cJSON_AddStringToObject(j, "build", build);
        cJSON_AddStringToObject(j, "output", out);
        cJSON_AddNumberToObject(j, "level", o.level);
        cJSON_AddNumberToObject(j, "threads", o.threads);
        cJSON_AddNumberToObject(j, "seconds", dt);
        cli_print_json(j);
    } else {
        printf("packed %s -> %s (zstd level %d, %d threads)\n", build, out, o.level, o.threads);
        cli_wpz_stats_print(&st, dt, "packed");
    }
    return WP_EXIT_OK;
}

const cli_command cli_cmd_pack = {
    .name = "pack",
    .summary = "compress a build into the zstd shipping form (.wpkz)",
    .about = "Compress a build (a directory of .wpk files + manifest, or one .wpk) into\n"
             "one .wpkz: an independent zstd frame per tensor (64 MiB chunks of large\n"
             "ones) and a seek index, so 'wpack unpack --tensor' reads only one tensor.\n"
             "Every tensor digest is checked while reading: a corrupt build is refused.",
    .operands = pack_operands,
    .options = pack_opts,
    .flags = CLI_WRITES,
    .exit1 = "a tensor's digest does not match its manifest (the build is not shipped)",
    .args_size = sizeof(pack_args),
    .run = pack_run,
};
