/*
 * mkseeds.c — writes the seed corpora tests/fuzz/corpus/<harness>/ (`make
 * fuzz-seeds`; the output is committed, so this runs only when a seed is
 * added).  Seeds are small: hand-made cases, tiny-a's own files and
 * headers, documents signed by the fixed keys of fuzz_keys.h, and small
 * containers written by the real writers.  Run from the repository root.
 */
#include <sys/stat.h>
#include <cjson/cJSON.h>
#include <dirent.h>

#include "convert/synth.h"
#include "format/pack.h"
#include "format/wpk.h"
#include "hf/safetensors.h"
#include "model/model.h"
#include "tests/fuzz/fuzz_keys.h"
#include "tests/fuzz/fuzz_util.h"
#include "tests/wpk_zoo.h"
#include "trust/manifest.h"
#include "trust/trust.h"

#define CORPUS "tests/fuzz/corpus"
#define TINY "tests/fixtures/tiny-a"

static void die(const char *what, const wp_err *e)
{
    fprintf(stderr, "mkseeds: %s: %s\n", what, e ? e->msg : strerror(errno));
    exit(1);
}

static void seed(const char *h, const char *name, const void *p, size_t n)
{
    char d[512], f[1024];
    snprintf(d, sizeof d, CORPUS "/%s", h);
    mkdir(CORPUS, 0755);
    mkdir(d, 0755);
    snprintf(f, sizeof f, "%s/%s", d, name);
    fz_write(f, p, n);
}
static void seeds(const char *h, const char *name, const char *s) { seed(h, name, s, strlen(s)); }

static uint8_t *slurp(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    if (!f) die(path, NULL);
    fseek(f, 0, SEEK_END);
    *n = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *p = malloc(*n + 1);
    if (!p || fread(p, 1, *n, f) != *n) die(path, NULL);
    fclose(f);
    p[*n] = 0;
    return p;
}

static void copy_seed(const char *h, const char *name, const char *path, size_t cap)
{
    size_t n;
    uint8_t *p = slurp(path, &n);
    seed(h, name, p, n < cap ? n : cap);
    free(p);
}

/* ---- safetensors and the sharded index ------------------------------------------ */

