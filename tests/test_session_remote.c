/* SPDX-License-Identifier: MIT */
/*
 * Sessions across hosts (issue 17): a worker at an address, served with
 * shmrig_session_serve() by a process that shares nothing with its caller
 * (this binary exec'd again, as test_channel_ucx's peers are), over the "ucx"
 * channel's listen/connect. Cases: echo and checksum of every built-in
 * codec's values, 0 B to 16 MiB, with nothing of ours live between calls;
 * the worker's handler list (-ENOENT names it; our own handlers are not
 * used); a call that times out and whose late answer is discarded; the
 * registries' fingerprints differ (-EPROTO on both sides); the worker
 * SIGKILLed mid-call (-EPIPE within a bound, naming the address, no block of
 * ours live, restart reconnects to a new worker on the same port); the caller
 * killed mid-call and a caller that vanishes between calls (our serve
 * returns -EPIPE and our pool holds nothing); hostile READY and RESULT
 * messages (garbage bytes, every rule of the name list broken once, flat
 * frames cut short or lying) refused with -EPROTO; serve's bad arguments,
 * its accept timeout and serve_stop. Exit 77 without UCX; the transports are
 * UCX_TLS's (tests/meson.build).
 */
#include "helpers.h"

#include "session/session_internal.h" /* the messages, for the hostile worker */

#include <errno.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include <shmrig/channel.h>
#include <shmrig/frame.h>
#include <shmrig/pool.h>
#include <shmrig/registry.h>
#include <shmrig/segment.h>
#include <shmrig/session.h>
#include <shmrig/value.h>

#define TIMEOUT_MS 20000
/* A lost connection must be noticed within this (a dead process's TCP
 * connection is reset at once; the channel waits in 100 ms slices). */
#define DEAD_PEER_BOUND_MS 3000
#define ADDR_LEN 128

