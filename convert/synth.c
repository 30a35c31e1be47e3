/*
 * synth.c — `wpack synth`: random checkpoints in the official layout.  See
 * synth.h for the layout and the contents; the tensors and shapes are the
 * inventory's (inventory.c), so a synth checkpoint passes its own check.
 */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/outdir.h"
#include "convert/synth.h"
#include "quant/quant.h"

#define CHUNK (4u << 20)   /* bytes generated and written at a time */

/* ---- presets ------------------------------------------------------------------ */

static void common_v4(wp_config *c)
{
    c->n_mtp_layers = 1;
    c->n_kv_heads = 1;
    c->rope_head_dim = 64;
    c->n_shared_experts = 1;
    c->hc_mult = 4;
    c->hc_sinkhorn_iters = 20;
    c->hc_eps = 1e-6;
    c->norm_eps = 1e-6;
    c->swiglu_limit = 10.0;
    c->rope_theta = 10000;
    c->compress_rope_theta = 160000;
    c->beta_fast = 32;
    c->beta_slow = 1;
    c->index_head_dim = 128;
    c->bos_token_id = 0;
    c->eos_token_id = 1;
    snprintf(c->score_func, sizeof c->score_func, "sqrtsoftplus");
    snprintf(c->quant_method, sizeof c->quant_method, "fp8");
    snprintf(c->quant_fmt, sizeof c->quant_fmt, "e4m3");
    snprintf(c->scale_fmt, sizeof c->scale_fmt, "ue8m0");
    snprintf(c->expert_dtype, sizeof c->expert_dtype, "fp4");
    c->weight_block[0] = c->weight_block[1] = 128;
}

/* Round trip through config.json text: the preset (or trimmed) config must
 * pass every rule a real config.json does. */
static int revalidate(wp_config *c, const char *what, wp_err *e)
{
    cJSON *j = wp_config_to_json(c);
    char *s = j ? cJSON_PrintUnformatted(j) : NULL;
    cJSON_Delete(j);
    if (!s) return wp_oom(e, "%s", what);
    int rc = wp_config_parse(c, s, strlen(s), what, e);
    free(s);
    return rc;
}

int wp_synth_preset(wp_config *c, const char *name, wp_err *e)
{
    memset(c, 0, sizeof *c);
    common_v4(c);
    if (!strcmp(name, "tiny")) {   /* tests/fixtures/tiny-a/hf/config.json */
        c->vocab_size = 512;
        c->dim = 256;
        c->n_layers = 4;
        c->n_heads = 4;
        c->head_dim = 128;
        c->q_lora_rank = 128;
        c->o_groups = 2;
        c->o_lora_rank = 64;
        c->window_size = 32;
        c->n_routed_experts = 8;
        c->n_activated_experts = 2;
        c->moe_inter_dim = 128;
        c->n_hash_layers = 1;
        c->route_scale = 2.5;
        c->index_n_heads = 16;
        c->index_topk = 16;
        c->rope_factor = 4;
        c->original_seq_len = 64;
        c->max_position_embeddings = 512;
        static const int r[5] = {0, 4, 128, 4, 0};
        c->n_compress_ratios = 5;
        memcpy(c->compress_ratios, r, sizeof r);
    } else if (!strcmp(name, "flash") || !strcmp(name, "pro")) {   /* spec §1.1 */
        int pro = name[0] == 'p';
        c->vocab_size = 129280;
        c->dim = pro ? 7168 : 4096;
        c->n_layers = pro ? 61 : 43;
        c->n_heads = pro ? 128 : 64;
        c->head_dim = 512;
        c->q_lora_rank = pro ? 1536 : 1024;
        c->o_groups = pro ? 16 : 8;
        c->o_lora_rank = 1024;
        c->window_size = 128;
        c->n_routed_experts = pro ? 384 : 256;
        c->n_activated_experts = 6;
        c->moe_inter_dim = pro ? 3072 : 2048;
        c->n_hash_layers = 3;
        c->route_scale = pro ? 2.5 : 1.5;
        c->index_n_heads = 64;
        c->index_topk = pro ? 1024 : 512;
        c->rope_factor = 16;
        c->original_seq_len = 65536;
        c->max_position_embeddings = 1048576;
        /* spec §1.2: layers 0-1 sliding window (Flash) or HCA (Pro), then
         * CSA on even and HCA on odd layers; the MTP block 0 */
        c->n_compress_ratios = c->n_layers + 1;
        for (int l = 0; l < c->n_layers; l++)
            c->compress_ratios[l] = l < 2 ? (pro ? 128 : 0) : l % 2 == 0 ? 4 : 128;
        c->compress_ratios[c->n_layers] = 0;
    } else {
        return wp_fail(e, WP_EUSAGE, "synth: unknown preset '%s' (tiny, flash, pro)", name);
    }
    return revalidate(c, name, e);
}

