/*
 * wpk_write.c — the streaming .wpk writer (docs/format.md §2).
 *
 * Offsets are fixed before any data is written (canonical layout), so tensor
 * bytes can be pwritten by many threads at once straight into a temp file
 * sized with ftruncate: the holes read as zeros, which is exactly the padding
 * the format requires.  SHA-256 is sequential, so each tensor keeps a hash
 * cursor: a chunk that lands on the cursor is hashed from the caller's buffer;
 * chunks that land ahead wait in a small sorted list and are hashed by reading
 * them back (page cache) once the gap before them is filled.  The header
 * region is built in memory, run through the reader's own validator, and
 * written last.
 *
 * Tensor bytes go around the page cache where they can: the whole 4096-byte
 * blocks of a chunk are written with O_DIRECT through a second descriptor of
 * the temp file (from the caller's buffer when it is aligned there, else
 * through a 1 MiB aligned bounce buffer), the partial blocks at its ends
 * through the page cache.  No block is written both ways, so the two never
 * meet; a read-back finds O_DIRECT bytes on the disk, and reads no further
 * ahead than it asks (POSIX_FADV_RANDOM).  On this VM a buffered
 * write cost the writer 2.5-4 CPU-seconds per GB (docs/performance.md "Output
 * around the page cache").  A file under 64 MiB (faster through the cache,
 * which its fsync writes in one go; WPACK_DIRECT_OUT=1 overrides), a file
 * system that refuses O_DIRECT, or WPACK_DIRECT_OUT=0 writes everything
 * through the page cache.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "format/wpk_internal.h"

#define DIO_ALIGN 4096u
#define BOUNCE (1u << 20)   /* bytes per O_DIRECT request */
#define NBOUNCE 8           /* requests queued or in flight at most */

typedef struct span {
    uint64_t a, b;        /* [a, b) of the tensor */
    int written;          /* 0: reserved by a writer still in pwrite */
} span;

typedef struct wdecl {
    wpk_decl d;           /* name and sources point at owned copies below */
    char *name;
    char **src;
    uint64_t offset, size;
    pthread_mutex_t mu;
    wp_sha256 h;
    int h_open;
    uint64_t cursor;      /* bytes [0, cursor) written and hashed */
    span *spans;          /* reserved/written ranges ahead of the cursor, sorted */
    size_t nspans, capspans;
    uint8_t digest[32];
    int done;
} wdecl;

/* One shard of the file (docs/signing.md §2: the manifest's file digest):
 * [a, b) hashed in order like a tensor, from the writers' buffers when a
 * chunk lands on the cursor; pieces that land ahead wait in `sp` (written
 * data, read back once the gap before them is filled, or zero padding). */
typedef struct sspan {
    uint64_t a, b;
    int zero;
} sspan;

typedef struct shard {
    pthread_mutex_t mu;
    wp_sha256 h;
    int h_open;
    uint64_t a, b, cursor;   /* file offsets */
    sspan *sp;
    size_t n, cap;
    uint8_t digest[32];
    int done;
} shard;

struct wpk_writer {
    wp_out out;
    uint64_t shard_size;
    shard *sh;
    size_t nsh;
    uint64_t read_back;   /* bytes hashed by reading them back (atomic) */
    char *model, *profile, *prov;
    uint32_t align, part_index, part_count;
    wdecl *d;
    size_t n, cap;
    int laid_out;
    uint8_t *region;      /* header region [0, data_offset) */
    uint64_t data_offset, file_size;
    pthread_mutex_t fail_mu;
    int failed;           /* a write failed: commit must refuse */
    int dfd;              /* O_DIRECT descriptor of the temp file; -1: none */
    int dfd_ok;           /* (atomic) 0 once the file system refused an O_DIRECT write */
    struct dio {          /* the O_DIRECT writer thread and its queue (under mu) */
        pthread_t th;
        int on;
        pthread_mutex_t mu;
        pthread_cond_t cv;
        uint8_t *pool[NBOUNCE];   /* free bounce buffers */
        int npool;
        struct dreq { uint8_t *buf; size_t len; uint64_t off; } q[NBOUNCE];
        unsigned head, tail;
        int pending, stop, rc;    /* queued or being written; the first failure */
        wp_err e;
    } dio;
};

static void dio_start(wpk_writer *w);
static void dio_stop(wpk_writer *w);
static int dio_drain(wpk_writer *w, wp_err *e);

static char *json_or_empty(const char *s, const char *what, const char *path, wp_err *e)
{
    if (!s) s = "{}";
    cJSON *j = cJSON_Parse(s);
    int ok = j && cJSON_IsObject(j);
    cJSON_Delete(j);
    if (!ok) {
        wp_fail(e, WP_EUSAGE, "%s: %s is not a JSON object", path, what);
        return NULL;
    }
    return wp_strdup(s, e);
}

/* Files from this size on are written around the page cache; a smaller one
 * is written faster through it (its fsync makes one large write of it). */
#define DIRECT_MIN (64ull << 20)

