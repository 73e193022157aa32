/* SPDX-License-Identifier: MIT */
/* Option parsing and error words: shmrig_parse_size, shmrig_strerror, shmrig_last_error. */
#include "helpers.h"

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include <shmrig/options.h>

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
	shmrig_parse_size("thread-garbage", &value);
	return NULL;
}

/* The message is per thread: a fresh thread starts empty and does not clobber ours. */
static void test_last_error_thread_local(void **state)
{
	char seen[64] = "not run";
	pthread_t thread;
	size_t value;

	(void)state;
	assert_int_equal(shmrig_parse_size("main-garbage", &value), -EINVAL);
	assert_int_equal(pthread_create(&thread, NULL, thread_last_error, seen), 0);
	assert_int_equal(pthread_join(thread, NULL), 0);
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

	for (int code = SHMRIG_ESTALE; code <= SHMRIG_EFORK; code++) {
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

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse_size_ok),
		cmocka_unit_test(test_parse_size_bad),
		cmocka_unit_test(test_last_error_names_input),
		cmocka_unit_test(test_last_error_thread_local),
		cmocka_unit_test(test_strerror),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
