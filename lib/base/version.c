/* SPDX-License-Identifier: MIT */
#include "base/internal.h"

#include <shmrig/version.h>

void shmrig_version(int *major, int *minor, int *patch)
{
	if (major)
		*major = SHMRIG_VERSION_MAJOR;
	if (minor)
		*minor = SHMRIG_VERSION_MINOR;
	if (patch)
		*patch = SHMRIG_VERSION_PATCH;
}

bool shmrig_check_version(int major, int minor)
{
	return SHMRIG_VERSION_MAJOR > major ||
	       (SHMRIG_VERSION_MAJOR == major && SHMRIG_VERSION_MINOR >= minor);
}
