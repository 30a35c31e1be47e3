/*
 * plan.c — the build plan: from the checkpoint's headers and config.json
 * alone, every output tensor of every rank file with its encoding, shape,
 * byte size, aligned offset and source tensors (docs/convert.md).  The plan
 * is a pure function of (headers, config, profile, options): the same inputs
 * give the same plan, and `convert` executes exactly this plan.
 *
 * Steps: classify each source weight (spec §2.2/§2.3: dtype + companion
 * .scale), group routed experts into stacks, resolve the profile's rules
 * (last match wins), then lay the outputs of each rank out in source order
 * (the order of the shards, so a convert reads its input sequentially).
 */
#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

#include "convert/convert_priv.h"
#include "trust/manifest.h"

/* One source weight: a tensor and, for FP8/FP4, its .scale. */
typedef struct sweight {
    const wp_tensor_info *w, *s;
    wp_src_kind kind;
    wp_enc enc;                /* kind as an encoding (kind != RAW) */
    uint64_t rows, cols;       /* logical matrix view: 1-D [n] is [1, n] */
    int matrix;                /* ndim 2: may take a block encoding */
    uint32_t br, bc;           /* FP8 source block */
    wp_scale_fmt sfmt;
    int expert, proj;          /* routed expert (expert -1 otherwise) */
    size_t prefix_len;
    uint64_t order;            /* (file, offset): output order follows the shards */
} sweight;

/* One output weight before the rank split: its sources in slice order. */
typedef struct group {
    char *name;
    sweight **src;             /* n_exp * per_slice (1 when not stacked) */
    int n_exp;                 /* stacked: experts; otherwise 1 */
    int stacked, per_slice;    /* per_slice 2 for fused w13 */
    int expert;                /* unstacked routed expert id, else -1 */
    uint64_t order;
} group;

static const char *ends_with(const char *s, const char *suf)
{
    size_t n = strlen(s), m = strlen(suf);
    return n >= m && !strcmp(s + n - m, suf) ? s + n - m : NULL;
}

static char *name_with(const char *name, size_t keep, const char *suffix)
{
    size_t m = strlen(suffix);
    char *s = malloc(keep + m + 1);
    if (!s) return NULL;
    memcpy(s, name, keep);
    memcpy(s + keep, suffix, m + 1);
    return s;
}

static void shape_str(const uint64_t *sh, int nd, char *out, size_t sz)
{
    size_t o = (size_t)snprintf(out, sz, "[");
    for (int i = 0; i < nd && o < sz; i++)
        o += (size_t)snprintf(out + o, sz - o, "%s%llu", i ? "," : "", (unsigned long long)sh[i]);
    if (o < sz) snprintf(out + o, sz - o, "]");
}

/* Decide the source kind of weight `t` with companion scale `s` (or NULL). */
static int classify(const wp_config *c, const wp_tensor_info *t, const wp_tensor_info *s, sweight *sw,
                    wp_err *e)
{
    memset(sw, 0, sizeof *sw);
    sw->w = t;
    sw->s = s;
    sw->expert = -1;
    sw->order = ((uint64_t)t->file << 48) | t->offset;
    int nd = t->ndim;
    char a[96], b[96];
    switch (t->dtype) {
    case WP_BF16: case WP_F16: case WP_F32:
        if (s)
            return wp_fail(e, WP_EINVAL, "%s: a %s tensor has no .scale, but %s exists", t->name,
                           wp_dtype_name(t->dtype), s->name);
        sw->kind = t->dtype == WP_BF16 ? WP_SRC_BF16 : t->dtype == WP_F16 ? WP_SRC_F16 : WP_SRC_F32;
        sw->enc = t->dtype == WP_BF16 ? WP_ENC_BF16 : t->dtype == WP_F16 ? WP_ENC_F16 : WP_ENC_F32;
        sw->matrix = nd == 2;
        sw->cols = nd ? t->shape[nd - 1] : 1;
        sw->rows = 1;
        for (int i = 0; i + 1 < nd; i++) sw->rows *= t->shape[i];
        return 0;
    case WP_F8_E4M3: {
        if (!s) return wp_fail(e, WP_EINVAL, "%s: F8_E4M3 weight without its .scale tensor (spec §2.3)", t->name);
        if (nd != 2) return wp_fail(e, WP_EINVAL, "%s: F8_E4M3 weight must be 2-D, has %d dims", t->name, nd);
        if (s->dtype != WP_F8_E8M0 && s->dtype != WP_F32)
            return wp_fail(e, WP_EINVAL, "%s: FP8 scale must be F8_E8M0 or F32, not %s", s->name,
                           wp_dtype_name(s->dtype));
        sw->kind = WP_SRC_FP8;
        sw->enc = WP_ENC_FP8;
        sw->matrix = 1;
        sw->rows = t->shape[0];
        sw->cols = t->shape[1];
        /* spec §0: the block size comes from quantization_config, never assumed */
        sw->br = (uint32_t)c->weight_block[0];
        sw->bc = (uint32_t)c->weight_block[1];
        sw->sfmt = s->dtype == WP_F32 ? WP_SCALE_F32 : WP_SCALE_E8M0;
        if (!sw->br || !sw->bc)
            return wp_fail(e, WP_EINVAL, "%s: config.json has no quantization_config.weight_block_size", t->name);
        uint64_t want[2] = {(sw->rows + sw->br - 1) / sw->br, (sw->cols + sw->bc - 1) / sw->bc};
        if (s->ndim != 2 || s->shape[0] != want[0] || s->shape[1] != want[1]) {
            shape_str(s->shape, s->ndim, a, sizeof a);
            shape_str(want, 2, b, sizeof b);
            return wp_fail(e, WP_EINVAL,
                           "%s: shape %s, expected %s for weight [%llu,%llu] with %ux%u blocks "
                           "(quantization_config.weight_block_size)",
                           s->name, a, b, (unsigned long long)sw->rows, (unsigned long long)sw->cols,
                           sw->br, sw->bc);
        }
        return 0;
    }
    case WP_I8: case WP_U8: case WP_F4: {
        if (!s) break;   /* plain integer data: raw */
        if (nd != 2) return wp_fail(e, WP_EINVAL, "%s: packed FP4 weight must be 2-D, has %d dims", t->name, nd);
        if (s->dtype != WP_F8_E8M0)
            return wp_fail(e, WP_EINVAL, "%s: MXFP4 scale must be F8_E8M0, not %s", s->name,
                           wp_dtype_name(s->dtype));
        sw->kind = WP_SRC_MXFP4;
        sw->enc = WP_ENC_MXFP4;
        sw->matrix = 1;
        sw->rows = t->shape[0];
        /* I8/U8 hold two e2m1 codes per byte (spec §2.2); F4 counts elements */
        sw->cols = t->dtype == WP_F4 ? t->shape[1] : 2 * t->shape[1];
        uint64_t want[2] = {sw->rows, sw->cols / 32};
        if (sw->cols % 32 || s->ndim != 2 || s->shape[0] != want[0] || s->shape[1] != want[1]) {
            shape_str(s->shape, s->ndim, a, sizeof a);
            shape_str(want, 2, b, sizeof b);
            return wp_fail(e, WP_EINVAL, "%s: shape %s, expected %s for FP4 weight [%llu,%llu] with 1x32 blocks",
                           s->name, a, b, (unsigned long long)sw->rows, (unsigned long long)sw->cols);
        }
        return 0;
    }
    default:
        break;
    }
    if (s)
        return wp_fail(e, WP_EINVAL, "%s: %s tensor cannot have a .scale (%s)", t->name,
                       wp_dtype_name(t->dtype), s->name);
    sw->kind = WP_SRC_RAW;
    return 0;
}

/* ---- Family rules (docs/profiles.md "Family rules") ------------------------
 * Which encodings each kind of tensor may take in a build, stated once.  The
 * runtime reads the model's parameters as plain values (spec §4.0: F32
 * native, or norms upcast to F32) and the hash table as integers; only
 * linear weights (and the embedding and head, read row by row) may take a
 * block encoding. */
