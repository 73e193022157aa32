/* SPDX-License-Identifier: MIT */
/*
 * The built-in codecs, the seed's set in C:
 *   ndarray  one persistent buffer; meta {dtype, shape, order}; decode is a view
 *   table    every column in one pack; meta {rows, columns: [{name, dtype, buffer}]}
 *   dataset  every variable in one pack;
 *            meta {groups: [{name, variables: [{name, buffer, array: {...}}]}]}
 *   bytes    the fallback: one temporary buffer; meta {len}; decode copies out
 * Arrays of objects, not maps, keep the order of columns and variables.
 */
#include "base/internal.h"
#include "codec/builtins.h"
#include "os/prim.h"

#include <shmrig/registry.h>

#include <errno.h>
#include <string.h>

/* ---- shared pieces ---- */

/* nbytes of an array the caller gave us, with its data pointer checked. */
static int input_nbytes(const struct shmrig_array *array, uint64_t *nbytes)
{
	int ret = shmrig_array_nbytes(array, nbytes);

	if (ret)
		return ret;
	if (*nbytes && !array->data)
		return shmrig__fail(-EINVAL, "array: %llu bytes but no data",
				    (unsigned long long)*nbytes);
	if (*nbytes > SIZE_MAX)
		return shmrig__fail(-EOVERFLOW, "array: too large for this machine");
	return 0;
}

/* Copy an array's bytes into a new buffer of the encode; returns the buffer index. */
static int put_array(struct shmrig_encoder *enc, const struct shmrig_array *array, uint64_t nbytes)
{
	void *data;
	int index = shmrig_encoder_buffer(enc, (size_t)nbytes, 0, &data);

	if (index >= 0 && nbytes)
		shmrig__copy_shared(data, array->data, (size_t)nbytes);
	return index;
}

/* View buffer `index` as the data of `array` (whose description came from meta). */
static int get_array(struct shmrig_decoder *dec, uint64_t index, struct shmrig_array *array)
{
	uint64_t nbytes, len;
	const void *data;
	int ret;

	if (index > UINT32_MAX)
		return shmrig__fail(-EBADMSG, "metadata: buffer index out of range");
	ret = shmrig_array_nbytes(array, &nbytes);
	if (ret)
		return shmrig__fail(-EBADMSG, "metadata: bad array description");
	ret = shmrig_decoder_buffer(dec, (uint32_t)index, 0, &data, &len);
	if (ret)
		return ret;
	if (len != nbytes)
		return shmrig__fail(-EBADMSG, "buffer %llu holds %llu bytes, its array needs %llu",
				    (unsigned long long)index, (unsigned long long)len,
				    (unsigned long long)nbytes);
	array->data = (void *)data; /* a view: the value leases the block */
	return 0;
}

/* get_array of the buffer a metadata node names. */
static int get_array_at(struct shmrig_decoder *dec, const shmrig_meta *index,
			struct shmrig_array *array)
{
	uint64_t i;

	if (shmrig_meta_uint(index, &i))
		return shmrig__fail(-EBADMSG, "metadata: buffer index missing or not a size");
	return get_array(dec, i, array);
}

/* A key and its string value. */
static int put_str_pair(struct shmrig_encoder *enc, const char *key, const char *value)
{
	int ret = shmrig_meta_put_str(enc, key);

	return ret ? ret : shmrig_meta_put_str(enc, value);
}

/* A key and its uint value. */
static int put_uint_pair(struct shmrig_encoder *enc, const char *key, uint64_t value)
{
	int ret = shmrig_meta_put_str(enc, key);

	return ret ? ret : shmrig_meta_put_uint(enc, value);
}

/* Sum of the pack sizes of named arrays, for one pack holding them all. */
static int pack_total(const struct shmrig_named_array *arrays, uint32_t n, size_t *total)
{
	for (uint32_t i = 0; i < n; i++) {
		uint64_t nbytes;
		int ret;

		if (!arrays[i].name)
			return shmrig__fail(-EINVAL, "array %u has no name", i);
		ret = input_nbytes(&arrays[i].array, &nbytes);
		if (ret)
			return ret;
		if (__builtin_add_overflow(*total, shmrig_pack_size(nbytes ? nbytes : 1), total))
			return shmrig__fail(-EOVERFLOW, "arrays too large to pack");
	}
	return 0;
}

/* ---- ndarray ---- */

static int ndarray_encode(void *ctx, struct shmrig_encoder *enc, const struct shmrig_value *value)
{
	uint64_t nbytes;
	int ret;

	(void)ctx;
	ret = input_nbytes(&value->array, &nbytes);
	if (ret)
		return ret;
	ret = put_array(enc, &value->array, nbytes);
	if (ret < 0)
		return ret;
	return shmrig_meta_put_array(enc, &value->array);
}

