/* SPDX-License-Identifier: MIT */
/*
 * The "pipe" backend: two pipe(2)s, one each way, one writev and one kernel
 * copy per message. Each message is a stream_hdr then its bytes. Both ends
 * are non-blocking; waits are poll()s in slices, each slice ending with a
 * check that the peer still lives, so a wedged or dead peer is an error in
 * bounded time even if some other process holds a copy of its end.
 *
 * Pipes, not a socketpair: a 64 B round trip between two pinned processes
 * costs ~25 us here through pipes against ~28.5 us through a unix socket,
 * each woken by poll (README, "Channels and sessions").
 *
 * A write to a pipe no process reads raises SIGPIPE in the writer, which a
 * library must not do to its caller (a socket has MSG_NOSIGNAL; a pipe has
 * nothing like it). So each end keeps the read end of its own outgoing pipe
 * open, unused: a write never finds the pipe without a reader. A dead peer is
 * then EOF on our incoming pipe (we close its write end at open), and a send
 * to it goes into the pipe's buffer until that is full and the wait's
 * liveness check says the peer is gone: -EPIPE, as the ring says it.
 *
 * A recv that times out in the middle of a message keeps what it has and the
 * next recv goes on from there; a send that times out in the middle of a
 * message keeps the rest and the next send (or recv) finishes it first.
 */
#include "transport/channel_internal.h"
#include "base/internal.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#define SLICE_MS 100

/* Received bytes are read in chunks of up to this, so that a burst of small
 * messages costs one read, not two per message. */
#define RBUF_SIZE (64 * 1024)

/* pair->backend: pipe e carries end e's messages to end !e; [0] reads, [1] writes. */
struct pipe_pair {
	int fds[2][2];
};

struct pipe_state {
	int out;       /* our outgoing pipe's write end; ch->fd is the incoming read end */
	int keep_open; /* our outgoing pipe's read end, never read: no SIGPIPE (above) */
	/* a message larger than the buffer, read straight into its own memory */
	struct stream_hdr hdr;
	char *body;
	size_t body_got;
	/* bytes read but not yet delivered: rbuf[rstart, rend) */
	size_t rstart;
	size_t rend;
	char rbuf[RBUF_SIZE];
	/* the rest of a message whose send timed out */
	char *pending;
	size_t pending_len;
	size_t pending_off;
};

static int wait_on(struct shmrig_channel *ch, int fd, short events, int64_t start, int timeout_ms)
{
	for (;;) {
		int left = shmrig__remaining_ms(start, timeout_ms);
		int slice = left < 0 || left > SLICE_MS ? SLICE_MS : left;
		struct pollfd pfd = { .fd = fd, .events = events };
		int ready = poll(&pfd, 1, slice);

		if (ready > 0)
			return 0; /* readable, writable, or hung up: the I/O call tells which */
		if (ready < 0 && errno != EINTR)
			return shmrig__fail(-errno, "channel: poll: %s", strerror(errno));
		if (!shmrig__channel_peer_alive(ch))
			return shmrig__fail(-EPIPE, "channel: peer pid %d is gone", (int)ch->peer);
		if (left == 0)
			return shmrig__fail(-ETIMEDOUT, "channel: timed out after %d ms",
					    timeout_ms);
	}
}

int shmrig__channel_wait_fd(struct shmrig_channel *ch, short events, int64_t start, int timeout_ms)
{
	return wait_on(ch, ch->fd, events, start, timeout_ms);
}

int shmrig__channel_socketpair(struct shmrig_channel_pair *pair)
{
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair->fds))
		return shmrig__fail(-errno, "channel: socketpair: %s", strerror(errno));
	return 0;
}

static void close_fd(int *fd)
{
	if (*fd >= 0)
		close(*fd);
	*fd = -1;
}

static int pipe_pair_create(struct shmrig_channel_pair *pair)
{
	struct pipe_pair *pp = malloc(sizeof(*pp));

	if (!pp)
		return shmrig__fail(-ENOMEM, "channel: out of memory");
	if (pipe2(pp->fds[0], O_CLOEXEC | O_NONBLOCK)) {
		free(pp);
		return shmrig__fail(-errno, "channel: pipe: %s", strerror(errno));
	}
	if (pipe2(pp->fds[1], O_CLOEXEC | O_NONBLOCK)) {
		int err = errno;

		close(pp->fds[0][0]);
		close(pp->fds[0][1]);
		free(pp);
		return shmrig__fail(-err, "channel: pipe: %s", strerror(err));
	}
	pair->backend = pp;
	return 0;
}

