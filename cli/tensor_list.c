/* tensor_list.c — the per-tensor table (see tensor_list.h). */
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/tensor_list.h"

#define DIGEST_PREFIX 12   /* hex digits shown; --json has all 64 */

static void shape_str(const wpk_tensor *t, char *buf, size_t n)
{
    size_t k = (size_t)snprintf(buf, n, "[");
    for (int d = 0; d < t->ndim && k < n; d++)
        k += (size_t)snprintf(buf + k, n - k, "%s%llu", d ? ", " : "", (unsigned long long)t->shape[d]);
    if (k < n) snprintf(buf + k, n - k, "]");
}

static int digits(uint64_t v)
{
    int n = 1;
    while (v >= 10) v /= 10, n++;
    return n;
}

void cli_tensor_list_print(const wp_tensor_list *l)
{
    int wn = 4, we = 8, ws = 5, wb = 5, wo = 6, wf = 4, wc = 10;
    char sh[256];
    for (size_t i = 0; i < l->n; i++) {
        const wp_tensor_row *r = &l->rows[i];
        int k = (int)strlen(r->t->name);
        if (k > wn) wn = k;
        if ((k = (int)strlen(wpk_tensor_enc_name(r->t))) > we) we = k;
        shape_str(r->t, sh, sizeof sh);
        if ((k = (int)strlen(sh)) > ws) ws = k;
        if ((k = digits(r->t->size)) > wb) wb = k;
        if ((k = digits(r->t->offset)) > wo) wo = k;
        if ((k = (int)strlen(r->file)) > wf) wf = k;
        if ((k = digits(r->comp_bytes)) > wc) wc = k;
    }
    int files = l->n_files > 1;
    printf("%-*s  %-*s  %-*s  %*s  %*s  %-*s", wn, "name", we, "encoding", ws, "shape", wb, "bytes", wo, "offset",
           DIGEST_PREFIX, "sha256");
    if (files) printf("  %-*s", wf, "file");
    if (l->packed) printf("  %*s", wc, "compressed");
    printf("  experts\n");
    for (size_t i = 0; i < l->n; i++) {
        const wp_tensor_row *r = &l->rows[i];
        const wpk_tensor *t = r->t;
        char hex[2 * WP_SHA256_LEN + 1];
        wp_hex(t->sha256, WP_SHA256_LEN, hex);
        shape_str(t, sh, sizeof sh);
        printf("%-*s  %-*s  %-*s  %*llu  %*llu  %.*s", wn, t->name, we, wpk_tensor_enc_name(t), ws, sh, wb,
               (unsigned long long)t->size, wo, (unsigned long long)t->offset, DIGEST_PREFIX, hex);
        if (files) printf("  %-*s", wf, r->file);
        if (l->packed) printf("  %*llu", wc, (unsigned long long)r->comp_bytes);
        if (!t->stacked) {
            printf("  -\n");
            continue;
        }
        char range[1024];
        if (!wp_tensor_sources_range(t, range, sizeof range) && range[0])
            printf("  %llu x %s\n", (unsigned long long)t->n_experts, range);
        else if (t->n_sources)   /* names that follow no pattern: the first and the last */
            printf("  %llu (%u sources: %s .. %s)\n", (unsigned long long)t->n_experts, t->n_sources, t->sources[0],
                   t->sources[t->n_sources - 1]);
        else
            printf("  %llu (no source names)\n", (unsigned long long)t->n_experts);
    }
}
