/* SPDX-License-Identifier: MIT */
/*
 * session: a worker that serves named handlers over a channel, forked or at an
 * address. This file is the caller's side: the handle, handler registration,
 * start (fork, or connect), call, ping, shutdown, stats, and the end of a
 * worker (a forked one: wait for it, free the replies it sent, reap its
 * blocks, remove its segments; one at an address: close the connection).
 * session_internal.h describes the messages and who owns the blocks;
 * worker.c is the worker.
 */
#include "session/session_internal.h"
#include "codec/flat.h"
#include "transport/channel_internal.h"
#include "base/internal.h"
#include "os/prim.h"

#include <shmrig/frame.h>
#include <shmrig/session.h>

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* How long a worker whose channel closed may take to exit before it is killed. */
#define EXIT_GRACE_MS 5000

/* ---- small pieces ---- */

static int check_session(const struct shmrig_session *sess)
{
	if (!sess)
		return shmrig__fail(-EINVAL, "session is NULL");
	if (SHMRIG_UNLIKELY(sess->fork_epoch != shmrig__fork_epoch()))
		return shmrig__fail(-SHMRIG_EFORK,
				    "session handle was inherited through fork: it belongs to "
				    "the process that created it");
	return 0;
}

static int effective_timeout(const struct shmrig_session *sess, int timeout_ms)
{
	return timeout_ms == 0 ? sess->call_timeout_ms : timeout_ms;
}

/* Write "'a', 'b', ..." into buf: the handlers there are, for error messages. */
static const char *handler_list(const struct shmrig_session *sess, char *buf, size_t len)
{
	size_t used = 0;

	snprintf(buf, len, "none");
	for (uint32_t i = 0; i < sess->nhandlers && used < len; i++)
		used += (size_t)snprintf(buf + used, len - used, "%s'%s'", i ? ", " : "",
					 sess->handlers[i].name);
	return buf;
}

static int find_handler(const struct shmrig_session *sess, const char *name)
{
	for (uint32_t i = 0; i < sess->nhandlers; i++)
		if (strcmp(sess->handlers[i].name, name) == 0)
			return (int)i;
	return -1;
}

/* The connected worker's handlers (its READY_REMOTE), in the same words. */
static const char *remote_list(const struct shmrig_session *sess, char *buf, size_t len)
{
	size_t used = 0;

	snprintf(buf, len, "none");
	for (uint32_t i = 0; i < sess->nremote && used < len; i++)
		used += (size_t)snprintf(buf + used, len - used, "%s'%s'", i ? ", " : "",
					 sess->remote_names[i]);
	return buf;
}

static int find_remote(const struct shmrig_session *sess, const char *name)
{
	for (uint32_t i = 0; i < sess->nremote; i++)
		if (strcmp(sess->remote_names[i], name) == 0)
			return (int)i;
	return -1;
}

/* "worker 1234", or "the worker at 10.0.0.1:7000": who a message is about. */
static const char *worker_words(const struct shmrig_session *sess, char *buf, size_t len)
{
	if (sess->address)
		snprintf(buf, len, "the worker at %s", sess->address);
	else
		snprintf(buf, len, "worker %d", (int)sess->worker);
	return buf;
}

int shmrig_session_handler(shmrig_session *sess, const char *name, shmrig_handler_fn fn, void *ctx)
{
	int ret = check_session(sess);

	if (ret)
		return ret;
	if (!shmrig__valid_name(name, HANDLER_NAME_MAX) || !fn)
		return shmrig__fail(-EINVAL,
				    "session_handler: the name must be 1..%d of [A-Za-z0-9_.-], "
				    "and fn not NULL",
				    HANDLER_NAME_MAX);
	if (sess->state == STATE_RUNNING) {
		char who[ADDRESS_MAX + 32];

		return shmrig__fail(-EBUSY,
				    "session_handler '%s': %s is running; register before it "
				    "starts",
				    name, worker_words(sess, who, sizeof(who)));
	}
	if (find_handler(sess, name) >= 0)
		return shmrig__fail(-EEXIST, "session_handler: '%s' is registered already", name);
	if (sess->nhandlers == SHMRIG_SESSION_MAX_HANDLERS)
		return shmrig__fail(-ENOSPC, "session_handler '%s': %d handlers is the limit", name,
				    SHMRIG_SESSION_MAX_HANDLERS);
	if (sess->nhandlers == sess->cap) {
		uint32_t cap = sess->cap ? sess->cap * 2 : 8;
		struct handler *grown = realloc(sess->handlers, cap * sizeof(*grown));

		if (!grown)
			return shmrig__fail(-ENOMEM, "session_handler: out of memory");
		sess->handlers = grown;
		sess->cap = cap;
	}
	snprintf(sess->handlers[sess->nhandlers].name, sizeof(sess->handlers[0].name), "%s", name);
	sess->handlers[sess->nhandlers].fn = fn;
	sess->handlers[sess->nhandlers].ctx = ctx;
	sess->handlers[sess->nhandlers].pass_back = false;
	sess->nhandlers++;
	return 0;
}

/* ---- the caller: the worker's end ---- */

/*
 * Wait for the worker to exit, at most timeout_ms (< 0: as long as it takes).
 * 0 with *status set, -ETIMEDOUT, or -ECHILD (it is not our child any more:
 * SIGCHLD ignored, or someone else waited for it).
 */
