/*
 * convert_cpu.c — the CPU side of `wpack convert` alone: the same plan and
 * pipeline, with a sink that SHA-256s every output tensor (as the .wpk
 * writer does) but writes nothing.  With the input in the page cache this
 * is the re-encode throughput of the machine's cores.  For bench/convert.sh.
 *
 *   convert_cpu CKPT PROFILE THREADS
 *
 * Prints one line: output GB, seconds, GB/s, peak RSS MiB, CPU seconds
 * (user + system, every thread: on a shared machine, GB per CPU-second is
 * what the code costs whatever else runs), and source bytes read over the
 * checkpoint's tensor bytes (1.000: every byte read once; NVFP4 used to read
 * its expert slices twice).  The first four fields are as they always were;
 * the fifth and sixth were added by issue 14.  WPACK_QUANT_ISA
 * (scalar, avx2, avx512) picks the quant kernel set (quant/quant_priv.h).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "convert/convert.h"

typedef struct hsink {
    const wp_plan *p;
    wp_sha256 *h;
} hsink;

static int h_begin(void *ud, const wp_plan *p, wp_err *e)
{
    hsink *s = ud;
    s->p = p;
    s->h = calloc(p->n_tensors ? p->n_tensors : 1, sizeof *s->h);
    if (!s->h) return wp_fail(e, WP_ENOMEM, "out of memory");
    for (size_t i = 0; i < p->n_tensors; i++)
        if (wp_sha256_init(&s->h[i], e)) return WP_ENOMEM;
    return 0;
}

static int h_write(void *ud, size_t t, uint64_t off, const void *buf, size_t n, wp_err *e)
{
    (void)off;
    (void)e;
    wp_sha256_update(&((hsink *)ud)->h[t], buf, n);   /* bytes of a tensor arrive in order */
    return 0;
}

static int h_commit(void *ud, wp_err *e)
{
    hsink *s = ud;
    (void)e;
    uint8_t d[WP_SHA256_LEN];
    for (size_t i = 0; i < s->p->n_tensors; i++) wp_sha256_final(&s->h[i], d);
    free(s->h);
    s->h = NULL;
    return 0;
}

static void h_abort(void *ud)
{
    hsink *s = ud;
    for (size_t i = 0; s->h && i < s->p->n_tensors; i++) wp_sha256_free(&s->h[i]);
    free(s->h);
    s->h = NULL;
}

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: convert_cpu CKPT PROFILE THREADS\n");
        return 2;
    }
    wp_err e = {0};
    wp_ckpt *k;
    wp_config c;
    wp_profile prof;
    wp_plan *p = NULL;
    char cfg[4096];
    int rc = wp_ckpt_open(&k, argv[1], &e);
    if (!rc) {
        snprintf(cfg, sizeof cfg, "%s/config.json", wp_ckpt_dir(k));
        rc = wp_config_load(&c, cfg, &e);
    }
    if (!rc) rc = wp_profile_load(&prof, argv[2], &e);
    if (!rc) rc = wp_plan_build(&p, k, &c, &prof, NULL, &e);
    if (rc) {
        fprintf(stderr, "convert_cpu: %s\n", e.msg);
        return 2;
    }
    hsink hs = {0};
    wp_sink sink = {.ud = &hs, .begin = h_begin, .write = h_write, .commit = h_commit, .abort = h_abort};
    wp_convert_opts o = {.threads = atoi(argv[3])};
    wp_convert_stats st;
    if ((rc = wp_convert_run(p, &sink, &o, &st, &e))) {
        fprintf(stderr, "convert_cpu: %s\n", e.msg);
        return 2;
    }
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    double cpu = (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec * 1e-6 + (double)ru.ru_stime.tv_sec +
                 ru.ru_stime.tv_usec * 1e-6;
    printf("%.3f %.3f %.3f %.1f %.3f %.3f\n", st.out_bytes / 1e9, st.seconds, st.out_bytes / st.seconds / 1e9,
           st.peak_rss / 1048576.0, cpu, p->in_bytes ? (double)st.read_bytes / (double)p->in_bytes : 0.0);
    wp_plan_free(p);
    wp_profile_free(&prof);
    wp_ckpt_close(k);
    return 0;
}
