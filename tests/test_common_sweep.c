/*
 * test_common_sweep.c — temporaries that clean themselves up (common/outdir.h,
 * "Temporaries" and "Sweeping"): names carry the owner's pid and start time,
 * a temporary whose owner is gone (dead, zombie, or a recycled pid) is
 * removed by the next command writing there and by `wpack clean`, one whose
 * owner runs is left alone, a kept output is never removed, an interrupted
 * replace's previous output is put back; signal cleanup holds while other
 * threads keep creating files.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "common/internal.h"
#include "common/outdir.h"
#include "tests/harness.h"

static int exists(const char *p)
{
    struct stat st;
    return lstat(p, &st) == 0;
}

static int put(const char *path, const char *text) { return wpt_write_file(path, text, strlen(text)); }

/* Field 22 of /proc/PID/stat, read here independently of the library. */
static unsigned long long start_of(long pid)
{
    char p[64], buf[1024];
    snprintf(p, sizeof p, "/proc/%ld/stat", pid);
    FILE *f = fopen(p, "r");
    if (!f) return 0;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    char *q = strrchr(buf, ')');
    unsigned long long v = 0;
    if (q) {
        int field = 2;
        for (char *tok = strtok(q + 1, " "); tok; tok = strtok(NULL, " "))
            if (++field == 22) {
                v = strtoull(tok, NULL, 10);
                break;
            }
    }
    return v;
}

/* A process that has come and gone: its pid and start time. */
static void dead_owner(long *pid, unsigned long long *start)
{
    int p[2];
    *pid = 0;
    *start = 0;
    if (pipe(p)) return;
    pid_t c = fork();
    if (c == 0) {
        const char *tag = wp_self_tag();
        ssize_t w = write(p[1], tag, strlen(tag) + 1);
        _exit(w > 0 ? 0 : 1);
    }
    char tag[64] = "";
    ssize_t r = read(p[0], tag, sizeof tag - 1);
    close(p[0]);
    close(p[1]);
    waitpid(c, NULL, 0);
    if (r > 0) sscanf(tag, "%ld-%llu", pid, start);
}

TEST(common_temp_names)
{
    wp_temp_name t;
    REQUIRE(wp_temp_parse(".out.tmp.123-456.AbC9xZ", &t) == 1);
    CHECK(t.kind == WP_TEMP_TMP && !strcmp(t.target, "out") && t.pid == 123 && t.start == 456);
    REQUIRE(wp_temp_parse(".model.wpk.tmp.1-0.abcdef", &t) == 1);
    CHECK(!strcmp(t.target, "model.wpk") && t.pid == 1 && t.start == 0);
    REQUIRE(wp_temp_parse(".a.b.old.77-9.QQQQQQ", &t) == 1);
    CHECK(t.kind == WP_TEMP_OLD && !strcmp(t.target, "a.b"));
    REQUIRE(wp_temp_parse(".x.kept.5-5.zzzzzz", &t) == 1);
    CHECK(t.kind == WP_TEMP_KEPT && !strcmp(t.target, "x"));
    REQUIRE(wp_temp_parse(".out.tmp.123.AbC9xZ", &t) == 1);   /* wpack 0.1: the pid alone */
    CHECK(t.pid == 123 && t.start == 0);
    static const char *const not[] = {
        ".out.tmp.XXXXXX", ".out.tmp.abc123",   /* wp_out of wpack 0.1: no owner */
        "out.tmp.1-2.abcdef", ".out.tmp.0-2.abcdef", ".out.tmp.1-2.abcde", ".out.tmp.1-2.abc_ef",
        ".out.bak.1-2.abcdef", "..tmp.1-2.abcdef", ".out.tmp.1-.abcdef", ".out.tmp.-1-2.abcdef",
        ".out.tmp.1-2x.abcdef", ".tmp.1-2.abcdef", ".hidden", ".", "..", "",
    };
    for (size_t i = 0; i < sizeof not / sizeof *not; i++) CHECKF(!wp_temp_parse(not[i], &t), "parsed %s", not[i]);
    /* this process's tag is its pid and its start time */
    char want[64];
    snprintf(want, sizeof want, "%ld-%llu", (long)getpid(), start_of((long)getpid()));
    CHECKF(!strcmp(wp_self_tag(), want), "tag %s, expected %s", wp_self_tag(), want);
    /* the names the library makes parse back to us */
    char *sib = wp_temp_sibling("some/dir/out", "tmp");
    REQUIRE(sib);
    CHECK(!strncmp(sib, wpt_path("some/dir/.out.tmp.%s.", want), strlen(wpt_path("some/dir/.out.tmp.%s.", want))));
    memcpy(sib + strlen(sib) - 6, "a1B2c3", 6);
    REQUIRE(wp_temp_parse(strrchr(sib, '/') + 1, &t) == 1);
    CHECK(t.pid == (long)getpid() && t.start == start_of((long)getpid()) && wp_temp_owner_alive(&t));
    free(sib);
    /* a very long NAME is cut so the temporary's name still fits */
    char longname[300];
    memset(longname, 'n', 250);
    longname[250] = 0;
    sib = wp_temp_sibling(longname, "tmp");
    REQUIRE(sib);
    CHECK(strlen(sib) < 256);
    free(sib);
    /* a forked child is another owner */
    long cpid;
    unsigned long long cstart;
    dead_owner(&cpid, &cstart);
    CHECK(cpid > 0 && cpid != (long)getpid() && cstart > 0);
}

