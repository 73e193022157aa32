/* SPDX-License-Identifier: MIT */
/*
 * The two sides of a pair, each in its own process.
 *
 * producer: draws a size and a kind, builds the value, checksums it, encodes
 * it into its pool, hands the blocks over and sends [msg_hdr][frame]; at most
 * `window` messages without an ack. -ENOMEM from the pool: back off (wait for
 * acks, which is when the consumer frees), give the value up after a while.
 * A send that times out (the consumer stopped reading) is sent again.
 *
 * consumer: receives, decodes, checks the sequence and the checksum, acks,
 * and holds some persistent values for a random time (checking them again at
 * release: a block freed or reused under a held value would show there).
 *
 * The epoch ends in order when the driver sets `stop` (END, then DONE once the
 * consumer has released everything), or when the peer dies (-EPIPE): the
 * survivor releases what it holds, frees blocks it owns that nothing holds
 * (orphans of a peer killed between handing blocks over and sending the frame),
 * reaps what the dead peer owned, and records what is left live.
 *
 * Injections at this level: --inject replay (the consumer decodes some frames
 * a second time, from a copy of their bytes: refused every time), --inject
 * close-after-send (the producer closes its pool right after a send and exits:
 * the consumer reads the rest, the pool keeps the segments it holds blocks
 * in), --inject hostile (errors from the library are counted by code and the
 * worker goes on: a scribbling peer must show as errors).
 */
#include "stress.h"

#include <dirent.h>
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define WAIT_SLICE_MS 100
#define BACKOFF_MS 1
#define BACKOFF_TRIES 5000 /* ~5 s of backing off before a value is given up */
#define FINISH_TIMEOUT_MS 30000
#define REPLAY_EVERY 3      /* --inject replay: every third frame is decoded twice */
#define CLOSE_AFTER_MAX 200 /* --inject close-after-send: after 1..this many messages */
#define MAX_ARENA_SIZE ((size_t)1 << 30) /* shmrig_pool_opts.arena_size at most */

const char *const err_names[ERR_KINDS] = {
	[ERR_STALE] = "ESTALE",     [ERR_NOTLIVE] = "ENOTLIVE", [ERR_BADREF] = "EBADREF",
	[ERR_CORRUPT] = "ECORRUPT", [ERR_CLAIMED] = "ECLAIMED", [ERR_LEAK] = "ELEAK",
	[ERR_PERM] = "EPERM",       [ERR_BUSY] = "EBUSY",       [ERR_BADMSG] = "EBADMSG",
	[ERR_NOENT] = "ENOENT",     [ERR_INVAL] = "EINVAL",     [ERR_OTHER] = "other",
};

enum err_kind err_kind_of(int code)
{
	switch (code) {
	case -SHMRIG_ESTALE:
		return ERR_STALE;
	case -SHMRIG_ENOTLIVE:
		return ERR_NOTLIVE;
	case -SHMRIG_EBADREF:
		return ERR_BADREF;
	case -SHMRIG_ECORRUPT:
		return ERR_CORRUPT;
	case -SHMRIG_ECLAIMED:
		return ERR_CLAIMED;
	case -SHMRIG_ELEAK:
		return ERR_LEAK;
	case -EPERM:
		return ERR_PERM;
	case -EBUSY:
		return ERR_BUSY;
	case -EBADMSG:
		return ERR_BADMSG;
	case -ENOENT:
		return ERR_NOENT;
	case -EINVAL:
		return ERR_INVAL;
	default:
		return ERR_OTHER;
	}
}

const char *const phase_names[PH_COUNT] = {
	[PH_START] = "start",     [PH_IDLE] = "idle",     [PH_GENERATE] = "generate",
	[PH_ENCODE] = "encode",   [PH_SEND] = "send",     [PH_WAIT] = "wait",
	[PH_BACKOFF] = "backoff", [PH_DECODE] = "decode", [PH_VERIFY] = "verify",
	[PH_RELEASE] = "release", [PH_FINISH] = "finish",
};

uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

uint64_t thread_cpu_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

void fds_snapshot(struct fd_set_bits *set)
{
	DIR *dir = opendir("/proc/self/fd");
	struct dirent *ent;

	memset(set, 0, sizeof(*set));
	if (!dir)
		return;
	while ((ent = readdir(dir))) {
		int fd = atoi(ent->d_name);

		if (ent->d_name[0] != '.' && fd != dirfd(dir) && fd < FD_SET_MAX)
			set->bits[fd / 64] |= 1ull << (fd % 64);
	}
	closedir(dir);
}

