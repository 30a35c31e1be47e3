/* test_outdir.c — outputs written once (common/outdir.h, wp_out_create):
 * a free name is claimed, an existing target is refused unless force and
 * then replaced only when it is the caller's kind, a target that appears
 * while we write is left alone with our work kept beside it, and an abort
 * or a SIGTERM leaves no temporary behind.  Each case runs with renameat2
 * and again through the fallbacks (rename, link). */
#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/internal.h"
#include "common/outdir.h"
#include "tests/harness.h"

static int exists(const char *p)
{
    struct stat st;
    return lstat(p, &st) == 0;
}

/* The file's content as a string ("" if unreadable). */
static const char *slurp(const char *p)
{
    static char buf[4][256];
    static int k;
    char *b = buf[k++ % 4];
    b[0] = 0;
    uint8_t *d;
    size_t n;
    if (wpt_read_file(p, &d, &n) == 0) {
        snprintf(b, sizeof buf[0], "%.*s", (int)n, (const char *)d);
        free(d);
    }
    return b;
}

/* Entries of dir, sorted, one per line. */
static const char *ls(const char *dir)
{
    static char out[4096];
    wpt_run(out, sizeof out, "ls -A %s", dir);
    return out;
}

static int put(const char *path, const char *text) { return wpt_write_file(path, text, strlen(text)); }

/* Claim a free name: the temporary sits next to it, is named after it and
 * its owner, and is gone once the name is taken. */
static void claim_free(int fallback)
{
    wp_no_renameat2 = fallback;
    const char *t = wpt_tmpdir();
    char target[4096], prefix[256];
    snprintf(target, sizeof target, "%s/out", t);
    snprintf(prefix, sizeof prefix, ".out.tmp.%s.", wp_self_tag());
    CHECKF(!strncmp(wp_self_tag(), wpt_path("%ld-", (long)getpid()), strlen(wpt_path("%ld-", (long)getpid()))),
           "owner tag %s", wp_self_tag());
    wp_outdir d;
    wp_err e = {0};
    REQUIRE(wp_outdir_begin(&d, wpt_path("%s/", target), NULL, &e) == 0);   /* "out/" names "out" */
    const char *tmp = wp_outdir_tmp(&d);
    CHECKF(!strncmp(strrchr(tmp, '/') + 1, prefix, strlen(prefix)), "temp %s, expected %s*", tmp, prefix);
    struct stat st;
    CHECK(stat(tmp, &st) == 0 && S_ISDIR(st.st_mode) && (st.st_mode & 0777) == 0755);
    CHECK(!exists(target));
    REQUIRE(put(wpt_path("%s/a.txt", tmp), "new") == 0);
    REQUIRE(mkdir(wpt_path("%s/sub", tmp), 0755) == 0);
    REQUIRE(put(wpt_path("%s/sub/b.txt", tmp), "deep") == 0);
    REQUIRE(wp_outdir_commit(&d, &e) == 0);
    CHECK(!strcmp(slurp(wpt_path("%s/a.txt", target)), "new"));
    CHECK(!strcmp(slurp(wpt_path("%s/sub/b.txt", target)), "deep"));
    CHECK(!strcmp(wpt_hidden_names(t), ""));
    wp_outdir_abort(&d);   /* after commit: nothing to do */
    CHECK(exists(target));
    CHECK_EQ_INT(wp_outdir_commit(&d, &e), WP_EUSAGE);
}

TEST(common_outdir_claims_a_free_name)
{
    claim_free(0);
}

TEST(common_outdir_claims_a_free_name_fallback)
{
    claim_free(1);
}

