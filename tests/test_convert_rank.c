/* test_convert_rank.c — per-rank convert and `wpack merge` (docs/distributed.md):
 * N workers as N processes with their own output directories, merged, are
 * the single-machine build byte for byte; a missing, duplicated,
 * foreign-plan or tampered part is refused by name and nothing is written;
 * the rank comes from --rank or the scheduler's variable; a version-1
 * manifest (whole-file digests) is still verified and signed. */
#include <cjson/cJSON.h>
#include <sys/stat.h>
#include <unistd.h>

#include "format/wpk.h"
#include "tests/cv_util.h"
#include "tests/harness.h"
#include "tests/trust_fixture.h"
#include "trust/manifest.h"

#define HF WPT_TINY "/hf"

/* The binary by absolute path: some commands run from the test directory. */
static const char *W(void)
{
    static char abs_[4096];
    if (!abs_[0] && !realpath(wpt_wpack(), abs_)) snprintf(abs_, sizeof abs_, "%s", wpt_wpack());
    return abs_;
}

/* N ranks converted by N concurrent processes (rank from `how`: "--rank",
 * "slurm" or "k8s"), merged, compared with the single-machine build. */
static void parts_merge_identical(const char *opts, int n, const char *how)
{
    static char out[1 << 16];
    static int run_no;
    char d[512];
    snprintf(d, sizeof d, "%s/run%d", wpt_tmpdir(), run_no++);
    REQUIRE(mkdir(d, 0755) == 0);
    char single[600], merged[600], cmd[8192];
    snprintf(single, sizeof single, "%s/single", d);
    snprintf(merged, sizeof merged, "%s/merged", d);
    REQUIRE(wpt_run(out, sizeof out, "%s convert %s -o %s %s -q", W(), HF, single, opts) == 0);
    /* the workers: one shell job each, all at once, each its own directory */
    int at = snprintf(cmd, sizeof cmd, "set -e; ");
    for (int r = 0; r < n; r++) {
        const char *env = !strcmp(how, "slurm") ? "SLURM_ARRAY_TASK_ID" : "JOB_COMPLETION_INDEX";
        if (!strcmp(how, "--rank"))
            at += snprintf(cmd + at, sizeof cmd - at, "%s convert %s -o %s/p%d%s %s --rank %d --json > %s/p%d%s.json & ",
                           W(), HF, d, r, how, opts, r, d, r, how);
        else
            at += snprintf(cmd + at, sizeof cmd - at,
                           "env %s=%d %s convert %s -o %s/p%d%s %s --json > %s/p%d%s.json 2>/dev/null & ", env, r,
                           W(), HF, d, r, how, opts, d, r, how);
    }
    snprintf(cmd + at, sizeof cmd - at, "wait");
    REQUIRE(wpt_run(out, sizeof out, "sh -c '%s'", cmd) == 0);
    long long total = -1;
    for (int r = 0; r < n; r++) {
        char p[1024];
        uint8_t *doc;
        size_t len;
        snprintf(p, sizeof p, "%s/p%d%s.json", d, r, how);
        REQUIRE(wpt_read_file(p, &doc, &len) == 0);
        char *s = strndup((const char *)doc, len);
        free(doc);
        CHECKF(cvt_json_num(s, "rank") == r, "rank %d: %s", r, s);
        CHECKF(cvt_json_num(s, "ranks") == n, "rank %d: %s", r, s);
        total = cvt_json_num(s, "checkpoint_tensor_bytes");
        long long rd = cvt_json_num(s, "bytes_read");
        /* a rank reads only its own tensors: less than the whole checkpoint */
        CHECKF(rd > 0 && rd < total, "rank %d read %lld of %lld bytes", r, rd, total);
        free(s);
    }
    at = snprintf(cmd, sizeof cmd, "%s merge", W());
    for (int r = n - 1; r >= 0; r--) at += snprintf(cmd + at, sizeof cmd - at, " %s/p%d%s", d, r, how);
    REQUIRE(wpt_run(out, sizeof out, "%s -o %s", cmd, merged) == 0);
    CHECKF(wpt_run(out, sizeof out, "diff -r %s %s 2>&1", single, merged) == 0, "%s: merged != single: %s", opts, out);
    /* no data copied: the build's containers are the parts' files */
    struct stat a, b;
    REQUIRE(stat(wpt_path("%s/p0%s/model-rank00000-of-%05d.wpk", d, how, n), &a) == 0);
    REQUIRE(stat(wpt_path("%s/model-rank00000-of-%05d.wpk", merged, n), &b) == 0);
    CHECK(a.st_ino == b.st_ino && a.st_dev == b.st_dev);
    CHECK(wpt_run(out, sizeof out, "%s verify %s --allow-unsigned --deep", W(), merged) == 0);
}

