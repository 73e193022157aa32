/* SPDX-License-Identifier: MIT */
/* Single-process pool tests: classes, caches, limits, refs, slabs, accounting. */
#include "helpers.h"

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include <shmrig/pool.h>
#if __has_include(<valgrind/valgrind.h>)
#include <valgrind/valgrind.h>
#else
#define RUNNING_ON_VALGRIND 0
#endif

static shmrig_pool *open_pool(size_t arena, size_t max)
{
	shmrig_pool *pool = th_open_pool(arena, max);

	assert_non_null(pool);
	return pool;
}

static void test_block_sizes(void **state)
{
	(void)state;
	assert_int_equal(shmrig_pool_block_size(0), 64);
	assert_int_equal(shmrig_pool_block_size(1), 64);
	assert_int_equal(shmrig_pool_block_size(64), 64);
	assert_int_equal(shmrig_pool_block_size(65), 128);
	assert_int_equal(shmrig_pool_block_size(4096), 4096);
	assert_int_equal(shmrig_pool_block_size(MiB), MiB);
	assert_int_equal(shmrig_pool_block_size(MiB + 1), MiB + 64);
}

/* Every class: alignment, bounds, bytes survive, accounting per class. */
/* The pools a test opens take th_prefix(), which its segment counts use: also
 * when $SHMRIG_PREFIX is unset or empty (test_pool_no_prefix runs so). */
static void test_prefix_is_the_tests(void **state)
{
	shmrig_pool *pool = th_open_pool(4 * MiB, 64 * MiB);
	struct shmrig_pool_info info = SHMRIG_SIZED(struct shmrig_pool_info);

	(void)state;
	assert_non_null(pool);
	assert_int_equal(shmrig_pool_info(pool, &info), 0);
	assert_string_equal(info.prefix, th_prefix());
	assert_int_equal(shmrig_pool_close(pool), 0);
}

static void test_alloc_every_class(void **state)
{
	shmrig_pool *pool = open_pool(8 * MiB, 256 * MiB);
	struct shmrig_ref refs[SHMRIG_POOL_NUM_CLASSES + 1];
	struct shmrig_pool_stats st = SHMRIG_SIZED(struct shmrig_pool_stats);
	struct shmrig_pool_class_stats classes[SHMRIG_POOL_NUM_CLASSES];
	int fds = th_count_fds();

	(void)state;
	for (unsigned c = 0; c <= SHMRIG_POOL_NUM_CLASSES; c++) {
		size_t size = c < SHMRIG_POOL_NUM_CLASSES ? (size_t)64 << c : 3 * MiB + 5;
		unsigned char *data;

		assert_int_equal(shmrig_pool_alloc(pool, size, 0, 100 + c, &refs[c],
						   (void **)&data),
				 0);
		assert_int_equal(refs[c].offset % 64, 0);
		assert_int_equal((uintptr_t)data % 64, 0);
		if (size >= 2 * MiB)
			assert_int_equal((uintptr_t)data % (size_t)sysconf(_SC_PAGESIZE), 0);
		assert_true(refs[c].size >= size);
		assert_int_equal(refs[c].content_size, size);
		assert_int_equal(refs[c].temporary, 0);
		memset(data, (int)c + 1, size);
	}
	assert_int_equal(shmrig_pool_stats(pool, &st), 0);
	assert_int_equal(st.live_blocks, SHMRIG_POOL_NUM_CLASSES + 1);
	assert_int_equal(st.large_live_blocks, 1);
	classes[0] = SHMRIG_SIZED(struct shmrig_pool_class_stats);
	assert_int_equal(shmrig_pool_class_stats(pool, classes, SHMRIG_POOL_NUM_CLASSES),
			 SHMRIG_POOL_NUM_CLASSES);
	for (unsigned c = 0; c < SHMRIG_POOL_NUM_CLASSES; c++) {
		assert_int_equal(classes[c].size, sizeof(classes[c]));
		assert_int_equal(classes[c].block_size, (size_t)64 << c);
		assert_int_equal(classes[c].live_blocks, 1);
		assert_int_equal(classes[c].live_bytes, (size_t)64 << c);
	}
	for (unsigned c = 0; c <= SHMRIG_POOL_NUM_CLASSES; c++) {
		unsigned char *data;

		assert_int_equal(shmrig_pool_attach(pool, &refs[c], (void **)&data), 0);
		assert_int_equal(data[0], c + 1);
		assert_int_equal(data[refs[c].content_size - 1], c + 1);
		assert_int_equal(shmrig_pool_free(pool, &refs[c]), 0);
	}
	assert_int_equal(th_live_blocks(pool), 0);
	assert_true(th_count_segments(th_prefix()) > 0);
	assert_int_equal(shmrig_pool_close(pool), 0);
	assert_int_equal(th_count_segments(th_prefix()), 0);
	assert_int_equal(th_count_fds(), fds);
}

