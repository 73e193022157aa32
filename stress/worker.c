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
 */
#include "stress.h"

#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define WAIT_SLICE_MS 100
#define BACKOFF_MS 1
#define BACKOFF_TRIES 5000 /* ~5 s of backing off before a value is given up */
#define FINISH_TIMEOUT_MS 30000

const char *const phase_names[PH_COUNT] = {
	[PH_START] = "start",	  [PH_IDLE] = "idle",	  [PH_GENERATE] = "generate",
	[PH_ENCODE] = "encode",	  [PH_SEND] = "send",	  [PH_WAIT] = "wait",
	[PH_BACKOFF] = "backoff", [PH_DECODE] = "decode", [PH_VERIFY] = "verify",
	[PH_RELEASE] = "release", [PH_FINISH] = "finish",
};

uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
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

unsigned hist_bucket(uint64_t ns)
{
	unsigned log2;

	if (ns < HIST_SUB)
		return (unsigned)ns;
	log2 = 63u - (unsigned)__builtin_clzll(ns);
	return log2 * HIST_SUB + (unsigned)((ns >> (log2 - 2)) & (HIST_SUB - 1));
}

uint64_t hist_upper_ns(unsigned bucket)
{
	unsigned log2 = bucket / HIST_SUB, sub = bucket % HIST_SUB;

	if (log2 < 2)
		return bucket;
	return ((uint64_t)(HIST_SUB + sub + 1) << (log2 - 2)) - 1;
}