TEST(common_temp_owner_gone_or_running)
{
    wp_temp_name t;
    memset(&t, 0, sizeof t);
    t.pid = (long)getpid();
    t.start = start_of(t.pid);
    CHECK(wp_temp_owner_alive(&t));
    t.start++;   /* the same pid, another start: a recycled pid, not the owner */
    CHECK(!wp_temp_owner_alive(&t));
    t.start = 0;   /* the pid alone: it runs */
    CHECK(wp_temp_owner_alive(&t));
    dead_owner(&t.pid, &t.start);
    REQUIRE(t.pid > 0);
    CHECK(!wp_temp_owner_alive(&t));
    t.start = 0;
    CHECK(!wp_temp_owner_alive(&t));
    /* a zombie writes nothing any more */
    pid_t z = fork();
    if (z == 0) _exit(0);
    REQUIRE(z > 0);
    for (int i = 0; i < 500; i++) {
        char p[64], buf[256] = "";
        snprintf(p, sizeof p, "/proc/%ld/stat", (long)z);
        FILE *f = fopen(p, "r");
        if (f) {
            if (!fgets(buf, sizeof buf, f)) buf[0] = 0;
            fclose(f);
        }
        char *q = strrchr(buf, ')');
        if (q && q[2] == 'Z') break;
        usleep(2000);
    }
    t.pid = (long)z;
    t.start = start_of(t.pid);
    CHECK(!wp_temp_owner_alive(&t));
    waitpid(z, NULL, 0);
}

typedef struct seen {
    char lines[32][300];
    int n;
} seen;

static void record(void *ud, const char *name, wp_sweep_action a, uint64_t bytes, const wp_temp_name *t)
{
    seen *s = ud;
    static const char *const what[] = {"removed", "restored", "kept", "busy", "failed"};
    if (s->n < 32) snprintf(s->lines[s->n++], 300, "%s %s %llu %s", what[a], name, (unsigned long long)bytes, t->target);
}

static int saw(const seen *s, const char *line)
{
    for (int i = 0; i < s->n; i++)
        if (!strcmp(s->lines[i], line)) return 1;
    return 0;
}