static void st_seeds(void)
{
    wp_err e = {0};
    const char *t = fz_path("st.safetensors");
    uint8_t buf[256];
    for (size_t i = 0; i < sizeof buf; i++) buf[i] = (uint8_t)(i * 7);
    wp_st_entry two[] = {{.name = "a.weight", .dtype = WP_BF16, .ndim = 2, .shape = {4, 4}, .data = buf},
                         {.name = "a.scale", .dtype = WP_F8_E8M0, .ndim = 2, .shape = {1, 1}, .data = buf}};
    const char *meta[] = {"format", "pt", "note", "x"};
    if (wp_st_write_file(t, two, 2, NULL, 0, &e)) die("st", &e);
    copy_seed("safetensors", "two-tensors.safetensors", t, 1 << 16);
    if (wp_st_write_file(t, two, 2, meta, 2, &e)) die("st", &e);
    copy_seed("safetensors", "metadata.safetensors", t, 1 << 16);
    wp_st_entry all[] = {
        {.name = "f32", .dtype = WP_F32, .ndim = 1, .shape = {2}, .data = buf},
        {.name = "f16", .dtype = WP_F16, .ndim = 1, .shape = {2}, .data = buf},
        {.name = "i64", .dtype = WP_I64, .ndim = 2, .shape = {1, 2}, .data = buf},
        {.name = "i8", .dtype = WP_I8, .ndim = 3, .shape = {1, 2, 2}, .data = buf},
        {.name = "e4m3", .dtype = WP_F8_E4M3, .ndim = 2, .shape = {2, 2}, .data = buf},
        {.name = "i32", .dtype = WP_I32, .ndim = 1, .shape = {3}, .data = buf},
        {.name = "empty", .dtype = WP_BF16, .ndim = 2, .shape = {0, 4}, .data = NULL},
        {.name = "scalar", .dtype = WP_F32, .ndim = 0, .shape = {0}, .data = buf},
    };
    if (wp_st_write_file(t, all, sizeof all / sizeof all[0], NULL, 0, &e)) die("st", &e);
    copy_seed("safetensors", "dtypes.safetensors", t, 1 << 16);
    if (wp_st_write_file(t, NULL, 0, NULL, 0, &e)) die("st", &e);
    copy_seed("safetensors", "empty.safetensors", t, 1 << 16);
    /* tiny-a's shards: the header and the first bytes of data */
    for (int s = 1; s <= 2; s++) {
        char p[256], nm[64];
        snprintf(p, sizeof p, TINY "/hf/model-0000%d-of-00002.safetensors", s);
        size_t n;
        uint8_t *d = slurp(p, &n);
        uint64_t hl;
        memcpy(&hl, d, 8);
        snprintf(nm, sizeof nm, "tiny-a-shard%d-head.safetensors", s);
        seed("safetensors", nm, d, (size_t)(8 + hl + 512 < n ? 8 + hl + 512 : n));
        free(d);
    }
    seeds("safetensors", "bad-header-len", "\xff\xff\xff\xff\xff\xff\xff\x7f{}");
    static const char js[] = "{\"\xc3\xa9\":{\"dtype\":\"F32\",\"shape\":[],\"data_offsets\":[0,4]}}";
    uint8_t u[8 + sizeof js - 1 + 4] = {0};
    u[0] = (uint8_t)(sizeof js - 1);
    memcpy(u + 8, js, sizeof js - 1);
    seed("safetensors", "utf8-name.safetensors", u, sizeof u);

    /* index.json for the harness's directory: a, b, sub/c and the odd kinds */
    seeds("ckpt_index", "ok.json", "{\"metadata\":{\"total_size\":14},\"weight_map\":{\"x\":\"a.safetensors\",\"y\":\"a.safetensors\",\"z\":\"b.safetensors\"}}");
    seeds("ckpt_index", "sub.json", "{\"weight_map\":{\"x\":\"a.safetensors\",\"y\":\"a.safetensors\",\"w\":\"sub/c.safetensors\"}}");
    seeds("ckpt_index", "link.json", "{\"weight_map\":{\"x\":\"link.safetensors\",\"y\":\"link.safetensors\"}}");
    seeds("ckpt_index", "fifo.json", "{\"weight_map\":{\"x\":\"fifo.safetensors\"}}");
    seeds("ckpt_index", "dir.json", "{\"weight_map\":{\"x\":\"dir.safetensors\"}}");
    seeds("ckpt_index", "dev.json", "{\"weight_map\":{\"x\":\"out.safetensors\"}}");
    seeds("ckpt_index", "dotdot.json", "{\"weight_map\":{\"x\":\"../a.safetensors\",\"y\":\"/etc/passwd\"}}");
    seeds("ckpt_index", "twice.json", "{\"weight_map\":{\"x\":\"a.safetensors\",\"x\":\"b.safetensors\"}}");
    seeds("ckpt_index", "missing.json", "{\"weight_map\":{\"x\":\"a.safetensors\"}}");
    copy_seed("ckpt_index", "tiny-a.index.json", TINY "/hf/model.safetensors.index.json", 1 << 16);
}

/* ---- config.json -------------------------------------------------------------------- */

static void config_seeds(void)
{
    copy_seed("config", "tiny-a.config.json", TINY "/hf/config.json", 1 << 16);
    static const char *const presets[] = {"tiny", "flash", "pro"};
    for (int i = 0; i < 3; i++) {
        wp_config c;
        wp_err e = {0};
        if (wp_synth_preset(&c, presets[i], &e)) die("preset", &e);
        if (i == 0 && wp_synth_trim(&c, 2, 3, 32, &e)) die("trim", &e);
        cJSON *j = wp_config_to_json(&c);
        char *s = cJSON_PrintUnformatted(j);
        char nm[64];
        snprintf(nm, sizeof nm, "%s%s.config.json", presets[i], i == 0 ? "-trimmed" : "");
        seeds("config", nm, s);
        free(s);
        cJSON_Delete(j);
    }
}

