/*
 * merge.c — `wpack merge PART... -o BUILD` (docs/distributed.md): join the
 * parts of a per-rank convert into the build a single-machine convert of the
 * same plan writes, byte for byte.
 *
 * Nothing is written before every check passed: part.json of every part
 * (one plan digest, one rank count, one list of files, every rank exactly
 * once), each part's .wpk header against the others (same model, profile,
 * provenance; part index = rank) and each part verified like `wpack verify
 * --deep --allow-unsigned` (its manifest, the container's structure, every
 * tensor, non-tensor and shard digest).  The build is then made in a
 * wp_outdir temporary directory: each .wpk is hard-linked from its part (no
 * data copied; the part keeps its file, unchanged), reflinked where a link
 * is impossible (another filesystem), copied as a last resort; the manifest
 * is the parts' records joined and put in canonical order, which is exactly
 * what the single-machine sink computes.  A failure or a signal removes the
 * temporary directory; the parts are never modified.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "common/outdir.h"
#include "convert/convert.h"
#include "format/wpk.h"
#include "trust/manifest.h"
#include "trust/trust.h"

#ifndef FICLONE
#define FICLONE _IOW(0x94, 9, int)
#endif

#define MAX_PART_JSON (16u << 20)

typedef struct mpart {
    const char *dir;
    char plan[65];
    int rank, ranks;
    cJSON *files;            /* part.json "files" (owned by doc) */
    cJSON *doc;
    wp_manifest m;
    char wpk_path[4096];
} mpart;

static int read_part(mpart *p, wp_err *e)
{
    char path[4096], *buf = NULL;
    size_t len = 0;
    if (wp_path_join(path, sizeof path, p->dir, WP_PART_NAME)) return wp_fail(e, WP_EUSAGE, "%s: path too long", p->dir);
    struct stat st;
    if (stat(p->dir, &st) != 0 || !S_ISDIR(st.st_mode))
        return wp_fail(e, WP_EUSAGE, "%s: not a part directory (made by `convert --rank`)", p->dir);
    int rc = wp_read_small_file(path, MAX_PART_JSON, &buf, &len, e);
    if (rc) {
        if (access(path, F_OK) != 0)
            return wp_fail(e, WP_EVERIFY, "%s: no %s: not a part of a per-rank convert", p->dir, WP_PART_NAME);
        return rc;
    }
    rc = wp_json_parse_canonical(buf, len, path, &p->doc, e);
    free(buf);
    if (rc) return rc == WP_EINVAL ? WP_EVERIFY : rc;
    const cJSON *f = cJSON_GetObjectItemCaseSensitive(p->doc, "format");
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(p->doc, "version");
    const cJSON *pl = cJSON_GetObjectItemCaseSensitive(p->doc, "plan_sha256");
    const cJSON *r = cJSON_GetObjectItemCaseSensitive(p->doc, "rank");
    const cJSON *n = cJSON_GetObjectItemCaseSensitive(p->doc, "ranks");
    p->files = cJSON_GetObjectItemCaseSensitive(p->doc, "files");
    if (!cJSON_IsString(f) || strcmp(f->valuestring, WP_PART_FORMAT) || !cJSON_IsNumber(v) || v->valuedouble != 1 ||
        !cJSON_IsString(pl) || strlen(pl->valuestring) != 64 || !cJSON_IsNumber(r) || !cJSON_IsNumber(n) ||
        !cJSON_IsArray(p->files) || n->valuedouble < 1 || n->valuedouble > 4096 || r->valuedouble < 0 ||
        r->valuedouble >= n->valuedouble || r->valuedouble != (double)(int)r->valuedouble ||
        n->valuedouble != (double)(int)n->valuedouble || cJSON_GetArraySize(p->files) != (int)n->valuedouble)
        return wp_fail(e, WP_EVERIFY, "%s: not a %s version 1 document (format, version, plan_sha256, rank < ranks, "
                       "files[ranks])", path, WP_PART_FORMAT);
    for (const cJSON *x = p->files->child; x; x = x->next)
        if (!cJSON_IsString(x) || !wp_rel_path_ok(x->valuestring) || strchr(x->valuestring, '/') ||
            !wp_str_ends_with(x->valuestring, ".wpk"))
            return wp_fail(e, WP_EVERIFY, "%s: files: not a list of .wpk names", path);
    snprintf(p->plan, sizeof p->plan, "%s", pl->valuestring);
    p->rank = (int)r->valuedouble;
    p->ranks = (int)n->valuedouble;
    return 0;
}

