/* SPDX-License-Identifier: MIT */
#ifndef SHMRIG_CHANNEL_H
#define SHMRIG_CHANNEL_H

/*
 * channel: moves messages (usually frames) between two processes.
 *
 * Backends, chosen by name, behind one API:
 *   "pipe"   a pipe(2) each way: one syscall and one kernel copy per message
 *            (the seed's way, and the baseline); never a SIGPIPE: each end
 *            keeps its outgoing pipe's read end open, so a send to a dead
 *            peer fills the pipe, then fails with -EPIPE as below
 *   "uring"  io_uring (liburing) over a socketpair: a batch of messages is one
 *            submission, completions are reaped many per wait; the socket is a
 *            registered file and reads go to a registered buffer; SQPOLL on
 *            request (SHMRIG_URING_SQPOLL=1): on 2 CPUs its kernel threads cost
 *            more throughput than they save latency
 *   "ring"   single-producer single-consumer rings in a shared-memory segment:
 *            spin briefly, then futex-wait; the peer is woken only when it
 *            sleeps, so with both sides busy no syscall is made at all. A
 *            message larger than a slot spills into a temporary pool block.
 *   "ucx"    UCX (UCP streams) over the transports UCX_TLS allows: tcp between
 *            hosts, posix/sysv shared memory, cma, self on one. Present only if
 *            the library was built with UCX (libucx-dev); otherwise the name is
 *            refused with -EOPNOTSUPP. The one backend whose ends need not be
 *            parent and child: shmrig_channel_listen()/accept()/connect() below.
 *
 * Use: create a pair before fork(); after it, each process opens its end
 * (0 or 1) naming its peer's pid. Open exchanges a hello (protocol version and
 * registry fingerprint); a mismatch is -EPROTO on both sides. Then send and
 * recv. A dead peer makes send and recv fail within a bounded time (EOF on the
 * pipe or socket, or a futex timeout and a liveness check of the peer's pid and start
 * time), never hang.
 *
 * Frames and their blocks: shmrig_channel_send_frame() hands a frame's blocks
 * to the peer (shmrig_frame_transfer) before publishing it, so a frame in
 * flight belongs to its receiver; if the receiver dies, any survivor's
 * shmrig_pool_reap() frees them. An end made by accept or connect (whose peer
 * may be on another host) sends the frame's payload with it instead, and the
 * receiver's recv puts it in its own pool (below).
 *
 * A channel end is used by one thread at a time.
 */

#include <shmrig/common.h>
#include <shmrig/pool.h>
#include <sys/types.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct shmrig_channel shmrig_channel;
typedef struct shmrig_channel_pair shmrig_channel_pair;
typedef struct shmrig_channel_listener shmrig_channel_listener;

#define SHMRIG_CHANNEL_VERSION 1u
/* Largest message any backend carries. */
#define SHMRIG_CHANNEL_MAX_MSG ((size_t)1 << 30)

/* Input, sized: SHMRIG_SIZED(struct shmrig_channel_opts) (shmrig/common.h). */
struct shmrig_channel_opts {
	uint32_t size;       /* sizeof where it was filled: SHMRIG_SIZED() */
	uint32_t flags;      /* none yet: must be 0 */
	const char *backend; /* "pipe", "uring", "ring" or "ucx"; NULL: "pipe" (listen and
			       * connect: "ucx") */
	uint32_t slot_size;  /* ring: bytes per slot (0: 4096), a multiple of 64 */
	uint32_t slots;      /* ring: slots per direction (0: 256), a power of two */
	int open_timeout_ms; /* hello exchange (0: 5000) */
};

/*
 * Make the resources both ends share (pipes, socketpair, ring segment), before fork.
 * opts NULL: every default.
 * Errors: -EINVAL bad options or unknown backend (the message lists them),
 * opts->size below 8; -EOPNOTSUPP "ucx" in a library built without UCX;
 * -E2BIG opts->size above SHMRIG_SIZED_MAX, or a non-zero byte past this
 * library's struct (shmrig/common.h); -ENOMEM; -errno from the OS.
 */
