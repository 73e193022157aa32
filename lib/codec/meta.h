/* SPDX-License-Identifier: MIT */
#ifndef SHMRIG_META_H
#define SHMRIG_META_H

/*
 * Frame metadata internals (see meta.c). msgpack-c stays behind this header:
 * codecs see only <shmrig/codec.h>'s writer and reader functions, so neither
 * the public headers nor a codec plugin depend on msgpack-c's structs.
 */

#include <shmrig/codec.h>
#include <shmrig/frame.h>

#include <jansson.h>
#include <msgpack.h>
#include <stdbool.h>
#include <stdint.h>
#include <stddef.h>
#include <stdlib.h>

struct shmrig_encoder;

/*
 * The metadata an encode writes (the shmrig_meta_put_*() calls, meta.c):
 * bytes that start in place (most metadata is small, and a malloc per encode
 * would cost more than the rest of a small encode), and the error that left
 * them incomplete. struct shmrig_encoder begins with one (registry.c asserts
 * it): the put functions reach it by a cast.
 */
/* Containers nest at most this deep (shmrig__meta_check's limit; msgpack-c's). */
#define SHMRIG__META_MAX_DEPTH 32

/* A container the writer has open. */
struct shmrig__meta_open {
	uint32_t left; /* entries still to come (pairs of a map) */
	bool map;
	bool key_next; /* a map's next item is a key */
};

struct shmrig__meta_writer {
	char *data;
	size_t size;
	size_t cap; /* never above SHMRIG_FRAME_MAX_META */
	int error;  /* 0, or -ENOMEM / -ENOSPC: sticky, the metadata is incomplete */
	const char *codec_name;
	/*
	 * The shape of what was stored, followed as it is written: every put
	 * stores a JSON-compatible item (strings UTF-8, doubles finite), so
	 * bytes whose shape is one complete object within the limits pass
	 * shmrig__meta_check() by construction, and encode skips that walk
	 * (shmrig__meta_writer_whole). Anything else is left to the check.
	 */
	uint32_t depth;   /* containers open */
	uint32_t objects; /* top-level objects completed */
	uint64_t items;   /* stored so far, keys included */
	bool malformed;   /* a key that is not a string, an object after the first, too deep */
	struct shmrig__meta_open open[SHMRIG__META_MAX_DEPTH];
	char inline_data[256];
};

/* Not zeroed whole: the inline bytes need no clearing. */
static inline void shmrig__meta_writer_init(struct shmrig__meta_writer *w, const char *codec_name)
{
	w->data = w->inline_data;
	w->size = 0;
	w->cap = sizeof(w->inline_data);
	w->error = 0;
	w->codec_name = codec_name;
	w->depth = 0;
	w->objects = 0;
	w->items = 0;
	w->malformed = false;
}

/* True when what was stored is one complete object within the limits (so
 * shmrig__meta_check would pass it); false: run the check for its words. */
static inline bool shmrig__meta_writer_whole(const struct shmrig__meta_writer *w)
{
	return !w->malformed && w->depth == 0 && w->objects == 1 &&
	       w->items <= SHMRIG_FRAME_MAX_META_ITEMS;
}

static inline void shmrig__meta_writer_fini(struct shmrig__meta_writer *w)
{
	if (w->data != w->inline_data)
		free(w->data);
}

/* A node of the decoded metadata is the msgpack_object it points at; codecs see the type opaque. */
static inline const shmrig_meta *shmrig__meta_node(const msgpack_object *obj)
{
	return (const shmrig_meta *)(const void *)obj;
}

static inline const msgpack_object *shmrig__meta_object(const shmrig_meta *m)
{
	return (const msgpack_object *)(const void *)m;
}

/* 0 if buf holds exactly one JSON-compatible MessagePack object, else -EBADMSG. */
int shmrig__meta_check(const void *buf, size_t len);

/* meta_check, then unpack into `out`, its parts allocated in `zone` (they
 * live until the zone is cleared or destroyed). 0 or -EBADMSG. */
int shmrig__meta_unpack(const void *buf, size_t len, msgpack_zone *zone, msgpack_object *out);

/* A new JSON value for a checked object; NULL on ENOMEM. */
json_t *shmrig__meta_to_json(const msgpack_object *obj);

#endif
