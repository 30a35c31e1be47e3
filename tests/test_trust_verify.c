/* test_verify.c — sign -> verify round trips on a real build (tiny-a as two
 * .wpk parts), the signature policy, the manifest's values against
 * independent computations, and the DSSE bundle's statement; the hashing
 * engine's mapped windows, pread fallback and SIGBUS guard. */
#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "hf/safetensors.h"
#include "trust/manifest.h"
#include "format/wpk.h"
#include "tests/harness.h"
#include "tests/trust_fixture.h"
#include "trust/build.h"
#include "trust/trust.h"

static const char *build_dir(void) { return wpt_path("%s/tiny-a.build", wpt_tmpdir()); }

/* A fresh build plus a key pair k.pem / k.pub.pem in the scratch dir. */
static int setup(wp_key_alg alg)
{
    if (trust_make_build(build_dir(), NULL)) return -1;
    wp_err e = {0};
    wp_key *k = NULL;
    int rc = wp_key_generate(alg, &k, &e);
    if (!rc) rc = wp_key_write_pair(k, wpt_path("%s/k", wpt_tmpdir()), 0, &e);
    wp_key_free(k);
    return rc;
}

static int verify_with(const char *key, int allow, int deep, wp_verify_report *r, wp_err *e)
{
    wp_verify_opts o = {.key_path = key, .allow_unsigned = allow, .deep = deep, .threads = 2};
    wp_err_clear(e);
    return wp_verify_build(build_dir(), &o, r, e);
}

static uint64_t build_bytes(void)
{
    return trust_file_size(wpt_path("%s/" TRUST_PART0, build_dir())) +
           trust_file_size(wpt_path("%s/" TRUST_PART1, build_dir()));
}

static void roundtrip(wp_key_alg alg)
{
    REQUIRE(setup(alg) == 0);
    wp_err e = {0};
    char kid[65];
    wp_sign_opts so = {.key_path = wpt_path("%s/k.pem", wpt_tmpdir()), .dsse = 1, .threads = 2};
    REQUIRE(wp_sign_build(build_dir(), &so, kid, &e) == 0);
    wp_verify_report r;
    CHECK_EQ_INT(verify_with(wpt_path("%s/k.pub.pem", wpt_tmpdir()), 0, 0, &r, &e), 0);
    CHECK(r.is_build && r.sig_present && r.sig_verified && r.dsse_present && r.dsse_verified);
    CHECK(!strcmp(r.keyid, kid));
    CHECK_EQ_INT(r.nfiles, 2);
    CHECK_EQ_INT(r.ntensors, 427);   /* every tiny-a tensor */
    CHECK_EQ_INT(r.nfail_total, 0);
    /* every byte of both files hashed exactly once (tensors + the rest) */
    CHECK_EQ_INT(r.bytes_hashed, build_bytes());
    wp_verify_report_free(&r);
    /* --deep adds the whole-file SHA-256: every byte twice */
    CHECK_EQ_INT(verify_with(wpt_path("%s/k.pub.pem", wpt_tmpdir()), 0, 1, &r, &e), 0);
    CHECK_EQ_INT(r.bytes_hashed, 2 * build_bytes());
    wp_verify_report_free(&r);
}

TEST(trust_verify_roundtrip_ed25519) { roundtrip(WP_KEY_ED25519); }
TEST(trust_verify_roundtrip_ecdsa) { roundtrip(WP_KEY_ECDSA_P256); }

