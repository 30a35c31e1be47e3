/*
 * test_cli_regress.c — the hostile inputs of tests/regress/ (README.md there:
 * what each one did), replayed through the real command each one broke.
 * Every one must end in a clean refusal: exit 2, exactly one line on stderr
 * that names the file and the rule and carries no control character, no
 * output left behind, in under a second and under 50 MB of peak RSS (the
 * child's own, from wait4), under ASan+UBSan too.  Test names start with
 * the module whose parser was fixed.  The same files are also fuzz seeds:
 * tests/test_fuzz_replay.c runs them through every harness.
 */
#include <fcntl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "tests/harness.h"

#define REGRESS "tests/regress"
#define TINY_HF WPT_TINY "/hf"
#define MAX_SECONDS 1.0
#define MAX_RSS_KB (50 * 1024)

typedef struct child {
    int status;          /* exit status, or 128 + signal */
    double seconds;
    long rss_kb;         /* peak RSS of the child, ru_maxrss */
    char err[8192];      /* its stderr */
    size_t err_len;
} child;

/* Run argv (argv[0] = the wpack binary) with stdout to /dev/null and stderr
 * captured, measuring the child alone (wait4). */
static int run_child(char *const argv[], child *c)
{
    memset(c, 0, sizeof *c);
    const char *errp = wpt_path("%s/stderr.%d", wpt_tmpdir(), (int)getpid());
    int fd = open(errp, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) return -1;
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid < 0) return -1;
    if (pid == 0) {
        int dn = open("/dev/null", O_RDWR);
        if (dn < 0 || dup2(dn, 0) < 0 || dup2(dn, 1) < 0 || dup2(fd, 2) < 0) _exit(126);
        execv(argv[0], argv);
        _exit(127);
    }
    struct rusage ru;
    int st;
    if (wait4(pid, &st, 0, &ru) != pid) return -1;
    clock_gettime(CLOCK_MONOTONIC, &b);
    c->seconds = (double)(b.tv_sec - a.tv_sec) + (double)(b.tv_nsec - a.tv_nsec) / 1e9;
    c->rss_kb = ru.ru_maxrss;
    c->status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
    ssize_t n = pread(fd, c->err, sizeof c->err - 1, 0);
    close(fd);
    c->err_len = n > 0 ? (size_t)n : 0;
    c->err[c->err_len] = 0;
    return 0;
}

/* The refusal contract, for `what` (the command line, in messages). */
static void check_refusal(const char *what, const child *c, const char *file, const char *rule)
{
    CHECKF(c->status == 2, "%s: exit %d, expected 2 (stderr: %s)", what, c->status, c->err);
    const char *nl = memchr(c->err, '\n', c->err_len);
    CHECKF(c->err_len > 0 && nl == c->err + c->err_len - 1, "%s: stderr is not exactly one line: %s", what,
           c->err);
    for (size_t i = 0; i + 1 < c->err_len; i++)
        CHECKF((unsigned char)c->err[i] >= 0x20 && c->err[i] != 0x7f,
               "%s: control byte 0x%02x at %zu of stderr: %s", what, (unsigned char)c->err[i], i, c->err);
    CHECKF(strstr(c->err, file) != NULL, "%s: stderr does not name %s: %s", what, file, c->err);
    CHECKF(strstr(c->err, rule) != NULL, "%s: stderr does not state the rule \"%s\": %s", what, rule, c->err);
    CHECKF(c->seconds < MAX_SECONDS, "%s: took %.2f s (limit %.1f s)", what, c->seconds, MAX_SECONDS);
    CHECKF(c->rss_kb < MAX_RSS_KB, "%s: peak RSS %ld KB (limit %d KB)", what, c->rss_kb, MAX_RSS_KB);
}

/* Nothing at `out`, and no temp directory or file beside it. */
static void check_no_output(const char *what, const char *out)
{
    CHECKF(access(out, F_OK) != 0, "%s: %s exists after a refusal", what, out);
    char buf[4096];
    wpt_run(buf, sizeof buf, "ls -A %s | grep -c '^\\.' || true", wpt_tmpdir());
    CHECKF(atoi(buf) == 0, "%s: a temporary file is left in %s", what, wpt_tmpdir());
}

#define ARGV(...) ((char *const[]){(char *)wpt_wpack(), __VA_ARGS__, NULL})

