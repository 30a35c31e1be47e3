/* build.c — a build directory or a lone .wpk, opened once (see build.h). */
#include "trust/build.h"

#include <dirent.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define MAX_MANIFEST ((size_t)1 << 30)

/* A .wpk of the build: listed as a part, or opened by name (verify). */
typedef struct bent {
    char *rel, *path;
    wpk_file *f;
} bent;

struct wp_build {
    char *path;
    wp_build_kind kind;
    int has_manifest, has_sig, has_dsse;
    char *raw;                  /* manifest.json bytes, once read */
    size_t rawlen;
    wp_manifest m;
    int have_m;
    wp_strv files;
    int listed;
    bent *ents;                 /* every .wpk named so far */
    size_t nents, cap;
    size_t *parts;              /* indices into ents, by name */
    size_t nparts;
    int have_parts;
};

static int present(const char *dir, const char *name)
{
    char p[4096];
    struct stat st;
    return !wp_path_join(p, sizeof p, dir, name) && lstat(p, &st) == 0;
}

int wp_build_open(wp_build **out, const char *path, wp_err *e)
{
    *out = NULL;
    struct stat st;
    if (stat(path, &st) != 0) return wp_fail_errno(e, "%s: cannot open", path);
    if (!S_ISDIR(st.st_mode) && !S_ISREG(st.st_mode))
        return wp_fail(e, WP_EUSAGE, "%s: neither a build directory nor a .wpk file", path);
    wp_build *b = calloc(1, sizeof *b);
    if (!b || !(b->path = strdup(path))) {
        free(b);
        return wp_oom(e, "a build");
    }
    b->kind = S_ISDIR(st.st_mode) ? WP_BUILD_DIR : WP_BUILD_WPK;
    if (b->kind == WP_BUILD_DIR) {
        b->has_manifest = present(path, WP_MANIFEST_NAME);
        b->has_sig = present(path, WP_MANIFEST_SIG_NAME);
        b->has_dsse = present(path, WP_MANIFEST_DSSE_NAME);
    }
    *out = b;
    return 0;
}

void wp_build_close(wp_build *b)
{
    if (!b) return;
    for (size_t i = 0; i < b->nents; i++) {
        if (b->ents[i].f) wpk_close(b->ents[i].f);
        free(b->ents[i].rel);
        free(b->ents[i].path);
    }
    free(b->ents);
    free(b->parts);
    wp_strv_free(&b->files);
    if (b->have_m) wp_manifest_free(&b->m);
    free(b->raw);
    free(b->path);
    free(b);
}

wp_build_kind wp_build_type(const wp_build *b) { return b->kind; }
const char *wp_build_path(const wp_build *b) { return b->path; }
int wp_build_has_manifest(const wp_build *b) { return b->has_manifest; }
int wp_build_has_sig(const wp_build *b) { return b->has_sig; }
int wp_build_has_dsse(const wp_build *b) { return b->has_dsse; }

int wp_build_is_trust_file(const char *rel)
{
    return !strcmp(rel, WP_MANIFEST_NAME) || !strcmp(rel, WP_MANIFEST_SIG_NAME) ||
           !strcmp(rel, WP_MANIFEST_DSSE_NAME);
}

int wp_build_join(const wp_build *b, const char *rel, char *out, size_t n, wp_err *e)
{
    if (wp_path_join(out, n, b->path, rel)) return wp_fail(e, WP_EUSAGE, "%s/%s: path too long", b->path, rel);
    return 0;
}

int wp_build_manifest(wp_build *b, const wp_manifest **m, wp_err *e)
{
    *m = NULL;
    if (b->have_m) {
        *m = &b->m;
        return 0;
    }
    if (b->kind != WP_BUILD_DIR) return wp_fail(e, WP_EUSAGE, "%s: a lone .wpk has no manifest", b->path);
    char mpath[4096];
    int rc = wp_build_join(b, WP_MANIFEST_NAME, mpath, sizeof mpath, e);
    if (rc) return rc;
    if (!b->has_manifest)
        return wp_fail(e, WP_EINVAL, "%s: no %s: not a build directory, or an incomplete one", b->path,
                       WP_MANIFEST_NAME);
    char *raw = NULL;
    size_t len = 0;
    rc = wp_read_small_file(mpath, MAX_MANIFEST, &raw, &len, e);
    if (!rc) rc = wp_manifest_parse(raw, len, mpath, &b->m, e);
    if (rc) {
        free(raw);
        return rc;
    }
    b->raw = raw;
    b->rawlen = len;
    b->have_m = 1;
    *m = &b->m;
    return 0;
}

const char *wp_build_manifest_bytes(const wp_build *b, size_t *len)
{
    if (len) *len = b->have_m ? b->rawlen : 0;
    return b->have_m ? b->raw : NULL;
}

int wp_build_lossless(const wp_build *b)
{
    if (b->kind != WP_BUILD_DIR || !b->has_manifest) return -1;
    char *raw = NULL;
    size_t len = 0;
    const char *bytes = b->raw;
    if (b->have_m) {
        len = b->rawlen;
    } else {
        char mpath[4096];
        wp_err e = {0};
        if (wp_build_join(b, WP_MANIFEST_NAME, mpath, sizeof mpath, &e) ||
            wp_read_small_file(mpath, MAX_MANIFEST, &raw, &len, &e))
            return -1;
        bytes = raw;
    }
    cJSON *j = cJSON_ParseWithLength(bytes, len);
    free(raw);
    const cJSON *loss = cJSON_GetObjectItemCaseSensitive(j, "loss");
    const cJSON *ll = cJSON_GetObjectItemCaseSensitive(loss, "lossless");
    int v = cJSON_IsBool(ll) ? cJSON_IsTrue(ll) : -1;
    cJSON_Delete(j);
    return v;
}

