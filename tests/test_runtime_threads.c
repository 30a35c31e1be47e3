/* test_runtime_threads.c — the thread pool, the batched products, the MoE
 * batches and the read-ahead thread: results never depend on the thread
 * count, on how the experts are batched or on read-ahead (bit for bit), and
 * the pool runs every index exactly once however its workers sleep and wake. */
#include <fcntl.h>
#include <math.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "runtime/internal.h"
#include "tests/harness.h"
#include "tests/rt_util.h"

#define TINY_HF WPT_TINY "/hf"

static uint64_t rs = 0x9E3779B97F4A7C15ull;
static uint32_t rng(void)
{
    rs ^= rs << 13, rs ^= rs >> 7, rs ^= rs << 17;
    return (uint32_t)(rs >> 32);
}

/* ---- The pool ---------------------------------------------------------------------------- */

typedef struct cover {
    atomic_int *hits;
    int n;
    pthread_t caller;
    atomic_int off_caller;    /* items run on another thread than the caller */
} cover;

static void cover_fn(void *ctx, int i0, int i1)
{
    cover *c = ctx;
    for (int i = i0; i < i1; i++) atomic_fetch_add(&c->hits[i], 1);
    if (!pthread_equal(pthread_self(), c->caller)) atomic_fetch_add(&c->off_caller, i1 - i0);
}

static void nap_us(long us)
{
    struct timespec ts = {0, us * 1000};
    nanosleep(&ts, NULL);
}

/* Every index exactly once, over thousands of jobs of every size, with
 * pauses between some of them so that workers go from spinning to sleeping
 * and are woken again (the late-worker and sleeping-caller paths). */
TEST(runtime_pool_every_index_once)
{
    enum { MAXN = 700 };
    atomic_int hits[MAXN];
    wp_err e = {0};
    for (int threads = 2; threads <= 4; threads++) {
        rt_pool *p;
        REQUIRE(rt_pool_new(&p, threads, &e) == 0);
        CHECK_EQ_INT(rt_pool_threads(p), threads);
        int bad = 0, off = 0;
        for (int job = 0; job < 3000; job++) {
            int n = 1 + (int)(rng() % MAXN), grain = 1 + (int)(rng() % 8);
            for (int i = 0; i < n; i++) atomic_init(&hits[i], 0);
            cover c = {hits, n, pthread_self(), 0};
            rt_pool_for(p, n, grain, cover_fn, &c);
            for (int i = 0; i < n; i++) bad += atomic_load(&hits[i]) != 1;
            off += atomic_load(&c.off_caller);
            if (job % 97 == 0) nap_us(300);     /* past the spin: the workers sleep */
        }
        CHECKF(bad == 0, "%d threads: %d indices not run exactly once", threads, bad);
        CHECKF(off > 0, "%d threads: the workers never ran an item", threads);
        rt_pool_free(p);
    }
}

/* Below RT_PAR_MIN_WORK a job stays on the caller (tiny-a's decode); above,
 * the workers take part.  A NULL pool runs everything on the caller. */
TEST(runtime_pool_small_work_stays_on_caller)
{
    wp_err e = {0};
    rt_pool *p;
    REQUIRE(rt_pool_new(&p, 3, &e) == 0);
    atomic_int hits[512];
    for (int i = 0; i < 512; i++) atomic_init(&hits[i], 0);
    cover c = {hits, 512, pthread_self(), 0};
    for (int r = 0; r < 200; r++) rt_pool_for_work(p, 512, 1, RT_PAR_MIN_WORK - 1, cover_fn, &c);
    CHECK_EQ_INT(atomic_load(&c.off_caller), 0);
    rt_pool_for_work(NULL, 512, 1, 1e12, cover_fn, &c);
    CHECK_EQ_INT(atomic_load(&c.off_caller), 0);
    int bad = 0;
    for (int i = 0; i < 512; i++) bad += atomic_load(&hits[i]) != 201;
    CHECK_EQ_INT(bad, 0);
    /* big jobs: some item runs on a worker.  Retry for up to 20 s, yielding
     * between tries: on a loaded machine a worker may not be scheduled before
     * the caller has taken every item of a job (late workers never hold it). */
    double t0 = wp_now();
    while (!atomic_load(&c.off_caller) && wp_now() - t0 < 20) {
        rt_pool_for_work(p, 512, 1, 1e9, cover_fn, &c);
        if (!atomic_load(&c.off_caller)) sched_yield();
    }
    CHECK(atomic_load(&c.off_caller) > 0);
    rt_pool_free(p);
}

