/* SPDX-License-Identifier: MIT */
/*
 * liveness: pidfds and /proc/PID/stat, read so that only a fact the kernel
 * keeps makes a process dead (see liveness.h for the rules).
 */
#include "os/liveness.h"
#include "base/internal.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

/*
 * /proc/PID/stat is "pid (comm) state ppid ... flags ... num_threads ...
 * starttime ...": comm may hold spaces and parentheses, so parse from the last
 * ')'. Fields are numbered from 1 (pid) as in proc(5).
 */
#define STAT_FLAGS 9
#define STAT_NUM_THREADS 20
#define STAT_STARTTIME 22
#define PF_EXITING 0x4u /* the kernel's: set as exit begins, before the files close */

/* How long a process on its way out is waited for: its exit has begun and will
 * not come back, what is left (unmapping its memory, notifying its parent) is
 * kernel work that takes well under this. */
#define EXIT_WAIT_MS 100
/* Without pidfds, /proc is read again this often while we wait. */
#define PROC_POLL_NS 2000000L

struct proc_stat {
	pid_t pid; /* as the pid namespace of this /proc numbers the process */
	char state;
	unsigned long flags;
	unsigned long threads;
	uint64_t start;
};

/* What one read of /proc/PID/stat says of the process an identity names. */
enum seen {
	SEEN_GONE,    /* no such pid, or another process holds it now */
	SEEN_ERROR,   /* the read failed: EMFILE, ENOMEM, EACCES... */
	SEEN_RUNNING, /* ours, and not leaving (a zombie leader whose threads run is here) */
	SEEN_EXITING, /* ours, its last thread has begun to exit */
	SEEN_ZOMBIE,  /* ours, a zombie with no thread left */
};

struct self_cache {
	unsigned epoch; /* fork epoch of id (0: not read; epochs start at 1) */
	shmrig__procid id;
	bool proc_foreign; /* /proc belongs to another pid namespace */
	unsigned ns_epoch;
	uint32_t ns;
};

/* Per thread, so that no lock is needed: each thread reads /proc once per fork. */
static _Thread_local struct self_cache self_cache;

/* Set once pidfd_open() said ENOSYS (a kernel before 5.3, or valgrind 3.19):
 * then every later call goes to /proc at once, without a failing syscall. */
static atomic_bool no_pidfds;

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* 0, -ESRCH (no such process: the file is not there), or -errno of a failed read. */
static int read_stat(const char *path, struct proc_stat *st)
{
	char buf[1024], *p, *end;
	ssize_t n;
	int fd, err;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return errno == ENOENT || errno == ESRCH ? -ESRCH : -errno;
	do
		n = read(fd, buf, sizeof(buf) - 1);
	while (n < 0 && errno == EINTR);
	err = errno;
	close(fd);
	/* A process reaped between our open and our read: the read says ESRCH. */
	if (n < 0)
		return err == ESRCH ? -ESRCH : -err;
	if (n == 0)
		return -EIO;
	buf[n] = '\0';

	st->pid = (pid_t)strtol(buf, NULL, 10);
	p = strrchr(buf, ')');
	if (!p || p[1] != ' ' || !p[2])
		return -EIO;
	p += 2;
	st->state = *p;
	for (int field = 3; field < STAT_STARTTIME; field++) {
		p = strchr(p, ' ');
		if (!p)
			return -EIO;
		p++;
		if (field + 1 == STAT_FLAGS)
			st->flags = strtoul(p, NULL, 10);
		else if (field + 1 == STAT_NUM_THREADS)
			st->threads = strtoul(p, NULL, 10);
	}
	st->start = strtoull(p, &end, 10);
	return end == p ? -EIO : 0;
}

/* A pidfd for `pid`, or -errno: -ESRCH no process has that pid; -EINVAL it is
 * a thread, not a process; -ENOSYS no pidfds here; -EMFILE... */
static int open_pidfd(pid_t pid)
{
	int fd;

	if (atomic_load_explicit(&no_pidfds, memory_order_relaxed))
		return -ENOSYS;
	fd = (int)syscall(SYS_pidfd_open, pid, 0);
	if (fd >= 0)
		return fd;
	if (errno == ENOSYS)
		atomic_store_explicit(&no_pidfds, true, memory_order_relaxed);
	return -errno;
}

/*
 * Has the process of `pidfd` exited, its whole thread group (a pidfd polls
 * readable only then: not when the main thread alone ended)? Waits at most
 * timeout_ms. 1 yes, 0 not yet, -errno.
 */
