/* Output around the page cache (wp_out_direct, common/file.c): the bytes of
 * the file are exactly what was written whichever way each write went
 * (O_DIRECT from the staging buffer, zeros for a small skip, back through the
 * page cache for a long skip or a write behind), the O_DIRECT part never
 * enters the page cache, and WPACK_DIRECT_OUT=0 turns it off. */
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "common/wp.h"
#include "tests/harness.h"

#define MiB ((size_t)1 << 20)

static uint64_t g_x = 0x243F6A8885A308D3ull;
static uint64_t rnd(void)
{
    g_x ^= g_x << 13, g_x ^= g_x >> 7, g_x ^= g_x << 17;
    return g_x;
}

/* pages of path the page cache holds ((size_t)-1: cannot tell, which no
 * check below takes for an answer) */
static size_t resident(const char *path)
{
    size_t r = wpt_resident(path, 0, 0);
    if (r == (size_t)-1) wpt_fail_at(__FILE__, __LINE__, "%s: page-cache residency unknown", path);
    return r;
}

/* Write img[0, n) to path through wp_out in pieces at the offsets of plan
 * (offset, length pairs, in order), direct mode on when asked; 0 when the
 * file reads back as want. */
typedef struct piece {
    uint64_t off;
    size_t len;
} piece;

static int write_plan(const char *path, const uint8_t *img, uint64_t size, const piece *pl, size_t np, int presize,
                      int *was_direct)
{
    wp_out o;
    wp_err e = {0};
    if (wp_out_open(&o, path, &e)) return -1;
    *was_direct = wp_out_direct(&o);
    if (presize && ftruncate(o.fd, (off_t)size) != 0) {
        wp_out_abort(&o);
        return -1;
    }
    for (size_t i = 0; i < np; i++)
        if (wp_out_pwrite(&o, img + pl[i].off, pl[i].len, pl[i].off, &e)) {
            wpt_fail_at(__FILE__, __LINE__, "piece %zu: %s", i, e.msg);
            wp_out_abort(&o);
            return -1;
        }
    if (!presize && o.written != size) {   /* the logical end counts what the buffer holds */
        wpt_fail_at(__FILE__, __LINE__, "written %llu, expected %llu", (unsigned long long)o.written,
                    (unsigned long long)size);
        wp_out_abort(&o);
        return -1;
    }
    return wp_out_commit(&o, &e) ? -1 : 0;
}

static int same_file(const char *path, const uint8_t *want, uint64_t n)
{
    uint8_t *got;
    size_t gn;
    if (wpt_read_file(path, &got, &gn)) return 0;
    int ok = gn == n && !memcmp(got, want, n);
    free(got);
    return ok;
}

