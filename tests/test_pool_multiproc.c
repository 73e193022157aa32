/* SPDX-License-Identifier: MIT */
/* Pool across processes: attach by ref, ownership hand-off, a peer killed
 * while it owns blocks, concurrent frees into one arena, inherited handles. */
#include "helpers.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <shmrig/pool.h>

#define TIMEOUT_MS 60000

static shmrig_pool *open_pool(void)
{
	return th_open_pool(4 * MiB, 128 * MiB);
}

static unsigned char pattern(unsigned block, size_t i)
{
	return (unsigned char)(block * 31 + i * 7 + (i >> 12));
}

/* ---- a second process attaches by ref and sees the bytes ---- */

enum {
	NREFS = 8
};
static const size_t sizes[NREFS] = { 1, 64, 100, 4096, 65536, 700000, MiB, 3 * MiB + 17 };

struct refs_arg {
	struct shmrig_ref refs[NREFS];
};

static int child_verify(void *varg)
{
	struct refs_arg *arg = varg;
	shmrig_pool *pool = open_pool();
	int bad = 0;

	if (!pool)
		return 10;
	for (unsigned b = 0; b < NREFS; b++) {
		unsigned char *data;

		if (shmrig_pool_attach(pool, &arg->refs[b], (void **)&data))
			return 11;
		for (size_t i = 0; i < arg->refs[b].content_size; i++)
			bad += data[i] != pattern(b, i);
		data[0] = 0xee; /* a reply the parent checks */
		/* not the owner: may look, may not free */
		if (shmrig_pool_free(pool, &arg->refs[b]) != -EPERM)
			return 12;
	}
	if (bad)
		return 13;
	/* it owns nothing, so its close has nothing to report */
	return shmrig_pool_close(pool) == 0 ? 0 : 14;
}

static void test_attach_across(void **state)
{
	static shmrig_pool *pool; /* reachable in forked children (valgrind) */
	struct refs_arg arg;
	int fds = th_count_fds();

	(void)state;
	pool = open_pool();
	assert_non_null(pool);
	for (unsigned b = 0; b < NREFS; b++) {
		unsigned char *data;

		assert_int_equal(shmrig_pool_alloc(pool, sizes[b], 0, b, &arg.refs[b],
						   (void **)&data),
				 0);
		for (size_t i = 0; i < sizes[b]; i++)
			data[i] = pattern(b, i);
	}
	assert_int_equal(th_run_child(child_verify, &arg, TIMEOUT_MS), 0);
	for (unsigned b = 0; b < NREFS; b++) {
		unsigned char *data;

		assert_int_equal(shmrig_pool_attach(pool, &arg.refs[b], (void **)&data), 0);
		assert_int_equal(data[0], 0xee);
		assert_int_equal(shmrig_pool_free(pool, &arg.refs[b]), 0);
	}
	assert_int_equal(shmrig_pool_close(pool), 0);
	assert_int_equal(th_count_segments(th_prefix()), 0);
	assert_int_equal(th_count_fds(), fds);
}

/* ---- ownership moves to the receiver, who frees into our arena ---- */

typedef int (*peer_fn)(shmrig_pool *pool, int in, int out);

/* In the child: its own pool, then fn(pool, in, out). */
static int with_pool(int in, int out, void *arg)
{
	shmrig_pool *pool = open_pool();

	return pool ? (*(peer_fn *)arg)(pool, in, out) : 99;
}

/* A child that opens its own pool and runs fn; its exit status is fn's. */
static struct th_peer spawn_peer(peer_fn fn)
{
	return th_peer_spawn(with_pool, &fn);
}

static int finish_peer(struct th_peer *p)
{
	return th_peer_finish(p, TIMEOUT_MS);
}

/* Read refs until EOF, claim and free each (we own them after the transfer). */
static int child_free_all(shmrig_pool *pool, int in, int out)
{
	struct shmrig_ref ref;
	int freed = 0;

	while (th_read_all(in, &ref, sizeof(ref)) == 0) {
		if (shmrig_pool_free(pool, &ref) != -EBUSY || shmrig_pool_claim(pool, &ref) ||
		    shmrig_pool_claim(pool, &ref) != -SHMRIG_ECLAIMED || shmrig_pool_free(pool, &ref))
			return 20;
		freed++;
	}
	if (th_write_all(out, &freed, sizeof(freed)))
		return 21;
	return shmrig_pool_close(pool) == 0 ? 0 : 22;
}

