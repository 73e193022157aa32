/* SPDX-License-Identifier: MIT */
/*
 * meta: frame metadata, MessagePack restricted to the JSON data model.
 *
 * msgpack-c's unpacker trusts the counts it reads: a 5-byte array header that
 * claims 2^32 elements makes it allocate 2^32 objects before it finds the data
 * missing. Metadata comes from another process, so meta_check() walks the
 * bytes first (no allocation, bounded depth) and lets through only documents
 * whose every count fits in the bytes that remain and whose every item is
 * JSON: nil, bool, integers, finite floats, UTF-8 strings, arrays, maps with
 * string keys, and at most SHMRIG_FRAME_MAX_META_ITEMS items: msgpack-c
 * allocates ~24 bytes an item, so a 64 MiB metadata of one-byte items would
 * cost 1.5 GiB unpacked (2.1 GiB measured) without that cap. Only then is it
 * unpacked.
 */
#include "base/internal.h"
#include "codec/meta.h"

#include <shmrig/codec.h>
#include <shmrig/frame.h>

#include <errno.h>
#include <math.h>
#include <string.h>

/* Deeper than any metadata we write; msgpack-c itself stops at 32. */
#define MAX_DEPTH 32

struct cursor {
	const unsigned char *p, *end;
	uint64_t items;    /* seen so far, capped by SHMRIG_FRAME_MAX_META_ITEMS */
	const char *error; /* static description of the first problem */
};

static uint64_t be(const unsigned char *p, unsigned bytes)
{
	uint64_t v = 0;

	for (unsigned i = 0; i < bytes; i++)
		v = (v << 8) | p[i];
	return v;
}

static bool need(struct cursor *c, uint64_t bytes)
{
	if ((uint64_t)(c->end - c->p) < bytes) {
		c->error = "truncated";
		return false;
	}
	return true;
}

/* Strict UTF-8 (no overlongs, no surrogates, at most U+10FFFF), as JSON needs. */
static bool utf8_valid(const unsigned char *s, uint64_t len)
{
	uint64_t i = 0;

	while (i < len) {
		unsigned char b = s[i];
		unsigned n;
		uint32_t cp;

		if (b < 0x80) {
			i++;
			continue;
		}
		if (b >= 0xc2 && b <= 0xdf) {
			n = 1;
			cp = b & 0x1f;
		} else if (b >= 0xe0 && b <= 0xef) {
			n = 2;
			cp = b & 0x0f;
		} else if (b >= 0xf0 && b <= 0xf4) {
			n = 3;
			cp = b & 0x07;
		} else {
			return false;
		}
		if (len - i <= n)
			return false;
		for (unsigned k = 1; k <= n; k++) {
			if ((s[i + k] & 0xc0) != 0x80)
				return false;
			cp = (cp << 6) | (s[i + k] & 0x3f);
		}
		if ((n == 2 && cp < 0x800) || (n == 3 && cp < 0x10000) || cp > 0x10ffff ||
		    (cp >= 0xd800 && cp <= 0xdfff))
			return false;
		i += n + 1;
	}
	return true;
}

static bool check_item(struct cursor *c, unsigned depth, bool want_string);

static bool check_str(struct cursor *c, uint64_t len)
{
	if (!need(c, len))
		return false;
	if (!utf8_valid(c->p, len)) {
		c->error = "a string is not UTF-8";
		return false;
	}
	c->p += len;
	return true;
}

static bool check_container(struct cursor *c, uint64_t count, bool map, unsigned depth)
{
	/* every item takes at least one byte */
	if (count > (uint64_t)(c->end - c->p) / (map ? 2 : 1)) {
		c->error = "a container claims more items than there are bytes";
		return false;
	}
	if (depth >= MAX_DEPTH) {
		c->error = "nested too deep";
		return false;
	}
	for (uint64_t i = 0; i < count; i++) {
		if (map && !check_item(c, depth + 1, true))
			return false;
		if (!check_item(c, depth + 1, false))
			return false;
	}
	return true;
}

