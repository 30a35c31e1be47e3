/*
 * rope.c — rotary embedding tables with the YaRN frequency correction
 * (spec §4.4): interleaved pairs on the last rope_head_dim dims, fp32 angles,
 * no mscale.
 */
#include <math.h>

#include "runtime/internal.h"

static double correction_dim(int dim, double base, int orig_len, double rotations)
{
    return dim * log(orig_len / (rotations * 2 * M_PI)) / (2 * log(base));
}

void rt_yarn_range(int dim, double base, int orig_len, double beta_fast, double beta_slow,
                   int *low, int *high)
{
    int lo = (int)floor(correction_dim(dim, base, orig_len, beta_fast));
    int hi = (int)ceil(correction_dim(dim, base, orig_len, beta_slow));
    *low = lo > 0 ? lo : 0;
    *high = hi < dim - 1 ? hi : dim - 1;
}

void rt_rope_init(rt_rope *r, int dim, double base, int yarn, double factor, int orig_len,
                  double beta_fast, double beta_slow)
{
    r->dim = dim;
    const int half = dim / 2;
    for (int i = 0; i < half; i++)      /* fp32, as torch computes base ** (arange / dim) */
        r->freq[i] = 1.0f / powf((float)base, (float)(2 * i) / (float)dim);
    if (!yarn || orig_len <= 0) return;
    int low, high;
    rt_yarn_range(dim, base, orig_len, beta_fast, beta_slow, &low, &high);
    float lo = (float)low, hi = (float)high;
    if (lo == hi) hi += 0.001f;   /* the reference's guard against a zero-width ramp */
    for (int i = 0; i < half; i++) {
        float ramp = ((float)i - lo) / (hi - lo);
        ramp = ramp < 0 ? 0 : ramp > 1 ? 1 : ramp;
        float smooth = 1.0f - ramp;
        r->freq[i] = r->freq[i] / (float)factor * (1.0f - smooth) + r->freq[i] * smooth;
    }
}

void rt_rope_cs(const rt_rope *r, int pos, float *cs)
{
    for (int i = 0; i < r->dim / 2; i++) {
        float a = (float)pos * r->freq[i];
        cs[2 * i] = cosf(a);
        cs[2 * i + 1] = sinf(a);
    }
}

void rt_rope_apply(float *x, const float *cs, int dim, int inverse)
{
    for (int i = 0; i < dim / 2; i++) {
        float c = cs[2 * i], s = inverse ? -cs[2 * i + 1] : cs[2 * i + 1];
        float a = x[2 * i], b = x[2 * i + 1];
        x[2 * i] = a * c - b * s;
        x[2 * i + 1] = a * s + b * c;
    }
}
