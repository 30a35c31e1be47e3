/*
 * build.h — a build as the commands that read one see it: a build directory
 * (.wpk parts, manifest.json, its signature files, anything else) or a lone
 * .wpk file, opened once.  verify walks it phase by phase; the runtime reads
 * its parts.
 *
 * Opening only looks: what the path is and which trust files are present.
 * The manifest is read and parsed, the directory listed and each part opened
 * (format/wpk.h) when first asked for, and kept until wp_build_close, so
 * every step of a command sees the same objects and errors arrive in the
 * order the steps ask.
 */
#ifndef WP_BUILD_H
#define WP_BUILD_H

#include <cjson/cJSON.h>

#include "common/wp.h"
#include "format/wpk.h"
#include "trust/manifest.h"

typedef enum wp_build_kind {
    WP_BUILD_DIR = 1,   /* a build directory */
    WP_BUILD_WPK = 2,   /* a lone .wpk file: one part, no manifest, no signature */
} wp_build_kind;

typedef struct wp_build wp_build;   /* opaque */

/* Open PATH.  WP_EIO "PATH: cannot open: ..." if it cannot be looked at,
 * WP_EUSAGE if it is neither a directory nor a regular file. */
int wp_build_open(wp_build **out, const char *path, wp_err *e);
/* Close every part opened through the build and free it; NULL is fine. */
void wp_build_close(wp_build *b);

wp_build_kind wp_build_type(const wp_build *b);
const char *wp_build_path(const wp_build *b);   /* as given to wp_build_open */

/* Which trust files the directory holds (present at open; always 0 for a
 * lone .wpk): manifest.json, manifest.sig, manifest.dsse.json. */
int wp_build_has_manifest(const wp_build *b);
int wp_build_has_sig(const wp_build *b);
int wp_build_has_dsse(const wp_build *b);
/* manifest.json, manifest.sig or manifest.dsse.json: never a build's
 * content, never in its manifest. */
int wp_build_is_trust_file(const char *rel);

/* BUILD/rel into out (WP_EUSAGE "BUILD/rel: path too long"). */
int wp_build_join(const wp_build *b, const char *rel, char *out, size_t n, wp_err *e);

/* The parsed manifest, read once (strict parse, trust/manifest.h).  Errors:
 * WP_EUSAGE for a lone .wpk, WP_EINVAL "BUILD: no manifest.json: ..." when
 * absent, else those of reading and parsing it (WP_EINVAL: malformed). */
int wp_build_manifest(wp_build *b, const wp_manifest **m, wp_err *e);
/* Its exact bytes (what manifest.sig signs); NULL until wp_build_manifest
 * succeeded. */
const char *wp_build_manifest_bytes(const wp_build *b, size_t *len);

/* Whether the build reproduces its source's values exactly, as convert
 * recorded it in manifest.json's top-level "loss": {"lossless": true|false,
 * "lossy_tensors": N, "families": [...]}: 1 lossless, 0 lossy, -1 unknown (a
 * lone .wpk, no manifest, a build made before the field, or a manifest that
 * cannot be read: the caller treats unknown as "not known lossless").  Reads
 * the bytes wp_build_manifest read if it ran, else the file itself. */
int wp_build_lossless(const wp_build *b);

/* Every file of the directory (common's wp_list_files: relative paths,
 * sorted, dot files skipped), listed once; for a lone .wpk its file name. */
int wp_build_files(wp_build *b, const wp_strv **files, wp_err *e);

/* The parts: every "*.wpk" at the top of the directory (not dot files),
 * sorted by name, or the lone .wpk itself.  WP_EINVAL "BUILD: no .wpk file
 * in this directory" when there is none.  Parts are numbered from 0. */
int wp_build_parts(wp_build *b, size_t *n, wp_err *e);
const char *wp_build_part_name(const wp_build *b, size_t i);   /* relative to BUILD */
const char *wp_build_part_path(const wp_build *b, size_t i);   /* BUILD/name, or PATH */
/* Part i, opened (wpk_open: structure checked) on first use; the build
 * owns it. */
int wp_build_part(wp_build *b, size_t i, wpk_file **f, wp_err *e);
/* The .wpk at BUILD/rel (rel as a manifest names it), opened on first use
 * and kept with the parts. */
int wp_build_part_at(wp_build *b, const char *rel, wpk_file **f, wp_err *e);

/* ---- What a build holds (`wpack inspect BUILD`) ------------------------------
 * From the containers' directories and the manifest alone: nothing is hashed
 * (that is `wpack verify`). */
