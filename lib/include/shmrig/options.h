/* SPDX-License-Identifier: MIT */
#ifndef SHMRIG_OPTIONS_H
#define SHMRIG_OPTIONS_H

/*
 * Options: every options struct in shmrig means "defaults" when zeroed. A field
 * left zero takes the value of the environment variable SHMRIG_<NAME> if set and
 * valid, else the built-in default; a value set through the API always wins. A
 * bad environment value warns once and keeps the default.
 */

#include <shmrig/common.h>

#ifdef __cplusplus
extern "C" {
#endif

/*
 * Parse a size: a decimal number with an optional K, M or G suffix (powers of
 * 1024, optionally followed by "iB" or "B"). Errors: -EINVAL not a size,
 * -ERANGE too large for size_t.
 */
SHMRIG_API int shmrig_parse_size(const char *text, size_t *out);

#ifdef __cplusplus
}
#endif

#endif
