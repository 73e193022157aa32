/* SPDX-License-Identifier: MIT */
/*
 * Death points (built with -Ddeath_points=true): a child is SIGKILLed at each
 * named step inside the pool in turn ($SHMRIG_DEATH_POINT), and afterwards
 * the survivor proves that nothing was lost and nothing live was reclaimed:
 * after reap, audit accounts for every block of every arena it maps, the block
 * the dead child was handling comes back (or its segment goes), and the
 * survivor's own live block is still live and intact.
 */
#include "helpers.h"

#include <shmrig/pool.h>

#include <errno.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define TIMEOUT_MS 20000u
/* A class of 8 blocks a chunk: a block that comes back is found in a few allocations. */
#define BLOCK 200000u
#define CANARY_SEED 77u

typedef int (*kid_fn)(shmrig_pool *pool, int in, int out, const char *point);

static shmrig_pool *open_pool(void)
{
	return th_open_pool(8 * MiB, 256 * MiB);
}

struct kid_call {
	kid_fn fn;
	const char *point;
};

/* In the child: its own pool, then fn(pool, in, out, point). */
static int run_kid(int in, int out, void *arg)
{
	const struct kid_call *call = arg;
	shmrig_pool *pool = open_pool();

	return pool ? call->fn(pool, in, out, call->point) : 99;
}

static struct th_peer spawn(kid_fn fn, const char *point)
{
	struct kid_call call = { fn, point };

	return th_peer_spawn(run_kid, &call);
}

static int finish(struct th_peer *k)
{
	return th_peer_finish(k, TIMEOUT_MS);
}

/* Arm the death point just before the call that must die in it: that call
 * never returns (its result is not looked at); the kid's exit code after it
 * says it did not die. */
static void arm(const char *point)
{
	setenv("SHMRIG_DEATH_POINT", point, 1);
}

/* Claim the ref the parent sends, then die at `point` in claim, free or the
 * remote free, or in handing it back. */
static int kid_take(shmrig_pool *pool, int in, int out, const char *point)
{
	struct shmrig_ref ref;

	(void)out;
	if (th_read_all(in, &ref, sizeof(ref)))
		return 10;
	if (strcmp(point, "claim") == 0)
		arm(point);
	if (shmrig_pool_claim(pool, &ref))
		return 11;
	if (strcmp(point, "transfer") == 0) {
		arm(point);
		(void)!shmrig_pool_transfer(pool, &ref, getppid());
		return 12;
	}
	arm(point); /* "free", "remote_free", or "remote_run" (free_n's push) */
	if (strcmp(point, "remote_run") == 0)
		(void)!shmrig_pool_free_n(pool, &ref, 1);
	else
		(void)!shmrig_pool_free(pool, &ref);
	return 13;
}

/* Claim the ref, say so, then wait to be killed. */
static int kid_hold(shmrig_pool *pool, int in, int out, const char *point)
{
	struct shmrig_ref ref;
	char ok = 'k';

	(void)point;
	if (th_read_all(in, &ref, sizeof(ref)) || shmrig_pool_claim(pool, &ref))
		return 20;
	if (th_write_all(out, &ok, 1))
		return 21;
	th_read_all(in, &ok, 1);
	return 22;
}

/* Map the arena a (dead owner's) ref names, then die inside reap. */
static int kid_reap(shmrig_pool *pool, int in, int out, const char *point)
{
	struct shmrig_ref ref;
	void *data;

	(void)out;
	if (th_read_all(in, &ref, sizeof(ref)) || shmrig_pool_attach(pool, &ref, &data))
		return 30;
	arm(point);
	(void)!shmrig_pool_reap(pool);
	return 31;
}

/* Die inside our own first allocation. */
static int kid_alloc(shmrig_pool *pool, int in, int out, const char *point)
{
	struct shmrig_ref ref;
	void *data;

	(void)in, (void)out;
	arm(point);
	(void)!shmrig_pool_alloc(pool, BLOCK, 0, 1, &ref, &data);
	return 40;
}

/* Allocate, hand the block to the parent, then die inside close. */
static int kid_close(shmrig_pool *pool, int in, int out, const char *point)
{
	struct shmrig_ref ref;
	void *data;

	(void)in;
	if (shmrig_pool_alloc(pool, BLOCK, 0, 2, &ref, &data))
		return 50;
	th_fill(data, BLOCK, 5);
	if (shmrig_pool_transfer(pool, &ref, getppid()) || th_write_all(out, &ref, sizeof(ref)))
		return 51;
	arm(point);
	(void)!shmrig_pool_close(pool);
	return 52;
}

