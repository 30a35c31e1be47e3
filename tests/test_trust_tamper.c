/* test_tamper.c — a signed build (tiny-a as two .wpk parts, manifest,
 * manifest.sig, manifest.dsse.json) attacked on purpose: single flipped bits
 * at 220 sampled offsets across every region of every file, truncation,
 * swapped tensors, edited-and-re-serialised manifests.  verify must fail
 * every time and name where. */
#include <unistd.h>

#include "trust/manifest.h"
#include "format/wpk.h"
#include "tests/harness.h"
#include "tests/trust_fixture.h"
#include "trust/trust.h"

static char g_build[2048], g_pub[2048], g_priv[2048];

static int signed_build(void)
{
    snprintf(g_build, sizeof g_build, "%s/b", wpt_tmpdir());
    snprintf(g_pub, sizeof g_pub, "%s/k.pub.pem", wpt_tmpdir());
    snprintf(g_priv, sizeof g_priv, "%s/k.pem", wpt_tmpdir());
    if (trust_make_build(g_build, NULL)) return -1;
    wp_err e = {0};
    wp_key *k = NULL;
    char kid[65];
    int rc = wp_key_generate(WP_KEY_ED25519, &k, &e);
    if (!rc) rc = wp_key_write_pair(k, wpt_path("%s/k", wpt_tmpdir()), 0, &e);
    wp_key_free(k);
    wp_sign_opts so = {.key_path = g_priv, .dsse = 1, .threads = 2};
    if (!rc) rc = wp_sign_build(g_build, &so, kid, &e);
    if (rc) printf("    signed_build: %s\n", e.msg);
    return rc;
}

static int verify(const char *key, int allow, wp_err *e)
{
    wp_verify_opts o = {.key_path = key, .allow_unsigned = allow, .threads = 2};
    wp_verify_report r;
    wp_err_clear(e);
    int rc = wp_verify_build(g_build, &o, &r, e);
    wp_verify_report_free(&r);
    return rc;
}

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;
static uint64_t rnd(uint64_t n)
{
    /* xorshift64*: a fixed seed makes every run flip the same bits */
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return (rng_state * 0x2545F4914F6CDD1Dull >> 11) % n;
}

typedef struct target {
    char path[2100];
    const char *what;        /* region, for the failure message */
    uint64_t off;
    char expect[4800];       /* substring verify's message must contain */
} target;

/* Flip one bit at t->off, verify with the key, restore. */
static int attack(const target *t)
{
    uint8_t mask = (uint8_t)(1u << rnd(8));
    if (trust_flip(t->path, t->off, mask)) {
        printf("    cannot flip %s @%llu\n", t->path, (unsigned long long)t->off);
        return 0;
    }
    wp_err e = {0};
    int rc = verify(g_pub, 0, &e);
    trust_flip(t->path, t->off, mask);
    int ok = rc == WP_EVERIFY && strstr(e.msg, t->expect);
    if (!ok)
        printf("    %s byte %llu of %s (mask %02x): rc %d, message \"%s\", expected \"%s\"\n", t->what,
               (unsigned long long)t->off, t->path, mask, rc, e.msg, t->expect);
    return ok;
}

