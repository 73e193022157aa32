/* SPDX-License-Identifier: MIT */
/*
 * Flat frames (shmrig_frame_flatten / shmrig_frame_unflatten): the value of
 * every built-in codec through encode, flatten, unflatten into another pool,
 * decode, equal to the input, with no block left live on either side; a
 * flatten that fails releases nothing; hostile flat frames (a valid one
 * truncated at every byte, counts, sizes and offsets too large, content past
 * the end, non-zero padding, misaligned) are each -EBADMSG or -EINVAL and
 * leave no block behind; a pool too small for the payload is -ENOMEM, with
 * the blocks taken before it freed. The same rules for bare frames (the
 * frame without its payload, as the "ucx" channel sends it: codec/flat.h):
 * a ref naming a block, sizes past what the message holds (their sum
 * included, with no wrap-around) are -EBADMSG; blocks allocated for a bare
 * frame that does not fit are all freed.
 */
#include "helpers.h"
#include "codec/flat.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <shmrig/frame.h>
#include <shmrig/pool.h>
#include <shmrig/registry.h>
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

/* The sender's pool and the receiver's: two pools, as on two hosts. */
struct fx {
	shmrig_pool *sender;
	shmrig_pool *receiver;
	shmrig_registry *reg;
};

static void fx_open(struct fx *fx)
{
	fx->sender = th_open_pool(4 * MiB, 256 * MiB);
	fx->receiver = th_open_pool(4 * MiB, 256 * MiB);
	assert_non_null(fx->sender);
	assert_non_null(fx->receiver);
	assert_int_equal(shmrig_registry_create(&fx->reg), 0);
	assert_int_equal(shmrig_registry_add_builtins(fx->reg), 0);
}

/* Every test ends here: nothing live, the pools close clean, no segment left. */
static void fx_close(struct fx *fx)
{
	assert_int_equal(th_live_blocks(fx->sender), 0);
	assert_int_equal(th_live_blocks(fx->receiver), 0);
	shmrig_registry_free(fx->reg);
	assert_int_equal(shmrig_pool_close(fx->sender), 0);
	assert_int_equal(shmrig_pool_close(fx->receiver), 0);
	assert_int_equal(th_count_segments(th_prefix()), 0);
}

/* ---- values ---- */

static const double nd_data[3][4] = { { 0.5, 1.5, 2.5, 3.5 },
				      { 4.5, 5.5, 6.5, 7.5 },
				      { 8.5, 9.5, 10.5, 11.5 } };
static const uint8_t cube[2][3][5] = { { { 1, 2, 3, 4, 5 }, { 6, 7, 8, 9, 10 }, { 11, 12, 13 } },
				       { { 14, 15 }, { 16 }, { 17, 18, 19, 20, 21 } } };
static const int32_t col_a[5] = { 1, -2, 3, -4, 5 };
static const double col_b[5] = { 0.25, 0.5, 0.75, 1.0, 1.25 };
static const int16_t tiny[3] = { -7, 0, 7 };
static const char bytes_13[] = "hello, frame";

static struct shmrig_array array_of(enum shmrig_dtype dtype, char order, uint32_t ndim,
				    const uint64_t *shape, const void *data)
{
	struct shmrig_array a = { .dtype = dtype, .ndim = ndim, .order = order };

	for (uint32_t d = 0; d < ndim; d++)
		a.shape[d] = shape[d];
	a.data = (void *)data;
	return a;
}

static struct shmrig_value bytes_value(const void *data, size_t len)
{
	struct shmrig_value v = { .kind = SHMRIG_KIND_BYTES };

	v.bytes.data = data;
	v.bytes.len = len;
	return v;
}

/* Encode v, flatten it (the sender's blocks go), unflatten it into the
 * receiver's pool, decode it: equal to v. The flat bytes are checked on the way. */
