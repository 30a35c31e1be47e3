/* common.c — error printing, progress bar and argument helpers for cli/. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "cli/cli.h"

cli_ctx *cli_cur;

static void keep_error(int code, const char *msg)
{
    if (cli_cur && !cli_cur->err_code) {
        cli_cur->err_code = code;
        snprintf(cli_cur->err, sizeof cli_cur->err, "%s", msg);
    }
}

int cli_error(const char *cmd, const wp_err *e)
{
    char line[1100], flag[96];
    const char *msg = e && e->msg[0] ? e->msg : "failed";
    const char *opt = e ? cli_setting_flag(cli_cur ? cli_cur->cmd : NULL, e->setting, flag, sizeof flag) : NULL;
    if (opt) snprintf(line, sizeof line, "%s (see %s)", msg, opt);
    else snprintf(line, sizeof line, "%s", msg);
    fprintf(stderr, "wpack %s: %s\n", cmd, line);
    int code = e && e->code == WP_EVERIFY ? WP_EXIT_FAIL : WP_EXIT_BAD;
    keep_error(code, line);
    return code;
}

int cli_usage(const char *cmd, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    fprintf(stderr, "wpack %s: %s (try 'wpack %s --help')\n", cmd, msg, cmd);
    keep_error(WP_EXIT_BAD, msg);
    return WP_EXIT_BAD;
}

int cli_fail(const char *cmd, int code, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    fprintf(stderr, "wpack %s: %s\n", cmd, msg);
    keep_error(code, msg);
    return code;
}

void cli_keep_error(int code, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    keep_error(code, msg);
}

void cli_notice(const char *fmt, ...)
{
    if (cli_cur && cli_cur->quiet) return;
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "wpack %s: ", cli_cur && cli_cur->cmd ? cli_cur->cmd->name : "");
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

void cli_library_notice(void *ud, const char *line)
{
    (void)ud;
    cli_notice("%s", line);
}

void cli_print_json(cJSON *doc)
{
    if (cli_cur) {
        cJSON_Delete(cli_cur->doc);   /* the last document wins: exactly one is printed */
        cli_cur->doc = doc;
        return;
    }
    cli_emit_json(doc);
}

void cli_emit_json(cJSON *doc)
{
    char *s = cJSON_Print(doc);
    if (s) {
        fputs(s, stdout);
        fputc('\n', stdout);
        free(s);
    }
    cJSON_Delete(doc);
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

const char *cli_duration(double t, char *buf, size_t n)
{
    if (!(t >= 0) || t > 1e9) snprintf(buf, n, "?");
    else if (t < 60) snprintf(buf, n, "%.0fs", t);
    else if (t < 3600) snprintf(buf, n, "%dm%02ds", (int)t / 60, (int)t % 60);
    else snprintf(buf, n, "%dh%02dm", (int)(t / 3600), (int)t % 3600 / 60);
    return buf;
}

const char *cli_rate(double r, char *buf, size_t n)
{
    if (!(r >= 0)) r = 0;
    if (r >= 1e9) snprintf(buf, n, "%.2f GB/s", r / 1e9);
    else snprintf(buf, n, "%.0f MB/s", r / 1e6);
    return buf;
}

static int term_width(void)
{
    struct winsize ws;
    if (ioctl(STDERR_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0) return ws.ws_col;
    const char *c = getenv("COLUMNS");
    long v = c ? strtol(c, NULL, 10) : 0;
    return v > 0 && v < 10000 ? (int)v : 80;
}

void cli_bar_format(char *out, size_t n, int width, const char *what, uint64_t done, uint64_t total,
                    double el, int is_bytes)
{
    if (!n) return;
    out[0] = 0;
    if (width < 2) return;
    if (done > total) done = total;
    double frac = total ? (double)done / (double)total : 0;
    double rate = el > 0 ? (double)done / el : 0;
    double eta = rate > 0 ? (double)(total - done) / rate : -1;
    char d[32], t[32], r[32], e[32], counts[128], tail[200];
    if (is_bytes)
        snprintf(counts, sizeof counts, "%s/%s %s", cli_bytes(done, d, sizeof d), cli_bytes(total, t, sizeof t),
                 cli_rate(rate, r, sizeof r));
    else
        snprintf(counts, sizeof counts, "%llu/%llu", (unsigned long long)done, (unsigned long long)total);
    cli_duration(eta, e, sizeof e);
    /* Drop fields from the right until the line fits in width - 1 columns
     * (the last column stays empty so no terminal wraps). */
    int avail = width - 1;
    for (int level = 0; level < 4; level++) {
        if (level == 0) snprintf(tail, sizeof tail, " %5.1f%% %s ETA %s", 100 * frac, counts, e);
        else if (level == 1) snprintf(tail, sizeof tail, " %5.1f%% ETA %s", 100 * frac, e);
        else snprintf(tail, sizeof tail, " %5.1f%%", 100 * frac);
        int label = level < 3 ? 12 : 0;
        int barw = avail - label - 3 - (int)strlen(tail);   /* " [" "]" */
        if (barw >= 10 || level == 3) {
            if (barw < 0) barw = 0;
            if (barw > 60) barw = 60;
            char bar[64];
            int fill = (int)(frac * barw);
            for (int i = 0; i < barw; i++) bar[i] = i < fill ? '#' : '-';
            bar[barw] = 0;
            char line[512];
            if (label) snprintf(line, sizeof line, "%-12.12s [%s]%s", what ? what : "", bar, tail);
            else snprintf(line, sizeof line, "[%s]%s", bar, tail);
            if ((int)strlen(line) > avail) line[avail > 0 ? avail : 0] = 0;
            snprintf(out, n, "%s", line);
            return;
        }
    }
}

void cli_bar_init(cli_bar *b, int quiet, int is_bytes)
{
    memset(b, 0, sizeof *b);
    int off = quiet || (cli_cur && (cli_cur->quiet || cli_cur->no_progress || cli_cur->json));
    b->enabled = !off && isatty(STDERR_FILENO);
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
    char line[512];
    cli_bar_format(line, sizeof line, term_width(), what, done, total, t - b->t0, b->is_bytes);
    fprintf(stderr, "\r\033[K%s", line);
}

void cli_bar_end(cli_bar *b)
{
    if (b && b->enabled) fprintf(stderr, "\r\033[K");
}