TEST(trust_tamper_flip_bytes)
{
    REQUIRE(signed_build() == 0);
    wp_err e = {0};
    REQUIRE(verify(g_pub, 0, &e) == 0);
    int tried = 0, caught = 0;
    target t;
    const char *parts[2] = {TRUST_PART0, TRUST_PART1};
    for (int p = 0; p < 2; p++) {
        snprintf(t.path, sizeof t.path, "%s/%s", g_build, parts[p]);
        wpk_file *f = NULL;
        REQUIRE(wpk_open(&f, t.path, &e) == 0);
        uint64_t data0 = wpk_data_offset(f);
        size_t n = wpk_count(f);
        /* header: the cheap structural check (header digest) names the file */
        t.what = "header";
        snprintf(t.expect, sizeof t.expect, "%s: ", t.path);
        for (int i = 0; i < 20; i++, tried++) {
            t.off = rnd(256);
            caught += attack(&t);
        }
        /* directory, source table, strings, their padding: same check */
        t.what = "directory";
        for (int i = 0; i < 25; i++, tried++) {
            t.off = 256 + rnd(data0 - 256);
            caught += attack(&t);
        }
        /* tensor data: the tensor and its byte range are named */
        t.what = "data";
        for (int i = 0; i < 35; i++, tried++) {
            const wpk_tensor *x;
            do x = wpk_tensor_at(f, rnd(n));
            while (!x->size);
            t.off = x->offset + rnd(x->size);
            snprintf(t.expect, sizeof t.expect, "%s: %s: sha256 mismatch in bytes [%llu, %llu)", t.path, x->name,
                     (unsigned long long)x->offset, (unsigned long long)(x->offset + x->size));
            caught += attack(&t);
        }
        /* padding between tensors: named by offset */
        t.what = "padding";
        for (int i = 0; i < 8; i++, tried++) {
            const wpk_tensor *x, *y;
            size_t k;
            do {
                k = rnd(n - 1);
                x = wpk_tensor_at(f, k);
                y = wpk_tensor_at(f, k + 1);
            } while (x->offset + x->size == y->offset);
            t.off = x->offset + x->size + rnd(y->offset - x->offset - x->size);
            snprintf(t.expect, sizeof t.expect, "%s: non-zero padding at byte %llu (after %s)", t.path,
                     (unsigned long long)t.off, x->name);
            caught += attack(&t);
        }
        wpk_close(f);
    }
    /* the manifest, the signature and the DSSE bundle: every byte counts */
    static const struct { const char *name; int count; } docs[] = {
        {"manifest.json", 20}, {"manifest.sig", 12}, {"manifest.dsse.json", 12}};
    for (int d = 0; d < 3; d++) {
        snprintf(t.path, sizeof t.path, "%s/%s", g_build, docs[d].name);
        t.what = docs[d].name;
        snprintf(t.expect, sizeof t.expect, "%s", docs[d].name);
        uint64_t size = trust_file_size(t.path);
        REQUIRE(size > 0);
        for (int i = 0; i < docs[d].count; i++, tried++) {
            t.off = rnd(size);
            caught += attack(&t);
        }
    }
    CHECK_EQ_INT(tried, 220);
    CHECK_EQ_INT(caught, tried);
    /* everything restored: the build verifies again */
    CHECK_EQ_INT(verify(g_pub, 0, &e), 0);
}

TEST(trust_tamper_cli_exit_codes)
{
    REQUIRE(signed_build() == 0);
    char out[16384];
    const char *part = wpt_path("%s/" TRUST_PART1, g_build);
    uint64_t size = trust_file_size(part);
    REQUIRE(trust_flip(part, size - 1, 0x01) == 0);   /* last data byte */
    CHECK_EQ_INT(wpt_run(out, sizeof out, "%s verify %s --key %s", wpt_wpack(), g_build, g_pub), 1);
    CHECK_CONTAINS(out, "sha256 mismatch in bytes [");
    CHECK_EQ_INT(wpt_run(out, sizeof out, "%s verify %s --key %s --json 2>/dev/null", wpt_wpack(), g_build, g_pub), 1);
    cJSON *j = cJSON_Parse(out);
    REQUIRE(j);
    CHECK(cJSON_IsFalse(cJSON_GetObjectItem(j, "ok")));
    CHECK_EQ_INT(cJSON_GetObjectItem(j, "failures_total")->valueint, 1);
    cJSON_Delete(j);
    /* signing refuses a build whose bytes no longer match its manifest */
    CHECK_EQ_INT(wpt_run(out, sizeof out, "%s sign %s --key %s", wpt_wpack(), g_build, g_priv), 1);
    CHECK_CONTAINS(out, "sha256 mismatch");
}

TEST(trust_tamper_truncated)
{
    REQUIRE(signed_build() == 0);
    wp_err e = {0};
    char part[4096];
    snprintf(part, sizeof part, "%s/" TRUST_PART0, g_build);
    uint64_t size = trust_file_size(part);
    REQUIRE(truncate(part, (off_t)size - 1) == 0);
    CHECK_EQ_INT(verify(g_pub, 0, &e), WP_EVERIFY);
    CHECK_CONTAINS(e.msg, TRUST_PART0 ": size ");
    CHECK_CONTAINS(e.msg, "(truncated)");
    REQUIRE(truncate(part, 100) == 0);
    CHECK_EQ_INT(verify(g_pub, 0, &e), WP_EVERIFY);
    CHECK_CONTAINS(e.msg, "(truncated)");
    /* a lone truncated container: its own header catches it */
    wp_verify_opts o = {.allow_unsigned = 1};
    wp_verify_report r;
    wp_err_clear(&e);
    CHECK_EQ_INT(wp_verify_build(part, &o, &r, &e), WP_EVERIFY);
    CHECK_CONTAINS(e.msg, part);
    wp_verify_report_free(&r);
    /* the manifest cut short */
    char m[4096];
    snprintf(m, sizeof m, "%s/manifest.json", g_build);
    REQUIRE(truncate(m, (off_t)trust_file_size(m) / 2) == 0);
    CHECK_EQ_INT(verify(g_pub, 0, &e), WP_EVERIFY);
    CHECK_CONTAINS(e.msg, "manifest.json: not valid JSON");
}

