/* SPDX-License-Identifier: MIT */
/* The workload's random draws: see draw.h. */
#include "draw.h"

#include <math.h>

/* The standard normal's 99th percentile. */
#define Z99 2.3263478740408408

static uint64_t splitmix64(uint64_t *x)
{
	uint64_t z = (*x += 0x9e3779b97f4a7c15ull);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static uint64_t rotl(uint64_t x, int k)
{
	return (x << k) | (x >> (64 - k));
}

void plan_rng_seed(struct plan_rng *r, uint64_t seed)
{
	for (int i = 0; i < 4; i++)
		r->s[i] = splitmix64(&seed);
}

uint64_t plan_rng_next(struct plan_rng *r)
{
	uint64_t *s = r->s, result = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;

	s[2] ^= s[0];
	s[3] ^= s[1];
	s[1] ^= s[2];
	s[0] ^= s[3];
	s[2] ^= t;
	s[3] = rotl(s[3], 45);
	return result;
}

double plan_rng_uniform(struct plan_rng *r)
{
	/* 53 random bits, shifted by half a step: never 0, never 1 */
	return ((double)(plan_rng_next(r) >> 11) + 0.5) * 0x1.0p-53;
}

double plan_draw_gap_s(const struct plan_flow *f, double rate, struct plan_rng *r)
{
	if (!(rate > 0))
		return INFINITY;
	if (f->arrival == PLAN_ARRIVAL_CONSTANT)
		return 1.0 / rate;
	return -log(plan_rng_uniform(r)) / rate;
}

uint64_t plan_draw_size(const struct plan_flow *f, struct plan_rng *r)
{
	const struct plan_size_item *it = &f->sizes[f->nsizes - 1];
	double total = 0, pick;
	uint64_t v;

	for (unsigned i = 0; i < f->nsizes; i++)
		total += f->sizes[i].weight;
	pick = plan_rng_uniform(r) * total;
	for (unsigned i = 0; i < f->nsizes; i++) {
		if (pick < f->sizes[i].weight) {
			it = &f->sizes[i];
			break;
		}
		pick -= f->sizes[i].weight;
	}
	if (it->min == it->max)
		return it->min;
	/* Up, not to the nearest: a range from 64 is then above 64 (class 1) as
	 * the model's continuous split says, never exactly 64 (class 0). */
	v = (uint64_t)ceil(
		exp(log((double)it->min) +
		    plan_rng_uniform(r) * (log((double)it->max) - log((double)it->min))));
	return v < it->min ? it->min : v > it->max ? it->max : v;
}

/*
 * A lognormal of mean m has p99/m = exp(Z99 s - s^2 / 2), which grows with
 * sigma s up to s = Z99 (a ratio of exp(Z99^2 / 2), about 15) and falls after:
 * the smaller root is the one. A p99 more than 15 times the mean has no
 * lognormal: the widest one, s = Z99, is taken (its p99 is 15 times the mean).
 */
double plan_draw_hold_s(const struct plan_flow *f, struct plan_rng *r)
{
	double m = f->hold_mean_ms / 1e3, ratio, s, mu, u, z;

	if (!(m > 0))
		return 0;
	if (!(f->hold_p99_ms > f->hold_mean_ms))
		return m;
	ratio = log(f->hold_p99_ms / f->hold_mean_ms);
	s = ratio >= Z99 * Z99 / 2 ? Z99 : Z99 - sqrt(Z99 * Z99 - 2 * ratio);
	mu = log(m) - s * s / 2;
	/* Box-Muller: one normal from two uniforms */
	u = plan_rng_uniform(r);
	z = sqrt(-2 * log(u)) * cos(2 * M_PI * plan_rng_uniform(r));
	return exp(mu + s * z);
}
