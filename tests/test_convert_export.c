/*
 * test_convert_export.c — wpack export (convert/export.h, docs/export.md),
 * proved by round trips on tiny-a: the export of a reference build is the
 * official checkpoint tensor for tensor, wpack's strict reader and inventory
 * accept every export, converting an export with a build's profile gives
 * back that build's tensors bit for bit, parity reads the same numbers,
 * exports are byte-identical whatever the threads, and a build no HF layout
 * carries, a corrupt build or an existing output are refused with one line
 * and nothing at -o.
 */
#include <cjson/cJSON.h>
#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/wp.h"
#include "format/wpk.h"
#include "hf/safetensors.h"
#include "model/model.h"
#include "quant/quant.h"
#include "tests/harness.h"

#define TINY WPT_TINY "/hf"
#define GOLDEN WPT_TINY "/golden-fp32.safetensors"

static char out[65536];

/* wpt_path's buffers rotate; the paths a test keeps are copied (the test's
 * process ends soon after). */
static const char *keep(const char *s) { return strdup(s); }
#define PATH(...) keep(wpt_path(__VA_ARGS__))

static int exists(const char *p)
{
    struct stat st;
    return lstat(p, &st) == 0;
}

static int count_lines(const char *s)
{
    int n = 0;
    for (; *s; s++) n += *s == '\n';
    return n;
}

/* Entries of DIR whose name contains ".tmp." (temporaries left behind). */
static int temps_in(const char *dir)
{
    DIR *d = opendir(dir);
    int n = 0;
    if (!d) return 0;
    for (struct dirent *x; (x = readdir(d));) n += strstr(x->d_name, ".tmp.") != NULL;
    closedir(d);
    return n;
}

/* tiny-a converted with PROFILE (and EXTRA options) into TMP/NAME. */
static const char *build(const char *profile, const char *extra, const char *name)
{
    const char *b = PATH("%s/%s", wpt_tmpdir(), name);
    int rc = wpt_run(out, sizeof out, "%s convert %s -o %s --profile %s %s -q 2>&1", wpt_wpack(), TINY, b, profile,
                     extra ? extra : "");
    CHECKF(rc == 0, "convert %s %s: exit %d: %s", profile, extra ? extra : "", rc, out);
    return rc == 0 ? b : NULL;
}

static int export_(const char *b, const char *dst, const char *extra)
{
    return wpt_run(out, sizeof out, "%s export %s -o %s %s 2>&1", wpt_wpack(), b, dst, extra ? extra : "");
}

static cJSON *read_json(const char *path)
{
    uint8_t *d = NULL;
    size_t n = 0;
    if (wpt_read_file(path, &d, &n)) return NULL;
    cJSON *j = cJSON_ParseWithLength((const char *)d, n);
    free(d);
    return j;
}

/* Every tensor of checkpoint A is in B with the same dtype, shape and bytes,
 * and B has no other: the number of differences (each reported). */
static int diff_tensors(const char *a, const char *b, size_t *n_tensors)
{
    wp_err e = {0};
    wp_ckpt *x = NULL, *y = NULL;
    if (wp_ckpt_open(&x, a, &e) || wp_ckpt_open(&y, b, &e)) {
        wpt_fail_at(__FILE__, __LINE__, "open: %s", e.msg);
        wp_ckpt_close(x);
        return -1;
    }
    int diffs = 0;
    if (wp_ckpt_count(x) != wp_ckpt_count(y)) {
        wpt_fail_at(__FILE__, __LINE__, "%s has %zu tensors, %s %zu", a, wp_ckpt_count(x), b, wp_ckpt_count(y));
        diffs++;
    }
    for (size_t i = 0; i < wp_ckpt_count(x); i++) {
        const wp_tensor_info *t = wp_ckpt_tensor(x, i), *u = wp_ckpt_find(y, t->name);
        if (!u) {
            if (diffs++ < 5) wpt_fail_at(__FILE__, __LINE__, "%s: missing from %s", t->name, b);
            continue;
        }
        int same = t->dtype == u->dtype && t->ndim == u->ndim && t->nbytes == u->nbytes;
        for (int d = 0; same && d < t->ndim; d++) same = t->shape[d] == u->shape[d];
        if (same && t->nbytes) {
            const void *p = wp_ckpt_data(x, t, &e), *q = wp_ckpt_data(y, u, &e);
            same = p && q && !memcmp(p, q, t->nbytes);
        }
        if (!same && diffs++ < 5)
            wpt_fail_at(__FILE__, __LINE__, "%s: %s %s differs from %s %s", t->name, a, wp_dtype_name(t->dtype), b,
                        wp_dtype_name(u->dtype));
    }
    if (n_tensors) *n_tensors = wp_ckpt_count(y);
    wp_ckpt_close(x);
    wp_ckpt_close(y);
    return diffs;
}

