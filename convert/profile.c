/*
 * profile.c — build profiles: JSON data (convert/profiles/NAME.json, embedded by
 * scripts/embed.sh) parsed into ordered rules, plus `--tensor-type` overrides.
 * The field reference is docs/profiles.md; parsing is strict (unknown keys
 * are errors) so a typo in a profile cannot silently change a build.
 */
#include <cjson/cJSON.h>
#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "convert/convert.h"

/* Generated from convert/profiles/NAME.json (see Makefile, scripts/embed.sh). */
typedef struct wp_builtin_file { const char *name; const char *text; } wp_builtin_file;
extern const wp_builtin_file wp_builtin_profiles[];

static const char *const src_names[WP_SRC_COUNT] = {"bf16", "f16", "f32", "fp8", "mxfp4", "raw"};

const char *wp_src_kind_name(wp_src_kind k)
{
    return (unsigned)k < WP_SRC_COUNT ? src_names[k] : "?";
}

int wp_src_kind_parse(const char *s, wp_src_kind *out)
{
    for (int i = 0; i < WP_SRC_COUNT; i++)
        if (!strcmp(s, src_names[i])) {
            *out = (wp_src_kind)i;
            return 0;
        }
    return -1;
}

#define FLOAT_SOURCES ((1u << WP_SRC_BF16) | (1u << WP_SRC_F16) | (1u << WP_SRC_F32) | \
                       (1u << WP_SRC_FP8) | (1u << WP_SRC_MXFP4))

const char *const *wp_profile_builtins(void)
{
    static const char *names[64];
    size_t n = 0;
    for (const wp_builtin_file *b = wp_builtin_profiles; b->name && n + 1 < 64; b++)
        names[n++] = b->name;
    names[n] = NULL;
    return names;
}

static void rule_free(wp_rule *r)
{
    if (r->pattern) {
        regfree(&r->re);
        free(r->pattern);
        r->pattern = NULL;
    }
}

void wp_profile_free(wp_profile *p)
{
    if (!p) return;
    for (size_t i = 0; i < p->n_rules; i++) rule_free(&p->rules[i]);
    free(p->rules);
    p->rules = NULL;
    p->n_rules = 0;
}

/* ---- bounding a rule's regex before regcomp ------------------------------------
 * glibc's regcomp expands repetitions into copies (x+ is xx*, x{m,n} n
 * copies of x), so stacked or nested repetitions grow exponentially
 * (".+++++++++++++++++++++" takes a second and 700 MB), and back-references
 * make regexec exponential.  A rule names tensors; none needs more than the
 * limits below (docs/profiles.md). */
#define RE_MAX_LEN 256         /* bytes of the pattern */
#define RE_MAX_REPEATS 32      /* repetition operators: * + ? {m,n} */
#define RE_MAX_DEPTH 2         /* repetitions applied to a repeated expression */
#define RE_MAX_BOUND 255       /* m, n of {m,n} */
#define RE_MAX_COST 4096       /* size of the expanded expression, in atoms */

typedef struct re_frame {
    uint64_t alts, seq, last;  /* cost: finished alternatives, this one, its last item */
    int depth, last_depth;     /* repetition depth of the sequence, of the last item */
    int has_last;
} re_frame;

/* x{m,n} as glibc expands it: the number of copies of x. */
static int re_bound(const char *q, size_t *used, unsigned *copies)
{
    const char *s = q + 1;   /* after '{' */
    unsigned long m = 0, n = 0;
    int have_m = 0, have_n = 0, comma = 0;
    while (*s >= '0' && *s <= '9') {
        if (m > 100000) return -1;
        m = m * 10 + (unsigned)(*s++ - '0'), have_m = 1;
    }
    if (*s == ',') {
        comma = 1, s++;
        while (*s >= '0' && *s <= '9') {
            if (n > 100000) return -1;
            n = n * 10 + (unsigned)(*s++ - '0'), have_n = 1;
        }
    }
    if (*s != '}' || (!have_m && !have_n)) return 1;   /* not an interval: a literal '{' */
    if (m > RE_MAX_BOUND || n > RE_MAX_BOUND) return -1;
    *used = (size_t)(s + 1 - q);
    *copies = comma ? (have_n ? (unsigned)(n > m ? n : m) : (unsigned)m + 1) : (unsigned)m;
    if (*copies == 0) *copies = 1;
    return 0;
}

/* NULL when pattern is within the limits above, else the rule it breaks
 * (written into why[96]). */
