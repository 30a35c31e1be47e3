/* cmd_parity.c — `wpack parity`: the runtime against golden outputs, one
 * build against a reference build, or the FP4 indexer against its bf16 self
 * (verify/parity.h, docs/parity.md). */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/rt_args.h"
#include "runtime/tokens.h"
#include "trust/build.h"
#include "verify/parity.h"

/* Parse a prompts file: one prompt per non-empty line ('#' starts a comment;
 * runtime/tokens.h). */
static int read_prompts(const char *path, int32_t ***out, int **lens, int *n, wp_err *e)
{
    return wp_prompt_lines_load(path, out, lens, n, e);
}

static void print_recall(const wp_parity_report *r, const char *what)
{
    for (int i = 0; i < r->n_recall; i++) {
        const wp_parity_recall *p = &r->recall[i];
        printf("indexer layer %d: top-k recall %s mean %.4f, worst query %.4f (%d queries)  %s\n",
               p->layer, what, p->mean, p->worst, p->queries, p->pass ? "PASS" : "FAIL");
    }
}

static void print_logits(const wp_parity_logits *l)
{
    if (!l->rows) return;
    printf("%-7s logits (%2d rows): cosine min %.5f mean %.5f, rel RMS max %.3g, top-1 %d/%d "
           "(clear choices %d/%d), KL max %.3g  %s\n", l->what, l->rows, l->cos_min, l->cos_mean,
           l->rel_rms_max, l->top1_agree, l->rows, l->top1_clear_agree, l->top1_clear_rows,
           l->kl_max, l->pass ? "PASS" : "FAIL");
}

/* --golden: run the checks, print them (or add "golden" to doc), AND the
 * verdict into *pass.  0 or the library's error. */
static int check_golden(wp_tsrc *src, const char *golden, const wp_parity_opts *o, cJSON *doc,
                        int *pass, wp_err *e)
{
    wp_parity_report r;
    int rc = wp_parity_golden(src, golden, o, &r, e);
    if (rc) return rc;
    *pass &= r.pass;
    if (doc) {
        cJSON_AddItemToObject(doc, "golden", wp_parity_golden_json(&r, golden));
        return 0;
    }
    printf("golden %s\n", golden);
    for (int i = 0; i < r.n_layers; i++)
        printf("layer %d (teacher-forced): position error median %.3g, p90 %.3g, max "
               "%.3g  %s\n", r.layers[i].layer, r.layers[i].median, r.layers[i].p90,
               r.layers[i].max, r.layers[i].pass ? "PASS" : "FAIL");
    print_logits(&r.prefill);
    print_logits(&r.decode);
    print_logits(&r.mtp);
    print_recall(&r, "vs golden");
    return 0;
}

/* --indexer-precision bf16 alone, on the prompts file: the build's FP4
 * indexer against its own high-precision one (recall only). */
static int check_recall(wp_tsrc *src, const char *prompts, const wp_parity_opts *o, cJSON *doc, int *pass,
                        wp_err *e)
{
    int32_t **pr = NULL;
    int *lens = NULL, np = 0;
    int rc = read_prompts(prompts, &pr, &lens, &np, e);
    if (rc) return rc;
    wp_rt_opts so = {.threads = o->threads, .flags = o->rt_flags & (WP_RT_BF16 | WP_RT_ENC_DISPATCH)};
    wp_rt_opts fo = so;
    fo.flags |= WP_RT_INDEXER_HP;     /* the high-precision indexer is the reference */
    wp_parity_report r;
    rc = wp_parity_against(src, &so, src, &fo, (const int32_t *const *)pr, lens, np, o->recall_min, &r, e);
    wp_prompt_lines_free(pr, lens, np);
    if (rc) return rc;
    *pass &= r.pass;
    if (doc) {
        cJSON_AddItemToObject(doc, "recall", wp_parity_recall_json(&r, "bf16 indexer", np, o->recall_min));
    } else {
        printf("prompts %s (%d)\n", prompts, np);
        print_recall(&r, "fp4 vs bf16 indexer");
    }
    return 0;
}

