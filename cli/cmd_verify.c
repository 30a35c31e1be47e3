/* cmd_verify.c — placeholder until its issue lands; owned by that issue. */
#include <stdio.h>

#include "cli/cli.h"

int cmd_verify(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    fprintf(stderr, "wpack: 'verify' is not implemented yet\n");
    return WP_EXIT_BAD;
}
