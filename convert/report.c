/*
 * report.c — the quantisation-error report: one record per weight that is
 * not copied, its statistics against the dequantised source (quant/quant.h
 * wp_qerr) and the per-encoding thresholds of docs/profiles.md.
 */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "convert/convert_priv.h"

/* NMSE = sum(err^2) / sum(ref^2) over the tensor.  The limits follow from
 * each format's resolution (docs/profiles.md, "Thresholds"): round to
 * nearest with m stored mantissa bits leaves a relative error uniform in
 * +-ulp/2, ulp/|x| in (2^-(m+1), 2^-m], so values in the normal range have
 * an NMSE of at most 2^-2m / 12.  Block formats also lose the small elements
 * of a block; their limits sit ~2x above the NMSE of Gaussian weights
 * (tests/test_quant_report.c convert_quant_thresholds_calibrated measures it and
 * checks each limit is within 10x of it, so none is vacuous). */
double wp_report_default_nmse_max(wp_enc enc)
{
    switch (enc) {
    case WP_ENC_F32: return 0.0;        /* every conversion to f32 is exact */
    case WP_ENC_BF16: return 1e-5;      /* m = 7: <= 2^-14/12 = 5.1e-6; Gaussian 2.8e-6 */
    case WP_ENC_F16: return 2e-7;       /* m = 10: <= 2^-20/12 = 7.9e-8; Gaussian 4.3e-8 */
    case WP_ENC_FP8: return 2.5e-3;     /* m = 3: <= 2^-6/12 = 1.3e-3; Gaussian 128x128 E8M0 7.0e-4 */
    case WP_ENC_MXFP4: return 3e-2;     /* Gaussian 1x32 E8M0 1.4e-2 */
    case WP_ENC_NVFP4: return 2e-2;     /* Gaussian 1x16 E4M3 + global 9.1e-3 */
    default: return 0.0;
    }
}

int wp_report_init(wp_report *r, const wp_plan *p, wp_err *e)
{
    memset(r, 0, sizeof *r);
    r->plan = p;
    size_t n = 0;
    for (size_t i = 0; i < p->n_weights; i++) n += !p->weights[i].passthrough;
    r->rec = calloc(n ? n : 1, sizeof *r->rec);
    if (!r->rec) return wp_oom(e, "quantisation report");
    for (size_t i = 0; i < p->n_weights; i++) {
        const wp_plan_weight *w = &p->weights[i];
        if (w->passthrough) continue;
        wp_qrecord *q = &r->rec[r->n++];
        q->weight = i;
        q->nmse_max = p->profile.nmse_max[w->enc];
    }
    return 0;
}

void wp_report_free(wp_report *r)
{
    free(r->rec);
    memset(r, 0, sizeof *r);
}

size_t wp_report_check(wp_report *r)
{
    r->n_over = 0;
    for (size_t i = 0; i < r->n; i++) {
        wp_qrecord *q = &r->rec[i];
        const wp_plan_weight *w = &r->plan->weights[q->weight];
        double nmse = wp_qerr_nmse(&q->err);
        if (w->loss == WP_LOSS_EXACT)
            /* an exact method (the spec §3.7 cast included) that lost a value
             * makes the build lossy where the plan said exact: a defect,
             * whatever its size (docs/profiles.md "Lossless builds") */
            q->over = q->n_inexact > 0 || q->err.sum_sq_err != 0.0 || isnan(q->err.max_abs_err);
        else
            q->over = !(nmse <= q->nmse_max) || isnan(q->err.max_abs_err);
        r->n_over += (size_t)q->over;
    }
    return r->n_over;
}

static int cmp_nmse(const void *a, const void *b, void *ctx)
{
    const wp_report *r = ctx;
    double x = wp_qerr_nmse(&r->rec[*(const size_t *)a].err);
    double y = wp_qerr_nmse(&r->rec[*(const size_t *)b].err);
    if (isnan(x)) x = INFINITY;
    if (isnan(y)) y = INFINITY;
    if (x != y) return x > y ? -1 : 1;
    size_t i = *(const size_t *)a, j = *(const size_t *)b;
    return i < j ? -1 : i > j;   /* ties in plan order: a stable, deterministic table */
}

