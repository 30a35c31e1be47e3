/* harness.c — the test runner behind harness.h. */
#include "tests/harness.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <ftw.h>
#include <stdarg.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAX_TESTS 2048
static struct { const char *name; wpt_fn fn; int exclusive; } g_tests[MAX_TESTS];
static int g_ntests;
static int g_fail;
static char g_tmp[4096];

static void reg(const char *name, wpt_fn fn, int exclusive)
{
    if (g_ntests < MAX_TESTS) {
        g_tests[g_ntests].name = name;
        g_tests[g_ntests].fn = fn;
        g_tests[g_ntests].exclusive = exclusive;
        g_ntests++;
    }
}

void wpt_register(const char *name, wpt_fn fn) { reg(name, fn, 0); }
void wpt_register_exclusive(const char *name, wpt_fn fn) { reg(name, fn, 1); }

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

const char *wpt_hidden_names(const char *dir)
{
    static char out[4096];
    out[0] = 0;
    DIR *d = opendir(dir);
    struct dirent *de;
    while (d && (de = readdir(d)))
        if (de->d_name[0] == '.' && strcmp(de->d_name, ".") && strcmp(de->d_name, ".."))
            snprintf(out + strlen(out), sizeof out - strlen(out), "%s ", de->d_name);
    if (d) closedir(d);
    return out;
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
    *data = n >= 0 ? malloc((size_t)n + 1) : NULL;
    if (!*data || fread(*data, 1, (size_t)n, f) != (size_t)n) {
        fclose(f);
        free(*data);
        return -1;
    }
    fclose(f);
    (*data)[n] = 0;   /* a text file reads as a C string */
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

/* One selected test on its way through the runner. */
typedef struct {
    int idx;          /* into g_tests */
    pid_t pid;        /* 0 until started; also its process group */
    int out;          /* capture file (-1: output went straight to stdout) */
    int state;        /* 0 waiting, 1 running, 2 finished, 3 reported */
    int status;       /* waitpid status */
    int timed_out;
    const char *why;  /* set when it could not start */
    int err;
    double t0, dt;
    char tmp[4096];
} job;

static job *g_jobs;
static int g_njobs;
static double g_timeout = 300;   /* seconds; env WPT_TIMEOUT */

/* Ctrl-C or a kill of the runner takes every running test with it (each sits
 * in its own process group, out of the terminal's reach). */
static void on_signal(int sig)
{
    for (int i = 0; i < g_njobs; i++)
        if (g_jobs[i].state == 1 && g_jobs[i].pid > 0) kill(-g_jobs[i].pid, SIGKILL);
    signal(sig, SIG_DFL);
    raise(sig);
}

static int parse_count(const char *s, const char *what)
{
    char *end;
    errno = 0;
    long v = s ? strtol(s, &end, 10) : 0;
    if (!s || !*s || *end || errno || v < 1 || v > 4096) {
        fprintf(stderr, "wpack-tests: %s: expected a number from 1 to 4096, got \"%s\"\n", what, s ? s : "");
        exit(2);
    }
    return (int)v;
}

static void start(job *j, const char *base, int capture, const sigset_t *oldmask)
{
    const char *name = g_tests[j->idx].name;
    j->out = -1;
    snprintf(j->tmp, sizeof j->tmp, "%s/wpt-%d-%s-XXXXXX", base, (int)getpid(), name);
    if (!mkdtemp(j->tmp)) {
        j->tmp[0] = 0;
        j->state = 2;
        j->why = "cannot create scratch dir";
        j->err = errno;
        return;
    }
    if (capture) {
        char path[4096];
        snprintf(path, sizeof path, "%s/wpt-%d-out-XXXXXX", base, (int)getpid());
        j->out = mkostemp(path, O_APPEND | O_CLOEXEC);
        if (j->out >= 0) unlink(path);
    }
    memcpy(g_tmp, j->tmp, sizeof g_tmp);
    fflush(stdout);
    fflush(stderr);
    j->t0 = now();
    pid_t pid = fork();
    if (pid == 0) {
        setpgid(0, 0);
        sigprocmask(SIG_SETMASK, oldmask, NULL);
        signal(SIGINT, SIG_DFL);
        signal(SIGTERM, SIG_DFL);
        if (j->out >= 0) {
            int null = open("/dev/null", O_RDONLY);
            if (null >= 0) dup2(null, 0);
            dup2(j->out, 1);
            dup2(j->out, 2);
        }
        g_fail = 0;
        g_tests[j->idx].fn();
        fflush(stdout);
        _exit(g_fail ? 1 : 0);
    }
    if (pid < 0) {
        j->state = 2;
        j->why = "cannot fork";
        j->err = errno;
        if (j->out >= 0) close(j->out);
        j->out = -1;
        return;
    }
    setpgid(pid, pid);   /* both sides, so a kill(-pid) never misses */
    j->pid = pid;
    j->state = 1;
}

/* Prints a finished test's captured output whole, then its verdict line. */
static int report(job *j)
{
    const char *name = g_tests[j->idx].name;
    fflush(stdout);
    if (j->out >= 0) {
        char buf[65536];
        ssize_t k;
        off_t at = 0;
        while ((k = pread(j->out, buf, sizeof buf, at)) > 0) {
            fwrite(buf, 1, (size_t)k, stdout);
            at += k;
        }
        fflush(stdout);
        close(j->out);
        j->out = -1;
    }
    int ok = 0;
    if (j->why) {
        printf("FAIL %s: %s: %s\n", name, j->why, strerror(j->err));
    } else if (j->timed_out) {
        printf("FAIL %-48s %7.2fs (timed out: killed after %.0f s)\n", name, j->dt, g_timeout);
    } else if (WIFEXITED(j->status) && WEXITSTATUS(j->status) == 0) {
        printf("ok   %-48s %7.2fs\n", name, j->dt);
        ok = 1;
    } else if (WIFSIGNALED(j->status)) {
        printf("FAIL %-48s %7.2fs (crashed: signal %d)\n", name, j->dt, WTERMSIG(j->status));
    } else {
        printf("FAIL %-48s %7.2fs\n", name, j->dt);
    }
    if (j->tmp[0] && !getenv("WPT_KEEP")) nftw(j->tmp, rm_one, 16, FTW_DEPTH | FTW_PHYS);
    j->state = 3;
    return ok;
}

int main(int argc, char **argv)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    const char *base = getenv("TMPDIR");
    if (!base || !*base) base = "/tmp";
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    int jobs = ncpu > 0 ? (int)(ncpu < 4096 ? ncpu : 4096) : 1;
    const char *env = getenv("WPT_JOBS");
    if (env && *env) jobs = parse_count(env, "WPT_JOBS");
    env = getenv("WPT_TIMEOUT");
    if (env && *env) g_timeout = parse_count(env, "WPT_TIMEOUT");

    /* -j N / -jN / --jobs N; every other argument is a name filter */
    char **filters = calloc((size_t)argc + 1, sizeof *filters);
    int nfilters = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-j") || !strcmp(argv[i], "--jobs"))
            jobs = parse_count(i + 1 < argc ? argv[++i] : NULL, "-j");
        else if (!strncmp(argv[i], "-j", 2))
            jobs = parse_count(argv[i] + 2, "-j");
        else
            filters[nfilters++] = argv[i];
    }

    g_jobs = calloc((size_t)g_ntests + 1, sizeof *g_jobs);
    for (int i = 0; i < g_ntests; i++) {
        int sel = nfilters == 0;
        for (int f = 0; f < nfilters && !sel; f++) sel = strstr(g_tests[i].name, filters[f]) != NULL;
        if (sel) g_jobs[g_njobs++].idx = i;
    }
    /* Start order: in parallel, the exclusive tests first (each alone), then
     * the rest in registration order; -j 1 is plain registration order. */
    int *order = calloc((size_t)g_njobs + 1, sizeof *order), norder = 0;
    for (int pass = jobs > 1 ? 0 : 1; pass < 2; pass++)
        for (int i = 0; i < g_njobs; i++)
            if (jobs == 1 || g_tests[g_jobs[i].idx].exclusive == !pass) order[norder++] = i;

    /* whatever a test leaves behind is reparented here and reaped below */
    prctl(PR_SET_CHILD_SUBREAPER, 1);
    sigset_t chld, oldmask;
    sigemptyset(&chld);
    sigaddset(&chld, SIGCHLD);
    sigprocmask(SIG_BLOCK, &chld, &oldmask);
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);

    int passed = 0, failed = 0, running = 0, excl = 0, next = 0, shown = 0;
    double t_all = now();
    while (shown < g_njobs) {
        while (next < norder && running < jobs && !excl) {
            job *j = &g_jobs[order[next]];
            int x = jobs > 1 && g_tests[j->idx].exclusive;
            if (x && running) break;
            next++;
            start(j, base, jobs > 1, &oldmask);
            if (j->state == 1) {
                running++;
                excl = x;
            }
        }
        /* wait for a test to end, waking up to enforce the timeout */
        double wake = 1.0;
        for (int i = 0; i < g_njobs; i++)
            if (g_jobs[i].state == 1 && !g_jobs[i].timed_out) {
                double left = g_jobs[i].t0 + g_timeout - now();
                if (left < wake) wake = left > 0.01 ? left : 0.01;
            }
        if (running) {
            struct timespec ts = {(time_t)wake, (long)((wake - (double)(time_t)wake) * 1e9)};
            sigtimedwait(&chld, NULL, &ts);
        }
        int st;
        pid_t pid;
        while ((pid = waitpid(-1, &st, WNOHANG)) > 0)
            for (int i = 0; i < g_njobs; i++)
                if (g_jobs[i].state == 1 && g_jobs[i].pid == pid) {
                    job *j = &g_jobs[i];
                    j->dt = now() - j->t0;
                    j->status = st;
                    j->state = 2;
                    kill(-pid, SIGKILL);   /* anything the test left running */
                    running--;
                    if (g_tests[j->idx].exclusive) excl = 0;
                }
        for (int i = 0; i < g_njobs; i++) {
            job *j = &g_jobs[i];
            if (j->state == 1 && !j->timed_out && now() - j->t0 >= g_timeout) {
                j->timed_out = 1;
                kill(-j->pid, SIGKILL);
                kill(j->pid, SIGKILL);
            }
        }
        /* report, in registration order, everything finished so far */
        while (shown < g_njobs && g_jobs[shown].state >= 2) {
            if (report(&g_jobs[shown])) passed++;
            else failed++;
            shown++;
        }
    }
    printf("# %.1fs total\n", now() - t_all);
    printf("%d passed, %d failed\n", passed, failed);
    free(order);
    free(filters);
    return failed ? 1 : 0;
}

