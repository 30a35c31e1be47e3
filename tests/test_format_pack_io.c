/* test_format_pack_io.c — pack and unpack's write paths (issue 14): the
 * archives of tiny-a's golden builds are byte for byte those main made
 * (tests/golden/tiny-a-wpkz.sha256) with every thread count; a corrupted
 * frame is refused by name, with no output, when frames are decoded in
 * parallel and written in 1 MiB pieces; and an injected fault or a kill
 * at any write or fsync of those paths leaves no partial output. */
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <zstd.h>

#include "format/pack.h"
#include "format/wpk.h"
#include "tests/harness.h"

/* sha256sum of a file, via the shell (the test's oracle is not wpack's). */
static int sha_of(const char *path, char hex[65])
{
    char out[512];
    if (wpt_run(out, sizeof out, "sha256sum '%s'", path) != 0 || strlen(out) < 64) return -1;
    memcpy(hex, out, 64);
    hex[64] = 0;
    return 0;
}

/* The pins: "SHA  ./PROFILE-lLEVEL.wpkz" lines; "# zstd N" is the libzstd
 * version they were made with (another zstd may compress differently). */
TEST(format_pack_io_tiny_a_archives_pinned)
{
    uint8_t *text;
    size_t len;
    REQUIRE(wpt_read_file("tests/golden/tiny-a-wpkz.sha256", &text, &len) == 0);
    unsigned pin_zstd = 0;
    const char *v = strstr((char *)text, "# zstd ");
    REQUIRE(v && sscanf(v, "# zstd %u", &pin_zstd) == 1);
    if (ZSTD_versionNumber() != pin_zstd) {
        printf("skipped: libzstd %u, the pins were made with %u\n", ZSTD_versionNumber(), pin_zstd);
        free(text);
        return;
    }
    char out[8192];
    int checked = 0, built[8] = {0};
    static const char *profiles[] = {"reference", "hopper", "blackwell-nvfp4"};
    for (char *line = strtok((char *)text, "\n"); line; line = strtok(NULL, "\n")) {
        if (line[0] == '#') continue;
        char sha[65], prof[64];
        int level;
        REQUIRE(strlen(line) > 70 && sscanf(line, "%64s", sha) == 1 && !strncmp(line + 64, "  ./", 4));
        /* PROFILE may hold '-': the level is after the last "-l" */
        const char *name = line + 68, *l = strstr(name, "-l");
        while (l && strstr(l + 1, "-l")) l = strstr(l + 1, "-l");
        REQUIRE(l && sscanf(l, "-l%d.wpkz", &level) == 1);
        snprintf(prof, sizeof prof, "%.*s", (int)(l - name), name);
        int p = 0;
        while (p < 3 && strcmp(profiles[p], prof)) p++;
        REQUIRE(p < 3);
        const char *b = wpt_path("%s/%s", wpt_tmpdir(), prof);
        char bdir[512];
        snprintf(bdir, sizeof bdir, "%s", b);
        if (!built[p]) {
            int rc = wpt_run(out, sizeof out, "%s convert %s/hf -o %s --profile %s -q", wpt_wpack(), WPT_TINY, bdir, prof);
            REQUIRE(rc == 0);
            built[p] = 1;
        }
        /* no workers, one, two, three: the same bytes, those main made */
        for (int t = 0; t <= 3; t++) {
            char z[512], got[65];
            snprintf(z, sizeof z, "%s/%s-t%d.wpkz", wpt_tmpdir(), name, t);
            int rc = wpt_run(out, sizeof out, "%s pack %s -o %s -l %d -t %d -q", wpt_wpack(), bdir, z, level, t);
            CHECKF(rc == 0, "pack %s -l %d -t %d: exit %d: %s", prof, level, t, rc, out);
            REQUIRE(sha_of(z, got) == 0);
            CHECKF(!strcmp(got, sha), "%s with %d threads: sha256 %s, main made %s", name, t, got, sha);
            checked++;
            /* the archive unpacks to the build, with the parallel decoder */
            if (t == 2) {
                rc = wpt_run(out, sizeof out, "%s unpack %s -o %s/r-%s -t 2 -q && diff -r %s %s/r-%s",
                             wpt_wpack(), z, wpt_tmpdir(), name, bdir, wpt_tmpdir(), name);
                CHECKF(rc == 0, "unpack of %s: exit %d: %s", name, rc, out);
            }
        }
    }
    CHECK_EQ_INT(checked, 6 * 4);
    free(text);
}

