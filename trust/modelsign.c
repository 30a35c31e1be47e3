/* modelsign.c — OpenSSF model-signing (OMS v1.0) bundles over a directory
 * (docs/signing.md §8): signing a checkpoint directory into model.sig, and
 * checking a bundle whoever wrote it: the DSSE signature over the payload
 * bytes as they are, the statement in any JSON encoding, every resource
 * against the file on disk, and no unsigned file left out. */
#include "trust/trust.h"
#include "trust/trust_priv.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/outdir.h"

#define MAX_BUNDLE ((size_t)1 << 30)
#define MAX_FILES 1000000      /* a directory walk never grows without bound */
#define MAX_DEPTH 16
#define HASH_BATCH 256         /* files open at once while hashing */

/* model-signing's default exclusions: top-level path components only */
static const char *const default_ignores[] = {".git", ".gitattributes", ".github", ".gitignore"};
#define NDEFAULT (sizeof default_ignores / sizeof *default_ignores)

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* ---- the directory --------------------------------------------------------------- */

typedef struct walker {
    const char *root;
    const char *const *skip;   /* relative paths: the entry and all under it */
    size_t nskip;
    int allow_symlinks;
    wp_strv files;             /* regular files (or links to one, when allowed), relative */
    wp_strv odd;               /* "REL: why" for entries that cannot be signed */
} walker;

static int skipped(const walker *w, const char *rel)
{
    for (size_t i = 0; i < w->nskip; i++) {
        size_t n = strlen(w->skip[i]);
        if (n && !strncmp(rel, w->skip[i], n) && (rel[n] == 0 || rel[n] == '/')) return 1;
    }
    return 0;
}

static int note_odd(walker *w, const char *rel, const char *why, wp_err *e)
{
    char line[4200];
    snprintf(line, sizeof line, "%s/%s: %s", w->root, rel, why);
    return wp_strv_push(&w->odd, line, e);
}

static int walk(walker *w, const char *rel, int depth, wp_err *e)
{
    char dir[4096];
    if (snprintf(dir, sizeof dir, "%s%s%s", w->root, *rel ? "/" : "", rel) >= (int)sizeof dir)
        return wp_fail(e, WP_EUSAGE, "%s/%s: path too long", w->root, rel);
    DIR *d = opendir(dir);
    if (!d) return wp_fail_errno(e, "%s: cannot list directory", dir);
    int rc = 0;
    struct dirent *de;
    while (!rc && (errno = 0, de = readdir(d))) {
        const char *nm = de->d_name;
        if (!strcmp(nm, ".") || !strcmp(nm, "..")) continue;
        wp_temp_name tn;
        if (depth == 0 && wp_temp_parse(nm, &tn)) continue;   /* wpack's own temporaries: never content */
        char sub[4096], full[4096];
        if (snprintf(sub, sizeof sub, "%s%s%s", rel, *rel ? "/" : "", nm) >= (int)sizeof sub ||
            snprintf(full, sizeof full, "%s/%s", dir, nm) >= (int)sizeof full) {
            rc = wp_fail(e, WP_EUSAGE, "%s/%s: path too long", dir, nm);
            break;
        }
        if (skipped(w, sub)) continue;
        struct stat st;
        if (lstat(full, &st) != 0) {
            rc = wp_fail_errno(e, "%s: cannot stat", full);
            break;
        }
        if (S_ISLNK(st.st_mode)) {
            if (!w->allow_symlinks) {
                rc = note_odd(w, sub, "symbolic link: not signed (serialization.allow_symlinks is false)", e);
                continue;
            }
            /* a link to a file is that file; links to directories are never
             * followed (a link to ".." would make the walk exponential) */
            if (stat(full, &st) != 0 || !S_ISREG(st.st_mode)) {
                rc = note_odd(w, sub, "symbolic link to something other than a regular file", e);
                continue;
            }
        }
        if (S_ISDIR(st.st_mode)) {
            if (depth + 1 >= MAX_DEPTH) rc = note_odd(w, sub, "directories nested deeper than 16 levels: not checked", e);
            else rc = walk(w, sub, depth + 1, e);
        } else if (S_ISREG(st.st_mode)) {
            if (w->files.n >= MAX_FILES)
                rc = wp_fail(e, WP_EUSAGE, "%s: more than %d files", w->root, MAX_FILES);
            else
                rc = wp_strv_push(&w->files, sub, e);
        } else {
            rc = note_odd(w, sub, "not a regular file (device, FIFO or socket)", e);
        }
    }
    if (!rc && errno) rc = wp_fail_errno(e, "%s: cannot list directory", dir);
    closedir(d);
    return rc;
}

