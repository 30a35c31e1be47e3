/* outdir.c — an output directory, written once (see outdir.h). */
#include "common/outdir.h"
#include "common/internal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
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

/* ---- temporaries and their owners -------------------------------------------------- */

/* Field 3 (state) and field 22 (start time) of /proc/<pid>/stat: 0, or -1
 * with errno (ENOENT: no such process). */
static int proc_stat(long pid, unsigned long long *start, char *state)
{
    char p[64], buf[1024];
    snprintf(p, sizeof p, "/proc/%ld/stat", pid);
    int fd = open(p, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return -1;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    int saved = errno;
    close(fd);
    if (n <= 0) {
        errno = n < 0 ? saved : ENOENT;   /* an empty stat: the process is going */
        return -1;
    }
    buf[n] = 0;
    /* "pid (comm) S ppid ...": comm may hold spaces and ')' */
    char *q = strrchr(buf, ')');
    if (!q) {
        errno = EINVAL;
        return -1;
    }
    q++;
    for (int field = 3; field <= 22; field++) {
        while (*q == ' ') q++;
        if (!*q) {
            errno = EINVAL;
            return -1;
        }
        if (field == 3) *state = *q;
        if (field == 22) {
            char *end;
            *start = strtoull(q, &end, 10);
            return end == q ? (errno = EINVAL, -1) : 0;
        }
        while (*q && *q != ' ') q++;
    }
    errno = EINVAL;
    return -1;
}

static pthread_mutex_t g_tag_mu = PTHREAD_MUTEX_INITIALIZER;
static char g_tag[64];
static long g_tag_pid;

const char *wp_self_tag(void)
{
    /* per pid: a forked child is another owner */
    long pid = (long)getpid();
    pthread_mutex_lock(&g_tag_mu);
    if (g_tag_pid != pid) {
        unsigned long long start = 0;
        char state;
        if (proc_stat(pid, &start, &state) != 0) start = 0;   /* no /proc: the pid alone */
        snprintf(g_tag, sizeof g_tag, "%ld-%llu", pid, start);
        g_tag_pid = pid;
    }
    pthread_mutex_unlock(&g_tag_mu);
    return g_tag;
}

#define TEMP_NAME_MAX 200   /* NAME is cut here, so the temporary's name fits in 255 bytes */

char *wp_temp_sibling(const char *path, const char *kind)
{
    const char *slash = strrchr(path, '/');
    const char *base = slash ? slash + 1 : path;
    int plen = slash ? (int)(slash - path) + 1 : 0;
    int blen = (int)strnlen(base, TEMP_NAME_MAX);
    size_t n = (size_t)plen + (size_t)blen + strlen(kind) + 96;
    char *s = malloc(n);
    if (s) snprintf(s, n, "%.*s.%.*s.%s.%s.XXXXXX", plen, path, blen, base, kind, wp_self_tag());
    return s;
}

static int is_suffix_char(char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}

int wp_temp_parse(const char *base, wp_temp_name *t)
{
    memset(t, 0, sizeof *t);
    size_t n = strlen(base);
    /* ".N.tmp.1.XXXXXX" is the shortest: 15 bytes */
    if (n < 15 || base[0] != '.' || strchr(base, '/')) return 0;
    const char *sfx = base + n - 7;
    if (sfx[0] != '.') return 0;
    for (int i = 1; i < 7; i++)
        if (!is_suffix_char(sfx[i])) return 0;
    /* the owner: "<pid>-<start>" or "<pid>" between the two dots before it */
    const char *own = sfx;
    while (own > base && own[-1] != '.') own--;
    if (own <= base + 1 || own == sfx) return 0;
    char *end;
    if (*own < '1' || *own > '9') return 0;
    long pid = strtol(own, &end, 10);
    if (pid <= 0) return 0;
    unsigned long long start = 0;
    if (*end == '-') {
        const char *st = end + 1;
        if (*st < '0' || *st > '9') return 0;
        start = strtoull(st, &end, 10);
    }
    if (end != sfx) return 0;
    /* the kind, between the dots before the owner */
    const char *kdot = own - 1;   /* the '.' before the owner */
    const char *k = kdot;
    while (k > base && k[-1] != '.') k--;
    size_t klen = (size_t)(kdot - k);
    if (k <= base + 1) return 0;   /* no NAME before the kind */
    if (klen == 3 && !strncmp(k, "tmp", 3)) t->kind = WP_TEMP_TMP;
    else if (klen == 3 && !strncmp(k, "old", 3)) t->kind = WP_TEMP_OLD;
    else if (klen == 4 && !strncmp(k, "kept", 4)) t->kind = WP_TEMP_KEPT;
    else return 0;
    size_t tlen = (size_t)(k - 1 - (base + 1));   /* ".NAME." */
    if (!tlen || tlen >= sizeof t->target) return 0;
    memcpy(t->target, base + 1, tlen);
    t->target[tlen] = 0;
    t->pid = pid;
    t->start = start;
    return 1;
}

int wp_temp_owner_alive(const wp_temp_name *t)
{
    unsigned long long start = 0;
    char state = 0;
    if (proc_stat(t->pid, &start, &state) == 0) {
        if (state == 'Z' || state == 'X') return 0;   /* it will never write again */
        return t->start == 0 || start == t->start;
    }
    if (errno == ENOENT) {
        /* no such process, if /proc is there at all */
        unsigned long long s2;
        char st2;
        if (proc_stat((long)getpid(), &s2, &st2) == 0) return 0;
    }
    if (kill((pid_t)t->pid, 0) != 0 && errno == ESRCH) return 0;
    return 1;   /* cannot tell: leave it */
}

/* Bytes of the regular files in a tree (symbolic links not followed). */
static uint64_t tree_bytes_at(int dfd, const char *name, int depth)
{
    struct stat st;
    if (fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) != 0) return 0;
    if (!S_ISDIR(st.st_mode)) return S_ISREG(st.st_mode) ? (uint64_t)st.st_size : 0;
    if (depth >= RM_MAX_DEPTH) return 0;
    int fd = openat(dfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) return 0;
    DIR *d = fdopendir(fd);
    if (!d) {
        close(fd);
        return 0;
    }
    uint64_t sum = 0;
    struct dirent *de;
    while ((de = readdir(d)))
        if (strcmp(de->d_name, ".") && strcmp(de->d_name, ".."))
            sum += tree_bytes_at(dirfd(d), de->d_name, depth + 1);
    closedir(d);
    return sum;
}

