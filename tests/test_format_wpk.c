/* test_wpk.c — .wpk write -> read round trips, byte layout, reproducibility,
 * per-expert views, deep checks and writer misuse (docs/format.md §2). */
#include <pthread.h>
#include <sys/stat.h>
#include <unistd.h>

#include "format/wpk.h"
#include "tests/harness.h"
#include "tests/wpk_zoo.h"

static uint64_t le64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = v << 8 | p[i];
    return v;
}

/* Every tensor of the zoo comes back with its declared encoding, shape, bytes
 * and SHA-256, at an aligned offset; scales and globals are tied both ways. */
static void check_zoo(const char *path, uint32_t align)
{
    wp_err e = {0};
    wpk_file *f;
    REQUIRE(wpk_open(&f, path, &e) == 0);
    CHECK_EQ_INT(wpk_count(f), wpkz_n);
    CHECK_EQ_INT(wpk_align(f), align);
    CHECK(strcmp(wpk_model_json(f), WPKZ_MODEL_JSON) == 0);
    CHECK(strcmp(wpk_profile_json(f), WPKZ_PROFILE_JSON) == 0);
    CHECK(strcmp(wpk_provenance_json(f), WPKZ_PROVENANCE_JSON) == 0);
    for (size_t i = 0; i < wpkz_n; i++) {
        const wpkz_spec *s = &wpkz_specs[i];
        const wpk_tensor *t = wpk_find(f, s->name);
        REQUIRE(t != NULL);
        CHECK(t == wpk_tensor_at(f, i));   /* directory order = declaration order */
        CHECK_EQ_INT(t->kind, s->kind);
        if (s->kind == WPK_KIND_ENC) CHECK_EQ_INT(t->enc, s->enc);
        else CHECK_EQ_INT(t->dtype, s->dtype);
        CHECK_EQ_INT(t->ndim, s->ndim);
        for (int k = 0; k < s->ndim; k++) CHECK_EQ_INT(t->shape[k], s->shape[k]);
        CHECK_EQ_INT(t->stacked, s->stacked);
        CHECK_EQ_INT(t->offset % align, 0);
        CHECK_EQ_INT(t->n_sources, s->n_sources);
        for (int k = 0; k < s->n_sources && t->sources; k++)
            CHECK(!strcmp(t->sources[k], wpt_path("src.%s.%d", s->name, k)));
        uint8_t *want = malloc(t->size + 1);
        wpkz_fill(s->name, want, t->size);
        const uint8_t *got = wpk_data(f, t);
        if (t->size) CHECK(got && memcmp(got, want, t->size) == 0);
        else CHECK(got == NULL);
        uint8_t d[32];
        wp_sha256_buf(want, t->size, d, &e);
        CHECK(memcmp(d, t->sha256, 32) == 0);
        free(want);
        if (s->role != WPK_ROLE_DATA) {
            CHECK_EQ_INT(t->owner, (uint32_t)s->owner);
            const wpk_tensor *o = wpk_tensor_at(f, (size_t)s->owner);
            CHECK_EQ_INT(s->role == WPK_ROLE_SCALE ? o->scale : o->global, i);
        }
    }
    CHECK_EQ_INT(wpk_check_deep(f, 3, NULL, NULL, &e), 0);
    CHECK(wpk_find(f, "nope") == NULL);
    CHECK(wpk_find(f, "") == NULL);
    wpk_close(f);
}

TEST(format_wpk_roundtrip_every_encoding)
{
    wp_err e = {0};
    const char *p = wpt_path("%s/zoo.wpk", wpt_tmpdir());
    REQUIRE(wpkz_write(p, 0, 0, &e) == 0);
    check_zoo(p, 4096);
}

TEST(format_wpk_roundtrip_huge_alignment)
{
    wp_err e = {0};
    char p[512];
    snprintf(p, sizeof p, "%s/zoo2m.wpk", wpt_tmpdir());
    REQUIRE(wpkz_write(p, WPK_ALIGN_HUGE, 0, &e) == 0);
    check_zoo(p, WPK_ALIGN_HUGE);
    struct stat st;
    REQUIRE(stat(p, &st) == 0);
    /* 21 tensors, 20 of them followed by padding to the next 2 MiB. */
    CHECK((uint64_t)st.st_size > 20ull * WPK_ALIGN_HUGE);
}

