/* test_sign.c — keys, signatures, base64, manifest.sig, DSSE and in-toto. */
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>
#include <openssl/pem.h>
#include <sys/stat.h>

#include "trust/manifest.h"
#include "tests/harness.h"

static void sign_roundtrip(wp_key_alg alg)
{
    wp_err e = {0};
    wp_key *k = NULL, *other = NULL;
    REQUIRE(wp_key_generate(alg, &k, &e) == 0);
    REQUIRE(wp_key_generate(alg, &other, &e) == 0);
    CHECK_EQ_INT(wp_key_algorithm(k), alg);
    static const char msg[] = "the canonical manifest bytes";
    uint8_t *sig = NULL;
    size_t siglen = 0;
    REQUIRE(wp_sign_bytes(k, msg, sizeof msg - 1, &sig, &siglen, &e) == 0);
    if (alg == WP_KEY_ED25519) CHECK_EQ_INT(siglen, 64);   /* RFC 8032 */
    else CHECK(siglen >= 8 && siglen <= 72 && sig[0] == 0x30);   /* DER SEQUENCE */
    CHECK_EQ_INT(wp_verify_bytes(k, msg, sizeof msg - 1, sig, siglen, "m", &e), 0);
    /* one flipped message bit, one flipped signature bit, another key */
    char bad[sizeof msg];
    memcpy(bad, msg, sizeof msg);
    bad[3] ^= 1;
    wp_err_clear(&e);
    CHECK_EQ_INT(wp_verify_bytes(k, bad, sizeof msg - 1, sig, siglen, "m", &e), WP_EVERIFY);
    CHECK_CONTAINS(e.msg, "does not verify");
    sig[siglen / 2] ^= 0x10;
    wp_err_clear(&e);
    CHECK_EQ_INT(wp_verify_bytes(k, msg, sizeof msg - 1, sig, siglen, "m", &e), WP_EVERIFY);
    sig[siglen / 2] ^= 0x10;
    wp_err_clear(&e);
    CHECK_EQ_INT(wp_verify_bytes(other, msg, sizeof msg - 1, sig, siglen, "m", &e), WP_EVERIFY);
    /* a truncated signature is "does not verify", not a crash */
    wp_err_clear(&e);
    CHECK_EQ_INT(wp_verify_bytes(k, msg, sizeof msg - 1, sig, siglen - 1, "m", &e), WP_EVERIFY);
    free(sig);
    wp_key_free(k);
    wp_key_free(other);
}

TEST(trust_sign_ed25519_roundtrip) { sign_roundtrip(WP_KEY_ED25519); }
TEST(trust_sign_ecdsa_roundtrip) { sign_roundtrip(WP_KEY_ECDSA_P256); }

TEST(trust_key_pem_files)
{
    wp_err e = {0};
    wp_key *k = NULL, *priv = NULL, *pub = NULL;
    REQUIRE(wp_key_generate(WP_KEY_ED25519, &k, &e) == 0);
    const char *base = wpt_path("%s/k", wpt_tmpdir());
    REQUIRE(wp_key_write_pair(k, base, 0, &e) == 0);
    struct stat st;
    REQUIRE(stat(wpt_path("%s.pem", base), &st) == 0);
    CHECK_EQ_INT(st.st_mode & 0777, 0600);
    REQUIRE(stat(wpt_path("%s.pub.pem", base), &st) == 0);
    CHECK_EQ_INT(st.st_mode & 0777, 0644);
    /* never silently replaced */
    wp_err_clear(&e);
    CHECK_EQ_INT(wp_key_write_pair(k, base, 0, &e), WP_EEXIST);
    CHECK(!strcmp(e.setting, "force"));
    CHECK_CONTAINS(e.msg, "already exists");
    wp_err_clear(&e);
    REQUIRE(wp_key_load_private(wpt_path("%s.pem", base), &priv, &e) == 0);
    REQUIRE(wp_key_load_public(wpt_path("%s.pub.pem", base), &pub, &e) == 0);
    char a[65], b[65], c[65];
    REQUIRE(wp_key_id(k, a, &e) == 0 && wp_key_id(priv, b, &e) == 0 && wp_key_id(pub, c, &e) == 0);
    CHECK(!strcmp(a, b) && !strcmp(a, c));
    /* key id = SHA-256 of the DER SubjectPublicKeyInfo: Ed25519 SPKI is the
     * fixed 12-byte prefix 302a300506032b6570032100 + the 32-byte key */
    uint8_t *pem = NULL;
    size_t pemlen = 0;
    REQUIRE(wpt_read_file(wpt_path("%s.pub.pem", base), &pem, &pemlen) == 0);
    CHECK(pemlen > 26 && !memcmp(pem, "-----BEGIN PUBLIC KEY-----", 26));
    free(pem);
    uint8_t *sig = NULL;
    size_t siglen = 0;
    REQUIRE(wp_sign_bytes(priv, "x", 1, &sig, &siglen, &e) == 0);
    CHECK_EQ_INT(wp_verify_bytes(pub, "x", 1, sig, siglen, "x", &e), 0);
    /* a public key cannot sign; a private PEM is not a public key */
    free(sig);
    sig = NULL;
    wp_err_clear(&e);
    CHECK_EQ_INT(wp_sign_bytes(pub, "x", 1, &sig, &siglen, &e), WP_EUSAGE);
    wp_key *bad = NULL;
    wp_err_clear(&e);
    CHECK_EQ_INT(wp_key_load_public(wpt_path("%s.pem", base), &bad, &e), WP_EINVAL);
    CHECK_CONTAINS(e.msg, "k.pem");
    wp_key_free(k);
    wp_key_free(priv);
    wp_key_free(pub);
}

