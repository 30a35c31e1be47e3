/* cmd_sign.c — `wpack sign BUILD --key PRIV.pem [--dsse] ...` (docs/signing.md §3-4). */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "trust/trust.h"

typedef struct sign_args {
    const char *build;
    wp_sign_opts o;
} sign_args;

#define SA(f) offsetof(sign_args, f)
static const cli_operand sign_operands[] = {
    {.name = "BUILD", .help = "the build directory to sign (or, with --dsse, a checkpoint directory)", .off = SA(build),
     .required = 1, .complete = "dir"},
    {0},
};
static const cli_option sign_opts[] = {
    {.name = "key", .short_name = 'k', .kind = CLI_STR, .off = SA(o.key_path), .arg = "PRIV.pem", .required = 1,
     .complete = "file", .help = "the private key (PKCS#8 PEM, from wpack keygen)"},
    {.name = "dsse", .kind = CLI_FLAG, .off = SA(o.dsse),
     .help = "also write BUILD/manifest.dsse.json: an OpenSSF model-signing bundle\n"
             "(in-toto statement in a DSSE envelope, signed with the same key); for a\n"
             "checkpoint directory (no manifest.json) write DIR/model.sig, a model-signing\n"
             "bundle over every file"},
    {.name = "name", .kind = CLI_STR, .off = SA(o.model_name), .arg = "MODEL",
     .def_doc = "the build directory's name", .help = "the in-toto subject name"},
    {.name = "no-check", .kind = CLI_FLAG, .off = SA(o.no_check), .help = "sign without re-hashing the build first"},
    {.name = "threads", .short_name = 't', .kind = CLI_INT, .off = SA(o.threads), .arg = "N", .lo = 1, .hi = 1024,
     .def_doc = "all online CPUs", .help = "hashing threads"},
    {0},
};

static int sign_run(cli_ctx *c, void *va)
{
    sign_args *a = va;
    wp_sign_opts o = a->o;
    const char *build = a->build;
    int json = c->json;
    cli_bar bar;
    cli_bar_init(&bar, json, 1);
    o.progress = cli_progress;
    o.progress_ud = &bar;
    wp_err e = {0};
    char kid[65] = "";
    int ckpt = wp_sign_is_checkpoint(build);
    int rc = wp_sign_build(build, &o, kid, &e);
    cli_bar_end(&bar);
    if (rc) return cli_error("sign", &e);
    if (json) {
        cJSON *j = cJSON_CreateObject();
        cJSON_AddBoolToObject(j, "ok", 1);
        cJSON_AddStringToObject(j, "build", build);
        cJSON_AddStringToObject(j, "keyid", kid);
        cJSON_AddBoolToObject(j, "dsse", o.dsse);
        cJSON_AddStringToObject(j, "kind", ckpt ? "checkpoint" : "build");
        cli_print_json(j);
    } else if (ckpt) {
        printf("%s: signed with key %s (model.sig: OpenSSF model-signing bundle)\n", build, kid);
    } else {
        printf("%s: signed with key %s (%s%s)\n", build, kid, "manifest.sig", o.dsse ? ", manifest.dsse.json" : "");
    }
    return WP_EXIT_OK;
}

const cli_command cli_cmd_sign = {
    .name = "sign",
    .summary = "sign a build's manifest",
    .about = "Check the build against its manifest (every digest), then write BUILD/manifest.sig:\n"
             "a detached signature over the exact manifest.json bytes (docs/signing.md).  A directory\n"
             "without manifest.json (an exported checkpoint) is signed with --dsse only, into\n"
             "DIR/model.sig: an OpenSSF model-signing bundle over every file.",
    .operands = sign_operands,
    .options = sign_opts,
    .args_size = sizeof(sign_args),
    .run = sign_run,
};