static void wpkz_case(const char *name, const char *record)
{
    const char *z = wpt_path(REGRESS "/wpkz/%s", name);
    char out[512];
    snprintf(out, sizeof out, "%s/restored", wpt_tmpdir());
    child c;
    REQUIRE(run_child(ARGV("unpack", (char *)z, "--list"), &c) == 0);
    check_refusal("unpack --list", &c, z, record);
    CHECK(strstr(c.err, "63744 TiB") == NULL);   /* no size the frames cannot hold */
    REQUIRE(run_child(ARGV("unpack", (char *)z, "-o", out), &c) == 0);
    check_refusal("unpack -o", &c, z, record);
    check_no_output("unpack -o", out);
    REQUIRE(run_child(ARGV("unpack", (char *)z, "--tensor", "model.wpk:a.weight", "-o", out), &c) == 0);
    check_refusal("unpack TENSOR -o", &c, z, record);
    check_no_output("unpack TENSOR -o", out);
}

TEST(format_regress_wpkz_claims_1tib)
{
    wpkz_case("claims-1TiB.wpkz", "manifest.dsse.json: size 1099511629051 bytes, but bytes [1275, "
                                  "1099511629051) are in no frame: only a .wpk file has padding");
}

TEST(format_regress_wpkz_claims_62pib)
{
    wpkz_case("claims-62PiB.wpkz", "manifest.sig: size 70087269200953669 bytes, but bytes [325, "
                                   "70087269200953669) are in no frame");
}

/* A directory with `config` as config.json beside tiny-a's index and shards
 * (symlinks), or `index` as the index.json. */
static const char *ckpt_with(const char *name, const char *config, const char *index)
{
    const char *d = wpt_path("%s/%s", wpt_tmpdir(), name);
    char cwd[2048];
    if (!getcwd(cwd, sizeof cwd) || mkdir(d, 0755)) return NULL;
    if (wpt_run(NULL, 0, "cp %s %s/config.json && cp %s %s/model.safetensors.index.json && "
                         "ln -s %s/" TINY_HF "/model-00001-of-00002.safetensors %s/ && "
                         "ln -s %s/" TINY_HF "/model-00002-of-00002.safetensors %s/",
                config, d, index, d, cwd, d, cwd, d))
        return NULL;
    return d;
}

TEST(model_regress_config_n_routed_experts_2e7)
{
    const char *d = ckpt_with("ckpt", REGRESS "/config/n-routed-experts-2e7.config.json",
                              TINY_HF "/model.safetensors.index.json");
    REQUIRE(d);
    char cfg[512], out[512];
    snprintf(cfg, sizeof cfg, "%s/config.json", d);
    snprintf(out, sizeof out, "%s/build", wpt_tmpdir());
    const char *rule = "n_routed_experts: must be <= 4096 (wpack's limit), found 20000000";
    child c;
    REQUIRE(run_child(ARGV("inspect", (char *)d), &c) == 0);
    check_refusal("inspect", &c, cfg, rule);
    REQUIRE(run_child(ARGV("plan", (char *)d), &c) == 0);
    check_refusal("plan", &c, cfg, rule);
    REQUIRE(run_child(ARGV("convert", (char *)d, "-o", out), &c) == 0);
    check_refusal("convert", &c, cfg, rule);
    check_no_output("convert", out);
}

/* Within the per-key limit but far beyond what the checkpoint holds: the
 * checkpoint's own tensor count bounds the config (docs/config.md). */
TEST(model_regress_config_experts_beyond_checkpoint)
{
    const char *cfg = wpt_path("%s/experts-256.config.json", wpt_tmpdir());
    REQUIRE(wpt_run(NULL, 0, "sed 's/20000000/256/' " REGRESS "/config/n-routed-experts-2e7.config.json > %s",
                    cfg) == 0);
    const char *d = ckpt_with("ckpt", cfg, TINY_HF "/model.safetensors.index.json");
    REQUIRE(d);
    child c;
    REQUIRE(run_child(ARGV("inspect", (char *)d), &c) == 0);
    const char *rule = "n_routed_experts: 256 experts in 5 layers need 7680 expert tensors, more than 4 "
                       "times the checkpoint's 427 tensors";
    check_refusal("inspect", &c, wpt_path("%s/config.json", d), rule);
    REQUIRE(run_child(ARGV("plan", (char *)d), &c) == 0);
    check_refusal("plan", &c, wpt_path("%s/config.json", d), rule);
    /* a mismatch within the factor is still reported, not refused: exit 1 */
    REQUIRE(wpt_run(NULL, 0, "sed -i 's/\"n_routed_experts\": 256/\"n_routed_experts\": 16/' %s/config.json", d) == 0);
    REQUIRE(run_child(ARGV("inspect", (char *)d), &c) == 0);
    CHECKF(c.status == 1, "inspect with 16 experts: exit %d, expected 1 (%s)", c.status, c.err);
}