/* Two builds' manifests list the same tensors with the same SHA-256. */
static int same_digests(const char *a, const char *b)
{
    cJSON *x = read_json(wpt_path("%s/manifest.json", a)), *y = read_json(wpt_path("%s/manifest.json", b));
    int ok = x && y;
    cJSON *tx = ok ? cJSON_GetObjectItem(x, "tensors") : NULL, *ty = ok ? cJSON_GetObjectItem(y, "tensors") : NULL;
    ok = ok && cJSON_GetArraySize(tx) == cJSON_GetArraySize(ty) && cJSON_GetArraySize(tx) > 0;
    for (cJSON *t = tx ? tx->child : NULL; ok && t; t = t->next) {
        const char *name = cJSON_GetObjectItem(t, "name")->valuestring;
        const char *sha = cJSON_GetObjectItem(t, "sha256")->valuestring;
        cJSON *u = NULL;
        for (u = ty->child; u && strcmp(cJSON_GetObjectItem(u, "name")->valuestring, name); u = u->next) {}
        if (!u || strcmp(cJSON_GetObjectItem(u, "sha256")->valuestring, sha)) {
            wpt_fail_at(__FILE__, __LINE__, "%s: %s in %s, %s in %s", name, sha, a,
                        u ? cJSON_GetObjectItem(u, "sha256")->valuestring : "missing", b);
            ok = 0;
        }
    }
    cJSON_Delete(x);
    cJSON_Delete(y);
    return ok;
}

/* `wpack parity PATH --golden` as JSON: its "golden" object (the numbers). */
static cJSON *parity(const char *path)
{
    static char doc[1 << 17];
    int rc = wpt_run(doc, sizeof doc, "%s parity %s --golden %s --json 2>/dev/null", wpt_wpack(), path, GOLDEN);
    CHECKF(rc == 0, "parity %s: exit %d", path, rc);
    cJSON *j = cJSON_Parse(doc);
    if (!j) return NULL;
    cJSON *g = cJSON_DetachItemFromObject(j, "golden");
    cJSON_DeleteItemFromObject(g, "seconds");
    CHECKF(cJSON_IsTrue(cJSON_GetObjectItem(j, "pass")), "parity %s did not pass", path);
    cJSON_Delete(j);
    return g;
}

static void check_same_parity(const char *a, const char *b)
{
    cJSON *x = parity(a), *y = parity(b);
    CHECKF(x && y && cJSON_Compare(x, y, 1), "parity of %s and of %s differ", a, b);
    cJSON_Delete(x);
    cJSON_Delete(y);
}

static void check_inspect_ok(const char *dir, size_t n)
{
    int rc = wpt_run(out, sizeof out, "%s inspect %s 2>&1", wpt_wpack(), dir);
    CHECKF(rc == 0, "inspect %s: exit %d: %s", dir, rc, out);
    char want[96];
    snprintf(want, sizeof want, "inventory: ok (%zu expected, %zu found)", n, n);
    CHECK_CONTAINS(out, want);
}

static const wp_tensor_info *tensor(wp_ckpt *k, const char *name, wp_dtype dt, uint64_t r, uint64_t c)
{
    const wp_tensor_info *t = wp_ckpt_find(k, name);
    CHECKF(t && t->dtype == dt && t->ndim == 2 && t->shape[0] == r && t->shape[1] == c, "%s: %s [%llu, %llu]?",
           name, t ? wp_dtype_name(t->dtype) : "missing", t ? (unsigned long long)t->shape[0] : 0ull,
           t ? (unsigned long long)t->shape[1] : 0ull);
    return t;
}

/* ---- the official layout ------------------------------------------------------------ */

/* The export of a reference build is tiny-a's checkpoint: every tensor, name,
 * dtype, shape and byte; shards as transformers cuts them, the index's
 * total_size, config.json reading back to the same model. */
