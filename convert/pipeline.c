/*
 * pipeline.c — the streaming executor of a plan (docs/convert.md).
 *
 * Worker threads take weights in plan order (which is shard order, so the
 * input is read nearly sequentially).  A weight is processed by one worker,
 * front to back, in work items: a chunk of bytes when they are copied, or a
 * band of rows (of a tensor, or of one expert's slice of a stack) when they
 * are re-encoded.  Each item reads its inputs with pread (wp_ckpt_read) into
 * the worker's own buffers — never mmap, whose pages would count in RSS —
 * and hands its outputs to the sink in order, so every output tensor is
 * hashed as it passes.  Band sizes are derived from the memory budget, so the
 * peak working set is threads x (one band) whatever the model size.
 */
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <unistd.h>

#include "convert/convert_priv.h"

/* Work items are sized for the core's L2 (issue 14): a copy chunk is read
 * into the worker's buffer, screened and hashed, and a band is read,
 * dequantised to f32 and encoded, so an item that fits in L2 is fetched from
 * memory once instead of once per step; with two workers sharing the memory
 * bus that is most of the difference (bench/convert_cpu.sh, CPU seconds).
 * FP8 sources keep the larger cap: their bands are rounded to the source's
 * 128-row blocks, so a smaller band would re-read each block. */
#define COPY_CHUNK (256u << 10)   /* bytes per copy item */
#define BAND_CAP_L2 (1u << 20)    /* working set per band */
#define BAND_CAP (8u << 20)       /* per band of an FP8 source (its block rows on top) */

enum { B_SRC, B_SSC, B_REF, B_CUT, B_OUT, B_OSC, B_DEQ, B_TMP, B_SLICE, B_COUNT };

typedef struct run {
    const wp_plan *p;
    const wp_sink *sink;
    const wp_convert_opts *o;
    uint64_t worker_budget;
    size_t next;               /* next position in order[] to take (under mu) */
    size_t *order;             /* weights, costliest first (NULL: plan order) */
    int failed;                /* under mu */
    pthread_mutex_t mu;
    wp_err err;                /* first failure */
    uint64_t done, total;      /* progress, output bytes */
    uint64_t items, in_bytes, max_item, cast_inexact;
    size_t *rec_of;            /* weight -> report record (SIZE_MAX: none) */
    uint64_t *inexact;         /* per weight: elements an exact re-encode lost (one worker per weight) */
    int check;                 /* content checks on every band read (convert/check.c) */
    int two_pass;              /* NVFP4 slices never held in memory (WPACK_CONVERT_TWO_PASS: a test facility) */
} run;

typedef struct worker {
    run *r;
    uint8_t *buf[B_COUNT];
    size_t cap[B_COUNT];
    wp_err e;
    uint64_t items, in_bytes, max_item, cast_inexact, read_bytes;
    const wp_tensor_info *cleared;   /* last tensor a full check found clean */
} worker;

static void *scratch(worker *wk, int i, size_t n)
{
    if (n > wk->cap[i]) {
        free(wk->buf[i]);
        /* 64-byte aligned: float and u16 access, and friendly to the codecs */
        size_t sz = (n + 63) & ~(size_t)63;
        wk->buf[i] = aligned_alloc(64, sz);
        wk->cap[i] = wk->buf[i] ? sz : 0;
        if (!wk->buf[i]) {
            wp_oom(&wk->e, "convert: a %zu-byte buffer", n);
            return NULL;
        }
    }
    return wk->buf[i];
}

static uint64_t held_bytes(const worker *wk)
{
    uint64_t s = 0;
    for (int i = 0; i < B_COUNT; i++) s += wk->cap[i];
    return s;
}

static int check_cancel(worker *wk)
{
    run *r = wk->r;
    if (r->o->cancel && *r->o->cancel) return wp_fail(&wk->e, WP_EUSAGE, "interrupted");
    pthread_mutex_lock(&r->mu);
    int f = r->failed;
    pthread_mutex_unlock(&r->mu);
    return f ? WP_EUSAGE : 0;   /* another worker failed: stop quietly */
}

static void progress(worker *wk, uint64_t n)
{
    run *r = wk->r;
    pthread_mutex_lock(&r->mu);
    r->done += n;
    if (r->o->progress) r->o->progress(r->o->progress_ud, "convert", r->done, r->total);
    pthread_mutex_unlock(&r->mu);
}

static int out_write(worker *wk, size_t tensor, uint64_t off, const void *buf, size_t n)
{
    const wp_sink *s = wk->r->sink;
    if (s) {
        int rc = s->write(s->ud, tensor, off, buf, n, &wk->e);
        if (rc) return rc;
    }
    progress(wk, n);
    return 0;
}

static void item_done(worker *wk, uint64_t in)
{
    wk->items++;
    wk->in_bytes += in;
    uint64_t h = held_bytes(wk);
    if (h > wk->max_item) wk->max_item = h;
}

/* Read source bytes.  Each input byte is read once (NVFP4's amax pass
 * aside, and only for a slice too big to hold in memory: slice_load), so
 * its page-cache pages are dropped right after: the cache is left
 * to the output, and the kernel does not have to reclaim a checkpoint's
 * worth of pages while we write.  Every byte read for use (keep == 0; the
 * amax pass re-reads) passes the content checks (convert/check.c): a cheap
 * screen, and only on suspicion the full check of the tensor, whose one
 * line (file, tensor, rule, count, first index) fails the convert. */
