/* SPDX-License-Identifier: MIT */
/*
 * session worker: the loop that serves CALL, PING and SHUTDOWN until told to
 * stop or until the caller is gone; a CALL goes to the handler it names. Two
 * kinds of worker share it:
 *   - the forked process: it opens its own pool and its end of the channel,
 *     says READY, serves, and exits with a code that tells the caller how it
 *     ended (EXIT_OK, EXIT_LEAK, ...);
 *   - shmrig_session_serve(): this process, its pool, one caller accepted on a
 *     listener (another process, maybe another host): it says READY_REMOTE,
 *     and frames travel flat both ways (session_internal.h).
 */
#include "session/session_internal.h"
#include "codec/flat.h"
#include "transport/channel_internal.h"
#include "base/internal.h"

#include <shmrig/frame.h>

#include <errno.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* The session a worker serves: its handles are the parent's memory, and a
 * leak checker run at the worker's exit must find them reachable. */
static struct shmrig_session *worker_session;

struct worker {
	struct shmrig_session *sess;
	shmrig_pool *pool;
	shmrig_channel *ch;
	pid_t caller;
	bool remote; /* a served caller: frames flat, nothing handed over */
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
 * A served caller's RESULT: the frame flattened behind the header (its blocks
 * released by the flatten: nothing of ours stays with the reply). Takes the
 * frame (freed here); 0, or an error with `why`, the blocks freed.
 */
