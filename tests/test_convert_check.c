/* test_convert_check.c — content checks while converting and in `inspect
 * --deep` (convert/check.c): tiny-a copies with one kind of bad value each —
 * a NaN weight, a NaN scale byte, a NaN E4M3 code, an out-of-range tid2eid
 * entry, a scale that overflows its block — are refused by `convert` (every
 * profile: copy and re-encode paths) and by `inspect --deep` with the same
 * one line naming the file, the tensor, the rule, the count and the first
 * bad element; exit 2; nothing left behind. */
#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "convert/convert.h"
#include "tests/harness.h"

#define TINY WPT_TINY "/hf"

/* A copy of tiny-a with bytes patched into TENSOR at element-byte offsets.
 * Returns the copy's directory and, in shard, the patched file's name. */
typedef struct patch {
    const char *tensor;
    uint64_t off;          /* byte offset within the tensor */
    size_t n;
    uint8_t bytes[8];
} patch;

static const char *corrupt(const char *name, const patch *p, size_t np, char *shard, size_t shard_sz)
{
    static char out[256], dir[4096];   /* wpt_path's buffers rotate: keep our own */
    snprintf(dir, sizeof dir, "%s/%s", wpt_tmpdir(), name);
    if (wpt_run(out, sizeof out, "cp -r %s %s", TINY, dir)) return NULL;
    wp_ckpt *k = NULL;
    wp_err e = {0};
    if (wp_ckpt_open(&k, TINY, &e)) return NULL;
    const char *res = dir;
    for (size_t i = 0; i < np && res; i++) {
        const wp_tensor_info *t = wp_ckpt_find(k, p[i].tensor);
        if (!t || p[i].off + p[i].n > t->nbytes) {
            res = NULL;
            break;
        }
        const char *src = wp_st_path(wp_ckpt_file(k, (size_t)t->file));
        const char *base = strrchr(src, '/') ? strrchr(src, '/') + 1 : src;
        if (shard) snprintf(shard, shard_sz, "%s", base);
        int fd = open(wpt_path("%s/%s", dir, base), O_WRONLY);
        if (fd < 0 || pwrite(fd, p[i].bytes, p[i].n, (off_t)(t->offset + p[i].off)) != (ssize_t)p[i].n) res = NULL;
        if (fd >= 0) close(fd);
    }
    wp_ckpt_close(k);
    return res;
}

static int lines_of(const char *s)
{
    int n = 0;
    for (; *s; s++) n += *s == '\n';
    return n;
}

/* Nothing at OUT and no temporary directory beside it. */
static void nothing_left(const char *parent, const char *out)
{
    struct stat st;
    CHECKF(stat(out, &st) != 0, "%s exists", out);
    DIR *d = opendir(parent);
    if (!d) return;
    struct dirent *x;
    while ((x = readdir(d)))
        CHECKF(strstr(x->d_name, ".tmp.") == NULL, "left behind: %s/%s", parent, x->d_name);
    closedir(d);
}

/* convert (three profiles) and inspect --deep on the corrupt copy: exit 2,
 * one line with every expected piece, no output. */
static void refused(const char *dir, const char *const *want, size_t nwant)
{
    static char out[16384];
    static const char *const profiles[] = {"reference", "hopper", "bf16"};
    static char first[16384];
    for (size_t i = 0; i < 3; i++) {
        const char *parent = wpt_path("%s/o%zu", wpt_tmpdir(), i);
        mkdir(parent, 0755);
        const char *o = wpt_path("%s/out", parent);
        int rc = wpt_run(out, sizeof out, "%s convert %s -o %s --profile %s --threads 2", wpt_wpack(), dir, o,
                         profiles[i]);
        CHECKF(rc == 2, "%s: convert exit %d: %s", profiles[i], rc, out);
        CHECKF(lines_of(out) == 1, "%s: %s", profiles[i], out);
        for (size_t w = 0; w < nwant; w++) CHECK_CONTAINS(out, want[w]);
        nothing_left(parent, o);
        if (!i) memcpy(first, out, sizeof first);
    }
    int rc = wpt_run(out, sizeof out, "%s inspect %s --deep 2>&1 >/dev/null", wpt_wpack(), dir);
    CHECKF(rc == 2, "inspect --deep exit %d: %s", rc, out);
    for (size_t w = 0; w < nwant; w++) CHECK_CONTAINS(out, want[w]);
    /* the same words as convert's, only the command differs */
    const char *m1 = strstr(first, ": "), *m2 = strstr(out, ": ");
    CHECK(m1 && m2 && !strcmp(m1, m2));
    rc = wpt_run(out, sizeof out, "%s inspect %s --deep --json 2>/dev/null", wpt_wpack(), dir);
    CHECK_EQ_INT(rc, 2);
    CHECK_CONTAINS(out, "\"content\"");
    CHECK_CONTAINS(out, want[0]);
    /* without --deep the headers alone are fine */
    CHECK_EQ_INT(wpt_run(out, sizeof out, "%s inspect %s", wpt_wpack(), dir), 0);
}

