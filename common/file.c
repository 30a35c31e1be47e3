/* file.c — mapping, full reads, and crash-safe output files (see wp.h). */
#include "common/wp.h"
#include "common/internal.h"
#include "common/outdir.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

int wp_map_open(wp_map *m, const char *path, wp_err *e)
{
    memset(m, 0, sizeof *m);
    m->fd = wp_open_read(path, e);
    if (m->fd < 0) return wp_fail_errno(e, "%s: cannot open", path);
    struct stat st;
    if (fstat(m->fd, &st) != 0) {
        wp_fail_errno(e, "%s: cannot stat", path);
        goto fail;
    }
    if (!S_ISREG(st.st_mode)) {
        wp_fail(e, WP_EINVAL, "%s: not a regular file", path);
        goto fail;
    }
    m->size = (uint64_t)st.st_size;
    if (m->size == 0) return 0;
    void *p = mmap(NULL, m->size, PROT_READ, MAP_SHARED, m->fd, 0);
    if (p == MAP_FAILED) {
        wp_fail_errno(e, "%s: cannot mmap %llu bytes", path, (unsigned long long)m->size);
        goto fail;
    }
    m->data = p;
    return 0;
fail:
    close(m->fd);
    m->fd = -1;
    return e && e->code ? e->code : WP_EIO;
}

void wp_map_close(wp_map *m)
{
    if (m->data) munmap((void *)m->data, m->size);
    if (m->fd >= 0) close(m->fd);
    m->data = NULL;
    m->fd = -1;
    m->size = 0;
}

int wp_pread_full(int fd, void *buf, size_t n, uint64_t off, const char *path, wp_err *e)
{
    uint8_t *p = buf;
    while (n) {
        ssize_t r = pread(fd, p, n, (off_t)off);
        if (r < 0) {
            if (errno == EINTR) continue;
            return wp_fail_errno(e, "%s: read of %zu bytes at offset %llu failed", path, n,
                                 (unsigned long long)off);
        }
        if (r == 0)
            return wp_fail(e, WP_EINVAL, "%s: unexpected end of file at offset %llu (file truncated?)",
                           path, (unsigned long long)off);
        p += r;
        n -= (size_t)r;
        off += (uint64_t)r;
    }
    return 0;
}

int wp_read_small_file(const char *path, size_t max, char **out, size_t *len, wp_err *e)
{
    *out = NULL;
    int fd = wp_open_read(path, e);
    if (fd < 0) return wp_fail_errno(e, "%s: cannot open", path);
    struct stat st;
    if (fstat(fd, &st) != 0) {
        close(fd);
        return wp_fail_errno(e, "%s: cannot stat", path);
    }
    if ((uint64_t)st.st_size > max) {
        close(fd);
        return wp_fail(e, WP_EINVAL, "%s: file is %lld bytes, more than the %zu allowed", path,
                       (long long)st.st_size, max);
    }
    char *buf = wp_malloc((size_t)st.st_size + 1, e);
    if (!buf) {
        close(fd);
        return WP_ENOMEM;
    }
    int rc = wp_pread_full(fd, buf, (size_t)st.st_size, 0, path, e);
    close(fd);
    if (rc) {
        free(buf);
        return rc;
    }
    buf[st.st_size] = 0;
    *out = buf;
    if (len) *len = (size_t)st.st_size;
    return 0;
}

/* ---- registry for signal cleanup ------------------------------------------
 * A signal can arrive on any thread, while other threads go on creating
 * files.  So the handler first marks the process as dying; a thread that
 * registers a temporary afterwards sees the mark, removes its temporary
 * itself and waits for the end (the handler's scan and the registering
 * thread's check are ordered by sequentially consistent atomics: one of the
 * two sees the other).  A tree that gains an entry while the handler
 * removes it is removed again, a bounded number of times. */
#define MAX_TEMPS 256
static char *g_temps[MAX_TEMPS];            /* written under g_lock, read by the handler */
static unsigned char g_tree[MAX_TEMPS];     /* 1: a directory tree (outdir.c) */
static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;
static int g_dying;

