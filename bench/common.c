/* SPDX-License-Identifier: MIT */
/* What the suite files share: failing a benchmark, pinning, the seed's segment,
 * the round-trip histogram. */
#include "suite.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
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

/* ---- round-trip latencies ---- */

#define LAT_SUB_COUNT (1u << BENCH_LAT_SUB_BITS)

_Static_assert(BENCH_LAT_TOP_BITS < 64, "a shift by the top bits must stay in a uint64_t");

void bench_lat_init(struct bench_lat *lat)
{
	memset(lat, 0, sizeof(*lat));
}

/*
 * Bucket of ns (at most BENCH_LAT_MAX_NS): group 0 holds 0 .. 2^SUB_BITS - 1
 * one value a bucket; group g >= 1 holds [2^(g + SUB_BITS - 1), 2^(g + SUB_BITS))
 * in 2^SUB_BITS buckets of 2^(g - 1) values each.
 */
static unsigned lat_bucket(uint64_t ns)
{
	unsigned top, group;

	if (ns < LAT_SUB_COUNT)
		return (unsigned)ns;
	top = 63u - (unsigned)__builtin_clzll(ns); /* >= SUB_BITS */
	group = top - BENCH_LAT_SUB_BITS + 1;
	return (group << BENCH_LAT_SUB_BITS) + (unsigned)(ns >> (group - 1)) - LAT_SUB_COUNT;
}

/* The middle of a bucket's values, in ns. */
static double lat_bucket_middle(unsigned bucket)
{
	unsigned group = bucket >> BENCH_LAT_SUB_BITS, sub = bucket & (LAT_SUB_COUNT - 1);
	uint64_t lowest, width;

	if (group == 0)
		return sub;
	lowest = (uint64_t)(LAT_SUB_COUNT + sub) << (group - 1);
	width = (uint64_t)1 << (group - 1);
	return (double)lowest + (double)(width - 1) / 2;
}

void bench_lat_record(struct bench_lat *lat, uint64_t ns)
{
	if (ns > BENCH_LAT_MAX_NS) {
		ns = BENCH_LAT_MAX_NS;
		lat->clamped++;
	}
	lat->buckets[lat_bucket(ns)]++;
	lat->count++;
}

double bench_lat_percentile(const struct bench_lat *lat, double q)
{
	uint64_t rank, seen = 0;
	double wanted;

	if (!lat->count)
		return 0;
	/* the rank, ceil(q * count) within 1 .. count (a q outside (0, 1] is
	 * taken as the nearest end; NaN as 1) */
	wanted = q * (double)lat->count;
	if (!(wanted >= 1))
		rank = 1;
	else if (wanted >= (double)lat->count)
		rank = lat->count;
	else
		rank = (uint64_t)wanted + ((double)(uint64_t)wanted < wanted);
	for (unsigned b = 0; b < BENCH_LAT_BUCKETS; b++) {
		seen += lat->buckets[b];
		if (seen >= rank)
			return lat_bucket_middle(b);
	}
	/* buckets that add up to less than count (a peer's histogram): the highest used */
	for (unsigned b = BENCH_LAT_BUCKETS; b-- > 0;)
		if (lat->buckets[b])
			return lat_bucket_middle(b);
	return 0;
}

void bench_lat_counters(gbench_state *st, const struct bench_lat *lat)
{
	if (!lat->count)
		return;
	gbench_counter(st, "p50_us", bench_lat_percentile(lat, 0.50) / 1e3, 0);
	gbench_counter(st, "p99_us", bench_lat_percentile(lat, 0.99) / 1e3, 0);
}

double bench_lat_batch_end(struct bench_lat_batch *batch, struct bench_lat *lat)
{
	uint64_t end = bench_now_ns();
	unsigned marks = batch->marks;

	if (lat && marks && marks <= BENCH_LAT_BATCH_MAX) {
		/* the first round trip: from the start to the first mark, and from the
		 * last mark to the end (the time between batches is in neither) */
		bench_lat_record(lat, (batch->mark_ns[0] - batch->start_ns) +
					      (end - batch->mark_ns[marks - 1]));
		for (unsigned i = 1; i < marks; i++)
			bench_lat_record(lat, batch->mark_ns[i] - batch->mark_ns[i - 1]);
	}
	return (double)(end - batch->start_ns) * 1e-9;
}

/* ---- what UCX leaves in /dev/shm (suite.h) ---- */

int bench_ucx_dir_make(struct bench_ucx_dir *dir)
{
	snprintf(dir->path, sizeof(dir->path), "/dev/shm/shmrig-bench-ucx-XXXXXX");
	dir->made = mkdtemp(dir->path) != NULL;
	return dir->made ? 0 : -errno;
}

/* Remove what UCX left (failing the benchmark, naming it) and the directory. */
void bench_ucx_dir_check(gbench_state *st, struct bench_ucx_dir *dir)
{
	DIR *d;
	struct dirent *entry;
	char message[512];
	bool reported = false;

	if (!dir->made)
		return;
	d = opendir(dir->path);
	while (d && (entry = readdir(d)) != NULL) {
		if (strcmp(entry->d_name, ".") == 0 || strcmp(entry->d_name, "..") == 0)
			continue;
		if (!reported) {
			snprintf(message, sizeof(message), "failed: UCX left %s/%.200s", dir->path,
				 entry->d_name);
			gbench_skip(st, message);
			reported = true;
		}
		(void)!unlinkat(dirfd(d), entry->d_name, 0);
	}
	if (d)
		closedir(d);
	rmdir(dir->path);
	dir->made = false;
}
