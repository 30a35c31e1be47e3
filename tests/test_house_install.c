/* test_install.c — `make install` into a DESTDIR gives a working command,
 * a man page that renders, a bash completion that completes, a library and
 * headers that a program can build against through pkg-config; `make
 * uninstall` takes every file away again.
 *
 * It re-enters the Makefile on the build under test (env WPT_MAKE_ARGS, set
 * by `make test`: the same BUILD and SAN), so nothing is rebuilt, and links
 * with WPT_CC / WPT_LDFLAGS (the sanitizers under SAN=1).  Everything it
 * writes is under its own scratch directory, so it runs beside other tests. */
#include <sys/stat.h>

#include "common/wp.h"
#include "tests/harness.h"

static char out[1 << 16];

static const char *env_or(const char *name, const char *dflt)
{
    const char *v = getenv(name);
    return v ? v : dflt;
}

static int is_file(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0 && S_ISREG(st.st_mode);
}

/* A make that does not think it is part of the `make test` running us. */
#define MAKE "env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL make --no-print-directory -s"

TEST(house_install_uninstall)
{
    const char *args = env_or("WPT_MAKE_ARGS", "");
    char d[2048], pre[4096];
    snprintf(d, sizeof d, "%s/dest", wpt_tmpdir());
    snprintf(pre, sizeof pre, "%s/usr/local", d);
    struct stat before, after;
    REQUIRE(stat(wpt_wpack(), &before) == 0);

    int rc = wpt_run(out, sizeof out, MAKE " install %s DESTDIR=%s PREFIX=/usr/local", args, d);
    CHECKF(rc == 0, "make install: exit %d: %s", rc, out);
    REQUIRE(rc == 0);
    /* the build under test was installed, not rebuilt */
    REQUIRE(stat(wpt_wpack(), &after) == 0);
    CHECKF(after.st_mtime == before.st_mtime, "make install rebuilt %s", wpt_wpack());

    const char *files[] = {"bin/wpack", "share/man/man1/wpack.1", "share/bash-completion/completions/wpack",
                           "lib/libwpack.a", "lib/pkgconfig/wpack.pc", "include/wpack/common/wp.h",
                           "include/wpack/format/wpk.h", "include/wpack/trust/manifest.h",
                           "include/wpack/runtime/runtime.h", "include/wpack/verify/parity.h"};
    for (size_t i = 0; i < sizeof files / sizeof *files; i++)
        CHECKF(is_file(wpt_path("%s/%s", pre, files[i])), "not installed: %s", files[i]);
    /* private headers stay private */
    const char *priv[] = {"runtime/internal.h", "hf/internal.h", "quant/quant_priv.h", "convert/convert_priv.h",
                          "format/wpk_internal.h"};
    for (size_t i = 0; i < sizeof priv / sizeof *priv; i++)
        CHECKF(!is_file(wpt_path("%s/include/wpack/%s", pre, priv[i])), "private header installed: %s", priv[i]);

    /* the command */
    rc = wpt_run(out, sizeof out, "%s/bin/wpack --version", pre);
    CHECK_EQ_INT(rc, 0);
    CHECK(!strncmp(out, "wpack " WP_VERSION "\nlibzstd ", strlen("wpack " WP_VERSION "\nlibzstd ")));
    CHECK_CONTAINS(out, "OpenSSL 3.");

    /* the man page: roff, and man renders it */
    uint8_t *page;
    size_t plen;
    REQUIRE(wpt_read_file(wpt_path("%s/share/man/man1/wpack.1", pre), &page, &plen) == 0);
    page = realloc(page, plen + 2);
    REQUIRE(page);
    page[plen] = 0;
    CHECKF(!strncmp((char *)page, ".TH", 3) || strstr((char *)page, "\n.TH "), "wpack.1 has no .TH line: %.200s",
           (char *)page);
    free(page);
    rc = wpt_run(out, sizeof out, "MANPAGER=cat MANWIDTH=100 man -l %s/share/man/man1/wpack.1", pre);
    CHECKF(rc == 0, "man -l: exit %d: %s", rc, out);
    CHECK_CONTAINS(out, "WPACK(1)");
    CHECK_CONTAINS(out, "NAME");
    CHECK_CONTAINS(out, "convert");
    CHECK_CONTAINS(out, "verify");

    /* the completion: bash accepts it, registers it for wpack, and the
     * command names complete */
    rc = wpt_run(out, sizeof out,
                 "bash -c '"
                 "[ -f /usr/share/bash-completion/bash_completion ] && . /usr/share/bash-completion/bash_completion; "
                 ". %s/share/bash-completion/completions/wpack || exit 3; "
                 "spec=$(complete -p wpack) || exit 4; "
                 "f=$(printf \"%%s\\n\" \"$spec\" | sed -n \"s/.* -F \\([^ ]*\\) .*/\\1/p\"); "
                 "[ -n \"$f\" ] || exit 5; "
                 "COMP_WORDS=(wpack conv); COMP_CWORD=1; COMP_LINE=\"wpack conv\"; COMP_POINT=10; "
                 "\"$f\" wpack conv wpack; printf \"%%s\\n\" \"${COMPREPLY[@]}\"'",
                 pre);
    CHECKF(rc == 0, "bash completion: exit %d: %s", rc, out);
    CHECKF(!strcmp(out, "convert\n"), "completing \"wpack conv\" gave: %s", out);

    /* pkg-config, then a program built against the installed library only */
    char pc[8192];
    rc = wpt_run(pc, sizeof pc,
                 "PKG_CONFIG_PATH=%s/lib/pkgconfig pkg-config --define-variable=prefix=%s --cflags --libs wpack", pre,
                 pre);
    CHECKF(rc == 0, "pkg-config: exit %d: %s", rc, pc);
    REQUIRE(rc == 0);
    pc[strcspn(pc, "\n")] = 0;
    CHECK_CONTAINS(pc, wpt_path("-I%s/include/wpack", pre));
    CHECK_CONTAINS(pc, wpt_path("-L%s/lib", pre));
    CHECK_CONTAINS(pc, "-lwpack");
    const char *prog = "#include <stdio.h>\n"
                       "#include \"common/wp.h\"\n"
                       "int main(void)\n"
                       "{\n"
                       "    uint8_t d[WP_SHA256_LEN];\n"
                       "    wp_err e = {0};\n"
                       "    if (wp_sha256_buf(\"abc\", 3, d, &e)) return 1;\n"
                       "    for (int i = 0; i < WP_SHA256_LEN; i++) printf(\"%02x\", d[i]);\n"
                       "    printf(\" %s\\n\", WP_VERSION);\n"
                       "    return 0;\n"
                       "}\n";
    REQUIRE(wpt_write_file(wpt_path("%s/prog.c", wpt_tmpdir()), prog, strlen(prog)) == 0);
    /* from the scratch directory: the checkout's own headers are out of reach */
    rc = wpt_run(out, sizeof out, "cd %s && %s %s -std=c11 -o prog prog.c %s && ./prog", wpt_tmpdir(),
                 env_or("WPT_CC", "cc"), env_or("WPT_LDFLAGS", ""), pc);
    CHECKF(rc == 0, "building against the installed library: exit %d: %s", rc, out);
    CHECK(!strcmp(out, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad " WP_VERSION "\n"));

    /* uninstall: no file left, at most empty directories */
    rc = wpt_run(out, sizeof out, MAKE " uninstall %s DESTDIR=%s PREFIX=/usr/local", args, d);
    CHECKF(rc == 0, "make uninstall: exit %d: %s", rc, out);
    rc = wpt_run(out, sizeof out, "find %s ! -type d", d);
    CHECK_EQ_INT(rc, 0);
    CHECKF(out[0] == 0, "left after uninstall: %s", out);
    struct stat st;
    CHECKF(stat(wpt_path("%s/include/wpack", pre), &st) != 0, "include/wpack/ is still there");
}
