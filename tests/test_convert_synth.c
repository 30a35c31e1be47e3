/* test_synth.c — `wpack synth`: presets equal the spec (Flash's shard plan
 * reproduces the 46 published shard sizes), a synth checkpoint passes
 * `wpack inspect`, has the official layout and plausible contents, the same
 * seed gives the same bytes, and failures leave no output. */
#include <cjson/cJSON.h>
#include <math.h>
#include <sys/stat.h>

#include "convert/synth.h"
#include "quant/quant.h"
#include "tests/harness.h"
#include "tests/model_util.h"

#define OUTCAP (1 << 16)
static char out[OUTCAP];

/* Shard files of config c, by the library's plan, with sizes predicted from
 * the spec's official serialisation (model_util.h). */
static void predicted_sizes(const wp_config *c, uint64_t *sizes)
{
    wp_err e = {0};
    wp_expect *x;
    size_t n;
    REQUIRE(wp_inventory(c, &x, &n, &e) == 0);
    const wp_expect **t = malloc(n * sizeof *t);
    REQUIRE(t);
    for (int s = 0; s < wp_shard_count(c); s++) {
        size_t m = 0;
        for (size_t i = 0; i < n; i++)
            if (!x[i].optional && wp_shard_of(c, &x[i]) == s) t[m++] = &x[i];
        sizes[s] = wpt_official_size(t, m);
    }
    free(t);
    free(x);
}

TEST(convert_synth_presets_match_spec)
{
    uint64_t pub[46];
    REQUIRE(wpt_flash_published_sizes(pub) == 46);
    wp_config c;
    wp_err e = {0};
    REQUIRE(wp_synth_preset(&c, "flash", &e) == 0);
    REQUIRE(wp_shard_count(&c) == 46);
    uint64_t sz[64];
    predicted_sizes(&c, sz);
    for (int s = 0; s < 46; s++)
        CHECKF(sz[s] == pub[s], "flash shard %d: %llu, published %llu", s + 1,
               (unsigned long long)sz[s], (unsigned long long)pub[s]);
    CHECK(c.route_scale == 1.5 && c.index_topk == 512 && c.n_hash_layers == 3);
    char name[64];
    wp_shard_name(&c, 45, name, sizeof name);
    CHECK(!strcmp(name, "model-00046-of-00046.safetensors"));

    /* Pro: 145,116 tensors in 64 shards (spec §2.1, §2.4) */
    REQUIRE(wp_synth_preset(&c, "pro", &e) == 0);
    CHECK_EQ_INT(wp_shard_count(&c), 64);
    wp_expect *x;
    size_t n, req = 0;
    REQUIRE(wp_inventory(&c, &x, &n, &e) == 0);
    for (size_t i = 0; i < n; i++) req += !x[i].optional;
    CHECK_EQ_INT(req, 145116);
    free(x);
    CHECK(c.dim == 7168 && c.compress_ratios[0] == 128 && c.compress_ratios[2] == 4 &&
          c.compress_ratios[61] == 0 && c.route_scale == 2.5);

    /* tiny is tiny-a's shape, field by field */
    wp_config t;
    REQUIRE(wp_config_load(&t, WPT_TINY "/hf/config.json", &e) == 0);
    REQUIRE(wp_synth_preset(&c, "tiny", &e) == 0);
    CHECK(memcmp(&c, &t, sizeof c) == 0);

    e.code = 0;
    CHECK(wp_synth_preset(&c, "huge", &e) == WP_EUSAGE);
    CHECK(!strcmp(e.msg, "synth: unknown preset 'huge' (tiny, flash, pro)"));
}

