/* rt_util.h — helpers shared by the runtime_ tests. */
#ifndef WPT_RT_UTIL_H
#define WPT_RT_UTIL_H

#include <stdio.h>

#include "runtime/runtime.h"
#include "tests/harness.h"

/* Load tiny-a's HF checkpoint into a model with these threads and WP_RT_*
 * flags; *src is opened (wp_tsrc_close it after the model).  NULL, with the
 * error printed and nothing left open, on failure. */
static inline wp_model *wpt_rt_load_tiny(wp_tsrc **src, unsigned flags, int threads)
{
    wp_err e = {0};
    if (wp_tsrc_open(src, WPT_TINY "/hf", &e)) {
        printf("    %s\n", e.msg);
        return NULL;
    }
    wp_model *m;
    wp_rt_opts o = {.threads = threads, .flags = flags};
    if (wp_model_load(&m, *src, &o, &e)) {
        printf("    %s\n", e.msg);
        wp_tsrc_close(*src);
        return NULL;
    }
    return m;
}

#endif
