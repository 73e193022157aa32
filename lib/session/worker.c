/* SPDX-License-Identifier: MIT */
/*
 * session worker: the forked process. It opens its own pool and its end of
 * the channel, says READY, and serves CALL, PING and SHUTDOWN until told to
 * stop or until the caller is gone; a CALL goes to the handler it names. Its
 * exit code tells the caller how it ended (EXIT_OK, EXIT_LEAK, ...).
 */
#include "session/session_internal.h"
#include "transport/channel_internal.h"
#include "base/internal.h"

#include <shmrig/frame.h>

#include <errno.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

/* The session a worker serves: its handles are the parent's memory, and a
 * leak checker run at the worker's exit must find them reachable. */
static struct shmrig_session *worker_session;

struct worker {
	struct shmrig_session *sess;
	shmrig_pool *pool;
	shmrig_channel *ch;
	pid_t caller;
};

/*
 * The caller's signal handlers are the caller's: a test runner's SIGSEGV
 * handler, say, would longjmp into the caller's copy of its state. A crash in
 * a handler must end the worker, so every caught signal goes back to its
 * default action. Ignored signals stay ignored, as across exec.
 */
static void reset_signals(void)
{
	sigset_t none;

	for (int sig = 1; sig < NSIG; sig++) {
		struct sigaction old;

		if (sig == SIGKILL || sig == SIGSTOP || sigaction(sig, NULL, &old))
			continue;
		if (!(old.sa_flags & SA_SIGINFO) && old.sa_handler == SIG_IGN)
			continue;
		if (!(old.sa_flags & SA_SIGINFO) && old.sa_handler == SIG_DFL)
			continue;
		signal(sig, SIG_DFL);
	}
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
}

/*
 * The RESULT message for a response: encoded (copied into new blocks of our
 * pool) behind a header. 0, or an error with `why` saying what failed.
 */
static int build_result(struct worker *w, uint64_t id, const struct shmrig_value *response,
			void **msg, size_t *len, char *why, size_t whylen)
{
	struct msg_hdr hdr = { .magic = MSG_MAGIC, .type = MSG_RESULT, .id = id };
	void *frame;
	size_t frame_len;
	int ret;

	ret = shmrig_registry_encode(w->sess->reg, w->pool, response, &frame, &frame_len);
	if (ret) {
		snprintf(why, whylen, "encoding the response: %s", shmrig_last_error());
		return ret;
	}
	*msg = shmrig__session_msg_build(&hdr, frame, frame_len);
	if (!*msg) {
		(void)!shmrig_frame_discard(w->pool, frame, frame_len); /* best effort */
		free(frame);
		snprintf(why, whylen, "out of memory for the reply");
		return -ENOMEM;
	}
	free(frame);
	*len = sizeof(hdr) + frame_len;
	return 0;
}

/* Hand a RESULT's blocks to the caller, then send it. 0 or the channel's error. */
static int send_result(struct worker *w, void *msg, size_t len)
{
	void *frame = (char *)msg + sizeof(struct msg_hdr);
	size_t frame_len = len - sizeof(struct msg_hdr);
	int ret;

	/* From here on the blocks are the caller's, whether or not it lives to read them. */
	ret = shmrig_frame_transfer_peer(w->pool, frame, frame_len, shmrig__channel_peer_id(w->ch));
	if (ret) {
		/* the caller is gone: what we could not hand over is still ours;
		 * what was is not, and discard fails on those, rightly */
		(void)!shmrig_frame_discard(w->pool, frame, frame_len);
		ret = -EPIPE;
	} else {
		ret = shmrig_channel_send(w->ch, msg, len, -1);
	}
	free(msg);
	return ret;
}

/*
 * Serve one CALL: decode, run the handler, encode the response, release the
 * request, reply. The request's blocks are free before the reply leaves: a
 * caller holding the answer holds nothing else of the call. Returns 0 or the
 * channel's error (the caller is gone or the channel broke).
 */
