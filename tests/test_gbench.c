/* SPDX-License-Identifier: MIT */
/*
 * gbench: the C shim over Google Benchmark (bench/gbench.h).
 *
 * Google Benchmark's flags and registry belong to the process, so every
 * gbench_main() runs in a forked child. The first child registers C bodies
 * (an argument, threads, manual time, a skip, misuse the shim turns into
 * errors) and writes JSON; the parent reads it back with jansson and checks
 * names, batched iterations, counters and their flags, the errors and the
 * context. Then the refusals: an invalid registration (exit 1), and command
 * lines refused with exit 2 and a message that names the problem: an unknown
 * flag, a bad repetition count, a filter that is no regular expression or
 * matches nothing.
 */
#include "helpers.h"

#include "gbench.h"

#include <jansson.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#define BATCH 64
#define SIZE_ARG 4096
#define SIZE_ARG_TEXT "4096" /* in the run's name */
#define CHILD_TIMEOUT_MS 60000

#define CONTEXT_KEY "test_gbench_key"
#define CONTEXT_VALUE "context-value-42"
#define SKIP_MESSAGE "skipped on purpose by test_gbench"

/* What bm_counted is given: the body checks that it arrives. */
struct counted_arg {
	unsigned magic;
};
#define COUNTED_MAGIC 0x6762656eu

/* Keeps the loops from being optimised away. */
static volatile uint64_t sink;

static void spin_batch(void)
{
	for (int i = 0; i < BATCH; i++)
		sink += (uint64_t)i;
}

static void bm_counted(gbench_state *st, void *arg)
{
	const struct counted_arg *counted = arg;
	int64_t loop_iterations = 0;

	while (gbench_loop(st, BATCH)) {
		gbench_pause(st);
		sink += 1; /* untimed */
		gbench_resume(st);
		spin_batch();
		loop_iterations += BATCH;
	}
	gbench_set_items_processed(st, gbench_iterations(st));
	gbench_set_bytes_processed(st, gbench_iterations(st) * gbench_range(st, 0));
	gbench_counter(st, "ops", (double)loop_iterations, GBENCH_COUNTER_RATE);
	gbench_counter(st, "loop_iterations", (double)loop_iterations, 0);
	gbench_counter(st, "size", (double)gbench_range(st, 0), 0);
	gbench_counter(st, "arg_ok", counted && counted->magic == COUNTED_MAGIC, 0);
	gbench_counter(st, "inverted", 4.0, GBENCH_COUNTER_INVERT);
	gbench_set_label(st, "counted");
}

/* Each batch of BATCH iterations "took" BATCH microseconds. */
static void bm_manual(gbench_state *st, void *arg)
{
	(void)arg;
	while (gbench_loop(st, BATCH)) {
		spin_batch();
		gbench_set_iteration_time(st, BATCH * 1e-6);
	}
}

static void bm_threads(gbench_state *st, void *arg)
{
	int index = gbench_thread_index(st);
	int count = gbench_thread_count(st);

	(void)arg;
	while (gbench_loop(st, BATCH))
		spin_batch();
	/* Summed over the threads, then divided by their number. */
	gbench_counter(st, "thread_count", count, GBENCH_COUNTER_AVG_THREADS);
	gbench_counter(st, "index_ok", index >= 0 && index < count, GBENCH_COUNTER_AVG_THREADS);
}

static void bm_skipped(gbench_state *st, void *arg)
{
	(void)arg;
	gbench_skip(st, SKIP_MESSAGE);
	/* After a skip the timer is stopped: these must do nothing. */
	gbench_pause(st);
	gbench_resume(st);
}

/* Misuse the shim reports as an error instead of an abort or a hang. */
static void bm_zero_batch(gbench_state *st, void *arg)
{
	(void)arg;
	while (gbench_loop(st, 0))
		spin_batch();
}

static void bm_unknown_counter_flag(gbench_state *st, void *arg)
{
	(void)arg;
	while (gbench_loop(st, BATCH))
		spin_batch();
	gbench_counter(st, "bad", 1.0, 1u << 5);
}

/* For the argument lists, and outside the filter (it must not run). */
static void bm_plain(gbench_state *st, void *arg)
{
	(void)arg;
	while (gbench_loop(st, BATCH))
		spin_batch();
}

/* --- the run ----------------------------------------------------------------- */

struct tmpfile_state {
	char path[PATH_MAX];
};

