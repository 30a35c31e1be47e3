/*
 * unpack.c — reading the .wpkz shipping form (docs/format.md §3): restoring
 * a build, extracting one tensor, listing the index.
 *
 * The footer, the index digest and every index rule are checked before
 * anything is written; frames are decompressed in bounded buffers and each
 * restored file is hashed as it is written and compared with its record.
 * A restored build is an output directory written once (common/outdir.h):
 * it appears at OUT only when every file checked out.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <zstd.h>

#include "common/outdir.h"
#include "format/wpkz_internal.h"

/* ---- reading a .wpkz ------------------------------------------------------------ */

typedef struct zarch {
    const char *path;
    int fd;
    uint64_t size;
    uint64_t index_offset;
    zindex x;
} zarch;

static void zarch_close(zarch *a)
{
    if (a->fd >= 0) close(a->fd);
    a->fd = -1;
    wpz_index_free(&a->x);
}

static int zero_bytes(const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (p[i]) return 0;
    return 1;
}

#define ZFAIL(...) wp_fail(e, WP_EINVAL, __VA_ARGS__)

/* Bytes [from, to) of a restored file that no frame covers (docs/format.md
 * §3.2): none in a file that is not a .wpk (pack stores all of it); in a
 * .wpk only alignment padding, which ends where a tensor starts (a multiple
 * of the file's alignment, a power of two <= 2^30) and is shorter than that
 * alignment.  NULL when allowed, else the rule. */
static const char *zgap_problem(int wpk, uint64_t from, uint64_t to)
{
    if (to == from) return NULL;
    if (!wpk) return "only a .wpk file has padding";
    uint64_t lowbit = to & (~to + 1);   /* the largest power of two dividing `to` */
    if (to - from >= WPZ_MAX_ALIGN || to - from >= lowbit)
        return "longer than alignment padding can be (a power of two <= 2^30 dividing its end)";
    return NULL;
}

