/* SPDX-License-Identifier: MIT */
/*
 * The capacity model of shmrig-plan, first slice (issue 14): the MEAN only.
 * Pure functions of a workload: no pool is opened, nothing touches shm.
 *
 * Per flow, a message's block is live from its allocation by the producer
 * to the consumer's release: W = flight time + hold time, so by Little's law
 * the mean live blocks of size class c are L_c = rate * P(c) * W, where the
 * in-flight part is at most `window` messages per producer. Only a pool's
 * creator allocates from it, so each producer process has its own arenas
 * on its own node: chunks are counted per producer, ceil(L_c / producers /
 * blocks per chunk), since a chunk serves one class. Blocks above 1 MiB get
 * a segment each (rounded up to a 2 MiB hugepage with its 128-byte trailer),
 * and a pool keeps up to four freed ones mapped.
 *
 * The mean is not what a pool is sized at (one sized at the mean runs out
 * about half the time): sim.h simulates arrivals and holds, and
 * plan_size_flow() sizes the pools again at the simulated p99.9 of one
 * producer's live blocks. plan_model() keeps the mean, Little's law exactly.
 */
#ifndef SHMRIG_PLAN_MODEL_H
#define SHMRIG_PLAN_MODEL_H

#include "workload.h"

#include <shmrig/pool.h>

#include <stdint.h>

#define PLAN_HUGEPAGE ((uint64_t)2 << 20)
#define PLAN_MAX_NODES 1024u
#define PLAN_LARGE_CACHE 4u /* freed large segments a pool keeps mapped */

struct plan_class_need {
	double probability; /* of a message's block falling in this class */
	double blocks;      /* mean live blocks, the whole flow (Little's law) */
	uint64_t chunks;    /* every producer's, each ceil(its blocks / blocks per chunk) */
	uint64_t bytes;     /* chunks * SHMRIG_POOL_CHUNK */
};

struct plan_flow_need {
	double in_flight;        /* mean messages in flight, the whole flow */
	int window_bound;        /* rate * flight_ms exceeds the window: the window caps it */
	double live_per_message; /* W in seconds: in-flight time (capped) + mean hold */
	struct plan_class_need classes[SHMRIG_POOL_NUM_CLASSES];
	double large_probability;
	double large_blocks;        /* mean live blocks above 1 MiB, the whole flow */
	double large_segment_bytes; /* mean segment bytes of one large block */
	uint64_t large_bytes;       /* every producer's live large segments and its cache */
	/* one producer's pool */
	uint64_t chunks_per_producer;
	uint64_t arenas_per_producer;
	uint64_t arena_size; /* SHMRIG_ARENA_SIZE for its producers */
	uint64_t pool_max;   /* SHMRIG_POOL_MAX for its producers */
	uint64_t pool_bytes; /* all its producers */
};

struct plan_node_need {
	int node;
	uint64_t pool_bytes;
	uint64_t hugepages; /* 2 MiB */
};

struct plan_result {
	unsigned nflows;
	struct plan_flow_need flows[PLAN_MAX_FLOWS];
	unsigned nnodes;
	struct plan_node_need nodes[PLAN_MAX_FLOWS]; /* a node per flow at most, ascending */
	struct plan_class_need classes[SHMRIG_POOL_NUM_CLASSES]; /* all flows */
	double large_blocks;
	uint64_t large_bytes;
	uint64_t pool_bytes;    /* all nodes */
	uint64_t hugepages;     /* all nodes */
	uint64_t dev_shm_bytes; /* if no hugepages are there, segments go to /dev/shm */
};

/* The pool's block size of class c: 64 << c. */
uint64_t plan_class_size(unsigned c);

/* Blocks of class c in a chunk other than an arena's first (pool_arena.c's layout). */
uint64_t plan_blocks_per_chunk(unsigned c);

/* The class of a value of `bytes`, or SHMRIG_POOL_NUM_CLASSES for a large block. */
unsigned plan_class_of(uint64_t bytes);

/*
 * Split a flow's size distribution over the classes: prob[c] for each class,
 * prob[SHMRIG_POOL_NUM_CLASSES] for large blocks; *large_segment the mean
 * segment bytes of a large block (0 if none). Ranges are log-uniform.
 */
void plan_size_split(const struct plan_flow *f, double prob[SHMRIG_POOL_NUM_CLASSES + 1],
		     double *large_segment);

/* The mean plan of a workload. */
void plan_model(const struct plan_workload *wl, struct plan_result *r);

/*
 * Size one flow's pools from the live blocks ONE producer's pool must hold:
 * blocks_per_producer[c] of each class, large_per_producer blocks above 1 MiB
 * (segments of n->large_segment_bytes on average). Writes n's chunks, bytes,
 * large_bytes and per-producer figures; leaves its means (probability,
 * blocks, in_flight, ...) alone. plan_model() calls it with L_c / producers;
 * the simulation with its p99.9. Call plan_total() after.
 */
void plan_size_flow(const struct plan_flow *f,
		    const double blocks_per_producer[SHMRIG_POOL_NUM_CLASSES],
		    double large_per_producer, struct plan_flow_need *n);

/* r's totals and nodes from its flows (r->nflows of wl's flows, sized). */
void plan_total(const struct plan_workload *wl, struct plan_result *r);

/* The segment of a large block of `bytes`: payload and trailer in 2 MiB pages. */
uint64_t plan_large_segment(uint64_t bytes);

/*
 * A pool's bytes for `chunks` class chunks (each arena's chunk 0 holds its
 * header: one more chunk per arena of at most SHMRIG_POOL_ARENA_MAX) and
 * large segments of large_bytes. What --pool-limit compares against.
 */
uint64_t plan_pool_bytes(uint64_t chunks, uint64_t large_bytes);

#endif
