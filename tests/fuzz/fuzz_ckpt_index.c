/*
 * fuzz_ckpt_index.c — a sharded checkpoint's model.safetensors.index.json
 * (wp_ckpt_open on a directory).  The input is the index; beside it lie two
 * small shards (a.safetensors: x, y; b.safetensors: z), one in a
 * subdirectory (sub/c.safetensors: w), a symlink to a shard, a symlink that
 * points outside, a directory and a FIFO with shard names, so weight_map
 * entries can name every kind of thing a directory holds.  On success every
 * tensor is looked up and its last bytes read.  Seeds:
 * tests/fuzz/corpus/ckpt_index/ (tiny-a's index, hand-made cases).
 */
#include "hf/safetensors.h"
#include "tests/fuzz/fuzz_util.h"

static const char *ckpt_dir(void)
{
    static const char *dir;
    if (dir) return dir;
    static char d[600];
    snprintf(d, sizeof d, "%s", fz_path("ckpt"));
    char p[700];
    wp_err e = {0};
    static const uint16_t xv[4] = {1, 2, 3, 4}, yv[2] = {5, 6}, zv[3] = {7, 8, 9}, wv[1] = {10};
    wp_st_entry a[2] = {{.name = "x", .dtype = WP_BF16, .ndim = 2, .shape = {2, 2}, .data = xv},
                        {.name = "y", .dtype = WP_BF16, .ndim = 1, .shape = {2}, .data = yv}};
    wp_st_entry b[1] = {{.name = "z", .dtype = WP_BF16, .ndim = 1, .shape = {3}, .data = zv}};
    wp_st_entry c[1] = {{.name = "w", .dtype = WP_BF16, .ndim = 1, .shape = {1}, .data = wv}};
    if (mkdir(d, 0755) != 0) abort();
    snprintf(p, sizeof p, "%s/a.safetensors", d);
    if (wp_st_write_file(p, a, 2, NULL, 0, &e)) abort();
    snprintf(p, sizeof p, "%s/b.safetensors", d);
    if (wp_st_write_file(p, b, 1, NULL, 0, &e)) abort();
    snprintf(p, sizeof p, "%s/sub", d);
    if (mkdir(p, 0755) != 0) abort();
    snprintf(p, sizeof p, "%s/sub/c.safetensors", d);
    if (wp_st_write_file(p, c, 1, NULL, 0, &e)) abort();
    snprintf(p, sizeof p, "%s/link.safetensors", d);
    if (symlink("a.safetensors", p) != 0) abort();
    snprintf(p, sizeof p, "%s/out.safetensors", d);
    if (symlink("/dev/zero", p) != 0) abort();
    snprintf(p, sizeof p, "%s/dir.safetensors", d);
    if (mkdir(p, 0755) != 0) abort();
    snprintf(p, sizeof p, "%s/fifo.safetensors", d);
    if (mkfifo(p, 0644) != 0) abort();
    dir = d;
    return dir;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *dir = ckpt_dir();
    char ipath[700];
    snprintf(ipath, sizeof ipath, "%s/model.safetensors.index.json", dir);
    fz_write(ipath, data, size);
    wp_err e = {0};
    wp_ckpt *c = NULL;
    int rc = wp_ckpt_open(&c, dir, &e);
    fz_check_refusal(rc, &e);
    if (rc) return 0;
    for (size_t i = 0; i < wp_ckpt_count(c); i++) {
        const wp_tensor_info *t = wp_ckpt_tensor(c, i);
        if (wp_ckpt_find(c, t->name) != t) abort();
        uint8_t b[8];
        size_t n = t->nbytes < sizeof b ? (size_t)t->nbytes : sizeof b;
        if (wp_ckpt_read(c, t, t->nbytes - n, b, n, &e) != 0) abort();
    }
    for (size_t i = 0; i < wp_ckpt_file_count(c); i++)
        if (!wp_ckpt_file(c, i)) abort();
    wp_ckpt_close(c);
    return 0;
}
