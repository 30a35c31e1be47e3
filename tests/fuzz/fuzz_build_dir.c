/*
 * fuzz_build_dir.c — the build directory walk: what verify, run, pack and
 * inspect see when they open a build (trust/build.h, wp_list_files,
 * wp_verify_build, wpz_pack) on a directory the input describes.  The input
 * is a little program; each step takes a few bytes:
 *
 *   op % 8:  0 file of input bytes   1 file from an asset   2 enter a new
 *            subdirectory   3 leave it   4 symlink   5 FIFO   6 device
 *            node (char 1:3 or 1:5, where the kernel allows)   7 chmod 000
 *   then a name (byte % 12 of: manifest.json manifest.sig
 *   manifest.dsse.json a.wpk b.wpk x.bin .hidden sub model.wpk
 *   manifest.json.tmp zz LONG) and what the op needs (a size and bytes, an
 *   asset index, a symlink target: another name, "..", ".", itself,
 *   /dev/zero, /etc/passwd, a missing file, a directory loop).
 *
 * Assets are a valid small build made once at start (a .wpk, its
 * manifest.json and manifest.sig by the fuzz key), so the walk reaches the
 * later phases.  Symlinks, FIFOs and devices must be refused or skipped in
 * one line: nothing may hang on a FIFO, follow a link out of the build, or
 * read a device without bound.  The tree is removed after every run.
 * Seeds: tests/fuzz/corpus/build_dir/.
 */
#include <sys/stat.h>
#include <cjson/cJSON.h>

#include "format/pack.h"
#include "format/wpk.h"
#include "tests/fuzz/fuzz_keys.h"
#include "tests/fuzz/fuzz_util.h"
#include "trust/build.h"
#include "trust/manifest.h"
#include "trust/trust.h"

#include <sys/sysmacros.h>

#define LONG_NAME "a-very-long-name-0123456789012345678901234567890123456789" \
                  "01234567890123456789012345678901234567890123456789.wpk"
static const char *const names[12] = {"manifest.json", "manifest.sig", "manifest.dsse.json", "a.wpk",
                                      "b.wpk", "x.bin", ".hidden", "sub", "model.wpk",
                                      "manifest.json.tmp", "zz", LONG_NAME};

typedef struct asset {
    uint8_t *p;
    size_t n;
} asset;
static asset assets[3];   /* model.wpk, manifest.json, manifest.sig of a valid build */

static void slurp(const char *path, asset *a)
{
    FILE *f = fopen(path, "rb");
    if (!f) abort();
    fseek(f, 0, SEEK_END);
    a->n = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    a->p = malloc(a->n ? a->n : 1);
    if (!a->p || fread(a->p, 1, a->n, f) != a->n) abort();
    fclose(f);
}

static void make_assets(void)
{
    const char *d = fz_path("asset-build");
    char p[1100];
    wp_err e = {0};
    if (mkdir(d, 0755)) abort();
    snprintf(p, sizeof p, "%s/model.wpk", d);
    wpk_writer *w;
    wpk_decl t = {.name = "w.weight", .kind = WPK_KIND_ENC, .enc = WP_ENC_BF16, .ndim = 2, .shape = {2, 4}};
    size_t id;
    uint16_t v[8] = {0x3f80, 0x4000, 0x4040, 0x4080, 0x3f80, 0x4000, 0x4040, 0x4080};
    if (wpk_writer_open(&w, p, NULL, &e) || wpk_writer_add(w, &t, &id, &e) || wpk_writer_layout(w, &e) ||
        wpk_writer_write(w, id, 0, v, sizeof v, &e) || wpk_writer_commit(w, &e))
        abort();
    if (wp_manifest_create(d, 1, NULL, NULL, NULL, &e)) abort();
    slurp(p, &assets[0]);
    snprintf(p, sizeof p, "%s/manifest.json", d);
    slurp(p, &assets[1]);
    wp_key *k = NULL;
    char *doc = NULL;
    size_t dn = 0;
    snprintf(p, sizeof p, "%s/key.pem", d);
    fz_write(p, FZ_ED25519_PRIV, strlen(FZ_ED25519_PRIV));
    if (chmod(p, 0600)) abort();   /* a private key open to others is refused */
    if (wp_key_load_private(p, &k, &e) || wp_sig_make(k, assets[1].p, assets[1].n, &doc, &dn, &e)) abort();
    assets[2].p = (uint8_t *)doc, assets[2].n = dn;
    wp_key_free(k);
    fz_write(fz_path("fuzz.pub.pem"), FZ_ED25519_PUB, strlen(FZ_ED25519_PUB));
    fz_rm_tree(d);
}

typedef struct prog {
    const uint8_t *p;
    size_t n, at;
} prog;
static unsigned next(prog *g) { return g->at < g->n ? g->p[g->at++] : 0; }

