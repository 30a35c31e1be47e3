/*
 * internal.h — what common/'s own files share and nothing else includes:
 * the signal-cleanup registry (file.c) and renameat2.
 */
#ifndef WP_COMMON_INTERNAL_H
#define WP_COMMON_INTERNAL_H

/* Remove `path` on SIGINT/SIGTERM/SIGHUP (wp_cleanup_on_signals): a file,
 * or with tree != 0 a directory and everything under it.  The pointer is
 * kept, not copied: it must stay valid until wp_cleanup_del(path). */
void wp_cleanup_add(char *path, int tree);
void wp_cleanup_del(char *path);

/* renameat2(AT_FDCWD, from, AT_FDCWD, to, flags) through the system call
 * (older C libraries lack the wrapper): 0, or -1 with errno; ENOSYS where
 * the kernel lacks it, EINVAL where the filesystem does not support the
 * flag.  Setting wp_no_renameat2 makes every call fail with ENOSYS, so tests
 * can walk the fallbacks. */
int wp_renameat2(const char *from, const char *to, unsigned flags);
extern int wp_no_renameat2;

/* Replace the fault-injection spec read from WPACK_FAULT (common/fault.c;
 * the format of wp.h, "Fault injection") and reset the step counts: unit
 * tests drive the library this way.  NULL turns injection off (and
 * wp_no_renameat2 back to 0). */
void wp_fault_set(const char *spec);

/* The temporary name `DIR/.NAME.KIND.<pid>-<start>.XXXXXX` for the output
 * at `path` (common/outdir.h, "Temporaries"), malloc'd; NULL when out of
 * memory. */
char *wp_temp_sibling(const char *path, const char *kind);
/* Rename the finished temporary `tmp` (".NAME.tmp.<owner>.XXXXXX") to
 * ".NAME.kept.<owner>.XXXXXX", which no sweep removes; the new name
 * (malloc'd), or NULL when it stays where it is. */
char *wp_temp_rename_kept(const char *tmp);

#ifndef RENAME_NOREPLACE
#define RENAME_NOREPLACE (1u << 0)
#endif
#ifndef RENAME_EXCHANGE
#define RENAME_EXCHANGE (1u << 1)
#endif

#endif
