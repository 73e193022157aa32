/* SPDX-License-Identifier: MIT */
/*
 * tp_good: a test plugin that is right. A user kind "tp.blob" (a length and
 * that many bytes) with its generator and equality, and a codec for it that
 * uses only shmrig_encoder_buffer, shmrig_decoder_nbuffers,
 * shmrig_decoder_buffer and shmrig_decoder_alloc: one temporary buffer holds
 * the bytes, the decoder copies them out. Its metadata is an empty map (a
 * frame's metadata is one object: the registry refuses none at all).
 */
#include <shmrig/plugin.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>

struct tp_blob {
	uint64_t len;
	const unsigned char *data; /* len bytes; NULL when len is 0 */
	void *alloc;               /* what generate allocated for data; NULL when decoded */
};

#define EDGE_CASES 3 /* empty, odd alignment, the largest */

static uint64_t splitmix64(uint64_t *state)
{
	uint64_t z = (*state += 0x9e3779b97f4a7c15ull);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

/* A size from 1 to max, log-uniform: a power of two at random, then a size in its octave. */
static uint64_t log_uniform(uint64_t *state, uint64_t max)
{
	unsigned top = max ? 63 - (unsigned)__builtin_clzll(max) : 0;
	unsigned e = (unsigned)(splitmix64(state) % (top + 1));
	uint64_t len = (1ull << e) + splitmix64(state) % (1ull << e);

	return len < max ? len : max;
}

static int blob_generate(void *ctx, uint64_t seed, uint32_t index, uint64_t max_bytes,
			 uint32_t user_type_tag, struct shmrig_value *out)
{
	uint64_t state = seed ^ ((uint64_t)index << 32), len, offset = 0;
	struct tp_blob *blob;
	unsigned char *bytes = NULL;

	(void)ctx;
	if (index == 0) {
		len = 0;
	} else if (index == 1) {
		len = max_bytes < 7 ? max_bytes : 7;
		offset = 1; /* the bytes start at an odd address */
	} else if (index == 2) {
		len = max_bytes;
	} else {
		len = log_uniform(&state, max_bytes);
	}
	if (len > SIZE_MAX - 8)
		return -EOVERFLOW;
	blob = calloc(1, sizeof(*blob));
	if (!blob)
		return -ENOMEM;
	if (len || offset) {
		bytes = malloc((size_t)(len + offset));
		if (!bytes) {
			free(blob);
			return -ENOMEM;
		}
		for (uint64_t i = 0; i < len; i += 8) {
			uint64_t bits = splitmix64(&state);

			memcpy(bytes + offset + i, &bits, len - i < 8 ? (size_t)(len - i) : 8);
		}
	}
	blob->len = len;
	blob->alloc = bytes;
	blob->data = len ? bytes + offset : NULL;
	memset(out, 0, sizeof(*out));
	out->kind = SHMRIG_KIND_USER;
	out->user_type = user_type_tag;
	out->user = blob;
	return 0;
}

static void blob_release(void *ctx, struct shmrig_value *value)
{
	struct tp_blob *blob = value->user;

	(void)ctx;
	if (blob)
		free(blob->alloc);
	free(blob);
	memset(value, 0, sizeof(*value));
}

static bool blob_equal(void *ctx, const struct shmrig_value *a, const struct shmrig_value *b)
{
	const struct tp_blob *x = a->user, *y = b->user;

	(void)ctx;
	if (a->kind != SHMRIG_KIND_USER || b->kind != SHMRIG_KIND_USER || !x || !y)
		return false;
	return x->len == y->len && (x->len == 0 || memcmp(x->data, y->data, x->len) == 0);
}

static int blob_encode(void *ctx, struct shmrig_encoder *enc, const struct shmrig_value *value)
{
	const struct tp_blob *blob = value->user;
	void *data;
	int ret;

	(void)ctx;
	if (value->kind != SHMRIG_KIND_USER || !blob || (blob->len && !blob->data))
		return -EINVAL;
	if (blob->len > SIZE_MAX)
		return -EOVERFLOW;
	ret = shmrig_encoder_buffer(enc, (size_t)blob->len, SHMRIG_BUF_TEMPORARY, &data);
	if (ret < 0)
		return ret;
	if (blob->len)
		memcpy(data, blob->data, (size_t)blob->len);
	return shmrig_meta_put_map(enc, 0);
}

static int blob_decode(void *ctx, struct shmrig_decoder *dec, struct shmrig_value *out)
{
	struct tp_blob *blob;
	const void *data;
	uint64_t len;
	int ret;

	(void)ctx;
	if (shmrig_decoder_nbuffers(dec) != 1)
		return -EBADMSG;
	ret = shmrig_decoder_buffer(dec, 0, SHMRIG_BUF_TEMPORARY, &data, &len);
	if (ret)
		return ret;
	if (len > SIZE_MAX - sizeof(*blob))
		return -EOVERFLOW;
	/* the buffer is freed when decode returns: the bytes go after the blob */
	blob = shmrig_decoder_alloc(dec, sizeof(*blob) + (size_t)len);
	if (!blob)
		return -ENOMEM;
	blob->len = len;
	blob->data = len ? (const unsigned char *)(blob + 1) : NULL;
	if (len)
		memcpy(blob + 1, data, (size_t)len);
	out->kind = SHMRIG_KIND_USER;
	out->user = blob; /* user_type: the registry sets the tag of "tp.blob" */
	return 0;
}

static const struct shmrig_codec codecs[] = {
	{ .size = sizeof(struct shmrig_codec),
	  .name = "tp.blob",
	  .kinds = SHMRIG_KIND_BIT(SHMRIG_KIND_USER),
	  .user_type = "tp.blob",
	  .encode = blob_encode,
	  .decode = blob_decode },
};

static const struct shmrig_plugin_kind kinds[] = {
	{ .size = sizeof(struct shmrig_plugin_kind),
	  .kind = SHMRIG_KIND_USER,
	  .user_type = "tp.blob",
	  .generate = blob_generate,
	  .edge_cases = EDGE_CASES,
	  .release = blob_release,
	  .equal = blob_equal },
};

static const struct shmrig_plugin plugin = {
	.size = sizeof(struct shmrig_plugin),
	.abi = SHMRIG_PLUGIN_ABI,
	.version_major = SHMRIG_VERSION_MAJOR,
	.version_minor = SHMRIG_VERSION_MINOR,
	.name = "tp_good",
	.version = "1.2.3",
	.ncodecs = 1,
	.nkinds = 1,
	.codecs = codecs,
	.kinds = kinds,
	.golden_dir = "golden/tp_good",
};

SHMRIG_PLUGIN_DEFINE(plugin)
