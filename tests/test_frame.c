/* SPDX-License-Identifier: MIT */
/*
 * Bad frames: truncated at every byte, wrong magic or version, codec id out of
 * range, buffer count or index mismatch, metadata that is not MessagePack or
 * not JSON-compatible, refs out of bounds or stale. Each gives its own clear
 * error, leaks nothing (the pool's live blocks are counted before and after)
 * and crashes nothing. Also frame_to_json, frame_transfer and frame_discard.
 */
#include "helpers.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>
#include <msgpack.h>

#include <shmrig/frame.h>
#include <shmrig/pool.h>
#include <shmrig/registry.h>
#include <shmrig/segment.h>
#include <shmrig/value.h>

#define HEADER_SIZE sizeof(struct shmrig_frame_header)
#define REF_SIZE sizeof(struct shmrig_ref)

/* The call fails with `code` and its message mentions `word`. */
#define assert_error(call, code, word)                                                        \
	do {                                                                                  \
		int ret_ = (call);                                                            \
		assert_int_equal(ret_, (code));                                               \
		if (!strstr(shmrig_last_error(), (word)))                                     \
			fail_msg("error \"%s\" does not mention \"%s\"", shmrig_last_error(), \
				 (word));                                                     \
	} while (0)

struct fx {
	shmrig_pool *pool;
	shmrig_registry *reg;
};

static void fx_open(struct fx *fx)
{
	struct shmrig_pool_opts opts = {
		.size = sizeof(struct shmrig_pool_opts),
		.arena_size = 4 * MiB,
		.backing = SHMRIG_BACKING_PLAIN,
		.flags = SHMRIG_POOL_QUIET,
	};

	assert_int_equal(shmrig_pool_open(&opts, &fx->pool), 0);
	assert_int_equal(shmrig_registry_create(&fx->reg), 0);
	assert_int_equal(shmrig_registry_add_builtins(fx->reg), 0);
}

/* Every test ends here: nothing live, the pool closes clean, no segment left. */
static void fx_close(struct fx *fx)
{
	shmrig_registry_free(fx->reg);
	assert_int_equal(shmrig_pool_close(fx->pool), 0);
	assert_int_equal(th_count_segments(th_prefix()), 0);
}

/* ---- valid frames ---- */

static const double nd_data[3][4] = { { 0.5, 1.5, 2.5, 3.5 },
				      { 4.5, 5.5, 6.5, 7.5 },
				      { 8.5, 9.5, 10.5, 11.5 } };
static const int32_t col_a[5] = { 1, -2, 3, -4, 5 };
static const double col_b[5] = { 0.25, 0.5, 0.75, 1.0, 1.25 };
static const char bytes_data[] = "hello, frame";

/* One persistent buffer (a block of its own). */
static void *encode_ndarray(struct fx *fx, size_t *len)
{
	struct shmrig_value v = { .kind = SHMRIG_KIND_NDARRAY };
	void *frame;

	v.array.dtype = SHMRIG_DTYPE_FLOAT64;
	v.array.ndim = 2;
	v.array.shape[0] = 3;
	v.array.shape[1] = 4;
	v.array.order = 'C';
	v.array.data = (void *)nd_data;
	assert_int_equal(shmrig_registry_encode(fx->reg, fx->pool, &v, &frame, len), 0);
	return frame;
}

/* Two persistent buffers carved from one pack block (one live block). */
static void *encode_table(struct fx *fx, size_t *len)
{
	struct shmrig_named_array columns[2] = {
		{ .name = "a",
		  .array = { .dtype = SHMRIG_DTYPE_INT32,
			     .ndim = 1,
			     .shape = { 5 },
			     .order = 'C',
			     .data = (void *)col_a } },
		{ .name = "b",
		  .array = { .dtype = SHMRIG_DTYPE_FLOAT64,
			     .ndim = 1,
			     .shape = { 5 },
			     .order = 'C',
			     .data = (void *)col_b } },
	};
	struct shmrig_value v = { .kind = SHMRIG_KIND_TABLE };
	void *frame;

	v.table.nrows = 5;
	v.table.ncolumns = 2;
	v.table.columns = columns;
	assert_int_equal(shmrig_registry_encode(fx->reg, fx->pool, &v, &frame, len), 0);
	return frame;
}

/* One temporary buffer. */
static void *encode_bytes(struct fx *fx, size_t *len)
{
	struct shmrig_value v = { .kind = SHMRIG_KIND_BYTES };
	void *frame;

	v.bytes.data = bytes_data;
	v.bytes.len = sizeof(bytes_data);
	assert_int_equal(shmrig_registry_encode(fx->reg, fx->pool, &v, &frame, len), 0);
	return frame;
}

typedef void *(*encode_fn)(struct fx *fx, size_t *len);

static struct shmrig_frame_header get_header(const void *frame)
{
	struct shmrig_frame_header h;

	memcpy(&h, frame, sizeof(h));
	return h;
}

static void set_header(void *frame, const struct shmrig_frame_header *h)
{
	memcpy(frame, h, sizeof(*h));
}

/* The same frame with other metadata. */
static void *with_meta(const void *frame, size_t len, const void *meta, uint32_t meta_len,
		       size_t *out_len)
{
	struct shmrig_frame f;
	void *copy;

	assert_int_equal(shmrig_frame_parse(frame, len, &f), 0);
	copy = th_frame_build(f.codec_id, f.buffers, f.nbuffers, meta, meta_len, out_len);
	return copy;
}