/* 1 when path is known to hold its source's values exactly: an HF checkpoint
 * (the source itself) or a build whose manifest says so (trust/build.h);
 * 0 lossy; -1 unknown. */
static int source_lossless(const wp_tsrc *src, const char *path)
{
    if (!strcmp(src->kind, "hf")) return 1;
    wp_build *b = NULL;
    wp_err e = {0};
    if (wp_build_open(&b, path, &e)) return -1;
    int v = wp_build_lossless(b);
    wp_build_close(b);
    return v;
}

/* The same bytes: the same file or directory, or two builds with the same
 * manifest root digest (every tensor's digest is under it). */
static int same_bytes(const char *a, const char *b)
{
    char ra[4096], rb[4096];
    if (realpath(a, ra) && realpath(b, rb) && !strcmp(ra, rb)) return 1;
    wp_build *ba = NULL, *bb = NULL;
    wp_err e = {0};
    const wp_manifest *ma, *mb;
    int same = !wp_build_open(&ba, a, &e) && !wp_build_open(&bb, b, &e) &&
               wp_build_type(ba) == WP_BUILD_DIR && wp_build_type(bb) == WP_BUILD_DIR &&
               !wp_build_manifest(ba, &ma, &e) && !wp_build_manifest(bb, &mb, &e) &&
               !memcmp(ma->root, mb->root, sizeof ma->root);
    wp_build_close(ba);
    wp_build_close(bb);
    return same;
}

static const char *lossless_word(int v) { return v > 0 ? "lossless" : v == 0 ? "lossy" : "unknown"; }

static void print_lsummary(const char *what, const wp_lsummary *s)
{
    if (!s->rows) return;
    printf("%s (%zu rows): KL mean %.4g, p99 %.4g, max %.4g; top-1 %zu/%zu (%.4f); same top-%d "
           "%zu/%zu (%.4f); cosine min %.6f mean %.6f; rel RMS mean %.3g max %.3g\n", what, s->rows,
           s->kl_mean, s->kl_p99, s->kl_max, s->top1_agree, s->rows, s->top1_rate, s->k, s->topk_same,
           s->rows, s->topk_rate, s->cos_min, s->cos_mean, s->rel_rms_mean, s->rel_rms_max);
}

static void print_compare(const wp_compare_report *r, const char *against, const char *why)
{
    printf("against %s: %s gate (%s)\n", against, r->gate == WP_GATE_EXACT ? "exact" : "lossy", why);
    for (int p = 0; p < r->n_prompts; p++) {
        const wp_compare_prompt *pp = &r->prompts[p];
        int wl = 0;
        for (int l = 1; l < r->n_layers; l++) wl = pp->layer_median[l] > pp->layer_median[wl] ? l : wl;
        printf("prompt %d (%d tokens): KL mean %.4g max %.4g, top-1 %zu/%zu, same top-%d %zu/%zu, "
               "cosine min %.6f, worst layer median %.3g (layer %d)", p, pp->tokens, pp->logits.kl_mean,
               pp->logits.kl_max, pp->logits.top1_agree, pp->logits.rows, pp->logits.k,
               pp->logits.topk_same, pp->logits.rows, pp->logits.cos_min,
               r->n_layers ? pp->layer_median[wl] : 0.0, wl);
        if (pp->mtp) printf(", MTP KL %.4g top-1 %s", pp->mtp_kl, pp->mtp_top1 ? "same" : "differs");
        printf("%s\n", pp->identical ? ", identical" : "");
    }
    for (int l = 0; l < r->n_layers; l++)
        printf("layer %d (teacher-forced): position error median %.3g, p90 %.3g, max %.3g\n",
               r->layers[l].layer, r->layers[l].median, r->layers[l].p90, r->layers[l].max);
    print_lsummary("logits", &r->logits);
    print_lsummary("mtp logits", &r->mtp);
    for (int i = 0; i < r->n_recall; i++) {
        const wp_parity_recall *p = &r->recall[i];
        printf("indexer layer %d (teacher-forced): top-k recall mean %.4f, worst query %.4f (%d "
               "queries)\n", p->layer, p->mean, p->worst, p->queries);
    }
    if (r->gate == WP_GATE_EXACT) {
        if (r->identical) printf("exact gate: every compared value bit-identical  PASS\n");
        else printf("exact gate: first mismatch: %s  FAIL\n", r->mismatch);
    } else {
        const wp_compare_opts *o = &r->opts;
        double rmin = 1;
        for (int i = 0; i < r->n_recall; i++) rmin = r->recall[i].mean < rmin ? r->recall[i].mean : rmin;
        printf("lossy gate: KL mean %.4g <= %g, KL p99 %.4g <= %g, top-1 %.4f >= %g, indexer recall "
               "%.4f >= %g%s  %s\n", r->logits.kl_mean, o->kl_mean_max, r->logits.kl_p99, o->kl_p99_max,
               r->logits.top1_rate, o->top1_min, rmin, o->recall_min,
               r->identical ? " (and bit-identical)" : "", r->pass ? "PASS" : "FAIL");
    }
}

