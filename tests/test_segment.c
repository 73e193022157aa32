/* SPDX-License-Identifier: MIT */
/*
 * Segments: create, name, attach from another process, degrade, errors, sweep,
 * and a full /dev/shm. Every case ends with no segment of our prefix left and
 * as many fds open as it started with.
 */
#include "helpers.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sched.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <shmrig/options.h>
#include <shmrig/segment.h>

#define CHILD_TIMEOUT_MS 60000
#define SHMEM_THP "/sys/kernel/mm/transparent_hugepage/shmem_enabled"

static size_t page_size(void)
{
	return (size_t)sysconf(_SC_PAGESIZE);
}

/* The kind and role letters come right before the 16 hex digits: 8 of the
 * creator's pid namespace, 8 random. */
static char name_kind(const char *name)
{
	return name[strlen(name) - 18];
}

static char name_role(const char *name)
{
	return name[strlen(name) - 17];
}

/* Start time of this process in clock ticks (field 22 of /proc/self/stat). */
static uint64_t self_start_time(void)
{
	char buf[1024], *p;
	FILE *f = fopen("/proc/self/stat", "re");
	size_t n;

	assert_non_null(f);
	n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	p = strrchr(buf, ')');
	assert_non_null(p);
	for (int field = 2; field < 22; field++) {
		p = strchr(p + 1, ' ');
		assert_non_null(p);
	}
	return strtoull(p + 1, NULL, 10);
}

/* First line of a sysfs file; "" if it cannot be read. */
static void read_line(const char *path, char *buf, size_t len)
{
	FILE *f = fopen(path, "re");

	buf[0] = '\0';
	if (!f)
		return;
	if (!fgets(buf, (int)len, f))
		buf[0] = '\0';
	fclose(f);
}

static long free_hugepages(void)
{
	char buf[64];

	read_line(FREE_HUGEPAGES, buf, sizeof(buf));
	return buf[0] ? strtol(buf, NULL, 10) : 0;
}

/* Does the kernel let shmem use THP ("[never]" and "[deny]" do not)? */
static bool shmem_thp_enabled(void)
{
	char buf[128];

	read_line(SHMEM_THP, buf, sizeof(buf));
	return buf[0] && !strstr(buf, "[never]") && !strstr(buf, "[deny]");
}

/* Leak check by accounting: what a case starts with, compared at its end. */
struct account {
	int fds;
};

static struct account account_begin(void)
{
	struct account a = { .fds = th_count_fds() };

	assert_true(a.fds > 0);
	assert_int_equal(th_count_segments(th_prefix()), 0);
	return a;
}

static void account_end(const struct account *a)
{
	assert_int_equal(th_count_segments(th_prefix()), 0);
	assert_int_equal(th_count_fds(), a->fds);
}

static shmrig_segment *create_ok(size_t size, int backing, uint32_t flags, uint32_t role)
{
	struct shmrig_segment_opts opts = {
		.size = sizeof(struct shmrig_segment_opts),
		.bytes = size,
		.backing = backing,
		.flags = flags,
		.role = role,
	};
	shmrig_segment *seg = NULL;
	int ret = shmrig_segment_create(&opts, &seg);

	if (ret)
		print_error("segment_create(%zu, %s): %s: %s\n", size, shmrig_backing_name(backing),
			    shmrig_strerror(ret), shmrig_last_error());
	assert_int_equal(ret, 0);
	assert_non_null(seg);
	return seg;
}

static void destroy(shmrig_segment *seg)
{
	assert_int_equal(shmrig_segment_unlink(seg), 0);
	shmrig_segment_close(seg);
}