/* Decode, check the value against what was encoded, release. */
static void decode_check(struct fx *fx, const void *frame, size_t len, enum shmrig_kind kind)
{
	struct shmrig_value v;

	assert_int_equal(shmrig_registry_decode(fx->reg, fx->pool, frame, len, &v), 0);
	assert_int_equal(v.kind, kind);
	switch (kind) {
	case SHMRIG_KIND_NDARRAY:
		assert_int_equal(v.array.dtype, SHMRIG_DTYPE_FLOAT64);
		assert_int_equal(v.array.ndim, 2);
		assert_int_equal(v.array.shape[0], 3);
		assert_int_equal(v.array.shape[1], 4);
		assert_memory_equal(v.array.data, nd_data, sizeof(nd_data));
		assert_int_equal(shmrig_value_leases(&v), 1);
		break;
	case SHMRIG_KIND_TABLE:
		assert_int_equal(v.table.nrows, 5);
		assert_int_equal(v.table.ncolumns, 2);
		assert_string_equal(v.table.columns[0].name, "a");
		assert_string_equal(v.table.columns[1].name, "b");
		assert_memory_equal(v.table.columns[0].array.data, col_a, sizeof(col_a));
		assert_memory_equal(v.table.columns[1].array.data, col_b, sizeof(col_b));
		assert_int_equal(shmrig_value_leases(&v), 2);
		break;
	case SHMRIG_KIND_BYTES:
		assert_int_equal(v.bytes.len, sizeof(bytes_data));
		assert_memory_equal(v.bytes.data, bytes_data, sizeof(bytes_data));
		assert_int_equal(shmrig_value_leases(&v), 0); /* temporary: freed already */
		break;
	default:
		fail_msg("unexpected kind %d", (int)kind);
	}
	assert_int_equal(shmrig_value_release(&v), 0);
}

/* ---- tests ---- */

/* The baseline: each frame decodes, and decode plus release frees its blocks. */
static void test_valid(void **state)
{
	static const struct {
		encode_fn encode;
		enum shmrig_kind kind;
	} cases[] = { { encode_ndarray, SHMRIG_KIND_NDARRAY },
		      { encode_table, SHMRIG_KIND_TABLE },
		      { encode_bytes, SHMRIG_KIND_BYTES } };
	struct fx fx;

	(void)state;
	fx_open(&fx);
	for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
		size_t len;
		void *frame = cases[c].encode(&fx, &len);
		struct shmrig_frame f;

		assert_int_equal((uintptr_t)frame % 8, 0);
		assert_int_equal(shmrig_frame_parse(frame, len, &f), 0);
		assert_int_equal(len, shmrig_frame_size(f.nbuffers, f.meta_len));
		assert_int_equal(th_live_blocks(fx.pool), 1);
		decode_check(&fx, frame, len, cases[c].kind);
		assert_int_equal(th_live_blocks(fx.pool), 0);
		free(frame);
	}
	fx_close(&fx);
}

/* Every prefix of a valid frame is -EBADMSG from parse, decode and to_json, and touches nothing. */
static void test_truncated(void **state)
{
	static const struct {
		encode_fn encode;
		enum shmrig_kind kind;
	} cases[] = { { encode_ndarray, SHMRIG_KIND_NDARRAY },
		      { encode_table, SHMRIG_KIND_TABLE },
		      { encode_bytes, SHMRIG_KIND_BYTES } };
	struct fx fx;

	(void)state;
	fx_open(&fx);
	for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
		size_t len;
		void *frame = cases[c].encode(&fx, &len);
		uint64_t live = th_live_blocks(fx.pool);

		for (size_t cut = 0; cut < len; cut++) {
			void *part = th_frame_copy(frame, cut);
			struct shmrig_value v;
			struct shmrig_frame f;
			char *json = NULL;

			assert_error(shmrig_frame_parse(part, cut, &f), -EBADMSG, "frame: ");
			assert_error(shmrig_registry_decode(fx.reg, fx.pool, part, cut, &v),
				     -EBADMSG, "frame: ");
			assert_int_equal(v.kind, 0);
			assert_null(v.storage);
			assert_error(shmrig_frame_to_json(part, cut, fx.reg, &json), -EBADMSG,
				     "frame: ");
			assert_null(json);
			assert_int_equal(th_live_blocks(fx.pool), live);
			free(part);
		}
		decode_check(&fx, frame, len, cases[c].kind);
		assert_int_equal(th_live_blocks(fx.pool), 0);
		free(frame);
	}
	fx_close(&fx);
}

/* A header field wrong: parse, decode and to_json each say which, and nothing is freed. */
static void check_bad_frame(struct fx *fx, const void *frame, size_t len, int code,
			    const char *word)
{
	uint64_t live = th_live_blocks(fx->pool);
	struct shmrig_value v;
	struct shmrig_frame f;
	char *json = NULL;

	assert_error(shmrig_frame_parse(frame, len, &f), code, word);
	assert_error(shmrig_registry_decode(fx->reg, fx->pool, frame, len, &v), code, word);
	assert_error(shmrig_frame_to_json(frame, len, fx->reg, &json), code, word);
	assert_error(shmrig_frame_discard(fx->pool, frame, len), code, word);
	assert_int_equal(th_live_blocks(fx->pool), live);
}

static void check_bad_header(struct fx *fx, const void *frame, size_t len, const char *word)
{
	check_bad_frame(fx, frame, len, -EBADMSG, word);
}

