/*
 * test_common_crash.c — crash tests for the output code (issue 10): every
 * step of convert, merge, pack, unpack and sign on tiny-a is made to fail, or the
 * process is killed (SIGKILL) or interrupted (SIGTERM) right before it,
 * through the WPACK_FAULT hook (common/fault.c, docs/architecture.md
 * "Output").  After each case the output path holds the old complete thing
 * or the new complete thing (wpack verify says which), a failed or
 * interrupted run leaves no temporary behind, and after a kill the next run
 * succeeds and leaves none either.
 *
 * The steps of a run are learnt from a first run with WPACK_FAULT_LOG: every
 * create, fsync, rename and remove is driven, and of the writes the first
 * and the last into each file (every write between them leaves the same
 * state: a partial temporary file).  WPT_CRASH_TABLE=1 prints one line per
 * case (the table of the report).
 *
 * Also here: the races (a directory appearing at the output path while
 * convert runs, two converts to one output, `convert & cp -r signed OUT`),
 * and --force over something that is not a build.
 */
#include <cjson/cJSON.h>
#include <dirent.h>
#include <stdarg.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tests/harness.h"

#define TINY_HF WPT_TINY "/hf"

static int exists(const char *p)
{
    struct stat st;
    return lstat(p, &st) == 0;
}

