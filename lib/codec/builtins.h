/* SPDX-License-Identifier: MIT */
#ifndef SHMRIG_BUILTINS_H
#define SHMRIG_BUILTINS_H

/* The built-in codecs (codecs.c), which plugin.c offers as the plugin "builtin". */

#include <shmrig/codec.h>

#include <stdint.h>

/* The built-in codecs in registration order ("ndarray", "table", "dataset",
 * "bytes"), `*count` of them: static, the library's own. */
const struct shmrig_codec *shmrig__builtin_codecs(uint32_t *count);

/* shmrig_decoder_alloc() without the zeroing: for a buffer filled whole (a
 * copy-out). */
void *shmrig__decoder_alloc_raw(struct shmrig_decoder *dec, size_t size);

#endif
