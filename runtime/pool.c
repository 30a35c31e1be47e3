/*
 * pool.c — a small fixed thread pool for the kernels.  One job at a time:
 * rt_pool_for() publishes (fn, ctx, n, grain), the workers that wake in time
 * and the caller take chunks from an atomic counter (guided: shrinking), and the caller returns
 * when every worker that joined the job has finished.  Work is split by
 * output index only, so results never depend on the thread count.
 *
 * A decode step issues a few dozen jobs of a few hundred microseconds each,
 * so the cost of one job matters:
 *
 *  - Waking: a worker spins on the job generation for a while (about
 *    RT_SPIN_NS) after each job before it sleeps on the condition variable;
 *    the caller takes the mutex and broadcasts only when some worker sleeps
 *    (a Dekker pair of seq_cst atomics: the caller bumps gen then reads
 *    `sleepers`, a worker bumps `sleepers` then reads gen, so one of the two
 *    always sees the other).
 *  - Joining: a worker joins a job by a CAS on `state` (the generation in
 *    the high 32 bits, a closed flag, the count of workers that joined), and
 *    the caller closes the job when it runs out of chunks itself.  So the
 *    caller never waits for a worker that has not woken yet: a late worker
 *    sees the job closed and goes back to waiting, and the caller waits only
 *    for workers that are inside the job (they finish their chunk).
 *  - Small jobs stay on the caller (rt_pool_for_work, a work threshold).
 */
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <time.h>

#include "runtime/internal.h"

/* how long a worker (or the waiting caller) spins before it sleeps */
#define RT_SPIN_NS 100000

#define ST_CLOSED 0x80000000ull
#define ST_JOINED 0x7fffffffull

struct rt_pool {
    int nthreads;               /* workers + the caller */
    pthread_t *tid;
    pthread_mutex_t mu;
    pthread_cond_t wake, done;
    atomic_uint gen;            /* bumped per job */
    atomic_int stop;
    atomic_int sleepers;        /* workers blocked (or about to block) on `wake` */
    atomic_int caller_sleeps;   /* the caller blocked (or about to) on `done` */
    /* the current job, written before gen is bumped */
    rt_range_fn fn;
    void *ctx;
    int n, chunk;
    atomic_int next;
    atomic_ullong state;        /* gen << 32 | closed | joined */
    atomic_int finished;        /* workers that joined and are done */
    /* counts, written by the calling thread only */
    unsigned long n_shared, n_alone;
};

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* Guided chunks: each grab takes 1/(2 * threads) of what is left, at least
 * `chunk` (the grain).  Big chunks first keep the grabs few; small ones at
 * the end keep the caller from waiting long for the last worker (fixed
 * chunks of n/(4 * threads) left it waiting half a chunk on average, about
 * 1/16 of every job on two threads). */
static void run_chunks(rt_pool *p)
{
    const int div = 2 * p->nthreads;
    int i0 = atomic_load(&p->next);
    for (;;) {
        if (i0 >= p->n) break;
        int len = (p->n - i0) / div;
        if (len < p->chunk) len = p->chunk;
        if (!atomic_compare_exchange_weak(&p->next, &i0, i0 + len)) continue;
        int i1 = len < p->n - i0 ? i0 + len : p->n;
        p->fn(p->ctx, i0, i1);
        i0 = atomic_load(&p->next);
    }
}

/* Wait until gen differs from `seen` (or stop); returns the new gen. */
static unsigned wait_job(rt_pool *p, unsigned seen)
{
    uint64_t t0 = 0;
    for (unsigned i = 0;; i++) {
        unsigned g = atomic_load(&p->gen);
        if (g != seen || atomic_load(&p->stop)) return g;
        cpu_relax();
        if ((i & 255) == 255) {
            uint64_t t = now_ns();
            if (!t0) t0 = t;
            else if (t - t0 > RT_SPIN_NS) break;
        }
    }
    pthread_mutex_lock(&p->mu);
    atomic_fetch_add(&p->sleepers, 1);
    unsigned g;
    while ((g = atomic_load(&p->gen)) == seen && !atomic_load(&p->stop))
        pthread_cond_wait(&p->wake, &p->mu);
    atomic_fetch_sub(&p->sleepers, 1);
    pthread_mutex_unlock(&p->mu);
    return g;
}

static void *worker(void *arg)
{
    rt_pool *p = arg;
    unsigned seen = atomic_load(&p->gen);
    for (;;) {
        unsigned g = wait_job(p, seen);
        if (atomic_load(&p->stop)) break;
        seen = g;
        /* join job g unless it is closed (or already replaced by a newer one) */
        unsigned long long st = atomic_load(&p->state);
        int joined = 0;
        while ((unsigned)(st >> 32) == g && !(st & ST_CLOSED)) {
            if (atomic_compare_exchange_weak(&p->state, &st, st + 1)) {
                joined = 1;
                break;
            }
        }
        if (!joined) continue;
        run_chunks(p);
        atomic_fetch_add(&p->finished, 1);
        if (atomic_load(&p->caller_sleeps)) {
            pthread_mutex_lock(&p->mu);
            pthread_cond_signal(&p->done);
            pthread_mutex_unlock(&p->mu);
        }
    }
    return NULL;
}

