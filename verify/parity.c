/*
 * parity.c — the runtime against golden outputs, and one build's indexer
 * against another's (verify/parity.h).
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

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

typedef struct golden {
    wp_st_file *f;
    const char *path;
} golden;

/* A copy of a golden tensor (the mapping need not be aligned for floats),
 * checked for dtype and shape; NULL with *rc = 0 if absent and optional. */
static void *gload(golden *g, const char *name, wp_dtype dt, int ndim, const uint64_t *shape,
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
        *rc = wp_fail(e, WP_ENOMEM, "%s: %s: out of memory", g->path, name);
        return NULL;
    }
    if ((*rc = wp_st_read(g->f, t, 0, buf, t->nbytes, e))) {
        free(buf);
        return NULL;
    }
    return buf;
}

static void logits_add(wp_parity_logits *L, const float *ref, const float *a, size_t V)
{
    double c = wp_cosine(a, ref, V), r = wp_rel_err(a, ref, V), kl = wp_kl_logits(ref, a, V);
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
    const size_t top = wp_argmax(ref, V);
    const int agree = wp_argmax(a, V) == top;
    L->top1_agree += agree;
    double ss = 0, second = -INFINITY;
    for (size_t i = 0; i < V; i++) {
        ss += (double)ref[i] * ref[i];
        if (i != top && ref[i] > second) second = ref[i];
    }
    if (ref[top] - second >= WP_PARITY_CLEAR * sqrt(ss / V)) {
        L->top1_clear_rows++;
        L->top1_clear_agree += agree;
    }
    L->rows++;
}

