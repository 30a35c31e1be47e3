/*
 * pack.h — the .wpkz shipping form of a build (docs/format.md §3): every file
 * of a build directory in one archive of independent zstd frames with a seek
 * index, so one tensor can be extracted without decompressing the rest.
 * Both directions stream in bounded memory (one chunk of at most
 * WPZ_CHUNK bytes plus zstd's own buffers) and write through wp_out
 * (common/wp.h) or an output directory (common/outdir.h).
 */
#ifndef WP_PACK_H
#define WP_PACK_H

#include <stdint.h>

#include "common/wp.h"
#include "format/wpk.h"

#define WPZ_CHUNK (64u << 20)   /* largest frame: 64 MiB of raw bytes */

/* Raw vs compressed bytes of one class: an encoding name ("bf16", "fp8",
 * "F8_E8M0", ...), "header" (.wpk header regions) or "other" (manifest, ...). */
typedef struct wpz_class_stat {
    char name[16];
    uint64_t raw, comp, tensors;
} wpz_class_stat;

typedef struct wpz_stats {
    uint64_t files, tensors, frames;
    uint64_t raw_bytes, comp_bytes;   /* comp_bytes: the whole .wpkz */
    size_t n_classes;
    wpz_class_stat classes[40];       /* sorted by name */
} wpz_stats;

typedef struct wpz_opts {
    int level;        /* zstd level; 0 -> 3 (ZSTD_minCLevel()..ZSTD_maxCLevel()) */
    int threads;      /* ZSTD_c_nbWorkers; 0 -> single-threaded */
    uint64_t chunk;   /* largest frame in raw bytes; 0 -> WPZ_CHUNK (tests use small ones) */
    wp_progress_fn progress;   /* bytes of raw input done; may be NULL */
    void *ud;
    /* Replace an existing OUT.  Without it an existing OUT is refused up
     * front with WP_EEXIST (setting "force"), and the output claims its name
     * without replacing anything that appeared meanwhile.  With it pack and
     * extraction replace a file, unpack a build directory (manifest.json or
     * *.wpk in it) or an empty directory, nothing else. */
    int force;
} wpz_opts;

/* Pack BUILD (a build directory, or a lone .wpk file) into the file OUT.
 * Every .wpk is opened (structural check) and its tensor digests are
 * checked while it is read, so a corrupt build is refused rather than
 * shipped.  o and stats may be NULL. */
int wpz_pack(const char *build, const char *out, const wpz_opts *o, wpz_stats *stats,
             wp_err *e);
/* Restore the build directory OUT from a .wpkz: written as an output
 * directory (common/outdir.h), so OUT appears only when every file checked
 * out.  o and stats may be NULL. */
int wpz_unpack(const char *wpkz, const char *out, const wpz_opts *o, wpz_stats *stats,
               wp_err *e);
/* Extract one tensor's raw bytes to the file OUT, decompressing only its
 * frames; checked against the tensor's SHA-256.  NAME, or FILE:NAME when
 * several parts hold the name (WP_EUSAGE if ambiguous); WP_EINVAL if absent.
 * Only o->force is used; o may be NULL. */
int wpz_extract(const char *wpkz, const char *name, const char *out, const wpz_opts *o, wp_err *e);
/* Read and validate the index only (prefix, footer, index digest, records);
 * fills counts and per-class sizes without decompressing anything. */
int wpz_stat(const char *wpkz, wpz_stats *stats, wp_err *e);

/* ---- The tensors of a .wpkz (format/wpkz_list.c) ------------------------------
 * The index is read with every check wpz_stat applies; then, for each .wpk in
 * the archive, only the frames of its header region [0, data_offset) are
 * decompressed and validated as wpk_open validates a container (header digest
 * included), and the index's tensor records of that file must be its
 * directory, entry for entry (name, offset, size, digest, encoding); a
 * tensor record in a file that is not a .wpk is refused.  Memory: the index
 * and the header regions (grown as bytes decompress, never from a size
 * field alone).  Errors name the archive and the file: "X.wpkz:model.wpk:
 * ...". */
typedef struct wpz_list wpz_list;   /* opaque */
typedef struct wpz_list_tensor {
    const wpk_tensor *t;            /* its .wpk directory entry (strings live with the list) */
    size_t file;                    /* index of its .wpk among the archive's files */
    uint64_t comp_bytes;            /* compressed bytes of its frames */
} wpz_list_tensor;
int wpz_list_open(wpz_list **out, const char *wpkz, wp_err *e);
void wpz_list_close(wpz_list *l);   /* NULL is fine */
size_t wpz_list_files(const wpz_list *l);
const char *wpz_list_file_name(const wpz_list *l, size_t i);   /* NULL if out of range */
uint64_t wpz_list_file_size(const wpz_list *l, size_t i);
/* Every tensor of every .wpk, in the index's order (file by file, each in
 * directory order). */
size_t wpz_list_count(const wpz_list *l);
const wpz_list_tensor *wpz_list_tensor_at(const wpz_list *l, size_t i);   /* NULL if out of range */

/* What the file at PATH is, from its first 8 bytes (the magic), whatever its
 * name: a .wpk container, a .wpkz archive, or anything else (also a
 * directory, or a file that cannot be read: the caller's open says why).
 * Nothing else is checked: open it to use it. */
typedef enum wpz_file_kind { WPZ_FILE_OTHER = 0, WPZ_FILE_WPK = 1, WPZ_FILE_WPKZ = 2 } wpz_file_kind;
wpz_file_kind wpz_sniff(const char *path);

#endif
