/* SPDX-License-Identifier: MIT */
/*
 * The kind example.series for the conformance kit: a seeded generator of test
 * values, their release, and a bit-exact equality (struct shmrig_plugin_kind
 * in shmrig/plugin.h). shmrig-validate knows nothing about a user kind: these
 * three functions are how it makes values of it and tells whether the codec
 * gave them back.
 *
 * The generator's contract: the same (seed, index, max_bytes) gives the same
 * value; indexes 0..EXAMPLE_SERIES_EDGE_CASES-1 are the edge cases, the ones
 * after them seeded values of log-uniform sizes up to max_bytes (the data:
 * count * 8 bytes). Edge cases are where codecs break: give every boundary of
 * your format one.
 */
#include "series.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* splitmix64: small, seedable, the same everywhere */
static uint64_t next_random(uint64_t *state)
{
	uint64_t z = (*state += 0x9e3779b97f4a7c15ull);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

/* A count from 1 to max, log-uniform: small series as common as large ones. */
static uint64_t log_uniform(uint64_t *state, uint64_t max)
{
	unsigned top = max ? 63 - (unsigned)__builtin_clzll(max) : 0;
	unsigned octave = (unsigned)(next_random(state) % (top + 1));
	uint64_t n = (1ull << octave) + next_random(state) % (1ull << octave);

	return n < max ? n : max;
}

/* A random walk from start: steps of up to `bits` bits either way (64: any value). */
static void random_walk(uint64_t *state, int64_t start, unsigned bits, int64_t *values,
			uint64_t count)
{
	uint64_t at = (uint64_t)start; /* unsigned: a walk may wrap, as deltas do */

	for (uint64_t i = 0; i < count; i++) {
		uint64_t r = next_random(state);
		uint64_t step = bits >= 64 ? r : (r & ((1ull << bits) - 1)) - (1ull << bits >> 1);

		at += step;
		values[i] = (int64_t)at;
	}
}

int example_series_generate(void *ctx, uint64_t seed, uint32_t index, uint64_t max_bytes,
			    uint32_t user_type_tag, struct shmrig_value *out)
{
	/* varint length boundaries of zig-zag deltas: 63/64, 8191/8192, ... and the widest */
	static const int64_t boundaries[] = {
		0,    63,      -64,        64,        -65,           8191,          -8192,
		8192, 1 << 20, -(1 << 20), INT32_MAX, INT64_MAX / 2, INT64_MIN / 2, 1,
		-1
	};
	static const int64_t extremes[] = { INT64_MIN, INT64_MAX, 0,         -1, INT64_MIN, 1,
					    INT64_MAX, INT64_MIN, INT64_MAX, -1, 0 };
	uint64_t state = seed ^ ((uint64_t)index << 32), max_count = max_bytes / 8, count;
	struct example_series *series;
	int64_t start = 0, *values = NULL;
	unsigned bits = 0;

	(void)ctx;
	switch (index) {
	case 0: /* empty */
		count = 0;
		break;
	case 1: /* empty, the most negative base */
		count = 0;
		start = INT64_MIN;
		break;
	case 2: /* one value, its delta from the base wraps around */
		count = 1;
		start = INT64_MAX;
		break;
	case 3: /* an odd length, small steps */
		count = 7;
		start = -3;
		bits = 4;
		break;
	case 4: /* extremes: every delta wraps; no saving, so the raw encoding */
		count = sizeof(extremes) / sizeof(extremes[0]);
		break;
	case 5: /* a constant run: deltas of 0 */
		count = 1001;
		start = 42;
		bits = 0;
		break;
	case 6: /* deltas on either side of each varint length */
		count = sizeof(boundaries) / sizeof(boundaries[0]);
		break;
	case 7: /* the largest, deltas of up to 12 bits */
		count = max_count;
		bits = 12;
		break;
	case 8: /* the largest, random values: raw */
		count = max_count;
		bits = 64;
		break;
	default: /* seeded: a random base, a random size, steps of 0 to 64 bits */
		count = log_uniform(&state, max_count);
		start = (int64_t)next_random(&state);
		bits = (unsigned)(next_random(&state) % 65);
		break;
	}
	if (count > max_count)
		count = max_count; /* max_bytes bounds every value, edge cases too */
	if (count > SIZE_MAX / sizeof(*values))
		return -EOVERFLOW;
	series = calloc(1, sizeof(*series));
	if (!series)
		return -ENOMEM;
	if (count) {
		values = malloc((size_t)count * sizeof(*values));
		if (!values) {
			free(series);
			return -ENOMEM;
		}
		if (index == 4 || index == 6) {
			const int64_t *table = index == 4 ? extremes : boundaries;
			uint64_t at = 0;

			/* values whose deltas are the table's entries (index 6), or the table */
			for (uint64_t i = 0; i < count; i++) {
				at += (uint64_t)table[i];
				values[i] = index == 4 ? table[i] : (int64_t)at;
			}
		} else {
			random_walk(&state, start, bits, values, count);
		}
	}
	series->start = start;
	series->count = count;
	series->values = values;
	series->alloc = values;
	memset(out, 0, sizeof(*out));
	out->kind = SHMRIG_KIND_USER;
	out->user_type = user_type_tag;
	out->user = series;
	return 0;
}

void example_series_release(void *ctx, struct shmrig_value *value)
{
	struct example_series *series = value->user;

	(void)ctx;
	if (series)
		free(series->alloc);
	free(series);
	memset(value, 0, sizeof(*value));
}

/* Bit-exact: the base, the count and every value. The kit checks kind and user type first. */
bool example_series_equal(void *ctx, const struct shmrig_value *a, const struct shmrig_value *b)
{
	const struct example_series *x = a->user, *y = b->user;

	(void)ctx;
	if (!x || !y || x->start != y->start || x->count != y->count)
		return false;
	return x->count == 0 || memcmp(x->values, y->values, x->count * sizeof(*x->values)) == 0;
}
