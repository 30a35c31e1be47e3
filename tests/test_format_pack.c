/* test_pack.c — the .wpkz shipping form (docs/format.md §3): pack -> unpack
 * byte-identical, one-tensor extraction that touches only its own frames,
 * corrupted and lying archives rejected, ratios reported, the CLI. */
#include <cjson/cJSON.h>
#include <sys/stat.h>
#include <unistd.h>

#include <zstd.h>

#include "format/pack.h"
#include "format/wpk.h"
#include "tests/harness.h"
#include "tests/wpk_zoo.h"

static const char *build_files[] = {"manifest.json", "manifest.sig", "zeros.wpk", "zoo-2.wpk", "zoo.wpk"};
#define N_BUILD_FILES 5

/* A build directory: two zoo parts, a very compressible part and the
 * manifest/signature files (opaque bytes to pack). */
static int make_build(const char *dir)
{
    wp_err e = {0};
    if (mkdir(dir, 0755)) return -1;
    if (wpkz_write(wpt_path("%s/zoo.wpk", dir), 0, 0, &e)) return -1;
    if (wpkz_write(wpt_path("%s/zoo-2.wpk", dir), 0, 2, &e)) return -1;
    wpk_writer *w;
    if (wpk_writer_open(&w, wpt_path("%s/zeros.wpk", dir), &(wpk_opts){.part_index = 2, .part_count = 3}, &e)) return -1;
    wpk_decl d = {.name = "ones.weight", .kind = WPK_KIND_ENC, .enc = WP_ENC_BF16, .ndim = 2, .shape = {256, 1024}};
    size_t id;
    if (wpk_writer_add(w, &d, &id, &e) || wpk_writer_layout(w, &e)) return -1;
    uint16_t row[1024];
    for (int i = 0; i < 1024; i++) row[i] = 0x3F80;   /* bf16 1.0 */
    for (uint64_t r = 0; r < 256; r++)
        if (wpk_writer_write(w, id, r * sizeof row, row, sizeof row, &e)) return -1;
    if (wpk_writer_commit(w, &e)) return -1;
    const char *m = "{\"files\": [\"zoo.wpk\"], \"note\": \"opaque to pack\"}\n";
    if (wpt_write_file(wpt_path("%s/manifest.json", dir), m, strlen(m))) return -1;
    uint8_t sig[64];
    wpkz_fill("signature", sig, sizeof sig);
    return wpt_write_file(wpt_path("%s/manifest.sig", dir), sig, sizeof sig);
}

static int same_file(const char *a, const char *b)
{
    uint8_t *x, *y;
    size_t nx, ny;
    if (wpt_read_file(a, &x, &nx)) return 0;
    if (wpt_read_file(b, &y, &ny)) {
        free(x);
        return 0;
    }
    int same = nx == ny && memcmp(x, y, nx) == 0;
    free(x), free(y);
    return same;
}

static const wpz_class_stat *cls(const wpz_stats *s, const char *name)
{
    for (size_t i = 0; i < s->n_classes; i++)
        if (!strcmp(s->classes[i].name, name)) return &s->classes[i];
    return NULL;
}

/* extraction over whatever the previous step left at the same path */
static int extract(const char *z, const char *name, const char *out, wp_err *e)
{
    wpz_opts o = {.force = 1};
    return wpz_extract(z, name, out, &o, e);
}

