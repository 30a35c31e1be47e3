/* main.c — `wpack COMMAND ...`: find the command's table, parse, run, and
 * print the one JSON document of a --json run (cli/opt.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>
#include <openssl/crypto.h>
#include <zstd.h>

#include "cli/cli.h"

extern const cli_command cli_cmd_inspect, cli_cmd_plan, cli_cmd_convert, cli_cmd_quant, cli_cmd_synth,
    cli_cmd_keygen, cli_cmd_sign, cli_cmd_verify, cli_cmd_verify_source, cli_cmd_pack, cli_cmd_unpack,
    cli_cmd_run, cli_cmd_parity, cli_cmd_golden, cli_cmd_export, cli_cmd_clean, cli_cmd_merge;

const cli_command *const cli_commands[] = {
    &cli_cmd_inspect, &cli_cmd_plan,   &cli_cmd_convert,       &cli_cmd_merge, &cli_cmd_quant, &cli_cmd_synth,
    &cli_cmd_export,
    &cli_cmd_keygen,  &cli_cmd_sign,   &cli_cmd_verify,        &cli_cmd_verify_source,
    &cli_cmd_pack,    &cli_cmd_unpack, &cli_cmd_run,           &cli_cmd_parity, &cli_cmd_golden, &cli_cmd_clean, NULL,
};

static void print_version(void)
{
    printf("wpack %s\nlibzstd %s, %s, cJSON %s\n", WP_VERSION, ZSTD_versionString(),
           OpenSSL_version(OPENSSL_VERSION), cJSON_Version());
}

static int has_json(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--")) break;
        if (!strcmp(argv[i], "--json")) return 1;
    }
    return 0;
}

/* The one document of a --json run: the command's own, or an empty one, with
 * "ok", "exit" and (on failure) "error" filled in when the command did not. */
static void print_json_result(cli_ctx *c, int rc)
{
    cJSON *doc = c->doc ? c->doc : cJSON_CreateObject();
    c->doc = NULL;
    if (!doc) return;
    if (!cJSON_GetObjectItemCaseSensitive(doc, "ok")) cJSON_AddBoolToObject(doc, "ok", rc == 0);
    else cJSON_ReplaceItemInObjectCaseSensitive(doc, "ok", cJSON_CreateBool(rc == 0));
    if (!cJSON_GetObjectItemCaseSensitive(doc, "command"))
        cJSON_AddStringToObject(doc, "command", c->cmd ? c->cmd->name : "");
    if (rc && !cJSON_GetObjectItemCaseSensitive(doc, "error"))
        cJSON_AddStringToObject(doc, "error", c->err[0] ? c->err : "failed");
    cJSON_DeleteItemFromObjectCaseSensitive(doc, "exit");
    cJSON_AddNumberToObject(doc, "exit", rc);
    cli_emit_json(doc);
}

static int run_command(const cli_command *cmd, int argc, char **argv)
{
    cli_ctx c;
    memset(&c, 0, sizeof c);
    c.cmd = cmd;
    c.json = has_json(argc, argv);   /* so that a usage error is reported as JSON too */
    cli_cur = &c;
    void *args = calloc(1, cmd->args_size ? cmd->args_size : 1);
    if (!args) return cli_fail(cmd->name, WP_EXIT_BAD, "out of memory");
    int rc = cli_parse(cmd, argc, argv, &c, args);
    if (rc < 0) rc = cmd->run(&c, args);
    else if (c.help) c.json = 0;   /* --help prints help, never JSON */
    if (c.json) print_json_result(&c, rc);
    cJSON_Delete(c.doc);
    /* free the lists the parser allocated */
    for (const cli_option *o = cmd->options; o && o->name; o++)
        if (o->kind == CLI_LIST) free(((cli_list *)((char *)args + o->off))->v);
    for (const cli_operand *op = cmd->operands; op && op->name; op++)
        if (op->many) free(((cli_list *)((char *)args + op->off))->v);
    free(args);
    cli_cur = NULL;
    return rc;
}

static int help(int argc, char **argv)
{
    if (argc < 2) {
        cli_print_overview(stdout);
        return WP_EXIT_OK;
    }
    if (!strcmp(argv[1], "--man")) {
        cli_print_man(stdout);
        return WP_EXIT_OK;
    }
    if (!strcmp(argv[1], "--completion")) {
        if (argc < 3 || strcmp(argv[2], "bash")) {
            fprintf(stderr, "wpack help: --completion takes one shell: bash\n");
            return WP_EXIT_BAD;
        }
        cli_print_completion_bash(stdout);
        return WP_EXIT_OK;
    }
    const cli_command *cmd = cli_find_command(argv[1]);
    if (!cmd) {
        fprintf(stderr, "wpack help: unknown command '%s' (try 'wpack help')\n", argv[1]);
        return WP_EXIT_BAD;
    }
    cli_print_help(cmd, stdout);
    return WP_EXIT_OK;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        cli_print_overview(stderr);
        return WP_EXIT_BAD;
    }
    const char *a = argv[1];
    if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
        cli_print_overview(stdout);
        return WP_EXIT_OK;
    }
    if (!strcmp(a, "help")) return help(argc - 1, argv + 1);
    if (!strcmp(a, "--version") || !strcmp(a, "-V") || !strcmp(a, "version")) {
        print_version();
        return WP_EXIT_OK;
    }
    wp_cleanup_on_signals();
    wp_set_notice_fn(cli_library_notice, NULL);   /* the library's notices, on stderr unless -q */
    const cli_command *cmd = cli_find_command(a);
    if (cmd) return run_command(cmd, argc - 1, argv + 1);
    fprintf(stderr, "wpack: unknown command '%s' (try 'wpack help')\n", a);
    if (has_json(argc, argv)) {
        cJSON *doc = cJSON_CreateObject();
        cJSON_AddBoolToObject(doc, "ok", 0);
        char msg[300];
        snprintf(msg, sizeof msg, "unknown command '%.200s'", a);
        cJSON_AddStringToObject(doc, "error", msg);
        cJSON_AddNumberToObject(doc, "exit", WP_EXIT_BAD);
        cli_emit_json(doc);
    }
    return WP_EXIT_BAD;
}