int fds_new_since(const struct fd_set_bits *then)
{
	struct fd_set_bits now;
	int n = 0;

	fds_snapshot(&now);
	for (unsigned i = 0; i < FD_SET_MAX / 64; i++)
		n += __builtin_popcountll(now.bits[i] & ~then->bits[i]);
	return n;
}

unsigned log_bucket(uint64_t ns, unsigned bits)
{
	unsigned log2;

	if (ns < (1u << bits))
		return (unsigned)ns;
	log2 = 63u - (unsigned)__builtin_clzll(ns);
	/* the `bits` bits below the top one choose the sub-bucket */
	return (log2 << bits) + (unsigned)((ns >> (log2 - bits)) & ((1u << bits) - 1));
}

uint64_t log_bucket_low(unsigned bucket, unsigned bits, uint64_t *width)
{
	unsigned log2 = bucket >> bits, sub = bucket & ((1u << bits) - 1);

	if (log2 < bits) {
		*width = 1;
		return bucket;
	}
	*width = (uint64_t)1 << (log2 - bits);
	return (uint64_t)((1u << bits) + sub) << (log2 - bits);
}

unsigned hist_bucket(uint64_t ns)
{
	return log_bucket(ns, HIST_SUB_BITS);
}

uint64_t hist_upper_ns(unsigned bucket)
{
	uint64_t width, low = log_bucket_low(bucket, HIST_SUB_BITS, &width);

	return low + width - 1;
}

struct worker {
	const struct stress_opts *o;
	struct slot *slot;
	struct side *me;
	shmrig_pool *pool;
	shmrig_channel *ch;
	pid_t peer;
	unsigned inflight;           /* producer: sent, not acked yet */
	bool done;                   /* producer: the consumer's DONE arrived */
	struct fd_set_bits fds;      /* open at the start */
	struct fd_set_bits fds_open; /* ... and once the channel is open */
	uint64_t rng;
	bool peer_gone;
};

static void set_phase(struct worker *w, enum phase ph)
{
	atomic_store_explicit(&w->me->phase, ph, memory_order_relaxed);
}

static void count(_Atomic uint64_t *counter, uint64_t n)
{
	atomic_fetch_add_explicit(counter, n, memory_order_relaxed);
}

static int vfail(struct worker *w, const char *fmt, va_list ap)
{
	if (!w->me->error[0])
		vsnprintf(w->me->error, sizeof(w->me->error), fmt, ap);
	return -1;
}

/* Record the first failure in words; returns -1. */
__attribute__((format(printf, 2, 3))) static int fail(struct worker *w, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vfail(w, fmt, ap);
	va_end(ap);
	return -1;
}

/*
 * An error `code` from the library. Under --inject hostile it is what a
 * scribbling peer must cause: counted by code, and the worker goes on
 * (returns 1). Otherwise a failure (returns -1).
 */
__attribute__((format(printf, 3, 4))) static int error(struct worker *w, int code, const char *fmt,
						       ...)
{
	va_list ap;

	if (w->o->inject == INJECT_HOSTILE) {
		enum err_kind kind = err_kind_of(code);

		count(&w->me->errors[kind], 1);
		if (!w->me->error_words[kind][0]) {
			va_start(ap, fmt);
			vsnprintf(w->me->error_words[kind], sizeof(w->me->error_words[kind]), fmt,
				  ap);
			va_end(ap);
		}
		return 1;
	}
	va_start(ap, fmt);
	vfail(w, fmt, ap);
	va_end(ap);
	return -1;
}

static bool stopping(const struct worker *w)
{
	return atomic_load_explicit(&w->slot->stop, memory_order_relaxed) != 0;
}

