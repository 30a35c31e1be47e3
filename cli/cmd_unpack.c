/* cmd_unpack.c — placeholder until its issue lands; owned by that issue. */
#include <stdio.h>

#include "cli/cli.h"

int cmd_unpack(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    fprintf(stderr, "wpack: 'unpack' is not implemented yet\n");
    return WP_EXIT_BAD;
}