const char *wp_fmt_bytes(uint64_t n, char *buf, size_t sz)
{
    static const char *const u[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB"};
    if (n < 1024) {
        snprintf(buf, sz, "%llu B", (unsigned long long)n);
        return buf;
    }
    double v = (double)n;
    int i = 0;
    while (v >= 1024 && i < 5) v /= 1024, i++;
    snprintf(buf, sz, "%.2f %s", v, u[i]);
    return buf;
}

/* Put an interrupted replace's previous output back at its name: only if
 * the name is free, never over anything. */
static int restore(const char *from, const char *to)
{
    if (wp_fault(WP_STEP_RENAME, to) != 0) return -1;
    if (wp_renameat2(from, to, RENAME_NOREPLACE) == 0) return 0;
    if (errno != EINVAL && errno != ENOSYS) return -1;
    struct stat st;
    if (lstat(to, &st) == 0) {
        errno = EEXIST;
        return -1;
    }
    return rename(from, to);
}

int wp_sweep(const char *dir, int dry_run, wp_sweep_fn fn, void *ud, wp_reclaim *r, wp_err *e)
{
    if (r) memset(r, 0, sizeof *r);
    DIR *d = opendir(dir);
    if (!d) return wp_fail_errno(e, "%s: cannot list", dir);
    /* the names first: the directory changes as we go */
    wp_strv names = {0};
    struct dirent *de;
    int rc = 0;
    while (!rc && (de = readdir(d))) {
        wp_temp_name t;
        if (wp_temp_parse(de->d_name, &t)) rc = wp_strv_push(&names, de->d_name, e);
    }
    closedir(d);
    for (size_t i = 0; !rc && i < names.n; i++) {
        const char *nm = names.v[i];
        wp_temp_name t;
        wp_temp_parse(nm, &t);
        char path[4096], target[4096];
        if (wp_path_join(path, sizeof path, dir, nm) || wp_path_join(target, sizeof target, dir, t.target)) continue;
        if (t.kind == WP_TEMP_KEPT || wp_temp_owner_alive(&t)) {
            if (fn) fn(ud, nm, t.kind == WP_TEMP_KEPT ? WP_SWEEP_KEPT : WP_SWEEP_BUSY, tree_bytes_at(AT_FDCWD, path, 0), &t);
            continue;
        }
        uint64_t bytes = tree_bytes_at(AT_FDCWD, path, 0);
        struct stat st;
        if (t.kind == WP_TEMP_OLD && lstat(target, &st) != 0 && errno == ENOENT) {
            if (!dry_run && restore(path, target) != 0) {
                if (fn) fn(ud, nm, WP_SWEEP_FAILED, bytes, &t);
                continue;
            }
            if (fn) fn(ud, nm, WP_SWEEP_RESTORED, bytes, &t);
            continue;
        }
        if (!dry_run && (wp_fault(WP_STEP_REMOVE, path) != 0 || wp_rm_tree(path) != 0)) {
            if (fn) fn(ud, nm, WP_SWEEP_FAILED, bytes, &t);
            continue;
        }
        if (r) {
            r->entries++;
            r->bytes += bytes;
        }
        if (fn) fn(ud, nm, WP_SWEEP_REMOVED, bytes, &t);
    }
    wp_strv_free(&names);
    return rc;
}

typedef struct quiet_acc {
    const char *dir;
} quiet_acc;

static void quiet_fn(void *ud, const char *name, wp_sweep_action a, uint64_t bytes, const wp_temp_name *t)
{
    const quiet_acc *q = ud;
    (void)bytes;
    if (a == WP_SWEEP_RESTORED)
        wp_notice("%s/%s: put back from %s, where an interrupted replace (process %ld) had moved it", q->dir,
                  t->target, name, t->pid);
}

void wp_sweep_quiet(const char *dir, wp_reclaim *r)
{
    wp_reclaim got;
    quiet_acc q = {dir};
    if (wp_sweep(dir, 0, quiet_fn, &q, &got, NULL) != 0) memset(&got, 0, sizeof got);
    if (got.entries) {
        char b[32];
        wp_notice("removed %llu stale temporar%s (%s) from %s, left by wpack runs that are gone",
                  (unsigned long long)got.entries, got.entries == 1 ? "y" : "ies", wp_fmt_bytes(got.bytes, b, sizeof b),
                  dir);
    }
    if (r) *r = got;
}

size_t wp_temps_note(const char *dir, const char *what, char *line, size_t n, wp_strv *names)
{
    if (n) line[0] = 0;
    DIR *d = opendir(dir);
    if (!d) return 0;
    wp_strv found = {0};
    struct dirent *de;
    while ((de = readdir(d))) {
        wp_temp_name t;
        if (wp_temp_parse(de->d_name, &t) && t.kind != WP_TEMP_KEPT) wp_strv_push(&found, de->d_name, NULL);
    }
    closedir(d);
    /* sorted, so the line reads the same every time */
    for (size_t i = 1; i < found.n; i++)
        for (size_t j = i; j > 0 && strcmp(found.v[j - 1], found.v[j]) > 0; j--) {
            char *x = found.v[j];
            found.v[j] = found.v[j - 1];
            found.v[j - 1] = x;
        }
    char items[300] = "";
    size_t at = 0;
    for (size_t i = 0; i < found.n; i++) {
        wp_temp_name t;
        wp_temp_parse(found.v[i], &t);
        int alive = wp_temp_owner_alive(&t);
        char one[400];
        snprintf(one, sizeof one, "%s%s (%s process %ld%s)", i ? ", " : "", found.v[i],
                 alive ? "being written by" : "left by the interrupted", t.pid, alive ? "" : ", which is gone");
        if (at + strlen(one) < sizeof items - 8) at += (size_t)snprintf(items + at, sizeof items - at, "%s", one);
        else if (at + 5 < sizeof items) at += (size_t)snprintf(items + at, sizeof items - at, ", ...");
        if (names) wp_strv_push(names, found.v[i], NULL);
    }
    size_t count = found.n;
    if (count && n)
        snprintf(line, n, "%s: temporary file%s of an unfinished wpack run, not part of the %s: %s; the next sign "
                          "or clean of it removes %s once %s gone", dir, count == 1 ? "" : "s", what, items,
                 count == 1 ? "it" : "them", count == 1 ? "its owner is" : "their owners are");
    wp_strv_free(&found);
    return count;
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
    if (wp_fault(WP_STEP_FSYNC, dir) != 0) return;
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) {
        fsync(fd);
        close(fd);
    }
}

