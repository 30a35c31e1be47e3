/* cmd_inspect.c — placeholder until its issue lands; owned by that issue. */
#include <stdio.h>

#include "cli/cli.h"

int cmd_inspect(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    fprintf(stderr, "wpack: 'inspect' is not implemented yet\n");
    return WP_EXIT_BAD;
}