/* Free then alloc of the same class reuses the block, with a new generation. */
static void test_reuse_and_stale(void **state)
{
	shmrig_pool *pool = open_pool(4 * MiB, 64 * MiB);
	struct shmrig_ref a, b;
	void *pa, *pb;

	(void)state;
	assert_int_equal(shmrig_pool_alloc(pool, 1000, SHMRIG_ALLOC_TEMPORARY, 7, &a, &pa), 0);
	assert_int_equal(a.temporary, 1);
	assert_int_equal(shmrig_pool_free(pool, &a), 0);
	/* double free, and a free of a stale ref */
	assert_int_equal(shmrig_pool_free(pool, &a), -SHMRIG_ESTALE);
	assert_int_equal(shmrig_pool_attach(pool, &a, &pa), -SHMRIG_ESTALE);
	assert_int_equal(shmrig_pool_alloc(pool, 1000, 0, 8, &b, &pb), 0);
	assert_ptr_equal(pa, pb); /* the cache hands the same block back */
	assert_int_equal(b.offset, a.offset);
	assert_int_not_equal(b.generation, a.generation);
	assert_int_equal(shmrig_pool_free(pool, &a), -SHMRIG_ESTALE);
	assert_int_equal(shmrig_pool_free(pool, &b), 0);
	assert_int_equal(shmrig_pool_close(pool), 0);
}

/* A ref with the right generation to a block that is not allocated. */
static void test_not_live(void **state)
{
	shmrig_pool *pool = open_pool(4 * MiB, 64 * MiB);
	struct shmrig_ref a, forged;
	void *p;

	(void)state;
	assert_int_equal(shmrig_pool_alloc(pool, 64, 0, 0, &a, &p), 0);
	forged = a;
	forged.offset += 64; /* the next block: cached, generation 1 */
	forged.generation = 1;
	assert_int_equal(shmrig_pool_attach(pool, &forged, &p), -SHMRIG_ENOTLIVE);
	assert_int_equal(shmrig_pool_free(pool, &forged), -SHMRIG_ENOTLIVE);
	assert_int_equal(shmrig_pool_free(pool, &a), 0);
	assert_int_equal(shmrig_pool_close(pool), 0);
}

