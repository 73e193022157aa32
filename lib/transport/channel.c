/* SPDX-License-Identifier: MIT */
/* channel: pairs, ends, the hello, and dispatch to a backend. */
#include "transport/channel_internal.h"
#include "base/internal.h"

#include <shmrig/frame.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define HELLO_MAGIC 0x4f4c4548u /* "HELO" */
#define DEFAULT_OPEN_TIMEOUT_MS 5000

struct hello {
	uint32_t magic;
	uint32_t version;
	uint64_t fingerprint;
	int32_t pid;
	uint32_t reserved;
};

static const struct channel_ops *const backends[] = {
	&shmrig__channel_pipe,
	&shmrig__channel_uring,
	&shmrig__channel_ring,
#ifdef SHMRIG_HAVE_UCX
	&shmrig__channel_ucx,
#endif
};

#ifdef SHMRIG_HAVE_UCX
#define BACKEND_NAMES "pipe, uring, ring, ucx"
#else
#define BACKEND_NAMES "pipe, uring, ring"
#endif

/* A backend the library knows of but was built without: -EOPNOTSUPP saying why. */
static int not_built(const char *name)
{
#ifndef SHMRIG_HAVE_UCX
	if (strcmp(name, "ucx") == 0)
		return shmrig__fail(-EOPNOTSUPP,
				    "channel: backend 'ucx' is not built in (UCX, libucx-dev, was "
				    "not found, or -Ducx=disabled, when libshmrig was built)");
#endif
	return shmrig__fail(-EINVAL, "channel: no backend '%s' (" BACKEND_NAMES ")", name);
}

int64_t shmrig__now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int shmrig__remaining_ms(int64_t start, int timeout_ms)
{
	int64_t left;

	if (timeout_ms < 0)
		return -1;
	left = start + timeout_ms - shmrig__now_ms();
	return left > 0 ? (int)left : 0;
}

void *shmrig__msg_alloc(size_t len)
{
	size_t size = len < 8 ? 8 : (len + 7) & ~(size_t)7;

	return malloc(size);
}

uint64_t shmrig__channel_peer_id(const struct shmrig_channel *ch)
{
	return ch->peer_id;
}

bool shmrig__channel_peer_alive(struct shmrig_channel *ch)
{
	if (ch->remote)
		return true;
	return shmrig__watch_life(&ch->peer_watch, 0) != SHMRIG__DEAD;
}

int shmrig_channel_pair_create(const struct shmrig_channel_opts *user_opts,
			       shmrig_channel_pair **out)
{
	struct shmrig_channel_opts local = SHMRIG_SIZED(struct shmrig_channel_opts);
	const struct shmrig_channel_opts *opts = &local;
	const struct channel_ops *ops = NULL;
	struct shmrig_channel_pair *pair;
	const char *name;
	int ret;

	if (!out)
		return shmrig__fail(-EINVAL, "channel_pair_create: NULL out");
	if (user_opts) {
		ret = shmrig__sized_in(&local, sizeof(local), user_opts,
				       "channel_pair_create: struct shmrig_channel_opts");
		if (ret)
			return ret;
	}
	if (opts->flags)
		return shmrig__fail(-EINVAL, "channel: unknown flags 0x%x", opts->flags);
	name = opts->backend ? opts->backend : "pipe";
	for (size_t i = 0; i < sizeof(backends) / sizeof(backends[0]); i++)
		if (strcmp(backends[i]->name, name) == 0)
			ops = backends[i];
	if (!ops)
		return not_built(name);
	pair = calloc(1, sizeof(*pair));
	if (!pair)
		return shmrig__fail(-ENOMEM, "channel: out of memory");
	pair->ops = ops;
	pair->opts = *opts;
	pair->opts.backend = ops->name;
	if (!pair->opts.open_timeout_ms)
		pair->opts.open_timeout_ms = DEFAULT_OPEN_TIMEOUT_MS;
	pair->fds[0] = pair->fds[1] = -1;
	ret = ops->pair_create(pair);
	if (ret) {
		free(pair);
		return ret;
	}
	*out = pair;
	return 0;
}

