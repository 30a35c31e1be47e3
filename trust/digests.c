/* digests.c — the parallel streaming SHA-256 engine behind verify, manifest
 * creation and verify-source (see trust.h).
 *
 * Jobs (SHA-256 over ranges of one file) run longest first on the worker
 * threads.  A job's bytes reach its worker window by window (WINDOW bytes):
 *   - by default (auto) hashed straight from a read-only mapping, populated
 *     ahead of the hash with POSIX_FADV_WILLNEED read-ahead of the window and
 *     the next (no kernel copy into a user buffer, which costs about a sixth
 *     more CPU per byte than hashing alone; the read-ahead queues large reads
 *     at once, where faulting alone reads a window in small pieces);
 *   - WPACK_HASH_IO=mixed decides per window: mapped when mincore says the
 *     page cache holds at least half of it, else read with O_DIRECT into an
 *     aligned buffer through a second descriptor of the same file (no page
 *     cache pages to allocate and reclaim: less CPU per cold byte, but one
 *     8 MiB read at a time per job, which on a quiet machine reads the disk
 *     at dd's rate while mapped read-ahead reads it 1.2-1.6x faster;
 *     docs/performance.md "Verify");
 *   - a file that cannot be mapped (a device): pread into a buffer.
 * A job longer than one window has a reader thread that runs up to NSLOT
 * windows ahead of the hash, so reading (the disk, or faulting a window in)
 * overlaps hashing.  A file truncated under us makes an access to a mapped
 * page fail with SIGBUS; a per-thread sigsetjmp guard around the hash of each
 * window turns that into the error pread gives ("unexpected end of file ...
 * (file truncated?)"), as a short O_DIRECT read does.  A SIGBUS outside a
 * guarded window is not ours: the previous disposition is restored and the
 * faulting access repeats under it.  WPACK_HASH_IO=map|direct|pread|mixed
 * forces a way (a test and measurement facility; auto is map). */
#include "trust/trust.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#ifndef MADV_POPULATE_READ
#define MADV_POPULATE_READ 22
#endif

/* A window: large enough that mmap/munmap, a syscall and a thread hand-off
 * per window are noise, small enough that NSLOT of them in flight per worker
 * stay cheap in memory. */
#define WINDOW (8u << 20)
/* Windows are mapped a span at a time (up to SPAN bytes of one range, whole
 * windows): one mmap and one munmap per span, not per window.  An munmap of a
 * populated mapping shoots down the TLB of every core that runs the process
 * (an interrupt to each); once per 8 MiB window that was a quarter of a cached
 * verify's kernel time (docs/performance.md "Verify").  A span's pages stay
 * mapped until its last window is hashed: at most two spans per job. */
#define SPAN (4u * WINDOW)
/* windows a reader runs ahead of its hash (the one being hashed included) */
#define NSLOT 3
/* O_DIRECT alignment of offsets, lengths and buffers: 4096 covers 512- and
 * 4096-byte sectors; a file system that wants more refuses with EINVAL and
 * the job falls back to mapping/pread */
#define DALIGN 4096u
#define BUFSZ (WINDOW + 2 * DALIGN)
/* workers that may hold O_DIRECT buffers (NSLOT x BUFSZ each): at most
 * 256 MiB of them, however many threads */
#define DIRECT_WORKERS ((256u << 20) / (NSLOT * BUFSZ))

enum { IO_AUTO, IO_MAP, IO_DIRECT, IO_PREAD, IO_MIXED };

void (*wp_hash_window_hook)(const wp_hash_job *j, uint64_t off, size_t len);

/* ---- SIGBUS guard ----------------------------------------------------------------- */

static _Thread_local sigjmp_buf *t_guard;        /* set while hashing a mapped window */
static _Thread_local const uint8_t *t_lo, *t_hi; /* ... this one */
static _Thread_local const uint8_t *t_fault;     /* where the SIGBUS hit */
static struct sigaction g_old_bus;
static pthread_once_t g_bus_once = PTHREAD_ONCE_INIT;
static int g_bus_ok;

