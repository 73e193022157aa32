/* SPDX-License-Identifier: MIT */
/*
 * The "uring" backend: io_uring (liburing) over a socketpair (sent to with
 * MSG_NOSIGNAL), with the stream framing of "pipe" (each message is a
 * stream_hdr then its bytes). One message costs about what it costs over a
 * socket without io_uring; the gain is batching:
 *
 *  - sendv: a batch is ONE sendmsg SQE whose iovecs are each message's header
 *    and bytes, sent with MSG_WAITALL so the kernel finishes it without coming
 *    back to us. A sendmsg takes at most UIO_MAXIOV (1024) iovecs, so a batch
 *    of more than 512 messages goes as several SQEs, each waited for before
 *    the next is submitted: order holds because only one is ever in flight.
 *  - recv: one read fills a receive buffer with as many messages as have
 *    arrived; each recv returns one of them and reads again only when no whole
 *    message is left. A message too large for the buffer is read straight into
 *    its own allocation (one recv SQE with MSG_WAITALL).
 *  - the socket is a registered file and the receive buffer a registered
 *    buffer (read_fixed); either falls back to the plain form if the kernel
 *    refuses, and the channel's notes say which we got.
 *  - SQPOLL is opt-in (SHMRIG_URING_SQPOLL=1): see sqpoll_wanted().
 *
 * Every wait is io_uring_submit_and_wait_timeout() in slices of SLICE_MS, each
 * ending with a check that the peer still lives, as shmrig__channel_wait_fd()
 * does for "pipe" and the socket of "ucx".
 *
 * Timeouts and what is in flight (the kernel must never write into or read
 * from memory we no longer own):
 *  - a recv that times out leaves its read in flight: the read targets the
 *    receive buffer or the large message's buffer, both ours until close, and
 *    the next recv collects its completion before anything else. close()
 *    cancels it and waits for its completion before it frees either buffer.
 *  - a send that times out cancels its SQE (the iovecs point into the caller's
 *    messages) and waits for the completion, whose result says how many bytes
 *    went (the kernel reports the partial count of a cancelled MSG_WAITALL
 *    send). If that ends inside a message, the rest of it is copied and the
 *    next send or recv sends it first, as "pipe" does; messages after it in
 *    the batch were not sent.
 */
#include "transport/channel_internal.h"
#include "base/internal.h"

#include <errno.h>
#include <liburing.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>

#if defined(__has_include)
#if __has_include(<valgrind/memcheck.h>)
#include <valgrind/memcheck.h>
#endif
#endif
#ifndef VALGRIND_MAKE_MEM_DEFINED
#define VALGRIND_MAKE_MEM_DEFINED(addr, len) ((void)(addr), (void)(len))
#endif

#define SLICE_MS 100
/* At most one read, one send and one cancel are ever in flight. */
#define RING_ENTRIES 16
/* The receive buffer: a read takes up to this much, many messages at a time. */
#define RECV_BUF_SIZE (256 * 1024)
/* UIO_MAXIOV: the kernel's cap on the iovecs of one sendmsg. */
#define MAX_IOV 1024
#define MAX_BATCH (MAX_IOV / 2)
/* How long an idle SQPOLL thread spins before it sleeps. */
#define SQPOLL_IDLE_MS 50
/* Off: measured slower for batches on 2 CPUs; see sqpoll_wanted(). */
#define SQPOLL_DEFAULT false

/* user_data of our SQEs: what a completion belongs to */
enum {
	TAG_READ = 1,
	TAG_SEND,
	TAG_CANCEL,
};

enum op_state {
	OP_IDLE, /* nothing in flight */
	OP_BUSY, /* submitted, no completion yet */
	OP_DONE, /* completed; res holds the result */
};

struct op {
	enum op_state state;
	int res;
};

struct uring_state {
	struct io_uring ring;
	bool ring_up;
	/* The ring's queues are shared memory that fork() does not copy: only the
	 * process that opened the channel may touch them (see forked()). */
	unsigned fork_epoch;
	int fd;            /* what SQEs name: 0 (the registered file) or the socket */
	uint8_t sqe_flags; /* IOSQE_FIXED_FILE or 0 */
	bool fixed_buf;    /* rbuf is registered buffer 0 */