static void test_transfer(void **state)
{
	static shmrig_pool *pool; /* reachable in forked children (valgrind) */
	struct shmrig_ref ref;
	struct th_peer peer;
	void *data;
	int freed = 0;

	(void)state;
	pool = open_pool();
	assert_non_null(pool);
	peer = spawn_peer(child_free_all);
	assert_int_equal(shmrig_pool_alloc(pool, 5000, 0, 1, &ref, &data), 0);
	/* a stranger cannot take it, and no one can give it to a dead pid */
	assert_int_equal(shmrig_pool_transfer(pool, &ref, 0), -ESRCH);
	assert_int_equal(shmrig_pool_transfer(pool, &ref, peer.pid), 0);
	/* it is the child's now: we may not free it */
	assert_int_equal(shmrig_pool_free(pool, &ref), -EPERM);
	assert_int_equal(shmrig_pool_transfer(pool, &ref, getpid()), -EPERM);
	assert_int_equal(th_write_all(peer.to_child, &ref, sizeof(ref)), 0);
	close(peer.to_child);
	peer.to_child = -1;
	assert_int_equal(th_read_all(peer.from_child, &freed, sizeof(freed)), 0);
	assert_int_equal(freed, 1);
	assert_int_equal(finish_peer(&peer), 0);
	assert_int_equal(th_live_blocks(pool), 0);
	assert_int_equal(shmrig_pool_attach(pool, &ref, &data), -SHMRIG_ESTALE);
	assert_int_equal(shmrig_pool_close(pool), 0);
	assert_int_equal(th_count_segments(th_prefix()), 0);
}

/* ---- a batch claimed with one call and freed with one ---- */

enum {
	BATCH = 150 /* more than one run of 64, of three classes, one large block */
};

static size_t batch_size(unsigned i)
{
	if (i == BATCH - 1)
		return 3 * MiB; /* a segment of its own */
	return i < 70 || (i >= 100 && i < 120) ? 64 : i < 100 ? 5000 : 200;
}

/* Claim the batch with one call (a second claims nothing), free it with one
 * in which one ref is stale: that one is said, every other is freed. */
static int child_batch(shmrig_pool *pool, int in, int out)
{
	static struct shmrig_ref refs[BATCH], stale;
	int rc[5];

	if (th_read_all(in, refs, sizeof(refs)))
		return 40;
	rc[0] = shmrig_pool_claim_n(pool, refs, BATCH);
	rc[1] = shmrig_pool_claim_n(pool, refs, BATCH);
	stale = refs[BATCH / 2];
	stale.generation++;
	refs[BATCH / 2] = stale;
	rc[2] = shmrig_pool_free_n(pool, refs, BATCH);
	stale.generation--;
	rc[3] = shmrig_pool_free_n(pool, &stale, 1);
	rc[4] = shmrig_pool_free_n(pool, NULL, 1) == -EINVAL &&
		shmrig_pool_free_n(pool, NULL, 0) == 0 &&
		shmrig_pool_claim_n(pool, NULL, 1) == -EINVAL &&
		shmrig_pool_claim_n(pool, NULL, 0) == 0;
	if (th_write_all(out, rc, sizeof(rc)))
		return 41;
	return shmrig_pool_close(pool) == 0 ? 0 : 42;
}

