/* SPDX-License-Identifier: MIT */
/*
 * --workload: the producers and consumers of the replay, each in its own
 * process (the layout and the ledger: stress.h; the driver: workload.c).
 *
 * producer: OPEN LOOP. Its messages are due on an absolute schedule, at
 * rate * rate_scale / producers a second: the next is due a gap
 * (plan_draw_gap_s) after the previous one was DUE, never after it was sent,
 * so a producer that falls behind sends what is due back to back and its
 * messages' latency, measured from when they were due, shows the queueing
 * (no coordinated omission). A message's size is plan_draw_size's, its kind
 * the flow's codec, its contents seeded. At most `window` messages without an
 * ack (over all its links): a message due with the window full waits, counted
 * with its wait. -ENOMEM from the pool: back off (take acks) and try again,
 * until the run's end; then the value is given up, counted. It samples its
 * pool on the run's grid: live blocks per class and large ones, live bytes.
 *
 * consumer: receives, decodes, takes the latency (now - the message's due
 * time), checks sequence and checksum, acks, and holds the value for
 * plan_draw_hold_s() in a heap ordered by release time; at release the value
 * is checked again. A value whose buffers were temporary (the bytes codec)
 * has no block left to hold after its decode.
 *
 * The end: at end of schedule each producer sends END on its links and waits
 * for each consumer's DONE (sent once it has released everything it holds),
 * then checks that nothing is live in its pool and closes it; a consumer
 * checks that it owns no block. Descriptors are counted as the pairs' workers do.
 */
#include "stress.h"
#include "draw.h"

#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <time.h>
#include <unistd.h>

#define START_TIMEOUT_NS 30000000000ull /* the driver's go, after every channel is open */
#define FINISH_TIMEOUT_NS 30000000000ull
#define WAIT_SLICE_MS 100
#define SHORT_SLEEP_NS 200000u /* sleeps shorter than a recv's 1 ms: at most this long */
#define POLL_SLEEP_NS 100000u  /* a consumer of several links: between polls */
#define BACKOFF_MS 1

unsigned wl_hist_bucket(uint64_t ns)
{
	return log_bucket(ns, WL_HIST_SUB_BITS);
}

double wl_hist_mid_ns(unsigned bucket)
{
	uint64_t width, low = log_bucket_low(bucket, WL_HIST_SUB_BITS, &width);

	if ((bucket >> WL_HIST_SUB_BITS) < WL_HIST_SUB_BITS)
		return (double)bucket; /* below 2^bits: an exact value */
	/* the bucket is [low, low + width): its geometric middle */
	return (double)low * __builtin_sqrt(1.0 + (double)width / (double)low);
}

/* One end of a link in this process. */
struct end {
	shmrig_channel *ch;
	unsigned link;
	pid_t peer;
	uint64_t seq;  /* producer: the next to send; consumer: the next expected */
	bool finished; /* producer: DONE came; consumer: END came */
	bool warm;     /* consumer: the warm-up message came */
};

struct held {
	struct shmrig_value value;
	uint64_t until_ns, seq, checksum;
};

struct rworker {
	const struct wl_run *run;
	const struct plan_flow *flow;
	struct wl_proc *me;
	struct fd_set_bits fds;
	shmrig_pool *pool;
	struct end *ends;
	unsigned nends;
	uint64_t content_rng;  /* payload contents */
	struct plan_rng draws; /* gaps and sizes (producer), holds (consumer) */
	/* producer */
	unsigned inflight;
	/* consumer */
	struct held *held; /* a min-heap on until_ns */
	size_t nheld, held_cap;
};

__attribute__((format(printf, 2, 3))) static int fail(struct rworker *w, const char *fmt, ...)
{
	va_list ap;

	if (!w->me->side.error[0]) {
		va_start(ap, fmt);
		vsnprintf(w->me->side.error, sizeof(w->me->side.error), fmt, ap);
		va_end(ap);
	}
	return -1;
}

