/*
 * rt_stream.c — read-ahead on and off on a model larger than memory.  Built
 * and run by bench/realsize.sh:
 *
 *   rt_stream MODEL PROMPT NEW THREADS FLAGS
 *
 * Loads MODEL (a build or checkpoint, not verified: realsize.sh times the
 * verification separately), prefills PROMPT tokens, decodes NEW tokens one at
 * a time, and prints the seconds of each phase, tokens/s, the major page
 * faults (getrusage) and whether weights were read ahead.  FLAGS: WP_RT_*
 * bits (16 = WP_RT_PREFETCH, 32 = WP_RT_NO_PREFETCH).  The caller evicts the
 * model's pages from the page cache before each run so runs start alike.
 */
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>

#include "runtime/runtime.h"

static long majflt(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_majflt;
}

int main(int argc, char **argv)
{
    if (argc != 6) {
        fprintf(stderr, "usage: rt_stream MODEL PROMPT NEW THREADS FLAGS\n");
        return 2;
    }
    const int P = atoi(argv[2]), N = atoi(argv[3]);
    wp_err e = {0};
    wp_tsrc *src;
    wp_model *m;
    wp_seq *s;
    wp_rt_opts o = {.threads = atoi(argv[4]), .flags = (unsigned)strtoul(argv[5], NULL, 0)};
    if (P < 1 || N < 0 || wp_tsrc_open(&src, argv[1], &e) || wp_model_load(&m, src, &o, &e) ||
        wp_seq_new(&s, m, P + N + 1, &e)) {
        fprintf(stderr, "rt_stream: %s\n", P < 1 || N < 0 ? "PROMPT >= 1, NEW >= 0" : e.msg);
        return 2;
    }
    const int V = wp_model_config(m)->vocab_size;
    float *lg = malloc(sizeof(float) * V);
    int32_t *t = malloc(sizeof(int32_t) * (P + N));
    for (int i = 0; i < P + N; i++) t[i] = (int32_t)((i * 7919u) % (unsigned)V);
    long f0 = majflt();
    double t0 = wp_now();
    if (wp_model_forward(m, s, t, P, lg, NULL, &e)) {
        fprintf(stderr, "rt_stream: %s\n", e.msg);
        return 2;
    }
    double t1 = wp_now();
    long f1 = majflt();
    for (int k = 0; k < N; k++)
        if (wp_model_forward(m, s, t + P + k, 1, lg, NULL, &e)) {
            fprintf(stderr, "rt_stream: %s\n", e.msg);
            return 2;
        }
    double t2 = wp_now();
    long f2 = majflt();
    printf("read-ahead %-3s: prefill %d tokens %.1f s = %.3f tokens/s (%ld major faults); "
           "decode %d tokens %.1f s = %.3f tokens/s (%ld major faults)\n",
           wp_model_prefetching(m) ? "on" : "off", P, t1 - t0, P / (t1 - t0), f1 - f0, N,
           t2 - t1, N ? N / (t2 - t1) : 0.0, f2 - f1);
    free(lg);
    free(t);
    wp_seq_free(s);
    wp_model_free(m);
    wp_tsrc_close(src);
    return 0;
}
