/*
 * wpk.h — the .wpk container: one file of a build (docs/format.md §2).
 *
 * Reading: wpk_open() reads and validates the header, directory, source table,
 * strings and the header digest (the structural check, O(tensor count)), maps
 * the file read-only and hands out zero-copy views of tensors and of single
 * experts of stacked tensors.  Nothing read from the file is trusted before it
 * has been bounds- and overflow-checked; a directory that lies is rejected
 * with one line naming the file, the tensor and the rule.
 *
 * Writing is streaming: declare every tensor first (wpk_writer_add), fix the
 * layout (wpk_writer_layout: offsets are known from then on), write each
 * tensor's bytes in any number of chunks from any number of threads
 * (wpk_writer_write: pwrite at the known offset, SHA-256 computed on the fly),
 * then wpk_writer_commit() writes the directory with the digests and renames
 * the temp file into place (wp_out).  Same declarations and bytes -> the same
 * file, byte for byte.
 *
 * Manifests and signatures are declared in format/manifest.h, the .wpkz
 * shipping form in format/pack.h.
 */
#ifndef WP_WPK_H
#define WP_WPK_H

#include <stddef.h>
#include <stdint.h>

#include "common/wp.h"
#include "hf/safetensors.h"   /* wp_dtype, WP_MAX_DIMS */
#include "quant/quant.h"           /* wp_enc, wp_scale_fmt, wp_qweight */

#define WPK_VERSION_MAJOR 1
#define WPK_VERSION_MINOR 0
#define WPK_ALIGN_DEFAULT 4096u
#define WPK_ALIGN_HUGE (2u << 20)      /* --align 2M */
#define WPK_NONE UINT32_MAX           /* "no index" in scale/global/owner */
#define WPK_MAX_TENSORS (1u << 20)
#define WPK_MAX_NAME 1024

/* What an entry holds: a weight in a wp_enc encoding, or a raw array of a
 * safetensors dtype (scales, HC parameters, tid2eid, ...). */
typedef enum wpk_kind { WPK_KIND_ENC, WPK_KIND_RAW } wpk_kind;

/* One directory entry, decoded and validated (docs/format.md §2.2).  Strings
 * point into the file's mapping and live as long as the wpk_file. */
typedef struct wpk_tensor {
    const char *name;
    uint32_t index;               /* position in the directory */
    wpk_kind kind;
    wp_enc enc;                   /* kind == WPK_KIND_ENC */
    wp_dtype dtype;               /* kind == WPK_KIND_RAW */
    int ndim;
    uint64_t shape[WP_MAX_DIMS];  /* logical shape, elements */
    int stacked;                  /* shape[0] is the expert count */
    uint64_t n_experts;           /* shape[0] if stacked, else 0 */
    uint64_t expert_stride;       /* bytes per expert if stacked, else 0 */
    uint64_t offset, size;        /* absolute byte range in the file */
    uint32_t scale;               /* directory index of the scale, or WPK_NONE */
    uint32_t global;              /* NVFP4: index of the F32 global scale, or WPK_NONE */
    uint32_t owner;               /* for a scale/global: the weight's index, or WPK_NONE */
    uint32_t br, bc;              /* scale block (FP8 RxC, MXFP4 1x32, NVFP4 1x16), else 0 */
    wp_scale_fmt sfmt;            /* FP8 only */
    uint32_t n_sources;
    const char *const *sources;   /* n_sources names, expert-major when stacked */
    uint8_t sha256[WP_SHA256_LEN];
} wpk_tensor;

/* Encoding names for messages and JSON: "bf16".."nvfp4" for WPK_KIND_ENC,
 * the safetensors dtype ("F8_E8M0", ...) for WPK_KIND_RAW. */
const char *wpk_tensor_enc_name(const wpk_tensor *t);
/* Name of an on-disk encoding code (docs/format.md §2.3), NULL if unknown. */
const char *wpk_code_name(unsigned code);

/* ---- Reading ---------------------------------------------------------------- */
typedef struct wpk_file wpk_file;   /* opaque */

/* Open and structurally validate PATH (docs/format.md §2.6, first part).  On
 * success *out is the open container; on failure *out is NULL and e holds one
 * line: "PATH: [TENSOR: ]rule".  Tensor bytes are not read. */
int wpk_open(wpk_file **out, const char *path, wp_err *e);
void wpk_close(wpk_file *f);

const char *wpk_path(const wpk_file *f);
int wpk_fd(const wpk_file *f);                 /* for pread-based streaming */
uint64_t wpk_file_size(const wpk_file *f);
uint64_t wpk_data_offset(const wpk_file *f);   /* where tensor data starts */
uint32_t wpk_align(const wpk_file *f);
unsigned wpk_version_minor(const wpk_file *f);
void wpk_part(const wpk_file *f, uint32_t *index, uint32_t *count);
/* The header digest (docs/format.md §2.1), already checked by wpk_open. */
const uint8_t *wpk_header_sha256(const wpk_file *f);

