/*
 * fuzz_safetensors.c — libFuzzer harness for the strict safetensors reader
 * (wp_st_open: header length, UTF-8, JSON, entries, layout).  Not built by
 * `make`; build and run it with clang from the repository root:
 *
 *   make BUILD=build-fuzz CC=clang OPT="-O1 -g -fsanitize=address,undefined,fuzzer-no-link"
 *   clang -O1 -g -fsanitize=address,undefined,fuzzer -D_GNU_SOURCE -I. \
 *       tests/fuzz/fuzz_safetensors.c build-fuzz/libwpack.a \
 *       -lzstd -lcrypto -lcjson -lhugetlbfs -lpthread -lm -o build-fuzz/fuzz_safetensors
 *   mkdir -p build-fuzz/seeds && cp tests/fixtures/tiny-a/golden-bf16.safetensors build-fuzz/seeds/
 *   build-fuzz/fuzz_safetensors build-fuzz/seeds -max_len=4096
 *
 * (A generated corpus also makes good seeds: see tests/corpus.h.)  The input
 * is the whole file; it goes through a memfd so the reader sees a real file
 * descriptor, exactly as in production.  On success every tensor is read
 * through both access paths, so an accepted layout that lies is caught by
 * ASan rather than trusted.
 */
#include "hf/safetensors.h"

#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int fd = -1;
    if (fd < 0 && (fd = memfd_create("fuzz.safetensors", 0)) < 0) abort();
    if (ftruncate(fd, 0) != 0 || (size && pwrite(fd, data, size, 0) != (ssize_t)size)) abort();
    char path[64];
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    wp_err e = {0};
    wp_st_file *f = NULL;
    if (wp_st_open(&f, path, &e) != 0) {
        if (!e.code || strchr(e.msg, '\n')) abort();   /* every refusal explains itself */
        return 0;
    }
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
    wp_st_close(f);
    return 0;
}