/* "PARENT/.NAME.WHAT.<pid>-<start>.XXXXXX" for the target d->path. */
static char *sibling(const wp_outdir *d, const char *what) { return wp_temp_sibling(d->path, what); }

/* The directory that holds path, into buf. */
static const char *parent_of(const char *path, char *buf, size_t n)
{
    const char *slash = strrchr(path, '/');
    if (!slash) snprintf(buf, n, ".");
    else if (slash == path) snprintf(buf, n, "/");
    else snprintf(buf, n, "%.*s", (int)(slash - path), path);
    return buf;
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
    char parent[4096];
    parent_of(d->path, parent, sizeof parent);
    if (!*base || !strcmp(base, ".") || !strcmp(base, ".."))
        rc = wp_fail(e, WP_EUSAGE, "%s: not a usable output directory name", path);
    /* what killed runs left here goes first (an interrupted replace's
     * previous output comes back before the target is judged) */
    if (!rc) wp_sweep_quiet(parent, &d->reclaimed);
    if (!rc && (rc = judge(d, e)) > 0) rc = 0;
    if (!rc && !(d->tmp = sibling(d, "tmp"))) rc = wp_oom(e, "an output directory name");
    if (!rc && (wp_fault(WP_STEP_CREATE, d->tmp) != 0 || !mkdtemp(d->tmp)))
        rc = wp_fail_errno(e, "%s: cannot create the output directory in %s", d->path, parent);
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
    if (wp_fault(WP_STEP_RENAME, path) != 0) return -1;
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
    if (wp_fault(WP_STEP_RENAME, d->path) != 0) return -1;
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
    if (!mkdtemp(aside) || rmdir(aside) != 0 || wp_fault(WP_STEP_RENAME, aside) != 0 || rename(d->path, aside) != 0) {
        int saved = errno;
        free(aside);
        errno = saved;
        return -1;
    }
    if (wp_fault(WP_STEP_RENAME, d->path) != 0 || rename(d->tmp, d->path) != 0) {
        int saved = errno;
        if (rename(aside, d->path) != 0) { /* leave it aside: the next sweep puts it back */
        }
        free(aside);
        errno = saved;
        return -1;
    }
    *old = aside;
    return 0;
}