TEST(format_pack_unpack_byte_identical)
{
    char b[512], z[512], o[512];
    snprintf(b, sizeof b, "%s/build", wpt_tmpdir());
    snprintf(z, sizeof z, "%s/build.wpkz", wpt_tmpdir());
    snprintf(o, sizeof o, "%s/restored", wpt_tmpdir());
    REQUIRE(make_build(b) == 0);
    wp_err e = {0};
    wpz_stats ps, us;
    /* 1000-byte frames: large tensors span several frames; 2 zstd workers. */
    REQUIRE(wpz_pack(b, z, &(wpz_opts){.level = 3, .threads = 2, .chunk = 1000}, &ps, &e) == 0);
    REQUIRE(wpz_unpack(z, o, NULL, &us, &e) == 0);
    for (int i = 0; i < N_BUILD_FILES; i++)
        CHECKF(same_file(wpt_path("%s/%s", b, build_files[i]), wpt_path("%s/%s", o, build_files[i])),
               "%s differs after the round trip", build_files[i]);
    char out[4096];
    wpt_run(out, sizeof out, "ls -A %s | wc -l", o);
    CHECK_EQ_INT(atoi(out), N_BUILD_FILES);
    /* The restored .wpk files are valid containers with good digests. */
    wpk_file *f;
    REQUIRE(wpk_open(&f, wpt_path("%s/zoo.wpk", o), &e) == 0);
    CHECK_EQ_INT(wpk_check_deep(f, 2, NULL, NULL, &e), 0);
    wpk_close(f);
    /* Figures: 5 files, 21 + 21 + 1 tensors; raw = the build's bytes. */
    CHECK_EQ_INT(ps.files, 5);
    CHECK_EQ_INT(ps.tensors, 43);
    struct stat st;
    uint64_t total = 0;
    for (int i = 0; i < N_BUILD_FILES; i++) {
        REQUIRE(stat(wpt_path("%s/%s", b, build_files[i]), &st) == 0);
        total += (uint64_t)st.st_size;
    }
    CHECK_EQ_INT(ps.raw_bytes, total);
    REQUIRE(stat(z, &st) == 0);
    CHECK_EQ_INT(ps.comp_bytes, (uint64_t)st.st_size);
    CHECK(us.raw_bytes == ps.raw_bytes && us.frames == ps.frames && us.n_classes == ps.n_classes);
    /* 512 KiB of bf16 1.0 compresses by orders of magnitude; random bytes do not. */
    const wpz_class_stat *bf = cls(&ps, "bf16"), *mx = cls(&ps, "mxfp4");
    REQUIRE(bf && mx && cls(&ps, "header") && cls(&ps, "other") && cls(&ps, "F8_E8M0"));
    CHECK_EQ_INT(bf->tensors, 5);   /* ones.weight, and embed + norm in each zoo part */
    CHECK(bf->raw > 512 * 1024 && bf->comp < bf->raw / 20);
    CHECK(mx->comp > mx->raw * 9 / 10);
    CHECK_EQ_INT(mx->raw, 2 * 4 * 16 * 32);   /* two zoo parts, [4, 16, 64] mxfp4 each */
    /* Unpack does not overwrite unless force: then only a build. */
    wp_err_clear(&e);
    CHECK_EQ_INT(wpz_unpack(z, o, NULL, NULL, &e), WP_EEXIST);
    CHECK_CONTAINS(e.msg, "already exists; not replaced");
    CHECK(!strcmp(e.setting, "force"));
    REQUIRE(wpt_write_file(wpt_path("%s/mine", o), "m", 1) == 0);
    REQUIRE(wpz_unpack(z, o, &(wpz_opts){.force = 1}, NULL, &e) == 0);
    CHECK(access(wpt_path("%s/mine", o), F_OK) != 0 && same_file(wpt_path("%s/zoo.wpk", b), wpt_path("%s/zoo.wpk", o)));
    char other[512];
    snprintf(other, sizeof other, "%s/other", wpt_tmpdir());
    REQUIRE(mkdir(other, 0755) == 0 && wpt_write_file(wpt_path("%s/notes.txt", other), "n", 1) == 0);
    wp_err_clear(&e);
    CHECK_EQ_INT(wpz_unpack(z, other, &(wpz_opts){.force = 1}, NULL, &e), WP_EEXIST);
    CHECK_CONTAINS(e.msg, "is not a build directory");
    CHECK(access(wpt_path("%s/notes.txt", other), F_OK) == 0);
    wpt_run(out, sizeof out, "ls -A %s | grep -c '^\\.' || true", wpt_tmpdir());
    CHECK(!strcmp(out, "0\n"));   /* no temporary directory left behind */
}

TEST(format_pack_reproducible_and_lone_wpk)
{
    char b[512], z1[512], z2[512], o[512];
    snprintf(b, sizeof b, "%s/build", wpt_tmpdir());
    snprintf(z1, sizeof z1, "%s/a.wpkz", wpt_tmpdir());
    snprintf(z2, sizeof z2, "%s/b.wpkz", wpt_tmpdir());
    snprintf(o, sizeof o, "%s/one", wpt_tmpdir());
    REQUIRE(make_build(b) == 0);
    wp_err e = {0};
    REQUIRE(wpz_pack(b, z1, &(wpz_opts){.threads = 0}, NULL, &e) == 0);
    REQUIRE(wpz_pack(b, z2, &(wpz_opts){.threads = 0}, NULL, &e) == 0);
    CHECK(same_file(z1, z2));
    /* An existing archive is kept unless force. */
    CHECK_EQ_INT(wpz_pack(wpt_path("%s/zoo.wpk", b), z1, NULL, NULL, &e), WP_EEXIST);
    CHECK_CONTAINS(e.msg, "a.wpkz: already exists; not replaced");
    CHECK(same_file(z1, z2));
    /* A lone .wpk packs as a one-file build. */
    wp_err_clear(&e);
    REQUIRE(wpz_pack(wpt_path("%s/zoo.wpk", b), z1, &(wpz_opts){.force = 1}, NULL, &e) == 0);
    CHECK(!same_file(z1, z2));
    REQUIRE(wpz_unpack(z1, o, NULL, NULL, &e) == 0);
    CHECK(same_file(wpt_path("%s/zoo.wpk", b), wpt_path("%s/zoo.wpk", o)));
}

