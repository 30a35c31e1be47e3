/* tensor_list.h — the per-tensor table that `wpack inspect` (a build, a
 * .wpk, a .wpkz) and `wpack unpack --list` print (cli/tensor_list.c). */
#ifndef WP_CLI_TENSOR_LIST_H
#define WP_CLI_TENSOR_LIST_H

#include "trust/build.h"

/* One line per tensor on stdout, aligned columns under a heading:
 * name, encoding, logical shape, bytes, offset, the first 12 hex digits of
 * its SHA-256, its file (when the rows come from more than one), its
 * compressed bytes (from a .wpkz), and for a stacked tensor its experts
 * ("256 x layers.0.ffn.experts.{0..255}.w1.weight"); "-" where none. */
void cli_tensor_list_print(const wp_tensor_list *l);

#endif
