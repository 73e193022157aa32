/* SPDX-License-Identifier: MIT */
/*
 * Channels, every backend over the same cases: hello and fingerprints, 100,000
 * messages in order, sizes around a ring slot and 16 MiB, both directions at
 * once, timeouts, frames whose blocks move to the receiver, and a peer killed
 * while we wait in recv or in send.
 *
 * SHMRIG_TEST_BACKEND=ucx runs the cases over "ucx" alone, with the transports
 * UCX_TLS names (tests/meson.build runs it once for tcp and once for shared
 * memory); exit 77 when the library was built without UCX. The listen/connect
 * API has its own cases in test_channel_ucx.c.
 */
#include "helpers.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "transport/channel_internal.h"

#include <shmrig/channel.h>
#include <shmrig/frame.h>
#include <shmrig/registry.h>

#define TIMEOUT_MS 30000
#define SLOT 4096
#define FINGERPRINT 0x5eed5eed12345678ull
/* A dead peer must be noticed within this (slices of 100 ms plus slack). */
#define DEAD_PEER_BOUND_MS 3000

static const char *backend; /* the one the current case runs over */

static shmrig_pool *open_pool(void)
{
	return th_open_pool(8 * MiB, 256 * MiB);
}

struct peer {
	pid_t pid;
	shmrig_channel *ch;
	int open_ret;
};

/* Child side: run fn on end 1 with its own pool; the exit status is fn's. */
typedef int (*child_fn)(shmrig_channel *ch, shmrig_pool *pool);

/*
 * Fork a peer that opens end 1 (fingerprint child_fp) and runs fn; open end 0
 * here (fingerprint FINGERPRINT, our pool). p.open_ret is our open's result.
 */
static struct peer start_peer(child_fn fn, shmrig_pool *pool, uint64_t child_fp)
{
	/* static: the child inherits these, and valgrind must find them reachable */
	static shmrig_channel_pair *pair;
	static shmrig_pool *child_pool;
	static shmrig_channel *child_ch;
	struct shmrig_channel_opts opts = { .size = sizeof(struct shmrig_channel_opts),
					    .backend = backend,
					    .slot_size = SLOT };
	struct peer p = { 0 };

	assert_int_equal(shmrig_channel_pair_create(&opts, &pair), 0);
	fflush(NULL);
	p.pid = fork();
	assert_true(p.pid >= 0);
	if (p.pid == 0) {
		int ret;

		child_pool = open_pool();
		if (!child_pool)
			_exit(90);
		ret = shmrig_channel_open(pair, 1, getppid(), child_pool, child_fp, &child_ch);
		shmrig_channel_pair_free(pair);
		if (ret)
			_exit(ret == -EPROTO ? 91 : 92);
		ret = fn(child_ch, child_pool);
		shmrig_channel_close(child_ch);
		if (shmrig_pool_close(child_pool))
			_exit(93);
		_exit(ret);
	}
	p.open_ret = shmrig_channel_open(pair, 0, p.pid, pool, FINGERPRINT, &p.ch);
	shmrig_channel_pair_free(pair);
	return p;
}

static int finish_peer(struct peer *p)
{
	shmrig_channel_close(p->ch);
	p->ch = NULL;
	return th_wait_child(p->pid, TIMEOUT_MS);
}

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- hello ---- */

static int child_idle(shmrig_channel *ch, shmrig_pool *pool)
{
	(void)ch;
	(void)pool;
	return 0;
}

static void test_hello(void **state)
{
	shmrig_pool *pool = open_pool();
	struct peer p;

	(void)state;
	p = start_peer(child_idle, pool, FINGERPRINT);
	assert_int_equal(p.open_ret, 0);
	assert_string_equal(shmrig_channel_backend(p.ch), backend);
	assert_int_equal(finish_peer(&p), 0);
	assert_int_equal(shmrig_pool_close(pool), 0);
}

/* A child that uses the end it inherited through fork: -SHMRIG_EFORK from every
 * call, whatever the backend (the end is its parent's). */
static int child_uses_inherited(void *arg)
{
	shmrig_channel *ch = arg;
	const char msg[8] = "inherit";
	void *got;
	size_t len;

	CHILD_CHECK(shmrig_channel_send(ch, msg, sizeof(msg), 0) == -SHMRIG_EFORK);
	CHILD_CHECK(shmrig_channel_recv(ch, &got, &len, 0) == -SHMRIG_EFORK);
	CHILD_CHECK(shmrig_channel_send_frame(ch, msg, sizeof(msg), 0) == -SHMRIG_EFORK);
	return 0;
}

static void test_inherited_end(void **state)
{
	shmrig_pool *pool = open_pool();
	struct peer p;

	(void)state;
	p = start_peer(child_idle, pool, FINGERPRINT);
	assert_int_equal(p.open_ret, 0);
	assert_int_equal(th_run_child(child_uses_inherited, p.ch, TIMEOUT_MS), 0);
	assert_int_equal(finish_peer(&p), 0);
	assert_int_equal(shmrig_pool_close(pool), 0);
}

static void test_fingerprint_mismatch(void **state)
{
	shmrig_pool *pool = open_pool();
	struct peer p;

	(void)state;
	p = start_peer(child_idle, pool, FINGERPRINT ^ 1);
	assert_int_equal(p.open_ret, -EPROTO);
	assert_non_null(strstr(shmrig_last_error(), "fingerprint"));
	assert_int_equal(finish_peer(&p), 91); /* the child saw -EPROTO too */
	assert_int_equal(shmrig_pool_close(pool), 0);
}

/* ---- 100,000 messages in order, batches of 64 ---- */

enum {
	COUNT = 100000,
	BATCH = 64
};

