/* SPDX-License-Identifier: MIT */
/*
 * shmrig-plan's workload parser and model (issue 14): a table of bad files,
 * each error naming its field; the model against hand-computed cases
 * (Little's law exactly); the simulation against cases whose occupancy is
 * known in closed form (Poisson arrivals and a constant hold: Poisson(lambda
 * W); constant arrivals: lambda W exactly; a full window: the window);
 * the results file's errors and the saturation arithmetic on a hand-made
 * one. Nothing here touches shared memory, and nothing is timed.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "model.h"
#include "results.h"
#include "sim.h"
#include "workload.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
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

/* ---- the simulation ---- */

static struct plan_sim_result sim;

static void sim_of(const char *text, const struct plan_sim_opts *opts)
{
	char err[512] = "";
	int ret;

	if (parse(text, err, sizeof(err)))
		fail_msg("%s", err);
	plan_model(&wl, &res);
	ret = plan_sim_run(&wl, opts, &sim);
	if (ret)
		fail_msg("plan_sim_run: %d", ret);
}

/* The smallest k with P(Poisson(mu) <= k) >= q. */
static double poisson_quantile(double mu, double q)
{
	double term = exp(-mu), cdf = term;
	unsigned k = 0;

	while (cdf < q) {
		term *= mu / ++k;
		cdf += term;
	}
	return k;
}

/*
 * Poisson arrivals, a constant hold W: the live blocks are Poisson(lambda W)
 * at any instant (M/D/infinity). 1000/s held 10 ms: mean 10, p99 18, p99.9 21.
 * 1000 s simulated, samples 0.1 s apart (10 W: independent).
 */
static void test_sim_poisson(void **state)
{
	struct plan_sim_opts o = { .seed = 1, .duration_s = 1000 };
	const struct plan_stat *st;

	(void)state;
	sim_of(FLOW("{\"rate\": 1000, \"sizes\": [[64, 1]], \"hold\": 10}"), &o);
	st = &sim.flows[0].blocks[0];
	assert_float_equal(poisson_quantile(10, 0.99), 18, 0);
	assert_float_equal(st->mean, 10, 0.3);
	assert_float_equal(st->p99, poisson_quantile(10, 0.99), 1);
	assert_float_equal(st->p999, poisson_quantile(10, 0.999), 1);
	/* one producer: its pool sees what the flow does */
	assert_float_equal(sim.flows[0].blocks_per_producer[0].p99, st->p99, 0);
	assert_float_equal(sim.flows[0].achieved_rate, 1000, 10);
	assert_int_equal(sim.event_capped, 0);
	assert_float_equal(sim.simulated_s, 1000, 1e-9);
	/* live bytes: 64 a block */
	assert_float_equal(sim.flows[0].bytes.mean, 64 * st->mean, 1e-6);
	assert_float_equal(sim.blocks[0].p99, st->p99, 0);
	assert_int_equal(sim.nnodes, 1);
	assert_float_equal(sim.nodes[0].blocks.p999, st->p999, 0);
	plan_sim_free(&sim);
}

/* Constant arrivals, constant hold: lambda W at every instant, give or take the edges. */
static void test_sim_constant(void **state)
{
	struct plan_sim_opts o = { .seed = 1, .duration_s = 100 };
	const struct plan_stat *st;

	(void)state;
	sim_of(FLOW("{\"rate\": 1000, \"sizes\": [[64, 1]], \"hold\": 10, "
		    "\"arrival\": \"constant\"}"),
	       &o);
	st = &sim.flows[0].blocks[0];
	assert_float_equal(st->mean, 10, 0.05);
	assert_true(st->max <= 11);
	assert_true(st->p99 >= 9 && st->p99 <= 11);
	/* flight counts too: 1000/s, 3 ms + 7 ms is the same 10 */
	plan_sim_free(&sim);
	sim_of(FLOW("{\"rate\": 1000, \"sizes\": [[64, 1]], \"hold\": 7, \"flight_ms\": 3, "
		    "\"arrival\": \"constant\"}"),
	       &o);
	assert_float_equal(sim.flows[0].blocks[0].mean, 10, 0.05);
	assert_true(sim.flows[0].blocks[0].max <= 11);
	plan_sim_free(&sim);
}

/*
 * The window: 1000/s into 100 ms of flight with a window of 8 cannot go: the
 * producer allocates 8 per 100 ms (80/s) and always has 8 live, while its
 * queue grows. 1000/s into 5 ms with a window of 8: 5 in flight on average
 * (Little), never more than 8, and some messages wait.
 */