TEST(trust_key_id_is_spki_sha256)
{
    /* RFC 8032 test 1 public key; SPKI DER = 302a300506032b6570032100 || key */
    static const char *pem =
        "-----BEGIN PUBLIC KEY-----\n"
        "MCowBQYDK2VwAyEA11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=\n"
        "-----END PUBLIC KEY-----\n";
    wp_err e = {0};
    wp_key *k = NULL;
    REQUIRE(wp_key_public_from_pem(pem, strlen(pem), "rfc8032", &k, &e) == 0);
    CHECK_EQ_INT(wp_key_algorithm(k), WP_KEY_ED25519);
    uint8_t der[44];
    CHECK(wp_unhex("302a300506032b6570032100", der, 12) == 0);
    CHECK(wp_unhex("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a", der + 12, 32) == 0);
    uint8_t d[32];
    char want[65], got[65];
    REQUIRE(wp_sha256_buf(der, sizeof der, d, &e) == 0);
    wp_hex(d, 32, want);
    REQUIRE(wp_key_id(k, got, &e) == 0);
    CHECK(!strcmp(want, got));
    wp_key_free(k);
}

TEST(trust_key_rejects_other_algorithms)
{
    wp_err e = {0};
    EVP_PKEY *rsa = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)1024);
    EVP_PKEY *p384 = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-384");
    REQUIRE(rsa && p384);
    const char *paths[2] = {wpt_path("%s/rsa.pub.pem", wpt_tmpdir()), wpt_path("%s/p384.pub.pem", wpt_tmpdir())};
    EVP_PKEY *keys[2] = {rsa, p384};
    for (int i = 0; i < 2; i++) {
        FILE *f = fopen(paths[i], "w");
        REQUIRE(f);
        PEM_write_PUBKEY(f, keys[i]);
        fclose(f);
        wp_key *k = NULL;
        wp_err_clear(&e);
        CHECK_EQ_INT(wp_key_load_public(paths[i], &k, &e), WP_EINVAL);
        CHECK_CONTAINS(e.msg, i ? "only P-256" : "only Ed25519 and ECDSA P-256");
        CHECK(k == NULL);
    }
    EVP_PKEY_free(rsa);
    EVP_PKEY_free(p384);
}