#define ENC_PLAIN ((1u << WP_ENC_BF16) | (1u << WP_ENC_F16) | (1u << WP_ENC_F32))
#define ENC_ANY ((1u << WP_ENC_COUNT) - 1)

static const struct family_rule {
    const char *what;          /* plural, for messages */
    const char *suffix;        /* the name ends with it ... */
    const char *part;          /* ... or this part starts the layer-relative name (or the whole name) */
    unsigned encs;
} family_rules[] = {
    {"HC parameters", NULL, "hc_", ENC_PLAIN},                    /* hc_{attn,ffn}_*, hc_head_* */
    {"norm weights", "norm.weight", NULL, ENC_PLAIN},             /* attn/ffn/q/kv/compressor/e/h norms */
    {"attention sinks", ".attn.attn_sink", NULL, ENC_PLAIN},
    {"router biases", ".ffn.gate.bias", NULL, ENC_PLAIN},
    {"compressor position biases", ".ape", NULL, ENC_PLAIN},
    {"hash routing tables", ".ffn.gate.tid2eid", NULL, 0},       /* integers: never re-encoded */
};

/* The layer-relative part of a name ("hc_attn_fn" of "layers.3.hc_attn_fn"). */
static const char *rel_part(const char *name)
{
    const char *p = name;
    if (!strncmp(p, "layers.", 7) || !strncmp(p, "mtp.", 4)) {
        p = strchr(p, '.') + 1;
        while (*p >= '0' && *p <= '9') p++;
        return *p == '.' ? p + 1 : name;
    }
    return name;
}

const char *wp_family_rule(const char *name, wp_enc enc)
{
    const char *rel = rel_part(name);
    for (size_t i = 0; i < sizeof family_rules / sizeof family_rules[0]; i++) {
        const struct family_rule *f = &family_rules[i];
        int hit = (f->suffix && ends_with(name, f->suffix)) ||
                  (f->part && !strncmp(rel, f->part, strlen(f->part)));
        if (hit) return (f->encs >> enc) & 1u ? NULL : f->what;
    }
    (void)ENC_ANY;   /* linear weights, embed, head and unknown names: any encoding */
    return NULL;
}

/* Per rule: the weights it decided and the first tensor it matched but could
 * not apply to (its family forbids the encoding). */
typedef struct rule_use {
    size_t decided;
    const char *forbidden;     /* owned by the builder's groups */
    const char *forbidden_what;
} rule_use;

/* The rule that decides `name` for a source of kind k: the last one that
 * matches and whose "from" includes k.  Block targets only apply to 2-D
 * weights (norms and vectors keep their encoding, as llama-quantize does),
 * and a rule skips a tensor whose family cannot take its encoding (noted in
 * `use`: a rule that applies to nothing else is refused after planning). */
static int resolve_rule(const wp_profile *p, const char *name, const sweight *sw, rule_use *use)
{
    if (sw->kind == WP_SRC_RAW) return -1;
    for (size_t i = p->n_rules; i-- > 0;) {
        const wp_rule *r = &p->rules[i];
        if (!(r->from & (1u << sw->kind))) continue;
        int block = !r->passthrough && (r->enc == WP_ENC_FP8 || r->enc == WP_ENC_MXFP4 || r->enc == WP_ENC_NVFP4);
        if (block && !sw->matrix) continue;
        if (regexec(&r->re, name, 0, NULL, 0) != 0) continue;
        const char *why = r->passthrough || r->enc == sw->enc ? NULL : wp_family_rule(name, r->enc);
        if (why) {
            if (use && !use[i].forbidden) {
                use[i].forbidden = name;
                use[i].forbidden_what = why;
            }
            continue;
        }
        if (use) use[i].decided++;
        return (int)i;
    }
    return -1;
}

/* A rule that matched tensors its encoding is not for, and decided nothing
 * else, is a mistake: refuse it, naming the tensor and the family rule. */
static int check_rule_use(const wp_profile *p, const rule_use *use, wp_err *e)
{
    for (size_t i = 0; i < p->n_rules; i++) {
        const wp_rule *r = &p->rules[i];
        if (use[i].decided || !use[i].forbidden) continue;
        char rule[320];
        if (r->origin) snprintf(rule, sizeof rule, "override '%s=%s'", r->pattern, wp_enc_name(r->enc));
        else snprintf(rule, sizeof rule, "rule %zu ('%s') of profile %s", i, r->pattern, p->name);
        return wp_fail_setting(e, WP_EINVAL, r->origin ? "tensor-type" : NULL,
                               "%s: %s take only bf16, f16 or f32 (the runtime reads them as plain "
                               "values), not %s; %s applies to no tensor that can take it",
                               use[i].forbidden, use[i].forbidden_what, wp_enc_name(r->enc), rule);
    }
    return 0;
}

/* Fill the encoding decision of w from its rule and source. */
static void decide(const wp_profile *p, wp_plan_weight *w, const sweight *sw)
{
    w->src = sw->kind;
    w->src_enc = sw->enc;
    w->src_br = sw->br;
    w->src_bc = sw->bc;
    w->src_sfmt = sw->sfmt;
    w->passthrough = 1;
    w->method = WP_M_COPY;
    w->loss = WP_LOSS_COPY;
    w->enc = sw->enc;
    w->br = sw->br;
    w->bc = sw->bc;
    w->sfmt = sw->sfmt;
    if (w->rule < 0) return;
    const wp_rule *r = &p->rules[w->rule];
    if (r->passthrough) return;
    wp_enc to = r->enc;
    uint32_t br = r->br, bc = r->bc;
    if (to == WP_ENC_FP8 && br == WP_BLOCK_SOURCE) {
        br = sw->kind == WP_SRC_FP8 ? sw->br : 128;
        bc = sw->kind == WP_SRC_FP8 ? sw->bc : 128;
    }
    if (to != WP_ENC_FP8) br = bc = 0;
    wp_scale_fmt sf = to == WP_ENC_FP8 ? r->sfmt : WP_SCALE_E8M0;
    if (to == sw->enc && (to != WP_ENC_FP8 || (br == sw->br && bc == sw->bc && sf == sw->sfmt)))
        return;   /* already in the target encoding: pass the bytes through */
    w->passthrough = 0;
    w->enc = to;
    w->br = br;
    w->bc = bc;
    w->sfmt = sf;
    wp_method m = WP_M_QUANT;
    switch (to) {
    case WP_ENC_F32:
        m = WP_M_EXACT;   /* every source value is an f32 (the dequantised source itself) */
        break;
    case WP_ENC_BF16:
        /* e4m3/e2m1 times a power of two fits in bf16; checked per element anyway */
        if (sw->kind == WP_SRC_MXFP4 || (sw->kind == WP_SRC_FP8 && sw->sfmt == WP_SCALE_E8M0)) m = WP_M_EXACT;
        break;
    case WP_ENC_F16:
        break;
    case WP_ENC_FP8:
        if (sw->kind == WP_SRC_FP8 && br == sw->br && bc == sw->bc && sw->sfmt == WP_SCALE_E8M0)
            m = WP_M_EXACT;   /* same codes, E8M0 scales widened to F32 */
        else if (sw->kind == WP_SRC_MXFP4 && br == 128 && bc == 128)
            m = WP_M_CAST37;  /* spec §3.7 */
        break;
    default:
        break;
    }
    w->method = m;
    w->loss = wp_method_loss(m);
}

static int cmp_sweight_expert(const void *a, const void *b)
{
    const sweight *x = *(sweight *const *)a, *y = *(sweight *const *)b;
    size_t n = x->prefix_len < y->prefix_len ? x->prefix_len : y->prefix_len;
    int c = strncmp(x->w->name, y->w->name, n);
    if (c) return c;
    if (x->prefix_len != y->prefix_len) return x->prefix_len < y->prefix_len ? -1 : 1;
    if (x->proj != y->proj) return x->proj - y->proj;
    return x->expert - y->expert;
}