TEST(format_pack_single_tensor_extraction)
{
    char b[512], z[512], t[512];
    snprintf(b, sizeof b, "%s/build", wpt_tmpdir());
    snprintf(z, sizeof z, "%s/build.wpkz", wpt_tmpdir());
    snprintf(t, sizeof t, "%s/w1.bin", wpt_tmpdir());
    REQUIRE(make_build(b) == 0);
    wp_err e = {0};
    REQUIRE(wpz_pack(b, z, &(wpz_opts){.chunk = 300}, NULL, &e) == 0);
    /* Both zoo parts hold the name: it is ambiguous without FILE:. */
    CHECK_EQ_INT(extract(z, "layers.0.ffn.experts.w1.weight", t, &e), WP_EUSAGE);
    CHECK_CONTAINS(e.msg, "in 2 files; say FILE:NAME");
    wp_err_clear(&e);
    CHECK_EQ_INT(extract(z, "nope", t, &e), WP_EINVAL);
    CHECK_CONTAINS(e.msg, "nope: no such tensor");
    CHECK(access(t, F_OK) != 0);
    /* Corrupt the first frame of the archive (manifest.json's): a full unpack
     * fails, extracting a tensor from other frames does not even notice. */
    uint8_t *a;
    size_t n;
    REQUIRE(wpt_read_file(z, &a, &n) == 0);
    a[64 + 20] ^= 0xFF;
    REQUIRE(wpt_write_file(z, a, n) == 0);
    free(a);
    wp_err_clear(&e);
    CHECK_EQ_INT(wpz_unpack(z, wpt_path("%s/out", wpt_tmpdir()), NULL, NULL, &e), WP_EVERIFY);
    wp_err_clear(&e);
    REQUIRE(extract(z, "zoo.wpk:layers.0.ffn.experts.w1.weight", t, &e) == 0);
    uint8_t *got, want[2048];
    size_t gn;
    REQUIRE(wpt_read_file(t, &got, &gn) == 0);
    CHECK_EQ_INT(gn, 2048);
    wpkz_fill("layers.0.ffn.experts.w1.weight", want, sizeof want);
    CHECK(gn == 2048 && memcmp(got, want, 2048) == 0);
    free(got);
    REQUIRE(extract(z, "zeros.wpk:ones.weight", t, &e) == 0);
    REQUIRE(wpt_read_file(t, &got, &gn) == 0);
    CHECK(gn == 512 * 1024 && got[0] == 0x80 && got[1] == 0x3F && got[gn - 1] == 0x3F);
    free(got);
    REQUIRE(extract(z, "zoo-2.wpk:empty", t, &e) == 0);   /* zero bytes, no frames */
    struct stat st;
    CHECK(stat(t, &st) == 0 && st.st_size == 0);
    /* wpz_extract keeps an existing file unless force */
    CHECK_EQ_INT(wpz_extract(z, "zeros.wpk:ones.weight", t, NULL, &e), WP_EEXIST);
    CHECK_CONTAINS(e.msg, "w1.bin: already exists; not replaced");
    CHECK(stat(t, &st) == 0 && st.st_size == 0);
    wp_err_clear(&e);
    REQUIRE(wpz_extract(z, "zeros.wpk:ones.weight", t, &(wpz_opts){.force = 1}, &e) == 0);
    CHECK(stat(t, &st) == 0 && st.st_size == 512 * 1024);
    char t2[512];
    snprintf(t2, sizeof t2, "%s/fresh.bin", wpt_tmpdir());
    REQUIRE(wpz_extract(z, "zeros.wpk:ones.weight", t2, NULL, &e) == 0);
    CHECK(same_file(t, t2));
}

/* Footer fields (docs/format.md §3.1). */
typedef struct foot {
    uint64_t index_offset, index_size;
} foot;

static foot read_foot(const uint8_t *a, size_t n)
{
    foot f;
    memcpy(&f.index_offset, a + n - 64, 8);
    memcpy(&f.index_size, a + n - 56, 8);
    return f;
}

static void reseal_index(uint8_t *a, size_t n)
{
    foot f = read_foot(a, n);
    wp_err e = {0};
    wp_sha256_buf(a + f.index_offset, (size_t)f.index_size, a + n - 48, &e);
}

/* Write a mutated copy of archive z; unpacking it must fail with `code` and `want`. */
static void expect_unpack_fail(const uint8_t *a, size_t n, size_t cut, int k, void (*mut)(uint8_t *, size_t, int),
                               int code, const char *want)
{
    uint8_t *m = malloc(n);
    memcpy(m, a, n);
    if (mut) mut(m, n, k);
    const char *p = wpt_path("%s/bad%d.wpkz", wpt_tmpdir(), k);
    REQUIRE(wpt_write_file(p, m, cut ? cut : n) == 0);
    free(m);
    char out[512];
    snprintf(out, sizeof out, "%s/bad%d.out", wpt_tmpdir(), k);
    wp_err e = {0};
    int rc = wpz_unpack(p, out, NULL, NULL, &e);
    CHECKF(rc == code, "case %d: rc %d, expected %d (%s)", k, rc, code, e.msg);
    CHECKF(strstr(e.msg, want) != NULL, "case %d: expected \"%s\" in: %s", k, want, e.msg);
    CHECKF(strchr(e.msg, '\n') == NULL, "case %d: not one line", k);
    CHECKF(access(out, F_OK) != 0, "case %d: output exists after a failure", k);
    /* frames decoded in parallel: the same verdict, word for word */
    wp_err pe = {0};
    int prc = wpz_unpack(p, out, &(wpz_opts){.threads = 3}, NULL, &pe);
    CHECKF(prc == rc && !strcmp(pe.msg, e.msg), "case %d: with 3 threads: rc %d, %s; one at a time: rc %d, %s",
           k, prc, pe.msg, rc, e.msg);
    CHECKF(access(out, F_OK) != 0, "case %d: output exists after a failure (3 threads)", k);
}

/* Index record addresses (docs/format.md §3.2). */
static uint8_t *idx_at(uint8_t *a, size_t n) { return a + read_foot(a, n).index_offset; }
static uint32_t idx_files(uint8_t *a, size_t n) { uint32_t v; memcpy(&v, idx_at(a, n), 4); return v; }
static uint8_t *file_rec(uint8_t *a, size_t n, int i) { return idx_at(a, n) + 64 + 96 * i; }
static uint8_t *tensor_rec(uint8_t *a, size_t n, int i) { return idx_at(a, n) + 64 + 96 * idx_files(a, n) + 96 * i; }
static uint8_t *frame_rec(uint8_t *a, size_t n, int i)
{
    uint32_t nt;
    memcpy(&nt, idx_at(a, n) + 4, 4);
    return idx_at(a, n) + 64 + 96 * idx_files(a, n) + 96 * nt + 32 * i;
}
static void add64(uint8_t *p, int64_t d) { uint64_t v; memcpy(&v, p, 8); v += (uint64_t)d; memcpy(p, &v, 8); }

