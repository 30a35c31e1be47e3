/*
 * test_quant_tiny.c — issue 2's fixture test: every quantised tensor of
 * tiny-a (made with the reference rule, spec §3.6) is dequantised and
 * re-quantised with our rule.
 *
 * Dequantised values must come back identical everywhere.  Bytes must come
 * back identical in every block whose largest code magnitude is above half
 * the format maximum (> 224 for E4M3, > 3 for E2M1): that is the "tight"
 * range the pow2ceil rule produces.  A block whose largest magnitude is
 * exactly half the maximum is legitimately re-encoded with half the scale
 * (224·fl32(1/448) = 1/2 exactly, so pow2ceil drops one power) and the codes
 * doubled — same values, different bytes.  The counts below are tiny-a's.
 */
#include "hf/safetensors.h"
#include "quant/quant.h"
#include "tests/harness.h"

#define HF WPT_TINY "/hf"

/* Read tensor `name` whole; NULL (and a test failure) if it is missing. */
static uint8_t *read_tensor(wp_ckpt *c, const char *name, const wp_tensor_info **ti)
{
    wp_err e = {0};
    const wp_tensor_info *t = wp_ckpt_find(c, name);
    if (!t) {
        wpt_fail_at(__FILE__, __LINE__, "%s: missing", name);
        return NULL;
    }
    uint8_t *buf = malloc(t->nbytes ? t->nbytes : 1);
    if (!buf || wp_ckpt_read(c, t, 0, buf, t->nbytes, &e) != 0) {
        wpt_fail_at(__FILE__, __LINE__, "%s: read: %s", name, e.msg);
        free(buf);
        return NULL;
    }
    *ti = t;
    return buf;
}

static const char *scale_name(const char *weight)
{
    size_t n = strlen(weight);
    if (n < 7 || strcmp(weight + n - 7, ".weight") != 0)
        return NULL;
    return wpt_path("%.*s.scale", (int)(n - 7), weight);
}

static int same_floats(const float *a, const float *b, size_t n)
{
    return memcmp(a, b, n * sizeof(float)) == 0;   /* bitwise: -0 vs 0 counts */
}

typedef struct counts {
    size_t tensors, blocks, tight, tight_match, match, loose_half;
} counts;

/* One FP8 tensor: E4M3 [rows, cols] with E8M0 [rows/128, cols/128]. */
static void fp8_tensor(wp_ckpt *c, const char *name, counts *k)
{
    const wp_tensor_info *tw, *ts;
    uint8_t *q = read_tensor(c, name, &tw), *s = q ? read_tensor(c, scale_name(name), &ts) : NULL;
    if (!s) { free(q); return; }
    size_t rows = tw->shape[0], cols = tw->shape[1];
    size_t nbr = (rows + 127) / 128, nbc = (cols + 127) / 128;
    CHECKF(ts->dtype == WP_F8_E8M0 && ts->ndim == 2 && ts->shape[0] == nbr && ts->shape[1] == nbc,
           "%s: scale shape", name);
    float *w = malloc(rows * cols * sizeof(float)), *w2 = malloc(rows * cols * sizeof(float));
    uint8_t *q2 = malloc(rows * cols), *s2 = malloc(nbr * nbc);
    REQUIRE(w && w2 && q2 && s2);
    wp_fp8_block_dequant(q, s, rows, cols, 128, 128, WP_SCALE_E8M0, w);
    wp_fp8_block_quant(w, rows, cols, 128, 128, WP_SCALE_E8M0, q2, s2);
    wp_fp8_block_dequant(q2, s2, rows, cols, 128, 128, WP_SCALE_E8M0, w2);
    CHECKF(same_floats(w, w2, rows * cols), "%s: dequantised values changed", name);
    for (size_t bi = 0; bi < nbr; bi++)
        for (size_t bj = 0; bj < nbc; bj++) {
            float maxmag = 0;
            int same = s[bi * nbc + bj] == s2[bi * nbc + bj];
            for (size_t r = bi * 128; r < rows && r < bi * 128 + 128; r++)
                for (size_t cc = bj * 128; cc < cols && cc < bj * 128 + 128; cc++) {
                    float m = fabsf(wp_e4m3_to_f32(q[r * cols + cc]));
                    maxmag = m > maxmag ? m : maxmag;
                    same &= q[r * cols + cc] == q2[r * cols + cc];
                }
            k->blocks++;
            k->match += same;
            if (maxmag > 224.0f) {
                k->tight++;
                k->tight_match += same;
                CHECKF(same, "%s: block (%zu,%zu) max %g: bytes differ", name, bi, bj, (double)maxmag);
            } else {
                CHECKF(maxmag == 224.0f && s2[bi * nbc + bj] == s[bi * nbc + bj] - 1,
                       "%s: block (%zu,%zu) max %g: expected a half-scale re-encoding", name, bi, bj,
                       (double)maxmag);
                k->loose_half++;
            }
        }
    k->tensors++;
    free(q); free(s); free(w); free(w2); free(q2); free(s2);
}

