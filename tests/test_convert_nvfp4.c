/* test_convert_nvfp4.c — NVFP4 re-quantisation in the convert pipeline
 * (issues 13 and 14): the slice's sources are read once (the global-scale
 * pass and the encode pass share one in-memory copy; an MXFP4 source's
 * amax comes from its codes), so a per-rank convert reads exactly its share
 * of the checkpoint; and the codes, scales and global scale of every NVFP4
 * tensor, from MXFP4, FP8 and BF16 sources, whole or cut by --tp, on 1 and
 * 2 threads, are the scalar oracle's (wp_qk_scalar over the dequantised
 * source, global from wp_nvfp4_global_scale over the whole source) byte
 * for byte.  tiny-a's blackwell-nvfp4 bytes are pinned separately
 * (house_builds_byte_identical). */
#include <cjson/cJSON.h>
#include <sys/stat.h>

#include "quant/quant_priv.h"
#include "tests/cv_util.h"

#define HF WPT_TINY "/hf"

/* A rank's share under --ep N, from the checkpoint alone: every tensor but
 * the routed experts of the other ranks (contiguous ranges of E/N experts;
 * everything else is replicated on every rank). */
static uint64_t ep_share(const wp_ckpt *k, int n_experts, int ep, int rank)
{
    uint64_t sum = 0;
    int per = n_experts / ep;
    for (size_t i = 0; i < wp_ckpt_count(k); i++) {
        const wp_tensor_info *t = wp_ckpt_tensor(k, i);
        const char *x = strstr(t->name, ".ffn.experts.");
        int e;
        if (x && sscanf(x, ".ffn.experts.%d.", &e) == 1 && (e < rank * per || e >= (rank + 1) * per)) continue;
        sum += t->nbytes;
    }
    return sum;
}

/* Issue 13: a per-rank blackwell-nvfp4 convert reads its own share of the
 * checkpoint and no byte twice (before: every expert slice twice, once for
 * its global scale); the single-machine convert reads the checkpoint's
 * tensor bytes exactly once. */
TEST(convert_nvfp4_rank_reads_its_share_once)
{
    static char out[1 << 16];
    wp_err e = {0};
    wp_ckpt *k;
    REQUIRE(wp_ckpt_open(&k, HF, &e) == 0);
    uint64_t all = 0;
    for (size_t i = 0; i < wp_ckpt_count(k); i++) all += wp_ckpt_tensor(k, i)->nbytes;
    for (int threads = 1; threads <= 2; threads++) {
        for (int ep = 2; ep <= 4; ep += 2)
            for (int r = 0; r < ep; r++) {
                const char *d = wpt_path("%s/ep%d-r%d-t%d", wpt_tmpdir(), ep, r, threads);
                int rc = wpt_run(out, sizeof out, "%s convert %s -o %s --profile blackwell-nvfp4 --ep %d --rank %d "
                                 "--threads %d --json", wpt_wpack(), HF, d, ep, r, threads);
                CHECKF(rc == 0, "ep %d rank %d: exit %d: %s", ep, r, rc, out);
                long long rd = cvt_json_num(out, "bytes_read"), want = (long long)ep_share(k, 8, ep, r);
                CHECKF(rd == want, "--ep %d --rank %d, %d thread(s): read %lld bytes, its share is %lld", ep, r,
                       threads, rd, want);
                CHECK(want < (long long)all);
            }
        const char *d = wpt_path("%s/single-t%d", wpt_tmpdir(), threads);
        int rc = wpt_run(out, sizeof out, "%s convert %s -o %s --profile blackwell-nvfp4 --threads %d --json",
                         wpt_wpack(), HF, d, threads);
        CHECKF(rc == 0, "exit %d: %s", rc, out);
        CHECKF(cvt_json_num(out, "bytes_read") == (long long)all, "read %lld bytes of %llu", cvt_json_num(out, "bytes_read"),
               (unsigned long long)all);
        CHECK_EQ_INT(cvt_json_num(out, "checkpoint_tensor_bytes"), (long long)all);
    }
    wp_ckpt_close(k);
}

/* The whole source of s dequantised (every row and column): what the
 * global scale is taken over, whatever --tp cuts. */