static void on_sigbus(int sig, siginfo_t *si, void *uc)
{
    (void)uc;
    sigjmp_buf *g = t_guard;
    const uint8_t *a = si ? (const uint8_t *)si->si_addr : NULL;
    if (g && a >= t_lo && a < t_hi) {
        t_guard = NULL;
        t_fault = a;
        siglongjmp(*g, 1);
    }
    /* not a window of ours: back to what was there, and let it happen again */
    sigaction(SIGBUS, &g_old_bus, NULL);
    if (!si || si->si_code <= 0) raise(sig);
}

static void install_bus(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_sigbus;
    sa.sa_flags = SA_SIGINFO | SA_NODEFER;
    sigemptyset(&sa.sa_mask);
    g_bus_ok = sigaction(SIGBUS, &sa, &g_old_bus) == 0;
}

/* Hash n bytes at p (inside the mapping [lo, hi)); 0, or -1 with *fault set
 * when a page could not be read (SIGBUS: the file shrank). */
static int hash_guarded(wp_sha256 *h, const uint8_t *p, size_t n, const uint8_t *lo,
                        const uint8_t *hi, const uint8_t **fault)
{
    sigjmp_buf jb;
    if (sigsetjmp(jb, 1)) {
        *fault = t_fault;
        return -1;
    }
    t_lo = lo;
    t_hi = hi;
    t_guard = &jb;
    wp_sha256_update(h, p, n);
    t_guard = NULL;
    return 0;
}

/* ---- the engine -------------------------------------------------------------------- */

typedef struct pool {
    wp_hash_job *jobs;
    size_t n;
    size_t *order;              /* longest job first */
    uint8_t *shared;            /* per job: some of its bytes are another job's too */
    int io;                     /* IO_*: WPACK_HASH_IO */
    atomic_size_t next;
    atomic_uint_fast64_t bytes;
    atomic_int stop;
    atomic_uint nworkers;       /* workers started: the first DIRECT_WORKERS may use O_DIRECT */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int running;
    int rc;
    wp_err *e;
} pool;

static uint64_t job_len(const wp_hash_job *j)
{
    uint64_t s = 0;
    for (size_t i = 0; i < j->nranges; i++) s += j->ranges[i].len;
    return s;
}

static int stopped(pool *p) { return atomic_load_explicit(&p->stop, memory_order_relaxed); }

static int eof_error(const wp_hash_job *j, uint64_t off, wp_err *e)
{
    return wp_fail(e, WP_EINVAL, "%s: unexpected end of file at offset %llu (file truncated?)", j->path,
                   (unsigned long long)off);
}

/* ---- the reader: one job's bytes as a sequence of windows ------------------------------
 *
 * Each window (WINDOW bytes of one range) reaches the hashing worker in one of
 * three ways, decided window by window:
 *   MAP     mapped read-only (populated: page-table work, no copy); hashed under
 *           the SIGBUS guard.  For windows the page cache (mostly) holds.
 *   DIRECT  read with O_DIRECT into an aligned buffer (the disk DMAs straight
 *           into it: no page-cache insertion, no copy).  For windows the page
 *           cache does not hold.
 *   PREAD   pread into a buffer: a file that cannot be mapped (a device), or
 *           forced.
 * A job longer than one window gets a reader thread that runs up to NSLOT
 * windows ahead of the hash, so the disk (or the page-table work) overlaps
 * hashing; a shorter job is read on the worker itself. */

enum { K_MAP, K_BUF, K_END, K_ERR };

typedef struct slot {
    int kind;
    const uint8_t *p;           /* the window's bytes */
    size_t len;
    uint8_t *map;               /* K_MAP: the span's mapping [map, map + maplen) */
    size_t maplen;
    uint8_t *unmap;             /* the last window of a span: unmap [unmap, unmap + unmaplen) once hashed */
    size_t unmaplen;
    uint64_t off;               /* file offset of p[0] */
} slot;

typedef struct stream {
    pool *p;
    wp_hash_job *j;
    /* producer state */
    size_t r;                   /* current range */
    uint64_t off, n;            /* what is left of it */
    int can_map, can_direct;    /* this job */
    int resid_known;            /* mincore tells page-cache residency for this file */
    int dfd;                    /* O_DIRECT descriptor, opened at the first cold window; -1 */
    uint8_t *sp;                /* the span being produced: mapping [sp, sp + splen) of the file */
    size_t splen;               /* from offset spoff, whose windows end at spend */
    uint64_t spoff, spend;
    uint8_t **buf;              /* NSLOT aligned buffers of BUFSZ, the worker's */
    wp_err e;                   /* the reader's failure */
    int rc;
    /* the ring */
    slot ring[NSLOT];
    unsigned head, tail;        /* consumed / produced */
    int threaded, cancel;
    pthread_mutex_t mu;
    pthread_cond_t cv;
} stream;