/* The record rules of docs/format.md §3.2, before any frame is touched. */
static int zindex_check(const zarch *a, wp_err *e)
{
    const char *path = a->path;
    const zindex *x = &a->x;
    const uint8_t *str = (const uint8_t *)x->str;
    const char *why;
    if (x->str_len && str[x->str_len - 1])
        return ZFAIL("%s: index string area does not end with NUL", path);
    /* Frames are back to back from byte 64 up to the index. */
    uint64_t at = sizeof(zprefix);
    for (size_t k = 0; k < x->nfr; k++) {
        const zframe_rec *f = &x->frames[k];
        if (f->comp_offset != at || f->comp_size == 0 || f->comp_size > a->index_offset - at)
            return ZFAIL("%s: frame %zu: compressed bytes [%llu, +%llu) are not where the previous "
                         "frame ended (%llu) or run past the index", path, k,
                         (unsigned long long)f->comp_offset, (unsigned long long)f->comp_size,
                         (unsigned long long)at);
        if (f->raw_size == 0 || f->raw_size > WPZ_MAX_FRAME_RAW)
            return ZFAIL("%s: frame %zu: raw size %llu outside [1, 2^30]", path, k,
                         (unsigned long long)f->raw_size);
        at += f->comp_size;
    }
    if (at != a->index_offset)
        return ZFAIL("%s: %llu bytes between the last frame and the index", path,
                     (unsigned long long)(a->index_offset - at));
    uint64_t next_frame = 0, padding = 0;
    for (size_t i = 0; i < x->nf; i++) {
        const zfile_rec *f = &x->files[i];
        if ((why = wpk_ref_problem(str, x->str_len, f->name)))
            return ZFAIL("%s: file record %zu: name %s", path, i, why);
        const char *nm = zname(x, f->name);
        if ((why = wpk_name_problem(nm, f->name.len)) || f->name.len > 255 || strchr(nm, '/') ||
            !strcmp(nm, ".") || !strcmp(nm, ".."))
            return ZFAIL("%s: file record %zu: not a plain file name (%s)", path, i,
                         why ? why : "'/', '.', '..' or longer than 255 bytes");
        for (size_t j = 0; j < i; j++)
            if (!strcmp(nm, zname(x, x->files[j].name)))
                return ZFAIL("%s: %s: file listed twice", path, nm);
        if (!zero_bytes(f->reserved, sizeof f->reserved))
            return ZFAIL("%s: %s: reserved bytes are not zero", path, nm);
        if (f->first_frame != next_frame || f->frame_count > x->nfr - next_frame)
            return ZFAIL("%s: %s: frames [%llu, +%llu) are not the next ones (%llu of %zu)", path,
                         nm, (unsigned long long)f->first_frame, (unsigned long long)f->frame_count,
                         (unsigned long long)next_frame, x->nfr);
        /* The size is bounded by what the frames fill: a gap (bytes no frame
         * covers, restored as zeros) is only a .wpk's alignment padding. */
        const int wpk = wp_str_ends_with(nm, ".wpk");
        uint64_t end = 0;
        for (uint64_t k = f->first_frame; k <= f->first_frame + f->frame_count; k++) {
            const int tail = k == f->first_frame + f->frame_count;
            const zframe_rec *fr = tail ? NULL : &x->frames[k];
            uint64_t at = tail ? f->size : fr->raw_offset;
            if (!tail && (fr->raw_offset < end || fr->raw_offset > f->size ||
                          fr->raw_size > f->size - fr->raw_offset))
                return ZFAIL("%s: %s: frame %llu: raw bytes [%llu, +%llu) overlap or leave the "
                             "file (%llu bytes)", path, nm, (unsigned long long)k,
                             (unsigned long long)fr->raw_offset, (unsigned long long)fr->raw_size,
                             (unsigned long long)f->size);
            if ((why = zgap_problem(wpk, end, at)))
                return ZFAIL("%s: %s: size %llu bytes, but bytes [%llu, %llu) are in no frame: %s",
                             path, nm, (unsigned long long)f->size, (unsigned long long)end,
                             (unsigned long long)at, why);
            padding += at - end;
            if (!tail) end = fr->raw_offset + fr->raw_size;
        }
        next_frame += f->frame_count;
    }
    if (padding / WPZ_MAX_PAD_RATIO > a->size)
        return ZFAIL("%s: the files' %llu bytes of zero padding exceed %u bytes per byte of the "
                     "%llu-byte archive", path, (unsigned long long)padding, WPZ_MAX_PAD_RATIO,
                     (unsigned long long)a->size);
    if (next_frame != x->nfr)
        return ZFAIL("%s: %llu frames belong to no file", path, (unsigned long long)(x->nfr - next_frame));
    for (size_t i = 0; i < x->nt; i++) {
        const ztensor_rec *t = &x->tens[i];
        if ((why = wpk_ref_problem(str, x->str_len, t->name)) ||
            (why = wpk_name_problem(zname(x, t->name), t->name.len)))
            return ZFAIL("%s: tensor record %zu: name %s", path, i, why);
        const char *nm = zname(x, t->name);
        if (t->file >= x->nf) return ZFAIL("%s: %s: file %u out of %zu", path, nm, t->file, x->nf);
        if (!wpk_code_name(t->enc)) return ZFAIL("%s: %s: unknown encoding code %u", path, nm, t->enc);
        if (t->reserved1 || !zero_bytes(t->reserved2, sizeof t->reserved2))
            return ZFAIL("%s: %s: reserved bytes are not zero", path, nm);
        const zfile_rec *f = &x->files[t->file];
        if (t->offset > f->size || t->size > f->size - t->offset)
            return ZFAIL("%s: %s: bytes [%llu, +%llu) past the end of %s (%llu bytes)", path, nm,
                         (unsigned long long)t->offset, (unsigned long long)t->size,
                         zname(x, f->name), (unsigned long long)f->size);
        if (t->first_frame < f->first_frame || t->first_frame > f->first_frame + f->frame_count ||
            t->frame_count > f->first_frame + f->frame_count - t->first_frame)
            return ZFAIL("%s: %s: frames [%llu, +%llu) are not frames of %s", path, nm,
                         (unsigned long long)t->first_frame, (unsigned long long)t->frame_count,
                         zname(x, f->name));
        uint64_t pos = t->offset;
        for (uint64_t k = t->first_frame; k < t->first_frame + t->frame_count; k++) {
            if (x->frames[k].raw_offset != pos)
                return ZFAIL("%s: %s: frame %llu starts at %llu, expected %llu", path, nm,
                             (unsigned long long)k, (unsigned long long)x->frames[k].raw_offset,
                             (unsigned long long)pos);
            pos += x->frames[k].raw_size;
        }
        if (pos != t->offset + t->size)
            return ZFAIL("%s: %s: frames cover [%llu, %llu), the tensor is [%llu, %llu)", path, nm,
                         (unsigned long long)t->offset, (unsigned long long)pos,
                         (unsigned long long)t->offset, (unsigned long long)(t->offset + t->size));
    }
    return 0;
}

