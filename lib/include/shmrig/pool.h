/* SPDX-License-Identifier: MIT */
#ifndef SHMRIG_POOL_H
#define SHMRIG_POOL_H

/*
 * pool: blocks of shared memory that any process can attach by reference.
 *
 * A pool handle belongs to the process that opened it (a child after fork opens
 * its own; the inherited handle answers -SHMRIG_EFORK). The pool creates arenas,
 * segments of arena_size bytes (a multiple of 2 MiB) pre-faulted at creation,
 * carved into 2 MiB chunks; each chunk serves one size class. Size classes are
 * the powers of two from 64 B to 1 MiB (15 classes); a block above 1 MiB gets a
 * segment of its own, with the payload at offset 0 (page-aligned). Payloads are
 * aligned to min(class size, 4096); blocks of 2 MiB and more start on a page.
 *
 * Each block has a descriptor outside its payload, in shared memory: one atomic
 * word (state, refcount, unclaimed references, generation), the owner (pid +
 * start time), the content size and a caller's tag. A ref names the segment,
 * offset, size, content size, temporary flag and generation; a ref to a freed
 * block is refused as stale. Nothing read from shared memory is trusted twice:
 * geometry is read once and kept by each process, and a bad shared list is
 * -SHMRIG_ECORRUPT, never a block handed out twice.
 *
 * Ownership: a block is owned by one process. Only the owner frees it or
 * hands it on (shmrig_pool_transfer(); the receiver claims each reference
 * once, shmrig_pool_claim()); any process can attach a block by ref. Only an
 * arena's creator allocates from it, through a private cache in front of the
 * arena's free list, so the hot path takes no shared atomic; anyone frees into
 * it through a remote list the creator collects. When the owner dies, any
 * process's shmrig_pool_reap() returns its blocks; a process whose liveness
 * cannot be told (unknown) is never taken for dead.
 *
 * Thread safety: a pool handle may be used from several threads of its process.
 */

#include <shmrig/common.h>
#include <shmrig/segment.h>
#include <shmrig/topo.h>
#include <sys/types.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct shmrig_pool shmrig_pool;

#define SHMRIG_POOL_NUM_CLASSES 15
#define SHMRIG_POOL_MIN_BLOCK 64u
#define SHMRIG_POOL_MAX_CLASS_BLOCK (1u << 20)
#define SHMRIG_POOL_CHUNK (2u << 20)
/* The largest arena_size (512 chunks: an arena's header stays inside its first chunk). */
#define SHMRIG_POOL_ARENA_MAX ((size_t)512 * SHMRIG_POOL_CHUNK)

/* What travels between processes to name a block: the seed's ShmRef plus the
 * block's generation. Fixed layout, no pointers: it can be copied into frames. */
struct shmrig_ref {
	char name[SHMRIG_NAME_MAX]; /* segment name */
	uint64_t offset;            /* byte offset of the data inside the segment (64-aligned) */
	uint64_t size;              /* bytes usable at offset */
	uint64_t content_size;      /* bytes actually used, <= size */
	uint32_t generation;        /* of the block; a mismatch means stale */
	uint8_t temporary;          /* receiver may free right after decoding */
	uint8_t reserved[3];        /* zero */
};

/* Bind every segment to opts.numa_node. */
#define SHMRIG_POOL_BIND_NODE (1u << 0)
/* Do not print the leak report at close (shmrig_pool_close still returns -SHMRIG_ELEAK). */
#define SHMRIG_POOL_QUIET (1u << 1)
#define SHMRIG_POOL_FLAGS_ALL (SHMRIG_POOL_BIND_NODE | SHMRIG_POOL_QUIET)

