/*
 * check.c — the content checks of a checkpoint's tensors, in one place
 * (docs/convert.md "Content checks"): what the convert pipeline screens on
 * every band it reads, and what `wpack inspect --deep` runs over every byte
 * without building anything.
 *
 * The rules, by tensor:
 *   F32/F64/BF16/F16        no NaN or infinity
 *   F8_E4M3 / F8_E5M2       no NaN code (E4M3 0x7F/0xFF), no E5M2 inf/NaN code
 *   F8_E8M0                 no NaN scale (0xFF)
 *   X.scale of an FP8 or FP4 X.weight: no scale that makes its block
 *                           non-finite (largest decoded code x scale overflows)
 *   layers.L.ffn.gate.tid2eid (I64/I32): every entry in [0, n_routed_experts)
 *
 * Screening is cheap (quant/check.c: memory speed, no count); only a flagged
 * tensor is scanned again in full, element by element, to count and locate
 * what is wrong.  The one line names the file, the tensor, the rule, the
 * count and the first bad element's index (with its coordinates).
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <unistd.h>

#include "convert/convert.h"

#define CHUNK (4u << 20)   /* bytes per read: streams, bounded memory */

static const char *ends_with(const char *s, const char *suf)
{
    size_t n = strlen(s), m = strlen(suf);
    return n >= m && !strcmp(s + n - m, suf) ? s + n - m : NULL;
}

static int is_tid2eid(const wp_tensor_info *t)
{
    return (t->dtype == WP_I64 || t->dtype == WP_I32) && ends_with(t->name, ".ffn.gate.tid2eid");
}

static int is_scale(const wp_tensor_info *t)
{
    return (t->dtype == WP_F8_E8M0 || t->dtype == WP_F32) && ends_with(t->name, ".scale");
}

static const char *file_of(const wp_ckpt *k, const wp_tensor_info *t)
{
    return wp_st_path(wp_ckpt_file(k, (size_t)t->file));
}

/* Entries of an integer table outside [0, E): how many, the first. */
static uint64_t range_scan(wp_dtype dt, const uint8_t *p, size_t n, int64_t E, uint64_t *first, int64_t *val)
{
    uint64_t bad = 0;
    for (size_t i = 0; i < n; i++) {
        int64_t x;
        if (dt == WP_I64) memcpy(&x, p + 8 * i, 8);
        else {
            int32_t y;
            memcpy(&y, p + 4 * i, 4);
            x = y;
        }
        if (x < 0 || x >= E) {
            if (!bad) {
                *first = i;
                *val = x;
            }
            bad++;
        }
    }
    return bad;
}

int wp_check_screen(const wp_config *c, const wp_tensor_info *t, uint64_t off, const void *buf, size_t n)
{
    (void)off;
    unsigned bits = wp_dtype_bits(t->dtype);
    if (bits < 8 || !n) return 0;
    size_t cnt = n / (bits / 8);
    if (wp_dtype_screen(t->dtype, buf, cnt)) return 1;
    if (is_scale(t) && wp_scale_screen(t->dtype, buf, cnt)) return 1;
    if (c && is_tid2eid(t)) {
        uint64_t f;
        int64_t v;
        return range_scan(t->dtype, buf, cnt, c->n_routed_experts, &f, &v) != 0;
    }
    return 0;
}

/* " [i, j, ...]" for flat index i of a tensor of shape sh. */
static void coords(char *o, size_t n, const wp_tensor_info *t, uint64_t i)
{
    o[0] = 0;
    if (t->ndim < 2) return;
    uint64_t c[WP_MAX_DIMS];
    for (int d = t->ndim - 1; d >= 0; d--) {
        uint64_t s = t->shape[d] ? t->shape[d] : 1;
        c[d] = i % s;
        i /= s;
    }
    size_t k = (size_t)snprintf(o, n, " [");
    for (int d = 0; d < t->ndim && k < n; d++)
        k += (size_t)snprintf(o + k, n - k, "%s%llu", d ? ", " : "", (unsigned long long)c[d]);
    if (k < n) snprintf(o + k, n - k, "]");
}

static int report(const wp_ckpt *k, const wp_tensor_info *t, uint64_t bad, uint64_t first, const char *rule,
                  const char *extra, wp_err *e)
{
    char at[160];
    coords(at, sizeof at, t, first);
    return wp_fail(e, WP_EINVAL, "%s: %s: %llu %s, first at element %llu%s%s", file_of(k, t), t->name,
                   (unsigned long long)bad, rule, (unsigned long long)first, at, extra ? extra : "");
}

/* ---- scales against their blocks ----------------------------------------------------- */

