/*
 * test_cli_conventions.c — the command-line conventions every command shares
 * (cli/opt.h, docs/cli.md): help with exit codes, one JSON document on
 * success and on failure, one wording for usage errors, -f/--force on every
 * command that writes, -V, the man page and completion generated from the
 * same tables, and a progress bar that fits the terminal.
 */
#include <cjson/cJSON.h>
#include <unistd.h>

#include "tests/harness.h"

static const char *const commands[] = {
    "inspect", "plan", "convert", "quant", "synth", "keygen", "sign",
    "verify", "verify-source", "pack", "unpack", "run", "parity", "golden", "export", "clean", "merge",
};
#define NCMD (sizeof commands / sizeof *commands)
/* the ones that write an output, hence take -f/--force */
static int writes(const char *c)
{
    static const char *const w[] = {"convert", "quant", "synth", "keygen", "pack", "unpack", "export", "golden", "merge"};
    for (size_t i = 0; i < sizeof w / sizeof *w; i++)
        if (!strcmp(c, w[i])) return 1;
    return 0;
}

static int count_lines(const char *s)
{
    int n = 0;
    for (; *s; s++) n += *s == '\n';
    return n;
}

TEST(cli_help_lists_every_command)
{
    static char out[16384];
    REQUIRE(wpt_run(out, sizeof out, "%s help", wpt_wpack()) == 0);
    for (size_t i = 0; i < NCMD; i++) {
        char line[64];
        snprintf(line, sizeof line, "\n  %s ", commands[i]);
        CHECK_CONTAINS(out, line);
    }
    /* and no command the test does not know about: each listed line is one of them */
    int listed = 0;
    for (const char *p = strstr(out, "commands:\n"); p && (p = strstr(p, "\n  ")); p += 3) {
        if (p[3] == ' ') continue;
        listed++;
    }
    CHECK_EQ_INT(listed, (int)NCMD);
}

TEST(cli_every_help_states_exit_codes_and_common_options)
{
    static char out[32768], again[32768];
    for (size_t i = 0; i < NCMD; i++) {
        const char *c = commands[i];
        int rc = wpt_run(out, sizeof out, "%s %s --help 2>/dev/null", wpt_wpack(), c);
        CHECKF(rc == 0, "%s --help: exit %d", c, rc);
        CHECKF(!strncmp(out, "usage: wpack ", 13), "%s --help starts: %.40s", c, out);
        CHECK_CONTAINS(out, "exit status:\n  0  success\n");
        CHECK_CONTAINS(out, "\n  2  bad usage");
        CHECK_CONTAINS(out, "--json");
        CHECK_CONTAINS(out, "-q, --quiet");
        CHECK_CONTAINS(out, "--no-progress");
        CHECK_CONTAINS(out, "-h, --help");
        CHECKF(!!strstr(out, "-f, --force") == writes(c), "%s: -f/--force listed %d, writes %d", c,
               !!strstr(out, "-f, --force"), writes(c));
        /* `wpack help CMD` is the same text */
        rc = wpt_run(again, sizeof again, "%s help %s 2>/dev/null", wpt_wpack(), c);
        CHECKF(rc == 0 && !strcmp(out, again), "wpack help %s differs from wpack %s --help", c, c);
    }
}

TEST(cli_unknown_option_one_wording)
{
    static char out[4096];
    for (size_t i = 0; i < NCMD; i++) {
        const char *c = commands[i];
        int rc = wpt_run(out, sizeof out, "%s %s --no-such-option x 2>&1 >/dev/null", wpt_wpack(), c);
        CHECKF(rc == 2, "%s: exit %d", c, rc);
        char want[256];
        snprintf(want, sizeof want, "wpack %s: unknown option '--no-such-option' (try 'wpack %s --help')\n", c, c);
        CHECKF(!strcmp(out, want), "%s said: %s", c, out);
        rc = wpt_run(out, sizeof out, "%s %s -Z 2>&1 >/dev/null", wpt_wpack(), c);
        snprintf(want, sizeof want, "wpack %s: unknown option '-Z' (try 'wpack %s --help')\n", c, c);
        CHECKF(rc == 2 && !strcmp(out, want), "%s -Z said: %s", c, out);
    }
}

/* A missing input, with --json: exactly one JSON document on stdout saying
 * ok false, the error and the exit code; one line on stderr; exit 2. */