/* --against REF: the full comparison, gated exact or lossy. */
static int check_against(wp_tsrc *src, const char *build, const char *against, const char *prompts,
                         const char *gate, const wp_compare_opts *co, unsigned rt_flags, int threads,
                         int no_verify, cJSON *doc, int *pass, wp_err *e)
{
    int32_t **pr = NULL;
    int *lens = NULL, np = 0;
    int rc = read_prompts(prompts, &pr, &lens, &np, e);
    if (rc) return rc;
    wp_tsrc *ref = NULL;
    rc = cli_open_source("parity", against, no_verify, doc != NULL, &ref, e);
    wp_compare_opts o = *co;
    const int lb = rc ? -1 : source_lossless(src, build), lr = rc ? -1 : source_lossless(ref, against);
    const int same = rc ? 0 : same_bytes(build, against);
    char why[256];
    if (!strcmp(gate, "exact")) {
        o.gate = WP_GATE_EXACT;
        snprintf(why, sizeof why, "asked for");
    } else if (!strcmp(gate, "lossy")) {
        o.gate = WP_GATE_LOSSY;
        snprintf(why, sizeof why, "asked for");
    } else if (same) {
        o.gate = WP_GATE_EXACT;
        snprintf(why, sizeof why, "the same bytes");
    } else {
        o.gate = lb == 1 && lr == 1 ? WP_GATE_EXACT : WP_GATE_LOSSY;
        snprintf(why, sizeof why, "build %s, reference %s", lossless_word(lb), lossless_word(lr));
        if (!rc && (lb < 0 || lr < 0) && !doc)
            cli_notice("%s: not known to be lossless (a lone .wpk, or a build whose manifest has no \"loss\" "
                       "record): the lossy gate applies (--gate exact to demand identical values)",
                       lb < 0 ? build : against);
    }
    wp_rt_opts ro = {.threads = threads, .flags = rt_flags};
    wp_compare_report r;
    memset(&r, 0, sizeof r);
    if (!rc)
        rc = wp_parity_compare(src, &ro, ref, &ro, (const int32_t *const *)pr, lens, np, &o, &r, e);
    wp_prompt_lines_free(pr, lens, np);
    wp_tsrc_close(ref);
    if (!rc) {
        *pass &= r.pass;
        if (doc) {
            cJSON *a = wp_compare_json(&r, against);
            if (a) {
                cJSON_AddStringToObject(a, "gate_reason", why);
                cJSON_AddStringToObject(a, "build_loss", lossless_word(lb));
                cJSON_AddStringToObject(a, "reference_loss", lossless_word(lr));
            }
            cJSON_AddItemToObject(doc, "against", a);
        } else {
            printf("prompts %s (%d)\n", prompts, np);
            print_compare(&r, against, why);
        }
    }
    wp_compare_report_free(&r);
    return rc;
}

typedef struct parity_args {
    const char *build, *golden, *against, *prompts, *indexer_precision, *gate;
    int no_verify, topk;
    double recall_min;        /* < 0: the mode's default */
    wp_parity_opts o;
    wp_compare_opts co;
    cli_rt_args rt;
} parity_args;