TEST(trust_verify_cli_roundtrip)
{
    char out[65536];
    REQUIRE(trust_make_build(build_dir(), NULL) == 0);
    const char *w = wpt_wpack(), *t = wpt_tmpdir(), *b = build_dir();
    CHECK_EQ_INT(wpt_run(out, sizeof out, "%s keygen -o %s/ec --ecdsa", w, t), 0);
    CHECK_CONTAINS(out, "ecdsa-p256-sha256 key id ");
    CHECK_EQ_INT(wpt_run(out, sizeof out, "%s sign %s --key %s/ec.pem --dsse --json", w, b, t), 0);
    cJSON *j = cJSON_Parse(out);
    REQUIRE(j);
    CHECK(cJSON_IsTrue(cJSON_GetObjectItem(j, "ok")));
    cJSON_Delete(j);
    CHECK_EQ_INT(wpt_run(out, sizeof out, "%s verify %s --key %s/ec.pub.pem --json --threads 3", w, b, t), 0);
    j = cJSON_Parse(out);
    REQUIRE(j);
    CHECK(cJSON_IsTrue(cJSON_GetObjectItem(j, "ok")));
    CHECK(cJSON_IsTrue(cJSON_GetObjectItem(cJSON_GetObjectItem(j, "signature"), "verified")));
    CHECK(cJSON_IsTrue(cJSON_GetObjectItem(cJSON_GetObjectItem(j, "dsse"), "verified")));
    CHECK_EQ_INT(cJSON_GetObjectItem(j, "tensors")->valueint, 427);
    CHECK_EQ_INT(cJSON_GetObjectItem(j, "threads")->valueint, 3);
    cJSON_Delete(j);
    CHECK_EQ_INT(wpt_run(out, sizeof out, "%s verify %s --key %s/ec.pub.pem", w, b, t), 0);
    CHECK_CONTAINS(out, ": OK: 2 files, 427 tensors");
    CHECK_CONTAINS(out, "signature: verified");
    /* another key: exit 1, and the message says whose signature it is */
    CHECK_EQ_INT(wpt_run(out, sizeof out, "%s keygen -o %s/other", w, t), 0);
    CHECK_EQ_INT(wpt_run(out, sizeof out, "%s verify %s --key %s/other.pub.pem", w, b, t), 1);
    CHECK_CONTAINS(out, "manifest.sig: signed by ecdsa-p256-sha256 key");
    CHECK_CONTAINS(out, "not by the given ed25519 key");
    /* usage and unreadable input: exit 2 */
    CHECK_EQ_INT(wpt_run(out, sizeof out, "%s verify %s --key %s/nope.pem", w, b, t), 2);
    CHECK_EQ_INT(wpt_run(out, sizeof out, "%s verify", w), 2);
    CHECK_EQ_INT(wpt_run(out, sizeof out, "%s verify %s/absent", w, t), 2);
    CHECK_EQ_INT(wpt_run(out, sizeof out, "%s verify %s --threads 0", w, b), 2);
    CHECK_EQ_INT(wpt_run(out, sizeof out, "%s sign %s", w, b), 2);
    CHECK_CONTAINS(out, "missing option '-k/--key PRIV.pem'");
    /* re-signing with another key replaces the signature */
    CHECK_EQ_INT(wpt_run(out, sizeof out, "%s sign %s --key %s/other.pem", w, b, t), 0);
    CHECK(access(wpt_path("%s/manifest.dsse.json", b), F_OK) != 0);   /* no --dsse: stale bundle removed */
    CHECK_EQ_INT(wpt_run(out, sizeof out, "%s verify %s --key %s/other.pub.pem", w, b, t), 0);
}

TEST(trust_verify_policy)
{
    REQUIRE(setup(WP_KEY_ED25519) == 0);
    wp_err e = {0};
    wp_verify_report r;
    char pub[4096];   /* wpt_path's buffers rotate: keep our own copy */
    snprintf(pub, sizeof pub, "%s/k.pub.pem", wpt_tmpdir());
    /* unsigned: fails unless integrity-only is asked for; a key demands a signature */
    CHECK_EQ_INT(verify_with(NULL, 0, 0, &r, &e), WP_EVERIFY);
    CHECK_CONTAINS(e.msg, "not signed (no manifest.sig): sign it, or accept it unsigned");
    CHECK(!strcmp(e.setting, "allow-unsigned"));
    CHECK_EQ_INT(r.bytes_hashed, 0);   /* rejected before hashing anything */
    wp_verify_report_free(&r);
    CHECK_EQ_INT(verify_with(NULL, 1, 0, &r, &e), 0);
    CHECK(!r.sig_present);
    wp_verify_report_free(&r);
    CHECK_EQ_INT(verify_with(pub, 1, 0, &r, &e), WP_EVERIFY);
    CHECK_CONTAINS(e.msg, "not signed (no manifest.sig), but a public key was given");
    CHECK(!strcmp(e.setting, "key"));
    wp_verify_report_free(&r);
    /* signed, no key: the signature is not a check we ran, so not a pass */
    char kid[65];
    wp_sign_opts so = {.key_path = wpt_path("%s/k.pem", wpt_tmpdir())};
    REQUIRE(wp_sign_build(build_dir(), &so, kid, &e) == 0);
    CHECK_EQ_INT(verify_with(NULL, 0, 0, &r, &e), WP_EVERIFY);
    CHECK_CONTAINS(e.msg, "but no public key was given");
    wp_verify_report_free(&r);
    CHECK_EQ_INT(verify_with(NULL, 1, 0, &r, &e), 0);
    CHECK(r.sig_present && !r.sig_verified && !strcmp(r.keyid, kid));
    wp_verify_report_free(&r);
    /* a lone .wpk: integrity only, and never with a key */
    wp_verify_opts o = {.threads = 2};
    char part[4096];
    snprintf(part, sizeof part, "%s/" TRUST_PART1, build_dir());
    wp_err_clear(&e);
    CHECK_EQ_INT(wp_verify_build(part, &o, &r, &e), WP_EVERIFY);
    CHECK_CONTAINS(e.msg, "a lone .wpk carries no signature");
    wp_verify_report_free(&r);
    o.allow_unsigned = 1;
    wp_err_clear(&e);
    CHECK_EQ_INT(wp_verify_build(part, &o, &r, &e), 0);
    CHECK(!r.is_build && r.ntensors > 0);
    wp_verify_report_free(&r);
    o.key_path = pub;
    wp_err_clear(&e);
    CHECK_EQ_INT(wp_verify_build(part, &o, &r, &e), WP_EUSAGE);
    wp_verify_report_free(&r);
}