static size_t pagesz(void)
{
    long pg = sysconf(_SC_PAGESIZE);
    return pg >= 4096 && pg <= (1 << 20) ? (size_t)pg : 4096;
}

/* May mincore tell us what the page cache holds of fd's file?  Since Linux
 * 5.0 it reports page-cache residency only to the file's owner or someone who
 * may write it (otherwise only pages mapped in this process: everything would
 * look cold). */
static int residency_known(int fd, const struct stat *st)
{
    if (st->st_uid == geteuid() || geteuid() == 0) return 1;
    char pp[64];
    snprintf(pp, sizeof pp, "/proc/self/fd/%d", fd);
    return access(pp, W_OK) == 0;
}

/* a second open file description of the same inode: O_DIRECT must not
 * change how anyone else reads through j->fd */
static int open_direct(stream *s) { return wp_reopen(s->j->fd, O_RDONLY | O_DIRECT); }

/* O_DIRECT read of [off, off + k) into buf: offset, length and address
 * aligned to DALIGN, the bytes wanted start at buf + (off % DALIGN).  0, 1 when
 * the file system refuses O_DIRECT (the caller reads another way), or an error. */
static int read_direct(stream *s, uint8_t *buf, uint64_t off, size_t k, wp_err *e)
{
    uint64_t a = off & ~(uint64_t)(DALIGN - 1);
    size_t need = (size_t)(off - a) + k, alen = (need + DALIGN - 1) & ~(size_t)(DALIGN - 1), got = 0;
    while (got < need) {
        ssize_t r = pread(s->dfd, buf + got, alen - got, (off_t)(a + got));
        if (r < 0) {
            if (errno == EINTR) continue;
            if (errno == EINVAL && got == 0) return 1;
            return wp_fail_errno(e, "%s: read of %zu bytes at offset %llu failed", s->j->path, alen - got,
                                 (unsigned long long)(a + got));
        }
        if (r == 0) break;
        got += (size_t)r;
        if (got % DALIGN) break;   /* the end of the file: nothing aligned follows */
    }
    if (got < need)
        return wp_fail(e, WP_EINVAL, "%s: unexpected end of file at offset %llu (file truncated?)", s->j->path,
                       (unsigned long long)(a + got));
    return 0;
}

static int need_buf(stream *s, unsigned i, wp_err *e)
{
    if (s->buf[i]) return 0;
    s->buf[i] = aligned_alloc(DALIGN, BUFSZ);
    return s->buf[i] ? 0 : wp_oom(e, "a read buffer");
}

