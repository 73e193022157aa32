/* SPDX-License-Identifier: MIT */
/*
 * sized: the one implementation of the growth rule of sized structs
 * (shmrig/common.h, "ABI: how structs grow"). Every call that takes or fills
 * such a struct goes through here; none checks a size of its own.
 */
#include "base/internal.h"

#include <errno.h>
#include <string.h>

/* Every sized struct begins with its uint32_t size; the rule needs 8 bytes. */
#define SIZED_MIN 8u

static uint32_t size_of(const void *user)
{
	uint32_t size;

	memcpy(&size, user, sizeof(size));
	return size;
}

static int check_size(uint32_t size, const char *what)
{
	if (size == 0)
		return shmrig__fail(-EINVAL, "%s: size not set: use SHMRIG_SIZED()", what);
	if (size < SIZED_MIN)
		return shmrig__fail(-EINVAL, "%s: size %u is below %u", what, size, SIZED_MIN);
	if (size > SHMRIG_SIZED_MAX)
		return shmrig__fail(-E2BIG, "%s: size %u is above %u (SHMRIG_SIZED_MAX)", what,
				    size, SHMRIG_SIZED_MAX);
	return 0;
}

int shmrig__sized_in(void *local, size_t local_size, const void *user, const char *what)
{
	uint32_t size = size_of(user), own = (uint32_t)local_size;
	const unsigned char *bytes = user;
	int ret = check_size(size, what);

	if (ret)
		return ret;
	/* A newer caller's fields past ours must all be zero (their defaults):
	 * anything else asks for something this library cannot do. */
	for (uint32_t i = own; i < size; i++)
		if (bytes[i])
			return shmrig__fail(-E2BIG,
					    "%s: byte %u of %u is not zero, and this library knows "
					    "only the first %u bytes (the caller asks for something "
					    "it does not have)",
					    what, i, size, own);
	memset(local, 0, local_size);
	memcpy(local, user, size < own ? size : own);
	memcpy(local, &own, sizeof(own));
	return 0;
}

void shmrig__sized_put(void *user, size_t stride, const void *local, size_t local_size)
{
	uint32_t filled = (uint32_t)(stride < local_size ? stride : local_size);

	memcpy(user, local, filled);
	if (stride > local_size)
		memset((char *)user + local_size, 0, stride - local_size);
	memcpy(user, &filled, sizeof(filled));
}

int shmrig__sized_stride(const void *first, const char *what, size_t *stride)
{
	uint32_t size = size_of(first);
	int ret = check_size(size, what);

	if (ret)
		return ret;
	*stride = size;
	return 0;
}

int shmrig__sized_out(void *user, const void *local, size_t local_size, const char *what)
{
	size_t size;
	int ret = shmrig__sized_stride(user, what, &size);

	if (ret)
		return ret;
	shmrig__sized_put(user, size, local, local_size);
	return 0;
}
