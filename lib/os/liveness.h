/* SPDX-License-Identifier: MIT */
#ifndef SHMRIG_LIVENESS_H
#define SHMRIG_LIVENESS_H

/*
 * liveness: is a process alive? Three answers, and only "dead" may reclaim
 * what it held.
 *
 * Death is decided by a fact the kernel keeps, never by a failed read:
 * - no process has the pid any more (pidfd_open or /proc say ESRCH/ENOENT), or
 *   the pid is held by a process with another start time (the owner's pid was
 *   reused), or
 * - a pidfd bound to the process polls readable: its whole thread group is
 *   gone (a main thread that called pthread_exit() while others run is not).
 * Anything else that fails (EMFILE, ENFILE, ENOMEM, EACCES, a /proc that
 * belongs to another pid namespace) is "unknown".
 *
 * Identities are pid + start time in the pid namespace of the caller; two
 * processes can judge each other only inside one pid namespace (segment names
 * carry the creator's namespace, see segment.c).
 */

#include "os/prim.h"

#include <stdint.h>
#include <sys/types.h>

enum shmrig__life {
	SHMRIG__ALIVE = 1,
	SHMRIG__DEAD = 2,
	SHMRIG__UNKNOWN = 3,
};

/*
 * This process's identity (pid + start time from /proc/self/stat). Read once
 * per fork epoch and cached; until it has been read, every call tries again.
 * 0, or -errno (-EMFILE, -ENFILE, -EACCES...) when it cannot be read: callers
 * fail with that error. An identity never silently degrades (no start time 0).
 */
int shmrig__self(shmrig__procid *id);

/* The low 32 bits of the inode of this process's pid namespace
 * (/proc/self/ns/pid), cached like shmrig__self(). 0 or -errno. */
int shmrig__self_pidns(uint32_t *ns);

/*
 * One answer about the process `id`, now. The caller's own identity is always
 * alive. A process on its way out (exiting, or a zombie whose threads are
 * gone) is waited for on its pidfd for a bounded time (at most ~100 ms), so a
 * peer seen to close its end a moment ago is dead, not unknown.
 */
enum shmrig__life shmrig__life_of(shmrig__procid id);

/*
 * The answers of one walk (reap): each owner is asked once, then remembered.
 * Bounded memory: at most SHMRIG__LIFE_CACHE owners are remembered; beyond
 * that, life_of is asked again (correct, only slower).
 */
#define SHMRIG__LIFE_CACHE 256
struct shmrig__life_cache {
	uint32_t count;
	shmrig__procid ids[SHMRIG__LIFE_CACHE];
	uint8_t life[SHMRIG__LIFE_CACHE];
};

void shmrig__life_cache_init(struct shmrig__life_cache *cache);
enum shmrig__life shmrig__life_cached(struct shmrig__life_cache *cache, shmrig__procid id);

/*
 * A peer watched for its whole life (a channel's other end, a session's
 * worker): its identity is read once, with a pidfd opened first, so later
 * questions cost one poll() and no /proc read.
 */
struct shmrig__watch {
	shmrig__procid id;
	int pidfd; /* -1 without pidfds (then /proc is read each time) */
};

/* Bind `w` to the process `pid` as it is now. 0; -ESRCH no such live process;
 * other -errno: could not tell (nothing is held then). */
int shmrig__watch_open(struct shmrig__watch *w, pid_t pid);

/* Wait at most timeout_ms (0: just look) for the peer's death. */
enum shmrig__life shmrig__watch_life(struct shmrig__watch *w, int timeout_ms);

/* Close the pidfd. Safe after a failed watch_open and twice (it leaves pidfd -1). */
void shmrig__watch_close(struct shmrig__watch *w);

#endif
