/* SPDX-License-Identifier: MIT */
#ifndef SHMRIG_BENCH_SUITE_H
#define SHMRIG_BENCH_SUITE_H

/*
 * The shmrig-bench suite: one file per area, bench/bench_<name>.c, each
 * providing bench_<name>_register(), which registers that area's benchmarks
 * with gbench_register() (gbench.h). main.c calls it before gbench_main() when
 * bench/meson.build found the file and defined HAVE_BENCH_<NAME>.
 */

#include <sched.h> /* cpu_set_t (the build defines _GNU_SOURCE) */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <time.h>

#include <shmrig/topo.h>

#include "gbench.h"

void bench_pool_register(void);
void bench_codec_register(void);
void bench_channel_register(void);
void bench_channel_ucx_register(void);
void bench_wire_register(void);
void bench_peer_seed_register(void);
void bench_peer_ucx_register(void);
void bench_peer_iox_register(void);

/* ---- shared by the suite files (common.c) ---- */

/* Keep the compiler from dropping a store or a malloc/free pair nobody reads. */
static inline void bench_escape(const void *p)
{
	__asm__ volatile("" : : "g"(p) : "memory");
}

/* Stop the benchmark after a shmrig call failed: "failed: what: words (what went wrong)". */
void bench_fail(gbench_state *st, const char *what, int err);
/* Stop the benchmark because this machine lacks what it measures (hugepages,
 * a second NUMA node, 2 CPUs): "skipped: why". Anything else is a failure. */
void bench_unavailable(gbench_state *st, const char *why);
/* The same after an OS call failed (shmrig's last error would be unrelated). */
void bench_fail_os(gbench_state *st, const char *what, int err);
/* Pin the calling thread to the index-th CPU (modulo their count): 0 or -errno. */
int bench_pin_cpu_index(int index);
/* Pin to the first CPU; on failure the benchmark is stopped and false returned. */
bool bench_pin(gbench_state *st);

/*
 * What UCX leaves in /dev/shm. Each run gives UCX a directory of its own for
 * its posix segments (UCX_POSIX_DIR, a new /dev/shm/shmrig-bench-ucx-XXXXXX,
 * in the environment of both processes before they make their UCP objects):
 * whatever is in it after the run is ours by construction (no other process
 * writes there) and a leak: an error, named; it is removed with the
 * directory. /dev/shm at large is shared with other work (a test's UCX run
 * beside ours), where another process's segment would look like ours.
 */
struct bench_ucx_dir {
	char path[64];
	bool made;
};
int bench_ucx_dir_make(struct bench_ucx_dir *dir);
/* Remove what UCX left (failing the benchmark, naming it) and the directory. */
void bench_ucx_dir_check(gbench_state *st, struct bench_ucx_dir *dir);


/* A two-process benchmark: the caller on the topology's CPU 0, its peer (a
 * forked child, which binds itself to peer_cpu) on CPU 1, and the affinity to
 * restore after the run. */
struct bench_pinning {
	shmrig_topo *topo;
	int self_cpu; /* OS indices */
	int peer_cpu;
	cpu_set_t saved;
};
/* Bind this thread to CPU 0. false: the benchmark was stopped (skipped with
 * the reason on a machine with one CPU). */
bool bench_pin_start(gbench_state *st, struct bench_pinning *pin);
void bench_pin_end(struct bench_pinning *pin);
#define BENCH_PEER_TIMEOUT_MS 10000
/* Wait for a child for at most BENCH_PEER_TIMEOUT_MS, then kill it: never a
 * zombie. Its wait status, or -1 if it had to be killed. */
int bench_reap_child(pid_t pid);
/* Reap a peer: if it did not exit with 0, the benchmark is an error. */
void bench_check_peer_exit(gbench_state *st, pid_t pid);
/* Write / read exactly len bytes of a pipe or socket, retrying EINTR: 0, or
 * -errno (-EPIPE: the other end closed). A read waits at most timeout_ms for
 * each chunk (-ETIMEDOUT), or for ever if it is negative. */
int bench_write_all(int fd, const void *buf, size_t len);
int bench_read_all(int fd, void *buf, size_t len, int timeout_ms);
/*
 * The seed's way, one message: a fresh POSIX shm segment of size bytes, mapped,
 * written (a copy of src, or one byte a page if src is NULL), unmapped and
 * removed. tag and serial make the name unique. 0 or -errno.
 */
