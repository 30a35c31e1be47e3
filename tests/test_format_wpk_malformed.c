/*
 * test_wpk_malformed.c — a generated corpus of lying containers (docs/format.md
 * §2.6).  Each case starts from the valid zoo container, changes one thing,
 * re-seals the header digest (so the specific rule, not the digest, must
 * catch it) and states the one-line error it must produce.  Then: truncation
 * at several points, every single-byte flip of the header region, and a small
 * fuzz loop over the directory.  Runs under ASan/UBSan with the rest.
 */
#include <unistd.h>

#include "format/wpk_internal.h"
#include "tests/harness.h"
#include "tests/wpk_zoo.h"

typedef struct img {
    uint8_t *b;
    size_t n;
    uint64_t data_offset;   /* of the unmodified image, for re-sealing */
} img;

static wpk_hdr *H(img *m) { return (wpk_hdr *)m->b; }
static wpk_dirent *D(img *m, size_t i) { return (wpk_dirent *)(m->b + WPK_HEADER_SIZE + i * WPK_ENTRY_SIZE); }
static char *S(img *m) { return (char *)m->b + H(m)->str_offset; }

static void reseal(img *m)
{
    wp_err e = {0};
    if (m->data_offset <= m->n) wpk_header_digest(m->b, m->data_offset, H(m)->header_sha256, &e);
}

static int load_zoo(img *m)
{
    wp_err e = {0};
    const char *p = wpt_path("%s/base.wpk", wpt_tmpdir());
    if (wpkz_write(p, 0, 0, &e)) return -1;
    if (wpt_read_file(p, &m->b, &m->n)) return -1;
    m->data_offset = H(m)->data_offset;
    return 0;
}

/* Zoo directory indices used below (tests/wpk_zoo.c).  Its layout: 21
 * entries (5632 B) + sources + strings end past 4096, so data starts at 8192:
 * embed.weight [8192, 12288), norm.weight [12288, 12352), hc_head_fn at 16384. */
enum { EMBED = 0, NORM = 1, HC = 2, TID = 3, WQA = 4, WQA_S = 5, F16W = 8, F32W = 9, W1 = 10,
       W1_S = 11, W13 = 12, W13_G = 14, LAST = 20 };

/* Apply case k; set the expected error code and message fragment.  Returns 0
 * when k is past the last case. */
