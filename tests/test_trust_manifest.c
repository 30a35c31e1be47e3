/* test_manifest.c — canonical JSON, the manifest document and its root digest. */
#include "trust/manifest.h"
#include "tests/harness.h"

static char *canon(const char *json, int *rc)
{
    wp_err e = {0};
    cJSON *j = cJSON_Parse(json);
    char *out = NULL;
    *rc = j ? wp_json_canonical(j, "t", &out, NULL, &e) : -99;
    cJSON_Delete(j);
    return out;
}

TEST(trust_json_canonical_form)
{
    int rc;
    /* keys sorted bytewise at every level, no whitespace, integers plain,
     * only " \ and control characters escaped, UTF-8 kept as is */
    char *s = canon("{ \"b\" : 1, \"a\": [true, null, \"x\\n\\u0001\\u00e9/\"],\n"
                    "  \"c\": {\"z\": -5, \"y\": 9007199254740992, \"Y\": 1e3, \"\\u00e9\": false}}", &rc);
    CHECK_EQ_INT(rc, 0);
    CHECKF(s && !strcmp(s, "{\"a\":[true,null,\"x\\n\\u0001\xc3\xa9/\"],\"b\":1,"
                           "\"c\":{\"Y\":1000,\"y\":9007199254740992,\"z\":-5,\"\xc3\xa9\":false}}"),
           "got %s", s ? s : "(null)");
    free(s);
    s = canon("\"tab\\there \\\"q\\\" back\\\\slash \\b\\f\\r \\u001f\"", &rc);
    CHECKF(s && !strcmp(s, "\"tab\\there \\\"q\\\" back\\\\slash \\b\\f\\r \\u001f\""), "got %s", s ? s : "(null)");
    free(s);
    s = canon("[]", &rc);
    CHECK(s && !strcmp(s, "[]"));
    free(s);
    s = canon("{}", &rc);
    CHECK(s && !strcmp(s, "{}"));
    free(s);
}

TEST(trust_json_canonical_rejects)
{
    static const char *bad[] = {
        "{\"a\":1.5}",                 /* fraction */
        "{\"a\":9007199254740994}",    /* beyond 2^53: not exact in a double */
        "{\"a\":1e300}",
        "{\"a\":1,\"a\":2}",           /* duplicate key (cJSON keeps both) */
        "[\"\xc3\"]",                  /* truncated UTF-8 */
        "[\"\xc0\xaf\"]",              /* overlong "/" */
        "[\"\xed\xa0\x80\"]",          /* UTF-16 surrogate */
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        int rc;
        char *s = canon(bad[i], &rc);
        CHECKF(rc == WP_EINVAL && !s, "accepted %s (rc %d)", bad[i], rc);
        free(s);
    }
}

TEST(trust_json_parse_canonical_strict)
{
    wp_err e = {0};
    cJSON *j = NULL;
    static const char ok[] = "{\"a\":[1,2],\"b\":\"x\"}";
    CHECK_EQ_INT(wp_json_parse_canonical(ok, sizeof ok - 1, "doc", &j, &e), 0);
    cJSON_Delete(j);
    static const char *bad[] = {"{\"b\":\"x\",\"a\":[1,2]}", "{\"a\":[1,2], \"b\":\"x\"}", "{\"a\":[1,2],\"b\":\"x\"}\n",
                                "{\"a\":[1.0,2],\"b\":\"x\"}", "{\"a\":[1,2],\"b\":\"\\u0078\"}"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        wp_err_clear(&e);
        j = NULL;
        CHECKF(wp_json_parse_canonical(bad[i], strlen(bad[i]), "doc", &j, &e) == WP_EINVAL, "accepted %s", bad[i]);
        CHECK(j == NULL);
        CHECK_CONTAINS(e.msg, "doc: not in canonical form");
    }
    wp_err_clear(&e);
    CHECK_EQ_INT(wp_json_parse_canonical("{\"a\":", 5, "doc", &j, &e), WP_EINVAL);
    CHECK_CONTAINS(e.msg, "not valid JSON");
}

