/*
 * wpkz_internal.h — what format/pack.c (pack) and format/unpack.c (unpack,
 * extraction, stat) share: the on-disk records of a .wpkz (docs/format.md
 * §3) and the decoded index.  Private to format/.
 */
#ifndef WP_WPKZ_INTERNAL_H
#define WP_WPKZ_INTERNAL_H

#include <assert.h>
#include <pthread.h>
#include <stdint.h>

#include "format/pack.h"
#include "format/wpk_internal.h"

#define WPZ_MAGIC "\x89WPZ\r\n\x1a\n"
#define WPZ_END_MAGIC "WPZ-END\0"
#define WPZ_MAX_FILES 4096u
#define WPZ_MAX_TENSORS (1u << 20)
#define WPZ_MAX_FRAMES (1u << 24)
#define WPZ_MAX_STR (1u << 28)
#define WPZ_MAX_FRAME_RAW (1ull << 30)
/* Restored bytes no frame covers (.wpk alignment padding, restored as zeros
 * and hashed): each run shorter than the largest .wpk alignment, and all of
 * them together at most WPZ_MAX_PAD_RATIO bytes per byte of the archive --
 * twice zstd's own best ratio (an RLE block: 128 KiB from 4 bytes), so no
 * archive makes unpack hash more zeros than storing them would have. */
#define WPZ_MAX_ALIGN (1ull << 30)
#define WPZ_MAX_PAD_RATIO 65536u

typedef struct zprefix {
    uint8_t magic[8];
    uint16_t version_major, version_minor;
    uint32_t endian;
    uint8_t reserved[48];
} zprefix;
static_assert(sizeof(zprefix) == 64, "format.md §3.1");

typedef struct zfooter {
    uint64_t index_offset, index_size;
    uint8_t index_sha256[32];
    uint8_t reserved[8];
    uint8_t magic[8];
} zfooter;
static_assert(sizeof(zfooter) == 64, "format.md §3.1");

typedef struct zindex_hdr {
    uint32_t file_count, tensor_count;
    uint64_t frame_count, str_size;
    uint8_t reserved[40];
} zindex_hdr;
static_assert(sizeof(zindex_hdr) == 64, "format.md §3.2");

typedef struct zfile_rec {
    wpk_ref name;
    uint64_t size, first_frame, frame_count;
    uint8_t sha256[32];
    uint8_t reserved[24];
} zfile_rec;
static_assert(sizeof(zfile_rec) == 96, "format.md §3.2");

typedef struct ztensor_rec {
    wpk_ref name;
    uint32_t file;
    uint16_t enc, reserved1;
    uint64_t offset, size;
    uint8_t sha256[32];
    uint64_t first_frame, frame_count;
    uint8_t reserved2[8];
} ztensor_rec;
static_assert(sizeof(ztensor_rec) == 96, "format.md §3.2");

typedef struct zframe_rec {
    uint64_t comp_offset, comp_size, raw_offset, raw_size;
} zframe_rec;
static_assert(sizeof(zframe_rec) == 32, "format.md §3.2");

/* The decoded index (pack builds one, unpack reads one). */
typedef struct zindex {
    zfile_rec *files;
    size_t nf, capf;
    ztensor_rec *tens;
    size_t nt, capt;
    zframe_rec *frames;
    size_t nfr, capfr;
    char *str;
    size_t str_len, str_cap;
} zindex;

void wpz_index_free(zindex *x);
static inline const char *zname(const zindex *x, wpk_ref r) { return x->str + r.off; }
/* Attribute every frame of x to a class (encoding, "header", "other") and
 * fill st; archive_size is the whole .wpkz. */
int wpz_fill_stats(const zindex *x, uint64_t archive_size, wpz_stats *st, wp_err *e);
/* Open WPKZ and read its index with every check of docs/format.md §3.1-3.2
 * (unpack.c); on success *fd (open, the caller closes it), *size (the
 * archive's bytes) and *x (free with wpz_index_free) are the caller's. */
int wpz_index_open(const char *wpkz, int *fd, uint64_t *size, zindex *x, wp_err *e);

/* ---- the ordered frame pipeline (wpkz_pool.c) -------------------------------------
 * The calling thread takes the next free slot (wpz_pool_slot; NULL when
 * nslots frames are in flight: retire the oldest first), fills it and
 * submits it; workers run ops->work on it in any order; the calling thread
 * takes frames back strictly in submission order (wpz_pool_oldest, then
 * wpz_pool_release).  Buffers stay with their slot between uses. */
typedef struct wpz_job {
    uint8_t *in, *out;       /* owned by the slot; grown with wpz_job_reserve */
    size_t in_cap, out_cap;
    size_t in_len, out_len;
    uint64_t frame;          /* the caller's: frame index */
    uint64_t raw_off;        /* the caller's: raw offset of the frame */
    int mode;                /* the caller's */
    uint64_t seq[2];         /* the caller's: pack's digest-chain positions */
    int state;               /* the pool's */
    int rc;                  /* set by work: 0 or a WP_E* code with e */
    wp_err e;
} wpz_job;

