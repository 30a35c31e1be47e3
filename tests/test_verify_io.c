/* test_verify_io.c — how the hashing engine (trust/digests.c) reads: mapped
 * windows for what the page cache holds, O_DIRECT for what it does not, pread
 * for what cannot be mapped.  Every way gives OpenSSL's digest of the same
 * bytes at sizes that are not multiples of the O_DIRECT alignment; a file cut
 * short before or while it is hashed is a one-line error naming it, never a
 * crash; verify of v1 and v2 builds, --deep too, passes in every mode.
 * WPACK_HASH_IO=map|direct|pread forces the way (the engine reads it at each
 * wp_hash_jobs call). */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tests/harness.h"
#include "tests/trust_fixture.h"
#include "trust/manifest.h"
#include "trust/trust.h"

#define MiB (1u << 20)

static const char *W(void)
{
    static char abs_[4096];
    if (!abs_[0]) {
        const char *w = wpt_wpack();
        if (w[0] == '/' || !realpath(w, abs_)) snprintf(abs_, sizeof abs_, "%s", w);
    }
    return abs_;
}

/* A file of n pseudo-random bytes (seeded by n), fsynced so its pages can
 * be dropped; the bytes, or NULL. */
static uint8_t *make_file(const char *path, size_t n)
{
    uint8_t *b = malloc(n ? n : 1);
    if (!b) return NULL;
    uint64_t x = 0x9E3779B97F4A7C15ull ^ n;
    for (size_t i = 0; i < n; i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        b[i] = (uint8_t)(x >> 24);
    }
    int fd = wpt_write_file(path, b, n) ? -1 : open(path, O_RDONLY);
    if (fd < 0 || fsync(fd)) {
        if (fd >= 0) close(fd);
        free(b);
        return NULL;
    }
    close(fd);
    return b;
}

/* how much of [off, off + n) the page cache holds, in pages */
#define resident wpt_resident

static int evict(const char *path)
{
    int fd = open(path, O_RDONLY);
    if (fd < 0) return -1;
    int rc = fdatasync(fd) || posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
    close(fd);
    return rc ? -1 : 0;
}

static int warm(const char *path)
{
    uint8_t *b;
    size_t n;
    if (wpt_read_file(path, &b, &n)) return -1;
    free(b);
    return 0;
}

/* SHA-256 of the ranges of b, concatenated. */
static void want_digest(const uint8_t *b, const wp_range *r, size_t nr, uint8_t out[32])
{
    size_t n = 0;
    for (size_t k = 0; k < nr; k++) n += r[k].len;
    uint8_t *cat = malloc(n + 1);
    n = 0;
    for (size_t k = 0; cat && k < nr; k++) memcpy(cat + n, b + r[k].off, r[k].len), n += r[k].len;
    wp_err e = {0};
    if (!cat || wp_sha256_buf(cat, n, out, &e)) memset(out, 0, 32);
    free(cat);
}

/* Mappings of path this process still holds (/proc/self/maps): the engine
 * releases every span it mapped, on success, failure and a cut alike. */
static int maps_of(const char *path)
{
    FILE *f = fopen("/proc/self/maps", "r");
    if (!f) return 0;
    char line[8192];
    int n = 0;
    size_t pl = strlen(path);
    while (fgets(line, sizeof line, f)) {
        size_t l = strlen(line);
        while (l && line[l - 1] == '\n') line[--l] = 0;
        if (l >= pl && !strcmp(line + l - pl, path)) n++;
    }
    fclose(f);
    return n;
}

static const char *const g_modes[] = {"map", "direct", "pread", "mixed", "auto"};

/* Sizes around the 4096-byte O_DIRECT alignment and past a 64 MiB shard,
 * whole and in ranges that start and end off alignment, in every mode, cold
 * and warm: OpenSSL's digest each time.  Forced O_DIRECT reads leave a cold
 * file cold (so that path really ran), and so does mixed on a cold file. */