TEST(convert_synth_trim)
{
    wp_config c;
    wp_err e = {0};
    REQUIRE(wp_synth_preset(&c, "flash", &e) == 0);
    REQUIRE(wp_synth_trim(&c, 4, 16, 32, &e) == 0);
    CHECK_EQ_INT(c.n_layers, 4);
    CHECK_EQ_INT(c.n_compress_ratios, 5);
    static const int r[5] = {0, 0, 4, 128, 0};   /* first 4 of Flash, then its MTP entry */
    for (int i = 0; i < 5; i++) CHECK_EQ_INT(c.compress_ratios[i], r[i]);
    CHECK_EQ_INT(c.n_hash_layers, 3);
    CHECK_EQ_INT(c.n_routed_experts, 16);
    CHECK_EQ_INT(c.n_activated_experts, 6);
    CHECK(c.weight_block[0] == 32 && c.weight_block[1] == 32);
    REQUIRE(wp_synth_trim(&c, 2, 4, 0, &e) == 0);
    CHECK_EQ_INT(c.n_hash_layers, 2);            /* capped at the layers kept */
    CHECK_EQ_INT(c.n_activated_experts, 4);      /* capped at the experts kept */
    CHECK_EQ_INT(c.compress_ratios[2], 0);
    CHECK(wp_synth_trim(&c, 3, 0, 0, &e) == WP_EUSAGE);
    CHECK(!strcmp(e.msg, "synth: 3 layers asked for: the preset has 2"));
}

static void synth(const char *dir, const char *args)
{
    int rc = wpt_run(out, sizeof out, "%s synth %s -o %s", wpt_wpack(), args, dir);
    CHECKF(rc == 0, "synth %s: exit %d: %s", args, rc, out);
}

TEST(convert_synth_tiny_layout_and_inspect)
{
    char d[4096];
    snprintf(d, sizeof d, "%s/a", wpt_tmpdir());
    synth(d, "--preset tiny --seed 7");
    CHECK_CONTAINS(out, "427 tensors, 6.75 MiB in 7 shards (tiny, 4 layers, 8 experts, block 128x128, seed 7)");
    int rc = wpt_run(out, sizeof out, "%s inspect %s", wpt_wpack(), d);
    CHECK_EQ_INT(rc, 0);
    CHECK_CONTAINS(out, ": 427 tensors, 6.75 MiB (7078066 bytes of tensor data) in 7 shards");
    CHECK_CONTAINS(out, "layers: 4 main: 1 hash-routed; 2 CSA, 1 HCA, 1 sliding-window; 1 MTP");
    CHECK_CONTAINS(out, "inventory: ok (427 expected, 427 found)");
    /* config.json describes exactly the tiny-a model */
    wp_config a, b;
    wp_err e = {0};
    REQUIRE(wp_config_load(&a, wpt_path("%s/config.json", d), &e) == 0);
    REQUIRE(wp_config_load(&b, WPT_TINY "/hf/config.json", &e) == 0);
    CHECK(memcmp(&a, &b, sizeof a) == 0);
    uint8_t *txt;
    size_t len;
    REQUIRE(wpt_read_file(wpt_path("%s/config.json", d), &txt, &len) == 0);
    cJSON *j = cJSON_ParseWithLength((const char *)txt, len);
    free(txt);
    REQUIRE(j);
    CHECK(!strcmp(cJSON_GetObjectItemCaseSensitive(j, "model_type")->valuestring, "deepseek_v4"));
    CHECK(!strcmp(cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(j, "architectures"), 0)->valuestring,
                  "DeepseekV4ForCausalLM"));
    cJSON_Delete(j);
    /* spec §2.1: shard 1 embed only, 2..5 one layer each, 6 head group, 7 MTP;
     * each file exactly the size of the official serialisation */
    uint64_t sz[8];
    predicted_sizes(&a, sz);
    wp_ckpt *k;
    REQUIRE(wp_ckpt_open(&k, d, &e) == 0);
    REQUIRE(wp_ckpt_file_count(k) == 7);
    for (int s = 0; s < 7; s++) {
        char name[64];
        wp_shard_name(&a, s, name, sizeof name);
        struct stat st;
        REQUIRE(stat(wpt_path("%s/%s", d, name), &st) == 0);
        CHECKF((uint64_t)st.st_size == sz[s], "%s: %lld bytes, predicted %llu", name,
               (long long)st.st_size, (unsigned long long)sz[s]);
    }
    for (size_t i = 0; i < wp_ckpt_count(k); i++) {
        const wp_tensor_info *t = wp_ckpt_tensor(k, i);
        const char *f = strrchr(wp_st_path(wp_ckpt_file(k, (size_t)t->file)), '/') + 1;
        int l = wp_layer_of(t->name);
        const char *want = !strcmp(t->name, "embed.weight") ? "model-00001-of-00007.safetensors"
                           : l >= 0 ? wpt_path("model-%05d-of-00007.safetensors", l + 2)
                           : wp_mtp_of(t->name) >= 0 ? "model-00007-of-00007.safetensors"
                                                     : "model-00006-of-00007.safetensors";
        CHECKF(!strcmp(f, want), "%s in %s, expected %s", t->name, f, want);
    }
    /* inside a shard, data in the official order: widest dtype first, then
     * by name (shard 3 = layer 1, a CSA layer with every dtype) */
    wp_st_file *s3 = wp_ckpt_file(k, 2);
    size_t n3 = wp_st_count(s3);
    REQUIRE(n3 == 88);
    const wp_tensor_info *by_off[88];
    for (size_t i = 0; i < n3; i++) by_off[i] = wp_st_tensor(s3, i);
    for (size_t i = 0; i < n3; i++)   /* insertion sort by offset */
        for (size_t q = i; q > 0 && by_off[q - 1]->offset > by_off[q]->offset; q--) {
            const wp_tensor_info *tmp = by_off[q];
            by_off[q] = by_off[q - 1];
            by_off[q - 1] = tmp;
        }
    for (size_t i = 1; i < n3; i++) {
        int ra = wpt_dt_rank(by_off[i - 1]->dtype), rb = wpt_dt_rank(by_off[i]->dtype);
        CHECKF(ra < rb || (ra == rb && strcmp(by_off[i - 1]->name, by_off[i]->name) < 0),
               "%s before %s", by_off[i - 1]->name, by_off[i]->name);
    }
    const wp_tensor_info *tid = wp_ckpt_find(k, "layers.0.ffn.gate.tid2eid");
    REQUIRE(tid);
    CHECK_EQ_INT(tid->offset, 8 + wp_st_header_len(wp_ckpt_file(k, 1)));   /* I64 first */
    wp_ckpt_close(k);
}

