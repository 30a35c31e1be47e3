/*
 * pack.c — the .wpkz shipping form (docs/format.md §3).
 *
 * pack: every file of a build, one independent zstd frame per chunk of at
 * most `chunk` bytes, cut so that no frame mixes two tensors; .wpk padding is
 * verified zero and not stored.  Frames are streamed to the output as they
 * are made; the seek index and footer follow.  Tensor digests are checked
 * while reading, so a corrupt build is refused instead of shipped.
 *
 * unpack: the footer, the index digest and every index rule are checked
 * before anything is written; frames are decompressed in bounded buffers and
 * each restored file is hashed as it is written and compared with its record.
 * The build appears at OUT only when every file checked out (temp directory,
 * renamed).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <zstd.h>

#include "format/pack.h"
#include "format/wpk_internal.h"

#define WPZ_MAGIC "\x89WPZ\r\n\x1a\n"
#define WPZ_END_MAGIC "WPZ-END\0"
#define WPZ_MAX_FILES 4096u
#define WPZ_MAX_TENSORS (1u << 20)
#define WPZ_MAX_FRAMES (1u << 24)
#define WPZ_MAX_STR (1u << 28)
#define WPZ_MAX_FRAME_RAW (1ull << 30)

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

static void zindex_free(zindex *x)
{
    free(x->files);
    free(x->tens);
    free(x->frames);
    free(x->str);
    memset(x, 0, sizeof *x);
}

static int grow(void **p, size_t *cap, size_t need, size_t elem, wp_err *e)
{
    if (need <= *cap) return 0;
    size_t c = *cap ? *cap : 16;
    while (c < need) c *= 2;
    void *q = realloc(*p, c * elem);
    if (!q) return wp_fail(e, WP_ENOMEM, "out of memory (.wpkz index)");
    *p = q;
    *cap = c;
    return 0;
}

static int add_str(zindex *x, const char *s, wpk_ref *r, wp_err *e)
{
    size_t n = strlen(s);
    if (grow((void **)&x->str, &x->str_cap, x->str_len + n + 1, 1, e)) return WP_ENOMEM;
    memcpy(x->str + x->str_len, s, n + 1);
    r->off = x->str_len;
    r->len = n;
    x->str_len += n + 1;
    return 0;
}

static const char *zname(const zindex *x, wpk_ref r) { return x->str + r.off; }

static int ends_with(const char *s, const char *suf)
{
    size_t a = strlen(s), b = strlen(suf);
    return a >= b && !strcmp(s + a - b, suf);
}

/* ---- Statistics: one class per encoding, "header" and "other" ----------------- */

static wpz_class_stat *stat_class(wpz_stats *st, const char *name)
{
    size_t i = 0;
    while (i < st->n_classes && strcmp(st->classes[i].name, name) < 0) i++;
    if (i < st->n_classes && !strcmp(st->classes[i].name, name)) return &st->classes[i];
    if (st->n_classes == sizeof st->classes / sizeof st->classes[0]) return NULL;
    memmove(&st->classes[i + 1], &st->classes[i], (st->n_classes - i) * sizeof st->classes[0]);
    memset(&st->classes[i], 0, sizeof st->classes[i]);
    snprintf(st->classes[i].name, sizeof st->classes[i].name, "%s", name);
    st->n_classes++;
    return &st->classes[i];
}

/* Attribute every frame to a class: tensor frames to their encoding, the rest
 * of a .wpk to "header" (header region, non-zero padding), other files to
 * "other". */
