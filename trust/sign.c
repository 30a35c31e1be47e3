/* sign.c — keys, signatures, manifest.sig, DSSE and the in-toto statement
 * (docs/signing.md §3-4).  OpenSSL 3 EVP only; no home-made cryptography. */
#include "trust/manifest.h"
#include "trust/trust.h"
#include "trust/trust_priv.h"
#include "common/outdir.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

struct wp_key {
    EVP_PKEY *pkey;
    wp_key_alg alg;
    int has_private;
};

/* The most specific OpenSSL reason, for one-line messages. */
static const char *ossl_reason(void)
{
    unsigned long code = ERR_peek_last_error();
    const char *r = code ? ERR_reason_error_string(code) : NULL;
    return r ? r : "unknown OpenSSL error";
}

static int ossl_fail(wp_err *e, int code, const char *what, const char *op)
{
    int rc = wp_fail(e, code, "%s: %s (%s)", what, op, ossl_reason());
    ERR_clear_error();
    return rc;
}

/* Accept exactly the two algorithms wpack signs with. */
static int classify(EVP_PKEY *p, const char *what, wp_key_alg *alg, wp_err *e)
{
    if (EVP_PKEY_is_a(p, "ED25519")) {
        *alg = WP_KEY_ED25519;
        return 0;
    }
    if (EVP_PKEY_is_a(p, "EC")) {
        char group[64] = "";
        size_t gl = 0;
        if (EVP_PKEY_get_utf8_string_param(p, OSSL_PKEY_PARAM_GROUP_NAME, group, sizeof group, &gl) == 1 &&
            (!strcmp(group, "prime256v1") || !strcmp(group, "P-256") || !strcmp(group, "secp256r1"))) {
            *alg = WP_KEY_ECDSA_P256;
            return 0;
        }
        return wp_fail(e, WP_EINVAL, "%s: EC key on curve %s: only P-256 is accepted", what,
                       group[0] ? group : "(unknown)");
    }
    return wp_fail(e, WP_EINVAL, "%s: %s key: only Ed25519 and ECDSA P-256 keys are accepted", what,
                   EVP_PKEY_get0_type_name(p) ? EVP_PKEY_get0_type_name(p) : "unknown");
}

/* A private key file carries its public half too (PKCS#8 with an EC public
 * key): both must belong together, or what is signed would not verify with
 * the public key (and key id) derived from the same file. */
static int keypair_ok(EVP_PKEY *p, const char *what, wp_err *e)
{
    EVP_PKEY_CTX *cx = EVP_PKEY_CTX_new_from_pkey(NULL, p, NULL);
    int ok = cx && EVP_PKEY_pairwise_check(cx) == 1;
    EVP_PKEY_CTX_free(cx);
    return ok ? 0 : ossl_fail(e, WP_EINVAL, what, "private key whose public half does not match it");
}

static wp_key *wrap(EVP_PKEY *p, wp_key_alg alg, int priv, wp_err *e)
{
    wp_key *k = wp_calloc(1, sizeof *k, e);
    if (!k) {
        EVP_PKEY_free(p);
        return NULL;
    }
    k->pkey = p;
    k->alg = alg;
    k->has_private = priv;
    return k;
}

void wp_key_free(wp_key *k)
{
    if (!k) return;
    EVP_PKEY_free(k->pkey);
    free(k);
}

wp_key_alg wp_key_algorithm(const wp_key *k) { return k->alg; }

const char *wp_key_alg_name(wp_key_alg a)
{
    return a == WP_KEY_ED25519 ? "ed25519" : a == WP_KEY_ECDSA_P256 ? "ecdsa-p256-sha256" : "?";
}

int wp_key_generate(wp_key_alg alg, wp_key **out, wp_err *e)
{
    *out = NULL;
    EVP_PKEY *p = alg == WP_KEY_ED25519      ? EVP_PKEY_Q_keygen(NULL, NULL, "ED25519")
                  : alg == WP_KEY_ECDSA_P256 ? EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256")
                                             : NULL;
    if (!p) return ossl_fail(e, WP_EINVAL, "keygen", "key generation failed");
    *out = wrap(p, alg, 1, e);
    return *out ? 0 : WP_ENOMEM;
}

/* PEM text of a key, via a memory BIO. */
static int to_pem(const wp_key *k, int priv, char **pem, size_t *len, wp_err *e)
{
    *pem = NULL;
    BIO *b = BIO_new(BIO_s_mem());
    if (!b) return wp_oom(e, "OpenSSL BIO");
    int ok = priv ? PEM_write_bio_PrivateKey(b, k->pkey, NULL, NULL, 0, NULL, NULL)
                  : PEM_write_bio_PUBKEY(b, k->pkey);
    char *data = NULL;
    long n = ok ? BIO_get_mem_data(b, &data) : 0;
    int rc = 0;
    if (!ok || n <= 0) {
        rc = ossl_fail(e, WP_EINVAL, "key", "cannot encode as PEM");
    } else if ((*pem = wp_malloc((size_t)n + 1, e))) {
        memcpy(*pem, data, (size_t)n);
        (*pem)[n] = 0;
        if (len) *len = (size_t)n;
    } else {
        rc = WP_ENOMEM;
    }
    BIO_free(b);
    return rc;
}

int wp_key_public_pem(const wp_key *k, char **pem, size_t *len, wp_err *e)
{
    return to_pem(k, 0, pem, len, e);
}