TEST(cli_json_failure_document_for_every_command)
{
    const char *d = wpt_tmpdir();
    struct { const char *c, *args; } cases[] = {
        {"inspect", "%s/none"},
        {"plan", "%s/none"},
        {"convert", "%s/none -o %s/out"},
        {"quant", "%s/none"},
        {"synth", "--preset tiny -o %s/none/deeper"},
        {"keygen", "-o %s/none/key"},
        {"sign", "%s/none --key %s/none.pem"},
        {"verify", "%s/none"},
        {"verify-source", "%s/none --digests %s/none.json"},
        {"pack", "%s/none -o %s/x.wpkz"},
        {"unpack", "%s/none.wpkz -o %s/out"},
        {"run", "%s/none --tokens 1"},
        {"parity", "%s/none --golden %s/g.safetensors"},
        {"golden", "%s/none --prompts %s/none.txt -o /dev/null/g.safetensors"},
        {"export", "%s/none -o %s/out"},
        {"clean", "%s/none"},
        {"merge", "%s/none -o %s/out"},
    };
    static char out[65536], err[8192];
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char args[1024];
        snprintf(args, sizeof args, cases[i].args, d, d);
        int rc = wpt_run(out, sizeof out, "%s %s %s --json 2>%s/err", wpt_wpack(), cases[i].c, args, d);
        CHECKF(rc == 2, "%s: exit %d", cases[i].c, rc);
        const char *end = NULL;
        cJSON *j = cJSON_ParseWithOpts(out, &end, 0);
        CHECKF(j != NULL, "%s: stdout is not JSON: %s", cases[i].c, out);
        if (!j) continue;
        while (end && (*end == '\n' || *end == ' ')) end++;
        CHECKF(end && !*end, "%s: more than one document on stdout: %s", cases[i].c, out);
        CHECKF(cJSON_IsFalse(cJSON_GetObjectItem(j, "ok")), "%s: ok is not false", cases[i].c);
        cJSON *x = cJSON_GetObjectItem(j, "exit"), *e = cJSON_GetObjectItem(j, "error");
        CHECKF(cJSON_IsNumber(x) && x->valueint == 2, "%s: exit field", cases[i].c);
        CHECKF(cJSON_IsString(e) && strstr(e->valuestring, "none"), "%s: error field names the input", cases[i].c);
        cJSON_Delete(j);
        REQUIRE(wpt_run(err, sizeof err, "cat %s/err", d) == 0);
        CHECKF(count_lines(err) == 1, "%s: stderr: %s", cases[i].c, err);
    }
    /* a usage error is a JSON document too */
    int rc = wpt_run(out, sizeof out, "%s verify --json --bogus 2>/dev/null", wpt_wpack());
    CHECK_EQ_INT(rc, 2);
    cJSON *j = cJSON_Parse(out);
    REQUIRE(j);
    CHECK(cJSON_IsFalse(cJSON_GetObjectItem(j, "ok")));
    CHECK_CONTAINS(cJSON_GetObjectItem(j, "error")->valuestring, "unknown option '--bogus'");
    cJSON_Delete(j);
    /* and so is an unknown command */
    rc = wpt_run(out, sizeof out, "%s frobnicate --json 2>/dev/null", wpt_wpack());
    CHECK_EQ_INT(rc, 2);
    j = cJSON_Parse(out);
    REQUIRE(j);
    CHECK(cJSON_IsFalse(cJSON_GetObjectItem(j, "ok")));
    cJSON_Delete(j);
}

TEST(cli_json_success_document)
{
    static char out[1 << 20];
    int rc = wpt_run(out, sizeof out, "%s inspect %s/hf --json 2>/dev/null", wpt_wpack(), WPT_TINY);
    CHECK_EQ_INT(rc, 0);
    cJSON *j = cJSON_Parse(out);
    REQUIRE(j);
    CHECK(cJSON_IsTrue(cJSON_GetObjectItem(j, "ok")));
    CHECK_EQ_INT(cJSON_GetObjectItem(j, "exit")->valueint, 0);
    CHECK(!cJSON_GetObjectItem(j, "error"));
    cJSON_Delete(j);
}

TEST(cli_version_names_the_libraries)
{
    char out[1024], again[1024];
    REQUIRE(wpt_run(out, sizeof out, "%s -V", wpt_wpack()) == 0);
    CHECK(!strncmp(out, "wpack ", 6));
    CHECK_CONTAINS(out, "libzstd 1.");
    CHECK_CONTAINS(out, "OpenSSL 3.");
    CHECK_CONTAINS(out, "cJSON 1.");
    REQUIRE(wpt_run(again, sizeof again, "%s --version", wpt_wpack()) == 0);
    CHECK(!strcmp(out, again));
}

