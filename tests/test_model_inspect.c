/* test_inspect.c — `wpack inspect` as a user runs it: the tiny-a numbers in
 * human and --json output, exit 1 on checkpoints with a tensor removed,
 * renamed, reshaped or retyped (written with the safetensors writer), exit 2
 * with the reader's one-line message on every malformed corpus case; a
 * build, a .wpk whatever its name and a .wpkz listed tensor by tensor, the
 * rows checked against the manifest and against extraction. */
#include <cjson/cJSON.h>
#include <stdarg.h>
#include <unistd.h>
#include <sys/stat.h>

#include "model/model.h"
#include "tests/corpus.h"
#include "tests/harness.h"

#define TINY_HF WPT_TINY "/hf"
#define OUTCAP (1 << 16)

static char out[OUTCAP];

TEST(model_inspect_tiny_a_human)
{
    int rc = wpt_run(out, sizeof out, "%s inspect %s", wpt_wpack(), TINY_HF);
    CHECK_EQ_INT(rc, 0);
    /* fixtures README: 427 tensors, 2 shards, 1 hash layer, 2 CSA, 1 HCA,
     * 1 sliding-window layer, MTP without embed/head copies */
    CHECK_CONTAINS(out, ": 427 tensors, 6.75 MiB (7078066 bytes of tensor data) in 2 shards");
    CHECK_CONTAINS(out, "layers: 4 main: 1 hash-routed; 2 CSA, 1 HCA, 1 sliding-window; 1 MTP");
    CHECK_CONTAINS(out, "MTP: present (1 block), without embed/head copies");
    CHECK_CONTAINS(out, "inventory: ok (427 expected, 427 found)");
    CHECK_CONTAINS(out, "  F8_E8M0         164 tensors");
    CHECK_CONTAINS(out, "  experts              192 tensors");
    CHECK_CONTAINS(out, "  indexer               14 tensors");
}

static cJSON *run_json(int *rc, const char *fmt_path)
{
    *rc = wpt_run(out, sizeof out, "%s inspect %s --json 2>/dev/null", wpt_wpack(), fmt_path);
    return cJSON_Parse(out);
}

static double num(const cJSON *o, const char *a, const char *b)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, a);
    if (b) v = cJSON_GetObjectItemCaseSensitive(v, b);
    return cJSON_IsNumber(v) ? v->valuedouble : -1;
}

static int is_true(const cJSON *o, const char *a, const char *b)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(o, a), b);
    return cJSON_IsTrue(v);
}

TEST(model_inspect_tiny_a_json)
{
    int rc;
    cJSON *j = run_json(&rc, TINY_HF);
    CHECK_EQ_INT(rc, 0);
    REQUIRE(j);
    CHECK_EQ_INT(num(j, "tensors", NULL), 427);
    CHECK_EQ_INT(num(j, "shards", NULL), 2);
    CHECK_EQ_INT(num(j, "bytes", NULL), 7078066);   /* = index.json total_size */
    CHECK_EQ_INT(num(j, "file_bytes", NULL), 3824748 + 3295430);
    /* dtype histogram, counted independently from the fixture's headers */
    const cJSON *d = cJSON_GetObjectItemCaseSensitive(j, "dtypes");
    CHECK_EQ_INT(num(d, "F8_E8M0", "tensors"), 164);
    CHECK_EQ_INT(num(d, "I8", "tensors"), 120);
    CHECK_EQ_INT(num(d, "F32", "tensors"), 50);
    CHECK_EQ_INT(num(d, "BF16", "tensors"), 48);
    CHECK_EQ_INT(num(d, "F8_E4M3", "tensors"), 44);
    CHECK_EQ_INT(num(d, "I64", "tensors"), 1);
    CHECK_EQ_INT(num(d, "I64", "bytes"), 512 * 2 * 8);   /* tid2eid [512, 2] */
    CHECK_EQ_INT(cJSON_GetArraySize(d), 6);
    const cJSON *f = cJSON_GetObjectItemCaseSensitive(j, "families");
    CHECK_EQ_INT(num(f, "experts", "tensors"), 192);
    CHECK_EQ_INT(num(f, "mtp", "tensors"), 87);
    CHECK_EQ_INT(num(f, "embed", "bytes"), 512 * 256 * 2);
    CHECK_EQ_INT(num(j, "layers", "main"), 4);
    CHECK_EQ_INT(num(j, "layers", "hash"), 1);
    CHECK_EQ_INT(num(j, "layers", "csa"), 2);
    CHECK_EQ_INT(num(j, "layers", "hca"), 1);
    CHECK_EQ_INT(num(j, "layers", "sliding_window"), 1);
    CHECK_EQ_INT(num(j, "layers", "mtp"), 1);
    CHECK(is_true(j, "mtp", "present"));
    CHECK(!is_true(j, "mtp", "embed_copy") && !is_true(j, "mtp", "head_copy"));
    CHECK(is_true(j, "inventory", "checked") && is_true(j, "inventory", "ok"));
    CHECK_EQ_INT(num(j, "inventory", "expected"), 427);
    CHECK_EQ_INT(num(j, "inventory", "missing"), 0);
    cJSON_Delete(j);
}