static int wait_exit(pid_t pid, int timeout_ms, int *status)
{
	int64_t start = shmrig__now_ms();
	/* A pidfd turns "wait with a timeout" into a poll. Without one (old
	 * kernels, valgrind before 3.20), poll the exit status every millisecond. */
	static bool no_pidfd; /* asked once: valgrind warns at every unknown syscall */
	int pidfd = -1, ret;

	if (!no_pidfd) {
		pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
		if (pidfd < 0 && errno == ENOSYS)
			no_pidfd = true;
	}

	for (;;) {
		pid_t done = waitpid(pid, status, WNOHANG);
		int left;

		if (done == pid) {
			ret = 0;
			break;
		}
		if (done < 0 && errno != EINTR) {
			ret = -errno;
			break;
		}
		left = shmrig__remaining_ms(start, timeout_ms);
		if (left == 0) {
			ret = -ETIMEDOUT;
			break;
		}
		if (pidfd >= 0) {
			struct pollfd pfd = { .fd = pidfd, .events = POLLIN };

			poll(&pfd, 1, left);
		} else {
			struct timespec tick = { 0, 1000000 };

			nanosleep(&tick, NULL);
		}
	}
	if (pidfd >= 0)
		close(pidfd);
	return ret;
}

/* "was killed by signal 9 (Killed)", "exited with status 4 (...)". */
static void describe_exit(int status, bool known, char *buf, size_t len)
{
	if (!known) {
		snprintf(buf, len, "ended (its exit status was collected elsewhere)");
	} else if (WIFSIGNALED(status)) {
		snprintf(buf, len, "was killed by signal %d (%s)", WTERMSIG(status),
			 strsignal(WTERMSIG(status)));
	} else if (WIFEXITED(status)) {
		int code = WEXITSTATUS(status);

		snprintf(buf, len, "exited with status %d%s", code,
			 code == EXIT_OK    ? "" :
			 code == EXIT_LEAK  ? " (blocks of its own were live at its close)" :
			 code == EXIT_SETUP ? " (it could not open its pool or channel)" :
			 code == EXIT_PROTO ? " (its channel failed)" :
					      "");
	} else {
		snprintf(buf, len, "ended with wait status 0x%x", (unsigned)status);
	}
}

struct dead_segments {
	const char *prefix;
	shmrig__procid id;
	char (*names)[SHMRIG_NAME_MAX];
	size_t count;
	size_t cap;
};

static void collect_dead(void *arg, const char *name)
{
	struct dead_segments *dead = arg;
	uint64_t start;
	pid_t pid;

	if (shmrig_segment_parse_name(dead->prefix, name, &pid, &start) ||
	    shmrig__procid_make(pid, start) != dead->id)
		return;
	if (dead->count == dead->cap) {
		size_t cap = dead->cap ? dead->cap * 2 : 16;
		char(*grown)[SHMRIG_NAME_MAX] = realloc(dead->names, cap * sizeof(*grown));

		if (!grown)
			return; /* left for shmrig_pool_sweep() */
		dead->names = grown;
		dead->cap = cap;
	}
	snprintf(dead->names[dead->count++], SHMRIG_NAME_MAX, "%s", name);
}

/*
 * Remove the segments a dead worker created (its pool could not). Nothing of
 * ours needs their names any more: replies in flight were drained, and what
 * we still view of them is mapped. Named by pid and start time, so a new
 * process that reused the pid is not touched. Returns how many.
 */
static int remove_segments_of(struct shmrig_session *sess, shmrig__procid id)
{
	struct dead_segments dead = { .prefix = sess->prefix, .id = id };
	int removed = 0;

	if (!id)
		return 0; /* it died before READY: it had created nothing */
	/* a scan that fails removes what it found: the rest is left for shmrig_pool_sweep() */
	(void)!shmrig_segment_list(sess->prefix, collect_dead, &dead);
	for (size_t i = 0; i < dead.count; i++)
		if (shmrig_segment_unlink_name(sess->prefix, dead.names[i]) == 0)
			removed++;
	free(dead.names);
	return removed;
}

/* Free the blocks of a reply nobody waits for (they were handed to us). */
static void discard_reply(struct shmrig_session *sess, const struct msg_hdr *hdr, void *msg,
			  size_t len)
{
	/* best effort: nobody to tell; what stays ours is reported at pool_close.
	 * A remote worker's RESULT is flat: bytes, no block. */
	if (hdr->type == MSG_RESULT && !sess->address && !(hdr->flags & MSG_FLAT))
		(void)!shmrig_frame_discard(sess->pool, (char *)msg + sizeof(*hdr),
					    len - sizeof(*hdr));
	shmrig__session_msg_free(sess, msg);
}

/* Discard the replies the worker sent until its end of the channel is closed
 * (or the time is out: 0, what has come): their blocks are ours. */
static void drain_replies(struct shmrig_session *sess, int64_t start, int timeout_ms)
{
	void *msg;
	size_t got;

	while (shmrig_channel_recv(sess->ch, &msg, &got,
				   timeout_ms ? shmrig__remaining_ms(start, timeout_ms) : 0) == 0) {
		struct msg_hdr hdr;

		if (shmrig__session_msg_check(msg, got, &hdr) == 0)
			discard_reply(sess, &hdr, msg, got);
		else
			free(msg);
	}
}

enum end_how {
	END_EXITING, /* its channel closed, or it said BYE: it is on its way out */
	END_KILL,    /* kill it first */
};

