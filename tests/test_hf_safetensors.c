/* test_safetensors.c — the strict reader on the golden fixture, dtypes, and
 * the writer round trip.  The malformed-input corpus is in test_corpus.c. */
#include "hf/safetensors.h"
#include "tests/harness.h"

#include <inttypes.h>

#define HF WPT_TINY "/hf"

TEST(hf_tiny_checkpoint_opens)
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
    /* the index file itself opens the same checkpoint */
    REQUIRE(wp_ckpt_open(&c, HF "/model.safetensors.index.json", &e) == 0);
    CHECK_EQ_INT(wp_ckpt_count(c), 427);
    CHECK_EQ_INT(wp_ckpt_file_count(c), 2);
    CHECK(strcmp(wp_ckpt_dir(c), HF) == 0);
    wp_ckpt_close(c);
    /* a shard alone is a one-file checkpoint */
    REQUIRE(wp_ckpt_open(&c, HF "/model-00002-of-00002.safetensors", &e) == 0);
    CHECK_EQ_INT(wp_ckpt_count(c), 213);
    wp_ckpt_close(c);
}

TEST(hf_tiny_tensor_values)
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

TEST(hf_golden_single_file)
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

TEST(hf_dtype_table)
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

/* ---- writer ------------------------------------------------------------------ */

/* The exact bytes of a tiny file, computed by hand from the format (spec
 * §2.1): header sorted by name, plain integers, space-padded to 8. */
TEST(hf_writer_exact_bytes)
{
    wp_err e = {0};
    const char *p = wpt_path("%s/a.safetensors", wpt_tmpdir());
    uint8_t b2[2] = {0xAB, 0xCD};
    float f1 = 1.0f;
    wp_st_entry t[2] = {
        {.name = "z", .dtype = WP_BF16, .ndim = 1, .shape = {1}, .data = b2},
        {.name = "a", .dtype = WP_F32, .ndim = 0, .data = &f1},
    };
    const char *meta[2] = {"format", "pt"};
    REQUIRE(wp_st_write_file(p, t, 2, meta, 1, &e) == 0);
    const char *json = "{\"__metadata__\":{\"format\":\"pt\"},"
                       "\"a\":{\"dtype\":\"F32\",\"shape\":[],\"data_offsets\":[2,6]},"
                       "\"z\":{\"dtype\":\"BF16\",\"shape\":[1],\"data_offsets\":[0,2]}}";
    size_t jl = strlen(json), n = (jl + 7) / 8 * 8;
    uint8_t *got;
    size_t gn;
    REQUIRE(wpt_read_file(p, &got, &gn) == 0);
    REQUIRE(gn == 8 + n + 6);
    CHECK_EQ_INT(got[0] | got[1] << 8, n);
    CHECK(memcmp(got + 1 + 1, "\0\0\0\0\0\0", 6) == 0);
    CHECK(memcmp(got + 8, json, jl) == 0);
    for (size_t i = jl; i < n; i++) CHECK(got[8 + i] == ' ');
    CHECK(got[8 + n] == 0xAB && got[8 + n + 1] == 0xCD);   /* declaration order */
    CHECK(memcmp(got + 8 + n + 2, &f1, 4) == 0);
    free(got);
}