TEST(convert_rank_parts_merge_byte_identical)
{
    parts_merge_identical("--ep 2", 2, "--rank");
    parts_merge_identical("--ep 4", 4, "slurm");
    parts_merge_identical("--ep 2 --profile bf16", 2, "k8s");
    parts_merge_identical("--tp 2 --profile bf16", 2, "--rank");
    /* a lossy build: the parts' "loss" summaries add up to the single build's */
    parts_merge_identical("--ep 2 --tensor-type wq_a.weight=mxfp4", 2, "--rank");
}

/* Make parts p0, p1 of `--ep 2` and a foreign part (another profile). */
static int make_parts(const char *d)
{
    static char out[8192];
    for (int r = 0; r < 2; r++)
        if (wpt_run(out, sizeof out, "%s convert %s -o %s/p%d --ep 2 --rank %d -q", W(), HF, d, r, r)) return -1;
    return wpt_run(out, sizeof out, "%s convert %s -o %s/f1 --ep 2 --rank 1 --profile bf16 -q", W(), HF, d);
}

static int merge_fails(char *out, size_t cap, const char *d, const char *parts)
{
    int rc = wpt_run(out, cap, "cd %s && %s merge %s -o out", d, W(), parts);
    CHECKF(access(wpt_path("%s/out", d), F_OK) != 0, "merge %s: output written", parts);
    CHECKF(!strcmp(wpt_hidden_names(d), ""), "merge %s left %s", parts, wpt_hidden_names(d));
    return rc;
}

TEST(convert_rank_merge_refuses_bad_parts_by_name)
{
    static char out[8192];
    const char *d = wpt_tmpdir();
    REQUIRE(make_parts(d) == 0);
    char sum0[4096];
    REQUIRE(wpt_run(sum0, sizeof sum0, "cd %s && sha256sum p0/* p1/* f1/*", d) == 0);

    CHECK_EQ_INT(merge_fails(out, sizeof out, d, "p0"), 1);
    CHECK_CONTAINS(out, "rank 1 of 2 is missing (model-rank00001-of-00002.wpk)");

    CHECK_EQ_INT(merge_fails(out, sizeof out, d, "p0 p1 p1"), 1);
    CHECK_CONTAINS(out, "p1 and p1 both hold rank 1");

    CHECK_EQ_INT(merge_fails(out, sizeof out, d, "p0 f1"), 1);
    CHECK_CONTAINS(out, "f1: from another plan");

    CHECK_EQ_INT(merge_fails(out, sizeof out, d, "p0 nothing"), 2);
    CHECK_CONTAINS(out, "nothing: not a part directory");

    CHECK_EQ_INT(merge_fails(out, sizeof out, d, "--json p0 2>/dev/null"), 1);
    cJSON *j = cJSON_Parse(out);
    CHECK(j && cJSON_IsFalse(cJSON_GetObjectItem(j, "ok")));
    cJSON_Delete(j);

    /* a part whose part.json was edited (a rank it does not hold) */
    REQUIRE(wpt_run(out, sizeof out, "cp -r %s/p1 %s/e1 && sed -i 's/\"rank\":1/\"rank\":0/' %s/e1/part.json", d, d, d) == 0);
    CHECK_EQ_INT(merge_fails(out, sizeof out, d, "e1 p1"), 1);
    CHECK_CONTAINS(out, "e1: its manifest lists 1 file(s), first model-rank00001-of-00002.wpk, not the one file of rank 0");

    /* every check passes before anything is written: parts unchanged */
    char sum1[4096];
    REQUIRE(wpt_run(sum1, sizeof sum1, "cd %s && sha256sum p0/* p1/* f1/*", d) == 0);
    CHECK(!strcmp(sum0, sum1));

    /* tampered: one byte of tensor data in p1's container (a copy: p1 stays) */
    REQUIRE(wpt_run(out, sizeof out, "cp -r %s/p1 %s/t1", d, d) == 0);
    const char *w = wpt_path("%s/t1/model-rank00001-of-00002.wpk", d);
    wpk_file *f;
    wp_err e = {0};
    REQUIRE(wpk_open(&f, w, &e) == 0);
    const wpk_tensor *t = wpk_tensor_at(f, wpk_count(f) / 2);
    REQUIRE(t && t->size > 0);
    uint64_t at = t->offset + t->size / 2;
    char want[1100];
    snprintf(want, sizeof want, "%s: sha256 mismatch in bytes [%llu, %llu)", t->name, (unsigned long long)t->offset,
             (unsigned long long)(t->offset + t->size));
    wpk_close(f);
    uint8_t *x;
    size_t n;
    REQUIRE(wpt_read_file(w, &x, &n) == 0);
    x[at] ^= 0x40;
    REQUIRE(wpt_write_file(w, x, n) == 0);
    free(x);
    CHECK_EQ_INT(merge_fails(out, sizeof out, d, "p0 t1"), 1);
    CHECK_CONTAINS(out, "t1: part does not verify: ");
    CHECK_CONTAINS(out, want);

    /* and the good pair merges */
    CHECK_EQ_INT(wpt_run(out, sizeof out, "cd %s && %s merge p1 p0 -o out", d, W()), 0);
    /* an existing output is refused unless -f */
    CHECK_EQ_INT(wpt_run(out, sizeof out, "cd %s && %s merge p1 p0 -o out 2>&1", d, W()), 2);
    CHECK_CONTAINS(out, "already exists");
    CHECK_EQ_INT(wpt_run(out, sizeof out, "cd %s && %s merge p1 p0 -o out -f 2>&1", d, W()), 0);
}

