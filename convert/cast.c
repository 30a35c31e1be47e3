/*
 * cast.c — the spec §3.7 MXFP4 -> FP8 128x128 cast at conversion speed.
 *
 * quant/quant.h wp_mxfp4_to_fp8 is the reference: it rounds every element
 * through the E4M3 encoder.  Inside a 1x32 group the result depends only on
 * the FP4 code and k = e_group - e_tile (<= 6), so this version precomputes,
 * for every k and every byte (two codes), the two E4M3 codes and how many of
 * them are inexact — from the reference codecs themselves — and the cast
 * becomes one table lookup per byte.  tests/test_convert.c checks it equals
 * wp_mxfp4_to_fp8 byte for byte, count for count, NaN scales included.
 */
#include <pthread.h>
#include <string.h>

#include "convert/convert_priv.h"

/* k in [-30, 6] is row k + 31; row 0 is every k < -30 (all to signed zero). */
#define K_ROWS 38

static struct {
    uint16_t code[K_ROWS][256];   /* low byte: even element, high byte: odd element */
    uint8_t lossy[K_ROWS][256];
    uint16_t nan[256];            /* group scale 0xFF: E4M3 NaN with the element's sign */
} T;
static pthread_once_t once = PTHREAD_ONCE_INIT;

static void one(int row, uint8_t c4, uint8_t *c8, int *lossy)
{
    float v = wp_e2m1_to_f32(c4);
    if (row == 0) {
        /* matches the reference: v * 0 (a signed zero), lossy when v != 0 */
        *c8 = wp_f32_to_e4m3(v * 0.0f);
        *lossy = (c4 & 7) != 0;
        return;
    }
    int k = row - 31;
    float exact = v * (k >= 0 ? (float)(1u << k) : 1.0f / (float)(1ull << -k));   /* exact: powers of two */
    *c8 = wp_f32_to_e4m3(exact);
    *lossy = wp_e4m3_to_f32(*c8) != exact;
}

static void build(void)
{
    for (int row = 0; row < K_ROWS; row++)
        for (int b = 0; b < 256; b++) {
            uint8_t lo, hi;
            int l0, l1;
            one(row, (uint8_t)(b & 15), &lo, &l0);
            one(row, (uint8_t)(b >> 4), &hi, &l1);
            T.code[row][b] = (uint16_t)(lo | hi << 8);
            T.lossy[row][b] = (uint8_t)(l0 + l1);
        }
    for (int b = 0; b < 256; b++)
        T.nan[b] = (uint16_t)((0x7F | (b & 8) << 4) | (0x7F | (b & 0x80)) << 8);
}

size_t wp_cv_mxfp4_to_fp8(const uint8_t *q4, const uint8_t *s4, size_t rows, size_t cols, wp_scale_fmt fmt,
                          uint8_t *q_out, void *scale_out)
{
    pthread_once(&once, build);
    size_t ng = cols / 32, nbc = (cols + 127) / 128, lossy = 0;
    for (size_t r0 = 0; r0 < rows; r0 += 128) {
        size_t r1 = r0 + 128 < rows ? r0 + 128 : rows;
        for (size_t tj = 0; tj < nbc; tj++) {
            size_t g0 = tj * 4, g1 = g0 + 4 < ng ? g0 + 4 : ng;
            int emax = -1;
            for (size_t r = r0; r < r1; r++)
                for (size_t g = g0; g < g1; g++) {
                    int e = s4[r * ng + g];
                    if (e != 0xFF && e > emax) emax = e;
                }
            int ep = emax - 6 < 0 ? 0 : emax - 6;   /* S' = S_max / 2^6 (spec §3.7) */
            size_t si = (r0 / 128) * nbc + tj;
            if (fmt == WP_SCALE_E8M0) {
                ((uint8_t *)scale_out)[si] = (uint8_t)ep;
            } else {
                float f = wp_e8m0_to_f32((uint8_t)ep);
                memcpy((uint8_t *)scale_out + 4 * si, &f, 4);
            }
            for (size_t r = r0; r < r1; r++)
                for (size_t g = g0; g < g1; g++) {
                    int e = s4[r * ng + g];
                    const uint8_t *p = q4 + r * (cols / 2) + g * 16;
                    uint8_t *o = q_out + r * cols + g * 32;
                    const uint16_t *tab;
                    if (e == 0xFF) {
                        tab = T.nan;
                        lossy += 32;
                    } else {
                        int k = e - ep, row = k < -30 ? 0 : k + 31;
                        tab = T.code[row];
                        const uint8_t *l = T.lossy[row];
                        for (int j = 0; j < 16; j++) lossy += l[p[j]];
                    }
                    for (int j = 0; j < 16; j++) memcpy(o + 2 * j, &tab[p[j]], 2);   /* little-endian pair */
                }
        }
    }
    return lossy;
}