static int child_check_order(shmrig_channel *ch, shmrig_pool *pool)
{
	uint64_t expect = 0;

	(void)pool;
	while (expect < COUNT) {
		void *msg;
		size_t len;
		uint64_t seq;

		if (shmrig_channel_recv(ch, &msg, &len, TIMEOUT_MS))
			return 10;
		memcpy(&seq, msg, sizeof(seq));
		free(msg);
		if (len != 8 + seq % 100 || seq != expect)
			return 11;
		expect++;
	}
	return shmrig_channel_send(ch, &expect, sizeof(expect), TIMEOUT_MS) ? 12 : 0;
}

static void test_in_order(void **state)
{
	shmrig_pool *pool = open_pool();
	static unsigned char bufs[BATCH][128];
	const void *msgs[BATCH];
	size_t lens[BATCH];
	uint64_t count = 0;
	struct peer p;
	void *msg;
	size_t len;

	(void)state;
	p = start_peer(child_check_order, pool, FINGERPRINT);
	assert_int_equal(p.open_ret, 0);
	for (uint64_t seq = 0; seq < COUNT;) {
		uint32_t n = 0;

		for (; n < BATCH && seq < COUNT; n++, seq++) {
			memcpy(bufs[n], &seq, sizeof(seq));
			msgs[n] = bufs[n];
			lens[n] = 8 + seq % 100;
		}
		assert_int_equal(shmrig_channel_sendv(p.ch, msgs, lens, n, TIMEOUT_MS), 0);
	}
	assert_int_equal(shmrig_channel_recv(p.ch, &msg, &len, TIMEOUT_MS), 0);
	memcpy(&count, msg, sizeof(count));
	free(msg);
	assert_int_equal(count, COUNT);
	assert_int_equal(finish_peer(&p), 0);
	assert_int_equal(shmrig_pool_close(pool), 0);
	assert_int_equal(th_count_segments(th_prefix()), 0);
}

/* ---- sizes around a slot, and 16 MiB ---- */

static const size_t sizes[] = { 0, 1, SLOT - 1, SLOT, SLOT + 1, 3 * SLOT + 7, 16 * MiB };
#define NSIZES (sizeof(sizes) / sizeof(sizes[0]))

/* Child: take n messages of these sizes (th_fill(i)), check, send each back. */
static int echo_sizes(shmrig_channel *ch, const size_t *want, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		void *msg;
		size_t len;
		int ret;

		if (shmrig_channel_recv(ch, &msg, &len, TIMEOUT_MS))
			return 20;
		if (len != want[i] || th_first_mismatch(msg, len, (unsigned)i) != len) {
			free(msg);
			return 21;
		}
		ret = shmrig_channel_send(ch, msg, len, TIMEOUT_MS);
		free(msg);
		if (ret)
			return 22;
	}
	return 0;
}

/* Parent: send n messages of these sizes through buf and check what comes back. */
static void roundtrip_sizes(shmrig_channel *ch, const size_t *want, size_t n, unsigned char *buf)
{
	for (size_t i = 0; i < n; i++) {
		void *msg;
		size_t len;

		th_fill(buf, want[i], (unsigned)i);
		assert_int_equal(shmrig_channel_send(ch, buf, want[i], TIMEOUT_MS), 0);
		assert_int_equal(shmrig_channel_recv(ch, &msg, &len, TIMEOUT_MS), 0);
		assert_int_equal(len, want[i]);
		assert_int_equal((uintptr_t)msg % 8, 0);
		assert_int_equal(th_first_mismatch(msg, len, (unsigned)i), len);
		free(msg);
	}
}

static int child_echo_sizes(shmrig_channel *ch, shmrig_pool *pool)
{
	(void)pool;
	return echo_sizes(ch, sizes, NSIZES);
}

static void test_sizes(void **state)
{
	shmrig_pool *pool = open_pool();
	unsigned char *buf = malloc(16 * MiB);
	struct peer p;

	(void)state;
	p = start_peer(child_echo_sizes, pool, FINGERPRINT);
	assert_int_equal(p.open_ret, 0);
	roundtrip_sizes(p.ch, sizes, NSIZES, buf);
	assert_int_equal(finish_peer(&p), 0);
	free(buf);
	assert_int_equal(th_live_blocks(pool), 0);
	assert_int_equal(shmrig_pool_close(pool), 0);
	assert_int_equal(th_count_segments(th_prefix()), 0);
}

/* ---- both directions at once ---- */

enum {
	BOTH_ROUNDS = 300
};

/* Each round: send a batch, then take the other side's batch. */
static int exchange(shmrig_channel *ch, uint64_t tag)
{
	static unsigned char bufs[BATCH][64];
	const void *msgs[BATCH];
	size_t lens[BATCH];

	for (uint64_t round = 0; round < BOTH_ROUNDS; round++) {
		for (uint32_t i = 0; i < BATCH; i++) {
			uint64_t v = tag ^ (round * BATCH + i);

			memcpy(bufs[i], &v, sizeof(v));
			msgs[i] = bufs[i];
			lens[i] = 8 + i % 50;
		}
		if (shmrig_channel_sendv(ch, msgs, lens, BATCH, TIMEOUT_MS))
			return 30;
		for (uint32_t i = 0; i < BATCH; i++) {
			void *msg;
			size_t len;
			uint64_t v;

			if (shmrig_channel_recv(ch, &msg, &len, TIMEOUT_MS))
				return 31;
			memcpy(&v, msg, sizeof(v));
			free(msg);
			if (len != 8 + i % 50 || v != (~tag ^ (round * BATCH + i)))
				return 32;
		}
	}
	return 0;
}

static int child_exchange(shmrig_channel *ch, shmrig_pool *pool)
{
	(void)pool;
	return exchange(ch, ~0ull);
}

static void test_both_directions(void **state)
{
	shmrig_pool *pool = open_pool();
	struct peer p;

	(void)state;
	p = start_peer(child_exchange, pool, FINGERPRINT);
	assert_int_equal(p.open_ret, 0);
	assert_int_equal(exchange(p.ch, 0), 0);
	assert_int_equal(finish_peer(&p), 0);
	assert_int_equal(shmrig_pool_close(pool), 0);
}

