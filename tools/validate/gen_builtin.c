/* SPDX-License-Identifier: MIT */
/*
 * The built-in kinds as the kit feeds them to codecs: for ndarray, table,
 * dataset and bytes, a generator (edge cases first, then random values of a
 * seed), a value of an exact size for Throughput, equality that names the
 * first difference, and the parts of a decoded value (where it points).
 *
 * Edge cases are the values codecs get wrong: 0-d arrays, empty arrays and
 * tables, every dtype, C and F order, 16 dimensions, odd sizes, the largest
 * value allowed (max_bytes), a value just past the pool's largest size class
 * (a block with a segment of its own), a table whose frame is larger than a
 * ring slot, names that are not ASCII. Random values draw a dtype, a size
 * (log-uniform up to max_bytes), a shape and an order. Everything a value
 * points at is malloc'd here and freed by release().
 */
#include "validate.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LARGE_BLOCK ((size_t)1 << 20) /* the pool's largest size class */

/* ---- arrays ---- */

static enum shmrig_dtype random_dtype(struct val_rng *rng)
{
	return (enum shmrig_dtype)(1 + val_below(rng, SHMRIG_DTYPE_COUNT - 1));
}

static void set_array(struct shmrig_array *a, enum shmrig_dtype dtype, char order, uint32_t ndim,
		      const uint64_t *shape)
{
	memset(a, 0, sizeof(*a));
	a->dtype = dtype;
	a->order = order;
	a->ndim = ndim;
	for (uint32_t d = 0; d < ndim; d++)
		a->shape[d] = shape[d];
}

/* A shape of at most n elements: mostly 1-3 dimensions, sometimes 0 or up to 16. */
static void random_shape(struct val_rng *rng, uint64_t n, struct shmrig_array *a)
{
	uint64_t pick = val_below(rng, 16), left = n;
	uint32_t ndim;

	if (pick == 0 && n >= 1)
		ndim = 0; /* a scalar: one element */
	else if (pick == 1)
		ndim = 5 + (uint32_t)val_below(rng, SHMRIG_MAX_DIMS - 4);
	else
		ndim = 1 + (uint32_t)val_below(rng, 3);
	a->ndim = ndim;
	if (n == 0 && ndim) {
		/* empty: one extent 0, the others anything small */
		uint32_t zero = (uint32_t)val_below(rng, ndim);

		for (uint32_t d = 0; d < ndim; d++)
			a->shape[d] = d == zero ? 0 : 1 + val_below(rng, 4);
	} else {
		for (uint32_t d = 0; d < ndim; d++) {
			uint64_t dim = left;

			if (d + 1 < ndim)
				dim = 1 + val_below(rng, left < 16 ? left : 16);
			a->shape[d] = dim;
			left /= dim;
		}
	}
	a->order = val_below(rng, 2) ? 'F' : 'C';
}

/* Allocate and fill the array's data; bool elements are 0 or 1. */
static int fill_array(struct shmrig_array *a, struct val_rng *rng)
{
	uint64_t nbytes;
	int ret = shmrig_array_nbytes(a, &nbytes);

	if (ret)
		return ret;
	if (nbytes > SIZE_MAX)
		return -EOVERFLOW;
	a->data = malloc(nbytes ? (size_t)nbytes : 1);
	if (!a->data)
		return -ENOMEM;
	val_fill(rng, a->data, (size_t)nbytes);
	if (a->dtype == SHMRIG_DTYPE_BOOL)
		for (uint64_t i = 0; i < nbytes; i++)
			((unsigned char *)a->data)[i] &= 1;
	return 0;
}

static int random_array(struct shmrig_array *a, struct val_rng *rng, uint64_t max_bytes)
{
	enum shmrig_dtype dtype = random_dtype(rng);

	memset(a, 0, sizeof(*a));
	a->dtype = dtype;
	random_shape(rng, val_log_size(rng, max_bytes) / shmrig_dtype_size(dtype), a);
	return fill_array(a, rng);
}