static bool failed(const struct rworker *w)
{
	return w->me->side.error[0] != 0;
}

static void sleep_until(uint64_t t_ns)
{
	struct timespec ts = { .tv_sec = (time_t)(t_ns / 1000000000u),
			       .tv_nsec = (long)(t_ns % 1000000000u) };

	while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
		;
}

static enum shmrig_kind codec_kind(const char *codec)
{
	return !strcmp(codec, "ndarray") ? SHMRIG_KIND_NDARRAY :
	       !strcmp(codec, "table")   ? SHMRIG_KIND_TABLE :
	       !strcmp(codec, "dataset") ? SHMRIG_KIND_DATASET :
					   SHMRIG_KIND_BYTES;
}

static int produce(struct rworker *w, struct payload *p, struct end *e, uint64_t due_ns,
		   uint64_t end_ns, uint32_t magic);
static int take_acks(struct rworker *w, struct end *e, int timeout_ms);
static int receive(struct rworker *w, struct end *e, int timeout_ms);

/*
 * Before time 0, one message over each link, decoded and dropped: the
 * consumer maps the producer's arena then, not in the schedule's first
 * messages (whose latency would show mappings, not a running pool).
 */
static int warm_up_links(struct rworker *w, bool producer, uint64_t deadline)
{
	struct payload p = { 0 };
	int ret = 0;

	for (unsigned e = 0; e < w->nends && !ret; e++) {
		if (producer) {
			ret = produce(w, &p, &w->ends[e], 0, deadline, MSG_WARM);
			continue;
		}
		while (!ret && !w->ends[e].warm && !w->ends[e].finished && !failed(w))
			ret = now_ns() > deadline ?
				      fail(w, "link %u: no warm-up message", w->ends[e].link) :
			      receive(w, &w->ends[e], WAIT_SLICE_MS) < 0 ? -1 :
									   0;
	}
	payload_free(&p);
	while (producer && !ret && w->inflight && !failed(w))
		for (unsigned e = 0; e < w->nends && !ret; e++)
			ret = now_ns() > deadline ?
				      fail(w, "no ack of the warm-up messages") :
				      take_acks(w, &w->ends[e], w->nends == 1 ? WAIT_SLICE_MS : 1);
	return ret || failed(w) ? -1 : 0;
}

/*
 * Open the pool (bound to the flow's node for a producer, where that node
 * exists) and this process's links; wait for the driver's go. 0 or -1.
 */
