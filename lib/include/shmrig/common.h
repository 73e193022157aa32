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

/*
 * ABI: how structs grow. One rule for every struct the API takes or fills by
 * pointer and that may grow: it begins with `uint32_t size`, the sizeof the
 * struct had where it was filled. Start every such struct with
 *
 *     struct shmrig_pool_opts po = SHMRIG_SIZED(struct shmrig_pool_opts);
 *
 * (every field zero, which is its default, and size set), then set the fields
 * you need; in an initialiser, `.size = sizeof(struct shmrig_pool_opts)` does
 * the same. Fields are only ever added at the end, at or past the old sizeof
 * (never into padding), and a new field's zero means what the library did
 * before it existed. So a program built against older or newer headers than
 * the library it runs with keeps working:
 *
 * - Inputs (options, vtables you register: shmrig_pool_opts,
 *   shmrig_segment_opts, shmrig_channel_opts, shmrig_session_opts,
 *   shmrig_codec, shmrig_topo_binder): the library reads min(size, its
 *   sizeof) bytes into a zeroed copy of its own and uses only that copy, so a
 *   field past an older caller's size reads as 0, its default. size < 8 is
 *   -EINVAL (0: "size not set: use SHMRIG_SIZED()"). A size above the
 *   library's sizeof (a newer caller) is accepted if every byte past the
 *   library's sizeof is 0; a non-zero one is -E2BIG (the caller asks for
 *   something this library does not know; the message names the struct and
 *   the offset). A size above SHMRIG_SIZED_MAX is -E2BIG (the read is bounded).
 * - Outputs (shmrig_pool_stats, shmrig_pool_info, shmrig_session_stats): the
 *   caller sets size; the library writes min(size, its sizeof) bytes, zeroes
 *   the caller's bytes past its sizeof up to size, and sets size to the bytes
 *   it filled, min(size, its sizeof): a newer caller sees with
 *   SHMRIG_HAS_FIELD() which fields an older library filled. size < 8 is
 *   -EINVAL, above SHMRIG_SIZED_MAX -E2BIG (the write is bounded).
 * - Arrays of outputs (shmrig_pool_class_stats[], shmrig_owner_stats[]): the
 *   caller sets size in the first element only; elements are that many bytes
 *   apart (the stride), and each element the call fills is written as an
 *   output above, its own size set: the bytes between two elements (past the
 *   library's sizeof) are zeroed; elements past those filled are untouched.
 * - Structs the library fills and hands to your code (shmrig_block_info to a
 *   shmrig_pool_for_each_live() callback, shmrig_handler_call to a handler):
 *   size is the library's sizeof; code built against newer headers tests a
 *   field with SHMRIG_HAS_FIELD(ptr, type, field) before reading it.
 *
 * A pointer inside such a struct to another one (shmrig_session_opts'
 * channel and worker_pool) carries its own size.
 *
 * Frozen: data and wire records change only with SHMRIG_VERSION_MAJOR (their
 * sizes and offsets are static asserts): struct shmrig_ref (the 96-byte wire
 * record of a block), shmrig_frame_header (24 bytes), shmrig_frame (a view of
 * a parsed header), and struct shmrig_value with its parts shmrig_array,
 * shmrig_named_array, shmrig_table, shmrig_group, shmrig_dataset.
 */
#define SHMRIG_SIZED(type) ((type){ .size = sizeof(type) })
/* Does the struct at ptr (of type `type`, as the reader was built) hold `field`? */
#define SHMRIG_HAS_FIELD(ptr, type, field) \
	(offsetof(type, field) + sizeof(((type *)0)->field) <= (ptr)->size)
/* The largest size a sized struct may say (what the library reads or writes at most). */
#define SHMRIG_SIZED_MAX 4096u

/* Library-specific error codes, returned negated. Above errno's range. */
enum {
	SHMRIG_EBASE = 4096,
	SHMRIG_ESTALE,   /* ref's generation does not match the block: it was freed */
	SHMRIG_ENOTLIVE, /* block is not allocated (a ref of its generation to a free block) */
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