static const char *file_of(const mpart *p, int rank) { return cJSON_GetArrayItem(p->files, rank)->valuestring; }

/* Every part from one plan, every rank once. */
static int check_cover(mpart *pt, int n, wp_err *e)
{
    const mpart *a = &pt[0];
    for (int i = 1; i < n; i++) {
        const mpart *b = &pt[i];
        if (strcmp(a->plan, b->plan))
            return wp_fail(e, WP_EVERIFY, "%s: from another plan (plan sha256 %.16s..., %s has %.16s...): parts of "
                           "different plans are never merged", b->dir, b->plan, a->dir, a->plan);
        int same = a->ranks == b->ranks;
        for (int r = 0; same && r < a->ranks; r++) same = !strcmp(file_of(a, r), file_of(b, r));
        if (!same)
            return wp_fail(e, WP_EVERIFY, "%s: its part.json lists other ranks or files than %s's for the same plan",
                           b->dir, a->dir);
    }
    int *who = calloc((size_t)a->ranks, sizeof *who);
    if (!who) return wp_oom(e, "merge");
    int rc = 0;
    for (int i = 0; i < n && !rc; i++) {
        if (who[pt[i].rank])
            rc = wp_fail(e, WP_EVERIFY, "%s and %s both hold rank %d (%s): each rank must come once", pt[who[pt[i].rank] - 1].dir,
                         pt[i].dir, pt[i].rank, file_of(&pt[i], pt[i].rank));
        who[pt[i].rank] = i + 1;
    }
    for (int r = 0; r < a->ranks && !rc; r++)
        if (!who[r])
            rc = wp_fail(e, WP_EVERIFY, "rank %d of %d is missing (%s): no part given holds it", r, a->ranks,
                         file_of(a, r));
    free(who);
    return rc;
}

/* The part's own manifest: one file, the rank's .wpk; verified in full. */
static int check_part(mpart *p, const wp_merge_opts *o, wp_merge_stats *st, wp_err *e)
{
    char path[4096], *buf = NULL;
    size_t len = 0;
    if (wp_path_join(path, sizeof path, p->dir, WP_MANIFEST_NAME)) return wp_fail(e, WP_EUSAGE, "%s: path too long", p->dir);
    int rc = wp_read_small_file(path, 1u << 30, &buf, &len, e);
    if (!rc) rc = wp_manifest_parse(buf, len, path, &p->m, e);
    free(buf);
    if (rc) return rc == WP_EINVAL ? WP_EVERIFY : rc;
    const char *want = file_of(p, p->rank);
    if (p->m.nfiles != 1 || strcmp(p->m.files[0].path, want))
        return wp_fail(e, WP_EVERIFY, "%s: its manifest lists %u file(s)%s%s, not the one file of rank %d (%s)", p->dir,
                       p->m.nfiles, p->m.nfiles ? ", first " : "", p->m.nfiles ? p->m.files[0].path : "", p->rank, want);
    if (p->m.version != 2)
        return wp_fail(e, WP_EVERIFY, "%s: manifest version %u: parts carry shard digests (version 2)", p->dir,
                       p->m.version);
    if (wp_path_join(p->wpk_path, sizeof p->wpk_path, p->dir, want))
        return wp_fail(e, WP_EUSAGE, "%s: path too long", p->dir);
    if (o->no_check) return 0;
    wp_verify_opts vo = {.allow_unsigned = 1, .deep = 1, .threads = o->threads, .progress = o->progress,
                         .progress_ud = o->progress_ud};
    wp_verify_report r;
    memset(&r, 0, sizeof r);
    wp_err ve = {0};
    rc = wp_verify_build(p->dir, &vo, &r, &ve);
    st->bytes_hashed += r.bytes_hashed;
    wp_verify_report_free(&r);
    if (rc)
        return wp_fail(e, rc == WP_EVERIFY || rc == WP_EINVAL ? WP_EVERIFY : rc, "%s: part does not verify: %s", p->dir,
                       ve.msg);
    return 0;
}

