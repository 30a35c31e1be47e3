/*
 * inventory.c — tensor families, the expected tensor inventory of a config
 * (spec §2.4) and its comparison with a checkpoint.
 *
 * Shapes are written with the config's own dimensions (tiny-a has head_dim
 * 128, the real models 512), and FP8 scale grids with the config's
 * weight_block_size and ceil-division, as the official code does (spec §2.4:
 * "the official code uses ceil-division"); nothing assumes 128.
 */
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "model/model.h"

/* ---- names ------------------------------------------------------------------ */

static const char *const fam_names[WP_FAM_COUNT] = {
    [WP_FAM_EMBED] = "embed",
    [WP_FAM_HEAD] = "head",
    [WP_FAM_NORM] = "norm",
    [WP_FAM_HC] = "hc",
    [WP_FAM_ATTN] = "attention",
    [WP_FAM_INDEXER] = "indexer",
    [WP_FAM_COMPRESSOR] = "compressor",
    [WP_FAM_ROUTER] = "router",
    [WP_FAM_SHARED_EXPERTS] = "shared_experts",
    [WP_FAM_EXPERTS] = "experts",
    [WP_FAM_MTP] = "mtp",
    [WP_FAM_OTHER] = "other",
};

const char *wp_family_name(wp_family f)
{
    return (unsigned)f < WP_FAM_COUNT ? fam_names[f] : "other";
}

static int starts(const char *s, const char *p) { return !strncmp(s, p, strlen(p)); }

static int ends(const char *s, const char *suf)
{
    size_t n = strlen(s), m = strlen(suf);
    return n >= m && !strcmp(s + n - m, suf);
}

/* "PREFIX.<digits>." -> the number and the rest after the dot; -1 if the
 * name does not have that form (no sign, no leading '+', bounded). */
static int index_after(const char *name, const char *prefix, const char **rest)
{
    if (!starts(name, prefix)) return -1;
    const char *p = name + strlen(prefix);
    long v = 0;
    int nd = 0;
    while (*p >= '0' && *p <= '9') {
        v = v * 10 + (*p++ - '0');
        if (++nd > 6) return -1;
    }
    if (!nd || *p != '.' || (nd > 1 && p[-nd] == '0')) return -1;
    if (rest) *rest = p + 1;
    return (int)v;
}

int wp_layer_of(const char *name) { return index_after(name, "layers.", NULL); }
int wp_mtp_of(const char *name) { return index_after(name, "mtp.", NULL); }

int wp_layer_id(const wp_config *c, const char *name)
{
    int l = wp_layer_of(name);
    if (l >= 0) return l;
    int k = wp_mtp_of(name);
    return k >= 0 ? c->n_layers + k : -1;
}

int wp_mtp_copy_kind(const char *name)
{
    const char *rest;
    if (index_after(name, "mtp.", &rest) < 0) return 0;
    /* spec §2.5 step 2: convert.py drops mtp.* keys containing "emb" or
     * ending in "head.weight"; hc_head_* parameters end otherwise. */
    if (strstr(rest, "emb")) return 1;
    if (ends(rest, "head.weight")) return 2;
    return 0;
}

/* Family of a layer-relative name (what follows "layers.L." or "mtp.K."). */
static wp_family family_in_layer(const char *r)
{
    if (starts(r, "attn.indexer.")) return WP_FAM_INDEXER;
    if (starts(r, "attn.compressor.")) return WP_FAM_COMPRESSOR;
    if (starts(r, "attn.")) return WP_FAM_ATTN;
    if (starts(r, "ffn.experts.")) return WP_FAM_EXPERTS;
    if (starts(r, "ffn.shared_experts.")) return WP_FAM_SHARED_EXPERTS;
    if (starts(r, "ffn.gate.")) return WP_FAM_ROUTER;
    if (starts(r, "hc_")) return WP_FAM_HC;   /* hc_attn_*, hc_ffn_*, mtp hc_head_* */
    if (!strcmp(r, "attn_norm.weight") || !strcmp(r, "ffn_norm.weight")) return WP_FAM_NORM;
    return WP_FAM_OTHER;
}

