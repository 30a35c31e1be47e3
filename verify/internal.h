/* internal.h — helpers shared by the verify/ sources only (not a public header). */
#ifndef WP_VERIFY_INTERNAL_H
#define WP_VERIFY_INTERNAL_H

#include "common/wp.h"

/* A growable list of strings. */
typedef struct wp_strv {
    char **v;
    size_t n, cap;
} wp_strv;
int wp_strv_push(wp_strv *s, const char *str, wp_err *e);
void wp_strv_free(wp_strv *s);

/* Every regular file (or symlink to one) under dir, as paths relative to
 * dir, sorted bytewise.  Entries whose name starts with '.' are skipped
 * (temp files of wp_out, .cache/ of HF downloads); so are sub-directories
 * deeper than 16 levels. */
int wp_list_files(const char *dir, wp_strv *out, wp_err *e);

int wp_str_ends_with(const char *s, const char *suffix);

#endif