static int fill_stats(const zindex *x, uint64_t archive_size, wpz_stats *st, wp_err *e)
{
    memset(st, 0, sizeof *st);
    st->files = x->nf;
    st->tensors = x->nt;
    st->frames = x->nfr;
    st->comp_bytes = archive_size;
    const char **cls = calloc(x->nfr ? x->nfr : 1, sizeof *cls);
    if (!cls) return wp_fail(e, WP_ENOMEM, "out of memory");
    for (size_t i = 0; i < x->nf; i++)
        for (uint64_t k = 0; k < x->files[i].frame_count; k++)
            cls[x->files[i].first_frame + k] = ends_with(zname(x, x->files[i].name), ".wpk") ? "header" : "other";
    for (size_t i = 0; i < x->nt; i++) {
        const char *en = wpk_code_name(x->tens[i].enc);
        for (uint64_t k = 0; k < x->tens[i].frame_count; k++) cls[x->tens[i].first_frame + k] = en;
        wpz_class_stat *c = stat_class(st, en);
        if (c) c->tensors++;
    }
    for (size_t i = 0; i < x->nf; i++) st->raw_bytes += x->files[i].size;
    for (size_t k = 0; k < x->nfr; k++) {
        wpz_class_stat *c = stat_class(st, cls[k] ? cls[k] : "other");
        if (!c) continue;
        c->raw += x->frames[k].raw_size;
        c->comp += x->frames[k].comp_size;
    }
    free(cls);
    return 0;
}

/* ---- pack ------------------------------------------------------------------------- */

typedef struct zpack {
    wp_out out;
    uint64_t pos;           /* bytes written to the archive */
    ZSTD_CCtx *cctx;
    uint8_t *buf;           /* one raw chunk */
    uint64_t chunk;
    uint8_t *obuf;
    size_t obuf_sz;
    zindex x;
    const wpz_opts *o;
    uint64_t done, total;   /* progress */
} zpack;

static int compress_frame(zpack *z, const uint8_t *src, size_t n, uint64_t raw_off, wp_err *e)
{
    ZSTD_CCtx_reset(z->cctx, ZSTD_reset_session_only);
    size_t r = ZSTD_CCtx_setPledgedSrcSize(z->cctx, n);   /* content size in the frame header */
    if (ZSTD_isError(r)) return wp_fail(e, WP_EIO, "%s: zstd: %s", z->out.path, ZSTD_getErrorName(r));
    ZSTD_inBuffer in = {src, n, 0};
    uint64_t start = z->pos;
    for (;;) {
        ZSTD_outBuffer ob = {z->obuf, z->obuf_sz, 0};
        r = ZSTD_compressStream2(z->cctx, &ob, &in, ZSTD_e_end);
        if (ZSTD_isError(r)) return wp_fail(e, WP_EIO, "%s: zstd: %s", z->out.path, ZSTD_getErrorName(r));
        if (ob.pos) {
            int rc = wp_out_write(&z->out, z->obuf, ob.pos, e);
            if (rc) return rc;
            z->pos += ob.pos;
        }
        if (r == 0) break;
    }
    if (z->x.nfr >= WPZ_MAX_FRAMES)
        return wp_fail(e, WP_EUSAGE, "%s: more than %u frames", z->out.path, WPZ_MAX_FRAMES);
    if (grow((void **)&z->x.frames, &z->x.capfr, z->x.nfr + 1, sizeof(zframe_rec), e)) return WP_ENOMEM;
    z->x.frames[z->x.nfr++] = (zframe_rec){start, z->pos - start, raw_off, n};
    z->done += n;
    if (z->o->progress) z->o->progress(z->o->ud, "pack", z->done, z->total);
    return 0;
}

/* Compress [a, b) of fd as frames of at most z->chunk, hashing into fh (and th). */
static int pack_range(zpack *z, int fd, const char *path, uint64_t a, uint64_t b, wp_sha256 *fh,
                      wp_sha256 *th, wp_err *e)
{
    while (a < b) {
        size_t n = b - a < z->chunk ? (size_t)(b - a) : (size_t)z->chunk;
        int rc = wp_pread_full(fd, z->buf, n, a, path, e);
        if (rc) return rc;
        wp_sha256_update(fh, z->buf, n);
        if (th) wp_sha256_update(th, z->buf, n);
        if ((rc = compress_frame(z, z->buf, n, a, e))) return rc;
        a += n;
    }
    return 0;
}