/*
 * The worker is gone or must go: kill it if asked, wait for it (no zombie),
 * free the blocks of the replies it had sent, close the channel, reap the
 * blocks it owned, and remove the segments it leaves behind. `how_ended`
 * gets the words for its end; returns its wait status (-1 if unknown).
 */
static int end_worker(struct shmrig_session *sess, enum end_how how, char *how_ended, size_t len,
		      int *reaped_out)
{
	pid_t pid = sess->worker;
	int status = -1, ret, reaped;
	bool known;

	int64_t start = shmrig__now_ms();

	if (how == END_KILL) {
		kill(pid, SIGKILL);
	} else if (sess->ch) {
		/* Read up to its end of the channel, then close ours, while it
		 * exits: a backend whose close waits until its last words are
		 * read and acknowledged ("ucx": its BYE, whose ack goes out as
		 * our end progresses) would otherwise hold it here until one
		 * of the two timeouts. */
		drain_replies(sess, start, EXIT_GRACE_MS);
		shmrig_channel_close(sess->ch);
		sess->ch = NULL;
	}
	ret = wait_exit(pid, how == END_KILL ? -1 : shmrig__remaining_ms(start, EXIT_GRACE_MS),
			&status);
	if (ret == -ETIMEDOUT) {
		kill(pid, SIGKILL);
		ret = wait_exit(pid, -1, &status);
	}
	known = ret == 0;
	describe_exit(status, known, how_ended, len);
	if (sess->ch) {
		drain_replies(sess, start, 0);
		shmrig_channel_close(sess->ch);
		sess->ch = NULL;
	}
	/* requests in flight to it, blocks it held, its cached blocks in our arenas */
	reaped = shmrig_pool_reap(sess->pool);
	if (reaped > 0)
		sess->stats.blocks_reaped += (uint64_t)reaped;
	*reaped_out = reaped > 0 ? reaped : 0;
	if (!known || !WIFEXITED(status) || WEXITSTATUS(status) != EXIT_OK)
		sess->stats.segments_removed += (uint64_t)remove_segments_of(sess, sess->worker_id);
	snprintf(sess->last_end, sizeof(sess->last_end), "worker %d %s", (int)pid, how_ended);
	sess->worker = 0;
	sess->worker_id = 0;
	return known ? status : -1;
}

/* What we asked the worker, put in words only when something goes wrong. */
struct request {
	const char *kind;    /* "call", "ping", "shutdown", "its start" */
	uint64_t id;         /* 0: no id to name */
	const char *handler; /* a call's, else NULL */
};

static const char *request_words(const struct request *r, char *buf, size_t len)
{
	if (r->handler)
		snprintf(buf, len, "%s %llu ('%s')", r->kind, (unsigned long long)r->id,
			 r->handler);
	else if (r->id)
		snprintf(buf, len, "%s %llu", r->kind, (unsigned long long)r->id);
	else
		snprintf(buf, len, "%s", r->kind);
	return buf;
}

/* A worker at an address is gone, must go, or said BYE (then `state` is
 * STATE_IDLE, else STATE_DEAD): close the connection (nothing was handed
 * over, nothing to reap) and forget its handlers. */
static void end_remote(struct shmrig_session *sess, const char *how, enum state state)
{
	shmrig_channel_close(sess->ch);
	sess->ch = NULL;
	free(sess->remote_names);
	sess->remote_names = NULL;
	sess->nremote = 0;
	snprintf(sess->last_end, sizeof(sess->last_end), "the worker at %s: %s", sess->address,
		 how);
	sess->state = state;
	if (state == STATE_DEAD)
		sess->stats.deaths++;
}

/* The worker died while we talked to it: end it and say so. Returns -EPIPE. */
static int lost_worker(struct shmrig_session *sess, const struct request *r)
{
	char how[128], during[80];
	pid_t pid = sess->worker;
	int reaped;

	if (sess->address) {
		char why[ERROR_TEXT_MAX];

		snprintf(why, sizeof(why), "connection lost during %s (%s)",
			 request_words(r, during, sizeof(during)), shmrig_last_error());
		end_remote(sess, why, STATE_DEAD);
		return shmrig__fail(-EPIPE, "session: %s (restart the session to reconnect)",
				    sess->last_end);
	}

	end_worker(sess, END_EXITING, how, sizeof(how), &reaped);
	sess->state = STATE_DEAD;
	sess->stats.deaths++;
	return shmrig__fail(-EPIPE,
			    "session: worker %d %s during %s; %d block%s it held reaped "
			    "(restart the session)",
			    (int)pid, how, request_words(r, during, sizeof(during)), reaped,
			    reaped == 1 ? "" : "s");
}

/* The worker cannot be trusted or waited for any longer: kill it. Returns err
 * with `why` and how it ended. */
static int kill_worker(struct shmrig_session *sess, int err, const char *why)
{
	char how[128], words[ERROR_TEXT_MAX];
	pid_t pid = sess->worker;
	int reaped;

	snprintf(words, sizeof(words), "%s", why);
	if (sess->address) {
		char ended[ERROR_TEXT_MAX + 64];

		snprintf(ended, sizeof(ended), "%s, so the connection was dropped", words);
		end_remote(sess, ended, STATE_DEAD);
		return shmrig__fail(err, "session: %s (restart the session to reconnect)",
				    sess->last_end);
	}
	end_worker(sess, END_KILL, how, sizeof(how), &reaped);
	sess->state = STATE_DEAD;
	sess->stats.deaths++;
	return shmrig__fail(err,
			    "session: worker %d %s, so it was killed: it %s; %d block%s it held "
			    "reaped (restart the session)",
			    (int)pid, words, how, reaped, reaped == 1 ? "" : "s");
}