static void test_batch_claim_free(void **state)
{
	static shmrig_pool *pool; /* reachable in forked children (valgrind) */
	static struct shmrig_ref refs[BATCH], again[BATCH + 64];
	struct th_peer peer;
	void *data;
	int rc[5];

	(void)state;
	pool = open_pool();
	assert_non_null(pool);
	peer = spawn_peer(child_batch);
	for (unsigned i = 0; i < BATCH; i++) {
		assert_int_equal(shmrig_pool_alloc(pool, batch_size(i), 0, i, &refs[i], &data), 0);
		assert_int_equal(shmrig_pool_transfer(pool, &refs[i], peer.pid), 0);
	}
	assert_int_equal(th_write_all(peer.to_child, refs, sizeof(refs)), 0);
	assert_int_equal(th_read_all(peer.from_child, rc, sizeof(rc)), 0);
	assert_int_equal(finish_peer(&peer), 0);
	assert_int_equal(rc[0], 0);
	assert_int_equal(rc[1], -SHMRIG_ECLAIMED);
	assert_int_equal(rc[2], -SHMRIG_ESTALE);
	assert_int_equal(rc[3], 0);
	assert_int_equal(rc[4], 1);
	assert_int_equal(th_live_blocks(pool), 0);
	assert_int_equal(shmrig_pool_audit(pool), 0);
	/* every run was pushed: reap finds no REMOTE block the dead child left
	 * on no list */
	assert_int_equal(shmrig_pool_reap(pool), 0);
	/* each was freed: a ref to it is stale */
	for (unsigned i = 0; i < BATCH; i++)
		assert_int_equal(shmrig_pool_attach(pool, &refs[i], &data), -SHMRIG_ESTALE);
	/* and the arenas hand out what came back, each block once */
	for (unsigned i = 0; i < BATCH + 64; i++)
		assert_int_equal(shmrig_pool_alloc(pool, 64, 0, i, &again[i], &data), 0);
	for (unsigned i = 0; i < BATCH + 64; i++)
		for (unsigned j = 0; j < i; j++)
			assert_false(again[i].offset == again[j].offset &&
				     strcmp(again[i].name, again[j].name) == 0);
	for (unsigned i = 0; i < BATCH + 64; i++)
		assert_int_equal(shmrig_pool_free(pool, &again[i]), 0);
	assert_int_equal(shmrig_pool_audit(pool), 0);
	assert_int_equal(shmrig_pool_close(pool), 0);
	assert_int_equal(th_count_segments(th_prefix()), 0);
}

/* ---- a child killed with SIGKILL while it owns blocks ---- */

enum {
	GIVEN = 6,
	KEPT = 4,
	CHILD_OWN = 5
};

/* Take refs handed over, allocate some of its own, say so, then wait to die. */
static int child_hold(shmrig_pool *pool, int in, int out)
{
	struct shmrig_ref refs[GIVEN], mine;
	void *data;
	char ready = 'r';

	if (th_read_all(in, refs, sizeof(refs)))
		return 30;
	for (unsigned i = 0; i < GIVEN; i++)
		if (shmrig_pool_attach(pool, &refs[i], &data))
			return 31;
	for (unsigned i = 0; i < CHILD_OWN; i++)
		if (shmrig_pool_alloc(pool, 1000 * (i + 1), 0, i, &mine, &data))
			return 32;
	if (th_write_all(out, &ready, 1))
		return 33;
	/* Block until killed: the parent closes nothing before it kills us. */
	th_read_all(in, &ready, 1);
	return 34;
}