static int start(struct rworker *w, const struct wl_run *run, unsigned flow, unsigned index,
		 unsigned proc, bool producer)
{
	const struct plan_flow *f = &run->wl->flows[flow];
	unsigned np = f->producers, nc = f->consumers, nlinks = np > nc ? np : nc;
	unsigned mine = producer ? np : nc;
	struct shmrig_pool_opts po = { .size = sizeof(struct shmrig_pool_opts),
				       .prefix = run->o->prefix,
				       .max_bytes = run->o->pool_limit,
				       .flags = SHMRIG_POOL_QUIET };
	char node_dir[64];
	uint64_t deadline;
	sigset_t none;
	int ret;

	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	/* the schedule's sleeps are short: the default 50 us slack would show in them */
	(void)!prctl(PR_SET_TIMERSLACK, 1000ul, 0, 0, 0);
	*w = (struct rworker){ .run = run,
			       .flow = f,
			       .me = &run->procs[proc],
			       .content_rng = run->o->seed ^ ((uint64_t)proc << 32) ^
					      0xc017e47ull };
	plan_rng_seed(&w->draws, run->o->seed * 0x9e3779b97f4a7c15ull + proc + 1);
	fds_snapshot(&w->fds);
	atomic_store(&w->me->side.pid, (int)getpid());
	/* wait for every pid: a link's open names its peer's */
	deadline = now_ns() + START_TIMEOUT_NS;
	while (!atomic_load(&run->ledger->pids_set)) {
		if (now_ns() > deadline || atomic_load(&run->ledger->abort))
			return fail(w, "no go from the driver");
		sleep_until(now_ns() + 1000000u);
	}
	snprintf(node_dir, sizeof(node_dir), "/sys/devices/system/node/node%d",
		 producer ? f->producer_node : f->consumer_node);
	if (access(node_dir, F_OK) == 0) {
		po.flags |= SHMRIG_POOL_BIND_NODE;
		po.numa_node = producer ? f->producer_node : f->consumer_node;
	}
	ret = shmrig_pool_open(&po, &w->pool);
	if (ret)
		return fail(w, "pool_open: %s", shmrig_last_error());
	if (producer) {
		/* its first arena now, not in the schedule's first message: the replay
		 * measures a pool that is running, as the plan models it */
		struct shmrig_ref ref;
		void *data;

		ret = shmrig_pool_alloc(w->pool, (size_t)f->sizes[0].min, 0, 0, &ref, &data);
		if (ret == 0)
			ret = shmrig_pool_free(w->pool, &ref);
		if (ret && ret != -ENOMEM)
			return fail(w, "pool_alloc: %s", shmrig_last_error());
	}
	w->ends = calloc((nlinks - index + mine - 1) / mine, sizeof(*w->ends));
	if (!w->ends)
		return fail(w, "out of memory");
	w->nends = (nlinks - index + mine - 1) / mine;
	/* links in ascending order on both sides: the opens cannot wait in a cycle */
	for (unsigned k = index, e = 0; k < nlinks; k += mine, e++) {
		unsigned peer_proc = run->first_proc[flow] + (producer ? np + k % nc : k % np);

		w->ends[e].link = run->first_link[flow] + k;
		w->ends[e].peer = (pid_t)atomic_load(&run->procs[peer_proc].side.pid);
		ret = shmrig_channel_open(run->pairs[w->ends[e].link], producer ? 0 : 1,
					  w->ends[e].peer, w->pool, run->o->fingerprint,
					  &w->ends[e].ch);
		if (ret)
			return fail(w, "link %u: channel_open: %s", w->ends[e].link,
				    shmrig_last_error());
	}
	for (unsigned l = 0; l < run->nlinks; l++)
		shmrig_channel_pair_free(run->pairs[l]);
	if (warm_up_links(w, producer, deadline))
		return -1;
	atomic_fetch_add(&run->ledger->ready, 1);
	while (!atomic_load(&run->ledger->start_ns)) {
		if (now_ns() > deadline || atomic_load(&run->ledger->abort))
			return fail(w, "no start from the driver");
		sleep_until(now_ns() + 200000u);
	}
	return 0;
}

static void close_ends(struct rworker *w)
{
	for (unsigned e = 0; e < w->nends; e++)
		shmrig_channel_close(w->ends[e].ch);
	free(w->ends);
	w->ends = NULL;
}

/* Close the pool and count the descriptors left: the end of every worker. */
static int finish(struct rworker *w)
{
	close_ends(w);
	if (w->pool) {
		w->me->side.close_ret = shmrig_pool_close(w->pool);
		if (w->me->side.close_ret)
			fail(w, "pool_close: %s", shmrig_strerror(w->me->side.close_ret));
	}
	w->me->side.fds_leaked = fds_new_since(&w->fds);
	if (w->me->side.fds_leaked)
		fail(w, "%d descriptors left open", w->me->side.fds_leaked);
	atomic_store(&w->me->side.done, 1);
	return failed(w) ? 1 : 0;
}

static int send_word(struct rworker *w, struct end *e, uint32_t magic)
{
	struct msg_hdr hdr = { .magic = magic, .seq = e->seq };

	for (;;) {
		int ret = shmrig_channel_send(e->ch, &hdr, sizeof(hdr), w->run->o->send_timeout_ms);

		if (ret == 0)
			return 0;
		if (ret != -ETIMEDOUT)
			return fail(w, "link %u: send: %s", e->link, shmrig_last_error());
		w->me->side.timeouts++;
	}
}

