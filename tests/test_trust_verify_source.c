/* test_verify_source.c — `wpack verify-source` on a copy of tiny-a's download
 * with a digests file made here by coreutils' sha256sum (an independent
 * SHA-256), and the shipped V4-Flash digests file. */
#include <sys/stat.h>
#include <unistd.h>

#include "tests/harness.h"
#include "tests/trust_fixture.h"
#include "trust/trust.h"

static const char *files[] = {"config.json", "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors",
                              "model.safetensors.index.json"};

/* Copy tiny-a/hf to TMP/ckpt and write TMP/digests.json in the published
 * format (config.json without a size, like the real file). */
static int setup(char *ckpt, char *digests)
{
    static char out[8192];
    snprintf(ckpt, 4096, "%s/ckpt", wpt_tmpdir());
    snprintf(digests, 4096, "%s/digests.json", wpt_tmpdir());
    if (wpt_run(out, sizeof out, "cp -r %s/hf %s", WPT_TINY, ckpt)) return -1;
    FILE *f = fopen(digests, "w");
    if (!f) return -1;
    fprintf(f, "{\n \"model\": \"tiny-a\",\n \"revision\": \"test\",\n \"files\": [\n");
    for (int i = 0; i < 4; i++) {
        if (wpt_run(out, sizeof out, "sha256sum %s/%s", ckpt, files[i])) return -1;
        out[64] = 0;
        struct stat st;
        stat(wpt_path("%s/%s", ckpt, files[i]), &st);
        if (i == 0)
            fprintf(f, "  {\"path\": \"%s\", \"sha256\": \"%s\"},\n", files[i], out);
        else
            fprintf(f, "  {\"path\": \"%s\", \"size\": %lld, \"sha256\": \"%s\"}%s\n", files[i], (long long)st.st_size,
                    out, i == 3 ? "" : ",");
    }
    fprintf(f, " ]\n}\n");
    return fclose(f);
}

TEST(trust_vsource_tiny_ok)
{
    char ckpt[4096], dg[4096], out[16384];
    REQUIRE(setup(ckpt, dg) == 0);
    /* an unlisted file is ignored but listed; dot entries are skipped */
    REQUIRE(wpt_write_file(wpt_path("%s/README.md", ckpt), "hi", 2) == 0);
    REQUIRE(mkdir(wpt_path("%s/.cache", ckpt), 0755) == 0);
    REQUIRE(wpt_write_file(wpt_path("%s/.cache/x", ckpt), "x", 1) == 0);
    int rc = wpt_run(out, sizeof out, "%s verify-source %s --digests %s --json", wpt_wpack(), ckpt, dg);
    CHECK_EQ_INT(rc, 0);
    cJSON *j = cJSON_Parse(out);
    REQUIRE(j);
    CHECK(cJSON_IsTrue(cJSON_GetObjectItem(j, "ok")));
    CHECK(!strcmp(cJSON_GetObjectItem(j, "model")->valuestring, "tiny-a"));
    cJSON *fa = cJSON_GetObjectItem(j, "files");
    CHECK_EQ_INT(cJSON_GetArraySize(fa), 4);
    for (int i = 0; i < cJSON_GetArraySize(fa); i++)
        CHECK(!strcmp(cJSON_GetObjectItem(cJSON_GetArrayItem(fa, i), "status")->valuestring, "ok"));
    cJSON *x = cJSON_GetObjectItem(j, "extra_files");
    CHECK_EQ_INT(cJSON_GetArraySize(x), 1);
    CHECK(!strcmp(cJSON_GetArrayItem(x, 0)->valuestring, "README.md"));
    /* every listed byte hashed exactly once: 1460 + 3824748 + 3295430 + 31176 */
    CHECK_EQ_INT((long long)cJSON_GetObjectItem(j, "bytes_hashed")->valuedouble, 1460 + 3824748 + 3295430 + 31176);
    cJSON_Delete(j);
    /* human output and the library agree */
    rc = wpt_run(out, sizeof out, "%s verify-source %s --digests %s --threads 3", wpt_wpack(), ckpt, dg);
    CHECK_EQ_INT(rc, 0);
    CHECK_CONTAINS(out, "OK: 4 files match tiny-a");
    CHECK_CONTAINS(out, "ignored (not in the digests file): README.md");
}

TEST(trust_vsource_tampered_byte)
{
    char ckpt[4096], dg[4096], out[16384];
    REQUIRE(setup(ckpt, dg) == 0);
    /* one bit, deep inside shard 2's data */
    REQUIRE(trust_flip(wpt_path("%s/model-00002-of-00002.safetensors", ckpt), 2000000, 0x04) == 0);
    int rc = wpt_run(out, sizeof out, "%s verify-source %s --digests %s", wpt_wpack(), ckpt, dg);
    CHECK_EQ_INT(rc, 1);
    CHECK_CONTAINS(out, "model-00002-of-00002.safetensors: sha256 ");
    CHECK_CONTAINS(out, "1 of 4 files failed");
    wp_err e = {0};
    wp_source_report r;
    CHECK_EQ_INT(wp_verify_source(ckpt, dg, 2, NULL, NULL, &r, &e), WP_EVERIFY);
    CHECK_EQ_INT(r.nbad, 1);
    for (size_t i = 0; i < r.nfiles; i++)
        CHECK_EQ_INT(r.files[i].status, strcmp(r.files[i].path, files[2]) ? WP_SRC_OK : WP_SRC_DIGEST);
    CHECK_CONTAINS(e.msg, "model-00002-of-00002.safetensors: sha256");
    wp_source_report_free(&r);
}

