/* cmd_run.c — `wpack run`: prefill a prompt and decode greedily with the
 * reference CPU runtime (runtime/runtime.h). */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "runtime/runtime.h"
#include "runtime/source_wpk.h"
#include "cli/rt_args.h"

/* Open the source, move it into huge pages if asked (before the model takes
 * its weight views, which must point into the huge-page copy), load the model. */
static int open_model(const char *build, const wp_rt_opts *ro, int hugepages, wp_tsrc **src,
                      wp_model **m, wp_err *e)
{
    int rc = wp_tsrc_open(src, build, e);
    if (!rc && hugepages) {
        char notice[600];
        rc = wp_tsrc_hugepages(*src, notice, sizeof notice, e);
        if (!rc && notice[0]) fprintf(stderr, "wpack run: %s\n", notice);
    }
    return rc ? rc : wp_model_load(m, *src, ro, e);
}

/* Token ids separated by commas and/or white space. */
static int parse_tokens(const char *s, const char *what, int32_t **out, int *n)
{
    int cap = 0;
    *out = NULL;
    *n = 0;
    for (const char *p = s;;) {
        while (*p == ',' || *p == ' ' || *p == '\n' || *p == '\t' || *p == '\r') p++;
        if (!*p) break;
        char *end;
        long v = strtol(p, &end, 10);
        if (end == p || v < 0 || v > INT32_MAX ||
            (*end && *end != ',' && *end != ' ' && *end != '\n' && *end != '\t' && *end != '\r')) {
            free(*out);
            *out = NULL;
            return cli_usage("run", "%s: not a token id at \"%.16s\"", what, p);
        }
        if (*n == cap) {
            cap = cap ? cap * 2 : 64;
            int32_t *t = realloc(*out, sizeof(int32_t) * cap);
            if (!t) {
                free(*out);
                *out = NULL;
                return cli_usage("run", "%s: out of memory", what);
            }
            *out = t;
        }
        (*out)[(*n)++] = (int32_t)v;
        p = end;
    }
    if (!*n) return cli_usage("run", "%s: no tokens", what);
    return 0;
}

/* The k largest logits, best first (ties: lower id). */
static void top_logits(const float *l, int V, int k, int *ids)
{
    for (int i = 0; i < k; i++) {
        int b = -1;
        for (int v = 0; v < V; v++) {
            int used = 0;
            for (int j = 0; j < i; j++) used |= ids[j] == v;
            if (!used && (b < 0 || l[v] > l[b])) b = v;
        }
        ids[i] = b;
    }
}

/* Several prompts (one per non-empty line of --tokens-file): each prefilled on
 * its own, then all decoded together, one wp_model_decode_batch step per token
 * (the rows share every weight read).  A sequence that emits EOS leaves the
 * batch. */
