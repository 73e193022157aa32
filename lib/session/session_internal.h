/* SPDX-License-Identifier: MIT */
#ifndef SHMRIG_SESSION_INTERNAL_H
#define SHMRIG_SESSION_INTERNAL_H

/*
 * session: a forked worker that serves named handlers over a channel.
 *
 * Every message is a msg_hdr, then a payload: a frame (CALL, RESULT), the
 * words of a failure (ERROR: NUL-terminated), the worker's procid (READY), or
 * nothing. The header is 40 bytes, so a frame after it is 8-byte aligned in the
 * channel's 8-aligned receive buffer, as frames must be.
 *
 *   worker -> caller   READY (after fork, once its pool and channel are open)
 *   caller -> worker   CALL id handler arg frame   -> RESULT id frame | ERROR id status text
 *                      PING id                     -> PONG id
 *                      SHUTDOWN id                 -> BYE id, then it exits
 *
 * Both ends are the same binary (a fork), so the layout cannot differ; what
 * arrives is still checked before use, and a worker that sends nonsense is
 * killed rather than trusted.
 *
 * A worker at an address (shmrig_session_serve in another process, maybe on
 * another host) speaks the same messages over a channel made by connect and
 * accept, with two differences:
 *   - it says READY_REMOTE instead of READY: the count of its handlers in
 *     `handler`, then their names, each NUL-terminated, back to back (its
 *     handlers are its own: the caller maps a call's name to the worker's index);
 *   - CALL and RESULT carry a flat frame (shmrig_frame_flatten), not a frame:
 *     the sender's blocks are released when it flattens, the receiver lands the
 *     bytes in blocks of its own pool (shmrig_frame_unflatten) and decodes
 *     them. Nothing is handed over, so nothing is reaped when the peer is lost.
 * Such a channel is opened with no pool: a frame the peer sent with
 * shmrig_channel_send_frame (which the protocol never does) is then refused by
 * recv instead of being put in our pool where nobody would free it.
 *
 * Who owns the blocks: the caller hands a request's blocks to the worker
 * before it sends the CALL, and the worker hands the response's blocks to the
 * caller before it sends the RESULT. A reply the caller no longer waits for
 * (its call timed out) is discarded and its blocks freed. When the worker
 * ends, the caller reaps whatever the worker owned, and removes the segments
 * the worker created if it could not (it died).
 */

/*
 * What the session's files share:
 *   wire.c      the messages: building them, sending the bare ones and ERROR
 *               and READY, checking what arrives
 *   handlers.c  the built-in handlers, the checksum, handlers' scratch memory
 *   worker.c    the worker: its loop and dispatch to handlers, shared by the
 *               forked process (its pool and exit) and shmrig_session_serve
 *   session.c   the caller: create, handler registration, start, call, ping,
 *               shutdown, stats, and the end of a worker (wait, reap, remove its
 *               segments)
 */

#include "os/prim.h"

#include <shmrig/options.h>
#include <shmrig/session.h>

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define MSG_MAGIC 0x53534553u /* "SESS" */
#define HANDLER_NAME_MAX 31
/* Longest failure text carried in an ERROR. */
#define ERROR_TEXT_MAX 512
/* Longest READY_REMOTE payload: every name at its longest, with its NUL. */
#define READY_NAMES_MAX (SHMRIG_SESSION_MAX_HANDLERS * (HANDLER_NAME_MAX + 1))
/* A serving session looks at its stop flag at least this often (ms). */
#define SERVE_SLICE_MS 100
/* Longest address a session connects to ("HOST:PORT"). */
#define ADDRESS_MAX 300

/* The worker's exit codes (signals aside). */
enum {
	EXIT_OK = 0,
	EXIT_LEAK = 3,  /* blocks of its own were live at its pool's close */
	EXIT_SETUP = 4, /* could not open its pool or its channel */
	EXIT_PROTO = 5, /* the caller's messages made no sense, or the channel failed */
};