static int zarch_open(zarch *a, const char *path, wp_err *e)
{
    memset(a, 0, sizeof *a);
    a->path = path;
    a->fd = wp_open_read(path, e);
    struct stat st;
    if (a->fd < 0 || fstat(a->fd, &st) != 0) return wp_fail_errno(e, "%s: cannot open", path);
    a->size = (uint64_t)st.st_size;
    if (a->size < sizeof(zprefix) + sizeof(zfooter))
        return ZFAIL("%s: truncated: %llu bytes, less than prefix + footer", path,
                     (unsigned long long)a->size);
    zprefix pre;
    zfooter ft;
    int rc = wp_pread_full(a->fd, &pre, sizeof pre, 0, path, e);
    if (!rc) rc = wp_pread_full(a->fd, &ft, sizeof ft, a->size - sizeof ft, path, e);
    if (rc) return rc;
    if (memcmp(pre.magic, WPZ_MAGIC, 8)) return ZFAIL("%s: not a .wpkz archive (bad magic)", path);
    if (pre.endian != WPK_ENDIAN_TAG) return ZFAIL("%s: endianness tag 0x%08x, expected 0x%08x", path, pre.endian, WPK_ENDIAN_TAG);
    if (pre.version_major != 1)
        return ZFAIL("%s: .wpkz version %u.%u, this reader reads 1.x", path, pre.version_major, pre.version_minor);
    if (!zero_bytes(pre.reserved, sizeof pre.reserved)) return ZFAIL("%s: reserved prefix bytes are not zero", path);
    if (memcmp(ft.magic, WPZ_END_MAGIC, 8))
        return ZFAIL("%s: no footer (truncated, or not a complete .wpkz)", path);
    if (!zero_bytes(ft.reserved, sizeof ft.reserved)) return ZFAIL("%s: reserved footer bytes are not zero", path);
    uint64_t end;
    if (ft.index_offset < sizeof pre || wp_add_u64(ft.index_offset, ft.index_size, &end) ||
        end != a->size - sizeof ft || ft.index_size < sizeof(zindex_hdr))
        return ZFAIL("%s: index [%llu, +%llu) does not end at the footer (file has %llu bytes)", path,
                     (unsigned long long)ft.index_offset, (unsigned long long)ft.index_size,
                     (unsigned long long)a->size);
    a->index_offset = ft.index_offset;
    uint8_t *idx = malloc((size_t)ft.index_size);
    if (!idx) return wp_oom(e, "the .wpkz index");
    uint8_t dg[32];
    rc = wp_pread_full(a->fd, idx, (size_t)ft.index_size, ft.index_offset, path, e);
    if (!rc) rc = wp_sha256_buf(idx, (size_t)ft.index_size, dg, e);
    if (!rc && memcmp(dg, ft.index_sha256, 32))
        rc = wp_fail(e, WP_EVERIFY, "%s: index digest mismatch in bytes [%llu, %llu)", path,
                     (unsigned long long)ft.index_offset, (unsigned long long)end);
    zindex_hdr h;
    if (!rc) {
        memcpy(&h, idx, sizeof h);
        uint64_t want = sizeof h + 96ull * h.file_count + 96ull * h.tensor_count;
        if (h.file_count > WPZ_MAX_FILES || h.tensor_count > WPZ_MAX_TENSORS ||
            h.frame_count > WPZ_MAX_FRAMES || h.str_size > WPZ_MAX_STR || !zero_bytes(h.reserved, sizeof h.reserved))
            rc = ZFAIL("%s: index counts out of range (%u files, %u tensors, %llu frames, %llu string bytes)",
                       path, h.file_count, h.tensor_count, (unsigned long long)h.frame_count,
                       (unsigned long long)h.str_size);
        else if (want + 32 * h.frame_count + h.str_size != ft.index_size)
            rc = ZFAIL("%s: index is %llu bytes, its counts need %llu", path,
                       (unsigned long long)ft.index_size,
                       (unsigned long long)(want + 32 * h.frame_count + h.str_size));
    }
    if (!rc) {
        zindex *x = &a->x;
        x->nf = h.file_count, x->nt = h.tensor_count, x->nfr = (size_t)h.frame_count;
        x->str_len = (size_t)h.str_size;
        x->files = calloc(x->nf + 1, sizeof *x->files);
        x->tens = calloc(x->nt + 1, sizeof *x->tens);
        x->frames = calloc(x->nfr + 1, sizeof *x->frames);
        x->str = calloc(x->str_len + 1, 1);
        if (!x->files || !x->tens || !x->frames || !x->str) {
            rc = wp_oom(e, "the .wpkz index");
        } else {
            const uint8_t *p = idx + sizeof h;
            memcpy(x->files, p, 96 * x->nf), p += 96 * x->nf;
            memcpy(x->tens, p, 96 * x->nt), p += 96 * x->nt;
            memcpy(x->frames, p, 32 * x->nfr), p += 32 * x->nfr;
            memcpy(x->str, p, x->str_len);
        }
    }
    free(idx);
    if (!rc) rc = zindex_check(a, e);
    return rc;
}

