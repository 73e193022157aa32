/* SPDX-License-Identifier: MIT */
/*
 * Option parsing and error words: shmrig_parse_size, shmrig_strerror,
 * shmrig_last_error; options from the environment (a bad variable warns once
 * and keeps the default) against the same values through the API (-EINVAL).
 */
#include "helpers.h"

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <shmrig/options.h>
#include <shmrig/pool.h>

#define KiB ((size_t)1 << 10)
#define GiB ((size_t)1 << 30)

/* A value parse_size must not leave behind on failure. */
#define UNTOUCHED ((size_t)0x5a5a5a5a)

struct size_case {
	const char *text;
	int ret;
	size_t value; /* with ret 0 */
};

static void test_parse_size_ok(void **state)
{
	static const struct size_case cases[] = {
		{ "0", 0, 0 },
		{ "64", 0, 64 },
		{ "4K", 0, 4 * KiB },
		{ "4k", 0, 4 * KiB },
		{ "2M", 0, 2 * MiB },
		{ "2m", 0, 2 * MiB },
		{ "1G", 0, GiB },
		{ "3MiB", 0, 3 * MiB },
		{ "3mib", 0, 3 * MiB },
		{ "5KB", 0, 5 * KiB },
		{ "5kb", 0, 5 * KiB },
		{ " 7", 0, 7 },
		{ "\t 12G", 0, 12 * GiB },
		{ "007", 0, 7 },
		/* the largest values that still fit */
		{ "18446744073709551615", 0, SIZE_MAX },
		{ "17179869183G", 0, SIZE_MAX - GiB + 1 },
	};

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		size_t value = UNTOUCHED;
		int ret = shmrig_parse_size(cases[i].text, &value);

		if (ret != cases[i].ret || value != cases[i].value)
			print_error("parse_size(\"%s\"): ret %d value %zu, want %d %zu\n",
				    cases[i].text, ret, value, cases[i].ret, cases[i].value);
		assert_int_equal(ret, cases[i].ret);
		assert_int_equal(value, cases[i].value);
	}
}

static void test_parse_size_bad(void **state)
{
	static const struct size_case cases[] = {
		{ "", -EINVAL, 0 },
		{ "   ", -EINVAL, 0 },
		{ "K", -EINVAL, 0 },
		{ "12X", -EINVAL, 0 },
		{ "-1", -EINVAL, 0 },
		{ "+1", -EINVAL, 0 },
		{ "1.5M", -EINVAL, 0 },
		{ "4K ", -EINVAL, 0 },
		{ "4 K", -EINVAL, 0 },
		{ "5B", -EINVAL, 0 }, /* "B" only after a K, M or G */
		{ "5KiBB", -EINVAL, 0 },
		{ "0x10", -EINVAL, 0 },
		{ "99999999999999999999", -ERANGE, 0 },
		{ "18446744073709551616", -ERANGE, 0 },
		{ "18446744073709551615G", -ERANGE, 0 },
		{ "17179869184G", -ERANGE, 0 }, /* exactly 2^64 */
		{ "18014398509481984K", -ERANGE, 0 },
	};

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		size_t value = UNTOUCHED;
		int ret = shmrig_parse_size(cases[i].text, &value);

		if (ret != cases[i].ret)
			print_error("parse_size(\"%s\"): ret %d, want %d\n", cases[i].text, ret,
				    cases[i].ret);
		assert_int_equal(ret, cases[i].ret);
		assert_int_equal(value, UNTOUCHED);
		assert_true(strlen(shmrig_last_error()) > 0);
	}
	assert_int_equal(shmrig_parse_size(NULL, &(size_t){ 0 }), -EINVAL);
	assert_int_equal(shmrig_parse_size("1", NULL), -EINVAL);
}

/* The message of a failed parse names the offending text. */
static void test_last_error_names_input(void **state)
{
	static const char *const inputs[] = { "12X", "1.5M", "99999999999999999999",
					      "18446744073709551615G", "K" };
	size_t value;

	(void)state;
	for (size_t i = 0; i < sizeof(inputs) / sizeof(inputs[0]); i++) {
		assert_true(shmrig_parse_size(inputs[i], &value) < 0);
		if (!strstr(shmrig_last_error(), inputs[i]))
			print_error("last_error \"%s\" does not name \"%s\"\n", shmrig_last_error(),
				    inputs[i]);
		assert_non_null(strstr(shmrig_last_error(), inputs[i]));
	}
	/* a later failure replaces the message */
	assert_int_equal(shmrig_parse_size("77Q", &value), -EINVAL);
	assert_non_null(strstr(shmrig_last_error(), "77Q"));
	assert_null(strstr(shmrig_last_error(), "'K'"));
}

