/* test_safetensors.c — the strict reader on the golden fixture, dtypes, and
 * the writer round trip.  The malformed-input corpus is in test_corpus.c. */
#include "convert/safetensors.h"
#include "tests/harness.h"

#include <inttypes.h>

#define HF WPT_TINY "/hf"

TEST(st_tiny_checkpoint_opens)
{
    wp_err e = {0};
    wp_ckpt *c = NULL;
    REQUIRE(wp_ckpt_open(&c, HF, &e) == 0);
    CHECK_EQ_INT(wp_ckpt_count(c), 427);
    CHECK_EQ_INT(wp_ckpt_file_count(c), 2);
    CHECK_EQ_INT(wp_st_count(wp_ckpt_file(c, 0)), 214);
    CHECK_EQ_INT(wp_st_count(wp_ckpt_file(c, 1)), 213);
    CHECK(strcmp(wp_ckpt_dir(c), HF) == 0);
    /* header lengths and sizes from the fixture files themselves */
    CHECK_EQ_INT(wp_st_header_len(wp_ckpt_file(c, 0)), 21264);
    CHECK_EQ_INT(wp_st_file_size(wp_ckpt_file(c, 0)), 3824748);
    CHECK_EQ_INT(wp_st_header_len(wp_ckpt_file(c, 1)), 20832);
    /* sorted by name, and find agrees with the table */
    uint64_t total = 0;
    for (size_t i = 0; i < wp_ckpt_count(c); i++) {
        const wp_tensor_info *t = wp_ckpt_tensor(c, i);
        if (i) CHECK(strcmp(wp_ckpt_tensor(c, i - 1)->name, t->name) < 0);
        CHECK(wp_ckpt_find(c, t->name) == t);
        total += t->nbytes;
    }
    /* model.safetensors.index.json metadata.total_size */
    CHECK_EQ_INT(total, 7078066);
    CHECK(wp_ckpt_find(c, "embed.weight") != NULL);
    CHECK(wp_ckpt_find(c, "Embed.weight") == NULL);   /* case-sensitive */
    CHECK(wp_ckpt_find(c, "nope") == NULL);
    const char *k, *v;
    REQUIRE(wp_st_meta_count(wp_ckpt_file(c, 0)) == 1);
    CHECK(wp_st_meta(wp_ckpt_file(c, 0), 0, &k, &v) == 0 && !strcmp(k, "format") && !strcmp(v, "pt"));
    wp_ckpt_close(c);
}

TEST(st_tiny_tensor_values)
{
    wp_err e = {0};
    wp_ckpt *c = NULL;
    REQUIRE(wp_ckpt_open(&c, HF, &e) == 0);
    const wp_tensor_info *t = wp_ckpt_find(c, "embed.weight");
    REQUIRE(t);
    CHECK_EQ_INT(t->dtype, WP_BF16);
    CHECK_EQ_INT(t->ndim, 2);
    CHECK_EQ_INT(t->shape[0], 512);
    CHECK_EQ_INT(t->shape[1], 256);
    CHECK_EQ_INT(t->nbytes, 512 * 256 * 2);
    CHECK_EQ_INT(t->file, 0);
    /* pread and mmap views agree, and both agree with the raw file bytes */
    uint8_t buf[64];
    REQUIRE(wp_ckpt_read(c, t, 100, buf, sizeof buf, &e) == 0);
    const uint8_t *d = wp_ckpt_data(c, t, &e);
    REQUIRE(d);
    CHECK(memcmp(d + 100, buf, sizeof buf) == 0);
    uint8_t *raw;
    size_t rawn;
    REQUIRE(wpt_read_file(HF "/model-00001-of-00002.safetensors", &raw, &rawn) == 0);
    CHECK(memcmp(raw + t->offset + 100, buf, sizeof buf) == 0);
    free(raw);
    /* reading past the tensor is refused, not clamped */
    CHECK_EQ_INT(wp_ckpt_read(c, t, t->nbytes - 10, buf, 11, &e), WP_EUSAGE);
    CHECK_CONTAINS(e.msg, "embed.weight");

    const wp_tensor_info *tid = wp_ckpt_find(c, "layers.0.ffn.gate.tid2eid");
    REQUIRE(tid);
    CHECK_EQ_INT(tid->dtype, WP_I64);
    CHECK_EQ_INT(tid->ndim, 2);
    CHECK_EQ_INT(tid->shape[0], 512);   /* vocab */
    CHECK_EQ_INT(tid->shape[1], 2);     /* top-2 */
    const wp_tensor_info *sc = wp_ckpt_find(c, "layers.1.attn.wq_a.scale");
    REQUIRE(sc);
    CHECK_EQ_INT(sc->dtype, WP_F8_E8M0);
    const wp_tensor_info *x = wp_ckpt_find(c, "layers.1.ffn.experts.0.w1.weight");
    REQUIRE(x);
    CHECK_EQ_INT(x->dtype, WP_I8);
    CHECK_EQ_INT(x->shape[0], 128);
    CHECK_EQ_INT(x->shape[1], 128);     /* in/2 = 256/2 */
    /* a second shard tensor routes to file 1 */
    const wp_tensor_info *m = wp_ckpt_find(c, "mtp.0.norm.weight");
    REQUIRE(m);
    CHECK_EQ_INT(m->file, 1);
    wp_ckpt_close(c);
}

