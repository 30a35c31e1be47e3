/* cmd_keygen.c — `wpack keygen -o NAME [--ecdsa] [--force] [--json]`:
 * NAME.pem (private, 0600) + NAME.pub.pem (docs/signing.md §3). */
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "trust/manifest.h"

static const char usage[] =
    "usage: wpack keygen -o NAME [--ecdsa] [--force] [--json]\n"
    "  Make a signing key pair: NAME.pem (private, mode 0600) and NAME.pub.pem.\n"
    "  -o NAME    output base name\n"
    "  --ecdsa    ECDSA P-256 instead of Ed25519 (what OpenSSF model-signing tools verify)\n"
    "  --force    replace existing key files\n"
    "  --json     print the result as JSON\n";

int cmd_keygen(int argc, char **argv)
{
    const char *base = NULL;
    int ecdsa = 0, force = 0, json = 0;
    for (int i = 1; i < argc; i++) {
        const char *v;
        if (cli_flag(argv[i], "--help") || cli_flag(argv[i], "-h")) {
            fputs(usage, stdout);
            return WP_EXIT_OK;
        } else if ((v = cli_opt(argc, argv, &i, "-o")) || (v = cli_opt(argc, argv, &i, "--output"))) {
            base = v;
        } else if (cli_flag(argv[i], "--ecdsa")) {
            ecdsa = 1;
        } else if (cli_flag(argv[i], "--force")) {
            force = 1;
        } else if (cli_flag(argv[i], "--json")) {
            json = 1;
        } else {
            return cli_usage("keygen", "unexpected argument '%s'", argv[i]);
        }
    }
    if (!base || !*base) return cli_usage("keygen", "-o NAME is required");
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
