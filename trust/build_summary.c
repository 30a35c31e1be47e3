/* build_summary.c — what a build holds, from its directories alone (see build.h). */
#include <stdlib.h>
#include <string.h>

#include "trust/build.h"

void wp_build_summary_free(wp_build_summary *s)
{
    if (!s) return;
    free(s->parts);
    memset(s, 0, sizeof *s);
}

static int add_enc(wp_build_summary *s, const char *name, uint64_t bytes, int count)
{
    for (size_t i = 0; i < s->n_encs; i++)
        if (!strcmp(s->encs[i].name, name)) {
            s->encs[i].tensors += (uint64_t)count;
            s->encs[i].bytes += bytes;
            return 0;
        }
    if (s->n_encs == WP_BUILD_MAX_ENCS) return -1;
    snprintf(s->encs[s->n_encs].name, sizeof s->encs[0].name, "%s", name);
    s->encs[s->n_encs].tensors = (uint64_t)count;
    s->encs[s->n_encs].bytes = bytes;
    s->n_encs++;
    return 0;
}

int wp_build_summarise(wp_build *b, wp_build_summary *s, wp_err *e)
{
    memset(s, 0, sizeof *s);
    s->kind = wp_build_type(b);
    s->has_manifest = wp_build_has_manifest(b);
    s->has_sig = wp_build_has_sig(b);
    s->has_dsse = wp_build_has_dsse(b);
    size_t n;
    int rc = wp_build_parts(b, &n, e);
    if (rc) return rc;
    if (!(s->parts = wp_calloc(n, sizeof *s->parts, e))) return WP_ENOMEM;
    s->n_parts = n;
    for (size_t i = 0; i < n; i++) {
        wpk_file *f;
        if ((rc = wp_build_part(b, i, &f, e))) return rc;
        wp_build_part_info *p = &s->parts[i];
        p->name = wp_build_part_name(b, i);
        p->file_bytes = wpk_file_size(f);
        p->tensors = wpk_count(f);
        s->file_bytes += p->file_bytes;
        s->tensors += p->tensors;
        for (size_t t = 0; t < p->tensors; t++) {
            const wpk_tensor *x = wpk_tensor_at(f, t);
            s->tensor_bytes += x->size;
            /* a scale (or NVFP4 global) adds its bytes to its weight's encoding */
            const wpk_tensor *w = x->owner != WPK_NONE ? wpk_tensor_at(f, x->owner) : x;
            if (!w) return wp_fail(e, WP_EINVAL, "%s: %s: owner %u out of range", p->name, x->name, x->owner);
            if (add_enc(s, wpk_tensor_enc_name(w), x->size, w == x))
                return wp_fail(e, WP_EINVAL, "%s: more than %d encodings", p->name, WP_BUILD_MAX_ENCS);
        }
    }
    if (s->has_manifest) {
        const wp_manifest *m;
        if ((rc = wp_build_manifest(b, &m, e))) return rc;
        wp_hex(m->root, WP_SHA256_LEN, s->root);
    }
    return 0;
}

cJSON *wp_build_summary_json(const char *path, const wp_build_summary *s)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "path", path);
    cJSON_AddStringToObject(o, "kind", s->kind == WP_BUILD_DIR ? "build" : "wpk");
    cJSON_AddNumberToObject(o, "tensors", (double)s->tensors);
    cJSON_AddNumberToObject(o, "tensor_bytes", (double)s->tensor_bytes);
    cJSON_AddNumberToObject(o, "file_bytes", (double)s->file_bytes);
    cJSON *pa = cJSON_AddArrayToObject(o, "files");
    for (size_t i = 0; i < s->n_parts; i++) {
        cJSON *p = cJSON_CreateObject();
        cJSON_AddStringToObject(p, "path", s->parts[i].name);
        cJSON_AddNumberToObject(p, "tensors", (double)s->parts[i].tensors);
        cJSON_AddNumberToObject(p, "bytes", (double)s->parts[i].file_bytes);
        cJSON_AddItemToArray(pa, p);
    }
    cJSON *en = cJSON_AddObjectToObject(o, "encodings");
    for (size_t i = 0; i < s->n_encs; i++) {
        cJSON *x = cJSON_CreateObject();
        cJSON_AddNumberToObject(x, "tensors", (double)s->encs[i].tensors);
        cJSON_AddNumberToObject(x, "bytes", (double)s->encs[i].bytes);
        cJSON_AddItemToObject(en, s->encs[i].name, x);
    }
    cJSON_AddBoolToObject(o, "manifest", s->has_manifest);
    if (s->root[0]) cJSON_AddStringToObject(o, "root_sha256", s->root);
    cJSON_AddBoolToObject(o, "signed", s->has_sig);
    cJSON_AddBoolToObject(o, "dsse", s->has_dsse);
    return o;
}
