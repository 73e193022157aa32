/* SPDX-License-Identifier: MIT */
/*
 * The "ucx" backend: UCP (UCX's protocol layer) over whatever transports
 * UCX_TLS allows (tcp between hosts; posix/sysv shared memory, cma, self on
 * one host). Built only with UCX (libucx-dev); without it the name is refused.
 *
 * Why the STREAM API (not TAG or AM): a listener's accepted ends share its
 * worker (a connection request can only become an endpoint of the listener's
 * worker), and tag matching is per worker, so tagged messages of two accepted
 * channels would match each other's receives; a stream belongs to its
 * endpoint. A stream keeps order, and a WAITALL receive lands straight in the
 * message's own 8-aligned buffer once its header has told the length, so
 * there is no second copy on the receiving side. AM would deliver the bytes
 * in a callback (a copy, or a rendezvous to drive from inside it).
 *
 * Framing: each message is a ucx_hdr then its bytes. A frame sent on an end
 * made by accept or connect carries its payload (the peer cannot map our
 * pool), one of two ways; the receiving recv takes either:
 *   KIND_FRAME, flat: shmrig_frame_flatten's bytes (the payload copied once,
 *     the blocks freed at once); recv unflattens them into its pool;
 *   KIND_BARE: the frame with its refs stripped (shmrig__frame_bare), then
 *     each buffer's content_size bytes back to back, unpadded; the header's
 *     len counts both. Buffers of BARE_MIN_BUFFER or more are sends of their
 *     own straight from their blocks (with the memh of their segment, which
 *     is registered with UCX once: struct ucx_reg); smaller ones are copied
 *     behind what precedes them. The blocks are freed when the sends reading
 *     them complete (struct bare_send). recv reads the frame's header, then
 *     the frame, checks it by unflatten's rules (codec/flat.h) against the
 *     message's length before allocating a block, allocates the blocks in
 *     its pool and receives each buffer straight into its block (runs of
 *     small ones into a scratch buffer, then copied); a frame it refuses is
 *     read to its end and dropped (struct bare_recv).
 * Which way: bare from BARE_MIN_PAYLOAD (1 MiB) of payload, flat below
 * ($SHMRIG_UCX_FRAMES=flat|bare forces one). Measured over UCX_TLS=tcp,self
 * on loopback (tests/bench_ucx_frames.c; 2 CPUs shared with other work, load
 * 5-6; three runs of 7-9 interleaved trials, medians; flat time / bare time):
 * 0.89-1.14 at 64 B, 0.82-1.04 at 4 KiB, 1.04-1.11 at 16 KiB, 0.88-1.09 at
 * 64 KiB, 0.90-1.03 at 256 KiB (even, within the noise), 1.05-1.37 at 1 MiB,
 * 1.20-1.33 at 16 MiB, 11-15 at 64 MiB (flat's two 64 MiB buffers, one a
 * side, are above glibc's mmap threshold: fresh pages faulted in for every
 * frame, 300-450 ms a buffer on this VM; bare uses blocks already mapped).
 * Over tcp UCX still copies: the kernel from the block into the socket (UCX
 * sends a large stream message as am_zcopy fragments of up to 64 KiB,
 * sendmsg from our buffer: ucx_info -d), and on the receiving side UCX from
 * its receive segments into our block; what bare saves is our own copies
 * (flat's buffer on both sides) and those allocations. The registration saves nothing on tcp (its memory
 * registration is a dummy), but would on transports that pin memory (rc, dc).
 * UCX 1.13 takes a memh with a send only with its first protocols (the
 * default): with UCX_PROTO_ENABLE=y nothing is registered (proto_v1).
 *
 * Two more kinds close a channel cleanly: BYE ("no more from me") and BYE_ACK
 * ("I have read up to your BYE"). A closing end waits (at most the open
 * timeout) for the ack, so that its messages are read before its endpoint
 * goes away: UCX tears down an endpoint's lanes when the peer disconnects,
 * and data still in flight on them would be lost.
 *
 * Sends: a batch is copied into chunks that UCX owns until their requests
 * complete, so a send that times out can return with its messages taken (the
 * next send or close waits for them first) and the caller's buffers free.
 * That costs one copy per message (16 MiB: a few ms); a later part may send
 * straight from the caller's buffers when it waits without a timeout.
 *
 * Waits: ucp_worker_progress, then ucp_worker_arm and poll() on the worker's
 * event fd, in slices of 100 ms; each slice ends with a liveness check of a
 * forked peer's pid. The peer's death comes from UCX otherwise: endpoints are
 * created with UCP_ERR_HANDLING_MODE_PEER, whose error callback is the only
 * thing that says "dead" (a remote peer has no pid to ask); a lost TCP
 * connection is seen at once, a silent host by UCX keepalive, which this
 * backend sets to 1 s unless UCX_KEEPALIVE_INTERVAL says otherwise.
 *
 * Ends: a forked pair exchanges worker addresses over its socketpair (made
 * before fork; every UCP object is made after it, in open(): UCX contexts must
 * not cross a fork), so it needs no port and works with shared-memory
 * transports alone. listen/connect go through UCX's sockaddr connection
 * manager (tcp), whatever transports then carry the data.
 *
 * UCX 1.13's shared-memory transports (posix, sysv) have no peer-failure
 * handling: an endpoint in UCP_ERR_HANDLING_MODE_PEER runs on tcp whenever
 * UCX_TLS allows tcp, and cannot be made at all when it does not. A forked end
 * then falls back to an endpoint without error handling (its peer's pid is
 * the witness); a listen/connect end cannot (no pid): it needs tcp.
 */
#include "transport/channel_internal.h"
#include "base/internal.h"
#include "codec/flat.h"
#include "pool/handover.h"

#include <shmrig/frame.h>

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include <ucp/api/ucp.h>

/* How long an open waits for a peer's death that would explain UCX's failure
 * to reach its worker (a process on its way out), before it says UCX's error. */
#define EP_DEATH_WAIT_MS 200
#define SLICE_MS 100
/* Progress calls a wait spins before it sleeps (~20-40 us here: a round trip on
 * shared memory is a few us; waking from poll() costs ~15 us a side). */
#define SPIN_PROGRESS 256
#define UCX_MAGIC 0x58435553u /* "SUCX" */
#define LISTEN_QUEUE 16
/* A batch is copied into chunks of about this, so that many small messages
 * are one UCX send and a large one is its own. */
#define CHUNK_BYTES (256 * 1024)

enum ucx_kind {
	KIND_DATA = 0,
	KIND_BYE = 1,
	KIND_BYE_ACK = 2,
	KIND_FRAME = 3, /* a flat frame (shmrig_frame_flatten): recv unflattens it */
	KIND_BARE = 4,  /* a bare frame, then each buffer's bytes: recv lands them in blocks */
};

/* How send_frame sends a frame to a remote end: the default picks by size
 * (BARE_MIN_PAYLOAD); $SHMRIG_UCX_FRAMES=flat or =bare forces one way (for
 * tests and measurements: tests/bench_ucx_frames.c). */
enum frame_mode {
	FRAMES_AUTO = 0,
	FRAMES_FLAT,
	FRAMES_BARE,
};
/* A frame whose payload is at least this goes bare; smaller ones flat (see
 * the top of the file for the measurement). */
#define BARE_MIN_PAYLOAD (1024 * 1024)
/* In a bare frame, a buffer under this is copied behind the frame (or the
 * buffer before it) instead of being a send of its own: a send costs more
 * than copying a few KiB, and a frame of many small buffers stays few sends. */
#define BARE_MIN_BUFFER (64 * 1024)
/* What a remote end's notes add when UCX runs its new protocols: bare frames
 * go without our registrations (UCX registers per send, from its cache). */
#define NO_REGISTRATION ", no segment registration (UCX_PROTO_ENABLE=y)"
/* A dropped bare frame's bytes are read into a scratch buffer this large, and
 * so are runs of a bare frame's small buffers, then copied to their blocks. */
#define DRAIN_BYTES (256 * 1024)

struct ucx_hdr {
	uint32_t magic;
	uint32_t kind;
	uint64_t len;
};
_Static_assert(sizeof(struct ucx_hdr) == 16, "ucx_hdr is 16 bytes on the wire");

/* A UCP context and worker: one per connected or forked end; a listener's is
 * shared with the ends it accepted (refs counts them all). */
struct ucx_host {
	ucp_context_h context;
	ucp_worker_h worker;
	int efd;
	unsigned refs;
	bool user_memh; /* sends may be given our memh (see proto_v1) */
};

/*
 * A frame sent bare: UCX reads its buffers straight from their blocks, which
 * stay ours until every send that reads one is complete (pending counts
 * them, plus one while the frame is being posted); then they are freed.
 * `f` views `frame`, our copy of the frame as the caller gave it (its refs
 * name our blocks), which the caller may free as soon as send_frame returns.
 */
struct bare_send {
	uint32_t pending;
	shmrig_pool *pool;
	struct shmrig_frame f;
	char frame[];
};
_Static_assert(offsetof(struct bare_send, frame) % 8 == 0, "the frame copy holds 8-aligned refs");

/* A posted send, the copy UCX reads from until it completes (or NULL), and
 * the bare frame whose block it reads (or NULL). */
struct send_rec {
	void *req;
	void *copy;
	struct bare_send *bare;
};

/*
 * A segment of our pool registered with UCX (ucp_mem_map), once: its memh
 * goes with every send from a block in it. Keyed by the segment's name, base
 * and size as the pool maps it now; an entry whose segment the pool no longer
 * maps so (a large segment unmapped once its block was freed: then another
 * segment may be mapped at the same address) is unmapped before the next
 * bare send looks anything up (reg_prune), and the rest at close. A memh is
 * only ever used for a block we hold, whose segment the pool cannot unmap.
 */
