/* SPDX-License-Identifier: MIT */
/* hostmem: large decoded values' host memory (see hostmem.h). */
#include "codec/hostmem.h"
#include "os/prim.h"

#include <errno.h>
#include <pthread.h>
#include <string.h>
#include <sys/mman.h>

#define HUGE_ALIGN ((size_t)2 << 20)

struct kept {
	void *base; /* NULL: the slot is free */
	size_t cap;
	int64_t since_ns;
};

static struct {
	pthread_mutex_t lock;
	struct kept slot[HOSTMEM_SLOTS];
	size_t bytes;
} kept = { .lock = PTHREAD_MUTEX_INITIALIZER };

/* A fresh mapping of `cap` bytes (a multiple of HUGE_ALIGN) aligned to it. */
static void *map_aligned(size_t cap)
{
	size_t len = cap + HUGE_ALIGN, head;
	char *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	if (p == MAP_FAILED)
		return NULL;
	head = (HUGE_ALIGN - (uintptr_t)p % HUGE_ALIGN) % HUGE_ALIGN;
	if (head)
		munmap(p, head);
	munmap(p + head + cap, HUGE_ALIGN - head);
	p += head;
	/* advice: without transparent huge pages it fails, and 4 KiB pages do */
	(void)madvise(p, cap, MADV_HUGEPAGE);
	return p;
}

/* Under the lock: unmap what was kept since before now - HOSTMEM_KEEP_NS. */
static unsigned trim_locked(int64_t now)
{
	unsigned left = 0;

	for (unsigned i = 0; i < HOSTMEM_SLOTS; i++) {
		struct kept *k = &kept.slot[i];

		if (!k->base)
			continue;
		if (now - k->since_ns < HOSTMEM_KEEP_NS) {
			left++;
			continue;
		}
		munmap(k->base, k->cap);
		kept.bytes -= k->cap;
		k->base = NULL;
	}
	return left;
}

void *shmrig__hostmem_alloc(size_t size, bool zero, size_t *cap)
{
	struct kept *best = NULL;
	void *p;

	if (size > SIZE_MAX - HUGE_ALIGN * 2) {
		errno = ENOMEM;
		return NULL;
	}
	*cap = (size + HUGE_ALIGN - 1) / HUGE_ALIGN * HUGE_ALIGN;
	pthread_mutex_lock(&kept.lock);
	(void)trim_locked(shmrig__now_ns());
	/* the smallest kept mapping that holds it, if it is not twice too big */
	for (unsigned i = 0; i < HOSTMEM_SLOTS; i++) {
		struct kept *k = &kept.slot[i];

		if (k->base && k->cap >= *cap && k->cap / 2 < *cap && (!best || k->cap < best->cap))
			best = k;
	}
	if (best) {
		p = best->base;
		*cap = best->cap;
		kept.bytes -= best->cap;
		best->base = NULL;
	}
	pthread_mutex_unlock(&kept.lock);
	if (!best)
		return map_aligned(*cap); /* fresh: zero already */
	if (zero)
		memset(p, 0, size);
	return p;
}

void shmrig__hostmem_free(void *base, size_t cap)
{
	struct kept out[HOSTMEM_SLOTS]; /* evicted, unmapped after the lock */
	unsigned nout = 0;
	struct kept *slot = NULL;

	if (!base)
		return;
	pthread_mutex_lock(&kept.lock);
	(void)trim_locked(shmrig__now_ns());
	/* the newest release is the likeliest to be reused: make room for it by
	 * evicting the oldest kept, rather than dropping it */
	while (cap <= HOSTMEM_KEEP_BYTES) {
		struct kept *oldest = NULL;

		slot = NULL;
		for (unsigned i = 0; i < HOSTMEM_SLOTS; i++) {
			struct kept *k = &kept.slot[i];

			if (!k->base)
				slot = slot ? slot : k;
			else if (!oldest || k->since_ns < oldest->since_ns)
				oldest = k;
		}
		if (slot && kept.bytes + cap <= HOSTMEM_KEEP_BYTES)
			break;
		out[nout++] = *oldest;
		kept.bytes -= oldest->cap;
		oldest->base = NULL;
	}
	if (cap <= HOSTMEM_KEEP_BYTES) {
		slot->base = base;
		slot->cap = cap;
		slot->since_ns = shmrig__now_ns();
		kept.bytes += cap;
	}
	pthread_mutex_unlock(&kept.lock);
	if (cap > HOSTMEM_KEEP_BYTES)
		munmap(base, cap);
	for (unsigned i = 0; i < nout; i++)
		munmap(out[i].base, out[i].cap);
}

unsigned shmrig__hostmem_trim(int64_t now)
{
	unsigned left;

	pthread_mutex_lock(&kept.lock);
	left = trim_locked(now);
	pthread_mutex_unlock(&kept.lock);
	return left;
}
