/* cmd_verify_source.c — `wpack verify-source CKPT --digests FILE.json`: an
 * official download against published sizes and SHA-256s (docs/signing.md §6). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "trust/trust.h"

static const char usage[] =
    "usage: wpack verify-source CKPT --digests FILE.json [--threads N] [--json]\n"
    "  Check every file listed in FILE.json (path, size, sha256) inside the checkpoint\n"
    "  directory CKPT: sizes first (a wrong size is not hashed), then SHA-256 in parallel.\n"
    "  Files CKPT has but FILE.json does not list are ignored and listed.\n"
    "  The digests of DeepSeek-V4-Flash: data/deepseek-v4-flash-60d8d707.json.\n";

int cmd_verify_source(int argc, char **argv)
{
    const char *ckpt = NULL, *digests = NULL;
    int json = 0, threads = 0;
    for (int i = 1; i < argc; i++) {
        const char *v;
        if (cli_flag(argv[i], "--help") || cli_flag(argv[i], "-h")) {
            fputs(usage, stdout);
            return WP_EXIT_OK;
        } else if ((v = cli_opt(argc, argv, &i, "--digests"))) {
            digests = v;
        } else if ((v = cli_opt(argc, argv, &i, "--threads"))) {
            long long n;
            if (cli_int("verify-source", "--threads", v, 1, 1024, &n)) return WP_EXIT_BAD;
            threads = (int)n;
        } else if (cli_flag(argv[i], "--json")) {
            json = 1;
        } else if (argv[i][0] == '-' || ckpt) {
            return cli_usage("verify-source", "unexpected argument '%s'", argv[i]);
        } else {
            ckpt = argv[i];
        }
    }
    if (!ckpt) return cli_usage("verify-source", "CKPT is required");
    if (!digests) return cli_usage("verify-source", "--digests FILE.json is required");
    cli_bar bar;
    cli_bar_init(&bar, json, 1);
    wp_err e = {0};
    wp_source_report r;
    int rc = wp_verify_source(ckpt, digests, threads, cli_progress, &bar, &r, &e);
    cli_bar_end(&bar);
    int code = WP_EXIT_OK;
    if (rc && rc != WP_EVERIFY) {
        code = cli_error("verify-source", &e);
        if (json) {
            cJSON *j = cJSON_CreateObject();
            cJSON_AddBoolToObject(j, "ok", 0);
            cJSON_AddStringToObject(j, "error", e.msg);
            cli_print_json(j);
        }
        wp_source_report_free(&r);
        return code;
    }
    if (rc) code = WP_EXIT_FAIL;
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
            fprintf(stderr, "wpack verify-source: %s: %zu of %zu files failed\n", ckpt, r.nbad, r.nfiles);
        else
            printf("%s: OK: %zu files match%s%s (%s hashed in %.2f s, %d threads)\n", ckpt, r.nfiles,
                   r.model ? " " : "", r.model ? r.model : "", cli_bytes(r.bytes_hashed, b, sizeof b), r.seconds,
                   r.threads);
    }
    wp_source_report_free(&r);
    return code;
}