TEST(trust_manifest_matches_sources)
{
    REQUIRE(trust_make_build(build_dir(), NULL) == 0);
    char *raw = NULL;
    size_t n = 0;
    wp_err e = {0};
    REQUIRE(wp_read_small_file(wpt_path("%s/manifest.json", build_dir()), 1 << 26, &raw, &n, &e) == 0);
    wp_manifest m;
    REQUIRE(wp_manifest_parse(raw, n, "manifest.json", &m, &e) == 0);
    free(raw);
    REQUIRE(m.nfiles == 2);
    CHECK(!strcmp(m.files[0].path, TRUST_PART0) && !strcmp(m.files[1].path, TRUST_PART1));
    /* file digests agree with coreutils' sha256sum: each file is one shard
     * (smaller than 64 MiB), whose digest is the whole file's */
    char out[4096], hex[65];
    CHECK_EQ_INT(m.version, 2);
    for (int i = 0; i < 2; i++) {
        REQUIRE(wpt_run(out, sizeof out, "sha256sum %s/%s", build_dir(), m.files[i].path) == 0);
        REQUIRE(m.files[i].nshards == 1);
        wp_hex(m.files[i].shards[0], 32, hex);
        CHECKF(!strncmp(out, hex, 64), "%s: manifest %s, sha256sum %.64s", m.files[i].path, hex, out);
        CHECK_EQ_INT(m.files[i].size, trust_file_size(wpt_path("%s/%s", build_dir(), m.files[i].path)));
    }
    /* every tensor's digest is the SHA-256 of the source checkpoint's bytes */
    size_t seen = 0;
    for (int s = 0; s < 2; s++) {
        wp_st_file *sf = NULL;
        REQUIRE(wp_st_open(&sf, wpt_path(WPT_TINY "/hf/model-%05d-of-00002.safetensors", s + 1), &e) == 0);
        for (size_t i = 0; i < wp_st_count(sf); i++) {
            const wp_tensor_info *t = wp_st_tensor(sf, i);
            const void *p = wp_st_data(sf, t, &e);
            uint8_t d[32];
            REQUIRE(wp_sha256_buf(p, t->nbytes, d, &e) == 0);
            int found = 0;
            for (uint64_t k = 0; k < m.ntensors && !found; k++)
                if (m.tensors[k].file == (uint32_t)s && !strcmp(m.tensors[k].name, t->name)) {
                    found = 1;
                    CHECKF(!memcmp(m.tensors[k].sha256, d, 32) && m.tensors[k].size == t->nbytes, "%s", t->name);
                    /* 4 KiB alignment (docs/format.md §2) */
                    CHECK_EQ_INT(m.tensors[k].offset % 4096, 0);
                }
            CHECKF(found, "%s missing from the manifest", t->name);
            seen++;
        }
        wp_st_close(sf);
    }
    CHECK_EQ_INT(seen, m.ntensors);
    /* a second manifest of the same build is byte-identical (reproducible) */
    REQUIRE(wpt_run(out, sizeof out, "cp %s/manifest.json %s/m1", build_dir(), wpt_tmpdir()) == 0);
    REQUIRE(wp_manifest_create(build_dir(), 1, NULL, NULL, NULL, &e) == 0);
    CHECK_EQ_INT(wpt_run(out, sizeof out, "cmp %s/manifest.json %s/m1", build_dir(), wpt_tmpdir()), 0);
    /* and a signed build is not silently re-manifested */
    wp_key *k = NULL;
    REQUIRE(wp_key_generate(WP_KEY_ED25519, &k, &e) == 0);
    REQUIRE(wp_key_write_pair(k, wpt_path("%s/k", wpt_tmpdir()), 0, &e) == 0);
    wp_key_free(k);
    char kid[65];
    wp_sign_opts so = {.key_path = wpt_path("%s/k.pem", wpt_tmpdir()), .no_check = 1};
    REQUIRE(wp_sign_build(build_dir(), &so, kid, &e) == 0);
    wp_err_clear(&e);
    CHECK_EQ_INT(wp_manifest_create(build_dir(), 1, NULL, NULL, NULL, &e), WP_EUSAGE);
    CHECK_CONTAINS(e.msg, "the build is signed");
    wp_manifest_free(&m);
}