static void test_bad_header(void **state)
{
	struct shmrig_frame_header h;
	struct shmrig_value v;
	struct shmrig_frame f;
	char *json = NULL;
	unsigned char *shifted;
	void *frame, *bad;
	size_t len;
	struct fx fx;

	(void)state;
	fx_open(&fx);
	frame = encode_ndarray(&fx, &len);
	bad = th_frame_copy(frame, len);

	h = get_header(frame);
	h.magic = 0x4d524854u;
	set_header(bad, &h);
	check_bad_header(&fx, bad, len, "magic");

	h = get_header(frame);
	h.version = SHMRIG_FRAME_VERSION + 1;
	set_header(bad, &h);
	check_bad_header(&fx, bad, len, "version");

	h = get_header(frame);
	h.version = 0;
	set_header(bad, &h);
	check_bad_header(&fx, bad, len, "version");

	h = get_header(frame);
	h.reserved = 1ull << 40;
	set_header(bad, &h);
	check_bad_header(&fx, bad, len, "reserved");

	/* more buffers than the frame has room for */
	h = get_header(frame);
	h.nbuffers = 5;
	set_header(bad, &h);
	check_bad_header(&fx, bad, len, "buffers");

	/* fewer: the refs' bytes would be read as meta */
	h = get_header(frame);
	h.nbuffers = 0;
	set_header(bad, &h);
	check_bad_header(&fx, bad, len, "buffers");

	h = get_header(frame);
	h.meta_len += 1;
	set_header(bad, &h);
	check_bad_header(&fx, bad, len, "meta");

	h = get_header(frame);
	h.meta_len -= 1;
	set_header(bad, &h);
	check_bad_header(&fx, bad, len, "meta");

	h = get_header(frame);
	h.meta_len = UINT32_MAX;
	set_header(bad, &h);
	check_bad_header(&fx, bad, len, "limits");

	h = get_header(frame);
	h.nbuffers = SHMRIG_FRAME_MAX_BUFFERS + 1;
	set_header(bad, &h);
	check_bad_header(&fx, bad, len, "limits");

	h = get_header(frame);
	h.nbuffers = UINT32_MAX;
	set_header(bad, &h);
	check_bad_header(&fx, bad, len, "limits");

	/* a frame must be 8-byte aligned; NULL is no frame */
	shifted = aligned_alloc(8, (len / 8 + 2) * 8);
	assert_non_null(shifted);
	memcpy(shifted + 4, frame, len);
	assert_error(shmrig_frame_parse(shifted + 4, len, &f), -EINVAL, "aligned");
	assert_error(shmrig_registry_decode(fx.reg, fx.pool, shifted + 4, len, &v), -EINVAL,
		     "aligned");
	assert_error(shmrig_frame_to_json(shifted + 4, len, fx.reg, &json), -EINVAL, "aligned");
	assert_error(shmrig_frame_discard(fx.pool, shifted + 4, len), -EINVAL, "aligned");
	assert_int_equal(shmrig_frame_parse(NULL, len, &f), -EINVAL);
	assert_int_equal(shmrig_frame_parse(frame, len, NULL), -EINVAL);
	assert_int_equal(shmrig_registry_decode(fx.reg, fx.pool, NULL, len, &v), -EINVAL);
	assert_int_equal(shmrig_registry_decode(fx.reg, fx.pool, frame, len, NULL), -EINVAL);
	assert_int_equal(shmrig_registry_decode(NULL, fx.pool, frame, len, &v), -EINVAL);
	assert_int_equal(shmrig_registry_decode(fx.reg, NULL, frame, len, &v), -EINVAL);
	assert_int_equal(shmrig_frame_to_json(NULL, len, fx.reg, &json), -EINVAL);
	assert_int_equal(shmrig_frame_to_json(frame, len, fx.reg, NULL), -EINVAL);
	assert_int_equal(shmrig_frame_discard(fx.pool, NULL, len), -EINVAL);
	assert_int_equal(shmrig_frame_transfer(fx.pool, NULL, len, getpid()), -EINVAL);
	assert_null(json);
	assert_int_equal(th_live_blocks(fx.pool), 1);

	/* none of it touched the frame's block */
	decode_check(&fx, frame, len, SHMRIG_KIND_NDARRAY);
	assert_int_equal(th_live_blocks(fx.pool), 0);
	free(shifted);
	free(bad);
	free(frame);
	fx_close(&fx);
}

/* An unknown codec id is -ENOENT naming the codecs there are; the frame's blocks are freed. */
static void test_unknown_codec(void **state)
{
	static const uint16_t ids[] = { 4, 5, 1023, UINT16_MAX };
	struct fx fx;

	(void)state;
	fx_open(&fx);
	for (size_t i = 0; i < sizeof(ids) / sizeof(ids[0]); i++) {
		size_t len;
		void *frame = encode_table(&fx, &len);
		struct shmrig_frame_header h = get_header(frame);
		struct shmrig_value v;
		json_t *root;
		char *json;

		h.codec_id = ids[i];
		set_header(frame, &h);
		/* to_json renders it, without a codec_name */
		assert_int_equal(shmrig_frame_to_json(frame, len, fx.reg, &json), 0);
		root = json_loads(json, 0, NULL);
		assert_non_null(root);
		assert_int_equal(json_integer_value(json_object_get(root, "codec")), ids[i]);
		assert_null(json_object_get(root, "codec_name"));
		json_decref(root);
		free(json);

		assert_int_equal(th_live_blocks(fx.pool), 1);
		assert_error(shmrig_registry_decode(fx.reg, fx.pool, frame, len, &v), -ENOENT,
			     "codec id");
		assert_non_null(strstr(shmrig_last_error(), "'ndarray'"));
		assert_non_null(strstr(shmrig_last_error(), "'table'"));
		assert_non_null(strstr(shmrig_last_error(), "'dataset'"));
		assert_non_null(strstr(shmrig_last_error(), "'bytes'"));
		assert_null(v.storage);
		/* both refs of the table's pack block were dropped */
		assert_int_equal(th_live_blocks(fx.pool), 0);
		/* and they are stale now */
		assert_int_equal(shmrig_frame_discard(fx.pool, frame, len), -SHMRIG_ESTALE);
		free(frame);
	}
	fx_close(&fx);
}

/* Pack a string the way the table codec does (msgpack-c: the shortest header). */
static int pack_str(msgpack_packer *pk, const char *str)
{
	return msgpack_pack_str(pk, strlen(str)) || msgpack_pack_str_body(pk, str, strlen(str));
}