static void test_create_plain(void **state)
{
	struct account acct = account_begin();
	size_t want = (3 * MiB + 1 + page_size() - 1) / page_size() * page_size();
	shmrig_segment *seg = create_ok(3 * MiB + 1, SHMRIG_BACKING_PLAIN, 0, 0);
	const char *name = shmrig_segment_name(seg);
	unsigned char *base = shmrig_segment_base(seg);
	char path[PATH_MAX];
	struct stat st;
	uint64_t start;
	pid_t pid;

	(void)state;
	assert_int_equal(shmrig_segment_size(seg), want);
	assert_int_equal(shmrig_segment_backing(seg), SHMRIG_BACKING_PLAIN);
	/* the base page: 4096 here, not assumed (64 KiB on some arm64 kernels) */
	assert_int_equal(shmrig_segment_page_size(seg), page_size());
	assert_true(strlen(shmrig_segment_reason(seg)) > 0);
	assert_int_equal(shmrig_segment_node(seg), -1);
	assert_non_null(base);
	assert_int_equal((uintptr_t)base % page_size(), 0);

	/* the name: ours, parseable, with our identity, kind 's', role 'g' */
	assert_true(strlen(name) < SHMRIG_NAME_MAX);
	assert_int_equal(strncmp(name, th_prefix(), strlen(th_prefix())), 0);
	assert_int_equal(shmrig_segment_parse_name(NULL, name, &pid, &start), 0);
	assert_int_equal(pid, getpid());
	assert_true(start != 0);
	assert_int_equal(start, (uint32_t)self_start_time());
	assert_int_equal(shmrig_segment_role(seg), 'g');
	assert_int_equal(name_role(name), 'g');
	assert_int_equal(name_kind(name), 's');
	assert_int_equal(th_name_pidns(name), th_pidns());

	/* a private file in /dev/shm of exactly the segment's size */
	snprintf(path, sizeof(path), "/dev/shm/%s", name);
	assert_int_equal(stat(path, &st), 0);
	assert_true(S_ISREG(st.st_mode));
	assert_int_equal(st.st_mode & 07777, 0600);
	assert_int_equal(st.st_size, want);
	assert_int_equal(th_count_segments(th_prefix()), 1);
	/* the mapping keeps the memory: a live segment holds no fd */
	assert_int_equal(th_count_fds(), acct.fds);

	/* zero-filled and writable to the last byte */
	for (size_t i = 0; i < want; i++)
		if (base[i]) {
			print_error("byte %zu is %u, not 0\n", i, base[i]);
			fail();
		}
	th_fill(base, want, 3);
	assert_int_equal(th_first_mismatch(base, want, 3), want);

	assert_int_equal(shmrig_segment_unlink(seg), 0);
	assert_int_equal(access(path, F_OK), -1);
	assert_int_equal(shmrig_segment_unlink(seg), -ENOENT);
	/* unlinked, still mapped */
	assert_int_equal(th_first_mismatch(base, want, 3), want);
	shmrig_segment_close(seg);
	shmrig_segment_close(NULL);
	account_end(&acct);
}

static void test_create_role(void **state)
{
	struct account acct = account_begin();
	shmrig_segment *seg = create_ok(1, SHMRIG_BACKING_PLAIN, 0, 'x');
	const char *name = shmrig_segment_name(seg);

	(void)state;
	assert_int_equal(shmrig_segment_role(seg), 'x');
	assert_int_equal(name_role(name), 'x');
	assert_int_equal(shmrig_segment_parse_name(NULL, name, NULL, NULL), 0);
	assert_int_equal(shmrig_segment_size(seg), page_size());
	destroy(seg);
	account_end(&acct);
}

/* THP requested: degrades to plain while shmem THP is off; STRICT refuses. */
static void test_thp(void **state)
{
	struct shmrig_segment_opts opts = {
		.size = sizeof(struct shmrig_segment_opts),
		.bytes = 4 * MiB,
		.backing = SHMRIG_BACKING_THP,
		.flags = SHMRIG_SEG_STRICT,
	};
	struct account acct = account_begin();
	bool thp = shmem_thp_enabled();
	shmrig_segment *seg = create_ok(4 * MiB, SHMRIG_BACKING_THP, 0, 0);

	(void)state;
	printf("# shmem THP %s; reason: %s\n", thp ? "enabled" : "disabled",
	       shmrig_segment_reason(seg));
	assert_int_equal(shmrig_segment_size(seg), 4 * MiB);
	if (thp) {
		assert_int_equal(shmrig_segment_backing(seg), SHMRIG_BACKING_THP);
		assert_int_equal(shmrig_segment_page_size(seg), HUGE_PAGE);
	} else {
		assert_int_equal(shmrig_segment_backing(seg), SHMRIG_BACKING_PLAIN);
		assert_int_equal(shmrig_segment_page_size(seg), page_size());
		assert_non_null(strstr(shmrig_segment_reason(seg), "shmem_enabled"));
	}
	assert_int_equal(name_kind(shmrig_segment_name(seg)), 's');
	memset(shmrig_segment_base(seg), 0x5a, shmrig_segment_size(seg));
	destroy(seg);

	seg = NULL;
	if (thp) {
		assert_int_equal(shmrig_segment_create(&opts, &seg), 0);
		assert_int_equal(shmrig_segment_backing(seg), SHMRIG_BACKING_THP);
		destroy(seg);
	} else {
		assert_int_equal(shmrig_segment_create(&opts, &seg), -ENOMEM);
		assert_null(seg);
		assert_non_null(strstr(shmrig_last_error(), "shmem_enabled"));
	}
	account_end(&acct);
}