static void test_sim_window(void **state)
{
	struct plan_sim_opts o = { .seed = 1, .duration_s = 100 };
	const struct plan_sim_flow *sf;

	(void)state;
	sim_of(FLOW("{\"rate\": 1000, \"sizes\": [[64, 1]], \"flight_ms\": 100, \"window\": 8, "
		    "\"arrival\": \"constant\"}"),
	       &o);
	sf = &sim.flows[0];
	assert_int_equal(sf->window_saturated, 1);
	assert_float_equal(sf->achieved_rate, 80, 0.5);
	assert_float_equal(sf->blocks[0].mean, 8, 0.01);
	assert_float_equal(sf->blocks[0].max, 8, 0);
	assert_true(sf->window_wait_mean_s > 1); /* the queue grows: 92% wait ever longer */
	plan_sim_free(&sim);
	sim_of(FLOW("{\"rate\": 1000, \"sizes\": [[64, 1]], \"flight_ms\": 5, \"window\": 8}"), &o);
	sf = &sim.flows[0];
	assert_int_equal(sf->window_saturated, 0);
	assert_float_equal(sf->blocks[0].mean, 5, 0.15);
	assert_float_equal(sf->blocks[0].max, 8, 0);
	assert_true(sf->window_wait_mean_s > 0);
	assert_float_equal(sf->achieved_rate, 1000, 10);
	plan_sim_free(&sim);
}

/* The same seed, the same result; another seed, another one. */
static void test_sim_deterministic(void **state)
{
	static struct plan_sim_result first;
	struct plan_sim_opts o = { .seed = 7 };
	const char *text = FLOW("{\"rate\": 20000, \"sizes\": \"90:64-512,10:512-4K\", "
				"\"hold\": {\"mean_ms\": 2, \"p99_ms\": 10}, \"producers\": 3}");

	(void)state;
	sim_of(text, &o);
	first = sim;
	sim_of(text, &o);
	assert_memory_equal(first.flows, sim.flows, sizeof(sim.flows));
	assert_memory_equal(first.series_blocks, sim.series_blocks, sim.samples * sizeof(double));
	plan_sim_free(&sim);
	o.seed = 8;
	sim_of(text, &o);
	assert_true(memcmp(first.flows, sim.flows, sizeof(sim.flows)) != 0);
	/* but the same distribution: the means agree within a few % */
	assert_float_equal(sim.flows[0].blocks[1].mean, first.flows[0].blocks[1].mean,
			   0.05 * first.flows[0].blocks[1].mean);
	plan_sim_free(&sim);
	plan_sim_free(&first);
}

/*
 * Sizing at p99.9: 1 MiB blocks (2 a chunk), 100/s held 10 ms. The mean is 1
 * block (1 chunk); Poisson(1)'s p99.9 is 5 blocks: 3 chunks.
 */
static void test_sim_tail_sizing(void **state)
{
	struct plan_sim_opts o = { .seed = 1, .duration_s = 2000 };
	static struct plan_result tail;

	(void)state;
	sim_of(FLOW("{\"rate\": 100, \"sizes\": [[1048576, 1]], \"hold\": 10}"), &o);
	assert_int_equal(res.flows[0].classes[14].chunks, 1);
	assert_float_equal(sim.flows[0].blocks_per_producer[14].p999, poisson_quantile(1, 0.999),
			   1);
	plan_model_tail(&wl, &res, &sim, &tail);
	assert_int_equal(tail.flows[0].classes[14].chunks,
			 (uint64_t)ceil(sim.flows[0].blocks_per_producer[14].p999 / 2));
	assert_true(tail.pool_bytes > res.pool_bytes);
	/* the mean stays Little's */
	assert_float_equal(tail.flows[0].classes[14].blocks, 1.0, 1e-9);
	plan_sim_free(&sim);
}

/* More producers than are simulated: the total keeps the flow's mean and spread. */
static void test_sim_many_producers(void **state)
{
	struct plan_sim_opts o = { .seed = 3, .duration_s = 200 };
	const struct plan_stat *st;

	(void)state;
	sim_of(FLOW("{\"rate\": 6400, \"sizes\": [[64, 1]], \"hold\": 10, \"producers\": 64}"), &o);
	assert_int_equal(sim.flows[0].producers_simulated, PLAN_SIM_MAX_PRODUCERS);
	st = &sim.flows[0].blocks[0];
	assert_float_equal(st->mean, 64, 64 * 0.03);
	assert_float_equal(st->p99, poisson_quantile(64, 0.99), 3);
	/* one producer's pool: Poisson(1) */
	assert_float_equal(sim.flows[0].blocks_per_producer[0].p999, poisson_quantile(1, 0.999), 1);
	plan_sim_free(&sim);
}

