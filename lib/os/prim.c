/* SPDX-License-Identifier: MIT */
#include "os/prim.h"
#include "base/internal.h"

#ifdef __SSE2__
#include <emmintrin.h>
#endif

#include <errno.h>
#include <fcntl.h>
#include <mntent.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <linux/futex.h>
#include <linux/membarrier.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

unsigned shmrig__fork_epoch_now = 1;

static void bump_fork_epoch(void)
{
	__atomic_add_fetch(&shmrig__fork_epoch_now, 1, __ATOMIC_RELAXED);
}

__attribute__((constructor)) static void register_atfork(void)
{
	pthread_atfork(NULL, NULL, bump_fork_epoch);
}


int shmrig__random(void *buf, size_t len)
{
	unsigned char *p = buf;

	while (len) {
		ssize_t n = getrandom(p, len, 0);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

size_t shmrig__page_size(void)
{
	static size_t page;

	if (!page)
		page = (size_t)sysconf(_SC_PAGESIZE);
	return page;
}

long shmrig__hugepages_free(unsigned long page_kb)
{
	char path[128];
	long count;
	FILE *f;

	snprintf(path, sizeof(path), "/sys/kernel/mm/hugepages/hugepages-%lukB/free_hugepages",
		 page_kb);
	f = fopen(path, "re");
	if (!f)
		return -errno;
	if (fscanf(f, "%ld", &count) != 1)
		count = -EIO;
	fclose(f);
	return count;
}

int shmrig__hugetlbfs_dir(unsigned long page_kb, char *dir, size_t dirlen)
{
	const char *env = getenv("SHMRIG_HUGETLBFS");
	struct mntent ent;
	char buf[1024];
	int ret = -ENOENT;
	FILE *f;

	if (env && *env) {
		if (strlen(env) >= dirlen)
			return -ENAMETOOLONG;
		strcpy(dir, env);
		return 0;
	}
	f = setmntent("/proc/mounts", "re");
	if (!f)
		return -errno;
	while (getmntent_r(f, &ent, buf, sizeof(buf))) {
		unsigned long kb = 2048; /* hugetlbfs without pagesize= uses the default size */
		const char *opt;

		if (strcmp(ent.mnt_type, "hugetlbfs") != 0)
			continue;
		opt = hasmntopt(&ent, "pagesize");
		if (opt) {
			char unit = 'K';

			if (sscanf(opt, "pagesize=%lu%c", &kb, &unit) >= 1) {
				if (unit == 'M' || unit == 'm')
					kb *= 1024;
				else if (unit == 'G' || unit == 'g')
					kb *= 1024 * 1024;
			}
		}
		if (kb != page_kb || strlen(ent.mnt_dir) >= dirlen)
			continue;
		strcpy(dir, ent.mnt_dir);
		ret = 0;
		break;
	}
	endmntent(f);
	return ret;
}

int shmrig__futex_wait(_Atomic uint32_t *word, uint32_t expected, int timeout_ms)
{
	struct timespec rel = { timeout_ms / 1000, (long)(timeout_ms % 1000) * 1000000 };

	/* Not FUTEX_PRIVATE_FLAG: the word lives in memory shared with another
	 * process, and a private futex is keyed by this process's address space. */
	if (syscall(SYS_futex, word, FUTEX_WAIT, expected, &rel, NULL, 0) == 0)
		return 0;
	if (errno == EAGAIN || errno == ETIMEDOUT || errno == EINTR)
		return 0;
	return -errno;
}

void shmrig__futex_wake(_Atomic uint32_t *word, int waiters)
{
	syscall(SYS_futex, word, FUTEX_WAKE, waiters, NULL, NULL, 0);
}

void shmrig__lock_wait(shmrig__lock *lock)
{
	/* Mark it contended; whoever gives it back wakes one of us. */
	while (atomic_exchange_explicit(&lock->word, 2, memory_order_acquire) != 0)
		shmrig__futex_wait(&lock->word, 2, 1000);
}

int shmrig__membarrier_register(void)
{
	if (syscall(SYS_membarrier, MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED, 0, 0) != 0)
		return -errno;
	return 0;
}

void shmrig__membarrier(void)
{
	/* Registered at pool open, so this cannot fail but for a broken kernel;
	 * then a full barrier of our own is the best left to do. */
	if (syscall(SYS_membarrier, MEMBARRIER_CMD_PRIVATE_EXPEDITED, 0, 0) != 0)
		atomic_thread_fence(memory_order_seq_cst);
}

/* The size from which shmrig__copy_shared streams: this CPU's L2 cache, read once. */
static size_t stream_from(void)
{
	static _Atomic size_t from;
	size_t n = atomic_load_explicit(&from, memory_order_relaxed);

	if (!n) {
		long l2 = sysconf(_SC_LEVEL2_CACHE_SIZE);

		n = l2 > 0 ? (size_t)l2 : (size_t)1 << 20;
		atomic_store_explicit(&from, n, memory_order_relaxed);
	}
	return n;
}

void shmrig__copy_shared_large(void *dst, const void *src, size_t n)
{
#ifdef __SSE2__
	if (n >= stream_from()) {
		char *d = dst;
		const char *s = src;
		size_t head = (16 - ((uintptr_t)d & 15)) & 15;

		memcpy(d, s, head); /* up to the first 16-byte boundary of dst */
		d += head;
		s += head;
		n -= head;
		for (; n >= 64; n -= 64, d += 64, s += 64) {
			__m128i a = _mm_loadu_si128((const __m128i *)s);
			__m128i b = _mm_loadu_si128((const __m128i *)(s + 16));
			__m128i c = _mm_loadu_si128((const __m128i *)(s + 32));
			__m128i e = _mm_loadu_si128((const __m128i *)(s + 48));

			_mm_stream_si128((__m128i *)d, a);
			_mm_stream_si128((__m128i *)(d + 16), b);
			_mm_stream_si128((__m128i *)(d + 32), c);
			_mm_stream_si128((__m128i *)(d + 48), e);
		}
		memcpy(d, s, n);
		_mm_sfence();
		return;
	}
#endif
	memcpy(dst, src, n);
}