TEST(verify_io_digests_every_path)
{
    static const size_t sizes[] = {1, 4095, 4096, 4097, 64 * MiB + 1};
    /* where O_DIRECT is refused (the engine reads another way) or the page
     * cache is not ours to steer, the digests are checked, the residency not */
    const int cc = wpt_cache_control(wpt_tmpdir(), "cold residency checks skipped");
    const char *path = wpt_path("%s/f.bin", wpt_tmpdir());
    for (size_t si = 0; si < sizeof sizes / sizeof *sizes; si++) {
        size_t n = sizes[si];
        uint8_t *b = make_file(path, n);
        REQUIRE(b);
        int fd = open(path, O_RDONLY);
        REQUIRE(fd >= 0);
        /* job 0: the whole file; job 1: odd pieces (n >= 4095 only) */
        wp_range whole = {0, n};
        wp_range odd[3] = {{1, n > 2 ? n - 2 : 0}, {n / 3, n / 5}, {n - 1, 1}};
        uint8_t want0[32], want1[32];
        want_digest(b, &whole, 1, want0);
        want_digest(b, odd, 3, want1);
        for (size_t mi = 0; mi < sizeof g_modes / sizeof *g_modes; mi++)
            for (int cold = 0; cold < 2; cold++) {
                REQUIRE(setenv("WPACK_HASH_IO", g_modes[mi], 1) == 0);
                REQUIRE((cold ? evict(path) : warm(path)) == 0);
                /* separate calls: overlapping jobs in one call read through the cache */
                wp_hash_job j0 = {.fd = fd, .path = path, .ranges = &whole, .nranges = 1};
                wp_hash_job j1 = {.fd = fd, .path = path, .ranges = odd, .nranges = 3};
                wp_err e = {0};
                CHECKF(wp_hash_jobs(&j0, 1, 2, NULL, NULL, "test", &e) == 0, "%s: %s", g_modes[mi], e.msg);
                CHECKF(j0.done && !memcmp(j0.out, want0, 32), "size %zu, %s, %s: whole file", n, g_modes[mi],
                       cold ? "cold" : "warm");
                CHECKF(maps_of(path) == 0, "size %zu, %s: a span is still mapped", n, g_modes[mi]);
                if (cold && cc && n >= 4096 && (!strcmp(g_modes[mi], "direct") || !strcmp(g_modes[mi], "mixed"))) {
                    /* O_DIRECT (forced, or mixed on a cold file) brought nothing into the page cache */
                    size_t res = resident(path, 0, n);
                    CHECKF(res <= 1, "size %zu, %s: %zu pages cached after a cold O_DIRECT hash", n, g_modes[mi], res);
                }
                if (n < 4095) continue;
                REQUIRE((cold ? evict(path) : 0) == 0);
                CHECKF(wp_hash_jobs(&j1, 1, 1, NULL, NULL, "test", &e) == 0, "%s: %s", g_modes[mi], e.msg);
                CHECKF(j1.done && !memcmp(j1.out, want1, 32), "size %zu, %s, %s: odd ranges", n, g_modes[mi],
                       cold ? "cold" : "warm");
            }
        unsetenv("WPACK_HASH_IO");
        close(fd);
        free(b);
    }
}

/* One try of verify_io_mixed_per_window: NULL, or what the page cache held
 * that it should not have (or lacked).  Residency follows the kernel's own
 * read-ahead and reclaim, which run beside the test, so the caller gives it
 * a few tries; the digests are checked hard every time. */