/* ---- producer ---- */

/* Take the acks waiting on end e (the first up to timeout_ms). 0 or -1. */
static int take_acks(struct rworker *w, struct end *e, int timeout_ms)
{
	for (;;) {
		struct msg_hdr hdr;
		void *msg;
		size_t len;
		int ret = shmrig_channel_recv(e->ch, &msg, &len, timeout_ms);

		if (ret == -ETIMEDOUT)
			return 0;
		if (ret)
			return fail(w, "link %u: recv: %s", e->link, shmrig_last_error());
		memcpy(&hdr, msg, len < sizeof(hdr) ? len : sizeof(hdr));
		free(msg);
		if (len != sizeof(hdr) || (hdr.magic != MSG_ACK && hdr.magic != MSG_DONE))
			return fail(w, "link %u: a reply of %zu bytes that is no ack", e->link,
				    len);
		if (hdr.magic == MSG_DONE) {
			/* the consumer's last word: it closes its end next */
			e->finished = true;
			return 0;
		}
		if (w->inflight)
			w->inflight--;
		timeout_ms = 0;
	}
}

static int take_all_acks(struct rworker *w)
{
	for (unsigned e = 0; e < w->nends; e++)
		if (!w->ends[e].finished && take_acks(w, &w->ends[e], 0))
			return -1;
	return 0;
}

/* Wait up to about wait_ns for acks: a recv's timeout on one link, a sleep
 * for less than a millisecond or with several links. */
static int wait_acks(struct rworker *w, uint64_t wait_ns)
{
	if (w->nends == 1 && wait_ns >= 1000000u)
		return take_acks(w, &w->ends[0],
				 wait_ns / 1000000u > WAIT_SLICE_MS ? WAIT_SLICE_MS :
								      (int)(wait_ns / 1000000u));
	sleep_until(now_ns() + (wait_ns < SHORT_SLEEP_NS ? wait_ns : SHORT_SLEEP_NS));
	return take_all_acks(w);
}

/* Sample the pool into the grid point of `now`. */
static void sample(struct rworker *w, uint64_t now, uint64_t start, uint64_t *last_k)
{
	const struct wl_run *run = w->run;
	uint64_t k = (now - start) / run->sample_ns, t = now_ns();
	struct shmrig_pool_class_stats classes[SHMRIG_POOL_NUM_CLASSES];
	struct shmrig_pool_stats st = SHMRIG_SIZED(struct shmrig_pool_stats);
	struct wl_sample *s;

	if (k >= run->nsamples)
		return;
	classes[0].size = sizeof(classes[0]);
	if (shmrig_pool_class_stats(w->pool, classes, SHMRIG_POOL_NUM_CLASSES) < 0 ||
	    shmrig_pool_stats(w->pool, &st)) {
		fail(w, "sampling the pool: %s", shmrig_last_error());
		return;
	}
	s = &run->samples[(size_t)(w->me - run->procs) * run->nsamples + k];
	for (unsigned c = 0; c < SHMRIG_POOL_NUM_CLASSES; c++)
		s->live[c] = (uint32_t)classes[c].live_blocks;
	s->live[WL_LARGE] = (uint32_t)st.large_live_blocks;
	s->live_bytes = st.live_bytes;
	s->taken = 1;
	w->me->samples++;
	if (*last_k != UINT64_MAX && k > *last_k + 1)
		w->me->samples_missed += k - *last_k - 1;
	*last_k = k;
	w->me->sample_ns += now_ns() - t;
}

