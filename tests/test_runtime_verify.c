/* test_runtime_verify.c — nothing runs unverified: `run` and `parity` check
 * every tensor of a build against its digests before using it (once per
 * process), refuse a corrupt one with verify's message naming the tensor,
 * skip the check only with --no-verify (and say so), and say that an HF
 * checkpoint was not verified. */
#include <cjson/cJSON.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "format/wpk.h"
#include "runtime/runtime.h"
#include "runtime/source_wpk.h"
#include "tests/harness.h"

#define TINY WPT_TINY "/hf"
#define GOLDEN WPT_TINY "/golden-fp32.safetensors"

static const char *make_build(const char *name)
{
    static char dir[4096], out[4096];
    snprintf(dir, sizeof dir, "%s/%s", wpt_tmpdir(), name);
    if (wpt_run(out, sizeof out, "%s convert %s -o %s", wpt_wpack(), TINY, dir)) return NULL;
    return dir;
}

/* Flip one bit in the middle of tensor NAME of BUILD/model.wpk; moves the
 * file's mtime on, as any later write would. */
static int flip(const char *build, const char *name)
{
    wp_err e = {0};
    wpk_file *f = NULL;
    const char *path = wpt_path("%s/model.wpk", build);
    if (wpk_open(&f, path, &e)) return -1;
    const wpk_tensor *t = wpk_find(f, name);
    uint64_t at = t ? t->offset + t->size / 2 : 0;
    wpk_close(f);
    if (!t) return -1;
    int fd = open(path, O_RDWR);
    uint8_t b = 0;
    int rc = fd >= 0 && pread(fd, &b, 1, (off_t)at) == 1 ? 0 : -1;
    b ^= 0x10;
    if (!rc && pwrite(fd, &b, 1, (off_t)at) != 1) rc = -1;
    struct timespec ts[2] = {{0, UTIME_OMIT}, {0, 0}};
    clock_gettime(CLOCK_REALTIME, &ts[1]);
    ts[1].tv_sec += 2;
    if (fd >= 0 && futimens(fd, ts)) rc = -1;
    if (fd >= 0) close(fd);
    return rc;
}

static int lines_of(const char *s)
{
    int n = 0;
    for (; *s; s++) n += *s == '\n';
    return n;
}

/* The "done": one flipped data byte, and run and parity exit
 * non-zero naming the tensor; nothing is generated. */
TEST(runtime_verify_refuses_flipped_byte)
{
    char b[4096], good[4096];
    REQUIRE(make_build("good") && make_build("b"));   /* make_build's buffer is reused: */
    snprintf(b, sizeof b, "%s/b", wpt_tmpdir());
    snprintf(good, sizeof good, "%s/good", wpt_tmpdir());
    static char out[65536];
    int rc = wpt_run(out, sizeof out, "%s run %s --tokens 1,2,3 --max-new 2", wpt_wpack(), b);
    CHECKF(rc == 0, "intact: exit %d: %s", rc, out);
    REQUIRE(flip(b, "layers.1.attn.wkv.weight") == 0);
    rc = wpt_run(out, sizeof out, "%s run %s --tokens 1,2,3 --max-new 2", wpt_wpack(), b);
    CHECK_EQ_INT(rc, 1);
    CHECK_CONTAINS(out, "wpack run: ");
    CHECK_CONTAINS(out, "model.wpk: layers.1.attn.wkv.weight: sha256 mismatch");
    CHECK(strstr(out, "generated") == NULL && strstr(out, "prefill") == NULL);
    CHECK_EQ_INT(lines_of(out), 1);
    rc = wpt_run(out, sizeof out, "%s parity %s --golden %s", wpt_wpack(), b, GOLDEN);
    CHECK_EQ_INT(rc, 1);
    CHECK_CONTAINS(out, "wpack parity: ");
    CHECK_CONTAINS(out, "layers.1.attn.wkv.weight: sha256 mismatch");
    CHECK(strstr(out, "PASS") == NULL && strstr(out, "teacher-forced") == NULL);
    rc = wpt_run(out, sizeof out, "%s run %s --tokens 1,2 --json", wpt_wpack(), b);
    CHECK_EQ_INT(rc, 1);
    CHECK_CONTAINS(out, "\"ok\":\tfalse");
    CHECK_CONTAINS(out, "layers.1.attn.wkv.weight");
    /* a lone .wpk is checked against its own directory's digests */
    rc = wpt_run(out, sizeof out, "%s run %s/model.wpk --tokens 1,2", wpt_wpack(), b);
    CHECK_EQ_INT(rc, 1);
    CHECK_CONTAINS(out, "layers.1.attn.wkv.weight: sha256 mismatch");
    /* parity --against checks the reference build too */
    const char *pf = wpt_path("%s/p.txt", wpt_tmpdir());
    REQUIRE(wpt_write_file(pf, "1 2 3 4 5 6 7 8\n", 16) == 0);
    rc = wpt_run(out, sizeof out, "%s parity %s --against %s --prompts %s", wpt_wpack(), good, b, pf);
    CHECK_EQ_INT(rc, 1);
    CHECK_CONTAINS(out, "layers.1.attn.wkv.weight: sha256 mismatch");
}