TEST(hf_writer_roundtrip_every_dtype)
{
    wp_err e = {0};
    char p[4096];   /* wpt_path's buffers rotate: keep our own copy */
    snprintf(p, sizeof p, "%s/all.safetensors", wpt_tmpdir());
    wp_st_writer *w;
    REQUIRE(wp_st_writer_open(&w, p, &e) == 0);
    REQUIRE(wp_st_writer_meta(w, "k", "v\xc3\xa9", &e) == 0);
    uint64_t total = 0;
    for (int d = 0; d < WP_DTYPE_COUNT; d++) {
        /* 4 x (d+1) elements: a whole number of bytes even for F4/F6 */
        uint64_t sh[2] = {4, (uint64_t)d + 1}, nb;
        REQUIRE(wp_dtype_nbytes((wp_dtype)d, sh, 2, &nb) == 0);
        total += nb;
        REQUIRE(wp_st_writer_add(w, wpt_path("t.%s", wp_dtype_name((wp_dtype)d)), (wp_dtype)d, 2, sh,
                                 &e) == 0);
    }
    CHECK_EQ_INT(wp_st_writer_data_size(w), total);
    uint8_t *data = malloc(total);
    for (uint64_t i = 0; i < total; i++) data[i] = (uint8_t)(i * 131 + 7);
    /* stream in odd-sized pieces that straddle tensor boundaries */
    for (uint64_t i = 0; i < total; i += 7) {
        size_t c = total - i < 7 ? (size_t)(total - i) : 7;
        REQUIRE(wp_st_writer_write(w, data + i, c, &e) == 0);
    }
    REQUIRE(wp_st_writer_commit(w, &e) == 0);

    wp_st_file *f;
    CHECKF(wp_st_open(&f, p, &e) == 0, "%s", e.msg);
    REQUIRE(!e.code);
    CHECK_EQ_INT(wp_st_count(f), WP_DTYPE_COUNT);
    CHECK_EQ_INT((wp_st_header_len(f) + 8) % 8, 0);
    const char *k, *v;
    CHECK(wp_st_meta(f, 0, &k, &v) == 0 && !strcmp(k, "k") && !strcmp(v, "v\xc3\xa9"));
    uint64_t at = 0;
    for (int d = 0; d < WP_DTYPE_COUNT; d++) {
        const wp_tensor_info *t = wp_st_find(f, wpt_path("t.%s", wp_dtype_name((wp_dtype)d)));
        REQUIRE(t);
        CHECK_EQ_INT(t->dtype, d);
        CHECK_EQ_INT(t->shape[1], d + 1);
        CHECK_EQ_INT(t->offset, 8 + wp_st_header_len(f) + at);
        uint8_t buf[1024];
        REQUIRE(t->nbytes <= sizeof buf);
        REQUIRE(wp_st_read(f, t, 0, buf, (size_t)t->nbytes, &e) == 0);
        CHECK(memcmp(buf, data + at, (size_t)t->nbytes) == 0);
        at += t->nbytes;
    }
    CHECK_EQ_INT(wp_st_file_size(f), 8 + wp_st_header_len(f) + total);
    wp_st_close(f);
    free(data);
}

TEST(hf_writer_deterministic)
{
    wp_err e = {0};
    uint8_t x[6] = {1, 2, 3, 4, 5, 6};
    wp_st_entry t[3] = {
        {.name = "b", .dtype = WP_U8, .ndim = 1, .shape = {2}, .data = x},
        {.name = "a", .dtype = WP_I16, .ndim = 1, .shape = {1}, .data = x + 2},
        {.name = "c", .dtype = WP_F4, .ndim = 2, .shape = {2, 2}, .data = x + 4},
    };
    const char *p1 = wpt_path("%s/1.safetensors", wpt_tmpdir());
    const char *p2 = wpt_path("%s/2.safetensors", wpt_tmpdir());
    REQUIRE(wp_st_write_file(p1, t, 3, NULL, 0, &e) == 0);
    REQUIRE(wp_st_write_file(p2, t, 3, NULL, 0, &e) == 0);
    uint8_t *a, *b;
    size_t an, bn;
    REQUIRE(wpt_read_file(p1, &a, &an) == 0 && wpt_read_file(p2, &b, &bn) == 0);
    CHECK(an == bn && memcmp(a, b, an) == 0);
    CHECK(memcmp(a + an - 6, x, 6) == 0);
    free(a);
    free(b);
}