static int run_batch(const char *build, const wp_rt_opts *ro, int hugepages, char *text,
                     const char *tfile, int max_new, int ignore_eos, int json)
{
    int B = 0, rc = 0;
    int32_t *pr[256];
    int np[256];
    for (char *line = text, *next; line && *line && !rc; line = next) {
        next = strchr(line, '\n');
        if (next) *next++ = 0;
        if (!line[strspn(line, " ,\t\r")]) continue;
        if (B == 256) {
            rc = cli_usage("run", "%s: more than 256 prompts", tfile);
            break;
        }
        if ((rc = parse_tokens(line, tfile, &pr[B], &np[B]))) break;
        B++;
    }
    wp_err e = {0};
    wp_tsrc *src = NULL;
    wp_model *m = NULL;
    wp_seq *seq[256] = {0}, *act[256];
    int32_t *gen = NULL, tok[256];
    float *logits = NULL;
    int ng[256] = {0}, done[256] = {0}, maxp = 0, cli_rc = rc;
    if (rc) goto out;
    for (int b = 0; b < B; b++) maxp = np[b] > maxp ? np[b] : maxp;
    if ((rc = open_model(build, ro, hugepages, &src, &m, &e))) goto fail;
    const int V = wp_model_config(m)->vocab_size, eos = wp_model_config(m)->eos_token_id;
    logits = malloc(sizeof(float) * V * B);
    gen = malloc(sizeof(int32_t) * B * (max_new + 1));
    if (!logits || !gen) {
        rc = wp_fail(&e, WP_ENOMEM, "out of memory");
        goto fail;
    }
    double t0 = wp_now();
    for (int b = 0; b < B; b++) {
        if ((rc = wp_seq_new(&seq[b], m, np[b] + max_new, &e)) ||
            (rc = wp_model_forward(m, seq[b], pr[b], np[b], logits + (size_t)b * V, NULL, &e)))
            goto fail;
    }
    const double t_prefill = wp_now() - t0;
    int decoded = 0;
    t0 = wp_now();
    for (int k = 0; k < max_new; k++) {
        int na = 0, row[256];
        for (int b = 0; b < B; b++) {
            if (done[b]) continue;
            const float *l = logits + (size_t)b * V;
            int best = 0;
            for (int v = 1; v < V; v++) best = l[v] > l[best] ? v : best;
            gen[b * (max_new + 1) + ng[b]++] = best;
            if (!ignore_eos && best == eos) done[b] = 1;
            else if (k + 1 < max_new) {
                row[na] = b;
                act[na] = seq[b];
                tok[na++] = best;
            }
        }
        if (!na) break;
        float *lb = malloc(sizeof(float) * V * na);
        if (!lb || (rc = wp_model_decode_batch(m, act, tok, na, lb, &e))) {
            free(lb);
            if (!rc) rc = wp_fail(&e, WP_ENOMEM, "out of memory");
            goto fail;
        }
        for (int i = 0; i < na; i++) memcpy(logits + (size_t)row[i] * V, lb + (size_t)i * V, sizeof(float) * V);
        free(lb);
        decoded += na;
    }
    const double t_decode = wp_now() - t0;
    if (json) {
        cJSON *doc = cJSON_CreateObject(), *arr;
        cJSON_AddStringToObject(doc, "build", build);
        cJSON_AddStringToObject(doc, "kernels", wp_model_kernels(m));
        cJSON_AddNumberToObject(doc, "threads", ro->threads);
        arr = cJSON_AddArrayToObject(doc, "sequences");
        for (int b = 0; b < B; b++) {
            cJSON *o = cJSON_CreateObject(), *g = cJSON_AddArrayToObject(o, "generated");
            cJSON_AddNumberToObject(o, "prompt_tokens", np[b]);
            for (int i = 0; i < ng[b]; i++)
                cJSON_AddItemToArray(g, cJSON_CreateNumber(gen[b * (max_new + 1) + i]));
            cJSON_AddStringToObject(o, "stop", done[b] ? "eos" : "max-new");
            cJSON_AddItemToArray(arr, o);
        }
        cJSON_AddNumberToObject(doc, "prefill_seconds", t_prefill);
        cJSON_AddNumberToObject(doc, "decode_batch_steps", decoded);
        cJSON_AddNumberToObject(doc, "decode_seconds", t_decode);
        cJSON_AddNumberToObject(doc, "decode_tokens_per_s", t_decode > 0 ? decoded / t_decode : 0);
        cli_print_json(doc);
    } else {
        printf("model: %s, %d sequences, kernels %s\n", build, B, wp_model_kernels(m));
        for (int b = 0; b < B; b++) {
            printf("seq %d (%d prompt tokens) generated:", b, np[b]);
            for (int i = 0; i < ng[b]; i++) printf(" %d", gen[b * (max_new + 1) + i]);
            printf("%s\n", done[b] ? " (eos)" : "");
        }
        printf("prefill: %.3f s; batched decode: %d tokens in %.3f s (%.1f tokens/s)\n", t_prefill,
               decoded, t_decode, t_decode > 0 ? decoded / t_decode : 0);
    }
    goto out;
fail:
    cli_rc = cli_error("run", &e);
out:
    for (int b = 0; b < B; b++) {
        free(pr[b]);
        wp_seq_free(seq[b]);
    }
    free(gen);
    free(logits);
    wp_model_free(m);
    wp_tsrc_close(src);
    return cli_rc;
}

typedef struct run_args {
    const char *build, *toks, *tfile;
    int max_new, topk, ignore_eos, hugepages;
    cli_rt_args rt;
} run_args;