/* The caller-supplied JSON objects, NUL-terminated, verbatim. */
const char *wpk_model_json(const wpk_file *f);
const char *wpk_profile_json(const wpk_file *f);
const char *wpk_provenance_json(const wpk_file *f);

size_t wpk_count(const wpk_file *f);
const wpk_tensor *wpk_tensor_at(const wpk_file *f, size_t i);    /* NULL if out of range */
const wpk_tensor *wpk_find(const wpk_file *f, const char *name); /* O(log n); NULL if absent */

/* Zero-copy view of a tensor's bytes (t->size of them; NULL for size 0).  The
 * pointer is into the read-only mapping, or into the huge-page copy after
 * wpk_load_hugepages(). */
const void *wpk_data(const wpk_file *f, const wpk_tensor *t);
/* Zero-copy view of one expert of a stacked tensor: *p = data + expert *
 * stride, *n = stride.  WP_EUSAGE if t is not stacked or expert >= n_experts. */
int wpk_expert(const wpk_file *f, const wpk_tensor *t, uint64_t expert, const void **p,
               uint64_t *n, wp_err *e);
/* The wp_qweight view of weight t (expert `expert` if stacked; pass 0
 * otherwise): data and scale point into the container, global read from the
 * NVFP4 global entry.  Requires t->kind == WPK_KIND_ENC and a 2-D matrix
 * (ndim 2, or 3 stacked); rows/cols are the matrix's. */
int wpk_qweight(const wpk_file *f, const wpk_tensor *t, uint64_t expert, wp_qweight *out,
                wp_err *e);
/* pread [off, off+n) of the tensor's bytes (bounded-memory streaming; safe
 * from several threads). */
int wpk_read(const wpk_file *f, const wpk_tensor *t, uint64_t off, void *buf, size_t n,
             wp_err *e);

/* ---- Deep validation (docs/format.md §2.6, second part) ------------------------
 * Structural validation is wpk_open.  The deep check recomputes digests with
 * pread in bounded chunks (never the mapping, never the whole tensor in
 * memory); the functions are thread-safe for distinct or identical tensors.
 *
 * Check tensor i: on mismatch WP_EVERIFY with
 * "PATH: NAME: sha256 mismatch in bytes [OFF, END)". */
int wpk_check_tensor(const wpk_file *f, size_t i, wp_err *e);
/* Check that every padding byte (after the strings, between tensors) is zero:
 * WP_EVERIFY "PATH: non-zero padding at byte OFF (after NAME)". */
int wpk_check_padding(const wpk_file *f, wp_err *e);
/* Both, over every tensor, with `threads` workers (<= 1: in the caller);
 * progress in bytes.  The first failure (lowest tensor index) is reported. */
int wpk_check_deep(const wpk_file *f, int threads, wp_progress_fn progress, void *ud,
                   wp_err *e);

/* ---- Huge pages (format/hugepages.c) ---------------------------------------------
 * Copy the tensor data region into huge-page-backed memory and make
 * wpk_data()/wpk_expert()/wpk_qweight() return pointers into it.  Tries
 * libhugetlbfs (get_huge_pages, needs reserved pages: /proc/sys/vm/nr_hugepages)
 * then mmap(MAP_HUGETLB); when neither works the container keeps using the
 * plain read-only mapping, *kind is WPK_HUGE_NONE, and `notice` (if not NULL)
 * receives one line saying why (the caller prints it).  Returns an error only
 * for a real failure (ENOMEM in the fallback copy is not one: it just keeps
 * the mapping).  WPK_HUGE_THP asks for transparent huge pages instead
 * (anonymous memory + madvise(MADV_HUGEPAGE); no reservation needed). */
typedef enum wpk_huge_kind {
    WPK_HUGE_NONE,        /* plain mmap of the file */
    WPK_HUGE_HUGETLBFS,   /* libhugetlbfs get_huge_pages */
    WPK_HUGE_MAP_HUGETLB, /* mmap MAP_ANONYMOUS|MAP_HUGETLB */
    WPK_HUGE_THP,         /* anonymous memory with MADV_HUGEPAGE */
} wpk_huge_kind;
enum { WPK_HUGE_EXPLICIT = 0, WPK_HUGE_TRANSPARENT = 1 };   /* mode */
int wpk_load_hugepages(wpk_file *f, int mode, wpk_huge_kind *kind, char *notice,
                       size_t notice_sz, wp_err *e);
const char *wpk_huge_kind_name(wpk_huge_kind k);   /* "none", "hugetlbfs", ... */

/* ---- Writing -------------------------------------------------------------------- */
typedef struct wpk_writer wpk_writer;   /* opaque */