static int make_tmpfile(void **state)
{
	struct tmpfile_state *tmp = calloc(1, sizeof(*tmp));
	const char *dir = getenv("TMPDIR");
	int fd;

	if (!tmp)
		return -1;
	snprintf(tmp->path, sizeof(tmp->path), "%s/test_gbench_%s_XXXXXX",
		 dir && *dir ? dir : "/tmp", th_prefix());
	fd = mkstemp(tmp->path);
	if (fd < 0) {
		free(tmp);
		return -1;
	}
	close(fd);
	*state = tmp;
	return 0;
}

static int remove_tmpfile(void **state)
{
	struct tmpfile_state *tmp = *state;
	int ret = unlink(tmp->path);

	free(tmp);
	return ret;
}

static int run_suite(void *arg)
{
	static struct counted_arg counted = { COUNTED_MAGIC };
	const char *out_path = arg;
	char out_flag[PATH_MAX + 32];
	char *argv[] = { "test_gbench",
			 "--benchmark_format=json",
			 out_flag,
			 "--benchmark_out_format=json",
			 "--benchmark_min_time=0.01",
			 "--benchmark_filter=^gbench_",
			 NULL };
	gbench_benchmark *b;

	snprintf(out_flag, sizeof(out_flag), "--benchmark_out=%s", out_path);

	b = gbench_register("gbench_counted", bm_counted, &counted);
	CHILD_CHECK(gbench_arg_name(gbench_arg(b, SIZE_ARG), "size") == b);
	b = gbench_register("gbench_manual", bm_manual, NULL);
	CHILD_CHECK(gbench_unit(gbench_use_manual_time(b), 'u') == b);
	b = gbench_register("gbench_threads", bm_threads, NULL);
	CHILD_CHECK(gbench_threads(b, 2) == b);
	b = gbench_register("gbench_range", bm_plain, NULL);
	CHILD_CHECK(gbench_range_mult(b, 1, 64, 8) == b);
	b = gbench_register("gbench_pair", bm_plain, NULL);
	CHILD_CHECK(gbench_args2(gbench_args2(b, 3, 5), 7, 11) == b);
	CHILD_CHECK(gbench_register("gbench_skipped", bm_skipped, NULL));
	CHILD_CHECK(gbench_register("gbench_zero_batch", bm_zero_batch, NULL));
	CHILD_CHECK(gbench_register("gbench_unknown_counter_flag", bm_unknown_counter_flag, NULL));
	CHILD_CHECK(gbench_register("other_filtered_out", bm_plain, NULL));
	gbench_add_context(CONTEXT_KEY, CONTEXT_VALUE);

	return gbench_main((int)(sizeof(argv) / sizeof(argv[0])) - 1, argv);
}

static json_t *find_run(json_t *root, const char *name)
{
	json_t *benchmarks = json_object_get(root, "benchmarks");
	assert_true(json_is_array(benchmarks));
	for (size_t i = 0; i < json_array_size(benchmarks); i++) {
		json_t *run = json_array_get(benchmarks, i);
		const char *run_name = json_string_value(json_object_get(run, "name"));

		if (run_name && strcmp(run_name, name) == 0)
			return run;
	}
	return NULL;
}

static json_t *get_run(json_t *root, const char *name)
{
	json_t *run = find_run(root, name);

	if (!run)
		fail_msg("no run named %s in the JSON output", name);
	return run;
}

static double number(json_t *run, const char *key)
{
	json_t *value = json_object_get(run, key);

	if (!json_is_number(value))
		fail_msg("%s: no number %s", json_string_value(json_object_get(run, "name")), key);
	return json_number_value(value);
}

static void assert_close(double value, double expected)
{
	if (fabs(value - expected) > 1e-9 * fabs(expected) + 1e-12)
		fail_msg("%.17g is not %.17g", value, expected);
}

static void assert_no_error(json_t *run)
{
	json_t *error = json_object_get(run, "error_occurred");

	if (json_is_true(error))
		fail_msg("%s: %s", json_string_value(json_object_get(run, "name")),
			 json_string_value(json_object_get(run, "error_message")));
}

static void assert_error(json_t *root, const char *name, const char *message)
{
	json_t *run = get_run(root, name);

	assert_true(json_is_true(json_object_get(run, "error_occurred")));
	assert_string_equal(json_string_value(json_object_get(run, "error_message")), message);
}

static void check_counted(json_t *root)
{
	json_t *run = get_run(root, "gbench_counted/size:" SIZE_ARG_TEXT);
	double iterations = number(run, "iterations");

	assert_no_error(run);
	assert_true(iterations > 0);
	assert_int_equal((int64_t)iterations % BATCH, 0);
	assert_close(number(run, "loop_iterations"), iterations);
	assert_close(number(run, "size"), SIZE_ARG);
	assert_close(number(run, "arg_ok"), 1);
	assert_close(number(run, "inverted"), 0.25);
	assert_true(number(run, "items_per_second") > 0);
	/* Both are rates over the same time, of SIZE_ARG bytes per item. */
	assert_close(number(run, "bytes_per_second"), SIZE_ARG * number(run, "items_per_second"));
	/* A RATE counter of the loop's own count is items_per_second. */
	assert_close(number(run, "ops"), number(run, "items_per_second"));
	assert_string_equal(json_string_value(json_object_get(run, "label")), "counted");
}