/* A build whose frames are several 1 MiB write pieces: model.wpk with two
 * bf16 tensors of incompressible bytes (a xorshift stream, so compressed
 * frames are as large as raw ones; 5 MiB and 2 MiB), and a manifest. */
static int make_noise_build(const char *dir)
{
    if (mkdir(dir, 0755)) return -1;
    size_t n = (size_t)5 << 20;
    uint8_t *p = malloc(n);
    if (!p) return -1;
    uint64_t x = 0x9E3779B97F4A7C15ull;
    for (size_t i = 0; i < n; i += 8) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        memcpy(p + i, &x, 8);
    }
    wp_err e = {0};
    wpk_writer *w;
    int rc = wpk_writer_open(&w, wpt_path("%s/model.wpk", dir), &(wpk_opts){0}, &e);
    wpk_decl a = {.name = "a.weight", .kind = WPK_KIND_ENC, .enc = WP_ENC_BF16, .ndim = 2, .shape = {1280, 2048}};
    wpk_decl b = {.name = "b.weight", .kind = WPK_KIND_ENC, .enc = WP_ENC_BF16, .ndim = 2, .shape = {512, 2048}};
    size_t ia, ib;
    if (!rc) rc = wpk_writer_add(w, &a, &ia, &e);
    if (!rc) rc = wpk_writer_add(w, &b, &ib, &e);
    if (!rc) rc = wpk_writer_layout(w, &e);
    if (!rc) rc = wpk_writer_write(w, ia, 0, p, n, &e);
    if (!rc) rc = wpk_writer_write(w, ib, 0, p + 1000, (size_t)2 << 20, &e);
    if (!rc) rc = wpk_writer_commit(w, &e);
    else if (w) wpk_writer_abort(w);
    free(p);
    if (!rc) rc = wpt_write_file(wpt_path("%s/manifest.json", dir), "{}\n", 3);
    return rc;
}

/* Frame k's compressed offset, from the index (docs/format.md §3.2). */
static uint64_t frame_offset(const uint8_t *a, size_t n, uint64_t k, uint64_t *count)
{
    uint64_t io, nf32 = 0, nt32 = 0;
    memcpy(&io, a + n - 64, 8);
    uint32_t nf, nt;
    memcpy(&nf, a + io, 4);
    memcpy(&nt, a + io + 4, 4);
    nf32 = nf, nt32 = nt;
    memcpy(count, a + io + 8, 8);
    uint64_t off;
    memcpy(&off, a + io + 64 + 96 * nf32 + 96 * nt32 + 32 * k, 8);
    return off;
}

