/* SPDX-License-Identifier: MIT */
/*
 * Channels and sessions, each next to its physical-limit twin in the same run.
 *
 *   channel/<backend>/rtt        one 64-byte message to a forked echo peer and
 *                                back (send + recv), for pipe, uring and ring
 *   channel/pingpong_twin/rtt    the floor for a round trip: two processes
 *                                bounce a counter on one cache line of shared
 *                                memory, busy-waiting
 *   channel/<backend>/batch64    messages per second, sent as sendv() batches
 *                                of 64 messages of 64 bytes to a peer that
 *                                drains them; every 16 batches the sender asks
 *                                for an acknowledgement and waits for it, so
 *                                the time covers messages delivered, not
 *                                queued (items = messages)
 *   channel/<backend>/paced      CPU time of both processes a message when
 *                                messages come 100 us apart (an open-loop
 *                                stream): the sender sleeps until each is
 *                                due, the peer has gone to sleep by then, so
 *                                every message pays the wake-ups and spins a
 *                                busy channel does not. The figure is CPU
 *                                seconds (sender + peer, read from their
 *                                CPU-time clocks) a message, not wall time;
 *                                the capacity plan's transport cost
 *   session/<backend>/echo/<B>   shmrig_session_call("echo") with a float64
 *                                ndarray of B bytes (64 B, 64 KiB, 1 MiB, 16 MiB:
 *                                above the largest class, a large block): encode
 *                                into the pool, hand over, the worker decodes,
 *                                re-encodes into its pool, the caller decodes
 *                                and releases (bytes = B per call); 64 B is
 *                                small: encoded flat into the message both ways,
 *                                no block (SESSION_FLAT_MAX, README). The seed's
 *                                Python twin is peer/seed_python/echo/<B>
 *                                (bench_peer_seed.c)
 *   session/ring/echo_view/<B>   the same over the ring with "echo_view": the
 *                                worker hands the request's own blocks back
 *                                (zero-copy): the caller's encode is the one
 *                                copy, so it must beat copy_2proc_twin
 *   session/pipe_bytes_twin/<B>  the seed's way for the same bytes: B bytes
 *                                written through a pipe(2) to a forked peer,
 *                                which reads them all and writes them back
 *   session/copy_2proc_twin/<B>  the floor of an echo that copies twice: the
 *                                caller copies B bytes into shared memory, the
 *                                peer (other CPU, busy-waiting on a cache
 *                                line) copies them into a second buffer, and
 *                                answers; what the session's encode and the
 *                                worker's re-encode must at least cost, with
 *                                the lines moving between the CPUs' caches
 *   channel/<ring|pipe>/rtt_hogs/<n>  channel/<backend>/rtt with n CPU-bound
 *                                hog processes on each CPU (started before the
 *                                run, killed after): cores are scarce, so a
 *                                side that spins holds the CPU its peer needs
 *
 * Every round-trip row (rtt, pingpong_twin, echo, pipe_bytes_twin,
 * copy_2proc_twin, rtt_hogs) also records each round trip's time (suite.h,
 * bench_lat_mark(): one clock read a round trip, between the send and the
 * wait where there are two) and reports the median and the 99th percentile
 * as counters p50_us and p99_us.
 *
 * Method. The caller runs on CPU 0 and its peer (echo peer, worker, twin
 * peer) on CPU 1, both pinned with shmrig_topo_bind_thread(): a round trip
 * between cores, never a context switch on one core. A session's worker is
 * forked by the library, so the caller binds itself to CPU 1 across
 * shmrig_session_start() (the worker inherits that) and then to CPU 0; the
 * caller's affinity is restored after each run. With one CPU the benchmarks
 * are skipped with the reason. Peers are set up before the timed loop of each
 * run and torn down after it: no zombie, no /dev/shm entry (the pool closes
 * with 0 or the run is an error), every payload checked once before timing.
 * Time is manual, wall clock per batch (CLOCK_MONOTONIC): the work spans two
 * processes, so this thread's CPU time would not say how long it took. The
 * figures compare with their twins in the same run, which holds on a noisy
 * machine where absolute figures do not. One-way latency is reported as
 * RTT/2 (counter one_way_ns), as iceoryx publishes its figures.
 */
#include "gbench.h"
#include "suite.h"

#include <shmrig/shmrig.h>

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MSG_SIZE 64
#define RTT_BATCH 64        /* round trips per timed batch */
#define BATCH_MSGS 64       /* messages per sendv() */
#define BATCHES_PER_ACK 16  /* sendv() calls per acknowledgement (one timed batch) */
#define ACK_SIZE 8          /* the length that marks "acknowledge" and the answer */
#define PACED_GAP_NS 100000 /* channel/<backend>/paced: longer than a ring's spin */
#define PACED_BATCH 50      /* messages a timed batch (and one acknowledgement) */
#define PEER_TIMEOUT_MS BENCH_PEER_TIMEOUT_MS
#define FINGERPRINT 0x62656e6368ull /* both ends of a bare channel agree on it */
#define POOL_PREFIX "b_channel"
#define POOL_ARENA_SIZE ((size_t)16 << 20)
#define ERROR_MAX 512