/* Out-of-order chunks (hashed by read-back) and four concurrent writers give
 * exactly the bytes of the in-order write: reproducible, whatever the order. */
TEST(format_wpk_reproducible_any_write_order)
{
    wp_err e = {0};
    const char *a = wpt_path("%s/a.wpk", wpt_tmpdir());
    char b[512], c[512];
    snprintf(b, sizeof b, "%s/b.wpk", wpt_tmpdir());
    snprintf(c, sizeof c, "%s/c.wpk", wpt_tmpdir());
    REQUIRE(wpkz_write(a, 0, 0, &e) == 0);
    REQUIRE(wpkz_write(b, 0, 1, &e) == 0);
    REQUIRE(wpkz_write(c, 0, 2, &e) == 0);
    uint8_t *x, *y, *z;
    size_t nx, ny, nz;
    REQUIRE(wpt_read_file(a, &x, &nx) == 0 && wpt_read_file(b, &y, &ny) == 0 &&
            wpt_read_file(c, &z, &nz) == 0);
    CHECK(nx == ny && memcmp(x, y, nx) == 0);
    CHECK(nx == nz && memcmp(x, z, nx) == 0);
    free(x), free(y), free(z);
    check_zoo(b, 4096);
}

/* The byte layout of docs/format.md §2.1, checked by hand on a one-tensor
 * file: strings "{}\0{}\0{}\0a\0" end at 256 + 256 + 11 = 523, so data starts
 * at 4096 and the file is 4096 + 10 bytes. */
TEST(format_wpk_byte_layout)
{
    wp_err e = {0};
    const char *p = wpt_path("%s/one.wpk", wpt_tmpdir());
    wpk_writer *w;
    REQUIRE(wpk_writer_open(&w, p, NULL, &e) == 0);
    wpk_decl d = {.name = "a", .kind = WPK_KIND_RAW, .dtype = WP_U8, .ndim = 1, .shape = {10}};
    size_t id;
    REQUIRE(wpk_writer_add(w, &d, &id, &e) == 0);
    REQUIRE(wpk_writer_layout(w, &e) == 0);
    CHECK_EQ_INT(wpk_writer_offset(w, id), 4096);
    REQUIRE(wpk_writer_write(w, id, 0, "0123456789", 10, &e) == 0);
    REQUIRE(wpk_writer_commit(w, &e) == 0);
    uint8_t *b;
    size_t n;
    REQUIRE(wpt_read_file(p, &b, &n) == 0);
    REQUIRE(n == 4106);
    CHECK(memcmp(b, "\x89WPK\r\n\x1a\n", 8) == 0);
    CHECK(b[8] == 1 && b[9] == 0 && b[10] == 0 && b[11] == 0);           /* version 1.0 */
    CHECK(b[12] == 0x0D && b[13] == 0x0C && b[14] == 0x0B && b[15] == 0x0A);
    CHECK(b[24] == 12);                                                  /* align_log2 */
    CHECK_EQ_INT(le64(b + 32), 1);                                       /* tensor_count */
    CHECK_EQ_INT(le64(b + 40), 256);                                     /* dir_offset */
    CHECK_EQ_INT(le64(b + 72), 512);                                     /* str_offset */
    CHECK_EQ_INT(le64(b + 80), 11);                                      /* str_size */
    CHECK_EQ_INT(le64(b + 88), 4096);                                    /* data_offset */
    CHECK_EQ_INT(le64(b + 96), 4106);                                    /* file_size */
    CHECK(b[152] == 0 && b[156] == 1);                                   /* part 0 of 1 */
    CHECK(memcmp(b + 512, "{}\0{}\0{}\0a\0", 11) == 0);
    CHECK_EQ_INT(le64(b + 256 + 0), 9);                                  /* name_off */
    CHECK(b[256 + 12] == 0x01 && b[256 + 13] == 0x01);                   /* enc 0x101 = U8 */
    CHECK_EQ_INT(le64(b + 256 + 16), 10);                                /* shape[0] */
    CHECK_EQ_INT(le64(b + 256 + 80), 4096);                              /* offset */
    CHECK_EQ_INT(le64(b + 256 + 88), 10);                                /* size */
    uint8_t want[32];
    wp_sha256_buf("0123456789", 10, want, &e);
    CHECK(memcmp(b + 256 + 144, want, 32) == 0);
    for (size_t k = 523; k < 4096; k++)
        if (b[k]) {
            CHECKF(0, "padding byte %zu is %u", k, b[k]);
            break;
        }
    CHECK(memcmp(b + 4096, "0123456789", 10) == 0);
    /* header_sha256 = SHA-256 of [0, 4096) with its own 32 bytes zeroed. */
    uint8_t copy[4096], hd[32];
    memcpy(copy, b, 4096);
    memset(copy + 160, 0, 32);
    wp_sha256_buf(copy, 4096, hd, &e);
    CHECK(memcmp(b + 160, hd, 32) == 0);
    free(b);
}

