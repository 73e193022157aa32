/* SPDX-License-Identifier: MIT */
/*
 * The example codec (../good/delta.c) with one flaw each, chosen at build time
 * (meson.build: one plugin a flaw, -DFLAW_<NAME>), for shmrig-validate to
 * catch: tests/test_examples.py asserts which check fails for each. Every
 * plugin keeps the good one's name, version and codec name, its kind
 * (../good/series.c) and its golden frames: only the flaw differs. Do not copy this file; read each
 * flaw as what not to do.
 *
 *   FLAW_LEAK            stages the varints in a pool block of its own and
 *                        never frees it
 *   FLAW_WRITE_PAST      writes each varint with an 8-byte store: the last one
 *                        spills up to 7 bytes past content_size
 *   FLAW_META_NOT_JSON   writes the int64 base as a uint: a negative base is an
 *                        integer above INT64_MAX, which JSON cannot hold (the
 *                        round trip still works: it reads it back the same way)
 *   FLAW_CRASH_TRUNCATED asserts that the buffer holds what the metadata says
 *                        (assert() on input from another process)
 *   FLAW_PERSISTENT_AS_TEMPORARY  marks the raw buffer temporary, but keeps a
 *                        view of it: the registry refuses its own frames
 *   FLAW_VIEW_OF_TEMPORARY        marks the raw buffer temporary and reads it so,
 *                        but keeps a view of it instead of copying it out
 *   FLAW_THREAD_UNSAFE   encodes through one static scratch buffer, shared by
 *                        every thread
 *   FLAW_FORMAT_CHANGE   drops the zig-zag mapping (plain two's complement
 *                        varints) and keeps "format": 1 and version 1.0.0: its
 *                        own round trips pass, the good plugin's golden frames
 *                        do not decode to their values
 */
#ifdef FLAW_CRASH_TRUNCATED
#undef NDEBUG /* the flaw is the assert: keep it in any build type */
#endif
#include "series.h"

#include <assert.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define FORMAT 1
#define VARINT_MAX 10

static uint64_t zigzag(uint64_t delta)
{
#ifdef FLAW_FORMAT_CHANGE
	return delta; /* "zig-zag is not worth it": a new format under the old number */
#else
	return (delta << 1) ^ (0 - (delta >> 63));
#endif
}

static uint64_t unzigzag(uint64_t z)
{
#ifdef FLAW_FORMAT_CHANGE
	return z;
#else
	return (z >> 1) ^ (0 - (z & 1));
#endif
}

static size_t varint_size(uint64_t v)
{
	size_t n = 1;

	while (v >= 0x80) {
		v >>= 7;
		n++;
	}
	return n;
}

static uint64_t delta_at(const struct example_series *s, uint64_t i)
{
	return (uint64_t)s->values[i] - (uint64_t)(i ? s->values[i - 1] : s->start);
}

/* Write the varint of z at out; the bytes written. */
static size_t put_varint(uint8_t *out, uint64_t z)
{
	size_t n = 0;
#ifdef FLAW_WRITE_PAST
	/* "faster": build the varint's first 8 bytes in a word and store all 8, then
	 * move on by the varint's length. The last store writes past the end. */
	uint64_t word = 0;

	if (z < (1ull << 56)) {
		for (uint64_t v = z;; n++) {
			word |= (uint64_t)((v & 0x7f) | (v >= 0x80 ? 0x80 : 0)) << (8 * n);
			if (v < 0x80)
				break;
			v >>= 7;
		}
		memcpy(out, &word, sizeof(word));
		return n + 1;
	}
#endif
	while (z >= 0x80) {
		out[n++] = (uint8_t)(z | 0x80);
		z >>= 7;
	}
	out[n++] = (uint8_t)z;
	return n;
}

#ifdef FLAW_THREAD_UNSAFE
/* "one allocation for every encode": shared by every thread that encodes */
static uint8_t *scratch;
static size_t scratch_size;
#endif

#ifdef FLAW_LEAK
#include <pthread.h>

/* "stage the varints in shared memory": a small pool of its own, a block per encode */
static shmrig_pool *staging_pool;
static pthread_once_t staging_once = PTHREAD_ONCE_INIT;

static void staging_open(void)
{
	struct shmrig_pool_opts opts = SHMRIG_SIZED(struct shmrig_pool_opts);

	opts.flags = SHMRIG_POOL_QUIET;
	opts.arena_size = (size_t)2 << 20;
	opts.max_bytes = (size_t)4 << 20; /* full: the varints are written directly */
	if (shmrig_pool_open(&opts, &staging_pool))
		staging_pool = NULL;
}
#endif

