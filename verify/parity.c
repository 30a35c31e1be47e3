/*
 * parity.c — the runtime against golden outputs, and one build's indexer
 * against another's, and both reports as JSON (verify/parity.h).
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "hf/safetensors.h"
#include "verify/parity.h"

void wp_parity_opts_default(wp_parity_opts *o)
{
    memset(o, 0, sizeof *o);
    o->threads = 1;
    /* ../shared/fixtures/README.md "How close a correct implementation gets" */
    o->layer_median_max = 1e-5;
    o->layer_p90_max = 1e-4;
    o->cos_min = 0.99;
    o->recall_min = 0.99;
}

/* ---- Measures ---------------------------------------------------------------------- */

double wp_cosine(const float *a, const float *b, size_t n)
{
    double ab = 0, aa = 0, bb = 0;
    for (size_t i = 0; i < n; i++) {
        ab += (double)a[i] * b[i];
        aa += (double)a[i] * a[i];
        bb += (double)b[i] * b[i];
    }
    if (aa == 0 || bb == 0) return aa == bb ? 1.0 : 0.0;
    return ab / sqrt(aa * bb);
}

double wp_rel_err(const float *a, const float *ref, size_t n)
{
    double d = 0, r = 0;
    for (size_t i = 0; i < n; i++) {
        double t = (double)a[i] - ref[i];
        d += t * t;
        r += (double)ref[i] * ref[i];
    }
    if (r == 0) return d == 0 ? 0.0 : INFINITY;
    return sqrt(d / r);
}

static void log_softmax(const float *x, size_t n, double *out)
{
    double mx = -INFINITY, s = 0;
    for (size_t i = 0; i < n; i++) mx = x[i] > mx ? x[i] : mx;
    for (size_t i = 0; i < n; i++) s += exp(x[i] - mx);
    double lse = mx + log(s);
    for (size_t i = 0; i < n; i++) out[i] = x[i] - lse;
}

double wp_kl_logits(const float *ref, const float *a, size_t n)
{
    double *lp = malloc(sizeof(double) * 2 * n);
    if (!lp) return NAN;
    double *lq = lp + n, kl = 0;
    log_softmax(ref, n, lp);
    log_softmax(a, n, lq);
    for (size_t i = 0; i < n; i++) kl += exp(lp[i]) * (lp[i] - lq[i]);
    free(lp);
    return kl < 0 ? 0 : kl;
}

size_t wp_argmax(const float *a, size_t n)
{
    size_t b = 0;
    for (size_t i = 1; i < n; i++)
        if (a[i] > a[b]) b = i;
    return b;
}