static int cmp_group(const void *a, const void *b)
{
    const group *x = a, *y = b;
    if (x->order != y->order) return x->order < y->order ? -1 : 1;
    return strcmp(x->name, y->name);
}

/* Everything plan building owns until it is done. */
typedef struct builder {
    const wp_ckpt *k;
    const wp_config *c;
    wp_plan *p;
    rule_use *use;             /* per profile rule */
    sweight *sw;
    size_t n_sw;
    group *g;
    size_t n_g;
    size_t cap_t, cap_w;
} builder;

static void builder_free(builder *b)
{
    for (size_t i = 0; i < b->n_g; i++) {
        free(b->g[i].name);
        free(b->g[i].src);
    }
    free(b->g);
    free(b->sw);
    free(b->use);
}

static int collect_sources(builder *b, wp_err *e)
{
    size_t n = wp_ckpt_count(b->k);
    b->sw = calloc(n ? n : 1, sizeof *b->sw);
    if (!b->sw) return wp_oom(e, "plan");
    for (size_t i = 0; i < n; i++) {
        const wp_tensor_info *t = wp_ckpt_tensor(b->k, i);
        const char *sc = ends_with(t->name, ".scale");
        if (sc) {
            char *wn = name_with(t->name, (size_t)(sc - t->name), ".weight");
            if (!wn) return wp_oom(e, "plan");
            int found = wp_ckpt_find(b->k, wn) != NULL;
            free(wn);
            if (!found)
                return wp_fail(e, WP_EINVAL, "%s: scale without its weight %.*s.weight (spec §2.3)", t->name,
                               (int)(sc - t->name), t->name);
            continue;   /* taken with its weight */
        }
        const wp_tensor_info *s = NULL;
        const char *wsuf = ends_with(t->name, ".weight");
        if (wsuf) {
            char *sn = name_with(t->name, (size_t)(wsuf - t->name), ".scale");
            if (!sn) return wp_oom(e, "plan");
            s = wp_ckpt_find(b->k, sn);
            free(sn);
        }
        sweight *sw = &b->sw[b->n_sw];
        int rc = classify(b->c, t, s, sw, e);
        if (rc) return rc;
        wp_expert_name_parse(t->name, &sw->prefix_len, &sw->expert, &sw->proj);
        b->n_sw++;
    }
    return 0;
}

static int add_group(builder *b, size_t *cap, group *g, wp_err *e)
{
    if (b->n_g == *cap) {
        size_t nc = *cap ? 2 * *cap : 256;
        group *n = realloc(b->g, nc * sizeof *n);
        if (!n) return wp_oom(e, "plan");
        b->g = n;
        *cap = nc;
    }
    b->g[b->n_g++] = *g;
    return 0;
}

/* A stack must be experts 0..E-1 of one kind and shape. */
static int check_stack(const wp_config *c, sweight **s, size_t n, const char *stack_name, wp_err *e)
{
    if ((int)n != c->n_routed_experts)
        return wp_fail(e, WP_EINVAL, "%s: found %zu routed experts, config.json has n_routed_experts %d",
                       stack_name, n, c->n_routed_experts);
    for (size_t i = 0; i < n; i++) {
        if (s[i]->expert != (int)i)
            return wp_fail(e, WP_EINVAL, "%s: expert %zu is missing (found expert %d in its place)", stack_name,
                           i, s[i]->expert);
        if (s[i]->kind != s[0]->kind || s[i]->rows != s[0]->rows || s[i]->cols != s[0]->cols ||
            s[i]->w->dtype != s[0]->w->dtype || s[i]->sfmt != s[0]->sfmt) {
            char a[96], bb[96];
            shape_str(s[i]->w->shape, s[i]->w->ndim, a, sizeof a);
            shape_str(s[0]->w->shape, s[0]->w->ndim, bb, sizeof bb);
            return wp_fail(e, WP_EINVAL, "%s: %s %s differs from %s %s: stacked experts must match",
                           s[i]->w->name, wp_dtype_name(s[i]->w->dtype), a, wp_dtype_name(s[0]->w->dtype), bb);
        }
        if (s[i]->kind == WP_SRC_RAW)
            return wp_fail(e, WP_EINVAL, "%s: routed expert of dtype %s is not a weight encoding", s[i]->w->name,
                           wp_dtype_name(s[i]->w->dtype));
    }
    return 0;
}

static int make_groups(builder *b, int stack, int fuse, wp_err *e)
{
    size_t cap = 0;
    size_t n_exp = 0;
    sweight **ex = malloc((b->n_sw ? b->n_sw : 1) * sizeof *ex);
    if (!ex) return wp_oom(e, "plan");
    int rc = 0;
    for (size_t i = 0; i < b->n_sw; i++) {
        sweight *sw = &b->sw[i];
        if (stack && sw->expert >= 0) {
            ex[n_exp++] = sw;
            continue;
        }
        group g = {0};
        g.name = strdup(sw->w->name);
        g.src = malloc(sizeof *g.src);
        if (!g.name || !g.src) {
            free(g.name);
            free(g.src);
            rc = wp_oom(e, "plan");
            goto out;
        }
        g.src[0] = sw;
        g.n_exp = 1;
        g.per_slice = 1;
        g.expert = sw->expert;
        g.order = sw->order;
        if ((rc = add_group(b, &cap, &g, e))) {
            free(g.name);
            free(g.src);
            goto out;
        }
    }
    qsort(ex, n_exp, sizeof *ex, cmp_sweight_expert);
    for (size_t i = 0; i < n_exp;) {
        /* a run of one prefix and projection */
        size_t j = i;
        while (j < n_exp && ex[j]->prefix_len == ex[i]->prefix_len && ex[j]->proj == ex[i]->proj &&
               !strncmp(ex[j]->w->name, ex[i]->w->name, ex[i]->prefix_len))
            j++;
        char nm[256];
        wp_expert_stack_name(nm, sizeof nm, ex[i]->w->name, ex[i]->prefix_len, ex[i]->proj);
        if ((rc = check_stack(b->c, ex + i, j - i, nm, e))) goto out;
        if (fuse && ex[i]->proj == 1) {
            /* w1 run at [i, j); its w3 run is two runs later (w1, w2, w3 sorted) */
            size_t k = j;
            while (k < n_exp && ex[k]->prefix_len == ex[i]->prefix_len &&
                   !strncmp(ex[k]->w->name, ex[i]->w->name, ex[i]->prefix_len) && ex[k]->proj != 3)
                k++;
            size_t n = j - i;
            if (k + n > n_exp || ex[k]->proj != 3 || ex[k]->prefix_len != ex[i]->prefix_len ||
                strncmp(ex[k]->w->name, ex[i]->w->name, ex[i]->prefix_len)) {
                rc = wp_fail_setting(e, WP_EINVAL, "fuse-w13", "%s: fusing w1 with w3 needs the w3 experts of the same layer",
                                     nm);
                goto out;
            }
            wp_expert_stack_name(nm, sizeof nm, ex[i]->w->name, ex[i]->prefix_len, 3);
            if ((rc = check_stack(b->c, ex + k, n, nm, e))) goto out;
            if (ex[k]->kind != ex[i]->kind || ex[k]->rows != ex[i]->rows || ex[k]->cols != ex[i]->cols ||
                ex[k]->w->dtype != ex[i]->w->dtype) {
                rc = wp_fail(e, WP_EINVAL, "%s: w3 differs from w1 in dtype or shape: cannot fuse", ex[k]->w->name);
                goto out;
            }
            group g = {0};
            wp_expert_stack_name(nm, sizeof nm, ex[i]->w->name, ex[i]->prefix_len, 13);
            g.name = strdup(nm);
            g.src = malloc(2 * n * sizeof *g.src);
            if (!g.name || !g.src) {
                free(g.name);
                free(g.src);
                rc = wp_oom(e, "plan");
                goto out;
            }
            for (size_t x = 0; x < n; x++) {
                g.src[2 * x] = ex[i + x];
                g.src[2 * x + 1] = ex[k + x];
            }
            g.n_exp = (int)n;
            g.stacked = 1;
            g.per_slice = 2;
            g.expert = -1;
            g.order = ex[i]->order < ex[k]->order ? ex[i]->order : ex[k]->order;
            if ((rc = add_group(b, &cap, &g, e))) {
                free(g.name);
                free(g.src);
                goto out;
            }
            /* mark the w3 run consumed */
            for (size_t x = 0; x < n; x++) ex[k + x]->proj = -3;
            i = j;
            continue;
        }
        if (ex[i]->proj == -3) {   /* fused into w13 above */
            i = j;
            continue;
        }
        group g = {0};
        g.name = strdup(nm);
        g.src = malloc((j - i) * sizeof *g.src);
        if (!g.name || !g.src) {
            free(g.name);
            free(g.src);
            rc = wp_oom(e, "plan");
            goto out;
        }
        g.order = UINT64_MAX;
        for (size_t x = i; x < j; x++) {
            g.src[x - i] = ex[x];
            if (ex[x]->order < g.order) g.order = ex[x]->order;
        }
        g.n_exp = (int)(j - i);
        g.stacked = 1;
        g.per_slice = 1;
        g.expert = -1;
        if ((rc = add_group(b, &cap, &g, e))) {
            free(g.name);
            free(g.src);
            goto out;
        }
        i = j;
    }
    qsort(b->g, b->n_g, sizeof *b->g, cmp_group);
out:
    free(ex);
    return rc;
}