/* ---- timeouts and bad arguments ---- */

static int child_wait_for_word(shmrig_channel *ch, shmrig_pool *pool)
{
	void *msg;
	size_t len;

	(void)pool;
	if (shmrig_channel_recv(ch, &msg, &len, TIMEOUT_MS))
		return 40;
	free(msg);
	return 0;
}

static void test_timeout(void **state)
{
	shmrig_pool *pool = open_pool();
	struct peer p;
	int64_t t0;
	void *msg;
	size_t len;

	(void)state;
	p = start_peer(child_wait_for_word, pool, FINGERPRINT);
	assert_int_equal(p.open_ret, 0);
	t0 = now_ms();
	assert_int_equal(shmrig_channel_recv(p.ch, &msg, &len, 50), -ETIMEDOUT);
	assert_true(now_ms() - t0 >= 50);
	assert_int_equal(shmrig_channel_recv(p.ch, &msg, &len, 0), -ETIMEDOUT);
	assert_int_equal(shmrig_channel_recv(p.ch, NULL, &len, 0), -EINVAL);
	assert_int_equal(shmrig_channel_send(p.ch, NULL, 5, 0), -EINVAL);
	assert_int_equal(shmrig_channel_send(p.ch, "x", SHMRIG_CHANNEL_MAX_MSG + 1, 0), -EMSGSIZE);
	assert_int_equal(shmrig_channel_send(p.ch, "go", 2, TIMEOUT_MS), 0);
	assert_int_equal(finish_peer(&p), 0);
	assert_int_equal(shmrig_pool_close(pool), 0);
}

/* ---- backpressure: a receiver that stops reading ---- */

#define BP_LEN (48 * 1024) /* several fill a socket buffer; a ring spills them */
#define BP_SLICE_MS 20
static int bp_go[2]; /* the parent writes a byte when the child may read */

/* Wait for the go, then take messages seq 0, 1, ... each exactly once, until
 * the 8-byte end message that says how many the sender had taken. */
static int child_read_after_go(shmrig_channel *ch, shmrig_pool *pool)
{
	uint64_t seq = 0;
	char go;

	(void)pool;
	if (th_read_all(bp_go[0], &go, 1))
		return 50;
	for (;;) {
		void *msg;
		size_t len;
		uint64_t got;

		if (shmrig_channel_recv(ch, &msg, &len, TIMEOUT_MS))
			return 51;
		memcpy(&got, msg, sizeof(got));
		if (len == sizeof(got)) {
			free(msg);
			return got == seq ? 0 : 52;
		}
		if (len != BP_LEN || got != seq ||
		    th_first_mismatch((unsigned char *)msg + 8, len - 8, (unsigned)seq) != len - 8) {
			free(msg);
			return 53;
		}
		free(msg);
		seq++;
	}
}

static int bp_send(shmrig_channel *ch, unsigned char *msg, uint64_t seq, int timeout_ms)
{
	memcpy(msg, &seq, sizeof(seq));
	th_fill(msg + 8, BP_LEN - 8, (unsigned)seq);
	return shmrig_channel_send(ch, msg, BP_LEN, timeout_ms);
}

/*
 * The sender sees -ETIMEDOUT, not a hang, and a timed-out message was not
 * taken: sending it again later delivers it once (a message part of which went
 * counts as taken, and the next call finishes it first).
 */
static void test_send_backpressure(void **state)
{
	shmrig_pool *pool = open_pool();
	unsigned char *msg = malloc(BP_LEN);
	uint64_t seq = 0;
	struct peer p;
	int ret;

	(void)state;
	assert_non_null(msg);
	assert_int_equal(pipe(bp_go), 0);
	p = start_peer(child_read_after_go, pool, FINGERPRINT);
	assert_int_equal(p.open_ret, 0);
	while ((ret = bp_send(p.ch, msg, seq, BP_SLICE_MS)) == 0 && seq < 100000)
		seq++;
	assert_int_equal(ret, -ETIMEDOUT);
	/* still not reading: the same message times out again */
	assert_int_equal(bp_send(p.ch, msg, seq, BP_SLICE_MS), -ETIMEDOUT);
	assert_int_equal(th_write_all(bp_go[1], "g", 1), 0);
	for (uint64_t end = seq + 4; seq < end; seq++)
		assert_int_equal(bp_send(p.ch, msg, seq, TIMEOUT_MS), 0);
	assert_int_equal(shmrig_channel_send(p.ch, &seq, sizeof(seq), TIMEOUT_MS), 0);
	assert_int_equal(finish_peer(&p), 0);
	close(bp_go[0]);
	close(bp_go[1]);
	free(msg);
	assert_int_equal(shmrig_pool_close(pool), 0);
}

static void test_bad_options(void **state)
{
	struct shmrig_channel_opts opts = { .size = sizeof(struct shmrig_channel_opts),
					    .backend = "carrier-pigeon" };
	shmrig_channel_pair *pair;

	(void)state;
	assert_int_equal(shmrig_channel_pair_create(&opts, &pair), -EINVAL);
	assert_non_null(strstr(shmrig_last_error(), "pipe"));
	opts.backend = backend;
	opts.flags = 1;
	assert_int_equal(shmrig_channel_pair_create(&opts, &pair), -EINVAL);
	opts.flags = 0;
	opts.size = 0;
	assert_int_equal(shmrig_channel_pair_create(&opts, &pair), -EINVAL);
	assert_int_equal(shmrig_channel_pair_create(NULL, NULL), -EINVAL);
}

/* ---- frames: their blocks go with them ---- */

