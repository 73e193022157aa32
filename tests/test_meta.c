/* SPDX-License-Identifier: MIT */
/*
 * The metadata API of <shmrig/codec.h>, through a user codec that runs the
 * test's writer and reader: each shmrig_meta_put_*() call gives the exact
 * MessagePack bytes msgpack-c's packer gave (every width: the golden bytes of
 * the wire format), each reader reads them back; every error (-EINVAL writes
 * nothing, -EBADMSG for a wrong type or an absent node, -ERANGE, NULL for an
 * index out of range); a round trip of every type in one nested object; and
 * forms a peer may write that the writer never does (float32, wide headers for
 * small numbers, duplicate keys).
 */
#include "helpers.h"

#include <errno.h>
#include <float.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <shmrig/frame.h>
#include <shmrig/registry.h>

/* ---- a codec that runs a script ---- */

struct script;
typedef int (*write_fn)(struct shmrig_encoder *enc, const struct script *sc);
/* Reads dec's metadata; records failures in sc (no cmocka asserts inside decode). */
typedef void (*read_fn)(struct shmrig_decoder *dec, struct script *sc);

struct script {
	write_fn write;
	read_fn read;
	const void *arg; /* the case the functions work from */
	void *out;       /* what the writer records */
	int failed_line; /* the first CHECK that failed while decoding; 0 none */
	int checks;      /* CHECKs run while decoding */
};

