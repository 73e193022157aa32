/* SPDX-License-Identifier: MIT */
#ifndef SHMRIG_REF_CHECK_H
#define SHMRIG_REF_CHECK_H

/*
 * A ref's own fields, checked one way for the pool and for frames, with one
 * answer: -SHMRIG_EBADREF and the reason. (Whether the name is one of ours,
 * and where the ref points, is the pool's to check after.) Inline: a frame
 * parse runs it once a ref.
 */

#include "base/internal.h"

#include <shmrig/pool.h>

#include <stddef.h>
#include <string.h>

/*
 * A ref's last eight bytes, generation | temporary | reserved, are written
 * with one store and the last four read with one load (little-endian: the
 * temporary flag is the low byte, so "reserved zero and temporary 0 or 1" is
 * one compare). Written field by field, a load of the four bytes that the
 * three stores of temporary and reserved cover cannot be forwarded from the
 * store buffer: it waits until those stores, and every store before them,
 * reach the cache; a ref checked right after it was filled (free after
 * alloc, transfer after alloc) then waits for the descriptor's line.
 */
_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "ref tail: the flag is the low byte");
_Static_assert(offsetof(struct shmrig_ref, temporary) ==
			       offsetof(struct shmrig_ref, generation) + 4 &&
		       offsetof(struct shmrig_ref, reserved) ==
			       offsetof(struct shmrig_ref, temporary) + 1 &&
		       sizeof(struct shmrig_ref) == offsetof(struct shmrig_ref, generation) + 8,
	       "ref tail: generation, temporary, reserved[3], nothing after");

static inline void shmrig__ref_set_tail(struct shmrig_ref *ref, uint32_t generation,
					uint8_t temporary)
{
	uint64_t tail = (uint64_t)temporary << 32 | generation;

	memcpy((char *)ref + offsetof(struct shmrig_ref, generation), &tail, sizeof(tail));
}

/* The fields of a ref whose name is known to be terminated: reserved zero,
 * temporary 0 or 1, content_size <= size, the offset 64-aligned. */
static inline int shmrig__ref_fields_check(const struct shmrig_ref *ref)
{
	uint32_t flags;

	memcpy(&flags, &ref->temporary, sizeof(flags));
	if (SHMRIG_UNLIKELY(flags > 1))
		return shmrig__fail(-SHMRIG_EBADREF,
				    "ref '%s': reserved fields are not zero or temporary is not 0/1",
				    ref->name);
	if (SHMRIG_UNLIKELY(ref->content_size > ref->size))
		return shmrig__fail(-SHMRIG_EBADREF, "ref '%s': content_size %llu > size %llu",
				    ref->name, (unsigned long long)ref->content_size,
				    (unsigned long long)ref->size);
	if (SHMRIG_UNLIKELY(ref->offset % SHMRIG_POOL_MIN_BLOCK))
		return shmrig__fail(-SHMRIG_EBADREF, "ref '%s': offset %llu is not 64-byte aligned",
				    ref->name, (unsigned long long)ref->offset);
	return 0;
}

/* The same, and the name terminated first. */
static inline int shmrig__ref_check(const struct shmrig_ref *ref)
{
	if (SHMRIG_UNLIKELY(strnlen(ref->name, SHMRIG_NAME_MAX) == SHMRIG_NAME_MAX))
		return shmrig__fail(-SHMRIG_EBADREF, "ref: the name is not terminated");
	return shmrig__ref_fields_check(ref);
}

#endif