static int child_decode(shmrig_channel *ch, shmrig_pool *pool)
{
	shmrig_registry *reg;
	struct shmrig_value value;
	int ok = 0;
	void *frame;
	size_t len;

	if (shmrig_registry_create(&reg) || shmrig_registry_add_builtins(reg))
		return 50;
	if (shmrig_channel_recv(ch, &frame, &len, TIMEOUT_MS))
		return 51;
	if (shmrig_registry_decode(reg, pool, frame, len, &value) == 0) {
		void *go;
		size_t go_len;

		ok = value.kind == SHMRIG_KIND_NDARRAY && value.array.shape[0] == 1000 &&
		     ((const double *)value.array.data)[999] == 999.0;
		/* hold the blocks until the parent has seen they are ours */
		if (shmrig_channel_recv(ch, &go, &go_len, TIMEOUT_MS) == 0)
			free(go);
		else
			ok = 0;
		if (shmrig_value_release(&value))
			ok = 0;
	}
	free(frame);
	shmrig_registry_free(reg);
	return ok ? 0 : 52;
}

/* ---- a frame with 16 MiB of metadata ---- */

enum {
	BIG_META = 16 << 20
};

static int child_big_meta(shmrig_channel *ch, shmrig_pool *pool)
{
	struct shmrig_frame f;
	char *json = NULL;
	void *frame;
	size_t len;
	int ok;

	(void)pool;
	if (shmrig_channel_recv(ch, &frame, &len, TIMEOUT_MS))
		return 70;
	ok = shmrig_frame_parse(frame, len, &f) == 0 && f.meta_len == BIG_META &&
	     shmrig_frame_to_json(frame, len, NULL, &json) == 0 && strlen(json) > BIG_META;
	free(json);
	free(frame);
	return ok ? 0 : 71;
}

static void test_big_meta_frame(void **state)
{
	shmrig_pool *pool = open_pool();
	size_t len = shmrig_frame_size(0, BIG_META);
	struct shmrig_frame_header h = { .magic = SHMRIG_FRAME_MAGIC,
					 .version = SHMRIG_FRAME_VERSION,
					 .meta_len = BIG_META };
	unsigned char *frame = aligned_alloc(8, (len + 7) & ~(size_t)7);
	unsigned char *meta = frame + sizeof(h);
	uint32_t str_len = BIG_META - 5;
	struct peer p;

	(void)state;
	/* the meta: one MessagePack str32 of 16 MiB - 5 bytes of 'a' */
	memcpy(frame, &h, sizeof(h));
	meta[0] = 0xdb;
	meta[1] = (unsigned char)(str_len >> 24);
	meta[2] = (unsigned char)(str_len >> 16);
	meta[3] = (unsigned char)(str_len >> 8);
	meta[4] = (unsigned char)str_len;
	memset(meta + 5, 'a', str_len);
	p = start_peer(child_big_meta, pool, FINGERPRINT);
	assert_int_equal(p.open_ret, 0);
	assert_int_equal(shmrig_channel_send_frame(p.ch, frame, len, TIMEOUT_MS), 0);
	assert_int_equal(finish_peer(&p), 0);
	free(frame);
	assert_int_equal(th_live_blocks(pool), 0);
	assert_int_equal(shmrig_pool_close(pool), 0);
}

static void test_send_frame(void **state)
{
	shmrig_pool *pool = open_pool();
	static double data[1000];
	struct shmrig_value v = { .kind = SHMRIG_KIND_NDARRAY,
				  .array = { .dtype = SHMRIG_DTYPE_FLOAT64,
					     .ndim = 1,
					     .shape = { 1000 },
					     .order = 'C',
					     .data = data } };
	shmrig_registry *reg;
	struct peer p;
	void *frame;
	size_t len;

	(void)state;
	for (int i = 0; i < 1000; i++)
		data[i] = i;
	assert_int_equal(shmrig_registry_create(&reg), 0);
	assert_int_equal(shmrig_registry_add_builtins(reg), 0);
	p = start_peer(child_decode, pool, FINGERPRINT);
	assert_int_equal(p.open_ret, 0);
	assert_int_equal(shmrig_registry_encode(reg, pool, &v, &frame, &len), 0);
	assert_int_equal(shmrig_channel_send_frame(p.ch, frame, len, TIMEOUT_MS), 0);
	/* the blocks are the child's now */
	assert_int_equal(shmrig_frame_discard(pool, frame, len), -EPERM);
	assert_int_equal(shmrig_channel_send(p.ch, "go", 2, TIMEOUT_MS), 0);
	free(frame);
	assert_int_equal(finish_peer(&p), 0);
	/* it freed them into our arena */
	assert_int_equal(th_live_blocks(pool), 0);
	shmrig_registry_free(reg);
	assert_int_equal(shmrig_pool_close(pool), 0);
}

/* ---- a peer killed while we wait ---- */

static int child_sleep(shmrig_channel *ch, shmrig_pool *pool)
{
	(void)pool;
	/* say we are ready, then neither read nor write until killed */
	if (shmrig_channel_send(ch, "r", 1, TIMEOUT_MS))
		return 60;
	for (;;)
		pause();
}

/* Kill the peer from a helper process after `delay_ms`, while we are blocked. */
static pid_t kill_later(pid_t victim, int delay_ms)
{
	pid_t killer = fork();

	if (killer == 0) {
		struct timespec ts = { delay_ms / 1000, (long)(delay_ms % 1000) * 1000000 };

		/* a delay, not a synchronisation: the test holds whether or not we
		 * are blocked yet when it fires */
		nanosleep(&ts, NULL);
		kill(victim, SIGKILL);
		_exit(0);
	}
	return killer;
}

static void wait_ready(struct peer *p)
{
	void *msg;
	size_t len;

	assert_int_equal(shmrig_channel_recv(p->ch, &msg, &len, TIMEOUT_MS), 0);
	free(msg);
}

