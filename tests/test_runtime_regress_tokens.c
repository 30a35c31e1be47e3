/* test_runtime_regress_tokens.c — the token and prompt parsers that moved
 * from cli/ into runtime/tokens.h (fuzzed by tests/fuzz/fuzz_tokens.c): the
 * same formats and messages as before, and the bounds they now state. */
#include "runtime/tokens.h"
#include "tests/harness.h"

TEST(runtime_regress_tokens_formats)
{
    wp_err e = {0};
    int32_t *t;
    int n;
    REQUIRE(wp_tokens_parse(" 1,2\t3\r\n+4 ", "--tokens", &t, &n, &e) == 0);
    CHECK(n == 4 && t[0] == 1 && t[1] == 2 && t[2] == 3 && t[3] == 4);
    free(t);
    CHECK_EQ_INT(wp_tokens_parse("1 2x", "--tokens", &t, &n, &e), WP_EUSAGE);
    CHECK(!strcmp(e.msg, "--tokens: not a token id at \"2x\""));
    wp_err_clear(&e);
    CHECK_EQ_INT(wp_tokens_parse("2147483648", "--tokens", &t, &n, &e), WP_EUSAGE);
    wp_err_clear(&e);
    CHECK_EQ_INT(wp_tokens_parse(" ,, ", "--tokens", &t, &n, &e), WP_EUSAGE);
    CHECK(!strcmp(e.msg, "--tokens: no tokens"));
    wp_err_clear(&e);
    REQUIRE(wp_tokens_parse("2147483647", "--tokens", &t, &n, &e) == 0);
    CHECK(n == 1 && t[0] == 2147483647);
    free(t);

    /* a tokens file: one line is one prompt, several lines a batch */
    wp_prompts p;
    char one[] = "5 6 7\n";
    wp_err_clear(&e);
    REQUIRE(wp_prompts_parse(&p, one, "t.txt", &e) == 0);
    CHECK(p.n == 1 && !p.batch && p.len[0] == 3);
    wp_prompts_free(&p);
    char two[] = "1 2\n\n3\n";
    REQUIRE(wp_prompts_parse(&p, two, "t.txt", &e) == 0);
    CHECK(p.n == 2 && p.batch && p.len[0] == 2 && p.len[1] == 1 && p.tok[1][0] == 3);
    wp_prompts_free(&p);
    size_t big = (WP_PROMPTS_MAX + 1) * 2 + 1;
    char *many = malloc(big);
    for (int i = 0; i <= WP_PROMPTS_MAX; i++) many[2 * i] = '1', many[2 * i + 1] = '\n';
    many[big - 1] = 0;
    CHECK_EQ_INT(wp_prompts_parse(&p, many, "t.txt", &e), WP_EUSAGE);
    CHECK(!strcmp(e.msg, "t.txt: more than 256 prompts"));
    wp_prompts_free(&p);
    free(many);

    /* a prompts file: comments, one prompt per non-empty line, not NUL-terminated */
    int32_t **pr;
    int *lens, np;
    static const char pf[] = "# golden\n1 2 3 # first\n\n4,5\n9";
    wp_err_clear(&e);
    REQUIRE(wp_prompt_lines_parse(pf, sizeof pf - 2, "p.txt", &pr, &lens, &np, &e) == 0);   /* "...4,5\n" */
    CHECK(np == 2 && lens[0] == 3 && lens[1] == 2 && pr[1][1] == 5);
    wp_prompt_lines_free(pr, lens, np);
    CHECK_EQ_INT(wp_prompt_lines_parse("1\n2 x3\n", 7, "p.txt", &pr, &lens, &np, &e), WP_EUSAGE);
    CHECK(!strcmp(e.msg, "p.txt:2: not a token id: \"x3\""));
    CHECK(pr == NULL && np == 0);
    wp_err_clear(&e);
    CHECK_EQ_INT(wp_prompt_lines_parse("# only\n", 7, "p.txt", &pr, &lens, &np, &e), WP_EUSAGE);
    CHECK(!strcmp(e.msg, "p.txt: no prompts"));
    size_t lb = (WP_PROMPT_LINES_MAX + 1) * 2;
    char *lines = malloc(lb);
    for (size_t i = 0; i < lb; i += 2) lines[i] = '7', lines[i + 1] = '\n';
    wp_err_clear(&e);
    CHECK_EQ_INT(wp_prompt_lines_parse(lines, lb, "p.txt", &pr, &lens, &np, &e), WP_EUSAGE);
    CHECK(!strcmp(e.msg, "p.txt: more than 4096 prompts"));
    free(lines);
}

/* The command still says it the way it did. */
TEST(runtime_regress_tokens_cli)
{
    char out[4096];
    int rc = wpt_run(out, sizeof out, "%s run %s/none --tokens '1 x'", wpt_wpack(), wpt_tmpdir());
    CHECK_EQ_INT(rc, 2);
    CHECK(!strcmp(out, "wpack run: --tokens: not a token id at \"x\" (try 'wpack run --help')\n"));
    const char *f = wpt_path("%s/t.txt", wpt_tmpdir());
    REQUIRE(wpt_write_file(f, "1 2\n3 y\n", 8) == 0);
    rc = wpt_run(out, sizeof out, "%s run %s/none --tokens-file %s", wpt_wpack(), wpt_tmpdir(), f);
    CHECK_EQ_INT(rc, 2);
    CHECK_CONTAINS(out, "t.txt: not a token id at \"y\" (try 'wpack run --help')");
}
