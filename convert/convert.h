/*
 * convert.h — build profiles, the build plan, the streaming converter and the
 * quantisation-error report (issue 3; docs/convert.md, docs/profiles.md).
 *
 *   profile  JSON data (convert/profiles/NAME.json, compiled in): ordered rules
 *            "tensors whose name matches REGEX and whose source encoding is in
 *            FROM become TO"; the last matching rule wins.
 *   plan     from the checkpoint's headers and config.json alone: every output
 *            tensor (name, encoding, shape, bytes, file, aligned offset, source
 *            tensors) and totals per family.  Deterministic.  No data is read.
 *   convert  executes a plan: one work item at a time per worker (a band of
 *            rows of a tensor, or of one expert's slice of a stacked tensor),
 *            read with pread into bounded buffers, SHA-256 of every output
 *            tensor as it is produced, written through a wp_sink (the .wpk
 *            build directory, or nothing for `wpack quant`).
 *   report   for every tensor that is not passed through: RMSE, NMSE, max
 *            |err|, cosine and saturated fraction against the dequantised
 *            source, checked against per-encoding thresholds.
 */
#ifndef WP_CONVERT_H
#define WP_CONVERT_H

#include <regex.h>
#include <signal.h>
#include <stddef.h>
#include <stdint.h>

#include "common/wp.h"
#include "model/model.h"
#include "hf/safetensors.h"
#include "quant/quant.h"

struct cJSON;

/* ---- Source kinds ------------------------------------------------------------
 * How a source weight is stored, decided from dtypes and the companion
 * `.scale` tensor (spec §2.2, §2.3, §3.5). */
typedef enum wp_src_kind {
    WP_SRC_BF16,    /* BF16 tensor */
    WP_SRC_F16,     /* F16 tensor */
    WP_SRC_F32,     /* F32 tensor */
    WP_SRC_FP8,     /* F8_E4M3 [out, in] + .scale F8_E8M0|F32 [ceil(out/R), ceil(in/C)] */
    WP_SRC_MXFP4,   /* I8|U8 [out, in/2] or F4 [out, in] + .scale F8_E8M0 [out, in/32] */
    WP_SRC_RAW,     /* anything else (I64 tid2eid, ...): always passed through */
    WP_SRC_COUNT
} wp_src_kind;
const char *wp_src_kind_name(wp_src_kind k);   /* "bf16","f16","f32","fp8","mxfp4","raw" */
int wp_src_kind_parse(const char *s, wp_src_kind *out);   /* 0 or -1 */

/* ---- Profiles -------------------------------------------------------------- */
#define WP_BLOCK_SOURCE 0u   /* fp8 target block "source": keep the source's R x C */

typedef struct wp_rule {
    char *pattern;          /* POSIX extended regex, searched in the output weight name */
    regex_t re;
    unsigned from;          /* bit mask of 1u << wp_src_kind; never includes RAW */
    int passthrough;        /* "to": "passthrough" */
    wp_enc enc;             /* otherwise the target encoding */
    uint32_t br, bc;        /* fp8 block; WP_BLOCK_SOURCE = the source's block (or 128) */
    wp_scale_fmt sfmt;      /* fp8 scale format */
    int origin;             /* 0 profile file, 1 --tensor-type */
    int lossy;              /* "lossy": true: the profile declares that this rule may
                               re-quantise (a --tensor-type rule is the user's request) */
} wp_rule;

typedef struct wp_profile {
    char name[64];
    char description[512];
    uint64_t align;         /* tensor alignment in the output (power of two >= 4096) */
    int stack_experts;      /* routed experts stacked per layer and projection */
    int fuse_w13;           /* stacked w1|w3 fused into experts.w13 [E, 2I, d] */
    double nmse_max[WP_ENC_COUNT];   /* report thresholds by target encoding */
    size_t n_rules;
    wp_rule *rules;
} wp_profile;

