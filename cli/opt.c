/* opt.c — parsing, help, man page and completion from the option tables (opt.h). */
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/opt.h"
#include "convert/convert.h"   /* wp_parse_bytes */

/* The options every command shares; their fields live in cli_ctx. */
#define CTX(f) offsetof(cli_ctx, f)
static const cli_option common_opts[] = {
    {.name = "force", .short_name = 'f', .kind = CLI_FLAG, .off = CTX(force),
     .help = "replace an existing output, only if it is one wpack made (a build,\n"
             "a checkpoint, a .wpkz, a key pair); the old one stays until the new\n"
             "one is complete"},
    {.name = "json", .kind = CLI_FLAG, .off = CTX(json),
     .help = "print exactly one JSON document on stdout, on success and on failure\n"
             "(then {\"ok\": false, \"error\": \"...\", \"exit\": N})"},
    {.name = "quiet", .short_name = 'q', .kind = CLI_FLAG, .off = CTX(quiet),
     .help = "no progress bar and no notices on stderr (errors still print)"},
    {.name = "no-progress", .kind = CLI_FLAG, .off = CTX(no_progress),
     .help = "no progress bar (there is none anyway when stderr is not a terminal)"},
    {.name = "verbose", .short_name = 'v', .kind = CLI_FLAG, .off = CTX(verbose),
     .help = "say more: see the command's description"},
    {.name = "help", .short_name = 'h', .kind = CLI_FLAG, .off = CTX(help), .help = "this help"},
    {0},
};

static int common_applies(const cli_command *cmd, const cli_option *o)
{
    if (!strcmp(o->name, "force")) return (cmd->flags & CLI_WRITES) != 0;
    if (!strcmp(o->name, "verbose")) return (cmd->flags & CLI_VERBOSE) != 0;
    return 1;
}

/* ---- parsing ---------------------------------------------------------------- */

