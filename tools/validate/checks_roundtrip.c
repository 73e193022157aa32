/* SPDX-License-Identifier: MIT */
/*
 * Required.RoundTrip.*: every generated value comes back equal (by its kind's
 * equality: bit-exact for the built-in kinds) in one process, across two
 * processes over a channel (pipe and ring), and with two threads encoding and
 * decoding at once.
 */
#include "validate.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

/* One value through encode, decode, compare, release. 0, or -errno with the FAIL message set. */
static int round_trip(struct val_ctx *ctx, shmrig_pool *pool, const struct val_value *v, void *arg)
{
	(void)arg;
	struct shmrig_value out;
	char err[VAL_MSG_MAX / 2];
	void *frame;
	size_t len;
	int ret = val_encode(ctx, pool, v, &frame, &len);

	if (ret)
		return ret;
	ret = val_decode_equal(ctx, pool, v, frame, len, &out);
	free(frame);
	if (ret)
		return ret;
	ret = shmrig_value_release(&out);
	if (ret)
		val_fail(ctx, "value_release: %s", val_error(ret, err, sizeof(err)));
	return ret;
}

enum val_verdict val_check_roundtrip_inprocess(struct val_ctx *ctx)
{
	return val_each_value(ctx, round_trip, NULL);
}

/* ---- across processes ---- */

#define END_MESSAGE "E" /* no frame is one byte long */
#define CHANNEL_TIMEOUT_MS 30000

/* The decoding side's answer to each frame, and its last word. */
struct reply {
	int32_t status; /* 0 or -errno */
	uint32_t values;
	char text[VAL_MSG_MAX];
};

static void send_reply(shmrig_channel *ch, int status, uint32_t values, const char *text)
{
	struct reply r = { .status = status, .values = values };

	snprintf(r.text, sizeof(r.text), "%s", text);
	/* the consumer gives up with the channel: nothing to do if the producer is gone */
	(void)!shmrig_channel_send(ch, &r, offsetof(struct reply, text) + strlen(r.text) + 1,
				   CHANNEL_TIMEOUT_MS);
}

/*
 * The decoding process: walks the same sequence of values as the producer
 * (the generators are deterministic), decodes each frame it receives, compares
 * it with its own copy of the value, releases it and answers. Its pool must
 * end empty. Returns its exit status.
 */
static int consumer(struct val_ctx *ctx, shmrig_channel_pair *pair, uint64_t fingerprint)
{
	struct val_iter it = { .ctx = ctx };
	char err[VAL_MSG_MAX / 2];
	shmrig_channel *ch = NULL;
	shmrig_pool *pool = NULL;
	struct val_value v;
	int ret;

	val_child_detach(ctx);
	ctx->message[0] = '\0';
	ret = val_pool_open(ctx, 0, 0, &pool);
	if (!ret)
		ret = shmrig_channel_open(pair, 1, getppid(), pool, fingerprint, &ch);
	shmrig_channel_pair_free(pair);
	if (ret) {
		/* the producer's open times out and says so */
		fprintf(stderr, "shmrig-validate: decoding process: %s\n",
			val_error(ret, err, sizeof(err)));
		return 1;
	}
	for (;;) {
		struct shmrig_value out;
		void *msg;
		size_t len;

		ret = shmrig_channel_recv(ch, &msg, &len, CHANNEL_TIMEOUT_MS);
		if (ret) {
			snprintf(ctx->message, sizeof(ctx->message), "recv: %s",
				 val_error(ret, err, sizeof(err)));
			break;
		}
		if (len == 1) { /* END_MESSAGE */
			free(msg);
			break;
		}
		ret = val_next(&it, &v);
		if (ret) {
			if (ret > 0)
				snprintf(ctx->message, sizeof(ctx->message),
					 "a frame arrived after the last value");
			free(msg);
			break;
		}
		ret = val_decode_equal(ctx, pool, &v, msg, len, &out);
		free(msg);
		val_value_free(&v);
		if (!ret) {
			ret = shmrig_value_release(&out);
			if (ret)
				val_fail(ctx, "value_release: %s",
					 val_error(ret, err, sizeof(err)));
		}
		send_reply(ch, ret, ctx->values, ret ? ctx->message : "");
		if (ret)
			break;
		ctx->values++;
	}
	ret = ctx->message[0] ? -EBADMSG : 0;
	if (!ret && val_live_blocks(pool) != 0) {
		snprintf(ctx->message, sizeof(ctx->message),
			 "%llu blocks still live in the decoding process after every value was "
			 "released",
			 (unsigned long long)val_live_blocks(pool));
		ret = -SHMRIG_ELEAK;
	}
	send_reply(ch, ret, ctx->values, ctx->message[0] ? ctx->message : "done");
	shmrig_channel_close(ch);
	if (val_pool_close(pool) && !ret)
		return 3; /* a leak after the last answer: the producer sees the exit status */
	return 0;
}

