/*
 * tokens.h — token-id prompts as the commands read them (moved here from
 * cli/ so the parsers are library code a fuzz harness can reach; the
 * formats and messages are unchanged).
 *
 *   wp_tokens_parse      one prompt: ids separated by commas and/or white
 *                        space (`wpack run --tokens`)
 *   wp_prompts_parse     a `run --tokens-file`: one prompt, or one per line
 *                        when several lines hold ids (decoded as a batch);
 *                        at most WP_PROMPTS_MAX prompts
 *   wp_prompt_lines_parse a prompts file (`parity --prompts`): one prompt per
 *                        non-empty line, '#' starts a comment; at most
 *                        WP_PROMPT_LINES_MAX prompts
 *
 * Ids are decimal integers in [0, 2^31).  Parse errors are WP_EUSAGE and
 * name `what` (the caller's name for the input: a path, or the option it
 * came from), out of memory WP_ENOMEM.
 */
#ifndef WP_TOKENS_H
#define WP_TOKENS_H

#include <stdint.h>

#include "common/wp.h"

#define WP_PROMPTS_MAX 256
#define WP_PROMPT_LINES_MAX 4096
#define WP_PROMPTS_FILE_MAX (256u << 20)        /* run --tokens-file */
#define WP_PROMPT_LINES_FILE_MAX (64u << 20)    /* parity --prompts */

/* One prompt from s; *out malloc'd (free it), *n >= 1 on success. */
int wp_tokens_parse(const char *s, const char *what, int32_t **out, int *n, wp_err *e);

typedef struct wp_prompts {
    int32_t *tok[WP_PROMPTS_MAX];
    int len[WP_PROMPTS_MAX];
    int n;
    int batch;           /* 1: the file held several prompt lines */
} wp_prompts;
/* Parse a tokens file's text (NUL-terminated; edited in place).  On failure
 * the prompts parsed so far stay in p: free them with wp_prompts_free. */
int wp_prompts_parse(wp_prompts *p, char *text, const char *what, wp_err *e);
/* Read (at most WP_PROMPTS_FILE_MAX bytes) and parse a tokens file. */
int wp_prompts_load(wp_prompts *p, const char *path, wp_err *e);
void wp_prompts_free(wp_prompts *p);

/* Parse a prompts file's text (len bytes, need not be NUL-terminated): *out
 * holds *n prompts of (*lens)[i] ids each; on failure nothing is returned.
 * Free with wp_prompt_lines_free. */
int wp_prompt_lines_parse(const char *text, size_t len, const char *what, int32_t ***out,
                          int **lens, int *n, wp_err *e);
/* Read (at most WP_PROMPT_LINES_FILE_MAX bytes) and parse a prompts file. */
int wp_prompt_lines_load(const char *path, int32_t ***out, int **lens, int *n, wp_err *e);
void wp_prompt_lines_free(int32_t **p, int *lens, int n);

#endif
