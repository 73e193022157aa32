/* SPDX-License-Identifier: MIT */
/*
 * tp_bad: test plugins that must be refused at load, one a build (-DTP_CASE_*):
 *   ABI2       abi 2                                  -EPROTO
 *   MAJOR99    built for shmrig 99.x                  -EPROTO
 *   MINOR      built for a newer minor version        -EPROTO
 *   SIZE0      the descriptor's size is 0             -EBADMSG
 *   BADNAME    a codec named "bad name"               -EBADMSG
 *   NOEQUAL    a kind without equal                   -EBADMSG
 *   NULL       the entry returns NULL                 -EBADMSG
 *   TAIL       codecs of a newer size, a tail byte set -EBADMSG
 *   UNDEF      calls a function nobody defines        -ENOEXEC
 * and one that must load:
 *   STRIDE     codecs of a newer size, the tail zero  (a newer plugin's codecs)
 * The codecs never run: they only have to be there.
 */
#include <shmrig/plugin.h>

#include <errno.h>

static int stub_encode(void *ctx, struct shmrig_encoder *enc, const struct shmrig_value *value)
{
	(void)ctx, (void)enc, (void)value;
	return -ENOSYS;
}

#ifdef TP_CASE_UNDEF
int shmrig_no_such_function(struct shmrig_decoder *dec);
#endif

static int stub_decode(void *ctx, struct shmrig_decoder *dec, struct shmrig_value *out)
{
	(void)ctx, (void)out;
#ifdef TP_CASE_UNDEF
	return shmrig_no_such_function(dec);
#else
	(void)dec;
	return -ENOSYS;
#endif
}

static int stub_generate(void *ctx, uint64_t seed, uint32_t index, uint64_t max_bytes,
			 uint32_t user_type_tag, struct shmrig_value *out)
{
	(void)ctx, (void)seed, (void)index, (void)max_bytes, (void)user_type_tag, (void)out;
	return -ENOSYS;
}

static void stub_release(void *ctx, struct shmrig_value *value)
{
	(void)ctx, (void)value;
}

#ifndef TP_CASE_NOEQUAL
static bool stub_equal(void *ctx, const struct shmrig_value *a, const struct shmrig_value *b)
{
	(void)ctx, (void)a, (void)b;
	return false;
}
#endif

#define CODEC_FIELDS                                                         \
	.kinds = SHMRIG_KIND_BIT(SHMRIG_KIND_USER), .user_type = "tp.thing", \
	.encode = stub_encode, .decode = stub_decode

#if defined(TP_CASE_TAIL) || defined(TP_CASE_STRIDE)
/* A codec as a newer plugin has it: 8 bytes more, zero unless it asks for something. */
struct newer_codec {
	struct shmrig_codec codec;
	uint64_t newer_field;
};
static const struct newer_codec codecs[] = {
	{ .codec = { CODEC_FIELDS, .size = sizeof(struct newer_codec), .name = "tp.thing" },
#ifdef TP_CASE_TAIL
	  .newer_field = 1
#endif
	},
	{ .codec = { CODEC_FIELDS, .size = sizeof(struct newer_codec), .name = "tp.thing2" } },
};
#define CODECS (&codecs[0].codec)
#else
static const struct shmrig_codec codecs[] = {
#ifdef TP_CASE_BADNAME
	{ CODEC_FIELDS, .size = sizeof(struct shmrig_codec), .name = "tp.thing" },
	{ CODEC_FIELDS, .size = sizeof(struct shmrig_codec), .name = "bad name" },
#else
	{ CODEC_FIELDS, .size = sizeof(struct shmrig_codec), .name = "tp.thing" },
	{ CODEC_FIELDS, .size = sizeof(struct shmrig_codec), .name = "tp.thing2" },
#endif
};
#define CODECS codecs
#endif

static const struct shmrig_plugin_kind kinds[] = {
	{ .size = sizeof(struct shmrig_plugin_kind),
	  .kind = SHMRIG_KIND_USER,
	  .user_type = "tp.thing",
	  .generate = stub_generate,
	  .release = stub_release,
#ifndef TP_CASE_NOEQUAL
	  .equal = stub_equal
#endif
	},
};

static const struct shmrig_plugin plugin = {
#ifdef TP_CASE_SIZE0
	.size = 0,
#else
	.size = sizeof(struct shmrig_plugin),
#endif
#ifdef TP_CASE_ABI2
	.abi = 2,
#else
	.abi = SHMRIG_PLUGIN_ABI,
#endif
#ifdef TP_CASE_MAJOR99
	.version_major = 99,
#else
	.version_major = SHMRIG_VERSION_MAJOR,
#endif
#ifdef TP_CASE_MINOR
	.version_minor = SHMRIG_VERSION_MINOR + 1,
#else
	.version_minor = SHMRIG_VERSION_MINOR,
#endif
	.name = "tp_bad",
	.version = "0.0.1",
	.ncodecs = 2,
	.nkinds = 1,
	.codecs = CODECS,
	.kinds = kinds,
};

#ifdef TP_CASE_NULL
SHMRIG_PLUGIN_LINKAGE SHMRIG_API_EXPORT const struct shmrig_plugin *shmrig_plugin_v1(void);
SHMRIG_PLUGIN_LINKAGE SHMRIG_API_EXPORT const struct shmrig_plugin *shmrig_plugin_v1(void)
{
	(void)plugin;
	return NULL;
}
#else
SHMRIG_PLUGIN_DEFINE(plugin)
#endif
