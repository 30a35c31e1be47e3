/*
 * sink.c — the build-directory sink of the pipeline: one .wpk per plan file
 * (format/wpk.h writer: tensors declared up front, bytes pwritten and hashed
 * as they arrive) plus manifest.json (trust/manifest.h).
 *
 * No partial output (docs/architecture.md): everything is written into the
 * temporary directory of a wp_outdir (common/outdir.h) next to OUT and moved
 * to OUT only once complete; abort removes it.  An existing OUT is refused
 * unless `force`, and then replaced only if it is a build directory.
 */
#include <cjson/cJSON.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/outdir.h"
#include "convert/convert_priv.h"
#include "trust/manifest.h"
#include "format/wpk.h"

typedef struct dsink {
    char *out;            /* final directory */
    wp_outdir od;         /* the temporary directory, from begin to commit */
    char *tmp;            /* wp_outdir_tmp(&od), NULL until begin */
    int force;
    const wp_plan *p;
    wpk_writer **w;       /* one per plan file; NULL once committed */
    size_t *id;           /* plan tensor -> writer id */
    volatile sig_atomic_t *cancel;   /* the pipeline's: honoured up to the claim */
    const uint64_t *inexact;         /* per plan weight, for the manifest's "loss" */
} dsink;

static int cancelled(const dsink *s) { return s->cancel && *s->cancel; }

static void ds_set_cancel(void *ud, volatile sig_atomic_t *cancel) { ((dsink *)ud)->cancel = cancel; }
static void ds_set_inexact(void *ud, const uint64_t *inexact) { ((dsink *)ud)->inexact = inexact; }

static void ds_abort(void *ud)
{
    dsink *s = ud;
    if (s->w) {
        for (int i = 0; s->p && i < s->p->n_files; i++) wpk_writer_abort(s->w[i]);
        free(s->w);
        s->w = NULL;
    }
    free(s->id);
    s->id = NULL;
    wp_outdir_abort(&s->od);
    s->tmp = NULL;
}

/* SHA-256 of one source shard's header region (8 + N bytes): cheap, and
 * enough to tie a build to the exact checkpoint layout; the data digests are
 * verify-source's job (docs/convert.md, "Provenance"). */
static int shard_json(const wp_ckpt *k, cJSON *files, wp_err *e)
{
    for (size_t i = 0; i < wp_ckpt_file_count(k); i++) {
        wp_st_file *f = wp_ckpt_file(k, i);
        uint64_t n = 8 + wp_st_header_len(f);
        uint8_t d[WP_SHA256_LEN];
        int rc = wp_sha256_fd_range(wp_st_fd(f), 0, n, wp_st_path(f), d, e);
        if (rc) return rc;
        char hex[2 * WP_SHA256_LEN + 1];
        wp_hex(d, WP_SHA256_LEN, hex);
        const char *path = wp_st_path(f), *slash = strrchr(path, '/');
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "name", slash ? slash + 1 : path);
        cJSON_AddNumberToObject(o, "bytes", (double)wp_st_file_size(f));
        cJSON_AddStringToObject(o, "header_sha256", hex);
        cJSON_AddItemToArray(files, o);
    }
    return 0;
}

static char *print_json(cJSON *j, wp_err *e)
{
    char *s = j ? cJSON_PrintUnformatted(j) : NULL;
    cJSON_Delete(j);
    if (!s) wp_oom(e, "the build description");
    return s;
}

static int declare(dsink *s, wpk_writer *w, const wp_plan_tensor *t, size_t ti, wp_err *e)
{
    const wp_plan *p = s->p;
    const wp_plan_weight *pw = &p->weights[t->weight];
    wpk_decl d;
    memset(&d, 0, sizeof d);
    d.name = t->name;
    d.kind = t->is_enc ? WPK_KIND_ENC : WPK_KIND_RAW;
    d.enc = t->enc;
    d.dtype = t->dtype;
    d.ndim = t->ndim;
    memcpy(d.shape, t->shape, sizeof d.shape);
    d.stacked = t->stacked;
    d.sfmt = pw->sfmt;
    d.br = pw->enc == WP_ENC_FP8 ? pw->br : 0;
    d.bc = pw->enc == WP_ENC_FP8 ? pw->bc : 0;
    d.role = t->role == WP_ROLE_SCALE ? WPK_ROLE_SCALE : t->role == WP_ROLE_GLOBAL ? WPK_ROLE_GLOBAL : WPK_ROLE_DATA;
    if (t->role == WP_ROLE_SCALE || t->role == WP_ROLE_GLOBAL) d.owner = s->id[pw->t_weight];
    /* the source tensors of each slice, expert-major (docs/format.md §2.5) */
    size_t ns = (size_t)pw->n_slices * (size_t)pw->srcs_per_slice;
    const char **src = NULL;
    if (t->role != WP_ROLE_GLOBAL) {
        src = malloc(ns * sizeof *src);
        if (!src) return wp_oom(e, "a tensor's source names");
        size_t n = 0;
        for (size_t i = 0; i < ns; i++) {
            const wp_tensor_info *x = t->role == WP_ROLE_SCALE ? pw->srcs[i].s : pw->srcs[i].w;
            if (x) src[n++] = x->name;
        }
        d.n_sources = n;
        d.sources = src;
    }
    int rc = wpk_writer_add(w, &d, &s->id[ti], e);
    free(src);
    return rc;
}

