/*
 * harness.h — wpack's test runner.  Every tests/test_*.c file declares tests
 * with TEST(name) { ... }; they register themselves (constructor), run each in
 * a forked child (a crash or a hang fails one test, not the run), and the
 * runner ends with the line "N passed, N failed".  `wpack-tests SUBSTR...`
 * runs only the tests whose name contains one of the substrings.
 *
 * Tests run N at a time (`-j N`, env WPT_JOBS; default: the online CPUs).
 * Each test's stdout and stderr are captured and printed whole, in
 * registration order, followed by its "ok"/"FAIL" line, so the log reads the
 * same whatever N is; `-j 1` runs them one after another with live output.
 * A test runs in its own process group and is killed (with everything it
 * started) after WPT_TIMEOUT seconds (default 300), failing alone.
 * TEST_EXCLUSIVE(name) declares a test that must have the machine to itself
 * (it measures or takes something global): the runner starts it only when
 * no other test runs, and starts nothing beside it.
 *
 * Tests run from the repository root.  Fixtures: WPT_TINY ("tests/fixtures/
 * tiny-a").  The wpack binary: wpt_wpack() (env WPACK_BIN, default
 * build/wpack).  Scratch space: wpt_tmpdir(), a fresh directory per test that
 * the runner removes afterwards.
 */
#ifndef WPT_HARNESS_H
#define WPT_HARNESS_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define WPT_TINY "tests/fixtures/tiny-a"

typedef void (*wpt_fn)(void);
void wpt_register(const char *name, wpt_fn fn);
void wpt_register_exclusive(const char *name, wpt_fn fn);
void wpt_fail_at(const char *file, int line, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
int wpt_failures(void);

#define TEST(name)                                                              \
    static void wpt_test_##name(void);                                          \
    __attribute__((constructor)) static void wpt_reg_##name(void)               \
    { wpt_register(#name, wpt_test_##name); }                                   \
    static void wpt_test_##name(void)

/* A test that must run alone (see above). */
#define TEST_EXCLUSIVE(name)                                                    \
    static void wpt_test_##name(void);                                          \
    __attribute__((constructor)) static void wpt_reg_##name(void)               \
    { wpt_register_exclusive(#name, wpt_test_##name); }                         \
    static void wpt_test_##name(void)

#define CHECK(c) do { if (!(c)) wpt_fail_at(__FILE__, __LINE__, "CHECK(%s)", #c); } while (0)
#define CHECKF(c, ...) do { if (!(c)) wpt_fail_at(__FILE__, __LINE__, __VA_ARGS__); } while (0)
/* REQUIRE stops the test on failure (later steps would only cascade). */
#define REQUIRE(c) do { if (!(c)) { wpt_fail_at(__FILE__, __LINE__, "REQUIRE(%s)", #c); return; } } while (0)
#define CHECK_EQ_INT(a, b) do { long long wa_ = (long long)(a), wb_ = (long long)(b); \
    if (wa_ != wb_) wpt_fail_at(__FILE__, __LINE__, "%s == %lld, expected %s == %lld", #a, wa_, #b, wb_); } while (0)
#define CHECK_NEAR(a, b, tol) do { double wa_ = (double)(a), wb_ = (double)(b); \
    if (!(fabs(wa_ - wb_) <= (tol))) wpt_fail_at(__FILE__, __LINE__, "%s = %.9g, expected %.9g +- %g", #a, wa_, wb_, (double)(tol)); } while (0)
#define CHECK_CONTAINS(hay, needle) do { const char *wh_ = (hay), *wn_ = (needle); \
    if (!wh_ || !strstr(wh_, wn_)) wpt_fail_at(__FILE__, __LINE__, "expected \"%s\" in: %s", wn_, wh_ ? wh_ : "(null)"); } while (0)

const char *wpt_tmpdir(void);          /* per-test scratch directory */
const char *wpt_wpack(void);           /* path of the wpack binary */
/* Run a shell command line, capture stdout+stderr (NUL-terminated, truncated
 * to cap) and return its exit status (128+sig if killed). */
int wpt_run(char *out, size_t cap, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* Path helper: snprintf into a static rotating buffer. */
const char *wpt_path(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* The names in dir that start with '.' (wpack's temporaries), each followed
 * by a space, in readdir order; "" if none.  A static buffer: copy it to keep it. */
const char *wpt_hidden_names(const char *dir);
/* Whole-file helpers for tests.  wpt_read_file's buffer has a NUL after
 * the len bytes, so a text file reads as a C string. */
int wpt_read_file(const char *path, uint8_t **data, size_t *len);
int wpt_write_file(const char *path, const void *data, size_t len);
/* How many pages of [off, off + n) of path the page cache holds (mincore;
 * the file must be ourselves'); n = 0: to the end of the file.  (size_t)-1
 * when it cannot tell. */
size_t wpt_resident(const char *path, uint64_t off, uint64_t n);
/* 1 when a file in dir can be written with O_DIRECT (4096-byte aligned). */
int wpt_direct_io(const char *dir);
/* 1 when the page cache of files in dir is ours to steer: an O_DIRECT write
 * leaves it alone and POSIX_FADV_DONTNEED empties it of a synced file.  Not
 * so on tmpfs (its pages are the file; since Linux 6.6 it takes O_DIRECT and
 * caches anyway): tests skip their residency checks there.  When 0 it prints
 * one note naming dir and what `skipped` says was left out. */
int wpt_cache_control(const char *dir, const char *skipped);

#endif