TEST(trust_base64_rfc4648)
{
    /* RFC 4648 §10 test vectors */
    static const char *in[] = {"", "f", "fo", "foo", "foob", "fooba", "foobar"};
    static const char *out[] = {"", "Zg==", "Zm8=", "Zm9v", "Zm9vYg==", "Zm9vYmE=", "Zm9vYmFy"};
    wp_err e = {0};
    for (int i = 0; i < 7; i++) {
        char *s = wp_base64_encode(in[i], strlen(in[i]), &e);
        REQUIRE(s);
        CHECKF(!strcmp(s, out[i]), "base64(%s) = %s, expected %s", in[i], s, out[i]);
        uint8_t *d = NULL;
        size_t n = 0;
        REQUIRE(wp_base64_decode(s, &d, &n, &e) == 0);
        CHECK(n == strlen(in[i]) && !memcmp(d, in[i], n));
        free(d);
        free(s);
    }
    /* unpadded and URL-safe forms decode too (DSSE: verifiers MUST accept) */
    uint8_t *d = NULL;
    size_t n = 0;
    REQUIRE(wp_base64_decode("Zm9vYg", &d, &n, &e) == 0);
    CHECK(n == 4 && !memcmp(d, "foob", 4));
    free(d);
    REQUIRE(wp_base64_decode("-_8", &d, &n, &e) == 0);   /* = "+/8" */
    CHECK(n == 2 && d[0] == 0xfb && d[1] == 0xff);
    free(d);
    static const char *bad[] = {"Zm9v!", "Z", "Zm9=v", "Zm===", "Zg=", "Zm 9v"};
    for (int i = 0; i < 6; i++) {
        wp_err_clear(&e);
        CHECKF(wp_base64_decode(bad[i], &d, &n, &e) == WP_EINVAL, "accepted \"%s\"", bad[i]);
    }
}

/* spec: DSSE protocol v1.0.0, "Test Vectors" */
#define DSSE_TYPE "http://example.com/HelloWorld"
#define DSSE_BODY "hello world"

TEST(trust_dsse_pae_spec_vector)
{
    wp_err e = {0};
    uint8_t *p = NULL;
    size_t n = 0;
    REQUIRE(wp_dsse_pae(DSSE_TYPE, DSSE_BODY, 11, &p, &n, &e) == 0);
    static const char want[] = "DSSEv1 29 http://example.com/HelloWorld 11 hello world";
    CHECK_EQ_INT(n, sizeof want - 1);
    CHECK(n == sizeof want - 1 && !memcmp(p, want, n));
    free(p);
    /* empty body: the lengths stay decimal without leading zeros */
    REQUIRE(wp_dsse_pae("t", "", 0, &p, &n, &e) == 0);
    CHECK(n == 13 && !memcmp(p, "DSSEv1 1 t 0 ", 13));
    free(p);
}

/* The spec's P-256 public key (decimal X, Y) as a wp_key, via SPKI PEM. */
static wp_key *dsse_spec_key(void)
{
    static const char *X = "46950820868899156662930047687818585632848591499744589407958293238635476079160";
    static const char *Y = "5640078356564379163099075877009565129882514886557779369047442380624545832820";
    BIGNUM *x = NULL, *y = NULL;
    if (!BN_dec2bn(&x, X) || !BN_dec2bn(&y, Y)) return NULL;
    uint8_t pt[65];
    pt[0] = 0x04;   /* uncompressed point */
    BN_bn2binpad(x, pt + 1, 32);
    BN_bn2binpad(y, pt + 33, 32);
    BN_free(x);
    BN_free(y);
    OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
    OSSL_PARAM_BLD_push_utf8_string(bld, OSSL_PKEY_PARAM_GROUP_NAME, "prime256v1", 0);
    OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY, pt, sizeof pt);
    OSSL_PARAM *params = OSSL_PARAM_BLD_to_param(bld);
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_name(NULL, "EC", NULL);
    EVP_PKEY *pkey = NULL;
    if (ctx && EVP_PKEY_fromdata_init(ctx) == 1) EVP_PKEY_fromdata(ctx, &pkey, EVP_PKEY_PUBLIC_KEY, params);
    EVP_PKEY_CTX_free(ctx);
    OSSL_PARAM_free(params);
    OSSL_PARAM_BLD_free(bld);
    if (!pkey) return NULL;
    BIO *b = BIO_new(BIO_s_mem());
    PEM_write_bio_PUBKEY(b, pkey);
    char *data = NULL;
    long n = BIO_get_mem_data(b, &data);
    wp_key *k = NULL;
    wp_err e = {0};
    wp_key_public_from_pem(data, (size_t)n, "dsse-spec", &k, &e);
    BIO_free(b);
    EVP_PKEY_free(pkey);
    return k;
}