/* hugetlb requested with no free hugepages: degrades, STRICT refuses. */
static void test_hugetlb_degrades(void **state)
{
	struct shmrig_segment_opts opts = {
		.size = sizeof(struct shmrig_segment_opts),
		.bytes = 4 * MiB,
		.backing = SHMRIG_BACKING_HUGETLB,
		.flags = SHMRIG_SEG_STRICT,
	};
	struct account acct = account_begin();
	long free_pages = free_hugepages();
	shmrig_segment *seg;

	(void)state;
	if (free_pages > 0) {
		printf("# %ld free 2 MiB hugepages: hugetlb would not degrade, skipping\n",
		       free_pages);
		skip();
	}
	for (int backing = SHMRIG_BACKING_AUTO; backing <= SHMRIG_BACKING_HUGETLB; backing++) {
		seg = create_ok(4 * MiB, backing, 0, 0);
		printf("# %s: reason: %s\n", shmrig_backing_name(backing),
		       shmrig_segment_reason(seg));
		assert_int_not_equal(shmrig_segment_backing(seg), SHMRIG_BACKING_HUGETLB);
		assert_non_null(strstr(shmrig_segment_reason(seg), "hugetlb"));
		assert_int_equal(name_kind(shmrig_segment_name(seg)), 's');
		assert_true(shmrig_segment_size(seg) >= 4 * MiB);
		destroy(seg);
	}

	seg = NULL;
	assert_int_equal(shmrig_segment_create(&opts, &seg), -ENOMEM);
	assert_null(seg);
	assert_non_null(strstr(shmrig_last_error(), "hugetlb"));
	/* strict: no other backing was even tried */
	assert_null(strstr(shmrig_last_error(), "thp"));
	assert_int_equal(free_hugepages(), 0);
	account_end(&acct);
}

struct share_arg {
	char name[SHMRIG_NAME_MAX];
	size_t size;
};

static int child_attach_and_reply(void *arg)
{
	const struct share_arg *share = arg;
	shmrig_segment *seg = NULL;
	unsigned char *base;
	int ret;

	ret = shmrig_segment_attach(NULL, share->name, &seg);
	if (ret)
		fprintf(stderr, "child: attach %s: %s: %s\n", share->name, shmrig_strerror(ret),
			shmrig_last_error());
	CHILD_CHECK(ret == 0);
	base = shmrig_segment_base(seg);
	CHILD_CHECK(shmrig_segment_size(seg) == share->size);
	CHILD_CHECK(strcmp(shmrig_segment_name(seg), share->name) == 0);
	CHILD_CHECK(shmrig_segment_backing(seg) == SHMRIG_BACKING_PLAIN);
	CHILD_CHECK(shmrig_segment_role(seg) == 'm');
	CHILD_CHECK(th_first_mismatch(base, share->size, 11) == share->size);
	th_fill(base, share->size, 29);
	shmrig_segment_close(seg);
	return 0;
}

/* Parent writes, a child attaches by name, checks and answers, the parent sees it. */
static void test_second_process(void **state)
{
	struct account acct = account_begin();
	shmrig_segment *seg = create_ok(MiB + 100, SHMRIG_BACKING_PLAIN, 0, 'm');
	unsigned char *base = shmrig_segment_base(seg);
	struct share_arg share;

	(void)state;
	snprintf(share.name, sizeof(share.name), "%s", shmrig_segment_name(seg));
	share.size = shmrig_segment_size(seg);
	th_fill(base, share.size, 11);
	assert_int_equal(th_run_child(child_attach_and_reply, &share, CHILD_TIMEOUT_MS), 0);
	assert_int_equal(th_first_mismatch(base, share.size, 29), share.size);
	destroy(seg);
	account_end(&acct);
}

