/* SPDX-License-Identifier: MIT */
#ifndef SHMRIG_REGISTRY_H
#define SHMRIG_REGISTRY_H

/*
 * registry: the ordered codecs that turn values into frames and back.
 *
 * The seed's CodecRegistry, tuned: each codec gets a small integer id at
 * registration, and the frame carries the id, so decode dispatches by index
 * (no string compare per message). Codecs declare the kinds they take, and
 * encode asks only those, in registration order: the first whose can_encode
 * accepts the value encodes it; if none does, the fallback codec does; with
 * no fallback, that is an error.
 *
 * Register everything first: the first encode or decode freezes the registry
 * (a later register is -EBUSY). Frozen, it is safe for concurrent encode and
 * decode from any number of threads.
 */

#include <shmrig/codec.h>
#include <shmrig/common.h>
#include <shmrig/frame.h>
#include <shmrig/pool.h>
#include <shmrig/value.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct shmrig_registry shmrig_registry;

/* At most this many codecs (ids 0..SHMRIG_MAX_CODECS-1). */
#define SHMRIG_MAX_CODECS 1024

/* An empty registry. -EINVAL, -ENOMEM. */
SHMRIG_NODISCARD SHMRIG_API int shmrig_registry_create(shmrig_registry **out);
SHMRIG_API void shmrig_registry_free(shmrig_registry *reg);

/*
 * Guard every buffer of every encode: catch a codec that writes past the
 * content_size it asked for (the conformance kit's
 * Required.Buffers.NoWritePastContent). The bytes past content_size are still
 * inside the pool's block, so neither the pool nor a sanitizer sees such a
 * write; with this flag shmrig_encoder_buffer() puts
 * SHMRIG_REGISTRY_GUARD_BYTES of its own right after each buffer's
 * content_size, filled with a pattern that depends on the buffer's index, and
 * the encode checks them all when the codec returns, before the frame is
 * built: a guard that changed fails the encode with -EFAULT, "codec 'X' wrote
 * past content_size of buffer I (N bytes, first at offset +K)" (N bytes of
 * the guard differ, the first K bytes past content_size), and frees its
 * blocks as any failed encode does. Frames keep content_size = the size asked
 * for; the guard is in [content_size, size) of the ref.
 *
 * What it costs: a buffer of its own is a block of size + 64 bytes; a pack
 * (shmrig_encoder_pack) gives the codec the room of the block its capacity
 * gets (shmrig_pool_block_size(): the same buffers fit as without the flag,
 * the same one is -ENOSPC) and reserves the guards' room on top, 64 bytes for
 * each buffer that room can hold: up to as much again (at most 4 MiB, 64 for
 * each of SHMRIG_FRAME_MAX_BUFFERS); the fill and the check touch 64 bytes a
 * buffer. The pool's record of a buffer of its own (shmrig_pool_for_each_live)
 * counts the guard in content_size; the frame's ref does not. A debugging and
 * validation mode: without the flag an encode pays a predictable branch for
 * it after the codec and one in each shmrig_encoder_buffer() call.
 */
#define SHMRIG_REGISTRY_GUARD (1u << 0)
#define SHMRIG_REGISTRY_FLAGS_ALL SHMRIG_REGISTRY_GUARD
/* Guard bytes after each buffer's content (SHMRIG_REGISTRY_GUARD). */
#define SHMRIG_REGISTRY_GUARD_BYTES 64u

/*
 * Set the registry's flags (SHMRIG_REGISTRY_*), replacing those it had (0
 * clears them). Only before the registry freezes (its first encode or decode),
 * like register: every encode of a frozen registry sees the same flags.
 * Errors: -EINVAL reg NULL or an unknown flag; -EBUSY the registry is frozen.
 */
SHMRIG_NODISCARD SHMRIG_API int shmrig_registry_set_flags(shmrig_registry *reg, uint32_t flags);

/*
 * Append a codec (the struct is copied; name and ctx must outlive the
 * registry). Returns its id (>= 0). A codec->user_type is resolved with
 * shmrig_registry_user_type() (the type is added if new).
 * Errors: -EINVAL bad name, no kinds, no encode/decode, unknown flags,
 * codec->size below 8, a user_type that is no valid name or whose codec has
 * no SHMRIG_KIND_USER in kinds; -E2BIG codec->size above SHMRIG_SIZED_MAX,
 * or a non-zero byte past this library's struct (shmrig/common.h); -EEXIST a
 * codec of that name, or a second fallback; -EBUSY the registry is frozen;
 * -ENOSPC SHMRIG_MAX_CODECS reached, or the limit of user types.
 */
