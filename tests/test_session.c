/* SPDX-License-Identifier: MIT */
/*
 * Sessions: a forked worker serving handlers. Ping; echo of every codec's
 * values across processes (over every channel backend that is built);
 * checksum agreement with a hash computed here; scale; unknown and failing
 * handlers; a call that times out and whose late answer is discarded; a
 * worker killed by a signal mid-request (the error names the signal, its
 * blocks are reaped, its segments removed, restart works); a wedged worker
 * killed at shutdown; a worker that cannot start; a caller that dies (its
 * worker follows); a worker that leaks. Each case ends with no zombie, no
 * live block, no segment and no fd left.
 *
 * SHMRIG_TEST_BACKEND=ucx runs the cases over the "ucx" backend (a forked
 * worker, with the transports of UCX_TLS; tests/meson.build) instead of the
 * default "pipe", and echo over that backend alone; exit 77 without UCX.
 */
#include "helpers.h"
#include "session/session_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <xxhash.h>

#include <shmrig/channel.h>
#include <shmrig/registry.h>
#include <shmrig/session.h>

#define TIMEOUT_MS 30000
#define SHORT_TIMEOUT_MS 100

/* static: the worker inherits these, and valgrind must find them reachable */
static shmrig_pool *pool;
static shmrig_registry *reg;
static shmrig_session *sess;
static int control[2] = { -1, -1 }; /* the test writes, the "slow" handler reads */
static int fds_before;
/* $SHMRIG_TEST_BACKEND: the backend of begin(NULL); NULL: the session's default */
static const char *test_backend;

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- handlers only the tests have ---- */

/* Echo, once the test writes a byte to the control pipe. */
static int slow_handler(void *ctx, struct shmrig_handler_call *call)
{
	struct pollfd pfd = { .fd = *(int *)ctx, .events = POLLIN };
	char byte;

	if (poll(&pfd, 1, TIMEOUT_MS) != 1 || read(pfd.fd, &byte, 1) != 1)
		return shmrig_handler_error(-EIO, "slow: nobody said go");
	call->response = *call->request;
	call->response.storage = NULL;
	return 0;
}

/* Die of signal `arg`, without a core file. */
static int crash_handler(void *ctx, struct shmrig_handler_call *call)
{
	struct rlimit none = { 0, 0 };

	(void)ctx;
	setrlimit(RLIMIT_CORE, &none);
	raise((int)call->arg);
	return shmrig_handler_error(-EINVAL, "crash: signal %d did not kill", (int)call->arg);
}

static int fail_handler(void *ctx, struct shmrig_handler_call *call)
{
	(void)ctx;
	return shmrig_handler_error(-ERANGE, "value %g is out of range", call->arg);
}

/* Echo, and keep a block of the worker's pool forever. */
static int leak_handler(void *ctx, struct shmrig_handler_call *call)
{
	struct shmrig_ref ref;
	void *data;
	int ret = shmrig_pool_alloc(call->pool, 100, 0, 7, &ref, &data);

	(void)ctx;
	if (ret)
		return ret;
	call->response = *call->request;
	call->response.storage = NULL;
	return 0;
}

/* ---- each case: set up, and check everything is back at the end ---- */

static void begin(const char *backend)
{
	struct shmrig_pool_opts pool_opts = {
		.size = sizeof(struct shmrig_pool_opts),
		.arena_size = 8 * MiB,
		.max_bytes = 256 * MiB,
		.backing = SHMRIG_BACKING_PLAIN,
		.flags = SHMRIG_POOL_QUIET,
	};
	struct shmrig_channel_opts channel = { .size = sizeof(struct shmrig_channel_opts),
					       .backend = backend ? backend : test_backend };
	struct shmrig_session_opts opts = { .size = sizeof(struct shmrig_session_opts),
					    .channel = &channel };

	fds_before = th_count_fds();
	assert_int_equal(shmrig_pool_open(&pool_opts, &pool), 0);
	assert_int_equal(shmrig_registry_create(&reg), 0);
	assert_int_equal(shmrig_registry_add_builtins(reg), 0);
	assert_int_equal(pipe(control), 0);
	assert_int_equal(shmrig_session_create(&opts, reg, pool, &sess), 0);
	assert_int_equal(shmrig_session_add_builtin_handlers(sess), 0);
	assert_int_equal(shmrig_session_handler(sess, "slow", slow_handler, &control[0]), 0);
	assert_int_equal(shmrig_session_handler(sess, "crash", crash_handler, NULL), 0);
	assert_int_equal(shmrig_session_handler(sess, "fail", fail_handler, NULL), 0);
	assert_int_equal(shmrig_session_handler(sess, "leak", leak_handler, NULL), 0);
}

static void assert_no_child(void)
{
	errno = 0;
	assert_int_equal(waitpid(-1, NULL, WNOHANG), -1);
	assert_int_equal(errno, ECHILD);
}

static void finish(void)
{
	shmrig_session_free(sess);
	sess = NULL;
	assert_no_child();
	assert_int_equal(th_live_blocks(pool), 0);
	assert_int_equal(shmrig_pool_close(pool), 0);
	pool = NULL;
	shmrig_registry_free(reg);
	reg = NULL;
	close(control[0]);
	close(control[1]);
	assert_int_equal(th_count_segments(th_prefix()), 0);
	assert_int_equal(th_count_fds(), fds_before);
}

/* ---- values: one of every codec, and their comparison ---- */

enum {
	NVALUES = 24
};

static struct shmrig_value values[NVALUES];
static int nvalues;
static int table_index; /* of the table in values[] */
static unsigned char *buffers[NVALUES * 4];
static int nbuffers;
static struct shmrig_named_array columns[3];
static struct shmrig_named_array group_vars[3];
static struct shmrig_group groups[2];