static int src_read(worker *wk, const wp_tensor_info *t, uint64_t off, void *buf, size_t n, int keep)
{
    const wp_plan *p = wk->r->p;
    const wp_ckpt *k = p->ckpt;
    int rc = wp_ckpt_read(k, t, off, buf, n, &wk->e);
    wk->read_bytes += n;
    if (!rc && !keep && n) posix_fadvise(wp_st_fd(wp_ckpt_file(k, (size_t)t->file)), (off_t)(t->offset + off),
                                         (off_t)n, POSIX_FADV_DONTNEED);
    if (!rc && !keep && wk->r->check && wk->cleared != t && wp_check_screen(&p->config, t, off, buf, n)) {
        rc = wp_check_tensor(k, &p->config, t, &wk->e);
        if (!rc) wk->cleared = t;   /* flagged, yet clean: no need to look again */
    }
    return rc;
}

/* ---- copy: bytes untouched --------------------------------------------------
 * A plane is a source tensor seen as `rows` rows of `pitch` bytes; copy the
 * region rows [r0, r0+nr) x bytes [c0, c0+nb) to `tensor` at `dst`. */
static int copy_plane(worker *wk, const wp_tensor_info *t, uint64_t pitch, uint64_t r0, uint64_t nr,
                      uint64_t c0, uint64_t nb, size_t tensor, uint64_t dst)
{
    if (nb == pitch) {   /* whole rows: one contiguous range */
        uint64_t a = r0 * pitch, n = nr * pitch;
        /* whole elements per chunk (the content checks screen elements) */
        size_t chunk = (size_t)(wk->r->worker_budget < COPY_CHUNK ? wk->r->worker_budget : COPY_CHUNK) & ~(size_t)63;
        for (uint64_t o = 0; o < n; o += chunk) {
            int rc = check_cancel(wk);
            if (rc) return rc;
            size_t m = (size_t)(n - o < chunk ? n - o : chunk);
            uint8_t *b = scratch(wk, B_SRC, m);
            if (!b) return WP_ENOMEM;
            if ((rc = src_read(wk, t, a + o, b, m, 0))) return rc;
            if ((rc = out_write(wk, tensor, dst + o, b, m))) return rc;
            item_done(wk, m);
        }
        return 0;
    }
    /* a column cut (--tp on dim 1): read bands of whole rows, keep the cut */
    uint64_t rows_per = (wk->r->worker_budget / 2) / (pitch + nb);
    if (rows_per > COPY_CHUNK / pitch) rows_per = COPY_CHUNK / pitch;
    if (rows_per == 0)
        return wp_fail_setting(&wk->e, WP_EUSAGE, "mem-budget",
                               "%s: one row (%llu bytes) exceeds the memory budget per thread", t->name,
                               (unsigned long long)pitch);
    for (uint64_t r = 0; r < nr; r += rows_per) {
        int rc = check_cancel(wk);
        if (rc) return rc;
        uint64_t m = nr - r < rows_per ? nr - r : rows_per;
        uint8_t *b = scratch(wk, B_SRC, (size_t)(m * pitch)), *o = scratch(wk, B_OUT, (size_t)(m * nb));
        if (!b || !o) return WP_ENOMEM;
        if ((rc = src_read(wk, t, (r0 + r) * pitch, b, (size_t)(m * pitch), 0))) return rc;
        for (uint64_t i = 0; i < m; i++) memcpy(o + i * nb, b + i * pitch + c0, (size_t)nb);
        if ((rc = out_write(wk, tensor, dst + r * nb, o, (size_t)(m * nb)))) return rc;
        item_done(wk, m * pitch);
    }
    return 0;
}

/* Bytes of `cols` elements of a row in encoding `enc` (data part). */
static uint64_t row_bytes(wp_enc enc, uint64_t cols) { return wp_enc_data_bytes(enc, 1, cols); }

static uint64_t scale_elem(const wp_plan_weight *w, int src)
{
    wp_scale_fmt f = src ? w->src_sfmt : w->sfmt;
    wp_enc enc = src ? w->src_enc : w->enc;
    return enc == WP_ENC_FP8 && f == WP_SCALE_F32 ? 4 : 1;
}

static int copy_weight(worker *wk, const wp_plan_weight *w)
{
    const wp_plan *p = wk->r->p;
    const wp_plan_tensor *td = &p->tensors[w->t_weight];
    if (w->src == WP_SRC_RAW) {
        const wp_tensor_info *t = w->srcs[0].w;
        return copy_plane(wk, t, t->nbytes, 0, 1, 0, t->nbytes, w->t_weight, 0);
    }
    uint64_t sstride = w->t_scale != SIZE_MAX ? p->tensors[w->t_scale].stride : 0;
    uint64_t stride = td->stride;
    for (int sl = 0; sl < w->n_slices; sl++)
        for (int k = 0; k < w->srcs_per_slice; k++) {
            const wp_plan_src *s = &w->srcs[(size_t)sl * (size_t)w->srcs_per_slice + (size_t)k];
            uint64_t pitch = row_bytes(w->src_enc, s->src_cols);
            uint64_t c0 = row_bytes(w->src_enc, s->col0), nb = row_bytes(w->src_enc, s->ncols);
            int rc = copy_plane(wk, s->w, pitch, s->row0, s->nrows, c0, nb, w->t_weight,
                                (uint64_t)sl * stride + s->out_row0 * nb);
            if (rc) return rc;
            if (!s->s) continue;
            uint64_t es = scale_elem(w, 1), sp, sr0, snr, sc0, snc, drow;
            if (w->src_enc == WP_ENC_FP8) {
                sp = (s->src_cols + w->src_bc - 1) / w->src_bc * es;
                sr0 = s->row0 / w->src_br;
                snr = (s->row0 + s->nrows + w->src_br - 1) / w->src_br - sr0;
                sc0 = s->col0 / w->src_bc * es;
                snc = ((s->col0 + s->ncols + w->src_bc - 1) / w->src_bc) * es - sc0;
                drow = s->out_row0 / w->src_br;
            } else {   /* MXFP4: one E8M0 per 1x32 */
                sp = s->src_cols / 32;
                sr0 = s->row0;
                snr = s->nrows;
                sc0 = s->col0 / 32;
                snc = s->ncols / 32;
                drow = s->out_row0;
            }
            rc = copy_plane(wk, s->s, sp, sr0, snr, sc0, snc, w->t_scale, (uint64_t)sl * sstride + drow * snc);
            if (rc) return rc;
        }
    return 0;
}

