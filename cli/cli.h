/*
 * cli.h — what the subcommands share: printing errors, the progress bar,
 * JSON output.  Only cli/ prints or exits; the library reports through wp_err.
 *
 * Exit codes, for every command: 0 ok, 1 the check ran and failed (inventory
 * problem, digest mismatch, parity miss), 2 unreadable input or bad usage.
 */
#ifndef WP_CLI_H
#define WP_CLI_H

#include <cjson/cJSON.h>

#include "cli/opt.h"
#include "common/wp.h"

#define WP_EXIT_OK 0
#define WP_EXIT_FAIL 1
#define WP_EXIT_BAD 2

/* The running command's context (main.c sets it before the command runs). */
extern cli_ctx *cli_cur;

/* Print "wpack <cmd>: <msg>" on stderr (one line; when the library named the
 * setting that would change the outcome, the option for it is added, e.g.
 * "(see --mem-budget)") and return the exit code that matches e->code
 * (WP_EVERIFY -> 1, everything else -> 2).  The first error is also kept for
 * the --json failure document. */
int cli_error(const char *cmd, const wp_err *e);
/* Usage error: "wpack <cmd>: <msg> (try 'wpack <cmd> --help')", returns 2. */
int cli_usage(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* A failure that is not a wp_err: "wpack <cmd>: <msg>", kept like cli_error's. */
int cli_fail(const char *cmd, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* Keep a failure for the --json document without printing it (the document
 * itself says what failed). */
void cli_keep_error(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* A notice on stderr ("wpack <cmd>: <msg>"), unless -q. */
void cli_notice(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* The library's notices (wp_set_notice_fn, main.c): printed as cli_notice. */
void cli_library_notice(void *ud, const char *line);
/* Hand the command's JSON document to main, which adds "ok" and "exit" (and
 * "error" on failure) and prints it on stdout once the command returns. */
void cli_print_json(cJSON *doc);
/* Print a document on stdout now and delete it (main.c's last step). */
void cli_emit_json(cJSON *doc);

/* Progress bar on stderr: only when stderr is a terminal, and not with -q,
 * --no-progress or --json.  Its width follows the terminal; each redraw clears
 * the line first; ETA in h/m/s.  Pass cli_progress as the library's
 * wp_progress_fn with a cli_bar as ud. */
typedef struct cli_bar {
    int enabled;
    double t0, last;
    int is_bytes;        /* show done/total as bytes and throughput */
} cli_bar;
void cli_bar_init(cli_bar *b, int quiet, int is_bytes);
void cli_progress(void *ud, const char *what, uint64_t done, uint64_t total);
void cli_bar_end(cli_bar *b);
/* The bar's text for a terminal `width` columns wide: at most width - 1
 * visible characters, no newline (the caller prefixes "\r\033[K"). */
void cli_bar_format(char *out, size_t n, int width, const char *what, uint64_t done, uint64_t total,
                    double elapsed, int is_bytes);
/* "42s", "3m05s", "1h02m"; "?" when unknown (negative or not finite). */
const char *cli_duration(double seconds, char *buf, size_t n);
/* A rate in decimal units: "812 MB/s", "1.25 GB/s". */
const char *cli_rate(double bytes_per_s, char *buf, size_t n);

/* Human-readable byte count into buf, binary units ("1.23 GiB"). */
const char *cli_bytes(uint64_t n, char *buf, size_t sz);

#endif
