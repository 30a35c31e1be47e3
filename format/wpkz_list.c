/*
 * wpkz_list.c — the tensors of a .wpkz, from its index and the header region
 * of each .wpk it holds (format/pack.h; docs/format.md §3.2-3.3 for the records).
 *
 * The index records name, file, encoding code, offset, size and digest of
 * each tensor, not its shape or its stacked experts: those are in the .wpk
 * directory, which pack stores as the first frames of the file (the header
 * region [0, data_offset)).  So listing decompresses those frames only,
 * validates the region exactly as wpk_open does (header digest included) and
 * requires the index's tensor records of that file to be the directory's,
 * entry for entry.  Bounds: the index has every check unpack applies
 * (unpack.c, wpz_index_open); a header region is read up to its data_offset,
 * which may not exceed the file's recorded size, and the buffer grows only as
 * decompressed bytes arrive, so memory follows what the archive really holds,
 * never what a field claims.
 */
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <zstd.h>

#include "format/pack.h"
#include "format/wpkz_internal.h"

typedef struct lfile {
    char *label;             /* "X.wpkz:NAME", for messages and wpk_tensor paths */
    uint8_t *region;         /* the header region (wpk.region) */
    int have;                /* p is filled */
    wpk_parsed p;
} lfile;

struct wpz_list {
    zindex x;
    lfile *files;            /* x.nf */
    wpz_list_tensor *t;      /* x.nt, index order */
    size_t n;
};

#define LFAIL(...) wp_fail(e, WP_EINVAL, __VA_ARGS__)

/* Make room in buf for at least one more step of output: grow by at most
 * 1 MiB past what has arrived, never past need. */
static int room(uint8_t **buf, size_t *cap, uint64_t have, uint64_t need, const char *path, wp_err *e)
{
    if (*cap - have >= (1u << 16) || *cap >= need) return 0;
    uint64_t want = have + (1u << 20);
    if (want > need) want = need;
    uint8_t *v = realloc(*buf, (size_t)want);
    if (!v) return wp_oom(e, "%s: a .wpk header region", path);
    *buf = v;
    *cap = (size_t)want;
    return 0;
}

/* Append the decompressed bytes of frame k to buf[*have, need), growing buf
 * as output arrives; stops at need (the rest of the frame is not read). */
static int read_frame(int fd, const char *path, size_t k, const zframe_rec *fr, ZSTD_DCtx *d,
                      uint8_t *in, size_t isz, uint8_t **buf, size_t *cap, uint64_t *have, uint64_t need,
                      wp_err *e)
{
    uint8_t hb[18];   /* ZSTD_FRAMEHEADERSIZE_MAX */
    size_t hn = fr->comp_size < sizeof hb ? (size_t)fr->comp_size : sizeof hb;
    int rc = wp_pread_full(fd, hb, hn, fr->comp_offset, path, e);
    if (rc) return rc;
    if (ZSTD_getFrameContentSize(hb, hn) != fr->raw_size)
        return wp_fail(e, WP_EVERIFY, "%s: frame %zu: its zstd header disagrees with the index (%llu bytes)",
                       path, k, (unsigned long long)fr->raw_size);
    ZSTD_DCtx_reset(d, ZSTD_reset_session_only);
    uint64_t consumed = 0, produced = 0;
    size_t ret = 1;
    /* input in chunks, then (ib empty) what the decoder still holds */
    while (ret != 0 && *have < need) {
        size_t n = 0;
        if (consumed < fr->comp_size) {
            n = fr->comp_size - consumed < isz ? (size_t)(fr->comp_size - consumed) : isz;
            if ((rc = wp_pread_full(fd, in, n, fr->comp_offset + consumed, path, e))) return rc;
            consumed += n;
        }
        ZSTD_inBuffer ib = {in, n, 0};
        do {
            if ((rc = room(buf, cap, *have, need, path, e))) return rc;
            ZSTD_outBuffer ob = {*buf + *have, *cap - (size_t)*have, 0};
            ret = ZSTD_decompressStream(d, &ob, &ib);
            if (ZSTD_isError(ret))
                return wp_fail(e, WP_EVERIFY, "%s: frame %zu: %s", path, k, ZSTD_getErrorName(ret));
            if (ob.pos > fr->raw_size - produced)
                return wp_fail(e, WP_EVERIFY, "%s: frame %zu: decompresses to more than its size", path, k);
            if (!n && !ob.pos && ret != 0)
                return wp_fail(e, WP_EVERIFY, "%s: frame %zu: truncated zstd frame", path, k);
            produced += ob.pos;
            *have += ob.pos;
            if (ret == 0 && ib.pos < ib.size)
                return wp_fail(e, WP_EVERIFY, "%s: frame %zu: bytes after the end of the zstd frame", path, k);
        } while (ret != 0 && ib.pos < ib.size && *have < need);
    }
    if (*have < need && produced != fr->raw_size)
        return wp_fail(e, WP_EVERIFY, "%s: frame %zu: decompresses to fewer bytes than its size", path, k);
    return 0;
}