/* ---- The model on tiny-a ------------------------------------------------------------------- */


/* tiny-a's decode is too small to share: on 2 threads a decode step wakes
 * no worker (the fix for "tiny-a decode is slower on 2 threads than on
 * 1"), while its 200-token prefill does spread over both. */
TEST(runtime_tiny_decode_stays_on_caller)
{
    wp_tsrc *src;
    wp_model *m = wpt_rt_load_tiny(&src, 0, 2);
    REQUIRE(m);
    const int V = wp_model_config(m)->vocab_size;
    wp_seq *s;
    wp_err e = {0};
    REQUIRE(wp_seq_new(&s, m, 240, &e) == 0);
    int32_t t[200];
    for (int i = 0; i < 200; i++) t[i] = (int32_t)((i * 13 + 1) % V);
    float *lg = malloc(sizeof(float) * V);
    unsigned long sh0, al0, sh1, al1, sh2, al2;
    rt_pool_counts(m->ctx.pool, &sh0, &al0);
    REQUIRE(wp_model_forward(m, s, t, 200, lg, NULL, &e) == 0);
    rt_pool_counts(m->ctx.pool, &sh1, &al1);
    for (int k = 0; k < 20; k++) REQUIRE(wp_model_forward(m, s, t + k, 1, lg, NULL, &e) == 0);
    rt_pool_counts(m->ctx.pool, &sh2, &al2);
    CHECKF(sh1 - sh0 > 10, "prefill: only %lu jobs shared with the worker", sh1 - sh0);
    CHECKF(sh2 == sh1, "20 decode steps shared %lu jobs with the worker", sh2 - sh1);
    CHECKF(al2 - al1 >= 20, "20 decode steps ran %lu jobs on the caller", al2 - al1);
    free(lg);
    wp_seq_free(s);
    wp_model_free(m);
    wp_tsrc_close(src);
}

/* Logits of a prefill, 12 single decode steps and 4 batched steps of two
 * sequences; *n_out floats. */
static float *run_tiny(int threads, unsigned flags, size_t *n_out)
{
    wp_tsrc *src;
    wp_model *m = wpt_rt_load_tiny(&src, flags, threads);
    if (!m) return NULL;
    const int V = wp_model_config(m)->vocab_size;
    const size_t rows = 2 + 12 + 4 * 2;
    float *out = malloc(sizeof(float) * rows * V);
    wp_seq *a, *b;
    wp_err e = {0};
    int32_t t[90];
    for (int i = 0; i < 90; i++) t[i] = (int32_t)((i * 131 + 7) % V);
    int rc = wp_seq_new(&a, m, 120, &e) || wp_seq_new(&b, m, 120, &e);
    float *o = out;
    if (!rc) rc = wp_model_forward(m, a, t, 90, o, NULL, &e);
    o += V;
    if (!rc) rc = wp_model_forward(m, b, t + 3, 41, o, NULL, &e);
    o += V;
    for (int k = 0; k < 12 && !rc; k++, o += V) {
        int32_t tk = (int32_t)((k * 29 + 1) % V);
        rc = wp_model_forward(m, a, &tk, 1, o, NULL, &e);
    }
    wp_seq *ab[2] = {a, b};
    for (int k = 0; k < 4 && !rc; k++, o += 2 * (size_t)V) {
        int32_t bt[2] = {(int32_t)(k * 5 % V), (int32_t)((k * 7 + 2) % V)};
        rc = wp_model_decode_batch(m, ab, bt, 2, o, &e);
    }
    if (rc) {
        printf("    %s\n", e.msg);
        free(out);
        out = NULL;
    }
    wp_seq_free(a);
    wp_seq_free(b);
    wp_model_free(m);
    wp_tsrc_close(src);
    *n_out = rows * V;
    return out;
}

/* The same logits, bit for bit, on 1, 2 and 3 threads and with read-ahead
 * forced on: prefill, decode and batched decode. */
