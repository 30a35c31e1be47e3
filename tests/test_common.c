/* test_common.c — error convention, atomic output, SHA-256 wrapper. */
#include "common/wp.h"
#include "tests/harness.h"

#include <sys/stat.h>
#include <unistd.h>

TEST(common_first_error_wins)
{
    wp_err e = {0};
    CHECK_EQ_INT(wp_fail(&e, WP_EINVAL, "a.safetensors: first %d", 1), WP_EINVAL);
    wp_fail(&e, WP_EIO, "second");
    CHECK_EQ_INT(e.code, WP_EINVAL);
    CHECK(strcmp(e.msg, "a.safetensors: first 1") == 0);
    wp_err_clear(&e);
    wp_fail(&e, WP_EIO, "multi\nline");
    CHECK(strchr(e.msg, '\n') == NULL);
}

TEST(common_checked_arith)
{
    uint64_t r;
    CHECK(wp_mul_u64(1ull << 32, 1ull << 31, &r) == 0 && r == 1ull << 63);
    CHECK(wp_mul_u64(1ull << 32, 1ull << 32, &r) == -1);
    CHECK(wp_add_u64(UINT64_MAX, 1, &r) == -1);
    CHECK_EQ_INT(wp_align_up(4097, 4096), 8192);
}

/* Known-answer test: SHA-256("abc") from FIPS 180-2. */
TEST(common_sha256_kat)
{
    uint8_t d[32];
    char hex[65];
    wp_err e = {0};
    REQUIRE(wp_sha256_buf("abc", 3, d, &e) == 0);
    wp_hex(d, 32, hex);
    CHECK(strcmp(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad") == 0);
    uint8_t back[32];
    CHECK(wp_unhex(hex, back, 32) == 0 && memcmp(back, d, 32) == 0);
    CHECK(wp_unhex("zz", back, 1) == -1);
}

TEST(common_atomic_output)
{
    wp_err e = {0};
    const char *p = wpt_path("%s/out.bin", wpt_tmpdir());
    wp_out o;
    REQUIRE(wp_out_open(&o, p, &e) == 0);
    REQUIRE(wp_out_write(&o, "hello", 5, &e) == 0);
    CHECK(access(p, F_OK) != 0);           /* nothing at the final name yet */
    REQUIRE(wp_out_commit(&o, &e) == 0);
    uint8_t *d; size_t n;
    REQUIRE(wpt_read_file(p, &d, &n) == 0);
    CHECK(n == 5 && memcmp(d, "hello", 5) == 0);
    free(d);
    /* abort leaves neither the final name nor a temp file */
    const char *q = wpt_path("%s/aborted.bin", wpt_tmpdir());
    REQUIRE(wp_out_open(&o, q, &e) == 0);
    wp_out_write(&o, "x", 1, &e);
    wp_out_abort(&o);
    char out[4096];
    CHECK(access(q, F_OK) != 0);
    CHECK_EQ_INT(wpt_run(out, sizeof out, "ls -A %s | grep -c tmp", wpt_tmpdir()), 1);
    /* an unwritable directory is a one-line error naming the path */
    wp_err_clear(&e);
    CHECK(wp_out_open(&o, "/proc/nonexistent-dir/x", &e) != 0);
    CHECK_CONTAINS(e.msg, "/proc/nonexistent-dir/x");
}