/* Pack a table's metadata whose two columns name buffers b0 and b1. */
static void table_meta(msgpack_sbuffer *sb, uint32_t b0, uint32_t b1)
{
	msgpack_packer pk;
	const uint32_t buffers[2] = { b0, b1 };
	const char *names[2] = { "a", "b" }, *dtypes[2] = { "int32", "float64" };
	int ret = 0;

	msgpack_sbuffer_init(sb);
	msgpack_packer_init(&pk, sb, msgpack_sbuffer_write);
	msgpack_pack_map(&pk, 2);
	ret |= pack_str(&pk, "rows");
	msgpack_pack_uint64(&pk, 5);
	ret |= pack_str(&pk, "columns");
	msgpack_pack_array(&pk, 2);
	for (int i = 0; i < 2; i++) {
		msgpack_pack_map(&pk, 3);
		ret |= pack_str(&pk, "name");
		ret |= pack_str(&pk, names[i]);
		ret |= pack_str(&pk, "dtype");
		ret |= pack_str(&pk, dtypes[i]);
		ret |= pack_str(&pk, "buffer");
		msgpack_pack_uint32(&pk, buffers[i]);
	}
	assert_int_equal(ret, 0);
}

/* A table frame whose metadata names buffers b0 and b1: decode fails with `word`, frees all. */
static void check_table_buffers(struct fx *fx, uint32_t b0, uint32_t b1, const char *word)
{
	msgpack_sbuffer sb;
	struct shmrig_value v;
	size_t len, bad_len;
	void *frame = encode_table(fx, &len), *bad;

	table_meta(&sb, b0, b1);
	bad = with_meta(frame, len, sb.data, (uint32_t)sb.size, &bad_len);
	msgpack_sbuffer_destroy(&sb);
	assert_int_equal(th_live_blocks(fx->pool), 1);
	assert_error(shmrig_registry_decode(fx->reg, fx->pool, bad, bad_len, &v), -EBADMSG, word);
	assert_null(v.storage);
	assert_int_equal(th_live_blocks(fx->pool), 0);
	free(bad);
	free(frame);
}

/* Buffers the codec does not read, reads twice, or that are not there: -EBADMSG, all freed. */
static void test_buffer_mismatch(void **state)
{
	struct shmrig_ref refs[2];
	struct shmrig_value v;
	size_t len, other_len, bad_len;
	void *frame, *other, *bad;
	struct fx fx;

	(void)state;
	fx_open(&fx);

	/* an ndarray frame with a second buffer: a valid ref to another block */
	frame = encode_ndarray(&fx, &len);
	other = encode_ndarray(&fx, &other_len);
	refs[0] = th_frame_ref(frame, 0);
	refs[1] = th_frame_ref(other, 0);
	{
		struct shmrig_frame f;

		assert_int_equal(shmrig_frame_parse(frame, len, &f), 0);
		bad = th_frame_build(f.codec_id, refs, 2, f.meta, f.meta_len, &bad_len);
	}
	assert_int_equal(th_live_blocks(fx.pool), 2);
	assert_error(shmrig_registry_decode(fx.reg, fx.pool, bad, bad_len, &v), -EBADMSG,
		     "left buffer 1 of 2 unread");
	assert_null(v.storage);
	assert_int_equal(th_live_blocks(fx.pool), 0);
	free(bad);
	free(other);
	free(frame);

	/* the same with a temporary second buffer (bytes) */
	frame = encode_ndarray(&fx, &len);
	other = encode_bytes(&fx, &other_len);
	refs[0] = th_frame_ref(frame, 0);
	refs[1] = th_frame_ref(other, 0);
	{
		struct shmrig_frame f;

		assert_int_equal(shmrig_frame_parse(frame, len, &f), 0);
		bad = th_frame_build(f.codec_id, refs, 2, f.meta, f.meta_len, &bad_len);
	}
	assert_int_equal(th_live_blocks(fx.pool), 2);
	assert_error(shmrig_registry_decode(fx.reg, fx.pool, bad, bad_len, &v), -EBADMSG, "unread");
	assert_int_equal(th_live_blocks(fx.pool), 0);
	free(bad);
	free(other);
	free(frame);

	/*
	 * The second buffer names no block of ours: decode refuses the frame
	 * before the codec runs, having claimed (and then freed) only the first.
	 */
	frame = encode_ndarray(&fx, &len);
	refs[0] = th_frame_ref(frame, 0);
	refs[1] = refs[0];
	memcpy(refs[1].name, "zz", 2);
	{
		struct shmrig_frame f;

		assert_int_equal(shmrig_frame_parse(frame, len, &f), 0);
		bad = th_frame_build(f.codec_id, refs, 2, f.meta, f.meta_len, &bad_len);
	}
	assert_error(shmrig_registry_decode(fx.reg, fx.pool, bad, bad_len, &v), -EINVAL,
		     "does not carry the prefix");
	assert_int_equal(th_live_blocks(fx.pool), 0);
	free(bad);
	free(frame);

	/* an ndarray frame with no buffer at all */
	frame = encode_ndarray(&fx, &len);
	{
		struct shmrig_frame f;

		assert_int_equal(shmrig_frame_parse(frame, len, &f), 0);
		bad = th_frame_build(f.codec_id, NULL, 0, f.meta, f.meta_len, &bad_len);
	}
	assert_error(shmrig_registry_decode(fx.reg, fx.pool, bad, bad_len, &v), -EBADMSG,
		     "buffer 0 asked, the frame has 0");
	/* that frame named no block: the real one is still ours */
	assert_int_equal(th_live_blocks(fx.pool), 1);
	assert_int_equal(shmrig_frame_discard(fx.pool, frame, len), 0);
	assert_int_equal(th_live_blocks(fx.pool), 0);
	free(bad);
	free(frame);

	/* a table whose metadata names buffer 7 of 2, or buffer 0 twice */
	check_table_buffers(&fx, 0, 7, "buffer 7 asked, the frame has 2");
	check_table_buffers(&fx, 7, 1, "buffer 7 asked, the frame has 2");
	check_table_buffers(&fx, 0, 0, "buffer 0 asked twice");
	check_table_buffers(&fx, 1, 0, "holds"); /* column sizes differ */
	check_table_buffers(&fx, 0, UINT32_MAX, "asked");

	/* more than 64 buffers (the decoder's bookkeeping leaves its stack): all freed */
	{
		enum {
			N = 100
		};
		struct shmrig_ref many[N];
		struct shmrig_frame f;
		void *p;

		frame = encode_bytes(&fx, &len);
		assert_int_equal(shmrig_frame_parse(frame, len, &f), 0);
		many[0] = f.buffers[0];
		for (int i = 1; i < N; i++) {
			assert_int_equal(shmrig_pool_alloc(fx.pool, 100, (unsigned)i % 2, 0,
							   &many[i], &p),
					 0);
			/* in flight, as an encoded frame's blocks are */
			assert_int_equal(shmrig_pool_transfer(fx.pool, &many[i], getpid()), 0);
		}
		bad = th_frame_build(f.codec_id, many, N, f.meta, f.meta_len, &bad_len);
		assert_int_equal(th_live_blocks(fx.pool), N);
		assert_error(shmrig_registry_decode(fx.reg, fx.pool, bad, bad_len, &v), -EBADMSG,
			     "left buffer 1 of 100 unread");
		assert_int_equal(th_live_blocks(fx.pool), 0);
		free(bad);
		free(frame);
	}
	fx_close(&fx);
}