TEST(runtime_threads_logits_identical)
{
    size_t n1, n;
    float *ref = run_tiny(1, WP_RT_NO_PREFETCH, &n1);
    REQUIRE(ref);
    struct { int threads; unsigned flags; } cases[] = {
        {2, 0}, {3, 0}, {2, WP_RT_PREFETCH}, {1, WP_RT_PREFETCH},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        float *l = run_tiny(cases[i].threads, cases[i].flags, &n);
        REQUIRE(l && n == n1);
        size_t diff = 0;
        for (size_t k = 0; k < n; k++) diff += memcmp(&l[k], &ref[k], 4) != 0;
        CHECKF(diff == 0, "%d threads, flags %#x: %zu of %zu logits differ from 1 thread",
               cases[i].threads, cases[i].flags, diff, n);
        free(l);
    }
    /* and they are logits, not zeros */
    double ss = 0;
    for (size_t k = 0; k < n1; k++) ss += (double)ref[k] * ref[k];
    CHECK(ss > 0 && isfinite(ss));
    free(ref);
}

/* rt_linear_many gives each product the bits of its own rt_linear, with a
 * shared input (w1/w3), several row counts, and FP8, MXFP4 and plain
 * weights in one job. */
TEST(runtime_linear_many_same_bits)
{
    wp_tsrc *src;
    wp_model *m = wpt_rt_load_tiny(&src, 0, 3);
    REQUIRE(m);
    const rt_layer *L = &m->layers[1];
    const wp_qweight *ws[] = {&L->w1[0], &L->w3[0], &L->w2[5], &L->wq_a, &L->sw1, &L->wo_b,
                              &L->gate};
    const int M[] = {1, 1, 3, 2, 7, 1, 2};
    enum { NS = 7 };
    rt_lin_spec sp[NS];
    float *x[NS], *y[NS], *yr[NS];
    for (int i = 0; i < NS; i++) {
        const size_t K = ws[i]->cols, N = ws[i]->rows;
        x[i] = malloc(sizeof(float) * M[i] * K);
        y[i] = malloc(sizeof(float) * M[i] * N);
        yr[i] = malloc(sizeof(float) * M[i] * N);
        for (size_t k = 0; k < M[i] * K; k++) x[i][k] = (float)((int)(rng() % 2001) - 1000) / 300;
    }
    x[1] = x[0];                    /* w3 reads w1's input, as in an expert */
    for (int i = 0; i < NS; i++) sp[i] = (rt_lin_spec){.w = ws[i], .x = x[i], .M = M[i], .y = y[i]};
    for (unsigned flags = 0; flags <= WP_RT_BF16; flags += WP_RT_BF16) {
        rt_ctx c = m->ctx;
        c.flags = flags;
        REQUIRE(rt_linear_many(&c, sp, NS) == 0);
        for (int i = 0; i < NS; i++) {
            REQUIRE(rt_linear(&c, ws[i], x[i], M[i], yr[i]) == 0);
            CHECKF(memcmp(y[i], yr[i], sizeof(float) * M[i] * ws[i]->rows) == 0,
                   "flags %#x: product %d (%s %llux%llu, %d rows) differs from rt_linear", flags,
                   i, wp_enc_name(ws[i]->enc), (unsigned long long)ws[i]->rows,
                   (unsigned long long)ws[i]->cols, M[i]);
        }
    }
    for (int i = 0; i < NS; i++) {
        if (i != 1) free(x[i]);
        free(y[i]), free(yr[i]);
    }
    /* dense: row ranges into a strided output (the wo_a groups), an FP8 weight
     * at a dense site (scale-1 activations) and plain ones */
    {
        const wp_qweight *wo = &L->wo_a, *wq = &L->wq_b, *wc = &L->comp.wkv;
        const int G = 2, R = (int)wo->rows / 2, K = (int)wo->cols, Mr = 3;
        float *xa = malloc(sizeof(float) * (G + 2) * Mr * 512), *ya = calloc(Mr * 2048, 4);
        float *yb = calloc(Mr * 2048, 4);
        for (int i = 0; i < (G + 2) * Mr * 512; i++) xa[i] = (float)((int)(rng() % 2001) - 1000) / 700;
        rt_lin_spec ds[4];
        for (int g = 0; g < G; g++)
            ds[g] = (rt_lin_spec){.w = wo, .x = xa + g * Mr * K, .M = Mr, .y = ya + g * R,
                                  .r0 = (uint64_t)g * R, .nr = R, .ldy = G * R};
        ds[2] = (rt_lin_spec){.w = wq, .x = xa + 2 * Mr * 512, .M = Mr, .y = ya + Mr * G * R};
        ds[3] = (rt_lin_spec){.w = wc, .x = xa + 3 * Mr * 512, .M = Mr,
                              .y = ya + Mr * (G * R + (int)wq->rows)};
        REQUIRE(Mr * (G * R + (int)wq->rows + (int)wc->rows) <= Mr * 2048);
        REQUIRE(rt_linear_dense_many(&m->ctx, ds, 4) == 0);
        for (int g = 0; g < G; g++)
            REQUIRE(rt_linear_dense_rows(&m->ctx, wo, (uint64_t)g * R, R, ds[g].x, Mr, yb + g * R,
                                         G * R) == 0);
        REQUIRE(rt_linear_dense(&m->ctx, wq, ds[2].x, Mr, yb + Mr * G * R) == 0);
        REQUIRE(rt_linear_dense(&m->ctx, wc, ds[3].x, Mr, yb + Mr * (G * R + (int)wq->rows)) == 0);
        CHECKF(memcmp(ya, yb, sizeof(float) * Mr * 2048) == 0,
               "dense many (%s wo_a groups, %s wq_b, %s compressor) differs",
               wp_enc_name(wo->enc), wp_enc_name(wq->enc), wp_enc_name(wc->enc));
        free(xa), free(ya), free(yb);
    }
    wp_model_free(m);
    wp_tsrc_close(src);
}

