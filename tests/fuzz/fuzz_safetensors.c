/*
 * fuzz_safetensors.c — the strict safetensors reader (wp_st_open: header
 * length, UTF-8, JSON, entries, layout).  The input is the whole file,
 * through a memfd so the reader sees a real file descriptor, exactly as in
 * production.  On success every tensor is read through both access paths
 * and the metadata listed, so an accepted layout that lies is caught by
 * ASan rather than trusted.  Seeds: tests/fuzz/corpus/safetensors/.
 */
#include "hf/safetensors.h"
#include "tests/fuzz/fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int fd = -1;
    const char *path = fz_memfd_path(&fd, data, size, "fuzz.safetensors");
    wp_err e = {0};
    wp_st_file *f = NULL;
    int rc = wp_st_open(&f, path, &e);
    fz_check_refusal(rc, &e);
    if (rc) return 0;
    uint64_t sum = 0;
    for (size_t i = 0; i < wp_st_count(f); i++) {
        const wp_tensor_info *t = wp_st_tensor(f, i);
        if (t->offset + t->nbytes > size || wp_st_find(f, t->name) != t) abort();
        sum += t->nbytes;
        uint8_t b[16];
        size_t n = t->nbytes < sizeof b ? (size_t)t->nbytes : sizeof b;
        if (wp_st_read(f, t, t->nbytes - n, b, n, &e) != 0) abort();
        const uint8_t *d = wp_st_data(f, t, &e);
        if (!d || (n && memcmp(d + t->nbytes - n, b, n) != 0)) abort();
    }
    if (sum != size - 8 - wp_st_header_len(f)) abort();   /* tensors tile the data */
    for (size_t i = 0; i < wp_st_meta_count(f); i++) {
        const char *k, *v;
        if (wp_st_meta(f, i, &k, &v) != 0 || !k || !v) abort();
    }
    wp_st_close(f);
    return 0;
}
