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
#define MAX_DEPTH SHMRIG__META_MAX_DEPTH

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

int shmrig__meta_unpack(const void *buf, size_t len, msgpack_zone *zone, msgpack_object *out)
{
	size_t off = 0;
	int ret = shmrig__meta_check(buf, len);

	if (ret)
		return ret;
	/* msgpack_unpack(), which msgpack-c calls obsolete but keeps, unpacks
	 * into a zone we give it: msgpack_unpack_next() makes and frees a zone
	 * each time, two mallocs and their frees, a fifth of a small decode */
	if (msgpack_unpack(buf, len, &off, zone, out) != MSGPACK_UNPACK_SUCCESS || off != len)
		return shmrig__fail(-EBADMSG, "metadata could not be unpacked");
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

/* ---- writing: the shmrig_meta_put_*() calls of an encode ----
 *
 * The bytes are MessagePack in the shortest form of each item, exactly as
 * msgpack-c's packer writes them (fixint, uint8..64, int8..64, float64,
 * fixstr/str8/16/32, fixarray/array16/32, fixmap/map16/32): frames of the
 * built-in codecs are the bytes they were when the codecs wrote through that
 * packer (test_meta holds every width, test_registry golden frames). Written
 * here rather than through the packer: no indirect call a piece, and no
 * msgpack-c on the encode path at all.
 */

/* struct shmrig_encoder begins with its writer (registry.c asserts it). */
static struct shmrig__meta_writer *writer_of(struct shmrig_encoder *enc)
{
	return (struct shmrig__meta_writer *)(void *)enc;
}

/* The error that left the metadata incomplete, with words that say which. */
static int write_failed(const struct shmrig__meta_writer *w)
{
	if (w->error == -ENOSPC)
		return shmrig__fail(-ENOSPC,
				    "codec '%s': metadata over %u bytes (SHMRIG_FRAME_MAX_META)",
				    w->codec_name, SHMRIG_FRAME_MAX_META);
	return shmrig__fail(w->error, "codec '%s': out of memory writing metadata", w->codec_name);
}

/* Room for n more bytes: 0, or the error that now sticks. The capacity never
 * passes SHMRIG_FRAME_MAX_META, so a write that fits it is within the limit. */
static int grow(struct shmrig__meta_writer *w, size_t n)
{
	size_t cap;
	char *grown;

	if (n > SHMRIG_FRAME_MAX_META - w->size) {
		w->error = -ENOSPC;
		return write_failed(w);
	}
	cap = w->cap * 2 > w->size + n ? w->cap * 2 : w->size + n;
	if (cap > SHMRIG_FRAME_MAX_META)
		cap = SHMRIG_FRAME_MAX_META;
	grown = w->data == w->inline_data ? malloc(cap) : realloc(w->data, cap);
	if (!grown) {
		w->error = -ENOMEM;
		return write_failed(w);
	}
	if (w->data == w->inline_data)
		memcpy(grown, w->data, w->size);
	w->data = grown;
	w->cap = cap;
	return 0;
}

static inline int room(struct shmrig__meta_writer *w, size_t n)
{
	return SHMRIG_LIKELY(n <= w->cap - w->size) ? 0 : grow(w, n);
}

/* Bytes of an item's head: its type byte and a big-endian argument of 0, 1, 2, 4 or 8 bytes. */
struct head {
	unsigned char type;
	unsigned char bytes;
	uint64_t arg;
};

static inline void store_head(struct shmrig__meta_writer *w, struct head h)
{
	unsigned char *p = (unsigned char *)w->data + w->size;

	p[0] = h.type;
	for (unsigned i = 0; i < h.bytes; i++)
		p[1 + i] = (unsigned char)(h.arg >> (8 * (h.bytes - 1 - i)));
	w->size += 1u + h.bytes;
}

static inline void store_bytes(struct shmrig__meta_writer *w, const void *bytes, size_t n)
{
	memcpy(w->data + w->size, bytes, n);
	w->size += n;
}

static int put_head(struct shmrig__meta_writer *w, struct head h)
{
	int ret = room(w, 1u + h.bytes);

	if (SHMRIG_LIKELY(!ret))
		store_head(w, h);
	return ret;
}

/* A non-negative integer: fixint below 128, else the narrowest uint. */
static struct head uint_head(uint64_t v)
{
	if (v < 0x80)
		return (struct head){ (unsigned char)v, 0, 0 };
	if (v <= UINT8_MAX)
		return (struct head){ 0xcc, 1, v };
	if (v <= UINT16_MAX)
		return (struct head){ 0xcd, 2, v };
	if (v <= UINT32_MAX)
		return (struct head){ 0xce, 4, v };
	return (struct head){ 0xcf, 8, v };
}

/* A negative integer: fixint from -32, else the narrowest int. */
static struct head negative_head(int64_t v)
{
	if (v >= -32)
		return (struct head){ (unsigned char)(v & 0xff), 0, 0 };
	if (v >= INT8_MIN)
		return (struct head){ 0xd0, 1, (uint64_t)v };
	if (v >= INT16_MIN)
		return (struct head){ 0xd1, 2, (uint64_t)v };
	if (v >= INT32_MIN)
		return (struct head){ 0xd2, 4, (uint64_t)v };
	return (struct head){ 0xd3, 8, (uint64_t)v };
}

/* A container of n entries: the fix form below 16, else 16 or 32 bits. */
static struct head container_head(uint32_t n, unsigned char fix, unsigned char wide)
{
	if (n < 16)
		return (struct head){ (unsigned char)(fix | n), 0, 0 };
	if (n <= UINT16_MAX)
		return (struct head){ wide, 2, n };
	return (struct head){ (unsigned char)(wide + 1), 4, n };
}

/*
 * The shape (meta.h): a value was completed at the current level. A map's key
 * completes nothing; its value completes a pair; the last entry of a
 * container completes the container, a value one level up.
 */
static void shape_complete(struct shmrig__meta_writer *w)
{
	while (w->depth) {
		struct shmrig__meta_open *top = &w->open[w->depth - 1];

		if (top->map) {
			top->key_next = !top->key_next;
			if (!top->key_next)
				return; /* that was the key */
		}
		if (--top->left)
			return;
		w->depth--;
	}
	w->objects++;
}

/* An item is stored where the shape expects one: after the only object, or a
 * non-string where a key goes, is malformed. `items` it holds, `levels` deep. */
static void shape_item(struct shmrig__meta_writer *w, bool string, uint32_t items, uint32_t levels)
{
	w->items += items;
	if (w->depth + levels > MAX_DEPTH)
		w->malformed = true;
	else if (!w->depth)
		w->malformed |= w->objects != 0;
	else
		w->malformed |= w->open[w->depth - 1].key_next && !string;
}

/* A scalar (or a whole value stored in one go) was stored. */
static void shape_value(struct shmrig__meta_writer *w, bool string, uint32_t items, uint32_t levels)
{
	shape_item(w, string, items, levels);
	if (!w->malformed)
		shape_complete(w);
}

/* A container's head was stored; its n entries follow. */
static void shape_open(struct shmrig__meta_writer *w, uint32_t n, bool map)
{
	shape_item(w, false, 1, 1);
	if (w->malformed)
		return;
	if (!n) {
		shape_complete(w);
		return;
	}
	w->open[w->depth].left = n;
	w->open[w->depth].map = map;
	w->open[w->depth].key_next = map;
	w->depth++;
}

/* A scalar item that is not a string: stored, then followed in the shape. */
static int put_scalar(struct shmrig__meta_writer *w, struct head h)
{
	int ret = put_head(w, h);

	if (SHMRIG_LIKELY(!ret))
		shape_value(w, false, 1, 0);
	return ret;
}

/* The writer of enc, or NULL (error recorded in *ret) if there is none or an earlier write failed. */
static struct shmrig__meta_writer *begin(struct shmrig_encoder *enc, const char *call, int *ret)
{
	struct shmrig__meta_writer *w;

	if (SHMRIG_UNLIKELY(!enc)) {
		*ret = shmrig__fail(-EINVAL, "%s: NULL encoder", call);
		return NULL;
	}
	w = writer_of(enc);
	if (SHMRIG_UNLIKELY(w->error)) {
		*ret = write_failed(w);
		return NULL;
	}
	return w;
}

int shmrig_meta_put_map(struct shmrig_encoder *enc, uint32_t pairs)
{
	int ret;
	struct shmrig__meta_writer *w = begin(enc, "meta_put_map", &ret);

	if (w && !(ret = put_head(w, container_head(pairs, 0x80, 0xde))))
		shape_open(w, pairs, true);
	return ret;
}

int shmrig_meta_put_list(struct shmrig_encoder *enc, uint32_t count)
{
	int ret;
	struct shmrig__meta_writer *w = begin(enc, "meta_put_list", &ret);

	if (w && !(ret = put_head(w, container_head(count, 0x90, 0xdc))))
		shape_open(w, count, false);
	return ret;
}

/* A string of len bytes whose first `ascii` bytes are known ASCII. */
static int put_string(struct shmrig__meta_writer *w, const char *str, size_t len, size_t ascii)
{
	struct head h;
	int ret;

	/* refused before the rest of its bytes are read: it cannot fit */
	if (len > SHMRIG_FRAME_MAX_META - w->size) {
		w->error = -ENOSPC;
		return write_failed(w);
	}
	if (ascii < len && !utf8_valid((const unsigned char *)str + ascii, len - ascii))
		return shmrig__fail(-EINVAL, "codec '%s': meta_put_str: a string is not UTF-8",
				    w->codec_name);
	if (len < 32)
		h = (struct head){ (unsigned char)(0xa0 | len), 0, 0 };
	else if (len <= UINT8_MAX)
		h = (struct head){ 0xd9, 1, len };
	else if (len <= UINT16_MAX)
		h = (struct head){ 0xda, 2, len };
	else
		h = (struct head){ 0xdb, 4, len };
	ret = room(w, 1u + h.bytes + len);
	if (ret)
		return ret;
	store_head(w, h);
	memcpy(w->data + w->size, str, len);
	w->size += len;
	shape_value(w, true, 1, 0);
	return 0;
}

int shmrig_meta_put_strn(struct shmrig_encoder *enc, const char *str, size_t len)
{
	int ret;
	struct shmrig__meta_writer *w = begin(enc, "meta_put_strn", &ret);
	size_t ascii = 0;

	if (!w)
		return ret;
	if (!str)
		return shmrig__fail(-EINVAL, "codec '%s': meta_put_strn: NULL string",
				    w->codec_name);
	if (len <= SHMRIG_FRAME_MAX_META - w->size)
		while (ascii < len && !(str[ascii] & 0x80))
			ascii++;
	return put_string(w, str, len, ascii);
}

int shmrig_meta_put_str(struct shmrig_encoder *enc, const char *str)
{
	int ret;
	struct shmrig__meta_writer *w = begin(enc, "meta_put_str", &ret);
	size_t len = 0;

	if (!w)
		return ret;
	if (!str)
		return shmrig__fail(-EINVAL, "codec '%s': meta_put_str: NULL string",
				    w->codec_name);
	/* strlen and the ASCII check in one pass: keys and names are short */
	while (str[len] && !(str[len] & 0x80))
		len++;
	if (!str[len])
		return put_string(w, str, len, len);
	return put_string(w, str, len + strlen(str + len), len);
}

int shmrig_meta_put_uint(struct shmrig_encoder *enc, uint64_t value)
{
	int ret;
	struct shmrig__meta_writer *w = begin(enc, "meta_put_uint", &ret);

	return w ? put_scalar(w, uint_head(value)) : ret;
}

int shmrig_meta_put_int(struct shmrig_encoder *enc, int64_t value)
{
	int ret;
	struct shmrig__meta_writer *w = begin(enc, "meta_put_int", &ret);

	if (!w)
		return ret;
	return put_scalar(w, value >= 0 ? uint_head((uint64_t)value) : negative_head(value));
}

int shmrig_meta_put_double(struct shmrig_encoder *enc, double value)
{
	int ret;
	struct shmrig__meta_writer *w = begin(enc, "meta_put_double", &ret);
	uint64_t bits;

	if (!w)
		return ret;
	if (!isfinite(value))
		return shmrig__fail(-EINVAL,
				    "codec '%s': meta_put_double: %f is not finite (JSON has no "
				    "NaN or Infinity)",
				    w->codec_name, value);
	memcpy(&bits, &value, sizeof(bits));
	return put_scalar(w, (struct head){ 0xcb, 8, bits }); /* always float64 */
}

int shmrig_meta_put_bool(struct shmrig_encoder *enc, bool value)
{
	int ret;
	struct shmrig__meta_writer *w = begin(enc, "meta_put_bool", &ret);

	return w ? put_scalar(w, (struct head){ value ? 0xc3 : 0xc2, 0, 0 }) : ret;
}

int shmrig_meta_put_null(struct shmrig_encoder *enc)
{
	int ret;
	struct shmrig__meta_writer *w = begin(enc, "meta_put_null", &ret);

	return w ? put_scalar(w, (struct head){ 0xc0, 0, 0 }) : ret;
}

int shmrig_meta_put_array(struct shmrig_encoder *enc, const struct shmrig_array *array)
{
	const char *dtype;
	char order[2];
	size_t dtype_len, need;
	struct head list;
	int ret;
	struct shmrig__meta_writer *w = begin(enc, "meta_put_array", &ret);

	if (!w)
		return ret;
	if (!array)
		return shmrig__fail(-EINVAL, "codec '%s': meta_put_array: NULL array",
				    w->codec_name);
	dtype = shmrig_dtype_name(array->dtype);
	if (!dtype || array->ndim > SHMRIG_MAX_DIMS || (array->order != 'C' && array->order != 'F'))
		return shmrig__fail(-EINVAL,
				    "codec '%s': meta_put_array: bad dtype %d, ndim %u or order",
				    w->codec_name, (int)array->dtype, array->ndim);
	/*
	 * {"dtype": name, "shape": [n, ...], "order": "C"}, the bytes the
	 * shmrig_meta_put_*() calls would write, stored in one go: every item is
	 * checked above, the keys and names are short ASCII (fixstr), so only the
	 * room can fail. A third of a small encode when it went call by call.
	 */
	dtype_len = strlen(dtype); /* below 32: the longest is "float64" */
	list = container_head(array->ndim, 0x90, 0xdc);
	need = 1 + 6 + 1 + dtype_len + 6 + 1u + list.bytes + 6 + 2;

	for (uint32_t d = 0; d < array->ndim; d++)
		need += 1u + uint_head(array->shape[d]).bytes;
	ret = room(w, need);
	if (ret)
		return ret;
	store_head(w, (struct head){ 0x83, 0, 0 });
	store_bytes(w, "\xa5" "dtype", 6);
	store_head(w, (struct head){ (unsigned char)(0xa0 | dtype_len), 0, 0 });
	store_bytes(w, dtype, dtype_len);
	store_bytes(w, "\xa5" "shape", 6);
	store_head(w, list);
	for (uint32_t d = 0; d < array->ndim; d++)
		store_head(w, uint_head(array->shape[d]));
	store_bytes(w, "\xa5" "order", 6);
	order[0] = (char)0xa1;
	order[1] = array->order;
	store_bytes(w, order, 2);
	/* the map and its list, 2 levels; 7 items and the shape's */
	shape_value(w, false, 7 + array->ndim, 2);
	return 0;
}

/* ---- reading: nodes of the decoded metadata ---- */

enum shmrig_meta_type shmrig_meta_type(const shmrig_meta *m)
{
	const msgpack_object *obj = shmrig__meta_object(m);

	if (!obj)
		return SHMRIG_META_NONE;
	switch (obj->type) {
	case MSGPACK_OBJECT_NIL:
		return SHMRIG_META_NULL;
	case MSGPACK_OBJECT_BOOLEAN:
		return SHMRIG_META_BOOL;
	case MSGPACK_OBJECT_POSITIVE_INTEGER:
		return SHMRIG_META_UINT;
	case MSGPACK_OBJECT_NEGATIVE_INTEGER:
		return SHMRIG_META_INT;
	case MSGPACK_OBJECT_FLOAT32:
	case MSGPACK_OBJECT_FLOAT64:
		return SHMRIG_META_DOUBLE;
	case MSGPACK_OBJECT_STR:
		return SHMRIG_META_STR;
	case MSGPACK_OBJECT_ARRAY:
		return SHMRIG_META_LIST;
	case MSGPACK_OBJECT_MAP:
		return SHMRIG_META_MAP;
	default: /* bin and ext: meta_check lets none through */
		return SHMRIG_META_NONE;
	}
}

const shmrig_meta *shmrig_meta_get(const shmrig_meta *map, const char *key)
{
	const msgpack_object *obj = shmrig__meta_object(map);
	size_t len;

	if (!obj || obj->type != MSGPACK_OBJECT_MAP || !key)
		return NULL;
	len = strlen(key);
	for (uint32_t i = 0; i < obj->via.map.size; i++) {
		const msgpack_object *k = &obj->via.map.ptr[i].key;

		if (k->type == MSGPACK_OBJECT_STR && k->via.str.size == len &&
		    memcmp(k->via.str.ptr, key, len) == 0)
			return shmrig__meta_node(&obj->via.map.ptr[i].val);
	}
	return NULL;
}

uint32_t shmrig_meta_count(const shmrig_meta *m)
{
	const msgpack_object *obj = shmrig__meta_object(m);

	if (!obj)
		return 0;
	if (obj->type == MSGPACK_OBJECT_ARRAY)
		return obj->via.array.size;
	if (obj->type == MSGPACK_OBJECT_MAP)
		return obj->via.map.size;
	return 0;
}

const shmrig_meta *shmrig_meta_at(const shmrig_meta *list, uint32_t index)
{
	const msgpack_object *obj = shmrig__meta_object(list);

	if (!obj || obj->type != MSGPACK_OBJECT_ARRAY || index >= obj->via.array.size)
		return NULL;
	return shmrig__meta_node(&obj->via.array.ptr[index]);
}

const shmrig_meta *shmrig_meta_entry(const shmrig_meta *map, uint32_t index, const char **key,
				     size_t *key_len)
{
	const msgpack_object *obj = shmrig__meta_object(map);
	const msgpack_object_kv *kv;

	if (key)
		*key = NULL;
	if (key_len)
		*key_len = 0;
	if (!obj || obj->type != MSGPACK_OBJECT_MAP || index >= obj->via.map.size)
		return NULL;
	kv = &obj->via.map.ptr[index];
	/* meta_check lets only string keys through */
	if (kv->key.type == MSGPACK_OBJECT_STR) {
		if (key)
			*key = kv->key.via.str.size ? kv->key.via.str.ptr : "";
		if (key_len)
			*key_len = kv->key.via.str.size;
	}
	return shmrig__meta_node(&kv->val);
}

static int null_out(const char *call)
{
	return shmrig__fail(-EINVAL, "%s: NULL out", call);
}

/* -EBADMSG: the node is absent or not what the codec expected. */
static int wrong_type(const shmrig_meta *m, const char *expected)
{
	static const char *const names[] = {
		[SHMRIG_META_NONE] = "nothing",
		[SHMRIG_META_NULL] = "null",
		[SHMRIG_META_BOOL] = "a bool",
		[SHMRIG_META_UINT] = "a non-negative integer",
		[SHMRIG_META_INT] = "a negative integer",
		[SHMRIG_META_DOUBLE] = "a double",
		[SHMRIG_META_STR] = "a string",
		[SHMRIG_META_LIST] = "a list",
		[SHMRIG_META_MAP] = "a map",
	};

	return shmrig__fail(-EBADMSG, "metadata: %s was expected, found %s", expected,
			    names[shmrig_meta_type(m)]);
}

int shmrig_meta_uint(const shmrig_meta *m, uint64_t *out)
{
	const msgpack_object *obj = shmrig__meta_object(m);

	if (!out)
		return null_out("meta_uint");
	if (!obj || obj->type != MSGPACK_OBJECT_POSITIVE_INTEGER)
		return wrong_type(m, "a non-negative integer");
	*out = obj->via.u64;
	return 0;
}

int shmrig_meta_int(const shmrig_meta *m, int64_t *out)
{
	const msgpack_object *obj = shmrig__meta_object(m);

	if (!out)
		return null_out("meta_int");
	if (obj && obj->type == MSGPACK_OBJECT_NEGATIVE_INTEGER) {
		*out = obj->via.i64;
		return 0;
	}
	if (!obj || obj->type != MSGPACK_OBJECT_POSITIVE_INTEGER)
		return wrong_type(m, "an integer");
	if (obj->via.u64 > INT64_MAX)
		return shmrig__fail(-ERANGE, "metadata: %llu does not fit a signed 64-bit integer",
				    (unsigned long long)obj->via.u64);
	*out = (int64_t)obj->via.u64;
	return 0;
}

int shmrig_meta_double(const shmrig_meta *m, double *out)
{
	const msgpack_object *obj = shmrig__meta_object(m);

	if (!out)
		return null_out("meta_double");
	switch (obj ? obj->type : MSGPACK_OBJECT_NIL) {
	case MSGPACK_OBJECT_FLOAT32:
	case MSGPACK_OBJECT_FLOAT64:
		*out = obj->via.f64; /* msgpack-c widens a float32 into f64 */
		return 0;
	case MSGPACK_OBJECT_POSITIVE_INTEGER:
		*out = (double)obj->via.u64;
		return 0;
	case MSGPACK_OBJECT_NEGATIVE_INTEGER:
		*out = (double)obj->via.i64;
		return 0;
	default:
		return wrong_type(m, "a number");
	}
}

int shmrig_meta_bool(const shmrig_meta *m, bool *out)
{
	const msgpack_object *obj = shmrig__meta_object(m);

	if (!out)
		return null_out("meta_bool");
	if (!obj || obj->type != MSGPACK_OBJECT_BOOLEAN)
		return wrong_type(m, "a bool");
	*out = obj->via.boolean;
	return 0;
}

int shmrig_meta_str(const shmrig_meta *m, const char **str, size_t *len)
{
	const msgpack_object *obj = shmrig__meta_object(m);

	if (!str || !len)
		return null_out("meta_str");
	if (!obj || obj->type != MSGPACK_OBJECT_STR)
		return wrong_type(m, "a string");
	/* never NULL, even for "" */
	*str = obj->via.str.size ? obj->via.str.ptr : "";
	*len = obj->via.str.size;
	return 0;
}

/* A key of 5 bytes (the array description's three): no strlen, no call. */
static inline bool key5(const msgpack_object *k, const char name[5])
{
	return k->type == MSGPACK_OBJECT_STR && k->via.str.size == 5 &&
	       memcmp(k->via.str.ptr, name, 5) == 0;
}

int shmrig_meta_read_array(const shmrig_meta *m, struct shmrig_array *array)
{
	const msgpack_object *obj = shmrig__meta_object(m);
	const msgpack_object *dtype = NULL, *shape = NULL, *order = NULL;
	uint32_t ndim;
	uint64_t nbytes;

	if (!array)
		return shmrig__fail(-EINVAL, "meta_read_array: NULL array");
	memset(array, 0, sizeof(*array));
	/* one pass over the map; the first of a repeated key counts, as in
	 * shmrig_meta_get() */
	if (obj && obj->type == MSGPACK_OBJECT_MAP) {
		for (uint32_t i = 0; i < obj->via.map.size; i++) {
			const msgpack_object_kv *kv = &obj->via.map.ptr[i];

			if (!dtype && key5(&kv->key, "dtype"))
				dtype = &kv->val;
			else if (!shape && key5(&kv->key, "shape"))
				shape = &kv->val;
			else if (!order && key5(&kv->key, "order"))
				order = &kv->val;
		}
	}
	if (!dtype || dtype->type != MSGPACK_OBJECT_STR || !shape ||
	    shape->type != MSGPACK_OBJECT_ARRAY || !order || order->type != MSGPACK_OBJECT_STR)
		return shmrig__fail(
			-EBADMSG,
			"array metadata needs dtype (string), shape (array), order (string)");
	array->dtype = shmrig_dtype_from_name(dtype->via.str.ptr, dtype->via.str.size);
	if (array->dtype == SHMRIG_DTYPE_INVALID)
		return shmrig__fail(-EBADMSG, "array metadata: unknown dtype '%.*s'",
				    (int)(dtype->via.str.size > 32 ? 32 : dtype->via.str.size),
				    dtype->via.str.size ? dtype->via.str.ptr : "");
	ndim = shape->via.array.size;
	if (ndim > SHMRIG_MAX_DIMS)
		return shmrig__fail(-EBADMSG, "array metadata: %u dimensions (at most %d)", ndim,
				    SHMRIG_MAX_DIMS);
	array->ndim = ndim;
	for (uint32_t d = 0; d < ndim; d++) {
		const msgpack_object *n = &shape->via.array.ptr[d];

		if (n->type != MSGPACK_OBJECT_POSITIVE_INTEGER)
			return shmrig__fail(-EBADMSG, "array metadata: shape[%u] is not a size", d);
		array->shape[d] = n->via.u64;
	}
	if (order->via.str.size != 1 ||
	    (order->via.str.ptr[0] != 'C' && order->via.str.ptr[0] != 'F'))
		return shmrig__fail(-EBADMSG, "array metadata: order must be \"C\" or \"F\"");
	array->order = order->via.str.ptr[0];
	if (shmrig_array_nbytes(array, &nbytes))
		return shmrig__fail(-EBADMSG, "array metadata: the array's size overflows");
	return 0;
}
