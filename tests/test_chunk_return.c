/* SPDX-License-Identifier: MIT */
/*
 * Empty chunks go back to the arena for any class (issue 14): a pool whose
 * size mix shifts runs at a limit near its peak live bytes, not at the sum of
 * every class's peak; an -ENOMEM names the class and the limit; a chunk that
 * changed class refuses refs from before, in this process and in another
 * that mapped it under its old class.
 */
#include "helpers.h"

#include <shmrig/common.h>
#include <shmrig/pool.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define CHUNK ((size_t)SHMRIG_POOL_CHUNK)
#define TIMEOUT_MS 20000u
#define MAX_HELD 200000u

struct held {
	struct shmrig_ref refs[MAX_HELD];
	void *data[MAX_HELD];
	size_t size[MAX_HELD];
	unsigned seed[MAX_HELD];
	size_t n, head; /* a ring: oldest at head */
	size_t bytes, block_bytes; /* content, and the blocks' (ref.size) */
};

static struct held *held_new(void)
{
	struct held *h = calloc(1, sizeof(*h));

	assert_non_null(h);
	return h;
}

static int take(shmrig_pool *pool, struct held *h, size_t size, unsigned seed)
{
	size_t i = (h->head + h->n) % MAX_HELD;
	int ret;

	assert_true(h->n < MAX_HELD);
	ret = shmrig_pool_alloc(pool, size, 0, seed, &h->refs[i], &h->data[i]);
	if (ret)
		return ret;
	th_fill(h->data[i], size, seed);
	h->size[i] = size;
	h->seed[i] = seed;
	h->n++;
	h->bytes += size;
	h->block_bytes += h->refs[i].size;
	return 0;
}

/* Free the oldest, checking its bytes first: nobody wrote into a held block. */
static void drop_oldest(shmrig_pool *pool, struct held *h)
{
	size_t i = h->head;

	assert_int_equal(th_first_mismatch(h->data[i], h->size[i], h->seed[i]), h->size[i]);
	assert_int_equal(shmrig_pool_free(pool, &h->refs[i]), 0);
	h->bytes -= h->size[i];
	h->block_bytes -= h->refs[i].size;
	h->head = (h->head + 1) % MAX_HELD;
	h->n--;
}

static void drop_all(shmrig_pool *pool, struct held *h)
{
	while (h->n)
		drop_oldest(pool, h);
}

/*
 * One class at a time, each filling the pool until -ENOMEM, then all freed:
 * every class gets about the same room, the chunks the one before it held.
 * Before chunks came back, the second class got -ENOMEM at once (every chunk
 * belonged to the first).
 */
static void test_each_class_in_turn(void **state)
{
	static const size_t sizes[] = { 64, 1000, 16384, 200000, 1u << 20, 100, 4096, 64 };
	shmrig_pool *pool = th_open_pool(8 * CHUNK, 8 * CHUNK);
	struct held *h = held_new();
	size_t first = 0;

	(void)state;
	assert_non_null(pool);
	for (size_t k = 0; k < sizeof(sizes) / sizeof(sizes[0]); k++) {
		int ret;

		while ((ret = take(pool, h, sizes[k], (unsigned)(k * 100000 + h->n))) == 0)
			;
		assert_int_equal(ret, -ENOMEM);
		printf("# %zu-byte values: %zu held, %zu bytes\n", sizes[k], h->n, h->bytes);
		/* 7 chunks besides the header's: at least 6 of them hold this class */
		assert_true(h->bytes >= 6 * CHUNK * 8 / 10);
		if (!first)
			first = h->bytes;
		assert_int_equal(shmrig_pool_audit(pool), 0);
		drop_all(pool, h);
	}
	assert_int_equal(th_live_blocks(pool), 0);
	assert_int_equal(shmrig_pool_audit(pool), 0);
	assert_int_equal(shmrig_pool_close(pool), 0);
	free(h);
}

/* A chunk with one block in use stays its class's; the -ENOMEM says which
 * class asked, the limit, and which classes hold the chunks. */