/* Decompress file f's bytes [0, need) from its first frames into *buf (the
 * frames must start at 0 and follow each other: pack stores the header region
 * whole, from byte 0). */
static int read_prefix(wpz_list *l, const zfile_rec *f, const char *label, int fd, ZSTD_DCtx *d,
                       uint8_t *in, size_t isz, uint64_t need, uint8_t **buf, wp_err *e)
{
    size_t cap = 0;
    uint64_t have = 0;
    int rc = 0;
    *buf = NULL;
    for (uint64_t k = f->first_frame; !rc && have < need; k++) {
        if (k == f->first_frame + f->frame_count) {
            rc = LFAIL("%s: its frames end at byte %llu, inside the header region (%llu bytes)", label,
                       (unsigned long long)have, (unsigned long long)need);
            break;
        }
        const zframe_rec *fr = &l->x.frames[k];
        if (fr->raw_offset != have) {
            rc = LFAIL("%s: frame %llu starts at byte %llu of the header region, expected %llu", label,
                       (unsigned long long)k, (unsigned long long)fr->raw_offset, (unsigned long long)have);
            break;
        }
        rc = read_frame(fd, label, (size_t)k, fr, d, in, isz, buf, &cap, &have, need, e);
    }
    if (rc) {
        free(*buf);
        *buf = NULL;
    }
    return rc;
}

/* File i's header region [0, data_offset), parsed into lf->p: its first 256
 * bytes say where the region ends (data_offset, bounded by the file's
 * recorded size), then the region is decompressed whole. */
static int read_header(wpz_list *l, int fd, size_t i, ZSTD_DCtx *d, uint8_t *in, size_t isz,
                       wp_err *e)
{
    const zfile_rec *f = &l->x.files[i];
    lfile *lf = &l->files[i];
    uint8_t *buf = NULL;
    if (f->size < WPK_HEADER_SIZE)
        return LFAIL("%s: %llu bytes: shorter than a .wpk header", lf->label, (unsigned long long)f->size);
    int rc = read_prefix(l, f, lf->label, fd, d, in, isz, WPK_HEADER_SIZE, &buf, e);
    if (rc) return rc;
    wpk_hdr h;
    memcpy(&h, buf, sizeof h);
    free(buf);
    /* Before reading more: the region's size is what the counts imply, each
     * within the container's limits (wpk_parse checks the rest), and inside
     * the file.  So no field alone sizes what is decompressed. */
    if (memcmp(h.magic, WPK_MAGIC, 8)) return LFAIL("%s: not a .wpk container (bad magic)", lf->label);
    if (h.tensor_count > WPK_MAX_TENSORS || h.src_count > WPK_MAX_SOURCES || h.str_size > WPK_MAX_STRINGS ||
        h.align_log2 < WPK_ALIGN_LOG2_MIN || h.align_log2 > WPK_ALIGN_LOG2_MAX)
        return LFAIL("%s: header counts out of range (%llu tensors, %llu sources, %llu string bytes, align 2^%u)",
                     lf->label, (unsigned long long)h.tensor_count, (unsigned long long)h.src_count,
                     (unsigned long long)h.str_size, h.align_log2);
    uint64_t end = WPK_HEADER_SIZE + h.tensor_count * WPK_ENTRY_SIZE + h.src_count * 16 + h.str_size;   /* < 2^40 */
    if (h.data_offset != wp_align_up(end, 1ull << h.align_log2) || h.data_offset > f->size)
        return LFAIL("%s: data_offset %llu: its sections end at %llu, the file has %llu bytes", lf->label,
                     (unsigned long long)h.data_offset, (unsigned long long)end, (unsigned long long)f->size);
    if ((rc = read_prefix(l, f, lf->label, fd, d, in, isz, h.data_offset, &buf, e))) return rc;
    lf->region = buf;
    rc = wpk_parse(buf, h.data_offset, f->size, lf->label, 0, &lf->p, e);
    if (!rc) lf->have = 1;
    return rc;
}

void wpz_list_close(wpz_list *l)
{
    if (!l) return;
    for (size_t i = 0; l->files && i < l->x.nf; i++) {
        if (l->files[i].have) wpk_parsed_free(&l->files[i].p);
        free(l->files[i].region);
        free(l->files[i].label);
    }
    free(l->files);
    free(l->t);
    wpz_index_free(&l->x);
    free(l);
}

