/* test_trust_modelsign.c — OpenSSF model-signing interoperability both ways
 * (docs/signing.md §8): `wpack sign --dsse` of an exported checkpoint into
 * model.sig and `wpack verify` of it; bundles made here the way model-signing
 * makes them (its statement serialisation: indented, its own key order;
 * keyid ""), signed through OpenSSL EVP with keys wpack never saw, over a
 * wpack build: they verify, and tampered ones do not. */
#include <dirent.h>
#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <sys/stat.h>

#include <cjson/cJSON.h>

#include "trust/manifest.h"
#include "trust/trust.h"
#include "tests/harness.h"

/* ---- helpers ------------------------------------------------------------------------ */

static int make_build(const char *dir)
{
    char out[8192];
    int rc = wpt_run(out, sizeof out, "%s convert %s/hf -o %s --profile reference -q", wpt_wpack(), WPT_TINY, dir);
    CHECKF(rc == 0, "convert: %s", out);
    return rc;
}

static void hexs(const unsigned char *d, size_t n, char *out)
{
    for (size_t i = 0; i < n; i++) sprintf(out + 2 * i, "%02x", d[i]);
}

static int file_sha256(const char *path, unsigned char d[32])
{
    uint8_t *data = NULL;
    size_t n = 0;
    if (wpt_read_file(path, &data, &n)) return -1;
    unsigned int dl = 0;
    int ok = EVP_Digest(data, n, d, &dl, EVP_sha256(), NULL) == 1;
    free(data);
    return ok ? 0 : -1;
}

static char *b64(const unsigned char *p, size_t n)
{
    char *s = malloc(4 * ((n + 2) / 3) + 1);
    if (s) EVP_EncodeBlock((unsigned char *)s, p, (int)n);
    return s;
}

/* A key made here, not by wpack: PKCS#8 private PEM (0600) and SPKI public PEM. */
static EVP_PKEY *test_key(const char *base, int ed25519)
{
    EVP_PKEY *k = ed25519 ? EVP_PKEY_Q_keygen(NULL, NULL, "ED25519") : EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    if (!k) return NULL;
    FILE *f = fopen(wpt_path("%s.pem", base), "w");
    FILE *g = fopen(wpt_path("%s.pub.pem", base), "w");
    int ok = f && g && PEM_write_PrivateKey(f, k, NULL, NULL, 0, NULL, NULL) == 1 && PEM_write_PUBKEY(g, k) == 1;
    if (f) fclose(f);
    if (g) fclose(g);
    chmod(wpt_path("%s.pem", base), 0600);
    if (!ok) {
        EVP_PKEY_free(k);
        return NULL;
    }
    return k;
}

/* The regular files at the top of dir except `skip` (two names), sorted. */
static size_t list_top(const char *dir, char names[][256], size_t cap, const char *skip1, const char *skip2)
{
    DIR *d = opendir(dir);
    size_t n = 0;
    struct dirent *de;
    while (d && (de = readdir(d)) && n < cap) {
        if (de->d_name[0] == '.' || (skip1 && !strcmp(de->d_name, skip1)) || (skip2 && !strcmp(de->d_name, skip2)))
            continue;
        snprintf(names[n++], 256, "%s", de->d_name);
    }
    if (d) closedir(d);
    for (size_t i = 1; i < n; i++)   /* insertion sort: a handful of names */
        for (size_t j = i; j > 0 && strcmp(names[j - 1], names[j]) > 0; j--) {
            char t[256];
            memcpy(t, names[j], 256);
            memcpy(names[j], names[j - 1], 256);
            memcpy(names[j - 1], t, 256);
        }
    return n;
}

/* The statement as model-signing's Python signer serialises it (protobuf
 * MessageToJson: two-space indent, ": " and ",\n" separators, the proto's
 * field order, serialization before resources): never wpack's canonical
 * form.  `wrong` names a resource whose digest is replaced (validly signed
 * over a wrong digest); `omit` one left out. */