/* What --force may replace: a PEM key (private or public), by its label. */
static int is_pem_key(const char *path)
{
    return wp_file_starts_with(path, "-----BEGIN PRIVATE KEY-----", 27) ||
           wp_file_starts_with(path, "-----BEGIN PUBLIC KEY-----", 26) ||
           wp_file_starts_with(path, "-----BEGIN ENCRYPTED PRIVATE KEY-----", 37);
}

static int write_key_file(const char *path, const char *pem, size_t n, mode_t mode, int force, wp_err *e)
{
    wp_out o;
    int rc = wp_out_create_own(&o, path, force, is_pem_key, "a PEM key", e);
    if (rc) return rc;
    /* set the mode before a single secret byte lands in the file */
    if (fchmod(o.fd, mode) != 0) {
        rc = wp_fail_errno(e, "%s: cannot set mode %o", path, (unsigned)mode);
        wp_out_abort(&o);
        return rc;
    }
    rc = wp_out_write(&o, pem, n, e);
    if (rc) {
        wp_out_abort(&o);
        return rc;
    }
    return wp_out_commit(&o, e);
}

int wp_key_write_pair(const wp_key *k, const char *base, int force, wp_err *e)
{
    if (!k->has_private) return wp_fail(e, WP_EUSAGE, "%s: key has no private half", base);
    char priv[4096], pub[4096];
    if (snprintf(priv, sizeof priv, "%s.pem", base) >= (int)sizeof priv ||
        snprintf(pub, sizeof pub, "%s.pub.pem", base) >= (int)sizeof pub)
        return wp_fail(e, WP_EUSAGE, "%s: path too long", base);
    struct stat st;
    if (!force && (stat(priv, &st) == 0 || stat(pub, &st) == 0))
        return wp_fail_setting(e, WP_EEXIST, "force", "%s: already exists; not replaced",
                               stat(priv, &st) == 0 ? priv : pub);
    /* force replaces a key pair, never another file: both are checked before
     * either is written */
    for (int i = 0; force && i < 2; i++) {
        const char *p = i ? pub : priv;
        if (lstat(p, &st) == 0 && (!S_ISREG(st.st_mode) || !is_pem_key(p)))
            return wp_fail(e, WP_EEXIST, "%s: exists and is not a PEM key; not replaced", p);
    }
    /* what killed runs left there (a half-written key among them) goes first */
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", priv);
    wp_sweep_quiet(dirname(dir), NULL);
    char *a = NULL, *b = NULL;
    size_t an = 0, bn = 0;
    int rc = to_pem(k, 1, &a, &an, e);
    if (!rc) rc = to_pem(k, 0, &b, &bn, e);
    if (!rc) rc = write_key_file(priv, a, an, 0600, force, e);
    if (!rc) rc = write_key_file(pub, b, bn, 0644, force, e);
    if (a) OPENSSL_cleanse(a, an);
    free(a);
    free(b);
    return rc;
}

/* A private key file must be the owner's alone: the check ssh makes of its
 * identity files.  Returns 0, or WP_EUSAGE naming the mode and the fix. */
static int private_mode_ok(int fd, const char *path, wp_err *e)
{
    struct stat st;
    if (fstat(fd, &st) != 0) return wp_fail_errno(e, "%s: cannot stat", path);
    if (st.st_mode & (S_IRWXG | S_IRWXO))
        return wp_fail(e, WP_EUSAGE,
                       "%s: private key is readable or writable by group or others (mode %04o); "
                       "restrict it to its owner: chmod 600 %s",
                       path, (unsigned)(st.st_mode & 07777), path);
    return 0;
}

/* Read the whole key file from an open descriptor (at most 1 MiB). */
static int read_key_fd(int fd, const char *path, char **out, size_t *len, wp_err *e)
{
    size_t cap = 4096, n = 0;
    char *buf = wp_malloc(cap, e);
    if (!buf) return WP_ENOMEM;
    for (;;) {
        if (n == cap) {
            if (cap >= (1u << 20)) {
                OPENSSL_cleanse(buf, n);
                free(buf);
                return wp_fail(e, WP_EINVAL, "%s: larger than 1 MiB: not a PEM key", path);
            }
            char *nb = wp_malloc(cap * 2, e);
            if (!nb) {
                OPENSSL_cleanse(buf, n);
                free(buf);
                return WP_ENOMEM;
            }
            memcpy(nb, buf, n);
            OPENSSL_cleanse(buf, n);
            free(buf);
            buf = nb;
            cap *= 2;
        }
        ssize_t r = read(fd, buf + n, cap - n);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) {
            OPENSSL_cleanse(buf, n);
            free(buf);
            return wp_fail_errno(e, "%s: cannot read", path);
        }
        if (r == 0) break;
        n += (size_t)r;
    }
    *out = buf;
    *len = n;
    return 0;
}

/* A PEM private key: the bytes must parse as one (any PEM OpenSSL reads as a
 * private key); a public key given in its place is named as such, and the file
 * must not be open to group or others (checked on the descriptor read). */