static const char *re_problem(const char *pattern, char why[96])
{
    size_t len = strlen(pattern);
    if (len > RE_MAX_LEN) {
        snprintf(why, 96, "longer than %d bytes", RE_MAX_LEN);
        return why;
    }
    re_frame st[RE_MAX_LEN + 2];
    int top = 0, repeats = 0;
    memset(&st[0], 0, sizeof st[0]);
    for (size_t i = 0; i < len;) {
        re_frame *f = &st[top];
        char c = pattern[i];
        unsigned copies = 0;
        size_t used = 1;
        int rep = 0;
        if (c == '*' || c == '?') rep = 1, copies = 1;
        else if (c == '+') rep = 1, copies = 2;
        else if (c == '{') {
            int b = re_bound(pattern + i, &used, &copies);
            if (b < 0) {
                snprintf(why, 96, "a repetition bound above %d", RE_MAX_BOUND);
                return why;
            }
            rep = b == 0;
            used = rep ? used : 1;
        }
        if (rep && f->has_last) {
            if (++repeats > RE_MAX_REPEATS) {
                snprintf(why, 96, "more than %d repetition operators", RE_MAX_REPEATS);
                return why;
            }
            if (++f->last_depth > RE_MAX_DEPTH) {
                snprintf(why, 96, "repetitions nested more than %d deep", RE_MAX_DEPTH);
                return why;
            }
            f->last = f->last * copies + 1;
        } else if (c == '(') {
            if (f->has_last) f->seq += f->last, f->depth = f->last_depth > f->depth ? f->last_depth : f->depth;
            f->has_last = 0;
            memset(&st[++top], 0, sizeof st[0]);
        } else if (c == ')' && top > 0) {
            re_frame g = st[top--];
            f = &st[top];
            if (f->has_last) f->seq += f->last, f->depth = f->last_depth > f->depth ? f->last_depth : f->depth;
            f->last = g.alts + g.seq + g.last + 1;
            f->last_depth = g.depth > g.last_depth ? g.depth : g.last_depth;
            f->has_last = 1;
        } else if (c == '|') {
            f->alts += f->seq + f->last + 1;
            f->depth = f->last_depth > f->depth ? f->last_depth : f->depth;
            f->seq = f->last = 0;
            f->has_last = 0;
        } else {   /* an atom: a character, an escape, a bracket expression, '.', '^', '$' */
            if (c == '\\') {
                if (pattern[i + 1] >= '1' && pattern[i + 1] <= '9') {
                    snprintf(why, 96, "a back-reference (\\%c)", pattern[i + 1]);
                    return why;
                }
                used = pattern[i + 1] ? 2 : 1;
            } else if (c == '[') {
                size_t k = i + 1;
                if (pattern[k] == '^') k++;
                if (pattern[k] == ']') k++;
                while (k < len && pattern[k] != ']') {
                    if (pattern[k] == '[' && (pattern[k + 1] == ':' || pattern[k + 1] == '.' ||
                                              pattern[k + 1] == '=')) {
                        const char *end = strchr(pattern + k + 2, pattern[k + 1]);
                        while (end && end[1] != ']') end = strchr(end + 1, pattern[k + 1]);
                        k = end ? (size_t)(end - pattern) + 2 : len;
                    } else {
                        k++;
                    }
                }
                used = (k < len ? k + 1 : len) - i;
            }
            if (f->has_last) f->seq += f->last, f->depth = f->last_depth > f->depth ? f->last_depth : f->depth;
            f->last = 1;
            f->last_depth = 0;
            f->has_last = 1;
        }
        f = &st[top];
        if (f->alts + f->seq + f->last > RE_MAX_COST) {
            snprintf(why, 96, "expands to more than %d atoms", RE_MAX_COST);
            return why;
        }
        i += used;
    }
    return NULL;
}

static int compile_rule(wp_rule *r, const char *pattern, const char *what, wp_err *e)
{
    char buf[96];
    const char *why = re_problem(pattern, buf);
    if (why)
        return wp_fail(e, WP_EINVAL, "%s: regular expression '%.64s%s': %s (limits: docs/profiles.md)",
                       what, pattern, strlen(pattern) > 64 ? "..." : "", why);
    int rc = regcomp(&r->re, pattern, REG_EXTENDED | REG_NOSUB);
    if (rc) {
        char msg[256];
        regerror(rc, &r->re, msg, sizeof msg);
        return wp_fail(e, WP_EINVAL, "%s: bad regular expression '%s': %s", what, pattern, msg);
    }
    r->pattern = strdup(pattern);
    if (!r->pattern) {
        regfree(&r->re);
        return wp_oom(e, "%s", what);
    }
    return 0;
}