/* The FP8 block the scale grid implies: the config's when it fits the
 * shapes, else 128 or 32 (V4, V4.1), else the grid's own ceil-division. */
static size_t fp8_block(size_t n, size_t ns, int cfg)
{
    if (cfg > 0 && (n + (size_t)cfg - 1) / (size_t)cfg == ns) return (size_t)cfg;
    if ((n + 127) / 128 == ns) return 128;
    if ((n + 31) / 32 == ns) return 32;
    return ns ? (n + ns - 1) / ns : 1;
}

/* w (an FP8 or packed FP4 weight) against its scale s: scales that make a
 * block non-finite.  Reads one band of blocks at a time. */
static int check_blocks(const wp_ckpt *k, const wp_config *c, const wp_tensor_info *w, const wp_tensor_info *s,
                        wp_err *e)
{
    if (w->ndim != 2 || s->ndim != 2) return 0;   /* not a pair the reader would take: the plan says why */
    int fp8 = w->dtype == WP_F8_E4M3;
    int fp4 = w->dtype == WP_I8 || w->dtype == WP_U8 || w->dtype == WP_F4;
    if (!fp8 && !fp4) return 0;
    /* I8/U8 hold two e2m1 codes per byte; F4 counts elements (spec §2.2) */
    size_t rows = (size_t)w->shape[0],
           cols = fp8 || w->dtype == WP_F4 ? (size_t)w->shape[1] : 2 * (size_t)w->shape[1];
    size_t srows = (size_t)s->shape[0], scols = (size_t)s->shape[1];
    size_t br, bc, ssz = s->dtype == WP_F32 ? 4 : 1;
    if (fp8) {
        br = fp8_block(rows, srows, c ? c->weight_block[0] : 0);
        bc = fp8_block(cols, scols, c ? c->weight_block[1] : 0);
        if ((rows + br - 1) / br != srows || (cols + bc - 1) / bc != scols) return 0;
    } else {
        if (s->dtype != WP_F8_E8M0 || cols % 32 || srows != rows || scols != cols / 32) return 0;
        br = 1;
        bc = 32;
    }
    /* the scales first (small): most tensors stop here */
    uint8_t *sc = malloc(s->nbytes ? (size_t)s->nbytes : 1);
    if (!sc) return wp_oom(e, "%s", s->name);
    int rc = wp_ckpt_read(k, s, 0, sc, (size_t)s->nbytes, e);
    if (rc || !wp_scale_screen(s->dtype, sc, srows * scols)) {
        free(sc);
        return rc;
    }
    size_t pitch = fp8 ? cols : cols / 2, band = br;   /* rows per read: whole block rows */
    if (fp4 && pitch) band = CHUNK / pitch ? CHUNK / pitch : 1;
    uint8_t *q = malloc(band * pitch + 1);
    if (!q) {
        free(sc);
        return wp_oom(e, "%s", w->name);
    }
    uint64_t bad = 0, first = UINT64_MAX;
    for (size_t r = 0; r < rows && !rc; r += band) {
        size_t nr = rows - r < band ? rows - r : band, f;
        if ((rc = wp_ckpt_read(k, w, (uint64_t)r * pitch, q, nr * pitch, e))) break;
        uint64_t nb, fi;
        if (fp8) {
            size_t sr = r / br;
            nb = wp_fp8_scan_blocks(q, sc + sr * scols * ssz, nr, cols, br, bc,
                                    s->dtype == WP_F32 ? WP_SCALE_F32 : WP_SCALE_E8M0, &fi);
            f = sr * scols;
        } else {
            nb = wp_mxfp4_scan_blocks(q, sc + r * scols, nr, cols, &fi);
            f = r * scols;
        }
        if (nb && first == UINT64_MAX) first = f + fi;
        bad += nb;
    }
    free(q);
    free(sc);
    if (rc || !bad) return rc;
    return report(k, s, bad, first, bad == 1 ? "scale makes its block non-finite" : "scales make their block non-finite",
                  fp8 ? " (largest code x scale overflows f32)" : " (largest e2m1 code x scale overflows f32)", e);
}