TEST(format_wpk_expert_views_zero_copy)
{
    wp_err e = {0};
    const char *p = wpt_path("%s/zoo.wpk", wpt_tmpdir());
    REQUIRE(wpkz_write(p, 0, 0, &e) == 0);
    wpk_file *f;
    REQUIRE(wpk_open(&f, p, &e) == 0);
    const wpk_tensor *w1 = wpk_find(f, "layers.0.ffn.experts.w1.weight");
    const wpk_tensor *s1 = wpk_find(f, "layers.0.ffn.experts.w1.scale");
    REQUIRE(w1 && s1);
    CHECK_EQ_INT(w1->n_experts, 4);
    CHECK_EQ_INT(w1->expert_stride, 16 * 64 / 2);    /* mxfp4: two codes per byte */
    CHECK_EQ_INT(s1->expert_stride, 16 * 2);         /* one E8M0 per 1x32 group */
    CHECK_EQ_INT(w1->br, 1);
    CHECK_EQ_INT(w1->bc, 32);
    for (uint64_t x = 0; x < 4; x++) {
        const void *v;
        uint64_t n;
        REQUIRE(wpk_expert(f, w1, x, &v, &n, &e) == 0);
        CHECK(v == (const uint8_t *)wpk_data(f, w1) + x * 512);   /* a pointer, not a copy */
        CHECK_EQ_INT(n, 512);
        wp_qweight q;
        REQUIRE(wpk_qweight(f, w1, x, &q, &e) == 0);
        CHECK(q.enc == WP_ENC_MXFP4 && q.rows == 16 && q.cols == 64);
        CHECK(q.data == v);
        CHECK(q.scale == (const uint8_t *)wpk_data(f, s1) + x * 32);
    }
    /* Sources of a stacked tensor are expert-major; fused w13 has 2 per expert. */
    CHECK(!strcmp(w1->sources[2], "src.layers.0.ffn.experts.w1.weight.2"));
    const wpk_tensor *w13 = wpk_find(f, "layers.0.ffn.experts.w13.weight");
    REQUIRE(w13 && w13->n_sources == 6);
    for (uint64_t x = 0; x < 3; x++) {
        wp_qweight q;
        REQUIRE(wpk_qweight(f, w13, x, &q, &e) == 0);
        CHECK_NEAR(q.global, 0.5 * (double)(x + 1), 0);   /* per-expert NVFP4 global */
        CHECK(q.bc == 16);
    }
    wp_qweight q;
    CHECK_EQ_INT(wpk_qweight(f, w13, 3, &q, &e), WP_EUSAGE);
    CHECK_CONTAINS(e.msg, "expert 3 out of 3");
    const void *v;
    uint64_t n;
    wp_err_clear(&e);
    CHECK_EQ_INT(wpk_expert(f, wpk_find(f, "embed.weight"), 0, &v, &n, &e), WP_EUSAGE);
    CHECK_CONTAINS(e.msg, "embed.weight: not a stacked tensor");
    /* FP8 with f32 scales and 32x32 blocks: the layout travels with the weight. */
    const wpk_tensor *wo = wpk_find(f, "layers.0.attn.wo_b.weight");
    REQUIRE(wpk_qweight(f, wo, 0, &q, &e) == 0);
    CHECK(q.sfmt == WP_SCALE_F32 && q.br == 32 && q.bc == 32 && q.rows == 64);
    CHECK(q.scale == wpk_data(f, wpk_find(f, "layers.0.attn.wo_b.scale")));
    const wpk_tensor *nv = wpk_find(f, "layers.0.attn.nv.weight");
    REQUIRE(wpk_qweight(f, nv, 0, &q, &e) == 0);
    CHECK_NEAR(q.global, 0.5, 0);
    wp_err_clear(&e);
    CHECK_EQ_INT(wpk_qweight(f, wpk_find(f, "hc_head_fn"), 0, &q, &e), WP_EUSAGE);
    /* Streaming read of a sub-range; past the end is refused. */
    uint8_t buf[8], want[512];
    wpkz_fill(w1->name, want, 512);
    REQUIRE(wpk_read(f, w1, 100, buf, 8, &e) == 0);
    CHECK(memcmp(buf, want + 100, 8) == 0);
    wp_err_clear(&e);
    CHECK_EQ_INT(wpk_read(f, w1, w1->size - 4, buf, 8, &e), WP_EUSAGE);
    wpk_close(f);
}