/* Encode, backing off on -ENOMEM until `give_up_ns`. 0, 1 given up, -1 failure. */
static int encode(struct rworker *w, const struct payload *p, void **frame, size_t *len,
		  uint64_t give_up_ns)
{
	for (;;) {
		int ret =
			shmrig_registry_encode(w->run->o->registry, w->pool, &p->value, frame, len);

		if (ret == 0)
			return 0;
		if (ret != -ENOMEM)
			return fail(w, "encode: %s", shmrig_last_error());
		w->me->side.enomem++;
		if (!w->me->side.enomem_words[0])
			snprintf(w->me->side.enomem_words, sizeof(w->me->side.enomem_words),
				 "encode: -ENOMEM: %s", shmrig_last_error());
		if (now_ns() >= give_up_ns) {
			w->me->side.skipped++;
			return 1;
		}
		for (unsigned e = 0; e < w->nends; e++)
			if (take_acks(w, &w->ends[e], w->nends == 1 ? BACKOFF_MS : 0))
				return -1;
	}
}

/* Send one message due at `due_ns` over end e (a MSG_WARM one: not counted).
 * 0 sent, 1 given up, -1 failure. */
static int produce(struct rworker *w, struct payload *p, struct end *e, uint64_t due_ns,
		   uint64_t end_ns, uint32_t magic)
{
	struct msg_hdr hdr = { .magic = magic, .seq = e->seq, .t0_ns = due_ns };
	size_t size = (size_t)plan_draw_size(w->flow, &w->draws), flen;
	void *frame;
	char *msg;
	int ret;

	uint64_t own = thread_cpu_ns();

	if (payload_make_kind(p, codec_kind(w->flow->codec), size, &w->content_rng))
		return fail(w, "out of memory for a %zu-byte value", size);
	hdr.kind = p->value.kind;
	hdr.nbytes = p->nbytes;
	if (shmrig_session_checksum(&p->value, &hdr.checksum))
		return fail(w, "checksum: %s", shmrig_last_error());
	w->me->own_cpu_ns += thread_cpu_ns() - own;
	ret = encode(w, p, &frame, &flen, end_ns);
	if (ret)
		return ret;
	msg = malloc(sizeof(hdr) + flen);
	if (!msg) {
		(void)!shmrig_frame_discard(w->pool, frame, flen); /* failing already */
		free(frame);
		return fail(w, "out of memory for a %zu-byte frame", flen);
	}
	memcpy(msg, &hdr, sizeof(hdr));
	memcpy(msg + sizeof(hdr), frame, flen);
	free(frame);
	ret = shmrig_frame_transfer(w->pool, msg + sizeof(hdr), flen, e->peer);
	if (ret) {
		(void)!shmrig_frame_discard(w->pool, msg + sizeof(hdr), flen); /* failing already */
		free(msg);
		return fail(w, "link %u: transfer: %s", e->link, shmrig_last_error());
	}
	for (;;) {
		ret = shmrig_channel_send(e->ch, msg, sizeof(hdr) + flen,
					  w->run->o->send_timeout_ms);
		if (ret != -ETIMEDOUT)
			break;
		w->me->side.timeouts++;
		if (take_all_acks(w))
			break;
	}
	free(msg);
	if (ret)
		return fail(w, "link %u: send: %s", e->link, shmrig_last_error());
	w->inflight++;
	if (magic == MSG_WARM)
		return 0;
	e->seq++;
	w->run->links[e->link].sent++;
	w->me->side.messages++;
	w->me->side.bytes += p->nbytes;
	return 0;
}

static uint64_t gap_ns(struct rworker *w, double rate)
{
	double gap = plan_draw_gap_s(w->flow, rate, &w->draws) * 1e9;

	return gap < 1 ? 1 : gap > 1e15 ? (uint64_t)1e15 : (uint64_t)gap;
}

