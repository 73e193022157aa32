/* SPDX-License-Identifier: MIT */
#ifndef SHMRIG_CHANNEL_INTERNAL_H
#define SHMRIG_CHANNEL_INTERNAL_H

/*
 * What channel.c shares with its backends (channel_pipe.c, channel_uring.c,
 * channel_ring.c, channel_ucx.c when built with UCX: SHMRIG_HAVE_UCX). channel.c owns the pair, the hello and the liveness of the
 * peer; a backend moves bytes.
 */

#include <shmrig/channel.h>
#include <shmrig/segment.h>

#include "os/liveness.h"

struct shmrig_channel;
struct shmrig_channel_pair;

struct channel_ops {
	const char *name;
	/* before fork: make what both ends share; state goes in pair->backend */
	int (*pair_create)(struct shmrig_channel_pair *pair);
	void (*pair_free)(struct shmrig_channel_pair *pair);
	/* after fork: take end ch->end; state goes in ch->backend */
	int (*open)(struct shmrig_channel *ch, struct shmrig_channel_pair *pair);
	void (*close)(struct shmrig_channel *ch);
	/* all n messages in order, or an error */
	int (*sendv)(struct shmrig_channel *ch, const void *const *msgs, const size_t *lens,
		     uint32_t n, int timeout_ms);
	/* the next message, malloc'd 8-aligned */
	int (*recv)(struct shmrig_channel *ch, void **msg, size_t *len, int timeout_ms);
	/* Optional, for a backend whose send or receive often needs no wait (the
	 * ring): the same, with the timeout counted from *start_ms, which a value
	 * < 0 says is not read yet: the backend reads the clock into it when it
	 * first waits, and not at all if it never does. Set, the
	 * shmrig__channel_*_from calls use them instead of sendv and recv. */
	int (*sendv_from)(struct shmrig_channel *ch, const void *const *msgs, const size_t *lens,
			  uint32_t n, int64_t *start_ms, int timeout_ms);
	int (*recv_from)(struct shmrig_channel *ch, void *buf, size_t cap, void **msg, size_t *len,
			 int64_t *start_ms, int timeout_ms);
};

struct shmrig_channel_pair {
	const struct channel_ops *ops;
	struct shmrig_channel_opts opts;
	int fds[2]; /* socketpair for uring and ucx; -1 if unused */
	void *backend;
};

struct shmrig_channel {
	const struct channel_ops *ops;
	struct shmrig_channel_opts opts;
	int end;
	shmrig_pool *pool;
	uint64_t fingerprint;
	pid_t peer;                      /* 0 for a remote end (remote) */
	bool remote;                     /* made by listen/accept/connect: no pid to watch,
					  * the backend alone knows whether the peer lives */
	struct shmrig__watch peer_watch; /* a pidfd on the peer, held while the channel is open */
	shmrig__procid peer_id;          /* = peer_watch.id: pid + start time (a reused pid is
					  * not our peer) */
	int fd; /* our socket end (uring, ucx), or incoming pipe (pipe); -1 otherwise */
	unsigned fork_epoch;             /* of the process that opened it */
	void *backend;
	char notes[256];
};

extern const struct channel_ops shmrig__channel_pipe;
extern const struct channel_ops shmrig__channel_uring;
extern const struct channel_ops shmrig__channel_ring;
#ifdef SHMRIG_HAVE_UCX
extern const struct channel_ops shmrig__channel_ucx;

/* listen/accept/connect (channel_ucx.c); channel.c checks the arguments, makes
 * the channel (remote) and runs the hello. */
int shmrig__ucx_listen(const struct shmrig_channel_opts *opts, const char *address,
		       struct shmrig_channel_listener **out);
int shmrig__ucx_listener_address(const struct shmrig_channel_listener *l, char *buf, size_t len);
const struct shmrig_channel_opts *shmrig__ucx_listener_opts(const struct shmrig_channel_listener *l);
/* Wait for a connection (timeout_ms) and make ch's endpoint from it. */
int shmrig__ucx_accept(struct shmrig_channel_listener *l, struct shmrig_channel *ch,
		       int timeout_ms);