/* A two-file manifest given out of order. */
static void sample(wp_manifest *m)
{
    memset(m, 0, sizeof *m);
    m->nfiles = 2;
    m->files = calloc(2, sizeof *m->files);
    m->files[0] = (wp_mfile){strdup("z.wpk"), 10000, {0}, {0}};
    m->files[1] = (wp_mfile){strdup("a.wpk"), 8192, {0}, {0}};
    memset(m->files[0].sha256, 0xA0, 32);
    memset(m->files[0].nontensor_sha256, 0xA1, 32);
    memset(m->files[1].sha256, 0xB0, 32);
    memset(m->files[1].nontensor_sha256, 0xB1, 32);
    m->ntensors = 3;
    m->tensors = calloc(3, sizeof *m->tensors);
    m->tensors[0] = (wp_mtensor){strdup("w2"), 0, 8192, 1808, {0}, WP_MLOSS_NONE};   /* z.wpk */
    m->tensors[1] = (wp_mtensor){strdup("w1"), 0, 4096, 100, {0}, WP_MLOSS_NONE};    /* z.wpk */
    m->tensors[2] = (wp_mtensor){strdup("emb"), 1, 4096, 4096, {0}, WP_MLOSS_NONE};  /* a.wpk */
    for (int i = 0; i < 3; i++) memset(m->tensors[i].sha256, 0x10 + i, 32);
}

static void le(uint8_t *p, uint64_t v, int n)
{
    for (int i = 0; i < n; i++) p[i] = (uint8_t)(v >> (8 * i));
}

TEST(trust_manifest_root_by_hand)
{
    wp_manifest m;
    sample(&m);
    wp_err e = {0};
    REQUIRE(wp_manifest_finish(&m, &e) == 0);
    /* canonical order: a.wpk, z.wpk; tensors emb (a), w1 (z @4096), w2 (z @8192) */
    CHECK(!strcmp(m.files[0].path, "a.wpk") && !strcmp(m.files[1].path, "z.wpk"));
    CHECK(!strcmp(m.tensors[0].name, "emb") && m.tensors[0].file == 0);
    CHECK(!strcmp(m.tensors[1].name, "w1") && m.tensors[1].file == 1);
    CHECK(!strcmp(m.tensors[2].name, "w2") && m.tensors[2].file == 1);
    /* docs/signing.md §2.3, byte by byte */
    uint8_t buf[1024], *p = buf;
    memcpy(p, "wpack-manifest-root-v1", 23);   /* with its NUL */
    p += 23;
    le(p, 2, 4), p += 4;
    const char *fn[2] = {"a.wpk", "z.wpk"};
    uint64_t fs[2] = {8192, 10000};
    uint8_t fd[2][2] = {{0xB0, 0xB1}, {0xA0, 0xA1}};
    for (int i = 0; i < 2; i++) {
        le(p, 5, 4), p += 4;
        memcpy(p, fn[i], 5), p += 5;
        le(p, fs[i], 8), p += 8;
        memset(p, fd[i][0], 32), p += 32;
        memset(p, fd[i][1], 32), p += 32;
    }
    le(p, 3, 8), p += 8;
    struct { const char *n; uint32_t f; uint64_t off, size; uint8_t d; } t[3] = {
        {"emb", 0, 4096, 4096, 0x12}, {"w1", 1, 4096, 100, 0x11}, {"w2", 1, 8192, 1808, 0x10}};
    for (int i = 0; i < 3; i++) {
        le(p, t[i].f, 4), p += 4;
        le(p, strlen(t[i].n), 4), p += 4;
        memcpy(p, t[i].n, strlen(t[i].n)), p += strlen(t[i].n);
        le(p, t[i].off, 8), p += 8;
        le(p, t[i].size, 8), p += 8;
        memset(p, t[i].d, 32), p += 32;
    }
    uint8_t want[32];
    REQUIRE(wp_sha256_buf(buf, (size_t)(p - buf), want, &e) == 0);
    CHECK(!memcmp(want, m.root, 32));
    wp_manifest_free(&m);
}