/* Options are parsed the same way everywhere: --opt=value, -xVALUE, "--"
 * ending the options, clustered short flags. */
TEST(cli_option_syntax)
{
    static char out[65536];
    const char *d = wpt_tmpdir();
    REQUIRE(wpt_run(out, sizeof out, "%s keygen -qo%s/k1", wpt_wpack(), d) == 0);
    CHECK(access(wpt_path("%s/k1.pem", d), F_OK) == 0);
    REQUIRE(wpt_run(out, sizeof out, "%s keygen --output=%s/k2", wpt_wpack(), d) == 0);
    CHECK(access(wpt_path("%s/k2.pub.pem", d), F_OK) == 0);
    CHECK_EQ_INT(wpt_run(out, sizeof out, "%s keygen --output 2>&1", wpt_wpack()), 2);
    CHECK_CONTAINS(out, "option '--output' needs an argument (NAME)");
    CHECK_EQ_INT(wpt_run(out, sizeof out, "%s verify --deep=yes x 2>&1", wpt_wpack()), 2);
    CHECK_CONTAINS(out, "option '--deep' takes no argument");
    CHECK_EQ_INT(wpt_run(out, sizeof out, "%s verify a b 2>&1", wpt_wpack()), 2);
    CHECK_CONTAINS(out, "unexpected argument 'b'");
    CHECK_EQ_INT(wpt_run(out, sizeof out, "%s verify 2>&1", wpt_wpack()), 2);
    CHECK_CONTAINS(out, "wpack verify: missing BUILD (try 'wpack verify --help')");
    /* after "--" a leading dash is an operand: here a path that does not exist */
    CHECK_EQ_INT(wpt_run(out, sizeof out, "%s inspect -- -weird 2>&1", wpt_wpack()), 2);
    CHECK_CONTAINS(out, "-weird");
    CHECK(!strstr(out, "unknown option"));
    /* a choice outside the list names the list */
    CHECK_EQ_INT(wpt_run(out, sizeof out, "%s run x --tokens 1 --precision fp16 2>&1", wpt_wpack()), 2);
    CHECK_CONTAINS(out, "'fp16' is not one of: fp32 bf16");
}

/* The man page and the completion come from the same tables as --help: every
 * option --help lists is in both. */
TEST(cli_man_and_completion_match_help)
{
    const char *d = wpt_tmpdir();
    static char out[65536], help[32768];
    REQUIRE(wpt_run(out, sizeof out, "%s help --man > %s/wpack.1 && %s help --completion bash > %s/wpack.bash",
                    wpt_wpack(), d, wpt_wpack(), d) == 0);
    uint8_t *man, *comp;
    size_t mlen, clen;
    REQUIRE(wpt_read_file(wpt_path("%s/wpack.1", d), &man, &mlen) == 0);
    REQUIRE(wpt_read_file(wpt_path("%s/wpack.bash", d), &comp, &clen) == 0);
    CHECK(!strncmp((char *)man, ".\\\"", 3));
    CHECK_CONTAINS((char *)man, ".TH WPACK 1");
    for (size_t i = 0; i < NCMD; i++) {
        char want[128];
        snprintf(want, sizeof want, ".SS wpack %s\n", commands[i]);
        CHECK_CONTAINS((char *)man, want);
        snprintf(want, sizeof want, "    %s)\n", commands[i]);
        CHECK_CONTAINS((char *)comp, want);
        REQUIRE(wpt_run(help, sizeof help, "%s %s --help", wpt_wpack(), commands[i]) == 0);
        /* each "--name" in the options section */
        for (const char *p = strstr(help, "\noptions:\n"); p && (p = strstr(p, "--")); p += 2) {
            if (p[-1] != ' ') continue;
            char name[64];
            size_t n = 0;
            while (n + 1 < sizeof name && (p[2 + n] == '-' || (p[2 + n] >= 'a' && p[2 + n] <= 'z') ||
                                           (p[2 + n] >= '0' && p[2 + n] <= '9')))
                n++;
            if (!n) continue;
            memcpy(name, p + 2, n);
            name[n] = 0;
            char roff[160], bash[160];
            snprintf(roff, sizeof roff, "\\fB\\-\\-");
            size_t k = strlen(roff);
            for (size_t c = 0; c < n && k + 3 < sizeof roff; c++) {
                if (name[c] == '-') roff[k++] = '\\';
                roff[k++] = name[c];
            }
            roff[k] = 0;
            CHECKF(strstr((char *)man, roff) != NULL, "man page lacks --%s (%s)", name, commands[i]);
            snprintf(bash, sizeof bash, "--%s ", name);
            CHECKF(strstr((char *)comp, bash) != NULL, "completion lacks --%s (%s)", name, commands[i]);
        }
    }
    free(man);
    free(comp);
    /* the completion is valid bash; the man page renders */
    CHECK_EQ_INT(wpt_run(out, sizeof out, "bash -n %s/wpack.bash", d), 0);
    if (wpt_run(out, sizeof out, "command -v man") == 0) {
        CHECK_EQ_INT(wpt_run(out, sizeof out, "MANPAGER=cat MANWIDTH=80 man -l %s/wpack.1 2>&1", d), 0);
        CHECK_CONTAINS(out, "wpack verify");
        CHECK(!strstr(out, "warning"));
    }
}

