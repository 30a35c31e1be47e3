/* test_runtime_kernels.c — a decode kernel against the form it replaces, bit for bit.
 *
 * The AVX-512 BF16 set's dense FP8 product (dot_e4m3, decoded through byte
 * tables) must give exactly the bits of the AVX-512F set's (decoded through
 * half precision, the reference form for NaN rows) and of that set's fp32 dot
 * over the row decoded by the scalar table (code value x scale, one rounding):
 * every row length tail (64, 48, 32, 16 and single columns), segments of 16,
 * 32 and 128, E8M0-like scales from 2^-120 to 2^110, F32 scales that round,
 * NaN codes (0x7F, 0xFF), and an infinite activation.  And the row prefetch
 * of the decode products at the end of a mapping, and every set's axpy
 * (attention's value sum) against the unfused scalar loop. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "quant/quant.h"
#include "runtime/internal.h"
#include "tests/harness.h"

static uint64_t kst = 0x2545F4914F6CDD1Dull;
static uint32_t krng(void)
{
    kst ^= kst << 13;
    kst ^= kst >> 7;
    kst ^= kst << 17;
    return (uint32_t)(kst >> 11);
}

static const rt_kernels *set_named(const char *name)
{
    const rt_kernels *const *ks = rt_kernels_all();
    for (int i = 0; ks[i]; i++)
        if (!strcmp(ks[i]->name, name)) return ks[i];
    return NULL;
}

TEST(runtime_dot_e4m3_tables_same_bits)
{
    const rt_kernels *bf = set_named("avx512bf16"), *f = set_named("avx512");
    if (!bf || !f) {
        printf("  (no AVX-512 BF16 on this CPU: the table kernel is not used here)\n");
        return;
    }
    const int lens[] = {16, 48, 64, 80, 96, 112, 128, 1040, 4096, 4144, 7, 1043};
    const int segs[] = {16, 32, 128};
    const int nmax = 4144;
    uint8_t *w = malloc(nmax);
    float *x = malloc(sizeof(float) * nmax), *v = malloc(sizeof(float) * nmax);
    float ws[nmax / 16 + 1];
    REQUIRE(w && x && v);
    int rows = 0, nan_rows = 0, bad = 0, bad_dot = 0;
    for (size_t li = 0; li < sizeof lens / sizeof lens[0]; li++)
        for (size_t si = 0; si < sizeof segs / sizeof segs[0]; si++)
            for (int kind = 0; kind < 6; kind++) {
                const int n = lens[li], seg = segs[si], ns = (n + seg - 1) / seg;
                for (int i = 0; i < n; i++) {
                    w[i] = (uint8_t)krng();
                    if (kind != 2 && (w[i] & 0x7F) == 0x7F) w[i] ^= 1;   /* NaN codes: kind 2 only */
                    x[i] = ((float)(krng() & 0xFFFF) / 32768.0f - 1.0f) * (i % 97 == 0 ? 300 : 1);
                }
                if (kind == 2) w[n / 2] = (n & 1) ? 0xFF : 0x7F;
                if (kind == 5) x[n - 1] = INFINITY;
                for (int s = 0; s < ns; s++) {
                    switch (kind) {
                    case 3: ws[s] = ldexpf(1.0f, s % 2 ? 110 : -120); break;      /* big, tiny */
                    case 4: ws[s] = 1.0f + (float)(krng() & 0xFFFF) / 65536.0f; break;  /* rounds */
                    default: ws[s] = ldexpf(1.0f, (int)(krng() % 40) - 20); break;
                    }
                }
                float a = bf->dot_e4m3(w, ws, seg, x, n), b = f->dot_e4m3(w, ws, seg, x, n);
                rows++;
                nan_rows += isnan(a);
                if (memcmp(&a, &b, 4)) {
                    if (bad++ < 5)
                        printf("  n %d seg %d kind %d: tables %a, half precision %a\n", n, seg,
                               kind, (double)a, (double)b);
                }
                /* the row decoded value by value (scalar table x scale), then the set's dot */
                if (n % 16 == 0 && kind != 2 && kind != 5) {
                    for (int i = 0; i < n; i++) v[i] = wp_e4m3_to_f32(w[i]) * ws[i / seg];
                    float c = f->dot(x, v, n);
                    bad_dot += memcmp(&a, &c, 4) != 0;
                }
            }
    CHECKF(bad == 0, "%d of %d rows: the table kernel's bits differ from the AVX-512F kernel's",
           bad, rows);
    CHECKF(bad_dot == 0, "%d rows: the table kernel differs from dot over the decoded row", bad_dot);
    CHECKF(nan_rows >= 36, "%d NaN rows (every NaN-code and infinite-input row is NaN)", nan_rows);
    free(w), free(x), free(v);
}

/* The decode products request their rows RT_PF_DIST bytes ahead, past the
 * weight's end on its last rows: a weight that ends exactly where a PROT_NONE
 * page begins (as a mapping's last tensor may) still gives, row by row, the bits
 * of the decoded-row path — prefetches neither fault nor change a value. */
