/* test_trust_list.c — the tensor listing of a build (trust/build_list.c):
 * every part's directory, in part then directory order, with the scale ties
 * resolved to names, the same rows from the build's .wpkz, the JSON rows,
 * and the compact form of a stack's source names (regular names as a range,
 * anything else not). */
#include <cjson/cJSON.h>
#include <sys/stat.h>
#include <unistd.h>

#include "format/pack.h"
#include "tests/harness.h"
#include "tests/wpk_zoo.h"
#include "trust/build.h"

/* A stack of n experts whose sources are names[0..n*per). */
static wpk_tensor stack(uint64_t n, uint32_t per, const char *const *names)
{
    wpk_tensor t = {.name = "s", .stacked = 1, .n_experts = n, .n_sources = (uint32_t)(n * per), .sources = names};
    return t;
}

static const char *range_of(wpk_tensor t)
{
    static char out[512];
    int rc = wp_tensor_sources_range(&t, out, sizeof out);
    return rc ? "(error)" : out;
}

TEST(trust_list_sources_range)
{
    const char *reg[] = {"layers.3.ffn.experts.0.w1.weight", "layers.3.ffn.experts.1.w1.weight",
                         "layers.3.ffn.experts.2.w1.weight"};
    CHECK(!strcmp(range_of(stack(3, 1, reg)), "layers.3.ffn.experts.{0..2}.w1.weight"));
    /* a slice of experts (expert parallelism): numbered from where it starts,
     * across a change of digit count */
    const char *ep[] = {"x.experts.8.w2.weight", "x.experts.9.w2.weight", "x.experts.10.w2.weight",
                        "x.experts.11.w2.weight"};
    CHECK(!strcmp(range_of(stack(4, 1, ep)), "x.experts.{8..11}.w2.weight"));
    /* the prefix shares a digit with every number: the range is still the whole number */
    const char *dig[] = {"e.10.w", "e.11.w", "e.12.w"};
    CHECK(!strcmp(range_of(stack(3, 1, dig)), "e.{10..12}.w"));
    /* fused w13: two sources per expert, expert-major */
    const char *fused[] = {"e.0.w1.weight", "e.0.w3.weight", "e.1.w1.weight", "e.1.w3.weight"};
    CHECK(!strcmp(range_of(stack(2, 2, fused)), "e.{0..1}.w1.weight + e.{0..1}.w3.weight"));
    /* one expert: its name */
    const char *one[] = {"e.5.w1.weight"};
    CHECK(!strcmp(range_of(stack(1, 1, one)), "e.5.w1.weight"));
    /* not a pattern: a gap, an order change, leading zeros, another suffix, no number */
    const char *gap[] = {"e.0.w", "e.2.w", "e.3.w"};
    CHECK(!strcmp(range_of(stack(3, 1, gap)), ""));
    const char *swap[] = {"e.0.w", "e.2.w", "e.1.w", "e.3.w"};
    CHECK(!strcmp(range_of(stack(4, 1, swap)), ""));
    const char *zeros[] = {"e.00.w", "e.01.w", "e.02.w"};
    CHECK(!strcmp(range_of(stack(3, 1, zeros)), ""));
    const char *suf[] = {"e.0.w1", "e.1.w3", "e.2.w1"};
    CHECK(!strcmp(range_of(stack(3, 1, suf)), ""));
    const char *word[] = {"a.x.w", "a.y.w"};
    CHECK(!strcmp(range_of(stack(2, 1, word)), ""));
    /* not a stack, or sources that do not divide by the experts: nothing */
    wpk_tensor plain = {.name = "p"};
    CHECK(!strcmp(range_of(plain), ""));
    wpk_tensor odd = stack(2, 1, reg);
    odd.n_sources = 3;
    CHECK(!strcmp(range_of(odd), ""));
    /* a buffer too small: -1 and an empty string, never a cut name */
    char small[10] = "junk";
    wpk_tensor t = stack(3, 1, reg);
    CHECK_EQ_INT(wp_tensor_sources_range(&t, small, sizeof small), -1);
    CHECK_EQ_INT(small[0], 0);
}

/* A build of two zoo parts (a stacked MXFP4 stack, a fused NVFP4 w13, scales
 * and globals): the rows are every directory entry, part by part, and the
 * .wpkz of the same build lists the same rows. */