typedef struct wpz_pool_ops {
    void *(*tls_new)(void *ctx);                    /* per worker thread (may return NULL) */
    void (*tls_free)(void *tls);
    void (*work)(void *ctx, void *tls, wpz_job *j); /* on a worker thread */
} wpz_pool_ops;

typedef struct wpz_pool wpz_pool;
/* threads <= 0 (or none could start): work runs at submit on the calling thread. */
int wpz_pool_start(wpz_pool **p, int threads, size_t nslots, const wpz_pool_ops *ops, void *ctx, wp_err *e);
int wpz_pool_threads(const wpz_pool *p);
wpz_job *wpz_pool_slot(wpz_pool *p);
void wpz_pool_submit(wpz_pool *p, wpz_job *j);
wpz_job *wpz_pool_oldest(wpz_pool *p);   /* NULL when nothing is in flight */
void wpz_pool_release(wpz_pool *p);
void wpz_pool_stop(wpz_pool *p);         /* joins the workers, frees every slot; p may be NULL */
/* Make *buf hold at least need bytes (contents not kept); when it must grow,
 * to `most` (the largest the caller will ask of this slot) if that is more.
 * -1 if out of memory. */
int wpz_job_reserve(uint8_t **buf, size_t *cap, size_t need, size_t most);

/* ---- the digest chains (wpkz_pool.c) -----------------------------------------------
 * A SHA-256 that must see bytes in order (a file's digest, a tensor's) is
 * one sequential chain, independent of the compression and of the writes,
 * so it runs on a thread of its own, in frame order, over the frame buffers
 * in the pipeline's slots.  Pack runs two (the file digest and each
 * tensor's, checked against the .wpk directory), unpack one (each restored
 * file's).  A slot is reused only once its chains have passed it (the
 * caller waits on the positions wpz_chain_push returned).  Unthreaded
 * (--threads 0) the ops run at push, on the calling thread. */
enum { WPZ_OP_UPDATE, WPZ_OP_ZEROS, WPZ_OP_CHECK };
typedef struct wpz_chain_op {
    int kind;
    const uint8_t *p;       /* WPZ_OP_UPDATE: bytes (in a slot, or static) */
    size_t n;               /* WPZ_OP_UPDATE, WPZ_OP_ZEROS: length */
    wp_sha256 h;            /* the digest fed (WPZ_OP_CHECK: finalised, compared) */
    uint8_t want[32];       /* WPZ_OP_CHECK */
    char *msg;              /* WPZ_OP_CHECK: the failure message (malloc'd) */
} wpz_chain_op;

#define WPZ_CHAIN_OPS 256
typedef struct wpz_chain {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    wpz_chain_op ops[WPZ_CHAIN_OPS];
    uint64_t head, tail;    /* ops done, ops pushed */
    int quit, threaded;
    pthread_t tid;
    int rc;                 /* first WPZ_OP_CHECK mismatch: WP_EVERIFY, msg */
    char *msg;
} wpz_chain;

void wpz_chain_start(wpz_chain *c, int threaded);
/* Queue op (run it now when unthreaded); returns the position to wait for. */
uint64_t wpz_chain_push(wpz_chain *c, const wpz_chain_op *op);
/* Wait until the first `upto` ops are done; the chain's failure (a
 * WPZ_OP_CHECK mismatch), if any, into e. */
int wpz_chain_wait(wpz_chain *c, uint64_t upto, wp_err *e);
int wpz_chain_drain(wpz_chain *c, wp_err *e);   /* every op pushed so far */
void wpz_chain_stop(wpz_chain *c);              /* every op done, the thread joined */

/* ---- write-behind (wpkz_pool.c) ----------------------------------------------------
 * An output written front to back is handed to the kernel's write-back in
 * steps of WPZ_WB_STEP bytes (sync_file_range SYNC_FILE_RANGE_WRITE: start
 * writing, do not wait), so the disk works while the pipeline does and the
 * fsync before the output is named finds little still dirty.  Only a hint:
 * nothing waits on it and its failure changes nothing (a write error is
 * reported by the fsync at commit, as before).  Durability is unchanged:
 * every output is still fsynced before it is renamed (wp_out). */
#define WPZ_WB_STEP ((uint64_t)8 << 20)
typedef struct wpz_wb {
    uint64_t from;          /* bytes before this were handed to write-back */
} wpz_wb;
/* Bytes [0, upto) of fd are written: start write-back of what is new once
 * a step has accumulated. */
void wpz_writebehind(wpz_wb *w, int fd, uint64_t upto);

#endif
