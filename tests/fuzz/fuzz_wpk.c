/*
 * fuzz_wpk.c — the .wpk container (wpk_open: header, digest, directory,
 * strings, layout) and every accessor of an opened one.  The input is the
 * whole file, through a memfd.  On success each tensor is found by name,
 * viewed (wpk_data, wpk_expert for every expert of a stack, wpk_qweight with
 * one dequantised row), read (wpk_read) and its digest and the padding
 * checked (wpk_check_deep): an accepted directory that lies must be caught
 * by the checks or by ASan, never trusted.  Seeds: tests/fuzz/corpus/wpk/
 * (the zoo of tests/wpk_zoo.c, a tiny-a part).
 */
#include "format/wpk.h"
#include "quant/quant.h"
#include "tests/fuzz/fuzz_util.h"

static void check_tensor(const wpk_file *f, const wpk_tensor *t, uint64_t size)
{
    wp_err e = {0};
    if (wpk_find(f, t->name) != t || t->offset > size || t->size > size - t->offset) abort();
    const uint8_t *d = wpk_data(f, t);
    if (t->size && !d) abort();
    uint8_t b[16];
    size_t n = t->size < sizeof b ? (size_t)t->size : sizeof b;
    if (wpk_read(f, t, t->size - n, b, n, &e)) abort();
    if (n && memcmp(b, d + t->size - n, n)) abort();
    for (uint32_t i = 0; i < t->n_sources; i++)
        if (!t->sources[i]) abort();
    uint64_t experts = t->stacked ? t->n_experts : 1;
    for (uint64_t x = 0; x < experts && x < 64; x++) {
        if (t->stacked) {
            const void *p;
            uint64_t pn;
            wp_err_clear(&e);
            if (wpk_expert(f, t, x, &p, &pn, &e)) abort();
            if ((const uint8_t *)p < d || pn > t->size || (uint64_t)((const uint8_t *)p - d) > t->size - pn) abort();
        }
        wp_qweight q;
        wp_err_clear(&e);
        int rc = wpk_qweight(f, t, x, &q, &e);
        fz_check_refusal(rc, &e);
        if (rc || q.rows == 0 || q.cols == 0 || q.cols > (1u << 20)) continue;
        float *row = malloc(sizeof(float) * q.cols);
        if (!row) abort();
        wp_qweight_dequant_rows(&q, q.rows - 1, 1, row);   /* the last row: ASan checks the bounds */
        free(row);
    }
    wp_err_clear(&e);
    (void)wpk_expert(f, t, t->n_experts, &(const void *){0}, &(uint64_t){0}, &e);   /* one past */
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int fd = -1;
    const char *path = fz_memfd_path(&fd, data, size, "fuzz.wpk");
    wp_err e = {0};
    wpk_file *f = NULL;
    int rc = wpk_open(&f, path, &e);
    fz_check_refusal(rc, &e);
    if (rc) return 0;
    if (wpk_file_size(f) != size || wpk_data_offset(f) > size || !wpk_path(f) || wpk_fd(f) < 0) abort();
    uint32_t align = wpk_align(f), pi, pc;
    if (align < 4096 || (align & (align - 1))) abort();
    wpk_part(f, &pi, &pc);
    (void)wpk_version_minor(f);
    if (!wpk_header_sha256(f) || !wpk_model_json(f) || !wpk_profile_json(f) || !wpk_provenance_json(f)) abort();
    for (size_t i = 0; i < wpk_count(f); i++) {
        const wpk_tensor *t = wpk_tensor_at(f, i);
        if (!t || t->index != i || !wpk_tensor_enc_name(t)) abort();
        check_tensor(f, t, size);
    }
    if (wpk_tensor_at(f, wpk_count(f)) || wpk_find(f, "\x01no such tensor")) abort();
    rc = wpk_check_deep(f, 1, NULL, NULL, &e);
    fz_check_refusal(rc, &e);
    wpk_close(f);
    return 0;
}