static const char *self_exe = "/proc/self/exe";

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static uint64_t live_blocks(shmrig_pool *pool)
{
	struct shmrig_pool_stats stats = SHMRIG_SIZED(struct shmrig_pool_stats);

	if (shmrig_pool_stats(pool, &stats))
		return UINT64_MAX;
	return stats.live_blocks;
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

/* ---- handlers the workers have ---- */

/* Die of SIGKILL, without a core file: the worker killed mid-call. */
static int crash_handler(void *ctx, struct shmrig_handler_call *call)
{
	struct rlimit none = { 0, 0 };

	(void)ctx;
	(void)call;
	setrlimit(RLIMIT_CORE, &none);
	raise(SIGKILL);
	return shmrig_handler_error(-EINVAL, "crash: SIGKILL did not kill");
}

/* Echo after `arg` milliseconds. */
static int sleep_handler(void *ctx, struct shmrig_handler_call *call)
{
	struct timespec ts = { (time_t)(call->arg / 1000),
			       (long)((int64_t)call->arg % 1000) * 1000000 };

	(void)ctx;
	nanosleep(&ts, NULL);
	call->response = *call->request;
	call->response.storage = NULL;
	return 0;
}

/* ---- the exec'd processes ---- */

/*
 * "worker MODE ADDRESS": listen on ADDRESS, write the address bound (with its
 * NUL) to fd 1, then do MODE; the exit status is MODE's verdict (0: as the
 * test expects). "caller MODE": read an address from fd 0, connect a
 * session, write "c" to fd 1, then do MODE.
 */
struct exec_args {
	const char *role; /* "worker" or "caller" */
	const char *mode;
	const char *address;
};

static int exec_peer(int in, int out, void *arg)
{
	const struct exec_args *a = arg;

	if (dup2(in, 0) != 0 || dup2(out, 1) != 1)
		return 79;
	execl(self_exe, "test_session_remote", a->role, a->mode, a->address ? a->address : "-",
	      (char *)NULL);
	return 78;
}

/* What a worker process opens: its pool, a registry (the built-in codecs, or
 * none: another fingerprint), a session with the built-in handlers and ours. */
struct rig {
	shmrig_pool *pool;
	shmrig_registry *reg;
	shmrig_session *sess;
};

static int rig_open(struct rig *rig, bool builtins, const char *address)
{
	struct shmrig_session_opts opts = SHMRIG_SIZED(struct shmrig_session_opts);

	opts.address = address;
	*rig = (struct rig){ .pool = th_open_pool(8 * MiB, 256 * MiB) };
	if (!rig->pool || shmrig_registry_create(&rig->reg) ||
	    (builtins && shmrig_registry_add_builtins(rig->reg)) ||
	    shmrig_session_create(&opts, rig->reg, rig->pool, &rig->sess))
		return -1;
	if (address)
		return 0;
	if (shmrig_session_add_builtin_handlers(rig->sess) ||
	    shmrig_session_handler(rig->sess, "crash", crash_handler, NULL) ||
	    shmrig_session_handler(rig->sess, "sleep", sleep_handler, NULL))
		return -1;
	return 0;
}

/* 0, or 1 if the pool still held a block at its close. */
static int rig_close(struct rig *rig)
{
	int leaked;

	shmrig_session_free(rig->sess);
	shmrig_registry_free(rig->reg);
	leaked = rig->pool && shmrig_pool_close(rig->pool) != 0;
	*rig = (struct rig){ 0 };
	return leaked;
}

static int listen_and_say(const char *address, shmrig_channel_listener **l)
{
	char bound[ADDR_LEN];

	if (shmrig_channel_listen(NULL, address, l) ||
	    shmrig_channel_listener_address(*l, bound, sizeof(bound)) ||
	    th_write_all(1, bound, strlen(bound) + 1)) {
		fprintf(stderr, "worker: listen %s: %s\n", address, shmrig_last_error());
		return -1;
	}
	return 0;
}

/* "worker serve": serve one caller; 0 if it shut down and nothing is left live.
 * "worker mismatch": another registry; 0 if serve saw -EPROTO. */
static int worker_serve(const char *mode, const char *address)
{
	bool mismatch = strcmp(mode, "mismatch") == 0;
	shmrig_channel_listener *l;
	struct rig rig;
	int ret, code;

	if (rig_open(&rig, !mismatch, NULL)) {
		fprintf(stderr, "worker: setup: %s\n", shmrig_last_error());
		return 90;
	}
	if (listen_and_say(address, &l))
		return 91;
	ret = shmrig_session_serve(rig.sess, l, TIMEOUT_MS);
	if (ret && !mismatch)
		fprintf(stderr, "worker: serve: %d %s\n", ret, shmrig_last_error());
	code = ret == (mismatch ? -EPROTO : 0) ? 0 : 92;
	if (!code && live_blocks(rig.pool) != 0)
		code = 93;
	shmrig_channel_listener_close(l);
	if (rig_close(&rig) && !code)
		code = 94;
	return code;
}

/* A message by hand: a header, then `len` bytes. */
static int send_raw(shmrig_channel *ch, uint16_t type, uint64_t id, uint32_t handler,
		    const void *payload, size_t len)
{
	struct msg_hdr hdr = { .magic = MSG_MAGIC, .type = type, .id = id, .handler = handler };
	char *msg = malloc(sizeof(hdr) + len + 1);
	int ret;

	if (!msg)
		return -ENOMEM;
	memcpy(msg, &hdr, sizeof(hdr));
	if (len)
		memcpy(msg + sizeof(hdr), payload, len);
	ret = shmrig_channel_send(ch, msg, sizeof(hdr) + len, TIMEOUT_MS);
	free(msg);
	return ret;
}

/* Wait until the caller goes (it drops the connection on what we sent). */
static int until_gone(shmrig_channel *ch)
{
	for (;;) {
		void *msg;
		size_t len;
		int ret = shmrig_channel_recv(ch, &msg, &len, TIMEOUT_MS);

		if (ret)
			return ret == -EPIPE ? 0 : 96;
		free(msg);
	}
}

/*
 * The hostile READY variants: what the worker says instead of its names.
 * Each breaks one rule of session_internal.h's READY_REMOTE.
 */
enum hostile_ready {
	READY_TOO_MANY,       /* 257 names */
	READY_BAD_NAME,       /* a name with a space */
	READY_LONG_NAME,      /* 32 bytes */
	READY_EMPTY_NAME,     /* "" */
	READY_UNTERMINATED,   /* the last name has no NUL */
	READY_SHORT_COUNT,    /* says 3, carries 2 */
	READY_TRAILING,       /* bytes after the last name */
	READY_DUPLICATE,      /* a name twice */
	READY_GARBAGE_HEADER, /* a bad magic */
	READY_FORKED_KIND,    /* a forked worker's READY (a procid) */
	READY_RAW_GARBAGE,    /* 4 KiB of pseudo-random bytes */
	READY_VARIANTS
};

static const char *const ready_words[READY_VARIANTS] = {
	"at most 256 handlers",
	"not 1..31",
	"not 1..31",
	"not 1..31",
	"cut off",
	"cut off",
	"bytes follow",
	"twice",
	"bad message header",
	"type",
	"",
};

static int send_hostile_ready(shmrig_channel *ch, int variant)
{
	static char names[READY_NAMES_MAX + 64];
	size_t len = 0;

	switch (variant) {
	case READY_TOO_MANY:
		for (int i = 0; i < 257; i++)
			len += (size_t)sprintf(names + len, "h%d", i) + 1;
		return send_raw(ch, MSG_READY_REMOTE, 0, 257, names, len);
	case READY_BAD_NAME:
		return send_raw(ch, MSG_READY_REMOTE, 0, 2, "echo\0a b", 9);
	case READY_LONG_NAME:
		memset(names, 'x', 32);
		names[32] = '\0';
		return send_raw(ch, MSG_READY_REMOTE, 0, 1, names, 33);
	case READY_EMPTY_NAME:
		return send_raw(ch, MSG_READY_REMOTE, 0, 2, "echo\0", 6);
	case READY_UNTERMINATED:
		return send_raw(ch, MSG_READY_REMOTE, 0, 2, "echo\0checksum", 13);
	case READY_SHORT_COUNT:
		return send_raw(ch, MSG_READY_REMOTE, 0, 3, "echo\0checksum", 14);
	case READY_TRAILING:
		return send_raw(ch, MSG_READY_REMOTE, 0, 1, "echo\0xyz", 8);
	case READY_DUPLICATE:
		return send_raw(ch, MSG_READY_REMOTE, 0, 3, "echo\0scale\0echo", 16);
	case READY_GARBAGE_HEADER: {
		struct msg_hdr hdr = { .magic = 0xdeadbeef,
				       .type = MSG_READY_REMOTE,
				       .handler = 1 };
		char msg[sizeof(hdr) + 5];

		memcpy(msg, &hdr, sizeof(hdr));
		memcpy(msg + sizeof(hdr), "echo", 5);
		return shmrig_channel_send(ch, msg, sizeof(msg), TIMEOUT_MS);
	}
	case READY_FORKED_KIND: {
		uint64_t procid = 12345;

		return send_raw(ch, MSG_READY, 0, 0, &procid, sizeof(procid));
	}
	default:
		th_fill((unsigned char *)names, 4096, 17);
		return shmrig_channel_send(ch, names, 4096, TIMEOUT_MS);
	}
}

/*
 * The hostile RESULT variants: a good READY, then the answer to the first
 * CALL is one of these.
 */
enum hostile_result {
	RESULT_GARBAGE,     /* 64 KiB of pseudo-random bytes after a good header */
	RESULT_CUT,         /* a good flat frame, its last byte missing */
	RESULT_LONGER,      /* a good flat frame with 8 more bytes */
	RESULT_SIZE_LIE,    /* a buffer's content_size larger than what is carried */
	RESULT_NAMES_BLOCK, /* a ref that names a block (as a frame of ours would) */
	RESULT_RAW_FRAME,   /* sent with send_frame: outside the protocol */
	RESULT_VARIANTS
};

/* A good flat frame of 1000 bytes (the "bytes" codec) from our pool. */
static int good_flat(shmrig_pool *pool, shmrig_registry *reg, void **flat, size_t *flat_len)
{
	static unsigned char payload[1000];
	struct shmrig_value v = { .kind = SHMRIG_KIND_BYTES, .bytes = { payload, 1000 } };
	void *frame;
	size_t len;
	int ret;

	th_fill(payload, sizeof(payload), 3);
	ret = shmrig_registry_encode(reg, pool, &v, &frame, &len);
	if (ret)
		return ret;
	ret = shmrig_frame_flatten(pool, frame, len, flat, flat_len);
	if (ret)
		(void)!shmrig_frame_discard(pool, frame, len);
	free(frame);
	return ret;
}

static int send_hostile_result(shmrig_channel *ch, struct rig *rig, int variant, uint64_t id)
{
	void *flat = NULL;
	size_t flat_len = 0;
	int ret;

	if (variant == RESULT_GARBAGE) {
		unsigned char *junk = malloc(64 * 1024);

		if (!junk)
			return -ENOMEM;
		th_fill(junk, 64 * 1024, 5);
		ret = send_raw(ch, MSG_RESULT, id, 0, junk, 64 * 1024);
		free(junk);
		return ret;
	}
	if (variant == RESULT_RAW_FRAME) {
		struct shmrig_value v = { .kind = SHMRIG_KIND_BYTES, .bytes = { "frame", 5 } };
		void *frame;
		size_t len;

		ret = shmrig_registry_encode(rig->reg, rig->pool, &v, &frame, &len);
		if (!ret)
			ret = shmrig_channel_send_frame(ch, frame, len, TIMEOUT_MS);
		free(frame);
		return ret;
	}
	ret = good_flat(rig->pool, rig->reg, &flat, &flat_len);
	if (ret)
		return ret;
	if (variant == RESULT_CUT) {
		ret = send_raw(ch, MSG_RESULT, id, 0, flat, flat_len - 1);
	} else if (variant == RESULT_LONGER) {
		char *longer = calloc(1, flat_len + 8);

		if (!longer) {
			free(flat);
			return -ENOMEM;
		}
		memcpy(longer, flat, flat_len);
		ret = send_raw(ch, MSG_RESULT, id, 0, longer, flat_len + 8);
		free(longer);
	} else {
		/* the first ref sits right after the 24-byte frame header */
		struct shmrig_ref ref;

		memcpy(&ref, (char *)flat + sizeof(struct shmrig_frame_header), sizeof(ref));
		if (variant == RESULT_SIZE_LIE) {
			ref.content_size = 1u << 20;
			ref.size = 1u << 20;
		} else {
			snprintf(ref.name, sizeof(ref.name), "%s", "victim");
		}
		memcpy((char *)flat + sizeof(struct shmrig_frame_header), &ref, sizeof(ref));
		ret = send_raw(ch, MSG_RESULT, id, 0, flat, flat_len);
	}
	free(flat);
	return ret;
}

/* "worker ready_N" / "worker result_N": accept one caller with the built-in
 * codecs' fingerprint, misbehave, wait until it has gone. */
static int worker_hostile(const char *mode, const char *address)
{
	bool ready = strncmp(mode, "ready_", 6) == 0;
	int variant = atoi(mode + (ready ? 6 : 7));
	shmrig_channel_listener *l;
	shmrig_channel *ch;
	struct rig rig;
	int code = 0;

	if (rig_open(&rig, true, NULL))
		return 90;
	if (listen_and_say(address, &l))
		return 91;
	/* with our pool: send_frame needs it (RESULT_RAW_FRAME) */
	if (shmrig_channel_accept(l, rig.pool, shmrig_registry_fingerprint(rig.reg), TIMEOUT_MS,
				  &ch)) {
		fprintf(stderr, "worker: accept: %s\n", shmrig_last_error());
		return 95;
	}
	if (ready) {
		if (send_hostile_ready(ch, variant))
			code = 97;
	} else {
		struct msg_hdr hdr;
		void *msg;
		size_t len;

		if (send_raw(ch, MSG_READY_REMOTE, 0, 1, "echo", 5) ||
		    shmrig_channel_recv(ch, &msg, &len, TIMEOUT_MS)) {
			code = 98;
		} else {
			memcpy(&hdr, msg, sizeof(hdr));
			free(msg);
			if (send_hostile_result(ch, &rig, variant, hdr.id))
				code = 99;
		}
	}
	if (!code)
		code = until_gone(ch);
	shmrig_channel_close(ch);
	shmrig_channel_listener_close(l);
	if (live_blocks(rig.pool) != 0 && !code)
		code = 93;
	if (rig_close(&rig) && !code)
		code = 94;
	return code;
}

/*
 * The hostile callers: a good hello and the worker's READY, then one of these.
 */
enum hostile_call {
	CALL_GARBAGE,    /* 4 KiB of pseudo-random bytes */
	CALL_CUT_FLAT,   /* a CALL whose flat frame misses its last byte */
	CALL_RAW_FRAME,  /* a frame sent with send_frame: outside the protocol */
	CALL_WRONG_TYPE, /* a RESULT, which only a worker sends */
	CALL_VARIANTS
};

static int caller_hostile(int variant)
{
	char address[ADDR_LEN];
	shmrig_channel *ch;
	struct rig rig;
	void *msg;
	size_t len;
	int ret, code = 0;

	if (read_address(0, address, sizeof(address)))
		return 80;
	if (rig_open(&rig, true, address))
		return 81;
	/* with our pool: send_frame needs it (CALL_RAW_FRAME) */
	if (shmrig_channel_connect(NULL, address, rig.pool, shmrig_registry_fingerprint(rig.reg),
				   TIMEOUT_MS, &ch)) {
		fprintf(stderr, "caller: connect: %s\n", shmrig_last_error());
		return 85;
	}
	if (shmrig_channel_recv(ch, &msg, &len, TIMEOUT_MS))
		return 86;
	free(msg);
	if (th_write_all(1, "c", 1))
		return 82;
	if (variant == CALL_GARBAGE) {
		unsigned char junk[4096];

		th_fill(junk, sizeof(junk), 11);
		ret = shmrig_channel_send(ch, junk, sizeof(junk), TIMEOUT_MS);
	} else if (variant == CALL_CUT_FLAT) {
		void *flat;
		size_t flat_len;

		ret = good_flat(rig.pool, rig.reg, &flat, &flat_len);
		if (!ret) {
			ret = send_raw(ch, MSG_CALL, 1, 0, flat, flat_len - 1);
			free(flat);
		}
	} else if (variant == CALL_RAW_FRAME) {
		struct shmrig_value v = { .kind = SHMRIG_KIND_BYTES, .bytes = { "frame", 5 } };
		void *frame;

		ret = shmrig_registry_encode(rig.reg, rig.pool, &v, &frame, &len);
		if (!ret) {
			ret = shmrig_channel_send_frame(ch, frame, len, TIMEOUT_MS);
			free(frame);
		}
	} else {
		ret = send_raw(ch, MSG_RESULT, 1, 0, NULL, 0);
	}
	code = ret ? 87 : until_gone(ch);
	shmrig_channel_close(ch);
	if (rig_close(&rig) && !code)
		code = 94;
	return code;
}

/* "caller killed": call "hold" (the test's handler SIGKILLs us meanwhile).
 * "caller vanish": one echo, then exit without a shutdown. */
static int caller_main(const char *mode)
{
	static unsigned char payload[MiB];
	struct shmrig_value v = { .kind = SHMRIG_KIND_BYTES, .bytes = { payload, MiB } }, out;
	char address[ADDR_LEN];
	struct rig rig;

	if (read_address(0, address, sizeof(address)))
		return 80;
	if (rig_open(&rig, true, address) || shmrig_session_start(rig.sess)) {
		fprintf(stderr, "caller: %s\n", shmrig_last_error());
		return 81;
	}
	if (th_write_all(1, "c", 1))
		return 82;
	th_fill(payload, sizeof(payload), 9);
	if (strcmp(mode, "killed") == 0) {
		int ret = shmrig_session_call(rig.sess, "hold", 0, &v, &out, TIMEOUT_MS);

		fprintf(stderr, "caller: still alive after the call: %d %s\n", ret,
			shmrig_last_error());
		return 83;
	}
	if (shmrig_session_call(rig.sess, "echo", 0, &v, &out, TIMEOUT_MS) ||
	    shmrig_value_release(&out))
		return 84;
	_exit(0); /* no shutdown, no close: the connection just goes */
}

/* ---- the test's side ---- */

static shmrig_pool *pool;
static shmrig_registry *reg;
static shmrig_session *sess;
static int fds_before;

struct worker {
	struct th_peer peer;
	struct exec_args args;
	char address[ADDR_LEN];
};

/* Spawn a worker process in `mode` listening on `address`; read the address it bound. */
static void spawn_worker(struct worker *w, const char *mode, const char *address)
{
	*w = (struct worker){ .args = { .role = "worker", .mode = mode, .address = address } };
	w->peer = th_peer_spawn(exec_peer, &w->args);
	assert_int_equal(read_address(w->peer.from_child, w->address, sizeof(w->address)), 0);
}

/* The worker's exit status (th_wait_child's convention), its leftovers swept. */
static int finish_worker(struct worker *w)
{
	int status = th_peer_finish(&w->peer, TIMEOUT_MS);

	/* a worker that was killed could not remove its segments */
	(void)!shmrig_segment_sweep(th_prefix());
	return status;
}

/* Our pool and registry, and a session that calls the worker at `address`. */
static void begin(const char *address)
{
	struct shmrig_session_opts opts = SHMRIG_SIZED(struct shmrig_session_opts);

	opts.address = address;
	pool = th_open_pool(8 * MiB, 256 * MiB);
	assert_non_null(pool);
	assert_int_equal(shmrig_registry_create(&reg), 0);
	assert_int_equal(shmrig_registry_add_builtins(reg), 0);
	if (address)
		assert_int_equal(shmrig_session_create(&opts, reg, pool, &sess), 0);
}

static void finish(void)
{
	shmrig_session_free(sess);
	sess = NULL;
	assert_int_equal(th_live_blocks(pool), 0);
	assert_int_equal(shmrig_pool_close(pool), 0);
	pool = NULL;
	shmrig_registry_free(reg);
	reg = NULL;
	assert_int_equal(th_count_segments(th_prefix()), 0);
}

/* ---- values: every built-in codec ---- */

enum {
	NVALUES = 32
};

static struct shmrig_value values[NVALUES];
static int nvalues;
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
	static const uint64_t rows[] = { 1000 }, small[] = { 4, 4 }, tiny[] = { 3 };
	static const uint64_t cube[] = { 2, 2, 2 };

	nvalues = nbuffers = 0;
	for (int d = SHMRIG_DTYPE_INVALID + 1; d < SHMRIG_DTYPE_COUNT; d++) {
		values[nvalues].kind = SHMRIG_KIND_NDARRAY;
		values[nvalues].array = array_of((enum shmrig_dtype)d, d % 2 ? 'C' : 'F', d % 3 + 1,
						 d % 3 == 0 ? rows :
						 d % 3 == 1 ? shape2 :
							      shape3,
						 (unsigned)nvalues);
		nvalues++;
	}
	values[nvalues].kind = SHMRIG_KIND_NDARRAY; /* a scalar */
	values[nvalues].array = array_of(SHMRIG_DTYPE_FLOAT64, 'C', 0, NULL, 50);
	nvalues++;
	values[nvalues].kind = SHMRIG_KIND_NDARRAY; /* no elements */
	values[nvalues].array = array_of(SHMRIG_DTYPE_FLOAT32, 'F', 2, empty, 51);
	nvalues++;

	columns[0] = (struct shmrig_named_array){ "id",
						  array_of(SHMRIG_DTYPE_INT64, 'C', 1, rows, 101) };
	columns[1] = (struct shmrig_named_array){ "x", array_of(SHMRIG_DTYPE_FLOAT64, 'C', 1, rows,
								102) };
	columns[2] = (struct shmrig_named_array){ "flag",
						  array_of(SHMRIG_DTYPE_BOOL, 'C', 1, rows, 103) };
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

	add_bytes(0);
	add_bytes(64);
	add_bytes(MiB);
	add_bytes(16 * MiB);
	assert_true(nvalues <= NVALUES);
}