static double mean_of(const float *v, size_t n)
{
    double s = 0;
    for (size_t i = 0; i < n; i++) s += v[i];
    return s / (double)n;
}

static double std_of(const float *v, size_t n)
{
    double m = mean_of(v, n), s = 0;
    for (size_t i = 0; i < n; i++) s += (v[i] - m) * (v[i] - m);
    return sqrt(s / (double)n);
}

/* Contents good enough for quantisation work (synth.h). */
TEST(convert_synth_contents)
{
    char d[4096];
    snprintf(d, sizeof d, "%s/c", wpt_tmpdir());
    synth(d, "--preset tiny --seed 3");
    wp_err e = {0};
    wp_ckpt *k;
    REQUIRE(wp_ckpt_open(&k, d, &e) == 0);
    size_t n_fp8 = 0, n_tight = 0;
    for (size_t i = 0; i < wp_ckpt_count(k); i++) {
        const wp_tensor_info *t = wp_ckpt_tensor(k, i);
        const uint8_t *p = wp_ckpt_data(k, t, &e);
        REQUIRE(p);
        size_t ne = 1;
        for (int q = 0; q < t->ndim; q++) ne *= t->shape[q];
        if (t->dtype == WP_F8_E4M3) {
            float amax = 0;
            for (size_t j = 0; j < ne; j++) {
                CHECKF((p[j] & 0x7F) != 0x7F, "%s[%zu]: NaN code 0x%02x", t->name, j, p[j]);
                float v = fabsf(wp_e4m3_to_f32(p[j]));
                if (v > amax) amax = v;
            }
            n_fp8++;
            n_tight += amax > 224 && amax <= 448;   /* like the reference rule's blocks */
        } else if (t->dtype == WP_F8_E8M0) {
            for (size_t j = 0; j < ne; j++)
                CHECKF(p[j] >= 118 && p[j] <= 120, "%s[%zu]: scale 2^%d", t->name, j, p[j] - 127);
        } else if (t->dtype == WP_I8) {
            unsigned seen = 0;
            for (size_t j = 0; j < ne; j++) seen |= 1u << (p[j] & 15) | 1u << (p[j] >> 4);
            CHECKF(seen == 0xFFFF, "%s: nibbles 0x%04x", t->name, seen);
        } else if (t->dtype == WP_I64) {
            const int64_t *id = (const int64_t *)(const void *)p;
            CHECK(t->shape[1] == 2);
            for (size_t r = 0; r < t->shape[0]; r++) {
                CHECK(id[2 * r] >= 0 && id[2 * r] < 8 && id[2 * r + 1] >= 0 && id[2 * r + 1] < 8);
                CHECKF(id[2 * r] != id[2 * r + 1], "%s row %zu: expert %lld twice", t->name, r,
                       (long long)id[2 * r]);
            }
        } else if (t->dtype == WP_BF16 || t->dtype == WP_F32) {
            float *v = malloc(ne * sizeof *v);
            REQUIRE(v);
            for (size_t j = 0; j < ne; j++) {
                if (t->dtype == WP_F32) memcpy(&v[j], p + 4 * j, 4);
                else v[j] = wp_bf16_to_f32((uint16_t)(p[2 * j] | p[2 * j + 1] << 8));
                CHECK(isfinite(v[j]));
            }
            size_t nl = strlen(t->name);
            if (nl > 11 && !strcmp(t->name + nl - 11, "norm.weight")) {
                CHECKF(fabs(mean_of(v, ne) - 1) < 0.05, "%s: mean %g", t->name, mean_of(v, ne));
            } else if (t->ndim == 2 && ne >= 4096 && strstr(t->name, "ape") == NULL) {
                /* weights: centred, std 1/sqrt(fan-in) within 10% */
                double want = 1 / sqrt((double)t->shape[1]);
                CHECKF(fabs(mean_of(v, ne)) < want / 4, "%s: mean %g", t->name, mean_of(v, ne));
                CHECKF(fabs(std_of(v, ne) / want - 1) < 0.1, "%s: std %g, want %g", t->name,
                       std_of(v, ne), want);
            }
            free(v);
        }
    }
    CHECK_EQ_INT(n_fp8, 44);
    CHECK(n_tight == n_fp8);
    wp_ckpt_close(k);
}

