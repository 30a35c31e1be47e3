/*
 * corpus.c — generates the malformed-safetensors corpus (see corpus.h).
 *
 * A single-file case is a recipe: the header text, the header length written
 * in the first 8 bytes (normally the text's own length), the number of data
 * bytes after it, and optionally a length to truncate the finished file to.
 * A directory case is a sharded checkpoint: two well-formed shards written
 * here byte by byte (not with the library writer, so a writer bug cannot hide
 * a reader bug) plus the case's model.safetensors.index.json.
 */
#include "tests/corpus.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

/* One tensor entry of a header: T("a", "F32", "[2]", 0, 8). */
#define T(n, dt, sh, b, e) \
    "\"" n "\":{\"dtype\":\"" dt "\",\"shape\":" sh ",\"data_offsets\":[" #b "," #e "]}"
#define A T("a", "F32", "[2]", 0, 8)        /* a valid 8-byte tensor */

enum { FILE_CASE, DIR_CASE };
/* header length written in the first 8 bytes */
#define REAL (-1)            /* the length of the text (a well-formed file) */
#define LIE_PLUS_1 (-2)      /* file size - 8 + 1: one byte more than there is */
#define U64_MAX_LEN (-3)     /* 2^64 - 1 */
/* truncation */
#define NOCUT (-1)
#define CUT_DATA3 (-100)     /* keep the header and 3 data bytes */
#define CUT_LAST (-101)      /* drop the last byte of the file */

typedef struct recipe {
    wpt_corpus_case c;
    int kind;
    const char *json;        /* header text ('\x01' is written as a NUL byte), or index */
    int64_t hlen;            /* REAL, LIE_PLUS_1, U64_MAX_LEN or the value to write */
    int64_t data;            /* data bytes after the header */
    int64_t cut;             /* NOCUT, CUT_DATA3, CUT_LAST or the bytes to keep */
    int bad_shard;           /* DIR_CASE: write s2.safetensors truncated */
} recipe;

#define F(path, expect, json, hlen, data, cut) {{path, expect}, FILE_CASE, json, hlen, data, cut, 0}
#define D(path, expect, index, bad) {{path, expect}, DIR_CASE, index, 0, 0, NOCUT, bad}
#define WM(...) "{\"metadata\":{\"total_size\":20},\"weight_map\":{" __VA_ARGS__ "}}"

