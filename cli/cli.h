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

#include "common/wp.h"

#define WP_EXIT_OK 0
#define WP_EXIT_FAIL 1
#define WP_EXIT_BAD 2

/* Print "wpack <cmd>: <msg>" on stderr (one line) and return the exit code
 * that matches e->code (WP_EVERIFY -> 1, everything else -> 2). */
int cli_error(const char *cmd, const wp_err *e);
/* Usage error: "wpack <cmd>: <msg>" + "try 'wpack <cmd> --help'", returns 2. */
int cli_usage(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Print a cJSON document to stdout (formatted) and delete it. */
void cli_print_json(cJSON *doc);

/* Progress bar on stderr, only when stderr is a TTY and not in --json mode.
 * Pass cli_progress as the library's wp_progress_fn with a cli_bar as ud. */
typedef struct cli_bar {
    int enabled;
    double t0, last;
    int is_bytes;        /* show done/total as bytes and throughput */
} cli_bar;
void cli_bar_init(cli_bar *b, int quiet, int is_bytes);
void cli_progress(void *ud, const char *what, uint64_t done, uint64_t total);
void cli_bar_end(cli_bar *b);

/* Tiny argument helpers: match "--name" or "--name=value". */
int cli_flag(const char *arg, const char *name);
/* For "--name value" / "--name=value": returns the value or NULL (advancing *i). */
const char *cli_opt(int argc, char **argv, int *i, const char *name);
/* A whole decimal integer in [lo, hi] (no sign games, no trailing junk,
 * no overflow): 0, or -1 after printing "wpack CMD: OPT V: expected LO..HI"
 * (the caller returns WP_EXIT_BAD). */
int cli_int(const char *cmd, const char *opt, const char *v, long long lo, long long hi,
            long long *out);
/* Human-readable byte count into buf ("1.23 GiB"). */
const char *cli_bytes(uint64_t n, char *buf, size_t sz);

/* The subcommands (cli/cmd_*.c). */
int cmd_inspect(int argc, char **argv);
int cmd_plan(int argc, char **argv);
int cmd_convert(int argc, char **argv);
int cmd_quant(int argc, char **argv);
int cmd_synth(int argc, char **argv);
int cmd_keygen(int argc, char **argv);
int cmd_sign(int argc, char **argv);
int cmd_verify(int argc, char **argv);
int cmd_verify_source(int argc, char **argv);
int cmd_pack(int argc, char **argv);
int cmd_unpack(int argc, char **argv);
int cmd_run(int argc, char **argv);
int cmd_parity(int argc, char **argv);

#endif