static wp_family family_global(const char *name)
{
    if (!strcmp(name, "embed.weight")) return WP_FAM_EMBED;
    if (!strcmp(name, "head.weight")) return WP_FAM_HEAD;
    if (!strcmp(name, "norm.weight")) return WP_FAM_NORM;
    if (starts(name, "hc_head_")) return WP_FAM_HC;
    return WP_FAM_OTHER;
}

wp_family wp_family_of(const char *name)
{
    const char *rest;
    if (index_after(name, "layers.", &rest) >= 0) return family_in_layer(rest);
    if (index_after(name, "mtp.", &rest) >= 0) return WP_FAM_MTP;
    return family_global(name);
}

wp_family wp_family_inner(const char *name)
{
    const char *rest;
    if (index_after(name, "mtp.", &rest) < 0) return wp_family_of(name);
    if (wp_mtp_copy_kind(name)) return WP_FAM_MTP;
    if (starts(rest, "e_proj.") || starts(rest, "h_proj.")) return WP_FAM_MTP;
    if (!strcmp(rest, "enorm.weight") || !strcmp(rest, "hnorm.weight") ||
        !strcmp(rest, "norm.weight"))
        return WP_FAM_NORM;
    return family_in_layer(rest);
}

/* ---- expected inventory ------------------------------------------------------ */

typedef struct inv_b {
    wp_expect *v;
    size_t n, cap;
    const wp_config *c;
    wp_expert_fmt ef;     /* how routed experts are stored */
    char pfx[32];    /* "layers.L." / "mtp.K." / "" */
    int layer;
    int failed;
} inv_b;

static __attribute__((format(printf, 6, 7))) void put(inv_b *b, wp_dtype dt, int ndim,
                                                     uint64_t d0, uint64_t d1, const char *fmt,
                                                     ...)
{
    if (b->failed) return;
    if (b->n == b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 1024;
        wp_expect *v = realloc(b->v, cap * sizeof *v);
        if (!v) {
            b->failed = 1;
            return;
        }
        b->v = v;
        b->cap = cap;
    }
    wp_expect *x = &b->v[b->n++];
    memset(x, 0, sizeof *x);
    int k = snprintf(x->name, sizeof x->name, "%s", b->pfx);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(x->name + k, sizeof x->name - (size_t)k, fmt, ap);
    va_end(ap);
    x->dtype = dt;
    x->ndim = ndim;
    x->shape[0] = d0;
    x->shape[1] = d1;
    x->family = wp_family_of(x->name);
    x->layer = b->layer;
}

static uint64_t cdiv(uint64_t a, uint64_t b) { return (a + b - 1) / b; }

/* FP8 pair (spec §2.4): X.weight E4M3 [out, in] + X.scale [ceil(out/br), ceil(in/bc)]
 * of dtype sdt. */
static void fp8_as(inv_b *b, const char *x, uint64_t out, uint64_t in, wp_dtype sdt)
{
    if (!wp_config_quantized(b->c)) {   /* unquantized checkpoint: one BF16 weight */
        put(b, WP_BF16, 2, out, in, "%s.weight", x);
        return;
    }
    put(b, WP_F8_E4M3, 2, out, in, "%s.weight", x);
    put(b, sdt, 2, cdiv(out, (uint64_t)b->c->weight_block[0]),
        cdiv(in, (uint64_t)b->c->weight_block[1]), "%s.scale", x);
}

static void fp8(inv_b *b, const char *x, uint64_t out, uint64_t in)
{
    fp8_as(b, x, out, in, wp_config_scale_dtype(b->c));
}

/* FP4 pair (spec §2.4): X.weight I8 [out, in/2] (two e2m1 per byte) + X.scale
 * E8M0 [out, in/32].  The config guarantees in % 32 == 0. */
static void fp4(inv_b *b, const char *x, uint64_t out, uint64_t in)
{
    if (!wp_config_quantized(b->c)) {
        put(b, WP_BF16, 2, out, in, "%s.weight", x);
        return;
    }
    put(b, WP_I8, 2, out, in / 2, "%s.weight", x);
    put(b, WP_F8_E8M0, 2, out, in / 32, "%s.scale", x);
}

static void bf16(inv_b *b, const char *x, uint64_t n) { put(b, WP_BF16, 1, n, 0, "%s", x); }

