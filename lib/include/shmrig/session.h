/* SPDX-License-Identifier: MIT */
#ifndef SHMRIG_SESSION_H
#define SHMRIG_SESSION_H

/*
 * session: a worker process that serves requests, the seed's worker model.
 *
 * shmrig_session_start() forks a worker. The worker opens its own pool (same
 * prefix as the caller's), keeps the caller's registry (its inherited copy:
 * same codecs in the same order, so the fingerprints match) and the handlers
 * registered before the start, and opens the other end of a channel. A call
 * names a handler, carries a request value and a small number (`arg`), and
 * gets back a response value:
 *
 *   caller: encode request (caller's pool) -> hand its blocks to the worker -> send
 *   worker: decode -> handler(request) -> encode response (worker's pool)
 *           -> release request -> hand the response's blocks to the caller -> send
 *   caller: decode response (views into the worker's blocks, leased by the caller)
 *
 * The worker frees the request's blocks before it replies: once a call
 * returns, the caller's pool holds nothing of it but the response.
 *
 * Every request carries a correlation id; a reply with another id (the late
 * answer to a call that timed out) is discarded and its blocks freed.
 *
 * When the worker dies (a signal, an exit, or killed because it did not answer
 * a shutdown or take a request in time), the session, in the caller:
 * waits for it (no zombie), frees the blocks of replies it had sent, returns
 * the blocks it held or had in flight with shmrig_pool_reap() on the caller's
 * pool, removes the segments it had created, and fails the call with -EPIPE and
 * a message that names the signal or exit status. shmrig_session_restart()
 * then starts a new worker with the same handlers.
 *
 * The worker is a fork() of the caller: it inherits the caller's memory and
 * file descriptors (a handler's ctx may use them). Caught signals go back to
 * their default action and the signal mask is cleared, so that a crash in a
 * handler ends the worker instead of running the caller's handler; ignored
 * signals stay ignored. Start sessions while no other thread holds a lock the
 * worker needs (malloc's are handled by the C library). Of the caller's
 * handles the worker uses only its copy of the registry.
 *
 * A session is used by one thread at a time, in the process that created it
 * (another process gets -SHMRIG_EFORK). The registry and the pool must outlive
 * the session. Decoded responses may outlive the session and its worker.
 *
 * Across hosts: a worker at an address. A process serves its session's
 * handlers with shmrig_session_serve() on a listener (shmrig_channel_listen,
 * "ucx"); a session created with opts->address connects to it at
 * shmrig_session_start() instead of forking. The two share nothing, so:
 *
 *   caller: encode request (caller's pool) -> flatten (blocks released) -> send
 *   worker: unflatten into its pool -> decode -> handler -> encode -> release
 *           request -> flatten (blocks released) -> send
 *   caller: unflatten into its pool -> decode (views into blocks of its own pool)
 *
 * Nothing is handed over, so nothing is reaped: when the connection is lost
 * (the worker died, its host went silent: UCX's keepalive) the call fails with
 * -EPIPE, words naming the address, and shmrig_session_restart() connects
 * again. The worker's handlers are its own: its ready message lists their
 * names and a call's name is looked up there; handlers registered on a session
 * that connects are not used. Both registries must agree (the hello compares
 * their fingerprints), and both hosts must have the same byte order.
 */

#include <shmrig/channel.h>
#include <shmrig/common.h>
#include <shmrig/pool.h>
#include <shmrig/registry.h>
#include <shmrig/value.h>
#include <sys/types.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct shmrig_session shmrig_session;

/* Handler names: [A-Za-z0-9_.-], 1..31 bytes. At most this many handlers. */
#define SHMRIG_SESSION_MAX_HANDLERS 256
/* Default timeouts (ms): calls, pings and shutdowns; the worker's start. */
#define SHMRIG_SESSION_CALL_TIMEOUT_MS 30000
#define SHMRIG_SESSION_START_TIMEOUT_MS 5000