struct ucx_reg {
	char name[SHMRIG_NAME_MAX];
	char *base;
	size_t size;
	ucp_mem_h memh;
};

/* A bare frame being received (recv may time out between any two steps and
 * go on at the next call). */
enum bare_step {
	BARE_IDLE = 0,
	BARE_HEAD,   /* the frame's 24-byte header, into head */
	BARE_FRAME,  /* the rest of the frame, into frame */
	BARE_BUFFER, /* buffer `next`'s bytes, into its block */
	BARE_DRAIN,  /* the frame is refused: its remaining bytes are read and dropped */
};

struct bare_recv {
	enum bare_step step;
	uint64_t left; /* bytes of the message not read yet */
	struct shmrig_frame_header head;
	char *frame; /* our copy, 8-aligned; its refs name our blocks from BARE_BUFFER on */
	size_t frame_len;
	struct shmrig_frame f; /* views into frame */
	void **data;           /* where each buffer's bytes go: its block */
	bool blocks;           /* the frame's refs name blocks we allocated */
	uint32_t next;
	/* a run of small buffers [next, run_end) being received into st->drain
	 * (run_bytes bytes), or run_end 0 */
	uint32_t run_end;
	size_t run_bytes;
	int err; /* a drain's: said once the message is dropped */
	char why[512];
};

struct ucx_state {
	struct shmrig_channel *ch;
	struct ucx_host *host;
	ucp_ep_h ep;
	ucs_status_t ep_status; /* UCS_OK until the error callback says the peer is gone */
	bool peer_closed;       /* its BYE was read */
	bool acked;             /* our BYE was read */
	int64_t next_check_ms;  /* host_wait: when to ask about the forked peer's pid next */
	bool no_err_handling;   /* a forked end over transports without peer failure
				 * handling (posix, sysv): only the pid says "dead" */
	struct send_rec *sends; /* posted, not yet complete */
	uint32_t nsends;
	uint32_t sends_cap;
	enum frame_mode frames;
	struct ucx_reg *regs; /* our pool's segments registered with UCX */
	uint32_t nregs;
	uint32_t regs_cap;
	struct bare_recv bare;
	char *drain;          /* DRAIN_BYTES, made at the first drain */
	char drain_small[64]; /* ... or this, if that allocation failed */
	/* the receive in progress: a header, then the body it announced */
	void *rreq;
	bool have_hdr;
	struct ucx_hdr rhdr;
	char *body;
};

struct shmrig_channel_listener {
	struct shmrig_channel_opts opts;
	struct ucx_host *host;
	ucp_listener_h listener;
	unsigned fork_epoch;
	/* connection requests not yet accepted, oldest first */
	ucp_conn_request_h queue[LISTEN_QUEUE];
	uint32_t queued;
};

/* ---- hosts ---- */

static int ucx_fail(int err, const char *what, ucs_status_t status)
{
	return shmrig__fail(err, "channel ucx: %s: %s", what, ucs_status_string(status));
}

/*
 * Does this configuration run UCX's first protocols (UCX_PROTO_ENABLE=n, 1.13's
 * default)? Only they take a memh given with a send: with the new ones, 1.13
 * fails an assertion on a stream send that has one (ucp_request.inl). The
 * configuration as UCX parsed it (environment and config files alike), read
 * from its own printout; false if it cannot be read.
 */
static bool proto_v1(const ucp_config_t *config)
{
	static const char key[] = "UCX_PROTO_ENABLE=";
	char *text = NULL;
	size_t len = 0;
	const char *line;
	FILE *stream = open_memstream(&text, &len);
	bool v1;

	if (!stream)
		return false;
	ucp_config_print(config, stream, NULL, UCS_CONFIG_PRINT_CONFIG);
	if (fclose(stream) || !text) {
		free(text);
		return false;
	}
	line = strstr(text, key);
	/* UCX's booleans: y, yes, on, 1 and n, no, off, 0, any case */
	v1 = line &&
	     (strncasecmp(line + sizeof(key) - 1, "n", 1) == 0 ||
	      strncasecmp(line + sizeof(key) - 1, "off", 3) == 0 || line[sizeof(key) - 1] == '0');
	free(text);
	return v1;
}

static int host_new(struct ucx_host **out)
{
	ucp_params_t params = {
		.field_mask = UCP_PARAM_FIELD_FEATURES,
		.features = UCP_FEATURE_STREAM | UCP_FEATURE_WAKEUP,
	};
	ucp_worker_params_t wparams = {
		.field_mask = UCP_WORKER_PARAM_FIELD_THREAD_MODE,
		.thread_mode = UCS_THREAD_MODE_SINGLE,
	};
	struct ucx_host *h = calloc(1, sizeof(*h));
	ucp_config_t *config;
	ucs_status_t status;
	int ret;

	if (!h)
		return shmrig__fail(-ENOMEM, "channel ucx: out of memory");
	status = ucp_config_read(NULL, NULL, &config);
	if (status != UCS_OK) {
		free(h);
		return ucx_fail(-EINVAL, "ucp_config_read (check the UCX_ variables)", status);
	}
	/* UCX's default keepalive (20 s) would let a silent peer look alive
	 * for that long; the environment still wins. A failure keeps UCX's. */
	if (!getenv("UCX_KEEPALIVE_INTERVAL"))
		(void)ucp_config_modify(config, "KEEPALIVE_INTERVAL", "1s");
	h->user_memh = proto_v1(config);
	status = ucp_init(&params, config, &h->context);
	ucp_config_release(config);
	if (status != UCS_OK) {
		free(h);
		return ucx_fail(-ENODEV, "ucp_init (UCX_TLS names no usable transport?)", status);
	}
	status = ucp_worker_create(h->context, &wparams, &h->worker);
	if (status != UCS_OK) {
		ret = ucx_fail(-ENODEV, "ucp_worker_create", status);
		goto err_context;
	}
	status = ucp_worker_get_efd(h->worker, &h->efd);
	if (status != UCS_OK) {
		ret = ucx_fail(-ENODEV, "ucp_worker_get_efd", status);
		goto err_worker;
	}
	h->refs = 1;
	*out = h;
	return 0;
err_worker:
	ucp_worker_destroy(h->worker);
err_context:
	ucp_cleanup(h->context);
	free(h);
	return ret;
}

static void host_put(struct ucx_host *h)
{
	if (!h || --h->refs)
		return;
	ucp_worker_destroy(h->worker);
	ucp_cleanup(h->context);
	free(h);
}

/*
 * Progress the worker until done(arg) holds, waiting on its event fd in slices.
 * 0; -ETIMEDOUT; -EPIPE the forked peer's pid is dead; -errno from poll.
 * A failed endpoint is not checked here: the caller's done() sees its
 * requests complete with an error.
 */
static int host_wait(struct ucx_host *h, struct shmrig_channel *ch, bool (*done)(void *), void *arg,
		     int64_t start, int timeout_ms)
{
	struct ucx_state *st = ch ? ch->backend : NULL;
	unsigned busy = 0;

	/* Spin first: an answer that comes within microseconds (shared memory)
	 * is taken without the cost of sleeping on the event fd and being woken. */
	for (unsigned spin = 0; spin < SPIN_PROGRESS; spin++) {
		ucp_worker_progress(h->worker);
		if (done(arg))
			return 0;
	}
	for (;;) {
		int left, slice, ready;
		struct pollfd pfd;
		ucs_status_t status;

		while (ucp_worker_progress(h->worker))
			;
		if (done(arg))
			return 0;
		/* A forked peer's pid is a second witness, asked once a slice
		 * whatever the worker does, counted across calls (a caller that
		 * waits 100 ms or less at a time is asked too); a remote one has
		 * none (ch->remote), and "cannot tell" counts as alive. What the
		 * peer sent before it died is taken first. */
		if (ch && !ch->remote && shmrig__now_ms() >= st->next_check_ms) {
			st->next_check_ms = shmrig__now_ms() + SLICE_MS;
			if (!shmrig__channel_peer_alive(ch)) {
				while (ucp_worker_progress(h->worker))
					;
				if (done(arg))
					return 0;
				return shmrig__fail(-EPIPE, "channel ucx: peer pid %d is gone",
						    (int)ch->peer);
			}
		}
		left = shmrig__remaining_ms(start, timeout_ms);
		if (left == 0)
			return shmrig__fail(-ETIMEDOUT, "channel ucx: timed out after %d ms",
					    timeout_ms);
		slice = left < 0 || left > SLICE_MS ? SLICE_MS : left;
		status = ucp_worker_arm(h->worker);
		if (status == UCS_ERR_BUSY) {
			/* Events came in meanwhile, or a transport cannot sleep with
			 * work queued (a full shared-memory FIFO): progress again, but
			 * after a while only once a millisecond, not on a hot spin. */
			if (++busy < 64)
				continue;
			slice = 1;
		} else if (status != UCS_OK) {
			return ucx_fail(-EIO, "ucp_worker_arm", status);
		} else {
			busy = 0;
		}
		pfd = (struct pollfd){ .fd = h->efd, .events = POLLIN };
		ready = poll(&pfd, 1, slice);
		if (ready < 0 && errno != EINTR)
			return shmrig__fail(-errno, "channel ucx: poll: %s", strerror(errno));
	}
}

/* ---- endpoints ---- */