static int ds_begin(void *ud, const wp_plan *p, wp_err *e)
{
    dsink *s = ud;
    s->p = p;
    int rc = wp_outdir_begin(&s->od, s->out, &(wp_outdir_opts){.force = s->force, .kind = WP_OUTDIR_BUILD}, e);
    if (rc) return rc;
    s->tmp = (char *)wp_outdir_tmp(&s->od);
    s->w = calloc((size_t)p->n_files, sizeof *s->w);
    s->id = calloc(p->n_tensors ? p->n_tensors : 1, sizeof *s->id);
    if (!s->w || !s->id) return wp_oom(e, "the build's writers");

    /* The build's description: the model, the profile and where it came
     * from — never a time or a host path, so builds are reproducible. */
    cJSON *prov = cJSON_CreateObject();
    cJSON_AddStringToObject(prov, "tool", "wpack " WP_VERSION);
    cJSON *files = cJSON_AddArrayToObject(prov, "source_files");
    rc = shard_json(p->ckpt, files, e);
    char cfg_path[4096];
    if (!rc && !wp_path_join(cfg_path, sizeof cfg_path, wp_ckpt_dir(p->ckpt), "config.json")) {
        uint8_t d[WP_SHA256_LEN];
        char *text = NULL;
        size_t len = 0;
        if (wp_read_small_file(cfg_path, 16 << 20, &text, &len, e) == 0 && wp_sha256_buf(text, len, d, e) == 0) {
            char hex[2 * WP_SHA256_LEN + 1];
            wp_hex(d, WP_SHA256_LEN, hex);
            cJSON_AddStringToObject(prov, "config_sha256", hex);
        }
        free(text);
        wp_err_clear(e);   /* a single-file checkpoint may have its config elsewhere */
    }
    cJSON *opt = cJSON_AddObjectToObject(prov, "options");
    cJSON_AddNumberToObject(opt, "ep", p->opts.ep);
    cJSON_AddNumberToObject(opt, "tp", p->opts.tp);
    cJSON_AddBoolToObject(opt, "fuse_w13", p->profile.fuse_w13);
    char *prov_s = print_json(prov, e);
    char *model_s = print_json(wp_config_to_json(&p->config), e);
    char *prof_s = print_json(wp_profile_to_json(&p->profile), e);
    if (!prov_s || !model_s || !prof_s) rc = rc ? rc : WP_ENOMEM;
    for (int f = 0; f < p->n_files && !rc; f++) {
        char path[4096];
        if (wp_path_join(path, sizeof path, s->tmp, p->files[f].name)) {
            rc = wp_fail(e, WP_EUSAGE, "%s: path too long", s->tmp);
            break;
        }
        wpk_opts o = {
            .align = (uint32_t)p->profile.align, .model_json = model_s, .profile_json = prof_s,
            .provenance_json = prov_s, .part_index = (uint32_t)f, .part_count = (uint32_t)p->n_files,
        };
        if ((rc = wpk_writer_open(&s->w[f], path, &o, e))) break;
        size_t first = SIZE_MAX;
        for (size_t i = 0; i < p->n_tensors && !rc; i++)
            if (p->tensors[i].file == f) {
                if (first == SIZE_MAX) first = i;
                rc = declare(s, s->w[f], &p->tensors[i], i, e);
            }
        if (!rc) rc = wpk_writer_layout(s->w[f], e);
        /* the plan promised these offsets: check the container agrees */
        for (size_t i = first; !rc && first != SIZE_MAX && i < p->n_tensors && p->tensors[i].file == f; i++) {
            uint64_t base = wpk_writer_offset(s->w[f], s->id[first]) - p->tensors[first].offset;
            if (wpk_writer_offset(s->w[f], s->id[i]) != base + p->tensors[i].offset ||
                wpk_writer_size(s->w[f], s->id[i]) != p->tensors[i].nbytes)
                rc = wp_fail(e, WP_EINVAL, "%s: %s: the container placed it at %llu (+%llu), the plan at data+%llu (+%llu)",
                             p->files[f].name, p->tensors[i].name,
                             (unsigned long long)wpk_writer_offset(s->w[f], s->id[i]),
                             (unsigned long long)wpk_writer_size(s->w[f], s->id[i]),
                             (unsigned long long)p->tensors[i].offset, (unsigned long long)p->tensors[i].nbytes);
        }
    }
    free(prov_s);
    free(model_s);
    free(prof_s);
    return rc;
}

