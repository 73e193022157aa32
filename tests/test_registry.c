/* SPDX-License-Identifier: MIT */
/*
 * Codec registry in one process: every built-in codec round-trips every kind of
 * value bit-exactly (fixed edge cases and seeded random values), block
 * lifetimes proved by the pool's live count, first-match dispatch and the
 * registration rules, a user codec end to end, encoders and decoders that fail
 * without leaking, guarded encodes (SHMRIG_REGISTRY_GUARD: writes past
 * content_size caught, a pack's room kept), and one registry shared by threads.
 */
#include "helpers.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <shmrig/frame.h>
#include <shmrig/registry.h>

#include <xxhash.h>

/* ---- pool, registry and accounting ---- */

static shmrig_pool *open_pool(void)
{
	return th_open_pool(8 * MiB, 512 * MiB);
}

/* Every test ends here: nothing live, metadata intact, no leak, no segment left. */
static void close_pool(shmrig_pool *pool)
{
	assert_int_equal(th_live_blocks(pool), 0);
	assert_int_equal(shmrig_pool_audit(pool), 0);
	assert_int_equal(shmrig_pool_close(pool), 0);
	assert_int_equal(th_count_segments(th_prefix()), 0);
}

static shmrig_registry *builtin_registry(void)
{
	shmrig_registry *reg = NULL;

	assert_int_equal(shmrig_registry_create(&reg), 0);
	assert_int_equal(shmrig_registry_add_builtins(reg), 0);
	return reg;
}

/* Codec id a frame carries. */
static int frame_codec(const void *frame, size_t len)
{
	struct shmrig_frame f;

	assert_int_equal(shmrig_frame_parse(frame, len, &f), 0);
	return f.codec_id;
}

/* ---- deterministic random values ---- */

