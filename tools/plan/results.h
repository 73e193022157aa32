/* SPDX-License-Identifier: MIT */
/*
 * CPU and bandwidth of a plan (issue 14) from the benchmark suite's JSON
 * (scripts/run's results/<machine>/<stamp>.json, Google Benchmark's format):
 *
 *   codec/<kind>/encode/<size>, codec/<kind>/decode/<size>   cpu_time of one op
 *   channel/<backend>/batch64[/manual_time]   items_per_second: messages a
 *                                  channel carries a second; cpu_time/real_time
 *                                  of it: the sender's CPU share
 *   channel/<backend>/paced[/manual_time]     real_time (manual): CPU seconds
 *                                  of both sides a message of a stream whose
 *                                  peer sleeps between messages; when present,
 *                                  the transport cost (half a side), else the
 *                                  batch64 share (a busy channel's, far less)
 *   context.num_cpus               the machine's CPUs, which every process of
 *                                  the workload shares
 *   codec/memcpy/<size>            bytes_per_second: the largest size is the
 *                                  machine's memory bandwidth
 *
 * A row's figure is its "median" aggregate when the file has one, else the
 * mean of its repetitions; rows with "error_occurred" do not count (and the
 * error names them when nothing else is left). The file is untrusted input:
 * capped at PLAN_RESULTS_MAX_BYTES, every field type checked.
 *
 * Costs between measured sizes are interpolated log-log per codec kind;
 * below the smallest size a value costs what the smallest does, above the
 * largest it grows in proportion to size.
 */
#ifndef SHMRIG_PLAN_RESULTS_H
#define SHMRIG_PLAN_RESULTS_H

#include "workload.h"

#include <stddef.h>

#define PLAN_RESULTS_MAX_BYTES ((size_t)64 << 20) /* a suite's file is under 1 MiB */
#define PLAN_RESULTS_MAX_SIZES 32u
#define PLAN_KINDS 4u    /* ndarray, table, dataset, bytes */
#define PLAN_BACKENDS 3u /* pipe, uring, ring */

/* Cost of one op against value size, ascending sizes. */
struct plan_cost_curve {
	unsigned n;
	double size[PLAN_RESULTS_MAX_SIZES];
	double seconds[PLAN_RESULTS_MAX_SIZES];
	unsigned errored; /* rows of this family that had an error */
	char first_error[160];
};

struct plan_results {
	char cpu_model[64], date[40], git_rev[24];
	struct plan_cost_curve encode[PLAN_KINDS], decode[PLAN_KINDS];
	double channel_rate[PLAN_BACKENDS];      /* messages/s of one channel; 0: not measured */
	double channel_cpu_share[PLAN_BACKENDS]; /* sender's cpu_time / real_time */
	unsigned channel_errored[PLAN_BACKENDS];
	double paced_cpu_s[PLAN_BACKENDS]; /* both sides, a message; 0: not measured */
	unsigned num_cpus;                 /* 0: not given */
	double memcpy_bandwidth;           /* bytes/s at memcpy_size */
	double memcpy_size;
};

/*
 * Read a results file. Returns 0, or -errno with the reason in err: -ENOENT
 * and the like for the file, -EFBIG above PLAN_RESULTS_MAX_BYTES, -EINVAL
 * when it is not the suite's JSON (no "benchmarks" array, rows of the wrong
 * type).
 */
int plan_results_load(const char *path, struct plan_results *out, char *err, size_t errlen);
int plan_results_parse(const char *text, size_t len, struct plan_results *out, char *err,
		       size_t errlen);

/*
 * Whether r has what wl's flows need: encode and decode rows of each flow's
 * codec, the batch64 row of each flow's backend, memcpy. Returns 0, or
 * -EINVAL with every missing family named in err ("codec/bytes/decode/<size>:
 * all 18 rows errored ('decode: ...')").
 */
int plan_results_check(const struct plan_results *r, const struct plan_workload *wl, char *err,
		       size_t errlen);

/* The cost in seconds of one op on a value of `size` bytes (see above). */
double plan_cost_at(const struct plan_cost_curve *c, double size);

enum plan_resource {
	PLAN_RES_PRODUCER_CORE,
	PLAN_RES_CONSUMER_CORE,
	PLAN_RES_CHANNEL,
	PLAN_RES_WINDOW,
	PLAN_RES_MEMORY_BANDWIDTH,
	PLAN_RES_MACHINE, /* the machine's CPUs: every flow's encode, decode and transport */
	PLAN_RES_COUNT
};

const char *plan_resource_name(enum plan_resource res);

struct plan_cpu_flow {
	double encode_s, decode_s, transport_s; /* per message: mean over the sizes */
	int paced;         /* transport_s from channel/<backend>/paced (else batch64) */
	double mean_bytes; /* a value's mean size */
	double copies;     /* memory passes a byte: encode, and decode for bytes */
	/* core-seconds a second at the planned rate, the whole flow */
	double encode_cores, decode_cores, transport_cores;
	double memory_bytes_per_s;
	/* each resource's load at the planned rate (1: saturated) */
	double load[PLAN_RES_COUNT];
	enum plan_resource first; /* the highest load */
	double headroom;          /* 1 / its load: how far the rate can be scaled */
	double saturation_rate;   /* rate x headroom */
};

struct plan_cpu {
	unsigned nflows;
	struct plan_cpu_flow flows[PLAN_MAX_FLOWS];
	double memory_bytes_per_s, memory_bandwidth; /* all flows; measured */
	double machine_cores;                        /* all flows: encode, decode, transport */
	unsigned num_cpus;                           /* the results' machine; 0: unknown */
	unsigned first_flow;                         /* the flow that saturates first */
	double headroom;                             /* all rates scaled together */
};

/*
 * The CPU plan of wl on the machine r was measured on (r checked by
 * plan_results_check()). Resources: one producer's core (encode and send, its
 * rate / producers), one consumer's core (receive and decode, rate /
 * consumers), one channel per producer, the window (window / flight a
 * producer) and the memory bandwidth all flows share. All rates are scaled
 * together: a flow's saturation rate is where its first resource reaches 1.
 */
void plan_cpu_model(const struct plan_workload *wl, const struct plan_results *r,
		    struct plan_cpu *out);

/* The index of a codec kind or a backend name; -1 if unknown. */
int plan_kind_index(const char *codec);
int plan_backend_index(const char *backend);

#endif