SHMRIG_NODISCARD SHMRIG_API int shmrig_channel_pair_create(const struct shmrig_channel_opts *opts,
							   shmrig_channel_pair **out);

/* Release this process's copy of a pair (after both opens, or if fork failed). */
SHMRIG_API void shmrig_channel_pair_free(shmrig_channel_pair *pair);

/*
 * Open end 0 or 1 of a pair in this process; `peer` is the pid of the process
 * that opens the other end. `pool` is this process's pool (frames' blocks are
 * handed over through it; the ring spills through it; may be NULL for a
 * channel that carries no frames and uses no ring spills). `fingerprint` is
 * compared with the peer's (shmrig_registry_fingerprint(), or any value both
 * sides agree on). Blocks until the peer's hello arrives.
 * Errors: -EINVAL; -EPROTO version or fingerprint mismatch (the message has
 * both values); -ETIMEDOUT no hello in time; -EPIPE the peer is gone.
 */
SHMRIG_NODISCARD SHMRIG_API int shmrig_channel_open(shmrig_channel_pair *pair, int end, pid_t peer,
						    shmrig_pool *pool, uint64_t fingerprint,
						    shmrig_channel **out);

/*
 * Close this end (the peer's recv then sees -EPIPE, after the messages sent
 * before). A ring end that sent spills waits, at most the open timeout, until
 * the peer has taken them, closed or died, so that a sender may close and exit
 * at once; it frees the spills it never read. NULL is ignored.
 */
SHMRIG_API void shmrig_channel_close(shmrig_channel *ch);

/* The backend's name, and what it had to do without (e.g. "SQPOLL refused: EPERM"). */
SHMRIG_API const char *shmrig_channel_backend(const shmrig_channel *ch);
SHMRIG_API const char *shmrig_channel_notes(const shmrig_channel *ch);

/*
 * Send `n` messages in order, as one batch where the backend can (one
 * submission for uring, one publish and at most one wake for ring).
 * timeout_ms < 0 waits as long as the peer lives.
 * Errors: -EINVAL; -EMSGSIZE a message over SHMRIG_CHANNEL_MAX_MSG, or a ring
 * spill with no pool; -EPIPE the peer is gone (the ring notices when it must
 * wait or spill: small messages to a dead peer may be accepted until the ring
 * is full); -ETIMEDOUT; -ENOMEM (ring spill); -EBADMSG the peer corrupted the
 * shared ring; -SHMRIG_EFORK an end inherited through fork. On error, some of
 * the batch may have been sent.
 * -ETIMEDOUT and a single message (shmrig_channel_send): the message was not
 * taken; send it again later, it is delivered once. A message part of which
 * went before the time ran out counts as taken (the call returns 0): the next
 * send finishes it first, and close does, waiting at most the open timeout.
 * In a batch, -ETIMEDOUT means a prefix of it was taken.
 */
SHMRIG_NODISCARD SHMRIG_API int shmrig_channel_sendv(shmrig_channel *ch, const void *const *msgs,
						     const size_t *lens, uint32_t n,
						     int timeout_ms);
SHMRIG_NODISCARD SHMRIG_API int shmrig_channel_send(shmrig_channel *ch, const void *msg, size_t len,
						    int timeout_ms);

