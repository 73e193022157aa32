/* SPDX-License-Identifier: MIT */
/*
 * Deterministic randomness: splitmix64. A value, a mutation and a size are
 * functions of (--seed, a stream number), so a failure names what reproduces it.
 */
#include "validate.h"

#include <string.h>

uint64_t val_mix(uint64_t x)
{
	x += 0x9e3779b97f4a7c15ull;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
	return x ^ (x >> 31);
}

void val_rng_init(struct val_rng *rng, uint64_t seed, uint64_t stream)
{
	rng->state = val_mix(seed ^ val_mix(stream));
}

uint64_t val_rand(struct val_rng *rng)
{
	rng->state += 0x9e3779b97f4a7c15ull;
	return val_mix(rng->state);
}

uint64_t val_below(struct val_rng *rng, uint64_t n)
{
	return n ? val_rand(rng) % n : 0;
}

uint64_t val_log_size(struct val_rng *rng, uint64_t max)
{
	unsigned bits = 0;
	uint64_t hi;

	if (max <= 64 || val_below(rng, 4) == 0)
		return val_below(rng, (max < 64 ? max : 64) + 1);
	while (bits < 63 && (1ull << (bits + 1)) <= max)
		bits++;
	/* a power of two from 64 up to max's, then uniform within it */
	bits = 6 + (unsigned)val_below(rng, bits - 5);
	hi = bits >= 63 ? max : (1ull << (bits + 1)) - 1;
	if (hi > max)
		hi = max;
	return (1ull << bits) + val_below(rng, hi - (1ull << bits) + 1);
}

void val_fill(struct val_rng *rng, void *buf, size_t len)
{
	unsigned char *p = buf;

	while (len >= 8) {
		uint64_t word = val_rand(rng);

		memcpy(p, &word, 8);
		p += 8;
		len -= 8;
	}
	if (len) {
		uint64_t word = val_rand(rng);

		memcpy(p, &word, len);
	}
}
