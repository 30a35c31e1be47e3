/* cmd_verify_source.c — `wpack verify-source CKPT --digests FILE.json`: an
 * official download against published sizes and SHA-256s (docs/signing.md §6). */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "trust/trust.h"

typedef struct vs_args {
    const char *ckpt, *digests;
    int threads;
} vs_args;

static const cli_operand vs_operands[] = {
    {.name = "CKPT", .help = "the checkpoint directory as downloaded", .off = offsetof(vs_args, ckpt),
     .required = 1, .complete = "dir"},
    {0},
};
static const cli_option vs_opts[] = {
    {.name = "digests", .short_name = 'd', .kind = CLI_STR, .off = offsetof(vs_args, digests), .arg = "FILE.json",
     .required = 1, .complete = "file",
     .help = "the published sizes and SHA-256s (path, size, sha256 per file);\n"
             "DeepSeek-V4-Flash: data/deepseek-v4-flash-60d8d707.json"},
    {.name = "threads", .short_name = 't', .kind = CLI_INT, .off = offsetof(vs_args, threads), .arg = "N", .lo = 1,
     .hi = 1024, .def_doc = "all online CPUs", .help = "hashing threads"},
    {0},
};

static int vs_run(cli_ctx *c, void *va)
{
    const vs_args *a = va;
    const char *ckpt = a->ckpt, *digests = a->digests;
    int json = c->json, threads = a->threads;
    cli_bar bar;
    cli_bar_init(&bar, json, 1);
    wp_err e = {0};
    wp_source_report r;
    int rc = wp_verify_source(ckpt, digests, threads, cli_progress, &bar, &r, &e);
    cli_bar_end(&bar);
    int code = WP_EXIT_OK;
    if (rc && rc != WP_EVERIFY) {
        code = cli_error("verify-source", &e);
        wp_source_report_free(&r);
        return code;
    }
    if (rc) {
        code = WP_EXIT_FAIL;
        if (json) cli_keep_error(code, "%s: %zu of %zu files failed", ckpt, r.nbad, r.nfiles);
    }
    if (json) {
        cJSON *j = cJSON_CreateObject();
        cJSON_AddStringToObject(j, "checkpoint", ckpt);
        cJSON_AddBoolToObject(j, "ok", rc == 0);
        if (r.model) cJSON_AddStringToObject(j, "model", r.model);
        if (r.revision) cJSON_AddStringToObject(j, "revision", r.revision);
        cJSON *fa = cJSON_AddArrayToObject(j, "files");
        for (size_t i = 0; i < r.nfiles; i++) {
            const wp_src_file *f = &r.files[i];
            cJSON *o = cJSON_CreateObject();
            char h[65];
            cJSON_AddStringToObject(o, "path", f->path);
            cJSON_AddStringToObject(o, "status", wp_src_status_name(f->status));
            if (f->has_size) cJSON_AddNumberToObject(o, "published_size", (double)f->want_size);
            if (f->status != WP_SRC_MISSING) cJSON_AddNumberToObject(o, "size", (double)f->size);
            wp_hex(f->want, WP_SHA256_LEN, h);
            cJSON_AddStringToObject(o, "published_sha256", h);
            if (f->status == WP_SRC_OK || f->status == WP_SRC_DIGEST) {
                wp_hex(f->got, WP_SHA256_LEN, h);
                cJSON_AddStringToObject(o, "sha256", h);
            }
            cJSON_AddItemToArray(fa, o);
        }
        cJSON *x = cJSON_AddArrayToObject(j, "extra_files");
        for (size_t i = 0; i < r.nextra; i++) cJSON_AddItemToArray(x, cJSON_CreateString(r.extra[i]));
        cJSON_AddNumberToObject(j, "failed", (double)r.nbad);
        cJSON_AddNumberToObject(j, "bytes_hashed", (double)r.bytes_hashed);
        cJSON_AddNumberToObject(j, "seconds", r.seconds);
        cJSON_AddNumberToObject(j, "threads", r.threads);
        cli_print_json(j);
    } else {
        for (size_t i = 0; i < r.nfiles; i++) {
            const wp_src_file *f = &r.files[i];
            if (f->status == WP_SRC_OK) continue;
            char want[65], got[65];
            wp_hex(f->want, WP_SHA256_LEN, want);
            wp_hex(f->got, WP_SHA256_LEN, got);
            if (f->status == WP_SRC_SIZE)
                fprintf(stderr, "wpack verify-source: %s: size %llu, published %llu (not hashed)\n", f->path,
                        (unsigned long long)f->size, (unsigned long long)f->want_size);
            else if (f->status == WP_SRC_DIGEST)
                fprintf(stderr, "wpack verify-source: %s: sha256 %s, published %s\n", f->path, got, want);
            else
                fprintf(stderr, "wpack verify-source: %s: %s\n", f->path, wp_src_status_name(f->status));
        }
        for (size_t i = 0; i < r.nextra; i++) printf("ignored (not in the digests file): %s\n", r.extra[i]);
        char b[32];
        if (rc)
            cli_fail("verify-source", code, "%s: %zu of %zu files failed", ckpt, r.nbad, r.nfiles);
        else
            printf("%s: OK: %zu files match%s%s (%s hashed in %.2f s, %d threads)\n", ckpt, r.nfiles,
                   r.model ? " " : "", r.model ? r.model : "", cli_bytes(r.bytes_hashed, b, sizeof b), r.seconds,
                   r.threads);
    }
    wp_source_report_free(&r);
    return code;
}

const cli_command cli_cmd_verify_source = {
    .name = "verify-source",
    .summary = "check a download against published sizes and SHA-256s",
    .about = "Check every file listed in the digests file inside the checkpoint directory CKPT:\n"
             "sizes first (a file of the wrong size is not hashed), then SHA-256 in parallel.\n"
             "Files CKPT has that the digests file does not list are ignored and listed.",
    .operands = vs_operands,
    .options = vs_opts,
    .exit1 = "a file is missing or its size or SHA-256 differs from the published one",
    .args_size = sizeof(vs_args),
    .run = vs_run,
};