TEST(common_outdir_refuses_existing_target)
{
    const char *t = wpt_tmpdir();
    char dir[4096], file[4096], empty[4096];
    snprintf(dir, sizeof dir, "%s/build", t);
    snprintf(file, sizeof file, "%s/afile", t);
    snprintf(empty, sizeof empty, "%s/empty", t);
    REQUIRE(mkdir(dir, 0755) == 0 && put(wpt_path("%s/manifest.json", dir), "old") == 0);
    REQUIRE(put(file, "keep") == 0);
    REQUIRE(mkdir(empty, 0755) == 0);
    wp_outdir d;
    wp_err e = {0};
    /* even our own kind is not replaced without force */
    CHECK_EQ_INT(wp_outdir_begin(&d, dir, &(wp_outdir_opts){.kind = WP_OUTDIR_BUILD}, &e), WP_EEXIST);
    CHECK(!strcmp(e.msg, wpt_path("%s: already exists; not replaced", dir)));
    CHECK(!strcmp(e.setting, "force"));
    CHECK(!strcmp(slurp(wpt_path("%s/manifest.json", dir)), "old"));
    wp_err_clear(&e);
    CHECK_EQ_INT(wp_outdir_begin(&d, file, NULL, &e), WP_EEXIST);
    CHECK_CONTAINS(e.msg, "afile: already exists; not replaced");
    CHECK(!strcmp(slurp(file), "keep"));
    /* an empty directory: refused, unless take_empty */
    wp_err_clear(&e);
    CHECK_EQ_INT(wp_outdir_begin(&d, empty, NULL, &e), WP_EEXIST);
    wp_err_clear(&e);
    CHECK_EQ_INT(wp_outdir_begin(&d, dir, &(wp_outdir_opts){.take_empty = 1}, &e), WP_EEXIST);
    CHECK_CONTAINS(e.msg, "build: already exists (and is not empty); not replaced");
    REQUIRE(wp_outdir_begin(&d, empty, &(wp_outdir_opts){.take_empty = 1}, &e) == 0);
    REQUIRE(put(wpt_path("%s/x", wp_outdir_tmp(&d)), "x") == 0);
    REQUIRE(wp_outdir_commit(&d, &e) == 0);
    CHECK(!strcmp(slurp(wpt_path("%s/x", empty)), "x"));
    /* names that are not an output directory */
    CHECK_EQ_INT(wp_outdir_begin(&d, "/", NULL, &e), WP_EUSAGE);
    wp_err_clear(&e);
    CHECK_EQ_INT(wp_outdir_begin(&d, wpt_path("%s/..", t), NULL, &e), WP_EUSAGE);
    wp_err_clear(&e);
    CHECK_EQ_INT(wp_outdir_begin(&d, wpt_path("%s/nodir/out", t), NULL, &e), WP_EIO);
    CHECK_CONTAINS(e.msg, "cannot create the output directory in");
    CHECK(!strcmp(wpt_hidden_names(t), ""));
}

static int is_mine(const char *path, void *ud)
{
    return exists(wpt_path("%s/%s", path, (const char *)ud));
}

static void force_replaces(int fallback)
{
    wp_no_renameat2 = fallback;
    const char *t = wpt_tmpdir();
    char b[4096], other[4096], link[4096], ck[4096];
    snprintf(b, sizeof b, "%s/build", t);
    snprintf(other, sizeof other, "%s/photos", t);
    snprintf(link, sizeof link, "%s/link", t);
    snprintf(ck, sizeof ck, "%s/ck", t);
    REQUIRE(mkdir(b, 0755) == 0 && put(wpt_path("%s/old.wpk", b), "old") == 0);
    REQUIRE(mkdir(wpt_path("%s/sub", b), 0755) == 0 && put(wpt_path("%s/sub/x", b), "x") == 0);
    REQUIRE(mkdir(other, 0755) == 0 && put(wpt_path("%s/cat.jpg", other), "meow") == 0);
    REQUIRE(symlink(b, link) == 0);
    wp_outdir_opts fo = {.force = 1, .kind = WP_OUTDIR_BUILD};
    wp_outdir d;
    wp_err e = {0};
    /* a build is replaced whole: nothing of the old one remains */
    REQUIRE(wp_outdir_begin(&d, b, &fo, &e) == 0);
    REQUIRE(put(wpt_path("%s/model.wpk", wp_outdir_tmp(&d)), "new") == 0);
    REQUIRE(wp_outdir_commit(&d, &e) == 0);
    CHECK(!strcmp(ls(b), "model.wpk\n"));
    CHECK(!strcmp(slurp(wpt_path("%s/model.wpk", b)), "new"));
    /* a directory that is not a build, and a link to one, are refused */
    CHECK_EQ_INT(wp_outdir_begin(&d, other, &fo, &e), WP_EEXIST);
    CHECK(!strcmp(e.msg, wpt_path("%s: exists and is not a build directory (no manifest.json or .wpk in it); "
                                  "not replaced", other)));
    CHECK(!e.setting[0]);   /* force would not change it */
    CHECK(!strcmp(slurp(wpt_path("%s/cat.jpg", other)), "meow"));
    wp_err_clear(&e);
    CHECK_EQ_INT(wp_outdir_begin(&d, link, &fo, &e), WP_EEXIST);
    CHECK_CONTAINS(e.msg, "link: exists and is a symbolic link, not a directory; not replaced");
    /* a checkpoint needs config.json and a .safetensors */
    REQUIRE(mkdir(ck, 0755) == 0 && put(wpt_path("%s/config.json", ck), "{}") == 0);
    wp_err_clear(&e);
    wp_outdir_opts co = {.force = 1, .kind = WP_OUTDIR_CHECKPOINT};
    CHECK_EQ_INT(wp_outdir_begin(&d, ck, &co, &e), WP_EEXIST);
    CHECK_CONTAINS(e.msg, "is not a checkpoint (no config.json and .safetensors in it)");
    REQUIRE(put(wpt_path("%s/model.safetensors", ck), "st") == 0);
    REQUIRE(wp_outdir_begin(&d, ck, &co, &e) == 0);
    REQUIRE(put(wpt_path("%s/config.json", wp_outdir_tmp(&d)), "new") == 0);
    REQUIRE(wp_outdir_commit(&d, &e) == 0);
    CHECK(!strcmp(ls(ck), "config.json\n"));
    /* the caller's own recogniser */
    wp_outdir_opts mo = {.force = 1, .is_own = is_mine, .ud = "cat.jpg", .what = "a photo album"};
    REQUIRE(wp_outdir_begin(&d, other, &mo, &e) == 0);
    wp_outdir_abort(&d);
    mo.ud = "dog.jpg";
    wp_err_clear(&e);
    CHECK_EQ_INT(wp_outdir_begin(&d, other, &mo, &e), WP_EEXIST);
    CHECK_CONTAINS(e.msg, "photos: exists and is not a photo album; not replaced");
    /* what was refused is untouched, and no temporary is left */
    CHECK(!strcmp(ls(other), "cat.jpg\n"));
    CHECK(!strcmp(wpt_hidden_names(t), ""));
}