static char *foreign_statement(const char *dir, const char *model, const char *wrong, const char *omit)
{
    char names[32][256];
    size_t n = list_top(dir, names, 32, "manifest.dsse.json", "manifest.sig");
    size_t cap = 65536, at = 0;
    char *s = malloc(cap);
    unsigned char all[32 * 32];
    size_t nd = 0;
    char res[16384];
    size_t ra = 0;
    for (size_t i = 0; i < n; i++) {
        if (omit && !strcmp(names[i], omit)) continue;
        unsigned char d[32];
        if (file_sha256(wpt_path("%s/%s", dir, names[i]), d)) return NULL;
        if (wrong && !strcmp(names[i], wrong)) d[0] ^= 0x01;
        memcpy(all + 32 * nd++, d, 32);
        char hex[65];
        hexs(d, 32, hex);
        ra += (size_t)snprintf(res + ra, sizeof res - ra,
                               "%s      {\n        \"algorithm\": \"sha256\",\n        \"digest\": \"%s\",\n"
                               "        \"name\": \"%s\"\n      }",
                               ra ? ",\n" : "", hex, names[i]);
    }
    unsigned char root[32];
    unsigned int rl = 0;
    EVP_Digest(all, 32 * nd, root, &rl, EVP_sha256(), NULL);
    char rhex[65];
    hexs(root, 32, rhex);
    at += (size_t)snprintf(s + at, cap - at,
                           "{\n  \"_type\": \"https://in-toto.io/Statement/v1\",\n  \"subject\": [\n    {\n"
                           "      \"name\": \"%s\",\n      \"digest\": {\n        \"sha256\": \"%s\"\n      }\n"
                           "    }\n  ],\n  \"predicateType\": \"https://model_signing/signature/v1.0\",\n"
                           "  \"predicate\": {\n    \"serialization\": {\n      \"method\": \"files\",\n"
                           "      \"hash_type\": \"sha256\",\n      \"allow_symlinks\": false,\n"
                           "      \"ignore_paths\": [\n        \"manifest.dsse.json\",\n        \"manifest.sig\",\n"
                           "        \".git\",\n        \".gitattributes\",\n        \".github\",\n"
                           "        \".gitignore\"\n      ]\n    },\n    \"resources\": [\n%s\n    ]\n  }\n}",
                           model, rhex, res);
    return s;
}

/* A Sigstore bundle as model-signing's key signer writes it: keyid "",
 * publicKey.hint = SHA-256 of the public key PEM, empty tlogEntries,
 * indented. */
static char *foreign_bundle(EVP_PKEY *k, int ed25519, const char *stmt)
{
    static const char type[] = "application/vnd.in-toto+json";
    size_t sl = strlen(stmt);
    size_t pl = sl + 64 + sizeof type;
    char *pae = malloc(pl);
    int pn = snprintf(pae, pl, "DSSEv1 %zu %s %zu ", strlen(type), type, sl);
    memcpy(pae + pn, stmt, sl);
    EVP_MD_CTX *cx = EVP_MD_CTX_new();
    size_t siglen = 0;
    unsigned char *sig = NULL;
    int ok = EVP_DigestSignInit(cx, NULL, ed25519 ? NULL : EVP_sha256(), NULL, k) == 1 &&
             EVP_DigestSign(cx, NULL, &siglen, (unsigned char *)pae, (size_t)pn + sl) == 1 &&
             (sig = malloc(siglen)) && EVP_DigestSign(cx, sig, &siglen, (unsigned char *)pae, (size_t)pn + sl) == 1;
    EVP_MD_CTX_free(cx);
    free(pae);
    if (!ok) return NULL;
    BIO *bio = BIO_new(BIO_s_mem());
    PEM_write_bio_PUBKEY(bio, k);
    char *pem = NULL;
    long pemlen = BIO_get_mem_data(bio, &pem);
    unsigned char hd[32];
    unsigned int hl = 0;
    EVP_Digest(pem, (size_t)pemlen, hd, &hl, EVP_sha256(), NULL);
    BIO_free(bio);
    char hint[65];
    hexs(hd, 32, hint);
    char *s64 = b64(sig, siglen), *p64 = b64((const unsigned char *)stmt, sl);
    free(sig);
    size_t cap = strlen(p64) + strlen(s64) + 1024;
    char *doc = malloc(cap);
    snprintf(doc, cap,
             "{\n  \"mediaType\": \"application/vnd.dev.sigstore.bundle.v0.3+json\",\n"
             "  \"verificationMaterial\": {\n    \"publicKey\": {\n      \"hint\": \"%s\"\n    },\n"
             "    \"tlogEntries\": []\n  },\n  \"dsseEnvelope\": {\n    \"payload\": \"%s\",\n"
             "    \"payloadType\": \"%s\",\n    \"signatures\": [\n      {\n        \"sig\": \"%s\",\n"
             "        \"keyid\": \"\"\n      }\n    ]\n  }\n}\n",
             hint, p64, type, s64);
    free(s64);
    free(p64);
    return doc;
}