/* Where decompressed bytes go. */
typedef int (*zsink)(void *ud, const uint8_t *p, size_t n, uint64_t raw_off, wp_err *e);

typedef struct zdec {
    ZSTD_DCtx *d;
    uint8_t *ibuf, *obuf;
    size_t isz, osz;
} zdec;

static int zdec_init(zdec *z, wp_err *e)
{
    z->d = ZSTD_createDCtx();
    z->isz = ZSTD_DStreamInSize();
    z->osz = ZSTD_DStreamOutSize();
    z->ibuf = malloc(z->isz);
    z->obuf = malloc(z->osz);
    if (!z->d || !z->ibuf || !z->obuf) return wp_oom(e, "zstd decompression buffers");
    return 0;
}

static void zdec_free(zdec *z)
{
    ZSTD_freeDCtx(z->d);
    free(z->ibuf);
    free(z->obuf);
}

/* Decompress frame k, checking its content size and that it is exactly one
 * complete frame (the zstd checksum is checked by the decoder). */
static int unpack_frame(const zarch *a, zdec *z, size_t k, zsink sink, void *ud, wp_err *e)
{
    const zframe_rec *fr = &a->x.frames[k];
    uint8_t hb[18];   /* ZSTD_FRAMEHEADERSIZE_MAX */
    size_t hn = fr->comp_size < sizeof hb ? (size_t)fr->comp_size : sizeof hb;
    int rc = wp_pread_full(a->fd, hb, hn, fr->comp_offset, a->path, e);
    if (rc) return rc;
    unsigned long long cs = ZSTD_getFrameContentSize(hb, hn);
    if (cs != fr->raw_size)
        return wp_fail(e, WP_EVERIFY, "%s: frame %zu (bytes [%llu, %llu)): zstd header %s, index says %llu bytes",
                       a->path, k, (unsigned long long)fr->comp_offset,
                       (unsigned long long)(fr->comp_offset + fr->comp_size),
                       cs == ZSTD_CONTENTSIZE_ERROR ? "is corrupt" : cs == ZSTD_CONTENTSIZE_UNKNOWN ? "has no content size" : "disagrees",
                       (unsigned long long)fr->raw_size);
    ZSTD_DCtx_reset(z->d, ZSTD_reset_session_only);
    uint64_t consumed = 0, produced = 0;
    size_t ret = 1;
#define ZBAD(what) wp_fail(e, WP_EVERIFY, "%s: frame %zu (bytes [%llu, %llu)): %s", a->path, k, \
        (unsigned long long)fr->comp_offset, (unsigned long long)(fr->comp_offset + fr->comp_size), what)
    while (consumed < fr->comp_size) {
        size_t n = fr->comp_size - consumed < z->isz ? (size_t)(fr->comp_size - consumed) : z->isz;
        if ((rc = wp_pread_full(a->fd, z->ibuf, n, fr->comp_offset + consumed, a->path, e))) return rc;
        consumed += n;
        ZSTD_inBuffer in = {z->ibuf, n, 0};
        while (in.pos < in.size) {
            if (ret == 0) return ZBAD("bytes after the end of the zstd frame");
            ZSTD_outBuffer ob = {z->obuf, z->osz, 0};
            ret = ZSTD_decompressStream(z->d, &ob, &in);
            if (ZSTD_isError(ret)) return ZBAD(ZSTD_getErrorName(ret));
            if (ob.pos > fr->raw_size - produced) return ZBAD("decompresses to more than its size");
            if (ob.pos && (rc = sink(ud, z->obuf, ob.pos, fr->raw_offset + produced, e))) return rc;
            produced += ob.pos;
        }
    }
    while (ret != 0) {   /* output still buffered in the decoder */
        ZSTD_inBuffer in = {NULL, 0, 0};
        ZSTD_outBuffer ob = {z->obuf, z->osz, 0};
        ret = ZSTD_decompressStream(z->d, &ob, &in);
        if (ZSTD_isError(ret)) return ZBAD(ZSTD_getErrorName(ret));
        if (ob.pos == 0 && ret != 0) return ZBAD("truncated zstd frame");
        if (ob.pos > fr->raw_size - produced) return ZBAD("decompresses to more than its size");
        if (ob.pos && (rc = sink(ud, z->obuf, ob.pos, fr->raw_offset + produced, e))) return rc;
        produced += ob.pos;
    }
    if (produced != fr->raw_size) return ZBAD("decompresses to fewer bytes than its size");