TEST(common_outdir_force_replaces_only_its_kind)
{
    force_replaces(0);
}

TEST(common_outdir_force_replaces_only_its_kind_fallback)
{
    force_replaces(1);
}

/* Something takes the name between begin and commit: it is left alone, the
 * finished work stays under its temporary name and the message says where. */
static void target_appears(int fallback)
{
    wp_no_renameat2 = fallback;
    const char *t = wpt_tmpdir();
    char target[4096];
    snprintf(target, sizeof target, "%s/out", t);
    wp_outdir d;
    wp_err e = {0};
    REQUIRE(wp_outdir_begin(&d, target, &(wp_outdir_opts){.kind = WP_OUTDIR_BUILD}, &e) == 0);
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s", wp_outdir_tmp(&d));
    REQUIRE(put(wpt_path("%s/model.wpk", tmp), "finished") == 0);
    REQUIRE(mkdir(target, 0755) == 0 && put(wpt_path("%s/theirs", target), "theirs") == 0);
    CHECK_EQ_INT(wp_outdir_commit(&d, &e), WP_EEXIST);
    /* kept as .out.kept.<owner>.XXXXXX: the same suffix, out of the sweeps' way */
    char kept[4096];
    snprintf(kept, sizeof kept, "%s", tmp);
    char *k = strstr(strrchr(kept, '/'), ".tmp.");
    REQUIRE(k);
    snprintf(k, sizeof kept - (size_t)(k - kept), ".kept.%s", strstr(strrchr(tmp, '/'), ".tmp.") + 5);
    CHECK(!strcmp(e.msg, wpt_path("%s: appeared while the output was being written; not replaced; the finished "
                                  "output is kept in %s", target, kept)));
    CHECK(!strcmp(e.setting, "force"));
    CHECK(!strcmp(ls(target), "theirs\n"));
    CHECK(!strcmp(slurp(wpt_path("%s/model.wpk", kept)), "finished"));
    CHECK(!exists(tmp));
    wp_outdir_abort(&d);   /* the kept work is not the object's any more */
    CHECK(exists(kept));
    /* a sweep leaves it alone, even once its owner is gone */
    wp_reclaim r;
    CHECK_EQ_INT(wp_sweep(t, 0, NULL, NULL, &r, &e), 0);
    CHECK(exists(kept) && r.entries == 0);
    /* an empty directory that appears is not ours to take either (with
     * renameat2; plain rename() would replace it: the fallback's limit) */
    if (!fallback) {
        char t2[4096];
        snprintf(t2, sizeof t2, "%s/out2", t);
        REQUIRE(wp_outdir_begin(&d, t2, NULL, &e) == 0);
        REQUIRE(mkdir(t2, 0755) == 0);
        wp_err_clear(&e);
        CHECK_EQ_INT(wp_outdir_commit(&d, &e), WP_EEXIST);
        CHECK(!strcmp(e.setting, "force"));
        CHECK(!strcmp(ls(t2), ""));
    }
    /* a file that appears, under force: not ours, not replaced */
    char t3[4096];
    snprintf(t3, sizeof t3, "%s/out3", t);
    REQUIRE(wp_outdir_begin(&d, t3, &(wp_outdir_opts){.force = 1, .kind = WP_OUTDIR_BUILD}, &e) == 0);
    REQUIRE(put(t3, "a file") == 0);
    wp_err_clear(&e);
    CHECK_EQ_INT(wp_outdir_commit(&d, &e), WP_EEXIST);
    CHECK_CONTAINS(e.msg, "out3: exists and is a file, not a directory; not replaced (it appeared while the output "
                          "was being written); the finished output is kept in");
    CHECK(!strcmp(slurp(t3), "a file"));
}