/* Make shmrig_last_error() hold a known marker, so that a message after it is new. */
static void mark_last_error(void)
{
	size_t value;

	assert_int_equal(shmrig_parse_size("marker", &value), -EINVAL);
	assert_non_null(strstr(shmrig_last_error(), "marker"));
}

static void expect_bad_name(const char *name, const char *what)
{
	shmrig_segment *seg = NULL;
	int ret;

	mark_last_error();
	ret = shmrig_segment_attach(NULL, name, &seg);
	if (ret != -EINVAL)
		print_error("attach(%s: \"%s\") = %d, want -EINVAL\n", what, name, ret);
	assert_int_equal(ret, -EINVAL);
	assert_null(seg);
	assert_true(strlen(shmrig_last_error()) > 0);
	assert_null(strstr(shmrig_last_error(), "marker"));

	mark_last_error();
	assert_int_equal(shmrig_segment_parse_name(NULL, name, NULL, NULL), -EINVAL);
	assert_null(strstr(shmrig_last_error(), "marker"));
	mark_last_error();
	assert_int_equal(shmrig_segment_unlink_name(NULL, name), -EINVAL);
	assert_null(strstr(shmrig_last_error(), "marker"));
}

static void test_attach_errors(void **state)
{
	struct account acct = account_begin();
	const char *prefix = th_prefix();
	const char *hex16 = "0123456789abcdef";
	shmrig_segment *seg = NULL, *good;
	char name[2 * SHMRIG_NAME_MAX], ours16[17];

	(void)state;
	/* our pid namespace, then 8 "random" digits */
	snprintf(ours16, sizeof(ours16), "%08x89abcdef", (unsigned)th_pidns());
	/* well-formed, but nobody created it (both kinds) */
	snprintf(name, sizeof(name), "%s-%d-1a2b-sg%s", prefix, (int)getpid(), ours16);
	assert_int_equal(shmrig_segment_parse_name(NULL, name, NULL, NULL), 0);
	mark_last_error();
	assert_int_equal(shmrig_segment_attach(NULL, name, &seg), -ENOENT);
	assert_null(seg);
	assert_non_null(strstr(shmrig_last_error(), name));
	assert_int_equal(shmrig_segment_unlink_name(NULL, name), -ENOENT);
	snprintf(name, sizeof(name), "%s-%d-1a2b-hg%s", prefix, (int)getpid(), ours16);
	assert_int_equal(shmrig_segment_attach(NULL, name, &seg), -ENOENT);
	assert_int_equal(shmrig_segment_unlink_name(NULL, name), -ENOENT);
	assert_null(seg);
	/* well-formed, from another pid namespace: refused before any lookup */
	snprintf(name, sizeof(name), "%s-%d-1a2b-sg%08x89abcdef", prefix, (int)getpid(),
		 (unsigned)(th_pidns() ^ 1));
	assert_int_equal(shmrig_segment_parse_name(NULL, name, NULL, NULL), 0);
	assert_int_equal(shmrig_segment_attach(NULL, name, &seg), -EXDEV);
	assert_non_null(strstr(shmrig_last_error(), "pid namespace"));
	assert_null(seg);

	snprintf(name, sizeof(name), "%s-1-1-sg0123456/89abcdef", prefix);
	expect_bad_name(name, "slash");
	assert_non_null(strstr(shmrig_last_error(), "'/'"));
	snprintf(name, sizeof(name), "%s/../../etc/passwd", prefix);
	expect_bad_name(name, "path");
	assert_non_null(strstr(shmrig_last_error(), "'/'"));
	snprintf(name, sizeof(name), "other_prefix-1-1-sg%s", hex16);
	expect_bad_name(name, "wrong prefix");
	snprintf(name, sizeof(name), "%sx-1-1-sg%s", prefix, hex16);
	expect_bad_name(name, "longer prefix");
	snprintf(name, sizeof(name), "%s_1-1-sg%s", prefix, hex16);
	expect_bad_name(name, "no dash after prefix");
	/* too long: exactly SHMRIG_NAME_MAX characters, and far more */
	memset(name, 'a', sizeof(name) - 1);
	name[sizeof(name) - 1] = '\0';
	memcpy(name, prefix, strlen(prefix));
	name[SHMRIG_NAME_MAX] = '\0';
	expect_bad_name(name, "64 characters");
	assert_non_null(strstr(shmrig_last_error(), "long"));
	name[SHMRIG_NAME_MAX] = 'a';
	expect_bad_name(name, "127 characters");
	snprintf(name, sizeof(name), "%s-0-1-sg%s", prefix, hex16);
	expect_bad_name(name, "pid 0");
	snprintf(name, sizeof(name), "%s-012-1-sg%s", prefix, hex16);
	expect_bad_name(name, "pid with a leading 0");
	snprintf(name, sizeof(name), "%s-abc-1-sg%s", prefix, hex16);
	expect_bad_name(name, "pid not a number");
	snprintf(name, sizeof(name), "%s--1-sg%s", prefix, hex16);
	expect_bad_name(name, "no pid");
	snprintf(name, sizeof(name), "%s-99999999999-1-sg%s", prefix, hex16);
	expect_bad_name(name, "pid too large");
	snprintf(name, sizeof(name), "%s-1--sg%s", prefix, hex16);
	expect_bad_name(name, "no start");
	snprintf(name, sizeof(name), "%s-1-11112222333344445-sg%s", prefix, hex16);
	expect_bad_name(name, "start of 17 digits");
	snprintf(name, sizeof(name), "%s-1-1-sg", prefix);
	expect_bad_name(name, "no random digits");
	snprintf(name, sizeof(name), "%s-1-1-sg0123456789abcde", prefix);
	expect_bad_name(name, "15 random digits");
	snprintf(name, sizeof(name), "%s-1-1-sg0123456789abcdef0", prefix);
	expect_bad_name(name, "17 random digits");
	snprintf(name, sizeof(name), "%s-1-1-sg0123456789ABCDEF", prefix);
	expect_bad_name(name, "uppercase random digits");
	snprintf(name, sizeof(name), "%s-1-1A-sg%s", prefix, hex16);
	expect_bad_name(name, "uppercase start");
	snprintf(name, sizeof(name), "%s-1-1-xg%s", prefix, hex16);
	expect_bad_name(name, "kind x");
	snprintf(name, sizeof(name), "%s-1-1-Sg%s", prefix, hex16);
	expect_bad_name(name, "kind S");
	snprintf(name, sizeof(name), "%s-1-1-sG%s", prefix, hex16);
	expect_bad_name(name, "role G");
	snprintf(name, sizeof(name), "%s-1-1-s%s", prefix, hex16);
	expect_bad_name(name, "no role");
	expect_bad_name("", "empty");

	mark_last_error();
	assert_int_equal(shmrig_segment_attach(NULL, NULL, &seg), -EINVAL);
	assert_null(strstr(shmrig_last_error(), "marker"));
	assert_int_equal(shmrig_segment_unlink_name(NULL, NULL), -EINVAL);

	/* a real name: NULL out, and another prefix than the one it carries */
	good = create_ok(4096, SHMRIG_BACKING_PLAIN, 0, 0);
	assert_int_equal(shmrig_segment_attach(NULL, shmrig_segment_name(good), NULL), -EINVAL);
	assert_int_equal(shmrig_segment_attach("other", shmrig_segment_name(good), &seg), -EINVAL);
	assert_int_equal(shmrig_segment_attach("bad/prefix", shmrig_segment_name(good), &seg),
			 -EINVAL);
	assert_int_equal(shmrig_segment_unlink_name("other", shmrig_segment_name(good)), -EINVAL);
	assert_null(seg);
	assert_int_equal(shmrig_segment_attach(prefix, shmrig_segment_name(good), &seg), 0);
	assert_int_equal(shmrig_segment_size(seg), 4096);
	assert_string_equal(shmrig_segment_reason(seg), "attached");
	shmrig_segment_close(seg);
	assert_int_equal(shmrig_segment_unlink_name(prefix, shmrig_segment_name(good)), 0);
	assert_int_equal(shmrig_segment_unlink(good), -ENOENT);
	shmrig_segment_close(good);
	account_end(&acct);
}