static void check_manual(json_t *root)
{
	json_t *run = get_run(root, "gbench_manual/manual_time");

	assert_no_error(run);
	assert_int_equal((int64_t)number(run, "iterations") % BATCH, 0);
	assert_string_equal(json_string_value(json_object_get(run, "time_unit")), "us");
	/* The manual time, not the clock: one microsecond an iteration. */
	assert_close(number(run, "real_time"), 1.0);
}

static void check_threads(json_t *root)
{
	json_t *run = get_run(root, "gbench_threads/threads:2");

	assert_no_error(run);
	assert_close(number(run, "threads"), 2);
	assert_true(number(run, "iterations") > 0);
	assert_close(number(run, "thread_count"), 2);
	assert_close(number(run, "index_ok"), 1);
}

static void check_context(json_t *root)
{
	json_t *context = json_object_get(root, "context");

	assert_true(json_is_object(context));
	assert_non_null(json_string_value(json_object_get(context, "library_build_type")));
	assert_string_equal(json_string_value(json_object_get(context, CONTEXT_KEY)),
			    CONTEXT_VALUE);
}

static void test_run_and_report(void **state)
{
	struct tmpfile_state *tmp = *state;
	json_error_t error;
	json_t *root;

	assert_int_equal(th_run_child(run_suite, tmp->path, CHILD_TIMEOUT_MS), 0);

	root = json_load_file(tmp->path, 0, &error);
	if (!root)
		fail_msg("%s:%d: %s", tmp->path, error.line, error.text);
	check_context(root);
	check_counted(root);
	check_manual(root);
	check_threads(root);
	assert_no_error(get_run(root, "gbench_range/1"));
	assert_no_error(get_run(root, "gbench_range/8"));
	assert_no_error(get_run(root, "gbench_range/64"));
	assert_no_error(get_run(root, "gbench_pair/3/5"));
	assert_no_error(get_run(root, "gbench_pair/7/11"));
	assert_error(root, "gbench_skipped", SKIP_MESSAGE);
	assert_error(root, "gbench_zero_batch", "gbench_loop: batch must be >= 1");
	assert_error(root, "gbench_unknown_counter_flag", "gbench_counter: unknown flag bits");
	assert_null(find_run(root, "other_filtered_out"));
	json_decref(root);
}

/* --- refusals ---------------------------------------------------------------- */

/* A command line gbench_main() must refuse with exit 2, naming the problem. */
struct usage_case {
	const char *args[4];         /* after argv[0], up to a NULL */
	const char *repetitions_env; /* $BENCHMARK_REPETITIONS, or NULL: unset */
	int status;                  /* gbench_main()'s */
	const char *words;           /* on stderr */
};

static const struct usage_case usage_cases[] = {
	{ { "--benchmark_nonsense" },
	  NULL,
	  2,
	  "unrecognized command-line flag: --benchmark_nonsense" },
	{ { "--benchmark_filter=^nothing_matches$" },
	  NULL,
	  2,
	  "gbench: no benchmark matches --benchmark_filter=^nothing_matches$" },
	{ { "--benchmark_filter=^nothing$", "--benchmark_list_tests=true" },
	  NULL,
	  2,
	  "gbench: no benchmark matches --benchmark_filter=^nothing$" },
	{ { "--benchmark_filter=gbench_(only" },
	  NULL,
	  2,
	  "gbench: --benchmark_filter=gbench_(only is not a regular expression: " },
	{ { "--benchmark_filter=-[" },
	  NULL,
	  2,
	  "gbench: --benchmark_filter=-[ is not a regular expression: " },
	{ { "--benchmark_repetitions=-1" },
	  NULL,
	  2,
	  "gbench: --benchmark_repetitions=-1: the repetitions must be an integer from 1" },
	{ { "--benchmark_repetitions=0" }, NULL, 2, "gbench: --benchmark_repetitions=0: " },
	{ { "--benchmark_repetitions=abc" }, NULL, 2, "gbench: --benchmark_repetitions=abc: " },
	{ { "--benchmark_repetitions=4294967297" },
	  NULL,
	  2,
	  "gbench: --benchmark_repetitions=4294967297: " },
	/* the last one given is the one that counts */
	{ { "--benchmark_repetitions=3", "--benchmark_repetitions=-2" },
	  NULL,
	  2,
	  "gbench: --benchmark_repetitions=-2: " },
	{ { "--benchmark_filter=gbench_only" }, "-1", 2, "gbench: BENCHMARK_REPETITIONS=-1: " },
	/* and what is valid still runs */
	{ { "--benchmark_filter=gbench_only", "--benchmark_repetitions=2" }, NULL, 0, "" },
	{ { "--benchmark_filter=-other" }, NULL, 0, "" },
	{ { "--benchmark_filter=all", "--benchmark_list_tests=true" }, NULL, 0, "" },
	{ { "--benchmark_filter=-[0-9]+", "--benchmark_repetitions=1" }, "3", 0, "" },
};