static int serve_call(struct worker *w, const struct msg_hdr *hdr, const void *frame, size_t len)
{
	struct shmrig_session *sess = w->sess;
	struct shmrig_handler_scratch scratch = { NULL };
	struct shmrig_value request;
	struct shmrig_handler_call call;
	const struct handler *h;
	char why[ERROR_TEXT_MAX];
	void *msg = NULL;
	size_t msg_len = 0;
	int ret;

	if (hdr->handler >= sess->nhandlers) {
		/* best effort: -EPROTO is the answer */
		(void)!shmrig_frame_discard(w->pool, frame, len);
		snprintf(why, sizeof(why), "no handler number %u", hdr->handler);
		return shmrig__session_send_error(w->ch, hdr->id, -EPROTO, why);
	}
	h = &sess->handlers[hdr->handler];
	ret = shmrig_registry_decode(sess->reg, w->pool, frame, len, &request);
	if (ret) {
		snprintf(why, sizeof(why), "handler '%s': decoding the request: %s", h->name,
			 shmrig_last_error());
		return shmrig__session_send_error(w->ch, hdr->id, ret, why);
	}
	call = (struct shmrig_handler_call){
		.size = sizeof(struct shmrig_handler_call),
		.handler = h->name,
		.id = hdr->id,
		.arg = hdr->arg,
		.request = &request,
		.pool = w->pool,
		.registry = sess->reg,
		.scratch = &scratch,
	};
	/* a handler's failure must be told from one that left no words */
	shmrig__clear_error();
	ret = h->fn(h->ctx, &call);
	if (ret < 0) {
		snprintf(why, sizeof(why), "handler '%s': %s", h->name,
			 *shmrig_last_error() ? shmrig_last_error() : shmrig_strerror(ret));
	} else {
		char encode_why[ERROR_TEXT_MAX - 64];

		/* the response may view the request or the scratch: both live until now */
		ret = build_result(w, hdr->id, &call.response, &msg, &msg_len, encode_why,
				   sizeof(encode_why));
		if (ret)
			snprintf(why, sizeof(why), "handler '%s': %s", h->name, encode_why);
	}
	/* A block a release fails to free stays ours: counted at exit (EXIT_LEAK),
	 * and shutdown says -SHMRIG_ELEAK. The call's answer stands. */
	if (call.response.storage && call.response.storage != request.storage)
		(void)!shmrig_value_release(&call.response);
	(void)!shmrig_value_release(&request);
	shmrig__session_scratch_free(&scratch);
	if (ret)
		return shmrig__session_send_error(w->ch, hdr->id, ret, why);
	return send_result(w, msg, msg_len);
}

/* Serve until SHUTDOWN or until the caller is gone. Returns an exit code. */
static int serve(struct worker *w)
{
	for (;;) {
		struct msg_hdr hdr;
		void *msg;
		size_t len;
		int ret = shmrig_channel_recv(w->ch, &msg, &len, -1);

		if (ret == -EPIPE)
			return EXIT_OK; /* the caller closed its end, or died: nobody to serve */
		if (ret)
			return EXIT_PROTO;
		if (shmrig__session_msg_check(msg, len, &hdr)) {
			free(msg);
			return EXIT_PROTO;
		}
		switch (hdr.type) {
		case MSG_CALL:
			ret = serve_call(w, &hdr, (char *)msg + sizeof(hdr), len - sizeof(hdr));
			break;
		case MSG_PING:
			ret = shmrig__session_send_bare(w->ch, MSG_PONG, hdr.id, -1);
			break;
		case MSG_SHUTDOWN:
			free(msg);
			ret = shmrig__session_send_bare(w->ch, MSG_BYE, hdr.id, -1);
			return ret && ret != -EPIPE ? EXIT_PROTO : EXIT_OK;
		default:
			ret = -EPROTO;
		}
		free(msg);
		if (ret == -EPIPE)
			return EXIT_OK;
		if (ret)
			return EXIT_PROTO;
	}
}

static void count_own(void *arg, const struct shmrig_block_info *info)
{
	uint64_t *count = arg;

	if (info->owner == getpid())
		(*count)++;
}

_Noreturn void shmrig__session_worker_main(struct shmrig_session *sess, shmrig_channel_pair *pair,
					   pid_t caller, uint64_t fingerprint,
					   const struct shmrig_pool_opts *pool_opts)
{
	struct worker w = { .sess = sess, .caller = caller };
	uint64_t own = 0;
	int pool_ret, ret, code;
	bool leaked;

	worker_session = sess;
	reset_signals();
	pool_ret = shmrig_pool_open(pool_opts, &w.pool);
	/* Without a pool the channel still carries the words of why. */
	ret = shmrig_channel_open(pair, 1, caller, pool_ret ? NULL : w.pool, fingerprint, &w.ch);
	shmrig_channel_pair_free(pair);
	if (ret) {
		if (!pool_ret) /* exiting with EXIT_SETUP: nothing was allocated */
			(void)!shmrig_pool_close(w.pool);
		_exit(EXIT_SETUP);
	}
	if (pool_ret) {
		char why[ERROR_TEXT_MAX];

		snprintf(why, sizeof(why), "opening its pool: %s", shmrig_last_error());
		shmrig__session_send_error(w.ch, 0, pool_ret, why);
		shmrig_channel_close(w.ch);
		_exit(EXIT_SETUP);
	}
	code = shmrig__session_send_ready(w.ch) ? EXIT_PROTO : serve(&w);
	shmrig_channel_close(w.ch);
	/* Blocks the caller holds (responses) are the caller's to release; ours
	 * still live now are leaks. pool_close finds the same ones
	 * (-SHMRIG_ELEAK): its answer stands for a count that failed (-ENOMEM). */
	(void)!shmrig_pool_for_each_live(w.pool, count_own, &own);
	leaked = shmrig_pool_close(w.pool) == -SHMRIG_ELEAK;
	if (!code && (own || leaked))
		code = EXIT_LEAK;
	/* what handlers printed; the caller flushed its own buffers before fork */
	fflush(NULL);
	_exit(code);
}