static const recipe R[] = {
    /* ---- the 8-byte header length and truncation ---- */
    F("len-empty.safetensors", "too short for the 8-byte header length", "{" A "}", REAL, 8, 0),
    F("len-trunc4.safetensors", "too short for the 8-byte header length", "{" A "}", REAL, 8, 4),
    F("len-trunc7.safetensors", "too short for the 8-byte header length", "{" A "}", REAL, 8, 7),
    F("len-zero.safetensors", "header length 0 is less than 2", "{}", 0, 0, NOCUT),
    F("len-one.safetensors", "header length 1 is less than 2", "{}", 1, 0, NOCUT),
    F("len-100mb.safetensors", "exceeds the 100 MB limit", "{}", 100000001, 0, NOCUT),
    F("len-lies.safetensors", "exceeds file size - 8", "{" A "}", LIE_PLUS_1, 8, NOCUT),
    F("len-u64max.safetensors", "exceeds the 100 MB limit", "{}", U64_MAX_LEN, 0, NOCUT),
    F("trunc-after-len.safetensors", "exceeds file size - 8", "{" A "}", REAL, 8, 8),
    F("trunc-in-header.safetensors", "exceeds file size - 8", "{" A "}", REAL, 8, 20),
    F("trunc-in-data.safetensors", "a: data_offsets end 8 past end of data (3", "{" A "}", REAL, 8,
      CUT_DATA3),
    F("trunc-last-byte.safetensors", "a: data_offsets end 8 past end of data (7", "{" A "}", REAL,
      8, CUT_LAST),
    F("len-short.safetensors", "not valid JSON", "{" A "}", 10, 8, NOCUT),

    /* ---- the header text ---- */
    F("utf8-invalid.safetensors", "not valid UTF-8", "{\"\xff\":{}}", REAL, 0, NOCUT),
    F("utf8-overlong.safetensors", "not valid UTF-8", "{\"\xc0\xaf\":{}}", REAL, 0, NOCUT),
    F("utf8-surrogate.safetensors", "not valid UTF-8", "{\"\xed\xa0\x80\":{}}", REAL, 0, NOCUT),
    F("utf8-cut.safetensors", "not valid UTF-8", "{\"a\":{}}\xe2\x82", REAL, 0, NOCUT),
    F("json-nul.safetensors", "header contains a NUL byte", "{" A "}\x01", REAL, 8, NOCUT),
    F("json-array.safetensors", "header is not a JSON object", "[1, 2]", REAL, 0, NOCUT),
    F("json-string.safetensors", "header is not a JSON object", "\"abc\"", REAL, 0, NOCUT),
    F("json-leading-space.safetensors", "header is not a JSON object", " {}", REAL, 0, NOCUT),
    F("json-invalid.safetensors", "header is not valid JSON", "{\"a\":", REAL, 0, NOCUT),
    F("json-trailing.safetensors", "bytes after the JSON object", "{" A "} x", REAL, 8, NOCUT),
    F("json-two-objects.safetensors", "bytes after the JSON object", "{" A "}{}", REAL, 8, NOCUT),

    /* ---- names and entries ---- */
    F("name-duplicate.safetensors", "duplicate key \"a\"", "{" A "," T("a", "F32", "[2]", 8, 16) "}",
      REAL, 16, NOCUT),
    F("name-nul-escape.safetensors", "header string contains \\u0000",
      "{" T("a\\u0000b", "F32", "[2]", 0, 8) "}", REAL, 8, NOCUT),
    F("name-empty.safetensors", "empty tensor name", "{" T("", "F32", "[2]", 0, 8) "}", REAL, 8, NOCUT),
    F("entry-not-object.safetensors", "a: entry is not a JSON object", "{\"a\":[0,8]}", REAL, 8, NOCUT),
    F("entry-unknown-key.safetensors", "a: unknown key \"data_offset\"",
      "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offset\":[0,8]}}", REAL, 8, NOCUT),
    F("entry-dup-key.safetensors", "a: duplicate key \"dtype\"",
      "{\"a\":{\"dtype\":\"F32\",\"dtype\":\"I8\",\"shape\":[2],\"data_offsets\":[0,8]}}", REAL, 8,
      NOCUT),

    /* ---- dtype ---- */
    F("dtype-unknown.safetensors", "a: unknown dtype \"F8_E4M3FN\"",
      "{" T("a", "F8_E4M3FN", "[8]", 0, 8) "}", REAL, 8, NOCUT),
    F("dtype-lowercase.safetensors", "a: unknown dtype \"f32\"", "{" T("a", "f32", "[2]", 0, 8) "}",
      REAL, 8, NOCUT),
    F("dtype-missing.safetensors", "a: dtype missing", "{\"a\":{\"shape\":[2],\"data_offsets\":[0,8]}}",
      REAL, 8, NOCUT),
    F("dtype-number.safetensors", "a: dtype is not a string",
      "{\"a\":{\"dtype\":32,\"shape\":[2],\"data_offsets\":[0,8]}}", REAL, 8, NOCUT),
    F("dtype-size.safetensors", "a: dtype F16 shape needs 4 bytes but data_offsets [0, 8) hold 8",
      "{" T("a", "F16", "[2]", 0, 8) "}", REAL, 8, NOCUT),
    F("dtype-f4-odd.safetensors", "a: 3 elements of F4 (4 bits) do not fill whole bytes",
      "{" T("a", "F4", "[3]", 0, 2) "}", REAL, 2, NOCUT),
    F("dtype-f6-partial.safetensors", "a: 2 elements of F6_E2M3 (6 bits) do not fill whole bytes",
      "{" T("a", "F6_E2M3", "[2]", 0, 2) "}", REAL, 2, NOCUT),

    /* ---- shape ---- */
    F("shape-negative.safetensors", "a: shape[0] -2 is negative", "{" T("a", "F32", "[-2]", 0, 8) "}",
      REAL, 8, NOCUT),
    F("shape-fraction.safetensors", "a: shape[1] 2.5 is not an integer",
      "{" T("a", "F32", "[1,2.5]", 0, 8) "}", REAL, 8, NOCUT),
    F("shape-string.safetensors", "a: shape[0] is not a number",
      "{" T("a", "F32", "[\"2\"]", 0, 8) "}", REAL, 8, NOCUT),
    F("shape-not-array.safetensors", "a: shape is not an array", "{" T("a", "F32", "2", 0, 8) "}",
      REAL, 8, NOCUT),
    F("shape-9-dims.safetensors", "a: shape has 9 dimensions, more than 8",
      "{" T("a", "U8", "[1,1,1,1,1,1,1,1,1]", 0, 1) "}", REAL, 1, NOCUT),
    F("shape-overflow.safetensors", "a: shape byte size overflows 64 bits",
      "{" T("a", "U8", "[4294967296,4294967296,16]", 0, 8) "}", REAL, 8, NOCUT),
    F("shape-huge.safetensors", "a: shape[0] 1.0000000000000001e+300 exceeds 2^53",
      "{" T("a", "U8", "[1e300]", 0, 8) "}", REAL, 8, NOCUT),

    /* ---- data_offsets as numbers ---- */
    F("off-above-2p53.safetensors", "a: data_offsets end 9007199254740994 exceeds 2^53",
      "{" T("a", "U8", "[8]", 0, 9007199254740994) "}", REAL, 8, NOCUT),
    F("off-2p53-plus-1.safetensors", "a: number 9007199254740993 exceeds 2^53",
      "{" T("a", "U8", "[0]", 9007199254740993, 9007199254740993) "}", REAL, 0, NOCUT),
    F("off-fraction.safetensors", "a: data_offsets end 8.5 is not an integer",
      "{" T("a", "F32", "[2]", 0, 8.5) "}", REAL, 8, NOCUT),
    F("off-negative.safetensors", "a: data_offsets begin -8 is negative",
      "{" T("a", "F32", "[2]", -8, 0) "}", REAL, 8, NOCUT),
    F("off-exponent.safetensors", "a: number 8e0 is not written as a plain non-negative integer",
      "{" T("a", "F32", "[2]", 0, 8e0) "}", REAL, 8, NOCUT),
    F("off-decimal-point.safetensors", "a: number 8.0 is not written as a plain non-negative integer",
      "{" T("a", "F32", "[2]", 0, 8.0) "}", REAL, 8, NOCUT),
    F("off-leading-zero.safetensors", "a: number 08 has a leading zero",
      "{" T("a", "F32", "[2]", 0, 08) "}", REAL, 8, NOCUT),
    F("off-minus-zero.safetensors", "a: number -0 is not written as a plain non-negative integer",
      "{" T("a", "F32", "[2]", -0, 8) "}", REAL, 8, NOCUT),
    F("off-string.safetensors", "a: data_offsets begin is not a number",
      "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[\"0\",8]}}", REAL, 8, NOCUT),
    F("off-three.safetensors", "a: data_offsets is not an array [begin, end]",
      "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8,8]}}", REAL, 8, NOCUT),
    F("off-missing.safetensors", "a: data_offsets missing", "{\"a\":{\"dtype\":\"F32\",\"shape\":[2]}}",
      REAL, 8, NOCUT),
    F("off-reversed.safetensors", "a: data_offsets [8, 0) begin > end",
      "{" T("a", "F32", "[0]", 8, 0) "}", REAL, 8, NOCUT),

    /* ---- the data layout ---- */
    F("layout-overlap.safetensors", "b: data_offsets [4, 12) overlap the previous tensor a (ends at 8)",
      "{" A "," T("b", "F32", "[2]", 4, 12) "}", REAL, 12, NOCUT),
    F("layout-gap.safetensors", "b: data_offsets [12, 20) leave a gap of 4 bytes after offset 8",
      "{" A "," T("b", "F32", "[2]", 12, 20) "}", REAL, 20, NOCUT),
    F("layout-not-from-0.safetensors", "a: data_offsets [4, 12) leave a gap of 4 bytes after offset 0",
      "{" T("a", "F32", "[2]", 4, 12) "}", REAL, 12, NOCUT),
    F("layout-trailing.safetensors", "5 trailing bytes after the last tensor", "{" A "}", REAL, 13, NOCUT),
    F("layout-past-eof.safetensors", "b: data_offsets end 16 past end of data (12",
      "{" A "," T("b", "F32", "[2]", 8, 16) "}", REAL, 12, NOCUT),
    F("layout-empty-with-data.safetensors", "3 trailing bytes after the last tensor", "{}", REAL, 3, NOCUT),
    F("layout-zero-size-inside.safetensors", "z: data_offsets [4, 4) overlap the previous tensor a",
      "{" A "," T("z", "F32", "[0]", 4, 4) "}", REAL, 8, NOCUT),

    /* ---- __metadata__ ---- */
    F("meta-not-object.safetensors", "__metadata__: is not a JSON object",
      "{\"__metadata__\":\"pt\"," A "}", REAL, 8, NOCUT),
    F("meta-number.safetensors", "__metadata__: value of \"n\" is not a string",
      "{\"__metadata__\":{\"n\":1}," A "}", REAL, 8, NOCUT),
    F("meta-nested.safetensors", "__metadata__: value of \"o\" is not a string",
      "{\"__metadata__\":{\"o\":{}}," A "}", REAL, 8, NOCUT),
    F("meta-dup-key.safetensors", "__metadata__: duplicate key \"k\"",
      "{\"__metadata__\":{\"k\":\"1\",\"k\":\"2\"}," A "}", REAL, 8, NOCUT),
    F("meta-twice.safetensors", "duplicate key \"__metadata__\"",
      "{\"__metadata__\":{},\"__metadata__\":{}," A "}", REAL, 8, NOCUT),

    /* ---- sharded checkpoints: s1 = {a, b}, s2 = {c} ---- */
    D("ckpt-missing-shard", "shard s3.safetensors named in the index does not exist",
      WM("\"a\":\"s1.safetensors\",\"b\":\"s1.safetensors\",\"c\":\"s3.safetensors\""), 0),
    D("ckpt-index-extra", "weight_map: d: tensor is not in shard s1.safetensors",
      WM("\"a\":\"s1.safetensors\",\"b\":\"s1.safetensors\",\"c\":\"s2.safetensors\","
         "\"d\":\"s1.safetensors\""), 0),
    D("ckpt-shard-extra", "b: tensor is not listed in model.safetensors.index.json",
      WM("\"a\":\"s1.safetensors\",\"c\":\"s2.safetensors\""), 0),
    D("ckpt-wrong-shard", "b: tensor is listed in model.safetensors.index.json for shard s2.safetensors",
      WM("\"a\":\"s1.safetensors\",\"b\":\"s2.safetensors\",\"c\":\"s2.safetensors\""), 0),
    D("ckpt-dotdot", "a: shard path \"../s1.safetensors\" escapes the checkpoint directory",
      WM("\"a\":\"../s1.safetensors\",\"b\":\"s1.safetensors\",\"c\":\"s2.safetensors\""), 0),
    D("ckpt-dotdot-inner", "escapes the checkpoint directory",
      WM("\"a\":\"x/../../s1.safetensors\",\"b\":\"s1.safetensors\",\"c\":\"s2.safetensors\""), 0),
    D("ckpt-absolute", "a: shard path \"/etc/s1.safetensors\" escapes the checkpoint directory",
      WM("\"a\":\"/etc/s1.safetensors\",\"b\":\"s1.safetensors\",\"c\":\"s2.safetensors\""), 0),
    D("ckpt-bad-json", "model.safetensors.index.json: not valid JSON",
      "{\"weight_map\": {\"a\": \"s1.safetensors\"", 0),
    D("ckpt-no-weight-map", "weight_map: missing or not a JSON object",
      "{\"metadata\":{},\"weights\":{}}", 0),
    D("ckpt-shard-not-string", "weight_map: c: shard is not a string",
      WM("\"a\":\"s1.safetensors\",\"b\":\"s1.safetensors\",\"c\":2"), 0),
    D("ckpt-listed-twice", "weight_map: a: listed twice",
      WM("\"a\":\"s1.safetensors\",\"a\":\"s1.safetensors\",\"b\":\"s1.safetensors\","
         "\"c\":\"s2.safetensors\""), 0),
    D("ckpt-bad-shard", "s2.safetensors: c: data_offsets end 8 past end of data",
      WM("\"a\":\"s1.safetensors\",\"b\":\"s1.safetensors\",\"c\":\"s2.safetensors\""), 1),
    D("ckpt-empty-dir", "no model.safetensors.index.json or model.safetensors", NULL, 0),
};