static void *thread_last_error(void *arg)
{
	char *seen = arg;
	size_t value;

	/* nothing has failed in this thread yet */
	snprintf(seen, 64, "%s", shmrig_last_error());
	/* fails on purpose (the caller checks it did): a message of this thread's own */
	return (void *)(intptr_t)shmrig_parse_size("thread-garbage", &value);
}

/* The message is per thread: a fresh thread starts empty and does not clobber ours. */
static void test_last_error_thread_local(void **state)
{
	char seen[64] = "not run";
	pthread_t thread;
	void *thread_ret;
	size_t value;

	(void)state;
	assert_int_equal(shmrig_parse_size("main-garbage", &value), -EINVAL);
	assert_int_equal(pthread_create(&thread, NULL, thread_last_error, seen), 0);
	assert_int_equal(pthread_join(thread, &thread_ret), 0);
	assert_int_equal((intptr_t)thread_ret, -EINVAL);
	assert_string_equal(seen, "");
	assert_non_null(strstr(shmrig_last_error(), "main-garbage"));
}

static void test_strerror(void **state)
{
	const char *words[SHMRIG_ELAST - SHMRIG_EBASE];
	const char *unknown;

	(void)state;
	assert_string_equal(shmrig_strerror(0), "success");
	assert_string_equal(shmrig_strerror(-ENOMEM), strerror(ENOMEM));
	assert_string_equal(shmrig_strerror(ENOMEM), strerror(ENOMEM));
	assert_string_equal(shmrig_strerror(-EINVAL), strerror(EINVAL));

	unknown = shmrig_strerror(-(SHMRIG_ELAST + 100));
	assert_non_null(unknown);
	assert_true(strlen(unknown) > 0);
	assert_string_equal(shmrig_strerror(-SHMRIG_ELAST), unknown);
	assert_string_equal(shmrig_strerror(-SHMRIG_EBASE), unknown);
	assert_string_equal(shmrig_strerror(1000000), unknown);

	for (int code = SHMRIG_ESTALE; code < SHMRIG_ELAST; code++) {
		const char *w = shmrig_strerror(-code);

		assert_non_null(w);
		assert_true(strlen(w) > 0);
		assert_string_not_equal(w, unknown);
		assert_string_not_equal(w, "success");
		/* negative or positive: the same words */
		assert_string_equal(shmrig_strerror(code), w);
		for (int other = SHMRIG_ESTALE; other < code; other++)
			assert_string_not_equal(words[other - SHMRIG_EBASE], w);
		words[code - SHMRIG_EBASE] = w;
	}
}

/* --- options from the environment ---------------------------------------------
 * Warnings are once per process: each case runs in a forked child with its own
 * environment. Its calls run with stderr sent into a pipe, which the checks
 * then read (and which is echoed into the test log, with any failed check).
 */

#define CHILD_TIMEOUT_MS 30000
#define DEFAULT_ARENA (64 * MiB)
#define DEFAULT_POOL_MAX (1024 * MiB)
#define MAX_ARENA GiB

/* Run body() with its stderr in text (it fits a pipe); body's result. */
static int captured(int (*body)(void), char *text, size_t text_size)
{
	int fds[2], saved, ret;
	size_t used = 0;
	ssize_t n;

	fflush(stderr);
	if (pipe(fds))
		return -1;
	saved = dup(STDERR_FILENO);
	if (saved < 0 || dup2(fds[1], STDERR_FILENO) < 0)
		return -1;
	close(fds[1]);
	ret = body();
	fflush(stderr);
	if (dup2(saved, STDERR_FILENO) < 0)
		return -1;
	close(saved);
	while (used < text_size - 1 && (n = read(fds[0], text + used, text_size - 1 - used)) > 0)
		used += (size_t)n;
	text[used] = '\0';
	close(fds[0]);
	fputs(text, stderr);
	return ret;
}

static int count_of(const char *text, const char *needle)
{
	int n = 0;

	for (const char *p = strstr(text, needle); p; p = strstr(p + 1, needle))
		n++;
	return n;
}