static bool check_item(struct cursor *c, unsigned depth, bool want_string)
{
	unsigned char b;

	if (!need(c, 1))
		return false;
	if (++c->items > SHMRIG_FRAME_MAX_META_ITEMS) {
		c->error = "more items than the limit (SHMRIG_FRAME_MAX_META_ITEMS)";
		return false;
	}
	b = *c->p++;
	if (want_string && !((b >= 0xa0 && b <= 0xbf) || (b >= 0xd9 && b <= 0xdb))) {
		c->error = "a map key is not a string";
		return false;
	}
	if (b <= 0x7f || b >= 0xe0 || b == 0xc0 || b == 0xc2 || b == 0xc3)
		return true;
	if (b >= 0x80 && b <= 0x8f)
		return check_container(c, b & 0x0f, true, depth);
	if (b >= 0x90 && b <= 0x9f)
		return check_container(c, b & 0x0f, false, depth);
	if (b >= 0xa0 && b <= 0xbf)
		return check_str(c, b & 0x1f);
	switch (b) {
	case 0xca:
	case 0xcb: {
		unsigned bytes = b == 0xca ? 4 : 8;
		uint64_t bits;
		double value;

		if (!need(c, bytes))
			return false;
		bits = be(c->p, bytes);
		if (bytes == 4) {
			uint32_t narrow = (uint32_t)bits;
			float f;

			memcpy(&f, &narrow, sizeof(f));
			value = f;
		} else {
			memcpy(&value, &bits, sizeof(value));
		}
		if (!isfinite(value)) {
			c->error = "a float is not finite (JSON has no NaN or Infinity)";
			return false;
		}
		c->p += bytes;
		return true;
	}
	case 0xcc:
	case 0xd0:
		return need(c, 1) && (c->p += 1, true);
	case 0xcd:
	case 0xd1:
		return need(c, 2) && (c->p += 2, true);
	case 0xce:
	case 0xd2:
		return need(c, 4) && (c->p += 4, true);
	case 0xcf:
	case 0xd3:
		return need(c, 8) && (c->p += 8, true);
	case 0xd9:
	case 0xda:
	case 0xdb: {
		unsigned bytes = 1u << (b - 0xd9);

		if (!need(c, bytes))
			return false;
		c->p += bytes;
		return check_str(c, be(c->p - bytes, bytes));
	}
	case 0xdc:
	case 0xdd:
	case 0xde:
	case 0xdf: {
		unsigned bytes = (b == 0xdc || b == 0xde) ? 2 : 4;

		if (!need(c, bytes))
			return false;
		c->p += bytes;
		return check_container(c, be(c->p - bytes, bytes), b >= 0xde, depth);
	}
	case 0xc1:
		c->error = "byte 0xc1 is never used in MessagePack";
		return false;
	default: /* bin, ext, fixext */
		c->error = "binary and extension types have no JSON form";
		return false;
	}
}

int shmrig__meta_check(const void *buf, size_t len)
{
	struct cursor c = { buf, (const unsigned char *)buf + len, 0, NULL };

	if (len == 0)
		return shmrig__fail(-EBADMSG,
				    "metadata is empty (one MessagePack object expected)");
	if (!check_item(&c, 0, false))
		return shmrig__fail(-EBADMSG,
				    "metadata is not JSON-compatible MessagePack: %s at byte %zu",
				    c.error, (size_t)(c.p - (const unsigned char *)buf));
	if (c.p != c.end)
		return shmrig__fail(-EBADMSG, "metadata has %zu bytes after its object",
				    (size_t)(c.end - c.p));
	return 0;
}

int shmrig__meta_unpack(const void *buf, size_t len, msgpack_unpacked *out)
{
	size_t off = 0;
	int ret = shmrig__meta_check(buf, len);

	if (ret)
		return ret;
	msgpack_unpacked_init(out);
	if (msgpack_unpack_next(out, buf, len, &off) != MSGPACK_UNPACK_SUCCESS || off != len) {
		msgpack_unpacked_destroy(out);
		return shmrig__fail(-EBADMSG, "metadata could not be unpacked");
	}
	return 0;
}

json_t *shmrig__meta_to_json(const msgpack_object *obj)
{
	json_t *json = NULL;

	switch (obj->type) {
	case MSGPACK_OBJECT_NIL:
		return json_null();
	case MSGPACK_OBJECT_BOOLEAN:
		return json_boolean(obj->via.boolean);
	case MSGPACK_OBJECT_POSITIVE_INTEGER:
		/* jansson integers are signed 64-bit: larger ones become reals */
		if (obj->via.u64 > INT64_MAX)
			return json_real((double)obj->via.u64);
		return json_integer((json_int_t)obj->via.u64);
	case MSGPACK_OBJECT_NEGATIVE_INTEGER:
		return json_integer((json_int_t)obj->via.i64);
	case MSGPACK_OBJECT_FLOAT32:
	case MSGPACK_OBJECT_FLOAT64:
		return json_real(obj->via.f64);
	case MSGPACK_OBJECT_STR:
		return json_stringn(obj->via.str.ptr, obj->via.str.size);
	case MSGPACK_OBJECT_ARRAY:
		json = json_array();
		for (uint32_t i = 0; json && i < obj->via.array.size; i++)
			if (json_array_append_new(json,
						  shmrig__meta_to_json(&obj->via.array.ptr[i])))
				goto fail;
		return json;
	case MSGPACK_OBJECT_MAP:
		json = json_object();
		for (uint32_t i = 0; json && i < obj->via.map.size; i++) {
			const msgpack_object_kv *kv = &obj->via.map.ptr[i];

			if (kv->key.type != MSGPACK_OBJECT_STR ||
			    json_object_setn_new(json, kv->key.via.str.ptr, kv->key.via.str.size,
						 shmrig__meta_to_json(&kv->val)))
				goto fail;
		}
		return json;
	default:
		return NULL;
	}
fail:
	json_decref(json);
	return NULL;
}