static int build_flat_result(struct worker *w, const struct msg_hdr *hdr, void *frame,
			     size_t frame_len, void **msg, size_t *len, char *why, size_t whylen)
{
	void *flat;
	size_t flat_len;
	int ret = shmrig_frame_flatten(w->pool, frame, frame_len, &flat, &flat_len);

	if (ret) {
		snprintf(why, whylen, "flattening the response: %s", shmrig_last_error());
		(void)!shmrig_frame_discard(w->pool, frame, frame_len); /* best effort */
		free(frame);
		return ret;
	}
	free(frame);
	if (flat_len > SHMRIG_CHANNEL_MAX_MSG - sizeof(*hdr)) {
		snprintf(why, whylen, "the response is %zu bytes flat, over the channel's %zu",
			 flat_len, SHMRIG_CHANNEL_MAX_MSG - sizeof(*hdr));
		free(flat);
		return -EMSGSIZE;
	}
	*msg = shmrig__session_msg_build(hdr, flat, flat_len);
	free(flat);
	if (!*msg) {
		snprintf(why, whylen, "out of memory for the reply");
		return -ENOMEM;
	}
	*len = sizeof(*hdr) + flat_len;
	return 0;
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

	if (w->remote)
		ret = shmrig_registry_encode(w->sess->reg, w->pool, response, &frame, &frame_len);
	else /* a small value goes back flat (MSG_FLAT), a larger one (-EAGAIN) by hand-over */
		ret = shmrig__session_encode(w->sess, w->pool, response, &hdr, msg, len, &frame,
					     &frame_len);
	if (ret && (w->remote || ret != -EAGAIN)) {
		snprintf(why, whylen, "encoding the response: %s", shmrig_last_error());
		return ret;
	}
	if (w->remote)
		return build_flat_result(w, &hdr, frame, frame_len, msg, len, why, whylen);
	if (!ret)
		return 0;
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

/*
 * The RESULT of a pass-back handler: the request's own frame, its blocks
 * retained (the decode holds them as leases; their release after this leaves
 * them live, ours, for send_result to hand back). Only for a forked caller and
 * a request decoded in place, every block a lease (a copied-out or temporary
 * buffer was freed at decode): else -EAGAIN, nothing done, and the response is
 * encoded as any other. 0, -EAGAIN, or -ENOMEM (nothing retained).
 */
static int build_pass_back(struct worker *w, uint64_t id, const void *frame, size_t len,
			   const struct shmrig_value *request, void **msg, size_t *msg_len)
{
	struct msg_hdr hdr = { .magic = MSG_MAGIC, .type = MSG_RESULT, .id = id };
	struct shmrig_frame f;
	uint32_t held = 0;
	int ret;

	/* no lease first: a flat request (no block) is not parsed as a frame,
	 * which it is not (its refs name nothing: parse would fail, in words) */
	if (w->remote || !shmrig_value_leases(request) || shmrig_frame_parse(frame, len, &f) ||
	    shmrig_value_leases(request) != f.nbuffers)
		return -EAGAIN;
	*msg = shmrig__session_msg_build(&hdr, frame, len);
	if (!*msg)
		return -ENOMEM;
	for (ret = 0; held < f.nbuffers; held++) {
		ret = shmrig_pool_retain(w->pool, &f.buffers[held]);
		if (ret)
			break;
	}
	if (ret) {
		while (held)
			(void)!shmrig_pool_free(w->pool, &f.buffers[--held]);
		free(*msg);
		*msg = NULL;
		return -EAGAIN;
	}
	*msg_len = sizeof(hdr) + len;
	return 0;
}

/* Hand a RESULT's blocks to the caller, then send it. 0 or the channel's error. */
static int send_result(struct worker *w, void *msg, size_t len)
{
	void *frame = (char *)msg + sizeof(struct msg_hdr);
	size_t frame_len = len - sizeof(struct msg_hdr);
	int ret;

	if (w->remote || (((const struct msg_hdr *)msg)->flags & MSG_FLAT)) {
		/* flat: the blocks are gone already */
		ret = shmrig_channel_send(w->ch, msg, len, -1);
		shmrig__session_msg_free(w->sess, msg);
		return ret;
	}
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
	shmrig__session_msg_free(w->sess, msg);
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
	void *msg = NULL, *landed = NULL;
	size_t msg_len = 0;
	int ret;

	if (hdr->handler >= sess->nhandlers) {
		/* best effort: -EPROTO is the answer (a flat frame holds no block) */
		if (!w->remote)
			(void)!shmrig_frame_discard(w->pool, frame, len);
		snprintf(why, sizeof(why), "no handler number %u", hdr->handler);
		return shmrig__session_send_error(w->ch, hdr->id, -EPROTO, why);
	}
	h = &sess->handlers[hdr->handler];
	if (hdr->flags & MSG_FLAT) {
		/* the bytes are in the message: no block */
		ret = shmrig__registry_decode_flat(sess->reg, w->pool, frame, len, &request);
	} else {
		if (w->remote) {
			/* into blocks of our pool, handed to us: decoded as any frame */
			ret = shmrig_frame_unflatten(w->pool, frame, len, &landed, &len);
			if (ret == -EBADMSG || ret == -EINVAL) {
				snprintf(why, sizeof(why), "%s", shmrig_last_error());
				return shmrig__fail(-EPROTO,
						    "the caller sent a malformed request: %s", why);
			}
			if (ret) {
				snprintf(why, sizeof(why),
					 "handler '%s': taking the request in: %s", h->name,
					 shmrig_last_error());
				return shmrig__session_send_error(w->ch, hdr->id, ret, why);
			}
			frame = landed;
		}
		ret = shmrig_registry_decode(sess->reg, w->pool, frame, len, &request);
		free(landed);
	}
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

		ret = h->pass_back ?
			      build_pass_back(w, hdr->id, frame, len, &request, &msg, &msg_len) :
			      -EAGAIN;
		/* the response may view the request or the scratch: both live until now */
		if (ret == -EAGAIN)
			ret = build_result(w, hdr->id, &call.response, &msg, &msg_len, encode_why,
					   sizeof(encode_why));
		else if (ret)
			snprintf(encode_why, sizeof(encode_why), "out of memory for the reply");
		if (ret)
			snprintf(why, sizeof(why), "handler '%s': %s", h->name, encode_why);
	}
	/* A block a release fails to free stays ours: counted at exit (EXIT_LEAK),
	 * and shutdown says -SHMRIG_ELEAK. The call's answer stands. */
	if (call.response.storage && call.response.storage != request.storage)
		(void)!shmrig_value_release(&call.response);
	(void)!shmrig_value_release(&request);
	shmrig__session_scratch_free(&scratch);
	sess->stats.calls++;
	if (ret)
		return shmrig__session_send_error(w->ch, hdr->id, ret, why);
	return send_result(w, msg, msg_len);
}

/* The next message (a forked caller's may be in sess->recv_buf: let go of it
 * with shmrig__session_msg_free). A served caller is waited for in slices,
 * each ending with a look at the stop flag (shmrig_session_serve_stop): -EINTR
 * once it is set. */
static int next_message(struct worker *w, void **msg, size_t *len)
{
	if (!w->remote) {
		int64_t start = -1;

		return shmrig__channel_recv_from(w->ch, w->sess->recv_buf,
						 sizeof(w->sess->recv_buf), msg, len, &start, -1);
	}
	for (;;) {
		int ret;

		if (w->sess->stop_serving)
			return shmrig__fail(-EINTR, "asked to stop (shmrig_session_serve_stop)");
		ret = shmrig_channel_recv(w->ch, msg, len, SERVE_SLICE_MS);
		if (ret != -ETIMEDOUT)
			return ret;
	}
}

/*
 * Serve until SHUTDOWN (0, after BYE) or until the caller is gone (-EPIPE).
 * -EPROTO: the caller's messages made no sense; -EINTR: asked to stop (served
 * callers only); other codes: the channel failed (-EIO, -ENOMEM...). The
 * message says which.
 */