/* Input, sized: SHMRIG_SIZED(struct shmrig_pool_opts) (shmrig/common.h). */
struct shmrig_pool_opts {
	uint32_t size;      /* sizeof where it was filled: SHMRIG_SIZED() */
	uint32_t flags;     /* SHMRIG_POOL_* */
	const char *prefix; /* NULL: $SHMRIG_PREFIX, else "shmrig" */
	size_t arena_size;  /* 0: $SHMRIG_ARENA_SIZE or 64 MiB; 2 MiB multiple, <= 1 GiB */
	size_t max_bytes;   /* 0: $SHMRIG_POOL_MAX or 1 GiB; cap on segments created */
	int backing;        /* enum shmrig_backing for every segment */
	int numa_node;      /* with SHMRIG_POOL_BIND_NODE */
	shmrig_topo *topo;  /* NULL: shmrig_topo_system() */
};

/* Open a pool (opts NULL: every default). No segment is created until the
 * first allocation.
 * Errors: -EINVAL bad options, opts->size below 8 (0: not set); -E2BIG
 * opts->size above SHMRIG_SIZED_MAX, or a non-zero byte past this library's
 * struct (shmrig/common.h); -ENOMEM; -EMFILE, -ENOENT and the like: this
 * process's own identity (pid start time, pid namespace) cannot be read. */
SHMRIG_NODISCARD SHMRIG_API int shmrig_pool_open(const struct shmrig_pool_opts *opts,
						 shmrig_pool **out);

/*
 * Close: reports every block this process still owns (allocated, or handed to
 * it and never claimed: owner, size, tag; on stderr unless SHMRIG_POOL_QUIET),
 * unmaps everything and unlinks the segments it created, but for those in
 * which a process not known to be dead holds a block (a frame we sent and it
 * has not read yet): those stay, and the last owner's free unlinks them (or
 * shmrig_pool_sweep() once their holders are dead).
 * Returns 0, or -SHMRIG_ELEAK if we owned anything (it is released anyway).
 */
SHMRIG_NODISCARD SHMRIG_API int shmrig_pool_close(shmrig_pool *pool);

/* Allocation flags. */
#define SHMRIG_ALLOC_TEMPORARY (1u << 0) /* sets ref->temporary */

/*
 * Allocate `size` bytes (size 0 is a 64-byte block). The caller owns the block
 * (refcount 1). While a slab is open, sizes that fit the slab come from it.
 * Errors: -EINVAL unknown flags; -ENOMEM the pool is at max_bytes or the OS has
 * no memory; -SHMRIG_EFORK.
 */
SHMRIG_NODISCARD SHMRIG_API int shmrig_pool_alloc(shmrig_pool *pool, size_t size, uint32_t flags,
						  uint32_t tag, struct shmrig_ref *ref,
						  void **data);

/*
 * Drop one reference to the block; at zero it is free (its generation moves on,
 * so every ref to it is stale). Only the owner may free, and only a claimed
 * reference (see shmrig_pool_claim).
 * Errors: -EINVAL/-SHMRIG_EBADREF bad ref; -SHMRIG_ESTALE the ref's generation
 * is not the block's (it was freed: a double free with the same ref);
 * -SHMRIG_ENOTLIVE the generation matches but the block is not allocated;
 * -EPERM not the owner; -EBUSY handed to us, not claimed;
 * -SHMRIG_EFORK.
 */
SHMRIG_NODISCARD SHMRIG_API int shmrig_pool_free(shmrig_pool *pool, const struct shmrig_ref *ref);

/*
 * shmrig_pool_free of each of n refs, in order, every ref even after one
 * failed. Blocks of another process's arena go back to it with one atomic
 * step for each run of blocks of one arena and size class (up to 64), not
 * one each: the way to free a batch of blocks received from a peer.
 * Returns 0, or the first ref's error (shmrig_last_error says which);
 * -EINVAL refs NULL with n > 0; -SHMRIG_EFORK.
 */
SHMRIG_NODISCARD SHMRIG_API int shmrig_pool_free_n(shmrig_pool *pool, const struct shmrig_ref *refs,
						   uint32_t n);

