/* SPDX-License-Identifier: MIT */
#ifndef SHMRIG_POOL_LAYOUT_H
#define SHMRIG_POOL_LAYOUT_H

/*
 * Every layout of the pool that two processes read, with its static asserts.
 * Nothing here is trusted after it is read: sizes and geometry are read once,
 * checked and kept in the reader's own tables (pool_internal.h).
 *
 * Arena (a segment of nchunks 2 MiB chunks):
 *   chunk 0: [arena_hdr][chunk_info x nchunks][big-class descriptors x nchunks x 32]
 *            [descriptors] [payload blocks]
 *   chunk i: [descriptors] [payload blocks]
 * Classes of 64 KiB and more have at most 32 blocks a chunk; their descriptors
 * live in the header's table (32 a chunk) so that the payload can start at the
 * chunk's first byte. A chunk serves one size class at a time, chosen by the
 * creator when it needs one; its layout is computed from the class and the
 * header size, never read from shared memory. When the creator needs a chunk
 * and has none unused, a chunk whose every block is free goes back and serves
 * another class (pool_arena.c, reclaim_chunk): a reader therefore reads the
 * chunk's class for each ref it locates, and checks it against the class
 * stamp in the descriptor it computed from it (desc_class below).
 *
 * Large block: a segment of its own, payload at offset 0, a large_hdr (with the
 * block's one descriptor) in its last LARGE_TRAILER bytes.
 *
 * The segment's role letter ('a' arena, 'l' large) tells which layout to read.
 */

#include <shmrig/pool.h>

#include <stdalign.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define ARENA_MAGIC 0x414e455241524853ull /* "SHRARENA" */
#define LARGE_MAGIC 0x454752414c524853ull /* "SHRLARGE" */
#define LAYOUT_VERSION 4u
#define ROLE_ARENA 'a'
#define ROLE_LARGE 'l'
#define CHUNK ((size_t)SHMRIG_POOL_CHUNK)
#define NCLASS SHMRIG_POOL_NUM_CLASSES
#define NIL UINT32_MAX
#define SLOT_BITS 16
/* 1 GiB arenas at most: the header (about 1 KiB a chunk) then stays inside chunk 0. */
#define MAX_CHUNKS 512u
_Static_assert(CHUNK * MAX_CHUNKS == SHMRIG_POOL_ARENA_MAX, "pool.h states the arena cap");
#define LARGE_TRAILER 128u
/* Header table slots a chunk, for classes with at most this many blocks a chunk. */
#define EXT_DESCS 32u
/* Ids a remote list keeps as prefetch hints: the head's line and three more. */
#define REMOTE_HINTS 62u

/*
 * Descriptor word, changed by one atomic store or CAS per transition:
 *   generation (63..40) | refcount (39..22) | unclaimed (21..4) | state (3..0)
 * `unclaimed` counts the references handed to the owner by a transfer that its
 * decode has not claimed yet: a frame can be decoded (claimed) only as many
 * times as it carries references, never twice.
 *
 * Who writes it. A block held by a live process (CACHED, LIVE, HANDED, and
 * REMOTE until pushed) is written by that process alone, under its pool's
 * lock: plain stores, no CAS (a locked instruction a transition would wait,
 * on a line the peer's CPU wrote last, for every store before it). A block on
 * an arena's lists (FREE; REMOTE once pushed) is written by the arena's
 * creator alone. A CAS is where two writers can meet: reapers of a dead
 * owner's block, and the list heads.
 */
enum {
	ST_FREE = 0,    /* on the arena's free list (or a free large segment) */
	ST_CACHED = 1,  /* in the owner's private cache */
	ST_LIVE = 2,    /* allocated; every reference claimed */
	ST_HANDED = 3,  /* transferred to the owner, `unclaimed` references not yet claimed */
	ST_REMOTE = 4,  /* freed by a process other than the creator: on the remote list,
			 * or (if the owner, who pushes it, died first) on none: reap finds it */
	ST_COUNT
};
#define GEN_BITS 24
#define GEN_MASK ((1u << GEN_BITS) - 1)
#define REF_BITS 18
#define REF_MAX ((1u << REF_BITS) - 1)

static inline uint64_t word_make(uint32_t gen, uint32_t refs, uint32_t unclaimed, unsigned state)
{
	return ((uint64_t)(gen & GEN_MASK) << 40) | ((uint64_t)refs << 22) |
	       ((uint64_t)unclaimed << 4) | state;
}
static inline uint32_t word_gen(uint64_t w)
{
	return (uint32_t)(w >> 40);
}
static inline uint32_t word_refs(uint64_t w)
{
	return (uint32_t)(w >> 22) & REF_MAX;
}
static inline uint32_t word_unclaimed(uint64_t w)
{
	return (uint32_t)(w >> 4) & REF_MAX;
}
static inline unsigned word_state(uint64_t w)
{
	return (unsigned)(w & 0xf);
}
/* The generation after `gen`; 0 is never one, so that a zeroed ref matches no block. */
static inline uint32_t gen_next(uint32_t gen)
{
	uint32_t next = (gen + 1) & GEN_MASK;

	return next ? next : 1;
}
/* Blocks that are someone's: what reap and the leak report look at. */
static inline bool state_held(unsigned state)
{
	return state == ST_CACHED || state == ST_LIVE || state == ST_HANDED;
}