void shmrig_channel_pair_free(shmrig_channel_pair *pair)
{
	if (!pair)
		return;
	for (int i = 0; i < 2; i++)
		if (pair->fds[i] >= 0)
			close(pair->fds[i]);
	pair->ops->pair_free(pair);
	free(pair);
}

/* Both sides send their hello, then read the other's: neither waits on the other to go first. */
static int exchange_hello(struct shmrig_channel *ch, int timeout_ms)
{
	struct hello mine = {
		.magic = HELLO_MAGIC,
		.version = SHMRIG_CHANNEL_VERSION,
		.fingerprint = ch->fingerprint,
		.pid = (int32_t)getpid(),
	};
	const void *msg = &mine;
	size_t len = sizeof(mine);
	struct hello theirs;
	void *buf;
	int64_t start = shmrig__now_ms();
	size_t got;
	int ret;

	ret = shmrig__channel_sendv_from(ch, &msg, &len, 1, &start, timeout_ms);
	if (ret)
		return ret;
	ret = shmrig__channel_recv_from(ch, NULL, 0, &buf, &got, &start, timeout_ms);
	if (ret == -ETIMEDOUT && ch->remote)
		return shmrig__fail(ret, "channel: no hello from the peer in %d ms", timeout_ms);
	if (ret)
		return ret == -ETIMEDOUT ?
			       shmrig__fail(ret, "channel: no hello from pid %d in %d ms",
					    (int)ch->peer, timeout_ms) :
			       ret;
	if (got != sizeof(theirs)) {
		free(buf);
		return shmrig__fail(-EPROTO, "channel: the peer's hello is %zu bytes, not %zu", got,
				    sizeof(theirs));
	}
	memcpy(&theirs, buf, sizeof(theirs));
	free(buf);
	if (theirs.magic != HELLO_MAGIC || theirs.version != SHMRIG_CHANNEL_VERSION)
		return shmrig__fail(-EPROTO, "channel: peer speaks version %u, we speak %u",
				    theirs.version, SHMRIG_CHANNEL_VERSION);
	if (theirs.fingerprint != ch->fingerprint)
		return shmrig__fail(-EPROTO,
				    "channel: registry fingerprint differs: ours %016llx, pid %d has "
				    "%016llx",
				    (unsigned long long)ch->fingerprint, (int)theirs.pid,
				    (unsigned long long)theirs.fingerprint);
	if (!ch->remote && theirs.pid != ch->peer)
		return shmrig__fail(-EPROTO, "channel: hello from pid %d, expected pid %d",
				    (int)theirs.pid, (int)ch->peer);
	return 0;
}

int shmrig_channel_open(shmrig_channel_pair *pair, int end, pid_t peer, shmrig_pool *pool,
			uint64_t fingerprint, shmrig_channel **out)
{
	struct shmrig_channel *ch;
	int ret;

	if (!pair || !out || (end != 0 && end != 1))
		return shmrig__fail(-EINVAL, "channel_open: bad pair, end or out");
	ch = calloc(1, sizeof(*ch));
	if (!ch)
		return shmrig__fail(-ENOMEM, "channel: out of memory");
	ch->ops = pair->ops;
	ch->opts = pair->opts;
	ch->end = end;
	ch->pool = pool;
	ch->fingerprint = fingerprint;
	ch->peer = peer;
	ch->fork_epoch = shmrig__fork_epoch();
	ch->fd = -1;
	/* Bound now, while the peer is known to be there (it is our child or
	 * parent): each later liveness check is one poll of the pidfd. */
	ret = shmrig__watch_open(&ch->peer_watch, peer);
	if (ret) {
		free(ch);
		if (ret == -ESRCH)
			return shmrig__fail(-EPIPE, "channel_open: peer pid %d is not alive",
					    (int)peer);
		return shmrig__fail(ret, "channel_open: cannot tell whether peer pid %d lives: %s",
				    (int)peer, strerror(-ret));
	}
	ch->peer_id = ch->peer_watch.id;
	/* Our socket end moves into the channel; the peer's is closed here so
	 * that its death is an EOF to us. */
	if (pair->fds[end] >= 0) {
		ch->fd = pair->fds[end];
		pair->fds[end] = -1;
		close(pair->fds[!end]);
		pair->fds[!end] = -1;
	}
	ret = ch->ops->open(ch, pair);
	if (!ret)
		ret = exchange_hello(ch, ch->opts.open_timeout_ms);
	if (ret) {
		shmrig_channel_close(ch);
		return ret;
	}
	*out = ch;
	return 0;
}

