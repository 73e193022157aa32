/* SPDX-License-Identifier: MIT */
/*
 * Frame metadata read a second time, without the library: MessagePack bytes
 * to a jansson document. Required.Meta.JsonCompatible compares this reading
 * with the library's JSON rendering parsed back; the hostile mutations use
 * the positions of integers and container counts, and the keys, to make
 * metadata that lies.
 *
 * Stricter than "the library accepts it": a document is JSON-compatible only
 * if every value survives a trip through JSON text: no duplicate keys (JSON
 * readers keep one of them), no integer above INT64_MAX (jansson makes it a
 * float, and loses digits), no NUL inside a string (most readers refuse it),
 * UTF-8 strings, finite floats. Depth and item counts are bounded.
 */
#include "validate.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#define MAX_DEPTH 32
#define MAX_ITEMS (1u << 20)

struct reader {
	const unsigned char *start, *p, *end;
	uint64_t items;
	char *why;
	size_t why_len;
	struct val_meta_item *found; /* integers and container headers, if asked */
	uint32_t nfound, max_found;
	char *keys; /* keys, '\0'-separated, if asked */
	size_t keys_len, keys_used;
	uint32_t nkeys;
};

static json_t *fail(struct reader *r, const char *what)
{
	if (!r->why[0])
		snprintf(r->why, r->why_len, "%s at byte %zu", what, (size_t)(r->p - r->start));
	return NULL;
}

static bool need(struct reader *r, uint64_t bytes)
{
	return (uint64_t)(r->end - r->p) >= bytes;
}

static uint64_t be(const unsigned char *p, unsigned bytes)
{
	uint64_t v = 0;

	for (unsigned i = 0; i < bytes; i++)
		v = (v << 8) | p[i];
	return v;
}

static void note(struct reader *r, const unsigned char *at, unsigned width, bool container)
{
	if (r->found && r->nfound < r->max_found)
		r->found[r->nfound++] = (struct val_meta_item){ .offset = (uint32_t)(at - r->start),
								.width = (uint8_t)width,
								.container = container };
}

static json_t *item(struct reader *r, unsigned depth);

static json_t *string(struct reader *r, uint64_t len, bool key, const char **ptr)
{
	json_t *s;

	if (!need(r, len))
		return fail(r, "a string runs past the end");
	if (memchr(r->p, '\0', (size_t)len))
		return fail(r, "a string holds a NUL byte");
	s = json_stringn((const char *)r->p, (size_t)len); /* NULL: not UTF-8 */
	if (!s)
		return fail(r, "a string is not UTF-8");
	if (key && r->keys && r->keys_used + len + 1 <= r->keys_len) {
		memcpy(r->keys + r->keys_used, r->p, (size_t)len);
		r->keys_used += len;
		r->keys[r->keys_used++] = '\0';
		r->nkeys++;
	}
	*ptr = (const char *)r->p;
	r->p += len;
	return s;
}

static json_t *container(struct reader *r, uint64_t count, bool map, unsigned depth)
{
	json_t *c;

	if (count > (uint64_t)(r->end - r->p) / (map ? 2 : 1))
		return fail(r, "a container claims more items than there are bytes");
	if (depth >= MAX_DEPTH)
		return fail(r, "nested too deep");
	c = map ? json_object() : json_array();
	for (uint64_t i = 0; c && i < count; i++) {
		json_t *key = NULL, *value;

		if (map) {
			unsigned char b;
			uint64_t len;
			const char *ptr;

			if (!need(r, 1))
				goto bad;
			b = *r->p++;
			if (b >= 0xa0 && b <= 0xbf) {
				len = b & 0x1f;
			} else if (b >= 0xd9 && b <= 0xdb && need(r, 1u << (b - 0xd9))) {
				len = be(r->p, 1u << (b - 0xd9));
				r->p += 1u << (b - 0xd9);
			} else {
				fail(r, "a map key is not a string");
				goto bad;
			}
			key = string(r, len, true, &ptr);
			if (!key)
				goto bad;
			if (json_object_get(c, json_string_value(key))) {
				fail(r, "a map has a key twice");
				goto bad;
			}
		}
		value = item(r, depth + 1);
		if (!value)
			goto bad;
		if (map ? json_object_set_new(c, json_string_value(key), value) :
			  json_array_append_new(c, value)) {
			fail(r, "out of memory");
			goto bad;
		}
		json_decref(key);
		continue;
bad:
		json_decref(key);
		json_decref(c);
		return NULL;
	}
	return c ? c : fail(r, "out of memory");
}