static int write_str(const char *path, const char *s) { return wpt_write_file(path, s, strlen(s)); }

/* A foreign bundle over dir written to dir/manifest.dsse.json. */
static int put_foreign(const char *dir, EVP_PKEY *k, int ed25519, const char *wrong, const char *omit)
{
    char *st = foreign_statement(dir, "b", wrong, omit);
    char *doc = st ? foreign_bundle(k, ed25519, st) : NULL;
    int rc = doc ? write_str(wpt_path("%s/manifest.dsse.json", dir), doc) : -1;
    free(st);
    free(doc);
    return rc;
}

/* Replace the first occurrence of `from` by `to` (same length) in a file. */
static int edit_file(const char *path, const char *from, const char *to)
{
    uint8_t *d = NULL;
    size_t n = 0;
    if (wpt_read_file(path, &d, &n)) return -1;
    char *s = malloc(n + 1);
    memcpy(s, d, n);
    s[n] = 0;
    free(d);
    char *p = strstr(s, from);
    int rc = -1;
    if (p && strlen(from) == strlen(to)) {
        memcpy(p, to, strlen(to));
        rc = wpt_write_file(path, s, n);
    }
    free(s);
    return rc;
}

static cJSON *verify_json(const char *args)
{
    static char out[65536];
    wpt_run(out, sizeof out, "%s verify %s --json 2>/dev/null", wpt_wpack(), args);
    return cJSON_Parse(out);
}

static const char *jpath_str(const cJSON *j, const char *a, const char *b)
{
    const cJSON *x = cJSON_GetObjectItem(j, a);
    if (b) x = cJSON_GetObjectItem(x, b);
    return cJSON_IsString(x) ? x->valuestring : "";
}

static int jpath_true(const cJSON *j, const char *a, const char *b)
{
    const cJSON *x = cJSON_GetObjectItem(j, a);
    if (b) x = cJSON_GetObjectItem(x, b);
    return cJSON_IsTrue(x);
}

/* ---- an exported checkpoint, signed by wpack, checked by wpack ----------------------- */

