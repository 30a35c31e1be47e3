/* walk.c — listing a directory tree for verify and verify-source. */
#include "common/wp.h"

#include <dirent.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int wp_strv_push(wp_strv *s, const char *str, wp_err *e)
{
    if (s->n == s->cap) {
        size_t cap = s->cap ? 2 * s->cap : 16;
        char **v = realloc(s->v, cap * sizeof *v);
        if (!v) return wp_oom(e, "listing files");
        s->v = v;
        s->cap = cap;
    }
    if (!(s->v[s->n] = wp_strdup(str, e))) return WP_ENOMEM;
    s->n++;
    return 0;
}

void wp_strv_free(wp_strv *s)
{
    for (size_t i = 0; i < s->n; i++) free(s->v[i]);
    free(s->v);
    memset(s, 0, sizeof *s);
}

int wp_str_ends_with(const char *s, const char *suffix)
{
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && !strcmp(s + a - b, suffix);
}

static int walk(const char *root, const char *rel, int depth, wp_strv *out, wp_err *e)
{
    char dir[4096];
    if (snprintf(dir, sizeof dir, "%s%s%s", root, *rel ? "/" : "", rel) >= (int)sizeof dir)
        return wp_fail(e, WP_EUSAGE, "%s/%s: path too long", root, rel);
    DIR *d = opendir(dir);
    if (!d) return wp_fail_errno(e, "%s: cannot list directory", dir);
    int rc = 0;
    struct dirent *de;
    while (!rc && (errno = 0, de = readdir(d))) {
        if (de->d_name[0] == '.') continue;
        char sub[4096], full[4096];
        if (snprintf(sub, sizeof sub, "%s%s%s", rel, *rel ? "/" : "", de->d_name) >= (int)sizeof sub ||
            snprintf(full, sizeof full, "%s/%s", dir, de->d_name) >= (int)sizeof full) {
            rc = wp_fail(e, WP_EUSAGE, "%s/%s: path too long", dir, de->d_name);
            break;
        }
        /* A symlink to a file lists as the file; a symlink to a directory is
         * not followed: links to ".." or to each other would make the walk
         * exponential in the depth (and could leave the directory). */
        struct stat st;
        if (lstat(full, &st) != 0) continue;
        int link = S_ISLNK(st.st_mode);
        if (link && stat(full, &st) != 0) continue;   /* a dangling link is simply not a file */
        if (S_ISDIR(st.st_mode)) {
            if (link) continue;
            if (depth < 16) rc = walk(root, sub, depth + 1, out, e);
        } else if (S_ISREG(st.st_mode)) {
            rc = wp_strv_push(out, sub, e);
        }
    }
    if (!rc && errno) rc = wp_fail_errno(e, "%s: cannot list directory", dir);
    closedir(d);
    return rc;
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

int wp_list_files(const char *dir, wp_strv *out, wp_err *e)
{
    memset(out, 0, sizeof *out);
    int rc = walk(dir, "", 0, out, e);
    if (rc) {
        wp_strv_free(out);
        return rc;
    }
    if (out->n) qsort(out->v, out->n, sizeof *out->v, cmp_str);
    return 0;
}
