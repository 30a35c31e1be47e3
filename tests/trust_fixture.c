/* trust_fixture.c — see trust_fixture.h. */
#include "tests/trust_fixture.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "hf/safetensors.h"
#include "format/wpk.h"
#include "tests/harness.h"
#include "trust/manifest.h"
#include "trust/trust.h"

static int make_part(const char *dir, int part, const char *perturb, wp_err *e)
{
    char src[512], dst[1024];
    snprintf(src, sizeof src, WPT_TINY "/hf/model-%05d-of-00002.safetensors", part + 1);
    snprintf(dst, sizeof dst, "%s/%s", dir, part ? TRUST_PART1 : TRUST_PART0);
    wp_st_file *sf = NULL;
    int rc = wp_st_open(&sf, src, e);
    if (rc) return rc;
    wpk_opts o = {.part_index = (uint32_t)part, .part_count = 2,
                  .provenance_json = "{\"source\":\"tests/fixtures/tiny-a/hf\"}"};
    wpk_writer *w = NULL;
    rc = wpk_writer_open(&w, dst, &o, e);
    size_t n = wp_st_count(sf);
    for (size_t i = 0; !rc && i < n; i++) {
        const wp_tensor_info *t = wp_st_tensor(sf, i);
        wpk_decl d = {.name = t->name, .kind = WPK_KIND_RAW, .dtype = t->dtype, .ndim = t->ndim, .role = WPK_ROLE_DATA};
        memcpy(d.shape, t->shape, sizeof d.shape);
        size_t id;
        rc = wpk_writer_add(w, &d, &id, e);
    }
    if (!rc) rc = wpk_writer_layout(w, e);
    for (size_t i = 0; !rc && i < n; i++) {
        const wp_tensor_info *t = wp_st_tensor(sf, i);
        const uint8_t *p = wp_st_data(sf, t, e);
        if (!p && t->nbytes) {
            rc = WP_EIO;
            break;
        }
        if (perturb && !strcmp(perturb, t->name) && t->nbytes) {
            uint8_t *q = malloc(t->nbytes);
            memcpy(q, p, t->nbytes);
            q[0] ^= 0xFF;
            rc = wpk_writer_write(w, i, 0, q, t->nbytes, e);
            free(q);
        } else if (t->nbytes) {
            rc = wpk_writer_write(w, i, 0, p, t->nbytes, e);
        }
    }
    if (!rc) rc = wpk_writer_commit(w, e);
    else wpk_writer_abort(w);
    wp_st_close(sf);
    return rc;
}

int trust_make_build(const char *dir, const char *perturb)
{
    wp_err e = {0};
    int rc = wp_mkdir_p(dir, &e);
    for (int p = 0; !rc && p < 2; p++) rc = make_part(dir, p, perturb, &e);
    if (!rc) rc = wp_manifest_create(dir, 2, NULL, NULL, NULL, &e);
    if (rc) {
        printf("    trust_make_build(%s): %s\n", dir, e.msg);
        return -1;
    }
    return 0;
}

int trust_flip(const char *path, uint64_t off, uint8_t mask)
{
    int fd = open(path, O_RDWR);
    if (fd < 0) return -1;
    uint8_t b;
    int ok = pread(fd, &b, 1, (off_t)off) == 1;
    b ^= mask;
    ok = ok && pwrite(fd, &b, 1, (off_t)off) == 1;
    close(fd);
    return ok ? 0 : -1;
}

uint64_t trust_file_size(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 ? (uint64_t)st.st_size : 0;
}

int trust_manifest_load(const char *dir, wp_manifest *m)
{
    uint8_t *raw;
    size_t len;
    wp_err e = {0};
    if (wpt_read_file(wpt_path("%s/manifest.json", dir), &raw, &len) != 0) return -1;
    int rc = wp_manifest_parse((const char *)raw, len, "manifest.json", m, &e);
    free(raw);
    if (rc) fprintf(stderr, "%s: %s\n", dir, e.msg);
    return rc ? -1 : 0;
}

int trust_manifest_to_v1(const char *dir_, wp_manifest *m)
{
    char dir[4096];   /* dir_ may be one of wpt_path's rotating buffers */
    snprintf(dir, sizeof dir, "%s", dir_);
    wp_err e = {0};
    m->version = 1;
    for (uint32_t i = 0; i < m->nfiles; i++) {
        uint8_t *x;
        size_t n;
        if (wpt_read_file(wpt_path("%s/%s", dir, m->files[i].path), &x, &n) != 0) return -1;
        int rc = wp_sha256_buf(x, n, m->files[i].sha256, &e);
        free(x);
        if (rc) return -1;
    }
    if (wp_manifest_finish(m, &e) || wp_manifest_write(dir, m, &e)) {
        fprintf(stderr, "%s: %s\n", dir, e.msg);
        return -1;
    }
    return 0;
}
