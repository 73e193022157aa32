/* SPDX-License-Identifier: MIT */
/*
 * The "ucx" backend's ends that are not parent and child: listen, accept,
 * connect. The peer is a forked process that shares nothing with us (spawned
 * before we listen, every fd but its two pipes closed) and learns our address
 * through a pipe, as an unrelated process would from its command line. Cases:
 * an ephemeral port, sizes 0 B to 16 MiB both ways, 100,000 messages in
 * order, the hello mismatch, bad addresses and options, nothing listening,
 * a listener closed with a connection it never accepted, a peer SIGKILLed
 * while we wait in recv and in send; frames of every built-in codec (16 MiB
 * of blocks among them) sent flat to a peer that decodes them in its own pool
 * and answers their checksums, a frame to an end with no pool, a frame to a
 * dead peer, and no block left live on either side. Exit 77 without UCX.
 * The transports are UCX_TLS's (tests/meson.build: tcp, and posix,tcp).
 */
#include "helpers.h"

#include <errno.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <shmrig/channel.h>
#include <shmrig/frame.h>
#include <shmrig/pool.h>
#include <shmrig/registry.h>
#include <shmrig/session.h>
#include <shmrig/value.h>

#define TIMEOUT_MS 20000
#define FINGERPRINT 0x5eed5eed87654321ull
/* A dead peer must be noticed within this (a lost TCP connection is seen at
 * once; slices of 100 ms plus slack). */
#define DEAD_PEER_BOUND_MS 3000
#define ADDR_LEN 128

static const struct shmrig_channel_opts ucx_opts = { .size = sizeof(struct shmrig_channel_opts),
						     .backend = "ucx" };

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- the peer: a process of its own that connects ---- */

/*
 * The peer is this binary run again ("peer MODE FINGERPRINT"): fork, then exec,
 * so that it starts with none of our state. (A child that is only forked
 * inherits UCX's process-wide state from a parent that used UCX, and
 * th_peer_spawn's closing of every fd breaks that: UCS keeps an event fd for
 * its async thread.) It reads our address from fd 0, connects, writes "c" to
 * fd 1 and runs MODE; its exit status is MODE's.
 */
typedef int (*peer_fn)(shmrig_channel *ch);

static int peer_small(shmrig_channel *ch);

/* The library's count of our pool's segments a remote end holds registered
 * with UCX (channel_internal.h; only in a library built with UCX, and the
 * cases run only there: weak, so that this links without). */
__attribute__((weak)) uint32_t shmrig__ucx_registered(const shmrig_channel *ch, const char *name);
/* The same: send a message header of any kind claiming hdr_len bytes, then len bytes. */
__attribute__((weak)) int shmrig__ucx_send_raw(shmrig_channel *ch, uint32_t kind, uint64_t hdr_len,
					       const void *bytes, size_t len);
/* channel_ucx.c's kind of a bare frame */
#define KIND_BARE 4

struct peer_args {
	const char *mode;
	uint64_t fingerprint;
};

/* This binary (argv[0]: under valgrind /proc/self/exe is valgrind's tool, and
 * the peer runs natively, --trace-children=no) */
static const char *self_exe = "/proc/self/exe";

static int peer_exec(int in, int out, void *arg)
{
	const struct peer_args *pa = arg;
	char fingerprint[32];

	if (dup2(in, 0) != 0 || dup2(out, 1) != 1)
		return 79;
	snprintf(fingerprint, sizeof(fingerprint), "%llx", (unsigned long long)pa->fingerprint);
	execl(self_exe, "test_channel_ucx", "peer", pa->mode, fingerprint, (char *)NULL);
	return 78;
}

static int read_address(int fd, char *address, size_t len)
{
	memset(address, 0, len);
	for (size_t i = 0; i < len - 1; i++) {
		if (th_read_all(fd, &address[i], 1))
			return -1;
		if (address[i] == '\0')
			return 0;
	}
	return -1;
}

/* The peer's own pool, for the modes that take or send frames (NULL for the others). */
static shmrig_pool *peer_pool;

static int peer_main(peer_fn fn, bool with_pool, uint64_t fingerprint)
{
	char address[ADDR_LEN];
	shmrig_channel *ch;
	int ret;

	if (read_address(0, address, sizeof(address)))
		return 80;
	/* the "small" peer's pool takes 8 MiB at most */
	if (with_pool && !(peer_pool = fn == peer_small ? th_open_pool(2 * MiB, 8 * MiB) :
							  th_open_pool(8 * MiB, 256 * MiB)))
		return 87;
	ret = shmrig_channel_connect(&ucx_opts, address, peer_pool, fingerprint, TIMEOUT_MS, &ch);
	if (ret) {
		fprintf(stderr, "peer: connect %s: %d %s\n", address, ret, shmrig_last_error());
		if (peer_pool)
			(void)!shmrig_pool_close(peer_pool);
		return ret == -EPROTO ? 81 : 82;
	}
	/* say we are connected (the kill cases wait for this) */
	if (th_write_all(1, "c", 1))
		return 83;
	ret = fn(ch);
	shmrig_channel_close(ch);
	/* -SHMRIG_ELEAK if the peer still owned a block */
	if (peer_pool && shmrig_pool_close(peer_pool) && !ret)
		ret = 88;
	return ret;
}

struct session {
	struct th_peer peer;
	struct peer_args args;
	shmrig_channel_listener *listener;
	shmrig_channel *ch;
	int accept_ret;
};

/* Spawn a peer, listen on 127.0.0.1:0, tell it the address, accept it. */
static void start_with_pool(struct session *s, const char *mode, uint64_t peer_fingerprint,
			    shmrig_pool *pool)
{
	char address[ADDR_LEN];

	*s = (struct session){ .args = { .mode = mode, .fingerprint = peer_fingerprint } };
	s->peer = th_peer_spawn(peer_exec, &s->args);
	assert_int_equal(shmrig_channel_listen(&ucx_opts, "127.0.0.1:0", &s->listener), 0);
	assert_int_equal(shmrig_channel_listener_address(s->listener, address, sizeof(address)), 0);
	assert_int_equal(th_write_all(s->peer.to_child, address, strlen(address) + 1), 0);
	s->accept_ret = shmrig_channel_accept(s->listener, pool, FINGERPRINT, TIMEOUT_MS, &s->ch);
}

static void start(struct session *s, const char *mode, uint64_t peer_fingerprint)
{
	start_with_pool(s, mode, peer_fingerprint, NULL);
}

/* The peer said it is connected. */
static void wait_connected(struct session *s)
{
	char c;

	assert_int_equal(th_read_all(s->peer.from_child, &c, 1), 0);
}

static int finish(struct session *s)
{
	shmrig_channel_close(s->ch);
	s->ch = NULL;
	shmrig_channel_listener_close(s->listener);
	s->listener = NULL;
	return th_peer_finish(&s->peer, TIMEOUT_MS);
}

/* ---- an ephemeral port, and the hello ---- */

static int peer_idle(shmrig_channel *ch)
{
	(void)ch;
	return 0;
}