/* ---- re-encode ------------------------------------------------------------------ */

/* A source tensor held in memory whole (its data and scales, as in the
 * file): NVFP4's slices, read once for both the global-scale pass and the
 * encode pass (see slice_load). */
typedef struct resident {
    const uint8_t *data, *scale;
    int has_amax;              /* MXFP4: amax of the dequantised values, from the codes */
    float amax;
} resident;

/* Read source rows [a, b) of s (absolute rows of the source weight) and
 * dequantise them into ref [b - a, src_cols].  codes and scales (optional)
 * receive the raw source band: FP8 from row `*base` (a rounded down to the
 * block), MXFP4 from row a.  With `mem` the bytes are taken from the
 * resident copy of the source instead of being read. */
static int read_src_rows(worker *wk, const wp_plan_weight *w, const wp_plan_src *s, uint64_t a, uint64_t b,
                         float *ref, const uint8_t **codes, const uint8_t **scales, uint64_t *base_out, int keep,
                         const resident *mem)
{
    uint64_t base = a, cols = s->src_cols;
    uint64_t pitch = row_bytes(w->src_enc, cols);
    uint64_t sr0 = 0, snr = 0, sp = 0;
    if (w->src_enc == WP_ENC_FP8) {
        base = a / w->src_br * w->src_br;
        sp = (cols + w->src_bc - 1) / w->src_bc * scale_elem(w, 1);
        sr0 = base / w->src_br;
        snr = (b + w->src_br - 1) / w->src_br - sr0;
    } else if (w->src_enc == WP_ENC_MXFP4) {
        sp = cols / 32;
        sr0 = a;
        snr = b - a;
    }
    const uint8_t *d, *sc = NULL;
    if (mem) {
        d = mem->data + base * pitch;
        if (snr) sc = mem->scale + sr0 * sp;
    } else {
        uint8_t *db = scratch(wk, B_SRC, (size_t)((b - base) * pitch));
        if (!db) return WP_ENOMEM;
        int rc = src_read(wk, s->w, base * pitch, db, (size_t)((b - base) * pitch), keep);
        if (rc) return rc;
        d = db;
        if (snr) {
            uint8_t *sb = scratch(wk, B_SSC, (size_t)(snr * sp));
            if (!sb) return WP_ENOMEM;
            if ((rc = src_read(wk, s->s, sr0 * sp, sb, (size_t)(snr * sp), keep))) return rc;
            sc = sb;
        }
    }
    wp_qweight q = {
        .enc = w->src_enc, .rows = b - base, .cols = cols, .data = d, .scale = sc,
        .sfmt = w->src_sfmt, .br = w->src_br, .bc = w->src_bc,
    };
    if (ref) wp_qweight_dequant_rows(&q, a - base, b - a, ref);
    if (codes) *codes = d;
    if (scales) *scales = sc;
    if (base_out) *base_out = base;
    item_done(wk, (b - base) * pitch + snr * sp);
    return 0;
}

/* NVFP4's global scale is one per slice (per expert of a stack), over every
 * source row and column of the slice — the whole tensor even when --tp cuts
 * it, so the ranks reassemble to the unsplit build (docs/convert.md). */
static int slice_global(worker *wk, const wp_plan_weight *w, const wp_plan_src *srcs, uint64_t band,
                        const resident *mem, float *g)
{
    float amax = 0;
    for (int k = 0; k < w->srcs_per_slice; k++) {
        const wp_plan_src *s = &srcs[k];
        if (mem && mem[k].has_amax) {   /* taken from the codes as they were read: no f32 pass */
            amax = mem[k].amax > amax ? mem[k].amax : amax;
            continue;
        }
        for (uint64_t r = 0; r < s->src_rows; r += band) {
            int rc = check_cancel(wk);
            if (rc) return rc;
            uint64_t b = r + band < s->src_rows ? r + band : s->src_rows;
            float *ref = scratch(wk, B_REF, (size_t)((b - r) * s->src_cols * 4));
            if (!ref) return WP_ENOMEM;
            if ((rc = read_src_rows(wk, w, s, r, b, ref, NULL, NULL, NULL, 1, mem ? &mem[k] : NULL))) return rc;
            float m = wp_amax(ref, (size_t)((b - r) * s->src_cols));   /* NaN ignored, as before */
            amax = m > amax ? m : amax;
        }
    }
    *g = wp_nvfp4_global_scale(&amax, 1);   /* the codec's own formula */
    return 0;
}

/* Bytes of source s as the pipeline reads it: data rows, and its scale rows
 * (FP8: block rows; MXFP4: one E8M0 per 1x32). */
static void src_sizes(const wp_plan_weight *w, const wp_plan_src *s, uint64_t *data, uint64_t *scale)
{
    uint64_t cols = s->src_cols;
    *data = s->src_rows * row_bytes(w->src_enc, cols);
    *scale = 0;
    if (w->src_enc == WP_ENC_FP8)
        *scale = (s->src_rows + w->src_br - 1) / w->src_br * ((cols + w->src_bc - 1) / w->src_bc * scale_elem(w, 1));
    else if (w->src_enc == WP_ENC_MXFP4)
        *scale = s->src_rows * (cols / 32);
}

