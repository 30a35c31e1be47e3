/*
 * fuzz_digests.c — the digests file of `wpack verify-source` (trust/source.c:
 * {"files": [{"path", "sha256", "size"?}], "model"?, "revision"?}).  The
 * input is the digests file; the checkpoint beside it is fixed: two small
 * files (one in a subdirectory), a symlink to one, a symlink to /dev/zero,
 * a symlink out of the directory, a directory and a FIFO, so listed paths
 * can name every kind of thing.  Nothing may hang on the FIFO or read the
 * device without bound; every listed file gets one status.  Seeds:
 * tests/fuzz/corpus/digests/ (data/'s Flash digests file cut down,
 * hand-made cases).
 */
#include "tests/fuzz/fuzz_util.h"
#include "trust/trust.h"

static const char *ckpt(void)
{
    static char d[600];
    if (d[0]) return d;
    snprintf(d, sizeof d, "%s", fz_path("ckpt"));
    char p[700];
    if (mkdir(d, 0755)) abort();
    snprintf(p, sizeof p, "%s/a.safetensors", d);
    fz_write(p, "abcd", 4);
    snprintf(p, sizeof p, "%s/sub", d);
    if (mkdir(p, 0755)) abort();
    snprintf(p, sizeof p, "%s/sub/b.json", d);
    fz_write(p, "{}\n", 3);
    snprintf(p, sizeof p, "%s/link.safetensors", d);
    if (symlink("a.safetensors", p)) abort();
    snprintf(p, sizeof p, "%s/zero.safetensors", d);
    if (symlink("/dev/zero", p)) abort();
    snprintf(p, sizeof p, "%s/out.json", d);
    if (symlink("../../../../../../../../etc/hostname", p)) abort();
    snprintf(p, sizeof p, "%s/dir.safetensors", d);
    if (mkdir(p, 0755)) abort();
    snprintf(p, sizeof p, "%s/fifo.safetensors", d);
    if (mkfifo(p, 0644)) abort();
    return d;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *dir = ckpt();
    const char *dg = fz_path("digests.json");
    fz_write(dg, data, size);
    wp_err e = {0};
    wp_source_report r;
    memset(&r, 0, sizeof r);
    int rc = wp_verify_source(dir, dg, 1, NULL, NULL, &r, &e);
    fz_check_refusal(rc, &e);
    size_t bad = 0;
    for (size_t i = 0; i < r.nfiles; i++) {
        if (!r.files[i].path || !wp_src_status_name(r.files[i].status)) abort();
        bad += r.files[i].status != WP_SRC_OK;
    }
    if ((rc == 0 || rc == WP_EVERIFY) && bad != r.nbad) abort();
    wp_source_report_free(&r);
    return 0;
}