static uint64_t splitmix64(uint64_t *state)
{
	uint64_t z = (*state += 0x9e3779b97f4a7c15ull);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static uint64_t rand_below(uint64_t *state, uint64_t n)
{
	return splitmix64(state) % n;
}

/* Random bits, NaN payloads included (compared bit-exactly); bools are 0 or 1. */
static void rand_fill(uint64_t *state, enum shmrig_dtype dtype, void *data, size_t nbytes)
{
	unsigned char *p = data;

	for (size_t i = 0; i < nbytes; i += 8) {
		uint64_t bits = splitmix64(state);

		memcpy(p + i, &bits, nbytes - i < 8 ? nbytes - i : 8);
	}
	if (dtype == SHMRIG_DTYPE_BOOL)
		for (size_t i = 0; i < nbytes; i++)
			p[i] &= 1;
}

enum {
	SCRATCH_MAX = 64
};

/* Host memory of the values a test builds, freed all at once. */
struct scratch {
	void *ptrs[SCRATCH_MAX];
	unsigned n;
};

static void *scratch_alloc(struct scratch *sc, size_t size)
{
	void *p = calloc(1, size ? size : 1);

	if (!p || sc->n == SCRATCH_MAX) {
		/* the generators stay far below SCRATCH_MAX: only malloc can fail */
		fprintf(stderr, "scratch_alloc: out of memory or slots\n");
		exit(1);
	}
	sc->ptrs[sc->n++] = p;
	return p;
}

static void scratch_free(struct scratch *sc)
{
	while (sc->n)
		free(sc->ptrs[--sc->n]);
}

static const char *rand_name(uint64_t *state, struct scratch *sc)
{
	size_t len = (size_t)rand_below(state, 13);
	char *name = scratch_alloc(sc, len + 1);

	for (size_t i = 0; i < len; i++)
		name[i] = (char)('a' + rand_below(state, 26));
	return name;
}

/* An array of ndim <= max_ndim, dims <= max_dim (0 included: empty arrays). */
static void rand_array(uint64_t *state, struct scratch *sc, struct shmrig_array *a,
		       uint32_t max_ndim, uint64_t max_dim, bool any_order)
{
	uint64_t nbytes;

	memset(a, 0, sizeof(*a));
	a->dtype = (enum shmrig_dtype)(1 + rand_below(state, SHMRIG_DTYPE_COUNT - 1));
	a->ndim = (uint32_t)rand_below(state, max_ndim + 1);
	for (uint32_t d = 0; d < a->ndim; d++)
		a->shape[d] = rand_below(state, max_dim + 1);
	a->order = any_order && rand_below(state, 2) ? 'F' : 'C';
	if (shmrig_array_nbytes(a, &nbytes))
		return;
	/* an empty array may come with or without a data pointer */
	if (nbytes || rand_below(state, 2)) {
		a->data = scratch_alloc(sc, (size_t)nbytes);
		rand_fill(state, a->dtype, a->data, (size_t)nbytes);
	}
}

static void rand_value(uint64_t *state, struct scratch *sc, enum shmrig_kind kind,
		       struct shmrig_value *v)
{
	memset(v, 0, sizeof(*v));
	v->kind = kind;
	switch (kind) {
	case SHMRIG_KIND_BYTES: {
		void *data;

		v->bytes.len = rand_below(state, 4097);
		data = v->bytes.len || rand_below(state, 2) ? scratch_alloc(sc, v->bytes.len) :
							      NULL;
		if (data)
			rand_fill(state, SHMRIG_DTYPE_UINT8, data, v->bytes.len);
		v->bytes.data = data;
		break;
	}
	case SHMRIG_KIND_NDARRAY:
		rand_array(state, sc, &v->array, 4, 5, true);
		break;
	case SHMRIG_KIND_TABLE: {
		struct shmrig_table *t = &v->table;

		t->nrows = rand_below(state, 41);
		t->ncolumns = (uint32_t)rand_below(state, 7);
		t->columns = t->ncolumns ? scratch_alloc(sc, t->ncolumns * sizeof(*t->columns)) :
					   NULL;
		for (uint32_t i = 0; i < t->ncolumns; i++) {
			struct shmrig_array *a = &t->columns[i].array;
			uint64_t nbytes;

			t->columns[i].name = rand_name(state, sc);
			a->dtype =
				(enum shmrig_dtype)(1 + rand_below(state, SHMRIG_DTYPE_COUNT - 1));
			a->ndim = 1;
			a->shape[0] = t->nrows;
			a->order = 'C'; /* columns are 1-d: decode says 'C' */
			assert_int_equal(shmrig_array_nbytes(a, &nbytes), 0);
			a->data = scratch_alloc(sc, (size_t)nbytes);
			rand_fill(state, a->dtype, a->data, (size_t)nbytes);
		}
		break;
	}
	case SHMRIG_KIND_DATASET: {
		struct shmrig_dataset *ds = &v->dataset;

		ds->ngroups = (uint32_t)rand_below(state, 4);
		ds->groups = ds->ngroups ? scratch_alloc(sc, ds->ngroups * sizeof(*ds->groups)) :
					   NULL;
		for (uint32_t g = 0; g < ds->ngroups; g++) {
			struct shmrig_group *group = &ds->groups[g];

			group->name = rand_name(state, sc);
			group->nvariables = (uint32_t)rand_below(state, 5);
			group->variables =
				group->nvariables ?
					scratch_alloc(sc, group->nvariables *
								  sizeof(*group->variables)) :
					NULL;
			for (uint32_t i = 0; i < group->nvariables; i++) {
				group->variables[i].name = rand_name(state, sc);
				rand_array(state, sc, &group->variables[i].array, 3, 4, true);
			}
		}
		break;
	}
	default:
		break;
	}
}

/* ---- comparison (no cmocka asserts: threads use it too) ---- */

static bool same_array(const struct shmrig_array *a, const struct shmrig_array *b)
{
	uint64_t na, nb;

	if (a->dtype != b->dtype || a->ndim != b->ndim || a->order != b->order)
		return false;
	for (uint32_t d = 0; d < a->ndim; d++)
		if (a->shape[d] != b->shape[d])
			return false;
	if (shmrig_array_nbytes(a, &na) || shmrig_array_nbytes(b, &nb) || na != nb)
		return false;
	return na == 0 || memcmp(a->data, b->data, (size_t)na) == 0;
}

static bool same_name(const char *a, const char *b)
{
	return a && b && strcmp(a, b) == 0;
}

static bool same_named(const struct shmrig_named_array *a, const struct shmrig_named_array *b,
		       uint32_t n)
{
	for (uint32_t i = 0; i < n; i++)
		if (!same_name(a[i].name, b[i].name) || !same_array(&a[i].array, &b[i].array))
			return false;
	return true;
}

static bool same_value(const struct shmrig_value *a, const struct shmrig_value *b)
{
	if (a->kind != b->kind)
		return false;
	switch (a->kind) {
	case SHMRIG_KIND_BYTES:
		return a->bytes.len == b->bytes.len &&
		       (a->bytes.len == 0 ||
			memcmp(a->bytes.data, b->bytes.data, (size_t)a->bytes.len) == 0);
	case SHMRIG_KIND_NDARRAY:
		return same_array(&a->array, &b->array);
	case SHMRIG_KIND_TABLE:
		return a->table.nrows == b->table.nrows && a->table.ncolumns == b->table.ncolumns &&
		       same_named(a->table.columns, b->table.columns, a->table.ncolumns);
	case SHMRIG_KIND_DATASET:
		if (a->dataset.ngroups != b->dataset.ngroups)
			return false;
		for (uint32_t g = 0; g < a->dataset.ngroups; g++) {
			const struct shmrig_group *ga = &a->dataset.groups[g];
			const struct shmrig_group *gb = &b->dataset.groups[g];

			if (!same_name(ga->name, gb->name) || ga->nvariables != gb->nvariables ||
			    !same_named(ga->variables, gb->variables, ga->nvariables))
				return false;
		}
		return true;
	default:
		return false;
	}
}

/* ---- round trips ---- */

/* Encode with the codec named `codec`, decode, compare, release: nothing left live. */
static void check_roundtrip(shmrig_registry *reg, shmrig_pool *pool, const struct shmrig_value *in,
			    const char *codec)
{
	uint64_t before = th_live_blocks(pool);
	struct shmrig_value out;
	void *frame;
	size_t len;

	assert_int_equal(shmrig_registry_encode(reg, pool, in, &frame, &len), 0);
	assert_int_equal(frame_codec(frame, len), shmrig_registry_lookup(reg, codec));
	assert_int_equal(shmrig_registry_decode(reg, pool, frame, len, &out), 0);
	free(frame);
	assert_non_null(out.storage);
	assert_true(same_value(in, &out));
	assert_int_equal(shmrig_value_release(&out), 0);
	assert_null(out.storage);
	assert_int_equal(th_live_blocks(pool), before);
}

static struct shmrig_value ndarray_value(enum shmrig_dtype dtype, char order, uint32_t ndim,
					 const uint64_t *shape, void *data)
{
	struct shmrig_value v = { .kind = SHMRIG_KIND_NDARRAY };

	v.array.dtype = dtype;
	v.array.order = order;
	v.array.ndim = ndim;
	if (ndim)
		memcpy(v.array.shape, shape, ndim * sizeof(*shape));
	v.array.data = data;
	return v;
}

/* Every dtype, both orders; a scalar, 1-d, 3-d and SHMRIG_MAX_DIMS dimensions. */
static void test_ndarray_every_dtype(void **state)
{
	static unsigned char data[24 * 8];
	static const uint64_t shape1[] = { 7 }, shape3[] = { 2, 3, 4 };
	uint64_t shape_max[SHMRIG_MAX_DIMS];
	shmrig_pool *pool = open_pool();
	shmrig_registry *reg = builtin_registry();

	(void)state;
	for (uint32_t d = 0; d < SHMRIG_MAX_DIMS; d++)
		shape_max[d] = d % 5 == 3 ? 2 : 1; /* 2 at 3, 8 and 13: 8 elements */
	for (int dtype = SHMRIG_DTYPE_INT8; dtype < SHMRIG_DTYPE_COUNT; dtype++) {
		for (int o = 0; o < 2; o++) {
			char order = o ? 'F' : 'C';
			struct shmrig_value v;

			th_fill(data, sizeof(data), (unsigned)dtype * 2 + (unsigned)o);
			if (dtype == SHMRIG_DTYPE_BOOL)
				for (size_t i = 0; i < sizeof(data); i++)
					data[i] &= 1;
			v = ndarray_value(dtype, order, 0, NULL, data);
			check_roundtrip(reg, pool, &v, "ndarray");
			v = ndarray_value(dtype, order, 1, shape1, data);
			check_roundtrip(reg, pool, &v, "ndarray");
			v = ndarray_value(dtype, order, 3, shape3, data);
			check_roundtrip(reg, pool, &v, "ndarray");
			v = ndarray_value(dtype, order, SHMRIG_MAX_DIMS, shape_max, data);
			check_roundtrip(reg, pool, &v, "ndarray");
		}
	}
	shmrig_registry_free(reg);
	close_pool(pool);
}

/*
 * Decode remembers the metadata it unpacked last and reuses it for a frame
 * whose metadata bytes are the same: frames alternating between two shapes of
 * the same metadata length, a third with one byte of its metadata broken
 * (refused, though it is as long as the one remembered), each decoded as sent.
 */
static void test_meta_remembered(void **state)
{
	static double data[6];
	static const uint64_t shapes[2][2] = { { 2, 3 }, { 3, 2 } };
	shmrig_pool *pool = open_pool();
	shmrig_registry *reg = builtin_registry();
	struct shmrig_value v, out;
	struct shmrig_frame f;
	unsigned char *meta;
	void *frame;
	size_t len;

	(void)state;
	for (int i = 0; i < 6; i++)
		data[i] = i * 1.5;
	for (int round = 0; round < 6; round++) {
		const uint64_t *shape = shapes[round % 2];

		v = ndarray_value(SHMRIG_DTYPE_FLOAT64, 'C', 2, shape, data);
		check_roundtrip(reg, pool, &v, "ndarray");
	}
	/* the remembered metadata does not point into the frame it came from: that
	 * frame scribbled over, a frame of the same metadata still decodes right */
	{
		void *first, *second;
		size_t first_len, second_len;

		v = ndarray_value(SHMRIG_DTYPE_FLOAT64, 'C', 2, shapes[0], data);
		assert_int_equal(shmrig_registry_encode(reg, pool, &v, &first, &first_len), 0);
		assert_int_equal(shmrig_registry_encode(reg, pool, &v, &second, &second_len), 0);
		assert_int_equal(shmrig_registry_decode(reg, pool, first, first_len, &out), 0);
		assert_int_equal(shmrig_value_release(&out), 0);
		memset(first, 0xff, first_len);
		assert_int_equal(shmrig_registry_decode(reg, pool, second, second_len, &out), 0);
		assert_true(same_value(&v, &out));
		assert_int_equal(shmrig_value_release(&out), 0);
		free(first);
		free(second);
	}
	/* the second shape's frame with its metadata broken where the shapes differ */
	v = ndarray_value(SHMRIG_DTYPE_FLOAT64, 'C', 2, shapes[1], data);
	assert_int_equal(shmrig_registry_encode(reg, pool, &v, &frame, &len), 0);
	assert_int_equal(shmrig_registry_decode(reg, pool, frame, len, &out), 0);
	assert_int_equal(out.array.shape[0], 3);
	assert_int_equal(shmrig_value_release(&out), 0);
	free(frame);
	assert_int_equal(shmrig_registry_encode(reg, pool, &v, &frame, &len), 0);
	assert_int_equal(shmrig_frame_parse(frame, len, &f), 0);
	meta = (unsigned char *)frame + ((const unsigned char *)f.meta - (unsigned char *)frame);
	for (uint32_t i = 0; i < f.meta_len; i++) {
		if (meta[i] == 3 && i + 1 < f.meta_len && meta[i + 1] == 2) {
			meta[i] = 0xc1; /* never used in MessagePack */
			break;
		}
	}
	assert_int_equal(shmrig_registry_decode(reg, pool, frame, len, &out), -EBADMSG);
	assert_null(out.storage);
	free(frame);
	assert_int_equal(th_live_blocks(pool), 0);
	check_roundtrip(reg, pool, &v, "ndarray");
	shmrig_registry_free(reg);
	close_pool(pool);
}

/* Empty arrays (with and without data), and a 3 MiB array in a block of its own. */
static void test_ndarray_empty_and_large(void **state)
{
	static const uint64_t empty1[] = { 0 }, empty3[] = { 3, 0, 2 };
	static const uint64_t large[] = { 384, 1024 }; /* float64: 3 MiB */
	uint64_t empty_max[SHMRIG_MAX_DIMS];
	shmrig_pool *pool = open_pool();
	shmrig_registry *reg = builtin_registry();
	struct shmrig_pool_stats st = SHMRIG_SIZED(struct shmrig_pool_stats);
	struct shmrig_value v, out;
	unsigned char one;
	void *frame, *data;
	size_t len;

	(void)state;
	for (uint32_t d = 0; d < SHMRIG_MAX_DIMS; d++)
		empty_max[d] = d == SHMRIG_MAX_DIMS - 1 ? 0 : 3;
	v = ndarray_value(SHMRIG_DTYPE_FLOAT32, 'C', 1, empty1, NULL);
	check_roundtrip(reg, pool, &v, "ndarray");
	v = ndarray_value(SHMRIG_DTYPE_INT64, 'F', 3, empty3, NULL);
	check_roundtrip(reg, pool, &v, "ndarray");
	v = ndarray_value(SHMRIG_DTYPE_UINT8, 'C', 3, empty3, &one);
	check_roundtrip(reg, pool, &v, "ndarray");
	v = ndarray_value(SHMRIG_DTYPE_BOOL, 'F', SHMRIG_MAX_DIMS, empty_max, NULL);
	check_roundtrip(reg, pool, &v, "ndarray");

	data = malloc(3 * MiB);
	assert_non_null(data);
	th_fill(data, 3 * MiB, 77);
	v = ndarray_value(SHMRIG_DTYPE_FLOAT64, 'F', 2, large, data);
	check_roundtrip(reg, pool, &v, "ndarray");
	/* decoded, it is a view of a large block with its payload on a page */
	assert_int_equal(shmrig_registry_encode(reg, pool, &v, &frame, &len), 0);
	assert_int_equal(shmrig_registry_decode(reg, pool, frame, len, &out), 0);
	free(frame);
	assert_int_equal(shmrig_pool_stats(pool, &st), 0);
	assert_int_equal(st.large_live_blocks, 1);
	assert_int_equal((uintptr_t)out.array.data % (uintptr_t)sysconf(_SC_PAGESIZE), 0);
	assert_true(out.array.data != data);
	assert_int_equal(th_first_mismatch(out.array.data, 3 * MiB, 77), 3 * MiB);
	assert_int_equal(shmrig_value_release(&out), 0);
	free(data);

	shmrig_registry_free(reg);
	close_pool(pool);
}

static void test_table(void **state)
{
	static int32_t ids[10];
	static double temps[10];
	static bool flags[10];
	static uint16_t counts[10];
	struct shmrig_named_array columns[] = {
		{ "id", { .dtype = SHMRIG_DTYPE_INT32, .ndim = 1, .shape = { 10 }, .order = 'C' } },
		{ "temp\xc3\xa9rature", /* a UTF-8 name */
		  { .dtype = SHMRIG_DTYPE_FLOAT64, .ndim = 1, .shape = { 10 }, .order = 'C' } },
		{ "flag",
		  { .dtype = SHMRIG_DTYPE_BOOL, .ndim = 1, .shape = { 10 }, .order = 'C' } },
		{ "", { .dtype = SHMRIG_DTYPE_UINT16, .ndim = 1, .shape = { 10 }, .order = 'C' } },
	};
	struct shmrig_named_array empty_columns[3];
	shmrig_pool *pool = open_pool();
	shmrig_registry *reg = builtin_registry();
	struct shmrig_value v = { .kind = SHMRIG_KIND_TABLE };

	(void)state;
	for (int i = 0; i < 10; i++) {
		ids[i] = -i * 1000;
		temps[i] = i ? 1.0 / i : NAN;
		flags[i] = i % 3 == 0;
		counts[i] = (uint16_t)(65535 - i);
	}
	columns[0].array.data = ids;
	columns[1].array.data = temps;
	columns[2].array.data = flags;
	columns[3].array.data = counts;
	v.table.nrows = 10;
	v.table.ncolumns = 4;
	v.table.columns = columns;
	check_roundtrip(reg, pool, &v, "table");

	/* 0 rows: the columns are there, empty */
	memcpy(empty_columns, columns, sizeof(empty_columns));
	for (int i = 0; i < 3; i++) {
		empty_columns[i].array.shape[0] = 0;
		empty_columns[i].array.data = i == 1 ? NULL : empty_columns[i].array.data;
	}
	v.table.nrows = 0;
	v.table.ncolumns = 3;
	v.table.columns = empty_columns;
	check_roundtrip(reg, pool, &v, "table");

	/* 0 columns, with and without rows: a frame without buffers */
	v.table.ncolumns = 0;
	v.table.columns = NULL;
	check_roundtrip(reg, pool, &v, "table");
	v.table.nrows = 7;
	check_roundtrip(reg, pool, &v, "table");

	shmrig_registry_free(reg);
	close_pool(pool);
}

static void test_dataset(void **state)
{
	static float grid[4][5];
	static int8_t scalar = -5;
	static uint64_t series[6];
	static double cube[2][3][2];
	struct shmrig_named_array first[] = {
		{ "grid",
		  { .dtype = SHMRIG_DTYPE_FLOAT32, .ndim = 2, .shape = { 4, 5 }, .order = 'C' } },
		{ "scalar", { .dtype = SHMRIG_DTYPE_INT8, .ndim = 0, .order = 'C' } },
	};
	struct shmrig_named_array second[] = {
		{ "series",
		  { .dtype = SHMRIG_DTYPE_UINT64, .ndim = 1, .shape = { 6 }, .order = 'C' } },
		{ "cube",
		  { .dtype = SHMRIG_DTYPE_FLOAT64, .ndim = 3, .shape = { 2, 3, 2 }, .order = 'F' } },
		{ "nothing",
		  { .dtype = SHMRIG_DTYPE_INT16, .ndim = 2, .shape = { 0, 9 }, .order = 'F' } },
	};
	struct shmrig_group groups[] = {
		{ .name = "surface", .nvariables = 2, .variables = first },
		{ .name = "depth", .nvariables = 3, .variables = second },
		{ .name = "no variables" },
	};
	shmrig_pool *pool = open_pool();
	shmrig_registry *reg = builtin_registry();
	struct shmrig_value v = { .kind = SHMRIG_KIND_DATASET };

	(void)state;
	th_fill((unsigned char *)grid, sizeof(grid), 1);
	th_fill((unsigned char *)series, sizeof(series), 2);
	th_fill((unsigned char *)cube, sizeof(cube), 3);
	first[0].array.data = grid;
	first[1].array.data = &scalar;
	second[0].array.data = series;
	second[1].array.data = cube;
	v.dataset.ngroups = 3;
	v.dataset.groups = groups;
	check_roundtrip(reg, pool, &v, "dataset");

	v.dataset.ngroups = 0;
	v.dataset.groups = NULL;
	check_roundtrip(reg, pool, &v, "dataset");

	shmrig_registry_free(reg);
	close_pool(pool);
}

static void test_bytes(void **state)
{
	static const size_t lengths[] = { 0, 1, 63, 64, 65, 4096, MiB };
	shmrig_pool *pool = open_pool();
	shmrig_registry *reg = builtin_registry();
	unsigned char *data = malloc(MiB);
	struct shmrig_value v = { .kind = SHMRIG_KIND_BYTES };

	(void)state;
	assert_non_null(data);
	for (size_t i = 0; i < sizeof(lengths) / sizeof(lengths[0]); i++) {
		th_fill(data, lengths[i], (unsigned)i);
		v.bytes.data = data;
		v.bytes.len = lengths[i];
		check_roundtrip(reg, pool, &v, "bytes");
	}
	v.bytes.data = NULL;
	v.bytes.len = 0;
	check_roundtrip(reg, pool, &v, "bytes");
	free(data);
	shmrig_registry_free(reg);
	close_pool(pool);
}

/* Values the built-in codecs refuse, before allocating anything (names: after, freed). */
static void test_bad_values(void **state)
{
	static const uint64_t shape[] = { 4 };
	shmrig_pool *pool = open_pool();
	shmrig_registry *reg = builtin_registry();
	struct shmrig_named_array column = {
		"c", { .dtype = SHMRIG_DTYPE_INT8, .ndim = 2, .shape = { 4, 1 }, .order = 'C' }
	};
	struct shmrig_group group = { .name = NULL, .nvariables = 1, .variables = &column };
	struct shmrig_value v;
	char data[4] = { 0 };
	void *frame;
	size_t len;

	(void)state;
	v = ndarray_value(SHMRIG_DTYPE_INT8, 'C', 1, shape, NULL); /* 4 bytes, no data */
	assert_int_equal(shmrig_registry_encode(reg, pool, &v, &frame, &len), -EINVAL);
	v = ndarray_value(SHMRIG_DTYPE_INVALID, 'C', 1, shape, data);
	assert_int_equal(shmrig_registry_encode(reg, pool, &v, &frame, &len), -EINVAL);
	v = ndarray_value(SHMRIG_DTYPE_INT8, 'X', 1, shape, data);
	assert_int_equal(shmrig_registry_encode(reg, pool, &v, &frame, &len), -EINVAL);
	v = ndarray_value(SHMRIG_DTYPE_INT8, 'C', 1, shape, data);
	v.array.ndim = SHMRIG_MAX_DIMS + 1;
	assert_int_equal(shmrig_registry_encode(reg, pool, &v, &frame, &len), -EINVAL);
	v.array.ndim = 2;
	v.array.shape[0] = v.array.shape[1] = UINT64_MAX / 2;
	assert_int_equal(shmrig_registry_encode(reg, pool, &v, &frame, &len), -EOVERFLOW);

	memset(&v, 0, sizeof(v));
	v.kind = SHMRIG_KIND_TABLE; /* a 2-d column */
	v.table.nrows = 4;
	v.table.ncolumns = 1;
	v.table.columns = &column;
	column.array.data = data;
	assert_int_equal(shmrig_registry_encode(reg, pool, &v, &frame, &len), -EINVAL);
	v.table.columns = NULL;
	assert_int_equal(shmrig_registry_encode(reg, pool, &v, &frame, &len), -EINVAL);

	memset(&v, 0, sizeof(v));
	v.kind = SHMRIG_KIND_DATASET; /* a group without a name */
	v.dataset.ngroups = 1;
	v.dataset.groups = &group;
	assert_int_equal(shmrig_registry_encode(reg, pool, &v, &frame, &len), -EINVAL);

	memset(&v, 0, sizeof(v));
	v.kind = SHMRIG_KIND_BYTES;
	v.bytes.len = 3;
	assert_int_equal(shmrig_registry_encode(reg, pool, &v, &frame, &len), -EINVAL);
	v.kind = SHMRIG_KIND_COUNT;
	assert_int_equal(shmrig_registry_encode(reg, pool, &v, &frame, &len), -EINVAL);
	assert_int_equal(shmrig_registry_encode(reg, pool, NULL, &frame, &len), -EINVAL);

	assert_int_equal(th_live_blocks(pool), 0);

	/* names that are not UTF-8: refused by the metadata writer, after the buffers were
	 * written (the registry frees them) */
	memset(&v, 0, sizeof(v));
	v.kind = SHMRIG_KIND_TABLE;
	v.table.nrows = 4;
	v.table.ncolumns = 1;
	v.table.columns = &column;
	column.name = "bad\xff";
	column.array.ndim = 1;
	column.array.data = data;
	assert_int_equal(shmrig_registry_encode(reg, pool, &v, &frame, &len), -EINVAL);
	assert_non_null(strstr(shmrig_last_error(), "not UTF-8"));
	assert_int_equal(th_live_blocks(pool), 0);
	memset(&v, 0, sizeof(v));
	v.kind = SHMRIG_KIND_DATASET;
	v.dataset.ngroups = 1;
	v.dataset.groups = &group;
	group.name = "\xc0\x80"; /* an overlong NUL */
	column.name = "c";
	assert_int_equal(shmrig_registry_encode(reg, pool, &v, &frame, &len), -EINVAL);
	assert_int_equal(th_live_blocks(pool), 0);

	shmrig_registry_free(reg);
	close_pool(pool);
}

/* ---- frames that stay byte-identical ---- */

/*
 * What a frame says apart from where its blocks are: the header, each ref's
 * size, content_size and temporary flag, and the metadata bytes. Segment names,
 * offsets and generations depend on the pool's history and are left out.
 */
static void hash_frame(XXH3_state_t *hash, const void *frame, size_t len)
{
	struct shmrig_frame f;

	assert_int_equal(shmrig_frame_parse(frame, len, &f), 0);
	XXH3_64bits_update(hash, frame, sizeof(struct shmrig_frame_header));
	for (uint32_t i = 0; i < f.nbuffers; i++) {
		const struct shmrig_ref *ref = &f.buffers[i];

		XXH3_64bits_update(hash, &ref->size, sizeof(ref->size));
		XXH3_64bits_update(hash, &ref->content_size, sizeof(ref->content_size));
		XXH3_64bits_update(hash, &ref->temporary, sizeof(ref->temporary));
	}
	XXH3_64bits_update(hash, f.meta, f.meta_len);
}

/*
 * The hash of a group's frames against the one the codecs gave when their
 * metadata was written through msgpack-c's packer directly (before the
 * shmrig_meta_put_* functions): a frame of the built-in codecs must not
 * change by a byte. Prints every group's hash, so a deliberate format change
 * is one run away from its new golden value (and a frame version bump).
 */
static bool golden_check(XXH3_state_t *hash, const char *group, uint64_t golden)
{
	uint64_t got = XXH3_64bits_digest(hash);

	if (got != golden)
		print_message("frames of group '%s' hash to 0x%016llx, golden 0x%016llx\n", group,
			      (unsigned long long)got, (unsigned long long)golden);
	XXH3_64bits_reset(hash);
	return got == golden;
}

/* Encode, hash the frame, decode, compare, release. */
static void golden_roundtrip(shmrig_registry *reg, shmrig_pool *pool, XXH3_state_t *hash,
			     const struct shmrig_value *in)
{
	struct shmrig_value out;
	void *frame;
	size_t len;

	assert_int_equal(shmrig_registry_encode(reg, pool, in, &frame, &len), 0);
	hash_frame(hash, frame, len);
	assert_int_equal(shmrig_registry_decode(reg, pool, frame, len, &out), 0);
	free(frame);
	assert_true(same_value(in, &out));
	assert_int_equal(shmrig_value_release(&out), 0);
}

enum {
	LONG_NAME = 65536,  /* a str32 */
	WIDE_TABLE = 300,   /* columns: an array16 of them, buffer indexes past uint8 */
	MANY_GROUPS = 17,   /* an array16 of groups */
	GOLDEN_MAX_DIM = 16 /* SHMRIG_MAX_DIMS */
};

/* A name of `len` bytes (all 'x') from a buffer of LONG_NAME + 1. */
static const char *name_of_len(const char *long_name, size_t len)
{
	return long_name + LONG_NAME - len;
}

/*
 * Values whose metadata takes every MessagePack width the built-in codecs
 * write: fixint, uint8..uint64, fixstr, str8, str16, str32, fixarray,
 * array16, fixmap; every dtype and order; and every kind's empty cases.
 */
static void test_frames_golden(void **state)
{
	static const size_t name_lengths[] = { 0, 1, 31, 32, 255, 256, 65535, LONG_NAME };
	static const uint64_t row_counts[] = { 0,     127,   128,         255,         256,
					       65535, 65536, 4294967295u, 4294967296u, UINT64_MAX };
	static const uint64_t shapes[][6] = {
		{ 0, 1, 127, 128, 255, 256 },   { 0, 65535, 65536, 4294967295u, 1, 1 },
		{ 0, 4294967296u, 1, 1, 1, 1 }, { 0, UINT64_MAX, 1, 1, 1, 1 },
		{ 2, 3, 1, 1, 1, 4 },
	};
	static const size_t byte_lengths[] = { 0, 1, 127, 128, 255, 256, 65535, 65536, MiB };
	static const char *const utf8_names[] = { "temp\xc3\xa9rature", "\xf0\x9f\x98\x80",
						  "\xe2\x82\xac", "a.b-c_d" };
	static unsigned char data[MiB];
	static char long_name[LONG_NAME + 1];
	static struct shmrig_named_array columns[WIDE_TABLE];
	static struct shmrig_group groups[MANY_GROUPS];
	static struct shmrig_named_array variables[MANY_GROUPS];
	shmrig_pool *pool = open_pool();
	shmrig_registry *reg = builtin_registry();
	XXH3_state_t *hash = XXH3_createState();
	struct shmrig_value v;
	bool same = true;

	(void)state;
	assert_non_null(hash);
	XXH3_64bits_reset(hash);
	memset(long_name, 'x', LONG_NAME);
	th_fill(data, sizeof(data), 13);
	for (size_t i = 0; i < sizeof(data); i++)
		data[i] &= 1; /* valid as bool too */

	/* ndarray: every dtype and order, 0 to 16 dimensions, every shape width */
	for (int dtype = SHMRIG_DTYPE_INT8; dtype < SHMRIG_DTYPE_COUNT; dtype++) {
		static const uint64_t shape3[] = { 2, 3, 4 };
		uint64_t shape_max[GOLDEN_MAX_DIM];

		for (uint32_t d = 0; d < GOLDEN_MAX_DIM; d++)
			shape_max[d] = d == 5 ? 3 : 1;
		for (int o = 0; o < 2; o++) {
			v = ndarray_value(dtype, o ? 'F' : 'C', 0, NULL, data);
			golden_roundtrip(reg, pool, hash, &v);
			v = ndarray_value(dtype, o ? 'F' : 'C', 3, shape3, data);
			golden_roundtrip(reg, pool, hash, &v);
			v = ndarray_value(dtype, o ? 'F' : 'C', GOLDEN_MAX_DIM, shape_max, data);
			golden_roundtrip(reg, pool, hash, &v);
		}
	}
	for (size_t i = 0; i < sizeof(shapes) / sizeof(shapes[0]); i++) {
		v = ndarray_value(SHMRIG_DTYPE_BOOL, 'C', 6, shapes[i], data);
		golden_roundtrip(reg, pool, hash, &v);
	}
	same &= golden_check(hash, "ndarray", 0x13f20814311aa8a9ull);

	/* table: row counts of every width, names of every length, 300 columns */
	memset(&v, 0, sizeof(v));
	v.kind = SHMRIG_KIND_TABLE;
	for (size_t i = 0; i < sizeof(row_counts) / sizeof(row_counts[0]); i++) {
		v.table.nrows = row_counts[i];
		golden_roundtrip(reg, pool, hash, &v);
	}
	for (size_t i = 0; i < sizeof(name_lengths) / sizeof(name_lengths[0]); i++) {
		columns[i].name = name_of_len(long_name, name_lengths[i]);
		columns[i].array = (struct shmrig_array){ .dtype = (enum shmrig_dtype)(1 + i),
							  .ndim = 1,
							  .shape = { 3 },
							  .order = 'C',
							  .data = data };
	}
	v.table.nrows = 3;
	v.table.ncolumns = (uint32_t)(sizeof(name_lengths) / sizeof(name_lengths[0]));
	v.table.columns = columns;
	golden_roundtrip(reg, pool, hash, &v);
	for (uint32_t i = 0; i < WIDE_TABLE; i++) {
		columns[i].name = utf8_names[i % 4];
		columns[i].array = (struct shmrig_array){ .dtype = (enum shmrig_dtype)(
								  1 + i % (SHMRIG_DTYPE_COUNT - 1)),
							  .ndim = 1,
							  .shape = { 2 },
							  .order = 'C',
							  .data = data };
	}
	v.table.nrows = 2;
	v.table.ncolumns = WIDE_TABLE;
	golden_roundtrip(reg, pool, hash, &v);
	same &= golden_check(hash, "table", 0x01fcc8044fc2e9ccull);

	/* dataset: no groups, 17 empty groups, 17 variables of every shape kind */
	memset(&v, 0, sizeof(v));
	v.kind = SHMRIG_KIND_DATASET;
	golden_roundtrip(reg, pool, hash, &v);
	for (uint32_t g = 0; g < MANY_GROUPS; g++)
		groups[g] = (struct shmrig_group){ .name = name_of_len(long_name, g) };
	v.dataset.ngroups = MANY_GROUPS;
	v.dataset.groups = groups;
	golden_roundtrip(reg, pool, hash, &v);
	for (uint32_t i = 0; i < MANY_GROUPS; i++) {
		variables[i].name = i < 4 ? utf8_names[i] : name_of_len(long_name, i * 16);
		variables[i].array = (struct shmrig_array){
			.dtype = (enum shmrig_dtype)(1 + i % (SHMRIG_DTYPE_COUNT - 1)),
			.ndim = i % 5,
			.shape = { 2, i % 3, 3, 1 },
			.order = i % 2 ? 'F' : 'C',
			.data = i % 7 || i % 5 == 0 ? data : NULL
		};
		if (!variables[i].array.data)
			variables[i].array.shape[0] = 0; /* empty, without data */
	}
	groups[0] = (struct shmrig_group){ .name = name_of_len(long_name, 256),
					   .nvariables = MANY_GROUPS,
					   .variables = variables };
	groups[1] =
		(struct shmrig_group){ .name = "second", .nvariables = 3, .variables = variables };
	v.dataset.ngroups = 2;
	golden_roundtrip(reg, pool, hash, &v);
	same &= golden_check(hash, "dataset", 0xdd205205bb8f21baull);

	/* bytes: lengths of every width; none at all */
	memset(&v, 0, sizeof(v));
	v.kind = SHMRIG_KIND_BYTES;
	golden_roundtrip(reg, pool, hash, &v);
	v.bytes.data = data;
	for (size_t i = 0; i < sizeof(byte_lengths) / sizeof(byte_lengths[0]); i++) {
		v.bytes.len = byte_lengths[i];
		golden_roundtrip(reg, pool, hash, &v);
	}
	same &= golden_check(hash, "bytes", 0x02cab1df678c08d5ull);

	assert_true(same);
	XXH3_freeState(hash);
	shmrig_registry_free(reg);
	close_pool(pool);
}

/* ---- seeded random values ---- */

enum {
	RANDOM_PER_CODEC = 2000
};

static void test_random_values(void **state)
{
	static const enum shmrig_kind kinds[] = { SHMRIG_KIND_NDARRAY, SHMRIG_KIND_TABLE,
						  SHMRIG_KIND_DATASET, SHMRIG_KIND_BYTES };
	static const char *const codecs[] = { "ndarray", "table", "dataset", "bytes" };
	/* the frames' hash per codec, as in test_frames_golden */
	static const uint64_t golden[] = { 0xca1bef0ca8721fe8ull, 0xb42f6430af270c52ull,
					   0x07cf77ff7bebcfd6ull, 0xe2a8c10d5dc20479ull };
	shmrig_pool *pool = open_pool();
	shmrig_registry *reg = builtin_registry();
	XXH3_state_t *hash = XXH3_createState();
	uint64_t seed = 0x5eed5eed12345678ull;
	struct scratch sc = { .n = 0 };
	bool same = true;

	(void)state;
	assert_non_null(hash);
	XXH3_64bits_reset(hash);
	for (int k = 0; k < 4; k++) {
		int id = shmrig_registry_lookup(reg, codecs[k]);

		for (int i = 0; i < RANDOM_PER_CODEC; i++) {
			struct shmrig_value in, out;
			void *frame;
			size_t len;

			rand_value(&seed, &sc, kinds[k], &in);
			assert_int_equal(shmrig_registry_encode(reg, pool, &in, &frame, &len), 0);
			assert_int_equal(frame_codec(frame, len), id);
			hash_frame(hash, frame, len);
			assert_int_equal(shmrig_registry_decode(reg, pool, frame, len, &out), 0);
			free(frame);
			if (!same_value(&in, &out))
				fail_msg("%s value %d does not round-trip", codecs[k], i);
			assert_int_equal(shmrig_value_release(&out), 0);
			scratch_free(&sc);
		}
		same &= golden_check(hash, codecs[k], golden[k]);
		assert_int_equal(th_live_blocks(pool), 0);
	}
	assert_true(same);
	XXH3_freeState(hash);
	assert_int_equal(shmrig_pool_audit(pool), 0);
	shmrig_registry_free(reg);
	close_pool(pool);
}

/* ---- lifetimes ---- */

static void test_lifetimes(void **state)
{
	static unsigned char bytes[5000];
	static int64_t a[100], b[100], c[100];
	struct shmrig_named_array columns[] = {
		{ "a", { .dtype = SHMRIG_DTYPE_INT64, .ndim = 1, .shape = { 100 }, .order = 'C' } },
		{ "b", { .dtype = SHMRIG_DTYPE_INT64, .ndim = 1, .shape = { 100 }, .order = 'C' } },
		{ "c", { .dtype = SHMRIG_DTYPE_INT64, .ndim = 1, .shape = { 100 }, .order = 'C' } },
	};
	static const uint64_t shape[] = { 100 };
	shmrig_pool *pool = open_pool();
	shmrig_registry *reg = builtin_registry();
	struct shmrig_value v, out, out2;
	uint64_t before;
	void *frame, *frame2;
	size_t len, len2;

	(void)state;
	/* bytes: one temporary block, freed inside decode; the value is a copy */
	th_fill(bytes, sizeof(bytes), 9);
	v = (struct shmrig_value){ .kind = SHMRIG_KIND_BYTES };
	v.bytes.data = bytes;
	v.bytes.len = sizeof(bytes);
	before = th_live_blocks(pool);
	assert_int_equal(shmrig_registry_encode(reg, pool, &v, &frame, &len), 0);
	assert_int_equal(th_live_blocks(pool), before + 1);
	assert_int_equal(shmrig_registry_decode(reg, pool, frame, len, &out), 0);
	assert_int_equal(th_live_blocks(pool), before);
	assert_int_equal(shmrig_value_leases(&out), 0);
	/* the block is reused by the next allocation; the copy is not touched */
	assert_int_equal(shmrig_registry_encode(reg, pool, &v, &frame2, &len2), 0);
	assert_int_equal(shmrig_frame_discard(pool, frame2, len2), 0);
	free(frame2);
	assert_int_equal(out.bytes.len, sizeof(bytes));
	assert_int_equal(th_first_mismatch(out.bytes.data, sizeof(bytes), 9), sizeof(bytes));
	assert_int_equal(shmrig_value_release(&out), 0);
	free(frame);

	/* ndarray: one persistent block, live until the value is released */
	for (int i = 0; i < 100; i++)
		a[i] = b[i] = c[i] = i;
	v = ndarray_value(SHMRIG_DTYPE_INT64, 'C', 1, shape, a);
	assert_int_equal(shmrig_registry_encode(reg, pool, &v, &frame, &len), 0);
	assert_int_equal(shmrig_registry_encode(reg, pool, &v, &frame2, &len2), 0);
	assert_int_equal(th_live_blocks(pool), before + 2);
	assert_int_equal(shmrig_registry_decode(reg, pool, frame, len, &out), 0);
	assert_int_equal(shmrig_registry_decode(reg, pool, frame2, len2, &out2), 0);
	free(frame);
	free(frame2);
	assert_int_equal(shmrig_value_leases(&out), 1);
	assert_int_equal(th_live_blocks(pool), before + 2);
	/* each value frees exactly its own block */
	assert_int_equal(shmrig_value_release(&out), 0);
	assert_int_equal(th_live_blocks(pool), before + 1);
	assert_memory_equal(out2.array.data, a, sizeof(a));
	assert_int_equal(shmrig_value_release(&out2), 0);
	assert_int_equal(th_live_blocks(pool), before);
	/* releasing twice, or a value the caller built, only zeroes */
	assert_int_equal(shmrig_value_release(&out2), 0);
	assert_int_equal(shmrig_value_release(&v), 0);
	assert_int_equal(shmrig_value_leases(&v), 0);

	/* table: the columns are parts of one pack block, one lease each */
	columns[0].array.data = a;
	columns[1].array.data = b;
	columns[2].array.data = c;
	v = (struct shmrig_value){ .kind = SHMRIG_KIND_TABLE };
	v.table.nrows = 100;
	v.table.ncolumns = 3;
	v.table.columns = columns;
	assert_int_equal(shmrig_registry_encode(reg, pool, &v, &frame, &len), 0);
	assert_int_equal(th_live_blocks(pool), before + 1);
	assert_int_equal(shmrig_registry_decode(reg, pool, frame, len, &out), 0);
	free(frame);
	assert_int_equal(shmrig_value_leases(&out), 3);
	assert_int_equal(th_live_blocks(pool), before + 1);
	assert_true(same_value(&v, &out));
	assert_int_equal(shmrig_value_release(&out), 0);
	assert_int_equal(th_live_blocks(pool), before);

	shmrig_registry_free(reg);
	close_pool(pool);
}

/* ---- user codecs ---- */

struct point {
	double x, y, z;
};

/* ctx of the point codecs: the user type, and which points it takes. */
struct point_ctx {
	uint32_t tag;
	double max_x; /* takes points with x < max_x */
	atomic_int asked;
};

static bool point_can_encode(void *ctx, const struct shmrig_value *value)
{
	struct point_ctx *pc = ctx;
	const struct point *p = value->user;

	atomic_fetch_add(&pc->asked, 1);
	return value->user_type == pc->tag && p->x < pc->max_x;
}

/* One persistent buffer holding the struct; meta {"n": 3}. */
static int point_encode(void *ctx, struct shmrig_encoder *enc, const struct shmrig_value *value)
{
	void *data;
	int ret;

	(void)ctx;
	ret = shmrig_encoder_buffer(enc, sizeof(struct point), 0, &data);
	if (ret < 0)
		return ret;
	memcpy(data, value->user, sizeof(struct point));
	ret = shmrig_meta_put_map(enc, 1);
	if (!ret)
		ret = shmrig_meta_put_str(enc, "n");
	return ret ? ret : shmrig_meta_put_uint(enc, 3);
}

/* A view: the value's pointer is the buffer in the pool. */
static int point_decode(void *ctx, struct shmrig_decoder *dec, struct shmrig_value *out)
{
	const struct point_ctx *pc = ctx;
	const void *data;
	uint64_t n, len;
	int ret;

	if (shmrig_meta_uint(shmrig_meta_get(shmrig_decoder_meta(dec), "n"), &n) || n != 3 ||
	    shmrig_decoder_nbuffers(dec) != 1)
		return -EBADMSG;
	ret = shmrig_decoder_buffer(dec, 0, 0, &data, &len);
	if (ret)
		return ret;
	if (len != sizeof(struct point))
		return -EBADMSG;
	out->kind = SHMRIG_KIND_USER;
	out->user_type = pc->tag;
	out->user = (void *)data;
	return 0;
}

static struct shmrig_codec point_codec(const char *name, struct point_ctx *ctx, bool choosy)
{
	struct shmrig_codec codec = {
		.size = sizeof(struct shmrig_codec),
		.name = name,
		.kinds = SHMRIG_KIND_BIT(SHMRIG_KIND_USER),
		.can_encode = choosy ? point_can_encode : NULL,
		.encode = point_encode,
		.decode = point_decode,
		.ctx = ctx,
	};

	return codec;
}

static struct shmrig_value point_value(uint32_t tag, struct point *p)
{
	struct shmrig_value v = { .kind = SHMRIG_KIND_USER, .user_type = tag, .user = p };

	return v;
}

/* A user type end to end: encode in one persistent buffer, decode as a view. */
static void test_user_codec(void **state)
{
	struct point_ctx ctx = { .max_x = INFINITY };
	struct point p = { 1.5, -2.25, 1e300 };
	shmrig_pool *pool = open_pool();
	shmrig_registry *reg = builtin_registry();
	struct shmrig_codec codec;
	struct shmrig_value v, out;
	const struct point *got;
	void *frame;
	size_t len;
	int id;

	(void)state;
	ctx.tag = (uint32_t)shmrig_registry_user_type(reg, "point");
	assert_true(ctx.tag > 0);
	codec = point_codec("point", &ctx, true);
	id = shmrig_registry_register(reg, &codec);
	assert_int_equal(id, 4); /* after the four builtins */
	v = point_value(ctx.tag, &p);
	assert_int_equal(shmrig_registry_encode(reg, pool, &v, &frame, &len), 0);
	assert_int_equal(frame_codec(frame, len), id);
	assert_int_equal(th_live_blocks(pool), 1);
	assert_int_equal(shmrig_registry_decode(reg, pool, frame, len, &out), 0);
	free(frame);
	assert_int_equal(out.kind, SHMRIG_KIND_USER);
	assert_int_equal(out.user_type, ctx.tag);
	assert_true(out.user != (void *)&p);
	got = out.user;
	assert_memory_equal(got, &p, sizeof(p));
	assert_int_equal(shmrig_value_leases(&out), 1);
	assert_int_equal(th_live_blocks(pool), 1);
	assert_int_equal(shmrig_value_release(&out), 0);
	assert_int_equal(th_live_blocks(pool), 0);

	/* a point of another user type: no codec takes it, the fallback refuses it */
	v.user_type = (uint32_t)shmrig_registry_user_type(reg, "point");
	assert_int_equal(v.user_type, ctx.tag); /* the same name gives the same tag */
	v.user_type = ctx.tag + 1;
	assert_int_equal(shmrig_registry_encode(reg, pool, &v, &frame, &len), -ENOTSUP);
	assert_int_equal(th_live_blocks(pool), 0);

	shmrig_registry_free(reg);
	close_pool(pool);
}

/* First match in registration order; refusals are skipped; fallback or -ENOTSUP. */
static void test_dispatch(void **state)
{
	struct point_ctx never = { .max_x = -INFINITY }, negative = { .max_x = 0 }, any = { 0 };
	struct point left = { -1, 0, 0 }, right = { 1, 0, 0 };
	shmrig_pool *pool = open_pool();
	shmrig_registry *reg, *builtins = builtin_registry();
	struct shmrig_codec codec;
	struct shmrig_value v, out;
	void *frame;
	size_t len;
	int tag;

	(void)state;
	assert_int_equal(shmrig_registry_create(&reg), 0);
	tag = shmrig_registry_user_type(reg, "point");
	assert_true(tag > 0);
	never.tag = negative.tag = any.tag = (uint32_t)tag;
	codec = point_codec("never", &never, true);
	assert_int_equal(shmrig_registry_register(reg, &codec), 0);
	codec = point_codec("negative", &negative, true);
	assert_int_equal(shmrig_registry_register(reg, &codec), 1);
	codec = point_codec("any", &any, false);
	assert_int_equal(shmrig_registry_register(reg, &codec), 2);

	v = point_value((uint32_t)tag, &left);
	assert_int_equal(shmrig_registry_encode(reg, pool, &v, &frame, &len), 0);
	assert_int_equal(frame_codec(frame, len), 1);
	assert_int_equal(shmrig_registry_decode(reg, pool, frame, len, &out), 0);
	free(frame);
	assert_memory_equal(out.user, &left, sizeof(left));
	assert_int_equal(shmrig_value_release(&out), 0);

	v = point_value((uint32_t)tag, &right);
	assert_int_equal(shmrig_registry_encode(reg, pool, &v, &frame, &len), 0);
	assert_int_equal(frame_codec(frame, len), 2);
	assert_int_equal(shmrig_frame_discard(pool, frame, len), 0);
	free(frame);
	/* "never" was asked both times and said no; "negative" was asked both times */
	assert_int_equal(atomic_load(&never.asked), 2);
	assert_int_equal(atomic_load(&negative.asked), 2);

	/* a kind no codec takes, and no fallback */
	v = (struct shmrig_value){ .kind = SHMRIG_KIND_BYTES, .bytes = { "x", 1 } };
	assert_int_equal(shmrig_registry_encode(reg, pool, &v, &frame, &len), -ENOTSUP);
	assert_non_null(strstr(shmrig_last_error(), "no fallback"));

	/* the builtins: a user value goes to the fallback 'bytes', which refuses it */
	v = point_value((uint32_t)tag, &left);
	assert_int_equal(shmrig_registry_encode(builtins, pool, &v, &frame, &len), -ENOTSUP);
	assert_non_null(strstr(shmrig_last_error(), "'bytes'"));

	/* a frame naming a codec id the decoding registry does not have */
	v = (struct shmrig_value){ .kind = SHMRIG_KIND_BYTES, .bytes = { "xyz", 3 } };
	assert_int_equal(shmrig_registry_encode(builtins, pool, &v, &frame, &len), 0);
	assert_int_equal(frame_codec(frame, len), 3);
	assert_int_equal(th_live_blocks(pool), 1);
	assert_int_equal(shmrig_registry_decode(reg, pool, frame, len, &out), -ENOENT);
	assert_non_null(strstr(shmrig_last_error(), "'never', 'negative', 'any'"));
	assert_null(out.storage);
	assert_int_equal(th_live_blocks(pool), 0); /* its blocks were freed */
	free(frame);

	shmrig_registry_free(reg);
	shmrig_registry_free(builtins);
	close_pool(pool);
}

static int dummy_encode(void *ctx, struct shmrig_encoder *enc, const struct shmrig_value *value)
{
	(void)ctx;
	(void)enc;
	(void)value;
	return -ENOSYS;
}

static int dummy_decode(void *ctx, struct shmrig_decoder *dec, struct shmrig_value *out)
{
	(void)ctx;
	(void)dec;
	(void)out;
	return -ENOSYS;
}

static struct shmrig_codec dummy_codec(const char *name)
{
	struct shmrig_codec codec = {
		.size = sizeof(struct shmrig_codec),
		.name = name,
		.kinds = SHMRIG_KIND_BIT(SHMRIG_KIND_USER),
		.encode = dummy_encode,
		.decode = dummy_decode,
	};

	return codec;
}

static void test_register_errors(void **state)
{
	static const char *const bad_names[] = {
		"",
		"a b",
		"slash/",
		"tab\t",
		"caf\xc3\xa9",
		"colon:",
		"0123456789012345678901234567890x", /* 32 bytes */
	};
	struct point_ctx ctx = { .max_x = INFINITY };
	struct point p = { 0, 0, 0 };
	shmrig_pool *pool = open_pool();
	shmrig_registry *reg;
	struct shmrig_codec good = point_codec("good", &ctx, false), c;
	struct shmrig_value v, out;
	static char names[SHMRIG_MAX_CODECS][16]; /* a registry keeps the name pointers */
	void *frame;
	size_t len;

	(void)state;
	assert_int_equal(shmrig_registry_create(NULL), -EINVAL);
	assert_int_equal(shmrig_registry_create(&reg), 0);
	assert_int_equal(shmrig_registry_register(reg, &good), 0);
	assert_int_equal(shmrig_registry_register(NULL, &good), -EINVAL);
	assert_int_equal(shmrig_registry_register(reg, NULL), -EINVAL);

	c = good;
	c.name = NULL;
	assert_int_equal(shmrig_registry_register(reg, &c), -EINVAL);
	for (size_t i = 0; i < sizeof(bad_names) / sizeof(bad_names[0]); i++) {
		c.name = bad_names[i];
		assert_int_equal(shmrig_registry_register(reg, &c), -EINVAL);
	}
	c.name = "A-Za-z_0.9-abcdefghijklmnopqrst"; /* 31 bytes, every kind of character */
	assert_int_equal(shmrig_registry_register(reg, &c), 1);

	c = good;
	c.name = "k";
	c.kinds = 0;
	assert_int_equal(shmrig_registry_register(reg, &c), -EINVAL);
	c.kinds = SHMRIG_KIND_BIT(SHMRIG_KIND_COUNT);
	assert_int_equal(shmrig_registry_register(reg, &c), -EINVAL);
	c = good;
	c.name = "k";
	c.encode = NULL;
	assert_int_equal(shmrig_registry_register(reg, &c), -EINVAL);
	c = good;
	c.name = "k";
	c.decode = NULL;
	assert_int_equal(shmrig_registry_register(reg, &c), -EINVAL);
	c = good;
	c.name = "k";
	c.flags = SHMRIG_CODEC_FALLBACK << 1;
	assert_int_equal(shmrig_registry_register(reg, &c), -EINVAL);
	c = good;
	c.name = "k";
	c.size = 0;
	assert_int_equal(shmrig_registry_register(reg, &c), -EINVAL);

	assert_int_equal(shmrig_registry_register(reg, &good), -EEXIST);
	c = good;
	c.name = "fallback1";
	c.flags = SHMRIG_CODEC_FALLBACK;
	assert_int_equal(shmrig_registry_register(reg, &c), 2);
	c.name = "fallback2";
	assert_int_equal(shmrig_registry_register(reg, &c), -EEXIST);
	assert_non_null(strstr(shmrig_last_error(), "'fallback1'"));
	assert_int_equal(shmrig_registry_count(reg), 3);

	/* the first encode freezes it */
	v = point_value(1, &p);
	assert_int_equal(shmrig_registry_encode(reg, pool, &v, &frame, &len), 0);
	c = dummy_codec("late");
	assert_int_equal(shmrig_registry_register(reg, &c), -EBUSY);
	assert_int_equal(shmrig_registry_user_type(reg, "late"), -EBUSY);
	assert_int_equal(shmrig_registry_count(reg), 3);
	shmrig_registry_free(reg);

	/* so does the first decode */
	assert_int_equal(shmrig_registry_create(&reg), 0);
	assert_int_equal(shmrig_registry_register(reg, &good), 0);
	assert_int_equal(shmrig_registry_decode(reg, pool, frame, len, &out), 0);
	free(frame);
	assert_int_equal(shmrig_value_release(&out), 0);
	assert_int_equal(shmrig_registry_register(reg, &c), -EBUSY);
	shmrig_registry_free(reg);

	/* the builtins once only; then up to SHMRIG_MAX_CODECS */
	assert_int_equal(shmrig_registry_create(&reg), 0);
	assert_int_equal(shmrig_registry_add_builtins(reg), 0);
	assert_int_equal(shmrig_registry_add_builtins(reg), -EEXIST);
	for (int i = shmrig_registry_count(reg); i < SHMRIG_MAX_CODECS; i++) {
		snprintf(names[i], sizeof(names[i]), "c%d", i);
		c = dummy_codec(names[i]);
		assert_int_equal(shmrig_registry_register(reg, &c), i);
	}
	c = dummy_codec("one-too-many");
	assert_int_equal(shmrig_registry_register(reg, &c), -ENOSPC);
	shmrig_registry_free(reg);
	shmrig_registry_free(NULL);
	close_pool(pool);
}

/* Lookup, names, fingerprints, user types. */
static void test_lookup_and_fingerprint(void **state)
{
	static const char *const names[] = { "ndarray", "table", "dataset", "bytes" };
	static const char *const swapped[] = { "table", "ndarray", "dataset", "bytes" };
	shmrig_registry *reg = builtin_registry(), *same = builtin_registry();
	shmrig_registry *lookalike, *reordered, *split1, *split2, *empty1, *empty2;
	struct shmrig_codec c;
	int point, vector;

	(void)state;
	assert_int_equal(shmrig_registry_count(reg), 4);
	for (int i = 0; i < 4; i++) {
		assert_int_equal(shmrig_registry_lookup(reg, names[i]), i);
		assert_string_equal(shmrig_registry_codec_name(reg, i), names[i]);
	}
	assert_null(shmrig_registry_codec_name(reg, 4));
	assert_null(shmrig_registry_codec_name(reg, -1));
	assert_null(shmrig_registry_codec_name(NULL, 0));
	assert_int_equal(shmrig_registry_lookup(reg, "Ndarray"), -ENOENT);
	assert_non_null(strstr(shmrig_last_error(), "'Ndarray'"));
	assert_non_null(strstr(shmrig_last_error(), "'ndarray', 'table', 'dataset', 'bytes'"));
	assert_int_equal(shmrig_registry_lookup(reg, NULL), -EINVAL);
	assert_int_equal(shmrig_registry_count(NULL), 0);

	/* the fingerprint is of the names, in order */
	assert_int_equal(shmrig_registry_create(&lookalike), 0);
	assert_int_equal(shmrig_registry_create(&reordered), 0);
	for (int i = 0; i < 4; i++) {
		c = dummy_codec(names[i]);
		assert_int_equal(shmrig_registry_register(lookalike, &c), i);
		c = dummy_codec(swapped[i]);
		assert_int_equal(shmrig_registry_register(reordered, &c), i);
	}
	assert_true(shmrig_registry_fingerprint(reg) == shmrig_registry_fingerprint(same));
	assert_true(shmrig_registry_fingerprint(reg) == shmrig_registry_fingerprint(lookalike));
	assert_true(shmrig_registry_fingerprint(reg) != shmrig_registry_fingerprint(reordered));
	assert_int_equal(shmrig_registry_create(&split1), 0);
	assert_int_equal(shmrig_registry_create(&split2), 0);
	c = dummy_codec("ab");
	assert_int_equal(shmrig_registry_register(split1, &c), 0);
	c = dummy_codec("c");
	assert_int_equal(shmrig_registry_register(split1, &c), 1);
	c = dummy_codec("a");
	assert_int_equal(shmrig_registry_register(split2, &c), 0);
	c = dummy_codec("bc");
	assert_int_equal(shmrig_registry_register(split2, &c), 1);
	assert_true(shmrig_registry_fingerprint(split1) != shmrig_registry_fingerprint(split2));
	assert_int_equal(shmrig_registry_create(&empty1), 0);
	assert_int_equal(shmrig_registry_create(&empty2), 0);
	assert_true(shmrig_registry_fingerprint(empty1) == shmrig_registry_fingerprint(empty2));
	assert_true(shmrig_registry_fingerprint(empty1) != shmrig_registry_fingerprint(reg));
	assert_int_equal(shmrig_registry_lookup(empty1, "bytes"), -ENOENT);
	assert_non_null(strstr(shmrig_last_error(), "none"));

	/* user types: the same name, the same tag; names checked like codec names */
	point = shmrig_registry_user_type(reg, "point");
	vector = shmrig_registry_user_type(reg, "vector");
	assert_true(point > 0 && vector > 0 && point != vector);
	assert_int_equal(shmrig_registry_user_type(reg, "point"), point);
	assert_int_equal(shmrig_registry_user_type(reg, "vector"), vector);
	assert_int_equal(shmrig_registry_user_type(same, "point"), point); /* same order */
	assert_int_equal(shmrig_registry_user_type(reg, "bad name"), -EINVAL);
	assert_int_equal(shmrig_registry_user_type(reg, NULL), -EINVAL);
	assert_int_equal(shmrig_registry_user_type(NULL, "point"), -EINVAL);

	shmrig_registry_free(reg);
	shmrig_registry_free(same);
	shmrig_registry_free(lookalike);
	shmrig_registry_free(reordered);
	shmrig_registry_free(split1);
	shmrig_registry_free(split2);
	shmrig_registry_free(empty1);
	shmrig_registry_free(empty2);
}

/* ---- the metadata writer's shape: what it passes unchecked is valid ---- */

/*
 * A codec that writes a script of metadata puts. Encode skips the metadata
 * check when the writer saw one complete object within the limits (meta.h):
 * every metadata it lets through that way must be what the receiving side's
 * check accepts (shmrig_frame_to_json runs it), and what it does not is left
 * to the check, whose words the encode fails with.
 */
enum put_op { PUT_MAP, PUT_LIST, PUT_STR, PUT_UINT, PUT_NULL, PUT_ARRAY, PUT_OPS };

struct put_step {
	enum put_op op;
	uint32_t count; /* entries of a map or list; nulls (0: one); an array's ndim % 3 */
};

struct script {
	uint32_t n;
	struct put_step step[64];
};

static int script_decode(void *ctx, struct shmrig_decoder *dec, struct shmrig_value *out)
{
	(void)ctx, (void)dec, (void)out;
	return -EPROTO; /* never called: the test only encodes */
}

static int script_encode(void *ctx, struct shmrig_encoder *enc, const struct shmrig_value *value)
{
	const struct script *sc = ctx;
	static const uint64_t shape[2] = { 3, 5 };

	(void)value;
	for (uint32_t i = 0; i < sc->n; i++) {
		uint32_t c = sc->step[i].count;
		struct shmrig_array a = { .dtype = SHMRIG_DTYPE_FLOAT64, .ndim = c % 3,
					  .order = 'C' };
		int ret;

		memcpy(a.shape, shape, sizeof(shape));
		switch (sc->step[i].op) {
		case PUT_MAP:
			ret = shmrig_meta_put_map(enc, c);
			break;
		case PUT_LIST:
			ret = shmrig_meta_put_list(enc, c);
			break;
		case PUT_STR:
			ret = shmrig_meta_put_str(enc, "k\xc3\xa9");
			break;
		case PUT_UINT:
			ret = shmrig_meta_put_uint(enc, 1000);
			break;
		case PUT_NULL:
			ret = shmrig_meta_put_null(enc);
			for (uint32_t k = 1; k < c && !ret; k++)
				ret = shmrig_meta_put_null(enc);
			break;
		default:
			ret = shmrig_meta_put_array(enc, &a);
			break;
		}
		if (ret)
			return ret;
	}
	return 0;
}

/* Encode the script: 0 and the metadata accepted by the frame's check, or
 * -EBADMSG with the check's words. Returns whether it encoded. */
static bool encode_script(shmrig_registry *reg, shmrig_pool *pool, struct shmrig_value *v)
{
	void *frame = NULL;
	char *json;
	size_t len;
	int ret = shmrig_registry_encode(reg, pool, v, &frame, &len);

	if (ret) {
		assert_int_equal(ret, -EBADMSG);
		assert_non_null(strstr(shmrig_last_error(), "wrote bad metadata: metadata"));
		return false;
	}
	/* the check a receiver runs on the metadata accepts it */
	assert_int_equal(shmrig_frame_to_json(frame, len, NULL, &json), 0);
	free(json);
	assert_int_equal(shmrig_frame_discard(pool, frame, len), 0);
	free(frame);
	return true;
}

static void test_meta_shape(void **state)
{
	struct script sc;
	struct shmrig_codec codec = {
		.size = sizeof(struct shmrig_codec),
		.name = "script",
		.kinds = SHMRIG_KIND_BIT(SHMRIG_KIND_USER),
		.encode = script_encode,
		.decode = script_decode,
		.ctx = &sc,
	};
	struct point p = { 1, 2, 3 };
	struct shmrig_value v = point_value(1, &p);
	shmrig_pool *pool = open_pool();
	shmrig_registry *reg = builtin_registry();
	unsigned good = 0, bad = 0;
	uint64_t rng = 0x9e3779b97f4a7c15ull;

	(void)state;
	assert_int_equal(shmrig_registry_register(reg, &codec), 4);

	/* random scripts: most are malformed or incomplete, some whole */
	for (int k = 0; k < 4000; k++) {
		sc.n = 0;
		do {
			rng = rng * 6364136223846793005ull + 1442695040888963407ull;
			sc.step[sc.n].op = (enum put_op)((rng >> 33) % PUT_OPS);
			sc.step[sc.n].count = (uint32_t)(rng >> 40) % 4;
			sc.n++;
		} while (sc.n < 12 && (rng >> 20) % 5);
		if (encode_script(reg, pool, &v))
			good++;
		else
			bad++;
	}
	assert_true(good > 200 && bad > 200);

	/* at the depth limit and past it: 32 nested lists pass, 33 do not, and
	 * an array's map and list count as two levels */
	for (uint32_t depth = 30; depth <= 33; depth++) {
		for (int with_array = 0; with_array < 2; with_array++) {
			sc.n = 0;
			for (uint32_t d = 0; d < depth - (uint32_t)with_array * 2; d++)
				sc.step[sc.n++] = (struct put_step){ PUT_LIST, 1 };
			if (with_array)
				sc.step[sc.n++] = (struct put_step){ PUT_ARRAY, 2 };
			else
				sc.step[sc.n - 1].count = 0;
			assert_int_equal(encode_script(reg, pool, &v), depth <= 32);
		}
	}
	/* keys: a string passes, a map or an array where a key goes does not */
	sc = (struct script){ 3, { { PUT_MAP, 1 }, { PUT_STR, 0 }, { PUT_ARRAY, 1 } } };
	assert_true(encode_script(reg, pool, &v));
	sc = (struct script){ 3, { { PUT_MAP, 1 }, { PUT_ARRAY, 1 }, { PUT_STR, 0 } } };
	assert_false(encode_script(reg, pool, &v));
	sc = (struct script){ 3, { { PUT_MAP, 1 }, { PUT_MAP, 0 }, { PUT_NULL, 0 } } };
	assert_false(encode_script(reg, pool, &v));
	/* at the item limit (keys, heads and all) and one past it */
	sc = (struct script){ 2, { { PUT_LIST, SHMRIG_FRAME_MAX_META_ITEMS - 1 },
				   { PUT_NULL, SHMRIG_FRAME_MAX_META_ITEMS - 1 } } };
	assert_true(encode_script(reg, pool, &v));
	sc = (struct script){ 2, { { PUT_LIST, SHMRIG_FRAME_MAX_META_ITEMS },
				   { PUT_NULL, SHMRIG_FRAME_MAX_META_ITEMS } } };
	assert_false(encode_script(reg, pool, &v));
	/* nothing, and a second object after a whole one */
	sc = (struct script){ 0 };
	assert_false(encode_script(reg, pool, &v));
	sc = (struct script){ 2, { { PUT_LIST, 0 }, { PUT_NULL, 0 } } };
	assert_false(encode_script(reg, pool, &v));

	assert_int_equal(th_live_blocks(pool), 0);
	shmrig_registry_free(reg);
	close_pool(pool);
}

/* ---- codecs that fail ---- */

enum fault {
	FAULT_NONE,
	/* encode */
	FAULT_TWO_THEN_FAIL,
	FAULT_SHORT_MAP,
	FAULT_KEY_NOT_STR,
	FAULT_TWO_OBJECTS,
	FAULT_NO_META,
	FAULT_META_FULL,
	FAULT_PACK_OVERFLOW,
	FAULT_BAD_ARGS,
	/* decode */
	FAULT_ASK_5,
	FAULT_NEVER_ASK,
	FAULT_ASK_TWICE,
	FAULT_ASK_THEN_FAIL,
};

struct faulty {
	enum fault fault;
	bool temporary; /* the buffer of a good encode */
	int seen[3];    /* what the services answered */
};

static int faulty_encode(void *ctx, struct shmrig_encoder *enc, const struct shmrig_value *value)
{
	static const char huge; /* never read: refused by its length */
	struct faulty *f = ctx;
	void *data;
	int ret;

	switch (f->fault) {
	case FAULT_TWO_THEN_FAIL:
		/* a class block and a large one, then an error */
		if (shmrig_encoder_buffer(enc, 100, 0, &data) != 0 ||
		    shmrig_encoder_buffer(enc, 3 * MiB, SHMRIG_BUF_TEMPORARY, &data) != 1)
			return -EPROTO;
		memset(data, 1, 3 * MiB);
		return -EIO;
	case FAULT_SHORT_MAP: /* two pairs announced, one written */
		if (shmrig_encoder_buffer(enc, 8, 0, &data) != 0 || shmrig_meta_put_map(enc, 2) ||
		    shmrig_meta_put_str(enc, "a") || shmrig_meta_put_null(enc))
			return -EPROTO;
		return 0;
	case FAULT_KEY_NOT_STR:
		if (shmrig_meta_put_map(enc, 1) || shmrig_meta_put_uint(enc, 1) ||
		    shmrig_meta_put_uint(enc, 2))
			return -EPROTO;
		return 0;
	case FAULT_TWO_OBJECTS:
		if (shmrig_meta_put_map(enc, 0) || shmrig_meta_put_map(enc, 0))
			return -EPROTO;
		return 0;
	case FAULT_NO_META:
		return shmrig_encoder_buffer(enc, 8, 0, &data) == 0 ? 0 : -EPROTO;
	case FAULT_META_FULL:
		/* the failed write is ignored: the encode fails all the same */
		if (shmrig_encoder_buffer(enc, 8, 0, &data) != 0 || shmrig_meta_put_map(enc, 1))
			return -EPROTO;
		f->seen[0] = shmrig_meta_put_strn(enc, &huge, SHMRIG_FRAME_MAX_META);
		f->seen[1] = shmrig_meta_put_null(enc); /* sticky */
		return 0;
	case FAULT_PACK_OVERFLOW:
		f->seen[0] = shmrig_encoder_pack(enc, 256);
		f->seen[1] = shmrig_encoder_buffer(enc, 100, 0, &data); /* takes 128 */
		f->seen[2] = shmrig_encoder_pack(enc, 64);
		return shmrig_encoder_buffer(enc, 200, 0, &data); /* needs 256: full */
	case FAULT_BAD_ARGS:
		f->seen[0] = shmrig_encoder_buffer(enc, 8, SHMRIG_BUF_TEMPORARY << 1, &data);
		f->seen[1] = shmrig_encoder_pack(enc, 0);
		f->seen[2] = shmrig_encoder_buffer(enc, 8, 0, NULL);
		return f->seen[0];
	default:
		ret = shmrig_encoder_buffer(enc, sizeof(struct point),
					    f->temporary ? SHMRIG_BUF_TEMPORARY : 0, &data);
		if (ret < 0)
			return ret;
		memcpy(data, value->user, sizeof(struct point));
		ret = shmrig_meta_put_map(enc, 1);
		if (!ret)
			ret = shmrig_meta_put_str(enc, "n");
		return ret ? ret : shmrig_meta_put_uint(enc, 3);
	}
}

static int faulty_decode(void *ctx, struct shmrig_decoder *dec, struct shmrig_value *out)
{
	struct faulty *f = ctx;
	const void *data;
	uint64_t len;
	int ret;

	out->kind = SHMRIG_KIND_USER;
	switch (f->fault) {
	case FAULT_ASK_5:
		return shmrig_decoder_buffer(dec, 5, f->temporary ? SHMRIG_BUF_TEMPORARY : 0, &data, &len);
	case FAULT_NEVER_ASK:
		return 0;
	case FAULT_ASK_TWICE:
		ret = shmrig_decoder_buffer(dec, 0, f->temporary ? SHMRIG_BUF_TEMPORARY : 0, &data, &len);
		if (ret)
			return -EPROTO;
		return shmrig_decoder_buffer(dec, 0, f->temporary ? SHMRIG_BUF_TEMPORARY : 0, &data, &len);
	case FAULT_ASK_THEN_FAIL:
		ret = shmrig_decoder_buffer(dec, 0, f->temporary ? SHMRIG_BUF_TEMPORARY : 0, &data, &len);
		/* host memory the registry must free with the failed value */
		if (ret || !shmrig_decoder_alloc(dec, 100) || !shmrig_decoder_alloc(dec, 10000))
			return -EPROTO;
		return -EIO;
	default:
		ret = shmrig_decoder_buffer(dec, 0, f->temporary ? SHMRIG_BUF_TEMPORARY : 0, &data, &len);
		if (ret)
			return ret;
		out->user = (void *)data;
		return 0;
	}
}

static shmrig_registry *faulty_registry(struct faulty *f)
{
	struct shmrig_codec codec = {
		.size = sizeof(struct shmrig_codec),
		.name = "faulty",
		.kinds = SHMRIG_KIND_BIT(SHMRIG_KIND_USER),
		.encode = faulty_encode,
		.decode = faulty_decode,
		.ctx = f,
	};
	shmrig_registry *reg = builtin_registry();

	assert_int_equal(shmrig_registry_register(reg, &codec), 4);
	return reg;
}

/* The registry frees whatever a failed encode allocated. */
static void test_encoder_errors(void **state)
{
	struct faulty f = { .fault = FAULT_NONE };
	struct point p = { 1, 2, 3 };
	struct shmrig_value v = point_value(1, &p);
	shmrig_pool *pool = open_pool();
	shmrig_registry *reg = faulty_registry(&f);
	void *frame = NULL;
	size_t len;

	(void)state;
	f.fault = FAULT_TWO_THEN_FAIL;
	assert_int_equal(shmrig_registry_encode(reg, pool, &v, &frame, &len), -EIO);
	assert_int_equal(th_live_blocks(pool), 0);

	/* metadata that is not one well-formed object: the registry's check after encode */
	f.fault = FAULT_SHORT_MAP;
	assert_int_equal(shmrig_registry_encode(reg, pool, &v, &frame, &len), -EBADMSG);
	/* the registry's words, then the metadata check's */
	assert_non_null(
		strstr(shmrig_last_error(), "'faulty' wrote bad metadata: metadata is not"));
	assert_non_null(strstr(shmrig_last_error(), "claims more items than there are bytes"));
	assert_int_equal(th_live_blocks(pool), 0);
	f.fault = FAULT_KEY_NOT_STR;
	assert_int_equal(shmrig_registry_encode(reg, pool, &v, &frame, &len), -EBADMSG);
	assert_non_null(strstr(shmrig_last_error(), "a map key is not a string"));
	f.fault = FAULT_TWO_OBJECTS;
	assert_int_equal(shmrig_registry_encode(reg, pool, &v, &frame, &len), -EBADMSG);
	assert_non_null(strstr(shmrig_last_error(), "bytes after its object"));

	f.fault = FAULT_NO_META;
	assert_int_equal(shmrig_registry_encode(reg, pool, &v, &frame, &len), -EBADMSG);
	assert_int_equal(th_live_blocks(pool), 0);

	/* a write over the limit fails that encode, even if the codec ignores it */
	f.fault = FAULT_META_FULL;
	assert_int_equal(shmrig_registry_encode(reg, pool, &v, &frame, &len), -ENOSPC);
	assert_int_equal(f.seen[0], -ENOSPC);
	assert_int_equal(f.seen[1], -ENOSPC);
	assert_non_null(strstr(shmrig_last_error(), "'faulty' returned 0 after a metadata write"));
	assert_int_equal(th_live_blocks(pool), 0);

	f.fault = FAULT_PACK_OVERFLOW;
	assert_int_equal(shmrig_registry_encode(reg, pool, &v, &frame, &len), -ENOSPC);
	assert_int_equal(f.seen[0], 0);
	assert_int_equal(f.seen[1], 0);
	assert_int_equal(f.seen[2], -EBUSY);
	assert_int_equal(th_live_blocks(pool), 0);

	f.fault = FAULT_BAD_ARGS;
	assert_int_equal(shmrig_registry_encode(reg, pool, &v, &frame, &len), -EINVAL);
	assert_int_equal(f.seen[1], -EINVAL);
	assert_int_equal(f.seen[2], -EINVAL);
	assert_int_equal(th_live_blocks(pool), 0);
	assert_null(frame); /* never set on failure */

	f.fault = FAULT_NONE; /* and the codec still works */
	assert_int_equal(shmrig_registry_encode(reg, pool, &v, &frame, &len), 0);
	assert_int_equal(shmrig_frame_discard(pool, frame, len), 0);
	free(frame);
	shmrig_registry_free(reg);
	close_pool(pool);
}

/* A failed decode frees the frame's blocks and the value's host memory. */
static void test_decoder_errors(void **state)
{
	static const struct {
		enum fault fault;
		int ret;
		const char *words;
	} cases[] = {
		{ FAULT_ASK_5, -EBADMSG, "buffer 5 asked, the frame has 1" },
		{ FAULT_NEVER_ASK, -EBADMSG, "'faulty' left buffer 0 of 1 unread" },
		{ FAULT_ASK_TWICE, -EBADMSG, "buffer 0 asked twice" },
		{ FAULT_ASK_THEN_FAIL, -EIO, NULL },
	};
	struct faulty f = { .fault = FAULT_NONE };
	struct point p = { 1, 2, 3 };
	struct shmrig_value v = point_value(1, &p), out;
	shmrig_pool *pool = open_pool();
	shmrig_registry *reg = faulty_registry(&f);
	unsigned char garbage[64] __attribute__((aligned(8)));
	void *frame;
	size_t len;

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		for (int temporary = 0; temporary < 2; temporary++) {
			f.fault = FAULT_NONE;
			f.temporary = temporary;
			assert_int_equal(shmrig_registry_encode(reg, pool, &v, &frame, &len), 0);
			assert_int_equal(th_live_blocks(pool), 1);
			f.fault = cases[i].fault;
			assert_int_equal(shmrig_registry_decode(reg, pool, frame, len, &out),
					 cases[i].ret);
			if (cases[i].words)
				assert_non_null(strstr(shmrig_last_error(), cases[i].words));
			assert_null(out.storage);
			assert_int_equal(th_live_blocks(pool), 0);
			free(frame);
		}
	}

	/* a frame that does not parse touches nothing */
	f.fault = FAULT_NONE;
	assert_int_equal(shmrig_registry_encode(reg, pool, &v, &frame, &len), 0);
	assert_int_equal(shmrig_registry_decode(reg, pool, frame, len - 1, &out), -EBADMSG);
	memset(garbage, 0xab, sizeof(garbage));
	assert_int_equal(shmrig_registry_decode(reg, pool, garbage, sizeof(garbage), &out),
			 -EBADMSG);
	assert_int_equal(shmrig_registry_decode(reg, pool, (char *)frame + 1, len - 1, &out),
			 -EINVAL); /* misaligned */
	assert_int_equal(th_live_blocks(pool), 1);
	assert_int_equal(shmrig_registry_decode(reg, pool, frame, len, &out), 0);
	assert_memory_equal(out.user, &p, sizeof(p));
	assert_int_equal(shmrig_value_release(&out), 0);
	free(frame);
	shmrig_registry_free(reg);
	close_pool(pool);
}