TEST(common_direct_out_bytes_every_way)
{
    const char *dir = wpt_tmpdir();
    if (!wpt_direct_io(dir)) {
        printf("note: O_DIRECT unsupported under %s; skipped\n", dir);
        return;
    }
    /* tmpfs takes O_DIRECT and caches anyway: the bytes are checked, the
     * residency is not */
    const int cc = wpt_cache_control(dir, "residency not checked");
    const uint64_t n = 21 * MiB + 123;   /* the 8 MiB buffer fills twice; the end is off alignment */
    uint8_t *img = malloc(n);
    REQUIRE(img);
    for (uint64_t i = 0; i < n; i++) img[i] = (uint8_t)rnd();
    piece pl[256];

    /* 1. appends of every size from 1 byte to 3 MiB */
    size_t np = 0;
    for (uint64_t off = 0; off < n && np < 256; np++) {
        size_t len = (size_t)(rnd() % 5 == 0 ? 1 + rnd() % 17 : rnd() % (3 * MiB));
        if (len > n - off) len = (size_t)(n - off);
        pl[np] = (piece){off, len};
        off += len;
    }
    REQUIRE(pl[np - 1].off + pl[np - 1].len == n);
    const char *p1 = wpt_path("%s/appends.bin", dir);
    int d;
    CHECK_EQ_INT(write_plan(p1, img, n, pl, np, 0, &d), 0);
    CHECK_EQ_INT(d, 1);
    /* everything but the last partial block went with O_DIRECT: not cached
     * (looked at before reading the file back, which caches it) */
    size_t res = resident(p1);
    CHECKF(!cc || res <= 2, "appends: %zu pages in the page cache", res);
    CHECKF(same_file(p1, img, n), "appends: the file differs");

    /* 2. forward skips (unpack's zero padding): a short one is written as
     * zeros, a long one (over 1 MiB) sends the rest through the page cache;
     * the file is sized first, so what is never written reads as zeros */
    uint8_t *want = calloc(1, n);
    REQUIRE(want);
    static const uint64_t at[][2] = {{0, 3 * MiB + 5},           {3 * MiB + 4000, 5 * MiB},
                                     {9 * MiB, 2 * MiB + 1},     {11 * MiB + 77, 64},
                                     {14 * MiB, 3 * MiB},        {17 * MiB + 10, 4 * MiB}};
    np = sizeof at / sizeof *at;
    for (size_t i = 0; i < np; i++) {
        pl[i] = (piece){at[i][0], (size_t)at[i][1]};
        memcpy(want + at[i][0], img + at[i][0], (size_t)at[i][1]);
    }
    const char *p2 = wpt_path("%s/skips.bin", dir);
    CHECK_EQ_INT(write_plan(p2, img, n, pl, np, 1, &d), 0);
    CHECKF(same_file(p2, want, n), "skips: the file differs");

    /* 3. a write behind what is held: the output goes back to the page cache first */
    piece back[] = {{0, 9 * MiB + 3}, {9 * MiB + 3, 100}, {4 * MiB, 4096}, {9 * MiB + 103, (size_t)(n - 9 * MiB - 103)}};
    const char *p3 = wpt_path("%s/back.bin", dir);
    CHECK_EQ_INT(write_plan(p3, img, n, back, 4, 0, &d), 0);
    CHECKF(same_file(p3, img, n), "write behind: the file differs");

    /* 4. an output under 8 MiB goes through the page cache whole (faster at
     * that size); WPACK_DIRECT_OUT=1 sends it around from the first byte */
    piece small = {0, 5 * MiB + 3};
    const char *p5 = wpt_path("%s/small.bin", dir);
    CHECK_EQ_INT(write_plan(p5, img, small.len, &small, 1, 0, &d), 0);
    CHECKF(resident(p5) > small.len / 4096 / 2, "5 MiB: not through the page cache (%zu pages)", resident(p5));
    CHECK(same_file(p5, img, small.len));
    REQUIRE(setenv("WPACK_DIRECT_OUT", "1", 1) == 0);
    CHECK_EQ_INT(write_plan(p5, img, small.len, &small, 1, 0, &d), 0);
    CHECK_EQ_INT(d, 1);
    CHECKF(!cc || resident(p5) <= 2, "5 MiB with WPACK_DIRECT_OUT=1: %zu pages cached", resident(p5));
    CHECK(same_file(p5, img, small.len));

    /* 5. off: through the page cache, as before */
    REQUIRE(setenv("WPACK_DIRECT_OUT", "0", 1) == 0);
    const char *p4 = wpt_path("%s/off.bin", dir);
    piece whole = {0, (size_t)n};
    CHECK_EQ_INT(write_plan(p4, img, n, &whole, 1, 0, &d), 0);
    CHECK_EQ_INT(d, 0);
    CHECKF(resident(p4) > n / 4096 / 2, "through the page cache, yet not cached (%zu pages)", resident(p4));
    CHECK(same_file(p4, img, n));
    unsetenv("WPACK_DIRECT_OUT");
    free(want);
    free(img);
}

/* Direct mode is for a fresh output only; an empty output commits. */
TEST(common_direct_out_fresh_only)
{
    wp_out o;
    wp_err e = {0};
    const char *p = wpt_path("%s/f.bin", wpt_tmpdir());
    REQUIRE(wp_out_open(&o, p, &e) == 0);
    REQUIRE(wp_out_write(&o, "abc", 3, &e) == 0);
    CHECK_EQ_INT(wp_out_direct(&o), 0);   /* something was written: stays in the page cache */
    REQUIRE(wp_out_commit(&o, &e) == 0);
    CHECK(same_file(p, (const uint8_t *)"abc", 3));
    if (!wpt_direct_io(wpt_tmpdir())) return;
    REQUIRE(wp_out_open(&o, p, &e) == 0);
    CHECK_EQ_INT(wp_out_direct(&o), 1);
    CHECK_EQ_INT(wp_out_direct(&o), 0);   /* already on */
    REQUIRE(wp_out_commit(&o, &e) == 0);
    CHECK(same_file(p, (const uint8_t *)"", 0));
}