TEST(format_pack_io_corrupt_frame_refused_by_name)
{
    char b[512], z[512], o[512];
    snprintf(b, sizeof b, "%s/build", wpt_tmpdir());
    snprintf(z, sizeof z, "%s/n.wpkz", wpt_tmpdir());
    snprintf(o, sizeof o, "%s/out", wpt_tmpdir());
    REQUIRE(make_noise_build(b) == 0);
    wp_err e = {0};
    /* 2 MiB frames, files in name order: manifest.json (frame 0), model.wpk's
     * header (1), a.weight (2, 3, 4), b.weight (5) */
    REQUIRE(wpz_pack(b, z, &(wpz_opts){.threads = 2, .chunk = 2u << 20}, NULL, &e) == 0);
    uint8_t *a;
    size_t n;
    REQUIRE(wpt_read_file(z, &a, &n) == 0);
    uint64_t frames, at[6];
    for (uint64_t k = 0; k < 6; k++) at[k] = frame_offset(a, n, k, &frames);
    REQUIRE(frames == 6);
    /* the tensors' frames in turn: the last of a.weight after two good ones
     * were written, b.weight's after all of a's */
    for (uint64_t k = 2; k < 6; k++) {
        uint8_t *m = malloc(n);
        REQUIRE(m);
        memcpy(m, a, n);
        m[at[k] + 100000] ^= 0x10;   /* inside the frame's compressed blocks */
        const char *bad = wpt_path("%s/bad%llu.wpkz", wpt_tmpdir(), (unsigned long long)k);
        char badp[512];
        snprintf(badp, sizeof badp, "%s", bad);
        REQUIRE(wpt_write_file(badp, m, n) == 0);
        free(m);
        char want[128];
        snprintf(want, sizeof want, ": frame %llu (bytes [%llu, ", (unsigned long long)k, (unsigned long long)at[k]);
        for (int t = 0; t <= 2; t += 2) {
            wp_err_clear(&e);
            CHECK_EQ_INT(wpz_unpack(badp, o, &(wpz_opts){.threads = t}, NULL, &e), WP_EVERIFY);
            CHECK_CONTAINS(e.msg, badp);
            CHECK_CONTAINS(e.msg, want);
            CHECKF(strchr(e.msg, '\n') == NULL, "not one line: %s", e.msg);
            CHECKF(access(o, F_OK) != 0, "frame %llu, %d threads: output exists after a failure", (unsigned long long)k, t);
            CHECKF(!*wpt_hidden_names(wpt_tmpdir()), "frame %llu, %d threads: left %s", (unsigned long long)k, t,
                   wpt_hidden_names(wpt_tmpdir()));
        }
        /* the CLI: exit 1 (the check ran and failed), one line, no output */
        char out[4096];
        int rc = wpt_run(out, sizeof out, "%s unpack %s -o %s -t 2", wpt_wpack(), badp, o);
        CHECK_EQ_INT(rc, 1);
        CHECK_CONTAINS(out, want);
        CHECK(access(o, F_OK) != 0);
    }
    /* the untouched archive restores the build */
    wp_err_clear(&e);
    REQUIRE(wpz_unpack(z, o, &(wpz_opts){.threads = 2}, NULL, &e) == 0);
    char out[4096];
    CHECK_EQ_INT(wpt_run(out, sizeof out, "diff -r %s %s", b, o), 0);
    free(a);
}

/* The steps of kind OP a clean run of CMD takes (WPACK_FAULT_LOG: "N OP
 * PATH" per step): into idx (1-based among OP's steps) those that must
 * fail the command (before the output is named); how many, -1 on error. */
static int temp_steps(const char *cmd, const char *op, int *idx, int cap)
{
    char out[16384], logp[512];
    snprintf(logp, sizeof logp, "%s/steps.log", wpt_tmpdir());
    unlink(logp);
    if (wpt_run(out, sizeof out, "WPACK_FAULT_LOG=%s %s", logp, cmd) != 0) return -1;
    /* every write is to a temporary; the fsyncs that count are a file's,
     * right after its writes (directory fsyncs are best effort, common/) */
    if (wpt_run(out, sizeof out,
                "awk '$2 == \"%s\" { n++; if ($2 == \"write\" || prev == \"write\" || prev == \"create\") print n } "
                "{ prev = $2 }' %s", op, logp) != 0)
        return -1;
    unlink(logp);
    int n = 0;
    for (char *l = strtok(out, "\n"); l && n < cap; l = strtok(NULL, "\n")) idx[n++] = atoi(l);
    return n;
}

/* Every write and fsync of pack and unpack before the output is named (2
 * workers, frames several 1 MiB pieces long, write-behind on) made to
 * fail: exit 2, one line, no output, no temporary; the process killed
 * before a write: no output, and the next run sweeps the temporary and
 * makes the complete output.  Both ways of writing: around the page cache
 * (O_DIRECT from an 8 MiB buffer, from the first byte with
 * WPACK_DIRECT_OUT=1; the last block through the cache) and through it
 * (WPACK_DIRECT_OUT=0, in 1 MiB pieces). */
