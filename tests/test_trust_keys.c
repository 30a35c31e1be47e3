/* test_trust_keys.c — loading the private key `sign` uses: a key file open to
 * group or others is refused with the chmod fix, and a public key given in
 * its place is named as such. */
#include <sys/stat.h>

#include "trust/manifest.h"
#include "trust/trust.h"
#include "tests/harness.h"

/* BASE.pem / BASE.pub.pem in the scratch dir, written as keygen does. */
static const char *make_pair(const char *name, wp_key_alg alg)
{
    wp_err e = {0};
    wp_key *k = NULL;
    const char *base = wpt_path("%s/%s", wpt_tmpdir(), name);
    if (wp_key_generate(alg, &k, &e) || wp_key_write_pair(k, base, 0, &e)) {
        wp_key_free(k);
        return NULL;
    }
    wp_key_free(k);
    return base;
}

TEST(trust_keys_private_mode_refused)
{
    const char *base = make_pair("k", WP_KEY_ED25519);
    REQUIRE(base);
    char priv[4096];
    snprintf(priv, sizeof priv, "%s.pem", base);
    wp_err e = {0};
    wp_key *k = NULL;
    REQUIRE(wp_key_load_private(priv, &k, &e) == 0);   /* keygen's 0600 */
    wp_key_free(k);
    k = NULL;
    static const mode_t bad[] = {0640, 0604, 0644, 0660, 0602, 0620};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        REQUIRE(chmod(priv, bad[i]) == 0);
        wp_err_clear(&e);
        CHECKF(wp_key_load_private(priv, &k, &e) == WP_EUSAGE, "mode %o accepted", (unsigned)bad[i]);
        CHECK(k == NULL);
        CHECK_CONTAINS(e.msg, priv);
        CHECK_CONTAINS(e.msg, "group or others");
        CHECK_CONTAINS(e.msg, "chmod 600");
        CHECK(strstr(e.msg, "--") == NULL);   /* no flag in a library message */
        char mode[16];
        snprintf(mode, sizeof mode, "mode %04o", (unsigned)bad[i]);
        CHECK_CONTAINS(e.msg, mode);
    }
    /* owner-only modes are fine, read-only too */
    static const mode_t good[] = {0600, 0400};
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        REQUIRE(chmod(priv, good[i]) == 0);
        wp_err_clear(&e);
        CHECKF(wp_key_load_private(priv, &k, &e) == 0, "mode %o: %s", (unsigned)good[i], e.msg);
        wp_key_free(k);
        k = NULL;
    }
    /* the public half stays world-readable: verify does not care */
    wp_err_clear(&e);
    CHECK_EQ_INT(wp_key_load_public(wpt_path("%s.pub.pem", base), &k, &e), 0);
    wp_key_free(k);
}

TEST(trust_keys_public_key_named)
{
    const char *base = make_pair("k", WP_KEY_ECDSA_P256);
    REQUIRE(base);
    wp_err e = {0};
    wp_key *k = NULL;
    const char *pub = wpt_path("%s.pub.pem", base);
    CHECK_EQ_INT(wp_key_load_private(pub, &k, &e), WP_EINVAL);
    CHECK(k == NULL);
    CHECK_CONTAINS(e.msg, pub);
    CHECK_CONTAINS(e.msg, "this is a public key");
    CHECK(strstr(e.msg, "PKCS#8") == NULL);
    /* something that is no key at all keeps the old wording */
    const char *junk = wpt_path("%s/junk.pem", wpt_tmpdir());
    REQUIRE(wpt_write_file(junk, "hello\n", 6) == 0);
    REQUIRE(chmod(junk, 0600) == 0);
    wp_err_clear(&e);
    CHECK_EQ_INT(wp_key_load_private(junk, &k, &e), WP_EINVAL);
    CHECK_CONTAINS(e.msg, "not a PEM private key (PKCS#8)");
    wp_err_clear(&e);
    CHECK(wp_key_load_private(wpt_path("%s/absent.pem", wpt_tmpdir()), &k, &e) != 0);
    CHECK_CONTAINS(e.msg, "absent.pem: cannot open");
}

/* The command: `sign` refuses both before touching the build, exit 2, one line. */
TEST(trust_keys_cli_sign_refuses)
{
    const char *base = make_pair("k", WP_KEY_ED25519);
    REQUIRE(base);
    static char out[4096];
    const char *b = wpt_path("%s/build", wpt_tmpdir());
    REQUIRE(wpt_run(out, sizeof out, "%s convert %s/hf -o %s", wpt_wpack(), WPT_TINY, b) == 0);
    REQUIRE(chmod(wpt_path("%s.pem", base), 0644) == 0);
    int rc = wpt_run(out, sizeof out, "%s sign %s --key %s.pem", wpt_wpack(), b, base);
    CHECK_EQ_INT(rc, 2);
    CHECK_CONTAINS(out, "chmod 600");
    CHECK_CONTAINS(out, "k.pem");
    int lines = 0;
    for (const char *p = out; *p; p++) lines += *p == '\n';
    CHECK_EQ_INT(lines, 1);
    struct stat st;
    CHECK(stat(wpt_path("%s/manifest.sig", b), &st) != 0);   /* nothing signed */
    rc = wpt_run(out, sizeof out, "%s sign %s --key %s.pub.pem", wpt_wpack(), b, base);
    CHECK_EQ_INT(rc, 2);
    CHECK_CONTAINS(out, "this is a public key");
    CHECK(stat(wpt_path("%s/manifest.sig", b), &st) != 0);
    REQUIRE(chmod(wpt_path("%s.pem", base), 0600) == 0);
    rc = wpt_run(out, sizeof out, "%s sign %s --key %s.pem", wpt_wpack(), b, base);
    CHECKF(rc == 0, "exit %d: %s", rc, out);
    CHECK(stat(wpt_path("%s/manifest.sig", b), &st) == 0);
}