static void free_values(void)
{
	for (int i = 0; i < nbuffers; i++)
		free(buffers[i]);
	nvalues = nbuffers = 0;
}

/* ---- echo and checksum of every value ---- */

static int local_handler(void *ctx, struct shmrig_handler_call *call)
{
	(void)ctx;
	(void)call;
	return 0;
}

static void test_echo_and_checksum(void **state)
{
	struct shmrig_session_stats stats = SHMRIG_SIZED(struct shmrig_session_stats);
	struct shmrig_value out;
	struct worker w;

	(void)state;
	spawn_worker(&w, "serve", "127.0.0.1:0");
	begin(w.address);
	/* handlers registered here are not the worker's: never used */
	assert_int_equal(shmrig_session_handler(sess, "local_only", local_handler, NULL), 0);
	assert_int_equal(shmrig_session_start(sess), 0);
	assert_int_equal(shmrig_session_worker_pid(sess), 0);
	assert_int_equal(shmrig_session_start(sess), -EBUSY);
	assert_int_equal(shmrig_session_ping(sess, TIMEOUT_MS), 0);
	make_values();
	for (int i = 0; i < nvalues; i++) {
		uint64_t expect;

		assert_int_equal(shmrig_session_call(sess, "echo", 0, &values[i], &out, TIMEOUT_MS),
				 0);
		th_assert_value_equal(&values[i], &out);
		/* the answer's blocks are ours (landed in our pool), and only they */
		assert_int_equal(th_live_blocks(pool), shmrig_value_leases(&out));
		assert_int_equal(shmrig_value_release(&out), 0);
		assert_int_equal(th_live_blocks(pool), 0);

		assert_int_equal(shmrig_session_call(sess, "checksum", 0, &values[i], &out,
						     TIMEOUT_MS),
				 0);
		assert_int_equal(shmrig_session_checksum(&values[i], &expect), 0);
		assert_int_equal(out.kind, SHMRIG_KIND_NDARRAY);
		assert_int_equal(out.array.dtype, SHMRIG_DTYPE_UINT64);
		assert_int_equal(out.array.shape[0], 1);
		assert_int_equal(((const uint64_t *)out.array.data)[0], expect);
		assert_int_equal(shmrig_value_release(&out), 0);
	}
	/* a name the worker lacks: its list in the words */
	assert_int_equal(shmrig_session_call(sess, "local_only", 0, &values[0], &out, TIMEOUT_MS),
			 -ENOENT);
	assert_non_null(strstr(shmrig_last_error(), "'local_only'"));
	assert_non_null(strstr(shmrig_last_error(), "'checksum'"));
	assert_non_null(strstr(shmrig_last_error(), "'crash'"));
	assert_non_null(strstr(shmrig_last_error(), w.address));
	/* a handler's error comes back in its words; the session goes on */
	assert_int_equal(shmrig_session_call(sess, "scale", 2, &values[nvalues - 1], &out,
					     TIMEOUT_MS),
			 -EINVAL);
	assert_non_null(strstr(shmrig_last_error(), "takes a float32 or float64 ndarray"));
	assert_int_equal(shmrig_session_stats(sess, &stats), 0);
	assert_int_equal(stats.calls, 2 * (uint64_t)nvalues + 1);
	assert_int_equal(stats.starts, 1);
	assert_int_equal(stats.deaths, 0);
	assert_int_equal(stats.blocks_reaped, 0);
	free_values();
	assert_int_equal(shmrig_session_shutdown(sess, TIMEOUT_MS), 0);
	assert_int_equal(shmrig_session_ping(sess, TIMEOUT_MS), -EPIPE);
	/* the worker's serve returned 0 with nothing live in its pool */
	assert_int_equal(finish_worker(&w), 0);
	finish();
}