/* A second open file description of the temp file, with O_DIRECT (the same
 * inode, checked), for a file of at least DIRECT_MIN bytes, or any with
 * WPACK_DIRECT_OUT=1; WPACK_DIRECT_OUT=0 or a refusal: none, all buffered. */
static void open_direct(wpk_writer *w)
{
    int mode = wp_direct_out_env();
    if (mode == WP_DIRECT_OFF || (w->file_size < DIRECT_MIN && mode != WP_DIRECT_FORCE)) return;
    int fd = wp_reopen(w->out.fd, O_WRONLY | O_DIRECT);
    w->dfd = fd;
    w->dfd_ok = fd >= 0;
    if (fd >= 0) dio_start(w);
    /* no read-ahead on the buffered descriptor: a read-back must bring in only
     * the written bytes it asks for, never blocks an O_DIRECT write of
     * another thread may be landing in (such a page could stay cached with
     * the old bytes) */
    if (fd >= 0) posix_fadvise(w->out.fd, 0, 0, POSIX_FADV_RANDOM);
}

int wpk_writer_open(wpk_writer **out, const char *path, const wpk_opts *o, wp_err *e)
{
    static const wpk_opts none;
    if (!o) o = &none;
    *out = NULL;
    uint32_t align = o->align ? o->align : WPK_ALIGN_DEFAULT;
    if (align & (align - 1) || align < (1u << WPK_ALIGN_LOG2_MIN) || align > (1u << WPK_ALIGN_LOG2_MAX))
        return wp_fail(e, WP_EUSAGE, "%s: alignment %u is not a power of two in [4096, 2^30]",
                       path, align);
    uint32_t pc = o->part_count ? o->part_count : 1;
    if (o->part_index >= pc)
        return wp_fail(e, WP_EUSAGE, "%s: part %u of %u", path, o->part_index, pc);
    wpk_writer *w = wp_calloc(1, sizeof *w, e);
    if (!w) return WP_ENOMEM;
    w->out.fd = -1;
    w->dfd = -1;
    w->align = align;
    w->part_index = o->part_index;
    w->part_count = pc;
    w->shard_size = o->shard_size ? o->shard_size : WPK_SHARD_SIZE_DEFAULT;
    if (w->shard_size < 4096 || w->shard_size > (1ull << 40)) {
        wpk_writer_abort(w);
        return wp_fail(e, WP_EUSAGE, "%s: shard size %llu is outside [4096, 2^40]", path,
                       (unsigned long long)o->shard_size);
    }
    pthread_mutex_init(&w->fail_mu, NULL);
    if (!(w->model = json_or_empty(o->model_json, "model_json", path, e)) ||
        !(w->profile = json_or_empty(o->profile_json, "profile_json", path, e)) ||
        !(w->prov = json_or_empty(o->provenance_json, "provenance_json", path, e))) {
        int rc = e ? e->code : WP_EUSAGE;
        wpk_writer_abort(w);
        return rc ? rc : WP_EUSAGE;
    }
    int rc = wp_out_open(&w->out, path, e);
    if (rc) {
        wpk_writer_abort(w);
        return rc;
    }
    *out = w;
    return 0;
}

static void free_decl(wdecl *d)
{
    free(d->name);
    for (size_t k = 0; k < d->d.n_sources; k++) free(d->src[k]);
    free(d->src);
    free(d->spans);
    if (d->h_open) wp_sha256_free(&d->h);
    pthread_mutex_destroy(&d->mu);
}

void wpk_writer_abort(wpk_writer *w)
{
    if (!w) return;
    wp_out_abort(&w->out);   /* no-op after a commit; unlinks the temp file otherwise */
    for (size_t i = 0; i < w->n; i++) free_decl(&w->d[i]);
    for (size_t i = 0; i < w->nsh; i++) {
        if (w->sh[i].h_open) wp_sha256_free(&w->sh[i].h);
        free(w->sh[i].sp);
        pthread_mutex_destroy(&w->sh[i].mu);
    }
    free(w->sh);
    free(w->d);
    free(w->model);
    free(w->profile);
    free(w->prov);
    free(w->region);
    dio_stop(w);
    if (w->dfd >= 0) close(w->dfd);
    pthread_mutex_destroy(&w->fail_mu);
    free(w);
}