/* --no-verify runs the build as it is, and says so on stderr even with -q. */
TEST(runtime_verify_no_verify_says_so)
{
    const char *b = make_build("b");
    REQUIRE(b);
    REQUIRE(flip(b, "layers.1.attn.wkv.weight") == 0);
    static char out[65536];
    int rc = wpt_run(out, sizeof out, "%s run %s --tokens 1,2,3 --max-new 1 --no-verify -q 2>&1 >/dev/null",
                     wpt_wpack(), b);
    CHECKF(rc == 0, "exit %d: %s", rc, out);
    CHECK_CONTAINS(out, "not verified");
    CHECK_CONTAINS(out, "(--no-verify)");
    CHECK_EQ_INT(lines_of(out), 1);
    rc = wpt_run(out, sizeof out, "%s run %s --tokens 1,2 --max-new 1 --no-verify --json 2>/dev/null", wpt_wpack(), b);
    CHECK_EQ_INT(rc, 0);
    CHECK_CONTAINS(out, "\"verified\":\t\"skipped\"");
    rc = wpt_run(out, sizeof out, "%s parity %s --golden %s --no-verify 2>&1 >/dev/null", wpt_wpack(), b, GOLDEN);
    CHECK(rc == 0 || rc == 1);   /* the flipped weight may or may not miss a gate */
    CHECK_CONTAINS(out, "wpack parity: ");
    CHECK_CONTAINS(out, "(--no-verify)");
}

/* An intact build: silent on stderr, "digests" in the document; an HF
 * checkpoint: one notice pointing at verify-source, gone with -q, and in
 * the document rather than on stderr with --json. */