TEST(trust_dsse_statement_of_build)
{
    REQUIRE(setup(WP_KEY_ECDSA_P256) == 0);
    wp_err e = {0};
    char kid[65];
    wp_sign_opts so = {.key_path = wpt_path("%s/k.pem", wpt_tmpdir()), .dsse = 1, .model_name = "tiny-a"};
    REQUIRE(wp_sign_build(build_dir(), &so, kid, &e) == 0);
    char *doc = NULL, *payload = NULL, *type = NULL;
    size_t n = 0, plen = 0;
    REQUIRE(wp_read_small_file(wpt_path("%s/manifest.dsse.json", build_dir()), 1 << 20, &doc, &n, &e) == 0);
    wp_key *pub = NULL;
    REQUIRE(wp_key_load_public(wpt_path("%s/k.pub.pem", wpt_tmpdir()), &pub, &e) == 0);
    REQUIRE(wp_dsse_bundle_verify(pub, doc, n, "bundle", &payload, &plen, &type, &e) == 0);
    CHECK(!strcmp(type, "application/vnd.in-toto+json"));
    cJSON *st = cJSON_Parse(payload);
    REQUIRE(st);
    cJSON *res = cJSON_GetObjectItem(cJSON_GetObjectItem(st, "predicate"), "resources");
    CHECK_EQ_INT(cJSON_GetArraySize(res), 3);   /* two .wpk files + manifest.json */
    const char *names[3] = {"manifest.json", TRUST_PART0, TRUST_PART1};
    char out[4096];
    for (int i = 0; i < 3; i++) {
        cJSON *r = cJSON_GetArrayItem(res, i);
        /* model-signing's shard serialisation: "PATH:0:SIZE" (one 64 MiB shard) */
        char want[512];
        snprintf(want, sizeof want, "%s:0:%llu", names[i],
                 (unsigned long long)trust_file_size(wpt_path("%s/%s", build_dir(), names[i])));
        CHECKF(!strcmp(cJSON_GetObjectItem(r, "name")->valuestring, want), "%s", want);
        CHECK(!strcmp(cJSON_GetObjectItem(r, "algorithm")->valuestring, "sha256-sharded-67108864"));
        REQUIRE(wpt_run(out, sizeof out, "sha256sum %s/%s", build_dir(), names[i]) == 0);
        CHECKF(!strncmp(cJSON_GetObjectItem(r, "digest")->valuestring, out, 64), "%s", names[i]);
    }
    CHECK(!strcmp(cJSON_GetObjectItem(cJSON_GetArrayItem(cJSON_GetObjectItem(st, "subject"), 0), "name")->valuestring,
                  "tiny-a"));
    /* the bundle's key hint is the SHA-256 of the public key PEM (model-signing) */
    cJSON *b = cJSON_Parse(doc);
    const char *hint = cJSON_GetObjectItem(cJSON_GetObjectItem(cJSON_GetObjectItem(b, "verificationMaterial"),
                                                               "publicKey"), "hint")->valuestring;
    REQUIRE(wpt_run(out, sizeof out, "sha256sum %s/k.pub.pem", wpt_tmpdir()) == 0);
    CHECK(!strncmp(hint, out, 64));
    cJSON_Delete(b);
    cJSON_Delete(st);
    free(doc);
    free(payload);
    free(type);
    wp_key_free(pub);
}

TEST(trust_verify_files_vs_manifest)
{
    REQUIRE(trust_make_build(build_dir(), NULL) == 0);
    wp_err e = {0};
    wp_verify_report r;
    /* other files are ignored and reported */
    REQUIRE(wpt_write_file(wpt_path("%s/README.txt", build_dir()), "x", 1) == 0);
    CHECK_EQ_INT(verify_with(NULL, 1, 0, &r, &e), 0);
    CHECK(r.nextra == 1 && !strcmp(r.extra[0], "README.txt"));
    wp_verify_report_free(&r);
    /* an unlisted container is not */
    char out[1024];
    REQUIRE(wpt_run(out, sizeof out, "cp %s/" TRUST_PART0 " %s/stray.wpk", build_dir(), build_dir()) == 0);
    CHECK_EQ_INT(verify_with(NULL, 1, 0, &r, &e), WP_EVERIFY);
    CHECK_CONTAINS(e.msg, "stray.wpk: container not listed in the manifest");
    wp_verify_report_free(&r);
    REQUIRE(unlink(wpt_path("%s/stray.wpk", build_dir())) == 0);
    /* a missing part is named; no manifest at all is named */
    REQUIRE(rename(wpt_path("%s/" TRUST_PART1, build_dir()), wpt_path("%s/p1", wpt_tmpdir())) == 0);
    CHECK_EQ_INT(verify_with(NULL, 1, 0, &r, &e), WP_EVERIFY);
    CHECK_CONTAINS(e.msg, TRUST_PART1 ": missing (listed in the manifest)");
    wp_verify_report_free(&r);
    REQUIRE(unlink(wpt_path("%s/manifest.json", build_dir())) == 0);
    CHECK_EQ_INT(verify_with(NULL, 1, 0, &r, &e), WP_EVERIFY);
    CHECK_CONTAINS(e.msg, "no manifest.json");
    wp_verify_report_free(&r);
}

