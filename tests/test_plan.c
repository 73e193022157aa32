/* SPDX-License-Identifier: MIT */
/*
 * shmrig-plan's workload parser and model (issue 14, first slice): a table of
 * bad files, each error naming its field; the model against hand-computed
 * cases (Little's law exactly). Nothing here touches shared memory.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "model.h"
#include "workload.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MIB ((uint64_t)1 << 20)

static struct plan_workload wl;
static struct plan_result res;

static int parse(const char *text, char *err, size_t errlen)
{
	return plan_workload_parse(text, strlen(text), &wl, err, errlen);
}

#define FLOW(body) "{\"flows\": [" body "]}"
#define OK_FLOW "{\"rate\": 10, \"sizes\": [[64, 1]]}"

struct bad_file {
	const char *text;
	const char *field; /* the error must contain this */
};

static const struct bad_file bad_files[] = {
	{ "{}", "flows: missing" },
	{ "{\"flows\": []}", "flows: must be an array of 1 to" },
	{ "{\"flows\": {}}", "flows: must be an array" },
	{ "[1, 2]", "the top level must be an object" },
	{ "{\"flows\": [" OK_FLOW "], \"flowz\": 1}", "unknown key 'flowz'" },
	{ "{\"flows\": [" OK_FLOW "], \"flows\": []}", "not JSON" }, /* duplicate key */
	{ "{\"flows\": [", "not JSON: line 1" },
	{ "nonsense", "not JSON" },
	{ FLOW("3"), "flows[0]: must be an object" },
	{ FLOW("{\"sizes\": [[64, 1]]}"), "flows[0].rate: missing" },
	{ FLOW("{\"rate\": 10}"), "flows[0].sizes: missing" },
	{ FLOW(OK_FLOW ", {\"rate\": -5, \"sizes\": [[64, 1]]}"),
	  "flows[1].rate: -5 is out of range" },
	{ FLOW("{\"rate\": \"fast\", \"sizes\": [[64, 1]]}"), "flows[0].rate: must be a number" },
	{ FLOW("{\"rate\": 1e300, \"sizes\": [[64, 1]]}"),
	  "flows[0].rate: 1e+300 is out of range" },
	{ FLOW("{\"rate\": 0, \"sizes\": [[64, 1]]}"), "flows[0].rate: 0 is out of range" },
	{ FLOW("{\"rate\": 10, \"sizes\": [[64, 1]], \"rat\": 3}"), "flows[0]: unknown key 'rat'" },
	{ FLOW(OK_FLOW ", {\"rate\": 10, \"sizes\": [[0, 1]]}"),
	  "flows[1].sizes[0]: bytes must be" },
	{ FLOW("{\"rate\": 10, \"sizes\": [[64, 1], [64]]}"),
	  "flows[0].sizes[1]: must be [bytes, weight]" },
	{ FLOW("{\"rate\": 10, \"sizes\": [[64, -1]]}"),
	  "flows[0].sizes[0]: weight -1 is out of range" },
	{ FLOW("{\"rate\": 10, \"sizes\": [[64, \"a\"]]}"), "flows[0].sizes[0]: weight must be" },
	{ FLOW("{\"rate\": 10, \"sizes\": [[99999999999999999, 1]]}"),
	  "flows[0].sizes[0]: bytes must be" },
	{ FLOW("{\"rate\": 10, \"sizes\": []}"), "flows[0].sizes: empty histogram" },
	{ FLOW("{\"rate\": 10, \"sizes\": 5}"), "flows[0].sizes: must be a histogram" },
	{ FLOW("{\"rate\": 10, \"sizes\": \"\"}"), "flows[0].sizes: empty" },
	{ FLOW("{\"rate\": 10, \"sizes\": \"1:64-\"}"),
	  "flows[0].sizes: item 1: '64-' is not min-max" },
	{ FLOW("{\"rate\": 10, \"sizes\": \"1:64-4K,3:8K\"}"),
	  "flows[0].sizes: item 2 ('3:8K'): not weight:min-max" },
	{ FLOW("{\"rate\": 10, \"sizes\": \"x:64-4K\"}"), "flows[0].sizes: item 1: weight 'x'" },
	{ FLOW("{\"rate\": 10, \"sizes\": \"1:4K-64\"}"),
	  "flows[0].sizes: item 1: need 1 <= min <= max" },
	{ FLOW("{\"rate\": 10, \"sizes\": \"1:64-4K,\"}"), "flows[0].sizes: item 2: empty" },
	{ FLOW("{\"rate\": 10, \"sizes\": \"1:1-128G\"}"),
	  "flows[0].sizes: item 1: need 1 <= min <= max <= 64G" },
	{ FLOW("{\"rate\": 10, \"sizes\": [[64, 1]], \"producers\": 0}"),
	  "flows[0].producers: 0 is out of range" },
	{ FLOW("{\"rate\": 10, \"sizes\": [[64, 1]], \"producers\": 1.5}"),
	  "flows[0].producers: must be an integer" },
	{ FLOW("{\"rate\": 10, \"sizes\": [[64, 1]], \"consumers\": 1e12}"),
	  "flows[0].consumers: must be an integer" },
	{ FLOW("{\"rate\": 10, \"sizes\": [[64, 1]], \"window\": 100000}"),
	  "flows[0].window: 100000 is out of range" },
	{ FLOW("{\"rate\": 10, \"sizes\": [[64, 1]], \"arrival\": \"bursty\"}"),
	  "flows[0].arrival: 'bursty' is not one of" },
	{ FLOW("{\"rate\": 10, \"sizes\": [[64, 1]], \"codec\": \"arrow\"}"),
	  "flows[0].codec: 'arrow' is not one of" },
	{ FLOW("{\"rate\": 10, \"sizes\": [[64, 1]], \"backend\": 3}"),
	  "flows[0].backend: must be a string" },
	{ FLOW("{\"rate\": 10, \"sizes\": [[64, 1]], \"hold\": -1}"),
	  "flows[0].hold: -1 ms is out of range" },
	{ FLOW("{\"rate\": 10, \"sizes\": [[64, 1]], \"hold\": \"long\"}"),
	  "flows[0].hold: must be milliseconds" },
	{ FLOW("{\"rate\": 10, \"sizes\": [[64, 1]], \"hold\": {\"p99_ms\": 3}}"),
	  "flows[0].hold.mean_ms: missing" },
	{ FLOW("{\"rate\": 10, \"sizes\": [[64, 1]], \"hold\": {\"mean_ms\": 5, \"p99_ms\": 3}}"),
	  "flows[0].hold: p99_ms 3 is below mean_ms 5" },
	{ FLOW("{\"rate\": 10, \"sizes\": [[64, 1]], \"hold\": {\"mean_ms\": 5, \"p90_ms\": 3}}"),
	  "flows[0].hold: unknown key 'p90_ms'" },
	{ FLOW("{\"rate\": 10, \"sizes\": [[64, 1]], \"numa\": {\"producer\": -1}}"),
	  "flows[0].numa.producer: -1 is out of range" },
	{ FLOW("{\"rate\": 10, \"sizes\": [[64, 1]], \"numa\": {\"consumer\": 1, \"prod\": 1}}"),
	  "flows[0].numa: unknown key 'prod'" },
	{ FLOW("{\"rate\": 10, \"sizes\": [[64, 1]], \"numa\": 0}"), "flows[0].numa: must be" },
	{ FLOW("{\"rate\": 10, \"sizes\": [[64, 1]], \"flight_ms\": 1e9}"),
	  "flows[0].flight_ms: 1e+09 is out of range" },
	{ FLOW("{\"rate\": 10, \"sizes\": [[64, 1]], \"name\": \"\"}"),
	  "flows[0].name: must be a string" },
	{ "{\"name\": 7, \"flows\": [" OK_FLOW "]}", "name: must be a string" },
};

