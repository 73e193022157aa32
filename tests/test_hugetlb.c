/* SPDX-License-Identifier: MIT */
/*
 * The hugetlb path for real: reserves 2 MiB hugepages (and mounts a hugetlbfs if
 * none is), so it needs root and runs alone (is_parallel: false in meson).
 * Whatever happens, the old reservation is restored: in the group teardown, at
 * exit, and on SIGTERM/SIGINT (meson's timeout).
 */
#include "helpers.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <mntent.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <shmrig/pool.h>
#include <shmrig/segment.h>

#define RESERVE 8
#define CHILD_TIMEOUT_MS 60000
#define NR_HUGEPAGES "/proc/sys/vm/nr_hugepages"

/* What main() changed, to be undone by restore(). */
static pid_t main_pid;
static long old_nr_hugepages = -1;
static char mount_dir[PATH_MAX];

static long read_long(const char *path)
{
	char buf[32];
	ssize_t n;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return -errno;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return -EIO;
	buf[n] = '\0';
	return strtol(buf, NULL, 10);
}

/* Only open/write/close: restore() also runs from a signal handler. */
static int write_long(const char *path, long value)
{
	char buf[32], *p = buf + sizeof(buf);
	unsigned long v = (unsigned long)value;
	ssize_t n;
	int fd;

	do
		*--p = (char)('0' + v % 10);
	while (v /= 10);
	fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	n = write(fd, p, (size_t)(buf + sizeof(buf) - p));
	if (n < 0)
		n = -errno;
	close(fd);
	return n < 0 ? (int)n : 0;
}

static long free_hugepages(void)
{
	return read_long(FREE_HUGEPAGES);
}

/* Undo main()'s changes; idempotent, async-signal-safe, a no-op in children. */
static void restore(void)
{
	if (getpid() != main_pid)
		return;
	if (old_nr_hugepages >= 0 && write_long(NR_HUGEPAGES, old_nr_hugepages) == 0)
		old_nr_hugepages = -1;
	if (mount_dir[0] && (umount(mount_dir) == 0 || umount2(mount_dir, MNT_DETACH) == 0)) {
		rmdir(mount_dir);
		mount_dir[0] = '\0';
	}
}

static void on_signal(int sig)
{
	restore();
	signal(sig, SIG_DFL);
	raise(sig);
}

/* Is a hugetlbfs with 2 MiB pages mounted (the one the library would find)? */
static bool hugetlbfs_2m_mounted(char *dir, size_t len)
{
	struct mntent ent;
	char buf[1024];
	bool found = false;
	FILE *f = setmntent("/proc/mounts", "re");

	if (!f)
		return false;
	while (!found && getmntent_r(f, &ent, buf, sizeof(buf))) {
		char *opt = hasmntopt(&ent, "pagesize");

		if (strcmp(ent.mnt_type, "hugetlbfs") != 0)
			continue;
		/* without pagesize=, the default size: 2 MiB is checked in main() */
		if (!opt || strncmp(opt, "pagesize=2M", 11) == 0 ||
		    strncmp(opt, "pagesize=2048k", 14) == 0) {
			snprintf(dir, len, "%s", ent.mnt_dir);
			found = true;
		}
	}
	endmntent(f);
	return found;
}

static int group_teardown(void **state)
{
	th_remove_leftovers(state);
	restore();
	return 0;
}

static char name_kind(const char *name)
{
	return name[strlen(name) - 18];
}

static shmrig_segment *create_ok(size_t size, int backing, uint32_t flags)
{
	struct shmrig_segment_opts opts = { .size = sizeof(struct shmrig_segment_opts),
					    .bytes = size,
					    .backing = backing,
					    .flags = flags };
	shmrig_segment *seg = NULL;
	int ret = shmrig_segment_create(&opts, &seg);

	if (ret)
		print_error("segment_create(%zu, %s): %s: %s\n", size, shmrig_backing_name(backing),
			    shmrig_strerror(ret), shmrig_last_error());
	assert_int_equal(ret, 0);
	return seg;
}