TEST(trust_verify_hugepages_flag)
{
    /* with or without reserved huge pages the result is the same */
    REQUIRE(trust_make_build(build_dir(), NULL) == 0);
    wp_err e = {0};
    wp_verify_report r;
    wp_verify_opts o = {.allow_unsigned = 1, .hugepages = 1, .threads = 2};
    CHECK_EQ_INT(wp_verify_build(build_dir(), &o, &r, &e), 0);
    CHECK_EQ_INT(r.bytes_hashed, build_bytes());
    wp_verify_report_free(&r);
    /* and a flipped data byte is still caught when hashing from the copy */
    uint8_t *raw = NULL;
    size_t n = 0;
    REQUIRE(wpt_read_file(wpt_path("%s/" TRUST_PART0, build_dir()), &raw, &n) == 0);
    free(raw);
    REQUIRE(trust_flip(wpt_path("%s/" TRUST_PART0, build_dir()), n - 100, 0x80) == 0);
    wp_err_clear(&e);
    CHECK_EQ_INT(wp_verify_build(build_dir(), &o, &r, &e), WP_EVERIFY);
    CHECK_CONTAINS(e.msg, "sha256 mismatch in bytes");
    wp_verify_report_free(&r);
}

TEST(trust_verify_convert_output)
{
    /* the real producer: `wpack convert` (two expert-parallel ranks) -> sign -> verify */
    char out[65536];
    const char *w = wpt_wpack(), *t = wpt_tmpdir();
    REQUIRE(wpt_run(out, sizeof out, "%s convert %s/hf -o %s/conv --ep 2 --threads 2", w, WPT_TINY, t) == 0);
    REQUIRE(wpt_run(out, sizeof out, "%s keygen -o %s/k", w, t) == 0);
    CHECK_EQ_INT(wpt_run(out, sizeof out, "%s verify %s/conv --allow-unsigned --deep", w, t), 0);
    CHECK_EQ_INT(wpt_run(out, sizeof out, "%s sign %s/conv --key %s/k.pem --dsse", w, t, t), 0);
    CHECK_EQ_INT(wpt_run(out, sizeof out, "%s verify %s/conv --key %s/k.pub.pem", w, t, t), 0);
    CHECK_CONTAINS(out, "DSSE bundle verified");
    /* a bit flipped inside a stacked expert tensor is named with its range */
    wp_err e = {0};
    wpk_file *f = NULL;
    char part[4096];
    snprintf(part, sizeof part, "%s/conv/model-rank00001-of-00002.wpk", t);
    REQUIRE(wpk_open(&f, part, &e) == 0);
    const wpk_tensor *x = NULL;
    for (size_t i = 0; i < wpk_count(f) && !x; i++)
        if (wpk_tensor_at(f, i)->stacked) x = wpk_tensor_at(f, i);
    REQUIRE(x);
    char want[4800];
    snprintf(want, sizeof want, "%s: %s: sha256 mismatch in bytes [%llu, %llu)", part, x->name,
             (unsigned long long)x->offset, (unsigned long long)(x->offset + x->size));
    uint64_t off = x->offset + x->expert_stride + 7;   /* inside expert 1 */
    wpk_close(f);
    REQUIRE(trust_flip(part, off, 0x20) == 0);
    CHECK_EQ_INT(wpt_run(out, sizeof out, "%s verify %s/conv --key %s/k.pub.pem", w, t, t), 1);
    CHECK_CONTAINS(out, want);
}

