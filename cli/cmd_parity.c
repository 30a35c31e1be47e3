/* cmd_parity.c — `wpack parity`: the runtime against golden outputs, or one
 * build's indexer against another's (verify/parity.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/rt_args.h"
#include "verify/parity.h"

static const char *usage_text =
    "usage: wpack parity BUILD --golden GOLDEN.safetensors [options]\n"
    "       wpack parity BUILD --against REF_BUILD --prompts FILE [options]\n"
    "       wpack parity BUILD --indexer-precision bf16 --prompts FILE [options]\n"
    "\n"
    "BUILD is a wpack build (directory or .wpk) or an HF checkpoint directory.\n"
    "With --golden: every layer teacher-forced from the golden inputs (median/p90/max\n"
    "per-position relative error), prefill, teacher-forced decode and MTP logits\n"
    "(cosine, relative RMS, top-1, KL), and the indexer top-k recall of each CSA layer.\n"
    "With --against: indexer top-k recall of BUILD against REF_BUILD on the prompts.\n"
    "--indexer-precision bf16 alone compares the FP4 indexer with the same build's\n"
    "high-precision one.\n"
    "\n"
    "  --golden FILE              golden outputs (tests/fixtures/tiny-a/golden-fp32.safetensors)\n"
    "  --against REF              reference build for the recall check\n"
    "  --prompts FILE             one prompt per line: token ids separated by commas or spaces\n"
    "  --indexer-precision P      fp4 (default) or bf16: the indexer without its FP4 simulation\n"
    "  --precision P              fp32 (default) or bf16: round at the reference's bf16 points\n"
    "  --act-quant M              site (default): FP8-quantise activations at every FP8/FP4\n"
    "                             linear of the model; weight: only where the build stores\n"
    "                             FP8/FP4 (the official code's dispatch on the weight dtype)\n"
    "  --gate X                   recall threshold (default 0.99)\n"
    "  --max-median X, --max-p90 X, --min-cos X\n"
    "                             per-layer and logits gates (default 1e-5, 1e-4, 0.99: the\n"
    "                             fixture's fp32 acceptance; lossy builds need looser ones)\n"
    "  --threads N                kernel threads (default 1)\n"
    "  --json                     one JSON document on stdout\n"
    "exit: 0 every threshold met, 1 a threshold missed, 2 unreadable input or bad usage\n";

/* Parse a prompts file: one prompt per non-empty line ('#' starts a comment). */
static int read_prompts(const char *path, int32_t ***out, int **lens, int *n, wp_err *e)
{
    char *text;
    size_t len;
    int rc = wp_read_small_file(path, 64u << 20, &text, &len, e);
    if (rc) return rc;
    int cap = 0;
    *out = NULL;
    *lens = NULL;
    *n = 0;
    int lineno = 0;
    for (char *line = text, *next; line && *line; line = next) {
        lineno++;
        next = strchr(line, '\n');
        if (next) *next++ = 0;
        char *hash = strchr(line, '#');
        if (hash) *hash = 0;
        int32_t *toks = NULL;
        int nt = 0, ct = 0;
        for (char *p = line;;) {
            while (*p == ' ' || *p == ',' || *p == '\t' || *p == '\r') p++;
            if (!*p) break;
            char *end;
            long v = strtol(p, &end, 10);
            if (end == p || v < 0 || v > INT32_MAX) {
                free(toks);
                rc = wp_fail(e, WP_EUSAGE, "%s:%d: not a token id: \"%.20s\"", path, lineno, p);
                goto fail;
            }
            if (nt == ct) {
                ct = ct ? ct * 2 : 64;
                int32_t *t = realloc(toks, sizeof(int32_t) * ct);
                if (!t) {
                    free(toks);
                    rc = wp_fail(e, WP_ENOMEM, "%s: out of memory", path);
                    goto fail;
                }
                toks = t;
            }
            toks[nt++] = (int32_t)v;
            p = end;
        }
        if (!nt) continue;
        if (*n == cap) {
            cap = cap ? cap * 2 : 8;
            int32_t **o = realloc(*out, sizeof(*o) * cap);
            int *l = o ? realloc(*lens, sizeof(int) * cap) : NULL;
            if (o) *out = o;
            if (l) *lens = l;
            if (!o || !l) {
                free(toks);
                rc = wp_fail(e, WP_ENOMEM, "%s: out of memory", path);
                goto fail;
            }
        }
        (*out)[*n] = toks;
        (*lens)[(*n)++] = nt;
    }
    free(text);
    if (!*n) return wp_fail(e, WP_EUSAGE, "%s: no prompts", path);
    return 0;
fail:
    free(text);
    for (int i = 0; i < *n; i++) free((*out)[i]);
    free(*out);
    free(*lens);
    *out = NULL;
    *lens = NULL;
    *n = 0;
    return rc;
}