/*
 * Hand the parent a block, then fill the other three chunks of its 8 MiB
 * arena with a class each, free the first of them, and die inside the
 * allocation that takes that empty chunk back for a fourth class.
 */
static int kid_reclaim(shmrig_pool *pool, int in, int out, const char *point)
{
	static const size_t sizes[] = { 64, 1000, 16000 };
	struct shmrig_ref ref, first;
	void *data;

	(void)in;
	if (shmrig_pool_alloc(pool, BLOCK, 0, 2, &ref, &data))
		return 60;
	th_fill(data, BLOCK, 6);
	if (shmrig_pool_transfer(pool, &ref, getppid()) || th_write_all(out, &ref, sizeof(ref)))
		return 61;
	for (unsigned i = 0; i < 3; i++)
		if (shmrig_pool_alloc(pool, sizes[i], 0, 3, i ? &ref : &first, &data))
			return 62;
	if (shmrig_pool_free(pool, &first))
		return 63;
	arm(point);
	(void)!shmrig_pool_alloc(pool, 4000, 0, 4, &ref, &data);
	return 64;
}

/* The survivor's checks: reap, audit, the canary, and the lost block back. */
static void check_survivor(shmrig_pool *pool, const struct shmrig_ref *canary, void *canary_data,
			   const struct shmrig_ref *lost)
{
	struct shmrig_ref refs[16];
	bool found = false;
	void *data;
	int n = 0;

	assert_true(shmrig_pool_reap(pool) >= 0);
	assert_int_equal(shmrig_pool_audit(pool), 0);
	assert_int_equal(th_live_blocks(pool), 1);
	assert_int_equal(shmrig_pool_attach(pool, canary, &data), 0);
	assert_ptr_equal(data, canary_data);
	assert_int_equal(th_first_mismatch(data, BLOCK, CANARY_SEED), BLOCK);
	if (lost) {
		/* the block comes back: allocation finds it again */
		for (; n < 16 && !found; n++) {
			assert_int_equal(shmrig_pool_alloc(pool, BLOCK, 0, 9, &refs[n], &data), 0);
			found = strcmp(refs[n].name, lost->name) == 0 && refs[n].offset == lost->offset;
		}
		assert_true(found);
		while (n--)
			assert_int_equal(shmrig_pool_free(pool, &refs[n]), 0);
		assert_int_equal(shmrig_pool_audit(pool), 0);
	}
}