int replay_producer(const struct wl_run *run, unsigned flow, unsigned index, unsigned proc)
{
	struct rworker w;
	struct payload p = { 0 };
	const struct plan_flow *f = &run->wl->flows[flow];
	double rate = f->rate * run->rate_scale / f->producers;
	uint64_t start_ns, end_ns, due, next_sample, last_k = UINT64_MAX, waiting_since = 0;
	unsigned turn = 0;

	if (start(&w, run, flow, index, proc, true)) {
		finish(&w);
		return 2;
	}
	start_ns = atomic_load(&run->ledger->start_ns);
	end_ns = start_ns + run->duration_ns;
	due = start_ns + gap_ns(&w, rate);
	next_sample = start_ns;
	sleep_until(start_ns);
	while (!failed(&w)) {
		uint64_t now = now_ns(), wake;

		if (now >= next_sample && now < end_ns) {
			sample(&w, now, start_ns, &last_k);
			next_sample =
				start_ns + ((now - start_ns) / run->sample_ns + 1) * run->sample_ns;
		}
		if (take_all_acks(&w))
			break;
		if (now >= end_ns)
			break;
		if (due < end_ns && now >= due) {
			if (w.inflight >= f->window) {
				if (!waiting_since) {
					waiting_since = now;
					w.me->window_waits++;
				}
				if (wait_acks(&w, next_sample > now ? next_sample - now : 0))
					break;
				continue;
			}
			if (waiting_since)
				w.me->window_wait_ns += now - waiting_since;
			waiting_since = 0;
			w.me->scheduled++;
			if (produce(&w, &p, &w.ends[turn++ % w.nends], due, end_ns, MSG_DATA) < 0)
				break;
			due += gap_ns(&w, rate);
			continue;
		}
		wake = next_sample < end_ns ? next_sample : end_ns;
		wake = due < wake ? due : wake;
		if (wake > now && wait_acks(&w, wake - now))
			break;
	}
	payload_free(&p);
	/* what was due before the end and not sent: the producer was behind */
	for (; due < end_ns && !failed(&w); due += gap_ns(&w, rate)) {
		w.me->scheduled++;
		w.me->unsent++;
	}
	if (!failed(&w)) {
		uint64_t deadline = now_ns() + FINISH_TIMEOUT_NS;
		bool all_done = false;

		for (unsigned e = 0; e < w.nends && !failed(&w); e++)
			send_word(&w, &w.ends[e], MSG_END);
		while (!all_done && !failed(&w) && now_ns() < deadline) {
			all_done = true;
			for (unsigned e = 0; e < w.nends && !failed(&w); e++)
				if (!w.ends[e].finished) {
					take_acks(&w, &w.ends[e], w.nends == 1 ? WAIT_SLICE_MS : 1);
					all_done &= w.ends[e].finished;
				}
		}
		if (!all_done)
			fail(&w, "no DONE from every consumer in %llu s",
			     (unsigned long long)(FINISH_TIMEOUT_NS / 1000000000u));
	}
	if (!failed(&w)) {
		/* every consumer has released everything: nothing of ours is live */
		struct shmrig_pool_stats st = SHMRIG_SIZED(struct shmrig_pool_stats);

		w.me->side.live_end =
			shmrig_pool_stats(w.pool, &st) == 0 ? (int64_t)st.live_blocks : -1;
		w.me->side.audit_ret = shmrig_pool_audit(w.pool);
		if (w.me->side.live_end)
			fail(&w, "%lld blocks live in its pool at the end",
			     (long long)w.me->side.live_end);
		if (w.me->side.audit_ret)
			fail(&w, "audit: %s", shmrig_last_error());
	}
	return finish(&w);
}

/* ---- consumer ---- */

static void heap_swap(struct held *a, struct held *b)
{
	struct held t = *a;

	*a = *b;
	*b = t;
}

static int hold(struct rworker *w, const struct held *h)
{
	size_t i;

	if (w->nheld == w->held_cap) {
		size_t cap = w->held_cap ? 2 * w->held_cap : 256;
		struct held *grown = realloc(w->held, cap * sizeof(*grown));

		if (!grown)
			return fail(w, "out of memory for %zu held values", cap);
		w->held = grown;
		w->held_cap = cap;
	}
	i = w->nheld++;
	w->held[i] = *h;
	for (; i && w->held[(i - 1) / 2].until_ns > w->held[i].until_ns; i = (i - 1) / 2)
		heap_swap(&w->held[(i - 1) / 2], &w->held[i]);
	if (w->nheld > w->me->held_max)
		w->me->held_max = w->nheld;
	return 0;
}

