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
/* The source's containers (NULL past the end or for a non-wpk source), e.g.
 * for wpk_load_hugepages. */
wpk_file *wp_tsrc_wpk_file(wp_tsrc *s, int i);
int wp_tsrc_wpk_parts(wp_tsrc *s);

#endif