int wp_synth_trim(wp_config *c, int layers, int experts, int block, wp_err *e)
{
    if (layers < 0 || experts < 0 || block < 0)
        return wp_fail(e, WP_EUSAGE, "synth: the layer count, expert count and block size must be positive");
    if (layers) {
        if (layers > c->n_layers)
            return wp_fail_setting(e, WP_EUSAGE, "layers", "synth: %d layers asked for: the preset has %d", layers,
                                   c->n_layers);
        /* the MTP entries follow the kept main layers */
        memmove(&c->compress_ratios[layers], &c->compress_ratios[c->n_layers],
                (size_t)c->n_mtp_layers * sizeof c->compress_ratios[0]);
        c->n_layers = layers;
        c->n_compress_ratios = layers + c->n_mtp_layers;
        if (c->n_hash_layers > layers) c->n_hash_layers = layers;
    }
    if (experts) {
        c->n_routed_experts = experts;
        if (c->n_activated_experts > experts) c->n_activated_experts = experts;
    }
    if (block) c->weight_block[0] = c->weight_block[1] = block;
    return revalidate(c, "synth", e);
}

/* ---- shard plan ------------------------------------------------------------------ */

int wp_shard_count(const wp_config *c) { return c->n_layers + 2 + (c->n_mtp_layers > 0); }

int wp_shard_of(const wp_config *c, const wp_expect *x)
{
    if (x->layer >= c->n_layers) return c->n_layers + 2;   /* every MTP block */
    if (x->layer >= 0) return x->layer + 1;
    return strcmp(x->name, "embed.weight") ? c->n_layers + 1 : 0;
}

void wp_shard_name(const wp_config *c, int shard, char *buf, size_t n)
{
    snprintf(buf, n, "model-%05d-of-%05d.safetensors", shard + 1, wp_shard_count(c));
}

/* The Rust serializer sorts by dtype, widest first, then by name. */
static int dtype_rank(wp_dtype t)
{
    static const wp_dtype order[] = {WP_U64, WP_I64, WP_F64, WP_F32, WP_U32, WP_I32,
                                     WP_BF16, WP_F16, WP_U16, WP_I16, WP_F8_E8M0, WP_F8_E4M3,
                                     WP_F8_E5M2, WP_I8, WP_U8, WP_F6_E3M2, WP_F6_E2M3, WP_F4,
                                     WP_BOOL};
    for (size_t i = 0; i < sizeof order / sizeof order[0]; i++)
        if (order[i] == t) return (int)i;
    return (int)WP_DTYPE_COUNT;
}

int wp_official_order(const void *a, const void *b)
{
    const wp_expect *x = *(const wp_expect *const *)a, *y = *(const wp_expect *const *)b;
    int d = dtype_rank(x->dtype) - dtype_rank(y->dtype);
    return d ? d : strcmp(x->name, y->name);
}

/* ---- contents ----------------------------------------------------------------------- */

typedef struct rng { uint64_t s[4]; } rng;

static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

static uint64_t next(rng *r)   /* xoshiro256** */
{
    uint64_t *s = r->s, res = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return res;
}

/* One stream per tensor, from the seed and the name, so a tensor's bytes do
 * not depend on what else the checkpoint holds or the order of writing. */
