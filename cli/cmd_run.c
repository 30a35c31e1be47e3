/* cmd_run.c — `wpack run`: prefill a prompt and decode greedily with the
 * reference CPU runtime (runtime/runtime.h). */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "runtime/runtime.h"
#include "runtime/source_wpk.h"
#include "runtime/tokens.h"
#include "cli/rt_args.h"

/* Open the source — a build verified against its digests first unless
 * --no-verify — move it into huge pages if asked (before the model takes
 * its weight views, which must point into the huge-page copy), load the model. */
static int open_model(const char *build, const wp_rt_opts *ro, int hugepages, int no_verify, int json,
                      wp_tsrc **src, wp_model **m, wp_err *e)
{
    int rc = cli_open_source("run", build, no_verify, json, src, e);
    if (!rc && hugepages) {
        char notice[600];
        rc = wp_tsrc_hugepages(*src, notice, sizeof notice, e);
        if (!rc && notice[0]) fprintf(stderr, "wpack run: %s\n", notice);
    }
    return rc ? rc : wp_model_load(m, *src, ro, e);
}

/* The prompts: one (--tokens, or a --tokens-file with one line of ids), or
 * one per line of a --tokens-file with several, decoded together as a batch
 * (the parsers are runtime/tokens.h). */
typedef wp_prompts prompts;

static void prompts_free(prompts *p) { wp_prompts_free(p); }

/* 0, or the exit code after printing why not. */
static int read_prompts(const char *toks, const char *tfile, prompts *p)
{
    wp_err e = {0};
    int rc;
    memset(p, 0, sizeof *p);
    if (!tfile) {
        if (!(rc = wp_tokens_parse(toks, "--tokens", &p->tok[0], &p->len[0], &e))) p->n = 1;
    } else {
        rc = wp_prompts_load(p, tfile, &e);
    }
    if (rc == WP_EUSAGE) return cli_usage("run", "%s", e.msg);
    return rc ? cli_error("run", &e) : 0;
}

/* ---- Output ------------------------------------------------------------------------
 * One prompt: every step as it comes (its top logits), then the totals.  A
 * batch: each sequence's tokens at the end. */
typedef struct run_out {
    const char *build;
    const wp_rt_opts *ro;
    const prompts *p;
    int json;
    cJSON *doc, *steps;       /* one prompt, --json */
} run_out;

static void single_begin(run_out *r, const wp_tsrc *src, const wp_model *m)
{
    const wp_config *c = wp_model_config(m);
    if (!r->json) {
        printf("model: %s (%s), %d layers, kernels %s, %d thread%s\n", r->build, src->kind,
               c->n_layers, wp_model_kernels(m), r->ro->threads, r->ro->threads == 1 ? "" : "s");
        return;
    }
    r->doc = cJSON_CreateObject();
    cJSON_AddStringToObject(r->doc, "build", r->build);
    cJSON_AddStringToObject(r->doc, "verified", cli_verified_word(src));
    cJSON_AddStringToObject(r->doc, "kernels", wp_model_kernels(m));
    cJSON_AddNumberToObject(r->doc, "threads", r->ro->threads);
    cJSON_AddNumberToObject(r->doc, "prompt_tokens", r->p->len[0]);
    r->steps = cJSON_AddArrayToObject(r->doc, "steps");
}

static void single_prefilled(void *ud, double seconds)
{
    const run_out *r = ud;
    const int np = r->p->len[0];
    if (!r->json) printf("prefill: %d tokens in %.3f s (%.1f tokens/s)\n", np, seconds, np / seconds);
}

