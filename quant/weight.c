/*
 * weight.c — the wp_qweight view: encoding names, byte sizes, and row-wise
 * dequantisation for every encoding (the one dequantiser that convert/,
 * runtime/ and verify/ share).
 */
#include <assert.h>
#include <string.h>

#include "quant/quant.h"
#include "quant/quant_priv.h"

static const char *const enc_names[WP_ENC_COUNT] = {
    [WP_ENC_BF16] = "bf16", [WP_ENC_F32] = "f32", [WP_ENC_F16] = "f16",
    [WP_ENC_FP8] = "fp8", [WP_ENC_MXFP4] = "mxfp4", [WP_ENC_NVFP4] = "nvfp4",
};

const char *wp_enc_name(wp_enc e)
{
    return (unsigned)e < WP_ENC_COUNT ? enc_names[e] : "?";
}

int wp_enc_parse(const char *s, wp_enc *out)
{
    for (int i = 0; i < WP_ENC_COUNT; i++)
        if (s && strcmp(s, enc_names[i]) == 0) {
            *out = (wp_enc)i;
            return 0;
        }
    return -1;
}

uint64_t wp_enc_data_bytes(wp_enc e, uint64_t rows, uint64_t cols)
{
    uint64_t n, r;
    if (wp_mul_u64(rows, cols, &n))
        return UINT64_MAX;
    switch (e) {
    case WP_ENC_BF16: case WP_ENC_F16: return wp_mul_u64(n, 2, &r) ? UINT64_MAX : r;
    case WP_ENC_F32: return wp_mul_u64(n, 4, &r) ? UINT64_MAX : r;
    case WP_ENC_FP8: return n;
    case WP_ENC_MXFP4: case WP_ENC_NVFP4: return cols % 2 ? UINT64_MAX : n / 2;
    default: return UINT64_MAX;
    }
}

uint64_t wp_enc_scale_bytes(wp_enc e, uint64_t rows, uint64_t cols, uint32_t br, uint32_t bc,
                            wp_scale_fmt sfmt)
{
    uint64_t n, r;
    switch (e) {
    case WP_ENC_BF16: case WP_ENC_F16: case WP_ENC_F32: return 0;
    case WP_ENC_FP8:
        if (br == 0 || bc == 0)
            return UINT64_MAX;
        if (wp_mul_u64((rows + br - 1) / br, (cols + bc - 1) / bc, &n))
            return UINT64_MAX;
        return sfmt == WP_SCALE_F32 ? (wp_mul_u64(n, 4, &r) ? UINT64_MAX : r) : n;
    case WP_ENC_MXFP4:
        if (cols % 32)
            return UINT64_MAX;
        return wp_mul_u64(rows, cols / 32, &n) ? UINT64_MAX : n;
    case WP_ENC_NVFP4:
        if (cols % 16)
            return UINT64_MAX;
        return wp_mul_u64(rows, cols / 16, &n) ? UINT64_MAX : n;
    default: return UINT64_MAX;
    }
}

/* Data may sit at any byte offset of a mapped file (safetensors does not
 * promise alignment), so multi-byte loads go through memcpy. */
static inline uint16_t ld_u16(const uint8_t *p) { uint16_t v; memcpy(&v, p, 2); return v; }
static inline float ld_f32(const uint8_t *p) { float v; memcpy(&v, p, 4); return v; }

static void dequant_fp8_row(const wp_qweight *w, uint64_t r, float *out)
{
    const uint8_t *q = (const uint8_t *)w->data + r * w->cols;
    uint64_t nbc = (w->cols + w->bc - 1) / w->bc;
    uint64_t si = (r / w->br) * nbc;
    const wp_qkernels *k = wp_qkernels_active();
    for (uint64_t j = 0; j < nbc; j++) {
        float s = w->sfmt == WP_SCALE_E8M0 ? wp_e8m0_dec(((const uint8_t *)w->scale)[si + j])
                                           : ld_f32((const uint8_t *)w->scale + 4 * (si + j));
        uint64_t a = j * w->bc, b = a + w->bc < w->cols ? a + w->bc : w->cols;
        k->fp8_dequant_seg(q + a, (size_t)(b - a), s, out + a);
    }
}