void shmrig_channel_close(shmrig_channel *ch)
{
	if (!ch)
		return;
	ch->ops->close(ch);
	if (ch->fd >= 0)
		close(ch->fd);
	shmrig__watch_close(&ch->peer_watch);
	free(ch);
}

const char *shmrig_channel_backend(const shmrig_channel *ch)
{
	return ch->ops->name;
}

const char *shmrig_channel_notes(const shmrig_channel *ch)
{
	return ch->notes;
}

/* An end a fork() handed to a child is its parent's, whatever the backend: the
 * peer checked the parent at hello, and a ring's indexes are the parent's.
 * The error is out of line and cold, so that the check on the hot path is a
 * load and a compare (with the message's call inline, send+recv cost 39 more
 * instructions; this way 9). */
static __attribute__((noinline, cold)) int forked_error(void)
{
	return shmrig__fail(-SHMRIG_EFORK,
			    "channel: an end inherited through fork (the child opens its own)");
}

/* What is left of a timeout that counts from *start (< 0: from now, read into it). */
static int left_from(int64_t *start, int timeout_ms)
{
	if (timeout_ms < 0)
		return -1;
	if (*start < 0) {
		*start = shmrig__now_ms();
		return timeout_ms;
	}
	return shmrig__remaining_ms(*start, timeout_ms);
}

/* The checks of a send: 0 or the error. */
static inline int check_sendv(shmrig_channel *ch, const void *const *msgs, const size_t *lens,
			      uint32_t n)
{
	if (!ch || (n && (!msgs || !lens)))
		return shmrig__fail(-EINVAL, "channel_send: NULL argument");
	if (SHMRIG_UNLIKELY(ch->fork_epoch != shmrig__fork_epoch()))
		return forked_error();
	for (uint32_t i = 0; i < n; i++) {
		if (!msgs[i] && lens[i])
			return shmrig__fail(-EINVAL, "channel_send: message %u is NULL", i);
		if (lens[i] > SHMRIG_CHANNEL_MAX_MSG)
			return shmrig__fail(-EMSGSIZE,
					    "channel_send: message %u is %zu bytes (max %zu)", i,
					    lens[i], SHMRIG_CHANNEL_MAX_MSG);
	}
	return 0;
}

int shmrig__channel_sendv_from(shmrig_channel *ch, const void *const *msgs, const size_t *lens,
			       uint32_t n, int64_t *start_ms, int timeout_ms)
{
	int ret = check_sendv(ch, msgs, lens, n);

	if (ret || !n)
		return ret;
	if (ch->ops->sendv_from)
		return ch->ops->sendv_from(ch, msgs, lens, n, start_ms, timeout_ms);
	return ch->ops->sendv(ch, msgs, lens, n, left_from(start_ms, timeout_ms));
}

int shmrig_channel_sendv(shmrig_channel *ch, const void *const *msgs, const size_t *lens,
			 uint32_t n, int timeout_ms)
{
	int ret = check_sendv(ch, msgs, lens, n);

	return ret || !n ? ret : ch->ops->sendv(ch, msgs, lens, n, timeout_ms);
}

int shmrig_channel_send(shmrig_channel *ch, const void *msg, size_t len, int timeout_ms)
{
	return shmrig_channel_sendv(ch, &msg, &len, 1, timeout_ms);
}

/* The checks of a recv: 0 or the error. */
static inline int check_recv(shmrig_channel *ch, void **msg, size_t *len)
{
	if (!ch || !msg || !len)
		return shmrig__fail(-EINVAL, "channel_recv: NULL argument");
	if (SHMRIG_UNLIKELY(ch->fork_epoch != shmrig__fork_epoch()))
		return forked_error();
	return 0;
}