#define RA(f) offsetof(run_args, f)
static const cli_operand run_operands[] = {
    {.name = "BUILD", .help = "a wpack build (directory or .wpk) or an HF checkpoint directory", .off = RA(build),
     .required = 1, .complete = "file"},
    {0},
};
static const cli_option run_opts[] = {
    {.name = "tokens", .kind = CLI_STR, .off = RA(toks), .arg = "LIST", .help = "prompt token ids, comma separated"},
    {.name = "tokens-file", .kind = CLI_STR, .off = RA(tfile), .arg = "FILE", .complete = "file",
     .help = "prompt token ids separated by commas or spaces; several lines =\n"
             "several sequences, prefilled one by one and then decoded together\n"
             "(one batched step per token)"},
    {.name = "max-new", .short_name = 'n', .kind = CLI_INT, .off = RA(max_new), .arg = "N", .lo = 0, .hi = 1000000,
     .def = "16", .help = "tokens to generate (0 = prefill only)"},
    {.name = "top", .kind = CLI_INT, .off = RA(topk), .arg = "K", .lo = 1, .hi = 100, .def = "5",
     .help = "logits to show per step"},
    CLI_RT_OPTS(run_args),
    {.name = "hugepages", .kind = CLI_FLAG, .off = RA(hugepages),
     .help = "copy a .wpk build's weights into huge pages first (falls back to the\n"
             "plain mapping with a one-line notice)"},
    {.name = "ignore-eos", .kind = CLI_FLAG, .off = RA(ignore_eos), .help = "keep going after the end-of-sequence token"},
    {0},
};