static int ds_write(void *ud, size_t tensor, uint64_t off, const void *buf, size_t n, wp_err *e)
{
    dsink *s = ud;
    return wpk_writer_write(s->w[s->p->tensors[tensor].file], s->id[tensor], off, buf, n, e);
}

/* One manifest file record: SHA-256 of the whole file and of the bytes
 * outside every tensor (docs/signing.md §2), streamed with pread. */
static int hash_file(const dsink *s, const char *dir, const char *name, wp_manifest *m, uint32_t fi, size_t base,
                     wp_err *e)
{
    char path[4096];
    if (wp_path_join(path, sizeof path, dir, name)) return wp_fail(e, WP_EUSAGE, "%s: path too long", dir);
    wpk_file *f = NULL;
    int rc = wpk_open(&f, path, e);
    if (rc) return rc;
    wp_mfile *mf = &m->files[fi];
    mf->path = strdup(name);
    mf->size = wpk_file_size(f);
    size_t cap = 4u << 20;
    uint8_t *buf = malloc(cap);
    wp_sha256 all, non;
    int ha = 0, hn = 0;
    if (!mf->path || !buf) rc = wp_oom(e, "hashing a container");
    if (!rc && !(rc = wp_sha256_init(&all, e))) ha = 1;
    if (!rc && !(rc = wp_sha256_init(&non, e))) hn = 1;
    size_t nt = wpk_count(f), ti = 0;
    uint64_t pos = 0;
    while (!rc && pos < mf->size) {
        if (cancelled(s)) {
            rc = wp_fail(e, WP_EUSAGE, "interrupted");
            break;
        }
        /* the next boundary: start or end of the tensor under/after pos */
        const wpk_tensor *t = ti < nt ? wpk_tensor_at(f, ti) : NULL;
        int inside = t && pos >= t->offset;
        uint64_t end = !t ? mf->size : inside ? t->offset + t->size : t->offset;
        if (end - pos > cap) end = pos + cap;
        size_t n = (size_t)(end - pos);
        if ((rc = wp_pread_full(wpk_fd(f), buf, n, pos, path, e))) break;
        wp_sha256_update(&all, buf, n);
        if (!inside) wp_sha256_update(&non, buf, n);
        pos = end;
        if (t && pos == t->offset + t->size) ti++;
    }
    if (!rc) {
        wp_sha256_final(&all, mf->sha256);
        wp_sha256_final(&non, mf->nontensor_sha256);
        for (size_t i = 0; i < nt; i++) {
            const wpk_tensor *t = wpk_tensor_at(f, i);
            wp_mtensor *mt = &m->tensors[base + i];
            mt->name = strdup(t->name);
            if (!mt->name) {
                rc = wp_oom(e, "the manifest");
                break;
            }
            mt->file = fi;
            mt->offset = t->offset;
            mt->size = t->size;
            memcpy(mt->sha256, t->sha256, WP_SHA256_LEN);
        }
    } else {
        if (ha) wp_sha256_free(&all);
        if (hn) wp_sha256_free(&non);
    }
    free(buf);
    wpk_close(f);
    return rc;
}

/* Finishing the files (fsync) and hashing them back are per file: run them
 * on parallel threads when a build has several files (ranks). */
typedef struct fin_job {
    dsink *s;
    wp_manifest *m;
    size_t *base;
    int next, rc;
    pthread_mutex_t mu;
    wp_err e;
} fin_job;