enum msg_type {
	MSG_READY = 1,
	MSG_CALL,
	MSG_RESULT,
	MSG_ERROR,
	MSG_PING,
	MSG_PONG,
	MSG_SHUTDOWN,
	MSG_BYE,
	MSG_READY_REMOTE, /* a served worker's READY: its handlers' names */
	MSG_TYPE_END
};

struct msg_hdr {
	uint32_t magic;
	uint16_t type;
	uint16_t flags;   /* CALL, RESULT: MSG_FLAT or 0; else 0 */
	uint64_t id;      /* correlation id: a reply carries its request's */
	double arg;       /* CALL: the caller's argument */
	uint32_t handler; /* CALL: index in the worker's handler table (a forked worker's is
			   * a copy of ours); READY_REMOTE: how many names follow */
	int32_t status;   /* ERROR: a negative errno-style code */
	uint64_t reserved1;
};
_Static_assert(sizeof(struct msg_hdr) == 40, "session header layout");
_Static_assert(sizeof(struct msg_hdr) % 8 == 0, "the frame after the header must stay 8-aligned");
_Static_assert(offsetof(struct msg_hdr, id) == 8, "session header layout");
_Static_assert(offsetof(struct msg_hdr, handler) == 24, "session header layout");

/*
 * The frame behind the header is flat (shmrig_frame_flatten's form): its
 * payload travels in the message, no block is handed over. A forked end
 * sends a frame of at most SESSION_FLAT_MAX payload bytes so: for a small
 * value, copying a few hundred bytes costs less than the hand-over (a
 * transfer, a claim and a remote free, each touching a descriptor line the
 * other CPU wrote last).
 */
#define MSG_FLAT 1u
#define SESSION_FLAT_MAX 2048
/* The session's buffer for a flat message (send_buf): a small value's with
 * its header, metadata and padding fits, a large table's may not (malloc'd). */
#define SESSION_SEND_BUF 4096

/* Is v's payload (its data bytes, as the built-in codecs lay them out) at
 * most SESSION_FLAT_MAX? Then it is encoded flat, without the pool
 * (shmrig__registry_encode_flat). A user value, or one whose sizes do not
 * add up, is not: the pool's encode decides, and says what is wrong. */
bool shmrig__session_small(const struct shmrig_value *v);

/*
 * A CALL's or RESULT's value, encoded behind *hdr (room for it) with sess's
 * registry: a small one (shmrig__session_small, or a frame of at most
 * SESSION_FLAT_MAX payload bytes) flat, MSG_FLAT set in *hdr and copied in
 * front: 0, *msg the message (in sess->send_buf if it fits: let go of it with
 * shmrig__session_msg_free), *len its bytes in all. A larger one: -EAGAIN,
 * *frame (free it) and *frame_len its frame, its blocks (of `pool`) handed to
 * ourselves, for the caller to hand over. Else encode's or flatten's error,
 * nothing left (the words in shmrig_last_error()).
 */
struct shmrig_session;
int shmrig__session_encode(struct shmrig_session *sess, shmrig_pool *pool,
			   const struct shmrig_value *v, struct msg_hdr *hdr, void **msg,
			   size_t *len, void **frame, size_t *frame_len);

/* Let go of a message shmrig__session_encode built, or one the session
 * received: free it unless it is in sess->send_buf or sess->recv_buf. */
void shmrig__session_msg_free(struct shmrig_session *sess, void *msg);

struct handler {
	char name[HANDLER_NAME_MAX + 1];
	shmrig_handler_fn fn;
	void *ctx;
	/* its response is its request: the worker hands the request's own
	 * blocks back when it can (built-in "echo_view"), not copies */
	bool pass_back;
};

enum state {
	STATE_IDLE,    /* no worker: never started, or shut down */
	STATE_RUNNING, /* a worker serves */
	STATE_DEAD,    /* the worker died or was killed; it has been reaped (a remote
			* worker: the connection was lost or dropped) */
};

typedef char handler_name[HANDLER_NAME_MAX + 1];

