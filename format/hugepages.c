/*
 * hugepages.c — load a container's tensor data into huge-page-backed memory
 * (format/wpk.h, wpk_load_hugepages).
 *
 * Why copy: a file mapping of a regular file is backed by 4 KiB page-cache
 * pages, so touching 100+ GB of weights costs one TLB entry per 4 KiB.
 * Anonymous huge pages (2 MiB) cut the TLB footprint 512x.  Explicit huge
 * pages need a reservation (root: /proc/sys/vm/nr_hugepages), so this is
 * best effort: when none are free, the container keeps its plain mapping and
 * the caller gets a one-line notice to print.  We look at HugePages_Free
 * before asking libhugetlbfs, because libhugetlbfs prints its own warning on
 * stderr when an allocation fails, and the library must not print.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <hugetlbfs.h>

#include "format/wpk_internal.h"

const char *wpk_huge_kind_name(wpk_huge_kind k)
{
    switch (k) {
    case WPK_HUGE_HUGETLBFS: return "hugetlbfs";
    case WPK_HUGE_MAP_HUGETLB: return "map_hugetlb";
    case WPK_HUGE_THP: return "thp";
    default: return "none";
    }
}

/* HugePages_Free from /proc/meminfo (pages of the default size); -1 if unknown. */
static long free_huge_pages_count(void)
{
    FILE *f = fopen("/proc/meminfo", "r");
    if (!f) return -1;
    char line[256];
    long v = -1;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "HugePages_Free: %ld", &v) == 1) break;
    fclose(f);
    return v;
}

static void release_ghp(void *p, uint64_t n)
{
    (void)n;
    free_huge_pages(p);
}

static void release_mmap(void *p, uint64_t n) { munmap(p, (size_t)n); }

/* Copy [data_offset, file_size) of f into dst with pread (straight from the
 * page cache, without faulting the file mapping in as well). */
static int copy_data(wpk_file *f, uint8_t *dst, uint64_t n, wp_err *e)
{
    uint64_t off = wpk_data_offset(f), done = 0;
    const size_t step = 8u << 20;
    while (done < n) {
        size_t k = n - done < step ? (size_t)(n - done) : step;
        int rc = wp_pread_full(wpk_fd(f), dst + done, k, off + done, wpk_path(f), e);
        if (rc) return rc;
        done += k;
    }
    return 0;
}

int wpk_load_hugepages(wpk_file *f, int mode, wpk_huge_kind *kind, char *notice,
                       size_t notice_sz, wp_err *e)
{
    *kind = WPK_HUGE_NONE;
    if (notice && notice_sz) notice[0] = 0;
    uint64_t n = wpk_file_size(f) - wpk_data_offset(f);
    if (n == 0) {
        if (notice) snprintf(notice, notice_sz, "%s: no tensor data to load into huge pages", wpk_path(f));
        return 0;
    }
    long hp = gethugepagesize();
    if (hp <= 0) hp = 2l << 20;
    uint64_t len = wp_align_up(n, (uint64_t)hp);
    if (len != (size_t)len) return wp_fail(e, WP_ENOMEM, "%s: %llu bytes do not fit in memory", wpk_path(f), (unsigned long long)n);
    void *mem = NULL, *base = NULL;
    uint64_t base_len = 0;
    void (*release)(void *, uint64_t) = release_mmap;
    wpk_huge_kind got = WPK_HUGE_NONE;

    if (mode == WPK_HUGE_TRANSPARENT) {
        /* Over-allocate by one huge page so the data starts 2 MiB-aligned: only
         * aligned 2 MiB extents can be backed by a transparent huge page. */
        base_len = len + (uint64_t)hp;
        base = mmap(NULL, (size_t)base_len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (base == MAP_FAILED) {
            if (notice) snprintf(notice, notice_sz, "%s: cannot map %llu bytes for transparent huge pages (%s); using the plain mapping",
                                 wpk_path(f), (unsigned long long)base_len, strerror(errno));
            return 0;
        }
        mem = (void *)wp_align_up((uintptr_t)base, (uint64_t)hp);
        if (madvise(mem, (size_t)len, MADV_HUGEPAGE) != 0) {
            int err = errno;
            munmap(base, (size_t)base_len);
            if (notice) snprintf(notice, notice_sz, "%s: transparent huge pages unavailable (madvise: %s); using the plain mapping",
                                 wpk_path(f), strerror(err));
            return 0;
        }
        got = WPK_HUGE_THP;
    } else {
        long free_pages = free_huge_pages_count();
        uint64_t need = len / (uint64_t)hp;
        if (free_pages >= 0 && (uint64_t)free_pages < need) {
            if (notice) snprintf(notice, notice_sz, "%s: huge pages unavailable: need %llu x %ld KiB, %ld free "
                                 "(reserve them in /proc/sys/vm/nr_hugepages); using the plain mapping",
                                 wpk_path(f), (unsigned long long)need, hp >> 10, free_pages);
            return 0;
        }
        mem = get_huge_pages((size_t)len, GHP_DEFAULT);
        if (mem) {
            got = WPK_HUGE_HUGETLBFS;
            base = mem;
            release = release_ghp;
        } else {
            base = mmap(NULL, (size_t)len, PROT_READ | PROT_WRITE,
                        MAP_PRIVATE | MAP_ANONYMOUS | MAP_HUGETLB, -1, 0);
            if (base == MAP_FAILED) {
                if (notice) snprintf(notice, notice_sz, "%s: huge pages unavailable (libhugetlbfs and MAP_HUGETLB: %s); using the plain mapping",
                                     wpk_path(f), strerror(errno));
                return 0;
            }
            mem = base;
            base_len = len;
            got = WPK_HUGE_MAP_HUGETLB;
        }
    }
    int rc = copy_data(f, mem, n, e);
    if (!rc && mprotect(mem, (size_t)len, PROT_READ) != 0)   /* views stay read-only */
        rc = wp_fail_errno(e, "%s: mprotect of the huge-page copy", wpk_path(f));
    if (rc) {
        release(base, base_len);
        return rc;
    }
    wpk_set_data_base(f, mem, base, base_len, release);
    *kind = got;
    return 0;
}