/* One FP4 tensor: I8 [rows, cols/2] (two E2M1 per byte) with E8M0 [rows, cols/32]. */
static void fp4_tensor(wp_ckpt *c, const char *name, counts *k)
{
    const wp_tensor_info *tw, *ts;
    uint8_t *q = read_tensor(c, name, &tw), *s = q ? read_tensor(c, scale_name(name), &ts) : NULL;
    if (!s) { free(q); return; }
    size_t rows = tw->shape[0], cols = tw->shape[1] * 2, ng = cols / 32;
    CHECKF(ts->dtype == WP_F8_E8M0 && ts->ndim == 2 && ts->shape[0] == rows && ts->shape[1] == ng,
           "%s: scale shape", name);
    float *w = malloc(rows * cols * sizeof(float)), *w2 = malloc(rows * cols * sizeof(float));
    uint8_t *q2 = malloc(rows * cols / 2), *s2 = malloc(rows * ng);
    REQUIRE(w && w2 && q2 && s2);
    wp_mxfp4_dequant(q, s, rows, cols, w);
    wp_mxfp4_quant(w, rows, cols, q2, s2);
    wp_mxfp4_dequant(q2, s2, rows, cols, w2);
    CHECKF(same_floats(w, w2, rows * cols), "%s: dequantised values changed", name);
    for (size_t g = 0; g < rows * ng; g++) {
        int same = s[g] == s2[g] && memcmp(q + g * 16, q2 + g * 16, 16) == 0;
        int maxcode = 0;   /* magnitude codes are ordered: the largest code is the largest value */
        for (size_t j = 0; j < 16; j++) {
            int lo = q[g * 16 + j] & 7, hi = (q[g * 16 + j] >> 4) & 7;
            maxcode = lo > maxcode ? lo : maxcode;
            maxcode = hi > maxcode ? hi : maxcode;
        }
        k->blocks++;
        k->match += same;
        if (wp_e2m1_to_f32((uint8_t)maxcode) > 3.0f) {
            k->tight++;
            k->tight_match += same;
            CHECKF(same, "%s: group %zu (max code %d): bytes differ", name, g, maxcode);
        } else if (maxcode == 5 && s2[g] == s[g] - 1) {
            k->loose_half++;   /* max 3 -> 6 at half the scale */
        }
    }
    k->tensors++;
    free(q); free(s); free(w); free(w2); free(q2); free(s2);
}

TEST(quant_tiny_requant_fixture)
{
    wp_err e = {0};
    wp_ckpt *c = NULL;
    REQUIRE(wp_ckpt_open(&c, HF, &e) == 0);
    counts f8 = {0}, f4 = {0};
    for (size_t i = 0; i < wp_ckpt_count(c); i++) {
        const wp_tensor_info *t = wp_ckpt_tensor(c, i);
        if (t->dtype == WP_F8_E4M3) {
            CHECKF(t->ndim == 2, "%s: ndim %d", t->name, t->ndim);
            fp8_tensor(c, t->name, &f8);
        } else if (t->dtype == WP_I8) {
            CHECKF(t->ndim == 2, "%s: ndim %d", t->name, t->ndim);
            fp4_tensor(c, t->name, &f4);
        }
    }
    wp_ckpt_close(c);
    /* issue 2: all 130 FP8 blocks tight and byte-identical. */
    CHECK_EQ_INT(f8.tensors, 44);
    CHECK_EQ_INT(f8.blocks, 130);
    CHECK_EQ_INT(f8.tight, 130);
    CHECK_EQ_INT(f8.match, 130);
    /* issue 2: 99,274 of the 122,880 FP4 groups byte-identical; the other
     * 23,606 have largest value 3 (code 5) and come back as 6 at half the scale. */
    CHECK_EQ_INT(f4.tensors, 120);
    CHECK_EQ_INT(f4.blocks, 122880);
    CHECK_EQ_INT(f4.tight_match, f4.tight);
    CHECK_EQ_INT(f4.match, 99274);
    CHECK_EQ_INT(f4.tight, 99274);
    CHECK_EQ_INT(f4.loose_half, 23606);
}