static void *filled(size_t len, unsigned seed)
{
	unsigned char *p = malloc(len ? len : 1);

	assert_non_null(p);
	th_fill(p, len, seed);
	buffers[nbuffers++] = p;
	return p;
}

static struct shmrig_array array_of(enum shmrig_dtype dtype, char order, uint32_t ndim,
				    const uint64_t *shape, unsigned seed)
{
	struct shmrig_array a = { .dtype = dtype, .ndim = ndim, .order = order };
	uint64_t nbytes;

	if (ndim)
		memcpy(a.shape, shape, ndim * sizeof(*shape));
	assert_int_equal(shmrig_array_nbytes(&a, &nbytes), 0);
	a.data = filled((size_t)nbytes, seed);
	if (dtype == SHMRIG_DTYPE_BOOL)
		for (uint64_t i = 0; i < nbytes; i++)
			((unsigned char *)a.data)[i] &= 1;
	/* floats from bytes could be NaNs, which compare unequal: make them numbers */
	if (dtype == SHMRIG_DTYPE_FLOAT32)
		for (uint64_t i = 0; i < nbytes / 4; i++)
			((float *)a.data)[i] = (float)i * 0.25f - 7.0f;
	if (dtype == SHMRIG_DTYPE_FLOAT64)
		for (uint64_t i = 0; i < nbytes / 8; i++)
			((double *)a.data)[i] = (double)i * 0.125 - 1000.0;
	return a;
}

static void add_array(enum shmrig_dtype dtype, char order, uint32_t ndim, const uint64_t *shape)
{
	values[nvalues].kind = SHMRIG_KIND_NDARRAY;
	values[nvalues].array = array_of(dtype, order, ndim, shape, (unsigned)nvalues);
	nvalues++;
}

static void add_bytes(size_t len)
{
	values[nvalues].kind = SHMRIG_KIND_BYTES;
	values[nvalues].bytes.data = filled(len, (unsigned)nvalues);
	values[nvalues].bytes.len = len;
	nvalues++;
}

static void make_values(void)
{
	static const uint64_t shape2[] = { 3, 5 }, shape3[] = { 2, 3, 4 }, empty[] = { 0, 5 };
	static const uint64_t big[] = { 384, 1024 }; /* float64: 3 MiB */
	static const uint64_t rows[] = { 1000 }, small[] = { 4, 4 }, tiny[] = { 3 };
	static const uint64_t cube[] = { 2, 2, 2 };

	nvalues = nbuffers = 0;
	for (int d = SHMRIG_DTYPE_INVALID + 1; d < SHMRIG_DTYPE_COUNT; d++)
		add_array((enum shmrig_dtype)d, d % 2 ? 'C' : 'F', d % 3 + 1,
			  d % 3 == 0 ? rows :
			  d % 3 == 1 ? shape2 :
				       shape3);
	add_array(SHMRIG_DTYPE_FLOAT64, 'C', 0, NULL); /* a scalar */
	add_array(SHMRIG_DTYPE_FLOAT32, 'F', 2, empty);
	add_array(SHMRIG_DTYPE_FLOAT64, 'F', 2, big);

	columns[0] = (struct shmrig_named_array){ "id",
						  array_of(SHMRIG_DTYPE_INT64, 'C', 1, rows, 101) };
	columns[1] = (struct shmrig_named_array){ "x", array_of(SHMRIG_DTYPE_FLOAT64, 'C', 1, rows,
								102) };
	columns[2] = (struct shmrig_named_array){ "flag",
						  array_of(SHMRIG_DTYPE_BOOL, 'C', 1, rows, 103) };
	table_index = nvalues;
	values[nvalues].kind = SHMRIG_KIND_TABLE;
	values[nvalues].table =
		(struct shmrig_table){ .nrows = 1000, .ncolumns = 3, .columns = columns };
	nvalues++;

	group_vars[0] = (struct shmrig_named_array){ "a", array_of(SHMRIG_DTYPE_FLOAT32, 'C', 2,
								   small, 104) };
	group_vars[1] =
		(struct shmrig_named_array){ "b", array_of(SHMRIG_DTYPE_INT16, 'C', 1, tiny, 105) };
	group_vars[2] =
		(struct shmrig_named_array){ "c", array_of(SHMRIG_DTYPE_UINT8, 'F', 3, cube, 106) };
	groups[0] = (struct shmrig_group){ .name = "g0", .nvariables = 2, .variables = group_vars };
	groups[1] =
		(struct shmrig_group){ .name = "g1", .nvariables = 1, .variables = group_vars + 2 };
	values[nvalues].kind = SHMRIG_KIND_DATASET;
	values[nvalues].dataset = (struct shmrig_dataset){ .ngroups = 2, .groups = groups };
	nvalues++;

	add_bytes(64);
	add_bytes(0);
	add_bytes(100 * 1000);
	assert_true(nvalues <= NVALUES);
}

static void free_values(void)
{
	for (int i = 0; i < nbuffers; i++)
		free(buffers[i]);
	nvalues = nbuffers = 0;
}

/* ---- ping, start, shutdown ---- */

