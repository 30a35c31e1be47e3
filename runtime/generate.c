/*
 * generate.c — greedy generation over the public model API (runtime/runtime.h):
 * prefill every prompt, then choose, report and feed one token per sequence
 * per step until each has max_new tokens or stopped at end-of-sequence.
 */
#include <stdlib.h>
#include <string.h>

#include "runtime/runtime.h"

typedef struct gen {
    wp_model *m;
    const wp_generate_opts *o;
    int nseq, V, eos, n_top;
    wp_seq **seq;             /* [nseq] */
    float *logits;            /* [nseq, V]: each sequence's latest logits */
    int32_t *top;             /* [n_top] */
    /* the next decode step: rows[i] = the sequence fed tok[i] */
    int *rows;
    wp_seq **act;
    int32_t *tok;
    float *step_logits;       /* [nseq, V] */
    wp_generate_result *out;
} gen;

/* The k largest logits, best first (ties: lower id); ids[0] is the argmax. */
static void top_logits(const float *l, int V, int k, int32_t *ids)
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

static int argmax(const float *l, int V)
{
    int best = 0;
    for (int v = 1; v < V; v++) best = l[v] > l[best] ? v : best;
    return best;
}

static int check_args(const wp_generate_opts *o, const int32_t *const *prompts, const int *lens,
                      int nseq, wp_err *e)
{
    if (nseq < 1) return wp_fail(e, WP_EUSAGE, "generate: no prompt");
    if (o->max_new < 0)
        return wp_fail(e, WP_EUSAGE, "generate: %d new tokens asked for, must be >= 0", o->max_new);
    for (int b = 0; b < nseq; b++)
        if (lens[b] < 1 || !prompts[b])
            return wp_fail(e, WP_EUSAGE, "generate: prompt %d is empty", b);
    return 0;
}

static int gen_alloc(gen *g, const int *lens, wp_err *e)
{
    const size_t n = (size_t)g->nseq, V = (size_t)g->V;
    wp_generate_result *r = g->out;
    g->seq = calloc(n, sizeof *g->seq);
    g->logits = malloc(sizeof(float) * V * n);
    g->step_logits = malloc(sizeof(float) * V * n);
    g->top = malloc(sizeof(int32_t) * (size_t)(g->n_top ? g->n_top : 1));
    g->rows = malloc(sizeof(int) * n);
    g->act = malloc(sizeof(wp_seq *) * n);
    g->tok = malloc(sizeof(int32_t) * n);
    r->seqs = calloc(n, sizeof *r->seqs);
    if (!g->seq || !g->logits || !g->step_logits || !g->top || !g->rows || !g->act || !g->tok ||
        !r->seqs)
        return wp_oom(e, "generation buffers");
    r->nseq = g->nseq;
    for (int b = 0; b < g->nseq; b++) {
        r->seqs[b].tokens = malloc(sizeof(int32_t) * (size_t)(g->o->max_new ? g->o->max_new : 1));
        if (!r->seqs[b].tokens) return wp_oom(e, "generated tokens");
    }
    for (int b = 0; b < g->nseq; b++) {
        int rc = wp_seq_new(&g->seq[b], g->m, lens[b] + g->o->max_new, e);
        if (rc) return rc;
    }
    return 0;
}

static void gen_free(gen *g)
{
    for (int b = 0; g->seq && b < g->nseq; b++) wp_seq_free(g->seq[b]);
    free(g->seq);
    free(g->logits);
    free(g->step_logits);
    free(g->top);
    free(g->rows);
    free(g->act);
    free(g->tok);
}

static int prefill(gen *g, const int32_t *const *prompts, const int *lens, wp_err *e)
{
    const double t0 = wp_now();
    for (int b = 0; b < g->nseq; b++) {
        int rc = wp_model_forward(g->m, g->seq[b], prompts[b], lens[b],
                                  g->logits + (size_t)b * g->V, NULL, e);
        if (rc) return rc;
    }
    g->out->prefill_seconds = wp_now() - t0;
    if (g->o->on_prefill) g->o->on_prefill(g->o->ud, g->out->prefill_seconds);
    return 0;
}

/* Step k: every live sequence picks its token from its logits and reports it;
 * those that go on (no end-of-sequence, another token still wanted) form the
 * next decode step's rows.  Returns how many rows. */
static int choose(gen *g, int k)
{
    const wp_generate_opts *o = g->o;
    int na = 0;
    for (int b = 0; b < g->nseq; b++) {
        wp_generate_seq *s = &g->out->seqs[b];
        if (s->eos) continue;
        const float *l = g->logits + (size_t)b * g->V;
        int32_t best;
        if (g->n_top) {
            top_logits(l, g->V, g->n_top, g->top);
            best = g->top[0];
        } else {
            best = argmax(l, g->V);
        }
        s->tokens[s->n++] = best;
        if (o->on_token) {
            /* k tokens fed since the prompt: the choice goes to position len + k */
            wp_generate_step st = {.seq = b, .index = k, .pos = wp_seq_pos(g->seq[b]),
                                   .token = best, .logits = l, .n_top = g->n_top,
                                   .top = g->n_top ? g->top : NULL};
            o->on_token(o->ud, &st);
        }
        if (!o->ignore_eos && best == g->eos) {
            s->eos = 1;
        } else if (k + 1 < o->max_new) {
            g->rows[na] = b;
            g->act[na] = g->seq[b];
            g->tok[na++] = best;
        }
    }
    return na;
}

/* Feed the na chosen tokens: one sequence alone through wp_model_forward,
 * several as one batch. */
static int decode(gen *g, int na, wp_err *e)
{
    const size_t V = (size_t)g->V;
    if (g->nseq == 1) return wp_model_forward(g->m, g->seq[0], g->tok, 1, g->logits, NULL, e);
    int rc = wp_model_decode_batch(g->m, g->act, g->tok, na, g->step_logits, e);
    for (int i = 0; !rc && i < na; i++)
        memcpy(g->logits + (size_t)g->rows[i] * V, g->step_logits + (size_t)i * V,
               sizeof(float) * V);
    return rc;
}

int wp_generate(wp_model *m, const wp_generate_opts *o, const int32_t *const *prompts,
                const int *lens, int nseq, wp_generate_result *out, wp_err *e)
{
    memset(out, 0, sizeof *out);
    int rc = check_args(o, prompts, lens, nseq, e);
    if (rc) return rc;
    const wp_config *c = wp_model_config(m);
    gen g = {.m = m, .o = o, .nseq = nseq, .V = c->vocab_size, .eos = c->eos_token_id,
             .out = out};
    g.n_top = o->top_k <= 0 ? 0 : o->top_k < g.V ? o->top_k : g.V;
    if (!(rc = gen_alloc(&g, lens, e))) rc = prefill(&g, prompts, lens, e);
    const double t0 = wp_now();
    for (int k = 0; !rc && k < o->max_new; k++) {
        const int na = choose(&g, k);
        if (!na) break;
        if (!(rc = decode(&g, na, e))) out->decode_tokens += na;
    }
    out->decode_seconds = wp_now() - t0;
    gen_free(&g);
    if (rc) wp_generate_result_free(out);
    return rc;
}

void wp_generate_result_free(wp_generate_result *r)
{
    for (int b = 0; r->seqs && b < r->nseq; b++) free(r->seqs[b].tokens);
    free(r->seqs);
    memset(r, 0, sizeof *r);
}
