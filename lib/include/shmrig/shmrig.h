/* SPDX-License-Identifier: MIT */
#ifndef SHMRIG_H
#define SHMRIG_H

#include <shmrig/common.h>
#include <shmrig/options.h>
#include <shmrig/pool.h>
#include <shmrig/segment.h>
#include <shmrig/topo.h>

#endif
