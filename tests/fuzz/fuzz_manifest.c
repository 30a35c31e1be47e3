/*
 * fuzz_manifest.c — manifest.json (wp_manifest_parse: canonical JSON, known
 * keys, sorted unique files and tensors inside their files, root digest).
 * The input is the manifest.  What the strict parser accepts is canonical,
 * so serialising the parsed manifest must give back the input byte for
 * byte, and every file must be found by its path.  Seeds:
 * tests/fuzz/corpus/manifest/ (manifests of small builds).
 */
#include "tests/fuzz/fuzz_util.h"
#include "trust/manifest.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    wp_err e = {0};
    wp_manifest m;
    int rc = wp_manifest_parse((const char *)data, size, "manifest.json", &m, &e);
    fz_check_refusal(rc, &e);
    if (!rc) {
        char *s = NULL;
        size_t n = 0;
        if (wp_manifest_serialize(&m, &s, &n, &e)) abort();
        if (n != size || memcmp(s, data, n)) abort();   /* canonical: parse . serialise = id */
        free(s);
        for (uint32_t i = 0; i < m.nfiles; i++)
            if (wp_manifest_find_file(&m, m.files[i].path) != (int)i) abort();
        for (uint64_t i = 0; i < m.ntensors; i++)
            if (m.tensors[i].file >= m.nfiles) abort();
    }
    wp_manifest_free(&m);
    return 0;
}
