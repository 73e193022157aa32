/* SPDX-License-Identifier: MIT */
/* placeholder: the "uring" backend is being written */
#include "channel_internal.h"
#include "internal.h"

#include <errno.h>

static int uring_pair_create(struct shmrig_channel_pair *pair)
{
	(void)pair;
	return shmrig__fail(-ENOTSUP, "channel: the uring backend is not built yet");
}

static void uring_pair_free(struct shmrig_channel_pair *pair)
{
	(void)pair;
}

const struct channel_ops shmrig__channel_uring = {
	.name = "uring",
	.pair_create = uring_pair_create,
	.pair_free = uring_pair_free,
};