static void expect_bad_opts(const struct shmrig_segment_opts *opts, const char *what)
{
	shmrig_segment *seg = NULL;
	int ret;

	mark_last_error();
	ret = shmrig_segment_create(opts, &seg);
	if (ret != -EINVAL)
		print_error("segment_create(%s) = %d, want -EINVAL\n", what, ret);
	assert_int_equal(ret, -EINVAL);
	assert_null(seg);
	assert_null(strstr(shmrig_last_error(), "marker"));
	assert_int_equal(th_count_segments(th_prefix()), 0);
}

static void test_bad_options(void **state)
{
	const struct shmrig_segment_opts good = { .size = sizeof(struct shmrig_segment_opts),
						  .bytes = 4096,
						  .backing = SHMRIG_BACKING_PLAIN };
	struct account acct = account_begin();
	struct shmrig_segment_opts opts;
	shmrig_segment *seg = NULL;

	(void)state;
	expect_bad_opts(NULL, "NULL opts");
	assert_int_equal(shmrig_segment_create(&good, NULL), -EINVAL);

	opts = good;
	opts.flags = 1u << 2;
	expect_bad_opts(&opts, "flag bit 2");
	opts.flags = 1u << 31;
	expect_bad_opts(&opts, "flag bit 31");
	opts = good;
	opts.size = 0;
	expect_bad_opts(&opts, "struct size 0");
	opts = good;
	opts.bytes = 0;
	expect_bad_opts(&opts, "bytes 0");
	opts = good;
	opts.backing = 9;
	expect_bad_opts(&opts, "backing 9");
	opts.backing = -1;
	expect_bad_opts(&opts, "backing -1");
	opts = good;
	opts.role = 'A';
	expect_bad_opts(&opts, "role A");
	opts.role = '{';
	expect_bad_opts(&opts, "role {");
	opts.role = 'g' + 0x100;
	expect_bad_opts(&opts, "role g+256");
	opts = good;
	opts.prefix = "bad/prefix";
	expect_bad_opts(&opts, "prefix with /");
	opts.prefix = "a_prefix_of_25_characters";
	expect_bad_opts(&opts, "prefix too long");
	opts = good;
	opts.flags = SHMRIG_SEG_BIND_NODE;
	opts.numa_node = 999;
	expect_bad_opts(&opts, "node 999");
	opts.numa_node = -1;
	expect_bad_opts(&opts, "node -1");

	/* node 0 exists everywhere */
	opts.numa_node = 0;
	assert_int_equal(shmrig_segment_create(&opts, &seg), 0);
	printf("# bound: reason: %s\n", shmrig_segment_reason(seg));
	assert_int_equal(shmrig_segment_node(seg), 0);
	memset(shmrig_segment_base(seg), 1, shmrig_segment_size(seg));
	destroy(seg);
	account_end(&acct);
}