TEST(convert_export_reference_is_the_official_checkpoint)
{
    const char *b = build("reference", NULL, "ref");
    REQUIRE(b);
    const char *x = PATH("%s/x", wpt_tmpdir());
    int rc = export_(b, x, "--shard-size 1M -t 3 -q");
    REQUIRE(rc == 0);
    size_t n = 0;
    CHECK_EQ_INT(diff_tensors(TINY, x, &n), 0);
    CHECK_EQ_INT(n, 427);
    check_inspect_ok(x, 427);

    cJSON *ix = read_json(wpt_path("%s/model.safetensors.index.json", x)), *iy = read_json(TINY "/model.safetensors.index.json");
    REQUIRE(ix && iy);
    cJSON *tx = cJSON_GetObjectItem(cJSON_GetObjectItem(ix, "metadata"), "total_size");
    cJSON *ty = cJSON_GetObjectItem(cJSON_GetObjectItem(iy, "metadata"), "total_size");
    CHECK(cJSON_IsNumber(tx) && cJSON_IsNumber(ty) && tx->valuedouble == ty->valuedouble);
    CHECK_EQ_INT(cJSON_GetArraySize(cJSON_GetObjectItem(ix, "weight_map")), 427);
    /* 7 shards of at most 1 MiB of tensor data, named as HF names them */
    wp_err e = {0};
    for (int s = 1; s <= 7; s++) {
        wp_st_file *f = NULL;
        const char *p = PATH("%s/model-%05d-of-00007.safetensors", x, s);
        REQUIRE(wp_st_open(&f, p, &e) == 0);
        uint64_t bytes = 0;
        for (size_t i = 0; i < wp_st_count(f); i++) bytes += wp_st_tensor(f, i)->nbytes;
        CHECKF(bytes <= (1u << 20), "%s: %llu bytes of tensors", p, (unsigned long long)bytes);
        const char *k = NULL, *v = NULL;
        CHECK(wp_st_meta_count(f) == 1 && wp_st_meta(f, 0, &k, &v) == 0 && !strcmp(k, "format") && !strcmp(v, "pt"));
        wp_st_close(f);
    }
    CHECK(!exists(wpt_path("%s/model-00008-of-00007.safetensors", x)));
    /* config.json: the build's model, the official quantization */
    wp_config c1, c2;
    REQUIRE(wp_config_load(&c1, PATH("%s/config.json", x), &e) == 0);
    REQUIRE(wp_config_load(&c2, TINY "/config.json", &e) == 0);
    CHECK(!memcmp(&c1, &c2, sizeof c1));
    cJSON *cj = read_json(wpt_path("%s/config.json", x));
    REQUIRE(cj);
    cJSON *q = cJSON_GetObjectItem(cj, "quantization_config");
    CHECK(!strcmp(cJSON_GetObjectItem(cj, "expert_dtype")->valuestring, "fp4"));
    CHECK(!strcmp(cJSON_GetObjectItem(q, "scale_fmt")->valuestring, "ue8m0"));
    CHECK(!strcmp(cJSON_GetObjectItem(q, "quant_method")->valuestring, "fp8"));
    CHECK(!strcmp(cJSON_GetObjectItem(cj, "model_type")->valuestring, "deepseek_v4"));
    CHECK(!strcmp(cJSON_GetObjectItem(cj, "topk_method")->valuestring, "noaux_tc"));
    cJSON_Delete(cj);
    cJSON_Delete(ix);
    cJSON_Delete(iy);
}

/* convert EXPORT --profile reference gives back the reference build's
 * tensors bit for bit, from plain, fused-w13, expert-parallel and lone-.wpk
 * builds alike; one shard is model.safetensors without an index. */
TEST(convert_export_round_trip_to_the_reference_build)
{
    const char *ref = build("reference", NULL, "ref");
    const char *w13 = build("reference", "--fuse-w13", "w13");
    const char *ep = build("reference", "--ep 2", "ep2");
    REQUIRE(ref && w13 && ep);
    const char *srcs[] = {ref, w13, ep, PATH("%s/model.wpk", ref)};
    for (size_t i = 0; i < 4; i++) {
        const char *x = PATH("%s/x%zu", wpt_tmpdir(), i), *rt = PATH("%s/rt%zu", wpt_tmpdir(), i);
        REQUIRE(export_(srcs[i], x, "-q") == 0);
        CHECK(exists(wpt_path("%s/model.safetensors", x)));
        CHECK(!exists(wpt_path("%s/model.safetensors.index.json", x)));
        CHECK_EQ_INT(diff_tensors(TINY, x, NULL), 0);
        int rc = wpt_run(out, sizeof out, "%s convert %s -o %s --profile reference -q 2>&1", wpt_wpack(), x, rt);
        CHECKF(rc == 0, "convert %s: %s", x, out);
        CHECKF(same_digests(ref, rt), "round trip of %s", srcs[i]);
    }
}

TEST(convert_export_parity_reference)
{
    const char *b = build("reference", NULL, "ref");
    REQUIRE(b);
    const char *x = PATH("%s/x", wpt_tmpdir());
    REQUIRE(export_(b, x, "-q --shard-size 2M") == 0);
    check_same_parity(b, x);
}

/* ---- the other profiles ---------------------------------------------------------------- */

/* hopper: FP8 experts (the spec §3.7 cast) with E8M0 128x128 scales narrowed
 * exactly from the build's F32 ones, wo_a back to its FP8 pair, config.json
 * saying expert_dtype fp8.  The values are the official ones, so parity
 * reads the reference build's numbers (the hopper build's own differ in the
 * last bits: its BF16 wo_a takes another kernel), and converting with the
 * hopper profile gives back the hopper build. */
