/* SPDX-License-Identifier: MIT */
/* placeholder: being written */
#include <shmrig/segment.h>
