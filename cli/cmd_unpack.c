/*
 * cmd_unpack.c — `wpack unpack X.wpkz -o BUILD` restores a build
 * byte for byte (every file's SHA-256 checked while it is written; BUILD
 * appears only when complete); `wpack unpack X.wpkz --tensor NAME -o FILE`
 * extracts one tensor's raw bytes, decompressing only its frames.
 * Exit 0 ok, 1 a digest or frame check failed, 2 unreadable input or bad usage.
 */
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/pack_report.h"
#include "cli/tensor_list.h"

#define CMD "unpack"

typedef struct unpack_args {
    const char *in, *out, *tensor;
    int list;
} unpack_args;

#define UA(f) offsetof(unpack_args, f)
static const cli_operand unpack_operands[] = {
    {.name = "X.wpkz", .help = "the shipping form made by wpack pack", .off = UA(in), .required = 1,
     .complete = "file"},
    {0},
};
static const cli_option unpack_opts[] = {
    {.name = "output", .short_name = 'o', .kind = CLI_STR, .off = UA(out), .arg = "PATH", .complete = "file",
     .help = "the build directory to restore, or with --tensor the tensor's file"},
    {.name = "tensor", .kind = CLI_STR, .off = UA(tensor), .arg = "NAME",
     .help = "extract one tensor's raw bytes (NAME, or FILE.wpk:NAME when several\nfiles hold it), reading only its frames"},
    {.name = "list", .kind = CLI_FLAG, .off = UA(list),
     .help = "print the index's figures per encoding and every tensor (name,\nencoding, shape, bytes, offset, digest, compressed bytes, experts),\n"
             "from the index and the .wpk headers alone"},
    {0},
};

static int unpack_run(cli_ctx *c, void *va)
{
    const unpack_args *a = va;
    const char *in = a->in, *out = a->out, *tensor = a->tensor;
    int json = c->json, list = a->list;
    if (!list && !out) return cli_usage(CMD, "missing option '-o/--output PATH' (the build directory, or the tensor's file)");
    wp_err e = {0};
    wpz_stats st;
    double t0 = wp_now();
    if (list) {
        wp_tensor_list l;
        int rc = wpz_stat(in, &st, &e);
        if (!rc) rc = wp_wpkz_list(in, &l, &e);
        if (rc) return cli_error(CMD, &e);
        if (json) {
            cJSON *j = cli_wpz_stats_json(&st), *t = wp_tensor_list_json(&l);
            if (!j || !t || !cJSON_AddItemToObject(j, "tensor_list", t)) {
                cJSON_Delete(t);
                cJSON_Delete(j);
                wp_tensor_list_free(&l);
                wp_oom(&e, "the JSON document");
                return cli_error(CMD, &e);
            }
            cli_print_json(j);
        } else {
            cli_wpz_stats_print(&st, 0, "listed");
            printf("tensors:\n");
            cli_tensor_list_print(&l);
        }
        wp_tensor_list_free(&l);
        return WP_EXIT_OK;
    }
    if (tensor) {
        wpz_opts xo = {.force = c->force};
        if (wpz_extract(in, tensor, out, &xo, &e)) return cli_error(CMD, &e);
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
    wpz_opts o = {.force = c->force, .progress = cli_progress, .ud = &bar};
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

const cli_command cli_cmd_unpack = {
    .name = "unpack",
    .summary = "restore a build (or one tensor) from a .wpkz",
    .synopsis = "X.wpkz -o BUILD [options]\nX.wpkz --tensor NAME -o FILE [options]\nX.wpkz --list [options]",
    .about = "Restore the build directory packed in X.wpkz (it appears only once every file\n"
             "matched its recorded SHA-256), or extract one tensor's raw bytes, or list the\n"
             "index's figures and every tensor (the names --tensor takes).",
    .operands = unpack_operands,
    .options = unpack_opts,
    .flags = CLI_WRITES,
    .exit1 = "a file's SHA-256 or a frame check failed",
    .args_size = sizeof(unpack_args),
    .run = unpack_run,
};