	/* received bytes [head, tail) of rbuf not yet returned */
	char *rbuf;
	size_t head, tail;
	/* a message too large for rbuf, read into its own buffer */
	char *body;
	size_t body_len, body_got;
	/* the read in flight writes into body (else into rbuf at tail) */
	struct op read;
	bool read_into_body;

	/* the send in flight: its msghdr and iovecs must live until it completes */
	struct op send;
	struct msghdr mh;
	struct stream_hdr hdrs[MAX_BATCH];
	struct iovec iov[MAX_IOV];
	/* the unsent rest of a message whose send timed out */
	char *pending;
	size_t pending_len, pending_off;
};

static const char *errname(int err)
{
	const char *name = strerrorname_np(err);

	return name ? name : "unknown error";
}

static int io_error(struct shmrig_channel *ch, int err)
{
	if (err == EPIPE || err == ECONNRESET)
		return shmrig__fail(-EPIPE, "channel: peer pid %d closed its end", (int)ch->peer);
	return shmrig__fail(-err, "channel: io_uring: %s", strerror(err));
}

/*
 * SHMRIG_URING_SQPOLL=1 asks for an SQPOLL ring, 0 (or unset) for a plain one.
 * SQPOLL saves the submit syscall, not the wait for a completion, and each
 * end's kernel thread spins for SQPOLL_IDLE_MS after its last submission.
 * Measured on a 2-vCPU VM with both ends pinned to different CPUs: batches of
 * 64 went about 40 % slower (the two spinning threads take CPU time from the
 * two processes), and a round trip was only somewhat faster, because spinning
 * keeps both vCPUs from halting, at the price of two cores busy. So it is off
 * unless asked for; the "ring" backend is the one that spins for latency.
 */
static bool sqpoll_wanted(void)
{
	static int warned;
	const char *env = shmrig__option_string(NULL, "SHMRIG_URING_SQPOLL", NULL);

	if (!env)
		return SQPOLL_DEFAULT;
	if (strcmp(env, "1") == 0)
		return true;
	if (strcmp(env, "0") == 0)
		return false;
	shmrig__warn_once(&warned, "SHMRIG_URING_SQPOLL='%s' is not 0 or 1; using the default (%d)",
			  env, SQPOLL_DEFAULT);
	return SQPOLL_DEFAULT;
}

static void note(struct shmrig_channel *ch, const char *text)
{
	size_t used = strlen(ch->notes);

	snprintf(ch->notes + used, sizeof(ch->notes) - used, "%s%s", used ? "; " : "", text);
}

static int uring_pair_create(struct shmrig_channel_pair *pair)
{
	return shmrig__channel_socketpair(pair);
}

static void uring_pair_free(struct shmrig_channel_pair *pair)
{
	(void)pair;
}

static int setup_ring(struct shmrig_channel *ch, struct uring_state *st)
{
	char text[96];
	int ret;

	if (sqpoll_wanted()) {
		struct io_uring_params params = {
			.flags = IORING_SETUP_SQPOLL,
			.sq_thread_idle = SQPOLL_IDLE_MS,
		};

		ret = io_uring_queue_init_params(RING_ENTRIES, &st->ring, &params);
		if (ret == 0) {
			snprintf(text, sizeof(text), "SQPOLL on (idle %d ms)", SQPOLL_IDLE_MS);
			note(ch, text);
			st->ring_up = true;
			return 0;
		}
		snprintf(text, sizeof(text), "SQPOLL refused: %s", errname(-ret));
		note(ch, text);
	} else {
		note(ch, "SQPOLL off (SHMRIG_URING_SQPOLL=1 asks for it)");
	}
	ret = io_uring_queue_init(RING_ENTRIES, &st->ring, 0);
	if (ret)
		return shmrig__fail(ret, "channel: io_uring_queue_init: %s", strerror(-ret));
	st->ring_up = true;
	return 0;
}

