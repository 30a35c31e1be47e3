/*
 * prefetch.c — read-ahead of mapped weights for builds larger than memory.
 *
 * A build bigger than RAM is decoded from the page cache and the disk: every
 * weight is a view into the read-only mapping (nothing is copied), and a
 * page that is not resident costs a synchronous fault that reads one
 * read-around window (128 KiB by default).  Faulting a 4 MiB expert matrix
 * in that way is 32 serial disk reads while the core waits.  The forward pass
 * instead names the ranges it will read next (the routed experts once the
 * router has chosen them, the hash layers' experts before attention, the next
 * layer's attention weights during this layer's MoE) and this thread hands
 * them to the kernel with madvise(MADV_WILLNEED), which queues the reads of
 * the whole range at once; the forward pass keeps computing meanwhile.
 *
 * The queue is a small ring; a range that does not fit is dropped (it is only
 * a hint).  Nothing here changes a single value the model computes.
 */
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#include "runtime/internal.h"

#define RT_PF_RING 4096    /* a prefill may choose every expert: 256 x 3 x (data, scales) */

struct rt_prefetch {
    pthread_t tid;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int stop;
    unsigned head, tail;            /* ring [tail, head) */
    struct { uintptr_t p; size_t n; } q[RT_PF_RING];
    uintptr_t page;
    unsigned long issued, dropped;
};

static void *pf_main(void *arg)
{
    rt_prefetch *pf = arg;
    pthread_mutex_lock(&pf->mu);
    for (;;) {
        while (!pf->stop && pf->head == pf->tail) pthread_cond_wait(&pf->cv, &pf->mu);
        if (pf->stop) break;
        uintptr_t p = pf->q[pf->tail % RT_PF_RING].p;
        size_t n = pf->q[pf->tail % RT_PF_RING].n;
        pf->tail++;
        pthread_mutex_unlock(&pf->mu);
        uintptr_t a = p & ~(pf->page - 1);
        (void)madvise((void *)a, n + (p - a), MADV_WILLNEED);   /* a hint: errors ignored */
        pthread_mutex_lock(&pf->mu);
        pf->issued++;
    }
    pthread_mutex_unlock(&pf->mu);
    return NULL;
}

int rt_prefetch_new(rt_prefetch **out, wp_err *e)
{
    *out = NULL;
    rt_prefetch *pf = wp_calloc(1, sizeof *pf, e);
    if (!pf) return WP_ENOMEM;
    long pg = sysconf(_SC_PAGESIZE);
    pf->page = pg > 0 ? (uintptr_t)pg : 4096;
    pthread_mutex_init(&pf->mu, NULL);
    pthread_cond_init(&pf->cv, NULL);
    if (pthread_create(&pf->tid, NULL, pf_main, pf) != 0) {
        pthread_mutex_destroy(&pf->mu);
        pthread_cond_destroy(&pf->cv);
        free(pf);
        return wp_fail(e, WP_EIO, "pthread_create: cannot start the prefetch thread");
    }
    *out = pf;
    return 0;
}

void rt_prefetch_free(rt_prefetch *pf)
{
    if (!pf) return;
    pthread_mutex_lock(&pf->mu);
    pf->stop = 1;
    pthread_cond_signal(&pf->cv);
    pthread_mutex_unlock(&pf->mu);
    pthread_join(pf->tid, NULL);
    pthread_mutex_destroy(&pf->mu);
    pthread_cond_destroy(&pf->cv);
    free(pf);
}

void rt_prefetch_range(rt_prefetch *pf, const void *p, size_t n)
{
    if (!pf || !p || !n) return;
    pthread_mutex_lock(&pf->mu);
    if (pf->head - pf->tail < RT_PF_RING) {
        pf->q[pf->head % RT_PF_RING].p = (uintptr_t)p;
        pf->q[pf->head % RT_PF_RING].n = n;
        pf->head++;
        pthread_cond_signal(&pf->cv);
    } else {
        pf->dropped++;
    }
    pthread_mutex_unlock(&pf->mu);
}

void rt_prefetch_weight(const rt_ctx *c, const wp_qweight *w)
{
    if (!c->pf || !w->data) return;
    uint64_t n = wp_enc_data_bytes(w->enc, w->rows, w->cols);
    if (n != UINT64_MAX) rt_prefetch_range(c->pf, w->data, (size_t)n);
    if (w->scale) {
        uint64_t s = wp_enc_scale_bytes(w->enc, w->rows, w->cols, w->br, w->bc, w->sfmt);
        if (s != UINT64_MAX) rt_prefetch_range(c->pf, w->scale, (size_t)s);
    }
}

void rt_prefetch_stats(const rt_prefetch *pf, unsigned long *issued, unsigned long *dropped)
{
    rt_prefetch *m = (rt_prefetch *)pf;
    *issued = *dropped = 0;
    if (!pf) return;
    pthread_mutex_lock(&m->mu);
    *issued = m->issued;
    *dropped = m->dropped;
    pthread_mutex_unlock(&m->mu);
}