struct share_arg {
	char name[SHMRIG_NAME_MAX];
	size_t size;
};

static int child_attach_hugetlb(void *arg)
{
	const struct share_arg *share = arg;
	shmrig_segment *seg = NULL;
	unsigned char *base;
	int ret = shmrig_segment_attach(NULL, share->name, &seg);

	if (ret)
		fprintf(stderr, "child: attach %s: %s\n", share->name, shmrig_last_error());
	CHILD_CHECK(ret == 0);
	base = shmrig_segment_base(seg);
	CHILD_CHECK(shmrig_segment_backing(seg) == SHMRIG_BACKING_HUGETLB);
	CHILD_CHECK(shmrig_segment_page_size(seg) == HUGE_PAGE);
	CHILD_CHECK(shmrig_segment_size(seg) == share->size);
	CHILD_CHECK((uintptr_t)base % HUGE_PAGE == 0);
	CHILD_CHECK(th_first_mismatch(base, share->size, 5) == share->size);
	th_fill(base, share->size, 77);
	shmrig_segment_close(seg);
	return 0;
}

/* (a) AUTO takes hugetlb when pages are free; a peer attaches it by name. */
static void test_segment_hugetlb(void **state)
{
	int fds = th_count_fds();
	long free0 = free_hugepages();
	shmrig_segment *seg = create_ok(4 * MiB, SHMRIG_BACKING_AUTO, 0);
	const char *name = shmrig_segment_name(seg);
	unsigned char *base = shmrig_segment_base(seg);
	char dir[PATH_MAX], path[PATH_MAX + SHMRIG_NAME_MAX];
	struct share_arg share;
	struct stat st;

	(void)state;
	printf("# reason: %s\n", shmrig_segment_reason(seg));
	assert_int_equal(shmrig_segment_backing(seg), SHMRIG_BACKING_HUGETLB);
	assert_int_equal(shmrig_segment_page_size(seg), HUGE_PAGE);
	assert_int_equal(shmrig_segment_size(seg), 4 * MiB);
	assert_int_equal(name_kind(name), 'h');
	assert_int_equal(shmrig_segment_role(seg), 'g');
	assert_int_equal((uintptr_t)base % HUGE_PAGE, 0);
	assert_non_null(strstr(shmrig_segment_reason(seg), "hugetlb"));
	/* every page faulted at creation */
	assert_int_equal(free_hugepages(), free0 - 2);
	assert_int_equal(th_count_segments(th_prefix()), 1);

	/* a private file in the hugetlbfs mount */
	if (getenv("SHMRIG_HUGETLBFS"))
		snprintf(dir, sizeof(dir), "%s", getenv("SHMRIG_HUGETLBFS"));
	else
		assert_true(hugetlbfs_2m_mounted(dir, sizeof(dir)));
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0600);
	assert_int_equal(st.st_size, 4 * MiB);
	assert_int_equal(th_count_fds(), fds);

	th_fill(base, 4 * MiB, 5);
	snprintf(share.name, sizeof(share.name), "%s", name);
	share.size = 4 * MiB;
	assert_int_equal(th_run_child(child_attach_hugetlb, &share, CHILD_TIMEOUT_MS), 0);
	assert_int_equal(th_first_mismatch(base, 4 * MiB, 77), 4 * MiB);
	/* the peer mapped the same pages, it took none of its own */
	assert_int_equal(free_hugepages(), free0 - 2);

	assert_int_equal(shmrig_segment_unlink(seg), 0);
	assert_int_equal(access(path, F_OK), -1);
	shmrig_segment_close(seg);
	assert_int_equal(free_hugepages(), free0);

	/* HUGETLB explicitly, one byte: one whole page */
	seg = create_ok(1, SHMRIG_BACKING_HUGETLB, SHMRIG_SEG_STRICT);
	assert_int_equal(shmrig_segment_size(seg), HUGE_PAGE);
	assert_int_equal(free_hugepages(), free0 - 1);
	assert_int_equal(shmrig_segment_unlink(seg), 0);
	shmrig_segment_close(seg);
	assert_int_equal(free_hugepages(), free0);
	assert_int_equal(th_count_segments(th_prefix()), 0);
	assert_int_equal(th_count_fds(), fds);
}