static int load_pem(const char *path, int priv, wp_key **out, wp_err *e)
{
    *out = NULL;
    char *buf = NULL;
    size_t n = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return wp_fail_errno(e, "%s: cannot open", path);
    int rc = read_key_fd(fd, path, &buf, &n, e);
    if (rc) {
        close(fd);
        return rc;
    }
    BIO *b = BIO_new_mem_buf(buf, (int)n);
    EVP_PKEY *p = b ? (priv ? PEM_read_bio_PrivateKey(b, NULL, NULL, NULL) : PEM_read_bio_PUBKEY(b, NULL, NULL, NULL))
                    : NULL;
    BIO_free(b);
    int is_pub = 0;
    if (!p && priv) {   /* a public key where the private one belongs? */
        ERR_clear_error();
        BIO *pb = BIO_new_mem_buf(buf, (int)n);
        EVP_PKEY *pp = pb ? PEM_read_bio_PUBKEY(pb, NULL, NULL, NULL) : NULL;
        BIO_free(pb);
        is_pub = pp != NULL;
        EVP_PKEY_free(pp);
    }
    OPENSSL_cleanse(buf, n);
    free(buf);
    if (!p) {
        close(fd);
        if (is_pub) {
            ERR_clear_error();
            return wp_fail(e, WP_EINVAL,
                           "%s: this is a public key; signing needs the private key it was made with "
                           "(keygen writes NAME.pem beside NAME.pub.pem)",
                           path);
        }
        return ossl_fail(e, WP_EINVAL, path,
                         priv ? "not a PEM private key (PKCS#8)" : "not a PEM public key (SubjectPublicKeyInfo)");
    }
    rc = priv ? private_mode_ok(fd, path, e) : 0;
    close(fd);
    wp_key_alg alg;
    if (!rc) rc = classify(p, path, &alg, e);
    if (!rc && priv) rc = keypair_ok(p, path, e);
    if (rc) {
        EVP_PKEY_free(p);
        return rc;
    }
    *out = wrap(p, alg, priv, e);
    return *out ? 0 : WP_ENOMEM;
}

int wp_key_load_private(const char *path, wp_key **out, wp_err *e) { return load_pem(path, 1, out, e); }
int wp_key_load_public(const char *path, wp_key **out, wp_err *e) { return load_pem(path, 0, out, e); }

int wp_key_public_from_pem(const char *pem, size_t len, const char *what, wp_key **out, wp_err *e)
{
    *out = NULL;
    BIO *b = BIO_new_mem_buf(pem, (int)len);
    EVP_PKEY *p = b ? PEM_read_bio_PUBKEY(b, NULL, NULL, NULL) : NULL;
    BIO_free(b);
    if (!p) return ossl_fail(e, WP_EINVAL, what, "not a PEM public key (SubjectPublicKeyInfo)");
    wp_key_alg alg;
    int rc = classify(p, what, &alg, e);
    if (rc) {
        EVP_PKEY_free(p);
        return rc;
    }
    *out = wrap(p, alg, 0, e);
    return *out ? 0 : WP_ENOMEM;
}

int wp_key_id(const wp_key *k, char hex[2 * WP_SHA256_LEN + 1], wp_err *e)
{
    unsigned char *der = NULL;
    int n = i2d_PUBKEY(k->pkey, &der);
    if (n <= 0) return ossl_fail(e, WP_EINVAL, "key", "cannot encode public key as DER");
    uint8_t d[WP_SHA256_LEN];
    int rc = wp_sha256_buf(der, (size_t)n, d, e);
    OPENSSL_free(der);
    if (!rc) wp_hex(d, WP_SHA256_LEN, hex);
    return rc;
}

/* Ed25519 is "pure": no digest (NULL md); ECDSA P-256 hashes with SHA-256. */
static const EVP_MD *md_for(const wp_key *k) { return k->alg == WP_KEY_ED25519 ? NULL : EVP_sha256(); }

int wp_sign_bytes(const wp_key *k, const void *msg, size_t n, uint8_t **sig, size_t *siglen, wp_err *e)
{
    *sig = NULL;
    if (!k->has_private) return wp_fail(e, WP_EUSAGE, "sign: the key is a public key");
    EVP_MD_CTX *c = EVP_MD_CTX_new();
    size_t len = 0;
    int rc = 0;
    if (!c || EVP_DigestSignInit(c, NULL, md_for(k), NULL, k->pkey) != 1 ||
        EVP_DigestSign(c, NULL, &len, msg, n) != 1) {
        rc = ossl_fail(e, WP_EINVAL, "sign", "cannot initialise signing");
    } else if (!(*sig = wp_malloc(len, e))) {
        rc = WP_ENOMEM;
    } else if (EVP_DigestSign(c, *sig, &len, msg, n) != 1) {
        rc = ossl_fail(e, WP_EINVAL, "sign", "signing failed");
        free(*sig);
        *sig = NULL;
    } else {
        *siglen = len;
    }
    EVP_MD_CTX_free(c);
    return rc;
}

/* ECDSA signatures are DER (X9.62) when wpack writes them; a 64-byte raw
 * r||s (IEEE P1363, what the DSSE spec's own test vector uses) is accepted
 * too by re-encoding it as DER. */
static int raw_p256_ok(const wp_key *k, const void *msg, size_t n, const uint8_t *sig, size_t siglen)
{
    if (k->alg != WP_KEY_ECDSA_P256 || siglen != 64) return 0;
    ECDSA_SIG *es = ECDSA_SIG_new();
    BIGNUM *r = BN_bin2bn(sig, 32, NULL), *s = BN_bin2bn(sig + 32, 32, NULL);
    if (!es || !r || !s || ECDSA_SIG_set0(es, r, s) != 1) {
        ECDSA_SIG_free(es);
        BN_free(r);
        BN_free(s);
        return 0;
    }
    unsigned char *der = NULL;
    int dn = i2d_ECDSA_SIG(es, &der);
    ECDSA_SIG_free(es);
    EVP_MD_CTX *c = EVP_MD_CTX_new();
    int ok = dn > 0 && c && EVP_DigestVerifyInit(c, NULL, EVP_sha256(), NULL, k->pkey) == 1 &&
             EVP_DigestVerify(c, der, (size_t)dn, msg, n) == 1;
    EVP_MD_CTX_free(c);
    OPENSSL_free(der);
    ERR_clear_error();
    return ok;
}

