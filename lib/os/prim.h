/* SPDX-License-Identifier: MIT */
#ifndef SHMRIG_PRIM_H
#define SHMRIG_PRIM_H

/*
 * The OS-primitives layer: everything Linux-specific that is not shared memory
 * itself. Each function returns 0 (or a value) or -errno, never -1 + errno.
 * Out-parameters must be non-NULL.
 */

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/types.h>
#include <time.h>

/* A process identity that survives pid reuse: pid plus its start time in clock
 * ticks since boot (field 22 of /proc/PID/stat). Packed in 64 bits so that it
 * can be stored with one atomic write; the start time is truncated to 32 bits,
 * which wraps after 497 days at 100 Hz - a reused pid must also hit the same
 * tick modulo 2^32 to be confused. */
typedef uint64_t shmrig__procid;

static inline shmrig__procid shmrig__procid_make(pid_t pid, uint64_t start)
{
	return ((uint64_t)(uint32_t)pid << 32) | (uint32_t)start;
}

static inline pid_t shmrig__procid_pid(shmrig__procid id)
{
	return (pid_t)(id >> 32);
}

/*
 * Bumped in the child at every fork() (pthread_atfork), so that per-process
 * state can tell it was inherited without a getpid() syscall per call.
 */
extern unsigned shmrig__fork_epoch_now; /* prim.c; bumped by the atfork child handler */

static inline unsigned shmrig__fork_epoch(void)
{
	/* inline: every pool and channel call checks it, one load */
	return __atomic_load_n(&shmrig__fork_epoch_now, __ATOMIC_RELAXED);
}

/* Fill `buf` with `len` random bytes (getrandom). 0 or -errno. */
int shmrig__random(void *buf, size_t len);

/* Base page size. */
size_t shmrig__page_size(void);

/* Free hugepages of `page_kb` kB (sysfs), or -errno if that size is absent. */
long shmrig__hugepages_free(unsigned long page_kb);

/*
 * The mount point of a hugetlbfs with pages of `page_kb` kB, written into `dir`
 * (size `dirlen`). The environment variable SHMRIG_HUGETLBFS overrides the
 * search of /proc/mounts. -ENOENT if none is mounted.
 */
int shmrig__hugetlbfs_dir(unsigned long page_kb, char *dir, size_t dirlen);

/*
 * Futexes on 32-bit words in memory shared between processes. Wait sleeps
 * while *word == expected, at most timeout_ms; returns 0 when woken, when the
 * value had changed, on timeout or interruption (the caller re-checks), or
 * -errno. Wake wakes up to `waiters` sleepers.
 */
int shmrig__futex_wait(_Atomic uint32_t *word, uint32_t expected, int timeout_ms);
void shmrig__futex_wake(_Atomic uint32_t *word, int waiters);

/*
 * A process-local lock on a futex (0 free, 1 held, 2 held with waiters): one
 * compare-and-swap to take it and one exchange to give it back when nobody
 * waits, a fifth of what a pthread mutex costs on the pool's hot path.
 */
typedef struct {
	_Atomic uint32_t word;
} shmrig__lock;

void shmrig__lock_wait(shmrig__lock *lock);

static inline void shmrig__lock_take(shmrig__lock *lock)
{
	uint32_t free_word = 0;

	if (!atomic_compare_exchange_strong_explicit(&lock->word, &free_word, 1,
						     memory_order_acquire, memory_order_relaxed))
		shmrig__lock_wait(lock);
}

/* Make membarrier() usable by this process: 0, or -errno (then it is not). */
int shmrig__membarrier_register(void);
/* Every running thread of this process passes a full memory barrier. */
void shmrig__membarrier(void);

/* A spin-wait's pause: kinder to the sibling hyperthread and the power budget. */
/* CLOCK_MONOTONIC in nanoseconds (the vDSO: no syscall). */
static inline int64_t shmrig__now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000ll + ts.tv_nsec;
}

static inline void shmrig__cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
	__builtin_ia32_pause();
#elif defined(__aarch64__)
	__asm__ __volatile__("yield" ::: "memory");
#endif
}

/*
 * Copy n bytes into memory that another CPU reads next (an encoder's buffer
 * in shared memory, for a peer process). From the size of this CPU's L2 cache
 * on (sysconf; 1 MiB when it does not say), with non-temporal stores: plain
 * stores into lines the reader's cache holds wait for each line to be taken
 * from it, and past L2 that dominates. Measured here (x86_64-2c-24g, L2 1 MiB,
 * a copy in, the other process copies it out, round trip): 1 MiB 180 -> 89
 * us, 4 MiB 725 -> 298 us; 512 KiB is better plain (32 against 44 us). The
 * stores are fenced before it returns: a later store (a channel's release of
 * the message) cannot pass them.
 */
void shmrig__copy_shared_large(void *dst, const void *src, size_t n);

static inline void shmrig__copy_shared(void *dst, const void *src, size_t n)
{
	if (n < ((size_t)256 << 10)) /* below any L2 cache: a plain copy, no call */
		memcpy(dst, src, n);
	else
		shmrig__copy_shared_large(dst, src, n);
}

static inline void shmrig__lock_give(shmrig__lock *lock)
{
	if (atomic_exchange_explicit(&lock->word, 0, memory_order_release) == 2)
		shmrig__futex_wake(&lock->word, 1);
}

#endif
