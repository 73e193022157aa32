/* SPDX-License-Identifier: MIT */
/*
 * topo: the real machine (one NUMA node is enough), then synthetic and XML
 * topologies with two nodes, whose binding decisions a recording binder sees.
 */
#include "helpers.h"

#include <shmrig/topo.h>

#include <errno.h>
#include <hwloc.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

/* Two packages, one node each, two single-PU cores each: CPUs 0,1 on node 0, 2,3 on node 1. */
#define TWO_NODES "pack:2 numa:1 core:2 pu:1"

#define AREA_LEN (2u << 20)

static size_t page_size(void)
{
	return (size_t)sysconf(_SC_PAGESIZE);
}

/* Skip a case the machine or container does not allow (seccomp, no CAP_SYS_NICE). */
static void skip_if_forbidden(int ret, const char *what)
{
	if (ret == -EPERM || ret == -ENOSYS || ret == -ENOTSUP) {
		print_message("skip: %s: %s (%s)\n", what, shmrig_strerror(ret),
			      shmrig_last_error());
		skip();
	}
}

/* --- the real machine ------------------------------------------------------ */

static void test_system_counts(void **state)
{
	shmrig_topo *topo = shmrig_topo_system();
	int first_cpu, node;

	(void)state;
	assert_non_null(topo);
	assert_ptr_equal(shmrig_topo_system(), topo);
	assert_true(shmrig_topo_num_nodes(topo) >= 1);
	assert_true(shmrig_topo_num_cpus(topo) >= 1);
	assert_int_equal(shmrig_topo_node_exists(topo, shmrig_topo_node_os_index(topo, 0)), 1);
	assert_int_equal(shmrig_topo_node_os_index(topo, shmrig_topo_num_nodes(topo)), -EINVAL);
	assert_int_equal(shmrig_topo_cpu_os_index(topo, -1), -EINVAL);

	/* CPU 0 may be outside our cgroup: take the first CPU we may use. */
	first_cpu = shmrig_topo_cpu_os_index(topo, 0);
	assert_true(first_cpu >= 0);
	node = shmrig_topo_cpu_node(topo, first_cpu);
	assert_true(node >= 0);
	assert_int_equal(shmrig_topo_node_exists(topo, node), 1);

	assert_true(shmrig_topo_current_cpu() >= 0);
}

struct bind_result {
	int cpu;
	int bind_ret;
	int cpu_after;
};

/* In its own thread, so the binding ends with it and binds no other test. */
static void *bind_thread_main(void *arg)
{
	struct bind_result *result = arg;

	result->bind_ret = shmrig_topo_bind_thread(shmrig_topo_system(), result->cpu);
	result->cpu_after = shmrig_topo_current_cpu();
	return NULL;
}

static void test_system_bind_thread(void **state)
{
	shmrig_topo *topo = shmrig_topo_system();
	struct bind_result result = { .bind_ret = 1, .cpu_after = -1 };
	pthread_t thread;

	(void)state;
	assert_non_null(topo);
	/* The last CPU: on a multi-CPU machine, likely not where the thread starts. */
	result.cpu = shmrig_topo_cpu_os_index(topo, shmrig_topo_num_cpus(topo) - 1);
	assert_true(result.cpu >= 0);
	assert_int_equal(pthread_create(&thread, NULL, bind_thread_main, &result), 0);
	assert_int_equal(pthread_join(thread, NULL), 0);
	skip_if_forbidden(result.bind_ret, "bind a thread to a CPU");
	assert_int_equal(result.bind_ret, 0);
	assert_int_equal(result.cpu_after, result.cpu);

	assert_int_equal(shmrig_topo_bind_thread(topo, -1), -EINVAL);
}