#define WP_BUILD_MAX_ENCS 32
typedef struct wp_build_part_info {
    const char *name;                /* relative to the build (owned by the build) */
    uint64_t tensors, file_bytes;
} wp_build_part_info;
typedef struct wp_build_summary {
    wp_build_kind kind;
    int has_manifest, has_sig, has_dsse;
    char root[2 * WP_SHA256_LEN + 1];   /* manifest root digest (hex), "" without one */
    uint64_t tensors, tensor_bytes, file_bytes;
    size_t n_parts;
    wp_build_part_info *parts;
    size_t n_encs;                   /* weights by encoding (raw tensors by dtype); scales
                                        count with their weight */
    struct { char name[24]; uint64_t tensors, bytes; } encs[WP_BUILD_MAX_ENCS];
} wp_build_summary;
int wp_build_summarise(wp_build *b, wp_build_summary *s, wp_err *e);
void wp_build_summary_free(wp_build_summary *s);
cJSON *wp_build_summary_json(const char *path, const wp_build_summary *s);

/* ---- The tensors of a build or a .wpkz (trust/build_list.c) --------------------
 * One row per tensor: the parts in name order (a .wpkz: its .wpk files in
 * archive order), each in directory order.  From the containers' directories
 * (a .wpkz: its index and the .wpk header regions, format/pack.h): nothing
 * is hashed here, digests are the recorded ones. */
typedef struct wp_tensor_row {
    const wpk_tensor *t;        /* name, encoding, logical shape, offset, size, sha256, experts */
    const char *file;           /* the .wpk holding it: relative to the build, or its name in the archive */
    size_t part;                /* its part (a build) or file (a .wpkz) index */
    uint64_t comp_bytes;        /* from a .wpkz: compressed bytes of its frames; else 0 */
    const char *scale;          /* a weight's scale tensor, or NULL */
    const char *scale_of;       /* a scale's (or NVFP4 global's) weight, or NULL */
} wp_tensor_row;
typedef struct wp_tensor_list {
    int packed;                 /* rows from a .wpkz */
    size_t n_files;             /* .wpk files the rows come from */
    size_t n;
    wp_tensor_row *rows;
    struct wpz_list *z;         /* a .wpkz's listing, which the rows point into */
} wp_tensor_list;
/* Every part is opened (wpk_open: structure and header digest checked). */
int wp_build_list(wp_build *b, wp_tensor_list *l, wp_err *e);
int wp_wpkz_list(const char *wpkz, wp_tensor_list *l, wp_err *e);
void wp_tensor_list_free(wp_tensor_list *l);
/* A stacked tensor's source names, compactly: for each of the `per` sources
 * of an expert, "PREFIX{A..B}SUFFIX" when expert e's name is PREFIX(A+e)SUFFIX
 * for every e (e.g. "layers.0.ffn.experts.{0..255}.w1.weight"), joined by
 * " + "; "" when the names follow no such pattern (then list them).  0, or -1
 * when out does not hold it (out is then "").  Bounded by the tensor's
 * n_sources, itself bounded by the container's limits. */
int wp_tensor_sources_range(const wpk_tensor *t, char *out, size_t n);
/* The rows as a JSON array of {name, file, encoding, shape, bytes, offset,
 * sha256, scale, scale_of, experts: null | {count, stride, per_expert,
 * sources_range, sources}, compressed_bytes (.wpkz only)}; NULL when out of
 * memory. */
cJSON *wp_tensor_list_json(const wp_tensor_list *l);

/* ---- The names a build provides (trust/build_list.c) ---------------------------
 * Every weight's name (scales and NVFP4 globals come with their weight and
 * are not indexed) and every source name of a stacked weight: expert e of
 * the stack, and when `per` sources name one expert (a fused w13: w1, w3)
 * its `slot`.  So an official name (layers.L.ffn.experts.E.w1.weight) finds
 * the stack and the slice holding it.  Sorted by name; a name twice is
 * allowed only for whole tensors with the same size and SHA-256 (what an
 * expert-parallel build replicates in every part: the first is kept), else
 * WP_EINVAL "WHAT: NAME: held twice, in FILE and in FILE, with different
 * bytes"; a stack whose sources do not divide by its experts is WP_EINVAL
 * "WHAT: FILE: NAME: a stack of N experts naming M source tensors: its
 * experts cannot be told apart".  WHAT names the build in messages. */
typedef struct wp_build_name {
    const char *name;           /* owned by the listing's containers */
    size_t row;                 /* the row of the listing that holds it */
    long expert;                /* -1: the whole tensor; else its expert in the stack */
    unsigned slot, per;         /* slot of `per` consecutive sources of one expert */
} wp_build_name;
typedef struct wp_name_index {
    wp_build_name *v;
    size_t n;
} wp_name_index;
int wp_name_index_build(const wp_tensor_list *l, const char *what, wp_name_index *x, wp_err *e);
/* The same, keeping every entry of a name held several times (sorted by
 * name, then row): a tensor-parallel build holds each cut tensor once per
 * part under the same name; the caller decides what a repeat means. */
int wp_name_index_build_all(const wp_tensor_list *l, const char *what, wp_name_index *x, wp_err *e);
/* The entry for name (the first of its run), NULL if absent. */
const wp_build_name *wp_name_index_find(const wp_name_index *x, const char *name);
void wp_name_index_free(wp_name_index *x);

#endif
