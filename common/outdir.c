/* outdir.c — an output directory, written once (see outdir.h). */
#include "common/outdir.h"
#include "common/internal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

/* ---- removing a tree -------------------------------------------------------------
 * Only system calls and stack buffers, so the signal handler can use it.  An
 * entry is first unlinked; only if it is a directory (EISDIR, or EPERM as
 * POSIX allows) is it opened, with O_NOFOLLOW | O_DIRECTORY: a symbolic link
 * is removed as a link and never entered. */

#define RM_MAX_DEPTH 32

struct wp_dirent64 {
    uint64_t d_ino;
    int64_t d_off;
    unsigned short d_reclen;
    unsigned char d_type;
    char d_name[];
};

static int rm_children(int fd, int depth);

static int rm_at(int dfd, const char *name, int depth)
{
    if (unlinkat(dfd, name, 0) == 0 || errno == ENOENT) return 0;
    if (errno != EISDIR && errno != EPERM) return -1;
    if (depth >= RM_MAX_DEPTH) {
        errno = ELOOP;
        return -1;
    }
    int fd = openat(dfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) return errno == ENOENT ? 0 : -1;
    int r = rm_children(fd, depth + 1);
    int saved = errno;
    close(fd);
    errno = saved;
    if (unlinkat(dfd, name, AT_REMOVEDIR) != 0 && errno != ENOENT) return -1;
    return r;
}

/* Remove everything in the open directory fd.  Some filesystems skip
 * entries when a directory changes while it is read, so after a pass that
 * removed anything it is read again from the start, until a pass removes
 * nothing: what is left then could not be removed. */
static int rm_children(int fd, int depth)
{
    char buf[2048] __attribute__((aligned(8)));
    int removed, bad;
    do {
        removed = bad = 0;
        for (;;) {
            long n = syscall(SYS_getdents64, fd, buf, sizeof buf);
            if (n < 0 && errno == EINTR) continue;
            if (n < 0) return -1;
            if (n == 0) break;
            for (long off = 0; off < n;) {
                struct wp_dirent64 *d = (struct wp_dirent64 *)(void *)(buf + off);
                off += d->d_reclen;
                const char *nm = d->d_name;
                if (nm[0] == '.' && (!nm[1] || (nm[1] == '.' && !nm[2]))) continue;
                if (rm_at(fd, nm, depth) == 0) removed = 1;
                else bad = 1;
            }
        }
    } while (removed && lseek(fd, 0, SEEK_SET) == 0);
    if (bad) errno = ENOTEMPTY;
    return bad ? -1 : 0;
}

int wp_rm_tree(const char *path)
{
    struct stat st;
    if (lstat(path, &st) != 0) return errno == ENOENT ? 0 : -1;
    if (!S_ISDIR(st.st_mode)) return unlink(path) == 0 || errno == ENOENT ? 0 : -1;
    int fd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) return errno == ENOENT ? 0 : -1;
    int r = rm_children(fd, 0);
    int saved = errno;
    close(fd);
    errno = saved;
    if (rmdir(path) != 0 && errno != ENOENT) return -1;
    return r;
}

/* ---- recognising what is there ------------------------------------------------------ */

/* 1 empty, 0 not, -1 unreadable */
static int dir_empty(const char *path)
{
    DIR *d = opendir(path);
    if (!d) return -1;
    struct dirent *de;
    int empty = 1;
    while (empty && (de = readdir(d)))
        if (strcmp(de->d_name, ".") && strcmp(de->d_name, "..")) empty = 0;
    closedir(d);
    return empty;
}

/* Top-level names only: a regular file `exact`, and one ending in `suffix`. */
static void scan_top(const char *path, const char *exact, const char *suffix, int *has_exact, int *has_suffix)
{
    *has_exact = *has_suffix = 0;
    DIR *d = opendir(path);
    if (!d) return;
    struct dirent *de;
    while ((de = readdir(d))) {
        if (de->d_name[0] == '.') continue;
        int is_exact = !strcmp(de->d_name, exact), is_suf = wp_str_ends_with(de->d_name, suffix);
        if (!is_exact && !is_suf) continue;
        struct stat st;
        if (fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISREG(st.st_mode)) continue;
        if (is_exact) *has_exact = 1;
        if (is_suf) *has_suffix = 1;
    }
    closedir(d);
}

int wp_outdir_is_build(const char *path)
{
    int m, w;
    scan_top(path, "manifest.json", ".wpk", &m, &w);
    return m || w;
}

int wp_outdir_is_checkpoint(const char *path)
{
    int c, s;
    scan_top(path, "config.json", ".safetensors", &c, &s);
    return c && s;
}