static void seed_tensor(rng *r, uint64_t seed, const char *name)
{
    uint64_t h = 0xcbf29ce484222325ull;   /* FNV-1a */
    for (const char *p = name; *p; p++) h = (h ^ (uint8_t)*p) * 0x100000001b3ull;
    uint64_t x = seed ^ splitmix64(&h);
    for (int i = 0; i < 4; i++) r->s[i] = splitmix64(&x);
}

/* Normal-ish N(0,1): Irwin-Hall sum of four 16-bit uniforms, rescaled to unit
 * variance; bounded by +-2*sqrt(3), which keeps FP8 codes clear of 448. */
static float gauss(rng *r)
{
    uint64_t v = next(r);
    uint32_t s = (uint32_t)(v & 0xFFFF) + (uint32_t)((v >> 16) & 0xFFFF) +
                 (uint32_t)((v >> 32) & 0xFFFF) + (uint32_t)(v >> 48);
    return ((float)s / 65536.0f - 2.0f) * 1.7320508f;
}

enum { G_FP8, G_E8M0, G_F32SCALE, G_NIBBLES, G_FLOAT, G_TID2EID };

typedef struct gen {
    int kind;
    wp_dtype dtype;
    float mean, std;
    uint64_t k, E;   /* tid2eid: ids per row, experts */
    rng r;
} gen;

static int ends(const char *s, const char *suf)
{
    size_t n = strlen(s), m = strlen(suf);
    return n >= m && !strcmp(s + n - m, suf);
}

static void gen_init(gen *g, const wp_config *c, const wp_expect *x, uint64_t seed)
{
    memset(g, 0, sizeof *g);
    seed_tensor(&g->r, seed, x->name);
    g->dtype = x->dtype;
    uint64_t fan_in = x->ndim >= 2 ? x->shape[x->ndim - 1] : x->shape[0];
    g->std = 1.0f / sqrtf((float)(fan_in ? fan_in : 1));
    if (x->dtype == WP_F8_E4M3) g->kind = G_FP8;
    else if (x->dtype == WP_F8_E8M0) g->kind = G_E8M0;
    else if (x->dtype == WP_I8) g->kind = G_NIBBLES;
    else if (x->dtype == WP_I64) {
        g->kind = G_TID2EID;
        g->k = x->shape[1];
        g->E = (uint64_t)c->n_routed_experts;
    } else if (x->dtype == WP_F32 && ends(x->name, ".scale")) g->kind = G_F32SCALE;
    else {
        g->kind = G_FLOAT;
        /* magnitudes a model would have: RMSNorm gains and HC scales near 1,
         * small routing biases and position biases, unit-ish sinks */
        if (ends(x->name, "norm.weight")) g->mean = 1.0f, g->std = 0.05f;
        else if (strstr(x->name, "hc_") && ends(x->name, "_scale")) g->mean = 1.0f, g->std = 0.1f;
        else if (ends(x->name, "_base")) g->std = 0.1f;
        else if (ends(x->name, "gate.bias")) g->std = 0.01f;
        else if (ends(x->name, ".ape")) g->std = 0.02f;
        else if (ends(x->name, "attn_sink")) g->std = 1.0f;
    }
}

/* Elements per chunk: whole tid2eid rows. */
static uint64_t chunk_elems(const gen *g)
{
    unsigned bits = wp_dtype_bits(g->dtype);
    uint64_t n = (uint64_t)CHUNK * 8 / bits;
    if (g->kind == G_TID2EID) n = n / g->k * g->k;
    return n;
}

