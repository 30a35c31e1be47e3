/* cmd_verify.c — `wpack verify BUILD [--key PUB.pem] ...`: structure, signature
 * and every digest of a build or a lone .wpk (docs/signing.md §5). */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "trust/trust.h"

typedef struct verify_args {
    const char *path;
    wp_verify_opts o;
} verify_args;

#define VA(f) offsetof(verify_args, f)
static const cli_operand verify_operands[] = {
    {.name = "BUILD", .help = "a build directory, a lone .wpk, or a directory signed with model.sig", .off = VA(path),
     .required = 1, .complete = "file"},
    {0},
};
static const cli_option verify_opts[] = {
    {.name = "key", .short_name = 'k', .kind = CLI_STR, .off = VA(o.key_path), .arg = "PUB.pem", .complete = "file",
     .help = "the signer's public key: the signature must verify with it"},
    {.name = "allow-unsigned", .kind = CLI_FLAG, .off = VA(o.allow_unsigned),
     .help = "accept a build whose signature is absent or not checked (no --key)"},
    {.name = "deep", .kind = CLI_FLAG, .off = VA(o.deep),
     .help = "also the whole-file SHA-256 of every file (what sha256sum prints)"},
    {.name = "threads", .short_name = 't', .kind = CLI_INT, .off = VA(o.threads), .arg = "N", .lo = 1, .hi = 1024,
     .def_doc = "all online CPUs", .help = "hashing threads"},
    {.name = "hugepages", .kind = CLI_FLAG, .off = VA(o.hugepages),
     .help = "hash tensors from huge-page-backed copies (as `run --hugepages` uses)"},
    {0},
};

static int verify_run(cli_ctx *c, void *va)
{
    verify_args *a = va;
    wp_verify_opts o = a->o;
    const char *path = a->path;
    int json = c->json;
    cli_bar bar;
    cli_bar_init(&bar, json, 1);
    o.progress = cli_progress;
    o.progress_ud = &bar;
    wp_err e = {0};
    wp_verify_report r;
    int rc = wp_verify_build(path, &o, &r, &e);
    cli_bar_end(&bar);
    if (r.notice[0]) cli_notice("%s", r.notice);
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
        cli_print_json(wp_verify_report_json(path, &r, rc, &e));
    } else if (!rc) {
        char b[32];
        printf("%s: OK: %u file%s, %llu tensors, %s hashed in %.2f s (%.2f GB/s, %d threads)\n", path, r.nfiles,
               r.nfiles == 1 ? "" : "s", (unsigned long long)r.ntensors, cli_bytes(r.bytes_hashed, b, sizeof b),
               r.seconds, r.seconds > 0 ? (double)r.bytes_hashed / r.seconds / 1e9 : 0.0, r.threads);
        const char *who = r.dsse_foreign ? "another signer's layout" : "wpack's layout";
        if (r.sig_verified)
            printf("signature: verified (%s key %s)%s%s%s\n", "signer", r.keyid,
                   r.dsse_verified ? "; DSSE bundle verified (" : "", r.dsse_verified ? who : "",
                   r.dsse_verified ? ")" : "");
        else if (r.dsse_verified)
            printf("signature: model-signing bundle verified (%s, %s)\n", r.is_checkpoint ? "model.sig" :
                   "manifest.dsse.json", who);
        else if (r.sig_present)
            printf("signature: present, NOT checked (no --key; key %s)\n", r.keyid);
        else if (r.dsse_present)
            printf("signature: model-signing bundle present, NOT checked (no --key)\n");
        else
            printf("signature: none (integrity only, --allow-unsigned)\n");
        if (r.root[0] && r.is_build) printf("root sha256: %s\n", r.root);
        if (r.root[0] && r.is_checkpoint) printf("model-signing root sha256: %s\n", r.root);
        for (size_t i = 0; i < r.nextra; i++) printf("ignored (not in the manifest): %s\n", r.extra[i]);
    }
    wp_verify_report_free(&r);
    return code;
}

const cli_command cli_cmd_verify = {
    .name = "verify",
    .summary = "check a build's structure, signature and digests",
    .about = "Check a build directory (or a lone .wpk): container structure, the manifest signature,\n"
             "the manifest against each container's directory, and the SHA-256 of every tensor and\n"
             "of every other byte, in parallel.  A signed build needs --key, or --allow-unsigned to\n"
             "check its integrity only.  A directory without manifest.json but with model.sig (an\n"
             "OpenSSF model-signing bundle, e.g. over an exported checkpoint) is checked against it:\n"
             "the signature, every file's SHA-256, no file left out.",
    .operands = verify_operands,
    .options = verify_opts,
    .exit1 = "verification failed: a digest, the signature or the structure does not match",
    .args_size = sizeof(verify_args),
    .run = verify_run,
};
