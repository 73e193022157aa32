/* SPDX-License-Identifier: MIT */
/*
 * tp_overrun: a test plugin whose codec writes past content_size, and is
 * otherwise right. Its codec "tp.overrun" takes bytes (the kit feeds it its
 * own bytes values: the plugin brings no kind), copies them into a temporary
 * buffer and ends them with a NUL, as for a C string, one byte past the
 * buffer it asked for. The pack it carves the buffer from has room for that
 * byte, so the bug hurts no other buffer and every round trip still works:
 * only the registry's guard (SHMRIG_REGISTRY_GUARD, the kit's
 * Required.Buffers.NoWritePastContent) sees it.
 */
#include <shmrig/plugin.h>

#include <errno.h>
#include <string.h>

static int overrun_encode(void *ctx, struct shmrig_encoder *enc, const struct shmrig_value *value)
{
	size_t len;
	char *data;
	void *buffer;
	int ret;

	(void)ctx;
	if (value->kind != SHMRIG_KIND_BYTES || (value->bytes.len && !value->bytes.data))
		return -EINVAL;
	if (value->bytes.len > SIZE_MAX - 128)
		return -EOVERFLOW;
	len = (size_t)value->bytes.len;
	ret = shmrig_encoder_pack(enc, shmrig_pack_size(len) + 64);
	if (ret)
		return ret;
	ret = shmrig_encoder_buffer(enc, len, SHMRIG_BUF_TEMPORARY, &buffer);
	if (ret < 0)
		return ret;
	data = buffer;
	if (len)
		memcpy(data, value->bytes.data, len);
	data[len] = '\0'; /* the bug: the terminator is not in the len bytes asked for */
	return shmrig_meta_put_map(enc, 0);
}

static int overrun_decode(void *ctx, struct shmrig_decoder *dec, struct shmrig_value *out)
{
	const void *data;
	uint64_t len;
	void *copy;
	int ret;

	(void)ctx;
	out->kind = SHMRIG_KIND_BYTES;
	if (shmrig_decoder_nbuffers(dec) != 1)
		return -EBADMSG;
	ret = shmrig_decoder_buffer(dec, 0, SHMRIG_BUF_TEMPORARY, &data, &len);
	if (ret)
		return ret;
	if (len > SIZE_MAX - 1)
		return -EOVERFLOW;
	/* the buffer is freed when decode returns: copy out */
	copy = shmrig_decoder_alloc(dec, (size_t)len + 1);
	if (!copy)
		return -ENOMEM;
	memcpy(copy, data, (size_t)len);
	out->bytes.data = copy;
	out->bytes.len = len;
	return 0;
}

static const struct shmrig_codec codecs[] = {
	{ .size = sizeof(struct shmrig_codec),
	  .name = "tp.overrun",
	  .kinds = SHMRIG_KIND_BIT(SHMRIG_KIND_BYTES),
	  .encode = overrun_encode,
	  .decode = overrun_decode },
};

static const struct shmrig_plugin plugin = {
	.size = sizeof(struct shmrig_plugin),
	.abi = SHMRIG_PLUGIN_ABI,
	.version_major = SHMRIG_VERSION_MAJOR,
	.version_minor = SHMRIG_VERSION_MINOR,
	.name = "tp_overrun",
	.version = "1.0.0",
	.ncodecs = 1,
	.codecs = codecs,
};

SHMRIG_PLUGIN_DEFINE(plugin)