static int uring_open(struct shmrig_channel *ch, struct shmrig_channel_pair *pair)
{
	struct uring_state *st;
	struct iovec whole;
	char text[96];
	int ret;

	(void)pair;
	st = calloc(1, sizeof(*st));
	if (!st)
		return shmrig__fail(-ENOMEM, "channel: out of memory");
	ch->backend = st;
	st->fork_epoch = shmrig__fork_epoch();
	st->rbuf = aligned_alloc(shmrig__page_size(), RECV_BUF_SIZE);
	if (!st->rbuf)
		return shmrig__fail(-ENOMEM, "channel: out of memory");
	ret = setup_ring(ch, st);
	if (ret)
		return ret;

	st->fd = ch->fd;
	ret = io_uring_register_files(&st->ring, &ch->fd, 1);
	if (ret == 0) {
		st->fd = 0;
		st->sqe_flags = IOSQE_FIXED_FILE;
		note(ch, "fixed file");
	} else {
		snprintf(text, sizeof(text), "fixed file refused: %s", errname(-ret));
		note(ch, text);
	}

	whole.iov_base = st->rbuf;
	whole.iov_len = RECV_BUF_SIZE;
	ret = io_uring_register_buffers(&st->ring, &whole, 1);
	if (ret == 0) {
		st->fixed_buf = true;
		snprintf(text, sizeof(text), "fixed buffer %d KiB", RECV_BUF_SIZE / 1024);
	} else {
		snprintf(text, sizeof(text), "fixed buffer refused: %s", errname(-ret));
	}
	note(ch, text);
	return 0;
}

static void record(struct uring_state *st, const struct io_uring_cqe *cqe)
{
	struct op *op = NULL;

	if (cqe->user_data == TAG_READ)
		op = &st->read;
	else if (cqe->user_data == TAG_SEND)
		op = &st->send;
	/* a cancel's own completion says nothing its target's will not */
	if (op) {
		op->res = cqe->res;
		op->state = OP_DONE;
	}
}

/* Take every completion that has arrived. */
static void reap(struct uring_state *st)
{
	struct io_uring_cqe *cqe;
	unsigned head, seen = 0;

	io_uring_for_each_cqe(&st->ring, head, cqe)
	{
		record(st, cqe);
		seen++;
	}
	io_uring_cq_advance(&st->ring, seen);
}

/* An SQE for `tag`; the ring is never full (see RING_ENTRIES), checked anyway. */
static struct io_uring_sqe *get_sqe(struct uring_state *st, uint64_t tag)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(&st->ring);

	if (sqe)
		io_uring_sqe_set_data64(sqe, tag);
	return sqe;
}

static int ring_full(void)
{
	return shmrig__fail(-EBUSY, "channel: io_uring submission queue full");
}

/*
 * Submit what is queued and wait until `op` completes, in slices that each end
 * with a check of the peer's life. 0, -ETIMEDOUT, -EPIPE (peer gone) or -errno.
 * On error the op may still be in flight.
 */
static int wait_op(struct shmrig_channel *ch, struct op *op, int64_t start, int timeout_ms)
{
	struct uring_state *st = ch->backend;

	for (;;) {
		int left = shmrig__remaining_ms(start, timeout_ms);
		int slice = left < 0 || left > SLICE_MS ? SLICE_MS : left;
		struct __kernel_timespec ts = { .tv_sec = 0,
						.tv_nsec = (long long)slice * 1000000 };
		struct io_uring_cqe *cqe;
		int ret;

		/* done already: a wait for some other op reaped it */
		if (op->state == OP_DONE)
			return 0;
		/* The returned cqe is not used: liburing 2.3 can return a count of
		 * submitted SQEs and no cqe when the wait times out. reap() looks. */
		ret = io_uring_submit_and_wait_timeout(&st->ring, &cqe, 1, &ts, NULL);
		if (ret < 0 && ret != -ETIME && ret != -EINTR)
			return shmrig__fail(ret, "channel: io_uring_enter: %s", strerror(-ret));
		reap(st);
		if (op->state == OP_DONE)
			return 0;
		if (!shmrig__channel_peer_alive(ch))
			return shmrig__fail(-EPIPE, "channel: peer pid %d is gone", (int)ch->peer);
		if (left == 0)
			return shmrig__fail(-ETIMEDOUT, "channel: timed out after %d ms",
					    timeout_ms);
	}
}

/*
 * Cancel `op` (tagged `tag`) and wait for its completion, however it ends:
 * afterwards the kernel no longer touches its buffers. A network operation
 * waiting for its socket is cancelled at once, so this wait has no timeout.
 */