struct worker {
	const struct stress_opts *o;
	struct slot *slot;
	struct side *me;
	shmrig_pool *pool;
	shmrig_channel *ch;
	pid_t peer;
	unsigned inflight; /* producer: sent, not acked yet */
	bool done;         /* producer: the consumer's DONE arrived */
	struct fd_set_bits fds;
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

/* Record the first failure in words; returns -1. */
__attribute__((format(printf, 2, 3))) static int fail(struct worker *w, const char *fmt, ...)
{
	va_list ap;

	if (w->me->error[0])
		return -1;
	va_start(ap, fmt);
	vsnprintf(w->me->error, sizeof(w->me->error), fmt, ap);
	va_end(ap);
	return -1;
}

static bool stopping(const struct worker *w)
{
	return atomic_load_explicit(&w->slot->stop, memory_order_relaxed) != 0;
}

static int start(struct worker *w, const struct stress_opts *o, struct slot *slot,
		 struct side *me, shmrig_channel_pair *chp, int end, pid_t peer, uint64_t salt)
{
	struct shmrig_pool_opts po = { .prefix = o->prefix, .max_bytes = o->pool_limit,
				       .flags = SHMRIG_POOL_QUIET };
	/* under a limit, arenas of half of it leave room for blocks over 1 MiB,
	 * which get segments of their own */
	if (o->pool_limit)
		po.arena_size = o->pool_limit / 2 / SHMRIG_POOL_CHUNK * SHMRIG_POOL_CHUNK;
	if (o->pool_limit && po.arena_size < SHMRIG_POOL_CHUNK)
		po.arena_size = SHMRIG_POOL_CHUNK;
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

/* What is left at the end of the epoch: the survivor's clean-up and checks. */
static int finish(struct worker *w, bool audit)
{
	struct shmrig_pool_stats st;
	int ret;

	set_phase(w, PH_FINISH);
	ret = shmrig_pool_reap(w->pool);
	w->me->reaped = ret > 0 ? ret : 0;
	if (ret < 0)
		fail(w, "reap: %s", shmrig_last_error());
	w->me->live_end = shmrig_pool_stats(w->pool, &st) == 0 ? (int64_t)st.live_blocks : -1;
	if (audit)
		w->me->audit_ret = shmrig_pool_audit(w->pool);
	if (w->me->audit_ret)
		fail(w, "audit: %s", shmrig_last_error());
	shmrig_channel_close(w->ch);
	w->me->close_ret = shmrig_pool_close(w->pool);
	if (w->me->close_ret)
		fail(w, "pool_close: %s", shmrig_strerror(w->me->close_ret));
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

/* Encode, backing off on -ENOMEM. 0, 1 (given up), -EPIPE, or -1 (failure). */
static int encode(struct worker *w, const struct payload *p, void **frame, size_t *len)
{
	for (int tries = 0;; tries++) {
		int ret = shmrig_registry_encode(w->o->registry, w->pool, &p->value, frame, len);

		if (ret != -ENOMEM)
			return ret ? fail(w, "encode: %s", shmrig_last_error()) : 0;
		count(&w->me->enomem, 1);
		if (tries == BACKOFF_TRIES) {
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

/* One value: 0 taken, 1 given up, -EPIPE, -1 failure. */
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
		shmrig_frame_discard(w->pool, frame, flen);
		free(frame);
		return fail(w, "out of memory for a %zu-byte frame", flen);
	}
	memcpy(msg, &hdr, sizeof(hdr));
	memcpy(msg + sizeof(hdr), frame, flen);
	free(frame);
	set_phase(w, PH_SEND);
	ret = shmrig_frame_transfer(w->pool, msg + sizeof(hdr), flen, w->peer);
	if (ret) {
		/* the consumer died: what was not handed over is still ours */
		shmrig_frame_discard(w->pool, msg + sizeof(hdr), flen);
		ret = ret == -ESRCH ? -EPIPE : ret;
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

int producer_main(const struct stress_opts *o, struct slot *slot, unsigned pair, unsigned epoch,
		  shmrig_channel_pair *chp, pid_t consumer)
{
	struct worker w;
	struct payload p = { 0 };
	uint64_t seq = 0;

	if (start(&w, o, slot, &slot->prod, chp, 0, consumer,
		  ((uint64_t)pair << 40) ^ ((uint64_t)epoch << 8) ^ 1))
		return 2;
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

	verify(c, &h->value, h->checksum, ~0ull);
	count(&c->w.me->reverified, 1);
	set_phase(&c->w, PH_RELEASE);
	if (shmrig_value_release(&h->value))
		fail(&c->w, "release: %s", shmrig_last_error());
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

static void consume(struct consumer *c, const struct msg_hdr *hdr, const void *frame, size_t len)
{
	struct worker *w = &c->w;
	struct shmrig_value v;
	uint64_t latency;
	uint32_t blocks;
	unsigned bucket;

	set_phase(w, PH_DECODE);
	if (shmrig_registry_decode(w->o->registry, w->pool, frame, len, &v)) {
		count(&w->me->corrupted, 1);
		fail(w, "message %llu: decode: %s", (unsigned long long)hdr->seq,
		     shmrig_last_error());
		return;
	}
	if (hdr->seq != c->expected)
		count(hdr->seq > c->expected ? &w->me->gaps : &w->me->dups,
		      hdr->seq > c->expected ? hdr->seq - c->expected : 1);
	if (hdr->seq >= c->expected)
		c->expected = hdr->seq + 1;
	if (v.kind != hdr->kind) {
		count(&w->me->corrupted, 1);
		fail(w, "message %llu: kind %u, sent %u", (unsigned long long)hdr->seq, v.kind,
		     hdr->kind);
	} else {
		verify(c, &v, hdr->checksum, hdr->seq);
	}
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
		h->checksum = hdr->checksum;
		h->blocks = blocks;
		h->until_ns = now_ns() + (uint64_t)(rng_unit(&w->rng) * w->o->hold_ms * 1e6);
		atomic_fetch_add(&w->me->held_blocks, blocks);
		return;
	}
	set_phase(w, PH_RELEASE);
	if (shmrig_value_release(&v))
		fail(w, "release: %s", shmrig_last_error());
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
	shmrig_pool_for_each_live(w->pool, collect_own, o);
	for (unsigned i = 0; i < o->n; i++) {
		for (uint32_t r = 0; r < o->blocks[i].refcount; r++) {
			/* handed to us, never claimed: ours to claim, then free */
			int ret = shmrig_pool_claim(w->pool, &o->blocks[i].ref);

			if ((ret && ret != -SHMRIG_ECLAIMED) ||
			    shmrig_pool_free(w->pool, &o->blocks[i].ref))
				fail(w, "freeing an orphan: %s", shmrig_last_error());
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

		shmrig_pool_alloc(w->pool, 64, 0, 0, &ref, &data); /* never freed */
	}
	w->me->orphans = free_orphans(w);
	if (ended)
		send_word(w, MSG_DONE, c->expected);
	status = finish(w, false);
	free(c);
	return status;
}