static uint64_t up64(uint64_t n) { return (n + 63) & ~(uint64_t)63; }

/* Bytes one slice's sources take in the slice buffer (each part 64-aligned). */
static uint64_t slice_bytes(const wp_plan_weight *w, const wp_plan_src *srcs)
{
    uint64_t total = 0;
    for (int k = 0; k < w->srcs_per_slice; k++) {
        uint64_t d, sc;
        src_sizes(w, &srcs[k], &d, &sc);
        total += up64(d) + up64(sc);
    }
    return total;
}

/* Read one slice's sources whole into the worker's slice buffer, once:
 * the global-scale pass and the encode pass both work from it, so each
 * source byte is read (and screened, and dropped from the page cache) once.
 * The data is read in L2-sized pieces of whole rows, screened as they land;
 * an MXFP4 source's amax is taken from each piece's codes and scales while
 * they are in cache (wp_mxfp4_amax: the dequantised amax, bit for bit). */
static int slice_load(worker *wk, const wp_plan_weight *w, const wp_plan_src *srcs, resident *mem)
{
    uint8_t *buf = scratch(wk, B_SLICE, (size_t)slice_bytes(w, srcs));
    if (!buf) return WP_ENOMEM;
    for (int k = 0; k < w->srcs_per_slice; k++) {
        const wp_plan_src *s = &srcs[k];
        uint64_t d, sc, pitch = row_bytes(w->src_enc, s->src_cols);
        src_sizes(w, s, &d, &sc);
        int rc;
        if (sc && (rc = src_read(wk, s->s, 0, buf + up64(d), (size_t)sc, 0))) return rc;
        uint64_t rows = pitch ? COPY_CHUNK / pitch : 0;
        if (!rows) rows = 1;
        int mx = w->src_enc == WP_ENC_MXFP4;
        float amax = 0;
        for (uint64_t r = 0; r < s->src_rows; r += rows) {
            if ((rc = check_cancel(wk))) return rc;
            uint64_t n = s->src_rows - r < rows ? s->src_rows - r : rows;
            if ((rc = src_read(wk, s->w, r * pitch, buf + r * pitch, (size_t)(n * pitch), 0))) return rc;
            if (mx) {
                float m = wp_mxfp4_amax(buf + r * pitch, buf + up64(d) + r * (s->src_cols / 32), (size_t)n,
                                        (size_t)s->src_cols);
                amax = m > amax ? m : amax;
            }
        }
        mem[k].data = buf;
        mem[k].scale = sc ? buf + up64(d) : NULL;
        mem[k].has_amax = mx;
        mem[k].amax = amax;
        buf += up64(d) + up64(sc);
    }
    return 0;
}

/* Whether one slice's sources fit the worker's budget beside a band (or
 * beside what the worker holds already, if that is more). */
static int slice_fits(const worker *wk, const wp_plan_weight *w, const wp_plan_src *srcs, uint64_t band_bytes)
{
    uint64_t total = slice_bytes(w, srcs);
    uint64_t held = held_bytes(wk) - wk->cap[B_SLICE], budget = wk->r->worker_budget;
    if (held < band_bytes) held = band_bytes;
    return held <= budget && total <= budget - held;
}

static void slice_free(worker *wk)
{
    free(wk->buf[B_SLICE]);
    wk->buf[B_SLICE] = NULL;
    wk->cap[B_SLICE] = 0;
}

/* Elements the encoder had to clamp: |ref| beyond the largest value its
 * block can represent (docs/profiles.md, "saturated"). */
static uint64_t count_saturated(const wp_plan_weight *w, const float *ref, uint64_t nr, uint64_t cols,
                                const uint8_t *osc, float global)
{
    uint64_t n = 0;
    switch (w->enc) {
    case WP_ENC_FP8: {
        uint64_t nbc = (cols + w->bc - 1) / w->bc;
        for (uint64_t r = 0; r < nr; r++)
            for (uint64_t j = 0; j < nbc; j++) {
                uint64_t si = (r / w->br) * nbc + j;
                float s;
                if (w->sfmt == WP_SCALE_F32)
                    memcpy(&s, osc + 4 * si, 4);
                else
                    s = wp_e8m0_to_f32(osc[si]);
                float lim = 448.0f * s;
                uint64_t c1 = (j + 1) * w->bc < cols ? (j + 1) * w->bc : cols;
                for (uint64_t c = j * w->bc; c < c1; c++) n += fabsf(ref[r * cols + c]) > lim;
            }
        break;
    }
    case WP_ENC_MXFP4:
    case WP_ENC_NVFP4: {
        uint64_t gs = w->enc == WP_ENC_MXFP4 ? 32 : 16, ng = nr * (cols / gs);
        for (uint64_t g = 0; g < ng; g++) {
            float s = w->enc == WP_ENC_MXFP4 ? wp_e8m0_to_f32(osc[g]) : wp_e4m3_to_f32(osc[g]) * global;
            float lim = 6.0f * s;
            for (uint64_t i = 0; i < gs; i++) n += fabsf(ref[g * gs + i]) > lim;
        }
        break;
    }
    case WP_ENC_BF16:
    case WP_ENC_F16: {
        float lim = w->enc == WP_ENC_F16 ? 65504.0f : 3.38953139e38f;
        for (uint64_t i = 0; i < nr * cols; i++) n += fabsf(ref[i]) > lim;
        break;
    }
    default:
        break;
    }
    return n;
}