TEST(format_pack_io_faults_leave_no_partial_output)
{
    char b[512], out[8192];
    snprintf(b, sizeof b, "%s/build", wpt_tmpdir());
    REQUIRE(make_noise_build(b) == 0);
    const char *w = wpt_wpack(), *t = wpt_tmpdir();
    REQUIRE(wpt_run(out, sizeof out, "%s pack %s -o %s/good.wpkz -t 2 -q", w, b, t) == 0);
    char cmds[2][2048], outs[2][600], wdir[512];
    snprintf(wdir, sizeof wdir, "%s/w", t);
    snprintf(outs[0], sizeof outs[0], "%s/p.wpkz", wdir);
    snprintf(outs[1], sizeof outs[1], "%s/u", wdir);
    REQUIRE(mkdir(wdir, 0755) == 0);
    for (int dm = 0; dm < 2; dm++)
    for (int c = 0; c < 2; c++) {
        const char *env = dm ? "WPACK_DIRECT_OUT=0 " : "WPACK_DIRECT_OUT=1 ";
        snprintf(cmds[0], sizeof cmds[0], "%s%s pack %s -o %s -t 2 -q", env, w, b, outs[0]);
        snprintf(cmds[1], sizeof cmds[1], "%s%s unpack %s/good.wpkz -o %s -t 2 -q", env, w, t, outs[1]);
        static const char *ops[] = {"write", "fsync"};
        int writes = 0;
        for (int op = 0; op < 2; op++) {
            int idx[256];
            REQUIRE(wpt_run(out, sizeof out, "rm -rf %s", outs[c]) == 0);
            int steps = temp_steps(cmds[c], ops[op], idx, 256);
            REQUIRE(steps > 0);
            if (op == 0) {
                /* 7 MiB of incompressible frames: through the page cache in
                 * 1 MiB pieces; around it, the aligned part and the last block */
                CHECKF(steps >= (dm ? 7 : 2), "%s: %d writes: not the %s", cmds[c], steps,
                       dm ? "1 MiB pieces" : "aligned part and last block");
                writes = idx[steps - 1];
            } else {
                CHECKF(steps == (c ? 2 : 1), "%s: %d file fsyncs", cmds[c], steps);   /* the archive; the two files */
            }
            for (int i = 0; i < steps; i++) {
                int k = idx[i];
                REQUIRE(wpt_run(out, sizeof out, "rm -rf %s", outs[c]) == 0);
                int rc = wpt_run(out, sizeof out, "WPACK_FAULT=%s:%d %s", ops[op], k, cmds[c]);
                CHECKF(rc == 2, "%s at %s %d: exit %d: %s", cmds[c], ops[op], k, rc, out);
                CHECKF(strchr(out, '\n') == strrchr(out, '\n'), "%s at %s %d: not one line: %s", cmds[c], ops[op], k, out);
                CHECKF(access(outs[c], F_OK) != 0, "%s at %s %d: output exists", cmds[c], ops[op], k);
                CHECKF(!*wpt_hidden_names(wdir), "%s at %s %d: left %s", cmds[c], ops[op], k, wpt_hidden_names(wdir));
            }
        }
        /* killed at the middle write: no output; the next run sweeps the
         * temporary and makes the whole output */
        REQUIRE(wpt_run(out, sizeof out, "rm -rf %s", outs[c]) == 0);
        int rc = wpt_run(out, sizeof out, "WPACK_FAULT=write:%d:kill %s", writes / 2, cmds[c]);
        CHECK_EQ_INT(rc, 128 + SIGKILL);
        CHECK(access(outs[c], F_OK) != 0);
        CHECK(*wpt_hidden_names(wdir));   /* what a SIGKILL leaves */
        rc = wpt_run(out, sizeof out, "%s", cmds[c]);
        CHECKF(rc == 0, "%s after a kill: exit %d: %s", cmds[c], rc, out);
        CHECKF(!*wpt_hidden_names(wdir), "after the rerun: left %s", wpt_hidden_names(wdir));
        /* what the reruns made (pack's, then unpack's) is complete, either way of writing */
        if (c == 1)
            CHECKF(wpt_run(out, sizeof out, "cmp %s %s/good.wpkz && diff -r %s %s", outs[0], t, b, outs[1]) == 0,
                   "%s: %s", env, out);
    }
}
