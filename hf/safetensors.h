/*
 * safetensors.h — the one strict safetensors reader of wpack (single files and
 * sharded HF checkpoints).  Headers are parsed and validated completely on
 * open; tensor bytes are never loaded as a whole: read them with
 * wp_st_read()/wp_ckpt_read() (pread into a caller buffer, for streaming) or
 * view them with wp_st_data() (lazy read-only mmap, zero-copy).
 *
 * Validation (each failure: one line naming the file, the tensor and the rule):
 * header length >= 2, <= 100 MB, <= file size - 8; UTF-8 JSON object
 * (trailing spaces allowed); no duplicate names (case-sensitive); dtype known;
 * shape non-negative exact integers; data_offsets exact integers <= 2^53,
 * begin <= end; end - begin == product(shape) * bits / 8 (overflow-checked);
 * tensors sorted by offset contiguous from 0, no gaps or overlaps, covering
 * the data buffer to end of file; __metadata__ string -> string.
 * Stricter than the letter of the format, like the reference Rust reader:
 * numbers must be spelt as plain integers ("8", not "8.0" or "8e0"), a
 * tensor entry has exactly the keys dtype/shape/data_offsets, strings may
 * not contain \u0000, and the header must start with '{'.
 *
 * Messages name the path as given, then the tensor, then the rule, e.g.
 * "dir/model-00001-of-00002.safetensors: layers.0.attn.wq_a.weight:
 * data_offsets [0, 4096) overlap the previous tensor ...".  Malformed input
 * gives WP_EINVAL; tests/corpus.h lists one file per rule.
 */
#ifndef WP_SAFETENSORS_H
#define WP_SAFETENSORS_H

#include "common/wp.h"

typedef enum wp_dtype {
    WP_BOOL, WP_U8, WP_I8, WP_I16, WP_U16, WP_I32, WP_U32, WP_I64, WP_U64,
    WP_F16, WP_BF16, WP_F32, WP_F64,
    WP_F8_E4M3, WP_F8_E5M2, WP_F8_E8M0,
    WP_F4,                          /* e2m1, two per byte, low nibble first */
    WP_F6_E2M3, WP_F6_E3M2,         /* 6-bit, packed 4 per 3 bytes */
    WP_DTYPE_COUNT
} wp_dtype;

const char *wp_dtype_name(wp_dtype t);                 /* "BF16", ... */
int wp_dtype_parse(const char *s, wp_dtype *out);      /* 0 or -1 (case-sensitive) */
unsigned wp_dtype_bits(wp_dtype t);                    /* 1 (BOOL is 8), 4, 6, 8, ... */
/* product(shape) * bits / 8, overflow-checked; -1 if it overflows or the
 * element count does not fill whole bytes. */
int wp_dtype_nbytes(wp_dtype t, const uint64_t *shape, int ndim, uint64_t *out);

#define WP_MAX_DIMS 8

typedef struct wp_tensor_info {
    const char *name;
    wp_dtype dtype;
    int ndim;
    uint64_t shape[WP_MAX_DIMS];
    uint64_t nbytes;
    uint64_t offset;     /* absolute byte offset in its file (8 + N + begin) */
    int file;            /* index into the checkpoint's files (0 for one file) */
} wp_tensor_info;

typedef struct wp_st_file wp_st_file;   /* opaque */

int wp_st_open(wp_st_file **out, const char *path, wp_err *e);
void wp_st_close(wp_st_file *f);
const char *wp_st_path(const wp_st_file *f);
uint64_t wp_st_file_size(const wp_st_file *f);
uint64_t wp_st_header_len(const wp_st_file *f);      /* N, the JSON length */
size_t wp_st_count(const wp_st_file *f);
/* Tensors in header order; names sorted lookups via wp_st_find. */
const wp_tensor_info *wp_st_tensor(const wp_st_file *f, size_t i);
const wp_tensor_info *wp_st_find(const wp_st_file *f, const char *name);
size_t wp_st_meta_count(const wp_st_file *f);
int wp_st_meta(const wp_st_file *f, size_t i, const char **key, const char **val);
int wp_st_fd(const wp_st_file *f);
/* pread [off, off+n) of the tensor's bytes into buf. */
int wp_st_read(const wp_st_file *f, const wp_tensor_info *t, uint64_t off, void *buf, size_t n,
               wp_err *e);
/* Zero-copy view of the tensor's bytes (maps the file on first use). */
const void *wp_st_data(wp_st_file *f, const wp_tensor_info *t, wp_err *e);