static int ndarray_decode(void *ctx, struct shmrig_decoder *dec, struct shmrig_value *out)
{
	int ret;

	(void)ctx;
	out->kind = SHMRIG_KIND_NDARRAY;
	ret = shmrig_meta_read_array(shmrig_decoder_meta(dec), &out->array);
	if (ret)
		return ret;
	return get_array(dec, 0, &out->array);
}

/* ---- table ---- */

static int table_check(const struct shmrig_table *t)
{
	if (t->ncolumns && !t->columns)
		return shmrig__fail(-EINVAL, "table: %u columns but no column array", t->ncolumns);
	for (uint32_t i = 0; i < t->ncolumns; i++) {
		const struct shmrig_array *a = &t->columns[i].array;

		if (a->ndim != 1 || a->shape[0] != t->nrows)
			return shmrig__fail(-EINVAL, "table: column %u is not 1-d of %llu rows", i,
					    (unsigned long long)t->nrows);
	}
	return 0;
}

static int table_encode(void *ctx, struct shmrig_encoder *enc, const struct shmrig_value *value)
{
	const struct shmrig_table *t = &value->table;
	size_t total = 0;
	int ret = table_check(t);

	(void)ctx;
	if (!ret)
		ret = pack_total(t->columns, t->ncolumns, &total);
	if (!ret && total)
		ret = shmrig_encoder_pack(enc, total);
	if (!ret)
		ret = shmrig_meta_put_map(enc, 2);
	if (!ret)
		ret = put_uint_pair(enc, "rows", t->nrows);
	if (!ret)
		ret = shmrig_meta_put_str(enc, "columns");
	if (!ret)
		ret = shmrig_meta_put_list(enc, t->ncolumns);
	for (uint32_t i = 0; i < t->ncolumns && !ret; i++) {
		const struct shmrig_named_array *col = &t->columns[i];
		uint64_t nbytes;
		int index;

		ret = shmrig_array_nbytes(&col->array, &nbytes); /* pack_total checked it */
		if (ret)
			return ret;
		index = put_array(enc, &col->array, nbytes);
		if (index < 0)
			return index;
		ret = shmrig_meta_put_map(enc, 3);
		if (!ret)
			ret = put_str_pair(enc, "name", col->name);
		if (!ret)
			ret = put_str_pair(enc, "dtype", shmrig_dtype_name(col->array.dtype));
		if (!ret)
			ret = put_uint_pair(enc, "buffer", (uint32_t)index);
	}
	return ret;
}

static int table_decode(void *ctx, struct shmrig_decoder *dec, struct shmrig_value *out)
{
	const shmrig_meta *meta = shmrig_decoder_meta(dec);
	const shmrig_meta *columns = shmrig_meta_get(meta, "columns");
	struct shmrig_table *t = &out->table;
	uint32_t ncolumns = shmrig_meta_count(columns);

	(void)ctx;
	out->kind = SHMRIG_KIND_TABLE;
	if (shmrig_meta_uint(shmrig_meta_get(meta, "rows"), &t->nrows) ||
	    shmrig_meta_type(columns) != SHMRIG_META_LIST)
		return shmrig__fail(-EBADMSG, "table metadata needs rows and columns");
	t->columns = shmrig_decoder_alloc(dec, (ncolumns ? ncolumns : 1) * sizeof(*t->columns));
	if (!t->columns)
		return shmrig__fail(-ENOMEM, "table: out of memory");
	for (uint32_t i = 0; i < ncolumns; i++) {
		const shmrig_meta *col = shmrig_meta_at(columns, i);
		const shmrig_meta *name = shmrig_meta_get(col, "name");
		struct shmrig_named_array *dst = &t->columns[i];
		const char *dtype;
		size_t dtype_len;
		int ret;

		if (shmrig_meta_type(name) != SHMRIG_META_STR ||
		    shmrig_meta_str(shmrig_meta_get(col, "dtype"), &dtype, &dtype_len))
			return shmrig__fail(-EBADMSG,
					    "table metadata: column %u needs name and dtype", i);
		dst->name = shmrig_decoder_strdup(dec, name);
		if (!dst->name)
			return shmrig__fail(-ENOMEM, "table: out of memory");
		dst->array.dtype = shmrig_dtype_from_name(dtype, dtype_len);
		dst->array.ndim = 1;
		dst->array.shape[0] = t->nrows;
		dst->array.order = 'C';
		ret = get_array_at(dec, shmrig_meta_get(col, "buffer"), &dst->array);
		if (ret)
			return ret;
		t->ncolumns = i + 1;
	}
	return 0;
}