static void remove_temp(const char *t, int tree)
{
    if (!tree) {
        unlink(t);
        return;
    }
    for (int i = 0; i < 200 && wp_rm_tree(t) != 0; i++) {
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
    }
}

void wp_cleanup_add(char *path, int tree)
{
    pthread_mutex_lock(&g_lock);
    for (int i = 0; i < MAX_TEMPS; i++)
        if (!g_temps[i]) {
            /* the kind first: the handler reads it once it sees the path */
            __atomic_store_n(&g_tree[i], (unsigned char)(tree != 0), __ATOMIC_SEQ_CST);
            __atomic_store_n(&g_temps[i], path, __ATOMIC_SEQ_CST);
            break;
        }
    pthread_mutex_unlock(&g_lock);
    if (__atomic_load_n(&g_dying, __ATOMIC_SEQ_CST)) {
        /* a signal handler is removing temporaries on another thread and
         * may have missed this one: remove it and wait for the end */
        remove_temp(path, tree);
        for (;;) pause();
    }
}

void wp_cleanup_del(char *path)
{
    pthread_mutex_lock(&g_lock);
    for (int i = 0; i < MAX_TEMPS; i++)
        if (g_temps[i] == path) __atomic_store_n(&g_temps[i], NULL, __ATOMIC_SEQ_CST);
    pthread_mutex_unlock(&g_lock);
}

static void on_signal(int sig)
{
    /* unlink(), nanosleep() and wp_rm_tree() are async-signal-safe; the
     * lock is not taken here on purpose */
    int saved = errno;
    __atomic_store_n(&g_dying, 1, __ATOMIC_SEQ_CST);
    for (int i = 0; i < MAX_TEMPS; i++) {
        char *t = __atomic_load_n(&g_temps[i], __ATOMIC_SEQ_CST);
        if (t) remove_temp(t, __atomic_load_n(&g_tree[i], __ATOMIC_SEQ_CST));
    }
    errno = saved;
    signal(sig, SIG_DFL);
    raise(sig);
}

void wp_cleanup_on_signals(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    /* one cleanup at a time: the other two signals wait for it (and find
     * the process gone) */
    sigaddset(&sa.sa_mask, SIGINT);
    sigaddset(&sa.sa_mask, SIGTERM);
    sigaddset(&sa.sa_mask, SIGHUP);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
}

/* ---- notices ------------------------------------------------------------------ */
static wp_notice_fn g_notice;
static void *g_notice_ud;

void wp_set_notice_fn(wp_notice_fn fn, void *ud)
{
    g_notice = fn;
    g_notice_ud = ud;
}

void wp_notice(const char *fmt, ...)
{
    if (!g_notice) return;
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    g_notice(g_notice_ud, line);
}

int wp_no_renameat2;

int wp_renameat2(const char *from, const char *to, unsigned flags)
{
    if (wp_no_renameat2) {
        errno = ENOSYS;
        return -1;
    }
#ifdef SYS_renameat2
    return (int)syscall(SYS_renameat2, AT_FDCWD, from, AT_FDCWD, to, flags);
#else
    (void)from, (void)to, (void)flags;
    errno = ENOSYS;
    return -1;
#endif
}

int wp_out_open(wp_out *o, const char *path, wp_err *e)
{
    memset(o, 0, sizeof *o);
    o->fd = -1;
    o->path = wp_strdup(path, e);
    if (!o->path) return WP_ENOMEM;
    if (!(o->tmp = wp_temp_sibling(path, "tmp"))) {
        free(o->path);
        o->path = NULL;
        return wp_oom(e, "an output file name");
    }
    o->fd = wp_fault(WP_STEP_CREATE, o->tmp) != 0 ? -1 : mkostemp(o->tmp, O_CLOEXEC);
    if (o->fd < 0) {
        char *d = strdup(path);
        wp_fail_errno(e, "%s: cannot create output in %s", path, d ? dirname(d) : "its directory");
        free(d);
        free(o->tmp);
        free(o->path);
        o->tmp = o->path = NULL;
        return WP_EIO;
    }
    fchmod(o->fd, 0644);
    wp_cleanup_add(o->tmp, 0);
    return 0;
}