TEST(trust_dsse_spec_envelope_verifies)
{
    /* The envelope exactly as published (raw r||s signature, standard base64). */
    static const char *env =
        "{\"payload\": \"aGVsbG8gd29ybGQ=\",\n"
        " \"payloadType\": \"http://example.com/HelloWorld\",\n"
        " \"signatures\": [{\"sig\": \"A3JqsQGtVsJ2O2xqrI5IcnXip5GToJ3F+FnZ+O88SjtR6rDAajabZKciJTfUiHqJPcIAriEGAHTVeCUjW2JIZA==\"}]}";
    wp_key *k = dsse_spec_key();
    REQUIRE(k);
    CHECK_EQ_INT(wp_key_algorithm(k), WP_KEY_ECDSA_P256);
    wp_err e = {0};
    char *payload = NULL, *type = NULL;
    size_t plen = 0;
    CHECK_EQ_INT(wp_dsse_bundle_verify(k, env, strlen(env), "spec", &payload, &plen, &type, &e), 0);
    CHECK(payload && plen == 11 && !strcmp(payload, DSSE_BODY));
    CHECK(type && !strcmp(type, DSSE_TYPE));
    free(payload);
    free(type);
    /* the same signature over a different payload type must not verify:
     * the type is authenticated through PAE */
    char *env2 = strdup(env);
    memcpy(strstr(env2, "HelloWorld"), "HelloWorle", 10);
    wp_err_clear(&e);
    CHECK_EQ_INT(wp_dsse_bundle_verify(k, env2, strlen(env2), "spec", &payload, &plen, &type, &e), WP_EVERIFY);
    free(env2);
    wp_key_free(k);
}

static void bundle_roundtrip(wp_key_alg alg)
{
    wp_err e = {0};
    wp_key *k = NULL, *other = NULL;
    REQUIRE(wp_key_generate(alg, &k, &e) == 0 && wp_key_generate(alg, &other, &e) == 0);
    static const char body[] = "{\"_type\":\"x\"}";
    char *doc = NULL;
    size_t len = 0;
    REQUIRE(wp_dsse_bundle_make(k, WP_INTOTO_PAYLOAD_TYPE, body, sizeof body - 1, &doc, &len, &e) == 0);
    cJSON *j = cJSON_Parse(doc);
    REQUIRE(j);
    CHECK(!strcmp(cJSON_GetObjectItem(j, "mediaType")->valuestring, WP_SIGSTORE_BUNDLE_TYPE));
    cJSON *env = cJSON_GetObjectItem(j, "dsseEnvelope");
    CHECK(!strcmp(cJSON_GetObjectItem(env, "payloadType")->valuestring, WP_INTOTO_PAYLOAD_TYPE));
    cJSON_Delete(j);
    char *payload = NULL;
    size_t plen = 0;
    CHECK_EQ_INT(wp_dsse_bundle_verify(k, doc, len, "b", &payload, &plen, NULL, &e), 0);
    CHECK(payload && plen == sizeof body - 1 && !memcmp(payload, body, plen));
    free(payload);
    payload = NULL;
    wp_err_clear(&e);
    CHECK_EQ_INT(wp_dsse_bundle_verify(other, doc, len, "b", &payload, &plen, NULL, &e), WP_EVERIFY);
    CHECK_CONTAINS(e.msg, "not the given key");
    /* change one payload character: base64 of a different body */
    char *p = strstr(doc, "\"payload\":\"");
    REQUIRE(p);
    p += 11;
    *p = *p == 'e' ? 'f' : 'e';
    wp_err_clear(&e);
    CHECK_EQ_INT(wp_dsse_bundle_verify(k, doc, len, "b", &payload, &plen, NULL, &e), WP_EVERIFY);
    CHECK_CONTAINS(e.msg, "no DSSE signature verifies");
    free(doc);
    wp_key_free(k);
    wp_key_free(other);
}

TEST(trust_dsse_bundle_ed25519) { bundle_roundtrip(WP_KEY_ED25519); }
TEST(trust_dsse_bundle_ecdsa) { bundle_roundtrip(WP_KEY_ECDSA_P256); }