/* ---- dataset ---- */

static int dataset_encode(void *ctx, struct shmrig_encoder *enc, const struct shmrig_value *value)
{
	const struct shmrig_dataset *ds = &value->dataset;
	size_t total = 0;
	int ret = 0;

	(void)ctx;
	if (ds->ngroups && !ds->groups)
		return shmrig__fail(-EINVAL, "dataset: %u groups but no group array", ds->ngroups);
	for (uint32_t g = 0; g < ds->ngroups && !ret; g++) {
		if (!ds->groups[g].name || (ds->groups[g].nvariables && !ds->groups[g].variables))
			return shmrig__fail(-EINVAL, "dataset: group %u has no name or variables",
					    g);
		ret = pack_total(ds->groups[g].variables, ds->groups[g].nvariables, &total);
	}
	if (!ret && total)
		ret = shmrig_encoder_pack(enc, total);
	if (!ret)
		ret = shmrig_meta_put_map(enc, 1);
	if (!ret)
		ret = shmrig_meta_put_str(enc, "groups");
	if (!ret)
		ret = shmrig_meta_put_list(enc, ds->ngroups);
	for (uint32_t g = 0; g < ds->ngroups && !ret; g++) {
		const struct shmrig_group *group = &ds->groups[g];

		ret = shmrig_meta_put_map(enc, 2);
		if (!ret)
			ret = put_str_pair(enc, "name", group->name);
		if (!ret)
			ret = shmrig_meta_put_str(enc, "variables");
		if (!ret)
			ret = shmrig_meta_put_list(enc, group->nvariables);
		for (uint32_t v = 0; v < group->nvariables && !ret; v++) {
			const struct shmrig_named_array *var = &group->variables[v];
			uint64_t nbytes;
			int index;

			ret = shmrig_array_nbytes(&var->array, &nbytes); /* pack_total checked it */
			if (ret)
				return ret;
			index = put_array(enc, &var->array, nbytes);
			if (index < 0)
				return index;
			ret = shmrig_meta_put_map(enc, 3);
			if (!ret)
				ret = put_str_pair(enc, "name", var->name);
			if (!ret)
				ret = put_uint_pair(enc, "buffer", (uint32_t)index);
			if (!ret)
				ret = shmrig_meta_put_str(enc, "array");
			if (!ret)
				ret = shmrig_meta_put_array(enc, &var->array);
		}
	}
	return ret;
}

static int dataset_decode(void *ctx, struct shmrig_decoder *dec, struct shmrig_value *out)
{
	const shmrig_meta *groups = shmrig_meta_get(shmrig_decoder_meta(dec), "groups");
	struct shmrig_dataset *ds = &out->dataset;
	uint32_t ngroups = shmrig_meta_count(groups);

	(void)ctx;
	out->kind = SHMRIG_KIND_DATASET;
	if (shmrig_meta_type(groups) != SHMRIG_META_LIST)
		return shmrig__fail(-EBADMSG, "dataset metadata needs groups");
	ds->groups = shmrig_decoder_alloc(dec, (ngroups ? ngroups : 1) * sizeof(*ds->groups));
	if (!ds->groups)
		return shmrig__fail(-ENOMEM, "dataset: out of memory");
	for (uint32_t g = 0; g < ngroups; g++) {
		const shmrig_meta *meta_group = shmrig_meta_at(groups, g);
		const shmrig_meta *name = shmrig_meta_get(meta_group, "name");
		const shmrig_meta *vars = shmrig_meta_get(meta_group, "variables");
		uint32_t nvars = shmrig_meta_count(vars);
		struct shmrig_group *group = &ds->groups[g];

		if (shmrig_meta_type(name) != SHMRIG_META_STR ||
		    shmrig_meta_type(vars) != SHMRIG_META_LIST)
			return shmrig__fail(-EBADMSG,
					    "dataset metadata: group %u needs name and variables",
					    g);
		group->name = shmrig_decoder_strdup(dec, name);
		group->variables =
			shmrig_decoder_alloc(dec, (nvars ? nvars : 1) * sizeof(*group->variables));
		if (!group->name || !group->variables)
			return shmrig__fail(-ENOMEM, "dataset: out of memory");
		ds->ngroups = g + 1;
		for (uint32_t v = 0; v < nvars; v++) {
			const shmrig_meta *var = shmrig_meta_at(vars, v);
			const shmrig_meta *vname = shmrig_meta_get(var, "name");
			struct shmrig_named_array *dst = &group->variables[v];
			int ret;

			if (shmrig_meta_type(vname) != SHMRIG_META_STR)
				return shmrig__fail(-EBADMSG,
						    "dataset metadata: variable %u.%u needs a name",
						    g, v);
			dst->name = shmrig_decoder_strdup(dec, vname);
			if (!dst->name)
				return shmrig__fail(-ENOMEM, "dataset: out of memory");
			ret = shmrig_meta_read_array(shmrig_meta_get(var, "array"), &dst->array);
			if (!ret)
				ret = get_array_at(dec, shmrig_meta_get(var, "buffer"),
						   &dst->array);
			if (ret)
				return ret;
			group->nvariables = v + 1;
		}
	}
	return 0;
}

