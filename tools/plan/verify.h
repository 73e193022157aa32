/* SPDX-License-Identifier: MIT */
/*
 * shmrig-plan --verify (issue 14): run the workload with shmrig-stress
 * --workload, put predicted beside measured, and find the saturation rate by
 * stepping the offered rate. The stress tool's JSON (schema in
 * plan_stress_parse()) is input from another process: bounded in size, every
 * field checked, counts capped.
 *
 * The verdict: predicted (the simulation at the planned rate) and measured
 * (the first step, rate-scale 1) agree within PLAN_VERIFY_TOLERANCE on the
 * throughput and on the mean and p99 live blocks of every class predicted to
 * hold at least PLAN_VERIFY_MIN_BLOCKS on average; smaller classes are shown
 * but not judged (a count of a few blocks is all noise: 2 against 3 is 50 %).
 */
#ifndef SHMRIG_PLAN_VERIFY_H
#define SHMRIG_PLAN_VERIFY_H

#include "sim.h"
#include "workload.h"

#include <stdint.h>

#define PLAN_VERIFY_TOLERANCE 0.20
#define PLAN_VERIFY_MIN_BLOCKS 10.0
#define PLAN_VERIFY_MAX_STEPS 8u
#define PLAN_STRESS_MAX_BYTES ((size_t)16 << 20)
#define PLAN_VERIFY_MAX_POINTS 100000u /* occupancy samples kept from one step */

struct plan_measured_class {
	int present;
	double live_mean, live_p99, live_p999, live_max;
};

/* One shmrig-stress --workload run. */
struct plan_measured {
	double rate_scale, duration_s;
	double offered_rate, achieved_rate;
	uint64_t messages, enomem, checksum_failures, lost_blocks;
	double latency_p50_us, latency_p99_us, latency_p999_us, latency_max_us;
	double replay_own_us; /* the replay's own CPU a message (payloads, checksums); 0: not said */
	double replay_own_producer_us; /* ... of which in the producers */
	struct plan_measured_class classes[SHMRIG_POOL_NUM_CLASSES + 1]; /* [15]: large */
};

/*
 * Parse the stress tool's output:
 *   {"kind":"shmrig-stress-workload", "workload":NAME, "duration_s":D,
 *    "rate_scale":X, "seed":N, "offered_rate":R, "achieved_rate":R,
 *    "messages":N, "enomem":N, "checksum_failures":N, "lost_blocks":N,
 *    "latency_us":{"p50":..,"p99":..,"p999":..,"max":..},
 *    "classes":[{"class":c,"block_size":B,"live_mean":..,"live_p99":..,
 *                "live_p999":..,"live_max":..},...],
 *    "large":{"live_mean":..,"live_p99":..,"live_max":..},
 *    "replay_own_us_per_message":.., "replay_own_producer_us_per_message":..
 *    (optional), ...}
 * Returns 0 or -EINVAL naming the field.
 */
int plan_stress_parse(const char *text, size_t len, struct plan_measured *out, char *err,
		      size_t errlen);

/* One row of the comparison. */
struct plan_verify_row {
	char what[48]; /* "class 64 mean", "throughput" */
	double predicted, measured;
	int judged; /* 0: shown only (too few blocks predicted) */
	int agrees;
};

#define PLAN_VERIFY_MAX_ROWS (2 * (SHMRIG_POOL_NUM_CLASSES + 1) + 1)

struct plan_verify {
	unsigned nrows;
	struct plan_verify_row rows[PLAN_VERIFY_MAX_ROWS];
	int pass;
	unsigned disagreements;
	/* the stepping */
	unsigned nsteps;
	struct plan_measured steps[PLAN_VERIFY_MAX_STEPS];
	int saturated; /* a step fell short */
	char saturation_reason[160];
	double saturation_offered; /* the first step that fell short: offered msgs/s */
	double last_good_achieved; /* the step before it: achieved msgs/s */
	double seconds_per_step;
};

/*
 * Compare the simulation with the first step (steps[0] of v, which must be
 * set, nsteps >= 1): fills v's rows, pass and disagreements.
 */
void plan_verify_compare(const struct plan_sim_result *sim, struct plan_verify *v);

/*
 * Whether step i (i >= 1 compares with step 0) shows saturation; writes why.
 */
int plan_verify_saturated(const struct plan_verify *v, unsigned i, char *why, size_t whylen);

/*
 * Run `stress --workload W --duration S --rate-scale X --seed N --json OUT`,
 * its output and errors to `log`, in its own process group, killed after
 * timeout_s. Returns 0 when it exited 0; -ENOENT when it cannot be run;
 * -ETIMEDOUT; -ECHILD when it exited non-zero or by a signal (err says which).
 */
int plan_stress_run(const char *stress, const char *workload, double seconds, double scale,
		    uint64_t seed, const char *out_json, const char *log, double timeout_s,
		    char *err, size_t errlen);

/*
 * The shmrig-stress to run: $SHMRIG_STRESS, else ../stress/shmrig-stress
 * from the directory of this executable (the build tree's layout).
 */
void plan_stress_path(char *out, size_t len);

/*
 * Run a child: argv[0] found on PATH (execvp, never a shell), its stdout and
 * stderr to `log` (NULL: /dev/null), killed with its process group after
 * timeout_s. Returns the exit status (0-255), -ENOENT when it could not be
 * executed (127 from the child), -ETIMEDOUT, -EINTR when a signal ended it,
 * or another -errno from fork.
 */
int plan_spawn(char *const argv[], const char *log, double timeout_s);

#endif