TEST(common_outdir_target_appearing_is_kept)
{
    target_appears(0);
}

TEST(common_outdir_target_appearing_is_kept_fallback)
{
    target_appears(1);
}

TEST(common_outdir_abort_leaves_nothing)
{
    const char *t = wpt_tmpdir();
    char outside[4096];
    snprintf(outside, sizeof outside, "%s/outside", t);
    REQUIRE(mkdir(outside, 0755) == 0 && put(wpt_path("%s/precious", outside), "p") == 0);
    wp_outdir d;
    wp_err e = {0};
    REQUIRE(wp_outdir_begin(&d, wpt_path("%s/out", t), NULL, &e) == 0);
    const char *tmp = wp_outdir_tmp(&d);
    /* a tree with a nested directory, a file without write permission, a
     * link to a directory outside and a link to a file outside */
    REQUIRE(mkdir(wpt_path("%s/a", tmp), 0755) == 0 && mkdir(wpt_path("%s/a/b", tmp), 0755) == 0);
    REQUIRE(put(wpt_path("%s/a/b/c", tmp), "c") == 0 && chmod(wpt_path("%s/a/b/c", tmp), 0400) == 0);
    REQUIRE(symlink(outside, wpt_path("%s/a/dirlink", tmp)) == 0);
    REQUIRE(symlink(wpt_path("%s/precious", outside), wpt_path("%s/filelink", tmp)) == 0);
    for (int i = 0; i < 300; i++)   /* more entries than one read of the directory */
        REQUIRE(put(wpt_path("%s/f%03d-with-a-longer-name", tmp, i), "f") == 0);
    wp_outdir_abort(&d);
    wp_outdir_abort(&d);   /* twice is fine */
    CHECK(!strcmp(wpt_hidden_names(t), ""));
    CHECK(!exists(wpt_path("%s/out", t)));
    CHECK(!strcmp(slurp(wpt_path("%s/precious", outside)), "p"));   /* links were not followed */
    /* wp_rm_tree on a link removes the link only */
    REQUIRE(symlink(outside, wpt_path("%s/l", t)) == 0);
    CHECK_EQ_INT(wp_rm_tree(wpt_path("%s/l", t)), 0);
    CHECK(!exists(wpt_path("%s/l", t)) && exists(wpt_path("%s/precious", outside)));
    CHECK_EQ_INT(wp_rm_tree(wpt_path("%s/none", t)), 0);
}

/* A child writing an output directory (or file) is killed with SIGTERM
 * halfway: it dies of the signal and nothing of its work remains. */