/* ---- guards (SHMRIG_REGISTRY_GUARD) ---- */

/* A codec that writes `nbuffers` buffers (even indices persistent, odd ones
 * temporary), exactly their sizes, then scribbles past the content of one. */
struct scribbler {
	bool pack;       /* carve them from a pack, else blocks of their own */
	size_t capacity; /* of the pack; 0: the sum of their shmrig_pack_size() */
	uint32_t nbuffers;
	size_t size[3];
	int bad;                  /* the buffer written past; -1 none */
	size_t past_at, past_len; /* bytes [content_size + past_at, + past_len) */
	unsigned char byte;       /* written there */
};

static unsigned char scribble_byte(uint32_t buffer, size_t i)
{
	return (unsigned char)(buffer * 31 + i);
}

static int scribbler_encode(void *ctx, struct shmrig_encoder *enc, const struct shmrig_value *value)
{
	const struct scribbler *sc = ctx;
	size_t capacity = sc->capacity;
	int ret;

	(void)value;
	for (uint32_t i = 0; !sc->capacity && i < sc->nbuffers; i++)
		capacity += shmrig_pack_size(sc->size[i] ? sc->size[i] : 1);
	if (sc->pack) {
		ret = shmrig_encoder_pack(enc, capacity);
		if (ret)
			return ret;
	}
	for (uint32_t i = 0; i < sc->nbuffers; i++) {
		unsigned char *data;

		ret = shmrig_encoder_buffer(enc, sc->size[i], i % 2 ? SHMRIG_BUF_TEMPORARY : 0,
					    (void **)&data);
		if (ret < 0)
			return ret;
		for (size_t b = 0; b < sc->size[i]; b++)
			data[b] = scribble_byte(i, b);
		if ((int)i == sc->bad)
			memset(data + sc->size[i] + sc->past_at, sc->byte, sc->past_len);
	}
	return shmrig_meta_put_map(enc, 0);
}

