/*
 * fuzz_wpkz.c — the .wpkz shipping form: the footer, the index and its
 * record rules (format/unpack.c), listing (wpz_stat, wpz_list_open), one-tensor extraction
 * and a whole unpack.  The input is written to a file in a scratch
 * directory (the reader takes a path).  Tensor names to extract are taken
 * from the input itself (every NUL-terminated run of printable bytes near
 * its end, where the index's strings are), so mutations that keep the index
 * valid reach the frame decoder.  Every output is removed after each run.
 * Seeds: tests/fuzz/corpus/wpkz/ (small packs, the regress archives).
 */
#include "format/pack.h"
#include "tests/fuzz/fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *z = fz_path("in.wpkz");
    const char *out = fz_path("restored");
    const char *tfile = fz_path("tensor.bin");
    fz_write(z, data, size);
    wp_err e = {0};
    wpz_stats st;
    memset(&st, 0, sizeof st);
    int rc = wpz_stat(z, &st, &e);
    fz_check_refusal(rc, &e);
    if (rc) return 0;
    /* the tensor listing: the index again, then the .wpk header regions */
    wpz_list *l = NULL;
    wp_err_clear(&e);
    rc = wpz_list_open(&l, z, &e);
    fz_check_refusal(rc, &e);
    wpz_list_close(l);
    /* extraction: names found in the string area (and a FILE:NAME form) */
    size_t from = size > 4096 ? size - 4096 : 0, tried = 0;
    for (size_t i = from; i < size && tried < 8; i++) {
        size_t j = i;
        while (j < size && data[j] >= 0x21 && data[j] < 0x7f) j++;
        if (j < size && data[j] == 0 && j - i >= 1 && j - i < 200 && (i == 0 || data[i - 1] == 0)) {
            char name[256];
            memcpy(name, data + i, j - i);
            name[j - i] = 0;
            wp_err_clear(&e);
            rc = wpz_extract(z, name, tfile, &(wpz_opts){.force = 1}, &e);
            fz_check_refusal(rc, &e);
            unlink(tfile);
            tried++;
        }
        i = j;
    }
    wp_err_clear(&e);
    memset(&st, 0, sizeof st);
    rc = wpz_unpack(z, out, NULL, &st, &e);
    fz_check_refusal(rc, &e);
    fz_rm_tree(out);
    return 0;
}
