/*
 * fuzz_pem.c — PEM keys: a public key from memory (wp_key_public_from_pem)
 * and from a file (wp_key_load_public), a private key from a file
 * (wp_key_load_private).  Only Ed25519 and P-256 may be accepted; an
 * accepted key must give a key id and its public PEM, and a private key
 * must sign what its public half verifies.  Seeds: tests/fuzz/corpus/pem/.
 */
#include <sys/stat.h>
#include "tests/fuzz/fuzz_util.h"
#include "trust/manifest.h"

static void use_key(wp_key *k, int priv)
{
    wp_err e = {0};
    char id[2 * WP_SHA256_LEN + 1], *pem = NULL;
    size_t n = 0;
    wp_key_alg a = wp_key_algorithm(k);
    if (a != WP_KEY_ED25519 && a != WP_KEY_ECDSA_P256) abort();
    if (wp_key_id(k, id, &e) || strlen(id) != 64) fz_die("key id", &e);
    if (wp_key_public_pem(k, &pem, &n, &e)) fz_die("public pem", &e);
    wp_key *back = NULL;
    if (wp_key_public_from_pem(pem, n, "back", &back, &e)) fz_die("public pem read back", &e);   /* what we write, we read */
    free(pem);
    if (priv) {
        uint8_t *sig = NULL;
        size_t sl = 0;
        if (wp_sign_bytes(k, "m", 1, &sig, &sl, &e)) fz_die("sign", &e);
        if (wp_verify_bytes(back, "m", 1, sig, sl, "sig", &e)) fz_die("verify own signature", &e);
        free(sig);
    }
    wp_key_free(back);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    wp_err e = {0};
    wp_key *k = NULL;
    int rc = wp_key_public_from_pem((const char *)data, size, "key.pem", &k, &e);
    fz_check_refusal(rc, &e);
    if (!rc) use_key(k, 0);
    wp_key_free(k);
    const char *p = fz_path("key.pem");
    fz_write(p, data, size);
    chmod(p, 0600);   /* so the parser, not the mode check, sees the private half */
    for (int priv = 0; priv < 2; priv++) {
        wp_err_clear(&e);
        k = NULL;
        rc = priv ? wp_key_load_private(p, &k, &e) : wp_key_load_public(p, &k, &e);
        fz_check_refusal(rc, &e);
        if (!rc) use_key(k, priv);
        wp_key_free(k);
    }
    return 0;
}