/* Names of the built-in profiles (NULL-terminated). */
const char *const *wp_profile_builtins(void);
/* Load a built-in profile by name, or a profile file when `name` contains '/'
 * or ends in ".json".  Unknown names list the built-in ones in the error. */
int wp_profile_load(wp_profile *p, const char *name, wp_err *e);
/* Parse profile JSON text (docs/profiles.md); `what` names it in messages. */
int wp_profile_parse(wp_profile *p, const char *json, size_t len, const char *what, wp_err *e);
/* Append a `--tensor-type REGEX=ENC` rule (ENC: passthrough, bf16, f32, f16,
 * fp8, fp8-f32, fp8-32x32, fp8-32x32-f32, mxfp4, nvfp4; see docs/profiles.md).
 * It applies to every float source and wins over the profile's rules.  A
 * refusal names the setting "tensor-type" in wp_err.setting. */
int wp_profile_add_override(wp_profile *p, const char *spec, wp_err *e);
void wp_profile_free(wp_profile *p);
/* Deep copy (regexes recompiled). */
int wp_profile_copy(wp_profile *dst, const wp_profile *src, wp_err *e);
/* The profile as JSON in its file format, overrides included (for the
 * build's description and `plan --json`). */
struct cJSON *wp_profile_to_json(const wp_profile *p);

/* Family rules (docs/profiles.md "Family rules"): NULL when a tensor of this
 * name may be encoded as `enc` in a build, else what it is, in the plural
 * ("HC parameters", "norm weights", "hash routing tables", ...).  Parameters
 * (HC, norms, attn_sink, gate.bias, compressor ape) take bf16, f16 or f32;
 * tid2eid no float encoding; linear weights, embed and head any.  A profile
 * or --tensor-type rule skips the tensors its encoding is not for, and the
 * plan is refused when a rule applies to nothing else. */
const char *wp_family_rule(const char *name, wp_enc enc);

/* Default NMSE thresholds per target encoding (docs/profiles.md, "Thresholds"). */
double wp_report_default_nmse_max(wp_enc enc);

/* ---- The plan -------------------------------------------------------------- */
typedef struct wp_plan_opts {
    int ep, tp;             /* expert / tensor parallel ranks; 1 = none.  Both > 1 must be
                               equal: the official mp layout (spec §2.5 item 3). */
    int fuse_w13;           /* -1 = the profile's choice, 0 off, 1 on */
    uint64_t align;         /* 0 = the profile's */
} wp_plan_opts;
#define WP_PLAN_OPTS_INIT { 1, 1, -1, 0 }

/* How a weight's bytes are produced (the report's "method"). */
typedef enum wp_method {
    WP_M_COPY,       /* bytes copied untouched (passthrough, raw tensors, split slices) */
    WP_M_EXACT,      /* re-encoded, every value preserved (fp8 -> bf16, E8M0 -> F32 scales, ...) */
    WP_M_CAST37,     /* MXFP4 -> FP8 128x128 (spec §3.7): exact unless an element is reported */
    WP_M_QUANT,      /* dequantised and re-quantised: lossy */
} wp_method;
const char *wp_method_name(wp_method m);   /* "copy","exact","cast","quant" */

/* ---- Loss (docs/profiles.md "Lossless builds") --------------------------------
 * Whether a weight's values survive, decided by rule from the method: a copy
 * keeps the bytes, an exact re-encode (E8M0 -> F32 scales on the same blocks,
 * FP8/MXFP4 -> BF16, anything -> F32, the spec §3.7 cast) keeps every
 * dequantised value bit for bit, a re-quantisation does not.  Convert checks
 * the exact classes at run time (wp_convert_opts.inexact): a weight that lost
 * a value is lossy after all. */
typedef enum wp_loss { WP_LOSS_COPY, WP_LOSS_EXACT, WP_LOSS_LOSSY } wp_loss;
const char *wp_loss_name(wp_loss l);       /* "copy","exact","lossy" */
int wp_loss_parse(const char *s, wp_loss *out);   /* 0 or -1 */
wp_loss wp_method_loss(wp_method m);
/* The loss family of an output name: the layer-relative name without the
 * layer and the .weight/.scale suffix ("ffn.gate" of layers.3.ffn.gate.weight,
 * "ffn.experts.w1", "embed", "hc_attn_fn"; "mtp." + that for mtp.K.*). */