/* Encode one band: ref [nr, cols] (already cut) -> out data + scales. */
static int encode_band(worker *wk, const wp_plan_weight *w, const wp_plan_src *s, const float *ref, uint64_t nr,
                       uint64_t cols, const uint8_t *codes, const uint8_t *sscale, uint64_t base, uint64_t a,
                       float global, uint8_t *od, uint8_t *osc, uint64_t *inexact)
{
    uint64_t n = nr * cols;
    switch (w->enc) {
    case WP_ENC_F32:
        memcpy(od, ref, (size_t)(n * 4));
        break;
    case WP_ENC_BF16:
        for (uint64_t i = 0; i < n; i++) {
            /* A value bf16 holds exactly (every FP8/FP4 weight times its
             * power-of-two scale) is its top 16 bits: no rounding, no call.
             * Anything else, NaN/inf included, goes through the codec. */
            uint32_t u;
            memcpy(&u, &ref[i], 4);
            uint16_t h = (u & 0xFFFFu) == 0 && (u & 0x7F800000u) != 0x7F800000u ? (uint16_t)(u >> 16)
                                                                                : wp_f32_to_bf16(ref[i]);
            /* the run-time check of the exact class: a value BF16 does not hold */
            if (h != (uint16_t)(u >> 16) || (u & 0xFFFFu)) *inexact += !isnan(ref[i]);
            memcpy(od + 2 * i, &h, 2);
        }
        break;
    case WP_ENC_F16:
        for (uint64_t i = 0; i < n; i++) {
            uint16_t h = wp_f32_to_f16(ref[i]);
            memcpy(od + 2 * i, &h, 2);
        }
        break;
    case WP_ENC_FP8:
        if (w->method == WP_M_EXACT) {
            /* same codes and blocks; E8M0 scales widened to F32 (exact) */
            uint64_t pitch = s->src_cols, off = a - base;
            for (uint64_t r = 0; r < nr; r++) memcpy(od + r * cols, codes + (off + r) * pitch + s->col0, (size_t)cols);
            uint64_t nbs = (s->src_cols + w->src_bc - 1) / w->src_bc, nbo = (cols + w->bc - 1) / w->bc;
            uint64_t c0 = s->col0 / w->src_bc, nsr = (nr + w->br - 1) / w->br, sr = (a - base) / w->br;
            for (uint64_t r = 0; r < nsr; r++)
                for (uint64_t j = 0; j < nbo; j++) {
                    float f = wp_e8m0_to_f32(sscale[(sr + r) * nbs + c0 + j]);
                    memcpy(osc + 4 * (r * nbo + j), &f, 4);
                }
        } else if (w->method == WP_M_CAST37) {
            const uint8_t *q4 = codes, *s4 = sscale;
            if (cols != s->src_cols) {   /* column cut: gather the sub-matrix */
                uint8_t *t = scratch(wk, B_TMP, (size_t)(nr * (cols / 2 + cols / 32)));
                if (!t) return WP_ENOMEM;
                for (uint64_t r = 0; r < nr; r++) {
                    memcpy(t + r * (cols / 2), codes + r * (s->src_cols / 2) + s->col0 / 2, (size_t)(cols / 2));
                    memcpy(t + nr * (cols / 2) + r * (cols / 32), sscale + r * (s->src_cols / 32) + s->col0 / 32,
                           (size_t)(cols / 32));
                }
                q4 = t;
                s4 = t + nr * (cols / 2);
            }
            *inexact += wp_cv_mxfp4_to_fp8(q4, s4, (size_t)nr, (size_t)cols, w->sfmt, od, osc);
        } else {
            wp_fp8_block_quant(ref, (size_t)nr, (size_t)cols, w->br, w->bc, w->sfmt, od, osc);
        }
        break;
    case WP_ENC_MXFP4:
        wp_mxfp4_quant(ref, (size_t)nr, (size_t)cols, od, osc);
        break;
    case WP_ENC_NVFP4:
        wp_nvfp4_quant(ref, (size_t)nr, (size_t)cols, global, od, osc);
        break;
    default:
        return wp_fail(&wk->e, WP_EINVAL, "%s: cannot encode %s", w->name, wp_enc_name(w->enc));
    }
    return 0;
}