/* Take one more reference (the owner only). Errors as shmrig_pool_free, -EOVERFLOW. */
SHMRIG_NODISCARD SHMRIG_API int shmrig_pool_retain(shmrig_pool *pool, const struct shmrig_ref *ref);

/*
 * Map the block a ref names (reusing this process's mapping of its segment)
 * and return a pointer to its data at ref->offset. Validates: prefix and name,
 * the segment exists and is a shmrig segment, offset and size inside one block,
 * content_size <= size, generation matches, the block is live.
 * Errors: -EINVAL NULL, or a name that is not one of ours (prefix, format);
 * -SHMRIG_EBADREF the ref's own fields (name not terminated, reserved not zero,
 * temporary not 0/1, content_size > size, offset not 64-aligned) or a range
 * that is not inside one block; -ENOENT no such segment; -EXDEV a segment of
 * another pid namespace; -SHMRIG_ESTALE; -SHMRIG_ENOTLIVE;
 * -SHMRIG_ECORRUPT not a valid pool segment; -ENOMEM.
 */
SHMRIG_NODISCARD SHMRIG_API int shmrig_pool_attach(shmrig_pool *pool, const struct shmrig_ref *ref,
						   void **data);

/*
 * Hand the block to process `pid` (which must be alive): from now on it is the
 * owner, and the caller must not touch the block. Call before publishing the
 * ref to that process. Every reference to the block goes with it, unclaimed:
 * the receiver claims each (shmrig_pool_claim, or decode does it) before it
 * uses or frees them. A part of a block (shmrig_pool_subref) hands over the
 * whole block; handing another part of it to the same pid is then a no-op.
 * A block handed to us of which nothing was claimed yet (a frame we relay)
 * moves on whole. Errors as shmrig_pool_free; -ESRCH no such process; -EBUSY
 * part of a block handed to us was claimed here, or the block is the open
 * slab's.
 */
SHMRIG_NODISCARD SHMRIG_API int shmrig_pool_transfer(shmrig_pool *pool,
						     const struct shmrig_ref *ref, pid_t pid);

/*
 * A process's identity for transfers: its pid and start time, checked now
 * (a later process that reuses the pid is another peer). Look it up once per
 * peer: shmrig_pool_transfer_peer() then costs no syscall; a peer that dies
 * meanwhile is reap's business (blocks handed to it come back).
 * Errors: -ESRCH no such live process; -EMFILE and the like: could not tell.
 */
SHMRIG_NODISCARD SHMRIG_API int shmrig_pool_peer(shmrig_pool *pool, pid_t pid, uint64_t *peer);

/* shmrig_pool_transfer to a peer identity from shmrig_pool_peer (or a channel's
 * hello). Errors as shmrig_pool_transfer, but -ESRCH. */
SHMRIG_NODISCARD SHMRIG_API int shmrig_pool_transfer_peer(shmrig_pool *pool,
							  const struct shmrig_ref *ref,
							  uint64_t peer);

/*
 * The receiver's side of a transfer: take one of the references a transfer
 * handed us, with one atomic step. Each reference is claimed once: a ref (a
 * frame) claimed a second time, or naming a block we hold for something else,
 * is refused. After the claim the ref can be freed, retained, sent on.
 * Errors: -SHMRIG_ECLAIMED no unclaimed reference is left; -EPERM the block is
 * not ours; the errors of shmrig_pool_attach.
 */
SHMRIG_NODISCARD SHMRIG_API int shmrig_pool_claim(shmrig_pool *pool, const struct shmrig_ref *ref);

/*
 * shmrig_pool_claim of each of n refs, in order, every ref even after one
 * failed; the blocks' descriptors are fetched all at once first, so a batch
 * costs about one transfer from the sender's CPU, not one a ref. Returns 0,
 * or the first ref's error (shmrig_last_error says which); -EINVAL refs NULL
 * with n > 0.
 */
SHMRIG_NODISCARD SHMRIG_API int shmrig_pool_claim_n(shmrig_pool *pool,
						    const struct shmrig_ref *refs, uint32_t n);