int wpk_writer_add(wpk_writer *w, const wpk_decl *d, size_t *id, wp_err *e)
{
    const char *path = w->out.path;
    if (w->laid_out)
        return wp_fail(e, WP_EUSAGE, "%s: %s: declared after the layout was fixed", path,
                       d->name ? d->name : "?");
    if (!d->name) return wp_fail(e, WP_EUSAGE, "%s: tensor #%zu has no name", path, w->n);
    const char *why = wpk_name_problem(d->name, strlen(d->name));
    if (why) return wp_fail(e, WP_EUSAGE, "%s: tensor #%zu: %s", path, w->n, why);
    if (w->n >= WPK_MAX_TENSORS)
        return wp_fail(e, WP_EUSAGE, "%s: %s: more than %u tensors", path, d->name, WPK_MAX_TENSORS);
    if (d->n_sources && !d->sources)
        return wp_fail(e, WP_EUSAGE, "%s: %s: %zu sources but no source list", path, d->name, d->n_sources);
    if (d->role != WPK_ROLE_DATA && d->owner >= w->n)
        return wp_fail(e, WP_EUSAGE, "%s: %s: owner id %zu is not a declared tensor", path,
                       d->name, d->owner);
    if (w->n == w->cap) {
        size_t cap = w->cap ? 2 * w->cap : 64;
        wdecl *nd = realloc(w->d, cap * sizeof *nd);
        if (!nd) return wp_oom(e, "%s", path);
        w->d = nd;
        w->cap = cap;
    }
    wdecl *x = &w->d[w->n];
    memset(x, 0, sizeof *x);
    pthread_mutex_init(&x->mu, NULL);
    x->d = *d;
    x->d.n_sources = 0;
    if (!(x->name = wp_strdup(d->name, e))) goto nomem;
    x->d.name = x->name;
    if (d->n_sources) {
        if (!(x->src = wp_calloc(d->n_sources, sizeof *x->src, e))) goto nomem;
        for (size_t k = 0; k < d->n_sources; k++) {
            why = d->sources[k] ? wpk_name_problem(d->sources[k], strlen(d->sources[k])) : "NULL";
            if (why) {
                x->d.n_sources = k;
                free_decl(x);
                return wp_fail(e, WP_EUSAGE, "%s: %s: source #%zu: %s", path, d->name, k, why);
            }
            if (!(x->src[k] = wp_strdup(d->sources[k], e))) {
                x->d.n_sources = k;
                goto nomem;
            }
        }
        x->d.n_sources = d->n_sources;
    }
    x->d.sources = (const char *const *)x->src;
    *id = w->n++;
    return 0;
nomem:
    free_decl(x);
    return WP_ENOMEM;
}

/* Directory index of the scale (role) of weight i, or WPK_NONE. */
static uint32_t aux_of(const wpk_writer *w, size_t i, wpk_role role)
{
    for (size_t k = 0; k < w->n; k++)
        if (w->d[k].d.role == role && w->d[k].d.owner == i) return (uint32_t)k;
    return WPK_NONE;
}