/* Build the tree under root from the program; depth-limited. */
static void build_tree(prog *g, const char *root)
{
    char cur[8][1400];
    int depth = 0;
    snprintf(cur[0], sizeof cur[0], "%s", root);
    for (int steps = 0; g->at < g->n && steps < 64; steps++) {
        unsigned op = next(g) % 8;
        const char *nm = names[next(g) % 12];
        char path[1600];
        snprintf(path, sizeof path, "%s/%s", cur[depth], nm);
        switch (op) {
        case 0: {   /* file of input bytes */
            size_t len = next(g) * 4u;
            if (len > g->n - g->at) len = g->n - g->at;
            unlink(path);
            int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0644);
            if (fd >= 0) {
                if (len && write(fd, g->p + g->at, len) < 0) { /* a full disk is not a finding */ }
                close(fd);
            }
            g->at += len;
            break;
        }
        case 1: {   /* an asset, maybe with one byte flipped */
            const asset *a = &assets[next(g) % 3];
            unsigned flip = next(g);
            unlink(path);
            int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0644);
            if (fd >= 0) {
                if (write(fd, a->p, a->n) < 0) { /* ignored */ }
                if (flip && a->n) {
                    uint8_t b = (uint8_t)(a->p[(flip * 131u) % a->n] ^ flip);
                    if (pwrite(fd, &b, 1, (off_t)((flip * 131u) % a->n)) < 0) { /* ignored */ }
                }
                close(fd);
            }
            break;
        }
        case 2:     /* enter a new subdirectory */
            if (depth + 1 < 8 && (mkdir(path, 0755) == 0 || errno == EEXIST)) {
                depth++;
                snprintf(cur[depth], sizeof cur[depth], "%.1300s", path);
            }
            break;
        case 3:
            if (depth) depth--;
            break;
        case 4: {   /* symlink */
            static const char *const targets[] = {"..", ".", "/dev/zero", "/etc/passwd", "missing",
                                                  "manifest.json", "a.wpk", "sub", "../..", "/"};
            unsigned t = next(g) % 11;
            const char *to = t == 10 ? nm : targets[t];   /* 10: itself (a loop) */
            unlink(path);
            if (symlink(to, path) != 0) { /* ignored */ }
            break;
        }
        case 5:
            unlink(path);
            if (mkfifo(path, 0644) != 0) { /* ignored */ }
            break;
        case 6:
            unlink(path);
            if (mknod(path, S_IFCHR | 0644, makedev(1, next(g) % 2 ? 5 : 3)) != 0) { /* not allowed */ }
            break;
        case 7:
            if (chmod(path, 0) != 0) { /* ignored */ }
            break;
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!assets[0].p) make_assets();
    const char *dir = fz_path("build");
    const char *z = fz_path("build.wpkz");
    fz_rm_tree(dir);
    unlink(z);
    if (mkdir(dir, 0755)) abort();
    prog g = {data, size, 0};
    build_tree(&g, dir);

    wp_err e = {0};
    wp_strv files = {0};
    int rc = wp_list_files(dir, &files, &e);
    fz_check_refusal(rc, &e);
    wp_strv_free(&files);

    wp_build *b = NULL;
    wp_err_clear(&e);
    rc = wp_build_open(&b, dir, &e);
    fz_check_refusal(rc, &e);
    if (!rc) {
        const wp_strv *fl;
        const wp_manifest *m;
        size_t np = 0;
        wp_err_clear(&e);
        fz_check_refusal(wp_build_files(b, &fl, &e), &e);
        wp_err_clear(&e);
        fz_check_refusal(wp_build_manifest(b, &m, &e), &e);
        wp_err_clear(&e);
        rc = wp_build_parts(b, &np, &e);
        fz_check_refusal(rc, &e);
        for (size_t i = 0; !rc && i < np; i++) {
            wpk_file *f;
            wp_err_clear(&e);
            fz_check_refusal(wp_build_part(b, i, &f, &e), &e);
        }
        wp_build_close(b);
    }
    /* what `inspect BUILD` shows, on a fresh build object */
    b = NULL;
    wp_err_clear(&e);
    if (wp_build_open(&b, dir, &e) == 0) {
        wp_build_summary s;
        memset(&s, 0, sizeof s);
        rc = wp_build_summarise(b, &s, &e);
        fz_check_refusal(rc, &e);
        if (!rc) {
            cJSON *j = wp_build_summary_json(dir, &s);
            if (!j) fz_die("summary json", NULL);
            cJSON_Delete(j);
        }
        wp_build_summary_free(&s);
        wp_build_close(b);
    }

    wp_verify_report r;
    memset(&r, 0, sizeof r);
    wp_err_clear(&e);
    rc = wp_verify_build(dir, &(wp_verify_opts){.key_path = fz_path("fuzz.pub.pem"), .threads = 1}, &r, &e);
    fz_check_refusal(rc, &e);
    wp_verify_report_free(&r);

    wp_err_clear(&e);
    rc = wpz_pack(dir, z, &(wpz_opts){.level = 1, .chunk = 4096}, NULL, &e);
    fz_check_refusal(rc, &e);
    unlink(z);
    fz_rm_tree(dir);
    return 0;
}