static int pidfd_exited(int pidfd, int timeout_ms)
{
	int64_t start = now_ms();

	for (;;) {
		struct pollfd pfd = { .fd = pidfd, .events = POLLIN };
		int64_t left = start + timeout_ms - now_ms();
		int ready = poll(&pfd, 1, left > 0 ? (int)left : 0);

		if (ready > 0) {
			if (pfd.revents & POLLNVAL)
				return -EBADF;
			/* POLLIN: exited; POLLHUP (Linux 6.9+): also reaped */
			return (pfd.revents & (POLLIN | POLLHUP)) ? 1 : -EIO;
		}
		if (ready == 0)
			return 0;
		if (errno != EINTR)
			return -errno;
	}
}

int shmrig__self(shmrig__procid *id)
{
	unsigned epoch = shmrig__fork_epoch();
	struct proc_stat st;
	pid_t pid;
	int ret;

	if (SHMRIG_LIKELY(self_cache.epoch == epoch)) {
		*id = self_cache.id;
		return 0;
	}
	ret = read_stat("/proc/self/stat", &st);
	if (ret)
		return ret == -ESRCH ? -ENOENT : ret; /* no /proc, or we are not in it */
	pid = getpid();
	self_cache.id = shmrig__procid_make(pid, st.start);
	/* /proc/self is the caller as the pid namespace of that /proc numbers it.
	 * Another number than getpid() means /proc was mounted for another
	 * namespace (unshare --pid without --mount-proc): its /proc/PID are not
	 * the processes our pids name. The start time is the same in any. */
	self_cache.proc_foreign = st.pid != pid;
	self_cache.epoch = epoch;
	*id = self_cache.id;
	return 0;
}

int shmrig__self_pidns(uint32_t *ns)
{
	unsigned epoch = shmrig__fork_epoch();
	struct stat st;

	if (SHMRIG_LIKELY(self_cache.ns_epoch == epoch)) {
		*ns = self_cache.ns;
		return 0;
	}
	/* stat() opens no fd: this works at the fd limit too. The inode numbers
	 * of namespaces are 32-bit (proc_alloc_inum). */
	if (stat("/proc/self/ns/pid", &st))
		return -errno;
	self_cache.ns = (uint32_t)st.st_ino;
	self_cache.ns_epoch = epoch;
	*ns = self_cache.ns;
	return 0;
}

static enum seen look(shmrig__procid id)
{
	char path[64];
	struct proc_stat st;
	int ret;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)shmrig__procid_pid(id));
	ret = read_stat(path, &st);
	if (ret == -ESRCH)
		return SEEN_GONE;
	if (ret)
		return SEEN_ERROR;
	if ((uint32_t)st.start != (uint32_t)id)
		return SEEN_GONE;
	if (st.state == 'Z' || st.state == 'X')
		/* A zombie leader whose other threads run: its main thread called
		 * pthread_exit(), the process lives on. */
		return st.threads > 1 ? SEEN_RUNNING : SEEN_ZOMBIE;
	/* The last thread of a process that is exiting (killed, or exit()) will
	 * run no more code of its own: its sockets close while it still has a
	 * pid and is not yet a zombie, so a peer that sees EOF finds it here. */
	if ((st.flags & PF_EXITING) && st.threads == 1)
		return SEEN_EXITING;
	return SEEN_RUNNING;
}

static void sleep_poll_interval(void)
{
	struct timespec tick = { 0, PROC_POLL_NS };

	nanosleep(&tick, NULL);
}

/*
 * Without a pidfd: /proc alone, read again until timeout_ms has passed while
 * the process is on its way out (and, with wait_alive, while it runs).
 */
static enum shmrig__life proc_life(shmrig__procid id, int timeout_ms, bool wait_alive)
{
	int64_t start = now_ms();

	for (;;) {
		enum seen seen = look(id);
		bool time_left = now_ms() - start < timeout_ms;

		switch (seen) {
		case SEEN_GONE:
		case SEEN_ZOMBIE:
			return SHMRIG__DEAD;
		case SEEN_ERROR:
			return SHMRIG__UNKNOWN;
		case SEEN_RUNNING:
			if (!wait_alive || !time_left)
				return SHMRIG__ALIVE;
			break;
		case SEEN_EXITING:
			if (!time_left)
				return SHMRIG__UNKNOWN;
			break;
		}
		sleep_poll_interval();
	}
}

/* Can this process judge others at all? 0, or why not (-errno; -EXDEV: /proc
 * is another pid namespace's). */
static int can_judge(shmrig__procid *self)
{
	int ret = shmrig__self(self);

	if (ret)
		return ret;
	return self_cache.proc_foreign ? -EXDEV : 0;
}

enum shmrig__life shmrig__life_of(shmrig__procid id)
{
	pid_t pid = shmrig__procid_pid(id);
	enum shmrig__life life;
	shmrig__procid self;
	int pidfd, ret;