/* ---- variants of tiny-a written with the safetensors writer ------------------ */

enum { V_REMOVE, V_RENAME, V_RESHAPE, V_RETYPE, V_ADD_HEAD_COPY };

/* Rewrite tiny-a into dir with one change to tensor `name`. */
static int write_variant(const char *dir, int op, const char *name, const char *arg)
{
    wp_err e = {0};
    wp_ckpt *k;
    if (wp_ckpt_open(&k, TINY_HF, &e)) return -1;
    size_t nt = wp_ckpt_count(k);
    const char **names = calloc(nt + 1, sizeof *names), **shards = calloc(nt + 1, sizeof *shards);
    char (*newname)[160] = calloc(nt + 1, sizeof *newname);
    size_t ni = 0;
    uint64_t total = 0;
    int rc = -1;
    for (size_t s = 0; s < wp_ckpt_file_count(k); s++) {
        wp_st_file *f = wp_ckpt_file(k, s);
        const char *base = strrchr(wp_st_path(f), '/') + 1;
        size_t n = wp_st_count(f), m = 0;
        wp_st_entry *en = calloc(n + 1, sizeof *en);
        for (size_t i = 0; i < n; i++) {
            const wp_tensor_info *t = wp_st_tensor(f, i);
            wp_st_entry x = {.name = t->name, .dtype = t->dtype, .ndim = t->ndim};
            memcpy(x.shape, t->shape, sizeof x.shape);
            x.data = wp_st_data(f, t, &e);
            if (!strcmp(t->name, name)) {
                if (op == V_REMOVE) continue;
                if (op == V_RENAME) x.name = arg;
                if (op == V_RESHAPE) {   /* same bytes, other shape */
                    x.shape[0] = t->shape[0] / 2;
                    x.shape[1] = t->shape[1] * 2;
                }
                if (op == V_RETYPE) x.dtype = WP_F16;   /* BF16 -> F16, same bytes */
                if (op == V_ADD_HEAD_COPY) {
                    en[m++] = x;
                    x.name = arg;
                }
            }
            en[m++] = x;
        }
        char p[4096];
        snprintf(p, sizeof p, "%s/%s", dir, base);
        if (wp_st_write_file(p, en, m, NULL, 0, &e)) {
            free(en);
            goto out;
        }
        for (size_t i = 0; i < m; i++) {
            snprintf(newname[ni], sizeof newname[ni], "%s", en[i].name);
            names[ni] = newname[ni];
            shards[ni++] = base;
            uint64_t nb;
            wp_dtype_nbytes(en[i].dtype, en[i].shape, en[i].ndim, &nb);
            total += nb;
        }
        free(en);
    }
    if (wp_st_write_index(wpt_path("%s/model.safetensors.index.json", dir), names, shards, ni,
                          total, &e))
        goto out;
    rc = wpt_run(NULL, 0, "cp %s/config.json %s/", TINY_HF, dir) ? -1 : 0;
out:
    if (rc) printf("    write_variant: %s\n", e.msg);
    free(names);
    free(shards);
    free(newname);
    wp_ckpt_close(k);
    return rc;
}