/* A gap between tensors: hashed; stored only if it is not all zeros. */
static int pack_gap(zpack *z, int fd, const char *path, uint64_t a, uint64_t b, wp_sha256 *fh, wp_err *e)
{
    int nonzero = 0;
    /* A hole (the writer's ftruncate'd padding) reads as zeros: skip reading
     * it.  2 MiB-aligned builds are mostly holes between small tensors. */
    uint64_t from = a;
    off_t d = lseek(fd, (off_t)a, SEEK_DATA);
    if ((d < 0 && errno == ENXIO) || (d >= 0 && (uint64_t)d >= b)) from = b;
    else if (d > 0 && (uint64_t)d > a) from = (uint64_t)d;   /* [a, d) is a hole */
    for (uint64_t p = from; p < b && !nonzero;) {
        size_t n = b - p < z->chunk ? (size_t)(b - p) : (size_t)z->chunk;
        int rc = wp_pread_full(fd, z->buf, n, p, path, e);
        if (rc) return rc;
        for (size_t k = 0; k < n && !nonzero; k++) nonzero = z->buf[k] != 0;
        p += n;
    }
    if (nonzero) return pack_range(z, fd, path, a, b, fh, NULL, e);
    static const uint8_t zeros[4096];
    for (uint64_t p = a; p < b;) {
        size_t n = b - p < sizeof zeros ? (size_t)(b - p) : sizeof zeros;
        wp_sha256_update(fh, zeros, n);
        p += n;
    }
    return 0;
}