/* Parts on another filesystem than the build (WPACK_FAULT=nolink makes every
 * link fail with EXDEV, as across filesystems): the containers are copied,
 * and each copy is checked shard by shard as it is made, so a part changed
 * after the check (here: --no-check and a flipped byte) is refused by name
 * and nothing is written. */
TEST(convert_rank_merge_copies_across_filesystems)
{
    static char out[8192];
    const char *d = wpt_tmpdir();
    REQUIRE(make_parts(d) == 0);
    CHECK_EQ_INT(wpt_run(out, sizeof out, "cd %s && WPACK_FAULT=nolink %s merge p1 p0 -o out --json", d, W()), 0);
    cJSON *j = cJSON_Parse(out);
    REQUIRE(j);
    CHECK_EQ_INT((int)cJSON_GetNumberValue(cJSON_GetObjectItem(j, "copied")), 2);
    CHECK_EQ_INT((int)cJSON_GetNumberValue(cJSON_GetObjectItem(j, "linked")), 0);
    cJSON_Delete(j);
    CHECK_EQ_INT(wpt_run(out, sizeof out, "cd %s && %s merge p1 p0 -o linked", d, W()), 0);
    CHECKF(wpt_run(out, sizeof out, "diff -r %s/out %s/linked 2>&1", d, d) == 0, "copied != linked: %s", out);
    struct stat a, b;
    REQUIRE(stat(wpt_path("%s/p0/model-rank00000-of-00002.wpk", d), &a) == 0);
    REQUIRE(stat(wpt_path("%s/out/model-rank00000-of-00002.wpk", d), &b) == 0);
    CHECK(a.st_ino != b.st_ino);   /* a copy, not a link */
    CHECK(wpt_run(out, sizeof out, "%s verify %s/out --allow-unsigned --deep", W(), d) == 0);

    /* changed after the check: the copy's own shard check names it */
    REQUIRE(wpt_run(out, sizeof out, "cp -r %s/p1 %s/t1", d, d) == 0);
    const char *w = wpt_path("%s/t1/model-rank00001-of-00002.wpk", d);
    uint8_t *x;
    size_t n;
    REQUIRE(wpt_read_file(w, &x, &n) == 0);
    x[n - 1] ^= 0x01;
    REQUIRE(wpt_write_file(w, x, n) == 0);
    free(x);
    int rc = wpt_run(out, sizeof out, "cd %s && WPACK_FAULT=nolink %s merge --no-check p0 t1 -o out2 2>&1", d, W());
    CHECK_EQ_INT(rc, 1);
    CHECK_CONTAINS(out, "t1/model-rank00001-of-00002.wpk: shard 0 does not match its manifest");
    CHECK(access(wpt_path("%s/out2", d), F_OK) != 0);
    CHECKF(!strcmp(wpt_hidden_names(d), ""), "left %s", wpt_hidden_names(d));
    /* a part shorter or longer than its manifest: refused by name either way */
    REQUIRE(truncate(w, (off_t)(n - 10)) == 0);
    rc = wpt_run(out, sizeof out, "cd %s && WPACK_FAULT=nolink %s merge --no-check p0 t1 -o out2 2>&1", d, W());
    CHECK_EQ_INT(rc, 1);
    CHECK_CONTAINS(out, "t1/model-rank00001-of-00002.wpk: ");
    CHECK(access(wpt_path("%s/out2", d), F_OK) != 0);
    REQUIRE(truncate(w, (off_t)(n + 10)) == 0);
    rc = wpt_run(out, sizeof out, "cd %s && WPACK_FAULT=nolink %s merge --no-check p0 t1 -o out2 2>&1", d, W());
    CHECK_EQ_INT(rc, 1);
    CHECK_CONTAINS(out, "t1/model-rank00001-of-00002.wpk: ");
    CHECK(access(wpt_path("%s/out2", d), F_OK) != 0);
}