TEST(format_wpk_deep_check_names_tensor_and_range)
{
    wp_err e = {0};
    const char *p = wpt_path("%s/zoo.wpk", wpt_tmpdir());
    REQUIRE(wpkz_write(p, 0, 0, &e) == 0);
    uint8_t *b;
    size_t n;
    REQUIRE(wpt_read_file(p, &b, &n) == 0);
    wpk_file *f;
    REQUIRE(wpk_open(&f, p, &e) == 0);
    const wpk_tensor *t = wpk_find(f, "layers.0.attn.wq_a.weight");
    uint64_t off = t->offset, end = t->offset + t->size;
    size_t idx = t->index;
    wpk_close(f);
    b[off + 777] ^= 0x40;   /* one data bit */
    REQUIRE(wpt_write_file(p, b, n) == 0);
    REQUIRE(wpk_open(&f, p, &e) == 0);   /* structure is still fine */
    CHECK_EQ_INT(wpk_check_tensor(f, idx, &e), WP_EVERIFY);
    CHECK_CONTAINS(e.msg, wpt_path("layers.0.attn.wq_a.weight: sha256 mismatch in bytes [%llu, %llu)",
                                   (unsigned long long)off, (unsigned long long)end));
    wp_err_clear(&e);
    CHECK_EQ_INT(wpk_check_tensor(f, 0, &e), 0);
    CHECK_EQ_INT(wpk_check_deep(f, 4, NULL, NULL, &e), WP_EVERIFY);
    CHECK_CONTAINS(e.msg, "layers.0.attn.wq_a.weight: sha256 mismatch");
    wpk_close(f);
    /* Padding between tensors: not covered by any digest, so checked to be zero. */
    b[off + 777] ^= 0x40;
    b[end + 5] = 1;
    REQUIRE(wpt_write_file(p, b, n) == 0);
    REQUIRE(wpk_open(&f, p, &e) == 0);
    wp_err_clear(&e);
    CHECK_EQ_INT(wpk_check_deep(f, 1, NULL, NULL, &e), WP_EVERIFY);
    CHECK_CONTAINS(e.msg, wpt_path("non-zero padding at byte %llu (after layers.0.attn.wq_a.weight)",
                                   (unsigned long long)(end + 5)));
    wpk_close(f);
    free(b);
}