struct bad_meta {
	const char *what;
	const unsigned char *bytes;
	uint32_t len;
	const char *word; /* in the error message */
};

#define META(what, word, ...)                                                \
	{                                                                    \
		what, (const unsigned char[]){ __VA_ARGS__ },                \
			sizeof((const unsigned char[]){ __VA_ARGS__ }), word \
	}

/* An ndarray frame with metadata `meta`: to_json and decode fail with `word`, the block is freed. */
static void check_bad_meta(struct fx *fx, const void *meta, uint32_t meta_len, const char *what,
			   const char *word)
{
	struct shmrig_value v;
	struct shmrig_frame f;
	size_t len, bad_len;
	void *frame = encode_ndarray(fx, &len), *bad;
	char *json = NULL;

	print_message("metadata: %s\n", what);
	bad = with_meta(frame, len, meta, meta_len, &bad_len);
	/* the frame's structure is fine: parse does not read the metadata */
	assert_int_equal(shmrig_frame_parse(bad, bad_len, &f), 0);
	assert_error(shmrig_frame_to_json(bad, bad_len, fx->reg, &json), -EBADMSG, word);
	assert_null(json);
	assert_error(shmrig_frame_to_json(bad, bad_len, NULL, &json), -EBADMSG, word);
	assert_int_equal(th_live_blocks(fx->pool), 1);
	assert_error(shmrig_registry_decode(fx->reg, fx->pool, bad, bad_len, &v), -EBADMSG, word);
	assert_null(v.storage);
	assert_int_equal(th_live_blocks(fx->pool), 0);
	free(bad);
	free(frame);
}

static void test_bad_meta(void **state)
{
	/* automatic: the compound literals in it are too */
	const struct bad_meta cases[] = {
		META("0xc1, never used", "0xc1", 0xc1),
		META("a truncated map16 header", "truncated", 0xde, 0x00),
		META("a map claiming a pair it lacks", "claims more items", 0x81),
		META("a truncated str8", "truncated", 0xd9, 0x05, 'a', 'b'),
		META("a truncated float64", "truncated", 0xcb, 0x40, 0x09),
		META("bin8", "binary", 0xc4, 0x01, 0x00),
		META("bin inside a map", "binary", 0x81, 0xa1, 'k', 0xc5, 0x00, 0x01, 0x00),
		META("fixext1", "extension", 0xd4, 0x01, 0x00),
		META("ext8", "extension", 0xc7, 0x01, 0x05, 0x00),
		META("a map with an integer key", "key", 0x81, 0x01, 0x02),
		META("a map with a nil key", "key", 0x81, 0xc0, 0x02),
		META("a map with an array key", "key", 0x81, 0x90, 0x02),
		META("a NaN float64", "finite", 0xcb, 0x7f, 0xf8, 0, 0, 0, 0, 0, 0),
		META("an infinite float64", "finite", 0xcb, 0xff, 0xf0, 0, 0, 0, 0, 0, 0),
		META("a NaN float32", "finite", 0xca, 0x7f, 0xc0, 0, 0),
		META("array32 claiming 2^32-1 items", "claims more items", 0xdd, 0xff, 0xff, 0xff,
		     0xff, 1, 2, 3),
		META("map32 claiming 2^32-1 pairs", "claims more items", 0xdf, 0xff, 0xff, 0xff,
		     0xff, 0xa1, 'k', 0),
		META("str32 claiming 4 GiB", "truncated", 0xdb, 0xff, 0xff, 0xff, 0xff, 'a'),
		META("a string with a bare continuation byte", "UTF-8", 0xa2, 0x80, 'a'),
		META("a string with an overlong NUL", "UTF-8", 0xa2, 0xc0, 0x80),
		META("a string with a surrogate", "UTF-8", 0xa3, 0xed, 0xa0, 0x80),
		META("a string cut inside a character", "UTF-8", 0xa2, 'a', 0xe2),
		META("a string above U+10FFFF", "UTF-8", 0xa4, 0xf4, 0x90, 0x80, 0x80),
		META("a map key that is not UTF-8", "UTF-8", 0x81, 0xa1, 0xff, 0x01),
		META("trailing bytes", "after its object", 0x80, 0x00),
		META("two objects", "after its object", 0xc0, 0xc0),
	};
	unsigned char deep[101];
	struct fx fx;

	(void)state;
	fx_open(&fx);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		check_bad_meta(&fx, cases[i].bytes, cases[i].len, cases[i].what, cases[i].word);

	/* empty metadata */
	check_bad_meta(&fx, "", 0, "empty", "empty");

	/* 100 nested one-item arrays around a nil */
	memset(deep, 0x91, sizeof(deep) - 1);
	deep[sizeof(deep) - 1] = 0xc0;
	check_bad_meta(&fx, deep, sizeof(deep), "nested 100 deep", "nested too deep");

	/* JSON-compatible, but not an ndarray's description: it renders, decode is the codec's error */
	{
		struct shmrig_value v;
		size_t len, bad_len;
		void *frame = encode_ndarray(&fx, &len), *bad;
		char *json;

		bad = with_meta(frame, len, "\xc0", 1, &bad_len);
		assert_int_equal(shmrig_frame_to_json(bad, bad_len, fx.reg, &json), 0);
		assert_non_null(strstr(json, "\"meta\":null"));
		free(json);
		assert_error(shmrig_registry_decode(fx.reg, fx.pool, bad, bad_len, &v), -EBADMSG,
			     "array metadata needs");
		assert_int_equal(th_live_blocks(fx.pool), 0);
		free(bad);
		free(frame);
	}
	fx_close(&fx);
}