/* (b) More pages than are free: STRICT refuses, otherwise it degrades and says why. */
static void test_not_enough_pages(void **state)
{
	struct shmrig_segment_opts opts = {
		.size = sizeof(struct shmrig_segment_opts),
		.backing = SHMRIG_BACKING_HUGETLB,
		.flags = SHMRIG_SEG_STRICT,
	};
	int fds = th_count_fds();
	long free0 = free_hugepages();
	shmrig_segment *seg = NULL;

	(void)state;
	assert_true(free0 >= RESERVE);
	/* exactly what is free still works */
	opts.bytes = (size_t)free0 * HUGE_PAGE;
	assert_int_equal(shmrig_segment_create(&opts, &seg), 0);
	assert_int_equal(shmrig_segment_backing(seg), SHMRIG_BACKING_HUGETLB);
	assert_int_equal(free_hugepages(), 0);
	assert_int_equal(shmrig_segment_unlink(seg), 0);
	shmrig_segment_close(seg);
	assert_int_equal(free_hugepages(), free0);

	/* one page more than is free */
	seg = NULL;
	opts.bytes = (size_t)(free0 + 1) * HUGE_PAGE;
	assert_int_equal(shmrig_segment_create(&opts, &seg), -ENOMEM);
	assert_null(seg);
	assert_non_null(strstr(shmrig_last_error(), "hugetlb"));
	/* strict: no other backing was even tried */
	assert_null(strstr(shmrig_last_error(), "thp"));
	assert_int_equal(th_count_segments(th_prefix()), 0);
	assert_int_equal(free_hugepages(), free0);

	opts.flags = 0;
	assert_int_equal(shmrig_segment_create(&opts, &seg), 0);
	printf("# reason: %s\n", shmrig_segment_reason(seg));
	assert_int_not_equal(shmrig_segment_backing(seg), SHMRIG_BACKING_HUGETLB);
	assert_non_null(strstr(shmrig_segment_reason(seg), "hugetlb"));
	assert_int_equal(name_kind(shmrig_segment_name(seg)), 's');
	assert_true(shmrig_segment_size(seg) >= opts.bytes);
	assert_int_equal(free_hugepages(), free0);
	assert_int_equal(shmrig_segment_unlink(seg), 0);
	shmrig_segment_close(seg);
	assert_int_equal(th_count_segments(th_prefix()), 0);
	assert_int_equal(th_count_fds(), fds);
}

static const size_t block_sizes[] = { 64, 1000, 1000, 200000, 3 * MiB, 64, 200000 };
#define NBLOCKS (sizeof(block_sizes) / sizeof(block_sizes[0]))

struct pool_share {
	struct shmrig_ref refs[NBLOCKS];
	shmrig_pool *parent_pool;
};

/* A peer opens its own pool with the same prefix and reads every block. */
static int child_read_pool(void *arg)
{
	struct pool_share *share = arg;
	struct shmrig_pool_opts opts = { .size = sizeof(struct shmrig_pool_opts),
					 .prefix = th_prefix(),
					 .flags = SHMRIG_POOL_QUIET };
	struct shmrig_pool_stats stats = SHMRIG_SIZED(struct shmrig_pool_stats);
	struct shmrig_ref ref;
	shmrig_pool *pool;
	void *data;

	/* the inherited handle is the parent's */
	CHILD_CHECK(shmrig_pool_alloc(share->parent_pool, 64, 0, 0, &ref, &data) == -SHMRIG_EFORK);
	CHILD_CHECK(shmrig_pool_open(&opts, &pool) == 0);
	for (unsigned i = 0; i < NBLOCKS; i++) {
		int ret = shmrig_pool_attach(pool, &share->refs[i], &data);

		if (ret)
			fprintf(stderr, "child: attach block %u: %s\n", i, shmrig_last_error());
		CHILD_CHECK(ret == 0);
		CHILD_CHECK(th_first_mismatch(data, block_sizes[i], i + 1) == block_sizes[i]);
	}
	CHILD_CHECK(shmrig_pool_stats(pool, &stats) == 0);
	CHILD_CHECK(stats.live_blocks == NBLOCKS);
	CHILD_CHECK(stats.large_live_blocks == 1);
	/* not the owner: it may read, not free */
	CHILD_CHECK(shmrig_pool_free(pool, &share->refs[0]) == -EPERM);
	CHILD_CHECK(shmrig_pool_close(pool) == 0);
	return 0;
}

