/*
 * quant_kernels.c — the lossy weight quantisers alone, per kernel set this CPU
 * runs (quant/quant_priv.h wp_qkernels), each next to the scalar oracle: GB/s
 * of output (codes + scales) from f32 input that stays in cache-friendly
 * bands (4 MiB of f32 per call, the order of a convert band), and the ratio
 * to scalar.  Every set's output is compared with the oracle's; a mismatch
 * is printed and the exit status is 1.  For bench/convert_cpu.sh.
 *
 *   quant_kernels [SECONDS_PER_FIGURE]      (default 0.5)
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "quant/quant_priv.h"

enum { ROWS = 256, COLS = 4096 };   /* 4 MiB of f32 */

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);   /* this thread's CPU time: the machine is shared */
    return (double)t.tv_sec + t.tv_nsec * 1e-9;
}

typedef struct {
    const char *name;
    size_t out_bytes;
} fig;

static void run(const wp_qkernels *k, int which, const float *w, uint8_t *q, uint8_t *s)
{
    switch (which) {
    case 0: k->nvfp4_quant(w, ROWS, COLS, 1e-3f, q, s); break;
    case 1: k->mxfp4_quant(w, ROWS, COLS, q, s); break;
    case 2: k->fp8_block_quant(w, ROWS, COLS, 128, 128, WP_SCALE_E8M0, q, s); break;
    default: k->fp8_block_quant(w, ROWS, COLS, 128, 128, WP_SCALE_F32, q, s); break;
    }
}

int main(int argc, char **argv)
{
    double secs = argc > 1 ? atof(argv[1]) : 0.5;
    static const fig figs[] = {
        {"nvfp4", ROWS * COLS / 2 + ROWS * COLS / 16},
        {"mxfp4", ROWS * COLS / 2 + ROWS * COLS / 32},
        {"fp8-128x128-e8m0", ROWS * COLS + (ROWS / 128) * (COLS / 128)},
        {"fp8-128x128-f32", ROWS * COLS + 4 * (ROWS / 128) * (COLS / 128)},
    };
    float *w = malloc((size_t)ROWS * COLS * sizeof *w);
    uint8_t *q = malloc((size_t)ROWS * COLS), *s = malloc((size_t)ROWS * COLS);
    uint8_t *q0 = malloc((size_t)ROWS * COLS), *s0 = malloc((size_t)ROWS * COLS);
    if (!w || !q || !s || !q0 || !s0) return 2;
    uint64_t x = 88172645463325252ull;
    for (size_t i = 0; i < (size_t)ROWS * COLS; i++) {   /* weights of ~1e-2, a binade spread per row */
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        w[i] = ldexpf((float)((int64_t)(x % 2000001) - 1000000) * 1e-6f, -6 - (int)(i / COLS % 5));
    }
    int bad = 0;
    printf("%-17s %-7s %9s %9s\n", "quantiser", "set", "out_GB/s", "x_scalar");
    for (int f = 0; f < 4; f++) {
        double scalar = 0;
        memset(q0, 0, (size_t)ROWS * COLS), memset(s0, 0, (size_t)ROWS * COLS);
        run(&wp_qk_scalar, f, w, q0, s0);
        const wp_qkernels *const *all = wp_qkernels_all();
        int n = 0;
        while (all[n]) n++;
        for (int i = n - 1; i >= 0; i--) {   /* scalar first: the peer of the others */
            const wp_qkernels *k = all[i];
            memset(q, 0, (size_t)ROWS * COLS), memset(s, 0, (size_t)ROWS * COLS);
            run(k, f, w, q, s);
            if (memcmp(q, q0, (size_t)ROWS * COLS) || memcmp(s, s0, (size_t)ROWS * COLS)) {
                printf("%s %s: output differs from scalar\n", figs[f].name, k->name);
                bad = 1;
            }
            long reps = 0;
            double t0 = now(), t;
            do {
                run(k, f, w, q, s);
                reps++;
            } while ((t = now() - t0) < secs);
            double gbs = (double)figs[f].out_bytes * reps / t / 1e9;
            if (k == &wp_qk_scalar) scalar = gbs;
            printf("%-17s %-7s %9.3f %9.2f\n", figs[f].name, k->name, gbs, scalar > 0 ? gbs / scalar : 0.0);
        }
    }
    free(w), free(q), free(s), free(q0), free(s0);
    return bad;
}