TEST(runtime_verify_notices)
{
    const char *b = make_build("b");
    REQUIRE(b);
    static char out[65536];
    int rc = wpt_run(out, sizeof out, "%s run %s --tokens 1,2 --max-new 1 2>&1 >/dev/null", wpt_wpack(), b);
    CHECK_EQ_INT(rc, 0);
    CHECK_EQ_INT(strlen(out), 0);
    rc = wpt_run(out, sizeof out, "%s run %s --tokens 1,2 --max-new 1 --json", wpt_wpack(), b);
    CHECK_EQ_INT(rc, 0);
    CHECK_CONTAINS(out, "\"verified\":\t\"digests\"");
    rc = wpt_run(out, sizeof out, "%s run %s --tokens 1,2 --max-new 1 2>&1 >/dev/null", wpt_wpack(), TINY);
    CHECK_EQ_INT(rc, 0);
    CHECK_CONTAINS(out, "nothing was verified");
    CHECK_CONTAINS(out, "wpack verify-source");
    CHECK_EQ_INT(lines_of(out), 1);
    rc = wpt_run(out, sizeof out, "%s run %s --tokens 1,2 --max-new 1 -q 2>&1 >/dev/null", wpt_wpack(), TINY);
    CHECK_EQ_INT(rc, 0);
    CHECK_EQ_INT(strlen(out), 0);
    rc = wpt_run(out, sizeof out, "%s run %s --tokens 1,2 --max-new 1 --json", wpt_wpack(), TINY);
    CHECK_EQ_INT(rc, 0);
    cJSON *j = cJSON_Parse(out);   /* stdout and stderr together: the document alone */
    REQUIRE(j);
    CHECK(!strcmp(cJSON_GetObjectItem(j, "verified")->valuestring, "no-digests"));
    cJSON_Delete(j);
    rc = wpt_run(out, sizeof out, "%s parity %s --golden %s 2>&1 >/dev/null", wpt_wpack(), TINY, GOLDEN);
    CHECK_EQ_INT(rc, 0);
    CHECK_CONTAINS(out, "wpack parity: ");
    CHECK_CONTAINS(out, "nothing was verified");
}

static void count_bytes(void *ud, const char *what, uint64_t done, uint64_t total)
{
    (void)what;
    (void)total;
    *(uint64_t *)ud = done;
}

/* The library: the flag on the source, once per process, a changed file
 * hashed again, and a corrupt build never handed out. */
TEST(runtime_verify_library_once_per_process)
{
    const char *b0 = make_build("b");
    REQUIRE(b0);
    char b[4096];
    snprintf(b, sizeof b, "%s", b0);
    wp_err e = {0};
    wp_tsrc *s = NULL;
    uint64_t hashed = 0;
    wp_tsrc_opts o = {.verify = 1, .threads = 2, .progress = count_bytes, .progress_ud = &hashed};
    REQUIRE(wp_tsrc_open_opts(&s, b, &o, &e) == 0);
    CHECK_EQ_INT(s->verified, WP_TSRC_VERIFIED);
    struct stat st;
    REQUIRE(stat(wpt_path("%s/model.wpk", b), &st) == 0);
    CHECK(hashed >= (uint64_t)st.st_size * 9 / 10);   /* every tensor (+ the rest of the file) */
    wp_tsrc_close(s);
    hashed = 0;
    REQUIRE(wp_tsrc_open_opts(&s, b, &o, &e) == 0);   /* unchanged: not hashed again */
    CHECK_EQ_INT(s->verified, WP_TSRC_VERIFIED);
    CHECK_EQ_INT(hashed, 0);
    wp_tsrc_close(s);
    o.verify = 0;
    REQUIRE(wp_tsrc_open_opts(&s, b, &o, &e) == 0);
    CHECK_EQ_INT(s->verified, WP_TSRC_UNVERIFIED);
    wp_tsrc_close(s);
    REQUIRE(flip(b, "layers.2.ffn.shared_experts.w2.weight") == 0);
    o.verify = 1;
    s = (wp_tsrc *)1;
    CHECK_EQ_INT(wp_tsrc_open_opts(&s, b, &o, &e), WP_EVERIFY);
    CHECK(s == NULL);
    CHECK_CONTAINS(e.msg, "layers.2.ffn.shared_experts.w2.weight: sha256 mismatch");
    CHECK(hashed > 0);
    /* plain wp_tsrc_open verifies nothing, as before */
    wp_err_clear(&e);
    REQUIRE(wp_tsrc_open(&s, b, &e) == 0);
    CHECK_EQ_INT(s->verified, WP_TSRC_UNVERIFIED);
    wp_tsrc_close(s);
    REQUIRE(wp_tsrc_open_opts(&s, TINY, &o, &e) == 0);
    CHECK_EQ_INT(s->verified, WP_TSRC_NO_DIGESTS);
    wp_tsrc_close(s);
}