TEST(convert_export_hopper_fp8_experts)
{
    const char *b = build("hopper", NULL, "hop"), *ref = build("reference", NULL, "ref");
    REQUIRE(b && ref);
    const char *x = PATH("%s/x", wpt_tmpdir());
    REQUIRE(export_(b, x, "-q") == 0);
    cJSON *cj = read_json(wpt_path("%s/config.json", x));
    REQUIRE(cj);
    cJSON *q = cJSON_GetObjectItem(cj, "quantization_config"), *bs = cJSON_GetObjectItem(q, "weight_block_size");
    CHECK(!strcmp(cJSON_GetObjectItem(cj, "expert_dtype")->valuestring, "fp8"));
    CHECK(!strcmp(cJSON_GetObjectItem(q, "scale_fmt")->valuestring, "ue8m0"));
    CHECK(cJSON_GetArraySize(bs) == 2 && cJSON_GetArrayItem(bs, 0)->valueint == 128 &&
          cJSON_GetArrayItem(bs, 1)->valueint == 128);
    cJSON_Delete(cj);
    wp_err e = {0};
    wp_ckpt *k = NULL;
    REQUIRE(wp_ckpt_open(&k, x, &e) == 0);
    tensor(k, "layers.3.ffn.experts.5.w2.weight", WP_F8_E4M3, 256, 128);
    tensor(k, "layers.3.ffn.experts.5.w2.scale", WP_F8_E8M0, 2, 1);
    tensor(k, "mtp.0.ffn.experts.7.w1.weight", WP_F8_E4M3, 128, 256);
    tensor(k, "layers.1.attn.wo_a.weight", WP_F8_E4M3, 128, 256);
    tensor(k, "layers.1.attn.wo_a.scale", WP_F8_E8M0, 1, 2);
    for (size_t i = 0; i < wp_ckpt_count(k); i++) CHECK(wp_ckpt_tensor(k, i)->dtype != WP_I8);
    wp_ckpt_close(k);
    check_inspect_ok(x, 427);
    check_same_parity(ref, x);
    const char *rt = PATH("%s/rt", wpt_tmpdir());
    REQUIRE(wpt_run(out, sizeof out, "%s convert %s -o %s --profile hopper -q 2>&1", wpt_wpack(), x, rt) == 0);
    CHECK(same_digests(b, rt));
}

/* blackwell: wo_a is BF16 in the build; the export writes it back as the
 * official FP8 pair, which for tiny-a is the original bytes: the whole
 * export is the official checkpoint again. */
TEST(convert_export_blackwell_is_official)
{
    const char *b = build("blackwell", NULL, "bw"), *ref = build("reference", NULL, "ref");
    REQUIRE(b && ref);
    const char *x = PATH("%s/x", wpt_tmpdir());
    REQUIRE(wpt_run(out, sizeof out, "%s export %s -o %s --json 2>/dev/null", wpt_wpack(), b, x) == 0);
    cJSON *j = cJSON_Parse(out);
    REQUIRE(j);
    CHECK(!strcmp(cJSON_GetObjectItem(j, "layout")->valuestring, "official"));
    CHECK_EQ_INT(cJSON_GetObjectItem(j, "converted")->valueint, 10);   /* 5 wo_a pairs */
    cJSON_Delete(j);
    CHECK_EQ_INT(diff_tensors(TINY, x, NULL), 0);
    check_same_parity(ref, x);
    const char *rt = PATH("%s/rt", wpt_tmpdir());
    REQUIRE(wpt_run(out, sizeof out, "%s convert %s -o %s --profile blackwell -q 2>&1", wpt_wpack(), x, rt) == 0);
    CHECK(same_digests(b, rt));
}

/* bf16: plain BF16 weights (F32 and I64 parameters as they are), no scales,
 * no quantization_config, no expert_dtype; wpack reads it as an unquantized
 * checkpoint; parity reads the bf16 build's numbers. */
TEST(convert_export_bf16_plain)
{
    const char *b = build("bf16", NULL, "bf16");
    REQUIRE(b);
    const char *x = PATH("%s/x", wpt_tmpdir());
    REQUIRE(export_(b, x, "-q") == 0);
    cJSON *cj = read_json(wpt_path("%s/config.json", x));
    REQUIRE(cj);
    CHECK(!cJSON_GetObjectItem(cj, "quantization_config") && !cJSON_GetObjectItem(cj, "expert_dtype"));
    cJSON_Delete(cj);
    wp_err e = {0};
    wp_config c;
    REQUIRE(wp_config_load(&c, PATH("%s/config.json", x), &e) == 0);
    CHECK(!wp_config_quantized(&c));
    wp_ckpt *k = NULL;
    REQUIRE(wp_ckpt_open(&k, x, &e) == 0);
    CHECK_EQ_INT(wp_ckpt_count(k), 263);   /* 427 less the 164 scales */
    for (size_t i = 0; i < wp_ckpt_count(k); i++) {
        const wp_tensor_info *t = wp_ckpt_tensor(k, i);
        CHECKF(t->dtype == WP_BF16 || t->dtype == WP_F32 || t->dtype == WP_I64, "%s: %s", t->name,
               wp_dtype_name(t->dtype));
        CHECKF(!strstr(t->name, ".scale") || strstr(t->name, "hc_"), "%s", t->name);
    }
    tensor(k, "layers.1.ffn.experts.6.w3.weight", WP_BF16, 128, 256);
    tensor(k, "layers.1.attn.wq_b.weight", WP_BF16, 512, 128);
    wp_ckpt_close(k);
    check_inspect_ok(x, 263);
    check_same_parity(b, x);
    const char *rt = PATH("%s/rt", wpt_tmpdir());
    REQUIRE(wpt_run(out, sizeof out, "%s convert %s -o %s --profile bf16 -q 2>&1", wpt_wpack(), x, rt) == 0);
    CHECK(same_digests(b, rt));
}