static int write_err(wp_out *o, wp_err *e)
{
    if (errno == ENOSPC || errno == EDQUOT)
        return wp_fail(e, WP_EIO, "%s: no space left on device after %llu bytes", o->path,
                       (unsigned long long)o->written);
    return wp_fail_errno(e, "%s: write failed", o->path);
}

/* ---- output around the page cache (wp_out_direct) -----------------------------------
 * Bytes gather in buf, which holds the file from base (aligned); whole DIO_BUF
 * buffers go out with O_DIRECT as they fill, and the rest when the output
 * leaves direct mode (commit, sync, a write it cannot take): the aligned part
 * with O_DIRECT, the last partial block through the page cache. */
#define DIO_ALIGN 4096u           /* offsets, lengths and memory: covers 512- and 4096-byte sectors */
#define DIO_BUF (8u << 20)
#define DIO_GAP (1u << 20)        /* a forward skip up to this is written as zeros */

struct wp_out_dio {
    uint8_t *buf;
    size_t len;                   /* bytes held, from file offset base */
    uint64_t base;
    int on;                       /* the descriptor has O_DIRECT */
    int tried;                    /* O_DIRECT was asked for (at the first full buffer) */
};

/* Give the descriptor O_DIRECT: 1, or 0 when refused. */
static int dio_on(wp_out *o)
{
    o->dio->tried = 1;
    int fl = fcntl(o->fd, F_GETFL);
    o->dio->on = fl >= 0 && fcntl(o->fd, F_SETFL, fl | O_DIRECT) == 0;
    return o->dio->on;
}

static int raw_pwrite(wp_out *o, const uint8_t *p, size_t n, uint64_t off, wp_err *e)
{
    while (n) {
        ssize_t r = wp_fault(WP_STEP_WRITE, o->tmp) != 0 ? -1 : pwrite(o->fd, p, n, (off_t)off);
        if (r < 0) {
            if (errno == EINTR) continue;
            return write_err(o, e);
        }
        if (r == 0) {
            errno = ENOSPC;
            return write_err(o, e);
        }
        p += r;
        n -= (size_t)r;
        off += (uint64_t)r;
    }
    return 0;
}

static void dio_off(wp_out *o)
{
    int fl = fcntl(o->fd, F_GETFL);
    if (fl >= 0) fcntl(o->fd, F_SETFL, fl & ~O_DIRECT);
    o->dio->on = 0;
}

/* Write the first k bytes of the buffer (k aligned) with O_DIRECT, keep the
 * rest at its front.  A refusal (EINVAL: the file system's alignment is
 * larger, or it took O_DIRECT and refuses the write) writes them through the
 * page cache instead, and the output stays there. */
static int dio_flush(wp_out *o, size_t k, wp_err *e)
{
    wp_out_dio *d = o->dio;
    if (!k) return 0;
    size_t done = 0;
    while (d->on && done < k) {
        ssize_t r = wp_fault(WP_STEP_WRITE, o->tmp) != 0 ? -1 : pwrite(o->fd, d->buf + done, k - done, (off_t)(d->base + done));
        if (r < 0 && errno == EINTR) continue;
        if (r < 0 && errno == EINVAL) {
            dio_off(o);
            break;
        }
        if (r < 0) return write_err(o, e);
        if (r == 0) {
            errno = ENOSPC;
            return write_err(o, e);
        }
        done += (size_t)r;
        if (done % DIO_ALIGN) dio_off(o);   /* a short write off alignment: the rest buffered */
    }
    int rc = done < k ? raw_pwrite(o, d->buf + done, k - done, d->base + done, e) : 0;
    if (rc) return rc;
    memmove(d->buf, d->buf + k, d->len - k);
    d->len -= k;
    d->base += k;
    return 0;
}

