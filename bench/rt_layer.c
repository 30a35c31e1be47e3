/*
 * rt_layer.c — decode speed of one layer of the reference runtime against the
 * bytes of weights a decode step must read, as a fraction of the machine's
 * measured memory read bandwidth.  Built and run by bench/run.sh:
 *
 *   rt_layer BUILD LAYER PREFILL STEPS THREADS [FLAGS]
 *
 * Prefills PREFILL random positions into the layer (so the window, the
 * compressed caches and the indexer are populated; prefill tokens/s is
 * printed too), reads every page of the layer's weights once, then times
 * STEPS decode steps of that layer alone.  Bytes per step: every weight of
 * the layer the step reads (attention, compressors, indexer, HC, router,
 * shared expert) plus the routed experts it actually selected.
 *
 * Bandwidth is measured right after each step, by THREADS threads reading
 * as many bytes as the step read from a 512 MiB buffer (out of every cache),
 * so each step gets its own ratio under the same load as the step itself;
 * the figure is the median of those per-step ratios (a shared machine's load
 * moves both numbers together).  Last, the median CPU time of a step (user +
 * system of every thread, getrusage around the step alone) and the weight bytes
 * per CPU-second it gives: what the step's work costs, which a loaded machine
 * moves less than wall time.  FLAGS: WP_RT_* bits for wp_rt_opts.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "runtime/internal.h"

/* read every page of a weight once, so the timed steps see memory, not page faults */
static uint64_t touch(const wp_qweight *w)
{
    uint64_t s = 0;
    if (!w->data) return 0;
    const uint8_t *p = w->data;
    uint64_t n = wp_enc_data_bytes(w->enc, w->rows, w->cols);
    for (uint64_t i = 0; i < n; i += 4096) s += p[i];
    uint64_t sb = wp_enc_scale_bytes(w->enc, w->rows, w->cols, w->br, w->bc, w->sfmt);
    for (uint64_t i = 0; w->scale && sb != UINT64_MAX && i < sb; i += 4096)
        s += ((const uint8_t *)w->scale)[i];
    return s;
}

/* CPU seconds (user + system) of every thread of the process so far: the bandwidth
 * threads are joined before the next step begins, so a step's difference is its own */
static double cpu_s(void)
{
    struct rusage u;
    getrusage(RUSAGE_SELF, &u);
    return (double)u.ru_utime.tv_sec + u.ru_utime.tv_usec * 1e-6 + (double)u.ru_stime.tv_sec +
           u.ru_stime.tv_usec * 1e-6;
}

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static uint64_t qbytes(const wp_qweight *w)
{
    if (!w->data) return 0;
    uint64_t s = wp_enc_scale_bytes(w->enc, w->rows, w->cols, w->br, w->bc, w->sfmt);
    return wp_enc_data_bytes(w->enc, w->rows, w->cols) + (s == UINT64_MAX ? 0 : s);
}

/* ---- memory bandwidth ---------------------------------------------------------------- */
typedef struct bw_arg {
    const uint64_t *p;
    size_t n;
    uint64_t sum;
} bw_arg;

static void *bw_read(void *a)
{
    bw_arg *b = a;
    uint64_t s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    for (size_t i = 0; i + 4 <= b->n; i += 4) {
        s0 += b->p[i];
        s1 += b->p[i + 1];
        s2 += b->p[i + 2];
        s3 += b->p[i + 3];
    }
    b->sum = s0 + s1 + s2 + s3;
    return NULL;
}

/* Seconds for `threads` threads to read `bytes` from buf (n words) together,
 * starting at *pos (walking the buffer, so consecutive samples do not find
 * the previous one in cache). */
static volatile uint64_t bw_sink;

static double read_time(const uint64_t *buf, size_t n, uint64_t bytes, size_t *pos, int threads)
{
    pthread_t t[64];
    bw_arg a[64];
    size_t words = bytes / 8 / (size_t)threads;
    if (words > n / (size_t)threads) words = n / (size_t)threads;
    double t0 = wp_now();
    for (int i = 0; i < threads; i++) {
        size_t at = (*pos + words * (size_t)i) % (n - words);
        a[i] = (bw_arg){buf + at, words, 0};
        pthread_create(&t[i], NULL, bw_read, &a[i]);
    }
    uint64_t s = 0;
    for (int i = 0; i < threads; i++) {
        pthread_join(t[i], NULL);
        s += a[i].sum;
    }
    double dt = wp_now() - t0;
    *pos = (*pos + words * (size_t)threads) % (n - words);
    bw_sink += s;   /* keeps the reads alive */
    return dt;
}