static void pipe_pair_free(struct shmrig_channel_pair *pair)
{
	struct pipe_pair *pp = pair->backend;

	if (!pp)
		return;
	for (int e = 0; e < 2; e++)
		for (int i = 0; i < 2; i++)
			close_fd(&pp->fds[e][i]);
	free(pp);
	pair->backend = NULL;
}

/* Our three ends move from the pair into the channel; the peer's write end
 * is closed here, so that its death is an EOF to us. */
static int pipe_open(struct shmrig_channel *ch, struct shmrig_channel_pair *pair)
{
	struct pipe_pair *pp = pair->backend;
	int end = ch->end;
	struct pipe_state *st;

	if (pp->fds[end][1] < 0 || pp->fds[!end][0] < 0)
		return shmrig__fail(-EINVAL, "channel: end %d of this pair is opened already", end);
	st = calloc(1, sizeof(*st));
	if (!st)
		return shmrig__fail(-ENOMEM, "channel: out of memory");
	st->out = pp->fds[end][1];
	st->keep_open = pp->fds[end][0];
	ch->fd = pp->fds[!end][0];
	pp->fds[end][0] = pp->fds[end][1] = pp->fds[!end][0] = -1;
	close_fd(&pp->fds[!end][1]);
	ch->backend = st;
	return 0;
}

static int flush_pending(struct shmrig_channel *ch, int64_t start, int timeout_ms);

static void pipe_close(struct shmrig_channel *ch)
{
	struct pipe_state *st = ch->backend;

	if (!st)
		return;
	/* A taken message goes out in full (the peer waits for it), for at most
	 * the open timeout; if even that fails, the peer sees a cut stream. */
	flush_pending(ch, shmrig__now_ms(), ch->opts.open_timeout_ms);
	close_fd(&st->out);
	close_fd(&st->keep_open);
	free(st->body);
	free(st->pending);
	free(st);
}

static int io_error(struct shmrig_channel *ch, int err)
{
	if (err == EPIPE || err == ECONNRESET)
		return shmrig__fail(-EPIPE, "channel: peer pid %d closed its end", (int)ch->peer);
	return shmrig__fail(-err, "channel: %s", strerror(err));
}

/* Write the iovecs in full, waiting as needed. Returns bytes written when the
 * wait timed out part-way (*partial set), 0 when all went, or -errno. */
static int write_all(struct shmrig_channel *ch, struct iovec *iov, int iovcnt, int64_t start,
		     int timeout_ms, size_t *written)
{
	struct pipe_state *st = ch->backend;

	*written = 0;
	while (iovcnt) {
		ssize_t n = writev(st->out, iov, iovcnt);

		if (n < 0) {
			int ret;

			if (errno == EINTR)
				continue;
			if (errno != EAGAIN)
				return io_error(ch, errno);
			ret = wait_on(ch, st->out, POLLOUT, start, timeout_ms);
			if (ret)
				return ret;
			continue;
		}
		*written += (size_t)n;
		while (iovcnt && (size_t)n >= iov->iov_len) {
			n -= (ssize_t)iov->iov_len;
			iov++;
			iovcnt--;
		}
		if (iovcnt) {
			iov->iov_base = (char *)iov->iov_base + n;
			iov->iov_len -= (size_t)n;
		}
	}
	return 0;
}

/* Finish a message a timed-out send left half-written. */
static int flush_pending(struct shmrig_channel *ch, int64_t start, int timeout_ms)
{
	struct pipe_state *st = ch->backend;
	struct iovec iov;
	size_t written;
	int ret;

	if (!st->pending)
		return 0;
	iov.iov_base = st->pending + st->pending_off;
	iov.iov_len = st->pending_len - st->pending_off;
	ret = write_all(ch, &iov, 1, start, timeout_ms, &written);
	st->pending_off += written;
	if (ret)
		return ret;
	free(st->pending);
	st->pending = NULL;
	return 0;
}

/* Keep the unwritten rest of a message (header and body) for the next call. */
static int keep_rest(struct shmrig_channel *ch, const struct stream_hdr *hdr, const void *msg,
		     size_t len, size_t written)
{
	struct pipe_state *st = ch->backend;
	size_t total = sizeof(*hdr) + len;

	st->pending = malloc(total);
	if (!st->pending)
		return -ENOMEM;
	memcpy(st->pending, hdr, sizeof(*hdr));
	memcpy(st->pending + sizeof(*hdr), msg, len);
	st->pending_len = total;
	st->pending_off = written;
	return 0;
}

