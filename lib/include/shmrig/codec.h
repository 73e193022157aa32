/* SPDX-License-Identifier: MIT */
#ifndef SHMRIG_CODEC_H
#define SHMRIG_CODEC_H

/*
 * codec: what a codec implements, and the services the registry gives it.
 *
 * encode(value) writes the value's bytes into pool blocks it asks the encoder
 * for, and its metadata (MessagePack restricted to the JSON data model: nil,
 * bool, integers, finite floats, strings, arrays, maps with string keys) into
 * the encoder's packer. The registry turns that into a frame.
 *
 * decode(frame) reads the metadata, asks for each buffer by index (the
 * registry attaches and validates the block and hands back a view of its
 * content_size bytes), and fills the output value. Views of persistent
 * buffers may be kept in the value (zero copy: the value leases the block);
 * views of temporary buffers are valid only until decode returns, so the codec
 * copies what it needs into memory from shmrig_decoder_alloc().
 *
 * Codecs must not keep state between calls except in their ctx, which must
 * then be thread-safe: the registry calls codecs concurrently.
 */

#include <msgpack.h>
#include <stdbool.h>

#include <shmrig/common.h>
#include <shmrig/value.h>

#ifdef __cplusplus
extern "C" {
#endif

struct shmrig_encoder; /* per-call state of an encode; opaque */
struct shmrig_decoder; /* per-call state of a decode; opaque */

/* The fallback codec: used when no codec for the value's kind accepts it. */
#define SHMRIG_CODEC_FALLBACK (1u << 0)
#define SHMRIG_CODEC_FLAGS_ALL SHMRIG_CODEC_FALLBACK

/* Input, sized: SHMRIG_SIZED(struct shmrig_codec) (shmrig/common.h). */
struct shmrig_codec {
	uint32_t size;    /* sizeof where it was filled: SHMRIG_SIZED() */
	uint32_t kinds;   /* SHMRIG_KIND_BIT()s of the values it can take */
	const char *name; /* the registry key: [A-Za-z0-9_.-], 1..31 bytes */
	/* 0 or -errno; on failure the registry frees every block it allocated. */
	int (*encode)(void *ctx, struct shmrig_encoder *enc, const struct shmrig_value *value);
	/* 0 or -errno; on failure the registry releases whatever `out` holds. */
	int (*decode)(void *ctx, struct shmrig_decoder *dec, struct shmrig_value *out);
	/* NULL: takes every value of its kinds. Must not fail, only say yes or no. */
	bool (*can_encode)(void *ctx, const struct shmrig_value *value);
	void *ctx;
	uint32_t flags; /* SHMRIG_CODEC_* */
};

/* ---- encoder services ---- */

/* The buffer is temporary: the receiver frees it as soon as it is decoded. */
#define SHMRIG_BUF_TEMPORARY (1u << 0)

/*
 * Add a buffer of `size` bytes and return its index (0, 1, ...) with a
 * pointer to write it through. Within a pack (shmrig_encoder_pack) the buffer
 * is carved from the pack's block; otherwise it is a block of its own.
 * Errors: -EINVAL unknown flags; -ENOSPC more than the frame's buffer limit or
 * the pack is full; -ENOMEM and the pool's errors.
 */
SHMRIG_NODISCARD SHMRIG_API int shmrig_encoder_buffer(struct shmrig_encoder *enc, size_t size,
						      uint32_t flags, void **data);

/*
 * Start a pack: one pool block of `capacity` bytes from which the following
 * shmrig_encoder_buffer() calls are carved, 64-byte aligned (each one needs
 * round_up(size, 64) bytes of it). This is the seed's slab: many small arrays,
 * one segment. The pack ends with the encode call. Only one pack per encode.
 * Errors: -EBUSY a pack is open; -EINVAL capacity 0; the pool's errors.
 */
SHMRIG_NODISCARD SHMRIG_API int shmrig_encoder_pack(struct shmrig_encoder *enc, size_t capacity);

/* Bytes a buffer of `size` takes in a pack. */
SHMRIG_API size_t shmrig_pack_size(size_t size);

/* The packer the metadata goes into (one MessagePack object: usually a map). */
SHMRIG_API msgpack_packer *shmrig_encoder_meta(struct shmrig_encoder *enc);

/* ---- decoder services ---- */

/* The frame's metadata, already checked to be one JSON-compatible object. */
SHMRIG_API const msgpack_object *shmrig_decoder_meta(struct shmrig_decoder *dec);

/* How many buffers the frame carries. */
SHMRIG_API uint32_t shmrig_decoder_nbuffers(struct shmrig_decoder *dec);

/*
 * View buffer `index`: its content_size bytes. Each buffer is asked for once;
 * a persistent one becomes a lease of the output value, a temporary one is
 * freed when decode returns. Every buffer must be asked for. `flags` says how
 * the codec reads it: SHMRIG_BUF_TEMPORARY it copies the bytes out (the frame
 * must mark the buffer temporary), 0 it keeps the view in the value (the
 * frame must mark it persistent); a frame that says otherwise is refused.
 * Errors: -EINVAL unknown flags; -EBADMSG index out of range, asked twice, or
 * the temporary flag differs (the message says which); the pool's attach
 * errors (-SHMRIG_ESTALE, -SHMRIG_EBADREF, ...).
 */
SHMRIG_NODISCARD SHMRIG_API int shmrig_decoder_buffer(struct shmrig_decoder *dec, uint32_t index,
						      uint32_t flags, const void **data,
						      uint64_t *len);

/* Zeroed host memory owned by the output value (freed by shmrig_value_release). NULL: ENOMEM. */
SHMRIG_API void *shmrig_decoder_alloc(struct shmrig_decoder *dec, size_t size);

/* A NUL-terminated copy of a metadata string, owned by the output value. NULL: ENOMEM. */
SHMRIG_API char *shmrig_decoder_strdup(struct shmrig_decoder *dec, const msgpack_object_str *str);

/* ---- metadata helpers for codecs ---- */

/* Pack a NUL-terminated string. 0 or -ENOMEM. */
SHMRIG_NODISCARD SHMRIG_API int shmrig_meta_pack_str(msgpack_packer *pk, const char *str);

/* Look up `key` in a map object; NULL if `map` is not a map or has no such key. */
SHMRIG_API const msgpack_object *shmrig_meta_get(const msgpack_object *map, const char *key);

/* Read a non-negative integer / a string / an array out of an object; -EBADMSG if of another type. */
SHMRIG_NODISCARD SHMRIG_API int shmrig_meta_uint(const msgpack_object *obj, uint64_t *out);
SHMRIG_NODISCARD SHMRIG_API int shmrig_meta_str(const msgpack_object *obj,
						const msgpack_object_str **out);
SHMRIG_NODISCARD SHMRIG_API int shmrig_meta_array(const msgpack_object *obj,
						  const msgpack_object_array **out);

/*
 * Pack an array's description {"dtype": name, "shape": [...], "order": "C"|"F"}
 * and read one back into `array` (data left NULL), checking dtype, ndim, order
 * and that the size fits. Errors: -EBADMSG (the message says what is wrong).
 */
SHMRIG_NODISCARD SHMRIG_API int shmrig_meta_pack_array(msgpack_packer *pk,
						       const struct shmrig_array *array);
SHMRIG_NODISCARD SHMRIG_API int shmrig_meta_read_array(const msgpack_object *obj,
						       struct shmrig_array *array);

#ifdef __cplusplus
}
#endif

#endif