static int scribbler_decode(void *ctx, struct shmrig_decoder *dec, struct shmrig_value *out)
{
	const struct scribbler *sc = ctx;

	out->kind = SHMRIG_KIND_USER;
	if (shmrig_decoder_nbuffers(dec) != sc->nbuffers)
		return -EBADMSG;
	for (uint32_t i = 0; i < sc->nbuffers; i++) {
		const unsigned char *data;
		uint64_t len;
		int ret = shmrig_decoder_buffer(dec, i, i % 2 ? SHMRIG_BUF_TEMPORARY : 0,
						(const void **)&data, &len);

		if (ret)
			return ret;
		if (len != sc->size[i])
			return -EBADMSG;
		for (size_t b = 0; b < len; b++)
			if (data[b] != scribble_byte(i, b))
				return -EBADMSG;
	}
	return 0;
}

static shmrig_registry *scribbler_registry(struct scribbler *sc, uint32_t flags)
{
	struct shmrig_codec codec = {
		.size = sizeof(struct shmrig_codec),
		.name = "scribbler",
		.kinds = SHMRIG_KIND_BIT(SHMRIG_KIND_USER),
		.encode = scribbler_encode,
		.decode = scribbler_decode,
		.ctx = sc,
	};
	shmrig_registry *reg = NULL;

	assert_int_equal(shmrig_registry_create(&reg), 0);
	assert_int_equal(shmrig_registry_register(reg, &codec), 0);
	assert_int_equal(shmrig_registry_set_flags(reg, flags), 0);
	return reg;
}

