/* cv_util.h — helpers shared by the cv_ tests (plan, convert, profiles,
 * quant report): build a plan, convert it, and check a build's values
 * against the dequantised source with each method's stated expectation. */
#ifndef WPT_CV_UTIL_H
#define WPT_CV_UTIL_H

#include "convert/convert.h"
#include "format/wpk.h"
#include "tests/harness.h"

/* Open CKPT (its config.json beside it) and build a plan for PROFILE with
 * the --tensor-type overrides types[0..ntypes).  0 or a WP_E* code. */
int cvt_plan(const char *ckpt, const char *profile, const char *const *types, int ntypes, const wp_plan_opts *po,
             wp_ckpt **k, wp_plan **p, wp_err *e);
void cvt_free(wp_ckpt *k, wp_plan *p);
/* Convert p into the build directory OUT (rep may be NULL). */
int cvt_convert(const wp_plan *p, const char *out, wp_report *rep, int threads, uint64_t budget, wp_err *e);
/* One-shot: plan + convert, REQUIRE-style; returns 0 on success. */
int cvt_build(const char *ckpt, const char *profile, const char *const *types, int ntypes, const wp_plan_opts *po,
              const char *out, wp_ckpt **k, wp_plan **p);
/* Open BUILD/NAME as a .wpk (NULL + a failed CHECK on error). */
wpk_file *cvt_open_wpk(const char *build, const char *name);

/* Dequantised source region of a plan source: [s->nrows, s->ncols] floats (malloc'd). */
float *cvt_src_values(wp_ckpt *k, const wp_plan_weight *w, const wp_plan_src *s);
/* Dequantised output rows [r0, r0+n) of expert `expert` of weight tensor
 * NAME in f: floats [n, cols] (malloc'd); per-element scale into *scale if
 * not NULL (block formats; 0 for plain). */
float *cvt_out_values(wpk_file *f, const char *name, uint64_t expert, uint64_t r0, uint64_t n, uint64_t cols,
                      float **scale);

/* Check every output tensor of p (built into BUILD) against its source:
 * copies byte-equal (source slice and output slice hashed), exact methods
 * value-equal, quantised ones within their encoding's per-element rounding
 * bound with sane block scales.  Returns the number of weights checked. */
size_t cvt_check_build(wp_ckpt *k, const wp_plan *p, const char *build);

/* Read a whole file of a build into memory (malloc'd). */
uint8_t *cvt_slurp(const char *path, size_t *n);

/* The number at top-level KEY of the JSON document DOC (a command's --json
 * output), truncated to an integer; -1 when DOC is not JSON or KEY is not a number. */
long long cvt_json_num(const char *doc, const char *key);

#endif