/* Scales that are not all powers of two: the whole export keeps F32 scales
 * (E8M0 ones widened exactly), scale_fmt null, the build's block. */
TEST(convert_export_f32_scales)
{
    const char *prof = PATH("%s/mixed.json", wpt_tmpdir());
    const char *text = "{\"name\": \"mixed\", \"rules\": ["
                       "{\"match\": \".\", \"from\": [\"fp8\"], \"to\": \"fp8\", \"block\": [64, 64], \"scale\": \"e8m0\"},"
                       "{\"match\": \".\", \"from\": [\"mxfp4\"], \"to\": \"fp8\", \"block\": [64, 64], \"scale\": \"f32\"}]}";
    REQUIRE(wpt_write_file(prof, text, strlen(text)) == 0);
    const char *b = build(prof, "--allow-lossy --allow-sensitive", "mixed");   /* re-blocks: lossy */
    REQUIRE(b);
    const char *x = PATH("%s/x", wpt_tmpdir());
    REQUIRE(export_(b, x, "-q") == 0);
    cJSON *cj = read_json(wpt_path("%s/config.json", x));
    REQUIRE(cj);
    cJSON *q = cJSON_GetObjectItem(cj, "quantization_config");
    CHECK(cJSON_IsNull(cJSON_GetObjectItem(q, "scale_fmt")));
    CHECK(cJSON_GetArrayItem(cJSON_GetObjectItem(q, "weight_block_size"), 0)->valueint == 64);
    CHECK(!strcmp(cJSON_GetObjectItem(cj, "expert_dtype")->valuestring, "fp8"));
    cJSON_Delete(cj);
    check_inspect_ok(x, 427);

    wp_err e = {0};
    wp_ckpt *k = NULL;
    wpk_file *f = NULL;
    REQUIRE(wp_ckpt_open(&k, x, &e) == 0);
    REQUIRE(wpk_open(&f, PATH("%s/model.wpk", b), &e) == 0);
    /* a linear: E8M0 in the build, F32 in the export, the same values */
    const wp_tensor_info *s = tensor(k, "layers.0.attn.wq_a.scale", WP_F32, 2, 4);
    const wpk_tensor *bs = wpk_find(f, "layers.0.attn.wq_a.scale");
    REQUIRE(s && bs && bs->dtype == WP_F8_E8M0 && bs->size == 8);
    const float *v = wp_ckpt_data(k, s, &e);
    const uint8_t *u = wpk_data(f, bs);
    for (int i = 0; i < 8; i++) CHECK(v[i] == wp_e8m0_to_f32(u[i]));
    /* an expert: F32 in both, the bytes of its slice of the stack */
    s = tensor(k, "layers.2.ffn.experts.3.w2.scale", WP_F32, 4, 2);
    bs = wpk_find(f, "layers.2.ffn.experts.w2.scale");
    REQUIRE(s && bs && bs->stacked);
    CHECK(!memcmp(wp_ckpt_data(k, s, &e), (const uint8_t *)wpk_data(f, bs) + 3 * bs->expert_stride, 32));
    int pow2 = 1;
    for (int i = 0; i < 8; i++) pow2 &= wp_f32_to_e8m0_exact(((const float *)wp_ckpt_data(k, s, &e))[i]) >= 0;
    CHECK(!pow2);   /* why the export keeps F32 */
    wpk_close(f);
    wp_ckpt_close(k);
}

/* ---- reproducibility --------------------------------------------------------------------- */

TEST(convert_export_byte_identical)
{
    const char *r = build("reference", NULL, "ref"), *h = build("hopper", NULL, "hop");
    REQUIRE(r && h);
    const char *d = wpt_tmpdir();
    REQUIRE(export_(r, PATH("%s/a", d), "-q --shard-size 1M -t 1") == 0);
    /* b through the page cache, a around it (wp_out_direct): the same bytes */
    REQUIRE(setenv("WPACK_DIRECT_OUT", "0", 1) == 0);
    REQUIRE(export_(r, PATH("%s/b", d), "-q --shard-size 1M -t 4") == 0);
    unsetenv("WPACK_DIRECT_OUT");
    REQUIRE(export_(h, PATH("%s/c", d), "-q --shard-size 1500K -t 1") == 0);
    REQUIRE(export_(h, PATH("%s/e", d), "-q --shard-size 1500K -t 3") == 0);
    int rc = wpt_run(out, sizeof out, "diff -r %s/a %s/b && diff -r %s/c %s/e && ls %s/a | wc -l && ls %s/c | wc -l",
                     d, d, d, d, d, d);
    CHECKF(rc == 0, "%s", out);
    CHECK(!strcmp(out, "9\n9\n"));   /* 7 shards, index, config.json */
}

/* ---- refusals: one line, exit 2 (1 for a digest), nothing at -o -------------------------- */

