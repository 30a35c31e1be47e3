/* test_cli.c — conventions every subcommand keeps: --help exits 0 on stdout,
 * bad usage exits 2 with exactly one line on stderr naming the command. */
#include "tests/harness.h"

static const char *const cmds[] = {
    "inspect", "plan", "convert", "quant", "synth", "keygen", "sign", "verify",
    "verify-source", "pack", "unpack", "run", "parity",
};

static int count_lines(const char *s)
{
    int n = 0;
    for (; *s; s++) n += *s == '\n';
    return n;
}

TEST(cli_every_command_has_help)
{
    char out[16384];
    for (size_t i = 0; i < sizeof cmds / sizeof *cmds; i++) {
        int rc = wpt_run(out, sizeof out, "%s %s --help 2>/dev/null", wpt_wpack(), cmds[i]);
        CHECKF(rc == 0, "wpack %s --help: exit %d", cmds[i], rc);
        CHECKF(strstr(out, "usage") || strstr(out, "Usage"), "wpack %s --help: no usage: %s", cmds[i], out);
    }
    CHECK_EQ_INT(wpt_run(out, sizeof out, "%s --version", wpt_wpack()), 0);
    CHECK_CONTAINS(out, "wpack ");
    CHECK_EQ_INT(wpt_run(out, sizeof out, "%s no-such-command", wpt_wpack()), 2);
    CHECK_CONTAINS(out, "unknown command 'no-such-command'");
}

TEST(cli_unknown_option_is_usage_error)
{
    char out[16384];
    for (size_t i = 0; i < sizeof cmds / sizeof *cmds; i++) {
        int rc = wpt_run(out, sizeof out, "%s %s x --no-such-option 2>&1 >/dev/null", wpt_wpack(), cmds[i]);
        CHECKF(rc == 2, "wpack %s --no-such-option: exit %d", cmds[i], rc);
        CHECKF(count_lines(out) == 1, "wpack %s: %d stderr lines: %s", cmds[i], count_lines(out), out);
        CHECKF(strstr(out, cmds[i]) != NULL, "wpack %s: message does not name the command: %s", cmds[i], out);
    }
}

/* Numbers are whole integers in range: "2x", "", "0" (where 0 is out of
 * range) and overflow are refused, not read as atoi would. */
TEST(cli_numeric_options_strict)
{
    char out[4096];
    const char *b = WPT_TINY "/hf";
    struct { const char *cmd, *expect; } cases[] = {
        {"run %s --tokens 1 --threads 2x", "--threads': '2x' is not an integer"},
        {"run %s --tokens 1 --max-new -1", "--max-new': '-1' is not an integer"},
        {"run %s --tokens 1 --top 99999999999999999999999", "--top': '9"},
        {"parity %s --golden x --threads 0", "--threads': '0' is not an integer"},
        {"verify %s --threads ''", "--threads': '' is not an integer"},
        {"verify-source %s --digests x --threads 1025", "--threads': '1025' is not an integer"},
        {"sign %s --key k --threads abc", "--threads': 'abc' is not an integer"},
        {"pack %s -o /dev/null --level 0", "--level': '0' is not a zstd level"},
        {"pack %s -o /dev/null --level 23", "--level': '23' is not an integer"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char cmd[512];
        snprintf(cmd, sizeof cmd, cases[i].cmd, b);
        int rc = wpt_run(out, sizeof out, "%s %s 2>&1 >/dev/null", wpt_wpack(), cmd);
        CHECKF(rc == 2, "wpack %s: exit %d", cmd, rc);
        CHECKF(count_lines(out) == 1, "wpack %s: %s", cmd, out);
        CHECK_CONTAINS(out, cases[i].expect);
    }
}