TEST(trust_manifest_roundtrip)
{
    wp_manifest m, back;
    sample(&m);
    wp_err e = {0};
    REQUIRE(wp_manifest_finish(&m, &e) == 0);
    char *s = NULL;
    size_t n = 0;
    REQUIRE(wp_manifest_serialize(&m, &s, &n, &e) == 0);
    /* the shape of the document, exactly */
    CHECK(!strncmp(s, "{\"files\":[{\"nontensor_sha256\":\"b1b1", 35));
    CHECK_CONTAINS(s, "\"path\":\"a.wpk\",\"sha256\":\"b0b0");
    CHECK_CONTAINS(s, "\"size\":8192}");
    CHECK_CONTAINS(s, "\"tensors\":[{\"file\":\"a.wpk\",\"name\":\"emb\",\"offset\":4096,\"sha256\":\"1212");
    CHECK_CONTAINS(s, "\"format\":\"wpack-manifest\",\"root_sha256\":\"");
    CHECK(n > 12 && !strcmp(s + n - 12, "\"version\":1}"));
    REQUIRE(wp_manifest_parse(s, n, "manifest.json", &back, &e) == 0);
    CHECK_EQ_INT(back.nfiles, 2);
    CHECK_EQ_INT(back.ntensors, 3);
    CHECK(!memcmp(back.root, m.root, 32));
    CHECK(!strcmp(back.tensors[2].name, "w2") && back.tensors[2].offset == 8192 && back.tensors[2].size == 1808);
    CHECK_EQ_INT(wp_manifest_find_file(&back, "z.wpk"), 1);
    CHECK_EQ_INT(wp_manifest_find_file(&back, "b.wpk"), -1);
    wp_manifest_free(&back);
    /* write goes through wp_out and reads back identical */
    REQUIRE(wp_manifest_write(wpt_tmpdir(), &m, &e) == 0);
    uint8_t *f = NULL;
    size_t fl = 0;
    REQUIRE(wpt_read_file(wpt_path("%s/manifest.json", wpt_tmpdir()), &f, &fl) == 0);
    CHECK(fl == n && !memcmp(f, s, n));
    free(f);
    free(s);
    wp_manifest_free(&m);
}

/* Serialise `m` after `edit`, then expect the parse to fail with `want`. */
static void expect_reject(void (*edit)(wp_manifest *), int fix_root, int code, const char *want)
{
    wp_manifest m;
    sample(&m);
    wp_err e = {0};
    REQUIRE(wp_manifest_finish(&m, &e) == 0);
    edit(&m);
    if (fix_root) wp_manifest_root(&m, m.root);
    char *s = NULL;
    size_t n = 0;
    REQUIRE(wp_manifest_serialize(&m, &s, &n, &e) == 0);
    wp_manifest back;
    wp_err_clear(&e);
    CHECK_EQ_INT(wp_manifest_parse(s, n, "manifest.json", &back, &e), code);
    CHECK_CONTAINS(e.msg, want);
    free(s);
    wp_manifest_free(&m);
}

static void ed_size(wp_manifest *m) { m->tensors[1].size = 101; }
static void ed_overlap(wp_manifest *m) { m->tensors[1].size = 4097; }
static void ed_past_end(wp_manifest *m) { m->tensors[2].size = 1809; }
static void ed_unsorted_t(wp_manifest *m) { m->tensors[1].offset = 9000; m->tensors[1].size = 1; }
static void ed_dup_name(wp_manifest *m) { free(m->tensors[2].name); m->tensors[2].name = strdup("w1"); }
static void ed_bad_path(wp_manifest *m) { free(m->files[0].path); m->files[0].path = strdup("../a.wpk"); }
static void ed_dup_file(wp_manifest *m) { free(m->files[1].path); m->files[1].path = strdup("a.wpk"); }
static void ed_digest(wp_manifest *m) { m->files[0].nontensor_sha256[7] ^= 1; }