double wp_topk_recall(const int32_t *a, const int32_t *ref, int k)
{
    int nref = 0, hit = 0;
    for (int i = 0; i < k; i++) {
        if (ref[i] < 0) continue;
        int dup = 0;                  /* count each reference entry once */
        for (int j = 0; j < i; j++) dup |= ref[j] == ref[i];
        if (dup) continue;
        nref++;
        for (int j = 0; j < k; j++)
            if (a[j] == ref[i]) {
                hit++;
                break;
            }
    }
    return nref ? (double)hit / nref : -1.0;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

double wp_quantile(double *v, size_t n, double q)
{
    if (!n) return NAN;
    qsort(v, n, sizeof *v, cmp_double);
    double pos = q * (double)(n - 1);
    size_t i = (size_t)pos;
    if (i + 1 >= n) return v[n - 1];
    double f = pos - (double)i;
    return v[i] * (1 - f) + v[i + 1] * f;
}

/* ---- Golden file ------------------------------------------------------------------- */

/* The golden outputs, copied out of the file (tensors NULL when absent and
 * optional), with the dimensions they were checked against. */
typedef struct golden {
    wp_st_file *f;
    const char *path;
    uint64_t B, S, ND, V, hc, d, nL, row, K;   /* batch, prompt, decode steps, ... */
    int32_t *tokens, *dtok, *mids;
    float *hin0, *lh, *plog, *dlog, *mlog;
    /* a reduced golden (`wpack golden --topk K`): each logits row as its K
     * largest entries' ids and values and its log-sum-exp (verify/golden.h) */
    int LK;
    int32_t *pk_ids, *dk_ids, *mk_ids;
    float *pk_val, *dk_val, *mk_val;
    double *pk_lse, *dk_lse, *mk_lse;
} golden;

/* A copy of a golden tensor (the mapping need not be aligned for floats),
 * checked for dtype and shape; NULL with *rc = 0 if absent and optional. */
static void *gload(const golden *g, const char *name, wp_dtype dt, int ndim, const uint64_t *shape,
                   int optional, int *rc, wp_err *e)
{
    *rc = 0;
    const wp_tensor_info *t = wp_st_find(g->f, name);
    if (!t) {
        if (!optional) *rc = wp_fail(e, WP_EINVAL, "%s: %s: missing", g->path, name);
        return NULL;
    }
    int ok = t->dtype == dt && t->ndim == ndim;
    for (int i = 0; ok && i < ndim; i++) ok = t->shape[i] == shape[i];
    if (!ok) {
        char want[128] = "", *p = want;
        for (int i = 0; i < ndim; i++)
            p += snprintf(p, sizeof want - (size_t)(p - want), "%s%llu", i ? "," : "",
                          (unsigned long long)shape[i]);
        *rc = wp_fail(e, WP_EINVAL, "%s: %s: expected %s [%s]", g->path, name, wp_dtype_name(dt),
                      want);
        return NULL;
    }
    void *buf = malloc(t->nbytes ? t->nbytes : 1);
    if (!buf) {
        char what[600];
        snprintf(what, sizeof what, "%s: %s", g->path, name);
        *rc = wp_oom(e, "%s", what);
        return NULL;
    }
    if ((*rc = wp_st_read(g->f, t, 0, buf, t->nbytes, e))) {
        free(buf);
        return NULL;
    }
    return buf;
}

/* The three fields of a reduced logits tensor NAME: NAME_topk_ids and
 * NAME_topk [lead..., K], NAME_lse [lead...] (f64).  All absent and optional:
 * *ids stays NULL. */
static int gload_topk(const golden *g, const char *name, int nd, const uint64_t *shape, int optional,
                      int32_t **ids, float **val, double **lse, wp_err *e)
{
    char n[96];
    int rc;
    snprintf(n, sizeof n, "%s_topk_ids", name);
    *ids = gload(g, n, WP_I32, nd + 1, shape, optional, &rc, e);
    if (rc || !*ids) return rc;
    snprintf(n, sizeof n, "%s_topk", name);
    *val = gload(g, n, WP_F32, nd + 1, shape, 0, &rc, e);
    snprintf(n, sizeof n, "%s_lse", name);
    if (!rc) *lse = gload(g, n, WP_F64, nd, shape, 0, &rc, e);
    return rc;
}

/* Open the golden file and read what the checks compare against: the
 * dimensions from `tokens` and the config, then every tensor. */
static int golden_open(golden *g, const char *path, const wp_config *c, wp_err *e)
{
    memset(g, 0, sizeof *g);
    g->path = path;
    int rc = wp_st_open(&g->f, path, e);
    if (rc) return rc;
    const wp_tensor_info *tt = wp_st_find(g->f, "tokens");
    if (!tt || tt->ndim != 2)
        return wp_fail(e, WP_EINVAL, "%s: tokens: missing or not [batch, seq]", path);
    g->B = tt->shape[0], g->S = tt->shape[1], g->V = (uint64_t)c->vocab_size;
    g->hc = (uint64_t)c->hc_mult, g->d = (uint64_t)c->dim, g->nL = (uint64_t)c->n_layers;
    g->row = g->hc * g->d, g->K = (uint64_t)c->index_topk;
    const uint64_t B = g->B, S = g->S, V = g->V, hc = g->hc, d = g->d, nL = g->nL;
    if (B == 0 || S == 0 || nL > WP_PARITY_MAX)
        return wp_fail(e, WP_EINVAL, "%s: tokens: empty batch or too many layers", path);
    g->tokens = gload(g, "tokens", WP_I32, 2, (uint64_t[]){B, S}, 0, &rc, e);
    if (rc) return rc;
    g->hin0 = gload(g, "layer_h_in0", WP_F32, 4, (uint64_t[]){B, S, hc, d}, 1, &rc, e);
    if (rc) return rc;
    g->lh = gload(g, "layer_h", WP_F32, 5, (uint64_t[]){nL, B, S, hc, d}, 1, &rc, e);
    if (rc) return rc;
    const wp_tensor_info *pk = wp_st_find(g->f, "prefill_logits_topk");
    const int reduced = pk && !wp_st_find(g->f, "prefill_logits");
    if (reduced) {
        if (pk->ndim != 2 || pk->shape[1] < 1 || pk->shape[1] > WP_STATS_TOPK_MAX || pk->shape[1] > V)
            return wp_fail(e, WP_EINVAL, "%s: prefill_logits_topk: expected [batch, K] with K in 1..%d",
                           path, WP_STATS_TOPK_MAX);
        g->LK = (int)pk->shape[1];
    }
    const uint64_t K = (uint64_t)g->LK;
    if (!reduced) g->plog = gload(g, "prefill_logits", WP_F32, 2, (uint64_t[]){B, V}, 0, &rc, e);
    else if (!(rc = gload_topk(g, "prefill_logits", 1, (uint64_t[]){B, K}, 0, &g->pk_ids, &g->pk_val,
                               &g->pk_lse, e)) && !g->pk_ids)
        rc = wp_fail(e, WP_EINVAL, "%s: prefill_logits_topk_ids: missing", path);
    if (rc) return rc;
    const wp_tensor_info *dt = wp_st_find(g->f, "decode_tokens");
    g->ND = dt && dt->ndim == 2 ? dt->shape[1] : 0;
    if (g->ND) {
        g->dtok = gload(g, "decode_tokens", WP_I32, 2, (uint64_t[]){B, g->ND}, 0, &rc, e);
        if (!rc && !reduced)
            g->dlog = gload(g, "decode_logits", WP_F32, 3, (uint64_t[]){B, g->ND, V}, 0, &rc, e);
        else if (!rc && !(rc = gload_topk(g, "decode_logits", 2, (uint64_t[]){B, g->ND, K}, 0, &g->dk_ids,
                                          &g->dk_val, &g->dk_lse, e)) && !g->dk_ids)
            rc = wp_fail(e, WP_EINVAL, "%s: decode_logits_topk_ids: missing", path);
        if (rc) return rc;
    }
    g->mids = gload(g, "mtp_input_ids", WP_I32, 2, (uint64_t[]){B, S}, 1, &rc, e);
    if (!rc && !reduced) g->mlog = gload(g, "mtp_logits", WP_F32, 2, (uint64_t[]){B, V}, 1, &rc, e);
    else if (!rc) rc = gload_topk(g, "mtp_logits", 1, (uint64_t[]){B, K}, 1, &g->mk_ids, &g->mk_val, &g->mk_lse, e);
    return rc;
}

static void golden_close(golden *g)
{
    wp_st_close(g->f);
    free(g->tokens);
    free(g->dtok);
    free(g->mids);
    free(g->hin0);
    free(g->lh);
    free(g->plog);
    free(g->dlog);
    free(g->mlog);
    free(g->pk_ids), free(g->dk_ids), free(g->mk_ids);
    free(g->pk_val), free(g->dk_val), free(g->mk_val);
    free(g->pk_lse), free(g->dk_lse), free(g->mk_lse);
}

/* ---- Golden checks ------------------------------------------------------------------ */

/* The runtime under test and its scratch: one sequence reset for every run. */
typedef struct prun {
    const golden *g;
    const wp_config *c;
    const wp_parity_opts *o;
    wp_model *m;
    wp_seq *seq;
    float *h, *logits;        /* [S, hc, dim], [vocab] */
    double *errs;             /* [B * S] per-position errors of one layer */
    int32_t *cap;             /* [S, index_topk] the run's selections of one prompt */
} prun;

static int prun_open(prun *r, wp_tsrc *src, const golden *g, const wp_parity_opts *o, wp_err *e)
{
    memset(r, 0, sizeof *r);
    r->g = g;
    r->c = &src->cfg;
    r->o = o;
    wp_rt_opts ro = {.threads = o->threads, .flags = o->rt_flags};
    int rc = wp_model_load(&r->m, src, &ro, e);
    if (!rc) rc = wp_seq_new(&r->seq, r->m, (int)(g->S + g->ND), e);
    if (rc) return rc;
    r->h = malloc(sizeof(float) * g->row * g->S);
    r->logits = malloc(sizeof(float) * g->V);
    r->errs = malloc(sizeof(double) * g->B * g->S);
    r->cap = malloc(sizeof(int32_t) * g->S * g->K);
    if (!r->h || !r->logits || !r->errs || !r->cap) return wp_oom(e, "parity buffers");
    return 0;
}

static void prun_close(prun *r)
{
    wp_seq_free(r->seq);
    wp_model_free(r->m);
    free(r->h);
    free(r->logits);
    free(r->errs);
    free(r->cap);
}

/* Recall of prompt b's captured selections against the golden ones (gtk
 * [B, S, K], values S + entry, -1 none); *sum collects the per-query recall. */
static void recall_add(const golden *g, const int32_t *cap, const int32_t *gtk, uint64_t b,
                       wp_parity_recall *pr, double *sum)
{
    const uint64_t S = g->S, K = g->K;
    for (uint64_t s = 0; s < S; s++) {
        int32_t ref[K];
        for (uint64_t i = 0; i < K; i++) {
            int32_t v = gtk[(b * S + s) * K + i];
            ref[i] = v >= (int32_t)S ? v - (int32_t)S : -1;   /* drop the prefill offset */
        }
        double rec = wp_topk_recall(cap + s * K, ref, (int)K);
        if (rec < 0) continue;
        *sum += rec;
        pr->queries++;
        if (rec < pr->worst) pr->worst = rec;
    }
}

/* Main layer l alone on every prompt, teacher-forced from its golden input
 * (layer_h_in0 for layer 0, else layer_h[l-1]): position errors against
 * layer_h[l] and, for a CSA layer with golden selections, indexer recall. */
static int layer_check(prun *r, uint64_t l, wp_parity_report *rep, wp_err *e)
{
    const golden *g = r->g;
    const uint64_t B = g->B, S = g->S, row = g->row;
    wp_parity_layer *pl = &rep->layers[rep->n_layers++];
    pl->layer = (int)l;
    const int csa = r->c->compress_ratios[l] == 4;
    wp_parity_recall *pr = NULL;
    int32_t *gtk = NULL;
    int rc = 0;
    if (csa) {
        char tname[64];
        snprintf(tname, sizeof tname, "indexer_topk.%llu", (unsigned long long)l);
        gtk = gload(g, tname, WP_I32, 3, (uint64_t[]){B, S, g->K}, 1, &rc, e);
        if (rc) return rc;
    }
    if (gtk) {
        pr = &rep->recall[rep->n_recall++];
        pr->layer = (int)l;
        pr->worst = 1;
    }
    double rsum = 0;
    for (uint64_t b = 0; b < B && !rc; b++) {
        const float *in = l == 0 ? g->hin0 + b * S * row : g->lh + ((l - 1) * B + b) * S * row;
        const float *gold = g->lh + (l * B + b) * S * row;
        memcpy(r->h, in, sizeof(float) * row * S);
        wp_seq_reset(r->seq);
        if (csa && (rc = wp_seq_capture_topk(r->seq, (int)l, r->cap, (int)S, e))) break;
        if ((rc = wp_model_layer(r->m, r->seq, (int)l, r->h, g->tokens + b * S, (int)S, e))) break;
        if (csa) wp_seq_capture_topk(r->seq, (int)l, NULL, 0, NULL);
        for (uint64_t s = 0; s < S; s++)
            r->errs[b * S + s] = wp_rel_err(r->h + s * row, gold + s * row, row);
        if (pr) recall_add(g, r->cap, gtk, b, pr, &rsum);
    }
    free(gtk);
    if (rc) return rc;
    pl->max = 0;
    for (uint64_t i = 0; i < B * S; i++) pl->max = r->errs[i] > pl->max ? r->errs[i] : pl->max;
    pl->median = wp_quantile(r->errs, B * S, 0.5);
    pl->p90 = wp_quantile(r->errs, B * S, 0.9);
    pl->pass = pl->median <= r->o->layer_median_max && pl->p90 <= r->o->layer_p90_max;
    rep->pass &= pl->pass;
    if (pr) {
        pr->mean = pr->queries ? rsum / pr->queries : 1.0;
        pr->pass = pr->mean >= r->o->recall_min;
        rep->pass &= pr->pass;
    }
    return 0;
}

static void logits_add_measured(wp_parity_logits *L, double c, double r, double kl, int agree, int clear)
{
    if (L->rows == 0) {
        L->cos_min = c;
        L->rel_rms_max = r;
        L->kl_max = kl;
    } else {
        L->cos_min = c < L->cos_min ? c : L->cos_min;
        L->rel_rms_max = r > L->rel_rms_max ? r : L->rel_rms_max;
        L->kl_max = kl > L->kl_max ? kl : L->kl_max;
    }
    L->cos_mean = (L->cos_mean * L->rows + c) / (L->rows + 1);
    L->top1_agree += agree;
    if (clear) {
        L->top1_clear_rows++;
        L->top1_clear_agree += agree;
    }
    L->rows++;
}

static void logits_add(wp_parity_logits *L, const float *ref, const float *a, size_t V)
{
    const size_t top = wp_argmax(ref, V);
    double ss = 0, second = -INFINITY;
    for (size_t i = 0; i < V; i++) {
        ss += (double)ref[i] * ref[i];
        if (i != top && ref[i] > second) second = ref[i];
    }
    logits_add_measured(L, wp_cosine(a, ref, V), wp_rel_err(a, ref, V), wp_kl_rows(ref, a, V),
                        wp_argmax(a, V) == top, ref[top] - second >= WP_PARITY_CLEAR * sqrt(ss / V));
}

/* A reduced golden row: cosine and relative RMS over the K stored entries,
 * KL of the coarsened distributions (wp_kl_topk), top-1 against ids[0], a
 * clear choice measured against the RMS of the K stored values. */
static void logits_add_topk(wp_parity_logits *L, const int32_t *ids, const float *vals, int K, double lse,
                            const float *a, size_t V)
{
    float sa[WP_STATS_TOPK_MAX], sr[WP_STATS_TOPK_MAX];
    int n = 0;
    double ss = 0;
    for (int i = 0; i < K; i++) {
        if (ids[i] < 0 || (size_t)ids[i] >= V) continue;
        sa[n] = a[ids[i]];
        sr[n++] = vals[i];
        ss += (double)vals[i] * vals[i];
    }
    const int valid = ids[0] >= 0 && (size_t)ids[0] < V;
    const int clear = valid && K > 1 && vals[0] - vals[1] >= WP_PARITY_CLEAR * sqrt(ss / K);
    logits_add_measured(L, wp_cosine(sa, sr, (size_t)n), wp_rel_err(sa, sr, (size_t)n),
                        wp_kl_topk(ids, vals, K, lse, a, V), valid && wp_argmax(a, V) == (size_t)ids[0],
                        clear);
}

/* row r of a golden logits field, full or reduced */
static void logits_row(const golden *g, wp_parity_logits *L, const float *full, const int32_t *ids,
                       const float *vals, const double *lse, uint64_t r, const float *a)
{
    if (full) logits_add(L, full + r * g->V, a, g->V);
    else logits_add_topk(L, ids + r * g->LK, vals + r * g->LK, g->LK, lse[r], a, g->V);
}

/* Prompt b's logits: the prefill's last position, the decode teacher-forced
 * with the golden decode_tokens, and the MTP block from the golden trunk
 * (layer_h of the last layer) with mtp_input_ids. */
static int logits_check(prun *r, uint64_t b, wp_parity_report *rep, wp_err *e)
{
    const golden *g = r->g;
    const uint64_t S = g->S, ND = g->ND;
    wp_seq_reset(r->seq);
    int rc = wp_model_forward(r->m, r->seq, g->tokens + b * S, (int)S, r->logits, NULL, e);
    if (rc) return rc;
    logits_row(g, &rep->prefill, g->plog, g->pk_ids, g->pk_val, g->pk_lse, b, r->logits);
    for (uint64_t k = 0; k < ND; k++) {
        if ((rc = wp_model_forward(r->m, r->seq, g->dtok + b * ND + k, 1, r->logits, NULL, e)))
            return rc;
        logits_row(g, &rep->decode, g->dlog, g->dk_ids, g->dk_val, g->dk_lse, b * ND + k, r->logits);
    }
    if (!g->mids || !(g->mlog || g->mk_ids) || !g->lh || r->c->n_mtp_layers <= 0) return 0;
    wp_seq_reset(r->seq);
    const float *trunk = g->lh + ((g->nL - 1) * g->B + b) * S * g->row;
    if ((rc = wp_model_mtp(r->m, r->seq, trunk, g->mids + b * S, (int)S, r->logits, e)))
        return rc;
    logits_row(g, &rep->mtp, g->mlog, g->mk_ids, g->mk_val, g->mk_lse, b, r->logits);
    return 0;
}

static void logits_gates(wp_parity_report *rep, const wp_parity_opts *o)
{
    wp_parity_logits *ls[3] = {&rep->prefill, &rep->decode, &rep->mtp};
    for (int i = 0; i < 3; i++) {
        ls[i]->pass = ls[i]->rows == 0 || ls[i]->cos_min >= o->cos_min;
        rep->pass &= ls[i]->pass;
    }
}

int wp_parity_golden(wp_tsrc *src, const char *golden_path, const wp_parity_opts *o,
                     wp_parity_report *r, wp_err *e)
{
    memset(r, 0, sizeof *r);
    r->prefill.what = "prefill";
    r->decode.what = "decode";
    r->mtp.what = "mtp";
    const double t0 = wp_now();
    golden g;
    prun run;
    memset(&run, 0, sizeof run);
    int rc = golden_open(&g, golden_path, &src->cfg, e);
    if (!rc) rc = prun_open(&run, src, &g, o, e);
    if (!rc) r->pass = 1;
    r->golden_topk = g.LK;
    for (uint64_t l = 0; !rc && g.hin0 && g.lh && l < g.nL; l++) rc = layer_check(&run, l, r, e);
    for (uint64_t b = 0; !rc && b < g.B; b++) rc = logits_check(&run, b, r, e);
    if (!rc) logits_gates(r, o);
    r->seconds = wp_now() - t0;
    prun_close(&run);
    golden_close(&g);
    return rc;
}

/* ---- One build against another ------------------------------------------------------- */

int wp_parity_against(wp_tsrc *src, const wp_rt_opts *src_opts, wp_tsrc *ref,
                      const wp_rt_opts *ref_opts, const int32_t *const *prompts,
                      const int *lens, int n_prompts, double recall_min, wp_parity_report *r,
                      wp_err *e)
{
    memset(r, 0, sizeof *r);
    const double t0 = wp_now();
    const wp_config *c = &src->cfg;
    if (c->n_layers != ref->cfg.n_layers || c->index_topk != ref->cfg.index_topk ||
        memcmp(c->compress_ratios, ref->cfg.compress_ratios, sizeof(int) * c->n_layers))
        return wp_fail(e, WP_EUSAGE, "%s and %s describe different models (layers, ratios or "
                       "index_topk differ)", src->path, ref->path);
    int maxlen = 0;
    for (int p = 0; p < n_prompts; p++) maxlen = lens[p] > maxlen ? lens[p] : maxlen;
    if (maxlen < 1) return wp_fail(e, WP_EUSAGE, "no prompt tokens");
    const int K = c->index_topk;
    wp_model *ma = NULL, *mb = NULL;
    wp_seq *sa = NULL, *sb = NULL;
    int32_t *ca = NULL, *cb = NULL;
    double *sum = NULL;
    int rc;
    if ((rc = wp_model_load(&ma, src, src_opts, e))) goto out;
    if ((rc = wp_model_load(&mb, ref, ref_opts, e))) goto out;
    if ((rc = wp_seq_new(&sa, ma, maxlen, e)) || (rc = wp_seq_new(&sb, mb, maxlen, e))) goto out;
    int ncsa = 0;
    for (int l = 0; l < c->n_layers; l++) ncsa += c->compress_ratios[l] == 4;
    ca = malloc(sizeof(int32_t) * (size_t)maxlen * K * (ncsa ? ncsa : 1));
    cb = malloc(sizeof(int32_t) * (size_t)maxlen * K * (ncsa ? ncsa : 1));
    sum = calloc(WP_PARITY_MAX, sizeof *sum);
    if (!ca || !cb || !sum) {
        rc = wp_oom(e, "parity buffers");
        goto out;
    }
    for (int l = 0; l < c->n_layers && r->n_recall < WP_PARITY_MAX; l++) {
        if (c->compress_ratios[l] != 4) continue;
        wp_parity_recall *pr = &r->recall[r->n_recall++];
        pr->layer = l;
        pr->worst = 1;
    }
    for (int p = 0; p < n_prompts; p++) {
        wp_seq_reset(sa);
        wp_seq_reset(sb);
        for (int i = 0; i < r->n_recall; i++) {
            size_t off = (size_t)i * maxlen * K;
            wp_seq_capture_topk(sa, r->recall[i].layer, ca + off, lens[p], e);
            wp_seq_capture_topk(sb, r->recall[i].layer, cb + off, lens[p], e);
        }
        if ((rc = wp_model_forward(ma, sa, prompts[p], lens[p], NULL, NULL, e))) goto out;
        if ((rc = wp_model_forward(mb, sb, prompts[p], lens[p], NULL, NULL, e))) goto out;
        for (int i = 0; i < r->n_recall; i++) {
            wp_parity_recall *pr = &r->recall[i];
            for (int s = 0; s < lens[p]; s++) {
                size_t off = ((size_t)i * maxlen + s) * K;
                double rec = wp_topk_recall(ca + off, cb + off, K);
                if (rec < 0) continue;
                sum[i] += rec;
                pr->queries++;
                if (rec < pr->worst) pr->worst = rec;
            }
        }
    }
    r->pass = 1;
    for (int i = 0; i < r->n_recall; i++) {
        wp_parity_recall *pr = &r->recall[i];
        pr->mean = pr->queries ? sum[i] / pr->queries : 1.0;
        pr->pass = pr->mean >= recall_min;
        r->pass &= pr->pass;
    }
out:
    r->seconds = wp_now() - t0;
    wp_seq_free(sa);
    wp_seq_free(sb);
    wp_model_free(ma);
    wp_model_free(mb);
    free(ca);
    free(cb);
    free(sum);
    return rc;
}

/* ---- Reports as JSON ------------------------------------------------------------------ */

static cJSON *logits_json(const wp_parity_logits *l)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "rows", l->rows);
    cJSON_AddNumberToObject(o, "cosine_min", l->cos_min);
    cJSON_AddNumberToObject(o, "cosine_mean", l->cos_mean);
    cJSON_AddNumberToObject(o, "rel_rms_max", l->rel_rms_max);
    cJSON_AddNumberToObject(o, "kl_max", l->kl_max);
    cJSON_AddNumberToObject(o, "top1_agree", l->top1_agree);
    cJSON_AddNumberToObject(o, "top1_clear_rows", l->top1_clear_rows);
    cJSON_AddNumberToObject(o, "top1_clear_agree", l->top1_clear_agree);
    cJSON_AddBoolToObject(o, "pass", l->pass);
    return o;
}