TEST(format_wpk_writer_refuses_misuse)
{
    wp_err e = {0};
    const char *p = wpt_path("%s/bad.wpk", wpt_tmpdir());
    char p2[512];
    snprintf(p2, sizeof p2, "%s", p);
    wpk_writer *w;
    /* Not a power of two; model description not a JSON object. */
    CHECK_EQ_INT(wpk_writer_open(&w, p2, &(wpk_opts){.align = 5000}, &e), WP_EUSAGE);
    wp_err_clear(&e);
    CHECK_EQ_INT(wpk_writer_open(&w, p2, &(wpk_opts){.model_json = "[1]"}, &e), WP_EUSAGE);
    CHECK_CONTAINS(e.msg, "model_json is not a JSON object");

    /* An fp8 weight without its scale fails at layout with the reader's rule. */
    wp_err_clear(&e);
    REQUIRE(wpk_writer_open(&w, p2, NULL, &e) == 0);
    size_t id;
    wpk_decl d = {.name = "x.weight", .kind = WPK_KIND_ENC, .enc = WP_ENC_FP8, .ndim = 2,
                  .shape = {128, 128}, .br = 128, .bc = 128};
    REQUIRE(wpk_writer_add(w, &d, &id, &e) == 0);
    CHECK_EQ_INT(wpk_writer_layout(w, &e), WP_EUSAGE);
    CHECK_CONTAINS(e.msg, "x.weight: fp8 weight has no scale entry");
    wpk_writer_abort(w);

    /* Wrong scale shape. */
    wp_err_clear(&e);
    REQUIRE(wpk_writer_open(&w, p2, NULL, &e) == 0);
    REQUIRE(wpk_writer_add(w, &d, &id, &e) == 0);
    wpk_decl s = {.name = "x.scale", .kind = WPK_KIND_RAW, .dtype = WP_F8_E8M0, .ndim = 2,
                  .shape = {2, 1}, .role = WPK_ROLE_SCALE, .owner = id};
    size_t sid;
    REQUIRE(wpk_writer_add(w, &s, &sid, &e) == 0);
    CHECK_EQ_INT(wpk_writer_layout(w, &e), WP_EUSAGE);
    CHECK_CONTAINS(e.msg, "x.weight: scale x.scale is F8_E8M0 [2, 1], expected F8_E8M0 [1, 1]");
    wpk_writer_abort(w);

    /* Overlapping chunks, writes past the end, and an incomplete tensor at
     * commit are refused, and nothing appears at PATH. */
    wp_err_clear(&e);
    REQUIRE(wpk_writer_open(&w, p2, NULL, &e) == 0);
    wpk_decl r = {.name = "r", .kind = WPK_KIND_RAW, .dtype = WP_U8, .ndim = 1, .shape = {100}};
    REQUIRE(wpk_writer_add(w, &r, &id, &e) == 0);
    REQUIRE(wpk_writer_layout(w, &e) == 0);
    uint8_t buf[100] = {0};
    CHECK_EQ_INT(wpk_writer_write(w, id, 90, buf, 20, &e), WP_EUSAGE);
    CHECK_CONTAINS(e.msg, "r: write [90, +20) past its 100 bytes");
    REQUIRE(wpk_writer_write(w, id, 50, buf, 10, &e) == 0);
    wp_err_clear(&e);
    CHECK_EQ_INT(wpk_writer_write(w, id, 55, buf, 10, &e), WP_EUSAGE);
    CHECK_CONTAINS(e.msg, "r: bytes [55, 65) written twice");
    wp_err_clear(&e);
    CHECK_EQ_INT(wpk_writer_commit(w, &e), WP_EUSAGE);
    CHECK(access(p2, F_OK) != 0);
    /* Incomplete without any failed write. */
    wp_err_clear(&e);
    REQUIRE(wpk_writer_open(&w, p2, NULL, &e) == 0);
    REQUIRE(wpk_writer_add(w, &r, &id, &e) == 0);
    REQUIRE(wpk_writer_layout(w, &e) == 0);
    REQUIRE(wpk_writer_write(w, id, 0, buf, 60, &e) == 0);
    uint8_t dg[32];
    CHECK_EQ_INT(wpk_writer_digest(w, id, dg, &e), WP_EUSAGE);
    wp_err_clear(&e);
    CHECK_EQ_INT(wpk_writer_commit(w, &e), WP_EUSAGE);
    CHECK_CONTAINS(e.msg, "r: only 60 of 100 bytes written");
    CHECK(access(p2, F_OK) != 0);
    /* No temp files left behind in the directory either. */
    char out[4096];
    wpt_run(out, sizeof out, "ls -A %s", wpt_tmpdir());
    CHECK(strstr(out, ".tmp.") == NULL);

    /* Bad names are refused at declaration. */
    wp_err_clear(&e);
    REQUIRE(wpk_writer_open(&w, p2, NULL, &e) == 0);
    wpk_decl bad = r;
    bad.name = "has space";
    CHECK_EQ_INT(wpk_writer_add(w, &bad, &id, &e), WP_EUSAGE);
    CHECK_CONTAINS(e.msg, "outside 0x21..0x7E");
    wpk_writer_abort(w);
}