static int push_rule(wp_profile *p, const wp_rule *r, wp_err *e)
{
    wp_rule *n = realloc(p->rules, (p->n_rules + 1) * sizeof *n);
    if (!n) {
        char what[160];
        snprintf(what, sizeof what, "the rules of profile %s", p->name);
        return wp_oom(e, "%s", what);
    }
    p->rules = n;
    p->rules[p->n_rules++] = *r;
    return 0;
}

static void set_defaults(wp_profile *p)
{
    memset(p, 0, sizeof *p);
    p->align = 4096;
    p->stack_experts = 1;
    for (int i = 0; i < WP_ENC_COUNT; i++) p->nmse_max[i] = wp_report_default_nmse_max((wp_enc)i);
}

/* "to" (+ "block", "scale") of a rule; `what` names the rule in messages. */
static int parse_target(wp_rule *r, const char *to, const cJSON *block, const cJSON *scale,
                        const char *what, wp_err *e)
{
    r->br = r->bc = WP_BLOCK_SOURCE;
    r->sfmt = WP_SCALE_E8M0;
    if (!strcmp(to, "passthrough")) {
        r->passthrough = 1;
    } else if (wp_enc_parse(to, &r->enc) != 0) {
        return wp_fail(e, WP_EINVAL,
                       "%s: unknown encoding \"%s\" (passthrough, bf16, f32, f16, fp8, mxfp4, nvfp4)",
                       what, to);
    }
    if ((block || scale) && (r->passthrough || r->enc != WP_ENC_FP8))
        return wp_fail(e, WP_EINVAL, "%s: \"block\" and \"scale\" apply to fp8 only", what);
    if (block) {
        if (cJSON_IsString(block) && !strcmp(block->valuestring, "source")) {
            /* WP_BLOCK_SOURCE */
        } else {
            if (!cJSON_IsArray(block) || cJSON_GetArraySize(block) != 2)
                return wp_fail(e, WP_EINVAL, "%s: \"block\" must be [rows, cols] or \"source\"", what);
            double v[2];
            for (int i = 0; i < 2; i++) {
                const cJSON *x = cJSON_GetArrayItem(block, i);
                if (!cJSON_IsNumber(x) || x->valuedouble < 1 || x->valuedouble > 65536 ||
                    x->valuedouble != (double)(int)x->valuedouble)
                    return wp_fail(e, WP_EINVAL, "%s: \"block\" entries must be integers in [1, 65536]",
                                   what);
                v[i] = x->valuedouble;
            }
            r->br = (uint32_t)v[0];
            r->bc = (uint32_t)v[1];
        }
    }
    if (scale) {
        if (!cJSON_IsString(scale))
            return wp_fail(e, WP_EINVAL, "%s: \"scale\" must be \"e8m0\" or \"f32\"", what);
        if (!strcmp(scale->valuestring, "e8m0"))
            r->sfmt = WP_SCALE_E8M0;
        else if (!strcmp(scale->valuestring, "f32"))
            r->sfmt = WP_SCALE_F32;
        else
            return wp_fail(e, WP_EINVAL, "%s: \"scale\" must be \"e8m0\" or \"f32\", not \"%s\"", what,
                           scale->valuestring);
    }
    return 0;
}

static int known_key(const char *k, const char *const *keys)
{
    for (; *keys; keys++)
        if (!strcmp(k, *keys)) return 1;
    return 0;
}

