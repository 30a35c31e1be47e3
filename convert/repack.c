/*
 * repack.c — names and cuts of the repacked layout: routed experts stacked
 * per layer and projection ([E, out, in], expert e at a fixed stride), the
 * optional fused w13, and the model-parallel splits of spec §2.5 item 3
 * (experts partitioned in contiguous ranges, listed dims cut per rank).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "convert/convert_priv.h"

/* Parse a decimal without sign or leading zeros (so "07" is not expert 7:
 * names must be exactly what the official files use). */
static const char *parse_uint(const char *p, int *out)
{
    if (*p < '0' || *p > '9' || (p[0] == '0' && p[1] >= '0' && p[1] <= '9')) return NULL;
    long v = 0;
    while (*p >= '0' && *p <= '9') {
        v = v * 10 + (*p++ - '0');
        if (v > 1 << 24) return NULL;
    }
    *out = (int)v;
    return p;
}

int wp_expert_name_parse(const char *name, size_t *prefix_len, int *expert, int *proj)
{
    static const char mid[] = ".ffn.experts.";
    const char *m = strstr(name, mid);
    if (!m) return -1;
    /* the prefix must be layers.L or mtp.K */
    int l;
    const char *p;
    if (!strncmp(name, "layers.", 7))
        p = parse_uint(name + 7, &l);
    else if (!strncmp(name, "mtp.", 4))
        p = parse_uint(name + 4, &l);
    else
        return -1;
    if (p != m) return -1;
    const char *q = parse_uint(m + sizeof mid - 1, expert);
    if (!q || q[0] != '.' || q[1] != 'w' || q[2] < '1' || q[2] > '3' || strcmp(q + 3, ".weight"))
        return -1;
    *proj = q[2] - '0';
    *prefix_len = (size_t)(m - name);
    return 0;
}

int wp_expert_stack_name(char *out, size_t sz, const char *prefix, size_t prefix_len, int proj)
{
    int n = snprintf(out, sz, "%.*s.ffn.experts.w%d.weight", (int)prefix_len, prefix, proj);
    return n < 0 || (size_t)n >= sz ? -1 : 0;
}

/* Name suffixes after "layers.L." / "mtp.K." (spec §2.5 item 3). */
static const char *const dim0_layer[] = {
    "attn.wq_b.weight", "attn.wo_a.weight", "attn.attn_sink",
    "attn.indexer.wq_b.weight", "attn.indexer.weights_proj.weight", NULL,
};
static const char *const dim1_layer[] = {"attn.wo_b.weight", NULL};

static int in_list(const char *s, const char *const *l)
{
    for (; *l; l++)
        if (!strcmp(s, *l)) return 1;
    return 0;
}

int wp_tp_split_dim(const char *name)
{
    if (!strcmp(name, "embed.weight") || !strcmp(name, "head.weight")) return 0;
    int l;
    const char *p = NULL;
    if (!strncmp(name, "layers.", 7))
        p = parse_uint(name + 7, &l);
    else if (!strncmp(name, "mtp.", 4))
        p = parse_uint(name + 4, &l);
    if (!p || *p != '.') return -1;
    p++;
    if (in_list(p, dim0_layer)) return 0;
    if (in_list(p, dim1_layer)) return 1;
    return -1;
}