TEST(convert_export_refuses_nvfp4)
{
    const char *b = build("blackwell-nvfp4", NULL, "nv");
    REQUIRE(b);
    const char *x = PATH("%s/x", wpt_tmpdir());
    int rc = export_(b, x, "");
    CHECK_EQ_INT(rc, 2);
    CHECK_CONTAINS(out, "wpack export: ");
    CHECK_CONTAINS(out, "layers.0.ffn.experts.w1.weight: routed experts in nvfp4");
    CHECK_EQ_INT(count_lines(out), 1);
    CHECK(!exists(x));
    CHECK_EQ_INT(temps_in(wpt_tmpdir()), 0);
    /* an nvfp4 weight that is not an expert is refused by name too */
    const char *b2 = build("reference", "--tensor-type 'attn\\.wq_b\\.weight$=nvfp4'", "nv2");
    REQUIRE(b2);
    CHECK_EQ_INT(export_(b2, x, ""), 2);
    CHECK_CONTAINS(out, "layers.0.attn.wq_b.weight: nvfp4 where the exported checkpoint holds an FP8 pair");
    CHECK_EQ_INT(count_lines(out), 1);
    CHECK(!exists(x));
}

static void flip(const char *p, const char *name, double where);

/* A tensor-parallel build (spec §2.5 item 3: embed, head, wq_b, wo_a,
 * attn_sink, the indexer's wq_b and weights_proj cut along dim 0, wo_b along
 * dim 1) exports to the very checkpoint its tp 1 build does: every cut
 * tensor joined back from the ranks' pieces, byte for byte -- plain BF16
 * (bf16), and FP8 pairs with their block scales (64x64 blocks, which a
 * 2-way cut of tiny-a keeps whole); with expert parallelism too.  A
 * flipped byte in a piece, a missing rank, a cut tensor the export would
 * have to re-encode: refused in one line, nothing at -o. */
TEST(convert_export_joins_tensor_parallel_build)
{
    const char *prof = PATH("%s/fp8-64.json", wpt_tmpdir());
    const char *text = "{\"name\": \"fp8-64\", \"rules\": ["
                       "{\"match\": \".\", \"from\": [\"fp8\"], \"to\": \"fp8\", \"block\": [64, 64], \"scale\": \"e8m0\", \"lossy\": true}]}";
    REQUIRE(wpt_write_file(prof, text, strlen(text)) == 0);
    char pf[512];
    snprintf(pf, sizeof pf, "%s", prof);
    const char *profiles[] = {"bf16", pf};
    for (int p = 0; p < 2; p++) {
        const char *cases[] = {"", "--tp 2", "--tp 2 --ep 2"};
        char first[512] = "";
        for (int k = 0; k < 3; k++) {
            /* the 64x64 re-blocking re-quantises the indexer too: asked for */
            const char *b = build(profiles[p], PATH("%s%s", cases[k], p ? " --allow-sensitive" : ""), PATH("b%d%d", p, k));
            REQUIRE(b);
            char bd[512], x[512];
            snprintf(bd, sizeof bd, "%s", b);
            snprintf(x, sizeof x, "%s/x%d%d", wpt_tmpdir(), p, k);
            CHECKF(export_(bd, x, "-q") == 0, "%s %s: %s", profiles[p], cases[k], out);
            if (!k) {
                snprintf(first, sizeof first, "%s", x);
                continue;
            }
            CHECKF(wpt_run(out, sizeof out, "diff -r %s %s", first, x) == 0, "%s %s: the export differs from tp 1's: %s",
                   profiles[p], cases[k], out);
        }
    }
    /* the tp 2 bf16 build really holds pieces: wo_b [256, 128] is two [256, 64] */
    const char *b = PATH("%s/b01", wpt_tmpdir());
    char bd[512];
    snprintf(bd, sizeof bd, "%s", b);
    CHECK_EQ_INT(wpt_run(out, sizeof out, "%s inspect %s | grep -c 'layers.0.attn.wo_b.weight  *bf16  *\\[256, 64\\]'",
                         wpt_wpack(), bd), 0);
    CHECK_CONTAINS(out, "2\n");
    const char *x = PATH("%s/bad", wpt_tmpdir());
    char xd[512];
    snprintf(xd, sizeof xd, "%s", x);
    /* a flipped byte in rank 1's piece of a column cut */
    flip(wpt_path("%s/model-rank00001-of-00002.wpk", bd), "layers.0.attn.wo_b.weight", 0.5);
    CHECK_EQ_INT(export_(bd, xd, ""), 1);
    CHECK_CONTAINS(out, "model-rank00001-of-00002.wpk: layers.0.attn.wo_b.weight: sha256 mismatch");
    CHECK_EQ_INT(count_lines(out), 1);
    CHECK(!exists(xd));
    /* a missing rank */
    REQUIRE(unlink(wpt_path("%s/model-rank00001-of-00002.wpk", bd)) == 0);
    CHECK_EQ_INT(export_(bd, xd, ""), 2);
    CHECK_CONTAINS(out, "a tensor-parallel build (tp 2) of 1 part: each cut tensor needs its piece from every rank");
    CHECK_EQ_INT(count_lines(out), 1);
    CHECK(!exists(xd));
    /* a cut BF16 wo_a where the checkpoint holds an FP8 pair: joined as stored, never re-encoded */
    const char *bw = build("blackwell", "--tp 2 --tensor-type 'attn\\.wo_b\\.weight$=bf16'", "bw");
    REQUIRE(bw);
    char bwd[512];
    snprintf(bwd, sizeof bwd, "%s", bw);
    CHECK_EQ_INT(export_(bwd, xd, ""), 2);
    CHECK_CONTAINS(out, "layers.0.attn.wo_a.weight: bf16, cut by tensor parallelism, where the exported checkpoint "
                        "holds an FP8 pair");
    CHECK_EQ_INT(count_lines(out), 1);
    CHECK(!exists(xd));
    CHECK_EQ_INT(temps_in(wpt_tmpdir()), 0);
}

