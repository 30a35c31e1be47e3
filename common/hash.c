/* hash.c — SHA-256 through OpenSSL EVP (never a home-made digest). */
#include "common/wp.h"

#include <openssl/evp.h>
#include <stdlib.h>

int wp_sha256_init(wp_sha256 *h, wp_err *e)
{
    EVP_MD_CTX *c = EVP_MD_CTX_new();
    if (!c || EVP_DigestInit_ex(c, EVP_sha256(), NULL) != 1) {
        EVP_MD_CTX_free(c);
        h->ctx = NULL;
        return wp_fail(e, WP_ENOMEM, "cannot initialise SHA-256 (OpenSSL)");
    }
    h->ctx = c;
    return 0;
}

void wp_sha256_update(wp_sha256 *h, const void *p, size_t n)
{
    if (n) EVP_DigestUpdate(h->ctx, p, n);
}

void wp_sha256_zeros(wp_sha256 *h, uint64_t n)
{
    static const uint8_t z[65536];
    while (n) {
        size_t k = n < sizeof z ? (size_t)n : sizeof z;
        wp_sha256_update(h, z, k);
        n -= k;
    }
}

void wp_sha256_final(wp_sha256 *h, uint8_t out[WP_SHA256_LEN])
{
    unsigned len = 0;
    EVP_DigestFinal_ex(h->ctx, out, &len);
    EVP_MD_CTX_free(h->ctx);
    h->ctx = NULL;
}

void wp_sha256_free(wp_sha256 *h)
{
    EVP_MD_CTX_free(h->ctx);
    h->ctx = NULL;
}

int wp_sha256_buf(const void *p, size_t n, uint8_t out[WP_SHA256_LEN], wp_err *e)
{
    wp_sha256 h;
    int rc = wp_sha256_init(&h, e);
    if (rc) return rc;
    wp_sha256_update(&h, p, n);
    wp_sha256_final(&h, out);
    return 0;
}

int wp_sha256_fd_range(int fd, uint64_t off, uint64_t n, const char *path,
                       uint8_t out[WP_SHA256_LEN], wp_err *e)
{
    enum { CHUNK = 1 << 20 };
    uint8_t *buf = wp_malloc(CHUNK, e);
    if (!buf) return WP_ENOMEM;
    wp_sha256 h;
    int rc = wp_sha256_init(&h, e);
    while (!rc && n) {
        size_t k = n < CHUNK ? (size_t)n : CHUNK;
        rc = wp_pread_full(fd, buf, k, off, path, e);
        if (!rc) wp_sha256_update(&h, buf, k);
        off += k;
        n -= k;
    }
    if (rc) wp_sha256_free(&h);
    else wp_sha256_final(&h, out);
    free(buf);
    return rc;
}

void wp_hex(const uint8_t *p, size_t n, char *out)
{
    static const char d[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = d[p[i] >> 4];
        out[2 * i + 1] = d[p[i] & 15];
    }
    out[2 * n] = 0;
}

static int nib(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

int wp_unhex(const char *s, uint8_t *out, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        int hi = nib(s[2 * i]), lo = hi < 0 ? -1 : nib(s[2 * i + 1]);
        if (hi < 0 || lo < 0) return -1;
        out[i] = (uint8_t)(hi << 4 | lo);
    }
    return s[2 * n] == 0 ? 0 : -1;
}