/* ---- bytes: the fallback ---- */

static int bytes_encode(void *ctx, struct shmrig_encoder *enc, const struct shmrig_value *value)
{
	void *data;
	int ret;

	(void)ctx;
	if (value->kind != SHMRIG_KIND_BYTES)
		return shmrig__fail(-ENOTSUP,
				    "no codec takes this %s value, and the fallback 'bytes' encodes "
				    "only bytes",
				    shmrig_kind_name(value->kind));
	if (value->bytes.len && !value->bytes.data)
		return shmrig__fail(-EINVAL, "bytes: %llu bytes but no data",
				    (unsigned long long)value->bytes.len);
	if (value->bytes.len > SIZE_MAX)
		return shmrig__fail(-EOVERFLOW, "bytes: too large for this machine");
	ret = shmrig_encoder_buffer(enc, (size_t)value->bytes.len, SHMRIG_BUF_TEMPORARY, &data);
	if (ret < 0)
		return ret;
	if (value->bytes.len)
		shmrig__copy_shared(data, value->bytes.data, (size_t)value->bytes.len);
	ret = shmrig_meta_put_map(enc, 1);
	return ret ? ret : put_uint_pair(enc, "len", value->bytes.len);
}

static int bytes_decode(void *ctx, struct shmrig_decoder *dec, struct shmrig_value *out)
{
	const void *data;
	uint64_t len, meta_len;
	void *copy;
	int ret;

	(void)ctx;
	out->kind = SHMRIG_KIND_BYTES;
	if (shmrig_meta_uint(shmrig_meta_get(shmrig_decoder_meta(dec), "len"), &meta_len))
		return shmrig__fail(-EBADMSG, "bytes metadata needs len");
	ret = shmrig_decoder_buffer(dec, 0, SHMRIG_BUF_TEMPORARY, &data, &len);
	if (ret)
		return ret;
	if (len != meta_len)
		return shmrig__fail(-EBADMSG, "bytes: buffer holds %llu bytes, metadata says %llu",
				    (unsigned long long)len, (unsigned long long)meta_len);
	/* The buffer is temporary: freed when decode returns, so copy out. */
	copy = shmrig__decoder_alloc_raw(dec, len ? (size_t)len : 1);
	if (!copy)
		return shmrig__fail(-ENOMEM, "bytes: out of memory for %llu bytes",
				    (unsigned long long)len);
	memcpy(copy, data, (size_t)len);
	out->bytes.data = copy;
	out->bytes.len = len;
	return 0;
}

const struct shmrig_codec *shmrig__builtin_codecs(uint32_t *count)
{
	static const struct shmrig_codec builtins[] = {
		{ .size = sizeof(struct shmrig_codec),
		  .name = "ndarray",
		  .kinds = SHMRIG_KIND_BIT(SHMRIG_KIND_NDARRAY),
		  .encode = ndarray_encode,
		  .decode = ndarray_decode },
		{ .size = sizeof(struct shmrig_codec),
		  .name = "table",
		  .kinds = SHMRIG_KIND_BIT(SHMRIG_KIND_TABLE),
		  .encode = table_encode,
		  .decode = table_decode },
		{ .size = sizeof(struct shmrig_codec),
		  .name = "dataset",
		  .kinds = SHMRIG_KIND_BIT(SHMRIG_KIND_DATASET),
		  .encode = dataset_encode,
		  .decode = dataset_decode },
		{ .size = sizeof(struct shmrig_codec),
		  .name = "bytes",
		  .kinds = SHMRIG_KIND_BIT(SHMRIG_KIND_BYTES),
		  .flags = SHMRIG_CODEC_FALLBACK,
		  .encode = bytes_encode,
		  .decode = bytes_decode },
	};

	*count = sizeof(builtins) / sizeof(builtins[0]);
	return builtins;
}
