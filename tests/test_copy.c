/* SPDX-License-Identifier: MIT */
/*
 * shmrig__copy_shared: an encoder's copy into shared memory, streamed (non-
 * temporal stores) from the L2 cache's size on. Every size and alignment
 * copies exactly its bytes: the head up to dst's first 16-byte boundary, the
 * 64-byte body, the tail; nothing before or after dst is written.
 */
#include "helpers.h"

#include "os/prim.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define MiB ((size_t)1 << 20)
#define GUARD 64

/* Copy n bytes from src + soff to dst + doff (both inside buffers with room
 * and guards) and check the copy and the guards. */
static void copy_one(size_t n, size_t soff, size_t doff)
{
	unsigned char *src = malloc(n + soff + 16);
	unsigned char *dst = malloc(n + doff + 16 + 2 * GUARD);
	unsigned char *to;

	assert_non_null(src);
	assert_non_null(dst);
	for (size_t i = 0; i < n + soff + 16; i++)
		src[i] = (unsigned char)(i * 131 + n);
	memset(dst, 0xee, n + doff + 16 + 2 * GUARD);
	to = dst + GUARD + doff;
	shmrig__copy_shared(to, src + soff, n);
	assert_memory_equal(to, src + soff, n);
	for (size_t i = 0; i < GUARD + doff; i++)
		assert_int_equal(dst[i], 0xee);
	for (size_t i = GUARD + doff + n; i < n + doff + 16 + 2 * GUARD; i++)
		assert_int_equal(dst[i], 0xee);
	free(src);
	free(dst);
}

/* Small sizes (plain memcpy) and sizes past any L2 cache up to 8 MiB
 * (streamed), each at several misalignments of source and destination. */
static void test_sizes_and_alignments(void **state)
{
	static const size_t sizes[] = { 0,       1,        15,           16,          63,
					64,      65,       4096,         MiB - 1,     MiB,
					MiB + 1, MiB + 63, 3 * MiB + 17, 8 * MiB + 33 };
	static const size_t offsets[] = { 0, 1, 8, 15, 16, 63 };

	(void)state;
	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++)
		for (size_t s = 0; s < 3; s++)
			for (size_t d = 0; d < sizeof(offsets) / sizeof(offsets[0]); d++)
				copy_one(sizes[i], offsets[s * 2], offsets[d]);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_sizes_and_alignments),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
