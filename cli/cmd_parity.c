/* cmd_parity.c — `wpack parity`: the runtime against golden outputs, or one
 * build's indexer against another's (verify/parity.h). */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/rt_args.h"
#include "runtime/tokens.h"
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

/* --against REF or --indexer-precision bf16 alone, on the prompts file:
 * indexer recall of the build against REF, or of its FP4 indexer against
 * its high-precision one. */
static int check_recall(wp_tsrc *src, const char *against, const char *prompts,
                        const wp_parity_opts *o, unsigned idx_flags, int no_verify, cJSON *doc, int *pass,
                        wp_err *e)
{
    int32_t **pr = NULL;
    int *lens = NULL, np = 0;
    int rc = read_prompts(prompts, &pr, &lens, &np, e);
    if (rc) return rc;
    wp_rt_opts so = {.threads = o->threads, .flags = o->rt_flags & (WP_RT_BF16 | WP_RT_ENC_DISPATCH)};
    wp_rt_opts fo = so;
    wp_tsrc *ref = NULL, *other = src;
    if (against) {
        rc = cli_open_source("parity", against, no_verify, doc != NULL, &ref, e);
        other = ref;
        so.flags |= idx_flags;
        fo.flags |= idx_flags;
    } else {
        fo.flags |= WP_RT_INDEXER_HP;     /* the high-precision indexer is the reference */
    }
    wp_parity_report r;
    if (!rc)
        rc = wp_parity_against(src, &so, other, &fo, (const int32_t *const *)pr, lens, np,
                               o->recall_min, &r, e);
    for (int i = 0; i < np; i++) free(pr[i]);
    free(pr);
    free(lens);
    wp_tsrc_close(ref);
    if (rc) return rc;
    *pass &= r.pass;
    if (doc) {
        cJSON_AddItemToObject(doc, "recall", wp_parity_recall_json(&r, against ? against : "bf16 indexer",
                                                                   np, o->recall_min));
    } else {
        printf("prompts %s (%d)\n", prompts, np);
        print_recall(&r, against ? "vs --against" : "fp4 vs bf16 indexer");
    }
    return 0;
}

typedef struct parity_args {
    const char *build, *golden, *against, *prompts, *indexer_precision;
    int no_verify;
    wp_parity_opts o;
    cli_rt_args rt;
} parity_args;

static void parity_init(void *va)
{
    parity_args *a = va;
    wp_parity_opts_default(&a->o);
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
     .help = "reference build for the recall check"},
    {.name = "prompts", .kind = CLI_STR, .off = YA(prompts), .arg = "FILE", .complete = "file",
     .help = "one prompt per line: token ids separated by commas or spaces"},
    {.name = "indexer-precision", .kind = CLI_STR, .off = YA(indexer_precision), .arg = "P", .choices = "fp4 bf16",
     .def = "fp4", .help = "bf16: the indexer without its FP4 simulation"},
    CLI_RT_OPTS(parity_args),
    {.name = "gate", .kind = CLI_NUM, .off = YA(o.recall_min), .arg = "X", .lo = 0, .hi = 1,
     .help = "indexer top-k recall threshold"},
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
    if (!rc && (against || (idx_flags && prompts)))
        rc = check_recall(src, against, prompts, &o, idx_flags, a->no_verify, doc, &pass, &e);
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
             "With --against: indexer top-k recall of BUILD against REF_BUILD on the prompts.\n"
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