/* Produce the next window of the job into *o (slot index i of the ring). */
static void produce(stream *s, unsigned i, slot *o)
{
    wp_hash_job *j = s->j;
    memset(o, 0, sizeof *o);
    while (!s->n && s->r < j->nranges) {
        s->off = j->ranges[s->r].off;
        s->n = j->ranges[s->r].len;
        s->r++;
    }
    if (!s->n) {
        o->kind = K_END;
        return;
    }
    if (stopped(s->p)) {   /* someone else failed; our result is moot */
        o->kind = K_ERR;
        s->rc = WP_EIO;
        return;
    }
    const size_t pg = pagesz();
    uint64_t off = s->off;
    size_t k = s->n < WINDOW ? (size_t)s->n : WINDOW;
    int rc = 0;
    uint8_t *m = NULL;
    size_t len = 0;
    uint64_t a = off & ~(uint64_t)(pg - 1);
    if (s->can_map && !(s->can_direct && s->p->io == IO_DIRECT)) {
        if (!s->sp) {   /* a new span: up to SPAN bytes of this range, from this window on */
            uint64_t want = s->n < SPAN ? s->n : SPAN;
            size_t sl = (size_t)(off - a + want);
            uint8_t *sm = mmap(NULL, sl, PROT_READ, MAP_SHARED, j->fd, (off_t)a);
            if (sm == MAP_FAILED) {
                s->can_map = 0;   /* pread the rest */
            } else {
                s->sp = sm;
                s->splen = sl;
                s->spoff = a;
                s->spend = off + want;
            }
        }
        if (s->sp) {
            m = s->sp + (a - s->spoff);
            len = (size_t)(off - a) + k;
        }
        if (m && s->can_direct && s->p->io != IO_MAP) {
            /* less than half of the window in the page cache: read it with O_DIRECT */
            unsigned char vec[WINDOW / 4096 + 2];
            size_t np = (len + pg - 1) / pg, res = 0;
            if (np <= sizeof vec && mincore(m, len, vec) == 0) {
                for (size_t q = 0; q < np; q++) res += vec[q] & 1;
                if (2 * res < np) m = NULL;
            }
        }
    }
    if (s->sp && off + k == s->spend) {   /* the span's last window: its slot releases it */
        o->unmap = s->sp;
        o->unmaplen = s->splen;
    }
    if (m) {
        /* fault the window in here, ahead of the hash; a page that cannot be
         * read (the file shrank) is left for the hash to meet as SIGBUS.  What
         * is not cached yet is asked for first as read-ahead of this window
         * and the next (large reads, queued at once; faulting alone reads a
         * window in small pieces, one after another).  Not the next one where
         * windows may go O_DIRECT (mixed): that read-ahead would cache the
         * very window about to be judged cold, and mincore would see it */
        uint64_t ahead = s->can_direct ? 0 : s->n - k < WINDOW ? s->n - k : WINDOW;
        /* ... unless the window's first and last pages are cached: then it is
         * taken to be cached, and the read-ahead call, which walks every page
         * of its range to find them all present, is 5 % of a cached verify's
         * CPU saved (a window cached only in part is still read, by faults).
         * This read-ahead fills the cache with 4 KiB pages, which a later
         * cached verify maps at about 8 % of its CPU; faults alone, or
         * MADV_HUGEPAGE, fill it with 2 MiB folios that map for almost
         * nothing, but on the measuring VM a fresh 2 MiB folio costs 2-3x
         * the CPU at first touch, and the cold verify took 1.5-3x as long.
         * Measured both ways: docs/performance.md "Issue 14, fifth round" */
        unsigned char v0 = 0, v1 = 0;
        int cached = s->resid_known && mincore(m, 1, &v0) == 0 && mincore(m + (len - 1) / pg * pg, 1, &v1) == 0 &&
                     (v0 & v1 & 1);
        if (!cached) posix_fadvise(j->fd, (off_t)off, (off_t)(k + ahead), POSIX_FADV_WILLNEED);
        if (madvise(m, len, MADV_POPULATE_READ) != 0 && errno == EINVAL) madvise(m, len, MADV_WILLNEED);
        o->kind = K_MAP;
        o->map = s->sp;
        o->maplen = s->splen;
        o->p = m + (off - a);
        if (wp_hash_window_hook) wp_hash_window_hook(j, off, k);
    } else {
        if ((rc = need_buf(s, i, &s->e))) goto fail;
        if (wp_hash_window_hook) wp_hash_window_hook(j, off, k);
        int done = 0;
        if (s->can_direct && s->dfd < 0 && (s->dfd = open_direct(s)) < 0) s->can_direct = 0;
        if (s->can_direct) {
            rc = read_direct(s, s->buf[i], off, k, &s->e);
            if (rc == 1) {
                s->can_direct = 0;   /* O_DIRECT refused here: as if it did not exist */
                rc = 0;
            } else if (rc) {
                goto fail;
            } else {
                o->p = s->buf[i] + (off & (DALIGN - 1));
                done = 1;
            }
        }
        if (!done) {
            if ((rc = wp_pread_full(j->fd, s->buf[i], k, off, j->path, &s->e))) goto fail;
            o->p = s->buf[i];
        }
        o->kind = K_BUF;
    }
    o->len = k;
    o->off = off;
    s->off += k;
    s->n -= k;
    if (o->unmap) s->sp = NULL;   /* handed over */
    return;
fail:
    o->kind = K_ERR;
    o->unmap = NULL;   /* the span stays the stream's: run_job releases it */
    s->rc = rc;
}