int wp_build_files(wp_build *b, const wp_strv **files, wp_err *e)
{
    *files = NULL;
    if (!b->listed) {
        int rc;
        if (b->kind == WP_BUILD_DIR) {
            rc = wp_list_files(b->path, &b->files, e);
        } else {
            const char *slash = strrchr(b->path, '/');
            rc = wp_strv_push(&b->files, slash ? slash + 1 : b->path, e);
        }
        if (rc) return rc;
        b->listed = 1;
    }
    *files = &b->files;
    return 0;
}

/* The entry for rel (path: BUILD/rel, or given), added if new. */
static int ent_for(wp_build *b, const char *rel, const char *path, size_t *ix, wp_err *e)
{
    for (size_t i = 0; i < b->nents; i++)
        if (!strcmp(b->ents[i].rel, rel)) {
            *ix = i;
            return 0;
        }
    if (b->nents == b->cap) {
        size_t cap = b->cap ? 2 * b->cap : 8;
        bent *v = realloc(b->ents, cap * sizeof *v);
        if (!v) return wp_oom(e, "the parts of a build");
        b->ents = v;
        b->cap = cap;
    }
    char full[4096];
    if (!path) {
        int rc = wp_build_join(b, rel, full, sizeof full, e);
        if (rc) return rc;
        path = full;
    }
    bent *x = &b->ents[b->nents];
    memset(x, 0, sizeof *x);
    x->rel = strdup(rel);
    x->path = strdup(path);
    if (!x->rel || !x->path) {
        free(x->rel);
        free(x->path);
        return wp_oom(e, "the parts of a build");
    }
    *ix = b->nents++;
    return 0;
}

static int open_ent(wp_build *b, size_t ix, wpk_file **f, wp_err *e)
{
    bent *x = &b->ents[ix];
    if (!x->f) {
        int rc = wpk_open(&x->f, x->path, e);
        if (rc) return rc;
    }
    *f = x->f;
    return 0;
}

static int is_part_name(const char *n)
{
    size_t k = strlen(n);
    return k > 4 && !strcmp(n + k - 4, ".wpk") && n[0] != '.';
}

static int cmp_name(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

int wp_build_parts(wp_build *b, size_t *n, wp_err *e)
{
    *n = 0;
    if (b->have_parts) {
        *n = b->nparts;
        return 0;
    }
    wp_strv names = {0};
    int rc = 0;
    if (b->kind == WP_BUILD_WPK) {
        const char *slash = strrchr(b->path, '/');
        rc = wp_strv_push(&names, slash ? slash + 1 : b->path, e);
    } else {
        DIR *d = opendir(b->path);
        if (!d) return wp_fail_errno(e, "%s: cannot list build directory", b->path);
        struct dirent *de;
        while (!rc && (de = readdir(d)))
            if (is_part_name(de->d_name)) rc = wp_strv_push(&names, de->d_name, e);
        closedir(d);
        if (!rc && !names.n) rc = wp_fail(e, WP_EINVAL, "%s: no .wpk file in this directory", b->path);
    }
    if (!rc && !(b->parts = calloc(names.n, sizeof *b->parts))) rc = wp_oom(e, "the parts of a build");
    if (!rc) qsort(names.v, names.n, sizeof *names.v, cmp_name);
    for (size_t i = 0; !rc && i < names.n; i++)
        rc = ent_for(b, names.v[i], b->kind == WP_BUILD_WPK ? b->path : NULL, &b->parts[i], e);
    size_t count = names.n;
    wp_strv_free(&names);
    if (rc) {
        free(b->parts);
        b->parts = NULL;
        return rc;
    }
    b->nparts = count;
    b->have_parts = 1;
    *n = count;
    return 0;
}

const char *wp_build_part_name(const wp_build *b, size_t i)
{
    return b->have_parts && i < b->nparts ? b->ents[b->parts[i]].rel : NULL;
}

const char *wp_build_part_path(const wp_build *b, size_t i)
{
    return b->have_parts && i < b->nparts ? b->ents[b->parts[i]].path : NULL;
}

int wp_build_part(wp_build *b, size_t i, wpk_file **f, wp_err *e)
{
    *f = NULL;
    if (!b->have_parts || i >= b->nparts)
        return wp_fail(e, WP_EUSAGE, "%s: part %zu of %zu", b->path, i, b->have_parts ? b->nparts : 0);
    return open_ent(b, b->parts[i], f, e);
}

int wp_build_part_at(wp_build *b, const char *rel, wpk_file **f, wp_err *e)
{
    *f = NULL;
    if (b->kind != WP_BUILD_DIR) return wp_fail(e, WP_EUSAGE, "%s: a lone .wpk holds no other file", b->path);
    size_t ix;
    int rc = ent_for(b, rel, NULL, &ix, e);
    return rc ? rc : open_ent(b, ix, f, e);
}
