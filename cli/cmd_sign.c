/* cmd_sign.c — `wpack sign BUILD --key PRIV.pem [--dsse] ...` (docs/signing.md §3-4). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "trust/trust.h"

static const char usage[] =
    "usage: wpack sign BUILD --key PRIV.pem [--dsse] [--name MODEL] [--no-check] [--threads N] [--json]\n"
    "  Check the build against its manifest, then write BUILD/manifest.sig (a detached signature\n"
    "  over the exact manifest.json bytes).\n"
    "  --dsse       also write BUILD/manifest.dsse.json: an OpenSSF model-signing bundle (in-toto\n"
    "               statement in a DSSE envelope, signed with the same key)\n"
    "  --name MODEL in-toto subject name (default: the build directory's name)\n"
    "  --no-check   sign without re-hashing the build first\n"
    "  --threads N  hashing threads (default: all CPUs)\n";

int cmd_sign(int argc, char **argv)
{
    wp_sign_opts o = {0};
    const char *build = NULL;
    int json = 0;
    for (int i = 1; i < argc; i++) {
        const char *v;
        if (cli_flag(argv[i], "--help") || cli_flag(argv[i], "-h")) {
            fputs(usage, stdout);
            return WP_EXIT_OK;
        } else if ((v = cli_opt(argc, argv, &i, "--key"))) {
            o.key_path = v;
        } else if ((v = cli_opt(argc, argv, &i, "--name"))) {
            o.model_name = v;
        } else if ((v = cli_opt(argc, argv, &i, "--threads"))) {
            long long n;
            if (cli_int("sign", "--threads", v, 1, 1024, &n)) return WP_EXIT_BAD;
            o.threads = (int)n;
        } else if (cli_flag(argv[i], "--dsse")) {
            o.dsse = 1;
        } else if (cli_flag(argv[i], "--no-check")) {
            o.no_check = 1;
        } else if (cli_flag(argv[i], "--json")) {
            json = 1;
        } else if (argv[i][0] == '-' || build) {
            return cli_usage("sign", "unexpected argument '%s'", argv[i]);
        } else {
            build = argv[i];
        }
    }
    if (!build) return cli_usage("sign", "BUILD is required");
    if (!o.key_path) return cli_usage("sign", "--key PRIV.pem is required");
    cli_bar bar;
    cli_bar_init(&bar, json, 1);
    o.progress = cli_progress;
    o.progress_ud = &bar;
    wp_err e = {0};
    char kid[65] = "";
    int rc = wp_sign_build(build, &o, kid, &e);
    cli_bar_end(&bar);
    if (rc) {
        int code = cli_error("sign", &e);
        if (json) {
            cJSON *j = cJSON_CreateObject();
            cJSON_AddBoolToObject(j, "ok", 0);
            cJSON_AddStringToObject(j, "error", e.msg);
            cli_print_json(j);
        }
        return code;
    }
    if (json) {
        cJSON *j = cJSON_CreateObject();
        cJSON_AddBoolToObject(j, "ok", 1);
        cJSON_AddStringToObject(j, "build", build);
        cJSON_AddStringToObject(j, "keyid", kid);
        cJSON_AddBoolToObject(j, "dsse", o.dsse);
        cli_print_json(j);
    } else {
        printf("%s: signed with key %s (%s%s)\n", build, kid, "manifest.sig", o.dsse ? ", manifest.dsse.json" : "");
    }
    return WP_EXIT_OK;
}
