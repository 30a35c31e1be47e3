/*
 * wpkz_pool.c — the ordered frame pipeline behind pack and unpack (see
 * wpkz_internal.h): the calling thread fills slots in sequence, worker
 * threads transform them (compress / decompress) in any order, and the
 * calling thread takes them back strictly in sequence.  At most `nslots`
 * frames are in flight, each holding its own input and output buffer, so
 * memory is bounded by the caller's slot count times its largest frame.
 * With no worker threads the transform runs on the calling thread at submit.
 * Also here, shared by pack and unpack: the digest chains (a SHA-256 fed in
 * frame order on a thread of its own) and the write-behind hint.
 */
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "format/wpkz_internal.h"

enum { S_FREE, S_QUEUED, S_BUSY, S_DONE };

struct wpz_pool {
    pthread_mutex_t mu;
    pthread_cond_t work, done;
    wpz_job *slots;
    size_t nslots;
    uint64_t head, tail, next;   /* oldest in flight, next to fill, next for a worker */
    int quit;
    pthread_t *tid;
    int nthreads;
    wpz_pool_ops ops;
    void *ctx;
    void *inline_tls;            /* no workers: the calling thread's */
};

static void *worker(void *arg)
{
    wpz_pool *p = arg;
    void *tls = NULL;
    int have_tls = 0;
    pthread_mutex_lock(&p->mu);
    for (;;) {
        while (!p->quit && p->next == p->tail) pthread_cond_wait(&p->work, &p->mu);
        if (p->quit) break;
        wpz_job *j = &p->slots[p->next++ % p->nslots];
        j->state = S_BUSY;
        pthread_mutex_unlock(&p->mu);
        if (!have_tls) tls = p->ops.tls_new(p->ctx), have_tls = 1;   /* per-thread state, on first use */
        p->ops.work(p->ctx, tls, j);
        pthread_mutex_lock(&p->mu);
        j->state = S_DONE;
        pthread_cond_broadcast(&p->done);
    }
    pthread_mutex_unlock(&p->mu);
    if (have_tls) p->ops.tls_free(tls);
    return NULL;
}

int wpz_pool_start(wpz_pool **out, int threads, size_t nslots, const wpz_pool_ops *ops, void *ctx, wp_err *e)
{
    *out = NULL;
    if (threads < 0) threads = 0;
    if (nslots < 1) nslots = 1;
    wpz_pool *p = calloc(1, sizeof *p);
    if (!p) return wp_oom(e, "the frame pipeline");
    p->slots = calloc(nslots, sizeof *p->slots);
    p->tid = calloc((size_t)threads + 1, sizeof *p->tid);
    if (!p->slots || !p->tid) {
        free(p->slots);
        free(p->tid);
        free(p);
        return wp_oom(e, "the frame pipeline");
    }
    p->nslots = nslots;
    p->ops = *ops;
    p->ctx = ctx;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->work, NULL);
    pthread_cond_init(&p->done, NULL);
    for (int t = 0; t < threads; t++) {
        if (pthread_create(&p->tid[t], NULL, worker, p) != 0) break;   /* run with what we have */
        p->nthreads++;
    }
    if (!p->nthreads) p->inline_tls = ops->tls_new(ctx);
    *out = p;
    return 0;
}

int wpz_pool_threads(const wpz_pool *p) { return p->nthreads; }

wpz_job *wpz_pool_slot(wpz_pool *p)
{
    pthread_mutex_lock(&p->mu);
    wpz_job *j = p->tail - p->head < p->nslots ? &p->slots[p->tail % p->nslots] : NULL;
    pthread_mutex_unlock(&p->mu);
    if (j) {
        j->rc = 0;
        j->e.code = 0;
        j->e.msg[0] = 0;
        j->e.setting[0] = 0;
    }
    return j;
}

void wpz_pool_submit(wpz_pool *p, wpz_job *j)
{
    if (!p->nthreads) {
        p->ops.work(p->ctx, p->inline_tls, j);
        pthread_mutex_lock(&p->mu);
        j->state = S_DONE;
        p->tail++;
        p->next = p->tail;
        pthread_mutex_unlock(&p->mu);
        return;
    }
    pthread_mutex_lock(&p->mu);
    j->state = S_QUEUED;
    p->tail++;
    pthread_cond_signal(&p->work);
    pthread_mutex_unlock(&p->mu);
}

wpz_job *wpz_pool_oldest(wpz_pool *p)
{
    pthread_mutex_lock(&p->mu);
    wpz_job *j = NULL;
    if (p->head != p->tail) {
        j = &p->slots[p->head % p->nslots];
        while (j->state != S_DONE) pthread_cond_wait(&p->done, &p->mu);
    }
    pthread_mutex_unlock(&p->mu);
    return j;
}

void wpz_pool_release(wpz_pool *p)
{
    pthread_mutex_lock(&p->mu);
    if (p->head != p->tail) p->slots[p->head++ % p->nslots].state = S_FREE;
    pthread_mutex_unlock(&p->mu);
}

void wpz_pool_stop(wpz_pool *p)
{
    if (!p) return;
    pthread_mutex_lock(&p->mu);
    p->quit = 1;
    pthread_cond_broadcast(&p->work);
    pthread_mutex_unlock(&p->mu);
    for (int t = 0; t < p->nthreads; t++) pthread_join(p->tid[t], NULL);
    if (!p->nthreads) p->ops.tls_free(p->inline_tls);
    for (size_t i = 0; i < p->nslots; i++) {
        free(p->slots[i].in);
        free(p->slots[i].out);
    }
    pthread_cond_destroy(&p->work);
    pthread_cond_destroy(&p->done);
    pthread_mutex_destroy(&p->mu);
    free(p->slots);
    free(p->tid);
    free(p);
}