/* The build object: what a build directory and a lone .wpk expose. */
TEST(trust_build_object)
{
    REQUIRE(trust_make_build(build_dir(), NULL) == 0);
    REQUIRE(wpt_write_file(wpt_path("%s/README.txt", build_dir()), "x", 1) == 0);
    wp_err e = {0};
    wp_build *b = NULL;
    REQUIRE(wp_build_open(&b, build_dir(), &e) == 0);
    CHECK_EQ_INT(wp_build_type(b), WP_BUILD_DIR);
    CHECK(!strcmp(wp_build_path(b), build_dir()));
    CHECK(wp_build_has_manifest(b) && !wp_build_has_sig(b) && !wp_build_has_dsse(b));
    CHECK(!wp_build_manifest_bytes(b, NULL));   /* nothing read yet */
    const wp_manifest *m = NULL, *m2 = NULL;
    REQUIRE(wp_build_manifest(b, &m, &e) == 0);
    REQUIRE(wp_build_manifest(b, &m2, &e) == 0);
    CHECK(m == m2 && m->nfiles == 2 && m->ntensors == 427);
    size_t len = 0;
    const char *raw = wp_build_manifest_bytes(b, &len);
    CHECK(raw && len == trust_file_size(wpt_path("%s/manifest.json", build_dir())));
    const wp_strv *files = NULL;
    REQUIRE(wp_build_files(b, &files, &e) == 0);
    CHECK_EQ_INT(files->n, 4);
    CHECK(!strcmp(files->v[0], "README.txt") && !strcmp(files->v[1], "manifest.json"));
    CHECK(wp_build_is_trust_file("manifest.sig") && !wp_build_is_trust_file("README.txt"));
    /* parts: the .wpk files by name, opened once, on demand */
    size_t n = 0;
    REQUIRE(wp_build_parts(b, &n, &e) == 0);
    CHECK_EQ_INT(n, 2);
    CHECK(!strcmp(wp_build_part_name(b, 0), TRUST_PART0) && !strcmp(wp_build_part_name(b, 1), TRUST_PART1));
    CHECK(!strcmp(wp_build_part_path(b, 1), wpt_path("%s/" TRUST_PART1, build_dir())));
    CHECK(wp_build_part_name(b, 2) == NULL);
    wpk_file *f0 = NULL, *again = NULL, *byname = NULL;
    REQUIRE(wp_build_part(b, 0, &f0, &e) == 0);
    REQUIRE(wp_build_part(b, 0, &again, &e) == 0);
    REQUIRE(wp_build_part_at(b, TRUST_PART0, &byname, &e) == 0);
    CHECK(f0 && f0 == again && f0 == byname);
    CHECK(!strcmp(wpk_path(f0), wpt_path("%s/" TRUST_PART0, build_dir())));
    CHECK_EQ_INT(wp_build_part(b, 2, &f0, &e), WP_EUSAGE);
    wp_build_close(b);
    /* a lone .wpk: one part, its own path; no manifest */
    char part[4096];
    snprintf(part, sizeof part, "%s/" TRUST_PART1, build_dir());
    REQUIRE(wp_build_open(&b, part, &e) == 0);
    CHECK_EQ_INT(wp_build_type(b), WP_BUILD_WPK);
    CHECK(!wp_build_has_manifest(b));
    wp_err_clear(&e);
    CHECK_EQ_INT(wp_build_manifest(b, &m, &e), WP_EUSAGE);
    REQUIRE(wp_build_parts(b, &n, &e) == 0);
    CHECK(n == 1 && !strcmp(wp_build_part_name(b, 0), TRUST_PART1) && !strcmp(wp_build_part_path(b, 0), part));
    REQUIRE(wp_build_files(b, &files, &e) == 0);
    CHECK(files->n == 1 && !strcmp(files->v[0], TRUST_PART1));
    REQUIRE(wp_build_part(b, 0, &f0, &e) == 0);
    CHECK(wpk_count(f0) > 0);
    wp_build_close(b);
    /* what is not a build */
    wp_err_clear(&e);
    CHECK_EQ_INT(wp_build_open(&b, wpt_path("%s/absent", wpt_tmpdir()), &e), WP_EIO);
    CHECK(b == NULL);
    CHECK_CONTAINS(e.msg, "absent: cannot open");
    wp_err_clear(&e);
    CHECK_EQ_INT(wp_build_open(&b, "/dev/null", &e), WP_EUSAGE);
    CHECK_CONTAINS(e.msg, "neither a build directory nor a .wpk file");
    REQUIRE(mkdir(wpt_path("%s/empty", wpt_tmpdir()), 0755) == 0);
    REQUIRE(wp_build_open(&b, wpt_path("%s/empty", wpt_tmpdir()), &e) == 0);
    wp_err_clear(&e);
    CHECK_EQ_INT(wp_build_manifest(b, &m, &e), WP_EINVAL);
    CHECK_CONTAINS(e.msg, "no manifest.json");
    wp_err_clear(&e);
    CHECK_EQ_INT(wp_build_parts(b, &n, &e), WP_EINVAL);
    CHECK_CONTAINS(e.msg, "no .wpk file in this directory");
    wp_build_close(b);
    wp_build_close(NULL);
}

/* Every key and value of `want` is in `got` (seconds and speed aside; the
 * CLI adds "command" and "exit" to every document). */
static void same_json(const cJSON *want, const cJSON *got, const char *where)
{
    for (const cJSON *w = want->child; w; w = w->next) {
        if (!strcmp(w->string, "seconds") || !strcmp(w->string, "gb_per_s") || !strcmp(w->string, "command") ||
            !strcmp(w->string, "exit"))
            continue;
        const cJSON *g = cJSON_GetObjectItemCaseSensitive(got, w->string);
        CHECKF(g != NULL, "%s: %s missing", where, w->string);
        if (!g) continue;
        if (cJSON_IsObject(w)) same_json(w, g, where);
        else CHECKF(cJSON_Compare(w, g, 1), "%s: %s differs", where, w->string);
    }
    for (const cJSON *g = got->child; g; g = g->next)
        CHECKF(cJSON_GetObjectItemCaseSensitive(want, g->string) != NULL, "%s: %s extra", where, g->string);
}