TEST(convert_synth_deterministic)
{
    char a[4096], b[4096], c[4096];
    snprintf(a, sizeof a, "%s/a", wpt_tmpdir());
    snprintf(b, sizeof b, "%s/b", wpt_tmpdir());
    snprintf(c, sizeof c, "%s/c", wpt_tmpdir());
    synth(a, "--preset tiny --seed 11 --experts 3");
    synth(b, "--seed=11 --experts 3 --preset=tiny");
    synth(c, "--preset tiny --seed 12 --experts 3");
    CHECK_EQ_INT(wpt_run(out, sizeof out, "diff -r %s %s", a, b), 0);
    /* another seed: other tensor bytes, same layout */
    CHECK_EQ_INT(wpt_run(out, sizeof out, "cmp -s %s/model-00002-of-00007.safetensors "
                         "%s/model-00002-of-00007.safetensors", a, c), 1);
    CHECK_EQ_INT(wpt_run(out, sizeof out, "cmp -s %s/config.json %s/config.json", a, c), 0);
    CHECK_EQ_INT(wpt_run(out, sizeof out, "cmp -s %s/model.safetensors.index.json "
                         "%s/model.safetensors.index.json", a, c), 0);
    /* a tensor's bytes do not depend on the rest: embed.weight is the same
     * with 3 experts and with 8 */
    char d[4096];
    snprintf(d, sizeof d, "%s/d", wpt_tmpdir());
    synth(d, "--preset tiny --seed 11");
    CHECK_EQ_INT(wpt_run(out, sizeof out, "cmp -s %s/model-00001-of-00007.safetensors "
                         "%s/model-00001-of-00007.safetensors", a, d), 0);
}