static void test_reap_killed_child(void **state)
{
	static shmrig_pool *pool; /* reachable in forked children (valgrind) */
	struct shmrig_ref refs[GIVEN + KEPT];
	struct shmrig_owner_stats owners[4] = { SHMRIG_SIZED(struct shmrig_owner_stats) };
	int child_segments, our_segments;
	struct th_peer peer;
	char ready;
	void *data;

	(void)state;
	pool = open_pool();
	assert_non_null(pool);
	peer = spawn_peer(child_hold);
	for (unsigned i = 0; i < GIVEN + KEPT; i++) {
		assert_int_equal(shmrig_pool_alloc(pool, 64 << i, 0, i, &refs[i], &data), 0);
		if (i < GIVEN)
			assert_int_equal(shmrig_pool_transfer(pool, &refs[i], peer.pid), 0);
	}
	assert_int_equal(th_write_all(peer.to_child, refs, GIVEN * sizeof(refs[0])), 0);
	assert_int_equal(th_read_all(peer.from_child, &ready, 1), 0);

	assert_int_equal(shmrig_pool_owner_stats(pool, owners, 4), 2);
	assert_int_equal(shmrig_pool_reap(pool), 0); /* everyone is alive */

	assert_int_equal(kill(peer.pid, SIGKILL), 0);
	assert_int_equal(finish_peer(&peer), 128 + SIGKILL);

	assert_int_equal(th_live_blocks(pool), GIVEN + KEPT);
	assert_int_equal(shmrig_pool_reap(pool), GIVEN);
	assert_int_equal(th_live_blocks(pool), KEPT);
	assert_int_equal(shmrig_pool_audit(pool), 0);
	assert_int_equal(shmrig_pool_owner_stats(pool, owners, 4), 1);
	assert_int_equal(owners[0].pid, getpid());
	for (unsigned i = 0; i < GIVEN; i++)
		assert_int_equal(shmrig_pool_attach(pool, &refs[i], &data), -SHMRIG_ESTALE);

	/* The child's own arenas are still in /dev/shm; sweep removes them, ours stays. */
	child_segments = th_count_segments_of(th_prefix(), peer.pid);
	our_segments = th_count_segments_of(th_prefix(), getpid());
	assert_true(child_segments >= 1);
	assert_int_equal(shmrig_pool_sweep(pool), child_segments);
	assert_int_equal(shmrig_pool_sweep(pool), 0);
	assert_int_equal(th_count_segments_of(th_prefix(), peer.pid), 0);
	assert_int_equal(th_count_segments_of(th_prefix(), getpid()), our_segments);
	for (unsigned i = GIVEN; i < GIVEN + KEPT; i++)
		assert_int_equal(shmrig_pool_free(pool, &refs[i]), 0);
	assert_int_equal(shmrig_pool_close(pool), 0);
	assert_int_equal(th_count_segments(th_prefix()), 0);
}

/* ---- two processes free into one arena while its creator allocates ---- */

enum {
	PER_CHILD = 3000,
	CLASS_SIZE = 200
};

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return (x > y) - (x < y);
}

static void test_concurrent_frees(void **state)
{
	/* static: forked children inherit these, and valgrind must find them reachable */
	static shmrig_pool *pool;
	static struct shmrig_ref *refs;
	static uint64_t *offsets;
	struct th_peer peers[2];
	void *data;

	(void)state;
	pool = open_pool();
	refs = calloc(2 * PER_CHILD, sizeof(*refs));
	offsets = calloc(2 * PER_CHILD, sizeof(*offsets));
	assert_non_null(pool);
	peers[0] = spawn_peer(child_free_all);
	peers[1] = spawn_peer(child_free_all);
	for (unsigned i = 0; i < 2 * PER_CHILD; i++) {
		assert_int_equal(shmrig_pool_alloc(pool, CLASS_SIZE, 0, i, &refs[i], &data), 0);
		assert_int_equal(shmrig_pool_transfer(pool, &refs[i], peers[i % 2].pid), 0);
	}
	/* hand them out; the children free while we churn the same class */
	for (unsigned i = 0; i < 2 * PER_CHILD; i++) {
		struct shmrig_ref mine;

		assert_int_equal(th_write_all(peers[i % 2].to_child, &refs[i], sizeof(refs[i])), 0);
		assert_int_equal(shmrig_pool_alloc(pool, CLASS_SIZE, 0, 0, &mine, &data), 0);
		assert_int_equal(shmrig_pool_free(pool, &mine), 0);
	}
	for (unsigned c = 0; c < 2; c++) {
		int freed = 0;

		close(peers[c].to_child);
		peers[c].to_child = -1;
		assert_int_equal(th_read_all(peers[c].from_child, &freed, sizeof(freed)), 0);
		assert_int_equal(freed, PER_CHILD);
		assert_int_equal(finish_peer(&peers[c]), 0);
	}
	assert_int_equal(th_live_blocks(pool), 0);
	assert_int_equal(shmrig_pool_audit(pool), 0);
	/* The shared list is intact: every block comes back exactly once. */
	for (unsigned i = 0; i < 2 * PER_CHILD; i++) {
		assert_int_equal(shmrig_pool_alloc(pool, CLASS_SIZE, 0, i, &refs[i], &data), 0);
		offsets[i] = refs[i].offset;
	}
	qsort(offsets, 2 * PER_CHILD, sizeof(*offsets), cmp_u64);
	for (unsigned i = 1; i < 2 * PER_CHILD; i++)
		assert_true(offsets[i] != offsets[i - 1]);
	for (unsigned i = 0; i < 2 * PER_CHILD; i++)
		assert_int_equal(shmrig_pool_free(pool, &refs[i]), 0);
	assert_int_equal(shmrig_pool_close(pool), 0);
	free(refs);
	free(offsets);
}