static int push_tensor(builder *b, const wp_plan_tensor *t, wp_err *e)
{
    wp_plan *p = b->p;
    if (p->n_tensors == b->cap_t) {
        size_t nc = b->cap_t ? 2 * b->cap_t : 1024;
        wp_plan_tensor *n = realloc(p->tensors, nc * sizeof *n);
        if (!n) return wp_oom(e, "plan");
        p->tensors = n;
        b->cap_t = nc;
    }
    p->tensors[p->n_tensors++] = *t;
    return 0;
}

/* Place one output tensor at the next aligned offset of its file. */
static int place(builder *b, wp_plan_weight *w, wp_role role, const char *name, int is_enc, wp_enc enc,
                 wp_dtype dt, int ndim, const uint64_t *shape, uint64_t slice_bytes, size_t *idx, wp_err *e)
{
    wp_plan *p = b->p;
    wp_plan_file *f = &p->files[w->rank];
    wp_plan_tensor t;
    memset(&t, 0, sizeof t);
    t.name = strdup(name);
    if (!t.name) return wp_oom(e, "plan");
    t.role = role;
    t.file = w->rank;
    t.is_enc = is_enc;
    t.enc = enc;
    t.dtype = dt;
    /* stacked: [E, ...] with expert e at e * stride; a stack's NVFP4 global
     * scale is one f32 per expert, [E] stacked (docs/format.md §2.3) */
    t.stacked = w->stacked;
    int off = t.stacked ? 1 : 0;
    if (t.stacked) t.shape[0] = (uint64_t)w->n_slices;
    if (t.stacked && role == WP_ROLE_GLOBAL) ndim = 0;
    t.ndim = ndim + off;
    for (int i = 0; i < ndim; i++) t.shape[off + i] = shape[i];
    t.stride = t.stacked ? slice_bytes : 0;
    if (wp_mul_u64(slice_bytes, (uint64_t)w->n_slices, &t.nbytes)) {
        free(t.name);
        return wp_fail(e, WP_EINVAL, "%s: output size overflows", name);
    }
    t.offset = wp_align_up(f->data_bytes, p->profile.align);
    if (wp_add_u64(t.offset, t.nbytes, &f->data_bytes)) {
        free(t.name);
        return wp_fail(e, WP_EINVAL, "%s: output offset overflows", name);
    }
    t.weight = p->n_weights;   /* the weight being pushed */
    w->out_bytes += t.nbytes;
    f->n_tensors++;
    *idx = p->n_tensors;
    int rc = push_tensor(b, &t, e);
    if (rc) free(t.name);
    return rc;
}

/* Check that a cut of `n` rows (dim 0) or columns (dim 1) keeps whole blocks
 * of every encoding involved. */
static int check_cut(const wp_plan_weight *w, int dim, uint64_t n, uint64_t total, int tp, int vector, wp_err *e)
{
    const char *what = vector ? "elements" : dim ? "columns" : "rows";
    if (total % (uint64_t)tp)
        return wp_fail_setting(e, WP_EINVAL, "tp", "%s: tensor parallel degree %d does not divide its %llu %s (spec §2.5)",
                               w->name, tp, (unsigned long long)total, what);
    uint64_t blk[2] = {0, 0};
    const char *why[2] = {"", ""};
    if (w->enc == WP_ENC_FP8) {
        blk[0] = dim ? w->bc : w->br;
        why[0] = "output fp8 block";
    } else if (dim && w->enc == WP_ENC_MXFP4) {
        blk[0] = 32;
        why[0] = "mxfp4 group";
    } else if (dim && w->enc == WP_ENC_NVFP4) {
        blk[0] = 16;
        why[0] = "nvfp4 group";
    }
    if (w->passthrough || (w->method == WP_M_EXACT && w->enc == WP_ENC_FP8) || w->method == WP_M_CAST37) {
        /* source codes and scales are sliced (copy) or mapped one to one */
        if (w->src == WP_SRC_FP8) {
            blk[1] = dim ? w->src_bc : w->src_br;
            why[1] = "source fp8 block";
        } else if (w->src == WP_SRC_MXFP4 && dim) {
            blk[1] = w->method == WP_M_CAST37 ? 128 : 32;
            why[1] = "source mxfp4 group";
        }
    }
    for (int i = 0; i < 2; i++)
        if (!wp_cut_ok(n, blk[i]))
            return wp_fail_setting(e, WP_EINVAL, "tp",
                                   "%s: tensor parallel degree %d cuts %llu %s into %llu, not a multiple of the %s %llu",
                                   w->name, tp, (unsigned long long)total, what, (unsigned long long)n, why[i],
                                   (unsigned long long)blk[i]);
    return 0;
}