/* Fill buf with the next n elements (bytes for I8 nibble pairs). */
static void gen_fill(gen *g, uint8_t *buf, uint64_t n)
{
    switch (g->kind) {
    case G_FP8:   /* codes of N(0,1)*100: amax/scale near 300-350 as in tight blocks */
        for (uint64_t i = 0; i < n; i++) buf[i] = wp_f32_to_e4m3(gauss(&g->r) * 100.0f);
        break;
    case G_E8M0:   /* 2^-9 .. 2^-7 */
        for (uint64_t i = 0; i < n; i++) buf[i] = (uint8_t)(118 + next(&g->r) % 3);
        break;
    case G_F32SCALE:
        for (uint64_t i = 0; i < n; i++) {
            float v = ldexpf(1.0f, (int)(next(&g->r) % 3) - 9);
            memcpy(buf + 4 * i, &v, 4);
        }
        break;
    case G_NIBBLES:
        for (uint64_t i = 0; i < n; i += 8) {
            uint64_t v = next(&g->r);
            memcpy(buf + i, &v, n - i < 8 ? n - i : 8);
        }
        break;
    case G_TID2EID:   /* each row: k distinct experts, by rejection (k << E) */
        for (uint64_t row = 0; row < n / g->k; row++) {
            int64_t *o = (int64_t *)(void *)(buf + 8 * row * g->k);
            for (uint64_t j = 0; j < g->k; j++) {
                int64_t id;
                int dup;
                do {
                    id = (int64_t)(next(&g->r) % g->E);
                    dup = 0;
                    for (uint64_t q = 0; q < j; q++) dup |= o[q] == id;
                } while (dup);
                o[j] = id;
            }
        }
        break;
    default:
        for (uint64_t i = 0; i < n; i++) {
            float v = g->mean + g->std * gauss(&g->r);
            if (g->dtype == WP_BF16) {
                /* RNE to bf16, inline: v is finite and far from overflow
                 * (embed + head are 2 GB of Flash-shaped output) */
                uint32_t b;
                memcpy(&b, &v, 4);
                uint16_t h = (uint16_t)((b + 0x7FFFu + ((b >> 16) & 1u)) >> 16);
                memcpy(buf + 2 * i, &h, 2);
            } else if (g->dtype == WP_F16) {
                uint16_t h = wp_f32_to_f16(v);
                memcpy(buf + 2 * i, &h, 2);
            } else {
                memcpy(buf + 4 * i, &v, 4);
            }
        }
        break;
    }
}

/* ---- writing -------------------------------------------------------------------------- */

typedef struct job {
    const wp_config *c;
    const wp_synth_opts *o;
    uint8_t *buf;
    uint64_t done, total;
} job;

static int write_tensor(job *j, wp_st_writer *w, const wp_expect *x, wp_err *e)
{
    gen g;
    gen_init(&g, j->c, x, j->o->seed);
    uint64_t elems = 1;
    for (int d = 0; d < x->ndim; d++) elems *= x->shape[d];
    if (g.kind == G_NIBBLES) elems = wp_expect_nbytes(x);   /* I8: one element per byte */
    uint64_t per = chunk_elems(&g);
    unsigned bits = wp_dtype_bits(x->dtype);
    for (uint64_t at = 0; at < elems; at += per) {
        uint64_t n = elems - at < per ? elems - at : per, nb = n * bits / 8;
        gen_fill(&g, j->buf, n);
        int rc = wp_st_writer_write(w, j->buf, (size_t)nb, e);
        if (rc) return rc;
        j->done += nb;
        if (j->o->progress) j->o->progress(j->o->progress_ud, "synth", j->done, j->total);
    }
    return 0;
}

static int write_shard(job *j, const char *tmpdir, int shard, const wp_expect **t, size_t n,
                       wp_err *e)
{
    char name[64], path[4096];
    wp_shard_name(j->c, shard, name, sizeof name);
    if (wp_path_join(path, sizeof path, tmpdir, name))
        return wp_fail(e, WP_EUSAGE, "%s: path too long", tmpdir);
    wp_st_writer *w;
    int rc = wp_st_writer_open(&w, path, e);
    if (rc) return rc;
    for (size_t i = 0; i < n && !rc; i++)
        rc = wp_st_writer_add(w, t[i]->name, t[i]->dtype, t[i]->ndim, t[i]->shape, e);
    for (size_t i = 0; i < n && !rc; i++) rc = write_tensor(j, w, t[i], e);
    if (!rc) return wp_st_writer_commit(w, e);
    wp_st_writer_abort(w);
    return rc;
}

/* config.json: the model's keys (wp_config_to_json) plus the constant ones
 * of the official file (spec §1.1). */
