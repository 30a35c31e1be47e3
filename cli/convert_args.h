/*
 * convert_args.h — what `wpack plan`, `convert` and `quant` share: their
 * options, opening the checkpoint + config + profile, building the plan, and
 * printing the quantisation report.
 */
#ifndef WP_CLI_CONVERT_ARGS_H
#define WP_CLI_CONVERT_ARGS_H

#include "cli/cli.h"
#include "convert/convert.h"

#define CV_MAX_TYPES 256

enum {   /* which options a command accepts */
    CV_OUT = 1, CV_RUN = 2, CV_REPORT = 4, CV_LIST = 8, CV_TOP = 16, CV_RECALL = 32,
};

typedef struct cv_args {
    const char *ckpt, *profile, *out, *report;
    const char *types[CV_MAX_TYPES];
    int ntypes;
    int json, threads, force, list, top, recall;
    double recall_min;
    uint64_t mem_budget;
    wp_plan_opts po;
} cv_args;

/* Parse argv; returns -1 to go on, or the exit code to return (help: 0,
 * usage errors: 2, after printing). */
int cv_parse(const char *cmd, int argc, char **argv, unsigned allowed, void (*usage)(FILE *), cv_args *a);
/* Open the checkpoint and its config, load the profile with the overrides
 * and build the plan.  On failure prints the error and returns the exit code
 * (>= 0); on success returns -1. */
int cv_open(const char *cmd, const cv_args *a, wp_ckpt **k, wp_plan **p);
/* The short report table on `f`, worst NMSE first (at most `top` rows). */
void cv_print_report(FILE *f, const wp_report *r, int top);
/* Write the report JSON to `path` atomically; prints and returns the exit
 * code on failure, -1 on success. */
int cv_write_report(const char *cmd, const wp_report *r, const char *path);

#endif
