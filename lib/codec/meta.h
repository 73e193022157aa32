/* SPDX-License-Identifier: MIT */
#ifndef SHMRIG_META_H
#define SHMRIG_META_H

/* Frame metadata internals (see meta.c). */

#include <jansson.h>
#include <msgpack.h>
#include <stddef.h>

/* 0 if buf holds exactly one JSON-compatible MessagePack object, else -EBADMSG. */
int shmrig__meta_check(const void *buf, size_t len);

/* meta_check, then unpack into `out` (msgpack_unpacked_destroy() it). 0 or -EBADMSG. */
int shmrig__meta_unpack(const void *buf, size_t len, msgpack_unpacked *out);

/* A new JSON value for a checked object; NULL on ENOMEM. */
json_t *shmrig__meta_to_json(const msgpack_object *obj);

#endif
