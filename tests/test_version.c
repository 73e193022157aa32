/* SPDX-License-Identifier: MIT */
/* The version macros, and the runtime version of the shared library (this binary links
 * libshmrig.so, not the static library, so the versioned symbols are resolved by the
 * dynamic linker). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <shmrig/shmrig.h>

/* A user's view (this test builds with shmrig's include directory only): no public header
 * brings msgpack-c's in, so a codec plugin does not depend on its layout (issue 13). */
#if defined(MSGPACK_OBJECT_H) || defined(MSGPACK_PACK_H)
#error "a public header includes msgpack-c's headers"
#endif

#if !SHMRIG_CHECK_VERSION(SHMRIG_VERSION_MAJOR, SHMRIG_VERSION_MINOR)
#error "SHMRIG_CHECK_VERSION is false for the headers' own version"
#endif
#if SHMRIG_CHECK_VERSION(SHMRIG_VERSION_MAJOR, SHMRIG_VERSION_MINOR + 1)
#error "SHMRIG_CHECK_VERSION is true for a newer minor version"
#endif

static void runtime_is_headers(void **state)
{
	(void)state;
	int major = -1, minor = -1, patch = -1;

	shmrig_version(&major, &minor, &patch);
	assert_int_equal(major, SHMRIG_VERSION_MAJOR);
	assert_int_equal(minor, SHMRIG_VERSION_MINOR);
	assert_int_equal(patch, SHMRIG_VERSION_PATCH);
	shmrig_version(NULL, NULL, NULL);
	shmrig_version(NULL, &minor, NULL);
	assert_int_equal(minor, SHMRIG_VERSION_MINOR);
}

static void check_version(void **state)
{
	(void)state;
	const int M = SHMRIG_VERSION_MAJOR, m = SHMRIG_VERSION_MINOR;

	assert_true(shmrig_check_version(M, m));
	assert_true(shmrig_check_version(0, 0));
	assert_true(shmrig_check_version(M - 1, m + 100));
	assert_false(shmrig_check_version(M, m + 1));
	assert_false(shmrig_check_version(M + 1, 0));
	assert_int_equal(SHMRIG_CHECK_VERSION(M, m), shmrig_check_version(M, m));
	assert_int_equal(SHMRIG_CHECK_VERSION(M + 1, 0), shmrig_check_version(M + 1, 0));
	assert_true(SHMRIG_CHECK_VERSION(M - 1, m + 100));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(runtime_is_headers),
		cmocka_unit_test(check_version),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
