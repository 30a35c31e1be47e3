/*
 * compare.c — one build against a reference build on the same prompts
 * (`wpack parity --against`, verify/parity.h): per-layer teacher-forced
 * error, logits statistics (verify/stats.h), MTP, indexer recall, and the
 * exact or lossy gate.
 */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "verify/parity.h"

void wp_compare_opts_default(wp_compare_opts *o)
{
    memset(o, 0, sizeof *o);
    o->topk = WP_STATS_TOPK;
    o->gate = WP_GATE_LOSSY;
    /* docs/parity.md "The lossy gate": on tiny-a, re-encoding every linear
     * of the layers to FP4 gives KL mean 0.10, p99 0.42, top-1 0.44, indexer
     * recall 0.91; an unrelated model of the same shapes KL 1.0, p99 1.25,
     * top-1 0.002, recall 0.60.  The gate sits between, nearer the FP4 end. */
    o->kl_mean_max = 0.25;
    o->kl_p99_max = 0.75;
    o->top1_min = 0.30;
    o->recall_min = 0.85;
}

/* Everything one comparison holds: both models, a sequence each, per-prompt
 * buffers sized for the longest prompt. */
typedef struct cmp {
    const wp_config *c;
    wp_model *ma, *mb;        /* build, reference */
    wp_seq *sa, *sb;
    size_t row, V;
    int K;
    float *h, *t, *hb;        /* REF's residual, BUILD's teacher-forced copy, BUILD's own trunk */
    float *la, *lb;           /* one logits row each */
    int32_t *ca, *cb, *ids;   /* indexer captures [maxlen, K]; MTP ids */
    double *perr;             /* [maxlen] one prompt's per-position errors of one layer */
    double *lerr[WP_PARITY_MAX];   /* per layer: every position's error, all prompts */
    size_t nerr, caperr;
    double rsum[WP_PARITY_MAX];
    wp_compare_report *r;
} cmp;

static void mismatch(cmp *x, wp_compare_prompt *pp, const char *fmt, ...)
{
    pp->identical = 0;
    x->r->identical = 0;
    if (x->r->mismatch[0]) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(x->r->mismatch, sizeof x->r->mismatch, fmt, ap);
    va_end(ap);
}

/* index of the first differing float (bit patterns), or n */
static size_t first_diff(const float *a, const float *b, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (memcmp(a + i, b + i, sizeof *a)) return i;
    return n;
}

static int grow_errs(cmp *x, size_t add, wp_err *e)
{
    if (x->nerr + add <= x->caperr) return 0;
    size_t cap = x->caperr ? x->caperr : 1024;
    while (cap < x->nerr + add) cap *= 2;
    for (int l = 0; l < x->c->n_layers; l++) {
        double *p = realloc(x->lerr[l], cap * sizeof *p);
        if (!p) return wp_oom(e, "per-layer errors of %zu positions", cap);
        x->lerr[l] = p;
    }
    x->caperr = cap;
    return 0;
}

/* Prompt p: REF layer by layer with BUILD teacher-forced on each layer's
 * input, then the logits of every position, then MTP. */