int rt_pool_new(rt_pool **out, int threads, wp_err *e)
{
    *out = NULL;
    if (threads < 1) threads = 1;
    if (threads > 256) return wp_fail(e, WP_EUSAGE, "threads: %d is more than 256", threads);
    rt_pool *p = wp_calloc(1, sizeof *p, e);
    if (!p) return WP_ENOMEM;
    p->nthreads = threads;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->wake, NULL);
    pthread_cond_init(&p->done, NULL);
    atomic_init(&p->gen, 0);
    atomic_init(&p->stop, 0);
    atomic_init(&p->sleepers, 0);
    atomic_init(&p->caller_sleeps, 0);
    atomic_init(&p->next, 0);
    atomic_init(&p->state, ST_CLOSED);
    atomic_init(&p->finished, 0);
    if (threads > 1) {
        p->tid = wp_calloc((size_t)threads - 1, sizeof *p->tid, e);
        if (!p->tid) {
            p->nthreads = 1;
            rt_pool_free(p);
            return WP_ENOMEM;
        }
        for (int i = 0; i < threads - 1; i++) {
            if (pthread_create(&p->tid[i], NULL, worker, p) != 0) {
                p->nthreads = i + 1;
                rt_pool_free(p);
                return wp_fail(e, WP_EIO, "pthread_create: cannot start worker %d", i);
            }
        }
    }
    *out = p;
    return 0;
}

void rt_pool_free(rt_pool *p)
{
    if (!p) return;
    pthread_mutex_lock(&p->mu);
    atomic_store(&p->stop, 1);
    pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->mu);
    for (int i = 0; i < p->nthreads - 1 && p->tid; i++) pthread_join(p->tid[i], NULL);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->wake);
    pthread_cond_destroy(&p->done);
    free(p->tid);
    free(p);
}

int rt_pool_threads(const rt_pool *p) { return p ? p->nthreads : 1; }

void rt_pool_for(rt_pool *p, int n, int grain, rt_range_fn fn, void *ctx)
{
    if (n <= 0) return;
    if (grain < 1) grain = 1;
    if (!p || p->nthreads == 1 || n <= grain) {
        if (p) p->n_alone++;
        fn(ctx, 0, n);
        return;
    }
    p->n_shared++;
    p->fn = fn;
    p->ctx = ctx;
    p->n = n;
    p->chunk = grain;
    atomic_store(&p->next, 0);
    atomic_store(&p->finished, 0);
    unsigned g = atomic_load(&p->gen) + 1;
    atomic_store(&p->state, (unsigned long long)g << 32);      /* open, nobody joined */
    atomic_store(&p->gen, g);
    if (atomic_load(&p->sleepers) > 0) {
        pthread_mutex_lock(&p->mu);
        pthread_cond_broadcast(&p->wake);
        pthread_mutex_unlock(&p->mu);
    }
    run_chunks(p);
    /* close the job: from now on nobody joins, and `joined` is final */
    unsigned long long st = atomic_fetch_or(&p->state, ST_CLOSED);
    const int joined = (int)(st & ST_JOINED);
    uint64_t t0 = 0;
    for (unsigned i = 0; atomic_load(&p->finished) < joined; i++) {
        cpu_relax();
        if ((i & 255) != 255) continue;
        uint64_t t = now_ns();
        if (!t0) {
            t0 = t;
        } else if (t - t0 > RT_SPIN_NS) {
            pthread_mutex_lock(&p->mu);
            atomic_store(&p->caller_sleeps, 1);
            while (atomic_load(&p->finished) < joined) pthread_cond_wait(&p->done, &p->mu);
            atomic_store(&p->caller_sleeps, 0);
            pthread_mutex_unlock(&p->mu);
            break;
        }
    }
}

void rt_pool_for_work(rt_pool *p, int n, int grain, double work, rt_range_fn fn, void *ctx)
{
    if (n <= 0) return;
    if (work < RT_PAR_MIN_WORK) {
        if (p) p->n_alone++;
        fn(ctx, 0, n);
        return;
    }
    rt_pool_for(p, n, grain, fn, ctx);
}

void rt_pool_counts(const rt_pool *p, unsigned long *shared, unsigned long *alone)
{
    *shared = p ? p->n_shared : 0;
    *alone = p ? p->n_alone : 0;
}