/* Send a request. A request the worker may not have received whole ends it:
 * whatever blocks were handed to it then come back through reap. */
static int send_request(struct shmrig_session *sess, const void *msg, size_t len, int64_t *start,
			int timeout_ms, const struct request *r)
{
	char why[256], what[80];
	int ret = shmrig__channel_sendv_from(sess->ch, &msg, &len, 1, start, timeout_ms);

	if (!ret)
		return 0;
	if (ret == -EPIPE)
		return lost_worker(sess, r);
	snprintf(why, sizeof(why), "did not take %s (%s)", request_words(r, what, sizeof(what)),
		 shmrig_last_error());
	return kill_worker(sess, ret, why);
}

/*
 * Wait for the reply to request `id`, discarding late replies to earlier
 * ones. On success *msg (let go of it with shmrig__session_msg_free: it may
 * be in sess->recv_buf), *len and *hdr are the reply, whose type is one of
 * `types` (a bit per type).
 */
static int await_reply(struct shmrig_session *sess, uint64_t id, uint32_t types, int64_t *start,
		       int timeout_ms, const struct request *r, void **msg, size_t *len,
		       struct msg_hdr *hdr)
{
	char what[80];

	for (;;) {
		int ret = shmrig__channel_recv_from(sess->ch, sess->recv_buf,
						    sizeof(sess->recv_buf), msg, len, start,
						    timeout_ms);

		if (ret == -ETIMEDOUT) {
			char who[ADDRESS_MAX + 32];

			sess->stats.timeouts++;
			return shmrig__fail(-ETIMEDOUT,
					    "session: %s did not answer %s within %d ms",
					    worker_words(sess, who, sizeof(who)),
					    request_words(r, what, sizeof(what)), timeout_ms);
		}
		if (ret == -EPIPE)
			return lost_worker(sess, r);
		if (ret == -EBADMSG)
			return kill_worker(sess, -EPROTO, "broke the channel's framing");
		/* a remote end has no pool: a frame sent to it with send_frame
		 * (never, by the protocol) is refused, and so is the worker */
		if (ret == -EINVAL && sess->address)
			return kill_worker(sess, -EPROTO, "sent a frame outside the protocol");
		if (ret)
			return ret;
		ret = shmrig__session_msg_check(*msg, *len, hdr);
		if (ret) {
			char why[256];

			shmrig__session_msg_free(sess, *msg);
			snprintf(why, sizeof(why), "sent a bad message: %s", shmrig_last_error());
			return kill_worker(sess, -EPROTO, why);
		}
		if (hdr->id != id) {
			/* the late answer to a call that timed out */
			sess->stats.stale_replies++;
			discard_reply(sess, hdr, *msg, *len);
			continue;
		}
		if (!(types & (1u << hdr->type))) {
			char why[256];

			discard_reply(sess, hdr, *msg, *len);
			snprintf(why, sizeof(why), "answered %s with a message of type %u",
				 request_words(r, what, sizeof(what)), hdr->type);
			return kill_worker(sess, -EPROTO, why);
		}
		return 0;
	}
}

/* 0 if a worker is running, else -EPIPE saying why not. */
static int check_running(const struct shmrig_session *sess)
{
	if (sess->state == STATE_RUNNING)
		return 0;
	if (sess->state == STATE_DEAD)
		return shmrig__fail(-EPIPE, "session: no worker: %s (restart the session)",
				    sess->last_end);
	return shmrig__fail(-EPIPE, "session: no worker is running (start the session)");
}

/* ---- the caller: the API ---- */

