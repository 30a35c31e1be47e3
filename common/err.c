/* err.c — first-failure-wins error messages (see wp.h). */
#include "common/wp.h"

#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

static void set(wp_err *e, int code, const char *fmt, va_list ap, int with_errno, int err)
{
    if (!e || e->code) return;
    e->code = code;
    vsnprintf(e->msg, sizeof e->msg, fmt, ap);
    if (with_errno) {
        size_t n = strlen(e->msg);
        snprintf(e->msg + n, sizeof e->msg - n, ": %s", strerror(err));
    }
    /* one line, always: a message must never break a log or a JSON field */
    for (char *p = e->msg; *p; p++)
        if (*p == '\n' || *p == '\r') *p = ' ';
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