#undef ZBAD
    return 0;
}

typedef struct fsink {
    wp_out *out;
    wp_sha256 h;
    uint64_t hashed;        /* file bytes hashed so far */
    int sequential;         /* extraction: append; unpack: pwrite at raw_off */
    uint64_t base;          /* extraction: the tensor's offset in its file */
    const wpz_opts *o;
    uint64_t *done, total;
    wpz_wb *wb;             /* unpack: write-behind of the restored file */
} fsink;

static int file_sink(void *ud, const uint8_t *p, size_t n, uint64_t raw_off, wp_err *e)
{
    fsink *s = ud;
    if (raw_off > s->hashed) wp_sha256_zeros(&s->h, raw_off - s->hashed);   /* zero padding */
    wp_sha256_update(&s->h, p, n);
    s->hashed = raw_off + n;
    int rc = s->sequential ? wp_out_write(s->out, p, n, e)
                           : wp_out_pwrite(s->out, p, n, raw_off - s->base, e);
    if (!rc && s->wb) wpz_writebehind(s->wb, s->out->fd, raw_off - s->base + n);
    if (!rc && s->done) {
        *s->done += n;
        if (s->o && s->o->progress) s->o->progress(s->o->ud, "unpack", *s->done, s->total);
    }
    return rc;
}

int wpz_stat(const char *wpkz, wpz_stats *stats, wp_err *e)
{
    zarch a;
    int rc = zarch_open(&a, wpkz, e);
    if (!rc) rc = wpz_fill_stats(&a.x, a.size, stats, e);
    zarch_close(&a);
    return rc;
}

