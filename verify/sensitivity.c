/* sensitivity.c — each lossy family's end-to-end effect (see sensitivity.h). */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "verify/parity.h"
#include "verify/sensitivity.h"

/* Reference logits are kept whole: positions x vocab floats, at most this many. */
#define SENS_MAX_FLOATS (1ull << 28)

/* ---- A source where one family is lossy ---------------------------------------
 * Wraps the checkpoint's source: every tensor of the chosen family that the
 * plan re-quantises is dequantised and re-encoded on load to the plan's
 * target (encoding, block, scale rule, as convert's pipeline does); every
 * other tensor is the checkpoint's own. */

typedef struct lossy_src {
    wp_tsrc pub;
    wp_tsrc *inner;
    const wp_plan *p;
    size_t n_map;              /* source tensor name -> plan weight, this family's lossy ones */
    const char **map_name;
    size_t *map_weight;
    void **bufs;               /* owned views, freed at close */
    size_t n_bufs, cap_bufs;
} lossy_src;

static size_t map_find(const lossy_src *l, const char *name)
{
    for (size_t i = 0; i < l->n_map; i++)
        if (!strcmp(l->map_name[i], name)) return l->map_weight[i];
    return SIZE_MAX;
}

static void *own(lossy_src *l, size_t n, wp_err *e)
{
    if (l->n_bufs == l->cap_bufs) {
        size_t nc = l->cap_bufs ? 2 * l->cap_bufs : 64;
        void **nb = realloc(l->bufs, nc * sizeof *nb);
        if (!nb) {
            wp_oom(e, "sensitivity");
            return NULL;
        }
        l->bufs = nb;
        l->cap_bufs = nc;
    }
    void *b = malloc(n ? n : 1);
    if (!b) {
        wp_oom(e, "sensitivity");
        return NULL;
    }
    l->bufs[l->n_bufs++] = b;
    return b;
}

static int ls_weight(wp_tsrc *s, const char *name, wp_qweight *out, wp_err *e)
{
    lossy_src *l = s->impl;
    int rc = l->inner->weight(l->inner, name, out, e);
    if (rc) return rc;
    char full[512];
    snprintf(full, sizeof full, "%s.weight", name);
    size_t wi = map_find(l, full);
    if (wi == SIZE_MAX) return 0;
    const wp_plan_weight *w = &l->p->weights[wi];
    uint64_t rows = out->rows, cols = out->cols, n;
    if (wp_mul_u64(rows, cols, &n) || n > SENS_MAX_FLOATS)
        return wp_fail(e, WP_EUSAGE, "%s: %llu x %llu elements: too large to re-quantise in memory", full,
                       (unsigned long long)rows, (unsigned long long)cols);
    float *ref = own(l, (size_t)n * 4, e);
    if (!ref) return WP_ENOMEM;
    wp_qweight_dequant_rows(out, 0, rows, ref);
    wp_qweight q = {.enc = w->enc, .rows = rows, .cols = cols, .sfmt = w->sfmt, .br = w->br, .bc = w->bc,
                    .global = 1.0f};
    uint64_t db = wp_enc_data_bytes(w->enc, rows, cols);
    uint64_t sb = wp_enc_scale_bytes(w->enc, rows, cols, w->br ? w->br : 1, w->bc ? w->bc : 1, w->sfmt);
    if (db == UINT64_MAX || sb == UINT64_MAX)
        return wp_fail(e, WP_EINVAL, "%s: [%llu, %llu] cannot take %s", full, (unsigned long long)rows,
                       (unsigned long long)cols, wp_enc_name(w->enc));
    uint8_t *d = w->enc == WP_ENC_F32 ? (uint8_t *)ref : own(l, (size_t)db, e);
    uint8_t *sc = sb ? own(l, (size_t)sb, e) : NULL;
    if (!d || (sb && !sc)) return WP_ENOMEM;
    switch (w->enc) {
    case WP_ENC_F32:
        break;
    case WP_ENC_BF16:
    case WP_ENC_F16:
        for (uint64_t i = 0; i < n; i++) {
            uint16_t h = w->enc == WP_ENC_BF16 ? wp_f32_to_bf16(ref[i]) : wp_f32_to_f16(ref[i]);
            memcpy(d + 2 * i, &h, 2);
        }
        break;
    case WP_ENC_FP8:
        wp_fp8_block_quant(ref, (size_t)rows, (size_t)cols, w->br, w->bc, w->sfmt, d, sc);
        break;
    case WP_ENC_MXFP4:
        wp_mxfp4_quant(ref, (size_t)rows, (size_t)cols, d, sc);
        break;
    case WP_ENC_NVFP4:
        q.global = wp_nvfp4_global_scale(ref, (size_t)n);
        wp_nvfp4_quant(ref, (size_t)rows, (size_t)cols, q.global, d, sc);
        break;
    default:
        return wp_fail(e, WP_EINVAL, "%s: cannot encode %s", full, wp_enc_name(w->enc));
    }
    q.data = d;
    q.scale = sc;
    *out = q;
    return 0;
}

