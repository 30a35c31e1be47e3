/*
 * wpk_internal.h — the .wpk on-disk structures (docs/format.md §2) and the
 * one validator that both the reader and the writer run.  Private to
 * format/; other modules include format/wpk.h.
 */
#ifndef WP_WPK_INTERNAL_H
#define WP_WPK_INTERNAL_H

#include <assert.h>
#include <stddef.h>
#include <stdint.h>

#include "format/wpk.h"

/* The structures below are the file's bytes on a little-endian host; the
 * fields are naturally aligned so there is no compiler padding, and the
 * static_asserts pin every offset docs/format.md states. */
#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "wpack's container code assumes a little-endian host"
#endif

#define WPK_MAGIC "\x89WPK\r\n\x1a\n"
#define WPK_ENDIAN_TAG 0x0A0B0C0Du
#define WPK_HEADER_SIZE 256u
#define WPK_ENTRY_SIZE 256u
#define WPK_MAX_SOURCES (1u << 24)
#define WPK_MAX_STRINGS (1u << 28)
#define WPK_ALIGN_LOG2_MIN 12u
#define WPK_ALIGN_LOG2_MAX 30u
#define WPK_FLAG_STACKED 1u
#define WPK_CODE_RAW 0x100u   /* raw dtype k is code 0x100 + k */

typedef struct wpk_ref {
    uint64_t off, len;
} wpk_ref;

typedef struct wpk_hdr {
    uint8_t magic[8];
    uint16_t version_major, version_minor;
    uint32_t endian;
    uint32_t header_size;
    uint32_t flags;
    uint32_t align_log2;
    uint32_t entry_size;
    uint64_t tensor_count;
    uint64_t dir_offset, dir_size;
    uint64_t src_offset, src_count;
    uint64_t str_offset, str_size;
    uint64_t data_offset;
    uint64_t file_size;
    wpk_ref model_json, profile_json, provenance_json;
    uint32_t part_index, part_count;
    uint8_t header_sha256[32];
    uint8_t reserved[64];
} wpk_hdr;
static_assert(sizeof(wpk_hdr) == WPK_HEADER_SIZE, "header is 256 bytes");
static_assert(offsetof(wpk_hdr, tensor_count) == 32, "format.md §2.1");
static_assert(offsetof(wpk_hdr, model_json) == 104, "format.md §2.1");
static_assert(offsetof(wpk_hdr, part_index) == 152, "format.md §2.1");
static_assert(offsetof(wpk_hdr, header_sha256) == 160, "format.md §2.1");

typedef struct wpk_dirent {
    uint64_t name_off;
    uint32_t name_len;
    uint16_t enc;
    uint8_t ndim;
    uint8_t flags;
    uint64_t shape[8];
    uint64_t offset, size;
    uint64_t expert_stride;
    uint32_t scale_index, global_index;
    uint32_t block_rows, block_cols;
    uint8_t scale_fmt;
    uint8_t reserved1[3];
    uint32_t src_count;
    uint64_t src_first;
    uint32_t owner_index;
    uint32_t reserved2;
    uint8_t sha256[32];
    uint8_t reserved3[80];
} wpk_dirent;
static_assert(sizeof(wpk_dirent) == WPK_ENTRY_SIZE, "entry is 256 bytes");
static_assert(offsetof(wpk_dirent, shape) == 16, "format.md §2.2");
static_assert(offsetof(wpk_dirent, offset) == 80, "format.md §2.2");
static_assert(offsetof(wpk_dirent, scale_index) == 104, "format.md §2.2");
static_assert(offsetof(wpk_dirent, scale_fmt) == 120, "format.md §2.2");
static_assert(offsetof(wpk_dirent, src_count) == 124, "format.md §2.2");
static_assert(offsetof(wpk_dirent, owner_index) == 136, "format.md §2.2");
static_assert(offsetof(wpk_dirent, sha256) == 144, "format.md §2.2");
static_assert(sizeof(wp_dtype) <= 4 && WP_DTYPE_COUNT == 19, "format.md §2.3 raw table has 19 dtypes");

/* The decoded header region of a container: what wpk_parse fills.  Strings
 * point into the region passed to wpk_parse. */
typedef struct wpk_parsed {
    wpk_hdr hdr;
    size_t n;
    wpk_tensor *t;            /* n entries */
    const char **srcs;        /* hdr.src_count names */
    uint32_t *sorted;         /* indices sorted by name */
    const char *model, *profile, *prov;
} wpk_parsed;

enum { WPK_PARSE_NO_DIGEST = 1 };   /* writer, before digests exist */

/* Validate the header region [0, len) of a container whose total size is
 * `file_size` (docs/format.md §2.6, structural).  On success fills *p (free
 * with wpk_parsed_free).  Errors are "PATH: [NAME: ]rule". */
int wpk_parse(const uint8_t *region, uint64_t len, uint64_t file_size, const char *path,
              unsigned flags, wpk_parsed *p, wp_err *e);
void wpk_parsed_free(wpk_parsed *p);
/* SHA-256 of region [0, data_offset) with the header_sha256 field as zeros. */
int wpk_header_digest(const uint8_t *region, uint64_t data_offset, uint8_t out[32], wp_err *e);
/* The on-disk code of a kind/encoding/dtype (docs/format.md §2.3). */
unsigned wpk_code_of(wpk_kind kind, wp_enc enc, wp_dtype dtype);
/* Bits per element of a raw dtype (BOOL = 8). */
unsigned wpk_dtype_bits(wp_dtype t);
/* A ref into a string area of str_size bytes: NULL if it is in range,
 * NUL-terminated and free of inner NULs, else why not. */
const char *wpk_ref_problem(const uint8_t *str, uint64_t str_size, wpk_ref r);
/* The rule a tensor or source name must follow; NULL if ok, else why not. */
const char *wpk_name_problem(const char *s, size_t len);

/* Hugepages state is kept in the reader (format/hugepages.c sets it). */
void wpk_set_data_base(wpk_file *f, const uint8_t *base, void *owned, uint64_t owned_size,
                       void (*release)(void *, uint64_t));

#endif
