/* source.c — `wpack verify-source`: an official download against published
 * sizes and SHA-256s (docs/signing.md §6). */
#include "trust/trust.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/wp.h"

#define MAX_DIGESTS_FILE ((size_t)16 << 20)

const char *wp_src_status_name(wp_src_status s)
{
    switch (s) {
    case WP_SRC_OK: return "ok";
    case WP_SRC_MISSING: return "missing";
    case WP_SRC_SIZE: return "size mismatch";
    case WP_SRC_DIGEST: return "sha256 mismatch";
    case WP_SRC_NOTFILE: return "not a regular file";
    }
    return "?";
}

void wp_source_report_free(wp_source_report *r)
{
    if (!r) return;
    for (size_t i = 0; i < r->nfiles; i++) free(r->files[i].path);
    for (size_t i = 0; i < r->nextra; i++) free(r->extra[i]);
    free(r->files);
    free(r->extra);
    free(r->model);
    free(r->revision);
    memset(r, 0, sizeof *r);
}

static int opt_str(const cJSON *o, const char *k, char **out, const char *what, wp_err *e)
{
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(o, k);
    if (!it) return 0;
    if (!cJSON_IsString(it)) return wp_fail(e, WP_EINVAL, "%s: \"%s\" must be a string", what, k);
    return (*out = wp_strdup(it->valuestring, e)) ? 0 : WP_ENOMEM;
}

/* The digests file: {"files": [{"path", "sha256", "size"?}], "model"?, "revision"?, ...}. */
static int load_digests(const char *path, wp_source_report *r, wp_err *e)
{
    char *buf = NULL;
    size_t len = 0;
    int rc = wp_read_small_file(path, MAX_DIGESTS_FILE, &buf, &len, e);
    if (rc) return rc;
    cJSON *doc = cJSON_ParseWithLength(buf, len);
    free(buf);
    if (!doc || !cJSON_IsObject(doc)) {
        cJSON_Delete(doc);
        return wp_fail(e, WP_EINVAL, "%s: not a JSON object", path);
    }
    const cJSON *files = cJSON_GetObjectItemCaseSensitive(doc, "files");
    rc = opt_str(doc, "model", &r->model, path, e);
    if (!rc) rc = opt_str(doc, "revision", &r->revision, path, e);
    if (!rc && (!cJSON_IsArray(files) || cJSON_GetArraySize(files) == 0))
        rc = wp_fail(e, WP_EINVAL, "%s: \"files\" must be a non-empty array", path);
    if (!rc && !(r->files = wp_calloc((size_t)cJSON_GetArraySize(files), sizeof *r->files, e))) rc = WP_ENOMEM;
    size_t i = 0;
    for (const cJSON *f = rc ? NULL : files->child; f && !rc; f = f->next, i++) {
        const cJSON *p = cJSON_GetObjectItemCaseSensitive(f, "path");
        const cJSON *h = cJSON_GetObjectItemCaseSensitive(f, "sha256");
        const cJSON *s = cJSON_GetObjectItemCaseSensitive(f, "size");
        if (!cJSON_IsString(p) || !wp_rel_path_ok(p->valuestring)) {
            rc = wp_fail(e, WP_EINVAL, "%s: files[%zu]: \"path\" must be a relative path inside the checkpoint", path, i);
            break;
        }
        wp_src_file *sf = &r->files[r->nfiles];
        if (!(sf->path = wp_strdup(p->valuestring, e))) {
            rc = WP_ENOMEM;
            break;
        }
        r->nfiles++;
        if (!cJSON_IsString(h) || strlen(h->valuestring) != 64 || wp_unhex(h->valuestring, sf->want, WP_SHA256_LEN)) {
            rc = wp_fail(e, WP_EINVAL, "%s: %s: \"sha256\" must be 64 hex digits", path, sf->path);
            break;
        }
        if (s) {
            /* exact integers only: a size is never approximately right */
            double d = cJSON_IsNumber(s) ? s->valuedouble : -1;
            if (!(d >= 0 && d <= 9007199254740992.0) || d != (double)(uint64_t)d) {
                rc = wp_fail(e, WP_EINVAL, "%s: %s: \"size\" must be a non-negative integer", path, sf->path);
                break;
            }
            sf->has_size = 1;
            sf->want_size = (uint64_t)d;
        }
        for (size_t k = 0; k + 1 < r->nfiles; k++)
            if (!strcmp(r->files[k].path, sf->path)) {
                rc = wp_fail(e, WP_EINVAL, "%s: %s is listed twice", path, sf->path);
                break;
            }
    }
    cJSON_Delete(doc);
    return rc;
}

