/* test_corpus.c — every malformed case of tests/corpus.c is refused with its
 * own message (and never crashes: the suite also runs under ASan/UBSan), and
 * well-formed edge cases of the format are accepted. */
#include "convert/safetensors.h"
#include "tests/corpus.h"
#include "tests/harness.h"

#include <sys/stat.h>

TEST(st_corpus_each_case_fails_with_its_message)
{
    char err[512];
    const char *dir = wpt_tmpdir();
    REQUIRE(wpt_corpus_generate(dir, err, sizeof err) == 0);
    CHECK(wpt_corpus_count() >= 30);
    for (size_t i = 0; i < wpt_corpus_count(); i++) {
        const wpt_corpus_case *c = wpt_corpus_case_at(i);
        const char *p = wpt_path("%s/%s", dir, c->path);
        struct stat st;
        CHECKF(stat(p, &st) == 0, "%s: not generated", c->path);
        /* every case through the checkpoint entry point (what inspect uses) */
        wp_err e = {0};
        wp_ckpt *ck = NULL;
        int rc = wp_ckpt_open(&ck, p, &e);
        CHECKF(rc < 0 && ck == NULL, "%s: opened, expected error \"%s\"", c->path, c->expect);
        CHECKF(strstr(e.msg, c->expect) != NULL, "%s: got \"%s\", expected \"%s\"", c->path, e.msg,
               c->expect);
        CHECKF(strchr(e.msg, '\n') == NULL, "%s: multi-line message", c->path);
        wp_ckpt_close(ck);
        /* single files also through wp_st_open, with the same message, and
         * the message names the file */
        if (S_ISREG(st.st_mode)) {
            wp_err e2 = {0};
            wp_st_file *f = NULL;
            CHECKF(wp_st_open(&f, p, &e2) < 0 && !f, "%s: wp_st_open accepted it", c->path);
            CHECKF(strcmp(e.msg, e2.msg) == 0, "%s: \"%s\" vs \"%s\"", c->path, e.msg, e2.msg);
            CHECKF(strncmp(e2.msg, p, strlen(p)) == 0, "%s: message does not start with the path: %s",
                   c->path, e2.msg);
            CHECK_EQ_INT(e2.code, WP_EINVAL);
        }
    }
}

/* Each dtype, with a shape whose byte size is computed here by hand. */
TEST(st_corpus_every_dtype_opens)
{
    static const struct { const char *dt; const char *shape; unsigned bytes; } v[] = {
        {"BOOL", "[3]", 3},     {"U8", "[2,3]", 6},    {"I8", "[5]", 5},
        {"I16", "[3]", 6},      {"U16", "[1,1]", 2},   {"I32", "[2]", 8},
        {"U32", "[3]", 12},     {"I64", "[1]", 8},     {"U64", "[2]", 16},
        {"F16", "[3]", 6},      {"BF16", "[2,2]", 8},  {"F32", "[]", 4},
        {"F64", "[2]", 16},     {"F8_E4M3", "[7]", 7}, {"F8_E5M2", "[1]", 1},
        {"F8_E8M0", "[4,2]", 8}, {"F4", "[3,2]", 3},   {"F6_E2M3", "[8]", 6},
        {"F6_E3M2", "[2,2]", 3},
    };
    CHECK_EQ_INT(sizeof v / sizeof v[0], WP_DTYPE_COUNT);
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
        char json[256];
        int jl = snprintf(json, sizeof json,
                          "{\"x\":{\"dtype\":\"%s\",\"shape\":%s,\"data_offsets\":[0,%u]}}  ",
                          v[i].dt, v[i].shape, v[i].bytes);
        uint8_t buf[300] = {0};
        buf[0] = (uint8_t)jl;
        memcpy(buf + 8, json, (size_t)jl);
        for (unsigned k = 0; k < v[i].bytes; k++) buf[8 + jl + k] = (uint8_t)(0xA0 + k);
        const char *p = wpt_path("%s/%s.safetensors", wpt_tmpdir(), v[i].dt);
        REQUIRE(wpt_write_file(p, buf, 8 + (size_t)jl + v[i].bytes) == 0);
        wp_err e = {0};
        wp_st_file *f = NULL;
        CHECKF(wp_st_open(&f, p, &e) == 0, "%s: %s", v[i].dt, e.msg);
        if (!f) continue;
        const wp_tensor_info *t = wp_st_find(f, "x");
        REQUIRE(t);
        CHECK(strcmp(wp_dtype_name(t->dtype), v[i].dt) == 0);
        CHECK_EQ_INT(t->nbytes, v[i].bytes);
        CHECK_EQ_INT(t->offset, 8 + jl);
        const uint8_t *d = wp_st_data(f, t, &e);
        CHECK(d && d[0] == 0xA0 && d[v[i].bytes - 1] == 0xA0 + v[i].bytes - 1);
        wp_st_close(f);
    }
}

