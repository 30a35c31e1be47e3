/*
 * quant.h — number formats (spec §3), bit-exact with the reference.
 *
 * Scalar codecs: decode is exact; encode is round-to-nearest-even after the
 * format's clamp.  Block codecs quantise/dequantise whole bands of a weight or
 * activation and are what convert/ and runtime/ use.
 */
#ifndef WP_QUANT_H
#define WP_QUANT_H

#include <stddef.h>
#include <stdint.h>

#include "common/wp.h"
#include "hf/safetensors.h"   /* wp_dtype, for the content checks */

/* ---- Scalar formats --------------------------------------------------------
 * Encoders round on the fp32 bits (independent of the FPU rounding mode) and
 * take any fp32 input, subnormals, infinities and NaN included.  Signed zero
 * keeps its sign in every format that has one. */
float wp_bf16_to_f32(uint16_t h);
uint16_t wp_f32_to_bf16(float f);          /* RNE (overflow -> inf), NaN stays NaN (quiet bit set) */
static inline float wp_bf16_round(float f) { return wp_bf16_to_f32(wp_f32_to_bf16(f)); }
float wp_f16_to_f32(uint16_t h);
uint16_t wp_f32_to_f16(float f);           /* IEEE binary16, RNE, overflow -> inf */
float wp_e4m3_to_f32(uint8_t c);           /* 0x7F/0xFF -> NaN; no inf */
uint8_t wp_f32_to_e4m3(float f);           /* clamp to +-448 (inf too), RNE; NaN -> 0x7F|sign */
float wp_e5m2_to_f32(uint8_t c);           /* IEEE-like: 0x7C inf, 0x7D-0x7F NaN */
/* RNE; a finite value past the largest finite code saturates to +-57344
 * (0x7B) as the CUDA satfinite cast would, never to inf; an infinite input
 * stays +-inf (so every non-NaN code round-trips); NaN -> 0x7E|sign. */
uint8_t wp_f32_to_e5m2(float f);
float wp_e8m0_to_f32(uint8_t c);           /* 2^(c-127); 0xFF -> NaN */
/* The E8M0 code of a positive power of two in [2^-127, 2^127]; -1 otherwise. */
int wp_f32_to_e8m0_exact(float f);
float wp_e2m1_to_f32(uint8_t code);        /* low 4 bits used */
/* Clamp to +-6, RNE ties to the even code (0.25->0, 0.75->1, 2.5->2, 5->4).
 * E2M1 has no NaN: NaN encodes as +6 (0x7). */
uint8_t wp_f32_to_e2m1(float f);

/* spec §3.6: smallest power of two >= t, computed on the fp32 bits (exact
 * powers of two map to themselves).  Outside the spec's positive-normal
 * domain: subnormal t -> next power of two, overflow -> inf, NaN -> NaN,
 * t <= 0 -> 0. */
float wp_pow2ceil(float t);
#define WP_INV448_BITS 0x3B124925u   /* fl32(1/448) */
#define WP_INV6_BITS 0x3E2AAAABu     /* fl32(1/6) */
float wp_inv448(void);
float wp_inv6(void);

/* ---- Activation simulations (spec §3.6) ------------------------------------
 * In place, per consecutive block of `block` elements of x[0..n), n a multiple
 * of block: x <- bf16(fp32(q) * s) with the reference's scale rule.
 * act_quant: FP8 E4M3 (amax floor 1e-4, s = pow2ceil(amax * fl32(1/448))).
 * fp4_act_quant: E2M1 (amax floor 6*2^-126, s = pow2ceil(amax * fl32(1/6))). */
void wp_act_quant_sim(float *x, size_t n, size_t block);
void wp_fp4_act_quant_sim(float *x, size_t n, size_t block);
/* act_quant as a linear input: codes q[n] and one E8M0 scale per block. */
void wp_act_quant(const float *x, size_t n, size_t block, uint8_t *q, uint8_t *scale_e8m0);

/* ---- Weight block formats --------------------------------------------------- */
typedef enum wp_scale_fmt { WP_SCALE_E8M0, WP_SCALE_F32 } wp_scale_fmt;

/* FP8 E4M3 weight [rows, cols] with br x bc blocks (ragged last blocks
 * allowed); scales [ceil(rows/br), ceil(cols/bc)] row-major, each 1 byte
 * (E8M0) or 4 bytes (F32, little-endian, any alignment).
 * Quantise: E8M0 -> s = pow2ceil(amax * fl32(1/448)) clamped to [2^-127,
 * 2^127]; F32 -> s = amax / 448; an all-zero block gets s = 1 in both.
 * q = RNE_e4m3(clamp(w / s)).  amax ignores NaN; a NaN element stays NaN.
 * This is the rule tiny-a was made with: dequantise -> quantise returns the
 * same bytes for every block whose largest |code| is above 224. */