/* Refs from elsewhere: every malformed field is a clear error, nothing else. */
static void test_bad_refs(void **state)
{
	shmrig_pool *pool = open_pool(4 * MiB, 64 * MiB);
	struct shmrig_ref good, bad;
	void *p;

	(void)state;
	assert_int_equal(shmrig_pool_alloc(pool, 256, 0, 0, &good, &p), 0);

	bad = good;
	strcpy(bad.name, "../../etc/passwd");
	assert_int_equal(shmrig_pool_attach(pool, &bad, &p), -EINVAL);
	assert_non_null(strstr(shmrig_last_error(), "'/'"));

	bad = good;
	strcpy(bad.name, "otherprefix-1-1-sa0123456789abcdef");
	assert_int_equal(shmrig_pool_attach(pool, &bad, &p), -EINVAL);
	assert_non_null(strstr(shmrig_last_error(), "prefix"));

	bad = good;
	memset(bad.name, 'x', sizeof(bad.name)); /* unterminated */
	assert_int_equal(shmrig_pool_attach(pool, &bad, &p), -SHMRIG_EBADREF);

	bad = good;
	/* well-formed, but no such segment */
	bad.name[strlen(bad.name) - 1] = bad.name[strlen(bad.name) - 1] == '0' ? '1' : '0';
	assert_int_equal(shmrig_pool_attach(pool, &bad, &p), -ENOENT);

	bad = good;
	bad.offset = 64ull << 30; /* far beyond the segment */
	assert_int_equal(shmrig_pool_attach(pool, &bad, &p), -SHMRIG_EBADREF);

	bad = good;
	bad.offset = 0; /* the arena header */
	assert_int_equal(shmrig_pool_attach(pool, &bad, &p), -SHMRIG_EBADREF);

	bad = good;
	bad.size = 257; /* runs past the block */
	bad.content_size = 1;
	assert_int_equal(shmrig_pool_attach(pool, &bad, &p), -SHMRIG_EBADREF);

	bad = good;
	bad.size = UINT64_MAX; /* overflow bait */
	bad.content_size = 0;
	assert_int_equal(shmrig_pool_attach(pool, &bad, &p), -SHMRIG_EBADREF);

	bad = good;
	bad.content_size = bad.size + 1;
	assert_int_equal(shmrig_pool_attach(pool, &bad, &p), -SHMRIG_EBADREF);

	bad = good;
	bad.offset += 8; /* misaligned */
	assert_int_equal(shmrig_pool_attach(pool, &bad, &p), -SHMRIG_EBADREF);

	bad = good;
	bad.reserved[1] = 1;
	assert_int_equal(shmrig_pool_attach(pool, &bad, &p), -SHMRIG_EBADREF);

	bad = good;
	bad.temporary = 2;
	assert_int_equal(shmrig_pool_attach(pool, &bad, &p), -SHMRIG_EBADREF);

	assert_int_equal(shmrig_pool_attach(pool, NULL, &p), -EINVAL);
	assert_int_equal(shmrig_pool_attach(pool, &good, NULL), -EINVAL);
	assert_int_equal(th_live_blocks(pool), 1);
	assert_int_equal(shmrig_pool_free(pool, &good), 0);
	assert_int_equal(shmrig_pool_close(pool), 0);
}

/* A segment of our prefix that is not a pool segment (wrong role, or garbage). */
static void test_foreign_segment(void **state)
{
	struct shmrig_segment_opts so = { .size = sizeof(struct shmrig_segment_opts),
					  .bytes = 2 * MiB,
					  .backing = SHMRIG_BACKING_PLAIN,
					  .role = 'a' };
	shmrig_pool *pool = open_pool(4 * MiB, 64 * MiB);
	shmrig_segment *seg;
	struct shmrig_ref ref = { 0 };
	void *p;

	(void)state;
	assert_int_equal(shmrig_segment_create(&so, &seg), 0);
	memset(shmrig_segment_base(seg), 0xab, 4096); /* not an arena header */
	strcpy(ref.name, shmrig_segment_name(seg));
	ref.offset = 8192;
	ref.size = 64;
	assert_int_equal(shmrig_pool_attach(pool, &ref, &p), -SHMRIG_ECORRUPT);
	assert_int_equal(shmrig_segment_unlink(seg), 0);
	shmrig_segment_close(seg);
	assert_int_equal(shmrig_pool_close(pool), 0);
}

/* At the limit alloc is -ENOMEM, and the pool works again after frees. */
static void test_limit(void **state)
{
	shmrig_pool *pool = open_pool(4 * MiB, 8 * MiB);
	struct shmrig_ref refs[64];
	unsigned n = 0;
	void *p;
	int ret;

	(void)state;
	/* 512 KiB blocks: 3 per chunk (chunk 0 holds the header and fewer) */
	while ((ret = shmrig_pool_alloc(pool, 512 * 1024, 0, n, &refs[n], &p)) == 0) {
		assert_true(n < 64);
		n++;
	}
	assert_int_equal(ret, -ENOMEM);
	assert_non_null(strstr(shmrig_last_error(), "limit"));
	assert_true(n >= 8);
	/* a large block does not fit either */
	assert_int_equal(shmrig_pool_alloc(pool, 4 * MiB, 0, 0, &refs[63], &p), -ENOMEM);
	assert_int_equal(shmrig_pool_free(pool, &refs[0]), 0);
	assert_int_equal(shmrig_pool_alloc(pool, 512 * 1024, 0, 0, &refs[0], &p), 0);
	for (unsigned i = 0; i < n; i++)
		assert_int_equal(shmrig_pool_free(pool, &refs[i]), 0);
	assert_int_equal(shmrig_pool_close(pool), 0);
}