static void mutate(uint8_t *a, size_t n, int k)
{
    switch (k) {
    case 0: a[0] = 'X'; break;                                  /* prefix magic */
    case 1: a[n - 1] = 'X'; break;                              /* footer magic */
    case 2: idx_at(a, n)[70] ^= 1; break;                       /* index byte, not resealed */
    case 3: a[64 + 40] ^= 0x10; break;                          /* a frame's compressed byte */
    case 4: add64(frame_rec(a, n, 1), 1); reseal_index(a, n); break;
    case 5: {                                                   /* file name "../x" */
        uint64_t off;
        uint8_t *ix = idx_at(a, n);
        uint32_t nt;
        uint64_t nfr;
        memcpy(&nt, ix + 4, 4);
        memcpy(&nfr, ix + 8, 8);
        memcpy(&off, file_rec(a, n, 0), 8);
        uint8_t *str = ix + 64 + 96 * idx_files(a, n) + 96 * nt + 32 * nfr;
        str[off] = '/';
        reseal_index(a, n);
        break;
    }
    case 6: add64(tensor_rec(a, n, 0) + 80, 1); reseal_index(a, n); break;   /* frame_count */
    case 7: add64(idx_at(a, n) + 8, 1); reseal_index(a, n); break;          /* frame_count in header */
    case 8: add64(file_rec(a, n, 0) + 16, -1); reseal_index(a, n); break;   /* file size */
    case 9: tensor_rec(a, n, 0)[20] = 0xE7, tensor_rec(a, n, 0)[21] = 3; reseal_index(a, n); break;
    case 10: file_rec(a, n, 4)[40] ^= 1; reseal_index(a, n); break;         /* recorded sha256 */
    case 11: add64(frame_rec(a, n, 2) + 24, -1); reseal_index(a, n); break; /* raw_size vs zstd header
                 (zeros.wpk's header frame: the 1-byte gap it leaves is padding) */
    case 16: {                                                  /* a byte in the middle frame */
        uint64_t nfr, off;
        memcpy(&nfr, idx_at(a, n) + 8, 8);
        memcpy(&off, frame_rec(a, n, (int)(nfr / 2)), 8);
        a[off + 20] ^= 0x41;
        break;
    }
    default: break;
    }
}

TEST(format_pack_corrupted_rejected)
{
    char b[512], z[512];
    snprintf(b, sizeof b, "%s/build", wpt_tmpdir());
    snprintf(z, sizeof z, "%s/build.wpkz", wpt_tmpdir());
    REQUIRE(make_build(b) == 0);
    wp_err e = {0};
    REQUIRE(wpz_pack(b, z, &(wpz_opts){.chunk = 4096}, NULL, &e) == 0);
    uint8_t *a;
    size_t n;
    REQUIRE(wpt_read_file(z, &a, &n) == 0);
    expect_unpack_fail(a, n, 0, 0, mutate, WP_EINVAL, "not a .wpkz archive (bad magic)");
    expect_unpack_fail(a, n, 0, 1, mutate, WP_EINVAL, "no footer");
    expect_unpack_fail(a, n, 0, 2, mutate, WP_EVERIFY, "index digest mismatch");
    expect_unpack_fail(a, n, 0, 3, mutate, WP_EVERIFY, "frame 0 (bytes [64, ");
    expect_unpack_fail(a, n, 0, 4, mutate, WP_EINVAL, "frame 1: compressed bytes");
    expect_unpack_fail(a, n, 0, 5, mutate, WP_EINVAL, "file record 0: not a plain file name");
    expect_unpack_fail(a, n, 0, 6, mutate, WP_EINVAL, "ones.weight: frame");
    expect_unpack_fail(a, n, 0, 7, mutate, WP_EINVAL, "its counts need");
    expect_unpack_fail(a, n, 0, 8, mutate, WP_EINVAL, "manifest.json: frame 0: raw bytes");
    expect_unpack_fail(a, n, 0, 9, mutate, WP_EINVAL, "ones.weight: unknown encoding code 999");
    expect_unpack_fail(a, n, 0, 10, mutate, WP_EVERIFY, "zoo.wpk: restored sha256");
    expect_unpack_fail(a, n, 0, 11, mutate, WP_EVERIFY, "index says");
    expect_unpack_fail(a, n, 0, 16, mutate, WP_EVERIFY, ".wpkz: frame ");
    /* Truncated anywhere: the footer is gone. */
    expect_unpack_fail(a, n, n - 1, 12, NULL, WP_EINVAL, "no footer");
    expect_unpack_fail(a, n, n / 2, 13, NULL, WP_EINVAL, "no footer");
    expect_unpack_fail(a, n, 200, 14, NULL, WP_EINVAL, "no footer");
    expect_unpack_fail(a, n, 50, 15, NULL, WP_EINVAL, "truncated: 50 bytes");
    /* No temp directory is left behind by the failures. */
    char out[4096];
    wpt_run(out, sizeof out, "ls -A %s | grep -c '^\\.' || true", wpt_tmpdir());
    CHECK_EQ_INT(atoi(out), 0);
    free(a);
}

/* Frames compressed and decoded by several workers: the archive does not
 * depend on the worker count (each frame is compressed alone, one-shot),
 * unpack restores the same bytes with any count, and a frame larger than
 * pack's own (decoded by the streaming path) still restores. */
