/* SPDX-License-Identifier: MIT */
#ifndef SHMRIG_TEST_HELPERS_H
#define SHMRIG_TEST_HELPERS_H

/* Shared by the cmocka tests: leak checks by accounting and isolated children. */

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <cmocka.h>

/* Meson counts exit 77 as "skipped". */
#define TEST_SKIP_EXIT 77

#define MiB ((size_t)1 << 20)
#define HUGE_PAGE (2 * MiB)
#define FREE_HUGEPAGES "/sys/kernel/mm/hugepages/hugepages-2048kB/free_hugepages"

/*
 * In a forked child a cmocka assert would longjmp into the parent's copy of the
 * test runner: children check with this instead and exit with 1.
 */
#define CHILD_CHECK(cond)                                                                     \
	do {                                                                                  \
		if (!(cond)) {                                                                \
			fprintf(stderr, "child %d: %s:%d: check failed: %s\n", (int)getpid(), \
				__FILE__, __LINE__, #cond);                                   \
			return 1;                                                             \
		}                                                                             \
	} while (0)

/* Deterministic bytes for seed; th_first_mismatch gives the index of the first
 * byte that differs from th_fill(seed), or len. */
void th_fill(unsigned char *p, size_t len, unsigned seed);
size_t th_first_mismatch(const unsigned char *p, size_t len, unsigned seed);

/* Write / read exactly len bytes (retrying EINTR): 0, or -1 on error or EOF. */
int th_write_all(int fd, const void *buf, size_t len);
int th_read_all(int fd, void *buf, size_t len);

/* A pool for tests: plain pages, quiet leak report, these sizes; NULL on failure
 * (usable in forked children, where cmocka asserts must not run). */
struct shmrig_pool *th_open_pool(size_t arena_size, size_t max_bytes);

/* cmocka group setup/teardown: remove segments of dead processes (an earlier
 * killed run, a failed case) with our prefix. */
int th_sweep_leftovers(void **state);

/* cmocka teardown: unlink every segment with our prefix, live creator or not, so
 * that a failed case does not fail the next one (each is reported on stderr).
 * Fails (1) if the segments cannot be listed. */
int th_remove_leftovers(void **state);

/* Live blocks the pool accounts for (fails the test if stats fail). */
struct shmrig_pool;
uint64_t th_live_blocks(struct shmrig_pool *pool);

/* Open fds of this process (entries of /proc/self/fd, minus the one used to read it). */
int th_count_fds(void);

/* Segments in /dev/shm and the hugetlbfs mount whose name starts with `prefix`-. */
int th_count_segments(const char *prefix);

/* Of those, the segments created by process `pid`. */
int th_count_segments_of(const char *prefix, pid_t pid);

/* The low 32 bits of our pid namespace's inode (stat of /proc/self/ns/pid), as
 * segment names carry it; and the digits a well-formed name carries (the
 * first 8 of its last 16): read here independently of the library. */
uint32_t th_pidns(void);
uint32_t th_name_pidns(const char *name);

/* Frames by hand, as a peer might write them (8-aligned, malloc'd; free()).
 * th_frame_build: a frame from parts; th_frame_copy: the first len bytes in a
 * buffer of their own; th_frame_ref/th_frame_set_ref: ref i of a frame. */
struct shmrig_ref;
void *th_frame_build(uint16_t codec_id, const struct shmrig_ref *refs, uint32_t nbuffers,
		     const void *meta, uint32_t meta_len, size_t *len);
void *th_frame_copy(const void *frame, size_t len);
struct shmrig_ref th_frame_ref(const void *frame, uint32_t i);
void th_frame_set_ref(void *frame, uint32_t i, const struct shmrig_ref *ref);

/* The prefix the test runs under: $SHMRIG_PREFIX (set by meson), else "t_<pid>". */
const char *th_prefix(void);

/*
 * Run fn(arg) in a forked child in its own process group, with a timeout.
 * Returns the child's exit status (0..255), or 128+signal if a signal killed
 * it, or -1 if it timed out (the group is killed and reaped).
 */
int th_run_child(int (*fn)(void *arg), void *arg, unsigned timeout_ms);

/*
 * A child to talk to through two pipes: the parent writes to_child and reads
 * from_child. The child runs in its own process group with no fd of ours but
 * its two pipe ends (a sibling's pipe end held open would keep it from EOF),
 * runs fn(in, out, arg) and exits with its result.
 */
struct th_peer {
	pid_t pid;
	int to_child;   /* -1 once closed */
	int from_child;
};
struct th_peer th_peer_spawn(int (*fn)(int in, int out, void *arg), void *arg);

/* Close our ends and wait for the child (th_wait_child's return convention). */
int th_peer_finish(struct th_peer *peer, unsigned timeout_ms);

/* Wait for `pid` for at most timeout_ms; same return convention as th_run_child. */
int th_wait_child(pid_t pid, unsigned timeout_ms);

/* Why the "ucx" channel backend cannot be tested here (NULL: it can): a library
 * built without UCX, in the library's own words. */
const char *th_ucx_skip_reason(void);

/* Two values equal (cmocka asserts): kind, then bytes, array, table or dataset
 * field by field, data compared byte for byte. */
struct shmrig_value;
void th_assert_value_equal(const struct shmrig_value *a, const struct shmrig_value *b);

#endif