/*
 * A free large segment kept for reuse stands aside for a new arena: only
 * blocks in use count against the limit. (It kept its room, and the second
 * arena's alloc failed with -ENOMEM while nothing but that free segment held
 * the bytes.)
 */
static void test_limit_kept_large(void **state)
{
	shmrig_pool *pool = open_pool(4 * MiB, 12 * MiB);
	struct shmrig_pool_stats st = SHMRIG_SIZED(struct shmrig_pool_stats);
	struct shmrig_ref big, refs[64];
	unsigned n = 0;
	void *p;

	(void)state;
	/* one arena, then a 6 MiB large block freed: its segment is kept */
	assert_int_equal(shmrig_pool_alloc(pool, 512 * 1024, 0, 0, &refs[n++], &p), 0);
	assert_int_equal(shmrig_pool_alloc(pool, 6 * MiB, 0, 0, &big, &p), 0);
	assert_int_equal(shmrig_pool_free(pool, &big), 0);
	assert_int_equal(shmrig_pool_stats(pool, &st), 0);
	assert_true(st.created_bytes > 10 * MiB); /* 4 MiB arena + the kept 6 MiB */
	/* fill the arena: the second one (4 MiB) needs the kept segment's room,
	 * which is given back: two arenas, nothing else */
	do {
		assert_true(n < 64);
		assert_int_equal(shmrig_pool_alloc(pool, 512 * 1024, 0, n, &refs[n], &p), 0);
		n++;
		assert_int_equal(shmrig_pool_stats(pool, &st), 0);
	} while (st.created_bytes != 8 * MiB);
	for (unsigned i = 0; i < n; i++)
		assert_int_equal(shmrig_pool_free(pool, &refs[i]), 0);
	assert_int_equal(shmrig_pool_close(pool), 0);
}

/* Big classes fill their chunks: 1 MiB blocks two a chunk (one in chunk 0,
 * beside the header), not one a chunk beside an in-chunk descriptor array. */
static void test_big_class_packing(void **state)
{
	shmrig_pool *pool = open_pool(8 * MiB, 64 * MiB);
	struct shmrig_ref refs[8];
	struct shmrig_pool_stats st = SHMRIG_SIZED(struct shmrig_pool_stats);
	void *p;

	(void)state;
	for (unsigned i = 0; i < 7; i++)
		assert_int_equal(shmrig_pool_alloc(pool, MiB, 0, i, &refs[i], &p), 0);
	assert_int_equal(shmrig_pool_stats(pool, &st), 0);
	assert_int_equal(st.created_bytes, 8 * MiB); /* still one arena */
	assert_int_equal(shmrig_pool_alloc(pool, MiB, 0, 7, &refs[7], &p), 0);
	assert_int_equal(shmrig_pool_stats(pool, &st), 0);
	assert_int_equal(st.created_bytes, 16 * MiB);
	for (unsigned i = 0; i < 8; i++)
		assert_int_equal(shmrig_pool_free(pool, &refs[i]), 0);
	assert_int_equal(shmrig_pool_audit(pool), 0);
	assert_int_equal(shmrig_pool_close(pool), 0);
}