TEST(trust_list_build_and_wpkz)
{
    const char *d = wpt_path("%s/b", wpt_tmpdir());
    char dir[512];
    snprintf(dir, sizeof dir, "%s", d);
    REQUIRE(mkdir(dir, 0755) == 0);
    wp_err e = {0};
    REQUIRE(wpkz_write(wpt_path("%s/a.wpk", dir), 0, 0, &e) == 0);
    REQUIRE(wpkz_write(wpt_path("%s/b.wpk", dir), 0, 1, &e) == 0);
    wp_build *b = NULL;
    REQUIRE(wp_build_open(&b, dir, &e) == 0);
    wp_tensor_list l;
    REQUIRE(wp_build_list(b, &l, &e) == 0);
    CHECK_EQ_INT(l.n, 2 * wpkz_n);
    CHECK_EQ_INT(l.n_files, 2);
    CHECK(!l.packed);
    size_t scales = 0, stacks = 0;
    for (size_t i = 0; i < l.n; i++) {
        const wp_tensor_row *r = &l.rows[i];
        const wpkz_spec *s = &wpkz_specs[i % wpkz_n];
        CHECKF(!strcmp(r->t->name, s->name), "row %zu: %s, expected %s", i, r->t->name, s->name);
        CHECK(!strcmp(r->file, i < wpkz_n ? "a.wpk" : "b.wpk"));
        CHECK_EQ_INT(r->part, i / wpkz_n);
        CHECK_EQ_INT(r->t->stacked, s->stacked);
        CHECK_EQ_INT(r->t->n_sources, s->n_sources);
        /* a scale or global names its weight, and the weight names its scale */
        if (s->role != WPK_ROLE_DATA) {
            CHECKF(r->scale_of && !strcmp(r->scale_of, wpkz_specs[s->owner].name), "%s: scale_of %s", s->name,
                   r->scale_of ? r->scale_of : "NULL");
            scales++;
        } else {
            CHECK(r->scale_of == NULL);
        }
        if (s->role == WPK_ROLE_SCALE) {
            const wp_tensor_row *w = &l.rows[(i / wpkz_n) * wpkz_n + (size_t)s->owner];
            CHECKF(w->scale && !strcmp(w->scale, s->name), "%s: scale %s", w->t->name, w->scale ? w->scale : "NULL");
        }
        stacks += s->stacked;
    }
    CHECK(scales > 0 && stacks > 0);
    /* JSON: one object per row, the full digest, the experts of a stack */
    cJSON *j = wp_tensor_list_json(&l);
    REQUIRE(j);
    CHECK_EQ_INT(cJSON_GetArraySize(j), l.n);
    size_t k = 0;
    for (cJSON *o = j->child; o; o = o->next, k++) {
        const wpk_tensor *t = l.rows[k].t;
        char hex[65];
        wp_hex(t->sha256, 32, hex);
        CHECK(!strcmp(cJSON_GetObjectItem(o, "sha256")->valuestring, hex));
        CHECK_EQ_INT(cJSON_GetObjectItem(o, "bytes")->valuedouble, t->size);
        CHECK_EQ_INT(cJSON_GetObjectItem(o, "offset")->valuedouble, t->offset);
        CHECK_EQ_INT(cJSON_GetArraySize(cJSON_GetObjectItem(o, "shape")), t->ndim);
        CHECK(cJSON_GetObjectItem(o, "compressed_bytes") == NULL);
        const cJSON *x = cJSON_GetObjectItem(o, "experts");
        if (t->stacked) {
            CHECK_EQ_INT(cJSON_GetObjectItem(x, "count")->valuedouble, t->n_experts);
            CHECK_EQ_INT(cJSON_GetObjectItem(x, "stride")->valuedouble, t->expert_stride);
            CHECK_EQ_INT(cJSON_GetArraySize(cJSON_GetObjectItem(x, "sources")), t->n_sources);
        } else {
            CHECK(cJSON_IsNull(x));
        }
    }
    cJSON_Delete(j);

    /* packed: the same rows, with compressed bytes, and the names of the archive's files */
    const char *zp = wpt_path("%s/b.wpkz", wpt_tmpdir());
    char z[512];
    snprintf(z, sizeof z, "%s", zp);
    REQUIRE(wpz_pack(dir, z, &(wpz_opts){.chunk = 4096}, NULL, &e) == 0);
    wp_tensor_list p;
    REQUIRE(wp_wpkz_list(z, &p, &e) == 0);
    CHECK(p.packed);
    CHECK_EQ_INT(p.n, l.n);
    CHECK_EQ_INT(p.n_files, 2);
    for (size_t i = 0; i < p.n && i < l.n; i++) {
        const wpk_tensor *a = l.rows[i].t, *c = p.rows[i].t;
        CHECKF(!strcmp(a->name, c->name) && !strcmp(l.rows[i].file, p.rows[i].file) && a->offset == c->offset &&
                   a->size == c->size && !memcmp(a->sha256, c->sha256, 32) && a->ndim == c->ndim &&
                   !memcmp(a->shape, c->shape, sizeof a->shape) && a->n_sources == c->n_sources &&
                   a->kind == c->kind && a->enc == c->enc && a->dtype == c->dtype,
               "row %zu: %s differs once packed", i, a->name);
        for (uint32_t s = 0; s < a->n_sources && s < c->n_sources; s++) CHECK(!strcmp(a->sources[s], c->sources[s]));
        CHECK((l.rows[i].scale == NULL) == (p.rows[i].scale == NULL));
        CHECK((l.rows[i].scale_of == NULL) == (p.rows[i].scale_of == NULL));
        if (l.rows[i].scale && p.rows[i].scale) CHECK(!strcmp(l.rows[i].scale, p.rows[i].scale));
        /* a tensor with bytes has frames; an empty one has none */
        CHECK(a->size ? p.rows[i].comp_bytes > 0 : p.rows[i].comp_bytes == 0);
    }
    j = wp_tensor_list_json(&p);
    REQUIRE(j);
    CHECK(cJSON_GetObjectItem(j->child, "compressed_bytes") != NULL);
    cJSON_Delete(j);
    wp_tensor_list_free(&p);
    wp_tensor_list_free(&l);
    wp_build_close(b);

    /* a directory without a .wpk: the build's one-line refusal, nothing listed */
    REQUIRE(mkdir(wpt_path("%s/empty", wpt_tmpdir()), 0755) == 0);
    REQUIRE(wp_build_open(&b, wpt_path("%s/empty", wpt_tmpdir()), &e) == 0);
    wp_err_clear(&e);
    CHECK_EQ_INT(wp_build_list(b, &l, &e), WP_EINVAL);
    CHECK_CONTAINS(e.msg, "no .wpk file");
    CHECK(l.rows == NULL && l.n == 0);
    wp_build_close(b);
}