/*
 * --pool-limit: 3 MiB blocks take 4 MiB segments; 100/s held 50 ms is 5 live,
 * 20 MiB. A 16 MiB pool runs out, on a large block, in the first 50 ms or so;
 * a 64 MiB one never does here. Class blocks: 64 B blocks need one chunk and
 * the arena's header chunk, 4 MiB: a 2 MiB pool runs out on class 0.
 */
static void test_sim_pool_limit(void **state)
{
	struct plan_sim_opts o = { .seed = 1, .duration_s = 20, .pool_limit = 16 * MIB };

	(void)state;
	sim_of(FLOW("{\"rate\": 100, \"sizes\": [[3145728, 1]], \"hold\": 50, "
		    "\"arrival\": \"constant\"}"),
	       &o);
	assert_int_equal(sim.flows[0].exhausted, 1);
	assert_int_equal(sim.flows[0].exhaust_class, PLAN_SIM_LARGE);
	assert_true(sim.flows[0].exhaust_time_s < 0.06);
	assert_int_equal(sim.flows[0].exhaust_need, 20 * MIB);
	plan_sim_free(&sim);
	o.pool_limit = 64 * MIB;
	sim_of(FLOW("{\"rate\": 100, \"sizes\": [[3145728, 1]], \"hold\": 50}"), &o);
	assert_int_equal(sim.flows[0].exhausted, 0);
	plan_sim_free(&sim);
	o.pool_limit = 2 * MIB;
	sim_of(FLOW("{\"rate\": 100, \"sizes\": [[64, 1]], \"hold\": 50}"), &o);
	assert_int_equal(sim.flows[0].exhausted, 1);
	assert_int_equal(sim.flows[0].exhaust_class, 0);
	assert_int_equal(sim.flows[0].exhaust_need, 4 * MIB);
	plan_sim_free(&sim);
}

/* The event cap cuts the simulated time, and says so. */
static void test_sim_event_cap(void **state)
{
	struct plan_sim_opts o = { .seed = 1, .max_events = 200000 };

	(void)state;
	sim_of(FLOW("{\"rate\": 100000, \"sizes\": [[64, 1]], \"hold\": 1}"), &o);
	assert_int_equal(sim.event_capped, 1);
	/* 100000 messages of an allocation and a free: 1 s */
	assert_float_equal(sim.warmup_s + sim.simulated_s, 1.0, 1e-9);
	assert_true(sim.events <= 200000);
	plan_sim_free(&sim);
	o.max_events = PLAN_SIM_MAX_EVENTS + 1;
	assert_int_equal(plan_sim_run(&wl, &o, &sim), -EINVAL);
}

/* ---- the results file ---- */

static struct plan_results results;

/* A hand-made suite file: the rows shmrig-plan reads, in Google Benchmark's shape. */
#define ROW(name, fields) "{\"name\": \"" name "\", \"run_name\": \"" name "\", " fields "}"
#define HAND_MADE                                                                                                                                                                                                                                                                                                                                                                                                                           \
	"{\"context\": {\"cpu_model\": \"hand\"}, \"benchmarks\": [" ROW(                                                                                                                                                                                                                                                                                                                                                                   \
		"codec/bytes/encode/64",                                                                                                                                                                                                                                                                                                                                                                                                    \
		"\"run_type\": \"iteration\", \"cpu_time\": 999, "                                                                                                                                                                                                                                                                                                                                                                          \
		"\"time_unit\": \"ns\"") "," ROW("codec/bytes/encode/64",                                                                                                                                                                                                                                                                                                                                                                   \
						 "\"run_type\": \"aggregate\", \"aggregate_name\": "                                                                                                                                                                                                                                                                                                                                        \
						 "\"median\", \"cpu_time\": 100, \"time_unit\": \"ns\"") "," ROW("codec/bytes/encode/64",                                                                                                                                                                                                                                                                                                   \
														 "\"run_type\": \"aggregate\", \"aggregate_name\": "                                                                                                                                                                                                                                                                        \
														 "\"mean\", \"cpu_time\": 5, \"time_unit\": \"ns\"") "," ROW("codec/bytes/encode/4096",                                                                                                                                                                                                                                     \
																					     "\"cpu_time\": 0.4, \"time_unit\": \"us\"") "," ROW("codec/bytes/decode/64",                                                                                                                                                                                   \
																												 "\"cpu_time\": 200, \"time_unit\": \"ns\"") "," ROW("codec/bytes/decode/4096",                                                                                                                             \
																																		     "\"cpu_time\": 800, \"time_unit\": \"ns\"") "," ROW("codec/bytes/decode/65536",                                                                        \
																																									 "\"error_occurred\": true, \"error_message\": "                                                    \
																																									 "\"boom\"") "," ROW("channel/ring/batch64/manual_time",                                            \
																																											     "\"real_time\": 6.4, \"cpu_time\": 3.2, "                                      \
																																											     "\"time_unit\": \"us\", \"items_per_second\": "                                \
																																											     "1e7") "," ROW("codec/memcpy/64",                                              \
																																													    "\"bytes_per_second\": 5e10") "," ROW("codec/memcpy/268435456", \
																																																		  "\"bytes_per_second\": 1e10") "]}"