static void verify(struct rworker *w, const struct shmrig_value *v, uint64_t want, uint64_t seq)
{
	uint64_t sum, own = thread_cpu_ns();
	int ret = shmrig_session_checksum(v, &sum);

	w->me->own_cpu_ns += thread_cpu_ns() - own;
	if (ret == 0 && sum == want)
		return;
	w->me->side.corrupted++;
	fail(w, "message %llu: checksum %s", (unsigned long long)seq,
	     ret ? shmrig_last_error() : "mismatch");
}

static void release_value(struct rworker *w, struct shmrig_value *v)
{
	int ret = shmrig_value_release(v);

	if (ret)
		fail(w, "release: %s", shmrig_last_error());
}

/* Release the held values due by `now` (all with UINT64_MAX), checked again first. */
static void release_due(struct rworker *w, uint64_t now)
{
	while (w->nheld && w->held[0].until_ns <= now) {
		struct held top = w->held[0];
		size_t i = 0;

		w->held[0] = w->held[--w->nheld];
		for (;;) {
			size_t l = 2 * i + 1, r = l + 1, min = i;

			if (l < w->nheld && w->held[l].until_ns < w->held[min].until_ns)
				min = l;
			if (r < w->nheld && w->held[r].until_ns < w->held[min].until_ns)
				min = r;
			if (min == i)
				break;
			heap_swap(&w->held[i], &w->held[min]);
			i = min;
		}
		verify(w, &top.value, top.checksum, top.seq);
		w->me->side.reverified++;
		release_value(w, &top.value);
	}
}

static void consume(struct rworker *w, struct end *e, const struct msg_hdr *hdr, const void *frame,
		    size_t len)
{
	struct wl_link *link = &w->run->links[e->link];
	struct shmrig_value v;
	uint64_t now, latency;
	double hold_s;
	int ret = shmrig_registry_decode(w->run->o->registry, w->pool, frame, len, &v);

	now = now_ns();
	if (hdr->seq != e->seq) {
		if (hdr->seq > e->seq)
			link->gaps += hdr->seq - e->seq;
		else
			link->dups++;
	}
	if (hdr->seq >= e->seq)
		e->seq = hdr->seq + 1;
	if (ret) {
		w->me->side.corrupted++;
		fail(w, "link %u message %llu: decode: %s", e->link, (unsigned long long)hdr->seq,
		     shmrig_last_error());
		return;
	}
	latency = now > hdr->t0_ns ? now - hdr->t0_ns : 0;
	w->me->hist[wl_hist_bucket(latency)]++;
	if (latency > w->me->max_latency_ns)
		w->me->max_latency_ns = latency;
	if (v.kind != hdr->kind) {
		w->me->side.corrupted++;
		fail(w, "message %llu: kind %u, sent %u", (unsigned long long)hdr->seq, v.kind,
		     hdr->kind);
	} else {
		verify(w, &v, hdr->checksum, hdr->seq);
	}
	link->received++;
	w->me->side.messages++;
	w->me->side.bytes += hdr->nbytes;
	send_word(w, e, MSG_ACK);
	hold_s = plan_draw_hold_s(w->flow, &w->draws);
	if (!shmrig_value_leases(&v))
		w->me->side.temporary++; /* its block went at the decode: nothing to hold */
	else if (hold_s > 0) {
		struct held h = { .value = v,
				  .until_ns = now + (uint64_t)(hold_s * 1e9),
				  .seq = hdr->seq,
				  .checksum = hdr->checksum };

		if (hold(w, &h) == 0)
			return;
	}
	release_value(w, &v);
}