/* ---- .wpk, .wpkz, manifest, signatures --------------------------------------------------- */

static void key_of(const char *pem, wp_key **k)
{
    const char *p = fz_path("k.pem");
    fz_write(p, pem, strlen(pem));
    chmod(p, 0600);   /* a private key open to others is refused */
    wp_err e = {0};
    if (wp_key_load_private(p, k, &e)) die("key", &e);
}

static void container_seeds(void)
{
    wp_err e = {0};
    const char *w = fz_path("zoo.wpk");
    if (wpkz_write(w, 0, 0, &e)) die("zoo", &e);
    copy_seed("wpk", "zoo.wpk", w, 1 << 20);
    /* a tiny one of every small shape: one bf16 matrix, one fp8 with its scale */
    const char *s = fz_path("small.wpk");
    wpk_writer *wr;
    size_t id = 0, sid = 0;
    uint8_t zero[64] = {1, 2, 3};
    wpk_decl d1 = {.name = "w.weight", .kind = WPK_KIND_ENC, .enc = WP_ENC_FP8, .ndim = 2, .shape = {4, 8},
                   .br = 4, .bc = 8, .sfmt = WP_SCALE_E8M0};
    wpk_decl d2 = {.name = "w.scale", .kind = WPK_KIND_RAW, .dtype = WP_F8_E8M0, .ndim = 2, .shape = {1, 1},
                   .role = WPK_ROLE_SCALE};
    if (wpk_writer_open(&wr, s, NULL, &e) || wpk_writer_add(wr, &d1, &id, &e)) die("small", &e);
    d2.owner = id;
    if (wpk_writer_add(wr, &d2, &sid, &e) || wpk_writer_layout(wr, &e) ||
        wpk_writer_write(wr, id, 0, zero, 32, &e) || wpk_writer_write(wr, sid, 0, "\x7f", 1, &e) ||
        wpk_writer_commit(wr, &e))
        die("small", &e);
    copy_seed("wpk", "small-fp8.wpk", s, 1 << 20);

    /* a build: the small part, its manifest, signatures; then its .wpkz */
    const char *b = fz_path("build");
    char p[1200];
    mkdir(b, 0755);
    snprintf(p, sizeof p, "%s/model.wpk", b);
    if (rename(s, p)) die("rename", NULL);
    wp_manifest m;
    if (wp_manifest_create(b, 1, NULL, NULL, &m, &e)) die("manifest", &e);
    snprintf(p, sizeof p, "%s/manifest.json", b);
    copy_seed("manifest", "small-build.manifest.json", p, 1 << 20);
    size_t mn;
    uint8_t *mb = slurp(p, &mn);
    wp_key *ed, *ec;
    key_of(FZ_ED25519_PRIV, &ed);
    key_of(FZ_P256_PRIV, &ec);
    char *doc;
    size_t dn;
    if (wp_sig_make(ed, mb, mn, &doc, &dn, &e)) die("sig", &e);
    snprintf(p, sizeof p, "%s/manifest.sig", b);
    fz_write(p, doc, dn);
    free(doc);
    wp_manifest_free(&m);
    free(mb);
    const char *z = fz_path("build.wpkz");
    if (wpz_pack(b, z, &(wpz_opts){.level = 3, .chunk = 64}, NULL, &e)) die("pack", &e);
    copy_seed("wpkz", "small-build.wpkz", z, 1 << 20);
    unlink(z);
    const char *zz = fz_path("zoo-dir");
    mkdir(zz, 0755);
    snprintf(p, sizeof p, "%s/zoo.wpk", zz);
    if (wpkz_write(p, 0, 0, &e)) die("zoo", &e);
    if (wpz_pack(p, z, &(wpz_opts){.level = 1, .chunk = 512}, NULL, &e)) die("pack", &e);
    copy_seed("wpkz", "zoo.wpkz", z, 1 << 20);

    /* signature documents over FZ_MANIFEST by both keys */
    if (wp_sig_make(ed, FZ_MANIFEST, strlen(FZ_MANIFEST), &doc, &dn, &e)) die("sig", &e);
    seed("signature", "ed25519.sig", doc, dn);
    free(doc);
    if (wp_sig_make(ec, FZ_MANIFEST, strlen(FZ_MANIFEST), &doc, &dn, &e)) die("sig", &e);
    seed("signature", "p256.sig", doc, dn);
    free(doc);

    /* in-toto statement over the fixed resources, and DSSE bundles of it */
    static const char *const names[2] = FZ_RESOURCES;
    wp_resource res[2];
    for (int i = 0; i < 2; i++) {
        res[i].name = names[i];
        if (wp_sha256_buf(names[i], strlen(names[i]), res[i].sha256, &e)) die("sha", &e);
    }
    char *st;
    size_t sn;
    if (wp_intoto_statement("fuzz", res, 2, &st, &sn, &e)) die("statement", &e);
    seed("dsse", "statement.json", st, sn);
    wp_key *keys[2] = {ed, ec};
    for (int i = 0; i < 2; i++) {
        if (wp_dsse_bundle_make(keys[i], WP_INTOTO_PAYLOAD_TYPE, st, sn, &doc, &dn, &e)) die("dsse", &e);
        seed("dsse", i ? "p256.bundle.json" : "ed25519.bundle.json", doc, dn);
        free(doc);
    }
    free(st);

    /* PEM keys: the fixed ones, a truncated one, an RSA public key (refused) */
    seeds("pem", "ed25519.pem", FZ_ED25519_PRIV);
    seeds("pem", "ed25519.pub.pem", FZ_ED25519_PUB);
    seeds("pem", "p256.pem", FZ_P256_PRIV);
    seeds("pem", "p256.pub.pem", FZ_P256_PUB);
    seed("pem", "truncated.pem", FZ_P256_PUB, 60);
    seeds("pem", "rsa.pub.pem",
          "-----BEGIN PUBLIC KEY-----\n"
          "MFwwDQYJKoZIhvcNAQEBBQADSwAwSAJBAMCwJ3zHt6QM8wZHXdTtbXRfq0yE3T8H\n"
          "Q0xY0xWk0Zy4BBe0pCEXi/3cyk1sC4tt7IGMnqxhrmgQuLRNTfDsECsCAwEAAQ==\n"
          "-----END PUBLIC KEY-----\n");
    wp_key_free(ed);
    wp_key_free(ec);
}