/* Encode; on success check the frame's refs (content_size as asked, the guard
 * inside the ref when guarded), decode it (every byte as written) and release. */
static int scribbler_roundtrip(shmrig_registry *reg, shmrig_pool *pool, const struct scribbler *sc,
			       bool guarded)
{
	struct point p = { 0, 0, 0 };
	struct shmrig_value v = point_value(1, &p), out;
	struct shmrig_frame f;
	void *frame = NULL;
	size_t len;
	int ret = shmrig_registry_encode(reg, pool, &v, &frame, &len);

	if (ret) {
		assert_null(frame);
		return ret;
	}
	assert_int_equal(shmrig_frame_parse(frame, len, &f), 0);
	assert_int_equal(f.nbuffers, sc->nbuffers);
	for (uint32_t i = 0; i < f.nbuffers; i++) {
		assert_int_equal(f.buffers[i].content_size, sc->size[i]);
		assert_int_equal(f.buffers[i].temporary, i % 2);
		assert_int_equal(f.buffers[i].offset % 64, 0);
		if (guarded)
			assert_true(f.buffers[i].size >=
				    f.buffers[i].content_size + SHMRIG_REGISTRY_GUARD_BYTES);
	}
	assert_int_equal(shmrig_registry_decode(reg, pool, frame, len, &out), 0);
	assert_int_equal(shmrig_value_leases(&out), (sc->nbuffers + 1) / 2);
	assert_int_equal(shmrig_value_release(&out), 0);
	free(frame);
	assert_int_equal(th_live_blocks(pool), 0);
	return 0;
}

