/* cv_util.c — see cv_util.h. */
#include "tests/cv_util.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <string.h>

int cvt_plan(const char *ckpt, const char *profile, const char *const *types, int ntypes, const wp_plan_opts *po,
             wp_ckpt **k, wp_plan **p, wp_err *e)
{
    *k = NULL;
    *p = NULL;
    int rc = wp_ckpt_open(k, ckpt, e);
    if (rc) return rc;
    wp_config c;
    char cfg[4096];
    snprintf(cfg, sizeof cfg, "%s/config.json", wp_ckpt_dir(*k));
    wp_profile prof;
    memset(&prof, 0, sizeof prof);
    rc = wp_config_load(&c, cfg, e);
    if (!rc) rc = wp_profile_load(&prof, profile, e);
    for (int i = 0; !rc && i < ntypes; i++) rc = wp_profile_add_override(&prof, types[i], e);
    if (!rc) rc = wp_plan_build(p, *k, &c, &prof, po, e);
    wp_profile_free(&prof);
    if (rc) {
        wp_ckpt_close(*k);
        *k = NULL;
    }
    return rc;
}

void cvt_free(wp_ckpt *k, wp_plan *p)
{
    wp_plan_free(p);
    wp_ckpt_close(k);
}

int cvt_convert(const wp_plan *p, const char *out, wp_report *rep, int threads, uint64_t budget, wp_err *e)
{
    wp_sink s;
    int rc = wp_dir_sink_new(&s, out, 0, e);
    if (rc) return rc;
    wp_convert_opts o = {.threads = threads, .mem_budget = budget, .report = rep};
    wp_convert_stats st;
    rc = wp_convert_run(p, &s, &o, &st, e);
    wp_dir_sink_free(&s);
    return rc;
}

int cvt_build(const char *ckpt, const char *profile, const char *const *types, int ntypes, const wp_plan_opts *po,
              const char *out, wp_ckpt **k, wp_plan **p)
{
    wp_err e = {0};
    int rc = cvt_plan(ckpt, profile, types, ntypes, po, k, p, &e);
    if (!rc) rc = cvt_convert(*p, out, NULL, 2, 0, &e);
    CHECKF(rc == 0, "build %s (%s) -> %s: %s", ckpt, profile, out, e.msg);
    return rc;
}

wpk_file *cvt_open_wpk(const char *build, const char *name)
{
    wp_err e = {0};
    wpk_file *f = NULL;
    int rc = wpk_open(&f, wpt_path("%s/%s", build, name), &e);
    CHECKF(rc == 0, "open %s/%s: %s", build, name, e.msg);
    return rc ? NULL : f;
}

float *cvt_src_values(wp_ckpt *k, const wp_plan_weight *w, const wp_plan_src *s)
{
    wp_err e = {0};
    wp_qweight q = {
        .enc = w->src_enc, .rows = s->src_rows, .cols = s->src_cols,
        .data = wp_ckpt_data(k, s->w, &e), .scale = s->s ? wp_ckpt_data(k, s->s, &e) : NULL,
        .sfmt = w->src_sfmt, .br = w->src_br, .bc = w->src_bc,
    };
    float *all = malloc(s->nrows * s->src_cols * sizeof *all), *out = malloc(s->nrows * s->ncols * sizeof *out);
    if (!all || !out || !q.data) {
        free(all);
        free(out);
        return NULL;
    }
    wp_qweight_dequant_rows(&q, s->row0, s->nrows, all);
    for (uint64_t r = 0; r < s->nrows; r++)
        memcpy(out + r * s->ncols, all + r * s->src_cols + s->col0, s->ncols * sizeof *out);
    free(all);
    return out;
}