static const char *const backends[] = { "pipe", "uring", "ring" };
static const struct echo_case {
	const char *backend;
	const char *handler;
} echo_cases[] = {
	{ "pipe", "echo" }, { "uring", "echo" }, { "ring", "echo" }, { "ring", "echo_view" }
};
static const int64_t session_sizes[] = { 64, 64 << 10, 1 << 20, 16 << 20 };

/* Stop the benchmark with "<what>: <shmrig's words>" (err < 0) or "<what>". */
static void fail(gbench_state *st, const char *what, int err)
{
	char message[ERROR_MAX];

	if (err < 0)
		snprintf(message, sizeof(message), "failed: %s: %s (%s)", what,
			 shmrig_strerror(err), shmrig_last_error());
	else
		snprintf(message, sizeof(message), "failed: %s", what);
	gbench_skip(st, message);
}

enum peer_mode {
	PEER_ECHO, /* send every message back */
	PEER_SINK, /* drop messages; answer an ACK_SIZE message with one */
};

/* The channel peer (a forked child): its exit status. */
static int channel_peer(shmrig_channel_pair *pair, pid_t parent, const struct bench_pinning *pin,
			enum peer_mode mode)
{
	shmrig_channel *ch;
	int ret = shmrig_topo_bind_thread(pin->topo, pin->peer_cpu);

	if (!ret)
		ret = shmrig_channel_open(pair, 1, parent, NULL, FINGERPRINT, &ch);
	shmrig_channel_pair_free(pair);
	if (ret)
		return 1;
	for (;;) {
		void *msg;
		size_t len;

		/* -EPIPE: the caller closed its end, the run is over */
		ret = shmrig_channel_recv(ch, &msg, &len, -1);
		if (ret)
			break;
		if (mode == PEER_ECHO || len == ACK_SIZE)
			ret = shmrig_channel_send(ch, msg, len, PEER_TIMEOUT_MS);
		free(msg);
		if (ret)
			break;
	}
	shmrig_channel_close(ch);
	return ret == -EPIPE ? 0 : 1;
}

struct channel_run {
	struct bench_pinning pin;
	shmrig_channel *ch;
	pid_t peer;
};

/* Pin, fork the peer, open our end. false: the benchmark is stopped (and cleaned up). */
static bool channel_start(gbench_state *st, struct channel_run *run, const char *backend,
			  enum peer_mode mode)
{
	struct shmrig_channel_opts opts = { .size = sizeof(struct shmrig_channel_opts),
					    .backend = backend };
	shmrig_channel_pair *pair;
	int ret;

	if (!bench_pin_start(st, &run->pin))
		return false;
	ret = shmrig_channel_pair_create(&opts, &pair);
	if (ret) {
		fail(st, "channel_pair_create", ret);
		bench_pin_end(&run->pin);
		return false;
	}
	fflush(NULL);
	run->peer = fork();
	if (run->peer < 0) {
		fail(st, "fork", -errno);
		shmrig_channel_pair_free(pair);
		bench_pin_end(&run->pin);
		return false;
	}
	if (run->peer == 0)
		_exit(channel_peer(pair, getppid(), &run->pin, mode));
	ret = shmrig_channel_open(pair, 0, run->peer, NULL, FINGERPRINT, &run->ch);
	shmrig_channel_pair_free(pair);
	if (ret) {
		fail(st, "channel_open", ret);
		kill(run->peer, SIGKILL);
		bench_reap_child(run->peer);
		bench_pin_end(&run->pin);
		return false;
	}
	gbench_set_label(st, shmrig_channel_notes(run->ch));
	return true;
}

static void channel_end(gbench_state *st, struct channel_run *run)
{
	/* the peer sees -EPIPE after our last message and exits with 0 */
	shmrig_channel_close(run->ch);
	bench_check_peer_exit(st, run->peer);
	bench_pin_end(&run->pin);
}

/* ---- channel/<backend>/rtt ---- */

/*
 * Round trips of a 64-byte message until the benchmark has enough, timed a
 * batch at a time, each one recorded in lat. The total time, or < 0 if one
 * failed (the benchmark is stopped, saying why).
 */
static double rtt_loop(gbench_state *st, struct channel_run *run, struct bench_lat *lat)
{
	unsigned char msg[MSG_SIZE];
	struct bench_lat_batch batch;
	double total_s = 0;
	int ret = 0;

	for (size_t i = 0; i < sizeof(msg); i++)
		msg[i] = (unsigned char)(i * 131 + 7);
	while (!ret && gbench_loop(st, RTT_BATCH)) {
		double batch_s;

		bench_lat_batch_start(&batch);
		for (int i = 0; i < RTT_BATCH; i++) {
			void *back;
			size_t len;

			ret = shmrig_channel_send(run->ch, msg, sizeof(msg), PEER_TIMEOUT_MS);
			if (!ret) {
				bench_lat_mark(&batch); /* while the peer answers */
				ret = shmrig_channel_recv(run->ch, &back, &len, PEER_TIMEOUT_MS);
			}
			if (ret) {
				fail(st, "round trip", ret);
				break;
			}
			/* the message came back whole: a wrong one is an error, not a figure */
			if (len != sizeof(msg) || memcmp(back, msg, sizeof(msg))) {
				ret = -EBADMSG;
				fail(st, "the echo differs from the message", -1);
			}
			free(back);
			if (ret)
				break;
		}
		batch_s = bench_lat_batch_end(&batch, ret ? NULL : lat);
		total_s += batch_s;
		if (!ret)
			gbench_set_iteration_time(st, batch_s);
	}
	return ret ? -1 : total_s;
}

