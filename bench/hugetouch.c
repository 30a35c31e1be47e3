/*
 * hugetouch.c — touch every weight of a .wpk, optionally after loading it
 * into huge pages (wpk_load_hugepages).  For bench/hugepages.sh.
 *
 *   hugetouch FILE.wpk none|explicit|thp [RANDOM_READS_M]
 *
 * Prints one line: the load time, a sequential sweep (one 8-byte read per
 * 64-byte line over all tensor data; a first pass warms, the second is
 * timed), and RANDOM_READS_M million 8-byte reads at random offsets (the
 * access pattern of expert routing, where TLB reach matters most).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "format/wpk.h"

static uint64_t sweep(const wpk_file *f)
{
    uint64_t s = 0;
    for (size_t i = 0; i < wpk_count(f); i++) {
        const wpk_tensor *t = wpk_tensor_at(f, i);
        const uint8_t *p = wpk_data(f, t);
        for (uint64_t k = 0; k + 8 <= t->size; k += 64) {
            uint64_t v;
            memcpy(&v, p + k, 8);
            s += v;
        }
    }
    return s;
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: hugetouch FILE.wpk none|explicit|thp [RANDOM_READS_M]\n");
        return 2;
    }
    long reads = argc > 3 ? atol(argv[3]) * 1000000l : 20000000l;
    wp_err e = {0};
    wpk_file *f;
    if (wpk_open(&f, argv[1], &e)) {
        fprintf(stderr, "hugetouch: %s\n", e.msg);
        return 2;
    }
    double t0 = wp_now(), tl = 0;
    wpk_huge_kind kind = WPK_HUGE_NONE;
    if (strcmp(argv[2], "none")) {
        char notice[1024];
        int mode = !strcmp(argv[2], "thp") ? WPK_HUGE_TRANSPARENT : WPK_HUGE_EXPLICIT;
        if (wpk_load_hugepages(f, mode, &kind, notice, sizeof notice, &e)) {
            fprintf(stderr, "hugetouch: %s\n", e.msg);
            return 2;
        }
        if (notice[0]) fprintf(stderr, "hugetouch: %s\n", notice);
        tl = wp_now() - t0;
    }
    uint64_t s = sweep(f);   /* warm: faults the mapping / page cache in */
    double t1 = wp_now();
    s += sweep(f);
    double ts = wp_now() - t1;
    /* Random reads over the data region, tensor by tensor address. */
    uint64_t data = wpk_file_size(f) - wpk_data_offset(f);
    const uint8_t *base = wpk_data(f, wpk_tensor_at(f, 0));
    uint64_t x = 88172645463325252ull;
    double t2 = wp_now();
    for (long i = 0; i < reads; i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        uint64_t v;
        memcpy(&v, base + (x % (data - 8)), 8);
        s += v;
    }
    double tr = wp_now() - t2;
    printf("mode=%s backing=%s data=%.2fGiB load=%.3fs sweep=%.3fs (%.2f GB/s) random=%ldM reads %.3fs (%.1f ns/read) [%llx]\n",
           argv[2], wpk_huge_kind_name(kind), (double)data / (1u << 30), tl, ts,
           (double)data / ts / 1e9, reads / 1000000, tr, tr / (double)reads * 1e9,
           (unsigned long long)(s & 0xF));
    wpk_close(f);
    return 0;
}
