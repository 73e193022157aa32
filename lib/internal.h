/* SPDX-License-Identifier: MIT */
#ifndef SHMRIG_INTERNAL_H
#define SHMRIG_INTERNAL_H

/* Cross-file internals of libshmrig. Not installed. */

#include <shmrig/common.h>

#include <stdbool.h>
#include <sys/types.h>

/* Graded checks (meson option debug_checks): 0 bounds checks of everything
 * read from shared memory only; 1 + each block handed out from a process cache
 * is checked to be still ours; 2 + an audit walk of every arena at pool close. */
#ifndef SHMRIG_DEBUG_CHECKS
#define SHMRIG_DEBUG_CHECKS 1
#endif

#define SHMRIG_LIKELY(x) __builtin_expect(!!(x), 1)
#define SHMRIG_UNLIKELY(x) __builtin_expect(!!(x), 0)
#define SHMRIG_CACHELINE 64

/*
 * Record a failure for shmrig_last_error() and return `err` (a negative code),
 * so that a failing path reads `return shmrig__fail(-EINVAL, "...", ...);`.
 */
int shmrig__fail(int err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Forget the last failure's words (shmrig_last_error() is "" again). */
void shmrig__clear_error(void);

/* Print "shmrig: warning: ..." to stderr once per `key` (a static flag) per process. */
void shmrig__warn_once(int *key, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Option lookup (see shmrig/options.h): the API value if non-zero, else the
 * environment variable if valid, else the fallback. */
size_t shmrig__option_size(size_t api_value, const char *env_name, size_t fallback);
const char *shmrig__option_string(const char *api_value, const char *env_name,
				  const char *fallback);

/* A name of codecs, handlers, user types: 1..max_len of [A-Za-z0-9_.-]. */
bool shmrig__valid_name(const char *name, size_t max_len);

/* 0 if `prefix` is a valid segment name prefix, else -EINVAL with a message. */
int shmrig__check_prefix(const char *prefix);

/* shmrig_segment_parse_name, and the low 32 bits of the creator's pid
 * namespace inode from the name (any out-parameter may be NULL). */
int shmrig__segment_parse_name(const char *prefix, const char *name, pid_t *pid, uint64_t *start,
			       uint32_t *pidns);

struct shmrig_pool;
struct shmrig_ref;
struct shmrig_segment;

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

/* The identity (pid + start time) of a channel's peer, as its hello checked it. */
struct shmrig_channel;
uint64_t shmrig__channel_peer_id(const struct shmrig_channel *ch);

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

/* segment.c for the pool: attach without populating (the pool checks the
 * header first), then populate; sweep with a last word from the pool
 * (keep(arg, name) true: leave that segment). */
int shmrig__segment_attach_lazy(const char *prefix, const char *name, struct shmrig_segment **out);
int shmrig__segment_populate(struct shmrig_segment *seg);
int shmrig__segment_sweep(const char *prefix, bool (*keep)(void *arg, const char *name), void *arg);

#endif