/* Wait for the decoding process; how it ended in `how`. 0 if it exited 0. */
static int reap_consumer(pid_t pid, char *how, size_t len)
{
	int status;

	while (waitpid(pid, &status, 0) < 0)
		if (errno != EINTR) {
			snprintf(how, len, "waitpid: %s", strerror(errno));
			return -1;
		}
	if (WIFSIGNALED(status)) {
		snprintf(how, len, "the decoding process was killed by SIG%s (%s)",
			 sigabbrev_np(WTERMSIG(status)) ? sigabbrev_np(WTERMSIG(status)) : "?",
			 strsignal(WTERMSIG(status)));
		return -1;
	}
	if (WEXITSTATUS(status) == 3)
		snprintf(how, len, "the decoding process had live blocks at pool close");
	else
		snprintf(how, len, "the decoding process exited with status %d",
			 WEXITSTATUS(status));
	return WEXITSTATUS(status) ? -1 : 0;
}

/* The decoding process's answer: 0 or its status, its words in the FAIL message. */
static int recv_reply(struct val_ctx *ctx, shmrig_channel *ch, const char *backend)
{
	char err[VAL_MSG_MAX / 2];
	struct reply *reply;
	size_t len;
	int ret = shmrig_channel_recv(ch, (void **)&reply, &len, CHANNEL_TIMEOUT_MS);

	if (ret) {
		val_fail(ctx, "over %s: no answer from the decoding process: %s", backend,
			 val_error(ret, err, sizeof(err)));
		return ret;
	}
	if (len <= offsetof(struct reply, text) || len > sizeof(*reply)) {
		free(reply);
		val_fail(ctx, "over %s: an answer of %zu bytes from the decoding process", backend,
			 len);
		return -EPROTO;
	}
	ret = reply->status;
	if (ret)
		val_fail(ctx, "over %s, in the decoding process: %.*s", backend,
			 (int)(len - offsetof(struct reply, text)), reply->text);
	free(reply);
	return ret;
}

/* One backend: every value encoded here, sent, decoded there. */
static enum val_verdict cross_backend(struct val_ctx *ctx, const char *backend)
{
	struct shmrig_channel_opts opts = SHMRIG_SIZED(struct shmrig_channel_opts);
	uint64_t fingerprint = shmrig_registry_fingerprint(ctx->target->reg);
	char err[VAL_MSG_MAX / 2], name[96], how[256], why[VAL_MSG_MAX];
	struct val_iter it = { .ctx = ctx };
	shmrig_channel_pair *pair;
	shmrig_channel *ch = NULL;
	shmrig_pool *pool = NULL;
	struct val_value v;
	pid_t pid;
	int ret;

	opts.backend = backend;
	ret = val_pool_open(ctx, 0, 0, &pool);
	if (ret)
		return val_fail(ctx, "pool_open: %s", val_error(ret, err, sizeof(err)));
	ret = shmrig_channel_pair_create(&opts, &pair);
	if (ret)
		return val_fail(ctx, "%s: channel_pair_create: %s", backend,
				val_error(ret, err, sizeof(err)));
	fflush(NULL);
	pid = fork();
	if (pid < 0)
		return val_fail(ctx, "fork: %s", strerror(errno));
	if (pid == 0)
		_exit(consumer(ctx, pair, fingerprint));
	ret = shmrig_channel_open(pair, 0, pid, pool, fingerprint, &ch);
	shmrig_channel_pair_free(pair);
	if (ret) {
		val_fail(ctx, "%s: channel_open: %s", backend, val_error(ret, err, sizeof(err)));
		kill(pid, SIGKILL);
		reap_consumer(pid, how, sizeof(how));
		return VAL_FAIL;
	}
	while ((ret = val_next(&it, &v)) == 0) {
		void *frame;
		size_t len;

		val_at(ctx, "%s over %s", val_value_name(&v, name, sizeof(name)), backend);
		if (v.index % 50 == 0)
			val_progress(ctx, "%s: value %u of %u", backend, v.index, ctx->opt->values);
		ret = val_encode(ctx, pool, &v, &frame, &len);
		val_value_free(&v);
		if (!ret) {
			ret = shmrig_channel_send_frame(ch, frame, len, CHANNEL_TIMEOUT_MS);
			if (ret)
				val_fail(ctx, "%s over %s: send_frame: %s", name, backend,
					 val_error(ret, err, sizeof(err)));
			free(frame);
		}
		if (!ret)
			ret = recv_reply(ctx, ch, backend);
		if (ret)
			break;
		ctx->values++;
	}
	if (ret > 0) { /* every value went: the last word, with the decoder's accounting */
		ret = shmrig_channel_send(ch, END_MESSAGE, 1, CHANNEL_TIMEOUT_MS);
		if (ret)
			val_fail(ctx, "over %s: send: %s", backend,
				 val_error(ret, err, sizeof(err)));
		else
			ret = recv_reply(ctx, ch, backend);
	}
	/* a decoding process still waiting sees the end of the channel and exits */
	shmrig_channel_close(ch);
	if (reap_consumer(pid, how, sizeof(how))) {
		if (!ret)
			return val_fail(ctx, "over %s: %s", backend, how);
		if (strstr(how, "killed")) { /* the likely cause of what this side saw */
			snprintf(why, sizeof(why), "%s", ctx->message);
			return val_fail(ctx, "over %s: %s; %s", backend, how, why);
		}
	}
	if (ret)
		return VAL_FAIL;
	/* every block went to the decoding process, which freed them all */
	if (val_live_blocks(pool) != 0)
		return val_fail(ctx,
				"over %s: %llu blocks live in the encoding process after the "
				"decoding process released every value",
				backend, (unsigned long long)val_live_blocks(pool));
	return val_finish(ctx, &it, pool);
}