/* Fill the header region for the current declarations and digests. */
static int build_region(wpk_writer *w, int with_digests, wp_err *e)
{
    const char *path = w->out.path;
    /* String area: the three JSON texts, then every name and source. */
    uint64_t str_size = 0, src_count = 0, sz;
    str_size += strlen(w->model) + 1 + strlen(w->profile) + 1 + strlen(w->prov) + 1;
    for (size_t i = 0; i < w->n; i++) {
        str_size += strlen(w->d[i].name) + 1;
        for (size_t k = 0; k < w->d[i].d.n_sources; k++) str_size += strlen(w->d[i].src[k]) + 1;
        src_count += w->d[i].d.n_sources;
    }
    if (str_size > WPK_MAX_STRINGS || src_count > WPK_MAX_SOURCES)
        return wp_fail(e, WP_EUSAGE, "%s: %llu string bytes / %llu sources exceed the format's limits",
                       path, (unsigned long long)str_size, (unsigned long long)src_count);
    uint64_t src_off = WPK_HEADER_SIZE + (uint64_t)w->n * WPK_ENTRY_SIZE;
    uint64_t str_off = src_off + 16 * src_count;
    uint64_t data_off = wp_align_up(str_off + str_size, w->align);
    if (!w->region) {
        if (!(w->region = wp_calloc(1, (size_t)data_off, e))) return WP_ENOMEM;
    } else {
        memset(w->region, 0, (size_t)data_off);
    }
    uint8_t *str = w->region + str_off;
    uint64_t sp = 0;
#define PUT_STR(s, ref) do { size_t l_ = strlen(s); memcpy(str + sp, (s), l_); \
        (ref).off = sp; (ref).len = l_; sp += l_ + 1; } while (0)
    wpk_hdr h;
    memset(&h, 0, sizeof h);
    memcpy(h.magic, WPK_MAGIC, 8);
    h.version_major = WPK_VERSION_MAJOR;
    h.version_minor = WPK_VERSION_MINOR;
    h.endian = WPK_ENDIAN_TAG;
    h.header_size = WPK_HEADER_SIZE;
    h.align_log2 = (uint32_t)__builtin_ctz(w->align);
    h.entry_size = WPK_ENTRY_SIZE;
    h.tensor_count = w->n;
    h.dir_offset = WPK_HEADER_SIZE;
    h.dir_size = (uint64_t)w->n * WPK_ENTRY_SIZE;
    h.src_offset = src_off;
    h.src_count = src_count;
    h.str_offset = str_off;
    h.str_size = str_size;
    h.data_offset = data_off;
    h.part_index = w->part_index;
    h.part_count = w->part_count;
    PUT_STR(w->model, h.model_json);
    PUT_STR(w->profile, h.profile_json);
    PUT_STR(w->prov, h.provenance_json);
    uint64_t at = data_off, src_next = 0;
    for (size_t i = 0; i < w->n; i++) {
        wdecl *x = &w->d[i];
        wpk_dirent de;
        memset(&de, 0, sizeof de);
        wpk_ref r;
        PUT_STR(x->name, r);
        de.name_off = r.off;
        de.name_len = (uint32_t)r.len;
        de.enc = (uint16_t)wpk_code_of(x->d.kind, x->d.enc, x->d.dtype);
        de.ndim = (uint8_t)(x->d.ndim >= 0 && x->d.ndim <= 255 ? x->d.ndim : 255);
        de.flags = x->d.stacked ? WPK_FLAG_STACKED : 0;
        for (int k = 0; k < WP_MAX_DIMS && k < x->d.ndim; k++) de.shape[k] = x->d.shape[k];
        if (wpk_tensor_bytes(x->d.kind, x->d.enc, x->d.dtype, x->d.ndim, x->d.shape, x->d.stacked,
                             &sz)) {
            char sh[32];
            snprintf(sh, sizeof sh, "%d-D", x->d.ndim);
            return wp_fail(e, WP_EUSAGE, "%s: %s: shape (%s%s) is not valid for %s", path, x->name,
                           sh, x->d.stacked ? ", stacked" : "",
                           wpk_code_name(de.enc) ? wpk_code_name(de.enc) : "an unknown encoding");
        }
        de.size = sz;
        de.offset = at;
        de.expert_stride = x->d.stacked ? sz / x->d.shape[0] : 0;
        de.scale_index = aux_of(w, i, WPK_ROLE_SCALE);
        de.global_index = aux_of(w, i, WPK_ROLE_GLOBAL);
        de.owner_index = x->d.role == WPK_ROLE_DATA ? WPK_NONE : (uint32_t)x->d.owner;
        if (x->d.kind == WPK_KIND_ENC && x->d.enc == WP_ENC_FP8) {
            de.block_rows = x->d.br;
            de.block_cols = x->d.bc;
            de.scale_fmt = x->d.sfmt == WP_SCALE_F32 ? 1 : 0;
        } else if (x->d.kind == WPK_KIND_ENC && x->d.enc == WP_ENC_MXFP4) {
            de.block_rows = 1, de.block_cols = 32;
        } else if (x->d.kind == WPK_KIND_ENC && x->d.enc == WP_ENC_NVFP4) {
            de.block_rows = 1, de.block_cols = 16;
        }
        de.src_count = (uint32_t)x->d.n_sources;
        de.src_first = src_next;
        for (size_t k = 0; k < x->d.n_sources; k++) {
            wpk_ref sr;
            PUT_STR(x->src[k], sr);
            memcpy(w->region + src_off + 16 * src_next++, &sr, sizeof sr);
        }
        if (with_digests) memcpy(de.sha256, x->digest, 32);
        memcpy(w->region + WPK_HEADER_SIZE + i * WPK_ENTRY_SIZE, &de, sizeof de);
        x->offset = at;
        x->size = sz;
        if (wp_add_u64(at, sz, &at))
            return wp_fail(e, WP_EUSAGE, "%s: %s: file size overflows", path, x->name);
        if (i + 1 < w->n) at = wp_align_up(at, w->align);
    }
#undef PUT_STR
    h.file_size = at;
    memcpy(w->region, &h, sizeof h);
    w->data_offset = data_off;
    w->file_size = at;
    return 0;
}


/* ---- shard digests ------------------------------------------------------------ */

/* Under sh->mu: hash every waiting piece that now starts at the cursor. */
static int shard_drain(wpk_writer *w, shard *sh, wp_err *e)
{
    uint8_t *buf = NULL;
    int rc = 0;
    while (!rc && sh->n && sh->sp[0].a == sh->cursor) {
        sspan p = sh->sp[0];
        if (p.zero) {
            wp_sha256_zeros(&sh->h, p.b - p.a);
        } else {
            if (!buf && !(buf = wp_malloc(1u << 20, e))) return WP_ENOMEM;
            rc = dio_drain(w, e);   /* the bytes may still be queued for O_DIRECT */
            for (uint64_t x = p.a; x < p.b && !rc;) {
                size_t k = p.b - x < (1u << 20) ? (size_t)(p.b - x) : (1u << 20);
                rc = wp_pread_full(w->out.fd, buf, k, x, w->out.tmp, e);
                if (!rc) wp_sha256_update(&sh->h, buf, k);
                x += k;
            }
            __atomic_add_fetch(&w->read_back, p.b - p.a, __ATOMIC_RELAXED);
        }
        sh->cursor = p.b;
        memmove(sh->sp, sh->sp + 1, (sh->n - 1) * sizeof *sh->sp);
        sh->n--;
    }
    free(buf);
    if (!rc && sh->cursor == sh->b && !sh->done) {
        wp_sha256_final(&sh->h, sh->digest);
        sh->h_open = 0;
        sh->done = 1;
    }
    return rc;
}

/* File bytes [a, b) are final (written, or zero padding when buf is NULL):
 * feed them to every shard they touch. */