static void test_bad_files(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(bad_files) / sizeof(bad_files[0]); i++) {
		char err[512] = "";
		int ret = parse(bad_files[i].text, err, sizeof(err));

		if (ret != -EINVAL || !strstr(err, bad_files[i].field))
			fail_msg("row %zu: %s\n  got %d '%s'\n  want -EINVAL and '%s'", i,
				 bad_files[i].text, ret, err, bad_files[i].field);
	}
}

static void test_empty_and_huge(void **state)
{
	char err[512] = "", *big;
	size_t len = 10u << 20;

	(void)state;
	assert_int_equal(plan_workload_parse("", 0, &wl, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "empty file"));
	big = malloc(len);
	assert_non_null(big);
	memset(big, ' ', len);
	big[0] = '{';
	big[len - 1] = '}';
	assert_int_equal(plan_workload_parse(big, len, &wl, err, sizeof(err)), -EFBIG);
	assert_non_null(strstr(err, "file too large"));
	free(big);
}

/* Through files: a missing one, an empty one, 10 MB (refused after reading 1 MiB + 1). */
static void test_load_files(void **state)
{
	char path[] = "/tmp/p_plan_XXXXXX", err[512] = "";
	int fd;
	FILE *f;

	(void)state;
	assert_int_equal(plan_workload_load("/nonexistent/w.json", &wl, err, sizeof(err)), -ENOENT);
	assert_non_null(strstr(err, "/nonexistent/w.json"));
	fd = mkstemp(path);
	assert_true(fd >= 0);
	close(fd);
	assert_int_equal(plan_workload_load(path, &wl, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "empty file"));
	f = fopen(path, "w");
	assert_non_null(f);
	for (int i = 0; i < 10 * 1024; i++)
		fprintf(f, "%1024s", " ");
	fclose(f);
	assert_int_equal(plan_workload_load(path, &wl, err, sizeof(err)), -EFBIG);
	assert_non_null(strstr(err, "file too large"));
	assert_int_equal(plan_workload_load("/tmp", &wl, err, sizeof(err)), -EINVAL);
	unlink(path);
}