/* 1-d of n elements: the widest n of this dtype within `bytes` */
static int flat_array(struct shmrig_array *a, enum shmrig_dtype dtype, uint64_t bytes,
		      struct val_rng *rng)
{
	uint64_t n = bytes / shmrig_dtype_size(dtype);

	set_array(a, dtype, 'C', 1, &n);
	return fill_array(a, rng);
}

static bool array_equal(const struct shmrig_array *e, const struct shmrig_array *g,
			const char *what, char *why, size_t len)
{
	uint64_t e_bytes, g_bytes;

	if (e->dtype != g->dtype) {
		snprintf(why, len, "%s: dtype %s, expected %s", what,
			 shmrig_dtype_name(g->dtype) ? shmrig_dtype_name(g->dtype) : "invalid",
			 shmrig_dtype_name(e->dtype));
		return false;
	}
	if (e->ndim != g->ndim) {
		snprintf(why, len, "%s: %u dimensions, expected %u", what, g->ndim, e->ndim);
		return false;
	}
	for (uint32_t d = 0; d < e->ndim; d++)
		if (e->shape[d] != g->shape[d]) {
			snprintf(why, len, "%s: shape[%u] is %llu, expected %llu", what, d,
				 (unsigned long long)g->shape[d], (unsigned long long)e->shape[d]);
			return false;
		}
	/* the order of a 0-d or 1-d array changes nothing about its bytes */
	if (e->ndim >= 2 && e->order != g->order) {
		snprintf(why, len, "%s: order '%c', expected '%c'", what, g->order, e->order);
		return false;
	}
	if (shmrig_array_nbytes(e, &e_bytes) || shmrig_array_nbytes(g, &g_bytes) ||
	    e_bytes != g_bytes) {
		snprintf(why, len, "%s: its size does not compute", what);
		return false;
	}
	if (e_bytes && !g->data) {
		snprintf(why, len, "%s: %llu bytes but no data", what, (unsigned long long)e_bytes);
		return false;
	}
	if (e_bytes && memcmp(e->data, g->data, (size_t)e_bytes)) {
		const unsigned char *a = e->data, *b = g->data;
		uint64_t i = 0;

		while (a[i] == b[i])
			i++;
		snprintf(why, len, "%s: byte %llu of %llu is 0x%02x, expected 0x%02x", what,
			 (unsigned long long)i, (unsigned long long)e_bytes, b[i], a[i]);
		return false;
	}
	return true;
}

static bool name_equal(const char *e, const char *g, const char *what, char *why, size_t len)
{
	if (g && strcmp(e, g) == 0)
		return true;
	snprintf(why, len, "%s: name \"%.40s\", expected \"%.40s\"", what, g ? g : "(null)", e);
	return false;
}

static bool kind_equal(const struct shmrig_value *e, const struct shmrig_value *g, char *why,
		       size_t len)
{
	if (e->kind == g->kind)
		return true;
	snprintf(why, len, "decoded a %s value, expected %s",
		 shmrig_kind_name(g->kind) ? shmrig_kind_name(g->kind) : "invalid",
		 shmrig_kind_name(e->kind));
	return false;
}

/* ---- named arrays (table columns, dataset variables) ---- */

static void free_named(struct shmrig_named_array *arrays, uint32_t n)
{
	for (uint32_t i = 0; arrays && i < n; i++) {
		free((void *)arrays[i].name);
		free(arrays[i].array.data);
	}
	free(arrays);
}

static int set_name(struct shmrig_named_array *a, const char *fmt, uint32_t i)
{
	char name[64];

	snprintf(name, sizeof(name), fmt, i);
	a->name = strdup(name);
	return a->name ? 0 : -ENOMEM;
}

static const char *const odd_names[] = { "température", "名前", "", "a b", "x\"q\\" };