/* ---- parallel decoding (unpack) ------------------------------------------------------
 * Frames that pack makes (raw <= WPZ_CHUNK, compressed within zstd's bound)
 * are read and decoded whole by the pool's workers, several at a time; the
 * calling thread hashes and writes them strictly in order.  Anything else,
 * and any frame the fast path does not accept, is decoded by the streaming
 * path above on the calling thread: its messages are the ones reported, so
 * a damaged archive reads the same with any thread count. */
enum { M_FAST, M_STREAM };

static void *dtls_new(void *ctx)
{
    (void)ctx;
    return ZSTD_createDCtx();
}

static void dtls_free(void *tls) { ZSTD_freeDCtx(tls); }

static void decode_work(void *ctx, void *tls, wpz_job *j)
{
    const zarch *a = ctx;
    ZSTD_DCtx *d = tls;
    if (j->mode != M_FAST) return;
    const zframe_rec *fr = &a->x.frames[j->frame];
    size_t cn = (size_t)fr->comp_size, rn = (size_t)fr->raw_size;
    j->rc = WP_EVERIFY;   /* until it checks out */
    if (!d || wpz_job_reserve(&j->in, &j->in_cap, cn, ZSTD_compressBound(WPZ_CHUNK)) ||
        wpz_job_reserve(&j->out, &j->out_cap, rn, WPZ_CHUNK)) return;
    wp_err ie = {0};
    if (wp_pread_full(a->fd, j->in, cn, fr->comp_offset, a->path, &ie)) return;
    /* exactly one frame, of the indexed size, with a window the streaming
     * decoder would accept too */
    if (cn < 6 || ZSTD_getFrameContentSize(j->in, cn) != fr->raw_size ||
        ZSTD_findFrameCompressedSize(j->in, cn) != cn)
        return;
    const uint8_t *b = j->in;
    if ((b[0] | b[1] << 8 | b[2] << 16 | (uint32_t)b[3] << 24) != ZSTD_MAGICNUMBER) return;
    if (!(b[4] & 0x20)) {   /* not single-segment: a window descriptor (RFC 8878 3.1.1.1.2) */
        uint64_t base = 1ull << (10 + (b[5] >> 3)), size = base + (base >> 3) * (b[5] & 7);
        if (size > (1ull << 27)) return;   /* ZSTD_WINDOWLOG_LIMIT_DEFAULT, the streaming limit */
    }
    size_t r = ZSTD_decompressDCtx(d, j->out, rn, j->in, cn);   /* checks the content checksum */
    if (ZSTD_isError(r) || r != rn) return;
    j->out_len = rn;
    j->rc = 0;
}

static int fast_frame(const zframe_rec *fr)
{
    return fr->raw_size <= WPZ_CHUNK && fr->comp_size <= ZSTD_compressBound((size_t)fr->raw_size);
}

#define WRITE_PIECE ((size_t)1 << 20)

/* A frame the pool decoded: its bytes go to the file digest chain (hc) and,
 * in 1 MiB pieces, to the file (one pwrite of a whole 64 MiB frame costs
 * the kernel several times the CPU per byte of small ones, as in pack);
 * the slot is released only once the chain has passed it. */
static int write_frame(fsink *s, wpz_chain *hc, const wpz_job *j, const zframe_rec *fr, wp_err *e)
{
    uint64_t off = fr->raw_offset;
    if (off > s->hashed) wpz_chain_push(hc, &(wpz_chain_op){.kind = WPZ_OP_ZEROS, .n = (size_t)(off - s->hashed), .h = s->h});
    uint64_t seq = wpz_chain_push(hc, &(wpz_chain_op){.kind = WPZ_OP_UPDATE, .p = j->out, .n = j->out_len, .h = s->h});
    s->hashed = off + j->out_len;
    int rc = 0;
    for (size_t o = 0; !rc && o < j->out_len; o += WRITE_PIECE) {
        size_t n = j->out_len - o < WRITE_PIECE ? j->out_len - o : WRITE_PIECE;
        rc = wp_out_pwrite(s->out, j->out + o, n, off + o, e);
    }
    if (!rc) wpz_writebehind(s->wb, s->out->fd, off + j->out_len);
    int rw = wpz_chain_wait(hc, seq, e);
    if (!rc) rc = rw;
    if (!rc) {
        *s->done += j->out_len;
        if (s->o->progress) s->o->progress(s->o->ud, "unpack", *s->done, s->total);
    }
    return rc;
}

