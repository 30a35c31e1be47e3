/*
 * linear_scalar.c — the scalar kernel set: the code -> fp32 tables and the
 * plain loops every vector set is tested against (runtime/linear_kernels.h).
 * The block-scaled sums themselves are in linear_kernels.h, shared with the
 * AVX2 set's fallbacks.
 */
#include <pthread.h>

#include "runtime/linear_kernels.h"

float rt_lut_e4m3[256];
float rt_lut_e2m1[16];
float rt_lut_e8m0[256];
static pthread_once_t lut_once = PTHREAD_ONCE_INIT;

static void lut_init(void)
{
    for (int i = 0; i < 256; i++) rt_lut_e4m3[i] = wp_e4m3_to_f32((uint8_t)i);
    for (int i = 0; i < 16; i++) rt_lut_e2m1[i] = wp_e2m1_to_f32((uint8_t)i);
    for (int i = 0; i < 256; i++) rt_lut_e8m0[i] = wp_e8m0_to_f32((uint8_t)i);
}

void rt_kernel_luts_init(void) { pthread_once(&lut_once, lut_init); }

static float dot_scalar(const float *a, const float *b, int n)
{
    float s = 0;
    for (int i = 0; i < n; i++) s += a[i] * b[i];
    return s;
}

static float dot_bf16_scalar(const uint16_t *w, const float *x, int n)
{
    float s = 0;
    for (int i = 0; i < n; i++) s += x[i] * wp_bf16_to_f32(w[i]);
    return s;
}

void rt_dec_e4m3_scalar(const uint8_t *c, float *out, int n)
{
    for (int i = 0; i < n; i++) out[i] = rt_lut_e4m3[c[i]];
}

void rt_dec_e2m1_scalar(const uint8_t *c, float *out, int n)
{
    for (int i = 0; i < n / 2; i++) {       /* spec §3.4: low nibble = even element */
        out[2 * i] = rt_lut_e2m1[c[i] & 15];
        out[2 * i + 1] = rt_lut_e2m1[c[i] >> 4];
    }
}

void rt_dec_bf16_scalar(const uint16_t *c, float *out, int n)
{
    for (int i = 0; i < n; i++) out[i] = wp_bf16_to_f32(c[i]);
}

void rt_dec_e8m0_scalar(const uint8_t *c, float *out, int n)
{
    for (int i = 0; i < n; i++) out[i] = rt_lut_e8m0[c[i]];
}

static float dot_e4m3_scalar(const uint8_t *w, const float *ws, int seg, const float *x, int n)
{
    float s = 0;
    for (int i = 0; i < n; i++) s += x[i] * (rt_lut_e4m3[w[i]] * ws[i / seg]);
    return s;
}

const rt_kernels rt_k_scalar = {
    "scalar", dot_scalar, rt_segdot_scalar, rt_qdot_e4m3_scalar, rt_qdot_e2m1_scalar,
    dot_bf16_scalar, rt_dec_e4m3_scalar, rt_dec_e2m1_scalar, rt_dec_bf16_scalar,
    rt_dec_e8m0_scalar, NULL, NULL, NULL, NULL, NULL, NULL, dot_e4m3_scalar, rt_axpy_scalar, 0,
};
