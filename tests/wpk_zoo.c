/* wpk_zoo.c — see wpk_zoo.h. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests/wpk_zoo.h"

#define ENC(e) WPK_KIND_ENC, WP_ENC_##e, WP_U8
#define RAW(d) WPK_KIND_RAW, WP_ENC_BF16, WP_##d

const wpkz_spec wpkz_specs[] = {
    /* name                     kind        ndim shape          stk role            own sfmt           br  bc  src */
    {"embed.weight",            ENC(BF16),   2, {64, 32},        0, WPK_ROLE_DATA,   -1, WP_SCALE_E8M0, 0, 0, 1},
    {"norm.weight",             ENC(BF16),   1, {32},            0, WPK_ROLE_DATA,   -1, WP_SCALE_E8M0, 0, 0, 1},
    {"hc_head_fn",              RAW(F32),    2, {24, 32},        0, WPK_ROLE_DATA,   -1, WP_SCALE_E8M0, 0, 0, 1},
    {"layers.0.ffn.gate.tid2eid", RAW(I64),  2, {16, 2},         0, WPK_ROLE_DATA,   -1, WP_SCALE_E8M0, 0, 0, 1},
    {"layers.0.attn.wq_a.weight", ENC(FP8),  2, {200, 96},       0, WPK_ROLE_DATA,   -1, WP_SCALE_E8M0, 128, 128, 1},
    {"layers.0.attn.wq_a.scale", RAW(F8_E8M0), 2, {2, 1},        0, WPK_ROLE_SCALE,   4, WP_SCALE_E8M0, 0, 0, 1},
    {"layers.0.attn.wo_b.weight", ENC(FP8),  2, {64, 64},        0, WPK_ROLE_DATA,   -1, WP_SCALE_F32,  32, 32, 0},
    {"layers.0.attn.wo_b.scale", RAW(F32),   2, {2, 2},          0, WPK_ROLE_SCALE,   6, WP_SCALE_E8M0, 0, 0, 0},
    {"layers.0.attn.f16.weight", ENC(F16),   2, {8, 8},          0, WPK_ROLE_DATA,   -1, WP_SCALE_E8M0, 0, 0, 0},
    {"layers.0.attn.f32.weight", ENC(F32),   2, {4, 4},          0, WPK_ROLE_DATA,   -1, WP_SCALE_E8M0, 0, 0, 0},
    {"layers.0.ffn.experts.w1.weight", ENC(MXFP4), 3, {4, 16, 64}, 1, WPK_ROLE_DATA, -1, WP_SCALE_E8M0, 0, 0, 4},
    {"layers.0.ffn.experts.w1.scale", RAW(F8_E8M0), 3, {4, 16, 2}, 1, WPK_ROLE_SCALE, 10, WP_SCALE_E8M0, 0, 0, 4},
    {"layers.0.ffn.experts.w13.weight", ENC(NVFP4), 3, {3, 32, 32}, 1, WPK_ROLE_DATA, -1, WP_SCALE_E8M0, 0, 0, 6},
    {"layers.0.ffn.experts.w13.scale", RAW(F8_E4M3), 3, {3, 32, 2}, 1, WPK_ROLE_SCALE, 12, WP_SCALE_E8M0, 0, 0, 0},
    {"layers.0.ffn.experts.w13.global", RAW(F32), 1, {3},        1, WPK_ROLE_GLOBAL, 12, WP_SCALE_E8M0, 0, 0, 0},
    {"layers.0.attn.nv.weight", ENC(NVFP4),  2, {8, 32},         0, WPK_ROLE_DATA,   -1, WP_SCALE_E8M0, 0, 0, 0},
    {"layers.0.attn.nv.global", RAW(F32),    1, {1},             0, WPK_ROLE_GLOBAL, 15, WP_SCALE_E8M0, 0, 0, 0},
    {"layers.0.attn.nv.scale",  RAW(F8_E4M3), 2, {8, 2},         0, WPK_ROLE_SCALE,  15, WP_SCALE_E8M0, 0, 0, 0},
    {"layers.0.attn.sink",      RAW(F32),    0, {0},             0, WPK_ROLE_DATA,   -1, WP_SCALE_E8M0, 0, 0, 0},
    {"empty",                   RAW(U8),     1, {0},             0, WPK_ROLE_DATA,   -1, WP_SCALE_E8M0, 0, 0, 0},
    {"packed.f4",               RAW(F4),     1, {10},            0, WPK_ROLE_DATA,   -1, WP_SCALE_E8M0, 0, 0, 0},
};
const size_t wpkz_n = sizeof wpkz_specs / sizeof wpkz_specs[0];