static void test_enomem_names_class_and_limit(void **state)
{
	shmrig_pool *pool = th_open_pool(4 * CHUNK, 4 * CHUNK);
	struct held *h = held_new();
	struct shmrig_ref ref;
	void *data;
	const char *why;

	(void)state;
	assert_non_null(pool);
	/* fill with 64 B and hold one block in 1000: every chunk keeps some */
	while (take(pool, h, 64, (unsigned)h->n) == 0)
		;
	{
		struct held *keep = held_new();
		size_t n = h->n;

		/* hold every 1000th block (at least one in every chunk) */
		for (size_t i = 0; i < n; i++) {
			size_t at = h->head;

			if (i % 1000 == 999) {
				keep->refs[keep->n] = h->refs[at];
				keep->data[keep->n] = h->data[at];
				keep->size[keep->n] = h->size[at];
				keep->seed[keep->n] = h->seed[at];
				keep->n++;
				h->head = (h->head + 1) % MAX_HELD;
				h->n--;
			} else {
				drop_oldest(pool, h);
			}
		}
		assert_int_equal(shmrig_pool_alloc(pool, 300000, 0, 1, &ref, &data), -ENOMEM);
		why = shmrig_last_error();
		printf("# %s\n", why);
		assert_non_null(strstr(why, "class 13 (524288-byte blocks)"));
		assert_non_null(strstr(why, "limit of 8388608 bytes"));
		assert_non_null(strstr(why, "64 B x"));
		drop_all(pool, keep);
		free(keep);
	}
	/* every chunk empty again: the big class gets one */
	assert_int_equal(shmrig_pool_alloc(pool, 300000, 0, 1, &ref, &data), 0);
	assert_int_equal(shmrig_pool_free(pool, &ref), 0);
	assert_int_equal(shmrig_pool_audit(pool), 0);
	assert_int_equal(shmrig_pool_close(pool), 0);
	free(h);
}

/*
 * A ref from before a chunk changed class names a slot of the new class's
 * layout: refused (its generation is below every new one, and the block's
 * class stamp is checked), and the new blocks are untouched.
 */
static void test_old_refs_refused(void **state)
{
	shmrig_pool *pool = th_open_pool(4 * CHUNK, 4 * CHUNK);
	struct held *h = held_new(), *old = held_new();
	int ret;

	(void)state;
	assert_non_null(pool);
	while (take(pool, h, 64, (unsigned)h->n) == 0)
		;
	/* remember every 997th ref, then free everything */
	for (size_t i = 0; i < h->n; i += 997)
		old->refs[old->n++] = h->refs[(h->head + i) % MAX_HELD];
	drop_all(pool, h);
	while (take(pool, h, 4096, (unsigned)(7 + h->n)) == 0)
		;
	assert_true(h->bytes >= 2 * CHUNK);
	for (size_t i = 0; i < old->n; i++) {
		ret = shmrig_pool_free(pool, &old->refs[i]);
		assert_true(ret == -SHMRIG_ESTALE || ret == -SHMRIG_EBADREF);
		ret = shmrig_pool_claim(pool, &old->refs[i]);
		assert_true(ret < 0);
	}
	assert_int_equal(shmrig_pool_audit(pool), 0);
	drop_all(pool, h); /* checks every 4 KiB block's bytes */
	assert_int_equal(shmrig_pool_close(pool), 0);
	free(h);
	free(old);
}

/*
 * Another process maps the arena while its chunks are 64-byte blocks, then
 * receives 4 KiB blocks from the same chunks after they changed class: it
 * reads the class again, so it claims, reads and frees them right, and its
 * frees come back to the creator.
 */
static int kid_relay(int in, int out, void *arg)
{
	shmrig_pool *pool = th_open_pool(4 * CHUNK, 4 * CHUNK);
	struct shmrig_ref ref;
	unsigned seed;
	void *data;
	char ok = 'k';

	(void)arg;
	if (!pool)
		return 10;
	for (;;) {
		if (th_read_all(in, &ref, sizeof(ref)))
			break;
		if (th_read_all(in, &seed, sizeof(seed)))
			return 11;
		if (shmrig_pool_claim(pool, &ref))
			return 12;
		if (shmrig_pool_attach(pool, &ref, &data))
			return 13;
		if (th_first_mismatch(data, ref.content_size, seed) != ref.content_size)
			return 14;
		if (shmrig_pool_free(pool, &ref))
			return 15;
		if (th_write_all(out, &ok, 1))
			return 16;
	}
	return shmrig_pool_close(pool) ? 17 : 0;
}