enum val_verdict val_check_roundtrip_crossprocess(struct val_ctx *ctx)
{
	static const char *const backends[] = { "pipe", "ring" };
	enum val_verdict verdict = VAL_PASS;

	for (size_t b = 0; b < sizeof(backends) / sizeof(backends[0]); b++) {
		verdict = cross_backend(ctx, backends[b]);
		if (verdict != VAL_PASS)
			return verdict;
	}
	return verdict;
}

/* ---- two threads ---- */

struct thread_arg {
	struct val_ctx ctx; /* a copy: its own message and count */
	shmrig_pool *pool;
	pthread_barrier_t *start;
	uint32_t first; /* where in the sequence this thread begins */
	int ret;
};

static void *thread_main(void *p)
{
	struct thread_arg *arg = p;
	struct val_ctx *ctx = &arg->ctx;
	uint32_t n = ctx->opt->values;
	char err[512];

	pthread_barrier_wait(arg->start);
	for (uint32_t k = 0; k < n && !arg->ret; k++) {
		struct val_value v;
		uint32_t index = (arg->first + k) % n;

		arg->ret = val_value_make(ctx->target, ctx->opt->seed, index, ctx->opt->max_bytes,
					  &v, err, sizeof(err));
		if (arg->ret) {
			val_fail(ctx, "%s", err);
			break;
		}
		if (v.accepted) {
			arg->ret = round_trip(ctx, arg->pool, &v, NULL);
			ctx->values++;
		}
		val_value_free(&v);
	}
	return NULL;
}

enum val_verdict val_check_roundtrip_threads(struct val_ctx *ctx)
{
	struct thread_arg args[2];
	pthread_barrier_t start;
	pthread_t threads[2];
	struct val_iter it = { .ctx = ctx };
	char err[VAL_MSG_MAX / 2];
	shmrig_pool *pool;
	int ret = val_pool_open(ctx, 0, 0, &pool);

	if (ret)
		return val_fail(ctx, "pool_open: %s", val_error(ret, err, sizeof(err)));
	pthread_barrier_init(&start, NULL, 2);
	/* both threads run the whole sequence, half of it apart: different sizes at once */
	for (int t = 0; t < 2; t++) {
		args[t] = (struct thread_arg){ .ctx = *ctx, .pool = pool, .start = &start };
		args[t].ctx.report_fd = -1;
		args[t].ctx.values = 0;
		args[t].first = t ? ctx->opt->values / 2 : 0;
		ret = pthread_create(&threads[t], NULL, thread_main, &args[t]);
		if (ret)
			return val_fail(ctx, "pthread_create: %s", strerror(ret));
	}
	val_at(ctx, "two threads, %u values each", ctx->opt->values);
	for (int t = 0; t < 2; t++)
		pthread_join(threads[t], NULL);
	pthread_barrier_destroy(&start);
	for (int t = 0; t < 2; t++)
		if (args[t].ret)
			return val_fail(ctx, "thread %d: %s", t, args[t].ctx.message);
	ctx->values = args[0].ctx.values + args[1].ctx.values;
	it.declined = 2 * ctx->opt->values - ctx->values;
	return val_finish(ctx, &it, pool);
}