static void test_ephemeral_port(void **state)
{
	char address[ADDR_LEN];
	shmrig_channel_listener *l, *other;
	char small[4];

	(void)state;
	assert_int_equal(shmrig_channel_listen(&ucx_opts, "127.0.0.1:0", &l), 0);
	assert_int_equal(shmrig_channel_listener_address(l, address, sizeof(address)), 0);
	assert_int_equal(strncmp(address, "127.0.0.1:", 10), 0);
	assert_true(atoi(address + 10) > 0);
	assert_int_equal(shmrig_channel_listener_address(l, small, sizeof(small)), -ERANGE);
	assert_int_equal(shmrig_channel_listener_address(NULL, address, sizeof(address)), -EINVAL);
	/* that port is taken now */
	assert_int_equal(shmrig_channel_listen(&ucx_opts, address, &other), -EADDRINUSE);
	/* nobody connects: accept times out, in time */
	assert_int_equal(shmrig_channel_accept(l, NULL, FINGERPRINT, 50, &(shmrig_channel *){ 0 }),
			 -ETIMEDOUT);
	shmrig_channel_listener_close(l);
	shmrig_channel_listener_close(NULL);
}

static void test_hello(void **state)
{
	shmrig_pool *pool = th_open_pool(8 * MiB, 64 * MiB);
	static const uint64_t frame[8];
	struct session s;

	(void)state;
	assert_non_null(pool);
	start_with_pool(&s, "idle", FINGERPRINT, pool);
	assert_int_equal(s.accept_ret, 0);
	assert_string_equal(shmrig_channel_backend(s.ch), "ucx");
	assert_non_null(strstr(shmrig_channel_notes(s.ch), "accepted"));
	/* a frame goes flat to a peer that may be on another host: this one is
	 * not a frame, and nothing is sent */
	assert_int_equal(shmrig_channel_send_frame(s.ch, frame, sizeof(frame), TIMEOUT_MS),
			 -EBADMSG);
	assert_non_null(strstr(shmrig_last_error(), "magic"));
	/* the listener may go first: the end it accepted keeps what they share */
	shmrig_channel_listener_close(s.listener);
	s.listener = NULL;
	assert_int_equal(shmrig_channel_send(s.ch, "after", 5, TIMEOUT_MS), 0);
	assert_int_equal(finish(&s), 0);
	assert_int_equal(shmrig_pool_close(pool), 0);
	assert_int_equal(th_count_segments(th_prefix()), 0);
}

static void test_fingerprint_mismatch(void **state)
{
	char expect[64];
	struct session s;

	(void)state;
	start(&s, "idle", FINGERPRINT ^ 1);
	assert_int_equal(s.accept_ret, -EPROTO);
	/* both values in the message */
	snprintf(expect, sizeof(expect), "%016llx", (unsigned long long)FINGERPRINT);
	assert_non_null(strstr(shmrig_last_error(), expect));
	snprintf(expect, sizeof(expect), "%016llx", (unsigned long long)(FINGERPRINT ^ 1));
	assert_non_null(strstr(shmrig_last_error(), expect));
	assert_int_equal(finish(&s), 81); /* the peer saw -EPROTO too */
}

/* ---- bad arguments, nothing listening, a listener that never accepts ---- */

static void test_bad_address(void **state)
{
	static const char *const bad[] = {
		"127.0.0.1",       /* no port */
		"127.0.0.1:",      /* empty port */
		":80",             /* no host */
		"127.0.0.1:65536", /* port out of range */
		"127.0.0.1:http",  /* ports are numbers */
		"::1:80",          /* IPv6 without brackets */
		"[::1]80",         /* no colon after the bracket */
		"no-such-host.invalid:80",
		"",
	};
	struct shmrig_channel_opts pipe_opts = { .size = sizeof(pipe_opts), .backend = "pipe" };
	struct shmrig_channel_opts flags_opts = { .size = sizeof(flags_opts), .flags = 1 };
	shmrig_channel_listener *l;
	shmrig_channel *ch;

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		assert_int_equal(shmrig_channel_listen(&ucx_opts, bad[i], &l), -EINVAL);
		assert_non_null(strstr(shmrig_last_error(), "address") ?
					strstr(shmrig_last_error(), "address") :
					strstr(shmrig_last_error(), "resolve"));
		assert_int_equal(shmrig_channel_connect(&ucx_opts, bad[i], NULL, FINGERPRINT, 1000,
							&ch),
				 -EINVAL);
	}
	assert_int_equal(shmrig_channel_listen(&ucx_opts, NULL, &l), -EINVAL);
	assert_int_equal(shmrig_channel_listen(&ucx_opts, "127.0.0.1:0", NULL), -EINVAL);
	assert_int_equal(shmrig_channel_listen(&flags_opts, "127.0.0.1:0", &l), -EINVAL);
	/* other backends join parent and child only */
	assert_int_equal(shmrig_channel_listen(&pipe_opts, "127.0.0.1:0", &l), -EOPNOTSUPP);
	assert_non_null(strstr(shmrig_last_error(), "ucx"));
	assert_int_equal(shmrig_channel_connect(&pipe_opts, "127.0.0.1:1", NULL, 0, 1000, &ch),
			 -EOPNOTSUPP);
	assert_int_equal(shmrig_channel_accept(NULL, NULL, 0, 0, &ch), -EINVAL);
}

static void test_nothing_listening(void **state)
{
	char address[ADDR_LEN];
	shmrig_channel_listener *l;
	shmrig_channel *ch;
	int64_t t0;
	int ret;

	(void)state;
	/* a port that was free a moment ago: listen, note it, close */
	assert_int_equal(shmrig_channel_listen(NULL, "127.0.0.1:0", &l), 0);
	assert_int_equal(shmrig_channel_listener_address(l, address, sizeof(address)), 0);
	shmrig_channel_listener_close(l);
	t0 = now_ms();
	ret = shmrig_channel_connect(NULL, address, NULL, FINGERPRINT, 2000, &ch);
	assert_true(ret == -ECONNREFUSED || ret == -ETIMEDOUT);
	assert_true(now_ms() - t0 < 2000 + 1000);
}

/* Run as "peer refused": connect must fail, in bounded time. */
static int peer_expect_refused(void)
{
	char address[ADDR_LEN];
	shmrig_channel *ch;
	int64_t t0;
	int ret;

	if (read_address(0, address, sizeof(address)))
		return 80;
	if (th_write_all(1, "c", 1))
		return 83;
	t0 = now_ms();
	ret = shmrig_channel_connect(&ucx_opts, address, NULL, FINGERPRINT, 3000, &ch);
	if (ret == 0) {
		shmrig_channel_close(ch);
		return 84;
	}
	if (ret != -ECONNREFUSED && ret != -ETIMEDOUT)
		return 85;
	return now_ms() - t0 < 3000 + 1000 ? 0 : 86;
}

/* A listener closed with a connection it never accepted: the client gets an
 * error in bounded time, and nothing leaks here. */