static int cancel_op(struct shmrig_channel *ch, struct op *op, uint64_t tag)
{
	struct uring_state *st = ch->backend;
	struct io_uring_sqe *sqe;

	reap(st);
	if (op->state != OP_BUSY)
		return 0;
	sqe = get_sqe(st, TAG_CANCEL);
	if (!sqe)
		return ring_full();
	io_uring_prep_cancel64(sqe, tag, 0);
	while (op->state == OP_BUSY) {
		int ret = io_uring_submit_and_wait(&st->ring, 1);

		if (ret < 0 && ret != -EINTR)
			return shmrig__fail(ret, "channel: io_uring_enter: %s", strerror(-ret));
		reap(st);
	}
	return 0;
}

/* Is this a copy of the channel that a fork() handed to a child? Its SQ and CQ
 * are the parent's (MAP_SHARED), its liburing indexes a private copy: using
 * them would corrupt the parent's ring. */
static bool forked(const struct uring_state *st)
{
	return st->fork_epoch != shmrig__fork_epoch();
}

static int forked_error(void)
{
	return shmrig__fail(-SHMRIG_EFORK,
			    "channel: a uring channel is used by a child of the process that "
			    "opened it");
}

static int flush_pending(struct shmrig_channel *ch, int64_t start, int timeout_ms);

static void uring_close(struct shmrig_channel *ch)
{
	struct uring_state *st = ch->backend;

	if (!st)
		return;
	/* a forked copy only unmaps the ring and closes its descriptor */
	if (st->ring_up && !forked(st)) {
		/* A taken message goes out in full, for at most the open timeout. */
		flush_pending(ch, shmrig__now_ms(), ch->opts.open_timeout_ms);
		/* The ring's teardown would cancel the read too, but asynchronously:
		 * wait for it here, before its buffer is freed. If even that fails,
		 * leak the buffers rather than free memory the kernel may write. */
		if (cancel_op(ch, &st->read, TAG_READ))
			st->rbuf = st->body = NULL;
	}
	if (st->ring_up)
		io_uring_queue_exit(&st->ring);
	free(st->rbuf);
	free(st->body);
	free(st->pending);
	free(st);
}

/* ---- send ---- */

/* Drop `bytes` from the front of *iov / *iovcnt. */
static void advance(struct iovec **iov, int *iovcnt, size_t bytes)
{
	while (*iovcnt && bytes >= (*iov)->iov_len) {
		bytes -= (*iov)->iov_len;
		(*iov)++;
		(*iovcnt)--;
	}
	if (*iovcnt && bytes) {
		(*iov)->iov_base = (char *)(*iov)->iov_base + bytes;
		(*iov)->iov_len -= bytes;
	}
}

/*
 * Send the iovecs (at most MAX_IOV) in full, one sendmsg SQE at a time. 0 when
 * all went, or -errno; *written says how many bytes went either way, and
 * nothing is in flight when this returns.
 */
static int send_iov(struct shmrig_channel *ch, struct iovec *iov, int iovcnt, int64_t start,
		    int timeout_ms, size_t *written)
{
	struct uring_state *st = ch->backend;

	*written = 0;
	while (iovcnt) {
		struct io_uring_sqe *sqe = get_sqe(st, TAG_SEND);
		int ret, res;

		if (!sqe)
			return ring_full();
		st->mh = (struct msghdr){ .msg_iov = iov, .msg_iovlen = (size_t)iovcnt };
		io_uring_prep_sendmsg(sqe, st->fd, &st->mh, MSG_NOSIGNAL | MSG_WAITALL);
		sqe->flags |= st->sqe_flags;
		st->send.state = OP_BUSY;
		ret = wait_op(ch, &st->send, start, timeout_ms);
		if (ret) {
			int cancelled = cancel_op(ch, &st->send, TAG_SEND);

			if (cancelled)
				return cancelled; /* still in flight: nothing safe to say */
		}
		res = st->send.res;
		st->send.state = OP_IDLE;
		if (res > 0) {
			*written += (size_t)res;
			advance(&iov, &iovcnt, (size_t)res);
		}
		if (ret)
			return ret;
		if (res < 0 && res != -EINTR)
			return io_error(ch, -res);
	}
	return 0;
}