static void round_trip(struct fx *fx, const struct shmrig_value *v)
{
	struct shmrig_frame sent, got;
	struct shmrig_value out;
	void *frame, *flat, *again;
	size_t len, flat_len, again_len, expect;

	assert_int_equal(shmrig_registry_encode(fx->reg, fx->sender, v, &frame, &len), 0);
	assert_int_equal(shmrig_frame_flatten(fx->sender, frame, len, &flat, &flat_len), 0);
	/* the bytes carry the payload now: nothing of it is left here */
	assert_int_equal(th_live_blocks(fx->sender), 0);
	assert_int_equal((uintptr_t)flat % 8, 0);
	assert_int_equal(shmrig_frame_parse(frame, len, &sent), 0);
	expect = (len + 7) & ~(size_t)7;
	for (uint32_t i = 0; i < sent.nbuffers; i++)
		expect += (sent.buffers[i].content_size + 7) & ~(uint64_t)7;
	assert_int_equal(flat_len, expect);

	/* encoded flat, without the pool: the same bytes, behind the room asked */
	{
		void *direct;
		size_t direct_len;

		_Alignas(8) char buf[8192];

		assert_int_equal(shmrig__registry_encode_flat(fx->reg, v, 40, NULL, 0, &direct,
							      &direct_len),
				 0);
		assert_int_equal(direct_len, flat_len);
		assert_int_equal((uintptr_t)direct % 8, 0);
		assert_memory_equal((char *)direct + 40, flat, flat_len);
		free(direct);
		/* into the caller's buffer when it fits (no malloc), else malloc'd */
		if (40 + flat_len <= sizeof(buf)) {
			assert_int_equal(shmrig__registry_encode_flat(fx->reg, v, 40, buf,
								      40 + flat_len, &direct,
								      &direct_len),
					 0);
			assert_ptr_equal(direct, buf);
			assert_int_equal(direct_len, flat_len);
			assert_memory_equal(buf + 40, flat, flat_len);
		}
		assert_int_equal(shmrig__registry_encode_flat(fx->reg, v, 40, buf,
							      40 + flat_len - 8, &direct,
							      &direct_len),
				 0);
		assert_ptr_not_equal(direct, buf);
		assert_int_equal(direct_len, flat_len);
		assert_memory_equal((char *)direct + 40, flat, flat_len);
		free(direct);
		/* a buffer not 8-aligned, or a room with no buffer, is refused */
		assert_int_equal(shmrig__registry_encode_flat(fx->reg, v, 40, buf + 4, 64, &direct,
							      &direct_len),
				 -EINVAL);
		assert_int_equal(shmrig__registry_encode_flat(fx->reg, v, 40, NULL, 64, &direct,
							      &direct_len),
				 -EINVAL);
	}
	/* decoded in place (a session's MSG_FLAT): equal to v, no block taken,
	 * no lease; the views are the value's own copies, valid after the flat
	 * bytes are gone (scribbled over here) */
	{
		void *copy = malloc(flat_len);

		assert_non_null(copy);
		memcpy(copy, flat, flat_len);
		assert_int_equal(shmrig__registry_decode_flat(fx->reg, fx->receiver, copy, flat_len,
							      &out),
				 0);
		memset(copy, 0xa5, flat_len);
		free(copy);
		assert_int_equal(th_live_blocks(fx->receiver), 0);
		assert_int_equal(shmrig_value_leases(&out), 0);
		th_assert_value_equal(v, &out);
		assert_int_equal(shmrig_value_release(&out), 0);
	}
	assert_int_equal(shmrig_frame_unflatten(fx->receiver, flat, flat_len, &again, &again_len),
			 0);
	free(flat);
	assert_int_equal(again_len, len);
	assert_int_equal(shmrig_frame_parse(again, again_len, &got), 0);
	assert_int_equal(got.codec_id, sent.codec_id);
	assert_int_equal(got.nbuffers, sent.nbuffers);
	assert_int_equal(got.meta_len, sent.meta_len);
	assert_memory_equal(got.meta, sent.meta, sent.meta_len);
	/* one block of its own per buffer, with the sizes and flags sent */
	assert_int_equal(th_live_blocks(fx->receiver), sent.nbuffers);
	for (uint32_t i = 0; i < sent.nbuffers; i++) {
		assert_int_equal(got.buffers[i].content_size, sent.buffers[i].content_size);
		assert_int_equal(got.buffers[i].temporary, sent.buffers[i].temporary);
	}
	free(frame);

	assert_int_equal(shmrig_registry_decode(fx->reg, fx->receiver, again, again_len, &out), 0);
	th_assert_value_equal(v, &out);
	free(again);
	assert_int_equal(shmrig_value_release(&out), 0);
	assert_int_equal(th_live_blocks(fx->receiver), 0);
}