static int start(struct worker *w, const struct stress_opts *o, struct slot *slot, struct side *me,
		 shmrig_channel_pair *chp, int end, pid_t peer, uint64_t salt)
{
	struct shmrig_pool_opts po = { .size = sizeof(struct shmrig_pool_opts),
				       .prefix = o->prefix,
				       .max_bytes = o->pool_limit,
				       .flags = SHMRIG_POOL_QUIET };
	/* under a limit, arenas of half of it leave room for blocks over 1 MiB,
	 * which get segments of their own; within the pool's bounds (2 MiB to
	 * 1 GiB: a larger arena_size is -EINVAL) */
	if (o->pool_limit)
		po.arena_size = o->pool_limit / 2 / SHMRIG_POOL_CHUNK * SHMRIG_POOL_CHUNK;
	if (o->pool_limit && po.arena_size < SHMRIG_POOL_CHUNK)
		po.arena_size = SHMRIG_POOL_CHUNK;
	if (po.arena_size > MAX_ARENA_SIZE)
		po.arena_size = MAX_ARENA_SIZE;
	sigset_t none;
	int ret;

	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	*w = (struct worker){ .o = o, .slot = slot, .me = me, .peer = peer, .rng = o->seed ^ salt };
	atomic_store(&me->pid, (int)getpid());
	fds_snapshot(&w->fds);
	ret = shmrig_pool_open(&po, &w->pool);
	if (ret)
		return fail(w, "pool_open: %s", shmrig_last_error());
	ret = shmrig_channel_open(chp, end, peer, w->pool, o->fingerprint, &w->ch);
	shmrig_channel_pair_free(chp);
	if (ret == -EPIPE)
		w->peer_gone = true; /* killed while we said hello: the epoch ends here */
	else if (ret)
		return fail(w, "channel_open: %s", shmrig_last_error());
	fds_snapshot(&w->fds_open);
	return 0;
}

static int take_acks(struct worker *w, int timeout_ms);

/*
 * Send a message, again after each timeout, until it is taken or the peer is
 * gone. Between tries a producer takes the acks there are: a consumer blocked
 * on acks it cannot send would never read on.
 */
static int send_msg(struct worker *w, const void *msg, size_t len)
{
	for (;;) {
		int ret = shmrig_channel_send(w->ch, msg, len, w->o->send_timeout_ms);

		if (ret != -ETIMEDOUT)
			return ret;
		count(&w->me->timeouts, 1);
		if (w->me == &w->slot->prod && take_acks(w, 0))
			return w->peer_gone ? -EPIPE : -1;
	}
}

static int send_word(struct worker *w, uint32_t magic, uint64_t seq)
{
	struct msg_hdr hdr = { .magic = magic, .seq = seq };
	int ret = send_msg(w, &hdr, sizeof(hdr));

	if (ret == -EPIPE)
		w->peer_gone = true;
	else if (ret)
		return fail(w, "send: %s", shmrig_last_error());
	return 0;
}

/*
 * A peer that is gone by its channel's word may not be dead yet: a killed
 * process closes its sockets (the peer sees EOF, or UCX's reset) before it
 * becomes a zombie, and until then reap rightly takes it for alive and leaves
 * what it owns. Wait until it is dead (its pidfd readable), at most
 * PEER_DEATH_MS; a peer that is not dying by then is reap's "alive".
 */
#define PEER_DEATH_MS 5000
static void await_peer_death(const struct worker *w)
{
	int fd = (int)syscall(SYS_pidfd_open, w->peer, 0);
	struct pollfd pfd = { .fd = fd, .events = POLLIN };

	if (fd < 0)
		return; /* gone already (ESRCH), or cannot tell: reap decides */
	while (poll(&pfd, 1, PEER_DEATH_MS) < 0 && errno == EINTR)
		;
	close(fd);
}

/* What is left at the end of the epoch: the survivor's clean-up and checks. */
static int finish(struct worker *w, bool audit)
{
	struct shmrig_pool_stats st = SHMRIG_SIZED(struct shmrig_pool_stats);
	int ret;

	set_phase(w, PH_FINISH);
	if (w->peer_gone)
		await_peer_death(w);
	ret = shmrig_pool_reap(w->pool);
	w->me->reaped = ret > 0 ? ret : 0;
	if (ret < 0)
		error(w, ret, "reap: %s", shmrig_last_error());
	w->me->live_end = shmrig_pool_stats(w->pool, &st) == 0 ? (int64_t)st.live_blocks : -1;
	if (audit)
		w->me->audit_ret = shmrig_pool_audit(w->pool);
	if (w->me->audit_ret)
		error(w, w->me->audit_ret, "audit: %s", shmrig_last_error());
	shmrig_channel_close(w->ch);
	w->me->close_ret = shmrig_pool_close(w->pool);
	if (w->me->close_ret)
		error(w, w->me->close_ret, "pool_close: %s", shmrig_strerror(w->me->close_ret));
	w->me->fds_leaked = fds_new_since(&w->fds);
	if (w->me->fds_leaked)
		fail(w, "%d descriptors left open", w->me->fds_leaked);
	atomic_store(&w->me->done, 1);
	return w->me->error[0] ? 1 : 0;
}