/* The bar on a terminal 70 (and 40) columns wide: every redraw starts with
 * "\r\033[K" and is shorter than the terminal, so nothing wraps; ETA in h/m/s;
 * nothing with -q or --no-progress, or when stderr is not a terminal. */
static void check_bar(int cols, const char *flags, int expect_bar)
{
    const char *d = wpt_tmpdir();
    static char out[65536];
    static int run;
    char cmd[2048];
    snprintf(cmd, sizeof cmd,
             "script -qfec 'stty cols %d; %s convert %s/hf -o %s/b%d --profile bf16 --threads 1 %s' /dev/null",
             cols, wpt_wpack(), WPT_TINY, d, run++, flags);
    int rc = wpt_run(out, sizeof out, "%s", cmd);
    CHECKF(rc == 0, "%s: exit %d: %s", cmd, rc, out);
    int bars = 0;
    for (char *p = out; (p = strstr(p, "\r\033[K"));) {
        p += 4;
        char *q = p;
        while (*q && *q != '\r' && *q != '\n') q++;
        size_t len = (size_t)(q - p);
        if (len && memchr(p, '[', len) && strstr(p, "%") && strstr(p, "%") < q) {
            bars++;
            CHECKF((int)len < cols, "a %zu-character bar on %d columns: %.*s", len, cols, (int)len, p);
            char *eta = strstr(p, "ETA ");
            if (eta && eta < q) CHECKF(eta[4] >= '0' && eta[4] <= '9', "ETA: %.*s", (int)(q - eta), eta);
        }
    }
    if (expect_bar) CHECKF(bars > 0, "no bar at %d columns: %s", cols, out);
    else CHECKF(bars == 0 && !strstr(out, "\r\033[K"), "a bar with '%s': %s", flags, out);
}

TEST(cli_progress_bar_fits_the_terminal)
{
    char out[256];
    if (wpt_run(out, sizeof out, "command -v script >/dev/null") != 0) {
        printf("    (util-linux script missing: progress bar not checked)\n");
        return;
    }
    check_bar(70, "", 1);
    check_bar(40, "", 1);
    check_bar(70, "-q", 0);
    check_bar(70, "--no-progress", 0);
    /* stderr not a terminal: no bar, no carriage returns */
    static char plain[8192];
    int rc = wpt_run(plain, sizeof plain, "%s convert %s/hf -o %s/plain --profile bf16 2>&1", wpt_wpack(), WPT_TINY,
                     wpt_tmpdir());
    CHECK_EQ_INT(rc, 0);
    CHECK(!strchr(plain, '\r'));
}

/* One overwrite rule for every command that writes: an existing output is
 * refused with the same words and -f/--force as the remedy; with it, the
 * output is replaced. */