static bool named_equal(const struct shmrig_named_array *e, const struct shmrig_named_array *g,
			uint32_t n, const char *what, char *why, size_t len)
{
	for (uint32_t i = 0; i < n; i++) {
		char where[64];

		snprintf(where, sizeof(where), "%s %u", what, i);
		if (!name_equal(e[i].name, g[i].name, where, why, len) ||
		    !array_equal(&e[i].array, &g[i].array, where, why, len))
			return false;
	}
	return true;
}

/* ---- ndarray ---- */

enum {
	NDARRAY_DTYPE_EDGES = 8,
	NDARRAY_EDGES = NDARRAY_DTYPE_EDGES + 11 + 3
};

static int ndarray_edge(uint32_t index, size_t max_bytes, struct shmrig_array *a,
			struct val_rng *rng)
{
	static const uint64_t odd[] = { 3, 5, 7 }, tall[] = { 17, 3 }, empty2[] = { 3, 0 };
	static const uint64_t one[] = { 1 }, zero[] = { 0 }, small[] = { 5, 3 };
	uint64_t sixteen[SHMRIG_MAX_DIMS];

	switch (index) {
	case 0:
		set_array(a, SHMRIG_DTYPE_FLOAT64, 'C', 0, NULL);
		break;
	case 1:
		set_array(a, SHMRIG_DTYPE_BOOL, 'C', 0, NULL);
		break;
	case 2:
		set_array(a, SHMRIG_DTYPE_INT32, 'C', 1, zero);
		break;
	case 3:
		set_array(a, SHMRIG_DTYPE_FLOAT32, 'F', 2, empty2);
		break;
	case 4:
		set_array(a, SHMRIG_DTYPE_UINT8, 'C', 1, one);
		break;
	case 5:
		set_array(a, SHMRIG_DTYPE_INT16, 'C', 3, odd);
		break;
	case 6:
		set_array(a, SHMRIG_DTYPE_FLOAT32, 'F', 2, tall);
		break;
	case 7: /* the most dimensions there are */
		for (uint32_t d = 0; d < SHMRIG_MAX_DIMS; d++)
			sixteen[d] = d % 5 == 0 ? 2 : 1;
		set_array(a, SHMRIG_DTYPE_UINT64, 'F', SHMRIG_MAX_DIMS, sixteen);
		break;
	default:
		if (index < NDARRAY_DTYPE_EDGES + 11) { /* every dtype, C and F in turn */
			uint32_t k = index - NDARRAY_DTYPE_EDGES;

			set_array(a, (enum shmrig_dtype)(1 + k), k % 2 ? 'F' : 'C', 2, small);
			break;
		}
		switch (index - NDARRAY_DTYPE_EDGES - 11) {
		case 0: /* the largest value allowed */
			return flat_array(a, SHMRIG_DTYPE_INT8, max_bytes, rng);
		case 1: /* an odd size */
			return flat_array(a, SHMRIG_DTYPE_UINT8, max_bytes - 1, rng);
		default: /* just past the largest class: a block of its own */
			return flat_array(a, SHMRIG_DTYPE_FLOAT64,
					  max_bytes > LARGE_BLOCK + 64 ? LARGE_BLOCK + 64 :
									 max_bytes,
					  rng);
		}
	}
	return fill_array(a, rng);
}

static int ndarray_generate(void *ctx, uint64_t seed, uint32_t index, size_t max_bytes,
			    uint32_t tag, struct shmrig_value *out)
{
	struct val_rng rng;

	(void)ctx;
	(void)tag;
	val_rng_init(&rng, seed, index);
	memset(out, 0, sizeof(*out));
	out->kind = SHMRIG_KIND_NDARRAY;
	if (index < NDARRAY_EDGES)
		return ndarray_edge(index, max_bytes, &out->array, &rng);
	return random_array(&out->array, &rng, max_bytes);
}