static void parity_init(void *va)
{
    parity_args *a = va;
    wp_parity_opts_default(&a->o);
    wp_compare_opts_default(&a->co);
    a->topk = a->co.topk;
    a->recall_min = -1;
}

#define YA(f) offsetof(parity_args, f)
static const cli_operand parity_operands[] = {
    {.name = "BUILD", .help = "a wpack build (directory or .wpk) or an HF checkpoint directory", .off = YA(build),
     .required = 1, .complete = "file"},
    {0},
};
static const cli_option parity_opts[] = {
    {.name = "golden", .short_name = 'g', .kind = CLI_STR, .off = YA(golden), .arg = "FILE", .complete = "file",
     .help = "golden outputs (tests/fixtures/tiny-a/golden-fp32.safetensors)"},
    {.name = "against", .kind = CLI_STR, .off = YA(against), .arg = "REF", .complete = "file",
     .help = "reference build (or HF checkpoint) to compare BUILD with"},
    {.name = "prompts", .kind = CLI_STR, .off = YA(prompts), .arg = "FILE", .complete = "file",
     .help = "one prompt per line: token ids separated by commas or spaces"},
    {.name = "indexer-precision", .kind = CLI_STR, .off = YA(indexer_precision), .arg = "P", .choices = "fp4 bf16",
     .def = "fp4", .help = "bf16: the indexer without its FP4 simulation"},
    CLI_RT_OPTS(parity_args),
    {.name = "gate", .kind = CLI_STR, .off = YA(gate), .arg = "G", .choices = "auto exact lossy", .def = "auto",
     .help = "--against: exact (every value bit-identical), lossy (KL, top-1 and\n"
             "recall thresholds), auto: exact when BUILD and REF are both lossless\n"
             "(manifest \"loss\" record; an HF checkpoint is its own source) or the\n"
             "same bytes, lossy otherwise"},
    {.name = "kl-mean-max", .kind = CLI_NUM, .off = YA(co.kl_mean_max), .arg = "X", .lo = 0, .hi = 1e9,
     .help = "lossy gate: mean KL(REF || BUILD) over every position, nats"},
    {.name = "kl-p99-max", .kind = CLI_NUM, .off = YA(co.kl_p99_max), .arg = "X", .lo = 0, .hi = 1e9,
     .help = "lossy gate: 99th percentile of the per-position KL, nats"},
    {.name = "top1-min", .kind = CLI_NUM, .off = YA(co.top1_min), .arg = "X", .lo = 0, .hi = 1,
     .help = "lossy gate: share of positions whose top-1 token agrees"},
    {.name = "topk", .kind = CLI_INT, .off = YA(topk), .arg = "K", .lo = 1, .hi = WP_STATS_TOPK_MAX,
     .help = "k of the \"same top-k\" rate (reported, not gated)"},
    {.name = "recall-min", .kind = CLI_NUM, .off = YA(recall_min), .arg = "X", .lo = 0, .hi = 1,
     .def_doc = "0.99; 0.85 in --against's lossy gate",
     .help = "indexer top-k recall threshold (mean over a CSA layer's queries)"},
    {.name = "max-median", .kind = CLI_NUM, .off = YA(o.layer_median_max), .arg = "X", .lo = 0, .hi = 1,
     .help = "per-layer median relative error gate (the fixture's fp32 acceptance;\nlossy builds need looser gates)"},
    {.name = "max-p90", .kind = CLI_NUM, .off = YA(o.layer_p90_max), .arg = "X", .lo = 0, .hi = 1,
     .help = "per-layer 90th-percentile relative error gate"},
    {.name = "min-cos", .kind = CLI_NUM, .off = YA(o.cos_min), .arg = "X", .lo = 0, .hi = 1,
     .help = "logits cosine similarity gate"},
    {.name = "no-verify", .kind = CLI_FLAG, .off = YA(no_verify),
     .help = "use the build(s) without checking their tensors' digests first\n(says so on stderr)"},
    {0},
};