static const char *mixed_try(const char *path, const uint8_t *b, size_t n, int fd)
{
    static char msg[256];
    if (evict(path) != 0) return "cannot evict";
    uint8_t *tmp = malloc(16 * MiB);
    int ok = tmp && pread(fd, tmp, 16 * MiB, 0) == (ssize_t)(16 * MiB);   /* cache the first half */
    free(tmp);
    if (!ok) return "cannot read the first half";
    /* what read-ahead brought in of the second half goes again */
    posix_fadvise(fd, 16 * MiB, 0, POSIX_FADV_DONTNEED);
    size_t pages_half = 16 * MiB / (size_t)sysconf(_SC_PAGESIZE);
    if (resident(path, 16 * MiB, n - 16 * MiB) != 0 || resident(path, 0, 16 * MiB) < pages_half - 1)
        return "set-up: the page cache did not hold exactly the first half";
    wp_range r = {0, n};
    wp_hash_job j = {.fd = fd, .path = path, .ranges = &r, .nranges = 1};
    wp_err e = {0};
    CHECK_EQ_INT(wp_hash_jobs(&j, 1, 1, NULL, NULL, "test", &e), 0);
    uint8_t want[32];
    want_digest(b, &r, 1, want);
    CHECK(j.done && !memcmp(j.out, want, 32));
    CHECK(maps_of(path) == 0);   /* the span whose last window went O_DIRECT too */
    if (resident(path, 0, 16 * MiB) < pages_half - 1) return "the cached half left the cache";
    size_t res2 = resident(path, 16 * MiB, n - 16 * MiB);
    if (res2 > 2) {
        snprintf(msg, sizeof msg, "%zu pages of the cold half cached", res2);
        return msg;
    }
    /* two jobs over the same bytes (verify --deep: a tensor and its shard)
     * read through the page cache, so the disk is read once, not twice */
    if (evict(path) != 0) return "cannot evict";
    wp_range part = {MiB, 20 * MiB};
    wp_hash_job two[2] = {{.fd = fd, .path = path, .ranges = &r, .nranges = 1},
                          {.fd = fd, .path = path, .ranges = &part, .nranges = 1}};
    CHECK_EQ_INT(wp_hash_jobs(two, 2, 2, NULL, NULL, "test", &e), 0);
    want_digest(b, &part, 1, want);
    CHECK(two[1].done && !memcmp(two[1].out, want, 32));
    if (resident(path, MiB, 20 * MiB) < 20 * MiB / (size_t)sysconf(_SC_PAGESIZE) - 1)
        return "overlapping jobs did not read through the page cache";
    return NULL;
}

/* mixed decides window by window: on a file whose first half is cached and
 * second half is not, the first half is hashed from the cache and the second
 * read with O_DIRECT (it stays out of the cache), and the digest is right. */
TEST(verify_io_mixed_per_window)
{
    if (!wpt_cache_control(wpt_tmpdir(), "skipped")) return;
    const char *path = wpt_path("%s/half.bin", wpt_tmpdir());
    size_t n = 32 * MiB + 123;
    uint8_t *b = make_file(path, n);
    REQUIRE(b);
    int fd = open(path, O_RDONLY);
    REQUIRE(fd >= 0);
    REQUIRE(setenv("WPACK_HASH_IO", "mixed", 1) == 0);
    const char *why = NULL;
    for (int t = 0; t < 5 && (t == 0 || why); t++) why = mixed_try(path, b, n, fd);
    CHECKF(!why, "5 tries: %s", why);
    unsetenv("WPACK_HASH_IO");
    close(fd);
    free(b);
}

/* ---- files cut short ------------------------------------------------------------------- */

static const char *g_cut_path;
static uint64_t g_cut_at_window, g_cut_to;
static void cut_hook(const wp_hash_job *j, uint64_t off, size_t len)
{
    (void)j, (void)len;
    if (g_cut_path && off >= g_cut_at_window && truncate(g_cut_path, (off_t)g_cut_to) == 0) g_cut_path = NULL;
}

/* Cut to g_cut_to when the window at `at` is reached, in mode `mode`: the
 * error names the file and where its bytes ended (the first missing page for
 * a mapped window, the new end for a read), and a second job on another file
 * running beside it stops or finishes; no crash, nothing leaked (ASan). */