/*
 * A ref to the part [offset, offset + size) of a block the caller owns, with
 * content_size bytes used, holding one more reference on the block: the block
 * lives until this ref and the others are all freed. offset is relative to the
 * block's ref and 64-byte aligned. This is how a codec packs many buffers in
 * one block without a pool-wide slab. Flags: SHMRIG_ALLOC_TEMPORARY.
 * Errors: as shmrig_pool_retain; -EINVAL the part is not inside the block.
 */
SHMRIG_NODISCARD SHMRIG_API int shmrig_pool_subref(shmrig_pool *pool,
						   const struct shmrig_ref *block, uint64_t offset,
						   uint64_t size, uint64_t content_size,
						   uint32_t flags, struct shmrig_ref *out);

/*
 * Slab mode (the seed's): after shmrig_pool_slab_open(capacity), allocations
 * of at most `capacity` bytes are bump-allocated, 64-byte aligned, from one
 * block; when it is full it is sealed and a new one of the same capacity is
 * opened. Every sub-allocation is a ref into the slab's block; the block is
 * freed when the slab is sealed and every sub-allocation has been freed.
 * A sub-allocation's ref can be freed and retained like any other; transferring
 * one hands the whole slab block (all its sub-allocations) to the new owner.
 * Errors: -EINVAL capacity 0; -EBUSY a slab is already open (open);
 * -ENOENT no slab open (seal); allocation errors.
 */
SHMRIG_NODISCARD SHMRIG_API int shmrig_pool_slab_open(shmrig_pool *pool, size_t capacity);
SHMRIG_NODISCARD SHMRIG_API int shmrig_pool_slab_seal(shmrig_pool *pool);

/* Block size (capacity) that a request of `size` bytes gets outside a slab. */
SHMRIG_API size_t shmrig_pool_block_size(size_t size);

/* Output, sized (shmrig/common.h): set size (SHMRIG_SIZED()) before the call. */
struct shmrig_pool_stats {
	uint32_t size;        /* in: the caller's sizeof; out: the bytes filled */
	uint32_t segments;    /* mapped by this process: created + attached */
	uint64_t live_blocks; /* every class and large blocks */
	uint64_t live_bytes;
	uint64_t large_live_blocks;
	uint64_t large_live_bytes;
	uint64_t created_bytes; /* bytes of the segments this pool created (counts against max_bytes) */
	uint64_t cached_blocks; /* free blocks in this process's cache */
};

/*
 * Live blocks and bytes in every segment this process has mapped (per size
 * class: shmrig_pool_class_stats). Errors: -EINVAL NULL, stats->size below 8;
 * -E2BIG stats->size above SHMRIG_SIZED_MAX; -SHMRIG_EFORK.
 */
SHMRIG_NODISCARD SHMRIG_API int shmrig_pool_stats(shmrig_pool *pool,
						  struct shmrig_pool_stats *stats);

/* An array of outputs, sized (shmrig/common.h): size set in the first element. */
struct shmrig_pool_class_stats {
	uint32_t size;       /* in (first element): the stride; out: the bytes filled */
	uint32_t block_size; /* the class's block size: 64 B .. 1 MiB */
	uint64_t live_blocks;
	uint64_t live_bytes; /* content bytes */
};

/*
 * Live blocks and bytes per size class, smallest first, in up to `max`
 * elements of `out`, out[0].size bytes apart (the stride; max 0: out may be
 * NULL). Returns the number of classes, SHMRIG_POOL_NUM_CLASSES, which may
 * exceed max.
 * Errors: -EINVAL NULL pool, NULL out with max > 0, out[0].size below 8;
 * -E2BIG out[0].size above SHMRIG_SIZED_MAX; -SHMRIG_EFORK.
 */
SHMRIG_NODISCARD SHMRIG_API int shmrig_pool_class_stats(shmrig_pool *pool,
							struct shmrig_pool_class_stats *out,
							size_t max);