void wp_fp8_block_quant(const float *w, size_t rows, size_t cols, size_t br, size_t bc,
                        wp_scale_fmt fmt, uint8_t *q, void *scales);
void wp_fp8_block_dequant(const uint8_t *q, const void *scales, size_t rows, size_t cols,
                          size_t br, size_t bc, wp_scale_fmt fmt, float *out);

/* MXFP4: E2M1 packed [rows, cols/2] (low nibble = even element), E8M0 scale
 * per 1x32 group [rows, cols/32]; s = pow2ceil(amax * fl32(1/6)) clamped to
 * E8M0's range, all-zero group -> s = 1.  cols % 32 == 0.  Dequantise ->
 * quantise returns the same bytes for groups whose largest value is > 3. */
void wp_mxfp4_quant(const float *w, size_t rows, size_t cols, uint8_t *q, uint8_t *scales);
void wp_mxfp4_dequant(const uint8_t *q, const uint8_t *scales, size_t rows, size_t cols, float *out);

/* NVFP4: E2M1 packed [rows, cols/2], E4M3 scale per 1x16 group [rows, cols/16]
 * and one f32 global scale: w ~ (e2m1 * e4m3_scale) * global.  global =
 * amax_tensor / (448 * 6) (1 if the tensor is all zero).  Group scale code =
 * RNE_e4m3(amax_16 / 6 / global); elements are divided by the decoded scale
 * times global (a zero scale gives zero codes).  cols % 16 == 0. */
float wp_nvfp4_global_scale(const float *w, size_t n);
/* max |x[i]| over n values, NaN ignored (0 for none): the amax every rule
 * above starts from, at vector speed. */
float wp_amax(const float *x, size_t n);
/* max |x| over the values an MXFP4 block [rows, cols] (cols % 32 == 0)
 * dequantises to, NaN ignored (0 for none), straight from the codes and E8M0
 * scales: bit for bit wp_amax of wp_mxfp4_dequant's output (every product
 * e2m1 x 2^k is one IEEE multiply, monotone in |e2m1|, so a group's largest
 * value is its largest code magnitude times its scale; a 0xFF (NaN) scale
 * makes its group all NaN, left out), without the f32 buffer. */
float wp_mxfp4_amax(const uint8_t *q, const uint8_t *scales, size_t rows, size_t cols);
void wp_nvfp4_quant(const float *w, size_t rows, size_t cols, float global, uint8_t *q,
                    uint8_t *scales);
void wp_nvfp4_dequant(const uint8_t *q, const uint8_t *scales, float global, size_t rows,
                      size_t cols, float *out);

/* spec §3.7: MXFP4 tile -> FP8 128x128 with one E8M0 scale per tile
 * (S' = S_max / 2^6, floored at 2^-127).  Returns the number of elements that
 * were NOT exactly representable (0 = lossless; guaranteed when every group
 * exponent is within 14 of its tile's maximum).  A NaN group scale (0xFF) is
 * left out of S_max; its elements become NaN and count as lossy.  q_out
 * [rows, cols], scale_out [ceil(rows/128), ceil(cols/128)] (E8M0, or F32 if
 * fmt says so).  cols % 32 == 0. */
size_t wp_mxfp4_to_fp8(const uint8_t *q4, const uint8_t *s4, size_t rows, size_t cols,
                       wp_scale_fmt fmt, uint8_t *q_out, void *scale_out);


/* ---- A quantised weight, whatever its encoding ------------------------------
 * The one view of a 2-D weight that convert/, runtime/ and verify/ share.
 * Logical shape [rows, cols] (cols = input dim).  For a stacked expert tensor
 * [E, rows, cols] point data/scale at expert e's slice. */
typedef enum wp_enc {
    WP_ENC_BF16,      /* data: uint16 [rows, cols] */
    WP_ENC_F32,       /* data: float  [rows, cols] */
    WP_ENC_F16,       /* data: uint16 [rows, cols] */
    WP_ENC_FP8,       /* data: e4m3 [rows, cols]; scale [ceil(rows/br), ceil(cols/bc)] E8M0|F32 */
    WP_ENC_MXFP4,     /* data: e2m1 x2 [rows, cols/2]; scale E8M0 [rows, cols/32] */
    WP_ENC_NVFP4,     /* data: e2m1 x2 [rows, cols/2]; scale E4M3 [rows, cols/16]; global f32 */
    WP_ENC_COUNT
} wp_enc;
const char *wp_enc_name(wp_enc e);              /* "bf16","f32","f16","fp8","mxfp4","nvfp4" */
int wp_enc_parse(const char *s, wp_enc *out);   /* 0 or -1 */