/* Headers agree: same model, profile and provenance, part index = rank. */
static int check_headers(mpart *pt, int n, wp_err *e)
{
    wpk_file *first = NULL;
    int rc = 0;
    for (int i = 0; i < n && !rc; i++) {
        wpk_file *f = NULL;
        wp_err we = {0};
        if ((rc = wpk_open(&f, pt[i].wpk_path, &we))) {
            rc = wp_fail(e, WP_EVERIFY, "%s: %s", pt[i].dir, we.msg);
            break;
        }
        uint32_t idx, cnt;
        wpk_part(f, &idx, &cnt);
        if (idx != (uint32_t)pt[i].rank || cnt != (uint32_t)pt[i].ranks)
            rc = wp_fail(e, WP_EVERIFY, "%s: container is part %u of %u, part.json says rank %d of %d", pt[i].wpk_path,
                         idx, cnt, pt[i].rank, pt[i].ranks);
        else if (first && (strcmp(wpk_model_json(f), wpk_model_json(first)) ||
                           strcmp(wpk_profile_json(f), wpk_profile_json(first)) ||
                           strcmp(wpk_provenance_json(f), wpk_provenance_json(first))))
            rc = wp_fail(e, WP_EVERIFY, "%s: model, profile or provenance differs from %s: not one build",
                         pt[i].wpk_path, wpk_path(first));
        if (!first) first = f;
        else wpk_close(f);
    }
    wpk_close(first);
    return rc;
}