static void test_defaults_and_example(void **state)
{
	const char *dir = getenv("SHMRIG_PLAN_EXAMPLES");
	char err[512] = "", path[1024];

	(void)state;
	assert_int_equal(parse(FLOW(OK_FLOW), err, sizeof(err)), 0);
	assert_int_equal(wl.nflows, 1);
	assert_int_equal(wl.flows[0].producers, 1);
	assert_int_equal(wl.flows[0].window, 8);
	assert_string_equal(wl.flows[0].codec, "bytes");
	assert_string_equal(wl.flows[0].backend, "ring");
	assert_string_equal(wl.flows[0].name, "flow0");
	if (!dir)
		skip();
	snprintf(path, sizeof(path), "%s/small_messages.json", dir);
	if (plan_workload_load(path, &wl, err, sizeof(err)))
		fail_msg("%s", err);
	assert_int_equal(wl.nflows, 2);
	assert_int_equal(wl.flows[0].nsizes, 2);
	assert_int_equal(wl.flows[0].sizes[1].max, 4096);
	assert_int_equal(wl.flows[1].arrival, PLAN_ARRIVAL_CONSTANT);
}

static void test_size_spec(void **state)
{
	struct plan_size_item items[4];
	char err[256];

	(void)state;
	/* shmrig-stress's default */
	assert_int_equal(plan_parse_size_spec("80:16-4K,17:4K-1M,3:1M-4M", items, 4, err,
					      sizeof(err)),
			 3);
	assert_true(items[1].weight == 17);
	assert_int_equal(items[1].min, 4096);
	assert_int_equal(items[2].max, 4 * MIB);
	assert_int_equal(plan_parse_size_spec("1:64-64,1:64-64,1:64-64,1:64-64,1:64-64", items, 4,
					      err, sizeof(err)),
			 -EINVAL);
	assert_non_null(strstr(err, "more than 4 items"));
}