static json_t *item(struct reader *r, unsigned depth)
{
	const unsigned char *at = r->p;
	const char *ptr;
	unsigned char b;

	if (!need(r, 1))
		return fail(r, "truncated");
	if (++r->items > MAX_ITEMS)
		return fail(r, "too many items");
	b = *r->p++;
	if (b <= 0x7f) {
		note(r, at, 1, false);
		return json_integer(b);
	}
	if (b >= 0xe0)
		return json_integer((int8_t)b);
	if (b <= 0x8f || (b >= 0x90 && b <= 0x9f)) {
		note(r, at, 1, true);
		return container(r, b & 0x0f, b <= 0x8f, depth);
	}
	if (b <= 0xbf)
		return string(r, b & 0x1f, false, &ptr);
	switch (b) {
	case 0xc0:
		return json_null();
	case 0xc2:
		return json_false();
	case 0xc3:
		return json_true();
	case 0xca:
	case 0xcb: {
		unsigned bytes = b == 0xca ? 4 : 8;
		uint64_t bits;
		double value;

		if (!need(r, bytes))
			return fail(r, "truncated");
		bits = be(r->p, bytes);
		r->p += bytes;
		if (bytes == 4) {
			uint32_t narrow = (uint32_t)bits;
			float f;

			memcpy(&f, &narrow, sizeof(f));
			value = f;
		} else {
			memcpy(&value, &bits, sizeof(value));
		}
		if (!isfinite(value))
			return fail(r, "a float is not finite");
		return json_real(value);
	}
	case 0xcc:
	case 0xcd:
	case 0xce:
	case 0xcf: {
		unsigned bytes = 1u << (b - 0xcc);
		uint64_t v;

		if (!need(r, bytes))
			return fail(r, "truncated");
		v = be(r->p, bytes);
		r->p += bytes;
		note(r, at, 1 + bytes, false);
		if (v > INT64_MAX)
			return fail(r, "an integer above INT64_MAX (JSON readers lose its digits)");
		return json_integer((json_int_t)v);
	}
	case 0xd0:
	case 0xd1:
	case 0xd2:
	case 0xd3: {
		unsigned bytes = 1u << (b - 0xd0);
		uint64_t v;

		if (!need(r, bytes))
			return fail(r, "truncated");
		v = be(r->p, bytes);
		r->p += bytes;
		/* sign-extend from the top bit of its width */
		if (bytes < 8 && (v >> (8 * bytes - 1)))
			v |= ~0ull << (8 * bytes);
		return json_integer((json_int_t)(int64_t)v);
	}
	case 0xd9:
	case 0xda:
	case 0xdb: {
		unsigned bytes = 1u << (b - 0xd9);
		uint64_t len;

		if (!need(r, bytes))
			return fail(r, "truncated");
		len = be(r->p, bytes);
		r->p += bytes;
		return string(r, len, false, &ptr);
	}
	case 0xdc:
	case 0xdd:
	case 0xde:
	case 0xdf: {
		unsigned bytes = (b == 0xdc || b == 0xde) ? 2 : 4;
		uint64_t count;

		if (!need(r, bytes))
			return fail(r, "truncated");
		count = be(r->p, bytes);
		r->p += bytes;
		note(r, at, 1 + bytes, true);
		return container(r, count, b >= 0xde, depth);
	}
	default:
		return fail(r, "binary, extension or unused MessagePack types have no JSON form");
	}
}

static json_t *read_all(struct reader *r)
{
	json_t *doc = item(r, 0);

	if (doc && r->p != r->end) {
		json_decref(doc);
		return fail(r, "bytes after the document");
	}
	return doc;
}

json_t *val_meta_to_json(const void *meta, size_t len, char *why, size_t why_len)
{
	struct reader r = { .start = meta,
			    .p = meta,
			    .end = (const unsigned char *)meta + len,
			    .why = why,
			    .why_len = why_len };

	why[0] = '\0';
	if (len == 0) {
		snprintf(why, why_len, "empty");
		return NULL;
	}
	return read_all(&r);
}

uint32_t val_meta_items(const void *meta, size_t len, struct val_meta_item *items, uint32_t max)
{
	char why[128];
	struct reader r = { .start = meta,
			    .p = meta,
			    .end = (const unsigned char *)meta + len,
			    .why = why,
			    .why_len = sizeof(why),
			    .found = items,
			    .max_found = max };

	why[0] = '\0';
	json_decref(read_all(&r));
	return r.nfound;
}

uint32_t val_meta_keys(const void *meta, size_t len, char *buf, size_t buf_len)
{
	char why[128];
	struct reader r = { .start = meta,
			    .p = meta,
			    .end = (const unsigned char *)meta + len,
			    .why = why,
			    .why_len = sizeof(why),
			    .keys = buf,
			    .keys_len = buf_len };

	why[0] = '\0';
	json_decref(read_all(&r));
	return r.nkeys;
}