void wp_loss_family(const char *name, char *out, size_t sz);
/* Families whose lossy re-encode moves the model far more than its weight
 * error says (router gate weight and bias, embed, head, HC parameters,
 * indexer, compressor), stated once: what it is ("router gate", ...), or NULL. */
const char *wp_sensitive_family(const char *name);

typedef enum wp_role { WP_ROLE_WEIGHT, WP_ROLE_SCALE, WP_ROLE_GLOBAL, WP_ROLE_RAW } wp_role;

/* One named, contiguous byte range of an output file: what the container's
 * directory lists.  A quantised weight is three entries at most: X.weight
 * (role WEIGHT, encoding enc), X.scale (role SCALE, raw dtype) and, for NVFP4,
 * X.global_scale (role GLOBAL, F32 [1] or [E]). */
typedef struct wp_plan_tensor {
    char *name;
    wp_role role;
    int file;                /* index into plan->files */
    uint64_t offset;         /* aligned offset within the file's data area */
    uint64_t nbytes;
    int is_enc;              /* role WEIGHT with a weight encoding; else raw dtype */
    wp_enc enc;
    wp_dtype dtype;          /* raw dtype (role != WEIGHT, or WEIGHT of a raw tensor) */
    int ndim;
    uint64_t shape[WP_MAX_DIMS];   /* logical shape; [E, ...] when stacked */
    int stacked;
    uint64_t stride;         /* stacked: bytes of one expert's slice */
    size_t weight;           /* its wp_plan_weight */
} wp_plan_tensor;

/* One source contribution to a slice: source rows [row0, row0 + nrows) and
 * logical columns [col0, col0 + ncols) land at output rows [out_row0, ...) of
 * the slice. */
typedef struct wp_plan_src {
    const wp_tensor_info *w, *s;   /* source weight and its scale (NULL if none) */
    uint64_t src_rows, src_cols;   /* logical shape of the whole source weight */
    uint64_t row0, nrows, col0, ncols, out_row0;
} wp_plan_src;

/* One conversion job: a source weight (or a stack of them) and its outputs. */
typedef struct wp_plan_weight {
    char *name;              /* output weight name (X.weight, or the raw tensor's name) */
    wp_family family;        /* wp_family_of(name): totals */
    int layer;               /* wp_layer_id, -1 for globals */
    int rank;                /* output file */
    int indexer_path;        /* indexer.wq_b, weights_proj, indexer compressor */
    wp_src_kind src;
    wp_enc src_enc;          /* source encoding (src != RAW) */
    uint32_t src_br, src_bc; /* source FP8 block */
    wp_scale_fmt src_sfmt;
    wp_method method;
    wp_loss loss;            /* wp_method_loss(method) */
    int passthrough;         /* output encoding = source encoding, bytes copied */
    wp_enc enc;              /* output encoding (src != RAW) */
    uint32_t br, bc;         /* output FP8 block */
    wp_scale_fmt sfmt;
    int rule;                /* index of the deciding profile rule, -1 = none (passthrough) */
    uint64_t rows, cols;     /* logical per-slice output shape (raw: see tensor shape) */
    int stacked;             /* routed experts stacked [E, rows, cols] */
    int n_slices;            /* E for a stacked tensor (experts on this rank), else 1 */
    int first_expert;        /* stacked: global id of slice 0 */
    int srcs_per_slice;      /* 2 for a fused w13, else 1 */
    wp_plan_src *srcs;       /* n_slices * srcs_per_slice */
    size_t t_weight, t_scale, t_global;   /* tensors; SIZE_MAX if none */
    uint64_t in_bytes, out_bytes;
} wp_plan_weight;