SHMRIG_NODISCARD SHMRIG_API int shmrig_registry_register(shmrig_registry *reg,
							 const struct shmrig_codec *codec);

/*
 * Register the built-in codecs, in this order: "ndarray", "table", "dataset",
 * and "bytes" (the fallback). Errors as shmrig_registry_register.
 */
SHMRIG_NODISCARD SHMRIG_API int shmrig_registry_add_builtins(shmrig_registry *reg);

/*
 * A tag (>= 1) for a user kind (SHMRIG_KIND_USER values carry it); the same
 * name gives the same tag. Errors: -EINVAL NULL or a bad name; -EBUSY a new
 * name once the registry is frozen (in use); -ENOSPC too many types; -ENOMEM.
 */
SHMRIG_NODISCARD SHMRIG_API int shmrig_registry_user_type(shmrig_registry *reg, const char *name);

/* Id of the codec named `name`; -ENOENT (the message lists the codecs there are). */
SHMRIG_NODISCARD SHMRIG_API int shmrig_registry_lookup(const shmrig_registry *reg,
						       const char *name);
/* Name of codec `id`; NULL if there is none. */
SHMRIG_API const char *shmrig_registry_codec_name(const shmrig_registry *reg, int id);
SHMRIG_API int shmrig_registry_count(const shmrig_registry *reg);

/* XXH3-64 of the codec names in order: two processes with the same registry agree. */
SHMRIG_API uint64_t shmrig_registry_fingerprint(const shmrig_registry *reg);

/*
 * Encode `value` into pool blocks and build its frame in `*frame` (malloc'd,
 * 8-byte aligned, `*len` bytes; the caller frees it with free()). The blocks
 * are owned by the caller until the frame is decoded, transferred
 * (shmrig_frame_transfer) or discarded (shmrig_frame_discard).
 * Errors: -EINVAL bad value; -ENOTSUP no codec takes it; the codec's errors
 * (-EPROTO: it returned a positive number); -ENOMEM; -EFAULT the codec wrote past content_size of a buffer (only with
 * SHMRIG_REGISTRY_GUARD, which says the words). On error nothing is allocated.
 */
SHMRIG_NODISCARD SHMRIG_API int shmrig_registry_encode(shmrig_registry *reg, shmrig_pool *pool,
						       const struct shmrig_value *value,
						       void **frame, size_t *len);

/*
 * Decode a frame into `out`. The frame's blocks must have been handed to the
 * caller (shmrig_frame_transfer, or encoded by it): decode claims each ref
 * once, first; persistent ones become leases of `out`, temporary ones are
 * freed before this returns. A ref that cannot be claimed (decoded already,
 * a block held for another value, not ours) fails the decode. On any error
 * after the frame's header and refs parsed, every ref that was claimed is
 * freed (nothing leaks) and nothing else is touched; a frame that does not
 * parse touches nothing.
 * Errors: the errors of shmrig_frame_parse; -SHMRIG_ECLAIMED a ref claimed
 * already; -EPERM a ref to a block that is not ours; -ENOENT unknown codec id (the
 * message lists the codecs); -EBADMSG metadata not MessagePack or not
 * JSON-compatible, a buffer asked twice or never, out of range; -EPERM a
 * block is not the caller's (not transferred to it); the pool's attach
 * errors; the codec's errors (-EPROTO: it returned a positive number).
 */
SHMRIG_NODISCARD SHMRIG_API int shmrig_registry_decode(shmrig_registry *reg, shmrig_pool *pool,
						       const void *frame, size_t len,
						       struct shmrig_value *out);

/*
 * Render a frame as JSON for people and tools: {"codec": id, "codec_name": ...,
 * "buffers": [{"name", "offset", "size", "content_size", "generation",
 * "temporary"}...], "meta": ...}. `reg` may be NULL (no codec_name). The
 * string is malloc'd; free() it.
 * Errors: the errors of shmrig_frame_parse; -EBADMSG meta not MessagePack or
 * not JSON-compatible; -ENOMEM.
 */
SHMRIG_NODISCARD SHMRIG_API int shmrig_frame_to_json(const void *buf, size_t len,
						     const struct shmrig_registry *reg,
						     char **json);

#ifdef __cplusplus
}
#endif

#endif
