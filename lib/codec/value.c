/* SPDX-License-Identifier: MIT */
#include "base/internal.h"
#include "codec/hostmem.h"
#include "codec/storage.h"

#include <errno.h>
#include <stdalign.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* Frozen layouts (shmrig/common.h, "ABI: how structs grow"): values and their
 * parts are data, changed only with SHMRIG_VERSION_MAJOR. */
#if UINTPTR_MAX == UINT64_MAX
_Static_assert(sizeof(struct shmrig_array) == 152, "shmrig_array is frozen");
_Static_assert(offsetof(struct shmrig_array, ndim) == 4, "shmrig_array is frozen");
_Static_assert(offsetof(struct shmrig_array, shape) == 8, "shmrig_array is frozen");
_Static_assert(offsetof(struct shmrig_array, order) == 136, "shmrig_array is frozen");
_Static_assert(offsetof(struct shmrig_array, data) == 144, "shmrig_array is frozen");
_Static_assert(sizeof(struct shmrig_named_array) == 160, "shmrig_named_array is frozen");
_Static_assert(offsetof(struct shmrig_named_array, array) == 8, "shmrig_named_array is frozen");
_Static_assert(sizeof(struct shmrig_table) == 24, "shmrig_table is frozen");
_Static_assert(offsetof(struct shmrig_table, ncolumns) == 8, "shmrig_table is frozen");
_Static_assert(offsetof(struct shmrig_table, columns) == 16, "shmrig_table is frozen");
_Static_assert(sizeof(struct shmrig_group) == 24, "shmrig_group is frozen");
_Static_assert(offsetof(struct shmrig_group, nvariables) == 8, "shmrig_group is frozen");
_Static_assert(offsetof(struct shmrig_group, variables) == 16, "shmrig_group is frozen");
_Static_assert(sizeof(struct shmrig_dataset) == 16, "shmrig_dataset is frozen");
_Static_assert(offsetof(struct shmrig_dataset, groups) == 8, "shmrig_dataset is frozen");
_Static_assert(sizeof(struct shmrig_value) == 168, "shmrig_value is frozen");
_Static_assert(offsetof(struct shmrig_value, user_type) == 4, "shmrig_value is frozen");
_Static_assert(offsetof(struct shmrig_value, bytes) == 8, "shmrig_value is frozen");
_Static_assert(offsetof(struct shmrig_value, storage) == 160, "shmrig_value is frozen");
#endif

#define DTYPE(name, size) { name, sizeof(name) - 1, size }
static const struct {
	const char *name;
	size_t len; /* strlen(name): decode looks names up by length first */
	size_t size;
} dtypes[SHMRIG_DTYPE_COUNT] = {
	[SHMRIG_DTYPE_INT8] = DTYPE("int8", 1),       [SHMRIG_DTYPE_INT16] = DTYPE("int16", 2),
	[SHMRIG_DTYPE_INT32] = DTYPE("int32", 4),     [SHMRIG_DTYPE_INT64] = DTYPE("int64", 8),
	[SHMRIG_DTYPE_UINT8] = DTYPE("uint8", 1),     [SHMRIG_DTYPE_UINT16] = DTYPE("uint16", 2),
	[SHMRIG_DTYPE_UINT32] = DTYPE("uint32", 4),   [SHMRIG_DTYPE_UINT64] = DTYPE("uint64", 8),
	[SHMRIG_DTYPE_FLOAT32] = DTYPE("float32", 4), [SHMRIG_DTYPE_FLOAT64] = DTYPE("float64", 8),
	[SHMRIG_DTYPE_BOOL] = DTYPE("bool", 1),
};
#undef DTYPE

size_t shmrig_dtype_size(enum shmrig_dtype dtype)
{
	return dtype > SHMRIG_DTYPE_INVALID && dtype < SHMRIG_DTYPE_COUNT ? dtypes[dtype].size : 0;
}

const char *shmrig_dtype_name(enum shmrig_dtype dtype)
{
	return dtype > SHMRIG_DTYPE_INVALID && dtype < SHMRIG_DTYPE_COUNT ? dtypes[dtype].name :
									    NULL;
}

static inline uint32_t load4(const char *p)
{
	uint32_t v;

	memcpy(&v, p, sizeof(v));
	return v;
}

enum shmrig_dtype shmrig_dtype_from_name(const char *name, size_t len)
{
	enum shmrig_dtype d;

	/* Every name is 4 to 7 characters; the last and the length pick the one
	 * candidate (a decode looks one up per array: no walk of the table), and
	 * two 4-byte words, overlapping, compare the whole of it. */
	if (len < 4 || len > 7)
		return SHMRIG_DTYPE_INVALID;
	switch (name[len - 1]) {
	case '8':
		d = len == 4 ? SHMRIG_DTYPE_INT8 : SHMRIG_DTYPE_UINT8;
		break;
	case '6':
		d = len == 5 ? SHMRIG_DTYPE_INT16 : SHMRIG_DTYPE_UINT16;
		break;
	case '2':
		d = len == 5 ? SHMRIG_DTYPE_INT32 :
		    len == 6 ? SHMRIG_DTYPE_UINT32 :
			       SHMRIG_DTYPE_FLOAT32;
		break;
	case '4':
		d = len == 5 ? SHMRIG_DTYPE_INT64 :
		    len == 6 ? SHMRIG_DTYPE_UINT64 :
			       SHMRIG_DTYPE_FLOAT64;
		break;
	case 'l':
		d = SHMRIG_DTYPE_BOOL;
		break;
	default:
		return SHMRIG_DTYPE_INVALID;
	}
	if (dtypes[d].len != len || load4(name) != load4(dtypes[d].name) ||
	    load4(name + len - 4) != load4(dtypes[d].name + len - 4))
		return SHMRIG_DTYPE_INVALID;
	return d;
}