TEST(convert_synth_block32_and_trim_cli)
{
    char d[4096];
    snprintf(d, sizeof d, "%s/b32", wpt_tmpdir());
    synth(d, "--preset tiny --block 32 --layers 2 --experts 4 --json");
    cJSON *j = cJSON_Parse(out);
    REQUIRE(j);
    CHECK_EQ_INT(cJSON_GetObjectItemCaseSensitive(j, "shards")->valueint, 5);
    CHECK_EQ_INT(cJSON_GetObjectItemCaseSensitive(j, "block")->valueint, 32);
    cJSON_Delete(j);
    int rc = wpt_run(out, sizeof out, "%s inspect %s", wpt_wpack(), d);
    CHECK_EQ_INT(rc, 0);
    CHECK_CONTAINS(out, "layers: 2 main: 1 hash-routed; 1 CSA, 0 HCA, 1 sliding-window; 1 MTP");
    wp_config c;
    wp_err e = {0};
    REQUIRE(wp_config_load(&c, wpt_path("%s/config.json", d), &e) == 0);
    CHECK(c.weight_block[0] == 32 && c.weight_block[1] == 32);
    CHECK_EQ_INT(c.n_routed_experts, 4);
    wp_ckpt *k;
    REQUIRE(wp_ckpt_open(&k, d, &e) == 0);
    const wp_tensor_info *t = wp_ckpt_find(k, "layers.1.attn.wq_b.scale");   /* [512,128] */
    REQUIRE(t);
    CHECK(t->shape[0] == 16 && t->shape[1] == 4);
    CHECK(wp_ckpt_find(k, "layers.1.ffn.experts.3.w1.weight") != NULL);
    CHECK(wp_ckpt_find(k, "layers.1.ffn.experts.4.w1.weight") == NULL);
    wp_ckpt_close(k);
}

TEST(convert_synth_errors_leave_nothing)
{
    char d[4096];
    snprintf(d, sizeof d, "%s/x", wpt_tmpdir());
    CHECK_EQ_INT(wpt_run(out, sizeof out, "%s synth --preset huge -o %s", wpt_wpack(), d), 2);
    CHECK_CONTAINS(out, "'huge' is not one of: tiny flash pro");
    CHECK_EQ_INT(wpt_run(out, sizeof out, "%s synth --preset tiny --layers 9 -o %s", wpt_wpack(), d), 2);
    CHECK_CONTAINS(out, "9 layers asked for: the preset has 4 (see --layers)");
    CHECK_EQ_INT(wpt_run(out, sizeof out, "%s synth --preset tiny --layers 2x -o %s", wpt_wpack(), d), 2);
    CHECK_CONTAINS(out, "--layers': '2x' is not an integer");
    CHECK_EQ_INT(wpt_run(out, sizeof out, "%s synth --preset tiny --seed -1 -o %s", wpt_wpack(), d), 2);
    CHECK_EQ_INT(wpt_run(out, sizeof out, "%s synth --preset tiny", wpt_wpack()), 2);
    CHECK_CONTAINS(out, "missing option '-o/--output DIR'");
    struct stat st;
    CHECK(stat(d, &st) != 0);
    /* a non-empty target is refused and left alone */
    REQUIRE(mkdir(d, 0755) == 0);
    REQUIRE(wpt_write_file(wpt_path("%s/keep", d), "k", 1) == 0);
    CHECK_EQ_INT(wpt_run(out, sizeof out, "%s synth --preset tiny -o %s", wpt_wpack(), d), 2);
    CHECK_CONTAINS(out, "already exists (and is not empty)");
    CHECK_EQ_INT(wpt_run(out, sizeof out, "ls -A %s", d), 0);
    CHECK(!strcmp(out, "keep\n"));
    /* an empty one is replaced */
    char em[4096];
    snprintf(em, sizeof em, "%s/empty", wpt_tmpdir());
    REQUIRE(mkdir(em, 0755) == 0);
    synth(em, "--preset tiny --experts 1");
    CHECK(stat(wpt_path("%s/config.json", em), &st) == 0);
    /* an unwritable place: one-line error, nothing created */
    CHECK_EQ_INT(wpt_run(out, sizeof out, "%s synth --preset tiny -o /proc/nonexistent/x", wpt_wpack()), 2);
    CHECK_CONTAINS(out, "/proc/nonexistent");
    /* only the test's own entries remain: no temporary directory left behind */
    CHECK_EQ_INT(wpt_run(out, sizeof out, "ls -A %s", wpt_tmpdir()), 0);
    CHECK(!strcmp(out, "empty\nx\n"));
}