static void test_peer_follows_class_change(void **state)
{
	static const size_t sizes[] = { 64, 4096, 64, 200000, 1000 };
	/* the peer first: it inherits no pool or buffer of ours to leak */
	struct th_peer k = th_peer_spawn(kid_relay, NULL);
	shmrig_pool *pool = th_open_pool(4 * CHUNK, 4 * CHUNK);
	struct held *h = held_new();

	(void)state;
	assert_non_null(pool);
	for (size_t s = 0; s < sizeof(sizes) / sizeof(sizes[0]); s++) {
		unsigned sent = 0;
		char ok;

		/* fill the pool with this class (the chunks of the one before come back) */
		while (take(pool, h, sizes[s], (unsigned)(s * 1000003 + h->n)) == 0)
			;
		/* the peer gets one block of each chunk-sized stretch, frees it
		 * (a remote free), the rest we free */
		for (size_t i = 0; h->n; i++) {
			size_t at = h->head;

			if (i % 257 == 0) {
				assert_int_equal(shmrig_pool_transfer(pool, &h->refs[at], k.pid), 0);
				assert_int_equal(th_write_all(k.to_child, &h->refs[at],
							      sizeof(h->refs[at])),
						 0);
				assert_int_equal(th_write_all(k.to_child, &h->seed[at],
							      sizeof(h->seed[at])),
						 0);
				assert_int_equal(th_read_all(k.from_child, &ok, 1), 0);
				h->bytes -= h->size[at];
				h->head = (h->head + 1) % MAX_HELD;
				h->n--;
				sent++;
			} else {
				drop_oldest(pool, h);
			}
		}
		assert_true(sent > 0);
		assert_int_equal(shmrig_pool_audit(pool), 0);
	}
	assert_int_equal(th_peer_finish(&k, TIMEOUT_MS), 0);
	/* what the peer freed came back: one more full round of the first class */
	while (take(pool, h, 64, (unsigned)h->n) == 0)
		;
	assert_true(h->bytes >= 64 * 20000);
	drop_all(pool, h);
	assert_int_equal(th_live_blocks(pool), 0);
	assert_int_equal(shmrig_pool_close(pool), 0);
	free(h);
}

/*
 * A workload whose size mix shifts over time: phases of two classes each,
 * values held in a FIFO bounded by block bytes (the peak), each phase turning
 * it over three times. It runs, without one -ENOMEM, at a limit of its peak
 * live block bytes plus a tenth, plus one chunk for each of the four classes
 * in play when the mix shifts (two leaving, two arriving), rounded down to
 * whole chunks: 10 chunks for a 6-chunk peak. It can, because blocks are used
 * again in the order they were freed: a chunk holds values of like age, and
 * empties as they go. With a stack of free blocks (before) it needed 14: a
 * chunk of the phase before was held by one young value among old ones, and
 * the new phase's values already needed chunks of their own. Before chunks
 * came back at all it ran out in the third phase, every chunk still belonging
 * to an earlier class. (A batch that frees its values before the next begins
 * needs its peak and the header's chunk: test_each_class_in_turn.)
 */