int shmrig_array_nbytes(const struct shmrig_array *array, uint64_t *nbytes)
{
	uint64_t n = shmrig_dtype_size(array->dtype);
	bool empty = false;

	if (!n)
		return shmrig__fail(-EINVAL, "array: invalid dtype %d", (int)array->dtype);
	if (array->ndim > SHMRIG_MAX_DIMS)
		return shmrig__fail(-EINVAL, "array: %u dimensions (at most %d)", array->ndim,
				    SHMRIG_MAX_DIMS);
	if (array->order != 'C' && array->order != 'F')
		return shmrig__fail(-EINVAL, "array: order must be 'C' or 'F'");
	/* Strides of a shape with a 0 in it are still computed by consumers: the
	 * other dimensions must not overflow either. */
	for (uint32_t d = 0; d < array->ndim; d++) {
		if (array->shape[d] == 0) {
			empty = true;
			continue;
		}
		if (__builtin_mul_overflow(n, array->shape[d], &n))
			return shmrig__fail(-EOVERFLOW, "array: the size of shape[%u] overflows",
					    d);
	}
	if (empty)
		n = 0;
	*nbytes = n;
	return 0;
}

const char *shmrig_kind_name(enum shmrig_kind kind)
{
	static const char *const names[SHMRIG_KIND_COUNT] = { "bytes", "ndarray", "table",
							      "dataset", "user" };

	return kind < SHMRIG_KIND_COUNT ? names[kind] : NULL;
}

/* ---- what a decoded value owns ---- */

struct alloc_hdr {
	struct alloc_hdr *next;
	void *big;      /* a hostmem mapping (the payload is there), or NULL */
	size_t big_cap; /* its length */
	max_align_t payload[];
};

/* Small decoded values (a few leases, a few hundred bytes of description)
 * live in the storage itself: one malloc per decode. */
#define INLINE_LEASES 2
#define INLINE_BYTES 256

struct shmrig_value_storage {
	shmrig_pool *pool;
	struct shmrig_ref *leases;
	uint32_t nleases;
	uint32_t cap;
	struct alloc_hdr *allocs;
	size_t bump_used;
	struct shmrig_ref inline_leases[INLINE_LEASES];
	alignas(max_align_t) unsigned char bump[INLINE_BYTES];
};

struct shmrig_value_storage *shmrig__storage_new(shmrig_pool *pool)
{
	struct shmrig_value_storage *st = malloc(sizeof(*st));

	if (!st)
		return NULL;
	st->pool = pool;
	st->leases = st->inline_leases;
	st->nleases = 0;
	st->cap = INLINE_LEASES;
	st->allocs = NULL;
	st->bump_used = 0;
	return st;
}

int shmrig__storage_lease(struct shmrig_value_storage *st, const struct shmrig_ref *ref)
{
	if (st->nleases == st->cap) {
		uint32_t cap = st->cap * 2;
		struct shmrig_ref *grown = malloc(cap * sizeof(*grown));

		if (!grown)
			return -ENOMEM;
		memcpy(grown, st->leases, st->nleases * sizeof(*grown));
		if (st->leases != st->inline_leases)
			free(st->leases);
		st->leases = grown;
		st->cap = cap;
	}
	st->leases[st->nleases++] = *ref;
	return 0;
}

static void *storage_alloc(struct shmrig_value_storage *st, size_t size, bool zero)
{
	size_t rounded =
		(size + sizeof(max_align_t) - 1) / sizeof(max_align_t) * sizeof(max_align_t);
	struct alloc_hdr *h;

	if (size <= INLINE_BYTES && rounded <= INLINE_BYTES - st->bump_used) {
		void *p = st->bump + st->bump_used;

		st->bump_used += rounded;
		memset(p, 0, size);
		return p;
	}
	if (size >= HOSTMEM_BIG) {
		h = malloc(sizeof(*h));
		if (!h)
			return NULL;
		h->big = shmrig__hostmem_alloc(size, zero, &h->big_cap);
		if (!h->big) {
			free(h);
			return NULL;
		}
	} else {
		if (size > SIZE_MAX - sizeof(*h))
			return NULL;
		h = zero ? calloc(1, sizeof(*h) + size) : malloc(sizeof(*h) + size);
		if (!h)
			return NULL;
		h->big = NULL;
	}
	h->next = st->allocs;
	st->allocs = h;
	return h->big ? h->big : (void *)h->payload;
}

void *shmrig__storage_alloc(struct shmrig_value_storage *st, size_t size)
{
	return storage_alloc(st, size, true);
}

void *shmrig__storage_alloc_raw(struct shmrig_value_storage *st, size_t size)
{
	return storage_alloc(st, size, false);
}

int shmrig_value_release(struct shmrig_value *value)
{
	struct shmrig_value_storage *st;
	int first = 0;

	if (!value)
		return 0;
	st = value->storage;
	if (st) {
		for (uint32_t i = 0; i < st->nleases; i++) {
			int ret = shmrig_pool_free(st->pool, &st->leases[i]);

			if (ret && !first)
				first = ret;
		}
		while (st->allocs) {
			struct alloc_hdr *next = st->allocs->next;

			shmrig__hostmem_free(st->allocs->big, st->allocs->big_cap);
			free(st->allocs);
			st->allocs = next;
		}
		if (st->leases != st->inline_leases)
			free(st->leases);
		free(st);
	}
	memset(value, 0, sizeof(*value));
	return first;
}

uint32_t shmrig_value_leases(const struct shmrig_value *value)
{
	return value && value->storage ? value->storage->nleases : 0;
}
