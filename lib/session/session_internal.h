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
 *   worker.c    the worker process: its loop, dispatch to handlers, its pool and exit
 *   session.c   the caller: create, handler registration, start, call, ping,
 *               shutdown, stats, and the end of a worker (wait, reap, remove its
 *               segments)
 */

#include "os/prim.h"

#include <shmrig/options.h>
#include <shmrig/session.h>

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define MSG_MAGIC 0x53534553u /* "SESS" */
#define HANDLER_NAME_MAX 31
/* Longest failure text carried in an ERROR. */
#define ERROR_TEXT_MAX 512

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
	MSG_TYPE_END
};

struct msg_hdr {
	uint32_t magic;
	uint16_t type;
	uint16_t reserved0;
	uint64_t id;      /* correlation id: a reply carries its request's */
	double arg;       /* CALL: the caller's argument */
	uint32_t handler; /* CALL: index in the handler table (the worker's is a copy) */
	int32_t status;   /* ERROR: a negative errno-style code */
	uint64_t reserved1;
};
_Static_assert(sizeof(struct msg_hdr) == 40, "session header layout");
_Static_assert(sizeof(struct msg_hdr) % 8 == 0, "the frame after the header must stay 8-aligned");
_Static_assert(offsetof(struct msg_hdr, id) == 8, "session header layout");
_Static_assert(offsetof(struct msg_hdr, handler) == 24, "session header layout");

struct handler {
	char name[HANDLER_NAME_MAX + 1];
	shmrig_handler_fn fn;
	void *ctx;
};

enum state {
	STATE_IDLE,    /* no worker: never started, or shut down */
	STATE_RUNNING, /* a worker serves */
	STATE_DEAD,    /* the worker died or was killed; it has been reaped */
};

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
	char last_end[160]; /* how the last worker ended, for later calls' messages */
	struct shmrig_session_stats stats;
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

/* Check a message that arrived and copy its header out: 0 or -EPROTO. The
 * only reading of what the other process wrote; use the copy after it. */
int shmrig__session_msg_check(const void *msg, size_t len, struct msg_hdr *hdr);

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
