/*
 * pack.c — packing a build into the .wpkz shipping form (docs/format.md §3);
 * unpack.c reads it back.
 *
 * Every file of a build, one independent zstd frame per chunk of at most
 * `chunk` bytes, cut so that no frame mixes two tensors; .wpk padding is
 * verified zero and not stored.  Frames are streamed to the output as they
 * are made; the seek index and footer follow.  Tensor digests are checked
 * while reading, so a corrupt build is refused instead of shipped.  OUT is
 * written through wp_out_create: an existing OUT is refused unless force.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <zstd.h>

#include "common/outdir.h"
#include "format/wpkz_internal.h"

void wpz_index_free(zindex *x)
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
    if (!q) return wp_oom(e, "the .wpkz index");
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
int wpz_fill_stats(const zindex *x, uint64_t archive_size, wpz_stats *st, wp_err *e)
{
    memset(st, 0, sizeof *st);
    st->files = x->nf;
    st->tensors = x->nt;
    st->frames = x->nfr;
    st->comp_bytes = archive_size;
    const char **cls = calloc(x->nfr ? x->nfr : 1, sizeof *cls);
    if (!cls) return wp_oom(e, ".wpkz statistics");
    for (size_t i = 0; i < x->nf; i++)
        for (uint64_t k = 0; k < x->files[i].frame_count; k++)
            cls[x->files[i].first_frame + k] = wp_str_ends_with(zname(x, x->files[i].name), ".wpk") ? "header" : "other";
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
    uint8_t *buf;           /* scanning a gap between tensors */
    size_t bufsz;
    uint64_t chunk;
    int level, threads;
    wpz_pool *pool;         /* frames compressed in parallel, written in order */
    uint64_t nsub;          /* frames submitted (a frame's index) */
    zindex x;               /* frames: those written */
    wpz_chain fc, tc;       /* the file digest chain, the tensor digest chain (wpkz_internal.h) */
    wpz_wb wb;              /* write-behind of the archive */
    int chains;             /* fc and tc started */
    const wpz_opts *o;
    uint64_t done, total;   /* progress */
} zpack;

/* The compression parameters of every frame: single-threaded zstd per
 * frame, whatever the thread count (the parallelism is across frames), so
 * the archive is the same for every --threads. */
static size_t cctx_params(ZSTD_CCtx *c, int level)
{
    size_t r = ZSTD_CCtx_setParameter(c, ZSTD_c_compressionLevel, level);
    if (!ZSTD_isError(r)) r = ZSTD_CCtx_setParameter(c, ZSTD_c_checksumFlag, 1);
    if (!ZSTD_isError(r)) r = ZSTD_CCtx_setParameter(c, ZSTD_c_contentSizeFlag, 1);
    return r;
}

static void *ctls_new(void *ctx)
{
    const zpack *z = ctx;
    ZSTD_CCtx *c = ZSTD_createCCtx();
    if (c && ZSTD_isError(cctx_params(c, z->level))) {
        ZSTD_freeCCtx(c);
        c = NULL;
    }
    return c;
}

static void ctls_free(void *tls) { ZSTD_freeCCtx(tls); }

/* On a worker: j->in[0, in_len) -> j->out[0, out_len), one complete frame. */
static void compress_work(void *ctx, void *tls, wpz_job *j)
{
    const zpack *z = ctx;
    ZSTD_CCtx *c = tls;
    size_t cap = ZSTD_compressBound(j->in_len);
    if (!c || wpz_job_reserve(&j->out, &j->out_cap, cap, ZSTD_compressBound((size_t)z->chunk))) {
        j->rc = wp_oom(&j->e, "%s: zstd compression of a %zu-byte frame", z->out.path, j->in_len);
        return;
    }
    /* one call, the whole frame: zstd reads the input where it is and
     * writes straight into a bound-sized output (no copy into its own
     * window and output buffers: about a quarter less CPU than streaming
     * it at level 3) */
    size_t r = ZSTD_compress2(c, j->out, cap, j->in, j->in_len);
    if (ZSTD_isError(r)) {
        j->rc = wp_fail(&j->e, WP_EIO, "%s: zstd: %s", z->out.path, ZSTD_getErrorName(r));
        return;
    }
    j->out_len = r;
}