static void on_ep_error(void *arg, ucp_ep_h ep, ucs_status_t status)
{
	struct ucx_state *st = arg;

	(void)ep;
	if (st->ep_status == UCS_OK)
		st->ep_status = status == UCS_OK ? UCS_ERR_CONNECTION_RESET : status;
}

static int peer_gone(struct ucx_state *st)
{
	if (st->ch->remote)
		return shmrig__fail(-EPIPE, "channel ucx: the peer is gone (%s)",
				    ucs_status_string(st->ep_status));
	return shmrig__fail(-EPIPE, "channel ucx: peer pid %d is gone (%s)", (int)st->ch->peer,
			    ucs_status_string(st->ep_status));
}

/* An error status of one of our requests: the peer's loss, or UCX's own. */
static int request_error(struct ucx_state *st, ucs_status_t status, const char *what)
{
	if (st->ep_status != UCS_OK || status == UCS_ERR_CONNECTION_RESET ||
	    status == UCS_ERR_ENDPOINT_TIMEOUT || status == UCS_ERR_CANCELED ||
	    status == UCS_ERR_UNREACHABLE) {
		if (st->ep_status == UCS_OK)
			st->ep_status = status;
		return peer_gone(st);
	}
	return ucx_fail(-EIO, what, status);
}

static void state_fill_ep_params(struct ucx_state *st, ucp_ep_params_t *p)
{
	p->field_mask |= UCP_EP_PARAM_FIELD_ERR_HANDLING_MODE | UCP_EP_PARAM_FIELD_ERR_HANDLER;
	p->err_mode = UCP_ERR_HANDLING_MODE_PEER;
	p->err_handler.cb = on_ep_error;
	p->err_handler.arg = st;
}

static struct ucx_state *state_new(struct shmrig_channel *ch, struct ucx_host *host)
{
	struct ucx_state *st = calloc(1, sizeof(*st));
	const char *frames;

	if (!st)
		return NULL;
	frames = getenv("SHMRIG_UCX_FRAMES");

	st->ch = ch;
	st->host = host;
	st->ep_status = UCS_OK;
	/* a test's knob: anything else is the default */
	if (frames && strcmp(frames, "flat") == 0)
		st->frames = FRAMES_FLAT;
	else if (frames && strcmp(frames, "bare") == 0)
		st->frames = FRAMES_BARE;
	ch->backend = st;
	return st;
}

/* ---- sends ---- */

static bool sends_done(void *arg)
{
	struct ucx_state *st = arg;

	for (uint32_t i = 0; i < st->nsends; i++)
		if (ucp_request_check_status(st->sends[i].req) == UCS_INPROGRESS)
			return false;
	return true;
}

/* One send of a bare frame is done (or the frame is posted): its blocks are
 * freed with the last. */
static void bare_put(struct bare_send *bare)
{
	if (!bare || --bare->pending)
		return;
	shmrig__frame_release(bare->pool, &bare->f);
	free(bare);
}

/* Release the completed sends; the first error among them, or 0. */
static int sends_collect(struct ucx_state *st)
{
	int ret = 0;
	uint32_t kept = 0;

	for (uint32_t i = 0; i < st->nsends; i++) {
		struct send_rec *rec = &st->sends[i];
		ucs_status_t status = ucp_request_check_status(rec->req);

		if (status == UCS_INPROGRESS) {
			st->sends[kept++] = *rec;
			continue;
		}
		if (status != UCS_OK && !ret)
			ret = request_error(st, status, "stream send");
		ucp_request_free(rec->req);
		free(rec->copy);
		bare_put(rec->bare);
	}
	st->nsends = kept;
	return ret;
}

/* Wait for every posted send: 0, -ETIMEDOUT (they stay posted), -EPIPE... */
static int sends_wait(struct ucx_state *st, int64_t start, int timeout_ms)
{
	int ret = host_wait(st->host, st->ch, sends_done, st, start, timeout_ms);
	int err = sends_collect(st);

	return err ? err : ret;
}

/* Room for n more posted sends: after this, posting n chunks cannot fail for memory. */
static int sends_reserve(struct ucx_state *st, uint32_t n)
{
	uint32_t cap = st->sends_cap ? st->sends_cap : 16;
	struct send_rec *grown;

	while (cap - st->nsends < n)
		cap *= 2;
	if (cap == st->sends_cap)
		return 0;
	grown = realloc(st->sends, cap * sizeof(*grown));
	if (!grown)
		return shmrig__fail(-ENOMEM, "channel ucx: out of memory");
	st->sends = grown;
	st->sends_cap = cap;
	return 0;
}

/* Post one chunk (UCX reads it until the request completes; we free it then). */
static int post_chunk(struct ucx_state *st, void *copy, size_t len)
{
	ucp_request_param_t param = { .op_attr_mask = 0 };
	ucs_status_ptr_t req;
	int ret = sends_reserve(st, 1);

	if (ret) {
		free(copy);
		return ret;
	}
	req = ucp_stream_send_nbx(st->ep, copy, len, &param);
	if (req == NULL) { /* done already: UCX copied it */
		free(copy);
		return 0;
	}
	if (UCS_PTR_IS_ERR(req)) {
		free(copy);
		return request_error(st, UCS_PTR_STATUS(req), "stream send");
	}
	st->sends[st->nsends++] = (struct send_rec){ .req = req, .copy = copy };
	return 0;
}

/* Post len bytes of a bare frame's block (memh: its segment's registration,
 * or NULL); the block stays the frame's until the send completes. Room for
 * the record was reserved. */
static int post_block(struct ucx_state *st, const void *data, size_t len, ucp_mem_h memh,
		      struct bare_send *bare)
{
	ucp_request_param_t param = { .op_attr_mask = memh ? UCP_OP_ATTR_FIELD_MEMH : 0,
				      .memh = memh };
	ucs_status_ptr_t req = ucp_stream_send_nbx(st->ep, data, len, &param);

	if (req == NULL) /* done already: UCX is through with the block */
		return 0;
	if (UCS_PTR_IS_ERR(req))
		return request_error(st, UCS_PTR_STATUS(req), "stream send");
	bare->pending++;
	st->sends[st->nsends++] = (struct send_rec){ .req = req, .bare = bare };
	return 0;
}

/* Copy messages [first, end) of a batch, each behind its header, into one chunk and post it. */
static int post_messages(struct ucx_state *st, uint32_t kind, const void *const *msgs,
			 const size_t *lens, uint32_t first, uint32_t end)
{
	size_t total = 0, off = 0;
	char *copy;

	for (uint32_t i = first; i < end; i++)
		total += sizeof(struct ucx_hdr) + lens[i];
	copy = malloc(total);
	if (!copy)
		return shmrig__fail(-ENOMEM, "channel ucx: out of memory for %zu bytes", total);
	for (uint32_t i = first; i < end; i++) {
		struct ucx_hdr hdr = { .magic = UCX_MAGIC, .kind = kind, .len = lens[i] };

		memcpy(copy + off, &hdr, sizeof(hdr));
		off += sizeof(hdr);
		if (lens[i])
			memcpy(copy + off, msgs[i], lens[i]);
		off += lens[i];
	}
	return post_chunk(st, copy, total);
}

static int post_control(struct ucx_state *st, uint32_t kind)
{
	size_t zero = 0;
	const void *none = NULL;

	return post_messages(st, kind, &none, &zero, 0, 1);
}

static int ucx_sendv(struct shmrig_channel *ch, const void *const *msgs, const size_t *lens,
		     uint32_t n, int timeout_ms)
{
	struct ucx_state *st = ch->backend;
	int64_t start = shmrig__now_ms();
	uint32_t first = 0;
	int ret;

	if (st->ep_status != UCS_OK)
		return peer_gone(st);
	if (st->peer_closed)
		return ch->remote ? shmrig__fail(-EPIPE, "channel ucx: the peer closed its end") :
				    shmrig__fail(-EPIPE, "channel ucx: peer pid %d closed its end",
						 (int)ch->peer);
	/* What an earlier call left posted goes first; until it has, this batch
	 * is not taken. */
	ret = sends_wait(st, start, timeout_ms);
	if (ret)
		return ret;
	while (first < n) {
		size_t bytes = sizeof(struct ucx_hdr) + lens[first];
		uint32_t end = first + 1;

		while (end < n && bytes + sizeof(struct ucx_hdr) + lens[end] <= CHUNK_BYTES)
			bytes += sizeof(struct ucx_hdr) + lens[end++];
		ret = post_messages(st, KIND_DATA, msgs, lens, first, end);
		if (ret)
			return ret;
		first = end;
	}
	/* All taken: a timeout now leaves them posted for the next call. */
	ret = sends_wait(st, start, timeout_ms);
	return ret == -ETIMEDOUT ? 0 : ret;
}

/* ---- frames to an end that cannot map our pool ---- */

/* A frame whose flat form (shmrig_frame_flatten) is over SHMRIG_CHANNEL_MAX_MSG:
 * -EMSGSIZE, said before anything is taken; a frame that does not parse is
 * left to flatten to refuse. */
static int flat_fits(const void *frame, size_t len)
{
	struct shmrig_frame f;
	uint64_t total = ((uint64_t)len + 7) & ~(uint64_t)7;

	if (shmrig_frame_parse(frame, len, &f))
		return 0;
	/* total stays at most twice the limit: no overflow */
	for (uint32_t i = 0; i < f.nbuffers && total <= SHMRIG_CHANNEL_MAX_MSG; i++) {
		uint64_t content_size = f.buffers[i].content_size;

		if (content_size > SHMRIG_CHANNEL_MAX_MSG)
			total = SHMRIG_CHANNEL_MAX_MSG + 1;
		else
			total += (content_size + 7) & ~(uint64_t)7;
	}
	if (total > SHMRIG_CHANNEL_MAX_MSG)
		return shmrig__fail(-EMSGSIZE,
				    "channel_send_frame: the frame with its payload is over %zu "
				    "bytes (SHMRIG_CHANNEL_MAX_MSG)",
				    SHMRIG_CHANNEL_MAX_MSG);
	return 0;
}

