/* SPDX-License-Identifier: MIT */
#ifndef SHMRIG_FRAME_H
#define SHMRIG_FRAME_H

/*
 * frame: the wire form of the seed's PayloadRef, what crosses a channel.
 *
 *   [header: 24 bytes][struct shmrig_ref x nbuffers][meta: meta_len bytes]
 *
 * The header holds a magic, the version, the codec id, the buffer count and
 * the meta length; the meta is MessagePack restricted to the JSON data model.
 * Both ends are on one host: integers are in host byte order. A frame buffer
 * must be 8-byte aligned (the refs hold 64-bit fields).
 */

#include <shmrig/common.h>
#include <shmrig/pool.h>

#ifdef __cplusplus
extern "C" {
#endif

#define SHMRIG_FRAME_MAGIC 0x4d524853u /* "SHRM" */
#define SHMRIG_FRAME_VERSION 1u
#define SHMRIG_FRAME_MAX_BUFFERS 65536u
#define SHMRIG_FRAME_MAX_META (256u << 20)
/*
 * Items (values, keys, containers) a frame's metadata may hold. Unpacked, an
 * item costs msgpack-c about 24 bytes (a map entry 48), its JSON rendering a
 * few times that: this cap, checked before anything is unpacked, bounds what a
 * peer's metadata can make a decode allocate (about 12 MiB) whatever its size.
 */
#define SHMRIG_FRAME_MAX_META_ITEMS (1u << 18)

struct shmrig_frame_header {
	uint32_t magic;
	uint16_t version;
	uint16_t codec_id;
	uint32_t nbuffers;
	uint32_t meta_len;
	uint64_t reserved; /* zero */
};

/* A parsed frame: pointers into the frame buffer. */
struct shmrig_frame {
	uint16_t codec_id;
	uint32_t nbuffers;
	const struct shmrig_ref *buffers;
	const void *meta;
	uint32_t meta_len;
};

/* Bytes of a frame with these counts; 0 if over the limits. */
SHMRIG_API size_t shmrig_frame_size(uint32_t nbuffers, size_t meta_len);

/*
 * Check a frame's structure and return views into it: length, magic,
 * version, reserved fields, counts against the limits and against `len`, and
 * each ref's fields (name terminated, reserved zero, content_size <= size,
 * offset 64-aligned, temporary 0 or 1). It does not look at the meta bytes
 * or at the pool. Errors: -EINVAL NULL or misaligned buffer; -EBADMSG the
 * frame's own structure; -SHMRIG_EBADREF a ref's fields (the same check and
 * code as the pool's); the message says which field and why.
 */
SHMRIG_NODISCARD SHMRIG_API int shmrig_frame_parse(const void *buf, size_t len,
						   struct shmrig_frame *out);

/*
 * Hand every block of a frame to process `pid` before sending it there
 * (shmrig_pool_transfer per buffer). Errors: as shmrig_frame_parse and
 * shmrig_pool_transfer; on error the blocks already handed over stay handed.
 */
SHMRIG_NODISCARD SHMRIG_API int shmrig_frame_transfer(shmrig_pool *pool, const void *buf,
						      size_t len, pid_t pid);

/* shmrig_frame_transfer to a peer identity (shmrig_pool_peer): no syscall. */
SHMRIG_NODISCARD SHMRIG_API int shmrig_frame_transfer_peer(shmrig_pool *pool, const void *buf,
							   size_t len, uint64_t peer);

/* Free every block of a frame that will not be sent. Returns the first error; frees all it can. */
SHMRIG_NODISCARD SHMRIG_API int shmrig_frame_discard(shmrig_pool *pool, const void *buf,
						     size_t len);

/*
 * Flat frames: a frame with its payload, for a peer that cannot map our pool
 * (another host). The flat form is self-contained:
 *
 *   [the frame, its refs naming no block][0-7 zero bytes]
 *   [buffer 0's content_size bytes][0-7 zero bytes] ... [buffer n-1's ...]
 *
 * Each part starts 8-aligned and is padded with zeros to 8; a ref keeps only
 * its size, content_size and temporary flag (name, offset, generation zero).
 * Integers are in host byte order, as in frames: both hosts must agree on it.
 * A "ucx" channel may send a large frame's payload without making this form
 * (channel.h, send_frame: bare); its receiver applies the same checks as
 * shmrig_frame_unflatten, with the same errors.
 */

/*
 * Copy a frame and every buffer's content (content_size bytes of each ref)
 * into one new 8-aligned allocation (*flat, *flat_len bytes; free() it). The
 * frame's blocks must be ours, handed to us and not yet claimed (as after
 * shmrig_registry_encode). On success they are released: the bytes carry the
 * payload now, and `frame` is only bytes (do not decode or discard it). On
 * error nothing is released: the frame is as it was.
 * Errors: -EINVAL NULL argument; those of shmrig_frame_parse; -SHMRIG_ECLAIMED,
 * -EPERM and the attach errors (shmrig_pool_claim): a block is not ours to
 * take (a frame decoded, discarded or sent already); -EOVERFLOW the flat form
 * would not fit a size_t; -ENOMEM.
 */
SHMRIG_NODISCARD SHMRIG_API int shmrig_frame_flatten(shmrig_pool *pool, const void *frame,
						     size_t len, void **flat, size_t *flat_len);

/*
 * The reverse, into our pool: check a flat frame (from another host, so
 * hostile: every count and size is checked against flat_len before anything
 * is allocated, and the blocks allocated hold at most what flat_len carries),
 * allocate one block per buffer, handed to us and unclaimed, copy each
 * buffer's bytes in, and return an ordinary frame (*frame, *len bytes,
 * 8-aligned; free() it) whose refs name those blocks, with the content sizes
 * and temporary flags sent: shmrig_registry_decode() takes it as any frame
 * (or shmrig_frame_discard() frees its blocks). On error every block it
 * allocated is freed and *frame is untouched.
 * Errors: -EINVAL NULL argument or `flat` not 8-aligned; -EBADMSG the flat
 * frame is malformed (the message says where): too short or long for what its
 * header and refs say, a frame that shmrig_frame_parse refuses, a ref that
 * names a block, a size past the end, non-zero padding; -ENOMEM the pool (at
 * its max_bytes) or the host has no room; -SHMRIG_EFORK.
 */
SHMRIG_NODISCARD SHMRIG_API int shmrig_frame_unflatten(shmrig_pool *pool, const void *flat,
						       size_t flat_len, void **frame, size_t *len);

#ifdef __cplusplus
}
#endif

#endif