int wpz_job_reserve(uint8_t **buf, size_t *cap, size_t need, size_t most)
{
    if (need <= *cap) return 0;
    /* straight to the largest size this slot will need: frames vary in
     * size, and each regrowth was a fresh mapping whose every page the
     * kernel faulted in and cleared again (8 % of unpack's samples); the
     * pages of a larger buffer cost nothing until touched */
    size_t n = need < most ? most : need;
    free(*buf);
    *buf = malloc(n ? n : 1);
    *cap = *buf ? n : 0;
    return *buf ? 0 : -1;
}

static void chain_run(wpz_chain *c, wpz_chain_op *op)
{
    static const uint8_t zeros[1 << 16];
    switch (op->kind) {
    case WPZ_OP_UPDATE:
        wp_sha256_update(&op->h, op->p, op->n);
        break;
    case WPZ_OP_ZEROS:
        for (size_t n = op->n; n;) {
            size_t k = n < sizeof zeros ? n : sizeof zeros;
            wp_sha256_update(&op->h, zeros, k);
            n -= k;
        }
        break;
    case WPZ_OP_CHECK: {
        uint8_t d[32];
        wp_sha256_final(&op->h, d);
        if (memcmp(d, op->want, 32)) {
            pthread_mutex_lock(&c->mu);
            if (!c->rc) {
                c->rc = WP_EVERIFY;
                c->msg = op->msg;
                op->msg = NULL;
            }
            pthread_mutex_unlock(&c->mu);
        }
        free(op->msg);
        op->msg = NULL;
        break;
    }
    }
}

static void *chain_thread(void *arg)
{
    wpz_chain *c = arg;
    pthread_mutex_lock(&c->mu);
    for (;;) {
        while (!c->quit && c->head == c->tail) pthread_cond_wait(&c->cv, &c->mu);
        if (c->head == c->tail) break;   /* quit, and nothing left */
        wpz_chain_op *op = &c->ops[c->head % WPZ_CHAIN_OPS];
        pthread_mutex_unlock(&c->mu);
        chain_run(c, op);
        pthread_mutex_lock(&c->mu);
        c->head++;
        pthread_cond_broadcast(&c->cv);
    }
    pthread_mutex_unlock(&c->mu);
    return NULL;
}

void wpz_chain_start(wpz_chain *c, int threaded)
{
    memset(c, 0, sizeof *c);
    pthread_mutex_init(&c->mu, NULL);
    pthread_cond_init(&c->cv, NULL);
    c->threaded = threaded && pthread_create(&c->tid, NULL, chain_thread, c) == 0;
}

/* Queue op (run it now without a thread); returns the position to wait for. */
uint64_t wpz_chain_push(wpz_chain *c, const wpz_chain_op *op)
{
    if (!c->threaded) {
        wpz_chain_op o = *op;
        chain_run(c, &o);
        return ++c->head, ++c->tail;
    }
    pthread_mutex_lock(&c->mu);
    while (c->tail - c->head == WPZ_CHAIN_OPS) pthread_cond_wait(&c->cv, &c->mu);
    c->ops[c->tail % WPZ_CHAIN_OPS] = *op;
    uint64_t t = ++c->tail;
    pthread_cond_broadcast(&c->cv);
    pthread_mutex_unlock(&c->mu);
    return t;
}

/* Wait until the first `upto` ops are done; the chain's failure, if any. */
int wpz_chain_wait(wpz_chain *c, uint64_t upto, wp_err *e)
{
    pthread_mutex_lock(&c->mu);
    while (c->threaded && c->head < upto) pthread_cond_wait(&c->cv, &c->mu);
    int rc = c->rc;
    pthread_mutex_unlock(&c->mu);
    /* c->msg is set once, before c->rc, and never changes after */
    return rc ? wp_fail(e, rc, "%s", c->msg) : 0;
}

int wpz_chain_drain(wpz_chain *c, wp_err *e)
{
    uint64_t t;
    pthread_mutex_lock(&c->mu);
    t = c->tail;
    pthread_mutex_unlock(&c->mu);
    return wpz_chain_wait(c, t, e);
}

/* Every op done, the thread joined. */
void wpz_chain_stop(wpz_chain *c)
{
    if (c->threaded) {
        pthread_mutex_lock(&c->mu);
        c->quit = 1;
        pthread_cond_broadcast(&c->cv);
        pthread_mutex_unlock(&c->mu);
        pthread_join(c->tid, NULL);
    }
    free(c->msg);
    pthread_cond_destroy(&c->cv);
    pthread_mutex_destroy(&c->mu);
}

/* ---- write-behind ------------------------------------------------------------------ */

void wpz_writebehind(wpz_wb *w, int fd, uint64_t upto)
{
    if (upto < w->from || upto - w->from < WPZ_WB_STEP) return;
    /* a hint: an error here (EIO, an fd on a filesystem that ignores it)
     * resurfaces at the fsync every output gets before it is named */
    (void)sync_file_range(fd, (off_t)w->from, (off_t)(upto - w->from), SYNC_FILE_RANGE_WRITE);
    w->from = upto;
}
