/*
 * cmd_synth.c — `wpack synth --preset flash|pro|tiny [...] -o DIR`: a random
 * checkpoint in the exact official layout (convert/synth.h), for scale tests
 * and benchmarks.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "convert/synth.h"

#define CMD "synth"

static void usage(FILE *f)
{
    fprintf(f,
            "usage: wpack synth --preset flash|pro|tiny [--layers N] [--experts N]\n"
            "                   [--seed S] [--block 128|32] [--json] -o DIR\n"
            "\n"
            "Write a random DeepSeek-V4 checkpoint in the official layout (spec §2.1):\n"
            "model-XXXXX-of-NNNNN.safetensors shards (embed, one per layer, head, MTP),\n"
            "model.safetensors.index.json and config.json, at the preset's real shapes.\n"
            "The same options and seed give byte-identical files.  Streamed: memory does\n"
            "not grow with the model (a 2-layer Flash-shaped checkpoint is 12.8 GB, of\n"
            "which embed + head 2.1 GB and the MTP block 3.6 GB).\n"
            "\n"
            "  --preset P    tiny (the tiny-a fixture's shape), flash, pro\n"
            "  --layers N    keep the first N main layers (and the MTP block)\n"
            "  --experts N   N routed experts per layer\n"
            "  --seed S      PRNG seed (default 0)\n"
            "  --block B     FP8 block B x B (default 128; 32 = V4.1 style)\n"
            "  -o DIR        output directory (must not exist, or be empty)\n"
            "  --json        print a JSON summary on stdout\n");
}

/* Strict decimal: all digits, no sign, in range. */
static int parse_u64(const char *s, uint64_t max, uint64_t *out)
{
    if (!s || !*s || *s < '0' || *s > '9') return -1;
    errno = 0;
    char *end;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || *end || v > max) return -1;
    *out = v;
    return 0;
}

int cmd_synth(int argc, char **argv)
{
    const char *preset = NULL, *outdir = NULL, *v;
    uint64_t layers = 0, experts = 0, block = 0, seed = 0;
    int json = 0;
    for (int i = 1; i < argc; i++) {
        if (cli_flag(argv[i], "--help") || cli_flag(argv[i], "-h")) {
            usage(stdout);
            return WP_EXIT_OK;
        } else if (cli_flag(argv[i], "--json")) {
            json = 1;
        } else if ((v = cli_opt(argc, argv, &i, "--preset"))) {
            preset = v;
        } else if ((v = cli_opt(argc, argv, &i, "-o")) || (v = cli_opt(argc, argv, &i, "--output"))) {
            outdir = v;
        } else if ((v = cli_opt(argc, argv, &i, "--layers"))) {
            if (parse_u64(v, WP_MAX_LAYERS, &layers) || !layers)
                return cli_usage(CMD, "--layers: expected a layer count, found '%s'", v);
        } else if ((v = cli_opt(argc, argv, &i, "--experts"))) {
            if (parse_u64(v, 1 << 16, &experts) || !experts)
                return cli_usage(CMD, "--experts: expected an expert count, found '%s'", v);
        } else if ((v = cli_opt(argc, argv, &i, "--block"))) {
            if (parse_u64(v, 1 << 16, &block) || !block)
                return cli_usage(CMD, "--block: expected a block size such as 128 or 32, found '%s'", v);
        } else if ((v = cli_opt(argc, argv, &i, "--seed"))) {
            if (parse_u64(v, UINT64_MAX, &seed))
                return cli_usage(CMD, "--seed: expected a non-negative integer, found '%s'", v);
        } else {
            return cli_usage(CMD, "unexpected argument '%s'", argv[i]);
        }
    }
    if (!preset) return cli_usage(CMD, "missing --preset flash|pro|tiny");
    if (!outdir) return cli_usage(CMD, "missing -o DIR");

    wp_err e = {0};
    wp_config c;
    if (wp_synth_preset(&c, preset, &e) ||
        wp_synth_trim(&c, (int)layers, (int)experts, (int)block, &e))
        return e.code == WP_EUSAGE ? cli_usage(CMD, "%s", e.msg) : cli_error(CMD, &e);

    cli_bar bar;
    cli_bar_init(&bar, json, 1);
    wp_synth_opts o = {.seed = seed, .progress = cli_progress, .progress_ud = &bar};
    wp_synth_stats st;
    double t0 = wp_now();
    int rc = wp_synth_write(&c, outdir, &o, &st, &e);
    cli_bar_end(&bar);
    if (rc) {
        cli_error(CMD, &e);
        return WP_EXIT_BAD;
    }
    double dt = wp_now() - t0;
    if (json) {
        cJSON *j = cJSON_CreateObject();
        cJSON_AddStringToObject(j, "dir", outdir);
        cJSON_AddStringToObject(j, "preset", preset);
        cJSON_AddNumberToObject(j, "seed", (double)seed);
        cJSON_AddNumberToObject(j, "layers", c.n_layers);
        cJSON_AddNumberToObject(j, "experts", c.n_routed_experts);
        cJSON_AddNumberToObject(j, "block", c.weight_block[0]);
        cJSON_AddNumberToObject(j, "shards", (double)st.shards);
        cJSON_AddNumberToObject(j, "tensors", (double)st.tensors);
        cJSON_AddNumberToObject(j, "bytes", (double)st.bytes);
        cJSON_AddNumberToObject(j, "seconds", dt);
        cli_print_json(j);
    } else {
        char b[32];
        printf("%s: %zu tensors, %s in %zu shards (%s, %d layers, %d experts, block %dx%d, seed %llu) in %.1fs\n",
               outdir, st.tensors, cli_bytes(st.bytes, b, sizeof b), st.shards, preset, c.n_layers,
               c.n_routed_experts, c.weight_block[0], c.weight_block[1], (unsigned long long)seed, dt);
    }
    return WP_EXIT_OK;
}