/* Emit one group's output on rank r. */
static int emit(builder *b, const group *g, int r, int ranks, int ep, int tp, wp_err *e)
{
    wp_plan *p = b->p;
    const sweight *s0 = g->src[0];
    int first = 0, n = g->n_exp;
    if (ep > 1 && (g->stacked || g->expert >= 0)) {
        int E = b->c->n_routed_experts;
        if (E % ep)
            return wp_fail_setting(e, WP_EUSAGE, "ep", "%s: expert parallel degree %d does not divide n_routed_experts %d",
                                   g->name, ep, E);
        int lo = wp_ep_first(E, ep, r), hi = lo + E / ep;
        if (g->stacked) {
            first = lo;
            n = E / ep;
        } else if (g->expert < lo || g->expert >= hi) {
            return 0;   /* another rank's expert */
        }
    }
    wp_plan_weight w;
    memset(&w, 0, sizeof w);
    w.t_weight = w.t_scale = w.t_global = SIZE_MAX;
    w.name = strdup(g->name);
    if (!w.name) return wp_oom(e, "plan");
    w.family = wp_family_of(g->name);
    w.layer = wp_layer_id(b->c, g->name);
    w.rank = r;
    w.indexer_path = strstr(g->name, ".attn.indexer.") != NULL;
    w.rule = resolve_rule(&p->profile, g->name, s0, b->use);
    decide(&p->profile, &w, s0);
    w.stacked = g->stacked;
    w.n_slices = g->stacked ? n : 1;
    w.first_expert = g->stacked ? first : g->expert;
    w.srcs_per_slice = g->per_slice;
    w.rows = s0->rows * (uint64_t)g->per_slice;
    w.cols = s0->cols;
    int rc = 0;
    int dim = ranks > 1 && tp > 1 ? wp_tp_split_dim(g->name) : -1;
    if (dim >= 0 && s0->kind == WP_SRC_RAW)
        dim = -1;   /* nothing raw is listed; keep it replicated */
    /* 1-D tensors (attn_sink) are [1, n] here: their dim 0 is our columns */
    int cut_cols = dim == 1 || (dim == 0 && s0->w->ndim == 1);
    uint64_t row0 = 0, col0 = 0, nrows = s0->rows, ncols = s0->cols;
    if (dim >= 0) {
        if (cut_cols) {
            ncols = s0->cols / (uint64_t)tp;
            col0 = ncols * (uint64_t)(r % tp);
            rc = check_cut(&w, 1, ncols, s0->cols, tp, s0->w->ndim == 1, e);
        } else {
            nrows = s0->rows / (uint64_t)tp;
            row0 = nrows * (uint64_t)(r % tp);
            rc = check_cut(&w, 0, nrows, s0->rows, tp, 0, e);
        }
        w.rows = nrows;
        w.cols = ncols;
    }
    if (!rc && g->per_slice == 2) {
        uint64_t blk = w.enc == WP_ENC_FP8 ? w.br : 0;
        if (!blk && w.passthrough && w.src == WP_SRC_FP8) blk = w.src_br;
        if (w.method == WP_M_CAST37) blk = 128;
        if (blk && s0->rows % blk)
            rc = wp_fail(e, WP_EINVAL, "%s: fusing w1|w3 of %llu rows each splits a %llu-row fp8 block", g->name,
                         (unsigned long long)s0->rows, (unsigned long long)blk);
    }
    if (!rc && w.src != WP_SRC_RAW && (w.enc == WP_ENC_MXFP4 || w.enc == WP_ENC_NVFP4) &&
        w.cols % (w.enc == WP_ENC_MXFP4 ? 32 : 16))
        rc = wp_fail(e, WP_EINVAL, "%s: %llu columns is not a multiple of the %s group %d (rule '%s')", g->name,
                     (unsigned long long)w.cols, wp_enc_name(w.enc), w.enc == WP_ENC_MXFP4 ? 32 : 16,
                     w.rule >= 0 ? p->profile.rules[w.rule].pattern : "");
    if (!rc) {
        w.srcs = calloc((size_t)w.n_slices * (size_t)g->per_slice, sizeof *w.srcs);
        if (!w.srcs) rc = wp_oom(e, "plan");
    }
    if (rc) {
        free(w.name);
        return rc;
    }
    for (int sl = 0; sl < w.n_slices; sl++)
        for (int k = 0; k < g->per_slice; k++) {
            const sweight *sw = g->src[(size_t)(g->stacked ? first + sl : 0) * (size_t)g->per_slice + (size_t)k];
            wp_plan_src *ps = &w.srcs[(size_t)sl * (size_t)g->per_slice + (size_t)k];
            ps->w = sw->w;
            ps->s = sw->s;
            ps->src_rows = sw->rows;
            ps->src_cols = sw->cols;
            ps->row0 = row0;
            ps->nrows = nrows;
            ps->col0 = col0;
            ps->ncols = ncols;
            ps->out_row0 = (uint64_t)k * sw->rows;
            w.in_bytes += sw->w->nbytes + (sw->s ? sw->s->nbytes : 0);
        }
    /* output tensors */
    if (w.src == WP_SRC_RAW) {
        const wp_tensor_info *t = s0->w;
        uint64_t sh[WP_MAX_DIMS];
        memcpy(sh, t->shape, sizeof sh);
        rc = place(b, &w, WP_ROLE_RAW, g->name, 0, WP_ENC_BF16, t->dtype, t->ndim, sh, t->nbytes, &w.t_weight, e);
    } else {
        uint64_t sh[WP_MAX_DIMS];
        int nd;
        if (s0->matrix || g->stacked) {
            sh[0] = w.rows;
            sh[1] = w.cols;
            nd = 2;
        } else {
            /* vectors and >2-D plain tensors keep their shape, split dim cut */
            nd = s0->w->ndim;
            memcpy(sh, s0->w->shape, sizeof sh);
            if (dim >= 0) sh[dim] /= (uint64_t)tp;
        }
        uint64_t db = wp_enc_data_bytes(w.enc, w.rows, w.cols);
        if (db == UINT64_MAX) rc = wp_fail(e, WP_EINVAL, "%s: size overflows", g->name);
        if (!rc) rc = place(b, &w, WP_ROLE_WEIGHT, g->name, 1, w.enc, WP_BF16, nd, sh, db, &w.t_weight, e);
        if (!rc && (w.enc == WP_ENC_FP8 || w.enc == WP_ENC_MXFP4 || w.enc == WP_ENC_NVFP4)) {
            const char *suf = ends_with(g->name, ".weight");
            size_t keep = suf ? (size_t)(suf - g->name) : strlen(g->name);
            char *sn = name_with(g->name, keep, ".scale");
            uint64_t ssh[2];
            wp_dtype sdt;
            if (w.enc == WP_ENC_FP8) {
                ssh[0] = (w.rows + w.br - 1) / w.br;
                ssh[1] = (w.cols + w.bc - 1) / w.bc;
                sdt = w.sfmt == WP_SCALE_F32 ? WP_F32 : WP_F8_E8M0;
            } else {
                ssh[0] = w.rows;
                ssh[1] = w.cols / (w.enc == WP_ENC_MXFP4 ? 32 : 16);
                sdt = w.enc == WP_ENC_MXFP4 ? WP_F8_E8M0 : WP_F8_E4M3;
            }
            uint64_t sb = wp_enc_scale_bytes(w.enc, w.rows, w.cols, w.br, w.bc, w.sfmt);
            if (!sn) rc = wp_oom(e, "plan");
            if (!rc) rc = place(b, &w, WP_ROLE_SCALE, sn, 0, w.enc, sdt, 2, ssh, sb, &w.t_scale, e);
            free(sn);
            if (!rc && w.enc == WP_ENC_NVFP4) {
                char *gn = name_with(g->name, keep, ".global_scale");
                uint64_t one = 1;
                if (!gn) rc = wp_oom(e, "plan");
                /* one F32 per slice: [E] when stacked, [1] otherwise */
                if (!rc) rc = place(b, &w, WP_ROLE_GLOBAL, gn, 0, w.enc, WP_F32, 1, &one, 4, &w.t_global, e);
                free(gn);
            }
        }
    }
    if (!rc && p->n_weights == b->cap_w) {
        size_t nc = b->cap_w ? 2 * b->cap_w : 512;
        wp_plan_weight *nw = realloc(p->weights, nc * sizeof *nw);
        if (!nw)
            rc = wp_oom(e, "plan");
        else {
            p->weights = nw;
            b->cap_w = nc;
        }
    }
    if (rc) {
        free(w.name);
        free(w.srcs);
        return rc;
    }
    p->weights[p->n_weights++] = w;
    return 0;
}

void wp_plan_free(wp_plan *p)
{
    if (!p) return;
    for (size_t i = 0; i < p->n_tensors; i++) free(p->tensors[i].name);
    free(p->tensors);
    for (size_t i = 0; i < p->n_weights; i++) {
        free(p->weights[i].name);
        free(p->weights[i].srcs);
    }
    free(p->weights);
    for (int i = 0; i < p->n_files; i++) free(p->files[i].name);
    free(p->files);
    free(p->source);
    wp_profile_free(&p->profile);
    free(p);
}