/* ---- helpers for codecs ---- */

int shmrig_meta_pack_str(msgpack_packer *pk, const char *str)
{
	size_t len = strlen(str);

	if (msgpack_pack_str(pk, len) || msgpack_pack_str_body(pk, str, len))
		return -ENOMEM;
	return 0;
}

const msgpack_object *shmrig_meta_get(const msgpack_object *map, const char *key)
{
	size_t len = strlen(key);

	if (!map || map->type != MSGPACK_OBJECT_MAP)
		return NULL;
	for (uint32_t i = 0; i < map->via.map.size; i++) {
		const msgpack_object *k = &map->via.map.ptr[i].key;

		if (k->type == MSGPACK_OBJECT_STR && k->via.str.size == len &&
		    memcmp(k->via.str.ptr, key, len) == 0)
			return &map->via.map.ptr[i].val;
	}
	return NULL;
}

int shmrig_meta_uint(const msgpack_object *obj, uint64_t *out)
{
	if (!obj || obj->type != MSGPACK_OBJECT_POSITIVE_INTEGER)
		return shmrig__fail(-EBADMSG, "metadata: a non-negative integer was expected");
	*out = obj->via.u64;
	return 0;
}

int shmrig_meta_str(const msgpack_object *obj, const msgpack_object_str **out)
{
	if (!obj || obj->type != MSGPACK_OBJECT_STR)
		return shmrig__fail(-EBADMSG, "metadata: a string was expected");
	*out = &obj->via.str;
	return 0;
}

int shmrig_meta_array(const msgpack_object *obj, const msgpack_object_array **out)
{
	if (!obj || obj->type != MSGPACK_OBJECT_ARRAY)
		return shmrig__fail(-EBADMSG, "metadata: an array was expected");
	*out = &obj->via.array;
	return 0;
}

int shmrig_meta_pack_array(msgpack_packer *pk, const struct shmrig_array *array)
{
	const char *dtype = shmrig_dtype_name(array->dtype);
	char order[2] = { array->order, '\0' };
	int ret = 0;

	if (!dtype)
		return shmrig__fail(-EINVAL, "array: invalid dtype %d", (int)array->dtype);
	ret |= msgpack_pack_map(pk, 3);
	ret |= shmrig_meta_pack_str(pk, "dtype");
	ret |= shmrig_meta_pack_str(pk, dtype);
	ret |= shmrig_meta_pack_str(pk, "shape");
	ret |= msgpack_pack_array(pk, array->ndim);
	for (uint32_t d = 0; d < array->ndim; d++)
		ret |= msgpack_pack_uint64(pk, array->shape[d]);
	ret |= shmrig_meta_pack_str(pk, "order");
	ret |= shmrig_meta_pack_str(pk, order);
	return ret ? shmrig__fail(-ENOMEM, "array: out of memory packing metadata") : 0;
}

int shmrig_meta_read_array(const msgpack_object *obj, struct shmrig_array *array)
{
	const msgpack_object_str *dtype, *order;
	const msgpack_object_array *shape;
	uint64_t nbytes;

	memset(array, 0, sizeof(*array));
	if (shmrig_meta_str(shmrig_meta_get(obj, "dtype"), &dtype) ||
	    shmrig_meta_array(shmrig_meta_get(obj, "shape"), &shape) ||
	    shmrig_meta_str(shmrig_meta_get(obj, "order"), &order))
		return shmrig__fail(
			-EBADMSG,
			"array metadata needs dtype (string), shape (array), order (string)");
	array->dtype = shmrig_dtype_from_name(dtype->ptr, dtype->size);
	if (array->dtype == SHMRIG_DTYPE_INVALID)
		return shmrig__fail(-EBADMSG, "array metadata: unknown dtype '%.*s'",
				    (int)(dtype->size > 32 ? 32 : dtype->size), dtype->ptr);
	if (shape->size > SHMRIG_MAX_DIMS)
		return shmrig__fail(-EBADMSG, "array metadata: %u dimensions (at most %d)",
				    shape->size, SHMRIG_MAX_DIMS);
	array->ndim = shape->size;
	for (uint32_t d = 0; d < shape->size; d++)
		if (shmrig_meta_uint(&shape->ptr[d], &array->shape[d]))
			return shmrig__fail(-EBADMSG, "array metadata: shape[%u] is not a size", d);
	if (order->size != 1 || (order->ptr[0] != 'C' && order->ptr[0] != 'F'))
		return shmrig__fail(-EBADMSG, "array metadata: order must be \"C\" or \"F\"");
	array->order = order->ptr[0];
	if (shmrig_array_nbytes(array, &nbytes))
		return shmrig__fail(-EBADMSG, "array metadata: the array's size overflows");
	return 0;
}