/* ---- producer ---- */

/* Take the acks there are, waiting up to timeout_ms for the first. */
static int take_acks(struct worker *w, int timeout_ms)
{
	for (;;) {
		void *msg;
		size_t len;
		struct msg_hdr hdr;
		int ret = shmrig_channel_recv(w->ch, &msg, &len, timeout_ms);

		if (ret == -ETIMEDOUT)
			return 0;
		if (ret == -EPIPE) {
			w->peer_gone = true;
			return ret;
		}
		if (ret)
			return fail(w, "recv: %s", shmrig_last_error());
		memcpy(&hdr, msg, len < sizeof(hdr) ? len : sizeof(hdr));
		free(msg);
		if (len != sizeof(hdr) || (hdr.magic != MSG_ACK && hdr.magic != MSG_DONE))
			return fail(w, "a reply of %zu bytes that is no ack", len);
		if (hdr.magic == MSG_DONE)
			w->done = true;
		else if (w->inflight)
			w->inflight--;
		timeout_ms = 0;
	}
}

/* Encode, backing off on -ENOMEM (until the epoch stops). 0, 1 (given up:
 * backed off too long, or an error counted under --inject hostile), -EPIPE,
 * or -1 (failure). */
static int encode(struct worker *w, const struct payload *p, void **frame, size_t *len)
{
	for (int tries = 0;; tries++) {
		int ret = shmrig_registry_encode(w->o->registry, w->pool, &p->value, frame, len);

		if (ret != -ENOMEM) {
			if (!ret)
				return 0;
			ret = error(w, ret, "encode: %s", shmrig_last_error());
			count(&w->me->skipped, ret == 1);
			return ret;
		}
		count(&w->me->enomem, 1);
		if (!w->me->enomem_words[0])
			snprintf(w->me->enomem_words, sizeof(w->me->enomem_words),
				 "encode: -ENOMEM: %s", shmrig_last_error());
		if (tries == BACKOFF_TRIES || stopping(w)) {
			count(&w->me->skipped, 1);
			return 1;
		}
		set_phase(w, PH_BACKOFF);
		ret = take_acks(w, BACKOFF_MS);
		set_phase(w, PH_ENCODE);
		if (ret)
			return ret;
	}
}

/* One value: 0 taken, 1 given up (or refused by the pool under --inject
 * hostile), -EPIPE, -1 failure. */
static int produce(struct worker *w, struct payload *p, uint64_t seq)
{
	struct msg_hdr hdr = { .magic = MSG_DATA, .seq = seq };
	size_t size = draw_size(w->o, &w->rng), flen;
	void *frame;
	char *msg;
	int ret;

	set_phase(w, PH_GENERATE);
	if (payload_make(p, size, &w->rng))
		return fail(w, "out of memory for a %zu-byte value", size);
	hdr.kind = p->value.kind;
	hdr.nbytes = p->nbytes;
	if (shmrig_session_checksum(&p->value, &hdr.checksum))
		return fail(w, "checksum: %s", shmrig_last_error());
	if (w->o->inject == INJECT_CORRUPT && seq % 16 == 3 && p->nbytes)
		p->buf[rng_next(&w->rng) % p->nbytes] ^= 0x10; /* after the checksum */
	set_phase(w, PH_ENCODE);
	hdr.t0_ns = now_ns();
	ret = encode(w, p, &frame, &flen);
	if (ret)
		return ret;
	msg = malloc(sizeof(hdr) + flen);
	if (!msg) {
		/* best effort: failing already */
		(void)!shmrig_frame_discard(w->pool, frame, flen);
		free(frame);
		return fail(w, "out of memory for a %zu-byte frame", flen);
	}
	memcpy(msg, &hdr, sizeof(hdr));
	memcpy(msg + sizeof(hdr), frame, flen);
	free(frame);
	set_phase(w, PH_SEND);
	ret = shmrig_frame_transfer(w->pool, msg + sizeof(hdr), flen, w->peer);
	if (ret && ret != -ESRCH) {
		/* a block of ours that a peer wrote on (--inject hostile): not sent */
		int discarded;

		ret = error(w, ret, "transfer: %s", shmrig_last_error());
		discarded = shmrig_frame_discard(w->pool, msg + sizeof(hdr), flen);
		if (discarded)
			error(w, discarded, "discard: %s", shmrig_last_error());
		free(msg);
		count(&w->me->skipped, ret == 1);
		return ret;
	}
	if (ret) {
		/* the consumer died: what was not handed over is still ours (what
		 * was is not: discard fails on those, rightly, and reap has them) */
		(void)!shmrig_frame_discard(w->pool, msg + sizeof(hdr), flen);
		ret = -EPIPE;
	} else {
		if (w->o->inject == INJECT_ORPHAN && seq == 5) {
			/* die between hand-over and send: the consumer owns blocks it
			 * will never hear of */
			atomic_store(&w->me->self_killed, 1);
			raise(SIGKILL);
		}
		ret = send_msg(w, msg, sizeof(hdr) + flen);
	}
	free(msg);
	if (ret == -EPIPE) {
		w->peer_gone = true; /* blocks handed over are the dead consumer's: reaped */
		return -EPIPE;
	}
	if (ret)
		return fail(w, "send: %s", shmrig_last_error());
	count(&w->me->messages, 1);
	count(&w->me->bytes, p->nbytes);
	w->inflight++;
	return 0;
}