typedef struct wp_plan_file {
    char *name;              /* "model.wpk", "model-rank00001-of-00004.wpk" */
    int ep_rank, tp_rank;
    uint64_t data_bytes;     /* end of the last tensor in the data area */
    size_t n_tensors;
} wp_plan_file;

typedef struct wp_plan_family {
    uint64_t n_in, in_bytes, n_out, out_bytes;
} wp_plan_family;

typedef struct wp_plan {
    wp_profile profile;      /* a copy (overrides included); owned */
    wp_plan_opts opts;
    char *source;            /* checkpoint path */
    int n_files;
    wp_plan_file *files;
    size_t n_tensors;        /* in file order: file 0's tensors by offset, then file 1 ... */
    wp_plan_tensor *tensors;
    size_t n_weights;
    wp_plan_weight *weights;
    wp_plan_family family[WP_FAM_COUNT];
    uint64_t in_bytes, out_bytes;
    const wp_ckpt *ckpt;     /* borrowed */
    wp_config config;
} wp_plan;

/* Compute the plan.  The profile is copied (p may be freed afterwards); the
 * checkpoint is borrowed and must outlive the plan.  Errors name the tensor
 * and the rule: "layers.0.attn.wo_b.weight: tensor parallel degree 2 cuts 128
 * columns into 64, not a multiple of the output fp8 block 128", and name in
 * wp_err.setting the option that decides ("tp", "ep", "align", "fuse-w13"). */
int wp_plan_build(wp_plan **out, const wp_ckpt *k, const wp_config *c, const wp_profile *p,
                  const wp_plan_opts *o, wp_err *e);
void wp_plan_free(wp_plan *p);
/* The plan as JSON (tensors, sources, files, family totals). */
struct cJSON *wp_plan_to_json(const wp_plan *p);
/* Find an output tensor by (file, name); SIZE_MAX if absent. */
size_t wp_plan_find(const wp_plan *p, int file, const char *name);

/* The loss of weight i: the plan's, or lossy when `inexact` (per plan weight,
 * elements an exact re-encode did not preserve; NULL = none) says so. */
wp_loss wp_plan_weight_loss(const wp_plan *p, size_t i, const uint64_t *inexact);
#define WP_LOSS_MAX_FAMILIES 256
typedef struct wp_loss_summary {
    int lossless;                     /* no lossy weight */
    size_t lossy_weights;             /* output weights (a stack is one; per rank) */
    size_t n_families;                /* sorted, distinct (capped; more_families counts the rest) */
    size_t more_families;
    char families[WP_LOSS_MAX_FAMILIES][96];
} wp_loss_summary;
void wp_plan_loss_summary(const wp_plan *p, const uint64_t *inexact, wp_loss_summary *s);
/* "lossless" or "lossy: N tensors (families a, b, ...)" */
void wp_loss_summary_line(const wp_loss_summary *s, char *out, size_t sz);
struct cJSON *wp_loss_summary_json(const wp_loss_summary *s);
/* The lossy-step gate (docs/profiles.md "Lossless builds"): WP_EVERIFY with
 * one line naming the weight and its rule, setting "allow-sensitive", when a
 * lossy weight is of a sensitive family and !allow_sensitive; setting
 * "allow-lossy" when a lossy weight's rule is a profile rule without
 * "lossy": true and !allow_lossy.  0 otherwise. */
int wp_plan_check_loss(const wp_plan *p, int allow_lossy, int allow_sensitive, wp_err *e);
/* Run time: WP_EVERIFY (setting "allow-lossy") naming the first weight whose
 * exact re-encode did not preserve every value (inexact[i] > 0), else 0. */
int wp_plan_check_inexact(const wp_plan *p, const uint64_t *inexact, wp_err *e);
/* Fill the loss fields of a build's manifest (trust/manifest.h): each tensor
 * its weight's loss, the top-level summary.  Tensors are found by (file
 * path, name); one the plan does not list is an error. */