static void test_round_trip(void **state)
{
	static const uint64_t nd_shape[2] = { 3, 4 }, cube_shape[3] = { 2, 3, 5 }, rows[1] = { 5 },
			      tiny_shape[1] = { 3 };
	struct shmrig_named_array columns[2], vars[3];
	struct shmrig_group groups[2];
	struct shmrig_value v;
	unsigned char *big = malloc(MiB);
	unsigned char small[64];
	struct fx fx;

	(void)state;
	assert_non_null(big);
	fx_open(&fx);
	/* bytes: 0 B, 13 B (padding after it), 64 B, 1 MiB */
	th_fill(small, sizeof(small), 1);
	th_fill(big, MiB, 2);
	v = bytes_value(small, 0);
	round_trip(&fx, &v);
	v = bytes_value(bytes_13, sizeof(bytes_13));
	round_trip(&fx, &v);
	v = bytes_value(small, sizeof(small));
	round_trip(&fx, &v);
	v = bytes_value(big, MiB);
	round_trip(&fx, &v);
	/* ndarrays, C and F order */
	v = (struct shmrig_value){ .kind = SHMRIG_KIND_NDARRAY };
	v.array = array_of(SHMRIG_DTYPE_FLOAT64, 'C', 2, nd_shape, nd_data);
	round_trip(&fx, &v);
	v.array = array_of(SHMRIG_DTYPE_UINT8, 'F', 3, cube_shape, cube);
	round_trip(&fx, &v);
	/* a table: columns packed in one block, sent as a block each */
	columns[0] = (struct shmrig_named_array){ "a", array_of(SHMRIG_DTYPE_INT32, 'C', 1, rows,
								col_a) };
	columns[1] = (struct shmrig_named_array){ "b", array_of(SHMRIG_DTYPE_FLOAT64, 'C', 1, rows,
								col_b) };
	v = (struct shmrig_value){ .kind = SHMRIG_KIND_TABLE };
	v.table = (struct shmrig_table){ .nrows = 5, .ncolumns = 2, .columns = columns };
	round_trip(&fx, &v);
	/* a dataset of two groups */
	vars[0] = (struct shmrig_named_array){ "x", array_of(SHMRIG_DTYPE_FLOAT64, 'C', 2, nd_shape,
							     nd_data) };
	vars[1] = (struct shmrig_named_array){ "t", array_of(SHMRIG_DTYPE_INT16, 'C', 1, tiny_shape,
							     tiny) };
	vars[2] = (struct shmrig_named_array){ "c", array_of(SHMRIG_DTYPE_UINT8, 'F', 3, cube_shape,
							     cube) };
	groups[0] = (struct shmrig_group){ .name = "g0", .nvariables = 2, .variables = vars };
	groups[1] = (struct shmrig_group){ .name = "g1", .nvariables = 1, .variables = vars + 2 };
	v = (struct shmrig_value){ .kind = SHMRIG_KIND_DATASET };
	v.dataset = (struct shmrig_dataset){ .ngroups = 2, .groups = groups };
	round_trip(&fx, &v);
	free(big);
	fx_close(&fx);
}

/* ---- flatten: only a frame whose blocks are ours, and nothing released on error ---- */