int wpz_unpack(const char *wpkz, const char *out, const wpz_opts *o, wpz_stats *stats, wp_err *e)
{
    static const wpz_opts defaults;
    if (!o) o = &defaults;
    zarch a;
    zdec z = {0};
    wp_outdir od = {0};
    wpz_pool *pool = NULL;
    static const wpz_pool_ops ops = {dtls_new, dtls_free, decode_work};
    int rc = zarch_open(&a, wpkz, e);
    if (!rc) rc = zdec_init(&z, e);
    /* threads workers decoding, one frame being hashed and written: at most
     * threads + 1 frames of <= WPZ_CHUNK (+ compressed) bytes in memory */
    if (!rc && o->threads > 0) rc = wpz_pool_start(&pool, o->threads, (size_t)o->threads + 1, &ops, &a, e);
    /* each restored file's SHA-256 on a thread of its own, in frame order,
     * while this thread writes the same frame and the workers decode the
     * next ones */
    wpz_chain hc;
    wpz_chain_start(&hc, pool && wpz_pool_threads(pool) > 0);
    if (!rc) rc = wp_outdir_begin(&od, out, &(wp_outdir_opts){.force = o->force, .kind = WP_OUTDIR_BUILD}, e);
    if (rc) goto done;
    const char *tmp = wp_outdir_tmp(&od);
    uint64_t total = 0, done_bytes = 0, next = 0;   /* next: the next frame to hand to the pool */
    for (size_t i = 0; i < a.x.nf; i++) total += a.x.files[i].size;
    for (size_t i = 0; i < a.x.nf && !rc; i++) {
        const zfile_rec *f = &a.x.files[i];
        const char *nm = zname(&a.x, f->name);
        char p[4096];
        if (wp_path_join(p, sizeof p, tmp, nm)) {
            rc = wp_fail(e, WP_EUSAGE, "%s/%s: path too long", out, nm);
            break;
        }
        wp_out wo;
        if ((rc = wp_out_open(&wo, p, e))) break;
        wp_out_direct(&wo);   /* frames go forward, padding gaps are small: around the page cache */
        wpz_wb wb = {0};
        fsink s = {.out = &wo, .o = o, .done = &done_bytes, .total = total, .wb = &wb};
        if (ftruncate(wo.fd, (off_t)f->size) != 0) rc = wp_fail_errno(e, "%s: cannot size to %llu bytes", p, (unsigned long long)f->size);
        if (!rc) rc = wp_sha256_init(&s.h, e);
        for (uint64_t k = f->first_frame; !rc && k < f->first_frame + f->frame_count; k++) {
            if (!pool) {
                rc = unpack_frame(&a, &z, (size_t)k, file_sink, &s, e);
                continue;
            }
            wpz_job *j;
            while (next < a.x.nfr && (j = wpz_pool_slot(pool))) {   /* keep the workers busy */
                j->frame = next;
                j->mode = fast_frame(&a.x.frames[next]) ? M_FAST : M_STREAM;
                wpz_pool_submit(pool, j);
                next++;
            }
            j = wpz_pool_oldest(pool);   /* frame k: frames are handed out in order from 0 */
            if (j && j->frame == k && j->mode == M_FAST && !j->rc) {
                rc = write_frame(&s, &hc, j, &a.x.frames[k], e);
            } else {
                /* the streaming decoder hashes on this thread: the chain
                 * first lets go of the digest */
                rc = wpz_chain_drain(&hc, e);
                if (!rc) rc = unpack_frame(&a, &z, (size_t)k, file_sink, &s, e);
            }
            wpz_pool_release(pool);
        }
        {
            int rw = wpz_chain_drain(&hc, e);   /* the digest is this thread's again */
            if (!rc) rc = rw;
        }
        if (!rc) {
            uint8_t d[32];
            wp_sha256_zeros(&s.h, f->size - s.hashed);
            wp_sha256_final(&s.h, d);
            if (memcmp(d, f->sha256, 32)) {
                char want[65], got[65];
                wp_hex(f->sha256, 32, want);
                wp_hex(d, 32, got);
                rc = wp_fail(e, WP_EVERIFY, "%s: %s: restored sha256 %s, the archive recorded %s",
                             wpkz, nm, got, want);
            }
        } else {
            wp_sha256_free(&s.h);
        }
        if (!rc) rc = wp_out_commit(&wo, e);
        else wp_out_abort(&wo);
    }
    if (!rc) rc = wp_outdir_commit(&od, e);
    if (!rc && stats) rc = wpz_fill_stats(&a.x, a.size, stats, e);
done:
    wpz_chain_stop(&hc);    /* before the pool: its ops read the slots */
    wpz_pool_stop(pool);
    wp_outdir_abort(&od);   /* after a commit: nothing to do */
    zdec_free(&z);
    zarch_close(&a);
    return rc;
}


