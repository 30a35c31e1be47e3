/*
 * wp.h — the few things every wpack module shares: error reporting, checked
 * arithmetic, whole-file mapping, crash-safe output files and SHA-256.
 *
 * Error convention (after libgit2): a function returns 0 on success or a
 * negative WP_E* code, and writes ONE line into the caller's wp_err naming the
 * file, the object (tensor, key, ...) and the rule that failed.  The first
 * failure wins: later wp_fail() calls on an already-set wp_err keep the first
 * message, so callers may add nothing and lose nothing.  The library never
 * prints and never exits; cli/ does both.
 */
#ifndef WP_H
#define WP_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define WP_VERSION "0.1.0"

enum {
    WP_OK = 0,
    WP_EINVAL = -1,   /* input is malformed or lies (bad header, bad JSON, ...) */
    WP_EIO = -2,      /* the system refused: open, read, write, ENOSPC, fsync  */
    WP_ENOMEM = -3,
    WP_EVERIFY = -4,  /* well-formed but wrong: digest/signature/parity mismatch */
    WP_EUSAGE = -5,   /* the caller asked for something impossible */
    WP_EEXIST = -6,   /* the output target exists and was not to be replaced */
};

typedef struct wp_err {
    int code;          /* the WP_E* code of the first failure, 0 if none */
    char msg[1024];
    /* The setting that would change the outcome, by its neutral name
     * ("force", "mem-budget", "tp", ...), or "".  Messages describe the
     * problem only; the command line maps this name to the option a user
     * types (cli/opt.c), so library text never names a flag. */
    char setting[32];
} wp_err;

/* Record a failure (printf-style, one line, no trailing newline) unless one is
 * already recorded.  Returns `code` so callers can write
 * `return wp_fail(e, WP_EINVAL, "%s: ...", path);`.  e may be NULL. */
