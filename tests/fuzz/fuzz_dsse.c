/*
 * fuzz_dsse.c — the DSSE bundle manifest.dsse.json (wp_dsse_bundle_verify:
 * a Sigstore bundle v0.3 or a bare DSSE envelope, base64 payload, PAE,
 * signature) and the in-toto statement it carries (wp_intoto_check).  The
 * input is verified as a bundle with the fixed keys of fuzz_keys.h (on
 * success its payload is checked as a statement), and is also checked
 * directly as a statement, against fixed resources.  Seeds
 * (tests/fuzz/corpus/dsse/): bundles signed by those keys, statements.
 */
#include "tests/fuzz/fuzz_keys.h"
#include "tests/fuzz/fuzz_util.h"
#include "trust/manifest.h"

static wp_key *pub(const char *pem)
{
    wp_err e = {0};
    wp_key *k = NULL;
    if (wp_key_public_from_pem(pem, strlen(pem), "fuzz key", &k, &e)) abort();
    return k;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static wp_key *keys[2];
    static wp_resource res[2];
    static const char *const names[2] = FZ_RESOURCES;
    if (!keys[0]) {
        keys[0] = pub(FZ_ED25519_PUB), keys[1] = pub(FZ_P256_PUB);
        for (int i = 0; i < 2; i++) {
            wp_err e = {0};
            res[i].name = names[i];
            if (wp_sha256_buf(names[i], strlen(names[i]), res[i].sha256, &e)) abort();
        }
    }
    for (int i = 0; i < 2; i++) {
        wp_err e = {0};
        char *payload = NULL, *type = NULL;
        size_t plen = 0;
        int rc = wp_dsse_bundle_verify(keys[i], (const char *)data, size, "manifest.dsse.json", &payload,
                                       &plen, &type, &e);
        fz_check_refusal(rc, &e);
        if (!rc) {
            if (!payload || !type || payload[plen]) abort();
            wp_err_clear(&e);
            rc = wp_intoto_check(payload, plen, "manifest.dsse.json", res, 2, &e);
            fz_check_refusal(rc, &e);
        }
        free(payload);
        free(type);
    }
    wp_err e = {0};
    int rc = wp_intoto_check((const char *)data, size, "statement", res, 2, &e);
    fz_check_refusal(rc, &e);
    return 0;
}