/* One transformer block (spec §2.4 "per main layer"), for main layer L or the
 * MTP block with layer id n_layers + k. */
static void block(inv_b *b, int id)
{
    const wp_config *c = b->c;
    uint64_t d = (uint64_t)c->dim, H = (uint64_t)c->n_heads, D = (uint64_t)c->head_dim;
    uint64_t Lq = (uint64_t)c->q_lora_rank, G = (uint64_t)c->o_groups,
             R = (uint64_t)c->o_lora_rank;
    uint64_t E = (uint64_t)c->n_routed_experts, I = (uint64_t)c->moe_inter_dim;
    uint64_t Is = (uint64_t)c->n_shared_experts * I;   /* shared experts are one wide MLP */
    uint64_t hc = (uint64_t)c->hc_mult, M = (2 + hc) * hc;
    uint64_t Hi = (uint64_t)c->index_n_heads, Di = (uint64_t)c->index_head_dim;
    int m = wp_config_ratio(c, id);

    put(b, WP_F32, 1, H, 0, "attn.attn_sink");
    bf16(b, "attn.kv_norm.weight", D);
    bf16(b, "attn.q_norm.weight", Lq);
    fp8(b, "attn.wkv", D, d);
    fp8(b, "attn.wo_a", G * R, H * D / G);
    fp8(b, "attn.wo_b", d, G * R);
    fp8(b, "attn.wq_a", Lq, d);
    fp8(b, "attn.wq_b", H * D, Lq);
    if (m != 0) {   /* compressor; overlapping (c = 2) only at ratio 4 */
        uint64_t cc = m == 4 ? 2 : 1;
        put(b, WP_F32, 2, (uint64_t)m, cc * D, "attn.compressor.ape");
        bf16(b, "attn.compressor.norm.weight", D);
        put(b, WP_BF16, 2, cc * D, d, "attn.compressor.wgate.weight");
        put(b, WP_BF16, 2, cc * D, d, "attn.compressor.wkv.weight");
    }
    if (m == 4) {   /* lightning indexer: CSA layers only */
        put(b, WP_F32, 2, 4, 2 * Di, "attn.indexer.compressor.ape");
        bf16(b, "attn.indexer.compressor.norm.weight", Di);
        put(b, WP_BF16, 2, 2 * Di, d, "attn.indexer.compressor.wgate.weight");
        put(b, WP_BF16, 2, 2 * Di, d, "attn.indexer.compressor.wkv.weight");
        put(b, WP_BF16, 2, Hi, d, "attn.indexer.weights_proj.weight");
        fp8(b, "attn.indexer.wq_b", Hi * Di, Lq);
    }
    bf16(b, "attn_norm.weight", d);
    int fp4e = !b->ef.fp8;
    for (uint64_t x = 0; x < E; x++) {
        static const char *const w[3] = {"w1", "w2", "w3"};
        for (int j = 0; j < 3; j++) {
            char nm[64];
            snprintf(nm, sizeof nm, "ffn.experts.%llu.%s", (unsigned long long)x, w[j]);
            uint64_t out = j == 1 ? d : I, in = j == 1 ? I : d;
            if (fp4e)
                fp4(b, nm, out, in);
            else
                fp8_as(b, nm, out, in, b->ef.scale);
        }
    }
    if (wp_config_is_hash(c, id))
        put(b, WP_I64, 2, (uint64_t)c->vocab_size, (uint64_t)c->n_activated_experts,
            "ffn.gate.tid2eid");
    else
        put(b, WP_F32, 1, E, 0, "ffn.gate.bias");
    put(b, WP_BF16, 2, E, d, "ffn.gate.weight");
    if (Is) {
        fp8(b, "ffn.shared_experts.w1", Is, d);
        fp8(b, "ffn.shared_experts.w2", d, Is);
        fp8(b, "ffn.shared_experts.w3", Is, d);
    }
    bf16(b, "ffn_norm.weight", d);
    put(b, WP_F32, 1, M, 0, "hc_attn_base");
    put(b, WP_F32, 2, M, hc * d, "hc_attn_fn");
    put(b, WP_F32, 1, 3, 0, "hc_attn_scale");
    put(b, WP_F32, 1, M, 0, "hc_ffn_base");
    put(b, WP_F32, 2, M, hc * d, "hc_ffn_fn");
    put(b, WP_F32, 1, 3, 0, "hc_ffn_scale");
}

