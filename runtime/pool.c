/*
 * pool.c — a small fixed thread pool for the kernels.  One job at a time:
 * rt_pool_for() publishes (fn, ctx, n, grain), every worker and the caller
 * take chunks from an atomic counter, and the caller returns when the last
 * chunk is done.  Work is split by output index only, so results never
 * depend on the thread count.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>

#include "runtime/internal.h"

struct rt_pool {
    int nthreads;               /* workers + the caller */
    pthread_t *tid;
    pthread_mutex_t mu;
    pthread_cond_t wake, done;
    unsigned long gen;          /* bumped per job */
    int stop;
    /* the current job */
    rt_range_fn fn;
    void *ctx;
    int n, chunk;
    atomic_int next;
    int active;                 /* workers still inside the job */
};

static void run_chunks(rt_pool *p)
{
    for (;;) {
        int i0 = atomic_fetch_add(&p->next, p->chunk);
        if (i0 >= p->n) break;
        int i1 = i0 + p->chunk < p->n ? i0 + p->chunk : p->n;
        p->fn(p->ctx, i0, i1);
    }
}

static void *worker(void *arg)
{
    rt_pool *p = arg;
    unsigned long seen = 0;
    pthread_mutex_lock(&p->mu);
    for (;;) {
        while (!p->stop && p->gen == seen) pthread_cond_wait(&p->wake, &p->mu);
        if (p->stop) break;
        seen = p->gen;
        pthread_mutex_unlock(&p->mu);
        run_chunks(p);
        pthread_mutex_lock(&p->mu);
        if (--p->active == 0) pthread_cond_signal(&p->done);
    }
    pthread_mutex_unlock(&p->mu);
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
    if (threads > 1) {
        p->tid = wp_calloc((size_t)threads - 1, sizeof *p->tid, e);
        if (!p->tid) {
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
    p->stop = 1;
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
        fn(ctx, 0, n);
        return;
    }
    /* about 4 chunks per thread balances uneven rows without much overhead */
    int chunk = n / (p->nthreads * 4);
    if (chunk < grain) chunk = grain;
    pthread_mutex_lock(&p->mu);
    p->fn = fn;
    p->ctx = ctx;
    p->n = n;
    p->chunk = chunk;
    atomic_store(&p->next, 0);
    p->active = p->nthreads - 1;
    p->gen++;
    pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->mu);
    run_chunks(p);
    pthread_mutex_lock(&p->mu);
    while (p->active > 0) pthread_cond_wait(&p->done, &p->mu);
    pthread_mutex_unlock(&p->mu);
}
