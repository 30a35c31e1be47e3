/*
 * fuzz_profile.c — profile JSON (wp_profile_parse: keys, align, thresholds,
 * rules and their regexes, bounded before regcomp: docs/profiles.md) and
 * `--tensor-type REGEX=ENC` override strings (wp_profile_add_override).
 * The input is a profile up to its first NUL byte, then override strings,
 * one per line; overrides are added to the parsed profile, or to the
 * built-in reference profile when the JSON is refused.  Every accepted rule
 * is matched against real tensor names (regexec, as the plan does), the
 * profile is written back as JSON and copied.  Seeds:
 * tests/fuzz/corpus/profile/ (the built-in profiles, the regress files).
 */
#include <cjson/cJSON.h>

#include "convert/convert.h"
#include "tests/fuzz/fuzz_util.h"

static const char *const names[] = {
    "embed.weight", "layers.0.attn.wq_a.weight", "layers.3.ffn.experts.w13.weight",
    "layers.12.ffn.experts.7.w2.scale", "mtp.0.ffn.experts.w1.weight", "layers.1.attn.compressor.wkv.weight",
    "layers.2.attn.indexer.wq_b.weight", "hc_head_fn", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa!",
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const uint8_t *nul = memchr(data, 0, size);
    size_t jlen = nul ? (size_t)(nul - data) : size;
    wp_profile p;
    wp_err e = {0};
    int rc = wp_profile_parse(&p, (const char *)data, jlen, "fuzz.json", &e);
    fz_check_refusal(rc, &e);
    if (rc && wp_profile_load(&p, "reference", &e)) abort();
    if (nul) {
        char *ov = fz_cstr(nul + 1, size - jlen - 1);
        for (char *line = ov, *next; line; line = next) {
            next = strchr(line, '\n');
            if (next) *next++ = 0;
            wp_err_clear(&e);
            rc = wp_profile_add_override(&p, line, &e);
            fz_check_refusal(rc, &e);
            if (rc && rc != WP_ENOMEM && strcmp(e.setting, "tensor-type")) abort();
        }
        free(ov);
    }
    for (size_t i = 0; i < p.n_rules; i++)
        for (size_t k = 0; k < sizeof names / sizeof names[0]; k++)
            (void)regexec(&p.rules[i].re, names[k], 0, NULL, 0);
    cJSON *j = wp_profile_to_json(&p);
    if (!j) abort();
    cJSON_Delete(j);
    wp_profile q;
    wp_err_clear(&e);
    if (wp_profile_copy(&q, &p, &e)) abort();   /* accepted rules recompile */
    wp_profile_free(&q);
    wp_profile_free(&p);
    return 0;
}