static const char *kind_text(const wp_outdir_opts *o)
{
    if (o->is_own) return o->what ? o->what : "the kind of output being written";
    switch (o->kind) {
    case WP_OUTDIR_BUILD: return "a build directory (no manifest.json or .wpk in it)";
    case WP_OUTDIR_CHECKPOINT: return "a checkpoint (no config.json and .safetensors in it)";
    default: return "an empty directory";
    }
}

static int is_own(const wp_outdir_opts *o, const char *path)
{
    if (o->is_own) return o->is_own(path, o->ud);
    switch (o->kind) {
    case WP_OUTDIR_BUILD: return wp_outdir_is_build(path);
    case WP_OUTDIR_CHECKPOINT: return wp_outdir_is_checkpoint(path);
    default: return 0;
    }
}

/* The overwrite rule applied to what is at d->path now: 0 nothing there,
 * 1 something that may be replaced, or a WP_EEXIST refusal in e. */
static int judge(const wp_outdir *d, wp_err *e)
{
    const wp_outdir_opts *o = &d->o;
    struct stat st;
    /* a path that cannot be looked at (no such parent, ...) is left to
     * mkdtemp to report; the claim never replaces anything anyway */
    if (lstat(d->path, &st) != 0) return 0;
    if (S_ISDIR(st.st_mode)) {
        int empty = dir_empty(d->path);
        if (empty == 1 && (o->take_empty || o->force)) return 1;
        if (!o->force)
            return wp_fail_setting(e, WP_EEXIST, "force", "%s: already exists%s; not replaced", d->path,
                                   empty == 0 && o->take_empty ? " (and is not empty)" : "");
        if (is_own(o, d->path)) return 1;
        return wp_fail(e, WP_EEXIST, "%s: exists and is not %s; not replaced", d->path, kind_text(o));
    }
    if (!o->force) return wp_fail_setting(e, WP_EEXIST, "force", "%s: already exists; not replaced", d->path);
    return wp_fail(e, WP_EEXIST, "%s: exists and is %s, not a directory; not replaced", d->path,
                   S_ISLNK(st.st_mode) ? "a symbolic link" : S_ISREG(st.st_mode) ? "a file" : "something else");
}

/* ---- the object ------------------------------------------------------------------------ */

static void fsync_quiet(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) {
        fsync(fd);
        close(fd);
    }
}

/* "PARENT/.NAME.WHAT.<pid>.XXXXXX" for the target d->path. */
static char *sibling(const wp_outdir *d, const char *what)
{
    const char *slash = strrchr(d->path, '/');
    const char *base = slash ? slash + 1 : d->path;
    int plen = slash ? (int)(slash - d->path) : 0;
    size_t n = strlen(d->path) + strlen(what) + 48;
    char *s = malloc(n);
    if (s)
        snprintf(s, n, "%.*s%s.%s.%s.%ld.XXXXXX", plen, d->path, slash ? "/" : "", base, what, (long)getpid());
    return s;
}

int wp_outdir_begin(wp_outdir *d, const char *path, const wp_outdir_opts *o, wp_err *e)
{
    static const wp_outdir_opts defaults;
    memset(d, 0, sizeof *d);
    d->o = o ? *o : defaults;
    size_t n = strlen(path);
    while (n > 1 && path[n - 1] == '/') n--;   /* "out/" names "out" */
    if (!(d->path = strndup(path, n))) return wp_oom(e, "an output directory name");
    const char *slash = strrchr(d->path, '/'), *base = slash ? slash + 1 : d->path;
    int rc = 0;
    if (!*base || !strcmp(base, ".") || !strcmp(base, ".."))
        rc = wp_fail(e, WP_EUSAGE, "%s: not a usable output directory name", path);
    if (!rc && (rc = judge(d, e)) > 0) rc = 0;
    if (!rc && !(d->tmp = sibling(d, "tmp"))) rc = wp_oom(e, "an output directory name");
    if (!rc && !mkdtemp(d->tmp)) {
        char parent[4096];
        snprintf(parent, sizeof parent, "%.*s", slash ? (slash == d->path ? 1 : (int)(slash - d->path)) : 1,
                 slash ? d->path : ".");
        rc = wp_fail_errno(e, "%s: cannot create the output directory in %s", d->path, parent);
    }
    if (rc) {
        free(d->tmp);
        free(d->path);
        d->tmp = d->path = NULL;
        return rc;
    }
    chmod(d->tmp, 0755);   /* mkdtemp's 0700 is for the name race, not the result */
    wp_cleanup_add(d->tmp, 1);
    return 0;
}