/* ---- Checkpoints -------------------------------------------------------------
 * A directory with model.safetensors.index.json (+ the shards it names), a
 * directory with a single model.safetensors, or a single .safetensors file.
 * The index is cross-checked: each weight_map entry exists in the named shard
 * and each shard tensor is listed in weight_map for that shard; shard paths
 * may not be absolute or contain "..", a missing shard is an error. */
typedef struct wp_ckpt wp_ckpt;   /* opaque */

int wp_ckpt_open(wp_ckpt **out, const char *path, wp_err *e);
void wp_ckpt_close(wp_ckpt *c);
const char *wp_ckpt_dir(const wp_ckpt *c);           /* directory holding config.json */
size_t wp_ckpt_file_count(const wp_ckpt *c);
wp_st_file *wp_ckpt_file(const wp_ckpt *c, size_t i);
size_t wp_ckpt_count(const wp_ckpt *c);
/* All tensors of all shards, sorted by name (strcmp). */
const wp_tensor_info *wp_ckpt_tensor(const wp_ckpt *c, size_t i);
const wp_tensor_info *wp_ckpt_find(const wp_ckpt *c, const char *name);
int wp_ckpt_read(const wp_ckpt *c, const wp_tensor_info *t, uint64_t off, void *buf, size_t n,
                 wp_err *e);
const void *wp_ckpt_data(wp_ckpt *c, const wp_tensor_info *t, wp_err *e);

/* ---- Writer (convert/st_writer.c) ---------------------------------------------
 * Declare every tensor (name, dtype, shape) and any metadata first, then
 * stream the data: the bytes of the tensors in declaration order, in as many
 * wp_st_writer_write() calls as you like.  data_offsets are assigned
 * contiguously in declaration order; the JSON header lists __metadata__ then
 * the tensors sorted by name (strcmp), numbers as plain integers, padded with
 * spaces so the data starts at a multiple of 8.  Same declarations + same
 * bytes = same file, byte for byte.
 *
 * The file is written through wp_out (temp + fsync + rename): until commit
 * succeeds PATH does not exist (or keeps its old content).  commit and abort
 * both free the writer; after any failed call, call abort. */
typedef struct wp_st_writer wp_st_writer;   /* opaque */

int wp_st_writer_open(wp_st_writer **out, const char *path, wp_err *e);
/* The same at a path the user named (wp_out_create): an existing PATH is
 * refused (WP_EEXIST, setting "force") unless force, and never replaced by
 * a file that appeared meanwhile. */
int wp_st_writer_create(wp_st_writer **out, const char *path, int force, wp_err *e);
/* Metadata (string -> string); a key given twice is an error. */
int wp_st_writer_meta(wp_st_writer *w, const char *key, const char *val, wp_err *e);
/* Declare the next tensor.  Names must be non-empty UTF-8, unique, not
 * "__metadata__"; the shape must give a whole number of bytes.  Only before
 * the first write. */
int wp_st_writer_add(wp_st_writer *w, const char *name, wp_dtype dtype, int ndim,
                     const uint64_t *shape, wp_err *e);
/* Total bytes of the data buffer declared so far. */
uint64_t wp_st_writer_data_size(const wp_st_writer *w);
/* Append n data bytes (emits the header on the first call).  Writing past the
 * declared total is an error. */
int wp_st_writer_write(wp_st_writer *w, const void *buf, size_t n, wp_err *e);
/* Check that exactly the declared bytes were written, then commit PATH. */
int wp_st_writer_commit(wp_st_writer *w, wp_err *e);
void wp_st_writer_abort(wp_st_writer *w);

/* One-shot: write n tensors from memory (data may be NULL when nbytes is 0).
 * meta is key, value, key, value, ... (nmeta pairs; may be NULL). */
typedef struct wp_st_entry {
    const char *name;
    wp_dtype dtype;
    int ndim;
    uint64_t shape[WP_MAX_DIMS];
    const void *data;
} wp_st_entry;
int wp_st_write_file(const char *path, const wp_st_entry *t, size_t n,
                     const char *const *meta, size_t nmeta, wp_err *e);

/* Write a sharded checkpoint index (model.safetensors.index.json, as HF
 * does): {"metadata": {"total_size": total_size}, "weight_map": {name:
 * shard}} with names sorted, 2-space indentation, through wp_out.  shards[i]
 * is the file name (relative to the index's directory) holding names[i]. */
int wp_st_write_index(const char *path, const char *const *names, const char *const *shards,
                      size_t n, uint64_t total_size, wp_err *e);

#endif