/* What pool_arena.c packs: descriptors in the chunk below 64 KiB, outside above. */
static void test_geometry(void **state)
{
	(void)state;
	assert_int_equal(plan_blocks_per_chunk(0), 21845); /* 2 MiB / (64 + 32), aligned */
	/* 4 KiB: 508 descriptors round up to 16 KiB, then 508 x 4 KiB: exactly 2 MiB */
	assert_int_equal(plan_blocks_per_chunk(6), 508);
	assert_int_equal(plan_blocks_per_chunk(10), 32); /* 64 KiB: external descriptors */
	assert_int_equal(plan_blocks_per_chunk(14), 2);  /* 1 MiB */
	assert_int_equal(plan_class_of(1), 0);
	assert_int_equal(plan_class_of(64), 0);
	assert_int_equal(plan_class_of(65), 1);
	assert_int_equal(plan_class_of(MIB), 14);
	assert_int_equal(plan_class_of(MIB + 1), SHMRIG_POOL_NUM_CLASSES);
}

static void model_of(const char *text)
{
	char err[512] = "";

	if (parse(text, err, sizeof(err)))
		fail_msg("%s", err);
	plan_model(&wl, &res);
}

/* 1000/s of 64 B held 10 ms: L = 1000 * 0.010 = 10 blocks of class 0, one chunk. */
static void test_little_exact(void **state)
{
	(void)state;
	model_of(FLOW(
		"{\"rate\": 1000, \"sizes\": [[64, 1]], \"hold\": 10, \"codec\": \"ndarray\"}"));
	assert_float_equal(res.flows[0].classes[0].blocks, 10.0, 1e-9);
	assert_int_equal(res.flows[0].classes[0].chunks, 1);
	assert_int_equal(res.flows[0].classes[0].bytes, 2 * MIB);
	for (unsigned c = 1; c < SHMRIG_POOL_NUM_CLASSES; c++)
		assert_int_equal(res.flows[0].classes[c].chunks, 0);
	/* one chunk and the header's chunk 0 */
	assert_int_equal(res.flows[0].arena_size, 4 * MIB);
	assert_int_equal(res.flows[0].pool_max, 4 * MIB);
	assert_int_equal(res.nnodes, 1);
	assert_int_equal(res.nodes[0].hugepages, 2);
	assert_int_equal(res.dev_shm_bytes, 4 * MIB);
	/* flight adds rate * flight: 1000 * 0.002 = 2 more */
	model_of(FLOW("{\"rate\": 1000, \"sizes\": [[64, 1]], \"hold\": 10, \"flight_ms\": 2}"));
	assert_float_equal(res.flows[0].classes[0].blocks, 12.0, 1e-9);
	/* ... but a producer has at most `window` in flight: 1000 * 0.1 = 100 > 8 */
	model_of(FLOW("{\"rate\": 1000, \"sizes\": [[64, 1]], \"flight_ms\": 100, \"window\": 8}"));
	assert_float_equal(res.flows[0].in_flight, 8.0, 1e-9);
	assert_int_equal(res.flows[0].window_bound, 1);
	/* a chunk is per producer: 21846 blocks over 2 producers fit one chunk each */
	model_of(FLOW("{\"rate\": 21846, \"sizes\": [[64, 1]], \"hold\": 1000, \"producers\": 2}"));
	assert_int_equal(res.flows[0].classes[0].chunks, 2);
	model_of(FLOW("{\"rate\": 21846, \"sizes\": [[64, 1]], \"hold\": 1000}"));
	assert_int_equal(res.flows[0].classes[0].chunks, 2);
}