/* Flip one byte of a tensor's data in P (a .wpk). */
static void flip(const char *p, const char *name, double where)
{
    wp_err e = {0};
    wpk_file *f = NULL;
    REQUIRE(wpk_open(&f, p, &e) == 0);
    const wpk_tensor *t = wpk_find(f, name);
    REQUIRE(t);
    uint64_t off = t->offset + (uint64_t)(where * (double)(t->size - 1));
    wpk_close(f);
    int fd = open(p, O_RDWR);
    REQUIRE(fd >= 0);
    uint8_t c = 0;
    REQUIRE(pread(fd, &c, 1, (off_t)off) == 1);
    c ^= 0x10;
    REQUIRE(pwrite(fd, &c, 1, (off_t)off) == 1);
    close(fd);
}

/* A corrupt build (a byte flipped after it was written): the digest check
 * while streaming refuses it, exit 1, one line naming the tensor, nothing at
 * -o and no temporaries, with one worker or several. */
TEST(convert_export_refuses_corrupt_build)
{
    const char *b = build("reference", NULL, "ref"), *bw = build("blackwell", NULL, "bw");
    REQUIRE(b && bw);
    flip(wpt_path("%s/model.wpk", b), "layers.2.ffn.experts.w2.weight", 0.6);
    flip(wpt_path("%s/model.wpk", bw), "layers.1.attn.wo_a.weight", 0.3);
    const char *x = PATH("%s/x", wpt_tmpdir());
    const char *opts[] = {"-t 1", "-t 4 --shard-size 1M"};
    for (int i = 0; i < 2; i++) {
        int rc = export_(b, x, opts[i]);
        CHECKF(rc == 1, "%s: exit %d: %s", opts[i], rc, out);
        CHECK_CONTAINS(out, "model.wpk: layers.2.ffn.experts.w2.weight: sha256 mismatch");
        CHECK_EQ_INT(count_lines(out), 1);
        CHECK(!exists(x));
        CHECK_EQ_INT(temps_in(wpt_tmpdir()), 0);
    }
    /* the re-encoded wo_a is checked too */
    CHECK_EQ_INT(export_(bw, x, "--json 2>/dev/null"), 1);
    CHECK_CONTAINS(out, "layers.1.attn.wo_a.weight: sha256 mismatch");
    CHECK(!exists(x));
    CHECK_EQ_INT(temps_in(wpt_tmpdir()), 0);
}

/* -o that exists: refused without -f (nothing touched); with -f an earlier
 * export is replaced; -f never replaces what is not a checkpoint. */
TEST(convert_export_existing_output)
{
    const char *b = build("bf16", NULL, "b");
    REQUIRE(b);
    const char *x = PATH("%s/x", wpt_tmpdir());
    REQUIRE(export_(b, x, "-q") == 0);
    CHECK_EQ_INT(export_(b, x, ""), 2);
    CHECK_CONTAINS(out, "already exists");
    CHECK_CONTAINS(out, "(see -f/--force)");
    CHECK_EQ_INT(count_lines(out), 1);
    REQUIRE(wpt_write_file(wpt_path("%s/x/marker", wpt_tmpdir()), "m", 1) == 0);
    CHECK_EQ_INT(export_(b, x, "-f -q"), 0);
    CHECK(!exists(wpt_path("%s/x/marker", wpt_tmpdir())) && exists(wpt_path("%s/x/config.json", wpt_tmpdir())));
    /* a build directory is not a checkpoint: -f leaves it alone */
    CHECK_EQ_INT(export_(b, b, "-f"), 2);
    CHECK(exists(wpt_path("%s/model.wpk", b)) && exists(wpt_path("%s/manifest.json", b)));
    CHECK_EQ_INT(temps_in(wpt_tmpdir()), 0);
}

/* --source: the checkpoint the build came from gives config.json its other
 * keys and the tokenizer and generation files; another one is refused. */
