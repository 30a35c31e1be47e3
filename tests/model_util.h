/* model_util.h — helpers shared by the model_ tests (test_inventory.c,
 * test_synth.c). */
#ifndef WPT_MODEL_UTIL_H
#define WPT_MODEL_UTIL_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "common/wp.h"
#include "model/model.h"

/* The published sizes of the 46 official V4-Flash shards, read from the file
 * the repository ships (data/deepseek-v4-flash-60d8d707.json, revision
 * 60d8d707): one source of truth for the tests that reproduce them.  Returns
 * the number of shard sizes found (46), or -1. */
static inline int wpt_flash_published_sizes(uint64_t out[46])
{
    char *text;
    size_t len;
    wp_err e = {0};
    if (wp_read_small_file("data/deepseek-v4-flash-60d8d707.json", 1 << 20, &text, &len, &e)) return -1;
    cJSON *doc = cJSON_ParseWithLength(text, len), *f;
    free(text);
    int n = 0;
    cJSON_ArrayForEach(f, cJSON_GetObjectItemCaseSensitive(doc, "files")) {
        const cJSON *p = cJSON_GetObjectItemCaseSensitive(f, "path");
        const cJSON *sz = cJSON_GetObjectItemCaseSensitive(f, "size");
        int k;
        if (cJSON_IsString(p) && cJSON_IsNumber(sz) &&
            sscanf(p->valuestring, "model-%5d-of-00046.safetensors", &k) == 1 && k >= 1 && k <= 46) {
            out[k - 1] = (uint64_t)sz->valuedouble;
            n++;
        }
    }
    cJSON_Delete(doc);
    return doc ? n : -1;
}

/* Size of a shard written the way the official files were (the Rust
 * safetensors serializer): no __metadata__, tensors ordered by dtype (widest
 * first) then name, data in that order, compact JSON header padded with
 * spaces to a multiple of 8.  Written here from that description, not with
 * the library's writer or synth's ordering, so the two can be checked against
 * it.  Sorts t. */
static inline int wpt_dt_rank(wp_dtype t)
{
    switch (t) {
    case WP_I64: return 0;
    case WP_F32: return 1;
    case WP_BF16: return 2;
    case WP_F8_E8M0: return 3;
    case WP_F8_E4M3: return 4;
    default: return 5;   /* I8; the official files hold no other dtype */
    }
}

static inline int wpt_cmp_official(const void *a, const void *b)
{
    const wp_expect *x = *(const wp_expect *const *)a, *y = *(const wp_expect *const *)b;
    int d = wpt_dt_rank(x->dtype) - wpt_dt_rank(y->dtype);
    return d ? d : strcmp(x->name, y->name);
}

static inline uint64_t wpt_official_size(const wp_expect **t, size_t n)
{
    qsort(t, n, sizeof *t, wpt_cmp_official);
    uint64_t hdr = 2, off = 0;   /* "{" "}" */
    for (size_t i = 0; i < n; i++) {
        char buf[512];
        uint64_t nb = wp_expect_nbytes(t[i]);
        int k = snprintf(buf, sizeof buf, "%s\"%s\":{\"dtype\":\"%s\",\"shape\":[", i ? "," : "",
                         t[i]->name, wp_dtype_name(t[i]->dtype));
        for (int d = 0; d < t[i]->ndim; d++)
            k += snprintf(buf + k, sizeof buf - (size_t)k, "%s%llu", d ? "," : "",
                          (unsigned long long)t[i]->shape[d]);
        k += snprintf(buf + k, sizeof buf - (size_t)k, "],\"data_offsets\":[%llu,%llu]}",
                      (unsigned long long)off, (unsigned long long)(off + nb));
        hdr += (uint64_t)k;
        off += nb;
    }
    return 8 + wp_align_up(hdr, 8) + off;
}

#endif
