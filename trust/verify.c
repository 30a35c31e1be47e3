/* verify.c — `wpack verify`, manifest creation and `wpack sign` over a build
 * (docs/signing.md §5). */
#include "trust/trust.h"
#include "trust/trust_priv.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/outdir.h"
#include "common/wp.h"
#include "format/wpk.h"
#include "trust/build.h"

/* Load f into huge pages (format/hugepages.c); `notice` gets the one-line
 * reason when it falls back to the plain mapping.  Never fatal for verify:
 * the bytes are the same either way. */
static void load_huge(wpk_file *f, char *notice, size_t sz)
{
    wpk_huge_kind hk = WPK_HUGE_NONE;
    wp_err he = {0};
    if (wpk_load_hugepages(f, WPK_HUGE_EXPLICIT, &hk, notice, sz, &he))
        snprintf(notice, sz, "huge pages: %.200s; using the plain mapping", he.msg);
}

#define MAX_MANIFEST ((size_t)1 << 30)
#define MAX_SIGDOC ((size_t)1 << 20)
#define MAX_FAIL_LINES 1000

/* ---- failures -------------------------------------------------------------------- */

/* Record one problem: every one goes into the report, the first into e. */
static int add_fail(wp_verify_report *r, wp_err *e, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int add_fail(wp_verify_report *r, wp_err *e, const char *fmt, ...)
{
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    wp_fail(e, WP_EVERIFY, "%s", line);
    r->nfail_total++;
    if (r->nfail < MAX_FAIL_LINES) {
        char **v = realloc(r->fail, (r->nfail + 1) * sizeof *v);
        char *s = strdup(line);
        if (v && s) {
            r->fail = v;
            r->fail[r->nfail++] = s;
        } else {
            if (v) r->fail = v;
            free(s);
        }
    }
    return WP_EVERIFY;
}

/* add_fail that also names the setting which would change the outcome. */
static int add_fail_setting(wp_verify_report *r, wp_err *e, const char *setting, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int add_fail_setting(wp_verify_report *r, wp_err *e, const char *setting, const char *fmt, ...)
{
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    int first = e && !e->code;
    int rc = add_fail(r, e, "%s", line);
    if (first) snprintf(e->setting, sizeof e->setting, "%s", setting);
    return rc;
}

/* A content problem reported by a reader (WP_EINVAL: malformed) is, for
 * verify, a failed check: exit 1, not "unreadable". */
static int absorb(wp_verify_report *r, wp_err *e, int rc, const wp_err *sub)
{
    if (rc == WP_EINVAL || rc == WP_EVERIFY) return add_fail(r, e, "%s", sub->msg);
    wp_fail(e, rc, "%s", sub->msg);
    return rc;
}

void wp_verify_report_free(wp_verify_report *r)
{
    if (!r) return;
    for (size_t i = 0; i < r->nfail; i++) free(r->fail[i]);
    for (size_t i = 0; i < r->nextra; i++) free(r->extra[i]);
    free(r->fail);
    free(r->extra);
    memset(r, 0, sizeof *r);
}

static int join(char *out, size_t sz, const char *dir, const char *name, wp_err *e)
{
    if (wp_path_join(out, sz, dir, name)) return wp_fail(e, WP_EUSAGE, "%s/%s: path too long", dir, name);
    return 0;
}

static int exists(const char *path)
{
    struct stat st;
    return lstat(path, &st) == 0;
}

static void hexs(const uint8_t *d, char out[65]) { wp_hex(d, WP_SHA256_LEN, out); }

/* ---- strictness for files wpack itself wrote -------------------------------------- */

static int nkeys(const cJSON *o)
{
    return cJSON_IsObject(o) ? cJSON_GetArraySize(o) : -1;
}

/* manifest.dsse.json of a wpack build: exactly the canonical document
 * wp_dsse_bundle_make writes, so that every byte of it is either signed or
 * checked (the DSSE keyid is an unauthenticated hint: we require it to be
 * the given key's id rather than ignore it). */
static int dsse_shape(const char *doc, size_t len, const char *what, const char *keyid, wp_err *e)
{
    cJSON *b = NULL;
    int rc = wp_json_parse_canonical(doc, len, what, &b, e);
    if (rc) return rc;
    const cJSON *vm = cJSON_GetObjectItemCaseSensitive(b, "verificationMaterial");
    const cJSON *pk = cJSON_GetObjectItemCaseSensitive(vm, "publicKey");
    const cJSON *tl = cJSON_GetObjectItemCaseSensitive(vm, "tlogEntries");
    const cJSON *env = cJSON_GetObjectItemCaseSensitive(b, "dsseEnvelope");
    const cJSON *sigs = cJSON_GetObjectItemCaseSensitive(env, "signatures");
    const cJSON *s0 = cJSON_GetArrayItem(sigs, 0);
    int ok = nkeys(b) == 3 && wp_jstr(b, "mediaType") && !strcmp(wp_jstr(b, "mediaType"), WP_SIGSTORE_BUNDLE_TYPE) &&
             nkeys(vm) == 2 && nkeys(pk) == 1 && wp_jstr(pk, "hint") && cJSON_IsArray(tl) &&
             cJSON_GetArraySize(tl) == 0 && nkeys(env) == 3 && wp_jstr(env, "payload") && wp_jstr(env, "payloadType") &&
             cJSON_IsArray(sigs) && cJSON_GetArraySize(sigs) == 1 && nkeys(s0) == 2 && wp_jstr(s0, "sig") &&
             wp_jstr(s0, "keyid");
    if (!ok) rc = wp_fail(e, WP_EINVAL, "%s: not the bundle layout wpack sign writes (docs/signing.md §4)", what);
    else if (!wp_b64_canonical(wp_jstr(env, "payload")) || !wp_b64_canonical(wp_jstr(s0, "sig")))
        rc = wp_fail(e, WP_EINVAL, "%s: base64 is not in canonical form", what);
    else if (strcmp(wp_jstr(s0, "keyid"), keyid))
        rc = wp_fail(e, WP_EVERIFY, "%s: signature keyid %.16s... is not the given key's (%.16s...)", what,
                     wp_jstr(s0, "keyid"), keyid);
    cJSON_Delete(b);
    return rc;
}

static int sig_b64_canonical(const char *doc, size_t len, const char *what, wp_err *e)
{
    cJSON *o = cJSON_ParseWithLength(doc, len);
    const char *s = wp_jstr(o, "signature");
    int rc = s && !wp_b64_canonical(s) ? wp_fail(e, WP_EINVAL, "%s: signature base64 is not in canonical form", what) : 0;
    cJSON_Delete(o);
    return rc;
}

/* ---- building the digest jobs ------------------------------------------------------- */

/* One file of the build as verify sees it. */
typedef struct vfile {
    char path[4096];        /* BUILD/rel */
    int fd;                 /* -1 if missing/unusable */
    int ok;                 /* present with the right size: its bytes get hashed */
    wpk_file *wpk;          /* if it is a .wpk that opened */
    uint64_t t_first, t_count;   /* its tensors in the manifest */
    wp_range *gaps;         /* non-tensor ranges */
    size_t ngaps;
} vfile;

/* The complement of the (sorted, non-overlapping) tensor ranges in [0, size). */
static int make_gaps(vfile *vf, const wp_mtensor *t, uint64_t nt, uint64_t size, wp_err *e)
{
    vf->gaps = wp_calloc((size_t)nt + 1, sizeof *vf->gaps, e);
    if (!vf->gaps) return WP_ENOMEM;
    uint64_t at = 0;
    for (uint64_t i = 0; i < nt; i++) {
        if (t[i].offset > at) vf->gaps[vf->ngaps++] = (wp_range){at, t[i].offset - at};
        if (t[i].offset + t[i].size > at) at = t[i].offset + t[i].size;
    }
    if (size > at) vf->gaps[vf->ngaps++] = (wp_range){at, size - at};
    return 0;
}

/* The manifest's tensors of one .wpk must be exactly its directory. */
static void cross_check(const wp_manifest *m, vfile *vf, wp_verify_report *r, wp_err *e)
{
    size_t n = wpk_count(vf->wpk);
    if (n != vf->t_count) {
        add_fail(r, e, "%s: the manifest lists %llu tensors, the container's directory has %zu", vf->path,
                 (unsigned long long)vf->t_count, n);
        return;
    }
    /* the container's layout is canonical (docs/format.md §2): directory order
     * is offset order, the same order as the manifest's */
    for (size_t i = 0; i < n; i++) {
        const wpk_tensor *d = wpk_tensor_at(vf->wpk, i);
        const wp_mtensor *t = &m->tensors[vf->t_first + i];
        if (strcmp(d->name, t->name) || d->offset != t->offset || d->size != t->size) {
            add_fail(r, e,
                     "%s: manifest tensor %s at bytes [%llu, %llu) but the container has %s at [%llu, %llu)",
                     vf->path, t->name, (unsigned long long)t->offset, (unsigned long long)(t->offset + t->size),
                     d->name, (unsigned long long)d->offset, (unsigned long long)(d->offset + d->size));
        } else if (memcmp(d->sha256, t->sha256, WP_SHA256_LEN)) {
            char a[65], b[65];
            hexs(t->sha256, a);
            hexs(d->sha256, b);
            add_fail(r, e, "%s: %s: manifest sha256 %.16s... differs from the container's directory (%.16s...)",
                     vf->path, t->name, a, b);
        }
    }
}

/* ---- verify: one run over a build, phase by phase ---------------------------------
 * open (the manifest) -> signature -> containers (the files on disk against
 * the manifest) -> extras (files the manifest does not list) -> digests.
 * A phase returns 0, WP_EVERIFY (it found problems, all in the report: the
 * next phases still run, so the report is complete) or a hard error (the
 * run stops). */

typedef struct vctx {
    const char *root;            /* BUILD */
    const wp_verify_opts *o;
    wp_verify_report *r;
    wp_err *e;
    int skip_sig;                /* wpack sign re-checks a build it is about to (re)sign */
    const wp_key *key;
    wp_build *b;
    const wp_manifest *m;        /* from phase_manifest */
    vfile *vf;                   /* from phase_containers: one per manifest file */
    wp_verify_opts o_deep;       /* o with deep set: a foreign bundle's whole-file digests */
} vctx;

static int hard(int rc) { return rc && rc != WP_EVERIFY; }

/* 1. The manifest: absent or malformed is a failed check, not an error. */
static int phase_manifest(vctx *c)
{
    wp_verify_report *r = c->r;
    char mpath[4096];
    int rc = join(mpath, sizeof mpath, c->root, WP_MANIFEST_NAME, c->e);
    if (rc) return rc;
    if (!wp_build_has_manifest(c->b))
        return add_fail(r, c->e, "%s: no %s: not a build directory, or an incomplete one", c->root, WP_MANIFEST_NAME);
    wp_err se = {0};
    rc = wp_build_manifest(c->b, &c->m, &se);
    if (rc) return absorb(r, c->e, rc, &se);
    hexs(c->m->root, r->root);
    r->nfiles = c->m->nfiles;
    r->ntensors = c->m->ntensors;
    return 0;
}

/* manifest.sig and manifest.dsse.json are one signature or none: the bundle
 * must be made with manifest.sig's key (docs/signing.md §3.3).  wpack sign
 * replaces them in an order that never leaves two keys side by side, so a
 * mixed pair is an edit or a copy, never an interrupted sign. */
static int pair_check(vctx *c, const char *dssep, const char *sig_keyid)
{
    char *doc = NULL;
    size_t len = 0;
    wp_err se = {0};
    int rc = wp_read_small_file(dssep, MAX_MANIFEST, &doc, &len, &se);
    if (rc) return absorb(c->r, c->e, rc, &se);
    cJSON *b = cJSON_ParseWithLength(doc, len);
    free(doc);
    const cJSON *sigs = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(b, "dsseEnvelope"), "signatures");
    const char *kid = wp_jstr(cJSON_GetArrayItem(sigs, 0), "keyid");
    if (!kid)
        rc = add_fail(c->r, c->e, "%s: names no signing key: not the bundle wpack sign writes (docs/signing.md §4), "
                                  "so it cannot be matched with %s", dssep, WP_MANIFEST_SIG_NAME);
    else if (strcmp(kid, sig_keyid))
        rc = add_fail(c->r, c->e, "%s: made with key %.16s..., %s with key %.16s...: not one signature (sign the "
                                  "build again)", dssep, kid, WP_MANIFEST_SIG_NAME, sig_keyid);
    cJSON_Delete(b);
    return rc;
}

/* A model-signing bundle another signer made (DSSE keyid empty or absent)
 * in BUILD/manifest.dsse.json: its signature over the payload bytes as they
 * are, its statement in any JSON encoding, every resource against the build
 * (a manifest-listed file's signed digest against the manifest's whole-file
 * sha256, which the digest phase then checks: deep), and no file of the
 * build left out (docs/signing.md §8). */
static int foreign_bundle(vctx *c, const char *dssep)
{
    wp_verify_report *r = c->r;
    wp_err *e = c->e;
    if (!c->key) {
        if (r->sig_present || c->o->allow_unsigned) return 0;
        return add_fail_setting(r, e, "key",
                                "%s: signed with a model-signing bundle (%s) but no public key was given to check "
                                "it (or accept it unchecked to check integrity only)",
                                c->root, WP_MANIFEST_DSSE_NAME);
    }
    char *doc = NULL;
    size_t len = 0;
    wp_err se = {0};
    int rc = wp_read_small_file(dssep, MAX_MANIFEST, &doc, &len, &se);
    if (rc) return absorb(r, e, rc, &se);
    static const char *const skip[] = {WP_MANIFEST_SIG_NAME};   /* checked by its own rules */
    wp_msig_opts mo = {.key = c->key, .bundle_rel = WP_MANIFEST_DSSE_NAME, .skip = skip, .nskip = 1, .m = c->m,
                       .threads = r->threads, .progress = c->o->progress, .progress_ud = c->o->progress_ud};
    wp_msig_result mr;
    rc = wp_msig_verify(c->root, doc, len, &mo, &mr, &se);
    free(doc);
    r->bytes_hashed += mr.bytes_hashed;
    if (rc == WP_EVERIFY && mr.fails.n) {
        for (size_t i = 0; i < mr.fails.n; i++) add_fail(r, e, "%s", mr.fails.v[i]);
    } else if (rc) {
        rc = absorb(r, e, rc, &se);
    }
    wp_msig_result_free(&mr);
    if (rc) return rc;
    r->dsse_verified = 1;
    c->o_deep = *c->o;
    c->o_deep.deep = 1;
    c->o = &c->o_deep;
    return 0;
}

/* 2. The signature policy, before any hashing: no point hashing 150 GB we
 * will reject anyway.  manifest.sig binds the exact manifest bytes; a
 * DSSE bundle, when present and a key is given, must verify too. */
static int phase_signature(vctx *c)
{
    wp_verify_report *r = c->r;
    wp_err *e = c->e;
    const wp_manifest *m = c->m;
    const wp_key *key = c->key;
    size_t rawlen = 0;
    const char *raw = wp_build_manifest_bytes(c->b, &rawlen);
    char sigp[4096], dssep[4096];
    int rc = join(sigp, sizeof sigp, c->root, WP_MANIFEST_SIG_NAME, e);
    if (!rc) rc = join(dssep, sizeof dssep, c->root, WP_MANIFEST_DSSE_NAME, e);
    if (rc) return rc;
    r->sig_present = wp_build_has_sig(c->b);
    r->dsse_present = wp_build_has_dsse(c->b);
    if (c->skip_sig) return 0;
    /* who wrote the bundle: wpack names its key in the DSSE keyid (strict
     * path: byte-exact layout, paired with manifest.sig); another signer
     * leaves it empty (lenient path: foreign_bundle) */
    int foreign = 0;
    if (r->dsse_present) {
        char *bd = NULL;
        size_t bl = 0;
        wp_err be = {0};
        rc = wp_read_small_file(dssep, MAX_MANIFEST, &bd, &bl, &be);
        if (rc) return absorb(r, e, rc, &be);
        foreign = r->dsse_foreign = wp_msig_bundle_signer(bd, bl) == 0;
        free(bd);
    }
    if (!r->sig_present && foreign) return foreign_bundle(c, dssep);
    if (!r->sig_present) {
        if (key)
            return add_fail_setting(r, e, "key", "%s: not signed (no %s), but a public key was given to check it",
                                    c->root, WP_MANIFEST_SIG_NAME);
        if (!c->o->allow_unsigned)
            return add_fail_setting(r, e, "allow-unsigned",
                                    "%s: not signed (no %s): sign it, or accept it unsigned to check integrity only",
                                    c->root, WP_MANIFEST_SIG_NAME);
        return 0;
    }
    char *doc = NULL;
    size_t doclen = 0;
    wp_err se = {0};
    rc = wp_read_small_file(sigp, MAX_SIGDOC, &doc, &doclen, &se);
    if (rc) return absorb(r, e, rc, &se);
    wp_sig_info info;
    rc = wp_sig_check(key, doc, doclen, sigp, raw, rawlen, &info, &se);
    if (!rc) rc = sig_b64_canonical(doc, doclen, sigp, &se);
    free(doc);
    if (rc) return absorb(r, e, rc, &se);
    memcpy(r->keyid, info.keyid, sizeof r->keyid);
    r->sig_verified = info.verified;
    if (r->dsse_present && !foreign && (rc = pair_check(c, dssep, info.keyid))) return rc;
    if (!key) {
        if (!c->o->allow_unsigned)
            return add_fail_setting(r, e, "key",
                                    "%s: signed by %s key %.16s... but no public key was given to check the "
                                    "signature (or accept it unchecked to check integrity only)",
                                    c->root, wp_key_alg_name(info.alg), info.keyid);
        return 0;
    }
    if (!r->dsse_present) return 0;
    if (foreign) return foreign_bundle(c, dssep);
    /* the DSSE bundle must be valid too when it is there: a verifier that
     * trusts it (model-signing tools) must not see something we did not check */
    rc = wp_read_small_file(dssep, MAX_MANIFEST, &doc, &doclen, &se);
    if (rc) return absorb(r, e, rc, &se);
    char *payload = NULL, *ptype = NULL;
    size_t plen = 0;
    char kid[65];
    rc = wp_key_id(key, kid, &se);
    if (!rc) rc = dsse_shape(doc, doclen, dssep, kid, &se);
    if (!rc) rc = wp_dsse_bundle_verify(key, doc, doclen, dssep, &payload, &plen, &ptype, &se);
    free(doc);
    if (!rc && strcmp(ptype, WP_INTOTO_PAYLOAD_TYPE))
        rc = wp_fail(&se, WP_EINVAL, "%s: payloadType is %s, not %s", dssep, ptype, WP_INTOTO_PAYLOAD_TYPE);
    if (!rc) {
        wp_resource *res = NULL;
        size_t nres = 0;
        uint64_t ssz = 0;
        rc = wp_manifest_resources(m, raw, rawlen, &res, &nres, &ssz, &se);
        if (!rc) rc = wp_intoto_check_sharded(payload, plen, dssep, res, nres, ssz, &se);
        wp_resources_free(res, nres);
    }
    free(payload);
    free(ptype);
    if (rc) return absorb(r, e, rc, &se);
    r->dsse_verified = 1;
    return 0;
}

/* 3. Every file the manifest lists, on disk: present, a regular file of
 * the listed size; a .wpk opens (structure) and its directory is exactly
 * the manifest's tensors of it.  Marks the files whose bytes get hashed. */
static int phase_containers(vctx *c)
{
    wp_verify_report *r = c->r;
    wp_err *e = c->e;
    const wp_manifest *m = c->m;
    vfile *vf = c->vf = wp_calloc(m->nfiles ? m->nfiles : 1, sizeof *vf, e);
    if (!vf) return WP_ENOMEM;
    for (uint32_t i = 0; i < m->nfiles; i++) vf[i].fd = -1;
    uint64_t ti = 0;
    int rc = 0;
    for (uint32_t i = 0; i < m->nfiles && !hard(rc); i++) {
        vfile *f = &vf[i];
        const wp_mfile *mf = &m->files[i];
        f->t_first = ti;
        while (ti < m->ntensors && m->tensors[ti].file == i) ti++;
        f->t_count = ti - f->t_first;
        if (join(f->path, sizeof f->path, c->root, mf->path, e)) {
            rc = WP_EUSAGE;
            break;
        }
        struct stat st;
        if (stat(f->path, &st) != 0) {
            rc = errno == ENOENT ? add_fail(r, e, "%s: missing (listed in the manifest)", f->path)
                                 : wp_fail_errno(e, "%s: cannot stat", f->path);
            continue;
        }
        if (!S_ISREG(st.st_mode)) {
            rc = add_fail(r, e, "%s: not a regular file", f->path);
            continue;
        }
        if ((uint64_t)st.st_size != mf->size) {
            rc = add_fail(r, e, "%s: size %llu, the manifest says %llu (%s)", f->path, (unsigned long long)st.st_size,
                          (unsigned long long)mf->size, (uint64_t)st.st_size < mf->size ? "truncated" : "grown");
            continue;
        }
        if (wp_str_ends_with(mf->path, ".wpk")) {
            wp_err we = {0};
            int orc = wp_build_part_at(c->b, mf->path, &f->wpk, &we);
            if (orc) {
                rc = absorb(r, e, orc, &we);
                continue;
            }
            f->fd = wpk_fd(f->wpk);
            cross_check(m, f, r, e);
        } else {
            f->fd = wp_open_read(f->path, e);
            if (f->fd < 0) {
                rc = wp_fail_errno(e, "%s: cannot open", f->path);
                continue;
            }
        }
        int grc = make_gaps(f, &m->tensors[f->t_first], f->t_count, mf->size, e);
        if (grc) {
            rc = grc;
            break;
        }
        f->ok = 1;
    }
    return rc;
}

/* 4. Files the manifest does not list: reported and ignored, except a
 * container, which is a failure (a build's parts are all signed). */
static int phase_extras(vctx *c)
{
    wp_verify_report *r = c->r;
    const wp_strv *all = NULL;
    int rc = wp_build_files(c->b, &all, c->e);
    if (rc) return rc;
    /* the listing skips dot files; wpack's own temporaries (an interrupted
     * sign's signature files) are said, not skipped silently */
    char note[sizeof r->notice];
    wp_strv temps = {0};
    if (wp_temps_note(c->root, "build", note, sizeof note, &temps)) {
        size_t at = strlen(r->notice);
        snprintf(r->notice + at, sizeof r->notice - at, "%s%s", at ? "; " : "", note);
        for (size_t i = 0; i < temps.n; i++) {
            char **v = realloc(r->extra, (r->nextra + 1) * sizeof *v);
            if (!v) break;
            r->extra = v;
            if ((r->extra[r->nextra] = strdup(temps.v[i]))) r->nextra++;
        }
    }
    wp_strv_free(&temps);
    for (size_t i = 0; i < all->n && !hard(rc); i++) {
        const char *p = all->v[i];
        if (wp_build_is_trust_file(p) || wp_manifest_find_file(c->m, p) >= 0) continue;
        if (wp_str_ends_with(p, ".wpk")) {
            rc = add_fail(r, c->e, "%s/%s: container not listed in the manifest", c->root, p);
            continue;
        }
        char **v = realloc(r->extra, (r->nextra + 1) * sizeof *v);
        if (v) {
            r->extra = v;
            if ((r->extra[r->nextra] = strdup(p))) r->nextra++;
        }
    }
    return rc;
}

/* 5. Digests, in parallel: every tensor, every file's non-tensor bytes and
 * (deep) every whole file, each against the manifest. */
static int phase_digests(vctx *c)
{
    wp_verify_report *r = c->r;
    wp_err *e = c->e;
    const wp_verify_opts *o = c->o;
    const wp_manifest *m = c->m;
    vfile *vf = c->vf;
    /* what each job is checked against, and what it is called */
    typedef struct jinfo {
        int kind;   /* 0 tensor, 1 non-tensor, 2 whole file (v1) or one shard (v2) */
        uint32_t file;
        uint64_t tensor;   /* kind 2: the shard */
    } jinfo;
    /* --deep: version 1 hashes each whole file (sequential per file); version 2
     * each shard of each file, independently, so a large file is spread over
     * every worker */
    size_t nwhole = 0;
    for (uint32_t i = 0; o->deep && i < m->nfiles; i++) nwhole += m->version == 1 ? 1 : (size_t)m->files[i].nshards;
    size_t njobs = 0, cap = (size_t)m->ntensors + (size_t)m->nfiles + nwhole + 1;
    wp_hash_job *jobs = wp_calloc(cap, sizeof *jobs, e);
    wp_range *whole = wp_calloc(nwhole + 1, sizeof *whole, e);
    size_t nw = 0;
    jinfo *ji = jobs && whole ? wp_calloc(cap, sizeof *ji, e) : NULL;
    wp_range *tr = ji ? wp_calloc((size_t)m->ntensors + 1, sizeof *tr, e) : NULL;
    int rc = 0;
    if (!tr) {
        rc = WP_ENOMEM;
        goto out;
    }
    for (uint32_t i = 0; i < m->nfiles; i++) {
        vfile *f = &vf[i];
        if (!f->ok) continue;
        if (o->hugepages && f->wpk) {
            char note[256] = "";
            load_huge(f->wpk, note, sizeof note);
            if (note[0] && !r->notice[0]) snprintf(r->notice, sizeof r->notice, "%s", note);
        }
        for (uint64_t k = f->t_first; k < f->t_first + f->t_count; k++) {
            const wp_mtensor *t = &m->tensors[k];
            wp_hash_job *j = &jobs[njobs];
            j->fd = f->fd;
            j->path = f->path;
            tr[k] = (wp_range){t->offset, t->size};
            const wpk_tensor *wt = f->wpk ? wpk_find(f->wpk, t->name) : NULL;
            if (o->hugepages && wt && wt->offset == t->offset && wt->size == t->size && t->size) {
                /* hash the copy the runtime would use */
                j->mem = wpk_data(f->wpk, wt);
                tr[k].off = 0;
            }
            j->ranges = &tr[k];
            j->nranges = 1;
            ji[njobs++] = (jinfo){0, i, k};
        }
        jobs[njobs] = (wp_hash_job){.fd = f->fd, .path = f->path, .ranges = f->gaps, .nranges = f->ngaps};
        ji[njobs++] = (jinfo){1, i, 0};
        if (o->deep && m->version == 1) {
            whole[nw] = (wp_range){0, m->files[i].size};
            jobs[njobs] = (wp_hash_job){.fd = f->fd, .path = f->path, .ranges = &whole[nw++], .nranges = 1};
            ji[njobs++] = (jinfo){2, i, 0};
        }
        for (uint64_t sh = 0; o->deep && m->version != 1 && sh < m->files[i].nshards; sh++) {
            uint64_t a = sh * m->shard_size, size = m->files[i].size;
            whole[nw] = (wp_range){a, size - a < m->shard_size ? size - a : m->shard_size};
            jobs[njobs] = (wp_hash_job){.fd = f->fd, .path = f->path, .ranges = &whole[nw++], .nranges = 1};
            ji[njobs++] = (jinfo){2, i, sh};
        }
    }
    for (size_t k = 0; k < njobs; k++)
        for (size_t q = 0; q < jobs[k].nranges; q++) r->bytes_hashed += jobs[k].ranges[q].len;
    rc = wp_hash_jobs(jobs, njobs, r->threads, o->progress, o->progress_ud, "verify", e);
    for (size_t k = 0; k < njobs && !hard(rc); k++) {
        const jinfo *q = &ji[k];
        const vfile *f = &vf[q->file];
        const wp_mfile *mf = &m->files[q->file];
        if (!jobs[k].done) continue;
        if (q->kind == 0) {
            const wp_mtensor *t = &m->tensors[q->tensor];
            if (memcmp(jobs[k].out, t->sha256, WP_SHA256_LEN))
                add_fail(r, e, "%s: %s: sha256 mismatch in bytes [%llu, %llu)", f->path, t->name,
                         (unsigned long long)t->offset, (unsigned long long)(t->offset + t->size));
        } else if (q->kind == 1) {
            if (!memcmp(jobs[k].out, mf->nontensor_sha256, WP_SHA256_LEN)) continue;
            /* localise: padding must be zero; otherwise it is the header region */
            wp_err pe = {0};
            if (f->wpk && wpk_check_padding(f->wpk, &pe) == WP_EVERIFY)
                add_fail(r, e, "%s", pe.msg);
            else if (f->wpk)
                add_fail(r, e, "%s: header region bytes [0, %llu) differ from the manifest (nontensor_sha256)",
                         f->path, (unsigned long long)wpk_data_offset(f->wpk));
            else
                add_fail(r, e, "%s: bytes outside tensor data differ from the manifest (nontensor_sha256)", f->path);
        } else if (m->version == 1) {
            if (memcmp(jobs[k].out, mf->sha256, WP_SHA256_LEN))
                add_fail(r, e, "%s: sha256 of the whole file (bytes [0, %llu)) differs from the manifest", f->path,
                         (unsigned long long)mf->size);
        } else if (memcmp(jobs[k].out, mf->shards[q->tensor], WP_SHA256_LEN)) {
            uint64_t a = q->tensor * m->shard_size;
            add_fail(r, e, "%s: sha256 of shard %llu (bytes [%llu, %llu)) differs from the manifest", f->path,
                     (unsigned long long)q->tensor, (unsigned long long)a,
                     (unsigned long long)(a + jobs[k].ranges[0].len));
        }
    }
out:
    free(jobs);
    free(ji);
    free(tr);
    free(whole);
    return rc;
}

/* A build directory: the phases in order; a hard error stops the run. */
static int verify_dir(vctx *c)
{
    int rc = phase_manifest(c);
    if (!rc) rc = phase_signature(c);
    if (rc) return rc;
    rc = phase_containers(c);
    int (*const later[])(vctx *) = {phase_extras, phase_digests};
    for (size_t i = 0; i < sizeof later / sizeof later[0] && !hard(rc); i++) {
        int prc = later[i](c);
        if (prc) rc = prc;
    }
    for (uint32_t i = 0; c->vf && i < c->m->nfiles; i++) {
        if (!c->vf[i].wpk && c->vf[i].fd >= 0) close(c->vf[i].fd);   /* parts are the build's */
        free(c->vf[i].gaps);
    }
    free(c->vf);
    c->vf = NULL;
    if (!rc && c->r->nfail_total) rc = WP_EVERIFY;
    return rc;
}

/* A directory without manifest.json signed with an OpenSSF model-signing
 * bundle, DIR/model.sig (e.g. an exported checkpoint): the bundle's
 * signature, then every file against it (docs/signing.md §8). */
static int verify_checkpoint(vctx *c, const char *msp)
{
    wp_verify_report *r = c->r;
    wp_err *e = c->e;
    r->is_checkpoint = 1;
    r->dsse_present = 1;
    if (!c->key && !c->o->allow_unsigned)
        return add_fail_setting(r, e, "key",
                                "%s: signed (%s) but no public key was given to check the signature (or accept it "
                                "unchecked to check integrity only)",
                                c->root, WP_MODEL_SIG_NAME);
    char *doc = NULL;
    size_t len = 0;
    wp_err se = {0};
    int rc = wp_read_small_file(msp, MAX_MANIFEST, &doc, &len, &se);
    if (rc) return absorb(r, e, rc, &se);
    wp_msig_opts mo = {.key = c->key, .bundle_rel = WP_MODEL_SIG_NAME, .threads = r->threads,
                       .progress = c->o->progress, .progress_ud = c->o->progress_ud};
    wp_msig_result mr;
    rc = wp_msig_verify(c->root, doc, len, &mo, &mr, &se);
    free(doc);
    r->dsse_foreign = mr.foreign;
    r->dsse_verified = mr.verified && !rc;
    r->nfiles = mr.nresources > UINT32_MAX ? UINT32_MAX : (uint32_t)mr.nresources;
    r->bytes_hashed = mr.bytes_hashed;
    memcpy(r->root, mr.root, sizeof r->root);
    if (rc == WP_EVERIFY && mr.fails.n) {
        for (size_t i = 0; i < mr.fails.n; i++) add_fail(r, e, "%s", mr.fails.v[i]);
    } else if (rc) {
        rc = absorb(r, e, rc, &se);
    }
    wp_msig_result_free(&mr);
    return rc;
}

/* A lone .wpk: structure, every tensor against its own directory, zero padding. */
static int verify_lone(vctx *c)
{
    wp_verify_report *r = c->r;
    wp_err *e = c->e;
    if (!c->o->allow_unsigned)
        return add_fail_setting(r, e, "allow-unsigned",
                                "%s: a lone .wpk carries no signature: verify its build directory, or accept it "
                                "unsigned to check integrity only",
                                c->root);
    wpk_file *f = NULL;
    wp_err we = {0};
    size_t nparts = 0;
    int rc = wp_build_parts(c->b, &nparts, &we);
    if (!rc) rc = wp_build_part(c->b, 0, &f, &we);
    if (rc) return absorb(r, e, rc, &we);
    if (c->o->hugepages) load_huge(f, r->notice, sizeof r->notice);
    size_t n = wpk_count(f);
    r->nfiles = 1;
    r->ntensors = n;
    hexs(wpk_header_sha256(f), r->root);   /* the closest thing a lone file has */
    wp_hash_job *jobs = wp_calloc(n + 1, sizeof *jobs, e);
    wp_range *tr = wp_calloc(n + 1, sizeof *tr, e);
    if (!jobs || !tr) rc = WP_ENOMEM;
    for (size_t i = 0; !rc && i < n; i++) {
        const wpk_tensor *t = wpk_tensor_at(f, i);
        tr[i] = (wp_range){t->offset, t->size};
        jobs[i] = (wp_hash_job){.fd = wpk_fd(f), .path = c->root, .ranges = &tr[i], .nranges = 1};
        if (c->o->hugepages && t->size) {
            jobs[i].mem = wpk_data(f, t);
            tr[i].off = 0;
        }
        r->bytes_hashed += t->size;
    }
    if (!rc) rc = wp_hash_jobs(jobs, n, r->threads, c->o->progress, c->o->progress_ud, "verify", e);
    for (size_t i = 0; !rc && i < n; i++) {
        const wpk_tensor *t = wpk_tensor_at(f, i);
        if (jobs[i].done && memcmp(jobs[i].out, t->sha256, WP_SHA256_LEN))
            add_fail(r, e, "%s: %s: sha256 mismatch in bytes [%llu, %llu)", c->root, t->name,
                     (unsigned long long)t->offset, (unsigned long long)(t->offset + t->size));
    }
    if (!rc) {
        int prc = wpk_check_padding(f, &we);
        if (prc) rc = absorb(r, e, prc, &we);
    }
    free(jobs);
    free(tr);
    if (!rc && r->nfail_total) rc = WP_EVERIFY;
    return rc;
}

static int verify_impl(const char *path, const wp_verify_opts *o, wp_verify_report *r, int skip_sig, wp_err *e)
{
    memset(r, 0, sizeof *r);
    double t0 = wp_now();
    r->threads = o->threads > 0 ? o->threads : wp_default_threads();
    wp_build *b = NULL;
    wp_err be = {0};
    int brc = wp_build_open(&b, path, &be);
    if (brc && brc != WP_EUSAGE) return wp_fail(e, brc, "%s", be.msg);   /* cannot look at it */
    wp_key *key = NULL;
    if (o->key_path) {
        int rc = wp_key_load_public(o->key_path, &key, e);
        if (rc) {
            wp_build_close(b);
            return rc;
        }
    }
    vctx c = {.root = path, .o = o, .r = r, .e = e, .skip_sig = skip_sig, .key = key, .b = b};
    int rc;
    if (brc) {
        rc = wp_fail(e, brc, "%s", be.msg);   /* neither a directory nor a file */
    } else if (wp_build_type(b) == WP_BUILD_DIR) {
        char msp[4096];
        rc = join(msp, sizeof msp, path, WP_MODEL_SIG_NAME, e);
        if (rc) {
        } else if (!wp_build_has_manifest(b) && exists(msp) && !skip_sig) {
            rc = verify_checkpoint(&c, msp);
        } else {
            r->is_build = 1;
            rc = verify_dir(&c);
        }
    } else {
        rc = key ? wp_fail_setting(e, WP_EUSAGE, "key",
                                   "%s: a lone .wpk has no signature to check with a public key; verify its build "
                                   "directory",
                                   path)
                 : verify_lone(&c);
    }
    wp_build_close(b);
    wp_key_free(key);
    r->seconds = wp_now() - t0;
    return rc;
}

int wp_verify_build(const char *path, const wp_verify_opts *o, wp_verify_report *r, wp_err *e)
{
    return verify_impl(path, o, r, 0, e);
}

cJSON *wp_verify_report_json(const char *path, const wp_verify_report *r, int rc, const wp_err *e)
{
    cJSON *j = cJSON_CreateObject();
    if (!j) return NULL;
    cJSON_AddStringToObject(j, "path", path);
    cJSON_AddBoolToObject(j, "ok", rc == 0);
    cJSON_AddStringToObject(j, "kind", r->is_checkpoint ? "checkpoint" : r->is_build ? "build" : "wpk");
    if (rc) cJSON_AddStringToObject(j, "error", e ? e->msg : "");
    cJSON *s = cJSON_AddObjectToObject(j, "signature");
    cJSON_AddBoolToObject(s, "present", r->sig_present);
    cJSON_AddBoolToObject(s, "verified", r->sig_verified);
    if (r->keyid[0]) cJSON_AddStringToObject(s, "keyid", r->keyid);
    cJSON *d = cJSON_AddObjectToObject(j, "dsse");
    cJSON_AddBoolToObject(d, "present", r->dsse_present);
    cJSON_AddBoolToObject(d, "verified", r->dsse_verified);
    if (r->dsse_present) cJSON_AddStringToObject(d, "signer", r->dsse_foreign ? "foreign" : "wpack");
    if (r->root[0])
        cJSON_AddStringToObject(j, r->is_build || r->is_checkpoint ? "root_sha256" : "header_sha256", r->root);
    cJSON_AddNumberToObject(j, "files", r->nfiles);
    cJSON_AddNumberToObject(j, "tensors", (double)r->ntensors);
    cJSON_AddNumberToObject(j, "bytes_hashed", (double)r->bytes_hashed);
    cJSON_AddNumberToObject(j, "seconds", r->seconds);
    cJSON_AddNumberToObject(j, "gb_per_s", r->seconds > 0 ? (double)r->bytes_hashed / r->seconds / 1e9 : 0);
    cJSON_AddNumberToObject(j, "threads", r->threads);
    if (r->notice[0]) cJSON_AddStringToObject(j, "notice", r->notice);
    cJSON *f = cJSON_AddArrayToObject(j, "failures");
    for (size_t i = 0; i < r->nfail; i++) cJSON_AddItemToArray(f, cJSON_CreateString(r->fail[i]));
    cJSON_AddNumberToObject(j, "failures_total", (double)r->nfail_total);
    cJSON *x = cJSON_AddArrayToObject(j, "extra_files");
    for (size_t i = 0; i < r->nextra; i++) cJSON_AddItemToArray(x, cJSON_CreateString(r->extra[i]));
    return j;
}

/* ---- creating a manifest ------------------------------------------------------------ */

typedef struct cfile {
    char path[4096];
    const char *rel;
    int fd;
    wpk_file *wpk;
    uint64_t size;
    wp_range *shr;          /* the file's shards (manifest version 2) */
    uint64_t nsh;
    wp_range *gaps;
    size_t ngaps;
    wp_range *tr;           /* per tensor */
    size_t nt;
    size_t job0;            /* its tensor jobs start here; then gaps, then the shards */
} cfile;

int wp_manifest_create(const char *build_dir, int threads, wp_progress_fn progress, void *ud, wp_manifest *out,
                       wp_err *e)
{
    if (out) memset(out, 0, sizeof *out);
    char sigp[4096];
    int rc = join(sigp, sizeof sigp, build_dir, WP_MANIFEST_SIG_NAME, e);
    if (rc) return rc;
    if (exists(sigp))
        return wp_fail(e, WP_EUSAGE, "%s: the build is signed; a new manifest would invalidate %s (remove it first)",
                       build_dir, WP_MANIFEST_SIG_NAME);
    wp_strv all = {0};
    rc = wp_list_files(build_dir, &all, e);
    if (rc) return rc;
    cfile *cf = wp_calloc(all.n + 1, sizeof *cf, e);
    wp_manifest m;
    memset(&m, 0, sizeof m);
    wp_hash_job *jobs = NULL;
    size_t nf = 0, njobs = 0, ntensors = 0, nshards = 0;
    if (!cf) rc = WP_ENOMEM;
    for (size_t i = 0; !rc && i < all.n; i++) {
        const char *p = all.v[i];
        if (!strcmp(p, WP_MANIFEST_NAME) || !strcmp(p, WP_MANIFEST_SIG_NAME) || !strcmp(p, WP_MANIFEST_DSSE_NAME))
            continue;
        if (!wp_rel_path_ok(p)) {
            rc = wp_fail(e, WP_EINVAL, "%s/%s: file name not allowed in a manifest", build_dir, p);
            break;
        }
        cfile *f = &cf[nf++];
        f->fd = -1;
        f->rel = p;
        if ((rc = join(f->path, sizeof f->path, build_dir, p, e))) break;
        if (wp_str_ends_with(p, ".wpk")) {
            if ((rc = wpk_open(&f->wpk, f->path, e))) break;
            f->fd = wpk_fd(f->wpk);
            f->size = wpk_file_size(f->wpk);
            f->nt = wpk_count(f->wpk);
        } else {
            f->fd = wp_open_read(f->path, e);
            struct stat st;
            if (f->fd < 0 || fstat(f->fd, &st) != 0) {
                rc = wp_fail_errno(e, "%s: cannot open", f->path);
                break;
            }
            f->size = (uint64_t)st.st_size;
        }
        f->tr = wp_calloc(f->nt + 1, sizeof *f->tr, e);
        f->gaps = wp_calloc(f->nt + 1, sizeof *f->gaps, e);
        if (!f->tr || !f->gaps) {
            rc = WP_ENOMEM;
            break;
        }
        uint64_t at = 0;
        for (size_t k = 0; k < f->nt; k++) {
            const wpk_tensor *t = wpk_tensor_at(f->wpk, k);
            f->tr[k] = (wp_range){t->offset, t->size};
            if (t->offset > at) f->gaps[f->ngaps++] = (wp_range){at, t->offset - at};
            at = t->offset + t->size;
        }
        if (f->size > at) f->gaps[f->ngaps++] = (wp_range){at, f->size - at};
        f->nsh = wp_manifest_nshards(f->size, WP_SHARD_SIZE_DEFAULT);
        if (!(f->shr = wp_calloc((size_t)f->nsh, sizeof *f->shr, e))) {
            rc = WP_ENOMEM;
            break;
        }
        for (uint64_t k = 0; k < f->nsh; k++) {
            uint64_t a = k * WP_SHARD_SIZE_DEFAULT;
            f->shr[k] = (wp_range){a, f->size - a < WP_SHARD_SIZE_DEFAULT ? f->size - a : WP_SHARD_SIZE_DEFAULT};
        }
        nshards += f->nsh;
        ntensors += f->nt;
    }
    if (!rc && !nf) rc = wp_fail(e, WP_EUSAGE, "%s: no files to list in a manifest", build_dir);
    if (!rc && nf > UINT32_MAX) rc = wp_fail(e, WP_EUSAGE, "%s: too many files", build_dir);
    if (!rc && !(jobs = wp_calloc(ntensors + nf + nshards, sizeof *jobs, e))) rc = WP_ENOMEM;
    for (size_t i = 0; !rc && i < nf; i++) {
        cfile *f = &cf[i];
        f->job0 = njobs;
        for (size_t k = 0; k < f->nt; k++)
            jobs[njobs++] = (wp_hash_job){.fd = f->fd, .path = f->path, .ranges = &f->tr[k], .nranges = 1};
        jobs[njobs++] = (wp_hash_job){.fd = f->fd, .path = f->path, .ranges = f->gaps, .nranges = f->ngaps};
        for (uint64_t k = 0; k < f->nsh; k++)
            jobs[njobs++] = (wp_hash_job){.fd = f->fd, .path = f->path, .ranges = &f->shr[k], .nranges = 1};
    }
    if (!rc) rc = wp_hash_jobs(jobs, njobs, threads, progress, ud, "manifest", e);
    if (!rc) {
        m.files = wp_calloc(nf, sizeof *m.files, e);
        m.tensors = wp_calloc(ntensors + 1, sizeof *m.tensors, e);
        if (!m.files || !m.tensors) rc = WP_ENOMEM;
    }
    for (size_t i = 0; !rc && i < nf; i++) {
        cfile *f = &cf[i];
        wp_mfile *mf = &m.files[m.nfiles];
        if (!(mf->path = wp_strdup(f->rel, e))) {
            rc = WP_ENOMEM;
            break;
        }
        m.nfiles++;
        mf->size = f->size;
        memcpy(mf->nontensor_sha256, jobs[f->job0 + f->nt].out, WP_SHA256_LEN);
        mf->nshards = f->nsh;
        if (!(mf->shards = wp_calloc((size_t)f->nsh, sizeof *mf->shards, e))) {
            rc = WP_ENOMEM;
            break;
        }
        for (uint64_t k = 0; k < f->nsh; k++) memcpy(mf->shards[k], jobs[f->job0 + f->nt + 1 + k].out, WP_SHA256_LEN);
        for (size_t k = 0; !rc && k < f->nt; k++) {
            const wpk_tensor *t = wpk_tensor_at(f->wpk, k);
            const uint8_t *got = jobs[f->job0 + k].out;
            /* never bless a corrupt container: the data must match its directory */
            if (memcmp(got, t->sha256, WP_SHA256_LEN)) {
                rc = wp_fail(e, WP_EVERIFY, "%s: %s: sha256 mismatch in bytes [%llu, %llu)", f->path, t->name,
                             (unsigned long long)t->offset, (unsigned long long)(t->offset + t->size));
                break;
            }
            wp_mtensor *mt = &m.tensors[m.ntensors];
            if (!(mt->name = wp_strdup(t->name, e))) {
                rc = WP_ENOMEM;
                break;
            }
            m.ntensors++;
            mt->file = (uint32_t)i;
            mt->offset = t->offset;
            mt->size = t->size;
            memcpy(mt->sha256, got, WP_SHA256_LEN);
        }
    }
    if (!rc) rc = wp_manifest_finish(&m, e);
    if (!rc) rc = wp_manifest_write(build_dir, &m, e);
    for (size_t i = 0; cf && i < nf; i++) {
        if (cf[i].wpk) wpk_close(cf[i].wpk);
        else if (cf[i].fd >= 0) close(cf[i].fd);
        free(cf[i].tr);
        free(cf[i].gaps);
        free(cf[i].shr);
    }
    free(cf);
    free(jobs);
    wp_strv_free(&all);
    if (!rc && out) *out = m;
    else wp_manifest_free(&m);
    return rc;
}

/* ---- signing a build ------------------------------------------------------------------ */

/* Replace the build's signature (manifest.sig, and manifest.dsse.json when
 * `bundle`) so that at every instant the pair on disk is one signature: the
 * old one, the old manifest.sig alone, or the new one (docs/signing.md §3.3).
 *   1. both new files are written in full under temporary names in the build
 *      and fsynced;
 *   2. the old manifest.dsse.json (if any) is removed and the removal made
 *      durable: the old manifest.sig alone still verifies with the old key;
 *   3. the new manifest.sig is renamed into place: the new key's signature,
 *      without a bundle;
 *   4. the new manifest.dsse.json is renamed into place.
 * A kill at any point leaves the old key's signature or the new key's, plus
 * at most the temporaries, which verify and pack report and the next sign or
 * clean removes.  A failure removes the temporaries. */
static int swap_signature(const char *build, const char *sigp, const char *sig, size_t siglen, const char *dssep,
                          const char *bundle, size_t blen, wp_err *e)
{
    wp_out so = {.fd = -1}, bo = {.fd = -1};   /* abortable before they are opened */
    int rc = wp_out_open(&so, sigp, e);
    if (!rc) rc = wp_out_write(&so, sig, siglen, e);
    if (!rc && bundle && !(rc = wp_out_open(&bo, dssep, e))) rc = wp_out_write(&bo, bundle, blen, e);
    if (!rc) rc = wp_out_sync(&so, e);
    if (!rc && bundle) rc = wp_out_sync(&bo, e);
    /* the old bundle's bytes, to put back should a step fail before the new
     * manifest.sig is in place (a kill there leaves the old manifest.sig
     * alone, which verifies) */
    char *old_bundle = NULL;
    size_t old_len = 0;
    int removed = 0;
    if (!rc && exists(dssep)) {
        wp_err re = {0};
        if (wp_read_small_file(dssep, MAX_MANIFEST, &old_bundle, &old_len, &re)) old_bundle = NULL;
        rc = wp_remove_file(dssep, e);
        removed = !rc;
        if (!rc) rc = wp_fsync_dir(build, e);
    }
    int sig_in = 0;
    if (!rc && !(rc = wp_out_commit(&so, e))) sig_in = 1;
    if (rc && !sig_in && removed && old_bundle) {
        wp_err re = {0};
        if (wp_write_file_atomic(dssep, old_bundle, old_len, &re) != 0) { /* the old manifest.sig still verifies */
        }
    }
    free(old_bundle);
    if (!rc && bundle) {
        wp_err be = {0};
        if ((rc = wp_out_commit(&bo, &be)))
            wp_fail(e, rc, "%s (%s is already the new key's: the build verifies with it, without a bundle; sign "
                           "again)", be.msg, WP_MANIFEST_SIG_NAME);
    }
    wp_out_abort(&so);   /* after a commit: nothing to do */
    wp_out_abort(&bo);
    return rc;
}

int wp_sign_is_checkpoint(const char *path)
{
    struct stat st;
    char mp[4096];
    if (stat(path, &st) != 0 || !S_ISDIR(st.st_mode) || wp_path_join(mp, sizeof mp, path, WP_MANIFEST_NAME) ||
        exists(mp))
        return 0;
    DIR *d = opendir(path);
    if (!d) return 0;
    int wpk = 0;
    struct dirent *de;
    while (!wpk && (de = readdir(d))) wpk = de->d_name[0] != '.' && wp_str_ends_with(de->d_name, ".wpk");
    closedir(d);
    return !wpk;
}

int wp_sign_build(const char *build_dir, const wp_sign_opts *o, char keyid[2 * WP_SHA256_LEN + 1], wp_err *e)
{
    if (wp_sign_is_checkpoint(build_dir)) {
        /* not a build: an OpenSSF model-signing bundle over its files, the
         * only signature such a directory can carry (docs/signing.md §8) */
        if (!o->dsse)
            return wp_fail_setting(e, WP_EUSAGE, "dsse",
                                   "%s: no manifest.json: a checkpoint directory is signed with an OpenSSF "
                                   "model-signing bundle (%s) only",
                                   build_dir, WP_MODEL_SIG_NAME);
        return wp_msig_sign_dir(build_dir, o, keyid, e);
    }
    wp_key *k = NULL;
    int rc = wp_key_load_private(o->key_path, &k, e);
    if (rc) return rc;
    /* what an interrupted sign left in the build goes first */
    struct stat bst;
    if (stat(build_dir, &bst) == 0 && S_ISDIR(bst.st_mode)) wp_sweep_quiet(build_dir, NULL);
    if (!o->no_check) {
        /* sign only what is intact: the manifest must describe these bytes */
        wp_verify_opts vo = {.allow_unsigned = 1, .threads = o->threads, .progress = o->progress,
                             .progress_ud = o->progress_ud};
        wp_verify_report r;
        rc = verify_impl(build_dir, &vo, &r, 1, e);
        int lone = !r.is_build;
        wp_verify_report_free(&r);
        if (!rc && lone) rc = wp_fail(e, WP_EUSAGE, "%s: only a build directory (with manifest.json) can be signed", build_dir);
        if (rc) {
            wp_key_free(k);
            return rc;
        }
    }
    char mpath[4096], sigp[4096], dssep[4096];
    char *raw = NULL, *sig = NULL, *st = NULL, *bundle = NULL;
    size_t rawlen = 0, siglen = 0, stlen = 0, blen = 0;
    wp_manifest m;
    memset(&m, 0, sizeof m);
    wp_resource *res = NULL;
    size_t nres = 0;
    uint64_t ssz = 0;
    rc = join(mpath, sizeof mpath, build_dir, WP_MANIFEST_NAME, e);
    if (!rc) rc = join(sigp, sizeof sigp, build_dir, WP_MANIFEST_SIG_NAME, e);
    if (!rc) rc = join(dssep, sizeof dssep, build_dir, WP_MANIFEST_DSSE_NAME, e);
    if (!rc) rc = wp_read_small_file(mpath, MAX_MANIFEST, &raw, &rawlen, e);
    if (!rc) rc = wp_manifest_parse(raw, rawlen, mpath, &m, e);
    if (!rc) rc = wp_key_id(k, keyid, e);
    if (!rc) rc = wp_sig_make(k, raw, rawlen, &sig, &siglen, e);
    if (!rc && o->dsse) {
        rc = wp_manifest_resources(&m, raw, rawlen, &res, &nres, &ssz, e);
        char name[4096];
        snprintf(name, sizeof name, "%s", o->model_name ? o->model_name : build_dir);
        size_t nl = strlen(name);
        while (nl > 1 && name[nl - 1] == '/') name[--nl] = 0;   /* "build/" names "build" */
        const char *base = o->model_name ? name : basename(name);
        if (!rc) rc = wp_intoto_statement_sharded(base, res, nres, ssz, &st, &stlen, e);
        if (!rc) rc = wp_dsse_bundle_make(k, WP_INTOTO_PAYLOAD_TYPE, st, stlen, &bundle, &blen, e);
    }
    if (!rc) rc = swap_signature(build_dir, sigp, sig, siglen, dssep, o->dsse ? bundle : NULL, blen, e);
    free(raw);
    free(sig);
    free(st);
    free(bundle);
    wp_resources_free(res, nres);
    wp_manifest_free(&m);
    wp_key_free(k);
    return rc;
}