	if (pid <= 0)
		return SHMRIG__DEAD; /* no process has ever had it */
	ret = shmrig__self(&self);
	if (ret == 0 && id == self)
		return SHMRIG__ALIVE;
	/* Without our own entry, /proc itself is in doubt: an absent /proc
	 * would make every process look gone. */
	if (ret || self_cache.proc_foreign)
		return SHMRIG__UNKNOWN;

	pidfd = open_pidfd(pid);
	if (pidfd == -ESRCH)
		return SHMRIG__DEAD;
	if (pidfd == -ENOSYS || pidfd == -EINVAL) /* -EINVAL: the pid is a thread's now */
		return proc_life(id, EXIT_WAIT_MS, false);
	if (pidfd < 0)
		return SHMRIG__UNKNOWN; /* EMFILE, ENFILE, ENOMEM: /proc would fail as well */

	/*
	 * The pidfd was opened before /proc is read. If the start time read
	 * matches, the process `id` names existed at the read; it existed before
	 * this call too (someone recorded its identity), so it held the pid all
	 * through, also when the pidfd was opened: two processes never hold one
	 * pid at once, so the pidfd is bound to that very process, and its poll
	 * answers for it. Read the other way round, a process that died and whose
	 * pid was reused in between would give us a pidfd of the wrong process.
	 */
	switch (look(id)) {
	case SEEN_GONE:
		life = SHMRIG__DEAD;
		break;
	case SEEN_ERROR:
		/* Readable: whoever held the pid when we opened it has exited.
		 * Either it was `id`, or `id` had died before. */
		life = pidfd_exited(pidfd, 0) == 1 ? SHMRIG__DEAD : SHMRIG__UNKNOWN;
		break;
	case SEEN_RUNNING:
		life = SHMRIG__ALIVE;
		break;
	case SEEN_EXITING:
	case SEEN_ZOMBIE:
	default:
		life = pidfd_exited(pidfd, EXIT_WAIT_MS) == 1 ? SHMRIG__DEAD : SHMRIG__UNKNOWN;
		break;
	}
	close(pidfd);
	return life;
}

void shmrig__life_cache_init(struct shmrig__life_cache *cache)
{
	cache->count = 0;
}

enum shmrig__life shmrig__life_cached(struct shmrig__life_cache *cache, shmrig__procid id)
{
	enum shmrig__life life;

	for (uint32_t i = 0; i < cache->count; i++)
		if (cache->ids[i] == id)
			return (enum shmrig__life)cache->life[i];
	life = shmrig__life_of(id);
	if (cache->count < SHMRIG__LIFE_CACHE) {
		cache->ids[cache->count] = id;
		cache->life[cache->count] = (uint8_t)life;
		cache->count++;
	}
	return life;
}

int shmrig__watch_open(struct shmrig__watch *w, pid_t pid)
{
	shmrig__procid self;
	char path[64];
	struct proc_stat st;
	int pidfd, ret;

	w->id = 0;
	w->pidfd = -1;
	if (pid <= 0)
		return -ESRCH;
	ret = can_judge(&self);
	if (ret)
		return ret;
	pidfd = open_pidfd(pid);
	if (pidfd == -ESRCH || pidfd == -EINVAL) /* -EINVAL: a thread, not a process */
		return -ESRCH;
	if (pidfd < 0 && pidfd != -ENOSYS)
		return pidfd;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	ret = read_stat(path, &st);
	if (ret == 0 && (st.state == 'Z' || st.state == 'X') && st.threads <= 1)
		ret = -ESRCH; /* a zombie with no thread left */
	if (ret == 0 && (st.flags & PF_EXITING) && st.threads == 1)
		ret = -ESRCH; /* its exit has begun: it will never answer */
	/*
	 * Opened before the read and still not readable after it: the process
	 * the pidfd is bound to held the pid all through the read, so the start
	 * time read is its own. Readable: it died, and what we read may be a
	 * successor's.
	 */
	if (ret == 0 && pidfd >= 0) {
		ret = pidfd_exited(pidfd, 0);
		if (ret == 1)
			ret = -ESRCH;
	}
	if (ret) {
		if (pidfd >= 0)
			close(pidfd);
		return ret;
	}
	w->id = shmrig__procid_make(pid, st.start);
	w->pidfd = pidfd;
	return 0;
}

enum shmrig__life shmrig__watch_life(struct shmrig__watch *w, int timeout_ms)
{
	if (w->pidfd >= 0) {
		int exited = pidfd_exited(w->pidfd, timeout_ms);

		return exited == 1 ? SHMRIG__DEAD : exited == 0 ? SHMRIG__ALIVE : SHMRIG__UNKNOWN;
	}
	if (!w->id)
		return SHMRIG__UNKNOWN; /* never bound */
	return proc_life(w->id, timeout_ms, true);
}

void shmrig__watch_close(struct shmrig__watch *w)
{
	if (w->pidfd >= 0)
		close(w->pidfd);
	w->pidfd = -1;
}