static int usage_err(const cli_command *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int usage_err(const cli_command *cmd, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return cli_usage(cmd->name, "%s", msg);
}

static void opt_display(const cli_option *o, char *buf, size_t n)
{
    if (o->short_name) snprintf(buf, n, "-%c/--%s", o->short_name, o->name);
    else snprintf(buf, n, "--%s", o->name);
}

static int word_in(const char *words, const char *w)
{
    size_t n = strlen(w);
    for (const char *p = words; *p;) {
        while (*p == ' ') p++;
        const char *q = p;
        while (*q && *q != ' ') q++;
        if ((size_t)(q - p) == n && n && !strncmp(p, w, n)) return 1;
        p = q;
    }
    return 0;
}

/* Store value v for option o at base; 0 or a usage error's exit code. */
static int store(const cli_command *cmd, const cli_option *o, void *base, const char *v, int argc)
{
    char name[64];
    opt_display(o, name, sizeof name);
    char *field = (char *)base + o->off;
    switch (o->kind) {
    case CLI_FLAG:
        *(int *)field = o->clear ? 0 : o->value ? o->value : 1;
        return 0;
    case CLI_STR:
        if (o->choices && !word_in(o->choices, v))
            return usage_err(cmd, "option '%s': '%s' is not one of: %s", name, v, o->choices);
        *(const char **)field = v;
        return 0;
    case CLI_INT: {
        char *end;
        errno = 0;
        long long x = strtoll(v, &end, 10);
        if (!*v || *end || errno || x < (long long)o->lo || x > (long long)o->hi)
            return usage_err(cmd, "option '%s': '%s' is not an integer in %lld..%lld", name, v,
                             (long long)o->lo, (long long)o->hi);
        *(int *)field = (int)x;
        return 0;
    }
    case CLI_SIZE: {
        uint64_t x;
        if (wp_parse_bytes(v, &x) || !x)
            return usage_err(cmd, "option '%s': '%s' is not a size such as 4096, 4K, 512M or 1G", name, v);
        *(uint64_t *)field = x;
        return 0;
    }
    case CLI_NUM: {
        char *end;
        errno = 0;
        double x = strtod(v, &end);
        if (!*v || *end || errno || !isfinite(x) || x < o->lo || x > o->hi)
            return usage_err(cmd, "option '%s': '%s' is not a number in %g..%g", name, v, o->lo, o->hi);
        *(double *)field = x;
        return 0;
    }
    case CLI_U64: {
        char *end;
        errno = 0;
        unsigned long long x = *v >= '0' && *v <= '9' ? strtoull(v, &end, 10) : 0;
        if (*v < '0' || *v > '9' || *end || errno || (double)x < o->lo || (o->hi > 0 && (double)x > o->hi))
            return usage_err(cmd, "option '%s': '%s' is not a whole number%s", name, v, o->lo > 0 ? " above 0" : "");
        *(uint64_t *)field = x;
        return 0;
    }
    case CLI_LIST: {
        cli_list *l = (cli_list *)field;
        if (!l->v) {
            /* at most one value per argument: argc bounds the list */
            l->v = calloc((size_t)argc + 1, sizeof *l->v);
            if (!l->v) return usage_err(cmd, "out of memory");
        }
        if (l->n >= argc) return usage_err(cmd, "option '%s' given too often", name);
        l->v[l->n++] = v;
        return 0;
    }
    }
    return usage_err(cmd, "option '%s': unsupported kind", name);
}

typedef struct found {
    const cli_option *o;
    void *base;
} found;

static found find_long(const cli_command *cmd, cli_ctx *c, void *args, const char *name, size_t n)
{
    for (const cli_option *o = cmd->options; o && o->name; o++)
        if (strlen(o->name) == n && !strncmp(o->name, name, n)) return (found){o, args};
    for (const cli_option *o = common_opts; o->name; o++)
        if (common_applies(cmd, o) && strlen(o->name) == n && !strncmp(o->name, name, n))
            return (found){o, c};
    return (found){0};
}

static found find_short(const cli_command *cmd, cli_ctx *c, void *args, char ch)
{
    for (const cli_option *o = cmd->options; o && o->name; o++)
        if (o->short_name == ch) return (found){o, args};
    for (const cli_option *o = common_opts; o->name; o++)
        if (common_applies(cmd, o) && o->short_name == ch) return (found){o, c};
    return (found){0};
}

static int apply_defaults(const cli_command *cmd, void *args)
{
    for (const cli_option *o = cmd->options; o && o->name; o++)
        if (o->def && o->kind != CLI_FLAG && o->kind != CLI_LIST) {
            int rc = store(cmd, o, args, o->def, 1);
            if (rc) return rc;   /* a table bug; the usage line says which */
        }
    return 0;
}

static int takes_value(const cli_option *o) { return o->kind != CLI_FLAG; }

int cli_parse(const cli_command *cmd, int argc, char **argv, cli_ctx *c, void *args)
{
    c->cmd = cmd;
    if (cmd->init) cmd->init(args);
    int rc = apply_defaults(cmd, args);
    if (rc) return rc;
    int nops = 0, only_operands = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!only_operands && !strcmp(a, "--")) {
            only_operands = 1;
        } else if (!only_operands && a[0] == '-' && a[1] == '-') {
            const char *name = a + 2, *eq = strchr(name, '=');
            size_t n = eq ? (size_t)(eq - name) : strlen(name);
            found f = find_long(cmd, c, args, name, n);
            if (!f.o) return usage_err(cmd, "unknown option '%.*s'", (int)(n + 2), a);
            const char *v = NULL;
            if (takes_value(f.o)) {
                if (eq) v = eq + 1;
                else if (i + 1 < argc) v = argv[++i];
                else return usage_err(cmd, "option '--%s' needs an argument (%s)", f.o->name, f.o->arg ? f.o->arg : "value");
            } else if (eq) {
                return usage_err(cmd, "option '--%s' takes no argument", f.o->name);
            }
            if ((rc = store(cmd, f.o, f.base, v, argc))) return rc;
        } else if (!only_operands && a[0] == '-' && a[1]) {
            /* -x, -xVALUE, -x VALUE, and clustered flags -qf */
            for (const char *p = a + 1; *p; p++) {
                found f = find_short(cmd, c, args, *p);
                if (!f.o) return usage_err(cmd, "unknown option '-%c'", *p);
                const char *v = NULL;
                if (takes_value(f.o)) {
                    if (p[1]) v = p + 1;
                    else if (i + 1 < argc) v = argv[++i];
                    else return usage_err(cmd, "option '-%c' needs an argument (%s)", *p, f.o->arg ? f.o->arg : "value");
                }
                if ((rc = store(cmd, f.o, f.base, v, argc))) return rc;
                if (v) break;
            }
        } else {
            const cli_operand *op = cmd->operands ? &cmd->operands[nops] : NULL;
            if (!op || !op->name) return usage_err(cmd, "unexpected argument '%s'", a);
            if (op->many) {
                cli_list *l = (cli_list *)((char *)args + op->off);
                if (!l->v && !(l->v = calloc((size_t)argc + 1, sizeof *l->v))) return usage_err(cmd, "out of memory");
                l->v[l->n++] = a;
                continue;
            }
            *(const char **)((char *)args + op->off) = a;
            nops++;
        }
        if (c->help) {
            cli_print_help(cmd, stdout);
            return WP_EXIT_OK;
        }
    }
    for (const cli_operand *op = cmd->operands; op && op->name; op++)
        if (op->required && (op->many ? !((cli_list *)((char *)args + op->off))->n : !*(const char **)((char *)args + op->off)))
            return usage_err(cmd, "missing %s", op->name);
    for (const cli_option *o = cmd->options; o && o->name; o++)
        if (o->required && o->kind == CLI_STR && !*(const char **)((char *)args + o->off)) {
            char name[64];
            opt_display(o, name, sizeof name);
            return usage_err(cmd, "missing option '%s %s'", name, o->arg ? o->arg : "");
        }
    return -1;
}

