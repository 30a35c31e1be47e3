/* test_corpus.c — every malformed case of tests/corpus.c is refused with its
 * own message (and never crashes: the suite also runs under ASan/UBSan), and
 * well-formed edge cases of the format are accepted. */
#include "hf/safetensors.h"
#include "tests/corpus.h"
#include "tests/harness.h"

#include <sys/stat.h>

TEST(hf_corpus_each_case_fails_with_its_message)
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
TEST(hf_corpus_every_dtype_opens)
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
TEST(hf_corpus_valid_edges)
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

/* ---- hf_fuzz_smoke: deterministic mutations of a valid file ---------------- */

static uint64_t rng_next(uint64_t *s)   /* xorshift64*: fixed seed, same run every time */
{
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * 0x2545F4914F6CDD1Dull;
}

/* Tokens that sit on the rules' edges: spliced into the header they make
 * near-miss files far more often than random bytes do. */
static const char *const g_tokens[] = {
    "-1", "0", "1.5", "1e3", "9007199254740992", "9007199254740993", "18446744073709551616",
    "\"", "\\", "\\u0000", "{", "}", "[", "]", ",", ":", "null", "\"F4\"", "\"F6_E2M3\"",
    "\"BOOL\"", "\"__metadata__\"", "\xff", "\xc0\xaf", "\xed\xa0\x80", " ", "[]", "[0,0]",
};

/* The oracle: a file the reader accepts really is what the reader says. */
static int check_accepted(wp_st_file *f, size_t size)
{
    wp_err e = {0};
    uint64_t sum = 0;
    for (size_t i = 0; i < wp_st_count(f); i++) {
        const wp_tensor_info *t = wp_st_tensor(f, i);
        if (t->offset < 8 + wp_st_header_len(f) || t->offset + t->nbytes > size) return 0;
        if (wp_st_find(f, t->name) != t) return 0;
        sum += t->nbytes;
        uint8_t b[8];
        size_t n = t->nbytes < sizeof b ? (size_t)t->nbytes : sizeof b;
        if (wp_st_read(f, t, t->nbytes - n, b, n, &e) != 0) return 0;
        const uint8_t *d = wp_st_data(f, t, &e);
        if (!d || (n && memcmp(d + t->nbytes - n, b, n) != 0)) return 0;
    }
    return sum == size - 8 - wp_st_header_len(f);
}

TEST(hf_fuzz_smoke)
{
    const char *json =
        "{\"__metadata__\":{\"format\":\"pt\"},"
        "\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
        "\"b\":{\"dtype\":\"F4\",\"shape\":[2,2],\"data_offsets\":[8,10]},"
        "\"c\":{\"dtype\":\"U8\",\"shape\":[0],\"data_offsets\":[10,10]},"
        "\"d\":{\"dtype\":\"BF16\",\"shape\":[3],\"data_offsets\":[10,16]}}  ";
    size_t jl = strlen(json), base_n = 8 + jl + 16;
    uint8_t base[512], buf[1024];
    REQUIRE(base_n <= sizeof base);
    memset(base, 0, sizeof base);
    base[0] = (uint8_t)jl;
    memcpy(base + 8, json, jl);
    for (int i = 0; i < 16; i++) base[8 + jl + (size_t)i] = (uint8_t)(i * 17);
    const char *p = wpt_path("%s/m.safetensors", wpt_tmpdir());
    uint64_t s = 0x9E3779B97F4A7C15ull;
    int accepted = 0, refused = 0, bad = 0;
    for (int it = 0; it < 4000; it++) {
        size_t n = base_n;
        memcpy(buf, base, n);
        int muts = 1 + (int)(rng_next(&s) % 3);
        for (int m = 0; m < muts; m++) {
            size_t at = n ? (size_t)(rng_next(&s) % n) : 0;
            switch (rng_next(&s) % 6) {
            case 0: if (at < n) buf[at] ^= (uint8_t)(1u << (rng_next(&s) % 8)); break;     /* bit flip */
            case 1: if (at < n) buf[at] = (uint8_t)rng_next(&s); break;                   /* byte */
            case 2: if (at < n) { memmove(buf + at, buf + at + 1, n - at - 1); n--; } break;
            case 3: n = at; break;                                             /* truncate */
            case 4: {                                                          /* splice token */
                const char *t = g_tokens[rng_next(&s) % (sizeof g_tokens / sizeof g_tokens[0])];
                size_t tl = strlen(t), cut = (size_t)(rng_next(&s) % 4);
                if (at < 8) at = 8;                    /* tokens go into the header */
                if (at > n) at = n;
                if (cut > n - at) cut = n - at;
                if (n - cut + tl > sizeof buf) break;
                memmove(buf + at + tl, buf + at + cut, n - at - cut);
                memcpy(buf + at, t, tl);
                n = n - cut + tl;
                break;
            }
            default: {                           /* lie in the length, keep the header */
                uint64_t v = jl + (rng_next(&s) % 5) - 2;
                if (rng_next(&s) % 8 == 0) v = rng_next(&s);
                for (int i = 0; i < 8 && i < (int)n; i++) buf[i] = (uint8_t)(v >> (8 * i));
            }
            }
        }
        REQUIRE(wpt_write_file(p, buf, n) == 0);
        wp_err e = {0};
        wp_st_file *f = NULL;
        if (wp_st_open(&f, p, &e) == 0) {
            accepted++;
            if (!check_accepted(f, n) && bad++ < 5) CHECKF(0, "iteration %d: accepted file lies", it);
            wp_st_close(f);
        } else {
            refused++;
            if ((!e.code || !e.msg[0] || strchr(e.msg, '\n') || f) && bad++ < 5)
                CHECKF(0, "iteration %d: refusal without a one-line message: %s", it, e.msg);
        }
    }
    /* the mutations must exercise both outcomes, or the test proves nothing */
    CHECKF(accepted >= 20 && refused >= 2000, "accepted %d refused %d", accepted, refused);
}