/* SHA-256 of whole files DIR/names[i], HASH_BATCH open at a time. */
static int hash_files(const char *root, char *const *names, size_t n, uint8_t (*out)[WP_SHA256_LEN], int threads,
                      wp_progress_fn progress, void *ud, uint64_t *bytes, wp_err *e)
{
    if (threads <= 0) threads = wp_default_threads();
    wp_hash_job *jobs = wp_calloc(HASH_BATCH, sizeof *jobs, e);
    wp_range *rg = jobs ? wp_calloc(HASH_BATCH, sizeof *rg, e) : NULL;
    char (*paths)[4096] = rg ? wp_calloc(HASH_BATCH, sizeof *paths, e) : NULL;
    int rc = paths ? 0 : WP_ENOMEM;
    for (size_t at = 0; !rc && at < n; at += HASH_BATCH) {
        size_t k = n - at < HASH_BATCH ? n - at : HASH_BATCH, opened = 0;
        for (size_t i = 0; !rc && i < k; i++) {
            if (wp_path_join(paths[i], sizeof paths[i], root, names[at + i])) {
                rc = wp_fail(e, WP_EUSAGE, "%s/%s: path too long", root, names[at + i]);
                break;
            }
            int fd = wp_open_read(paths[i], e);
            struct stat st;
            if (fd < 0) {
                rc = e && e->code ? e->code : WP_EIO;
                break;
            }
            jobs[i] = (wp_hash_job){.fd = fd, .path = paths[i], .ranges = &rg[i], .nranges = 1};
            opened++;
            if (fstat(fd, &st) != 0) {
                rc = wp_fail_errno(e, "%s: cannot stat", paths[i]);
                break;
            }
            rg[i] = (wp_range){0, (uint64_t)st.st_size};
            *bytes += (uint64_t)st.st_size;
        }
        if (!rc) rc = wp_hash_jobs(jobs, k, threads, progress, ud, "model-signing", e);
        for (size_t i = 0; i < opened; i++) close(jobs[i].fd);
        for (size_t i = 0; !rc && i < k; i++) memcpy(out[at + i], jobs[i].out, WP_SHA256_LEN);
    }
    free(jobs);
    free(rg);
    free(paths);
    return rc;
}

/* ---- signing a checkpoint directory --------------------------------------------------- */

int wp_msig_sign_dir(const char *dir, const wp_sign_opts *o, char keyid[2 * WP_SHA256_LEN + 1], wp_err *e)
{
    wp_key *k = NULL;
    int rc = wp_key_load_private(o->key_path, &k, e);
    if (rc) return rc;
    wp_sweep_quiet(dir, NULL);   /* what an interrupted sign left goes first */
    const char *skip[NDEFAULT + 1];
    for (size_t i = 0; i < NDEFAULT; i++) skip[i] = default_ignores[i];
    skip[NDEFAULT] = WP_MODEL_SIG_NAME;
    walker w = {.root = dir, .skip = skip, .nskip = NDEFAULT + 1};
    uint8_t (*dg)[WP_SHA256_LEN] = NULL;
    wp_resource *res = NULL;
    char *st = NULL, *bundle = NULL;
    size_t stlen = 0, blen = 0;
    uint64_t bytes = 0;
    rc = walk(&w, "", 0, e);
    if (!rc && w.odd.n)
        rc = wp_fail(e, WP_EINVAL, "%s (model-signing signs regular files only)", w.odd.v[0]);
    if (!rc && !w.files.n) rc = wp_fail(e, WP_EUSAGE, "%s: no files to sign", dir);
    for (size_t i = 0; !rc && i < w.files.n; i++)
        if (!wp_rel_path_ok(w.files.v[i]))
            rc = wp_fail(e, WP_EINVAL, "%s/%s: file name that a bundle cannot carry", dir, w.files.v[i]);
    if (!rc) {
        qsort(w.files.v, w.files.n, sizeof *w.files.v, cmp_str);
        dg = wp_calloc(w.files.n, sizeof *dg, e);
        res = dg ? wp_calloc(w.files.n, sizeof *res, e) : NULL;
        if (!res) rc = WP_ENOMEM;
    }
    if (!rc) rc = hash_files(dir, w.files.v, w.files.n, dg, o->threads, o->progress, o->progress_ud, &bytes, e);
    for (size_t i = 0; !rc && i < w.files.n; i++) {
        res[i].name = w.files.v[i];
        memcpy(res[i].sha256, dg[i], WP_SHA256_LEN);
    }
    char name[4096];
    snprintf(name, sizeof name, "%s", o->model_name ? o->model_name : dir);
    size_t nl = strlen(name);
    while (nl > 1 && name[nl - 1] == '/') name[--nl] = 0;
    const char *base = o->model_name ? name : basename(name);
    /* the ignore rules as applied, recorded for the verifier (sorted) */
    if (!rc) rc = wp_intoto_statement_ignoring(base, res, w.files.n, skip, NDEFAULT + 1, &st, &stlen, e);
    if (!rc) rc = wp_key_id(k, keyid, e);
    if (!rc) rc = wp_dsse_bundle_make(k, WP_INTOTO_PAYLOAD_TYPE, st, stlen, &bundle, &blen, e);
    char sigp[4096];
    if (!rc && wp_path_join(sigp, sizeof sigp, dir, WP_MODEL_SIG_NAME))
        rc = wp_fail(e, WP_EUSAGE, "%s/%s: path too long", dir, WP_MODEL_SIG_NAME);
    if (!rc) rc = wp_write_file_atomic(sigp, bundle, blen, e);
    free(st);
    free(bundle);
    free(res);
    free(dg);
    wp_strv_free(&w.files);
    wp_strv_free(&w.odd);
    wp_key_free(k);
    return rc;
}