int wp_verify_bytes(const wp_key *k, const void *msg, size_t n, const uint8_t *sig, size_t siglen,
                    const char *what, wp_err *e)
{
    EVP_MD_CTX *c = EVP_MD_CTX_new();
    if (!c) return wp_oom(e, "OpenSSL EVP_MD_CTX");
    int rc = 0;
    if (EVP_DigestVerifyInit(c, NULL, md_for(k), NULL, k->pkey) != 1) {
        rc = ossl_fail(e, WP_EINVAL, what, "cannot initialise verification");
    } else if (EVP_DigestVerify(c, sig, siglen, msg, n) != 1 && !raw_p256_ok(k, msg, n, sig, siglen)) {
        /* 0 = bad signature, <0 = malformed (e.g. bad DER): both mean "no" */
        ERR_clear_error();
        rc = wp_fail(e, WP_EVERIFY, "%s: %s signature does not verify with the given key", what,
                     wp_key_alg_name(k->alg));
    }
    EVP_MD_CTX_free(c);
    return rc;
}

/* ---- base64 ------------------------------------------------------------------ */

char *wp_base64_encode(const void *p, size_t n, wp_err *e)
{
    if (n > (size_t)1 << 30) {
        wp_fail(e, WP_EUSAGE, "base64: %zu bytes is too much", n);
        return NULL;
    }
    char *out = wp_malloc(4 * ((n + 2) / 3) + 1, e);
    if (out) EVP_EncodeBlock((unsigned char *)out, p, (int)n);
    return out;
}

int wp_base64_decode(const char *s, uint8_t **out, size_t *n, wp_err *e)
{
    *out = NULL;
    size_t len = strlen(s);
    if (len > (size_t)1 << 30) return wp_fail(e, WP_EINVAL, "base64: input too long");
    /* normalise URL-safe to standard and restore the padding EVP_DecodeBlock needs */
    char *t = wp_malloc(len + 4, e);
    if (!t) return WP_ENOMEM;
    size_t m = 0, pad = 0;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (c == '-') c = '+';
        else if (c == '_') c = '/';
        if (c == '=') {
            pad++;
        } else if (pad || !((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                             c == '+' || c == '/')) {
            free(t);
            return wp_fail(e, WP_EINVAL, "base64: invalid character at position %zu", i);
        }
        t[m++] = c;
    }
    size_t data = m - pad;
    if (pad > 2 || data % 4 == 1 || (pad && (data + pad) % 4)) {
        free(t);
        return wp_fail(e, WP_EINVAL, "base64: bad length or padding");
    }
    while (m % 4) t[m++] = '=', pad++;
    t[m] = 0;
    uint8_t *b = wp_malloc(m / 4 * 3 + 1, e);
    if (!b) {
        free(t);
        return WP_ENOMEM;
    }
    int r = EVP_DecodeBlock(b, (unsigned char *)t, (int)m);
    free(t);
    if (r < 0 || (size_t)r < pad) {
        free(b);
        return wp_fail(e, WP_EINVAL, "base64: cannot decode");
    }
    *out = b;
    *n = (size_t)r - pad;   /* EVP_DecodeBlock counts the padding as zero bytes */
    return 0;
}

/* ---- helpers the trust/ sources share (trust_priv.h) ------------------------ */

const char *wp_jstr(const cJSON *o, const char *k)
{
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsString(it) ? it->valuestring : NULL;
}

int wp_is_hex64(const char *s)
{
    if (!s || strlen(s) != 64) return 0;
    for (; *s; s++)
        if (!((*s >= '0' && *s <= '9') || (*s >= 'a' && *s <= 'f'))) return 0;
    return 1;
}

int wp_b64_canonical(const char *s)
{
    uint8_t *d = NULL;
    size_t n = 0;
    wp_err e = {0};
    if (wp_base64_decode(s, &d, &n, &e)) return 0;
    char *again = wp_base64_encode(d, n, &e);
    int ok = again && !strcmp(again, s);
    free(again);
    free(d);
    return ok;
}

/* ---- manifest.sig ----------------------------------------------------------- */

int wp_sig_make(const wp_key *k, const void *manifest, size_t n, char **doc, size_t *len, wp_err *e)
{
    *doc = NULL;
    char keyid[65], mhex[65];
    uint8_t md[WP_SHA256_LEN];
    int rc = wp_key_id(k, keyid, e);
    if (!rc) rc = wp_sha256_buf(manifest, n, md, e);
    if (rc) return rc;
    wp_hex(md, WP_SHA256_LEN, mhex);
    uint8_t *sig = NULL;
    size_t siglen = 0;
    rc = wp_sign_bytes(k, manifest, n, &sig, &siglen, e);
    if (rc) return rc;
    char *b64 = wp_base64_encode(sig, siglen, e);
    free(sig);
    if (!b64) return WP_ENOMEM;
    cJSON *o = cJSON_CreateObject();
    int ok = o && cJSON_AddStringToObject(o, "algorithm", wp_key_alg_name(k->alg)) &&
             cJSON_AddStringToObject(o, "format", "wpack-signature") &&
             cJSON_AddStringToObject(o, "keyid", keyid) && cJSON_AddStringToObject(o, "manifest_sha256", mhex) &&
             cJSON_AddStringToObject(o, "signature", b64) && cJSON_AddNumberToObject(o, "version", 1);
    free(b64);
    rc = ok ? wp_json_canonical(o, "manifest.sig", doc, len, e) : wp_oom(e, "signature document");
    cJSON_Delete(o);
    return rc;
}

