/* test_hugepages.c — wpk_load_hugepages: the same bytes through the same
 * views whether huge pages were available or not, a one-line notice when
 * they were not, read-only memory either way. */
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include "format/wpk.h"
#include "tests/harness.h"
#include "tests/wpk_zoo.h"

/* Every view after loading shows the bytes the writer was given. */
static void check_views(wpk_file *f)
{
    wp_err e = {0};
    for (size_t i = 0; i < wpk_count(f); i++) {
        const wpk_tensor *t = wpk_tensor_at(f, i);
        if (!t->size) continue;
        uint8_t *want = malloc(t->size);
        wpkz_fill(t->name, want, t->size);
        CHECKF(memcmp(wpk_data(f, t), want, t->size) == 0, "%s differs after loading", t->name);
        free(want);
    }
    const wpk_tensor *w13 = wpk_find(f, "layers.0.ffn.experts.w13.weight");
    wp_qweight q;
    REQUIRE(wpk_qweight(f, w13, 2, &q, &e) == 0);
    CHECK_NEAR(q.global, 1.5, 0);
    CHECK(q.data == (const uint8_t *)wpk_data(f, w13) + 2 * w13->expert_stride);
}

static void load_and_check(int mode)
{
    wp_err e = {0};
    char p[512];
    snprintf(p, sizeof p, "%s/zoo.wpk", wpt_tmpdir());
    REQUIRE(wpkz_write(p, 0, 0, &e) == 0);
    wpk_file *f;
    REQUIRE(wpk_open(&f, p, &e) == 0);
    const void *before = wpk_data(f, wpk_tensor_at(f, 0));
    wpk_huge_kind kind;
    char notice[512];
    REQUIRE(wpk_load_hugepages(f, mode, &kind, notice, sizeof notice, &e) == 0);
    const void *after = wpk_data(f, wpk_tensor_at(f, 0));
    if (kind == WPK_HUGE_NONE) {
        /* The fallback: the plain mapping, and one line saying why. */
        CHECK(after == before);
        CHECK(notice[0] != 0 && strchr(notice, '\n') == NULL);
        CHECK_CONTAINS(notice, p);
        CHECK_CONTAINS(notice, "using the plain mapping");
        fprintf(stderr, "    (fallback taken: %s)\n", notice);
    } else {
        CHECK(after != before);
        CHECK(notice[0] == 0);
        CHECK(mode == WPK_HUGE_TRANSPARENT ? kind == WPK_HUGE_THP : kind != WPK_HUGE_THP);
        CHECK_EQ_INT((uintptr_t)after % (2u << 20), 0);   /* data region starts on a huge page */
        /* The copy is read-only like the mapping: a write must fault. */
        pid_t pid = fork();
        if (pid == 0) {
            signal(SIGSEGV, SIG_DFL);   /* not ASan's reporter: just die */
            *(volatile uint8_t *)after = 1;
            _exit(0);
        }
        int st;
        waitpid(pid, &st, 0);
        CHECK(WIFSIGNALED(st) && WTERMSIG(st) == SIGSEGV);
    }
    check_views(f);
    CHECK_EQ_INT(wpk_check_deep(f, 2, NULL, NULL, &e), 0);
    /* Loading twice replaces the first copy (no leak, same bytes). */
    REQUIRE(wpk_load_hugepages(f, mode, &kind, NULL, 0, &e) == 0);
    check_views(f);
    wpk_close(f);
}

/* Alone: other tests (run/verify --hugepages) draw on the same reserved pool,
 * and would turn the huge-page path into the fallback behind our back. */
TEST_EXCLUSIVE(format_hugepages_explicit_or_fallback) { load_and_check(WPK_HUGE_EXPLICIT); }
TEST(format_hugepages_transparent) { load_and_check(WPK_HUGE_TRANSPARENT); }

TEST(format_hugepages_empty_container)
{
    wp_err e = {0};
    char p[512];
    snprintf(p, sizeof p, "%s/empty.wpk", wpt_tmpdir());
    wpk_writer *w;
    REQUIRE(wpk_writer_open(&w, p, NULL, &e) == 0);
    REQUIRE(wpk_writer_commit(w, &e) == 0);
    wpk_file *f;
    REQUIRE(wpk_open(&f, p, &e) == 0);
    wpk_huge_kind kind = WPK_HUGE_THP;
    char notice[512];
    REQUIRE(wpk_load_hugepages(f, WPK_HUGE_EXPLICIT, &kind, notice, sizeof notice, &e) == 0);
    CHECK_EQ_INT(kind, WPK_HUGE_NONE);
    CHECK_CONTAINS(notice, "no tensor data");
    wpk_close(f);
    CHECK(!strcmp(wpk_huge_kind_name(WPK_HUGE_MAP_HUGETLB), "map_hugetlb"));
}