TEST(model_inspect_detects_inventory_problems)
{
    static const struct {
        int op;
        const char *name, *arg;
        const char *lines[3];
    } cases[] = {
        {V_REMOVE, "layers.1.attn.indexer.wq_b.scale", NULL,
         {"inventory: 1 problem (1 missing, 0 unexpected, 0 mis-shaped, 0 mis-typed; 427 expected, 426 found)",
          "  missing    layers.1.attn.indexer.wq_b.scale: expected F8_E8M0 [16,1], not in the checkpoint"}},
        {V_RENAME, "layers.3.attn.wkv.weight", "layers.3.attn.wkv_x.weight",
         {"inventory: 2 problems (1 missing, 1 unexpected, 0 mis-shaped, 0 mis-typed; 427 expected, 427 found)",
          "  missing    layers.3.attn.wkv.weight: expected F8_E4M3 [128,256], not in the checkpoint",
          "  unexpected layers.3.attn.wkv_x.weight: found F8_E4M3 [128,256], not implied by config.json"}},
        {V_RESHAPE, "layers.2.attn.compressor.ape", NULL,
         {"inventory: 1 problem (0 missing, 0 unexpected, 1 mis-shaped, 0 mis-typed; 427 expected, 427 found)",
          "  mis-shaped layers.2.attn.compressor.ape: expected F32 [128,128], found F32 [64,256]"}},
        {V_RETYPE, "mtp.0.enorm.weight", NULL,
         {"inventory: 1 problem (0 missing, 0 unexpected, 0 mis-shaped, 1 mis-typed; 427 expected, 427 found)",
          "  mis-typed  mtp.0.enorm.weight: expected BF16 [256], found F16 [256]"}},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char dir[4096];
    snprintf(dir, sizeof dir, "%s/v%zu", wpt_tmpdir(), i);
        REQUIRE(mkdir(dir, 0755) == 0);
        REQUIRE(write_variant(dir, cases[i].op, cases[i].name, cases[i].arg) == 0);
        int rc = wpt_run(out, sizeof out, "%s inspect %s", wpt_wpack(), dir);
        CHECKF(rc == 1, "case %zu: exit %d\n%s", i, rc, out);
        for (int l = 0; l < 3 && cases[i].lines[l]; l++) CHECK_CONTAINS(out, cases[i].lines[l]);
        /* the same verdict machine-readably */
        cJSON *j = run_json(&rc, dir);
        CHECK_EQ_INT(rc, 1);
        REQUIRE(j);
        CHECK(is_true(j, "inventory", "checked") && !is_true(j, "inventory", "ok"));
        const cJSON *is = cJSON_GetObjectItemCaseSensitive(
            cJSON_GetObjectItemCaseSensitive(j, "inventory"), "issues");
        const cJSON *first = cJSON_GetArrayItem(is, 0);
        CHECK(first && !strcmp(cJSON_GetObjectItemCaseSensitive(first, "name")->valuestring,
                               cases[i].name));
        cJSON_Delete(j);
    }
}

/* Flash-Base style: an MTP head copy is reported, and is no problem. */
TEST(model_inspect_mtp_head_copy)
{
    const char *dir = wpt_tmpdir();
    REQUIRE(write_variant(dir, V_ADD_HEAD_COPY, "mtp.0.norm.weight", "mtp.0.head.weight") == 0);
    /* (a copy of the wrong shape: [256] is not [V, d]) */
    int rc = wpt_run(out, sizeof out, "%s inspect %s", wpt_wpack(), dir);
    CHECK_EQ_INT(rc, 1);
    CHECK_CONTAINS(out, "MTP: present (1 block), with a head copy, no embed copy");
    CHECK_CONTAINS(out, "mis-shaped mtp.0.head.weight: expected BF16 [512,256], found BF16 [256]");
    char dir2[4096];
    snprintf(dir2, sizeof dir2, "%s/ok", wpt_tmpdir());
    REQUIRE(mkdir(dir2, 0755) == 0);
    REQUIRE(write_variant(dir2, V_ADD_HEAD_COPY, "head.weight", "mtp.0.head.weight") == 0);
    rc = wpt_run(out, sizeof out, "%s inspect %s", wpt_wpack(), dir2);
    CHECK_EQ_INT(rc, 0);
    CHECK_CONTAINS(out, "428 tensors");
    CHECK_CONTAINS(out, "inventory: ok (427 expected, 428 found, 1 optional)");
}

TEST(model_inspect_single_file)
{
    /* alone: a summary, no check, and it says so */
    char f[4096];
    snprintf(f, sizeof f, "%s/model-00002-of-00002.safetensors", wpt_tmpdir());
    REQUIRE(wpt_run(NULL, 0, "cp %s/model-00002-of-00002.safetensors %s", TINY_HF, f) == 0);
    int rc = wpt_run(out, sizeof out, "%s inspect %s", wpt_wpack(), f);
    CHECK_EQ_INT(rc, 0);
    CHECK_CONTAINS(out, ": 213 tensors");
    CHECK_CONTAINS(out, "in 1 shard,");
    CHECK_CONTAINS(out, "inventory: not checked (no config.json next to the file)");
    CHECK_CONTAINS(out, "MTP: present (1 block)");
    cJSON *j = run_json(&rc, f);
    CHECK_EQ_INT(rc, 0);
    REQUIRE(j);
    CHECK(!is_true(j, "inventory", "checked"));
    CHECK(cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(j, "config")));
    cJSON_Delete(j);
    /* beside its config.json: its own tensors are checked, the rest of the
     * model is in the other shard */
    rc = wpt_run(out, sizeof out, "%s inspect %s/model-00002-of-00002.safetensors", wpt_wpack(),
                 TINY_HF);
    CHECK_EQ_INT(rc, 0);
    CHECK_CONTAINS(out, "inventory: ok (one file: 427 expected, 213 found, 214 in other files)");
}