static int shard_feed(wpk_writer *w, uint64_t a, uint64_t b, const uint8_t *buf, wp_err *e)
{
    int rc = 0;
    while (!rc && a < b) {
        size_t k = (size_t)(a / w->shard_size);
        if (k >= w->nsh) return wp_fail(e, WP_EINVAL, "%s: byte %llu past the end", w->out.path, (unsigned long long)a);
        shard *sh = &w->sh[k];
        uint64_t end = b < sh->b ? b : sh->b;
        pthread_mutex_lock(&sh->mu);
        if (sh->done || a < sh->cursor) {
            rc = wp_fail(e, WP_EINVAL, "%s: bytes [%llu, %llu) hashed twice", w->out.path, (unsigned long long)a,
                         (unsigned long long)end);
        } else if (a == sh->cursor) {
            if (buf) wp_sha256_update(&sh->h, buf, (size_t)(end - a));
            else wp_sha256_zeros(&sh->h, end - a);
            sh->cursor = end;
            rc = shard_drain(w, sh, e);
        } else {
            size_t pos = sh->n;
            while (pos > 0 && sh->sp[pos - 1].a > a) pos--;
            if (sh->n == sh->cap) {
                size_t cap = sh->cap ? 2 * sh->cap : 8;
                sspan *ns = realloc(sh->sp, cap * sizeof *ns);
                if (!ns) rc = wp_oom(e, "%s", w->out.path);
                else sh->sp = ns, sh->cap = cap;
            }
            if (!rc) {
                memmove(sh->sp + pos + 1, sh->sp + pos, (sh->n - pos) * sizeof *sh->sp);
                sh->sp[pos] = (sspan){a, end, buf == NULL};
                sh->n++;
            }
        }
        pthread_mutex_unlock(&sh->mu);
        if (buf) buf += end - a;
        a = end;
    }
    return rc;
}

static int shards_init(wpk_writer *w, wp_err *e)
{
    uint64_t S = w->shard_size;
    w->nsh = (size_t)((w->file_size - 1) / S + 1);   /* file_size >= data_offset > 0 */
    if (!(w->sh = wp_calloc(w->nsh, sizeof *w->sh, e))) {
        w->nsh = 0;
        return WP_ENOMEM;
    }
    for (size_t k = 0; k < w->nsh; k++) {
        shard *sh = &w->sh[k];
        pthread_mutex_init(&sh->mu, NULL);
        sh->a = sh->cursor = (uint64_t)k * S;
        sh->b = sh->a + S < w->file_size ? sh->a + S : w->file_size;
        if (wp_sha256_init(&sh->h, e)) return WP_ENOMEM;
        sh->h_open = 1;
    }
    /* the zero padding between tensors is known now */
    for (size_t i = 0; i + 1 < w->n; i++) {
        uint64_t end = w->d[i].offset + w->d[i].size, next = w->d[i + 1].offset;
        int rc = end < next ? shard_feed(w, end, next, NULL, e) : 0;
        if (rc) return rc;
    }
    return 0;
}

int wpk_writer_layout(wpk_writer *w, wp_err *e)
{
    if (w->laid_out) return 0;
    int rc = build_region(w, 0, e);
    if (rc) return rc;
    /* The reader's validator is the single statement of the rules: whatever
     * the caller declared must pass it, or nothing is written. */
    wpk_parsed p;
    wp_err pe = {0};
    rc = wpk_parse(w->region, w->data_offset, w->file_size, w->out.path, WPK_PARSE_NO_DIGEST, &p, &pe);
    if (rc) return wp_fail(e, WP_EUSAGE, "%s", pe.msg);
    wpk_parsed_free(&p);
    if (ftruncate(w->out.fd, (off_t)w->file_size) != 0)
        return wp_fail_errno(e, "%s: cannot size the output to %llu bytes", w->out.path,
                             (unsigned long long)w->file_size);
    for (size_t i = 0; i < w->n; i++) {
        if (wp_sha256_init(&w->d[i].h, e)) return WP_ENOMEM;
        w->d[i].h_open = 1;
        if (w->d[i].size == 0) {
            wp_sha256_final(&w->d[i].h, w->d[i].digest);
            w->d[i].h_open = 0;
            w->d[i].done = 1;
        }
    }
    if ((rc = shards_init(w, e))) return rc;
    open_direct(w);
    w->laid_out = 1;
    return 0;
}

uint64_t wpk_writer_offset(const wpk_writer *w, size_t id)
{
    return w->laid_out && id < w->n ? w->d[id].offset : 0;
}

uint64_t wpk_writer_size(const wpk_writer *w, size_t id)
{
    return w->laid_out && id < w->n ? w->d[id].size : 0;
}

/* A write that returned r <= 0 (0: no room), as one line. */
static int write_failed(ssize_t r, const char *path, wp_err *e)
{
    if (r == 0) errno = ENOSPC;
    return errno == ENOSPC ? wp_fail(e, WP_EIO, "%s: no space left on device", path)
                           : wp_fail_errno(e, "%s: write failed", path);
}

static int pwrite_all(int fd, const uint8_t *p, size_t n, uint64_t off, const char *path, wp_err *e)
{
    while (n) {
        ssize_t r = pwrite(fd, p, n, (off_t)off);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) return write_failed(r, path, e);
        p += r, n -= (size_t)r, off += (uint64_t)r;
    }
    return 0;
}

