/* digests.c — the parallel streaming SHA-256 engine behind verify, manifest
 * creation and verify-source (see trust.h).
 *
 * Regular files are hashed straight from the page cache through read-only
 * mapped windows (WINDOW bytes, MAP_POPULATE, the next two windows announced
 * with POSIX_FADV_WILLNEED so a cold file is read ahead while this one is
 * hashed): no kernel copy into a user buffer, which cost pread about a
 * sixth more CPU per byte than hashing alone (docs/signing.md §7).  A
 * file truncated under us makes an access to a mapped page fail with
 * SIGBUS; a per-thread sigsetjmp guard around the hash of each window
 * turns that into the same error pread would give ("unexpected end of
 * file ... (file truncated?)").  A SIGBUS outside a
 * guarded window is not ours: the previous disposition is restored and the
 * faulting access repeats under it.  Anything that cannot be mapped (a
 * FIFO, a device, mmap refused) is read with pread into a per-thread
 * buffer as before.  docs/signing.md §7 has the measurements. */
#include "trust/trust.h"

#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* pread fallback: 256 KiB, large enough that pread's per-call cost vanishes
 * next to hashing, small enough that the buffer stays in L2 between the
 * kernel's copy and SHA-256 reading it back. */
#define CHUNK (256u << 10)
/* Mapped window: large enough that mmap/munmap (and the TLB shootdown of
 * munmap) are noise, small enough that read-ahead of the next one overlaps
 * the hash of this one on a cold file. */
#define WINDOW (8u << 20)

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
    atomic_size_t next;
    atomic_uint_fast64_t bytes;
    atomic_int stop;
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

/* Hash [*off, *off + *n) of j's file through mapped windows, advancing
 * *off and *n.  1 when a window cannot be mapped: the caller reads the rest
 * with pread. */
static int hash_mapped(pool *p, wp_hash_job *j, wp_sha256 *h, uint64_t *offp, uint64_t *np, wp_err *e)
{
    const long pg = sysconf(_SC_PAGESIZE) > 0 ? sysconf(_SC_PAGESIZE) : 4096;
    uint64_t off = *offp, n = *np;
    int rc = 0, first = 1;
    while (n) {
        if (stopped(p)) {   /* someone else failed; our result is moot */
            rc = WP_EIO;
            break;
        }
        uint64_t a = off & ~(uint64_t)(pg - 1);
        size_t k = n < WINDOW ? (size_t)n : WINDOW, len = (size_t)(off - a) + k;
        uint8_t *m = mmap(NULL, len, PROT_READ, MAP_SHARED | MAP_POPULATE, j->fd, (off_t)a);
        if (m == MAP_FAILED) {
            rc = 1;
            break;
        }
        /* read-ahead two windows deep: the next one is (mostly) in the page
         * cache by the time it is mapped, even on a cold file */
        if (first && n > k) posix_fadvise(j->fd, (off_t)(off + k), (off_t)(n - k < WINDOW ? n - k : WINDOW),
                                          POSIX_FADV_WILLNEED);
        if (n > k + (uint64_t)WINDOW)
            posix_fadvise(j->fd, (off_t)(off + k + WINDOW), (off_t)(n - k - WINDOW < WINDOW ? n - k - WINDOW : WINDOW),
                          POSIX_FADV_WILLNEED);
        first = 0;
        if (wp_hash_window_hook) wp_hash_window_hook(j, off, k);
        const uint8_t *fault = NULL;
        int bad = hash_guarded(h, m + (off - a), k, m, m + len, &fault);
        munmap(m, len);
        if (bad) {
            rc = eof_error(j, a + (uint64_t)(fault - m), e);
            break;
        }
        off += k;
        n -= k;
        atomic_fetch_add_explicit(&p->bytes, k, memory_order_relaxed);
    }
    *offp = off;
    *np = n;
    return rc;
}

static int hash_read(pool *p, wp_hash_job *j, wp_sha256 *h, uint64_t off, uint64_t n, uint8_t **buf,
                     wp_err *e)
{
    if (!*buf && !(*buf = malloc(CHUNK))) return wp_oom(e, "a %u-byte read buffer", CHUNK);
    int rc = 0;
    while (n && !rc) {
        if (stopped(p)) return WP_EIO;
        size_t k = n < CHUNK ? (size_t)n : CHUNK;
        if (!(rc = wp_pread_full(j->fd, *buf, k, off, j->path, e))) wp_sha256_update(h, *buf, k);
        off += k;
        n -= k;
        atomic_fetch_add_explicit(&p->bytes, k, memory_order_relaxed);
    }
    return rc;
}

static int run_job(pool *p, wp_hash_job *j, uint8_t **buf, wp_err *e)
{
    wp_sha256 h;
    int rc = wp_sha256_init(&h, e);
    if (rc) return rc;
    /* A regular file is mapped; its size is checked first, since the bytes
     * of a last partial page past the end read as zeros, not as an error. */
    struct stat st;
    int map = !j->mem && g_bus_ok && fstat(j->fd, &st) == 0 && S_ISREG(st.st_mode);
    for (size_t r = 0; map && r < j->nranges && !rc; r++) {
        uint64_t end = j->ranges[r].off + j->ranges[r].len;
        if (j->ranges[r].len && (end < j->ranges[r].off || end > (uint64_t)st.st_size))
            rc = eof_error(j, j->ranges[r].off > (uint64_t)st.st_size ? j->ranges[r].off : (uint64_t)st.st_size, e);
    }
    for (size_t r = 0; r < j->nranges && !rc; r++) {
        uint64_t off = j->ranges[r].off, n = j->ranges[r].len;
        if (j->mem) {
            while (n) {
                if (stopped(p)) {
                    rc = WP_EIO;
                    break;
                }
                size_t k = n < CHUNK ? (size_t)n : CHUNK;
                wp_sha256_update(&h, j->mem + off, k);
                off += k;
                n -= k;
                atomic_fetch_add_explicit(&p->bytes, k, memory_order_relaxed);
            }
            continue;
        }
        if (map && (rc = hash_mapped(p, j, &h, &off, &n, e)) == 1) map = 0, rc = 0;   /* pread the rest */
        if (!rc) rc = hash_read(p, j, &h, off, n, buf, e);
    }
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
    uint8_t *buf = NULL;   /* the pread fallback's, made when first needed */
    wp_err e = {0};
    int rc = 0;
    while (!rc) {
        size_t i = atomic_fetch_add(&p->next, 1);
        if (i >= p->n || atomic_load(&p->stop)) break;
        rc = run_job(p, &p->jobs[p->order[i]], &buf, &e);
    }
    free(buf);
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
    p.order = wp_calloc(n, sizeof *p.order, e);
    pthread_t *tid = wp_calloc((size_t)threads, sizeof *tid, e);
    if (!p.order || !tid) {
        free(p.order);
        free(tid);
        return WP_ENOMEM;
    }
    for (size_t i = 0; i < n; i++) p.order[i] = i;
    /* longest first: the biggest tensor must not start last (LPT scheduling) */
    qsort_r(p.order, n, sizeof *p.order, by_len_desc, jobs);
    atomic_init(&p.next, 0);
    atomic_init(&p.bytes, 0);
    atomic_init(&p.stop, 0);
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
    free(tid);
    return p.rc;
}
