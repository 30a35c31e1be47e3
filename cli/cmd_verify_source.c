/* cmd_verify_source.c — placeholder until its issue lands; owned by that issue. */
#include <stdio.h>

#include "cli/cli.h"

int cmd_verify_source(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    fprintf(stderr, "wpack: 'verify_source' is not implemented yet\n");
    return WP_EXIT_BAD;
}