static void *reader(void *arg)
{
    stream *s = arg;
    for (;;) {
        pthread_mutex_lock(&s->mu);
        /* wait for room even when cancelled: the worker drains the ring */
        while (s->tail - s->head == NSLOT) pthread_cond_wait(&s->cv, &s->mu);
        int cancel = s->cancel;
        pthread_mutex_unlock(&s->mu);
        unsigned i = s->tail % NSLOT;
        slot o;
        if (cancel) {
            o.kind = K_END;   /* the worker stopped consuming: nothing to read */
        } else {
            produce(s, i, &o);
        }
        pthread_mutex_lock(&s->mu);
        s->ring[i] = o;
        s->tail++;
        pthread_cond_broadcast(&s->cv);
        pthread_mutex_unlock(&s->mu);
        if (o.kind == K_END || o.kind == K_ERR) return NULL;
    }
}

/* The next window, in order. */
static slot take(stream *s)
{
    if (!s->threaded) {
        slot o;
        produce(s, 0, &o);
        return o;
    }
    pthread_mutex_lock(&s->mu);
    while (s->head == s->tail) pthread_cond_wait(&s->cv, &s->mu);
    slot o = s->ring[s->head % NSLOT];
    pthread_mutex_unlock(&s->mu);
    return o;
}

static void give_back(stream *s, const slot *o)
{
    if (o->unmap) munmap(o->unmap, o->unmaplen);
    if (!s->threaded) return;
    pthread_mutex_lock(&s->mu);
    s->head++;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
}

/* Jobs that read the same bytes of a file as another job (verify --deep: a
 * tensor and the shard or whole file holding it) read through the page cache,
 * so the second read finds the first one's pages: O_DIRECT would read them
 * from the disk twice.  Marks p->shared; with no memory for it, every job. */
typedef struct span {
    int fd;
    uint64_t off, end;
    size_t job;
} span;

static int by_fd_off(const void *a, const void *b)
{
    const span *x = a, *y = b;
    if (x->fd != y->fd) return x->fd < y->fd ? -1 : 1;
    return x->off < y->off ? -1 : x->off > y->off;
}

static void mark_shared(pool *p)
{
    size_t ns = 0;
    for (size_t i = 0; i < p->n; i++) ns += p->jobs[i].mem ? 0 : p->jobs[i].nranges;
    span *v = ns ? calloc(ns, sizeof *v) : NULL;
    if (!v) {
        memset(p->shared, ns ? 1 : 0, p->n);
        return;
    }
    ns = 0;
    for (size_t i = 0; i < p->n; i++)
        for (size_t r = 0; !p->jobs[i].mem && r < p->jobs[i].nranges; r++)
            if (p->jobs[i].ranges[r].len)
                v[ns++] = (span){p->jobs[i].fd, p->jobs[i].ranges[r].off,
                                 p->jobs[i].ranges[r].off + p->jobs[i].ranges[r].len, i};
    qsort(v, ns, sizeof *v, by_fd_off);
    size_t top = 0;   /* the span reaching furthest so far in this fd */
    for (size_t k = 1; k < ns; k++) {
        if (v[k].fd != v[top].fd) {
            top = k;
            continue;
        }
        if (v[k].off < v[top].end && v[k].job != v[top].job) p->shared[v[k].job] = p->shared[v[top].job] = 1;
        if (v[k].end > v[top].end) top = k;
    }
    free(v);
}