int wp_sig_check(const wp_key *k, const char *doc, size_t doclen, const char *what, const void *manifest,
                 size_t n, wp_sig_info *info, wp_err *e)
{
    memset(info, 0, sizeof *info);
    cJSON *o = NULL;
    int rc = wp_json_parse_canonical(doc, doclen, what, &o, e);
    if (rc) return rc;
    static const char *const keys[] = {"algorithm", "format", "keyid", "manifest_sha256", "signature", "version"};
    size_t nk = 0;
    for (const cJSON *c = cJSON_IsObject(o) ? o->child : NULL; c; c = c->next, nk++) {
        int known = 0;
        for (size_t i = 0; i < sizeof keys / sizeof *keys; i++) known |= !strcmp(c->string, keys[i]);
        if (!known) {
            rc = wp_fail(e, WP_EINVAL, "%s: unknown key \"%s\"", what, c->string);
            goto out;
        }
    }
    const char *alg = wp_jstr(o, "algorithm"), *fmt = wp_jstr(o, "format"), *keyid = wp_jstr(o, "keyid");
    const char *mhex = wp_jstr(o, "manifest_sha256"), *b64 = wp_jstr(o, "signature");
    const cJSON *ver = cJSON_GetObjectItemCaseSensitive(o, "version");
    if (nk != sizeof keys / sizeof *keys || !alg || !fmt || !keyid || !mhex || !b64 || !cJSON_IsNumber(ver)) {
        rc = wp_fail(e, WP_EINVAL, "%s: expected the keys algorithm, format, keyid, manifest_sha256, signature, version",
                     what);
        goto out;
    }
    if (strcmp(fmt, "wpack-signature") || ver->valuedouble != 1) {
        rc = wp_fail(e, WP_EINVAL, "%s: not a wpack-signature version 1 document", what);
        goto out;
    }
    if (!strcmp(alg, "ed25519")) info->alg = WP_KEY_ED25519;
    else if (!strcmp(alg, "ecdsa-p256-sha256")) info->alg = WP_KEY_ECDSA_P256;
    else {
        rc = wp_fail(e, WP_EINVAL, "%s: unknown algorithm \"%s\"", what, alg);
        goto out;
    }
    if (!wp_is_hex64(keyid) || !wp_is_hex64(mhex)) {
        rc = wp_fail(e, WP_EINVAL, "%s: keyid and manifest_sha256 must be 64 lowercase hex digits", what);
        goto out;
    }
    memcpy(info->keyid, keyid, 65);
    uint8_t md[WP_SHA256_LEN];
    char have[65];
    rc = wp_sha256_buf(manifest, n, md, e);
    if (rc) goto out;
    wp_hex(md, WP_SHA256_LEN, have);
    if (strcmp(have, mhex)) {
        rc = wp_fail(e, WP_EVERIFY, "%s: signs a different manifest (manifest_sha256 %s, manifest.json is %s)", what,
                     mhex, have);
        goto out;
    }
    if (!k) goto out;
    char kid[65];
    rc = wp_key_id(k, kid, e);
    if (rc) goto out;
    if (info->alg != k->alg || strcmp(kid, keyid)) {
        rc = wp_fail(e, WP_EVERIFY, "%s: signed by %s key %.16s..., not by the given %s key %.16s...", what, alg,
                     keyid, wp_key_alg_name(k->alg), kid);
        goto out;
    }
    uint8_t *sig = NULL;
    size_t siglen = 0;
    wp_err be = {0};
    if (wp_base64_decode(b64, &sig, &siglen, &be)) {
        rc = wp_fail(e, WP_EINVAL, "%s: signature: %s", what, be.msg);
        goto out;
    }
    rc = wp_verify_bytes(k, manifest, n, sig, siglen, what, e);
    free(sig);
    if (!rc) info->verified = 1;
out:
    cJSON_Delete(o);
    return rc;
}

/* ---- DSSE ----------------------------------------------------------------------- */

int wp_dsse_pae(const char *type, const void *body, size_t n, uint8_t **out, size_t *len, wp_err *e)
{
    *out = NULL;
    size_t tn = strlen(type);
    char head[64];
    int hn = snprintf(head, sizeof head, "DSSEv1 %zu ", tn);
    char mid[32];
    int mn = snprintf(mid, sizeof mid, " %zu ", n);
    size_t total = (size_t)hn + tn + (size_t)mn + n;
    uint8_t *p = wp_malloc(total, e);
    if (!p) return WP_ENOMEM;
    memcpy(p, head, (size_t)hn);
    memcpy(p + hn, type, tn);
    memcpy(p + hn + tn, mid, (size_t)mn);
    if (n) memcpy(p + hn + tn + mn, body, n);
    *out = p;
    *len = total;
    return 0;
}

static int res_cmp(const void *a, const void *b)
{
    return strcmp(((const wp_resource *)a)->name, ((const wp_resource *)b)->name);
}

/* Subject digest (model-signing): SHA-256 over the raw resource digests in order. */
static int resources_root(const wp_resource *r, size_t n, uint8_t out[WP_SHA256_LEN], wp_err *e)
{
    wp_sha256 h;
    int rc = wp_sha256_init(&h, e);
    if (rc) return rc;
    for (size_t i = 0; i < n; i++) wp_sha256_update(&h, r[i].sha256, WP_SHA256_LEN);
    wp_sha256_final(&h, out);
    return 0;
}