/* (c) A pool on hugetlb: blocks of several sizes, read by a peer, all pages back at close. */
static void test_pool_hugetlb(void **state)
{
	struct shmrig_pool_opts opts = {
		.size = sizeof(struct shmrig_pool_opts),
		.arena_size = 4 * MiB,
		.max_bytes = 16 * MiB,
		.backing = SHMRIG_BACKING_HUGETLB,
		.flags = SHMRIG_POOL_QUIET,
	};
	int fds = th_count_fds();
	long free0 = free_hugepages();
	struct pool_share *share = calloc(1, sizeof(*share));
	struct shmrig_pool_stats stats = SHMRIG_SIZED(struct shmrig_pool_stats);
	struct shmrig_pool_info info = SHMRIG_SIZED(struct shmrig_pool_info);
	shmrig_pool *pool = NULL;
	int segments;

	(void)state;
	assert_non_null(share);
	assert_int_equal(shmrig_pool_open(&opts, &pool), 0);
	for (unsigned i = 0; i < NBLOCKS; i++) {
		void *data;
		int ret = shmrig_pool_alloc(pool, block_sizes[i], 0, i, &share->refs[i], &data);

		if (ret)
			print_error("alloc %zu: %s\n", block_sizes[i], shmrig_last_error());
		assert_int_equal(ret, 0);
		assert_int_equal(name_kind(share->refs[i].name), 'h');
		th_fill(data, block_sizes[i], i + 1);
	}
	assert_int_equal(shmrig_pool_info(pool, &info), 0);
	printf("# reason: %s\n", info.reason);
	assert_int_equal(info.backing, SHMRIG_BACKING_HUGETLB);
	assert_int_equal(info.page_size, HUGE_PAGE);
	/* each segment (4 MiB arenas, the 3 MiB block's own) holds two hugepages */
	segments = th_count_segments(th_prefix());
	assert_int_equal(shmrig_pool_stats(pool, &stats), 0);
	assert_int_equal(stats.segments, segments);
	assert_int_equal(stats.created_bytes, (size_t)segments * 4 * MiB);
	assert_int_equal(stats.live_blocks, NBLOCKS);
	assert_true(segments >= 2);
	assert_int_equal(free_hugepages(), free0 - 2 * segments);

	share->parent_pool = pool;
	assert_int_equal(th_run_child(child_read_pool, share, CHILD_TIMEOUT_MS), 0);
	assert_int_equal(th_count_segments(th_prefix()), segments);
	assert_int_equal(free_hugepages(), free0 - 2 * segments);

	for (unsigned i = 0; i < NBLOCKS; i++)
		assert_int_equal(shmrig_pool_free(pool, &share->refs[i]), 0);
	assert_int_equal(shmrig_pool_stats(pool, &stats), 0);
	assert_int_equal(stats.live_blocks, 0);
	assert_int_equal(shmrig_pool_close(pool), 0);
	assert_int_equal(free_hugepages(), free0);
	assert_int_equal(th_count_segments(th_prefix()), 0);
	assert_int_equal(th_count_fds(), fds);
	free(share);
}

