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
 * made by accept or connect travels flat (KIND_FRAME: shmrig_frame_flatten's
 * bytes, payload included, since the peer cannot map our pool) and the
 * receiving recv unflattens it into its own pool. Two more kinds close a
 * channel cleanly: BYE ("no more from me") and BYE_ACK ("I have read up to
 * your BYE"). A closing end waits (at most the open timeout) for the ack, so
 * that its messages are read before its endpoint goes away: UCX tears down
 * an endpoint's lanes when the peer disconnects, and data still in flight on
 * them would be lost.
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

#include <shmrig/frame.h>

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <ucp/api/ucp.h>

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
};

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
};

/* A posted send and the copy UCX reads from until it completes. */
struct send_rec {
	void *req;
	void *copy;
};

struct ucx_state {
	struct shmrig_channel *ch;
	struct ucx_host *host;
	ucp_ep_h ep;
	ucs_status_t ep_status; /* UCS_OK until the error callback says the peer is gone */
	bool peer_closed;       /* its BYE was read */
	bool acked;             /* our BYE was read */
	bool no_err_handling;   /* a forked end over transports without peer failure
				 * handling (posix, sysv): only the pid says "dead" */
	struct send_rec *sends; /* posted, not yet complete */
	uint32_t nsends;
	uint32_t sends_cap;
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
	int64_t next_check = shmrig__now_ms() + SLICE_MS;
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
		left = shmrig__remaining_ms(start, timeout_ms);
		if (left == 0)
			return shmrig__fail(-ETIMEDOUT, "channel ucx: timed out after %d ms",
					    timeout_ms);
		/* A forked peer's pid is a second witness, asked once a slice
		 * whatever the worker does; a remote one has none (ch->remote),
		 * and "cannot tell" counts as alive. */
		if (ch && !ch->remote && shmrig__now_ms() >= next_check) {
			if (!shmrig__channel_peer_alive(ch))
				return shmrig__fail(-EPIPE, "channel ucx: peer pid %d is gone",
						    (int)ch->peer);
			next_check = shmrig__now_ms() + SLICE_MS;
		}
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

	if (!st)
		return NULL;
	st->ch = ch;
	st->host = host;
	st->ep_status = UCS_OK;
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

int shmrig__ucx_send_frame(struct shmrig_channel *ch, const void *frame, size_t len, int timeout_ms)
{
	struct ucx_state *st = ch->backend;
	int64_t start = shmrig__now_ms();
	struct ucx_hdr *hdr;
	size_t flat_len;
	void *flat;
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
	/* Two sends, one after the other on the stream: the header, then the
	 * flat bytes themselves (no second copy). */
	*hdr = (struct ucx_hdr){ .magic = UCX_MAGIC, .kind = KIND_FRAME, .len = flat_len };
	ret = post_chunk(st, hdr, sizeof(*hdr));
	if (ret)
		free(flat);
	else
		ret = post_chunk(st, flat, flat_len);
	if (!ret) {
		/* taken: a timeout now leaves it posted for the next call */
		ret = sends_wait(st, start, timeout_ms);
		if (ret == -ETIMEDOUT)
			ret = 0;
	}
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

		if (st->ep_status != UCS_OK)
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

/* The next message of any kind: its header in st->rhdr, a data or frame
 * message's body in *msg (NULL for the others). */
static int read_next(struct ucx_state *st, void **msg, int64_t start, int timeout_ms)
{
	int ret;

	if (!st->have_hdr) {
		ret = recv_exact(st, &st->rhdr, sizeof(st->rhdr), start, timeout_ms);
		if (ret)
			return ret;
		if (st->rhdr.magic != UCX_MAGIC || st->rhdr.kind > KIND_FRAME ||
		    st->rhdr.len > SHMRIG_CHANNEL_MAX_MSG ||
		    (st->rhdr.kind != KIND_DATA && st->rhdr.kind != KIND_FRAME && st->rhdr.len))
			return shmrig__fail(-EBADMSG,
					    "channel ucx: corrupt stream (magic %08x, kind %u, "
					    "length %llu)",
					    st->rhdr.magic, st->rhdr.kind,
					    (unsigned long long)st->rhdr.len);
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
		ret = read_next(st, msg, start, timeout_ms);
		if (ret)
			return ret;
		switch (st->rhdr.kind) {
		case KIND_DATA:
			*len = st->rhdr.len;
			return 0;
		case KIND_FRAME:
			return recv_frame(ch, msg, len);
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

		if (read_next(st, &msg, start, timeout_ms))
			return;
		free(msg);
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
	host_put(st->host); /* NULL if open failed before it was made */
	for (uint32_t i = 0; i < st->nsends; i++)
		free(st->sends[i].copy);
	free(st->sends);
	free(st->body);
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
	snprintf(ch->notes, sizeof(ch->notes), "UCX %s, UCX_TLS=%s, accepted",
		 ucp_get_version_string(), getenv("UCX_TLS") ? getenv("UCX_TLS") : "(all)");
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
	snprintf(ch->notes, sizeof(ch->notes), "UCX %s, UCX_TLS=%s, connected to %s",
		 ucp_get_version_string(), getenv("UCX_TLS") ? getenv("UCX_TLS") : "(all)",
		 address);
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
