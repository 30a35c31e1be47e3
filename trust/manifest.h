/*
 * manifest.h — the trust half of format/: a build's manifest (canonical JSON,
 * root digest), signing keys, detached manifest signatures and the DSSE /
 * in-toto bundle compatible with OpenSSF model-signing.  Byte-level rules for
 * every document written here: docs/signing.md.
 *
 * All cryptography is OpenSSL 3 EVP; JSON is cJSON; nothing here prints.
 * Functions return 0 or a negative WP_E* code with one line in the wp_err:
 * WP_EINVAL for a malformed document, WP_EVERIFY for a well-formed document
 * that does not match (bad signature, wrong key, digest mismatch).
 */
#ifndef WP_MANIFEST_H
#define WP_MANIFEST_H

#include <cjson/cJSON.h>

#include "common/wp.h"

/* ---- Canonical JSON ----------------------------------------------------------
 * The one serialisation every signed wpack document uses (docs/signing.md §1,
 * a subset of RFC 8785): object keys sorted by their UTF-8 bytes, no
 * whitespace, strings as UTF-8 with only `"` `\` and control characters
 * escaped (\b \f \n \r \t, others \u00xx), numbers only integers in
 * [-2^53, 2^53] printed in plain decimal, true/false/null.  Rejects (WP_EINVAL,
 * naming `what`) fractions, out-of-range numbers, duplicate keys, invalid
 * UTF-8.  *out is malloc'd and NUL-terminated; *len excludes the NUL. */
int wp_json_canonical(const cJSON *v, const char *what, char **out, size_t *len, wp_err *e);
/* Parse `buf` and require that it is byte-for-byte its own canonical form,
 * so a signature over the bytes is a signature over the meaning. */
int wp_json_parse_canonical(const char *buf, size_t len, const char *what, cJSON **out, wp_err *e);

/* ---- Manifest ----------------------------------------------------------------
 * manifest.json of a build directory: every file (relative path, size,
 * SHA-256 of the whole file, SHA-256 of its non-tensor bytes) and every tensor
 * (name, file, byte offset, byte size, SHA-256), plus the root digest over all
 * of them (docs/signing.md §2).  Files are sorted by path (bytewise); tensors
 * by (file, offset). */
#define WP_MANIFEST_NAME "manifest.json"
#define WP_MANIFEST_SIG_NAME "manifest.sig"
#define WP_MANIFEST_DSSE_NAME "manifest.dsse.json"

typedef struct wp_mfile {
    char *path;                          /* relative to the build directory */
    uint64_t size;
    uint8_t sha256[WP_SHA256_LEN];       /* whole file (what sha256sum prints) */
    uint8_t nontensor_sha256[WP_SHA256_LEN]; /* bytes outside every tensor's range, in file order */
} wp_mfile;

/* How a tensor's values came from the source (docs/signing.md §2.1 "loss");
 * NONE: not recorded (a manifest written before the field existed). */
typedef enum wp_mloss { WP_MLOSS_NONE, WP_MLOSS_COPY, WP_MLOSS_EXACT, WP_MLOSS_LOSSY } wp_mloss;
const char *wp_mloss_name(wp_mloss l);   /* "copy", "exact", "lossy"; "" for NONE */

typedef struct wp_mtensor {
    char *name;
    uint32_t file;                       /* index into files[] */
    uint64_t offset, size;               /* absolute byte range in that file */
    uint8_t sha256[WP_SHA256_LEN];
    wp_mloss loss;                       /* NONE exactly when the manifest has no "loss" */
} wp_mtensor;

#define WP_MANIFEST_MAX_FAMILIES 4096
typedef struct wp_manifest {
    uint32_t nfiles;
    wp_mfile *files;
    uint64_t ntensors;
    wp_mtensor *tensors;
    /* the top-level "loss" object; has_loss 0 for older manifests */
    int has_loss;
    int lossless;                        /* no tensor is lossy */
    uint64_t lossy_tensors;              /* lossy output weights (a .scale is not counted) */
    uint32_t nfamilies;
    char **families;                     /* sorted, distinct (wp_loss_family names) */
    uint8_t root[WP_SHA256_LEN];         /* docs/signing.md §2.3 */
} wp_manifest;

