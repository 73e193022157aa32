/* SPDX-License-Identifier: MIT */
/*
 * shmrig-plan's outputs (issue 14): the table for people, the JSON for
 * machines (schema shmrig-plan/2), and --report DIR: DIR/<workload>.md,
 * DIR/<workload>.json and SVG plots drawn by gnuplot, run as a child
 * (execvp, a data file and a script file; never a shell). Without gnuplot
 * the report says the plots were skipped and why.
 */
#ifndef SHMRIG_PLAN_REPORT_H
#define SHMRIG_PLAN_REPORT_H

#include "model.h"
#include "results.h"
#include "sim.h"
#include "verify.h"
#include "workload.h"

#include <jansson.h>
#include <stdint.h>
#include <stdio.h>

/* Everything a plan shows; NULL members were not asked for. */
struct plan_run {
	const char *workload_path;
	const struct plan_workload *wl;
	const struct plan_result *mean; /* Little's law */
	const struct plan_result *tail; /* sized at the simulated p99.9 */
	const struct plan_sim_result *sim;
	const char *results_path; /* --results; NULL: none */
	const struct plan_results *results;
	const struct plan_cpu *cpu;
	uint64_t pool_limit;              /* --pool-limit; 0: none */
	const struct plan_verify *verify; /* --verify that ran; NULL: none or cannot judge */
	const char *verify_status;        /* --verify: what happened, in a line */
	const char *const *what_ifs;
	unsigned nwhat_ifs;
};

void plan_print_table(FILE *out, const struct plan_run *run);
/* The plan on one screen (--brief): a line a flow, the settings, what saturates first. */
void plan_print_brief(FILE *out, const struct plan_run *run);

/* The plan as JSON (the caller owns the reference). */
json_t *plan_to_json(const struct plan_run *run);

/*
 * Write DIR/<workload>.md, DIR/<workload>.json and the plots (DIR is made if
 * missing). Returns 0 or -errno with the reason in err; plots that could not
 * be drawn are not an error: *plots_note says why (empty when drawn).
 */
int plan_write_report(const char *dir, const struct plan_run *run, char *plots_note, size_t notelen,
		      char *err, size_t errlen);

/* A workload name as a file name: [A-Za-z0-9._-], the rest '_'. */
void plan_file_name(const char *name, char *out, size_t len);

#endif
