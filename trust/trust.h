/*
 * trust.h — checking what wpack builds and what it reads: the `verify`
 * pipeline over a build (structure, signature, digests; the build itself is
 * opened through trust/build.h), manifest creation,
 * `verify-source` over an official download, and the parallel streaming
 * SHA-256 engine they share.  Policy and formats: docs/signing.md.
 *
 * Error codes: WP_EVERIFY when the check ran and found a problem (digest or
 * signature mismatch, a build that is malformed, incomplete or unsigned);
 * WP_EUSAGE / WP_EIO / WP_ENOMEM when it could not run (bad options, a key
 * that cannot be read, an I/O error).  cli/ maps them to exit 1 and 2.
 */
#ifndef WP_VERIFY_H
#define WP_VERIFY_H

#include "common/wp.h"
#include "trust/manifest.h"

/* ---- Parallel streaming SHA-256 ----------------------------------------------------
 * One job = one SHA-256 over one or more byte ranges of an open file, read
 * through bounded mapped windows of a regular file (pread in bounded chunks
 * for anything else; never a whole file in memory), or over memory when
 * `mem` is set.  A file that shrinks while it is hashed is an error naming
 * the file and offset, not a crash (SIGBUS guard, trust/digests.c).  Jobs
 * run on `threads` workers, longest first; `progress` (bytes) is called
 * from the calling thread only, so a non-thread-safe bar is fine.  An I/O
 * error stops the run: its message names the file and offset.  A job is
 * the unit of parallelism: a digest over ranges of one file is sequential,
 * so one job runs on one core. */
typedef struct wp_range {
    uint64_t off, len;
} wp_range;

typedef struct wp_hash_job {
    int fd;                        /* caller-owned */
    const char *path;              /* for messages */
    const wp_range *ranges;        /* hashed as one stream, in order */
    size_t nranges;
    const uint8_t *mem;            /* if not NULL: ranges index this memory, not fd */
    uint8_t out[WP_SHA256_LEN];    /* result */
    int done;                      /* 1 once out is valid */
} wp_hash_job;

int wp_hash_jobs(wp_hash_job *jobs, size_t n, int threads, wp_progress_fn progress, void *ud,
                 const char *what, wp_err *e);
/* Tests only: called on a hashing thread (a worker or its reader) for each
 * window of a file, once it is mapped or before it is read, before it is
 * hashed (to shrink the file under the engine). */
extern void (*wp_hash_window_hook)(const wp_hash_job *j, uint64_t off, size_t len);
/* Number of online CPUs (>= 1): the default thread count. */
int wp_default_threads(void);

/* ---- Creating a manifest -----------------------------------------------------------
 * Hash every file of BUILD (every regular file except manifest.json,
 * manifest.sig, manifest.dsse.json and dot files), list each .wpk's tensors
 * (rechecking each tensor's SHA-256 against its directory: a corrupt file is
 * never blessed), and write BUILD/manifest.json atomically.  `out` (optional)
 * receives the manifest. */
int wp_manifest_create(const char *build_dir, int threads, wp_progress_fn progress, void *ud,
                       wp_manifest *out, wp_err *e);

/* ---- verify -------------------------------------------------------------------------- */
typedef struct wp_verify_opts {
    const char *key_path;     /* public key PEM; NULL: none given */
    int allow_unsigned;       /* accept a build whose signature is absent or unchecked */
    int deep;                 /* also every file digest: shards (v2) or whole file (v1) */
    int threads;              /* <= 0: wp_default_threads() */
    int hugepages;            /* hash tensors from huge-page-backed copies */
    wp_progress_fn progress;  /* bytes; may be NULL */
    void *progress_ud;
} wp_verify_opts;