TEST(convert_check_nan_weight)
{
    /* embed.weight BF16 [512, 256]: NaN at element 37, +inf at element 300 */
    patch p[] = {{"embed.weight", 2 * 37, 2, {0xC0, 0x7F}}, {"embed.weight", 2 * 300, 2, {0x80, 0x7F}}};
    char shard[256];
    const char *dir = corrupt("nan", p, 2, shard, sizeof shard);
    REQUIRE(dir);
    const char *want[] = {"embed.weight: 2 non-finite values (NaN/inf), first at element 37 [0, 37]", shard};
    refused(dir, want, 2);
    /* the benches' switch really takes the checks out (what they measure) */
    static char out[4096];
    int rc = wpt_run(out, sizeof out, "WPACK_BENCH_NO_CONTENT_CHECK=1 %s convert %s -o %s/unchecked", wpt_wpack(),
                     dir, wpt_tmpdir());
    CHECKF(rc == 0, "exit %d: %s", rc, out);
}

TEST(convert_check_nan_f32_param)
{
    /* an HC parameter (F32, copied by every profile) */
    patch p[] = {{"layers.2.hc_ffn_fn", 4 * 1030, 4, {0, 0, 0xC0, 0x7F}}};
    const char *dir = corrupt("f32", p, 1, NULL, 0);
    REQUIRE(dir);
    const char *want[] = {"layers.2.hc_ffn_fn: 1 non-finite value (NaN/inf), first at element 1030 [1, 6]"};
    refused(dir, want, 1);
}

TEST(convert_check_nan_scale_byte)
{
    /* layers.1.attn.wq_a.scale E8M0 [1, 2]: 0xFF */
    patch p[] = {{"layers.1.attn.wq_a.scale", 1, 1, {0xFF}}};
    const char *dir = corrupt("scale", p, 1, NULL, 0);
    REQUIRE(dir);
    const char *want[] = {"layers.1.attn.wq_a.scale: 1 NaN scale (E8M0 0xFF), first at element 1 [0, 1]"};
    refused(dir, want, 1);
}

TEST(convert_check_nan_e4m3_code)
{
    /* layers.2.attn.wq_b.weight E4M3 [512, 128]: 0x7F and 0xFF */
    patch p[] = {{"layers.2.attn.wq_b.weight", 128 * 5 + 9, 1, {0x7F}},
                 {"layers.2.attn.wq_b.weight", 128 * 400 + 1, 1, {0xFF}}};
    const char *dir = corrupt("e4m3", p, 2, NULL, 0);
    REQUIRE(dir);
    const char *want[] = {"layers.2.attn.wq_b.weight: 2 NaN codes (E4M3 0x7F/0xFF), first at element 649 [5, 9]"};
    refused(dir, want, 1);
}

TEST(convert_check_tid2eid_range)
{
    /* layers.0.ffn.gate.tid2eid I64 [512, 2], n_routed_experts 8: 8 and -1 */
    patch p[] = {{"layers.0.ffn.gate.tid2eid", 8 * 17, 8, {8, 0, 0, 0, 0, 0, 0, 0}},
                 {"layers.0.ffn.gate.tid2eid", 8 * 900, 8, {0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF}}};
    const char *dir = corrupt("tid", p, 2, NULL, 0);
    REQUIRE(dir);
    const char *want[] = {
        "layers.0.ffn.gate.tid2eid: 2 entries outside [0, 8) (n_routed_experts), first at element 17 [8, 1] (8)"};
    refused(dir, want, 1);
}

/* E8M0 254 over an FP4 group: with codes up to 1.5 the block stays finite
 * (the screen's suspicion is cleared and the convert goes through), one 2.0
 * code makes it overflow. */
