/* SPDX-License-Identifier: MIT */
#ifndef SHMRIG_OPTIONS_H
#define SHMRIG_OPTIONS_H

/*
 * Options: every options struct in shmrig means "defaults" when made with
 * SHMRIG_SIZED() (size set, every field zero; shmrig/common.h). A field
 * left zero takes the value of the environment variable SHMRIG_<NAME> if set and
 * valid, else the built-in default; a value set through the API always wins.
 *
 * A bad value is treated by where it comes from:
 * - from the environment (not a size, a size of 0, a size above the field's
 *   limit such as SHMRIG_ARENA_SIZE above 1 GiB, a SHMRIG_PREFIX with other
 *   characters than [A-Za-z0-9_.] or more than SHMRIG_PREFIX_MAX): one warning
 *   on stderr per variable and process ("shmrig: warning: SHMRIG_ARENA_SIZE='2G'
 *   is above ..."), and the built-in default is used; the call goes on;
 * - through the API (an options field): the call fails with -EINVAL and says
 *   why in shmrig_last_error(); nothing is clamped.
 */

#include <shmrig/common.h>

/* Longest segment name, including the terminating NUL. */
#define SHMRIG_NAME_MAX 64
/* Longest prefix (without NUL). Prefixes use [A-Za-z0-9_.] only. */
#define SHMRIG_PREFIX_MAX 24
/* Prefix when neither the API nor $SHMRIG_PREFIX gives one. */
#define SHMRIG_DEFAULT_PREFIX "shmrig"

#ifdef __cplusplus
extern "C" {
#endif

/*
 * Parse a size: a decimal number with an optional K, M or G suffix (powers of
 * 1024, optionally followed by "iB" or "B"). Errors: -EINVAL not a size,
 * -ERANGE too large for size_t.
 */
SHMRIG_NODISCARD SHMRIG_API int shmrig_parse_size(const char *text, size_t *out);

#ifdef __cplusplus
}
#endif

#endif