typedef struct wp_verify_report {
    int is_build;             /* 1: a build directory; 0: a lone .wpk or a checkpoint */
    int is_checkpoint;        /* 1: a directory signed with model.sig (no manifest.json) */
    int sig_present, sig_verified;
    int dsse_present, dsse_verified;
    int dsse_foreign;         /* the bundle is another signer's (DSSE keyid empty or absent) */
    char keyid[2 * WP_SHA256_LEN + 1];   /* signer's key id, if signed */
    char root[2 * WP_SHA256_LEN + 1];    /* manifest root digest */
    uint32_t nfiles;
    uint64_t ntensors;
    uint64_t bytes_hashed;
    double seconds;
    int threads;
    char notice[512];         /* one line for the user (huge-page fallback), or "" */
    size_t nextra;            /* files in BUILD the manifest does not list (ignored) */
    char **extra;
    size_t nfail;             /* every problem found, one line each (capped at 1000) */
    char **fail;
    uint64_t nfail_total;     /* including those past the cap */
} wp_verify_report;

/* Verify PATH (a build directory or a lone .wpk); docs/signing.md §5 gives
 * the steps and the signature policy.  Returns 0 only if every check passed
 * and the build is authenticated (or o->allow_unsigned).  On WP_EVERIFY the
 * report lists every failure and e holds the first. */
int wp_verify_build(const char *path, const wp_verify_opts *o, wp_verify_report *r, wp_err *e);
void wp_verify_report_free(wp_verify_report *r);
/* The report of wp_verify_build(path, ...) == rc as `wpack verify --json`
 * prints it: {"path", "ok", "kind": "build"|"wpk"|"checkpoint", "error" (when
 * rc != 0: e->msg), "signature": {"present", "verified", "keyid"?}, "dsse":
 * {"present", "verified", "signer"?: "wpack"|"foreign"}, "root_sha256"
 * (build; for a checkpoint the bundle's subject digest) or "header_sha256"
 * (lone .wpk) when known, "files", "tensors", "bytes_hashed", "seconds",
 * "gb_per_s", "threads", "notice"?, "failures": [...], "failures_total",
 * "extra_files": [...]}.  The caller owns (cJSON_Delete) the result; NULL
 * only when out of memory. */
cJSON *wp_verify_report_json(const char *path, const wp_verify_report *r, int rc, const wp_err *e);

/* ---- Signing a build (`wpack sign`) ------------------------------------------------------
 * Check that BUILD is intact (wp_verify_build with allow_unsigned, unless
 * `no_check`), then write manifest.sig over the exact manifest.json bytes and,
 * with `dsse`, manifest.dsse.json: a Sigstore bundle whose DSSE envelope
 * carries the in-toto statement over every manifest-listed file plus
 * manifest.json itself (docs/signing.md §4). */
typedef struct wp_sign_opts {
    const char *key_path;     /* private key PEM */
    int dsse;
    int no_check;
    int threads;
    const char *model_name;   /* in-toto subject name; NULL: BUILD's last path component */
    wp_progress_fn progress;
    void *progress_ud;
} wp_sign_opts;
int wp_sign_build(const char *build_dir, const wp_sign_opts *o, char keyid[2 * WP_SHA256_LEN + 1],
                  wp_err *e);
/* 1 if PATH is a directory that wp_sign_build signs as a checkpoint: no
 * manifest.json and no .wpk at its top (e.g. what `wpack export` writes). */
int wp_sign_is_checkpoint(const char *path);

/* ---- OpenSSF model-signing bundles over a directory (trust/modelsign.c) -------------
 * docs/signing.md §8.  A checkpoint directory is signed into DIR/model.sig:
 * every regular file under DIR except the default ignores (.git,
 * .gitattributes, .github, .gitignore at the top) and model.sig itself,
 * whole-file SHA-256 ("files" serialisation), in wpack's canonical layout
 * with the DSSE keyid set to the key id.  Any signer's bundle is checked:
 * the signature over the payload bytes as they are, the statement in any
 * JSON encoding, every resource against the file on disk, and no file on
 * disk left out (unless ignored by the defaults, the bundle's own
 * serialization.ignore_paths, or the caller). */
#define WP_MODEL_SIG_NAME "model.sig"

/* Statement over `res` with `ignore` recorded as serialization.ignore_paths
 * (wp_intoto_statement is this with the build's two signature files). */