/* Open a pool with these options, read its info, close it. 0 or the open's error. */
static int open_info(const struct shmrig_pool_opts *opts, struct shmrig_pool_info *info)
{
	shmrig_pool *pool;
	int ret = shmrig_pool_open(opts, &pool);

	if (ret)
		return ret;
	ret = shmrig_pool_info(pool, info);
	if (!ret)
		info->prefix = NULL; /* valid only while the pool is open */
	return shmrig_pool_close(pool) ? -1 : ret;
}

/* A bad SHMRIG_PREFIX warns once and keeps the default; the same through the API is -EINVAL. */
static int body_env_prefix(void)
{
	struct shmrig_pool_opts api = { .size = sizeof(struct shmrig_pool_opts),
					.prefix = "bad/prefix",
					.flags = SHMRIG_POOL_QUIET };
	struct shmrig_pool_opts env = { .size = sizeof(struct shmrig_pool_opts),
					.flags = SHMRIG_POOL_QUIET };
	struct shmrig_pool_info info = SHMRIG_SIZED(struct shmrig_pool_info);
	shmrig_pool *pool;

	CHILD_CHECK(setenv("SHMRIG_PREFIX", "bad/prefix", 1) == 0);
	for (int i = 0; i < 3; i++) {
		CHILD_CHECK(shmrig_pool_open(&env, &pool) == 0);
		CHILD_CHECK(shmrig_pool_info(pool, &info) == 0);
		CHILD_CHECK(strcmp(info.prefix, SHMRIG_DEFAULT_PREFIX) == 0);
		CHILD_CHECK(shmrig_pool_close(pool) == 0);
	}
	CHILD_CHECK(shmrig_pool_open(&api, &pool) == -EINVAL);
	CHILD_CHECK(strstr(shmrig_last_error(), "bad/prefix"));
	return 0;
}

static int child_env_prefix(void *arg)
{
	char text[8192];

	(void)arg;
	CHILD_CHECK(captured(body_env_prefix, text, sizeof(text)) == 0);
	CHILD_CHECK(count_of(text, "shmrig: warning: SHMRIG_PREFIX='bad/prefix'") == 1);
	/* it says why and what is used instead */
	CHILD_CHECK(strstr(text, "may hold only"));
	CHILD_CHECK(strstr(text, "using the default ('" SHMRIG_DEFAULT_PREFIX "')"));
	CHILD_CHECK(count_of(text, "warning") == 1);
	return 0;
}

static void test_env_prefix(void **state)
{
	(void)state;
	assert_int_equal(th_run_child(child_env_prefix, NULL, CHILD_TIMEOUT_MS), 0);
}

/* An arena size above 1 GiB: from the environment a warning and the default,
 * through the API -EINVAL; never clamped in silence. */
static int body_env_arena_too_big(void)
{
	struct shmrig_pool_opts opts = { .size = sizeof(struct shmrig_pool_opts),
					 .flags = SHMRIG_POOL_QUIET };
	struct shmrig_pool_info info = SHMRIG_SIZED(struct shmrig_pool_info);

	CHILD_CHECK(setenv("SHMRIG_ARENA_SIZE", "1G", 1) == 0); /* the largest: taken */
	CHILD_CHECK(open_info(&opts, &info) == 0);
	CHILD_CHECK(info.arena_size == MAX_ARENA);
	CHILD_CHECK(setenv("SHMRIG_ARENA_SIZE", "2G", 1) == 0);
	CHILD_CHECK(open_info(&opts, &info) == 0);
	CHILD_CHECK(info.arena_size == DEFAULT_ARENA);
	CHILD_CHECK(setenv("SHMRIG_ARENA_SIZE", "99999999999999999999", 1) == 0);
	CHILD_CHECK(open_info(&opts, &info) == 0);
	CHILD_CHECK(info.arena_size == DEFAULT_ARENA);
	CHILD_CHECK(unsetenv("SHMRIG_ARENA_SIZE") == 0);

	opts.arena_size = 2 * GiB;
	CHILD_CHECK(open_info(&opts, &info) == -EINVAL);
	CHILD_CHECK(strstr(shmrig_last_error(), "arena_size"));
	opts.arena_size = MAX_ARENA + 1; /* rounded up, it would be 1 GiB + 2 MiB */
	CHILD_CHECK(open_info(&opts, &info) == -EINVAL);
	opts.arena_size = MAX_ARENA;
	CHILD_CHECK(open_info(&opts, &info) == 0);
	CHILD_CHECK(info.arena_size == MAX_ARENA);
	return 0;
}

