/* SPDX-License-Identifier: MIT */
#ifndef SHMRIG_POOL_HANDOVER_H
#define SHMRIG_POOL_HANDOVER_H

/*
 * The pool's hand-over of blocks, for the rooms above it: the codec (an
 * encoded frame's blocks start handed to us; a decode claims them) and the
 * transport (a channel hands a frame's blocks to its verified peer).
 */

#include <stdint.h>
#include <sys/types.h>

struct shmrig_pool;
struct shmrig_ref;

/*
 * Hand the blocks of n refs to the process `target` (a verified identity:
 * pid + start time, as a channel's hello checked it), under one lock, with no
 * syscall. Each block becomes HANDED with all its references unclaimed.
 * Stops at the first error (those before stay handed). Errors: as
 * shmrig_pool_transfer; -EBUSY a block handed to us and not claimed yet, or a
 * part of the open slab.
 */
int shmrig__pool_transfer_refs(struct shmrig_pool *pool, const struct shmrig_ref *refs, uint32_t n,
			       uint64_t target);
/* shmrig_pool_alloc of an encoder's buffer: the block starts handed to us,
 * its one reference unclaimed (no slab). */
int shmrig__pool_alloc_handed(struct shmrig_pool *pool, size_t size, uint32_t flags, uint32_t tag,
			      struct shmrig_ref *ref, void **data);
/* Hand the blocks of n refs to ourselves (an encoded frame: in flight until a
 * decode claims it). Errors as shmrig__pool_transfer_refs. */
int shmrig__pool_hand_out(struct shmrig_pool *pool, const struct shmrig_ref *refs, uint32_t n);
/* The same, to a process named by pid (its identity looked up: a pidfd poll). */
int shmrig__pool_transfer_pid(struct shmrig_pool *pool, const struct shmrig_ref *refs, uint32_t n,
			      pid_t pid);

/* Drop one reference that is ours: claimed first if it was handed to us and
 * not claimed yet (an encoded frame's buffer), then freed. Errors as
 * shmrig_pool_claim (but -SHMRIG_ECLAIMED) and shmrig_pool_free. */
int shmrig__pool_drop(struct shmrig_pool *pool, const struct shmrig_ref *ref);

/*
 * Claim, for a decode, the references a frame's refs hand us: each ref takes
 * one unclaimed reference of its block with one CAS; claimed[i] = 1 for each
 * one taken (the caller now owns that reference: it frees it or leases it);
 * `claimed` may be NULL; data[i] (if `data` is not NULL) is where ref i's
 * bytes are mapped, valid while the reference is held. Goes on past a ref it cannot claim (what a bad frame
 * handed us is still ours to free) and returns the first error:
 * -EPERM the block is not ours; -SHMRIG_ECLAIMED
 * no unclaimed reference left (the frame was decoded already, or names a block
 * we hold for something else); the resolve errors.
 */
int shmrig__pool_claim_refs(struct shmrig_pool *pool, const struct shmrig_ref *refs, uint32_t n,
			    uint8_t *claimed, void **data);

/*
 * Where segment `name` is mapped in this process: 0 with *base and *size;
 * -ENOENT not mapped now. For a transport that registers the pool's segments
 * with its NIC once (channel_ucx.c): it asks again before each use, since the
 * pool unmaps a large segment once its block is free (and everything at
 * close), and another segment may then be mapped at the same address.
 */
int shmrig__pool_seg_span(struct shmrig_pool *pool, const char *name, void **base, size_t *size);

#endif
