/* SPDX-License-Identifier: MIT */
/*
 * The workload file of shmrig-plan (issue 14): JSON, read with jansson.
 *
 *   { "name": "small_messages",
 *     "flows": [ { "name": "ticks", "producers": 4, "consumers": 4,
 *                  "rate": 200000, "arrival": "poisson",
 *                  "sizes": "90:64-512,10:512-4K"   (or [[bytes, weight], ...]),
 *                  "codec": "bytes", "hold": {"mean_ms": 2, "p99_ms": 10} (or 2),
 *                  "window": 8, "flight_ms": 0.05, "backend": "ring",
 *                  "numa": {"producer": 0, "consumer": 0} } ] }
 *
 * Only "flows" and each flow's "rate" and "sizes" are required; see workload.c
 * for each field's default and range. The file is untrusted input: its size,
 * the number of flows and of size items are capped before anything is sized
 * by them, unknown keys are errors (a typo must not silently mean a default),
 * and every error names the field path, e.g. "flows[1].sizes[0]: ...".
 */
#ifndef SHMRIG_PLAN_WORKLOAD_H
#define SHMRIG_PLAN_WORKLOAD_H

#include <stddef.h>
#include <stdint.h>

#define PLAN_MAX_FILE_BYTES ((size_t)1 << 20) /* a workload is a few KiB */
#define PLAN_MAX_FLOWS 64u
#define PLAN_MAX_SIZE_ITEMS 32u
#define PLAN_MAX_NAME 64u
#define PLAN_MAX_VALUE_BYTES ((uint64_t)64 << 30) /* 64 GiB: the largest value a flow may send */

enum plan_arrival {
	PLAN_ARRIVAL_POISSON,
	PLAN_ARRIVAL_CONSTANT
};

/* A weighted log-uniform range [min, max]; a histogram bin is min == max. */
struct plan_size_item {
	double weight;
	uint64_t min, max;
};

struct plan_flow {
	char name[PLAN_MAX_NAME];
	unsigned producers, consumers; /* processes; each producer has its own pool */
	double rate;                   /* messages/s of the whole flow, over its producers */
	enum plan_arrival arrival;
	struct plan_size_item sizes[PLAN_MAX_SIZE_ITEMS];
	unsigned nsizes;
	char codec[16];                   /* a built-in kind: bytes, ndarray, table, dataset */
	double hold_mean_ms, hold_p99_ms; /* a consumer keeps a value this long after receipt */
	unsigned window;                  /* messages in flight per producer, at most */
	double flight_ms; /* alloc to the consumer's receipt (encode, send, decode) */
	char backend[8];  /* pipe, uring, ring */
	int producer_node, consumer_node; /* NUMA nodes */
};

struct plan_workload {
	char name[PLAN_MAX_NAME];
	unsigned nflows;
	struct plan_flow flows[PLAN_MAX_FLOWS];
};

/*
 * Read and check a workload file. Returns 0, or -errno with the reason in
 * err (always NUL-terminated): -ENOENT and the like for the file itself,
 * -EFBIG above PLAN_MAX_FILE_BYTES, -EINVAL for anything wrong inside it,
 * naming the field path. wl is fully written on success only.
 */
int plan_workload_load(const char *path, struct plan_workload *wl, char *err, size_t errlen);

/* The same from a buffer (tests; len bytes, need not be NUL-terminated). */
int plan_workload_parse(const char *text, size_t len, struct plan_workload *wl, char *err,
			size_t errlen);

/*
 * Read a whole file of at most `max` bytes into *text (NUL-terminated, free()
 * it). Returns 0, or -errno with the reason in err: -EFBIG above max (never
 * read past it), -EINVAL for what is not a regular file.
 */
int plan_read_file(const char *path, size_t max, char **text, size_t *len, char *err,
		   size_t errlen);

/*
 * Parse weighted log-uniform ranges, "weight:min-max,..." (sizes take K, M, G),
 * the syntax of shmrig-stress --sizes, into items. Returns the item count,
 * or -EINVAL with the reason ("item 2 ('3:64-'): ...") in err.
 */
int plan_parse_size_spec(const char *spec, struct plan_size_item *items, unsigned max_items,
			 char *err, size_t errlen);

#endif
