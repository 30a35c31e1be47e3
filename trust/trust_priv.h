/* trust_priv.h — small helpers the trust/ sources share (not public). */
#ifndef WP_TRUST_PRIV_H
#define WP_TRUST_PRIV_H

#include <cjson/cJSON.h>

/* o[k] if it is a JSON string, else NULL */
const char *wp_jstr(const cJSON *o, const char *k);
/* s is 64 lowercase hex digits */
int wp_is_hex64(const char *s);
/* base64 must be the one canonical spelling of its bytes: otherwise the
 * unused low bits of the last character could change without changing what
 * is signed, and a flipped byte would go unnoticed. */
int wp_b64_canonical(const char *s);

#endif