int wp_fail(wp_err *e, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* wp_fail that also names the setting which would change the outcome. */
int wp_fail_setting(wp_err *e, int code, const char *setting, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* The one allocation-failure report: "out of memory: WHAT" (printf-style),
 * returns WP_ENOMEM. */
int wp_oom(wp_err *e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Like wp_fail with WP_EIO, appending ": strerror(errno)". */
int wp_fail_errno(wp_err *e, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static inline void wp_err_clear(wp_err *e) { if (e) { e->code = 0; e->msg[0] = 0; e->setting[0] = 0; } }

/* Checked arithmetic: return 0 and store the result, or -1 on overflow. */
static inline int wp_mul_u64(uint64_t a, uint64_t b, uint64_t *r) {
    return __builtin_mul_overflow(a, b, r) ? -1 : 0;
}
static inline int wp_add_u64(uint64_t a, uint64_t b, uint64_t *r) {
    return __builtin_add_overflow(a, b, r) ? -1 : 0;
}
static inline uint64_t wp_align_up(uint64_t x, uint64_t a) { return (x + a - 1) / a * a; }

/* Allocation that reports through wp_err instead of returning silently. */
void *wp_malloc(size_t n, wp_err *e);
void *wp_calloc(size_t n, size_t size, wp_err *e);
char *wp_strdup(const char *s, wp_err *e);
/* Read a whole (small) file, NUL-terminated; for JSON documents only. */
int wp_read_small_file(const char *path, size_t max, char **out, size_t *len, wp_err *e);

/* ---- Read-only file mapping ------------------------------------------------
 * The whole file is mapped PROT_READ/MAP_SHARED; pages load on demand, so a
 * mapping is not a load.  size 0 files map to data == NULL. */
typedef struct wp_map {
    const uint8_t *data;
    uint64_t size;
    int fd;
} wp_map;
int wp_map_open(wp_map *m, const char *path, wp_err *e);
void wp_map_close(wp_map *m);

/* Open a file that input names, for reading: a regular file only (a FIFO,
 * device, socket or directory is refused, "PATH: not a regular file (a
 * FIFO)", WP_EINVAL, and opening it never blocks); an fd, or -1 with e set
 * (and errno).  Every reader of a path from a command line or from a file
 * (a shard, a manifest entry, a key) opens through it. */
int wp_open_read(const char *path, wp_err *e);

/* Full pread: loops on short reads; a read past EOF is an error naming path. */
int wp_pread_full(int fd, void *buf, size_t n, uint64_t off, const char *path, wp_err *e);

/* ---- Crash-safe output ------------------------------------------------------
 * Every file wpack produces is written as `.NAME.tmp.<pid>-<start>.XXXXXX` in
 * the target's directory (the owner's pid and start time: common/outdir.h,
 * "Temporaries"), fsynced, renamed over NAME and the directory fsynced.
 * Until commit, NAME does not exist (or keeps its old content).  Temp files
 * are registered so SIGINT/SIGTERM/SIGHUP (wp_cleanup_on_signals) unlink
 * them; a SIGKILL can leave a temp file, never a partial NAME, and the next
 * command writing into that directory removes it (its owner is gone).
 *
 * wp_out_open replaces an existing NAME at commit (files wpack owns: a
 * manifest, a container inside a temporary directory).  wp_out_create is
 * for a target the user named: an existing NAME is refused up front
 * (WP_EEXIST, setting "force": "NAME: already exists; not replaced") unless
 * `force`, and commit claims the name without replacing anything
 * (renameat2 RENAME_NOREPLACE, or link + unlink): if NAME appeared while
 * the file was written, commit fails WP_EEXIST ("NAME: appeared while it
 * was being written; not replaced"), leaves NAME alone and keeps the finished
 * file as `.NAME.kept.<pid>-<start>.XXXXXX`, naming it.  With `force` an
 * existing file (never a directory) is replaced.  wp_out_create first removes
 * the stale temporaries of NAME's directory (wp_sweep): what it removed is in
 * `reclaimed` and in a notice (wp_notice). */
typedef struct wp_reclaim {
    uint64_t entries, bytes;   /* stale temporaries removed, and their bytes */
} wp_reclaim;
typedef struct wp_out_dio wp_out_dio;
typedef struct wp_out {
    int fd;
    char *path;    /* final name */
    char *tmp;     /* temp name, NULL after commit/abort */
    uint64_t written;
    int noreplace; /* commit must not replace an existing NAME (wp_out_create) */
    wp_reclaim reclaimed;   /* wp_out_create's sweep of NAME's directory */
    wp_out_dio *dio;        /* wp_out_direct: O_DIRECT staging; NULL: through the page cache */
} wp_out;
int wp_out_open(wp_out *o, const char *path, wp_err *e);
int wp_out_create(wp_out *o, const char *path, int force, wp_err *e);
/* wp_out_create whose force replaces only a file that is_own recognises as
 * the caller's kind (a .wpkz by its magic, a key by its PEM label); anything
 * else is refused with "PATH: exists and is not WHAT; not replaced". */
typedef int (*wp_own_fn)(const char *path);
int wp_out_create_own(wp_out *o, const char *path, int force, wp_own_fn is_own, const char *what, wp_err *e);
/* 1 if the file at path starts with the n bytes of magic. */
int wp_file_starts_with(const char *path, const void *magic, size_t n);
int wp_out_write(wp_out *o, const void *buf, size_t n, wp_err *e);   /* appends */
/* Write a fresh output (nothing written yet) around the page cache: its
 * bytes are gathered in an aligned 8 MiB buffer and, from the first full
 * buffer on, written with O_DIRECT; the last partial block goes through the
 * page cache at commit (an output under 8 MiB goes through it whole, in one
 * piece: faster at that size).  For large outputs written front to back
 * (pack, unpack, the safetensors writer): no copy into page-cache pages and
 * no reclaim of them, which on a VM with a memory limit cost the writer
 * several CPU-seconds per GB (docs/performance.md "Output around the page
 * cache").  Writes must then go forward: a skip of up to 1 MiB is written as
 * zeros, anything else (a longer skip, a write behind) first returns the
 * output to the page cache, as does a file system that refuses O_DIRECT or
 * its alignment.  1 when on, 0 when not (refused, or WPACK_DIRECT_OUT=0);
 * WPACK_DIRECT_OUT=1 asks for O_DIRECT from the first byte (tests). */
int wp_out_direct(wp_out *o);
/* WPACK_DIRECT_OUT as a writer reads it: WP_DIRECT_OFF ("0": through the page
 * cache), WP_DIRECT_FORCE ("1": around it from the first byte, whatever the
 * size) or WP_DIRECT_AUTO (unset: each writer's own size rule). */
enum { WP_DIRECT_OFF, WP_DIRECT_AUTO, WP_DIRECT_FORCE };
int wp_direct_out_env(void);
/* fd's file opened again with flags (O_CLOEXEC added): a new open file
 * description of the same inode (checked), so flags such as O_DIRECT change
 * nobody else's reads or writes through fd.  -1 when it cannot be. */
int wp_reopen(int fd, int flags);
int wp_out_pwrite(wp_out *o, const void *buf, size_t n, uint64_t off, wp_err *e);
int wp_out_commit(wp_out *o, wp_err *e);   /* fsync + rename + fsync(dir) */
void wp_out_abort(wp_out *o);              /* unlink temp; safe to call twice */
/* fsync the temp file now (commit then only renames durably): for callers
 * that finish several files before moving any into place (wpack sign). */
int wp_out_sync(wp_out *o, wp_err *e);
/* Remove a file wpack owns (a signature being replaced) as one output step
 * (wp_fault); 0 if removed or absent. */
int wp_remove_file(const char *path, wp_err *e);
/* Install handlers that remove every open temp file and temporary output
 * directory (common/outdir.h), then re-raise the signal. */
void wp_cleanup_on_signals(void);
/* Write a whole buffer to `path` atomically (open, write, commit). */
int wp_write_file_atomic(const char *path, const void *buf, size_t n, wp_err *e);
/* The same through wp_out_create: an existing path is refused unless force. */
int wp_write_file_create(const char *path, const void *buf, size_t n, int force, wp_err *e);
/* fsync a directory (so renames and creations in it are durable), or the
 * directory that holds `path`.  Errors name the directory. */
int wp_fsync_dir(const char *dir, wp_err *e);
int wp_fsync_parent(const char *path, wp_err *e);
/* Create a directory and its parents (mkdir -p). */
int wp_mkdir_p(const char *path, wp_err *e);

/* ---- Notices ------------------------------------------------------------------
 * What a user should hear that is not a failure (stale temporaries removed,
 * the leftovers of an interrupted sign).  The library never prints: each
 * one-line notice goes to the function set here (the command line prints it
 * on stderr unless -q); with none set it is dropped. */
typedef void (*wp_notice_fn)(void *ud, const char *line);
void wp_set_notice_fn(wp_notice_fn fn, void *ud);
void wp_notice(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* ---- Fault injection: a test facility ------------------------------------------
 * Every step of the output code (common/file.c, common/outdir.c, and the
 * signature swap of wpack sign) calls wp_fault first.  With the environment
 * variable WPACK_FAULT unset it returns 0 and costs one load.  The crash
 * tests (tests/test_common_crash.c) set WPACK_FAULT=OP:N[:ACTION] to make the
 * Nth step of kind OP (create, write, fsync, rename, remove, or any) fail
 * with EIO (ACTION fail, the default: wp_fault returns -1 and the step is not
 * done) or to raise a signal before it (kill, term, int, hup, stop); adding
 * ",norenameat2" walks the fallbacks for filesystems without renameat2, and
 * ",nolink" makes wp_link fail with EXDEV (an output on another filesystem).
 * WPACK_FAULT_LOG=FILE appends "N OP PATH" per step.  Read once per process;
 * never set in production. */
typedef enum wp_step { WP_STEP_CREATE, WP_STEP_WRITE, WP_STEP_FSYNC, WP_STEP_RENAME, WP_STEP_REMOVE,
                       WP_STEP_COUNT } wp_step;
int wp_fault(wp_step op, const char *path);
/* link(2), which fails with EXDEV while WPACK_FAULT holds ",nolink". */
int wp_link(const char *from, const char *to);
const char *wp_step_name(wp_step op);

/* ---- SHA-256 (OpenSSL EVP) ------------------------------------------------- */
#define WP_SHA256_LEN 32
typedef struct wp_sha256 { void *ctx; } wp_sha256;   /* EVP_MD_CTX */
int wp_sha256_init(wp_sha256 *h, wp_err *e);
void wp_sha256_update(wp_sha256 *h, const void *p, size_t n);
void wp_sha256_zeros(wp_sha256 *h, uint64_t n);   /* n zero bytes (padding) */
void wp_sha256_final(wp_sha256 *h, uint8_t out[WP_SHA256_LEN]);   /* frees */
void wp_sha256_free(wp_sha256 *h);                                /* abandon */
int wp_sha256_buf(const void *p, size_t n, uint8_t out[WP_SHA256_LEN], wp_err *e);
/* Hash [off, off+n) of an open fd with pread in bounded chunks. */
int wp_sha256_fd_range(int fd, uint64_t off, uint64_t n, const char *path,
                       uint8_t out[WP_SHA256_LEN], wp_err *e);
void wp_hex(const uint8_t *p, size_t n, char *out);       /* out: 2n+1 chars */
int wp_unhex(const char *s, uint8_t *out, size_t n);      /* 0 or -1 */

/* ---- Progress --------------------------------------------------------------
 * Long library operations report through this callback; cli/ draws the bar
 * (only on a TTY).  done/total are in the operation's unit (bytes or items). */
typedef void (*wp_progress_fn)(void *ud, const char *what, uint64_t done, uint64_t total);

/* ---- Small utilities ---------------------------------------------------------- */
double wp_now(void);                 /* monotonic seconds */
uint64_t wp_peak_rss_bytes(void);    /* VmHWM from /proc/self/status, 0 if unknown */
uint64_t wp_rss_bytes(void);         /* VmRSS (current), 0 if unknown */
int wp_path_join(char *out, size_t outsz, const char *dir, const char *name);

/* ---- Directories and string lists -------------------------------------------- */
/* A growable list of strings. */
typedef struct wp_strv {
    char **v;
    size_t n, cap;
} wp_strv;
int wp_strv_push(wp_strv *s, const char *str, wp_err *e);
void wp_strv_free(wp_strv *s);
/* Every regular file (or symlink to one) under dir, as paths relative to
 * dir, sorted bytewise.  Entries whose name starts with '.' are skipped
 * (temp files of wp_out, .cache/ of HF downloads); so are sub-directories
 * deeper than 16 levels, and symlinks to directories (never followed: a link
 * to ".." would make the walk exponential). */
int wp_list_files(const char *dir, wp_strv *out, wp_err *e);
int wp_str_ends_with(const char *s, const char *suffix);

#endif
