/* cmd_keygen.c — `wpack keygen -o NAME [--ecdsa]`:
 * NAME.pem (private, 0600) + NAME.pub.pem (docs/signing.md §3). */
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "trust/manifest.h"

typedef struct keygen_args {
    const char *base;
    int ecdsa;
} keygen_args;

static const cli_option keygen_opts[] = {
    {.name = "output", .short_name = 'o', .kind = CLI_STR, .off = offsetof(keygen_args, base), .arg = "NAME",
     .required = 1, .complete = "file", .help = "write NAME.pem (private, mode 0600) and NAME.pub.pem"},
    {.name = "ecdsa", .kind = CLI_FLAG, .off = offsetof(keygen_args, ecdsa),
     .help = "ECDSA P-256 instead of Ed25519 (what OpenSSF model-signing tools verify)"},
    {0},
};

static int keygen_run(cli_ctx *c, void *va)
{
    const keygen_args *a = va;
    const char *base = a->base;
    int ecdsa = a->ecdsa, force = c->force, json = c->json;
    if (!*base) return cli_usage("keygen", "option '-o/--output': the name is empty");
    wp_err e = {0};
    wp_key *k = NULL;
    char kid[65];
    wp_key_alg alg = ecdsa ? WP_KEY_ECDSA_P256 : WP_KEY_ED25519;
    int rc = wp_key_generate(alg, &k, &e);
    if (!rc) rc = wp_key_write_pair(k, base, force, &e);
    if (!rc) rc = wp_key_id(k, kid, &e);
    wp_key_free(k);
    if (rc) return cli_error("keygen", &e);
    if (json) {
        cJSON *o = cJSON_CreateObject();
        char priv[4096], pub[4096];
        snprintf(priv, sizeof priv, "%s.pem", base);
        snprintf(pub, sizeof pub, "%s.pub.pem", base);
        cJSON_AddStringToObject(o, "algorithm", wp_key_alg_name(alg));
        cJSON_AddStringToObject(o, "keyid", kid);
        cJSON_AddStringToObject(o, "private_key", priv);
        cJSON_AddStringToObject(o, "public_key", pub);
        cli_print_json(o);
    } else {
        printf("wrote %s.pem (private, keep it secret) and %s.pub.pem\n%s key id %s\n", base, base,
               wp_key_alg_name(alg), kid);
    }
    return WP_EXIT_OK;
}

const cli_command cli_cmd_keygen = {
    .name = "keygen",
    .summary = "make a signing key pair (PEM)",
    .about = "Make a signing key pair: NAME.pem (the private key, PKCS#8, mode 0600) and NAME.pub.pem\n"
             "(the public key).  Ed25519 by default.  An existing pair is replaced only with\n"
             "-f/--force.",
    .options = keygen_opts,
    .flags = CLI_WRITES,
    .args_size = sizeof(keygen_args),
    .run = keygen_run,
};
