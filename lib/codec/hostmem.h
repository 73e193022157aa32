/* SPDX-License-Identifier: MIT */
/*
 * hostmem: the host memory of large decoded values (a copied-out bytes value
 * of many MiB), which malloc serves badly: above its mmap threshold each
 * allocation is a fresh mapping whose every 4 KiB page faults on first write
 * (a 256 MiB decode paid ~1 s of faults on this project's VMs for a 17 ms
 * copy), and 4 KiB pages make even a warm copy slow (TLB misses).
 *
 * At HOSTMEM_BIG and above: mappings aligned to 2 MiB and advised as
 * transparent huge pages (where the kernel allows them), and the few most
 * recently released kept for reuse for HOSTMEM_KEEP_NS (jemalloc's decay,
 * simplified), so a consumer decoding values of like size reuses warm memory.
 * At most HOSTMEM_SLOTS mappings and HOSTMEM_KEEP_BYTES are kept: a release
 * that finds no room evicts the oldest kept (the newest is the likeliest to be
 * reused: a decode of 256 MiB after a few decodes of other sizes found the slots
 * full and paid its page faults again). What is evicted, what is bigger than
 * HOSTMEM_KEEP_BYTES and what is not reused in time goes back to the kernel.
 * Thread-safe.
 */
#ifndef SHMRIG_CODEC_HOSTMEM_H
#define SHMRIG_CODEC_HOSTMEM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define HOSTMEM_BIG ((size_t)2 << 20)
#define HOSTMEM_SLOTS 4
#define HOSTMEM_KEEP_BYTES ((size_t)1 << 30)
#define HOSTMEM_KEEP_NS (10 * 1000000000ll)

/* A mapping of at least `size` bytes (size >= HOSTMEM_BIG), zeroed if `zero`;
 * *cap is its length, to give back. NULL: out of memory (errno set). */
void *shmrig__hostmem_alloc(size_t size, bool zero, size_t *cap);
/* Give back what shmrig__hostmem_alloc returned. */
void shmrig__hostmem_free(void *base, size_t cap);
/* Unmap what was kept longer than HOSTMEM_KEEP_NS before `now_ns`
 * (CLOCK_MONOTONIC); every call above does it too. The mappings kept. */
unsigned shmrig__hostmem_trim(int64_t now_ns);

#endif