/* Many blocks of one class: the cache spills to the shared list and back. */
static void test_many_blocks(void **state)
{
	enum {
		N = 5000
	};
	shmrig_pool *pool = open_pool(4 * MiB, 64 * MiB);
	struct shmrig_ref *refs = calloc(N, sizeof(*refs));
	void *p;

	(void)state;
	for (int round = 0; round < 3; round++) {
		for (unsigned i = 0; i < N; i++) {
			assert_int_equal(shmrig_pool_alloc(pool, 100, 0, i, &refs[i], &p), 0);
			memcpy(p, &i, sizeof(i));
		}
		assert_int_equal(th_live_blocks(pool), N);
		for (unsigned i = 0; i < N; i++) {
			unsigned v;

			assert_int_equal(shmrig_pool_attach(pool, &refs[i], &p), 0);
			memcpy(&v, p, sizeof(v));
			assert_int_equal(v, i);
			assert_int_equal(shmrig_pool_free(pool, &refs[i]), 0);
		}
		assert_int_equal(th_live_blocks(pool), 0);
		assert_int_equal(shmrig_pool_audit(pool), 0);
	}
	free(refs);
	assert_int_equal(shmrig_pool_close(pool), 0);
}

/*
 * Arenas and large segments are pre-faulted at creation: writing a fresh block
 * takes no page fault. (Not under ASan or valgrind: their shadow memory faults
 * on first use.)
 */
static void test_no_page_faults(void **state)
{
#if defined(__SANITIZE_ADDRESS__)
	(void)state;
	skip();
#else
	if (RUNNING_ON_VALGRIND) {
		/* memcheck maps its shadow of our memory on first touch */
		print_message("skipped under valgrind: its shadow memory faults on first use\n");
		skip();
	}
	shmrig_pool *pool = open_pool(8 * MiB, 64 * MiB);
	struct shmrig_ref small, large;
	struct rusage before, after;
	volatile unsigned char *a, *b;
	size_t page = (size_t)sysconf(_SC_PAGESIZE);

	(void)state;
	assert_int_equal(shmrig_pool_alloc(pool, MiB, 0, 0, &small, (void **)&a), 0);
	assert_int_equal(shmrig_pool_alloc(pool, 5 * MiB, 0, 0, &large, (void **)&b), 0);
	getrusage(RUSAGE_SELF, &before);
	for (size_t off = 0; off < MiB; off += page)
		a[off] = 1;
	for (size_t off = 0; off < 5 * MiB; off += page)
		b[off] = 1;
	getrusage(RUSAGE_SELF, &after);
	assert_int_equal(after.ru_minflt - before.ru_minflt, 0);
	assert_int_equal(after.ru_majflt - before.ru_majflt, 0);
	assert_int_equal(shmrig_pool_free(pool, &small), 0);
	assert_int_equal(shmrig_pool_free(pool, &large), 0);
	assert_int_equal(shmrig_pool_close(pool), 0);
#endif
}

/* free_n of our own blocks: as many frees; a stale ref among them is the
 * error, and every other is freed all the same. */
static void test_free_n_own(void **state)
{
	struct shmrig_ref refs[10];
	shmrig_pool *pool = open_pool(4 * MiB, 64 * MiB);
	void *data;

	(void)state;
	for (unsigned i = 0; i < 10; i++)
		assert_int_equal(shmrig_pool_alloc(pool, i < 5 ? 64 : 3 * MiB, 0, i, &refs[i],
						   &data),
				 0);
	assert_int_equal(shmrig_pool_free(pool, &refs[3]), 0);
	assert_int_equal(shmrig_pool_free_n(pool, refs, 10), -SHMRIG_ESTALE);
	assert_int_equal(th_live_blocks(pool), 0);
	assert_int_equal(shmrig_pool_free_n(pool, refs, 0), 0);
	assert_int_equal(shmrig_pool_free_n(pool, NULL, 1), -EINVAL);
	assert_int_equal(shmrig_pool_free_n(NULL, refs, 1), -EINVAL);
	assert_int_equal(shmrig_pool_audit(pool), 0);
	assert_int_equal(shmrig_pool_close(pool), 0);
}

static void test_retain(void **state)
{
	shmrig_pool *pool = open_pool(4 * MiB, 64 * MiB);
	struct shmrig_ref a;
	void *p;

	(void)state;
	assert_int_equal(shmrig_pool_alloc(pool, 64, 0, 0, &a, &p), 0);
	assert_int_equal(shmrig_pool_retain(pool, &a), 0);
	assert_int_equal(shmrig_pool_free(pool, &a), 0);
	assert_int_equal(th_live_blocks(pool), 1); /* one reference left */
	assert_int_equal(shmrig_pool_attach(pool, &a, &p), 0);
	assert_int_equal(shmrig_pool_free(pool, &a), 0);
	assert_int_equal(th_live_blocks(pool), 0);
	assert_int_equal(shmrig_pool_retain(pool, &a), -SHMRIG_ESTALE);
	assert_int_equal(shmrig_pool_close(pool), 0);
}