/* ---- a consumer that only attaches large blocks does not hoard mappings ---- */

enum {
	LARGE_ROUNDS = 20
};

static int child_attach_large(shmrig_pool *pool, int in, int out)
{
	struct shmrig_pool_stats st = SHMRIG_SIZED(struct shmrig_pool_stats);
	struct shmrig_ref ref;
	uint64_t most = 0;
	void *data;
	char ack = 'a';

	while (th_read_all(in, &ref, sizeof(ref)) == 0) {
		if (shmrig_pool_attach(pool, &ref, &data) || *(unsigned char *)data != 0x5a)
			return 50;
		if (shmrig_pool_stats(pool, &st))
			return 51;
		if (st.segments > most)
			most = st.segments;
		if (th_write_all(out, &ack, 1))
			return 52;
	}
	/* the parent freed each block before sending the next: at most two mapped */
	if (most > 2)
		return 53;
	return shmrig_pool_close(pool) == 0 ? 0 : 54;
}

static void test_large_mappings_pruned(void **state)
{
	static shmrig_pool *pool; /* reachable in forked children (valgrind) */
	struct shmrig_ref ref;
	struct th_peer peer;
	void *data;
	char ack;

	(void)state;
	pool = open_pool();
	assert_non_null(pool);
	peer = spawn_peer(child_attach_large);
	for (unsigned i = 0; i < LARGE_ROUNDS; i++) {
		/* distinct sizes so that no segment is recycled */
		assert_int_equal(shmrig_pool_alloc(pool, 2 * MiB + (i + 1) * 512 * 1024, 0, i, &ref,
						   &data),
				 0);
		*(unsigned char *)data = 0x5a;
		assert_int_equal(th_write_all(peer.to_child, &ref, sizeof(ref)), 0);
		assert_int_equal(th_read_all(peer.from_child, &ack, 1), 0);
		assert_int_equal(shmrig_pool_free(pool, &ref), 0);
	}
	close(peer.to_child);
	peer.to_child = -1;
	assert_int_equal(finish_peer(&peer), 0);
	assert_int_equal(shmrig_pool_close(pool), 0);
	assert_int_equal(th_count_segments(th_prefix()), 0);
}

/* ---- a consumer keeps a few large segments it freed: their creator reuses them ---- */

enum {
	KEEP_ROUNDS = 10,
	KEPT_MAX = 4, /* LARGE_KEEP (pool_internal.h): foreign free segments kept mapped */
	KEEP_DISTINCT = KEPT_MAX + 3,
};

/* Phase 1: claim and free each large block sent, one at a time, and answer
 * how many segments we map after the free; every name must be the first
 * one's (the creator reused it). Phase 2: claim KEEP_DISTINCT blocks, then
 * free them all, and answer once. */
static int child_keep_large(shmrig_pool *pool, int in, int out)
{
	struct shmrig_pool_stats st = SHMRIG_SIZED(struct shmrig_pool_stats);
	struct shmrig_ref refs[KEEP_DISTINCT], first;
	uint32_t segments;
	void *data;

	for (unsigned i = 0; i < KEEP_ROUNDS + KEEP_DISTINCT; i++) {
		struct shmrig_ref *ref = &refs[i < KEEP_ROUNDS ? 0 : i - KEEP_ROUNDS];

		if (th_read_all(in, ref, sizeof(*ref)))
			return 60;
		if (i == 0)
			first = *ref;
		if (i < KEEP_ROUNDS && strcmp(ref->name, first.name) != 0)
			return 61; /* not reused */
		if (shmrig_pool_claim(pool, ref) || shmrig_pool_attach(pool, ref, &data) ||
		    *(unsigned char *)data != (unsigned char)i)
			return 62;
		if (i >= KEEP_ROUNDS)
			continue;
		if (shmrig_pool_free(pool, ref) || shmrig_pool_stats(pool, &st))
			return 63;
		segments = st.segments;
		if (th_write_all(out, &segments, sizeof(segments)))
			return 64;
	}
	for (unsigned i = 0; i < KEEP_DISTINCT; i++)
		if (shmrig_pool_free(pool, &refs[i]))
			return 65;
	if (shmrig_pool_stats(pool, &st))
		return 66;
	segments = st.segments;
	if (th_write_all(out, &segments, sizeof(segments)))
		return 67;
	return shmrig_pool_close(pool) == 0 ? 0 : 68;
}

