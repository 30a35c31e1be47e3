/* golden.c — capture a golden file from a build or a checkpoint (golden.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hf/safetensors.h"
#include "verify/golden.h"
#include "verify/parity.h"
#include "verify/stats.h"

void wp_golden_opts_default(wp_golden_opts *o)
{
    memset(o, 0, sizeof *o);
    o->threads = 1;
    o->positions = 6;
    o->states = 1;
}

typedef struct gw {
    wp_st_writer *w;
    const wp_golden_opts *o;
    size_t V;
    int K;
} gw;

/* Declare one logits field of `rows` rows with leading shape dims[0..nd). */
static int declare_logits(gw *g, const char *name, int nd, const uint64_t *dims, wp_err *e)
{
    uint64_t sh[4];
    memcpy(sh, dims, sizeof(uint64_t) * nd);
    if (!g->K) {
        sh[nd] = g->V;
        return wp_st_writer_add(g->w, name, WP_F32, nd + 1, sh, e);
    }
    char n1[96];
    sh[nd] = (uint64_t)g->K;
    snprintf(n1, sizeof n1, "%s_topk_ids", name);
    int rc = wp_st_writer_add(g->w, n1, WP_I32, nd + 1, sh, e);
    snprintf(n1, sizeof n1, "%s_topk", name);
    if (!rc) rc = wp_st_writer_add(g->w, n1, WP_F32, nd + 1, sh, e);
    snprintf(n1, sizeof n1, "%s_lse", name);
    if (!rc) rc = wp_st_writer_add(g->w, n1, WP_F64, nd, sh, e);
    return rc;
}

/* Write `rows` logits rows (in the order declare_logits declared them). */
static int write_logits(gw *g, const float *rows, size_t n, wp_err *e)
{
    if (!g->K) return wp_st_writer_write(g->w, rows, sizeof(float) * g->V * n, e);
    int rc = 0;
    int32_t ids[WP_STATS_TOPK_MAX];
    for (size_t r = 0; r < n && !rc; r++) {
        wp_topk_ids(rows + r * g->V, g->V, g->K, ids);
        rc = wp_st_writer_write(g->w, ids, sizeof(int32_t) * g->K, e);
    }
    for (size_t r = 0; r < n && !rc; r++) {
        wp_topk_ids(rows + r * g->V, g->V, g->K, ids);
        float v[WP_STATS_TOPK_MAX];
        for (int i = 0; i < g->K; i++) v[i] = rows[r * g->V + ids[i]];
        rc = wp_st_writer_write(g->w, v, sizeof(float) * g->K, e);
    }
    for (size_t r = 0; r < n && !rc; r++) {
        double l = wp_logsumexp(rows + r * g->V, g->V);
        rc = wp_st_writer_write(g->w, &l, sizeof l, e);
    }
    return rc;
}