TEST(hf_writer_refuses)
{
    wp_err e = {0};
    const char *p = wpt_path("%s/bad.safetensors", wpt_tmpdir());
    uint64_t sh[1] = {3};
    wp_st_writer *w;
    /* three nibbles of F4 do not fill bytes */
    REQUIRE(wp_st_writer_open(&w, p, &e) == 0);
    CHECK_EQ_INT(wp_st_writer_add(w, "x", WP_F4, 1, sh, &e), WP_EUSAGE);
    CHECK_CONTAINS(e.msg, "whole number");
    wp_st_writer_abort(w);
    wp_err_clear(&e);
    /* duplicate names, metadata name, overlong write, short write */
    REQUIRE(wp_st_writer_open(&w, p, &e) == 0);
    CHECK_EQ_INT(wp_st_writer_add(w, "__metadata__", WP_U8, 1, sh, &e), WP_EUSAGE);
    wp_err_clear(&e);
    REQUIRE(wp_st_writer_add(w, "x", WP_U8, 1, sh, &e) == 0);
    REQUIRE(wp_st_writer_add(w, "x", WP_U8, 1, sh, &e) == 0);
    CHECK_EQ_INT(wp_st_writer_write(w, "abc", 3, &e), WP_EUSAGE);
    CHECK_CONTAINS(e.msg, "x: tensor declared twice");
    wp_st_writer_abort(w);
    wp_err_clear(&e);
    REQUIRE(wp_st_writer_open(&w, p, &e) == 0);
    REQUIRE(wp_st_writer_add(w, "x", WP_U8, 1, sh, &e) == 0);
    CHECK_EQ_INT(wp_st_writer_write(w, "abcd", 4, &e), WP_EUSAGE);
    wp_err_clear(&e);
    REQUIRE(wp_st_writer_write(w, "ab", 2, &e) == 0);
    CHECK_EQ_INT(wp_st_writer_commit(w, &e), WP_EUSAGE);
    CHECK_CONTAINS(e.msg, "only 2 of the declared 3");
    /* no partial output: the target was never created, no temp file left */
    char out[256];
    CHECK_EQ_INT(wpt_run(out, sizeof out, "ls -A %s | wc -l", wpt_tmpdir()), 0);
    CHECK(atoi(out) == 0);
}

TEST(hf_writer_index_roundtrip)
{
    wp_err e = {0};
    const char *d = wpt_tmpdir();
    uint8_t x[8] = {0};
    wp_st_entry s1[2] = {{.name = "b", .dtype = WP_U8, .ndim = 1, .shape = {3}, .data = x},
                         {.name = "a", .dtype = WP_F32, .ndim = 1, .shape = {1}, .data = x}};
    wp_st_entry s2[1] = {{.name = "c", .dtype = WP_I64, .ndim = 0, .data = x}};
    REQUIRE(wp_st_write_file(wpt_path("%s/s-1.safetensors", d), s1, 2, NULL, 0, &e) == 0);
    REQUIRE(wp_st_write_file(wpt_path("%s/s-2.safetensors", d), s2, 1, NULL, 0, &e) == 0);
    const char *names[3] = {"c", "b", "a"};
    const char *shards[3] = {"s-2.safetensors", "s-1.safetensors", "s-1.safetensors"};
    REQUIRE(wp_st_write_index(wpt_path("%s/model.safetensors.index.json", d), names, shards, 3,
                              15, &e) == 0);
    uint8_t *j;
    size_t jn;
    REQUIRE(wpt_read_file(wpt_path("%s/model.safetensors.index.json", d), &j, &jn) == 0);
    const char *want = "{\n  \"metadata\": {\n    \"total_size\": 15\n  },\n"
                       "  \"weight_map\": {\n    \"a\": \"s-1.safetensors\",\n"
                       "    \"b\": \"s-1.safetensors\",\n    \"c\": \"s-2.safetensors\"\n  }\n}\n";
    CHECK(jn == strlen(want) && memcmp(j, want, jn) == 0);
    free(j);
    wp_ckpt *c;
    REQUIRE(wp_ckpt_open(&c, d, &e) == 0);
    CHECK_EQ_INT(wp_ckpt_count(c), 3);
    CHECK_EQ_INT(wp_ckpt_file_count(c), 2);
    const wp_tensor_info *t = wp_ckpt_find(c, "c");
    REQUIRE(t);
    CHECK_EQ_INT(t->file, 1);
    CHECK_EQ_INT(t->nbytes, 8);
    wp_ckpt_close(c);
}
