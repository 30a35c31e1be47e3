/*
 * stats.c — quantisation error statistics (wp_qerr): running sums in double
 * so they can be merged across threads and tensors, summaries on demand.
 */
#include <math.h>

#include "quant/quant.h"

void wp_qerr_add(wp_qerr *s, const float *ref, const float *out, size_t n, float sat_limit)
{
    double se = 0, sr = 0, dot = 0, so = 0, mx = s->max_abs_err;
    uint64_t sat = 0;
    /* sat_limit <= 0 (or NaN) disables the saturation count. */
    int count_sat = sat_limit > 0.0f;
    for (size_t i = 0; i < n; i++) {
        double r = ref[i], o = out[i], d = o - r;
        se += d * d;
        sr += r * r;
        so += o * o;
        dot += r * o;
        double a = fabs(d);
        if (a > mx || isnan(a))
            mx = isnan(mx) ? mx : a;
        sat += count_sat && fabsf(ref[i]) > sat_limit;
    }
    s->sum_sq_err += se;
    s->sum_sq_ref += sr;
    s->sum_sq_out += so;
    s->dot += dot;
    s->max_abs_err = mx;
    s->n += n;
    s->n_saturated += sat;
}

void wp_qerr_merge(wp_qerr *into, const wp_qerr *from)
{
    into->sum_sq_err += from->sum_sq_err;
    into->sum_sq_ref += from->sum_sq_ref;
    into->sum_sq_out += from->sum_sq_out;
    into->dot += from->dot;
    if (from->max_abs_err > into->max_abs_err || isnan(from->max_abs_err))
        into->max_abs_err = isnan(into->max_abs_err) ? into->max_abs_err : from->max_abs_err;
    into->n += from->n;
    into->n_saturated += from->n_saturated;
}

double wp_qerr_rmse(const wp_qerr *s)
{
    return s->n ? sqrt(s->sum_sq_err / (double)s->n) : 0.0;
}

double wp_qerr_nmse(const wp_qerr *s)
{
    if (s->sum_sq_ref == 0.0)
        return s->sum_sq_err == 0.0 ? 0.0 : INFINITY;
    return s->sum_sq_err / s->sum_sq_ref;
}

double wp_qerr_cosine(const wp_qerr *s)
{
    if (s->sum_sq_ref == 0.0 && s->sum_sq_out == 0.0)
        return 1.0;   /* two zero vectors are identical */
    if (s->sum_sq_ref == 0.0 || s->sum_sq_out == 0.0)
        return 0.0;
    return s->dot / sqrt(s->sum_sq_ref * s->sum_sq_out);
}

double wp_qerr_sat_fraction(const wp_qerr *s)
{
    return s->n ? (double)s->n_saturated / (double)s->n : 0.0;
}