/* A plain tensor of the family (HC parameters, gate.bias, norms, ape): its
 * values rounded through the plan's encoding, handed over as F32. */
static int ls_tensor(wp_tsrc *s, const char *name, wp_tview *out, wp_err *e)
{
    lossy_src *l = s->impl;
    int rc = l->inner->tensor(l->inner, name, out, e);
    if (rc) return rc;
    size_t wi = map_find(l, name);
    if (wi == SIZE_MAX) return 0;
    const wp_plan_weight *w = &l->p->weights[wi];
    if (out->dtype != WP_F32 && out->dtype != WP_BF16 && out->dtype != WP_F16) return 0;
    uint64_t n = 1;
    for (int i = 0; i < out->ndim; i++)
        if (wp_mul_u64(n, out->shape[i], &n) || n > SENS_MAX_FLOATS)
            return wp_fail(e, WP_EUSAGE, "%s: too large to re-encode in memory", name);
    float *f = own(l, (size_t)n * 4, e);
    if (!f) return WP_ENOMEM;
    for (uint64_t i = 0; i < n; i++) {
        float v;
        uint16_t h;
        if (out->dtype == WP_F32) {
            memcpy(&v, (const char *)out->data + 4 * i, 4);
        } else {
            memcpy(&h, (const char *)out->data + 2 * i, 2);
            v = out->dtype == WP_BF16 ? wp_bf16_to_f32(h) : wp_f16_to_f32(h);
        }
        if (w->enc == WP_ENC_BF16) v = wp_bf16_round(v);
        else if (w->enc == WP_ENC_F16) v = wp_f16_to_f32(wp_f32_to_f16(v));
        f[i] = v;
    }
    out->dtype = WP_F32;
    out->data = f;
    return 0;
}

static int ls_has(wp_tsrc *s, const char *name)
{
    lossy_src *l = s->impl;
    return l->inner->has(l->inner, name);
}

static void ls_close(wp_tsrc *s)
{
    if (!s) return;
    lossy_src *l = s->impl;
    for (size_t i = 0; i < l->n_bufs; i++) free(l->bufs[i]);
    free(l->bufs);
    free(l->map_name);
    free(l->map_weight);
    free(l);
}

/* family NULL: nothing lossy (the exact source) */
static int lossy_src_new(wp_tsrc **out, wp_tsrc *inner, const wp_plan *p, const char *family, wp_err *e)
{
    *out = NULL;
    lossy_src *l = calloc(1, sizeof *l);
    if (!l) return wp_oom(e, "sensitivity");
    l->inner = inner;
    l->p = p;
    size_t cap = 0;
    for (size_t i = 0; family && i < p->n_weights; i++)
        if (p->weights[i].loss == WP_LOSS_LOSSY) cap += (size_t)p->weights[i].n_slices * (size_t)p->weights[i].srcs_per_slice;
    l->map_name = calloc(cap ? cap : 1, sizeof *l->map_name);
    l->map_weight = calloc(cap ? cap : 1, sizeof *l->map_weight);
    if (!l->map_name || !l->map_weight) {
        ls_close(&l->pub);
        return wp_oom(e, "sensitivity");
    }
    l->pub.impl = l;
    for (size_t i = 0; family && i < p->n_weights; i++) {
        const wp_plan_weight *w = &p->weights[i];
        char f[96];
        wp_loss_family(w->name, f, sizeof f);
        if (w->loss != WP_LOSS_LOSSY || strcmp(f, family)) continue;
        size_t ns = (size_t)w->n_slices * (size_t)w->srcs_per_slice;
        for (size_t k = 0; k < ns; k++) {
            if (map_find(l, w->srcs[k].w->name) != SIZE_MAX) continue;   /* another rank's slice */
            l->map_name[l->n_map] = w->srcs[k].w->name;
            l->map_weight[l->n_map++] = i;
        }
    }
    l->pub.path = inner->path;
    l->pub.kind = "sensitivity";
    l->pub.cfg = inner->cfg;
    l->pub.verified = inner->verified;
    l->pub.weight = ls_weight;
    l->pub.tensor = ls_tensor;
    l->pub.has = ls_has;
    l->pub.close = ls_close;
    *out = &l->pub;
    return 0;
}