/* Keep the unsent rest of a message (header and bytes) whose first `written`
 * bytes went, for the next call to send first. */
static int keep_rest(struct shmrig_channel *ch, const struct stream_hdr *hdr, const void *msg,
		     size_t len, size_t written)
{
	struct uring_state *st = ch->backend;
	size_t rest = sizeof(*hdr) + len - written;
	size_t hdr_rest = written < sizeof(*hdr) ? sizeof(*hdr) - written : 0;

	st->pending = malloc(rest);
	if (!st->pending)
		return shmrig__fail(-ENOMEM, "channel: out of memory keeping a half-sent message");
	memcpy(st->pending, (const char *)hdr + sizeof(*hdr) - hdr_rest, hdr_rest);
	memcpy(st->pending + hdr_rest, (const char *)msg + (len - (rest - hdr_rest)),
	       rest - hdr_rest);
	st->pending_len = rest;
	st->pending_off = 0;
	return 0;
}

/* Finish a message a timed-out send left half-written. */
static int flush_pending(struct shmrig_channel *ch, int64_t start, int timeout_ms)
{
	struct uring_state *st = ch->backend;
	struct iovec *iov = st->iov;
	size_t written;
	int ret;

	if (!st->pending)
		return 0;
	iov->iov_base = st->pending + st->pending_off;
	iov->iov_len = st->pending_len - st->pending_off;
	ret = send_iov(ch, iov, 1, start, timeout_ms, &written);
	st->pending_off += written;
	if (ret)
		return ret;
	free(st->pending);
	st->pending = NULL;
	return 0;
}

static int uring_sendv(struct shmrig_channel *ch, const void *const *msgs, const size_t *lens,
		       uint32_t n, int timeout_ms)
{
	struct uring_state *st = ch->backend;
	int64_t start = shmrig__now_ms();
	int ret;

	if (forked(st))
		return forked_error();
	ret = flush_pending(ch, start, timeout_ms);
	for (uint32_t first = 0; !ret && first < n; first += MAX_BATCH) {
		uint32_t count = n - first < MAX_BATCH ? n - first : MAX_BATCH;
		size_t written;

		for (uint32_t i = 0; i < count; i++) {
			st->hdrs[i] = (struct stream_hdr){ .magic = STREAM_MAGIC,
							   .len = lens[first + i] };
			st->iov[2 * i] = (struct iovec){ &st->hdrs[i], sizeof(st->hdrs[i]) };
			st->iov[2 * i + 1] =
				(struct iovec){ (void *)msgs[first + i], lens[first + i] };
		}
		ret = send_iov(ch, st->iov, (int)(2 * count), start, timeout_ms, &written);
		if (ret != -ETIMEDOUT)
			continue;
		/* find the message the timeout cut, if any, and keep its rest */
		for (uint32_t i = 0; i < count && written; i++) {
			size_t size = sizeof(struct stream_hdr) + lens[first + i];

			if (written < size) {
				int kept = keep_rest(ch, &st->hdrs[i], msgs[first + i],
						     lens[first + i], written);

				/* Part of it went: it is taken, the rest goes
				 * first next time; the whole batch is taken if
				 * it was the last. */
				if (kept)
					ret = kept;
				else if (first + i == n - 1)
					ret = 0;
				break;
			}
			written -= size;
		}
	}
	return ret;
}

/* ---- recv ---- */

static int submit_read(struct shmrig_channel *ch, bool into_body)
{
	struct uring_state *st = ch->backend;
	struct io_uring_sqe *sqe = get_sqe(st, TAG_READ);

	if (!sqe)
		return ring_full();
	if (into_body) {
		/* MSG_WAITALL: one completion for the whole rest of the message */
		io_uring_prep_recv(sqe, st->fd, st->body + st->body_got,
				   st->body_len - st->body_got, MSG_WAITALL);
	} else if (st->fixed_buf) {
		io_uring_prep_read_fixed(sqe, st->fd, st->rbuf + st->tail, RECV_BUF_SIZE - st->tail,
					 0, 0);
	} else {
		io_uring_prep_read(sqe, st->fd, st->rbuf + st->tail, RECV_BUF_SIZE - st->tail, 0);
	}
	sqe->flags |= st->sqe_flags;
	st->read.state = OP_BUSY;
	st->read_into_body = into_body;
	return 0;
}