size_t wpt_resident(const char *path, uint64_t off, uint64_t n)
{
    int fd = open(path, O_RDONLY);
    if (fd < 0) return (size_t)-1;
    struct stat st;
    if (!n && fstat(fd, &st) == 0 && (uint64_t)st.st_size > off) n = (uint64_t)st.st_size - off;
    long pg = sysconf(_SC_PAGESIZE);
    uint64_t a = off / (uint64_t)pg * (uint64_t)pg;
    size_t len = (size_t)(off + n - a), np = (len + (size_t)pg - 1) / (size_t)pg, res = 0;
    void *m = len ? mmap(NULL, len, PROT_READ, MAP_SHARED, fd, (off_t)a) : MAP_FAILED;
    unsigned char *v = malloc(np + 1);
    if (m != MAP_FAILED && v && mincore(m, len, v) == 0)
        for (size_t i = 0; i < np; i++) res += v[i] & 1;
    else
        res = (size_t)-1;
    if (m != MAP_FAILED) munmap(m, len);
    free(v);
    close(fd);
    return res;
}

int wpt_direct_io(const char *dir)
{
    const char *p = wpt_path("%s/.direct-probe", dir);
    int fd = open(p, O_CREAT | O_WRONLY | O_DIRECT, 0644);
    int ok = 0;
    void *b = NULL;
    if (fd >= 0 && posix_memalign(&b, 4096, 4096) == 0) {
        memset(b, 0, 4096);
        ok = pwrite(fd, b, 4096, 0) == 4096;
    }
    free(b);
    if (fd >= 0) close(fd);
    unlink(p);
    return ok;
}