static int pack_file(zpack *z, const char *dir, const char *name, wp_err *e)
{
    char path[4096];
    if (wp_path_join(path, sizeof path, dir, name))
        return wp_fail(e, WP_EUSAGE, "%s/%s: path too long", dir, name);
    if (z->x.nf >= WPZ_MAX_FILES)
        return wp_fail(e, WP_EUSAGE, "%s: more than %u files", dir, WPZ_MAX_FILES);
    if (grow((void **)&z->x.files, &z->x.capf, z->x.nf + 1, sizeof(zfile_rec), e)) return WP_ENOMEM;
    zfile_rec fr;
    memset(&fr, 0, sizeof fr);
    if (add_str(&z->x, name, &fr.name, e)) return WP_ENOMEM;
    fr.first_frame = z->x.nfr;
    wp_sha256 fh;
    if (wp_sha256_init(&fh, e)) return WP_ENOMEM;
    int rc = 0;
    if (ends_with(name, ".wpk")) {
        wpk_file *f;
        if ((rc = wpk_open(&f, path, e))) goto out;
        int fd = wpk_fd(f);
        fr.size = wpk_file_size(f);
        rc = pack_range(z, fd, path, 0, wpk_data_offset(f), &fh, NULL, e);
        uint64_t pos = wpk_data_offset(f);
        for (size_t i = 0; !rc && i < wpk_count(f); i++) {
            const wpk_tensor *t = wpk_tensor_at(f, i);
            if (t->offset > pos && (rc = pack_gap(z, fd, path, pos, t->offset, &fh, e))) break;
            if (grow((void **)&z->x.tens, &z->x.capt, z->x.nt + 1, sizeof(ztensor_rec), e)) {
                rc = WP_ENOMEM;
                break;
            }
            ztensor_rec tr;
            memset(&tr, 0, sizeof tr);
            if ((rc = add_str(&z->x, t->name, &tr.name, e))) break;
            tr.file = (uint32_t)z->x.nf;
            tr.enc = (uint16_t)wpk_code_of(t->kind, t->enc, t->dtype);
            tr.offset = t->offset;
            tr.size = t->size;
            memcpy(tr.sha256, t->sha256, 32);
            tr.first_frame = z->x.nfr;
            wp_sha256 th;
            if ((rc = wp_sha256_init(&th, e))) break;
            rc = pack_range(z, fd, path, t->offset, t->offset + t->size, &fh, &th, e);
            uint8_t d[32];
            wp_sha256_final(&th, d);
            if (!rc && memcmp(d, t->sha256, 32))
                rc = wp_fail(e, WP_EVERIFY, "%s: %s: sha256 mismatch in bytes [%llu, %llu); not packing "
                             "a corrupt build", path, t->name, (unsigned long long)t->offset,
                             (unsigned long long)(t->offset + t->size));
            tr.frame_count = z->x.nfr - tr.first_frame;
            if (z->x.nt >= WPZ_MAX_TENSORS)
                rc = wp_fail(e, WP_EUSAGE, "%s: more than %u tensors", path, WPZ_MAX_TENSORS);
            if (!rc) z->x.tens[z->x.nt++] = tr;
            pos = t->offset + t->size;
        }
        if (!rc && pos < fr.size) rc = pack_gap(z, fd, path, pos, fr.size, &fh, e);
        wpk_close(f);
    } else {
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        struct stat st;
        if (fd < 0 || fstat(fd, &st) != 0) {
            rc = wp_fail_errno(e, "%s: cannot open", path);
            if (fd >= 0) close(fd);
            goto out;
        }
        fr.size = (uint64_t)st.st_size;
        rc = pack_range(z, fd, path, 0, fr.size, &fh, NULL, e);
        close(fd);
    }
out:
    if (rc) {
        wp_sha256_free(&fh);
        return rc;
    }
    wp_sha256_final(&fh, fr.sha256);
    fr.frame_count = z->x.nfr - fr.first_frame;
    z->x.files[z->x.nf++] = fr;
    return 0;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The files of a build: every regular, non-hidden file of the directory (a
 * hidden file is a leftover temp file), sorted; or the one file given. */
static int list_build(const char *build, char *dir, size_t dirsz, char ***names, size_t *n,
                      uint64_t *total, wp_err *e)
{
    struct stat st;
    *names = NULL;
    *n = 0;
    *total = 0;
    if (stat(build, &st) != 0) return wp_fail_errno(e, "%s: cannot open build", build);
    if (S_ISREG(st.st_mode)) {
        char *a = wp_strdup(build, e), *b = wp_strdup(build, e);
        char **v = wp_calloc(1, sizeof *v, e);
        if (!a || !b || !v) {
            free(a), free(b), free(v);
            return WP_ENOMEM;
        }
        snprintf(dir, dirsz, "%s", dirname(a));
        v[0] = wp_strdup(basename(b), e);
        free(a), free(b);
        if (!v[0]) {
            free(v);
            return WP_ENOMEM;
        }
        *names = v;
        *n = 1;
        *total = (uint64_t)st.st_size;
        return 0;
    }
    if (!S_ISDIR(st.st_mode)) return wp_fail(e, WP_EUSAGE, "%s: not a file or directory", build);
    snprintf(dir, dirsz, "%s", build);
    DIR *d = opendir(build);
    if (!d) return wp_fail_errno(e, "%s: cannot list", build);
    size_t cap = 0;
    char **v = NULL;
    int rc = 0;
    struct dirent *de;
    while (!rc && (de = readdir(d))) {
        if (de->d_name[0] == '.') continue;
        char p[4096];
        if (wp_path_join(p, sizeof p, build, de->d_name) || stat(p, &st) != 0) {
            rc = wp_fail_errno(e, "%s/%s: cannot stat", build, de->d_name);
            break;
        }
        if (!S_ISREG(st.st_mode)) {
            rc = wp_fail(e, WP_EUSAGE, "%s/%s: a build holds only plain files", build, de->d_name);
            break;
        }
        const char *why = wpk_name_problem(de->d_name, strlen(de->d_name));
        if (why || strlen(de->d_name) > 255) {
            rc = wp_fail(e, WP_EUSAGE, "%s/%s: file name not packable: %s", build, de->d_name,
                         why ? why : "longer than 255 bytes");
            break;
        }
        if ((rc = grow((void **)&v, &cap, *n + 1, sizeof *v, e))) break;
        if (!(v[*n] = wp_strdup(de->d_name, e))) {
            rc = WP_ENOMEM;
            break;
        }
        (*n)++;
        *total += (uint64_t)st.st_size;
    }
    closedir(d);
    if (!rc && *n == 0) rc = wp_fail(e, WP_EUSAGE, "%s: empty build directory", build);
    if (rc) {
        for (size_t i = 0; i < *n; i++) free(v[i]);
        free(v);
        *n = 0;
        return rc;
    }
    qsort(v, *n, sizeof *v, cmp_str);
    *names = v;
    return 0;
}

/* Serialise the index (docs/format.md §3.2) into a malloc'd buffer. */
static int index_bytes(const zindex *x, uint8_t **out, uint64_t *len, wp_err *e)
{
    uint64_t n = 64 + 96 * (uint64_t)x->nf + 96 * (uint64_t)x->nt + 32 * (uint64_t)x->nfr + x->str_len;
    uint8_t *b = wp_calloc(1, (size_t)n, e);
    if (!b) return WP_ENOMEM;
    zindex_hdr h;
    memset(&h, 0, sizeof h);
    h.file_count = (uint32_t)x->nf;
    h.tensor_count = (uint32_t)x->nt;
    h.frame_count = x->nfr;
    h.str_size = x->str_len;
    uint8_t *p = b;
    memcpy(p, &h, 64), p += 64;
    if (x->nf) memcpy(p, x->files, 96 * x->nf), p += 96 * x->nf;
    if (x->nt) memcpy(p, x->tens, 96 * x->nt), p += 96 * x->nt;
    if (x->nfr) memcpy(p, x->frames, 32 * x->nfr), p += 32 * x->nfr;
    if (x->str_len) memcpy(p, x->str, x->str_len);
    *out = b;
    *len = n;
    return 0;
}

int wpz_pack(const char *build, const char *out, const wpz_opts *o, wpz_stats *stats, wp_err *e)
{
    static const wpz_opts defaults;
    if (!o) o = &defaults;
    zpack z;
    memset(&z, 0, sizeof z);
    z.out.fd = -1;
    z.o = o;
    z.chunk = o->chunk ? o->chunk : WPZ_CHUNK;
    if (z.chunk > WPZ_MAX_FRAME_RAW)
        return wp_fail(e, WP_EUSAGE, "%s: chunk %llu larger than 1 GiB", out, (unsigned long long)z.chunk);
    int level = o->level ? o->level : 3;
    if (level < ZSTD_minCLevel() || level > ZSTD_maxCLevel())
        return wp_fail(e, WP_EUSAGE, "%s: zstd level %d outside [%d, %d]", out, level,
                       ZSTD_minCLevel(), ZSTD_maxCLevel());
    char dir[4096];
    char **names;
    size_t nnames;
    int rc = list_build(build, dir, sizeof dir, &names, &nnames, &z.total, e);
    if (rc) return rc;
    uint64_t bufsz = z.chunk;   /* never more than the largest file needs */
    if (z.total < bufsz) bufsz = z.total ? z.total : 1;
    z.buf = wp_malloc((size_t)bufsz, e);
    z.obuf_sz = ZSTD_CStreamOutSize();
    z.obuf = wp_malloc(z.obuf_sz, e);
    z.cctx = ZSTD_createCCtx();
    if (!z.buf || !z.obuf || !z.cctx) {
        rc = wp_fail(e, WP_ENOMEM, "%s: out of memory", out);
        goto done;
    }
    size_t r = ZSTD_CCtx_setParameter(z.cctx, ZSTD_c_compressionLevel, level);
    if (!ZSTD_isError(r)) r = ZSTD_CCtx_setParameter(z.cctx, ZSTD_c_checksumFlag, 1);
    if (!ZSTD_isError(r)) r = ZSTD_CCtx_setParameter(z.cctx, ZSTD_c_contentSizeFlag, 1);
    if (!ZSTD_isError(r) && o->threads > 0)
        r = ZSTD_CCtx_setParameter(z.cctx, ZSTD_c_nbWorkers, o->threads);
    if (ZSTD_isError(r)) {
        rc = wp_fail(e, WP_EUSAGE, "%s: zstd parameters (level %d, %d threads): %s", out, level,
                     o->threads, ZSTD_getErrorName(r));
        goto done;
    }
    if ((rc = wp_out_open(&z.out, out, e))) goto done;
    zprefix pre;
    memset(&pre, 0, sizeof pre);
    memcpy(pre.magic, WPZ_MAGIC, 8);
    pre.version_major = 1;
    pre.endian = WPK_ENDIAN_TAG;
    if ((rc = wp_out_write(&z.out, &pre, sizeof pre, e))) goto done;
    z.pos = sizeof pre;
    for (size_t i = 0; i < nnames && !rc; i++) rc = pack_file(&z, dir, names[i], e);
    if (rc) goto done;
    uint8_t *idx;
    uint64_t idx_len;
    if ((rc = index_bytes(&z.x, &idx, &idx_len, e))) goto done;
    zfooter ft;
    memset(&ft, 0, sizeof ft);
    ft.index_offset = z.pos;
    ft.index_size = idx_len;
    memcpy(ft.magic, WPZ_END_MAGIC, 8);
    rc = wp_sha256_buf(idx, (size_t)idx_len, ft.index_sha256, e);
    if (!rc) rc = wp_out_write(&z.out, idx, (size_t)idx_len, e);
    free(idx);
    if (!rc) rc = wp_out_write(&z.out, &ft, sizeof ft, e);
    z.pos += idx_len + sizeof ft;
    if (!rc && stats) rc = fill_stats(&z.x, z.pos, stats, e);
    if (!rc) rc = wp_out_commit(&z.out, e);
done:
    wp_out_abort(&z.out);
    ZSTD_freeCCtx(z.cctx);
    free(z.buf);
    free(z.obuf);
    zindex_free(&z.x);
    for (size_t i = 0; i < nnames; i++) free(names[i]);
    free(names);
    return rc;
}

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
    zindex_free(&a->x);
}