/* Writes past content_size fail a guarded encode with -EFAULT and its words. */
static void test_guard_overruns(void **state)
{
	static const struct {
		struct scribbler sc;
		const char *words; /* NULL: it passes */
	} cases[] = {
		/* one byte (a NUL terminator) past a buffer of its own */
		{ { .nbuffers = 1, .size = { 100 }, .bad = 0, .past_len = 1 },
		  "codec 'scribbler' wrote past content_size of buffer 0 (1 bytes, first at "
		  "offset +0)" },
		/* the temporary one of two */
		{ { .nbuffers = 2, .size = { 100, 64 }, .bad = 1, .past_len = 1, .byte = 0xff },
		  "of buffer 1 (1 bytes, first at offset +0)" },
		/* an empty buffer, and the guard's last byte */
		{ { .nbuffers = 1, .size = { 0 }, .bad = 0, .past_len = 1, .byte = 'x' },
		  "of buffer 0 (1 bytes, first at offset +0)" },
		{ { .nbuffers = 1, .size = { 4097 }, .bad = 0, .past_at = 63, .past_len = 1 },
		  "of buffer 0 (1 bytes, first at offset +63)" },
		/* in a pack: into the padding before the next buffer, which nothing sees */
		{ { .pack = true, .nbuffers = 2, .size = { 100, 64 }, .bad = 0, .past_len = 1 },
		  "of buffer 0 (1 bytes, first at offset +0)" },
		/* a pack's temporary buffer, five bytes a little past it */
		{ { .pack = true,
		    .nbuffers = 3,
		    .size = { 64, 100, 0 },
		    .bad = 1,
		    .past_at = 5,
		    .past_len = 5,
		    .byte = 0xaa },
		  "of buffer 1 (5 bytes, first at offset +5)" },
		/* a pack's empty last buffer */
		{ { .pack = true, .nbuffers = 3, .size = { 64, 100, 0 }, .bad = 2, .past_len = 2 },
		  "of buffer 2 (2 bytes, first at offset +0)" },
		/* exactly content_size: persistent and temporary, own blocks and a pack */
		{ { .nbuffers = 3, .size = { 100, 64, 0 }, .bad = -1 }, NULL },
		{ { .nbuffers = 2, .size = { 3 * MiB, 1 }, .bad = -1 }, NULL },
		{ { .pack = true, .nbuffers = 3, .size = { 100, 64, 0 }, .bad = -1 }, NULL },
		{ { .pack = true, .nbuffers = 3, .size = { 1, 2 * MiB, 4095 }, .bad = -1 }, NULL },
	};
	shmrig_pool *pool = open_pool();

	(void)state;
	for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
		struct scribbler sc = cases[c].sc;
		shmrig_registry *reg = scribbler_registry(&sc, SHMRIG_REGISTRY_GUARD);
		int ret = scribbler_roundtrip(reg, pool, &sc, true);

		if (!cases[c].words) {
			assert_int_equal(ret, 0);
		} else {
			if (ret != -EFAULT || !strstr(shmrig_last_error(), cases[c].words))
				fail_msg("case %zu: %d '%s', want -EFAULT '%s'", c, ret,
					 shmrig_last_error(), cases[c].words);
		}
		/* a failed encode freed every block it had, the pack's too */
		assert_int_equal(th_live_blocks(pool), 0);
		shmrig_registry_free(reg);
	}

	/* the flag is what sees it: unguarded (set, then cleared), the overrun into
	 * the block's own slack goes through */
	{
		struct scribbler sc = cases[0].sc;
		shmrig_registry *reg = scribbler_registry(&sc, SHMRIG_REGISTRY_GUARD);

		assert_int_equal(shmrig_registry_set_flags(reg, 0), 0);
		assert_int_equal(scribbler_roundtrip(reg, pool, &sc, false), 0);
		shmrig_registry_free(reg);
	}
	close_pool(pool);
}