/* The varints of every delta into out (delta_size bytes). 0 or -errno. */
static int put_deltas(const struct example_series *s, uint8_t *out, size_t delta_size)
{
#ifdef FLAW_THREAD_UNSAFE
	/* grow the shared scratch, fill it, copy it: two threads at once trample each other */
	if (scratch_size < delta_size + 8) {
		free(scratch);
		scratch = malloc(delta_size + 8);
		scratch_size = scratch ? delta_size + 8 : 0;
		if (!scratch)
			return -ENOMEM;
	}
	for (uint64_t i = 0, at = 0; i < s->count; i++)
		at += put_varint(scratch + at, zigzag(delta_at(s, i)));
	memcpy(out, scratch, delta_size);
#elif defined(FLAW_LEAK)
	struct shmrig_ref ref;
	uint8_t *staged = NULL;

	pthread_once(&staging_once, staging_open);
	if (!staging_pool ||
	    shmrig_pool_alloc(staging_pool, delta_size, 0, 0, &ref, (void **)&staged))
		staged = out; /* no staging space: write directly */
	for (uint64_t i = 0, at = 0; i < s->count; i++)
		at += put_varint(staged + at, zigzag(delta_at(s, i)));
	/* copied, and never freed (no shmrig_pool_free(staging_pool, &ref)): a block an encode */
	if (staged != out)
		memcpy(out, staged, delta_size);
#else
	(void)delta_size;
	for (uint64_t i = 0, at = 0; i < s->count; i++)
		at += put_varint(out + at, zigzag(delta_at(s, i)));
#endif
	return 0;
}

static int delta_encode(void *ctx, struct shmrig_encoder *enc, const struct shmrig_value *value)
{
	const struct example_series *s = value->user;
	size_t raw_size, delta_size = 0;
	uint32_t raw_flags = 0;
	bool delta;
	void *data;
	int index, ret;

	(void)ctx;
	if (!s || (s->count && !s->values))
		return -EINVAL;
	if (s->count > SIZE_MAX / sizeof(int64_t))
		return -EOVERFLOW;
	raw_size = (size_t)s->count * sizeof(int64_t);
	for (uint64_t i = 0; i < s->count && delta_size < raw_size; i++)
		delta_size += varint_size(zigzag(delta_at(s, i)));
	delta = delta_size < raw_size;
#if defined(FLAW_PERSISTENT_AS_TEMPORARY) || defined(FLAW_VIEW_OF_TEMPORARY)
	raw_flags = SHMRIG_BUF_TEMPORARY; /* "the receiver is done with it after decode" */
#endif
	if (delta) {
		index = shmrig_encoder_buffer(enc, delta_size, SHMRIG_BUF_TEMPORARY, &data);
		if (index < 0)
			return index;
		ret = put_deltas(s, data, delta_size);
		if (ret)
			return ret;
	} else {
		index = shmrig_encoder_buffer(enc, raw_size, raw_flags, &data);
		if (index < 0)
			return index;
		if (raw_size)
			memcpy(data, s->values, raw_size);
	}
	if ((ret = shmrig_meta_put_map(enc, 4)) || (ret = shmrig_meta_put_str(enc, "format")) ||
	    (ret = shmrig_meta_put_uint(enc, FORMAT)) ||
	    (ret = shmrig_meta_put_str(enc, "encoding")) ||
	    (ret = shmrig_meta_put_str(enc, delta ? "delta" : "raw")) ||
	    (ret = shmrig_meta_put_str(enc, "start")) ||
#ifdef FLAW_META_NOT_JSON
	    (ret = shmrig_meta_put_uint(enc, (uint64_t)s->start)) || /* -1 is 2^64 - 1 */
#else
	    (ret = shmrig_meta_put_int(enc, s->start)) ||
#endif
	    (ret = shmrig_meta_put_str(enc, "count")) ||
	    (ret = shmrig_meta_put_uint(enc, s->count)))
		return ret;
	return 0;
}

static int decode_deltas(const uint8_t *data, uint64_t len, int64_t start, int64_t *values,
			 uint64_t count)
{
	const uint8_t *p = data, *end = data + len;
	uint64_t at = (uint64_t)start;

	for (uint64_t i = 0; i < count; i++) {
		uint64_t z = 0;
		unsigned shift = 0;

		for (;;) {
			if (p == end || shift >= 7 * VARINT_MAX)
				return -EBADMSG;
			z |= (uint64_t)(*p & 0x7f) << shift;
			shift += 7;
			if (!(*p++ & 0x80))
				break;
		}
		at += unzigzag(z);
		values[i] = (int64_t)at;
	}
	return p == end ? 0 : -EBADMSG;
}