static int child_env_arena_too_big(void *arg)
{
	char text[8192];

	(void)arg;
	CHILD_CHECK(captured(body_env_arena_too_big, text, sizeof(text)) == 0);
	CHILD_CHECK(count_of(text, "shmrig: warning: SHMRIG_ARENA_SIZE='2G' is above") == 1);
	CHILD_CHECK(strstr(text, "(1 GiB); using the default (64 MiB)"));
	/* once per variable: its second bad value is not reported again */
	CHILD_CHECK(count_of(text, "warning") == 1);
	return 0;
}

static void test_env_arena_too_big(void **state)
{
	(void)state;
	assert_int_equal(th_run_child(child_env_arena_too_big, NULL, CHILD_TIMEOUT_MS), 0);
}

/* Each bad variable has its own warning: a second one is not silenced by the first. */
static int body_env_each_variable(void)
{
	struct shmrig_pool_opts opts = { .size = sizeof(struct shmrig_pool_opts),
					 .flags = SHMRIG_POOL_QUIET };
	struct shmrig_pool_info info = SHMRIG_SIZED(struct shmrig_pool_info);

	CHILD_CHECK(setenv("SHMRIG_ARENA_SIZE", "junk", 1) == 0);
	CHILD_CHECK(setenv("SHMRIG_POOL_MAX", "0", 1) == 0);
	for (int i = 0; i < 3; i++) {
		CHILD_CHECK(open_info(&opts, &info) == 0);
		CHILD_CHECK(info.arena_size == DEFAULT_ARENA);
		CHILD_CHECK(info.max_bytes == DEFAULT_POOL_MAX);
	}
	/* an API value wins: the variable is not even read */
	opts.arena_size = 4 * MiB;
	opts.max_bytes = 8 * MiB;
	CHILD_CHECK(open_info(&opts, &info) == 0);
	CHILD_CHECK(info.arena_size == 4 * MiB && info.max_bytes == 8 * MiB);
	return 0;
}

static int child_env_each_variable(void *arg)
{
	char text[8192];

	(void)arg;
	CHILD_CHECK(captured(body_env_each_variable, text, sizeof(text)) == 0);
	CHILD_CHECK(count_of(text, "shmrig: warning: SHMRIG_ARENA_SIZE='junk' is not a size") == 1);
	CHILD_CHECK(count_of(text, "shmrig: warning: SHMRIG_POOL_MAX='0' is not a size") == 1);
	CHILD_CHECK(strstr(text, "using the default (1 GiB)"));
	CHILD_CHECK(count_of(text, "warning") == 2);
	return 0;
}

static void test_env_each_variable(void **state)
{
	(void)state;
	assert_int_equal(th_run_child(child_env_each_variable, NULL, CHILD_TIMEOUT_MS), 0);
}

/* Checking a variable is no failure: the caller's last error is kept. */
static int body_env_keeps_last_error(void)
{
	struct shmrig_pool_opts opts = { .size = sizeof(struct shmrig_pool_opts),
					 .flags = SHMRIG_POOL_QUIET };
	struct shmrig_pool_info info = SHMRIG_SIZED(struct shmrig_pool_info);
	size_t value;

	CHILD_CHECK(setenv("SHMRIG_POOL_MAX", "garbage", 1) == 0);
	CHILD_CHECK(shmrig_parse_size("earlier-failure", &value) == -EINVAL);
	CHILD_CHECK(open_info(&opts, &info) == 0);
	CHILD_CHECK(strstr(shmrig_last_error(), "earlier-failure"));
	return 0;
}

static int child_env_keeps_last_error(void *arg)
{
	char text[8192];

	(void)arg;
	CHILD_CHECK(captured(body_env_keeps_last_error, text, sizeof(text)) == 0);
	CHILD_CHECK(count_of(text, "SHMRIG_POOL_MAX='garbage'") == 1);
	return 0;
}

static void test_env_keeps_last_error(void **state)
{
	(void)state;
	assert_int_equal(th_run_child(child_env_keeps_last_error, NULL, CHILD_TIMEOUT_MS), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse_size_ok),
		cmocka_unit_test(test_parse_size_bad),
		cmocka_unit_test(test_last_error_names_input),
		cmocka_unit_test(test_last_error_thread_local),
		cmocka_unit_test(test_strerror),
		cmocka_unit_test(test_env_prefix),
		cmocka_unit_test(test_env_arena_too_big),
		cmocka_unit_test(test_env_each_variable),
		cmocka_unit_test(test_env_keeps_last_error),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
