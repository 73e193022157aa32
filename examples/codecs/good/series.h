/* SPDX-License-Identifier: MIT */
#ifndef EXAMPLE_SERIES_H
#define EXAMPLE_SERIES_H

/*
 * example.series: the user kind the delta codec takes (delta.c), and what an
 * application builds to send one. A series is a base value and `count` int64
 * values after it: a counter, timestamps, a slowly moving sensor reading.
 * Neighbours are close, so their differences are small numbers, which is what
 * the delta codec exploits.
 *
 * A value of this kind is a struct shmrig_value with kind SHMRIG_KIND_USER,
 * user_type the tag shmrig_registry_user_type(reg, EXAMPLE_SERIES_TYPE)
 * returned, and user pointing at a struct example_series.
 */

#include <shmrig/plugin.h>

#include <stdbool.h>
#include <stdint.h>

#define EXAMPLE_SERIES_TYPE "example.series"

struct example_series {
	int64_t start;         /* the base: the first delta is taken from it */
	uint64_t count;        /* values */
	const int64_t *values; /* count values; NULL when count is 0 */
	void *alloc;           /* what the generator allocated; NULL in a decoded value */
};

/* The kind's functions for the conformance kit (struct shmrig_plugin_kind): series.c. */
int example_series_generate(void *ctx, uint64_t seed, uint32_t index, uint64_t max_bytes,
			    uint32_t user_type_tag, struct shmrig_value *out);
void example_series_release(void *ctx, struct shmrig_value *value);
bool example_series_equal(void *ctx, const struct shmrig_value *a, const struct shmrig_value *b);

/* How many of the generator's indexes are edge cases. */
#define EXAMPLE_SERIES_EDGE_CASES 9

#endif
