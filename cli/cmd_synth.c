/*
 * cmd_synth.c — `wpack synth --preset flash|pro|tiny [...] -o DIR`: a random
 * checkpoint in the exact official layout (convert/synth.h), for scale tests
 * and benchmarks.
 */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "convert/synth.h"

#define CMD "synth"

typedef struct synth_args {
    const char *preset, *outdir;
    int layers, experts, block;
    uint64_t seed;
} synth_args;

#define YA(f) offsetof(synth_args, f)
static const cli_option synth_opts[] = {
    {.name = "preset", .short_name = 'p', .kind = CLI_STR, .off = YA(preset), .arg = "P", .required = 1,
     .choices = "tiny flash pro", .help = "the shapes: tiny (the tiny-a fixture's), flash (V4-Flash), pro (V4-Pro)"},
    {.name = "output", .short_name = 'o', .kind = CLI_STR, .off = YA(outdir), .arg = "DIR", .required = 1,
     .complete = "dir", .help = "the checkpoint directory to create"},
    {.name = "layers", .kind = CLI_INT, .off = YA(layers), .arg = "N", .lo = 1, .hi = WP_MAX_LAYERS,
     .def_doc = "the preset's", .help = "keep the first N main layers (and the MTP block)"},
    {.name = "experts", .kind = CLI_INT, .off = YA(experts), .arg = "N", .lo = 1, .hi = 4096,
     .def_doc = "the preset's", .help = "routed experts per layer"},
    {.name = "seed", .kind = CLI_U64, .off = YA(seed), .arg = "S", .def = "0", .help = "PRNG seed"},
    {.name = "block", .kind = CLI_INT, .off = YA(block), .arg = "B", .lo = 1, .hi = 1 << 16, .def_doc = "128",
     .help = "FP8 block B x B (32 = V4.1 style)"},
    {0},
};

static int synth_run(cli_ctx *cx, void *va)
{
    const synth_args *a = va;
    const char *preset = a->preset, *outdir = a->outdir;
    uint64_t layers = (uint64_t)a->layers, experts = (uint64_t)a->experts, block = (uint64_t)a->block, seed = a->seed;
    int json = cx->json;

    wp_err e = {0};
    wp_config c;
    if (wp_synth_preset(&c, preset, &e) ||
        wp_synth_trim(&c, (int)layers, (int)experts, (int)block, &e))
        return cli_error(CMD, &e);

    cli_bar bar;
    cli_bar_init(&bar, json, 1);
    wp_synth_opts o = {.seed = seed, .force = cx->force, .progress = cli_progress, .progress_ud = &bar};
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

const cli_command cli_cmd_synth = {
    .name = "synth",
    .summary = "write a random checkpoint in the official layout",
    .about = "Write a random DeepSeek-V4 checkpoint in the official layout (spec §2.1):\n"
             "model-XXXXX-of-NNNNN.safetensors shards (embed, one per layer, head, MTP),\n"
             "model.safetensors.index.json and config.json, at the preset's real shapes.\n"
             "The same options and seed give byte-identical files.  Streamed: memory does\n"
             "not grow with the model (a 2-layer Flash-shaped checkpoint is 12.8 GB, of\n"
             "which embed + head 2.1 GB and the MTP block 3.6 GB).  DIR appears only when\n"
             "complete.",
    .options = synth_opts,
    .flags = CLI_WRITES,
    .args_size = sizeof(synth_args),
    .run = synth_run,
};