typedef struct wpk_opts {
    uint32_t align;                /* 0 -> 4096; a power of two in [4096, 2^30] */
    const char *model_json;        /* JSON object text; NULL -> "{}" */
    const char *profile_json;      /* JSON object text; NULL -> "{}" */
    const char *provenance_json;   /* JSON object text; NULL -> "{}" (no timestamps!) */
    uint32_t part_index, part_count;   /* 0, 0 -> a single-file build (0 of 1) */
    uint64_t shard_size;           /* 0 -> WPK_SHARD_SIZE_DEFAULT; the shard digests' size */
} wpk_opts;

/* The file digests computed while the file was written (no second read of
 * the output; docs/signing.md §2): SHA-256 of each shard [k*S, min((k+1)*S,
 * size)) (OpenSSF model-signing's shard serialisation) and of the non-tensor
 * bytes.  Chunks that arrive ahead of their shard's hash cursor are read back
 * from the temp file (page cache) once the gap closes: read_back counts
 * those bytes (tensor cursors included); shard 0 always reads back its data
 * part, as the header region is written last. */
#define WPK_SHARD_SIZE_DEFAULT (64ull << 20)
typedef struct wpk_digests {
    uint64_t size, shard_size;
    size_t nshards;
    uint8_t (*shards)[WP_SHA256_LEN];   /* malloc'd */
    uint8_t nontensor[WP_SHA256_LEN];
    uint64_t read_back;
} wpk_digests;
void wpk_digests_free(wpk_digests *d);

/* The role of a declared tensor.  A scale (or NVFP4 global) names its weight
 * by the id wpk_writer_add returned for it; the writer ties both ways. */
typedef enum wpk_role { WPK_ROLE_DATA, WPK_ROLE_SCALE, WPK_ROLE_GLOBAL } wpk_role;

typedef struct wpk_decl {
    const char *name;
    wpk_kind kind;
    wp_enc enc;                    /* WPK_KIND_ENC */
    wp_dtype dtype;                /* WPK_KIND_RAW */
    int ndim;
    uint64_t shape[WP_MAX_DIMS];
    int stacked;                   /* shape[0] = experts */
    wp_scale_fmt sfmt;             /* FP8: its scale's format */
    uint32_t br, bc;               /* FP8 block (e.g. 128x128); ignored (fixed) for MX/NV FP4 */
    wpk_role role;
    size_t owner;                  /* SCALE/GLOBAL: the weight's id */
    size_t n_sources;
    const char *const *sources;    /* copied */
} wpk_decl;

/* Start a container at PATH (written as a temp file next to it; nothing at
 * PATH until commit).  The options' strings are copied. */
int wpk_writer_open(wpk_writer **out, const char *path, const wpk_opts *o, wp_err *e);
/* Declare the next tensor (directory order = declaration order = data order).
 * *id receives its index.  Names and sources are copied. */
int wpk_writer_add(wpk_writer *w, const wpk_decl *d, size_t *id, wp_err *e);
/* Freeze the declarations, validate them exactly as a reader would (sizes,
 * scale ties, limits) and fix every offset.  No more wpk_writer_add after. */
int wpk_writer_layout(wpk_writer *w, wp_err *e);
/* After layout: where tensor id lives, and its byte size. */
uint64_t wpk_writer_offset(const wpk_writer *w, size_t id);
uint64_t wpk_writer_size(const wpk_writer *w, size_t id);
/* Write [off, off+n) of tensor id.  Thread-safe; chunks may come in any order
 * from any thread but may not overlap.  In-order chunks are hashed from buf;
 * a chunk that arrives ahead of the hash cursor is hashed (read back from the
 * temp file) once the gap before it is filled. */
int wpk_writer_write(wpk_writer *w, size_t id, uint64_t off, const void *buf, size_t n,
                     wp_err *e);
/* After every byte of tensor id is written: its SHA-256. */
int wpk_writer_digest(const wpk_writer *w, size_t id, uint8_t out[WP_SHA256_LEN], wp_err *e);
/* Check every tensor is complete, write header + directory + digests, fsync,
 * rename into place.  Frees w (also on failure, which leaves nothing at PATH). */
int wpk_writer_commit(wpk_writer *w, wp_err *e);
/* The same, also handing out the file digests (out may be NULL). */
int wpk_writer_commit_digests(wpk_writer *w, wpk_digests *out, wp_err *e);
/* Drop everything (unlink the temp file) and free w.  NULL is a no-op. */
void wpk_writer_abort(wpk_writer *w);

/* Bytes of an entry's data for a kind/encoding/shape (docs/format.md §2.4);
 * -1 if invalid or overflowing.  Exposed so planners compute the same sizes. */
int wpk_tensor_bytes(wpk_kind kind, wp_enc enc, wp_dtype dtype, int ndim,
                     const uint64_t *shape, int stacked, uint64_t *out);

#endif