TEST(trust_intoto_statement_fields)
{
    wp_resource r[3] = {{"model-b.wpk", {0}}, {"a.wpk", {0}}, {"manifest.json", {0}}};
    for (int i = 0; i < 3; i++) memset(r[i].sha256, 0x11 * (i + 1), 32);
    wp_err e = {0};
    char *st = NULL;
    size_t len = 0;
    REQUIRE(wp_intoto_statement("tiny-a", r, 3, &st, &len, &e) == 0);
    cJSON *j = cJSON_Parse(st);
    REQUIRE(j);
    CHECK(!strcmp(cJSON_GetObjectItem(j, "_type")->valuestring, "https://in-toto.io/Statement/v1"));
    CHECK(!strcmp(cJSON_GetObjectItem(j, "predicateType")->valuestring, "https://model_signing/signature/v1.0"));
    cJSON *subj = cJSON_GetArrayItem(cJSON_GetObjectItem(j, "subject"), 0);
    CHECK(!strcmp(cJSON_GetObjectItem(subj, "name")->valuestring, "tiny-a"));
    /* subject digest = SHA-256(d(a.wpk) || d(manifest.json) || d(model-b.wpk)), names sorted */
    uint8_t cat[96], root[32];
    memset(cat, 0x22, 32);
    memset(cat + 32, 0x33, 32);
    memset(cat + 64, 0x11, 32);
    REQUIRE(wp_sha256_buf(cat, 96, root, &e) == 0);
    char hex[65];
    wp_hex(root, 32, hex);
    CHECK(!strcmp(cJSON_GetObjectItem(cJSON_GetObjectItem(subj, "digest"), "sha256")->valuestring, hex));
    cJSON *pred = cJSON_GetObjectItem(j, "predicate");
    cJSON *res = cJSON_GetObjectItem(pred, "resources");
    CHECK_EQ_INT(cJSON_GetArraySize(res), 3);
    CHECK(!strcmp(cJSON_GetObjectItem(cJSON_GetArrayItem(res, 0), "name")->valuestring, "a.wpk"));
    CHECK(!strcmp(cJSON_GetObjectItem(cJSON_GetArrayItem(res, 2), "name")->valuestring, "model-b.wpk"));
    CHECK(!strcmp(cJSON_GetObjectItem(cJSON_GetArrayItem(res, 0), "algorithm")->valuestring, "sha256"));
    cJSON *ser = cJSON_GetObjectItem(pred, "serialization");
    CHECK(!strcmp(cJSON_GetObjectItem(ser, "method")->valuestring, "files"));
    CHECK(!strcmp(cJSON_GetObjectItem(ser, "hash_type")->valuestring, "sha256"));
    CHECK(cJSON_IsFalse(cJSON_GetObjectItem(ser, "allow_symlinks")));
    cJSON_Delete(j);
    /* the checker accepts it, and catches a changed digest, a missing and an extra file */
    CHECK_EQ_INT(wp_intoto_check(st, len, "st", r, 3, &e), 0);
    r[0].sha256[5] ^= 1;
    wp_err_clear(&e);
    CHECK_EQ_INT(wp_intoto_check(st, len, "st", r, 3, &e), WP_EVERIFY);
    CHECK_CONTAINS(e.msg, "model-b.wpk");
    r[0].sha256[5] ^= 1;
    wp_err_clear(&e);
    CHECK_EQ_INT(wp_intoto_check(st, len, "st", r, 2, &e), WP_EVERIFY);
    CHECK_CONTAINS(e.msg, "manifest.json");
    wp_resource r4[4];
    memcpy(r4, r, sizeof r);
    r4[3] = (wp_resource){"zz.wpk", {0}};
    wp_err_clear(&e);
    CHECK_EQ_INT(wp_intoto_check(st, len, "st", r4, 4, &e), WP_EVERIFY);
    CHECK_CONTAINS(e.msg, "does not cover file zz.wpk");
    free(st);
}