static int mutate(int k, img *m, int *code, const char **want)
{
    wpk_hdr *h = H(m);
    *code = WP_EINVAL;
    switch (k) {
    case 0: m->b[1] = 'X'; *want = "not a .wpk container (bad magic)"; break;
    case 1: h->version_major = 2; *want = "format version 2.0, this reader reads 1.x"; break;
    case 2: h->endian = 0x0D0C0B0Au; *want = "(a big-endian container)"; break;
    case 3: h->header_size = 255; *want = "header_size 255 / entry_size 256, expected 256 / 256"; break;
    case 4: h->flags = 4; *want = "unknown header flags 0x4"; break;
    case 5: h->align_log2 = 11; *want = "align_log2 11 outside [12, 30]"; break;
    case 6: h->reserved[63] = 1; *want = "reserved header bytes are not zero"; break;
    case 7: h->tensor_count = 1ull << 40; *want = "tensor_count 1099511627776 > 1048576"; break;
    case 8: h->tensor_count += 1; *want = "section table lies"; break;
    case 9: h->src_count = 1ull << 30; *want = "src_count 1073741824 > 16777216"; break;
    case 10: h->str_size = 1ull << 29; *want = "str_size 536870912 > 268435456"; break;
    case 11: h->file_size += 4096; *want = "header says"; break;
    case 12: D(m, WQA)->name_len += 1; *want = "tensor #4: name ref"; break;   /* not NUL-terminated */
    case 13: D(m, WQA)->name_off = h->str_size; *want = "tensor #4: name ref"; break;
    case 14: S(m)[D(m, WQA)->name_off + 3] = '\n'; *want = "tensor #4: name has a byte outside 0x21..0x7E"; break;
    case 15:
        D(m, F32W)->name_off = D(m, F16W)->name_off;
        D(m, F32W)->name_len = D(m, F16W)->name_len;
        *want = "layers.0.attn.f16.weight: duplicate tensor name (entries 8 and 9)";
        break;
    case 16: D(m, EMBED)->enc = 77; *want = "embed.weight: unknown encoding code 77"; break;
    case 17: D(m, EMBED)->size += 2; *want = "embed.weight: size 4098 != 4096 from bf16 [64, 32]"; break;
    case 18: D(m, EMBED)->shape[0] = 65; *want = "embed.weight: size 4096 != 4160 from bf16 [65, 32]"; break;
    case 19: D(m, NORM)->shape[3] = 1; *want = "norm.weight: shape[3] = 1 beyond ndim 1"; break;
    case 20: D(m, NORM)->ndim = 9; *want = "norm.weight: ndim 9 > 8"; break;
    case 21: D(m, LAST)->offset = UINT64_MAX - 2; *want = "packed.f4: data [18446744073709551613, +5) past end of file"; break;
    case 22: D(m, HC)->offset = D(m, NORM)->offset; *want = "hc_head_fn: data at 12288 overlaps norm.weight (ends at 12352)"; break;
    case 23: D(m, HC)->offset += 8; *want = "hc_head_fn: data at 16392 is not aligned to 4096"; break;
    case 24: D(m, HC)->offset += 4096; *want = "hc_head_fn: data at 20480, the canonical layout puts it at 16384"; break;
    case 25: D(m, EMBED)->offset = 0; *want = "embed.weight: data at 0 is inside the header region"; break;
    case 26: D(m, W1)->expert_stride += 1; *want = "layers.0.ffn.experts.w1.weight: expert_stride 513 != 512"; break;
    case 27:
        D(m, W1_S)->flags = 0;
        D(m, W1_S)->expert_stride = 0;
        *want = "w1.weight: scale layers.0.ffn.experts.w1.scale is F8_E8M0 [4, 16, 2], expected F8_E8M0 [4, 16, 2] stacked";
        break;
    case 28: D(m, WQA)->scale_index = WPK_NONE; *want = "layers.0.attn.wq_a.weight: fp8 weight has no scale entry"; break;
    case 29: D(m, WQA)->scale_index = 1000; *want = "wq_a.weight: scale/global/owner index out of range (21 tensors)"; break;
    case 30: D(m, WQA_S)->owner_index = EMBED; *want = "wq_a.weight: its scale layers.0.attn.wq_a.scale does not name it as owner"; break;
    case 31: D(m, WQA)->block_rows = 0; *want = "wq_a.weight: fp8 block 0x128 has a zero side"; break;
    case 32: D(m, WQA)->scale_fmt = 1; *want = "wq_a.scale is F8_E8M0 [2, 1], expected F32 [2, 1]"; break;
    case 33: D(m, WQA)->scale_fmt = 3; *want = "wq_a.weight: unknown scale_fmt 3"; break;
    case 34: D(m, W1)->block_cols = 16; *want = "w1.weight: scale block 1x16, mxfp4 needs 1x32"; break;
    case 35: D(m, EMBED)->src_first = h->src_count; *want = "embed.weight: sources ["; break;   /* past the table */
    case 36: D(m, W1)->src_count = 3; *want = "w1.weight: 3 sources is not a multiple of 4 experts"; break;
    case 37: S(m)[h->model_json.off] = '['; *want = "model_json is not a JSON object"; break;
    case 38: h->profile_json.len -= 1; *want = "profile_json ref"; break;   /* not NUL-terminated */
    case 39: D(m, TID)->reserved3[5] = 1; *want = "layers.0.ffn.gate.tid2eid: reserved bytes are not zero"; break;
    case 40: h->part_index = 1; *want = "part 1 of 1"; break;
    case 41: *want = "100 bytes after the last tensor's data"; break;   /* see run_case */
    case 42: D(m, W13)->global_index = WPK_NONE; *want = "w13.weight: nvfp4 weight has no global-scale entry"; break;
    case 43: D(m, WQA)->global_index = W13_G; *want = "wq_a.weight: only nvfp4 weights have a global-scale entry"; break;
    case 44: D(m, EMBED)->scale_index = WQA_S; *want = "embed.weight: bf16 entry has a scale entry"; break;
    case 45: D(m, TID)->owner_index = EMBED; *want = "tid2eid: owner embed.weight does not refer to it"; break;
    case 46: S(m)[h->str_size - 1] = 'x'; *want = "string area does not end with NUL"; break;
    case 47: D(m, WQA)->scale_index = WQA; *want = "wq_a.weight: refers to itself"; break;
    case 48: D(m, EMBED)->shape[0] = 1ull << 62; *want = "embed.weight: shape [4611686018427387904, 32] is not valid for bf16"; break;
    case 49: {   /* a source name with a control byte */
        wpk_ref r;
        memcpy(&r, m->b + h->src_offset, sizeof r);
        S(m)[r.off] = '\t';
        *want = "source name #0: name has a byte outside 0x21..0x7E";
        break;
    }
    case 50: D(m, W13)->flags |= 0x80; *want = "w13.weight: unknown flags 0x81"; break;
    case 51: D(m, NORM)->offset += 1ull << 40; *want = "norm.weight: data [1099511640064, +64) past end of file"; break;
    default: return 0;
    }
    return 1;
}

