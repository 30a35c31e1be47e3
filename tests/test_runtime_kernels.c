/* test_runtime_kernels.c — a decode kernel against the form it replaces, bit for bit.
 *
 * The AVX-512 BF16 set's dense FP8 product (dot_e4m3, decoded through byte
 * tables) must give exactly the bits of the AVX-512F set's (decoded through
 * half precision, the reference form for NaN rows) and of that set's fp32 dot
 * over the row decoded by the scalar table (code value x scale, one rounding):
 * every row length tail (64, 48, 32, 16 and single columns), segments of 16,
 * 32 and 128, E8M0-like scales from 2^-120 to 2^110, F32 scales that round,
 * NaN codes (0x7F, 0xFF), and an infinite activation. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

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