/* Slab: sub-allocations bump-allocated, new slab when full, block freed last. */
static void test_slab(void **state)
{
	shmrig_pool *pool = open_pool(4 * MiB, 64 * MiB);
	struct shmrig_ref subs[40], big;
	void *p;

	(void)state;
	assert_int_equal(shmrig_pool_slab_seal(pool), -ENOENT);
	assert_int_equal(shmrig_pool_slab_open(pool, 0), -EINVAL);
	assert_int_equal(shmrig_pool_slab_open(pool, 1024), 0);
	assert_int_equal(shmrig_pool_slab_open(pool, 1024), -EBUSY);
	for (unsigned i = 0; i < 40; i++) {
		assert_int_equal(shmrig_pool_alloc(pool, 100, 0, 0, &subs[i], &p), 0);
		assert_int_equal(subs[i].offset % 64, 0);
		assert_int_equal(subs[i].size, 128);
		memset(p, (int)i, 100);
	}
	/* 1024/128 = 8 per slab: 40 sub-allocations took 5 slabs */
	assert_string_equal(subs[0].name, subs[7].name);
	assert_int_equal(subs[1].offset, subs[0].offset + 128);
	/* (slabs are blocks of 1024, aligned to it: the 9th in another) */
	assert_int_not_equal(subs[8].offset / 1024, subs[7].offset / 1024);
	/* larger than the slab: a block of its own */
	assert_int_equal(shmrig_pool_alloc(pool, 4096, 0, 0, &big, &p), 0);
	assert_int_equal(big.size, 4096);
	assert_int_equal(shmrig_pool_slab_seal(pool), 0);
	assert_int_equal(th_live_blocks(pool), 6);
	/* the slab outlives sealing: its bytes are intact */
	for (unsigned i = 0; i < 40; i++) {
		unsigned char *d;

		assert_int_equal(shmrig_pool_attach(pool, &subs[i], (void **)&d), 0);
		assert_int_equal(d[99], i);
	}
	for (unsigned i = 0; i < 39; i++)
		assert_int_equal(shmrig_pool_free(pool, &subs[i]), 0);
	assert_int_equal(th_live_blocks(pool), 2); /* last slab + big */
	assert_int_equal(shmrig_pool_free(pool, &subs[39]), 0);
	assert_int_equal(shmrig_pool_free(pool, &subs[39]), -SHMRIG_ESTALE);
	assert_int_equal(shmrig_pool_free(pool, &big), 0);
	assert_int_equal(th_live_blocks(pool), 0);
	assert_int_equal(shmrig_pool_close(pool), 0);
}

/* Large blocks are recycled: the same segment serves the next request. */
static void test_large_reuse(void **state)
{
	shmrig_pool *pool = open_pool(4 * MiB, 64 * MiB);
	struct shmrig_ref a, b;
	struct shmrig_pool_stats st = SHMRIG_SIZED(struct shmrig_pool_stats);
	void *p;

	(void)state;
	assert_int_equal(shmrig_pool_alloc(pool, 3 * MiB, 0, 1, &a, &p), 0);
	assert_int_equal(shmrig_pool_free(pool, &a), 0);
	assert_int_equal(shmrig_pool_alloc(pool, 3 * MiB - 100, 0, 2, &b, &p), 0);
	assert_string_equal(a.name, b.name);
	assert_int_not_equal(a.generation, b.generation);
	assert_int_equal(shmrig_pool_attach(pool, &a, &p), -SHMRIG_ESTALE);
	assert_int_equal(shmrig_pool_stats(pool, &st), 0);
	assert_int_equal(st.large_live_blocks, 1);
	assert_int_equal(shmrig_pool_free(pool, &b), 0);
	assert_int_equal(shmrig_pool_close(pool), 0);
}

