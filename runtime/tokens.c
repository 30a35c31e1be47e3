/* tokens.c — token-id prompts (see tokens.h). */
#include <stdlib.h>
#include <string.h>

#include "runtime/tokens.h"

static int is_sep(char c) { return c == ',' || c == ' ' || c == '\n' || c == '\t' || c == '\r'; }

/* A decimal id in [p, lim), optionally signed '+', in [0, 2^31) (what
 * strtol accepted before, without its locale and without overflow to
 * clamp); *end is where it stopped. */
static int read_id(const char *p, const char *lim, const char **end, int32_t *v)
{
    uint64_t x = 0;
    const char *q = p + (p < lim && *p == '+');
    const char *d = q;
    while (q < lim && *q >= '0' && *q <= '9') {
        x = x * 10 + (uint64_t)(*q++ - '0');
        if (x > INT32_MAX) break;
    }
    *end = q;
    if (q == d || x > INT32_MAX) return -1;
    *v = (int32_t)x;
    return 0;
}

static int push(int32_t **v, int *n, int *cap, int32_t x, const char *what, wp_err *e)
{
    if (*n == *cap) {
        if (*cap > INT32_MAX / 2) return wp_fail(e, WP_EUSAGE, "%s: too many tokens", what);
        int c = *cap ? *cap * 2 : 64;
        int32_t *t = realloc(*v, sizeof(int32_t) * (size_t)c);
        if (!t) return wp_oom(e, "%s: token ids", what);
        *v = t, *cap = c;
    }
    (*v)[(*n)++] = x;
    return 0;
}

int wp_tokens_parse(const char *s, const char *what, int32_t **out, int *n, wp_err *e)
{
    int cap = 0, rc = 0;
    *out = NULL;
    *n = 0;
    for (const char *p = s;;) {
        while (is_sep(*p)) p++;
        if (!*p) break;
        const char *end;
        int32_t v;
        if (read_id(p, p + strlen(p), &end, &v) || (*end && !is_sep(*end))) {
            rc = wp_fail(e, WP_EUSAGE, "%s: not a token id at \"%.16s\"", what, p);
            break;
        }
        if ((rc = push(out, n, &cap, v, what, e))) break;
        p = end;
    }
    if (!rc && !*n) rc = wp_fail(e, WP_EUSAGE, "%s: no tokens", what);
    if (rc) {
        free(*out);
        *out = NULL;
        *n = 0;
    }
    return rc;
}

/* Lines with at least one digit: one prompt each. */
static int count_prompt_lines(const char *text)
{
    int lines = 0;
    for (const char *p = text; *p;) {
        const char *nl = strchr(p, '\n');
        size_t L = nl ? (size_t)(nl - p) : strlen(p);
        for (size_t i = 0; i < L; i++)
            if (p[i] >= '0' && p[i] <= '9') {
                lines++;
                break;
            }
        p += L + (nl != NULL);
    }
    return lines;
}

int wp_prompts_parse(wp_prompts *p, char *text, const char *what, wp_err *e)
{
    memset(p, 0, sizeof *p);
    if (!(p->batch = count_prompt_lines(text) > 1)) {
        int rc = wp_tokens_parse(text, what, &p->tok[0], &p->len[0], e);
        if (!rc) p->n = 1;
        return rc;
    }
    for (char *line = text, *next; line && *line; line = next) {
        next = strchr(line, '\n');
        if (next) *next++ = 0;
        if (!line[strspn(line, " ,\t\r")]) continue;
        if (p->n == WP_PROMPTS_MAX)
            return wp_fail(e, WP_EUSAGE, "%s: more than %d prompts", what, WP_PROMPTS_MAX);
        int rc = wp_tokens_parse(line, what, &p->tok[p->n], &p->len[p->n], e);
        if (rc) return rc;
        p->n++;
    }
    return 0;
}

int wp_prompts_load(wp_prompts *p, const char *path, wp_err *e)
{
    memset(p, 0, sizeof *p);
    char *text;
    size_t len;
    int rc = wp_read_small_file(path, WP_PROMPTS_FILE_MAX, &text, &len, e);
    if (rc) return rc;
    rc = wp_prompts_parse(p, text, path, e);
    free(text);
    return rc;
}

void wp_prompts_free(wp_prompts *p)
{
    for (int b = 0; b < p->n; b++) free(p->tok[b]);
    p->n = 0;
}

void wp_prompt_lines_free(int32_t **p, int *lens, int n)
{
    for (int i = 0; p && i < n; i++) free(p[i]);
    free(p);
    free(lens);
}

int wp_prompt_lines_parse(const char *text, size_t len, const char *what, int32_t ***out,
                          int **lens, int *n, wp_err *e)
{
    int cap = 0, rc = 0, lineno = 0;
    *out = NULL;
    *lens = NULL;
    *n = 0;
    for (size_t at = 0; at < len && !rc;) {
        lineno++;
        const char *line = text + at, *nl = memchr(line, '\n', len - at);
        size_t L = nl ? (size_t)(nl - line) : len - at;
        at += L + (nl != NULL);
        const char *hash = memchr(line, '#', L), *lend = hash ? hash : line + L;
        int32_t *toks = NULL;
        int nt = 0, ct = 0;
        for (const char *p = line;;) {
            while (p < lend && (*p == ' ' || *p == ',' || *p == '\t' || *p == '\r')) p++;
            if (p == lend || !*p) break;   /* a NUL ends the line, as it did in C text */
            const char *end;
            int32_t v;
            if (read_id(p, lend, &end, &v)) {
                int k = (int)(lend - p < 20 ? lend - p : 20);
                rc = wp_fail(e, WP_EUSAGE, "%s:%d: not a token id: \"%.*s\"", what, lineno, k, p);
                break;
            }
            if ((rc = push(&toks, &nt, &ct, v, what, e))) break;
            p = end;
        }
        if (rc || !nt) {
            free(toks);
            continue;
        }
        if (*n == WP_PROMPT_LINES_MAX) {
            free(toks);
            rc = wp_fail(e, WP_EUSAGE, "%s: more than %d prompts", what, WP_PROMPT_LINES_MAX);
            break;
        }
        if (*n == cap) {
            cap = cap ? cap * 2 : 8;
            int32_t **o = realloc(*out, sizeof(*o) * (size_t)cap);
            if (o) *out = o;
            int *l = o ? realloc(*lens, sizeof(int) * (size_t)cap) : NULL;
            if (l) *lens = l;
            if (!o || !l) {
                free(toks);
                rc = wp_oom(e, "%s: prompts", what);
                break;
            }
        }
        (*out)[*n] = toks;
        (*lens)[(*n)++] = nt;
    }
    if (!rc && !*n) rc = wp_fail(e, WP_EUSAGE, "%s: no prompts", what);
    if (rc) {
        wp_prompt_lines_free(*out, *lens, *n);
        *out = NULL;
        *lens = NULL;
        *n = 0;
    }
    return rc;
}

int wp_prompt_lines_load(const char *path, int32_t ***out, int **lens, int *n, wp_err *e)
{
    char *text;
    size_t len;
    *out = NULL;
    *lens = NULL;
    *n = 0;
    int rc = wp_read_small_file(path, WP_PROMPT_LINES_FILE_MAX, &text, &len, e);
    if (rc) return rc;
    rc = wp_prompt_lines_parse(text, len, path, out, lens, n, e);
    free(text);
    return rc;
}