static void test_large_kept_mapped(void **state)
{
	static shmrig_pool *pool; /* reachable in forked children (valgrind) */
	struct shmrig_ref refs[KEEP_DISTINCT];
	struct th_peer peer;
	uint32_t segments;
	void *data;

	(void)state;
	pool = open_pool();
	assert_non_null(pool);
	peer = spawn_peer(child_keep_large);
	/* one size: the creator's next alloc reuses the segment the consumer
	 * freed, and the consumer still has it mapped */
	for (unsigned i = 0; i < KEEP_ROUNDS; i++) {
		assert_int_equal(shmrig_pool_alloc(pool, 3 * MiB, 0, i, &refs[0], &data), 0);
		*(unsigned char *)data = (unsigned char)i;
		assert_int_equal(shmrig_pool_transfer(pool, &refs[0], peer.pid), 0);
		assert_int_equal(th_write_all(peer.to_child, &refs[0], sizeof(refs[0])), 0);
		assert_int_equal(th_read_all(peer.from_child, &segments, sizeof(segments)), 0);
		assert_int_equal(segments, 1); /* freed, and kept */
	}
	/* distinct segments, all mapped there, then all freed: the newest
	 * KEPT_MAX stay mapped */
	for (unsigned i = 0; i < KEEP_DISTINCT; i++) {
		assert_int_equal(shmrig_pool_alloc(pool, 3 * MiB, 0, i, &refs[i], &data), 0);
		*(unsigned char *)data = (unsigned char)(KEEP_ROUNDS + i);
	}
	for (unsigned i = 0; i < KEEP_DISTINCT; i++) {
		assert_int_equal(shmrig_pool_transfer(pool, &refs[i], peer.pid), 0);
		assert_int_equal(th_write_all(peer.to_child, &refs[i], sizeof(refs[i])), 0);
	}
	assert_int_equal(th_read_all(peer.from_child, &segments, sizeof(segments)), 0);
	assert_int_equal(segments, KEPT_MAX);
	assert_int_equal(finish_peer(&peer), 0);
	assert_int_equal(th_live_blocks(pool), 0);
	assert_int_equal(shmrig_pool_close(pool), 0);
	assert_int_equal(th_count_segments(th_prefix()), 0);
}

/* ---- a handle inherited through fork refuses to work ---- */

static int child_use_inherited(void *arg)
{
	struct shmrig_ref ref;
	void *data;

	if (shmrig_pool_alloc(arg, 64, 0, 0, &ref, &data) != -SHMRIG_EFORK)
		return 40;
	if (shmrig_pool_close(arg) != -SHMRIG_EFORK)
		return 41;
	return 0;
}

static void test_inherited_handle(void **state)
{
	static shmrig_pool *pool; /* reachable in forked children (valgrind) */
	struct shmrig_ref ref;
	void *data;

	(void)state;
	pool = open_pool();
	assert_non_null(pool);
	assert_int_equal(shmrig_pool_alloc(pool, 64, 0, 0, &ref, &data), 0);
	assert_int_equal(th_run_child(child_use_inherited, pool, TIMEOUT_MS), 0);
	assert_int_equal(shmrig_pool_free(pool, &ref), 0);
	assert_int_equal(shmrig_pool_close(pool), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_attach_across),
		cmocka_unit_test(test_transfer),
		cmocka_unit_test(test_batch_claim_free),
		cmocka_unit_test(test_reap_killed_child),
		cmocka_unit_test(test_concurrent_frees),
		cmocka_unit_test(test_large_mappings_pruned),
		cmocka_unit_test(test_large_kept_mapped),
		cmocka_unit_test(test_inherited_handle),
	};

	return cmocka_run_group_tests(tests, th_sweep_leftovers, NULL);
}