int shmrig_session_create(const struct shmrig_session_opts *user_opts, shmrig_registry *reg,
			  shmrig_pool *pool, shmrig_session **out)
{
	struct shmrig_session_opts local = SHMRIG_SIZED(struct shmrig_session_opts);
	const struct shmrig_session_opts *opts = &local;
	struct shmrig_channel_opts channel_opts = SHMRIG_SIZED(struct shmrig_channel_opts);
	struct shmrig_pool_opts worker_pool;
	struct shmrig_pool_info info = SHMRIG_SIZED(struct shmrig_pool_info);
	struct shmrig_session *sess;
	int ret;

	if (!reg || !pool || !out)
		return shmrig__fail(-EINVAL, "session_create: NULL reg, pool or out");
	if (user_opts) {
		ret = shmrig__sized_in(&local, sizeof(local), user_opts,
				       "session_create: struct shmrig_session_opts");
		if (ret)
			return ret;
	}
	if (opts->address && (!*opts->address || strlen(opts->address) > ADDRESS_MAX))
		return shmrig__fail(-EINVAL, "session_create: the address must be 1..%d bytes",
				    ADDRESS_MAX);
	if (opts->flags)
		return shmrig__fail(-EINVAL, "session_create: unknown flags 0x%x", opts->flags);
	if (opts->call_timeout_ms < 0 || opts->start_timeout_ms < 0)
		return shmrig__fail(-EINVAL, "session_create: negative timeout");
	/* The structs they point to carry their own sizes: copied here, once. */
	if (opts->channel) {
		ret = shmrig__sized_in(&channel_opts, sizeof(channel_opts), opts->channel,
				       "session_create: struct shmrig_channel_opts");
		if (ret)
			return ret;
	}
	if (opts->worker_pool) {
		ret = shmrig__sized_in(&worker_pool, sizeof(worker_pool), opts->worker_pool,
				       "session_create: struct shmrig_pool_opts");
		if (ret)
			return ret;
	}
	/* a worker at an address is reached by connect, which only "ucx" does */
	if (opts->address && channel_opts.backend && strcmp(channel_opts.backend, "ucx") != 0)
		return shmrig__fail(-EINVAL,
				    "session_create: a worker at an address is reached over the "
				    "\"ucx\" backend, not \"%s\"",
				    channel_opts.backend);
	ret = shmrig_pool_info(pool, &info);
	if (ret)
		return ret;
	sess = calloc(1, sizeof(*sess));
	if (!sess)
		return shmrig__fail(-ENOMEM, "session_create: out of memory");
	if (opts->address && !(sess->address = strdup(opts->address))) {
		free(sess);
		return shmrig__fail(-ENOMEM, "session_create: out of memory");
	}
	sess->reg = reg;
	sess->pool = pool;
	sess->fork_epoch = shmrig__fork_epoch();
	snprintf(sess->prefix, sizeof(sess->prefix), "%s", info.prefix);
	sess->channel_opts = channel_opts;
	/* NULL is "ucx" for connect, the one backend it takes */
	if (sess->address)
		sess->channel_opts.backend = NULL;
	sess->call_timeout_ms = opts->call_timeout_ms ? opts->call_timeout_ms :
							SHMRIG_SESSION_CALL_TIMEOUT_MS;
	sess->start_timeout_ms = opts->start_timeout_ms ? opts->start_timeout_ms :
							  SHMRIG_SESSION_START_TIMEOUT_MS;
	if (!sess->channel_opts.open_timeout_ms)
		sess->channel_opts.open_timeout_ms = sess->start_timeout_ms;
	if (opts->worker_pool) {
		sess->has_worker_pool = true;
		sess->worker_pool = worker_pool;
	}
	sess->stats = SHMRIG_SIZED(struct shmrig_session_stats);
	sess->state = STATE_IDLE;
	*out = sess;
	return 0;
}

/* The worker's pool options: given, or like the caller's pool; our prefix, quiet. */
static int worker_pool_opts(struct shmrig_session *sess, struct shmrig_pool_opts *opts)
{
	struct shmrig_pool_info info = SHMRIG_SIZED(struct shmrig_pool_info);
	int ret;

	if (sess->has_worker_pool) {
		*opts = sess->worker_pool;
	} else {
		ret = shmrig_pool_info(sess->pool, &info);
		if (ret)
			return ret;
		*opts = SHMRIG_SIZED(struct shmrig_pool_opts);
		opts->flags = info.numa_node >= 0 ? SHMRIG_POOL_BIND_NODE : 0;
		opts->arena_size = info.arena_size;
		opts->max_bytes = info.max_bytes;
		opts->backing = (int)info.backing;
		opts->numa_node = info.numa_node;
	}
	opts->prefix = sess->prefix;
	opts->flags |= SHMRIG_POOL_QUIET;
	return 0;
}

/*
 * Connect to the worker at sess->address and take its READY_REMOTE (its
 * handlers' names, checked by msg_check, copied here), all within the start
 * timeout.
 */
static int start_remote(struct shmrig_session *sess)
{
	static const struct request starting = { .kind = "its start" };
	int64_t start = shmrig__now_ms();
	struct msg_hdr hdr;
	void *msg;
	size_t len;
	int ret;

	/* no pool: nothing comes as a frame (session_internal.h) */
	ret = shmrig_channel_connect(&sess->channel_opts, sess->address, NULL,
				     shmrig_registry_fingerprint(sess->reg), sess->start_timeout_ms,
				     &sess->ch);
	if (ret) {
		char why[ERROR_TEXT_MAX];

		sess->ch = NULL;
		snprintf(why, sizeof(why), "%s", shmrig_last_error());
		return shmrig__fail(ret, "session_start: connecting to the worker at %s: %s",
				    sess->address, why);
	}
	sess->worker = 0;
	sess->worker_id = 0;
	sess->state = STATE_RUNNING;
	sess->stats.starts++;
	ret = await_reply(sess, 0, 1u << MSG_READY_REMOTE, &start, sess->start_timeout_ms,
			  &starting, &msg, &len, &hdr);
	if (ret && sess->state == STATE_RUNNING) {
		char why[ERROR_TEXT_MAX];

		snprintf(why, sizeof(why), "did not say it was ready: %s", shmrig_last_error());
		return kill_worker(sess, ret, why);
	}
	if (ret)
		return ret;
	ret = shmrig__session_ready_names(msg, &hdr, &sess->remote_names);
	shmrig__session_msg_free(sess, msg);
	if (ret) {
		end_remote(sess, "out of memory for its handlers' names", STATE_DEAD);
		return shmrig__fail(-ENOMEM, "session_start: %s", sess->last_end);
	}
	sess->nremote = hdr.handler;
	return 0;
}

