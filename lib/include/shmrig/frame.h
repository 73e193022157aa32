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

#ifdef __cplusplus
}
#endif

#endif