/* wp_verify_report_json says what `wpack verify --json` says. */
TEST(trust_verify_report_json)
{
    REQUIRE(setup(WP_KEY_ED25519) == 0);
    REQUIRE(wpt_write_file(wpt_path("%s/README.txt", build_dir()), "x", 1) == 0);
    char pub[4096], part[4096];
    snprintf(pub, sizeof pub, "%s/k.pub.pem", wpt_tmpdir());
    snprintf(part, sizeof part, "%s/" TRUST_PART0, build_dir());
    wp_err e = {0};
    char kid[65];
    wp_sign_opts so = {.key_path = wpt_path("%s/k.pem", wpt_tmpdir()), .dsse = 1, .threads = 2};
    REQUIRE(wp_sign_build(build_dir(), &so, kid, &e) == 0);
    static char out[1 << 16];
    struct {
        const char *path, *key, *flags;
        int allow, rc;
    } cases[] = {
        {build_dir(), pub, "--key", 0, 0},            /* signed, checked, one extra file */
        {build_dir(), NULL, "", 0, WP_EVERIFY},      /* signed, no key: fails */
        {part, NULL, "--allow-unsigned", 1, 0},      /* a lone .wpk */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        wp_verify_opts o = {.key_path = cases[i].key, .allow_unsigned = cases[i].allow, .threads = 2};
        wp_verify_report r;
        wp_err_clear(&e);
        int rc = wp_verify_build(cases[i].path, &o, &r, &e);
        CHECK_EQ_INT(rc, cases[i].rc);
        cJSON *got = wp_verify_report_json(cases[i].path, &r, rc, &e);
        wp_verify_report_free(&r);
        REQUIRE(got);
        CHECK_EQ_INT(cJSON_IsTrue(cJSON_GetObjectItem(got, "ok")), rc == 0);
        wpt_run(out, sizeof out, "%s verify %s %s %s --threads 2 --json 2>/dev/null", wpt_wpack(), cases[i].path,
                cases[i].flags, cases[i].key ? cases[i].key : "");
        cJSON *want = cJSON_Parse(out);
        CHECKF(want != NULL, "case %zu: %s", i, out);
        if (want) same_json(want, got, cases[i].path);
        cJSON_Delete(want);
        cJSON_Delete(got);
    }
}

/* ---- the hashing engine (trust/digests.c): mapped windows, pread fallback,
 * a file shrinking under it ---------------------------------------------------------- */

#define ENG_SIZE ((20u << 20) + 12345u)   /* three 8 MiB windows, the last partial */

static uint8_t *eng_file(const char *path)
{
    uint8_t *b = malloc(ENG_SIZE);
    if (!b) return NULL;
    uint32_t x = 2463534242u;
    for (size_t i = 0; i < ENG_SIZE; i++) {
        x ^= x << 13, x ^= x >> 17, x ^= x << 5;
        b[i] = (uint8_t)(x >> 7);
    }
    if (wpt_write_file(path, b, ENG_SIZE)) {
        free(b);
        return NULL;
    }
    return b;
}

/* Ranges that straddle pages and windows, several per job, hashed from the
 * mapped file, equal OpenSSL's one-shot digest of the same bytes. */
TEST(trust_hash_engine_ranges)
{
    const char *path = wpt_path("%s/f.bin", wpt_tmpdir());
    uint8_t *b = eng_file(path);
    REQUIRE(b);
    int fd = open(path, O_RDONLY);
    REQUIRE(fd >= 0);
    const wp_range r[][3] = {
        {{0, ENG_SIZE}, {0, 0}, {0, 0}},
        {{1, 4095}, {4097, (9u << 20) + 3}, {ENG_SIZE - 7, 7}},
        {{(8u << 20) - 1, 2}, {(16u << 20) + 100, 5000}, {0, 0}},
        {{ENG_SIZE, 0}, {0, 0}, {0, 0}},
    };
    const size_t nr[] = {1, 3, 2, 1};
    wp_hash_job jobs[4];
    for (size_t i = 0; i < 4; i++) jobs[i] = (wp_hash_job){.fd = fd, .path = path, .ranges = r[i], .nranges = nr[i]};
    wp_err e = {0};
    CHECK_EQ_INT(wp_hash_jobs(jobs, 4, 2, NULL, NULL, "test", &e), 0);
    for (size_t i = 0; i < 4; i++) {
        size_t n = 0;
        for (size_t k = 0; k < nr[i]; k++) n += r[i][k].len;
        uint8_t *cat = malloc(n + 1), want[32];
        REQUIRE(cat);
        n = 0;
        for (size_t k = 0; k < nr[i]; k++) memcpy(cat + n, b + r[i][k].off, r[i][k].len), n += r[i][k].len;
        REQUIRE(wp_sha256_buf(cat, n, want, &e) == 0);
        CHECKF(jobs[i].done && !memcmp(jobs[i].out, want, 32), "job %zu", i);
        free(cat);
    }
    /* a range past the end is the error pread gives, before any hashing (the
     * last partial page would otherwise read as zeros) */
    wp_range past = {ENG_SIZE - 10, 11};
    jobs[0] = (wp_hash_job){.fd = fd, .path = path, .ranges = &past, .nranges = 1};
    wp_err_clear(&e);
    CHECK_EQ_INT(wp_hash_jobs(jobs, 1, 1, NULL, NULL, "test", &e), WP_EINVAL);
    CHECK_CONTAINS(e.msg, wpt_path("f.bin: unexpected end of file at offset %u (file truncated?)", ENG_SIZE));
    close(fd);
    free(b);
}