TEST(format_pack_parallel_frames)
{
    char b[512], o[512];
    snprintf(b, sizeof b, "%s/build", wpt_tmpdir());
    REQUIRE(make_build(b) == 0);
    /* 70 MiB of one repeated byte: larger than WPZ_CHUNK, compresses to little */
    size_t big = 70u << 20;
    uint8_t *fill = malloc(big);
    REQUIRE(fill);
    memset(fill, 0x5A, big);
    REQUIRE(wpt_write_file(wpt_path("%s/big.bin", b), fill, big) == 0);
    free(fill);
    wp_err e = {0};
    for (int t = 0; t <= 3; t++)
        REQUIRE(wpz_pack(b, wpt_path("%s/t%d.wpkz", wpt_tmpdir(), t), &(wpz_opts){.threads = t, .chunk = 3000},
                         NULL, &e) == 0);
    for (int t = 1; t <= 3; t++)
        CHECKF(same_file(wpt_path("%s/t0.wpkz", wpt_tmpdir()), wpt_path("%s/t%d.wpkz", wpt_tmpdir(), t)),
               "the archive made with %d threads differs from the one made with none", t);
    char z[512], z1[512];
    snprintf(z, sizeof z, "%s/t2.wpkz", wpt_tmpdir());
    snprintf(z1, sizeof z1, "%s/one.wpkz", wpt_tmpdir());
    wpz_stats st;
    for (int t = 0; t <= 3; t++) {
        snprintf(o, sizeof o, "%s/r%d", wpt_tmpdir(), t);
        wp_err_clear(&e);
        CHECKF(wpz_unpack(z, o, &(wpz_opts){.threads = t}, NULL, &e) == 0, "%d threads: %s", t, e.msg);
        for (int i = 0; i < N_BUILD_FILES; i++)
            CHECKF(same_file(wpt_path("%s/%s", b, build_files[i]), wpt_path("%s/%s", o, build_files[i])),
                   "%s differs after unpack with %d threads", build_files[i], t);
        CHECKF(same_file(wpt_path("%s/big.bin", b), wpt_path("%s/big.bin", o)), "big.bin, %d threads", t);
    }
    /* one 70 MiB frame (over WPZ_CHUNK): the streaming decoder's, in order */
    REQUIRE(wpz_pack(b, z1, &(wpz_opts){.threads = 2, .chunk = 80u << 20}, &st, &e) == 0);
    snprintf(o, sizeof o, "%s/r-big", wpt_tmpdir());
    CHECK_EQ_INT(wpz_unpack(z1, o, &(wpz_opts){.threads = 2}, NULL, &e), 0);
    wpz_stats st64;   /* the same with 64 MiB frames: big.bin is one frame more */
    REQUIRE(wpz_pack(b, z, &(wpz_opts){.threads = 2, .chunk = 64u << 20, .force = 1}, &st64, &e) == 0);
    CHECK_EQ_INT(st.frames + 1, st64.frames);
    CHECK(same_file(wpt_path("%s/big.bin", b), wpt_path("%s/big.bin", o)));
    CHECK(same_file(wpt_path("%s/zoo.wpk", b), wpt_path("%s/zoo.wpk", o)));
}

TEST(format_pack_refuses_corrupt_build)
{
    char b[512], z[512];
    snprintf(b, sizeof b, "%s/build", wpt_tmpdir());
    snprintf(z, sizeof z, "%s/build.wpkz", wpt_tmpdir());
    REQUIRE(make_build(b) == 0);
    wp_err e = {0};
    wpk_file *f;
    REQUIRE(wpk_open(&f, wpt_path("%s/zoo.wpk", b), &e) == 0);
    uint64_t off = wpk_find(f, "hc_head_fn")->offset;
    wpk_close(f);
    uint8_t *a;
    size_t n;
    REQUIRE(wpt_read_file(wpt_path("%s/zoo.wpk", b), &a, &n) == 0);
    a[off + 3] ^= 1;
    REQUIRE(wpt_write_file(wpt_path("%s/zoo.wpk", b), a, n) == 0);
    free(a);
    CHECK_EQ_INT(wpz_pack(b, z, NULL, NULL, &e), WP_EVERIFY);
    CHECK_CONTAINS(e.msg, "zoo.wpk: hc_head_fn: sha256 mismatch in bytes");
    CHECK(access(z, F_OK) != 0);
    /* the same refusal and words when the digest chains run on their own
     * threads (the tensor's check fails a later frame, or the end) */
    for (int t = 1; t <= 3; t++) {
        wp_err_clear(&e);
        CHECK_EQ_INT(wpz_pack(b, z, &(wpz_opts){.threads = t}, NULL, &e), WP_EVERIFY);
        CHECK_CONTAINS(e.msg, "zoo.wpk: hc_head_fn: sha256 mismatch in bytes");
        CHECK(access(z, F_OK) != 0);
    }
    wp_err_clear(&e);
    CHECK_EQ_INT(wpz_pack(wpt_path("%s/none", b), z, NULL, NULL, &e), WP_EIO);
    wp_err_clear(&e);
    CHECK_EQ_INT(wpz_pack(b, z, &(wpz_opts){.level = 99}, NULL, &e), WP_EUSAGE);
}