static void results_of(const char *text)
{
	char err[1024] = "";

	if (plan_results_parse(text, strlen(text), &results, err, sizeof(err)))
		fail_msg("%s", err);
}

/* Costs: the median wins, log-log between sizes, flat below, proportional above. */
static void test_results_curves(void **state)
{
	(void)state;
	results_of(HAND_MADE);
	assert_string_equal(results.cpu_model, "hand");
	assert_int_equal(results.encode[3].n, 2);
	assert_float_equal(plan_cost_at(&results.encode[3], 64), 100e-9, 1e-15);
	/* 512 is half way from 64 to 4096 in log: sqrt(100 x 400) */
	assert_float_equal(plan_cost_at(&results.encode[3], 512), 200e-9, 1e-15);
	assert_float_equal(plan_cost_at(&results.encode[3], 1), 100e-9, 1e-15);
	assert_float_equal(plan_cost_at(&results.encode[3], 8192), 800e-9, 1e-15);
	/* the errored row does not count, but is remembered */
	assert_int_equal(results.decode[3].n, 2);
	assert_int_equal(results.decode[3].errored, 1);
	assert_float_equal(results.channel_rate[2], 1e7, 1e-3);
	assert_float_equal(results.channel_cpu_share[2], 0.5, 1e-12);
	/* the largest copy is the memory's bandwidth */
	assert_float_equal(results.memcpy_bandwidth, 1e10, 1e-3);
}

/*
 * 1e6/s of 64 B, bytes codec over ring, 2 producers and 4 consumers, no flight:
 *   producer core: 5e5/s x (100 ns encode + 50 ns send) = 0.075
 *   consumer core: 2.5e5/s x (200 ns decode + 50 ns receive) = 0.0625
 *   channel: 5e5 / 1e7 = 0.05; memory: 1e6 x 64 B x 2 passes / 1e10 = 0.0128
 * The producer's core saturates first, at 1 / 0.075 = 13.33 x: 1.333e7 msgs/s.
 */
static void test_results_saturation(void **state)
{
	static struct plan_cpu cpu;
	const struct plan_cpu_flow *c = &cpu.flows[0];
	char err[1024] = "";

	(void)state;
	results_of(HAND_MADE);
	if (parse(FLOW("{\"rate\": 1e6, \"sizes\": [[64, 1]], \"producers\": 2, "
		       "\"consumers\": 4, \"codec\": \"bytes\", \"backend\": \"ring\"}"),
		  err, sizeof(err)))
		fail_msg("%s", err);
	assert_int_equal(plan_results_check(&results, &wl, err, sizeof(err)), 0);
	plan_cpu_model(&wl, &results, &cpu);
	assert_float_equal(c->transport_s, 50e-9, 1e-15);
	assert_float_equal(c->encode_cores, 0.1, 1e-9);
	assert_float_equal(c->decode_cores, 0.2, 1e-9);
	assert_float_equal(c->transport_cores, 0.1, 1e-9);
	assert_float_equal(c->load[PLAN_RES_PRODUCER_CORE], 0.075, 1e-9);
	assert_float_equal(c->load[PLAN_RES_CONSUMER_CORE], 0.0625, 1e-9);
	assert_float_equal(c->load[PLAN_RES_CHANNEL], 0.05, 1e-9);
	assert_float_equal(c->load[PLAN_RES_WINDOW], 0, 1e-12);
	assert_float_equal(c->load[PLAN_RES_MEMORY_BANDWIDTH], 0.0128, 1e-9);
	assert_int_equal(c->first, PLAN_RES_PRODUCER_CORE);
	assert_float_equal(c->headroom, 1 / 0.075, 1e-6);
	assert_float_equal(c->saturation_rate, 1e6 / 0.075, 1);
	assert_float_equal(cpu.headroom, 1 / 0.075, 1e-6);
	/* a window of 8 over 0.1 ms of flight at 5e5/s a producer: load 6.25, saturated */
	wl.flows[0].flight_ms = 0.1;
	plan_cpu_model(&wl, &results, &cpu);
	assert_int_equal(c->first, PLAN_RES_WINDOW);
	assert_float_equal(c->saturation_rate, 1e6 / 6.25, 1e-3);
	/* ndarray has no rows here: named */
	snprintf(wl.flows[0].codec, sizeof(wl.flows[0].codec), "ndarray");
	assert_int_equal(plan_results_check(&results, &wl, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "codec/ndarray/encode/<size>: no rows"));
	assert_non_null(strstr(err, "codec/ndarray/decode/<size>: no rows"));
}

