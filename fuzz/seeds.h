/* SPDX-License-Identifier: MIT */
#ifndef SHMRIG_FUZZ_SEEDS_H
#define SHMRIG_FUZZ_SEEDS_H
/*
 * The values the fuzz targets' seed corpora are made of: one of each built-in
 * kind (ndarray, table, dataset, bytes with `text`), each handed to `write`
 * with its file name. Each target writes them in its own form (a frame, a
 * flat frame) when run with SHMRIG_FUZZ_WRITE_SEEDS=DIR.
 */
#include <shmrig/value.h>

#include <stdint.h>
#include <string.h>

typedef void (*fuzz_seed_fn)(const char *dir, const char *name, const struct shmrig_value *value);

static inline void fuzz_seed_values(const char *dir, const char *text, fuzz_seed_fn write_seed)
{
	static const double matrix[2][3] = { { 1, 2, 3 }, { 4, 5, 6 } };
	static const int64_t ids[4] = { 10, 20, 30, 40 };
	static const float weights[4] = { 0.5f, 1.5f, 2.5f, 3.5f };
	static const uint8_t flags[3] = { 1, 0, 1 };
	struct shmrig_named_array columns[2] = {
		{ "id",
		  { .dtype = SHMRIG_DTYPE_INT64,
		    .ndim = 1,
		    .shape = { 4 },
		    .order = 'C',
		    .data = (void *)ids } },
		{ "weight",
		  { .dtype = SHMRIG_DTYPE_FLOAT32,
		    .ndim = 1,
		    .shape = { 4 },
		    .order = 'C',
		    .data = (void *)weights } },
	};
	struct shmrig_named_array variables[2] = {
		{ "m",
		  { .dtype = SHMRIG_DTYPE_FLOAT64,
		    .ndim = 2,
		    .shape = { 2, 3 },
		    .order = 'F',
		    .data = (void *)matrix } },
		{ "flags",
		  { .dtype = SHMRIG_DTYPE_BOOL,
		    .ndim = 1,
		    .shape = { 3 },
		    .order = 'C',
		    .data = (void *)flags } },
	};
	struct shmrig_group group = { .name = "g", .nvariables = 2, .variables = variables };
	struct shmrig_value v;

	memset(&v, 0, sizeof(v));
	v.kind = SHMRIG_KIND_NDARRAY;
	v.array = variables[0].array;
	v.array.order = 'C';
	write_seed(dir, "ndarray", &v);

	memset(&v, 0, sizeof(v));
	v.kind = SHMRIG_KIND_TABLE;
	v.table.nrows = 4;
	v.table.ncolumns = 2;
	v.table.columns = columns;
	write_seed(dir, "table", &v);

	memset(&v, 0, sizeof(v));
	v.kind = SHMRIG_KIND_DATASET;
	v.dataset.ngroups = 1;
	v.dataset.groups = &group;
	write_seed(dir, "dataset", &v);

	memset(&v, 0, sizeof(v));
	v.kind = SHMRIG_KIND_BYTES;
	v.bytes.data = text;
	v.bytes.len = strlen(text);
	write_seed(dir, "bytes", &v);
}

#endif