static void test_flatten_refused(void **state)
{
	struct shmrig_value v = bytes_value(bytes_13, sizeof(bytes_13)), out;
	struct shmrig_ref refs[2];
	void *frame, *twice, *flat;
	size_t len, twice_len, flat_len;
	struct fx fx;

	(void)state;
	fx_open(&fx);
	assert_int_equal(shmrig_registry_encode(fx.reg, fx.sender, &v, &frame, &len), 0);
	assert_error(shmrig_frame_flatten(NULL, frame, len, &flat, &flat_len), -EINVAL, "NULL");
	assert_error(shmrig_frame_flatten(fx.sender, frame, len, NULL, &flat_len), -EINVAL, "NULL");
	assert_int_equal(shmrig_frame_flatten(fx.sender, frame, len - 1, &flat, &flat_len),
			 -EBADMSG);

	/* a frame naming our block and a stale one: refused, our block untouched */
	refs[0] = th_frame_ref(frame, 0);
	refs[1] = refs[0];
	refs[1].generation ^= 1;
	{
		struct shmrig_frame f;

		assert_int_equal(shmrig_frame_parse(frame, len, &f), 0);
		twice = th_frame_build(f.codec_id, refs, 2, f.meta, f.meta_len, &twice_len);
	}
	assert_true(shmrig_frame_flatten(fx.sender, twice, twice_len, &flat, &flat_len) < 0);
	free(twice);
	assert_int_equal(th_live_blocks(fx.sender), 1);
	/* ... still handed to us unclaimed: it decodes */
	assert_int_equal(shmrig_registry_decode(fx.reg, fx.sender, frame, len, &out), 0);
	th_assert_value_equal(&v, &out);
	assert_int_equal(shmrig_value_release(&out), 0);
	/* decoded: its blocks are not ours to take any more */
	assert_true(shmrig_frame_flatten(fx.sender, frame, len, &flat, &flat_len) < 0);
	free(frame);

	/* flattened once: not twice */
	assert_int_equal(shmrig_registry_encode(fx.reg, fx.sender, &v, &frame, &len), 0);
	assert_int_equal(shmrig_frame_flatten(fx.sender, frame, len, &flat, &flat_len), 0);
	free(flat);
	assert_true(shmrig_frame_flatten(fx.sender, frame, len, &flat, &flat_len) < 0);
	free(frame);
	fx_close(&fx);
}

/* ---- hostile flat frames ---- */

/* A copy of len bytes at `shift` bytes past an 8-aligned start (*base: free() it). */
static void *copy_at(const void *src, size_t len, size_t shift, void **base)
{
	char *p = aligned_alloc(8, ((len + shift) / 8 + 1) * 8);

	assert_non_null(p);
	if (len)
		memcpy(p + shift, src, len);
	*base = p;
	return p + shift;
}

/* Unflattening these len bytes fails with `code` (its message mentions
 * `word`, unless NULL) and leaves no block in the receiver's pool; and so
 * does decoding them in place (shmrig__registry_decode_flat: a session's
 * MSG_FLAT), by the same rules, its value left empty. */
static void check_bad_flat(struct fx *fx, const void *flat, size_t len, int code, const char *word)
{
	void *base, *copy = copy_at(flat, len, 0, &base);
	void *frame = (void *)1;
	size_t frame_len = 1;
	struct shmrig_value out;
	int ret = shmrig_frame_unflatten(fx->receiver, copy, len, &frame, &frame_len);

	if (ret != code)
		fail_msg("%zu bytes: %d (%s), expected %d", len, ret, shmrig_last_error(), code);
	if (word && !strstr(shmrig_last_error(), word))
		fail_msg("error \"%s\" does not mention \"%s\"", shmrig_last_error(), word);
	assert_ptr_equal(frame, (void *)1);
	assert_int_equal(th_live_blocks(fx->receiver), 0);
	memset(&out, 0xff, sizeof(out));
	ret = shmrig__registry_decode_flat(fx->reg, fx->receiver, copy, len, &out);
	if (ret != code)
		fail_msg("decode_flat, %zu bytes: %d (%s), expected %d", len, ret,
			 shmrig_last_error(), code);
	if (word && !strstr(shmrig_last_error(), word))
		fail_msg("decode_flat: error \"%s\" does not mention \"%s\"", shmrig_last_error(),
			 word);
	assert_null(out.storage);
	assert_int_equal(th_live_blocks(fx->receiver), 0);
	free(base);
}