/* An assert for inside decode: cmocka's would longjmp out of the registry. */
#define CHECK(sc, cond)                                                                  \
	do {                                                                             \
		(sc)->checks++;                                                          \
		if (!(cond) && !(sc)->failed_line) {                                     \
			(sc)->failed_line = __LINE__;                                    \
			print_message("CHECK failed at line %d: %s\n", __LINE__, #cond); \
		}                                                                        \
	} while (0)

static int script_encode(void *ctx, struct shmrig_encoder *enc, const struct shmrig_value *value)
{
	const struct script *sc = ctx;

	(void)value;
	return sc->write(enc, sc);
}

static int script_decode(void *ctx, struct shmrig_decoder *dec, struct shmrig_value *out)
{
	struct script *sc = ctx;

	out->kind = SHMRIG_KIND_USER;
	if (sc->read)
		sc->read(dec, sc);
	return 0;
}

struct fixture {
	shmrig_pool *pool;
	shmrig_registry *reg;
	struct script sc;
	int codec_id;
	int user_type;
};

static void fx_open(struct fixture *fx)
{
	struct shmrig_codec codec = {
		.size = sizeof(struct shmrig_codec),
		.name = "script",
		.kinds = SHMRIG_KIND_BIT(SHMRIG_KIND_USER),
		.encode = script_encode,
		.decode = script_decode,
		.ctx = &fx->sc,
	};

	memset(fx, 0, sizeof(*fx));
	fx->pool = th_open_pool(8 * MiB, 64 * MiB);
	assert_int_equal(shmrig_registry_create(&fx->reg), 0);
	fx->codec_id = shmrig_registry_register(fx->reg, &codec);
	assert_true(fx->codec_id >= 0);
	fx->user_type = shmrig_registry_user_type(fx->reg, "scripted");
	assert_true(fx->user_type > 0);
}

static void fx_close(struct fixture *fx)
{
	assert_int_equal(th_live_blocks(fx->pool), 0);
	shmrig_registry_free(fx->reg);
	assert_int_equal(shmrig_pool_close(fx->pool), 0);
	assert_int_equal(th_count_segments(th_prefix()), 0);
}

/* Encode with the script's writer: the encode's result; the frame in *frame, *len. */
static int encode(struct fixture *fx, void **frame, size_t *len)
{
	struct shmrig_value v = { .kind = SHMRIG_KIND_USER, .user_type = fx->user_type };

	*frame = NULL;
	return shmrig_registry_encode(fx->reg, fx->pool, &v, frame, len);
}

/* Decode a frame with the script's reader: every CHECK passed, and at least one ran. */
static void decode(struct fixture *fx, const void *frame, size_t len)
{
	struct shmrig_value out;

	fx->sc.failed_line = 0;
	fx->sc.checks = 0;
	assert_int_equal(shmrig_registry_decode(fx->reg, fx->pool, frame, len, &out), 0);
	assert_int_equal(shmrig_value_release(&out), 0);
	if (fx->sc.failed_line)
		fail_msg("the reader's CHECK at line %d failed", fx->sc.failed_line);
	assert_true(fx->sc.checks > 0);
}

/* The metadata bytes of a frame. */
static const unsigned char *frame_meta(const void *frame, size_t len, uint32_t *meta_len)
{
	struct shmrig_frame f;

	assert_int_equal(shmrig_frame_parse(frame, len, &f), 0);
	*meta_len = f.meta_len;
	return f.meta;
}

/* ---- one item, every width: the exact bytes ---- */

enum put {
	PUT_NULL,
	PUT_BOOL,
	PUT_UINT,
	PUT_INT,
	PUT_DOUBLE,
	PUT_STR,  /* NUL-terminated: shmrig_meta_put_str */
	PUT_STRN, /* shmrig_meta_put_strn */
	PUT_LIST, /* of `u` nulls */
	PUT_MAP,  /* of `u` pairs "k": null */
};

struct put_case {
	const char *name;
	enum put put;
	uint64_t u;
	int64_t i;
	double d;
	size_t str_len; /* PUT_STR(N): a string of str_len bytes, 'x' unless `str` */
	const char *str;
	const char *bytes; /* the metadata, or its first bytes if meta_len says more */
	size_t nbytes;
	size_t meta_len; /* 0: nbytes */
};

#define BYTES(literal) literal, sizeof(literal) - 1

static const struct put_case put_cases[] = {
	{ "null", PUT_NULL, .bytes = BYTES("\xc0") },
	{ "true", PUT_BOOL, .u = 1, .bytes = BYTES("\xc3") },
	{ "false", PUT_BOOL, .u = 0, .bytes = BYTES("\xc2") },
	{ "uint 0", PUT_UINT, .u = 0, .bytes = BYTES("\x00") },
	{ "uint 127", PUT_UINT, .u = 127, .bytes = BYTES("\x7f") },
	{ "uint 128", PUT_UINT, .u = 128, .bytes = BYTES("\xcc\x80") },
	{ "uint 255", PUT_UINT, .u = 255, .bytes = BYTES("\xcc\xff") },
	{ "uint 256", PUT_UINT, .u = 256, .bytes = BYTES("\xcd\x01\x00") },
	{ "uint 65535", PUT_UINT, .u = 65535, .bytes = BYTES("\xcd\xff\xff") },
	{ "uint 65536", PUT_UINT, .u = 65536, .bytes = BYTES("\xce\x00\x01\x00\x00") },
	{ "uint 2^32-1", PUT_UINT, .u = UINT32_MAX, .bytes = BYTES("\xce\xff\xff\xff\xff") },
	{ "uint 2^32", PUT_UINT, .u = 1ull << 32,
	  .bytes = BYTES("\xcf\x00\x00\x00\x01\x00\x00\x00\x00") },
	{ "uint max", PUT_UINT, .u = UINT64_MAX,
	  .bytes = BYTES("\xcf\xff\xff\xff\xff\xff\xff\xff\xff") },
	{ "int 0", PUT_INT, .i = 0, .bytes = BYTES("\x00") },
	{ "int 5", PUT_INT, .i = 5, .bytes = BYTES("\x05") },
	{ "int 200", PUT_INT, .i = 200, .bytes = BYTES("\xcc\xc8") },
	{ "int max", PUT_INT, .i = INT64_MAX,
	  .bytes = BYTES("\xcf\x7f\xff\xff\xff\xff\xff\xff\xff") },
	{ "int -1", PUT_INT, .i = -1, .bytes = BYTES("\xff") },
	{ "int -32", PUT_INT, .i = -32, .bytes = BYTES("\xe0") },
	{ "int -33", PUT_INT, .i = -33, .bytes = BYTES("\xd0\xdf") },
	{ "int -128", PUT_INT, .i = -128, .bytes = BYTES("\xd0\x80") },
	{ "int -129", PUT_INT, .i = -129, .bytes = BYTES("\xd1\xff\x7f") },
	{ "int -32768", PUT_INT, .i = -32768, .bytes = BYTES("\xd1\x80\x00") },
	{ "int -32769", PUT_INT, .i = -32769, .bytes = BYTES("\xd2\xff\xff\x7f\xff") },
	{ "int min32", PUT_INT, .i = INT32_MIN, .bytes = BYTES("\xd2\x80\x00\x00\x00") },
	{ "int min32-1", PUT_INT, .i = (int64_t)INT32_MIN - 1,
	  .bytes = BYTES("\xd3\xff\xff\xff\xff\x7f\xff\xff\xff") },
	{ "int min", PUT_INT, .i = INT64_MIN,
	  .bytes = BYTES("\xd3\x80\x00\x00\x00\x00\x00\x00\x00") },
	{ "double 1.5", PUT_DOUBLE, .d = 1.5,
	  .bytes = BYTES("\xcb\x3f\xf8\x00\x00\x00\x00\x00\x00") },
	{ "double -0", PUT_DOUBLE, .d = -0.0,
	  .bytes = BYTES("\xcb\x80\x00\x00\x00\x00\x00\x00\x00") },
	{ "double max", PUT_DOUBLE, .d = DBL_MAX,
	  .bytes = BYTES("\xcb\x7f\xef\xff\xff\xff\xff\xff\xff") },
	{ "double 2", PUT_DOUBLE, .d = 2.0, /* an integral double stays a double */
	  .bytes = BYTES("\xcb\x40\x00\x00\x00\x00\x00\x00\x00") },
	{ "str empty", PUT_STR, .str = "", .bytes = BYTES("\xa0") },
	{ "str abc", PUT_STR, .str = "abc", .str_len = 3,
	  .bytes = BYTES("\xa3"
			 "abc") },
	{ "str utf-8", PUT_STR, .str = "\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80", .str_len = 9,
	  .bytes = BYTES("\xa9\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80") },
	{ "strn with NUL", PUT_STRN, .str = "a\0b", .str_len = 3,
	  .bytes = BYTES("\xa3"
			 "a\0b") },
	{ "strn of 2 of 3", PUT_STRN, .str = "abc", .str_len = 2,
	  .bytes = BYTES("\xa2"
			 "ab") },
	{ "str 31", PUT_STR, .str_len = 31, .bytes = BYTES("\xbf"), .meta_len = 1 + 31 },
	{ "str 32", PUT_STR, .str_len = 32, .bytes = BYTES("\xd9\x20"), .meta_len = 2 + 32 },
	{ "str 255", PUT_STRN, .str_len = 255, .bytes = BYTES("\xd9\xff"), .meta_len = 2 + 255 },
	{ "str 256", PUT_STR, .str_len = 256, .bytes = BYTES("\xda\x01\x00"), .meta_len = 3 + 256 },
	{ "str 65535", PUT_STRN, .str_len = 65535, .bytes = BYTES("\xda\xff\xff"),
	  .meta_len = 3 + 65535 },
	{ "str 65536", PUT_STR, .str_len = 65536, .bytes = BYTES("\xdb\x00\x01\x00\x00"),
	  .meta_len = 5 + 65536 },
	{ "list 0", PUT_LIST, .u = 0, .bytes = BYTES("\x90") },
	{ "list 15", PUT_LIST, .u = 15, .bytes = BYTES("\x9f\xc0"), .meta_len = 1 + 15 },
	{ "list 16", PUT_LIST, .u = 16, .bytes = BYTES("\xdc\x00\x10\xc0"), .meta_len = 3 + 16 },
	{ "list 65535", PUT_LIST, .u = 65535, .bytes = BYTES("\xdc\xff\xff\xc0"),
	  .meta_len = 3 + 65535 },
	{ "list 65536", PUT_LIST, .u = 65536, .bytes = BYTES("\xdd\x00\x01\x00\x00\xc0"),
	  .meta_len = 5 + 65536 },
	{ "map 0", PUT_MAP, .u = 0, .bytes = BYTES("\x80") },
	{ "map 1", PUT_MAP, .u = 1, .bytes = BYTES("\x81\xa1k\xc0") },
	{ "map 15", PUT_MAP, .u = 15, .bytes = BYTES("\x8f\xa1k\xc0"), .meta_len = 1 + 15 * 3 },
	{ "map 16", PUT_MAP, .u = 16, .bytes = BYTES("\xde\x00\x10\xa1k\xc0"),
	  .meta_len = 3 + 16 * 3 },
	{ "map 65536", PUT_MAP, .u = 65536, .bytes = BYTES("\xdf\x00\x01\x00\x00\xa1k\xc0"),
	  .meta_len = 5 + 65536 * 3 },
};

/* 65536 'x' and a NUL: the strings of every width. */
static char xs[65537];

static const char *case_str(const struct put_case *c)
{
	return c->str ? c->str : xs + sizeof(xs) - 1 - c->str_len;
}

static int write_case(struct shmrig_encoder *enc, const struct script *sc)
{
	const struct put_case *c = sc->arg;
	int ret = 0;

	switch (c->put) {
	case PUT_NULL:
		return shmrig_meta_put_null(enc);
	case PUT_BOOL:
		return shmrig_meta_put_bool(enc, c->u != 0);
	case PUT_UINT:
		return shmrig_meta_put_uint(enc, c->u);
	case PUT_INT:
		return shmrig_meta_put_int(enc, c->i);
	case PUT_DOUBLE:
		return shmrig_meta_put_double(enc, c->d);
	case PUT_STR:
		return shmrig_meta_put_str(enc, case_str(c));
	case PUT_STRN:
		return shmrig_meta_put_strn(enc, case_str(c), c->str_len);
	case PUT_LIST:
		ret = shmrig_meta_put_list(enc, (uint32_t)c->u);
		for (uint64_t i = 0; i < c->u && !ret; i++)
			ret = shmrig_meta_put_null(enc);
		return ret;
	case PUT_MAP:
		ret = shmrig_meta_put_map(enc, (uint32_t)c->u);
		for (uint64_t i = 0; i < c->u && !ret; i++) {
			ret = shmrig_meta_put_str(enc, "k");
			if (!ret)
				ret = shmrig_meta_put_null(enc);
		}
		return ret;
	}
	return -EPROTO;
}

/* The root reads back as the item written, by the reader of its type. */
static void read_case(struct shmrig_decoder *dec, struct script *sc)
{
	const struct put_case *c = sc->arg;
	const shmrig_meta *root = shmrig_decoder_meta(dec);
	uint64_t u = 0;
	int64_t i = 0;
	double d = 0;
	bool b = false;
	const char *str = NULL;
	size_t len = 0;

	switch (c->put) {
	case PUT_NULL:
		CHECK(sc, shmrig_meta_type(root) == SHMRIG_META_NULL);
		break;
	case PUT_BOOL:
		CHECK(sc, shmrig_meta_type(root) == SHMRIG_META_BOOL);
		CHECK(sc, shmrig_meta_bool(root, &b) == 0 && b == (c->u != 0));
		break;
	case PUT_UINT:
		CHECK(sc, shmrig_meta_type(root) == SHMRIG_META_UINT);
		CHECK(sc, shmrig_meta_uint(root, &u) == 0 && u == c->u);
		break;
	case PUT_INT:
		CHECK(sc,
		      shmrig_meta_type(root) == (c->i < 0 ? SHMRIG_META_INT : SHMRIG_META_UINT));
		CHECK(sc, shmrig_meta_int(root, &i) == 0 && i == c->i);
		break;
	case PUT_DOUBLE:
		CHECK(sc, shmrig_meta_type(root) == SHMRIG_META_DOUBLE);
		CHECK(sc, shmrig_meta_double(root, &d) == 0 && memcmp(&d, &c->d, sizeof(d)) == 0);
		break;
	case PUT_STR:
	case PUT_STRN:
		CHECK(sc, shmrig_meta_type(root) == SHMRIG_META_STR);
		CHECK(sc, shmrig_meta_str(root, &str, &len) == 0 && len == c->str_len &&
				  str != NULL && memcmp(str, case_str(c), len) == 0);
		break;
	case PUT_LIST:
		CHECK(sc, shmrig_meta_type(root) == SHMRIG_META_LIST);
		CHECK(sc, shmrig_meta_count(root) == c->u);
		CHECK(sc, c->u == 0 || shmrig_meta_type(shmrig_meta_at(root, (uint32_t)c->u - 1)) ==
					       SHMRIG_META_NULL);
		break;
	case PUT_MAP:
		CHECK(sc, shmrig_meta_type(root) == SHMRIG_META_MAP);
		CHECK(sc, shmrig_meta_count(root) == c->u);
		CHECK(sc, c->u == 0 ||
				  shmrig_meta_type(shmrig_meta_get(root, "k")) == SHMRIG_META_NULL);
		break;
	}
}

/* Every width of every item: msgpack-c's bytes (the wire format), read back as written. */
static void test_put_bytes(void **state)
{
	struct fixture fx;

	(void)state;
	memset(xs, 'x', sizeof(xs) - 1);
	fx_open(&fx);
	fx.sc.write = write_case;
	fx.sc.read = read_case;
	for (size_t k = 0; k < sizeof(put_cases) / sizeof(put_cases[0]); k++) {
		const struct put_case *c = &put_cases[k];
		size_t want_len = c->meta_len ? c->meta_len : c->nbytes;
		const unsigned char *meta;
		uint32_t meta_len;
		void *frame;
		size_t len;

		fx.sc.arg = c;
		if (encode(&fx, &frame, &len))
			fail_msg("case '%s': encode failed: %s", c->name, shmrig_last_error());
		meta = frame_meta(frame, len, &meta_len);
		if (meta_len != want_len)
			fail_msg("case '%s': %u bytes of metadata, expected %zu", c->name, meta_len,
				 want_len);
		for (size_t i = 0; i < c->nbytes; i++)
			if (meta[i] != (unsigned char)c->bytes[i])
				fail_msg("case '%s': metadata byte %zu is 0x%02x, expected 0x%02x",
					 c->name, i, meta[i], (unsigned char)c->bytes[i]);
		decode(&fx, frame, len);
		free(frame);
	}
	fx_close(&fx);
}

/* shmrig_meta_put_array: {"dtype", "shape", "order"}, as the ndarray codec writes it. */
static int write_array(struct shmrig_encoder *enc, const struct script *sc)
{
	return shmrig_meta_put_array(enc, sc->arg);
}

static void read_array(struct shmrig_decoder *dec, struct script *sc)
{
	const struct shmrig_array *want = sc->arg;
	struct shmrig_array got;

	CHECK(sc, shmrig_meta_read_array(shmrig_decoder_meta(dec), &got) == 0);
	CHECK(sc, got.dtype == want->dtype && got.ndim == want->ndim && got.order == want->order &&
			  got.data == NULL);
	for (uint32_t d = 0; d < want->ndim; d++)
		CHECK(sc, got.shape[d] == want->shape[d]);
}

static void test_put_array(void **state)
{
	static const char want[] = "\x83\xa5"
				   "dtype\xa7"
				   "float64\xa5"
				   "shape\x92\x02\xcd\x01\x2c\xa5"
				   "order\xa1"
				   "F";
	struct shmrig_array array = {
		.dtype = SHMRIG_DTYPE_FLOAT64, .ndim = 2, .shape = { 2, 300 }, .order = 'F'
	};
	struct shmrig_array scalar = { .dtype = SHMRIG_DTYPE_BOOL, .order = 'C' };
	struct fixture fx;
	const unsigned char *meta;
	uint32_t meta_len;
	void *frame;
	size_t len;

	(void)state;
	fx_open(&fx);
	fx.sc.write = write_array;
	fx.sc.read = read_array;
	fx.sc.arg = &array;
	assert_int_equal(encode(&fx, &frame, &len), 0);
	meta = frame_meta(frame, len, &meta_len);
	assert_int_equal(meta_len, sizeof(want) - 1);
	assert_memory_equal(meta, want, sizeof(want) - 1);
	decode(&fx, frame, len);
	free(frame);

	fx.sc.arg = &scalar; /* 0 dimensions: an empty shape */
	assert_int_equal(encode(&fx, &frame, &len), 0);
	decode(&fx, frame, len);
	free(frame);
	fx_close(&fx);
}

/* ---- every type in one object, and every reader ---- */

/* The writes of a script, in order: the first error stops the rest and stays in ret. */
#define PUT(ret, call) ((ret) = (ret) ? (ret) : (call))

static const char utf8[] = "h\xc3\xa9llo \xf0\x9f\x98\x80";

/*
 * {"null": null, "true": true, "false": false, "u0": 0, "umax": 2^64-1,
 *  "i": -1, "imin": INT64_MIN, "ipos": 5, "d": 3.25, "dneg": -1e300,
 *  "s": utf8, "sn": "a\0b", "empty": "",
 *  "list": [1, "x", [], {}, -2.5], "map": {"k": null, "": 7},
 *  "array": {"dtype": "int16", "shape": [3, 0, 4], "order": "C"}}
 */
enum {
	ROOT_ENTRIES = 16
};

static int write_every_type(struct shmrig_encoder *enc, const struct script *sc)
{
	struct shmrig_array array = {
		.dtype = SHMRIG_DTYPE_INT16, .ndim = 3, .shape = { 3, 0, 4 }, .order = 'C'
	};
	int ret = 0;

	(void)sc;
	PUT(ret, shmrig_meta_put_map(enc, ROOT_ENTRIES));
	PUT(ret, shmrig_meta_put_str(enc, "null"));
	PUT(ret, shmrig_meta_put_null(enc));
	PUT(ret, shmrig_meta_put_str(enc, "true"));
	PUT(ret, shmrig_meta_put_bool(enc, true));
	PUT(ret, shmrig_meta_put_str(enc, "false"));
	PUT(ret, shmrig_meta_put_bool(enc, false));
	PUT(ret, shmrig_meta_put_str(enc, "u0"));
	PUT(ret, shmrig_meta_put_uint(enc, 0));
	PUT(ret, shmrig_meta_put_str(enc, "umax"));
	PUT(ret, shmrig_meta_put_uint(enc, UINT64_MAX));
	PUT(ret, shmrig_meta_put_str(enc, "i"));
	PUT(ret, shmrig_meta_put_int(enc, -1));
	PUT(ret, shmrig_meta_put_str(enc, "imin"));
	PUT(ret, shmrig_meta_put_int(enc, INT64_MIN));
	PUT(ret, shmrig_meta_put_str(enc, "ipos"));
	PUT(ret, shmrig_meta_put_int(enc, 5));
	PUT(ret, shmrig_meta_put_str(enc, "d"));
	PUT(ret, shmrig_meta_put_double(enc, 3.25));
	PUT(ret, shmrig_meta_put_str(enc, "dneg"));
	PUT(ret, shmrig_meta_put_double(enc, -1e300));
	PUT(ret, shmrig_meta_put_str(enc, "s"));
	PUT(ret, shmrig_meta_put_str(enc, utf8));
	PUT(ret, shmrig_meta_put_strn(enc, "sn", 2));
	PUT(ret, shmrig_meta_put_strn(enc, "a\0b", 3));
	PUT(ret, shmrig_meta_put_str(enc, "empty"));
	PUT(ret, shmrig_meta_put_strn(enc, "", 0));
	PUT(ret, shmrig_meta_put_str(enc, "list"));
	PUT(ret, shmrig_meta_put_list(enc, 5));
	PUT(ret, shmrig_meta_put_uint(enc, 1));
	PUT(ret, shmrig_meta_put_str(enc, "x"));
	PUT(ret, shmrig_meta_put_list(enc, 0));
	PUT(ret, shmrig_meta_put_map(enc, 0));
	PUT(ret, shmrig_meta_put_double(enc, -2.5));
	PUT(ret, shmrig_meta_put_str(enc, "map"));
	PUT(ret, shmrig_meta_put_map(enc, 2));
	PUT(ret, shmrig_meta_put_str(enc, "k"));
	PUT(ret, shmrig_meta_put_null(enc));
	PUT(ret, shmrig_meta_put_str(enc, ""));
	PUT(ret, shmrig_meta_put_uint(enc, 7));
	PUT(ret, shmrig_meta_put_str(enc, "array"));
	PUT(ret, shmrig_meta_put_array(enc, &array));
	return ret;
}

static void read_every_type(struct shmrig_decoder *dec, struct script *sc)
{
	static const char *const keys[ROOT_ENTRIES] = { "null",  "true", "false", "u0",
							"umax",  "i",    "imin",  "ipos",
							"d",     "dneg", "s",     "sn",
							"empty", "list", "map",   "array" };
	static const enum shmrig_meta_type types[ROOT_ENTRIES] = {
		SHMRIG_META_NULL,   SHMRIG_META_BOOL,   SHMRIG_META_BOOL, SHMRIG_META_UINT,
		SHMRIG_META_UINT,   SHMRIG_META_INT,    SHMRIG_META_INT,  SHMRIG_META_UINT,
		SHMRIG_META_DOUBLE, SHMRIG_META_DOUBLE, SHMRIG_META_STR,  SHMRIG_META_STR,
		SHMRIG_META_STR,    SHMRIG_META_LIST,   SHMRIG_META_MAP,  SHMRIG_META_MAP,
	};
	const shmrig_meta *root = shmrig_decoder_meta(dec);
	const shmrig_meta *list = shmrig_meta_get(root, "list");
	const shmrig_meta *map = shmrig_meta_get(root, "map");
	const shmrig_meta *m;
	struct shmrig_array array;
	const char *str, *key;
	size_t len, key_len;
	uint64_t u;
	int64_t i;
	double d;
	bool b;
	char *copy;

	/* the root: a map whose entries come in the order written */
	CHECK(sc, shmrig_meta_type(root) == SHMRIG_META_MAP);
	CHECK(sc, shmrig_meta_count(root) == ROOT_ENTRIES);
	for (uint32_t k = 0; k < ROOT_ENTRIES; k++) {
		m = shmrig_meta_entry(root, k, &key, &key_len);
		CHECK(sc, m != NULL && key_len == strlen(keys[k]) &&
				  memcmp(key, keys[k], key_len) == 0);
		CHECK(sc, m == shmrig_meta_get(root, keys[k]));
		CHECK(sc, shmrig_meta_type(m) == types[k]);
	}
	m = shmrig_meta_entry(root, 0, NULL, NULL); /* key and its length are optional */
	CHECK(sc, shmrig_meta_type(m) == SHMRIG_META_NULL);
	key = "stale";
	key_len = 9;
	CHECK(sc, shmrig_meta_entry(root, ROOT_ENTRIES, &key, &key_len) == NULL && key == NULL &&
			  key_len == 0);
	CHECK(sc, shmrig_meta_entry(list, 0, &key, &key_len) == NULL); /* not a map */
	CHECK(sc, shmrig_meta_get(root, "absent") == NULL);
	CHECK(sc, shmrig_meta_get(root, "nul") == NULL); /* a prefix is no match */
	CHECK(sc, shmrig_meta_get(root, NULL) == NULL);
	CHECK(sc, shmrig_meta_get(list, "k") == NULL); /* not a map */
	CHECK(sc, shmrig_meta_at(root, 0) == NULL);    /* not a list */

	/* scalars */
	CHECK(sc, shmrig_meta_bool(shmrig_meta_get(root, "true"), &b) == 0 && b);
	CHECK(sc, shmrig_meta_bool(shmrig_meta_get(root, "false"), &b) == 0 && !b);
	CHECK(sc, shmrig_meta_uint(shmrig_meta_get(root, "u0"), &u) == 0 && u == 0);
	CHECK(sc, shmrig_meta_uint(shmrig_meta_get(root, "umax"), &u) == 0 && u == UINT64_MAX);
	CHECK(sc, shmrig_meta_int(shmrig_meta_get(root, "i"), &i) == 0 && i == -1);
	CHECK(sc, shmrig_meta_int(shmrig_meta_get(root, "imin"), &i) == 0 && i == INT64_MIN);
	CHECK(sc, shmrig_meta_int(shmrig_meta_get(root, "ipos"), &i) == 0 && i == 5);
	CHECK(sc, shmrig_meta_uint(shmrig_meta_get(root, "ipos"), &u) == 0 && u == 5);
	CHECK(sc, shmrig_meta_int(shmrig_meta_get(root, "u0"), &i) == 0 && i == 0);
	CHECK(sc, shmrig_meta_double(shmrig_meta_get(root, "d"), &d) == 0 && d == 3.25);
	CHECK(sc, shmrig_meta_double(shmrig_meta_get(root, "dneg"), &d) == 0 && d == -1e300);
	/* integers read as doubles, converted */
	CHECK(sc, shmrig_meta_double(shmrig_meta_get(root, "umax"), &d) == 0 && d == 0x1p64);
	CHECK(sc, shmrig_meta_double(shmrig_meta_get(root, "imin"), &d) == 0 && d == -0x1p63);
	CHECK(sc, shmrig_meta_str(shmrig_meta_get(root, "s"), &str, &len) == 0 &&
			  len == sizeof(utf8) - 1 && memcmp(str, utf8, len) == 0);
	CHECK(sc, shmrig_meta_str(shmrig_meta_get(root, "sn"), &str, &len) == 0 && len == 3 &&
			  memcmp(str, "a\0b", 3) == 0);
	CHECK(sc, shmrig_meta_str(shmrig_meta_get(root, "empty"), &str, &len) == 0 && len == 0 &&
			  str != NULL);

	/* copies owned by the value: NUL-terminated (a NUL inside stays) */
	copy = shmrig_decoder_strdup(dec, shmrig_meta_get(root, "s"));
	CHECK(sc, copy && strcmp(copy, utf8) == 0);
	copy = shmrig_decoder_strdup(dec, shmrig_meta_get(root, "sn"));
	CHECK(sc, copy && memcmp(copy, "a\0b\0", 4) == 0);
	copy = shmrig_decoder_strdup(dec, shmrig_meta_get(root, "empty"));
	CHECK(sc, copy && copy[0] == '\0');
	CHECK(sc, shmrig_decoder_strdup(dec, shmrig_meta_get(root, "u0")) == NULL);
	CHECK(sc, shmrig_decoder_strdup(dec, NULL) == NULL);

	/* the list, by index */
	CHECK(sc, shmrig_meta_count(list) == 5);
	CHECK(sc, shmrig_meta_uint(shmrig_meta_at(list, 0), &u) == 0 && u == 1);
	CHECK(sc, shmrig_meta_str(shmrig_meta_at(list, 1), &str, &len) == 0 && len == 1 &&
			  str[0] == 'x');
	CHECK(sc, shmrig_meta_type(shmrig_meta_at(list, 2)) == SHMRIG_META_LIST &&
			  shmrig_meta_count(shmrig_meta_at(list, 2)) == 0);
	CHECK(sc, shmrig_meta_type(shmrig_meta_at(list, 3)) == SHMRIG_META_MAP &&
			  shmrig_meta_count(shmrig_meta_at(list, 3)) == 0);
	CHECK(sc, shmrig_meta_double(shmrig_meta_at(list, 4), &d) == 0 && d == -2.5);
	CHECK(sc, shmrig_meta_at(list, 5) == NULL);
	CHECK(sc, shmrig_meta_at(list, UINT32_MAX) == NULL);
	CHECK(sc, shmrig_meta_at(shmrig_meta_at(list, 2), 0) == NULL); /* empty */

	/* the inner map, with an empty key */
	CHECK(sc, shmrig_meta_count(map) == 2);
	CHECK(sc, shmrig_meta_type(shmrig_meta_get(map, "k")) == SHMRIG_META_NULL);
	CHECK(sc, shmrig_meta_uint(shmrig_meta_get(map, ""), &u) == 0 && u == 7);
	m = shmrig_meta_entry(map, 1, &key, &key_len);
	CHECK(sc, m && key != NULL && key_len == 0);

	/* the array description */
	CHECK(sc, shmrig_meta_read_array(shmrig_meta_get(root, "array"), &array) == 0);
	CHECK(sc, array.dtype == SHMRIG_DTYPE_INT16 && array.ndim == 3 && array.shape[0] == 3 &&
			  array.shape[1] == 0 && array.shape[2] == 4 && array.order == 'C');

	/* counts of scalars are 0 */
	CHECK(sc, shmrig_meta_count(shmrig_meta_get(root, "s")) == 0);
	CHECK(sc, shmrig_meta_count(shmrig_meta_get(root, "null")) == 0);
}

static void test_every_type_round_trip(void **state)
{
	struct fixture fx;
	void *frame;
	size_t len;

	(void)state;
	fx_open(&fx);
	fx.sc.write = write_every_type;
	fx.sc.read = read_every_type;
	assert_int_equal(encode(&fx, &frame, &len), 0);
	decode(&fx, frame, len);
	assert_true(fx.sc.checks > 80);
	free(frame);
	fx_close(&fx);
}

/* ---- errors ---- */

/* Wrong types and ranges: -EBADMSG, -ERANGE, -EINVAL; nothing written or changed. */
static void read_errors(struct shmrig_decoder *dec, struct script *sc)
{
	const shmrig_meta *root = shmrig_decoder_meta(dec);
	const shmrig_meta *nodes[] = {
		shmrig_meta_get(root, "null"),
		shmrig_meta_get(root, "true"),
		shmrig_meta_get(root, "u0"),
		shmrig_meta_get(root, "i"),
		shmrig_meta_get(root, "d"),
		shmrig_meta_get(root, "s"),
		shmrig_meta_get(root, "list"),
		shmrig_meta_get(root, "map"),
		NULL, /* absent */
	};
	struct shmrig_array array;
	const char *str = "untouched";
	size_t len = 99;
	uint64_t u = 99;
	int64_t i = 99;
	double d = 99;
	bool b = true;

	for (size_t k = 0; k < sizeof(nodes) / sizeof(nodes[0]); k++) {
		enum shmrig_meta_type type = shmrig_meta_type(nodes[k]);

		CHECK(sc,
		      (k == sizeof(nodes) / sizeof(nodes[0]) - 1) == (type == SHMRIG_META_NONE));
		if (type != SHMRIG_META_UINT)
			CHECK(sc, shmrig_meta_uint(nodes[k], &u) == -EBADMSG);
		if (type != SHMRIG_META_UINT && type != SHMRIG_META_INT)
			CHECK(sc, shmrig_meta_int(nodes[k], &i) == -EBADMSG);
		if (type != SHMRIG_META_UINT && type != SHMRIG_META_INT &&
		    type != SHMRIG_META_DOUBLE)
			CHECK(sc, shmrig_meta_double(nodes[k], &d) == -EBADMSG);
		if (type != SHMRIG_META_BOOL)
			CHECK(sc, shmrig_meta_bool(nodes[k], &b) == -EBADMSG);
		if (type != SHMRIG_META_STR) {
			CHECK(sc, shmrig_meta_str(nodes[k], &str, &len) == -EBADMSG);
			CHECK(sc, shmrig_decoder_strdup(dec, nodes[k]) == NULL);
		}
		if (type != SHMRIG_META_LIST && type != SHMRIG_META_MAP)
			CHECK(sc, shmrig_meta_count(nodes[k]) == 0);
		if (type != SHMRIG_META_LIST)
			CHECK(sc, shmrig_meta_at(nodes[k], 0) == NULL);
		if (type != SHMRIG_META_MAP) {
			CHECK(sc, shmrig_meta_get(nodes[k], "k") == NULL);
			CHECK(sc, shmrig_meta_entry(nodes[k], 0, NULL, NULL) == NULL);
		}
		CHECK(sc, shmrig_meta_read_array(nodes[k], &array) == -EBADMSG);
	}
	/* a failed read leaves the out-parameters alone */
	CHECK(sc, u == 99 && i == 99 && d == 99 && b && len == 99 && strcmp(str, "untouched") == 0);
	CHECK(sc,
	      shmrig_meta_bool(NULL, &b) == -EBADMSG &&
		      strstr(shmrig_last_error(), "a bool was expected, found nothing") != NULL);
	CHECK(sc, shmrig_meta_uint(shmrig_meta_get(root, "s"), &u) == -EBADMSG &&
			  strstr(shmrig_last_error(), "a non-negative integer was expected, "
						      "found a string") != NULL);

	/* a uint above INT64_MAX does not fit an int64_t; INT64_MAX does */
	CHECK(sc, shmrig_meta_int(shmrig_meta_get(root, "big"), &i) == -ERANGE && i == 99);
	CHECK(sc, shmrig_meta_int(shmrig_meta_get(root, "max"), &i) == 0 && i == INT64_MAX);

	/* NULL out-parameters */
	CHECK(sc, shmrig_meta_uint(shmrig_meta_get(root, "u0"), NULL) == -EINVAL);
	CHECK(sc, shmrig_meta_int(shmrig_meta_get(root, "u0"), NULL) == -EINVAL);
	CHECK(sc, shmrig_meta_double(shmrig_meta_get(root, "d"), NULL) == -EINVAL);
	CHECK(sc, shmrig_meta_bool(shmrig_meta_get(root, "true"), NULL) == -EINVAL);
	CHECK(sc, shmrig_meta_str(shmrig_meta_get(root, "s"), NULL, &len) == -EINVAL);
	CHECK(sc, shmrig_meta_str(shmrig_meta_get(root, "s"), &str, NULL) == -EINVAL);
	CHECK(sc, shmrig_meta_read_array(shmrig_meta_get(root, "array"), NULL) == -EINVAL);

	/* array descriptions that are wrong */
	CHECK(sc, shmrig_meta_read_array(shmrig_meta_get(root, "array"), &array) == 0);
	CHECK(sc, shmrig_meta_read_array(shmrig_meta_get(root, "bad_dtype"), &array) == -EBADMSG &&
			  strstr(shmrig_last_error(), "unknown dtype 'complex'") != NULL);
	CHECK(sc, shmrig_meta_read_array(shmrig_meta_get(root, "bad_order"), &array) == -EBADMSG &&
			  strstr(shmrig_last_error(), "order") != NULL);
	CHECK(sc, shmrig_meta_read_array(shmrig_meta_get(root, "bad_shape"), &array) == -EBADMSG &&
			  strstr(shmrig_last_error(), "shape[1]") != NULL);
	CHECK(sc, shmrig_meta_read_array(shmrig_meta_get(root, "deep"), &array) == -EBADMSG &&
			  strstr(shmrig_last_error(), "17 dimensions") != NULL);
	CHECK(sc, shmrig_meta_read_array(shmrig_meta_get(root, "huge"), &array) == -EBADMSG &&
			  strstr(shmrig_last_error(), "overflows") != NULL);
}

/* A description {"dtype": dtype, "shape": [ndim of dim, with shape[1] = second], "order": order}. */
static int put_description(struct shmrig_encoder *enc, const char *key, const char *dtype,
			   uint32_t ndim, uint64_t dim, bool second_is_str, const char *order)
{
	int ret = 0;

	PUT(ret, shmrig_meta_put_str(enc, key));
	PUT(ret, shmrig_meta_put_map(enc, 3));
	PUT(ret, shmrig_meta_put_str(enc, "dtype"));
	PUT(ret, shmrig_meta_put_str(enc, dtype));
	PUT(ret, shmrig_meta_put_str(enc, "shape"));
	PUT(ret, shmrig_meta_put_list(enc, ndim));
	for (uint32_t d = 0; d < ndim; d++)
		PUT(ret, d == 1 && second_is_str ? shmrig_meta_put_str(enc, "2") :
						   shmrig_meta_put_uint(enc, dim));
	PUT(ret, shmrig_meta_put_str(enc, "order"));
	PUT(ret, shmrig_meta_put_str(enc, order));
	return ret;
}

static int write_for_errors(struct shmrig_encoder *enc, const struct script *sc)
{
	int ret = 0;

	(void)sc;
	PUT(ret, shmrig_meta_put_map(enc, 16));
	PUT(ret, shmrig_meta_put_str(enc, "null"));
	PUT(ret, shmrig_meta_put_null(enc));
	PUT(ret, shmrig_meta_put_str(enc, "true"));
	PUT(ret, shmrig_meta_put_bool(enc, true));
	PUT(ret, shmrig_meta_put_str(enc, "u0"));
	PUT(ret, shmrig_meta_put_uint(enc, 0));
	PUT(ret, shmrig_meta_put_str(enc, "i"));
	PUT(ret, shmrig_meta_put_int(enc, -7));
	PUT(ret, shmrig_meta_put_str(enc, "d"));
	PUT(ret, shmrig_meta_put_double(enc, 0.5));
	PUT(ret, shmrig_meta_put_str(enc, "s"));
	PUT(ret, shmrig_meta_put_str(enc, "text"));
	PUT(ret, shmrig_meta_put_str(enc, "list"));
	PUT(ret, shmrig_meta_put_list(enc, 1));
	PUT(ret, shmrig_meta_put_null(enc));
	PUT(ret, shmrig_meta_put_str(enc, "map"));
	PUT(ret, shmrig_meta_put_map(enc, 1));
	PUT(ret, shmrig_meta_put_str(enc, "k"));
	PUT(ret, shmrig_meta_put_null(enc));
	PUT(ret, shmrig_meta_put_str(enc, "big"));
	PUT(ret, shmrig_meta_put_uint(enc, (uint64_t)INT64_MAX + 1));
	PUT(ret, shmrig_meta_put_str(enc, "max"));
	PUT(ret, shmrig_meta_put_uint(enc, INT64_MAX));
	PUT(ret, put_description(enc, "array", "uint8", 2, 3, false, "C"));
	PUT(ret, put_description(enc, "bad_dtype", "complex", 1, 3, false, "C"));
	PUT(ret, put_description(enc, "bad_order", "uint8", 1, 3, false, "R"));
	PUT(ret, put_description(enc, "bad_shape", "uint8", 2, 3, true, "C"));
	PUT(ret, put_description(enc, "deep", "uint8", SHMRIG_MAX_DIMS + 1, 1, false, "C"));
	PUT(ret, put_description(enc, "huge", "float64", 2, 1ull << 62, false, "F"));
	return ret;
}

static void test_read_errors(void **state)
{
	struct fixture fx;
	void *frame;
	size_t len;

	(void)state;
	fx_open(&fx);
	fx.sc.write = write_for_errors;
	fx.sc.read = read_errors;
	assert_int_equal(encode(&fx, &frame, &len), 0);
	decode(&fx, frame, len);
	free(frame);
	fx_close(&fx);
}

/* Every refused write answers -EINVAL and writes nothing: the metadata after them is {"ok": 1}. */
struct refused {
	int results[24];
	int n;
};

static int write_refused(struct shmrig_encoder *enc, const struct script *sc)
{
	static const char *const bad_utf8[] = {
		"\x80",             /* a lone continuation byte */
		"\xc0\x80",         /* an overlong NUL */
		"\xe0\x80\xaf",     /* an overlong '/' */
		"\xed\xa0\x80",     /* a surrogate, U+D800 */
		"\xf4\x90\x80\x80", /* past U+10FFFF */
		"\xe2\x82",         /* cut short */
		"ok\xff",           /* 0xff is never UTF-8 */
	};
	struct shmrig_array bad_dtype = { .dtype = SHMRIG_DTYPE_COUNT, .order = 'C' };
	struct shmrig_array bad_ndim = { .dtype = SHMRIG_DTYPE_INT8,
					 .ndim = SHMRIG_MAX_DIMS + 1,
					 .order = 'C' };
	struct shmrig_array bad_order = { .dtype = SHMRIG_DTYPE_INT8, .order = 'R' };
	struct refused *r = sc->out;
	int ret;

	r->n = 0;
	r->results[r->n++] = shmrig_meta_put_double(enc, NAN);
	r->results[r->n++] = shmrig_meta_put_double(enc, INFINITY);
	r->results[r->n++] = shmrig_meta_put_double(enc, -INFINITY);
	for (size_t i = 0; i < sizeof(bad_utf8) / sizeof(bad_utf8[0]); i++)
		r->results[r->n++] = shmrig_meta_put_str(enc, bad_utf8[i]);
	r->results[r->n++] = shmrig_meta_put_strn(enc, "\xc3\xa9", 1); /* cut inside */
	r->results[r->n++] = shmrig_meta_put_str(enc, NULL);
	r->results[r->n++] = shmrig_meta_put_strn(enc, NULL, 0);
	r->results[r->n++] = shmrig_meta_put_array(enc, NULL);
	r->results[r->n++] = shmrig_meta_put_array(enc, &bad_dtype);
	r->results[r->n++] = shmrig_meta_put_array(enc, &bad_ndim);
	r->results[r->n++] = shmrig_meta_put_array(enc, &bad_order);
	ret = shmrig_meta_put_map(enc, 1);
	if (!ret)
		ret = shmrig_meta_put_str(enc, "ok");
	return ret ? ret : shmrig_meta_put_uint(enc, 1);
}

static void read_ok(struct shmrig_decoder *dec, struct script *sc)
{
	uint64_t u;

	CHECK(sc,
	      shmrig_meta_uint(shmrig_meta_get(shmrig_decoder_meta(dec), "ok"), &u) == 0 && u == 1);
}

static void test_put_refused(void **state)
{
	struct refused r;
	struct fixture fx;
	const unsigned char *meta;
	uint32_t meta_len;
	void *frame;
	size_t len;

	(void)state;
	fx_open(&fx);
	fx.sc.write = write_refused;
	fx.sc.read = read_ok;
	fx.sc.out = &r;
	assert_int_equal(encode(&fx, &frame, &len), 0);
	assert_int_equal(r.n, 17);
	for (int i = 0; i < r.n; i++)
		if (r.results[i] != -EINVAL)
			fail_msg("refused write %d answered %d, not -EINVAL", i, r.results[i]);
	meta = frame_meta(frame, len, &meta_len);
	assert_int_equal(meta_len, 5);
	assert_memory_equal(meta, "\x81\xa2ok\x01", 5);
	decode(&fx, frame, len);
	free(frame);
	fx_close(&fx);
}

/* Outside any encode or decode: NULL handles and nodes. */
static void test_null_arguments(void **state)
{
	struct shmrig_array array = { .dtype = SHMRIG_DTYPE_INT8, .order = 'C' };
	const char *key = "stale";
	size_t key_len = 3;
	uint64_t u;
	int64_t i;
	double d;
	bool b;
	const char *str;
	size_t len;

	(void)state;
	assert_int_equal(shmrig_meta_put_map(NULL, 0), -EINVAL);
	assert_non_null(strstr(shmrig_last_error(), "NULL encoder"));
	assert_int_equal(shmrig_meta_put_list(NULL, 0), -EINVAL);
	assert_int_equal(shmrig_meta_put_str(NULL, "x"), -EINVAL);
	assert_int_equal(shmrig_meta_put_str(NULL, NULL), -EINVAL);
	assert_int_equal(shmrig_meta_put_strn(NULL, "x", 1), -EINVAL);
	assert_int_equal(shmrig_meta_put_uint(NULL, 1), -EINVAL);
	assert_int_equal(shmrig_meta_put_int(NULL, -1), -EINVAL);
	assert_int_equal(shmrig_meta_put_double(NULL, 1.0), -EINVAL);
	assert_int_equal(shmrig_meta_put_bool(NULL, true), -EINVAL);
	assert_int_equal(shmrig_meta_put_null(NULL), -EINVAL);
	assert_int_equal(shmrig_meta_put_array(NULL, &array), -EINVAL);

	assert_null(shmrig_decoder_meta(NULL));
	assert_null(shmrig_decoder_strdup(NULL, NULL));
	assert_int_equal(shmrig_meta_type(NULL), SHMRIG_META_NONE);
	assert_null(shmrig_meta_get(NULL, "k"));
	assert_int_equal(shmrig_meta_count(NULL), 0);
	assert_null(shmrig_meta_at(NULL, 0));
	assert_null(shmrig_meta_entry(NULL, 0, &key, &key_len));
	assert_null(key);
	assert_int_equal(key_len, 0);
	assert_int_equal(shmrig_meta_uint(NULL, &u), -EBADMSG);
	assert_int_equal(shmrig_meta_int(NULL, &i), -EBADMSG);
	assert_int_equal(shmrig_meta_double(NULL, &d), -EBADMSG);
	assert_int_equal(shmrig_meta_bool(NULL, &b), -EBADMSG);
	assert_int_equal(shmrig_meta_str(NULL, &str, &len), -EBADMSG);
	assert_int_equal(shmrig_meta_read_array(NULL, &array), -EBADMSG);
	assert_int_equal(shmrig_meta_read_array(NULL, NULL), -EINVAL);
}

/* ---- metadata from a peer: forms the writer never uses ---- */

struct peer_case {
	const char *name;
	const char *meta;
	uint32_t meta_len;
	void (*read)(struct shmrig_decoder *dec, struct script *sc);
};

/* {"f": float32 2.5, "g": float32 -0.25} */
static void read_float32(struct shmrig_decoder *dec, struct script *sc)
{
	const shmrig_meta *root = shmrig_decoder_meta(dec);
	double d;

	CHECK(sc, shmrig_meta_type(shmrig_meta_get(root, "f")) == SHMRIG_META_DOUBLE);
	CHECK(sc, shmrig_meta_double(shmrig_meta_get(root, "f"), &d) == 0 && d == 2.5);
	CHECK(sc, shmrig_meta_double(shmrig_meta_get(root, "g"), &d) == 0 && d == -0.25);
}

/* [uint8 5, uint64 6, int8 7, int64 -1, int16 -300]: the type follows the value, not the width */
static void read_wide_ints(struct shmrig_decoder *dec, struct script *sc)
{
	const shmrig_meta *root = shmrig_decoder_meta(dec);
	uint64_t u;
	int64_t i;

	CHECK(sc, shmrig_meta_uint(shmrig_meta_at(root, 0), &u) == 0 && u == 5);
	CHECK(sc, shmrig_meta_uint(shmrig_meta_at(root, 1), &u) == 0 && u == 6);
	CHECK(sc, shmrig_meta_type(shmrig_meta_at(root, 2)) == SHMRIG_META_UINT);
	CHECK(sc, shmrig_meta_uint(shmrig_meta_at(root, 2), &u) == 0 && u == 7);
	CHECK(sc, shmrig_meta_int(shmrig_meta_at(root, 3), &i) == 0 && i == -1);
	CHECK(sc, shmrig_meta_int(shmrig_meta_at(root, 4), &i) == 0 && i == -300);
}

/* {"k": 1, "k": 2}: get finds the first, entry reaches both */
static void read_duplicate_keys(struct shmrig_decoder *dec, struct script *sc)
{
	const shmrig_meta *root = shmrig_decoder_meta(dec);
	const char *key;
	size_t key_len;
	uint64_t u;

	CHECK(sc, shmrig_meta_uint(shmrig_meta_get(root, "k"), &u) == 0 && u == 1);
	CHECK(sc, shmrig_meta_uint(shmrig_meta_entry(root, 1, &key, &key_len), &u) == 0 && u == 2 &&
			  key_len == 1 && key[0] == 'k');
}

/* str8 "abc" (fixstr would do): a string whatever its header */
static void read_wide_str(struct shmrig_decoder *dec, struct script *sc)
{
	const char *str;
	size_t len;

	CHECK(sc, shmrig_meta_str(shmrig_decoder_meta(dec), &str, &len) == 0 && len == 3 &&
			  memcmp(str, "abc", 3) == 0);
}

static const struct peer_case peer_cases[] = {
	{ "float32",
	  BYTES("\x82\xa1"
		"f\xca\x40\x20\x00\x00\xa1"
		"g\xca\xbe\x80\x00\x00"),
	  read_float32 },
	{ "wide ints",
	  BYTES("\x95\xcc\x05\xcf\x00\x00\x00\x00\x00\x00\x00\x06\xd0\x07"
		"\xd3\xff\xff\xff\xff\xff\xff\xff\xff\xd1\xfe\xd4"),
	  read_wide_ints },
	{ "duplicate keys", BYTES("\x82\xa1k\x01\xa1k\x02"), read_duplicate_keys },
	{ "str8",
	  BYTES("\xd9\x03"
		"abc"),
	  read_wide_str },
};

static void test_peer_forms(void **state)
{
	struct fixture fx;

	(void)state;
	fx_open(&fx);
	for (size_t k = 0; k < sizeof(peer_cases) / sizeof(peer_cases[0]); k++) {
		const struct peer_case *c = &peer_cases[k];
		size_t len;
		void *frame =
			th_frame_build((uint16_t)fx.codec_id, NULL, 0, c->meta, c->meta_len, &len);

		print_message("peer metadata: %s\n", c->name);
		fx.sc.read = c->read;
		decode(&fx, frame, len);
		free(frame);
	}
	fx_close(&fx);
}

/* Every dtype's name finds it; names that differ by a byte, a length or a
 * case, and lengths no name has, find none. */
static void test_dtype_names(void **state)
{
	static const char *const wrong[] = {
		"int9",    "uint9",   "Int8",    "bool ",  "boo",    "xint64", "uint63",
		"float16", "float62", "float6",  "int32x", "nt32",   "uint",   "flaot64",
		"int 64",  "int_8",   "bool8",   "uint88", "unit16", "floatt4", "i",
	};

	(void)state;
	for (int d = SHMRIG_DTYPE_INVALID + 1; d < SHMRIG_DTYPE_COUNT; d++) {
		const char *name = shmrig_dtype_name((enum shmrig_dtype)d);

		assert_non_null(name);
		assert_int_equal(shmrig_dtype_from_name(name, strlen(name)), d);
		/* a prefix or the name with one more byte: none */
		assert_int_equal(shmrig_dtype_from_name(name, strlen(name) - 1),
				 SHMRIG_DTYPE_INVALID);
	}
	for (size_t i = 0; i < sizeof(wrong) / sizeof(wrong[0]); i++)
		assert_int_equal(shmrig_dtype_from_name(wrong[i], strlen(wrong[i])),
				 SHMRIG_DTYPE_INVALID);
	assert_int_equal(shmrig_dtype_from_name("int64\0\0\0", 8), SHMRIG_DTYPE_INVALID);
	assert_int_equal(shmrig_dtype_from_name("in\0\08", 5), SHMRIG_DTYPE_INVALID);
	assert_int_equal(shmrig_dtype_from_name("", 0), SHMRIG_DTYPE_INVALID);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_dtype_names),
		cmocka_unit_test(test_put_bytes),
		cmocka_unit_test(test_put_array),
		cmocka_unit_test(test_every_type_round_trip),
		cmocka_unit_test(test_read_errors),
		cmocka_unit_test(test_put_refused),
		cmocka_unit_test(test_null_arguments),
		cmocka_unit_test(test_peer_forms),
	};

	return cmocka_run_group_tests(tests, th_sweep_leftovers, th_remove_leftovers);
}