static void test_peer_killed_in_recv(void **state)
{
	shmrig_pool *pool = open_pool();
	struct peer p;
	pid_t killer;
	int64_t t0;
	void *msg;
	size_t len;

	(void)state;
	p = start_peer(child_sleep, pool, FINGERPRINT);
	assert_int_equal(p.open_ret, 0);
	wait_ready(&p);
	killer = kill_later(p.pid, 200);
	t0 = now_ms();
	assert_int_equal(shmrig_channel_recv(p.ch, &msg, &len, -1), -EPIPE);
	assert_true(now_ms() - t0 < DEAD_PEER_BOUND_MS);
	assert_int_equal(th_wait_child(killer, TIMEOUT_MS), 0);
	assert_int_equal(finish_peer(&p), 128 + SIGKILL);
	assert_int_equal(shmrig_pool_close(pool), 0);
}

static void test_peer_killed_in_send(void **state)
{
	shmrig_pool *pool = open_pool();
	static unsigned char chunk[64 * 1024];
	struct peer p;
	pid_t killer;
	int64_t t0;
	int ret = 0;

	(void)state;
	p = start_peer(child_sleep, pool, FINGERPRINT);
	assert_int_equal(p.open_ret, 0);
	wait_ready(&p);
	killer = kill_later(p.pid, 300);
	t0 = now_ms();
	/* the peer never reads: we block once its buffers are full, until it dies */
	for (int i = 0; i < 100000 && ret == 0; i++)
		ret = shmrig_channel_send(p.ch, chunk, sizeof(chunk), -1);
	assert_int_equal(ret, -EPIPE);
	assert_true(now_ms() - t0 < DEAD_PEER_BOUND_MS + 300);
	assert_int_equal(th_wait_child(killer, TIMEOUT_MS), 0);
	assert_int_equal(finish_peer(&p), 128 + SIGKILL);
	/* spills to the dead peer (ring) were handed to it: reap returns them */
	assert_true(shmrig_pool_reap(pool) >= 0);
	assert_int_equal(th_live_blocks(pool), 0);
	assert_int_equal(shmrig_pool_close(pool), 0);
	pool = open_pool();
	assert_true(shmrig_pool_sweep(pool) >= 0);
	assert_int_equal(shmrig_pool_close(pool), 0);
	assert_int_equal(th_count_segments(th_prefix()), 0);
}

/* ---- ring only: slots, spills, and peers that die around them ---- */

/* The largest message a SLOT-byte slot holds after its 8-byte header. */
#define RING_INLINE_MAX (SLOT - 8)

static const size_t ring_sizes[] = { RING_INLINE_MAX, RING_INLINE_MAX + 1, 0, 2 * SLOT,
				     RING_INLINE_MAX };
#define RING_NSIZES (sizeof(ring_sizes) / sizeof(ring_sizes[0]))

static int child_echo_ring_sizes(shmrig_channel *ch, shmrig_pool *pool)
{
	(void)pool;
	return echo_sizes(ch, ring_sizes, RING_NSIZES);
}

/* An end of a pipe pair opened twice in one process: -EINVAL, the first open untouched. */
static void test_pipe_end_opened_twice(void **state)
{
	/* static: the child inherits these, and valgrind must find them reachable */
	static shmrig_channel_pair *pair;
	static shmrig_channel *child_ch;
	struct shmrig_channel_opts opts = { .size = sizeof(opts), .backend = "pipe" };
	shmrig_channel *ch, *again;
	pid_t pid;

	(void)state;
	assert_int_equal(shmrig_channel_pair_create(&opts, &pair), 0);
	fflush(NULL);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		int ret = shmrig_channel_open(pair, 1, getppid(), NULL, FINGERPRINT, &child_ch);

		shmrig_channel_pair_free(pair);
		if (!ret)
			ret = child_wait_for_word(child_ch, NULL);
		shmrig_channel_close(child_ch);
		_exit(ret ? 1 : 0);
	}
	assert_int_equal(shmrig_channel_open(pair, 0, pid, NULL, FINGERPRINT, &ch), 0);
	assert_int_equal(shmrig_channel_open(pair, 0, pid, NULL, FINGERPRINT, &again), -EINVAL);
	assert_non_null(strstr(shmrig_last_error(), "opened already"));
	shmrig_channel_pair_free(pair);
	/* the first end still works: the peer gets its word and exits 0 */
	assert_int_equal(shmrig_channel_send(ch, "w", 1, TIMEOUT_MS), 0);
	shmrig_channel_close(ch);
	assert_int_equal(th_wait_child(pid, TIMEOUT_MS), 0);
}

/*
 * A peer that exited, its ends closed, with SIGPIPE at its default (which
 * ends the process): sends fail with -EPIPE within the bound and no signal
 * comes. A pipe(2) nobody reads would raise SIGPIPE in the writer; a socket
 * is sent to with MSG_NOSIGNAL (channel_pipe.c, channel_uring.c).
 */
static void test_peer_exited_no_sigpipe(void **state)
{
	struct sigaction dfl = { .sa_handler = SIG_DFL }, saved;
	shmrig_pool *pool = open_pool();
	static unsigned char chunk[64 * 1024];
	struct peer p;
	int64_t t0;
	int ret = 0;

	(void)state;
	assert_int_equal(sigaction(SIGPIPE, &dfl, &saved), 0);
	p = start_peer(child_idle, pool, FINGERPRINT);
	assert_int_equal(p.open_ret, 0);
	assert_int_equal(th_wait_child(p.pid, TIMEOUT_MS), 0);
	t0 = now_ms();
	for (int i = 0; i < 100000 && ret == 0; i++)
		ret = shmrig_channel_send(p.ch, chunk, sizeof(chunk), -1);
	assert_int_equal(ret, -EPIPE);
	assert_true(now_ms() - t0 < DEAD_PEER_BOUND_MS);
	assert_int_equal(sigaction(SIGPIPE, &saved, NULL), 0);
	shmrig_channel_close(p.ch);
	assert_int_equal(shmrig_pool_close(pool), 0);
}