#define WRITE_PIECE ((size_t)1 << 20)

/* Write the oldest frame in flight (waiting for it) and record it; 0 when
 * none is in flight. */
static int retire(zpack *z, wp_err *e)
{
    wpz_job *j = wpz_pool_oldest(z->pool);
    if (!j) return 0;
    int rc = j->rc ? wp_fail(e, j->rc, "%s", j->e.msg) : 0;
    /* both digest chains past this frame's bytes (the slot is reused next) */
    int rf = wpz_chain_wait(&z->fc, j->seq[0], e);
    int rt = wpz_chain_wait(&z->tc, j->seq[1], e);
    if (!rc) rc = rf ? rf : rt;
    /* in pieces of 1 MiB: one write(2) of a whole 64 MiB frame costs the
     * kernel several times the CPU per byte of small ones (measured: pack's
     * system time 9.5 s -> 2.6 s on a 3.3 GB build, docs/performance.md) */
    for (size_t o = 0; !rc && o < j->out_len; o += WRITE_PIECE)
        rc = wp_out_write(&z->out, j->out + o, j->out_len - o < WRITE_PIECE ? j->out_len - o : WRITE_PIECE, e);
    /* the disk writes this while later frames compress: the fsync before
     * the archive is named then waits for the last few MiB, not for all of
     * it (1.35 s of a 2.7 GB archive before; docs/performance.md) */
    if (!rc) wpz_writebehind(&z->wb, z->out.fd, z->out.written);
    if (!rc && grow((void **)&z->x.frames, &z->x.capfr, z->x.nfr + 1, sizeof(zframe_rec), e)) rc = WP_ENOMEM;
    if (!rc) {
        z->x.frames[z->x.nfr++] = (zframe_rec){z->pos, j->out_len, j->raw_off, j->in_len};
        z->pos += j->out_len;
        z->done += j->in_len;
        if (z->o->progress) z->o->progress(z->o->ud, "pack", z->done, z->total);
    }
    wpz_pool_release(z->pool);
    return rc;
}

/* Compress [a, b) of fd as frames of at most z->chunk; each frame's bytes
 * go to the file digest chain (fh) and, for a tensor, the tensor chain (th),
 * while earlier frames compress. */
static int pack_range(zpack *z, int fd, const char *path, uint64_t a, uint64_t b, wp_sha256 fh,
                      const wp_sha256 *th, wp_err *e)
{
    while (a < b) {
        size_t n = b - a < z->chunk ? (size_t)(b - a) : (size_t)z->chunk;
        if (z->nsub >= WPZ_MAX_FRAMES)
            return wp_fail(e, WP_EUSAGE, "%s: more than %u frames", z->out.path, WPZ_MAX_FRAMES);
        wpz_job *j;
        int rc;
        while (!(j = wpz_pool_slot(z->pool)))
            if ((rc = retire(z, e))) return rc;
        if (wpz_job_reserve(&j->in, &j->in_cap, n, (size_t)z->chunk)) return wp_oom(e, "%s: a %zu-byte frame buffer", z->out.path, n);
        if ((rc = wp_pread_full(fd, j->in, n, a, path, e))) return rc;
        j->in_len = n;
        j->raw_off = a;
        j->frame = z->nsub++;
        wpz_pool_submit(z->pool, j);
        j->seq[0] = wpz_chain_push(&z->fc, &(wpz_chain_op){.kind = WPZ_OP_UPDATE, .p = j->in, .n = n, .h = fh});
        j->seq[1] = th ? wpz_chain_push(&z->tc, &(wpz_chain_op){.kind = WPZ_OP_UPDATE, .p = j->in, .n = n, .h = *th}) : 0;
        a += n;
    }
    return 0;
}