/* Back to the page cache: everything held written, the buffer freed. */
static int dio_leave(wp_out *o, wp_err *e)
{
    wp_out_dio *d = o->dio;
    if (!d) return 0;
    int rc = dio_flush(o, d->len & ~(size_t)(DIO_ALIGN - 1), e);
    if (d->on) dio_off(o);
    if (!rc) rc = dio_flush(o, d->len, e);
    free(d->buf);
    free(d);
    o->dio = NULL;
    return rc;
}

/* n bytes at off >= the buffer's end (off - end <= DIO_GAP): zeros up to off, then p */
static int dio_put(wp_out *o, const uint8_t *p, size_t n, uint64_t off, wp_err *e)
{
    wp_out_dio *d = o->dio;
    uint64_t gap = off - (d->base + d->len);
    while (gap || n) {
        size_t room = DIO_BUF - d->len;
        if (!room) {
            if (!d->tried) dio_on(o);   /* an output of 8 MiB or more: around the cache from here */
            int rc = dio_flush(o, DIO_BUF, e);
            if (rc) return rc;
            continue;
        }
        if (gap) {
            size_t k = gap < room ? (size_t)gap : room;
            memset(d->buf + d->len, 0, k);
            d->len += k;
            gap -= k;
        } else {
            size_t k = n < room ? n : room;
            memcpy(d->buf + d->len, p, k);
            d->len += k;
            p += k;
            n -= k;
        }
    }
    if (d->base + d->len > o->written) o->written = d->base + d->len;
    return 0;
}

int wp_direct_out_env(void)
{
    const char *env = getenv("WPACK_DIRECT_OUT");
    if (env && !strcmp(env, "0")) return WP_DIRECT_OFF;
    if (env && !strcmp(env, "1")) return WP_DIRECT_FORCE;
    return WP_DIRECT_AUTO;
}

int wp_reopen(int fd, int flags)
{
    char pp[64];
    snprintf(pp, sizeof pp, "/proc/self/fd/%d", fd);
    int nfd = open(pp, flags | O_CLOEXEC);
    struct stat a, b;
    if (nfd >= 0 && (fstat(nfd, &a) || fstat(fd, &b) || a.st_dev != b.st_dev || a.st_ino != b.st_ino)) {
        close(nfd);
        nfd = -1;
    }
    return nfd;
}

int wp_out_direct(wp_out *o)
{
    int mode = wp_direct_out_env();
    if (o->fd < 0 || o->dio || o->written || mode == WP_DIRECT_OFF) return 0;
    wp_out_dio *d = calloc(1, sizeof *d);
    if (d) d->buf = aligned_alloc(DIO_ALIGN, DIO_BUF);
    if (!d || !d->buf) {
        if (d) free(d->buf);
        free(d);
        return 0;
    }
    o->dio = d;
    /* O_DIRECT from the first full buffer on: an output under 8 MiB is
     * written faster through the page cache, in one piece at commit.
     * WPACK_DIRECT_OUT=1: from the first byte (tests) */
    if (mode == WP_DIRECT_FORCE && !dio_on(o)) {
        free(d->buf);
        free(d);
        o->dio = NULL;
        return 0;
    }
    return 1;
}

int wp_out_pwrite(wp_out *o, const void *buf, size_t n, uint64_t off, wp_err *e)
{
    if (o->dio) {
        uint64_t end = o->dio->base + o->dio->len;
        if (off >= end && off - end <= DIO_GAP) return dio_put(o, buf, n, off, e);
        int rc = dio_leave(o, e);
        if (rc) return rc;
    }
    int rc = raw_pwrite(o, buf, n, off, e);
    if (!rc && off + n > o->written) o->written = off + n;
    return rc;
}

int wp_out_write(wp_out *o, const void *buf, size_t n, wp_err *e)
{
    return wp_out_pwrite(o, buf, n, o->written, e);
}

/* Give the finished temp file the name `path` unless something has it:
 * renameat2(NOREPLACE), else link() + unlink(), else (a filesystem without
 * hard links) a check and rename().  -1 with errno EEXIST when taken. */
