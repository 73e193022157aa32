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
#include <sys/types.h>

#include <shmrig/topo.h>

#include "gbench.h"

void bench_pool_register(void);
void bench_codec_register(void);
void bench_channel_register(void);
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

#endif