static void test_listener_closed_unaccepted(void **state)
{
	char address[ADDR_LEN];
	shmrig_channel_listener *l;
	struct peer_args args = { .mode = "refused" };
	struct th_peer peer;
	char c;

	(void)state;
	peer = th_peer_spawn(peer_exec, &args);
	assert_int_equal(shmrig_channel_listen(&ucx_opts, "127.0.0.1:0", &l), 0);
	assert_int_equal(shmrig_channel_listener_address(l, address, sizeof(address)), 0);
	assert_int_equal(th_write_all(peer.to_child, address, strlen(address) + 1), 0);
	/* The peer is about to connect: whether its request has reached the
	 * listener when it closes (rejected) or not (the socket goes), it fails. */
	assert_int_equal(th_read_all(peer.from_child, &c, 1), 0);
	shmrig_channel_listener_close(l);
	assert_int_equal(th_peer_finish(&peer, TIMEOUT_MS), 0);
}

/* ---- sizes and order ---- */

static const size_t sizes[] = { 0, 1, 64 * 1024, 16 * MiB };
#define NSIZES (sizeof(sizes) / sizeof(sizes[0]))

static int peer_echo(shmrig_channel *ch)
{
	for (size_t i = 0; i < NSIZES; i++) {
		void *msg;
		size_t len;
		int ret;

		if (shmrig_channel_recv(ch, &msg, &len, TIMEOUT_MS))
			return 20;
		if (len != sizes[i] || th_first_mismatch(msg, len, (unsigned)i) != len) {
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

static void test_sizes(void **state)
{
	unsigned char *buf = malloc(16 * MiB);
	struct session s;

	(void)state;
	assert_non_null(buf);
	start(&s, "echo", FINGERPRINT);
	assert_int_equal(s.accept_ret, 0);
	for (size_t i = 0; i < NSIZES; i++) {
		void *msg;
		size_t len;

		th_fill(buf, sizes[i], (unsigned)i);
		assert_int_equal(shmrig_channel_send(s.ch, buf, sizes[i], TIMEOUT_MS), 0);
		assert_int_equal(shmrig_channel_recv(s.ch, &msg, &len, TIMEOUT_MS), 0);
		assert_int_equal(len, sizes[i]);
		assert_int_equal((uintptr_t)msg % 8, 0);
		assert_int_equal(th_first_mismatch(msg, len, (unsigned)i), len);
		free(msg);
	}
	/* the peer closed after its last echo: -EPIPE, not a hang */
	{
		void *msg;
		size_t len;

		assert_int_equal(shmrig_channel_recv(s.ch, &msg, &len, TIMEOUT_MS), -EPIPE);
	}
	free(buf);
	assert_int_equal(finish(&s), 0);
}

enum {
	COUNT = 100000,
	BATCH = 64
};

static int peer_check_order(shmrig_channel *ch)
{
	uint64_t expect = 0;

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
	static unsigned char bufs[BATCH][128];
	const void *msgs[BATCH];
	size_t lens[BATCH];
	uint64_t count = 0;
	struct session s;
	void *msg;
	size_t len;

	(void)state;
	start(&s, "order", FINGERPRINT);
	assert_int_equal(s.accept_ret, 0);
	for (uint64_t seq = 0; seq < COUNT;) {
		uint32_t n = 0;

		for (; n < BATCH && seq < COUNT; n++, seq++) {
			memcpy(bufs[n], &seq, sizeof(seq));
			msgs[n] = bufs[n];
			lens[n] = 8 + seq % 100;
		}
		assert_int_equal(shmrig_channel_sendv(s.ch, msgs, lens, n, TIMEOUT_MS), 0);
	}
	assert_int_equal(shmrig_channel_recv(s.ch, &msg, &len, TIMEOUT_MS), 0);
	memcpy(&count, msg, sizeof(count));
	free(msg);
	assert_int_equal(count, COUNT);
	assert_int_equal(finish(&s), 0);
}

/* ---- a peer killed while we wait ---- */

static int peer_sleep(shmrig_channel *ch)
{
	/* neither read nor write until killed (a caught signal would end it: 61) */
	(void)ch;
	pause();
	return 61;
}

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

static void test_peer_killed_in_recv(void **state)
{
	struct session s;
	pid_t killer;
	int64_t t0;
	void *msg;
	size_t len;

	(void)state;
	start(&s, "sleep", FINGERPRINT);
	assert_int_equal(s.accept_ret, 0);
	wait_connected(&s);
	killer = kill_later(s.peer.pid, 200);
	t0 = now_ms();
	assert_int_equal(shmrig_channel_recv(s.ch, &msg, &len, -1), -EPIPE);
	assert_true(now_ms() - t0 < DEAD_PEER_BOUND_MS);
	/* and stays so */
	assert_int_equal(shmrig_channel_recv(s.ch, &msg, &len, -1), -EPIPE);
	assert_int_equal(shmrig_channel_send(s.ch, "x", 1, -1), -EPIPE);
	assert_int_equal(th_wait_child(killer, TIMEOUT_MS), 0);
	assert_int_equal(finish(&s), 128 + SIGKILL);
}

static void test_peer_killed_in_send(void **state)
{
	static unsigned char chunk[64 * 1024];
	struct session s;
	pid_t killer;
	int64_t t0;
	int ret = 0;

	(void)state;
	start(&s, "sleep", FINGERPRINT);
	assert_int_equal(s.accept_ret, 0);
	wait_connected(&s);
	killer = kill_later(s.peer.pid, 300);
	t0 = now_ms();
	/* the peer never reads: we block once its buffers are full, until it dies */
	for (int i = 0; i < 100000 && ret == 0; i++)
		ret = shmrig_channel_send(s.ch, chunk, sizeof(chunk), -1);
	assert_int_equal(ret, -EPIPE);
	assert_true(now_ms() - t0 < DEAD_PEER_BOUND_MS + 300);
	assert_int_equal(th_wait_child(killer, TIMEOUT_MS), 0);
	assert_int_equal(finish(&s), 128 + SIGKILL);
}

/* ---- frames, flat ---- */

/* What the peer answers for each frame: the checksum of the value it decoded. */
struct frame_answer {
	uint64_t checksum;
	uint32_t kind;
	uint32_t reserved;
};

static uint64_t live_blocks(shmrig_pool *pool)
{
	struct shmrig_pool_stats stats = { .size = sizeof(stats) };

	return shmrig_pool_stats(pool, &stats) ? UINT64_MAX : stats.live_blocks;
}

/* Run as "peer frames": decode each frame in our pool and answer its checksum,
 * until an empty message; then nothing of them may be left live. */
static int peer_frames(shmrig_channel *ch)
{
	shmrig_registry *reg;
	int ret = 0;

	if (shmrig_registry_create(&reg) || shmrig_registry_add_builtins(reg))
		return 30;
	while (!ret) {
		struct frame_answer answer = { 0 };
		struct shmrig_value value;
		void *msg;
		size_t len;

		if (shmrig_channel_recv(ch, &msg, &len, TIMEOUT_MS)) {
			fprintf(stderr, "peer: recv: %s\n", shmrig_last_error());
			ret = 31;
			break;
		}
		if (len == 0) {
			free(msg);
			break;
		}
		if (shmrig_registry_decode(reg, peer_pool, msg, len, &value)) {
			fprintf(stderr, "peer: decode: %s\n", shmrig_last_error());
			ret = 32;
		} else {
			answer.kind = value.kind;
			if (shmrig_session_checksum(&value, &answer.checksum))
				ret = 33;
			if (shmrig_value_release(&value))
				ret = 34;
		}
		free(msg);
		if (!ret && shmrig_channel_send(ch, &answer, sizeof(answer), TIMEOUT_MS))
			ret = 35;
	}
	shmrig_registry_free(reg);
	return !ret && live_blocks(peer_pool) != 0 ? 36 : ret;
}

/* Run as "peer send_frame": send a frame to an end that has no pool, then a
 * message; our blocks go once the frame is flattened. */
static int peer_send_frame(shmrig_channel *ch)
{
	static const char payload[] = "a frame to an end with no pool";
	struct shmrig_value value = { .kind = SHMRIG_KIND_BYTES };
	shmrig_registry *reg;
	void *frame = NULL;
	size_t len;
	int ret = 0;

	if (shmrig_registry_create(&reg) || shmrig_registry_add_builtins(reg))
		return 40;
	value.bytes.data = payload;
	value.bytes.len = sizeof(payload);
	if (shmrig_registry_encode(reg, peer_pool, &value, &frame, &len))
		ret = 41;
	else if (shmrig_channel_send_frame(ch, frame, len, TIMEOUT_MS))
		ret = 42;
	else if (live_blocks(peer_pool) != 0)
		ret = 43;
	else if (shmrig_channel_send(ch, "after", 5, TIMEOUT_MS))
		ret = 44;
	free(frame);
	shmrig_registry_free(reg);
	return ret;
}

static struct shmrig_array array_of(enum shmrig_dtype dtype, char order, uint32_t ndim,
				    const uint64_t *shape, const void *data)
{
	struct shmrig_array a = { .dtype = dtype, .ndim = ndim, .order = order };

	for (uint32_t d = 0; d < ndim; d++)
		a.shape[d] = shape[d];
	a.data = (void *)data;
	return a;
}

/* Encode, send flat, and compare the peer's checksum with ours; our blocks
 * are gone as soon as send_frame returns. */
static void send_and_check(struct session *s, shmrig_registry *reg, shmrig_pool *pool,
			   const struct shmrig_value *value)
{
	struct frame_answer answer;
	uint64_t expect;
	void *frame, *msg;
	size_t len;

	assert_int_equal(shmrig_session_checksum(value, &expect), 0);
	assert_int_equal(shmrig_registry_encode(reg, pool, value, &frame, &len), 0);
	assert_int_equal(shmrig_channel_send_frame(s->ch, frame, len, TIMEOUT_MS), 0);
	assert_int_equal(th_live_blocks(pool), 0);
	free(frame);
	assert_int_equal(shmrig_channel_recv(s->ch, &msg, &len, TIMEOUT_MS), 0);
	assert_int_equal(len, sizeof(answer));
	memcpy(&answer, msg, sizeof(answer));
	free(msg);
	assert_int_equal(answer.kind, value->kind);
	assert_int_equal(answer.checksum, expect);
}

static void test_frames(void **state)
{
	static const double matrix[3][4] = { { 0.5, 1.5, 2.5, 3.5 },
					     { 4.5, 5.5, 6.5, 7.5 },
					     { 8.5, 9.5, 10.5, 11.5 } };
	static const int32_t col_a[5] = { 1, -2, 3, -4, 5 };
	static const double col_b[5] = { 0.25, 0.5, 0.75, 1.0, 1.25 };
	static const int16_t tiny[3] = { -7, 0, 7 };
	static const uint64_t matrix_shape[2] = { 3, 4 }, rows[1] = { 5 }, tiny_shape[1] = { 3 };
	static const size_t byte_sizes[] = { 0, 64, MiB, 16 * MiB };
	shmrig_pool *pool = th_open_pool(8 * MiB, 256 * MiB);
	unsigned char *buf = malloc(16 * MiB);
	struct shmrig_named_array columns[2], vars[2];
	struct shmrig_group groups[2];
	struct shmrig_value v;
	shmrig_registry *reg;
	struct session s;

	(void)state;
	assert_non_null(pool);
	assert_non_null(buf);
	assert_int_equal(shmrig_registry_create(&reg), 0);
	assert_int_equal(shmrig_registry_add_builtins(reg), 0);
	start_with_pool(&s, "frames", FINGERPRINT, pool);
	assert_int_equal(s.accept_ret, 0);
	/* bytes, 16 MiB the largest: a block of its own, sent in one message */
	for (size_t i = 0; i < sizeof(byte_sizes) / sizeof(byte_sizes[0]); i++) {
		th_fill(buf, byte_sizes[i], (unsigned)i);
		v = (struct shmrig_value){ .kind = SHMRIG_KIND_BYTES };
		v.bytes.data = buf;
		v.bytes.len = byte_sizes[i];
		send_and_check(&s, reg, pool, &v);
	}
	v = (struct shmrig_value){ .kind = SHMRIG_KIND_NDARRAY };
	v.array = array_of(SHMRIG_DTYPE_FLOAT64, 'C', 2, matrix_shape, matrix);
	send_and_check(&s, reg, pool, &v);
	columns[0] = (struct shmrig_named_array){ "a", array_of(SHMRIG_DTYPE_INT32, 'C', 1, rows,
								col_a) };
	columns[1] = (struct shmrig_named_array){ "b", array_of(SHMRIG_DTYPE_FLOAT64, 'C', 1, rows,
								col_b) };
	v = (struct shmrig_value){ .kind = SHMRIG_KIND_TABLE };
	v.table = (struct shmrig_table){ .nrows = 5, .ncolumns = 2, .columns = columns };
	send_and_check(&s, reg, pool, &v);
	vars[0] = (struct shmrig_named_array){ "x", array_of(SHMRIG_DTYPE_FLOAT64, 'C', 2,
							     matrix_shape, matrix) };
	vars[1] = (struct shmrig_named_array){ "t", array_of(SHMRIG_DTYPE_INT16, 'C', 1, tiny_shape,
							     tiny) };
	groups[0] = (struct shmrig_group){ .name = "g0", .nvariables = 1, .variables = vars };
	groups[1] = (struct shmrig_group){ .name = "g1", .nvariables = 1, .variables = vars + 1 };
	v = (struct shmrig_value){ .kind = SHMRIG_KIND_DATASET };
	v.dataset = (struct shmrig_dataset){ .ngroups = 2, .groups = groups };
	send_and_check(&s, reg, pool, &v);
	/* the end; the peer exits 0 only with nothing of ours live in its pool */
	assert_int_equal(shmrig_channel_send(s.ch, "", 0, TIMEOUT_MS), 0);
	assert_int_equal(finish(&s), 0);
	assert_int_equal(th_live_blocks(pool), 0);
	shmrig_registry_free(reg);
	free(buf);
	assert_int_equal(shmrig_pool_close(pool), 0);
	assert_int_equal(th_count_segments(th_prefix()), 0);
}

/* An end with no pool that receives a frame: an error saying why, the frame
 * dropped, the stream goes on. */
static void test_frame_without_pool(void **state)
{
	struct session s;
	void *msg;
	size_t len;

	(void)state;
	start(&s, "send_frame", FINGERPRINT);
	assert_int_equal(s.accept_ret, 0);
	assert_int_equal(shmrig_channel_recv(s.ch, &msg, &len, TIMEOUT_MS), -EINVAL);
	assert_non_null(strstr(shmrig_last_error(), "no pool"));
	assert_int_equal(shmrig_channel_recv(s.ch, &msg, &len, TIMEOUT_MS), 0);
	assert_int_equal(len, 5);
	assert_memory_equal(msg, "after", 5);
	free(msg);
	assert_int_equal(finish(&s), 0);
	assert_int_equal(th_count_segments(th_prefix()), 0);
}

/* A frame to a peer that is gone: -EPIPE, and its blocks are freed (channel.h). */
static void test_frame_to_dead_peer(void **state)
{
	shmrig_pool *pool = th_open_pool(8 * MiB, 64 * MiB);
	struct shmrig_value v = { .kind = SHMRIG_KIND_BYTES };
	shmrig_registry *reg;
	struct session s;
	void *frame, *msg;
	size_t len;

	(void)state;
	assert_non_null(pool);
	assert_int_equal(shmrig_registry_create(&reg), 0);
	assert_int_equal(shmrig_registry_add_builtins(reg), 0);
	start_with_pool(&s, "idle", FINGERPRINT, pool);
	assert_int_equal(s.accept_ret, 0);
	/* the idle peer closes at once: its BYE makes the end closed */
	assert_int_equal(shmrig_channel_recv(s.ch, &msg, &len, TIMEOUT_MS), -EPIPE);
	v.bytes.data = "to nobody";
	v.bytes.len = 9;
	assert_int_equal(shmrig_registry_encode(reg, pool, &v, &frame, &len), 0);
	assert_int_equal(th_live_blocks(pool), 1);
	assert_int_equal(shmrig_channel_send_frame(s.ch, frame, len, TIMEOUT_MS), -EPIPE);
	assert_int_equal(th_live_blocks(pool), 0);
	free(frame);
	assert_int_equal(finish(&s), 0);
	shmrig_registry_free(reg);
	assert_int_equal(shmrig_pool_close(pool), 0);
	assert_int_equal(th_count_segments(th_prefix()), 0);
}

/* ---- frames, bare: each buffer straight from its block into the peer's ---- */

/* test_frames with every frame sent one way ("flat" or "bare": read when the end is accepted). */
static void frames_forced(const char *mode)
{
	assert_int_equal(setenv("SHMRIG_UCX_FRAMES", mode, 1), 0);
	test_frames(NULL);
	assert_int_equal(unsetenv("SHMRIG_UCX_FRAMES"), 0);
}

static void test_frames_flat(void **state)
{
	(void)state;
	frames_forced("flat");
}

static void test_frames_bare(void **state)
{
	(void)state;
	frames_forced("bare");
}

/* Receive one frame and answer how it went: {error, live blocks after} (a
 * frame that arrives is decoded and released first). */
static int answer_one(shmrig_channel *ch, shmrig_registry *reg, bool *end)
{
	int64_t answer[2];
	void *msg;
	size_t len;
	int ret = shmrig_channel_recv(ch, &msg, &len, TIMEOUT_MS);

	*end = false;
	if (ret == 0 && len == 0) {
		free(msg);
		*end = true;
		return 0;
	}
	if (ret == 0) {
		struct shmrig_value value;

		if (shmrig_registry_decode(reg, peer_pool, msg, len, &value) ||
		    shmrig_value_release(&value))
			ret = 1;
		free(msg);
	} else if (!strstr(shmrig_last_error(), "dropped")) {
		fprintf(stderr, "peer: recv: %s\n", shmrig_last_error());
		return 51;
	}
	answer[0] = ret;
	answer[1] = (int64_t)live_blocks(peer_pool);
	return shmrig_channel_send(ch, answer, sizeof(answer), TIMEOUT_MS) ? 52 : 0;
}

/* Run as "peer small": a pool of 8 MiB at most; answer each frame (answer_one). */
static int peer_small(shmrig_channel *ch)
{
	shmrig_registry *reg;
	bool end = false;
	int ret = 0;

	if (shmrig_registry_create(&reg) || shmrig_registry_add_builtins(reg))
		return 50;
	while (!ret && !end)
		ret = answer_one(ch, reg, &end);
	shmrig_registry_free(reg);
	return ret;
}

/* Send v as a frame to the "small" peer: its answer {error, live blocks}. */
static void send_to_small(struct session *s, shmrig_registry *reg, shmrig_pool *pool,
			  const struct shmrig_value *v, int64_t answer[2])
{
	void *frame, *msg;
	size_t len;

	assert_int_equal(shmrig_registry_encode(reg, pool, v, &frame, &len), 0);
	/* the sender cannot know: the frame went, its blocks are freed */
	assert_int_equal(shmrig_channel_send_frame(s->ch, frame, len, TIMEOUT_MS), 0);
	assert_int_equal(th_live_blocks(pool), 0);
	free(frame);
	assert_int_equal(shmrig_channel_recv(s->ch, &msg, &len, TIMEOUT_MS), 0);
	assert_int_equal(len, 2 * sizeof(int64_t));
	memcpy(answer, msg, 2 * sizeof(int64_t));
	free(msg);
}

/*
 * Frames bigger than the peer's pool (max_bytes 8 MiB, an arena of 2 MiB made
 * by a first frame that fits): one block over it (16 MiB), and two blocks
 * that fit one by one but not together (2 x 3.5 MiB: the first is allocated,
 * the second fails). The peer's recv says -ENOMEM, the frame is dropped with
 * nothing left live in its pool, and the next frame arrives whole; on our
 * side send_frame returns 0 and frees the blocks (channel.h). Each way, flat
 * and bare.
 */
static void test_frame_over_peer_limit(void **state)
{
	static const char *const modes[] = { "flat", "bare" };
	shmrig_pool *pool = th_open_pool(8 * MiB, 256 * MiB);
	unsigned char *buf = malloc(16 * MiB);
	uint64_t col_rows[1] = { 7 * MiB / 16 };
	struct shmrig_named_array columns[2];
	struct shmrig_value big = { .kind = SHMRIG_KIND_BYTES };
	struct shmrig_value two = { .kind = SHMRIG_KIND_TABLE };
	struct shmrig_value small = { .kind = SHMRIG_KIND_BYTES };
	shmrig_registry *reg;
	int64_t answer[2];

	(void)state;
	assert_non_null(pool);
	assert_non_null(buf);
	th_fill(buf, 16 * MiB, 7);
	assert_int_equal(shmrig_registry_create(&reg), 0);
	assert_int_equal(shmrig_registry_add_builtins(reg), 0);
	big.bytes.data = buf;
	big.bytes.len = 16 * MiB;
	columns[0] = (struct shmrig_named_array){ "a", array_of(SHMRIG_DTYPE_INT64, 'C', 1,
								col_rows, buf) };
	columns[1] = (struct shmrig_named_array){ "b", array_of(SHMRIG_DTYPE_INT64, 'C', 1,
								col_rows, buf + 4 * MiB) };
	two.table =
		(struct shmrig_table){ .nrows = col_rows[0], .ncolumns = 2, .columns = columns };
	small.bytes.data = buf;
	small.bytes.len = 100 * 1024;
	for (size_t m = 0; m < sizeof(modes) / sizeof(modes[0]); m++) {
		struct session s;

		assert_int_equal(setenv("SHMRIG_UCX_FRAMES", modes[m], 1), 0);
		start_with_pool(&s, "small", FINGERPRINT, pool);
		assert_int_equal(unsetenv("SHMRIG_UCX_FRAMES"), 0);
		assert_int_equal(s.accept_ret, 0);
		send_to_small(&s, reg, pool, &small, answer);
		assert_int_equal(answer[0], 0);
		assert_int_equal(answer[1], 0);
		send_to_small(&s, reg, pool, &big, answer);
		assert_int_equal(answer[0], -ENOMEM);
		assert_int_equal(answer[1], 0);
		send_to_small(&s, reg, pool, &two, answer);
		assert_int_equal(answer[0], -ENOMEM);
		assert_int_equal(answer[1], 0);
		/* the stream goes on: the next frame arrives whole */
		send_to_small(&s, reg, pool, &small, answer);
		assert_int_equal(answer[0], 0);
		assert_int_equal(answer[1], 0);
		assert_int_equal(shmrig_channel_send(s.ch, "", 0, TIMEOUT_MS), 0);
		assert_int_equal(finish(&s), 0);
	}
	assert_int_equal(th_live_blocks(pool), 0);
	shmrig_registry_free(reg);
	free(buf);
	assert_int_equal(shmrig_pool_close(pool), 0);
	assert_int_equal(th_count_segments(th_prefix()), 0);
}

/*
 * A 64 MiB frame sent bare to a peer that never reads and is killed while
 * the send is under way: -EPIPE within the bound, and by then no block of the
 * frame is left live here (UCX ended the sends reading them).
 */
static void test_frame_peer_killed_bare(void **state)
{
	shmrig_pool *pool = th_open_pool(8 * MiB, 256 * MiB);
	struct shmrig_value v = { .kind = SHMRIG_KIND_BYTES };
	unsigned char *buf = malloc(64 * MiB);
	shmrig_registry *reg;
	struct session s;
	void *frame;
	size_t len;
	pid_t killer;
	int64_t t0;

	(void)state;
	assert_non_null(pool);
	assert_non_null(buf);
	th_fill(buf, 64 * MiB, 3);
	assert_int_equal(shmrig_registry_create(&reg), 0);
	assert_int_equal(shmrig_registry_add_builtins(reg), 0);
	v.bytes.data = buf;
	v.bytes.len = 64 * MiB;
	assert_int_equal(shmrig_registry_encode(reg, pool, &v, &frame, &len), 0);
	assert_int_equal(th_live_blocks(pool), 1);
	start_with_pool(&s, "sleep", FINGERPRINT, pool);
	assert_int_equal(s.accept_ret, 0);
	wait_connected(&s);
	killer = kill_later(s.peer.pid, 300);
	t0 = now_ms();
	/* the peer reads nothing: the send stalls once the socket buffers are
	 * full (a few MiB of the 64), until the peer dies */
	assert_int_equal(shmrig_channel_send_frame(s.ch, frame, len, -1), -EPIPE);
	assert_true(now_ms() - t0 < DEAD_PEER_BOUND_MS + 300);
	assert_int_equal(th_live_blocks(pool), 0);
	free(frame);
	assert_int_equal(th_wait_child(killer, TIMEOUT_MS), 0);
	assert_int_equal(finish(&s), 128 + SIGKILL);
	shmrig_registry_free(reg);
	free(buf);
	assert_int_equal(shmrig_pool_close(pool), 0);
	assert_int_equal(th_count_segments(th_prefix()), 0);
}

/* The name of the segment holding a frame's buffer i. */
static void frame_segment(const void *frame, size_t len, uint32_t i, char name[SHMRIG_NAME_MAX])
{
	struct shmrig_frame f;

	assert_int_equal(shmrig_frame_parse(frame, len, &f), 0);
	assert_true(i < f.nbuffers);
	memcpy(name, f.buffers[i].name, SHMRIG_NAME_MAX);
}

/* Encode v, send it (bare: the end was made so), check the peer's
 * checksum; *segment is where its one buffer was. */
static void send_bare_checked(struct session *s, shmrig_registry *reg, shmrig_pool *pool,
			      const struct shmrig_value *v, char segment[SHMRIG_NAME_MAX])
{
	struct frame_answer answer;
	uint64_t expect;
	void *frame, *msg;
	size_t len;

	assert_int_equal(shmrig_session_checksum(v, &expect), 0);
	assert_int_equal(shmrig_registry_encode(reg, pool, v, &frame, &len), 0);
	frame_segment(frame, len, 0, segment);
	assert_int_equal(shmrig_channel_send_frame(s->ch, frame, len, TIMEOUT_MS), 0);
	free(frame);
	assert_int_equal(shmrig_channel_recv(s->ch, &msg, &len, TIMEOUT_MS), 0);
	assert_int_equal(len, sizeof(answer));
	memcpy(&answer, msg, sizeof(answer));
	free(msg);
	assert_int_equal(answer.checksum, expect);
}

static uint32_t segments_of(shmrig_pool *pool)
{
	struct shmrig_pool_stats stats = { .size = sizeof(stats) };

	assert_int_equal(shmrig_pool_stats(pool, &stats), 0);
	return stats.segments;
}

/*
 * Registration of our pool's segments with UCX, once each: a frame from the
 * first arena registers it; another from the same arena registers nothing
 * new; the pool grows a new arena between sends (blocks held until it must)
 * and the next frame from it registers that one. Large blocks have segments
 * of their own, which the pool unmaps when it needs their room for a new
 * one: their registrations go before the next send (one is never kept for a
 * segment the pool no longer maps).
 */
static void test_frame_registrations(void **state)
{
	shmrig_pool *pool = th_open_pool(2 * MiB, 32 * MiB);
	unsigned char *buf = malloc(25 * MiB);
	struct shmrig_value v = { .kind = SHMRIG_KIND_BYTES };
	char first[SHMRIG_NAME_MAX], again[SHMRIG_NAME_MAX], grown[SHMRIG_NAME_MAX];
	char large[3][SHMRIG_NAME_MAX];
	static const size_t large_sizes[3] = { 6 * MiB, 13 * MiB, 25 * MiB };
	struct shmrig_ref held[64];
	uint32_t nheld = 0, before;
	shmrig_registry *reg;
	struct session s;

	(void)state;
	assert_non_null(pool);
	assert_non_null(buf);
	th_fill(buf, 25 * MiB, 5);
	assert_int_equal(shmrig_registry_create(&reg), 0);
	assert_int_equal(shmrig_registry_add_builtins(reg), 0);
	assert_int_equal(setenv("SHMRIG_UCX_FRAMES", "bare", 1), 0);
	start_with_pool(&s, "frames", FINGERPRINT, pool);
	assert_int_equal(unsetenv("SHMRIG_UCX_FRAMES"), 0);
	assert_int_equal(s.accept_ret, 0);
	if (strstr(shmrig_channel_notes(s.ch), "no segment registration")) {
		/* UCX's new protocols take no memh with a send: nothing is registered */
		printf("%s: case skipped\n", shmrig_channel_notes(s.ch));
		assert_int_equal(shmrig_channel_send(s.ch, "", 0, TIMEOUT_MS), 0);
		assert_int_equal(finish(&s), 0);
		shmrig_registry_free(reg);
		free(buf);
		assert_int_equal(shmrig_pool_close(pool), 0);
		skip();
	}
	assert_int_equal(shmrig__ucx_registered(s.ch, NULL), 0);
	v.bytes.data = buf;
	v.bytes.len = 256 * 1024;
	send_bare_checked(&s, reg, pool, &v, first);
	assert_int_equal(shmrig__ucx_registered(s.ch, NULL), 1);
	assert_int_equal(shmrig__ucx_registered(s.ch, first), 1);
	send_bare_checked(&s, reg, pool, &v, again);
	assert_string_equal(again, first);
	assert_int_equal(shmrig__ucx_registered(s.ch, NULL), 1);
	/* hold blocks of that size until the pool has grown an arena */
	before = segments_of(pool);
	while (segments_of(pool) == before) {
		void *data;

		assert_true(nheld < 64);
		assert_int_equal(shmrig_pool_alloc(pool, 256 * 1024, 0, 0, &held[nheld], &data), 0);
		nheld++;
	}
	send_bare_checked(&s, reg, pool, &v, grown);
	assert_string_not_equal(grown, first);
	assert_int_equal(shmrig__ucx_registered(s.ch, grown), 1);
	assert_int_equal(shmrig__ucx_registered(s.ch, first), 1);
	assert_int_equal(shmrig__ucx_registered(s.ch, NULL), 2);
	for (uint32_t i = 0; i < nheld; i++)
		assert_int_equal(shmrig_pool_free(pool, &held[i]), 0);
	/* large blocks: 6 and 13 MiB stay mapped once free (the pool keeps a few
	 * for reuse); the 25 MiB one needs their room (32 MiB at most), and the
	 * pool unmaps them */
	for (int i = 0; i < 3; i++) {
		v.bytes.len = large_sizes[i];
		send_bare_checked(&s, reg, pool, &v, large[i]);
		assert_int_equal(shmrig__ucx_registered(s.ch, large[i]), 1);
	}
	assert_int_equal(shmrig__ucx_registered(s.ch, large[0]), 0);
	assert_int_equal(shmrig__ucx_registered(s.ch, large[1]), 0);
	assert_int_equal(shmrig__ucx_registered(s.ch, NULL), 3);
	assert_int_equal(shmrig_channel_send(s.ch, "", 0, TIMEOUT_MS), 0);
	assert_int_equal(finish(&s), 0);
	assert_int_equal(th_live_blocks(pool), 0);
	shmrig_registry_free(reg);
	free(buf);
	assert_int_equal(shmrig_pool_close(pool), 0);
	assert_int_equal(th_count_segments(th_prefix()), 0);
}

/* Run as "hostile": send bare frames that break the rules (the receiver
 * drops each and goes on), then a good one and "after". */
static int peer_hostile(shmrig_channel *ch)
{
	struct shmrig_frame_header h = { .magic = SHMRIG_FRAME_MAGIC,
					 .version = SHMRIG_FRAME_VERSION,
					 .nbuffers = 2 };
	struct shmrig_ref ref = { .size = 128, .content_size = 100 };
	unsigned char payload[150];
	char *msg;
	void *frame;
	size_t len;
	int ret = 0;

	th_fill(payload, sizeof(payload), 9);
	/* 1: a header saying 2 buffers (a 216-byte frame) in a 24-byte message */
	if (shmrig__ucx_send_raw(ch, KIND_BARE, sizeof(h), &h, sizeof(h)))
		return 70;
	frame = th_frame_build(1, &ref, 1, NULL, 0, &len);
	msg = malloc(len + sizeof(payload));
	if (!frame || !msg)
		return 71;
	memcpy(msg, frame, len);
	memcpy(msg + len, payload, sizeof(payload));
	/* 2: 150 bytes after the frame, its buffer says 100 */
	if (shmrig__ucx_send_raw(ch, KIND_BARE, len + 150, msg, len + 150))
		ret = 72;
	/* 3: a ref that names a block */
	((struct shmrig_ref *)(msg + sizeof(h)))->name[0] = 'x';
	if (!ret && shmrig__ucx_send_raw(ch, KIND_BARE, len + 100, msg, len + 100))
		ret = 73;
	((struct shmrig_ref *)(msg + sizeof(h)))->name[0] = 0;
	/* 4: a good one, then a message */
	if (!ret && shmrig__ucx_send_raw(ch, KIND_BARE, len + 100, msg, len + 100))
		ret = 74;
	if (!ret && shmrig_channel_send(ch, "after", 5, TIMEOUT_MS))
		ret = 75;
	free(frame);
	free(msg);
	return ret;
}

/* A peer that sends malformed bare frames: each is -EBADMSG here (the same
 * rules as unflatten's), dropped with its bytes, nothing allocated left live;
 * the good frame after them arrives whole, and the stream goes on. */
static void test_hostile_bare(void **state)
{
	shmrig_pool *pool = th_open_pool(8 * MiB, 64 * MiB);
	struct shmrig_frame f;
	struct session s;
	void *msg, *data;
	size_t len;

	(void)state;
	assert_non_null(pool);
	start_with_pool(&s, "hostile", FINGERPRINT, pool);
	assert_int_equal(s.accept_ret, 0);
	assert_int_equal(shmrig_channel_recv(s.ch, &msg, &len, TIMEOUT_MS), -EBADMSG);
	assert_non_null(strstr(shmrig_last_error(), "more than its"));
	assert_int_equal(th_live_blocks(pool), 0);
	assert_int_equal(shmrig_channel_recv(s.ch, &msg, &len, TIMEOUT_MS), -EBADMSG);
	assert_non_null(strstr(shmrig_last_error(), "after the frame"));
	assert_int_equal(th_live_blocks(pool), 0);
	assert_int_equal(shmrig_channel_recv(s.ch, &msg, &len, TIMEOUT_MS), -EBADMSG);
	assert_non_null(strstr(shmrig_last_error(), "names a block"));
	assert_int_equal(th_live_blocks(pool), 0);
	assert_int_equal(shmrig_channel_recv(s.ch, &msg, &len, TIMEOUT_MS), 0);
	assert_int_equal(shmrig_frame_parse(msg, len, &f), 0);
	assert_int_equal(f.nbuffers, 1);
	assert_int_equal(f.buffers[0].content_size, 100);
	assert_int_equal(shmrig_pool_attach(pool, &f.buffers[0], &data), 0);
	assert_int_equal(th_first_mismatch(data, 100, 9), 100);
	assert_int_equal(th_live_blocks(pool), 1);
	assert_int_equal(shmrig_frame_discard(pool, msg, len), 0);
	free(msg);
	assert_int_equal(shmrig_channel_recv(s.ch, &msg, &len, TIMEOUT_MS), 0);
	assert_int_equal(len, 5);
	assert_memory_equal(msg, "after", 5);
	free(msg);
	assert_int_equal(finish(&s), 0);
	assert_int_equal(th_live_blocks(pool), 0);
	assert_int_equal(shmrig_pool_close(pool), 0);
	assert_int_equal(th_count_segments(th_prefix()), 0);
}

/* ---- IPv6, where the machine has it ---- */

static void test_ipv6_loopback(void **state)
{
	char address[ADDR_LEN];
	shmrig_channel_listener *l;
	int ret;

	(void)state;
	ret = shmrig_channel_listen(&ucx_opts, "[::1]:0", &l);
	if (ret) {
		printf("no IPv6 loopback here (%s): case skipped\n", shmrig_last_error());
		skip();
	}
	assert_int_equal(shmrig_channel_listener_address(l, address, sizeof(address)), 0);
	assert_int_equal(strncmp(address, "[::1]:", 6), 0);
	shmrig_channel_listener_close(l);
}

/* ---- a library built without UCX ---- */

/* Every call says why, and checks its arguments first: 0, or 1 after printing what was wrong. */
static int without_ucx(void)
{
	shmrig_channel_listener *l;
	shmrig_channel *ch;
	char address[ADDR_LEN];

	if (shmrig_channel_listen(NULL, "127.0.0.1:0", &l) != -EOPNOTSUPP ||
	    !strstr(shmrig_last_error(), "not built in") ||
	    shmrig_channel_connect(&ucx_opts, "127.0.0.1:1", NULL, 0, 100, &ch) != -EOPNOTSUPP ||
	    shmrig_channel_listen(&ucx_opts, NULL, &l) != -EINVAL ||
	    shmrig_channel_accept(NULL, NULL, 0, 0, &ch) != -EINVAL ||
	    shmrig_channel_listener_address(NULL, address, sizeof(address)) != -EINVAL) {
		printf("FAIL: without UCX, listen/connect/accept answered wrong: %s\n",
		       shmrig_last_error());
		return 1;
	}
	shmrig_channel_listener_close(NULL);
	return 0;
}

/* ---- every case gives back its fds ---- */

static int fds_before;

static int count_fds(void **state)
{
	(void)state;
	fds_before = th_count_fds();
	return 0;
}

static int same_fds(void **state)
{
	int now = th_count_fds();

	(void)state;
	if (now == fds_before)
		return 0;
	fprintf(stderr, "%d fds open after the case, %d before\n", now, fds_before);
	return 1;
}

/* UCX opens its process-wide fds (the async thread's event set) on first use
 * and keeps them: bring them up before the first count. */
static int warm_up(void **state)
{
	shmrig_channel_listener *l;

	(void)state;
	if (shmrig_channel_listen(&ucx_opts, "127.0.0.1:0", &l))
		return 1;
	shmrig_channel_listener_close(l);
	return 0;
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_ephemeral_port, count_fds, same_fds),
		cmocka_unit_test_setup_teardown(test_hello, count_fds, same_fds),
		cmocka_unit_test_setup_teardown(test_fingerprint_mismatch, count_fds, same_fds),
		cmocka_unit_test_setup_teardown(test_bad_address, count_fds, same_fds),
		cmocka_unit_test_setup_teardown(test_nothing_listening, count_fds, same_fds),
		cmocka_unit_test_setup_teardown(test_listener_closed_unaccepted, count_fds,
						same_fds),
		cmocka_unit_test_setup_teardown(test_sizes, count_fds, same_fds),
		cmocka_unit_test_setup_teardown(test_in_order, count_fds, same_fds),
		cmocka_unit_test_setup_teardown(test_peer_killed_in_recv, count_fds, same_fds),
		cmocka_unit_test_setup_teardown(test_peer_killed_in_send, count_fds, same_fds),
		cmocka_unit_test_setup_teardown(test_ipv6_loopback, count_fds, same_fds),
		cmocka_unit_test_setup_teardown(test_frames, count_fds, same_fds),
		cmocka_unit_test_setup_teardown(test_frame_without_pool, count_fds, same_fds),
		cmocka_unit_test_setup_teardown(test_frame_to_dead_peer, count_fds, same_fds),
		cmocka_unit_test_setup_teardown(test_frames_flat, count_fds, same_fds),
		cmocka_unit_test_setup_teardown(test_frames_bare, count_fds, same_fds),
		cmocka_unit_test_setup_teardown(test_frame_over_peer_limit, count_fds, same_fds),
		cmocka_unit_test_setup_teardown(test_frame_peer_killed_bare, count_fds, same_fds),
		cmocka_unit_test_setup_teardown(test_frame_registrations, count_fds, same_fds),
		cmocka_unit_test_setup_teardown(test_hostile_bare, count_fds, same_fds),
	};

	signal(SIGPIPE, SIG_IGN);
	if (argc > 0 && strchr(argv[0], '/'))
		self_exe = argv[0];
	if (argc == 4 && strcmp(argv[1], "peer") == 0) {
		static const struct {
			const char *mode;
			peer_fn fn;
			bool with_pool;
		} modes[] = { { "idle", peer_idle, false },
			      { "echo", peer_echo, false },
			      { "order", peer_check_order, false },
			      { "sleep", peer_sleep, false },
			      { "frames", peer_frames, true },
			      { "send_frame", peer_send_frame, true },
			      { "small", peer_small, true },
			      { "hostile", peer_hostile, false } };
		uint64_t fingerprint = strtoull(argv[3], NULL, 16);

		if (strcmp(argv[2], "refused") == 0)
			return peer_expect_refused();
		for (size_t i = 0; i < sizeof(modes) / sizeof(modes[0]); i++)
			if (strcmp(argv[2], modes[i].mode) == 0)
				return peer_main(modes[i].fn, modes[i].with_pool, fingerprint);
		return 77 + 1;
	}
	if (th_ucx_skip_reason()) {
		printf("SKIP: %s\n", th_ucx_skip_reason());
		return without_ucx() ? 1 : TEST_SKIP_EXIT;
	}
	return cmocka_run_group_tests(tests, warm_up, NULL);
}