/* ---- help --------------------------------------------------------------------- */

static void opt_label(const cli_option *o, char *buf, size_t n)
{
    int k = o->short_name ? snprintf(buf, n, "-%c, --%s", o->short_name, o->name)
                          : snprintf(buf, n, "    --%s", o->name);
    if (o->arg && k > 0 && (size_t)k < n) snprintf(buf + k, n - (size_t)k, " %s", o->arg);
}

/* The defaults the command's init sets, for help (NULL when it has none). */
static const void *g_init_args;

static void default_text(const cli_option *o, char *buf, size_t n)
{
    buf[0] = 0;
    const char *f = g_init_args ? (const char *)g_init_args + o->off : NULL;
    if (o->def_doc) snprintf(buf, n, "default: %s", o->def_doc);
    else if (o->def) snprintf(buf, n, "default: %s", o->def);
    else if (f && o->kind == CLI_INT && *(const int *)f) snprintf(buf, n, "default: %d", *(const int *)f);
    else if (f && o->kind == CLI_NUM && *(const double *)f != 0) snprintf(buf, n, "default: %g", *(const double *)f);
    else if (f && o->kind == CLI_STR && *(const char *const *)f) snprintf(buf, n, "default: %s", *(const char *const *)f);
    else if (o->choices) snprintf(buf, n, "one of: %s", o->choices);
}

static void *init_args(const cli_command *cmd)
{
    if (!cmd->init || !cmd->args_size) return NULL;
    void *a = calloc(1, cmd->args_size);
    if (a) cmd->init(a);
    return a;
}

/* Print text with each line (split at '\n') after `indent` spaces, the first
 * line starting at the current column. */
static void put_lines(FILE *f, const char *text, int indent)
{
    for (const char *p = text; *p; p++) {
        fputc(*p, f);
        if (*p == '\n' && p[1]) fprintf(f, "%*s", indent, "");
    }
}

static void print_synopsis(const cli_command *cmd, FILE *f, const char *lead)
{
    if (cmd->synopsis) {
        const char *p = cmd->synopsis;
        int first = 1;
        while (*p) {
            const char *q = strchr(p, '\n');
            size_t n = q ? (size_t)(q - p) : strlen(p);
            fprintf(f, "%s wpack %s %.*s\n", first ? lead : "      ", cmd->name, (int)n, p);
            first = 0;
            p += n + (q ? 1 : 0);
        }
        return;
    }
    fprintf(f, "%s wpack %s", lead, cmd->name);
    for (const cli_operand *op = cmd->operands; op && op->name; op++)
        fprintf(f, op->required ? " %s%s" : " [%s%s]", op->name, op->many ? "..." : "");
    for (const cli_option *o = cmd->options; o && o->name; o++)
        if (o->required) {
            if (o->short_name) fprintf(f, " -%c %s", o->short_name, o->arg ? o->arg : "");
            else fprintf(f, " --%s %s", o->name, o->arg ? o->arg : "");
        }
    fprintf(f, " [options]\n");
}

