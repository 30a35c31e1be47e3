/*
 * corpus.h — the malformed-safetensors corpus: a table of cases, each a file
 * (or a checkpoint directory) that the strict reader must refuse with a
 * specific one-line error, and a generator that writes them all.
 *
 * Every case is produced by code (tests/corpus.c) from a short recipe, never
 * a hand-edited binary, so a reader of the table sees what is wrong with each
 * file.  tests/test_hf_corpus.c opens each case through the library; a CLI test
 * may run `wpack inspect DIR/PATH` over the same table and look for `expect`
 * in its stderr.
 */
#ifndef WPT_CORPUS_H
#define WPT_CORPUS_H

#include <stddef.h>

typedef struct wpt_corpus_case {
    const char *path;     /* relative to the corpus directory: a .safetensors
                             file, or a directory for sharded-checkpoint cases */
    const char *expect;   /* substring the error message must contain */
} wpt_corpus_case;

/* Number of cases, and case i (0 <= i < count). */
size_t wpt_corpus_count(void);
const wpt_corpus_case *wpt_corpus_case_at(size_t i);

/* Write every case under dir (which must exist).  Returns 0, or -1 with a
 * message in err. */
int wpt_corpus_generate(const char *dir, char *err, size_t errlen);

#endif
