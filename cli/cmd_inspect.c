/*
 * cmd_inspect.c — `wpack inspect PATH [--json]`: what a checkpoint holds and
 * whether it is the checkpoint its config.json describes.
 *
 * Headers only: the strict reader validates every header and the index on
 * open; no tensor byte is read.  Exit 0 ok, 1 inventory problems, 2
 * unreadable (the reader's or the config parser's one-line message).
 */
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli/cli.h"
#include "common/outdir.h"
#include "convert/convert.h"
#include "model/summary.h"
#include "trust/build.h"

#define CMD "inspect"
#define HUMAN_ISSUES 20   /* issues listed in human output without -v; --json and -v list up to WP_INV_MAX_ISSUES */

static void print_human(const wp_ckpt_summary *s, int verbose)
{
    size_t cap = verbose ? (size_t)-1 : HUMAN_ISSUES;
    char b1[32], b2[32];
    printf("%s: %zu tensors, %s (%llu bytes of tensor data) in %zu shard%s, %s on disk\n",
           s->path, s->tensors, cli_bytes(s->bytes, b1, sizeof b1),
           (unsigned long long)s->bytes, s->shards, s->shards == 1 ? "" : "s",
           cli_bytes(s->file_bytes, b2, sizeof b2));
    printf("dtypes:\n");
    for (int i = 0; i < WP_DTYPE_COUNT; i++)
        if (s->dtype[i].n)
            printf("  %-10s %8llu tensors  %12s\n", wp_dtype_name((wp_dtype)i),
                   (unsigned long long)s->dtype[i].n, cli_bytes(s->dtype[i].bytes, b1, sizeof b1));
    printf("families:\n");
    for (int i = 0; i < WP_FAM_COUNT; i++)
        if (s->fam[i].n)
            printf("  %-15s %8llu tensors  %12s\n", wp_family_name((wp_family)i),
                   (unsigned long long)s->fam[i].n, cli_bytes(s->fam[i].bytes, b1, sizeof b1));
    if (s->have_config)
        printf("layers: %d main: %d hash-routed; %d CSA, %d HCA, %d sliding-window; %d MTP\n",
               s->cfg.n_layers, s->cfg.n_hash_layers, s->csa, s->hca, s->sw,
               s->cfg.n_mtp_layers);
    else
        printf("layers: %d main (from tensor names; no config)\n", s->max_layer + 1);
    if (s->mtp_blocks)
        printf("MTP: present (%d block%s), %s\n", s->mtp_blocks, s->mtp_blocks == 1 ? "" : "s",
               s->embed_copy && s->head_copy ? "with embed and head copies"
               : s->embed_copy               ? "with an embed copy, no head copy"
               : s->head_copy                ? "with a head copy, no embed copy"
                                             : "without embed/head copies");
    else
        printf("MTP: absent\n");
    if (!s->have_config) {
        printf("inventory: not checked (%s)\n", s->no_config_reason);
        return;
    }
    const wp_inv_report *r = &s->inv;
    if (r->experts.from_checkpoint)   /* V4-Flash-Base or the initial Flash revision */
        printf("experts: %s%s%s%s (config.json has no expert_dtype: read from the checkpoint)\n",
               r->experts.fp8 ? "fp8" : "fp4", r->experts.fp8 ? ", " : "",
               r->experts.fp8 ? wp_dtype_name(r->experts.scale) : "", r->experts.fp8 ? " scales" : "");
    size_t np = wp_ckpt_summary_problems(s);
    const char *scope = s->partial ? "one file: " : "";
    if (!np) {
        printf("inventory: ok (%s%zu expected, %zu found", scope, r->n_expected, r->n_found);
        if (s->partial) printf(", %zu in other files", r->n_missing);
        if (r->n_optional_present) printf(", %zu optional", r->n_optional_present);
        printf(")\n");
        return;
    }
    printf("inventory: %zu problem%s (%s", np, np == 1 ? "" : "s", scope);
    if (!s->partial) printf("%zu missing, ", r->n_missing);
    printf("%zu unexpected, %zu mis-shaped, %zu mis-typed; %zu expected, %zu found)\n",
           r->n_unexpected, r->n_mis_shaped, r->n_mis_typed, r->n_expected, r->n_found);
    size_t k = 0;
    for (size_t i = 0; i < r->n_issues && k < cap; i++) {
        if (!wp_ckpt_summary_shows(s, &r->issues[i])) continue;
        printf("  %-10s %s: %s\n", wp_inv_kind_name(r->issues[i].kind), r->issues[i].name,
               r->issues[i].detail);
        k++;
    }
    if (np > k)
        printf("  ... and %zu more (-v or --json list up to %d of each kind)\n", np - k,
               WP_INV_MAX_ISSUES);
}

