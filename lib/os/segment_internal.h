/* SPDX-License-Identifier: MIT */
#ifndef SHMRIG_OS_SEGMENT_INTERNAL_H
#define SHMRIG_OS_SEGMENT_INTERNAL_H

/* What segment.c offers the pool beyond the public segment API. */

#include <shmrig/segment.h>

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

/* shmrig_segment_parse_name, and the low 32 bits of the creator's pid
 * namespace inode from the name (any out-parameter may be NULL). */
int shmrig__segment_parse_name(const char *prefix, const char *name, pid_t *pid, uint64_t *start,
			       uint32_t *pidns);

/* segment.c for the pool: attach without populating (the pool checks the
 * header first), then populate; sweep with a last word from the pool
 * (keep(arg, name) true: leave that segment). */
int shmrig__segment_attach_lazy(const char *prefix, const char *name, struct shmrig_segment **out);
int shmrig__segment_populate(struct shmrig_segment *seg);
int shmrig__segment_sweep(const char *prefix, bool (*keep)(void *arg, const char *name), void *arg);

#endif