/* Filled by the library and handed to a callback: size is the library's sizeof
 * (test newer fields with SHMRIG_HAS_FIELD; shmrig/common.h). */
struct shmrig_block_info {
	uint32_t size;
	pid_t owner;
	uint32_t tag;
	uint32_t refcount;
	struct shmrig_ref ref; /* temporary is not recorded: always 0 here */
};

/*
 * Call fn for every live block in every segment this process has mapped.
 * Returns how many, or -errno. Per-owner accounting is built on this.
 */
SHMRIG_NODISCARD SHMRIG_API int shmrig_pool_for_each_live(
	shmrig_pool *pool, void (*fn)(void *arg, const struct shmrig_block_info *info), void *arg);

/* An array of outputs, sized (shmrig/common.h): size set in the first element. */
struct shmrig_owner_stats {
	uint32_t size; /* in (first element): the stride; out: the bytes filled */
	pid_t pid;
	uint64_t live_blocks;
	uint64_t live_bytes;
};

/*
 * Live blocks and bytes per owner pid, sorted by pid, in up to `max` elements
 * of `out`, out[0].size bytes apart (the stride; max 0: out may be NULL).
 * Returns the number of distinct owners (which may exceed max).
 * Errors: -EINVAL NULL pool, NULL out with max > 0, out[0].size below 8;
 * -E2BIG out[0].size above SHMRIG_SIZED_MAX; -ENOMEM; -SHMRIG_EFORK.
 */
SHMRIG_NODISCARD SHMRIG_API int shmrig_pool_owner_stats(shmrig_pool *pool,
							struct shmrig_owner_stats *out, size_t max);

/*
 * Free every block, allocated or handed over, whose owner process is dead, in
 * every segment this process has mapped; in arenas this process created, also
 * the blocks a process died freeing (between its two steps). Each owner's
 * liveness is asked once per call; an owner that cannot be judged (unknown)
 * keeps its blocks. Returns how many blocks came back, or -errno.
 */
SHMRIG_NODISCARD SHMRIG_API int shmrig_pool_reap(shmrig_pool *pool);

/* Unlink every segment with this pool's prefix, of our uid and pid namespace,
 * whose creator is dead, unless a process not known to be dead still holds a
 * block in it (a frame a dead sender published that a survivor has not read:
 * it can still attach it). Returns how many, or -errno (-EMFILE and the like:
 * the segment directories cannot be listed; the message says which). */
SHMRIG_NODISCARD SHMRIG_API int shmrig_pool_sweep(shmrig_pool *pool);

/*
 * Check the shared metadata of every arena this process has mapped: each free
 * list holds only free blocks of its class, has no cycle, and free lists plus
 * caches plus live blocks account for every block. Meant for tests and debug
 * builds (it walks everything); only meaningful while no other process is
 * changing these arenas. 0 or -SHMRIG_ECORRUPT (the message says where).
 */
SHMRIG_NODISCARD SHMRIG_API int shmrig_pool_audit(shmrig_pool *pool);

/* Output, sized (shmrig/common.h): set size (SHMRIG_SIZED()) before the call. */
struct shmrig_pool_info {
	uint32_t size;               /* in: the caller's sizeof; out: the bytes filled */
	enum shmrig_backing backing; /* of the last segment created (requested one before any) */
	const char *prefix;
	size_t arena_size;
	size_t max_bytes;
	size_t page_size;            /* of the last segment created, 0 before any */
	const char *reason;          /* why that backing */
	int numa_node;               /* bound node of the last segment, -1 if none */
};

/*
 * Describe the pool. Strings stay valid until the next call on the pool.
 * Errors: -EINVAL NULL, info->size below 8; -E2BIG info->size above
 * SHMRIG_SIZED_MAX; -SHMRIG_EFORK.
 */
SHMRIG_NODISCARD SHMRIG_API int shmrig_pool_info(shmrig_pool *pool, struct shmrig_pool_info *info);

#ifdef __cplusplus
}
#endif

#endif