/* ---- a call that times out: its late answer is discarded ---- */

static void test_timeout(void **state)
{
	struct shmrig_session_stats stats = SHMRIG_SIZED(struct shmrig_session_stats);
	struct shmrig_value v = { .kind = SHMRIG_KIND_BYTES, .bytes = { "late", 4 } }, out;
	struct shmrig_value b = { .kind = SHMRIG_KIND_BYTES, .bytes = { "after", 5 } };
	struct worker w;

	(void)state;
	spawn_worker(&w, "serve", "127.0.0.1:0");
	begin(w.address);
	assert_int_equal(shmrig_session_start(sess), 0);
	assert_int_equal(shmrig_session_call(sess, "sleep", 500, &v, &out, 50), -ETIMEDOUT);
	assert_non_null(strstr(shmrig_last_error(), w.address));
	assert_int_equal(shmrig_session_call(sess, "echo", 0, &b, &out, TIMEOUT_MS), 0);
	th_assert_value_equal(&b, &out);
	assert_int_equal(shmrig_value_release(&out), 0);
	assert_int_equal(shmrig_session_stats(sess, &stats), 0);
	assert_int_equal(stats.timeouts, 1);
	assert_int_equal(stats.stale_replies, 1);
	assert_int_equal(shmrig_session_shutdown(sess, TIMEOUT_MS), 0);
	assert_int_equal(finish_worker(&w), 0);
	finish();
}

