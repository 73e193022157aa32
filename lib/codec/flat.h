/* SPDX-License-Identifier: MIT */
#ifndef SHMRIG_CODEC_FLAT_H
#define SHMRIG_CODEC_FLAT_H

/*
 * The parts of shmrig_frame_flatten and shmrig_frame_unflatten (frame.c) that
 * a transport uses to move a frame's payload without the flat copy: the
 * sender takes the frame's blocks and sends a bare frame (its refs naming no
 * block) and each buffer's bytes straight from its block; the receiver checks
 * the bare frame by the rules unflatten applies, allocates the blocks and
 * receives each buffer's bytes into its block (channel_ucx.c). One set of
 * rules for both ways a frame crosses hosts.
 */

#include <shmrig/frame.h>
#include <shmrig/registry.h>

#include <stddef.h>

/* n rounded up to 8: each part of a flat form starts 8-aligned. */
static inline size_t shmrig__pad8(size_t n)
{
	return (n + 7) & ~(size_t)7;
}

/*
 * Sender: take every block of the frame, as shmrig_frame_flatten does (each
 * must be ours, handed to us and not claimed yet: after encode); *f is the
 * parsed frame (views into `frame`) and data[i] where buffer i's bytes are
 * mapped (the caller's array: an entry for each of the frame's buffers). On
 * error nothing is taken: the frame is as it was. Errors: those of
 * shmrig_frame_flatten but -EOVERFLOW.
 */
int shmrig__frame_take(shmrig_pool *pool, const void *frame, size_t len, struct shmrig_frame *f,
		       void **data);

/* Sender: free the blocks shmrig__frame_take took (their bytes are sent, or
 * the send failed). f views a copy of the frame that lives that long. Best
 * effort: a free that fails leaves the block to pool_close's report. */
void shmrig__frame_release(shmrig_pool *pool, const struct shmrig_frame *f);

/* Sender: the frame's len bytes into `out` (8-aligned), its refs stripped to
 * size, content_size and temporary (name, offset and generation zero). */
void shmrig__frame_bare(const void *frame, size_t len, void *out);

/*
 * Receiver: check a bare frame (our own copy, 8-aligned, len bytes): what
 * shmrig_frame_parse checks, and that no ref names a block; *payload is the
 * sum of its buffers' content sizes (each at most `max_payload`, and the sum
 * too: checked as it is added, no overflow). Errors: -EBADMSG (the message
 * says what; a bad ref is -EBADMSG here too: all is the peer's).
 */
int shmrig__frame_check_bare(const void *frame, size_t len, uint64_t max_payload,
			     struct shmrig_frame *f, uint64_t *payload);

/*
 * Receiver: one block per buffer of a checked bare frame, in our pool, handed
 * to us and unclaimed (as encode leaves them, so that decode takes the frame
 * unchanged); each ref of `frame` is rewritten to name its block, content
 * size and temporary flag kept, and data[i] is where its bytes go. On error
 * every block it allocated is freed and the refs not yet rewritten are as
 * they were (the frame is then only bytes). Errors: -ENOMEM the pool (at its
 * max_bytes) or the host has no room; -SHMRIG_EFORK.
 */
int shmrig__frame_bare_blocks(shmrig_pool *pool, void *frame, const struct shmrig_frame *f,
			      void **data);

/*
 * Sender, a small frame: shmrig_frame_flatten's flat form behind `room` bytes
 * (a multiple of 8) left for the caller's header, in one allocation: *out
 * (free it), the flat form at *out + room, *flat_len bytes of it. -EAGAIN,
 * nothing taken: the payload is over max_payload bytes. Else flatten's errors.
 */
int shmrig__frame_flatten_small(shmrig_pool *pool, const void *frame, size_t len, size_t room,
				uint64_t max_payload, void **out, size_t *flat_len);

/*
 * Receiver: check a flat form in place (bytes that only we can write, 8-aligned:
 * a message received into our memory), by unflatten's rules, and parse its
 * frame into *f (views into `flat`); with `data` (ndata entries), data[i] is
 * where buffer i's bytes are in `flat`. Errors: -EINVAL misaligned; -EBADMSG
 * (the message says what); -E2BIG more buffers than ndata.
 */
int shmrig__frame_flat_parse(const void *flat, size_t flat_len, struct shmrig_frame *f,
			     const void **data, uint32_t ndata);

/*
 * shmrig_registry_decode of a flat form checked and parsed in place
 * (shmrig__frame_flat_parse; the same bytes, ours alone): no block is claimed,
 * a buffer a codec views is copied into the value's storage, one it copies
 * out is read from `flat`. Errors: those of shmrig_registry_decode and of
 * shmrig__frame_flat_parse.
 */
int shmrig__registry_decode_flat(shmrig_registry *reg, shmrig_pool *pool, const void *flat,
				 size_t flat_len, struct shmrig_value *out);

/*
 * shmrig_registry_encode without a pool: the flat form of the value's frame
 * (shmrig_frame_flatten's, byte for byte but for the refs' size fields of
 * large buffers), behind `room` bytes (a multiple of 8) for the caller's
 * header, in `buf` if it fits its `cap` bytes (8-aligned; NULL and 0: none),
 * else in one allocation: *out (buf, or free it); *flat_len bytes after the
 * room.
 * The codec's buffers are host memory, gone when this returns. -EAGAIN: the
 * registry guards buffers (SHMRIG_REGISTRY_GUARD), which live in blocks:
 * encode into the pool. Else the errors of shmrig_registry_encode.
 */
int shmrig__registry_encode_flat(shmrig_registry *reg, const struct shmrig_value *value,
				 size_t room, void *buf, size_t cap, void **out, size_t *flat_len);

#endif