static void run_case(int k, img *base)
{
    img m = *base;
    m.b = malloc(base->n + 100);
    memcpy(m.b, base->b, base->n);
    int code;
    const char *want;
    mutate(k, &m, &code, &want);
    if (k == 41) {   /* trailing bytes, with a header that admits them */
        memset(m.b + m.n, 0, 100);
        m.n += 100;
        H(&m)->file_size += 100;
    }
    reseal(&m);
    char path[512];
    snprintf(path, sizeof path, "%s/case%02d.wpk", wpt_tmpdir(), k);
    REQUIRE(wpt_write_file(path, m.b, m.n) == 0);
    free(m.b);
    wp_err e = {0};
    wpk_file *f = (wpk_file *)1;
    int rc = wpk_open(&f, path, &e);
    CHECKF(rc == code, "case %d: rc %d, expected %d (%s)", k, rc, code, e.msg);
    CHECKF(f == NULL, "case %d: *out not NULL on failure", k);
    CHECKF(strncmp(e.msg, path, strlen(path)) == 0, "case %d: message does not start with the path: %s", k, e.msg);
    CHECKF(strstr(e.msg, want) != NULL, "case %d: expected \"%s\" in: %s", k, want, e.msg);
    CHECKF(strchr(e.msg, '\n') == NULL, "case %d: message is not one line", k);
    if (rc == 0) wpk_close(f);
}

TEST(format_wpk_malformed_corpus)
{
    img base;
    REQUIRE(load_zoo(&base) == 0);
    int code;
    const char *want;
    int n = 0;
    img scratch = base;
    scratch.b = malloc(base.n + 100);
    for (; ; n++) {
        memcpy(scratch.b, base.b, base.n);
        if (!mutate(n, &scratch, &code, &want)) break;
        run_case(n, &base);
    }
    free(scratch.b);
    CHECKF(n >= 50, "only %d cases", n);
    free(base.b);
}

/* A newer minor version only gives meaning to reserved bytes: still readable. */
TEST(format_wpk_malformed_minor_version_accepted)
{
    img m;
    REQUIRE(load_zoo(&m) == 0);
    H(&m)->version_minor = 7;
    reseal(&m);
    const char *p = wpt_path("%s/minor.wpk", wpt_tmpdir());
    REQUIRE(wpt_write_file(p, m.b, m.n) == 0);
    wp_err e = {0};
    wpk_file *f;
    CHECKF(wpk_open(&f, p, &e) == 0, "%s", e.msg);
    if (!e.code) {
        CHECK_EQ_INT(wpk_version_minor(f), 7);
        wpk_close(f);
    }
    free(m.b);
}

TEST(format_wpk_malformed_truncated)
{
    img m;
    REQUIRE(load_zoo(&m) == 0);
    const size_t cuts[] = {0, 8, 255, 256 + 100, 256 + 3 * 256, m.data_offset - 1,
                           m.data_offset + 10, m.n / 2, m.n - 1};
    for (size_t i = 0; i < sizeof cuts / sizeof cuts[0]; i++) {
        const char *p = wpt_path("%s/cut%zu.wpk", wpt_tmpdir(), cuts[i]);
        REQUIRE(wpt_write_file(p, m.b, cuts[i]) == 0);
        wp_err e = {0};
        wpk_file *f;
        CHECKF(wpk_open(&f, p, &e) == WP_EINVAL, "cut at %zu: %s", cuts[i], e.msg);
        CHECKF(strstr(e.msg, "truncated") != NULL, "cut at %zu: %s", cuts[i], e.msg);
    }
    free(m.b);
}

