/* SPDX-License-Identifier: MIT */
#include "prim.h"
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <mntent.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <linux/futex.h>
#include <linux/membarrier.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

/*
 * /proc/PID/stat is "pid (comm) state ppid ... starttime ...": comm may hold
 * spaces and parentheses, so parse from the last ')'. starttime is field 22,
 * i.e. the 20th after the state field.
 */
#define STAT_FLAGS 9
#define STAT_NUM_THREADS 20
#define STAT_STARTTIME 22
#define PF_EXITING 0x4u /* the kernel's: set as exit begins, before the files close */

static int read_stat(pid_t pid, char *state, uint64_t *start, bool *exiting)
{
	unsigned long flags = 0, threads = 0;
	char path[64], buf[1024];
	ssize_t n;
	int fd;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return errno == ENOENT ? -ESRCH : -errno;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return -ESRCH;
	buf[n] = '\0';

	char *p = strrchr(buf, ')');
	if (!p || p[1] != ' ')
		return -EIO;
	p += 2;
	*state = *p;
	for (int field = 3; field < STAT_STARTTIME; field++) {
		p = strchr(p, ' ');
		if (!p)
			return -EIO;
		p++;
		if (field + 1 == STAT_FLAGS)
			flags = strtoul(p, NULL, 10);
		else if (field + 1 == STAT_NUM_THREADS)
			threads = strtoul(p, NULL, 10);
	}
	*start = strtoull(p, NULL, 10);
	/* The last thread of a process that is exiting (killed, or exit()) has
	 * run its last instruction: its sockets close while it still has a pid
	 * and is not yet a zombie, so a peer that sees EOF must see it dead. */
	*exiting = (flags & PF_EXITING) && threads == 1;
	return 0;
}

int shmrig__proc_start_time(pid_t pid, uint64_t *start)
{
	char state;
	bool exiting;
	int ret;

	if (pid <= 0)
		return -ESRCH;
	ret = read_stat(pid, &state, start, &exiting);
	if (ret)
		return ret;
	/* A zombie has released everything it had, one exiting will hold
	 * nothing new: to us both are dead. */
	if (state == 'Z' || state == 'X' || exiting)
		return -ESRCH;
	return 0;
}

int shmrig__procid_of(pid_t pid, shmrig__procid *out)
{
	uint64_t start;
	int ret = shmrig__proc_start_time(pid, &start);

	if (ret)
		return ret;
	*out = shmrig__procid_make(pid, start);
	return 0;
}

static unsigned fork_epoch = 1;

static void bump_fork_epoch(void)
{
	__atomic_add_fetch(&fork_epoch, 1, __ATOMIC_RELAXED);
}

__attribute__((constructor)) static void register_atfork(void)
{
	pthread_atfork(NULL, NULL, bump_fork_epoch);
}

unsigned shmrig__fork_epoch(void)
{
	return __atomic_load_n(&fork_epoch, __ATOMIC_RELAXED);
}

shmrig__procid shmrig__procid_self(void)
{
	static _Thread_local unsigned cached_epoch;
	static _Thread_local shmrig__procid cached_id;
	unsigned epoch = shmrig__fork_epoch();
	pid_t pid;

	if (SHMRIG_LIKELY(cached_epoch == epoch))
		return cached_id;
	pid = getpid();
	if (shmrig__procid_of(pid, &cached_id))
		cached_id = shmrig__procid_make(pid, 0);
	cached_epoch = epoch;
	return cached_id;
}

bool shmrig__proc_alive(shmrig__procid id)
{
	uint64_t start;

	if (shmrig__proc_start_time(shmrig__procid_pid(id), &start))
		return false;
	return (uint32_t)start == (uint32_t)id;
}

int shmrig__random(void *buf, size_t len)
{
	unsigned char *p = buf;

	while (len) {
		ssize_t n = getrandom(p, len, 0);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

size_t shmrig__page_size(void)
{
	static size_t page;

	if (!page)
		page = (size_t)sysconf(_SC_PAGESIZE);
	return page;
}

long shmrig__hugepages_free(unsigned long page_kb)
{
	char path[128];
	long count;
	FILE *f;

	snprintf(path, sizeof(path), "/sys/kernel/mm/hugepages/hugepages-%lukB/free_hugepages",
		 page_kb);
	f = fopen(path, "re");
	if (!f)
		return -errno;
	if (fscanf(f, "%ld", &count) != 1)
		count = -EIO;
	fclose(f);
	return count;
}

int shmrig__hugetlbfs_dir(unsigned long page_kb, char *dir, size_t dirlen)
{
	const char *env = getenv("SHMRIG_HUGETLBFS");
	struct mntent ent;
	char buf[1024];
	int ret = -ENOENT;
	FILE *f;

	if (env && *env) {
		if (strlen(env) >= dirlen)
			return -ENAMETOOLONG;
		strcpy(dir, env);
		return 0;
	}
	f = setmntent("/proc/mounts", "re");
	if (!f)
		return -errno;
	while (getmntent_r(f, &ent, buf, sizeof(buf))) {
		unsigned long kb = 2048; /* hugetlbfs without pagesize= uses the default size */
		const char *opt;

		if (strcmp(ent.mnt_type, "hugetlbfs") != 0)
			continue;
		opt = hasmntopt(&ent, "pagesize");
		if (opt) {
			char unit = 'K';

			if (sscanf(opt, "pagesize=%lu%c", &kb, &unit) >= 1) {
				if (unit == 'M' || unit == 'm')
					kb *= 1024;
				else if (unit == 'G' || unit == 'g')
					kb *= 1024 * 1024;
			}
		}
		if (kb != page_kb || strlen(ent.mnt_dir) >= dirlen)
			continue;
		strcpy(dir, ent.mnt_dir);
		ret = 0;
		break;
	}
	endmntent(f);
	return ret;
}

int shmrig__futex_wait(_Atomic uint32_t *word, uint32_t expected, int timeout_ms)
{
	struct timespec rel = { timeout_ms / 1000, (long)(timeout_ms % 1000) * 1000000 };

	/* Not FUTEX_PRIVATE_FLAG: the word lives in memory shared with another
	 * process, and a private futex is keyed by this process's address space. */
	if (syscall(SYS_futex, word, FUTEX_WAIT, expected, &rel, NULL, 0) == 0)
		return 0;
	if (errno == EAGAIN || errno == ETIMEDOUT || errno == EINTR)
		return 0;
	return -errno;
}

void shmrig__futex_wake(_Atomic uint32_t *word, int waiters)
{
	syscall(SYS_futex, word, FUTEX_WAKE, waiters, NULL, NULL, 0);
}

void shmrig__lock_wait(shmrig__lock *lock)
{
	/* Mark it contended; whoever gives it back wakes one of us. */
	while (atomic_exchange_explicit(&lock->word, 2, memory_order_acquire) != 0)
		shmrig__futex_wait(&lock->word, 2, 1000);
}

int shmrig__membarrier_register(void)
{
	if (syscall(SYS_membarrier, MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED, 0, 0) != 0)
		return -errno;
	return 0;
}

void shmrig__membarrier(void)
{
	/* Registered at pool open, so this cannot fail but for a broken kernel;
	 * then a full barrier of our own is the best left to do. */
	if (syscall(SYS_membarrier, MEMBARRIER_CMD_PRIVATE_EXPEDITED, 0, 0) != 0)
		atomic_thread_fence(memory_order_seq_cst);
}