static int zero_bytes(const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (p[i]) return 0;
    return 1;
}

#define ZFAIL(...) wp_fail(e, WP_EINVAL, __VA_ARGS__)

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
    uint64_t next_frame = 0;
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
        uint64_t end = 0;
        for (uint64_t k = f->first_frame; k < f->first_frame + f->frame_count; k++) {
            const zframe_rec *fr = &x->frames[k];
            if (fr->raw_offset < end || fr->raw_offset > f->size || fr->raw_size > f->size - fr->raw_offset)
                return ZFAIL("%s: %s: frame %llu: raw bytes [%llu, +%llu) overlap or leave the "
                             "file (%llu bytes)", path, nm, (unsigned long long)k,
                             (unsigned long long)fr->raw_offset, (unsigned long long)fr->raw_size,
                             (unsigned long long)f->size);
            end = fr->raw_offset + fr->raw_size;
        }
        next_frame += f->frame_count;
    }
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
    a->fd = open(path, O_RDONLY | O_CLOEXEC);
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
    if (!idx) return wp_fail(e, WP_ENOMEM, "%s: out of memory for a %llu-byte index", path, (unsigned long long)ft.index_size);
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
            rc = wp_fail(e, WP_ENOMEM, "%s: out of memory for the index", path);
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
    if (!z->d || !z->ibuf || !z->obuf) return wp_fail(e, WP_ENOMEM, "out of memory (zstd)");
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