TEST(trust_vsource_size_before_hash)
{
    char ckpt[4096], dg[4096];
    REQUIRE(setup(ckpt, dg) == 0);
    REQUIRE(truncate(wpt_path("%s/model-00001-of-00002.safetensors", ckpt), 3824747) == 0);
    wp_err e = {0};
    wp_source_report r;
    CHECK_EQ_INT(wp_verify_source(ckpt, dg, 2, NULL, NULL, &r, &e), WP_EVERIFY);
    CHECK_CONTAINS(e.msg, "model-00001-of-00002.safetensors: size 3824747, published 3824748 (not hashed)");
    CHECK_EQ_INT(r.files[1].status, WP_SRC_SIZE);
    /* the wrong-sized shard was not read: only the other three were hashed */
    CHECK_EQ_INT(r.bytes_hashed, 1460 + 3295430 + 31176);
    wp_source_report_free(&r);
}

TEST(trust_vsource_missing_file)
{
    char ckpt[4096], dg[4096], out[16384];
    REQUIRE(setup(ckpt, dg) == 0);
    REQUIRE(unlink(wpt_path("%s/config.json", ckpt)) == 0);
    int rc = wpt_run(out, sizeof out, "%s verify-source %s --digests %s --json", wpt_wpack(), ckpt, dg);
    CHECK_EQ_INT(rc, 1);
    cJSON *j = cJSON_Parse(out);
    REQUIRE(j);
    CHECK(cJSON_IsFalse(cJSON_GetObjectItem(j, "ok")));
    CHECK_EQ_INT(cJSON_GetObjectItem(j, "failed")->valueint, 1);
    cJSON *f0 = cJSON_GetArrayItem(cJSON_GetObjectItem(j, "files"), 0);
    CHECK(!strcmp(cJSON_GetObjectItem(f0, "path")->valuestring, "config.json"));
    CHECK(!strcmp(cJSON_GetObjectItem(f0, "status")->valuestring, "missing"));
    cJSON_Delete(j);
}

TEST(trust_vsource_bad_digests_file)
{
    char ckpt[4096], dg[4096], out[16384];
    REQUIRE(setup(ckpt, dg) == 0);
    static const struct { const char *doc, *want; } cases[] = {
        {"[1]", "not a JSON object"},
        {"{\"files\": []}", "\"files\" must be a non-empty array"},
        {"{\"files\": [{\"path\": \"../etc/passwd\", \"sha256\": \"00\"}]}", "relative path inside the checkpoint"},
        {"{\"files\": [{\"path\": \"a\", \"sha256\": \"00\"}]}", "a: \"sha256\" must be 64 hex digits"},
        {"{\"files\": [{\"path\": \"a\", \"size\": 1.5, \"sha256\": "
         "\"0000000000000000000000000000000000000000000000000000000000000000\"}]}",
         "a: \"size\" must be a non-negative integer"},
        {"{\"files\": [{\"path\": \"a\", \"sha256\": "
         "\"0000000000000000000000000000000000000000000000000000000000000000\"}, {\"path\": \"a\", \"sha256\": "
         "\"0000000000000000000000000000000000000000000000000000000000000000\"}]}",
         "a is listed twice"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        REQUIRE(wpt_write_file(dg, cases[i].doc, strlen(cases[i].doc)) == 0);
        int rc = wpt_run(out, sizeof out, "%s verify-source %s --digests %s", wpt_wpack(), ckpt, dg);
        CHECKF(rc == 2, "case %zu: exit %d", i, rc);
        CHECK_CONTAINS(out, cases[i].want);
    }
    CHECK_EQ_INT(wpt_run(out, sizeof out, "%s verify-source %s", wpt_wpack(), ckpt), 2);
    CHECK_CONTAINS(out, "missing option '-d/--digests FILE.json'");
}

TEST(trust_vsource_shipped_digests)
{
    /* data/ holds the real V4-Flash list: 46 shards with sizes + config.json
     * and the index without; the shard sizes add up to the published total */
    wp_err e = {0};
    wp_source_report r;
    CHECK_EQ_INT(wp_verify_source(wpt_tmpdir(), "data/deepseek-v4-flash-60d8d707.json", 2, NULL, NULL, &r, &e),
                 WP_EVERIFY);
    CHECK_EQ_INT(r.nfiles, 48);
    CHECK_EQ_INT(r.nbad, 48);
    CHECK(r.model && !strcmp(r.model, "deepseek-ai/DeepSeek-V4-Flash"));
    CHECK(r.revision && !strcmp(r.revision, "60d8d70770c6776ff598c94bb586a859a38244f1"));
    uint64_t total = 0;
    int sized = 0;
    for (size_t i = 0; i < r.nfiles; i++) {
        CHECK_EQ_INT(r.files[i].status, WP_SRC_MISSING);
        if (r.files[i].has_size) total += r.files[i].want_size, sized++;
    }
    CHECK_EQ_INT(sized, 46);
    CHECK_EQ_INT(total, 159617149040LL);
    CHECK(!strcmp(r.files[0].path, "model-00001-of-00046.safetensors") && r.files[0].want_size == 1059061856);
    CHECK(!strcmp(r.files[47].path, "model.safetensors.index.json") && !r.files[47].has_size);
    CHECK_EQ_INT(r.bytes_hashed, 0);
    CHECK_CONTAINS(e.msg, "model-00001-of-00046.safetensors: missing");
    wp_source_report_free(&r);
}