/* The peer is gone before the frame was taken: its blocks are freed here, so
 * that -EPIPE says one thing whenever it comes (channel.h). */
static int frame_lost(struct shmrig_channel *ch, const void *frame, size_t len, int err)
{
	char why[512];

	snprintf(why, sizeof(why), "%s", shmrig_last_error());
	(void)!shmrig_frame_discard(ch->pool, frame, len); /* best effort: a bad frame held none */
	return shmrig__fail(err, "%s (the frame's blocks are freed)", why);
}

/* The frame goes flat: one copy of the payload (shmrig_frame_flatten), the
 * blocks freed as soon as it is made. */
static int send_flat(struct shmrig_channel *ch, const void *frame, size_t len)
{
	struct ucx_state *st = ch->backend;
	struct ucx_hdr *hdr;
	size_t flat_len;
	void *flat;
	int ret;

	/* Every allocation before the flatten: once it has released the
	 * blocks, only the peer's loss or UCX's own failure can stop the send. */
	ret = sends_reserve(st, 2);
	if (ret)
		return ret;
	hdr = malloc(sizeof(*hdr));
	if (!hdr)
		return shmrig__fail(-ENOMEM, "channel ucx: out of memory");
	ret = shmrig_frame_flatten(ch->pool, frame, len, &flat, &flat_len);
	if (ret) {
		free(hdr);
		return ret;
	}
	*hdr = (struct ucx_hdr){ .magic = UCX_MAGIC, .kind = KIND_FRAME, .len = flat_len };
	/* A small frame goes behind its header, one send (a send costs more
	 * than copying a few KiB)... */
	if (sizeof(*hdr) + flat_len <= CHUNK_BYTES) {
		char *chunk = malloc(sizeof(*hdr) + flat_len);

		if (chunk) {
			memcpy(chunk, hdr, sizeof(*hdr));
			memcpy(chunk + sizeof(*hdr), flat, flat_len);
			free(hdr);
			free(flat);
			return post_chunk(st, chunk, sizeof(*hdr) + flat_len);
		}
	}
	/* ... a larger one as two sends, one after the other on the stream:
	 * the header, then the flat bytes themselves (no second copy). */
	ret = post_chunk(st, hdr, sizeof(*hdr));
	if (ret) {
		free(flat);
		return ret;
	}
	return post_chunk(st, flat, flat_len);
}

/* ---- registrations of our pool's segments ---- */

static void reg_drop(struct ucx_state *st, uint32_t i)
{
	/* best effort: a memh UCX will not unmap is UCX's to leak */
	(void)ucp_mem_unmap(st->host->context, st->regs[i].memh);
	st->regs[i] = st->regs[--st->nregs];
}

/* Unmap the registrations of segments the pool no longer maps as they were
 * registered (a large segment it unmapped, maybe another at its address). */
static void reg_prune(struct ucx_state *st, shmrig_pool *pool)
{
	for (uint32_t i = 0; i < st->nregs;) {
		void *base;
		size_t size;

		if (shmrig__pool_seg_span(pool, st->regs[i].name, &base, &size) ||
		    base != st->regs[i].base || size != st->regs[i].size)
			reg_drop(st, i);
		else
			i++;
	}
}

/*
 * The memh of the segment holding a block of ours (`ref`, which we hold, so
 * the pool keeps its segment mapped), registered the first time the segment
 * is seen. NULL if UCX would not register it: the send goes without, and
 * UCX registers what its transport needs per send.
 */
static ucp_mem_h reg_lookup(struct ucx_state *st, shmrig_pool *pool, const struct shmrig_ref *ref)
{
	ucp_mem_map_params_t params = { .field_mask = UCP_MEM_MAP_PARAM_FIELD_ADDRESS |
						      UCP_MEM_MAP_PARAM_FIELD_LENGTH };
	struct ucx_reg *reg;
	void *base;
	size_t size;

	if (!st->host->user_memh)
		return NULL; /* UCX registers what it needs itself (its cache) */
	for (uint32_t i = 0; i < st->nregs; i++)
		if (strncmp(st->regs[i].name, ref->name, SHMRIG_NAME_MAX) == 0)
			return st->regs[i].memh; /* reg_prune checked its mapping */
	if (shmrig__pool_seg_span(pool, ref->name, &base, &size))
		return NULL;
	if (st->nregs == st->regs_cap) {
		uint32_t cap = st->regs_cap ? 2 * st->regs_cap : 16;
		struct ucx_reg *grown = realloc(st->regs, cap * sizeof(*grown));

		if (!grown)
			return NULL;
		st->regs = grown;
		st->regs_cap = cap;
	}
	reg = &st->regs[st->nregs];
	params.address = base;
	params.length = size;
	if (ucp_mem_map(st->host->context, &params, &reg->memh) != UCS_OK)
		return NULL;
	snprintf(reg->name, sizeof(reg->name), "%s", ref->name);
	reg->base = base;
	reg->size = size;
	st->nregs++;
	return reg->memh;
}

int shmrig__ucx_send_raw(struct shmrig_channel *ch, uint32_t kind, uint64_t hdr_len,
			 const void *bytes, size_t len)
{
	struct ucx_state *st = ch->backend;
	struct ucx_hdr hdr = { .magic = UCX_MAGIC, .kind = kind, .len = hdr_len };
	char *chunk = malloc(sizeof(hdr) + len);
	int ret;

	if (!chunk)
		return shmrig__fail(-ENOMEM, "channel ucx: out of memory");
	memcpy(chunk, &hdr, sizeof(hdr));
	if (len)
		memcpy(chunk + sizeof(hdr), bytes, len);
	ret = post_chunk(st, chunk, sizeof(hdr) + len);
	return ret ? ret : sends_wait(st, shmrig__now_ms(), ch->opts.open_timeout_ms);
}

uint32_t shmrig__ucx_registered(const struct shmrig_channel *ch, const char *name)
{
	const struct ucx_state *st = ch->backend;

	if (!name)
		return st->nregs;
	for (uint32_t i = 0; i < st->nregs; i++)
		if (strncmp(st->regs[i].name, name, SHMRIG_NAME_MAX) == 0)
			return 1;
	return 0;
}

/* ---- bare frames: each buffer sent straight from its block ---- */

/*
 * The frame goes bare: the header and the frame with its refs stripped
 * (shmrig__frame_bare), then each buffer's content_size bytes, back to back.
 * A buffer of BARE_MIN_BUFFER or more is a send of its own straight from its
 * block (with its segment's memh); smaller ones are copied behind what comes
 * before them, into chunks as sendv makes. The blocks stay ours until the
 * sends that read them complete (struct bare_send).
 */
static int send_bare(struct shmrig_channel *ch, const void *frame, size_t len,
		     const struct shmrig_frame *parsed)
{
	struct ucx_state *st = ch->backend;
	uint32_t n = parsed->nbuffers, nchunks = 1, nblocks = 0;
	size_t chunk_bytes = sizeof(struct ucx_hdr) + len, payload = 0;
	size_t *chunk_len;
	char **chunks;
	void **data;
	struct bare_send *bare;
	uint32_t c = 0;
	size_t off;
	int ret;

	/* The pieces first, and every allocation: nothing is taken before the
	 * frame is known to go. Chunk k is what comes before big buffer k. */
	for (uint32_t i = 0; i < n; i++) {
		size_t content_size = (size_t)parsed->buffers[i].content_size;

		payload += content_size;
		if (content_size >= BARE_MIN_BUFFER) {
			nblocks++;
			nchunks++;
		}
	}
	chunk_len = calloc(nchunks, sizeof(*chunk_len));
	chunks = calloc(nchunks, sizeof(*chunks));
	data = malloc((n ? n : 1) * sizeof(*data));
	bare = malloc(sizeof(*bare) + len);
	if (!chunk_len || !chunks || !data || !bare) {
		ret = shmrig__fail(-ENOMEM, "channel ucx: out of memory");
		goto out;
	}
	for (uint32_t i = 0; i < n; i++) {
		size_t content_size = (size_t)parsed->buffers[i].content_size;

		if (content_size >= BARE_MIN_BUFFER) {
			chunk_len[c++] = chunk_bytes;
			chunk_bytes = 0;
		} else {
			chunk_bytes += content_size;
		}
	}
	chunk_len[c] = chunk_bytes;
	for (c = 0; c < nchunks; c++)
		if (chunk_len[c] && !(chunks[c] = malloc(chunk_len[c]))) {
			ret = shmrig__fail(-ENOMEM, "channel ucx: out of memory for %zu bytes",
					   chunk_len[c]);
			goto out;
		}
	ret = sends_reserve(st, nchunks + nblocks);
	if (ret)
		goto out;
	ret = shmrig__frame_take(ch->pool, frame, len, &bare->f, data);
	if (ret)
		goto out;
	/* Taken: from here the blocks are the bare frame's, freed when UCX is
	 * through with them, whatever happens. */
	memcpy(bare->frame, frame, len);
	bare->f.buffers =
		(const struct shmrig_ref *)(bare->frame + sizeof(struct shmrig_frame_header));
	bare->pool = ch->pool;
	bare->pending = 1;
	*(struct ucx_hdr *)chunks[0] =
		(struct ucx_hdr){ .magic = UCX_MAGIC, .kind = KIND_BARE, .len = len + payload };
	shmrig__frame_bare(frame, len, chunks[0] + sizeof(struct ucx_hdr));
	reg_prune(st, ch->pool);
	c = 0;
	off = sizeof(struct ucx_hdr) + len;
	for (uint32_t i = 0; i <= n; i++) {
		size_t content_size = i < n ? (size_t)bare->f.buffers[i].content_size : 0;

		if (i < n && content_size < BARE_MIN_BUFFER) {
			if (content_size)
				memcpy(chunks[c] + off, data[i], content_size);
			off += content_size;
			continue;
		}
		/* the chunk before this big buffer (or the last one) */
		if (chunk_len[c]) {
			char *chunk = chunks[c];

			chunks[c] = NULL;
			ret = post_chunk(st, chunk, chunk_len[c]);
			if (ret)
				break;
		}
		c++;
		off = 0;
		if (i < n) {
			ret = post_block(st, data[i], content_size,
					 reg_lookup(st, ch->pool, &bare->f.buffers[i]), bare);
			if (ret)
				break;
		}
	}
	bare_put(bare); /* posted (or not, on error): the sends hold it now */
	bare = NULL;
	if (ret && ret != -EPIPE && ret != -EIO) {
		char why[512];

		snprintf(why, sizeof(why), "%s", shmrig_last_error());
		ret = shmrig__fail(-EIO, "channel ucx: sending a frame: %s", why);
	}
out:
	if (chunks)
		for (c = 0; c < nchunks; c++)
			free(chunks[c]);
	free(chunks);
	free(chunk_len);
	free(data);
	free(bare);
	return ret;
}

