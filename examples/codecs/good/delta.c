/* SPDX-License-Identifier: MIT */
/*
 * example: a codec plugin worth copying. One codec, "example.delta", for one
 * user kind, "example.series" (series.h): a base and int64 values, sent as the
 * differences between neighbours, zig-zag mapped and written as varints
 * (LEB128), so that a slowly moving series of 8-byte values takes 1-2 bytes a
 * value. When that would not save anything (random or extreme values), it
 * sends the values as they are and the receiver views them in place.
 *
 * The frame, per value: metadata {"format": 1, "encoding": "delta" | "raw",
 * "start": base, "count": values} and one buffer:
 *   delta  the varints, a TEMPORARY buffer: decode turns them back into values
 *          in memory of its own (shmrig_decoder_alloc), and the registry frees
 *          the buffer as soon as decode returns;
 *   raw    count int64 values in the host's byte order (shared memory does not
 *          leave the machine), a PERSISTENT buffer: the decoded value points
 *          into it (zero copy) and holds a lease on its block until
 *          shmrig_value_release().
 * The frame says which, per buffer; the decoder says how it reads each buffer,
 * and the registry refuses a frame where the two differ.
 *
 * "format" is this layout's version. Old frames may be stored, or come from a
 * process built from an older plugin: change the layout and you change the
 * number (and the plugin's version), keep decoding the old one, and add golden
 * frames of the new one. The golden frames in golden/ are the old data
 * shmrig-validate decodes to prove it (Recommended.Golden.Frames).
 *
 * Everything in a frame came from another process: decode checks every count
 * against the bytes that hold it before it allocates or reads, and never
 * asserts on what it reads (a bad frame is -EBADMSG, never a crash).
 *
 * Build: meson.build here (pkg-config shmrig-plugin). Check:
 * shmrig-validate example_delta.so. README.md "Writing a codec plugin".
 */
#include "series.h"

#include <errno.h>
#include <string.h>

#define FORMAT 1      /* the frame layout above; bump it when it changes */
#define VARINT_MAX 10 /* bytes of a 64-bit varint */

/* ---- the encoding: zig-zag deltas as varints ---- */

/* Small magnitudes either side of 0 to small unsigned numbers: 0, -1, 1, -2 -> 0, 1, 2, 3. */
static uint64_t zigzag(uint64_t delta)
{
	return (delta << 1) ^ (0 - (delta >> 63));
}

static uint64_t unzigzag(uint64_t z)
{
	return (z >> 1) ^ (0 - (z & 1));
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

/* The difference from the previous value (the base for the first), wrapping: unsigned. */
static uint64_t delta_at(const struct example_series *s, uint64_t i)
{
	return (uint64_t)s->values[i] - (uint64_t)(i ? s->values[i - 1] : s->start);
}

/* ---- encode ---- */

static int delta_encode(void *ctx, struct shmrig_encoder *enc, const struct shmrig_value *value)
{
	const struct example_series *s = value->user;
	size_t raw_size, delta_size = 0;
	bool delta;
	void *data;
	int index, ret;

	(void)ctx;
	/* the registry offers this codec values of its user type only; still, never trust a pointer */
	if (!s || (s->count && !s->values))
		return -EINVAL;
	if (s->count > SIZE_MAX / sizeof(int64_t))
		return -EOVERFLOW;
	raw_size = (size_t)s->count * sizeof(int64_t);
	/* First pass: the exact size. A buffer's content_size is what we ask for, and
	 * nothing may be written past it (Required.Buffers.NoWritePastContent). */
	for (uint64_t i = 0; i < s->count && delta_size < raw_size; i++)
		delta_size += varint_size(zigzag(delta_at(s, i)));
	delta = delta_size < raw_size;

	if (delta) {
		uint8_t *out;

		/* copied out by the decoder: temporary, freed as soon as it is decoded */
		index = shmrig_encoder_buffer(enc, delta_size, SHMRIG_BUF_TEMPORARY, &data);
		if (index < 0)
			return index;
		out = data;
		for (uint64_t i = 0; i < s->count; i++) {
			uint64_t z = zigzag(delta_at(s, i));

			while (z >= 0x80) {
				*out++ = (uint8_t)(z | 0x80);
				z >>= 7;
			}
			*out++ = (uint8_t)z;
		}
	} else {
		/* viewed by the decoded value: persistent (flags 0) */
		index = shmrig_encoder_buffer(enc, raw_size, 0, &data);
		if (index < 0)
			return index;
		if (raw_size)
			memcpy(data, s->values, raw_size);
	}

	/* One map of 4 pairs: each pair a key, then its value. A failed put leaves the
	 * metadata incomplete and the registry fails the encode with its error even if
	 * we went on, but returning at once says why sooner. */
	if ((ret = shmrig_meta_put_map(enc, 4)) || (ret = shmrig_meta_put_str(enc, "format")) ||
	    (ret = shmrig_meta_put_uint(enc, FORMAT)) ||
	    (ret = shmrig_meta_put_str(enc, "encoding")) ||
	    (ret = shmrig_meta_put_str(enc, delta ? "delta" : "raw")) ||
	    (ret = shmrig_meta_put_str(enc, "start")) ||
	    /* an int64 as an int: JSON holds integers from INT64_MIN to INT64_MAX exactly */
	    (ret = shmrig_meta_put_int(enc, s->start)) ||
	    (ret = shmrig_meta_put_str(enc, "count")) ||
	    (ret = shmrig_meta_put_uint(enc, s->count)))
		return ret; /* the registry frees the buffer we asked for: nothing to undo */
	return 0;
}

/* ---- decode ---- */

/* count varints from data[0..len) into values: -EBADMSG unless they fill it exactly. */
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
				return -EBADMSG; /* cut short, or longer than any uint64 */
			z |= (uint64_t)(*p & 0x7f) << shift;
			shift += 7;
			if (!(*p++ & 0x80))
				break;
		}
		at += unzigzag(z);
		values[i] = (int64_t)at;
	}
	return p == end ? 0 : -EBADMSG; /* bytes left over: not a frame we wrote */
}

