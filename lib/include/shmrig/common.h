/* SPDX-License-Identifier: MIT */
#ifndef SHMRIG_COMMON_H
#define SHMRIG_COMMON_H

/*
 * Conventions shared by every shmrig header.
 *
 * Every int-returning function returns 0 (or a count) on success and a negative
 * errno-style code on failure: -EINVAL, -ENOMEM, ... or one of the -SHMRIG_E*
 * codes below where errno has no fitting value. shmrig_strerror() turns any of
 * them into words; shmrig_last_error() says what exactly went wrong in the last
 * failing call of the calling thread.
 */

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(SHMRIG_BUILDING)
#define SHMRIG_API __attribute__((visibility("default")))
#else
#define SHMRIG_API
#endif

/*
 * On every function whose int result is an error code: a caller that drops it
 * hides a failure (a double free, a leak at close, a block that was never
 * handed over), and that is a bug the compiler can see. Ignore one on purpose
 * only where nothing could be done about it (best-effort cleanup after an
 * earlier error), and say so: GCC does not let a plain (void) cast silence
 * warn_unused_result (GCC bug 66425), so write `(void)!shmrig_pool_free(...)`.
 * (mimalloc's mi_decl_nodiscard.)
 */
#if defined(__GNUC__) || defined(__clang__)
#define SHMRIG_NODISCARD __attribute__((warn_unused_result))
#else
#define SHMRIG_NODISCARD
#endif

/* Library-specific error codes, returned negated. Above errno's range. */
enum {
	SHMRIG_EBASE = 4096,
	SHMRIG_ESTALE,   /* ref's generation does not match the block: it was freed */
	SHMRIG_ENOTLIVE, /* block is not allocated (double free, or a ref to a free block) */
	SHMRIG_EBADREF,  /* ref does not address a block of a valid segment */
	SHMRIG_ECORRUPT, /* shared metadata failed a consistency check */
	SHMRIG_ELEAK,    /* live blocks remained at close */
	SHMRIG_EFORK,    /* handle used by a process other than the one that opened it */
	SHMRIG_ECLAIMED, /* the block's references were claimed already (frame decoded twice) */
	SHMRIG_ELAST
};

/* Words for an error code (negative or positive). Never NULL. */
SHMRIG_API const char *shmrig_strerror(int err);

/*
 * What went wrong in the last failing call of this thread, in words, naming the
 * offending value where there is one. "" if nothing failed yet. The buffer is
 * thread-local and overwritten by the next failure.
 */
SHMRIG_API const char *shmrig_last_error(void);

#ifdef __cplusplus
}
#endif

#endif