/* the signature files of a build are not part of what they sign */
static const char *const build_ignores[] = {WP_MANIFEST_DSSE_NAME, WP_MANIFEST_SIG_NAME};
static int statement_core(const char *model_name, const wp_resource *res, size_t nres, uint64_t shard_size,
                          const char *const *ignore, size_t nignore, char **out, size_t *len, wp_err *e);

int wp_intoto_statement(const char *model_name, const wp_resource *res, size_t nres, char **out, size_t *len,
                        wp_err *e)
{
    return statement_core(model_name, res, nres, 0, build_ignores, 2, out, len, e);
}

int wp_intoto_statement_ignoring(const char *model_name, const wp_resource *res, size_t nres,
                                 const char *const *ignore, size_t nignore, char **out, size_t *len, wp_err *e)
{
    return statement_core(model_name, res, nres, 0, ignore, nignore, out, len, e);
}

int wp_intoto_statement_sharded(const char *model_name, const wp_resource *res, size_t nres, uint64_t shard_size,
                                char **out, size_t *len, wp_err *e)
{
    return statement_core(model_name, res, nres, shard_size, build_ignores, 2, out, len, e);
}

static int statement_core(const char *model_name, const wp_resource *res, size_t nres, uint64_t shard_size,
                          const char *const *ignore, size_t nignore, char **out, size_t *len, wp_err *e)
{
    char alg[48];
    if (shard_size) snprintf(alg, sizeof alg, "sha256-sharded-%llu", (unsigned long long)shard_size);
    else snprintf(alg, sizeof alg, "sha256");
    *out = NULL;
    wp_resource *r = wp_calloc(nres, sizeof *r, e);
    if (!r) return WP_ENOMEM;
    if (nres) memcpy(r, res, nres * sizeof *r);
    qsort(r, nres, sizeof *r, res_cmp);
    uint8_t root[WP_SHA256_LEN];
    char hex[65];
    int rc = resources_root(r, nres, root, e);
    if (rc) {
        free(r);
        return rc;
    }
    cJSON *st = cJSON_CreateObject();
    cJSON *subj = cJSON_AddArrayToObject(st, "subject");
    cJSON *s0 = cJSON_CreateObject();
    cJSON_AddItemToArray(subj, s0);
    cJSON_AddStringToObject(s0, "name", model_name);
    cJSON *dg = cJSON_AddObjectToObject(s0, "digest");
    wp_hex(root, WP_SHA256_LEN, hex);
    cJSON_AddStringToObject(dg, "sha256", hex);
    cJSON_AddStringToObject(st, "_type", WP_INTOTO_STATEMENT_TYPE);
    cJSON_AddStringToObject(st, "predicateType", WP_MODEL_SIGNING_PREDICATE);
    cJSON *pred = cJSON_AddObjectToObject(st, "predicate");
    cJSON *ser = cJSON_AddObjectToObject(pred, "serialization");
    cJSON_AddStringToObject(ser, "method", shard_size ? "shards" : "files");
    cJSON_AddStringToObject(ser, "hash_type", "sha256");
    if (shard_size) cJSON_AddNumberToObject(ser, "shard_size", (double)shard_size);
    cJSON_AddBoolToObject(ser, "allow_symlinks", 0);
    cJSON *ign = cJSON_AddArrayToObject(ser, "ignore_paths");
    for (size_t i = 0; ign && i < nignore; i++) cJSON_AddItemToArray(ign, cJSON_CreateString(ignore[i]));
    cJSON *ra = cJSON_AddArrayToObject(pred, "resources");
    for (size_t i = 0; i < nres; i++) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddItemToArray(ra, o);
        wp_hex(r[i].sha256, WP_SHA256_LEN, hex);
        cJSON_AddStringToObject(o, "algorithm", alg);
        cJSON_AddStringToObject(o, "digest", hex);
        cJSON_AddStringToObject(o, "name", r[i].name);
    }
    free(r);
    /* cJSON's adders return NULL on allocation failure; the canonical writer
     * would then see a partial tree, so count what must be there */
    int complete = st && subj && s0 && dg && pred && ser && ign && ra && cJSON_GetArraySize(ra) == (int)nres &&
                   cJSON_GetArraySize(ign) == (int)nignore;
    rc = complete ? wp_json_canonical(st, "in-toto statement", out, len, e)
                  : wp_oom(e, "building the in-toto statement");
    cJSON_Delete(st);
    return rc;
}

static int pem_hint(const wp_key *k, char hex[65], wp_err *e)
{
    /* model-signing's verificationMaterial.publicKey.hint: SHA-256 of the PEM text */
    char *pem = NULL;
    size_t n = 0;
    int rc = to_pem(k, 0, &pem, &n, e);
    uint8_t d[WP_SHA256_LEN];
    if (!rc) rc = wp_sha256_buf(pem, n, d, e);
    free(pem);
    if (!rc) wp_hex(d, WP_SHA256_LEN, hex);
    return rc;
}