static int cmp_pstr(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* The merged "loss" summary.  Each part records its own rank's weights
 * (wp_plan_loss_summary_rank), so the build's is their sum: lossy tensors
 * added up, families the sorted union -- what the single-machine convert
 * computes over every rank at once.  Parts must agree on having one. */
static int merge_loss(wp_manifest *m, const mpart *pt, int n, wp_err *e)
{
    for (int i = 1; i < n; i++)
        if (pt[i].m.has_loss != pt[0].m.has_loss)
            return wp_fail(e, WP_EVERIFY, "%s: manifest %s a \"loss\" summary and %s's %s", pt[i].dir,
                           pt[i].m.has_loss ? "has" : "lacks", pt[0].dir, pt[0].m.has_loss ? "does" : "does not");
    if (!pt[0].m.has_loss) return 0;
    size_t cap = 0;
    for (int i = 0; i < n; i++) cap += pt[i].m.nfamilies;
    m->families = wp_calloc(cap + 1, sizeof *m->families, e);
    if (!m->families) return WP_ENOMEM;
    m->has_loss = 1;
    for (int i = 0; i < n; i++) {
        m->lossy_tensors += pt[i].m.lossy_tensors;
        for (uint32_t k = 0; k < pt[i].m.nfamilies; k++) {
            int seen = 0;
            for (uint32_t j = 0; j < m->nfamilies && !seen; j++) seen = !strcmp(m->families[j], pt[i].m.families[k]);
            if (seen) continue;
            if (!(m->families[m->nfamilies] = wp_strdup(pt[i].m.families[k], e))) return WP_ENOMEM;
            m->nfamilies++;
        }
    }
    qsort(m->families, m->nfamilies, sizeof *m->families, cmp_pstr);
    m->lossless = m->lossy_tensors == 0;
    return 0;
}

/* Copy a part's .wpk into the build when it cannot be linked (another
 * filesystem).  The part was verified before, but it could change between
 * that check and this read, so the copy is checked as it is made: every
 * 64 MiB shard's SHA-256 against the part's manifest (f), and the size.  A
 * reflink (btrfs, xfs) shares the blocks without reading them; it is not
 * re-hashed: it is the file the check read, unless the part was replaced in
 * between, which `verify --deep` of the build would name.
 * 1 = reflinked, 2 = copied, or an error code. */
static int copy_file(const char *src, const char *dst, const wp_mfile *f, uint64_t shard, wp_err *e)
{
    int in = open(src, O_RDONLY | O_CLOEXEC);
    if (in < 0) return wp_fail_errno(e, "%s: cannot open", src);
    wp_out o;
    int rc = wp_out_open(&o, dst, e);
    if (rc) {
        close(in);
        return rc;
    }
    if (ioctl(o.fd, FICLONE, in) == 0) {
        close(in);
        rc = wp_out_commit(&o, e);
        return rc ? rc : 1;
    }
    size_t cap = 8u << 20;
    uint8_t *buf = wp_malloc(cap, e);
    wp_sha256 h = {0};
    rc = buf ? 0 : WP_ENOMEM;
    uint64_t off = 0, k = 0;
    while (!rc && off < f->size) {
        if (!h.ctx && (rc = wp_sha256_init(&h, e))) break;
        uint64_t end = (k + 1) * shard < f->size ? (k + 1) * shard : f->size;
        size_t want = end - off < cap ? (size_t)(end - off) : cap;
        ssize_t n = pread(in, buf, want, (off_t)off);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) {
            rc = wp_fail_errno(e, "%s: read failed", src);
            break;
        }
        if (n == 0) {
            rc = wp_fail(e, WP_EVERIFY, "%s: %llu bytes, its manifest says %llu: changed since it was checked", src,
                         (unsigned long long)off, (unsigned long long)f->size);
            break;
        }
        wp_sha256_update(&h, buf, (size_t)n);
        if ((rc = wp_out_write(&o, buf, (size_t)n, e))) break;
        off += (uint64_t)n;
        if (off == end) {
            uint8_t d[WP_SHA256_LEN];
            wp_sha256_final(&h, d);
            h.ctx = NULL;
            if (k >= f->nshards || memcmp(d, f->shards[k], WP_SHA256_LEN))
                rc = wp_fail(e, WP_EVERIFY, "%s: shard %llu does not match its manifest: changed since it was checked",
                             src, (unsigned long long)k);
            k++;
        }
    }
    char extra;
    if (!rc && pread(in, &extra, 1, (off_t)off) == 1)
        rc = wp_fail(e, WP_EVERIFY, "%s: longer than its manifest's %llu bytes: changed since it was checked", src,
                     (unsigned long long)f->size);
    if (h.ctx) wp_sha256_free(&h);
    free(buf);
    close(in);
    if (!rc) rc = wp_out_commit(&o, e);
    else wp_out_abort(&o);
    return rc ? rc : 2;
}