static void test_system_bind_area(void **state)
{
	shmrig_topo *topo = shmrig_topo_system();
	char *area;
	int node, ret;

	(void)state;
	assert_non_null(topo);
	node = shmrig_topo_cpu_node(topo, shmrig_topo_cpu_os_index(topo, 0));
	assert_true(node >= 0);
	area = mmap(NULL, AREA_LEN, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	assert_true(area != MAP_FAILED);

	/* Nothing touched yet: no page is anywhere. */
	ret = shmrig_topo_area_node(topo, area, AREA_LEN);
	if (ret != -ENOENT)
		munmap(area, AREA_LEN);
	skip_if_forbidden(ret, "query page locations");
	assert_int_equal(ret, -ENOENT);

	ret = shmrig_topo_bind_area(topo, area, AREA_LEN, node);
	if (ret)
		munmap(area, AREA_LEN);
	skip_if_forbidden(ret, "bind memory to a node");
	assert_int_equal(ret, 0);
	/* Unaligned ends are rounded to pages, not refused. */
	assert_int_equal(shmrig_topo_bind_area(topo, area + 100, 1000, node), 0);
	memset(area, 0x5a, AREA_LEN);
	assert_int_equal(shmrig_topo_area_node(topo, area, AREA_LEN), node);

	assert_int_equal(shmrig_topo_bind_area(topo, area, AREA_LEN, -1), -EINVAL);
	assert_int_equal(munmap(area, AREA_LEN), 0);
}

static void test_free_ignores_system_and_null(void **state)
{
	shmrig_topo *topo = shmrig_topo_system();

	(void)state;
	assert_non_null(topo);
	shmrig_topo_free(NULL);
	shmrig_topo_free(topo);
	assert_ptr_equal(shmrig_topo_system(), topo);
	assert_true(shmrig_topo_num_nodes(topo) >= 1);
	assert_int_equal(shmrig_topo_num_nodes(NULL), -EINVAL);
	assert_int_equal(shmrig_topo_node_exists(NULL, 0), 0);
}

/* --- synthetic and XML topologies ------------------------------------------ */

static void check_two_nodes(const shmrig_topo *topo)
{
	static const int node_of_cpu[] = { 0, 0, 1, 1 };

	assert_int_equal(shmrig_topo_num_nodes(topo), 2);
	assert_int_equal(shmrig_topo_num_cpus(topo), 4);
	for (int i = 0; i < 2; i++)
		assert_int_equal(shmrig_topo_node_os_index(topo, i), i);
	for (int cpu = 0; cpu < 4; cpu++) {
		assert_int_equal(shmrig_topo_cpu_os_index(topo, cpu), cpu);
		assert_int_equal(shmrig_topo_cpu_node(topo, cpu), node_of_cpu[cpu]);
	}
}

static void test_synthetic_layout(void **state)
{
	shmrig_topo *topo = NULL;

	(void)state;
	assert_int_equal(shmrig_topo_load(TWO_NODES, &topo), 0);
	assert_non_null(topo);
	check_two_nodes(topo);
	assert_int_equal(shmrig_topo_node_exists(topo, 0), 1);
	assert_int_equal(shmrig_topo_node_exists(topo, 1), 1);
	assert_int_equal(shmrig_topo_node_exists(topo, 5), 0);
	assert_int_equal(shmrig_topo_node_exists(topo, -1), 0);
	assert_int_equal(shmrig_topo_node_os_index(topo, 2), -EINVAL);
	assert_int_equal(shmrig_topo_cpu_os_index(topo, 4), -EINVAL);
	assert_int_equal(shmrig_topo_cpu_node(topo, 4), -EINVAL);
	assert_non_null(strstr(shmrig_last_error(), "CPU 4"));
	assert_int_equal(shmrig_topo_cpu_node(topo, -1), -EINVAL);
	shmrig_topo_free(topo);
}

struct recording {
	int thread_calls;
	int area_calls;
	shmrig_topo *topo;
	int cpu;
	void *addr;
	size_t len;
	int node;
	int ret; /* what the binder returns */
};

static int record_thread(void *ctx, shmrig_topo *topo, int cpu)
{
	struct recording *rec = ctx;

	rec->thread_calls++;
	rec->topo = topo;
	rec->cpu = cpu;
	return rec->ret;
}

static int record_area(void *ctx, shmrig_topo *topo, void *addr, size_t len, int node)
{
	struct recording *rec = ctx;

	rec->area_calls++;
	rec->topo = topo;
	rec->addr = addr;
	rec->len = len;
	rec->node = node;
	return rec->ret;
}

static void test_synthetic_bad_node(void **state)
{
	struct recording rec = { 0 };
	struct shmrig_topo_binder binder = { .size = sizeof(struct shmrig_topo_binder),
					     .bind_thread_cpu = record_thread,
					     .bind_area_node = record_area,
					     .ctx = &rec };
	shmrig_topo *topo = NULL;
	char buf[64];

	(void)state;
	assert_int_equal(shmrig_topo_load(TWO_NODES, &topo), 0);
	assert_int_equal(shmrig_topo_set_binder(topo, &binder), 0);
	assert_int_equal(shmrig_topo_bind_area(topo, buf, sizeof(buf), 7), -EINVAL);
	assert_non_null(strstr(shmrig_last_error(), "node 7"));
	assert_non_null(strstr(shmrig_last_error(), "0, 1"));
	assert_int_equal(shmrig_topo_bind_area(topo, buf, sizeof(buf), -1), -EINVAL);
	assert_int_equal(rec.area_calls, 0);
	shmrig_topo_free(topo);
}

static void test_synthetic_binder_sees_request(void **state)
{
	struct recording rec = { 0 };
	struct shmrig_topo_binder binder = { .size = sizeof(struct shmrig_topo_binder),
					     .bind_thread_cpu = record_thread,
					     .bind_area_node = record_area,
					     .ctx = &rec };
	size_t page = page_size();
	shmrig_topo *topo = NULL;
	char *buf;

	(void)state;
	buf = aligned_alloc(page, 4 * page);
	assert_non_null(buf);
	assert_int_equal(shmrig_topo_load(TWO_NODES, &topo), 0);
	assert_int_equal(shmrig_topo_set_binder(topo, &binder), 0);

	/* One page from mid-page spans two: the start rounds down, the end up. */
	assert_int_equal(shmrig_topo_bind_area(topo, buf + page + 123, page, 1), 0);
	assert_int_equal(rec.area_calls, 1);
	assert_ptr_equal(rec.topo, topo);
	assert_ptr_equal(rec.addr, buf + page);
	assert_int_equal(rec.len, 2 * page);
	assert_int_equal(rec.node, 1);

	/* Aligned areas pass unchanged. */
	assert_int_equal(shmrig_topo_bind_area(topo, buf, 3 * page, 0), 0);
	assert_int_equal(rec.area_calls, 2);
	assert_ptr_equal(rec.addr, buf);
	assert_int_equal(rec.len, 3 * page);
	assert_int_equal(rec.node, 0);

	assert_int_equal(shmrig_topo_bind_thread(topo, 3), 0);
	assert_int_equal(rec.thread_calls, 1);
	assert_int_equal(rec.cpu, 3);
	assert_int_equal(shmrig_topo_bind_thread(topo, 99), -EINVAL);
	assert_non_null(strstr(shmrig_last_error(), "CPU 99"));
	assert_int_equal(shmrig_topo_bind_thread(topo, -1), -EINVAL);
	assert_int_equal(rec.thread_calls, 1);

	/* Back to hwloc's binder, which on a synthetic topology does nothing and succeeds. */
	assert_int_equal(shmrig_topo_set_binder(topo, NULL), 0);
	assert_int_equal(shmrig_topo_bind_area(topo, buf, page, 1), 0);
	assert_int_equal(rec.area_calls, 2);

	shmrig_topo_free(topo);
	free(buf);
}

static void test_synthetic_binder_error(void **state)
{
	struct recording rec = { .ret = -EPERM };
	struct shmrig_topo_binder binder = { .size = sizeof(struct shmrig_topo_binder),
					     .bind_thread_cpu = record_thread,
					     .bind_area_node = record_area,
					     .ctx = &rec };
	size_t page = page_size();
	shmrig_topo *topo = NULL;
	char *buf;

	(void)state;
	buf = aligned_alloc(page, page);
	assert_non_null(buf);
	assert_int_equal(shmrig_topo_load(TWO_NODES, &topo), 0);
	assert_int_equal(shmrig_topo_set_binder(topo, &binder), 0);
	assert_int_equal(shmrig_topo_bind_area(topo, buf, page, 1), -EPERM);
	assert_non_null(strstr(shmrig_last_error(), "node 1"));
	assert_int_equal(shmrig_topo_bind_thread(topo, 2), -EPERM);
	assert_non_null(strstr(shmrig_last_error(), "CPU 2"));
	assert_int_equal(rec.area_calls, 1);
	assert_int_equal(rec.thread_calls, 1);
	shmrig_topo_free(topo);
	free(buf);
}

static void test_synthetic_area_node_unsupported(void **state)
{
	shmrig_topo *topo = NULL;
	char buf[64] = { 0 };

	(void)state;
	assert_int_equal(shmrig_topo_load(TWO_NODES, &topo), 0);
	assert_int_equal(shmrig_topo_area_node(topo, buf, sizeof(buf)), -ENOTSUP);
	assert_string_not_equal(shmrig_last_error(), "");
	shmrig_topo_free(topo);
}

static void test_load_errors(void **state)
{
	shmrig_topo *topo = NULL;
	char path[256];
	int fd;

	(void)state;
	snprintf(path, sizeof(path), "/tmp/%s-bad-XXXXXX", th_prefix());
	assert_int_equal(shmrig_topo_load("nonsense:x", &topo), -EINVAL);
	assert_null(topo);
	assert_non_null(strstr(shmrig_last_error(), "nonsense:x"));
	assert_int_equal(shmrig_topo_load("", &topo), -EINVAL);
	assert_int_equal(shmrig_topo_load(NULL, &topo), -EINVAL);
	assert_int_equal(shmrig_topo_load(TWO_NODES, NULL), -EINVAL);
	assert_null(topo);

	/* An existing file is read as XML, and this one is not. */
	fd = mkstemp(path);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, "not xml\n", 8), 8);
	close(fd);
	assert_int_equal(shmrig_topo_load(path, &topo), -EINVAL);
	assert_non_null(strstr(shmrig_last_error(), path));
	assert_null(topo);
	assert_int_equal(unlink(path), 0);
}

