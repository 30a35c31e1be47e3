/*
 * weights.c — the tensor source over an HF checkpoint (spec §2): zero-copy
 * views of the mmap'd shards.  FP8 pairs (X.weight F8_E4M3 + X.scale
 * F8_E8M0) become WP_ENC_FP8 with the block of
 * quantization_config.weight_block_size; routed experts (I8, two E2M1 codes
 * per byte + E8M0 per 1x32) WP_ENC_MXFP4; BF16/F32/F16 the plain encodings.
 */
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "runtime/runtime.h"
#include "runtime/source_wpk.h"

typedef struct hf_src {
    wp_ckpt *ck;
    char *path;
} hf_src;

static const wp_tensor_info *find(hf_src *h, const char *name)
{
    return wp_ckpt_find(h->ck, name);
}

static int hf_weight(wp_tsrc *s, const char *name, wp_qweight *out, wp_err *e)
{
    hf_src *h = s->impl;
    char wn[256], sn[256];
    snprintf(wn, sizeof wn, "%s.weight", name);
    snprintf(sn, sizeof sn, "%s.scale", name);
    memset(out, 0, sizeof *out);
    const wp_tensor_info *t = find(h, wn);
    if (!t) return wp_fail(e, WP_EINVAL, "%s: %s: missing", s->path, wn);
    if (t->ndim != 2)
        return wp_fail(e, WP_EINVAL, "%s: %s: %d dimensions, a linear weight has 2", s->path, wn,
                       t->ndim);
    const void *data = wp_ckpt_data(h->ck, t, e);
    if (!data) return e && e->code ? e->code : WP_EIO;
    out->data = data;
    out->rows = t->shape[0];
    out->cols = t->shape[1];
    switch (t->dtype) {
    case WP_BF16: out->enc = WP_ENC_BF16; return 0;
    case WP_F32: out->enc = WP_ENC_F32; return 0;
    case WP_F16: out->enc = WP_ENC_F16; return 0;
    case WP_F8_E4M3: out->enc = WP_ENC_FP8; break;
    case WP_I8: case WP_U8:
        out->enc = WP_ENC_MXFP4;     /* spec §2.5: two e2m1 per byte, low nibble first */
        out->cols = t->shape[1] * 2;
        break;
    default:
        return wp_fail(e, WP_EINVAL, "%s: %s: dtype %s is not a weight encoding", s->path, wn,
                       wp_dtype_name(t->dtype));
    }
    const wp_tensor_info *st = find(h, sn);
    if (!st) return wp_fail(e, WP_EINVAL, "%s: %s: missing (scale of %s)", s->path, sn, wn);
    uint64_t er, ec;
    if (out->enc == WP_ENC_FP8) {
        out->br = (uint32_t)s->cfg.weight_block[0];
        out->bc = (uint32_t)s->cfg.weight_block[1];
        if (!out->br || !out->bc)
            return wp_fail(e, WP_EINVAL, "%s: config.json: quantization_config.weight_block_size "
                           "missing for FP8 %s", s->path, wn);
        er = (out->rows + out->br - 1) / out->br;
        ec = (out->cols + out->bc - 1) / out->bc;
        if (st->dtype == WP_F8_E8M0) out->sfmt = WP_SCALE_E8M0;
        else if (st->dtype == WP_F32) out->sfmt = WP_SCALE_F32;
        else
            return wp_fail(e, WP_EINVAL, "%s: %s: dtype %s, an FP8 scale is F8_E8M0 or F32",
                           s->path, sn, wp_dtype_name(st->dtype));
    } else {
        if (out->cols % 32)
            return wp_fail(e, WP_EINVAL, "%s: %s: %llu FP4 columns, not a multiple of 32",
                           s->path, wn, (unsigned long long)out->cols);
        er = out->rows;
        ec = out->cols / 32;
        if (st->dtype != WP_F8_E8M0)
            return wp_fail(e, WP_EINVAL, "%s: %s: dtype %s, an MXFP4 scale is F8_E8M0", s->path,
                           sn, wp_dtype_name(st->dtype));
    }
    if (st->ndim != 2 || st->shape[0] != er || st->shape[1] != ec)
        return wp_fail(e, WP_EINVAL, "%s: %s: shape does not match %s: expected [%llu, %llu]",
                       s->path, sn, wn, (unsigned long long)er, (unsigned long long)ec);
    out->scale = wp_ckpt_data(h->ck, st, e);
    if (!out->scale) return e && e->code ? e->code : WP_EIO;
    return 0;
}

