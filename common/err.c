/* err.c — first-failure-wins error messages (see wp.h). */
#include "common/wp.h"

#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

/* Length of the valid UTF-8 sequence at p (1..4), or 0 when p starts an
 * invalid one (overlong, surrogate, past U+10FFFF, truncated). */
static size_t utf8_len(const unsigned char *p, uint32_t *cp)
{
    unsigned c = p[0];
    size_t n;
    uint32_t v, min;
    if (c < 0x80) return *cp = c, 1;
    if (c >= 0xC2 && c <= 0xDF) n = 2, v = c & 0x1F, min = 0x80;
    else if (c >= 0xE0 && c <= 0xEF) n = 3, v = c & 0x0F, min = 0x800;
    else if (c >= 0xF0 && c <= 0xF4) n = 4, v = c & 0x07, min = 0x10000;
    else return 0;
    for (size_t i = 1; i < n; i++) {
        if ((p[i] & 0xC0) != 0x80) return 0;   /* also stops at the NUL */
        v = v << 6 | (p[i] & 0x3F);
    }
    if (v < min || v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF)) return 0;
    *cp = v;
    return n;
}

/* Characters a terminal acts on rather than shows: C0 and C1 controls, DEL,
 * and the bidirectional overrides that reorder what is displayed. */
static int inert(uint32_t cp)
{
    return !(cp < 0x20 || cp == 0x7F || (cp >= 0x80 && cp <= 0x9F) || (cp >= 0x202A && cp <= 0x202E) ||
             (cp >= 0x2066 && cp <= 0x2069));
}

/* Copy src into dst (size cap) with every control character escaped (\n,
 * \r, \t, else \xNN per byte; invalid UTF-8 bytes too), never cutting an
 * escape or a character in half.  Messages quote file contents (tensor
 * names, keys, paths): this is the one place that keeps an ESC sequence or
 * a line break in such a name from reaching a terminal, a log line or a
 * JSON field raw. */
static void escape_into(char *dst, size_t cap, const char *src)
{
    const unsigned char *p = (const unsigned char *)src;
    size_t o = 0;
    while (*p) {
        uint32_t cp = 0;
        size_t n = utf8_len(p, &cp);
        char esc[4 * 4 + 1];
        const char *put = (const char *)p;
        size_t len = n;
        if (n == 0 || !inert(cp)) {
            size_t k = n ? n : 1;
            if (cp == '\n' || cp == '\r' || cp == '\t')
                len = (size_t)snprintf(esc, sizeof esc, "\\%c", cp == '\n' ? 'n' : cp == '\r' ? 'r' : 't');
            else
                for (size_t i = len = 0; i < k; i++) len += (size_t)snprintf(esc + len, sizeof esc - len, "\\x%02x", p[i]);
            put = esc;
            n = k;
        }
        if (o + len >= cap) break;
        memcpy(dst + o, put, len);
        o += len;
        p += n;
    }
    dst[o] = 0;
}

static void set(wp_err *e, int code, const char *fmt, va_list ap, int with_errno, int err)
{
    if (!e || e->code) return;
    e->code = code;
    char raw[sizeof e->msg];
    vsnprintf(raw, sizeof raw, fmt, ap);
    if (with_errno) {
        size_t n = strlen(raw);
        snprintf(raw + n, sizeof raw - n, ": %s", strerror(err));
    }
    /* one line of inert text, always: a message must never break a log or a
     * JSON field, nor drive the terminal it is printed on */
    escape_into(e->msg, sizeof e->msg, raw);
}

int wp_fail(wp_err *e, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    set(e, code, fmt, ap, 0, 0);
    va_end(ap);
    return code;
}

int wp_fail_setting(wp_err *e, int code, const char *setting, const char *fmt, ...)
{
    int first = e && !e->code;
    va_list ap;
    va_start(ap, fmt);
    set(e, code, fmt, ap, 0, 0);
    va_end(ap);
    if (first && setting) snprintf(e->setting, sizeof e->setting, "%s", setting);
    return code;
}

int wp_oom(wp_err *e, const char *fmt, ...)
{
    if (!e || e->code) return WP_ENOMEM;
    char what[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    return wp_fail(e, WP_ENOMEM, "out of memory: %s", what);
}

int wp_fail_errno(wp_err *e, const char *fmt, ...)
{
    int err = errno;
    va_list ap;
    va_start(ap, fmt);
    set(e, WP_EIO, fmt, ap, 1, err);
    va_end(ap);
    return WP_EIO;
}

void *wp_malloc(size_t n, wp_err *e)
{
    void *p = malloc(n ? n : 1);
    if (!p) wp_fail(e, WP_ENOMEM, "out of memory: %zu bytes", n);
    return p;
}

void *wp_calloc(size_t n, size_t size, wp_err *e)
{
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (!p) wp_fail(e, WP_ENOMEM, "out of memory: %zu x %zu bytes", n, size);
    return p;
}

char *wp_strdup(const char *s, wp_err *e)
{
    char *p = strdup(s);
    if (!p) wp_oom(e, "copying a string");
    return p;
}