static float *whole_source(wp_ckpt *k, const wp_plan_weight *w, const wp_plan_src *s)
{
    wp_err e = {0};
    wp_qweight q = {
        .enc = w->src_enc, .rows = s->src_rows, .cols = s->src_cols,
        .data = wp_ckpt_data(k, s->w, &e), .scale = s->s ? wp_ckpt_data(k, s->s, &e) : NULL,
        .sfmt = w->src_sfmt, .br = w->src_br, .bc = w->src_bc,
    };
    float *v = malloc(s->src_rows * s->src_cols * sizeof *v);
    if (!v || !q.data) {
        free(v);
        return NULL;
    }
    wp_qweight_dequant_rows(&q, 0, s->src_rows, v);
    return v;
}

/* Every NVFP4 weight of the plan, every slice, against the oracle. */
static size_t check_nvfp4_oracle(wp_ckpt *k, const wp_plan *p, const char *build, int rank)
{
    size_t n = 0;
    char name[64];
    snprintf(name, sizeof name, p->n_files > 1 ? "model-rank%05d-of-%05d.wpk" : "model.wpk", rank, p->n_files);
    wpk_file *f = cvt_open_wpk(build, name);
    if (!f) return 0;
    for (size_t wi = 0; wi < p->n_weights; wi++) {
        const wp_plan_weight *w = &p->weights[wi];
        if (w->enc != WP_ENC_NVFP4 || w->passthrough || w->rank != rank) continue;
        CHECK(w->srcs_per_slice == 1);
        if (w->srcs_per_slice != 1) continue;
        const wpk_tensor *t = wpk_find(f, w->name);
        CHECKF(t != NULL, "%s: missing", w->name);
        if (!t) continue;
        for (int sl = 0; sl < w->n_slices; sl++) {
            const wp_plan_src *s = &w->srcs[sl];
            float *all = whole_source(k, w, s);
            CHECK(all != NULL);
            if (!all) break;
            float g = wp_nvfp4_global_scale(all, s->src_rows * s->src_cols);
            float *cut = malloc(s->nrows * s->ncols * sizeof *cut);
            uint8_t *q = malloc(s->nrows * s->ncols / 2), *sc = malloc(s->nrows * s->ncols / 16);
            if (!cut || !q || !sc) {
                CHECK(!"out of memory");
                free(all), free(cut), free(q), free(sc);
                break;
            }
            for (uint64_t r = 0; r < s->nrows; r++)
                memcpy(cut + r * s->ncols, all + (s->row0 + r) * s->src_cols + s->col0, s->ncols * sizeof *cut);
            wp_qk_scalar.nvfp4_quant(cut, s->nrows, s->ncols, g, q, sc);
            wp_qweight o;
            wp_err e = {0};
            int rc = wpk_qweight(f, t, (uint64_t)sl, &o, &e);
            CHECKF(rc == 0, "%s: %s", w->name, e.msg);
            if (!rc) {
                CHECKF(o.rows == s->nrows && o.cols == s->ncols, "%s: shape", w->name);
                CHECKF(!memcmp(&o.global, &g, 4), "%s slice %d: global %a, oracle %a", w->name, sl, (double)o.global,
                       (double)g);
                CHECKF(!memcmp(o.data, q, s->nrows * s->ncols / 2), "%s slice %d: codes differ", w->name, sl);
                CHECKF(!memcmp(o.scale, sc, s->nrows * s->ncols / 16), "%s slice %d: scales differ", w->name, sl);
                n++;
            }
            free(all), free(cut), free(q), free(sc);
        }
    }
    wpk_close(f);
    return n;
}