/* ---- Runs ------------------------------------------------------------------------ */

/* Every position's logits of every prompt, fed one token at a time. */
static int run_logits(wp_tsrc *src, int threads, const int32_t *const *prompts, const int *lens, int n_prompts,
                      float *out, wp_err *e)
{
    wp_model *m = NULL;
    wp_rt_opts ro = {.threads = threads > 0 ? threads : 1};
    int rc = wp_model_load(&m, src, &ro, e);
    size_t vocab = rc ? 0 : (size_t)wp_model_config(m)->vocab_size, row = 0;
    for (int i = 0; i < n_prompts && !rc; i++) {
        wp_seq *s = NULL;
        rc = wp_seq_new(&s, m, lens[i], e);
        for (int t = 0; t < lens[i] && !rc; t++, row++)
            rc = wp_model_forward(m, s, &prompts[i][t], 1, out + row * vocab, NULL, e);
        wp_seq_free(s);
    }
    wp_model_free(m);
    return rc;
}

static void compare(const float *ref, const float *a, size_t vocab, int rows, wp_sens_family *f)
{
    double kl = 0;
    int agree = 0;
    f->positions = rows;
    f->kl_max = 0;
    f->cos_min = 1;
    for (int r = 0; r < rows; r++) {
        const float *x = ref + (size_t)r * vocab, *y = a + (size_t)r * vocab;
        double k = wp_kl_logits(x, y, vocab), c = wp_cosine(x, y, vocab);
        kl += k;
        if (k > f->kl_max || isnan(k)) f->kl_max = k;
        if (c < f->cos_min || isnan(c)) f->cos_min = c;
        agree += wp_argmax(x, vocab) == wp_argmax(y, vocab);
    }
    f->kl_mean = rows ? kl / rows : 0;
    f->top1_agree = rows ? (double)agree / rows : 1;
}

static int cmp_kl(const void *a, const void *b)
{
    const wp_sens_family *x = a, *y = b;
    if (x->kl_mean != y->kl_mean) return x->kl_mean > y->kl_mean ? -1 : 1;
    return strcmp(x->family, y->family);
}