struct name_list {
	int count;
	char names[8][SHMRIG_NAME_MAX];
};

static void collect(void *arg, const char *name)
{
	struct name_list *list = arg;

	if (list->count < 8)
		snprintf(list->names[list->count], SHMRIG_NAME_MAX, "%s", name);
	list->count++;
}

static bool listed(const struct name_list *list, const char *name)
{
	for (int i = 0; i < list->count && i < 8; i++)
		if (strcmp(list->names[i], name) == 0)
			return true;
	return false;
}

/* Kept reachable so that the dying child does not leak it in valgrind's eyes. */
static shmrig_segment *abandoned;

/* Create a segment and die without unlinking it, telling the parent its name. */
static int child_abandon(void *arg)
{
	char *name = arg;
	struct shmrig_segment_opts opts = { .size = sizeof(struct shmrig_segment_opts),
					    .bytes = 8192,
					    .backing = SHMRIG_BACKING_PLAIN,
					    .role = 'd' };

	CHILD_CHECK(shmrig_segment_create(&opts, &abandoned) == 0);
	memcpy(name, shmrig_segment_name(abandoned), SHMRIG_NAME_MAX);
	return 0;
}

/* A name of our live pid with another start time: a previous process that had
 * our pid (in the pid namespace `pidns`). */