TEST(trust_sig_document)
{
    wp_err e = {0};
    wp_key *k = NULL, *other = NULL;
    REQUIRE(wp_key_generate(WP_KEY_ED25519, &k, &e) == 0 && wp_key_generate(WP_KEY_ECDSA_P256, &other, &e) == 0);
    static const char man[] = "{\"files\":[],\"format\":\"wpack-manifest\"}";
    char *doc = NULL;
    size_t len = 0;
    REQUIRE(wp_sig_make(k, man, sizeof man - 1, &doc, &len, &e) == 0);
    cJSON *j = cJSON_Parse(doc);
    REQUIRE(j);
    char kid[65];
    REQUIRE(wp_key_id(k, kid, &e) == 0);
    CHECK(!strcmp(cJSON_GetObjectItem(j, "keyid")->valuestring, kid));
    CHECK(!strcmp(cJSON_GetObjectItem(j, "algorithm")->valuestring, "ed25519"));
    cJSON_Delete(j);
    wp_sig_info info;
    CHECK_EQ_INT(wp_sig_check(k, doc, len, "manifest.sig", man, sizeof man - 1, &info, &e), 0);
    CHECK(info.verified);
    CHECK_EQ_INT(wp_sig_check(NULL, doc, len, "manifest.sig", man, sizeof man - 1, &info, &e), 0);
    CHECK(!info.verified && !strcmp(info.keyid, kid));
    wp_err_clear(&e);
    CHECK_EQ_INT(wp_sig_check(other, doc, len, "manifest.sig", man, sizeof man - 1, &info, &e), WP_EVERIFY);
    CHECK_CONTAINS(e.msg, "not by the given");
    wp_err_clear(&e);
    CHECK_EQ_INT(wp_sig_check(k, doc, len, "manifest.sig", man, sizeof man - 2, &info, &e), WP_EVERIFY);
    CHECK_CONTAINS(e.msg, "signs a different manifest");
    /* not canonical (a space) */
    char *sp = malloc(len + 2);
    sp[0] = ' ';
    memcpy(sp + 1, doc, len + 1);
    wp_err_clear(&e);
    CHECK_EQ_INT(wp_sig_check(k, sp, len + 1, "manifest.sig", man, sizeof man - 1, &info, &e), WP_EINVAL);
    CHECK_CONTAINS(e.msg, "canonical");
    free(sp);
    free(doc);
    wp_key_free(k);
    wp_key_free(other);
}

/* ---- the signature swap (docs/signing.md §3.3) ----------------------------------- */

/* tiny-a converted to T/b and signed by ka with a bundle; keys ka, kb. */
static int signed_tiny(void)
{
    char out[8192];
    const char *t = wpt_tmpdir(), *w = wpt_wpack();
    int rc = wpt_run(out, sizeof out,
                     "%s convert %s/hf -o %s/b --profile reference -q && %s keygen -o %s/ka -q && "
                     "%s keygen -o %s/kb -q && %s sign %s/b -k %s/ka.pem --dsse -q",
                     w, WPT_TINY, t, w, t, w, t, w, t, t);
    CHECKF(rc == 0, "fixture: %s", out);
    return rc;
}

/* A sign killed between its steps leaves temporaries in the build: verify
 * and pack say so (not silently skipped), the build still verifies with one
 * of the keys, and the next sign or `wpack clean` removes them. */