TEST(format_pack_cli)
{
    char b[512], z[512], o[512];
    snprintf(b, sizeof b, "%s/build", wpt_tmpdir());
    snprintf(z, sizeof z, "%s/build.wpkz", wpt_tmpdir());
    snprintf(o, sizeof o, "%s/restored", wpt_tmpdir());
    REQUIRE(make_build(b) == 0);
    static char out[65536];
    int rc = wpt_run(out, sizeof out, "%s pack %s -o %s --level 5 --threads 2 --json 2>/dev/null", wpt_wpack(), b, z);
    REQUIRE(rc == 0);
    cJSON *j = cJSON_Parse(out);
    REQUIRE(j != NULL);
    CHECK_EQ_INT(cJSON_GetObjectItem(j, "level")->valuedouble, 5);
    CHECK_EQ_INT(cJSON_GetObjectItem(j, "tensors")->valuedouble, 43);
    cJSON *encs = cJSON_GetObjectItem(j, "encodings"), *x;
    int seen_bf16 = 0;
    cJSON_ArrayForEach(x, encs) {
        if (!strcmp(cJSON_GetObjectItem(x, "encoding")->valuestring, "bf16")) {
            seen_bf16 = 1;
            CHECK(cJSON_GetObjectItem(x, "ratio")->valuedouble > 20);
        }
    }
    CHECK(seen_bf16);
    cJSON_Delete(j);
    rc = wpt_run(out, sizeof out, "%s unpack %s --list", wpt_wpack(), z);
    CHECK_EQ_INT(rc, 0);
    CHECK_CONTAINS(out, "mxfp4");
    rc = wpt_run(out, sizeof out, "%s unpack %s -o %s", wpt_wpack(), z, o);
    CHECK_EQ_INT(rc, 0);
    CHECK(same_file(wpt_path("%s/zoo.wpk", b), wpt_path("%s/zoo.wpk", o)));
    rc = wpt_run(out, sizeof out, "%s unpack %s --tensor zoo.wpk:embed.weight -o %s/e.bin --json", wpt_wpack(), z, wpt_tmpdir());
    CHECK_EQ_INT(rc, 0);
    CHECK_CONTAINS(out, "\"sha256_ok\":");
    /* Exit codes: 2 unreadable/usage, 1 a check failed. */
    CHECK_EQ_INT(wpt_run(out, sizeof out, "%s pack %s", wpt_wpack(), b), 2);
    CHECK_EQ_INT(wpt_run(out, sizeof out, "%s unpack %s/missing.wpkz -o %s/x", wpt_wpack(), wpt_tmpdir(), wpt_tmpdir()), 2);
    CHECK_CONTAINS(out, "wpack unpack: ");
    uint8_t *a;
    size_t n;
    REQUIRE(wpt_read_file(z, &a, &n) == 0);
    a[64 + 30] ^= 0x55;
    REQUIRE(wpt_write_file(z, a, n) == 0);
    free(a);
    CHECK_EQ_INT(wpt_run(out, sizeof out, "%s unpack %s -o %s/y", wpt_wpack(), z, wpt_tmpdir()), 1);
    CHECK_CONTAINS(out, "frame 0");
}

/* Issue 4's round trip through the real commands: convert tiny-a -> sign ->
 * verify -> pack -> unpack -> verify, every restored file byte-identical. */
TEST(format_pack_tiny_a_convert_sign_verify_roundtrip)
{
    const char *w = wpt_wpack(), *t = wpt_tmpdir();
    static char out[65536];
    int rc = wpt_run(out, sizeof out, "%s convert %s/hf -o %s/b --profile reference", w, WPT_TINY, t);
    REQUIRE(rc == 0);
    REQUIRE(wpt_run(out, sizeof out, "%s keygen -o %s/k", w, t) == 0);
    REQUIRE(wpt_run(out, sizeof out, "%s sign %s/b --key %s/k.pem --dsse", w, t, t) == 0);
    REQUIRE(wpt_run(out, sizeof out, "%s verify %s/b --key %s/k.pub.pem", w, t, t) == 0);
    rc = wpt_run(out, sizeof out, "%s pack %s/b -o %s/b.wpkz --json", w, t, t);
    REQUIRE(rc == 0);
    CHECK_CONTAINS(out, "\"encoding\":");
    REQUIRE(wpt_run(out, sizeof out, "%s unpack %s/b.wpkz -o %s/r", w, t, t) == 0);
    CHECK_EQ_INT(wpt_run(out, sizeof out, "diff -r %s/b %s/r", t, t), 0);
    CHECK_EQ_INT(wpt_run(out, sizeof out, "ls %s/r | tr '\\n' ' '", t), 0);
    CHECK_CONTAINS(out, "manifest.dsse.json manifest.json manifest.sig");
    CHECK_EQ_INT(wpt_run(out, sizeof out, "%s verify %s/r --key %s/k.pub.pem --deep", w, t, t), 0);
}

/* ---- Listing (format/wpkz_list.c) --------------------------------------------- */

/* Every tensor of every .wpk, as the .wpk's own directory has it, whatever
 * the frame size (64-byte frames cut the header regions into many); the
 * tensors' compressed bytes are the archive's bytes of every encoding class. */
