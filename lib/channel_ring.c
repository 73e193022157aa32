/* SPDX-License-Identifier: MIT */
/* placeholder: the "ring" backend is being written */
#include "channel_internal.h"
#include "internal.h"

#include <errno.h>

static int ring_pair_create(struct shmrig_channel_pair *pair)
{
	(void)pair;
	return shmrig__fail(-ENOTSUP, "channel: the ring backend is not built yet");
}

static void ring_pair_free(struct shmrig_channel_pair *pair)
{
	(void)pair;
}

const struct channel_ops shmrig__channel_ring = {
	.name = "ring",
	.pair_create = ring_pair_create,
	.pair_free = ring_pair_free,
};
