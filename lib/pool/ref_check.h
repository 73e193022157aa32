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

#include <string.h>

/* The fields of a ref whose name is known to be terminated: reserved zero,
 * temporary 0 or 1, content_size <= size, the offset 64-aligned. */
static inline int shmrig__ref_fields_check(const struct shmrig_ref *ref)
{
	if (SHMRIG_UNLIKELY(ref->reserved[0] || ref->reserved[1] || ref->reserved[2] ||
			    ref->temporary > 1))
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