struct shmrig_session {
	shmrig_registry *reg;
	shmrig_pool *pool;
	unsigned fork_epoch; /* of the creating process */
	char prefix[SHMRIG_PREFIX_MAX + 1];
	struct shmrig_channel_opts channel_opts;
	bool has_worker_pool;
	struct shmrig_pool_opts worker_pool;
	int call_timeout_ms;
	int start_timeout_ms;
	struct handler *handlers;
	uint32_t nhandlers;
	uint32_t cap;
	enum state state;
	pid_t worker;
	shmrig__procid worker_id; /* from READY; 0 before */
	shmrig_channel *ch;
	uint64_t next_id;
	/* how the last worker ended, for later calls' messages */
	char last_end[ADDRESS_MAX + ERROR_TEXT_MAX + 128];
	struct shmrig_session_stats stats;
	/* A session that calls a worker at an address (opts->address): NULL for
	 * a forked worker. The connected worker's handlers, from its READY_REMOTE
	 * (validated, copied): a call's name is looked up here, not in `handlers`. */
	char *address;
	handler_name *remote_names;
	uint32_t nremote;
	/* shmrig_session_serve_stop() sets it (from a signal handler, too) */
	volatile sig_atomic_t stop_serving;
	/* Where a flat CALL (or, in the worker, RESULT) is built, and where a
	 * message that came in a ring slot is copied, instead of a malloc and a
	 * free per message: one thread uses a session at a time, a message is
	 * sent before the next is built, and let go of before the next comes. */
	_Alignas(8) unsigned char send_buf[SESSION_SEND_BUF];
	_Alignas(8) unsigned char recv_buf[SESSION_SEND_BUF];
};

/* A handler's scratch memory: a list of nodes (handlers.c's), freed after the call. */
struct shmrig_handler_scratch {
	struct scratch_node *head;
};

/* ---- wire.c: the messages ---- */

/* One buffer: the header, then `len` bytes of payload. NULL: ENOMEM. */
void *shmrig__session_msg_build(const struct msg_hdr *hdr, const void *payload, size_t len);

/* A message that is a header only (PING, PONG, SHUTDOWN, BYE). The channel's answer. */
int shmrig__session_send_bare(shmrig_channel *ch, enum msg_type type, uint64_t id, int timeout_ms);

/* ERROR id status text, the text cut at ERROR_TEXT_MAX. */
int shmrig__session_send_error(shmrig_channel *ch, uint64_t id, int status, const char *text);

/* READY, carrying our procid: the caller removes our segments by it if we die. */
int shmrig__session_send_ready(shmrig_channel *ch);

/* READY_REMOTE: the names of the session's handlers, in its order. */
int shmrig__session_send_ready_remote(shmrig_channel *ch, const struct shmrig_session *sess);

/* Check a message that arrived and copy its header out: 0 or -EPROTO. The
 * only reading of what the other process wrote; use the copy after it. A
 * READY_REMOTE is checked whole (count, every name, the exact size): its names
 * may then be copied with shmrig__session_ready_names. */
int shmrig__session_msg_check(const void *msg, size_t len, struct msg_hdr *hdr);

/* The names of a READY_REMOTE that passed msg_check, into a new table (*out,
 * hdr->handler entries; free() it). 0 or -ENOMEM. */
int shmrig__session_ready_names(const void *msg, const struct msg_hdr *hdr, handler_name **out);

/* ---- handlers.c ---- */

/* Free what shmrig_handler_alloc() gave a call's handler. */
void shmrig__session_scratch_free(struct shmrig_handler_scratch *scratch);

/* ---- worker.c ---- */

/* The forked worker: open its pool and its end of the channel, say READY, serve
 * until SHUTDOWN or until the caller is gone, then _exit() with an EXIT_ code. */
_Noreturn void shmrig__session_worker_main(struct shmrig_session *sess, shmrig_channel_pair *pair,
					   pid_t caller, uint64_t fingerprint,
					   const struct shmrig_pool_opts *pool_opts);

#endif