/* ---- the other text inputs ----------------------------------------------------------------- */

static void text_seeds(void)
{
    /* digests for the digests harness's checkpoint (a.safetensors = "abcd",
     * sub/b.json = "{}\n") and the odd kinds of file it holds */
    seeds("digests", "ok.json",
          "{\"model\":\"fuzz\",\"revision\":\"1\",\"files\":["
          "{\"path\":\"a.safetensors\",\"size\":4,\"sha256\":\"88d4266fd4e6338d13b845fcf289579d209c897823b9217da3e161936f031589\"},"
          "{\"path\":\"sub/b.json\",\"sha256\":\"ca3d163bab055381827226140568f3bef7eaac187cebd76878e0b63e9e442356\"}]}");
    seeds("digests", "odd-kinds.json",
          "{\"files\":[{\"path\":\"fifo.safetensors\",\"sha256\":\"00\"},{\"path\":\"zero.safetensors\",\"size\":0,"
          "\"sha256\":\"e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855\"},"
          "{\"path\":\"dir.safetensors\",\"sha256\":\"e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855\"},"
          "{\"path\":\"out.json\",\"sha256\":\"e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855\"},"
          "{\"path\":\"link.safetensors\",\"size\":5,\"sha256\":\"88d4266fd4e6338d13b845fcf289579d209c897823b9217da3e161936f031589\"}]}");
    seeds("digests", "escape.json", "{\"files\":[{\"path\":\"../a.safetensors\",\"sha256\":\"x\"}]}");
    copy_seed("digests", "flash-head.json", "data/deepseek-v4-flash-60d8d707.json", 700);

    /* profiles: the built-in ones, with overrides after a NUL */
    DIR *d = opendir("convert/profiles");
    struct dirent *de;
    while (d && (de = readdir(d))) {
        if (de->d_name[0] == '.') continue;
        char p[512];
        snprintf(p, sizeof p, "convert/profiles/%s", de->d_name);
        copy_seed("profile", de->d_name, p, 1 << 16);
    }
    if (d) closedir(d);
    static const char ov[] = "{\"name\":\"o\",\"rules\":[{\"match\":\"^a\",\"to\":\"fp8\",\"block\":[32,32],\"scale\":\"f32\"}]}"
                             "\0compressor\\.wkv\\.weight$=fp8\n\\.attn\\.wq_a\\.weight$=passthrough\n"
                             "experts=fp8-128x128-f32\n(a|b)+=nvfp4\nx=fp9";
    seed("profile", "overrides", ov, sizeof ov - 1);

    /* token and prompt files */
    seeds("tokens", "one.txt", "0, 1, 2, 3\n");
    seeds("tokens", "batch.txt", "1 2 3\n\n4,5\n+6\t7\r\n");
    seeds("tokens", "prompts.txt", "# golden prompts\n1 2 3  # first\n\n4 5 6\n");
    seeds("tokens", "bad.txt", "1 2 x3\n2147483648\n-1\n");
}