void wp_manifest_free(wp_manifest *m);
/* A path allowed in a manifest or digests file: relative, non-empty, '/'
 * separated, no empty, "." or ".." component, no control characters. */
int wp_rel_path_ok(const char *p);
/* Sort files and tensors into canonical order (remapping tensor file indices),
 * check the invariants wp_manifest_parse enforces, and compute m->root. */
int wp_manifest_finish(wp_manifest *m, wp_err *e);
/* The root digest of m as it stands (m must be in canonical order). */
void wp_manifest_root(const wp_manifest *m, uint8_t out[WP_SHA256_LEN]);
/* Canonical manifest.json bytes (malloc'd, NUL-terminated). */
int wp_manifest_serialize(const wp_manifest *m, char **out, size_t *len, wp_err *e);
/* Strict parse of manifest bytes: canonical form, known keys only, sorted,
 * no duplicate files/tensors, tensors inside their file and not overlapping,
 * root digest recomputed and equal.  `what` names the document in errors. */
int wp_manifest_parse(const char *buf, size_t len, const char *what, wp_manifest *m, wp_err *e);
/* Atomically write BUILD/manifest.json. */
int wp_manifest_write(const char *build_dir, const wp_manifest *m, wp_err *e);
/* Find a file by path; -1 if absent. */
int wp_manifest_find_file(const wp_manifest *m, const char *path);

/* ---- Keys ----------------------------------------------------------------------
 * Ed25519 (wpack keygen's default) or ECDSA over P-256 with SHA-256.  Keys are
 * PEM: PKCS#8 private keys, SubjectPublicKeyInfo public keys.  The key id is
 * the lowercase hex SHA-256 of the public key's DER SubjectPublicKeyInfo. */
typedef enum wp_key_alg { WP_KEY_ED25519 = 1, WP_KEY_ECDSA_P256 = 2 } wp_key_alg;
typedef struct wp_key wp_key;   /* opaque (an EVP_PKEY) */

int wp_key_generate(wp_key_alg alg, wp_key **out, wp_err *e);
/* Write BASE.pem (private, mode 0600) and BASE.pub.pem (public, 0644).
 * Refuses to replace an existing file unless `force`. */
int wp_key_write_pair(const wp_key *k, const char *base, int force, wp_err *e);
/* Load a private key (PEM).  Only Ed25519 and P-256 are accepted; the file
 * must be its owner's alone (no group/other permission bits: WP_EUSAGE with
 * the chmod fix), and a public key in its place is named as one. */
int wp_key_load_private(const char *path, wp_key **out, wp_err *e);
/* Load a public key (PEM SubjectPublicKeyInfo); `what` names it in errors. */
int wp_key_load_public(const char *path, wp_key **out, wp_err *e);
int wp_key_public_from_pem(const char *pem, size_t len, const char *what, wp_key **out, wp_err *e);
void wp_key_free(wp_key *k);
wp_key_alg wp_key_algorithm(const wp_key *k);
/* "ed25519" or "ecdsa-p256-sha256": the `algorithm` field of manifest.sig. */
const char *wp_key_alg_name(wp_key_alg a);
int wp_key_id(const wp_key *k, char hex[2 * WP_SHA256_LEN + 1], wp_err *e);
/* Public key as PEM (malloc'd, NUL-terminated). */
int wp_key_public_pem(const wp_key *k, char **pem, size_t *len, wp_err *e);

/* Sign / verify a message with EVP_DigestSign / EVP_DigestVerify: pure
 * Ed25519, or ECDSA P-256 over SHA-256 with a DER (X9.62) signature.
 * wp_verify_bytes returns WP_EVERIFY "<what>: signature does not verify ...". */
