/* trust_fixture.h — test builds for the trust_ tests: tiny-a's two shards
 * stored as two .wpk parts (every tensor raw, in its safetensors dtype) plus
 * manifest.json, made with the container writer and wp_manifest_create. */
#ifndef WPT_TRUST_FIXTURE_H
#define WPT_TRUST_FIXTURE_H

#include <stddef.h>
#include <stdint.h>

#define TRUST_PART0 "model-00001-of-00002.wpk"
#define TRUST_PART1 "model-00002-of-00002.wpk"

/* Write the build into `dir` (created).  If `perturb` names a tensor, its
 * first byte is XORed with 0xFF (a consistent, differently-valued build).
 * Returns 0 or prints the error and returns -1. */
int trust_make_build(const char *dir, const char *perturb);
/* Flip bits `mask` of byte `off` in `path` (read-modify-write, in place). */
int trust_flip(const char *path, uint64_t off, uint8_t mask);
uint64_t trust_file_size(const char *path);

struct wp_manifest;
/* Parse DIR/manifest.json into *m (wp_manifest_free it).  0 or -1. */
int trust_manifest_load(const char *dir, struct wp_manifest *m);
/* Turn *m (DIR's manifest) into a version-1 manifest, as wpack wrote before
 * shard digests: each file's whole-file SHA-256 from its bytes in DIR, the
 * root recomputed, DIR/manifest.json rewritten.  0 or -1. */
int trust_manifest_to_v1(const char *dir, struct wp_manifest *m);

#endif