/* Run a shell line in the test's directory; its exit status. */
static int sh(char *out, size_t cap, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int sh(char *out, size_t cap, const char *fmt, ...)
{
    char line[32768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    static char dummy[65536];
    if (!out) {
        out = dummy;
        cap = sizeof dummy;
    }
    return wpt_run(out, cap, "cd %s || exit 99; %s", wpt_tmpdir(), line);
}

static const char *W(void)
{
    static char abs_[4096];
    if (!abs_[0]) {
        char cwd[4096];
        if (!getcwd(cwd, sizeof cwd)) cwd[0] = 0;
        const char *w = wpt_wpack();
        snprintf(abs_, sizeof abs_, "%s%s%s", w[0] == '/' ? "" : cwd, w[0] == '/' ? "" : "/", w);
    }
    return abs_;
}

static const char *HF(void)
{
    static char abs_[4096];
    if (!abs_[0]) {
        char cwd[4096];
        if (!getcwd(cwd, sizeof cwd)) cwd[0] = 0;
        snprintf(abs_, sizeof abs_, "%s/%s", cwd, TINY_HF);
    }
    return abs_;
}

/* The fixtures, in the test's directory: OLD (reference profile) and NEW
 * (bf16) builds, their .wpkz, keys ka and kb, and SA: NEW signed by ka with
 * a bundle. */
static int fixtures(int packs, int keys)
{
    char out[4096];
    int rc = sh(out, sizeof out,
                "%s convert %s -o OLD --profile reference -q && %s convert %s -o NEW --profile blackwell -q", W(), HF(),
                W(), HF());
    if (!rc && packs) rc = sh(out, sizeof out, "%s pack OLD -o OLD.wpkz -l 1 -q && %s pack NEW -o NEW.wpkz -l 1 -q", W(), W());
    if (!rc && keys)
        rc = sh(out, sizeof out,
                "%s keygen -o ka -q && %s keygen -o kb --json | sed -n 's/.*\"keyid\":[^\"]*\"\\([0-9a-f]*\\)\".*/\\1/p' "
                "> kb.id && cp -a NEW SA && %s sign SA -k ka.pem --dsse -q && test -s kb.id", W(), W(), W());
    CHECKF(rc == 0, "fixtures: %s", out);
    return rc;
}

typedef enum { K_DIR, K_FILE, K_SIG } out_kind;

typedef struct scen {
    const char *name;
    out_kind kind;
    int fresh;                /* nothing at the output before the run */
    const char *extra;        /* appended to WPACK_FAULT (",norenameat2") */
    char setup[1024];         /* shell: the state before the run, under w/ */
    char cmd[12288];          /* the run (from the test directory) */
    char rerun[12288];        /* the same run, replacing what is there */
    const char *out;          /* the output path */
} scen;

typedef struct step {
    int n;
    char op[16];
    char path[512];
} step;

/* The steps of a clean run: all but the writes, and of the writes the
 * first and the last into each file. */
static int learn_steps(const scen *s, step *st, int max)
{
    char out[4096];
    int rc = sh(out, sizeof out, "%s && rm -f steps.log && WPACK_FAULT_LOG=$PWD/steps.log %s%s", s->setup,
                s->extra[0] ? "WPACK_FAULT=norenameat2 " : "", s->cmd);
    CHECKF(rc == 0, "%s: the clean run: %s", s->name, out);
    if (rc) return 0;
    uint8_t *log;
    size_t len;
    if (wpt_read_file(wpt_path("%s/steps.log", wpt_tmpdir()), &log, &len)) return 0;
    step all[4096];
    int na = 0;
    for (char *line = strtok((char *)log, "\n"); line && na < 4096; line = strtok(NULL, "\n")) {
        step x;
        memset(&x, 0, sizeof x);
        if (sscanf(line, "%d %15s %511s", &x.n, x.op, x.path) >= 2) all[na++] = x;
    }
    free(log);
    int n = 0;
    for (int i = 0; i < na && n < max; i++) {
        if (!strcmp(all[i].op, "write")) {
            int first = 1, last = 1;
            for (int k = 0; k < na; k++) {
                if (strcmp(all[k].op, "write") || strcmp(all[k].path, all[i].path)) continue;
                if (k < i) first = 0;
                if (k > i) last = 0;
            }
            if (!first && !last) continue;
        }
        st[n++] = all[i];
    }
    return n;
}

/* What is at the output now: "old", "new", "none", or "BROKEN ..." */
static const char *outcome(const scen *s)
{
    static char res[512];
    char out[65536];
    const char *t = wpt_tmpdir();
    if (!exists(wpt_path("%s/%s", t, s->out))) return "none";
    if (s->kind == K_FILE) {
        if (sh(NULL, 0, "cmp -s %s OLD.wpkz", s->out) == 0) return "old";
        if (sh(NULL, 0, "cmp -s %s NEW.wpkz", s->out) == 0) return "new";
        return "BROKEN (neither .wpkz)";
    }
    if (s->kind == K_DIR) {
        if (sh(out, sizeof out, "%s verify %s --allow-unsigned -q", W(), s->out) != 0) {
            snprintf(res, sizeof res, "BROKEN (verify: %.400s)", out);
            return res;
        }
        if (sh(NULL, 0, "cmp -s %s/manifest.json OLD/manifest.json", s->out) == 0) return "old";
        if (sh(NULL, 0, "cmp -s %s/manifest.json NEW/manifest.json", s->out) == 0) return "new";
        return "BROKEN (another manifest)";
    }
    /* a signed build: which key verifies it, and is its bundle there */
    const char *who = NULL;
    /* manifest.sig names its key: check with that one first */
    int b_first = sh(NULL, 0, "grep -q $(cat kb.id) %s/manifest.sig", s->out) == 0;
    for (int k = 0; k < 2 && !who; k++) {
        int b = (k == 0) == b_first;
        if (sh(out, sizeof out, "%s verify %s --key %s.pub.pem --json 2>/dev/null", W(), s->out, b ? "kb" : "ka") == 0)
            who = b ? "new" : "old";
    }
    if (!who) {
        snprintf(res, sizeof res, "BROKEN (verifies with neither key: %.400s)", out);
        return res;
    }
    cJSON *j = cJSON_Parse(out);
    int dsse = cJSON_IsTrue(cJSON_GetObjectItem(cJSON_GetObjectItem(j, "dsse"), "verified"));
    cJSON_Delete(j);
    snprintf(res, sizeof res, "%s%s", who, dsse ? "" : " (no bundle)");
    return res;
}

typedef struct tally {
    int cases, old, new_, none, lost, left, rerun_bad;
} tally;

static void drive(scen *s)
{
    const char *t = wpt_tmpdir();
    step st[256];
    int n = learn_steps(s, st, 256);
    REQUIRE(n > 0);
    int table = getenv("WPT_CRASH_TABLE") != NULL;
    static const char *const actions[] = {"fail", "kill", "term"};
    tally ty = {0};
    char out[65536];
    for (int i = 0; i < n; i++) {
        for (int a = 0; a < 3; a++) {
            const char *act = actions[a];
            ty.cases++;
            int rc = sh(out, sizeof out, "%s && WPACK_FAULT=any:%d:%s%s %s >run.out 2>&1; echo $?", s->setup, st[i].n,
                        act, s->extra, s->cmd);
            rc = atoi(out);
            char *msg = NULL;
            size_t ml = 0;
            wpt_read_file(wpt_path("%s/run.out", t), (uint8_t **)&msg, &ml);
            char said[4096] = "", first[300] = "";
            if (msg) {
                snprintf(said, sizeof said, "%.*s", (int)ml, msg);
                free(msg);
            }
            snprintf(first, sizeof first, "%s", said);
            char *nl = strchr(first, '\n');
            if (nl) *nl = 0;
            /* the exit status: a failure is exit 2 (or 0 where the step is
             * best-effort: a directory fsync, removing the replaced tree),
             * a kill SIGKILL, an interruption dies of SIGTERM */
            if (a == 0) CHECKF(rc == 0 || rc == 2, "%s step %d %s fail: exit %d: %s", s->name, st[i].n, st[i].op, rc, first);
            if (a == 1) CHECKF(rc == 137, "%s step %d %s kill: exit %d", s->name, st[i].n, st[i].op, rc);
            if (a == 2) CHECKF(rc == 143, "%s step %d %s term: exit %d: %s", s->name, st[i].n, st[i].op, rc, first);
            if (a == 0 && rc == 2) CHECKF(strstr(said, "wpack ") && strstr(said, "Input/output error"),
                                          "%s step %d: the failure is not said: %s", s->name, st[i].n, said);
            char res[600];
            snprintf(res, sizeof res, "%s", outcome(s));
            char extra_note[200] = "";
            /* a replace killed between its two renames (no renameat2): the
             * next sweep puts the old output back */
            if (!strcmp(res, "none") && !s->fresh) {
                CHECKF(a == 1 && s->extra[0], "%s step %d %s %s: the output is gone", s->name, st[i].n, st[i].op, act);
                sh(NULL, 0, "%s clean w -q", W());
                snprintf(extra_note, sizeof extra_note, " -> after clean: %s", outcome(s));
                CHECKF(!strcmp(outcome(s), "old"), "%s step %d: clean did not put the old output back", s->name, st[i].n);
            }
            int ok = !strncmp(res, "old", 3) || !strncmp(res, "new", 3) || (!strcmp(res, "none") && (s->fresh || extra_note[0]));
            if (!ok) ty.lost++;
            CHECKF(ok, "%s step %d %s %s (%s): %s", s->name, st[i].n, st[i].op, act, st[i].path, res);
            if (rc == 0) CHECKF(!strncmp(res, "new", 3), "%s step %d: exit 0 but %s", s->name, st[i].n, res);
            if (rc == 2 && s->kind != K_SIG) CHECKF(!strcmp(res, s->fresh ? "none" : "old"), "%s step %d: failed but %s", s->name, st[i].n, res);
            /* a sign that fails before its manifest.sig is in place puts the
             * old bundle back: all of the old signature, or the new key's */
            if (rc == 2 && s->kind == K_SIG)
                CHECKF(!strcmp(res, "old") || !strcmp(res, "new (no bundle)"), "%s step %d: failed and left %s", s->name,
                       st[i].n, res);
            if (!strncmp(res, "old", 3) || !strcmp(res, "none")) ty.old++;
            else ty.new_++;
            /* what is left: nothing after a failure or an interruption */
            char left[4096];
            snprintf(left, sizeof left, "%s", wpt_hidden_names(wpt_path("%s/w", t)));
            if (s->kind != K_FILE && exists(wpt_path("%s/%s", t, s->out)))
                snprintf(left + strlen(left), sizeof left - strlen(left), "%s", wpt_hidden_names(wpt_path("%s/%s", t, s->out)));
            /* a failure or an interruption leaves nothing, except a replaced
             * output that could not be removed once the new one was in place:
             * the run says so, and the next run removes it */
            if (a != 1 && left[0]) {
                char name[256];
                snprintf(name, sizeof name, "%s", left);
                if (strchr(name, ' ')) *strchr(name, ' ') = 0;
                CHECKF(a == 0 && !strcmp(st[i].op, "remove") && strstr(said, name) && strstr(said, "could not be removed"),
                       "%s step %d %s %s left: %s (%s)", s->name, st[i].n, st[i].op, act, left, said);
            }
            if (left[0]) ty.left++;
            /* after a kill: a temporary left in a build is reported by verify */
            if (a == 1 && s->kind == K_SIG && strstr(left, ".manifest.")) {
                sh(out, sizeof out, "%s verify %s --key kb.pub.pem; %s verify %s --key ka.pub.pem", W(), s->out, W(), s->out);
                CHECKF(strstr(out, "not part of the build") != NULL, "%s step %d: verify did not report %s: %s", s->name,
                       st[i].n, left, out);
            }
            /* the next run succeeds and leaves nothing behind */
            const char *again = "-";
            if (a == 1 || left[0]) {
                int rr = sh(out, sizeof out, "%s", s->rerun);
                const char *after = outcome(s);
                int clean = !wpt_hidden_names(wpt_path("%s/w", t))[0] &&
                            (s->kind == K_FILE || !wpt_hidden_names(wpt_path("%s/%s", t, s->out))[0]);
                again = rr == 0 && !strcmp(after, "new") && clean ? "ok" : "BAD";
                if (strcmp(again, "ok")) ty.rerun_bad++;
                CHECKF(!strcmp(again, "ok"), "%s step %d kill: rerun exit %d, %s, left %s: %s", s->name, st[i].n, rr,
                       after, wpt_hidden_names(wpt_path("%s/w", t)), out);
                if (left[0] && !strstr(left, ".kept."))
                    CHECKF(strstr(out, "stale temporar") || strstr(out, "put back"), "%s step %d: rerun said nothing "
                           "of what it removed: %s", s->name, st[i].n, out);
            }
            if (table)
                printf("| %s | %d %s %s | %s | exit %d | %s%s | %s | %s |\n", s->name, st[i].n, st[i].op, st[i].path, act,
                       rc, res, extra_note, left[0] ? "temporaries" : "none", again);
        }
    }
    printf("    %s: %d steps x 3 (fail, kill, term) = %d cases: old %d, new %d, lost/unverifiable %d, temporaries "
           "left %d (all removed by the next run: %s)\n",
           s->name, n, ty.cases, ty.old, ty.new_, ty.lost, ty.left, ty.rerun_bad ? "NO" : "yes");
}

TEST(common_crash_convert_replace)
{
    REQUIRE(fixtures(0, 0) == 0);
    scen s = {.name = "convert -f", .kind = K_DIR, .extra = "", .out = "w/out"};
    snprintf(s.setup, sizeof s.setup, "rm -rf w && mkdir w && cp -al OLD w/out");
    snprintf(s.cmd, sizeof s.cmd, "%s convert %s -o w/out -f --profile blackwell", W(), HF());
    snprintf(s.rerun, sizeof s.rerun, "%s convert %s -o w/out -f --profile blackwell", W(), HF());
    drive(&s);
}

TEST(common_crash_convert_new)
{
    REQUIRE(fixtures(0, 0) == 0);
    /* the .wpk written around the page cache (O_DIRECT from a writer thread,
     * format/wpk_write.c), which a file this small is not by default: its
     * first and last O_DIRECT writes fail, kill and stop it too */
    scen s = {.name = "convert (O_DIRECT)", .kind = K_DIR, .fresh = 1, .extra = "", .out = "w/out"};
    snprintf(s.setup, sizeof s.setup, "rm -rf w && mkdir w");
    snprintf(s.cmd, sizeof s.cmd, "WPACK_DIRECT_OUT=1 %s convert %s -o w/out --profile blackwell", W(), HF());
    snprintf(s.rerun, sizeof s.rerun, "%s convert %s -o w/out -f --profile blackwell", W(), HF());
    drive(&s);
}

TEST(common_crash_convert_replace_without_renameat2)
{
    REQUIRE(fixtures(0, 0) == 0);
    scen s = {.name = "convert -f (no renameat2)", .kind = K_DIR, .extra = ",norenameat2", .out = "w/out"};
    snprintf(s.setup, sizeof s.setup, "rm -rf w && mkdir w && cp -al OLD w/out");
    snprintf(s.cmd, sizeof s.cmd, "%s convert %s -o w/out -f --profile blackwell", W(), HF());
    snprintf(s.rerun, sizeof s.rerun, "WPACK_FAULT=norenameat2 %s convert %s -o w/out -f --profile blackwell", W(), HF());
    drive(&s);
}

/* merge (docs/distributed.md): over an old build, the parts of a 2-rank
 * blackwell convert; NEW is the single-machine build they must give. */
TEST(common_crash_merge)
{
    REQUIRE(fixtures(0, 0) == 0);
    char out[4096];
    int rc = sh(out, sizeof out,
                "rm -rf NEW && %s convert %s -o NEW --profile blackwell --ep 2 -q && %s convert %s -o P0 --profile "
                "blackwell --ep 2 --rank 0 -q && %s convert %s -o P1 --profile blackwell --ep 2 --rank 1 -q && "
                "sha256sum P0/* P1/* > parts.sum",
                W(), HF(), W(), HF(), W(), HF());
    REQUIRE(rc == 0);
    scen s = {.name = "merge -f", .kind = K_DIR, .extra = "", .out = "w/out"};
    snprintf(s.setup, sizeof s.setup, "rm -rf w && mkdir w && cp -al OLD w/out");
    snprintf(s.cmd, sizeof s.cmd, "%s merge P1 P0 -o w/out -f", W());
    snprintf(s.rerun, sizeof s.rerun, "%s merge P0 P1 -o w/out -f", W());
    drive(&s);
    /* whatever happened to the merges, the parts are as they were */
    CHECK(sh(out, sizeof out, "sha256sum -c --quiet parts.sum") == 0);
}

TEST(common_crash_pack)
{
    REQUIRE(fixtures(1, 0) == 0);
    scen s = {.name = "pack -f", .kind = K_FILE, .extra = "", .out = "w/out.wpkz"};
    snprintf(s.setup, sizeof s.setup, "rm -rf w && mkdir w && cp OLD.wpkz w/out.wpkz");
    snprintf(s.cmd, sizeof s.cmd, "%s pack NEW -o w/out.wpkz -l 1 -f", W());
    snprintf(s.rerun, sizeof s.rerun, "%s pack NEW -o w/out.wpkz -l 1 -f", W());
    drive(&s);
}

TEST(common_crash_unpack)
{
    REQUIRE(fixtures(1, 0) == 0);
    scen s = {.name = "unpack -f", .kind = K_DIR, .extra = "", .out = "w/out"};
    snprintf(s.setup, sizeof s.setup, "rm -rf w && mkdir w && cp -al OLD w/out");
    snprintf(s.cmd, sizeof s.cmd, "%s unpack NEW.wpkz -o w/out -f", W());
    snprintf(s.rerun, sizeof s.rerun, "%s unpack NEW.wpkz -o w/out -f", W());
    drive(&s);
}

TEST(common_crash_sign)
{
    REQUIRE(fixtures(0, 1) == 0);
    scen s = {.name = "sign --dsse", .kind = K_SIG, .extra = "", .out = "w/sb"};
    snprintf(s.setup, sizeof s.setup, "rm -rf w && mkdir w && cp -al SA w/sb");
    snprintf(s.cmd, sizeof s.cmd, "%s sign w/sb -k kb.pem --dsse --no-check", W());
    snprintf(s.rerun, sizeof s.rerun, "%s sign w/sb -k kb.pem --dsse --no-check", W());
    drive(&s);
}

TEST(common_crash_sign_dropping_the_bundle)
{
    REQUIRE(fixtures(0, 1) == 0);
    scen s = {.name = "sign (no --dsse)", .kind = K_SIG, .extra = "", .out = "w/sb"};
    snprintf(s.setup, sizeof s.setup, "rm -rf w && mkdir w && cp -al SA w/sb");
    snprintf(s.cmd, sizeof s.cmd, "%s sign w/sb -k kb.pem --no-check", W());
    snprintf(s.rerun, sizeof s.rerun, "%s sign w/sb -k kb.pem --dsse --no-check", W());
    drive(&s);
}

/* ---- races ---------------------------------------------------------------------
 * A convert is stopped (SIGSTOP through WPACK_FAULT's "stop") right before it
 * claims its output name; the test changes what is there, then lets it go. */

/* The number of the rename that claims `out` in a clean run of `cmd`. */
static int claim_rename(const char *cmd, const char *out)
{
    char buf[4096];
    int rc = sh(buf, sizeof buf, "rm -f claim.log && WPACK_FAULT_LOG=$PWD/claim.log %s >/dev/null 2>&1 && "
                "grep -n '' claim.log | grep ' rename ' | cat", cmd);
    if (rc) return 0;
    int n = 0;
    for (char *line = strtok(buf, "\n"); line; line = strtok(NULL, "\n")) {
        n++;
        const char *p = strstr(line, " rename ");
        if (p && !strcmp(p + 8, out)) return n;
    }
    return 0;
}

/* Start `cmd` stopped at rename number `n` in the background: the shell
 * snippet that does it, leaving its pid in $p1 / $p2 (`var`). */
static const char *stopped(const char *var, int n, const char *cmd, const char *log)
{
    static char s[2][32768];
    static int k;
    char *b = s[k++ % 2];
    snprintf(b, sizeof s[0],
             "(WPACK_FAULT=rename:%d:stop exec %s) >%s 2>&1 & %s=$!; i=0; "
             "while [ $i -lt 3000 ] && [ \"$(cut -d' ' -f3 /proc/$%s/stat 2>/dev/null)\" != T ]; do sleep 0.01; i=$((i+1)); done",
             n, cmd, log, var, var);
    return b;
}

static const char *slurp(const char *path)
{
    static char buf[8192];
    uint8_t *d;
    size_t n;
    buf[0] = 0;
    if (wpt_read_file(path, &d, &n) == 0) {
        snprintf(buf, sizeof buf, "%.*s", (int)n, (const char *)d);
        free(d);
    }
    return buf;
}

/* The single .out.kept.* entry of w/ ("" if none or several). */
static const char *kept_in_w(void)
{
    static char name[512];
    name[0] = 0;
    int n = 0;
    DIR *d = opendir(wpt_path("%s/w", wpt_tmpdir()));
    struct dirent *de;
    while (d && (de = readdir(d)))
        if (strstr(de->d_name, ".kept.")) {
            snprintf(name, sizeof name, "%s", de->d_name);
            n++;
        }
    if (d) closedir(d);
    if (n != 1) name[0] = 0;
    return name;
}

/* A directory appears at OUT while convert writes: it is kept as it is, the
 * finished build is left as .OUT.kept.*, named in the one-line message,
 * and is itself a complete build. */
TEST(common_race_directory_appears_during_convert)
{
    REQUIRE(fixtures(0, 0) == 0);
    char cmd[12288], out[16384];
    REQUIRE(sh(out, sizeof out, "mkdir -p w") == 0);
    snprintf(cmd, sizeof cmd, "%s convert %s -o w/out --profile blackwell", W(), HF());
    int n = claim_rename(cmd, "w/out");
    REQUIRE(n > 0);
    REQUIRE(sh(out, sizeof out, "rm -rf w && mkdir w") == 0);
    sh(out, sizeof out, "%s; mkdir w/out && echo theirs > w/out/theirs; kill -CONT $p1; wait $p1; echo rc=$?",
       stopped("p1", n, cmd, "a.out"));
    CHECK_CONTAINS(out, "rc=2");
    const char *msg = slurp(wpt_path("%s/a.out", wpt_tmpdir()));
    const char *kept = kept_in_w();
    REQUIRE(kept[0]);
    CHECK_CONTAINS(msg, "wpack convert: w/out: appeared while the output was being written; not replaced; the "
                        "finished output is kept in w/");
    CHECK_CONTAINS(msg, kept);
    CHECK_CONTAINS(msg, "(see -f/--force)");
    CHECK(!strcmp(slurp(wpt_path("%s/w/out/theirs", wpt_tmpdir())), "theirs\n"));
    CHECK_EQ_INT(sh(out, sizeof out, "ls -A w/out"), 0);
    CHECK(!strcmp(out, "theirs\n"));
    CHECK_EQ_INT(sh(out, sizeof out, "%s verify w/%s --allow-unsigned && cmp w/%s/manifest.json NEW/manifest.json",
                    W(), kept, kept), 0);
    /* nothing else is left, and no sweep takes the kept build */
    CHECKF(!strcmp(wpt_hidden_names(wpt_path("%s/w", wpt_tmpdir())), wpt_path("%s ", kept)), "left: %s", wpt_hidden_names(wpt_path("%s/w", wpt_tmpdir())));
    CHECK_EQ_INT(sh(out, sizeof out, "%s clean w", W()), 0);
    CHECK_CONTAINS(out, "finished output kept because its name was taken");
    CHECK(exists(wpt_path("%s/w/%s/manifest.json", wpt_tmpdir(), kept)));
}

/* Two converts to the same OUT at once: the first to claim wins, the other
 * fails with the "appeared" message and keeps its finished work as
 * .OUT.kept.* (it does not remove it: the message names it). */
TEST(common_race_two_converts_to_one_output)
{
    REQUIRE(fixtures(0, 0) == 0);
    char c1[12288], c2[12288], out[32768];
    REQUIRE(sh(out, sizeof out, "mkdir -p w") == 0);
    snprintf(c1, sizeof c1, "%s convert %s -o w/out --profile reference", W(), HF());
    snprintf(c2, sizeof c2, "%s convert %s -o w/out --profile blackwell", W(), HF());
    int n1 = claim_rename(c1, "w/out");
    REQUIRE(sh(out, sizeof out, "rm -rf w && mkdir w") == 0);
    int n2 = claim_rename(c2, "w/out");
    REQUIRE(n1 > 0 && n2 > 0);
    REQUIRE(sh(out, sizeof out, "rm -rf w && mkdir w") == 0);
    char script[40000];
    snprintf(script, sizeof script, "%s; %s; kill -CONT $p1; wait $p1; echo rc1=$?; kill -CONT $p2; wait $p2; echo rc2=$?",
             stopped("p1", n1, c1, "a.out"), stopped("p2", n2, c2, "b.out"));
    sh(out, sizeof out, "%s", script);
    CHECK_CONTAINS(out, "rc1=0");
    CHECK_CONTAINS(out, "rc2=2");
    CHECK_EQ_INT(sh(out, sizeof out, "%s verify w/out --allow-unsigned && cmp w/out/manifest.json OLD/manifest.json",
                    W()), 0);
    const char *msg = slurp(wpt_path("%s/b.out", wpt_tmpdir()));
    const char *kept = kept_in_w();
    REQUIRE(kept[0]);
    CHECK_CONTAINS(msg, "w/out: appeared while the output was being written; not replaced; the finished output is kept in");
    CHECK_CONTAINS(msg, kept);
    CHECK_EQ_INT(sh(out, sizeof out, "cmp w/%s/manifest.json NEW/manifest.json", kept), 0);
    CHECKF(!strcmp(wpt_hidden_names(wpt_path("%s/w", wpt_tmpdir())), wpt_path("%s ", kept)), "left: %s", wpt_hidden_names(wpt_path("%s/w", wpt_tmpdir())));
}

/* `convert -o OUT & cp -r signed-build OUT`: the signed build that lands
 * first is kept, and still verifies with its key. */
TEST(common_race_copied_signed_build_is_kept)
{
    REQUIRE(fixtures(0, 1) == 0);
    char cmd[12288], out[16384];
    REQUIRE(sh(out, sizeof out, "mkdir -p w") == 0);
    snprintf(cmd, sizeof cmd, "%s convert %s -o w/out --profile reference", W(), HF());
    int n = claim_rename(cmd, "w/out");
    REQUIRE(n > 0);
    REQUIRE(sh(out, sizeof out, "rm -rf w && mkdir w") == 0);
    sh(out, sizeof out, "%s; cp -r SA w/out; kill -CONT $p1; wait $p1; echo rc=$?", stopped("p1", n, cmd, "a.out"));
    CHECK_CONTAINS(out, "rc=2");
    CHECK_CONTAINS(slurp(wpt_path("%s/a.out", wpt_tmpdir())), "w/out: appeared while the output was being written");
    CHECK_EQ_INT(sh(out, sizeof out, "%s verify w/out --key ka.pub.pem", W()), 0);
    CHECK_EQ_INT(sh(out, sizeof out, "diff -r SA w/out"), 0);
}

/* --force over something that is not a build: refused with one line, its
 * contents intact, nothing orphaned; and the same when such a directory
 * appears while a forced convert runs. */
TEST(common_force_refuses_what_is_not_a_build)
{
    REQUIRE(fixtures(0, 0) == 0);
    char out[16384], cmd[12288];
    REQUIRE(sh(out, sizeof out, "rm -rf w && mkdir -p w/v/sub && echo x > w/v/a") == 0);
    CHECK_EQ_INT(sh(out, sizeof out, "%s convert %s -o w/v -f --profile reference", W(), HF()), 2);
    CHECK(!strcmp(out, "wpack convert: w/v: exists and is not a build directory (no manifest.json or .wpk in it); "
                       "not replaced\n"));
    CHECK_EQ_INT(sh(out, sizeof out, "cd w && find . | sort"), 0);
    CHECK(!strcmp(out, ".\n./v\n./v/a\n./v/sub\n"));
    CHECK(!strcmp(slurp(wpt_path("%s/w/v/a", wpt_tmpdir())), "x\n"));
    /* the same directory appears while a forced convert writes */
    REQUIRE(sh(out, sizeof out, "rm -rf w && mkdir w") == 0);
    snprintf(cmd, sizeof cmd, "%s convert %s -o w/v -f --profile reference", W(), HF());
    int n = claim_rename(cmd, "w/v");
    REQUIRE(n > 0);
    REQUIRE(sh(out, sizeof out, "rm -rf w && mkdir w") == 0);
    sh(out, sizeof out, "%s; mkdir -p w/v/sub && echo x > w/v/a; kill -CONT $p1; wait $p1; echo rc=$?",
       stopped("p1", n, cmd, "a.out"));
    CHECK_CONTAINS(out, "rc=2");
    CHECK_CONTAINS(slurp(wpt_path("%s/a.out", wpt_tmpdir())),
                   "w/v: exists and is not a build directory (no manifest.json or .wpk in it); not replaced (it "
                   "appeared while the output was being written); the finished output is kept in w/.v.kept.");
    CHECK_EQ_INT(sh(out, sizeof out, "cd w/v && find . | sort"), 0);
    CHECK(!strcmp(out, ".\n./a\n./sub\n"));
    CHECK(strstr(wpt_hidden_names(wpt_path("%s/w", wpt_tmpdir())), ".v.kept.") && !strstr(wpt_hidden_names(wpt_path("%s/w", wpt_tmpdir())), ".tmp."));
}