float *cvt_out_values(wpk_file *f, const char *name, uint64_t expert, uint64_t r0, uint64_t n, uint64_t cols,
                      float **scale)
{
    wp_err e = {0};
    const wpk_tensor *t = wpk_find(f, name);
    CHECKF(t != NULL, "%s: missing from %s", name, wpk_path(f));
    if (!t) return NULL;
    float *out = malloc(n * cols * sizeof *out);
    if (scale) *scale = calloc(n * cols, sizeof **scale);
    if (!out || (scale && !*scale)) return NULL;
    int matrix = t->kind == WPK_KIND_ENC && (t->ndim == 2 || (t->stacked && t->ndim == 3));
    if (!matrix) {
        /* a plain vector (norm, sink, ...): decode its elements */
        const uint8_t *d = wpk_data(f, t);
        for (uint64_t i = 0; i < n * cols; i++) {
            uint64_t j = r0 * cols + i;
            uint16_t h;
            switch (t->enc) {
            case WP_ENC_F32: memcpy(&out[i], d + 4 * j, 4); break;
            case WP_ENC_BF16: memcpy(&h, d + 2 * j, 2); out[i] = wp_bf16_to_f32(h); break;
            case WP_ENC_F16: memcpy(&h, d + 2 * j, 2); out[i] = wp_f16_to_f32(h); break;
            default: out[i] = NAN; break;
            }
        }
        return out;
    }
    wp_qweight q;
    int rc = wpk_qweight(f, t, expert, &q, &e);
    CHECKF(rc == 0, "%s: %s", name, e.msg);
    if (rc) {
        free(out);
        return NULL;
    }
    CHECKF(q.cols == cols && r0 + n <= q.rows, "%s: shape [%llu, %llu], expected %llu columns", name,
           (unsigned long long)q.rows, (unsigned long long)q.cols, (unsigned long long)cols);
    if (q.cols != cols || r0 + n > q.rows) {
        free(out);
        return NULL;
    }
    wp_qweight_dequant_rows(&q, r0, n, out);
    if (scale) {
        const uint8_t *s = q.scale;
        for (uint64_t i = 0; i < n; i++)
            for (uint64_t c = 0; c < cols; c++) {
                uint64_t r = r0 + i;
                float v = 0;
                if (q.enc == WP_ENC_FP8) {
                    uint64_t si = (r / q.br) * ((cols + q.bc - 1) / q.bc) + c / q.bc;
                    if (q.sfmt == WP_SCALE_F32)
                        memcpy(&v, s + 4 * si, 4);
                    else
                        v = wp_e8m0_to_f32(s[si]);
                } else if (q.enc == WP_ENC_MXFP4) {
                    v = wp_e8m0_to_f32(s[r * (cols / 32) + c / 32]);
                } else if (q.enc == WP_ENC_NVFP4) {
                    v = wp_e4m3_to_f32(s[r * (cols / 16) + c / 16]) * q.global;
                }
                (*scale)[i * cols + c] = v;
            }
    }
    return out;
}

/* Bytes of one plan source region [nrows x nbytes-per-row] of tensor t seen
 * as rows of `pitch` bytes. */
static uint8_t *region(wp_ckpt *k, const wp_tensor_info *t, uint64_t pitch, uint64_t r0, uint64_t nr, uint64_t c0,
                       uint64_t nb)
{
    wp_err e = {0};
    const uint8_t *d = wp_ckpt_data(k, t, &e);
    uint8_t *o = malloc(nr * nb + 1);
    if (!d || !o) {
        free(o);
        return NULL;
    }
    for (uint64_t r = 0; r < nr; r++) memcpy(o + r * nb, d + (r0 + r) * pitch + c0, nb);
    return o;
}

static void same_bytes(const char *what, const uint8_t *a, const uint8_t *b, size_t n)
{
    uint8_t ha[32], hb[32];
    wp_sha256_buf(a, n, ha, NULL);
    wp_sha256_buf(b, n, hb, NULL);
    CHECKF(!memcmp(ha, hb, 32) && !memcmp(a, b, n), "%s: output slice differs from its source slice (%zu bytes)",
           what, n);
}

static uint64_t rowb(wp_enc e, uint64_t cols) { return wp_enc_data_bytes(e, 1, cols); }