struct usage_run {
	const struct usage_case *c;
	const char *stderr_path;
};

/* gbench_main()'s status over the case's command line, its stderr in a file. */
static int run_usage(void *arg)
{
	const struct usage_run *run = arg;
	char *argv[8] = { "test_gbench", "--benchmark_min_time=0.001" };
	int argc = 2, fd = open(run->stderr_path, O_WRONLY | O_TRUNC);

	CHILD_CHECK(fd >= 0 && dup2(fd, STDERR_FILENO) == STDERR_FILENO);
	close(fd);
	if (run->c->repetitions_env)
		CHILD_CHECK(setenv("BENCHMARK_REPETITIONS", run->c->repetitions_env, 1) == 0);
	else
		unsetenv("BENCHMARK_REPETITIONS");
	for (int i = 0; i < 4 && run->c->args[i]; i++)
		argv[argc++] = (char *)run->c->args[i];
	CHILD_CHECK(gbench_register("gbench_only", bm_plain, NULL));
	return gbench_main(argc, argv);
}

static void test_command_line(void **state)
{
	struct tmpfile_state *tmp = *state;

	for (size_t i = 0; i < sizeof(usage_cases) / sizeof(usage_cases[0]); i++) {
		const struct usage_case *c = &usage_cases[i];
		struct usage_run run = { c, tmp->path };
		int status = th_run_child(run_usage, &run, CHILD_TIMEOUT_MS);
		char text[4096] = "";
		FILE *file = fopen(tmp->path, "r");
		size_t used;

		assert_non_null(file);
		used = fread(text, 1, sizeof(text) - 1, file);
		text[used] = '\0';
		fclose(file);
		if (status != c->status || !strstr(text, c->words))
			fail_msg("%s %s (BENCHMARK_REPETITIONS=%s): exit %d, want %d, and stderr "
				 "with \"%s\"; stderr was:\n%s",
				 c->args[0], c->args[1] ? c->args[1] : "",
				 c->repetitions_env ? c->repetitions_env : "unset", status,
				 c->status, c->words, text);
	}
}

/* 0 if every bad call was refused and gbench_main() then refused to run. */
static int run_bad_registration(void *arg)
{
	char *argv[] = { "test_gbench", "--benchmark_min_time=0.01", NULL };
	gbench_benchmark *b = gbench_register("gbench_never", bm_plain, NULL);

	(void)arg;
	CHILD_CHECK(b);
	CHILD_CHECK(!gbench_register(NULL, bm_plain, NULL));
	CHILD_CHECK(!gbench_register("gbench_no_function", NULL, NULL));
	CHILD_CHECK(!gbench_threads(b, 0));
	CHILD_CHECK(!gbench_unit(b, 'x'));
	CHILD_CHECK(!gbench_range_mult(b, 8, 1, 2));
	CHILD_CHECK(!gbench_range_mult(b, 1, 8, 1));
	CHILD_CHECK(!gbench_arg_name(b, NULL));
	/* Google Benchmark would abort on argument lists of different lengths. */
	CHILD_CHECK(gbench_arg(b, 1) == b);
	CHILD_CHECK(!gbench_args2(b, 1, 2));
	/* A failure early in a chain passes NULL along. */
	CHILD_CHECK(!gbench_arg(NULL, 1));
	CHILD_CHECK(!gbench_args2(NULL, 1, 2));
	return gbench_main(2, argv) == 1 ? 0 : 2;
}

static void test_bad_registration(void **state)
{
	(void)state;
	assert_int_equal(th_run_child(run_bad_registration, NULL, CHILD_TIMEOUT_MS), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_run_and_report, make_tmpfile, remove_tmpfile),
		cmocka_unit_test_setup_teardown(test_command_line, make_tmpfile, remove_tmpfile),
		cmocka_unit_test(test_bad_registration),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