static void bm_channel_rtt(gbench_state *st, void *arg)
{
	struct channel_run run;
	struct bench_lat lat;
	double total_s;

	bench_lat_init(&lat);
	if (!channel_start(st, &run, arg, PEER_ECHO))
		return;
	total_s = rtt_loop(st, &run, &lat);
	if (total_s >= 0 && gbench_iterations(st)) {
		gbench_counter(st, "one_way_ns", total_s * 1e9 / (double)gbench_iterations(st) / 2,
			       0);
		bench_lat_counters(st, &lat);
	}
	channel_end(st, &run);
}

/* ---- channel/pingpong_twin/rtt ---- */

#define PINGPONG_STOP UINT64_MAX
/* Spins between checks that the peer still lives: a dead peer is an error, not a hang. */
#define PINGPONG_CHECK_SPINS (1u << 24)

/* The counter alone on its cache line: the caller makes it odd, the peer even. */
struct pingpong_line {
	_Alignas(64) _Atomic uint64_t counter;
	char pad[64 - sizeof(uint64_t)];
};

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
	__builtin_ia32_pause();
#elif defined(__aarch64__)
	__asm__ __volatile__("yield" ::: "memory");
#endif
}

static int pingpong_peer(struct pingpong_line *line, pid_t parent, const struct bench_pinning *pin)
{
	uint32_t spins = 0;

	if (shmrig_topo_bind_thread(pin->topo, pin->peer_cpu))
		return 1;
	for (;;) {
		uint64_t v = atomic_load_explicit(&line->counter, memory_order_acquire);

		if (v == PINGPONG_STOP)
			return 0;
		if (v & 1) {
			atomic_store_explicit(&line->counter, v + 1, memory_order_release);
			continue;
		}
		cpu_relax();
		/* an orphan stops spinning */
		if (++spins == PINGPONG_CHECK_SPINS) {
			spins = 0;
			if (getppid() != parent)
				return 1;
		}
	}
}