/* A message before time 0: decoded, released, acked; not counted. */
static void warm_up(struct rworker *w, struct end *e, const void *frame, size_t len)
{
	struct shmrig_value v;
	int ret = shmrig_registry_decode(w->run->o->registry, w->pool, frame, len, &v);

	if (ret) {
		fail(w, "link %u: the warm-up message: decode: %s", e->link, shmrig_last_error());
		return;
	}
	release_value(w, &v);
	e->warm = true;
	send_word(w, e, MSG_ACK);
}

/* Receive what waits on end e (the first up to timeout_ms). 1 something came, 0 not, -1. */
static int receive(struct rworker *w, struct end *e, int timeout_ms)
{
	struct msg_hdr hdr;
	void *msg;
	size_t len;
	int ret = shmrig_channel_recv(e->ch, &msg, &len, timeout_ms);

	if (ret == -ETIMEDOUT)
		return 0;
	if (ret)
		return fail(w, "link %u: recv: %s", e->link, shmrig_last_error());
	memcpy(&hdr, msg, len < sizeof(hdr) ? len : sizeof(hdr));
	if (len > sizeof(hdr) && hdr.magic == MSG_DATA)
		consume(w, e, &hdr, (char *)msg + sizeof(hdr), len - sizeof(hdr));
	else if (len > sizeof(hdr) && hdr.magic == MSG_WARM)
		warm_up(w, e, (char *)msg + sizeof(hdr), len - sizeof(hdr));
	else if (len == sizeof(hdr) && hdr.magic == MSG_END)
		e->finished = true;
	else
		fail(w, "link %u: a message of %zu bytes that is no DATA or END", e->link, len);
	free(msg);
	return 1;
}


int replay_consumer(const struct wl_run *run, unsigned flow, unsigned index, unsigned proc)
{
	struct rworker w;
	int64_t own;
	unsigned open_ends, turn = 0;

	if (start(&w, run, flow, index, proc, false)) {
		finish(&w);
		return 2;
	}
	open_ends = w.nends;
	while (open_ends && !failed(&w)) {
		uint64_t now = now_ns(), due = w.nheld ? w.held[0].until_ns : UINT64_MAX;
		int got = 0;

		release_due(&w, now);
		if (open_ends == 1 || w.nends == 1) {
			struct end *e = &w.ends[0];
			uint64_t wait = due > now ? due - now : 0;

			while (e->finished)
				e++;
			if (wait >= 1000000u || !w.nheld) {
				got = receive(&w, e,
					      wait / 1000000u > WAIT_SLICE_MS ?
						      WAIT_SLICE_MS :
						      (int)(wait / 1000000u));
			} else {
				got = receive(&w, e, 0);
				if (!got)
					sleep_until(now + (wait < SHORT_SLEEP_NS ? wait :
										   SHORT_SLEEP_NS));
			}
		} else {
			/* several links: poll each in turn, then sleep a little */
			for (unsigned k = 0; k < w.nends && got >= 0; k++) {
				struct end *e = &w.ends[(turn + k) % w.nends];

				if (!e->finished)
					got |= receive(&w, e, 0);
			}
			turn++;
			if (got == 0)
				sleep_until(now + (due > now && due - now < POLL_SLEEP_NS ?
							   due - now :
							   POLL_SLEEP_NS));
		}
		if (got < 0)
			break;
		open_ends = 0;
		for (unsigned e = 0; e < w.nends; e++)
			open_ends += !w.ends[e].finished;
	}
	release_due(&w, UINT64_MAX);
	free(w.held);
	own = own_live_blocks(w.pool);
	if (own < 0)
		fail(&w, "for_each_live: %s", shmrig_last_error());
	w.me->side.live_end = own < 0 ? 0 : own;
	if (own > 0)
		fail(&w, "%lld blocks of its own live at the end", (long long)own);
	/* after a failure too: its producers must not wait for it */
	for (unsigned e = 0; e < w.nends; e++)
		send_word(&w, &w.ends[e], MSG_DONE);
	return finish(&w);
}