static int run_job(pool *p, wp_hash_job *j, uint8_t **bufs, int direct_ok, wp_err *e)
{
    wp_sha256 h;
    int rc = wp_sha256_init(&h, e);
    if (rc) return rc;
    if (j->mem) {
        for (size_t r = 0; r < j->nranges && !rc; r++) {
            uint64_t off = j->ranges[r].off, n = j->ranges[r].len;
            while (n) {
                if (stopped(p)) {
                    rc = WP_EIO;
                    break;
                }
                size_t k = n < WINDOW ? (size_t)n : WINDOW;
                wp_sha256_update(&h, j->mem + off, k);
                off += k;
                n -= k;
                atomic_fetch_add_explicit(&p->bytes, k, memory_order_relaxed);
            }
        }
        goto out;
    }
    /* A regular file's ranges are checked against its size first: the bytes
     * of a last partial page past the end would map as zeros, not fail. */
    struct stat st;
    int reg = fstat(j->fd, &st) == 0 && S_ISREG(st.st_mode);
    for (size_t r = 0; reg && r < j->nranges && !rc; r++) {
        uint64_t end = j->ranges[r].off + j->ranges[r].len;
        if (j->ranges[r].len && (end < j->ranges[r].off || end > (uint64_t)st.st_size))
            rc = eof_error(j, j->ranges[r].off > (uint64_t)st.st_size ? j->ranges[r].off : (uint64_t)st.st_size, e);
    }
    if (rc) goto out;
    stream s;
    memset(&s, 0, sizeof s);
    s.p = p;
    s.j = j;
    s.dfd = -1;
    s.buf = bufs;
    s.can_map = reg && g_bus_ok && p->io != IO_PREAD;
    s.resid_known = reg && residency_known(j->fd, &st);
    s.can_direct = reg && direct_ok &&
                   (p->io == IO_DIRECT || (p->io == IO_MIXED && s.resid_known && !p->shared[j - p->jobs]));
    pthread_t th;
    if (job_len(j) > WINDOW) {
        pthread_mutex_init(&s.mu, NULL);
        pthread_cond_init(&s.cv, NULL);
        s.threaded = pthread_create(&th, NULL, reader, &s) == 0;
        if (!s.threaded) {
            pthread_cond_destroy(&s.cv);
            pthread_mutex_destroy(&s.mu);
        }
    }
    int term = 0;   /* the reader's last slot was taken */
    for (;;) {
        slot o = take(&s);
        if ((term = o.kind == K_END || o.kind == K_ERR)) give_back(&s, &o);
        if (o.kind == K_END) break;
        if (o.kind == K_ERR) {
            rc = s.rc;
            if (s.e.msg[0]) wp_fail(e, rc, "%s", s.e.msg);
            break;
        }
        if (o.kind == K_MAP) {
            const uint8_t *fault = NULL;
            if (hash_guarded(&h, o.p, o.len, o.map, o.map + o.maplen, &fault))
                rc = eof_error(j, o.off - (uint64_t)(o.p - o.map) + (uint64_t)(fault - o.map), e);
        } else {
            wp_sha256_update(&h, o.p, o.len);
        }
        give_back(&s, &o);
        if (rc) break;
        atomic_fetch_add_explicit(&p->bytes, o.len, memory_order_relaxed);
    }
    if (s.threaded) {
        /* stop the reader and return what it had read ahead */
        pthread_mutex_lock(&s.mu);
        s.cancel = 1;
        pthread_cond_broadcast(&s.cv);
        pthread_mutex_unlock(&s.mu);
        while (!term) {
            slot o = take(&s);
            give_back(&s, &o);
            term = o.kind == K_END || o.kind == K_ERR;
        }
        pthread_join(th, NULL);
        pthread_cond_destroy(&s.cv);
        pthread_mutex_destroy(&s.mu);
    }
    if (s.sp) munmap(s.sp, s.splen);   /* a span whose last window was never read */
    if (s.dfd >= 0) close(s.dfd);
out:
    if (rc) {
        wp_sha256_free(&h);
        return rc;
    }
    wp_sha256_final(&h, j->out);
    j->done = 1;
    return 0;
}

