/* test_house.c — guards of the code's layout (docs/architecture.md):
 * includes only run down the layers, and reshaping the code changes no byte
 * of any build. */
#include <sys/stat.h>

#include "tests/harness.h"

static char out[1 << 16];

static int put(const char *root, const char *rel, const char *text)
{
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/%s", root, rel);
    *strrchr(dir, '/') = 0;
    mkdir(root, 0755);
    mkdir(dir, 0755);
    return wpt_write_file(wpt_path("%s/%s", root, rel), text, strlen(text));
}

/* The checkout passes scripts/check-layers.sh, and the script does catch an
 * upward include and a reach into another folder's private header (run on a
 * small made-up tree). */
TEST(house_layers)
{
    int rc = wpt_run(out, sizeof out, "sh scripts/check-layers.sh");
    CHECKF(rc == 0, "check-layers: exit %d:\n%s", rc, out);

    char good[4096], up[4096], priv[4096];
    snprintf(good, sizeof good, "%s/good", wpt_tmpdir());
    snprintf(up, sizeof up, "%s/up", wpt_tmpdir());
    snprintf(priv, sizeof priv, "%s/priv", wpt_tmpdir());
    const char *roots[] = {good, up, priv};
    for (int i = 0; i < 3; i++) {
        REQUIRE(put(roots[i], "common/wp.h", "#include <stdio.h>\n") == 0);
        REQUIRE(put(roots[i], "runtime/internal.h", "#include \"common/wp.h\"\n") == 0);
        REQUIRE(put(roots[i], "runtime/model.c", "#include \"runtime/internal.h\"\n#include \"format/wpk.h\"\n") == 0);
        REQUIRE(put(roots[i], "format/wpk.h", "#include \"quant/quant.h\"\n") == 0);
        REQUIRE(put(roots[i], "cli/main.c", "#include \"runtime/runtime.h\"\n#include \"common/wp.h\"\n") == 0);
    }
    /* a well-layered tree passes */
    rc = wpt_run(out, sizeof out, "sh scripts/check-layers.sh %s", good);
    CHECKF(rc == 0 && out[0] == 0, "clean tree: exit %d:\n%s", rc, out);
    /* format/ including cli/ runs upward */
    REQUIRE(put(up, "format/wpk_read.c", "#include \"format/wpk.h\"\n#include \"cli/cli.h\"\n") == 0);
    rc = wpt_run(out, sizeof out, "sh scripts/check-layers.sh %s", up);
    CHECK_EQ_INT(rc, 1);
    CHECK_CONTAINS(out, "format/wpk_read.c");
    CHECK_CONTAINS(out, "cli is above format");
    CHECK(strstr(out, "runtime/model.c") == NULL);
    /* cli/ reaching into runtime's internal.h: downward, but private */
    REQUIRE(put(priv, "cli/cmd_run.c", "#include \"runtime/internal.h\"\n") == 0);
    rc = wpt_run(out, sizeof out, "sh scripts/check-layers.sh %s", priv);
    CHECK_EQ_INT(rc, 1);
    CHECK_CONTAINS(out, "cli/cmd_run.c");
    CHECK_CONTAINS(out, "private header");
}

/* One recipe per build of tests/golden/tiny-a-builds.sha256 (`SHA  ./NAME/FILE`). */
static const struct { const char *name, *args; } g_recipes[] = {
    {"reference", "--profile reference"},
    {"hopper", "--profile hopper"},
    {"blackwell", "--profile blackwell"},
    {"blackwell-nvfp4", "--profile blackwell-nvfp4"},
    {"bf16", "--profile bf16"},
    {"ref-ep2", "--ep 2"},
    {"hopper-fuse-w13", "--profile hopper --fuse-w13"},
};
enum { NRECIPES = sizeof g_recipes / sizeof *g_recipes };

typedef struct { char sha[65], path[512]; int seen; } entry;

/* Parses "SHA  ./PATH" lines; returns the count, -1 on a malformed line. */
static int parse_sums(char *text, entry *e, int cap)
{
    int n = 0;
    for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
        if (n == cap || strlen(line) < 68 || line[64] != ' ' || line[65] != ' ' || strncmp(line + 66, "./", 2) ||
            strlen(line + 66) >= sizeof e->path)
            return -1;
        memcpy(e[n].sha, line, 64);
        e[n].sha[64] = 0;
        strcpy(e[n].path, line + 66);
        e[n].seen = 0;
        n++;
    }
    return n;
}

/* Every golden build of tiny-a, converted afresh, is byte for byte what it
 * was: every file's SHA-256 matches, none is missing, none is extra. */
TEST(house_builds_byte_identical)
{
    uint8_t *gtext;
    size_t glen;
    REQUIRE(wpt_read_file("tests/golden/tiny-a-builds.sha256", &gtext, &glen) == 0);
    static entry want[256], got[256];
    int nwant = parse_sums((char *)gtext, want, 256);
    free(gtext);
    REQUIRE(nwant > 0);

    char dir[4096];
    snprintf(dir, sizeof dir, "%s/builds", wpt_tmpdir());
    REQUIRE(mkdir(dir, 0755) == 0);
    int made[NRECIPES] = {0};
    for (int i = 0; i < nwant; i++) {
        /* ./NAME/FILE -> NAME */
        char name[256];
        snprintf(name, sizeof name, "%s", want[i].path + 2);
        char *slash = strchr(name, '/');
        REQUIRE(slash);
        *slash = 0;
        int r = 0;
        while (r < NRECIPES && strcmp(g_recipes[r].name, name)) r++;
        CHECKF(r < NRECIPES, "golden build %s: no recipe for it in this test", name);
        if (r == NRECIPES || made[r]) continue;
        made[r] = 1;
        int rc = wpt_run(out, sizeof out, "%s convert %s/hf -o %s/%s %s", wpt_wpack(), WPT_TINY, dir, name,
                         g_recipes[r].args);
        CHECKF(rc == 0, "convert %s (%s): exit %d: %s", name, g_recipes[r].args, rc, out);
    }
    for (int r = 0; r < NRECIPES; r++) CHECKF(made[r], "recipe %s has no golden build", g_recipes[r].name);

    int rc = wpt_run(out, sizeof out, "cd %s && find . ! -type d | LC_ALL=C sort | xargs -r sha256sum", dir);
    REQUIRE(rc == 0);
    int ngot = parse_sums(out, got, 256);
    CHECKF(ngot >= 0, "unexpected sha256sum output: %s", out);
    REQUIRE(ngot >= 0);
    for (int i = 0; i < nwant; i++) {
        int k = 0;
        while (k < ngot && strcmp(got[k].path, want[i].path)) k++;
        if (k == ngot) {
            CHECKF(0, "missing: %s", want[i].path);
            continue;
        }
        got[k].seen = 1;
        CHECKF(!strcmp(got[k].sha, want[i].sha), "%s: sha256 %s, golden %s", want[i].path, got[k].sha, want[i].sha);
    }
    for (int k = 0; k < ngot; k++) CHECKF(got[k].seen, "extra file: %s", got[k].path);
}