static int run_run(cli_ctx *cx, void *va)
{
    const run_args *a = va;
    const char *build = a->build, *toks = a->toks, *tfile = a->tfile;
    int json = cx->json, max_new = a->max_new, topk = a->topk, ignore_eos = a->ignore_eos, hugepages = a->hugepages;
    wp_rt_opts ro = {.threads = a->rt.threads, .flags = cli_rt_flags(&a->rt)};
    if (!toks == !tfile) return cli_usage("run", "give exactly one of --tokens and --tokens-file");

    wp_err e = {0};
    int32_t *prompt = NULL;
    int np = 0, rc;
    if (tfile) {
        char *text;
        size_t len;
        if (wp_read_small_file(tfile, 256u << 20, &text, &len, &e)) return cli_error("run", &e);
        int lines = 0;
        for (char *p = text; *p;) {       /* non-empty lines: one prompt each */
            char *nl = strchr(p, '\n');
            size_t L = nl ? (size_t)(nl - p) : strlen(p);
            for (size_t i = 0; i < L; i++)
                if (p[i] >= '0' && p[i] <= '9') {
                    lines++;
                    break;
                }
            p += L + (nl != NULL);
        }
        if (lines > 1) {
            rc = run_batch(build, &ro, hugepages, text, tfile, max_new, ignore_eos, json);
            free(text);
            return rc;
        }
        rc = parse_tokens(text, tfile, &prompt, &np);
        free(text);
    } else {
        rc = parse_tokens(toks, "--tokens", &prompt, &np);
    }
    if (rc) return rc;

    wp_tsrc *src = NULL;
    wp_model *m = NULL;
    wp_seq *seq = NULL;
    float *logits = NULL;
    int32_t *gen = NULL;
    cJSON *doc = NULL, *steps = NULL;
    if ((rc = open_model(build, &ro, hugepages, &src, &m, &e))) goto fail;
    const wp_config *c = wp_model_config(m);
    const int V = c->vocab_size;
    if (topk > V) topk = V;
    if ((rc = wp_seq_new(&seq, m, np + max_new, &e))) goto fail;
    logits = malloc(sizeof(float) * V);
    gen = malloc(sizeof(int32_t) * (max_new + 1));
    if (!logits || !gen) {
        rc = wp_fail(&e, WP_ENOMEM, "out of memory");
        goto fail;
    }
    if (json) {
        doc = cJSON_CreateObject();
        cJSON_AddStringToObject(doc, "build", build);
        cJSON_AddStringToObject(doc, "kernels", wp_model_kernels(m));
        cJSON_AddNumberToObject(doc, "threads", ro.threads);
        cJSON_AddNumberToObject(doc, "prompt_tokens", np);
        steps = cJSON_AddArrayToObject(doc, "steps");
    } else {
        printf("model: %s (%s), %d layers, kernels %s, %d thread%s\n", build, src->kind,
               c->n_layers, wp_model_kernels(m), ro.threads, ro.threads == 1 ? "" : "s");
    }
    double t0 = wp_now();
    if ((rc = wp_model_forward(m, seq, prompt, np, logits, NULL, &e))) goto fail;
    double t_prefill = wp_now() - t0;
    if (!json)
        printf("prefill: %d tokens in %.3f s (%.1f tokens/s)\n", np, t_prefill, np / t_prefill);
    int ng = 0, ids[100];
    const char *stop = "max-new";
    t0 = wp_now();
    for (int k = 0; k < max_new; k++) {
        if (k > 0 && (rc = wp_model_forward(m, seq, &gen[k - 1], 1, logits, NULL, &e))) goto fail;
        top_logits(logits, V, topk, ids);
        gen[ng++] = ids[0];
        const int pos = np + k;   /* the position the chosen token will occupy */
        if (json) {
            cJSON *s = cJSON_CreateObject(), *t = cJSON_AddArrayToObject(s, "top");
            cJSON_AddNumberToObject(s, "pos", pos);
            cJSON_AddNumberToObject(s, "token", ids[0]);
            for (int i = 0; i < topk; i++) {
                cJSON *o = cJSON_CreateObject();
                cJSON_AddNumberToObject(o, "id", ids[i]);
                cJSON_AddNumberToObject(o, "logit", logits[ids[i]]);
                cJSON_AddItemToArray(t, o);
            }
            cJSON_AddItemToArray(steps, s);
        } else {
            printf("pos %d: token %d  top:", pos, ids[0]);
            for (int i = 0; i < topk; i++) printf(" %d:%.4f", ids[i], logits[ids[i]]);
            printf("\n");
        }
        if (!ignore_eos && ids[0] == c->eos_token_id) {
            stop = "eos";
            break;
        }
    }
    double t_decode = wp_now() - t0;
    /* decode steps actually run: every generated token but the first came from one */
    const int nd = ng > 1 ? ng - 1 : 0;
    if (json) {
        cJSON *g = cJSON_AddArrayToObject(doc, "generated");
        for (int i = 0; i < ng; i++) cJSON_AddItemToArray(g, cJSON_CreateNumber(gen[i]));
        cJSON_AddStringToObject(doc, "stop", stop);
        cJSON_AddNumberToObject(doc, "prefill_seconds", t_prefill);
        cJSON_AddNumberToObject(doc, "prefill_tokens_per_s", np / t_prefill);
        cJSON_AddNumberToObject(doc, "decode_steps", nd);
        cJSON_AddNumberToObject(doc, "decode_seconds", t_decode);
        cJSON_AddNumberToObject(doc, "decode_tokens_per_s", nd && t_decode > 0 ? nd / t_decode : 0);
        cli_print_json(doc);
        doc = NULL;
    } else {
        printf("generated:");
        for (int i = 0; i < ng; i++) printf(" %d", gen[i]);
        printf("\n");
        if (nd)
            printf("decode: %d steps in %.3f s (%.1f tokens/s), stop: %s\n", nd, t_decode,
                   nd / t_decode, stop);
    }
    rc = 0;
fail:
    cJSON_Delete(doc);
    free(prompt);
    free(logits);
    free(gen);
    wp_seq_free(seq);
    wp_model_free(m);
    wp_tsrc_close(src);
    return rc ? cli_error("run", &e) : WP_EXIT_OK;
}

const cli_command cli_cmd_run = {
    .name = "run",
    .summary = "run the reference CPU runtime: prefill + greedy decode",
    .synopsis = "BUILD --tokens 1,2,3 [options]\nBUILD --tokens-file FILE [options]",
    .about = "Prefill the prompt from position 0, then decode greedily (argmax), printing each\n"
             "chosen token and the top logits.",
    .operands = run_operands,
    .options = run_opts,
    .args_size = sizeof(run_args),
    .run = run_run,
};