/* ---- the registries differ ---- */

static void test_fingerprint_mismatch(void **state)
{
	struct worker w;

	(void)state;
	spawn_worker(&w, "mismatch", "127.0.0.1:0");
	begin(w.address);
	assert_int_equal(shmrig_session_start(sess), -EPROTO);
	assert_non_null(strstr(shmrig_last_error(), "fingerprint"));
	assert_non_null(strstr(shmrig_last_error(), w.address));
	assert_int_equal(shmrig_session_worker_pid(sess), 0);
	assert_int_equal(shmrig_session_ping(sess, TIMEOUT_MS), -EPIPE);
	/* its serve saw -EPROTO too */
	assert_int_equal(finish_worker(&w), 0);
	finish();
}

/* ---- the worker killed mid-call; restart reconnects ---- */

static void test_worker_killed(void **state)
{
	unsigned char *big = malloc(16 * MiB);
	struct shmrig_value v = { .kind = SHMRIG_KIND_BYTES }, out;
	struct shmrig_session_stats stats = SHMRIG_SIZED(struct shmrig_session_stats);
	char same_port[ADDR_LEN];
	struct worker w;
	int64_t t0;

	(void)state;
	assert_non_null(big);
	th_fill(big, 16 * MiB, 21);
	v.bytes.data = big;
	v.bytes.len = 16 * MiB;
	spawn_worker(&w, "serve", "127.0.0.1:0");
	begin(w.address);
	assert_int_equal(shmrig_session_start(sess), 0);
	t0 = now_ms();
	assert_int_equal(shmrig_session_call(sess, "crash", 0, &v, &out, TIMEOUT_MS), -EPIPE);
	assert_true(now_ms() - t0 < DEAD_PEER_BOUND_MS);
	assert_non_null(strstr(shmrig_last_error(), w.address));
	assert_non_null(strstr(shmrig_last_error(), "'crash'"));
	assert_non_null(strstr(shmrig_last_error(), "restart"));
	/* nothing was handed over: nothing of ours is live, nothing to reap */
	assert_int_equal(th_live_blocks(pool), 0);
	assert_int_equal(shmrig_pool_reap(pool), 0);
	assert_int_equal(shmrig_session_stats(sess, &stats), 0);
	assert_int_equal(stats.deaths, 1);
	assert_int_equal(stats.blocks_reaped, 0);
	assert_int_equal(finish_worker(&w), 128 + SIGKILL);
	assert_int_equal(th_count_segments_of(th_prefix(), w.peer.pid), 0);
	/* dead until restarted, saying so */
	assert_int_equal(shmrig_session_call(sess, "echo", 0, &v, &out, TIMEOUT_MS), -EPIPE);
	assert_non_null(strstr(shmrig_last_error(), "restart"));
	/* nobody serves there now */
	assert_int_equal(shmrig_session_restart(sess), -ECONNREFUSED);
	assert_non_null(strstr(shmrig_last_error(), w.address));

	/* a new worker on the same port: restart connects to it */
	snprintf(same_port, sizeof(same_port), "%s", w.address);
	spawn_worker(&w, "serve", same_port);
	assert_string_equal(w.address, same_port);
	assert_int_equal(shmrig_session_restart(sess), 0);
	assert_int_equal(shmrig_session_call(sess, "echo", 0, &v, &out, TIMEOUT_MS), 0);
	th_assert_value_equal(&v, &out);
	assert_int_equal(shmrig_value_release(&out), 0);
	assert_int_equal(shmrig_session_shutdown(sess, TIMEOUT_MS), 0);
	assert_int_equal(finish_worker(&w), 0);
	assert_int_equal(shmrig_session_stats(sess, &stats), 0);
	assert_int_equal(stats.starts, 2);
	free(big);
	finish();
}