static int claim_file(const char *tmp, const char *path)
{
    if (wp_fault(WP_STEP_RENAME, path) != 0) return -1;
    if (wp_renameat2(tmp, path, RENAME_NOREPLACE) == 0) return 0;
    if (errno != EINVAL && errno != ENOSYS) return -1;
    if (link(tmp, path) == 0) {
        unlink(tmp);
        return 0;
    }
    if (errno == EEXIST) return -1;
    if (errno != EPERM && errno != ENOTSUP && errno != EOPNOTSUPP && errno != EMLINK) return -1;
    struct stat st;
    if (lstat(path, &st) == 0) {
        errno = EEXIST;
        return -1;
    }
    return rename(tmp, path);
}

int wp_file_starts_with(const char *path, const void *magic, size_t n)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0) return 0;
    char buf[64];
    ssize_t k = n <= sizeof buf ? pread(fd, buf, n, 0) : -1;
    close(fd);
    return k == (ssize_t)n && !memcmp(buf, magic, n);
}

int wp_out_create(wp_out *o, const char *path, int force, wp_err *e)
{
    return wp_out_create_own(o, path, force, NULL, NULL, e);
}

int wp_out_create_own(wp_out *o, const char *path, int force, wp_own_fn is_own, const char *what, wp_err *e)
{
    memset(o, 0, sizeof *o);
    o->fd = -1;
    struct stat st;
    if (lstat(path, &st) == 0) {
        if (!force) return wp_fail_setting(e, WP_EEXIST, "force", "%s: already exists; not replaced", path);
        if (S_ISDIR(st.st_mode)) return wp_fail(e, WP_EEXIST, "%s: is a directory; not replaced", path);
        if (!S_ISREG(st.st_mode) && !S_ISLNK(st.st_mode))
            return wp_fail(e, WP_EEXIST, "%s: exists and is not a regular file; not replaced", path);
        if (is_own && !is_own(path))
            return wp_fail(e, WP_EEXIST, "%s: exists and is not %s; not replaced", path, what ? what : "wpack's");
    }
    /* any other lstat failure (no such directory, ...) is wp_out_open's to report */
    wp_reclaim got = {0};
    char *d = strdup(path);
    if (d) wp_sweep_quiet(dirname(d), &got);   /* what killed runs left there */
    free(d);
    int rc = wp_out_open(o, path, e);
    if (!rc) {
        o->noreplace = !force;
        o->reclaimed = got;
    }
    return rc;
}

int wp_out_sync(wp_out *o, wp_err *e)
{
    if (!o->tmp) return wp_fail(e, WP_EUSAGE, "%s: output already closed", o->path ? o->path : "?");
    int rd = dio_leave(o, e);
    if (rd) return rd;
    if (wp_fault(WP_STEP_FSYNC, o->tmp) != 0 || fsync(o->fd) != 0)
        return errno == ENOSPC ? wp_fail(e, WP_EIO, "%s: no space left on device (fsync)", o->path)
                               : wp_fail_errno(e, "%s: fsync failed", o->path);
    return 0;
}

int wp_remove_file(const char *path, wp_err *e)
{
    if (wp_fault(WP_STEP_REMOVE, path) != 0 || (unlink(path) != 0 && errno != ENOENT))
        return wp_fail_errno(e, "%s: cannot remove", path);
    return 0;
}