/* Input, sized: SHMRIG_SIZED(struct shmrig_session_opts) (shmrig/common.h). */
struct shmrig_session_opts {
	uint32_t size;  /* sizeof where it was filled: SHMRIG_SIZED() */
	uint32_t flags; /* none yet: must be 0 */
	/* the channel: backend and its tuning (sized: its own size is read); NULL:
	 * the "pipe" backend, defaults */
	const struct shmrig_channel_opts *channel;
	/* the worker's pool (sized: its own size is read); NULL: like the
	 * caller's pool (shmrig_pool_info: arena size, limit, backing, bound
	 * node). The prefix is always the caller pool's, and the worker's pool
	 * is always SHMRIG_POOL_QUIET (the worker reports its own leaks through
	 * shmrig_session_shutdown). */
	const struct shmrig_pool_opts *worker_pool;
	int call_timeout_ms;  /* 0: SHMRIG_SESSION_CALL_TIMEOUT_MS */
	int start_timeout_ms; /* 0: SHMRIG_SESSION_START_TIMEOUT_MS (a connect and
			       * the worker's ready message, too) */
	/* NULL: fork the worker. Else "HOST:PORT" of a worker served with
	 * shmrig_session_serve() (shmrig_channel_connect's form; copied): start
	 * connects to it over "ucx" (channel->backend must be NULL or "ucx";
	 * UCX_TLS must include tcp); worker_pool is not used, nor are the
	 * handlers registered on this session. */
	const char *address;
};

/* What a handler sees, and fills. Filled by the library and handed to the
 * handler: size is the library's sizeof (a handler built against later
 * headers tests a newer field with SHMRIG_HAS_FIELD; shmrig/common.h). */
struct shmrig_handler_call {
	uint32_t size;
	const char *handler;                /* the name it was called by */
	uint64_t id;                        /* the call's correlation id */
	double arg;                         /* the caller's argument */
	const struct shmrig_value *request; /* decoded: views valid until the handler returns */
	/* Out: the value to send back. It is encoded (copied into new blocks of
	 * the worker's pool) after the handler returns, so it may view the
	 * request or memory from shmrig_handler_alloc(). A decoded value put here
	 * (storage set) is released after the encode. Left zeroed: empty bytes. */
	struct shmrig_value response;
	shmrig_pool *pool;                      /* the worker's pool */
	shmrig_registry *registry;              /* the worker's copy of the caller's registry */
	struct shmrig_handler_scratch *scratch; /* the session's: see shmrig_handler_alloc */
};

/*
 * A handler runs in the worker. It returns 0, or a negative errno-style code
 * that the caller's shmrig_session_call() returns, with the words recorded by
 * shmrig_handler_error() (or by the last failing shmrig call) in its message.
 */
typedef int (*shmrig_handler_fn)(void *ctx, struct shmrig_handler_call *call);

/* Zeroed memory that lives until the response is encoded. NULL: ENOMEM. */
SHMRIG_API void *shmrig_handler_alloc(struct shmrig_handler_call *call, size_t size);