/* ---- golden files for tiny-a's shapes ----------------------------------------------------- */

static void golden_seeds(void)
{
    wp_err e = {0};
    const uint64_t V = 512, hc = 4, d = 256, nL = 4;
    float *f = calloc(nL * hc * d * 2, sizeof(float));
    int32_t tok[4] = {1, 2, 3, 4};
    const char *p = fz_path("golden.safetensors");
    wp_st_entry minimal[] = {
        {.name = "tokens", .dtype = WP_I32, .ndim = 2, .shape = {1, 1}, .data = tok},
        {.name = "prefill_logits", .dtype = WP_F32, .ndim = 2, .shape = {1, V}, .data = f},
    };
    if (wp_st_write_file(p, minimal, 2, NULL, 0, &e)) die("golden", &e);
    copy_seed("golden", "minimal.safetensors", p, 1 << 20);
    wp_st_entry full[] = {
        {.name = "tokens", .dtype = WP_I32, .ndim = 2, .shape = {1, 1}, .data = tok},
        {.name = "prefill_logits", .dtype = WP_F32, .ndim = 2, .shape = {1, V}, .data = f},
        {.name = "layer_h_in0", .dtype = WP_F32, .ndim = 4, .shape = {1, 1, hc, d}, .data = f},
        {.name = "layer_h", .dtype = WP_F32, .ndim = 5, .shape = {nL, 1, 1, hc, d}, .data = f},
        {.name = "decode_tokens", .dtype = WP_I32, .ndim = 2, .shape = {1, 2}, .data = tok},
        {.name = "decode_logits", .dtype = WP_F32, .ndim = 3, .shape = {1, 2, V}, .data = f},
        {.name = "mtp_input_ids", .dtype = WP_I32, .ndim = 2, .shape = {1, 1}, .data = tok},
        {.name = "mtp_logits", .dtype = WP_F32, .ndim = 2, .shape = {1, V}, .data = f},
    };
    if (wp_st_write_file(p, full, sizeof full / sizeof full[0], NULL, 0, &e)) die("golden", &e);
    copy_seed("golden", "full.safetensors", p, 1 << 20);
    /* a reduced golden (`wpack golden --topk 2`): logits as top-k ids, values, lse */
    int32_t ids[4] = {7, 3, 1, 0};
    double lse[2] = {6.5, 6.5};
    wp_st_entry reduced[] = {
        {.name = "tokens", .dtype = WP_I32, .ndim = 2, .shape = {1, 1}, .data = tok},
        {.name = "prefill_logits_topk_ids", .dtype = WP_I32, .ndim = 2, .shape = {1, 2}, .data = ids},
        {.name = "prefill_logits_topk", .dtype = WP_F32, .ndim = 2, .shape = {1, 2}, .data = f},
        {.name = "prefill_logits_lse", .dtype = WP_F64, .ndim = 1, .shape = {1}, .data = lse},
        {.name = "decode_tokens", .dtype = WP_I32, .ndim = 2, .shape = {1, 1}, .data = tok},
        {.name = "decode_logits_topk_ids", .dtype = WP_I32, .ndim = 3, .shape = {1, 1, 2}, .data = ids},
        {.name = "decode_logits_topk", .dtype = WP_F32, .ndim = 3, .shape = {1, 1, 2}, .data = f},
        {.name = "decode_logits_lse", .dtype = WP_F64, .ndim = 2, .shape = {1, 1}, .data = lse},
        {.name = "mtp_input_ids", .dtype = WP_I32, .ndim = 2, .shape = {1, 1}, .data = tok},
        {.name = "mtp_logits_topk_ids", .dtype = WP_I32, .ndim = 2, .shape = {1, 2}, .data = ids + 2},
        {.name = "mtp_logits_topk", .dtype = WP_F32, .ndim = 2, .shape = {1, 2}, .data = f},
        {.name = "mtp_logits_lse", .dtype = WP_F64, .ndim = 1, .shape = {1}, .data = lse},
    };
    if (wp_st_write_file(p, reduced, sizeof reduced / sizeof reduced[0], NULL, 0, &e)) die("golden", &e);
    copy_seed("golden", "reduced.safetensors", p, 1 << 20);
    free(f);
}