/* inspect reads; whatever failed, the input is what is bad: exit 2 (not 1,
 * which means "read fine, inventory differs"), in the JSON document too. */
static int unreadable(const wp_err *e)
{
    cli_error(CMD, e);
    if (cli_cur) cli_cur->err_code = WP_EXIT_BAD;
    return WP_EXIT_BAD;
}

/* A build (a directory wpack made, or a lone .wpk): what it holds, from the
 * containers' directories and the manifest; nothing is hashed. */
static int is_build(const char *path)
{
    size_t n = strlen(path);
    return wp_outdir_is_build(path) || (n > 4 && !strcmp(path + n - 4, ".wpk"));
}

static void print_build(const char *path, const wp_build_summary *s)
{
    char b1[32], b2[32];
    printf("%s: %s, %zu file%s, %llu tensors, %s of tensor data (%s on disk)\n", path,
           s->kind == WP_BUILD_DIR ? "wpack build" : "lone .wpk", s->n_parts, s->n_parts == 1 ? "" : "s",
           (unsigned long long)s->tensors, cli_bytes(s->tensor_bytes, b1, sizeof b1),
           cli_bytes(s->file_bytes, b2, sizeof b2));
    printf("encodings (scales counted with their weights):\n");
    for (size_t i = 0; i < s->n_encs; i++)
        printf("  %-10s %8llu tensors  %12s\n", s->encs[i].name, (unsigned long long)s->encs[i].tensors,
               cli_bytes(s->encs[i].bytes, b1, sizeof b1));
    printf("files:\n");
    for (size_t i = 0; i < s->n_parts; i++)
        printf("  %-40s %8llu tensors  %12s\n", s->parts[i].name, (unsigned long long)s->parts[i].tensors,
               cli_bytes(s->parts[i].file_bytes, b1, sizeof b1));
    if (s->kind == WP_BUILD_DIR)
        printf("manifest: %s%s%s\nsignature: %s%s (not checked here: wpack verify)\n",
               s->has_manifest ? "root sha256 " : "none", s->root, "", s->has_sig ? "manifest.sig" : "none",
               s->has_dsse ? " + manifest.dsse.json" : "");
}

static int inspect_build(const char *path, int json)
{
    wp_err e = {0};
    wp_build *b = NULL;
    wp_build_summary s;
    memset(&s, 0, sizeof s);
    int rc = wp_build_open(&b, path, &e);
    if (!rc) rc = wp_build_summarise(b, &s, &e);
    if (!rc) {
        if (json) cli_print_json(wp_build_summary_json(path, &s));
        else print_build(path, &s);
    }
    wp_build_summary_free(&s);
    wp_build_close(b);
    if (rc) {
        return unreadable(&e);
    }
    return WP_EXIT_OK;
}

typedef struct inspect_args {
    const char *path;
    int deep, threads;
} inspect_args;

static const cli_operand inspect_operands[] = {
    {.name = "PATH", .off = offsetof(inspect_args, path), .required = 1, .complete = "file",
     .help = "a checkpoint directory (model.safetensors.index.json + shards, or a single\n"
             "model.safetensors; config.json required), one .safetensors file, or a\n"
             "wpack build (a build directory or a lone .wpk)"},
    {0},
};

#define IA(f) offsetof(inspect_args, f)
static const cli_option inspect_opts[] = {
    {.name = "deep", .kind = CLI_FLAG, .off = IA(deep),
     .help = "also read every byte of tensor data and check it: no NaN/inf, no NaN\n"
             "E4M3/E8M0 code, no scale that makes its block non-finite, every\n"
             "tid2eid entry an expert id (what convert checks while it reads)"},
    {.name = "threads", .short_name = 't', .kind = CLI_INT, .off = IA(threads), .arg = "N", .lo = 1, .hi = 1024,
     .def_doc = "all online CPUs", .help = "reading threads for --deep"},
    {0},
};

/* --deep: the content checks over every byte (convert/check.c).  Adds
 * "content" to doc (if any); 0, or the exit code of the first problem. */