static void test_xml_round_trip(void **state)
{
	char path[256];
	hwloc_topology_t hw;
	shmrig_topo *topo = NULL;
	int fd;

	(void)state;
	snprintf(path, sizeof(path), "/tmp/%s-XXXXXX.xml", th_prefix());
	fd = mkstemps(path, 4);
	assert_true(fd >= 0);
	close(fd);
	assert_int_equal(hwloc_topology_init(&hw), 0);
	assert_int_equal(hwloc_topology_set_synthetic(hw, TWO_NODES), 0);
	assert_int_equal(hwloc_topology_load(hw), 0);
	assert_int_equal(hwloc_topology_export_xml(hw, path, 0), 0);
	hwloc_topology_destroy(hw);

	assert_int_equal(shmrig_topo_load(path, &topo), 0);
	assert_int_equal(unlink(path), 0);
	check_two_nodes(topo);
	assert_int_equal(shmrig_topo_area_node(topo, path, strlen(path)), -ENOTSUP);
	shmrig_topo_free(topo);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_system_counts),
		cmocka_unit_test(test_system_bind_thread),
		cmocka_unit_test(test_system_bind_area),
		cmocka_unit_test(test_free_ignores_system_and_null),
		cmocka_unit_test(test_synthetic_layout),
		cmocka_unit_test(test_synthetic_bad_node),
		cmocka_unit_test(test_synthetic_binder_sees_request),
		cmocka_unit_test(test_synthetic_binder_error),
		cmocka_unit_test(test_synthetic_area_node_unsupported),
		cmocka_unit_test(test_load_errors),
		cmocka_unit_test(test_xml_round_trip),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