static void print_option_help(FILE *f, const cli_option *o)
{
    char label[96], def[256];
    opt_label(o, label, sizeof label);
    default_text(o, def, sizeof def);
    if (strlen(label) > 24) fprintf(f, "  %s\n  %-24s  ", label, "");
    else fprintf(f, "  %-24s  ", label);
    put_lines(f, o->help, 28);
    if (def[0]) fprintf(f, " (%s)", def);
    fputc('\n', f);
}

void cli_print_help(const cli_command *cmd, FILE *f)
{
    void *defaults = init_args(cmd);
    g_init_args = defaults;
    print_synopsis(cmd, f, "usage:");
    if (cmd->about) fprintf(f, "\n%s\n", cmd->about);
    if (cmd->operands && cmd->operands[0].name) {
        fprintf(f, "\narguments:\n");
        for (const cli_operand *op = cmd->operands; op->name; op++) {
            fprintf(f, "  %-24s  ", op->name);
            put_lines(f, op->help, 28);
            fputc('\n', f);
        }
    }
    fprintf(f, "\noptions:\n");
    for (const cli_option *o = cmd->options; o && o->name; o++)
        if (!o->hidden) print_option_help(f, o);
    for (const cli_option *o = common_opts; o->name; o++)
        if (common_applies(cmd, o)) print_option_help(f, o);
    fprintf(f, "\nexit status:\n  0  success\n");
    if (cmd->exit1) fprintf(f, "  1  %s\n", cmd->exit1);
    fprintf(f, "  2  bad usage, unreadable or invalid input, or an I/O error%s\n",
            cmd->flags & CLI_WRITES ? " (nothing is\n     left at the output path)" : "");
    fprintf(f, "\nSizes are in binary units (KiB, MiB, GiB; a size argument takes K, M, G),\n"
               "rates in decimal units (MB/s, GB/s).  See also: wpack help, man wpack.\n");
    g_init_args = NULL;
    free(defaults);
}

void cli_print_overview(FILE *f)
{
    fprintf(f, "usage: wpack COMMAND [ARGS]   (wpack help COMMAND, or wpack COMMAND --help)\n"
               "       wpack -V|--version\n\ncommands:\n");
    for (int i = 0; cli_commands[i]; i++) fprintf(f, "  %-14s %s\n", cli_commands[i]->name, cli_commands[i]->summary);
    fprintf(f, "\nEvery command takes --json (one JSON document on stdout, also on failure),\n"
               "-q/--quiet and --no-progress; the commands that write take -f/--force.\n"
               "exit status: 0 success, 1 a check ran and failed, 2 bad usage or input.\n");
}

const cli_command *cli_find_command(const char *name)
{
    for (int i = 0; cli_commands[i]; i++)
        if (!strcmp(cli_commands[i]->name, name)) return cli_commands[i];
    return NULL;
}

const char *cli_setting_flag(const cli_command *cmd, const char *setting, char *buf, size_t n)
{
    if (!cmd || !setting || !*setting) return NULL;
    for (const cli_option *o = cmd->options; o && o->name; o++)
        if (!o->hidden && !strcmp(o->name, setting)) {
            opt_display(o, buf, n);
            return buf;
        }
    for (const cli_option *o = common_opts; o->name; o++)
        if (common_applies(cmd, o) && !strcmp(o->name, setting)) {
            opt_display(o, buf, n);
            return buf;
        }
    return NULL;
}

/* ---- man page ----------------------------------------------------------------- */

/* roff-escape: backslashes, leading dots/quotes, hyphens as \- */
static void roff(FILE *f, const char *s, int flatten_newlines)
{
    int bol = 1;
    for (; *s; s++) {
        if (bol && (*s == '.' || *s == '\'')) fputs("\\&", f);
        bol = 0;
        if (*s == '\\') fputs("\\e", f);
        else if (*s == '-') fputs("\\-", f);
        else if (*s == '\n') {
            if (flatten_newlines) fputc(' ', f);
            else {
                fputc('\n', f);
                bol = 1;
            }
        } else fputc(*s, f);
    }
}