int wp_sign_bytes(const wp_key *k, const void *msg, size_t n, uint8_t **sig, size_t *siglen,
                  wp_err *e);
int wp_verify_bytes(const wp_key *k, const void *msg, size_t n, const uint8_t *sig,
                    size_t siglen, const char *what, wp_err *e);

/* Standard base64 with padding (EVP_EncodeBlock); decode accepts the standard
 * and the URL-safe alphabet, padded or not (DSSE protocol: verifiers MUST). */
char *wp_base64_encode(const void *p, size_t n, wp_err *e);
int wp_base64_decode(const char *s, uint8_t **out, size_t *n, wp_err *e);

/* ---- Detached manifest signature (manifest.sig) --------------------------------
 * A canonical JSON document (docs/signing.md §3) binding the exact bytes of
 * manifest.json to a key: algorithm, key id, SHA-256 of the manifest bytes,
 * base64 signature. */
typedef struct wp_sig_info {
    wp_key_alg alg;
    char keyid[2 * WP_SHA256_LEN + 1];
    int verified;                /* 1 when checked against a key */
} wp_sig_info;

int wp_sig_make(const wp_key *k, const void *manifest, size_t n, char **doc, size_t *len,
                wp_err *e);
/* Parse manifest.sig (`what` = its path) and check that it is bound to these
 * manifest bytes.  With k != NULL also require the key id to match k and the
 * signature to verify; with k == NULL only the structure and the binding are
 * checked (info->verified = 0). */
int wp_sig_check(const wp_key *k, const char *doc, size_t doclen, const char *what,
                 const void *manifest, size_t n, wp_sig_info *info, wp_err *e);

/* ---- DSSE + in-toto (OpenSSF model-signing) ------------------------------------
 * docs/signing.md §4.  PAE(type, body) = "DSSEv1" SP LEN(type) SP type SP
 * LEN(body) SP body, LEN in ASCII decimal (DSSE protocol v1.0.0). */
#define WP_INTOTO_PAYLOAD_TYPE "application/vnd.in-toto+json"
#define WP_INTOTO_STATEMENT_TYPE "https://in-toto.io/Statement/v1"
#define WP_MODEL_SIGNING_PREDICATE "https://model_signing/signature/v1.0"
#define WP_SIGSTORE_BUNDLE_TYPE "application/vnd.dev.sigstore.bundle.v0.3+json"

int wp_dsse_pae(const char *type, const void *body, size_t n, uint8_t **out, size_t *len,
                wp_err *e);

/* One in-toto resource: a file of the model and its SHA-256. */
typedef struct wp_resource {
    const char *name;
    uint8_t sha256[WP_SHA256_LEN];
} wp_resource;
/* The in-toto Statement v1 with the model-signing v1.0 predicate over `res`
 * (sorted here by name; subject digest = SHA-256 of the concatenated raw
 * digests in that order), as canonical JSON. */
int wp_intoto_statement(const char *model_name, const wp_resource *res, size_t nres,
                        char **out, size_t *len, wp_err *e);
/* Sign `payload` (of `payload_type`) into a Sigstore bundle v0.3 (JSON) whose
 * dsseEnvelope carries the payload, its type and one signature over PAE. */
int wp_dsse_bundle_make(const wp_key *k, const char *payload_type, const void *payload,
                        size_t n, char **doc, size_t *len, wp_err *e);
/* Verify a bundle made by wp_dsse_bundle_make (or a bare DSSE envelope) with
 * key k: signature over PAE(payloadType, payload).  Returns the decoded
 * payload (malloc'd, NUL-terminated) and its type. */
int wp_dsse_bundle_verify(const wp_key *k, const char *doc, size_t len, const char *what,
                          char **payload, size_t *plen, char **payload_type, wp_err *e);
/* Check a verified statement against the resources we expect (same names,
 * same digests, nothing more or less, correct root/subject digest). */
int wp_intoto_check(const char *payload, size_t plen, const char *what,
                    const wp_resource *res, size_t nres, wp_err *e);

#endif