/* Record the words a handler's failure reaches the caller with; returns err. */
SHMRIG_NODISCARD SHMRIG_API int shmrig_handler_error(int err, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/*
 * A session with no worker yet. `opts` may be NULL (defaults); `reg` and
 * `pool` are the caller's (the pool must be open in this process). The opts,
 * and the channel and pool opts they point to, are copied.
 * Errors: -EINVAL NULL reg, pool or out, unknown flags, a negative timeout,
 * an address that is empty or over 300 bytes, an address with a backend other
 * than "ucx", a size below 8 (of opts, opts->channel or opts->worker_pool); -E2BIG such
 * a size above SHMRIG_SIZED_MAX, or a non-zero byte past this library's
 * struct (shmrig/common.h); -SHMRIG_EFORK the pool is not this process's;
 * -ENOMEM.
 */
SHMRIG_NODISCARD SHMRIG_API int shmrig_session_create(const struct shmrig_session_opts *opts,
						      shmrig_registry *reg, shmrig_pool *pool,
						      shmrig_session **out);

/*
 * Register a handler (name copied; ctx must outlive the session). A handler
 * exists in the workers started after it is registered.
 * Errors: -EINVAL bad name or NULL fn; -EEXIST that name is taken; -EBUSY a
 * worker is running; -ENOSPC SHMRIG_SESSION_MAX_HANDLERS reached; -ENOMEM.
 */
SHMRIG_NODISCARD SHMRIG_API int shmrig_session_handler(shmrig_session *sess, const char *name,
						       shmrig_handler_fn fn, void *ctx);

/*
 * Register the built-in handlers:
 *   "echo"      the response is the request, re-encoded (copied into new blocks)
 *   "checksum"  the response is a 1-element uint64 ndarray holding
 *               shmrig_session_checksum() of the request
 *   "scale"     the request is a float32 or float64 ndarray; the response is
 *               a new ndarray of the same dtype, shape and order with every
 *               element multiplied by `arg` (in the element's type: float32
 *               elements by (float)arg); other requests fail with -EINVAL
 *   "echo_view" the response is the request, in its own blocks: the worker
 *               hands them back (a zero-copy echo). Where it cannot (a
 *               value decoded by copy, as bytes; a served caller, whose
 *               frames travel flat) it copies, as "echo" does
 * Errors as shmrig_session_handler.
 */
SHMRIG_NODISCARD SHMRIG_API int shmrig_session_add_builtin_handlers(shmrig_session *sess);

/*
 * XXH3-64 of a value's data bytes, streamed in value order: bytes: its bytes;
 * ndarray: its elements as laid out (C or F); table: each column's elements,
 * column by column; dataset: each variable's, group by group, variable by
 * variable. Descriptions (dtype, shape, names) are not hashed. For the
 * built-in codecs this is the hash of the frame's buffers' contents in frame
 * order. Errors: -EINVAL bad value; -ENOTSUP a user kind; -ENOMEM.
 */
SHMRIG_NODISCARD SHMRIG_API int shmrig_session_checksum(const struct shmrig_value *value,
							uint64_t *out);

/*
 * Fork the worker and wait until it is ready (pool open, channel open,
 * fingerprints agree), at most start_timeout_ms.
 * Errors: -EBUSY a worker is running; the errors of
 * shmrig_channel_pair_create and shmrig_channel_open (-EPROTO, -ETIMEDOUT);
 * -ECHILD the worker could not open its pool (its words are in the message);
 * -EPIPE it died while starting (the message names the signal or status);
 * -ETIMEDOUT it was not ready in time (it is killed); -errno of fork. On any
 * error no worker is left running.
 * With an address: connect to the worker there and take its handlers' names,
 * at most start_timeout_ms. Errors: -EBUSY; the errors of
 * shmrig_channel_connect (-ECONNREFUSED nobody serves there, -EPROTO the
 * registries' fingerprints differ, -ETIMEDOUT, -EOPNOTSUPP no UCX, -EINVAL
 * a bad or unresolvable address); -EPIPE the connection was lost before the
 * worker was ready; -EPROTO its ready message is malformed (more than
 * SHMRIG_SESSION_MAX_HANDLERS names, a bad name, a name twice, a wrong size);
 * -ETIMEDOUT it said nothing in time; -ENOMEM. On any error the connection
 * is closed.
 */
SHMRIG_NODISCARD SHMRIG_API int shmrig_session_start(shmrig_session *sess);

/*
 * Call `handler` with `request` and `arg`; on success `*response` is the
 * decoded answer (release it with shmrig_value_release). On failure
 * `*response` is zeroed. timeout_ms > 0: milliseconds; 0: the session's
 * call_timeout_ms; < 0: as long as the worker lives. The time counts from
 * when the call first waits for the worker (to take the request, or to
 * answer it): encoding the request, before, is not waiting.
 * Errors: -EINVAL NULL argument; -ENOENT no such handler (the message lists
 * them); -EPIPE no worker: it died during this call (the message names the
 * signal or exit status; the session has reaped it: restart it), or earlier,
 * or was shut down; -ETIMEDOUT no answer in time (the session stays usable,
 * the late answer is discarded when it comes; if the worker would not even
 * take the request, it is killed and the session needs a restart);
 * -EPROTO the worker broke the protocol (it is killed); the handler's error;
 * the registry's encode and decode errors; -SHMRIG_EFORK.
 * With an address, the same but: -ENOENT the worker has no such handler (the
 * message lists the worker's); -EPIPE the connection was lost (the worker
 * died or its host is unreachable: the message names the address; restart
 * reconnects); -EPROTO the worker sent a malformed message or result (the
 * connection is dropped); -EMSGSIZE the request, flat, is over
 * SHMRIG_CHANNEL_MAX_MSG (nothing was sent); -ENOMEM our pool has no room
 * for the result (the session goes on); shmrig_frame_flatten's errors. A
 * worker that would not take the request, or a shutdown that times out,
 * drops the connection instead of killing anything.
 */
SHMRIG_NODISCARD SHMRIG_API int shmrig_session_call(shmrig_session *sess, const char *handler,
						    double arg, const struct shmrig_value *request,
						    struct shmrig_value *response, int timeout_ms);

/* A round trip with no payload; timeout_ms as in shmrig_session_call.
 * Errors: -EPIPE, -ETIMEDOUT, -EPROTO as in shmrig_session_call. */
SHMRIG_NODISCARD SHMRIG_API int shmrig_session_ping(shmrig_session *sess, int timeout_ms);

/*
 * Stop the worker in order: it answers what it was asked before, closes its
 * pool and exits; the caller waits for it. If it does not stop within the
 * timeout (as in shmrig_session_call) it is killed. No worker: 0.
 * Errors: -ETIMEDOUT it was killed; -EPIPE it died meanwhile; -SHMRIG_ELEAK it
 * exited with blocks of its own still live (they are reaped); -ECHILD it
 * exited with another status. In every case the worker is gone afterwards.
 * With an address: SHUTDOWN, the worker's BYE, then the connection is
 * closed (0; the worker's serve returns 0 and its process goes on); -ETIMEDOUT
 * no BYE in time, -EPIPE the connection was lost meanwhile: closed either way.
 */
SHMRIG_NODISCARD SHMRIG_API int shmrig_session_shutdown(shmrig_session *sess, int timeout_ms);

/* Shut down the worker if one is running (default timeout), then start a new one.
 * Errors as shmrig_session_start. */
SHMRIG_NODISCARD SHMRIG_API int shmrig_session_restart(shmrig_session *sess);

/* The worker's pid, or 0 when none is running or the worker is at an address. */
SHMRIG_API pid_t shmrig_session_worker_pid(const shmrig_session *sess);

/* Output, sized (shmrig/common.h): set size (SHMRIG_SIZED()) before the call. */
struct shmrig_session_stats {
	uint32_t size;             /* in: the caller's sizeof; out: the bytes filled */
	uint64_t calls;            /* calls answered: with a response or the handler's error
				    * (a session that serves: the calls it served) */
	uint64_t timeouts;         /* calls, pings and shutdowns that timed out */
	uint64_t stale_replies;    /* late answers discarded (their blocks freed) */
	uint64_t starts;           /* workers started */
	uint64_t deaths;           /* workers that died or were killed */
	uint64_t blocks_reaped;    /* blocks shmrig_pool_reap() returned after a worker ended */
	uint64_t segments_removed; /* segments of dead workers removed */
};

/* Counters since create. Errors: -EINVAL NULL arguments, out->size below 8;
 * -E2BIG out->size above SHMRIG_SIZED_MAX. */
SHMRIG_NODISCARD SHMRIG_API int shmrig_session_stats(const shmrig_session *sess,
						     struct shmrig_session_stats *out);

/*
 * Serve the handlers registered on `sess`, in this process and with its pool,
 * to ONE caller (a session created with an address, in another process, maybe
 * on another host) accepted on `l` (shmrig_channel_listen; the hello compares
 * the registries' fingerprints). The caller's requests land in `sess`'s pool
 * (shmrig_frame_unflatten) and are released before each reply, which goes flat
 * (our blocks released as it is made): between calls, nothing of the caller's
 * is live in our pool, and a caller that goes away leaves nothing behind.
 * Waits at most accept_timeout_ms for the caller (< 0: forever), then serves
 * until it shuts down or goes. Call it again for the next caller. The session
 * must not have an address; its handlers need not be registered before any
 * worker's start (a forked worker of the same session may run meanwhile).
 * Returns 0 when the caller shut down (SHUTDOWN answered with BYE).
 * Errors: -EINVAL NULL argument, a session with an address, no handlers
 * registered; -SHMRIG_EFORK; -ETIMEDOUT nobody came in time; -EPIPE the caller
 * went away (closed without SHUTDOWN, died, its host went silent); -EPROTO the
 * caller broke the protocol (a malformed message or flat frame, a fingerprint
 * that differs from ours at the hello: the message has both); -EINTR
 * shmrig_session_serve_stop() was called; the errors of shmrig_channel_accept
 * (-ECONNABORTED, -ENOMEM); the channel's (-EIO). On every error but
 * -ETIMEDOUT and the accept's the connection was taken and is closed (the
 * caller sees -EPIPE).
 */
SHMRIG_NODISCARD SHMRIG_API int shmrig_session_serve(shmrig_session *sess,
						     shmrig_channel_listener *l,
						     int accept_timeout_ms);

/*
 * Make the session's shmrig_session_serve(), running or the next one, return
 * -EINTR within about 100 ms (between calls: a handler that runs is not
 * interrupted). Only stores a flag: safe in a signal handler (SIGINT, SIGTERM).
 * NULL is ignored.
 */
SHMRIG_API void shmrig_session_serve_stop(shmrig_session *sess);

/*
 * Shut down the worker if one is running (default timeout, then killed) and
 * free the session. In a process other than the creator (after fork) it does
 * nothing: the handle is the creator's, like an inherited pool's. NULL is ignored.
 */
SHMRIG_API void shmrig_session_free(shmrig_session *sess);

#ifdef __cplusplus
}
#endif

#endif
