/* The .wpk writer around the page cache (format/wpk_write.c): whole
 * 4096-byte blocks of a chunk go with O_DIRECT (from the caller's buffer
 * where it is aligned, else through a bounce buffer), partial end blocks
 * through the page cache.  Whatever the chunk sizes, buffer alignment, write
 * order (out-of-order chunks are hashed by reading them back) and threads,
 * the file and its digests are exactly those of the all-buffered writer
 * (WPACK_DIRECT_OUT=0), and the O_DIRECT blocks are not left in the cache.
 * (A file this small is written around the cache only with
 * WPACK_DIRECT_OUT=1; from 64 MiB on by default.) */
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "format/wpk.h"
#include "tests/harness.h"

#define NT 4
static const uint64_t g_size[NT] = {(5u << 20) + 123, (2u << 20) + 4095, 9000, (3u << 20)};

typedef struct plan {
    wpk_writer *w;
    size_t id[NT];
    const uint8_t *src[NT];
    int mode;       /* 0 in order, 1 chunks of each tensor last to first, 2 two threads */
    int thread;     /* mode 2: which half of the tensors */
    int rc;
    wp_err e;
} plan;

static uint64_t g_x;
static uint64_t rnd(void)
{
    g_x ^= g_x << 13, g_x ^= g_x >> 7, g_x ^= g_x << 17;
    return g_x;
}

/* chunk boundaries of tensor t: odd sizes from 1 byte to 1.5 MiB, the same every run */
static size_t cuts(int t, uint64_t *at, size_t cap)
{
    uint64_t x = 0x9E3779B97F4A7C15ull * (uint64_t)(t + 1), off = 0;
    size_t n = 0;
    at[n++] = 0;
    while (off < g_size[t] && n < cap - 1) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        uint64_t len = x % 7 == 0 ? 1 + x % 300 : x % 7 == 1 ? 4096 * (1 + x % 64) : x % (3u << 19);
        off = off + len > g_size[t] ? g_size[t] : off + len;
        at[n++] = off;
    }
    at[n - 1] = g_size[t];
    return n;
}

static void *run_plan(void *arg)
{
    plan *p = arg;
    uint64_t at[512];
    for (int t = 0; t < NT && !p->rc; t++) {
        if (p->mode == 2 && t % 2 != p->thread) continue;
        size_t n = cuts(t, at, 512);
        for (size_t k = 0; k + 1 < n && !p->rc; k++) {
            size_t c = p->mode == 1 ? n - 2 - k : k;
            p->rc = wpk_writer_write(p->w, p->id[t], at[c], p->src[t] + at[c], (size_t)(at[c + 1] - at[c]), &p->e);
        }
    }
    return NULL;
}

/* pages of path the page cache holds ((size_t)-1: cannot tell, which no
 * check below takes for an answer) */
static size_t resident(const char *path)
{
    size_t r = wpt_resident(path, 0, 0);
    if (r == (size_t)-1) wpt_fail_at(__FILE__, __LINE__, "%s: page-cache residency unknown", path);
    return r;
}

/* Write the tensors (sources at base + shift: shift 0 aligned, 1 not) in mode;
 * the file's digests to d.  0 on success. */
static int write_wpk(const char *path, uint8_t *const *src, int mode, wpk_digests *d)
{
    plan p = {.mode = mode};
    wp_err e = {0};
    if (wpk_writer_open(&p.w, path, &(wpk_opts){.shard_size = 1u << 20}, &e)) return -1;
    for (int t = 0; t < NT; t++) {
        char name[32];
        snprintf(name, sizeof name, "t%d", t);
        wpk_decl dc = {.name = name, .kind = WPK_KIND_RAW, .dtype = WP_U8, .ndim = 1, .shape = {g_size[t]}};
        if (wpk_writer_add(p.w, &dc, &p.id[t], &e)) return -1;
        p.src[t] = src[t];
    }
    if (wpk_writer_layout(p.w, &e)) return -1;
    if (mode == 2) {
        plan q = p;
        q.thread = 1;
        pthread_t th;
        if (pthread_create(&th, NULL, run_plan, &q)) return -1;
        run_plan(&p);
        pthread_join(th, NULL);
        if (!p.rc) p.rc = q.rc, p.e = q.e;
    } else {
        run_plan(&p);
    }
    if (p.rc) {
        wpt_fail_at(__FILE__, __LINE__, "write: %s", p.e.msg);
        wpk_writer_abort(p.w);
        return -1;
    }
    if (wpk_writer_commit_digests(p.w, d, &e)) {
        wpt_fail_at(__FILE__, __LINE__, "commit: %s", e.msg);
        return -1;
    }
    return 0;
}