int wp_plan_build(wp_plan **out, const wp_ckpt *k, const wp_config *c, const wp_profile *prof,
                  const wp_plan_opts *o, wp_err *e)
{
    *out = NULL;
    wp_plan_opts opts = WP_PLAN_OPTS_INIT;
    if (o) opts = *o;
    if (opts.ep < 1 || opts.ep > 4096)
        return wp_fail_setting(e, WP_EUSAGE, "ep", "expert parallel degree %d must be in [1, 4096]", opts.ep);
    if (opts.tp < 1 || opts.tp > 4096)
        return wp_fail_setting(e, WP_EUSAGE, "tp", "tensor parallel degree %d must be in [1, 4096]", opts.tp);
    if (opts.ep > 1 && opts.tp > 1 && opts.ep != opts.tp)
        return wp_fail_setting(e, WP_EUSAGE, "ep",
                               "expert parallel degree %d with tensor parallel degree %d: combined, both must be "
                               "equal (the official mp layout, spec §2.5)",
                               opts.ep, opts.tp);
    if (opts.align && (opts.align < 4096 || opts.align > (1u << 30) || (opts.align & (opts.align - 1))))
        return wp_fail_setting(e, WP_EUSAGE, "align", "alignment %llu must be a power of two in [4 KiB, 1 GiB]",
                               (unsigned long long)opts.align);
    wp_plan *p = calloc(1, sizeof *p);
    if (!p) return wp_oom(e, "plan");
    int rc = wp_profile_copy(&p->profile, prof, e);
    if (rc) {
        free(p);
        return rc;
    }
    if (opts.fuse_w13 >= 0) p->profile.fuse_w13 = opts.fuse_w13;
    if (opts.align) p->profile.align = opts.align;
    if (p->profile.fuse_w13 && !p->profile.stack_experts) {
        wp_plan_free(p);
        return wp_fail_setting(e, WP_EUSAGE, "fuse-w13", "fusing w1 with w3 needs a profile that stacks experts");
    }
    p->opts = opts;
    p->ckpt = k;
    p->config = *c;
    {   /* a config.json without expert_dtype: the build records what the experts are */
        size_t nt = wp_ckpt_count(k);
        const wp_tensor_info **tv = malloc((nt ? nt : 1) * sizeof *tv);
        if (!tv) {
            wp_plan_free(p);
            return wp_oom(e, "plan");
        }
        for (size_t i = 0; i < nt; i++) tv[i] = wp_ckpt_tensor(k, i);
        wp_config_resolve_experts(&p->config, tv, nt);
        free(tv);
    }
    p->source = strdup(wp_ckpt_dir(k) ? wp_ckpt_dir(k) : "");
    int ranks = opts.ep > opts.tp ? opts.ep : opts.tp;
    p->n_files = ranks;
    p->files = calloc((size_t)ranks, sizeof *p->files);
    if (!p->source || !p->files) {
        wp_plan_free(p);
        return wp_oom(e, "plan");
    }
    for (int r = 0; r < ranks; r++) {
        char nm[64];
        if (ranks == 1)
            snprintf(nm, sizeof nm, "model.wpk");
        else
            snprintf(nm, sizeof nm, "model-rank%05d-of-%05d.wpk", r, ranks);
        p->files[r].name = strdup(nm);
        p->files[r].ep_rank = opts.ep > 1 ? r : 0;
        p->files[r].tp_rank = opts.tp > 1 ? r : 0;
        if (!p->files[r].name) {
            wp_plan_free(p);
            return wp_oom(e, "plan");
        }
    }
    builder b = {.k = k, .c = c, .p = p};
    /* A checkpoint that lacks a tensor the config implies cannot make a
     * complete build: refuse it here, before any output exists. */
    wp_inv_report inv;
    memset(&inv, 0, sizeof inv);
    rc = wp_inventory_check(c, k, &inv, e);
    if (!rc) {
        for (size_t i = 0; i < inv.n_issues && !rc; i++)
            if (inv.issues[i].kind == WP_INV_MISSING)
                rc = wp_fail(e, WP_EINVAL, "%s: missing from the checkpoint (%zu tensors missing in all)",
                             inv.issues[i].name, inv.n_missing);
    }
    wp_inv_report_free(&inv);
    if (!rc && !(b.use = calloc(p->profile.n_rules + 1, sizeof *b.use))) rc = wp_oom(e, "plan");
    if (!rc) rc = collect_sources(&b, e);
    if (!rc) rc = make_groups(&b, p->profile.stack_experts, p->profile.fuse_w13, e);
    for (int r = 0; r < ranks && !rc; r++)
        for (size_t i = 0; i < b.n_g && !rc; i++) rc = emit(&b, &b.g[i], r, ranks, opts.ep, opts.tp, e);
    if (!rc) rc = check_rule_use(&p->profile, b.use, e);
    if (!rc) {
        for (size_t i = 0; i < wp_ckpt_count(k); i++) {
            const wp_tensor_info *t = wp_ckpt_tensor(k, i);
            wp_plan_family *f = &p->family[wp_family_of(t->name)];
            f->n_in++;
            f->in_bytes += t->nbytes;
            p->in_bytes += t->nbytes;
        }
        for (size_t i = 0; i < p->n_tensors; i++) {
            const wp_plan_tensor *t = &p->tensors[i];
            wp_plan_family *f = &p->family[p->weights[t->weight].family];
            f->n_out++;
            f->out_bytes += t->nbytes;
            p->out_bytes += t->nbytes;
        }
    }
    builder_free(&b);
    if (rc) {
        wp_plan_free(p);
        return rc;
    }
    *out = p;
    return 0;
}

size_t wp_plan_find(const wp_plan *p, int file, const char *name)
{
    for (size_t i = 0; i < p->n_tensors; i++)
        if (p->tensors[i].file == file && !strcmp(p->tensors[i].name, name)) return i;
    return SIZE_MAX;
}

const char *wp_method_name(wp_method m)
{
    static const char *const n[] = {"copy", "exact", "cast", "quant"};
    return (unsigned)m < 4 ? n[m] : "?";
}

static const char *role_name(wp_role r)
{
    static const char *const n[] = {"weight", "scale", "global_scale", "raw"};
    return (unsigned)r < 4 ? n[r] : "?";
}

static cJSON *u64_array(const uint64_t *v, int n)
{
    cJSON *a = cJSON_CreateArray();
    for (int i = 0; i < n; i++) cJSON_AddItemToArray(a, cJSON_CreateNumber((double)v[i]));
    return a;
}