/* slot_size - 8 bytes fit a slot, one more spills: both round-trip intact. */
static void test_ring_slot_boundary(void **state)
{
	shmrig_pool *pool = open_pool();
	static unsigned char buf[2 * SLOT];
	struct peer p;

	(void)state;
	p = start_peer(child_echo_ring_sizes, pool, FINGERPRINT);
	assert_int_equal(p.open_ret, 0);
	assert_non_null(strstr(shmrig_channel_notes(p.ch), "spills above 4088 bytes"));
	roundtrip_sizes(p.ch, ring_sizes, RING_NSIZES, buf);
	assert_int_equal(finish_peer(&p), 0);
	assert_int_equal(th_live_blocks(pool), 0);
	assert_int_equal(shmrig_pool_close(pool), 0);
	assert_int_equal(th_count_segments(th_prefix()), 0);
}

static int child_expect_inline_then_done(shmrig_channel *ch, shmrig_pool *pool)
{
	void *msg;
	size_t len;
	int ok;

	(void)pool;
	if (shmrig_channel_recv(ch, &msg, &len, TIMEOUT_MS))
		return 110;
	ok = len == RING_INLINE_MAX && th_first_mismatch(msg, len, 7) == len;
	free(msg);
	if (!ok)
		return 111;
	/* nothing of the refused batch came through */
	if (shmrig_channel_recv(ch, &msg, &len, TIMEOUT_MS))
		return 112;
	ok = len == 4 && memcmp(msg, "done", 4) == 0;
	free(msg);
	return ok ? 0 : 113;
}

/* Without a pool nothing can spill: one byte over the slot is -EMSGSIZE, and
 * a batch holding such a message is refused whole. */
static void test_ring_spill_needs_pool(void **state)
{
	static unsigned char buf[SLOT];
	const void *msgs[2] = { buf, buf };
	size_t lens[2] = { 8, RING_INLINE_MAX + 1 };
	struct peer p;

	(void)state;
	p = start_peer(child_expect_inline_then_done, NULL, FINGERPRINT);
	assert_int_equal(p.open_ret, 0);
	assert_non_null(strstr(shmrig_channel_notes(p.ch), "no pool"));
	th_fill(buf, RING_INLINE_MAX, 7);
	assert_int_equal(shmrig_channel_send(p.ch, buf, RING_INLINE_MAX, TIMEOUT_MS), 0);
	assert_int_equal(shmrig_channel_send(p.ch, buf, RING_INLINE_MAX + 1, TIMEOUT_MS),
			 -EMSGSIZE);
	assert_non_null(strstr(shmrig_last_error(), "no pool"));
	assert_int_equal(shmrig_channel_sendv(p.ch, msgs, lens, 2, TIMEOUT_MS), -EMSGSIZE);
	assert_int_equal(shmrig_channel_send(p.ch, "done", 4, TIMEOUT_MS), 0);
	assert_int_equal(finish_peer(&p), 0);
}

/* One batch (one publish): 100 bytes, a full slot, a spill; then "done". */
static const size_t into_sizes[] = { 100, RING_INLINE_MAX, 2 * SLOT };

static int child_send_batch(shmrig_channel *ch, shmrig_pool *pool)
{
	static unsigned char bufs[3][2 * SLOT];
	const void *msgs[3] = { bufs[0], bufs[1], bufs[2] };
	int64_t start = -1;
	void *msg;
	size_t len;
	int ok;

	(void)pool;
	for (int i = 0; i < 3; i++)
		th_fill(bufs[i], into_sizes[i], (unsigned)i + 1);
	/* room in the ring: no wait, so no clock read */
	if (shmrig__channel_sendv_from(ch, msgs, into_sizes, 3, &start, TIMEOUT_MS) || start != -1)
		return 120;
	if (shmrig_channel_recv(ch, &msg, &len, TIMEOUT_MS))
		return 121;
	ok = len == 4 && memcmp(msg, "done", 4) == 0;
	free(msg);
	return ok ? 0 : 122;
}

/*
 * shmrig__channel_recv_from: a message that came in a slot and fits the
 * caller's buffer lands there (no malloc), a larger one or a spill in a
 * malloc'd copy; a recv that finds its message there reads no clock.
 */
static void test_ring_recv_into_buffer(void **state)
{
	shmrig_pool *pool = open_pool();
	_Alignas(8) static unsigned char buf[256];
	struct peer p;

	(void)state;
	p = start_peer(child_send_batch, pool, FINGERPRINT);
	assert_int_equal(p.open_ret, 0);
	for (int i = 0; i < 3; i++) {
		int64_t start = -1;
		void *msg;
		size_t len;

		assert_int_equal(shmrig__channel_recv_from(p.ch, buf, sizeof(buf), &msg, &len,
							   &start, TIMEOUT_MS),
				 0);
		assert_int_equal(len, into_sizes[i]);
		assert_int_equal(th_first_mismatch(msg, len, (unsigned)i + 1), len);
		if (i == 0) {
			/* it may have waited for the batch; in the buffer either way */
			assert_ptr_equal(msg, buf);
		} else {
			/* the batch was published whole: no wait, no clock */
			assert_int_equal(start, -1);
			assert_ptr_not_equal(msg, buf);
			free(msg);
		}
	}
	assert_int_equal(shmrig_channel_send(p.ch, "done", 4, TIMEOUT_MS), 0);
	assert_int_equal(finish_peer(&p), 0);
	assert_int_equal(th_live_blocks(pool), 0);
	assert_int_equal(shmrig_pool_close(pool), 0);
}