int shmrig__ucx_send_frame(struct shmrig_channel *ch, const void *frame, size_t len, int timeout_ms)
{
	struct ucx_state *st = ch->backend;
	int64_t start = shmrig__now_ms();
	struct shmrig_frame f;
	bool bare;
	int ret;

	if (st->ep_status != UCS_OK)
		return frame_lost(ch, frame, len, peer_gone(st));
	if (st->peer_closed)
		return frame_lost(ch, frame, len,
				  shmrig__fail(-EPIPE, "channel ucx: the peer closed its end"));
	ret = flat_fits(frame, len);
	if (ret)
		return ret;
	/* What an earlier call left posted goes first; until it has, this frame
	 * is not taken and its blocks stay ours. */
	ret = sends_wait(st, start, timeout_ms);
	if (ret == -ETIMEDOUT)
		return ret;
	if (ret)
		return frame_lost(ch, frame, len, ret == -EPIPE ? ret : -EIO);
	/* a frame that does not parse goes the flat way, which refuses it */
	bare = st->frames == FRAMES_BARE;
	if (st->frames == FRAMES_AUTO && shmrig_frame_parse(frame, len, &f) == 0) {
		uint64_t payload = 0;

		for (uint32_t i = 0; i < f.nbuffers; i++)
			payload += f.buffers[i].content_size; /* flat_fits bounded each */
		bare = payload >= BARE_MIN_PAYLOAD;
	}
	if (bare) {
		ret = shmrig_frame_parse(frame, len, &f);
		if (ret)
			return ret;
		ret = send_bare(ch, frame, len, &f);
		/* Lost half way: UCX ends the sends it has (with an error) once it
		 * knows the peer is gone, and they free the blocks; wait for that,
		 * so that -EPIPE finds nothing of the frame left here. */
		if (ret == -EPIPE || ret == -EIO)
			(void)sends_wait(st, start, timeout_ms);
	} else {
		ret = send_flat(ch, frame, len);
	}
	if (ret)
		return ret;
	/* taken: a timeout now leaves it posted for the next call */
	ret = sends_wait(st, start, timeout_ms);
	if (ret == -ETIMEDOUT)
		ret = 0;
	if (ret && ret != -EPIPE && ret != -EIO) {
		char why[512];

		snprintf(why, sizeof(why), "%s", shmrig_last_error());
		ret = shmrig__fail(-EIO, "channel ucx: sending a frame: %s", why);
	}
	return ret;
}

/* ---- receives ---- */

static bool recv_done(void *arg)
{
	struct ucx_state *st = arg;

	return ucp_request_check_status(st->rreq) != UCS_INPROGRESS;
}

/* Receive exactly len bytes into buf (WAITALL), waiting as needed. A receive
 * that times out stays posted (into our own buffer) and the next call waits
 * on it again. */
static int recv_exact(struct ucx_state *st, void *buf, size_t len, int64_t start, int timeout_ms)
{
	ucs_status_t status;
	int ret;

	if (!st->rreq) {
		ucp_request_param_t param = { .op_attr_mask = UCP_OP_ATTR_FIELD_FLAGS,
					      .flags = UCP_STREAM_RECV_FLAG_WAITALL };
		size_t got = 0;
		ucs_status_ptr_t req;

		/* A failed endpoint may still hold what a forked peer sent
		 * before it died (its pid bounds the wait); a remote one's
		 * receive would wait for ever: UCX does not fail it. */
		if (st->ep_status != UCS_OK && st->ch->remote)
			return peer_gone(st);
		req = ucp_stream_recv_nbx(st->ep, buf, len, &got, &param);
		if (req == NULL)
			return 0;
		if (UCS_PTR_IS_ERR(req))
			return request_error(st, UCS_PTR_STATUS(req), "stream receive");
		st->rreq = req;
	}
	ret = host_wait(st->host, st->ch, recv_done, st, start, timeout_ms);
	if (ret)
		return ret;
	status = ucp_request_check_status(st->rreq);
	ucp_request_free(st->rreq);
	st->rreq = NULL;
	return status == UCS_OK ? 0 : request_error(st, status, "stream receive");
}

/* The next message of any kind: its header in st->rhdr, a data or flat frame
 * message's body in *msg (NULL for the others; a bare frame's is read by
 * bare_recv, st->bare.step set). */
static int read_next(struct ucx_state *st, void **msg, int64_t start, int timeout_ms)
{
	int ret;

	if (!st->have_hdr) {
		ret = recv_exact(st, &st->rhdr, sizeof(st->rhdr), start, timeout_ms);
		if (ret)
			return ret;
		if (st->rhdr.magic != UCX_MAGIC || st->rhdr.kind > KIND_BARE ||
		    st->rhdr.len > SHMRIG_CHANNEL_MAX_MSG ||
		    (st->rhdr.kind == KIND_BARE &&
		     st->rhdr.len < sizeof(struct shmrig_frame_header)) ||
		    (st->rhdr.kind != KIND_DATA && st->rhdr.kind != KIND_FRAME &&
		     st->rhdr.kind != KIND_BARE && st->rhdr.len))
			return shmrig__fail(-EBADMSG,
					    "channel ucx: corrupt stream (magic %08x, kind %u, "
					    "length %llu)",
					    st->rhdr.magic, st->rhdr.kind,
					    (unsigned long long)st->rhdr.len);
		if (st->rhdr.kind == KIND_BARE) {
			/* read by steps, straight into blocks: bare_recv */
			st->bare.step = BARE_HEAD;
			st->bare.left = st->rhdr.len;
			*msg = NULL;
			return 0;
		}
		if (st->rhdr.kind != KIND_DATA && st->rhdr.kind != KIND_FRAME) {
			*msg = NULL;
			return 0;
		}
		st->body = shmrig__msg_alloc(st->rhdr.len);
		if (!st->body)
			return shmrig__fail(-ENOMEM, "channel ucx: out of memory for %llu bytes",
					    (unsigned long long)st->rhdr.len);
		st->have_hdr = true;
	}
	if (st->rhdr.len) {
		ret = recv_exact(st, st->body, st->rhdr.len, start, timeout_ms);
		if (ret)
			return ret;
	}
	*msg = st->body;
	st->body = NULL;
	st->have_hdr = false;
	return 0;
}

/*
 * A flat frame read into *msg (st->rhdr.len bytes): into our pool, and *msg
 * becomes the frame. Whatever fails, the flat bytes go: the message is
 * dropped, and the stream goes on with the next one.
 */
static int recv_frame(struct shmrig_channel *ch, void **msg, size_t *len)
{
	struct ucx_state *st = ch->backend;
	void *flat = *msg;
	int ret;

	*msg = NULL;
	if (!ch->pool) {
		free(flat);
		return shmrig__fail(-EINVAL,
				    "channel ucx: the peer sent a frame (%llu bytes with its "
				    "payload) and this channel has no pool to put its blocks in "
				    "(accept or connect was given none): the frame is dropped",
				    (unsigned long long)st->rhdr.len);
	}
	ret = shmrig_frame_unflatten(ch->pool, flat, st->rhdr.len, msg, len);
	free(flat);
	if (ret) {
		char why[512];

		*msg = NULL;
		snprintf(why, sizeof(why), "%s", shmrig_last_error());
		return shmrig__fail(ret, "channel ucx: a frame from the peer is dropped: %s", why);
	}
	return 0;
}

/* ---- bare frames: each buffer's bytes straight into its block ---- */

/* Forget the bare frame being received: its blocks freed (if any), our copy
 * too. Only once no receive is posted into them. */
static void bare_reset(struct ucx_state *st, shmrig_pool *pool)
{
	struct bare_recv *b = &st->bare;

	if (b->blocks)
		(void)!shmrig_frame_discard(pool, b->frame, b->frame_len); /* best effort */
	free(b->frame);
	free(b->data);
	*b = (struct bare_recv){ .step = BARE_IDLE };
}

/* The frame is refused (the error just failed, err): the rest of its bytes
 * are read and dropped, and then recv says why. */