int wp_golden_write(wp_tsrc *src, const int32_t *const *prompts, const int *lens, int n,
                    const char *path, const wp_golden_opts *o, wp_err *e)
{
    const wp_config *c = &src->cfg;
    if (n < 1) return wp_fail(e, WP_EUSAGE, "no prompt");
    const int S = lens[0];
    for (int b = 0; b < n; b++)
        if (lens[b] != lens[0])
            return wp_fail(e, WP_EUSAGE, "prompt %d has %d tokens, prompt 0 %d: a golden's prompts "
                           "all have the same length", b, lens[b], S);
    if (S < 1) return wp_fail(e, WP_EUSAGE, "prompt 0 is empty");
    if (o->positions < 0 || o->topk < 0 || o->topk > WP_STATS_TOPK_MAX || o->topk > c->vocab_size)
        return wp_fail(e, WP_EUSAGE, "golden: positions %d, topk %d out of range", o->positions, o->topk);
    if (c->n_layers > WP_PARITY_MAX)
        return wp_fail(e, WP_EINVAL, "%s: %d layers: at most %d", src->path, c->n_layers, WP_PARITY_MAX);
    const uint64_t B = (uint64_t)n, row = (uint64_t)c->hc_mult * c->dim, V = (uint64_t)c->vocab_size;
    const uint64_t K = (uint64_t)(c->index_topk > 0 ? c->index_topk : 0), ND = (uint64_t)o->positions;
    const int mtp = c->n_mtp_layers > 0;
    int ncsa = 0;
    for (int l = 0; l < c->n_layers; l++) ncsa += c->compress_ratios[l] == 4 && K;
    /* memory: the states of every prompt at one layer, the selections of
     * every CSA layer, the logits of one prompt */
    uint64_t states_bytes = B * (uint64_t)S * row * 4, sel = (uint64_t)ncsa * B * S * K * 4;
    if (states_bytes > ((uint64_t)4 << 30) || sel > ((uint64_t)4 << 30))
        return wp_fail(e, WP_EUSAGE, "%d prompts of %d tokens: %llu MiB of states and %llu MiB of "
                       "selections at once (at most 4096 each); give fewer or shorter prompts", n, S,
                       (unsigned long long)(states_bytes >> 20), (unsigned long long)(sel >> 20));
    wp_model *m = NULL;
    wp_seq *sq = NULL;
    float *h = NULL, *lg = NULL;
    int32_t *topk = NULL, *dtok = NULL, *ids = NULL, *cap = NULL;
    gw g = {.o = o, .V = (size_t)V, .K = o->topk};
    wp_rt_opts ro = {.threads = o->threads, .flags = o->rt_flags};
    int rc = wp_model_load(&m, src, &ro, e);
    if (!rc) rc = wp_seq_new(&sq, m, S + (int)ND, e);
    if (rc) goto out;
    h = malloc(states_bytes ? states_bytes : 1);
    lg = malloc(sizeof(float) * V * (1 + ND + 1) * B);
    topk = malloc(sel ? sel : 1);
    cap = malloc(sizeof(int32_t) * S * (K ? K : 1));
    dtok = malloc(sizeof(int32_t) * B * (ND ? ND : 1));
    ids = malloc(sizeof(int32_t) * B * S);
    if (!h || !lg || !topk || !cap || !dtok || !ids) {
        rc = wp_oom(e, "golden of %d prompts of %d tokens", n, S);
        goto out;
    }
    float *plog = lg, *dlog = plog + B * V, *mlog = dlog + B * ND * V;
    if ((rc = wp_st_writer_create(&g.w, path, o->force, e))) goto out;
    char ks[16];
    snprintf(ks, sizeof ks, "%d", o->topk);
    if ((rc = wp_st_writer_meta(g.w, "format", "wpack-golden", e)) ||
        (rc = wp_st_writer_meta(g.w, "source", src->path, e)) ||
        (rc = wp_st_writer_meta(g.w, "topk", ks, e)) ||
        (rc = wp_st_writer_meta(g.w, "states", o->states ? "1" : "0", e)))
        goto out;
    /* declarations, in the order the data is written */
    const uint64_t hc = (uint64_t)c->hc_mult, d = (uint64_t)c->dim, nL = (uint64_t)c->n_layers;
    rc = wp_st_writer_add(g.w, "tokens", WP_I32, 2, (uint64_t[]){B, (uint64_t)S}, e);
    if (!rc && o->states) {
        rc = wp_st_writer_add(g.w, "layer_h_in0", WP_F32, 4, (uint64_t[]){B, (uint64_t)S, hc, d}, e);
        if (!rc) rc = wp_st_writer_add(g.w, "layer_h", WP_F32, 5, (uint64_t[]){nL, B, (uint64_t)S, hc, d}, e);
        for (int l = 0; l < c->n_layers && !rc; l++) {
            if (c->compress_ratios[l] != 4 || !K) continue;
            char nm[64];
            snprintf(nm, sizeof nm, "indexer_topk.%d", l);
            rc = wp_st_writer_add(g.w, nm, WP_I32, 3, (uint64_t[]){B, (uint64_t)S, K}, e);
        }
    }
    if (!rc) rc = declare_logits(&g, "prefill_logits", 1, (uint64_t[]){B}, e);
    if (!rc && ND) {
        rc = wp_st_writer_add(g.w, "decode_tokens", WP_I32, 2, (uint64_t[]){B, ND}, e);
        if (!rc) rc = declare_logits(&g, "decode_logits", 2, (uint64_t[]){B, ND}, e);
    }
    if (!rc && mtp) {
        rc = wp_st_writer_add(g.w, "mtp_input_ids", WP_I32, 2, (uint64_t[]){B, (uint64_t)S}, e);
        if (!rc) rc = declare_logits(&g, "mtp_logits", 1, (uint64_t[]){B}, e);
    }
    for (int b = 0; b < n && !rc; b++)
        rc = wp_st_writer_write(g.w, prompts[b], sizeof(int32_t) * S, e);
    if (rc) goto out;
    /* the prefill, layer by layer over every prompt (the same functions as
     * wp_model_forward, so the same bits) */
    for (int b = 0; b < n && !rc; b++) rc = wp_model_embed(m, prompts[b], S, h + (size_t)b * S * row, e);
    if (!rc && o->states) rc = wp_st_writer_write(g.w, h, states_bytes, e);
    int ci = 0;
    for (int l = 0; l < c->n_layers && !rc; l++) {
        const int csa = c->compress_ratios[l] == 4 && K;
        for (int b = 0; b < n && !rc; b++) {
            wp_seq_reset(sq);
            if (csa && (rc = wp_seq_capture_topk(sq, l, cap, S, e))) break;
            rc = wp_model_layer(m, sq, l, h + (size_t)b * S * row, prompts[b], S, e);
            if (csa) wp_seq_capture_topk(sq, l, NULL, 0, NULL);
            int32_t *t = topk + (((size_t)ci * B + b) * S) * K;
            for (size_t i = 0; csa && i < (size_t)S * K; i++) t[i] = cap[i] >= 0 ? cap[i] + S : -1;
        }
        ci += csa;
        if (!rc && o->states) rc = wp_st_writer_write(g.w, h, states_bytes, e);
    }
    if (!rc && o->states && sel) rc = wp_st_writer_write(g.w, topk, sel, e);
    /* logits: the last prompt position, then the greedy decode (a fresh
     * prefill: the layer-by-layer run kept no caches), then MTP from the trunk */
    for (int b = 0; b < n && !rc; b++) {
        rc = wp_model_head(m, h + ((size_t)b * S + S - 1) * row, 1, plog + b * V, e);
        if (rc || !ND) continue;
        wp_seq_reset(sq);
        float *prev = plog + b * V;
        if ((rc = wp_model_forward(m, sq, prompts[b], S, NULL, NULL, e))) break;
        for (uint64_t k = 0; k < ND && !rc; k++) {
            int32_t t = (int32_t)wp_argmax(prev, V);
            dtok[b * ND + k] = t;
            prev = dlog + (b * ND + k) * V;
            rc = wp_model_forward(m, sq, &t, 1, prev, NULL, e);
        }
    }
    for (int b = 0; b < n && !rc && mtp; b++) {
        int32_t *id = ids + (size_t)b * S;
        memcpy(id, prompts[b] + 1, sizeof(int32_t) * (S - 1));
        id[S - 1] = (int32_t)wp_argmax(plog + b * V, V);
        wp_seq_reset(sq);
        rc = wp_model_mtp(m, sq, h + (size_t)b * S * row, id, S, mlog + b * V, e);
    }
    if (!rc) rc = write_logits(&g, plog, B, e);
    if (!rc && ND) {
        rc = wp_st_writer_write(g.w, dtok, sizeof(int32_t) * B * ND, e);
        if (!rc) rc = write_logits(&g, dlog, B * ND, e);
    }
    if (!rc && mtp) {
        rc = wp_st_writer_write(g.w, ids, sizeof(int32_t) * B * S, e);
        if (!rc) rc = write_logits(&g, mlog, B, e);
    }
    if (!rc) {
        rc = wp_st_writer_commit(g.w, e);
        g.w = NULL;
    }
out:
    if (g.w) wp_st_writer_abort(g.w);
    free(h), free(lg), free(topk), free(cap), free(dtok), free(ids);
    wp_seq_free(sq);
    wp_model_free(m);
    return rc;
}