TEST(convert_check_scale_overflows_block)
{
    /* layers.1.ffn.experts.3.w1: weight I8 [128, 128] (256 logical), scale E8M0 [128, 8] */
    patch ok[] = {{"layers.1.ffn.experts.3.w1.weight", 128 * 2 + 16, 8, {0x33, 0x33, 0x21, 0x10, 0, 0, 0x03, 0x30}},
                  {"layers.1.ffn.experts.3.w1.weight", 128 * 2 + 24, 8, {0x33, 0x33, 0x21, 0x10, 0, 0, 0x03, 0x30}},
                  {"layers.1.ffn.experts.3.w1.scale", 8 * 2 + 1, 1, {254}}};
    const char *dir = corrupt("fine", ok, 3, NULL, 0);
    REQUIRE(dir);
    static char out[16384];
    const char *o = wpt_path("%s/fine.out", wpt_tmpdir());
    int rc = wpt_run(out, sizeof out, "%s convert %s -o %s", wpt_wpack(), dir, o);
    CHECKF(rc == 0, "exit %d: %s", rc, out);
    rc = wpt_run(out, sizeof out, "%s inspect %s --deep", wpt_wpack(), dir);
    CHECKF(rc == 0, "exit %d: %s", rc, out);
    CHECK_CONTAINS(out, "content: ok (427 tensors");
    patch bad[] = {{"layers.1.ffn.experts.3.w1.weight", 128 * 2 + 16, 8, {0x33, 0x33, 0x21, 0x10, 0, 0, 0x03, 0x30}},
                   {"layers.1.ffn.experts.3.w1.weight", 128 * 2 + 24, 8, {0x33, 0x33, 0x21, 0x14, 0, 0, 0x03, 0x30}},
                   {"layers.1.ffn.experts.3.w1.scale", 8 * 2 + 1, 1, {254}}};
    dir = corrupt("over", bad, 3, NULL, 0);
    REQUIRE(dir);
    const char *want[] = {"layers.1.ffn.experts.3.w1.scale: 1 scale makes its block non-finite, first at element 17 "
                          "[2, 1] (largest e2m1 code x scale overflows f32)"};
    refused(dir, want, 1);
}

/* Several bad tensors: inspect --deep lists each on its own line, the first
 * in file order is the error; --json carries them all. */
TEST(convert_check_inspect_lists_all)
{
    patch p[] = {{"embed.weight", 0, 2, {0xC0, 0x7F}},
                 {"layers.1.attn.wq_a.scale", 0, 1, {0xFF}},
                 {"layers.3.ffn_norm.weight", 2, 2, {0x80, 0xFF}}};
    const char *dir = corrupt("many", p, 3, NULL, 0);
    REQUIRE(dir);
    static char out[16384];
    int rc = wpt_run(out, sizeof out, "%s inspect %s --deep --threads 3 2>&1 >/dev/null", wpt_wpack(), dir);
    CHECK_EQ_INT(rc, 2);
    CHECK_EQ_INT(lines_of(out), 3);
    CHECK_CONTAINS(out, "embed.weight: 1 non-finite value");
    CHECK_CONTAINS(out, "layers.1.attn.wq_a.scale: 1 NaN scale (E8M0 0xFF)");
    CHECK_CONTAINS(out, "layers.3.ffn_norm.weight: 1 non-finite value (NaN/inf), first at element 1");
    rc = wpt_run(out, sizeof out, "%s inspect %s --deep --json 2>/dev/null", wpt_wpack(), dir);
    CHECK_EQ_INT(rc, 2);
    CHECK_CONTAINS(out, "\"problems_total\":\t3");
    CHECK_CONTAINS(out, "\"error\":\t\"");
    /* the library: same answer, the first in file order is e */
    wp_ckpt *k = NULL;
    wp_err e = {0};
    REQUIRE(wp_ckpt_open(&k, dir, &e) == 0);
    wp_check_report r;
    wp_check_opts o = {.threads = 2};
    CHECK_EQ_INT(wp_ckpt_check(k, NULL, &o, &r, &e), WP_EINVAL);
    CHECK_EQ_INT(r.bad_total, 3);
    CHECK_EQ_INT(r.tensors, 427);
    CHECK_CONTAINS(e.msg, "embed.weight");
    wp_check_report_free(&r);
    wp_ckpt_close(k);
}

/* A clean checkpoint passes, the report counts every byte; a build is not
 * what --deep reads. */
TEST(convert_check_clean)
{
    wp_ckpt *k = NULL;
    wp_err e = {0};
    REQUIRE(wp_ckpt_open(&k, TINY, &e) == 0);
    wp_check_report r;
    wp_check_opts o = {.threads = 4};
    CHECK_EQ_INT(wp_ckpt_check(k, NULL, &o, &r, &e), 0);
    uint64_t bytes = 0;
    for (size_t i = 0; i < wp_ckpt_count(k); i++) bytes += wp_ckpt_tensor(k, i)->nbytes;
    CHECK_EQ_INT(r.bytes, bytes);
    CHECK_EQ_INT(r.bad_total, 0);
    wp_check_report_free(&r);
    for (size_t i = 0; i < wp_ckpt_count(k); i++) CHECK_EQ_INT(wp_check_tensor(k, NULL, wp_ckpt_tensor(k, i), &e), 0);
    wp_ckpt_close(k);
    static char out[16384];
    const char *b = wpt_path("%s/b", wpt_tmpdir());
    REQUIRE(wpt_run(out, sizeof out, "%s convert %s -o %s", wpt_wpack(), TINY, b) == 0);
    CHECK_EQ_INT(wpt_run(out, sizeof out, "%s inspect %s --deep", wpt_wpack(), b), 2);
    CHECK_CONTAINS(out, "wpack verify");
}