static int ndarray_sized(void *ctx, size_t bytes, uint32_t tag, struct shmrig_value *out)
{
	struct val_rng rng;

	(void)ctx;
	(void)tag;
	val_rng_init(&rng, 1, bytes);
	memset(out, 0, sizeof(*out));
	out->kind = SHMRIG_KIND_NDARRAY;
	return flat_array(&out->array, SHMRIG_DTYPE_FLOAT64, bytes, &rng);
}

static void ndarray_release(void *ctx, struct shmrig_value *value)
{
	(void)ctx;
	free(value->array.data);
	memset(value, 0, sizeof(*value));
}

static bool ndarray_equal(void *ctx, const struct shmrig_value *e, const struct shmrig_value *g,
			  char *why, size_t len)
{
	(void)ctx;
	return kind_equal(e, g, why, len) && array_equal(&e->array, &g->array, "array", why, len);
}

static void array_part(const struct shmrig_array *a,
		       void (*fn)(void *arg, const void *data, uint64_t len, bool view), void *arg)
{
	uint64_t nbytes;

	if (!shmrig_array_nbytes(a, &nbytes))
		fn(arg, a->data, nbytes, true);
}

static void ndarray_parts(void *ctx, const struct shmrig_value *v,
			  void (*fn)(void *arg, const void *data, uint64_t len, bool view),
			  void *arg)
{
	(void)ctx;
	array_part(&v->array, fn, arg);
}

const struct val_kind val_kind_ndarray = {
	.name = "ndarray",
	.kind = SHMRIG_KIND_NDARRAY,
	.edge_cases = NDARRAY_EDGES,
	.generate = ndarray_generate,
	.sized = ndarray_sized,
	.release = ndarray_release,
	.equal = ndarray_equal,
	.parts = ndarray_parts,
};

/* ---- table ---- */

enum {
	TABLE_EDGES = 7
};

static int table_columns(struct shmrig_table *t, uint32_t ncolumns, uint64_t nrows)
{
	t->nrows = nrows;
	t->ncolumns = ncolumns;
	t->columns = calloc(ncolumns ? ncolumns : 1, sizeof(*t->columns));
	return t->columns ? 0 : -ENOMEM;
}

static int table_column(struct shmrig_table *t, uint32_t i, enum shmrig_dtype dtype,
			const char *name, struct val_rng *rng)
{
	struct shmrig_named_array *col = &t->columns[i];
	int ret = name ? ((col->name = strdup(name)) ? 0 : -ENOMEM) : set_name(col, "col%u", i);

	if (ret)
		return ret;
	set_array(&col->array, dtype, 'C', 1, &t->nrows);
	return fill_array(&col->array, rng);
}

static int table_edge(uint32_t index, size_t max_bytes, struct shmrig_table *t, struct val_rng *rng)
{
	static const uint32_t ncolumns[TABLE_EDGES] = { 0, 1, 1, 11, 40, 5, 2 };
	static const uint64_t nrows[TABLE_EDGES] = { 0, 0, 1, 7, 3, 2, 0 };
	uint64_t rows = index == 6 ? max_bytes / 9 : nrows[index];
	int ret = table_columns(t, ncolumns[index], rows);

	for (uint32_t i = 0; !ret && i < t->ncolumns; i++) {
		enum shmrig_dtype dtype = SHMRIG_DTYPE_FLOAT64;
		const char *name = NULL;

		if (index == 1)
			dtype = SHMRIG_DTYPE_INT32;
		else if (index == 2)
			dtype = SHMRIG_DTYPE_BOOL;
		else if (index == 3) /* one column of every dtype */
			dtype = (enum shmrig_dtype)(1 + i);
		else if (index == 5) { /* names that are not plain ASCII words */
			dtype = SHMRIG_DTYPE_UINT16;
			name = odd_names[i];
		} else if (index == 6 && i == 1)
			dtype = SHMRIG_DTYPE_INT8;
		ret = table_column(t, i, dtype, name, rng);
	}
	return ret;
}