TEST(convert_export_source_files)
{
    const char *d = wpt_tmpdir(), *src = PATH("%s/src", d);
    REQUIRE(wpt_run(out, sizeof out, "cp -r %s %s", TINY, src) == 0);
    const char *tok = "{\"version\": \"1.0\", \"model\": {}}\n", *gen = "{\"do_sample\": true, \"temperature\": 1.0}\n";
    REQUIRE(wpt_write_file(wpt_path("%s/tokenizer.json", src), tok, strlen(tok)) == 0);
    REQUIRE(wpt_write_file(wpt_path("%s/generation_config.json", src), gen, strlen(gen)) == 0);
    const char *b = PATH("%s/b", d);
    REQUIRE(wpt_run(out, sizeof out, "%s convert %s -o %s --profile hopper -q", wpt_wpack(), src, b) == 0);

    const char *x = PATH("%s/x", d);
    REQUIRE(wpt_run(out, sizeof out, "%s export %s -o %s --source %s --json 2>/dev/null", wpt_wpack(), b, x, src) == 0);
    cJSON *j = cJSON_Parse(out);
    REQUIRE(j);
    cJSON *files = cJSON_GetObjectItem(j, "files");
    CHECK(cJSON_GetArraySize(files) == 2 && !strcmp(cJSON_GetArrayItem(files, 0)->valuestring, "generation_config.json") &&
          !strcmp(cJSON_GetArrayItem(files, 1)->valuestring, "tokenizer.json"));
    CHECK(!cJSON_GetObjectItem(j, "files_note"));
    cJSON_Delete(j);
    CHECK(wpt_run(out, sizeof out, "cmp %s/tokenizer.json %s/tokenizer.json && cmp %s/generation_config.json "
                  "%s/generation_config.json", src, x, src, x) == 0);
    /* config.json: the source's, but for what the shards hold */
    cJSON *cs = read_json(wpt_path("%s/config.json", src)), *cx = read_json(wpt_path("%s/config.json", x));
    REQUIRE(cs && cx);
    CHECK(!strcmp(cJSON_GetObjectItem(cx, "expert_dtype")->valuestring, "fp8"));
    cJSON_ReplaceItemInObject(cs, "expert_dtype", cJSON_CreateString("fp8"));
    CHECK(cJSON_Compare(cs, cx, 1));
    cJSON_Delete(cs);
    cJSON_Delete(cx);

    /* without it the result says why there are none */
    const char *y = PATH("%s/y", d);
    REQUIRE(wpt_run(out, sizeof out, "%s export %s -o %s --json 2>/dev/null", wpt_wpack(), b, y) == 0);
    CHECK_CONTAINS(out, "does not record where its source checkpoint is");
    REQUIRE(wpt_run(out, sizeof out, "rm -rf %s && %s export %s -o %s 2>&1 >/dev/null", y, wpt_wpack(), b, y) == 0);
    CHECK_CONTAINS(out, "(give it with --source)");
    CHECK(!exists(wpt_path("%s/tokenizer.json", y)));

    /* a checkpoint whose config.json is not the build's */
    const char *other = PATH("%s/other", d), *z = PATH("%s/z", d);
    REQUIRE(wpt_run(out, sizeof out, "cp -r %s %s && echo >> %s/config.json", src, other, other) == 0);
    CHECK_EQ_INT(wpt_run(out, sizeof out, "%s export %s -o %s --source %s 2>&1", wpt_wpack(), b, z, other), 2);
    CHECK_CONTAINS(out, "is not the config.json the build was made from");
    CHECK_CONTAINS(out, "(see --source)");
    CHECK_EQ_INT(count_lines(out), 1);
    CHECK(!exists(z));
}

/* --json: one document with what was written. */
TEST(convert_export_json_document)
{
    const char *b = build("reference", NULL, "ref");
    REQUIRE(b);
    const char *x = PATH("%s/x", wpt_tmpdir());
    REQUIRE(wpt_run(out, sizeof out, "%s export %s -o %s --json 2>/dev/null", wpt_wpack(), b, x) == 0);
    cJSON *j = cJSON_Parse(out);
    REQUIRE(j);
    CHECK(cJSON_IsTrue(cJSON_GetObjectItem(j, "ok")));
    CHECK(!strcmp(cJSON_GetObjectItem(j, "command")->valuestring, "export"));
    CHECK(!strcmp(cJSON_GetObjectItem(j, "layout")->valuestring, "official"));
    CHECK(!strcmp(cJSON_GetObjectItem(j, "profile")->valuestring, "reference"));
    CHECK_EQ_INT(cJSON_GetObjectItem(j, "shards")->valueint, 1);
    CHECK_EQ_INT(cJSON_GetObjectItem(j, "tensors")->valueint, 427);
    CHECK_EQ_INT(cJSON_GetObjectItem(j, "copied")->valueint, 427);
    CHECK_EQ_INT(cJSON_GetObjectItem(j, "converted")->valueint, 0);
    CHECK_EQ_INT(cJSON_GetObjectItem(j, "total_size")->valuedouble, 7078066);
    CHECK_EQ_INT(cJSON_GetObjectItem(j, "build_tensors_verified")->valueint, 217);
    cJSON_Delete(j);
}
