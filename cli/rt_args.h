/* rt_args.h — the runtime options that `wpack run` and `wpack parity` share. */
#ifndef WP_CLI_RT_ARGS_H
#define WP_CLI_RT_ARGS_H

/* If argv[*i] is --threads N, --precision fp32|bf16 or --act-quant site|weight,
 * consume it (advancing *i past a separate value) into *threads / *flags
 * (WP_RT_* from runtime/runtime.h) and return 1; a bad value prints one usage
 * line for `cmd` and returns -1.  Anything else: 0, nothing consumed. */
int cli_rt_option(const char *cmd, int argc, char **argv, int *i, int *threads, unsigned *flags);

#endif
