/*
 * check_screen.c — the content checks' screens alone, in memory, one thread:
 * what each byte costs the convert pipeline before any I/O.  For
 * bench/content_check.sh.
 *
 *   check_screen [MIB]
 *
 * Prints one line per dtype: dtype, GB/s (best of 5 timings over MIB MiB of
 * clean data, default 256, from memory; a small MIB such as 2, the size of
 * the pipeline's reads, is screened repeatedly and gives the in-cache rate).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "quant/quant.h"

static uint64_t rng(uint64_t *s)
{
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * 0x2545F4914F6CDD1Dull;
}

int main(int argc, char **argv)
{
    size_t mib = argc > 1 ? (size_t)atol(argv[1]) : 256, n = mib << 20;
    uint8_t *buf = malloc(n);
    if (!buf) return 2;
    static const wp_dtype dts[] = {WP_BF16, WP_F32, WP_F16, WP_F8_E4M3, WP_F8_E8M0};
    uint64_t s = 42;
    for (size_t d = 0; d < sizeof dts / sizeof dts[0]; d++) {
        wp_dtype t = dts[d];
        size_t esz = wp_dtype_bits(t) / 8, cnt = n / esz;
        /* clean data of the dtype: random bits with the exponent kept finite */
        for (size_t i = 0; i < cnt; i++) {
            uint64_t r = rng(&s);
            switch (t) {
            case WP_BF16: { uint16_t h = (uint16_t)(r & 0xBFFF); memcpy(buf + 2 * i, &h, 2); break; }
            case WP_F16: { uint16_t h = (uint16_t)(r & 0xBBFF); memcpy(buf + 2 * i, &h, 2); break; }
            case WP_F32: { uint32_t u = (uint32_t)(r & 0xBFFFFFFF); memcpy(buf + 4 * i, &u, 4); break; }
            case WP_F8_E4M3: buf[i] = (uint8_t)(r & 0xF7); break;
            default: buf[i] = (uint8_t)(r % 255); break;
            }
        }
        /* best of 5 timings, each over at least 256 MiB (a small buffer is
         * screened again and again: the in-cache rate) */
        size_t reps = n >= (256u << 20) ? 1 : (256u << 20) / n;
        double best = 1e30;
        int hit = 0;
        for (int pass = 0; pass < 5; pass++) {
            double t0 = wp_now();
            for (size_t r = 0; r < reps; r++) hit |= wp_dtype_screen(t, buf, cnt);
            double dt = (wp_now() - t0) / (double)reps;
            if (dt < best) best = dt;
        }
        printf("%-9s %8.2f GB/s%s\n", wp_dtype_name(t), (double)n / best / 1e9, hit ? " (flagged?!)" : "");
    }
    /* the scale screen (E8M0 codes >= 247) over clean scales (2^-9 .. 2^-7, as synth's) */
    for (size_t i = 0; i < n; i++) buf[i] = (uint8_t)(118 + rng(&s) % 3);
    double best = 1e30;
    for (int pass = 0; pass < 5; pass++) {
        double t0 = wp_now();
        volatile int r = wp_scale_screen(WP_F8_E8M0, buf, n);
        (void)r;
        double dt = wp_now() - t0;
        if (dt < best) best = dt;
    }
    printf("%-9s %8.2f GB/s\n", "scale-E8M0", (double)n / best / 1e9);
    free(buf);
    return 0;
}