/*
 * With a paced row and the machine's CPUs: 1e4/s of 64 B, bytes over the
 * ring, 2 producers and 2 consumers; a paced message costs 20 us of both
 * sides' CPU, so 10 us a side:
 *   producer core: 5e3/s x (0.1 + 10) us = 0.0505; consumer: 5e3 x 10.2 us = 0.051
 *   the machine: 1e4/s x (0.1 + 0.2 + 20) us = 0.203 cores of 2: 0.1015, first
 * Without the paced row the same flow saturates on a consumer's core at 1/0.0025.
 */
static void test_results_paced_machine(void **state)
{
	static struct plan_cpu cpu;
	const struct plan_cpu_flow *c = &cpu.flows[0];
	char err[1024] = "", text[2048];
	const char *rows = strstr(HAND_MADE, "\"benchmarks\": [") + strlen("\"benchmarks\": [");

	(void)state;
	snprintf(text, sizeof(text),
		 "{\"context\": {\"cpu_model\": \"hand\", \"num_cpus\": 2}, \"benchmarks\": ["
		 "{\"name\": \"channel/ring/paced/manual_time\", \"run_name\": "
		 "\"channel/ring/paced/manual_time\", \"real_time\": 20, \"cpu_time\": 1, "
		 "\"time_unit\": \"us\"}, %s",
		 rows);
	results_of(text);
	assert_int_equal(results.num_cpus, 2);
	assert_float_equal(results.paced_cpu_s[2], 20e-6, 1e-15);
	if (parse(FLOW("{\"rate\": 1e4, \"sizes\": [[64, 1]], \"producers\": 2, "
		       "\"consumers\": 2, \"codec\": \"bytes\", \"backend\": \"ring\"}"),
		  err, sizeof(err)))
		fail_msg("%s", err);
	plan_cpu_model(&wl, &results, &cpu);
	assert_true(c->paced);
	assert_float_equal(c->transport_s, 10e-6, 1e-15);
	assert_float_equal(c->load[PLAN_RES_PRODUCER_CORE], 0.0505, 1e-9);
	assert_float_equal(c->load[PLAN_RES_CONSUMER_CORE], 0.051, 1e-9);
	assert_float_equal(cpu.machine_cores, 0.203, 1e-9);
	assert_float_equal(c->load[PLAN_RES_MACHINE], 0.1015, 1e-9);
	assert_int_equal(c->first, PLAN_RES_MACHINE);
	assert_float_equal(cpu.headroom, 1 / 0.1015, 1e-6);
	/* the hand-made file alone: no paced row, no CPU count */
	results_of(HAND_MADE);
	plan_cpu_model(&wl, &results, &cpu);
	assert_false(c->paced);
	assert_float_equal(c->load[PLAN_RES_MACHINE], 0, 1e-12);
	assert_int_equal(c->first, PLAN_RES_CONSUMER_CORE);
}

struct bad_results {
	const char *text;
	const char *want;
};