cJSON *wp_parity_recall_list_json(const wp_parity_recall *recall, int n)
{
    cJSON *a = cJSON_CreateArray();
    for (int i = 0; a && i < n; i++) {
        const wp_parity_recall *p = &recall[i];
        cJSON *o = cJSON_CreateObject();
        cJSON_AddNumberToObject(o, "layer", p->layer);
        cJSON_AddNumberToObject(o, "queries", p->queries);
        cJSON_AddNumberToObject(o, "mean", p->mean);
        cJSON_AddNumberToObject(o, "worst", p->worst);
        cJSON_AddBoolToObject(o, "pass", p->pass);
        cJSON_AddItemToArray(a, o);
    }
    return a;
}

cJSON *wp_parity_layers_json(const wp_parity_layer *layers, int n, int with_pass)
{
    cJSON *ls = cJSON_CreateArray();
    for (int i = 0; ls && i < n; i++) {
        cJSON *l = cJSON_CreateObject();
        if (!l) break;
        cJSON_AddNumberToObject(l, "layer", layers[i].layer);
        cJSON_AddNumberToObject(l, "median", layers[i].median);
        cJSON_AddNumberToObject(l, "p90", layers[i].p90);
        cJSON_AddNumberToObject(l, "max", layers[i].max);
        if (with_pass) cJSON_AddBoolToObject(l, "pass", layers[i].pass);
        cJSON_AddItemToArray(ls, l);
    }
    return ls;
}