static void test_ping_and_shutdown(void **state)
{
	struct shmrig_session_stats stats = SHMRIG_SIZED(struct shmrig_session_stats);
	pid_t worker;

	(void)state;
	begin(NULL);
	assert_int_equal(shmrig_session_worker_pid(sess), 0);
	assert_int_equal(shmrig_session_ping(sess, TIMEOUT_MS), -EPIPE);
	assert_non_null(strstr(shmrig_last_error(), "start"));
	assert_int_equal(shmrig_session_start(sess), 0);
	worker = shmrig_session_worker_pid(sess);
	assert_true(worker > 0 && worker != getpid());
	assert_int_equal(shmrig_session_start(sess), -EBUSY);
	for (int i = 0; i < 100; i++)
		assert_int_equal(shmrig_session_ping(sess, TIMEOUT_MS), 0);
	assert_int_equal(shmrig_session_shutdown(sess, TIMEOUT_MS), 0);
	assert_int_equal(shmrig_session_worker_pid(sess), 0);
	assert_no_child();
	assert_int_equal(shmrig_session_shutdown(sess, TIMEOUT_MS),
			 0); /* no worker: nothing to do */
	assert_int_equal(shmrig_session_ping(sess, TIMEOUT_MS), -EPIPE);
	/* start again after a shutdown; free stops it */
	assert_int_equal(shmrig_session_restart(sess), 0);
	assert_true(shmrig_session_worker_pid(sess) > 0);
	assert_int_equal(shmrig_session_ping(sess, 0), 0);
	assert_int_equal(shmrig_session_stats(sess, &stats), 0);
	assert_int_equal(stats.starts, 2);
	assert_int_equal(stats.deaths, 0);
	finish();
}

static void test_bad_arguments(void **state)
{
	struct shmrig_session_opts opts = { .size = sizeof(struct shmrig_session_opts),
					    .flags = 1 };
	struct shmrig_value v = { .kind = SHMRIG_KIND_BYTES }, out;
	shmrig_session *other;

	(void)state;
	begin(NULL);
	assert_int_equal(shmrig_session_create(&opts, reg, pool, &other), -EINVAL);
	opts.flags = 0;
	opts.size = 0;
	assert_int_equal(shmrig_session_create(&opts, reg, pool, &other), -EINVAL);
	opts.size = sizeof(opts);
	opts.call_timeout_ms = -1;
	assert_int_equal(shmrig_session_create(&opts, reg, pool, &other), -EINVAL);
	assert_int_equal(shmrig_session_create(NULL, NULL, pool, &other), -EINVAL);
	assert_int_equal(shmrig_session_create(NULL, reg, NULL, &other), -EINVAL);

	assert_int_equal(shmrig_session_handler(sess, "", fail_handler, NULL), -EINVAL);
	assert_int_equal(shmrig_session_handler(sess, "a b", fail_handler, NULL), -EINVAL);
	assert_int_equal(shmrig_session_handler(sess, "x23456789012345678901234567890123",
						fail_handler, NULL),
			 -EINVAL);
	assert_int_equal(shmrig_session_handler(sess, "ok", NULL, NULL), -EINVAL);
	assert_int_equal(shmrig_session_handler(sess, "echo", fail_handler, NULL), -EEXIST);
	assert_int_equal(shmrig_session_add_builtin_handlers(sess), -EEXIST);

	/* before the start: a known handler has no worker, an unknown one is named */
	assert_int_equal(shmrig_session_call(sess, "echo", 0, &v, &out, 0), -EPIPE);
	assert_int_equal(shmrig_session_call(sess, "nope", 0, &v, &out, 0), -ENOENT);
	assert_non_null(strstr(shmrig_last_error(), "'nope'"));
	assert_non_null(strstr(shmrig_last_error(), "'checksum'"));

	assert_int_equal(shmrig_session_start(sess), 0);
	assert_int_equal(shmrig_session_handler(sess, "late", fail_handler, NULL), -EBUSY);
	assert_int_equal(shmrig_session_call(sess, "echo", 0, NULL, &out, 0), -EINVAL);
	assert_int_equal(shmrig_session_call(sess, "echo", 0, &v, NULL, 0), -EINVAL);
	assert_int_equal(shmrig_session_call(sess, NULL, 0, &v, &out, 0), -EINVAL);
	assert_int_equal(shmrig_session_call(sess, "nope", 0, &v, &out, 0), -ENOENT);
	/* a bad request fails here, before anything is sent */
	v.kind = SHMRIG_KIND_NDARRAY;
	assert_int_equal(shmrig_session_call(sess, "echo", 0, &v, &out, 0), -EINVAL);
	assert_int_equal(shmrig_session_ping(sess, TIMEOUT_MS), 0);
	finish();
}

/* A child of the caller may not drive the caller's session. */
static int child_uses_session(void *arg)
{
	struct shmrig_value v = { .kind = SHMRIG_KIND_BYTES }, out;

	(void)arg;
	CHILD_CHECK(shmrig_session_call(sess, "echo", 0, &v, &out, 0) == -SHMRIG_EFORK);
	CHILD_CHECK(shmrig_session_ping(sess, 0) == -SHMRIG_EFORK);
	return 0;
}

static void test_inherited_session(void **state)
{
	(void)state;
	begin(NULL);
	assert_int_equal(shmrig_session_start(sess), 0);
	assert_int_equal(th_run_child(child_uses_session, NULL, TIMEOUT_MS), 0);
	assert_int_equal(shmrig_session_ping(sess, TIMEOUT_MS), 0);
	finish();
}

/* A worker that cannot set up says why, and leaves nothing behind. */
static void test_start_failure(void **state)
{
	struct shmrig_pool_opts bad_pool = { .size = sizeof(struct shmrig_pool_opts),
					     .backing = 42 };
	struct shmrig_session_opts opts = { .size = sizeof(struct shmrig_session_opts),
					    .worker_pool = &bad_pool };
	struct shmrig_value v = { .kind = SHMRIG_KIND_BYTES }, out;
	shmrig_session *failing;

	(void)state;
	begin(NULL);
	assert_int_equal(shmrig_session_create(&opts, reg, pool, &failing), 0);
	assert_int_equal(shmrig_session_add_builtin_handlers(failing), 0);
	assert_int_equal(shmrig_session_start(failing), -ECHILD);
	assert_non_null(strstr(shmrig_last_error(), "could not start"));
	assert_non_null(strstr(shmrig_last_error(), "unknown backing 42"));
	assert_non_null(strstr(shmrig_last_error(), "exited with status"));
	assert_int_equal(shmrig_session_worker_pid(failing), 0);
	assert_no_child();
	assert_int_equal(shmrig_session_call(failing, "echo", 0, &v, &out, 0), -EPIPE);
	shmrig_session_free(failing);
	finish();
}