static void single_step(void *ud, const wp_generate_step *s)
{
    run_out *r = ud;
    if (!r->json) {
        printf("pos %d: token %d  top:", s->pos, s->token);
        for (int i = 0; i < s->n_top; i++) printf(" %d:%.4f", s->top[i], s->logits[s->top[i]]);
        printf("\n");
        return;
    }
    cJSON *o = cJSON_CreateObject(), *t = cJSON_AddArrayToObject(o, "top");
    cJSON_AddNumberToObject(o, "pos", s->pos);
    cJSON_AddNumberToObject(o, "token", s->token);
    for (int i = 0; i < s->n_top; i++) {
        cJSON *x = cJSON_CreateObject();
        cJSON_AddNumberToObject(x, "id", s->top[i]);
        cJSON_AddNumberToObject(x, "logit", s->logits[s->top[i]]);
        cJSON_AddItemToArray(t, x);
    }
    cJSON_AddItemToArray(r->steps, o);
}

static void single_end(run_out *r, const wp_generate_result *g)
{
    const wp_generate_seq *s = &g->seqs[0];
    const char *stop = s->eos ? "eos" : "max-new";
    const int np = r->p->len[0], nd = g->decode_tokens;
    const double tp = g->prefill_seconds, td = g->decode_seconds;
    if (!r->json) {
        printf("generated:");
        for (int i = 0; i < s->n; i++) printf(" %d", s->tokens[i]);
        printf("\n");
        if (nd) printf("decode: %d steps in %.3f s (%.1f tokens/s), stop: %s\n", nd, td, nd / td, stop);
        return;
    }
    cJSON *a = cJSON_AddArrayToObject(r->doc, "generated");
    for (int i = 0; i < s->n; i++) cJSON_AddItemToArray(a, cJSON_CreateNumber(s->tokens[i]));
    cJSON_AddStringToObject(r->doc, "stop", stop);
    cJSON_AddNumberToObject(r->doc, "prefill_seconds", tp);
    cJSON_AddNumberToObject(r->doc, "prefill_tokens_per_s", np / tp);
    cJSON_AddNumberToObject(r->doc, "decode_steps", nd);
    cJSON_AddNumberToObject(r->doc, "decode_seconds", td);
    cJSON_AddNumberToObject(r->doc, "decode_tokens_per_s", nd && td > 0 ? nd / td : 0);
    cli_print_json(r->doc);
    r->doc = NULL;
}

static void batch_print(const run_out *r, const wp_tsrc *src, const wp_model *m, const wp_generate_result *g)
{
    const int B = g->nseq, nd = g->decode_tokens;
    const double td = g->decode_seconds;
    if (!r->json) {
        printf("model: %s, %d sequences, kernels %s\n", r->build, B, wp_model_kernels(m));
        for (int b = 0; b < B; b++) {
            printf("seq %d (%d prompt tokens) generated:", b, r->p->len[b]);
            for (int i = 0; i < g->seqs[b].n; i++) printf(" %d", g->seqs[b].tokens[i]);
            printf("%s\n", g->seqs[b].eos ? " (eos)" : "");
        }
        printf("prefill: %.3f s; batched decode: %d tokens in %.3f s (%.1f tokens/s)\n",
               g->prefill_seconds, nd, td, td > 0 ? nd / td : 0);
        return;
    }
    cJSON *doc = cJSON_CreateObject(), *arr;
    cJSON_AddStringToObject(doc, "build", r->build);
    cJSON_AddStringToObject(doc, "verified", cli_verified_word(src));
    cJSON_AddStringToObject(doc, "kernels", wp_model_kernels(m));
    cJSON_AddNumberToObject(doc, "threads", r->ro->threads);
    arr = cJSON_AddArrayToObject(doc, "sequences");
    for (int b = 0; b < B; b++) {
        cJSON *o = cJSON_CreateObject(), *a = cJSON_AddArrayToObject(o, "generated");
        cJSON_AddNumberToObject(o, "prompt_tokens", r->p->len[b]);
        for (int i = 0; i < g->seqs[b].n; i++)
            cJSON_AddItemToArray(a, cJSON_CreateNumber(g->seqs[b].tokens[i]));
        cJSON_AddStringToObject(o, "stop", g->seqs[b].eos ? "eos" : "max-new");
        cJSON_AddItemToArray(arr, o);
    }
    cJSON_AddNumberToObject(doc, "prefill_seconds", g->prefill_seconds);
    cJSON_AddNumberToObject(doc, "decode_batch_steps", nd);
    cJSON_AddNumberToObject(doc, "decode_seconds", td);
    cJSON_AddNumberToObject(doc, "decode_tokens_per_s", td > 0 ? nd / td : 0);
    cli_print_json(doc);
}

