/*
 * cmd_pack.c — `wpack pack BUILD -o OUT.wpkz [--level N] [--threads N] [--json]`:
 * the zstd shipping form of a build (docs/format.md §3), with the compression
 * ratio per encoding.  Exit 0 ok, 1 the build's digests do not match (it is
 * not shipped), 2 unreadable input or bad usage.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/pack_report.h"

#define CMD "pack"

static void usage(FILE *f)
{
    fprintf(f,
            "usage: wpack pack BUILD -o OUT.wpkz [--level N] [--threads N] [--json]\n"
            "\n"
            "Compress a build (a directory of .wpk files + manifest, or one .wpk) into\n"
            "one .wpkz: an independent zstd frame per tensor (64 MiB chunks of large\n"
            "ones) and a seek index, so 'wpack unpack --tensor' reads only one tensor.\n"
            "Every tensor digest is checked while reading: a corrupt build is refused.\n"
            "\n"
            "  -o, --output FILE   the .wpkz to write (atomically)\n"
            "  --level N           zstd level (default 3)\n"
            "  --threads N         zstd worker threads (default 2; 0 = single-threaded)\n"
            "  --json              one JSON document on stdout\n"
            "\n"
            "exit: 0 ok, 1 a tensor digest does not match, 2 unreadable input or bad usage\n");
}

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

int cmd_pack(int argc, char **argv)
{
    const char *build = NULL, *out = NULL, *v;
    int json = 0;
    wpz_opts o = {.level = 3, .threads = 2};
    for (int i = 1; i < argc; i++) {
        if (cli_flag(argv[i], "--help") || cli_flag(argv[i], "-h")) {
            usage(stdout);
            return WP_EXIT_OK;
        } else if (cli_flag(argv[i], "--json")) {
            json = 1;
        } else if ((v = cli_opt(argc, argv, &i, "--output")) || (v = cli_opt(argc, argv, &i, "-o"))) {
            out = v;
        } else if ((v = cli_opt(argc, argv, &i, "--level"))) {
            long long n;
            if (cli_int(CMD, "--level", v, -7, 22, &n)) return WP_EXIT_BAD;
            if (n == 0) return cli_usage(CMD, "--level 0: zstd levels are -7..-1 and 1..22");
            o.level = (int)n;
        } else if ((v = cli_opt(argc, argv, &i, "--threads"))) {
            long long n;
            if (cli_int(CMD, "--threads", v, 0, 256, &n)) return WP_EXIT_BAD;
            o.threads = (int)n;
        } else if (argv[i][0] == '-') {
            return cli_usage(CMD, "unknown option '%s'", argv[i]);
        } else if (!build) {
            build = argv[i];
        } else {
            return cli_usage(CMD, "one BUILD only ('%s')", argv[i]);
        }
    }
    if (!build || !out) return cli_usage(CMD, "needs BUILD and -o OUT.wpkz");
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