/* ---- echo over every backend that is built ---- */

static void echo_all(const char *backend)
{
	shmrig_channel_pair *probe;
	int ret;

	if (test_backend && strcmp(backend, test_backend) != 0) {
		printf("skipping the %s backend: this run is %s's\n", backend, test_backend);
		skip();
	}
	ret = shmrig_channel_pair_create(
		&(struct shmrig_channel_opts){ .size = sizeof(struct shmrig_channel_opts),
					       .backend = backend },
		&probe);
	if (ret == -ENOTSUP) {
		printf("skipping the %s backend: %s\n", backend, shmrig_last_error());
		skip();
	}
	assert_int_equal(ret, 0);
	shmrig_channel_pair_free(probe);

	begin(backend);
	make_values();
	assert_int_equal(shmrig_session_start(sess), 0);
	for (int round = 0; round < 2; round++) {
		for (int i = 0; i < nvalues; i++) {
			struct shmrig_value out;

			assert_int_equal(shmrig_session_call(sess, "echo", 0, &values[i], &out,
							     TIMEOUT_MS),
					 0);
			th_assert_value_equal(&values[i], &out);
			assert_int_equal(shmrig_value_release(&out), 0);
		}
	}
	free_values();
	assert_int_equal(shmrig_session_shutdown(sess, TIMEOUT_MS), 0);
	finish();
}

static void test_echo_pipe(void **state)
{
	(void)state;
	echo_all("pipe");
}

static void test_echo_uring(void **state)
{
	(void)state;
	echo_all("uring");
}

static void test_echo_ring(void **state)
{
	(void)state;
	echo_all("ring");
}

/* Only in the runs over "ucx" (SHMRIG_TEST_BACKEND): UCX keeps process-wide
 * fds from its first use, which the other runs' fd accounting would count. */
static void test_echo_ucx(void **state)
{
	(void)state;
	if (!test_backend) {
		printf("skipping the ucx backend: test_session_ucx_* run it\n");
		skip();
	}
	echo_all("ucx");
}

/* ---- checksum: the worker's hash of the buffers against ours ---- */

static void hash_arrays(XXH3_state_t *st, const struct shmrig_named_array *arrays, uint32_t n)
{
	for (uint32_t i = 0; i < n; i++) {
		uint64_t nbytes;

		assert_int_equal(shmrig_array_nbytes(&arrays[i].array, &nbytes), 0);
		XXH3_64bits_update(st, arrays[i].array.data, (size_t)nbytes);
	}
}

/* The definition, written again here: XXH3-64 of the data bytes in buffer order. */
static uint64_t our_checksum(const struct shmrig_value *v)
{
	XXH3_state_t *st = XXH3_createState();
	struct shmrig_named_array one = { "", v->array };
	uint64_t sum;

	assert_non_null(st);
	XXH3_64bits_reset(st);
	if (v->kind == SHMRIG_KIND_BYTES)
		XXH3_64bits_update(st, v->bytes.data, (size_t)v->bytes.len);
	else if (v->kind == SHMRIG_KIND_NDARRAY)
		hash_arrays(st, &one, 1);
	else if (v->kind == SHMRIG_KIND_TABLE)
		hash_arrays(st, v->table.columns, v->table.ncolumns);
	else
		for (uint32_t g = 0; g < v->dataset.ngroups; g++)
			hash_arrays(st, v->dataset.groups[g].variables,
				    v->dataset.groups[g].nvariables);
	sum = XXH3_64bits_digest(st);
	XXH3_freeState(st);
	return sum;
}

static void test_checksum(void **state)
{
	(void)state;
	begin(NULL);
	make_values();
	assert_int_equal(shmrig_session_start(sess), 0);
	for (int i = 0; i < nvalues; i++) {
		struct shmrig_value out;
		uint64_t local;

		assert_int_equal(shmrig_session_call(sess, "checksum", 0, &values[i], &out,
						     TIMEOUT_MS),
				 0);
		assert_int_equal(out.kind, SHMRIG_KIND_NDARRAY);
		assert_int_equal(out.array.dtype, SHMRIG_DTYPE_UINT64);
		assert_int_equal(out.array.ndim, 1);
		assert_int_equal(out.array.shape[0], 1);
		assert_int_equal(shmrig_session_checksum(&values[i], &local), 0);
		assert_int_equal(local, our_checksum(&values[i]));
		assert_int_equal(((const uint64_t *)out.array.data)[0], local);
		assert_int_equal(shmrig_value_release(&out), 0);
	}
	free_values();
	finish();
}

/* ---- scale ---- */