static int hf_tensor(wp_tsrc *s, const char *name, wp_tview *out, wp_err *e)
{
    hf_src *h = s->impl;
    memset(out, 0, sizeof *out);
    const wp_tensor_info *t = find(h, name);
    if (!t) return wp_fail(e, WP_EINVAL, "%s: %s: missing", s->path, name);
    if (t->ndim > 4)
        return wp_fail(e, WP_EINVAL, "%s: %s: %d dimensions, at most 4 expected", s->path, name,
                       t->ndim);
    out->dtype = t->dtype;
    out->ndim = t->ndim;
    for (int i = 0; i < t->ndim; i++) out->shape[i] = t->shape[i];
    out->data = wp_ckpt_data(h->ck, t, e);
    if (!out->data && t->nbytes) return e && e->code ? e->code : WP_EIO;
    return 0;
}

static int hf_has(wp_tsrc *s, const char *name)
{
    hf_src *h = s->impl;
    char wn[256];
    snprintf(wn, sizeof wn, "%s.weight", name);
    return find(h, name) != NULL || find(h, wn) != NULL;
}

static void hf_close(wp_tsrc *s)
{
    hf_src *h = s->impl;
    if (h) {
        wp_ckpt_close(h->ck);
        free(h->path);
        free(h);
    }
    free(s);
}

int wp_tsrc_open_hf(wp_tsrc **out, const char *dir, wp_err *e)
{
    *out = NULL;
    wp_tsrc *s = wp_calloc(1, sizeof *s, e);
    hf_src *h = s ? wp_calloc(1, sizeof *h, e) : NULL;
    if (!h) {
        free(s);
        return WP_ENOMEM;
    }
    s->impl = h;
    s->kind = "hf";
    s->weight = hf_weight;
    s->tensor = hf_tensor;
    s->has = hf_has;
    s->close = hf_close;
    int rc;
    if (!(h->path = wp_strdup(dir, e))) {
        rc = WP_ENOMEM;
        goto fail;
    }
    s->path = h->path;
    if ((rc = wp_ckpt_open(&h->ck, dir, e))) goto fail;
    char cfg[4096];
    if (wp_path_join(cfg, sizeof cfg, wp_ckpt_dir(h->ck), "config.json")) {
        rc = wp_fail(e, WP_EINVAL, "%s: path too long", dir);
        goto fail;
    }
    if ((rc = wp_config_load(&s->cfg, cfg, e))) goto fail;
    *out = s;
    return 0;
fail:
    hf_close(s);
    return rc;
}

/* A directory with config.json is an HF checkpoint; anything else (a build
 * directory of .wpk parts, or one .wpk file) goes to the build source, which
 * names the problem if it is neither. */
int wp_tsrc_open(wp_tsrc **out, const char *path, wp_err *e)
{
    struct stat st;
    if (stat(path, &st) != 0) return wp_fail_errno(e, "%s", path);
    char cfg[4096];
    if (S_ISDIR(st.st_mode) && !wp_path_join(cfg, sizeof cfg, path, "config.json") &&
        stat(cfg, &st) == 0)
        return wp_tsrc_open_hf(out, path, e);
    return wp_tsrc_open_wpk(out, path, e);
}

void wp_tsrc_close(wp_tsrc *s)
{
    if (s) s->close(s);
}
