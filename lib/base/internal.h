/* SPDX-License-Identifier: MIT */
#ifndef SHMRIG_INTERNAL_H
#define SHMRIG_INTERNAL_H

/* Cross-file internals of libshmrig. Not installed. */

#include <shmrig/common.h>

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

/* malloc's memory suits any fundamental type (C11 7.22.3): 8-aligned buffers
 * (messages, frames) are plain malloc, not aligned_alloc (a layer more in
 * glibc, ~30 instructions a call). */
_Static_assert(_Alignof(max_align_t) >= 8, "malloc returns 8-aligned memory");

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

/*
 * The growth rule of sized structs (shmrig/common.h, "ABI: how structs grow"),
 * in this one place. `what` names the call and the struct in messages
 * ("pool_open: struct shmrig_pool_opts").
 *
 * sized_in: copy the caller's input struct `user` (non-NULL) into `local`
 * (local_size bytes, the library's sizeof): zeroed first, then min(size,
 * local_size) bytes, and local's size set to local_size (so the copy can be
 * handed on). 0; -EINVAL size < 8; -E2BIG size > SHMRIG_SIZED_MAX or a
 * non-zero byte past local_size.
 *
 * sized_out: write `local` to the caller's output struct `user` (non-NULL):
 * min(size, local_size) bytes, the caller's bytes from local_size to size
 * zeroed, user's size set to min(size, local_size). 0; -EINVAL size < 8;
 * -E2BIG size > SHMRIG_SIZED_MAX.
 *
 * sized_stride + sized_put, for arrays: the stride is the first element's
 * size (checked as sized_out's); sized_put writes one element at `user`
 * as sized_out does, given the stride.
 */
int shmrig__sized_in(void *local, size_t local_size, const void *user, const char *what);
int shmrig__sized_out(void *user, const void *local, size_t local_size, const char *what);
int shmrig__sized_stride(const void *first, const char *what, size_t *stride);
void shmrig__sized_put(void *user, size_t stride, const void *local, size_t local_size);

/* Option lookup (see shmrig/options.h): the API value if non-zero, else the
 * environment variable if valid (a size: 1..max), else the fallback. */
size_t shmrig__option_size(size_t api_value, const char *env_name, size_t fallback,
			    size_t max);
const char *shmrig__option_string(const char *api_value, const char *env_name,
				  const char *fallback);

/* A name of codecs, handlers, user types: 1..max_len of [A-Za-z0-9_.-]. */
bool shmrig__valid_name(const char *name, size_t max_len);

/* 0 if `prefix` is a valid segment name prefix, else -EINVAL with a message. */
int shmrig__check_prefix(const char *prefix);

#endif