TEST(trust_msig_checkpoint_sign_verify)
{
    const char *t = wpt_tmpdir(), *w = wpt_wpack();
    static char out[65536];
    REQUIRE(make_build(wpt_path("%s/B", t)) == 0);
    REQUIRE(wpt_run(out, sizeof out, "%s export %s/B -o %s/E -q && %s keygen --ecdsa -o %s/k -q && "
                    "%s keygen --ecdsa -o %s/other -q", w, t, t, w, t, w, t) == 0);
    /* plain sign: a checkpoint carries a model-signing bundle only */
    CHECK_EQ_INT(wpt_run(out, sizeof out, "%s sign %s/E -k %s/k.pem", w, t, t), 2);
    CHECK_CONTAINS(out, "no manifest.json: a checkpoint directory is signed with an OpenSSF model-signing bundle "
                        "(model.sig) only (see --dsse)");
    CHECK_EQ_INT(wpt_run(out, sizeof out, "%s sign %s/E -k %s/k.pem --dsse", w, t, t), 0);
    CHECK_CONTAINS(out, "(model.sig: OpenSSF model-signing bundle)");
    CHECK_EQ_INT(wpt_run(out, sizeof out, "%s verify %s/E --key %s/k.pub.pem", w, t, t), 0);
    CHECK_CONTAINS(out, "signature: model-signing bundle verified (model.sig, wpack's layout)");
    cJSON *j = verify_json(wpt_path("%s/E --key %s/k.pub.pem", t, t));
    REQUIRE(j);
    CHECK(!strcmp(jpath_str(j, "kind", NULL), "checkpoint"));
    CHECK(jpath_true(j, "dsse", "verified"));
    CHECK(!strcmp(jpath_str(j, "dsse", "signer"), "wpack"));
    cJSON_Delete(j);

    /* the statement, decoded independently: every file of the export with the
     * digest coreutils computes, model.sig and the git paths ignored */
    uint8_t *doc = NULL;
    size_t n = 0;
    REQUIRE(wpt_read_file(wpt_path("%s/E/model.sig", t), &doc, &n) == 0);
    cJSON *b = cJSON_ParseWithLength((const char *)doc, n);
    free(doc);
    REQUIRE(b);
    const char *p64 = jpath_str(b, "dsseEnvelope", "payload");
    size_t pl = strlen(p64);
    unsigned char *pay = calloc(1, pl + 1);
    int dl = EVP_DecodeBlock(pay, (const unsigned char *)p64, (int)pl);
    REQUIRE(dl > 0);
    while (dl > 0 && pay[dl - 1] == 0) dl--;   /* EVP_DecodeBlock counts the padding */
    cJSON *st = cJSON_ParseWithLength((const char *)pay, (size_t)dl);
    free(pay);
    REQUIRE(st);
    const cJSON *pred = cJSON_GetObjectItem(st, "predicate");
    const cJSON *ra = cJSON_GetObjectItem(pred, "resources");
    char names[32][256];
    size_t nf = list_top(wpt_path("%s/E", t), names, 32, "model.sig", NULL);
    CHECK_EQ_INT(cJSON_GetArraySize(ra), (long long)nf);
    CHECK(nf >= 2);
    for (size_t i = 0; i < nf && i < (size_t)cJSON_GetArraySize(ra); i++) {
        const cJSON *r = cJSON_GetArrayItem(ra, (int)i);
        CHECK(!strcmp(jpath_str(r, "name", NULL), names[i]));
        REQUIRE(wpt_run(out, sizeof out, "sha256sum %s/E/%s", t, names[i]) == 0);
        CHECKF(!strncmp(out, jpath_str(r, "digest", NULL), 64), "%s: %s vs sha256sum %.64s", names[i],
               jpath_str(r, "digest", NULL), out);
    }
    const cJSON *ser = cJSON_GetObjectItem(pred, "serialization");
    CHECK(!strcmp(jpath_str(ser, "method", NULL), "files"));
    CHECK(cJSON_IsFalse(cJSON_GetObjectItem(ser, "allow_symlinks")));
    char *ign = cJSON_PrintUnformatted(cJSON_GetObjectItem(ser, "ignore_paths"));
    CHECK_CONTAINS(ign, "\"model.sig\"");
    CHECK_CONTAINS(ign, "\".git\"");
    free(ign);
    CHECK(!strcmp(jpath_str(st, "predicateType", NULL), "https://model_signing/signature/v1.0"));
    cJSON_Delete(st);
    cJSON_Delete(b);

    /* a key, or integrity only on request */
    CHECK_EQ_INT(wpt_run(out, sizeof out, "%s verify %s/E", w, t), 1);
    CHECK_CONTAINS(out, "signed (model.sig) but no public key was given");
    CHECK_EQ_INT(wpt_run(out, sizeof out, "%s verify %s/E --allow-unsigned", w, t), 0);
    CHECK_EQ_INT(wpt_run(out, sizeof out, "%s verify %s/E --key %s/other.pub.pem", w, t, t), 1);
    CHECK_CONTAINS(out, "is not the given key's");
    /* git files are ignored (model-signing's defaults) */
    REQUIRE(wpt_run(out, sizeof out, "mkdir -p %s/E/.git && echo x > %s/E/.git/HEAD && echo y > %s/E/.gitattributes",
                    t, t, t) == 0);
    CHECK_EQ_INT(wpt_run(out, sizeof out, "%s verify %s/E --key %s/k.pub.pem", w, t, t), 0);
    /* a tampered shard, an added file, a removed file, a symlink */
    REQUIRE(wpt_run(out, sizeof out, "cp -a %s/E %s/T && printf Z | dd of=%s/T/model.safetensors bs=1 seek=4000 "
                    "conv=notrunc 2>/dev/null", t, t, t) == 0);
    CHECK_EQ_INT(wpt_run(out, sizeof out, "%s verify %s/T --key %s/k.pub.pem", w, t, t), 1);
    CHECK_CONTAINS(out, wpt_path("%s/T/model.safetensors: sha256 differs from the digest signed in %s/T/model.sig",
                                 t, t));
    REQUIRE(wpt_run(out, sizeof out, "cp -a %s/E %s/A && echo hi > %s/A/README.md && mkdir %s/A/sub && "
                    "echo x > %s/A/sub/.hidden", t, t, t, t, t) == 0);
    CHECK_EQ_INT(wpt_run(out, sizeof out, "%s verify %s/A --key %s/k.pub.pem", w, t, t), 1);
    CHECK_CONTAINS(out, wpt_path("%s/A/README.md: not covered by the signature", t));
    CHECK_CONTAINS(out, wpt_path("%s/A/sub/.hidden: not covered by the signature", t));
    REQUIRE(wpt_run(out, sizeof out, "cp -a %s/E %s/R && rm %s/R/config.json", t, t, t) == 0);
    CHECK_EQ_INT(wpt_run(out, sizeof out, "%s verify %s/R --key %s/k.pub.pem", w, t, t), 1);
    CHECK_CONTAINS(out, wpt_path("%s/R/config.json: missing (signed in %s/R/model.sig)", t, t));
    REQUIRE(wpt_run(out, sizeof out, "cp -a %s/E %s/L && ln -s config.json %s/L/link.json", t, t, t) == 0);
    CHECK_EQ_INT(wpt_run(out, sizeof out, "%s verify %s/L --key %s/k.pub.pem", w, t, t), 1);
    CHECK_CONTAINS(out, wpt_path("%s/L/link.json: symbolic link", t));
    /* signing again after an edit covers the new file */
    CHECK_EQ_INT(wpt_run(out, sizeof out, "%s sign %s/A -k %s/k.pem --dsse -q && %s verify %s/A --key %s/k.pub.pem",
                         w, t, t, w, t, t), 0);
    /* a symlink is refused when signing (allow_symlinks is false): the
     * directory cannot be signed as it is (2, like unreadable input) */
    CHECK_EQ_INT(wpt_run(out, sizeof out, "%s sign %s/L -k %s/k.pem --dsse", w, t, t), 2);
    CHECK_CONTAINS(out, "link.json: symbolic link");
}