typedef struct wp_qweight {
    wp_enc enc;
    uint64_t rows, cols;
    const void *data;
    const void *scale;       /* NULL for BF16/F32/F16 */
    wp_scale_fmt sfmt;       /* FP8 only */
    uint32_t br, bc;         /* FP8 block (e.g. 128x128, 32x32) */
    float global;            /* NVFP4 only */
} wp_qweight;
/* Dequantise rows [r0, r0+n) into out[n * cols] (fp32).  data and scale may
 * sit at any byte offset (a mapped file).  The caller has validated the
 * shape against the encoding (wp_enc_*_bytes); r0 + n <= rows. */
void wp_qweight_dequant_rows(const wp_qweight *w, uint64_t r0, uint64_t n, float *out);
/* Bytes of data and of scale for an encoding and shape (0 scale bytes for
 * plain encodings).  UINT64_MAX when the shape is impossible for the
 * encoding (odd cols for FP4, cols not a multiple of the group, a zero FP8
 * block) or the size overflows: callers treat it as a validation failure. */
uint64_t wp_enc_data_bytes(wp_enc e, uint64_t rows, uint64_t cols);
uint64_t wp_enc_scale_bytes(wp_enc e, uint64_t rows, uint64_t cols, uint32_t br, uint32_t bc,
                            wp_scale_fmt sfmt);

/* ---- Content checks (docs/convert.md "Content checks") ------------------------
 * Codes no weight may hold: non-finite F32/F64/BF16/F16, E4M3 NaN (0x7F,
 * 0xFF), E5M2 inf/NaN (0x7C..0x7F with either sign), E8M0 NaN (0xFF).  n
 * counts elements.  wp_dtype_screen: non-zero if buf holds any (at memory
 * speed); wp_dtype_scan: how many, and the index of the first in *first
 * (UINT64_MAX when none).  Other dtypes have no such codes (0). */
int wp_dtype_has_nonfinite(wp_dtype t);
/* The rule's words: "NaN codes (E4M3 0x7F/0xFF)" (plural) or "NaN code (...)". */
const char *wp_dtype_nonfinite_rule(wp_dtype t, int plural);
int wp_dtype_screen(wp_dtype t, const void *buf, size_t n);
uint64_t wp_dtype_scan(wp_dtype t, const void *buf, size_t n, uint64_t *first);
/* Scales that could make a finite block non-finite (code x scale overflows
 * fp32): E8M0 codes 247..254, F32 scales beyond 2^119 in magnitude.  A
 * screen: non-zero if any; the block scans below decide. */
int wp_scale_screen(wp_dtype scale_dtype, const void *buf, size_t n);
/* Blocks whose decoded codes times their scale are not finite (NaN codes
 * and NaN scales excluded: the dtype scans report those).  Returns the count
 * of such scales, the first scale's index in *first.  FP8: q [rows, cols],
 * scales [ceil(rows/br), ceil(cols/bc)]; MXFP4: q [rows, cols/2], scales
 * [rows, cols/32] E8M0. */
uint64_t wp_fp8_scan_blocks(const uint8_t *q, const void *scales, size_t rows, size_t cols, size_t br,
                            size_t bc, wp_scale_fmt fmt, uint64_t *first);
uint64_t wp_mxfp4_scan_blocks(const uint8_t *q, const uint8_t *scales, size_t rows, size_t cols,
                              uint64_t *first);

/* ---- Error statistics ---------------------------------------------------------
 * Zero-initialise, add (ref = original values, out = after the round trip),
 * merge partial sums, then read summaries.  n_saturated counts elements with
 * |ref| > sat_limit (clipped by the format; pass sat_limit <= 0 to skip).
 * A NaN error makes max_abs_err NaN: a NaN is never hidden. */
typedef struct wp_qerr {
    double sum_sq_err, sum_sq_ref, dot, sum_sq_out;
    double max_abs_err;
    uint64_t n, n_saturated;
} wp_qerr;
void wp_qerr_add(wp_qerr *s, const float *ref, const float *out, size_t n, float sat_limit);
void wp_qerr_merge(wp_qerr *into, const wp_qerr *from);
double wp_qerr_rmse(const wp_qerr *s);
double wp_qerr_nmse(const wp_qerr *s);     /* sum err^2 / sum ref^2 */
double wp_qerr_cosine(const wp_qerr *s);   /* 1 for two zero vectors, 0 for one */
double wp_qerr_sat_fraction(const wp_qerr *s);   /* n_saturated / n (0 if n == 0) */

#endif