static void bare_refuse(struct ucx_state *st, shmrig_pool *pool, int err)
{
	struct bare_recv *b = &st->bare;
	uint64_t left = b->left;

	bare_reset(st, pool); /* no block is allocated before a refusal */
	snprintf(b->why, sizeof(b->why), "%s", shmrig_last_error());
	b->step = BARE_DRAIN;
	b->left = left;
	b->err = err;
	if (!st->drain)
		st->drain = malloc(DRAIN_BYTES); /* else drain_small: slower, never fails */
}

/*
 * Go on with the bare frame being received: 0 with *msg, *len (the frame,
 * its refs naming blocks of our pool handed to us unclaimed, as recv_frame
 * gives), or an error. -ETIMEDOUT leaves everything as it is for the next
 * call. A frame refused (the same rules as shmrig_frame_unflatten: every
 * count and size checked against the message's length before a block is
 * allocated) is drained and dropped, and its error said: -EBADMSG, -ENOMEM,
 * -EINVAL (no pool). The peer's loss half way: -EPIPE, the blocks freed.
 */
static int bare_recv(struct shmrig_channel *ch, void **msg, size_t *len, int64_t start,
		     int timeout_ms)
{
	struct ucx_state *st = ch->backend;
	struct bare_recv *b = &st->bare;
	uint64_t payload;
	int ret = 0;

	switch (b->step) {
	case BARE_HEAD:
		ret = recv_exact(st, &b->head, sizeof(b->head), start, timeout_ms);
		if (ret)
			break;
		b->left -= sizeof(b->head);
		b->frame_len = shmrig_frame_size(b->head.nbuffers, b->head.meta_len);
		if (!b->frame_len || b->frame_len - sizeof(b->head) > b->left) {
			bare_refuse(st, ch->pool,
				    shmrig__fail(-EBADMSG,
						 "flat frame: its header says %u buffers and %u "
						 "meta bytes, more than its %llu bytes hold",
						 b->head.nbuffers, b->head.meta_len,
						 (unsigned long long)st->rhdr.len));
			return bare_recv(ch, msg, len, start, timeout_ms);
		}
		b->frame = malloc((b->frame_len + 7) & ~(size_t)7);
		if (!b->frame) {
			bare_refuse(st, ch->pool,
				    shmrig__fail(-ENOMEM,
						 "channel ucx: out of memory for %zu bytes",
						 b->frame_len));
			return bare_recv(ch, msg, len, start, timeout_ms);
		}
		memcpy(b->frame, &b->head, sizeof(b->head));
		b->step = BARE_FRAME;
		/* fall through */
	case BARE_FRAME:
		if (b->frame_len > sizeof(b->head)) {
			ret = recv_exact(st, b->frame + sizeof(b->head),
					 b->frame_len - sizeof(b->head), start, timeout_ms);
			if (ret)
				break;
		}
		b->left -= b->frame_len - sizeof(b->head);
		/* The same rules as unflatten's, on our own copy; the payload is
		 * what the message has left, exactly. */
		ret = shmrig__frame_check_bare(b->frame, b->frame_len, b->left, &b->f, &payload);
		if (!ret && payload != b->left)
			ret = shmrig__fail(-EBADMSG,
					   "flat frame: %llu bytes after the frame, its buffers "
					   "hold %llu",
					   (unsigned long long)b->left,
					   (unsigned long long)payload);
		if (!ret && !ch->pool)
			ret = shmrig__fail(-EINVAL,
					   "channel ucx: the peer sent a frame (%llu bytes with its "
					   "payload) and this channel has no pool to put its blocks "
					   "in (accept or connect was given none)",
					   (unsigned long long)st->rhdr.len);
		if (!ret) {
			b->data = malloc((b->f.nbuffers ? b->f.nbuffers : 1) * sizeof(*b->data));
			if (!b->data)
				ret = shmrig__fail(-ENOMEM, "channel ucx: out of memory");
		}
		if (!ret)
			ret = shmrig__frame_bare_blocks(ch->pool, b->frame, &b->f, b->data);
		if (ret) {
			bare_refuse(st, ch->pool, ret);
			return bare_recv(ch, msg, len, start, timeout_ms);
		}
		b->blocks = true;
		b->next = 0;
		b->step = BARE_BUFFER;
		/* fall through */
	case BARE_BUFFER:
		while (b->next < b->f.nbuffers) {
			size_t content_size = (size_t)b->f.buffers[b->next].content_size;

			if (!b->run_end && content_size < BARE_MIN_BUFFER &&
			    (st->drain || (st->drain = malloc(DRAIN_BYTES)))) {
				/* A run of small buffers: one receive into the scratch
				 * buffer, then a copy into each block (as the sender
				 * copied them behind one another): a receive costs
				 * more than copying a few KiB. */
				b->run_end = b->next;
				b->run_bytes = 0;
				while (b->run_end < b->f.nbuffers) {
					uint64_t next_size = b->f.buffers[b->run_end].content_size;

					if (next_size >= BARE_MIN_BUFFER ||
					    b->run_bytes + next_size > DRAIN_BYTES)
						break;
					b->run_bytes += (size_t)next_size;
					b->run_end++;
				}
			}
			if (b->run_end) {
				size_t off = 0;

				if (b->run_bytes) {
					ret = recv_exact(st, st->drain, b->run_bytes, start,
							 timeout_ms);
					if (ret)
						break;
				}
				for (; b->next < b->run_end; b->next++) {
					size_t size = (size_t)b->f.buffers[b->next].content_size;

					if (size)
						memcpy(b->data[b->next], st->drain + off, size);
					off += size;
				}
				b->left -= b->run_bytes;
				b->run_end = 0;
				continue;
			}
			if (content_size) {
				ret = recv_exact(st, b->data[b->next], content_size, start,
						 timeout_ms);
				if (ret)
					break;
				b->left -= content_size;
			}
			b->next++;
		}
		if (ret)
			break;
		*msg = b->frame;
		*len = b->frame_len;
		b->frame = NULL;
		b->blocks = false; /* the caller's now */
		bare_reset(st, ch->pool);
		return 0;
	case BARE_DRAIN:
		while (b->left) {
			char *into = st->drain ? st->drain : st->drain_small;
			size_t cap = st->drain ? DRAIN_BYTES : sizeof(st->drain_small);
			size_t n = b->left < cap ? (size_t)b->left : cap;

			ret = recv_exact(st, into, n, start, timeout_ms);
			if (ret)
				break;
			b->left -= n;
		}
		if (ret)
			break;
		ret = shmrig__fail(b->err, "channel ucx: a frame from the peer is dropped: %s",
				   b->why);
		bare_reset(st, ch->pool);
		return ret;
	case BARE_IDLE:
		return shmrig__fail(-EIO, "channel ucx: no bare frame is being received");
	}
	/* A receive failed. A timeout keeps it all for the next call; anything
	 * else ends the frame (its blocks freed), unless a receive is still
	 * posted into it: then close frees them, once UCX has let go. */
	if (ret != -ETIMEDOUT && !st->rreq)
		bare_reset(st, ch->pool);
	return ret;
}

static int ucx_recv(struct shmrig_channel *ch, void **msg, size_t *len, int timeout_ms)
{
	struct ucx_state *st = ch->backend;
	int64_t start = shmrig__now_ms();

	for (;;) {
		int ret;

		if (st->peer_closed)
			return ch->remote ? shmrig__fail(-EPIPE,
							 "channel ucx: the peer closed its end") :
					    shmrig__fail(-EPIPE,
							 "channel ucx: peer pid %d closed its end",
							 (int)ch->peer);
		/* a bare frame a timeout left half read goes on first */
		if (st->bare.step != BARE_IDLE)
			return bare_recv(ch, msg, len, start, timeout_ms);
		ret = read_next(st, msg, start, timeout_ms);
		if (ret)
			return ret;
		switch (st->rhdr.kind) {
		case KIND_DATA:
			*len = st->rhdr.len;
			return 0;
		case KIND_FRAME:
			return recv_frame(ch, msg, len);
		case KIND_BARE:
			return bare_recv(ch, msg, len, start, timeout_ms);
		case KIND_BYE:
			/* the peer waits for this before it lets its endpoint go */
			st->peer_closed = true;
			(void)post_control(st, KIND_BYE_ACK);
			break;
		default:
			st->acked = true;
			break;
		}
	}
}

/* ---- open and close ---- */

static int ucx_pair_create(struct shmrig_channel_pair *pair)
{
	return shmrig__channel_socketpair(pair);
}

static void ucx_pair_free(struct shmrig_channel_pair *pair)
{
	(void)pair;
}

/* Write all of buf to the (non-blocking) socket, waiting as needed. */
static int oob_write(struct shmrig_channel *ch, const void *buf, size_t len, int64_t start)
{
	size_t done = 0;

	while (done < len) {
		ssize_t n = send(ch->fd, (const char *)buf + done, len - done, MSG_NOSIGNAL);
		int ret;

		if (n > 0) {
			done += (size_t)n;
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno != EAGAIN)
			return shmrig__fail(errno == EPIPE || errno == ECONNRESET ? -EPIPE : -errno,
					    "channel ucx: sending our address: %s",
					    strerror(errno));
		ret = shmrig__channel_wait_fd(ch, POLLOUT, start, ch->opts.open_timeout_ms);
		if (ret)
			return ret;
	}
	return 0;
}