static void man_option(FILE *f, const cli_option *o)
{
    char def[256];
    fputs(".TP\n", f);
    if (o->short_name) fprintf(f, "\\fB\\-%c\\fR, ", o->short_name);
    fputs("\\fB\\-\\-", f);
    roff(f, o->name, 1);
    fputs("\\fR", f);
    if (o->arg) {
        fputs(" \\fI", f);
        roff(f, o->arg, 1);
        fputs("\\fR", f);
    }
    fputc('\n', f);
    roff(f, o->help, 1);
    default_text(o, def, sizeof def);
    if (def[0]) {
        fputs(" (", f);
        roff(f, def, 1);
        fputc(')', f);
    }
    fputc('\n', f);
}

static void man_paragraphs(FILE *f, const char *text)
{
    /* "\n\n" separates paragraphs; single newlines are reflowed by the formatter */
    const char *p = text;
    while (*p) {
        const char *q = strstr(p, "\n\n");
        size_t n = q ? (size_t)(q - p) : strlen(p);
        char *para = strndup(p, n);
        if (para) {
            fputs(".PP\n", f);
            roff(f, para, 0);
            fputc('\n', f);
            free(para);
        }
        p += n;
        while (*p == '\n') p++;
    }
}

void cli_print_man(FILE *f)
{
    fprintf(f, ".\\\" wpack.1 — generated by `wpack help --man` from the option tables; do not edit.\n"
               ".TH WPACK 1 \"\" \"wpack %s\" \"User Commands\"\n"
               ".SH NAME\nwpack \\- convert, quantise, sign, verify and run DeepSeek\\-V4 weight builds\n"
               ".SH SYNOPSIS\n.B wpack\n.I COMMAND\n[\\fIARGS\\fR]\n.br\n.B wpack help\n[\\fICOMMAND\\fR]\n"
               ".br\n.B wpack\n\\-V|\\-\\-version\n"
               ".SH DESCRIPTION\nwpack turns released Hugging Face safetensors checkpoints into builds: "
               "directories of mmap\\-friendly .wpk containers with a manifest of SHA\\-256 digests that "
               "can be signed, verified, shipped as a zstd .wpkz and run by a reference CPU runtime.\n",
            WP_VERSION);
    fputs(".SH COMMANDS\n", f);
    for (int i = 0; cli_commands[i]; i++) {
        const cli_command *c = cli_commands[i];
        void *defaults = init_args(c);
        g_init_args = defaults;
        fprintf(f, ".SS wpack %s\n", c->name);
        char *syn = NULL;
        size_t synlen = 0;
        FILE *m = open_memstream(&syn, &synlen);
        if (m) {
            print_synopsis(c, m, "");
            fclose(m);
            fputs(".nf\n", f);
            roff(f, syn, 0);
            fputs(".fi\n", f);
            free(syn);
        }
        fputs(".PP\n", f);
        roff(f, c->summary, 1);
        fputs(".\n", f);
        if (c->about) man_paragraphs(f, c->about);
        for (const cli_operand *op = c->operands; op && op->name; op++) {
            fprintf(f, ".TP\n\\fI");
            roff(f, op->name, 1);
            fputs("\\fR\n", f);
            roff(f, op->help, 1);
            fputc('\n', f);
        }
        for (const cli_option *o = c->options; o && o->name; o++)
            if (!o->hidden) man_option(f, o);
        fputs(".PP\nExit status: 0 success", f);
        if (c->exit1) {
            fputs("; 1 ", f);
            roff(f, c->exit1, 1);
        }
        fputs("; 2 bad usage, unreadable or invalid input, or an I/O error.\n", f);
        g_init_args = NULL;
        free(defaults);
    }
    fputs(".SH COMMON OPTIONS\nEvery command takes these; \\fB\\-f\\fR only the commands that write, "
          "\\fB\\-v\\fR only those that have more to say.\n", f);
    for (const cli_option *o = common_opts; o->name; o++) man_option(f, o);
    fputs(".SH EXIT STATUS\n.TP\n0\nsuccess\n.TP\n1\nthe check ran and found a problem (inventory, digest, "
          "signature, parity or threshold)\n.TP\n2\nbad usage, unreadable or invalid input, or an I/O error; "
          "nothing is left at the output path\n", f);
    fputs(".SH UNITS\nSizes are printed in binary units (KiB, MiB, GiB) and size arguments take the "
          "suffixes K, M and G in the same sense; rates are printed in decimal units (MB/s, GB/s).\n", f);
    fputs(".SH ENVIRONMENT\n.TP\nCOLUMNS\nthe progress bar's width when the terminal does not say.\n", f);
    fputs(".SH SEE ALSO\n\\fBsha256sum\\fR(1), \\fBzstd\\fR(1), \\fBopenssl\\fR(1)\n", f);
}