static int table_generate(void *ctx, uint64_t seed, uint32_t index, size_t max_bytes, uint32_t tag,
			  struct shmrig_value *out)
{
	enum shmrig_dtype dtypes[8];
	struct val_rng rng;
	uint64_t row_bytes = 0;
	uint32_t ncolumns;
	int ret;

	(void)ctx;
	(void)tag;
	val_rng_init(&rng, seed, index);
	memset(out, 0, sizeof(*out));
	out->kind = SHMRIG_KIND_TABLE;
	if (index < TABLE_EDGES)
		return table_edge(index, max_bytes, &out->table, &rng);
	ncolumns = 1 + (uint32_t)val_below(&rng, 8);
	for (uint32_t i = 0; i < ncolumns; i++) {
		dtypes[i] = random_dtype(&rng);
		row_bytes += shmrig_dtype_size(dtypes[i]);
	}
	ret = table_columns(&out->table, ncolumns, val_log_size(&rng, max_bytes) / row_bytes);
	for (uint32_t i = 0; !ret && i < ncolumns; i++)
		ret = table_column(&out->table, i, dtypes[i],
				   val_below(&rng, 8) ? NULL : odd_names[i % 5], &rng);
	return ret;
}

static int table_sized(void *ctx, size_t bytes, uint32_t tag, struct shmrig_value *out)
{
	struct val_rng rng;
	int ret;

	(void)ctx;
	(void)tag;
	val_rng_init(&rng, 1, bytes);
	memset(out, 0, sizeof(*out));
	out->kind = SHMRIG_KIND_TABLE;
	ret = table_columns(&out->table, 4, bytes / 32);
	for (uint32_t i = 0; !ret && i < 4; i++)
		ret = table_column(&out->table, i, SHMRIG_DTYPE_FLOAT64, NULL, &rng);
	return ret;
}

static void table_release(void *ctx, struct shmrig_value *value)
{
	(void)ctx;
	free_named(value->table.columns, value->table.ncolumns);
	memset(value, 0, sizeof(*value));
}

static bool table_equal(void *ctx, const struct shmrig_value *e, const struct shmrig_value *g,
			char *why, size_t len)
{
	(void)ctx;
	if (!kind_equal(e, g, why, len))
		return false;
	if (e->table.nrows != g->table.nrows || e->table.ncolumns != g->table.ncolumns) {
		snprintf(why, len, "table: %llu rows and %u columns, expected %llu and %u",
			 (unsigned long long)g->table.nrows, g->table.ncolumns,
			 (unsigned long long)e->table.nrows, e->table.ncolumns);
		return false;
	}
	return named_equal(e->table.columns, g->table.columns, e->table.ncolumns, "column", why,
			   len);
}

static void table_parts(void *ctx, const struct shmrig_value *v,
			void (*fn)(void *arg, const void *data, uint64_t len, bool view), void *arg)
{
	(void)ctx;
	for (uint32_t i = 0; i < v->table.ncolumns; i++)
		array_part(&v->table.columns[i].array, fn, arg);
}

const struct val_kind val_kind_table = {
	.name = "table",
	.kind = SHMRIG_KIND_TABLE,
	.edge_cases = TABLE_EDGES,
	.generate = table_generate,
	.sized = table_sized,
	.release = table_release,
	.equal = table_equal,
	.parts = table_parts,
};

/* ---- dataset ---- */

enum {
	DATASET_EDGES = 6
};

static int dataset_groups(struct shmrig_dataset *ds, uint32_t ngroups)
{
	ds->ngroups = ngroups;
	ds->groups = calloc(ngroups ? ngroups : 1, sizeof(*ds->groups));
	return ds->groups ? 0 : -ENOMEM;
}

