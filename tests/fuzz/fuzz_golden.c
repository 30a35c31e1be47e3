/*
 * fuzz_golden.c — the golden-output file `wpack parity --golden` reads
 * (verify/parity.c: a safetensors file whose tokens, layer_h_in0, layer_h,
 * prefill_logits, decode_tokens/_logits, mtp_input_ids and mtp_logits are
 * checked for dtype and shape against the model's config, then copied out).
 * The input is the golden file, through a memfd; the model is tiny-a's
 * config (the synth preset) over a source whose every weight is refused, so
 * wp_parity_golden reads and checks the whole golden file and stops at the
 * model load.  Seeds: tests/fuzz/corpus/golden/ (small golden files for
 * tiny-a's shapes).
 */
#include "convert/synth.h"
#include "runtime/runtime.h"
#include "tests/fuzz/fuzz_util.h"
#include "verify/parity.h"

static int no_weight(wp_tsrc *s, const char *name, wp_qweight *out, wp_err *e)
{
    (void)s, (void)out;
    return wp_fail(e, WP_EINVAL, "stub source: %s: no weights", name);
}
static int no_tensor(wp_tsrc *s, const char *name, wp_tview *out, wp_err *e)
{
    (void)s, (void)out;
    return wp_fail(e, WP_EINVAL, "stub source: %s: no tensors", name);
}
static int has_none(wp_tsrc *s, const char *name) { return (void)s, (void)name, 0; }
static void close_none(wp_tsrc *s) { (void)s; }

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static wp_tsrc src = {.path = "stub", .kind = "stub", .weight = no_weight, .tensor = no_tensor,
                          .has = has_none, .close = close_none};
    static int fd = -1;
    if (!src.cfg.vocab_size) {
        wp_err e = {0};
        if (wp_synth_preset(&src.cfg, "tiny", &e)) abort();
    }
    const char *path = fz_memfd_path(&fd, data, size, "golden.safetensors");
    wp_parity_opts o;
    wp_parity_opts_default(&o);
    o.threads = 1;
    wp_parity_report r;
    wp_err e = {0};
    int rc = wp_parity_golden(&src, path, &o, &r, &e);
    fz_check_refusal(rc, &e);
    if (!rc) abort();   /* the stub source cannot load a model */
    return 0;
}