static void test_owner_stats_and_leaks(void **state)
{
	shmrig_pool *pool = open_pool(4 * MiB, 64 * MiB);
	struct shmrig_owner_stats owners[4] = { SHMRIG_SIZED(struct shmrig_owner_stats) };
	struct shmrig_ref a, b;
	void *p;

	(void)state;
	assert_int_equal(shmrig_pool_alloc(pool, 64, 0, 11, &a, &p), 0);
	assert_int_equal(shmrig_pool_alloc(pool, 5000, 0, 12, &b, &p), 0);
	assert_int_equal(shmrig_pool_owner_stats(pool, owners, 4), 1);
	assert_int_equal(owners[0].pid, getpid());
	assert_int_equal(owners[0].live_blocks, 2);
	assert_int_equal(owners[0].live_bytes, 5064);
	assert_int_equal(shmrig_pool_for_each_live(pool, NULL, NULL), 2);
	assert_int_equal(shmrig_pool_free(pool, &a), 0);
	/* b leaks: close reports it and still releases everything */
	assert_int_equal(shmrig_pool_close(pool), -SHMRIG_ELEAK);
	assert_int_equal(th_count_segments(th_prefix()), 0);
}

static void test_bad_options(void **state)
{
	struct shmrig_pool_opts opts = SHMRIG_SIZED(struct shmrig_pool_opts);
	shmrig_pool *pool = NULL;
	struct shmrig_ref r;
	void *p;

	(void)state;
	opts.flags = 1u << 30;
	assert_int_equal(shmrig_pool_open(&opts, &pool), -EINVAL);
	opts.flags = 0;
	opts.size = 0;
	assert_int_equal(shmrig_pool_open(&opts, &pool), -EINVAL);
	opts.size = sizeof(opts);
	opts.prefix = "bad/prefix";
	assert_int_equal(shmrig_pool_open(&opts, &pool), -EINVAL);
	opts.prefix = NULL;
	opts.backing = 42;
	assert_int_equal(shmrig_pool_open(&opts, &pool), -EINVAL);
	opts.backing = 0;
	opts.flags = SHMRIG_POOL_BIND_NODE;
	opts.numa_node = 4096;
	assert_int_equal(shmrig_pool_open(&opts, &pool), -EINVAL);
	assert_int_equal(shmrig_pool_open(NULL, NULL), -EINVAL);
	pool = open_pool(4 * MiB, 64 * MiB);
	assert_int_equal(shmrig_pool_alloc(pool, 64, 1u << 7, 0, &r, &p), -EINVAL);
	assert_int_equal(shmrig_pool_alloc(pool, 64, 0, 0, NULL, &p), -EINVAL);
	assert_int_equal(shmrig_pool_close(pool), 0);
}

/* Options from the environment; the API value wins; a bad value keeps the default. */
static void test_env_options(void **state)
{
	struct shmrig_pool_info info = SHMRIG_SIZED(struct shmrig_pool_info);
	shmrig_pool *pool;

	(void)state;
	setenv("SHMRIG_ARENA_SIZE", "6M", 1);
	setenv("SHMRIG_POOL_MAX", "nonsense", 1);
	assert_int_equal(shmrig_pool_open(NULL, &pool), 0);
	assert_int_equal(shmrig_pool_info(pool, &info), 0);
	assert_int_equal(info.arena_size, 6 * MiB);
	assert_int_equal(info.max_bytes, 1024 * MiB);
	assert_string_equal(info.prefix, th_prefix());
	assert_int_equal(shmrig_pool_close(pool), 0);
	pool = open_pool(10 * MiB, 0);
	assert_int_equal(shmrig_pool_info(pool, &info), 0);
	assert_int_equal(info.arena_size, 10 * MiB);
	assert_int_equal(shmrig_pool_close(pool), 0);
	unsetenv("SHMRIG_ARENA_SIZE");
	unsetenv("SHMRIG_POOL_MAX");
}

/* ---- threads: the opener's lock-free way in, and the switch to the lock ---- */

#define THREADS 3
#define ROUNDS 200000
#define LIVE 8

struct hammer {
	shmrig_pool *pool;
	uint64_t stamp;
	_Atomic int *started;
	int failures;
};