/* ---- the caller killed mid-call, or gone between calls: our serve ---- */

static pid_t caller_pid;

/* Kill the caller while its call is ours to answer, wait until it is gone,
 * then answer anyway: into a connection that is lost. */
static int hold_handler(void *ctx, struct shmrig_handler_call *call)
{
	(void)ctx;
	if (kill(caller_pid, SIGKILL) || th_wait_child(caller_pid, TIMEOUT_MS) != 128 + SIGKILL)
		return shmrig_handler_error(-ECHILD, "hold: the caller did not die");
	caller_pid = 0;
	call->response = *call->request;
	call->response.storage = NULL;
	return 0;
}

static void serve_caller(const char *mode, int expect_ret, const char *words, int expect_status)
{
	struct exec_args args = { .role = "caller", .mode = mode };
	shmrig_channel_listener *l;
	char address[ADDR_LEN];
	struct th_peer peer;
	shmrig_session *server;
	char c;

	begin(NULL);
	assert_int_equal(shmrig_session_create(NULL, reg, pool, &server), 0);
	assert_int_equal(shmrig_session_add_builtin_handlers(server), 0);
	assert_int_equal(shmrig_session_handler(server, "hold", hold_handler, NULL), 0);
	assert_int_equal(shmrig_channel_listen(NULL, "127.0.0.1:0", &l), 0);
	assert_int_equal(shmrig_channel_listener_address(l, address, sizeof(address)), 0);
	peer = th_peer_spawn(exec_peer, &args);
	caller_pid = peer.pid;
	assert_int_equal(th_write_all(peer.to_child, address, strlen(address) + 1), 0);
	assert_int_equal(shmrig_session_serve(server, l, TIMEOUT_MS), expect_ret);
	assert_non_null(strstr(shmrig_last_error(), words));
	if (expect_ret == -EPROTO)
		assert_non_null(strstr(shmrig_last_error(), "dropped"));
	/* its request was released, its answer flattened: nothing of it is live */
	assert_int_equal(th_live_blocks(pool), 0);
	assert_int_equal(th_read_all(peer.from_child, &c, 1), 0);
	if (caller_pid) {
		assert_int_equal(th_peer_finish(&peer, TIMEOUT_MS), expect_status);
	} else {
		/* reaped by the handler: only the pipes to close */
		close(peer.to_child);
		close(peer.from_child);
	}
	/* the dead caller's pool could not remove its segments */
	(void)!shmrig_segment_sweep(th_prefix());
	shmrig_channel_listener_close(l);
	shmrig_session_free(server);
	finish();
}

