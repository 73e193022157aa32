/* SPDX-License-Identifier: MIT */
/*
 * Pool benchmarks: every shmrig figure next to its physical-limit twin and the
 * seed's way, registered side by side so that one run holds both.
 *
 *   pool/alloc_free/<size>                  alloc + free of one block, hot cache
 *   pool/alloc_free_twin_malloc/<size>      malloc + free of the same size
 *   pool/seed_fresh_segment/<size>          the seed's way per message: shm_open,
 *                                           ftruncate, mmap, first touch of every
 *                                           page, munmap, close, shm_unlink
 *   pool/alloc_free_live/<n>                alloc + free (64 B) with n blocks live
 *   pool/churn_live/<n>                     free one of n live blocks (pseudo-random)
 *                                           and allocate its replacement: the
 *                                           descriptor touched is cold
 *   pool/alloc_free_2proc/<size>            parent: alloc + transfer to a forked
 *                                           child + pass the ref through a shared-
 *                                           memory ring; child: free (into the
 *                                           parent's arena); a batch ends when the
 *                                           child has freed all of it
 *   pool/alloc_free_2proc_twin_ring/<size>  the same ref traffic without the pool
 *   pool/attach_cached                      attach a ref of an already mapped segment
 *   pool/arena_create/{4k,2m}               open a pool, first alloc (creates and
 *                                           pre-faults one 16 MiB arena), free, close
 *   pool/arena_create_twin_shm/{4k,2m}      fresh segment of the same bytes and page
 *                                           size: shm_open (memfd on hugetlbfs for
 *                                           2m) + mmap + first touch + unmap
 *
 * Method: sizes are swept over every size class (64 B .. 1 MiB, x2) and live
 * counts over 1 .. 1,000,000 (x10); inputs and the order of churn are
 * deterministic (splitmix64 from fixed seeds). Each body pins its thread to the
 * first CPU (the forked peer to the second when there is one), opens its own
 * pool, warms it (one alloc/free of the size, so the arena exists and the cache
 * is hot) and checks its state (no live blocks, a non-empty cache) before the
 * timed loop; after it, every block is freed and shmrig_pool_close() must
 * return 0. Loops run in batches (gbench_loop) large enough to keep the shim
 * out of the figures. Any error stops the benchmark with a message.
 *
 * For ratios, run figure and twins interleaved, e.g.
 *
 *   build/bench/shmrig-bench --benchmark_filter='^pool/' --benchmark_min_time=0.05 \
 *       --benchmark_repetitions=10 --benchmark_enable_random_interleaving=true \
 *       --benchmark_out=pool.json --benchmark_out_format=json
 *
 * and compare medians: random interleaving shuffles the repetitions of every
 * benchmark, so a change of machine speed during the run lands on both sides of
 * a ratio instead of on one.
 */
#include "gbench.h"
#include "suite.h"

#include <shmrig/pool.h>
#include <shmrig/topo.h>

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdalign.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* Segments of these benchmarks carry this prefix, so a leftover is easy to tell. */
#define PREFIX "shmrigbench"
/* Iterations per gbench_loop batch for operations of tens of nanoseconds. */
#define SMALL_BATCH 1000
/* Size of the blocks kept live around the timed operation. */
#define LIVE_BLOCK 64
/* Arena of the arena-creation benchmark: 8 hugepages when backed by 2 MiB pages. */
#define ARENA_BYTES ((size_t)16 << 20)
#define HUGE_PAGE ((size_t)2 << 20)
#define FREE_HUGEPAGES "/sys/kernel/mm/hugepages/hugepages-2048kB/free_hugepages"