size_t *wp_report_order(const wp_report *r, wp_err *e)
{
    size_t *o = malloc((r->n ? r->n : 1) * sizeof *o);
    if (!o) {
        wp_oom(e, "quantisation report order");
        return NULL;
    }
    for (size_t i = 0; i < r->n; i++) o[i] = i;
    qsort_r(o, r->n, sizeof *o, cmp_nmse, (void *)r);
    return o;
}

/* JSON has no inf/nan: they become strings so the document stays valid. */
static void add_num(cJSON *o, const char *k, double v)
{
    if (isfinite(v))
        cJSON_AddNumberToObject(o, k, v);
    else
        cJSON_AddStringToObject(o, k, isnan(v) ? "nan" : v > 0 ? "inf" : "-inf");
}

cJSON *wp_report_to_json(const wp_report *r)
{
    cJSON *o = cJSON_CreateObject();
    if (!o) return NULL;
    const wp_plan *p = r->plan;
    cJSON_AddStringToObject(o, "profile", p->profile.name);
    cJSON *th = cJSON_AddObjectToObject(o, "thresholds_nmse");
    for (int i = 0; i < WP_ENC_COUNT; i++) add_num(th, wp_enc_name((wp_enc)i), p->profile.nmse_max[i]);
    cJSON *a = cJSON_AddArrayToObject(o, "tensors");
    size_t n_flag = 0;
    for (size_t i = 0; i < r->n; i++) {
        const wp_qrecord *q = &r->rec[i];
        const wp_plan_weight *w = &p->weights[q->weight];
        cJSON *j = cJSON_CreateObject();
        cJSON_AddStringToObject(j, "name", w->name);
        if (p->n_files > 1) cJSON_AddStringToObject(j, "file", p->files[w->rank].name);
        cJSON_AddStringToObject(j, "family", wp_family_name(w->family));
        cJSON_AddBoolToObject(j, "indexer_path", w->indexer_path);
        n_flag += (size_t)w->indexer_path;
        cJSON_AddStringToObject(j, "from", wp_src_kind_name(w->src));
        cJSON_AddStringToObject(j, "to", wp_enc_name(w->enc));
        cJSON_AddStringToObject(j, "method", wp_method_name(w->method));
        cJSON_AddNumberToObject(j, "elements", (double)q->err.n);
        add_num(j, "rmse", wp_qerr_rmse(&q->err));
        add_num(j, "nmse", wp_qerr_nmse(&q->err));
        add_num(j, "max_abs_err", q->err.max_abs_err);
        add_num(j, "cosine", wp_qerr_cosine(&q->err));
        add_num(j, "saturated_fraction", q->err.n ? (double)q->err.n_saturated / (double)q->err.n : 0.0);
        cJSON_AddNumberToObject(j, "inexact_elements", (double)q->n_inexact);
        cJSON_AddStringToObject(j, "loss", wp_loss_name(w->loss));
        if (w->loss == WP_LOSS_EXACT)
            cJSON_AddStringToObject(j, "threshold", "exact");
        else
            add_num(j, "threshold", q->nmse_max);
        cJSON_AddBoolToObject(j, "pass", !q->over);
        cJSON_AddItemToArray(a, j);
    }
    cJSON *s = cJSON_AddObjectToObject(o, "summary");
    cJSON_AddNumberToObject(s, "tensors", (double)r->n);
    cJSON_AddNumberToObject(s, "over_threshold", (double)r->n_over);
    cJSON_AddNumberToObject(s, "indexer_path", (double)n_flag);
    cJSON_AddBoolToObject(s, "pass", r->n_over == 0);
    return o;
}

int wp_report_write_json(const wp_report *r, const char *path, int force, wp_err *e)
{
    cJSON *j = wp_report_to_json(r);
    char *s = j ? cJSON_Print(j) : NULL;
    cJSON_Delete(j);
    if (!s) return wp_oom(e, "quantisation report JSON");
    size_t n = strlen(s);
    s[n] = '\n';   /* replaces the NUL; length n + 1 written */
    int rc = wp_write_file_create(path, s, n + 1, force, e);
    free(s);
    return rc;
}