static void test_shifting_mix(void **state)
{
	static const size_t mixes[][2] = {
		{ 64, 1024 }, { 16384, 262144 }, { 2048, 65536 }, { 128, 8192 }
	};
	const size_t peak = 6 * CHUNK;
	const size_t limit = (peak + peak / 10 + 4 * CHUNK) / CHUNK * CHUNK;
	shmrig_pool *pool = th_open_pool(limit, limit);
	struct held *h = held_new();
	uint64_t rng = 12345;
	size_t top = 0, values = 0;

	(void)state;
	assert_non_null(pool);
	for (size_t phase = 0; phase < 2 * sizeof(mixes) / sizeof(mixes[0]); phase++) {
		const size_t *mix = mixes[phase % (sizeof(mixes) / sizeof(mixes[0]))];

		for (size_t made = 0; made < 3 * peak;) {
			size_t cls, size;
			int ret;

			rng = rng * 6364136223846793005ull + 1442695040888963407ull;
			cls = mix[(rng >> 33) & 1];
			size = cls / 2 + 1 + (size_t)((rng >> 40) % (cls / 2)); /* in (cls/2, cls] */
			while (h->n && h->block_bytes + cls > peak)
				drop_oldest(pool, h);
			ret = take(pool, h, size, (unsigned)(rng >> 20));
			if (ret)
				printf("# phase %zu: %s\n", phase, shmrig_last_error());
			assert_int_equal(ret, 0);
			made += cls;
			values++;
			if (h->block_bytes > top)
				top = h->block_bytes;
		}
	}
	printf("# %zu values, peak live %zu block bytes, limit %zu bytes (%.2fx the peak)\n",
	       values, top, limit, (double)limit / (double)top);
	assert_true(limit <= top + top / 10 + 4 * CHUNK);
	drop_all(pool, h);
	assert_int_equal(shmrig_pool_audit(pool), 0);
	assert_int_equal(shmrig_pool_close(pool), 0);
	free(h);
}

/*
 * Blocks are used again in the order they were freed, except a block freed
 * before any other of its class was taken: that one is taken next, while its
 * lines are still in this CPU's cache.
 */
static void test_reuse_order(void **state)
{
	static const int order[] = { 5, 1, 6, 2 }, kept[] = { 0, 3, 4, 7 };
	shmrig_pool *pool = th_open_pool(4 * CHUNK, 4 * CHUNK);
	struct shmrig_pool_stats st = SHMRIG_SIZED(struct shmrig_pool_stats);
	struct shmrig_ref refs[8], again[4], skip[64], hot;
	uint64_t before, last = 0;
	void *data;

	(void)state;
	assert_non_null(pool);
	for (int i = 0; i < 8; i++)
		assert_int_equal(shmrig_pool_alloc(pool, 1000, 0, 0, &refs[i], &data), 0);
	/* a value freed right after it was made: its block is the next one */
	for (int i = 0; i < 3; i++) {
		assert_int_equal(shmrig_pool_alloc(pool, 1000, 0, 0, &hot, &data), 0);
		if (i)
			assert_int_equal(hot.offset, last);
		last = hot.offset;
		assert_int_equal(shmrig_pool_free(pool, &hot), 0);
	}
	/* freed in the order 5, 1, 6, 2: taken again in that order, after the
	 * blocks the class had in its cache before (freed earlier) */
	assert_int_equal(shmrig_pool_stats(pool, &st), 0);
	before = st.cached_blocks;
	assert_true(before <= 64);
	for (int i = 0; i < 4; i++)
		assert_int_equal(shmrig_pool_free(pool, &refs[order[i]]), 0);
	for (uint64_t k = 0; k < before; k++) {
		assert_int_equal(shmrig_pool_alloc(pool, 1000, 0, 0, &skip[k], &data), 0);
		for (int i = 0; i < 4; i++)
			assert_false(skip[k].offset == refs[order[i]].offset);
	}
	for (int i = 0; i < 4; i++) {
		assert_int_equal(shmrig_pool_alloc(pool, 1000, 0, 0, &again[i], &data), 0);
		assert_int_equal(again[i].offset, refs[order[i]].offset);
	}
	for (int i = 0; i < 4; i++)
		assert_int_equal(shmrig_pool_free(pool, &again[i]), 0);
	for (uint64_t k = 0; k < before; k++)
		assert_int_equal(shmrig_pool_free(pool, &skip[k]), 0);
	for (int i = 0; i < 4; i++)
		assert_int_equal(shmrig_pool_free(pool, &refs[kept[i]]), 0);
	assert_int_equal(shmrig_pool_audit(pool), 0);
	assert_int_equal(shmrig_pool_close(pool), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_each_class_in_turn),
		cmocka_unit_test(test_enomem_names_class_and_limit),
		cmocka_unit_test(test_old_refs_refused),
		cmocka_unit_test(test_peer_follows_class_change),
		cmocka_unit_test(test_shifting_mix),
		cmocka_unit_test(test_reuse_order),
	};

	return cmocka_run_group_tests(tests, th_sweep_leftovers, th_remove_leftovers);
}