int wpt_cache_control(const char *dir, const char *skipped)
{
    const char *p = wpt_path("%s/.cache-probe", dir);
    int ok = 0;
    void *b = NULL;
    if (posix_memalign(&b, 4096, 16384) != 0) return 0;
    memset(b, 0x5a, 16384);
    /* a synced file can be dropped from the cache */
    int fd = open(p, O_CREAT | O_TRUNC | O_WRONLY, 0644);
    if (fd >= 0 && pwrite(fd, b, 16384, 0) == 16384 && fsync(fd) == 0 &&
        posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED) == 0)
        ok = wpt_resident(p, 0, 0) == 0;
    if (fd >= 0) close(fd);
    /* an O_DIRECT write leaves the cache alone */
    if (ok && wpt_direct_io(dir)) {
        ok = 0;
        fd = open(p, O_CREAT | O_TRUNC | O_WRONLY | O_DIRECT, 0644);
        if (fd >= 0 && pwrite(fd, b, 16384, 0) == 16384) ok = wpt_resident(p, 0, 0) == 0;
        if (fd >= 0) close(fd);
    }
    free(b);
    unlink(p);
    if (!ok) printf("note: the page cache under %s is not ours to steer (O_DIRECT refused, or tmpfs); %s\n", dir, skipped);
    return ok;
}