/* The scalar row dequantisers: the oracle of the vector sets (quant_priv.h). */
void wp_fp8_dequant_seg_scalar(const uint8_t *q, size_t n, float s, float *out)
{
    for (size_t c = 0; c < n; c++)
        out[c] = wp_e4m3_lut[q[c]] * s;
}

void wp_mxfp4_dequant_row_scalar(const uint8_t *q, const uint8_t *sc, size_t cols, float *out)
{
    for (size_t g = 0; g < cols / 32; g++) {
        float s = wp_e8m0_dec(sc[g]);
        for (size_t j = 0; j < 16; j++) {
            uint8_t b = q[g * 16 + j];
            out[g * 32 + 2 * j] = wp_e2m1_lut[b & 15] * s;       /* low nibble first */
            out[g * 32 + 2 * j + 1] = wp_e2m1_lut[b >> 4] * s;
        }
    }
}

/* NVFP4: (e2m1 · e4m3) is exact (<= 6 significant bits), so the only
 * rounding is the final multiply by the global scale. */
void wp_nvfp4_dequant_row_scalar(const uint8_t *q, const uint8_t *sc, size_t cols, float gl, float *out)
{
    for (size_t g = 0; g < cols / 16; g++) {
        float s = wp_e4m3_lut[sc[g]];
        for (size_t j = 0; j < 8; j++) {
            uint8_t b = q[g * 8 + j];
            out[g * 16 + 2 * j] = wp_e2m1_lut[b & 15] * s * gl;
            out[g * 16 + 2 * j + 1] = wp_e2m1_lut[b >> 4] * s * gl;
        }
    }
}

static void dequant_fp4_row(const wp_qweight *w, uint64_t r, float *out)
{
    const uint8_t *q = (const uint8_t *)w->data + r * (w->cols / 2);
    if (w->enc == WP_ENC_MXFP4)
        wp_qkernels_active()->mxfp4_dequant_row(q, (const uint8_t *)w->scale + r * (w->cols / 32), (size_t)w->cols, out);
    else
        wp_qkernels_active()->nvfp4_dequant_row(q, (const uint8_t *)w->scale + r * (w->cols / 16), (size_t)w->cols,
                                                w->global, out);
}

void wp_qweight_dequant_rows(const wp_qweight *w, uint64_t r0, uint64_t n, float *out)
{
    assert(r0 + n <= w->rows);
    uint64_t cols = w->cols;
    for (uint64_t i = 0; i < n; i++) {
        uint64_t r = r0 + i;
        float *o = out + i * cols;
        switch (w->enc) {
        case WP_ENC_BF16: {
            const uint8_t *p = (const uint8_t *)w->data + r * cols * 2;
            for (uint64_t c = 0; c < cols; c++)
                o[c] = wp_f32_from_bits((uint32_t)ld_u16(p + 2 * c) << 16);
            break;
        }
        case WP_ENC_F16: {
            const uint8_t *p = (const uint8_t *)w->data + r * cols * 2;
            for (uint64_t c = 0; c < cols; c++)
                o[c] = wp_f16_to_f32(ld_u16(p + 2 * c));
            break;
        }
        case WP_ENC_F32:
            memcpy(o, (const uint8_t *)w->data + r * cols * 4, cols * sizeof(float));
            break;
        case WP_ENC_FP8:
            assert(w->br > 0 && w->bc > 0);
            dequant_fp8_row(w, r, o);
            break;
        case WP_ENC_MXFP4:
            assert(cols % 32 == 0);
            dequant_fp4_row(w, r, o);
            break;
        case WP_ENC_NVFP4:
            assert(cols % 16 == 0);
            dequant_fp4_row(w, r, o);
            break;
        default:
            assert(!"wp_qweight: unknown encoding");
        }
    }
}