/* O_DIRECT pwrite of n bytes (offset, length, address aligned); a refusal
 * (EINVAL, or a short write off alignment) writes the rest through the page
 * cache, and nothing more goes with O_DIRECT. */
static int direct_all(wpk_writer *w, const uint8_t *p, size_t n, uint64_t off, wp_err *e)
{
    while (n) {
        if (!__atomic_load_n(&w->dfd_ok, __ATOMIC_RELAXED)) return pwrite_all(w->out.fd, p, n, off, w->out.path, e);
        ssize_t r = wp_fault(WP_STEP_WRITE, w->out.tmp) != 0 ? -1 : pwrite(w->dfd, p, n, (off_t)off);
        if (r < 0 && errno == EINTR) continue;
        if ((r < 0 && errno == EINVAL) || (r > 0 && (size_t)r % DIO_ALIGN)) {
            __atomic_store_n(&w->dfd_ok, 0, __ATOMIC_RELAXED);
            if (r < 0) continue;
        } else if (r <= 0) {
            return write_failed(r, w->out.path, e);
        }
        p += r, n -= (size_t)r, off += (uint64_t)r;
    }
    return 0;
}

/* The writer thread: queued requests in order, each buffer back to the pool. */
static void *dio_main(void *arg)
{
    wpk_writer *w = arg;
    struct dio *d = &w->dio;
    pthread_mutex_lock(&d->mu);
    for (;;) {
        while (d->head == d->tail && !d->stop) pthread_cond_wait(&d->cv, &d->mu);
        if (d->head == d->tail) break;
        struct dreq r = d->q[d->head++ % NBOUNCE];
        int failed = d->rc;
        pthread_mutex_unlock(&d->mu);
        wp_err e = {0};
        int rc = failed ? 0 : direct_all(w, r.buf, r.len, r.off, &e);
        pthread_mutex_lock(&d->mu);
        if (rc && !d->rc) {
            d->rc = rc;
            d->e = e;
        }
        d->pool[d->npool++] = r.buf;
        d->pending--;
        pthread_cond_broadcast(&d->cv);
    }
    pthread_mutex_unlock(&d->mu);
    return NULL;
}

static void dio_start(wpk_writer *w)
{
    struct dio *d = &w->dio;
    pthread_mutex_init(&d->mu, NULL);
    pthread_cond_init(&d->cv, NULL);
    for (d->npool = 0; d->npool < NBOUNCE; d->npool++)
        if (!(d->pool[d->npool] = aligned_alloc(DIO_ALIGN, BOUNCE))) break;
    d->on = d->npool == NBOUNCE && pthread_create(&d->th, NULL, dio_main, w) == 0;
}

static void dio_stop(wpk_writer *w)
{
    struct dio *d = &w->dio;
    if (d->on) {
        pthread_mutex_lock(&d->mu);
        d->stop = 1;
        pthread_cond_broadcast(&d->cv);
        pthread_mutex_unlock(&d->mu);
        pthread_join(d->th, NULL);
        d->on = 0;
    }
    if (w->dfd < 0) return;
    for (int i = 0; i < d->npool; i++) free(d->pool[i]);
    d->npool = 0;
    pthread_cond_destroy(&d->cv);
    pthread_mutex_destroy(&d->mu);
}

/* Wait until every queued O_DIRECT write is on the file: before a
 * read-back and before commit.  Its first failure, if any. */
static int dio_drain(wpk_writer *w, wp_err *e)
{
    struct dio *d = &w->dio;
    if (!d->on) return 0;
    pthread_mutex_lock(&d->mu);
    while (d->pending) pthread_cond_wait(&d->cv, &d->mu);
    int rc = d->rc;
    if (rc) wp_fail(e, rc, "%s", d->e.msg);
    pthread_mutex_unlock(&d->mu);
    return rc;
}

/* Write a chunk at file offset pos: its whole 4096-byte blocks copied into
 * bounce buffers and queued for the O_DIRECT writer thread (the caller goes
 * on reading and encoding meanwhile), its partial end blocks through the
 * page cache, here. */
static int write_chunk(wpk_writer *w, const uint8_t *p, size_t n, uint64_t pos, wp_err *e)
{
    struct dio *d = &w->dio;
    uint64_t a = (pos + DIO_ALIGN - 1) & ~(uint64_t)(DIO_ALIGN - 1), b = (pos + n) & ~(uint64_t)(DIO_ALIGN - 1);
    if (!d->on || !__atomic_load_n(&w->dfd_ok, __ATOMIC_RELAXED) || b <= a)
        return pwrite_all(w->out.fd, p, n, pos, w->out.path, e);
    int rc = a > pos ? pwrite_all(w->out.fd, p, (size_t)(a - pos), pos, w->out.path, e) : 0;
    for (uint64_t at = a; !rc && at < b;) {
        size_t k = b - at < BOUNCE ? (size_t)(b - at) : BOUNCE;
        pthread_mutex_lock(&d->mu);
        while (!d->npool && !d->rc) pthread_cond_wait(&d->cv, &d->mu);
        if ((rc = d->rc)) {
            wp_fail(e, rc, "%s", d->e.msg);
            pthread_mutex_unlock(&d->mu);
            break;
        }
        uint8_t *buf = d->pool[--d->npool];
        pthread_mutex_unlock(&d->mu);
        memcpy(buf, p + (at - pos), k);
        pthread_mutex_lock(&d->mu);
        d->q[d->tail++ % NBOUNCE] = (struct dreq){buf, k, at};
        d->pending++;
        pthread_cond_broadcast(&d->cv);
        pthread_mutex_unlock(&d->mu);
        at += k;
    }
    if (!rc && pos + n > b) rc = pwrite_all(w->out.fd, p + (b - pos), (size_t)(pos + n - b), b, w->out.path, e);
    return rc;
}