char *wp_temp_rename_kept(const char *tmp)
{
    /* ".NAME.tmp.<owner>.XXXXXX" -> ".NAME.kept.<owner>.XXXXXX": the owner
     * and the suffix hold no ".tmp.", so the last one is the kind */
    const char *k = NULL;
    for (const char *p = tmp; (p = strstr(p, ".tmp.")); p++) k = p;
    if (!k) return NULL;
    size_t n = strlen(tmp) + 2;
    char *kept = malloc(n);
    if (!kept) return NULL;
    snprintf(kept, n, "%.*s.kept.%s", (int)(k - tmp), tmp, k + 5);
    struct stat st;
    if (lstat(kept, &st) == 0 || wp_fault(WP_STEP_RENAME, kept) != 0 || rename(tmp, kept) != 0) {
        free(kept);
        return NULL;
    }
    return kept;
}

/* The finished work could not take the name: keep it out of the sweeps'
 * way (renamed .OUT.kept.*), tell where. */
static int keep(wp_outdir *d, const wp_err *why, int appeared, wp_err *e)
{
    char *kept = wp_temp_rename_kept(d->tmp);
    const char *where = kept ? kept : d->tmp;
    char msg[1024];
    if (appeared && why->setting[0])
        snprintf(msg, sizeof msg, "%s: appeared while the output was being written; not replaced", d->path);
    else if (appeared)
        snprintf(msg, sizeof msg, "%.900s (it appeared while the output was being written)", why->msg);
    else
        snprintf(msg, sizeof msg, "%s", why->msg);
    int rc = why->setting[0]
                 ? wp_fail_setting(e, WP_EEXIST, why->setting, "%s; the finished output is kept in %s", msg, where)
                 : wp_fail(e, WP_EEXIST, "%s; the finished output is kept in %s", msg, where);
    wp_cleanup_del(d->tmp);   /* finished work: a later signal must not take it */
    free(kept);
    free(d->tmp);
    free(d->path);
    d->tmp = d->path = NULL;
    return rc;
}

int wp_outdir_commit(wp_outdir *d, wp_err *e) { return wp_outdir_commit_cancel(d, NULL, e); }

int wp_outdir_commit_cancel(wp_outdir *d, volatile sig_atomic_t *cancel, wp_err *e)
{
    if (!d->tmp) return wp_fail(e, WP_EUSAGE, "%s: output already closed", d->path ? d->path : "?");
    /* the files are durable (wp_out); this makes their names durable */
    fsync_quiet(d->tmp);
    char *old = NULL;
    int rc = 0;
    /* What is at the name can change under us: judge it again, and again
     * after a claim lost a race, a few times at most.  `appeared`: the name
     * was free at begin (or replaceable) and something else holds it now. */
    for (int tries = 0;; tries++) {
        if (cancel && *cancel) {
            rc = wp_fail(e, WP_EUSAGE, "interrupted");
            wp_outdir_abort(d);
            return rc;
        }
        wp_err why = {0};
        int j = judge(d, &why);
        if (j < 0) return keep(d, &why, 1, e);
        if (tries == 3) {
            wp_fail(&why, WP_EEXIST, "%s: kept changing while the output was moved into place; not replaced", d->path);
            return keep(d, &why, 0, e);
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
    char parent[4096];
    parent_of(d->path, parent, sizeof parent);
    if (old) {
        if (old != d->tmp) wp_cleanup_add(old, 1);
        /* the output is in place whatever happens here; what cannot be
         * removed now is stale once we exit, and the next sweep takes it */
        if (wp_fault(WP_STEP_REMOVE, old) != 0 || wp_rm_tree(old) != 0)
            wp_notice("%s: the replaced output could not be removed (%s); the next command writing in %s removes it",
                      old, strerror(errno), parent);
        if (old != d->tmp) {
            wp_cleanup_del(old);
            free(old);
        }
    }
    wp_cleanup_del(d->tmp);
    fsync_quiet(parent);
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