struct wp_manifest;
int wp_plan_manifest_loss(const wp_plan *p, const uint64_t *inexact, struct wp_manifest *m, wp_err *e);

/* ---- Quantisation report ---------------------------------------------------- */
typedef struct wp_qrecord {
    size_t weight;           /* plan weight */
    wp_qerr err;
    uint64_t n_inexact;      /* elements not preserved by an exact/cast method */
    double nmse_max;         /* threshold in force (lossy methods) */
    int over;                /* threshold exceeded (or an exact method lost a value) */
} wp_qrecord;

typedef struct wp_report {
    const wp_plan *plan;     /* borrowed */
    size_t n;                /* one record per non-passthrough weight, in plan order */
    wp_qrecord *rec;
    size_t n_over;
} wp_report;

/* Allocate the records for every weight that is not copied. */
int wp_report_init(wp_report *r, const wp_plan *p, wp_err *e);
void wp_report_free(wp_report *r);
/* Apply the thresholds (sets over / n_over); returns n_over. */
size_t wp_report_check(wp_report *r);
/* JSON: one object per record (name, family, indexer flag, encodings,
 * method, rmse, nmse, max_abs_err, cosine, saturated_fraction, n_inexact,
 * threshold, pass) plus a summary. */
struct cJSON *wp_report_to_json(const wp_report *r);
/* That JSON, formatted, with a final newline, written to `path` atomically
 * (wp_write_file_atomic): the `--report FILE` of convert and quant. */
int wp_report_write_json(const wp_report *r, const char *path, int force, wp_err *e);
/* Record indices sorted by NMSE, largest first (malloc'd array of r->n). */
size_t *wp_report_order(const wp_report *r, wp_err *e);

/* ---- Output sinks ------------------------------------------------------------
 * The narrow interface between the pipeline and the container: the pipeline
 * only ever calls these.  write() is called from worker threads,
 * concurrently, on distinct tensors; each tensor's bytes arrive in order from
 * one thread, so a sink can hash them as they pass (the .wpk writer does). */
typedef struct wp_sink {
    void *ud;
    /* Create the (temporary) output for the plan. */
    int (*begin)(void *ud, const wp_plan *p, wp_err *e);
    /* n bytes at `off` within plan tensor `tensor`. */
    int (*write)(void *ud, size_t tensor, uint64_t off, const void *buf, size_t n, wp_err *e);
    /* Every tensor written: finish, fsync and move the output into place. */
    int (*commit)(void *ud, wp_err *e);
    /* Remove everything begin() created.  Safe after a failed begin(). */
    void (*abort)(void *ud);
    /* Optional: wp_convert_run hands the sink its cancel flag before begin(),
     * so that commit (finishing, hashing back, moving into place) stops too. */
    void (*set_cancel)(void *ud, volatile sig_atomic_t *cancel);
    /* Optional: before commit, the elements each plan weight's exact
     * re-encode did not preserve (wp_plan_weight_loss), for the manifest. */
    void (*set_inexact)(void *ud, const uint64_t *inexact);
} wp_sink;

/* The build-directory sink: one .wpk per plan file plus manifest.json
 * (format/wpk.h, trust/manifest.h).  OUT is an output directory written once
 * (common/outdir.h): built in a temporary directory next to it and moved into
 * place by commit.  An existing OUT is refused at begin (WP_EEXIST, setting
 * "force") unless `force`; with force only a build directory (manifest.json
 * or a .wpk in it) or an empty directory is replaced, and only on success. */
int wp_dir_sink_new(wp_sink *s, const char *out_dir, int force, wp_err *e);
void wp_dir_sink_free(wp_sink *s);