static int convert_weight(worker *wk, const wp_plan_weight *w, size_t wi)
{
    run *r = wk->r;
    const wp_plan *p = r->p;
    wp_qrecord *rec = r->rec_of && r->rec_of[wi] != SIZE_MAX ? &r->o->report->rec[r->rec_of[wi]] : NULL;
    uint64_t cols = w->cols, src_cols = w->srcs[0].src_cols;
    uint64_t opitch = row_bytes(w->enc, cols);
    uint64_t spitch = wp_enc_scale_bytes(w->enc, w->enc == WP_ENC_FP8 ? w->br : 1, cols, w->br ? w->br : 1,
                                         w->bc ? w->bc : 1, w->sfmt);   /* per row (fp4) or per block row (fp8) */
    /* rows of one band: whole output blocks; a CAST37 band is whole 128-row tiles */
    uint64_t al = w->enc == WP_ENC_FP8 ? w->br : 1;
    uint64_t src_pitch = row_bytes(w->src_enc, src_cols);
    /* the code-preserving methods need the dequantised source only to check */
    int need_ref = rec || !((w->method == WP_M_EXACT && w->enc == WP_ENC_FP8) || w->method == WP_M_CAST37);
    uint64_t row_cost = src_pitch + src_pitch / 8 + 4 * src_cols + (cols != src_cols ? 4 * cols : 0) + opitch +
                        spitch + (rec ? 4 * cols : 0) + (w->method == WP_M_CAST37 ? cols : 0);
    uint64_t extra = w->src_enc == WP_ENC_FP8 ? (uint64_t)w->src_br * (src_pitch + 4 * src_cols) : 0;
    uint64_t bcap = extra ? BAND_CAP : BAND_CAP_L2;
    uint64_t cap = r->worker_budget < bcap ? r->worker_budget : bcap;
    uint64_t band = cap > extra ? (cap - extra) / row_cost / al * al : 0;
    if (band == 0) {
        if (al * row_cost + extra > r->worker_budget)
            return wp_fail_setting(&wk->e, WP_EUSAGE, "mem-budget",
                                   "%s: one band of %llu rows needs %llu bytes, more than the memory budget per "
                                   "thread (%llu); raise the memory budget or lower the thread count",
                                   w->name, (unsigned long long)al, (unsigned long long)(al * row_cost + extra),
                                   (unsigned long long)r->worker_budget);
        band = al;
    }
    /* an FP8 source is read from its block boundary: bands of whole source
     * blocks read each block row once (issue 13: a rank reads its share) */
    if (w->src_enc == WP_ENC_FP8 && w->src_br > 1) {
        uint64_t a = al, b = w->src_br;
        while (b) {
            uint64_t t = a % b;
            a = b;
            b = t;
        }
        uint64_t l = al / a * w->src_br;   /* lcm(al, src_br) */
        if (band >= l) band = band / l * l;
    }
    const wp_plan_tensor *td = &p->tensors[w->t_weight];
    uint64_t stride = td->stride, sstride = w->t_scale != SIZE_MAX ? p->tensors[w->t_scale].stride : 0;
    float *globals = NULL;
    if (w->enc == WP_ENC_NVFP4) {
        globals = calloc((size_t)w->n_slices, sizeof *globals);
        if (!globals) return wp_oom(&wk->e, "convert");
    }
    int rc = 0;
    for (int sl = 0; sl < w->n_slices && !rc; sl++) {
        const wp_plan_src *srcs = &w->srcs[(size_t)sl * (size_t)w->srcs_per_slice];
        float global = 1.0f;
        resident mem[2], *res = NULL;   /* srcs_per_slice is 1 or 2 (fused w13) */
        if (globals) {
            /* the slice whole in memory when it fits beside a band: read once;
             * otherwise the global-scale pass reads it a first time */
            if (w->srcs_per_slice <= 2 && !r->two_pass && slice_fits(wk, w, srcs, cap + extra)) {
                if ((rc = slice_load(wk, w, srcs, mem))) break;
                res = mem;
            }
            if ((rc = slice_global(wk, w, srcs, band, res, &global))) break;
            globals[sl] = global;
        }
        for (int k = 0; k < w->srcs_per_slice && !rc; k++) {
            const wp_plan_src *s = &srcs[k];
            for (uint64_t r0 = 0; r0 < s->nrows && !rc; r0 += band) {
                if ((rc = check_cancel(wk))) break;
                uint64_t nr = s->nrows - r0 < band ? s->nrows - r0 : band;
                uint64_t a = s->row0 + r0, base = a;
                float *full = need_ref ? scratch(wk, B_REF, (size_t)(nr * src_cols * 4)) : NULL;
                if (need_ref && !full) {
                    rc = WP_ENOMEM;
                    break;
                }
                const uint8_t *codes = NULL, *ssc = NULL;
                if ((rc = read_src_rows(wk, w, s, a, a + nr, full, &codes, &ssc, &base, 0, res ? &res[k] : NULL)))
                    break;
                float *ref = full;
                if (need_ref && cols != src_cols) {
                    ref = scratch(wk, B_CUT, (size_t)(nr * cols * 4));
                    if (!ref) {
                        rc = WP_ENOMEM;
                        break;
                    }
                    for (uint64_t i = 0; i < nr; i++)
                        memcpy(ref + i * cols, full + i * src_cols + s->col0, (size_t)(cols * 4));
                }
                uint64_t orow = s->out_row0 + r0;
                uint64_t nsr = w->enc == WP_ENC_FP8 ? (nr + w->br - 1) / w->br : nr;
                uint8_t *od = scratch(wk, B_OUT, (size_t)(nr * opitch));
                uint8_t *osc = spitch ? scratch(wk, B_OSC, (size_t)(nsr * spitch)) : NULL;
                if (!od || (spitch && !osc)) {
                    rc = WP_ENOMEM;
                    break;
                }
                uint64_t cast_lossy = 0;
                if ((rc = encode_band(wk, w, s, ref, nr, cols, codes, ssc, base, a, global, od, osc, &cast_lossy)))
                    break;
                if (w->method == WP_M_CAST37) wk->cast_inexact += cast_lossy;
                if (w->loss == WP_LOSS_EXACT) r->inexact[wi] += cast_lossy;
                if (rec) {
                    float *deq = scratch(wk, B_DEQ, (size_t)(nr * cols * 4));
                    if (!deq) {
                        rc = WP_ENOMEM;
                        break;
                    }
                    wp_qweight q = {
                        .enc = w->enc, .rows = nr, .cols = cols, .data = od, .scale = osc,
                        .sfmt = w->sfmt, .br = w->br, .bc = w->bc, .global = global,
                    };
                    wp_qweight_dequant_rows(&q, 0, nr, deq);
                    wp_qerr_add(&rec->err, ref, deq, (size_t)(nr * cols), 0.0f);
                    rec->err.n_saturated += count_saturated(w, ref, nr, cols, osc, global);
                    if (w->method == WP_M_EXACT || w->method == WP_M_CAST37)
                        for (uint64_t i = 0; i < nr * cols; i++)
                            rec->n_inexact += !(deq[i] == ref[i] || (isnan(deq[i]) && isnan(ref[i])));
                }
                if ((rc = out_write(wk, w->t_weight, (uint64_t)sl * stride + orow * opitch, od, (size_t)(nr * opitch))))
                    break;
                if (osc) {
                    uint64_t srow = w->enc == WP_ENC_FP8 ? orow / w->br : orow;
                    if ((rc = out_write(wk, w->t_scale, (uint64_t)sl * sstride + srow * spitch, osc,
                                        (size_t)(nsr * spitch))))
                        break;
                }
            }
        }
    }
    if (!rc && globals) rc = out_write(wk, w->t_global, 0, globals, (size_t)w->n_slices * 4);
    free(globals);
    slice_free(wk);   /* not carried into other weights' budgets */
    return rc;
}

