/* stats.c — logits against a reference's, row by row (see stats.h). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "verify/parity.h"
#include "verify/stats.h"

void wp_lstats_init(wp_lstats *s, int k)
{
    memset(s, 0, sizeof *s);
    s->k = k < 1 ? 1 : k > WP_STATS_TOPK_MAX ? WP_STATS_TOPK_MAX : k;
}

void wp_lstats_free(wp_lstats *s)
{
    free(s->kl);
    memset(s, 0, sizeof *s);
}

double wp_logsumexp(const float *x, size_t V)
{
    double mx = -INFINITY, sum = 0;
    for (size_t i = 0; i < V; i++) mx = x[i] > mx ? x[i] : mx;
    if (!isfinite(mx)) return mx;
    for (size_t i = 0; i < V; i++) sum += exp((double)x[i] - mx);
    return mx + log(sum);
}

double wp_kl_rows(const float *ref, const float *a, size_t V)
{
    const double lr = wp_logsumexp(ref, V), la = wp_logsumexp(a, V);
    double kl = 0;
    for (size_t i = 0; i < V; i++) {
        double lp = (double)ref[i] - lr, lq = (double)a[i] - la;
        double p = exp(lp);
        if (p > 0) kl += p * (lp - lq);
    }
    return kl > 0 ? kl : 0;   /* rounding can leave -1e-17 for equal rows */
}

/* a ranks before b: larger, then lower id */
static int before(const float *x, int32_t a, int32_t b)
{
    return x[a] > x[b] || (x[a] == x[b] && a < b);
}

void wp_topk_ids(const float *x, size_t V, int k, int32_t *ids)
{
    int n = 0;
    for (size_t i = 0; i < V; i++) {
        int32_t v = (int32_t)i;
        if (n == k && !before(x, v, ids[k - 1])) continue;
        int j = n < k ? n++ : k - 1;
        while (j > 0 && before(x, v, ids[j - 1])) {
            ids[j] = ids[j - 1];
            j--;
        }
        ids[j] = v;
    }
}

static int same_set(const int32_t *a, const int32_t *b, int k)
{
    for (int i = 0; i < k; i++) {
        int hit = 0;
        for (int j = 0; j < k && !hit; j++) hit = a[i] == b[j];
        if (!hit) return 0;
    }
    return 1;
}

double wp_kl_topk(const int32_t *ids, const float *vals, int k, double ref_lse, const float *a,
                  size_t V)
{
    const double la = wp_logsumexp(a, V);
    double kl = 0, pk = 0, qk = 0;
    for (int i = 0; i < k; i++) {
        if (ids[i] < 0 || (size_t)ids[i] >= V) continue;
        double lp = (double)vals[i] - ref_lse, lq = (double)a[ids[i]] - la;
        double p = exp(lp);
        pk += p;
        qk += exp(lq);
        if (p > 0) kl += p * (lp - lq);
    }
    double pr = 1 - pk, qr = 1 - qk;      /* the rest bucket */
    if (pr > 1e-12 && qr > 0) kl += pr * log(pr / qr);
    else if (pr > 1e-12) kl = INFINITY;
    return kl > 0 ? kl : 0;
}

int wp_lstats_add_measured(wp_lstats *s, double kl, double cos, double rel, int top1, int topk_same,
                           wp_err *e)
{
    if (s->rows == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 64;
        double *kl2 = realloc(s->kl, cap * sizeof *kl2);
        if (!kl2) return wp_oom(e, "logits statistics of %zu rows", cap);
        s->kl = kl2;
        s->cap = cap;
    }
    if (s->rows == 0 || cos < s->cos_min) s->cos_min = cos;
    if (rel > s->rel_max) s->rel_max = rel;
    if (kl > s->kl_max) s->kl_max = kl;
    s->kl[s->rows++] = kl;
    s->kl_sum += kl;
    s->cos_sum += cos;
    s->rel_sum += rel;
    s->top1_agree += !!top1;
    s->topk_same += !!topk_same;
    return 0;
}

int wp_lstats_add(wp_lstats *s, const float *ref, const float *a, size_t V, wp_err *e)
{
    int k = s->k < (int)V ? s->k : (int)V;
    int32_t ir[WP_STATS_TOPK_MAX], ia[WP_STATS_TOPK_MAX];
    wp_topk_ids(ref, V, k, ir);
    wp_topk_ids(a, V, k, ia);
    return wp_lstats_add_measured(s, wp_kl_rows(ref, a, V), wp_cosine(a, ref, V), wp_rel_err(a, ref, V),
                                  ir[0] == ia[0], same_set(ir, ia, k), e);
}

void wp_lstats_summary(wp_lstats *s, wp_lsummary *o)
{
    memset(o, 0, sizeof *o);
    o->rows = s->rows;
    o->k = s->k;
    o->top1_agree = s->top1_agree;
    o->topk_same = s->topk_same;
    if (!s->rows) {
        o->top1_rate = o->topk_rate = o->cos_min = o->cos_mean = 1;
        return;
    }
    const double n = (double)s->rows;
    o->kl_mean = s->kl_sum / n;
    o->kl_max = s->kl_max;
    o->kl_p99 = wp_quantile(s->kl, s->rows, 0.99);
    o->cos_min = s->cos_min;
    o->cos_mean = s->cos_sum / n;
    o->rel_rms_mean = s->rel_sum / n;
    o->rel_rms_max = s->rel_max;
    o->top1_rate = (double)s->top1_agree / n;
    o->topk_rate = (double)s->topk_same / n;
}