int shmrig_session_start(shmrig_session *sess)
{
	static const struct request starting = { .kind = "its start" };
	struct shmrig_pool_opts pool_opts;
	shmrig_channel_pair *pair;
	uint64_t fingerprint;
	struct msg_hdr hdr;
	int64_t start;
	pid_t caller = getpid(), pid;
	void *msg;
	size_t len;
	int ret = check_session(sess);

	if (ret)
		return ret;
	if (sess->state == STATE_RUNNING) {
		char who[ADDRESS_MAX + 32];

		return shmrig__fail(-EBUSY, "session_start: %s is running",
				    worker_words(sess, who, sizeof(who)));
	}
	if (sess->address)
		return start_remote(sess);
	ret = worker_pool_opts(sess, &pool_opts);
	if (ret)
		return ret;
	fingerprint = shmrig_registry_fingerprint(sess->reg);
	ret = shmrig_channel_pair_create(&sess->channel_opts, &pair);
	if (ret)
		return ret;
	/* else the worker would inherit, and one day print, what is buffered now */
	fflush(NULL);
	pid = fork();
	if (pid < 0) {
		ret = -errno;
		shmrig_channel_pair_free(pair);
		return shmrig__fail(ret, "session_start: fork: %s", strerror(-ret));
	}
	if (pid == 0)
		shmrig__session_worker_main(sess, pair, caller, fingerprint, &pool_opts);
	start = shmrig__now_ms();
	sess->worker = pid;
	sess->worker_id = 0;
	sess->state = STATE_RUNNING;
	sess->stats.starts++;
	ret = shmrig_channel_open(pair, 0, pid, sess->pool, fingerprint, &sess->ch);
	shmrig_channel_pair_free(pair);
	if (ret) {
		char why[ERROR_TEXT_MAX];

		snprintf(why, sizeof(why), "%s", shmrig_last_error());
		sess->ch = NULL;
		if (ret == -EPIPE)
			return lost_worker(sess, &starting);
		kill_worker(sess, ret, "did not start");
		return shmrig__fail(ret, "session_start: %s; %s", why, sess->last_end);
	}
	ret = await_reply(sess, 0, 1u << MSG_READY | 1u << MSG_ERROR, &start,
			  sess->start_timeout_ms, &starting, &msg, &len, &hdr);
	if (ret && sess->state == STATE_RUNNING) {
		char why[ERROR_TEXT_MAX];

		snprintf(why, sizeof(why), "did not get ready: %s", shmrig_last_error());
		return kill_worker(sess, ret, why);
	}
	if (ret)
		return ret;
	if (hdr.type == MSG_ERROR) {
		char why[ERROR_TEXT_MAX], how[128];
		int reaped;

		snprintf(why, sizeof(why), "%s", (char *)msg + sizeof(hdr));
		shmrig__session_msg_free(sess, msg);
		end_worker(sess, END_EXITING, how, sizeof(how), &reaped);
		sess->state = STATE_DEAD;
		sess->stats.deaths++;
		return shmrig__fail(-ECHILD, "session_start: worker %d could not start: %s; it %s",
				    (int)pid, why, how);
	}
	memcpy(&sess->worker_id, (char *)msg + sizeof(hdr), sizeof(sess->worker_id));
	shmrig__session_msg_free(sess, msg);
	/* it names the segments we remove if it dies: it must be itself */
	if (shmrig__procid_pid(sess->worker_id) != pid) {
		sess->worker_id = 0;
		return kill_worker(sess, -EPROTO, "said it was another process");
	}
	return 0;
}

/*
 * Send a CALL (msg, len: let go of here) and wait for its answer, a worker
 * forked or at an address: 0 with *reply (let go of it with
 * shmrig__session_msg_free: it may be in sess->recv_buf), *reply_len and *hdr
 * the RESULT; the handler's error, with the worker's words; those of
 * send_request and await_reply.
 */
static int call_round(struct shmrig_session *sess, struct msg_hdr *hdr, void *msg, size_t len,
		      int64_t *start, int timeout_ms, const struct request *r, void **reply,
		      size_t *reply_len)
{
	char who[ADDRESS_MAX + 32];
	int ret = send_request(sess, msg, len, start, timeout_ms, r);

	shmrig__session_msg_free(sess, msg);
	if (ret)
		return ret;
	ret = await_reply(sess, hdr->id, 1u << MSG_RESULT | 1u << MSG_ERROR, start, timeout_ms, r,
			  reply, reply_len, hdr);
	if (ret)
		return ret;
	sess->stats.calls++;
	if (hdr->type != MSG_ERROR)
		return 0;
	ret = shmrig__fail(hdr->status, "session: %s: %s", worker_words(sess, who, sizeof(who)),
			   (char *)*reply + sizeof(*hdr));
	shmrig__session_msg_free(sess, *reply);
	return ret;
}

/*
 * A call to a worker at an address: its handler's index from its own list;
 * the request flattened behind the header (our blocks released: the worker
 * gets bytes); the RESULT's flat frame landed in blocks of our pool, then
 * decoded.
 */