/* Account for a completed read. 0, or -EPIPE at end of stream, or -errno. */
static int take_read(struct shmrig_channel *ch)
{
	struct uring_state *st = ch->backend;
	int res = st->read.res;

	st->read.state = OP_IDLE;
	if (res == 0)
		return shmrig__fail(-EPIPE, "channel: peer pid %d closed its end", (int)ch->peer);
	if (res == -EINTR)
		return 0; /* read again */
	if (res < 0)
		return io_error(ch, -res);
	/* the kernel wrote these bytes; memcheck cannot see that */
	if (st->read_into_body) {
		VALGRIND_MAKE_MEM_DEFINED(st->body + st->body_got, (size_t)res);
		st->body_got += (size_t)res;
	} else {
		VALGRIND_MAKE_MEM_DEFINED(st->rbuf + st->tail, (size_t)res);
		st->tail += (size_t)res;
	}
	return 0;
}

/*
 * The next message from rbuf: 1 and *msg, *len if a whole one is there; 0 if
 * more bytes are needed (then either body is set up for a large message, or
 * rbuf is compacted so that a read can go at tail); or -errno.
 */
static int take_buffered(struct shmrig_channel *ch, void **msg, size_t *len)
{
	struct uring_state *st = ch->backend;
	size_t avail = st->tail - st->head;
	struct stream_hdr hdr;
	size_t total;

	if (avail >= sizeof(hdr)) {
		memcpy(&hdr, st->rbuf + st->head, sizeof(hdr));
		if (hdr.magic != STREAM_MAGIC || hdr.len > SHMRIG_CHANNEL_MAX_MSG)
			return shmrig__fail(-EBADMSG,
					    "channel: corrupt stream (magic %08x, length %llu)",
					    hdr.magic, (unsigned long long)hdr.len);
		total = sizeof(hdr) + hdr.len;
		if (avail >= total || total > RECV_BUF_SIZE) {
			char *buf = shmrig__msg_alloc(hdr.len);

			if (!buf)
				return shmrig__fail(-ENOMEM,
						    "channel: out of memory for %llu bytes",
						    (unsigned long long)hdr.len);
			if (avail >= total) {
				memcpy(buf, st->rbuf + st->head + sizeof(hdr), hdr.len);
				st->head += total;
				*msg = buf;
				*len = hdr.len;
				return 1;
			}
			/* too large for rbuf: what is here starts its own buffer */
			memcpy(buf, st->rbuf + st->head + sizeof(hdr), avail - sizeof(hdr));
			st->body = buf;
			st->body_len = hdr.len;
			st->body_got = avail - sizeof(hdr);
			st->head = st->tail = 0;
			return 0;
		}
	}
	/* the partial message moves to the front, so the read has room for all of it */
	if (st->head) {
		memmove(st->rbuf, st->rbuf + st->head, avail);
		st->head = 0;
		st->tail = avail;
	}
	return 0;
}

static int uring_recv(struct shmrig_channel *ch, void **msg, size_t *len, int timeout_ms)
{
	struct uring_state *st = ch->backend;
	int64_t start = shmrig__now_ms();
	int ret;

	if (forked(st))
		return forked_error();
	ret = flush_pending(ch, start, timeout_ms);
	while (!ret) {
		/* a read in flight, from this call or one that timed out */
		if (st->read.state != OP_IDLE) {
			ret = wait_op(ch, &st->read, start, timeout_ms);
			if (!ret)
				ret = take_read(ch);
			continue;
		}
		if (st->body) {
			if (st->body_got < st->body_len) {
				ret = submit_read(ch, true);
				continue;
			}
			*msg = st->body;
			*len = st->body_len;
			st->body = NULL;
			return 0;
		}
		ret = take_buffered(ch, msg, len);
		if (ret == 1)
			return 0;
		if (!ret && !st->body)
			ret = submit_read(ch, false);
	}
	return ret;
}

const struct channel_ops shmrig__channel_uring = {
	.name = "uring",
	.pair_create = uring_pair_create,
	.pair_free = uring_pair_free,
	.open = uring_open,
	.close = uring_close,
	.sendv = uring_sendv,
	.recv = uring_recv,
};