static int parse_gate(const char *opt, const char *v, double *out)
{
    char *end;
    double x = strtod(v, &end);
    if (*end || !(x >= 0) || x > 1)
        return cli_usage("parity", "%s %s: expected a number in [0, 1]", opt, v);
    *out = x;
    return 0;
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
                        const wp_parity_opts *o, unsigned idx_flags, cJSON *doc, int *pass,
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
        rc = wp_tsrc_open(&ref, against, e);
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

int cmd_parity(int argc, char **argv)
{
    const char *build = NULL, *golden = NULL, *against = NULL, *prompts = NULL, *v;
    int json = 0, rt;
    wp_parity_opts o;
    wp_parity_opts_default(&o);
    unsigned idx_flags = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            fputs(usage_text, stdout);
            return WP_EXIT_OK;
        } else if (cli_flag(argv[i], "--json")) {
            json = 1;
        } else if ((v = cli_opt(argc, argv, &i, "--golden"))) {
            golden = v;
        } else if ((v = cli_opt(argc, argv, &i, "--against"))) {
            against = v;
        } else if ((v = cli_opt(argc, argv, &i, "--prompts"))) {
            prompts = v;
        } else if ((rt = cli_rt_option("parity", argc, argv, &i, &o.threads, &o.rt_flags))) {
            if (rt < 0) return WP_EXIT_BAD;
        } else if ((v = cli_opt(argc, argv, &i, "--gate"))) {
            char *end;
            o.recall_min = strtod(v, &end);
            if (*end || o.recall_min < 0 || o.recall_min > 1)
                return cli_usage("parity", "--gate %s: expected a number in [0, 1]", v);
        } else if ((v = cli_opt(argc, argv, &i, "--max-median"))) {
            if (parse_gate("--max-median", v, &o.layer_median_max)) return WP_EXIT_BAD;
        } else if ((v = cli_opt(argc, argv, &i, "--max-p90"))) {
            if (parse_gate("--max-p90", v, &o.layer_p90_max)) return WP_EXIT_BAD;
        } else if ((v = cli_opt(argc, argv, &i, "--min-cos"))) {
            if (parse_gate("--min-cos", v, &o.cos_min)) return WP_EXIT_BAD;
        } else if ((v = cli_opt(argc, argv, &i, "--indexer-precision"))) {
            if (!strcmp(v, "bf16")) idx_flags = WP_RT_INDEXER_HP;
            else if (strcmp(v, "fp4")) return cli_usage("parity", "--indexer-precision %s: fp4 or bf16", v);
        } else if (argv[i][0] == '-') {
            return cli_usage("parity", "unknown option %s", argv[i]);
        } else if (!build) {
            build = argv[i];
        } else {
            return cli_usage("parity", "unexpected argument %s", argv[i]);
        }
    }
    if (!build) return cli_usage("parity", "missing BUILD");
    if (!golden && !against && !(idx_flags && prompts))
        return cli_usage("parity", "give --golden FILE, --against REF --prompts FILE, or "
                         "--indexer-precision bf16 --prompts FILE");
    if (against && !prompts) return cli_usage("parity", "--against needs --prompts FILE");

    wp_err e = {0};
    wp_tsrc *src = NULL;
    if (wp_tsrc_open(&src, build, &e)) return cli_error("parity", &e);
    cJSON *doc = json ? cJSON_CreateObject() : NULL;
    if (doc) cJSON_AddStringToObject(doc, "build", build);
    int pass = 1, rc = 0;
    if (golden) {
        o.rt_flags |= idx_flags;
        rc = check_golden(src, golden, &o, doc, &pass, &e);
    }
    if (!rc && (against || (idx_flags && prompts)))
        rc = check_recall(src, against, prompts, &o, idx_flags, doc, &pass, &e);
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