static void hash_zeros(wp_sha256 *h, uint64_t n)
{
    static const uint8_t zeros[4096];
    while (n) {
        size_t k = n < sizeof zeros ? (size_t)n : sizeof zeros;
        wp_sha256_update(h, zeros, k);
        n -= k;
    }
}

typedef struct fsink {
    wp_out *out;
    wp_sha256 h;
    uint64_t hashed;        /* file bytes hashed so far */
    int sequential;         /* extraction: append; unpack: pwrite at raw_off */
    uint64_t base;          /* extraction: the tensor's offset in its file */
    const wpz_opts *o;
    uint64_t *done, total;
} fsink;

static int file_sink(void *ud, const uint8_t *p, size_t n, uint64_t raw_off, wp_err *e)
{
    fsink *s = ud;
    if (raw_off > s->hashed) hash_zeros(&s->h, raw_off - s->hashed);   /* zero padding */
    wp_sha256_update(&s->h, p, n);
    s->hashed = raw_off + n;
    int rc = s->sequential ? wp_out_write(s->out, p, n, e)
                           : wp_out_pwrite(s->out, p, n, raw_off - s->base, e);
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
    if (!rc) rc = fill_stats(&a.x, a.size, stats, e);
    zarch_close(&a);
    return rc;
}

static void remove_tmpdir(const char *tmp, const zindex *x)
{
    char p[4096];
    for (size_t i = 0; i < x->nf; i++)
        if (!wp_path_join(p, sizeof p, tmp, zname(x, x->files[i].name))) unlink(p);
    rmdir(tmp);
}