static void test_scale(void **state)
{
	static float f32[1000];
	static double f64[17 * 3];
	struct shmrig_value v32 = { .kind = SHMRIG_KIND_NDARRAY,
				    .array = { .dtype = SHMRIG_DTYPE_FLOAT32,
					       .ndim = 1,
					       .shape = { 1000 },
					       .order = 'C',
					       .data = f32 } };
	struct shmrig_value v64 = { .kind = SHMRIG_KIND_NDARRAY,
				    .array = { .dtype = SHMRIG_DTYPE_FLOAT64,
					       .ndim = 2,
					       .shape = { 17, 3 },
					       .order = 'F',
					       .data = f64 } };
	struct shmrig_value bytes = { .kind = SHMRIG_KIND_BYTES, .bytes = { "abc", 3 } };
	struct shmrig_value out;

	(void)state;
	for (int i = 0; i < 1000; i++)
		f32[i] = (float)i * 0.5f - 3.0f;
	for (int i = 0; i < 17 * 3; i++)
		f64[i] = i * 1.1 + 0.01;
	begin(NULL);
	assert_int_equal(shmrig_session_start(sess), 0);

	assert_int_equal(shmrig_session_call(sess, "scale", 2.5, &v32, &out, TIMEOUT_MS), 0);
	assert_int_equal(out.array.dtype, SHMRIG_DTYPE_FLOAT32);
	assert_int_equal(out.array.shape[0], 1000);
	for (int i = 0; i < 1000; i++)
		assert_true(((const float *)out.array.data)[i] == f32[i] * 2.5f);
	assert_int_equal(shmrig_value_release(&out), 0);

	assert_int_equal(shmrig_session_call(sess, "scale", -1.25, &v64, &out, TIMEOUT_MS), 0);
	assert_int_equal(out.array.dtype, SHMRIG_DTYPE_FLOAT64);
	assert_int_equal(out.array.order, 'F');
	assert_int_equal(out.array.shape[0], 17);
	assert_int_equal(out.array.shape[1], 3);
	for (int i = 0; i < 17 * 3; i++)
		assert_true(((const double *)out.array.data)[i] == f64[i] * -1.25);
	assert_int_equal(shmrig_value_release(&out), 0);

	/* anything else is the handler's -EINVAL, in its words */
	assert_int_equal(shmrig_session_call(sess, "scale", 2, &bytes, &out, TIMEOUT_MS), -EINVAL);
	assert_non_null(
		strstr(shmrig_last_error(),
		       "'scale': takes a float32 or float64 ndarray, not a value of kind bytes"));
	v32.array.dtype = SHMRIG_DTYPE_INT32;
	assert_int_equal(shmrig_session_call(sess, "scale", 2, &v32, &out, TIMEOUT_MS), -EINVAL);
	assert_non_null(strstr(shmrig_last_error(), "not an ndarray of int32"));
	finish();
}

/* ---- echo_view: the request's own blocks come back ---- */

static void count_in_ours(void *arg, const struct shmrig_block_info *info)
{
	char mine[32];

	/* segment names are "<prefix>-<creator pid>-..." */
	snprintf(mine, sizeof(mine), "-%d-", (int)getpid());
	if (strstr(info->ref.name, mine))
		++*(uint64_t *)arg;
}

/* Live blocks in segments this process made (the caller's pool's own). */
static uint64_t live_in_ours(void)
{
	uint64_t n = 0;

	assert_true(shmrig_pool_for_each_live(pool, count_in_ours, &n) >= 0);
	return n;
}

/*
 * "echo_view" answers with the request's blocks, handed back: the answer held
 * is in the caller's own segments, where an "echo" answer is in the worker's
 * (the request's blocks were freed there). A value decoded by copy (bytes)
 * has no blocks to give back and is copied, as echo does; so is a small value,
 * which travels flat (MSG_FLAT) and has no block either way. Nothing is left
 * live on either side.
 */
static void test_echo_view(void **state)
{
	int handed_back = 0;

	(void)state;
	begin(NULL);
	make_values();
	assert_int_equal(shmrig_session_start(sess), 0);
	for (int i = 0; i < nvalues; i++) {
		struct shmrig_value out;

		assert_int_equal(shmrig_session_call(sess, "echo_view", 0, &values[i], &out,
						     TIMEOUT_MS),
				 0);
		th_assert_value_equal(&values[i], &out);
		if (values[i].kind == SHMRIG_KIND_BYTES || !shmrig_value_leases(&out)) {
			assert_int_equal(live_in_ours(), 0);
		} else {
			/* leases may share a block (subrefs of a pack) */
			assert_true(live_in_ours() > 0);
			assert_true(live_in_ours() <= shmrig_value_leases(&out));
			handed_back++;
		}
		assert_int_equal(shmrig_value_release(&out), 0);
		assert_int_equal(shmrig_session_call(sess, "echo", 0, &values[i], &out, TIMEOUT_MS),
				 0);
		th_assert_value_equal(&values[i], &out);
		assert_int_equal(live_in_ours(), 0);
		assert_int_equal(shmrig_value_release(&out), 0);
		assert_int_equal(th_live_blocks(pool), 0);
	}
	/* the 3 MiB array and the table (17 KB) at least: over SESSION_FLAT_MAX */
	assert_true(handed_back >= 2);
	free_values();
	/* 0, not -SHMRIG_ELEAK: the worker kept nothing of what it handed back */
	assert_int_equal(shmrig_session_shutdown(sess, TIMEOUT_MS), 0);
	finish();
}

/* ---- small values travel flat ---- */

/*
 * A value of at most SESSION_FLAT_MAX payload bytes goes in the message
 * (MSG_FLAT) both ways: its answer holds no lease and no block is live in
 * our pool while it is held; one byte more goes by hand-over, its answer a
 * lease on a block of the worker's, handed to us. Both are right.
 */