struct owned {
	pid_t self;
	int64_t blocks;
};

static void count_owned(void *arg, const struct shmrig_block_info *info)
{
	struct owned *own = arg;

	own->blocks += info->owner == own->self;
}

void failures_add(struct failures *f, const char *fmt, ...)
{
	va_list ap;

	if (f->n == STRESS_MAX_FAILURES)
		return;
	va_start(ap, fmt);
	vsnprintf(f->text[f->n++], sizeof(f->text[0]), fmt, ap);
	va_end(ap);
}

int64_t own_live_blocks(shmrig_pool *pool)
{
	struct owned own = { .self = getpid() };
	int ret = shmrig_pool_for_each_live(pool, count_owned, &own);

	return ret < 0 ? ret : own.blocks;
}

struct own_segments {
	const char *prefix;
	pid_t self;
	int count;
};

static void count_own_segment(void *arg, const char *name)
{
	struct own_segments *own = arg;
	pid_t creator;

	if (shmrig_segment_parse_name(own->prefix, name, &creator, NULL) == 0 &&
	    creator == own->self)
		own->count++;
}

/*
 * --inject close-after-send: close the pool right after a send, with messages
 * in flight and values held by the consumer (in its segments), and exit. Odd
 * epochs close the channel first (the consumer reads what was sent, then
 * -EPIPE, and releases everything); even ones, the first of each pair among
 * them, close the pool first and exit without closing the channel (the
 * consumer learns of it as of a death). The pool must leave the segments the
 * consumer holds blocks in, for it to unlink when it frees the last (or for a
 * sweep). What must be zero: blocks this process still owns (live_end), the
 * close's leak report, descriptors the pool left open.
 */
/* The channel of a producer that closes its pool and exits without closing
 * the channel (the exit closes its descriptors): kept reachable, so that a
 * leak checker does not report the handle as lost. */
static shmrig_channel *volatile channel_left_open;

static int close_after_send(struct worker *w, unsigned epoch)
{
	int64_t own;
	struct own_segments kept = { .prefix = w->o->prefix, .self = getpid() };
	bool channel_first = epoch % 2;

	set_phase(w, PH_FINISH);
	atomic_store(&w->me->closed_after_send, 1);
	w->me->closed_in_flight = (int)w->inflight;
	if (channel_first)
		shmrig_channel_close(w->ch);
	else
		channel_left_open = w->ch;
	own = own_live_blocks(w->pool);
	if (own < 0)
		fail(w, "for_each_live: %s", shmrig_last_error());
	w->me->live_end = own < 0 ? 0 : own;
	w->me->close_ret = shmrig_pool_close(w->pool);
	if (w->me->close_ret)
		fail(w, "pool_close: %s", shmrig_strerror(w->me->close_ret));
	if (shmrig_segment_list(w->o->prefix, count_own_segment, &kept) < 0)
		fail(w, "segment_list: %s", shmrig_last_error());
	w->me->closed_kept = kept.count;
	w->me->fds_leaked = fds_new_since(channel_first ? &w->fds : &w->fds_open);
	if (w->me->fds_leaked)
		fail(w, "%d descriptors left open", w->me->fds_leaked);
	atomic_store(&w->me->done, 1);
	return w->me->error[0] ? 1 : 0;
}