static int one_prompt(cmp *x, int p, const int32_t *tok, int n, wp_lstats *all, wp_lstats *mtp,
                      wp_err *e)
{
    const wp_config *c = x->c;
    wp_compare_report *r = x->r;
    wp_compare_prompt *pp = &r->prompts[p];
    const size_t row = x->row, V = x->V, K = (size_t)x->K;
    pp->tokens = n;
    pp->identical = 1;
    int rc = grow_errs(x, (size_t)n, e);
    if (rc) return rc;
    /* BUILD end to end: its own trunk */
    wp_seq_reset(x->sa);
    if ((rc = wp_model_forward(x->ma, x->sa, tok, n, NULL, x->hb, e))) return rc;
    wp_seq_reset(x->sa);
    wp_seq_reset(x->sb);
    if ((rc = wp_model_embed(x->mb, tok, n, x->h, e))) return rc;
    int ri = 0;
    for (int l = 0; l < c->n_layers; l++) {
        const int csa = c->compress_ratios[l] == 4;
        memcpy(x->t, x->h, sizeof(float) * row * n);
        if (csa) {
            if ((rc = wp_seq_capture_topk(x->sb, l, x->cb, n, e))) return rc;
            if ((rc = wp_seq_capture_topk(x->sa, l, x->ca, n, e))) return rc;
        }
        if ((rc = wp_model_layer(x->mb, x->sb, l, x->h, tok, n, e))) return rc;
        if ((rc = wp_model_layer(x->ma, x->sa, l, x->t, tok, n, e))) return rc;
        if (csa) {
            wp_seq_capture_topk(x->sb, l, NULL, 0, NULL);
            wp_seq_capture_topk(x->sa, l, NULL, 0, NULL);
        }
        double *le = x->lerr[l] + x->nerr, mx = 0;
        for (int s = 0; s < n; s++) {
            le[s] = wp_rel_err(x->t + s * row, x->h + s * row, row);
            mx = le[s] > mx ? le[s] : mx;
        }
        size_t d = first_diff(x->t, x->h, row * n);
        if (d < row * n)
            mismatch(x, pp, "prompt %d, layer %d (teacher-forced), position %zu, value %zu: %.9g vs "
                     "reference %.9g", p, l, d / row, d % row, x->t[d], x->h[d]);
        memcpy(x->perr, le, sizeof(double) * n);
        pp->layer_median[l] = wp_quantile(x->perr, (size_t)n, 0.5);
        pp->layer_max[l] = mx;
        if (!csa) continue;
        wp_parity_recall *pr = &r->recall[ri];
        double sum = 0;
        int q = 0;
        for (int s = 0; s < n; s++) {
            double rec = wp_topk_recall(x->ca + s * K, x->cb + s * K, (int)K);
            if (memcmp(x->ca + s * K, x->cb + s * K, K * sizeof(int32_t)))
                mismatch(x, pp, "prompt %d, layer %d indexer, position %d: selection differs", p, l, s);
            if (rec < 0) continue;
            sum += rec;
            q++;
            if (rec < pr->worst) pr->worst = rec;
        }
        pr->queries += q;
        x->rsum[ri] += sum;
        pp->recall[ri++] = q ? sum / q : 1.0;
    }
    x->nerr += (size_t)n;
    /* logits of every position: REF on its trunk, BUILD on its own */
    wp_lstats one;
    wp_lstats_init(&one, r->topk);
    for (int s = 0; s < n && !rc; s++) {
        if ((rc = wp_model_head(x->mb, x->h + s * row, 1, x->lb, e))) break;
        if ((rc = wp_model_head(x->ma, x->hb + s * row, 1, x->la, e))) break;
        size_t d = first_diff(x->la, x->lb, V);
        if (d < V)
            mismatch(x, pp, "prompt %d, logits at position %d, token %zu: %.9g vs reference %.9g", p, s,
                     d, x->la[d], x->lb[d]);
        if (!(rc = wp_lstats_add(&one, x->lb, x->la, V, e))) rc = wp_lstats_add(all, x->lb, x->la, V, e);
    }
    if (!rc) wp_lstats_summary(&one, &pp->logits);
    wp_lstats_free(&one);
    if (rc || c->n_mtp_layers <= 0) return rc;
    /* MTP from REF's trunk; x->lb holds REF's last-position logits */
    memcpy(x->ids, tok + 1, sizeof(int32_t) * (n - 1));
    x->ids[n - 1] = (int32_t)wp_argmax(x->lb, V);
    if ((rc = wp_model_mtp(x->mb, x->sb, x->h, x->ids, n, x->lb, e))) return rc;
    if ((rc = wp_model_mtp(x->ma, x->sa, x->h, x->ids, n, x->la, e))) return rc;
    size_t d = first_diff(x->la, x->lb, V);
    if (d < V)
        mismatch(x, pp, "prompt %d, MTP logits, token %zu: %.9g vs reference %.9g", p, d, x->la[d],
                 x->lb[d]);
    pp->mtp = 1;
    pp->mtp_kl = wp_kl_rows(x->lb, x->la, V);
    pp->mtp_cos = wp_cosine(x->la, x->lb, V);
    pp->mtp_top1 = wp_argmax(x->la, V) == wp_argmax(x->lb, V);
    return wp_lstats_add(mtp, x->lb, x->la, V, e);
}