static int delta_decode(void *ctx, struct shmrig_decoder *dec, struct shmrig_value *out)
{
	const shmrig_meta *meta = shmrig_decoder_meta(dec);
	struct example_series *s;
	const char *encoding;
	size_t encoding_len;
	uint64_t format, count, len;
	int64_t start;
	const void *data;
	bool delta;
	int ret;

	(void)ctx;
	/* Lookups chain: a missing key or another type is -EBADMSG from the reader. */
	if ((ret = shmrig_meta_uint(shmrig_meta_get(meta, "format"), &format)) ||
	    (ret = shmrig_meta_str(shmrig_meta_get(meta, "encoding"), &encoding, &encoding_len)) ||
	    (ret = shmrig_meta_int(shmrig_meta_get(meta, "start"), &start)) ||
	    (ret = shmrig_meta_uint(shmrig_meta_get(meta, "count"), &count)))
		return ret;
	if (format != FORMAT) /* a newer layout: say so rather than misread it */
		return -EPROTO;
	if (encoding_len == 5 && memcmp(encoding, "delta", 5) == 0)
		delta = true;
	else if (encoding_len == 3 && memcmp(encoding, "raw", 3) == 0)
		delta = false;
	else
		return -EBADMSG;
	if (shmrig_decoder_nbuffers(dec) != 1)
		return -EBADMSG;
	/* Say how we read it: the registry checks the frame marked it the same way. */
	ret = shmrig_decoder_buffer(dec, 0, delta ? SHMRIG_BUF_TEMPORARY : 0, &data, &len);
	if (ret)
		return ret;
	/* From here an error return is safe: the registry releases what the value holds
	 * (the lease, the memory from shmrig_decoder_alloc) and frees the buffer. */
	/* Owned by the value, freed by shmrig_value_release(): never malloc here. */
	s = shmrig_decoder_alloc(dec, sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->start = start;
	s->count = count;
	/* Every count is checked against the bytes that hold it before it sizes
	 * anything: a varint takes 1 byte at least, a raw value 8. */
	if (delta) {
		int64_t *values = NULL;

		if (count > len)
			return -EBADMSG;
		/* the buffer is freed when we return: decode into memory the value owns */
		if (count && !(values = shmrig_decoder_alloc(dec, (size_t)count * sizeof(*values))))
			return -ENOMEM;
		ret = decode_deltas(data, len, start, values, count);
		if (ret)
			return ret;
		s->values = values;
	} else {
		if (len % sizeof(int64_t) || count != len / sizeof(int64_t))
			return -EBADMSG;
		/* zero copy: buffers are 64-byte aligned, so the int64s are too */
		s->values = count ? data : NULL;
	}
	out->kind = SHMRIG_KIND_USER;
	out->user = s; /* user_type: the registry sets the tag of "example.series" */
	return 0;
}

/* ---- the descriptor ---- */

static const struct shmrig_codec codecs[] = {
	{ .size = sizeof(struct shmrig_codec),
	  .name = "example.delta",
	  .kinds = SHMRIG_KIND_BIT(SHMRIG_KIND_USER),
	  .user_type = EXAMPLE_SERIES_TYPE, /* only series are offered to it */
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
	.version_major = SHMRIG_VERSION_MAJOR, /* the shmrig it was built against */
	.version_minor = SHMRIG_VERSION_MINOR,
	.name = "example",
	.version = "1.0.0", /* the plugin's own: bump it with FORMAT */
	.ncodecs = 1,
	.nkinds = 1,
	.codecs = codecs,
	.kinds = kinds,
	/* shmrig-validate --write-golden golden example_delta.so; installed beside the .so */
	.golden_dir = "golden",
};

SHMRIG_PLUGIN_DEFINE(plugin)