/* ---- routed-expert storage ------------------------------------------------------ */

/* "layers.L.ffn.experts.E.w1.weight" / "mtp.K.ffn.experts.E.w1.weight" ->
 * the offset of ".weight" (the module name's length), else 0. */
static size_t expert_weight(const char *name)
{
    const char *rest;
    if (index_after(name, "layers.", &rest) < 0 && index_after(name, "mtp.", &rest) < 0) return 0;
    if (!starts(rest, "ffn.experts.")) return 0;
    const char *p = rest + strlen("ffn.experts.");
    if (!(*p >= '0' && *p <= '9')) return 0;
    while (*p >= '0' && *p <= '9') p++;
    if (strcmp(p, ".w1.weight") && strcmp(p, ".w2.weight") && strcmp(p, ".w3.weight")) return 0;
    return strlen(name) - strlen(".weight");
}

wp_expert_fmt wp_expert_fmt_of(const wp_config *c, const wp_tensor_info *const *t, size_t n)
{
    wp_expert_fmt f = {.fp8 = !strcmp(c->expert_dtype, "fp8"), .scale = WP_F8_E8M0};
    if (f.fp8) f.scale = wp_config_scale_dtype(c);
    if (c->expert_dtype_given || !wp_config_quantized(c)) return f;   /* unquantized: all BF16 */
    /* no expert_dtype: the first routed expert in name order decides */
    const wp_tensor_info *w = NULL;
    size_t wl = 0;
    for (size_t i = 0; i < n; i++) {
        size_t l = expert_weight(t[i]->name);
        if (l && (!w || strcmp(t[i]->name, w->name) < 0)) {
            w = t[i];
            wl = l;
        }
    }
    if (!w) return f;
    f.from_checkpoint = 1;
    f.fp8 = w->dtype == WP_F8_E4M3;
    f.scale = WP_F8_E8M0;
    if (f.fp8) {
        f.scale = wp_config_scale_dtype(c);
        char sn[192];
        snprintf(sn, sizeof sn, "%.*s.scale", (int)wl, w->name);
        for (size_t i = 0; i < n; i++)
            if (!strcmp(t[i]->name, sn) && (t[i]->dtype == WP_F8_E8M0 || t[i]->dtype == WP_F32))
                f.scale = t[i]->dtype;
    }
    return f;
}

void wp_config_resolve_experts(wp_config *c, const wp_tensor_info *const *t, size_t n)
{
    if (c->expert_dtype_given) return;
    wp_expert_fmt f = wp_expert_fmt_of(c, t, n);
    if (!f.from_checkpoint) return;
    snprintf(c->expert_dtype, sizeof c->expert_dtype, "%s", f.fp8 ? "fp8" : "fp4");
}

int wp_inventory(const wp_config *c, wp_expect **out, size_t *n, wp_err *e)
{
    wp_expert_fmt f = wp_expert_fmt_of(c, NULL, 0);
    return wp_inventory_fmt(c, &f, out, n, e);
}