/* Not a regular file: read with pread (a character device of zeros). */
TEST(trust_hash_engine_not_mappable)
{
    int fd = open("/dev/zero", O_RDONLY);
    REQUIRE(fd >= 0);
    wp_range r = {0, (3u << 20) + 1};
    wp_hash_job j = {.fd = fd, .path = "/dev/zero", .ranges = &r, .nranges = 1};
    wp_err e = {0};
    CHECK_EQ_INT(wp_hash_jobs(&j, 1, 1, NULL, NULL, "test", &e), 0);
    uint8_t *z = calloc(1, r.len), want[32];
    REQUIRE(z);
    REQUIRE(wp_sha256_buf(z, r.len, want, &e) == 0);
    CHECK(j.done && !memcmp(j.out, want, 32));
    free(z);
    close(fd);
}

static const char *g_shrink_path;
static uint64_t g_shrink_to;
static void shrink_hook(const wp_hash_job *j, uint64_t off, size_t len)
{
    (void)j, (void)off, (void)len;
    if (g_shrink_path && truncate(g_shrink_path, (off_t)g_shrink_to) == 0) g_shrink_path = NULL;
}

/* The file is cut short after its size was checked and its first window
 * mapped: the SIGBUS of the missing pages is an error naming the file and
 * the first missing page, not a crash; the other job still completes. */
TEST(trust_hash_engine_truncated_while_hashing)
{
    const char *path = wpt_path("%s/f.bin", wpt_tmpdir());
    uint8_t *b = eng_file(path);
    REQUIRE(b);
    free(b);
    int fd = open(path, O_RDONLY);
    REQUIRE(fd >= 0);
    long pg = sysconf(_SC_PAGESIZE);
    g_shrink_to = (3u << 20) + 100;
    g_shrink_path = path;
    wp_hash_window_hook = shrink_hook;
    wp_range r = {0, ENG_SIZE};
    wp_hash_job j = {.fd = fd, .path = path, .ranges = &r, .nranges = 1};
    wp_err e = {0};
    int rc = wp_hash_jobs(&j, 1, 1, NULL, NULL, "test", &e);
    wp_hash_window_hook = NULL;
    CHECK(g_shrink_path == NULL);   /* the hook ran */
    CHECK_EQ_INT(rc, WP_EINVAL);
    CHECK(!j.done);
    /* the page holding the new end is still readable; the next one is not */
    uint64_t first_missing = (g_shrink_to + (uint64_t)pg - 1) / (uint64_t)pg * (uint64_t)pg;
    CHECK_CONTAINS(e.msg, wpt_path("f.bin: unexpected end of file at offset %llu (file truncated?)",
                                   (unsigned long long)first_missing));
    /* the engine still works afterwards, on the same thread kind of path */
    wp_range r2 = {0, g_shrink_to};
    j = (wp_hash_job){.fd = fd, .path = path, .ranges = &r2, .nranges = 1};
    wp_err_clear(&e);
    CHECK_EQ_INT(wp_hash_jobs(&j, 1, 1, NULL, NULL, "test", &e), 0);
    CHECK(j.done);
    close(fd);
}

/* A SIGBUS outside a window being hashed is not swallowed: a process that
 * touches a page past the end of its own mapping still dies of it. */
TEST(trust_hash_engine_foreign_sigbus)
{
    const char *path = wpt_path("%s/short.bin", wpt_tmpdir());
    REQUIRE(wpt_write_file(path, "x", 1) == 0);
    fflush(NULL);
    pid_t pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
        int devnull = open("/dev/null", O_WRONLY);
        if (devnull >= 0) dup2(devnull, 2);
        int fd = open(path, O_RDONLY);
        wp_range r = {0, 1};
        wp_hash_job j = {.fd = fd, .path = path, .ranges = &r, .nranges = 1};
        wp_err e = {0};
        if (fd < 0 || wp_hash_jobs(&j, 1, 1, NULL, NULL, "test", &e)) _exit(3);   /* guard installed */
        long pg = sysconf(_SC_PAGESIZE);
        volatile const uint8_t *m = mmap(NULL, 2 * (size_t)pg, PROT_READ, MAP_SHARED, fd, 0);
        if (m == MAP_FAILED) _exit(4);
        (void)m[pg];   /* past the end of the file: SIGBUS */
        _exit(0);
    }
    int st = 0;
    REQUIRE(waitpid(pid, &st, 0) == pid);
    CHECKF(!WIFEXITED(st) || (WEXITSTATUS(st) != 0 && WEXITSTATUS(st) != 3 && WEXITSTATUS(st) != 4),
           "child status %d", st);
}