static int parity_run(cli_ctx *c, void *va)
{
    const parity_args *a = va;
    const char *build = a->build, *golden = a->golden, *against = a->against, *prompts = a->prompts;
    int json = c->json;
    wp_parity_opts o = a->o;
    if (a->recall_min >= 0) o.recall_min = a->recall_min;
    o.threads = a->rt.threads;
    o.rt_flags = cli_rt_flags(&a->rt);
    unsigned idx_flags = strcmp(a->indexer_precision, "bf16") ? 0 : WP_RT_INDEXER_HP;
    if (!golden && !against && !(idx_flags && prompts))
        return cli_usage("parity", "give --golden FILE, --against REF --prompts FILE, or "
                         "--indexer-precision bf16 --prompts FILE");
    if (against && !prompts) return cli_usage("parity", "--against needs --prompts FILE");

    wp_err e = {0};
    wp_tsrc *src = NULL;
    if (cli_open_source("parity", build, a->no_verify, json, &src, &e)) return cli_error("parity", &e);
    cJSON *doc = json ? cJSON_CreateObject() : NULL;
    if (doc) {
        cJSON_AddStringToObject(doc, "build", build);
        cJSON_AddStringToObject(doc, "verified", cli_verified_word(src));
    }
    int pass = 1, rc = 0;
    if (golden) {
        o.rt_flags |= idx_flags;
        rc = check_golden(src, golden, &o, doc, &pass, &e);
    }
    if (!rc && against) {
        wp_compare_opts co = a->co;
        co.topk = a->topk;
        if (a->recall_min >= 0) co.recall_min = a->recall_min;
        rc = check_against(src, build, against, prompts, a->gate, &co,
                           (o.rt_flags & (WP_RT_BF16 | WP_RT_ENC_DISPATCH)) | idx_flags, o.threads,
                           a->no_verify, doc, &pass, &e);
    } else if (!rc && idx_flags && prompts) {
        rc = check_recall(src, prompts, &o, doc, &pass, &e);
    }
    wp_tsrc_close(src);
    if (rc) {
        cJSON_Delete(doc);
        return cli_error("parity", &e);
    }
    if (doc) {
        cJSON_AddBoolToObject(doc, "pass", pass);
        cli_print_json(doc);
    } else {
        printf("%s\n", pass ? "PASS" : "FAIL");
    }
    return pass ? WP_EXIT_OK : WP_EXIT_FAIL;
}

const cli_command cli_cmd_parity = {
    .name = "parity",
    .summary = "compare a build's outputs with golden references",
    .synopsis = "BUILD --golden GOLDEN.safetensors [options]\nBUILD --against REF_BUILD --prompts FILE [options]\n"
                "BUILD --indexer-precision bf16 --prompts FILE [options]",
    .about = "With --golden: every layer teacher-forced from the golden inputs (median/p90/max\n"
             "per-position relative error), prefill, teacher-forced decode and MTP logits\n"
             "(cosine, relative RMS, top-1, KL), and the indexer top-k recall of each CSA layer.\n"
             "A golden written by `wpack golden --topk K` is read the same way (docs/parity.md).\n"
             "With --against: BUILD and REF_BUILD run in one process on the prompts file (one\n"
             "prompt per line); per prompt and overall: each layer teacher-forced from REF's\n"
             "layer input, the logits of every position (KL mean/p99/max, top-1 and same\n"
             "top-k agreement, cosine, relative RMS), MTP logits, indexer recall; gated exact\n"
             "or lossy (--gate; docs/parity.md states the definitions and the thresholds).\n"
             "--indexer-precision bf16 alone compares the FP4 indexer with the same build's\n"
             "high-precision one.\n"
             "\n"
             "A build (BUILD and REF_BUILD) is verified against its digests before use, as\n"
             "`wpack run` does; a corrupt one is refused, naming the tensor.",
    .operands = parity_operands,
    .options = parity_opts,
    .exit1 = "a threshold was missed",
    .args_size = sizeof(parity_args),
    .init = parity_init,
    .run = parity_run,
};