/* Two tensors of one part with the same size (so a swap keeps the layout). */
static int same_size_pair(wpk_file *f, const wpk_tensor **a, const wpk_tensor **b)
{
    size_t n = wpk_count(f);
    for (size_t i = 0; i < n; i++)
        for (size_t k = i + 1; k < n; k++) {
            const wpk_tensor *x = wpk_tensor_at(f, i), *y = wpk_tensor_at(f, k);
            if (x->size == y->size && x->size >= 64 && memcmp(x->sha256, y->sha256, 32)) {
                *a = x;
                *b = y;
                return 0;
            }
        }
    return -1;
}

TEST(trust_tamper_swapped_tensors)
{
    REQUIRE(signed_build() == 0);
    wp_err e = {0};
    char part[2100];
    snprintf(part, sizeof part, "%s/" TRUST_PART1, g_build);
    wpk_file *f = NULL;
    REQUIRE(wpk_open(&f, part, &e) == 0);
    const wpk_tensor *a, *b;
    REQUIRE(same_size_pair(f, &a, &b) == 0);
    char an[256], bn[256];
    snprintf(an, sizeof an, "%s: sha256 mismatch", a->name);
    snprintf(bn, sizeof bn, "%s: sha256 mismatch", b->name);
    /* swap the data of the two tensors in place */
    uint64_t ao = a->offset, bo = b->offset, sz = a->size;
    uint8_t *x = malloc(sz), *y = malloc(sz);
    FILE *fp = fopen(part, "r+b");
    REQUIRE(fp && x && y);
    fseek(fp, (long)ao, SEEK_SET);
    CHECK(fread(x, 1, sz, fp) == sz);
    fseek(fp, (long)bo, SEEK_SET);
    CHECK(fread(y, 1, sz, fp) == sz);
    fseek(fp, (long)ao, SEEK_SET);
    fwrite(y, 1, sz, fp);
    fseek(fp, (long)bo, SEEK_SET);
    fwrite(x, 1, sz, fp);
    fclose(fp);
    wpk_close(f);
    wp_verify_opts o = {.key_path = g_pub, .threads = 2};
    wp_verify_report r;
    wp_err_clear(&e);
    CHECK_EQ_INT(wp_verify_build(g_build, &o, &r, &e), WP_EVERIFY);
    CHECK_EQ_INT(r.nfail_total, 2);   /* both, each by name */
    int sa = 0, sb = 0;
    for (size_t i = 0; i < r.nfail; i++) {
        sa |= strstr(r.fail[i], an) != NULL;
        sb |= strstr(r.fail[i], bn) != NULL;
    }
    CHECK(sa && sb);
    wp_verify_report_free(&r);
    free(x);
    free(y);
}

static char *read_manifest(size_t *n)
{
    char *raw = NULL;
    wp_err e = {0};
    wp_read_small_file(wpt_path("%s/manifest.json", g_build), 1 << 26, &raw, n, &e);
    return raw;
}

/* Parse the manifest, let `edit` change it, recompute the root digest and
 * write it back canonically: what an attacker without the key can do. */
static int reserialise(void (*edit)(wp_manifest *))
{
    size_t n = 0;
    char *raw = read_manifest(&n);
    wp_manifest m;
    wp_err e = {0};
    if (!raw || wp_manifest_parse(raw, n, "m", &m, &e)) return -1;
    free(raw);
    edit(&m);
    wp_manifest_root(&m, m.root);
    int rc = wp_manifest_write(g_build, &m, &e);
    wp_manifest_free(&m);
    return rc;
}

static void swap_digests(wp_manifest *m)
{
    /* two tensors of equal size trade their digests */
    for (uint64_t i = 0; i < m->ntensors; i++)
        for (uint64_t k = i + 1; k < m->ntensors; k++)
            if (m->tensors[i].size == m->tensors[k].size &&
                memcmp(m->tensors[i].sha256, m->tensors[k].sha256, 32)) {
                uint8_t t[32];
                memcpy(t, m->tensors[i].sha256, 32);
                memcpy(m->tensors[i].sha256, m->tensors[k].sha256, 32);
                memcpy(m->tensors[k].sha256, t, 32);
                return;
            }
}