static int pipe_sendv(struct shmrig_channel *ch, const void *const *msgs, const size_t *lens,
		      uint32_t n, int timeout_ms)
{
	int64_t start = shmrig__now_ms();
	int ret = flush_pending(ch, start, timeout_ms);

	for (uint32_t i = 0; !ret && i < n; i++) {
		struct stream_hdr hdr = { .magic = STREAM_MAGIC, .len = lens[i] };
		struct iovec iov[2] = { { &hdr, sizeof(hdr) }, { (void *)msgs[i], lens[i] } };
		size_t written;

		ret = write_all(ch, iov, 2, start, timeout_ms, &written);
		if (ret != -ETIMEDOUT || !written)
			continue;
		/* Part of it went: it is taken, the rest goes first next time. */
		if (keep_rest(ch, &hdr, msgs[i], lens[i], written))
			ret = shmrig__fail(-ENOMEM,
					   "channel: out of memory keeping a half-sent message");
		else if (i == n - 1)
			ret = 0;
	}
	return ret;
}

/* One read of at most len bytes, waiting until some arrive: the count (> 0) or -errno. */
static ssize_t read_ready(struct shmrig_channel *ch, void *buf, size_t len, int64_t start,
			  int timeout_ms)
{
	for (;;) {
		ssize_t n = read(ch->fd, buf, len);
		int ret;

		if (n > 0)
			return n;
		if (n == 0)
			return shmrig__fail(-EPIPE, "channel: peer pid %d closed its end",
					    (int)ch->peer);
		if (errno == EINTR)
			continue;
		if (errno != EAGAIN)
			return io_error(ch, errno);
		ret = shmrig__channel_wait_fd(ch, POLLIN, start, timeout_ms);
		if (ret)
			return ret;
	}
}

/* Read into buf until `want` bytes are there; *got counts across calls. */
static int read_some(struct shmrig_channel *ch, void *buf, size_t want, size_t *got, int64_t start,
		     int timeout_ms)
{
	while (*got < want) {
		ssize_t n = read_ready(ch, (char *)buf + *got, want - *got, start, timeout_ms);

		if (n < 0)
			return (int)n;
		*got += (size_t)n;
	}
	return 0;
}

static int deliver(struct pipe_state *st, void **msg, size_t *len)
{
	*msg = st->body;
	*len = st->hdr.len;
	st->body = NULL;
	return 0;
}

static int pipe_recv(struct shmrig_channel *ch, void **msg, size_t *len, int timeout_ms)
{
	struct pipe_state *st = ch->backend;
	int64_t start = shmrig__now_ms();
	int ret = flush_pending(ch, start, timeout_ms);

	if (ret)
		return ret;
	for (;;) {
		size_t have = st->rend - st->rstart;
		ssize_t n;

		if (st->body) {
			ret = read_some(ch, st->body, st->hdr.len, &st->body_got, start,
					timeout_ms);
			return ret ? ret : deliver(st, msg, len);
		}
		if (have >= sizeof(st->hdr)) {
			memcpy(&st->hdr, st->rbuf + st->rstart, sizeof(st->hdr));
			if (st->hdr.magic != STREAM_MAGIC || st->hdr.len > SHMRIG_CHANNEL_MAX_MSG)
				return shmrig__fail(-EBADMSG,
						    "channel: corrupt stream (magic %08x, length %llu)",
						    st->hdr.magic, (unsigned long long)st->hdr.len);
			if (have - sizeof(st->hdr) >= st->hdr.len ||
			    sizeof(st->hdr) + st->hdr.len > RBUF_SIZE) {
				size_t in_buf = have - sizeof(st->hdr);

				if (in_buf > st->hdr.len)
					in_buf = st->hdr.len;
				st->body = shmrig__msg_alloc(st->hdr.len);
				if (!st->body)
					return shmrig__fail(-ENOMEM,
							    "channel: out of memory for %llu bytes",
							    (unsigned long long)st->hdr.len);
				memcpy(st->body, st->rbuf + st->rstart + sizeof(st->hdr), in_buf);
				st->body_got = in_buf;
				st->rstart += sizeof(st->hdr) + in_buf;
				continue; /* complete, or the rest is read straight into body */
			}
		}
		/* need more bytes */
		if (st->rstart) {
			memmove(st->rbuf, st->rbuf + st->rstart, have);
			st->rstart = 0;
			st->rend = have;
		}
		n = read_ready(ch, st->rbuf + st->rend, RBUF_SIZE - st->rend, start, timeout_ms);
		if (n < 0)
			return (int)n;
		st->rend += (size_t)n;
	}
}

const struct channel_ops shmrig__channel_pipe = {
	.name = "pipe",
	.pair_create = pipe_pair_create,
	.pair_free = pipe_pair_free,
	.open = pipe_open,
	.close = pipe_close,
	.sendv = pipe_sendv,
	.recv = pipe_recv,
};
