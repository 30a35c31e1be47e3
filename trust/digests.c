/* digests.c — the parallel streaming SHA-256 engine behind verify, manifest
 * creation and verify-source (see verify.h). */
#include "trust/trust.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* 256 KiB: large enough that pread's per-call cost vanishes next to hashing
 * (~130 us at 2 GB/s), small enough that the buffer stays in L2 between the
 * kernel's copy and SHA-256 reading it back. */
#define CHUNK (256u << 10)

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

static int run_job(pool *p, wp_hash_job *j, uint8_t *buf, wp_err *e)
{
    wp_sha256 h;
    int rc = wp_sha256_init(&h, e);
    if (rc) return rc;
    for (size_t r = 0; r < j->nranges && !rc; r++) {
        uint64_t off = j->ranges[r].off, n = j->ranges[r].len;
        while (n && !rc) {
            if (atomic_load_explicit(&p->stop, memory_order_relaxed)) {
                rc = WP_EIO;   /* someone else failed; our result is moot */
                break;
            }
            size_t k = n < CHUNK ? (size_t)n : CHUNK;
            if (j->mem) wp_sha256_update(&h, j->mem + off, k);
            else if (!(rc = wp_pread_full(j->fd, buf, k, off, j->path, e))) wp_sha256_update(&h, buf, k);
            off += k;
            n -= k;
            atomic_fetch_add_explicit(&p->bytes, k, memory_order_relaxed);
        }
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
    uint8_t *buf = malloc(CHUNK);
    wp_err e = {0};
    int rc = buf ? 0 : wp_oom(&e, "a %u-byte read buffer", CHUNK);
    while (!rc) {
        size_t i = atomic_fetch_add(&p->next, 1);
        if (i >= p->n || atomic_load(&p->stop)) break;
        rc = run_job(p, &p->jobs[p->order[i]], buf, &e);
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