static void *fin_main(void *arg)
{
    fin_job *j = arg;
    const wp_plan *p = j->s->p;
    for (;;) {
        pthread_mutex_lock(&j->mu);
        int f = j->rc ? p->n_files : j->next++;
        pthread_mutex_unlock(&j->mu);
        if (f >= p->n_files) break;
        wp_err e = {0};
        wpk_writer *w = j->s->w[f];
        j->s->w[f] = NULL;   /* commit frees it, success or not */
        int rc = cancelled(j->s) ? wp_fail(&e, WP_EUSAGE, "interrupted") : 0;
        if (rc) wpk_writer_abort(w);
        else rc = wpk_writer_commit(w, &e);
        if (!rc) rc = hash_file(j->s, j->s->tmp, p->files[f].name, j->m, (uint32_t)f, j->base[f], &e);
        if (rc) {
            pthread_mutex_lock(&j->mu);
            if (!j->rc) {
                j->rc = rc;
                j->e = e;
            }
            pthread_mutex_unlock(&j->mu);
        }
    }
    return NULL;
}

static int ds_commit(void *ud, wp_err *e)
{
    dsink *s = ud;
    const wp_plan *p = s->p;
    int rc = 0;
    wp_manifest m;
    memset(&m, 0, sizeof m);
    m.files = calloc((size_t)p->n_files, sizeof *m.files);
    m.tensors = calloc(p->n_tensors ? p->n_tensors : 1, sizeof *m.tensors);
    size_t *base = calloc((size_t)p->n_files, sizeof *base);
    if (!m.files || !m.tensors || !base) {
        free(base);
        wp_manifest_free(&m);
        return wp_oom(e, "the manifest");
    }
    m.nfiles = (uint32_t)p->n_files;
    m.ntensors = p->n_tensors;
    for (int f = 1; f < p->n_files; f++) base[f] = base[f - 1] + p->files[f - 1].n_tensors;
    fin_job j = {.s = s, .m = &m, .base = base};
    pthread_mutex_init(&j.mu, NULL);
    int nt = p->n_files < 8 ? p->n_files : 8;
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    if (cpus > 0 && nt > cpus) nt = (int)cpus;
    pthread_t tid[8];
    int started = 0;
    for (int i = 1; i < nt; i++)
        if (pthread_create(&tid[i], NULL, fin_main, &j) == 0) started++;
    fin_main(&j);
    for (int i = 1; i <= started; i++) pthread_join(tid[i], NULL);
    pthread_mutex_destroy(&j.mu);
    free(base);
    rc = j.rc ? wp_fail(e, j.rc, "%s", j.e.msg) : 0;
    if (!rc) rc = wp_plan_manifest_loss(p, s->inexact, &m, e);
    if (!rc) rc = wp_manifest_finish(&m, e);
    if (!rc && cancelled(s)) rc = wp_fail(e, WP_EUSAGE, "interrupted");
    if (!rc) rc = wp_manifest_write(s->tmp, &m, e);
    wp_manifest_free(&m);
    if (rc) return rc;
    /* the last point to stop: once the name is claimed the build is complete */
    rc = wp_outdir_commit_cancel(&s->od, s->cancel, e);
    s->tmp = NULL;
    return rc;
}

int wp_dir_sink_new(wp_sink *sk, const char *out_dir, int force, wp_err *e)
{
    memset(sk, 0, sizeof *sk);
    size_t n = strlen(out_dir);
    while (n > 1 && out_dir[n - 1] == '/') n--;   /* "out/" names "out" */
    const char *base = n ? (const char *)memrchr(out_dir, '/', n) : NULL;
    base = base ? base + 1 : out_dir;
    size_t bn = n - (size_t)(base - out_dir);
    /* refused here, before any work: wp_outdir_begin would refuse it too */
    if (!n || !bn || (bn == 1 && base[0] == '.') || (bn == 2 && !strncmp(base, "..", 2)))
        return wp_fail(e, WP_EUSAGE, "%s: not a usable output directory name", out_dir);
    dsink *s = calloc(1, sizeof *s);
    if (!s || !(s->out = strndup(out_dir, n))) {
        free(s);
        return wp_oom(e, "the build-directory sink");
    }
    s->force = force;
    sk->ud = s;
    sk->begin = ds_begin;
    sk->write = ds_write;
    sk->commit = ds_commit;
    sk->abort = ds_abort;
    sk->set_cancel = ds_set_cancel;
    sk->set_inexact = ds_set_inexact;
    return 0;
}

void wp_dir_sink_free(wp_sink *sk)
{
    dsink *s = sk->ud;
    if (!s) return;
    ds_abort(s);
    free(s->out);
    free(s);
    sk->ud = NULL;
}