static int same_digests(const wpk_digests *a, const wpk_digests *b)
{
    if (a->nshards != b->nshards || a->size != b->size || memcmp(a->nontensor, b->nontensor, 32)) return 0;
    for (size_t i = 0; i < a->nshards; i++)
        if (memcmp(a->shards[i], b->shards[i], 32)) return 0;
    return 1;
}

TEST(format_wpk_direct_same_bytes_every_way)
{
    g_x = 0x243F6A8885A308D3ull;
    uint8_t *mem[NT], *src[NT];
    for (int t = 0; t < NT; t++) {
        mem[t] = aligned_alloc(4096, ((size_t)g_size[t] + 8192) & ~(size_t)4095);
        REQUIRE(mem[t]);
        for (uint64_t i = 0; i < g_size[t] + 1; i++) mem[t][i] = (uint8_t)rnd();
    }
    const char *ref = wpt_path("%s/ref.wpk", wpt_tmpdir());
    wpk_digests want;
    REQUIRE(setenv("WPACK_DIRECT_OUT", "0", 1) == 0);
    for (int t = 0; t < NT; t++) src[t] = mem[t];
    REQUIRE(write_wpk(ref, src, 0, &want) == 0);
    unsetenv("WPACK_DIRECT_OUT");
    uint8_t *rb;
    size_t rn;
    REQUIRE(wpt_read_file(ref, &rb, &rn) == 0);
    /* where O_DIRECT is refused, or taken and cached anyway (tmpfs), the
     * same bytes are checked, the residency is not */
    const int direct = wpt_cache_control(wpt_tmpdir(), "residency not checked");
    REQUIRE(setenv("WPACK_DIRECT_OUT", "1", 1) == 0);
    for (int shift = 0; shift < 2; shift++)
        for (int mode = 0; mode < 3; mode++) {
            /* shift 1: the same bytes one past an aligned address */
            uint8_t *tmp[NT];
            for (int t = 0; t < NT; t++) {
                tmp[t] = shift ? aligned_alloc(4096, ((size_t)g_size[t] + 8192) & ~(size_t)4095) : NULL;
                if (shift) memcpy(tmp[t] + 1, mem[t], g_size[t]);
                src[t] = shift ? tmp[t] + 1 : mem[t];
            }
            const char *p = wpt_path("%s/d%d%d.wpk", wpt_tmpdir(), shift, mode);
            wpk_digests got;
            int rc = write_wpk(p, src, mode, &got);
            CHECKF(rc == 0, "shift %d mode %d", shift, mode);
            if (!rc) {
                /* in order, most blocks went with O_DIRECT: not in the cache
                 * (looked at before reading the file; out of order, the
                 * read-back hashing brings them in) */
                size_t res = resident(p), pages = rn / 4096;
                CHECKF(mode || !direct || res < pages / 4, "shift %d: %zu of %zu pages cached", shift, res, pages);
                uint8_t *b;
                size_t n;
                REQUIRE(wpt_read_file(p, &b, &n) == 0);
                CHECKF(n == rn && !memcmp(b, rb, n), "shift %d mode %d: the file differs", shift, mode);
                CHECKF(same_digests(&got, &want), "shift %d mode %d: digests differ", shift, mode);
                free(b);
                wpk_digests_free(&got);
            }
            for (int t = 0; t < NT; t++) free(tmp[t]);
        }
    unsetenv("WPACK_DIRECT_OUT");
    /* by default this file is under the 64 MiB from which the writer goes
     * around the cache: written through it, the same bytes */
    for (int t = 0; t < NT; t++) src[t] = mem[t];
    const char *small = wpt_path("%s/small.wpk", wpt_tmpdir());
    wpk_digests got;
    REQUIRE(write_wpk(small, src, 0, &got) == 0);
    CHECKF(resident(small) > rn / 4096 / 2, "under 64 MiB, yet not through the page cache");
    CHECK(same_digests(&got, &want));
    wpk_digests_free(&got);
    free(rb);
    wpk_digests_free(&want);
    for (int t = 0; t < NT; t++) free(mem[t]);
}