/* Alloc, stamp, check, free, keeping LIVE blocks at a time: a block handed to
 * two threads at once shows as a stamp that changed under its owner. */
static void *hammer_run(void *arg)
{
	struct hammer *h = arg;
	struct shmrig_ref refs[LIVE];
	uint64_t *data[LIVE];

	memset(refs, 0, sizeof(refs));
	for (int i = 0; i < ROUNDS && !h->failures; i++) {
		int k = i % LIVE;

		if (i >= LIVE) {
			h->failures += *data[k] != h->stamp + (uint64_t)(i - LIVE);
			h->failures += shmrig_pool_free(h->pool, &refs[k]) != 0;
		}
		if (shmrig_pool_alloc(h->pool, 64 << (i % 3), 0, 0, &refs[k], (void **)&data[k])) {
			h->failures++;
			break;
		}
		*data[k] = h->stamp + (uint64_t)i;
		if (i == 1000)
			atomic_fetch_add(h->started, 1);
	}
	for (int k = 0; k < LIVE && !h->failures; k++)
		h->failures += shmrig_pool_free(h->pool, &refs[k]) != 0;
	return NULL;
}

struct launcher {
	struct hammer *hs;
	pthread_t threads[THREADS];
	int created;
};

/* Start the other threads one by one, each when the one before is well into
 * its loop (the opener, hs[0], runs in the test's own thread). */
static void *launch(void *arg)
{
	struct launcher *l = arg;

	for (int t = 1; t <= THREADS; t++) {
		while (atomic_load(l->hs[0].started) < t)
			sched_yield();
		if (pthread_create(&l->threads[t - 1], NULL, hammer_run, &l->hs[t]) != 0)
			break;
		l->created++;
	}
	for (int t = 0; t < l->created; t++)
		pthread_join(l->threads[t], NULL);
	return NULL;
}

/*
 * The opener works the pool alone (its way in takes no lock), then other
 * threads join while it is in the middle of its loop: the first of them must
 * switch everybody to the lock without a block going to two threads.
 */
static void test_threads_join_the_opener(void **state)
{
	shmrig_pool *pool = th_open_pool(8 * MiB, 256 * MiB);
	_Atomic int started = 0;
	struct hammer hs[THREADS + 1];
	struct launcher l = { .hs = hs };
	pthread_t launcher;

	(void)state;
	for (int t = 0; t <= THREADS; t++)
		hs[t] = (struct hammer){ pool, (uint64_t)(t + 1) << 40, &started, 0 };
	assert_int_equal(pthread_create(&launcher, NULL, launch, &l), 0);
	hammer_run(&hs[0]);
	assert_int_equal(pthread_join(launcher, NULL), 0);
	assert_int_equal(l.created, THREADS);
	for (int t = 0; t <= THREADS; t++)
		assert_int_equal(hs[t].failures, 0);
	assert_int_equal(th_live_blocks(pool), 0);
	assert_int_equal(shmrig_pool_audit(pool), 0);
	assert_int_equal(shmrig_pool_close(pool), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_block_sizes),
		cmocka_unit_test(test_prefix_is_the_tests),
		cmocka_unit_test(test_alloc_every_class),
		cmocka_unit_test(test_reuse_and_stale),
		cmocka_unit_test(test_not_live),
		cmocka_unit_test(test_bad_refs),
		cmocka_unit_test(test_foreign_segment),
		cmocka_unit_test(test_limit),
		cmocka_unit_test(test_limit_kept_large),
		cmocka_unit_test(test_big_class_packing),
		cmocka_unit_test(test_many_blocks),
		cmocka_unit_test(test_no_page_faults),
		cmocka_unit_test(test_free_n_own),
		cmocka_unit_test(test_retain),
		cmocka_unit_test(test_slab),
		cmocka_unit_test(test_large_reuse),
		cmocka_unit_test(test_owner_stats_and_leaks),
		cmocka_unit_test(test_bad_options),
		cmocka_unit_test(test_env_options),
		cmocka_unit_test(test_threads_join_the_opener),
	};

	return cmocka_run_group_tests(tests, th_sweep_leftovers, NULL);
}