/* An empty container (no tensors) is valid: data_offset = file size. */
TEST(format_wpk_empty_container)
{
    wp_err e = {0};
    const char *p = wpt_path("%s/empty.wpk", wpt_tmpdir());
    wpk_writer *w;
    REQUIRE(wpk_writer_open(&w, p, &(wpk_opts){.part_index = 1, .part_count = 3}, &e) == 0);
    REQUIRE(wpk_writer_commit(w, &e) == 0);
    wpk_file *f;
    REQUIRE(wpk_open(&f, p, &e) == 0);
    CHECK_EQ_INT(wpk_count(f), 0);
    CHECK_EQ_INT(wpk_file_size(f), 4096);
    uint32_t pi, pc;
    wpk_part(f, &pi, &pc);
    CHECK(pi == 1 && pc == 3);
    CHECK_EQ_INT(wpk_check_deep(f, 2, NULL, NULL, &e), 0);
    wpk_close(f);
}

TEST(format_wpk_tensor_bytes_rules)
{
    uint64_t n, sh[3] = {4, 16, 64};
    CHECK(wpk_tensor_bytes(WPK_KIND_ENC, WP_ENC_MXFP4, WP_U8, 3, sh, 1, &n) == 0 && n == 4 * 16 * 32);
    CHECK(wpk_tensor_bytes(WPK_KIND_ENC, WP_ENC_FP8, WP_U8, 3, sh, 0, &n) == -1);   /* fp8 is 2-D */
    uint64_t odd[2] = {4, 48};
    CHECK(wpk_tensor_bytes(WPK_KIND_ENC, WP_ENC_MXFP4, WP_U8, 2, odd, 0, &n) == -1); /* 48 % 32 */
    CHECK(wpk_tensor_bytes(WPK_KIND_ENC, WP_ENC_NVFP4, WP_U8, 2, odd, 0, &n) == 0 && n == 96);
    uint64_t f4[1] = {3};
    CHECK(wpk_tensor_bytes(WPK_KIND_RAW, WP_ENC_BF16, WP_F4, 1, f4, 0, &n) == -1);  /* 1.5 bytes */
    uint64_t big[2] = {1ull << 40, 1ull << 30};
    CHECK(wpk_tensor_bytes(WPK_KIND_RAW, WP_ENC_BF16, WP_F32, 2, big, 0, &n) == -1); /* overflow */
    CHECK(wpk_tensor_bytes(WPK_KIND_RAW, WP_ENC_BF16, WP_I64, 0, big, 0, &n) == 0 && n == 8);
    uint64_t e0[2] = {0, 8};
    CHECK(wpk_tensor_bytes(WPK_KIND_ENC, WP_ENC_BF16, WP_U8, 2, e0, 1, &n) == -1);  /* 0 experts */
    CHECK(!strcmp(wpk_code_name(0x10F), "F8_E8M0") && !strcmp(wpk_code_name(5), "mxfp4"));
    CHECK(wpk_code_name(0) == NULL && wpk_code_name(7) == NULL && wpk_code_name(0x113) == NULL);
}

/* The file digests the writer computes while the bytes land (docs/signing.md
 * §2: shards of a fixed size, and the non-tensor bytes) equal SHA-256 of the
 * file's byte ranges read back afterwards, whatever the write order; written
 * in order, with the header region filling shard 0 exactly, nothing is read
 * back. */