static void test_small_flat(void **state)
{
	static double small[SESSION_FLAT_MAX / sizeof(double)];
	static double over[SESSION_FLAT_MAX / sizeof(double) + 1];
	struct shmrig_value v = { .kind = SHMRIG_KIND_NDARRAY,
				  .array = { .dtype = SHMRIG_DTYPE_FLOAT64,
					     .ndim = 1,
					     .order = 'C' } },
			    out;

	(void)state;
	for (size_t i = 0; i < sizeof(over) / sizeof(over[0]); i++)
		over[i] = (double)i * 0.25 - 7;
	memcpy(small, over, sizeof(small));
	begin(NULL);
	assert_int_equal(shmrig_session_start(sess), 0);
	for (int round = 0; round < 2; round++) {
		v.array.data = round ? over : small;
		v.array.shape[0] = round ? sizeof(over) / sizeof(over[0]) :
					   sizeof(small) / sizeof(small[0]);
		assert_int_equal(shmrig_session_call(sess, "echo", 0, &v, &out, TIMEOUT_MS), 0);
		th_assert_value_equal(&v, &out);
		assert_int_equal(shmrig_value_leases(&out), round ? 1 : 0);
		assert_int_equal(th_live_blocks(pool), round ? 1 : 0);
		assert_int_equal(shmrig_value_release(&out), 0);
		assert_int_equal(th_live_blocks(pool), 0);
	}
	assert_int_equal(shmrig_session_shutdown(sess, TIMEOUT_MS), 0);
	finish();
}

/*
 * A dataset whose second group holds a variable over SESSION_FLAT_MAX goes by
 * hand-over, though its first group is small: the sizes are added without
 * wrapping (a variable too big to count once made the sum wrap round to
 * "small", and 1 MiB went flat, copied into the message).
 */
static void test_small_flat_dataset(void **state)
{
	static double tiny[1] = { 2.5 }, big[(1 << 20) / sizeof(double)];
	struct shmrig_named_array vars[2] = {
		{ "tiny",
		  { .dtype = SHMRIG_DTYPE_FLOAT64,
		    .ndim = 1,
		    .shape = { 1 },
		    .order = 'C',
		    .data = tiny } },
		{ "big",
		  { .dtype = SHMRIG_DTYPE_FLOAT64,
		    .ndim = 1,
		    .shape = { sizeof(big) / sizeof(big[0]) },
		    .order = 'C',
		    .data = big } },
	};
	struct shmrig_group grps[2] = { { .name = "a", .nvariables = 1, .variables = &vars[0] },
					{ .name = "b", .nvariables = 1, .variables = &vars[1] } };
	struct shmrig_value v = { .kind = SHMRIG_KIND_DATASET,
				  .dataset = { .ngroups = 2, .groups = grps } },
			    out;

	(void)state;
	for (size_t i = 0; i < sizeof(big) / sizeof(big[0]); i++)
		big[i] = (double)i;
	begin(NULL);
	assert_int_equal(shmrig_session_start(sess), 0);
	assert_int_equal(shmrig_session_call(sess, "echo", 0, &v, &out, TIMEOUT_MS), 0);
	th_assert_value_equal(&v, &out);
	assert_true(shmrig_value_leases(&out) > 0);
	assert_int_equal(shmrig_value_release(&out), 0);
	assert_int_equal(shmrig_session_shutdown(sess, TIMEOUT_MS), 0);
	finish();
}

/* ---- a handler's failure reaches the caller ---- */

static void test_handler_error(void **state)
{
	struct shmrig_value v = { .kind = SHMRIG_KIND_BYTES, .bytes = { "x", 1 } }, out;
	struct shmrig_session_stats stats = SHMRIG_SIZED(struct shmrig_session_stats);

	(void)state;
	begin(NULL);
	assert_int_equal(shmrig_session_start(sess), 0);
	assert_int_equal(shmrig_session_call(sess, "fail", 42, &v, &out, TIMEOUT_MS), -ERANGE);
	assert_non_null(strstr(shmrig_last_error(), "handler 'fail'"));
	assert_non_null(strstr(shmrig_last_error(), "value 42 is out of range"));
	assert_int_equal(out.kind, SHMRIG_KIND_BYTES);
	assert_null(out.storage);
	/* the session goes on */
	assert_int_equal(shmrig_session_call(sess, "echo", 0, &v, &out, TIMEOUT_MS), 0);
	th_assert_value_equal(&v, &out);
	assert_int_equal(shmrig_value_release(&out), 0);
	assert_int_equal(shmrig_session_stats(sess, &stats), 0);
	assert_int_equal(stats.calls, 2);
	finish();
}

/* ---- a call that times out; its late answer is discarded ---- */

static void test_timeout(void **state)
{
	static double data[4096];
	struct shmrig_value v = { .kind = SHMRIG_KIND_NDARRAY,
				  .array = { .dtype = SHMRIG_DTYPE_FLOAT64,
					     .ndim = 1,
					     .shape = { 4096 },
					     .order = 'C',
					     .data = data } };
	struct shmrig_value b = { .kind = SHMRIG_KIND_BYTES, .bytes = { "after", 5 } }, out;
	struct shmrig_session_stats stats = SHMRIG_SIZED(struct shmrig_session_stats);
	int64_t t0;

	(void)state;
	for (int i = 0; i < 4096; i++)
		data[i] = i;
	begin(NULL);
	assert_int_equal(shmrig_session_start(sess), 0);
	t0 = now_ms();
	assert_int_equal(shmrig_session_call(sess, "slow", 0, &v, &out, SHORT_TIMEOUT_MS),
			 -ETIMEDOUT);
	assert_true(now_ms() - t0 >= SHORT_TIMEOUT_MS);
	assert_non_null(strstr(shmrig_last_error(), "did not answer call"));
	assert_int_equal(out.kind, SHMRIG_KIND_BYTES);
	/* let the slow call finish: its answer comes before the next one's */
	assert_int_equal(th_write_all(control[1], "g", 1), 0);
	assert_int_equal(shmrig_session_call(sess, "echo", 0, &b, &out, TIMEOUT_MS), 0);
	th_assert_value_equal(&b, &out);
	assert_int_equal(shmrig_value_release(&out), 0);
	assert_int_equal(shmrig_session_stats(sess, &stats), 0);
	assert_int_equal(stats.timeouts, 1);
	assert_int_equal(stats.stale_replies, 1);
	assert_int_equal(stats.deaths, 0);
	/* the late answer's blocks were freed: nothing of that call is live */
	assert_int_equal(th_live_blocks(pool), 0);
	assert_int_equal(shmrig_session_shutdown(sess, TIMEOUT_MS), 0);
	finish();
}