int wp_dsse_bundle_make(const wp_key *k, const char *payload_type, const void *payload, size_t n, char **doc,
                        size_t *len, wp_err *e)
{
    *doc = NULL;
    uint8_t *pae = NULL, *sig = NULL;
    size_t paelen = 0, siglen = 0;
    char keyid[65], hint[65];
    int rc = wp_dsse_pae(payload_type, payload, n, &pae, &paelen, e);
    if (!rc) rc = wp_sign_bytes(k, pae, paelen, &sig, &siglen, e);
    free(pae);
    if (!rc) rc = wp_key_id(k, keyid, e);
    if (!rc) rc = pem_hint(k, hint, e);
    char *sig64 = rc ? NULL : wp_base64_encode(sig, siglen, e);
    char *pay64 = rc ? NULL : wp_base64_encode(payload, n, e);
    free(sig);
    if (rc || !sig64 || !pay64) {
        free(sig64);
        free(pay64);
        return rc ? rc : WP_ENOMEM;
    }
    cJSON *b = cJSON_CreateObject();
    cJSON_AddStringToObject(b, "mediaType", WP_SIGSTORE_BUNDLE_TYPE);
    cJSON *vm = cJSON_AddObjectToObject(b, "verificationMaterial");
    cJSON *pk = cJSON_AddObjectToObject(vm, "publicKey");
    cJSON_AddStringToObject(pk, "hint", hint);
    cJSON_AddArrayToObject(vm, "tlogEntries");
    cJSON *env = cJSON_AddObjectToObject(b, "dsseEnvelope");
    cJSON_AddStringToObject(env, "payload", pay64);
    cJSON_AddStringToObject(env, "payloadType", payload_type);
    cJSON *sigs = cJSON_AddArrayToObject(env, "signatures");
    cJSON *s0 = cJSON_CreateObject();
    cJSON_AddItemToArray(sigs, s0);
    cJSON_AddStringToObject(s0, "sig", sig64);
    cJSON_AddStringToObject(s0, "keyid", keyid);
    free(sig64);
    free(pay64);
    int complete = b && vm && pk && env && sigs && s0 && cJSON_GetArraySize(s0) == 2 &&
                   cJSON_GetArraySize(env) == 3 && cJSON_GetArraySize(b) == 3;
    rc = complete ? wp_json_canonical(b, "DSSE bundle", doc, len, e)
                  : wp_oom(e, "building the DSSE bundle");
    cJSON_Delete(b);
    return rc;
}

int wp_dsse_bundle_verify(const wp_key *k, const char *doc, size_t len, const char *what, char **payload,
                          size_t *plen, char **payload_type, wp_err *e)
{
    *payload = NULL;
    if (payload_type) *payload_type = NULL;
    cJSON *j = cJSON_ParseWithLength(doc, len);
    if (!j || !cJSON_IsObject(j)) {
        cJSON_Delete(j);
        return wp_fail(e, WP_EINVAL, "%s: not a JSON object", what);
    }
    int rc = 0;
    const cJSON *env = j;
    const cJSON *bundle_env = cJSON_GetObjectItemCaseSensitive(j, "dsseEnvelope");
    if (bundle_env) {   /* a Sigstore bundle around the envelope */
        const char *mt = wp_jstr(j, "mediaType");
        if (!mt || strncmp(mt, "application/vnd.dev.sigstore.bundle", 35)) {
            rc = wp_fail(e, WP_EINVAL, "%s: mediaType is not a Sigstore bundle", what);
            goto out;
        }
        const cJSON *vm = cJSON_GetObjectItemCaseSensitive(j, "verificationMaterial");
        const cJSON *pk = cJSON_GetObjectItemCaseSensitive(vm, "publicKey");
        const char *hint = wp_jstr(pk, "hint");
        if (hint && *hint) {
            char want[65];
            rc = pem_hint(k, want, e);
            if (rc) goto out;
            if (strcmp(hint, want)) {
                rc = wp_fail(e, WP_EVERIFY, "%s: bundle names public key %.16s..., not the given key (%.16s...)", what,
                             hint, want);
                goto out;
            }
        }
        env = bundle_env;
    }
    const char *type = wp_jstr(env, "payloadType"), *pay64 = wp_jstr(env, "payload");
    const cJSON *sigs = cJSON_GetObjectItemCaseSensitive(env, "signatures");
    if (!type || !pay64 || !cJSON_IsArray(sigs) || !cJSON_GetArraySize(sigs)) {
        rc = wp_fail(e, WP_EINVAL, "%s: DSSE envelope needs payload, payloadType and signatures", what);
        goto out;
    }
    uint8_t *body = NULL;
    size_t blen = 0;
    wp_err be = {0};
    if (wp_base64_decode(pay64, &body, &blen, &be)) {
        rc = wp_fail(e, WP_EINVAL, "%s: payload: %s", what, be.msg);
        goto out;
    }
    uint8_t *pae = NULL;
    size_t paelen = 0;
    rc = wp_dsse_pae(type, body, blen, &pae, &paelen, e);
    /* DSSE protocol: accept if any signature verifies with the trusted key */
    int good = 0;
    for (const cJSON *s = rc ? NULL : sigs->child; s && !good; s = s->next) {
        const char *sig64 = wp_jstr(s, "sig");
        uint8_t *sig = NULL;
        size_t siglen = 0;
        wp_err ve = {0};
        if (!sig64 || wp_base64_decode(sig64, &sig, &siglen, &ve)) continue;
        good = !wp_verify_bytes(k, pae, paelen, sig, siglen, what, &ve);
        free(sig);
    }
    free(pae);
    if (!rc && !good)
        rc = wp_fail(e, WP_EVERIFY, "%s: no DSSE signature verifies with the given %s key over PAE(%s, payload)", what,
                     wp_key_alg_name(k->alg), type);
    if (!rc) {
        char *p = wp_malloc(blen + 1, e);
        char *t = wp_strdup(type, e);
        if (!p || !t) {
            free(p);
            free(t);
            rc = WP_ENOMEM;
        } else {
            memcpy(p, body, blen);
            p[blen] = 0;
            *payload = p;
            *plen = blen;
            if (payload_type) *payload_type = t;
            else free(t);
        }
    }
    free(body);
out:
    cJSON_Delete(j);
    return rc;
}