int wpz_unpack(const char *wpkz, const char *out, const wpz_opts *o, wpz_stats *stats, wp_err *e)
{
    zarch a;
    zdec z = {0};
    int rc = zarch_open(&a, wpkz, e);
    if (!rc) rc = zdec_init(&z, e);
    if (rc) goto done;
    struct stat st;
    if (lstat(out, &st) == 0) {
        rc = wp_fail(e, WP_EUSAGE, "%s: already exists; refusing to overwrite", out);
        goto done;
    }
    char tmp[4096];
    {
        char *d = wp_strdup(out, e), *b = wp_strdup(out, e);
        if (!d || !b) {
            free(d), free(b);
            rc = WP_ENOMEM;
            goto done;
        }
        int n = snprintf(tmp, sizeof tmp, "%s/.%s.tmp.XXXXXX", dirname(d), basename(b));
        free(d), free(b);
        if (n < 0 || (size_t)n >= sizeof tmp || !mkdtemp(tmp)) {
            rc = wp_fail_errno(e, "%s: cannot create a temporary directory next to it", out);
            goto done;
        }
    }
    uint64_t total = 0, done_bytes = 0;
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
        fsink s = {.out = &wo, .o = o, .done = &done_bytes, .total = total};
        if (ftruncate(wo.fd, (off_t)f->size) != 0) rc = wp_fail_errno(e, "%s: cannot size to %llu bytes", p, (unsigned long long)f->size);
        if (!rc) rc = wp_sha256_init(&s.h, e);
        for (uint64_t k = f->first_frame; !rc && k < f->first_frame + f->frame_count; k++)
            rc = unpack_frame(&a, &z, (size_t)k, file_sink, &s, e);
        if (!rc) {
            uint8_t d[32];
            hash_zeros(&s.h, f->size - s.hashed);
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
    if (!rc && rename(tmp, out) != 0) rc = wp_fail_errno(e, "%s: cannot rename the restored build into place", out);
    if (rc) {
        remove_tmpdir(tmp, &a.x);
        goto done;
    }
    wp_fsync_parent(out, NULL);   /* the rename's durability; the data already is */
    if (stats) rc = fill_stats(&a.x, a.size, stats, e);
done:
    zdec_free(&z);
    zarch_close(&a);
    return rc;
}

int wpz_extract_tensor(const char *wpkz, const char *name, const char *out, wp_err *e)
{
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
    if ((rc = wp_out_open(&wo, out, e))) goto done;
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