/* A one-part build directory `dir` holding part `file`: bf16 tensors, each
 * its name's bytes (fill) unless `alt`, optionally stacked with sources. */
typedef struct mini {
    const char *name;
    uint64_t experts;              /* 0: a plain [4, 4] matrix; else [experts, 4, 4] */
    const char *const *sources;
    size_t n_sources;
} mini;
static int write_part(const char *path, const mini *t, size_t n, int alt)
{
    wp_err e = {0};
    wpk_writer *w;
    if (wpk_writer_open(&w, path, NULL, &e)) return -1;
    for (size_t i = 0; i < n; i++) {
        wpk_decl d = {.name = t[i].name, .kind = WPK_KIND_ENC, .enc = WP_ENC_BF16, .ndim = t[i].experts ? 3 : 2,
                      .shape = {t[i].experts ? t[i].experts : 4, 4, 4}, .stacked = t[i].experts > 0,
                      .n_sources = t[i].n_sources, .sources = t[i].sources};
        if (!t[i].experts) d.shape[0] = 4, d.shape[1] = 4;
        size_t id;
        if (wpk_writer_add(w, &d, &id, &e)) return wpk_writer_abort(w), -1;
    }
    if (wpk_writer_layout(w, &e)) return wpk_writer_abort(w), -1;
    for (size_t i = 0; i < n; i++) {
        uint8_t buf[4096];
        uint64_t size = wpk_writer_size(w, i);
        if (size > sizeof buf) return wpk_writer_abort(w), -1;
        wpkz_fill(t[i].name, buf, size);
        if (alt) buf[0] ^= 1;
        if (wpk_writer_write(w, i, 0, buf, (size_t)size, &e)) return wpk_writer_abort(w), -1;
    }
    return wpk_writer_commit(w, &e) ? -1 : 0;
}

/* Index the build at dir: 0 and x filled, or the error in e.  The names
 * point into the parts: the previous build is closed (with l and x) first. */
static wp_build *cur;
static int index_dir(const char *dir, wp_tensor_list *l, wp_name_index *x, wp_err *e)
{
    wp_build_close(cur);
    cur = NULL;
    memset(l, 0, sizeof *l);
    memset(x, 0, sizeof *x);
    int rc = wp_build_open(&cur, dir, e);
    if (!rc) rc = wp_build_list(cur, l, e);
    if (!rc) rc = wp_name_index_build(l, "B", x, e);
    return rc;
}

/* The names a build provides (what export plans from): weights and every
 * source of a stack with its expert and slot, scales not on their own;
 * replicated tensors once, anything else held twice or a stack whose
 * experts cannot be told apart refused in one line. */