TEST(runtime_row_prefetch_at_mapping_end)
{
    const long pg = sysconf(_SC_PAGESIZE);
    struct { wp_enc enc; int rows, cols; } cases[] = {
        {WP_ENC_FP8, 64, 4096}, {WP_ENC_MXFP4, 64, 4096}, {WP_ENC_FP8, 40, 1024},
        {WP_ENC_BF16, 48, 2048},
    };
    const rt_kernels *const *ks = rt_kernels_all();
    for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ci++) {
        const int N = cases[ci].rows, K = cases[ci].cols, M = 3;
        const wp_enc enc = cases[ci].enc;
        const size_t db = wp_enc_data_bytes(enc, N, K);
        const size_t sb = wp_enc_scale_bytes(enc, N, K, 128, 128, WP_SCALE_E8M0);
        const size_t span = (db + (size_t)pg - 1) / (size_t)pg * (size_t)pg;
        uint8_t *map = mmap(NULL, span + (size_t)pg, PROT_READ | PROT_WRITE,
                            MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        REQUIRE(map != MAP_FAILED);
        REQUIRE(mprotect(map + span, (size_t)pg, PROT_NONE) == 0);
        uint8_t *d = map + span - db;          /* the data ends at the guard page */
        uint8_t *sc = malloc(sb);
        float *x = malloc(sizeof(float) * M * K), *y = malloc(sizeof(float) * M * N);
        float *y1 = malloc(sizeof(float) * N);
        REQUIRE(sc && x && y && y1);
        for (size_t i = 0; i < db; i++) {
            d[i] = (uint8_t)krng();
            if (enc == WP_ENC_FP8 && (d[i] & 0x7F) == 0x7F) d[i] ^= 1;
        }
        if (enc == WP_ENC_BF16)     /* finite values: sign, exponent 2^-7..2^7, any mantissa */
            for (size_t i = 0; i < db / 2; i++) {
                uint16_t v = (uint16_t)((krng() & 0x807F) | (uint16_t)(120 + krng() % 15) << 7);
                memcpy(d + 2 * i, &v, 2);
            }
        for (size_t i = 0; i < sb; i++) sc[i] = (uint8_t)(120 + krng() % 14);
        for (int i = 0; i < M * K; i++) x[i] = (float)(krng() & 0xFFFF) / 32768.0f - 1.0f;
        wp_qweight w;
        memset(&w, 0, sizeof w);
        w.enc = enc, w.rows = (uint64_t)N, w.cols = (uint64_t)K, w.br = 128, w.bc = 128;
        w.sfmt = WP_SCALE_E8M0, w.data = d, w.scale = sc;
        for (int ki = 0; ks[ki]; ki++) {
            rt_ctx c = {.pool = NULL, .k = ks[ki], .flags = 0};
            for (int dense = 0; dense < (enc == WP_ENC_MXFP4 ? 1 : 2); dense++) {
                REQUIRE((dense ? rt_linear_dense(&c, &w, x, M, y) : rt_linear(&c, &w, x, M, y)) == 0);
                REQUIRE((dense ? rt_linear_dense(&c, &w, x + K, 1, y1)
                               : rt_linear(&c, &w, x + K, 1, y1)) == 0);
                CHECKF(memcmp(y1, y + N, sizeof(float) * N) == 0, "%s, %s %dx%d%s: fused rows differ",
                       ks[ki]->name, wp_enc_name(enc), N, K, dense ? " dense" : "");
            }
        }
        munmap(map, span + (size_t)pg);
        free(sc), free(x), free(y), free(y1);
    }
}

/* axpy (attention's weighted sum of value rows) on every set: the bits of the
 * plain loop o[i] = o[i] + (a * x[i]) with the product rounded first — not
 * those of a fused multiply-add, which this data tells apart — for every length
 * tail, with subnormal, infinite and NaN inputs among them. */
TEST(runtime_axpy_sets_same_bits)
{
    const rt_kernels *const *ks = rt_kernels_all();
    enum { NMAX = 531 };
    float x[NMAX], o0[NMAX], ref[NMAX], out[NMAX];
    int fused_differs = 0;
    for (int n = 0; n <= NMAX; n += (n < 40 ? 1 : 61)) {
        for (int i = 0; i < n; i++) {
            x[i] = ((float)(krng() & 0xFFFFFF) / 16777216.0f - 0.5f) * ldexpf(1.0f, (int)(krng() % 30) - 15);
            o0[i] = ((float)(krng() & 0xFFFFFF) / 16777216.0f - 0.5f) * ldexpf(1.0f, (int)(krng() % 30) - 15);
            if (i % 53 == 7) x[i] = ldexpf(1.0f, -140);      /* subnormal */
            if (i % 97 == 11) o0[i] = INFINITY;
            if (i % 89 == 13) x[i] = NAN;
        }
        const float a = 1.0f / 3.0f + (float)n * 1e-3f;
        for (int i = 0; i < n; i++) {
            volatile float t = a * x[i];       /* rounded product, then the sum */
            ref[i] = o0[i] + t;
            float f = fmaf(a, x[i], o0[i]);
            fused_differs += isfinite(f) && memcmp(&f, &ref[i], 4) != 0;
        }
        for (int k = 0; ks[k]; k++) {
            memcpy(out, o0, sizeof(float) * (size_t)n);
            ks[k]->axpy(out, a, x, n);
            int bad = 0;
            for (int i = 0; i < n; i++)
                bad += isnan(ref[i]) ? !isnan(out[i]) : memcmp(&out[i], &ref[i], 4) != 0;
            CHECKF(bad == 0, "%s, n %d: %d elements differ from the unfused loop", ks[k]->name, n, bad);
        }
    }
    CHECKF(fused_differs > 100, "only %d elements where a fused multiply-add would differ",
           fused_differs);
}
