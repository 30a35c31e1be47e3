/*
 * opt.h — the declarative command line.
 *
 * Each subcommand declares itself once, as a cli_command: its operands, its
 * options (name, short form, argument, help line, default, where the value
 * goes), what its exit code 1 means and whether it writes output.  From that
 * one table come the parser and every usage error's wording, `--help` and
 * `wpack help CMD`, the man page (`wpack help --man`) and the bash completion
 * (`wpack help --completion bash`), so none of them can drift from the others.
 *
 * Options every command takes come from the same place (cli/opt.c): -h/--help,
 * --json, -q/--quiet, --no-progress; -f/--force on every command that writes
 * (CLI_WRITES) and -v/--verbose where the command has more to say
 * (CLI_VERBOSE).
 */
#ifndef WP_CLI_OPT_H
#define WP_CLI_OPT_H

#include <stddef.h>
#include <stdio.h>

#include <cjson/cJSON.h>

typedef enum cli_kind {
    CLI_FLAG,   /* int: set to .value (1, or 0 for a "--no-X" option) */
    CLI_STR,    /* const char *; with .choices, one of those words */
    CLI_INT,    /* int in [lo, hi] */
    CLI_SIZE,   /* uint64_t from "4096", "4K", "2M", "1G" (binary units), > 0 */
    CLI_NUM,    /* double in [lo, hi] */
    CLI_LIST,   /* cli_list: a repeatable string option, in the order given */
    CLI_U64,    /* uint64_t, strict decimal, in [lo, hi] (hi 0: no bound) */
} cli_kind;

typedef struct cli_list {
    const char **v;
    int n;
} cli_list;

typedef struct cli_option {
    const char *name;      /* long name without dashes: "threads" */
    char short_name;       /* 't', or 0 */
    cli_kind kind;
    size_t off;            /* offsetof() the field in the command's argument struct */
    const char *arg;       /* the argument's name in help ("N", "FILE"); NULL for flags */
    const char *help;      /* what it does; '\n' starts a continuation line */
    const char *def;       /* default, applied before parsing and shown in help */
    const char *def_doc;   /* the default in words when `def` can't say it ("all CPUs") */
    double lo, hi;         /* CLI_INT / CLI_NUM bounds */
    const char *choices;   /* CLI_STR: the accepted words, space separated */
    const char *complete;  /* completion of the value: "file", "dir" (choices imply words) */
    int value;             /* CLI_FLAG: the value stored (0 means 1) */
    int clear;             /* CLI_FLAG: store 0 instead ("--no-X") */
    int hidden;            /* accepted but not listed (old spellings) */
    int required;          /* the command cannot run without it */
} cli_option;

typedef struct cli_operand {
    const char *name;      /* "BUILD" */
    const char *help;
    size_t off;            /* const char * field in the argument struct */
    int required;
    const char *complete;  /* "file" or "dir" */
    int many;              /* the last operand: every remaining argument, into a cli_list at off */
} cli_operand;

enum {
    CLI_WRITES = 1,   /* takes -f/--force: replace an existing output wpack made */
    CLI_VERBOSE = 2,  /* takes -v/--verbose */
};

struct cli_command;

/* What every command receives besides its own arguments. */
typedef struct cli_ctx {
    const struct cli_command *cmd;
    int json, quiet, no_progress, verbose, force, help;
    cJSON *doc;              /* the command's JSON document (cli_print_json) */
    int err_code;            /* exit code of the first error reported */
    char err[1100];          /* its message, for the JSON failure document */
} cli_ctx;

typedef struct cli_command {
    const char *name;
    const char *summary;           /* one line, for `wpack help` */
    const char *synopsis;          /* after "wpack NAME ": alternatives separated by '\n';
                                      NULL: the operands and "[options]" */
    const char *about;             /* the description: paragraphs separated by "\n\n" */
    const cli_operand *operands;   /* {0}-terminated, or NULL */
    const cli_option *options;     /* {0}-terminated, or NULL */
    unsigned flags;                /* CLI_WRITES, CLI_VERBOSE */
    const char *exit1;             /* what exit status 1 means; NULL: never 1 */
    size_t args_size;              /* sizeof the argument struct */
    void (*init)(void *args);      /* library defaults, set before parsing (help shows
                                      them for options without .def/.def_doc); or NULL */
    int (*run)(cli_ctx *c, void *args);
} cli_command;

/* The commands, in the order `wpack help` lists them. */
extern const cli_command *const cli_commands[];
const cli_command *cli_find_command(const char *name);

/* Parse argv[1..argc) into args (defaults applied first) and c.  Returns -1
 * to go on, or the exit code (0 after --help, 2 after a usage error, which it
 * has reported). */
int cli_parse(const cli_command *cmd, int argc, char **argv, cli_ctx *c, void *args);

/* The outputs generated from the tables. */
void cli_print_help(const cli_command *cmd, FILE *f);
void cli_print_overview(FILE *f);        /* `wpack help` */
void cli_print_man(FILE *f);             /* roff, section 1 */
void cli_print_completion_bash(FILE *f);

/* The long option a wp_err.setting name maps to in `cmd`, e.g. "--mem-budget"
 * or "-f/--force"; NULL when the command has no such option. */
const char *cli_setting_flag(const cli_command *cmd, const char *setting, char *buf, size_t n);

#endif