int wp_check_tensor(const wp_ckpt *k, const wp_config *c, const wp_tensor_info *t, wp_err *e)
{
    unsigned bits = wp_dtype_bits(t->dtype);
    int tid = c && is_tid2eid(t);
    if (bits >= 8 && (wp_dtype_has_nonfinite(t->dtype) || tid)) {
        size_t esz = bits / 8, chunk = CHUNK / esz * esz;
        uint8_t *buf = malloc(t->nbytes < chunk ? (size_t)t->nbytes + 1 : chunk);
        if (!buf) return wp_oom(e, "%s", t->name);
        uint64_t bad = 0, first = UINT64_MAX;
        int64_t val = 0;
        int rc = 0;
        for (uint64_t o = 0; o < t->nbytes && !rc; o += chunk) {
            size_t n = (size_t)(t->nbytes - o < chunk ? t->nbytes - o : chunk);
            if ((rc = wp_ckpt_read(k, t, o, buf, n, e))) break;
            uint64_t f;
            int64_t v = 0;
            uint64_t nb = tid ? range_scan(t->dtype, buf, n / esz, c->n_routed_experts, &f, &v)
                              : wp_dtype_scan(t->dtype, buf, n / esz, &f);
            if (nb && first == UINT64_MAX) {
                first = o / esz + f;
                val = v;
            }
            bad += nb;
        }
        free(buf);
        if (rc) return rc;
        if (bad && tid) {
            char rule[96], extra[64];
            snprintf(rule, sizeof rule, "%s outside [0, %d) (n_routed_experts)", bad == 1 ? "entry" : "entries",
                     c->n_routed_experts);
            snprintf(extra, sizeof extra, " (%lld)", (long long)val);
            return report(k, t, bad, first, rule, extra, e);
        }
        if (bad) return report(k, t, bad, first, wp_dtype_nonfinite_rule(t->dtype, bad != 1), NULL, e);
    }
    /* a weight and its scale: X.weight + X.scale, whichever was asked for */
    const char *suf = ends_with(t->name, ".scale");
    if (!suf) suf = ends_with(t->name, ".weight");
    if (!suf) return 0;
    size_t keep = (size_t)(suf - t->name);
    char *other = malloc(keep + 8);
    if (!other) return wp_oom(e, "%s", t->name);
    memcpy(other, t->name, keep);
    strcpy(other + keep, is_scale(t) ? ".weight" : ".scale");
    const wp_tensor_info *o = wp_ckpt_find(k, other);
    free(other);
    if (!o) return 0;
    return is_scale(t) ? check_blocks(k, c, o, t, e) : is_scale(o) ? check_blocks(k, c, t, o, e) : 0;
}

/* ---- the whole checkpoint: `wpack inspect --deep` --------------------------------------- */

typedef struct item {
    size_t tensor;      /* index in the checkpoint's (name-sorted) list */
    uint64_t off, len;
    uint64_t order;     /* (file, absolute offset): read the shards front to back */
} item;

typedef struct crun {
    const wp_ckpt *k;
    const wp_config *c;
    const wp_check_opts *o;
    item *items;
    size_t n_items, next;
    unsigned char *flag;   /* per tensor: a chunk was flagged */
    pthread_mutex_t mu;
    int failed;
    wp_err err;
    uint64_t done, total;
} crun;

static int cmp_item(const void *a, const void *b)
{
    const item *x = a, *y = b;
    return x->order < y->order ? -1 : x->order > y->order;
}

static void *cworker(void *arg)
{
    crun *r = arg;
    uint8_t *buf = malloc(CHUNK);
    wp_err e = {0};
    int rc = buf ? 0 : wp_oom(&e, "a %u-byte read buffer", CHUNK);
    for (;;) {
        pthread_mutex_lock(&r->mu);
        if (rc && !r->failed) {
            r->failed = 1;
            r->err = e;
        }
        size_t i = r->failed || (r->o->cancel && *r->o->cancel) ? r->n_items : r->next++;
        pthread_mutex_unlock(&r->mu);
        if (i >= r->n_items) break;
        const item *it = &r->items[i];
        const wp_tensor_info *t = wp_ckpt_tensor(r->k, it->tensor);
        rc = wp_ckpt_read(r->k, t, it->off, buf, (size_t)it->len, &e);
        if (rc) continue;
        posix_fadvise(wp_st_fd(wp_ckpt_file(r->k, (size_t)t->file)), (off_t)(t->offset + it->off), (off_t)it->len,
                      POSIX_FADV_DONTNEED);
        if (wp_check_screen(r->c, t, it->off, buf, (size_t)it->len)) r->flag[it->tensor] = 1;
        pthread_mutex_lock(&r->mu);
        r->done += it->len;
        if (r->o->progress) r->o->progress(r->o->progress_ud, "check", r->done, r->total);
        pthread_mutex_unlock(&r->mu);
    }
    free(buf);
    return NULL;
}

void wp_check_report_free(wp_check_report *r)
{
    if (!r) return;
    for (size_t i = 0; i < r->n_bad; i++) free(r->bad[i]);
    free(r->bad);
    memset(r, 0, sizeof *r);
}