static void check_copy(wp_ckpt *k, const wp_plan *p, const wp_plan_weight *w, wpk_file *f)
{
    const wp_plan_tensor *td = &p->tensors[w->t_weight];
    const wpk_tensor *t = wpk_find(f, td->name);
    CHECKF(t && t->size == td->nbytes, "%s: missing or wrong size", td->name);
    if (!t) return;
    const uint8_t *out = wpk_data(f, t);
    if (w->src == WP_SRC_RAW) {
        const wp_tensor_info *s = w->srcs[0].w;
        uint8_t *src = region(k, s, s->nbytes, 0, 1, 0, s->nbytes);
        if (src) same_bytes(td->name, src, out, s->nbytes);
        free(src);
        return;
    }
    const wpk_tensor *ts = w->t_scale != SIZE_MAX ? wpk_find(f, p->tensors[w->t_scale].name) : NULL;
    for (int sl = 0; sl < w->n_slices; sl++)
        for (int j = 0; j < w->srcs_per_slice; j++) {
            const wp_plan_src *s = &w->srcs[sl * w->srcs_per_slice + j];
            uint64_t pitch = rowb(w->src_enc, s->src_cols), nb = rowb(w->src_enc, s->ncols);
            uint8_t *src = region(k, s->w, pitch, s->row0, s->nrows, rowb(w->src_enc, s->col0), nb);
            char what[256];
            snprintf(what, sizeof what, "%s slice %d source %s", td->name, sl, s->w->name);
            if (src) same_bytes(what, src, out + sl * td->stride + s->out_row0 * nb, s->nrows * nb);
            free(src);
            if (!s->s) continue;
            CHECKF(ts != NULL, "%s: scale missing", td->name);
            if (!ts) continue;
            uint64_t es = w->src_sfmt == WP_SCALE_F32 && w->src_enc == WP_ENC_FP8 ? 4 : 1, sp, r0, nr, c0, nc, orow;
            if (w->src_enc == WP_ENC_FP8) {
                sp = (s->src_cols + w->src_bc - 1) / w->src_bc * es;
                r0 = s->row0 / w->src_br;
                nr = (s->row0 + s->nrows + w->src_br - 1) / w->src_br - r0;
                c0 = s->col0 / w->src_bc * es;
                nc = (s->col0 + s->ncols + w->src_bc - 1) / w->src_bc * es - c0;
                orow = s->out_row0 / w->src_br;
            } else {
                sp = s->src_cols / 32;
                r0 = s->row0;
                nr = s->nrows;
                c0 = s->col0 / 32;
                nc = s->ncols / 32;
                orow = s->out_row0;
            }
            uint8_t *ssrc = region(k, s->s, sp, r0, nr, c0, nc);
            snprintf(what, sizeof what, "%s slice %d source %s", ts->name, sl, s->s->name);
            if (ssrc) same_bytes(what, ssrc, (const uint8_t *)wpk_data(f, ts) + sl * ts->expert_stride + orow * nc, nr * nc);
            free(ssrc);
        }
}

/* The per-element rounding bound of a quantised encoding (docs/profiles.md):
 * RNE to a grid whose relative half-step is h above the format's smallest
 * normal, absolute half-step a x scale below it, plus whatever was clamped. */
static int within_bound(wp_enc enc, float ref, float out, float s)
{
    double r = fabs((double)ref), err = fabs((double)out - (double)ref), lim;
    switch (enc) {
    case WP_ENC_BF16: lim = r * 0x1p-8 + 0x1p-133; break;
    case WP_ENC_F16: lim = r * 0x1p-11 + 0x1p-25; break;
    case WP_ENC_F32: lim = 0; break;
    case WP_ENC_FP8:   /* e4m3: 3 mantissa bits, subnormal step 2^-9 */
        lim = fmax(r * 0x1p-4, s * 0x1p-10) + fmax(0, r - 448.0 * s);
        break;
    default:           /* e2m1: {0, .5, 1, 1.5, 2, 3, 4, 6} */
        lim = fmax(r * 0.25, s * 0.25) + fmax(0, r - 6.0 * s);
        break;
    }
    return err <= lim * (1 + 1e-6);
}

/* Block scales a quantiser chose: amax / s inside the range its rule gives
 * (spec §3.6: pow2ceil puts amax/s in (max/2, max] for E8M0 scales). */
static void check_scales(const char *name, const wp_plan_weight *w, const float *ref, const float *scale, uint64_t nr,
                         uint64_t cols, int *bad)
{
    uint64_t br = w->enc == WP_ENC_FP8 ? w->br : 1;
    uint64_t bc = w->enc == WP_ENC_FP8 ? w->bc : w->enc == WP_ENC_MXFP4 ? 32 : 16;
    double max = w->enc == WP_ENC_FP8 ? 448 : 6;
    for (uint64_t r0 = 0; r0 < nr; r0 += br)
        for (uint64_t c0 = 0; c0 < cols; c0 += bc) {
            double amax = 0;
            for (uint64_t r = r0; r < r0 + br && r < nr; r++)
                for (uint64_t c = c0; c < c0 + bc && c < cols; c++) amax = fmax(amax, fabs(ref[r * cols + c]));
            double s = scale[r0 * cols + c0], q = amax / s;
            int ok;
            if (amax == 0)
                ok = 1;
            else if (w->enc == WP_ENC_NVFP4)   /* E4M3 scale: rounded to 3 mantissa bits */
                ok = q >= max / (1 + 0x1p-3) && q <= max * (1 + 0x1p-3);
            else if (w->sfmt == WP_SCALE_F32 && w->enc == WP_ENC_FP8)
                ok = fabs(q - max) <= max * 1e-6;
            else
                ok = q > max / 2 && q <= max;
            if (!ok && (*bad)++ < 3)
                wpt_fail_at(__FILE__, __LINE__, "%s: block at (%llu, %llu): amax %g / scale %g = %g outside the rule",
                            name, (unsigned long long)r0, (unsigned long long)c0, amax, s, q);
        }
}