/* The index's tensor records must be the .wpk directories, in order. */
static int match_index(wpz_list *l, const char *wpkz, wp_err *e)
{
    size_t *next = calloc(l->x.nf + 1, sizeof *next);
    if (!next) return wp_oom(e, "%s: the listing", wpkz);
    int rc = 0;
    for (size_t i = 0; i < l->x.nt && !rc; i++) {
        const ztensor_rec *r = &l->x.tens[i];
        const lfile *lf = &l->files[r->file];   /* r->file < nf: checked with the index */
        const char *nm = zname(&l->x, r->name);
        if (!lf->have) {
            rc = LFAIL("%s: %s: tensor record in a file that is not a .wpk", lf->label, nm);
            break;
        }
        size_t j = next[r->file]++;
        const wpk_tensor *t = j < lf->p.n ? &lf->p.t[j] : NULL;
        if (!t) {
            rc = LFAIL("%s: %s: more tensor records than the directory's %zu entries", lf->label, nm, lf->p.n);
            break;
        }
        if (strcmp(t->name, nm) || t->offset != r->offset || t->size != r->size ||
            memcmp(t->sha256, r->sha256, 32) || wpk_code_of(t->kind, t->enc, t->dtype) != r->enc) {
            rc = LFAIL("%s: tensor record %zu (%s) is not directory entry %zu (%s): name, bytes, digest "
                       "or encoding differ", lf->label, i, nm, j, t->name);
            break;
        }
        uint64_t comp = 0;   /* the frames cover [offset, +size) exactly: checked with the index */
        for (uint64_t k = r->first_frame; k < r->first_frame + r->frame_count; k++) comp += l->x.frames[k].comp_size;
        l->t[l->n++] = (wpz_list_tensor){.t = t, .file = r->file, .comp_bytes = comp};
    }
    for (size_t i = 0; i < l->x.nf && !rc; i++)
        if (l->files[i].have && next[i] != l->files[i].p.n)
            rc = LFAIL("%s: %zu tensor records for the directory's %zu entries", l->files[i].label, next[i],
                       l->files[i].p.n);
    free(next);
    return rc;
}

int wpz_list_open(wpz_list **out, const char *wpkz, wp_err *e)
{
    *out = NULL;
    wpz_list *l = wp_calloc(1, sizeof *l, e);
    if (!l) return WP_ENOMEM;
    int fd = -1;
    uint64_t size = 0;
    int rc = wpz_index_open(wpkz, &fd, &size, &l->x, e);
    ZSTD_DCtx *d = NULL;
    size_t isz = ZSTD_DStreamInSize();
    uint8_t *in = NULL;
    if (!rc && (!(l->files = calloc(l->x.nf + 1, sizeof *l->files)) || !(l->t = calloc(l->x.nt + 1, sizeof *l->t)) ||
                !(d = ZSTD_createDCtx()) || !(in = malloc(isz))))
        rc = wp_oom(e, "%s: the listing", wpkz);
    for (size_t i = 0; !rc && i < l->x.nf; i++) {
        const char *nm = zname(&l->x, l->x.files[i].name);
        size_t n = strlen(wpkz) + strlen(nm) + 2;
        if (!(l->files[i].label = malloc(n))) {
            rc = wp_oom(e, "%s: the listing", wpkz);
            break;
        }
        snprintf(l->files[i].label, n, "%s:%s", wpkz, nm);
        if (wp_str_ends_with(nm, ".wpk")) rc = read_header(l, fd, i, d, in, isz, e);
    }
    if (!rc) rc = match_index(l, wpkz, e);
    free(in);
    ZSTD_freeDCtx(d);
    if (fd >= 0) close(fd);
    if (rc) {
        wpz_list_close(l);
        return rc;
    }
    *out = l;
    return 0;
}

size_t wpz_list_files(const wpz_list *l) { return l->x.nf; }
const char *wpz_list_file_name(const wpz_list *l, size_t i) { return i < l->x.nf ? zname(&l->x, l->x.files[i].name) : NULL; }
uint64_t wpz_list_file_size(const wpz_list *l, size_t i) { return i < l->x.nf ? l->x.files[i].size : 0; }
size_t wpz_list_count(const wpz_list *l) { return l->n; }
const wpz_list_tensor *wpz_list_tensor_at(const wpz_list *l, size_t i) { return i < l->n ? &l->t[i] : NULL; }

wpz_file_kind wpz_sniff(const char *path)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);   /* O_NONBLOCK: a FIFO does not hang us */
    if (fd < 0) return WPZ_FILE_OTHER;
    struct stat st;
    uint8_t m[8];
    wpz_file_kind k = WPZ_FILE_OTHER;
    if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && pread(fd, m, sizeof m, 0) == (ssize_t)sizeof m) {
        if (!memcmp(m, WPK_MAGIC, 8)) k = WPZ_FILE_WPK;
        else if (!memcmp(m, WPZ_MAGIC, 8)) k = WPZ_FILE_WPKZ;
    }
    close(fd);
    return k;
}