TEST(model_inspect_unreadable)
{
    /* a directory needs its config.json */
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/noconf", wpt_tmpdir());
    REQUIRE(mkdir(dir, 0755) == 0);
    REQUIRE(wpt_run(NULL, 0, "cp %s/*.safetensors %s/*.index.json %s/", TINY_HF, TINY_HF, dir) == 0);
    int rc = wpt_run(out, sizeof out, "%s inspect %s 2>&1 >/dev/null", wpt_wpack(), dir);
    CHECK_EQ_INT(rc, 2);
    CHECK(!strcmp(out, wpt_path("wpack inspect: %s/config.json: missing (a checkpoint directory needs it)\n", dir)));
    /* a bad config.json is unreadable input, with the parser's message */
    REQUIRE(wpt_run(NULL, 0, "grep -v hidden_size %s/config.json > %s/config.json", TINY_HF, dir) == 0);
    rc = wpt_run(out, sizeof out, "%s inspect %s 2>&1 >/dev/null", wpt_wpack(), dir);
    CHECK_EQ_INT(rc, 2);
    CHECK(!strcmp(out, wpt_path("wpack inspect: %s/config.json: hidden_size: missing\n", dir)));
    /* --json: the error on stderr, a JSON error document on stdout */
    cJSON *j = run_json(&rc, dir);
    CHECK_EQ_INT(rc, 2);
    REQUIRE(j);
    CHECK_CONTAINS(cJSON_GetObjectItemCaseSensitive(j, "error")->valuestring, "hidden_size: missing");
    cJSON_Delete(j);
    /* usage */
    CHECK_EQ_INT(wpt_run(out, sizeof out, "%s inspect", wpt_wpack()), 2);
    CHECK_CONTAINS(out, "missing PATH");
    CHECK_EQ_INT(wpt_run(out, sizeof out, "%s inspect %s --bogus", wpt_wpack(), TINY_HF), 2);
    CHECK_CONTAINS(out, "unknown option '--bogus'");
    CHECK_EQ_INT(wpt_run(out, sizeof out, "%s inspect --help", wpt_wpack()), 0);
    CHECK_CONTAINS(out, "usage: wpack inspect PATH [options]");
    CHECK_EQ_INT(wpt_run(out, sizeof out, "%s inspect /nonexistent/x", wpt_wpack()), 2);
    CHECK_CONTAINS(out, "/nonexistent/x");
}

TEST(model_inspect_malformed_corpus)
{
    char err[512];
    const char *dir = wpt_tmpdir();
    REQUIRE(wpt_corpus_generate(dir, err, sizeof err) == 0);
    REQUIRE(wpt_corpus_count() >= 30);
    for (size_t i = 0; i < wpt_corpus_count(); i++) {
        const wpt_corpus_case *c = wpt_corpus_case_at(i);
        /* stderr captured; stdout to a file that must stay empty */
        char so[4096];
    snprintf(so, sizeof so, "%s/stdout.txt", dir);
        int rc = wpt_run(out, sizeof out, "%s inspect '%s/%s' 2>&1 >%s", wpt_wpack(), dir,
                         c->path, so);
        CHECKF(rc == 2, "%s: exit %d: %s", c->path, rc, out);
        CHECKF(strstr(out, c->expect) != NULL, "%s: expected \"%s\" in: %s", c->path, c->expect, out);
        char *nl = strchr(out, '\n');
        CHECKF(nl && nl[1] == 0, "%s: not exactly one line: %s", c->path, out);
        CHECKF(!strncmp(out, "wpack inspect: ", 15), "%s: %s", c->path, out);
        struct stat st;
        CHECKF(stat(so, &st) == 0 && st.st_size == 0, "%s: stdout not empty", c->path);
    }
}

/* inspect on a build (through trust/build.h): files, tensors, bytes per
 * encoding, manifest root, signature files; a lone .wpk too; a damaged
 * container is refused in one line. */