int wpz_extract(const char *wpkz, const char *name, const char *out, const wpz_opts *o, wp_err *e)
{
    static const wpz_opts defaults;
    if (!o) o = &defaults;
    zarch a;
    zdec z = {0};
    int rc = zarch_open(&a, wpkz, e);
    if (!rc) rc = zdec_init(&z, e);
    if (rc) goto done;
    /* NAME, or FILE:NAME when several .wpk files (ranks) hold the name. */
    const ztensor_rec *hit = NULL;
    int hits = 0;
    const char *colon = strchr(name, ':');
    for (size_t i = 0; i < a.x.nt; i++) {
        const ztensor_rec *t = &a.x.tens[i];
        const char *tn = zname(&a.x, t->name), *fn = zname(&a.x, a.x.files[t->file].name);
        int m = !strcmp(tn, name);
        if (!m && colon) m = (size_t)(colon - name) == strlen(fn) && !strncmp(name, fn, strlen(fn)) && !strcmp(tn, colon + 1);
        if (m) hit = t, hits++;
    }
    if (hits != 1) {
        rc = hits ? wp_fail(e, WP_EUSAGE, "%s: %s: in %d files; say FILE:NAME", wpkz, name, hits)
                  : wp_fail(e, WP_EINVAL, "%s: %s: no such tensor", wpkz, name);
        goto done;
    }
    wp_out wo;
    if ((rc = wp_out_create(&wo, out, o->force, e))) goto done;
    fsink s = {.out = &wo, .sequential = 1, .base = hit->offset, .hashed = hit->offset};
    rc = wp_sha256_init(&s.h, e);
    for (uint64_t k = hit->first_frame; !rc && k < hit->first_frame + hit->frame_count; k++)
        rc = unpack_frame(&a, &z, (size_t)k, file_sink, &s, e);
    if (!rc) {
        uint8_t d[32];
        wp_sha256_final(&s.h, d);
        if (memcmp(d, hit->sha256, 32))
            rc = wp_fail(e, WP_EVERIFY, "%s: %s: sha256 mismatch after extraction", wpkz, name);
    } else {
        wp_sha256_free(&s.h);
    }
    if (!rc) rc = wp_out_commit(&wo, e);
    else wp_out_abort(&wo);
done:
    zdec_free(&z);
    zarch_close(&a);
    return rc;
}


/* For format/wpkz_list.c: the index, read and checked exactly as unpack reads
 * it; the descriptor and the index move to the caller. */
int wpz_index_open(const char *wpkz, int *fd, uint64_t *size, zindex *x, wp_err *e)
{
    zarch a;
    int rc = zarch_open(&a, wpkz, e);
    if (rc) {
        zarch_close(&a);
        return rc;
    }
    *fd = a.fd;
    *size = a.size;
    *x = a.x;
    return 0;
}