int wp_out_commit(wp_out *o, wp_err *e)
{
    if (!o->tmp) return wp_fail(e, WP_EUSAGE, "%s: output already closed", o->path ? o->path : "?");
    int rd = dio_leave(o, e);
    if (rd) {
        wp_out_abort(o);
        return rd;
    }
    if (wp_fault(WP_STEP_FSYNC, o->tmp) != 0 || fsync(o->fd) != 0) {
        int rc = errno == ENOSPC ? wp_fail(e, WP_EIO, "%s: no space left on device (fsync)", o->path)
                                 : wp_fail_errno(e, "%s: fsync failed", o->path);
        wp_out_abort(o);
        return rc;
    }
    if (close(o->fd) != 0) {
        o->fd = -1;
        int rc = wp_fail_errno(e, "%s: close failed", o->path);
        wp_out_abort(o);
        return rc;
    }
    o->fd = -1;
    int r = o->noreplace ? claim_file(o->tmp, o->path)
                         : wp_fault(WP_STEP_RENAME, o->path) != 0 ? -1 : rename(o->tmp, o->path);
    if (r != 0 && o->noreplace && errno == EEXIST) {
        /* something appeared at the name while we wrote: leave it alone and
         * keep the finished file out of the sweeps' way, for the user */
        char *kept = wp_temp_rename_kept(o->tmp);
        int rc = wp_fail_setting(e, WP_EEXIST, "force",
                                 "%s: appeared while it was being written; not replaced (the finished "
                                 "file is %s)", o->path, kept ? kept : o->tmp);
        free(kept);
        wp_cleanup_del(o->tmp);
        free(o->tmp);
        o->tmp = NULL;
        wp_out_abort(o);
        return rc;
    }
    if (r != 0) {
        int rc = wp_fail_errno(e, "%s: cannot rename temporary file into place", o->path);
        wp_out_abort(o);
        return rc;
    }
    wp_cleanup_del(o->tmp);
    /* make the rename itself durable; the data already is, so a directory
     * that cannot be synced (some network filesystems) is not a failure */
    wp_fsync_parent(o->path, NULL);
    free(o->tmp);
    free(o->path);
    o->tmp = o->path = NULL;
    return 0;
}

void wp_out_abort(wp_out *o)
{
    if (o->dio) {
        free(o->dio->buf);
        free(o->dio);
        o->dio = NULL;
    }
    if (o->fd >= 0) close(o->fd);
    o->fd = -1;
    if (o->tmp) {
        unlink(o->tmp);
        wp_cleanup_del(o->tmp);
        free(o->tmp);
        o->tmp = NULL;
    }
    free(o->path);
    o->path = NULL;
}

/* Write buf through an opened wp_out and commit it (abort on failure). */
static int write_whole(wp_out *o, int rc, const void *buf, size_t n, wp_err *e)
{
    if (rc) return rc;
    rc = wp_out_write(o, buf, n, e);
    if (rc) {
        wp_out_abort(o);
        return rc;
    }
    return wp_out_commit(o, e);
}

int wp_write_file_atomic(const char *path, const void *buf, size_t n, wp_err *e)
{
    wp_out o;
    return write_whole(&o, wp_out_open(&o, path, e), buf, n, e);
}

int wp_write_file_create(const char *path, const void *buf, size_t n, int force, wp_err *e)
{
    wp_out o;
    return write_whole(&o, wp_out_create(&o, path, force, e), buf, n, e);
}

int wp_fsync_dir(const char *dir, wp_err *e)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return wp_fail_errno(e, "%s: cannot open directory to sync it", dir);
    int rc = wp_fault(WP_STEP_FSYNC, dir) != 0 || fsync(fd) ? wp_fail_errno(e, "%s: fsync of directory failed", dir) : 0;
    close(fd);
    return rc;
}

int wp_fsync_parent(const char *path, wp_err *e)
{
    char *d = strdup(path);
    if (!d) return wp_oom(e, "a directory name");
    int rc = wp_fsync_dir(dirname(d), e);   /* dirname("x") is "." */
    free(d);
    return rc;
}

int wp_mkdir_p(const char *path, wp_err *e)
{
    char buf[4096];
    if (snprintf(buf, sizeof buf, "%s", path) >= (int)sizeof buf)
        return wp_fail(e, WP_EUSAGE, "%s: path too long", path);
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/') continue;
        *p = 0;
        if (mkdir(buf, 0755) != 0 && errno != EEXIST) return wp_fail_errno(e, "%s: cannot create directory", buf);
        *p = '/';
    }
    if (mkdir(buf, 0755) != 0 && errno != EEXIST) return wp_fail_errno(e, "%s: cannot create directory", buf);
    return 0;
}
