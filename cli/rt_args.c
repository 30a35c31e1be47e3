/* rt_args.c — see rt_args.h. */
#include <string.h>

#include "cli/rt_args.h"
#include "runtime/runtime.h"

unsigned cli_rt_flags(const cli_rt_args *a)
{
    unsigned f = 0;
    if (a->precision && !strcmp(a->precision, "bf16")) f |= WP_RT_BF16;
    if (a->act_quant && !strcmp(a->act_quant, "weight")) f |= WP_RT_ENC_DISPATCH;
    return f;
}