static int parse_rule(wp_profile *p, const cJSON *j, size_t idx, const char *what, wp_err *e)
{
    static const char *const keys[] = {"match", "from", "to", "block", "scale", "lossy", "comment", NULL};
    char where[256];
    snprintf(where, sizeof where, "%s: rules[%zu]", what, idx);
    if (!cJSON_IsObject(j)) return wp_fail(e, WP_EINVAL, "%s: must be an object", where);
    for (const cJSON *c = j->child; c; c = c->next)
        if (!known_key(c->string, keys))
            return wp_fail(e, WP_EINVAL, "%s: unknown key \"%s\"", where, c->string);
    const cJSON *match = cJSON_GetObjectItemCaseSensitive(j, "match");
    const cJSON *from = cJSON_GetObjectItemCaseSensitive(j, "from");
    const cJSON *to = cJSON_GetObjectItemCaseSensitive(j, "to");
    if (!cJSON_IsString(match)) return wp_fail(e, WP_EINVAL, "%s: \"match\" (a regex string) is required", where);
    if (!cJSON_IsString(to)) return wp_fail(e, WP_EINVAL, "%s: \"to\" (an encoding) is required", where);
    wp_rule r;
    memset(&r, 0, sizeof r);
    r.from = FLOAT_SOURCES;
    if (from) {
        if (!cJSON_IsArray(from) || !cJSON_GetArraySize(from))
            return wp_fail(e, WP_EINVAL, "%s: \"from\" must be a non-empty array of source kinds", where);
        r.from = 0;
        for (const cJSON *x = from->child; x; x = x->next) {
            wp_src_kind k;
            if (!cJSON_IsString(x) || wp_src_kind_parse(x->valuestring, &k) != 0 || k == WP_SRC_RAW)
                return wp_fail(e, WP_EINVAL,
                               "%s: \"from\": unknown source kind %s%s%s (bf16, f16, f32, fp8, mxfp4)",
                               where, cJSON_IsString(x) ? "\"" : "",
                               cJSON_IsString(x) ? x->valuestring : "(not a string)",
                               cJSON_IsString(x) ? "\"" : "");
            r.from |= 1u << k;
        }
    }
    int rc = parse_target(&r, to->valuestring, cJSON_GetObjectItemCaseSensitive(j, "block"),
                          cJSON_GetObjectItemCaseSensitive(j, "scale"), where, e);
    if (rc) return rc;
    const cJSON *lossy = cJSON_GetObjectItemCaseSensitive(j, "lossy");
    if (lossy && !cJSON_IsBool(lossy)) return wp_fail(e, WP_EINVAL, "%s: \"lossy\" must be true or false", where);
    r.lossy = cJSON_IsTrue(lossy);
    if ((rc = compile_rule(&r, match->valuestring, where, e))) return rc;
    if ((rc = push_rule(p, &r, e))) rule_free(&r);
    return rc;
}

int wp_profile_parse(wp_profile *p, const char *json, size_t len, const char *what, wp_err *e)
{
    static const char *const keys[] = {"name", "description", "align", "stack_experts", "fuse_w13",
                                       "thresholds", "rules", "comment", NULL};
    set_defaults(p);
    cJSON *j = cJSON_ParseWithLength(json, len);
    if (!j) return wp_fail(e, WP_EINVAL, "%s: not valid JSON", what);
    int rc = 0;
    if (!cJSON_IsObject(j)) {
        rc = wp_fail(e, WP_EINVAL, "%s: a profile is a JSON object", what);
        goto out;
    }
    for (const cJSON *c = j->child; c; c = c->next)
        if (!known_key(c->string, keys)) {
            rc = wp_fail(e, WP_EINVAL, "%s: unknown key \"%s\"", what, c->string);
            goto out;
        }
    const cJSON *name = cJSON_GetObjectItemCaseSensitive(j, "name");
    if (!cJSON_IsString(name) || !name->valuestring[0] || strlen(name->valuestring) >= sizeof p->name) {
        rc = wp_fail(e, WP_EINVAL, "%s: \"name\" must be a non-empty string of < %zu bytes", what,
                     sizeof p->name);
        goto out;
    }
    snprintf(p->name, sizeof p->name, "%s", name->valuestring);
    const cJSON *d = cJSON_GetObjectItemCaseSensitive(j, "description");
    if (d) {
        if (!cJSON_IsString(d)) {
            rc = wp_fail(e, WP_EINVAL, "%s: \"description\" must be a string", what);
            goto out;
        }
        snprintf(p->description, sizeof p->description, "%s", d->valuestring);
    }
    const cJSON *a = cJSON_GetObjectItemCaseSensitive(j, "align");
    if (a) {
        /* range-checked as the JSON number it is (a double, maybe negative
         * or huge) before any conversion to an integer */
        double v = cJSON_IsNumber(a) ? a->valuedouble : 0;
        uint64_t u = 0;
        if (v >= 4096 && v <= (double)(1u << 30)) u = (uint64_t)v;
        if (!u || (double)u != v || (u & (u - 1))) {
            rc = wp_fail(e, WP_EINVAL, "%s: \"align\" must be a power of two in [4096, 2^30]", what);
            goto out;
        }
        p->align = u;
    }
    const char *bools[] = {"stack_experts", "fuse_w13"};
    int *bdst[] = {&p->stack_experts, &p->fuse_w13};
    for (int i = 0; i < 2; i++) {
        const cJSON *b = cJSON_GetObjectItemCaseSensitive(j, bools[i]);
        if (!b) continue;
        if (!cJSON_IsBool(b)) {
            rc = wp_fail(e, WP_EINVAL, "%s: \"%s\" must be true or false", what, bools[i]);
            goto out;
        }
        *bdst[i] = cJSON_IsTrue(b);
    }
    if (p->fuse_w13 && !p->stack_experts) {
        rc = wp_fail(e, WP_EINVAL, "%s: \"fuse_w13\" needs \"stack_experts\"", what);
        goto out;
    }
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(j, "thresholds");
    if (t) {
        if (!cJSON_IsObject(t)) {
            rc = wp_fail(e, WP_EINVAL, "%s: \"thresholds\" must map encodings to NMSE limits", what);
            goto out;
        }
        for (const cJSON *c = t->child; c; c = c->next) {
            wp_enc en;
            if (wp_enc_parse(c->string, &en) != 0 || !cJSON_IsNumber(c) || !(c->valuedouble >= 0)) {
                rc = wp_fail(e, WP_EINVAL, "%s: thresholds: \"%s\" must be an encoding with a number >= 0",
                             what, c->string);
                goto out;
            }
            p->nmse_max[en] = c->valuedouble;
        }
    }
    const cJSON *rules = cJSON_GetObjectItemCaseSensitive(j, "rules");
    if (rules && !cJSON_IsArray(rules)) {
        rc = wp_fail(e, WP_EINVAL, "%s: \"rules\" must be an array", what);
        goto out;
    }
    size_t i = 0;
    for (const cJSON *r = rules ? rules->child : NULL; r; r = r->next, i++)
        if ((rc = parse_rule(p, r, i, what, e))) goto out;
out:
    cJSON_Delete(j);
    if (rc) wp_profile_free(p);
    return rc;
}