TEST(common_sweep_removes_only_what_is_stale)
{
    const char *t = wpt_tmpdir();
    char d[4096];
    snprintf(d, sizeof d, "%s/d", t);
    REQUIRE(mkdir(d, 0755) == 0);
    long dp;
    unsigned long long ds;
    dead_owner(&dp, &ds);
    REQUIRE(dp > 0);
    char dead[64], recycled[64];
    snprintf(dead, sizeof dead, "%ld-%llu", dp, ds);
    snprintf(recycled, sizeof recycled, "%ld-%llu", (long)getpid(), start_of((long)getpid()) + 7);
    /* a: a dead owner's tree, with a link to something outside */
    REQUIRE(mkdir(wpt_path("%s/.a.tmp.%s.AAAAAA", d, dead), 0755) == 0);
    REQUIRE(put(wpt_path("%s/.a.tmp.%s.AAAAAA/x", d, dead), "0123456789") == 0);
    REQUIRE(mkdir(wpt_path("%s/.a.tmp.%s.AAAAAA/sub", d, dead), 0755) == 0);
    REQUIRE(put(wpt_path("%s/.a.tmp.%s.AAAAAA/sub/y", d, dead), "01234567890123456789") == 0);
    REQUIRE(put(wpt_path("%s/precious", t), "p") == 0);
    REQUIRE(symlink(wpt_path("%s/precious", t), wpt_path("%s/.a.tmp.%s.AAAAAA/link", d, dead)) == 0);
    /* b: our pid with another start time: a recycled pid's file */
    REQUIRE(put(wpt_path("%s/.b.tmp.%s.BBBBBB", d, recycled), "12345") == 0);
    /* c: ours, running */
    REQUIRE(put(wpt_path("%s/.c.tmp.%s.CCCCCC", d, wp_self_tag()), "c") == 0);
    /* d: a kept output of a dead owner */
    REQUIRE(mkdir(wpt_path("%s/.dd.kept.%s.DDDDDD", d, dead), 0755) == 0);
    /* e: an interrupted replace's previous output, e absent: put back */
    REQUIRE(mkdir(wpt_path("%s/.e.old.%s.EEEEEE", d, dead), 0755) == 0);
    REQUIRE(put(wpt_path("%s/.e.old.%s.EEEEEE/manifest.json", d, dead), "old") == 0);
    /* f: the same with f present: the replace finished, remove */
    REQUIRE(mkdir(wpt_path("%s/.f.old.%s.FFFFFF", d, dead), 0755) == 0);
    REQUIRE(mkdir(wpt_path("%s/f", d), 0755) == 0);
    /* g: wpack 0.1's name, dead pid */
    REQUIRE(put(wpt_path("%s/.g.tmp.%ld.GGGGGG", d, dp), "gg") == 0);
    /* not ours to judge */
    REQUIRE(put(wpt_path("%s/.h.tmp.XXXXXX", d), "h") == 0);
    REQUIRE(put(wpt_path("%s/.hidden", d), "h") == 0);
    REQUIRE(put(wpt_path("%s/visible.tmp.%s.abcdef", d, dead), "v") == 0);

    wp_err e = {0};
    wp_reclaim r;
    seen s = {0};
    REQUIRE(wp_sweep(d, 1, record, &s, &r, &e) == 0);   /* dry run: nothing changes */
    CHECK_EQ_INT(r.entries, 4);
    CHECK_EQ_INT(r.bytes, 10 + 20 + 5 + 2);
    CHECK(exists(wpt_path("%s/.a.tmp.%s.AAAAAA/x", d, dead)) && !exists(wpt_path("%s/e", d)));
    CHECK_EQ_INT(s.n, 7);
    s.n = 0;
    REQUIRE(wp_sweep(d, 0, record, &s, &r, &e) == 0);
    CHECK_EQ_INT(r.entries, 4);
    CHECK_EQ_INT(r.bytes, 37);
    CHECK(saw(&s, wpt_path("removed .a.tmp.%s.AAAAAA 30 a", dead)));
    CHECK(saw(&s, wpt_path("removed .b.tmp.%s.BBBBBB 5 b", recycled)));
    CHECK(saw(&s, wpt_path("busy .c.tmp.%s.CCCCCC 1 c", wp_self_tag())));
    CHECK(saw(&s, wpt_path("kept .dd.kept.%s.DDDDDD 0 dd", dead)));
    CHECK(saw(&s, wpt_path("restored .e.old.%s.EEEEEE 3 e", dead)));
    CHECK(saw(&s, wpt_path("removed .f.old.%s.FFFFFF 0 f", dead)));
    CHECK(saw(&s, wpt_path("removed .g.tmp.%ld.GGGGGG 2 g", dp)));
    char want[4096];
    snprintf(want, sizeof want, ".c.tmp.%s.CCCCCC .dd.kept.%s.DDDDDD .h.tmp.XXXXXX .hidden ", wp_self_tag(), dead);
    char got[4096];
    REQUIRE(wpt_run(got, sizeof got, "cd %s && ls -A | grep '^\\.' | tr '\\n' ' '", d) == 0);
    CHECKF(!strcmp(got, want), "left %s, expected %s", got, want);
    CHECK(exists(wpt_path("%s/e/manifest.json", d)) && exists(wpt_path("%s/f", d)));
    CHECK(exists(wpt_path("%s/visible.tmp.%s.abcdef", d, dead)));
    CHECK(exists(wpt_path("%s/precious", t)));   /* the link was removed, not followed */
    /* again: nothing more to do */
    REQUIRE(wp_sweep(d, 0, NULL, NULL, &r, &e) == 0);
    CHECK_EQ_INT(r.entries, 0);
    /* a directory that cannot be listed */
    wp_err_clear(&e);
    CHECK_EQ_INT(wp_sweep(wpt_path("%s/none", t), 0, NULL, NULL, &r, &e), WP_EIO);
    CHECK_CONTAINS(e.msg, "none: cannot list: No such file or directory");
}