/* ---- checking a bundle ------------------------------------------------------------------ */

int wp_msig_bundle_signer(const char *doc, size_t len)
{
    cJSON *b = cJSON_ParseWithLength(doc, len);
    const cJSON *env = cJSON_GetObjectItemCaseSensitive(b, "dsseEnvelope");
    const cJSON *sigs = cJSON_GetObjectItemCaseSensitive(env, "signatures");
    int kind = -1;
    if (cJSON_IsObject(b) && cJSON_IsObject(env) && cJSON_IsArray(sigs)) {
        kind = 0;
        for (const cJSON *s = sigs->child; s; s = s->next) {
            const cJSON *kid = cJSON_GetObjectItemCaseSensitive(s, "keyid");
            if (cJSON_IsString(kid) && kid->valuestring[0]) kind = 1;
        }
    }
    cJSON_Delete(b);
    return kind;
}

void wp_msig_result_free(wp_msig_result *r)
{
    if (!r) return;
    wp_strv_free(&r->fails);
    memset(r, 0, sizeof *r);
}

static int cmp_name(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* No object anywhere in the tree holds a key twice: two parsers that keep
 * different duplicates would read two different statements. */
static const char *dup_key(const cJSON *v)
{
    if (!v) return NULL;
    if (cJSON_IsObject(v)) {
        size_t n = 0;
        for (const cJSON *c = v->child; c; c = c->next) n++;
        const char **names = n ? malloc(n * sizeof *names) : NULL;
        if (n && !names) return "(out of memory)";
        size_t i = 0;
        for (const cJSON *c = v->child; c; c = c->next) names[i++] = c->string ? c->string : "";
        qsort(names, n, sizeof *names, cmp_name);
        const char *d = NULL;
        for (i = 1; i < n && !d; i++)
            if (!strcmp(names[i - 1], names[i])) d = names[i];
        free(names);
        if (d) return d;
    }
    if (cJSON_IsObject(v) || cJSON_IsArray(v))
        for (const cJSON *c = v->child; c; c = c->next) {
            const char *d = dup_key(c);
            if (d) return d;
        }
    return NULL;
}

/* Strict JSON parse of a whole buffer (any whitespace, any key order), no
 * duplicate keys. */
static int parse_any(const char *buf, size_t len, const char *what, const char *doc_name, cJSON **out, wp_err *e)
{
    const char *end = NULL;
    cJSON *j = cJSON_ParseWithLengthOpts(buf, len, &end, 0);
    if (j && end) {
        while (end < buf + len && (*end == ' ' || *end == '\t' || *end == '\n' || *end == '\r')) end++;
        if (end != buf + len) {
            cJSON_Delete(j);
            j = NULL;
        }
    }
    if (!j) return wp_fail(e, WP_EINVAL, "%s: %s is not valid JSON", what, doc_name);
    const char *d = dup_key(j);
    if (d) {
        cJSON_Delete(j);
        return wp_fail(e, WP_EINVAL, "%s: %s has the key \"%.64s\" twice in one object", what, doc_name, d);
    }
    *out = j;
    return 0;
}

/* Every key of object o is one of `known` (NULL-terminated): a field we do
 * not check would be a blind spot for the tools that trust the bundle. */
static const char *unknown_key(const cJSON *o, const char *const *known)
{
    for (const cJSON *c = o ? o->child : NULL; c; c = c->next) {
        int ok = 0;
        for (const char *const *k = known; *k && !ok; k++) ok = c->string && !strcmp(c->string, *k);
        if (!ok) return c->string ? c->string : "";
    }
    return NULL;
}

/* Another signer's bundle: any JSON encoding, but only the fields of a
 * key-signed Sigstore bundle, each one checked or empty. */
static int foreign_shape(const cJSON *b, const char *what, wp_err *e)
{
    static const char *const top[] = {"mediaType", "verificationMaterial", "dsseEnvelope", NULL};
    static const char *const vmk[] = {"publicKey", "tlogEntries", "timestampVerificationData", NULL};
    static const char *const pkk[] = {"hint", NULL};
    static const char *const envk[] = {"payload", "payloadType", "signatures", NULL};
    static const char *const sigk[] = {"sig", "keyid", NULL};
    const cJSON *vm = cJSON_GetObjectItemCaseSensitive(b, "verificationMaterial");
    const cJSON *pk = cJSON_GetObjectItemCaseSensitive(vm, "publicKey");
    const cJSON *tl = cJSON_GetObjectItemCaseSensitive(vm, "tlogEntries");
    const cJSON *ts = cJSON_GetObjectItemCaseSensitive(vm, "timestampVerificationData");
    const cJSON *env = cJSON_GetObjectItemCaseSensitive(b, "dsseEnvelope");
    const cJSON *sigs = cJSON_GetObjectItemCaseSensitive(env, "signatures");
    const char *u;
    if (!cJSON_IsObject(b) || !cJSON_IsObject(vm) || !cJSON_IsObject(env))
        return wp_fail(e, WP_EINVAL, "%s: a Sigstore bundle needs mediaType, verificationMaterial and dsseEnvelope",
                       what);
    if ((u = unknown_key(b, top)) || (u = unknown_key(vm, vmk)) || (u = unknown_key(env, envk)))
        return wp_fail(e, WP_EINVAL, "%s: field \"%.64s\" is not one wpack checks (key-signed bundles only)", what, u);
    if (!cJSON_IsObject(pk))
        return wp_fail(e, WP_EINVAL, "%s: verificationMaterial.publicKey is missing (only key-signed bundles are "
                                     "checked: no certificates, no transparency log)", what);
    if ((u = unknown_key(pk, pkk)))
        return wp_fail(e, WP_EINVAL, "%s: publicKey.%.64s is not checked by wpack (re-sign with model-signing 1.1 or "
                                     "later, which writes publicKey.hint)", what, u);
    if (tl && (!cJSON_IsArray(tl) || cJSON_GetArraySize(tl)))
        return wp_fail(e, WP_EINVAL, "%s: transparency log entries are not checked by wpack (key-signed bundles only)",
                       what);
    if (ts && (!cJSON_IsObject(ts) || ts->child))
        return wp_fail(e, WP_EINVAL, "%s: timestampVerificationData is not checked by wpack", what);
    if (!wp_jstr(env, "payload") || !wp_jstr(env, "payloadType") || !cJSON_IsArray(sigs) || !cJSON_GetArraySize(sigs))
        return wp_fail(e, WP_EINVAL, "%s: DSSE envelope needs payload, payloadType and signatures", what);
    if (!wp_b64_canonical(wp_jstr(env, "payload")))
        return wp_fail(e, WP_EINVAL, "%s: payload base64 is not in canonical form", what);
    for (const cJSON *s = sigs->child; s; s = s->next) {
        const cJSON *kid = cJSON_GetObjectItemCaseSensitive(s, "keyid");
        if (!cJSON_IsObject(s) || (u = unknown_key(s, sigk)) || !wp_jstr(s, "sig") ||
            (kid && !cJSON_IsNull(kid) && !cJSON_IsString(kid)))
            return wp_fail(e, WP_EINVAL, "%s: each DSSE signature is {\"sig\", \"keyid\"?}", what);
        if (!wp_b64_canonical(wp_jstr(s, "sig")))
            return wp_fail(e, WP_EINVAL, "%s: signature base64 is not in canonical form", what);
    }
    return 0;
}

/* wpack's own bundle: exactly the canonical document wp_dsse_bundle_make
 * writes, its keyid the given key's. */
static int wpack_shape(const char *doc, size_t len, const char *what, const wp_key *k, wp_err *e)
{
    cJSON *b = NULL;
    int rc = wp_json_parse_canonical(doc, len, what, &b, e);
    if (rc) return rc;
    static const char *const top[] = {"mediaType", "verificationMaterial", "dsseEnvelope", NULL};
    static const char *const vmk[] = {"publicKey", "tlogEntries", NULL};
    static const char *const pkk[] = {"hint", NULL};
    static const char *const envk[] = {"payload", "payloadType", "signatures", NULL};
    static const char *const sigk[] = {"keyid", "sig", NULL};
    const cJSON *vm = cJSON_GetObjectItemCaseSensitive(b, "verificationMaterial");
    const cJSON *pk = cJSON_GetObjectItemCaseSensitive(vm, "publicKey");
    const cJSON *tl = cJSON_GetObjectItemCaseSensitive(vm, "tlogEntries");
    const cJSON *env = cJSON_GetObjectItemCaseSensitive(b, "dsseEnvelope");
    const cJSON *sigs = cJSON_GetObjectItemCaseSensitive(env, "signatures");
    const cJSON *s0 = cJSON_GetArrayItem(sigs, 0);
    int ok = cJSON_GetArraySize(b) == 3 && !unknown_key(b, top) && cJSON_GetArraySize(vm) == 2 &&
             !unknown_key(vm, vmk) && cJSON_GetArraySize(pk) == 1 && !unknown_key(pk, pkk) && wp_jstr(pk, "hint") &&
             cJSON_IsArray(tl) && !cJSON_GetArraySize(tl) && cJSON_GetArraySize(env) == 3 &&
             !unknown_key(env, envk) && wp_jstr(env, "payload") && wp_jstr(env, "payloadType") &&
             cJSON_GetArraySize(sigs) == 1 && cJSON_GetArraySize(s0) == 2 && !unknown_key(s0, sigk) &&
             wp_jstr(s0, "sig") && wp_jstr(s0, "keyid") && wp_jstr(b, "mediaType") &&
             !strcmp(wp_jstr(b, "mediaType"), WP_SIGSTORE_BUNDLE_TYPE);
    if (!ok) rc = wp_fail(e, WP_EINVAL, "%s: not the bundle layout wpack sign writes (docs/signing.md §4)", what);
    else if (!wp_b64_canonical(wp_jstr(env, "payload")) || !wp_b64_canonical(wp_jstr(s0, "sig")))
        rc = wp_fail(e, WP_EINVAL, "%s: base64 is not in canonical form", what);
    else if (k) {
        char kid[65];
        rc = wp_key_id(k, kid, e);
        if (!rc && strcmp(wp_jstr(s0, "keyid"), kid))
            rc = wp_fail(e, WP_EVERIFY, "%s: signature keyid %.16s... is not the given key's (%.16s...)", what,
                         wp_jstr(s0, "keyid"), kid);
    }
    cJSON_Delete(b);
    return rc;
}

/* The payload of an unverified bundle (integrity-only mode). */
static int payload_unchecked(const char *doc, size_t len, const char *what, char **p, size_t *plen, char **ptype,
                             wp_err *e)
{
    cJSON *b = cJSON_ParseWithLength(doc, len);
    const cJSON *env = cJSON_GetObjectItemCaseSensitive(b, "dsseEnvelope");
    const char *pay = wp_jstr(env, "payload"), *type = wp_jstr(env, "payloadType");
    uint8_t *body = NULL;
    size_t n = 0;
    wp_err be = {0};
    int rc = 0;
    if (!pay || !type) rc = wp_fail(e, WP_EINVAL, "%s: DSSE envelope needs payload and payloadType", what);
    else if (wp_base64_decode(pay, &body, &n, &be)) rc = wp_fail(e, WP_EINVAL, "%s: payload: %s", what, be.msg);
    if (!rc) {
        *p = wp_malloc(n + 1, e);
        *ptype = wp_strdup(type, e);
        if (!*p || !*ptype) rc = WP_ENOMEM;
        else {
            memcpy(*p, body, n);
            (*p)[n] = 0;
            *plen = n;
        }
    }
    free(body);
    cJSON_Delete(b);
    return rc;
}

static int add_line(wp_msig_result *r, wp_err *e, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int add_line(wp_msig_result *r, wp_err *e, const char *fmt, ...)
{
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    wp_fail(e, WP_EVERIFY, "%s", line);
    wp_err pe = {0};
    return wp_strv_push(&r->fails, line, &pe) ? WP_ENOMEM : 0;
}

typedef struct mres {
    const char *name;
    uint8_t d[WP_SHA256_LEN];
} mres;

static int mres_cmp(const void *a, const void *b) { return strcmp(((const mres *)a)->name, ((const mres *)b)->name); }

int wp_msig_verify(const char *dir, const char *doc, size_t len, const wp_msig_opts *o, wp_msig_result *r,
                   wp_err *e)
{
    memset(r, 0, sizeof *r);
    char what[4200];
    snprintf(what, sizeof what, "%s/%s", dir, o->bundle_rel);
    int signer = wp_msig_bundle_signer(doc, len);
    if (signer < 0) return wp_fail(e, WP_EINVAL, "%s: not a Sigstore bundle with a DSSE envelope", what);
    r->foreign = signer == 0;
    cJSON *b = NULL, *st = NULL;
    char *payload = NULL, *ptype = NULL;
    size_t plen = 0;
    int rc = 0;
    if (r->foreign) {
        rc = parse_any(doc, len, what, "the bundle", &b, e);
        if (!rc) rc = foreign_shape(b, what, e);
    } else {
        rc = wpack_shape(doc, len, what, o->key, e);
    }
    if (!rc && o->key) {
        rc = wp_dsse_bundle_verify(o->key, doc, len, what, &payload, &plen, &ptype, e);
        r->verified = !rc;
    } else if (!rc) {
        rc = payload_unchecked(doc, len, what, &payload, &plen, &ptype, e);
    }
    if (!rc && strcmp(ptype, WP_INTOTO_PAYLOAD_TYPE))
        rc = wp_fail(e, WP_EINVAL, "%s: payloadType is %s, not %s", what, ptype, WP_INTOTO_PAYLOAD_TYPE);
    /* the statement: what was signed, read as it is (wpack's own is canonical) */
    if (!rc) rc = r->foreign ? parse_any(payload, plen, what, "the statement", &st, e)
                             : wp_json_parse_canonical(payload, plen, what, &st, e);
    const char *t = rc ? NULL : wp_jstr(st, "_type"), *pt = rc ? NULL : wp_jstr(st, "predicateType");
    const cJSON *subj = cJSON_GetObjectItemCaseSensitive(st, "subject");
    const cJSON *pred = cJSON_GetObjectItemCaseSensitive(st, "predicate");
    const cJSON *ser = cJSON_GetObjectItemCaseSensitive(pred, "serialization");
    const cJSON *ra = cJSON_GetObjectItemCaseSensitive(pred, "resources");
    const cJSON *sym = cJSON_GetObjectItemCaseSensitive(ser, "allow_symlinks");
    const cJSON *ign = cJSON_GetObjectItemCaseSensitive(ser, "ignore_paths");
    const char *sd = cJSON_GetArraySize(subj) == 1
                         ? wp_jstr(cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(subj, 0), "digest"), "sha256")
                         : NULL;
    static const char *const serk[] = {"method", "hash_type", "allow_symlinks", "ignore_paths", NULL};
    const char *u = NULL;
    if (rc) {
    } else if (!t || strcmp(t, WP_INTOTO_STATEMENT_TYPE)) {
        rc = wp_fail(e, WP_EINVAL, "%s: payload is not an in-toto Statement v1", what);
    } else if (!pt || strcmp(pt, WP_MODEL_SIGNING_PREDICATE)) {
        rc = wp_fail(e, WP_EINVAL, "%s: predicateType is not %s", what, WP_MODEL_SIGNING_PREDICATE);
    } else if (!wp_is_hex64(sd)) {
        rc = wp_fail(e, WP_EINVAL, "%s: statement needs one subject with a sha256 digest", what);
    } else if (!cJSON_IsObject(ser) || !wp_jstr(ser, "method") || !wp_jstr(ser, "hash_type") || !cJSON_IsBool(sym)) {
        rc = wp_fail(e, WP_EINVAL, "%s: predicate.serialization needs method, hash_type and allow_symlinks", what);
    } else if (strcmp(wp_jstr(ser, "method"), "files")) {
        rc = wp_fail(e, WP_EINVAL, "%s: serialization method \"%.32s\" is not supported (only \"files\")", what,
                     wp_jstr(ser, "method"));
    } else if (strcmp(wp_jstr(ser, "hash_type"), "sha256")) {
        rc = wp_fail(e, WP_EINVAL, "%s: hash_type \"%.32s\" is not supported (only \"sha256\")", what,
                     wp_jstr(ser, "hash_type"));
    } else if ((u = unknown_key(ser, serk))) {
        rc = wp_fail(e, WP_EINVAL, "%s: serialization parameter \"%.64s\" is not known to wpack", what, u);
    } else if (ign && !cJSON_IsArray(ign)) {
        rc = wp_fail(e, WP_EINVAL, "%s: serialization.ignore_paths is not an array", what);
    } else if (!cJSON_IsArray(ra) || !cJSON_GetArraySize(ra)) {
        rc = wp_fail(e, WP_EINVAL, "%s: predicate.resources must list at least one file", what);
    } else if (cJSON_GetArraySize(ra) > MAX_FILES || cJSON_GetArraySize(ign) > MAX_FILES) {
        rc = wp_fail(e, WP_EINVAL, "%s: more than %d resources or ignore_paths", what, MAX_FILES);
    }
    /* the ignore rules: defaults, the bundle's own, the bundle file, the caller's */
    size_t nign = cJSON_GetArraySize(ign), nres = cJSON_GetArraySize(ra);
    const char **skip = rc ? NULL : wp_calloc(NDEFAULT + nign + 1 + o->nskip, sizeof *skip, e);
    mres *res = skip ? wp_calloc(nres, sizeof *res, e) : NULL;
    if (!rc && !res) rc = WP_ENOMEM;
    size_t nskip = 0;
    for (size_t i = 0; !rc && i < NDEFAULT; i++) skip[nskip++] = default_ignores[i];
    for (const cJSON *p = rc || !ign ? NULL : ign->child; p && !rc; p = p->next) {
        if (!cJSON_IsString(p) || !wp_rel_path_ok(p->valuestring))
            rc = wp_fail(e, WP_EINVAL, "%s: serialization.ignore_paths: each entry is a relative path", what);
        else skip[nskip++] = p->valuestring;
    }
    if (!rc) skip[nskip++] = o->bundle_rel;
    for (size_t i = 0; !rc && i < o->nskip; i++) skip[nskip++] = o->skip[i];
    /* the resources, and the root digest over them in their listed order */
    wp_sha256 h;
    int hashing = 0;
    if (!rc && !(rc = wp_sha256_init(&h, e))) hashing = 1;
    size_t i = 0;
    for (const cJSON *x = rc ? NULL : ra->child; x && !rc; x = x->next, i++) {
        const char *nm = wp_jstr(x, "name"), *alg = wp_jstr(x, "algorithm"), *dg = wp_jstr(x, "digest");
        if (!nm || !alg || strcmp(alg, "sha256") || !wp_is_hex64(dg) || wp_unhex(dg, res[i].d, WP_SHA256_LEN))
            rc = wp_fail(e, WP_EINVAL, "%s: resources[%zu] needs name, algorithm \"sha256\" and a lowercase hex digest",
                         what, i);
        else if (!wp_rel_path_ok(nm))
            rc = wp_fail(e, WP_EINVAL, "%s: resources[%zu]: \"%.200s\" is not a relative path inside the model", what,
                         i, nm);
        else {
            res[i].name = nm;
            wp_sha256_update(&h, res[i].d, WP_SHA256_LEN);
        }
    }
    if (hashing) {
        uint8_t root[WP_SHA256_LEN], want[WP_SHA256_LEN];
        if (rc) wp_sha256_free(&h);
        else {
            wp_sha256_final(&h, root);
            wp_unhex(sd, want, WP_SHA256_LEN);
            if (memcmp(root, want, WP_SHA256_LEN))
                rc = wp_fail(e, WP_EVERIFY, "%s: subject digest %.16s... is not the digest of the listed resources",
                             what, sd);
            else memcpy(r->root, sd, 65);
        }
    }
    if (!rc) {
        r->nresources = nres;
        qsort(res, nres, sizeof *res, mres_cmp);
        for (size_t k = 1; k < nres && !rc; k++)
            if (!strcmp(res[k - 1].name, res[k].name))
                rc = wp_fail(e, WP_EINVAL, "%s: resource %.200s is listed twice", what, res[k].name);
    }
    /* the files on disk against the resources */
    walker w = {.root = dir, .skip = skip, .nskip = nskip, .allow_symlinks = cJSON_IsTrue(sym)};
    if (!rc) rc = walk(&w, "", 0, e);
    wp_err fe = {0};
    char **tohash = !rc ? wp_calloc(nres + 1, sizeof *tohash, e) : NULL;
    size_t *tidx = tohash ? wp_calloc(nres + 1, sizeof *tidx, e) : NULL;
    uint8_t (*got)[WP_SHA256_LEN] = tidx ? wp_calloc(nres + 1, sizeof *got, e) : NULL;
    if (!rc && !got) rc = WP_ENOMEM;
    size_t nh = 0;
    for (size_t k = 0; !rc && k < w.odd.n; k++) rc = add_line(r, &fe, "%s", w.odd.v[k]);
    for (size_t k = 0; !rc && k < nres; k++) {
        char full[4096];
        struct stat sb;
        if (wp_path_join(full, sizeof full, dir, res[k].name)) {
            rc = add_line(r, &fe, "%s/%s: path too long", dir, res[k].name);
            continue;
        }
        if (lstat(full, &sb) != 0) {
            if (errno == ENOENT || errno == ENOTDIR) rc = add_line(r, &fe, "%s: missing (signed in %s)", full, what);
            else rc = wp_fail_errno(e, "%s: cannot stat", full);
            continue;
        }
        if (S_ISLNK(sb.st_mode)) {
            if (!w.allow_symlinks || stat(full, &sb) != 0) {
                if (!w.allow_symlinks && skipped(&w, res[k].name))
                    rc = add_line(r, &fe, "%s: symbolic link: not signed (serialization.allow_symlinks is false)",
                                  full);
                else if (w.allow_symlinks)
                    rc = add_line(r, &fe, "%s: dangling symbolic link", full);
                continue;   /* otherwise the walk reported it */
            }
        }
        if (!S_ISREG(sb.st_mode)) {
            rc = add_line(r, &fe, "%s: not a regular file (signed in %s as one)", full, what);
            continue;
        }
        /* a file of a version-1 build: its bytes are checked against the
         * manifest's whole-file SHA-256 by the caller; here the digests must
         * agree.  A version-2 manifest records shard digests only, so the
         * file is hashed against the signed digest like any other. */
        int mi = o->m && o->m->version == 1 ? wp_manifest_find_file(o->m, res[k].name) : -1;
        if (mi >= 0) {
            if (memcmp(o->m->files[mi].sha256, res[k].d, WP_SHA256_LEN)) {
                char a[65], m2[65];
                wp_hex(res[k].d, WP_SHA256_LEN, a);
                wp_hex(o->m->files[mi].sha256, WP_SHA256_LEN, m2);
                rc = add_line(r, &fe, "%s: signed sha256 %.16s... of %s differs from the manifest's (%.16s...)", what,
                              a, res[k].name, m2);
            }
            continue;
        }
        tohash[nh] = (char *)res[k].name;
        tidx[nh++] = k;
    }
    for (size_t k = 0; !rc && k < w.files.n; k++) {
        mres key = {.name = w.files.v[k]};
        if (!bsearch(&key, res, nres, sizeof *res, mres_cmp))
            rc = add_line(r, &fe, "%s/%s: not covered by the signature (not among the resources of %s)", dir,
                          w.files.v[k], what);
    }
    if (!rc && nh) rc = hash_files(dir, tohash, nh, got, o->threads, o->progress, o->progress_ud, &r->bytes_hashed, e);
    for (size_t k = 0; !rc && k < nh; k++)
        if (memcmp(got[k], res[tidx[k]].d, WP_SHA256_LEN))
            rc = add_line(r, &fe, "%s/%s: sha256 differs from the digest signed in %s", dir, tohash[k], what);
    if (!rc && r->fails.n) {
        wp_fail(e, WP_EVERIFY, "%s", r->fails.v[0]);
        rc = WP_EVERIFY;
    }
    free(tohash);
    free(tidx);
    free(got);
    wp_strv_free(&w.files);
    wp_strv_free(&w.odd);
    free(res);
    free(skip);
    cJSON_Delete(st);
    cJSON_Delete(b);
    free(payload);
    free(ptype);
    return rc;
}