int wp_inventory_fmt(const wp_config *c, const wp_expert_fmt *f, wp_expect **out, size_t *n,
                     wp_err *e)
{
    inv_b b = {.c = c, .ef = *f, .layer = -1};
    uint64_t V = (uint64_t)c->vocab_size, d = (uint64_t)c->dim, hc = (uint64_t)c->hc_mult;
    put(&b, WP_BF16, 2, V, d, "embed.weight");
    for (int l = 0; l < c->n_layers; l++) {
        snprintf(b.pfx, sizeof b.pfx, "layers.%d.", l);
        b.layer = l;
        block(&b, l);
    }
    b.pfx[0] = 0;
    b.layer = -1;
    put(&b, WP_BF16, 2, V, d, "head.weight");
    put(&b, WP_BF16, 1, d, 0, "norm.weight");
    put(&b, WP_F32, 2, hc, hc * d, "hc_head_fn");
    put(&b, WP_F32, 1, hc, 0, "hc_head_base");
    put(&b, WP_F32, 1, 1, 0, "hc_head_scale");
    for (int k = 0; k < c->n_mtp_layers; k++) {   /* spec §2.4 "MTP block" */
        snprintf(b.pfx, sizeof b.pfx, "mtp.%d.", k);
        b.layer = c->n_layers + k;
        block(&b, b.layer);
        fp8(&b, "e_proj", d, d);
        bf16(&b, "enorm.weight", d);
        fp8(&b, "h_proj", d, d);
        put(&b, WP_F32, 1, hc, 0, "hc_head_base");
        put(&b, WP_F32, 2, hc, hc * d, "hc_head_fn");
        put(&b, WP_F32, 1, 1, 0, "hc_head_scale");
        bf16(&b, "hnorm.weight", d);
        bf16(&b, "norm.weight", d);
        /* Copies of the shared embedding and head: Flash-Base carries the
         * head copy (TRTLLM), the instruct models neither; optional. */
        size_t first = b.n;
        put(&b, WP_BF16, 2, V, d, "embed.weight");
        put(&b, WP_BF16, 2, V, d, "head.weight");
        for (size_t i = first; !b.failed && i < b.n; i++) b.v[i].optional = 1;
    }
    if (b.failed) {
        free(b.v);
        return wp_oom(e, "inventory");
    }
    *out = b.v;
    *n = b.n;
    return 0;
}

uint64_t wp_expect_nbytes(const wp_expect *x)
{
    uint64_t r;
    if (wp_dtype_nbytes(x->dtype, x->shape, x->ndim, &r)) return UINT64_MAX;
    return r;
}

/* ---- check ----------------------------------------------------------------------- */

const char *wp_inv_kind_name(int kind)
{
    switch (kind) {
    case WP_INV_MISSING: return "missing";
    case WP_INV_UNEXPECTED: return "unexpected";
    case WP_INV_SHAPE: return "mis-shaped";
    case WP_INV_DTYPE: return "mis-typed";
    }
    return "?";
}

static int cmp_expect(const void *a, const void *b)
{
    return strcmp(((const wp_expect *)a)->name, ((const wp_expect *)b)->name);
}

static int cmp_info(const void *a, const void *b)
{
    return strcmp((*(const wp_tensor_info *const *)a)->name,
                  (*(const wp_tensor_info *const *)b)->name);
}

static void fmt_shape(char *o, size_t n, wp_dtype dt, int nd, const uint64_t *s)
{
    int k = snprintf(o, n, "%s [", wp_dtype_name(dt));
    for (int i = 0; i < nd && k > 0 && (size_t)k < n; i++)
        k += snprintf(o + k, n - (size_t)k, "%s%llu", i ? "," : "", (unsigned long long)s[i]);
    if (k > 0 && (size_t)k < n) snprintf(o + k, n - (size_t)k, "]");
}