static char g_notes[8][1024];
static int g_nnotes;
static void note(void *ud, const char *line)
{
    (void)ud;
    if (g_nnotes < 8) snprintf(g_notes[g_nnotes++], sizeof g_notes[0], "%s", line);
}

/* wp_outdir_begin and wp_out_create sweep the target's directory first:
 * what they removed is in their result and in one notice. */
TEST(common_writers_sweep_first_and_say_so)
{
    const char *t = wpt_tmpdir();
    long dp;
    unsigned long long ds;
    dead_owner(&dp, &ds);
    REQUIRE(dp > 0);
    wp_set_notice_fn(note, NULL);
    REQUIRE(put(wpt_path("%s/.x.tmp.%ld-%llu.AAAAAA", t, dp, ds), "0123456789") == 0);
    wp_outdir d;
    wp_err e = {0};
    REQUIRE(wp_outdir_begin(&d, wpt_path("%s/out", t), NULL, &e) == 0);
    CHECK_EQ_INT(d.reclaimed.entries, 1);
    CHECK_EQ_INT(d.reclaimed.bytes, 10);
    REQUIRE(g_nnotes == 1);
    CHECK(!strcmp(g_notes[0], wpt_path("removed 1 stale temporary (10 B) from %s, left by wpack runs that are gone", t)));
    wp_outdir_abort(&d);
    REQUIRE(mkdir(wpt_path("%s/.y.tmp.%ld-%llu.BBBBBB", t, dp, ds), 0755) == 0);
    REQUIRE(put(wpt_path("%s/.y.tmp.%ld-%llu.BBBBBB/f", t, dp, ds), "abc") == 0);
    REQUIRE(put(wpt_path("%s/.z.tmp.%ld-%llu.CCCCCC", t, dp, ds), "") == 0);
    wp_out o;
    REQUIRE(wp_out_create(&o, wpt_path("%s/file", t), 0, &e) == 0);
    CHECK_EQ_INT(o.reclaimed.entries, 2);
    CHECK_EQ_INT(o.reclaimed.bytes, 3);
    REQUIRE(g_nnotes == 2);
    CHECK(!strcmp(g_notes[1], wpt_path("removed 2 stale temporaries (3 B) from %s, left by wpack runs that are gone", t)));
    wp_out_abort(&o);
    /* an interrupted replace (no renameat2) left out aside: begin puts it
     * back first, and then judges it as what is there */
    REQUIRE(mkdir(wpt_path("%s/.out.old.%ld-%llu.DDDDDD", t, dp, ds), 0755) == 0);
    REQUIRE(put(wpt_path("%s/.out.old.%ld-%llu.DDDDDD/manifest.json", t, dp, ds), "old") == 0);
    wp_err_clear(&e);
    CHECK_EQ_INT(wp_outdir_begin(&d, wpt_path("%s/out", t), &(wp_outdir_opts){.kind = WP_OUTDIR_BUILD}, &e), WP_EEXIST);
    CHECK(!strcmp(e.msg, wpt_path("%s/out: already exists; not replaced", t)));
    CHECK(exists(wpt_path("%s/out/manifest.json", t)));
    REQUIRE(g_nnotes == 3);
    CHECK(!strcmp(g_notes[2], wpt_path("%s/out: put back from .out.old.%ld-%llu.DDDDDD, where an interrupted replace "
                                       "(process %ld) had moved it", t, dp, ds, dp)));
    CHECK(!strcmp(wpt_hidden_names(t), ""));
    wp_set_notice_fn(NULL, NULL);
}

/* The signal handler removes a temporary tree while other threads keep
 * creating files in it (as convert's finishing threads and unpack do): the
 * process dies of the signal and nothing is left, every time. */
static volatile int g_go;
static const char *g_tmp;
static void *creator(void *arg)
{
    long id = (long)arg;
    for (long i = 0; g_go; i++) {
        wp_out o;
        wp_err e = {0};
        if (wp_out_open(&o, wpt_path("%s/f%ld-%ld", g_tmp, id, i), &e)) continue;
        if (wp_out_write(&o, "data", 4, &e) || wp_out_commit(&o, &e)) wp_out_abort(&o);
    }
    return NULL;
}