/*
 * Block descriptor. `owner` is written by the owner (or, once the owner is
 * dead, by the one reaper whose CAS on `word` won) with one atomic store.
 * `next_free` links the free list or the remote list, never both: a block is
 * on the remote list only while REMOTE, on the free list only while FREE.
 */
struct desc {
	_Atomic uint64_t word;
	_Atomic uint64_t owner; /* shmrig__procid */
	uint64_t content_size;  /* arena blocks: (class + 1) << DESC_CLASS_SHIFT | bytes */
	uint32_t tag;
	_Atomic uint32_t next_free;
};
_Static_assert(sizeof(struct desc) == 32, "descriptor layout is shared");

/*
 * The class stamp: an arena descriptor's content_size carries its chunk's
 * class + 1 in its top byte, written when the chunk is assigned to the class
 * (an allocation writes the low 32 bits only: desc_set_bytes). A process that computed a descriptor from a class
 * the chunk no longer has (or that a peer scribbled for a moment) finds
 * another stamp there, or none, and refuses the ref instead of acting on a
 * neighbour's descriptor. Large blocks' descriptors carry no stamp.
 */
#define DESC_CLASS_SHIFT 56
static inline uint64_t desc_stamp(unsigned c, uint64_t bytes)
{
	return ((uint64_t)(c + 1) << DESC_CLASS_SHIFT) | bytes;
}
static inline uint64_t desc_bytes(uint64_t content_size)
{
	return content_size & ((1ull << DESC_CLASS_SHIFT) - 1);
}
/* 0 for none, else the class + 1 */
static inline unsigned desc_class(uint64_t content_size)
{
	return (unsigned)(content_size >> DESC_CLASS_SHIFT);
}
/* An allocation's content size into an arena descriptor, below the stamp its
 * chunk's assignment wrote: the low 32 bits alone (an arena block is at most
 * 1 MiB), one store, the stamp and the zero bytes between left as they are. */
_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "desc_set_bytes: low half first");
static inline void desc_set_bytes(struct desc *d, uint32_t bytes)
{
	memcpy(&d->content_size, &bytes, sizeof(bytes));
}

struct chunk_info {
	_Atomic uint32_t class_plus1; /* 0: unassigned (never used, or being reassigned) */
	uint32_t reserved;
};
_Static_assert(sizeof(struct chunk_info) == 8, "chunk table layout is shared");

struct arena_hdr {
	uint64_t magic;
	uint32_t version;
	uint32_t nchunks;
	uint64_t arena_size;
	uint64_t creator; /* shmrig__procid */
	_Atomic uint32_t next_chunk;
	uint32_t hdr_size;
	_Atomic uint32_t closed; /* the creator closed its pool: the last owner unlinks */
	uint8_t pad[20];
	/* Free list heads {tag:32, block id:32}, one cache line each: touched by
	 * the creator only (it alone allocates from its arenas). */
	struct {
		alignas(SHMRIG_CACHELINE) _Atomic uint64_t head;
	} free_list[NCLASS];
	/* Remote-free lists: other processes push freed blocks with one CAS;
	 * the creator takes the whole list with one exchange (so no ABA, and no
	 * state a death can strand between two stores). The head is {pushes
	 * since the list was last taken:32, block id:32}. A pusher also writes
	 * its block's id to hint[pushes % REMOTE_HINTS] before its CAS, so that
	 * the creator can fetch the descriptors of a list's first REMOTE_HINTS
	 * blocks all at once instead of one link after another. Only a hint:
	 * the list is the links; a wrong hint (a race between pushers, a
	 * scribbling peer) costs a wasted prefetch, never a block. */
	struct {
		alignas(SHMRIG_CACHELINE) _Atomic uint64_t head;
		_Atomic uint32_t hint[REMOTE_HINTS];
	} remote[NCLASS];
	struct chunk_info chunks[];
};
_Static_assert(offsetof(struct arena_hdr, free_list) == 64, "arena header layout is shared");
_Static_assert(offsetof(struct arena_hdr, remote) == 64 + 64 * NCLASS,
	       "arena header layout is shared");
_Static_assert(sizeof(struct arena_hdr) == 64 + 64 * NCLASS + 256 * NCLASS,
	       "arena header layout is shared");

struct large_hdr {
	uint64_t magic;
	uint32_t version;
	_Atomic uint32_t closed; /* as arena_hdr.closed */
	uint64_t capacity;       /* payload bytes at offset 0 */
	uint64_t creator;
	struct desc desc;
	uint8_t pad[LARGE_TRAILER - 64];
};
_Static_assert(sizeof(struct large_hdr) == LARGE_TRAILER, "large trailer layout is shared");

_Static_assert(sizeof(struct arena_hdr) + SHMRIG_CACHELINE +
			       MAX_CHUNKS * (sizeof(struct chunk_info) +
					     EXT_DESCS * sizeof(struct desc)) <
		       CHUNK / 2,
	       "the largest arena's header must leave chunk 0 usable");

#endif