/* The MoE as it was written before the batches: expert by expert in
 * ascending id, three rt_linear calls each, the shared expert last. */
static void moe_reference(const rt_ctx *c, const wp_config *cfg, const rt_layer *L,
                          const float *x, const int32_t *tok, int n, float *out)
{
    const int E = cfg->n_routed_experts, k = cfg->n_activated_experts, d = cfg->dim;
    const float lim = (float)cfg->swiglu_limit;
    float *lg = malloc(sizeof(float) * n * E), *rw = malloc(sizeof(float) * n * k);
    int32_t *ids = malloc(sizeof(int32_t) * n * k);
    float *xe = malloc(sizeof(float) * n * k * d), *rwe = malloc(sizeof(float) * n * k);
    float *oe = malloc(sizeof(float) * n * k * d);
    int *rows = malloc(sizeof(int) * n * k);
    rt_linear_dense(c, &L->gate, x, n, lg);
    for (int s = 0; s < n; s++) rt_route(cfg, L, lg + s * E, tok[s], ids + s * k, rw + s * k);
    memset(out, 0, sizeof(float) * n * d);
    for (int pass = 0; pass <= E; pass++) {
        const int shared = pass == E;
        if (shared && !L->has_shared) break;
        const wp_qweight *w1 = shared ? &L->sw1 : &L->w1[pass], *w2 = shared ? &L->sw2 : &L->w2[pass],
                         *w3 = shared ? &L->sw3 : &L->w3[pass];
        int cnt = 0;
        for (int s = 0; s < n; s++)
            for (int i = 0; i < k; i++)
                if (shared ? i == 0 : ids[s * k + i] == pass) {
                    memcpy(xe + cnt * d, x + s * d, sizeof(float) * d);
                    rwe[cnt] = rw[s * k + i];
                    rows[cnt++] = s;
                }
        if (!cnt) continue;
        const int I = (int)w1->rows;
        float *g = malloc(sizeof(float) * cnt * I), *u = malloc(sizeof(float) * cnt * I);
        rt_linear(c, w1, xe, cnt, g);
        rt_linear(c, w3, xe, cnt, u);
        for (int s = 0; s < cnt; s++)
            for (int i = 0; i < I; i++) {
                float gv = g[s * I + i], uv = u[s * I + i];
                if (lim > 0) {
                    uv = uv < -lim ? -lim : uv > lim ? lim : uv;
                    gv = gv > lim ? lim : gv;
                }
                float a = gv / (1.0f + expf(-gv)) * uv;
                g[s * I + i] = shared ? a : rwe[s] * a;
            }
        rt_round(c, g, (size_t)cnt * I);
        rt_linear(c, w2, g, cnt, oe);
        for (int i = 0; i < cnt; i++)
            for (int t = 0; t < d; t++) out[rows[i] * d + t] += oe[i * d + t];
        free(g), free(u);
    }
    rt_round(c, out, (size_t)n * d);
    free(lg), free(rw), free(ids), free(xe), free(rwe), free(oe), free(rows);
}

/* rt_moe with its batches (one, or several when the rows pass the batch
 * bound) gives the bits of the expert-by-expert MoE, on a hash layer and a
 * biased-router layer, for a decode row and prefills of 3 and 300 rows. */