cJSON *wp_plan_to_json(const wp_plan *p)
{
    cJSON *o = cJSON_CreateObject();
    if (!o) return NULL;
    cJSON_AddStringToObject(o, "source", p->source);
    cJSON_AddItemToObject(o, "profile", wp_profile_to_json(&p->profile));
    cJSON *op = cJSON_AddObjectToObject(o, "options");
    cJSON_AddNumberToObject(op, "ep", p->opts.ep);
    cJSON_AddNumberToObject(op, "tp", p->opts.tp);
    cJSON_AddBoolToObject(op, "fuse_w13", p->profile.fuse_w13);
    cJSON_AddNumberToObject(op, "align", (double)p->profile.align);
    cJSON *fs = cJSON_AddArrayToObject(o, "files");
    for (int i = 0; i < p->n_files; i++) {
        cJSON *f = cJSON_CreateObject();
        cJSON_AddStringToObject(f, "name", p->files[i].name);
        cJSON_AddNumberToObject(f, "tensors", (double)p->files[i].n_tensors);
        cJSON_AddNumberToObject(f, "data_bytes", (double)p->files[i].data_bytes);
        cJSON_AddItemToArray(fs, f);
    }
    cJSON *ts = cJSON_AddArrayToObject(o, "tensors");
    for (size_t i = 0; i < p->n_tensors; i++) {
        const wp_plan_tensor *t = &p->tensors[i];
        const wp_plan_weight *w = &p->weights[t->weight];
        cJSON *j = cJSON_CreateObject();
        cJSON_AddStringToObject(j, "name", t->name);
        cJSON_AddNumberToObject(j, "file", t->file);
        cJSON_AddNumberToObject(j, "offset", (double)t->offset);
        cJSON_AddNumberToObject(j, "bytes", (double)t->nbytes);
        cJSON_AddStringToObject(j, "role", role_name(t->role));
        if (t->is_enc)
            cJSON_AddStringToObject(j, "encoding", wp_enc_name(t->enc));
        else
            cJSON_AddStringToObject(j, "dtype", wp_dtype_name(t->dtype));
        cJSON_AddItemToObject(j, "shape", u64_array(t->shape, t->ndim));
        if (t->stacked) cJSON_AddNumberToObject(j, "stride", (double)t->stride);
        if (t->role == WP_ROLE_WEIGHT || t->role == WP_ROLE_RAW) {
            if (t->is_enc && t->enc == WP_ENC_FP8) {
                uint64_t blk[2] = {w->br, w->bc};
                cJSON_AddItemToObject(j, "block", u64_array(blk, 2));
                cJSON_AddStringToObject(j, "scale_fmt", w->sfmt == WP_SCALE_F32 ? "f32" : "e8m0");
            }
            cJSON_AddStringToObject(j, "from", wp_src_kind_name(w->src));
            cJSON_AddStringToObject(j, "method", wp_method_name(w->method));
            cJSON_AddStringToObject(j, "loss", wp_loss_name(w->loss));
            if (w->rule >= 0) cJSON_AddStringToObject(j, "rule", p->profile.rules[w->rule].pattern);
            if (w->indexer_path) cJSON_AddBoolToObject(j, "indexer_path", 1);
            cJSON *src = cJSON_AddArrayToObject(j, "sources");
            size_t ns = (size_t)w->n_slices * (size_t)w->srcs_per_slice;
            for (size_t s = 0; s < ns; s++) cJSON_AddItemToArray(src, cJSON_CreateString(w->srcs[s].w->name));
            const wp_plan_src *s0 = &w->srcs[0];
            if (s0->nrows != s0->src_rows || s0->ncols != s0->src_cols) {
                uint64_t rr[2] = {s0->row0, s0->row0 + s0->nrows}, cc[2] = {s0->col0, s0->col0 + s0->ncols};
                cJSON_AddItemToObject(j, "source_rows", u64_array(rr, 2));
                cJSON_AddItemToObject(j, "source_cols", u64_array(cc, 2));
            }
        }
        cJSON_AddItemToArray(ts, j);
    }
    wp_loss_summary ls;
    wp_plan_loss_summary(p, NULL, &ls);
    cJSON_AddItemToObject(o, "loss", wp_loss_summary_json(&ls));
    cJSON *fam = cJSON_AddObjectToObject(o, "families");
    for (int f = 0; f < WP_FAM_COUNT; f++) {
        const wp_plan_family *x = &p->family[f];
        if (!x->n_in && !x->n_out) continue;
        cJSON *j = cJSON_AddObjectToObject(fam, wp_family_name((wp_family)f));
        cJSON_AddNumberToObject(j, "source_tensors", (double)x->n_in);
        cJSON_AddNumberToObject(j, "source_bytes", (double)x->in_bytes);
        cJSON_AddNumberToObject(j, "output_tensors", (double)x->n_out);
        cJSON_AddNumberToObject(j, "output_bytes", (double)x->out_bytes);
    }
    cJSON *tot = cJSON_AddObjectToObject(o, "totals");
    cJSON_AddNumberToObject(tot, "source_tensors", (double)wp_ckpt_count(p->ckpt));
    cJSON_AddNumberToObject(tot, "source_bytes", (double)p->in_bytes);
    cJSON_AddNumberToObject(tot, "output_tensors", (double)p->n_tensors);
    cJSON_AddNumberToObject(tot, "output_bytes", (double)p->out_bytes);
    cJSON_AddNumberToObject(tot, "weights", (double)p->n_weights);
    return o;
}

/* ---- Loss (docs/profiles.md "Lossless builds") ------------------------------ */

const char *wp_loss_name(wp_loss l)
{
    static const char *const n[] = {"copy", "exact", "lossy"};
    return (unsigned)l < 3 ? n[l] : "?";
}

int wp_loss_parse(const char *s, wp_loss *out)
{
    for (int l = 0; l < 3; l++)
        if (!strcmp(s, wp_loss_name((wp_loss)l))) {
            *out = (wp_loss)l;
            return 0;
        }
    return -1;
}

/* By rule: a copy keeps the bytes; the exact methods keep every dequantised
 * value (E8M0 -> F32 widens a power of two; e4m3/e2m1 times a power of two
 * fits in BF16 within its range; F32 holds the dequantised source itself;
 * the §3.7 cast is exact within 14 exponents of the tile maximum), each
 * checked element by element at run time; a re-quantisation is lossy. */
wp_loss wp_method_loss(wp_method m)
{
    switch (m) {
    case WP_M_COPY: return WP_LOSS_COPY;
    case WP_M_EXACT: case WP_M_CAST37: return WP_LOSS_EXACT;
    default: return WP_LOSS_LOSSY;
    }
}

void wp_loss_family(const char *name, char *out, size_t sz)
{
    if (!sz) return;
    const char *rel = rel_part(name);
    int mtp = rel != name && !strncmp(name, "mtp.", 4);
    const char *suf = ends_with(rel, ".weight");
    if (!suf) suf = ends_with(rel, ".scale");
    int n = suf ? (int)(suf - rel) : (int)strlen(rel);
    snprintf(out, sz, "%s%.*s", mtp ? "mtp." : "", n, rel);
    /* one routed expert is its stack: "ffn.experts.3.w1" -> "ffn.experts.w1" */
    char *x = strstr(out, "experts.");
    if (x) {
        char *d = x + 8, *q = d;
        while (*q >= '0' && *q <= '9') q++;
        if (q > d && *q == '.') memmove(d, q + 1, strlen(q + 1) + 1);
    }
}

/* Sensitive families, stated once: a lossy re-encode of these moves the
 * logits far more than its per-tensor error says (issue 11: the router gate
 * or the embedding in MXFP4 pass the NMSE gate at cosine 0.99+ while prefill
 * logits fall to cosine 0.76 / 0.72).  Matched on the layer-relative name. */
static const struct sensitive {
    const char *what;
    const char *prefix;        /* the layer-relative name starts with it ... */
    const char *part;          /* ... or contains it */
} sensitive[] = {
    {"router gate", "ffn.gate.", NULL},              /* gate.weight, gate.bias */
    {"embedding", "embed.", NULL},
    {"head", "head.", NULL},
    {"HC parameters", "hc_", NULL},                  /* hc_{attn,ffn,head}_{fn,base,scale} */
    {"indexer", NULL, "indexer."},                   /* wq_b, weights_proj, its compressor */
    {"compressor", NULL, "compressor."},             /* wkv, wgate, norm, ape */
};

const char *wp_sensitive_family(const char *name)
{
    const char *rel = rel_part(name);
    for (size_t i = 0; i < sizeof sensitive / sizeof sensitive[0]; i++) {
        const struct sensitive *x = &sensitive[i];
        if ((x->prefix && !strncmp(rel, x->prefix, strlen(x->prefix))) || (x->part && strstr(rel, x->part)))
            return x->what;
    }
    return NULL;
}

wp_loss wp_plan_weight_loss(const wp_plan *p, size_t i, const uint64_t *inexact)
{
    wp_loss l = p->weights[i].loss;
    return l == WP_LOSS_EXACT && inexact && inexact[i] ? WP_LOSS_LOSSY : l;
}

static int cmp_str(const void *a, const void *b) { return strcmp((const char *)a, (const char *)b); }

void wp_plan_loss_summary(const wp_plan *p, const uint64_t *inexact, wp_loss_summary *s)
{
    memset(s, 0, sizeof *s);
    for (size_t i = 0; i < p->n_weights; i++) {
        if (wp_plan_weight_loss(p, i, inexact) != WP_LOSS_LOSSY) continue;
        s->lossy_weights++;
        char f[96];
        wp_loss_family(p->weights[i].name, f, sizeof f);
        int seen = 0;
        for (size_t j = 0; j < s->n_families && !seen; j++) seen = !strcmp(s->families[j], f);
        if (seen) continue;
        if (s->n_families < WP_LOSS_MAX_FAMILIES)
            memcpy(s->families[s->n_families++], f, sizeof f);
        else
            s->more_families++;
    }
    qsort(s->families, s->n_families, sizeof s->families[0], cmp_str);
    s->lossless = s->lossy_weights == 0;
}