/* A guarded pack gives the codec the room of the block its capacity gets from
 * a class: the same buffers fit as unguarded, the same one does not. */
static void test_guard_pack_room(void **state)
{
	static const struct {
		size_t capacity, size[2];
		int ret;
		bool guarded_only;
	} cases[] = {
		{ 256, { 100, 128 }, 0, false },         /* 128 + 128: full */
		{ 256, { 100, 200 }, -ENOSPC, false },   /* 128 + 256 */
		{ 300, { 100, 300 }, 0, false },         /* a 512-byte block: 128 + 320 */
		{ 300, { 100, 400 }, -ENOSPC, false },   /* 128 + 448 */
		{ 1, { 0, 0 }, -ENOSPC, false },         /* a 64-byte block holds one buffer */
		{ 3 * MiB, { 2 * MiB, MiB }, 0, false }, /* a large block, to the byte */
		/* unguarded, a large block's slack is room too: a reused segment
		 * (this pool holds one of the guarded 6 MiB) may take MiB + 1 */
		{ 3 * MiB, { 2 * MiB, MiB + 1 }, -ENOSPC, true },
	};
	shmrig_pool *pool = open_pool();

	(void)state;
	for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
		for (int guarded = cases[c].guarded_only; guarded < 2; guarded++) {
			struct scribbler sc = { .pack = true,
						.capacity = cases[c].capacity,
						.nbuffers = 2,
						.size = { cases[c].size[0], cases[c].size[1] },
						.bad = -1 };
			shmrig_registry *reg =
				scribbler_registry(&sc, guarded ? SHMRIG_REGISTRY_GUARD : 0);
			int ret = scribbler_roundtrip(reg, pool, &sc, guarded);

			if (ret != cases[c].ret)
				fail_msg("case %zu, %s: %d (%s), want %d", c,
					 guarded ? "guarded" : "unguarded", ret,
					 shmrig_last_error(), cases[c].ret);
			if (ret)
				assert_non_null(
					strstr(shmrig_last_error(), "does not fit the pack"));
			assert_int_equal(th_live_blocks(pool), 0);
			shmrig_registry_free(reg);
		}
	}
	close_pool(pool);
}