/* ---- bash completion ------------------------------------------------------------ */

static void bash_words_for_value(FILE *f, const cli_option *o, const char *flag)
{
    if (o->choices) fprintf(f, "        %s) COMPREPLY=($(compgen -W '%s' -- \"$cur\")); return;;\n", flag, o->choices);
    else if (o->complete && !strcmp(o->complete, "dir")) fprintf(f, "        %s) COMPREPLY=($(compgen -d -- \"$cur\")); return;;\n", flag);
    else if (o->complete && !strcmp(o->complete, "file")) fprintf(f, "        %s) COMPREPLY=($(compgen -f -- \"$cur\")); return;;\n", flag);
    else fprintf(f, "        %s) return;;\n", flag);
}

void cli_print_completion_bash(FILE *f)
{
    fputs("# bash completion for wpack — generated by `wpack help --completion bash`; do not edit.\n"
          "_wpack()\n{\n    local cur prev cmd i\n    COMPREPLY=()\n    cur=\"${COMP_WORDS[COMP_CWORD]}\"\n"
          "    prev=\"${COMP_WORDS[COMP_CWORD-1]}\"\n    cmd=\"\"\n"
          "    for ((i = 1; i < COMP_CWORD; i++)); do\n"
          "        case \"${COMP_WORDS[i]}\" in -*) ;; *) cmd=\"${COMP_WORDS[i]}\"; break;; esac\n    done\n"
          "    if [[ -z \"$cmd\" ]]; then\n        COMPREPLY=($(compgen -W '", f);
    for (int i = 0; cli_commands[i]; i++) fprintf(f, "%s ", cli_commands[i]->name);
    fputs("help -V --version' -- \"$cur\"))\n        return\n    fi\n    case \"$cmd\" in\n", f);
    for (int i = 0; cli_commands[i]; i++) {
        const cli_command *c = cli_commands[i];
        fprintf(f, "    %s)\n        case \"$prev\" in\n", c->name);
        for (const cli_option *o = c->options; o && o->name; o++) {
            if (o->kind == CLI_FLAG) continue;
            char flag[96];
            if (o->short_name) snprintf(flag, sizeof flag, "-%c|--%s", o->short_name, o->name);
            else snprintf(flag, sizeof flag, "--%s", o->name);
            bash_words_for_value(f, o, flag);
        }
        fputs("        esac\n        if [[ \"$cur\" == -* ]]; then\n            COMPREPLY=($(compgen -W '", f);
        for (const cli_option *o = c->options; o && o->name; o++)
            if (!o->hidden) {
                if (o->short_name) fprintf(f, "-%c ", o->short_name);
                fprintf(f, "--%s ", o->name);
            }
        for (const cli_option *o = common_opts; o->name; o++)
            if (common_applies(c, o)) {
                if (o->short_name) fprintf(f, "-%c ", o->short_name);
                fprintf(f, "--%s ", o->name);
            }
        int dirs = c->operands && c->operands[0].name && c->operands[0].complete &&
                   !strcmp(c->operands[0].complete, "dir");
        fprintf(f, "' -- \"$cur\"))\n        else\n            COMPREPLY=($(compgen %s -- \"$cur\"))\n        fi\n        ;;\n",
                dirs ? "-d" : "-f");
    }
    fputs("    help) COMPREPLY=($(compgen -W '", f);
    for (int i = 0; cli_commands[i]; i++) fprintf(f, "%s ", cli_commands[i]->name);
    fputs("--man --completion' -- \"$cur\"));;\n    esac\n}\ncomplete -F _wpack wpack\n", f);
}