/* Every byte of the header region is covered: flipping any one of them (and
 * not re-sealing) is rejected, by a specific rule or by the header digest. */
TEST(format_wpk_malformed_every_header_byte_flip)
{
    img m;
    REQUIRE(load_zoo(&m) == 0);
    int digest_hits = 0;
    for (size_t i = 0; i < m.data_offset; i++) {
        m.b[i] ^= 0x01;
        wpk_parsed p;
        wp_err e = {0};
        int rc = wpk_parse(m.b, m.n, m.n, "flip.wpk", 0, &p, &e);
        m.b[i] ^= 0x01;
        if (rc == 0) {
            CHECKF(0, "flip at byte %zu accepted", i);
            wpk_parsed_free(&p);
            break;
        }
        if (rc == WP_EVERIFY) digest_hits++;
    }
    /* Sanity: the reserved zero tail of the string area is only caught by the digest. */
    CHECK(digest_hits > 0);
    free(m.b);
}

/* Fuzz: random multi-byte changes to header and directory, re-sealed so they
 * reach the deep rules.  Nothing may crash; whatever is accepted must satisfy
 * the invariants the reader promises. */
TEST(format_wpk_malformed_fuzz_directory)
{
    img m;
    REQUIRE(load_zoo(&m) == 0);
    uint8_t *orig = malloc(m.n);
    memcpy(orig, m.b, m.n);
    uint64_t x = 0x9E3779B97F4A7C15ull;
    int accepted = 0;
    uint64_t region = WPK_HEADER_SIZE + wpkz_n * WPK_ENTRY_SIZE;
    for (int it = 0; it < 4000; it++) {
        memcpy(m.b, orig, m.n);
        int flips = 1 + it % 4;
        for (int k = 0; k < flips; k++) {
            x ^= x << 13, x ^= x >> 7, x ^= x << 17;
            size_t at = (size_t)(x % region);
            uint8_t v = (uint8_t)(x >> 32);
            /* Bias towards small values and edge cases in numeric fields. */
            m.b[at] = (x >> 40) % 3 == 0 ? 0 : (x >> 40) % 3 == 1 ? 0xFF : v;
        }
        reseal(&m);
        wpk_parsed p;
        wp_err e = {0};
        if (wpk_parse(m.b, m.n, m.n, "fuzz.wpk", 0, &p, &e) == 0) {
            accepted++;
            uint64_t end = p.hdr.data_offset;
            for (size_t i = 0; i < p.n; i++) {
                CHECK(p.t[i].offset >= end && p.t[i].offset + p.t[i].size <= m.n);
                CHECK(p.t[i].offset % (1ull << p.hdr.align_log2) == 0);
                end = p.t[i].offset + p.t[i].size;
            }
            wpk_parsed_free(&p);
        } else {
            CHECK(strchr(e.msg, '\n') == NULL && e.msg[0]);
        }
    }
    /* Some mutations are harmless (digest bytes, sha256 fields): accepted. */
    CHECK(accepted > 0 && accepted < 4000);
    free(orig);
    free(m.b);
}

/* A flipped data byte leaves the structure valid but fails the deep check. */
TEST(format_wpk_malformed_data_flip_needs_deep_check)
{
    img m;
    REQUIRE(load_zoo(&m) == 0);
    size_t off = D(&m, W13)->offset + 5;
    m.b[off] ^= 0x80;
    const char *p = wpt_path("%s/dflip.wpk", wpt_tmpdir());
    REQUIRE(wpt_write_file(p, m.b, m.n) == 0);
    wp_err e = {0};
    wpk_file *f;
    REQUIRE(wpk_open(&f, p, &e) == 0);
    CHECK_EQ_INT(wpk_check_deep(f, 2, NULL, NULL, &e), WP_EVERIFY);
    CHECK_CONTAINS(e.msg, "layers.0.ffn.experts.w13.weight: sha256 mismatch in bytes");
    wpk_close(f);
    free(m.b);
}