int producer_main(const struct stress_opts *o, struct slot *slot, unsigned pair, unsigned epoch,
		  shmrig_channel_pair *chp, pid_t consumer)
{
	struct worker w;
	struct payload p = { 0 };
	uint64_t seq = 0, close_at = UINT64_MAX;

	if (start(&w, o, slot, &slot->prod, chp, 0, consumer,
		  ((uint64_t)pair << 40) ^ ((uint64_t)epoch << 8) ^ 1))
		return 2;
	if (o->inject == INJECT_CLOSE_AFTER_SEND)
		close_at = 1 + rng_next(&w.rng) % CLOSE_AFTER_MAX;
	while (!stopping(&w) && !w.peer_gone && !w.me->error[0]) {
		int ret;

		bool full = w.inflight >= o->window;

		set_phase(&w, full ? PH_WAIT : PH_IDLE);
		if (take_acks(&w, full ? WAIT_SLICE_MS : 0))
			break;
		if (w.inflight >= o->window)
			continue;
		ret = produce(&w, &p, seq);
		if (ret < 0)
			break;
		seq += ret == 0;
		/* at the first send from close_at on while the consumer holds values:
		 * the pool then has segments it must leave to the consumer */
		if (ret == 0 && seq >= close_at && atomic_load(&slot->cons.held_blocks)) {
			payload_free(&p);
			return close_after_send(&w, epoch);
		}
	}
	payload_free(&p);
	if (!w.peer_gone && !w.me->error[0]) {
		/* in order: END, then acks until the consumer's DONE */
		uint64_t deadline = now_ns() + (uint64_t)FINISH_TIMEOUT_MS * 1000000u;

		set_phase(&w, PH_WAIT);
		send_word(&w, MSG_END, seq);
		while (!w.done && !w.peer_gone && !w.me->error[0] && now_ns() < deadline)
			take_acks(&w, WAIT_SLICE_MS);
		if (!w.done && !w.peer_gone)
			fail(&w, "no DONE from the consumer in %d ms", FINISH_TIMEOUT_MS);
	}
	/* The consumer is done or dead: nobody else changes our arenas. */
	return finish(&w, true);
}

/* ---- consumer ---- */

struct held {
	struct shmrig_value value;
	uint64_t seq;
	uint64_t checksum;
	uint64_t until_ns;
	uint32_t blocks;
};

struct consumer {
	struct worker w;
	struct held held[STRESS_MAX_HOLD];
	unsigned nheld;
	uint64_t expected;
};

static void verify(struct consumer *c, const struct shmrig_value *v, uint64_t want, uint64_t seq)
{
	uint64_t sum;
	int ret;

	set_phase(&c->w, PH_VERIFY);
	ret = shmrig_session_checksum(v, &sum);
	if (ret == 0 && sum == want)
		return;
	count(&c->w.me->corrupted, 1);
	fail(&c->w, "message %llu: checksum %s", (unsigned long long)seq,
	     ret ? shmrig_last_error() : "mismatch");
}

static void release(struct consumer *c, unsigned i)
{
	struct held *h = &c->held[i];
	int ret;

	verify(c, &h->value, h->checksum, h->seq);
	count(&c->w.me->reverified, 1);
	set_phase(&c->w, PH_RELEASE);
	ret = shmrig_value_release(&h->value);
	if (ret)
		error(&c->w, ret, "release: %s", shmrig_last_error());
	atomic_fetch_sub(&c->w.me->held_blocks, h->blocks);
	*h = c->held[--c->nheld];
}

/* Release the held values whose time has come (all of them with `all`). */
static void release_due(struct consumer *c, bool all)
{
	uint64_t now = now_ns();

	for (unsigned i = 0; i < c->nheld;)
		if (all || c->held[i].until_ns <= now)
			release(c, i);
		else
			i++;
}

/* Milliseconds until the next held value is due (WAIT_SLICE_MS at most). */
static int next_due_ms(const struct consumer *c)
{
	uint64_t now = now_ns(), next = now + (uint64_t)WAIT_SLICE_MS * 1000000u;

	for (unsigned i = 0; i < c->nheld; i++)
		if (c->held[i].until_ns < next)
			next = c->held[i].until_ns;
	return next <= now ? 0 : (int)((next - now + 999999) / 1000000);
}

