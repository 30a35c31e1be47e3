/*
 * wpk_zoo.h — a small .wpk with one tensor of every encoding, raw arrays,
 * stacked experts (MXFP4, fused NVFP4 w13 with per-expert globals) and a
 * zero-size tensor, written through the real writer.  Tensor bytes are a
 * deterministic function of the name (wpkz_fill), so tests know every byte.
 */
#ifndef WPK_ZOO_H
#define WPK_ZOO_H

#include "format/wpk.h"

typedef struct wpkz_spec {
    const char *name;
    wpk_kind kind;
    wp_enc enc;
    wp_dtype dtype;
    int ndim;
    uint64_t shape[4];
    int stacked;
    wpk_role role;
    int owner;            /* index in the zoo table for SCALE/GLOBAL */
    wp_scale_fmt sfmt;
    uint32_t br, bc;
    int n_sources;        /* sources are "src.NAME.K" */
} wpkz_spec;

extern const wpkz_spec wpkz_specs[];
extern const size_t wpkz_n;
#define WPKZ_MODEL_JSON "{\"model_type\": \"deepseek_v4\", \"dim\": 256}"
#define WPKZ_PROFILE_JSON "{\"name\": \"zoo\", \"align\": 4096}"
#define WPKZ_PROVENANCE_JSON "{\"tool\": \"wpack 0.1.0\", \"sources\": {}}"

/* Deterministic bytes of a tensor (NVFP4 globals are the floats 0.5 * (e+1)). */
void wpkz_fill(const char *name, uint8_t *out, uint64_t size);
/* Write the zoo to PATH.  mode 0: each tensor in one chunk, in order; 1:
 * chunks of 100 bytes in reverse order (exercises the read-back hashing);
 * 2: four threads, interleaved 64-byte chunks.  Returns 0 or a WP_E code. */
int wpkz_write(const char *path, uint32_t align, int mode, wp_err *e);

#endif