static int open_raw(const char *json, size_t data, wp_err *e, wp_st_file **f)
{
    size_t jl = strlen(json);
    uint8_t *buf = calloc(1, 8 + jl + data);
    for (int i = 0; i < 8; i++) buf[i] = (uint8_t)((uint64_t)jl >> (8 * i));
    memcpy(buf + 8, json, jl);
    const char *p = wpt_path("%s/edge.safetensors", wpt_tmpdir());
    int rc = wpt_write_file(p, buf, 8 + jl + data);
    free(buf);
    if (rc) return -100;
    return wp_st_open(f, p, e);
}

/* Well-formed edge cases the strict reader must still accept. */
TEST(st_corpus_valid_edges)
{
    wp_err e = {0};
    wp_st_file *f = NULL;
    /* no tensors at all, minimal header */
    CHECKF(open_raw("{}", 0, &e, &f) == 0, "%s", e.msg);
    if (f) CHECK_EQ_INT(wp_st_count(f), 0);
    wp_st_close(f);
    f = NULL;
    /* names differ only by case: two tensors, found case-sensitively */
    CHECKF(open_raw("{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]},"
                    "\"A\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[1,3]}}   ",
                    3, &e, &f) == 0, "%s", e.msg);
    if (f) {
        CHECK_EQ_INT(wp_st_count(f), 2);
        CHECK(wp_st_find(f, "A") && wp_st_find(f, "A")->nbytes == 2);
        CHECK(wp_st_find(f, "a") && wp_st_find(f, "a")->nbytes == 1);
    }
    wp_st_close(f);
    f = NULL;
    /* zero-size tensors at the start, between, and at the end; header order
     * is not offset order; exactly 2^53 is still allowed in shape */
    CHECKF(open_raw("{\"late\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]},"
                    "\"z0\":{\"dtype\":\"F32\",\"shape\":[0,9007199254740992],\"data_offsets\":[0,0]},"
                    "\"first\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                    "\"z1\":{\"dtype\":\"BF16\",\"shape\":[0],\"data_offsets\":[4,4]},"
                    "\"z2\":{\"dtype\":\"U8\",\"shape\":[3,0],\"data_offsets\":[8,8]},"
                    "\"__metadata__\":{\"format\":\"pt\",\"note\":\"\\u00e9\\n\"}}\n  ",
                    8, &e, &f) == 0, "%s", e.msg);
    if (f) {
        CHECK_EQ_INT(wp_st_count(f), 5);
        CHECK(strcmp(wp_st_tensor(f, 0)->name, "late") == 0);   /* header order kept */
        CHECK_EQ_INT(wp_st_find(f, "late")->offset, 8 + wp_st_header_len(f) + 4);
        CHECK_EQ_INT(wp_st_find(f, "z0")->shape[1], 9007199254740992ull);
        const char *k, *v;
        CHECK(wp_st_meta(f, 1, &k, &v) == 0 && !strcmp(k, "note") && !strcmp(v, "\xc3\xa9\n"));
    }
    wp_st_close(f);
}