/*
 * The deepest metadata allowed is 32 nested containers: it renders, and
 * msgpack-c (which stops at 32 itself) unpacks it for the codec; 33 is refused.
 */
static void test_meta_depth(void **state)
{
	unsigned char deep[34];
	char expect[128];
	struct shmrig_value v;
	size_t len;
	char *json;
	void *frame;
	struct fx fx;

	(void)state;
	fx_open(&fx);
	for (unsigned depth = 30; depth <= 33; depth++) {
		memset(deep, 0x91, depth);
		deep[depth] = 0xc0;
		frame = th_frame_build(0, NULL, 0, deep, depth + 1, &len);
		if (depth <= 32) {
			assert_int_equal(shmrig_frame_to_json(frame, len, NULL, &json), 0);
			snprintf(expect, sizeof(expect),
				 "{\"codec\":0,\"buffers\":[],\"meta\":%.*snull%.*s}", (int)depth,
				 "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[", (int)depth,
				 "]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]");
			assert_string_equal(json, expect);
			free(json);
			/* unpacked: the error is the ndarray codec's, about what it found */
			assert_error(shmrig_registry_decode(fx.reg, fx.pool, frame, len, &v),
				     -EBADMSG, "array metadata needs");
		} else {
			assert_error(shmrig_frame_to_json(frame, len, NULL, &json), -EBADMSG,
				     "nested too deep");
			assert_error(shmrig_registry_decode(fx.reg, fx.pool, frame, len, &v),
				     -EBADMSG, "nested too deep");
		}
		free(frame);
	}
	fx_close(&fx);
}

/* The peak resident memory of this process so far (VmHWM), in KiB. */
static long peak_rss_kb(void)
{
	char line[256];
	long kb = -1;
	FILE *f = fopen("/proc/self/status", "re");

	assert_non_null(f);
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "VmHWM: %ld kB", &kb) == 1)
			break;
	fclose(f);
	assert_true(kb >= 0);
	return kb;
}

/*
 * Metadata of many one-byte items: at the item cap it unpacks, one more is
 * refused before anything is unpacked; and 64 MiB of them (msgpack-c would
 * allocate a msgpack_object, 24 bytes, an item: 2.1 GiB measured before the
 * cap) costs decode and to_json no more than a tenth of what unpacking them
 * would. The bound is on what unpacking costs, not on the metadata's size: a
 * tenth of the 256 KiB at the cap was 25 KiB, and refusing it moved the peak
 * by 20-28 KiB under ASan (the first error message formatted, stack), which
 * failed 7 runs in 8 while nothing was unpacked.
 */
static void test_meta_items(void **state)
{
	static const uint32_t counts[] = { SHMRIG_FRAME_MAX_META_ITEMS - 1,
					   SHMRIG_FRAME_MAX_META_ITEMS, 64u << 20 };
	struct shmrig_value v;
	struct fx fx;

	(void)state;
	fx_open(&fx);
	for (unsigned k = 0; k < sizeof(counts) / sizeof(counts[0]); k++) {
		/* an array of n nils: n + 1 items */
		uint32_t n = counts[k];
		size_t meta_len = 5 + (size_t)n, len;
		unsigned char *meta = malloc(meta_len);
		void *frame;
		char *json;
		long before;

		assert_non_null(meta);
		meta[0] = 0xdd;
		meta[1] = (unsigned char)(n >> 24);
		meta[2] = (unsigned char)(n >> 16);
		meta[3] = (unsigned char)(n >> 8);
		meta[4] = (unsigned char)n;
		memset(meta + 5, 0xc0, n);
		frame = th_frame_build(0, NULL, 0, meta, (uint32_t)meta_len, &len);
		free(meta);
		before = peak_rss_kb();
		if (n + 1 <= SHMRIG_FRAME_MAX_META_ITEMS) {
			assert_int_equal(shmrig_frame_to_json(frame, len, NULL, &json), 0);
			free(json);
			/* unpacked: the error is the ndarray codec's */
			assert_error(shmrig_registry_decode(fx.reg, fx.pool, frame, len, &v),
				     -EBADMSG, "array metadata needs");
		} else {
			assert_error(shmrig_frame_to_json(frame, len, NULL, &json), -EBADMSG,
				     "more items than the limit");
			assert_error(shmrig_registry_decode(fx.reg, fx.pool, frame, len, &v),
				     -EBADMSG, "more items than the limit");
			/* nothing was unpacked: the peak did not move by a tenth of
			 * what unpacking n + 1 objects takes */
			assert_true(peak_rss_kb() - before <
				    (long)((n + 1ull) * sizeof(msgpack_object) / 10 / 1024));
		}
		free(frame);
	}
	fx_close(&fx);
}

/* Refs that do not name a block of ours: the pool's error, and our blocks are untouched. */
static void check_bad_ref(struct fx *fx, const struct shmrig_ref *ref, int code, const char *word)
{
	struct shmrig_value v;
	size_t len, bad_len;
	void *frame = encode_ndarray(fx, &len), *bad = th_frame_copy(frame, len);

	bad_len = len;
	th_frame_set_ref(bad, 0, ref);
	assert_error(shmrig_registry_decode(fx->reg, fx->pool, bad, bad_len, &v), code, word);
	assert_null(v.storage);
	/* the bad ref named no block of ours: the real one is still live, and still decodes */
	assert_int_equal(th_live_blocks(fx->pool), 1);
	decode_check(fx, frame, len, SHMRIG_KIND_NDARRAY);
	assert_int_equal(th_live_blocks(fx->pool), 0);
	free(bad);
	free(frame);
}