int wp_profile_load(wp_profile *p, const char *name, wp_err *e)
{
    size_t n = strlen(name);
    if (strchr(name, '/') || (n > 5 && !strcmp(name + n - 5, ".json"))) {
        char *text = NULL;
        size_t len = 0;
        int rc = wp_read_small_file(name, 1 << 20, &text, &len, e);
        if (rc) return rc;
        rc = wp_profile_parse(p, text, len, name, e);
        free(text);
        return rc;
    }
    for (const wp_builtin_file *b = wp_builtin_profiles; b->name; b++)
        if (!strcmp(b->name, name)) {
            char what[96];
            snprintf(what, sizeof what, "profile %s", name);
            return wp_profile_parse(p, b->text, strlen(b->text), what, e);
        }
    char list[512] = "";
    size_t off = 0;
    for (const wp_builtin_file *b = wp_builtin_profiles; b->name && off < sizeof list; b++)
        off += (size_t)snprintf(list + off, sizeof list - off, "%s%s", off ? ", " : "", b->name);
    return wp_fail_setting(e, WP_EUSAGE, "profile",
                           "unknown profile \"%s\" (built-in: %s; or a path to a .json file)", name, list);
}

/* ENC of a tensor type override: passthrough | bf16 | f32 | f16 | mxfp4 | nvfp4 |
 * fp8[-RxC][-e8m0|-f32] (fp8 block default: the source's, else 128x128). */
static int parse_override_enc(wp_rule *r, const char *s, const char *what, wp_err *e)
{
    if (strncmp(s, "fp8", 3) || (s[3] && s[3] != '-')) return parse_target(r, s, NULL, NULL, what, e);
    r->enc = WP_ENC_FP8;
    r->br = r->bc = WP_BLOCK_SOURCE;
    r->sfmt = WP_SCALE_E8M0;
    const char *q = s + 3;
    while (*q == '-') {
        q++;
        unsigned br, bc;
        int used = 0;
        if (!strncmp(q, "e8m0", 4) && (q[4] == 0 || q[4] == '-')) {
            r->sfmt = WP_SCALE_E8M0;
            q += 4;
        } else if (!strncmp(q, "f32", 3) && (q[3] == 0 || q[3] == '-')) {
            r->sfmt = WP_SCALE_F32;
            q += 3;
        } else if (isdigit((unsigned char)*q) && sscanf(q, "%ux%u%n", &br, &bc, &used) == 2 &&
                   br >= 1 && bc >= 1 && br <= 65536 && bc <= 65536 && (q[used] == 0 || q[used] == '-')) {
            r->br = br;
            r->bc = bc;
            q += used;
        } else {
            break;
        }
    }
    if (*q)
        return wp_fail(e, WP_EINVAL,
                       "%s: unknown encoding \"%s\" (fp8 takes -RxC and -e8m0|-f32, e.g. fp8-128x128-f32)",
                       what, s);
    return 0;
}

