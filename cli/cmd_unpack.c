/*
 * cmd_unpack.c — `wpack unpack X.wpkz -o BUILD [--json]` restores a build
 * byte for byte (every file's SHA-256 checked while it is written; BUILD
 * appears only when complete); `wpack unpack X.wpkz --tensor NAME -o FILE`
 * extracts one tensor's raw bytes, decompressing only its frames.
 * Exit 0 ok, 1 a digest or frame check failed, 2 unreadable input or bad usage.
 */
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/pack_report.h"

#define CMD "unpack"

static void usage(FILE *f)
{
    fprintf(f,
            "usage: wpack unpack X.wpkz -o BUILD [--json]\n"
            "       wpack unpack X.wpkz --tensor NAME -o FILE [--json]\n"
            "       wpack unpack X.wpkz --list [--json]\n"
            "\n"
            "Restore the build directory packed in X.wpkz (BUILD must not exist; it\n"
            "appears only once every file matched its recorded SHA-256), or extract one\n"
            "tensor's raw bytes (NAME, or FILE.wpk:NAME when several files hold it),\n"
            "reading only that tensor's frames. --list prints the index's figures.\n"
            "\n"
            "  -o, --output PATH   the build directory, or the tensor's file\n"
            "  --tensor NAME       extract one tensor\n"
            "  --list              read the index only (per-encoding sizes)\n"
            "  --json              one JSON document on stdout\n"
            "\n"
            "exit: 0 ok, 1 a digest or frame check failed, 2 unreadable input or bad usage\n");
}

int cmd_unpack(int argc, char **argv)
{
    const char *in = NULL, *out = NULL, *tensor = NULL, *v;
    int json = 0, list = 0;
    for (int i = 1; i < argc; i++) {
        if (cli_flag(argv[i], "--help") || cli_flag(argv[i], "-h")) {
            usage(stdout);
            return WP_EXIT_OK;
        } else if (cli_flag(argv[i], "--json")) {
            json = 1;
        } else if (cli_flag(argv[i], "--list")) {
            list = 1;
        } else if ((v = cli_opt(argc, argv, &i, "--output")) || (v = cli_opt(argc, argv, &i, "-o"))) {
            out = v;
        } else if ((v = cli_opt(argc, argv, &i, "--tensor"))) {
            tensor = v;
        } else if (argv[i][0] == '-') {
            return cli_usage(CMD, "unknown option '%s'", argv[i]);
        } else if (!in) {
            in = argv[i];
        } else {
            return cli_usage(CMD, "one X.wpkz only ('%s')", argv[i]);
        }
    }
    if (!in) return cli_usage(CMD, "needs X.wpkz");
    if (!list && !out) return cli_usage(CMD, "needs -o BUILD (or -o FILE with --tensor)");
    wp_err e = {0};
    wpz_stats st;
    double t0 = wp_now();
    if (list) {
        if (wpz_stat(in, &st, &e)) return cli_error(CMD, &e);
        if (json) cli_print_json(cli_wpz_stats_json(&st));
        else cli_wpz_stats_print(&st, 0, "listed");
        return WP_EXIT_OK;
    }
    if (tensor) {
        if (wpz_extract_tensor(in, tensor, out, &e)) return cli_error(CMD, &e);
        if (json) {
            cJSON *j = cJSON_CreateObject();
            cJSON_AddStringToObject(j, "archive", in);
            cJSON_AddStringToObject(j, "tensor", tensor);
            cJSON_AddStringToObject(j, "output", out);
            cJSON_AddBoolToObject(j, "sha256_ok", 1);
            cJSON_AddNumberToObject(j, "seconds", wp_now() - t0);
            cli_print_json(j);
        } else {
            printf("extracted %s -> %s (sha256 ok)\n", tensor, out);
        }
        return WP_EXIT_OK;
    }
    cli_bar bar;
    cli_bar_init(&bar, json, 1);
    wpz_opts o = {.progress = cli_progress, .ud = &bar};
    int rc = wpz_unpack(in, out, &o, &st, &e);
    cli_bar_end(&bar);
    if (rc) return cli_error(CMD, &e);
    double dt = wp_now() - t0;
    if (json) {
        cJSON *j = cli_wpz_stats_json(&st);
        cJSON_AddStringToObject(j, "archive", in);
        cJSON_AddStringToObject(j, "output", out);
        cJSON_AddNumberToObject(j, "seconds", dt);
        cli_print_json(j);
    } else {
        printf("unpacked %s -> %s (every file's sha256 ok)\n", in, out);
        cli_wpz_stats_print(&st, dt, "unpacked");
    }
    return WP_EXIT_OK;
}