static void test_ring_bad_options(void **state)
{
	static const struct {
		uint32_t slot_size, slots;
	} bad[] = {
		{ 100, 0 },         /* not a multiple of 64 */
		{ 64, 0 },          /* below 128 */
		{ 0, 3 },           /* not a power of two */
		{ 1u << 20, 1024 }, /* 1 GiB a direction */
	};
	shmrig_channel_pair *pair;

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct shmrig_channel_opts opts = { .size = sizeof(struct shmrig_channel_opts),
						    .backend = backend,
						    .slot_size = bad[i].slot_size,
						    .slots = bad[i].slots };

		assert_int_equal(shmrig_channel_pair_create(&opts, &pair), -EINVAL);
	}
}

struct owner_count {
	pid_t pid;
	uint64_t blocks;
};

static void count_owned(void *arg, const struct shmrig_block_info *info)
{
	struct owner_count *oc = arg;

	if (info->owner == oc->pid)
		oc->blocks++;
}

/* Spills sent to a peer that never reads belong to it: when it is killed,
 * reap returns them. A spill sent after that is handed to its dead identity
 * (the hand-over costs no liveness check) or refused with -EPIPE: either way
 * the next reap returns it and nothing leaks. */
static void test_ring_spill_to_killed_peer(void **state)
{
	static const size_t spill_sizes[] = { RING_INLINE_MAX + 1, 64 * 1024, 2 * MiB };
	static unsigned char buf[2 * MiB];
	shmrig_pool *pool = open_pool();
	struct owner_count oc;
	struct peer p;
	int64_t t0;
	void *msg;
	size_t len;
	int ret;

	(void)state;
	p = start_peer(child_sleep, pool, FINGERPRINT);
	assert_int_equal(p.open_ret, 0);
	wait_ready(&p);
	assert_int_equal(shmrig_channel_send(p.ch, buf, RING_INLINE_MAX, TIMEOUT_MS), 0);
	assert_int_equal(th_live_blocks(pool), 0); /* it fit the slot */
	for (size_t i = 0; i < 3; i++)
		assert_int_equal(shmrig_channel_send(p.ch, buf, spill_sizes[i], TIMEOUT_MS), 0);
	oc = (struct owner_count){ .pid = p.pid };
	assert_int_equal(shmrig_pool_for_each_live(pool, count_owned, &oc), 3);
	assert_int_equal(oc.blocks, 3); /* handed over before they were published */
	kill(p.pid, SIGKILL);
	assert_int_equal(th_wait_child(p.pid, TIMEOUT_MS), 128 + SIGKILL);
	assert_int_equal(shmrig_pool_reap(pool), 3);
	assert_int_equal(th_live_blocks(pool), 0);
	ret = shmrig_channel_send(p.ch, buf, 64 * 1024, TIMEOUT_MS);
	assert_true(ret == 0 || ret == -EPIPE);
	assert_int_equal(shmrig_pool_reap(pool), ret == 0 ? 1 : 0);
	assert_int_equal(th_live_blocks(pool), 0);
	t0 = now_ms();
	assert_int_equal(shmrig_channel_recv(p.ch, &msg, &len, -1), -EPIPE);
	assert_true(now_ms() - t0 < DEAD_PEER_BOUND_MS);
	shmrig_channel_close(p.ch);
	assert_int_equal(shmrig_pool_close(pool), 0);
	assert_int_equal(th_count_segments(th_prefix()), 0);
}

/* Spill sizes that a streaming child cycles through (all in pool arenas). */
static size_t stream_len(uint64_t seq)
{
	return RING_INLINE_MAX + 1 + (size_t)(seq * 7919 % (256 * 1024));
}

static int child_stream_spills(shmrig_channel *ch, shmrig_pool *pool)
{
	unsigned char *buf = malloc(RING_INLINE_MAX + 1 + 256 * 1024);

	(void)pool;
	if (!buf)
		return 120;
	for (uint64_t seq = 0;; seq++) {
		th_fill(buf, stream_len(seq), (unsigned)seq);
		if (shmrig_channel_send(ch, buf, stream_len(seq), TIMEOUT_MS)) {
			free(buf);
			return 121;
		}
	}
}

/* A peer killed while it streams spills, most likely in the middle of one
 * (allocating, copying, handing over, publishing): we get every message it
 * published, intact and in order, then -EPIPE in bounded time, and after reap
 * and sweep nothing of its is left. */
static void test_ring_killed_mid_spill(void **state)
{
	shmrig_pool *pool = open_pool();
	uint64_t seq = 0;
	struct peer p;
	pid_t killer;
	int64_t t0;
	int ret;

	(void)state;
	p = start_peer(child_stream_spills, pool, FINGERPRINT);
	assert_int_equal(p.open_ret, 0);
	t0 = now_ms();
	killer = kill_later(p.pid, 200);
	for (;; seq++) {
		void *msg;
		size_t len;

		ret = shmrig_channel_recv(p.ch, &msg, &len, -1);
		if (ret)
			break;
		assert_int_equal(len, stream_len(seq));
		assert_int_equal(th_first_mismatch(msg, len, (unsigned)seq), len);
		free(msg);
	}
	assert_int_equal(ret, -EPIPE);
	assert_true(seq > 0);
	assert_true(now_ms() - t0 < 200 + DEAD_PEER_BOUND_MS);
	assert_int_equal(th_wait_child(killer, TIMEOUT_MS), 0);
	assert_int_equal(finish_peer(&p), 128 + SIGKILL);
	/* what it held (a block it was filling, its cache) goes back */
	assert_true(shmrig_pool_reap(pool) >= 0);
	assert_int_equal(th_live_blocks(pool), 0);
	assert_int_equal(shmrig_pool_close(pool), 0);
	pool = open_pool();
	assert_true(shmrig_pool_sweep(pool) >= 0);
	assert_int_equal(shmrig_pool_close(pool), 0);
	assert_int_equal(th_count_segments(th_prefix()), 0);
}

static int drain_signal[2] = { -1, -1 }; /* parent -> child: "the spills are sent" */

