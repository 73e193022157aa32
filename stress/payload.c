/* SPDX-License-Identifier: MIT */
/*
 * Payloads: the size distribution and random values of every built-in kind.
 *
 * A value of `size` bytes: bytes (the fallback codec: one temporary buffer),
 * an ndarray (1-d or 2-d, C or F order), a table (1-4 columns) or a dataset
 * (1-2 groups of 1-2 variables): the last three are persistent buffers, viewed
 * by the decoded value. Contents come from the seeded generator, so a run's
 * values repeat with its seed.
 */
#include "stress.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* splitmix64: small, fast, and good enough to fill payloads and draw sizes. */
uint64_t rng_next(uint64_t *state)
{
	uint64_t z = (*state += 0x9e3779b97f4a7c15ull);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

double rng_unit(uint64_t *state)
{
	return (double)(rng_next(state) >> 11) * 0x1.0p-53;
}

size_t draw_size(const struct stress_opts *o, uint64_t *rng)
{
	double total = 0, pick;
	const struct plan_size_item *c = &o->sizes[o->nsizes - 1];

	for (unsigned i = 0; i < o->nsizes; i++)
		total += o->sizes[i].weight;
	pick = rng_unit(rng) * total;
	for (unsigned i = 0; i < o->nsizes; i++) {
		if (pick < o->sizes[i].weight) {
			c = &o->sizes[i];
			break;
		}
		pick -= o->sizes[i].weight;
	}
	/* log-uniform in [min, max]: as many 100-byte values as 100 KiB ones */
	return (size_t)exp(log((double)c->min) +
			   rng_unit(rng) * (log((double)c->max) - log((double)c->min)));
}

static void fill(unsigned char *p, size_t len, uint64_t *rng)
{
	size_t i = 0;

	for (; i + 8 <= len; i += 8) {
		uint64_t r = rng_next(rng);

		memcpy(p + i, &r, 8);
	}
	if (i < len) {
		uint64_t r = rng_next(rng);

		memcpy(p + i, &r, len - i);
	}
}

static const char *const names[] = { "a", "b", "c", "d", "e", "f", "g", "h" };

static void set_array(struct shmrig_array *a, enum shmrig_dtype dtype, unsigned char *data,
		      uint64_t elems)
{
	memset(a, 0, sizeof(*a));
	a->dtype = dtype;
	a->ndim = 1;
	a->shape[0] = elems;
	a->order = 'C';
	a->data = data;
}

/* `n` 1-d named arrays of `each` elements of dtype over p->buf. */
static void named_arrays(struct payload *p, unsigned n, enum shmrig_dtype dtype, uint64_t each)
{
	size_t step = (size_t)each * shmrig_dtype_size(dtype);

	for (unsigned i = 0; i < n; i++) {
		p->arrays[i].name = names[i];
		set_array(&p->arrays[i].array, dtype, p->buf + i * step, each);
	}
}

int payload_make(struct payload *p, size_t size, uint64_t *rng)
{
	return payload_make_kind(p, (enum shmrig_kind)(rng_next(rng) % 4), size, rng);
}

int payload_make_kind(struct payload *p, enum shmrig_kind kind, size_t size, uint64_t *rng)
{
	static const enum shmrig_dtype dtypes[] = { SHMRIG_DTYPE_UINT8, SHMRIG_DTYPE_INT32,
						    SHMRIG_DTYPE_FLOAT64 };
	enum shmrig_dtype dtype = dtypes[rng_next(rng) % 3];
	size_t esize = shmrig_dtype_size(dtype);
	unsigned n = 1 + (unsigned)(rng_next(rng) % 4);
	uint64_t elems;

	if (size < 4 * 8)
		size = 4 * 8; /* room for one element per column or variable */
	if (size > p->cap) {
		unsigned char *grown = realloc(p->buf, size);

		if (!grown)
			return -ENOMEM;
		p->buf = grown;
		p->cap = size;
	}
	memset(&p->value, 0, sizeof(p->value));
	switch (kind) {
	case SHMRIG_KIND_BYTES:
		p->value.kind = SHMRIG_KIND_BYTES;
		p->value.bytes.data = p->buf;
		p->value.bytes.len = size;
		p->nbytes = size;
		break;
	case SHMRIG_KIND_NDARRAY:
		elems = size / esize;
		p->value.kind = SHMRIG_KIND_NDARRAY;
		set_array(&p->value.array, dtype, p->buf, elems);
		if (elems % 2 == 0 && rng_next(rng) % 2) {
			p->value.array.ndim = 2;
			p->value.array.shape[0] = 2;
			p->value.array.shape[1] = elems / 2;
			p->value.array.order = rng_next(rng) % 2 ? 'C' : 'F';
		}
		p->nbytes = elems * esize;
		break;
	case SHMRIG_KIND_TABLE:
		elems = size / esize / n;
		p->value.kind = SHMRIG_KIND_TABLE;
		p->value.table.nrows = elems;
		p->value.table.ncolumns = n;
		p->value.table.columns = p->arrays;
		named_arrays(p, n, dtype, elems);
		p->nbytes = elems * esize * n;
		break;
	default: /* dataset: n variables in one or two groups */
		elems = size / esize / n;
		named_arrays(p, n, dtype, elems);
		p->value.kind = SHMRIG_KIND_DATASET;
		p->groups[0] = (struct shmrig_group){ .name = "g0",
						      .nvariables = n,
						      .variables = p->arrays };
		p->value.dataset.ngroups = 1;
		p->value.dataset.groups = p->groups;
		if (n > 1) {
			p->groups[0].nvariables = n / 2;
			p->groups[1] = (struct shmrig_group){ .name = "g1",
							      .nvariables = n - n / 2,
							      .variables = p->arrays + n / 2 };
			p->value.dataset.ngroups = 2;
		}
		p->nbytes = elems * esize * n;
		break;
	}
	fill(p->buf, p->nbytes, rng);
	return 0;
}

void payload_free(struct payload *p)
{
	free(p->buf);
	memset(p, 0, sizeof(*p));
}