/* Hash [cursor, b) of tensor x by reading it back from the temp file. */
static int hash_readback(wpk_writer *w, wdecl *x, uint64_t b, wp_err *e)
{
    int rd = dio_drain(w, e);   /* the bytes may still be queued for O_DIRECT */
    if (rd) return rd;
    size_t bufsz = 1u << 20;
    uint8_t *buf = wp_malloc(bufsz, e);
    if (!buf) return WP_ENOMEM;
    while (x->cursor < b) {
        size_t n = b - x->cursor < bufsz ? (size_t)(b - x->cursor) : bufsz;
        int rc = wp_pread_full(w->out.fd, buf, n, x->offset + x->cursor, w->out.tmp, e);
        if (rc) {
            free(buf);
            return rc;
        }
        wp_sha256_update(&x->h, buf, n);
        x->cursor += n;
        __atomic_add_fetch(&w->read_back, n, __ATOMIC_RELAXED);
    }
    free(buf);
    return 0;
}

static int writer_failed(wpk_writer *w, int rc)
{
    pthread_mutex_lock(&w->fail_mu);
    w->failed = 1;
    pthread_mutex_unlock(&w->fail_mu);
    return rc;
}

int wpk_writer_write(wpk_writer *w, size_t id, uint64_t off, const void *buf, size_t n, wp_err *e)
{
    const char *path = w->out.path;
    if (!w->laid_out) return wp_fail(e, WP_EUSAGE, "%s: write before wpk_writer_layout", path);
    if (id >= w->n) return wp_fail(e, WP_EUSAGE, "%s: no tensor id %zu", path, id);
    wdecl *x = &w->d[id];
    uint64_t a = off, b;
    if (wp_add_u64(off, n, &b) || b > x->size)
        return wp_fail(e, WP_EUSAGE, "%s: %s: write [%llu, +%zu) past its %llu bytes", path, x->name,
                       (unsigned long long)off, n, (unsigned long long)x->size);
    if (n == 0) return 0;
    /* Reserve [a, b): it may overlap neither the hashed prefix nor a span. */
    pthread_mutex_lock(&x->mu);
    size_t pos = 0;
    while (pos < x->nspans && x->spans[pos].a < a) pos++;
    int overlap = a < x->cursor || (pos > 0 && x->spans[pos - 1].b > a) ||
                  (pos < x->nspans && x->spans[pos].a < b);
    if (overlap) {
        pthread_mutex_unlock(&x->mu);
        return writer_failed(w, wp_fail(e, WP_EUSAGE, "%s: %s: bytes [%llu, %llu) written twice",
                                        path, x->name, (unsigned long long)a, (unsigned long long)b));
    }
    if (x->nspans == x->capspans) {
        size_t cap = x->capspans ? 2 * x->capspans : 8;
        span *ns = realloc(x->spans, cap * sizeof *ns);
        if (!ns) {
            pthread_mutex_unlock(&x->mu);
            return writer_failed(w, wp_oom(e, "%s", path));
        }
        x->spans = ns;
        x->capspans = cap;
    }
    memmove(x->spans + pos + 1, x->spans + pos, (x->nspans - pos) * sizeof *x->spans);
    x->spans[pos] = (span){a, b, 0};
    x->nspans++;
    pthread_mutex_unlock(&x->mu);

    int rc = write_chunk(w, buf, n, x->offset + off, e);
    if (rc) return writer_failed(w, rc);
    /* write-behind: start write-back of these bytes now, so the disk writes
     * while the next ones are read and encoded and the fsync before the file
     * is named finds little dirty (a hint: an error resurfaces at that fsync) */
    (void)sync_file_range(w->out.fd, (off_t)(x->offset + off), (off_t)n, SYNC_FILE_RANGE_WRITE);

    /* Mark written and advance the hash cursor over every written span. */
    pthread_mutex_lock(&x->mu);
    for (size_t k = 0; k < x->nspans; k++)
        if (x->spans[k].a == a) x->spans[k].written = 1;
    while (!rc && x->nspans && x->spans[0].written && x->spans[0].a == x->cursor) {
        span s = x->spans[0];
        if (s.a == a && s.b == b) {
            wp_sha256_update(&x->h, buf, n);   /* our own chunk: no read-back */
            x->cursor = b;
        } else {
            rc = hash_readback(w, x, s.b, e);
        }
        memmove(x->spans, x->spans + 1, (x->nspans - 1) * sizeof *x->spans);
        x->nspans--;
    }
    if (!rc && x->cursor == x->size && !x->done) {
        wp_sha256_final(&x->h, x->digest);
        x->h_open = 0;
        x->done = 1;
    }
    pthread_mutex_unlock(&x->mu);
    if (!rc) rc = shard_feed(w, x->offset + a, x->offset + b, buf, e);
    return rc ? writer_failed(w, rc) : 0;
}