void wp_compare_report_free(wp_compare_report *r)
{
    free(r->prompts);
    r->prompts = NULL;
    r->n_prompts = 0;
}

int wp_parity_compare(wp_tsrc *src, const wp_rt_opts *src_opts, wp_tsrc *ref,
                      const wp_rt_opts *ref_opts, const int32_t *const *prompts, const int *lens,
                      int n_prompts, const wp_compare_opts *o, wp_compare_report *r, wp_err *e)
{
    memset(r, 0, sizeof *r);
    r->opts = *o;
    r->gate = o->gate;
    r->topk = o->topk;
    r->identical = 1;
    const double t0 = wp_now();
    const wp_config *c = &src->cfg, *rc_ = &ref->cfg;
    if (c->n_layers != rc_->n_layers || c->index_topk != rc_->index_topk || c->dim != rc_->dim ||
        c->hc_mult != rc_->hc_mult || c->vocab_size != rc_->vocab_size ||
        c->n_mtp_layers != rc_->n_mtp_layers ||
        memcmp(c->compress_ratios, rc_->compress_ratios, sizeof(int) * c->n_layers))
        return wp_fail(e, WP_EUSAGE, "%s and %s describe different models (layers, dim, vocabulary, "
                       "MTP, ratios or index_topk differ)", src->path, ref->path);
    if (c->n_layers > WP_PARITY_MAX)
        return wp_fail(e, WP_EINVAL, "%s: %d layers: at most %d compared", src->path, c->n_layers,
                       WP_PARITY_MAX);
    if (n_prompts < 1) return wp_fail(e, WP_EUSAGE, "no prompt");
    int maxlen = 0;
    for (int p = 0; p < n_prompts; p++) {
        if (lens[p] < 1) return wp_fail(e, WP_EUSAGE, "prompt %d is empty", p);
        maxlen = lens[p] > maxlen ? lens[p] : maxlen;
    }
    cmp x;
    memset(&x, 0, sizeof x);
    x.c = c;
    x.r = r;
    x.row = (size_t)c->hc_mult * c->dim;
    x.V = (size_t)c->vocab_size;
    x.K = c->index_topk;
    wp_lstats all, mtp;
    wp_lstats_init(&all, o->topk);
    wp_lstats_init(&mtp, o->topk);
    r->topk = all.k;
    int rc;
    r->prompts = calloc((size_t)n_prompts, sizeof *r->prompts);
    if (!r->prompts) {
        rc = wp_oom(e, "parity of %d prompts", n_prompts);
        goto out;
    }
    r->n_prompts = n_prompts;
    if ((rc = wp_model_load(&x.ma, src, src_opts, e))) goto out;
    if ((rc = wp_model_load(&x.mb, ref, ref_opts, e))) goto out;
    if ((rc = wp_seq_new(&x.sa, x.ma, maxlen, e)) || (rc = wp_seq_new(&x.sb, x.mb, maxlen, e))) goto out;
    const size_t L = (size_t)maxlen;
    x.h = malloc(sizeof(float) * x.row * L);
    x.t = malloc(sizeof(float) * x.row * L);
    x.hb = malloc(sizeof(float) * x.row * L);
    x.la = malloc(sizeof(float) * x.V);
    x.lb = malloc(sizeof(float) * x.V);
    x.ca = malloc(sizeof(int32_t) * L * (x.K > 0 ? (size_t)x.K : 1));
    x.cb = malloc(sizeof(int32_t) * L * (x.K > 0 ? (size_t)x.K : 1));
    x.ids = malloc(sizeof(int32_t) * L);
    x.perr = malloc(sizeof(double) * L);
    if (!x.h || !x.t || !x.hb || !x.la || !x.lb || !x.ca || !x.cb || !x.ids || !x.perr) {
        rc = wp_oom(e, "parity buffers for %d tokens", maxlen);
        goto out;
    }
    r->n_layers = c->n_layers;
    for (int l = 0; l < c->n_layers; l++) {
        r->layers[l].layer = l;
        if (c->compress_ratios[l] != 4) continue;
        wp_parity_recall *pr = &r->recall[r->n_recall++];
        pr->layer = l;
        pr->worst = 1;
    }
    for (int p = 0; p < n_prompts && !rc; p++)
        rc = one_prompt(&x, p, prompts[p], lens[p], &all, &mtp, e);
    if (rc) goto out;
    for (int l = 0; l < c->n_layers; l++) {
        wp_parity_layer *pl = &r->layers[l];
        double mx = 0;
        for (size_t i = 0; i < x.nerr; i++) mx = x.lerr[l][i] > mx ? x.lerr[l][i] : mx;
        pl->max = mx;
        pl->median = wp_quantile(x.lerr[l], x.nerr, 0.5);
        pl->p90 = wp_quantile(x.lerr[l], x.nerr, 0.9);
    }
    wp_lstats_summary(&all, &r->logits);
    wp_lstats_summary(&mtp, &r->mtp);
    int ok = 1;
    for (int i = 0; i < r->n_recall; i++) {
        wp_parity_recall *pr = &r->recall[i];
        pr->mean = pr->queries ? x.rsum[i] / pr->queries : 1.0;
        pr->pass = o->gate == WP_GATE_EXACT ? r->identical : pr->mean >= o->recall_min;
        ok &= pr->pass;
    }
    for (int l = 0; l < r->n_layers; l++) r->layers[l].pass = 1;   /* reported, not gated */
    if (o->gate == WP_GATE_EXACT)
        r->pass = r->identical;
    else
        r->pass = ok && r->logits.kl_mean <= o->kl_mean_max && r->logits.kl_p99 <= o->kl_p99_max &&
                  r->logits.top1_rate >= o->top1_min;
out:
    r->seconds = wp_now() - t0;
    wp_lstats_free(&all);
    wp_lstats_free(&mtp);
    for (int l = 0; l < WP_PARITY_MAX; l++) free(x.lerr[l]);
    free(x.h), free(x.t), free(x.hb), free(x.la), free(x.lb);
    free(x.ca), free(x.cb), free(x.ids), free(x.perr);
    wp_seq_free(x.sa);
    wp_seq_free(x.sb);
    wp_model_free(x.ma);
    wp_model_free(x.mb);
    return rc;
}

