/* cmd_synth.c — placeholder until its issue lands; owned by that issue. */
#include <stdio.h>

#include "cli/cli.h"

int cmd_synth(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    fprintf(stderr, "wpack: 'synth' is not implemented yet\n");
    return WP_EXIT_BAD;
}