/* Killed mid-way (SIGINT), synth leaves no DIR. */
TEST(convert_synth_interrupted)
{
    char d[4096];
    snprintf(d, sizeof d, "%s/big", wpt_tmpdir());
    /* ~2.4 GB to write: certainly still running after 0.3 s */
    int rc = wpt_run(out, sizeof out, "timeout -s INT 0.3 %s synth --preset flash --layers 1 "
                     "--experts 4 -o %s", wpt_wpack(), d);
    CHECK_EQ_INT(rc, 124);
    struct stat st;
    CHECK(stat(d, &st) != 0);
}

/* The overwrite rule through the library: an existing checkpoint is kept
 * unless force, and force replaces a checkpoint, never another directory. */
TEST(convert_synth_force_replaces_only_a_checkpoint)
{
    wp_config c;
    wp_err e = {0};
    REQUIRE(wp_synth_preset(&c, "tiny", &e) == 0);
    REQUIRE(wp_synth_trim(&c, 1, 1, 0, &e) == 0);
    char d[4096], other[4096];
    snprintf(d, sizeof d, "%s/ck", wpt_tmpdir());
    snprintf(other, sizeof other, "%s/notes", wpt_tmpdir());
    wp_synth_opts o = {.seed = 1};
    REQUIRE(wp_synth_write(&c, d, &o, NULL, &e) == 0);
    uint8_t *a1, *a2;
    size_t n1, n2;
    char shard[4200];
    snprintf(shard, sizeof shard, "%s/model-00002-of-00004.safetensors", d);
    REQUIRE(wpt_read_file(shard, &a1, &n1) == 0);
    o.seed = 2;
    CHECK_EQ_INT(wp_synth_write(&c, d, &o, NULL, &e), WP_EEXIST);
    CHECK_CONTAINS(e.msg, "ck: already exists (and is not empty); not replaced");
    CHECK(!strcmp(e.setting, "force"));
    REQUIRE(wpt_read_file(shard, &a2, &n2) == 0);
    CHECK(n1 == n2 && !memcmp(a1, a2, n1));   /* untouched */
    free(a2);
    o.force = 1;
    wp_err_clear(&e);
    REQUIRE(wp_synth_write(&c, d, &o, NULL, &e) == 0);
    REQUIRE(wpt_read_file(shard, &a2, &n2) == 0);
    CHECK(n1 == n2 && memcmp(a1, a2, n1));    /* seed 2's bytes */
    free(a1);
    free(a2);
    REQUIRE(mkdir(other, 0755) == 0 && wpt_write_file(wpt_path("%s/todo.txt", other), "t", 1) == 0);
    CHECK_EQ_INT(wp_synth_write(&c, other, &o, NULL, &e), WP_EEXIST);
    CHECK_CONTAINS(e.msg, "notes: exists and is not a checkpoint");
    CHECK_EQ_INT(wpt_run(out, sizeof out, "ls -A %s", wpt_tmpdir()), 0);
    CHECK(!strcmp(out, "ck\nnotes\n"));   /* no temporary left */
}
