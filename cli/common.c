/* common.c — error printing, progress bar and argument helpers for cli/. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"

int cli_error(const char *cmd, const wp_err *e)
{
    fprintf(stderr, "wpack %s: %s\n", cmd, e && e->msg[0] ? e->msg : "failed");
    return e && e->code == WP_EVERIFY ? WP_EXIT_FAIL : WP_EXIT_BAD;
}

int cli_usage(const char *cmd, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "wpack %s: ", cmd);
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, " (try 'wpack %s --help')\n", cmd);
    va_end(ap);
    return WP_EXIT_BAD;
}

void cli_print_json(cJSON *doc)
{
    char *s = cJSON_Print(doc);
    if (s) {
        fputs(s, stdout);
        fputc('\n', stdout);
        free(s);
    }
    cJSON_Delete(doc);
}

int cli_int(const char *cmd, const char *opt, const char *v, long long lo, long long hi,
            long long *out)
{
    char *end;
    errno = 0;
    long long n = strtoll(v, &end, 10);
    if (!*v || *end || errno || n < lo || n > hi) {
        cli_usage(cmd, "%s %s: expected an integer in %lld..%lld", opt, v, lo, hi);
        return -1;
    }
    *out = n;
    return 0;
}

const char *cli_bytes(uint64_t n, char *buf, size_t sz)
{
    static const char *u[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    double v = (double)n;
    int k = 0;
    while (v >= 1024 && k < 4) {
        v /= 1024;
        k++;
    }
    snprintf(buf, sz, k ? "%.2f %s" : "%.0f %s", v, u[k]);
    return buf;
}

void cli_bar_init(cli_bar *b, int quiet, int is_bytes)
{
    memset(b, 0, sizeof *b);
    b->enabled = !quiet && isatty(STDERR_FILENO);
    b->t0 = wp_now();
    b->is_bytes = is_bytes;
}

void cli_progress(void *ud, const char *what, uint64_t done, uint64_t total)
{
    cli_bar *b = ud;
    if (!b || !b->enabled) return;
    double t = wp_now();
    if (done < total && t - b->last < 0.1) return;   /* 10 redraws a second */
    b->last = t;
    double frac = total ? (double)done / (double)total : 0;
    int w = 30, fill = (int)(frac * w);
    char bar[64];
    for (int i = 0; i < w; i++) bar[i] = i < fill ? '#' : '-';
    bar[w] = 0;
    double el = t - b->t0, rate = el > 0 ? (double)done / el : 0;
    double eta = rate > 0 ? (double)(total - done) / rate : 0;
    char d[32], tt[32], r[32];
    if (b->is_bytes)
        fprintf(stderr, "\r%-12.12s [%s] %5.1f%% %s/%s %s/s ETA %.0fs ", what ? what : "", bar,
                100 * frac, cli_bytes(done, d, sizeof d), cli_bytes(total, tt, sizeof tt),
                cli_bytes((uint64_t)rate, r, sizeof r), eta);
    else
        fprintf(stderr, "\r%-12.12s [%s] %5.1f%% %llu/%llu ETA %.0fs ", what ? what : "", bar,
                100 * frac, (unsigned long long)done, (unsigned long long)total, eta);
}

void cli_bar_end(cli_bar *b)
{
    if (b && b->enabled) fprintf(stderr, "\r\033[K");
}

int cli_flag(const char *arg, const char *name)
{
    return !strcmp(arg, name);
}

const char *cli_opt(int argc, char **argv, int *i, const char *name)
{
    size_t n = strlen(name);
    if (strncmp(argv[*i], name, n)) return NULL;
    if (argv[*i][n] == '=') return argv[*i] + n + 1;
    if (argv[*i][n] == 0 && *i + 1 < argc) return argv[++*i];
    return NULL;
}