static void killed_mid_write(int dir)
{
    const char *t = wpt_tmpdir();
    int p[2];
    REQUIRE(pipe(p) == 0);
    pid_t pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
        close(p[0]);
        wp_cleanup_on_signals();
        wp_err e = {0};
        wp_outdir d;
        wp_out o;
        if (dir) {
            if (wp_outdir_begin(&d, wpt_path("%s/out", t), NULL, &e)) _exit(3);
            const char *tmp = wp_outdir_tmp(&d);
            if (mkdir(wpt_path("%s/sub", tmp), 0755) || put(wpt_path("%s/sub/half", tmp), "half")) _exit(4);
            /* a file being written inside, as the .wpk writer does */
            if (wp_out_open(&o, wpt_path("%s/model.wpk", tmp), &e) || wp_out_write(&o, "abc", 3, &e)) _exit(5);
        } else {
            if (wp_out_create(&o, wpt_path("%s/out.bin", t), 0, &e) || wp_out_write(&o, "abc", 3, &e)) _exit(6);
        }
        if (write(p[1], "r", 1) != 1) _exit(7);
        for (;;) pause();
    }
    close(p[1]);
    char c = 0;
    CHECK(read(p[0], &c, 1) == 1 && c == 'r');
    close(p[0]);
    CHECKF(strcmp(wpt_hidden_names(t), ""), "the child's temporary should exist while it runs");
    kill(pid, SIGTERM);
    int status = 0;
    REQUIRE(waitpid(pid, &status, 0) == pid);
    CHECKF(WIFSIGNALED(status) && WTERMSIG(status) == SIGTERM, "status 0x%x", status);
    CHECKF(!strcmp(wpt_hidden_names(t), ""), "left: %s", wpt_hidden_names(t));
    CHECK(!strcmp(ls(t), ""));
}

TEST(common_outdir_sigterm_removes_the_temporary)
{
    killed_mid_write(1);
}

TEST(common_outdir_wp_out_sigterm_removes_the_temporary)
{
    killed_mid_write(0);
}

static void out_noreplace(int fallback)
{
    wp_no_renameat2 = fallback;
    const char *t = wpt_tmpdir();
    char f[4096], g[4096];
    snprintf(f, sizeof f, "%s/report.json", t);
    snprintf(g, sizeof g, "%s/late.json", t);
    wp_err e = {0};
    wp_out o;
    /* a free name */
    REQUIRE(wp_write_file_create(f, "one", 3, 0, &e) == 0);
    CHECK(!strcmp(slurp(f), "one"));
    /* taken: refused up front, untouched */
    CHECK_EQ_INT(wp_write_file_create(f, "two", 3, 0, &e), WP_EEXIST);
    CHECK(!strcmp(e.msg, wpt_path("%s: already exists; not replaced", f)));
    CHECK(!strcmp(e.setting, "force"));
    CHECK(!strcmp(slurp(f), "one"));
    /* force replaces a file, never a directory */
    REQUIRE(wp_write_file_create(f, "two", 3, 1, &e) == 0);
    CHECK(!strcmp(slurp(f), "two"));
    REQUIRE(mkdir(wpt_path("%s/d", t), 0755) == 0);
    wp_err_clear(&e);
    CHECK_EQ_INT(wp_write_file_create(wpt_path("%s/d", t), "x", 1, 1, &e), WP_EEXIST);
    CHECK_CONTAINS(e.msg, "d: is a directory; not replaced");
    /* appears while being written: left alone, ours kept and named */
    REQUIRE(wp_out_create(&o, g, 0, &e) == 0);
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s", o.tmp);
    REQUIRE(wp_out_write(&o, "ours", 4, &e) == 0);
    REQUIRE(put(g, "theirs") == 0);
    wp_err_clear(&e);
    CHECK_EQ_INT(wp_out_commit(&o, &e), WP_EEXIST);
    char kept[4096];
    snprintf(kept, sizeof kept, "%s/.late.json.kept.%s", t, strstr(strrchr(tmp, '/'), ".tmp.") + 5);
    CHECK(!strcmp(e.msg, wpt_path("%s: appeared while it was being written; not replaced (the finished file is %s)", g, kept)));
    CHECK(!strcmp(slurp(g), "theirs"));
    CHECK(!strcmp(slurp(kept), "ours"));
    CHECK(!exists(tmp));
    wp_out_abort(&o);   /* safe, and the kept file stays */
    CHECK(exists(kept));
    /* wp_out_open still replaces silently (files wpack owns) */
    REQUIRE(wp_write_file_atomic(g, "mine", 4, &e) == 0);
    CHECK(!strcmp(slurp(g), "mine"));
}

TEST(common_outdir_wp_out_no_replace)
{
    out_noreplace(0);
}

TEST(common_outdir_wp_out_no_replace_fallback)
{
    out_noreplace(1);
}