/* ---- a bundle made the way model-signing makes it, over a wpack build ------------------- */

static void foreign_over_build(int ed25519)
{
    const char *t = wpt_tmpdir(), *w = wpt_wpack();
    static char out[65536];
    const char *B = wpt_path("%s/b", t);
    char Bs[4096];
    snprintf(Bs, sizeof Bs, "%s", B);
    REQUIRE(make_build(Bs) == 0);
    EVP_PKEY *k = test_key(wpt_path("%s/fk", t), ed25519);
    REQUIRE(k);
    REQUIRE(put_foreign(Bs, k, ed25519, NULL, NULL) == 0);
    /* the statement really is not wpack's canonical form, and keyid is "" */
    uint8_t *doc = NULL;
    size_t n = 0;
    REQUIRE(wpt_read_file(wpt_path("%s/manifest.dsse.json", Bs), &doc, &n) == 0);
    CHECK(memchr(doc, '\n', n) != NULL);
    free(doc);

    CHECK_EQ_INT(wpt_run(out, sizeof out, "%s verify %s --key %s/fk.pub.pem", w, Bs, t), 0);
    CHECK_CONTAINS(out, "signature: model-signing bundle verified (manifest.dsse.json, another signer's layout)");
    cJSON *j = verify_json(wpt_path("%s --key %s/fk.pub.pem", Bs, t));
    REQUIRE(j);
    CHECK(jpath_true(j, "ok", NULL));
    CHECK(!strcmp(jpath_str(j, "kind", NULL), "build"));
    CHECK(jpath_true(j, "dsse", "verified"));
    CHECK(!strcmp(jpath_str(j, "dsse", "signer"), "foreign"));
    CHECK(!jpath_true(j, "signature", "present"));
    cJSON_Delete(j);
    /* without the key: refused, or integrity only on request */
    CHECK_EQ_INT(wpt_run(out, sizeof out, "%s verify %s", w, Bs), 1);
    CHECK_CONTAINS(out, "signed with a model-signing bundle (manifest.dsse.json) but no public key was given");
    CHECK_EQ_INT(wpt_run(out, sizeof out, "%s verify %s --allow-unsigned", w, Bs), 0);
    /* another key */
    EVP_PKEY *k2 = test_key(wpt_path("%s/k2", t), ed25519);
    REQUIRE(k2);
    CHECK_EQ_INT(wpt_run(out, sizeof out, "%s verify %s --key %s/k2.pub.pem", w, Bs, t), 1);
    EVP_PKEY_free(k2);

    /* tampered payload, tampered signature: re-read, one base64 character changed */
    REQUIRE(wpt_run(out, sizeof out, "cp %s/manifest.dsse.json %s/good.json", Bs, t) == 0);
    REQUIRE(edit_file(wpt_path("%s/manifest.dsse.json", Bs), "\"payload\": \"ewo", "\"payload\": \"fwo") == 0);
    CHECK_EQ_INT(wpt_run(out, sizeof out, "%s verify %s --key %s/fk.pub.pem", w, Bs, t), 1);
    REQUIRE(wpt_run(out, sizeof out, "cp %s/good.json %s/manifest.dsse.json", t, Bs) == 0);
    {
        uint8_t *d = NULL;
        size_t dn = 0;
        REQUIRE(wpt_read_file(wpt_path("%s/manifest.dsse.json", Bs), &d, &dn) == 0);
        char *p = strstr((char *)d, "\"sig\": \"");
        REQUIRE(p);
        p += 8 + 10;
        *p = *p == 'A' ? 'B' : 'A';
        REQUIRE(wpt_write_file(wpt_path("%s/manifest.dsse.json", Bs), d, dn) == 0);
        free(d);
    }
    CHECK_EQ_INT(wpt_run(out, sizeof out, "%s verify %s --key %s/fk.pub.pem", w, Bs, t), 1);
    CHECK_CONTAINS(out, "no DSSE signature verifies");
    /* a validly signed statement with a wrong digest: for manifest.json
     * (hashed directly) and for the container (against the manifest) */
    REQUIRE(put_foreign(Bs, k, ed25519, "manifest.json", NULL) == 0);
    CHECK_EQ_INT(wpt_run(out, sizeof out, "%s verify %s --key %s/fk.pub.pem", w, Bs, t), 1);
    CHECK_CONTAINS(out, wpt_path("%s/manifest.json: sha256 differs from the digest signed in %s/manifest.dsse.json",
                                 Bs, Bs));
    char names[32][256];
    size_t nf = list_top(Bs, names, 32, "manifest.dsse.json", "manifest.sig");
    const char *wpk = NULL;
    for (size_t i = 0; i < nf; i++)
        if (strstr(names[i], ".wpk")) wpk = names[i];
    REQUIRE(wpk);
    REQUIRE(put_foreign(Bs, k, ed25519, wpk, NULL) == 0);
    CHECK_EQ_INT(wpt_run(out, sizeof out, "%s verify %s --key %s/fk.pub.pem", w, Bs, t), 1);
    CHECK_CONTAINS(out, wpt_path("%s/manifest.dsse.json: signed sha256 ", Bs));
    CHECK_CONTAINS(out, wpt_path(" of %s differs from the manifest's", wpk));
    /* a statement that leaves a file out */
    REQUIRE(put_foreign(Bs, k, ed25519, NULL, "manifest.json") == 0);
    CHECK_EQ_INT(wpt_run(out, sizeof out, "%s verify %s --key %s/fk.pub.pem", w, Bs, t), 1);
    CHECK_CONTAINS(out, wpt_path("%s/manifest.json: not covered by the signature", Bs));
    /* the bytes of a container changed under a good bundle: the whole-file
     * digest (forced deep) and the tensor digests catch it */
    REQUIRE(put_foreign(Bs, k, ed25519, NULL, NULL) == 0);
    CHECK_EQ_INT(wpt_run(out, sizeof out, "%s verify %s --key %s/fk.pub.pem", w, Bs, t), 0);
    REQUIRE(wpt_run(out, sizeof out, "cp -a %s %s/c2 && printf Z | dd of=%s/c2/%s bs=1 seek=3000000 conv=notrunc "
                    "2>/dev/null", Bs, t, t, wpk) == 0);
    CHECK_EQ_INT(wpt_run(out, sizeof out, "%s verify %s/c2 --key %s/fk.pub.pem", w, t, t), 1);
    CHECK_CONTAINS(out, wpt_path("%s/c2/%s: sha256 of the whole file", t, wpk));
    /* a field wpack does not check is refused, not ignored */
    REQUIRE(wpt_run(out, sizeof out, "cp %s/manifest.dsse.json %s/good.json", Bs, t) == 0);
    REQUIRE(edit_file(wpt_path("%s/manifest.dsse.json", Bs), "\"tlogEntries\"", "\"tlogEntriez\"") == 0);
    CHECK_EQ_INT(wpt_run(out, sizeof out, "%s verify %s --key %s/fk.pub.pem", w, Bs, t), 1);
    CHECK_CONTAINS(out, "field \"tlogEntriez\" is not one wpack checks");
    REQUIRE(wpt_run(out, sizeof out, "cp %s/good.json %s/manifest.dsse.json", t, Bs) == 0);

    /* beside wpack's own manifest.sig made with the same key: no pairing of
     * key ids (the bundle names none), both checked */
    REQUIRE(wpt_run(out, sizeof out, "rm %s/manifest.dsse.json && %s sign %s -k %s/fk.pem -q", Bs, w, Bs, t) == 0);
    REQUIRE(put_foreign(Bs, k, ed25519, NULL, NULL) == 0);
    CHECK_EQ_INT(wpt_run(out, sizeof out, "%s verify %s --key %s/fk.pub.pem", w, Bs, t), 0);
    CHECK_CONTAINS(out, "DSSE bundle verified (another signer's layout)");
    EVP_PKEY_free(k);
}