static void cut_while_hashing(const char *mode, uint64_t at, uint64_t to, int cold)
{
    const char *path = wpt_path("%s/cut-%s.bin", wpt_tmpdir(), mode);
    const char *other = wpt_path("%s/other-%s.bin", wpt_tmpdir(), mode);
    char pathc[4096];
    snprintf(pathc, sizeof pathc, "%s", path);
    size_t n = 40 * MiB + 5;   /* two spans of mapped windows */
    uint8_t *b = make_file(pathc, n), *c = make_file(other, 40 * MiB);
    REQUIRE(b && c);
    free(b);
    free(c);
    REQUIRE(!cold || evict(pathc) == 0);
    int fd = open(pathc, O_RDONLY), fd2 = open(other, O_RDONLY);
    REQUIRE(fd >= 0 && fd2 >= 0);
    REQUIRE(setenv("WPACK_HASH_IO", mode, 1) == 0);
    g_cut_path = pathc;
    g_cut_at_window = at;
    g_cut_to = to;
    wp_hash_window_hook = cut_hook;
    wp_range r = {0, n}, r2 = {0, 40 * MiB};
    wp_hash_job j[2] = {{.fd = fd2, .path = other, .ranges = &r2, .nranges = 1},
                        {.fd = fd, .path = pathc, .ranges = &r, .nranges = 1}};
    wp_err e = {0};
    int rc = wp_hash_jobs(j, 2, 2, NULL, NULL, "test", &e);
    wp_hash_window_hook = NULL;
    unsetenv("WPACK_HASH_IO");
    CHECKF(g_cut_path == NULL, "%s: the hook did not run", mode);
    CHECKF(rc == WP_EINVAL, "%s: rc %d (%s)", mode, rc, e.msg);
    CHECK(!j[1].done);
    long pg = sysconf(_SC_PAGESIZE);
    /* a mapped window faults at the first page past the new end; a read (O_DIRECT
     * or pread) ends at the new end itself */
    uint64_t page_end = (to + (uint64_t)pg - 1) / (uint64_t)pg * (uint64_t)pg;
    char want_map[4200], want_read[4200];
    snprintf(want_map, sizeof want_map, "%s: unexpected end of file at offset %llu (file truncated?)", pathc,
             (unsigned long long)page_end);
    snprintf(want_read, sizeof want_read, "%s: unexpected end of file at offset %llu (file truncated?)", pathc,
             (unsigned long long)to);
    /* map: the fault's page, or the new end itself when the cut landed before
     * that window was mapped (the reader thread runs ahead: either order) */
    CHECKF(strstr(e.msg, want_read) || (!strcmp(mode, "map") && strstr(e.msg, want_map)), "%s: %s", mode, e.msg);
    CHECKF(!strchr(e.msg, '\n'), "%s: not one line: %s", mode, e.msg);
    CHECKF(maps_of(pathc) == 0 && maps_of(other) == 0, "%s: a span of the files is still mapped", mode);
    /* the engine works afterwards, on the cut file */
    wp_range r3 = {0, to};
    wp_hash_job k = {.fd = fd, .path = pathc, .ranges = &r3, .nranges = 1};
    wp_err_clear(&e);
    CHECK_EQ_INT(wp_hash_jobs(&k, 1, 1, NULL, NULL, "test", &e), 0);
    CHECK(k.done);
    close(fd);
    close(fd2);
}

TEST(verify_io_truncated_while_hashing)
{
    for (size_t mi = 0; mi < sizeof g_modes / sizeof *g_modes; mi++) {
        if (!strcmp(g_modes[mi], "auto") || !strcmp(g_modes[mi], "mixed")) continue;   /* map (warm) or direct (cold) */
        cut_while_hashing(g_modes[mi], 0, 3 * MiB + 100, 0);          /* in the first window */
        cut_while_hashing(g_modes[mi], 8 * MiB, 12 * MiB + 1, 1);     /* read ahead of the hash */
        cut_while_hashing(g_modes[mi], 32 * MiB, 36 * MiB + 1, 0);    /* in the second span */
    }
}

/* Truncated before hashing: the ranges are checked against the file's size
 * first (a mapped partial last page would read as zeros), every mode. */
TEST(verify_io_truncated_before)
{
    const char *path = wpt_path("%s/t.bin", wpt_tmpdir());
    uint8_t *b = make_file(path, 9 * MiB + 7);
    REQUIRE(b);
    free(b);
    int fd = open(path, O_RDONLY);
    REQUIRE(fd >= 0);
    int wfd = open(path, O_WRONLY);
    REQUIRE(wfd >= 0 && ftruncate(wfd, 5 * MiB + 3) == 0);
    close(wfd);
    for (size_t mi = 0; mi < sizeof g_modes / sizeof *g_modes; mi++) {
        REQUIRE(setenv("WPACK_HASH_IO", g_modes[mi], 1) == 0);
        wp_range r = {0, 9 * MiB + 7};
        wp_hash_job j = {.fd = fd, .path = path, .ranges = &r, .nranges = 1};
        wp_err e = {0};
        CHECK_EQ_INT(wp_hash_jobs(&j, 1, 2, NULL, NULL, "test", &e), WP_EINVAL);
        CHECK_CONTAINS(e.msg, wpt_path("t.bin: unexpected end of file at offset %u (file truncated?)", 5 * MiB + 3));
        CHECK(!j.done);
    }
    unsetenv("WPACK_HASH_IO");
    close(fd);
}

