/*
 * fuzz_tokens.c — token and prompt files (runtime/tokens.h): the input as
 * `run --tokens` text (wp_tokens_parse), as a `run --tokens-file`
 * (wp_prompts_parse, then wp_prompts_load from a file) and as a `parity
 * --prompts` file (wp_prompt_lines_parse, wp_prompt_lines_load).  Every
 * accepted prompt holds ids in [0, 2^31) and at least one of them.
 * Seeds: tests/fuzz/corpus/tokens/.
 */
#include "runtime/tokens.h"
#include "tests/fuzz/fuzz_util.h"

static void check_ids(const int32_t *t, int n)
{
    if (n < 1 || !t) abort();
    for (int i = 0; i < n; i++)
        if (t[i] < 0) abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    wp_err e = {0};
    char *s = fz_cstr(data, size);
    int32_t *t;
    int n;
    int rc = wp_tokens_parse(s, "--tokens", &t, &n, &e);
    fz_check_refusal(rc, &e);
    if (!rc) check_ids(t, n), free(t);

    static wp_prompts p;
    wp_err_clear(&e);
    rc = wp_prompts_parse(&p, s, "tokens.txt", &e);   /* edits s */
    fz_check_refusal(rc, &e);
    if (!rc)
        for (int b = 0; b < p.n; b++) check_ids(p.tok[b], p.len[b]);
    if (!rc && (p.n < 1 || p.n > WP_PROMPTS_MAX)) abort();
    wp_prompts_free(&p);
    free(s);

    int32_t **pr;
    int *lens, np;
    wp_err_clear(&e);
    rc = wp_prompt_lines_parse((const char *)data, size, "prompts.txt", &pr, &lens, &np, &e);
    fz_check_refusal(rc, &e);
    if (!rc) {
        if (np < 1 || np > WP_PROMPT_LINES_MAX) abort();
        for (int b = 0; b < np; b++) check_ids(pr[b], lens[b]);
        wp_prompt_lines_free(pr, lens, np);
    }

    const char *path = fz_path("prompts.txt");
    fz_write(path, data, size);
    wp_err_clear(&e);
    rc = wp_prompts_load(&p, path, &e);
    fz_check_refusal(rc, &e);
    wp_prompts_free(&p);
    wp_err_clear(&e);
    rc = wp_prompt_lines_load(path, &pr, &lens, &np, &e);
    fz_check_refusal(rc, &e);
    if (!rc) wp_prompt_lines_free(pr, lens, np);
    return 0;
}