TEST(common_signal_cleanup_while_threads_create_files)
{
    const char *t = wpt_tmpdir();
    for (int round = 0; round < 20; round++) {
        int p[2];
        REQUIRE(pipe(p) == 0);
        pid_t pid = fork();
        REQUIRE(pid >= 0);
        if (pid == 0) {
            close(p[0]);
            wp_cleanup_on_signals();
            wp_outdir d;
            wp_err e = {0};
            if (wp_outdir_begin(&d, wpt_path("%s/out", t), NULL, &e)) _exit(3);
            g_tmp = wp_outdir_tmp(&d);
            g_go = 1;
            pthread_t th[4];
            for (long i = 0; i < 4; i++) pthread_create(&th[i], NULL, creator, (void *)i);
            usleep(2000);
            if (write(p[1], "r", 1) != 1) _exit(4);
            for (;;) pause();
        }
        close(p[1]);
        char c;
        CHECK(read(p[0], &c, 1) == 1);
        close(p[0]);
        usleep((useconds_t)(round * 300));
        kill(pid, round % 2 ? SIGTERM : SIGINT);
        int status = 0;
        REQUIRE(waitpid(pid, &status, 0) == pid);
        CHECKF(WIFSIGNALED(status) && (WTERMSIG(status) == SIGTERM || WTERMSIG(status) == SIGINT), "status 0x%x",
               status);
        CHECKF(!strcmp(wpt_hidden_names(t), ""), "round %d left: %s", round, wpt_hidden_names(t));
        if (strcmp(wpt_hidden_names(t), "")) break;
    }
}

/* ---- wpack clean ------------------------------------------------------------------ */

/* The wpack binary by an absolute path (the tests cd). */
static const char *wpack_abs(void)
{
    static char p[4096];
    if (!p[0]) {
        char cwd[2048];
        const char *w = wpt_wpack();
        if (w[0] == '/' || !getcwd(cwd, sizeof cwd)) snprintf(p, sizeof p, "%s", w);
        else snprintf(p, sizeof p, "%s/%s", cwd, w);
    }
    return p;
}

TEST(common_clean_command)
{
    const char *t = wpt_tmpdir();
    char out[16384];
    long dp;
    unsigned long long ds;
    dead_owner(&dp, &ds);
    REQUIRE(dp > 0);
    REQUIRE(mkdir(wpt_path("%s/w", t), 0755) == 0);
    REQUIRE(mkdir(wpt_path("%s/w/.b.tmp.%ld-%llu.AAAAAA", t, dp, ds), 0755) == 0);
    REQUIRE(put(wpt_path("%s/w/.b.tmp.%ld-%llu.AAAAAA/model.wpk", t, dp, ds), "0123456789") == 0);
    REQUIRE(mkdir(wpt_path("%s/w/.c.kept.%ld-%llu.BBBBBB", t, dp, ds), 0755) == 0);
    REQUIRE(put(wpt_path("%s/w/.keepme", t), "mine") == 0);
    /* --dry-run lists and changes nothing */
    CHECK_EQ_INT(wpt_run(out, sizeof out, "cd %s && %s clean w --dry-run", t, wpack_abs()), 0);
    CHECK_CONTAINS(out, wpt_path("would remove w/.b.tmp.%ld-%llu.AAAAAA (10 B; process %ld is gone)\n", dp, ds, dp));
    CHECK_CONTAINS(out, wpt_path("left w/.c.kept.%ld-%llu.BBBBBB (0 B): finished output kept because its name was taken", dp, ds));
    CHECK_CONTAINS(out, "w: would remove 1 stale temporary, 10 B\n");
    CHECK(exists(wpt_path("%s/w/.b.tmp.%ld-%llu.AAAAAA/model.wpk", t, dp, ds)));
    /* --json: one document */
    CHECK_EQ_INT(wpt_run(out, sizeof out, "cd %s && %s clean w --dry-run --json", t, wpack_abs()), 0);
    cJSON *j = cJSON_Parse(out);
    REQUIRE(j);
    CHECK(cJSON_IsTrue(cJSON_GetObjectItem(j, "ok")) && cJSON_IsTrue(cJSON_GetObjectItem(j, "dry_run")));
    CHECK_EQ_INT(cJSON_GetNumberValue(cJSON_GetObjectItem(j, "entries")), 1);
    CHECK_EQ_INT(cJSON_GetNumberValue(cJSON_GetObjectItem(j, "bytes")), 10);
    cJSON *rm = cJSON_GetArrayItem(cJSON_GetObjectItem(j, "removed"), 0);
    const char *nm = cJSON_GetStringValue(cJSON_GetObjectItem(rm, "name"));
    CHECK(nm && !strcmp(nm, wpt_path(".b.tmp.%ld-%llu.AAAAAA", dp, ds)));
    CHECK_EQ_INT(cJSON_GetArraySize(cJSON_GetObjectItem(j, "kept")), 1);
    cJSON_Delete(j);
    /* for real */
    CHECK_EQ_INT(wpt_run(out, sizeof out, "cd %s && %s clean w", t, wpack_abs()), 0);
    CHECK_CONTAINS(out, wpt_path("removed w/.b.tmp.%ld-%llu.AAAAAA (10 B; process %ld is gone)\n", dp, ds, dp));
    CHECK_CONTAINS(out, "w: removed 1 stale temporary, 10 B\n");
    CHECK(!exists(wpt_path("%s/w/.b.tmp.%ld-%llu.AAAAAA", t, dp, ds)));
    CHECK(exists(wpt_path("%s/w/.c.kept.%ld-%llu.BBBBBB", t, dp, ds)) && exists(wpt_path("%s/w/.keepme", t)));
    CHECK_EQ_INT(wpt_run(out, sizeof out, "cd %s && %s clean w", t, wpack_abs()), 0);
    CHECK_CONTAINS(out, "w: no stale temporaries\n");
    /* a directory that is not there: one line, exit 2 */
    CHECK_EQ_INT(wpt_run(out, sizeof out, "cd %s && %s clean nowhere", t, wpack_abs()), 2);
    CHECK(!strcmp(out, "wpack clean: nowhere: cannot list: No such file or directory\n"));
}