const char *wp_outdir_tmp(const wp_outdir *d) { return d->tmp; }

/* Take the name for a directory nobody holds: renameat2(NOREPLACE), or where
 * that is unsupported rename(), which replaces at most an empty directory.
 * -1 with errno EEXIST when something else is there. */
static int claim_free(const char *tmp, const char *path)
{
    if (wp_renameat2(tmp, path, RENAME_NOREPLACE) == 0) return 0;
    if (errno != EINVAL && errno != ENOSYS) return -1;
    if (rename(tmp, path) == 0) return 0;
    if (errno == ENOTEMPTY || errno == ENOTDIR || errno == EISDIR) errno = EEXIST;
    return -1;
}

/* Replace what is at path with tmp; *old receives where the old tree now is
 * (to be removed), which is tmp itself after an exchange. */
static int swap_in(wp_outdir *d, char **old)
{
    *old = NULL;
    if (wp_renameat2(d->tmp, d->path, RENAME_EXCHANGE) == 0) {
        *old = d->tmp;
        return 0;
    }
    if (errno != EINVAL && errno != ENOSYS) return -1;
    /* the old two-rename swap: for a moment nothing is at path */
    char *aside = sibling(d, "old");
    if (!aside) {
        errno = ENOMEM;
        return -1;
    }
    if (!mkdtemp(aside) || rmdir(aside) != 0 || rename(d->path, aside) != 0) {
        int saved = errno;
        free(aside);
        errno = saved;
        return -1;
    }
    if (rename(d->tmp, d->path) != 0) {
        int saved = errno;
        if (rename(aside, d->path) != 0) { /* leave it aside: nothing better to do */
        }
        free(aside);
        errno = saved;
        return -1;
    }
    *old = aside;
    return 0;
}

/* The finished work could not take the name: keep it, tell where. */
static int keep(wp_outdir *d, const wp_err *why, wp_err *e)
{
    int rc = why->setting[0]
                 ? wp_fail_setting(e, WP_EEXIST, why->setting, "%s; the finished output is kept in %s", why->msg, d->tmp)
                 : wp_fail(e, WP_EEXIST, "%s; the finished output is kept in %s", why->msg, d->tmp);
    wp_cleanup_del(d->tmp);   /* finished work: a later signal must not take it */
    free(d->tmp);
    free(d->path);
    d->tmp = d->path = NULL;
    return rc;
}

int wp_outdir_commit(wp_outdir *d, wp_err *e)
{
    if (!d->tmp) return wp_fail(e, WP_EUSAGE, "%s: output already closed", d->path ? d->path : "?");
    /* the files are durable (wp_out); this makes their names durable */
    fsync_quiet(d->tmp);
    char *old = NULL;
    int rc = 0;
    /* What is at the name can change under us: judge it again, and again
     * after a claim lost a race, a few times at most. */
    for (int tries = 0;; tries++) {
        wp_err why = {0};
        int j = judge(d, &why);
        if (j < 0) return keep(d, &why, e);
        if (tries == 3) {
            wp_fail(&why, WP_EEXIST, "%s: kept changing while the output was moved into place; not replaced", d->path);
            return keep(d, &why, e);
        }
        if (j == 0) {
            if (claim_free(d->tmp, d->path) == 0) break;
            if (errno == EEXIST) continue;   /* it appeared: judge what it is */
        } else {
            if (swap_in(d, &old) == 0) break;
            if (errno == ENOENT) continue;   /* it vanished: claim the free name */
        }
        rc = wp_fail_errno(e, "%s: cannot move the finished output into place", d->path);
        wp_outdir_abort(d);
        return rc;
    }
    /* d->tmp is now either gone (claimed) or holds the old tree (exchanged) */
    if (old) {
        if (old != d->tmp) wp_cleanup_add(old, 1);
        wp_rm_tree(old);
        if (old != d->tmp) {
            wp_cleanup_del(old);
            free(old);
        }
    }
    wp_cleanup_del(d->tmp);
    char *slash = strrchr(d->path, '/');
    if (slash == d->path) fsync_quiet("/");
    else if (slash) {
        *slash = 0;
        fsync_quiet(d->path);
    } else {
        fsync_quiet(".");
    }
    free(d->tmp);
    free(d->path);
    d->tmp = d->path = NULL;
    return 0;
}

void wp_outdir_abort(wp_outdir *d)
{
    if (d->tmp) {
        wp_rm_tree(d->tmp);
        wp_cleanup_del(d->tmp);
        free(d->tmp);
        d->tmp = NULL;
    }
    free(d->path);
    d->path = NULL;
}
