/* main.c — `wpack COMMAND ...`: dispatch to cli/cmd_*.c. */
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"

static const struct {
    const char *name;
    int (*fn)(int, char **);
    const char *help;
} commands[] = {
    {"inspect", cmd_inspect, "summarise a checkpoint and check its inventory against config.json"},
    {"plan", cmd_plan, "compute a build's complete output layout from headers alone"},
    {"convert", cmd_convert, "build a .wpk container from a checkpoint for a profile"},
    {"quant", cmd_quant, "report quantisation error of a profile (no output)"},
    {"synth", cmd_synth, "write a random checkpoint in the official layout"},
    {"keygen", cmd_keygen, "make an Ed25519 key pair (PEM)"},
    {"sign", cmd_sign, "sign a build's manifest"},
    {"verify", cmd_verify, "check a build's structure, signature and digests"},
    {"verify-source", cmd_verify_source, "check a download against published sizes and SHA-256s"},
    {"pack", cmd_pack, "compress a build into the zstd shipping form (.wpkz)"},
    {"unpack", cmd_unpack, "restore a build (or one tensor) from a .wpkz"},
    {"run", cmd_run, "run the reference CPU runtime: prefill + greedy decode"},
    {"parity", cmd_parity, "compare a build's outputs with golden references"},
};

static void usage(FILE *f)
{
    fprintf(f, "usage: wpack COMMAND [ARGS]   (wpack COMMAND --help for details)\n\ncommands:\n");
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        fprintf(f, "  %-14s %s\n", commands[i].name, commands[i].help);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return WP_EXIT_BAD;
    }
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
        usage(stdout);
        return 0;
    }
    if (!strcmp(argv[1], "--version") || !strcmp(argv[1], "version")) {
        printf("wpack %s\n", WP_VERSION);
        return 0;
    }
    wp_cleanup_on_signals();
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (!strcmp(argv[1], commands[i].name)) return commands[i].fn(argc - 1, argv + 1);
    fprintf(stderr, "wpack: unknown command '%s'\n", argv[1]);
    usage(stderr);
    return WP_EXIT_BAD;
}
