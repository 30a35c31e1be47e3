/*
 * wpk_synth.c — a synthetic .wpk of a given size for the benchmarks
 * (bench/hugepages.sh, bench/pack.sh), written with the real writer.
 *
 *   wpk_synth OUT.wpk SIZE_MB [ALIGN_BYTES]
 *
 * The byte statistics resemble real weights, so compression ratios mean
 * something: elements are drawn i.i.d. from a Gaussian (sigma 0.02) and
 * encoded like V4's tensors: ~60% MXFP4 stacked experts (+E8M0 scales), ~30%
 * FP8 128x128 (+E8M0 scales), ~10% BF16.  Sampling goes through 64K-entry
 * code tables indexed by xorshift, so generation runs at memory speed and
 * the data has no long repeats for zstd to find.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "format/wpk.h"

static uint64_t rng = 0x9E3779B97F4A7C15ull;
static inline uint64_t next(void)
{
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    return rng;
}

static float gauss(void)
{
    double u = ((double)(next() >> 11) + 0.5) / 9007199254740992.0;
    double v = ((double)(next() >> 11) + 0.5) / 9007199254740992.0;
    return (float)(0.02 * sqrt(-2 * log(u)) * cos(6.283185307179586 * v));
}

static uint16_t t_bf16[65536];
static uint8_t t_fp8[65536], t_fp4[65536], t_e8m0[65536];

static void tables(void)
{
    for (int i = 0; i < 65536; i++) {
        t_bf16[i] = wp_f32_to_bf16(gauss());
        t_fp8[i] = wp_f32_to_e4m3(gauss() / 0.02f * 100.0f);   /* a 128x128 block scaled to +-448 */
        t_fp4[i] = (uint8_t)(wp_f32_to_e2m1(gauss() / 0.02f * 2.0f) | wp_f32_to_e2m1(gauss() / 0.02f * 2.0f) << 4);
        t_e8m0[i] = (uint8_t)(127 - 9 + (int)(next() % 3));     /* scales cluster around 2^-8 */
    }
}

static void fill(const char *kind, uint8_t *p, size_t n)
{
    if (!strcmp(kind, "bf16")) {
        for (size_t i = 0; i + 1 < n; i += 2) memcpy(p + i, &t_bf16[next() & 0xFFFF], 2);
    } else {
        const uint8_t *t = !strcmp(kind, "fp8") ? t_fp8 : !strcmp(kind, "fp4") ? t_fp4 : t_e8m0;
        for (size_t i = 0; i < n; i++) p[i] = t[next() & 0xFFFF];
    }
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: wpk_synth OUT.wpk SIZE_MB [ALIGN_BYTES]\n");
        return 2;
    }
    uint64_t target = strtoull(argv[2], NULL, 10) << 20;
    wpk_opts o = {.align = argc > 3 ? (uint32_t)strtoul(argv[3], NULL, 10) : 0,
                  .model_json = "{\"synthetic\": true}",
                  .profile_json = "{\"name\": \"bench\"}",
                  .provenance_json = "{\"tool\": \"bench/wpk_synth\"}"};
    tables();
    wp_err e = {0};
    wpk_writer *w;
    if (wpk_writer_open(&w, argv[1], &o, &e)) goto fail;
    /* One "layer": experts [16, 2048, 4096] mxfp4 (64 MiB) + scales, an fp8
     * [4096, 4096] (16 MiB) + scales, a bf16 [1024, 4096] (8 MiB): ~90 MiB. */
    typedef struct { size_t id; const char *kind; } job;
    job jobs[4096];
    size_t nj = 0;
    uint64_t total = 0;
    char name[128];
    for (int L = 0; total < target && nj + 5 < sizeof jobs / sizeof jobs[0]; L++) {
        size_t id;
        snprintf(name, sizeof name, "layers.%d.ffn.experts.w1.weight", L);
        wpk_decl d = {.name = name, .kind = WPK_KIND_ENC, .enc = WP_ENC_MXFP4, .ndim = 3,
                      .shape = {16, 2048, 4096}, .stacked = 1};
        if (wpk_writer_add(w, &d, &id, &e)) goto fail;
        jobs[nj++] = (job){id, "fp4"};
        size_t owner = id;
        snprintf(name, sizeof name, "layers.%d.ffn.experts.w1.scale", L);
        d = (wpk_decl){.name = name, .kind = WPK_KIND_RAW, .dtype = WP_F8_E8M0, .ndim = 3,
                       .shape = {16, 2048, 128}, .stacked = 1, .role = WPK_ROLE_SCALE, .owner = owner};
        if (wpk_writer_add(w, &d, &id, &e)) goto fail;
        jobs[nj++] = (job){id, "e8m0"};
        snprintf(name, sizeof name, "layers.%d.attn.wq_b.weight", L);
        d = (wpk_decl){.name = name, .kind = WPK_KIND_ENC, .enc = WP_ENC_FP8, .ndim = 2,
                       .shape = {4096, 4096}, .br = 128, .bc = 128};
        if (wpk_writer_add(w, &d, &id, &e)) goto fail;
        jobs[nj++] = (job){id, "fp8"};
        owner = id;
        snprintf(name, sizeof name, "layers.%d.attn.wq_b.scale", L);
        d = (wpk_decl){.name = name, .kind = WPK_KIND_RAW, .dtype = WP_F8_E8M0, .ndim = 2,
                       .shape = {32, 32}, .role = WPK_ROLE_SCALE, .owner = owner};
        if (wpk_writer_add(w, &d, &id, &e)) goto fail;
        jobs[nj++] = (job){id, "e8m0"};
        snprintf(name, sizeof name, "layers.%d.attn.wkv.weight", L);
        d = (wpk_decl){.name = name, .kind = WPK_KIND_ENC, .enc = WP_ENC_BF16, .ndim = 2,
                       .shape = {1024, 4096}};
        if (wpk_writer_add(w, &d, &id, &e)) goto fail;
        jobs[nj++] = (job){id, "bf16"};
        total += 16ull * 2048 * 2048 + 16ull * 2048 * 128 + 4096ull * 4096 + 1024 + 1024ull * 4096 * 2;
    }
    if (wpk_writer_layout(w, &e)) goto fail;
    const size_t chunk = 4u << 20;
    uint8_t *buf = malloc(chunk);
    for (size_t j = 0; j < nj; j++) {
        uint64_t size = wpk_writer_size(w, jobs[j].id);
        for (uint64_t off = 0; off < size; off += chunk) {
            size_t n = size - off < chunk ? (size_t)(size - off) : chunk;
            fill(jobs[j].kind, buf, n);
            if (wpk_writer_write(w, jobs[j].id, off, buf, n, &e)) goto fail;
        }
    }
    free(buf);
    if (wpk_writer_commit(w, &e)) goto fail;
    printf("%s: %zu tensors, %.2f GiB of tensor data\n", argv[1], nj, (double)total / (1u << 30));
    return 0;
fail:
    fprintf(stderr, "wpk_synth: %s\n", e.msg);
    return 1;
}