static const struct bad_results bad_results[] = {
	{ "nonsense", "not JSON" },
	{ "{\"benchmarks\": [", "not JSON" },
	{ "[]", "no \"benchmarks\" array" },
	{ "{\"context\": {}}", "no \"benchmarks\" array" },
	{ "{\"benchmarks\": [3]}", "benchmarks[0]: must be an object" },
	{ "{\"benchmarks\": [{\"name\": 3}]}", "benchmarks[0].name: must be a string" },
	{ "{\"benchmarks\": [" ROW("codec/bytes/encode/64", "\"cpu_time\": \"fast\"") "]}",
	  "benchmarks[0] (codec/bytes/encode/64): cpu_time must be a positive number" },
	{ "{\"benchmarks\": [" ROW("codec/bytes/encode/64",
				   "\"cpu_time\": 5, \"time_unit\": \"fortnights\"") "]}",
	  "time_unit of ns, us, ms or s" },
	{ "{\"benchmarks\": [" ROW("codec/memcpy/64", "\"bytes_per_second\": -1") "]}",
	  "bytes_per_second must be a positive number" },
	{ "{\"benchmarks\": [" ROW("channel/ring/batch64", "\"real_time\": 1") "]}",
	  "needs items_per_second, real_time and cpu_time" },
};

static void test_results_bad(void **state)
{
	char err[1024];

	(void)state;
	for (size_t i = 0; i < sizeof(bad_results) / sizeof(bad_results[0]); i++) {
		int ret = plan_results_parse(bad_results[i].text, strlen(bad_results[i].text),
					     &results, err, sizeof(err));

		if (ret != -EINVAL || !strstr(err, bad_results[i].want))
			fail_msg("row %zu: %s\n  got %d '%s'\n  want -EINVAL and '%s'", i,
				 bad_results[i].text, ret, err, bad_results[i].want);
	}
}

/* A file without the rows a workload needs: every missing family named, errors quoted. */
static void test_results_missing_rows(void **state)
{
	char err[1024] = "";

	(void)state;
	results_of("{\"benchmarks\": [" ROW("codec/bytes/encode/64", "\"cpu_time\": 100") "," ROW(
		"codec/bytes/decode/64", "\"error_occurred\": true, \"error_message\": "
					 "\"decode: Device or resource busy\"") "]}");
	if (parse(FLOW("{\"rate\": 10, \"sizes\": [[64, 1]], \"backend\": \"pipe\"}"), err,
		  sizeof(err)))
		fail_msg("%s", err);
	assert_int_equal(plan_results_check(&results, &wl, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "codec/bytes/decode/<size>: all 1 rows errored ('decode: "
				    "Device or resource busy')"));
	assert_non_null(strstr(err, "channel/pipe/batch64: no rows"));
	assert_non_null(strstr(err, "codec/memcpy/<size>: no rows"));
	assert_null(strstr(err, "encode"));
}

/* Files: missing, not regular, too large (refused by its size, never read). */
static void test_results_files(void **state)
{
	char path[] = "/tmp/p_plan_results_XXXXXX", err[1024] = "";
	int fd;

	(void)state;
	assert_int_equal(plan_results_load("/nonexistent/r.json", &results, err, sizeof(err)),
			 -ENOENT);
	assert_non_null(strstr(err, "/nonexistent/r.json"));
	assert_int_equal(plan_results_load("/tmp", &results, err, sizeof(err)), -EINVAL);
	fd = mkstemp(path);
	assert_true(fd >= 0);
	assert_int_equal(ftruncate(fd, (off_t)PLAN_RESULTS_MAX_BYTES + 1), 0);
	close(fd);
	assert_int_equal(plan_results_load(path, &results, err, sizeof(err)), -EFBIG);
	assert_non_null(strstr(err, "file too large"));
	unlink(path);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_bad_files),
		cmocka_unit_test(test_empty_and_huge),
		cmocka_unit_test(test_load_files),
		cmocka_unit_test(test_defaults_and_example),
		cmocka_unit_test(test_size_spec),
		cmocka_unit_test(test_geometry),
		cmocka_unit_test(test_little_exact),
		cmocka_unit_test(test_mixed),
		cmocka_unit_test(test_large),
		cmocka_unit_test(test_sim_poisson),
		cmocka_unit_test(test_sim_constant),
		cmocka_unit_test(test_sim_window),
		cmocka_unit_test(test_sim_deterministic),
		cmocka_unit_test(test_sim_tail_sizing),
		cmocka_unit_test(test_sim_many_producers),
		cmocka_unit_test(test_sim_pool_limit),
		cmocka_unit_test(test_sim_event_cap),
		cmocka_unit_test(test_results_curves),
		cmocka_unit_test(test_results_saturation),
		cmocka_unit_test(test_results_paced_machine),
		cmocka_unit_test(test_results_bad),
		cmocka_unit_test(test_results_missing_rows),
		cmocka_unit_test(test_results_files),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