/* A ref field that is malformed in itself: -SHMRIG_EBADREF from frame_parse, the
 * pool's answer to the same ref; nothing touched. */
static void check_malformed_ref(struct fx *fx, const struct shmrig_ref *ref, const char *word)
{
	size_t len;
	void *frame = encode_ndarray(fx, &len), *bad = th_frame_copy(frame, len);

	th_frame_set_ref(bad, 0, ref);
	check_bad_frame(fx, bad, len, -SHMRIG_EBADREF, word);
	assert_int_equal(th_live_blocks(fx->pool), 1);
	decode_check(fx, frame, len, SHMRIG_KIND_NDARRAY);
	free(bad);
	free(frame);
}

static void test_bad_refs(void **state)
{
	struct shmrig_ref good, ref, fresh;
	struct shmrig_value v;
	size_t len;
	void *frame, *p;
	struct fx fx;
	char *dash;

	(void)state;
	fx_open(&fx);
	frame = encode_ndarray(&fx, &len);
	good = th_frame_ref(frame, 0);
	assert_int_equal(shmrig_frame_discard(fx.pool, frame, len), 0);
	free(frame);

	/* another prefix: the pool will not look at it */
	ref = good;
	dash = strchr(good.name, '-');
	assert_non_null(dash);
	snprintf(ref.name, sizeof(ref.name), "zz%.50s", dash);
	check_bad_ref(&fx, &ref, -EINVAL, "prefix");

	/* a path */
	ref = good;
	snprintf(ref.name, sizeof(ref.name), "../%.50s", good.name);
	check_bad_ref(&fx, &ref, -EINVAL, "/");

	/* well-formed, our prefix, no such segment */
	ref = good;
	ref.name[strlen(ref.name) - 1] = ref.name[strlen(ref.name) - 1] == '0' ? '1' : '0';
	check_bad_ref(&fx, &ref, -ENOENT, ref.name);

	/* offset far past the segment, on the arena header, size past the block */
	ref = good;
	ref.offset = 64ull << 30;
	check_bad_ref(&fx, &ref, -SHMRIG_EBADREF, "not inside one block");
	ref = good;
	ref.offset = 0;
	check_bad_ref(&fx, &ref, -SHMRIG_EBADREF, "not inside one block");
	ref = good;
	ref.size = UINT64_MAX;
	check_bad_ref(&fx, &ref, -SHMRIG_EBADREF, "not inside one block");

	/* stale: the block was freed (and its slot handed out again since) */
	frame = encode_ndarray(&fx, &len);
	ref = th_frame_ref(frame, 0);
	assert_int_equal(shmrig_frame_discard(fx.pool, frame, len), 0);
	assert_int_equal(shmrig_pool_alloc(fx.pool, ref.content_size, 0, 0, &fresh, &p), 0);
	assert_int_equal(fresh.offset, ref.offset);
	assert_error(shmrig_registry_decode(fx.reg, fx.pool, frame, len, &v), -SHMRIG_ESTALE,
		     "generation");
	/* the block that took the slot is not freed through the stale ref */
	assert_int_equal(th_live_blocks(fx.pool), 1);
	assert_int_equal(shmrig_pool_free(fx.pool, &fresh), 0);
	free(frame);

	/* stale and temporary */
	frame = encode_bytes(&fx, &len);
	assert_int_equal(shmrig_frame_discard(fx.pool, frame, len), 0);
	assert_error(shmrig_registry_decode(fx.reg, fx.pool, frame, len, &v), -SHMRIG_ESTALE,
		     "generation");
	assert_int_equal(th_live_blocks(fx.pool), 0);
	free(frame);

	/* malformed in themselves: frame_parse refuses them */
	ref = good;
	ref.content_size = ref.size + 1;
	check_malformed_ref(&fx, &ref, "content_size");
	ref = good;
	memset(ref.name, 'x', sizeof(ref.name));
	check_malformed_ref(&fx, &ref, "not terminated");
	ref = good;
	ref.offset += 8;
	check_malformed_ref(&fx, &ref, "aligned");
	ref = good;
	ref.reserved[2] = 1;
	check_malformed_ref(&fx, &ref, "reserved");
	ref = good;
	ref.temporary = 2;
	check_malformed_ref(&fx, &ref, "reserved");
	assert_int_equal(th_live_blocks(fx.pool), 0);
	fx_close(&fx);
}