static void check_values(wp_ckpt *k, const wp_plan *p, const wp_plan_weight *w, wpk_file *f)
{
    wp_qerr err;
    memset(&err, 0, sizeof err);
    int bad = 0, bad_scale = 0;
    uint64_t mism = 0;
    for (int sl = 0; sl < w->n_slices; sl++)
        for (int j = 0; j < w->srcs_per_slice; j++) {
            const wp_plan_src *s = &w->srcs[sl * w->srcs_per_slice + j];
            float *ref = cvt_src_values(k, w, s), *scale = NULL;
            float *out = cvt_out_values(f, w->name, (uint64_t)sl, s->out_row0, s->nrows, w->cols,
                                        w->method == WP_M_QUANT ? &scale : NULL);
            CHECKF(ref && out, "%s: cannot read values", w->name);
            if (ref && out) {
                uint64_t n = s->nrows * s->ncols;
                wp_qerr_add(&err, ref, out, n, 0);
                for (uint64_t i = 0; i < n; i++) {
                    if (w->method != WP_M_QUANT) {
                        mism += !(ref[i] == out[i] || (isnan(ref[i]) && isnan(out[i])));
                    } else if (!within_bound(w->enc, ref[i], out[i], scale ? scale[i] : 0) && bad++ < 3) {
                        wpt_fail_at(__FILE__, __LINE__, "%s[%d] element %llu: %.9g -> %.9g (scale %g) beyond the %s bound",
                                    w->name, sl, (unsigned long long)i, ref[i], out[i], scale ? scale[i] : 0,
                                    wp_enc_name(w->enc));
                    }
                }
                if (w->method == WP_M_QUANT && scale &&
                    (w->enc == WP_ENC_FP8 || w->enc == WP_ENC_MXFP4 || w->enc == WP_ENC_NVFP4))
                    check_scales(w->name, w, ref, scale, s->nrows, s->ncols, &bad_scale);
            }
            free(ref);
            free(out);
            free(scale);
        }
    CHECKF(mism == 0, "%s (%s %s->%s): %llu elements differ from the dequantised source", w->name,
           wp_method_name(w->method), wp_src_kind_name(w->src), wp_enc_name(w->enc), (unsigned long long)mism);
    if (w->method == WP_M_QUANT)
        CHECKF(wp_qerr_nmse(&err) <= p->profile.nmse_max[w->enc], "%s: nmse %g over the %s threshold %g", w->name,
               wp_qerr_nmse(&err), wp_enc_name(w->enc), p->profile.nmse_max[w->enc]);
}

size_t cvt_check_build(wp_ckpt *k, const wp_plan *p, const char *build)
{
    size_t n = 0;
    for (int fi = 0; fi < p->n_files; fi++) {
        wpk_file *f = cvt_open_wpk(build, p->files[fi].name);
        if (!f) continue;
        CHECK_EQ_INT(wpk_count(f), p->files[fi].n_tensors);
        for (size_t i = 0; i < p->n_weights; i++) {
            const wp_plan_weight *w = &p->weights[i];
            if (w->rank != fi) continue;
            if (w->passthrough || w->src == WP_SRC_RAW)
                check_copy(k, p, w, f);
            else
                check_values(k, p, w, f);
            n++;
        }
        wpk_close(f);
    }
    return n;
}

uint8_t *cvt_slurp(const char *path, size_t *n)
{
    uint8_t *d = NULL;
    size_t len = 0;
    if (wpt_read_file(path, &d, &len)) return NULL;
    if (n) *n = len;
    return d;
}

long long cvt_json_num(const char *doc, const char *key)
{
    cJSON *j = cJSON_Parse(doc);
    const cJSON *x = cJSON_GetObjectItemCaseSensitive(j, key);
    long long v = cJSON_IsNumber(x) ? (long long)x->valuedouble : -1;
    cJSON_Delete(j);
    return v;
}
