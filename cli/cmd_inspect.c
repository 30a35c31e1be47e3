/*
 * cmd_inspect.c — `wpack inspect PATH [--tensors] [--json]`: what a
 * checkpoint holds and whether it is the checkpoint its config.json
 * describes; what a build (a directory, a lone .wpk) or a .wpkz holds, tensor
 * by tensor.
 *
 * Headers only: the strict readers validate every header and index on open;
 * no tensor byte is read.  What PATH is comes from its magic, not its name
 * (a .wpk renamed is still a .wpk).  Exit 0 ok, 1 inventory problems, 2
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
#include "cli/pack_report.h"
#include "cli/tensor_list.h"
#include "common/outdir.h"
#include "convert/convert.h"
#include "format/pack.h"
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

/* What PATH is: a build (a directory wpack made, or a .wpk container), a
 * .wpkz archive, or a checkpoint.  By magic first, so a renamed container is
 * still one; by name for what has no readable magic (a truncated .wpk gets
 * the container reader's message, not the safetensors reader's). */
typedef enum { IN_CKPT, IN_BUILD, IN_WPKZ } in_kind;
static in_kind kind_of(const char *path)
{
    switch (wpz_sniff(path)) {
    case WPZ_FILE_WPK: return IN_BUILD;
    case WPZ_FILE_WPKZ: return IN_WPKZ;
    default: break;
    }
    if (wp_outdir_is_build(path) || wp_str_ends_with(path, ".wpk")) return IN_BUILD;
    if (wp_str_ends_with(path, ".wpkz")) return IN_WPKZ;
    return IN_CKPT;
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

/* The summary, then every tensor (the JSON document's "tensor_list"). */
static int inspect_build(const char *path, int json)
{
    wp_err e = {0};
    wp_build *b = NULL;
    wp_build_summary s;
    wp_tensor_list l;
    memset(&s, 0, sizeof s);
    memset(&l, 0, sizeof l);
    int rc = wp_build_open(&b, path, &e);
    if (!rc) rc = wp_build_summarise(b, &s, &e);
    if (!rc) rc = wp_build_list(b, &l, &e);
    if (!rc && json) {
        cJSON *doc = wp_build_summary_json(path, &s), *t = wp_tensor_list_json(&l);
        if (!doc || !t || !cJSON_AddItemToObject(doc, "tensor_list", t)) {
            cJSON_Delete(t);
            cJSON_Delete(doc);
            rc = wp_oom(&e, "the JSON document");
        } else {
            cli_print_json(doc);
        }
    } else if (!rc) {
        print_build(path, &s);
        printf("tensors:\n");
        cli_tensor_list_print(&l);
    }
    wp_tensor_list_free(&l);
    wp_build_summary_free(&s);
    wp_build_close(b);
    if (rc) return unreadable(&e);
    return WP_EXIT_OK;
}

/* A .wpkz: its index's figures (as `unpack --list`), then every tensor, from
 * the index and the .wpk header regions it holds (nothing else decompressed). */
static int inspect_wpkz(const char *path, int json)
{
    wp_err e = {0};
    wpz_stats st;
    wp_tensor_list l;
    memset(&st, 0, sizeof st);
    memset(&l, 0, sizeof l);
    int rc = wpz_stat(path, &st, &e);
    if (!rc) rc = wp_wpkz_list(path, &l, &e);
    if (!rc && json) {
        cJSON *doc = cli_wpz_stats_json(&st), *t = wp_tensor_list_json(&l);
        if (!doc || !t || !cJSON_AddItemToObject(doc, "tensor_list", t)) {
            cJSON_Delete(t);
            cJSON_Delete(doc);
            rc = wp_oom(&e, "the JSON document");
        } else {
            cJSON_AddStringToObject(doc, "path", path);
            cJSON_AddStringToObject(doc, "kind", "wpkz");
            cli_print_json(doc);
        }
    } else if (!rc) {
        printf("%s: .wpkz archive, %llu file%s, %llu tensors in %zu .wpk file%s\n", path,
               (unsigned long long)st.files, st.files == 1 ? "" : "s", (unsigned long long)st.tensors,
               l.n_files, l.n_files == 1 ? "" : "s");
        cli_wpz_stats_print(&st, 0, "listed");
        printf("tensors:\n");
        cli_tensor_list_print(&l);
    }
    wp_tensor_list_free(&l);
    if (rc) return unreadable(&e);
    return WP_EXIT_OK;
}

/* --tensors on a checkpoint: every safetensors tensor (name order), with its
 * shard.  Adds "tensor_list" to doc when given, else prints the table. */
static int list_ckpt(const char *path, cJSON *doc)
{
    wp_err e = {0};
    wp_ckpt *k = NULL;
    if (wp_ckpt_open(&k, path, &e)) return unreadable(&e);
    size_t n = wp_ckpt_count(k);
    int wn = 4, wd = 5, ws = 5, wb = 5, wo = 6;
    char sh[256];
    cJSON *arr = doc ? cJSON_AddArrayToObject(doc, "tensor_list") : NULL;
    for (size_t pass = doc ? 1 : 0; pass < 2; pass++) {
        if (pass == 1 && !doc)
            printf("%-*s  %-*s  %-*s  %*s  %*s  file\n", wn, "name", wd, "dtype", ws, "shape", wb, "bytes", wo, "offset");
        for (size_t i = 0; i < n; i++) {
            const wp_tensor_info *t = wp_ckpt_tensor(k, i);
            const char *fp = wp_st_path(wp_ckpt_file(k, (size_t)t->file)), *slash = strrchr(fp, '/');
            const char *file = slash ? slash + 1 : fp;
            size_t at = (size_t)snprintf(sh, sizeof sh, "[");
            for (int d = 0; d < t->ndim && at < sizeof sh; d++)
                at += (size_t)snprintf(sh + at, sizeof sh - at, "%s%llu", d ? ", " : "", (unsigned long long)t->shape[d]);
            if (at < sizeof sh) snprintf(sh + at, sizeof sh - at, "]");
            if (pass == 0) {
                char num[24];
                int w;
                if ((w = (int)strlen(t->name)) > wn) wn = w;
                if ((w = (int)strlen(wp_dtype_name(t->dtype))) > wd) wd = w;
                if ((w = (int)strlen(sh)) > ws) ws = w;
                if ((w = snprintf(num, sizeof num, "%llu", (unsigned long long)t->nbytes)) > wb) wb = w;
                if ((w = snprintf(num, sizeof num, "%llu", (unsigned long long)t->offset)) > wo) wo = w;
            } else if (doc) {
                cJSON *o = cJSON_CreateObject();
                if (!arr || !o || !cJSON_AddItemToArray(arr, o)) {
                    cJSON_Delete(o);
                    break;
                }
                cJSON_AddStringToObject(o, "name", t->name);
                cJSON_AddStringToObject(o, "dtype", wp_dtype_name(t->dtype));
                cJSON *s = cJSON_AddArrayToObject(o, "shape");
                for (int d = 0; s && d < t->ndim; d++) cJSON_AddItemToArray(s, cJSON_CreateNumber((double)t->shape[d]));
                cJSON_AddNumberToObject(o, "bytes", (double)t->nbytes);
                cJSON_AddNumberToObject(o, "offset", (double)t->offset);
                cJSON_AddStringToObject(o, "file", file);
            } else {
                printf("%-*s  %-*s  %-*s  %*llu  %*llu  %s\n", wn, t->name, wd, wp_dtype_name(t->dtype), ws, sh, wb,
                       (unsigned long long)t->nbytes, wo, (unsigned long long)t->offset, file);
            }
        }
    }
    wp_ckpt_close(k);
    return 0;
}

typedef struct inspect_args {
    const char *path;
    int deep, threads, tensors;
} inspect_args;

static const cli_operand inspect_operands[] = {
    {.name = "PATH", .off = offsetof(inspect_args, path), .required = 1, .complete = "file",
     .help = "a checkpoint directory (model.safetensors.index.json + shards, or a single\n"
             "model.safetensors; config.json required), one .safetensors file, a\n"
             "wpack build (a build directory or a lone .wpk), or a .wpkz"},
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
    {.name = "tensors", .kind = CLI_FLAG, .off = IA(tensors),
     .help = "also list a checkpoint's tensors: name, dtype, shape, bytes, offset,\n"
             "shard (a build's and a .wpkz's are always listed)"},
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
    in_kind kind = kind_of(path);
    if (kind != IN_CKPT && a->deep)
        return cli_usage(CMD, "--deep reads a checkpoint's tensors; a %s's are checked by 'wpack %s %s'",
                         kind == IN_WPKZ ? ".wpkz" : "build", kind == IN_WPKZ ? "unpack" : "verify", path);
    if (kind == IN_BUILD) return inspect_build(path, json);
    if (kind == IN_WPKZ) return inspect_wpkz(path, json);

    wp_ckpt_summary *s;
    wp_err e = {0};
    if (wp_ckpt_summarise(path, &s, &e)) {
        return unreadable(&e);
    }
    cJSON *doc = json ? wp_ckpt_summary_json(s) : NULL;
    if (!json) print_human(s, c->verbose);
    int rc = s->have_config && wp_ckpt_summary_problems(s) ? WP_EXIT_FAIL : WP_EXIT_OK;
    if (a->tensors) {
        fflush(stdout);
        if (!json) printf("tensors:\n");
        int lrc = list_ckpt(path, doc);
        if (lrc) {
            cJSON_Delete(doc);
            wp_ckpt_summary_free(s);
            return lrc;
        }
    }
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
    .summary = "check a checkpoint's inventory; list a build's or a .wpkz's tensors",
    .about = "Summarise a DeepSeek-V4 checkpoint from its headers alone (no tensor data is\n"
             "read): tensor count and bytes, shards, dtype histogram, tensor families,\n"
             "layer kinds, and the check of its tensors against the inventory config.json\n"
             "implies (spec §2.4).\n"
             "\n"
             "For a single .safetensors file with a config.json beside it, its tensors are\n"
             "checked (unexpected, mis-shaped, mis-typed; tensors it lacks may live in other\n"
             "shards); without one the summary has no check.\n"
             "\n"
             "For a build (a directory or a lone .wpk, recognised by its magic whatever its\n"
             "name): its files, tensors and bytes per encoding, the manifest's root digest\n"
             "and which signature files it has (checking them is `wpack verify`), then\n"
             "every tensor: name, encoding, logical shape, bytes, offset, the first 12 hex\n"
             "digits of its recorded SHA-256 (--json: all of it), its file when there are\n"
             "several, and for stacked experts their count and source names.  For a .wpkz:\n"
             "the index's figures per encoding, then the same table with compressed bytes,\n"
             "from the index and the .wpk headers alone (nothing else is decompressed).\n"
             "With --tensors, a checkpoint's tensors are listed too.\n"
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