TEST(trust_sign_interrupted_leftovers_reported_and_removed)
{
    REQUIRE(signed_tiny() == 0);
    const char *t = wpt_tmpdir(), *w = wpt_wpack();
    static char out[65536];
    /* killed right before manifest.sig is renamed into place: both new files
     * are written, the old bundle is gone, the old signature stands */
    CHECK_EQ_INT(wpt_run(out, sizeof out, "WPACK_FAULT=rename:1:kill %s sign %s/b -k %s/kb.pem --dsse", w, t, t), 137);
    CHECK_EQ_INT(wpt_run(out, sizeof out, "ls -A %s/b | grep '^\\.' | sed 's/\\.tmp\\..*//' | tr '\\n' ' '", t), 0);
    CHECK(!strcmp(out, ".manifest.dsse.json .manifest.sig "));
    CHECK_EQ_INT(wpt_run(out, sizeof out, "%s verify %s/b --key %s/kb.pub.pem", w, t, t), 1);
    CHECK_EQ_INT(wpt_run(out, sizeof out, "%s verify %s/b --key %s/ka.pub.pem", w, t, t), 0);
    CHECK_CONTAINS(out, wpt_path("wpack verify: %s/b: temporary files of an unfinished wpack run, not part of the build: "
                                 ".manifest.dsse.json.tmp.", t));
    CHECK_CONTAINS(out, ", which is gone), .manifest.sig.tmp.");
    CHECK_CONTAINS(out, "ignored (not in the manifest): .manifest.dsse.json.tmp.");
    CHECK_EQ_INT(wpt_run(out, sizeof out, "%s verify %s/b --key %s/ka.pub.pem --json 2>/dev/null", w, t, t), 0);
    cJSON *j = cJSON_Parse(out);
    REQUIRE(j);
    CHECK_EQ_INT(cJSON_GetArraySize(cJSON_GetObjectItem(j, "extra_files")), 2);
    cJSON *notice = cJSON_GetObjectItem(j, "notice");
    CHECK_CONTAINS(cJSON_IsString(notice) ? notice->valuestring : "", "not part of the build");
    cJSON_Delete(j);
    /* -q: the notice is not printed, the check still passes */
    CHECK_EQ_INT(wpt_run(out, sizeof out, "%s verify %s/b --key %s/ka.pub.pem -q 2>&1 >/dev/null", w, t, t), 0);
    CHECK(!strcmp(out, ""));
    /* pack says so too, and does not ship them */
    CHECK_EQ_INT(wpt_run(out, sizeof out, "%s pack %s/b -o %s/b.wpkz 2>&1 >/dev/null", w, t, t), 0);
    CHECK_CONTAINS(out, "not part of the build (not packed): .manifest.dsse.json.tmp.");
    CHECK_EQ_INT(wpt_run(out, sizeof out, "%s unpack %s/b.wpkz -o %s/u -q >/dev/null && ls -A %s/u", w, t, t, t), 0);
    CHECK(!strcmp(out, "manifest.json\nmanifest.sig\nmodel.wpk\n"));
    /* the next sign removes them and says so */
    CHECK_EQ_INT(wpt_run(out, sizeof out, "%s sign %s/b -k %s/kb.pem --dsse", w, t, t), 0);
    CHECK_CONTAINS(out, "wpack sign: removed 2 stale temporaries (");
    CHECK_CONTAINS(out, wpt_path(") from %s/b, left by wpack runs that are gone", t));
    CHECK_EQ_INT(wpt_run(out, sizeof out, "ls -A %s/b", t), 0);
    CHECK(!strcmp(out, "manifest.dsse.json\nmanifest.json\nmanifest.sig\nmodel.wpk\n"));
    CHECK_EQ_INT(wpt_run(out, sizeof out, "%s verify %s/b --key %s/kb.pub.pem --json", w, t, t), 0);
    CHECK_CONTAINS(out, "\"verified\":\ttrue,\n\t\t\"signer\":\t\"wpack\"\n\t}");   /* the bundle, wpack's */
    /* and `wpack clean BUILD` does the same on request */
    CHECK_EQ_INT(wpt_run(out, sizeof out, "WPACK_FAULT=rename:2:kill %s sign %s/b -k %s/ka.pem --dsse", w, t, t), 137);
    CHECK_EQ_INT(wpt_run(out, sizeof out, "%s verify %s/b --key %s/ka.pub.pem", w, t, t), 0);   /* new key, no bundle yet */
    CHECK_CONTAINS(out, "temporary file of an unfinished wpack run, not part of the build: .manifest.dsse.json.tmp.");
    CHECK_EQ_INT(wpt_run(out, sizeof out, "%s clean %s/b", w, t), 0);
    CHECK_CONTAINS(out, wpt_path("%s/b: removed 1 stale temporary, ", t));
    CHECK_EQ_INT(wpt_run(out, sizeof out, "ls -A %s/b", t), 0);
    CHECK(!strcmp(out, "manifest.json\nmanifest.sig\nmodel.wpk\n"));
}

/* manifest.sig and manifest.dsse.json must be one signature: a bundle made
 * with another key than manifest.sig's fails verify, with a key or without. */
TEST(trust_verify_signature_pair_must_match)
{
    REQUIRE(signed_tiny() == 0);
    const char *t = wpt_tmpdir(), *w = wpt_wpack();
    static char out[65536];
    CHECK_EQ_INT(wpt_run(out, sizeof out, "cp -a %s/b %s/c && %s sign %s/c -k %s/kb.pem --dsse -q && "
                         "cp %s/c/manifest.sig %s/b/manifest.sig", t, t, w, t, t, t, t), 0);
    CHECK_EQ_INT(wpt_run(out, sizeof out, "%s verify %s/b --key %s/kb.pub.pem", w, t, t), 1);
    CHECK_CONTAINS(out, wpt_path("wpack verify: %s/b/manifest.dsse.json: made with key ", t));
    CHECK_CONTAINS(out, "..., manifest.sig with key ");
    CHECK_CONTAINS(out, "...: not one signature (sign the build again)");
    CHECK_EQ_INT(wpt_run(out, sizeof out, "%s verify %s/b --allow-unsigned", w, t), 1);
    CHECK_CONTAINS(out, "not one signature");
    /* the pair as sign leaves it verifies, with and without the key */
    CHECK_EQ_INT(wpt_run(out, sizeof out, "%s verify %s/c --key %s/kb.pub.pem", w, t, t), 0);
    CHECK_EQ_INT(wpt_run(out, sizeof out, "%s verify %s/c --allow-unsigned", w, t), 0);
}