/* ---- Convert ------------------------------------------------------------------ */
typedef struct wp_convert_opts {
    int threads;             /* 0 = online CPUs */
    uint64_t mem_budget;     /* bytes; 0 = 1 GiB */
    wp_report *report;       /* non-NULL: fill the error records (needs wp_report_init) */
    wp_progress_fn progress; /* called under a lock with output bytes done/total */
    void *progress_ud;
    volatile sig_atomic_t *cancel;   /* set non-zero (e.g. by a signal handler) to stop:
                                        WP_EUSAGE "interrupted", no output */
    int no_content_check;    /* benches only: skip the content checks of every band read
                                (also the environment's WPACK_BENCH_NO_CONTENT_CHECK=1) */
    uint64_t *inexact;       /* NULL, or n_weights counters: filled with the elements each
                                exact re-encode (method exact or cast) did not preserve */
    int allow_lossy;         /* with a sink: accept an exact re-encode that lost values
                                (the manifest marks it lossy); else WP_EVERIFY, no output */
} wp_convert_opts;

typedef struct wp_convert_stats {
    uint64_t in_bytes, out_bytes;
    uint64_t items;          /* work items executed */
    uint64_t max_item_bytes; /* largest working set of one worker */
    uint64_t cast_inexact;   /* spec §3.7 re-encodes: elements that were not exact */
    int threads;
    double seconds;
    uint64_t peak_rss;       /* wp_peak_rss_bytes() at the end */
} wp_convert_stats;

/* Execute the plan.  sink NULL computes only (wpack quant): nothing is
 * written.  On any failure or cancel the sink is aborted: no output. */
int wp_convert_run(const wp_plan *p, const wp_sink *sink, const wp_convert_opts *o,
                   wp_convert_stats *st, wp_err *e);

/* ---- Content checks (convert/check.c, docs/convert.md "Content checks") -----
 * Every byte of a checkpoint's tensors against the rules of its dtype: no
 * NaN/inf in F32/F64/BF16/F16, no NaN code in E4M3 (0x7F/0xFF) or E5M2 (nor
 * its infinities), no NaN E8M0 scale (0xFF), no scale that makes its FP8 or
 * FP4 block non-finite, every gate.tid2eid entry in [0, n_routed_experts).
 * The convert pipeline screens each band as it reads it; `inspect --deep`
 * runs the same over the whole checkpoint without building.  c may be NULL
 * (no config.json: the tid2eid range is not checked). */

/* Screen n bytes read at byte `off` of tensor t (whole elements): 0 clean;
 * 1 when the tensor must be checked in full (wp_check_tensor), which may
 * still find nothing (a large scale over small codes). */
int wp_check_screen(const wp_config *c, const wp_tensor_info *t, uint64_t off, const void *buf, size_t n);
/* The whole tensor (and, for an FP8/FP4 weight or its scale, the pair's
 * blocks), streamed: 0, or WP_EINVAL with one line "FILE: TENSOR: COUNT
 * RULE, first at element I [i, j]". */
int wp_check_tensor(const wp_ckpt *k, const wp_config *c, const wp_tensor_info *t, wp_err *e);

typedef struct wp_check_opts {
    int threads;                       /* 0 = online CPUs */
    wp_progress_fn progress;           /* bytes; called under a lock from the workers */
    void *progress_ud;
    volatile sig_atomic_t *cancel;
} wp_check_opts;

#define WP_CHECK_MAX_LINES 1000
typedef struct wp_check_report {
    uint64_t tensors, bytes;           /* checked */
    int threads;
    double seconds;
    size_t n_bad;                      /* one line per bad tensor, file order (capped) */
    char **bad;
    uint64_t bad_total;
} wp_check_report;

/* Check every tensor of the checkpoint, in parallel, streaming (threads x
 * 4 MiB of buffers).  0 when every tensor passes; WP_EINVAL when one does
 * not (e: the first bad tensor in file order; the report lists them all). */
int wp_ckpt_check(const wp_ckpt *k, const wp_config *c, const wp_check_opts *o, wp_check_report *r, wp_err *e);
void wp_check_report_free(wp_check_report *r);

/* Parse a byte count "1G", "512M", "1.5GiB", "4096" (K/M/G/T powers of 1024). */
int wp_parse_bytes(const char *s, uint64_t *out);

#endif
