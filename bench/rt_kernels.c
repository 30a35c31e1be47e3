/*
 * rt_kernels.c — throughput of the decode (one activation row) products of
 * the reference runtime, in CPU seconds, so a loaded machine's other work
 * does not enter the figure (alternate two builds of this file, one per
 * libwpack.a, and compare the best of several runs):
 *
 *   rt_kernels cache KERNEL PASSES   64 rows of 4096 columns (L2-resident),
 *                                    PASSES times through the best kernel set's
 *                                    qdot_e4m3_bf (0), qdot_e2m1_bf (1) or dot_e4m3 (2)
 *   rt_kernels mem KIND PASSES       rt_linear / rt_linear_dense of one row against a
 *                                    64 MiB weight in 4 KiB pages (MADV_NOHUGEPAGE, as a
 *                                    file mapping): FP8 quantised (0), MXFP4 (1), dense FP8 (2)
 *
 * Prints CPU seconds and weight GB per CPU-second.  Build:
 *   cc -O2 -std=c11 -D_GNU_SOURCE -pthread -I. bench/rt_kernels.c build/libwpack.a \
 *      -lzstd -lcrypto -lcjson -lhugetlbfs -lpthread -lm -o rt_kernels
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#include "runtime/internal.h"

static double cpu(void)
{
    struct timespec t;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static volatile float sink;

static int cache_run(int which, int passes)
{
    const rt_kernels *k = rt_kernels_best();
    if (!k->qdot_e4m3_bf && which < 2) {
        fprintf(stderr, "rt_kernels: kernel set %s has no bf16 products\n", k->name);
        return 2;
    }
    const int K = 4096, rows = 64;
    uint8_t *w = malloc((size_t)rows * K);
    float *xq = malloc(sizeof(float) * K), xs[32], ws[128], wsd[32];
    uint16_t *xb = malloc(sizeof(uint16_t) * K);
    if (!w || !xq || !xb) return 2;
    uint64_t r = 0x9E3779B97F4A7C15ull;
    for (size_t i = 0; i < (size_t)rows * K; i++) {
        r ^= r << 13, r ^= r >> 7, r ^= r << 17;
        w[i] = (uint8_t)(r & 0x7E);     /* no NaN codes */
    }
    for (int i = 0; i < K; i++) xq[i] = 1.0f, xb[i] = 0x3F80;
    for (int i = 0; i < 32; i++) xs[i] = wsd[i] = 1.0f;
    for (int i = 0; i < 128; i++) ws[i] = 1.0f;
    float s = 0;
    double t0 = cpu();
    for (int p = 0; p < passes; p++)
        for (int i = 0; i < rows; i++)
            s += which == 0 ? k->qdot_e4m3_bf(w + (size_t)i * K, xq, xb, xs, ws, K, 128)
               : which == 1 ? k->qdot_e2m1_bf(w + (size_t)i * K / 2, xq, xb, xs, ws, K, 32)
                            : k->dot_e4m3(w + (size_t)i * K, wsd, 128, xq, K);
    double t = cpu() - t0;
    sink = s;
    double bytes = (double)passes * rows * K / (which == 1 ? 2 : 1);
    printf("cache %s %s: %.3f CPU s, %.2f GB per CPU-second\n", k->name,
           which == 0 ? "qdot_e4m3_bf" : which == 1 ? "qdot_e2m1_bf" : "dot_e4m3", t,
           bytes / t / 1e9);
    free(w), free(xq), free(xb);
    return 0;
}

static int mem_run(int which, int passes)
{
    const int K = 4096, N = which == 1 ? 32768 : 16384;
    wp_qweight w;
    memset(&w, 0, sizeof w);
    w.enc = which == 1 ? WP_ENC_MXFP4 : WP_ENC_FP8;
    w.rows = (uint64_t)N, w.cols = (uint64_t)K, w.br = 128, w.bc = 128, w.sfmt = WP_SCALE_E8M0;
    size_t db = wp_enc_data_bytes(w.enc, N, K), sb = wp_enc_scale_bytes(w.enc, N, K, 128, 128, WP_SCALE_E8M0);
    uint8_t *d = mmap(NULL, db, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    uint8_t *sc = malloc(sb);
    float *x = malloc(sizeof(float) * K), *y = malloc(sizeof(float) * N);
    if (d == MAP_FAILED || !sc || !x || !y) return 2;
    (void)madvise(d, db, MADV_NOHUGEPAGE);     /* 4 KiB pages, as the file mapping has */
    for (size_t i = 0; i < db; i++) d[i] = (uint8_t)((i * 2654435761u >> 13) & 0x7E);
    memset(sc, 127, sb);
    w.data = d, w.scale = sc;
    for (int i = 0; i < K; i++) x[i] = (float)(i % 13 - 6) * 0.1f;
    rt_ctx c = {.k = rt_kernels_best(), .pool = NULL, .flags = 0};
    double t0 = cpu();
    for (int p = 0; p < passes; p++)
        if ((which == 2 ? rt_linear_dense(&c, &w, x, 1, y) : rt_linear(&c, &w, x, 1, y)) != 0)
            return 2;
    double t = cpu() - t0;
    sink = y[7];
    printf("mem %s %s: %.3f CPU s, %.2f GB per CPU-second\n", c.k->name,
           which == 0 ? "FP8 quantised" : which == 1 ? "MXFP4" : "FP8 dense", t,
           (double)passes * db / t / 1e9);
    munmap(d, db);
    free(sc), free(x), free(y);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc != 4 || (strcmp(argv[1], "cache") && strcmp(argv[1], "mem")) || atoi(argv[2]) < 0 ||
        atoi(argv[2]) > 2 || atoi(argv[3]) < 1) {
        fprintf(stderr, "usage: rt_kernels cache|mem 0|1|2 PASSES\n");
        return 2;
    }
    return argv[1][0] == 'c' ? cache_run(atoi(argv[2]), atoi(argv[3]))
                             : mem_run(atoi(argv[2]), atoi(argv[3]));
}