static void *worker(void *arg)
{
    pool *p = arg;
    uint8_t *bufs[NSLOT] = {0};   /* O_DIRECT / pread buffers, made when first needed */
    int direct_ok = atomic_fetch_add(&p->nworkers, 1) < DIRECT_WORKERS;
    wp_err e = {0};
    int rc = 0;
    while (!rc) {
        size_t i = atomic_fetch_add(&p->next, 1);
        if (i >= p->n || atomic_load(&p->stop)) break;
        rc = run_job(p, &p->jobs[p->order[i]], bufs, direct_ok, &e);
    }
    for (int i = 0; i < NSLOT; i++) free(bufs[i]);
    pthread_mutex_lock(&p->mu);
    if (rc && !atomic_load(&p->stop)) {   /* the first real failure wins */
        atomic_store(&p->stop, 1);
        p->rc = rc;
        wp_fail(p->e, rc, "%s", e.msg);
    }
    p->running--;
    pthread_cond_signal(&p->cv);
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

static int by_len_desc(const void *a, const void *b, void *ctx)
{
    const wp_hash_job *jobs = ctx;
    size_t i = *(const size_t *)a, k = *(const size_t *)b;
    uint64_t x = job_len(&jobs[i]), y = job_len(&jobs[k]);
    if (x != y) return x > y ? -1 : 1;
    return i < k ? -1 : i > k;   /* ties keep input order */
}

int wp_default_threads(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n >= 1 ? (int)(n > 1024 ? 1024 : n) : 1;
}

int wp_hash_jobs(wp_hash_job *jobs, size_t n, int threads, wp_progress_fn progress, void *ud, const char *what,
                 wp_err *e)
{
    if (threads <= 0) threads = wp_default_threads();
    if ((size_t)threads > n) threads = n ? (int)n : 1;
    uint64_t total = 0;
    for (size_t i = 0; i < n; i++) {
        jobs[i].done = 0;
        total += job_len(&jobs[i]);
    }
    if (!n) {
        if (progress) progress(ud, what, 0, 0);
        return 0;
    }
    pthread_once(&g_bus_once, install_bus);
    pool p;
    memset(&p, 0, sizeof p);
    p.jobs = jobs;
    p.n = n;
    p.e = e;
    const char *io = getenv("WPACK_HASH_IO");
    p.io = !io ? IO_AUTO : !strcmp(io, "map") ? IO_MAP : !strcmp(io, "direct") ? IO_DIRECT
         : !strcmp(io, "pread") ? IO_PREAD : !strcmp(io, "mixed") ? IO_MIXED : IO_AUTO;
    p.order = wp_calloc(n, sizeof *p.order, e);
    p.shared = p.order ? wp_calloc(n, 1, e) : NULL;
    pthread_t *tid = p.shared ? wp_calloc((size_t)threads, sizeof *tid, e) : NULL;
    if (!p.order || !p.shared || !tid) {
        free(p.order);
        free(p.shared);
        free(tid);
        return WP_ENOMEM;
    }
    if (p.io == IO_MIXED) mark_shared(&p);
    for (size_t i = 0; i < n; i++) p.order[i] = i;
    /* longest first: the biggest tensor must not start last (LPT scheduling) */
    qsort_r(p.order, n, sizeof *p.order, by_len_desc, jobs);
    atomic_init(&p.next, 0);
    atomic_init(&p.bytes, 0);
    atomic_init(&p.stop, 0);
    atomic_init(&p.nworkers, 0);
    pthread_mutex_init(&p.mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&p.cv, &ca);
    pthread_condattr_destroy(&ca);
    int started = 0;
    for (int t = 0; t < threads; t++) {
        pthread_mutex_lock(&p.mu);
        p.running++;
        pthread_mutex_unlock(&p.mu);
        if (pthread_create(&tid[t], NULL, worker, &p) != 0) {
            pthread_mutex_lock(&p.mu);
            p.running--;
            pthread_mutex_unlock(&p.mu);
            if (!started) {
                wp_fail(e, WP_ENOMEM, "%s: cannot start a hashing thread", what);
                p.rc = WP_ENOMEM;
            }
            break;   /* run with the threads we have */
        }
        started++;
    }
    /* the calling thread only watches and draws progress */
    pthread_mutex_lock(&p.mu);
    while (p.running > 0) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        ts.tv_nsec += 100 * 1000 * 1000;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&p.cv, &p.mu, &ts);
        if (progress) {
            pthread_mutex_unlock(&p.mu);
            progress(ud, what, atomic_load(&p.bytes), total);
            pthread_mutex_lock(&p.mu);
        }
    }
    pthread_mutex_unlock(&p.mu);
    for (int t = 0; t < started; t++) pthread_join(tid[t], NULL);
    if (progress && !p.rc) progress(ud, what, total, total);
    pthread_cond_destroy(&p.cv);
    pthread_mutex_destroy(&p.mu);
    free(p.order);
    free(p.shared);
    free(tid);
    return p.rc;
}