int bench_seed_segment(const char *tag, size_t size, const void *src, unsigned long serial);

/* ---- round-trip latencies: counters p50_us and p99_us ---- */

/*
 * A log-linear histogram of nanoseconds (HdrHistogram's layout), for
 * percentiles in bounded memory whatever the iteration count: below
 * 2^BENCH_LAT_SUB_BITS ns each value has a bucket of its own; above, each
 * power of two is cut into 2^BENCH_LAT_SUB_BITS buckets, so a bucket spans at
 * most 1/128 (0.78 %) of the values in it, and a percentile, reported as the
 * middle of its bucket, is within 0.4 % of the sample it names. The top
 * bucket ends at BENCH_LAT_MAX_NS (137 s); a longer sample is counted there
 * (and in `clamped`). 31 KiB, no allocation: a body keeps one on its stack,
 * or in a shared mapping when a forked process records (bench_peer_iox.c).
 */
#define BENCH_LAT_SUB_BITS 7
#define BENCH_LAT_TOP_BITS 37 /* samples below 2^37 ns keep their precision */
#define BENCH_LAT_MAX_NS ((UINT64_C(1) << BENCH_LAT_TOP_BITS) - 1)
#define BENCH_LAT_BUCKETS ((BENCH_LAT_TOP_BITS - BENCH_LAT_SUB_BITS + 1) << BENCH_LAT_SUB_BITS)

struct bench_lat {
	uint64_t count;   /* samples recorded */
	uint64_t clamped; /* of them, longer than BENCH_LAT_MAX_NS */
	uint64_t buckets[BENCH_LAT_BUCKETS];
};

void bench_lat_init(struct bench_lat *lat);
void bench_lat_record(struct bench_lat *lat, uint64_t ns);
/* The q-quantile (0 < q <= 1; 0.99 for p99) in ns, nearest rank: the middle
 * of the bucket of the ceil(q * count)-th smallest sample. 0 when empty. */
double bench_lat_percentile(const struct bench_lat *lat, double q);
/* Set the counters p50_us and p99_us of this run (none if nothing was recorded). */
void bench_lat_counters(gbench_state *st, const struct bench_lat *lat);

/* The clock of the rows' manual time (CLOCK_MONOTONIC, vDSO), in ns. */
static inline uint64_t bench_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/*
 * One timed batch of round trips, timed for gbench_set_iteration_time() and
 * recorded in a histogram with one clock read per round trip:
 * bench_lat_batch_start() before the first round trip, bench_lat_mark() once
 * in each, at the same point in each, and bench_lat_batch_end() after the
 * last. Where a round trip is a send and a wait, the mark goes between them:
 * the clock is read while the peer works, so it costs the round trip nothing
 * (a read is about 25 ns here, a 64 B ring round trip about 0.8 us); where it
 * is one call (a session's), after the call. A batch of n round trips gives
 * n samples: the n - 1 spans from a mark to the next, and the span from the
 * start to the first mark joined to the one from the last mark to the end.
 * Each holds one whole round trip (one send, one wait, what is between), and
 * together they add up to the batch's time. bench_lat_batch_end() records
 * them after the batch: no histogram work between two round trips. At most
 * BENCH_LAT_BATCH_MAX round trips a batch (a larger batch is timed but not
 * recorded).
 */
#define BENCH_LAT_BATCH_MAX 256

struct bench_lat_batch {
	uint64_t start_ns;
	unsigned marks;
	uint64_t mark_ns[BENCH_LAT_BATCH_MAX];
};

static inline void bench_lat_batch_start(struct bench_lat_batch *batch)
{
	batch->marks = 0;
	batch->start_ns = bench_now_ns();
}

static inline void bench_lat_mark(struct bench_lat_batch *batch)
{
	uint64_t now = bench_now_ns();

	if (batch->marks < BENCH_LAT_BATCH_MAX)
		batch->mark_ns[batch->marks] = now;
	batch->marks++;
}

/* Read the clock, record the batch's round trips in lat (if not NULL) and
 * return the batch's time in seconds. */
double bench_lat_batch_end(struct bench_lat_batch *batch, struct bench_lat *lat);

#endif