static uint64_t splitmix64(uint64_t *state)
{
	uint64_t z = (*state += 0x9e3779b97f4a7c15ull);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static int open_pool(size_t arena_size, size_t max_bytes, int backing, shmrig_pool **pool)
{
	struct shmrig_pool_opts opts = {
		.size = sizeof(struct shmrig_pool_opts),
		.prefix = PREFIX,
		.arena_size = arena_size,
		.max_bytes = max_bytes,
		.backing = backing,
	};

	return shmrig_pool_open(&opts, pool);
}

/*
 * A pool with a block of `size` allocated and freed once: its arena exists
 * (pre-faulted) and the block waits in this process's cache. Checked: no live
 * block, something cached.
 */
static shmrig_pool *warm_pool(gbench_state *st, size_t size, size_t max_bytes)
{
	struct shmrig_pool_stats stats = SHMRIG_SIZED(struct shmrig_pool_stats);
	struct shmrig_ref ref;
	shmrig_pool *pool;
	void *data;
	int ret = open_pool(0, max_bytes, SHMRIG_BACKING_AUTO, &pool);

	if (ret) {
		bench_fail(st, "pool_open", ret);
		return NULL;
	}
	ret = shmrig_pool_alloc(pool, size, 0, 0, &ref, &data);
	if (!ret)
		ret = shmrig_pool_free(pool, &ref);
	if (!ret)
		ret = shmrig_pool_stats(pool, &stats);
	if (!ret && (stats.live_blocks != 0 || stats.cached_blocks == 0))
		ret = -SHMRIG_ECORRUPT;
	if (ret) {
		bench_fail(st, "warm the pool", ret);
		(void)!shmrig_pool_close(pool); /* best effort: failed already */
		return NULL;
	}
	return pool;
}

static void close_pool(gbench_state *st, shmrig_pool *pool)
{
	int ret = shmrig_pool_close(pool);

	if (ret)
		bench_fail(st, "pool_close", ret);
}

/* ---- alloc + free, one process ---- */

static void bm_alloc_free(gbench_state *st, void *arg)
{
	size_t size = (size_t)gbench_range(st, 0);
	struct shmrig_ref ref;
	shmrig_pool *pool;
	void *data;
	int ret = 0;

	(void)arg;
	if (!bench_pin(st) || !(pool = warm_pool(st, size, 0)))
		return;
	while (gbench_loop(st, SMALL_BATCH)) {
		for (int i = 0; i < SMALL_BATCH && !ret; i++) {
			ret = shmrig_pool_alloc(pool, size, 0, 0, &ref, &data);
			if (!ret)
				ret = shmrig_pool_free(pool, &ref);
		}
		if (ret) {
			bench_fail(st, "alloc/free", ret);
			break;
		}
	}
	close_pool(st, pool);
	gbench_set_items_processed(st, gbench_iterations(st));
}

static void bm_alloc_free_twin_malloc(gbench_state *st, void *arg)
{
	size_t size = (size_t)gbench_range(st, 0);

	(void)arg;
	if (!bench_pin(st))
		return;
	free(malloc(size)); /* warm: malloc's arena and, for large sizes, its mmap threshold */
	while (gbench_loop(st, SMALL_BATCH)) {
		for (int i = 0; i < SMALL_BATCH; i++) {
			void *p = malloc(size);

			bench_escape(p);
			free(p);
		}
	}
	gbench_set_items_processed(st, gbench_iterations(st));
}

static void bm_seed_fresh_segment(gbench_state *st, void *arg)
{
	size_t size = (size_t)gbench_range(st, 0);
	unsigned long serial = 0;
	int ret;

	(void)arg;
	if (!bench_pin(st))
		return;
	ret = bench_seed_segment("seed", size, NULL, serial++);
	if (ret) {
		bench_fail_os(st, "seed segment (warm-up)", ret);
		return;
	}
	while (gbench_loop(st, 1)) {
		ret = bench_seed_segment("seed", size, NULL, serial++);
		if (ret) {
			bench_fail_os(st, "seed segment", ret);
			break;
		}
	}
	gbench_set_items_processed(st, gbench_iterations(st));
}

/* ---- with many blocks live ---- */

/* n live 64-byte blocks; their refs in a malloc'd array. NULL after bench_fail(). */
static struct shmrig_ref *alloc_live(gbench_state *st, shmrig_pool *pool, size_t n)
{
	struct shmrig_ref *refs = malloc(n * sizeof(*refs));
	struct shmrig_pool_stats stats = SHMRIG_SIZED(struct shmrig_pool_stats);
	void *data;
	int ret = refs ? 0 : -ENOMEM;

	for (size_t i = 0; i < n && !ret; i++) {
		ret = shmrig_pool_alloc(pool, LIVE_BLOCK, 0, 0, &refs[i], &data);
		if (ret) { /* best effort: the alloc's error is the one reported */
			while (i--)
				(void)!shmrig_pool_free(pool, &refs[i]);
		}
	}
	if (!ret)
		ret = shmrig_pool_stats(pool, &stats);
	if (!ret && stats.live_blocks != n) {
		ret = -SHMRIG_ECORRUPT;
		for (size_t i = 0; i < n; i++) /* best effort: failed already */
			(void)!shmrig_pool_free(pool, &refs[i]);
	}
	if (ret) {
		bench_fail(st, "allocate the live blocks", ret);
		free(refs);
		return NULL;
	}
	return refs;
}

static void free_live(gbench_state *st, shmrig_pool *pool, struct shmrig_ref *refs, size_t n)
{
	int ret = 0;

	for (size_t i = 0; i < n; i++) {
		int one = shmrig_pool_free(pool, &refs[i]);

		if (one && !ret)
			ret = one;
	}
	free(refs);
	if (ret)
		bench_fail(st, "free the live blocks", ret);
}

/* The hot alloc+free beside n live blocks, or churn among them. */
static void live(gbench_state *st, bool churn)
{
	size_t n = (size_t)gbench_range(st, 0);
	uint64_t rng = 0x5eed0000u + n;
	struct shmrig_ref *refs, ref;
	shmrig_pool *pool;
	void *data;
	int ret = 0;

	if (!bench_pin(st) || !(pool = warm_pool(st, LIVE_BLOCK, 0)))
		return;
	refs = alloc_live(st, pool, n);
	if (!refs) {
		close_pool(st, pool);
		return;
	}
	while (gbench_loop(st, SMALL_BATCH)) {
		if (churn) {
			for (int i = 0; i < SMALL_BATCH && !ret; i++) {
				struct shmrig_ref *victim = &refs[splitmix64(&rng) % n];

				ret = shmrig_pool_free(pool, victim);
				if (!ret)
					ret = shmrig_pool_alloc(pool, LIVE_BLOCK, 0, 0, victim,
								&data);
			}
		} else {
			for (int i = 0; i < SMALL_BATCH && !ret; i++) {
				ret = shmrig_pool_alloc(pool, LIVE_BLOCK, 0, 0, &ref, &data);
				if (!ret)
					ret = shmrig_pool_free(pool, &ref);
			}
		}
		if (ret) {
			bench_fail(st, churn ? "churn" : "alloc/free", ret);
			break;
		}
	}
	/* after a churn step that freed and failed to allocate, one ref is stale:
	 * free_live() frees all the others */
	free_live(st, pool, refs, n);
	close_pool(st, pool);
	gbench_set_items_processed(st, gbench_iterations(st));
}

static void bm_alloc_free_live(gbench_state *st, void *arg)
{
	(void)arg;
	live(st, false);
}

static void bm_churn_live(gbench_state *st, void *arg)
{
	(void)arg;
	live(st, true);
}

/* ---- reap over many live blocks of a live peer ---- */

/*
 * reap() with n blocks live, all handed to a child that is alive: it must
 * return 0, asking the child's liveness once (not once a block). The figure
 * is the time of one reap() over the n blocks; items = blocks walked.
 */
static void bm_reap_live(gbench_state *st, void *arg)
{
	size_t n = (size_t)gbench_range(st, 0);
	struct shmrig_ref ref;
	shmrig_pool *pool;
	uint64_t peer;
	int wake[2], ret;
	pid_t child;
	void *data;

	(void)arg;
	if (!bench_pin(st) || !(pool = warm_pool(st, 64, (size_t)2 << 30)))
		return;
	if (pipe(wake)) {
		bench_fail_os(st, "pipe", -errno);
		close_pool(st, pool);
		return;
	}
	child = fork();
	if (child == 0) {
		char c;

		close(wake[1]);
		_exit(read(wake[0], &c, 1) < 0); /* alive until the parent closes its end */
	}
	close(wake[0]);
	ret = child < 0 ? -errno : shmrig_pool_peer(pool, child, &peer);
	for (size_t i = 0; i < n && !ret; i++) {
		ret = shmrig_pool_alloc(pool, 64, 0, 0, &ref, &data);
		if (!ret)
			ret = shmrig_pool_transfer_peer(pool, &ref, peer);
	}
	while (!ret && gbench_loop(st, 1)) {
		ret = shmrig_pool_reap(pool);
		if (ret > 0)
			ret = -SHMRIG_ECORRUPT; /* it reclaimed a live peer's block */
	}
	if (ret < 0)
		bench_fail(st, "reap with a live peer", ret);
	close(wake[1]);
	if (child > 0)
		waitpid(child, NULL, 0);
	/* the child is gone: its blocks come back */
	ret = shmrig_pool_reap(pool);
	if (ret >= 0 && (size_t)ret != n)
		ret = -SHMRIG_ELEAK;
	if (ret < 0)
		bench_fail(st, "reap after the peer died", ret);
	close_pool(st, pool);
	gbench_set_items_processed(st, gbench_iterations(st) * (int64_t)n);
}

/* ---- two processes: the parent allocates, a child frees ---- */

/*
 * A single-producer single-consumer ring of refs in shared anonymous memory,
 * mapped before fork. No syscall per ref: the figure is the pool's cost, not a
 * pipe's. Positions are published every PUBLISH refs (and whenever a side is
 * about to wait), so the two cache lines bounce once per batch, not per ref.
 * The ring's capacity bounds the blocks in flight.
 */
#define PUBLISH 16u
/* The child frees at most this many refs a call (shmrig_pool_free_n). */
#define FREE_BATCH 64u

struct ref_ring {
	alignas(64) _Atomic uint64_t tail; /* refs written (producer) */
	alignas(64) _Atomic uint64_t head; /* refs consumed (consumer) */
	alignas(64) _Atomic uint32_t done; /* producer: no ref after tail */
	_Atomic uint32_t ready;            /* consumer: pool open, pinned */
	uint32_t capacity;                 /* a multiple of PUBLISH */
	struct shmrig_ref slots[];
};

struct two_proc {
	struct ref_ring *ring;
	size_t ring_bytes;
	pid_t child;
	uint64_t tail;      /* producer's private position */
	uint64_t head_seen; /* the consumer's position, last read */
};

/* Wait politely: spin a while (the peer runs on another CPU), then let it run
 * (it may share ours). sched_yield() is a system call: not on every spin. */
static void backoff(unsigned *spins)
{
	if (++*spins % 256 == 0) {
		sched_yield();
		return;
	}
#if defined(__x86_64__) || defined(__i386__)
	__builtin_ia32_pause();
#elif defined(__aarch64__)
	__asm__ volatile("yield");
#endif
}

/* The child: free (or, for the twin, read) every ref until the producer is done. */
static int consumer(struct ref_ring *ring, bool use_pool, pid_t parent)
{
	shmrig_pool *pool = NULL;
	uint64_t head = 0, checksum = 0;
	unsigned spins = 0;

	/* pinned to the second CPU when there is one; a failure only costs accuracy */
	bench_pin_cpu_index(1);
	if (use_pool && open_pool(0, 0, SHMRIG_BACKING_AUTO, &pool))
		return 2;
	atomic_store_explicit(&ring->ready, 1, memory_order_release);
	for (;;) {
		uint64_t tail = atomic_load_explicit(&ring->tail, memory_order_acquire);

		if (head == tail) {
			if (atomic_load_explicit(&ring->done, memory_order_acquire) &&
			    atomic_load_explicit(&ring->tail, memory_order_acquire) == head)
				break;
			backoff(&spins);
			if (spins % 65536 == 0 && getppid() != parent)
				return 3; /* orphaned */
			continue;
		}
		while (head < tail) {
			/* the refs from head on, up to the ring's end and FREE_BATCH:
			 * claimed with one call and freed with one, as a consumer that
			 * takes what has come would */
			uint64_t at = head % ring->capacity;
			uint32_t n = (uint32_t)(tail - head);
			const struct shmrig_ref *refs = &ring->slots[at];

			if (n > ring->capacity - at)
				n = (uint32_t)(ring->capacity - at);
			if (n > FREE_BATCH)
				n = FREE_BATCH;
			for (uint32_t i = 0; i < n; i++)
				checksum += refs[i].offset;
			if (use_pool && (shmrig_pool_claim_n(pool, refs, n) ||
					 shmrig_pool_free_n(pool, refs, n)))
				return 4;
			head += n;
			atomic_store_explicit(&ring->head, head, memory_order_release);
		}
	}
	bench_escape(&checksum);
	if (use_pool && shmrig_pool_close(pool))
		return 5;
	return 0;
}

/* Has the child exited (then reaped, with its status in *status)? */
static bool child_gone(pid_t child, int *status)
{
	return waitpid(child, status, WNOHANG) == child;
}

/* Reap the child: wait up to 10 s, then kill it. Its exit code, or -1. */
static int reap_child(pid_t child)
{
	struct timespec ms = { 0, 1000000 };
	int status;

	for (int waited = 0; waited < 10000; waited++) {
		if (child_gone(child, &status))
			return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
		nanosleep(&ms, NULL);
	}
	kill(child, SIGKILL);
	waitpid(child, &status, 0);
	return -1;
}

static int start_consumer(struct two_proc *tp, size_t capacity, bool use_pool)
{
	pid_t parent = getpid();
	unsigned spins = 0;
	int status;

	tp->ring_bytes = sizeof(*tp->ring) + capacity * sizeof(tp->ring->slots[0]);
	tp->ring = mmap(NULL, tp->ring_bytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS,
			-1, 0);
	if (tp->ring == MAP_FAILED)
		return -errno;
	tp->ring->capacity = (uint32_t)capacity;
	tp->tail = tp->head_seen = 0;
	fflush(NULL);
	tp->child = fork();
	if (tp->child < 0) {
		int ret = -errno;

		munmap(tp->ring, tp->ring_bytes);
		return ret;
	}
	if (tp->child == 0) {
		/* the child needs no fd of ours: the ring is memory, the pool opens its own */
		close_range(3, ~0u, 0);
		_exit(consumer(tp->ring, use_pool, parent));
	}
	while (!atomic_load_explicit(&tp->ring->ready, memory_order_acquire)) {
		backoff(&spins);
		if (spins % 1024 == 0 && child_gone(tp->child, &status)) {
			munmap(tp->ring, tp->ring_bytes);
			return -ECHILD;
		}
	}
	return 0;
}

/* Append a ref, waiting while the ring is full. 0, or -ECHILD if the child died. */
static inline __attribute__((always_inline)) int ring_put(struct two_proc *tp,
							  const struct shmrig_ref *ref)
{
	struct ref_ring *ring = tp->ring;
	unsigned spins = 0;
	int status;

	while (tp->tail - tp->head_seen >= ring->capacity) {
		tp->head_seen = atomic_load_explicit(&ring->head, memory_order_acquire);
		if (tp->tail - tp->head_seen < ring->capacity)
			break;
		atomic_store_explicit(&ring->tail, tp->tail, memory_order_release);
		backoff(&spins);
		if (spins % 1024 == 0 && child_gone(tp->child, &status)) {
			tp->child = -1;
			return -ECHILD;
		}
	}
	ring->slots[tp->tail % ring->capacity] = *ref;
	if (++tp->tail % PUBLISH == 0)
		atomic_store_explicit(&ring->tail, tp->tail, memory_order_release);
	return 0;
}

/*
 * Wait until the child has consumed every ref written. Called at the end of
 * each timed batch, so that the figure counts refs freed, not refs queued:
 * otherwise up to a ring's worth of work would fall outside the timing.
 * 0, or -ECHILD if the child died.
 */
static inline __attribute__((always_inline)) int ring_drain(struct two_proc *tp)
{
	struct ref_ring *ring = tp->ring;
	unsigned spins = 0;
	int status;

	atomic_store_explicit(&ring->tail, tp->tail, memory_order_release);
	while ((tp->head_seen = atomic_load_explicit(&ring->head, memory_order_acquire)) !=
	       tp->tail) {
		backoff(&spins);
		if (spins % 1024 == 0 && child_gone(tp->child, &status)) {
			tp->child = -1;
			return -ECHILD;
		}
	}
	return 0;
}

/* Tell the child we are done, reap it, unmap the ring. 0, or -ECHILD. */
static int finish_consumer(struct two_proc *tp)
{
	int code = -1;

	atomic_store_explicit(&tp->ring->tail, tp->tail, memory_order_release);
	atomic_store_explicit(&tp->ring->done, 1, memory_order_release);
	if (tp->child > 0)
		code = reap_child(tp->child);
	munmap(tp->ring, tp->ring_bytes);
	return code == 0 ? 0 : -ECHILD;
}

/*
 * Blocks in flight at most: the ring's capacity (64 MiB of blocks, 64 to 4096
 * refs), plus what the parent's cache and the child's current batch hold.
 */
static size_t ring_capacity(size_t size)
{
	size_t capacity = ((size_t)64 << 20) / size;

	if (capacity < 64)
		capacity = 64;
	if (capacity > 4096)
		capacity = 4096;
	return capacity / PUBLISH * PUBLISH;
}

/*
 * Before the child exists: allocate and free as many blocks as can ever be in
 * flight, so that every arena the timed loop needs is created (and faulted) now.
 */
static int prewarm(shmrig_pool *pool, size_t size, size_t count)
{
	struct shmrig_ref *refs = malloc(count * sizeof(*refs));
	void *data;
	size_t n = 0;
	int ret = refs ? 0 : -ENOMEM;

	for (; n < count && !ret; n++)
		ret = shmrig_pool_alloc(pool, size, 0, 0, &refs[n], &data);
	if (ret)
		n--;
	while (n--) {
		int one = shmrig_pool_free(pool, &refs[n]);

		if (one && !ret)
			ret = one;
	}
	free(refs);
	return ret;
}

/*
 * The figure's warm-up, before its timed loop: one publication of refs through
 * to the child. The child's first ref attaches (and populates) our arena, ~9 ms
 * for 64 MiB here, no part of the steady state: in the timed loop it was ~18 ns
 * an item of a 0.05 s run. A whole PUBLISH keeps the timed loop's publications
 * on lines of their own. The twin has no pool to warm and runs as it did.
 */
static __attribute__((noinline)) int warm_child(struct two_proc *tp, shmrig_pool *pool, size_t size,
						uint64_t peer)
{
	struct shmrig_ref ref;
	void *data;
	int ret = 0;

	for (unsigned i = 0; i < PUBLISH && !ret; i++) {
		ret = shmrig_pool_alloc(pool, size, 0, 0, &ref, &data);
		if (!ret)
			ret = shmrig_pool_transfer_peer(pool, &ref, peer);
		if (!ret)
			ret = ring_put(tp, &ref);
	}
	return ret ? ret : ring_drain(tp);
}

/* The figure (use_pool) or its twin: the same refs through the ring, no pool. */
static void two_proc(gbench_state *st, bool use_pool)
{
	size_t size = (size_t)gbench_range(st, 0);
	size_t capacity = ring_capacity(size);
	struct shmrig_pool_stats stats = SHMRIG_SIZED(struct shmrig_pool_stats);
	struct shmrig_ref ref;
	shmrig_pool *pool = NULL;
	struct two_proc tp = { .child = -1 };
	uint64_t serial = 0, peer = 0;
	void *data;
	int ret = 0;

	if (!bench_pin(st))
		return;
	if (use_pool) {
		pool = warm_pool(st, size, (size_t)2 << 30);
		if (!pool)
			return;
		ret = prewarm(pool, size, capacity + 256);
		if (ret) {
			bench_fail(st, "prewarm the pool", ret);
			close_pool(st, pool);
			return;
		}
	}
	memset(&ref, 0, sizeof(ref));
	ret = start_consumer(&tp, capacity, use_pool);
	if (ret) {
		bench_fail_os(st, "start the child", ret);
		if (pool)
			close_pool(st, pool);
		return;
	}
	/* the child's identity, once: each transfer then costs no syscall */
	if (use_pool)
		ret = shmrig_pool_peer(pool, tp.child, &peer);
	if (use_pool && !ret) {
		/* a copy: tp's address never escapes, so the loop keeps it in registers */
		struct two_proc warm = tp;

		ret = warm_child(&warm, pool, size, peer);
		tp = warm;
	}
	while (gbench_loop(st, SMALL_BATCH)) {
		for (int i = 0; i < SMALL_BATCH && !ret; i++) {
			if (use_pool) {
				ret = shmrig_pool_alloc(pool, size, 0, 0, &ref, &data);
				if (!ret)
					ret = shmrig_pool_transfer_peer(pool, &ref, peer);
			} else {
				ref.offset = serial++; /* what the child reads */
			}
			if (!ret)
				ret = ring_put(&tp, &ref);
		}
		if (!ret)
			ret = ring_drain(&tp);
		if (ret == -ECHILD) {
			bench_fail_os(st, "the child died", ret);
			break;
		}
		if (ret) {
			bench_fail(st, "alloc/transfer", ret);
			break;
		}
	}
	ret = finish_consumer(&tp);
	if (ret)
		bench_fail_os(st, "the child failed (or was killed after 10 s)", ret);
	if (use_pool) {
		ret = shmrig_pool_stats(pool, &stats);
		if (!ret && stats.live_blocks)
			ret = -SHMRIG_ELEAK;
		if (ret)
			bench_fail(st, "blocks left live after the child freed", ret);
		close_pool(st, pool);
	}
	gbench_set_items_processed(st, gbench_iterations(st));
}

static void bm_alloc_free_2proc(gbench_state *st, void *arg)
{
	(void)arg;
	two_proc(st, true);
}

static void bm_alloc_free_2proc_twin_ring(gbench_state *st, void *arg)
{
	(void)arg;
	two_proc(st, false);
}

/* ---- attach ---- */

static void bm_attach_cached(gbench_state *st, void *arg)
{
	struct shmrig_ref ref;
	shmrig_pool *pool;
	void *data;
	int ret;

	(void)arg;
	if (!bench_pin(st) || !(pool = warm_pool(st, LIVE_BLOCK, 0)))
		return;
	ret = shmrig_pool_alloc(pool, LIVE_BLOCK, 0, 0, &ref, &data);
	if (!ret)
		ret = shmrig_pool_attach(pool, &ref, &data); /* the segment is mapped */
	while (!ret && gbench_loop(st, SMALL_BATCH)) {
		for (int i = 0; i < SMALL_BATCH && !ret; i++) {
			ret = shmrig_pool_attach(pool, &ref, &data);
			bench_escape(data);
		}
	}
	if (ret)
		bench_fail(st, "attach", ret);
	else if ((ret = shmrig_pool_free(pool, &ref)))
		bench_fail(st, "free", ret);
	close_pool(st, pool);
	gbench_set_items_processed(st, gbench_iterations(st));
}

/* ---- arena creation ---- */

struct page_case {
	int backing;      /* of the pool */
	size_t page_size; /* the figure is invalid with any other */
};

/* Not const: gbench passes a void * to the body, which only reads them. */
static struct page_case page_4k = { SHMRIG_BACKING_PLAIN, 4096 };
static struct page_case page_2m = { SHMRIG_BACKING_HUGETLB, HUGE_PAGE };

static long free_hugepages(void)
{
	FILE *f = fopen(FREE_HUGEPAGES, "re");
	long n = -1;

	if (f) {
		if (fscanf(f, "%ld", &n) != 1)
			n = -1;
		fclose(f);
	}
	return n;
}

/* Skip (true) when 2 MiB pages are wanted and not enough are free. */
static bool skip_without_hugepages(gbench_state *st, const struct page_case *pc)
{
	long need = (long)(ARENA_BYTES / HUGE_PAGE), have;
	char message[256];

	if (pc->page_size != HUGE_PAGE)
		return false;
	have = free_hugepages();
	if (have >= need)
		return false;
	snprintf(message, sizeof(message),
		 "needs %ld free 2 MiB hugepages, %ld free (sysctl vm.nr_hugepages)", need, have);
	bench_unavailable(st, message);
	return true;
}

/* Open a pool, make its first arena, free, close. 0 or -errno; -ENOTSUP wrong page size. */
static int arena_cycle(const struct page_case *pc, char *why, size_t why_len)
{
	struct shmrig_pool_info info = SHMRIG_SIZED(struct shmrig_pool_info);
	struct shmrig_ref ref;
	shmrig_pool *pool;
	void *data;
	int ret = open_pool(ARENA_BYTES, 0, pc->backing, &pool), closed;

	if (ret)
		return ret;
	ret = shmrig_pool_alloc(pool, LIVE_BLOCK, 0, 0, &ref, &data);
	if (!ret) {
		int freed;

		ret = shmrig_pool_info(pool, &info);
		if (!ret && info.page_size != pc->page_size) {
			snprintf(why, why_len, "got %zu-byte pages: %s", info.page_size,
				 info.reason);
			ret = -ENOTSUP;
		}
		freed = shmrig_pool_free(pool, &ref);
		if (!ret)
			ret = freed;
	}
	closed = shmrig_pool_close(pool);
	return ret ? ret : closed;
}

static void bm_arena_create(gbench_state *st, void *arg)
{
	const struct page_case *pc = arg;
	char why[512] = "";
	int ret;

	if (!bench_pin(st) || skip_without_hugepages(st, pc))
		return;
	ret = arena_cycle(pc, why, sizeof(why));
	while (!ret && gbench_loop(st, 1))
		ret = arena_cycle(pc, why, sizeof(why));
	if (ret == -ENOTSUP)
		bench_unavailable(st, why);
	else if (ret)
		bench_fail(st, "arena cycle", ret);
	gbench_set_bytes_processed(st, gbench_iterations(st) * (int64_t)ARENA_BYTES);
	gbench_set_items_processed(st, gbench_iterations(st));
}

/* The seed's way for the same bytes: a fresh segment, first touch of every page. */
static int fresh_segment_cycle(const struct page_case *pc, unsigned long serial)
{
	char name[64];
	char *p;
	int fd, ret = 0;

	if (pc->page_size == HUGE_PAGE) {
		fd = memfd_create(PREFIX "-twin", MFD_CLOEXEC | MFD_HUGETLB);
		name[0] = '\0';
	} else {
		snprintf(name, sizeof(name), "/" PREFIX "-twin-%d-%lu", (int)getpid(), serial);
		fd = shm_open(name, O_CREAT | O_EXCL | O_RDWR | O_CLOEXEC, 0600);
	}
	if (fd < 0)
		return -errno;
	if (ftruncate(fd, (off_t)ARENA_BYTES)) {
		ret = -errno;
		goto out;
	}
	/* hugetlb reserves the pages at mmap: no SIGBUS at first touch */
	p = mmap(NULL, ARENA_BYTES, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (p == MAP_FAILED) {
		ret = -errno;
		goto out;
	}
	for (size_t off = 0; off < ARENA_BYTES; off += pc->page_size)
		p[off] = 1;
	bench_escape(p);
	munmap(p, ARENA_BYTES);
out:
	close(fd);
	if (name[0])
		shm_unlink(name);
	return ret;
}

static void bm_arena_create_twin(gbench_state *st, void *arg)
{
	const struct page_case *pc = arg;
	unsigned long serial = 0;
	int ret;

	if (!bench_pin(st) || skip_without_hugepages(st, pc))
		return;
	ret = fresh_segment_cycle(pc, serial++);
	while (!ret && gbench_loop(st, 1))
		ret = fresh_segment_cycle(pc, serial++);
	if (ret)
		bench_fail_os(st, "fresh segment", ret);
	gbench_set_bytes_processed(st, gbench_iterations(st) * (int64_t)ARENA_BYTES);
	gbench_set_items_processed(st, gbench_iterations(st));
}

/* ---- registration ---- */

/* Every size class: 64 B .. 1 MiB. */
static void size_classes(gbench_benchmark *b)
{
	gbench_range_mult(b, SHMRIG_POOL_MIN_BLOCK, SHMRIG_POOL_MAX_CLASS_BLOCK, 2);
}

/* ---- NUMA: writing a block on the local node vs a remote one ---- */

/*
 * 1 MiB written per iteration into a block of a pool bound to the node of the
 * benchmark's CPU (local) or to another node (remote). On a machine with one
 * node there is nothing to compare: skipped, saying so.
 */
static void bm_numa_write(gbench_state *st, void *arg)
{
	const bool remote = arg != NULL;
	shmrig_topo *topo = shmrig_topo_system();
	struct shmrig_pool_opts opts = { .size = sizeof(struct shmrig_pool_opts),
					 .prefix = PREFIX,
					 .flags = SHMRIG_POOL_BIND_NODE };
	const size_t size = (size_t)1 << 20;
	struct shmrig_ref ref;
	shmrig_pool *pool;
	int cpu_node, ret;
	void *data;

	if (!topo || shmrig_topo_num_nodes(topo) < 2) {
		bench_unavailable(st, "one NUMA node here: no remote memory to compare with");
		return;
	}
	if (!bench_pin(st))
		return;
	cpu_node = shmrig_topo_cpu_node(topo, shmrig_topo_current_cpu());
	opts.numa_node = cpu_node;
	if (remote)
		for (int i = 0; i < shmrig_topo_num_nodes(topo); i++)
			if (shmrig_topo_node_os_index(topo, i) != cpu_node) {
				opts.numa_node = shmrig_topo_node_os_index(topo, i);
				break;
			}
	ret = shmrig_pool_open(&opts, &pool);
	if (ret) {
		bench_fail(st, "pool_open bound to a node", ret);
		return;
	}
	ret = shmrig_pool_alloc(pool, size, 0, 0, &ref, &data);
	if (ret) {
		bench_fail(st, "pool_alloc", ret);
		(void)!shmrig_pool_close(pool); /* best effort: failed already */
		return;
	}
	while (gbench_loop(st, 1))
		memset(data, (int)gbench_iterations(st), size);
	gbench_set_bytes_processed(st, gbench_iterations(st) * (int64_t)size);
	ret = shmrig_pool_free(pool, &ref);
	if (ret)
		bench_fail(st, "pool_free", ret);
	close_pool(st, pool);
}

void bench_pool_register(void)
{
	size_classes(gbench_register("pool/alloc_free", bm_alloc_free, NULL));
	size_classes(
		gbench_register("pool/alloc_free_twin_malloc", bm_alloc_free_twin_malloc, NULL));
	size_classes(gbench_register("pool/seed_fresh_segment", bm_seed_fresh_segment, NULL));
	gbench_range_mult(gbench_register("pool/alloc_free_live", bm_alloc_free_live, NULL), 1,
			  1000000, 10);
	gbench_range_mult(gbench_register("pool/churn_live", bm_churn_live, NULL), 1, 1000000, 10);
	size_classes(gbench_register("pool/alloc_free_2proc", bm_alloc_free_2proc, NULL));
	size_classes(gbench_register("pool/alloc_free_2proc_twin_ring",
				     bm_alloc_free_2proc_twin_ring, NULL));
	gbench_register("pool/attach_cached", bm_attach_cached, NULL);
	gbench_unit(gbench_range_mult(gbench_register("pool/reap_live", bm_reap_live, NULL), 1000,
				      1000000, 1000),
		    'm');
	gbench_unit(gbench_register("pool/arena_create/4k", bm_arena_create, &page_4k), 'u');
	gbench_unit(gbench_register("pool/arena_create_twin_shm/4k", bm_arena_create_twin,
				    &page_4k),
		    'u');
	gbench_unit(gbench_register("pool/arena_create/2m", bm_arena_create, &page_2m), 'u');
	gbench_unit(gbench_register("pool/arena_create_twin_shm/2m", bm_arena_create_twin,
				    &page_2m),
		    'u');
	/* arg NULL: local; non-NULL: remote */
	gbench_register("pool/numa_write/local", bm_numa_write, NULL);
	gbench_register("pool/numa_write/remote", bm_numa_write, (void *)1);
}