static int inspect_deep(const char *path, const wp_ckpt_summary *s, int threads, int json, cJSON *doc)
{
    wp_err e = {0};
    wp_ckpt *k = NULL;
    wp_check_report r;
    memset(&r, 0, sizeof r);
    cli_bar bar;
    cli_bar_init(&bar, json, 1);
    wp_check_opts o = {.threads = threads, .progress = cli_progress, .progress_ud = &bar};
    int rc = wp_ckpt_open(&k, path, &e);
    if (!rc) rc = wp_ckpt_check(k, s->have_config ? &s->cfg : NULL, &o, &r, &e);
    cli_bar_end(&bar);
    wp_ckpt_close(k);
    double gbs = r.seconds > 0 ? (double)r.bytes / r.seconds / 1e9 : 0;
    if (doc) {
        cJSON *x = cJSON_AddObjectToObject(doc, "content");
        cJSON_AddBoolToObject(x, "ok", rc == 0);
        cJSON_AddNumberToObject(x, "tensors", (double)r.tensors);
        cJSON_AddNumberToObject(x, "bytes", (double)r.bytes);
        cJSON_AddNumberToObject(x, "seconds", r.seconds);
        cJSON_AddNumberToObject(x, "gb_per_s", gbs);
        cJSON_AddNumberToObject(x, "threads", r.threads);
        cJSON_AddBoolToObject(x, "tid2eid_range_checked", s->have_config);
        cJSON *a = cJSON_AddArrayToObject(x, "problems");
        for (size_t i = 0; i < r.n_bad; i++) cJSON_AddItemToArray(a, cJSON_CreateString(r.bad[i]));
        cJSON_AddNumberToObject(x, "problems_total", (double)r.bad_total);
    }
    int code = 0;
    if (rc) {
        /* every bad tensor on its own line; the first is the error */
        for (size_t i = 1; !json && i < r.n_bad; i++) fprintf(stderr, "wpack " CMD ": %s\n", r.bad[i]);
        code = unreadable(&e);   /* bad data is bad input, whatever the code */
    } else if (!json) {
        char b[32], rt[32];
        printf("content: ok (%llu tensors, %s read in %.2f s, %s, %d thread%s%s)\n",
               (unsigned long long)r.tensors, cli_bytes(r.bytes, b, sizeof b), r.seconds,
               cli_rate(r.bytes / (r.seconds > 0 ? r.seconds : 1), rt, sizeof rt), r.threads,
               r.threads == 1 ? "" : "s", s->have_config ? "" : "; tid2eid range not checked: no config.json");
    }
    wp_check_report_free(&r);
    return code;
}

static int inspect_run(cli_ctx *c, void *va)
{
    const inspect_args *a = va;
    const char *path = a->path;
    int json = c->json;
    if (is_build(path)) {
        if (a->deep)
            return cli_usage(CMD, "--deep reads a checkpoint's tensors; a build's are checked by "
                                  "'wpack verify %s'", path);
        return inspect_build(path, json);
    }

    wp_ckpt_summary *s;
    wp_err e = {0};
    if (wp_ckpt_summarise(path, &s, &e)) {
        return unreadable(&e);
    }
    cJSON *doc = json ? wp_ckpt_summary_json(s) : NULL;
    if (!json) print_human(s, c->verbose);
    int rc = s->have_config && wp_ckpt_summary_problems(s) ? WP_EXIT_FAIL : WP_EXIT_OK;
    if (a->deep) {
        fflush(stdout);
        int drc = inspect_deep(path, s, a->threads, json, doc);
        if (drc) rc = drc;
    }
    if (doc) cli_print_json(doc);
    wp_ckpt_summary_free(s);
    return rc;
}

const cli_command cli_cmd_inspect = {
    .name = "inspect",
    .summary = "summarise a checkpoint and check its inventory against config.json",
    .about = "Summarise a DeepSeek-V4 checkpoint from its headers alone (no tensor data is\n"
             "read): tensor count and bytes, shards, dtype histogram, tensor families,\n"
             "layer kinds, and the check of its tensors against the inventory config.json\n"
             "implies (spec §2.4).\n"
             "\n"
             "For a single .safetensors file with a config.json beside it, its tensors are\n"
             "checked (unexpected, mis-shaped, mis-typed; tensors it lacks may live in other\n"
             "shards); without one the summary has no check.\n"
             "\n"
             "For a build: its files, tensors and bytes per encoding, the manifest's root\n"
             "digest and which signature files it has (checking them is `wpack verify`).\n"
             "\n"
             "With -v, every inventory problem is listed, not only the first 20.\n"
             "\n"
             "With --deep, every byte of tensor data is read too (streaming, in parallel)\n"
             "and checked as convert checks it; a bad value is one line naming the file,\n"
             "the tensor, the rule, the count and the first bad element, and exit 2.",
    .operands = inspect_operands,
    .options = inspect_opts,
    .exit1 = "the tensors differ from the inventory config.json implies (exit 2 when\n"
             "--deep finds a value no weight may hold)",
    .flags = CLI_VERBOSE,
    .args_size = sizeof(inspect_args),
    .run = inspect_run,
};