int wp_ckpt_check(const wp_ckpt *k, const wp_config *c, const wp_check_opts *o, wp_check_report *r, wp_err *e)
{
    static const wp_check_opts none;
    if (!o) o = &none;
    memset(r, 0, sizeof *r);
    double t0 = wp_now();
    size_t nt = wp_ckpt_count(k), ni = 0;
    for (size_t i = 0; i < nt; i++) {
        const wp_tensor_info *t = wp_ckpt_tensor(k, i);
        ni += t->nbytes ? (size_t)((t->nbytes + CHUNK - 1) / CHUNK) : 0;
    }
    crun cr;
    memset(&cr, 0, sizeof cr);
    cr.k = k;
    cr.c = c;
    cr.o = o;
    cr.items = calloc(ni ? ni : 1, sizeof *cr.items);
    cr.flag = calloc(nt ? nt : 1, 1);
    if (!cr.items || !cr.flag) {
        free(cr.items);
        free(cr.flag);
        return wp_oom(e, "checking %zu tensors", nt);
    }
    for (size_t i = 0; i < nt; i++) {
        const wp_tensor_info *t = wp_ckpt_tensor(k, i);
        /* chunks hold whole elements (4 MiB is a multiple of every size) */
        for (uint64_t off = 0; off < t->nbytes; off += CHUNK)
            cr.items[cr.n_items++] = (item){i, off, t->nbytes - off < CHUNK ? t->nbytes - off : CHUNK,
                                            ((uint64_t)t->file << 48) | (t->offset + off)};
        cr.total += t->nbytes;
    }
    qsort(cr.items, cr.n_items, sizeof *cr.items, cmp_item);
    int threads = o->threads > 0 ? o->threads : (int)sysconf(_SC_NPROCESSORS_ONLN);
    if (threads < 1) threads = 1;
    if (threads > 256) threads = 256;
    if ((size_t)threads > cr.n_items && cr.n_items) threads = (int)cr.n_items;
    pthread_mutex_init(&cr.mu, NULL);
    pthread_t *tid = calloc((size_t)threads, sizeof *tid);
    int started = 0;
    for (int i = 0; tid && threads > 1 && i < threads; i++)
        if (pthread_create(&tid[i], NULL, cworker, &cr) == 0) started++;
    if (!started) cworker(&cr);
    for (int i = 0; i < started; i++) pthread_join(tid[i], NULL);
    free(tid);
    pthread_mutex_destroy(&cr.mu);
    r->threads = started ? started : 1;
    r->tensors = nt;
    r->bytes = cr.done;
    int rc = 0;
    if (cr.failed) rc = wp_fail_setting(e, cr.err.code ? cr.err.code : WP_EIO, cr.err.setting[0] ? cr.err.setting : NULL,
                                        "%s", cr.err.msg);
    else if (o->cancel && *o->cancel) rc = wp_fail(e, WP_EUSAGE, "interrupted");
    /* the flagged tensors, located one by one, in file order; the first is the error */
    size_t *order = NULL;
    if (!rc) {
        order = calloc(nt ? nt : 1, sizeof *order);
        if (!order) rc = wp_oom(e, "checking %zu tensors", nt);
    }
    size_t nf = 0;
    for (size_t i = 0; !rc && i < cr.n_items; i++) {
        size_t ti = cr.items[i].tensor;
        if (cr.flag[ti] == 1) {
            cr.flag[ti] = 2;
            order[nf++] = ti;
        }
    }
    for (size_t j = 0; !rc && j < nf; j++) {
        const wp_tensor_info *t = wp_ckpt_tensor(k, order[j]);
        wp_err te = {0};
        int trc = wp_check_tensor(k, c, t, &te);
        if (!trc) continue;   /* a large scale whose blocks stay finite */
        if (trc != WP_EINVAL) {
            rc = wp_fail(e, trc, "%s", te.msg);
            break;
        }
        r->bad_total++;
        if (r->n_bad < WP_CHECK_MAX_LINES) {
            char **v = realloc(r->bad, (r->n_bad + 1) * sizeof *v);
            char *s = v ? strdup(te.msg) : NULL;
            if (v) r->bad = v;
            if (!s) {
                rc = wp_oom(e, "check report");
                break;
            }
            r->bad[r->n_bad++] = s;
        }
        if (r->bad_total == 1) wp_fail(e, WP_EINVAL, "%s", te.msg);
    }
    free(order);
    free(cr.items);
    free(cr.flag);
    r->seconds = wp_now() - t0;
    if (!rc && r->bad_total) rc = WP_EINVAL;
    return rc;
}
