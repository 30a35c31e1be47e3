/* harness.c — the test runner behind harness.h. */
#include "tests/harness.h"

#include <errno.h>
#include <ftw.h>
#include <stdarg.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAX_TESTS 2048
static struct { const char *name; wpt_fn fn; } g_tests[MAX_TESTS];
static int g_ntests;
static int g_fail;
static char g_tmp[4096];

void wpt_register(const char *name, wpt_fn fn)
{
    if (g_ntests < MAX_TESTS) {
        g_tests[g_ntests].name = name;
        g_tests[g_ntests].fn = fn;
        g_ntests++;
    }
}

void wpt_fail_at(const char *file, int line, const char *fmt, ...)
{
    g_fail++;
    if (g_fail > 20) return;   /* one broken loop must not flood the log */
    va_list ap;
    va_start(ap, fmt);
    fprintf(stdout, "    %s:%d: ", file, line);
    vfprintf(stdout, fmt, ap);
    fputc('\n', stdout);
    va_end(ap);
    fflush(stdout);
}

int wpt_failures(void) { return g_fail; }
const char *wpt_tmpdir(void) { return g_tmp; }

const char *wpt_wpack(void)
{
    const char *p = getenv("WPACK_BIN");
    return p && *p ? p : "build/wpack";
}

const char *wpt_path(const char *fmt, ...)
{
    static char bufs[8][4096];
    static int k;
    char *b = bufs[k++ & 7];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(b, 4096, fmt, ap);
    va_end(ap);
    return b;
}

int wpt_run(char *out, size_t cap, const char *fmt, ...)
{
    char cmd[8192];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    char full[8300];
    snprintf(full, sizeof full, "( %s ) 2>&1", cmd);
    fflush(stdout);
    FILE *p = popen(full, "r");
    if (!p) return -1;
    size_t n = 0;
    char tmp[4096];
    size_t k;
    while ((k = fread(tmp, 1, sizeof tmp, p)) > 0) {
        if (out && n + 1 < cap) {
            size_t c = k < cap - 1 - n ? k : cap - 1 - n;
            memcpy(out + n, tmp, c);
            n += c;
        }
    }
    if (out && cap) out[n] = 0;
    int st = pclose(p);
    if (WIFEXITED(st)) return WEXITSTATUS(st);
    if (WIFSIGNALED(st)) return 128 + WTERMSIG(st);
    return -1;
}

int wpt_read_file(const char *path, uint8_t **data, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) return -1;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    *data = malloc(n > 0 ? (size_t)n : 1);
    if (!*data || fread(*data, 1, (size_t)n, f) != (size_t)n) {
        fclose(f);
        free(*data);
        return -1;
    }
    fclose(f);
    *len = (size_t)n;
    return 0;
}

int wpt_write_file(const char *path, const void *data, size_t len)
{
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    int ok = fwrite(data, 1, len, f) == len;
    return (fclose(f) == 0 && ok) ? 0 : -1;
}

static int rm_one(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb; (void)flag; (void)ftw;
    chmod(p, 0700);
    return remove(p);
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int selected(const char *name, int argc, char **argv)
{
    if (argc <= 1) return 1;
    for (int i = 1; i < argc; i++)
        if (strstr(name, argv[i])) return 1;
    return 0;
}

int main(int argc, char **argv)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    const char *base = getenv("TMPDIR");
    if (!base || !*base) base = "/tmp";
    int passed = 0, failed = 0;
    double t_all = now();
    for (int i = 0; i < g_ntests; i++) {
        if (!selected(g_tests[i].name, argc, argv)) continue;
        snprintf(g_tmp, sizeof g_tmp, "%s/wpt-%d-%s-XXXXXX", base, (int)getpid(), g_tests[i].name);
        if (!mkdtemp(g_tmp)) {
            printf("FAIL %s: cannot create scratch dir: %s\n", g_tests[i].name, strerror(errno));
            failed++;
            continue;
        }
        double t0 = now();
        fflush(stdout);
        pid_t pid = fork();
        if (pid == 0) {
            g_fail = 0;
            g_tests[i].fn();
            fflush(stdout);
            _exit(g_fail ? 1 : 0);
        }
        int st = 0;
        waitpid(pid, &st, 0);
        double dt = now() - t0;
        if (WIFEXITED(st) && WEXITSTATUS(st) == 0) {
            printf("ok   %-48s %7.2fs\n", g_tests[i].name, dt);
            passed++;
        } else {
            if (WIFSIGNALED(st))
                printf("FAIL %-48s %7.2fs (crashed: signal %d)\n", g_tests[i].name, dt, WTERMSIG(st));
            else
                printf("FAIL %-48s %7.2fs\n", g_tests[i].name, dt);
            failed++;
        }
        if (!getenv("WPT_KEEP")) nftw(g_tmp, rm_one, 16, FTW_DEPTH | FTW_PHYS);
    }
    printf("# %.1fs total\n", now() - t_all);
    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
