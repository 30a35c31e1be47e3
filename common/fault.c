/*
 * fault.c — fault injection for the crash tests (see wp.h, "Fault
 * injection").  A test facility: with WPACK_FAULT unset every step costs one
 * load of an int that is set once.
 *
 *   WPACK_FAULT=OP:N[:ACTION][,norenameat2]
 *       OP      create | write | fsync | rename | remove | any
 *       N       the Nth step of that kind in this process (from 1)
 *       ACTION  fail (default: the step fails with EIO, nothing done),
 *               kill (SIGKILL), term / int / hup (the signal: cleanup runs),
 *               stop (SIGSTOP, for race tests; the step runs once continued)
 *       norenameat2  behave as if renameat2 were missing (the fallbacks)
 *       nolink       behave as if every wp_link crossed filesystems (EXDEV)
 *   WPACK_FAULT_LOG=FILE   append "N OP PATH" for every step (N counts all
 *       steps), so a test can learn the steps of a run before driving them.
 */
#include "common/wp.h"
#include "common/internal.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char *const g_names[WP_STEP_COUNT] = {"create", "write", "fsync", "rename", "remove"};

static pthread_once_t g_once = PTHREAD_ONCE_INIT;
static int g_on;              /* a spec or a log is set: count steps */
static int g_op = -1;         /* the step kind to act on; WP_STEP_COUNT = any */
static unsigned long g_n;     /* ... at its Nth occurrence */
static int g_action;          /* 0 fail, else the signal to raise */
static int g_log = -1;
static unsigned long g_count[WP_STEP_COUNT + 1];
static int g_no_link;

const char *wp_step_name(wp_step op) { return (unsigned)op < WP_STEP_COUNT ? g_names[op] : "any"; }

/* Parse one spec; 0 or -1 (then nothing is set). */
static int parse(const char *spec)
{
    char buf[128];
    snprintf(buf, sizeof buf, "%s", spec);
    for (char *tok = strtok(buf, ","); tok; tok = strtok(NULL, ",")) {
        if (!strcmp(tok, "norenameat2")) {
            wp_no_renameat2 = 1;
            continue;
        }
        if (!strcmp(tok, "nolink")) {
            g_no_link = 1;
            continue;
        }
        char *c1 = strchr(tok, ':');
        if (!c1) return -1;
        *c1 = 0;
        int op = -1;
        for (int i = 0; i < WP_STEP_COUNT; i++)
            if (!strcmp(tok, g_names[i])) op = i;
        if (!strcmp(tok, "any")) op = WP_STEP_COUNT;
        char *end;
        unsigned long n = strtoul(c1 + 1, &end, 10);
        if (op < 0 || !n || (*end && *end != ':')) return -1;
        int action = 0;
        if (*end == ':') {
            const char *a = end + 1;
            if (!strcmp(a, "fail")) action = 0;
            else if (!strcmp(a, "kill")) action = SIGKILL;
            else if (!strcmp(a, "term")) action = SIGTERM;
            else if (!strcmp(a, "int")) action = SIGINT;
            else if (!strcmp(a, "hup")) action = SIGHUP;
            else if (!strcmp(a, "stop")) action = SIGSTOP;
            else return -1;
        }
        g_op = op;
        g_n = n;
        g_action = action;
    }
    return 0;
}

static void init(void)
{
    const char *spec = getenv("WPACK_FAULT"), *log = getenv("WPACK_FAULT_LOG");
    if (spec && *spec && parse(spec) == 0 && g_op >= 0) g_on = 1;
    if (log && *log) {
        g_log = open(log, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
        if (g_log >= 0) g_on = 1;
    }
}

void wp_fault_set(const char *spec)
{
    pthread_once(&g_once, init);
    g_op = -1;
    g_on = 0;
    wp_no_renameat2 = 0;
    g_no_link = 0;
    memset(g_count, 0, sizeof g_count);
    if (spec && parse(spec) == 0 && g_op >= 0) g_on = 1;
    if (g_log >= 0) g_on = 1;
}

int wp_fault(wp_step op, const char *path)
{
    pthread_once(&g_once, init);
    if (!__atomic_load_n(&g_on, __ATOMIC_RELAXED)) return 0;
    unsigned long all = __atomic_add_fetch(&g_count[WP_STEP_COUNT], 1, __ATOMIC_SEQ_CST);
    unsigned long mine = __atomic_add_fetch(&g_count[op], 1, __ATOMIC_SEQ_CST);
    if (g_log >= 0) {
        char line[4200];
        int n = snprintf(line, sizeof line, "%lu %s %s\n", all, g_names[op], path ? path : "");
        if (n > 0 && write(g_log, line, (size_t)(n < (int)sizeof line ? n : (int)sizeof line - 1)) < 0) {
        }
    }
    int hit = g_op == WP_STEP_COUNT ? all == g_n : (g_op == (int)op && mine == g_n);
    if (!hit) return 0;
    if (!g_action) {
        errno = EIO;
        return -1;
    }
    raise(g_action);
    return 0;   /* SIGTERM, ... with a handler that returns (convert's), SIGSTOP once continued */
}

int wp_link(const char *from, const char *to)
{
    pthread_once(&g_once, init);
    if (g_no_link) {
        errno = EXDEV;
        return -1;
    }
    return link(from, to);
}
