/* SPDX-License-Identifier: MIT */
#ifndef SHMRIG_CODEC_H
#define SHMRIG_CODEC_H

/*
 * codec: what a codec implements, and the services the registry gives it.
 *
 * encode(value) writes the value's bytes into pool blocks it asks the encoder
 * for, and its metadata, one JSON-like object (null, bool, integers, finite
 * doubles, UTF-8 strings, lists, maps with string keys), through the
 * shmrig_meta_put_*() calls. The registry turns that into a frame.
 *
 * decode(frame) reads the metadata (shmrig_decoder_meta() and the
 * shmrig_meta_*() readers), asks for each buffer by index (the registry
 * attaches and validates the block and hands back a view of its content_size
 * bytes), and fills the output value. Views of persistent buffers may be kept
 * in the value (zero copy: the value leases the block); views of temporary
 * buffers are valid only until decode returns, so the codec copies what it
 * needs into memory from shmrig_decoder_alloc().
 *
 * The metadata's wire form is MessagePack (the frame format, frame.h); a codec
 * sees only these functions and opaque nodes, never a MessagePack library's
 * types, so a codec built against this header does not depend on one.
 *
 * Codecs must not keep state between calls except in their ctx, which must
 * then be thread-safe: the registry calls codecs concurrently.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

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
	/* SHMRIG_KIND_USER: the user type this codec takes (a name, as for
	 * shmrig_registry_user_type(), which register resolves it with): encode
	 * offers it user values of that type only, and decode sets the decoded
	 * value's user_type to the type's tag. NULL: user values of any type
	 * (decode sets user_type itself). The growth rule's first added field:
	 * a codec filled before it (a smaller size) reads it as NULL. */
	const char *user_type;
};

/* ---- encoder services ---- */

/* The buffer is temporary: the receiver frees it as soon as it is decoded. */
#define SHMRIG_BUF_TEMPORARY (1u << 0)

/*
 * Add a buffer of `size` bytes and return its index (0, 1, ...) with a
 * pointer to write it through. Within a pack (shmrig_encoder_pack) the buffer
 * is carved from the pack's block; otherwise it is a block of its own. Write
 * `size` bytes at most: the frame says content_size = size, and a registry
 * with SHMRIG_REGISTRY_GUARD (registry.h) fails the encode of a codec that
 * writes past it.
 * Errors: -EINVAL unknown flags; -ENOSPC more than the frame's buffer limit or
 * the pack is full; -ENOMEM and the pool's errors.
 */
SHMRIG_NODISCARD SHMRIG_API int shmrig_encoder_buffer(struct shmrig_encoder *enc, size_t size,
						      uint32_t flags, void **data);

/*
 * Start a pack: one pool block of `capacity` bytes from which the following
 * shmrig_encoder_buffer() calls are carved, 64-byte aligned (each one needs
 * round_up(size, 64) bytes of it: shmrig_pack_size()). This is the seed's
 * slab: many small arrays, one segment. The pack ends with the encode call.
 * Only one pack per encode. The buffers that fit are those that fit the
 * block `capacity` gets (shmrig_pool_block_size()), with or without
 * SHMRIG_REGISTRY_GUARD: a guarded pack reserves its guards' room itself.
 * (Unguarded, a large block's slack is room too: its segment's rounding, or
 * a bigger segment reused. Size a pack by shmrig_pack_size() of its buffers.)
 * Errors: -EBUSY a pack is open; -EINVAL capacity 0; the pool's errors.
 */
SHMRIG_NODISCARD SHMRIG_API int shmrig_encoder_pack(struct shmrig_encoder *enc, size_t capacity);

/* Bytes a buffer of `size` takes in a pack (its guard, if any, not counted). */
SHMRIG_API size_t shmrig_pack_size(size_t size);

/* ---- decoder services ---- */

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

/* ---- writing metadata (encode) ----
 *
 * Each call appends one item to the encode's metadata, which must end up one
 * object (usually a map): shmrig_meta_put_map(enc, n) is followed by n pairs,
 * each a key (put_str/put_strn) and a value; shmrig_meta_put_list(enc, n) by
 * n values. The registry checks the result after encode (a count that does not
 * match the items, a key that is not a string, a second object: the encode
 * fails with -EBADMSG). Integers take the fewest bytes that hold them.
 *
 * Errors, every call: -EINVAL enc (or str, array) NULL, and the call's own
 * -EINVAL below: nothing was written, the encode may go on. -ENOMEM out of
 * memory, -ENOSPC the metadata would pass SHMRIG_FRAME_MAX_META bytes (the
 * frame's limit, frame.h): either leaves the metadata incomplete, so every
 * later call returns the same error and the encode fails with it even if the
 * codec returns 0.
 */

/* A map of `pairs` entries follows. */
SHMRIG_NODISCARD SHMRIG_API int shmrig_meta_put_map(struct shmrig_encoder *enc, uint32_t pairs);
/* A list of `count` values follows. */
SHMRIG_NODISCARD SHMRIG_API int shmrig_meta_put_list(struct shmrig_encoder *enc, uint32_t count);
/* A NUL-terminated string. -EINVAL: not valid UTF-8 (strict: no overlongs, no surrogates). */
SHMRIG_NODISCARD SHMRIG_API int shmrig_meta_put_str(struct shmrig_encoder *enc, const char *str);
/* A string of `len` bytes (NULs allowed). -EINVAL: not valid UTF-8. */
SHMRIG_NODISCARD SHMRIG_API int shmrig_meta_put_strn(struct shmrig_encoder *enc, const char *str,
						     size_t len);