TEST(trust_msig_foreign_ecdsa_bundle_over_build) { foreign_over_build(0); }
TEST(trust_msig_foreign_ed25519_bundle_over_build) { foreign_over_build(1); }

/* Unit level: wp_msig_bundle_signer tells wpack's bundle (keyid = key id)
 * from another signer's (keyid "", null or absent). */
TEST(trust_msig_bundle_signer_kinds)
{
    static const char *const docs[] = {
        "{\"dsseEnvelope\":{\"signatures\":[{\"keyid\":\"ab\",\"sig\":\"x\"}]}}",
        "{\"dsseEnvelope\":{\"signatures\":[{\"keyid\":\"\",\"sig\":\"x\"}]}}",
        "{\"dsseEnvelope\":{\"signatures\":[{\"keyid\":null,\"sig\":\"x\"}]}}",
        "{\"dsseEnvelope\":{\"signatures\":[{\"sig\":\"x\"}]}}",
        "{\"dsseEnvelope\":{}}",
        "not json",
    };
    static const int want[] = {1, 0, 0, 0, -1, -1};
    for (size_t i = 0; i < sizeof docs / sizeof *docs; i++)
        CHECKF(wp_msig_bundle_signer(docs[i], strlen(docs[i])) == want[i], "doc %zu", i);
}