size_t wpt_corpus_count(void) { return sizeof R / sizeof R[0]; }

const wpt_corpus_case *wpt_corpus_case_at(size_t i)
{
    return i < wpt_corpus_count() ? &R[i].c : NULL;
}

static int fail(char *err, size_t errlen, const char *what, const char *path)
{
    snprintf(err, errlen, "%s %s: %s", what, path, strerror(errno));
    return -1;
}

/* header length (little-endian) + header text + data (a byte pattern), then
 * truncated as the recipe says. */
static int write_st(const char *path, const char *json, int64_t hlen, int64_t data, int64_t cut,
                    char *err, size_t errlen)
{
    size_t jl = strlen(json);
    uint64_t n = hlen == REAL ? jl : hlen == LIE_PLUS_1 ? jl + (uint64_t)data + 1
               : hlen == U64_MAX_LEN ? UINT64_MAX : (uint64_t)hlen;
    uint64_t total = 8 + jl + (uint64_t)data;
    if (cut == CUT_DATA3) cut = (int64_t)(8 + jl + 3);
    else if (cut == CUT_LAST) cut = (int64_t)total - 1;
    uint64_t keep = cut >= 0 && (uint64_t)cut < total ? (uint64_t)cut : total;
    FILE *f = fopen(path, "wb");
    if (!f) return fail(err, errlen, "cannot create", path);
    uint64_t at = 0;
    for (int i = 0; i < 8 && at < keep; i++, at++) fputc((int)(n >> (8 * i)) & 0xff, f);
    for (size_t i = 0; i < jl && at < keep; i++, at++) fputc(json[i] == '\x01' ? 0 : json[i], f);
    for (int64_t i = 0; i < data && at < keep; i++, at++) fputc((int)(i * 37 + 11) & 0xff, f);
    if (fclose(f) != 0) return fail(err, errlen, "cannot write", path);
    return 0;
}