cJSON *wp_parity_golden_json(const wp_parity_report *r, const char *golden)
{
    cJSON *g = cJSON_CreateObject();
    if (!g) return NULL;
    cJSON_AddStringToObject(g, "file", golden);
    if (r->golden_topk) cJSON_AddNumberToObject(g, "topk", r->golden_topk);   /* a reduced golden */
    cJSON_AddItemToObject(g, "layers", wp_parity_layers_json(r->layers, r->n_layers, 1));
    cJSON_AddItemToObject(g, "prefill", logits_json(&r->prefill));
    cJSON_AddItemToObject(g, "decode", logits_json(&r->decode));
    cJSON_AddItemToObject(g, "mtp", logits_json(&r->mtp));
    cJSON_AddItemToObject(g, "indexer_recall", wp_parity_recall_list_json(r->recall, r->n_recall));
    cJSON_AddNumberToObject(g, "seconds", r->seconds);
    cJSON_AddBoolToObject(g, "pass", r->pass);
    return g;
}

cJSON *wp_parity_recall_json(const wp_parity_report *r, const char *reference, int n_prompts,
                             double gate)
{
    cJSON *a = cJSON_CreateObject();
    if (!a) return NULL;
    cJSON_AddStringToObject(a, "reference", reference);
    cJSON_AddNumberToObject(a, "prompts", n_prompts);
    cJSON_AddNumberToObject(a, "gate", gate);
    cJSON_AddItemToObject(a, "layers", wp_parity_recall_list_json(r->recall, r->n_recall));
    cJSON_AddBoolToObject(a, "pass", r->pass);
    return a;
}