static void test_caller_killed(void **state)
{
	(void)state;
	serve_caller("killed", -EPIPE, "went away", 128 + SIGKILL);
}

static void test_caller_vanishes(void **state)
{
	(void)state;
	serve_caller("vanish", -EPIPE, "went away", 0);
}

/* A caller that breaks the protocol is dropped: -EPROTO, nothing of it live. */
static void test_hostile_caller(void **state)
{
	static const char *const words[CALL_VARIANTS] = {
		"bad message header",
		"malformed request",
		"broke the channel",
		"message of type 3",
	};

	(void)state;
	for (int variant = 0; variant < CALL_VARIANTS; variant++) {
		char mode[32];

		snprintf(mode, sizeof(mode), "hostile_%d", variant);
		serve_caller(mode, -EPROTO, words[variant], 0);
	}
}

/* ---- hostile workers ---- */

static void test_hostile_ready(void **state)
{
	(void)state;
	for (int variant = 0; variant < READY_VARIANTS; variant++) {
		char mode[32];
		struct worker w;
		int ret;

		snprintf(mode, sizeof(mode), "ready_%d", variant);
		spawn_worker(&w, mode, "127.0.0.1:0");
		begin(w.address);
		ret = shmrig_session_start(sess);
		if (ret != -EPROTO)
			fprintf(stderr, "variant %d: %d %s\n", variant, ret, shmrig_last_error());
		assert_int_equal(ret, -EPROTO);
		assert_non_null(strstr(shmrig_last_error(), ready_words[variant]));
		assert_non_null(strstr(shmrig_last_error(), "dropped"));
		assert_int_equal(shmrig_session_ping(sess, TIMEOUT_MS), -EPIPE);
		assert_int_equal(finish_worker(&w), 0);
		finish();
	}
}

static void test_hostile_result(void **state)
{
	static const char *const words[RESULT_VARIANTS] = {
		"malformed result", "malformed result", "malformed result",
		"malformed result", "malformed result", "outside the protocol",
	};
	struct shmrig_value v = { .kind = SHMRIG_KIND_BYTES, .bytes = { "question", 8 } }, out;

	(void)state;
	for (int variant = 0; variant < RESULT_VARIANTS; variant++) {
		char mode[32];
		struct worker w;
		int ret;

		snprintf(mode, sizeof(mode), "result_%d", variant);
		spawn_worker(&w, mode, "127.0.0.1:0");
		begin(w.address);
		assert_int_equal(shmrig_session_start(sess), 0);
		ret = shmrig_session_call(sess, "echo", 0, &v, &out, TIMEOUT_MS);
		if (ret != -EPROTO)
			fprintf(stderr, "variant %d: %d %s\n", variant, ret, shmrig_last_error());
		assert_int_equal(ret, -EPROTO);
		assert_non_null(strstr(shmrig_last_error(), words[variant]));
		assert_non_null(strstr(shmrig_last_error(), "dropped"));
		/* nothing of the refused answer stayed in our pool */
		assert_int_equal(th_live_blocks(pool), 0);
		assert_int_equal(shmrig_session_call(sess, "echo", 0, &v, &out, TIMEOUT_MS),
				 -EPIPE);
		assert_int_equal(finish_worker(&w), 0);
		finish();
	}
}

/* ---- bad arguments, nobody there, serve's timeout and stop ---- */