TEST(trust_manifest_rejects)
{
    /* an edit without a new root digest: the root catches it */
    expect_reject(ed_size, 0, WP_EVERIFY, "root_sha256");
    expect_reject(ed_digest, 0, WP_EVERIFY, "does not match the listed files and tensors");
    /* edits with a recomputed root: the structural rules catch them */
    expect_reject(ed_overlap, 1, WP_EINVAL, "tensor w2 in z.wpk: bytes [8192, 10000) overlap tensor w1");
    expect_reject(ed_past_end, 1, WP_EINVAL, "tensor w2: bytes [8192, 10001) past the end of z.wpk");
    expect_reject(ed_unsorted_t, 1, WP_EINVAL, "not sorted by (file, offset)");
    expect_reject(ed_dup_name, 1, WP_EINVAL, "tensor w1 listed twice in z.wpk");
    expect_reject(ed_bad_path, 1, WP_EINVAL, "path must be relative");
    expect_reject(ed_dup_file, 1, WP_EINVAL, "listed twice");
}

#define Z64 "0000000000000000000000000000000000000000000000000000000000000000"

TEST(trust_manifest_rejects_documents)
{
    wp_manifest m;
    wp_err e = {0};
    static const struct { const char *doc, *want; } cases[] = {
        {"{\"files\":[],\"format\":\"wpack-manifest\",\"root_sha256\":\"00\",\"tensors\":[],\"version\":1}",
         "\"root_sha256\" must be 64 lowercase hex digits"},
        {"{\"files\":[],\"format\":\"wpack-manifest\",\"tensors\":[],\"version\":1}", "missing key \"root_sha256\""},
        {"{\"extra\":1,\"files\":[],\"format\":\"wpack-manifest\",\"root_sha256\":\"00\",\"tensors\":[],\"version\":1}",
         "unknown key \"extra\""},
        {"{\"files\":[],\"format\":\"wpack-manifest\",\"root_sha256\":\"00\",\"tensors\":[],\"version\":2}",
         "version 2 is not supported"},
        {"{\"files\":[],\"format\":\"other\",\"root_sha256\":\"00\",\"tensors\":[],\"version\":1}",
         "\"format\" must be \"wpack-manifest\""},
        {"{\"files\":[{\"nontensor_sha256\":\"x\",\"path\":\"a\",\"sha256\":\"x\",\"size\":-1}],\"format\":"
         "\"wpack-manifest\",\"root_sha256\":\"" Z64 "\",\"tensors\":[],\"version\":1}",
         "file a: \"size\" must be a non-negative integer"},
        {"[]", "top level: expected a JSON object"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        wp_err_clear(&e);
        CHECKF(wp_manifest_parse(cases[i].doc, strlen(cases[i].doc), "m.json", &m, &e) == WP_EINVAL,
               "accepted case %zu", i);
        CHECK_CONTAINS(e.msg, cases[i].want);
    }
    /* a tensor in a file the manifest does not list */
    wp_manifest s;
    sample(&s);
    REQUIRE(wp_manifest_finish(&s, &e) == 0);
    char *doc = NULL;
    size_t n = 0;
    REQUIRE(wp_manifest_serialize(&s, &doc, &n, &e) == 0);
    char *at = strstr(doc, "\"file\":\"a.wpk\"");
    REQUIRE(at);
    at[8] = 'b';   /* "b.wpk" */
    wp_err_clear(&e);
    CHECK_EQ_INT(wp_manifest_parse(doc, n, "m.json", &m, &e), WP_EINVAL);
    CHECK_CONTAINS(e.msg, "tensor emb: file \"b.wpk\" is not listed");
    free(doc);
    wp_manifest_free(&s);
}

TEST(trust_rel_path_rule)
{
    static const char *ok[] = {"a.wpk", "sub/a.wpk", "a..b", ".hidden", "a/b/c"};
    static const char *bad[] = {"", "/abs", "a//b", "a/", "./a", "a/../b", "..", "a\\b", "a\nb"};
    for (size_t i = 0; i < sizeof ok / sizeof *ok; i++) CHECKF(wp_rel_path_ok(ok[i]), "rejected %s", ok[i]);
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) CHECKF(!wp_rel_path_ok(bad[i]), "accepted %s", bad[i]);
}