SHMRIG_NODISCARD SHMRIG_API int shmrig_meta_put_uint(struct shmrig_encoder *enc, uint64_t value);
/* A non-negative value is written as shmrig_meta_put_uint() would (a uint when read back). */
SHMRIG_NODISCARD SHMRIG_API int shmrig_meta_put_int(struct shmrig_encoder *enc, int64_t value);
/* Always 8 bytes. -EINVAL: NaN or an infinity (JSON has neither). */
SHMRIG_NODISCARD SHMRIG_API int shmrig_meta_put_double(struct shmrig_encoder *enc, double value);
SHMRIG_NODISCARD SHMRIG_API int shmrig_meta_put_bool(struct shmrig_encoder *enc, bool value);
SHMRIG_NODISCARD SHMRIG_API int shmrig_meta_put_null(struct shmrig_encoder *enc);
/*
 * An array's description, one map: {"dtype": name, "shape": [...], "order":
 * "C"|"F"} (shmrig_meta_read_array() reads it back). -EINVAL: bad dtype, more
 * than SHMRIG_MAX_DIMS dimensions or an order other than 'C' and 'F'.
 */
SHMRIG_NODISCARD SHMRIG_API int shmrig_meta_put_array(struct shmrig_encoder *enc,
						      const struct shmrig_array *array);

/* ---- reading metadata (decode) ----
 *
 * A node of the decoded metadata is an opaque const shmrig_meta *, valid
 * until decode returns (copy strings out with shmrig_decoder_strdup()). A
 * NULL node means "absent": every function takes one, so lookups chain
 * (shmrig_meta_uint(shmrig_meta_get(root, "len"), &len) is -EBADMSG whether
 * "len" is missing or not a uint). The metadata was checked before decode:
 * JSON-compatible, map keys strings, counts within the bytes.
 */
typedef struct shmrig_meta shmrig_meta;

enum shmrig_meta_type {
	SHMRIG_META_NONE = 0, /* a NULL node: absent */
	SHMRIG_META_NULL,
	SHMRIG_META_BOOL,
	SHMRIG_META_UINT,   /* a non-negative integer */
	SHMRIG_META_INT,    /* a negative integer */
	SHMRIG_META_DOUBLE, /* written as a float (4 or 8 bytes) */
	SHMRIG_META_STR,
	SHMRIG_META_LIST,
	SHMRIG_META_MAP
};

/* The root: the one object the encode wrote. */
SHMRIG_API const shmrig_meta *shmrig_decoder_meta(struct shmrig_decoder *dec);

/* The node's type; SHMRIG_META_NONE for NULL. */
SHMRIG_API enum shmrig_meta_type shmrig_meta_type(const shmrig_meta *m);

/* The value of `key` in a map; NULL: not a map, key NULL, or no such key (the first if twice). */
SHMRIG_API const shmrig_meta *shmrig_meta_get(const shmrig_meta *map, const char *key);

/* Entries of a list or a map; 0 for any other node. */
SHMRIG_API uint32_t shmrig_meta_count(const shmrig_meta *m);

/* Value `index` of a list; NULL: not a list or index >= count. */
SHMRIG_API const shmrig_meta *shmrig_meta_at(const shmrig_meta *list, uint32_t index);

/*
 * The value of entry `index` of a map, and its key in *key, *key_len (not
 * NUL-terminated; either may be NULL if not wanted). NULL: not a map or index
 * >= count (*key = NULL, *key_len = 0 then).
 */
SHMRIG_API const shmrig_meta *shmrig_meta_entry(const shmrig_meta *map, uint32_t index,
						const char **key, size_t *key_len);

/*
 * Scalars. Errors, each: -EINVAL out (or str, len) NULL; -EBADMSG the node is
 * absent or of another type (the message says which was expected). A failed
 * read leaves the out-parameters as they were.
 */
SHMRIG_NODISCARD SHMRIG_API int shmrig_meta_uint(const shmrig_meta *m, uint64_t *out);
/* A negative integer, or a uint up to INT64_MAX. -ERANGE: a uint above INT64_MAX. */
SHMRIG_NODISCARD SHMRIG_API int shmrig_meta_int(const shmrig_meta *m, int64_t *out);
/* A double, or an integer converted (to the nearest double). */
SHMRIG_NODISCARD SHMRIG_API int shmrig_meta_double(const shmrig_meta *m, double *out);
SHMRIG_NODISCARD SHMRIG_API int shmrig_meta_bool(const shmrig_meta *m, bool *out);
/* The string's bytes, valid UTF-8, not NUL-terminated (it may hold NULs). */
SHMRIG_NODISCARD SHMRIG_API int shmrig_meta_str(const shmrig_meta *m, const char **str,
						size_t *len);

/* A NUL-terminated copy of a string node, owned by the output value. NULL: not a string, ENOMEM. */
SHMRIG_API char *shmrig_decoder_strdup(struct shmrig_decoder *dec, const shmrig_meta *str);

/*
 * Read an array's description (shmrig_meta_put_array()) into `array` (data
 * left NULL), checking dtype, ndim, order and that the size fits.
 * Errors: -EINVAL array NULL; -EBADMSG (the message says what is wrong).
 */
SHMRIG_NODISCARD SHMRIG_API int shmrig_meta_read_array(const shmrig_meta *m,
						       struct shmrig_array *array);

#ifdef __cplusplus
}
#endif

#endif