static void forge_reused_pid(char *name, uint32_t pidns)
{
	uint32_t start = (uint32_t)self_start_time() + 1;
	int fd;

	snprintf(name, SHMRIG_NAME_MAX, "%s-%d-%x-sg%08x89abcdef", th_prefix(), (int)getpid(),
		 (unsigned)start, (unsigned)pidns);
	fd = shm_open(name, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	assert_true(fd >= 0);
	assert_int_equal(ftruncate(fd, 4096), 0);
	close(fd);
}

static void test_sweep(void **state)
{
	struct account acct = account_begin();
	char *child_name = mmap(NULL, SHMRIG_NAME_MAX, PROT_READ | PROT_WRITE,
				MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	char forged[SHMRIG_NAME_MAX];
	struct name_list list = { 0 };
	shmrig_segment *mine, *seg = NULL;
	pid_t pid;

	(void)state;
	assert_true(child_name != MAP_FAILED);
	memset(child_name, 0, SHMRIG_NAME_MAX);
	assert_int_equal(th_run_child(child_abandon, child_name, CHILD_TIMEOUT_MS), 0);
	assert_int_equal(shmrig_segment_parse_name(NULL, child_name, &pid, NULL), 0);
	assert_int_not_equal(pid, getpid());
	mine = create_ok(8192, SHMRIG_BACKING_PLAIN, 0, 0);

	assert_int_equal(shmrig_segment_list(NULL, collect, &list), 2);
	assert_int_equal(list.count, 2);
	assert_true(listed(&list, child_name));
	assert_true(listed(&list, shmrig_segment_name(mine)));
	assert_int_equal(shmrig_segment_list(NULL, NULL, NULL), 2);
	/* the dead child's segment can still be attached until swept */
	assert_int_equal(shmrig_segment_attach(NULL, child_name, &seg), 0);
	shmrig_segment_close(seg);

	assert_int_equal(shmrig_segment_sweep(NULL), 1);
	memset(&list, 0, sizeof(list));
	assert_int_equal(shmrig_segment_list(NULL, collect, &list), 1);
	assert_string_equal(list.names[0], shmrig_segment_name(mine));
	seg = NULL;
	assert_int_equal(shmrig_segment_attach(NULL, child_name, &seg), -ENOENT);
	assert_null(seg);
	assert_int_equal(shmrig_segment_sweep(NULL), 0);

	/* our pid, but another start time: a dead process whose pid we reuse */
	forge_reused_pid(forged, th_pidns());
	assert_int_equal(shmrig_segment_list(NULL, NULL, NULL), 2);
	assert_int_equal(shmrig_segment_sweep(th_prefix()), 1);
	assert_int_equal(shmrig_segment_unlink_name(NULL, forged), -ENOENT);
	assert_int_equal(shmrig_segment_list(NULL, NULL, NULL), 1);

	/* the same from another pid namespace: its pid is not ours to judge */
	forge_reused_pid(forged, th_pidns() ^ 1);
	assert_int_equal(shmrig_segment_sweep(th_prefix()), 0);
	assert_int_equal(shmrig_segment_unlink_name(NULL, forged), 0);
	assert_int_equal(shmrig_segment_list(NULL, NULL, NULL), 1);

	/* another prefix sees none of ours */
	assert_int_equal(shmrig_segment_sweep("t_segment_other"), 0);
	assert_int_equal(shmrig_segment_list("t_segment_other", NULL, NULL), 0);
	assert_int_equal(shmrig_segment_list("bad/prefix", NULL, NULL), -EINVAL);

	destroy(mine);
	munmap(child_name, SHMRIG_NAME_MAX);
	account_end(&acct);
}

/* Entries in a directory, "." and ".." aside; -1 if it cannot be read. */
static int count_entries(const char *path)
{
	DIR *dir = opendir(path);
	struct dirent *ent;
	int count = 0;

	if (!dir)
		return -1;
	while ((ent = readdir(dir)))
		if (strcmp(ent->d_name, ".") && strcmp(ent->d_name, ".."))
			count++;
	closedir(dir);
	return count;
}

/* Say why the child cannot make its own /dev/shm: 77 (skip) without privilege. */
static int cannot_isolate(const char *what)
{
	int err = errno;

	/* the child leaves through _exit(): flush what the parent's log should show */
	printf("# %s: %s: cannot test a full /dev/shm\n", what, strerror(err));
	fflush(stdout);
	return err == EPERM ? TEST_SKIP_EXIT : 2;
}

/*
 * In a private mount namespace, /dev/shm is a 4 MiB tmpfs: a segment that does
 * not fit is -ENOMEM from create (the space is reserved there), not a SIGBUS at
 * the first write. Exit 77: no privilege for the namespace.
 */
static int child_full_devshm(void *arg)
{
	struct shmrig_segment_opts opts = { .size = sizeof(struct shmrig_segment_opts),
					    .bytes = 16 * MiB,
					    .backing = SHMRIG_BACKING_PLAIN };
	shmrig_segment *seg = NULL, *small = NULL;
	int ret;

	(void)arg;
	if (unshare(CLONE_NEWNS))
		return cannot_isolate("unshare(CLONE_NEWNS)");
	/* The type is ignored for a propagation change; "none", not NULL, because
	 * valgrind (3.19) checks it as a string whatever the flags. */
	if (mount(NULL, "/", "none", MS_REC | MS_PRIVATE, NULL))
		return cannot_isolate("making mounts private");
	if (mount("shmrig_test", "/dev/shm", "tmpfs", MS_NOSUID | MS_NODEV, "size=4m,mode=1777"))
		return cannot_isolate("mounting a 4 MiB tmpfs on /dev/shm");
	CHILD_CHECK(count_entries("/dev/shm") == 0);

	ret = shmrig_segment_create(&opts, &seg);
	if (ret != -ENOMEM)
		fprintf(stderr, "child: 16 MiB in a 4 MiB /dev/shm: %d (%s)\n", ret,
			shmrig_last_error());
	CHILD_CHECK(ret == -ENOMEM);
	CHILD_CHECK(seg == NULL);
	CHILD_CHECK(count_entries("/dev/shm") == 0);
	/* degrading from AUTO ends in the same full tmpfs (unless 8 hugepages are free) */
	if (free_hugepages() < 8) {
		opts.backing = SHMRIG_BACKING_AUTO;
		CHILD_CHECK(shmrig_segment_create(&opts, &seg) == -ENOMEM);
		CHILD_CHECK(count_entries("/dev/shm") == 0);
	}

	opts.backing = SHMRIG_BACKING_PLAIN;
	opts.bytes = MiB;
	ret = shmrig_segment_create(&opts, &small);
	if (ret)
		fprintf(stderr, "child: 1 MiB in a 4 MiB /dev/shm: %s\n", shmrig_last_error());
	CHILD_CHECK(ret == 0);
	memset(shmrig_segment_base(small), 0xee, MiB);
	CHILD_CHECK(count_entries("/dev/shm") == 1);
	/* with 1 MiB taken, 3.5 MiB no longer fits */
	opts.bytes = 3 * MiB + MiB / 2;
	CHILD_CHECK(shmrig_segment_create(&opts, &seg) == -ENOMEM);
	CHILD_CHECK(count_entries("/dev/shm") == 1);
	CHILD_CHECK(shmrig_segment_unlink(small) == 0);
	shmrig_segment_close(small);
	CHILD_CHECK(count_entries("/dev/shm") == 0);
	return 0;
}

static void test_full_devshm(void **state)
{
	struct account acct = account_begin();
	int ret = th_run_child(child_full_devshm, NULL, CHILD_TIMEOUT_MS);

	(void)state;
	if (ret == TEST_SKIP_EXIT)
		skip();
	assert_int_equal(ret, 0);
	account_end(&acct);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_teardown(test_create_plain, th_remove_leftovers),
		cmocka_unit_test_teardown(test_create_role, th_remove_leftovers),
		cmocka_unit_test_teardown(test_thp, th_remove_leftovers),
		cmocka_unit_test_teardown(test_hugetlb_degrades, th_remove_leftovers),
		cmocka_unit_test_teardown(test_second_process, th_remove_leftovers),
		cmocka_unit_test_teardown(test_attach_errors, th_remove_leftovers),
		cmocka_unit_test_teardown(test_bad_options, th_remove_leftovers),
		cmocka_unit_test_teardown(test_sweep, th_remove_leftovers),
		cmocka_unit_test_teardown(test_full_devshm, th_remove_leftovers),
	};

	/* The library's default prefix is the one the helpers count (also outside meson). */
	setenv("SHMRIG_PREFIX", th_prefix(), 0);
	/* The system topology stays loaded for the process: load it before fds are counted. */
	shmrig_topo_system();
	return cmocka_run_group_tests(tests, th_sweep_leftovers, NULL);
}