/* ---- build directory programs (see fuzz_build_dir.c) --------------------------------------- */

static void build_dir_seeds(void)
{
    /* op, name, args: 1 = asset (0 model.wpk, 1 manifest.json, 2 manifest.sig) */
    static const uint8_t valid[] = {1, 8, 0, 0, 1, 0, 1, 0, 1, 1, 2, 0};
    static const uint8_t fifo_manifest[] = {1, 8, 0, 0, 5, 0};
    static const uint8_t fifo_part[] = {1, 0, 1, 0, 5, 8, 1, 1, 2, 0};
    static const uint8_t links[] = {1, 8, 0, 0, 4, 0, 2, 4, 1, 3, 4, 5, 10, 2, 7, 4, 0, 1, 3, 5};
    static const uint8_t devices[] = {1, 8, 0, 0, 1, 0, 1, 0, 6, 1, 1, 6, 3, 0, 6, 5, 0};
    static const uint8_t nested[] = {2, 7, 2, 7, 0, 3, 4, 'w', 'p', 'k', '!', 3, 3, 1, 9, 0, 0, 7, 7};
    static const uint8_t tampered[] = {1, 8, 0, 77, 1, 0, 1, 0, 1, 1, 2, 5};
    seed("build_dir", "valid", valid, sizeof valid);
    seed("build_dir", "fifo-manifest", fifo_manifest, sizeof fifo_manifest);
    seed("build_dir", "fifo-part", fifo_part, sizeof fifo_part);
    seed("build_dir", "links", links, sizeof links);
    seed("build_dir", "devices", devices, sizeof devices);
    seed("build_dir", "nested", nested, sizeof nested);
    seed("build_dir", "tampered", tampered, sizeof tampered);
}

int main(void)
{
    setenv("TMPDIR", "/tmp", 0);
    st_seeds();
    config_seeds();
    container_seeds();
    text_seeds();
    golden_seeds();
    build_dir_seeds();
    printf("mkseeds: wrote %s/*\n", CORPUS);
    return 0;
}