static int delta_decode(void *ctx, struct shmrig_decoder *dec, struct shmrig_value *out)
{
	const shmrig_meta *meta = shmrig_decoder_meta(dec);
	struct example_series *s;
	const char *encoding;
	size_t encoding_len;
	uint64_t format, count, len;
	uint32_t raw_flags = 0;
	int64_t start;
	const void *data;
	bool delta;
	int ret;

	(void)ctx;
	if ((ret = shmrig_meta_uint(shmrig_meta_get(meta, "format"), &format)) ||
	    (ret = shmrig_meta_str(shmrig_meta_get(meta, "encoding"), &encoding, &encoding_len)) ||
#ifdef FLAW_META_NOT_JSON
	    (ret = shmrig_meta_uint(shmrig_meta_get(meta, "start"), (uint64_t *)&start)) ||
#else
	    (ret = shmrig_meta_int(shmrig_meta_get(meta, "start"), &start)) ||
#endif
	    (ret = shmrig_meta_uint(shmrig_meta_get(meta, "count"), &count)))
		return ret;
	if (format != FORMAT)
		return -EPROTO;
	if (encoding_len == 5 && memcmp(encoding, "delta", 5) == 0)
		delta = true;
	else if (encoding_len == 3 && memcmp(encoding, "raw", 3) == 0)
		delta = false;
	else
		return -EBADMSG;
	if (shmrig_decoder_nbuffers(dec) != 1)
		return -EBADMSG;
#ifdef FLAW_VIEW_OF_TEMPORARY
	raw_flags = SHMRIG_BUF_TEMPORARY; /* read as the frame says, then kept anyway */
#endif
	ret = shmrig_decoder_buffer(dec, 0, delta ? SHMRIG_BUF_TEMPORARY : raw_flags, &data, &len);
	if (ret)
		return ret;
#ifdef FLAW_CRASH_TRUNCATED
	/* "our encoder always writes count values": a frame from another process need not */
	assert(delta ? len >= count : len >= count * sizeof(int64_t));
#endif
	s = shmrig_decoder_alloc(dec, sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->start = start;
	s->count = count;
	if (delta) {
		int64_t *values = NULL;

		if (count > len)
			return -EBADMSG;
		if (count && !(values = shmrig_decoder_alloc(dec, (size_t)count * sizeof(*values))))
			return -ENOMEM;
		ret = decode_deltas(data, len, start, values, count);
		if (ret)
			return ret;
		s->values = values;
	} else {
		if (len % sizeof(int64_t) || count != len / sizeof(int64_t))
			return -EBADMSG;
		s->values = count ? data : NULL;
	}
	out->kind = SHMRIG_KIND_USER;
	out->user = s;
	return 0;
}

static const struct shmrig_codec codecs[] = {
	{ .size = sizeof(struct shmrig_codec),
	  .name = "example.delta",
	  .kinds = SHMRIG_KIND_BIT(SHMRIG_KIND_USER),
	  .user_type = EXAMPLE_SERIES_TYPE,
	  .encode = delta_encode,
	  .decode = delta_decode },
};

static const struct shmrig_plugin_kind kinds[] = {
	{ .size = sizeof(struct shmrig_plugin_kind),
	  .kind = SHMRIG_KIND_USER,
	  .user_type = EXAMPLE_SERIES_TYPE,
	  .generate = example_series_generate,
	  .edge_cases = EXAMPLE_SERIES_EDGE_CASES,
	  .release = example_series_release,
	  .equal = example_series_equal },
};

static const struct shmrig_plugin plugin = {
	.size = sizeof(struct shmrig_plugin),
	.abi = SHMRIG_PLUGIN_ABI,
	.version_major = SHMRIG_VERSION_MAJOR,
	.version_minor = SHMRIG_VERSION_MINOR,
	.name = "example",
	.version = "1.0.0",
	.ncodecs = 1,
	.nkinds = 1,
	.codecs = codecs,
	.kinds = kinds,
	/* the good plugin's golden frames, where the tree's build puts them (a sibling) */
	.golden_dir = "../good/golden",
};

SHMRIG_PLUGIN_DEFINE(plugin)