TEST(cli_force_one_rule)
{
    const char *d = wpt_tmpdir();
    static char out[65536];
    REQUIRE(wpt_run(out, sizeof out, "%s convert %s/hf -o %s/b --profile bf16", wpt_wpack(), WPT_TINY, d) == 0);
    struct { const char *what, *cmd; } cases[] = {
        {"keygen", "%s keygen -o %s/k"},
        {"synth", "%s synth --preset tiny --layers 1 -o %s/s"},
        {"convert", "%s convert " WPT_TINY "/hf -o %s/c --profile bf16"},
        {"pack", "%s pack %s/b -o %s/b.wpkz"},
        {"unpack", "%s unpack %s/b.wpkz -o %s/u"},
        {"unpack --tensor", "%s unpack %s/b.wpkz --tensor embed.weight -o %s/t.bin"},
        {"quant --report", "%s quant " WPT_TINY "/hf --profile bf16 --report %s/r.json"},
        {"export", "%s export %s/b -o %s/x"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char cmd[2048];
        if (strstr(cases[i].cmd, "%s/b"))
            snprintf(cmd, sizeof cmd, cases[i].cmd, wpt_wpack(), d, d);
        else
            snprintf(cmd, sizeof cmd, cases[i].cmd, wpt_wpack(), d);
        int rc = wpt_run(out, sizeof out, "%s >/dev/null 2>&1", cmd);
        CHECKF(rc == 0, "%s: first run exit %d", cases[i].what, rc);
        rc = wpt_run(out, sizeof out, "%s 2>&1 >/dev/null", cmd);
        CHECKF(rc == 2, "%s: second run exit %d", cases[i].what, rc);
        CHECKF(strstr(out, "already exists") && strstr(out, "(see -f/--force)") && count_lines(out) == 1,
               "%s: %s", cases[i].what, out);
        rc = wpt_run(out, sizeof out, "%s -f 2>&1 >/dev/null", cmd);
        CHECKF(rc == 0, "%s -f: exit %d: %s", cases[i].what, rc, out);
    }
}

/* Library messages name the setting, the CLI the option that sets it. */
TEST(cli_setting_becomes_the_option)
{
    const char *d = wpt_tmpdir();
    static char out[65536];
    REQUIRE(wpt_run(out, sizeof out, "%s convert %s/hf -o %s/b --profile bf16", wpt_wpack(), WPT_TINY, d) == 0);
    CHECK_EQ_INT(wpt_run(out, sizeof out, "%s verify %s/b 2>&1", wpt_wpack(), d), 1);
    CHECK_CONTAINS(out, "accept it unsigned to check integrity only (see --allow-unsigned)");
    CHECK_EQ_INT(wpt_run(out, sizeof out, "%s synth --preset tiny --layers 9 -o %s/s 2>&1", wpt_wpack(), d), 2);
    CHECK_CONTAINS(out, "(see --layers)");
}

/* --force replaces only what wpack made: a .wpkz by its magic, a key pair by
 * its PEM labels; any other file is refused, untouched. */
TEST(cli_force_only_over_our_own_files)
{
    const char *d = wpt_tmpdir();
    static char out[65536];
    REQUIRE(wpt_run(out, sizeof out, "%s convert %s/hf -o %s/b --profile bf16 -q", wpt_wpack(), WPT_TINY, d) == 0);
    REQUIRE(wpt_write_file(wpt_path("%s/notes.wpkz", d), "my notes\n", 9) == 0);
    CHECK_EQ_INT(wpt_run(out, sizeof out, "%s pack %s/b -o %s/notes.wpkz -f 2>&1", wpt_wpack(), d, d), 2);
    CHECK_CONTAINS(out, "notes.wpkz: exists and is not a .wpkz archive; not replaced");
    REQUIRE(wpt_run(out, sizeof out, "cat %s/notes.wpkz", d) == 0);
    CHECK(!strcmp(out, "my notes\n"));
    /* a real .wpkz is replaced */
    REQUIRE(wpt_run(out, sizeof out, "%s pack %s/b -o %s/b.wpkz -q && %s pack %s/b -o %s/b.wpkz -f -q", wpt_wpack(),
                    d, d, wpt_wpack(), d, d) == 0);
    /* keys: a file that is not a PEM key in either place stops the pair */
    REQUIRE(wpt_run(out, sizeof out, "%s keygen -o %s/k -q", wpt_wpack(), d) == 0);
    REQUIRE(wpt_write_file(wpt_path("%s/k.pub.pem", d), "not a key\n", 10) == 0);
    uint8_t *before;
    size_t blen;
    REQUIRE(wpt_read_file(wpt_path("%s/k.pem", d), &before, &blen) == 0);
    CHECK_EQ_INT(wpt_run(out, sizeof out, "%s keygen -o %s/k -f 2>&1", wpt_wpack(), d), 2);
    CHECK_CONTAINS(out, "k.pub.pem: exists and is not a PEM key; not replaced");
    uint8_t *after;
    size_t alen;
    REQUIRE(wpt_read_file(wpt_path("%s/k.pem", d), &after, &alen) == 0);
    CHECK(alen == blen && !memcmp(before, after, blen));   /* the private key was not replaced either */
    free(before);
    free(after);
}