TEST(convert_nvfp4_every_source_matches_scalar_oracle)
{
    static char out[1 << 16];
    /* experts from MXFP4, wq_a / wkv from FP8 (128x128 E8M0), the
     * compressors' wkv from BF16; then the same cut by --tp 2 */
    const char *types = "--profile bf16 --tensor-type ffn.experts=nvfp4 --tensor-type attn.wq_a=nvfp4 "
                        "--tensor-type attn.wkv=nvfp4 --tensor-type compressor.wkv=nvfp4 --allow-lossy "
                        "--allow-sensitive";
    const char *t[] = {"ffn.experts=nvfp4", "attn.wq_a=nvfp4", "attn.wkv=nvfp4", "compressor.wkv=nvfp4"};
    for (int tp = 1; tp <= 2; tp++)
        for (int threads = 1; threads <= 2; threads++) {
            const char *d = wpt_path("%s/o-tp%d-t%d", wpt_tmpdir(), tp, threads);
            int rc = wpt_run(out, sizeof out, "%s convert %s -o %s %s --tp %d --threads %d -q", wpt_wpack(), HF, d,
                             types, tp, threads);
            CHECKF(rc == 0, "tp %d: exit %d: %s", tp, rc, out);
            if (rc) continue;
            wp_plan_opts po = WP_PLAN_OPTS_INIT;
            wp_err e = {0};
            wp_ckpt *k;
            wp_plan *p;
            po.tp = tp;
            rc = cvt_plan(HF, "bf16", t, 4, &po, &k, &p, &e);
            CHECKF(rc == 0, "plan: %s", e.msg);
            if (rc) continue;
            int src_seen[3] = {0};   /* MXFP4, FP8, BF16 sources re-quantised */
            for (size_t i = 0; i < p->n_weights; i++) {
                const wp_plan_weight *w = &p->weights[i];
                if (w->enc != WP_ENC_NVFP4 || w->passthrough) continue;
                src_seen[w->src_enc == WP_ENC_MXFP4 ? 0 : w->src_enc == WP_ENC_FP8 ? 1 : 2]++;
            }
            CHECKF(src_seen[0] && src_seen[1] && src_seen[2], "sources: %d MXFP4, %d FP8, %d BF16", src_seen[0],
                   src_seen[1], src_seen[2]);
            size_t n = 0;
            for (int r = 0; r < p->n_files; r++) n += check_nvfp4_oracle(k, p, d, r);
            CHECKF(n > 100, "%zu NVFP4 slices checked", n);
            cvt_free(k, p);
        }
}

/* A slice that does not fit the memory budget is read twice (its amax
 * pass, then the encode pass), as before: the same .wpk bytes as the
 * read-once path, and bytes_read shows the second read of every expert
 * slice (WPACK_CONVERT_TWO_PASS forces that path on tiny-a's small slices). */
TEST(convert_nvfp4_two_pass_path_same_bytes)
{
    static char out[1 << 16];
    wp_err e = {0};
    wp_ckpt *k;
    REQUIRE(wp_ckpt_open(&k, HF, &e) == 0);
    uint64_t all = 0, experts = 0;
    for (size_t i = 0; i < wp_ckpt_count(k); i++) {
        const wp_tensor_info *t = wp_ckpt_tensor(k, i);
        all += t->nbytes;
        if (strstr(t->name, ".ffn.experts.")) experts += t->nbytes;
    }
    wp_ckpt_close(k);
    uint8_t *ref = NULL;
    size_t ref_len = 0;
    for (int two = 0; two <= 1; two++)
        for (int threads = 1; threads <= 2; threads++) {
            const char *d = wpt_path("%s/b%d-%d", wpt_tmpdir(), two, threads);
            int rc = wpt_run(out, sizeof out, "%s %s convert %s -o %s --profile blackwell-nvfp4 --threads %d --json",
                             two ? "WPACK_CONVERT_TWO_PASS=1" : "", wpt_wpack(), HF, d, threads);
            CHECKF(rc == 0, "exit %d: %s", rc, out);
            long long rd = cvt_json_num(out, "bytes_read");
            CHECKF(rd == (long long)(two ? all + experts : all), "two-pass %d: read %lld (tensors %llu, experts %llu)",
                   two, rd, (unsigned long long)all, (unsigned long long)experts);
            uint8_t *b;
            size_t n;
            REQUIRE(wpt_read_file(wpt_path("%s/model.wpk", d), &b, &n) == 0);
            if (!ref) {
                ref = b, ref_len = n;
                continue;
            }
            CHECKF(n == ref_len && !memcmp(b, ref, n), "two-pass %d, %d thread(s): other .wpk bytes", two, threads);
            free(b);
        }
    free(ref);
    CHECK(experts > 0);
}