TEST(convert_regress_profile_regex_blowup)
{
    const char *p = REGRESS "/profile/regex-blowup.json";
    char out[512];
    snprintf(out, sizeof out, "%s/build", wpt_tmpdir());
    const char *rule = "rules[0]: regular expression '.++++";
    child c;
    REQUIRE(run_child(ARGV("plan", TINY_HF, "--profile", (char *)p), &c) == 0);
    check_refusal("plan --profile", &c, p, rule);
    CHECK_CONTAINS(c.err, "repetitions nested more than 2 deep");
    REQUIRE(run_child(ARGV("convert", TINY_HF, "--profile", (char *)p, "-o", out), &c) == 0);
    check_refusal("convert --profile", &c, p, rule);
    check_no_output("convert --profile", out);
    /* the same pattern through --tensor-type: the override is named, and the option */
    REQUIRE(run_child(ARGV("plan", TINY_HF, "--tensor-type",
                           ".++++++++++++++++++++++++++++++++++++++++++++++++=bf16"), &c) == 0);
    check_refusal("plan --tensor-type", &c, "tensor type override '.+++", "repetitions nested more than 2 deep");
    CHECK_CONTAINS(c.err, "(see --tensor-type)");
    /* the other limits, each in one line */
    static const struct { const char *re, *why; } lim[] = {
        {"(a|b|c|d|e){100}{100}", "expands to more than 4096 atoms"},
        {"a{256}", "a repetition bound above 255"},
        {"((a+)*)?", "repetitions nested more than 2 deep"},
        {"(a*)*\\1", "a back-reference (\\1)"},
        {"a*b*c*d*e*f*g*h*i*j*k*l*m*n*o*p*q*r*s*t*u*v*w*x*y*z*A*B*C*D*E*F*G*", "more than 32 repetition operators"},
    };
    for (size_t i = 0; i < sizeof lim / sizeof lim[0]; i++) {
        char spec[256];
        snprintf(spec, sizeof spec, "%s=bf16", lim[i].re);
        REQUIRE(run_child(ARGV("plan", TINY_HF, "--tensor-type", spec), &c) == 0);
        check_refusal(spec, &c, "tensor type override", lim[i].why);
    }
    char longre[400];
    memset(longre, 'a', 300);
    snprintf(longre + 300, sizeof longre - 300, "=bf16");
    REQUIRE(run_child(ARGV("plan", TINY_HF, "--tensor-type", longre), &c) == 0);
    check_refusal("a 300-byte regex", &c, "tensor type override", "longer than 256 bytes");
    /* and what real rules look like still works */
    REQUIRE(run_child(ARGV("plan", TINY_HF, "--tensor-type", "layers\\.[0-9]+\\.(attn|ffn)\\..*(w[13]|wq_[ab])\\.weight$=bf16",
                           "--tensor-type", "^(embed|head)\\.weight$=bf16", "--tensor-type", "[[:alpha:]]{2,3}_norm=bf16"), &c) == 0);
    CHECKF(c.status == 0, "real rules: exit %d: %s", c.status, c.err);
}

TEST(convert_regress_profile_negative_align)
{
    const char *p = REGRESS "/profile/negative-align.json";
    child c;
    REQUIRE(run_child(ARGV("plan", TINY_HF, "--profile", (char *)p), &c) == 0);
    check_refusal("plan --profile", &c, p, "\"align\" must be a power of two in [4096, 2^30]");
    /* every out-of-range JSON number, never converted first */
    static const char *const bad[] = {"-4096", "-1e300", "1e300", "4096.5", "0", "6144", "2147483648", "-0"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        const char *f = wpt_path("%s/align-%zu.json", wpt_tmpdir(), i);
        char body[128];
        snprintf(body, sizeof body, "{\"name\":\"x\",\"align\":%s,\"rules\":[]}", bad[i]);
        REQUIRE(wpt_write_file(f, body, strlen(body)) == 0);
        REQUIRE(run_child(ARGV("plan", TINY_HF, "--profile", (char *)f), &c) == 0);
        check_refusal(bad[i], &c, f, "\"align\" must be a power of two in [4096, 2^30]");
    }
}

TEST(common_regress_ckpt_escape)
{
    const char *d = ckpt_with("ckpt", REGRESS "/ckpt-escape/config.json", REGRESS "/ckpt-escape/model.safetensors.index.json");
    REQUIRE(d);
    child c;
    REQUIRE(run_child(ARGV("inspect", (char *)d), &c) == 0);
    /* the ESC and the line break arrive escaped, visible, in one line */
    check_refusal("inspect", &c, wpt_path("%s/model.safetensors.index.json", d),
                  "weight_map: evil\\n\\x1b[31mFAKE: all good: shard path \"../x\" escapes the checkpoint directory");
    CHECK(memchr(c.err, 0x1b, c.err_len) == NULL);
    REQUIRE(run_child(ARGV("inspect", (char *)d, "--json"), &c) == 0);
    CHECK(memchr(c.err, 0x1b, c.err_len) == NULL);
}
