/*
 * fuzz_util.h — what the harnesses of tests/fuzz/ share: the input as a real
 * file (a memfd seen through /proc/self/fd, or a file in a scratch
 * directory), a scratch directory per process, removing a tree, and the
 * one-line refusal rule every harness enforces.
 *
 * Each harness is one file with LLVMFuzzerTestOneInput.  `make fuzz` links
 * it with libFuzzer (clang -fsanitize=fuzzer,address,undefined); the test
 * suite compiles it with -DLLVMFuzzerTestOneInput=wpfuzz_NAME and replays
 * every seed and regression input through it (tests/fuzz/replay.c).  So a
 * harness keeps everything but its entry point static and never prints.
 */
#ifndef WP_FUZZ_UTIL_H
#define WP_FUZZ_UTIL_H

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/wp.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* A broken invariant: say which (and the library's message, if any) on
 * stderr, then abort, so libFuzzer (or the replaying test) records it. */
static inline void fz_die(const char *what, const wp_err *e)
{
    fprintf(stderr, "fuzz harness: %s%s%s\n", what, e && e->code ? ": " : "", e && e->code ? e->msg : "");
    abort();
}

/* A refusal explains itself: a code, one non-empty line, no control
 * character (common/err.c escapes them).  Anything else is a finding. */
static inline void fz_check_refusal(int rc, const wp_err *e)
{
    if (rc == 0) return;
    if (rc > 0 || !e->code || !e->msg[0]) abort();
    for (const unsigned char *p = (const unsigned char *)e->msg; *p; p++)
        if (*p < 0x20 || *p == 0x7f) abort();
}

/* The input through a memfd: the path names a real file descriptor, as a
 * file on disk would.  One memfd per harness process, rewritten each run. */
static inline const char *fz_memfd_path(int *fdp, const uint8_t *data, size_t size, const char *name)
{
    static char path[64];
    if (*fdp < 0 && (*fdp = memfd_create(name, 0)) < 0) abort();
    if (ftruncate(*fdp, 0) != 0 || (size && pwrite(*fdp, data, size, 0) != (ssize_t)size)) abort();
    snprintf(path, sizeof path, "/proc/self/fd/%d", *fdp);
    return path;
}

static inline int fz_rm_one(const char *p, const struct stat *st, int type, struct FTW *ftw)
{
    (void)st, (void)type, (void)ftw;
    remove(p);
    return 0;
}

static int fz_unlocked __attribute__((unused));
static inline int fz_unlock_one(const char *p, const struct stat *st, int type, struct FTW *ftw)
{
    (void)ftw;
    if (type == FTW_DNR || (type == FTW_D && (st->st_mode & 0700) != 0700)) {
        chmod(p, 0700);   /* a directory the input made unreadable */
        fz_unlocked++;
    }
    return 0;
}

/* Remove a tree without following symlinks (directories made unreadable
 * are opened up first, level by level). */
static inline void fz_rm_tree(const char *path)
{
    for (int i = 0; i < 16; i++) {
        fz_unlocked = 0;
        nftw(path, fz_unlock_one, 16, FTW_PHYS);
        if (!fz_unlocked) break;
    }
    nftw(path, fz_rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

static char fz_scratch_path[512] __attribute__((unused));
static inline void fz_scratch_cleanup(void)
{
    if (fz_scratch_path[0]) fz_rm_tree(fz_scratch_path);
}

/* A scratch directory for this process ($TMPDIR, else /tmp), removed at exit. */
static inline const char *fz_scratch(void)
{
    if (!fz_scratch_path[0]) {
        const char *t = getenv("TMPDIR");
        snprintf(fz_scratch_path, sizeof fz_scratch_path, "%s/wpfuzz.XXXXXX", t && *t ? t : "/tmp");
        if (!mkdtemp(fz_scratch_path)) abort();
        atexit(fz_scratch_cleanup);
    }
    return fz_scratch_path;
}

/* scratch/name, in a static rotating buffer. */
static inline const char *fz_path(const char *name)
{
    static char buf[4][1024];
    static int k;
    char *b = buf[k++ & 3];
    snprintf(b, sizeof buf[0], "%s/%s", fz_scratch(), name);
    return b;
}

static inline void fz_write(const char *path, const void *p, size_t n)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) abort();
    if (n && write(fd, p, n) != (ssize_t)n) abort();
    close(fd);
}

/* The input as a NUL-terminated copy (for parsers that take a C string). */
static inline char *fz_cstr(const uint8_t *data, size_t size)
{
    char *s = malloc(size + 1);
    if (!s) abort();
    if (size) memcpy(s, data, size);
    s[size] = 0;
    return s;
}

#endif