int main(int argc, char **argv)
{
    if (argc != 6 && argc != 7) {
        fprintf(stderr, "usage: rt_layer BUILD LAYER PREFILL STEPS THREADS [FLAGS]\n");
        return 2;
    }
    const int layer = atoi(argv[2]), P = atoi(argv[3]), steps = atoi(argv[4]),
              threads = atoi(argv[5]);
    wp_err e = {0};
    wp_tsrc *src;
    wp_model *m;
    wp_seq *s;
    wp_rt_opts o = {.threads = threads, .flags = argc == 7 ? (unsigned)strtoul(argv[6], NULL, 0) : 0};
    if (wp_tsrc_open(&src, argv[1], &e) || wp_model_load(&m, src, &o, &e) ||
        wp_seq_new(&s, m, P + steps, &e)) {
        fprintf(stderr, "rt_layer: %s\n", e.msg);
        return 2;
    }
    const wp_config *c = &m->cfg;
    if (layer < 0 || layer >= c->n_layers) {
        fprintf(stderr, "rt_layer: layer %d not in [0, %d)\n", layer, c->n_layers);
        return 2;
    }
    const rt_layer *L = &m->layers[layer];
    const size_t row = (size_t)c->hc_mult * c->dim;
    float *h = malloc(sizeof(float) * row * (P > 1 ? P : 1));
    int32_t *tok = malloc(sizeof(int32_t) * (P + steps));
    uint64_t rs = 0x2545F4914F6CDD1Dull;
    for (size_t i = 0; i < row * P; i++) {
        rs ^= rs << 13, rs ^= rs >> 7, rs ^= rs << 17;
        h[i] = ((float)(rs >> 40) / (1 << 24) - 0.5f);
    }
    for (int i = 0; i < P + steps; i++) tok[i] = (int32_t)((i * 7919u) % (unsigned)c->vocab_size);
    double t0 = wp_now();
    if (wp_model_layer(m, s, layer, h, tok, P, &e)) {
        fprintf(stderr, "rt_layer: %s\n", e.msg);
        return 2;
    }
    double t_pre = wp_now() - t0;

    /* weights every decode step reads */
    uint64_t fixed = qbytes(&L->wq_a) + qbytes(&L->wq_b) + qbytes(&L->wkv) + qbytes(&L->wo_a) +
                     qbytes(&L->wo_b) + qbytes(&L->gate) + qbytes(&L->sw1) + qbytes(&L->sw2) +
                     qbytes(&L->sw3) + qbytes(&L->iq_b) + qbytes(&L->iw);
    if (L->ratio) fixed += qbytes(&L->comp.wkv) + qbytes(&L->comp.wgate);
    if (L->ratio == 4) fixed += qbytes(&L->icomp.wkv) + qbytes(&L->icomp.wgate);
    fixed += 2 * sizeof(float) * (size_t)(2 + c->hc_mult) * c->hc_mult * row;   /* HC fn */
    uint64_t expert = qbytes(&L->w1[0]) + qbytes(&L->w2[0]) + qbytes(&L->w3[0]);
    const uint64_t step_bytes = fixed + (uint64_t)c->n_activated_experts * expert;

    volatile uint64_t sink = 0;
    const wp_qweight *all[] = {&L->wq_a, &L->wq_b, &L->wkv, &L->wo_a, &L->wo_b, &L->gate,
                               &L->sw1, &L->sw2, &L->sw3, &L->iq_b, &L->iw, &L->comp.wkv,
                               &L->comp.wgate, &L->icomp.wkv, &L->icomp.wgate};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) sink += touch(all[i]);
    for (int x = 0; x < c->n_routed_experts; x++)
        sink += touch(&L->w1[x]) + touch(&L->w2[x]) + touch(&L->w3[x]);

    /* a 512 MiB buffer for the bandwidth samples, written once */
    const size_t nbw = ((size_t)512 << 20) / 8;
    uint64_t *bw = malloc(nbw * 8);
    if (!bw) {
        fprintf(stderr, "rt_layer: no memory for the bandwidth buffer\n");
        return 2;
    }
    for (size_t i = 0; i < nbw; i++) bw[i] = i;
    size_t bwpos = 0;
    double *ts = malloc(sizeof(double) * steps), *rat = malloc(sizeof(double) * steps);
    double *bws = malloc(sizeof(double) * steps), *cs = malloc(sizeof(double) * steps);
    float *h1 = malloc(sizeof(float) * row);
    unsigned long sh0, al0, sh1, al1;
    rt_pool_counts(m->ctx.pool, &sh0, &al0);
    for (int k = 0; k < steps; k++) {
        memcpy(h1, h + (size_t)(k % P) * row, sizeof(float) * row);
        const double c0 = cpu_s();
        t0 = wp_now();
        if (wp_model_layer(m, s, layer, h1, tok + P + k, 1, &e)) {
            fprintf(stderr, "rt_layer: %s\n", e.msg);
            return 2;
        }
        ts[k] = wp_now() - t0;
        cs[k] = cpu_s() - c0;
        double tr = read_time(bw, nbw, step_bytes, &bwpos, threads);
        bws[k] = step_bytes / tr / 1e9;
        rat[k] = tr / ts[k];        /* = (bytes / step time) / (bytes / read time) */
    }
    rt_pool_counts(m->ctx.pool, &sh1, &al1);
    qsort(ts, steps, sizeof *ts, cmp_d);
    qsort(rat, steps, sizeof *rat, cmp_d);
    qsort(bws, steps, sizeof *bws, cmp_d);
    qsort(cs, steps, sizeof *cs, cmp_d);
    const double per = ts[steps / 2], gbs = step_bytes / per / 1e9;
    printf("layer %d (ratio %d, %d experts, %d thread%s): prefill %d positions %.3f s = %.1f "
           "tokens/s; decode %.2f ms/token, %.1f MB of weights/token = %.2f GB/s; memory read "
           "bandwidth %.2f GB/s (median of samples after each step); fraction %.2f "
           "(median per step; p25 %.2f, p75 %.2f); pool jobs per step: %.0f shared, %.0f on "
           "the caller; CPU %.2f ms/token (user+system, all threads) = %.2f GB per CPU-second\n", layer, L->ratio, c->n_routed_experts,
           threads, threads == 1 ? "" : "s", P, t_pre, P / t_pre, per * 1e3, step_bytes / 1e6,
           gbs, bws[steps / 2], rat[steps / 2], rat[steps / 4], rat[(3 * steps) / 4],
           (double)(sh1 - sh0) / steps, (double)(al1 - al0) / steps, cs[steps / 2] * 1e3,
           step_bytes / cs[steps / 2] / 1e9);
    free(ts), free(rat), free(bws), free(cs), free(bw);
    free(h), free(h1), free(tok);
    wp_seq_free(s);
    wp_model_free(m);
    wp_tsrc_close(src);
    return 0;
}