static int oob_read(struct shmrig_channel *ch, void *buf, size_t len, int64_t start)
{
	size_t done = 0;

	while (done < len) {
		ssize_t n = read(ch->fd, (char *)buf + done, len - done);
		int ret;

		if (n > 0) {
			done += (size_t)n;
			continue;
		}
		if (n == 0)
			return shmrig__fail(-EPIPE, "channel ucx: peer pid %d closed its end",
					    (int)ch->peer);
		if (errno == EINTR)
			continue;
		if (errno == ECONNRESET)
			return shmrig__fail(-EPIPE, "channel ucx: peer pid %d is gone (%s)",
					    (int)ch->peer, strerror(errno));
		if (errno != EAGAIN)
			return shmrig__fail(-errno, "channel ucx: reading the peer's address: %s",
					    strerror(errno));
		ret = shmrig__channel_wait_fd(ch, POLLIN, start, ch->opts.open_timeout_ms);
		if (ret)
			return ret;
	}
	return 0;
}

/* A forked end: swap worker addresses over the socketpair, then connect to the peer's. */
static int ucx_open(struct shmrig_channel *ch, struct shmrig_channel_pair *pair)
{
	int64_t start = shmrig__now_ms();
	ucp_ep_params_t ep_params = { .field_mask = UCP_EP_PARAM_FIELD_REMOTE_ADDRESS };
	ucp_address_t *mine = NULL;
	size_t mine_len = 0;
	uint64_t theirs_len, wire_len;
	struct ucx_state *st;
	struct ucx_host *host;
	void *theirs;
	ucs_status_t status;
	int flags, ret;

	(void)pair;
	flags = fcntl(ch->fd, F_GETFL);
	if (flags < 0 || fcntl(ch->fd, F_SETFL, flags | O_NONBLOCK) < 0)
		return shmrig__fail(-errno, "channel ucx: fcntl: %s", strerror(errno));
	ret = host_new(&host);
	if (ret)
		return ret;
	st = state_new(ch, host);
	if (!st) {
		host_put(host);
		return shmrig__fail(-ENOMEM, "channel ucx: out of memory");
	}
	status = ucp_worker_get_address(host->worker, &mine, &mine_len);
	if (status != UCS_OK)
		return ucx_fail(-EIO, "ucp_worker_get_address", status);
	wire_len = mine_len;
	ret = oob_write(ch, &wire_len, sizeof(wire_len), start);
	if (!ret)
		ret = oob_write(ch, mine, mine_len, start);
	ucp_worker_release_address(host->worker, mine);
	if (!ret)
		ret = oob_read(ch, &theirs_len, sizeof(theirs_len), start);
	if (ret)
		return ret;
	if (theirs_len == 0 || theirs_len > 1 << 20)
		return shmrig__fail(-EPROTO, "channel ucx: the peer's address is %llu bytes",
				    (unsigned long long)theirs_len);
	theirs = malloc(theirs_len);
	if (!theirs)
		return shmrig__fail(-ENOMEM, "channel ucx: out of memory");
	ret = oob_read(ch, theirs, theirs_len, start);
	if (ret) {
		free(theirs);
		return ret;
	}
	ep_params.address = theirs;
	state_fill_ep_params(st, &ep_params);
	status = ucp_ep_create(host->worker, &ep_params, &st->ep);
	if (status == UCS_ERR_UNREACHABLE) {
		/* UCX 1.13's shared-memory transports (posix, sysv) have no peer
		 * failure handling, and UCX refuses them for such an endpoint; the
		 * peer's pid tells its death instead (host_wait's check). */
		ep_params.field_mask &= ~(uint64_t)(UCP_EP_PARAM_FIELD_ERR_HANDLING_MODE |
						    UCP_EP_PARAM_FIELD_ERR_HANDLER);
		status = ucp_ep_create(host->worker, &ep_params, &st->ep);
		if (status == UCS_OK)
			st->no_err_handling = true;
	}
	free(theirs);
	/* A forked peer killed since it sent its address: its shared memory is
	 * gone with it ("Shared memory error"). Dead by its pid, that is -EPIPE,
	 * as for any peer that dies while we open; else UCX's own error. A
	 * process closes its files (the segment UCX attaches by
	 * /proc/PID/fd) on its way out, before it is a zombie: so its death is
	 * waited for, bounded (EP_DEATH_WAIT_MS), before the error is called
	 * UCX's. The stress storm saw "Shared memory error" from a peer that
	 * was still exiting (stress_ucx_posix_storm, 1 run in 6 under ASan). */
	if (status != UCS_OK && !ch->remote &&
	    shmrig__watch_life(&ch->peer_watch, EP_DEATH_WAIT_MS) == SHMRIG__DEAD)
		return shmrig__fail(-EPIPE,
				    "channel ucx: peer pid %d is gone (ucp_ep_create to its worker: %s)",
				    (int)ch->peer, ucs_status_string(status));
	if (status != UCS_OK)
		return ucx_fail(-EIO, "ucp_ep_create (to the peer's worker)", status);
	snprintf(ch->notes, sizeof(ch->notes), "UCX %s, UCX_TLS=%s%s", ucp_get_version_string(),
		 getenv("UCX_TLS") ? getenv("UCX_TLS") : "(all)",
		 st->no_err_handling ? ", no UCX peer-failure handling: the peer's pid tells" : "");
	return 0;
}

static bool request_done(void *arg)
{
	return ucp_request_check_status(arg) != UCS_INPROGRESS;
}

/* Say BYE and wait (bounded) until the peer has read up to it, so that what
 * we sent is not lost with our endpoint; what it sends meanwhile is dropped. */
static void say_goodbye(struct ucx_state *st, int64_t start, int timeout_ms)
{
	if (st->ep_status != UCS_OK || sends_wait(st, start, timeout_ms) ||
	    post_control(st, KIND_BYE))
		return;
	while (!st->acked && st->ep_status == UCS_OK) {
		void *msg = NULL;

		if (st->bare.step == BARE_IDLE) {
			if (read_next(st, &msg, start, timeout_ms))
				return;
			free(msg);
			msg = NULL;
		}
		if (st->bare.step != BARE_IDLE) {
			/* a bare frame sent meanwhile (or half read): read and dropped */
			size_t len;
			int ret = bare_recv(st->ch, &msg, &len, start, timeout_ms);

			if (ret == 0) {
				(void)!shmrig_frame_discard(st->ch->pool, msg, len);
				free(msg);
			} else if (ret == -ETIMEDOUT || ret == -EPIPE || ret == -EIO) {
				return;
			}
			continue;
		}
		if (st->rhdr.kind == KIND_BYE) {
			st->peer_closed = true;
			if (post_control(st, KIND_BYE_ACK))
				return;
		} else if (st->rhdr.kind == KIND_BYE_ACK) {
			st->acked = true;
		}
	}
	/* our ack of their BYE, if any, goes before the endpoint */
	(void)sends_wait(st, start, timeout_ms);
}

static void ucx_close(struct shmrig_channel *ch)
{
	struct ucx_state *st = ch->backend;
	int64_t start = shmrig__now_ms();
	int timeout_ms = ch->opts.open_timeout_ms;

	if (!st)
		return;
	/* an end inherited through fork belongs to its parent: touch no UCP object */
	if (ch->fork_epoch != shmrig__fork_epoch()) {
		free(st->sends);
		free(st->body);
		free(st->regs);
		free(st->bare.frame);
		free(st->bare.data);
		free(st->drain);
		free(st);
		ch->backend = NULL;
		return;
	}
	if (st->ep) {
		ucp_request_param_t param = { .op_attr_mask = UCP_OP_ATTR_FIELD_FLAGS };
		ucs_status_ptr_t req;

		say_goodbye(st, start, timeout_ms);
		/* A failed endpoint can only be forced; a live one is flushed, and
		 * one without error handling cannot be forced. */
		param.flags = (st->ep_status != UCS_OK || !st->acked) && !st->no_err_handling ?
				      UCP_EP_CLOSE_FLAG_FORCE :
				      0;
		req = ucp_ep_close_nbx(st->ep, &param);
		if (req && !UCS_PTR_IS_ERR(req)) {
			int left = shmrig__remaining_ms(start, timeout_ms);

			(void)host_wait(st->host, NULL, request_done, req, start,
					left > 0 ? timeout_ms :
						   (int)(shmrig__now_ms() - start) + SLICE_MS);
			ucp_request_free(req);
		}
		/* Closing completed every request of the endpoint (with an error if
		 * need be): their buffers are ours again. A flush to a dead peer
		 * without error handling may not have: destroying the worker (the
		 * last reference) ends them, so the buffers are freed after it. */
		while (ucp_worker_progress(st->host->worker))
			;
	}
	if (st->rreq)
		ucp_request_free(st->rreq);
	(void)sends_collect(st);
	for (uint32_t i = 0; i < st->nsends; i++)
		ucp_request_free(st->sends[i].req);
	/* the endpoint is closed: no receive lands in a bare frame's blocks now */
	bare_reset(st, ch->pool);
	while (st->nregs)
		reg_drop(st, st->nregs - 1);
	host_put(st->host); /* NULL if open failed before it was made */
	for (uint32_t i = 0; i < st->nsends; i++) {
		free(st->sends[i].copy);
		bare_put(st->sends[i].bare);
	}
	free(st->sends);
	free(st->body);
	free(st->regs);
	free(st->drain);
	free(st);
	ch->backend = NULL;
}

const struct channel_ops shmrig__channel_ucx = {
	.name = "ucx",
	.pair_create = ucx_pair_create,
	.pair_free = ucx_pair_free,
	.open = ucx_open,
	.close = ucx_close,
	.sendv = ucx_sendv,
	.recv = ucx_recv,
};

/* ---- listen, accept, connect ---- */