/* to_json renders every field, with codec_name only when a registry is given. */
static void test_to_json(void **state)
{
	struct shmrig_ref ref;
	json_error_t error;
	json_t *root, *buf, *meta, *shape;
	size_t len;
	void *frame;
	char *json;
	struct fx fx;

	(void)state;
	fx_open(&fx);
	frame = encode_ndarray(&fx, &len);
	ref = th_frame_ref(frame, 0);
	assert_int_equal(shmrig_frame_to_json(frame, len, fx.reg, &json), 0);
	root = json_loads(json, 0, &error);
	if (!root)
		fail_msg("%s: %s", json, error.text);
	free(json);
	assert_int_equal(json_integer_value(json_object_get(root, "codec")), 0);
	assert_string_equal(json_string_value(json_object_get(root, "codec_name")), "ndarray");
	assert_int_equal(json_array_size(json_object_get(root, "buffers")), 1);
	buf = json_array_get(json_object_get(root, "buffers"), 0);
	assert_string_equal(json_string_value(json_object_get(buf, "name")), ref.name);
	assert_int_equal(json_integer_value(json_object_get(buf, "offset")), ref.offset);
	assert_int_equal(json_integer_value(json_object_get(buf, "size")), ref.size);
	assert_int_equal(json_integer_value(json_object_get(buf, "content_size")), sizeof(nd_data));
	assert_int_equal(json_integer_value(json_object_get(buf, "generation")), ref.generation);
	assert_true(json_is_false(json_object_get(buf, "temporary")));
	meta = json_object_get(root, "meta");
	assert_string_equal(json_string_value(json_object_get(meta, "dtype")), "float64");
	assert_string_equal(json_string_value(json_object_get(meta, "order")), "C");
	shape = json_object_get(meta, "shape");
	assert_int_equal(json_array_size(shape), 2);
	assert_int_equal(json_integer_value(json_array_get(shape, 0)), 3);
	assert_int_equal(json_integer_value(json_array_get(shape, 1)), 4);
	json_decref(root);

	/* without a registry: no codec_name */
	assert_int_equal(shmrig_frame_to_json(frame, len, NULL, &json), 0);
	root = json_loads(json, 0, NULL);
	free(json);
	assert_non_null(root);
	assert_null(json_object_get(root, "codec_name"));
	assert_int_equal(json_integer_value(json_object_get(root, "codec")), 0);
	json_decref(root);
	/* rendering touches no block */
	decode_check(&fx, frame, len, SHMRIG_KIND_NDARRAY);
	free(frame);

	/* bytes: a temporary buffer */
	frame = encode_bytes(&fx, &len);
	assert_int_equal(shmrig_frame_to_json(frame, len, fx.reg, &json), 0);
	root = json_loads(json, 0, NULL);
	free(json);
	assert_non_null(root);
	assert_string_equal(json_string_value(json_object_get(root, "codec_name")), "bytes");
	buf = json_array_get(json_object_get(root, "buffers"), 0);
	assert_true(json_is_true(json_object_get(buf, "temporary")));
	assert_int_equal(json_integer_value(json_object_get(json_object_get(root, "meta"), "len")),
			 sizeof(bytes_data));
	json_decref(root);
	decode_check(&fx, frame, len, SHMRIG_KIND_BYTES);
	free(frame);

	/* table: two buffers, the columns in order */
	frame = encode_table(&fx, &len);
	assert_int_equal(shmrig_frame_to_json(frame, len, fx.reg, &json), 0);
	root = json_loads(json, 0, NULL);
	free(json);
	assert_non_null(root);
	assert_string_equal(json_string_value(json_object_get(root, "codec_name")), "table");
	assert_int_equal(json_array_size(json_object_get(root, "buffers")), 2);
	meta = json_object_get(root, "meta");
	assert_int_equal(json_integer_value(json_object_get(meta, "rows")), 5);
	assert_string_equal(json_string_value(
				    json_object_get(json_array_get(json_object_get(meta, "columns"),
								   1),
						    "name")),
			    "b");
	json_decref(root);
	decode_check(&fx, frame, len, SHMRIG_KIND_TABLE);
	free(frame);
	assert_int_equal(th_live_blocks(fx.pool), 0);
	fx_close(&fx);
}

/* transfer hands every block on; discard frees every block; bad frames are the parse error. */
static void test_transfer_discard(void **state)
{
	struct shmrig_value v;
	size_t len;
	void *frame, *part;
	struct fx fx;

	(void)state;
	fx_open(&fx);
	frame = encode_table(&fx, &len);
	assert_int_equal(th_live_blocks(fx.pool), 1);
	/* to ourselves: still ours after, so it can be discarded */
	assert_int_equal(shmrig_frame_transfer(fx.pool, frame, len, getpid()), 0);
	/* no such process (above any pid_max) */
	assert_int_equal(shmrig_frame_transfer(fx.pool, frame, len, INT_MAX), -ESRCH);
	part = th_frame_copy(frame, len - 1);
	assert_error(shmrig_frame_transfer(fx.pool, part, len - 1, getpid()), -EBADMSG, "frame: ");
	assert_error(shmrig_frame_discard(fx.pool, part, len - 1), -EBADMSG, "frame: ");
	free(part);
	assert_int_equal(th_live_blocks(fx.pool), 1);
	assert_int_equal(shmrig_frame_discard(fx.pool, frame, len), 0);
	assert_int_equal(th_live_blocks(fx.pool), 0);
	/* a second discard: every ref is stale; a decode too */
	assert_int_equal(shmrig_frame_discard(fx.pool, frame, len), -SHMRIG_ESTALE);
	assert_int_equal(shmrig_registry_decode(fx.reg, fx.pool, frame, len, &v), -SHMRIG_ESTALE);
	assert_int_equal(shmrig_frame_transfer(fx.pool, frame, len, getpid()), -SHMRIG_ESTALE);
	free(frame);

	/* discard frees what it can and returns the first error */
	{
		struct shmrig_ref refs[3];
		size_t a_len, b_len, bad_len;
		void *a = encode_ndarray(&fx, &a_len), *b = encode_bytes(&fx, &b_len), *bad;

		refs[0] = th_frame_ref(a, 0);
		refs[1] = th_frame_ref(a, 0);
		refs[1].offset = 64ull << 30;
		refs[2] = th_frame_ref(b, 0);
		bad = th_frame_build(0, refs, 3, "\xc0", 1, &bad_len);
		assert_int_equal(th_live_blocks(fx.pool), 2);
		assert_int_equal(shmrig_frame_discard(fx.pool, bad, bad_len), -SHMRIG_EBADREF);
		assert_int_equal(th_live_blocks(fx.pool), 0);
		free(bad);
		free(a);
		free(b);
	}
	fx_close(&fx);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_valid),           cmocka_unit_test(test_truncated),
		cmocka_unit_test(test_bad_header),      cmocka_unit_test(test_unknown_codec),
		cmocka_unit_test(test_buffer_mismatch), cmocka_unit_test(test_bad_meta),
		cmocka_unit_test(test_meta_depth),      cmocka_unit_test(test_meta_items),
		cmocka_unit_test(test_bad_refs),
		cmocka_unit_test(test_to_json),         cmocka_unit_test(test_transfer_discard),
	};

	return cmocka_run_group_tests(tests, th_sweep_leftovers, NULL);
}