TEST(model_inspect_build)
{
    const char *d = wpt_tmpdir();
    static char out[1 << 20];   /* the document lists every tensor */
    REQUIRE(wpt_run(out, sizeof out, "%s convert %s/hf -o %s/b --profile hopper -q", wpt_wpack(), WPT_TINY, d) == 0);
    REQUIRE(wpt_run(out, sizeof out, "%s inspect %s/b --json 2>/dev/null", wpt_wpack(), d) == 0);
    cJSON *j = cJSON_Parse(out);
    REQUIRE(j);
    CHECK(!strcmp(cJSON_GetObjectItem(j, "kind")->valuestring, "build"));
    CHECK_EQ_INT(cJSON_GetObjectItem(j, "tensors")->valuedouble, 212);   /* 158 weights + 54 fp8 scales */
    CHECK(cJSON_IsTrue(cJSON_GetObjectItem(j, "manifest")));
    CHECK(cJSON_IsFalse(cJSON_GetObjectItem(j, "signed")));
    CHECK_EQ_INT(strlen(cJSON_GetObjectItem(j, "root_sha256")->valuestring), 64);
    /* the encodings account for every tensor byte, and every weight */
    double bytes = 0, weights = 0;
    for (cJSON *x = cJSON_GetObjectItem(j, "encodings")->child; x; x = x->next) {
        bytes += cJSON_GetObjectItem(x, "bytes")->valuedouble;
        weights += cJSON_GetObjectItem(x, "tensors")->valuedouble;
    }
    CHECK_EQ_INT(bytes, cJSON_GetObjectItem(j, "tensor_bytes")->valuedouble);
    CHECK_EQ_INT(weights, 158);
    CHECK(cJSON_GetObjectItem(cJSON_GetObjectItem(j, "encodings"), "fp8") != NULL);
    cJSON_Delete(j);
    /* signed: the summary says so (checking it is verify's job) */
    REQUIRE(wpt_run(out, sizeof out, "%s keygen -q -o %s/k && %s sign -q %s/b --key %s/k.pem --dsse", wpt_wpack(), d,
                    wpt_wpack(), d, d) == 0);
    REQUIRE(wpt_run(out, sizeof out, "%s inspect %s/b", wpt_wpack(), d) == 0);
    CHECK_CONTAINS(out, "wpack build, 1 file, 212 tensors");
    CHECK_CONTAINS(out, "signature: manifest.sig + manifest.dsse.json");
    /* a lone .wpk */
    REQUIRE(wpt_run(out, sizeof out, "%s inspect %s/b/model.wpk --json 2>/dev/null", wpt_wpack(), d) == 0);
    j = cJSON_Parse(out);
    REQUIRE(j);
    CHECK(!strcmp(cJSON_GetObjectItem(j, "kind")->valuestring, "wpk"));
    CHECK(cJSON_IsFalse(cJSON_GetObjectItem(j, "manifest")));
    cJSON_Delete(j);
    /* a truncated container: one line, exit 2 */
    REQUIRE(wpt_run(out, sizeof out, "head -c 100 %s/b/model.wpk > %s/cut.wpk", d, d) == 0);
    CHECK_EQ_INT(wpt_run(out, sizeof out, "%s inspect %s/cut.wpk 2>&1", wpt_wpack(), d), 2);
    CHECK_CONTAINS(out, "cut.wpk");
    CHECK(strchr(out, '\n') == out + strlen(out) - 1);
}

/* The table's rows after its heading ("name ... sha256 ..."): each row's
 * digest prefix must sit under the heading's "sha256" and be the JSON row's. */
static int check_table(const char *text, const cJSON *rows, const char *what)
{
    const char *h = strstr(text, "tensors:\nname ");
    if (!h) return wpt_fail_at(__FILE__, __LINE__, "%s: no table", what), -1;
    h += 9;
    const char *nl = strchr(h, '\n');
    const char *dcol = strstr(h, "sha256");
    if (!nl || !dcol || dcol > nl) return wpt_fail_at(__FILE__, __LINE__, "%s: no sha256 column", what), -1;
    size_t col = (size_t)(dcol - h), n = 0;
    const char *line = nl + 1;
    for (const cJSON *r = rows->child; r; r = r->next, n++) {
        const char *end = strchr(line, '\n');
        const char *name = cJSON_GetObjectItem(r, "name")->valuestring;
        const char *dg = cJSON_GetObjectItem(r, "sha256")->valuestring;
        if (!end || (size_t)(end - line) < col + 12 || strncmp(line, name, strlen(name)) || line[strlen(name)] != ' ' ||
            strncmp(line + col, dg, 12) || line[col + 12] != ' ') {
            wpt_fail_at(__FILE__, __LINE__, "%s: row %zu is not %s with %.12s under 'sha256': %.*s", what, n, name, dg,
                        end ? (int)(end - line) : 80, line);
            return -1;
        }
        line = end + 1;
    }
    return 0;
}