static int write_text(const char *path, const char *s, char *err, size_t errlen)
{
    FILE *f = fopen(path, "wb");
    if (!f) return fail(err, errlen, "cannot create", path);
    fputs(s, f);
    if (fclose(f) != 0) return fail(err, errlen, "cannot write", path);
    return 0;
}

int wpt_corpus_generate(const char *dir, char *err, size_t errlen)
{
    char p[4096], q[4200];
    for (size_t i = 0; i < wpt_corpus_count(); i++) {
        const recipe *r = &R[i];
        snprintf(p, sizeof p, "%s/%s", dir, r->c.path);
        if (r->kind == FILE_CASE) {
            if (write_st(p, r->json, r->hlen, r->data, r->cut, err, errlen)) return -1;
            continue;
        }
        if (mkdir(p, 0755) != 0 && errno != EEXIST) return fail(err, errlen, "cannot create", p);
        if (!r->json) continue;   /* an empty directory */
        snprintf(q, sizeof q, "%s/s1.safetensors", p);
        if (write_st(q, "{" A "," T("b", "U8", "[4]", 8, 12) "}", REAL, 12, -1, err, errlen))
            return -1;
        snprintf(q, sizeof q, "%s/s2.safetensors", p);
        if (write_st(q, "{" T("c", "I64", "[1]", 0, 8) "}", REAL, 8, r->bad_shard ? CUT_LAST : NOCUT, err,
                     errlen))
            return -1;
        snprintf(q, sizeof q, "%s/model.safetensors.index.json", p);
        if (write_text(q, r->json, err, errlen)) return -1;
    }
    return 0;
}