/* --rank > the scheduler's variable; both variables set and different are
 * refused; a plan of one rank ignores them; a rank past the plan is refused. */
TEST(convert_rank_from_environment)
{
    static char out[8192];
    const char *d = wpt_tmpdir();
    CHECK_EQ_INT(wpt_run(out, sizeof out, "SLURM_ARRAY_TASK_ID=1 JOB_COMPLETION_INDEX=0 %s convert %s -o %s/a --ep 2 2>&1",
                         W(), HF, d), 2);
    CHECK_CONTAINS(out, "SLURM_ARRAY_TASK_ID=1 and JOB_COMPLETION_INDEX=0 disagree");
    CHECK_EQ_INT(wpt_run(out, sizeof out, "SLURM_ARRAY_TASK_ID=1 JOB_COMPLETION_INDEX=1 %s convert %s -o %s/b --ep 2 --json 2>/dev/null",
                         W(), HF, d), 0);
    CHECK_EQ_INT(cvt_json_num(out, "rank"), 1);
    CHECK_EQ_INT(wpt_run(out, sizeof out, "SLURM_ARRAY_TASK_ID=1 %s convert %s -o %s/c --ep 2 --rank 0 --json 2>/dev/null", W(),
                         HF, d), 0);
    CHECK_EQ_INT(cvt_json_num(out, "rank"), 0);
    CHECK_EQ_INT(wpt_run(out, sizeof out, "SLURM_ARRAY_TASK_ID=1 %s convert %s -o %s/e --ep 2 --rank all --json 2>/dev/null",
                         W(), HF, d), 0);
    CHECK_EQ_INT(cvt_json_num(out, "rank"), -1);
    CHECK(access(wpt_path("%s/e/model-rank00000-of-00002.wpk", d), F_OK) == 0);
    CHECK(access(wpt_path("%s/e/part.json", d), F_OK) != 0);
    CHECK_EQ_INT(wpt_run(out, sizeof out, "JOB_COMPLETION_INDEX=3 %s convert %s -o %s/f --json 2>/dev/null", W(), HF, d), 0);
    CHECK(access(wpt_path("%s/f/model.wpk", d), F_OK) == 0);
    CHECK(access(wpt_path("%s/f/part.json", d), F_OK) != 0);
    CHECK_EQ_INT(wpt_run(out, sizeof out, "JOB_COMPLETION_INDEX=2 %s convert %s -o %s/g --ep 2 2>&1", W(), HF, d), 2);
    CHECK_CONTAINS(out, "rank 2 from JOB_COMPLETION_INDEX: the plan has 2 rank(s)");
    CHECK_EQ_INT(wpt_run(out, sizeof out, "%s convert %s -o %s/h --ep 2 --rank x1 2>&1", W(), HF, d), 2);
    CHECK_CONTAINS(out, "'x1' is not a rank");
    CHECK(access(wpt_path("%s/g", d), F_OK) != 0 && access(wpt_path("%s/h", d), F_OK) != 0);
}

