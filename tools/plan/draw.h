/* SPDX-License-Identifier: MIT */
/*
 * The random draws a workload file defines (issue 14), in one place: the
 * simulation of shmrig-plan (its p99/p99.9 occupancy) and the replay of
 * shmrig-stress --workload draw arrivals, sizes and holds with these very
 * functions, so that the plan and the run it is verified against see the same
 * distributions. Seeded and reproducible: the same seed, the same sequence.
 *
 *   arrivals  "poisson": exponential gaps of mean 1/rate; "constant": 1/rate.
 *   sizes     an item picked by weight, then log-uniform in [min, max]
 *             (a histogram bin, min == max, is that size).
 *   holds     mean 0: none. p99 == mean: that constant. Otherwise a lognormal
 *             with that mean and that 99th percentile (its sigma solved from
 *             p99/mean; where no lognormal has them, the nearest: see draw.c).
 */
#ifndef SHMRIG_PLAN_DRAW_H
#define SHMRIG_PLAN_DRAW_H

#include "workload.h"

#include <stdint.h>

/* xoshiro256** seeded by splitmix64 */
struct plan_rng {
	uint64_t s[4];
};

void plan_rng_seed(struct plan_rng *r, uint64_t seed);
uint64_t plan_rng_next(struct plan_rng *r);
/* Uniform in the open interval (0, 1). */
double plan_rng_uniform(struct plan_rng *r);

/* The gap in seconds before the next message of one sender that sends `rate`
 * messages a second, as the flow's arrival says. */
double plan_draw_gap_s(const struct plan_flow *f, double rate, struct plan_rng *r);

/* A value's size in bytes, from the flow's size items. */
uint64_t plan_draw_size(const struct plan_flow *f, struct plan_rng *r);

/* How long a consumer holds a value, in seconds, from the flow's hold. */
double plan_draw_hold_s(const struct plan_flow *f, struct plan_rng *r);

#endif