int wp_intoto_check(const char *payload, size_t plen, const char *what, const wp_resource *res, size_t nres,
                    wp_err *e)
{
    return wp_intoto_check_sharded(payload, plen, what, res, nres, 0, e);
}

int wp_intoto_check_sharded(const char *payload, size_t plen, const char *what, const wp_resource *res, size_t nres,
                            uint64_t shard_size, wp_err *e)
{
    char want_alg[48];
    if (shard_size) snprintf(want_alg, sizeof want_alg, "sha256-sharded-%llu", (unsigned long long)shard_size);
    else snprintf(want_alg, sizeof want_alg, "sha256");
    cJSON *st = cJSON_ParseWithLength(payload, plen);
    int rc = 0;
    const char *t = wp_jstr(st, "_type"), *pt = wp_jstr(st, "predicateType");
    if (!st || !t || strcmp(t, WP_INTOTO_STATEMENT_TYPE)) {
        rc = wp_fail(e, WP_EINVAL, "%s: payload is not an in-toto Statement v1", what);
        goto out;
    }
    if (!pt || strcmp(pt, WP_MODEL_SIGNING_PREDICATE)) {
        rc = wp_fail(e, WP_EINVAL, "%s: predicateType is not %s", what, WP_MODEL_SIGNING_PREDICATE);
        goto out;
    }
    const cJSON *subj = cJSON_GetObjectItemCaseSensitive(st, "subject");
    const cJSON *pred = cJSON_GetObjectItemCaseSensitive(st, "predicate");
    const cJSON *ra = cJSON_GetObjectItemCaseSensitive(pred, "resources");
    const char *sd = cJSON_GetArraySize(subj) == 1
                         ? wp_jstr(cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(subj, 0), "digest"), "sha256")
                         : NULL;
    if (!wp_is_hex64(sd) || !cJSON_IsArray(ra)) {
        rc = wp_fail(e, WP_EINVAL, "%s: statement needs one subject with a sha256 digest and predicate.resources", what);
        goto out;
    }
    const cJSON *ser = cJSON_GetObjectItemCaseSensitive(pred, "serialization");
    const cJSON *ssz = cJSON_GetObjectItemCaseSensitive(ser, "shard_size");
    const char *meth = wp_jstr(ser, "method");
    if (!meth || strcmp(meth, shard_size ? "shards" : "files") ||
        (shard_size && (!cJSON_IsNumber(ssz) || ssz->valuedouble != (double)shard_size))) {
        rc = wp_fail(e, WP_EVERIFY, "%s: predicate.serialization is not the manifest's (method \"%s\", shard_size %llu)",
                     what, shard_size ? "shards" : "files", (unsigned long long)shard_size);
        goto out;
    }
    wp_resource *want = wp_calloc(nres, sizeof *want, e);
    if (!want) {
        rc = WP_ENOMEM;
        goto out;
    }
    if (nres) memcpy(want, res, nres * sizeof *want);
    qsort(want, nres, sizeof *want, res_cmp);
    wp_sha256 h;
    rc = wp_sha256_init(&h, e);
    size_t i = 0;
    for (const cJSON *r = rc ? NULL : ra->child; r && !rc; r = r->next, i++) {
        const char *name = wp_jstr(r, "name"), *alg = wp_jstr(r, "algorithm"), *dg = wp_jstr(r, "digest");
        uint8_t d[WP_SHA256_LEN];
        if (!name || !alg || strcmp(alg, want_alg) || !wp_is_hex64(dg) || wp_unhex(dg, d, WP_SHA256_LEN)) {
            rc = wp_fail(e, WP_EINVAL, "%s: resources[%zu] needs name, algorithm \"%s\" and a hex digest", what, i,
                         want_alg);
            break;
        }
        wp_sha256_update(&h, d, WP_SHA256_LEN);
        if (i >= nres || strcmp(name, want[i].name)) {
            /* find out which side has the extra name, for an exact message */
            const char *missing = NULL;
            if (i < nres) {
                int found = 0;
                for (const cJSON *q = ra->child; q && !found; q = q->next)
                    found = wp_jstr(q, "name") && !strcmp(wp_jstr(q, "name"), want[i].name);
                if (!found) missing = want[i].name;
            }
            rc = missing ? wp_fail(e, WP_EVERIFY, "%s: statement does not cover file %s", what, missing)
                         : wp_fail(e, WP_EVERIFY, "%s: statement lists %s, which is not in the build (or out of order)",
                                   what, name);
        } else if (memcmp(d, want[i].sha256, WP_SHA256_LEN)) {
            rc = wp_fail(e, WP_EVERIFY, "%s: %s: signed digest %.16s... differs from the file's", what, name, dg);
        }
    }
    if (!rc && i != nres)
        rc = wp_fail(e, WP_EVERIFY, "%s: statement does not cover file %s", what, want[i].name);
    free(want);
    if (rc) {
        wp_sha256_free(&h);
        goto out;
    }
    uint8_t root[WP_SHA256_LEN], sdb[WP_SHA256_LEN];
    wp_sha256_final(&h, root);
    wp_unhex(sd, sdb, WP_SHA256_LEN);
    if (memcmp(root, sdb, WP_SHA256_LEN))
        rc = wp_fail(e, WP_EVERIFY, "%s: subject digest %.16s... is not the digest of the listed resources", what, sd);
out:
    cJSON_Delete(st);
    return rc;
}