static void shard_file(const char *path, int reverse, wpk_digests *d, wp_err *e)
{
    static const uint64_t sizes[] = {5000, 10, 9000, 0, 3000, 4096, 1};
    enum { NT = sizeof sizes / sizeof sizes[0] };
    wpk_writer *w;
    REQUIRE(wpk_writer_open(&w, path, &(wpk_opts){.shard_size = 4096}, e) == 0);
    size_t id[NT];
    for (int i = 0; i < NT; i++) {
        char name[16];
        snprintf(name, sizeof name, "t%d", i);
        wpk_decl dc = {.name = name, .kind = WPK_KIND_RAW, .dtype = WP_U8, .ndim = 1, .shape = {sizes[i]}};
        REQUIRE(wpk_writer_add(w, &dc, &id[i], e) == 0);
    }
    REQUIRE(wpk_writer_layout(w, e) == 0);
    uint8_t buf[9000];
    for (int k = 0; k < NT; k++) {
        int i = reverse ? NT - 1 - k : k;
        char name[16];
        snprintf(name, sizeof name, "t%d", i);
        wpkz_fill(name, buf, sizes[i]);
        /* chunks of 1000 bytes, last chunk first when reversed */
        uint64_t n = (sizes[i] + 999) / 1000;
        for (uint64_t c = 0; c < n; c++) {
            uint64_t j = reverse ? n - 1 - c : c, a = j * 1000, b = a + 1000 < sizes[i] ? a + 1000 : sizes[i];
            REQUIRE(wpk_writer_write(w, id[i], a, buf + a, (size_t)(b - a), e) == 0);
        }
    }
    REQUIRE(wpk_writer_commit_digests(w, d, e) == 0);
}

TEST(format_wpk_shard_digests_while_writing)
{
    wp_err e = {0};
    wpk_digests in, rev;
    const char *a = wpt_path("%s/in.wpk", wpt_tmpdir());
    char b[512];
    snprintf(b, sizeof b, "%s/rev.wpk", wpt_tmpdir());
    shard_file(a, 0, &in, &e);
    shard_file(b, 1, &rev, &e);
    REQUIRE(in.nshards && rev.nshards == in.nshards);
    uint8_t *x;
    size_t nx;
    REQUIRE(wpt_read_file(a, &x, &nx) == 0);
    CHECK_EQ_INT(in.size, nx);
    CHECK_EQ_INT(in.shard_size, 4096);
    CHECK_EQ_INT(in.nshards, (nx + 4095) / 4096);
    for (size_t k = 0; k < in.nshards; k++) {
        uint8_t d[32];
        size_t off = k * 4096, len = nx - off < 4096 ? nx - off : 4096;
        REQUIRE(wp_sha256_buf(x + off, len, d, &e) == 0);
        CHECKF(!memcmp(d, in.shards[k], 32), "shard %zu (in order)", k);
        CHECKF(!memcmp(d, rev.shards[k], 32), "shard %zu (reversed)", k);
    }
    /* non-tensor bytes: everything outside the tensors, in file order */
    wpk_file *f;
    REQUIRE(wpk_open(&f, a, &e) == 0);
    wp_sha256 h;
    REQUIRE(wp_sha256_init(&h, &e) == 0);
    uint64_t at = 0;
    for (size_t i = 0; i < wpk_count(f); i++) {
        const wpk_tensor *t = wpk_tensor_at(f, i);
        wp_sha256_update(&h, x + at, (size_t)(t->offset - at));
        at = t->offset + t->size;
    }
    wp_sha256_update(&h, x + at, nx - at);
    uint8_t nd[32];
    wp_sha256_final(&h, nd);
    CHECK(!memcmp(nd, in.nontensor, 32) && !memcmp(nd, rev.nontensor, 32));
    CHECK_EQ_INT(wpk_data_offset(f), 4096);   /* the header region is shard 0, exactly */
    wpk_close(f);
    CHECK_EQ_INT(in.read_back, 0);            /* in order: hashed from the writers' buffers */
    CHECK(rev.read_back > 0);                 /* reversed: the waiting chunks were read back */
    free(x);
    wpk_digests_free(&in);
    wpk_digests_free(&rev);
}