/* A flat frame of `value`, malloc'd (the sender's blocks are released). */
static void *flat_of(struct fx *fx, const struct shmrig_value *value, size_t *flat_len)
{
	void *frame, *flat;
	size_t len;

	assert_int_equal(shmrig_registry_encode(fx->reg, fx->sender, value, &frame, &len), 0);
	assert_int_equal(shmrig_frame_flatten(fx->sender, frame, len, &flat, flat_len), 0);
	free(frame);
	return flat;
}

static struct shmrig_frame_header flat_header(const void *flat)
{
	struct shmrig_frame_header h;

	memcpy(&h, flat, sizeof(h));
	return h;
}

static size_t pad8(size_t n)
{
	return (n + 7) & ~(size_t)7;
}

/* Ref i of a flat frame, changed by fn, as a new flat frame: checked bad. */
static void check_bad_ref(struct fx *fx, const void *flat, size_t len, uint32_t i,
			  void (*fn)(struct shmrig_ref *ref, size_t flat_len), const char *word)
{
	char *bad = malloc(len);
	struct shmrig_ref ref;

	assert_non_null(bad);
	memcpy(bad, flat, len);
	memcpy(&ref, bad + HEADER_SIZE + i * REF_SIZE, sizeof(ref));
	fn(&ref, len);
	memcpy(bad + HEADER_SIZE + i * REF_SIZE, &ref, sizeof(ref));
	check_bad_flat(fx, bad, len, -EBADMSG, word);
	free(bad);
}

static void ref_named(struct shmrig_ref *ref, size_t flat_len)
{
	(void)flat_len;
	strcpy(ref->name, "t_frame_flat-1-2-3");
}

static void ref_offset(struct shmrig_ref *ref, size_t flat_len)
{
	(void)flat_len;
	ref->offset = 64;
}

static void ref_generation(struct shmrig_ref *ref, size_t flat_len)
{
	(void)flat_len;
	ref->generation = 1;
}

static void ref_past_end(struct shmrig_ref *ref, size_t flat_len)
{
	ref->content_size = flat_len;
	ref->size = flat_len;
}

static void ref_huge(struct shmrig_ref *ref, size_t flat_len)
{
	(void)flat_len;
	ref->content_size = UINT64_MAX;
	ref->size = UINT64_MAX;
}

static void ref_short(struct shmrig_ref *ref, size_t flat_len)
{
	(void)flat_len;
	ref->content_size -= 8; /* bytes the flat frame carries that are nobody's */
}

static void ref_over_size(struct shmrig_ref *ref, size_t flat_len)
{
	(void)flat_len;
	ref->size = ref->content_size - 1;
}

static void ref_temporary(struct shmrig_ref *ref, size_t flat_len)
{
	(void)flat_len;
	ref->temporary = 2;
}

static void ref_reserved(struct shmrig_ref *ref, size_t flat_len)
{
	(void)flat_len;
	ref->reserved[1] = 1;
}