int wp_intoto_statement_ignoring(const char *model_name, const wp_resource *res, size_t nres,
                                 const char *const *ignore, size_t nignore, char **out, size_t *len,
                                 wp_err *e);

/* Sign the checkpoint directory DIR (o->dsse must be set; o->no_check is
 * moot: every file is hashed now) into DIR/model.sig, replaced atomically. */
int wp_msig_sign_dir(const char *dir, const wp_sign_opts *o, char keyid[2 * WP_SHA256_LEN + 1], wp_err *e);

/* Who wrote a bundle: 1 when its DSSE signature names a key (wpack writes its
 * key id there: checked in wpack's canonical layout), 0 when the keyid is
 * empty, null or absent (another signer, e.g. model-signing: any JSON
 * encoding), -1 when the document is not a bundle with a DSSE envelope. */
int wp_msig_bundle_signer(const char *doc, size_t len);

typedef struct wp_msig_opts {
    const wp_key *key;            /* NULL: the signature is not checked (integrity only) */
    const char *bundle_rel;       /* the bundle's name in DIR: never part of the model */
    const char *const *skip;      /* more names at DIR's top the caller checks itself */
    size_t nskip;
    const wp_manifest *m;         /* a build's manifest: a resource it lists is compared
                                     with its sha256 (the caller hashes the file), not hashed */
    int threads;                  /* <= 0: wp_default_threads() */
    wp_progress_fn progress;
    void *progress_ud;
} wp_msig_opts;

typedef struct wp_msig_result {
    int foreign;                  /* the DSSE keyid is empty/absent: another signer's layout */
    int verified;                 /* the signature verified with o->key */
    char root[2 * WP_SHA256_LEN + 1];   /* the subject digest */
    size_t nresources;
    uint64_t bytes_hashed;
    wp_strv fails;                /* every file problem, one line each */
} wp_msig_result;

/* Check the bundle `doc` (read from DIR/o->bundle_rel) against DIR.  0: all
 * good; WP_EVERIFY: file problems, all in r->fails (e: the first), or a
 * signature that does not verify; WP_EINVAL: a malformed bundle or
 * statement; others: could not run. */
int wp_msig_verify(const char *dir, const char *doc, size_t len, const wp_msig_opts *o, wp_msig_result *r,
                   wp_err *e);
void wp_msig_result_free(wp_msig_result *r);

/* ---- verify-source ----------------------------------------------------------------------
 * Check a downloaded checkpoint directory against a digests file (the format
 * of data/deepseek-v4-flash-60d8d707.json: {"files": [{"path", "size"?,
 * "sha256"}], ...}).  Every listed file must exist; sizes are compared before
 * anything is hashed (a wrong size is reported without hashing); the rest are
 * hashed in parallel, streaming.  Files present but not listed are ignored and
 * reported in `extra` (dot files and dot directories are skipped). */
typedef enum wp_src_status {
    WP_SRC_OK,
    WP_SRC_MISSING,
    WP_SRC_SIZE,      /* size differs: not hashed */
    WP_SRC_DIGEST,    /* SHA-256 differs */
    WP_SRC_NOTFILE,   /* exists but is not a regular file */
} wp_src_status;

typedef struct wp_src_file {
    char *path;
    int has_size;
    uint64_t want_size, size;
    uint8_t want[WP_SHA256_LEN], got[WP_SHA256_LEN];
    wp_src_status status;
} wp_src_file;

typedef struct wp_source_report {
    char *model, *revision;   /* from the digests file, or NULL */
    size_t nfiles;
    wp_src_file *files;
    size_t nextra;
    char **extra;
    size_t nbad;
    uint64_t bytes_hashed;
    double seconds;
    int threads;
} wp_source_report;

int wp_verify_source(const char *ckpt_dir, const char *digests_path, int threads,
                     wp_progress_fn progress, void *ud, wp_source_report *r, wp_err *e);
void wp_source_report_free(wp_source_report *r);
const char *wp_src_status_name(wp_src_status s);   /* "ok", "missing", ... */

#endif
