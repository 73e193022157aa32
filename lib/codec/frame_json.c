/* SPDX-License-Identifier: MIT */
/* A frame as JSON, with the codec's name from a registry: above both. */
#include "base/internal.h"
#include "codec/meta.h"

#include <shmrig/frame.h>
#include <shmrig/registry.h>

#include <errno.h>
#include <jansson.h>

static json_t *ref_to_json(const struct shmrig_ref *ref)
{
	return json_pack("{s:s, s:I, s:I, s:I, s:I, s:b}", "name", ref->name, "offset",
			 (json_int_t)ref->offset, "size", (json_int_t)ref->size, "content_size",
			 (json_int_t)ref->content_size, "generation", (json_int_t)ref->generation,
			 "temporary", ref->temporary);
}

int shmrig_frame_to_json(const void *buf, size_t len, const struct shmrig_registry *reg,
			 char **json)
{
	const char *codec_name;
	json_t *root = NULL, *buffers, *meta;
	msgpack_object unpacked;
	msgpack_zone zone;
	struct shmrig_frame f;
	int ret;

	if (!json)
		return shmrig__fail(-EINVAL, "frame_to_json: NULL json");
	ret = shmrig_frame_parse(buf, len, &f);
	if (ret)
		return ret;
	if (!msgpack_zone_init(&zone, MSGPACK_ZONE_CHUNK_SIZE))
		return shmrig__fail(-ENOMEM, "frame_to_json: out of memory");
	ret = shmrig__meta_unpack(f.meta, f.meta_len, &zone, &unpacked);
	if (ret) {
		msgpack_zone_destroy(&zone);
		return ret;
	}
	codec_name = reg ? shmrig_registry_codec_name(reg, f.codec_id) : NULL;
	meta = shmrig__meta_to_json(&unpacked);
	msgpack_zone_destroy(&zone);
	buffers = json_array();
	root = json_object();
	ret = -ENOMEM;
	if (!meta || !buffers || !root)
		goto out;
	for (uint32_t i = 0; i < f.nbuffers; i++)
		if (json_array_append_new(buffers, ref_to_json(&f.buffers[i])))
			goto out;
	if (json_object_set_new(root, "codec", json_integer(f.codec_id)) ||
	    (codec_name && json_object_set_new(root, "codec_name", json_string(codec_name))) ||
	    json_object_set(root, "buffers", buffers) || json_object_set(root, "meta", meta))
		goto out;
	*json = json_dumps(root, JSON_COMPACT | JSON_ENSURE_ASCII);
	ret = *json ? 0 : -ENOMEM;
out:
	json_decref(meta);
	json_decref(buffers);
	json_decref(root);
	return ret ? shmrig__fail(ret, "frame_to_json: out of memory") : 0;
}