/*
 * Receive the next message into a new 8-byte aligned buffer (free() it).
 * On an end made by accept or connect, a frame the peer sent with
 * shmrig_channel_send_frame() arrives with its payload and is put in our pool
 * here: the message is an ordinary frame whose blocks this call allocated in
 * the pool given at accept or connect, handed to us unclaimed, to decode (or
 * shmrig_frame_discard()). A flat frame is unflattened
 * (shmrig_frame_unflatten); a bare one (see send_frame) is checked by the same
 * rules before a block is allocated, and each buffer's bytes are received
 * straight into its block. A recv that times out half way through a frame
 * goes on with it at the next call.
 * Errors: -ETIMEDOUT nothing arrived in time; -EPIPE the peer is gone (its
 * messages sent before that are still delivered first); -EBADMSG the stream is
 * corrupt; -ENOMEM; -SHMRIG_EFORK an end inherited through fork (any backend).
 * A frame that cannot be put in the pool is dropped (its bytes read and
 * discarded, its blocks freed, the next recv reads the next message) with:
 * -EINVAL the channel has no pool (NULL at accept or connect); -EBADMSG a
 * malformed frame; -ENOMEM no room for its blocks in the pool (at its
 * max_bytes) or the host. A peer lost half way through a frame: -EPIPE, the
 * blocks it had taken freed.
 */
SHMRIG_NODISCARD SHMRIG_API int shmrig_channel_recv(shmrig_channel *ch, void **msg, size_t *len,
						    int timeout_ms);

/*
 * Hand the frame's blocks to the peer (needs the pool given at open), then send it.
 * Errors: as shmrig_frame_transfer and shmrig_channel_send. After
 * -ETIMEDOUT the blocks are the peer's already but the frame was not taken: send it
 * again (handing blocks to the same peer twice is a no-op) until it goes or
 * the peer is gone (-EPIPE: then reap() frees them); a frame given up while
 * the peer lives leaves its blocks to the peer, who never learns of them.
 *
 * On a channel made by accept or connect (the peer may be on another host,
 * where our segments do not exist) the payload goes with the frame (its
 * blocks must be ours, as after encode), one of two ways:
 * - flat, a payload under 1 MiB: flattened (shmrig_frame_flatten), the
 *   payload copied once into the message, the blocks freed as soon as it is;
 * - bare, from 1 MiB: the frame with its refs stripped, then each buffer's
 *   bytes sent straight from its block (buffers under 64 KiB are copied
 *   behind the one before). The segments of our pool are registered with UCX
 *   once each, when first seen (a segment the pool unmaps is unregistered
 *   before the next such send; all at close). The blocks are freed when UCX
 *   has sent them: before send_frame returns 0, unless the time ran out with
 *   the frame taken (below): then by the next send or send_frame that finds
 *   it done, or at close. Close the channel before its pool.
 * The peer's recv puts the payload in its own pool. ($SHMRIG_UCX_FRAMES=flat
 * or =bare, read when the end is made, forces one way: for tests and
 * measurements.) Errors leave the blocks in one of two states, by code:
 * - still ours, the frame untouched (send it again, or shmrig_frame_discard
 *   it): -ETIMEDOUT (what earlier sends left posted is still going: this frame
 *   was not taken); -EMSGSIZE the frame with its payload is over
 *   SHMRIG_CHANNEL_MAX_MSG; -ENOMEM; -SHMRIG_EFORK; -EINVAL, -EBADMSG,
 *   -SHMRIG_EBADREF, -SHMRIG_ECLAIMED, -EPERM and the other errors of
 *   shmrig_frame_flatten;
 * - freed, nothing left to discard: -EPIPE the peer is gone or closed its end
 *   (before the frame was taken its blocks are freed here; after, they were
 *   freed when it was flattened, or, bare, when UCX ended the sends reading
 *   them, which send_frame waits for within its timeout: if the time runs out
 *   first they go when UCX lets go of them, at the latest at close) and -EIO
 *   UCX failed (the same); the frame may not arrive. A peer whose pool has no
 *   room for the frame drops it on its side: here send_frame returns 0.
 * A frame taken when the time runs out returns 0, as for shmrig_channel_send:
 * the next send or close finishes it.
 */
SHMRIG_NODISCARD SHMRIG_API int shmrig_channel_send_frame(shmrig_channel *ch, const void *frame,
							  size_t len, int timeout_ms);

