/* SPDX-License-Identifier: MIT */
/*
 * hostmem: large decoded values get huge-page-aligned mappings, kept a while
 * after release and reused (issue 15: a 256 MiB bytes decode paid ~1 s of
 * page faults for a 17 ms copy); what is kept is bounded and goes back to the
 * kernel when not reused in time.
 */
#include "helpers.h"

#include "codec/hostmem.h"

#include <shmrig/shmrig.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#define MiB ((size_t)1 << 20)

static int64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000ll + ts.tv_nsec;
}

/* Is [p, p + len) mapped in this process? (mincore: ENOMEM if not) */
static bool mapped(void *p, size_t len)
{
	unsigned char vec[16];

	return mincore(p, len < 16 * 4096 ? len : 16 * 4096, vec) == 0;
}

/* Every test starts and ends with nothing kept. */
static int drop_kept(void **state)
{
	(void)state;
	return shmrig__hostmem_trim(INT64_MAX) == 0 ? 0 : -1;
}

static void test_reuse_and_zero(void **state)
{
	size_t cap, cap2;
	unsigned char *p, *q;

	(void)state;
	p = shmrig__hostmem_alloc(3 * MiB, false, &cap);
	assert_non_null(p);
	assert_int_equal(cap, 4 * MiB);
	assert_int_equal((uintptr_t)p % (2 * MiB), 0);
	memset(p, 0xaa, 3 * MiB);
	shmrig__hostmem_free(p, cap);
	assert_true(mapped(p, cap)); /* kept */
	/* the same size again: the same mapping, zeroed when asked */
	q = shmrig__hostmem_alloc(3 * MiB + 1, true, &cap2);
	assert_ptr_equal(q, p);
	assert_int_equal(cap2, cap);
	for (size_t i = 0; i < 3 * MiB + 1; i += 4096)
		assert_int_equal(q[i], 0);
	assert_int_equal(q[3 * MiB], 0);
	shmrig__hostmem_free(q, cap2);
	/* not reused in time: back to the kernel */
	assert_int_equal(shmrig__hostmem_trim(now_ns()), 1);
	assert_int_equal(shmrig__hostmem_trim(now_ns() + HOSTMEM_KEEP_NS), 0);
	assert_false(mapped(p, cap));
}

/* A kept mapping more than twice what is asked stays kept; a new one is made. */
static void test_no_reuse_when_twice_too_big(void **state)
{
	size_t cap, cap2;
	void *big, *small;

	(void)state;
	big = shmrig__hostmem_alloc(16 * MiB, false, &cap);
	assert_non_null(big);
	shmrig__hostmem_free(big, cap);
	small = shmrig__hostmem_alloc(4 * MiB, false, &cap2);
	assert_non_null(small);
	assert_ptr_not_equal(small, big);
	assert_true(mapped(big, cap));
	shmrig__hostmem_free(small, cap2);
	assert_int_equal(shmrig__hostmem_trim(now_ns()), 2);
}

/* At most HOSTMEM_SLOTS are kept: one more release evicts the oldest, and the
 * newest is kept (before, the newest was unmapped and its next use faulted). */
static void test_slots_bounded(void **state)
{
	unsigned char *p[HOSTMEM_SLOTS + 1], *q;
	size_t cap[HOSTMEM_SLOTS + 1], qcap;

	(void)state;
	for (int i = 0; i <= HOSTMEM_SLOTS; i++) {
		p[i] = shmrig__hostmem_alloc(2 * MiB, false, &cap[i]);
		assert_non_null(p[i]);
		memset(p[i], i + 1, 4096);
	}
	for (int i = 0; i <= HOSTMEM_SLOTS; i++)
		shmrig__hostmem_free(p[i], cap[i]);
	assert_false(mapped(p[0], cap[0]));
	for (int i = 1; i <= HOSTMEM_SLOTS; i++)
		assert_true(mapped(p[i], cap[i]));
	/* the newest is reused with its bytes (a fresh mapping would be zero) */
	q = shmrig__hostmem_alloc(2 * MiB, false, &qcap);
	assert_non_null(q);
	assert_int_equal(q[0], HOSTMEM_SLOTS + 1);
	shmrig__hostmem_free(q, qcap);
	assert_int_equal(shmrig__hostmem_trim(now_ns()), HOSTMEM_SLOTS);
}