static int call_remote(struct shmrig_session *sess, const char *handler, double arg,
		       const struct shmrig_value *request, struct shmrig_value *response,
		       int timeout_ms)
{
	struct msg_hdr hdr = { .magic = MSG_MAGIC, .type = MSG_CALL, .arg = arg };
	struct request r = { .kind = "call", .handler = handler };
	char list[1024];
	int64_t start = -1; /* read when the call first waits */
	void *frame, *flat, *msg;
	size_t len, flat_len;
	int index, ret = check_running(sess);

	if (ret)
		return ret;
	index = find_remote(sess, handler);
	if (index < 0)
		return shmrig__fail(-ENOENT,
				    "session_call: the worker at %s has no handler '%s' (it has: %s)",
				    sess->address, handler, remote_list(sess, list, sizeof(list)));
	timeout_ms = effective_timeout(sess, timeout_ms);
	hdr.id = ++sess->next_id;
	hdr.handler = (uint32_t)index;
	r.id = hdr.id;

	ret = shmrig_registry_encode(sess->reg, sess->pool, request, &frame, &len);
	if (ret)
		return ret;
	ret = shmrig_frame_flatten(sess->pool, frame, len, &flat, &flat_len);
	if (ret) {
		/* nothing was released: the blocks are still ours */
		(void)!shmrig_frame_discard(sess->pool, frame, len); /* best effort */
		free(frame);
		return ret;
	}
	free(frame);
	if (flat_len > SHMRIG_CHANNEL_MAX_MSG - sizeof(hdr)) {
		free(flat);
		return shmrig__fail(-EMSGSIZE,
				    "session_call: the request is %zu bytes flat, over the "
				    "channel's %zu (nothing was sent)",
				    flat_len, SHMRIG_CHANNEL_MAX_MSG - sizeof(hdr));
	}
	msg = shmrig__session_msg_build(&hdr, flat, flat_len);
	free(flat);
	if (!msg)
		return shmrig__fail(-ENOMEM, "session_call: out of memory");
	ret = call_round(sess, &hdr, msg, sizeof(hdr) + flat_len, &start, timeout_ms, &r, &msg,
			 &len);
	if (ret)
		return ret;
	/* the worker's bytes, checked as hostile, into blocks of ours */
	ret = shmrig_frame_unflatten(sess->pool, (char *)msg + sizeof(hdr), len - sizeof(hdr),
				     &frame, &len);
	shmrig__session_msg_free(sess, msg);
	if (ret == -EBADMSG || ret == -EINVAL) {
		char why[ERROR_TEXT_MAX];

		snprintf(why, sizeof(why), "sent a malformed result: %s", shmrig_last_error());
		return kill_worker(sess, -EPROTO, why);
	}
	if (ret)
		return ret; /* -ENOMEM: our pool has no room for it; the session goes on */
	ret = shmrig_registry_decode(sess->reg, sess->pool, frame, len, response);
	free(frame);
	return ret;
}

/*
 * The CALL for `request` behind *hdr: a small value flat (MSG_FLAT set in
 * *hdr), else its frame, whose blocks are handed to the worker here. *msg
 * (let go of it with shmrig__session_msg_free: a flat one may be in
 * sess->send_buf), *len its bytes in all. Errors: encode's; -EPIPE (lost_worker) if
 * the hand-over finds the worker gone.
 */
static int build_call(struct shmrig_session *sess, struct msg_hdr *hdr,
		      const struct shmrig_value *request, const struct request *r, void **msg,
		      size_t *len)
{
	void *frame;
	size_t frame_len;
	int ret = shmrig__session_encode(sess, sess->pool, request, hdr, msg, len, &frame,
					 &frame_len);

	if (ret != -EAGAIN)
		return ret;
	*msg = shmrig__session_msg_build(hdr, frame, frame_len);
	if (!*msg) {
		(void)!shmrig_frame_discard(sess->pool, frame, frame_len); /* best effort */
		free(frame);
		return shmrig__fail(-ENOMEM, "session_call: out of memory");
	}
	free(frame);
	frame = (char *)*msg + sizeof(*hdr);
	*len = sizeof(*hdr) + frame_len;
	/* The worker owns the request's blocks before it can see them. */
	ret = shmrig_frame_transfer_peer(sess->pool, frame, frame_len,
					 shmrig__channel_peer_id(sess->ch));
	if (ret) {
		/* what was not handed over is still ours; what was comes back by
		 * reap (discard fails on those, rightly) */
		(void)!shmrig_frame_discard(sess->pool, frame, frame_len);
		free(*msg);
		return lost_worker(sess, r);
	}
	return 0;
}

int shmrig_session_call(shmrig_session *sess, const char *handler, double arg,
			const struct shmrig_value *request, struct shmrig_value *response,
			int timeout_ms)
{
	struct msg_hdr hdr = { .magic = MSG_MAGIC, .type = MSG_CALL, .arg = arg };
	struct request r = { .kind = "call", .handler = handler };
	char list[512];
	int64_t start = -1; /* read when the call first waits */
	void *msg;
	size_t len;
	int index, ret;

	if (response)
		memset(response, 0, sizeof(*response));
	ret = check_session(sess);
	if (ret)
		return ret;
	if (!handler || !request || !response)
		return shmrig__fail(-EINVAL, "session_call: NULL handler, request or response");
	if (sess->address)
		return call_remote(sess, handler, arg, request, response, timeout_ms);
	index = find_handler(sess, handler);
	if (index < 0)
		return shmrig__fail(-ENOENT, "session_call: no handler '%s' (registered: %s)",
				    handler, handler_list(sess, list, sizeof(list)));
	ret = check_running(sess);
	if (ret)
		return ret;
	timeout_ms = effective_timeout(sess, timeout_ms);
	hdr.id = ++sess->next_id;
	hdr.handler = (uint32_t)index;
	r.id = hdr.id;

	ret = build_call(sess, &hdr, request, &r, &msg, &len);
	if (ret)
		return ret;
	ret = call_round(sess, &hdr, msg, len, &start, timeout_ms, &r, &msg, &len);
	if (ret)
		return ret;
	if (hdr.flags & MSG_FLAT)
		ret = shmrig__registry_decode_flat(sess->reg, sess->pool, (char *)msg + sizeof(hdr),
						   len - sizeof(hdr), response);
	else
		ret = shmrig_registry_decode(sess->reg, sess->pool, (char *)msg + sizeof(hdr),
					     len - sizeof(hdr), response);
	shmrig__session_msg_free(sess, msg);
	return ret;
}