void wp_loss_summary_line(const wp_loss_summary *s, char *out, size_t sz)
{
    if (s->lossless) {
        snprintf(out, sz, "lossless");
        return;
    }
    size_t o = (size_t)snprintf(out, sz, "lossy: %zu tensor%s (famil%s ", s->lossy_weights,
                                s->lossy_weights == 1 ? "" : "s", s->n_families == 1 ? "y" : "ies");
    for (size_t i = 0; i < s->n_families && o < sz; i++)
        o += (size_t)snprintf(out + o, sz - o, "%s%s", i ? ", " : "", s->families[i]);
    if (s->more_families && o < sz) o += (size_t)snprintf(out + o, sz - o, " and %zu more", s->more_families);
    if (o < sz) snprintf(out + o, sz - o, ")");
}

cJSON *wp_loss_summary_json(const wp_loss_summary *s)
{
    cJSON *o = cJSON_CreateObject();
    if (!o) return NULL;
    cJSON_AddBoolToObject(o, "lossless", s->lossless);
    cJSON_AddNumberToObject(o, "lossy_tensors", (double)s->lossy_weights);
    cJSON *f = cJSON_AddArrayToObject(o, "families");
    for (size_t i = 0; f && i < s->n_families; i++) cJSON_AddItemToArray(f, cJSON_CreateString(s->families[i]));
    return o;
}

/* "fp8 32x32 e8m0", "mxfp4", "bf16" */
static void enc_desc(wp_enc enc, uint32_t br, uint32_t bc, wp_scale_fmt sf, char *out, size_t sz)
{
    if (enc == WP_ENC_FP8)
        snprintf(out, sz, "fp8 %ux%u %s", br, bc, sf == WP_SCALE_F32 ? "f32" : "e8m0");
    else
        snprintf(out, sz, "%s", wp_enc_name(enc));
}

static void rule_desc(const wp_plan *p, const wp_plan_weight *w, char *out, size_t sz)
{
    const wp_rule *r = w->rule >= 0 ? &p->profile.rules[w->rule] : NULL;
    if (!r)
        snprintf(out, sz, "no rule");
    else if (r->origin)
        snprintf(out, sz, "override '%s'", r->pattern);
    else
        snprintf(out, sz, "rule %d ('%s') of profile %s", w->rule, r->pattern, p->profile.name);
}

static void step_desc(const wp_plan_weight *w, char *out, size_t sz)
{
    char a[48], b[48];
    enc_desc(w->src_enc, w->src_br, w->src_bc, w->src_sfmt, a, sizeof a);
    enc_desc(w->enc, w->br, w->bc, w->sfmt, b, sizeof b);
    snprintf(out, sz, "%s -> %s", a, b);
}

int wp_plan_check_loss(const wp_plan *p, int allow_lossy, int allow_sensitive, wp_err *e)
{
    /* an undeclared lossy step first, then the sensitive families: a lossy
     * re-encode of one is refused even when the profile or the user asks */
    for (int pass = 0; pass < 2; pass++)
        for (size_t i = 0; i < p->n_weights; i++) {
            const wp_plan_weight *w = &p->weights[i];
            if (w->loss != WP_LOSS_LOSSY) continue;
            const wp_rule *r = w->rule >= 0 ? &p->profile.rules[w->rule] : NULL;
            const char *sens = wp_sensitive_family(w->name);
            char step[128], rule[320];
            step_desc(w, step, sizeof step);
            rule_desc(p, w, rule, sizeof rule);
            if (pass == 1 && sens && !allow_sensitive)
                return wp_fail_setting(e, WP_EVERIFY, "allow-sensitive",
                                       "%s: %s by %s re-quantises the %s, a sensitive family: its effect on the "
                                       "model is far larger than its weight error shows; refused",
                                       w->name, step, rule, sens);
            if (pass == 0 && r && !r->origin && !r->lossy && !allow_lossy)
                return wp_fail_setting(e, WP_EVERIFY, "allow-lossy",
                                       "%s: %s by %s re-quantises (lossy) and the profile does not declare it "
                                       "(\"lossy\": true); refused",
                                       w->name, step, rule);
        }
    return 0;
}

int wp_plan_check_inexact(const wp_plan *p, const uint64_t *inexact, wp_err *e)
{
    for (size_t i = 0; inexact && i < p->n_weights; i++) {
        const wp_plan_weight *w = &p->weights[i];
        if (w->loss != WP_LOSS_EXACT || !inexact[i]) continue;
        char step[128];
        step_desc(w, step, sizeof step);
        return wp_fail_setting(e, WP_EVERIFY, "allow-lossy",
                               "%s: %llu element(s) not preserved by the exact %s re-encode (%s): the build "
                               "would be lossy; refused",
                               w->name, (unsigned long long)inexact[i], step,
                               w->method == WP_M_CAST37 ? "spec §3.7: a group exponent more than 14 below its tile's"
                                                        : "a value outside the target's range");
    }
    return 0;
}

/* plan tensors sorted by (file, name), for the manifest's lookups */
static int cmp_tensor_idx(const void *a, const void *b, void *ctx)
{
    const wp_plan *p = ctx;
    const wp_plan_tensor *x = &p->tensors[*(const size_t *)a], *y = &p->tensors[*(const size_t *)b];
    if (x->file != y->file) return x->file < y->file ? -1 : 1;
    return strcmp(x->name, y->name);
}

int wp_plan_manifest_loss(const wp_plan *p, const uint64_t *inexact, wp_manifest *m, wp_err *e)
{
    wp_loss_summary s;
    wp_plan_loss_summary(p, inexact, &s);
    if (s.more_families)
        return wp_fail(e, WP_EINVAL, "manifest: more than %d lossy families", WP_LOSS_MAX_FAMILIES);
    size_t *ix = malloc((p->n_tensors ? p->n_tensors : 1) * sizeof *ix);
    if (!ix) return wp_oom(e, "the manifest");
    for (size_t i = 0; i < p->n_tensors; i++) ix[i] = i;
    qsort_r(ix, p->n_tensors, sizeof *ix, cmp_tensor_idx, (void *)p);
    int rc = 0;
    for (uint64_t i = 0; i < m->ntensors && !rc; i++) {
        wp_mtensor *t = &m->tensors[i];
        int f = 0;
        while (f < p->n_files && strcmp(p->files[f].name, m->files[t->file].path)) f++;
        size_t lo = 0, hi = p->n_tensors, ti = SIZE_MAX;
        while (f < p->n_files && lo < hi) {
            size_t mid = lo + (hi - lo) / 2;
            const wp_plan_tensor *x = &p->tensors[ix[mid]];
            int c = x->file != f ? (x->file < f ? -1 : 1) : strcmp(x->name, t->name);
            if (!c) {
                ti = ix[mid];
                break;
            }
            if (c < 0) lo = mid + 1;
            else hi = mid;
        }
        if (ti == SIZE_MAX) {
            rc = wp_fail(e, WP_EINVAL, "manifest: tensor %s of %s is not in the plan", t->name,
                         m->files[t->file].path);
            break;
        }
        static const wp_mloss map[] = {WP_MLOSS_COPY, WP_MLOSS_EXACT, WP_MLOSS_LOSSY};
        t->loss = map[wp_plan_weight_loss(p, p->tensors[ti].weight, inexact)];
    }
    free(ix);
    if (rc) return rc;
    m->families = calloc(s.n_families + 1, sizeof *m->families);
    if (!m->families) return wp_oom(e, "the manifest");
    for (size_t i = 0; i < s.n_families; i++) {
        if (!(m->families[i] = strdup(s.families[i]))) return wp_oom(e, "the manifest");
        m->nfamilies++;
    }
    m->has_loss = 1;
    m->lossless = s.lossless;
    m->lossy_tensors = s.lossy_weights;
    return 0;
}