TEST(format_pack_list_matches_directories)
{
    char b[512];
    snprintf(b, sizeof b, "%s/build", wpt_tmpdir());
    REQUIRE(make_build(b) == 0);
    static const uint64_t chunks[] = {0, 4096, 64};
    for (size_t c = 0; c < sizeof chunks / sizeof chunks[0]; c++) {
        const char *z = wpt_path("%s/b%zu.wpkz", wpt_tmpdir(), c);
        char zp[512];
        snprintf(zp, sizeof zp, "%s", z);
        wp_err e = {0};
        wpz_stats st;
        REQUIRE(wpz_pack(b, zp, &(wpz_opts){.chunk = chunks[c]}, &st, &e) == 0);
        wpz_list *l = NULL;
        REQUIRE(wpz_list_open(&l, zp, &e) == 0);
        CHECK_EQ_INT(wpz_list_files(l), N_BUILD_FILES);
        for (size_t i = 0; i < N_BUILD_FILES; i++) CHECK(!strcmp(wpz_list_file_name(l, i), build_files[i]));
        CHECK(wpz_list_file_name(l, N_BUILD_FILES) == NULL);
        size_t row = 0;
        uint64_t comp = 0;
        for (size_t fi = 2; fi < N_BUILD_FILES; fi++) {   /* zeros.wpk, zoo-2.wpk, zoo.wpk */
            wpk_file *f;
            REQUIRE(wpk_open(&f, wpt_path("%s/%s", b, build_files[fi]), &e) == 0);
            CHECK_EQ_INT(wpz_list_file_size(l, fi), wpk_file_size(f));
            for (size_t i = 0; i < wpk_count(f); i++, row++) {
                const wpk_tensor *want = wpk_tensor_at(f, i);
                const wpz_list_tensor *got = wpz_list_tensor_at(l, row);
                REQUIRE(got);
                const wpk_tensor *t = got->t;
                CHECK_EQ_INT(got->file, fi);
                CHECKF(!strcmp(t->name, want->name) && t->offset == want->offset && t->size == want->size &&
                           !memcmp(t->sha256, want->sha256, 32) && t->kind == want->kind && t->enc == want->enc &&
                           t->dtype == want->dtype && t->ndim == want->ndim &&
                           !memcmp(t->shape, want->shape, sizeof t->shape) && t->stacked == want->stacked &&
                           t->n_experts == want->n_experts && t->expert_stride == want->expert_stride &&
                           t->scale == want->scale && t->owner == want->owner && t->n_sources == want->n_sources,
                       "chunk %llu: %s: %s differs from its directory entry", (unsigned long long)chunks[c],
                       build_files[fi], want->name);
                for (uint32_t s = 0; s < t->n_sources && s < want->n_sources; s++)
                    CHECK(!strcmp(t->sources[s], want->sources[s]));
                comp += got->comp_bytes;
            }
            wpk_close(f);
        }
        CHECK_EQ_INT(wpz_list_count(l), row);
        CHECK(wpz_list_tensor_at(l, row) == NULL);
        uint64_t want = 0;
        for (size_t i = 0; i < st.n_classes; i++)
            if (strcmp(st.classes[i].name, "header") && strcmp(st.classes[i].name, "other")) want += st.classes[i].comp;
        CHECK_EQ_INT(comp, want);
        wpz_list_close(l);
    }
}

/* Archives whose index passes every check of the index alone but lies about
 * the .wpk it holds: listing refuses them in one line (and so does
 * `wpack unpack --list`). */
TEST(format_pack_list_refuses_lies)
{
    char b[512], z[512];
    snprintf(b, sizeof b, "%s/build", wpt_tmpdir());
    snprintf(z, sizeof z, "%s/build.wpkz", wpt_tmpdir());
    REQUIRE(make_build(b) == 0);
    wp_err e = {0};
    REQUIRE(wpz_pack(b, z, &(wpz_opts){.chunk = 4096}, NULL, &e) == 0);
    uint8_t *a;
    size_t n;
    REQUIRE(wpt_read_file(z, &a, &n) == 0);
    const char *p = wpt_path("%s/lie.wpkz", wpt_tmpdir());
    char lie[512];
    snprintf(lie, sizeof lie, "%s", p);
    uint8_t *m = malloc(n);
    REQUIRE(m);
    struct {
        const char *what, *want;
        int code;
    } cases[] = {
        {"a tensor record's digest", "tensor record 0 (ones.weight) is not directory entry 0 (ones.weight)", WP_EINVAL},
        {"a tensor record's encoding", "is not directory entry 0", WP_EINVAL},
        {"a header frame's bytes", "zeros.wpk", 0},
    };
    for (int k = 0; k < 3; k++) {
        memcpy(m, a, n);
        if (k == 0) tensor_rec(m, n, 0)[40] ^= 1;   /* ones.weight's sha256 */
        if (k == 1) tensor_rec(m, n, 0)[20] ^= 3;   /* ones.weight: bf16 (code 1) -> code 2, another known one */
        if (k < 2) {
            reseal_index(m, n);
        } else {
            /* the middle of zeros.wpk's header frame (its first frame) */
            uint64_t ff, off, cs;
            memcpy(&ff, file_rec(m, n, 2) + 24, 8);
            memcpy(&off, frame_rec(m, n, (int)ff), 8);
            memcpy(&cs, frame_rec(m, n, (int)ff) + 8, 8);
            m[off + cs / 2] ^= 0x40;
        }
        REQUIRE(wpt_write_file(lie, m, n) == 0);
        wpz_stats st;
        wp_err_clear(&e);
        CHECKF(wpz_stat(lie, &st, &e) == 0, "%s: the index alone passes: %s", cases[k].what, e.msg);
        wpz_list *l = (wpz_list *)1;
        wp_err_clear(&e);
        int rc = wpz_list_open(&l, lie, &e);
        CHECKF(rc != 0 && l == NULL, "%s: listed (rc %d)", cases[k].what, rc);
        if (cases[k].code) CHECK_EQ_INT(rc, cases[k].code);
        CHECKF(strstr(e.msg, cases[k].want) != NULL, "%s: expected \"%s\" in: %s", cases[k].what, cases[k].want, e.msg);
        CHECKF(!strncmp(e.msg, lie, strlen(lie)) && strchr(e.msg, '\n') == NULL, "%s: %s", cases[k].what, e.msg);
        char out[4096];
        CHECK_EQ_INT(wpt_run(out, sizeof out, "%s unpack %s --list 2>&1 >/dev/null", wpt_wpack(), lie),
                     rc == WP_EVERIFY ? 1 : 2);
        CHECK_CONTAINS(out, "wpack unpack: ");
    }
    free(m);
    free(a);
    /* not an archive at all, and a missing one */
    wpz_list *l = NULL;
    wp_err_clear(&e);
    CHECK_EQ_INT(wpz_list_open(&l, wpt_path("%s/zoo.wpk", b), &e), WP_EINVAL);
    CHECK_CONTAINS(e.msg, "not a .wpkz archive");
    wp_err_clear(&e);
    CHECK(wpz_list_open(&l, wpt_path("%s/none.wpkz", b), &e) != 0);
    CHECK(l == NULL);
    /* what a file is, by its magic */
    CHECK_EQ_INT(wpz_sniff(z), WPZ_FILE_WPKZ);
    CHECK_EQ_INT(wpz_sniff(wpt_path("%s/zoo.wpk", b)), WPZ_FILE_WPK);
    CHECK_EQ_INT(wpz_sniff(wpt_path("%s/manifest.json", b)), WPZ_FILE_OTHER);
    CHECK_EQ_INT(wpz_sniff(b), WPZ_FILE_OTHER);
    CHECK_EQ_INT(wpz_sniff(wpt_path("%s/none", b)), WPZ_FILE_OTHER);
}

