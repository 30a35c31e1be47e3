/*
 * fuzz_signature.c — the detached signature document manifest.sig
 * (wp_sig_check: canonical JSON, keys, algorithm, key id, manifest binding,
 * base64, the signature itself).  The input is the document; it is checked
 * against fixed manifest bytes without a key (structure and binding), and
 * with the fixed Ed25519 and P-256 public keys of fuzz_keys.h.  Seeds
 * (tests/fuzz/corpus/signature/) are valid signatures by those keys, so
 * mutations reach the verification.
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
    static wp_key *ed, *ec;
    if (!ed) ed = pub(FZ_ED25519_PUB), ec = pub(FZ_P256_PUB);
    const wp_key *keys[3] = {NULL, ed, ec};
    for (int i = 0; i < 3; i++) {
        wp_err e = {0};
        wp_sig_info info;
        int rc = wp_sig_check(keys[i], (const char *)data, size, "manifest.sig", FZ_MANIFEST,
                              strlen(FZ_MANIFEST), &info, &e);
        fz_check_refusal(rc, &e);
        if (!rc && keys[i] && !info.verified) abort();
        if (rc && info.verified) abort();
    }
    return 0;
}