static int do_weight(worker *wk, size_t wi)
{
    const wp_plan_weight *w = &wk->r->p->weights[wi];
    if (w->passthrough || w->src == WP_SRC_RAW) {
        if (!wk->r->sink) return 0;   /* computing a report only: nothing to check */
        return copy_weight(wk, w);
    }
    return convert_weight(wk, w, wi);
}

/* ---- the queue -------------------------------------------------------------------
 * A weight is one worker's, front to back (its tensors' bytes reach the sink
 * in order), so the queue's only freedom is which weight goes next.  In plan
 * order a big weight taken last leaves the other workers idle while one
 * finishes it (embed and head are 1 GB of BF16 each, in the first and last
 * shard); handing out the costliest first (longest processing time first)
 * bounds that tail by the smallest weights.  Cost is an estimate of the
 * bytes each weight makes a core touch: read + written, plus the f32 band a
 * re-encode goes through (NVFP4's global-scale pass works on the slice held
 * in memory: over the packed codes of an MXFP4 source, one more f32 pass
 * over any other). */
static double weight_cost(const wp_plan_weight *w)   /* double: an estimate cannot overflow */
{
    double c = (double)w->in_bytes + (double)w->out_bytes;
    if (!(w->passthrough || w->src == WP_SRC_RAW)) {
        double f32 = (double)w->rows * (double)w->cols * (w->n_slices > 0 ? w->n_slices : 1) * 8.0;
        c += w->enc == WP_ENC_NVFP4 && w->src_enc != WP_ENC_MXFP4 ? 2 * f32 : f32;
    }
    return c;
}

static int by_cost(const void *a, const void *b, void *plan)
{
    const wp_plan *p = plan;
    size_t i = *(const size_t *)a, j = *(const size_t *)b;
    double ci = weight_cost(&p->weights[i]), cj = weight_cost(&p->weights[j]);
    if (ci != cj) return ci > cj ? -1 : 1;
    return i < j ? -1 : i > j;   /* ties keep plan (shard) order */
}

/* NULL (plan order) when there is nothing to balance or no memory for it. */
static size_t *cost_order(const wp_plan *p, int threads)
{
    if (threads < 2 || p->n_weights < 2) return NULL;
    size_t *o = malloc(p->n_weights * sizeof *o);
    if (!o) return NULL;
    for (size_t i = 0; i < p->n_weights; i++) o[i] = i;
    qsort_r(o, p->n_weights, sizeof *o, by_cost, (void *)p);
    return o;
}

static void *worker_main(void *arg)
{
    worker *wk = arg;
    run *r = wk->r;
    for (;;) {
        pthread_mutex_lock(&r->mu);
        size_t i = r->failed ? r->p->n_weights : r->next++;
        /* costliest first (r->order); a per-rank convert skips the other
         * ranks' weights: never read */
        while (i < r->p->n_weights) {
            size_t w = r->order ? r->order[i] : i;
            if (!r->o->rank1 || r->p->weights[w].rank == r->o->rank1 - 1) {
                i = w;
                break;
            }
            i = r->next++;
        }
        pthread_mutex_unlock(&r->mu);
        if (i >= r->p->n_weights) break;
        int rc = do_weight(wk, i);
        if (rc) {
            pthread_mutex_lock(&r->mu);
            if (!r->failed && wk->e.code) {
                r->failed = 1;
                r->err = wk->e;
            } else if (!r->failed) {
                r->failed = 1;
                wp_fail(&r->err, rc, "%s: conversion failed", r->p->weights[i].name);
            }
            pthread_mutex_unlock(&r->mu);
            break;
        }
    }
    return NULL;
}