/* A .wpkz written by hand: one file "x.wpk" of `size` bytes whose only
 * frame holds `raw` (a .wpk header region as a liar would write it), the
 * rest alignment padding; a valid index and footer. */
static int write_archive(const char *path, const uint8_t *raw, size_t nraw, uint64_t size)
{
    uint8_t comp[8192];
    ZSTD_CCtx *z = ZSTD_createCCtx();
    ZSTD_CCtx_setParameter(z, ZSTD_c_checksumFlag, 1);
    size_t nc = ZSTD_compress2(z, comp, sizeof comp, raw, nraw);
    ZSTD_freeCCtx(z);
    if (ZSTD_isError(nc)) return -1;
    static const char name[] = "x.wpk";
    uint8_t idx[64 + 96 + 32 + sizeof name];
    memset(idx, 0, sizeof idx);
    uint32_t one = 1;
    uint64_t nfr = 1, strsz = sizeof name, off0 = 0, len = sizeof name - 1, first = 0, at = 64, rawoff = 0;
    uint64_t rawsz = nraw, csz = nc;
    memcpy(idx, &one, 4);                         /* file_count; tensor_count 0 */
    memcpy(idx + 8, &nfr, 8);
    memcpy(idx + 16, &strsz, 8);
    uint8_t *f = idx + 64;                        /* file record */
    memcpy(f, &off0, 8), memcpy(f + 8, &len, 8), memcpy(f + 16, &size, 8), memcpy(f + 24, &first, 8);
    memcpy(f + 32, &nfr, 8);
    uint8_t *fr = idx + 64 + 96;                  /* frame record */
    memcpy(fr, &at, 8), memcpy(fr + 8, &csz, 8), memcpy(fr + 16, &rawoff, 8), memcpy(fr + 24, &rawsz, 8);
    memcpy(idx + 64 + 96 + 32, name, sizeof name);
    uint8_t pre[64] = "\x89WPZ\r\n\x1a\n", foot[64] = {0};
    uint16_t major = 1;
    uint32_t endian = 0x0A0B0C0Du;
    memcpy(pre + 8, &major, 2), memcpy(pre + 12, &endian, 4);
    uint64_t io = 64 + nc, is = sizeof idx;
    memcpy(foot, &io, 8), memcpy(foot + 8, &is, 8);
    wp_err e = {0};
    if (wp_sha256_buf(idx, sizeof idx, foot + 16, &e)) return -1;
    memcpy(foot + 56, "WPZ-END\0", 8);
    FILE *o = fopen(path, "wb");
    if (!o) return -1;
    int ok = fwrite(pre, 64, 1, o) == 1 && fwrite(comp, nc, 1, o) == 1 && fwrite(idx, sizeof idx, 1, o) == 1 &&
             fwrite(foot, 64, 1, o) == 1;
    return fclose(o) == 0 && ok ? 0 : -1;
}

/* The .wpk header inside an archive sizes nothing by itself: its counts are
 * bounded and must add up to its data_offset before more is decompressed,
 * and the frames must hold the whole region. */
TEST(format_pack_list_bounds_the_header_region)
{
    uint8_t h[256];
    struct {
        uint64_t tensors, data_offset;
        const char *want;
    } cases[] = {
        {0, 1ull << 40, "x.wpk: data_offset 1099511627776: its sections end at 256, the file has 4096 bytes"},
        {1u << 21, 4096, "x.wpk: header counts out of range (2097152 tensors"},
        {0, 4096, "x.wpk: its frames end at byte 256, inside the header region (4096 bytes)"},
    };
    for (int k = 0; k < 3; k++) {
        memset(h, 0, sizeof h);
        memcpy(h, "\x89WPK\r\n\x1a\n", 8);
        uint32_t align_log2 = 12;
        memcpy(h + 24, &align_log2, 4);
        memcpy(h + 32, &cases[k].tensors, 8);
        memcpy(h + 88, &cases[k].data_offset, 8);   /* wpk_hdr.data_offset */
        const char *p = wpt_path("%s/h%d.wpkz", wpt_tmpdir(), k);
        char z[512];
        snprintf(z, sizeof z, "%s", p);
        REQUIRE(write_archive(z, h, sizeof h, 4096) == 0);
        wp_err e = {0};
        wpz_stats st;
        CHECKF(wpz_stat(z, &st, &e) == 0, "case %d: the index alone is fine: %s", k, e.msg);
        wpz_list *l = NULL;
        wp_err_clear(&e);
        CHECK_EQ_INT(wpz_list_open(&l, z, &e), WP_EINVAL);
        CHECK(l == NULL);
        CHECKF(strstr(e.msg, cases[k].want) != NULL, "case %d: expected \"%s\" in: %s", k, cases[k].want, e.msg);
    }
}
