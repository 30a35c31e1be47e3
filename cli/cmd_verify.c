/* cmd_verify.c — `wpack verify BUILD [--key PUB.pem] ...`: structure, signature
 * and every digest of a build or a lone .wpk (docs/signing.md §5). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "trust/trust.h"

static const char usage[] =
    "usage: wpack verify BUILD [--key PUB.pem] [--allow-unsigned] [--deep] [--threads N] [--hugepages] [--json]\n"
    "  Check a build directory (or a lone .wpk): container structure, the manifest signature,\n"
    "  the manifest against each container's directory, and the SHA-256 of every tensor and of\n"
    "  every other byte, in parallel.  Exit 0 ok, 1 verification failed, 2 unreadable/usage.\n"
    "  --key PUB.pem     the signer's public key: the signature must verify with it\n"
    "  --allow-unsigned  accept a build whose signature is absent or not checked (no --key)\n"
    "  --deep            also the whole-file SHA-256 of every file (what sha256sum prints)\n"
    "  --threads N       hashing threads (default: all CPUs)\n"
    "  --hugepages       hash tensors from huge-page-backed copies (as `run --hugepages` uses)\n";

static void print_json(const char *path, const wp_verify_report *r, int rc, const wp_err *e)
{
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "path", path);
    cJSON_AddBoolToObject(j, "ok", rc == 0);
    cJSON_AddStringToObject(j, "kind", r->is_build ? "build" : "wpk");
    if (rc) cJSON_AddStringToObject(j, "error", e->msg);
    cJSON *s = cJSON_AddObjectToObject(j, "signature");
    cJSON_AddBoolToObject(s, "present", r->sig_present);
    cJSON_AddBoolToObject(s, "verified", r->sig_verified);
    if (r->keyid[0]) cJSON_AddStringToObject(s, "keyid", r->keyid);
    cJSON *d = cJSON_AddObjectToObject(j, "dsse");
    cJSON_AddBoolToObject(d, "present", r->dsse_present);
    cJSON_AddBoolToObject(d, "verified", r->dsse_verified);
    if (r->root[0]) cJSON_AddStringToObject(j, r->is_build ? "root_sha256" : "header_sha256", r->root);
    cJSON_AddNumberToObject(j, "files", r->nfiles);
    cJSON_AddNumberToObject(j, "tensors", (double)r->ntensors);
    cJSON_AddNumberToObject(j, "bytes_hashed", (double)r->bytes_hashed);
    cJSON_AddNumberToObject(j, "seconds", r->seconds);
    cJSON_AddNumberToObject(j, "gb_per_s", r->seconds > 0 ? (double)r->bytes_hashed / r->seconds / 1e9 : 0);
    cJSON_AddNumberToObject(j, "threads", r->threads);
    if (r->notice[0]) cJSON_AddStringToObject(j, "notice", r->notice);
    cJSON *f = cJSON_AddArrayToObject(j, "failures");
    for (size_t i = 0; i < r->nfail; i++) cJSON_AddItemToArray(f, cJSON_CreateString(r->fail[i]));
    cJSON_AddNumberToObject(j, "failures_total", (double)r->nfail_total);
    cJSON *x = cJSON_AddArrayToObject(j, "extra_files");
    for (size_t i = 0; i < r->nextra; i++) cJSON_AddItemToArray(x, cJSON_CreateString(r->extra[i]));
    cli_print_json(j);
}

int cmd_verify(int argc, char **argv)
{
    wp_verify_opts o = {0};
    const char *path = NULL;
    int json = 0;
    for (int i = 1; i < argc; i++) {
        const char *v;
        if (cli_flag(argv[i], "--help") || cli_flag(argv[i], "-h")) {
            fputs(usage, stdout);
            return WP_EXIT_OK;
        } else if ((v = cli_opt(argc, argv, &i, "--key"))) {
            o.key_path = v;
        } else if ((v = cli_opt(argc, argv, &i, "--threads"))) {
            long long n;
            if (cli_int("verify", "--threads", v, 1, 1024, &n)) return WP_EXIT_BAD;
            o.threads = (int)n;
        } else if (cli_flag(argv[i], "--allow-unsigned")) {
            o.allow_unsigned = 1;
        } else if (cli_flag(argv[i], "--deep")) {
            o.deep = 1;
        } else if (cli_flag(argv[i], "--hugepages")) {
            o.hugepages = 1;
        } else if (cli_flag(argv[i], "--json")) {
            json = 1;
        } else if (argv[i][0] == '-' || path) {
            return cli_usage("verify", "unexpected argument '%s'", argv[i]);
        } else {
            path = argv[i];
        }
    }
    if (!path) return cli_usage("verify", "BUILD is required");
    cli_bar bar;
    cli_bar_init(&bar, json, 1);
    o.progress = cli_progress;
    o.progress_ud = &bar;
    wp_err e = {0};
    wp_verify_report r;
    int rc = wp_verify_build(path, &o, &r, &e);
    cli_bar_end(&bar);
    if (r.notice[0]) fprintf(stderr, "wpack verify: %s\n", r.notice);
    int code = WP_EXIT_OK;
    if (rc) {
        /* every problem on its own line; the exit code follows the first */
        for (size_t i = 1; i < r.nfail; i++) fprintf(stderr, "wpack verify: %s\n", r.fail[i]);
        code = cli_error("verify", &e);
        if (r.nfail_total > 1)
            fprintf(stderr, "wpack verify: %llu problems%s\n", (unsigned long long)r.nfail_total,
                    r.nfail_total > r.nfail ? " (first ones shown)" : "");
    }
    if (json) {
        print_json(path, &r, rc, &e);
    } else if (!rc) {
        char b[32];
        printf("%s: OK: %u file%s, %llu tensors, %s hashed in %.2f s (%.2f GB/s, %d threads)\n", path, r.nfiles,
               r.nfiles == 1 ? "" : "s", (unsigned long long)r.ntensors, cli_bytes(r.bytes_hashed, b, sizeof b),
               r.seconds, r.seconds > 0 ? (double)r.bytes_hashed / r.seconds / 1e9 : 0.0, r.threads);
        if (r.sig_verified)
            printf("signature: verified (%s key %s)%s\n", "signer", r.keyid,
                   r.dsse_verified ? "; DSSE bundle verified" : "");
        else if (r.sig_present)
            printf("signature: present, NOT checked (no --key; key %s)\n", r.keyid);
        else
            printf("signature: none (integrity only, --allow-unsigned)\n");
        if (r.root[0] && r.is_build) printf("root sha256: %s\n", r.root);
        for (size_t i = 0; i < r.nextra; i++) printf("ignored (not in the manifest): %s\n", r.extra[i]);
    }
    wp_verify_report_free(&r);
    return code;
}