int shmrig__channel_recv_from(shmrig_channel *ch, void *buf, size_t cap, void **msg, size_t *len,
			      int64_t *start_ms, int timeout_ms)
{
	int ret = check_recv(ch, msg, len);

	if (ret)
		return ret;
	if (ch->ops->recv_from)
		return ch->ops->recv_from(ch, buf, cap, msg, len, start_ms, timeout_ms);
	return ch->ops->recv(ch, msg, len, left_from(start_ms, timeout_ms));
}

int shmrig_channel_recv(shmrig_channel *ch, void **msg, size_t *len, int timeout_ms)
{
	int ret = check_recv(ch, msg, len);

	return ret ? ret : ch->ops->recv(ch, msg, len, timeout_ms);
}

int shmrig_channel_send_frame(shmrig_channel *ch, const void *frame, size_t len, int timeout_ms)
{
	int ret;

	if (!ch || !ch->pool)
		return shmrig__fail(-EINVAL, "channel_send_frame: the channel has no pool");
	if (SHMRIG_UNLIKELY(ch->fork_epoch != shmrig__fork_epoch()))
		return forked_error();
#ifdef SHMRIG_HAVE_UCX
	/* the peer may be on another host, where our blocks do not exist: the
	 * payload goes with the frame */
	if (ch->remote)
		return shmrig__ucx_send_frame(ch, frame, len, timeout_ms);
#endif
	/* to the identity the hello verified: no syscall per frame */
	ret = shmrig_frame_transfer_peer(ch->pool, frame, len, ch->peer_id);
	if (ret)
		return ret;
	return shmrig_channel_send(ch, frame, len, timeout_ms);
}

/* ---- ends that are not parent and child (ucx) ---- */

/* The options of listen and connect, checked: *local gets them (backend "ucx"). */
static int remote_opts(const struct shmrig_channel_opts *user_opts, const char *what,
		       struct shmrig_channel_opts *local)
{
	int ret;

	*local = SHMRIG_SIZED(struct shmrig_channel_opts);
	if (user_opts) {
		ret = shmrig__sized_in(local, sizeof(*local), user_opts, what);
		if (ret)
			return ret;
	}
	if (local->flags)
		return shmrig__fail(-EINVAL, "channel: unknown flags 0x%x", local->flags);
	if (local->backend && strcmp(local->backend, "ucx") != 0) {
		for (size_t i = 0; i < sizeof(backends) / sizeof(backends[0]); i++)
			if (strcmp(backends[i]->name, local->backend) == 0)
				return shmrig__fail(-EOPNOTSUPP,
						    "channel: backend '%s' joins parent and child "
						    "only; listen and connect need 'ucx'",
						    local->backend);
		return not_built(local->backend);
	}
#ifdef SHMRIG_HAVE_UCX
	local->backend = shmrig__channel_ucx.name;
	if (!local->open_timeout_ms)
		local->open_timeout_ms = DEFAULT_OPEN_TIMEOUT_MS;
	return 0;
#else
	return not_built("ucx");
#endif
}

#ifdef SHMRIG_HAVE_UCX
/* A channel with no pid behind it, ready for the backend to fill. */
static struct shmrig_channel *remote_channel(const struct shmrig_channel_opts *opts,
					     shmrig_pool *pool, uint64_t fingerprint)
{
	struct shmrig_channel *ch = calloc(1, sizeof(*ch));

	if (!ch)
		return NULL;
	ch->ops = &shmrig__channel_ucx;
	ch->opts = *opts;
	ch->end = -1;
	ch->pool = pool;
	ch->fingerprint = fingerprint;
	ch->remote = true;
	ch->fork_epoch = shmrig__fork_epoch();
	ch->fd = -1;
	ch->peer_watch.pidfd = -1;
	return ch;
}
#endif