/* ---- the command ----------------------------------------------------------------------- */

/* tiny-a converted (two ranks: two .wpk), its manifest v2 and a v1 copy;
 * `wpack verify` with and without --deep, cold, in every mode: OK with the
 * same root digest; a flipped byte is found in every mode; a .wpk cut short
 * is one line on stderr and exit 1 or 2, never a crash. */
TEST(verify_io_cli_every_mode)
{
    static char out[16384];
    const char *d = wpt_tmpdir();
    REQUIRE(wpt_run(out, sizeof out, "%s convert %s/hf -o %s/b --ep 2 -q", W(), WPT_TINY, d) == 0);
    REQUIRE(wpt_run(out, sizeof out, "cp -r %s/b %s/v1", d, d) == 0);
    /* the v1 copy: whole-file digests */
    wp_manifest m;
    REQUIRE(trust_manifest_load(wpt_path("%s/v1", d), &m) == 0);
    REQUIRE(trust_manifest_to_v1(wpt_path("%s/v1", d), &m) == 0);
    char part[4096];
    snprintf(part, sizeof part, "%s", m.files[1].path);
    wp_manifest_free(&m);
    const char *builds[] = {"b", "v1"};
    for (int bi = 0; bi < 2; bi++)
        for (size_t mi = 0; mi < sizeof g_modes / sizeof *g_modes; mi++)
            for (int deep = 0; deep < 2; deep++) {
                REQUIRE(wpt_run(out, sizeof out, "for f in %s/%s/*.wpk; do dd if=$f iflag=nocache count=0 status=none; done",
                                d, builds[bi]) == 0);
                int rc = wpt_run(out, sizeof out, "WPACK_HASH_IO=%s %s verify %s/%s --allow-unsigned --threads 2 %s 2>&1",
                                 g_modes[mi], W(), d, builds[bi], deep ? "--deep" : "");
                CHECKF(rc == 0, "%s %s%s: exit %d: %s", builds[bi], g_modes[mi], deep ? " --deep" : "", rc, out);
                CHECK_CONTAINS(out, "OK");
            }
    /* one byte flipped inside the second part's tensors */
    const char *victim = wpt_path("%s/b/%s", d, part);
    struct stat st;
    REQUIRE(stat(victim, &st) == 0);
    REQUIRE(wpt_run(out, sizeof out, "printf '\\377' | dd of=%s bs=1 seek=%lld conv=notrunc status=none", victim,
                    (long long)st.st_size / 2) == 0);
    for (size_t mi = 0; mi < sizeof g_modes / sizeof *g_modes; mi++) {
        REQUIRE(wpt_run(out, sizeof out, "dd if=%s iflag=nocache count=0 status=none", victim) == 0);
        int rc = wpt_run(out, sizeof out, "WPACK_HASH_IO=%s %s verify %s/b --allow-unsigned 2>&1", g_modes[mi], W(), d);
        CHECKF(rc == 1, "%s: flipped byte: exit %d: %s", g_modes[mi], rc, out);
        CHECK_CONTAINS(out, part);
    }
    /* cut short: one line, exit 1 or 2, one JSON document with --json */
    REQUIRE(truncate(victim, st.st_size / 3) == 0);
    for (size_t mi = 0; mi < sizeof g_modes / sizeof *g_modes; mi++) {
        int rc = wpt_run(out, sizeof out, "WPACK_HASH_IO=%s %s verify %s/b --allow-unsigned 2>&1 >/dev/null", g_modes[mi],
                         W(), d);
        CHECKF(rc == 1 || rc == 2, "%s: truncated: exit %d: %s", g_modes[mi], rc, out);
        CHECK_CONTAINS(out, part);
        size_t lines = 0;
        for (const char *q = out; *q; q++) lines += *q == '\n';
        CHECKF(lines == 1, "%s: %zu lines: %s", g_modes[mi], lines, out);
        rc = wpt_run(out, sizeof out, "WPACK_HASH_IO=%s %s verify %s/b --allow-unsigned --json 2>/dev/null", g_modes[mi],
                     W(), d);
        CHECKF((rc == 1 || rc == 2) && out[0] == '{', "%s: --json: exit %d: %s", g_modes[mi], rc, out);
    }
}