static void test_hostile(void **state)
{
	struct shmrig_value v = bytes_value(bytes_13, sizeof(bytes_13));
	struct shmrig_frame_header h;
	size_t flat_len, frame_len, wide_len;
	void *flat, *wide, *base, *frame;
	char *bad;
	struct fx fx;

	(void)state;
	fx_open(&fx);
	flat = flat_of(&fx, &v, &flat_len);
	h = flat_header(flat);
	frame_len = shmrig_frame_size(h.nbuffers, h.meta_len);
	assert_int_equal(h.nbuffers, 1);
	/* the frame and the 13 bytes are both padded */
	assert_true(frame_len % 8 != 0);
	assert_int_equal(flat_len, pad8(frame_len) + pad8(sizeof(bytes_13)));

	/* truncated at every byte, and one word too long */
	for (size_t len = 0; len < flat_len; len++)
		check_bad_flat(&fx, flat, len, -EBADMSG, "flat frame");
	bad = calloc(1, flat_len + 8);
	assert_non_null(bad);
	memcpy(bad, flat, flat_len);
	check_bad_flat(&fx, bad, flat_len + 8, -EBADMSG, "after the last buffer");
	free(bad);

	/* arguments, alignment */
	assert_error(shmrig_frame_unflatten(NULL, flat, flat_len, &frame, &frame_len), -EINVAL,
		     "NULL");
	assert_error(shmrig_frame_unflatten(fx.receiver, flat, flat_len, NULL, &frame_len), -EINVAL,
		     "NULL");
	wide = copy_at(flat, flat_len, 4, &base);
	assert_error(shmrig_frame_unflatten(fx.receiver, wide, flat_len, &frame, &frame_len),
		     -EINVAL, "aligned");
	free(base);

	/* the header: magic, counts and meta length too large for the bytes or the limits */
	bad = malloc(flat_len);
	assert_non_null(bad);
	{
		static const struct {
			uint32_t nbuffers, meta_len, magic;
			const char *word;
		} headers[] = {
			{ 2, 0, SHMRIG_FRAME_MAGIC, "more than" },
			{ 1000, 0, SHMRIG_FRAME_MAGIC, "more than" },
			{ SHMRIG_FRAME_MAX_BUFFERS + 1, 0, SHMRIG_FRAME_MAGIC, "more than" },
			{ UINT32_MAX, 0, SHMRIG_FRAME_MAGIC, "more than" },
			{ 1, 4096, SHMRIG_FRAME_MAGIC, "more than" },
			{ 1, UINT32_MAX, SHMRIG_FRAME_MAGIC, "more than" },
			{ 1, 0, 0x12345678u, "magic" },
		};

		for (size_t i = 0; i < sizeof(headers) / sizeof(headers[0]); i++) {
			struct shmrig_frame_header bad_h = h;

			bad_h.nbuffers = headers[i].nbuffers;
			bad_h.magic = headers[i].magic;
			if (headers[i].meta_len)
				bad_h.meta_len = headers[i].meta_len;
			memcpy(bad, flat, flat_len);
			memcpy(bad, &bad_h, sizeof(bad_h));
			check_bad_flat(&fx, bad, flat_len, -EBADMSG, headers[i].word);
		}
		/* a shorter meta length: the frame is parsed from other bytes */
		{
			struct shmrig_frame_header bad_h = h;

			bad_h.meta_len = h.meta_len - 1;
			memcpy(bad, flat, flat_len);
			memcpy(bad, &bad_h, sizeof(bad_h));
			check_bad_flat(&fx, bad, flat_len, -EBADMSG, NULL);
		}
	}
	/* padding after the frame, and after the buffer */
	memcpy(bad, flat, flat_len);
	bad[frame_len] = 1;
	check_bad_flat(&fx, bad, flat_len, -EBADMSG, "padding");
	memcpy(bad, flat, flat_len);
	bad[flat_len - 1] = 1;
	check_bad_flat(&fx, bad, flat_len, -EBADMSG, "padding");
	free(bad);

	/* refs: naming a block, sizes past the end or inconsistent, bad fields */
	check_bad_ref(&fx, flat, flat_len, 0, ref_named, "names a block");
	check_bad_ref(&fx, flat, flat_len, 0, ref_offset, "names a block");
	check_bad_ref(&fx, flat, flat_len, 0, ref_generation, "names a block");
	check_bad_ref(&fx, flat, flat_len, 0, ref_past_end, "left");
	check_bad_ref(&fx, flat, flat_len, 0, ref_huge, "left");
	check_bad_ref(&fx, flat, flat_len, 0, ref_short, "flat frame");
	check_bad_ref(&fx, flat, flat_len, 0, ref_over_size, "content_size");
	check_bad_ref(&fx, flat, flat_len, 0, ref_temporary, "temporary");
	check_bad_ref(&fx, flat, flat_len, 0, ref_reserved, "reserved");

	/* and the flat frame itself still unflattens, into a frame that decodes */
	{
		struct shmrig_value out;

		assert_int_equal(shmrig_frame_unflatten(fx.receiver, flat, flat_len, &frame,
							&wide_len),
				 0);
		assert_int_equal(shmrig_registry_decode(fx.reg, fx.receiver, frame, wide_len, &out),
				 0);
		th_assert_value_equal(&v, &out);
		assert_int_equal(shmrig_value_release(&out), 0);
		free(frame);
	}
	free(flat);
	fx_close(&fx);
}