static int dataset_group(struct shmrig_group *g, uint32_t index, uint32_t nvariables)
{
	char name[32];

	snprintf(name, sizeof(name), index % 4 == 3 ? "température%u" : "g%u", index);
	g->name = strdup(name);
	g->nvariables = nvariables;
	g->variables = calloc(nvariables ? nvariables : 1, sizeof(*g->variables));
	return g->name && g->variables ? 0 : -ENOMEM;
}

static int dataset_edge(uint32_t index, size_t max_bytes, struct shmrig_dataset *ds,
			struct val_rng *rng)
{
	static const uint64_t cube[] = { 4, 3, 2 }, empty[] = { 0, 5 }, nine[] = { 9 };
	int ret;

	switch (index) {
	case 0: /* no group */
		return dataset_groups(ds, 0);
	case 1: /* a group without variables */
		ret = dataset_groups(ds, 1);
		return ret ? ret : dataset_group(&ds->groups[0], 0, 0);
	case 2: /* a 0-d variable */
		ret = dataset_groups(ds, 1);
		if (!ret)
			ret = dataset_group(&ds->groups[0], 0, 1);
		if (!ret)
			ret = set_name(&ds->groups[0].variables[0], "scalar%u", 0);
		if (!ret) {
			set_array(&ds->groups[0].variables[0].array, SHMRIG_DTYPE_FLOAT64, 'C', 0,
				  NULL);
			ret = fill_array(&ds->groups[0].variables[0].array, rng);
		}
		return ret;
	case 3: /* F order 3-d, empty, bool, over two groups */
		ret = dataset_groups(ds, 2);
		if (!ret)
			ret = dataset_group(&ds->groups[0], 0, 2);
		if (!ret)
			ret = dataset_group(&ds->groups[1], 1, 1);
		for (uint32_t v = 0; !ret && v < 3; v++) {
			struct shmrig_named_array *var = v < 2 ? &ds->groups[0].variables[v] :
								 &ds->groups[1].variables[0];

			ret = set_name(var, "v%u", v);
			if (v == 0)
				set_array(&var->array, SHMRIG_DTYPE_INT32, 'F', 3, cube);
			else if (v == 1)
				set_array(&var->array, SHMRIG_DTYPE_FLOAT32, 'C', 2, empty);
			else
				set_array(&var->array, SHMRIG_DTYPE_BOOL, 'C', 1, nine);
			if (!ret)
				ret = fill_array(&var->array, rng);
		}
		return ret;
	case 4: /* many small variables */
		ret = dataset_groups(ds, 4);
		for (uint32_t g = 0; !ret && g < 4; g++) {
			ret = dataset_group(&ds->groups[g], g, 5);
			for (uint32_t v = 0; !ret && v < 5; v++) {
				ret = set_name(&ds->groups[g].variables[v], "var%u", v);
				if (!ret)
					ret = random_array(&ds->groups[g].variables[v].array, rng,
							   256);
			}
		}
		return ret;
	default: /* one variable of the largest size allowed */
		ret = dataset_groups(ds, 1);
		if (!ret)
			ret = dataset_group(&ds->groups[0], 0, 1);
		if (!ret)
			ret = set_name(&ds->groups[0].variables[0], "big%u", 0);
		return ret ? ret :
			     flat_array(&ds->groups[0].variables[0].array, SHMRIG_DTYPE_UINT8,
					max_bytes, rng);
	}
}