TEST(trust_list_name_index)
{
    char d[512];
    snprintf(d, sizeof d, "%s/one", wpt_tmpdir());
    REQUIRE(mkdir(d, 0755) == 0);
    wp_err e = {0};
    REQUIRE(wpkz_write(wpt_path("%s/zoo.wpk", d), 0, 0, &e) == 0);
    wp_tensor_list l;
    wp_name_index x;
    REQUIRE(index_dir(d, &l, &x, &e) == 0);
    const wp_build_name *m = wp_name_index_find(&x, "embed.weight");
    CHECK(m && m->row == 0 && m->expert == -1 && m->per == 1);
    m = wp_name_index_find(&x, "src.layers.0.ffn.experts.w1.weight.2");   /* MXFP4 stack, 4 experts, 4 sources */
    CHECK(m && m->row == 10 && m->expert == 2 && m->slot == 0 && m->per == 1);
    m = wp_name_index_find(&x, "src.layers.0.ffn.experts.w13.weight.3");  /* fused: 3 experts, 6 sources */
    CHECK(m && m->row == 12 && m->expert == 1 && m->slot == 1 && m->per == 2);
    CHECK(wp_name_index_find(&x, "src.layers.0.ffn.experts.w1.scale.0") == NULL);   /* a scale's sources */
    CHECK(wp_name_index_find(&x, "layers.0.attn.wq_a.scale") == NULL);
    CHECK(wp_name_index_find(&x, "nothing") == NULL);
    for (size_t i = 1; i < x.n; i++) CHECK(strcmp(x.v[i - 1].name, x.v[i].name) < 0);
    wp_name_index_free(&x);
    wp_tensor_list_free(&l);

    /* two parts replicating a tensor with the same bytes: one name, the first part's */
    const mini norm[] = {{"norm.weight", 0, NULL, 0}};
    const char *src2[] = {"e.0.w", "e.1.w"};
    const mini stk[] = {{"s.weight", 2, src2, 2}};
    snprintf(d, sizeof d, "%s/rep", wpt_tmpdir());
    REQUIRE(mkdir(d, 0755) == 0);
    REQUIRE(write_part(wpt_path("%s/a.wpk", d), norm, 1, 0) == 0);
    REQUIRE(write_part(wpt_path("%s/b.wpk", d), norm, 1, 0) == 0);
    REQUIRE(write_part(wpt_path("%s/c.wpk", d), stk, 1, 0) == 0);
    REQUIRE(index_dir(d, &l, &x, &e) == 0);
    CHECK_EQ_INT(x.n, 3);
    m = wp_name_index_find(&x, "norm.weight");
    CHECK(m && m->row == 0);
    m = wp_name_index_find(&x, "e.1.w");
    CHECK(m && m->row == 2 && m->expert == 1);
    wp_name_index_free(&x);
    wp_tensor_list_free(&l);
    /* ... with different bytes: refused */
    REQUIRE(unlink(wpt_path("%s/b.wpk", d)) == 0);
    REQUIRE(write_part(wpt_path("%s/b.wpk", d), norm, 1, 1) == 0);
    wp_err_clear(&e);
    CHECK_EQ_INT(index_dir(d, &l, &x, &e), WP_EINVAL);
    CHECK(!strcmp(e.msg, "B: norm.weight: held twice, in a.wpk and in b.wpk, with different bytes"));
    CHECK(x.v == NULL && x.n == 0);
    wp_tensor_list_free(&l);
    /* a stack's source held twice (even with the same bytes): which expert? refused */
    REQUIRE(unlink(wpt_path("%s/b.wpk", d)) == 0);
    REQUIRE(write_part(wpt_path("%s/b.wpk", d), stk, 1, 0) == 0);
    wp_err_clear(&e);
    CHECK_EQ_INT(index_dir(d, &l, &x, &e), WP_EINVAL);
    CHECK_CONTAINS(e.msg, ": held twice, in b.wpk and in c.wpk, with different bytes");
    wp_tensor_list_free(&l);
    /* a stack that names no sources (the container allows it; the reader
     * refuses sources that do not divide by the experts): nothing to find its experts by */
    const mini odd[] = {{"s.weight", 2, NULL, 0}};
    snprintf(d, sizeof d, "%s/odd", wpt_tmpdir());
    REQUIRE(mkdir(d, 0755) == 0);
    REQUIRE(write_part(wpt_path("%s/a.wpk", d), odd, 1, 0) == 0);
    wp_err_clear(&e);
    CHECK_EQ_INT(index_dir(d, &l, &x, &e), WP_EINVAL);
    CHECK(!strcmp(e.msg, "B: a.wpk: s.weight: a stack of 2 experts naming 0 source tensors: its experts cannot be "
                         "told apart"));
    wp_tensor_list_free(&l);
    wp_build_close(cur);
    cur = NULL;
}
