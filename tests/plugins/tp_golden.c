/* SPDX-License-Identifier: MIT */
/*
 * tp_golden: a test plugin built twice (tp_golden_v1.so, tp_golden_v2.so) from
 * this file, for the golden-frame tests (tests/test_validate.py golden). A
 * user kind "tp.series" (n int32 values) and a codec "tp.series" for it: meta
 * {"n": n}, one temporary buffer of n little-endian int32 the decoder copies
 * out. Version 1 writes the values as they are; version 2
 * (-DTP_GOLDEN_VERSION=2) writes each value's difference from the one before
 * and reads them so, without saying so in its frames: each build round-trips
 * its own values, and only golden frames written by the other tell.
 * golden_dir: "golden/tp_golden", relative to the .so.
 */
#include <shmrig/plugin.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#ifndef TP_GOLDEN_VERSION
#define TP_GOLDEN_VERSION 1
#endif
#define TP_STR(x) #x
#define TP_VERSION_STRING(v) TP_STR(v) ".0"

struct tp_series {
	uint64_t n;
	int32_t *values; /* n; NULL when n is 0 */
};

#define EDGE_CASES 3 /* empty, one value, the extremes at the largest size */

static uint64_t splitmix64(uint64_t *state)
{
	uint64_t z = (*state += 0x9e3779b97f4a7c15ull);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static int series_generate(void *ctx, uint64_t seed, uint32_t index, uint64_t max_bytes,
			   uint32_t user_type_tag, struct shmrig_value *out)
{
	uint64_t state = seed ^ ((uint64_t)index << 32), n, max_n = max_bytes / 4;
	struct tp_series *s;

	(void)ctx;
	if (index == 0)
		n = 0;
	else if (index == 1)
		n = max_n < 1 ? max_n : 1;
	else if (index == 2)
		n = max_n;
	else
		n = max_n ? 1 + splitmix64(&state) % max_n : 0;
	if (n > SIZE_MAX / 4)
		return -EOVERFLOW;
	s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	if (n) {
		s->values = malloc((size_t)n * 4);
		if (!s->values) {
			free(s);
			return -ENOMEM;
		}
	}
	s->n = n;
	for (uint64_t i = 0; i < n; i++)
		s->values[i] = index == 1 ? 42 :
			       index == 2 ? (i % 2 ? INT32_MAX : INT32_MIN) :
					    (int32_t)(uint32_t)splitmix64(&state);
	memset(out, 0, sizeof(*out));
	out->kind = SHMRIG_KIND_USER;
	out->user_type = user_type_tag;
	out->user = s;
	return 0;
}

static void series_release(void *ctx, struct shmrig_value *value)
{
	struct tp_series *s = value->user;

	(void)ctx;
	if (s)
		free(s->values);
	free(s);
	memset(value, 0, sizeof(*value));
}

static bool series_equal(void *ctx, const struct shmrig_value *a, const struct shmrig_value *b)
{
	const struct tp_series *x = a->user, *y = b->user;

	(void)ctx;
	if (a->kind != SHMRIG_KIND_USER || b->kind != SHMRIG_KIND_USER || !x || !y)
		return false;
	return x->n == y->n && (x->n == 0 || memcmp(x->values, y->values, (size_t)x->n * 4) == 0);
}

static void put_le32(unsigned char *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (unsigned char)(v >> (8 * i));
}

static uint32_t get_le32(const unsigned char *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static int series_encode(void *ctx, struct shmrig_encoder *enc, const struct shmrig_value *value)
{
	const struct tp_series *s = value->user;
	unsigned char *data;
	uint32_t previous = 0;
	int ret;

	(void)ctx;
	if (value->kind != SHMRIG_KIND_USER || !s || (s->n && !s->values))
		return -EINVAL;
	if (s->n > SIZE_MAX / 4)
		return -EOVERFLOW;
	ret = shmrig_encoder_buffer(enc, (size_t)s->n * 4, SHMRIG_BUF_TEMPORARY, (void **)&data);
	if (ret < 0)
		return ret;
	for (uint64_t i = 0; i < s->n; i++) {
		uint32_t v = (uint32_t)s->values[i];

		/* version 2: differences, in unsigned arithmetic (wraps, no overflow) */
		put_le32(data + 4 * i, TP_GOLDEN_VERSION == 2 ? v - previous : v);
		previous = v;
	}
	if ((ret = shmrig_meta_put_map(enc, 1)) || (ret = shmrig_meta_put_str(enc, "n")))
		return ret;
	return shmrig_meta_put_uint(enc, s->n);
}

static int series_decode(void *ctx, struct shmrig_decoder *dec, struct shmrig_value *out)
{
	struct tp_series *s;
	const unsigned char *data;
	uint32_t previous = 0;
	uint64_t n, len;
	int ret;

	(void)ctx;
	if (shmrig_meta_uint(shmrig_meta_get(shmrig_decoder_meta(dec), "n"), &n))
		return -EBADMSG;
	if (shmrig_decoder_nbuffers(dec) != 1)
		return -EBADMSG;
	ret = shmrig_decoder_buffer(dec, 0, SHMRIG_BUF_TEMPORARY, (const void **)&data, &len);
	if (ret)
		return ret;
	if (n > SIZE_MAX / 4 || len != n * 4)
		return -EBADMSG;
	/* the buffer is freed when decode returns: the values go after the series */
	s = shmrig_decoder_alloc(dec, sizeof(*s) + (size_t)len);
	if (!s)
		return -ENOMEM;
	s->n = n;
	s->values = n ? (int32_t *)(s + 1) : NULL;
	for (uint64_t i = 0; i < n; i++) {
		uint32_t v = get_le32(data + 4 * i);

		if (TP_GOLDEN_VERSION == 2)
			v += previous;
		s->values[i] = (int32_t)v;
		previous = v;
	}
	out->kind = SHMRIG_KIND_USER;
	out->user = s; /* user_type: the registry sets the tag of "tp.series" */
	return 0;
}

static const struct shmrig_codec codecs[] = {
	{ .size = sizeof(struct shmrig_codec),
	  .name = "tp.series",
	  .kinds = SHMRIG_KIND_BIT(SHMRIG_KIND_USER),
	  .user_type = "tp.series",
	  .encode = series_encode,
	  .decode = series_decode },
};

static const struct shmrig_plugin_kind kinds[] = {
	{ .size = sizeof(struct shmrig_plugin_kind),
	  .kind = SHMRIG_KIND_USER,
	  .user_type = "tp.series",
	  .generate = series_generate,
	  .edge_cases = EDGE_CASES,
	  .release = series_release,
	  .equal = series_equal },
};

static const struct shmrig_plugin plugin = {
	.size = sizeof(struct shmrig_plugin),
	.abi = SHMRIG_PLUGIN_ABI,
	.version_major = SHMRIG_VERSION_MAJOR,
	.version_minor = SHMRIG_VERSION_MINOR,
	.name = "tp_golden",
	.version = TP_VERSION_STRING(TP_GOLDEN_VERSION),
	.ncodecs = 1,
	.nkinds = 1,
	.codecs = codecs,
	.kinds = kinds,
	.golden_dir = "golden/tp_golden",
};

SHMRIG_PLUGIN_DEFINE(plugin)