int wp_parity_golden(wp_tsrc *src, const char *golden_path, const wp_parity_opts *o,
                     wp_parity_report *r, wp_err *e)
{
    memset(r, 0, sizeof *r);
    r->prefill.what = "prefill";
    r->decode.what = "decode";
    r->mtp.what = "mtp";
    const double t0 = wp_now();
    golden g = {.path = golden_path};
    int rc = wp_st_open(&g.f, golden_path, e);
    if (rc) return rc;
    const wp_config *c = &src->cfg;
    wp_model *m = NULL;
    wp_seq *seq = NULL;
    int32_t *tokens = NULL, *dtok = NULL, *mids = NULL, *cap = NULL, *gtk = NULL;
    float *hin0 = NULL, *lh = NULL, *plog = NULL, *dlog = NULL, *mlog = NULL, *h = NULL,
          *logits = NULL;
    double *errs = NULL;
    const wp_tensor_info *tt = wp_st_find(g.f, "tokens");
    if (!tt || tt->ndim != 2) {
        rc = wp_fail(e, WP_EINVAL, "%s: tokens: missing or not [batch, seq]", golden_path);
        goto out;
    }
    const uint64_t B = tt->shape[0], S = tt->shape[1], V = (uint64_t)c->vocab_size;
    const uint64_t hc = (uint64_t)c->hc_mult, d = (uint64_t)c->dim, nL = (uint64_t)c->n_layers;
    const uint64_t row = hc * d, K = (uint64_t)c->index_topk;
    if (B == 0 || S == 0 || nL > WP_PARITY_MAX) {
        rc = wp_fail(e, WP_EINVAL, "%s: tokens: empty batch or too many layers", golden_path);
        goto out;
    }
    tokens = gload(&g, "tokens", WP_I32, 2, (uint64_t[]){B, S}, 0, &rc, e);
    if (rc) goto out;
    hin0 = gload(&g, "layer_h_in0", WP_F32, 4, (uint64_t[]){B, S, hc, d}, 1, &rc, e);
    if (rc) goto out;
    lh = gload(&g, "layer_h", WP_F32, 5, (uint64_t[]){nL, B, S, hc, d}, 1, &rc, e);
    if (rc) goto out;
    plog = gload(&g, "prefill_logits", WP_F32, 2, (uint64_t[]){B, V}, 0, &rc, e);
    if (rc) goto out;
    const wp_tensor_info *dt = wp_st_find(g.f, "decode_tokens");
    const uint64_t ND = dt && dt->ndim == 2 ? dt->shape[1] : 0;
    if (ND) {
        dtok = gload(&g, "decode_tokens", WP_I32, 2, (uint64_t[]){B, ND}, 0, &rc, e);
        if (!rc) dlog = gload(&g, "decode_logits", WP_F32, 3, (uint64_t[]){B, ND, V}, 0, &rc, e);
        if (rc) goto out;
    }
    mids = gload(&g, "mtp_input_ids", WP_I32, 2, (uint64_t[]){B, S}, 1, &rc, e);
    if (!rc) mlog = gload(&g, "mtp_logits", WP_F32, 2, (uint64_t[]){B, V}, 1, &rc, e);
    if (rc) goto out;

    wp_rt_opts ro = {.threads = o->threads, .flags = o->rt_flags};
    if ((rc = wp_model_load(&m, src, &ro, e))) goto out;
    if ((rc = wp_seq_new(&seq, m, (int)(S + ND), e))) goto out;
    h = malloc(sizeof(float) * row * S);
    logits = malloc(sizeof(float) * V);
    errs = malloc(sizeof(double) * B * S);
    cap = malloc(sizeof(int32_t) * S * K);
    if (!h || !logits || !errs || !cap) {
        rc = wp_fail(e, WP_ENOMEM, "parity: out of memory");
        goto out;
    }
    r->pass = 1;

    /* 1 + 3: each layer from its golden input; the CSA layers' selections */
    if (hin0 && lh) {
        for (uint64_t l = 0; l < nL; l++) {
            wp_parity_layer *pl = &r->layers[r->n_layers++];
            pl->layer = (int)l;
            const int csa = c->compress_ratios[l] == 4;
            wp_parity_recall *pr = NULL;
            char tname[64];
            snprintf(tname, sizeof tname, "indexer_topk.%llu", (unsigned long long)l);
            free(gtk);
            gtk = csa ? gload(&g, tname, WP_I32, 3, (uint64_t[]){B, S, K}, 1, &rc, e) : NULL;
            if (rc) goto out;
            if (gtk) {
                pr = &r->recall[r->n_recall++];
                pr->layer = (int)l;
                pr->worst = 1;
            }
            double rsum = 0;
            for (uint64_t b = 0; b < B; b++) {
                const float *in = l == 0 ? hin0 + b * S * row : lh + ((l - 1) * B + b) * S * row;
                const float *gold = lh + (l * B + b) * S * row;
                const int32_t *tk = tokens + b * S;
                memcpy(h, in, sizeof(float) * row * S);
                wp_seq_reset(seq);
                if (csa && (rc = wp_seq_capture_topk(seq, (int)l, cap, (int)S, e))) goto out;
                if ((rc = wp_model_layer(m, seq, (int)l, h, tk, (int)S, e))) goto out;
                if (csa) wp_seq_capture_topk(seq, (int)l, NULL, 0, NULL);
                for (uint64_t s = 0; s < S; s++)
                    errs[b * S + s] = wp_rel_err(h + s * row, gold + s * row, row);
                for (uint64_t s = 0; pr && s < S; s++) {
                    int32_t ref[K];
                    /* golden values are S + entry (the prefill offset), -1 none */
                    for (uint64_t i = 0; i < K; i++) {
                        int32_t v = gtk[(b * S + s) * K + i];
                        ref[i] = v >= (int32_t)S ? v - (int32_t)S : -1;
                    }
                    double rec = wp_topk_recall(cap + s * K, ref, (int)K);
                    if (rec < 0) continue;
                    rsum += rec;
                    pr->queries++;
                    if (rec < pr->worst) pr->worst = rec;
                }
            }
            pl->max = 0;
            for (uint64_t i = 0; i < B * S; i++) pl->max = errs[i] > pl->max ? errs[i] : pl->max;
            pl->median = wp_quantile(errs, B * S, 0.5);
            pl->p90 = wp_quantile(errs, B * S, 0.9);
            pl->pass = pl->median <= o->layer_median_max && pl->p90 <= o->layer_p90_max;
            r->pass &= pl->pass;
            if (pr) {
                pr->mean = pr->queries ? rsum / pr->queries : 1.0;
                pr->pass = pr->mean >= o->recall_min;
                r->pass &= pr->pass;
            }
        }
    }

    /* 2. logits: prefill, teacher-forced decode, MTP from the golden trunk */
    for (uint64_t b = 0; b < B; b++) {
        wp_seq_reset(seq);
        if ((rc = wp_model_forward(m, seq, tokens + b * S, (int)S, logits, NULL, e))) goto out;
        logits_add(&r->prefill, plog + b * V, logits, V);
        for (uint64_t k = 0; k < ND; k++) {
            if ((rc = wp_model_forward(m, seq, dtok + b * ND + k, 1, logits, NULL, e))) goto out;
            logits_add(&r->decode, dlog + (b * ND + k) * V, logits, V);
        }
        if (mids && mlog && lh && c->n_mtp_layers > 0) {
            wp_seq_reset(seq);
            if ((rc = wp_model_mtp(m, seq, lh + ((nL - 1) * B + b) * S * row, mids + b * S,
                                   (int)S, logits, e)))
                goto out;
            logits_add(&r->mtp, mlog + b * V, logits, V);
        }
    }
    wp_parity_logits *ls[3] = {&r->prefill, &r->decode, &r->mtp};
    for (int i = 0; i < 3; i++) {
        ls[i]->pass = ls[i]->rows == 0 || ls[i]->cos_min >= o->cos_min;
        r->pass &= ls[i]->pass;
    }
out:
    r->seconds = wp_now() - t0;
    wp_seq_free(seq);
    wp_model_free(m);
    wp_st_close(g.f);
    free(tokens);
    free(dtok);
    free(mids);
    free(cap);
    free(gtk);
    free(hin0);
    free(lh);
    free(plog);
    free(dlog);
    free(mlog);
    free(h);
    free(logits);
    free(errs);
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
        rc = wp_fail(e, WP_ENOMEM, "parity: out of memory");
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