static void test_bad_arguments(void **state)
{
	struct shmrig_channel_opts pipe_opts = { .size = sizeof(pipe_opts), .backend = "pipe" };
	struct shmrig_session_opts opts = SHMRIG_SIZED(struct shmrig_session_opts);
	char long_address[ADDRESS_MAX + 2];
	shmrig_channel_listener *l;
	shmrig_session *server, *other;
	char address[ADDR_LEN];

	(void)state;
	begin(NULL);
	opts.address = "127.0.0.1:1";
	opts.channel = &pipe_opts;
	assert_int_equal(shmrig_session_create(&opts, reg, pool, &other), -EINVAL);
	assert_non_null(strstr(shmrig_last_error(), "ucx"));
	opts.channel = NULL;
	opts.address = "";
	assert_int_equal(shmrig_session_create(&opts, reg, pool, &other), -EINVAL);
	memset(long_address, 'a', sizeof(long_address) - 1);
	long_address[sizeof(long_address) - 1] = '\0';
	opts.address = long_address;
	assert_int_equal(shmrig_session_create(&opts, reg, pool, &other), -EINVAL);

	assert_int_equal(shmrig_session_create(NULL, reg, pool, &server), 0);
	assert_int_equal(shmrig_channel_listen(NULL, "127.0.0.1:0", &l), 0);
	assert_int_equal(shmrig_channel_listener_address(l, address, sizeof(address)), 0);
	assert_int_equal(shmrig_session_serve(NULL, l, 0), -EINVAL);
	assert_int_equal(shmrig_session_serve(server, NULL, 0), -EINVAL);
	/* nothing to serve */
	assert_int_equal(shmrig_session_serve(server, l, 0), -EINVAL);
	assert_non_null(strstr(shmrig_last_error(), "no handlers"));
	assert_int_equal(shmrig_session_add_builtin_handlers(server), 0);
	/* nobody comes */
	assert_int_equal(shmrig_session_serve(server, l, 50), -ETIMEDOUT);
	/* asked to stop (as a signal handler would): the next serve returns at once, once */
	shmrig_session_serve_stop(server);
	shmrig_session_serve_stop(NULL);
	assert_int_equal(shmrig_session_serve(server, l, -1), -EINTR);
	assert_int_equal(shmrig_session_serve(server, l, 50), -ETIMEDOUT);

	/* a session that connects does not serve */
	opts.address = address;
	assert_int_equal(shmrig_session_create(&opts, reg, pool, &other), 0);
	assert_int_equal(shmrig_session_serve(other, l, 0), -EINVAL);
	assert_non_null(strstr(shmrig_last_error(), address));
	/* before the start: no worker (and no list of its handlers yet) */
	assert_int_equal(shmrig_session_call(other, "echo", 0,
					     &(struct shmrig_value){ .kind = SHMRIG_KIND_BYTES },
					     &(struct shmrig_value){ 0 }, 0),
			 -EPIPE);
	assert_non_null(strstr(shmrig_last_error(), "start"));
	shmrig_session_free(other);
	shmrig_channel_listener_close(l);
	shmrig_session_free(server);

	/* nothing listens there now */
	assert_int_equal(shmrig_session_create(&opts, reg, pool, &other), 0);
	assert_int_equal(shmrig_session_start(other), -ECONNREFUSED);
	assert_non_null(strstr(shmrig_last_error(), address));
	assert_int_equal(shmrig_session_worker_pid(other), 0);
	shmrig_session_free(other);
	finish();
}

/* ---- every case gives back its fds ---- */

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
	if (shmrig_channel_listen(NULL, "127.0.0.1:0", &l))
		return 1;
	shmrig_channel_listener_close(l);
	return th_sweep_leftovers(state);
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_bad_arguments, count_fds, same_fds),
		cmocka_unit_test_setup_teardown(test_echo_and_checksum, count_fds, same_fds),
		cmocka_unit_test_setup_teardown(test_timeout, count_fds, same_fds),
		cmocka_unit_test_setup_teardown(test_fingerprint_mismatch, count_fds, same_fds),
		cmocka_unit_test_setup_teardown(test_worker_killed, count_fds, same_fds),
		cmocka_unit_test_setup_teardown(test_caller_killed, count_fds, same_fds),
		cmocka_unit_test_setup_teardown(test_caller_vanishes, count_fds, same_fds),
		cmocka_unit_test_setup_teardown(test_hostile_caller, count_fds, same_fds),
		cmocka_unit_test_setup_teardown(test_hostile_ready, count_fds, same_fds),
		cmocka_unit_test_setup_teardown(test_hostile_result, count_fds, same_fds),
	};

	signal(SIGPIPE, SIG_IGN);
	if (argc > 0 && strchr(argv[0], '/'))
		self_exe = argv[0];
	if (argc == 4 && strcmp(argv[1], "worker") == 0) {
		/* A worker listens again on the port of one that was killed
		 * (test_worker_killed): that one's connection may still be in
		 * TIME_WAIT, which only SO_REUSEADDR lets a new listener past. */
		setenv("UCX_TCP_CM_REUSEADDR", "y", 1);
		if (strncmp(argv[2], "ready_", 6) == 0 || strncmp(argv[2], "result_", 7) == 0)
			return worker_hostile(argv[2], argv[3]);
		return worker_serve(argv[2], argv[3]);
	}
	if (argc == 4 && strcmp(argv[1], "caller") == 0) {
		if (strncmp(argv[2], "hostile_", 8) == 0)
			return caller_hostile(atoi(argv[2] + 8));
		return caller_main(argv[2]);
	}
	if (th_ucx_skip_reason()) {
		printf("SKIP: %s\n", th_ucx_skip_reason());
		return TEST_SKIP_EXIT;
	}
	return cmocka_run_group_tests(tests, warm_up, th_sweep_leftovers);
}