static int serve(struct worker *w)
{
	for (;;) {
		struct msg_hdr hdr;
		void *msg;
		size_t len;
		int ret = next_message(w, &msg, &len);

		if (ret == -EPIPE || ret == -EINTR)
			return ret; /* the caller closed its end, or died: nobody to serve */
		if (ret == -EBADMSG || ret == -EINVAL) {
			/* a corrupt stream, or a frame sent to an end with no pool */
			char why[ERROR_TEXT_MAX];

			snprintf(why, sizeof(why), "%s", shmrig_last_error());
			return shmrig__fail(-EPROTO, "the caller broke the channel: %s", why);
		}
		if (ret)
			return ret;
		if (shmrig__session_msg_check(msg, len, &hdr)) {
			shmrig__session_msg_free(w->sess, msg);
			return -EPROTO; /* msg_check said why */
		}
		switch (hdr.type) {
		case MSG_CALL:
			ret = serve_call(w, &hdr, (char *)msg + sizeof(hdr), len - sizeof(hdr));
			break;
		case MSG_PING:
			ret = shmrig__session_send_bare(w->ch, MSG_PONG, hdr.id, -1);
			break;
		case MSG_SHUTDOWN:
			shmrig__session_msg_free(w->sess, msg);
			ret = shmrig__session_send_bare(w->ch, MSG_BYE, hdr.id, -1);
			return ret && ret != -EPIPE ? ret : 0;
		default:
			ret = shmrig__fail(-EPROTO, "the caller sent a message of type %u",
					   hdr.type);
		}
		shmrig__session_msg_free(w->sess, msg);
		if (ret)
			return ret;
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
	if (shmrig__session_send_ready(w.ch)) {
		code = EXIT_PROTO;
	} else {
		ret = serve(&w);
		/* the caller closed its end, or died: nobody to serve */
		code = ret == 0 || ret == -EPIPE ? EXIT_OK : EXIT_PROTO;
	}
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

/* ---- a caller at an address: shmrig_session_serve ---- */

/* Accept one caller, in slices that each end with a look at the stop flag. */
static int accept_caller(struct shmrig_session *sess, shmrig_channel_listener *l,
			 uint64_t fingerprint, int timeout_ms, shmrig_channel **ch)
{
	int64_t start = shmrig__now_ms();

	for (;;) {
		int left = shmrig__remaining_ms(start, timeout_ms);
		int slice = left < 0 || left > SERVE_SLICE_MS ? SERVE_SLICE_MS : left, ret;

		if (sess->stop_serving)
			return shmrig__fail(-EINTR,
					    "session_serve: asked to stop (shmrig_session_serve_stop)");
		/* no pool: one would take frames sent with send_frame, which the
		 * protocol never does (session_internal.h) */
		ret = shmrig_channel_accept(l, NULL, fingerprint, slice, ch);
		if (ret != -ETIMEDOUT)
			return ret;
		if (shmrig__remaining_ms(start, timeout_ms) == 0)
			return shmrig__fail(-ETIMEDOUT,
					    "session_serve: no caller came within %d ms",
					    timeout_ms);
	}
}

int shmrig_session_serve(shmrig_session *sess, shmrig_channel_listener *l, int accept_timeout_ms)
{
	struct worker w = { .sess = sess, .remote = true };
	char why[ERROR_TEXT_MAX];
	int ret;

	if (!sess || !l)
		return shmrig__fail(-EINVAL, "session_serve: NULL session or listener");
	if (SHMRIG_UNLIKELY(sess->fork_epoch != shmrig__fork_epoch()))
		return shmrig__fail(-SHMRIG_EFORK,
				    "session_serve: the session was inherited through fork: it "
				    "belongs to the process that created it");
	if (sess->address)
		return shmrig__fail(-EINVAL,
				    "session_serve: this session calls the worker at %s; a session "
				    "that serves has no address",
				    sess->address);
	if (!sess->nhandlers)
		return shmrig__fail(-EINVAL,
				    "session_serve: no handlers registered: nothing to serve");
	w.pool = sess->pool;
	ret = accept_caller(sess, l, shmrig_registry_fingerprint(sess->reg), accept_timeout_ms,
			    &w.ch);
	if (ret == -EINTR)
		sess->stop_serving = 0;
	if (ret)
		return ret;
	ret = shmrig__session_send_ready_remote(w.ch, sess);
	if (!ret)
		ret = serve(&w);
	snprintf(why, sizeof(why), "%s", ret ? shmrig_last_error() : "");
	/* the caller's recv sees -EPIPE after what we sent */
	shmrig_channel_close(w.ch);
	if (ret == -EINTR)
		sess->stop_serving = 0;
	if (ret == -EPIPE)
		return shmrig__fail(-EPIPE, "session_serve: the caller went away: %s", why);
	if (ret)
		return shmrig__fail(ret, "session_serve: %s (the connection is dropped)", why);
	return 0;
}

void shmrig_session_serve_stop(shmrig_session *sess)
{
	if (sess)
		sess->stop_serving = 1;
}
