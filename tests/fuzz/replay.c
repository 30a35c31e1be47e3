/*
 * replay.c — every fuzz harness in the test suite.  `make` compiles each
 * tests/fuzz/fuzz_NAME.c into the test binary with its entry point renamed
 * wpfuzz_NAME; the tests here replay every seed of every harness
 * (tests/fuzz/corpus/ * /) and every regression input (tests/regress/)
 * through each harness, so `make test` (and CI, under ASan+UBSan) re-checks
 * every past finding on every run without libFuzzer.  A harness aborts on a
 * broken invariant; the test runner reports the crash.
 */
#include <dirent.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "tests/harness.h"

/* module (test name prefix), harness name */
#define FUZZ_HARNESSES(X)                                                                          \
    X(hf, safetensors) X(hf, ckpt_index) X(model, config) X(format, wpk) X(format, wpkz)          \
    X(trust, manifest) X(trust, signature) X(trust, dsse) X(trust, digests) X(trust, pem)         \
    X(trust, build_dir) X(convert, profile) X(runtime, tokens) X(verify, golden)

#define DECLARE(mod, name) int wpfuzz_##name(const uint8_t *data, size_t size);
FUZZ_HARNESSES(DECLARE)

typedef int (*fuzz_fn)(const uint8_t *, size_t);

static int replay_dir(const char *dir, fuzz_fn fn, int depth)
{
    DIR *d = opendir(dir);
    if (!d) return 0;
    int n = 0;
    struct dirent *de;
    char **names = NULL;
    size_t nn = 0;
    while ((de = readdir(d))) {
        if (de->d_name[0] == '.') continue;
        names = realloc(names, (nn + 1) * sizeof *names);
        names[nn++] = strdup(de->d_name);
    }
    closedir(d);
    for (size_t i = 0; i < nn; i++) {   /* readdir order is the filesystem's: sort for a stable log */
        for (size_t j = i + 1; j < nn; j++)
            if (strcmp(names[j], names[i]) < 0) {
                char *t = names[i];
                names[i] = names[j];
                names[j] = t;
            }
        char p[4096];
        snprintf(p, sizeof p, "%s/%s", dir, names[i]);
        struct stat st;
        if (lstat(p, &st) == 0 && S_ISDIR(st.st_mode) && depth < 4) {
            n += replay_dir(p, fn, depth + 1);
        } else if (lstat(p, &st) == 0 && S_ISREG(st.st_mode) && strcmp(names[i], "README.md")) {
            uint8_t *data;
            size_t len;
            if (wpt_read_file(p, &data, &len) == 0) {
                fn(data, len);
                free(data);
                n++;
            }
        }
        free(names[i]);
    }
    free(names);
    return n;
}

/* Every seed and regression input through fn, with the harness's scratch
 * files in this test's directory. */
static void replay(fuzz_fn fn, const char *name)
{
    setenv("TMPDIR", wpt_tmpdir(), 1);
    char own[256];
    snprintf(own, sizeof own, "tests/fuzz/corpus/%s", name);
    struct stat st;
    CHECKF(stat(own, &st) == 0 && S_ISDIR(st.st_mode), "%s: no seed corpus", own);
    int n = replay_dir("tests/fuzz/corpus", fn, 0);
    int r = replay_dir("tests/regress", fn, 0);
    CHECKF(r >= 7, "only %d regression inputs found", r);
    printf("%s: %d seeds and %d regression inputs replayed\n", name, n, r);
}

#define DEFINE(mod, name) \
    TEST(mod##_fuzz_replay_##name) { replay(wpfuzz_##name, #name); }
FUZZ_HARNESSES(DEFINE)

/* Every harness file is in the list above (so it is replayed), and has seeds. */
TEST(house_fuzz_harnesses_listed)
{
    static const char *const listed[] = {
#define NAME(mod, name) #name,
        FUZZ_HARNESSES(NAME)
    };
    DIR *d = opendir("tests/fuzz");
    REQUIRE(d);
    struct dirent *de;
    int files = 0;
    while ((de = readdir(d))) {
        size_t L = strlen(de->d_name);
        if (strncmp(de->d_name, "fuzz_", 5) || L < 8 || strcmp(de->d_name + L - 2, ".c")) continue;
        files++;
        char nm[256];
        snprintf(nm, sizeof nm, "%.*s", (int)(L - 7), de->d_name + 5);
        int found = 0;
        for (size_t i = 0; i < sizeof listed / sizeof listed[0]; i++) found |= !strcmp(listed[i], nm);
        CHECKF(found, "tests/fuzz/%s is not in FUZZ_HARNESSES (tests/fuzz/replay.c)", de->d_name);
    }
    closedir(d);
    CHECK_EQ_INT(files, (int)(sizeof listed / sizeof listed[0]));
}