static void run_point(const char *point)
{
	shmrig_pool *pool = open_pool();
	struct shmrig_ref canary, ref;
	void *canary_data, *data;
	struct th_peer k, reaper;
	char ok;

	printf("# death point %s\n", point);
	assert_non_null(pool);
	assert_int_equal(shmrig_pool_alloc(pool, BLOCK, 0, 1, &canary, &canary_data), 0);
	th_fill(canary_data, BLOCK, CANARY_SEED);

	if (strcmp(point, "alloc") == 0 || strcmp(point, "arena_create") == 0) {
		k = spawn(kid_alloc, point);
		assert_int_equal(finish(&k), 128 + SIGKILL);
		/* its arena holds nothing anybody needs (or has no header yet:
		 * nobody can have attached it): sweep removes it */
		assert_true(shmrig_pool_sweep(pool) >= 1);
		assert_int_equal(th_count_segments_of(th_prefix(), k.pid), 0);
		check_survivor(pool, &canary, canary_data, NULL);
	} else if (strcmp(point, "chunk_reclaim") == 0) {
		k = spawn(kid_reclaim, point);
		assert_int_equal(th_read_all(k.from_child, &ref, sizeof(ref)), 0);
		assert_int_equal(finish(&k), 128 + SIGKILL);
		/* the dead child's arena, one chunk unassigned: its block to us
		 * is intact, audit accounts for the rest, and once we free it
		 * nothing of the arena is held: sweep removes it */
		assert_int_equal(shmrig_pool_claim(pool, &ref), 0);
		assert_int_equal(shmrig_pool_attach(pool, &ref, &data), 0);
		assert_int_equal(th_first_mismatch(data, BLOCK, 6), BLOCK);
		assert_int_equal(shmrig_pool_audit(pool), 0);
		assert_int_equal(shmrig_pool_free(pool, &ref), 0);
		assert_true(shmrig_pool_reap(pool) >= 0);
		assert_true(shmrig_pool_sweep(pool) >= 0);
		assert_int_equal(th_count_segments_of(th_prefix(), k.pid), 0);
		check_survivor(pool, &canary, canary_data, NULL);
	} else if (strcmp(point, "close") == 0) {
		k = spawn(kid_close, point);
		assert_int_equal(th_read_all(k.from_child, &ref, sizeof(ref)), 0);
		assert_int_equal(finish(&k), 128 + SIGKILL);
		/* the block it sent is ours and readable; freeing it, we are its
		 * last owner, and sweep finds nothing of the dead child held */
		assert_int_equal(shmrig_pool_claim(pool, &ref), 0);
		assert_int_equal(shmrig_pool_attach(pool, &ref, &data), 0);
		assert_int_equal(th_first_mismatch(data, BLOCK, 5), BLOCK);
		assert_int_equal(shmrig_pool_free(pool, &ref), 0);
		assert_true(shmrig_pool_sweep(pool) >= 0);
		assert_int_equal(th_count_segments_of(th_prefix(), k.pid), 0);
		check_survivor(pool, &canary, canary_data, NULL);
	} else if (strcmp(point, "reap") == 0) {
		assert_int_equal(shmrig_pool_alloc(pool, BLOCK, 0, 3, &ref, &data), 0);
		k = spawn(kid_hold, point);
		assert_int_equal(shmrig_pool_transfer(pool, &ref, k.pid), 0);
		assert_int_equal(th_write_all(k.to_child, &ref, sizeof(ref)), 0);
		assert_int_equal(th_read_all(k.from_child, &ok, 1), 0);
		kill(k.pid, SIGKILL);
		assert_int_equal(finish(&k), 128 + SIGKILL);
		reaper = spawn(kid_reap, point);
		assert_int_equal(th_write_all(reaper.to_child, &ref, sizeof(ref)), 0);
		assert_int_equal(finish(&reaper), 128 + SIGKILL);
		check_survivor(pool, &canary, canary_data, &ref);
	} else {
		assert_int_equal(shmrig_pool_alloc(pool, BLOCK, 0, 3, &ref, &data), 0);
		k = spawn(kid_take, point);
		assert_int_equal(shmrig_pool_transfer(pool, &ref, k.pid), 0);
		assert_int_equal(th_write_all(k.to_child, &ref, sizeof(ref)), 0);
		assert_int_equal(finish(&k), 128 + SIGKILL);
		check_survivor(pool, &canary, canary_data, &ref);
	}
	assert_int_equal(shmrig_pool_free(pool, &canary), 0);
	assert_int_equal(shmrig_pool_close(pool), 0);
	pool = open_pool();
	assert_true(shmrig_pool_sweep(pool) >= 0);
	assert_int_equal(shmrig_pool_close(pool), 0);
	assert_int_equal(th_count_segments(th_prefix()), 0);
}

/* Every DEATH_POINT of lib/ (grep DEATH_POINT lib/): one case each. */
static void dp_alloc(void **state)
{
	(void)state;
	run_point("alloc");
}

static void dp_arena_create(void **state)
{
	(void)state;
	run_point("arena_create");
}

static void dp_free(void **state)
{
	(void)state;
	run_point("free");
}

static void dp_remote_free(void **state)
{
	(void)state;
	run_point("remote_free");
}

static void dp_remote_run(void **state)
{
	(void)state;
	run_point("remote_run");
}

static void dp_transfer(void **state)
{
	(void)state;
	run_point("transfer");
}

static void dp_claim(void **state)
{
	(void)state;
	run_point("claim");
}

static void dp_reap(void **state)
{
	(void)state;
	run_point("reap");
}

static void dp_chunk_reclaim(void **state)
{
	(void)state;
	run_point("chunk_reclaim");
}

static void dp_close(void **state)
{
	(void)state;
	run_point("close");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(dp_alloc),      cmocka_unit_test(dp_arena_create),
		cmocka_unit_test(dp_free),       cmocka_unit_test(dp_remote_free),
		cmocka_unit_test(dp_remote_run), cmocka_unit_test(dp_transfer),
		cmocka_unit_test(dp_claim),      cmocka_unit_test(dp_reap),
		cmocka_unit_test(dp_close),      cmocka_unit_test(dp_chunk_reclaim),
	};

	return cmocka_run_group_tests(tests, th_sweep_leftovers, th_remove_leftovers);
}