static void shrink_file(wp_manifest *m) { m->files[1].size -= 1; m->tensors[m->ntensors - 1].size -= 1; }

TEST(trust_tamper_manifest_reserialised)
{
    REQUIRE(signed_build() == 0);
    wp_err e = {0};
    size_t n = 0;
    char *orig = read_manifest(&n);
    REQUIRE(orig);
    /* 1. same content, pretty-printed: no longer the signed bytes */
    cJSON *j = cJSON_Parse(orig);
    char *pretty = cJSON_Print(j);
    REQUIRE(wpt_write_file(wpt_path("%s/manifest.json", g_build), pretty, strlen(pretty)) == 0);
    CHECK_EQ_INT(verify(g_pub, 0, &e), WP_EVERIFY);
    CHECK_CONTAINS(e.msg, "manifest.json: not in canonical form");
    free(pretty);
    cJSON_Delete(j);
    /* 2. digests swapped between two tensors, root recomputed: the signature
     * catches it.  Even without a key, the old manifest.sig still names the
     * manifest it was made for; and with the signature removed too,
     * integrity-only mode catches it against the containers' directories. */
    char sig[4096], saved[4096], out[1024];
    snprintf(sig, sizeof sig, "%s/manifest.sig", g_build);
    snprintf(saved, sizeof saved, "%s/sig.saved", wpt_tmpdir());
    REQUIRE(wpt_run(out, sizeof out, "cp %s %s", sig, saved) == 0);
    REQUIRE(wpt_write_file(wpt_path("%s/manifest.json", g_build), orig, n) == 0);
    REQUIRE(reserialise(swap_digests) == 0);
    CHECK_EQ_INT(verify(g_pub, 0, &e), WP_EVERIFY);
    CHECK_CONTAINS(e.msg, "manifest.sig: signs a different manifest");
    CHECK_EQ_INT(verify(NULL, 1, &e), WP_EVERIFY);
    CHECK_CONTAINS(e.msg, "manifest.sig: signs a different manifest");
    REQUIRE(unlink(sig) == 0);
    CHECK_EQ_INT(verify(NULL, 1, &e), WP_EVERIFY);
    CHECK_CONTAINS(e.msg, "differs from the container's directory");
    /* 3. a size edited consistently in the manifest: signature, then size check */
    REQUIRE(wpt_run(out, sizeof out, "cp %s %s", saved, sig) == 0);
    REQUIRE(wpt_write_file(wpt_path("%s/manifest.json", g_build), orig, n) == 0);
    CHECK_EQ_INT(verify(g_pub, 0, &e), 0);
    REQUIRE(reserialise(shrink_file) == 0);
    CHECK_EQ_INT(verify(g_pub, 0, &e), WP_EVERIFY);
    CHECK_CONTAINS(e.msg, "manifest.sig: signs a different manifest");
    REQUIRE(unlink(sig) == 0);
    CHECK_EQ_INT(verify(NULL, 1, &e), WP_EVERIFY);
    CHECK_CONTAINS(e.msg, TRUST_PART1 ": size ");
    CHECK_CONTAINS(e.msg, "the manifest says");
    /* 4. a whole consistent forgery: another build (one tensor changed) with its
     * own containers and manifest under the old signature.  Only the key can
     * tell; integrity-only mode accepts it once the stale signature is gone,
     * by design (docs/signing.md §5). */
    REQUIRE(wpt_run(out, sizeof out, "cp %s %s", saved, sig) == 0);
    char other[4096];
    snprintf(other, sizeof other, "%s/forged", wpt_tmpdir());
    REQUIRE(trust_make_build(other, "embed.weight") == 0);
    REQUIRE(wpt_run(out, sizeof out, "cp %s/*.wpk %s/manifest.json %s/", other, other, g_build) == 0);
    CHECK_EQ_INT(verify(g_pub, 0, &e), WP_EVERIFY);
    CHECK_CONTAINS(e.msg, "manifest.sig: signs a different manifest");
    REQUIRE(unlink(sig) == 0);
    CHECK_EQ_INT(verify(NULL, 1, &e), 0);
    /* dropping the signature does not help the forger against a key */
    CHECK_EQ_INT(verify(g_pub, 0, &e), WP_EVERIFY);
    CHECK_CONTAINS(e.msg, "not signed");
    free(orig);
}