/*
 * Ends that are not parent and child ("ucx" only): one process listens, the
 * other connects; each side then has a channel as from shmrig_channel_open(),
 * the same hello included, but with no pid to watch: the peer's death is what
 * UCX reports (a lost connection at once, a silent host by keepalive, 1 s
 * unless UCX_KEEPALIVE_INTERVAL says otherwise), never a guess. Such a channel
 * carries frames flat (shmrig_channel_send_frame above): the peer may be on
 * another host, where our segments do not exist.
 * UCX needs tcp in UCX_TLS ("tcp", "tcp,self", "posix,tcp"...): for the
 * connection, and for the data too, since UCX 1.13's shared-memory transports
 * cannot report a peer's failure (with "posix,self" the listener opens but
 * every connection fails).
 * Ends accepted from one listener share its UCX worker: use the listener and
 * those ends from one thread at a time.
 *
 * address: "HOST:PORT", HOST an IPv4 literal, a name, or an IPv6 literal in
 * brackets ("[::1]:7000"); PORT 0 to listen picks a free port.
 */

/*
 * Listen on `address`. opts as for shmrig_channel_pair_create (backend NULL or
 * "ucx"; open_timeout_ms is each accepted hello's).
 * Errors: -EINVAL bad options, NULL argument, or a bad or unresolvable address
 * (the message says which); -EOPNOTSUPP another backend, or a library built
 * without UCX; -EADDRINUSE; -EADDRNOTAVAIL cannot listen there; -ENODEV UCX
 * found no usable transport; -ENOMEM.
 */
SHMRIG_NODISCARD SHMRIG_API int shmrig_channel_listen(const struct shmrig_channel_opts *opts,
						      const char *address,
						      shmrig_channel_listener **out);

/*
 * The address the listener is bound to, ephemeral port resolved ("127.0.0.1:41234",
 * "[::1]:41234"), into buf (len bytes with the NUL).
 * Errors: -EINVAL NULL argument; -ERANGE buf too small; -EIO.
 */
SHMRIG_NODISCARD SHMRIG_API int shmrig_channel_listener_address(const shmrig_channel_listener *l,
								char *buf, size_t len);

/*
 * Take the next connection, waiting at most timeout_ms for it (< 0: forever),
 * then exchange the hello (at most the listener's open timeout). pool and
 * fingerprint as for shmrig_channel_open.
 * Errors: -EINVAL; -ETIMEDOUT no connection (or no hello) in time; -EPROTO
 * version or fingerprint mismatch (both values in the message; the peer sees
 * -EPROTO too); -EPIPE the peer went away during the hello; -ECONNABORTED;
 * -ENOMEM; -SHMRIG_EFORK a listener inherited through fork.
 */
SHMRIG_NODISCARD SHMRIG_API int shmrig_channel_accept(shmrig_channel_listener *l, shmrig_pool *pool,
						      uint64_t fingerprint, int timeout_ms,
						      shmrig_channel **out);

/* Stop listening; connections not accepted are refused. Ends already accepted
 * stay open (they keep what they share with the listener). NULL is ignored. */
SHMRIG_API void shmrig_channel_listener_close(shmrig_channel_listener *l);

/*
 * Connect to a listener at `address` and exchange the hello, all within
 * timeout_ms (< 0: the options' open timeout). opts as for listen.
 * Errors: -EINVAL bad options, NULL argument, bad or unresolvable address;
 * -EOPNOTSUPP another backend, or no UCX; -ECONNREFUSED nothing listens there
 * (or it refused us); -ETIMEDOUT no hello in time (e.g. nobody accepts);
 * -EPROTO version or fingerprint mismatch; -ENODEV; -ENOMEM.
 */
SHMRIG_NODISCARD SHMRIG_API int shmrig_channel_connect(const struct shmrig_channel_opts *opts,
						       const char *address, shmrig_pool *pool,
						       uint64_t fingerprint, int timeout_ms,
						       shmrig_channel **out);

#ifdef __cplusplus
}
#endif

#endif