/* A gap between tensors: hashed; stored only if it is not all zeros. */
static int pack_gap(zpack *z, int fd, const char *path, uint64_t a, uint64_t b, wp_sha256 fh, wp_err *e)
{
    int nonzero = 0;
    /* A hole (the writer's ftruncate'd padding) reads as zeros: skip reading
     * it.  2 MiB-aligned builds are mostly holes between small tensors. */
    uint64_t from = a;
    off_t d = lseek(fd, (off_t)a, SEEK_DATA);
    if ((d < 0 && errno == ENXIO) || (d >= 0 && (uint64_t)d >= b)) from = b;
    else if (d > 0 && (uint64_t)d > a) from = (uint64_t)d;   /* [a, d) is a hole */
    for (uint64_t p = from; p < b && !nonzero;) {
        size_t n = b - p < z->bufsz ? (size_t)(b - p) : z->bufsz;
        int rc = wp_pread_full(fd, z->buf, n, p, path, e);
        if (rc) return rc;
        for (size_t k = 0; k < n && !nonzero; k++) nonzero = z->buf[k] != 0;
        p += n;
    }
    if (nonzero) return pack_range(z, fd, path, a, b, fh, NULL, e);
    wpz_chain_push(&z->fc, &(wpz_chain_op){.kind = WPZ_OP_ZEROS, .n = (size_t)(b - a), .h = fh});
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
    fr.first_frame = z->nsub;
    wp_sha256 fh;
    if (wp_sha256_init(&fh, e)) return WP_ENOMEM;
    int rc = 0;
    if (wp_str_ends_with(name, ".wpk")) {
        wpk_file *f;
        if ((rc = wpk_open(&f, path, e))) goto out;
        int fd = wpk_fd(f);
        fr.size = wpk_file_size(f);
        rc = pack_range(z, fd, path, 0, wpk_data_offset(f), fh, NULL, e);
        uint64_t pos = wpk_data_offset(f);
        for (size_t i = 0; !rc && i < wpk_count(f); i++) {
            const wpk_tensor *t = wpk_tensor_at(f, i);
            if (t->offset > pos && (rc = pack_gap(z, fd, path, pos, t->offset, fh, e))) break;
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
            tr.first_frame = z->nsub;
            wp_sha256 th;
            if ((rc = wp_sha256_init(&th, e))) break;
            rc = pack_range(z, fd, path, t->offset, t->offset + t->size, fh, &th, e);
            if (rc) {
                /* the chain may still be feeding th: let it finish first */
                wpz_chain_drain(&z->tc, e);
                wp_sha256_free(&th);
                break;
            }
            /* the tensor chain finalises th and compares it; a mismatch
             * fails the frame retired after it (or the end of pack) */
            wpz_chain_op ck = {.kind = WPZ_OP_CHECK, .h = th};
            memcpy(ck.want, t->sha256, 32);
            int m = snprintf(NULL, 0, "%s: %s: sha256 mismatch in bytes [%llu, %llu); not packing "
                             "a corrupt build", path, t->name, (unsigned long long)t->offset,
                             (unsigned long long)(t->offset + t->size));
            if (m < 0 || !(ck.msg = malloc((size_t)m + 1))) {
                wpz_chain_drain(&z->tc, e);
                wp_sha256_free(&th);
                rc = wp_oom(e, "%s: %s: a digest check", path, t->name);
                break;
            }
            snprintf(ck.msg, (size_t)m + 1, "%s: %s: sha256 mismatch in bytes [%llu, %llu); not packing "
                     "a corrupt build", path, t->name, (unsigned long long)t->offset,
                     (unsigned long long)(t->offset + t->size));
            wpz_chain_push(&z->tc, &ck);
            tr.frame_count = z->nsub - tr.first_frame;
            if (z->x.nt >= WPZ_MAX_TENSORS)
                rc = wp_fail(e, WP_EUSAGE, "%s: more than %u tensors", path, WPZ_MAX_TENSORS);
            if (!rc) z->x.tens[z->x.nt++] = tr;
            pos = t->offset + t->size;
        }
        if (!rc && pos < fr.size) rc = pack_gap(z, fd, path, pos, fr.size, fh, e);
        wpk_close(f);
    } else {
        int fd = wp_open_read(path, e);
        struct stat st;
        if (fd < 0 || fstat(fd, &st) != 0) {
            rc = wp_fail_errno(e, "%s: cannot open", path);
            if (fd >= 0) close(fd);
            goto out;
        }
        fr.size = (uint64_t)st.st_size;
        rc = pack_range(z, fd, path, 0, fr.size, fh, NULL, e);
        close(fd);
    }
out:
    {
        /* the file chain done with fh (its ops read slots still held) */
        int rw = wpz_chain_drain(&z->fc, e);
        if (!rc) rc = rw;
    }
    if (rc) {
        wp_sha256_free(&fh);
        return rc;
    }
    wp_sha256_final(&fh, fr.sha256);
    fr.frame_count = z->nsub - fr.first_frame;
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
    if (!rc) {
        /* dot files are not packed; wpack's own temporaries (an interrupted
         * sign's) are said, not skipped silently */
        char note[1024];
        if (wp_temps_note(build, "build (not packed)", note, sizeof note, NULL)) wp_notice("%s", note);
    }
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

/* What --force may replace: a .wpkz, known by its magic. */
static int is_wpkz(const char *path) { return wp_file_starts_with(path, WPZ_MAGIC, 8); }

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
    z.level = level;
    z.threads = o->threads;
    z.bufsz = z.chunk < (1u << 20) ? (size_t)z.chunk : (1u << 20);
    z.buf = wp_malloc(z.bufsz, e);
    ZSTD_CCtx *check = ZSTD_createCCtx();
    if (!z.buf || !check) {
        ZSTD_freeCCtx(check);
        rc = wp_oom(e, "pack buffers");
        goto done;
    }
    size_t r = cctx_params(check, level);   /* what every frame's context will be */
    ZSTD_freeCCtx(check);
    if (ZSTD_isError(r)) {
        rc = wp_fail(e, WP_EUSAGE, "%s: zstd parameters (level %d): %s", out, level, ZSTD_getErrorName(r));
        goto done;
    }
    /* threads workers, one frame each, plus the one being read: at most
     * threads + 1 frames (input and bound-sized output) in memory (pack.h);
     * a slot is free again once written and passed by both digest chains
     * (threads + 2 measured no faster, within the noise of a loaded machine) */
    static const wpz_pool_ops ops = {ctls_new, ctls_free, compress_work};
    if ((rc = wpz_pool_start(&z.pool, o->threads, (size_t)(o->threads > 0 ? o->threads + 1 : 1), &ops, &z, e)))
        goto done;
    wpz_chain_start(&z.fc, wpz_pool_threads(z.pool) > 0);
    wpz_chain_start(&z.tc, wpz_pool_threads(z.pool) > 0);
    z.chains = 1;
    if ((rc = wp_out_create_own(&z.out, out, o->force, is_wpkz, "a .wpkz archive", e))) goto done;
    wp_out_direct(&z.out);   /* written front to back, not read again here: around the page cache */
    zprefix pre;
    memset(&pre, 0, sizeof pre);
    memcpy(pre.magic, WPZ_MAGIC, 8);
    pre.version_major = 1;
    pre.endian = WPK_ENDIAN_TAG;
    if ((rc = wp_out_write(&z.out, &pre, sizeof pre, e))) goto done;
    z.pos = sizeof pre;
    for (size_t i = 0; i < nnames && !rc; i++) rc = pack_file(&z, dir, names[i], e);
    while (!rc && z.x.nfr < z.nsub) rc = retire(&z, e);
    if (!rc) rc = wpz_chain_drain(&z.tc, e);   /* the last tensors' checks */
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
    if (!rc && stats) rc = wpz_fill_stats(&z.x, z.pos, stats, e);
    if (!rc) rc = wp_out_commit(&z.out, e);
done:
    if (z.chains) {   /* before the pool: their ops read its slots */
        wpz_chain_stop(&z.fc);
        wpz_chain_stop(&z.tc);
    }
    wpz_pool_stop(z.pool);
    wp_out_abort(&z.out);
    free(z.buf);
    wpz_index_free(&z.x);
    for (size_t i = 0; i < nnames; i++) free(names[i]);
    free(names);
    return rc;
}