TEST(st_golden_single_file)
{
    wp_err e = {0};
    wp_st_file *f = NULL;
    REQUIRE(wp_st_open(&f, WPT_TINY "/golden-fp32.safetensors", &e) == 0);
    CHECK_EQ_INT(wp_st_count(f), 10);
    const wp_tensor_info *t = wp_st_find(f, "tokens");
    REQUIRE(t);
    CHECK_EQ_INT(t->dtype, WP_I32);
    CHECK_EQ_INT(t->shape[0], 2);
    CHECK_EQ_INT(t->shape[1], 253);
    const wp_tensor_info *l = wp_st_find(f, "layer_h");
    REQUIRE(l);
    CHECK_EQ_INT(l->ndim, 5);
    CHECK_EQ_INT(l->nbytes, 4ull * 2 * 253 * 4 * 256 * 4);
    /* indexer_topk: -1 = no entry, else 253 + compressed index (fixture README) */
    const wp_tensor_info *k = wp_st_find(f, "indexer_topk.1");
    REQUIRE(k);
    const int32_t *v = wp_st_data(f, k, &e);
    REQUIRE(v);
    int ok = 1;
    for (uint64_t i = 0; i < k->nbytes / 4; i++) ok &= v[i] == -1 || (v[i] >= 253 && v[i] < 253 + 63);
    CHECK(ok);
    wp_st_close(f);
    /* the same file as a checkpoint: its directory is the fixture directory */
    wp_ckpt *c = NULL;
    REQUIRE(wp_ckpt_open(&c, WPT_TINY "/golden-fp32.safetensors", &e) == 0);
    CHECK(strcmp(wp_ckpt_dir(c), WPT_TINY) == 0);
    CHECK_EQ_INT(wp_ckpt_count(c), 10);
    wp_ckpt_close(c);
}

TEST(st_dtype_table)
{
    wp_dtype d;
    uint64_t n, sh[3] = {3, 5, 2};
    CHECK(wp_dtype_parse("BF16", &d) == 0 && d == WP_BF16);
    CHECK(wp_dtype_parse("bf16", &d) == -1);   /* case-sensitive */
    CHECK(wp_dtype_parse("F8_E4M3FN", &d) == -1);
    CHECK_EQ_INT(wp_dtype_bits(WP_F4), 4);
    CHECK_EQ_INT(wp_dtype_bits(WP_F6_E3M2), 6);
    CHECK_EQ_INT(wp_dtype_bits(WP_BOOL), 8);
    CHECK(wp_dtype_nbytes(WP_F32, sh, 3, &n) == 0 && n == 120);
    CHECK(wp_dtype_nbytes(WP_F4, sh, 3, &n) == 0 && n == 15);        /* 30 nibbles */
    CHECK(wp_dtype_nbytes(WP_F4, sh, 2, &n) == -1);                  /* 15 nibbles */
    CHECK(wp_dtype_nbytes(WP_F6_E2M3, sh, 3, &n) == -1);             /* 30*6 = 180 bits */
    uint64_t s4[1] = {4};
    CHECK(wp_dtype_nbytes(WP_F6_E2M3, s4, 1, &n) == 0 && n == 3);
    CHECK(wp_dtype_nbytes(WP_I8, sh, 0, &n) == 0 && n == 1);         /* scalar */
    uint64_t big[2] = {1ull << 32, 1ull << 31};
    CHECK(wp_dtype_nbytes(WP_U8, big, 2, &n) == 0 && n == 1ull << 63);
    CHECK(wp_dtype_nbytes(WP_I16, big, 2, &n) == -1);               /* 2^64 bytes */
    for (int i = 0; i < WP_DTYPE_COUNT; i++)
        CHECK(wp_dtype_parse(wp_dtype_name((wp_dtype)i), &d) == 0 && d == (wp_dtype)i);
}