static cJSON *doc_of(const char *what, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static cJSON *doc_of(const char *what, const char *fmt, ...)
{
    static char buf[1 << 21];
    char cmd[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    int rc = wpt_run(buf, sizeof buf, "%s 2>/dev/null", cmd);
    cJSON *j = cJSON_Parse(buf);
    if (rc || !j) wpt_fail_at(__FILE__, __LINE__, "%s: exit %d, %s", what, rc, j ? "" : "no JSON");
    return j;
}

/* The rows a listing shares whatever it was read from. */
static int same_rows(const cJSON *a, const cJSON *b, const char *what, int same_file_name)
{
    if (cJSON_GetArraySize(a) != cJSON_GetArraySize(b))
        return wpt_fail_at(__FILE__, __LINE__, "%s: %d rows, expected %d", what, cJSON_GetArraySize(b),
                           cJSON_GetArraySize(a)), -1;
    static const char *keys[] = {"file", "name", "encoding", "shape", "bytes", "offset", "sha256", "scale", "scale_of",
                                 "experts"};
    for (const cJSON *x = a->child, *y = b->child; x && y; x = x->next, y = y->next)
        for (size_t k = same_file_name ? 0 : 1; k < sizeof keys / sizeof keys[0]; k++)
            if (!cJSON_Compare(cJSON_GetObjectItem(x, keys[k]), cJSON_GetObjectItem(y, keys[k]), 1))
                return wpt_fail_at(__FILE__, __LINE__, "%s: %s: %s differs", what,
                                   cJSON_GetObjectItem(x, "name")->valuestring, keys[k]), -1;
    return 0;
}

/* issue 12 item 6: a build, a lone .wpk under any name and a .wpkz list every
 * tensor; every row is the manifest's (name, file, offset, bytes, digest) and
 * every listed name extracts from the .wpkz to bytes with the listed digest. */
TEST(model_inspect_lists_tensors)
{
    const char *w = wpt_wpack();
    char d[512];
    snprintf(d, sizeof d, "%s", wpt_tmpdir());
    REQUIRE(wpt_run(out, sizeof out, "%s convert %s -o %s/b --profile reference -q && %s pack -q %s/b -o %s/b.wpkz && "
                    "cp %s/b/model.wpk %s/model.bin && cp %s/b.wpkz %s/archive.bin",
                    w, TINY_HF, d, w, d, d, d, d, d, d) == 0);
    cJSON *jb = doc_of("build", "%s inspect %s/b --json", w, d);
    cJSON *jz = doc_of("wpkz", "%s inspect %s/b.wpkz --json", w, d);
    cJSON *jw = doc_of("renamed wpk", "%s inspect %s/model.bin --json", w, d);
    cJSON *ja = doc_of("renamed wpkz", "%s inspect %s/archive.bin --tensors --json", w, d);
    cJSON *ju = doc_of("unpack --list", "%s unpack %s/b.wpkz --list --json", w, d);
    REQUIRE(jb && jz && jw && ja && ju);
    const cJSON *rows = cJSON_GetObjectItem(jb, "tensor_list");
    REQUIRE(cJSON_IsArray(rows));
    CHECK_EQ_INT(cJSON_GetArraySize(rows), 217);
    CHECK_EQ_INT(num(jb, "tensors", NULL), 217);
    CHECK(!strcmp(cJSON_GetObjectItem(jw, "kind")->valuestring, "wpk"));
    CHECK(!strcmp(cJSON_GetObjectItem(jz, "kind")->valuestring, "wpkz"));
    CHECK(!strcmp(cJSON_GetObjectItem(ja, "kind")->valuestring, "wpkz"));
    same_rows(rows, cJSON_GetObjectItem(jz, "tensor_list"), "the .wpkz", 1);
    same_rows(rows, cJSON_GetObjectItem(jw, "tensor_list"), "the renamed .wpk", 0);   /* its file is model.bin */
    same_rows(rows, cJSON_GetObjectItem(ja, "tensor_list"), "the renamed .wpkz", 1);
    same_rows(rows, cJSON_GetObjectItem(ju, "tensor_list"), "unpack --list", 1);
    CHECK(cJSON_GetObjectItem(ju, "encodings") != NULL);   /* the per-encoding totals stay */
    /* the manifest (written by convert) has every tensor: same file, offset, size, digest */
    uint8_t *mb;
    size_t mn;
    REQUIRE(wpt_read_file(wpt_path("%s/b/manifest.json", d), &mb, &mn) == 0);
    cJSON *man = cJSON_ParseWithLength((const char *)mb, mn);
    free(mb);
    REQUIRE(man);
    const cJSON *mt = cJSON_GetObjectItem(man, "tensors");
    CHECK_EQ_INT(cJSON_GetArraySize(mt), cJSON_GetArraySize(rows));
    size_t stacks = 0;
    for (const cJSON *r = rows->child; r; r = r->next) {
        const char *name = cJSON_GetObjectItem(r, "name")->valuestring;
        const cJSON *m = NULL;
        for (const cJSON *x = mt->child; x && !m; x = x->next)
            if (!strcmp(cJSON_GetObjectItem(x, "name")->valuestring, name)) m = x;
        CHECKF(m != NULL, "%s: not in the manifest", name);
        if (!m) continue;
        CHECKF(!strcmp(cJSON_GetObjectItem(m, "sha256")->valuestring, cJSON_GetObjectItem(r, "sha256")->valuestring) &&
                   !strcmp(cJSON_GetObjectItem(m, "file")->valuestring, cJSON_GetObjectItem(r, "file")->valuestring) &&
                   num(m, "offset", NULL) == num(r, "offset", NULL) && num(m, "size", NULL) == num(r, "bytes", NULL),
               "%s: the listing differs from the manifest", name);
        const cJSON *x = cJSON_GetObjectItem(r, "experts");
        if (!cJSON_IsNull(x)) {
            stacks++;
            /* tiny-a: 8 routed experts, sources layers.L.ffn.experts.E.wK.{weight,scale} */
            CHECK_EQ_INT(num(x, "count", NULL), 8);
            CHECK_EQ_INT(cJSON_GetArraySize(cJSON_GetObjectItem(x, "sources")), 8);
            const char *rg = cJSON_GetObjectItem(x, "sources_range")->valuestring;
            CHECKF(rg && strstr(rg, ".ffn.experts.{0..7}.w"), "%s: sources_range %s", name, rg ? rg : "null");
            CHECK_EQ_INT(num(x, "stride", NULL) * 8, num(r, "bytes", NULL));
        }
    }
    CHECK_EQ_INT(stacks, 5 * 3 * 2);   /* 4 layers + 1 MTP block, w1/w2/w3, weight and scale */
    cJSON_Delete(man);
    /* listed names extract, to bytes with the listed digest: every stacked
     * tensor and every 4th other one, in one script (one shell, one sha256sum) */
    FILE *sh = fopen(wpt_path("%s/x.sh", d), "w");
    REQUIRE(sh);
    size_t k = 0, tried = 0;
    for (const cJSON *r = cJSON_GetObjectItem(jz, "tensor_list")->child; r; r = r->next, k++) {
        CHECK(num(r, "compressed_bytes", NULL) > 0);
        if (k % 4 && cJSON_IsNull(cJSON_GetObjectItem(r, "experts"))) continue;
        fprintf(sh, "%s unpack -q %s/b.wpkz --tensor '%s' -o %s/x%03zu.bin >/dev/null || exit 1\n", w, d,
                cJSON_GetObjectItem(r, "name")->valuestring, d, k);
        tried++;
    }
    fprintf(sh, "cd %s && sha256sum x*.bin\n", d);
    fclose(sh);
    static char sums[1 << 16];
    CHECK_EQ_INT(wpt_run(sums, sizeof sums, "sh %s/x.sh", d), 0);
    k = 0;
    size_t matched = 0;
    for (const cJSON *r = cJSON_GetObjectItem(jz, "tensor_list")->child; r; r = r->next, k++) {
        char line[128];
        snprintf(line, sizeof line, "%.64s  x%03zu.bin\n", cJSON_GetObjectItem(r, "sha256")->valuestring, k);
        matched += strstr(sums, line) != NULL;
    }
    CHECK(tried > 60);
    CHECK_EQ_INT(matched, tried);
    /* the human tables: one row per tensor under aligned columns */
    static char text[1 << 20];
    CHECK_EQ_INT(wpt_run(text, sizeof text, "%s inspect %s/b", w, d), 0);
    CHECK_CONTAINS(text, "wpack build, 1 file, 217 tensors");
    check_table(text, rows, "inspect BUILD");
    CHECK_CONTAINS(text, "  8 x layers.0.ffn.experts.{0..7}.w1.weight\n");
    CHECK_EQ_INT(wpt_run(text, sizeof text, "%s inspect %s/b.wpkz --tensors", w, d), 0);
    CHECK_CONTAINS(text, ".wpkz archive, 2 files, 217 tensors in 1 .wpk file");
    CHECK_CONTAINS(text, "compressed");
    check_table(text, rows, "inspect X.wpkz");
    CHECK_EQ_INT(wpt_run(text, sizeof text, "%s unpack %s/b.wpkz --list", w, d), 0);
    CHECK_CONTAINS(text, "encoding    tensors          raw   compressed   ratio");
    check_table(text, rows, "unpack --list");
    cJSON_Delete(jb), cJSON_Delete(jz), cJSON_Delete(jw), cJSON_Delete(ja), cJSON_Delete(ju);

    /* --deep is a checkpoint's: a .wpkz is refused like a build */
    CHECK_EQ_INT(wpt_run(text, sizeof text, "%s inspect %s/b.wpkz --deep", w, d), 2);
    CHECK_CONTAINS(text, "'wpack unpack");
    /* the failure: a .wpk (or .wpkz) given where a checkpoint goes is
     * named as what it is, not read as a safetensors header length */
    CHECK_EQ_INT(wpt_run(text, sizeof text, "%s plan %s/model.bin 2>&1", w, d), 2);
    CHECK_CONTAINS(text, "model.bin: a wpack .wpk container (a build's file), not a safetensors file");
    CHECK_EQ_INT(wpt_run(text, sizeof text, "%s convert %s/archive.bin -o %s/c 2>&1", w, d, d), 2);
    CHECK_CONTAINS(text, "archive.bin: a wpack .wpkz archive (a packed build), not a safetensors file");
    /* a truncated .wpkz is the archive reader's refusal, one line */
    CHECK_EQ_INT(wpt_run(text, sizeof text, "head -c 1000 %s/b.wpkz > %s/cut.wpkz && %s inspect %s/cut.wpkz 2>&1", d, d,
                         w, d), 2);
    CHECK(!strcmp(text, wpt_path("wpack inspect: %s/cut.wpkz: no footer (truncated, or not a complete .wpkz)\n", d)));
}

/* --tensors on a checkpoint: every safetensors tensor with its shard; the
 * bytes add up to the index's total_size, and the summary is unchanged. */
TEST(model_inspect_checkpoint_tensors)
{
    static char text[1 << 20];
    cJSON *j = doc_of("checkpoint", "%s inspect %s --tensors --json", wpt_wpack(), TINY_HF);
    REQUIRE(j);
    const cJSON *rows = cJSON_GetObjectItem(j, "tensor_list");
    CHECK_EQ_INT(cJSON_GetArraySize(rows), 427);
    CHECK_EQ_INT(num(j, "tensors", NULL), 427);
    double bytes = 0;
    size_t in_first = 0;
    for (const cJSON *r = rows ? rows->child : NULL; r; r = r->next) {
        bytes += num(r, "bytes", NULL);
        const char *f = cJSON_GetObjectItem(r, "file")->valuestring;
        CHECKF(!strcmp(f, "model-00001-of-00002.safetensors") || !strcmp(f, "model-00002-of-00002.safetensors"),
               "file %s", f);
        in_first += !strcmp(f, "model-00001-of-00002.safetensors");
        CHECK(cJSON_GetObjectItem(r, "dtype") && cJSON_IsArray(cJSON_GetObjectItem(r, "shape")));
    }
    CHECK_EQ_INT(bytes, 7078066);   /* = index.json total_size */
    CHECK_EQ_INT(in_first, 427 - 213);   /* the second shard holds 213 (model_inspect_single_file) */
    cJSON_Delete(j);
    /* without --tensors: no list */
    j = doc_of("checkpoint", "%s inspect %s --json", wpt_wpack(), TINY_HF);
    REQUIRE(j);
    CHECK(cJSON_GetObjectItem(j, "tensor_list") == NULL);
    cJSON_Delete(j);
    CHECK_EQ_INT(wpt_run(text, sizeof text, "%s inspect %s --tensors", wpt_wpack(), TINY_HF), 0);
    CHECK_CONTAINS(text, "inventory: ok (427 expected, 427 found)");
    CHECK_CONTAINS(text, "tensors:\nname ");
    const char *t = strstr(text, "tensors:\nname ");
    size_t lines = 0;
    for (const char *p = t ? t : ""; *p; p++) lines += *p == '\n';
    CHECK_EQ_INT(lines, 1 + 1 + 427);
    CHECK_CONTAINS(text, "embed.weight ");
}