/* Mixed sizes: a histogram splits by weight, a log-uniform range by log-length. */
static void test_mixed(void **state)
{
	(void)state;
	model_of(FLOW("{\"rate\": 1000, \"sizes\": [[64, 3], [4096, 1]], \"hold\": 20}"));
	assert_float_equal(res.flows[0].classes[0].blocks, 15.0, 1e-9);
	assert_float_equal(res.flows[0].classes[6].blocks, 5.0, 1e-9);
	assert_int_equal(res.flows[0].chunks_per_producer, 2);
	assert_int_equal(res.flows[0].arena_size, 6 * MIB);
	/* 64-256 log-uniform: half in (64, 128], half in (128, 256] */
	model_of(FLOW("{\"rate\": 1000, \"sizes\": \"1:64-256\", \"hold\": 10}"));
	assert_float_equal(res.flows[0].classes[0].probability, 0.0, 1e-12);
	assert_float_equal(res.flows[0].classes[1].blocks, 5.0, 1e-9);
	assert_float_equal(res.flows[0].classes[2].blocks, 5.0, 1e-9);
	/* two flows on two nodes: each node gets its own */
	model_of(FLOW(
		"{\"rate\": 1000, \"sizes\": [[64, 1]], \"hold\": 10},"
		"{\"rate\": 1000, \"sizes\": [[64, 1]], \"hold\": 10, \"numa\": {\"producer\": 1}}"));
	assert_int_equal(res.nnodes, 2);
	assert_int_equal(res.nodes[0].node, 0);
	assert_int_equal(res.nodes[1].node, 1);
	assert_int_equal(res.nodes[1].hugepages, 2);
	assert_int_equal(res.hugepages, 4);
	assert_float_equal(res.classes[0].blocks, 20.0, 1e-9);
}

/* Large blocks: 3 MiB + trailer is a 4 MiB segment; 100/s held 50 ms = 5 live, and 4 cached. */
static void test_large(void **state)
{
	(void)state;
	model_of(FLOW("{\"rate\": 100, \"sizes\": [[3145728, 1]], \"hold\": 50}"));
	assert_float_equal(res.flows[0].large_blocks, 5.0, 1e-9);
	assert_float_equal(res.flows[0].large_segment_bytes, 4.0 * MIB, 1e-3);
	assert_int_equal(res.flows[0].large_bytes, (5 + 4) * 4 * MIB);
	assert_int_equal(res.flows[0].arena_size, 0);
	assert_int_equal(res.flows[0].pool_max, 36 * MIB);
	assert_int_equal(res.hugepages, 18);
	/* exactly 2 MiB needs its trailer: a 4 MiB segment */
	model_of(FLOW("{\"rate\": 100, \"sizes\": [[2097152, 1]], \"hold\": 10}"));
	assert_float_equal(res.flows[0].large_segment_bytes, 4.0 * MIB, 1e-3);
	/* 1M-4M log-uniform: half the blocks are large (above 1 MiB: all of it but the point 1M) */
	model_of(FLOW("{\"rate\": 100, \"sizes\": \"1:512K-2M\", \"hold\": 10}"));
	assert_float_equal(res.flows[0].classes[14].probability, 0.5, 1e-9);
	assert_float_equal(res.flows[0].large_probability, 0.5, 1e-9);
	/* (1M, 2M-128] in 2 MiB segments, (2M-128, 2M] in 4 MiB: nearly all 2 MiB */
	assert_true(res.flows[0].large_segment_bytes > 2.0 * MIB);
	assert_true(res.flows[0].large_segment_bytes < 2.001 * MIB);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_bad_files),    cmocka_unit_test(test_empty_and_huge),
		cmocka_unit_test(test_load_files),   cmocka_unit_test(test_defaults_and_example),
		cmocka_unit_test(test_size_spec),    cmocka_unit_test(test_geometry),
		cmocka_unit_test(test_little_exact), cmocka_unit_test(test_mixed),
		cmocka_unit_test(test_large),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