/* ---- JSON ----------------------------------------------------------------------------- */

cJSON *wp_lsummary_json(const wp_lsummary *s)
{
    cJSON *o = cJSON_CreateObject();
    if (!o) return NULL;
    cJSON_AddNumberToObject(o, "rows", (double)s->rows);
    cJSON_AddNumberToObject(o, "kl_mean", s->kl_mean);
    cJSON_AddNumberToObject(o, "kl_p99", s->kl_p99);
    cJSON_AddNumberToObject(o, "kl_max", s->kl_max);
    cJSON_AddNumberToObject(o, "top1_agree", (double)s->top1_agree);
    cJSON_AddNumberToObject(o, "top1_rate", s->top1_rate);
    cJSON_AddNumberToObject(o, "topk", s->k);
    cJSON_AddNumberToObject(o, "topk_same", (double)s->topk_same);
    cJSON_AddNumberToObject(o, "topk_rate", s->topk_rate);
    cJSON_AddNumberToObject(o, "cosine_min", s->cos_min);
    cJSON_AddNumberToObject(o, "cosine_mean", s->cos_mean);
    cJSON_AddNumberToObject(o, "rel_rms_mean", s->rel_rms_mean);
    cJSON_AddNumberToObject(o, "rel_rms_max", s->rel_rms_max);
    return o;
}

