/*
 * outdir.h — an output directory, written once: every command that produces
 * a directory (convert, synth, unpack) builds it here.
 *
 *   wp_outdir d;
 *   wp_outdir_begin(&d, "OUT", &(wp_outdir_opts){.kind = WP_OUTDIR_BUILD}, e);
 *   ... write files under wp_outdir_tmp(&d) (wp_out, so each is whole) ...
 *   wp_outdir_commit(&d, e);          or, on any failure, wp_outdir_abort(&d);
 *
 * The work happens in `.OUT.tmp.<pid>-<start>.XXXXXX` next to OUT (same
 * filesystem, hidden from listings; pid and start time say whose it is, see
 * "Temporaries" below).  Until commit nothing exists at OUT, or OUT keeps its
 * old complete content.  SIGINT, SIGTERM and SIGHUP remove the temporary tree
 * (wp_cleanup_on_signals), then the process dies of the signal; only a
 * SIGKILL or a crash can leave one behind, and the next wp_outdir_begin or
 * wp_out_create in that directory removes it (wp_sweep).
 *
 * The overwrite rule (the same for every command):
 *   - OUT absent: it is claimed at commit with renameat2(RENAME_NOREPLACE);
 *     if something appeared at OUT meanwhile it is left alone, the finished
 *     work is renamed `.OUT.kept.<pid>-<start>.XXXXXX` (never removed by
 *     wpack) and commit fails with WP_EEXIST: "OUT: appeared while the output
 *     was being written; not replaced (the finished output is kept in ...)".
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
 * empty directory, and force to moving the old tree aside first (to
 * `.OUT.old.<pid>-<start>.XXXXXX`; a kill between the two renames leaves OUT
 * absent for a moment, and the next sweep puts the old tree back).
 *
 * Trees are removed without following symbolic links (a link inside is
 * unlinked, never entered), so removal never reaches outside the tree.
 */
#ifndef WP_OUTDIR_H
#define WP_OUTDIR_H

#include <signal.h>

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
    wp_reclaim reclaimed;     /* what begin's sweep of the target's directory removed */
} wp_outdir;

/* Sweep the target's directory (wp_sweep; a notice says what was removed),
 * check the target against the overwrite rule and create the temporary
 * directory (mode 0755).  Errors: WP_EEXIST (target present, see above),
 * WP_EUSAGE (not a usable directory name), WP_EIO (cannot create). */
int wp_outdir_begin(wp_outdir *d, const char *path, const wp_outdir_opts *o, wp_err *e);
/* Where the caller writes until commit. */
const char *wp_outdir_tmp(const wp_outdir *d);
/* fsync the temporary directory, claim the final name (see above), fsync
 * the parent.  On failure the temporary tree is removed, except when the
 * target appeared meanwhile: then it is kept as `.OUT.kept.*` (and no longer
 * removed on a signal) and the message names it.  `cancel`, when non-NULL
 * and set, stops the commit before the claim (WP_EUSAGE "interrupted", the
 * tree removed); once the name is claimed the commit always completes. */
int wp_outdir_commit(wp_outdir *d, wp_err *e);
int wp_outdir_commit_cancel(wp_outdir *d, volatile sig_atomic_t *cancel, wp_err *e);
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

/* ---- Temporaries ---------------------------------------------------------------
 * Every temporary wpack makes is named `.NAME.KIND.<pid>-<start>.XXXXXX` in
 * the directory of NAME, the output it is for (NAME cut to 200 bytes):
 *   tmp   being written (a file of wp_out, a directory of wp_outdir), or a
 *         replaced output on its way out;
 *   old   the previous output, moved aside for a moment by a replace on a
 *         filesystem without renameat2;
 *   kept  finished output that could not take its name because something
 *         appeared there: the user's to look at, never removed by wpack.
 * <pid>-<start> names the owner: its process id and start time (field 22 of
 * /proc/<pid>/stat, clock ticks after boot), so a recycled pid is never
 * taken for the owner.  The owner is gone when no process has that pid, or
 * the one that has it started at another time or is a zombie.  A name with
 * the pid alone (`.NAME.tmp.<pid>.XXXXXX`, wpack 0.1) is gone only when no
 * process has that pid.  (Owners are told apart within one machine and pid
 * namespace: a directory shared with other machines can hold temporaries of
 * a live process elsewhere that look stale here.) */
typedef enum wp_temp_kind { WP_TEMP_TMP, WP_TEMP_OLD, WP_TEMP_KEPT } wp_temp_kind;
typedef struct wp_temp_name {
    wp_temp_kind kind;
    char target[256];             /* NAME */
    long pid;
    unsigned long long start;     /* 0: a name without a start time */
} wp_temp_name;
/* 1 if `base` (a name, no slash) is a wpack temporary, filling t; else 0. */
int wp_temp_parse(const char *base, wp_temp_name *t);
/* 1 while the owner runs (or nothing can be told), 0 once it is gone. */
int wp_temp_owner_alive(const wp_temp_name *t);
/* This process's owner tag, "<pid>-<start>". */
const char *wp_self_tag(void);

/* ---- Sweeping stale temporaries -------------------------------------------------
 * wp_sweep looks at the entries directly in `dir`.  A `tmp` temporary whose
 * owner is gone is removed (a tree without following symbolic links).  An
 * `old` one whose owner is gone is put back at NAME when NAME is absent (the
 * replace was killed between its two renames: it is the complete previous
 * output), else removed.  `kept` ones and those of a running owner are left
 * alone.  With dry_run nothing is changed.  fn (may be NULL) hears of every
 * temporary looked at and what was (or would be) done; r (may be NULL) gets
 * the totals removed.  WP_EIO when dir cannot be listed; an entry that
 * cannot be removed is reported to fn as WP_SWEEP_FAILED and does not fail
 * the sweep. */
typedef enum wp_sweep_action {
    WP_SWEEP_REMOVED,     /* stale: removed (or would be, dry run) */
    WP_SWEEP_RESTORED,    /* an interrupted replace's previous output, put back at NAME */
    WP_SWEEP_KEPT,        /* finished output of a lost claim: left alone */
    WP_SWEEP_BUSY,        /* its owner runs: left alone */
    WP_SWEEP_FAILED,      /* stale, but could not be removed */
} wp_sweep_action;
typedef void (*wp_sweep_fn)(void *ud, const char *name, wp_sweep_action a, uint64_t bytes,
                            const wp_temp_name *t);
int wp_sweep(const char *dir, int dry_run, wp_sweep_fn fn, void *ud, wp_reclaim *r, wp_err *e);
/* The sweep wp_outdir_begin and wp_out_create run: never fails (a directory
 * that cannot be listed is left to the caller to report), emits one notice
 * (wp_notice) when it removed or restored something. */
void wp_sweep_quiet(const char *dir, wp_reclaim *r);
/* The wpack temporaries directly in `dir` (`tmp` and `old`; not `kept`):
 * never part of its content, and a reader that skips dot files (verify,
 * pack) must say so rather than skip them silently.  One line for the user
 * into `line` ("" when none): "DIR: temporary files of an unfinished wpack
 * run, not part of the WHAT: NAME (left by the interrupted process 123,
 * which is gone), ...; ..."; their names appended to `names` (may be NULL).
 * Returns how many there are. */
size_t wp_temps_note(const char *dir, const char *what, char *line, size_t n, wp_strv *names);
/* "1.50 MiB", "512 B": binary units, as the command line prints sizes. */
const char *wp_fmt_bytes(uint64_t n, char *buf, size_t sz);

#endif