static int add_override(wp_profile *p, const char *spec, wp_err *e)
{
    const char *eq = strrchr(spec, '=');
    char what[320];
    snprintf(what, sizeof what, "tensor type override '%s'", spec);
    if (!eq || eq == spec || !eq[1])
        return wp_fail(e, WP_EUSAGE, "%s: expected REGEX=ENCODING", what);
    wp_rule r;
    memset(&r, 0, sizeof r);
    r.from = FLOAT_SOURCES;
    r.origin = 1;
    int rc = parse_override_enc(&r, eq + 1, what, e);
    if (rc) return rc;
    char *pat = strndup(spec, (size_t)(eq - spec));
    if (!pat) return wp_oom(e, "%s", what);
    rc = compile_rule(&r, pat, what, e);
    free(pat);
    if (rc) return rc;
    if ((rc = push_rule(p, &r, e))) rule_free(&r);
    return rc;
}

int wp_profile_add_override(wp_profile *p, const char *spec, wp_err *e)
{
    const int first = e && !e->code;
    int rc = add_override(p, spec, e);
    /* a refusal is about the override as given: name the setting it came from */
    if (rc && rc != WP_ENOMEM && first && !e->setting[0])
        snprintf(e->setting, sizeof e->setting, "%s", "tensor-type");
    return rc;
}

int wp_profile_copy(wp_profile *dst, const wp_profile *src, wp_err *e)
{
    *dst = *src;
    dst->rules = NULL;
    dst->n_rules = 0;
    for (size_t i = 0; i < src->n_rules; i++) {
        wp_rule r = src->rules[i];
        r.pattern = NULL;
        int rc = compile_rule(&r, src->rules[i].pattern, src->name, e);
        if (!rc && (rc = push_rule(dst, &r, e))) rule_free(&r);
        if (rc) {
            wp_profile_free(dst);
            return rc;
        }
    }
    return 0;
}

static cJSON *rule_to_json(const wp_rule *r)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "match", r->pattern);
    if (r->from != FLOAT_SOURCES) {
        cJSON *f = cJSON_AddArrayToObject(o, "from");
        for (int k = 0; k < WP_SRC_COUNT; k++)
            if (r->from & (1u << k)) cJSON_AddItemToArray(f, cJSON_CreateString(src_names[k]));
    }
    cJSON_AddStringToObject(o, "to", r->passthrough ? "passthrough" : wp_enc_name(r->enc));
    if (!r->passthrough && r->enc == WP_ENC_FP8) {
        if (r->br == WP_BLOCK_SOURCE) {
            cJSON_AddStringToObject(o, "block", "source");
        } else {
            cJSON *b = cJSON_AddArrayToObject(o, "block");
            cJSON_AddItemToArray(b, cJSON_CreateNumber(r->br));
            cJSON_AddItemToArray(b, cJSON_CreateNumber(r->bc));
        }
        cJSON_AddStringToObject(o, "scale", r->sfmt == WP_SCALE_F32 ? "f32" : "e8m0");
    }
    if (r->lossy) cJSON_AddBoolToObject(o, "lossy", 1);
    if (r->origin) cJSON_AddStringToObject(o, "comment", "--tensor-type");
    return o;
}

cJSON *wp_profile_to_json(const wp_profile *p)
{
    cJSON *o = cJSON_CreateObject();
    if (!o) return NULL;
    cJSON_AddStringToObject(o, "name", p->name);
    if (p->description[0]) cJSON_AddStringToObject(o, "description", p->description);
    cJSON_AddNumberToObject(o, "align", (double)p->align);
    cJSON_AddBoolToObject(o, "stack_experts", p->stack_experts);
    cJSON_AddBoolToObject(o, "fuse_w13", p->fuse_w13);
    cJSON *t = cJSON_AddObjectToObject(o, "thresholds");
    for (int i = 0; i < WP_ENC_COUNT; i++) cJSON_AddNumberToObject(t, wp_enc_name((wp_enc)i), p->nmse_max[i]);
    cJSON *rs = cJSON_AddArrayToObject(o, "rules");
    for (size_t i = 0; i < p->n_rules; i++) cJSON_AddItemToArray(rs, rule_to_json(&p->rules[i]));
    return o;
}