TEST(runtime_moe_batches_same_bits)
{
    wp_tsrc *src;
    wp_model *m = wpt_rt_load_tiny(&src, 0, 2);
    REQUIRE(m);
    const wp_config *cfg = wp_model_config(m);
    const int d = cfg->dim, ns[] = {1, 3, 300};
    for (int li = 0; li < 2; li++) {
        const rt_layer *L = &m->layers[li];     /* 0: hash routing, 1: biased router */
        for (size_t t = 0; t < sizeof ns / sizeof ns[0]; t++) {
            const int n = ns[t];
            float *x = malloc(sizeof(float) * n * d), *y = malloc(sizeof(float) * n * d);
            float *yr = malloc(sizeof(float) * n * d);
            int32_t *tok = malloc(sizeof(int32_t) * n);
            for (int i = 0; i < n * d; i++) x[i] = (float)((int)(rng() % 2001) - 1000) / 500;
            for (int i = 0; i < n; i++) tok[i] = (int32_t)(rng() % (unsigned)cfg->vocab_size);
            wp_err e = {0};
            REQUIRE(rt_moe(&m->ctx, cfg, L, x, tok, n, y, &e) == 0);
            moe_reference(&m->ctx, cfg, L, x, tok, n, yr);
            size_t diff = 0;
            for (int i = 0; i < n * d; i++) diff += memcmp(&y[i], &yr[i], 4) != 0;
            CHECKF(diff == 0, "layer %d, %d rows: %zu outputs differ", li, n, diff);
            free(x), free(y), free(yr), free(tok);
        }
    }
    wp_model_free(m);
    wp_tsrc_close(src);
}

/* ---- Read-ahead ------------------------------------------------------------------------------- */

/* Read-ahead is off for a model that fits in memory, on when asked, and
 * off when forbidden; the thread hands queued ranges of a real mapping to
 * madvise (unaligned starts included) and drops what overflows its queue. */
TEST(runtime_prefetch_thread)
{
    wp_tsrc *src;
    wp_model *m = wpt_rt_load_tiny(&src, 0, 1);
    REQUIRE(m);
    CHECK_EQ_INT(wp_model_prefetching(m), 0);      /* tiny-a: a few MB */
    uint64_t bytes = wp_model_weight_bytes(m);
    CHECKF(bytes > 1000000 && bytes < 100000000, "tiny-a weights: %llu bytes",
           (unsigned long long)bytes);
    wp_model_free(m);
    wp_tsrc_close(src);
    m = wpt_rt_load_tiny(&src, WP_RT_PREFETCH, 1);
    REQUIRE(m);
    CHECK_EQ_INT(wp_model_prefetching(m), 1);
    wp_model_free(m);
    wp_tsrc_close(src);
    m = wpt_rt_load_tiny(&src, WP_RT_PREFETCH | WP_RT_NO_PREFETCH, 1);
    REQUIRE(m);
    CHECK_EQ_INT(wp_model_prefetching(m), 0);
    wp_model_free(m);
    wp_tsrc_close(src);

    const char *path = wpt_path("%s/blob", wpt_tmpdir());
    const size_t len = 1 << 20;
    uint8_t *buf = calloc(1, len);
    REQUIRE(buf && wpt_write_file(path, buf, len) == 0);
    free(buf);
    int fd = open(path, O_RDONLY);
    REQUIRE(fd >= 0);
    const uint8_t *map = mmap(NULL, len, PROT_READ, MAP_SHARED, fd, 0);
    REQUIRE(map != MAP_FAILED);
    rt_prefetch *pf;
    wp_err e = {0};
    REQUIRE(rt_prefetch_new(&pf, &e) == 0);
    for (int i = 0; i < 40; i++) rt_prefetch_range(pf, map + 1 + i * 1000, 70000);
    rt_prefetch_range(pf, NULL, 10);              /* ignored */
    unsigned long issued = 0, dropped = 0;
    for (int t = 0; t < 5000 && issued + dropped < 40; t++) {
        nap_us(1000);
        rt_prefetch_stats(pf, &issued, &dropped);
    }
    CHECK_EQ_INT(issued + dropped, 40);
    CHECK(issued > 0);
    for (int i = 0; i < 20000; i++) rt_prefetch_range(pf, map, len);  /* overflow the ring */
    rt_prefetch_free(pf);                          /* joins with hints still queued */
    munmap((void *)map, len);
    close(fd);
}
