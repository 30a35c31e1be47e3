/* rt_args.c — see rt_args.h. */
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/rt_args.h"
#include "runtime/runtime.h"

unsigned cli_rt_flags(const cli_rt_args *a)
{
    unsigned f = 0;
    if (a->precision && !strcmp(a->precision, "bf16")) f |= WP_RT_BF16;
    if (a->act_quant && !strcmp(a->act_quant, "weight")) f |= WP_RT_ENC_DISPATCH;
    return f;
}

int cli_open_source(const char *cmd, const char *path, int no_verify, int json, wp_tsrc **src, wp_err *e)
{
    cli_bar bar;
    cli_bar_init(&bar, json, 1);
    wp_tsrc_opts o = {.verify = !no_verify, .progress = cli_progress, .progress_ud = &bar};
    int rc = wp_tsrc_open_opts(src, path, &o, e);
    cli_bar_end(&bar);
    if (rc) return rc;
    if ((*src)->verified == WP_TSRC_UNVERIFIED)
        fprintf(stderr, "wpack %s: %s: not verified: its tensors' digests were not checked (--no-verify)\n", cmd,
                path);
    else if ((*src)->verified == WP_TSRC_NO_DIGESTS && !json)
        cli_notice("%s: a Hugging Face checkpoint carries no digests: nothing was verified (check a "
                   "download with 'wpack verify-source %s --digests FILE')", path, path);
    return 0;
}

const char *cli_verified_word(const wp_tsrc *src)
{
    return src->verified == WP_TSRC_VERIFIED ? "digests" : src->verified == WP_TSRC_NO_DIGESTS ? "no-digests"
                                                                                             : "skipped";
}