/* Load the model, generate (runtime/runtime.h wp_generate), print. */
static int run_prompts(const char *build, const wp_rt_opts *ro, int hugepages, int no_verify, const prompts *p,
                       const wp_generate_opts *go_in, int json)
{
    wp_err e = {0};
    wp_tsrc *src = NULL;
    wp_model *m = NULL;
    wp_generate_result g = {0};
    run_out out = {.build = build, .ro = ro, .p = p, .json = json};
    wp_generate_opts go = *go_in;
    go.ud = &out;
    if (!p->batch) {
        go.on_prefill = single_prefilled;
        go.on_token = single_step;
    } else {
        go.top_k = 0;
    }
    int rc = open_model(build, ro, hugepages, no_verify, json, &src, &m, &e);
    if (!rc) {
        if (!p->batch) single_begin(&out, src, m);
        rc = wp_generate(m, &go, (const int32_t *const *)p->tok, p->len, p->n, &g, &e);
    }
    if (!rc && p->batch) batch_print(&out, src, m, &g);
    else if (!rc) single_end(&out, &g);
    cJSON_Delete(out.doc);
    wp_generate_result_free(&g);
    wp_model_free(m);
    wp_tsrc_close(src);
    return rc ? cli_error("run", &e) : WP_EXIT_OK;
}

typedef struct run_args {
    const char *build, *toks, *tfile;
    int max_new, topk, ignore_eos, hugepages, no_verify;
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
    {.name = "no-verify", .kind = CLI_FLAG, .off = RA(no_verify),
     .help = "run a build without checking its tensors' digests first (says so\n"
             "on stderr)"},
    {0},
};

static int run_run(cli_ctx *cx, void *va)
{
    const run_args *a = va;
    const char *build = a->build, *toks = a->toks, *tfile = a->tfile;
    int json = cx->json, max_new = a->max_new, topk = a->topk, ignore_eos = a->ignore_eos, hugepages = a->hugepages;
    wp_rt_opts ro = {.threads = a->rt.threads, .flags = cli_rt_flags(&a->rt)};
    if (!toks == !tfile) return cli_usage("run", "give exactly one of --tokens and --tokens-file");

    prompts p;
    int rc = read_prompts(toks, tfile, &p);
    if (!rc) {
        wp_generate_opts go = {.max_new = max_new, .ignore_eos = ignore_eos, .top_k = topk};
        rc = run_prompts(build, &ro, hugepages, a->no_verify, &p, &go, json);
    }
    prompts_free(&p);
    return rc;
}

const cli_command cli_cmd_run = {
    .name = "run",
    .summary = "run the reference CPU runtime: prefill + greedy decode",
    .synopsis = "BUILD --tokens 1,2,3 [options]\nBUILD --tokens-file FILE [options]",
    .about = "Prefill the prompt from position 0, then decode greedily (argmax), printing each\n"
             "chosen token and the top logits.\n"
             "\n"
             "A build is verified first: every tensor's SHA-256 (and its manifest) against\n"
             "its digests, in parallel, as `wpack verify --allow-unsigned` checks it; a\n"
             "corrupt build is refused, naming the tensor.  An HF checkpoint carries no\n"
             "digests: a notice says so (check a download with `wpack verify-source`).",
    .operands = run_operands,
    .options = run_opts,
    .args_size = sizeof(run_args),
    .run = run_run,
};
