/* SPDX-License-Identifier: MIT */
#ifndef SHMRIG_STORAGE_H
#define SHMRIG_STORAGE_H

/* What a decoded value owns: leases on pool blocks and host memory (value.c). */

#include <shmrig/pool.h>
#include <shmrig/value.h>

struct shmrig_value_storage *shmrig__storage_new(shmrig_pool *pool);

/* Record a lease: the ref is freed when the value is released. 0 or -ENOMEM. */
int shmrig__storage_lease(struct shmrig_value_storage *st, const struct shmrig_ref *ref);

/* Zeroed memory freed with the value; NULL on ENOMEM. Large sizes come from
 * hostmem (huge pages, reused). */
void *shmrig__storage_alloc(struct shmrig_value_storage *st, size_t size);
/* The same, its contents undefined: for a buffer the caller fills whole. */
void *shmrig__storage_alloc_raw(struct shmrig_value_storage *st, size_t size);

#endif
