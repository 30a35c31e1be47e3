/* pack_report.h — the per-encoding ratio table shared by `wpack pack` and
 * `wpack unpack` (cli/cmd_pack.c). */
#ifndef WP_CLI_PACK_REPORT_H
#define WP_CLI_PACK_REPORT_H

#include <cjson/cJSON.h>

#include "format/pack.h"

/* {"files", "tensors", "frames", "raw_bytes", "compressed_bytes", "ratio",
 *  "encodings": [{"encoding", "tensors", "raw_bytes", "compressed_bytes", "ratio"}]} */
cJSON *cli_wpz_stats_json(const wpz_stats *s);
/* The same as a table on stdout; a throughput line when seconds > 0. */
void cli_wpz_stats_print(const wpz_stats *s, double seconds, const char *verb);

#endif