/*
 * --inject replay: decode the frame again from a copy of its bytes, while the
 * first decode's value still holds its blocks. Persistent buffers were claimed
 * by the first decode: -SHMRIG_ECLAIMED. Temporary ones were freed by it (a
 * new generation): -SHMRIG_ESTALE. Anything else fails the run; and the first
 * value must still verify.
 */
static void replay(struct consumer *c, const struct msg_hdr *hdr, const void *frame, size_t len,
		   const struct shmrig_value *first)
{
	struct worker *w = &c->w;
	struct shmrig_frame f;
	struct shmrig_value again;
	enum replay_outcome outcome;
	bool temporary = true;
	void *copy;
	int ret;

	if (shmrig_frame_parse(frame, len, &f) || f.nbuffers == 0)
		return; /* no block to claim: nothing to refuse */
	for (uint32_t i = 0; i < f.nbuffers; i++)
		temporary &= f.buffers[i].temporary == 1;
	copy = malloc(len); /* malloc's alignment is the frame's 8 bytes at least */
	if (!copy) {
		fail(w, "out of memory for a replay");
		return;
	}
	memcpy(copy, frame, len);
	set_phase(w, PH_DECODE);
	ret = shmrig_registry_decode(w->o->registry, w->pool, copy, len, &again);
	free(copy);
	if (ret == 0) {
		outcome = REPLAY_ACCEPTED;
		fail(w, "message %llu: decoded a second time", (unsigned long long)hdr->seq);
		(void)!shmrig_value_release(&again); /* best effort: failed already */
	} else if (ret == (temporary ? -SHMRIG_ESTALE : -SHMRIG_ECLAIMED)) {
		outcome = temporary ? REPLAY_STALE : REPLAY_CLAIMED;
	} else {
		outcome = REPLAY_WRONG;
		fail(w, "message %llu: a replay of a %s frame refused with %s, not %s: %s",
		     (unsigned long long)hdr->seq, temporary ? "temporary" : "persistent",
		     shmrig_strerror(ret), temporary ? "ESTALE" : "ECLAIMED", shmrig_last_error());
	}
	count(&w->me->replays[outcome], 1);
	verify(c, first, hdr->checksum, hdr->seq);
}

static void consume(struct consumer *c, const struct msg_hdr *hdr, const void *frame, size_t len)
{
	struct worker *w = &c->w;
	struct shmrig_value v;
	uint64_t latency;
	uint32_t blocks;
	unsigned bucket;
	int ret;

	set_phase(w, PH_DECODE);
	ret = shmrig_registry_decode(w->o->registry, w->pool, frame, len, &v);
	if (hdr->seq != c->expected)
		count(hdr->seq > c->expected ? &w->me->gaps : &w->me->dups,
		      hdr->seq > c->expected ? hdr->seq - c->expected : 1);
	if (hdr->seq >= c->expected)
		c->expected = hdr->seq + 1;
	if (ret) {
		/* --inject hostile: refused, not accepted; acked, so the window moves */
		if (error(w, ret, "message %llu: decode: %s", (unsigned long long)hdr->seq,
			  shmrig_last_error()) < 0) {
			count(&w->me->corrupted, 1);
			return;
		}
		count(&w->me->refused, 1);
		send_word(w, MSG_ACK, hdr->seq);
		return;
	}
	if (v.kind != hdr->kind) {
		count(&w->me->corrupted, 1);
		fail(w, "message %llu: kind %u, sent %u", (unsigned long long)hdr->seq, v.kind,
		     hdr->kind);
	} else {
		verify(c, &v, hdr->checksum, hdr->seq);
	}
	if (w->o->inject == INJECT_REPLAY && hdr->seq % REPLAY_EVERY == 0)
		replay(c, hdr, frame, len, &v);
	latency = now_ns() - hdr->t0_ns;
	bucket = hist_bucket(latency);
	count(&w->slot->hist[bucket], 1); /* < HIST_BUCKETS: 64 powers of two */
	if (latency > atomic_load_explicit(&w->slot->max_latency_ns, memory_order_relaxed))
		atomic_store_explicit(&w->slot->max_latency_ns, latency, memory_order_relaxed);
	count(&w->me->messages, 1);
	count(&w->me->bytes, hdr->nbytes);
	send_word(w, MSG_ACK, hdr->seq);

	blocks = shmrig_value_leases(&v);
	if (!blocks)
		count(&w->me->temporary, 1);
	if (blocks && c->nheld < w->o->hold_max && rng_next(&w->rng) % 2) {
		struct held *h = &c->held[c->nheld++];

		h->value = v;
		h->seq = hdr->seq;
		h->checksum = hdr->checksum;
		h->blocks = blocks;
		h->until_ns = now_ns() + (uint64_t)(rng_unit(&w->rng) * w->o->hold_ms * 1e6);
		atomic_fetch_add(&w->me->held_blocks, blocks);
		return;
	}
	set_phase(w, PH_RELEASE);
	ret = shmrig_value_release(&v);
	if (ret)
		error(w, ret, "release: %s", shmrig_last_error());
}