/* A worker that will not stop is killed, and what it held comes back. */
static void test_wedged_worker(void **state)
{
	static double data[1000];
	struct shmrig_value v = { .kind = SHMRIG_KIND_NDARRAY,
				  .array = { .dtype = SHMRIG_DTYPE_FLOAT64,
					     .ndim = 1,
					     .shape = { 1000 },
					     .order = 'C',
					     .data = data } };
	struct shmrig_session_stats stats = SHMRIG_SIZED(struct shmrig_session_stats);
	struct shmrig_value out;

	(void)state;
	begin(NULL);
	assert_int_equal(shmrig_session_start(sess), 0);
	assert_int_equal(shmrig_session_call(sess, "slow", 0, &v, &out, SHORT_TIMEOUT_MS),
			 -ETIMEDOUT);
	assert_int_equal(shmrig_session_shutdown(sess, SHORT_TIMEOUT_MS), -ETIMEDOUT);
	assert_non_null(strstr(shmrig_last_error(), "did not stop"));
	assert_non_null(strstr(shmrig_last_error(), "signal 9"));
	assert_int_equal(shmrig_session_worker_pid(sess), 0);
	assert_no_child();
	assert_int_equal(shmrig_session_stats(sess, &stats), 0);
	assert_int_equal(stats.deaths, 1);
	assert_true(stats.blocks_reaped >= 1); /* the request it held */
	assert_int_equal(th_live_blocks(pool), 0);
	finish();
}

/* ---- a worker killed mid-request ---- */

static void crash_and_restart(int sig, const char *words)
{
	struct shmrig_value out, held, again;
	struct shmrig_session_stats before = SHMRIG_SIZED(struct shmrig_session_stats);
	struct shmrig_session_stats after = SHMRIG_SIZED(struct shmrig_session_stats);
	char expect[64];
	pid_t worker;

	make_values();
	assert_int_equal(shmrig_session_start(sess), 0);
	/* a response we hold across the crash: it views the worker's blocks */
	assert_int_equal(shmrig_session_call(sess, "echo", 0, &values[0], &held, TIMEOUT_MS), 0);
	assert_int_equal(th_live_blocks(pool), shmrig_value_leases(&held));
	assert_int_equal(shmrig_session_stats(sess, &before), 0);
	worker = shmrig_session_worker_pid(sess);

	/* the table's pack block is in flight to the worker when it dies */
	assert_int_equal(shmrig_session_call(sess, "crash", sig, &values[table_index], &out,
					     TIMEOUT_MS),
			 -EPIPE);
	snprintf(expect, sizeof(expect), "killed by signal %d (%s)", sig, words);
	assert_non_null(strstr(shmrig_last_error(), expect));
	assert_non_null(strstr(shmrig_last_error(), "'crash'"));
	assert_int_equal(shmrig_session_worker_pid(sess), 0);
	assert_no_child();
	assert_int_equal(shmrig_session_stats(sess, &after), 0);
	assert_int_equal(after.deaths, before.deaths + 1);
	assert_true(after.blocks_reaped >= before.blocks_reaped + 1);
	/* the session reaped: nothing of the dead worker's is left to reap */
	assert_int_equal(shmrig_pool_reap(pool), 0);
	assert_int_equal(th_live_blocks(pool), shmrig_value_leases(&held));
	assert_int_equal(th_count_segments_of(th_prefix(), worker), 0);
	/* what we hold is intact, though its segment's name is gone */
	th_assert_value_equal(&values[0], &held);
	assert_int_equal(shmrig_value_release(&held), 0);
	assert_int_equal(th_live_blocks(pool), 0);

	/* a dead worker is an error until the restart */
	assert_int_equal(shmrig_session_call(sess, "echo", 0, &values[0], &out, TIMEOUT_MS),
			 -EPIPE);
	assert_non_null(strstr(shmrig_last_error(), "restart"));
	assert_int_equal(shmrig_session_ping(sess, TIMEOUT_MS), -EPIPE);
	assert_int_equal(shmrig_session_restart(sess), 0);
	assert_true(shmrig_session_worker_pid(sess) > 0);
	assert_true(shmrig_session_worker_pid(sess) != worker);
	for (int i = 0; i < nvalues; i++) {
		assert_int_equal(shmrig_session_call(sess, "echo", 0, &values[i], &again,
						     TIMEOUT_MS),
				 0);
		th_assert_value_equal(&values[i], &again);
		assert_int_equal(shmrig_value_release(&again), 0);
	}
	assert_int_equal(shmrig_session_shutdown(sess, TIMEOUT_MS), 0);
	free_values();
}

static void test_crash_sigkill(void **state)
{
	(void)state;
	begin(NULL);
	crash_and_restart(SIGKILL, strsignal(SIGKILL));
	finish();
}

/* SIGSEGV: cmocka catches it in this process; the worker must not. */
static void test_crash_sigsegv(void **state)
{
	(void)state;
	begin(NULL);
	crash_and_restart(SIGSEGV, strsignal(SIGSEGV));
	finish();
}

/* A worker killed from outside while idle: the next call says so. */
static void test_killed_between_calls(void **state)
{
	struct shmrig_value v = { .kind = SHMRIG_KIND_BYTES, .bytes = { "x", 1 } }, out;
	pid_t worker;

	(void)state;
	begin(NULL);
	assert_int_equal(shmrig_session_start(sess), 0);
	worker = shmrig_session_worker_pid(sess);
	assert_int_equal(kill(worker, SIGTERM), 0);
	assert_int_equal(shmrig_session_call(sess, "echo", 0, &v, &out, TIMEOUT_MS), -EPIPE);
	assert_non_null(strstr(shmrig_last_error(), "signal 15"));
	assert_no_child();
	assert_int_equal(shmrig_session_restart(sess), 0);
	assert_int_equal(shmrig_session_call(sess, "echo", 0, &v, &out, TIMEOUT_MS), 0);
	assert_int_equal(shmrig_value_release(&out), 0);
	finish();
}

