/* SPDX-License-Identifier: MIT */
/* What the suite files share: failing a benchmark, pinning, the seed's segment. */
#include "suite.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <shmrig/shmrig.h>

void bench_fail(gbench_state *st, const char *what, int err)
{
	char message[512];

	snprintf(message, sizeof(message), "failed: %s: %s (%s)", what, shmrig_strerror(err),
		 shmrig_last_error());
	gbench_skip(st, message);
}

void bench_unavailable(gbench_state *st, const char *why)
{
	char message[512];

	snprintf(message, sizeof(message), "skipped: %s", why);
	gbench_skip(st, message);
}

void bench_fail_os(gbench_state *st, const char *what, int err)
{
	char message[512];

	snprintf(message, sizeof(message), "failed: %s: %s", what, strerror(-err));
	gbench_skip(st, message);
}

int bench_pin_cpu_index(int index)
{
	shmrig_topo *topo = shmrig_topo_system();
	int cpu;

	if (!topo)
		return -ENODEV;
	cpu = shmrig_topo_cpu_os_index(topo, index % shmrig_topo_num_cpus(topo));
	if (cpu < 0)
		return cpu;
	return shmrig_topo_bind_thread(topo, cpu);
}

bool bench_pin(gbench_state *st)
{
	int ret = bench_pin_cpu_index(0);

	if (ret)
		bench_fail(st, "pin the benchmark thread to the first CPU", ret);
	return ret == 0;
}

int bench_seed_segment(const char *tag, size_t size, const void *src, unsigned long serial)
{
	size_t page = (size_t)sysconf(_SC_PAGESIZE);
	char name[64];
	char *p;
	int fd, ret = 0;

	snprintf(name, sizeof(name), "/shmrigbench-%s-%d-%lu", tag, (int)getpid(), serial);
	fd = shm_open(name, O_CREAT | O_EXCL | O_RDWR | O_CLOEXEC, 0600);
	if (fd < 0)
		return -errno;
	if (ftruncate(fd, (off_t)size)) {
		ret = -errno;
		goto out;
	}
	p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (p == MAP_FAILED) {
		ret = -errno;
		goto out;
	}
	if (src)
		memcpy(p, src, size);
	else
		for (size_t off = 0; off < size; off += page)
			p[off] = 1;
	bench_escape(p);
	munmap(p, size);
out:
	close(fd);
	shm_unlink(name);
	return ret;
}

#define SELF_CPU 0 /* topology index of the caller's CPU */
#define PEER_CPU 1 /* and of the peer's */

bool bench_pin_start(gbench_state *st, struct bench_pinning *pin)
{
	int ret;

	pin->topo = shmrig_topo_system();
	if (!pin->topo) {
		bench_fail(st, "no topology", -ENODEV);
		return false;
	}
	if (shmrig_topo_num_cpus(pin->topo) < 2) {
		bench_unavailable(st, "needs 2 CPUs, to pin the peer on another CPU than the "
				      "caller; this machine has 1");
		return false;
	}
	pin->self_cpu = shmrig_topo_cpu_os_index(pin->topo, SELF_CPU);
	pin->peer_cpu = shmrig_topo_cpu_os_index(pin->topo, PEER_CPU);
	if (sched_getaffinity(0, sizeof(pin->saved), &pin->saved)) {
		bench_fail_os(st, "sched_getaffinity", -errno);
		return false;
	}
	ret = shmrig_topo_bind_thread(pin->topo, pin->self_cpu);
	if (ret) {
		bench_fail(st, "cannot pin the caller on CPU 0", ret);
		return false;
	}
	return true;
}

void bench_pin_end(struct bench_pinning *pin)
{
	sched_setaffinity(0, sizeof(pin->saved), &pin->saved);
}

int bench_reap_child(pid_t pid)
{
	struct timespec tick = { .tv_nsec = 1000000 };
	int status;

	for (int waited_ms = 0; waited_ms < BENCH_PEER_TIMEOUT_MS; waited_ms++) {
		pid_t got = waitpid(pid, &status, WNOHANG);

		if (got == pid)
			return status;
		if (got < 0 && errno != EINTR)
			return -1;
		nanosleep(&tick, NULL);
	}
	kill(pid, SIGKILL);
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	return -1;
}

void bench_check_peer_exit(gbench_state *st, pid_t pid)
{
	char message[512];
	int status = bench_reap_child(pid);

	if (status >= 0 && WIFEXITED(status) && WEXITSTATUS(status) == 0)
		return;
	if (status < 0)
		snprintf(message, sizeof(message), "failed: peer %d did not end in time: killed",
			 (int)pid);
	else if (WIFSIGNALED(status))
		snprintf(message, sizeof(message), "failed: peer %d killed by signal %d", (int)pid,
			 WTERMSIG(status));
	else
		snprintf(message, sizeof(message), "failed: peer %d exited with %d", (int)pid,
			 WEXITSTATUS(status));
	gbench_skip(st, message);
}

int bench_write_all(int fd, const void *buf, size_t len)
{
	const char *p = buf;

	while (len) {
		ssize_t n = write(fd, p, len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

int bench_read_all(int fd, void *buf, size_t len, int timeout_ms)
{
	char *p = buf;

	while (len) {
		ssize_t n;

		if (timeout_ms >= 0) {
			struct pollfd in = { .fd = fd, .events = POLLIN };
			int ready = poll(&in, 1, timeout_ms);

			if (ready < 0 && errno == EINTR)
				continue;
			if (ready < 0)
				return -errno;
			if (ready == 0)
				return -ETIMEDOUT;
		}
		n = read(fd, p, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (n == 0)
			return -EPIPE;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}