cJSON *wp_compare_json(const wp_compare_report *r, const char *reference)
{
    cJSON *a = cJSON_CreateObject();
    if (!a) return NULL;
    cJSON_AddStringToObject(a, "reference", reference);
    cJSON_AddStringToObject(a, "gate", r->gate == WP_GATE_EXACT ? "exact" : "lossy");
    cJSON *t = cJSON_AddObjectToObject(a, "thresholds");
    if (r->gate == WP_GATE_LOSSY) {
        cJSON_AddNumberToObject(t, "kl_mean_max", r->opts.kl_mean_max);
        cJSON_AddNumberToObject(t, "kl_p99_max", r->opts.kl_p99_max);
        cJSON_AddNumberToObject(t, "top1_min", r->opts.top1_min);
        cJSON_AddNumberToObject(t, "recall_min", r->opts.recall_min);
    }
    cJSON_AddBoolToObject(a, "identical", r->identical);
    if (r->mismatch[0]) cJSON_AddStringToObject(a, "first_mismatch", r->mismatch);
    else cJSON_AddNullToObject(a, "first_mismatch");
    cJSON_AddItemToObject(a, "layers", wp_parity_layers_json(r->layers, r->n_layers, 0));
    cJSON_AddItemToObject(a, "logits", wp_lsummary_json(&r->logits));
    cJSON_AddItemToObject(a, "mtp", wp_lsummary_json(&r->mtp));
    cJSON_AddItemToObject(a, "indexer_recall", wp_parity_recall_list_json(r->recall, r->n_recall));
    cJSON *ps = cJSON_AddArrayToObject(a, "prompts");
    for (int p = 0; p < r->n_prompts; p++) {
        const wp_compare_prompt *pp = &r->prompts[p];
        cJSON *o = cJSON_CreateObject();
        cJSON_AddNumberToObject(o, "tokens", pp->tokens);
        cJSON_AddBoolToObject(o, "identical", pp->identical);
        cJSON_AddItemToObject(o, "logits", wp_lsummary_json(&pp->logits));
        if (pp->mtp) {
            cJSON *m = cJSON_AddObjectToObject(o, "mtp");
            cJSON_AddNumberToObject(m, "kl", pp->mtp_kl);
            cJSON_AddNumberToObject(m, "cosine", pp->mtp_cos);
            cJSON_AddBoolToObject(m, "top1", pp->mtp_top1);
        }
        cJSON *pl = cJSON_AddArrayToObject(o, "layers");
        for (int l = 0; l < r->n_layers; l++) {
            cJSON *x = cJSON_CreateObject();
            cJSON_AddNumberToObject(x, "layer", l);
            cJSON_AddNumberToObject(x, "median", pp->layer_median[l]);
            cJSON_AddNumberToObject(x, "max", pp->layer_max[l]);
            cJSON_AddItemToArray(pl, x);
        }
        cJSON *pr = cJSON_AddArrayToObject(o, "recall");
        for (int i = 0; i < r->n_recall; i++) {
            cJSON *x = cJSON_CreateObject();
            cJSON_AddNumberToObject(x, "layer", r->recall[i].layer);
            cJSON_AddNumberToObject(x, "mean", pp->recall[i]);
            cJSON_AddItemToArray(pr, x);
        }
        cJSON_AddItemToArray(ps, o);
    }
    cJSON_AddNumberToObject(a, "seconds", r->seconds);
    cJSON_AddBoolToObject(a, "pass", r->pass);
    return a;
}
