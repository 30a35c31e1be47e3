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

#ifndef RENAME_NOREPLACE
#define RENAME_NOREPLACE (1u << 0)
#endif
#ifndef RENAME_EXCHANGE
#define RENAME_EXCHANGE (1u << 1)
#endif

#endif