/* A convert killed mid-run leaves its temporary; the next convert in that
 * directory removes it and says so (not with -q). */
TEST(common_next_run_reclaims_and_says_so)
{
    const char *t = wpt_tmpdir();
    const char *w = wpt_wpack();
    char out[16384];
    CHECK_EQ_INT(wpt_run(out, sizeof out, "cd %s && WPACK_FAULT=fsync:1:kill %s convert %s/%s/hf -o a "
                         "--profile reference", t, wpack_abs(), getcwd((char[2048]){0}, 2048), WPT_TINY), 137);
    CHECK(strstr(wpt_hidden_names(t), ".a.tmp.") != NULL);
    CHECK(!exists(wpt_path("%s/a", t)));
    CHECK_EQ_INT(wpt_run(out, sizeof out, "%s convert %s/hf -o %s/b --profile reference", w, WPT_TINY, t), 0);
    CHECK_CONTAINS(out, wpt_path("wpack convert: removed 1 stale temporary ("));
    CHECK_CONTAINS(out, wpt_path(") from %s, left by wpack runs that are gone\n", t));
    CHECK(!strcmp(wpt_hidden_names(t), ""));
    /* -q: the same work, nothing said */
    CHECK_EQ_INT(wpt_run(out, sizeof out, "cd %s && WPACK_FAULT=fsync:1:kill %s pack b -o b.wpkz", t, wpack_abs()), 137);
    CHECK(strstr(wpt_hidden_names(t), ".b.wpkz.tmp.") != NULL);
    CHECK_EQ_INT(wpt_run(out, sizeof out, "%s pack %s/b -o %s/c.wpkz -q 2>&1 >/dev/null", w, t, t), 0);
    CHECK(!strcmp(out, ""));
    CHECK(!strcmp(wpt_hidden_names(t), ""));
}

/* A keygen killed while writing the private key leaves its temporary (a
 * secret, mode 0600); the next keygen there removes it. */
TEST(common_keygen_sweeps_a_killed_keygen)
{
    const char *t = wpt_tmpdir();
    char out[8192];
    CHECK_EQ_INT(wpt_run(out, sizeof out, "cd %s && WPACK_FAULT=write:1:kill %s keygen -o k", t, wpack_abs()), 137);
    const char *left = wpt_hidden_names(t);
    CHECKF(!strncmp(left, ".k.pem.tmp.", 11), "left: %s", left);
    struct stat st;
    char name[512];
    snprintf(name, sizeof name, "%s", left);
    *strchr(name, ' ') = 0;
    CHECK(stat(wpt_path("%s/%s", t, name), &st) == 0 && (st.st_mode & 0777) == 0600);
    CHECK_EQ_INT(wpt_run(out, sizeof out, "cd %s && %s keygen -o k2", t, wpack_abs()), 0);
    CHECK_CONTAINS(out, "wpack keygen: removed 1 stale temporary (0 B) from ., left by wpack runs that are gone\n");
    CHECK(!strcmp(wpt_hidden_names(t), ""));
}
