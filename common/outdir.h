/*
 * outdir.h — an output directory, written once: every command that produces
 * a directory (convert, synth, unpack) builds it here.
 *
 *   wp_outdir d;
 *   wp_outdir_begin(&d, "OUT", &(wp_outdir_opts){.kind = WP_OUTDIR_BUILD}, e);
 *   ... write files under wp_outdir_tmp(&d) (wp_out, so each is whole) ...
 *   wp_outdir_commit(&d, e);          or, on any failure, wp_outdir_abort(&d);
 *
 * The work happens in `.OUT.tmp.<pid>.XXXXXX` next to OUT (same filesystem,
 * hidden from listings; the pid says whose it is).  Until commit nothing
 * exists at OUT, or OUT keeps its old complete content.  SIGINT, SIGTERM and
 * SIGHUP remove the temporary tree (wp_cleanup_on_signals), then the process
 * dies of the signal; only a SIGKILL or a crash can leave one behind.
 *
 * The overwrite rule (the same for every command):
 *   - OUT absent: it is claimed at commit with renameat2(RENAME_NOREPLACE);
 *     if something appeared at OUT meanwhile it is left alone, the finished
 *     work stays under its temporary name and commit fails with WP_EEXIST,
 *     saying where the work is.
 *   - OUT exists and `force` is off: refused at begin with WP_EEXIST, setting
 *     "force" ("OUT: already exists; not replaced"), nothing written.  An
 *     empty directory counts as absent when `take_empty` is set.
 *   - OUT exists and `force` is on: replaced only if it is an empty directory
 *     or the caller's own kind (`kind` / `is_own`); anything else is refused
 *     with one line saying what is there.  The swap is renameat2
 *     (RENAME_EXCHANGE), so OUT always holds the old complete tree or the new
 *     one; the old one is then removed.
 * Where renameat2 is unsupported (EINVAL, ENOSYS: old kernels, some
 * filesystems) the claim falls back to rename(), which replaces at most an
 * empty directory, and force to moving the old tree aside first.
 *
 * Trees are removed without following symbolic links (a link inside is
 * unlinked, never entered), so removal never reaches outside the tree.
 */
#ifndef WP_OUTDIR_H
#define WP_OUTDIR_H

#include "common/wp.h"

/* What an existing target must be for `force` to replace it. */
typedef enum wp_outdir_kind {
    WP_OUTDIR_EMPTY = 0,      /* only an empty directory */
    WP_OUTDIR_BUILD,          /* a build: manifest.json or a *.wpk at its top */
    WP_OUTDIR_CHECKPOINT,     /* a checkpoint: config.json and a *.safetensors */
} wp_outdir_kind;

typedef struct wp_outdir_opts {
    int force;                /* replace an existing target of our kind */
    int take_empty;           /* an existing empty directory is taken without force */
    wp_outdir_kind kind;
    /* Optional recogniser, consulted instead of `kind`: 1 if the directory
     * at `path` is the caller's own kind and may be replaced, 0 if not.
     * `what` names that kind in messages ("a build directory"). */
    int (*is_own)(const char *path, void *ud);
    void *ud;
    const char *what;
} wp_outdir_opts;

typedef struct wp_outdir {
    char *path;               /* the target, without trailing slashes */
    char *tmp;                /* the temporary directory; NULL once committed or aborted */
    wp_outdir_opts o;
} wp_outdir;

/* Check the target against the overwrite rule and create the temporary
 * directory (mode 0755).  Errors: WP_EEXIST (target present, see above),
 * WP_EUSAGE (not a usable directory name), WP_EIO (cannot create). */
int wp_outdir_begin(wp_outdir *d, const char *path, const wp_outdir_opts *o, wp_err *e);
/* Where the caller writes until commit. */
const char *wp_outdir_tmp(const wp_outdir *d);
/* fsync the temporary directory, claim the final name (see above), fsync
 * the parent.  On failure the temporary tree is removed, except when the
 * target appeared meanwhile: then it is kept (and no longer removed on a
 * signal) and the message names it. */
int wp_outdir_commit(wp_outdir *d, wp_err *e);
/* Remove the temporary tree and forget it; safe to call twice and after a
 * commit (then it does nothing). */
void wp_outdir_abort(wp_outdir *d);

/* Does the directory at path look like a build / a checkpoint (by the
 * names at its top; nothing is opened)?  0 if not or unreadable. */
int wp_outdir_is_build(const char *path);
int wp_outdir_is_checkpoint(const char *path);

/* Remove path and everything under it without following symbolic links;
 * 0, or -1 with errno when something could not be removed.  Async-signal-
 * safe (no allocation), trees at most 32 directories deep. */
int wp_rm_tree(const char *path);

#endif