struct orphans {
	pid_t self;
	unsigned n;
	struct shmrig_block_info blocks[256];
};

static void collect_own(void *arg, const struct shmrig_block_info *info)
{
	struct orphans *o = arg;

	if (info->owner == o->self && o->n < sizeof(o->blocks) / sizeof(o->blocks[0]))
		o->blocks[o->n++] = *info;
}

/*
 * Holding no value, every block this process still owns is an orphan: handed
 * over by a producer that was killed before it sent the frame. Free them
 * (the reconciliation of DESIGN.md "Lifetimes"). Returns how many.
 */
static int64_t free_orphans(struct worker *w)
{
	struct orphans *o = calloc(1, sizeof(*o));
	int64_t freed = 0;

	if (!o)
		return fail(w, "out of memory");
	o->self = getpid();
	if (shmrig_pool_for_each_live(w->pool, collect_own, o) < 0) {
		free(o);
		return fail(w, "for_each_live: %s", shmrig_last_error());
	}
	for (unsigned i = 0; i < o->n; i++) {
		for (uint32_t r = 0; r < o->blocks[i].refcount; r++) {
			/* handed to us, never claimed: ours to claim, then free */
			int ret = shmrig_pool_claim(w->pool, &o->blocks[i].ref);

			if (!ret || ret == -SHMRIG_ECLAIMED)
				ret = shmrig_pool_free(w->pool, &o->blocks[i].ref);
			if (ret && error(w, ret, "freeing an orphan: %s", shmrig_last_error()) > 0)
				break; /* a scribbled word: its other references fail alike */
		}
		freed++;
	}
	free(o);
	return freed;
}

int consumer_main(const struct stress_opts *o, struct slot *slot, unsigned pair, unsigned epoch,
		  shmrig_channel_pair *chp, pid_t producer)
{
	struct consumer *c = calloc(1, sizeof(*c));
	struct worker *w;
	bool ended = false;
	int status;

	if (!c)
		return 2;
	w = &c->w;
	if (start(w, o, slot, &slot->cons, chp, 1, producer,
		  ((uint64_t)pair << 40) ^ ((uint64_t)epoch << 8) ^ 2)) {
		free(c);
		return 2;
	}
	/* An ack that finds the producer gone does not end this loop: what it
	 * sent before it died is read to the end (recv says -EPIPE then). */
	while (!ended && w->ch && !w->me->error[0]) {
		struct msg_hdr hdr;
		void *msg;
		size_t len;
		int ret;

		set_phase(w, PH_WAIT);
		ret = shmrig_channel_recv(w->ch, &msg, &len, next_due_ms(c));
		release_due(c, false);
		if (ret == -ETIMEDOUT)
			continue;
		if (ret == -EPIPE) {
			w->peer_gone = true;
			break;
		}
		if (ret) {
			fail(w, "recv: %s", shmrig_last_error());
			break;
		}
		memcpy(&hdr, msg, len < sizeof(hdr) ? len : sizeof(hdr));
		if (len > sizeof(hdr) && hdr.magic == MSG_DATA)
			consume(c, &hdr, (char *)msg + sizeof(hdr), len - sizeof(hdr));
		else if (len == sizeof(hdr) && hdr.magic == MSG_END)
			ended = true;
		else
			fail(w, "a message of %zu bytes that is no DATA or END", len);
		free(msg);
	}
	release_due(c, true);
	if (w->o->inject == INJECT_LEAK) {
		struct shmrig_ref ref;
		void *data;

		if (shmrig_pool_alloc(w->pool, 64, 0, 0, &ref, &data)) /* never freed */
			fail(w, "--inject leak: pool_alloc: %s", shmrig_last_error());
	}
	w->me->orphans = free_orphans(w);
	if (ended)
		send_word(w, MSG_DONE, c->expected);
	status = finish(w, false);
	free(c);
	return status;
}