/* The flags: set before the registry freezes, known bits only; the built-in
 * codecs (buffers of their own, packs) write nothing past their content. */
static void test_guard_flags_and_builtins(void **state)
{
	static const enum shmrig_kind kinds[] = { SHMRIG_KIND_BYTES, SHMRIG_KIND_NDARRAY,
						  SHMRIG_KIND_TABLE, SHMRIG_KIND_DATASET };
	shmrig_pool *pool = open_pool();
	shmrig_registry *reg = builtin_registry();
	struct scratch sc = { .n = 0 };
	uint64_t seed = 1313;
	void *big = calloc(1, 3 * MiB);
	struct shmrig_value in = { .kind = SHMRIG_KIND_BYTES, .bytes = { big, 3 * MiB } };
	void *frame;
	size_t len;

	(void)state;
	assert_non_null(big);
	assert_int_equal(shmrig_registry_set_flags(NULL, SHMRIG_REGISTRY_GUARD), -EINVAL);
	assert_int_equal(shmrig_registry_set_flags(reg, SHMRIG_REGISTRY_GUARD << 1), -EINVAL);
	assert_non_null(strstr(shmrig_last_error(), "unknown flags 0x2"));
	assert_int_equal(shmrig_registry_set_flags(reg, ~0u), -EINVAL);
	assert_int_equal(shmrig_registry_set_flags(reg, SHMRIG_REGISTRY_FLAGS_ALL), 0);

	check_roundtrip(reg, pool, &in, "bytes"); /* a large block */
	for (int i = 0; i < 200; i++) {
		rand_value(&seed, &sc, kinds[i % 4], &in);
		assert_int_equal(shmrig_registry_encode(reg, pool, &in, &frame, &len), 0);
		{
			struct shmrig_frame f;

			assert_int_equal(shmrig_frame_parse(frame, len, &f), 0);
			for (uint32_t b = 0; b < f.nbuffers; b++)
				assert_true(f.buffers[b].size >=
					    f.buffers[b].content_size +
						    SHMRIG_REGISTRY_GUARD_BYTES);
		}
		assert_int_equal(shmrig_frame_discard(pool, frame, len), 0);
		free(frame);
		check_roundtrip(reg, pool, &in, shmrig_kind_name(kinds[i % 4]));
		scratch_free(&sc);
	}

	/* frozen by the encodes: the flags stay as they are */
	assert_int_equal(shmrig_registry_set_flags(reg, 0), -EBUSY);
	assert_non_null(strstr(shmrig_last_error(), "frozen"));
	assert_int_equal(shmrig_registry_set_flags(reg, SHMRIG_REGISTRY_GUARD << 1), -EINVAL);
	free(big);
	shmrig_registry_free(reg);
	close_pool(pool);
}

/* ---- threads ---- */

enum {
	THREADS = 4,
	PER_THREAD = 500
};

struct worker {
	shmrig_registry *reg;
	shmrig_pool *pool;
	uint64_t seed;
	int failures;
};

static void *worker_run(void *arg)
{
	struct worker *w = arg;
	struct scratch sc = { .n = 0 };

	for (int i = 0; i < PER_THREAD; i++) {
		enum shmrig_kind kind = i % 2 ? SHMRIG_KIND_NDARRAY : SHMRIG_KIND_BYTES;
		struct shmrig_value in, out;
		void *frame;
		size_t len;

		rand_value(&w->seed, &sc, kind, &in);
		if (shmrig_registry_encode(w->reg, w->pool, &in, &frame, &len)) {
			w->failures++;
		} else {
			if (shmrig_registry_decode(w->reg, w->pool, frame, len, &out)) {
				w->failures++;
			} else {
				w->failures += !same_value(&in, &out);
				w->failures += shmrig_value_release(&out) != 0;
			}
			free(frame);
		}
		scratch_free(&sc);
	}
	return NULL;
}

static void test_threads(void **state)
{
	shmrig_pool *pool = open_pool();
	shmrig_registry *reg = builtin_registry();
	struct worker workers[THREADS];
	pthread_t threads[THREADS];

	(void)state;
	for (int t = 0; t < THREADS; t++) {
		workers[t] = (struct worker){ reg, pool, 1000 + (uint64_t)t, 0 };
		assert_int_equal(pthread_create(&threads[t], NULL, worker_run, &workers[t]), 0);
	}
	for (int t = 0; t < THREADS; t++) {
		assert_int_equal(pthread_join(threads[t], NULL), 0);
		assert_int_equal(workers[t].failures, 0);
	}
	assert_int_equal(th_live_blocks(pool), 0);
	assert_int_equal(shmrig_pool_audit(pool), 0);
	shmrig_registry_free(reg);
	close_pool(pool);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_ndarray_every_dtype),
		cmocka_unit_test(test_ndarray_empty_and_large),
		cmocka_unit_test(test_meta_remembered),
		cmocka_unit_test(test_table),
		cmocka_unit_test(test_dataset),
		cmocka_unit_test(test_bytes),
		cmocka_unit_test(test_bad_values),
		cmocka_unit_test(test_random_values),
		cmocka_unit_test(test_frames_golden),
		cmocka_unit_test(test_lifetimes),
		cmocka_unit_test(test_user_codec),
		cmocka_unit_test(test_dispatch),
		cmocka_unit_test(test_register_errors),
		cmocka_unit_test(test_lookup_and_fingerprint),
		cmocka_unit_test(test_encoder_errors),
		cmocka_unit_test(test_meta_shape),
		cmocka_unit_test(test_decoder_errors),
		cmocka_unit_test(test_guard_overruns),
		cmocka_unit_test(test_guard_pack_room),
		cmocka_unit_test(test_guard_flags_and_builtins),
		cmocka_unit_test(test_threads),
	};

	return cmocka_run_group_tests(tests, th_sweep_leftovers, NULL);
}