/* ---- a pool too small for the payload ---- */

/* A flat frame of n buffers of `each` bytes (the "bytes" codec's id and no
 * metadata: unflatten does not read the metadata), built by hand. */
static void *flat_by_hand(uint32_t n, size_t each, size_t *flat_len)
{
	struct shmrig_frame_header h = {
		.magic = SHMRIG_FRAME_MAGIC,
		.version = SHMRIG_FRAME_VERSION,
		.nbuffers = n,
	};
	size_t frame_len = shmrig_frame_size(n, 0);
	size_t len = pad8(frame_len) + (size_t)n * pad8(each);
	char *flat = aligned_alloc(8, len);

	assert_non_null(flat);
	memset(flat, 0, len);
	memcpy(flat, &h, sizeof(h));
	for (uint32_t i = 0; i < n; i++) {
		struct shmrig_ref ref = { .size = each, .content_size = each };

		memcpy(flat + HEADER_SIZE + i * REF_SIZE, &ref, sizeof(ref));
		th_fill((unsigned char *)flat + pad8(frame_len) + i * pad8(each), each, i);
	}
	*flat_len = len;
	return flat;
}

static void test_pool_too_small(void **state)
{
	shmrig_pool *tiny_pool = th_open_pool(2 * MiB, 4 * MiB);
	size_t flat_len, len;
	void *flat, *frame;
	struct shmrig_frame f;

	(void)state;
	assert_non_null(tiny_pool);
	/* 12 blocks of 512 KiB: some fit, then the pool is at its limit */
	flat = flat_by_hand(12, 512 * 1024, &flat_len);
	assert_error(shmrig_frame_unflatten(tiny_pool, flat, flat_len, &frame, &len), -ENOMEM, "");
	assert_int_equal(th_live_blocks(tiny_pool), 0);
	/* one that fits comes out whole, each block holding its bytes */
	free(flat);
	flat = flat_by_hand(3, 1000, &flat_len);
	assert_int_equal(shmrig_frame_unflatten(tiny_pool, flat, flat_len, &frame, &len), 0);
	assert_int_equal(shmrig_frame_parse(frame, len, &f), 0);
	assert_int_equal(f.nbuffers, 3);
	for (uint32_t i = 0; i < 3; i++) {
		void *data;

		assert_int_equal(f.buffers[i].content_size, 1000);
		assert_int_equal(shmrig_pool_attach(tiny_pool, &f.buffers[i], &data), 0);
		assert_int_equal(th_first_mismatch(data, 1000, i), 1000);
	}
	assert_int_equal(th_live_blocks(tiny_pool), 3);
	assert_int_equal(shmrig_frame_discard(tiny_pool, frame, len), 0);
	assert_int_equal(th_live_blocks(tiny_pool), 0);
	free(frame);
	free(flat);
	assert_int_equal(shmrig_pool_close(tiny_pool), 0);
	assert_int_equal(th_count_segments(th_prefix()), 0);
}

/* ---- bare frames (codec/flat.h): the checks a receiver of one applies ---- */

