/* source_wpk.h — the runtime's tensor source over a wpack build (see
 * source_wpk.c).  Kept apart from runtime.h so the container dependency stays
 * out of the model code. */
#ifndef WP_SOURCE_WPK_H
#define WP_SOURCE_WPK_H

#include "format/wpk.h"
#include "runtime/runtime.h"

/* Open a build directory (every *.wpk in it) or one .wpk file.  The model
 * description comes from the container (its model JSON = HF config keys). */
int wp_tsrc_open_wpk(wp_tsrc **out, const char *path, wp_err *e);
/* How many .wpk parts the source reads (0 for a non-wpk source). */
int wp_tsrc_wpk_parts(wp_tsrc *s);

/* Move every part's tensor data into huge-page-backed memory before the
 * model takes its weight views (wpk_load_hugepages, explicit huge pages).
 * Where huge pages are unavailable (none reserved, not a .wpk source) the
 * plain mapping stays in use and `notice` receives one line saying why;
 * only a real failure is an error. */
int wp_tsrc_hugepages(wp_tsrc *s, char *notice, size_t notice_sz, wp_err *e);

#endif