/* Make ch's endpoint to `address`; the connection is made as the hello goes. */
int shmrig__ucx_connect(struct shmrig_channel *ch, const char *address);
void shmrig__ucx_listener_close(struct shmrig_channel_listener *l);
/* send_frame on a remote end: the frame goes flat (shmrig_frame_flatten), its
 * blocks released once it is, or bare, each buffer straight from its block,
 * released once UCX has sent it (channel_ucx.c says which when); errors and
 * what they leave: channel.h. */
int shmrig__ucx_send_frame(struct shmrig_channel *ch, const void *frame, size_t len,
			   int timeout_ms);
/* For tests: the segments of our pool this remote end holds registered with
 * UCX now (name NULL), or whether segment `name` is one of them (1 or 0). */
uint32_t shmrig__ucx_registered(const struct shmrig_channel *ch, const char *name);
/* For tests: send a message header of any kind claiming hdr_len bytes, then
 * `len` bytes, as a peer that does not follow the protocol would. */
int shmrig__ucx_send_raw(struct shmrig_channel *ch, uint32_t kind, uint64_t hdr_len,
			 const void *bytes, size_t len);
#endif

/* Is the peer still alive? One poll of its pidfd: false only when it is known
 * dead (its whole thread group is gone); "unknown" counts as alive, and so does
 * a remote peer (no pid: its backend tells). */
bool shmrig__channel_peer_alive(struct shmrig_channel *ch);

/* Milliseconds on a monotonic clock, and what is left of a timeout from `start`
 * (timeout < 0: forever, returns -1). */
int64_t shmrig__now_ms(void);
int shmrig__remaining_ms(int64_t start, int timeout_ms);

/*
 * shmrig_channel_sendv and shmrig_channel_recv for a caller with several steps
 * under one timeout (a session's call: send the request, wait for the answer):
 * the timeout counts from *start_ms, which a value < 0 says is not read yet;
 * it is read from the clock (shmrig__now_ms) when a step first has to wait,
 * never when none does (a clock read costs ~25 ns in a VM, a tenth of a ring
 * round trip). recv_from puts a message that fits `cap` bytes in `buf`
 * (8-aligned; NULL and 0: none) where the backend can (the ring: one that
 * came in a slot), instead of a malloc: *msg is buf then, not to be freed.
 * Errors as in those two.
 */
int shmrig__channel_sendv_from(shmrig_channel *ch, const void *const *msgs, const size_t *lens,
			       uint32_t n, int64_t *start_ms, int timeout_ms);
int shmrig__channel_recv_from(shmrig_channel *ch, void *buf, size_t cap, void **msg, size_t *len,
			      int64_t *start_ms, int timeout_ms);

/* An 8-aligned buffer of len bytes (at least 8): malloc'd, free() it. NULL: ENOMEM. */
void *shmrig__msg_alloc(size_t len);

/* Wait until ch->fd is ready for `events`, in slices that each end with a
 * check of the peer's life. 0, -ETIMEDOUT, -EPIPE (peer gone) or -errno. */
int shmrig__channel_wait_fd(struct shmrig_channel *ch, short events, int64_t start, int timeout_ms);

/* pair->fds = a SOCK_STREAM socketpair (uring, ucx; pipe has pipes of its own). */
int shmrig__channel_socketpair(struct shmrig_channel_pair *pair);

/* Stream framing shared by pipe and uring: each message is a header then the bytes. */
struct stream_hdr {
	uint32_t magic;
	uint32_t reserved;
	uint64_t len;
};
#define STREAM_MAGIC 0x4d534853u /* "SHSM" */

/* The identity (pid + start time) of a channel's peer, as its hello checked it. */
uint64_t shmrig__channel_peer_id(const struct shmrig_channel *ch);

#endif