int wp_verify_source(const char *ckpt_dir, const char *digests_path, int threads, wp_progress_fn progress, void *ud,
                     wp_source_report *r, wp_err *e)
{
    memset(r, 0, sizeof *r);
    double t0 = wp_now();
    r->threads = threads > 0 ? threads : wp_default_threads();
    int rc = load_digests(digests_path, r, e);
    if (rc) return rc;
    struct stat st;
    if (stat(ckpt_dir, &st) != 0) return wp_fail_errno(e, "%s: cannot open", ckpt_dir);
    if (!S_ISDIR(st.st_mode)) return wp_fail(e, WP_EUSAGE, "%s: not a directory", ckpt_dir);
    char(*paths)[4096] = wp_calloc(r->nfiles, sizeof *paths, e);
    int *fds = wp_calloc(r->nfiles, sizeof *fds, e);
    wp_hash_job *jobs = wp_calloc(r->nfiles, sizeof *jobs, e);
    wp_range *ranges = wp_calloc(r->nfiles, sizeof *ranges, e);
    size_t *which = wp_calloc(r->nfiles, sizeof *which, e);
    size_t njobs = 0;
    if (!paths || !fds || !jobs || !ranges || !which) rc = WP_ENOMEM;
    for (size_t i = 0; !rc && i < r->nfiles; i++) fds[i] = -1;
    /* sizes first: a wrong size is reported without reading a byte */
    for (size_t i = 0; !rc && i < r->nfiles; i++) {
        wp_src_file *f = &r->files[i];
        if (wp_path_join(paths[i], sizeof paths[i], ckpt_dir, f->path)) {
            rc = wp_fail(e, WP_EUSAGE, "%s/%s: path too long", ckpt_dir, f->path);
            break;
        }
        if (stat(paths[i], &st) != 0) {
            if (errno != ENOENT && errno != ENOTDIR) {
                rc = wp_fail_errno(e, "%s: cannot stat", paths[i]);
                break;
            }
            f->status = WP_SRC_MISSING;
            continue;
        }
        if (!S_ISREG(st.st_mode)) {
            f->status = WP_SRC_NOTFILE;
            continue;
        }
        f->size = (uint64_t)st.st_size;
        if (f->has_size && f->size != f->want_size) {
            f->status = WP_SRC_SIZE;
            continue;
        }
        fds[i] = wp_open_read(paths[i], e);
        if (fds[i] < 0) {
            rc = wp_fail_errno(e, "%s: cannot open", paths[i]);
            break;
        }
        posix_fadvise(fds[i], 0, 0, POSIX_FADV_SEQUENTIAL);
        ranges[i] = (wp_range){0, f->size};
        jobs[njobs] = (wp_hash_job){.fd = fds[i], .path = paths[i], .ranges = &ranges[i], .nranges = 1};
        which[njobs++] = i;
        r->bytes_hashed += f->size;
    }
    if (!rc) rc = wp_hash_jobs(jobs, njobs, r->threads, progress, ud, "verify-source", e);
    for (size_t k = 0; !rc && k < njobs; k++) {
        wp_src_file *f = &r->files[which[k]];
        memcpy(f->got, jobs[k].out, WP_SHA256_LEN);
        f->status = memcmp(f->got, f->want, WP_SHA256_LEN) ? WP_SRC_DIGEST : WP_SRC_OK;
    }
    for (size_t i = 0; fds && i < r->nfiles; i++)
        if (fds[i] >= 0) close(fds[i]);
    free(paths);
    free(fds);
    free(jobs);
    free(ranges);
    free(which);
    /* files present but not published: ignored, listed */
    wp_strv all = {0};
    if (!rc) rc = wp_list_files(ckpt_dir, &all, e);
    for (size_t i = 0; !rc && i < all.n; i++) {
        int listed = 0;
        for (size_t k = 0; k < r->nfiles && !listed; k++) listed = !strcmp(all.v[i], r->files[k].path);
        if (listed) continue;
        char **v = realloc(r->extra, (r->nextra + 1) * sizeof *v);
        if (!v) {
            rc = wp_oom(e, "verify-source report");
            break;
        }
        r->extra = v;
        r->extra[r->nextra++] = all.v[i];
        all.v[i] = NULL;
    }
    wp_strv_free(&all);
    r->seconds = wp_now() - t0;
    if (rc) return rc;
    for (size_t i = 0; i < r->nfiles; i++) {
        const wp_src_file *f = &r->files[i];
        if (f->status == WP_SRC_OK) continue;
        r->nbad++;
        char want[65], got[65];
        wp_hex(f->want, WP_SHA256_LEN, want);
        wp_hex(f->got, WP_SHA256_LEN, got);
        switch (f->status) {
        case WP_SRC_MISSING: wp_fail(e, WP_EVERIFY, "%s/%s: missing", ckpt_dir, f->path); break;
        case WP_SRC_NOTFILE: wp_fail(e, WP_EVERIFY, "%s/%s: not a regular file", ckpt_dir, f->path); break;
        case WP_SRC_SIZE:
            wp_fail(e, WP_EVERIFY, "%s/%s: size %llu, published %llu (not hashed)", ckpt_dir, f->path,
                    (unsigned long long)f->size, (unsigned long long)f->want_size);
            break;
        default:
            wp_fail(e, WP_EVERIFY, "%s/%s: sha256 %s, published %s", ckpt_dir, f->path, got, want);
        }
    }
    return r->nbad ? WP_EVERIFY : 0;
}