/* Make sure a 2 MiB hugetlbfs is mounted; 0, or 77 with the reason printed. */
static int ensure_hugetlbfs(void)
{
	char dir[PATH_MAX];

	if (getenv("SHMRIG_HUGETLBFS") && *getenv("SHMRIG_HUGETLBFS")) {
		printf("# hugetlbfs: $SHMRIG_HUGETLBFS=%s\n", getenv("SHMRIG_HUGETLBFS"));
		return 0;
	}
	if (hugetlbfs_2m_mounted(dir, sizeof(dir))) {
		printf("# hugetlbfs: %s\n", dir);
		return 0;
	}
	snprintf(dir, sizeof(dir), "/tmp/shmrig_hugetlbfs.XXXXXX");
	if (!mkdtemp(dir)) {
		printf("# skip: mkdtemp %s: %s\n", dir, strerror(errno));
		return TEST_SKIP_EXIT;
	}
	if (mount("shmrig_test", dir, "hugetlbfs", MS_NOSUID | MS_NODEV, "pagesize=2M")) {
		printf("# skip: no hugetlbfs mounted, and mounting one on %s: %s\n", dir,
		       strerror(errno));
		rmdir(dir);
		return TEST_SKIP_EXIT;
	}
	snprintf(mount_dir, sizeof(mount_dir), "%s", dir);
	setenv("SHMRIG_HUGETLBFS", dir, 1);
	printf("# hugetlbfs: mounted %s\n", dir);
	return 0;
}

/* Reserve RESERVE more 2 MiB pages; 0, or 77 with the reason printed. */
static int reserve_hugepages(void)
{
	long old = read_long(NR_HUGEPAGES), free_pages;
	int ret;

	if (old < 0) {
		printf("# skip: %s: %s\n", NR_HUGEPAGES, strerror((int)-old));
		return TEST_SKIP_EXIT;
	}
	old_nr_hugepages = old;
	ret = write_long(NR_HUGEPAGES, old + RESERVE);
	free_pages = free_hugepages();
	if (ret || free_pages < RESERVE) {
		printf("# skip: asked for %ld hugepages in %s (%s), %ld free\n", old + RESERVE,
		       NR_HUGEPAGES, ret ? strerror(-ret) : "ok", free_pages);
		restore();
		return TEST_SKIP_EXIT;
	}
	printf("# hugepages: %ld reserved before, %ld free now\n", old, free_pages);
	return 0;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_teardown(test_segment_hugetlb, th_remove_leftovers),
		cmocka_unit_test_teardown(test_not_enough_pages, th_remove_leftovers),
		cmocka_unit_test_teardown(test_pool_hugetlb, th_remove_leftovers),
	};
	FILE *meminfo;
	char line[128];
	bool default_2m = false;
	int ret;

	if (geteuid() != 0) {
		printf("# skip: reserving hugepages needs root\n");
		return TEST_SKIP_EXIT;
	}
	/* /proc/sys/vm/nr_hugepages is the pool of the default size: it must be 2 MiB */
	meminfo = fopen("/proc/meminfo", "re");
	while (meminfo && fgets(line, sizeof(line), meminfo))
		if (strncmp(line, "Hugepagesize:", 13) == 0)
			default_2m = strtol(line + 13, NULL, 10) == 2048;
	if (meminfo)
		fclose(meminfo);
	if (!default_2m || free_hugepages() < 0) {
		printf("# skip: the default hugepage size is not 2 MiB\n");
		return TEST_SKIP_EXIT;
	}
	setenv("SHMRIG_PREFIX", th_prefix(), 0);
	main_pid = getpid();
	/* hugetlb files of an earlier, killed run would hold pages and skew the counts */
	if (shmrig_segment_sweep(th_prefix()) < 0) {
		fprintf(stderr, "sweeping earlier runs' segments: %s\n", shmrig_last_error());
		return 1;
	}
	atexit(restore);
	signal(SIGTERM, on_signal);
	signal(SIGINT, on_signal);
	ret = ensure_hugetlbfs();
	if (!ret)
		ret = reserve_hugepages();
	if (ret) {
		restore();
		return ret;
	}
	fflush(stdout);
	/* loaded once for the process: before the cases count fds */
	shmrig_topo_system();
	return cmocka_run_group_tests(tests, NULL, group_teardown);
}
