/* rt_args.c — see rt_args.h. */
#include <string.h>

#include "cli/cli.h"
#include "cli/rt_args.h"
#include "runtime/runtime.h"

int cli_rt_option(const char *cmd, int argc, char **argv, int *i, int *threads, unsigned *flags)
{
    const char *v;
    if ((v = cli_opt(argc, argv, i, "--threads"))) {
        long long n;
        if (cli_int(cmd, "--threads", v, 1, 256, &n)) return -1;
        *threads = (int)n;
    } else if ((v = cli_opt(argc, argv, i, "--precision"))) {
        if (!strcmp(v, "bf16")) *flags |= WP_RT_BF16;
        else if (!strcmp(v, "fp32")) *flags &= ~(unsigned)WP_RT_BF16;
        else return cli_usage(cmd, "--precision %s: fp32 or bf16", v), -1;
    } else if ((v = cli_opt(argc, argv, i, "--act-quant"))) {
        if (!strcmp(v, "weight")) *flags |= WP_RT_ENC_DISPATCH;
        else if (!strcmp(v, "site")) *flags &= ~(unsigned)WP_RT_ENC_DISPATCH;
        else return cli_usage(cmd, "--act-quant %s: site or weight", v), -1;
    } else {
        return 0;
    }
    return 1;
}