void wpkz_fill(const char *name, uint8_t *out, uint64_t size)
{
    if (strstr(name, ".global")) {   /* readable floats: expert e -> 0.5 * (e + 1) */
        for (uint64_t k = 0; k + 4 <= size; k += 4) {
            float g = 0.5f * (float)(k / 4 + 1);
            memcpy(out + k, &g, 4);
        }
        return;
    }
    uint64_t x = 1469598103934665603ull;   /* FNV-1a of the name seeds xorshift */
    for (const char *p = name; *p; p++) x = (x ^ (uint8_t)*p) * 1099511628211ull;
    for (uint64_t k = 0; k < size; k++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        out[k] = (uint8_t)(x >> 24);
    }
}

typedef struct zjob {
    wpk_writer *w;
    size_t *ids;
    uint8_t **bufs;
    int thread, nthreads;
    int rc;
    wp_err e;
} zjob;

static void *zworker(void *arg)
{
    zjob *j = arg;
    /* Thread t writes chunk c of every tensor when c % nthreads == t. */
    for (size_t i = 0; i < wpkz_n && !j->rc; i++) {
        uint64_t size = wpk_writer_size(j->w, j->ids[i]);
        for (uint64_t c = 0, off = 0; off < size && !j->rc; c++, off += 64)
            if ((int)(c % (uint64_t)j->nthreads) == j->thread)
                j->rc = wpk_writer_write(j->w, j->ids[i], off, j->bufs[i] + off,
                                         size - off < 64 ? (size_t)(size - off) : 64, &j->e);
    }
    return NULL;
}

int wpkz_write(const char *path, uint32_t align, int mode, wp_err *e)
{
    wpk_opts o = {.align = align, .model_json = WPKZ_MODEL_JSON, .profile_json = WPKZ_PROFILE_JSON,
                  .provenance_json = WPKZ_PROVENANCE_JSON};
    wpk_writer *w;
    int rc = wpk_writer_open(&w, path, &o, e);
    if (rc) return rc;
    size_t ids[64];
    uint8_t *bufs[64] = {0};
    char srcbuf[8][96];
    const char *srcs[8];
    for (size_t i = 0; i < wpkz_n && !rc; i++) {
        const wpkz_spec *s = &wpkz_specs[i];
        wpk_decl d = {.name = s->name, .kind = s->kind, .enc = s->enc, .dtype = s->dtype,
                      .ndim = s->ndim, .stacked = s->stacked, .sfmt = s->sfmt, .br = s->br,
                      .bc = s->bc, .role = s->role, .owner = s->owner >= 0 ? ids[s->owner] : 0,
                      .n_sources = (size_t)s->n_sources, .sources = srcs};
        memcpy(d.shape, s->shape, sizeof s->shape);
        for (int k = 0; k < s->n_sources; k++) {
            snprintf(srcbuf[k], sizeof srcbuf[k], "src.%s.%d", s->name, k);
            srcs[k] = srcbuf[k];
        }
        rc = wpk_writer_add(w, &d, &ids[i], e);
    }
    if (!rc) rc = wpk_writer_layout(w, e);
    for (size_t i = 0; i < wpkz_n && !rc; i++) {
        uint64_t size = wpk_writer_size(w, ids[i]);
        bufs[i] = malloc(size ? size : 1);
        if (!bufs[i]) rc = WP_ENOMEM;
        else wpkz_fill(wpkz_specs[i].name, bufs[i], size);
    }
    if (!rc && mode == 0) {
        for (size_t i = 0; i < wpkz_n && !rc; i++)
            rc = wpk_writer_write(w, ids[i], 0, bufs[i], wpk_writer_size(w, ids[i]), e);
    } else if (!rc && mode == 1) {
        for (size_t i = wpkz_n; i-- > 0 && !rc;) {
            uint64_t size = wpk_writer_size(w, ids[i]);
            uint64_t nchunks = (size + 99) / 100;
            for (uint64_t c = nchunks; c-- > 0 && !rc;) {
                uint64_t off = c * 100;
                rc = wpk_writer_write(w, ids[i], off, bufs[i] + off,
                                      size - off < 100 ? (size_t)(size - off) : 100, e);
            }
        }
    } else if (!rc) {
        zjob jobs[4];
        pthread_t tid[4];
        for (int t = 0; t < 4; t++) {
            jobs[t] = (zjob){.w = w, .ids = ids, .bufs = bufs, .thread = t, .nthreads = 4};
            pthread_create(&tid[t], NULL, zworker, &jobs[t]);
        }
        for (int t = 0; t < 4; t++) pthread_join(tid[t], NULL);
        for (int t = 0; t < 4; t++)
            if (jobs[t].rc && !rc) rc = wp_fail(e, jobs[t].rc, "%s", jobs[t].e.msg);
    }
    for (size_t i = 0; i < wpkz_n; i++) free(bufs[i]);
    if (rc) {
        wpk_writer_abort(w);
        return rc;
    }
    return wpk_writer_commit(w, e);
}
