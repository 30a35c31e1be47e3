/*
 * fuzz_config.c — config.json -> wp_config -> the expected inventory.  The
 * input is config.json.  On success: the implied inventory is built (its
 * size bounded by the parser, docs/config.md "Limits") and checked against
 * itself as a checkpoint (no problem may be found), the config is written
 * back and re-parsed (the same text must come out), and the checkpoint
 * bound is applied.  Seeds: tests/fuzz/corpus/config/ (tiny-a, the synth
 * presets, the regress file).
 */
#include <cjson/cJSON.h>

#include "model/model.h"
#include "tests/fuzz/fuzz_util.h"

static char *to_text(const wp_config *c)
{
    cJSON *j = wp_config_to_json(c);
    char *s = j ? cJSON_PrintUnformatted(j) : NULL;
    cJSON_Delete(j);
    if (!s) abort();
    return s;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static wp_config c, c2;
    wp_err e = {0};
    int rc = wp_config_parse(&c, (const char *)data, size, "config.json", &e);
    fz_check_refusal(rc, &e);
    if (rc) return 0;
    wp_expect *x;
    size_t nx;
    if (wp_inventory(&c, &x, &nx, &e)) abort();
    if (nx > wp_config_max_tensors(&c)) abort();   /* the bound the parser enforces holds */
    wp_tensor_info *t = calloc(nx ? nx : 1, sizeof *t);
    if (!t) abort();
    for (size_t i = 0; i < nx; i++) {
        t[i].name = x[i].name;
        t[i].dtype = x[i].dtype;
        t[i].ndim = x[i].ndim;
        memcpy(t[i].shape, x[i].shape, sizeof x[i].shape);
    }
    wp_inv_report r;
    if (wp_inventory_check_list(&c, t, nx, &r, &e)) abort();
    if (wp_inv_problems(&r)) abort();   /* its own inventory matches the config */
    wp_inv_report_free(&r);
    free(t);
    free(x);
    rc = wp_config_check_ckpt(&c, nx, "config.json", &e);
    fz_check_refusal(rc, &e);
    char *s = to_text(&c);
    if (wp_config_parse(&c2, s, strlen(s), "back", &e)) abort();   /* what we write, we read */
    char *s2 = to_text(&c2);
    if (strcmp(s, s2)) abort();
    free(s);
    free(s2);
    return 0;
}
