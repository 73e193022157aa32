/* SPDX-License-Identifier: MIT */
/*
 * The tail of the plan (issue 14): a seeded discrete-event simulation of each
 * flow's arrivals and holds, sampled on a fixed time grid after a warm-up.
 * Pure computation: no pool, no shm, no clock. The same seed gives the same
 * result, bit for bit.
 *
 * Each producer is an independent sender at rate / producers (draw.h's
 * arrivals). Message k of a producer arrives at a_k and is allocated at
 *
 *   s_k = max(a_k, s_{k-window} + flight)
 *
 * a producer has at most `window` messages in flight, and flight_ms is a
 * constant, so slots come back in the order they were taken: one whose
 * window is full queues its arrivals (FIFO) until the oldest of its window
 * arrives. The block (class plan_class_of(plan_draw_size())) is live from s_k
 * to s_k + flight + hold (plan_draw_hold_s()). Frees wait in a min-heap.
 *
 * Samples: at t = warmup + g * interval (g < samples), each simulated
 * producer's live blocks per class, large blocks and live bytes; a flow's
 * total is the sum over its producers at the same instant, a node's the sum
 * over the flows whose producers are on it. Statistics over the samples:
 * mean, p99, p99.9 (the smallest value at least that share of samples is
 * at or below) and max.
 *
 * Bounded: at most max_events events (an allocation and a free each count),
 * the simulated time is cut to fit and the result says how long was
 * simulated. A flow of more than PLAN_SIM_MAX_PRODUCERS producers simulates
 * that many (producers are alike); its total is then that sum rescaled to
 * the flow's mean and variance (mean P m, variance P s^2: sums of independent
 * producers), which the result flags.
 */
#ifndef SHMRIG_PLAN_SIM_H
#define SHMRIG_PLAN_SIM_H

#include "model.h"
#include "workload.h"

#include <stdint.h>

#define PLAN_SIM_DEFAULT_EVENTS 4000000u
#define PLAN_SIM_MAX_EVENTS 100000000u
#define PLAN_SIM_MAX_PRODUCERS 32u
#define PLAN_SIM_SAMPLES 10000u                /* on the grid after the warm-up */
#define PLAN_SIM_LARGE SHMRIG_POOL_NUM_CLASSES /* the class index of large blocks */

struct plan_sim_opts {
	uint64_t seed;
	uint64_t max_events; /* 0: PLAN_SIM_DEFAULT_EVENTS */
	uint64_t pool_limit; /* bytes of one producer's pool (SHMRIG_POOL_MAX); 0: none */
	double duration_s;   /* simulated time after the warm-up; 0: 10 s or 200 warm-ups */
};

struct plan_stat {
	double mean, p99, p999, max;
};

struct plan_sim_flow {
	unsigned producers_simulated; /* < producers: totals rescaled (see above) */
	uint64_t messages;            /* allocated by the simulated producers after the warm-up */
	double offered_rate;          /* the flow's rate */
	double achieved_rate;         /* allocations a second after the warm-up, all producers */
	double window_wait_mean_s;    /* from arrival to allocation, mean */
	int window_saturated;         /* rate / producers > window / flight: the queue grows */
	/* per class and [PLAN_SIM_LARGE]: live blocks of the whole flow, and of one producer */
	struct plan_stat blocks[SHMRIG_POOL_NUM_CLASSES + 1];
	struct plan_stat blocks_per_producer[SHMRIG_POOL_NUM_CLASSES + 1];
	struct plan_stat bytes; /* live bytes (blocks and large segments), the whole flow */
	/* --pool-limit: the first allocation that took a producer's pool past it */
	int exhausted;
	unsigned exhaust_class; /* PLAN_SIM_LARGE: a large block */
	double exhaust_time_s;  /* since the start, warm-up included */
	unsigned exhaust_producer;
	uint64_t exhaust_need; /* the bytes that allocation needed */
};

struct plan_sim_node {
	int node;
	struct plan_stat blocks, bytes; /* all flows whose producers are on the node */
};

struct plan_sim_result {
	uint64_t seed;
	double warmup_s, simulated_s, sample_interval_s; /* simulated_s: after the warm-up */
	unsigned samples;
	uint64_t events;
	int event_capped;      /* simulated_s was cut to fit max_events */
	int short_warmup;      /* the warm-up is shorter than the longest block lives */
	double longest_life_s; /* flight + 3 x the p99 hold, the longest flow's */
	unsigned nflows;
	struct plan_sim_flow flows[PLAN_MAX_FLOWS];
	/* the workload's live blocks per class and [PLAN_SIM_LARGE], all flows, and bytes */
	struct plan_stat blocks[SHMRIG_POOL_NUM_CLASSES + 1];
	struct plan_stat bytes;
	unsigned nnodes;
	struct plan_sim_node nodes[PLAN_MAX_FLOWS];
	/* the series, samples long: all flows' live blocks and bytes at each sample */
	double *series_blocks, *series_bytes;
};

/*
 * Simulate wl. Returns 0, -EINVAL for a bad option (max_events above
 * PLAN_SIM_MAX_EVENTS, a negative duration), -ENOMEM. On success call
 * plan_sim_free(r) for its series.
 */
int plan_sim_run(const struct plan_workload *wl, const struct plan_sim_opts *opts,
		 struct plan_sim_result *r);
void plan_sim_free(struct plan_sim_result *r);

/*
 * The plan sized at the simulation's p99.9: `mean` (plan_model()'s) with each
 * flow's chunks, bytes and pools sized at the p99.9 of one producer's live
 * blocks per class, and the totals and nodes that follow.
 */
void plan_model_tail(const struct plan_workload *wl, const struct plan_result *mean,
		     const struct plan_sim_result *sim, struct plan_result *tail);

/* mean, p99, p99.9, max of n values (sorted in place). */
void plan_stat_of(double *values, size_t n, struct plan_stat *out);

#endif