int shmrig_channel_listen(const struct shmrig_channel_opts *opts, const char *address,
			  shmrig_channel_listener **out)
{
	struct shmrig_channel_opts local;
	int ret;

	if (!address || !out)
		return shmrig__fail(-EINVAL, "channel_listen: NULL address or out");
	ret = remote_opts(opts, "channel_listen: struct shmrig_channel_opts", &local);
	if (ret)
		return ret;
#ifdef SHMRIG_HAVE_UCX
	return shmrig__ucx_listen(&local, address, out);
#else
	return not_built("ucx");
#endif
}

int shmrig_channel_listener_address(const shmrig_channel_listener *l, char *buf, size_t len)
{
	if (!l || !buf || !len)
		return shmrig__fail(-EINVAL, "channel_listener_address: NULL argument");
#ifdef SHMRIG_HAVE_UCX
	return shmrig__ucx_listener_address(l, buf, len);
#else
	return not_built("ucx");
#endif
}

int shmrig_channel_accept(shmrig_channel_listener *l, shmrig_pool *pool, uint64_t fingerprint,
			  int timeout_ms, shmrig_channel **out)
{
#ifdef SHMRIG_HAVE_UCX
	struct shmrig_channel *ch;
	int ret;

	if (!l || !out)
		return shmrig__fail(-EINVAL, "channel_accept: NULL listener or out");
	ch = remote_channel(shmrig__ucx_listener_opts(l), pool, fingerprint);
	if (!ch)
		return shmrig__fail(-ENOMEM, "channel: out of memory");
	ret = shmrig__ucx_accept(l, ch, timeout_ms);
	if (!ret)
		ret = exchange_hello(ch, ch->opts.open_timeout_ms);
	if (ret) {
		shmrig_channel_close(ch);
		return ret;
	}
	*out = ch;
	return 0;
#else
	(void)pool;
	(void)fingerprint;
	(void)timeout_ms;
	if (!l || !out)
		return shmrig__fail(-EINVAL, "channel_accept: NULL listener or out");
	return not_built("ucx");
#endif
}

void shmrig_channel_listener_close(shmrig_channel_listener *l)
{
#ifdef SHMRIG_HAVE_UCX
	if (l)
		shmrig__ucx_listener_close(l);
#else
	(void)l;
#endif
}

#ifdef SHMRIG_HAVE_UCX
/* connect, its options checked: the endpoint, then the hello (which makes the connection). */
static int connect_ucx(const struct shmrig_channel_opts *opts, const char *address,
		       shmrig_pool *pool, uint64_t fingerprint, int timeout_ms,
		       shmrig_channel **out)
{
	struct shmrig_channel *ch = remote_channel(opts, pool, fingerprint);
	int ret;

	if (!ch)
		return shmrig__fail(-ENOMEM, "channel: out of memory");
	ret = shmrig__ucx_connect(ch, address);
	if (!ret) {
		/* a peer that is not there fails the hello: -EPIPE from the endpoint */
		ret = exchange_hello(ch, timeout_ms < 0 ? opts->open_timeout_ms : timeout_ms);
		if (ret == -EPIPE)
			ret = shmrig__fail(-ECONNREFUSED,
					   "channel_connect: %s: refused or unreachable (nothing "
					   "listens, or no tcp in UCX_TLS): %s",
					   address, shmrig_last_error());
	}
	if (ret) {
		shmrig_channel_close(ch);
		return ret;
	}
	*out = ch;
	return 0;
}
#endif

int shmrig_channel_connect(const struct shmrig_channel_opts *opts, const char *address,
			   shmrig_pool *pool, uint64_t fingerprint, int timeout_ms,
			   shmrig_channel **out)
{
	struct shmrig_channel_opts local;
	int ret;

	if (!address || !out)
		return shmrig__fail(-EINVAL, "channel_connect: NULL address or out");
	ret = remote_opts(opts, "channel_connect: struct shmrig_channel_opts", &local);
	if (ret)
		return ret;
#ifdef SHMRIG_HAVE_UCX
	return connect_ucx(&local, address, pool, fingerprint, timeout_ms, out);
#else
	(void)pool;
	(void)fingerprint;
	(void)timeout_ms;
	return not_built("ucx");
#endif
}
