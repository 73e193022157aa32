/* SPDX-License-Identifier: MIT */
#ifndef SHMRIG_H
#define SHMRIG_H

#include <shmrig/channel.h>
#include <shmrig/codec.h>
#include <shmrig/common.h>
#include <shmrig/frame.h>
#include <shmrig/options.h>
#include <shmrig/plugin.h>
#include <shmrig/pool.h>
#include <shmrig/registry.h>
#include <shmrig/segment.h>
#include <shmrig/session.h>
#include <shmrig/topo.h>
#include <shmrig/value.h>
#include <shmrig/version.h>

#endif