int shmrig_session_ping(shmrig_session *sess, int timeout_ms)
{
	struct msg_hdr hdr = { .magic = MSG_MAGIC, .type = MSG_PING };
	int64_t start = -1; /* read when the ping first waits */
	struct request r = { .kind = "ping" };
	void *msg;
	size_t len;
	int ret = check_session(sess);

	if (!ret)
		ret = check_running(sess);
	if (ret)
		return ret;
	timeout_ms = effective_timeout(sess, timeout_ms);
	hdr.id = ++sess->next_id;
	r.id = hdr.id;
	ret = send_request(sess, &hdr, sizeof(hdr), &start, timeout_ms, &r);
	if (!ret)
		ret = await_reply(sess, hdr.id, 1u << MSG_PONG, &start, timeout_ms, &r, &msg, &len,
				  &hdr);
	if (!ret)
		shmrig__session_msg_free(sess, msg);
	return ret;
}

int shmrig_session_shutdown(shmrig_session *sess, int timeout_ms)
{
	struct msg_hdr hdr = { .magic = MSG_MAGIC, .type = MSG_SHUTDOWN };
	int64_t start = shmrig__now_ms();
	struct request r = { .kind = "shutdown" };
	char how[128];
	pid_t pid;
	void *msg;
	size_t len;
	int ret = check_session(sess), status, reaped;

	if (ret)
		return ret;
	if (sess->state != STATE_RUNNING)
		return 0;
	pid = sess->worker;
	timeout_ms = effective_timeout(sess, timeout_ms);
	hdr.id = ++sess->next_id;
	r.id = hdr.id;
	ret = send_request(sess, &hdr, sizeof(hdr), &start, timeout_ms, &r);
	if (!ret)
		ret = await_reply(sess, hdr.id, 1u << MSG_BYE, &start, timeout_ms, &r, &msg, &len,
				  &hdr);
	if (ret && sess->state == STATE_RUNNING) {
		/* timed out, or our side failed: either way the worker must go */
		char why[ERROR_TEXT_MAX];

		if (ret == -ETIMEDOUT)
			snprintf(why, sizeof(why), "did not stop within %d ms", timeout_ms);
		else
			snprintf(why, sizeof(why), "could not be asked to stop: %s",
				 shmrig_last_error());
		return kill_worker(sess, ret, why);
	}
	if (ret)
		return ret;
	shmrig__session_msg_free(sess, msg);
	if (sess->address) {
		/* It said BYE: it goes on serving others, or ends as it pleases. */
		end_remote(sess, "shut down", STATE_IDLE);
		return 0;
	}
	/* It said BYE: it closes its pool and exits. */
	status = end_worker(sess, END_EXITING, how, sizeof(how), &reaped);
	sess->state = STATE_IDLE;
	if (status >= 0 && WIFEXITED(status) && WEXITSTATUS(status) == EXIT_OK)
		return 0;
	if (status >= 0 && WIFEXITED(status) && WEXITSTATUS(status) == EXIT_LEAK)
		return shmrig__fail(-SHMRIG_ELEAK, "session: worker %d %s (reaped)", (int)pid, how);
	return shmrig__fail(-ECHILD, "session: worker %d %s after shutdown", (int)pid, how);
}

int shmrig_session_restart(shmrig_session *sess)
{
	int ret = check_session(sess);

	if (ret)
		return ret;
	/* The old worker is gone whatever shutdown says (a leak, a kill: in the
	 * stats); restart answers for the new one, as documented. */
	if (sess->state == STATE_RUNNING)
		(void)!shmrig_session_shutdown(sess, 0);
	return shmrig_session_start(sess);
}

pid_t shmrig_session_worker_pid(const shmrig_session *sess)
{
	return sess && sess->state == STATE_RUNNING ? sess->worker : 0;
}

int shmrig_session_stats(const shmrig_session *sess, struct shmrig_session_stats *out)
{
	if (!sess || !out)
		return shmrig__fail(-EINVAL, "session_stats: NULL argument");
	return shmrig__sized_out(out, &sess->stats, sizeof(sess->stats),
				 "session_stats: struct shmrig_session_stats");
}

void shmrig_session_free(shmrig_session *sess)
{
	/* In another process the handle, its channel included, is the creator's:
	 * closing the channel here could close it for the creator (a ring's
	 * closed flag is shared memory). Leave it all alone, as an inherited pool. */
	if (!sess || check_session(sess))
		return;
	(void)!shmrig_session_shutdown(sess, 0); /* free has nobody to tell */
	if (sess->state == STATE_RUNNING)
		kill_worker(sess, -ECHILD, "could not be shut down");
	free(sess->remote_names);
	free(sess->address);
	free(sess->handlers);
	free(sess);
}
