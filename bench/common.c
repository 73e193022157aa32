/* SPDX-License-Identifier: MIT */
/* What the suite files share: failing a benchmark, pinning, the seed's segment. */
#include "suite.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
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