int wpk_writer_digest(const wpk_writer *w, size_t id, uint8_t out[WP_SHA256_LEN], wp_err *e)
{
    if (id >= w->n || !w->laid_out)
        return wp_fail(e, WP_EUSAGE, "%s: no tensor id %zu", w->out.path, id);
    wdecl *x = &w->d[id];
    pthread_mutex_lock(&x->mu);
    int done = x->done;
    if (done) memcpy(out, x->digest, 32);
    pthread_mutex_unlock(&x->mu);
    if (!done)
        return wp_fail(e, WP_EUSAGE, "%s: %s: only %llu of %llu bytes written", w->out.path,
                       x->name, (unsigned long long)x->cursor, (unsigned long long)x->size);
    return 0;
}

int wpk_writer_commit(wpk_writer *w, wp_err *e) { return wpk_writer_commit_digests(w, NULL, e); }

void wpk_digests_free(wpk_digests *d)
{
    if (!d) return;
    free(d->shards);
    memset(d, 0, sizeof *d);
}

/* The header region is final: it completes shard 0 (and any shard it
 * reaches); hash the non-tensor bytes (region + padding) from memory. */
static int finish_digests(wpk_writer *w, wpk_digests *out, wp_err *e)
{
    int rc = shard_feed(w, 0, w->data_offset, w->region, e);
    for (size_t k = 0; !rc && k < w->nsh; k++)
        if (!w->sh[k].done)
            rc = wp_fail(e, WP_EINVAL, "%s: shard %zu: only %llu of bytes [%llu, %llu) hashed", w->out.path, k,
                         (unsigned long long)(w->sh[k].cursor - w->sh[k].a), (unsigned long long)w->sh[k].a,
                         (unsigned long long)w->sh[k].b);
    if (rc || !out) return rc;
    memset(out, 0, sizeof *out);
    wp_sha256 h;
    if ((rc = wp_sha256_init(&h, e))) return rc;
    wp_sha256_update(&h, w->region, (size_t)w->data_offset);
    for (size_t i = 0; i + 1 < w->n; i++) wp_sha256_zeros(&h, w->d[i + 1].offset - (w->d[i].offset + w->d[i].size));
    wp_sha256_final(&h, out->nontensor);
    if (!(out->shards = wp_calloc(w->nsh, sizeof *out->shards, e))) return WP_ENOMEM;
    for (size_t k = 0; k < w->nsh; k++) memcpy(out->shards[k], w->sh[k].digest, 32);
    out->nshards = w->nsh;
    out->shard_size = w->shard_size;
    out->size = w->file_size;
    out->read_back = __atomic_load_n(&w->read_back, __ATOMIC_RELAXED);
    return 0;
}

int wpk_writer_commit_digests(wpk_writer *w, wpk_digests *out, wp_err *e)
{
    int rc = 0;
    if (out) memset(out, 0, sizeof *out);
    if (!w->laid_out && (rc = wpk_writer_layout(w, e))) goto out;
    if (w->failed) {
        rc = wp_fail(e, WP_EUSAGE, "%s: a tensor write failed; nothing committed", w->out.path);
        goto out;
    }
    if ((rc = dio_drain(w, e))) goto out;   /* every O_DIRECT write on the file, or its failure */
    for (size_t i = 0; i < w->n; i++)
        if (!w->d[i].done) {
            rc = wp_fail(e, WP_EUSAGE, "%s: %s: only %llu of %llu bytes written", w->out.path,
                         w->d[i].name, (unsigned long long)w->d[i].cursor,
                         (unsigned long long)w->d[i].size);
            goto out;
        }
    if ((rc = build_region(w, 1, e))) goto out;
    wpk_hdr h;
    memcpy(&h, w->region, sizeof h);
    if ((rc = wpk_header_digest(w->region, w->data_offset, h.header_sha256, e))) goto out;
    memcpy(w->region, &h, sizeof h);
    wpk_parsed p;
    wp_err pe = {0};
    if (wpk_parse(w->region, w->data_offset, w->file_size, w->out.path, 0, &p, &pe)) {
        rc = wp_fail(e, WP_EINVAL, "%s (writer self-check)", pe.msg);
        goto out;
    }
    wpk_parsed_free(&p);
    if ((rc = pwrite_all(w->out.fd, w->region, (size_t)w->data_offset, 0, w->out.path, e))) goto out;
    if ((rc = finish_digests(w, out, e))) goto out;
    rc = wp_out_commit(&w->out, e);
out:
    if (rc && out) wpk_digests_free(out);
    wpk_writer_abort(w);
    return rc;
}