static void issue(wp_inv_report *r, int kind, const char *name, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void issue(wp_inv_report *r, int kind, const char *name, const char *fmt, ...)
{
    size_t *count = kind == WP_INV_MISSING      ? &r->n_missing
                    : kind == WP_INV_UNEXPECTED ? &r->n_unexpected
                    : kind == WP_INV_SHAPE      ? &r->n_mis_shaped
                                                : &r->n_mis_typed;
    /* capped per kind, so thousands of missing tensors (one shard checked
     * alone, a wrong config) cannot crowd out a mis-shaped one */
    if (++*count > WP_INV_MAX_ISSUES) return;
    wp_inv_issue *x = &r->issues[r->n_issues++];
    x->kind = kind;
    snprintf(x->name, sizeof x->name, "%s", name);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(x->detail, sizeof x->detail, fmt, ap);
    va_end(ap);
}

static int same_shape(const wp_expect *x, const wp_tensor_info *t)
{
    if (x->ndim != t->ndim) return 0;
    for (int i = 0; i < x->ndim; i++)
        if (x->shape[i] != t->shape[i]) return 0;
    return 1;
}

/* Merge of two name-sorted lists. */
static int check_sorted(const wp_config *c, const wp_expect *x, size_t nx,
                        const wp_tensor_info *const *t, size_t nt, wp_inv_report *r)
{
    size_t i = 0, j = 0;
    while (i < nx || j < nt) {
        int cmp = i == nx ? 1 : j == nt ? -1 : strcmp(x[i].name, t[j]->name);
        if (cmp < 0) {   /* expected, not found */
            if (!x[i].optional) {
                char want[96];
                fmt_shape(want, sizeof want, x[i].dtype, x[i].ndim, x[i].shape);
                issue(r, WP_INV_MISSING, x[i].name, "expected %s, not in the checkpoint", want);
            }
            i++;
            continue;
        }
        char found[96];
        fmt_shape(found, sizeof found, t[j]->dtype, t[j]->ndim, t[j]->shape);
        if (cmp > 0) {   /* found, not expected */
            /* An MTP embed copy under a name we did not guess (the official
             * name is unverified, spec §2.4) is still a copy when it has the
             * embedding's dtype and shape. */
            if (wp_mtp_of(t[j]->name) >= 0 && wp_mtp_of(t[j]->name) < c->n_mtp_layers &&
                wp_mtp_copy_kind(t[j]->name) == 1 && t[j]->dtype == WP_BF16 && t[j]->ndim == 2 &&
                t[j]->shape[0] == (uint64_t)c->vocab_size && t[j]->shape[1] == (uint64_t)c->dim) {
                r->n_optional_present++;
            } else {
                issue(r, WP_INV_UNEXPECTED, t[j]->name, "found %s, not implied by config.json",
                      found);
            }
            j++;
            continue;
        }
        char want[96];
        fmt_shape(want, sizeof want, x[i].dtype, x[i].ndim, x[i].shape);
        if (x[i].dtype != t[j]->dtype)
            issue(r, WP_INV_DTYPE, x[i].name, "expected %s, found %s", want, found);
        else if (!same_shape(&x[i], t[j]))
            issue(r, WP_INV_SHAPE, x[i].name, "expected %s, found %s", want, found);
        if (x[i].optional) r->n_optional_present++;
        i++;
        j++;
    }
    return 0;
}

static int check_common(const wp_config *c, const wp_tensor_info **t, size_t n, wp_inv_report *r,
                        wp_err *e)
{
    memset(r, 0, sizeof *r);
    wp_expect *x;
    size_t nx;
    r->experts = wp_expert_fmt_of(c, t, n);
    int rc = wp_inventory_fmt(c, &r->experts, &x, &nx, e);
    if (rc) return rc;
    qsort(x, nx, sizeof *x, cmp_expect);
    qsort(t, n, sizeof *t, cmp_info);
    r->issues = calloc(4 * WP_INV_MAX_ISSUES, sizeof *r->issues);   /* per-kind cap */
    if (!r->issues) {
        free(x);
        return wp_oom(e, "inventory check");
    }
    for (size_t i = 0; i < nx; i++) r->n_expected += !x[i].optional;
    r->n_found = n;
    check_sorted(c, x, nx, t, n, r);
    free(x);
    return 0;
}

int wp_inventory_check_list(const wp_config *c, const wp_tensor_info *t, size_t n,
                            wp_inv_report *r, wp_err *e)
{
    const wp_tensor_info **p = malloc((n ? n : 1) * sizeof *p);
    if (!p) return wp_oom(e, "inventory check");
    for (size_t i = 0; i < n; i++) p[i] = &t[i];
    int rc = check_common(c, p, n, r, e);
    free(p);
    return rc;
}

int wp_inventory_check(const wp_config *c, const wp_ckpt *k, wp_inv_report *r, wp_err *e)
{
    size_t n = wp_ckpt_count(k);
    const wp_tensor_info **p = malloc((n ? n : 1) * sizeof *p);
    if (!p) return wp_oom(e, "inventory check");
    for (size_t i = 0; i < n; i++) p[i] = wp_ckpt_tensor(k, i);
    int rc = check_common(c, p, n, r, e);
    free(p);
    return rc;
}

void wp_inv_report_free(wp_inv_report *r)
{
    if (!r) return;
    free(r->issues);
    r->issues = NULL;
    r->n_issues = 0;
}
