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
    uint8_t any_lossy[K_ROWS];    /* 0: every code of this k is exact (k >= -6 or so) */
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
            T.any_lossy[row] |= (uint8_t)(l0 + l1 != 0);
        }
    for (int b = 0; b < 256; b++)
        T.nan[b] = (uint16_t)((0x7F | (b & 8) << 4) | (0x7F | (b & 0x80)) << 8);
}

size_t wp_cv_mxfp4_to_fp8(const uint8_t *q4, const uint8_t *s4, size_t rows, size_t cols, wp_scale_fmt fmt,
                          uint8_t *q_out, void *scale_out)
{
    pthread_once(&once, build);
    size_t ng = cols / 32, nbc = (cols + 127) / 128, lossy = 0;
    int ep[1024];
    if (nbc > 1024)   /* beyond any V4 width (7168): the reference is right, just slower */
        return wp_mxfp4_to_fp8(q4, s4, rows, cols, fmt, q_out, scale_out);
    for (size_t r0 = 0; r0 < rows; r0 += 128) {
        size_t r1 = r0 + 128 < rows ? r0 + 128 : rows;
        /* pass 1: each tile's exponent, S' = S_max / 2^6 (spec §3.7); NaN
         * group scales (0xFF) are left out of the maximum */
        for (size_t tj = 0; tj < nbc; tj++) ep[tj] = -1;
        for (size_t r = r0; r < r1; r++) {
            const uint8_t *sr = s4 + r * ng;
            for (size_t g = 0; g < ng; g++) {
                int e = sr[g];
                if (e != 0xFF && e > ep[g / 4]) ep[g / 4] = e;
            }
        }
        for (size_t tj = 0; tj < nbc; tj++) {
            ep[tj] = ep[tj] - 6 < 0 ? 0 : ep[tj] - 6;
            size_t si = (r0 / 128) * nbc + tj;
            if (fmt == WP_SCALE_E8M0) {
                ((uint8_t *)scale_out)[si] = (uint8_t)ep[tj];
            } else {
                float f = wp_e8m0_to_f32((uint8_t)ep[tj]);
                memcpy((uint8_t *)scale_out + 4 * si, &f, 4);
            }
        }
        /* pass 2: rows front to back, one lookup per byte */
        for (size_t r = r0; r < r1; r++) {
            const uint8_t *sr = s4 + r * ng, *p = q4 + r * (cols / 2);
            uint8_t *o = q_out + r * cols;
            for (size_t g = 0; g < ng; g++, p += 16, o += 32) {
                int e = sr[g];
                const uint16_t *tab;
                if (e == 0xFF) {
                    tab = T.nan;
                    lossy += 32;
                } else {
                    int k = e - ep[g / 4], row = k < -30 ? 0 : k + 31;
                    tab = T.code[row];
                    if (T.any_lossy[row]) {   /* only groups far below their tile's top */
                        const uint8_t *l = T.lossy[row];
                        for (int j = 0; j < 16; j++) lossy += l[p[j]];
                    }
                }
                uint16_t v[16];
                for (int j = 0; j < 16; j++) v[j] = tab[p[j]];
                memcpy(o, v, 32);   /* little-endian: low byte = even element */
            }
        }
    }
    return lossy;
}