static void test_bare_rules(void **state)
{
	shmrig_pool *tiny_pool = th_open_pool(2 * MiB, 8 * MiB);
	size_t flat_len, frame_len = shmrig_frame_size(2, 0);
	struct shmrig_ref *refs;
	struct shmrig_frame f;
	uint64_t payload;
	void *data[2];
	char *flat;

	(void)state;
	assert_non_null(tiny_pool);
	flat = flat_by_hand(2, 1000, &flat_len);
	refs = (struct shmrig_ref *)(flat + HEADER_SIZE);
	/* the frame part of a flat frame is a bare frame: its payload is the sum */
	assert_int_equal(shmrig__frame_check_bare(flat, frame_len, 2000, &f, &payload), 0);
	assert_int_equal(payload, 2000);
	assert_int_equal(f.nbuffers, 2);
	/* one byte less than the buffers hold */
	assert_error(shmrig__frame_check_bare(flat, frame_len, 1999, &f, &payload), -EBADMSG,
		     "left");
	/* sizes whose sum wraps around 2^64 */
	refs[0].size = refs[0].content_size = UINT64_MAX / 2 + 64;
	refs[1].size = refs[1].content_size = UINT64_MAX / 2 + 64;
	assert_error(shmrig__frame_check_bare(flat, frame_len, UINT64_MAX, &f, &payload), -EBADMSG,
		     "left");
	refs[0].size = refs[0].content_size = 1000;
	refs[1].size = refs[1].content_size = 1000;
	/* a ref that names a block: the peer's, refused as the peer's fault */
	refs[1].name[0] = 'x';
	assert_error(shmrig__frame_check_bare(flat, frame_len, 2000, &f, &payload), -EBADMSG,
		     "names a block");
	refs[1].name[0] = 0;
	refs[1].generation = 3;
	assert_error(shmrig__frame_check_bare(flat, frame_len, 2000, &f, &payload), -EBADMSG,
		     "names a block");
	refs[1].generation = 0;
	/* a ref's own fields (content_size over size): -EBADMSG here, not EBADREF */
	refs[1].content_size = 2000;
	assert_error(shmrig__frame_check_bare(flat, frame_len, 4000, &f, &payload), -EBADMSG,
		     "buffer 1");
	refs[1].content_size = 1000;
	/* blocks for it: each ref now names a block of ours, handed and unclaimed */
	assert_int_equal(shmrig__frame_check_bare(flat, frame_len, 2000, &f, &payload), 0);
	assert_int_equal(shmrig__frame_bare_blocks(tiny_pool, flat, &f, data), 0);
	assert_int_equal(th_live_blocks(tiny_pool), 2);
	assert_int_equal(shmrig_frame_parse(flat, frame_len, &f), 0);
	assert_int_equal(shmrig_pool_attach(tiny_pool, &f.buffers[1], &data[0]), 0);
	assert_ptr_equal(data[0], data[1]);
	assert_int_equal(shmrig_frame_discard(tiny_pool, flat, frame_len), 0);
	assert_int_equal(th_live_blocks(tiny_pool), 0);
	/* two blocks of 3.5 MiB: the first fits (the pool's limit is 8 MiB, an
	 * arena of 2 made), the second does not; the first is freed, nothing is
	 * left */
	for (int i = 0; i < 2; i++)
		refs[i] = (struct shmrig_ref){ .size = 7 * MiB / 2, .content_size = 7 * MiB / 2 };
	assert_int_equal(shmrig__frame_check_bare(flat, frame_len, 7 * MiB, &f, &payload), 0);
	assert_int_equal(shmrig__frame_bare_blocks(tiny_pool, flat, &f, data), -ENOMEM);
	assert_int_equal(th_live_blocks(tiny_pool), 0);
	free(flat);
	assert_int_equal(shmrig_pool_close(tiny_pool), 0);
	assert_int_equal(th_count_segments(th_prefix()), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_round_trip), cmocka_unit_test(test_flatten_refused),
		cmocka_unit_test(test_hostile),    cmocka_unit_test(test_pool_too_small),
		cmocka_unit_test(test_bare_rules),
	};

	return cmocka_run_group_tests(tests, th_sweep_leftovers, th_remove_leftovers);
}