/* Kept bytes are bounded too: a release that does not fit evicts the oldest
 * until it does; one bigger than the bound is not kept at all. */
static void test_bytes_bounded(void **state)
{
	const size_t third = HOSTMEM_KEEP_BYTES / 4 + 2 * MiB;
	unsigned char *a, *b, *c;
	size_t ca, cb, cc;

	(void)state;
	a = shmrig__hostmem_alloc(third, false, &ca);
	b = shmrig__hostmem_alloc(third, false, &cb);
	c = shmrig__hostmem_alloc(2 * third, false, &cc);
	assert_non_null(a);
	assert_non_null(b);
	assert_non_null(c);
	shmrig__hostmem_free(a, ca);
	shmrig__hostmem_free(b, cb);
	shmrig__hostmem_free(c, cc); /* a + b + c is over the bound: a goes */
	assert_false(mapped(a, ca));
	assert_true(mapped(b, cb));
	assert_true(mapped(c, cc));
	assert_int_equal(shmrig__hostmem_trim(now_ns()), 2);
	a = shmrig__hostmem_alloc(HOSTMEM_KEEP_BYTES + 1, false, &ca);
	assert_non_null(a);
	shmrig__hostmem_free(a, ca);
	assert_false(mapped(a, ca));
	assert_int_equal(shmrig__hostmem_trim(now_ns()), 2);
}

/* End to end: a decoded 8 MiB bytes value's copy lands in a kept mapping,
 * and the next decode of that size reuses it; the bytes are right each time. */
static void test_bytes_decode_reuses(void **state)
{
	const size_t len = 8 * MiB;
	shmrig_pool *pool = th_open_pool(8 * MiB, 64 * MiB);
	shmrig_registry *reg = NULL;
	unsigned char *data = malloc(len);
	struct shmrig_value v = { .kind = SHMRIG_KIND_BYTES }, out;
	const void *first = NULL;

	(void)state;
	assert_non_null(pool);
	assert_non_null(data);
	assert_int_equal(shmrig_registry_create(&reg), 0);
	assert_int_equal(shmrig_registry_add_builtins(reg), 0);
	for (unsigned round = 0; round < 3; round++) {
		void *frame;
		size_t flen;

		th_fill(data, len, round);
		v.bytes.data = data;
		v.bytes.len = len;
		assert_int_equal(shmrig_registry_encode(reg, pool, &v, &frame, &flen), 0);
		assert_int_equal(shmrig_registry_decode(reg, pool, frame, flen, &out), 0);
		free(frame);
		assert_int_equal(out.bytes.len, len);
		assert_int_equal(th_first_mismatch(out.bytes.data, len, round), len);
		assert_int_equal((uintptr_t)out.bytes.data % (2 * MiB), 0);
		if (round)
			assert_ptr_equal(out.bytes.data, first);
		first = out.bytes.data;
		assert_int_equal(shmrig_value_release(&out), 0);
	}
	assert_int_equal(shmrig__hostmem_trim(now_ns() + HOSTMEM_KEEP_NS), 0);
	assert_false(mapped((void *)first, len));
	shmrig_registry_free(reg);
	free(data);
	assert_int_equal(shmrig_pool_close(pool), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_reuse_and_zero, drop_kept, drop_kept),
		cmocka_unit_test_setup_teardown(test_no_reuse_when_twice_too_big, drop_kept,
						drop_kept),
		cmocka_unit_test_setup_teardown(test_slots_bounded, drop_kept, drop_kept),
		cmocka_unit_test_setup_teardown(test_bytes_bounded, drop_kept, drop_kept),
		cmocka_unit_test_setup_teardown(test_bytes_decode_reuses, drop_kept, drop_kept),
	};

	return cmocka_run_group_tests(tests, th_sweep_leftovers, th_remove_leftovers);
}