int wp_convert_run(const wp_plan *p, const wp_sink *sink, const wp_convert_opts *o, wp_convert_stats *st,
                   wp_err *e)
{
    static const wp_convert_opts none;
    if (!o) o = &none;
    wp_convert_stats dummy;
    if (!st) st = &dummy;
    memset(st, 0, sizeof *st);
    double t0 = wp_now();
    int threads = o->threads > 0 ? o->threads : (int)sysconf(_SC_NPROCESSORS_ONLN);
    if (threads < 1) threads = 1;
    if (threads > 256) threads = 256;
    if ((size_t)threads > p->n_weights && p->n_weights) threads = (int)p->n_weights;
    uint64_t budget = o->mem_budget ? o->mem_budget : (1ull << 30);
    /* What is resident already (binary, plan, headers) is not ours to hand out. */
    uint64_t base = wp_rss_bytes() + (16u << 20);
    if (budget <= base + (uint64_t)threads * (1u << 20))
        return wp_fail_setting(e, WP_EUSAGE, "mem-budget",
                               "a memory budget of %llu bytes leaves nothing for %d worker(s): %llu are in use already",
                               (unsigned long long)budget, threads, (unsigned long long)base);
    if (o->report && o->report->plan != p)
        return wp_fail(e, WP_EUSAGE, "convert: the report was made for another plan");
    run r;
    memset(&r, 0, sizeof r);
    r.p = p;
    r.sink = sink;
    r.o = o;
    r.worker_budget = (budget - base) / (uint64_t)threads;
    r.check = !o->no_content_check && !getenv("WPACK_BENCH_NO_CONTENT_CHECK");
    /* the path a slice larger than the budget takes, on demand, so tests
     * can check it writes the same bytes */
    r.two_pass = getenv("WPACK_CONVERT_TWO_PASS") != NULL;
    if (o->rank1 && (o->rank1 < 0 || o->rank1 > p->n_files))
        return wp_fail_setting(e, WP_EUSAGE, "rank", "rank %d: the plan has %d rank(s) (0..%d)", o->rank1 - 1,
                               p->n_files, p->n_files - 1);
    for (size_t i = 0; i < p->n_weights; i++)
        if ((sink || !(p->weights[i].passthrough || p->weights[i].src == WP_SRC_RAW)) &&
            (!o->rank1 || p->weights[i].rank == o->rank1 - 1))
            r.total += p->weights[i].out_bytes;
    r.inexact = o->inexact ? o->inexact : calloc(p->n_weights ? p->n_weights : 1, sizeof *r.inexact);
    if (!r.inexact) return wp_oom(e, "convert");
    if (o->inexact) memset(o->inexact, 0, p->n_weights * sizeof *o->inexact);
    if (o->report) {
        r.rec_of = malloc((p->n_weights ? p->n_weights : 1) * sizeof *r.rec_of);
        if (!r.rec_of) {
            if (!o->inexact) free(r.inexact);
            return wp_oom(e, "convert");
        }
        for (size_t i = 0; i < p->n_weights; i++) r.rec_of[i] = SIZE_MAX;
        for (size_t i = 0; i < o->report->n; i++) r.rec_of[o->report->rec[i].weight] = i;
    }
    int rc = 0;
    if (sink && sink->set_cancel) sink->set_cancel(sink->ud, o->cancel);
    if (sink && (rc = sink->begin(sink->ud, p, e))) {
        sink->abort(sink->ud);
        free(r.rec_of);
        if (!o->inexact) free(r.inexact);
        return rc;
    }
    pthread_mutex_init(&r.mu, NULL);
    r.order = cost_order(p, threads);
    worker *wk = calloc((size_t)threads, sizeof *wk);
    pthread_t *tid = calloc((size_t)threads, sizeof *tid);
    int started = 0;
    if (!wk || !tid) {
        rc = wp_oom(e, "convert");
    } else {
        for (int i = 0; i < threads; i++) {
            wk[i].r = &r;
            if (threads == 1) break;
            if (pthread_create(&tid[i], NULL, worker_main, &wk[i]) != 0) break;
            started++;
        }
        if (threads == 1 || started == 0)
            worker_main(&wk[0]);
        for (int i = 0; i < started; i++) pthread_join(tid[i], NULL);
        /* the worker's message, and the setting it names, become the caller's */
        if (r.failed)
            rc = wp_fail_setting(e, r.err.code ? r.err.code : WP_EIO, r.err.setting[0] ? r.err.setting : NULL, "%s",
                                 r.err.msg);
        else if (o->cancel && *o->cancel) rc = wp_fail(e, WP_EUSAGE, "interrupted");
    }
    for (int i = 0; wk && i < threads; i++) {
        st->items += wk[i].items;
        st->in_bytes += wk[i].in_bytes;
        st->read_bytes += wk[i].read_bytes;
        if (wk[i].max_item > st->max_item_bytes) st->max_item_bytes = wk[i].max_item;
        r.cast_inexact += wk[i].cast_inexact;
        for (int b = 0; b < B_COUNT; b++) free(wk[i].buf[b]);
    }
    free(wk);
    free(tid);
    if (sink) {
        /* an exact re-encode that lost a value makes a lossy build: refused
         * unless accepted, then recorded in the manifest (docs/profiles.md) */
        if (!rc && !o->allow_lossy) rc = wp_plan_check_inexact(p, r.inexact, e);
        if (!rc && sink->set_inexact) sink->set_inexact(sink->ud, r.inexact);
        if (!rc) rc = sink->commit(sink->ud, e);
        if (rc) sink->abort(sink->ud);
    }
    free(r.rec_of);
    if (!o->inexact) free(r.inexact);
    free(r.order);
    pthread_mutex_destroy(&r.mu);
    st->out_bytes = r.done;
    st->threads = threads;
    st->cast_inexact = r.cast_inexact;
    st->seconds = wp_now() - t0;
    st->peak_rss = wp_peak_rss_bytes();
    return rc;
}

int wp_parse_bytes(const char *s, uint64_t *out)
{
    char *end;
    double v = strtod(s, &end);
    if (end == s || !(v >= 0)) return -1;
    double m = 1;
    switch (*end) {
    case 'k': case 'K': m = 1024.0; end++; break;
    case 'm': case 'M': m = 1024.0 * 1024; end++; break;
    case 'g': case 'G': m = 1024.0 * 1024 * 1024; end++; break;
    case 't': case 'T': m = 1024.0 * 1024 * 1024 * 1024; end++; break;
    default: break;
    }
    if (m > 1 && (*end == 'i' || *end == 'I')) end++;
    if (*end == 'b' || *end == 'B') end++;
    if (*end) return -1;
    v *= m;
    if (v >= 18446744073709551616.0) return -1;
    *out = (uint64_t)v;
    return 0;
}