int wp_merge(const char *const *parts, int nparts, const char *out_dir, const wp_merge_opts *o, wp_merge_stats *st,
             wp_err *e)
{
    static const wp_merge_opts none;
    if (!o) o = &none;
    wp_merge_stats dummy;
    if (!st) st = &dummy;
    memset(st, 0, sizeof *st);
    double t0 = wp_now();
    if (nparts < 1) return wp_fail(e, WP_EUSAGE, "merge: no parts given");
    mpart *pt = calloc((size_t)nparts, sizeof *pt);
    if (!pt) return wp_oom(e, "merge");
    int rc = 0;
    for (int i = 0; i < nparts && !rc; i++) {
        pt[i].dir = parts[i];
        rc = read_part(&pt[i], e);
    }
    if (!rc) rc = check_cover(pt, nparts, e);
    for (int i = 0; i < nparts && !rc; i++) rc = check_part(&pt[i], o, st, e);
    if (!rc) rc = check_headers(pt, nparts, e);
    for (int i = 1; i < nparts && !rc; i++)
        if (pt[i].m.shard_size != pt[0].m.shard_size)
            rc = wp_fail(e, WP_EVERIFY, "%s: shard size %llu, %s has %llu", pt[i].dir,
                         (unsigned long long)pt[i].m.shard_size, pt[0].dir, (unsigned long long)pt[0].m.shard_size);

    /* the merged manifest: the parts' records, in canonical order */
    wp_manifest m;
    memset(&m, 0, sizeof m);
    if (!rc) {
        uint64_t nt = 0;
        for (int i = 0; i < nparts; i++) nt += pt[i].m.ntensors;
        m.version = 2;
        m.shard_size = pt[0].m.shard_size;
        m.files = wp_calloc((size_t)nparts, sizeof *m.files, e);
        m.tensors = wp_calloc((size_t)(nt ? nt : 1), sizeof *m.tensors, e);
        if (!m.files || !m.tensors) rc = WP_ENOMEM;
    }
    for (int i = 0; i < nparts && !rc; i++) {
        if ((rc = wp_mfile_copy(&m.files[m.nfiles], &pt[i].m.files[0], e))) break;
        st->bytes += pt[i].m.files[0].size;
        for (uint64_t k = 0; k < pt[i].m.ntensors && !rc; k++) {
            wp_mtensor *t = &m.tensors[m.ntensors];
            *t = pt[i].m.tensors[k];
            t->file = m.nfiles;
            if (!(t->name = wp_strdup(pt[i].m.tensors[k].name, e))) rc = WP_ENOMEM;
            else m.ntensors++;
        }
        m.nfiles++;
    }
    if (!rc) rc = merge_loss(&m, pt, nparts, e);
    if (!rc) rc = wp_manifest_finish(&m, e);

    wp_outdir od;
    memset(&od, 0, sizeof od);
    int began = 0;
    if (!rc) {
        rc = wp_outdir_begin(&od, out_dir, &(wp_outdir_opts){.force = o->force, .kind = WP_OUTDIR_BUILD}, e);
        began = !rc;
    }
    const char *tmp = began ? wp_outdir_tmp(&od) : NULL;
    for (int i = 0; i < nparts && !rc; i++) {
        char dst[4096];
        if (wp_path_join(dst, sizeof dst, tmp, file_of(&pt[i], pt[i].rank))) {
            rc = wp_fail(e, WP_EUSAGE, "%s: path too long", tmp);
            break;
        }
        if (wp_link(pt[i].wpk_path, dst) == 0) {
            st->linked++;
            continue;
        }
        if (errno != EXDEV && errno != EPERM && errno != EMLINK && errno != ENOTSUP) {
            rc = wp_fail_errno(e, "%s: cannot link into %s", pt[i].wpk_path, tmp);
            break;
        }
        int how = copy_file(pt[i].wpk_path, dst, &pt[i].m.files[0], m.shard_size, e);
        if (how < 0) rc = how;
        else if (how == 1) st->reflinked++;
        else st->copied++;
    }
    if (!rc) rc = wp_manifest_write(tmp, &m, e);
    if (!rc) rc = wp_outdir_commit(&od, e);
    else if (began) wp_outdir_abort(&od);
    if (!rc) memcpy(st->root, m.root, 32);
    st->ranks = nparts ? pt[0].ranks : 0;
    wp_manifest_free(&m);
    for (int i = 0; i < nparts; i++) {
        cJSON_Delete(pt[i].doc);
        wp_manifest_free(&pt[i].m);
    }
    free(pt);
    st->seconds = wp_now() - t0;
    return rc;
}
