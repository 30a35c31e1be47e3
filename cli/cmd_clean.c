/* cmd_clean.c — `wpack clean DIR [--dry-run]`: remove the temporaries that
 * interrupted wpack runs left directly in DIR (common/outdir.h, wp_sweep). */
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "common/outdir.h"

#define CMD "clean"

typedef struct clean_args {
    const char *dir;
    int dry_run;
} clean_args;

static const cli_operand clean_operands[] = {
    {.name = "DIR", .help = "the directory to clean: where outputs are written, or a build", .off = offsetof(clean_args, dir),
     .required = 1, .complete = "dir"},
    {0},
};
static const cli_option clean_opts[] = {
    {.name = "dry-run", .short_name = 'n', .kind = CLI_FLAG, .off = offsetof(clean_args, dry_run),
     .help = "list what would be done, change nothing"},
    {0},
};

typedef struct clean_ctx {
    const char *dir;
    int json, dry_run;
    cJSON *lists[5];   /* by wp_sweep_action */
    size_t failed;
} clean_ctx;

static const char *const g_keys[5] = {"removed", "restored", "kept", "busy", "failed"};

static void each(void *ud, const char *name, wp_sweep_action a, uint64_t bytes, const wp_temp_name *t)
{
    clean_ctx *c = ud;
    if (a == WP_SWEEP_FAILED) c->failed++;
    if (c->json) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "name", name);
        cJSON_AddNumberToObject(o, "bytes", (double)bytes);
        cJSON_AddNumberToObject(o, "pid", (double)t->pid);
        if (a == WP_SWEEP_RESTORED) cJSON_AddStringToObject(o, "to", t->target);
        cJSON_AddItemToArray(c->lists[a], o);
        return;
    }
    char b[32];
    cli_bytes(bytes, b, sizeof b);
    const char *dir = c->dir;
    switch (a) {
    case WP_SWEEP_REMOVED:
        printf("%s %s/%s (%s; process %ld is gone)\n", c->dry_run ? "would remove" : "removed", dir, name, b, t->pid);
        break;
    case WP_SWEEP_RESTORED:
        printf("%s %s/%s from %s (moved aside by an interrupted replace; process %ld is gone)\n",
               c->dry_run ? "would put back" : "put back", dir, t->target, name, t->pid);
        break;
    case WP_SWEEP_KEPT:
        printf("left %s/%s (%s): finished output kept because its name was taken; yours to move or remove\n", dir,
               name, b);
        break;
    case WP_SWEEP_BUSY:
        printf("left %s/%s (%s): process %ld is still writing it\n", dir, name, b, t->pid);
        break;
    case WP_SWEEP_FAILED:
        fprintf(stderr, "wpack %s: %s/%s: stale (process %ld is gone) but could not be removed\n", CMD, dir, name,
                t->pid);
        break;
    }
}

static int clean_run(cli_ctx *cx, void *va)
{
    const clean_args *a = va;
    clean_ctx c = {.dir = a->dir, .json = cx->json, .dry_run = a->dry_run};
    for (int i = 0; i < 5 && c.json; i++) c.lists[i] = cJSON_CreateArray();
    wp_err e = {0};
    wp_reclaim r = {0};
    int rc = wp_sweep(a->dir, a->dry_run, each, &c, &r, &e);
    int code = WP_EXIT_OK;
    if (rc) code = cli_error(CMD, &e);
    else if (c.failed)
        code = cli_fail(CMD, WP_EXIT_BAD, "%s: %zu stale temporar%s could not be removed", a->dir, c.failed,
                        c.failed == 1 ? "y" : "ies");
    if (c.json) {
        cJSON *j = cJSON_CreateObject();
        cJSON_AddStringToObject(j, "dir", a->dir);
        cJSON_AddBoolToObject(j, "dry_run", a->dry_run);
        for (int i = 0; i < 5; i++) cJSON_AddItemToObject(j, g_keys[i], c.lists[i]);
        cJSON_AddNumberToObject(j, "entries", (double)r.entries);
        cJSON_AddNumberToObject(j, "bytes", (double)r.bytes);
        cli_print_json(j);
    } else if (!rc) {
        char b[32];
        if (r.entries)
            printf("%s: %s %llu stale temporar%s, %s\n", a->dir, a->dry_run ? "would remove" : "removed",
                   (unsigned long long)r.entries, r.entries == 1 ? "y" : "ies", cli_bytes(r.bytes, b, sizeof b));
        else
            printf("%s: no stale temporaries\n", a->dir);
    }
    return code;
}

const cli_command cli_cmd_clean = {
    .name = "clean",
    .summary = "remove what interrupted wpack runs left in a directory",
    .about = "Remove the temporaries that interrupted wpack runs left directly in DIR: the\n"
             ".NAME.tmp.<pid>-<start>.* files and directories of a convert, pack, unpack, synth or\n"
             "sign that was killed.  Only those whose process is gone are touched (the pid and\n"
             "its start time are in the name); a previous output that an interrupted replace had\n"
             "moved aside (.NAME.old.*) is put back at NAME when NAME is missing.  Finished\n"
             "outputs kept because their name was taken (.NAME.kept.*) are listed, never removed.\n"
             "Every command that writes into a directory does this there first, on its own.",
    .operands = clean_operands,
    .options = clean_opts,
    .args_size = sizeof(clean_args),
    .run = clean_run,
};