static void bm_pingpong_rtt(gbench_state *st, void *arg)
{
	struct pingpong_line *line;
	struct bench_lat_batch batch;
	struct bench_pinning pin;
	struct bench_lat lat;
	uint64_t value = 0;
	double total_s = 0;
	bool ok = true;
	pid_t peer;

	(void)arg;
	bench_lat_init(&lat);
	if (!bench_pin_start(st, &pin))
		return;
	/* anonymous shared memory: inherited by the fork, no /dev/shm entry */
	line = mmap(NULL, sizeof(*line), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (line == MAP_FAILED) {
		fail(st, "mmap", -errno);
		bench_pin_end(&pin);
		return;
	}
	atomic_store(&line->counter, 0);
	fflush(NULL);
	peer = fork();
	if (peer < 0) {
		fail(st, "fork", -errno);
		munmap(line, sizeof(*line));
		bench_pin_end(&pin);
		return;
	}
	if (peer == 0)
		_exit(pingpong_peer(line, getppid(), &pin));
	gbench_set_label(st, "one 64-byte line, busy-wait both sides");
	while (ok && gbench_loop(st, RTT_BATCH)) {
		double batch_s;

		bench_lat_batch_start(&batch);
		for (int i = 0; ok && i < RTT_BATCH; i++) {
			uint32_t spins = 0;

			atomic_store_explicit(&line->counter, ++value, memory_order_release);
			bench_lat_mark(&batch); /* while the line goes to the peer and back */
			while (atomic_load_explicit(&line->counter, memory_order_acquire) !=
			       value + 1) {
				cpu_relax();
				if (++spins == PINGPONG_CHECK_SPINS) {
					spins = 0;
					if (waitpid(peer, NULL, WNOHANG) != 0) {
						fail(st, "the ping-pong peer died", -1);
						ok = false;
						break;
					}
				}
			}
			value++;
		}
		batch_s = bench_lat_batch_end(&batch, ok ? &lat : NULL);
		total_s += batch_s;
		if (ok)
			gbench_set_iteration_time(st, batch_s);
	}
	if (ok && gbench_iterations(st)) {
		gbench_counter(st, "one_way_ns", total_s * 1e9 / (double)gbench_iterations(st) / 2,
			       0);
		bench_lat_counters(st, &lat);
	}
	atomic_store_explicit(&line->counter, PINGPONG_STOP, memory_order_release);
	if (ok)
		bench_check_peer_exit(st, peer);
	else
		bench_reap_child(peer);
	munmap(line, sizeof(*line));
	bench_pin_end(&pin);
}

/* ---- channel/<backend>/batch64 ---- */

/* Ask the sink for an acknowledgement and wait for it: everything sent before
 * has been taken. 0, or -errno (the benchmark is stopped, saying why). */
static int await_ack(gbench_state *st, shmrig_channel *ch)
{
	static const uint64_t ack = 0x61636b; /* "ack" */
	void *answer;
	size_t len;
	int ret = shmrig_channel_send(ch, &ack, sizeof(ack), PEER_TIMEOUT_MS);

	if (!ret)
		ret = shmrig_channel_recv(ch, &answer, &len, PEER_TIMEOUT_MS);
	if (ret) {
		fail(st, "acknowledgement", ret);
		return ret;
	}
	free(answer);
	if (len != sizeof(ack)) {
		fail(st, "the acknowledgement has the wrong length", -1);
		return -EBADMSG;
	}
	return 0;
}

static void bm_channel_batch64(gbench_state *st, void *arg)
{
	static unsigned char bufs[BATCH_MSGS][MSG_SIZE];
	const void *msgs[BATCH_MSGS];
	size_t lens[BATCH_MSGS];
	struct channel_run run;
	int ret = 0;

	for (int i = 0; i < BATCH_MSGS; i++) {
		memset(bufs[i], i, MSG_SIZE);
		msgs[i] = bufs[i];
		lens[i] = MSG_SIZE;
	}
	if (!channel_start(st, &run, arg, PEER_SINK))
		return;
	while (!ret && gbench_loop(st, BATCHES_PER_ACK)) {
		uint64_t start = bench_now_ns();

		for (int i = 0; !ret && i < BATCHES_PER_ACK; i++)
			ret = shmrig_channel_sendv(run.ch, msgs, lens, BATCH_MSGS, PEER_TIMEOUT_MS);
		if (ret)
			fail(st, "batch", ret);
		else
			ret = await_ack(st, run.ch);
		if (ret)
			break;
		gbench_set_iteration_time(st, (double)(bench_now_ns() - start) * 1e-9);
	}
	if (!ret)
		gbench_set_items_processed(st, gbench_iterations(st) * BATCH_MSGS);
	channel_end(st, &run);
}

/* ---- channel/<backend>/paced ---- */

static double clock_s(clockid_t clock)
{
	struct timespec ts;

	clock_gettime(clock, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void bm_channel_paced(gbench_state *st, void *arg)
{
	unsigned char msg[MSG_SIZE];
	struct channel_run run;
	clockid_t peer_clock;
	int ret = 0;

	memset(msg, 0x5a, sizeof(msg));
	if (!channel_start(st, &run, arg, PEER_SINK))
		return;
	ret = -clock_getcpuclockid(run.peer, &peer_clock);
	if (ret)
		fail(st, "clock_getcpuclockid (the peer's CPU time)", ret);
	while (!ret && gbench_loop(st, PACED_BATCH)) {
		double cpu = clock_s(CLOCK_PROCESS_CPUTIME_ID) + clock_s(peer_clock);
		struct timespec due;

		clock_gettime(CLOCK_MONOTONIC, &due);
		for (int i = 0; !ret && i < PACED_BATCH; i++) {
			due.tv_nsec += PACED_GAP_NS;
			if (due.tv_nsec >= 1000000000) {
				due.tv_nsec -= 1000000000;
				due.tv_sec++;
			}
			while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &due, NULL) == EINTR)
				;
			ret = shmrig_channel_send(run.ch, msg, sizeof(msg), PEER_TIMEOUT_MS);
		}
		if (ret)
			fail(st, "paced send", ret);
		else
			ret = await_ack(st, run.ch);
		if (ret)
			break;
		gbench_set_iteration_time(st, clock_s(CLOCK_PROCESS_CPUTIME_ID) +
						      clock_s(peer_clock) - cpu);
	}
	if (!ret)
		gbench_counter(st, "gap_us", PACED_GAP_NS / 1e3, 0);
	channel_end(st, &run);
}

/* ---- session/<backend>/echo/<bytes> ---- */

/* Calls per timed batch: enough to amortize reading the clock, few for large payloads. */
static int64_t calls_per_batch(int64_t bytes)
{
	return bytes >= (1 << 20) ? 1 : bytes >= (64 << 10) ? 4 : 64;
}

struct session_run {
	const char *handler;
	struct bench_pinning pin;
	shmrig_pool *pool;
	shmrig_registry *reg;
	shmrig_session *sess;
	double *elements;
	struct shmrig_value request;
};

static void session_end(gbench_state *st, struct session_run *run)
{
	struct shmrig_pool_stats stats = SHMRIG_SIZED(struct shmrig_pool_stats);
	int ret;

	if (run->sess) {
		ret = shmrig_session_shutdown(run->sess, 0);
		if (ret)
			fail(st, "session_shutdown", ret);
		shmrig_session_free(run->sess);
	}
	shmrig_registry_free(run->reg);
	if (run->pool) {
		if (shmrig_pool_stats(run->pool, &stats) == 0 && stats.live_blocks)
			fail(st, "blocks left live in the caller's pool after the run", -1);
		ret = shmrig_pool_close(run->pool);
		if (ret)
			fail(st, "pool_close", ret);
	}
	free(run->elements);
	bench_pin_end(&run->pin);
}

/* Call echo once and compare the answer with the request. 0 or -errno. */
static int echo_check(gbench_state *st, struct session_run *run, size_t bytes)
{
	struct shmrig_value back;
	uint64_t nbytes;
	int released,
		ret = shmrig_session_call(run->sess, run->handler, 0, &run->request, &back, 0);

	if (ret) {
		fail(st, "session_call", ret);
		return ret;
	}
	if (back.kind != SHMRIG_KIND_NDARRAY || back.array.dtype != SHMRIG_DTYPE_FLOAT64 ||
	    shmrig_array_nbytes(&back.array, &nbytes) || nbytes != bytes ||
	    memcmp(back.array.data, run->elements, bytes)) {
		fail(st, "the echo differs from the request", -1);
		ret = -EBADMSG;
	}
	released = shmrig_value_release(&back);
	if (released && !ret) {
		fail(st, "value_release", released);
		ret = released;
	}
	return ret;
}

static bool session_start(gbench_state *st, struct session_run *run, const struct echo_case *c,
			  size_t bytes)
{
	const char *backend = c->backend;
	struct shmrig_channel_opts channel = { .size = sizeof(struct shmrig_channel_opts),
					       .backend = backend };
	struct shmrig_session_opts opts = { .size = sizeof(struct shmrig_session_opts),
					    .channel = &channel };
	struct shmrig_pool_opts pool_opts = {
		.size = sizeof(struct shmrig_pool_opts),
		.prefix = POOL_PREFIX,
		.arena_size = POOL_ARENA_SIZE,
	};
	struct shmrig_pool_stats stats = SHMRIG_SIZED(struct shmrig_pool_stats);
	size_t count = bytes / sizeof(double);
	int ret;

	memset(run, 0, sizeof(*run));
	run->handler = c->handler;
	if (!bench_pin_start(st, &run->pin))
		return false;
	run->elements = malloc(bytes);
	if (!run->elements) {
		fail(st, "out of memory", -ENOMEM);
		bench_pin_end(&run->pin);
		return false;
	}
	for (size_t i = 0; i < count; i++)
		run->elements[i] = (double)i * 0.5 + 1.0;
	run->request = (struct shmrig_value){
		.kind = SHMRIG_KIND_NDARRAY,
		.array = { .dtype = SHMRIG_DTYPE_FLOAT64,
			   .ndim = 1,
			   .shape = { count },
			   .order = 'C',
			   .data = run->elements },
	};
	ret = shmrig_pool_open(&pool_opts, &run->pool);
	if (!ret)
		ret = shmrig_registry_create(&run->reg);
	if (!ret)
		ret = shmrig_registry_add_builtins(run->reg);
	if (!ret)
		ret = shmrig_session_create(&opts, run->reg, run->pool, &run->sess);
	if (!ret)
		ret = shmrig_session_add_builtin_handlers(run->sess);
	if (ret) {
		fail(st, "session setup", ret);
		session_end(st, run);
		return false;
	}
	/* The worker inherits the affinity of the thread that forks it. */
	ret = shmrig_topo_bind_thread(run->pin.topo, run->pin.peer_cpu);
	if (!ret)
		ret = shmrig_session_start(run->sess);
	if (!ret)
		ret = shmrig_topo_bind_thread(run->pin.topo, run->pin.self_cpu);
	if (ret) {
		fail(st, "session_start", ret);
		session_end(st, run);
		return false;
	}
	/* Checked before timing: the answer is right, and nothing is left live. */
	ret = echo_check(st, run, bytes);
	if (!ret && (shmrig_pool_stats(run->pool, &stats) || stats.live_blocks)) {
		fail(st, "blocks live in the caller's pool before timing", -1);
		ret = -EBADMSG;
	}
	if (ret) {
		session_end(st, run);
		return false;
	}
	return true;
}

static void bm_session_echo(gbench_state *st, void *arg)
{
	size_t bytes = (size_t)gbench_range(st, 0);
	int64_t batch = calls_per_batch((int64_t)bytes);
	struct bench_lat_batch timed;
	struct session_run run;
	struct bench_lat lat;
	char label[128];
	int ret = 0;

	bench_lat_init(&lat);
	if (!session_start(st, &run, arg, bytes))
		return;
	snprintf(label, sizeof(label), "float64 ndarray, %zu B each way, worker on cpu %d", bytes,
		 run.pin.peer_cpu);
	gbench_set_label(st, label);
	while (!ret && gbench_loop(st, batch)) {
		double batch_s;

		bench_lat_batch_start(&timed);
		for (int64_t i = 0; i < batch; i++) {
			struct shmrig_value back;

			ret = shmrig_session_call(run.sess, run.handler, 0, &run.request, &back, 0);
			if (ret) {
				fail(st, "session_call", ret);
				break;
			}
			ret = shmrig_value_release(&back);
			if (ret) {
				fail(st, "value_release", ret);
				break;
			}
			/* one call is the round trip: no wait to read the clock in */
			bench_lat_mark(&timed);
		}
		batch_s = bench_lat_batch_end(&timed, ret ? NULL : &lat);
		if (!ret)
			gbench_set_iteration_time(st, batch_s);
	}
	if (!ret) {
		gbench_set_bytes_processed(st, gbench_iterations(st) * (int64_t)bytes);
		bench_lat_counters(st, &lat);
	}
	session_end(st, &run);
}

/* ---- session/pipe_bytes_twin/<bytes> ---- */

/* Read `bytes` from `in`, write them back to `out`, until EOF. */
static int pipe_twin_peer(int in, int out, size_t bytes, const struct bench_pinning *pin)
{
	char *buf = malloc(bytes);
	int ret;

	if (!buf || shmrig_topo_bind_thread(pin->topo, pin->peer_cpu))
		return 1;
	while ((ret = bench_read_all(in, buf, bytes, -1)) == 0)
		if (bench_write_all(out, buf, bytes))
			return 1;
	free(buf);
	return ret == -EPIPE ? 0 : 1;
}

static void bm_pipe_bytes_twin(gbench_state *st, void *arg)
{
	size_t bytes = (size_t)gbench_range(st, 0);
	int64_t batch = calls_per_batch((int64_t)bytes);
	struct sigaction ignore = { .sa_handler = SIG_IGN }, saved_sigpipe;
	unsigned char *out = malloc(bytes), *back = malloc(bytes);
	int to_peer[2] = { -1, -1 }, from_peer[2] = { -1, -1 };
	struct bench_lat_batch timed;
	struct bench_pinning pin;
	struct bench_lat lat;
	pid_t peer = -1;
	int ret = 0;

	(void)arg;
	bench_lat_init(&lat);
	if (!out || !back) {
		fail(st, "out of memory", -ENOMEM);
		goto out;
	}
	for (size_t i = 0; i < bytes; i++)
		out[i] = (unsigned char)(i * 131 + 7);
	if (!bench_pin_start(st, &pin))
		goto out;
	/* A dead peer is an EPIPE to report, not a SIGPIPE that ends the suite. */
	sigaction(SIGPIPE, &ignore, &saved_sigpipe);
	if (pipe2(to_peer, O_CLOEXEC) || pipe2(from_peer, O_CLOEXEC)) {
		fail(st, "pipe", -errno);
		goto unpin;
	}
	fflush(NULL);
	peer = fork();
	if (peer < 0) {
		fail(st, "fork", -errno);
		goto unpin;
	}
	if (peer == 0) {
		close(to_peer[1]);
		close(from_peer[0]);
		_exit(pipe_twin_peer(to_peer[0], from_peer[1], bytes, &pin));
	}
	close(to_peer[0]);
	close(from_peer[1]);
	to_peer[0] = from_peer[1] = -1;
	/* Checked before timing: the bytes come back unchanged. */
	ret = bench_write_all(to_peer[1], out, bytes);
	if (!ret)
		ret = bench_read_all(from_peer[0], back, bytes, -1);
	if (ret || memcmp(out, back, bytes)) {
		fail(st, "the pipe peer did not echo the bytes", ret ? ret : -1);
		ret = ret ? ret : -EBADMSG;
	}
	gbench_set_label(st, "pipe(2) each way, the default 64 KiB pipe buffer");
	while (!ret && gbench_loop(st, batch)) {
		double batch_s;

		bench_lat_batch_start(&timed);
		for (int64_t i = 0; !ret && i < batch; i++) {
			ret = bench_write_all(to_peer[1], out, bytes);
			if (!ret) {
				bench_lat_mark(&timed); /* while the peer reads and answers */
				ret = bench_read_all(from_peer[0], back, bytes, -1);
			}
		}
		batch_s = bench_lat_batch_end(&timed, ret ? NULL : &lat);
		if (ret) {
			fail(st, "pipe round trip", ret);
			break;
		}
		gbench_set_iteration_time(st, batch_s);
	}
	if (!ret) {
		gbench_set_bytes_processed(st, gbench_iterations(st) * (int64_t)bytes);
		bench_lat_counters(st, &lat);
	}
	/* EOF ends the peer */
	close(to_peer[1]);
	to_peer[1] = -1;
	bench_check_peer_exit(st, peer);
unpin:
	for (int i = 0; i < 2; i++) {
		if (to_peer[i] >= 0)
			close(to_peer[i]);
		if (from_peer[i] >= 0)
			close(from_peer[i]);
	}
	sigaction(SIGPIPE, &saved_sigpipe, NULL);
	bench_pin_end(&pin);
out:
	free(out);
	free(back);
}

/* ---- registration ---- */

static void register_manual(const char *name, gbench_fn fn, void *arg, char unit,
			    const int64_t *sizes, size_t nsizes)
{
	gbench_benchmark *b =
		gbench_unit(gbench_use_manual_time(gbench_register(name, fn, arg)), unit);

	for (size_t i = 0; i < nsizes; i++)
		b = gbench_arg(b, sizes[i]);
}

/* ---- session/copy_2proc_twin/<B> ---- */

/* The shared part: the line the two sides bounce, then the two buffers. */
struct copy_twin {
	struct pingpong_line line;
	size_t size;
	unsigned char *in, *out; /* in the same mapping, inherited by the fork */
};

static int copy_twin_peer(struct copy_twin *ct, pid_t parent, const struct bench_pinning *pin)
{
	uint32_t spins = 0;

	if (shmrig_topo_bind_thread(pin->topo, pin->peer_cpu))
		return 1;
	for (;;) {
		uint64_t v = atomic_load_explicit(&ct->line.counter, memory_order_acquire);

		if (v == PINGPONG_STOP)
			return 0;
		if (v & 1) {
			memcpy(ct->out, ct->in, ct->size); /* the worker's re-encode */
			atomic_store_explicit(&ct->line.counter, v + 1, memory_order_release);
			continue;
		}
		cpu_relax();
		if (++spins == PINGPONG_CHECK_SPINS) {
			spins = 0;
			if (getppid() != parent)
				return 1; /* an orphan stops spinning */
		}
	}
}

/* One round trip: copy in, hand over, (mark the batch if not NULL,) wait for the
 * copy back. 0 or -1 (the peer died). */
static int copy_twin_round(struct copy_twin *ct, const unsigned char *src, uint64_t *value,
			   pid_t peer, struct bench_lat_batch *batch)
{
	uint32_t spins = 0;

	memcpy(ct->in, src, ct->size); /* the caller's encode */
	atomic_store_explicit(&ct->line.counter, ++*value, memory_order_release);
	if (batch)
		bench_lat_mark(batch); /* while the peer copies */
	while (atomic_load_explicit(&ct->line.counter, memory_order_acquire) != *value + 1) {
		cpu_relax();
		if (++spins == PINGPONG_CHECK_SPINS) {
			spins = 0;
			if (waitpid(peer, NULL, WNOHANG) != 0)
				return -1;
		}
	}
	++*value;
	return 0;
}

static void bm_copy_2proc_twin(gbench_state *st, void *arg)
{
	size_t size = (size_t)gbench_range(st, 0);
	size_t map_len = sizeof(struct copy_twin) + 2 * size + 128;
	int per_batch = size >= ((size_t)1 << 20) ? 1 : RTT_BATCH;
	struct bench_lat_batch batch;
	struct bench_pinning pin;
	struct copy_twin *ct;
	struct bench_lat lat;
	unsigned char *src;
	uint64_t value = 0;
	bool ok = true;
	pid_t peer;

	(void)arg;
	bench_lat_init(&lat);
	if (!bench_pin_start(st, &pin))
		return;
	src = malloc(size);
	ct = mmap(NULL, map_len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (!src || ct == MAP_FAILED) {
		fail(st, "out of memory", -ENOMEM);
		free(src);
		if (ct != MAP_FAILED)
			munmap(ct, map_len);
		bench_pin_end(&pin);
		return;
	}
	for (size_t i = 0; i < size; i++)
		src[i] = (unsigned char)(i * 131 + 7);
	ct->size = size;
	ct->in = (unsigned char *)(ct + 1) + 64;
	ct->out = ct->in + size;
	atomic_store(&ct->line.counter, 0);
	fflush(NULL);
	peer = fork();
	if (peer < 0) {
		fail(st, "fork", -errno);
		free(src);
		munmap(ct, map_len);
		bench_pin_end(&pin);
		return;
	}
	if (peer == 0)
		_exit(copy_twin_peer(ct, getppid(), &pin));
	gbench_set_label(st, "copy in, the other CPU copies it out, busy-wait both sides");
	/* every byte came back once before timing: a wrong copy is an error */
	if (copy_twin_round(ct, src, &value, peer, NULL) || memcmp(ct->out, src, size)) {
		fail(st, "the copy twin's first round trip failed", -1);
		ok = false;
	}
	while (ok && gbench_loop(st, per_batch)) {
		double batch_s;

		bench_lat_batch_start(&batch);
		for (int i = 0; ok && i < per_batch; i++)
			if (copy_twin_round(ct, src, &value, peer, &batch)) {
				fail(st, "the copy twin's peer died", -1);
				ok = false;
			}
		batch_s = bench_lat_batch_end(&batch, ok ? &lat : NULL);
		if (ok)
			gbench_set_iteration_time(st, batch_s);
	}
	if (ok) {
		gbench_set_bytes_processed(st, gbench_iterations(st) * (int64_t)size);
		bench_lat_counters(st, &lat);
	}
	atomic_store_explicit(&ct->line.counter, PINGPONG_STOP, memory_order_release);
	if (ok)
		bench_check_peer_exit(st, peer);
	else
		bench_reap_child(peer);
	free(src);
	munmap(ct, map_len);
	bench_pin_end(&pin);
}

/* ---- channel/<ring|pipe>/rtt_hogs/<n> ---- */

#define HOG_CHECK_EVERY (1u << 22) /* spins between a hog's checks that we live */
#define MAX_HOGS 64

static const char *const hog_backends[] = { "ring", "pipe" };
static const int64_t hogs_per_cpu[] = { 1, 2, 4 };

/* A CPU-bound process on `cpu` until killed (or orphaned). */
static void hog(const struct bench_pinning *pin, int cpu, pid_t parent)
{
	volatile uint64_t sink = 0;

	if (shmrig_topo_bind_thread(pin->topo, cpu))
		_exit(1);
	for (;;) {
		for (uint32_t i = 0; i < HOG_CHECK_EVERY; i++)
			sink += i;
		if (getppid() != parent)
			_exit(0);
	}
}

static void stop_hogs(const pid_t *hogs, int n)
{
	for (int i = 0; i < n; i++)
		kill(hogs[i], SIGKILL);
	for (int i = 0; i < n; i++)
		while (waitpid(hogs[i], NULL, 0) < 0 && errno == EINTR)
			;
}

static void bm_channel_rtt_hogs(gbench_state *st, void *arg)
{
	int per_cpu = (int)gbench_range(st, 0), nhogs = 0, ret = 0;
	pid_t hogs[MAX_HOGS];
	struct channel_run run;
	struct bench_lat lat;
	char label[96];

	bench_lat_init(&lat);
	if (!channel_start(st, &run, arg, PEER_ECHO))
		return;
	/* the hogs: per_cpu on each CPU of the topology, after the peer is up */
	for (int cpu = 0; cpu < shmrig_topo_num_cpus(run.pin.topo) && !ret; cpu++)
		for (int k = 0; k < per_cpu && !ret; k++) {
			pid_t pid;

			if (nhogs == MAX_HOGS) {
				ret = -E2BIG;
				fail(st, "too many hogs for this machine (64 at most)", -1);
				break;
			}
			fflush(NULL);
			pid = fork();
			if (pid < 0) {
				ret = -errno;
				fail(st, "fork a hog", ret);
				break;
			}
			if (pid == 0)
				hog(&run.pin, shmrig_topo_cpu_os_index(run.pin.topo, cpu),
				    getppid());
			hogs[nhogs++] = pid;
		}
	snprintf(label, sizeof(label), "%d CPU-bound hog(s) on each CPU (%d in all)", per_cpu,
		 nhogs);
	gbench_set_label(st, label);
	if (!ret && rtt_loop(st, &run, &lat) < 0)
		ret = -1;
	stop_hogs(hogs, nhogs);
	if (!ret)
		bench_lat_counters(st, &lat);
	channel_end(st, &run);
}

void bench_channel_register(void)
{
	const size_t nsizes = sizeof(session_sizes) / sizeof(session_sizes[0]);
	char name[64];

	for (size_t i = 0; i < sizeof(backends) / sizeof(backends[0]); i++) {
		/* the names are copied by Google Benchmark; arg must live on */
		void *backend = (void *)backends[i];

		snprintf(name, sizeof(name), "channel/%s/rtt", backends[i]);
		register_manual(name, bm_channel_rtt, backend, 'n', NULL, 0);
	}
	register_manual("channel/pingpong_twin/rtt", bm_pingpong_rtt, NULL, 'n', NULL, 0);
	for (size_t i = 0; i < sizeof(backends) / sizeof(backends[0]); i++) {
		snprintf(name, sizeof(name), "channel/%s/batch64", backends[i]);
		register_manual(name, bm_channel_batch64, (void *)backends[i], 'u', NULL, 0);
		snprintf(name, sizeof(name), "channel/%s/paced", backends[i]);
		register_manual(name, bm_channel_paced, (void *)backends[i], 'u', NULL, 0);
	}
	for (size_t i = 0; i < sizeof(echo_cases) / sizeof(echo_cases[0]); i++) {
		snprintf(name, sizeof(name), "session/%s/%s", echo_cases[i].backend,
			 echo_cases[i].handler);
		register_manual(name, bm_session_echo, (void *)&echo_cases[i], 'u', session_sizes,
				nsizes);
	}
	register_manual("session/pipe_bytes_twin", bm_pipe_bytes_twin, NULL, 'u', session_sizes,
			nsizes);
	register_manual("session/copy_2proc_twin", bm_copy_2proc_twin, NULL, 'u', session_sizes,
			nsizes);
	for (size_t i = 0; i < sizeof(hog_backends) / sizeof(hog_backends[0]); i++) {
		snprintf(name, sizeof(name), "channel/%s/rtt_hogs", hog_backends[i]);
		register_manual(name, bm_channel_rtt_hogs, (void *)hog_backends[i], 'u',
				hogs_per_cpu, sizeof(hogs_per_cpu) / sizeof(hogs_per_cpu[0]));
	}
}