/* A build whose manifest is version 1 (whole-file SHA-256 per file, as wpack
 * wrote before shard digests) still verifies, --deep included, and signs
 * with a DSSE bundle in the "files" serialisation; a wrong whole-file digest
 * is still caught. */
TEST(convert_rank_v1_manifest_still_verifies)
{
    static char out[8192];
    const char *d = wpt_tmpdir();
    REQUIRE(wpt_run(out, sizeof out, "%s convert %s -o %s/b --ep 2 -q", W(), HF, d) == 0);
    const char *mp = wpt_path("%s/b/manifest.json", d);
    wp_manifest m;
    wp_err e = {0};
    REQUIRE(trust_manifest_load(wpt_path("%s/b", d), &m) == 0);
    CHECK_EQ_INT(m.version, 2);
    REQUIRE(trust_manifest_to_v1(wpt_path("%s/b", d), &m) == 0);
    REQUIRE(wpt_run(out, sizeof out, "grep -c '\"version\":1}' %s", mp) == 0);
    CHECK_EQ_INT(wpt_run(out, sizeof out, "%s verify %s/b --allow-unsigned --deep 2>&1", W(), d), 0);
    REQUIRE(wpt_run(out, sizeof out, "%s keygen --ecdsa -o %s/k -q && chmod 600 %s/k.pem", W(), d, d) == 0);
    CHECK_EQ_INT(wpt_run(out, sizeof out, "%s sign %s/b --key %s/k.pem --dsse 2>&1", W(), d, d), 0);
    CHECK_EQ_INT(wpt_run(out, sizeof out, "%s verify %s/b --key %s/k.pub.pem --deep 2>&1", W(), d, d), 0);
    CHECK_CONTAINS(out, "DSSE bundle verified");
    /* a wrong whole-file digest: --deep names the file */
    REQUIRE(wpt_run(out, sizeof out, "rm %s/b/manifest.sig %s/b/manifest.dsse.json", d, d) == 0);
    m.files[1].sha256[0] ^= 1;
    REQUIRE(wp_manifest_finish(&m, &e) == 0);
    REQUIRE(wp_manifest_write(wpt_path("%s/b", d), &m, &e) == 0);
    CHECK_EQ_INT(wpt_run(out, sizeof out, "%s verify %s/b --allow-unsigned 2>&1", W(), d), 0);
    CHECK_EQ_INT(wpt_run(out, sizeof out, "%s verify %s/b --allow-unsigned --deep 2>&1", W(), d), 1);
    CHECK_CONTAINS(out, "model-rank00001-of-00002.wpk: sha256 of the whole file");
    wp_manifest_free(&m);
}

/* --deep on a version-2 build checks every shard: a shard digest edited in
 * the manifest (root recomputed) is named with its byte range. */
TEST(convert_rank_deep_checks_shards)
{
    static char out[8192];
    const char *d = wpt_tmpdir();
    REQUIRE(wpt_run(out, sizeof out, "%s convert %s -o %s/b -q", W(), HF, d) == 0);
    wp_manifest m;
    wp_err e = {0};
    REQUIRE(trust_manifest_load(wpt_path("%s/b", d), &m) == 0);
    REQUIRE(m.nfiles == 1 && m.files[0].nshards == 1);
    m.files[0].shards[0][3] ^= 1;
    REQUIRE(wp_manifest_finish(&m, &e) == 0);
    REQUIRE(wp_manifest_write(wpt_path("%s/b", d), &m, &e) == 0);
    CHECK_EQ_INT(wpt_run(out, sizeof out, "%s verify %s/b --allow-unsigned 2>&1", W(), d), 0);
    CHECK_EQ_INT(wpt_run(out, sizeof out, "%s verify %s/b --allow-unsigned --deep 2>&1", W(), d), 1);
    char want[128];
    snprintf(want, sizeof want, "model.wpk: sha256 of shard 0 (bytes [0, %llu))", (unsigned long long)m.files[0].size);
    CHECK_CONTAINS(out, want);
    wp_manifest_free(&m);
}