static int child_close_unread(shmrig_channel *ch, shmrig_pool *pool)
{
	char byte;

	(void)ch;
	(void)pool;
	close(drain_signal[1]);
	/* returning closes our end with the spills unread: close frees them */
	return th_read_all(drain_signal[0], &byte, 1) ? 130 : 0;
}

/* A receiver that closes with spills unread frees them (no reap needed), and
 * its pool closes without a leak. */
static void test_ring_close_frees_unread_spills(void **state)
{
	static unsigned char buf[64 * 1024];
	shmrig_pool *pool = open_pool();
	struct peer p;

	(void)state;
	assert_int_equal(pipe(drain_signal), 0);
	p = start_peer(child_close_unread, pool, FINGERPRINT);
	assert_int_equal(p.open_ret, 0);
	close(drain_signal[0]);
	for (int i = 0; i < 3; i++)
		assert_int_equal(shmrig_channel_send(p.ch, buf, sizeof(buf), TIMEOUT_MS), 0);
	assert_int_equal(th_write_all(drain_signal[1], "x", 1), 0);
	close(drain_signal[1]);
	assert_int_equal(finish_peer(&p), 0);
	assert_int_equal(th_live_blocks(pool), 0);
	assert_int_equal(shmrig_pool_close(pool), 0);
}

static int child_send_then_close(shmrig_channel *ch, shmrig_pool *pool)
{
	static unsigned char buf[64 * 1024];

	(void)pool;
	for (int i = 0; i < 8; i++) {
		size_t len = i % 2 ? sizeof(buf) : 16;

		th_fill(buf, len, (unsigned)i);
		if (shmrig_channel_send(ch, buf, len, TIMEOUT_MS))
			return 140;
	}
	/* returning closes the channel, then the pool: the close waits until
	 * our spills are taken, or the pool would count them as leaks */
	return 0;
}

/* A sender that closes right after sending: every message still arrives,
 * then -EPIPE; its pool closes clean. */
static void test_ring_close_after_send(void **state)
{
	shmrig_pool *pool = open_pool();
	struct peer p;
	void *msg;
	size_t len;

	(void)state;
	p = start_peer(child_send_then_close, pool, FINGERPRINT);
	assert_int_equal(p.open_ret, 0);
	for (int i = 0; i < 8; i++) {
		assert_int_equal(shmrig_channel_recv(p.ch, &msg, &len, TIMEOUT_MS), 0);
		assert_int_equal(len, i % 2 ? 64 * 1024 : 16);
		assert_int_equal(th_first_mismatch(msg, len, (unsigned)i), len);
		free(msg);
	}
	assert_int_equal(shmrig_channel_recv(p.ch, &msg, &len, TIMEOUT_MS), -EPIPE);
	assert_int_equal(finish_peer(&p), 0);
	assert_int_equal(shmrig_pool_close(pool), 0);
}

/* ---- the table of backends ---- */

static int use_pipe(void **state)
{
	(void)state;
	backend = "pipe";
	return 0;
}

static int use_uring(void **state)
{
	(void)state;
	backend = "uring";
	return 0;
}

static int use_ring(void **state)
{
	(void)state;
	backend = "ring";
	return 0;
}

static int use_ucx(void **state)
{
	(void)state;
	backend = "ucx";
	return 0;
}

#define CASES(setup)                                                      \
	cmocka_unit_test_setup(test_hello, setup),                        \
		cmocka_unit_test_setup(test_inherited_end, setup),       \
		cmocka_unit_test_setup(test_fingerprint_mismatch, setup), \
		cmocka_unit_test_setup(test_in_order, setup),             \
		cmocka_unit_test_setup(test_sizes, setup),                \
		cmocka_unit_test_setup(test_both_directions, setup),      \
		cmocka_unit_test_setup(test_timeout, setup),              \
		cmocka_unit_test_setup(test_send_backpressure, setup),    \
		cmocka_unit_test_setup(test_bad_options, setup),          \
		cmocka_unit_test_setup(test_send_frame, setup),           \
		cmocka_unit_test_setup(test_big_meta_frame, setup),       \
		cmocka_unit_test_setup(test_peer_killed_in_recv, setup),  \
		cmocka_unit_test_setup(test_peer_killed_in_send, setup)

int main(void)
{
	const struct CMUnitTest tests[] = {
		CASES(use_pipe),
		CASES(use_uring),
		CASES(use_ring),
		cmocka_unit_test_setup(test_peer_exited_no_sigpipe, use_pipe),
		cmocka_unit_test(test_pipe_end_opened_twice),
		cmocka_unit_test_setup(test_peer_exited_no_sigpipe, use_uring),
		cmocka_unit_test_setup(test_ring_slot_boundary, use_ring),
		cmocka_unit_test_setup(test_ring_spill_needs_pool, use_ring),
		cmocka_unit_test_setup(test_ring_recv_into_buffer, use_ring),
		cmocka_unit_test_setup(test_ring_bad_options, use_ring),
		cmocka_unit_test_setup(test_ring_spill_to_killed_peer, use_ring),
		cmocka_unit_test_setup(test_ring_killed_mid_spill, use_ring),
		cmocka_unit_test_setup(test_ring_close_frees_unread_spills, use_ring),
		cmocka_unit_test_setup(test_ring_close_after_send, use_ring),
	};

	const struct CMUnitTest ucx_tests[] = { CASES(use_ucx) };
	const char *only = getenv("SHMRIG_TEST_BACKEND");

	signal(SIGPIPE, SIG_IGN);
	if (only && strcmp(only, "ucx") == 0) {
		if (th_ucx_skip_reason()) {
			printf("SKIP: %s\n", th_ucx_skip_reason());
			return TEST_SKIP_EXIT;
		}
		return cmocka_run_group_tests_name("ucx", ucx_tests, th_sweep_leftovers, NULL);
	}
	return cmocka_run_group_tests(tests, th_sweep_leftovers, NULL);
}