static int dataset_generate(void *ctx, uint64_t seed, uint32_t index, size_t max_bytes,
			    uint32_t tag, struct shmrig_value *out)
{
	uint32_t ngroups, nvariables[3], total = 0;
	struct val_rng rng;
	uint64_t share;
	int ret;

	(void)ctx;
	(void)tag;
	val_rng_init(&rng, seed, index);
	memset(out, 0, sizeof(*out));
	out->kind = SHMRIG_KIND_DATASET;
	if (index < DATASET_EDGES)
		return dataset_edge(index, max_bytes, &out->dataset, &rng);
	ngroups = 1 + (uint32_t)val_below(&rng, 3);
	for (uint32_t g = 0; g < ngroups; g++)
		total += nvariables[g] = (uint32_t)val_below(&rng, 4);
	share = max_bytes / (total ? total : 1);
	ret = dataset_groups(&out->dataset, ngroups);
	for (uint32_t g = 0; !ret && g < ngroups; g++) {
		struct shmrig_group *group = &out->dataset.groups[g];

		ret = dataset_group(group, g, nvariables[g]);
		for (uint32_t v = 0; !ret && v < nvariables[g]; v++) {
			ret = set_name(&group->variables[v], "var%u", v);
			if (!ret)
				ret = random_array(&group->variables[v].array, &rng, share);
		}
	}
	return ret;
}

static int dataset_sized(void *ctx, size_t bytes, uint32_t tag, struct shmrig_value *out)
{
	uint64_t elements = bytes / 4 / 8, shape[2];
	struct val_rng rng;
	int ret;

	(void)ctx;
	(void)tag;
	val_rng_init(&rng, 1, bytes);
	memset(out, 0, sizeof(*out));
	out->kind = SHMRIG_KIND_DATASET;
	shape[1] = elements >= 16 ? 16 : 1;
	shape[0] = elements / shape[1];
	ret = dataset_groups(&out->dataset, 2);
	for (uint32_t g = 0; !ret && g < 2; g++) {
		ret = dataset_group(&out->dataset.groups[g], g, 2);
		for (uint32_t v = 0; !ret && v < 2; v++) {
			struct shmrig_named_array *var = &out->dataset.groups[g].variables[v];

			ret = set_name(var, "var%u", v);
			set_array(&var->array, SHMRIG_DTYPE_FLOAT64, 'C', 2, shape);
			if (!ret)
				ret = fill_array(&var->array, &rng);
		}
	}
	return ret;
}

static void dataset_release(void *ctx, struct shmrig_value *value)
{
	(void)ctx;
	for (uint32_t g = 0; value->dataset.groups && g < value->dataset.ngroups; g++) {
		free((void *)value->dataset.groups[g].name);
		free_named(value->dataset.groups[g].variables, value->dataset.groups[g].nvariables);
	}
	free(value->dataset.groups);
	memset(value, 0, sizeof(*value));
}

static bool dataset_equal(void *ctx, const struct shmrig_value *e, const struct shmrig_value *g,
			  char *why, size_t len)
{
	(void)ctx;
	if (!kind_equal(e, g, why, len))
		return false;
	if (e->dataset.ngroups != g->dataset.ngroups) {
		snprintf(why, len, "dataset: %u groups, expected %u", g->dataset.ngroups,
			 e->dataset.ngroups);
		return false;
	}
	for (uint32_t i = 0; i < e->dataset.ngroups; i++) {
		const struct shmrig_group *eg = &e->dataset.groups[i], *gg = &g->dataset.groups[i];
		char where[48];

		snprintf(where, sizeof(where), "group %u", i);
		if (!name_equal(eg->name, gg->name, where, why, len))
			return false;
		if (eg->nvariables != gg->nvariables) {
			snprintf(why, len, "group %u: %u variables, expected %u", i, gg->nvariables,
				 eg->nvariables);
			return false;
		}
		snprintf(where, sizeof(where), "group %u variable", i);
		if (!named_equal(eg->variables, gg->variables, eg->nvariables, where, why, len))
			return false;
	}
	return true;
}

static void dataset_parts(void *ctx, const struct shmrig_value *v,
			  void (*fn)(void *arg, const void *data, uint64_t len, bool view),
			  void *arg)
{
	(void)ctx;
	for (uint32_t g = 0; g < v->dataset.ngroups; g++)
		for (uint32_t i = 0; i < v->dataset.groups[g].nvariables; i++)
			array_part(&v->dataset.groups[g].variables[i].array, fn, arg);
}