/* ---- a caller that dies takes its worker with it ---- */

static shmrig_pool *child_pool;
static shmrig_registry *child_reg;
static shmrig_session *child_sess;

/* Start a worker, use it (a value over SESSION_FLAT_MAX: by hand-over, from
 * blocks of the pool), tell the test its pid, and die without a word. */
static int child_dies_with_worker(void *arg)
{
	static char big[2 * SESSION_FLAT_MAX];
	struct shmrig_pool_opts pool_opts = { .size = sizeof(struct shmrig_pool_opts),
					      .arena_size = 8 * MiB,
					      .backing = SHMRIG_BACKING_PLAIN,
					      .flags = SHMRIG_POOL_QUIET };
	struct shmrig_value v = { .kind = SHMRIG_KIND_BYTES, .bytes = { big, sizeof(big) } }, out;
	pid_t worker;

	CHILD_CHECK(shmrig_pool_open(&pool_opts, &child_pool) == 0);
	CHILD_CHECK(shmrig_registry_create(&child_reg) == 0);
	CHILD_CHECK(shmrig_registry_add_builtins(child_reg) == 0);
	CHILD_CHECK(shmrig_session_create(NULL, child_reg, child_pool, &child_sess) == 0);
	CHILD_CHECK(shmrig_session_add_builtin_handlers(child_sess) == 0);
	CHILD_CHECK(shmrig_session_start(child_sess) == 0);
	CHILD_CHECK(shmrig_session_call(child_sess, "echo", 0, &v, &out, TIMEOUT_MS) == 0);
	worker = shmrig_session_worker_pid(child_sess);
	CHILD_CHECK(th_write_all(*(int *)arg, &worker, sizeof(worker)) == 0);
	raise(SIGKILL);
	return 1;
}

static void test_caller_dies(void **state)
{
	struct pollfd pfd = { .events = POLLIN };
	int fds[2];
	pid_t worker;
	char byte;

	(void)state;
	begin(NULL);
	assert_int_equal(pipe(fds), 0);
	assert_int_equal(th_run_child(child_dies_with_worker, &fds[1], TIMEOUT_MS), 128 + SIGKILL);
	assert_int_equal(th_read_all(fds[0], &worker, sizeof(worker)), 0);
	assert_true(worker > 0);
	/* The worker is not our child, but it holds the last copy of the pipe's
	 * write end (inherited from its caller): end of file means it has exited. */
	close(fds[1]);
	pfd.fd = fds[0];
	assert_int_equal(poll(&pfd, 1, TIMEOUT_MS), 1);
	assert_int_equal(read(fds[0], &byte, 1), 0);
	close(fds[0]);
	/* the worker closed its pool; what the dead caller created is swept */
	assert_true(shmrig_segment_sweep(th_prefix()) >= 1);
	finish();
}

/* ---- a worker that leaks says so at shutdown ---- */

static void test_worker_leak(void **state)
{
	struct shmrig_value v = { .kind = SHMRIG_KIND_BYTES, .bytes = { "x", 1 } }, out;
	struct shmrig_session_stats stats = SHMRIG_SIZED(struct shmrig_session_stats);

	(void)state;
	begin(NULL);
	assert_int_equal(shmrig_session_start(sess), 0);
	assert_int_equal(shmrig_session_call(sess, "leak", 0, &v, &out, TIMEOUT_MS), 0);
	assert_int_equal(shmrig_value_release(&out), 0);
	assert_int_equal(shmrig_session_shutdown(sess, TIMEOUT_MS), -SHMRIG_ELEAK);
	assert_non_null(strstr(shmrig_last_error(), "live at its close"));
	assert_int_equal(shmrig_session_stats(sess, &stats), 0);
	assert_int_equal(stats.deaths, 0);
	finish();
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_ping_and_shutdown),
		cmocka_unit_test(test_bad_arguments),
		cmocka_unit_test(test_inherited_session),
		cmocka_unit_test(test_start_failure),
		cmocka_unit_test(test_echo_pipe),
		cmocka_unit_test(test_echo_uring),
		cmocka_unit_test(test_echo_ring),
		cmocka_unit_test(test_echo_ucx),
		cmocka_unit_test(test_checksum),
		cmocka_unit_test(test_scale),
		cmocka_unit_test(test_echo_view),
		cmocka_unit_test(test_small_flat),
		cmocka_unit_test(test_small_flat_dataset),
		cmocka_unit_test(test_handler_error),
		cmocka_unit_test(test_timeout),
		cmocka_unit_test(test_wedged_worker),
		cmocka_unit_test(test_crash_sigkill),
		cmocka_unit_test(test_crash_sigsegv),
		cmocka_unit_test(test_killed_between_calls),
		cmocka_unit_test(test_caller_dies),
		cmocka_unit_test(test_worker_leak),
	};

	signal(SIGPIPE, SIG_IGN);
	test_backend = getenv("SHMRIG_TEST_BACKEND");
	if (test_backend && !*test_backend)
		test_backend = NULL;
	if (test_backend && strcmp(test_backend, "ucx") == 0 && th_ucx_skip_reason()) {
		printf("SKIP: %s\n", th_ucx_skip_reason());
		return TEST_SKIP_EXIT;
	}
	return cmocka_run_group_tests(tests, th_sweep_leftovers, NULL);
}