int wp_sensitivity(const wp_plan *p, const char *ckpt_dir, const int32_t *const *prompts, const int *lens,
                   int n_prompts, int threads, wp_sens_report *r, wp_err *e)
{
    memset(r, 0, sizeof *r);
    double t0 = wp_now();
    if (n_prompts < 1) return wp_fail(e, WP_EUSAGE, "sensitivity: no prompt");
    int vocab = p->config.vocab_size;
    uint64_t rows = 0;
    for (int i = 0; i < n_prompts; i++) {
        if (lens[i] < 1) return wp_fail(e, WP_EUSAGE, "sensitivity: prompt %d is empty", i + 1);
        for (int t = 0; t < lens[i]; t++)
            if (prompts[i][t] < 0 || prompts[i][t] >= vocab)
                return wp_fail(e, WP_EUSAGE, "sensitivity: prompt %d: token %d is outside the vocabulary [0, %d)",
                               i + 1, (int)prompts[i][t], vocab);
        rows += (uint64_t)lens[i];
    }
    if (rows * (uint64_t)vocab > SENS_MAX_FLOATS)
        return wp_fail(e, WP_EUSAGE, "sensitivity: %llu positions x %d logits: more than %llu values to keep",
                       (unsigned long long)rows, vocab, (unsigned long long)SENS_MAX_FLOATS);
    /* the lossy families, in plan order first */
    wp_loss_summary ls;
    wp_plan_loss_summary(p, NULL, &ls);
    if (ls.more_families)
        return wp_fail(e, WP_EUSAGE, "sensitivity: more than %d lossy families", WP_LOSS_MAX_FAMILIES);
    r->fam = calloc(ls.n_families ? ls.n_families : 1, sizeof *r->fam);
    float *ref = malloc((size_t)(rows * (uint64_t)vocab) * 4 + 4), *cur = malloc((size_t)(rows * (uint64_t)vocab) * 4 + 4);
    wp_tsrc *hf = NULL, *src = NULL;
    int rc = !r->fam || !ref || !cur ? wp_oom(e, "sensitivity") : 0;
    if (!rc) rc = wp_tsrc_open_hf(&hf, ckpt_dir, e);
    if (!rc) rc = run_logits(hf, threads, prompts, lens, n_prompts, ref, e);
    /* the exact source: must give the checkpoint's logits */
    if (!rc) rc = lossy_src_new(&src, hf, p, NULL, e);
    if (!rc) rc = run_logits(src, threads, prompts, lens, n_prompts, cur, e);
    if (!rc) {
        snprintf(r->exact.family, sizeof r->exact.family, "(exact)");
        compare(ref, cur, (size_t)vocab, (int)rows, &r->exact);
    }
    if (src) src->close(src);
    src = NULL;
    for (size_t i = 0; i < ls.n_families && !rc; i++) {
        wp_sens_family *f = &r->fam[r->n];
        snprintf(f->family, sizeof f->family, "%s", ls.families[i]);
        for (size_t w = 0; w < p->n_weights; w++) {
            char fam[96];
            wp_loss_family(p->weights[w].name, fam, sizeof fam);
            if (p->weights[w].loss != WP_LOSS_LOSSY || strcmp(fam, f->family)) continue;
            f->weights++;
            if (!f->sensitive) f->sensitive = wp_sensitive_family(p->weights[w].name);
        }
        rc = lossy_src_new(&src, hf, p, f->family, e);
        if (!rc) rc = run_logits(src, threads, prompts, lens, n_prompts, cur, e);
        if (src) src->close(src);
        src = NULL;
        if (!rc) {
            compare(ref, cur, (size_t)vocab, (int)rows, f);
            r->n++;
        }
    }
    if (hf) wp_tsrc_close(hf);
    free(ref);
    free(cur);
    if (rc) {
        wp_sens_report_free(r);
        return rc;
    }
    qsort(r->fam, (size_t)r->n, sizeof *r->fam, cmp_kl);
    r->prompts = n_prompts;
    r->positions = (int)rows;
    r->seconds = wp_now() - t0;
    return 0;
}

void wp_sens_report_free(wp_sens_report *r)
{
    if (!r) return;
    free(r->fam);
    memset(r, 0, sizeof *r);
}

static cJSON *fam_json(const wp_sens_family *f)
{
    cJSON *o = cJSON_CreateObject();
    if (!o) return NULL;
    cJSON_AddStringToObject(o, "family", f->family);
    if (f->sensitive) cJSON_AddStringToObject(o, "sensitive", f->sensitive);
    cJSON_AddNumberToObject(o, "weights", (double)f->weights);
    cJSON_AddNumberToObject(o, "positions", f->positions);
    cJSON_AddNumberToObject(o, "kl_mean", f->kl_mean);
    cJSON_AddNumberToObject(o, "kl_max", f->kl_max);
    cJSON_AddNumberToObject(o, "top1_agree", f->top1_agree);
    cJSON_AddNumberToObject(o, "cosine_min", f->cos_min);
    return o;
}

cJSON *wp_sens_report_json(const wp_sens_report *r)
{
    cJSON *o = cJSON_CreateObject();
    if (!o) return NULL;
    cJSON_AddNumberToObject(o, "prompts", r->prompts);
    cJSON_AddNumberToObject(o, "positions", r->positions);
    cJSON_AddNumberToObject(o, "seconds", r->seconds);
    cJSON_AddItemToObject(o, "exact", fam_json(&r->exact));
    cJSON *a = cJSON_AddArrayToObject(o, "families");
    for (int i = 0; a && i < r->n; i++) cJSON_AddItemToArray(a, fam_json(&r->fam[i]));
    return o;
}