const struct val_kind val_kind_dataset = {
	.name = "dataset",
	.kind = SHMRIG_KIND_DATASET,
	.edge_cases = DATASET_EDGES,
	.generate = dataset_generate,
	.sized = dataset_sized,
	.release = dataset_release,
	.equal = dataset_equal,
	.parts = dataset_parts,
};

/* ---- bytes ---- */

enum {
	BYTES_EDGES = 9
};

static int bytes_make(struct shmrig_value *out, uint64_t len, struct val_rng *rng)
{
	void *data = malloc(len ? (size_t)len : 1);

	if (!data)
		return -ENOMEM;
	val_fill(rng, data, (size_t)len);
	out->bytes.data = data;
	out->bytes.len = len;
	return 0;
}

static int bytes_generate(void *ctx, uint64_t seed, uint32_t index, size_t max_bytes, uint32_t tag,
			  struct shmrig_value *out)
{
	/* empty, one byte, around a cache line and a page, past the largest class, the largest */
	const uint64_t edges[BYTES_EDGES] = { 0,        1, 63, 64, 65, 4095, 4097, LARGE_BLOCK + 1,
					      max_bytes };
	struct val_rng rng;
	uint64_t len;

	(void)ctx;
	(void)tag;
	val_rng_init(&rng, seed, index);
	memset(out, 0, sizeof(*out));
	out->kind = SHMRIG_KIND_BYTES;
	len = index < BYTES_EDGES ? edges[index] : val_log_size(&rng, max_bytes);
	return bytes_make(out, len < max_bytes ? len : max_bytes, &rng);
}

static int bytes_sized(void *ctx, size_t bytes, uint32_t tag, struct shmrig_value *out)
{
	struct val_rng rng;

	(void)ctx;
	(void)tag;
	val_rng_init(&rng, 1, bytes);
	memset(out, 0, sizeof(*out));
	out->kind = SHMRIG_KIND_BYTES;
	return bytes_make(out, bytes, &rng);
}

static void bytes_release(void *ctx, struct shmrig_value *value)
{
	(void)ctx;
	free((void *)value->bytes.data);
	memset(value, 0, sizeof(*value));
}

static bool bytes_equal(void *ctx, const struct shmrig_value *e, const struct shmrig_value *g,
			char *why, size_t len)
{
	(void)ctx;
	if (!kind_equal(e, g, why, len))
		return false;
	if (e->bytes.len != g->bytes.len) {
		snprintf(why, len, "bytes: %llu bytes, expected %llu",
			 (unsigned long long)g->bytes.len, (unsigned long long)e->bytes.len);
		return false;
	}
	if (e->bytes.len &&
	    (!g->bytes.data || memcmp(e->bytes.data, g->bytes.data, (size_t)e->bytes.len))) {
		const unsigned char *a = e->bytes.data, *b = g->bytes.data;
		uint64_t i = 0;

		if (!b) {
			snprintf(why, len, "bytes: no data");
			return false;
		}
		while (a[i] == b[i])
			i++;
		snprintf(why, len, "bytes: byte %llu of %llu is 0x%02x, expected 0x%02x",
			 (unsigned long long)i, (unsigned long long)e->bytes.len, b[i], a[i]);
		return false;
	}
	return true;
}

static void bytes_parts(void *ctx, const struct shmrig_value *v,
			void (*fn)(void *arg, const void *data, uint64_t len, bool view), void *arg)
{
	(void)ctx;
	fn(arg, v->bytes.data, v->bytes.len, false); /* a temporary buffer: copied out */
}

const struct val_kind val_kind_bytes = {
	.name = "bytes",
	.kind = SHMRIG_KIND_BYTES,
	.edge_cases = BYTES_EDGES,
	.generate = bytes_generate,
	.sized = bytes_sized,
	.release = bytes_release,
	.equal = bytes_equal,
	.parts = bytes_parts,
};
