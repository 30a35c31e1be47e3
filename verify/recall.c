/* recall.c — the end-to-end check of a plan's indexer path (see recall.h). */
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "verify/recall.h"

/* Two deterministic prompts of 8 x index_topk tokens (at least 64, at most
 * the model's context). */
static int make_prompts(const wp_config *c, int32_t *pr[2], int *lens)
{
    int n = 8 * c->index_topk;
    if (n < 64) n = 64;
    if (c->max_position_embeddings > 0 && n > c->max_position_embeddings) n = c->max_position_embeddings;
    uint64_t x = 0x9E3779B97F4A7C15ull;
    for (int p = 0; p < 2; p++) {
        pr[p] = malloc((size_t)n * sizeof **pr);
        if (!pr[p]) return -1;
        lens[p] = n;
        for (int i = 0; i < n; i++) {
            x = x * 6364136223846793005ull + 1442695040888963407ull;
            pr[p][i] = (int32_t)((x >> 33) % (uint64_t)c->vocab_size);
        }
    }
    return 0;
}

int wp_indexer_recall_of_plan(const wp_plan *p, const char *ckpt_dir, int threads, uint64_t mem_budget,
                              double recall_min, wp_parity_report *r, wp_err *e)
{
    char dir[4096];
    const char *tmp = getenv("TMPDIR");
    snprintf(dir, sizeof dir, "%s/wpack-quant-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(dir)) return wp_fail_errno(e, "%s: cannot create a temporary directory", dir);
    char build[4200];
    snprintf(build, sizeof build, "%s/build", dir);
    wp_sink sink;
    int rc = wp_dir_sink_new(&sink, build, 0, e);
    wp_convert_opts o = {.threads = threads, .mem_budget = mem_budget};
    if (!rc) {
        rc = wp_convert_run(p, &sink, &o, NULL, e);
        wp_dir_sink_free(&sink);
    }
    wp_tsrc *src = NULL, *ref = NULL;
    int32_t *pr[2] = {NULL, NULL};
    int lens[2];
    if (!rc) rc = wp_tsrc_open(&src, build, e);
    if (!rc) rc = wp_tsrc_open_hf(&ref, ckpt_dir, e);
    if (!rc && make_prompts(&p->config, pr, lens)) rc = wp_oom(e, "indexer recall prompts");
    wp_rt_opts ro = {.threads = threads > 0 ? threads : 1};
    if (!rc)
        rc = wp_parity_against(src, &ro, ref, &ro, (const int32_t *const *)pr, lens, 2, recall_min, r, e);
    free(pr[0]);
    free(pr[1]);
    wp_tsrc_close(src);
    wp_tsrc_close(ref);
    char cmd[8400];
    snprintf(cmd, sizeof cmd, "%s/manifest.json", build);
    unlink(cmd);
    for (int f = 0; f < p->n_files; f++) {
        snprintf(cmd, sizeof cmd, "%s/%s", build, p->files[f].name);
        unlink(cmd);
    }
    rmdir(build);
    rmdir(dir);
    return rc;
}

