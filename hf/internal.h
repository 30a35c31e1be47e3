/*
 * st_priv.h — what safetensors.c shares with checkpoint.c and st_writer.c and
 * nobody else.  Other modules include convert/safetensors.h only.
 */
#ifndef WP_ST_PRIV_H
#define WP_ST_PRIV_H

#include "hf/safetensors.h"

/* A checkpoint numbers its shards; every tensor of shard i carries file = i so
 * wp_ckpt_read() can route a wp_tensor_info back to its shard. */
void wp_st__set_file_index(wp_st_file *f, int index);

/* Strict UTF-8 (RFC 3629): returns the offset of the first bad byte, or len
 * when all of s[0, len) is valid. */
size_t wp_st__utf8_check(const uint8_t *s, size_t len);

/* Largest integer a JSON number may carry and still be exact in a double
 * (and in every JavaScript/Python float reader): 2^53. */
#define WP_ST_MAX_INT 9007199254740992.0

/* safetensors' own limit on the header (safetensors crate MAX_HEADER_SIZE). */
#define WP_ST_MAX_HEADER 100000000ull

#endif