static int write_config(const wp_config *c, const char *tmpdir, wp_err *e)
{
    cJSON *j = wp_config_to_json(c), *arch = cJSON_CreateStringArray((const char *[]){"DeepseekV4ForCausalLM"}, 1);
    int ok = j && arch;
    if (ok) {
        cJSON_AddItemToObject(j, "architectures", arch);
        arch = NULL;
        ok = cJSON_AddStringToObject(j, "model_type", "deepseek_v4") &&
             cJSON_AddStringToObject(j, "torch_dtype", "bfloat16") &&
             cJSON_AddStringToObject(j, "hidden_act", "silu") &&
             cJSON_AddBoolToObject(j, "tie_word_embeddings", 0) &&
             cJSON_AddBoolToObject(j, "norm_topk_prob", 1) &&
             cJSON_AddStringToObject(j, "topk_method", "noaux_tc");
        cJSON *q = cJSON_GetObjectItemCaseSensitive(j, "quantization_config");
        ok = ok && q && cJSON_AddStringToObject(q, "activation_scheme", "dynamic");
    }
    char *s = ok ? cJSON_Print(j) : NULL;
    cJSON_Delete(j);
    cJSON_Delete(arch);
    if (!s) return wp_oom(e, "synth: config.json");
    char path[4096];
    int rc = wp_path_join(path, sizeof path, tmpdir, "config.json")
                 ? wp_fail(e, WP_EUSAGE, "%s: path too long", tmpdir)
                 : wp_write_file_atomic(path, s, strlen(s), e);
    free(s);
    return rc;
}

int wp_synth_write(const wp_config *c, const char *dir, const wp_synth_opts *o,
                   wp_synth_stats *st, wp_err *e)
{
    /* an existing empty directory is taken (mkdir OUT && synth -o OUT);
     * with force an existing checkpoint is replaced */
    wp_outdir od;
    int rc = wp_outdir_begin(&od, dir,
                             &(wp_outdir_opts){.force = o->force, .take_empty = 1, .kind = WP_OUTDIR_CHECKPOINT}, e);
    if (rc) return rc;
    const char *tmp = wp_outdir_tmp(&od);

    wp_expect *x = NULL;
    const wp_expect **order = NULL;
    char (*shard_of)[64] = NULL;
    const char **names = NULL, **shards = NULL;
    size_t n = 0, m = 0;
    job j = {.c = c, .o = o};
    if ((rc = wp_inventory(c, &x, &n, e))) goto out;
    int ns = wp_shard_count(c);
    order = calloc(n, sizeof *order);
    shard_of = calloc((size_t)ns, sizeof *shard_of);
    names = calloc(n, sizeof *names);
    shards = calloc(n, sizeof *shards);
    j.buf = malloc(CHUNK);
    if (!order || !shard_of || !names || !shards || !j.buf) {
        rc = wp_oom(e, "synth");
        goto out;
    }
    for (size_t i = 0; i < n; i++)
        if (!x[i].optional) j.total += wp_expect_nbytes(&x[i]);
    for (int s = 0; s < ns && !rc; s++) {
        size_t k = 0;
        for (size_t i = 0; i < n; i++)
            if (!x[i].optional && wp_shard_of(c, &x[i]) == s) order[k++] = &x[i];
        qsort(order, k, sizeof *order, wp_official_order);
        wp_shard_name(c, s, shard_of[s], sizeof shard_of[s]);
        for (size_t i = 0; i < k; i++) {
            names[m] = order[i]->name;
            shards[m++] = shard_of[s];
        }
        rc = write_shard(&j, tmp, s, order, k, e);
    }
    if (rc) goto out;
    char path[4096];
    if ((rc = wp_path_join(path, sizeof path, tmp, "model.safetensors.index.json")))
        rc = wp_fail(e, WP_EUSAGE, "%s: path too long", tmp);
    if (!rc) rc = wp_st_write_index(path, names, shards, m, j.total, e);
    if (!rc) rc = write_config(c, tmp, e);
    if (rc) goto out;
    if ((rc = wp_outdir_commit(&od, e))) goto out;
    if (st) {
        st->tensors = m;
        st->shards = (size_t)ns;
        st->bytes = j.total;
    }
out:
    wp_outdir_abort(&od);   /* nothing left to do after a commit */
    free(j.buf);
    free(shards);
    free(names);
    free(shard_of);
    free(order);
    free(x);
    return rc;
}