/* "HOST:PORT", "[IPv6]:PORT": resolved (numeric port) into *res. */
static int parse_address(const char *address, bool passive, struct addrinfo **res)
{
	struct addrinfo hints = { .ai_family = AF_UNSPEC,
				  .ai_socktype = SOCK_STREAM,
				  .ai_flags = AI_NUMERICSERV | (passive ? AI_PASSIVE : 0) };
	char host[256];
	const char *port, *colon;
	size_t host_len;
	char *end;
	long value;
	int err;

	if (!address)
		return shmrig__fail(-EINVAL, "channel ucx: NULL address");
	if (address[0] == '[') {
		const char *close = strchr(address, ']');

		if (!close || close[1] != ':')
			return shmrig__fail(-EINVAL,
					    "channel ucx: bad address '%s' (want [IPv6]:PORT)",
					    address);
		host_len = (size_t)(close - address - 1);
		memcpy(host, address + 1, host_len < sizeof(host) ? host_len : 0);
		port = close + 2;
		if (host_len == 0 || host_len >= sizeof(host))
			return shmrig__fail(-EINVAL, "channel ucx: bad host in address '%s'",
					    address);
	} else {
		colon = strrchr(address, ':');
		if (!colon || colon == address)
			return shmrig__fail(-EINVAL,
					    "channel ucx: bad address '%s' (want HOST:PORT or "
					    "[IPv6]:PORT)",
					    address);
		host_len = (size_t)(colon - address);
		if (host_len >= sizeof(host) || memchr(address, ':', host_len))
			return shmrig__fail(-EINVAL,
					    "channel ucx: bad address '%s' (an IPv6 host is "
					    "written [addr]:PORT)",
					    address);
		memcpy(host, address, host_len);
		port = colon + 1;
	}
	host[host_len] = '\0';
	errno = 0;
	value = strtol(port, &end, 10);
	if (!*port || *end || errno || value < 0 || value > 65535)
		return shmrig__fail(-EINVAL, "channel ucx: bad port '%s' in address '%s' (0-65535)",
				    port, address);
	err = getaddrinfo(host, port, &hints, res);
	if (err)
		return shmrig__fail(-EINVAL, "channel ucx: cannot resolve '%s': %s", host,
				    gai_strerror(err));
	return 0;
}

static void on_conn_request(ucp_conn_request_h request, void *arg)
{
	struct shmrig_channel_listener *l = arg;

	/* a full queue refuses the connection: the client sees it at once */
	if (l->queued == LISTEN_QUEUE) {
		(void)ucp_listener_reject(l->listener, request);
		return;
	}
	l->queue[l->queued++] = request;
}

int shmrig__ucx_listen(const struct shmrig_channel_opts *opts, const char *address,
		       struct shmrig_channel_listener **out)
{
	ucp_listener_params_t params = {
		.field_mask = UCP_LISTENER_PARAM_FIELD_SOCK_ADDR |
			      UCP_LISTENER_PARAM_FIELD_CONN_HANDLER,
	};
	struct shmrig_channel_listener *l;
	struct addrinfo *res;
	ucs_status_t status;
	int ret;

	ret = parse_address(address, true, &res);
	if (ret)
		return ret;
	l = calloc(1, sizeof(*l));
	if (!l) {
		freeaddrinfo(res);
		return shmrig__fail(-ENOMEM, "channel ucx: out of memory");
	}
	l->opts = *opts;
	l->fork_epoch = shmrig__fork_epoch();
	ret = host_new(&l->host);
	if (ret) {
		freeaddrinfo(res);
		free(l);
		return ret;
	}
	params.sockaddr.addr = res->ai_addr;
	params.sockaddr.addrlen = res->ai_addrlen;
	params.conn_handler.cb = on_conn_request;
	params.conn_handler.arg = l;
	status = ucp_listener_create(l->host->worker, &params, &l->listener);
	freeaddrinfo(res);
	if (status != UCS_OK) {
		host_put(l->host);
		free(l);
		if (status == UCS_ERR_BUSY)
			return shmrig__fail(-EADDRINUSE, "channel ucx: cannot listen on %s: in use",
					    address);
		return shmrig__fail(-EADDRNOTAVAIL, "channel ucx: cannot listen on %s: %s", address,
				    ucs_status_string(status));
	}
	*out = l;
	return 0;
}

int shmrig__ucx_listener_address(const struct shmrig_channel_listener *l, char *buf, size_t len)
{
	ucp_listener_attr_t attr = { .field_mask = UCP_LISTENER_ATTR_FIELD_SOCKADDR };
	char host[NI_MAXHOST], port[NI_MAXSERV];
	ucs_status_t status;
	int err, n;

	status = ucp_listener_query(l->listener, &attr);
	if (status != UCS_OK)
		return ucx_fail(-EIO, "ucp_listener_query", status);
	err = getnameinfo((const struct sockaddr *)&attr.sockaddr,
			  attr.sockaddr.ss_family == AF_INET6 ? sizeof(struct sockaddr_in6) :
								sizeof(struct sockaddr_in),
			  host, sizeof(host), port, sizeof(port), NI_NUMERICHOST | NI_NUMERICSERV);
	if (err)
		return shmrig__fail(-EIO, "channel ucx: getnameinfo: %s", gai_strerror(err));
	n = snprintf(buf, len, attr.sockaddr.ss_family == AF_INET6 ? "[%s]:%s" : "%s:%s", host,
		     port);
	if (n < 0 || (size_t)n >= len)
		return shmrig__fail(-ERANGE, "channel_listener_address: %d bytes do not fit %zu",
				    n + 1, len);
	return 0;
}

const struct shmrig_channel_opts *shmrig__ucx_listener_opts(const struct shmrig_channel_listener *l)
{
	return &l->opts;
}

static bool have_request(void *arg)
{
	return ((struct shmrig_channel_listener *)arg)->queued > 0;
}

int shmrig__ucx_accept(struct shmrig_channel_listener *l, struct shmrig_channel *ch, int timeout_ms)
{
	ucp_ep_params_t ep_params = { .field_mask = UCP_EP_PARAM_FIELD_CONN_REQUEST };
	int64_t start = shmrig__now_ms();
	struct ucx_state *st;
	ucs_status_t status;
	int ret;

	if (l->fork_epoch != shmrig__fork_epoch())
		return shmrig__fail(-SHMRIG_EFORK, "channel_accept: a listener inherited through "
						   "fork (the child listens on its own)");
	ret = host_wait(l->host, NULL, have_request, l, start, timeout_ms);
	if (ret)
		return ret == -ETIMEDOUT ?
			       shmrig__fail(ret, "channel_accept: no connection in %d ms",
					    timeout_ms) :
			       ret;
	st = state_new(ch, l->host);
	if (!st)
		return shmrig__fail(-ENOMEM, "channel ucx: out of memory");
	l->host->refs++;
	ep_params.conn_request = l->queue[0];
	memmove(l->queue, l->queue + 1, --l->queued * sizeof(l->queue[0]));
	state_fill_ep_params(st, &ep_params);
	status = ucp_ep_create(l->host->worker, &ep_params, &st->ep);
	if (status != UCS_OK)
		return ucx_fail(-ECONNABORTED, "ucp_ep_create (accepting)", status);
	snprintf(ch->notes, sizeof(ch->notes), "UCX %s, UCX_TLS=%s, accepted%s",
		 ucp_get_version_string(), getenv("UCX_TLS") ? getenv("UCX_TLS") : "(all)",
		 l->host->user_memh ? "" : NO_REGISTRATION);
	return 0;
}

int shmrig__ucx_connect(struct shmrig_channel *ch, const char *address)
{
	ucp_ep_params_t ep_params = {
		.field_mask = UCP_EP_PARAM_FIELD_FLAGS | UCP_EP_PARAM_FIELD_SOCK_ADDR,
		.flags = UCP_EP_PARAMS_FLAGS_CLIENT_SERVER,
	};
	struct ucx_state *st;
	struct ucx_host *host;
	struct addrinfo *res;
	ucs_status_t status;
	int ret;

	ret = parse_address(address, false, &res);
	if (ret)
		return ret;
	ret = host_new(&host);
	if (ret) {
		freeaddrinfo(res);
		return ret;
	}
	st = state_new(ch, host);
	if (!st) {
		freeaddrinfo(res);
		host_put(host);
		return shmrig__fail(-ENOMEM, "channel ucx: out of memory");
	}
	ep_params.sockaddr.addr = res->ai_addr;
	ep_params.sockaddr.addrlen = res->ai_addrlen;
	state_fill_ep_params(st, &ep_params);
	status = ucp_ep_create(host->worker, &ep_params, &st->ep);
	freeaddrinfo(res);
	if (status != UCS_OK)
		return shmrig__fail(-ECONNREFUSED, "channel_connect: %s: %s", address,
				    ucs_status_string(status));
	snprintf(ch->notes, sizeof(ch->notes), "UCX %s, UCX_TLS=%s, connected to %s%s",
		 ucp_get_version_string(), getenv("UCX_TLS") ? getenv("UCX_TLS") : "(all)", address,
		 host->user_memh ? "" : NO_REGISTRATION);
	return 0;
}

void shmrig__ucx_listener_close(struct shmrig_channel_listener *l)
{
	if (l->fork_epoch == shmrig__fork_epoch()) {
		/* Requests that came in are refused, not left hanging: their
		 * clients see it at once. */
		while (ucp_worker_progress(l->host->worker))
			;
		for (uint32_t i = 0; i < l->queued; i++)
			(void)ucp_listener_reject(l->listener, l->queue[i]);
		while (ucp_worker_progress(l->host->worker))
			;
		ucp_listener_destroy(l->listener);
		host_put(l->host);
	}
	free(l);
}
