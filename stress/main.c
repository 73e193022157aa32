/* SPDX-License-Identifier: MIT */
/*
 * shmrig-stress: the driver. Starts the pairs, kills and stalls workers on
 * schedule, restarts a pair whose epoch ended, adds up each epoch's ledger,
 * checks what must be zero, and reports (a table, and JSON with --json).
 */
#include "stress.h"

#include <dirent.h>
#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define DEFAULT_SIZES "80:16-4K,17:4K-1M,3:1M-4M"
#define FINISH_TIMEOUT_S 60
/*
 * The duration counts from when every worker is past its start (pool and
 * channel open) or a message went through, the kills and the stalls from the
 * first message: a startup that is slow (UCX under valgrind on a loaded runner:
 * seconds) would otherwise eat the run, and kills due before anything moved
 * starve it. A run whose workers are not started in this long stops, and fails
 * saying so.
 */
#define START_TIMEOUT_S 60

static const char usage[] =
	"usage: shmrig-stress [options]\n"
	"\n"
	"Runs pairs of producer and consumer processes over one pool prefix and one\n"
	"channel backend. Every payload is checksummed (XXH3) end to end; every epoch\n"
	"of a pair ends with leak checks; killed workers are reaped and restarted.\n"
	"\n"
	"  --backend NAME        pipe, uring, ring or ucx (default ring); ucx runs over the\n"
	"                        transports UCX_TLS allows (forked pairs: tcp,self or\n"
	"                        posix,self); exit 77 if the library has no UCX\n"
	"  --ucx-tls LIST        with --backend ucx: set UCX_TLS=LIST for the run (the\n"
	"                        workers inherit it), e.g. tcp,self or posix,self\n"
	"  --pairs N             producer/consumer pairs, 2 processes each (default 2)\n"
	"  --duration SECONDS    run time (default 10; 0 with --messages: until then),\n"
	"                        counted from when every worker has started (at most\n"
	"                        60 s) or a message went through; kills and stalls\n"
	"                        start with the first message\n"
	"  --messages N          stop after N messages received in all (default: no limit)\n"
	"  --sizes SPEC          weight:min-max,... log-uniform within each (default\n"
	"                        " DEFAULT_SIZES ")\n"
	"  --window N            messages in flight per pair, 1..128 (default 8)\n"
	"  --slots N             ring: slots per direction, a power of two (default:\n"
	"                        the channel's); fewer than --window shows backpressure\n"
	"  --hold N              persistent values a consumer holds at most (default 16)\n"
	"  --hold-ms MS          each held for a random time up to MS (default 20)\n"
	"  --kill-rate R         SIGKILL a random worker R times a second (default 0),\n"
	"                        aimed at a random phase (encode, send, decode...); a\n"
	"                        pair killed before a message got through is spared\n"
	"                        until one does\n"
	"  --stall-rate R        SIGSTOP a random consumer R times a second (default 0)\n"
	"  --stall-ms MS         for MS milliseconds (default 500)\n"
	"  --send-timeout-ms MS  a send waits this long, then counts a timeout and\n"
	"                        tries again (default 100)\n"
	"  --pool-limit SIZE     each worker's pool max_bytes, e.g. 16M (default: the\n"
	"                        pool's own; sizes above a quarter of it are clamped)\n"
	"  --seed N              the run's values, sizes and schedule (default 1)\n"
	"  --prefix NAME         segment prefix (default stress<pid>)\n"
	"  --json FILE           write the report as JSON\n"
	"  --require COUNTER     fail unless this result counter is above zero, e.g.\n"
	"                        kills, send_timeouts, enomem_backoffs (repeatable)\n"
	"  --inject FAULT        a fault the checks must catch, or the pool survive; the\n"
	"                        exit status is then 0 only if they did:\n"
	"                        corrupt  flip a bit of every 16th payload after its\n"
	"                                 checksum: counted as corrupted\n"
	"                        leak     a consumer allocates a block it never frees:\n"
	"                                 counted as leaked\n"
	"                        orphan   a producer kills itself after handing a frame's\n"
	"                                 blocks over, before sending it: they are freed\n"
	"                        hostile  one more process attaches the run's segments and\n"
	"                                 scribbles on arena headers, free- and remote-list\n"
	"                                 heads, descriptors and large trailers: no worker\n"
	"                                 crashes or hangs, no corrupted message is\n"
	"                                 accepted, and the workers see errors (lost\n"
	"                                 messages, leaked blocks and segments left are\n"
	"                                 reported, not failed on)\n"
	"                        replay   consumers decode every 3rd frame a second time:\n"
	"                                 refused each time (ECLAIMED; ESTALE when its\n"
	"                                 buffers were temporary), and nothing else wrong\n"
	"                        close-after-send  each producer closes its pool and\n"
	"                                 exits right after a send, 1..200 messages into\n"
	"                                 its epoch, while the consumer holds values:\n"
	"                                 nothing lost or leaked, and no segment left\n"
	"                                 after the final sweep\n"
	"  --scribbles LIST      what --inject hostile writes: all (default), or some of\n"
	"                        arena_field, next_chunk, chunk_class, closed, free_live,\n"
	"                        free_range, free_cycle, remote_live, remote_range,\n"
	"                        remote_cycle, state, owner, large_capacity, large_field\n"
	"  --quiet               no progress line (it is shown on a terminal only)\n"
	"  --workload FILE       replay a workload file (shmrig-plan's; e.g.\n"
	"                        examples/workloads/small_messages.json) OPEN LOOP for\n"
	"                        --duration seconds instead of the pairs above: each\n"
	"                        flow's producers send at its rate on an absolute\n"
	"                        schedule (a late message is sent at once, its latency\n"
	"                        counted from when it was due), sizes, codec, window,\n"
	"                        backend and hold as the file says; a flow of P\n"
	"                        producers and C consumers has max(P, C) channels,\n"
	"                        channel k from producer k % P to consumer k % C.\n"
	"                        Reports rates offered and achieved, latency p50, p99,\n"
	"                        p99.9, max, and each class's live blocks (mean, p99,\n"
	"                        p99.9, max; the producers' pools sampled on one time\n"
	"                        grid, summed, after a warm-up of 10 % of the duration\n"
	"                        or 0.5 s, whichever is less). Goes with --duration,\n"
	"                        --seed, --json, --prefix, --pool-limit,\n"
	"                        --send-timeout-ms, --quiet and these two:\n"
	"  --rate-scale X        multiply every flow's rate by X (default 1)\n"
	"  --sample-ms MS        sample the pools every MS milliseconds (default 10)\n"
	"  -h, --help\n"
	"\n"
	"At the end, shmrig_pool_sweep() removes the segments of dead creators that no\n"
	"live process holds a block in; a segment of the prefix left after it is stale.\n"
	"\n"
	"Exit status: 0 clean; 1 a message lost or corrupted, a leaked block, fd or\n"
	"segment, or a worker that failed (crashed, or hung and was killed); 2 bad\n"
	"usage, a bad workload file (the message names the field) or a setup error;\n"
	"77 the backend is not in this build (ucx without libucx-dev), said why.\n";

/* A pair's processes in the driver's view. */
struct member {
	pid_t pid;
	bool alive, killed;
	bool aborted; /* ucx: died of SIGABRT after its peer was killed (counted as killed) */
	int status;
};

struct pair {
	unsigned epoch;
	struct member prod, cons;
	bool running;           /* started and not ended */
	bool killed_empty;      /* its last epoch was killed before a message got through */
	uint64_t stalled_until; /* consumer SIGSTOPped until then (0: not) */
};

/* The run's totals, added up over epochs. */
struct totals {
	uint64_t messages, bytes, sent, lost, corrupted, gaps, dups, temporary, reverified;
	uint64_t dropped_in_kill, dropped_with_producer, enomem, skipped, timeouts, reaped, orphans;
	uint64_t leaked_blocks, ucx_left;
	uint64_t stale_segments, swept_segments, leaked_fds, epochs, kills, stalls;
	uint64_t refused, errors[ERR_KINDS], replays[REPLAY_KINDS];
	uint64_t closes, closed_in_flight, closed_kept, left_after_close, swept_at_end;
	uint64_t kills_survived; /* kills in epochs whose checks all passed */
	uint64_t ucx_aborts;     /* ucx: survivors of a kill that UCX aborted (end_epoch) */
	uint64_t kills_by_phase[2][PH_COUNT];
	uint64_t hist[HIST_BUCKETS], max_latency_ns;
	/* the first words of each kind over the run, with the pair and side they came from */
	char enomem_words[256], error_words[ERR_KINDS][256];
	struct failures failures;
};

static struct stress_opts opts;
/* --workload: the file, the factor on its rates, the sampling interval */
static const char *workload_path;
static double rate_scale = 1, sample_ms = 10;
/* --ucx-tls: UCX_TLS for the run (NULL: the environment's, if any) */
static const char *ucx_tls;
/* --backend ucx: the directory of UCX's posix segments (UCX_POSIX_DIR), "" if none */
static char ucx_dir[96];
static struct slot *slots;
static struct pair pairs[STRESS_MAX_PAIRS];
static struct totals tot;
static uint64_t drng; /* the driver's schedule */
/* --inject hostile: the scribbling process and its ledger */
static struct hostile_ledger *hledger;
static struct member hostile;

#define failure(...) failures_add(&tot.failures, __VA_ARGS__)

static void die(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "shmrig-stress: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(2);
}

/* ---- options ---- */

static double parse_number(const char *name, const char *text, double min, double max)
{
	char *end;
	double v = strtod(text, &end);

	if (*end || end == text || !(v >= min && v <= max))
		die("--%s: '%s' is not a number in [%g, %g]", name, text, min, max);
	return v;
}

static void parse_args(int argc, char **argv)
{
	static const struct option longs[] = {
		{ "backend", required_argument, 0, 'b' },
		{ "pairs", required_argument, 0, 'p' },
		{ "duration", required_argument, 0, 'd' },
		{ "messages", required_argument, 0, 'm' },
		{ "sizes", required_argument, 0, 'z' },
		{ "window", required_argument, 0, 'w' },
		{ "hold", required_argument, 0, 'H' },
		{ "slots", required_argument, 0, 'L' },
		{ "hold-ms", required_argument, 0, 'M' },
		{ "kill-rate", required_argument, 0, 'k' },
		{ "stall-rate", required_argument, 0, 's' },
		{ "stall-ms", required_argument, 0, 'S' },
		{ "send-timeout-ms", required_argument, 0, 't' },
		{ "pool-limit", required_argument, 0, 'l' },
		{ "seed", required_argument, 0, 'r' },
		{ "prefix", required_argument, 0, 'P' },
		{ "json", required_argument, 0, 'j' },
		{ "quiet", no_argument, 0, 'q' },
		{ "require", required_argument, 0, 'R' },
		{ "inject", required_argument, 0, 'I' },
		{ "help", no_argument, 0, 'h' },
		{ "scribbles", required_argument, 0, 'X' },
		{ "workload", required_argument, 0, 'W' },
		{ "rate-scale", required_argument, 0, 'x' },
		{ "sample-ms", required_argument, 0, 'i' },
		{ "ucx-tls", required_argument, 0, 'U' },
		{ 0, 0, 0, 0 },
	};
	const char *sizes = DEFAULT_SIZES;
	char why[256];
	int nsizes;
	static const char *const injects[] = {
		[INJECT_CORRUPT] = "corrupt", [INJECT_LEAK] = "leak",
		[INJECT_ORPHAN] = "orphan",   [INJECT_HOSTILE] = "hostile",
		[INJECT_REPLAY] = "replay",   [INJECT_CLOSE_AFTER_SEND] = "close-after-send",
	};
	/* what a workload file says, or that a replay does not do */
	static const char not_with_workload[] = "bpmzwLHMksSIXR";
	bool given[128] = { false };
	int c;

	opts = (struct stress_opts){ .backend = "ring",
				     .pairs = 2,
				     .duration_s = 10,
				     .window = 8,
				     .hold_max = 16,
				     .hold_ms = 20,
				     .stall_ms = 500,
				     .send_timeout_ms = 100,
				     .seed = 1,
				     .progress = isatty(2),
				     .scribbles = (1u << SC_KINDS) - 1 };
	snprintf(opts.prefix, sizeof(opts.prefix), "stress%d", (int)getpid());
	while ((c = getopt_long(argc, argv, "h", longs, NULL)) != -1) {
		given[c & 127] = true;
		switch (c) {
		case 'b':
			opts.backend = optarg;
			break;
		case 'p':
			opts.pairs = (unsigned)parse_number("pairs", optarg, 1, STRESS_MAX_PAIRS);
			break;
		case 'd':
			opts.duration_s = parse_number("duration", optarg, 0, 1e6);
			break;
		case 'm':
			opts.messages = (uint64_t)parse_number("messages", optarg, 0, 1e15);
			break;
		case 'z':
			sizes = optarg;
			break;
		case 'w':
			opts.window = (unsigned)parse_number("window", optarg, 1, 128);
			break;
		case 'L':
			opts.slots = (unsigned)parse_number("slots", optarg, 1, 65536);
			break;
		case 'H':
			opts.hold_max = (unsigned)parse_number("hold", optarg, 0, STRESS_MAX_HOLD);
			break;
		case 'M':
			opts.hold_ms = (int)parse_number("hold-ms", optarg, 0, 60000);
			break;
		case 'k':
			opts.kill_rate = parse_number("kill-rate", optarg, 0, 1000);
			break;
		case 's':
			opts.stall_rate = parse_number("stall-rate", optarg, 0, 1000);
			break;
		case 'S':
			opts.stall_ms = (int)parse_number("stall-ms", optarg, 1, 60000);
			break;
		case 't':
			opts.send_timeout_ms =
				(int)parse_number("send-timeout-ms", optarg, 1, 60000);
			break;
		case 'l':
			if (shmrig_parse_size(optarg, &opts.pool_limit))
				die("--pool-limit: '%s' is not a size (e.g. 16M)", optarg);
			break;
		case 'r':
			opts.seed = (uint64_t)parse_number("seed", optarg, 0, 1e18);
			break;
		case 'P':
			snprintf(opts.prefix, sizeof(opts.prefix), "%s", optarg);
			break;
		case 'j':
			opts.json_path = optarg;
			break;
		case 'q':
			opts.progress = false;
			break;
		case 'R':
			if (opts.nrequire == sizeof(opts.require) / sizeof(opts.require[0]))
				die("--require: at most %zu",
				    sizeof(opts.require) / sizeof(opts.require[0]));
			opts.require[opts.nrequire++] = optarg;
			break;
		case 'I':
			for (opts.inject = INJECT_CORRUPT;
			     opts.inject <= INJECT_CLOSE_AFTER_SEND &&
			     strcmp(optarg, injects[opts.inject]) != 0;
			     opts.inject++)
				;
			if (opts.inject > INJECT_CLOSE_AFTER_SEND)
				die("--inject: '%s' is not corrupt, leak, orphan, hostile, replay or "
				    "close-after-send",
				    optarg);
			break;
		case 'X':
			if (parse_scribbles(optarg, &opts.scribbles))
				die("--scribbles: '%s' is not all or a list of the kinds (see --help)",
				    optarg);
			break;
		case 'W':
			workload_path = optarg;
			break;
		case 'x':
			rate_scale = parse_number("rate-scale", optarg, 1e-6, 1e3);
			break;
		case 'i':
			sample_ms = parse_number("sample-ms", optarg, 0.1, 60000);
			break;
		case 'U':
			if (!*optarg)
				die("--ucx-tls: an empty list (e.g. tcp,self)");
			ucx_tls = optarg;
			break;
		case 'h':
			fputs(usage, stdout);
			exit(0);
		default:
			fputs(usage, stderr);
			exit(2);
		}
	}
	if (optind < argc)
		die("unexpected argument '%s' (see --help)", argv[optind]);
	for (const struct option *o = longs; o->name; o++)
		if (given[o->val] && strchr(not_with_workload, o->val) && workload_path)
			die("--%s does not go with --workload (the file says what runs)", o->name);
		else if (given[o->val] && (o->val == 'x' || o->val == 'i') && !workload_path)
			die("--%s goes with --workload only", o->name);
	if (ucx_tls && strcmp(opts.backend, "ucx") != 0)
		die("--ucx-tls goes with --backend ucx only");
	/* Before any fork: every worker's UCX reads it when it opens its end. */
	if (ucx_tls && setenv("UCX_TLS", ucx_tls, 1))
		die("setenv UCX_TLS: %s", strerror(errno));
	if (workload_path && !(opts.duration_s > 0))
		die("--workload needs a --duration above 0");
	if (!opts.duration_s && !opts.messages)
		die("--duration 0 needs --messages");
	nsizes = plan_parse_size_spec(sizes, opts.sizes, STRESS_MAX_SIZE_CLASSES, why, sizeof(why));
	if (nsizes < 0)
		die("--sizes: '%s': %s (e.g. %s)", sizes, why, DEFAULT_SIZES);
	opts.nsizes = (unsigned)nsizes;
	if (opts.pool_limit)
		for (unsigned i = 0; i < opts.nsizes; i++) {
			/* one value must fit with others in flight */
			uint64_t cap = opts.pool_limit / 4;

			opts.sizes[i].max = opts.sizes[i].max < cap ? opts.sizes[i].max : cap;
			opts.sizes[i].min = opts.sizes[i].min < opts.sizes[i].max ?
						    opts.sizes[i].min :
						    opts.sizes[i].max;
		}
}

/* ---- the pairs ---- */

static void child_exit(int status)
{
	fflush(NULL);
	_exit(status);
}

/* Start epoch pairs[i].epoch: a channel pair, the producer, then the consumer. */
static int start_pair(unsigned i)
{
	struct shmrig_channel_opts co = { .size = sizeof(struct shmrig_channel_opts),
					  .backend = opts.backend,
					  .slots = opts.slots };
	struct pair *pr = &pairs[i];
	shmrig_channel_pair *chp;
	int pidpipe[2];
	pid_t prod, cons;
	int ret;

	memset(&slots[i], 0, sizeof(slots[i]));
	ret = shmrig_channel_pair_create(&co, &chp);
	if (ret) {
		failure("pair %u: channel: %s", i, shmrig_last_error());
		return ret;
	}
	if (pipe(pidpipe)) {
		shmrig_channel_pair_free(chp);
		return -errno;
	}
	fflush(NULL);
	prod = fork();
	if (prod == 0) {
		pid_t peer = 0;

		close(pidpipe[1]);
		if (read(pidpipe[0], &peer, sizeof(peer)) != sizeof(peer))
			child_exit(3); /* the consumer never started */
		close(pidpipe[0]);
		child_exit(producer_main(&opts, &slots[i], i, pr->epoch, chp, peer));
	}
	cons = prod > 0 ? fork() : -1;
	if (cons == 0) {
		close(pidpipe[0]);
		close(pidpipe[1]);
		child_exit(consumer_main(&opts, &slots[i], i, pr->epoch, chp, prod));
	}
	close(pidpipe[0]);
	if (cons > 0 && write(pidpipe[1], &cons, sizeof(cons)) != sizeof(cons))
		kill(cons, SIGKILL);
	close(pidpipe[1]);
	shmrig_channel_pair_free(chp);
	pr->prod = (struct member){ .pid = prod, .alive = prod > 0 };
	pr->cons = (struct member){ .pid = cons, .alive = cons > 0 };
	pr->running = prod > 0;
	if (cons < 0) {
		failure("pair %u: fork: %s", i, strerror(errno));
		return -errno;
	}
	return 0;
}

struct seg_check {
	const struct pair *pr;
	bool closed_after_send; /* the producer closed its pool after a send */
	unsigned stale, swept, left;
};

static void check_segment(void *arg, const char *name)
{
	struct seg_check *sc = arg;
	pid_t pid;
	uint64_t start;

	if (shmrig_segment_parse_name(opts.prefix, name, &pid, &start))
		return;
	/* a worker that ended cleanly must have unlinked its segments */
	if (pid != sc->pr->prod.pid && pid != sc->pr->cons.pid)
		return;
	/* a worker that ended cleanly must have unlinked its segments; a killed
	 * one's are removed here (not by a sweep of every dead creator's: a
	 * survivor of another pair may not have mapped its peer's yet) */
	if (pid == sc->pr->prod.pid && sc->closed_after_send) {
		/* close() left it to its last owner, the consumer, which has
		 * exited too: left for the final shmrig_pool_sweep() */
		sc->left++;
	} else if ((pid == sc->pr->prod.pid && !sc->pr->prod.killed) ||
		   (pid == sc->pr->cons.pid && !sc->pr->cons.killed)) {
		sc->stale++;
		/* a hostile peer's writes (closed, owners) can keep a segment: reported */
		if (opts.inject != INJECT_HOSTILE)
			failure("segment %s of a worker that exited cleanly is still there", name);
	} else if (shmrig_segment_unlink_name(opts.prefix, name) == 0) {
		sc->swept++;
	}
}

/* Keep the first words of a kind: "pair 0 producer: <words>". The ledger's
 * copy is read within its bounds: a worker killed while writing it leaves no NUL. */
static void keep_words(char *kept, size_t kept_size, const char *words, size_t words_size,
		       const char *role, unsigned i)
{
	if (!kept[0] && words[0])
		snprintf(kept, kept_size, "pair %u %s: %.*s", i, role, (int)words_size, words);
}

static void add_side(const struct member *m, const struct side *s, const char *role, unsigned i)
{
	keep_words(tot.enomem_words, sizeof(tot.enomem_words), s->enomem_words,
		   sizeof(s->enomem_words), role, i);
	for (unsigned k = 0; k < ERR_KINDS; k++)
		keep_words(tot.error_words[k], sizeof(tot.error_words[k]), s->error_words[k],
			   sizeof(s->error_words[k]), role, i);
	tot.enomem += s->enomem;
	tot.skipped += s->skipped;
	tot.timeouts += s->timeouts;
	tot.corrupted += s->corrupted;
	tot.gaps += s->gaps;
	tot.dups += s->dups;
	for (unsigned k = 0; k < ERR_KINDS; k++)
		tot.errors[k] += s->errors[k];
	for (unsigned k = 0; k < REPLAY_KINDS; k++)
		tot.replays[k] += s->replays[k];
	if (m->killed)
		return;
	if (s->done) {
		tot.reaped += (uint64_t)s->reaped;
		tot.leaked_blocks += (uint64_t)(s->live_end > 0 ? s->live_end : 0);
		tot.leaked_fds += (uint64_t)s->fds_leaked;
		/* under a hostile peer a leak is expected: reported, not failed on */
		if (s->live_end && opts.inject != INJECT_HOSTILE)
			failure("pair %u %s: %lld blocks live at its end", i, role,
				(long long)s->live_end);
	}
	if (!WIFEXITED(m->status) || WEXITSTATUS(m->status) != 0 || !s->done) {
		char how[64];

		if (WIFSIGNALED(m->status))
			snprintf(how, sizeof(how), "died of signal %d", WTERMSIG(m->status));
		else
			snprintf(how, sizeof(how), "exited with %d", WEXITSTATUS(m->status));
		failure("pair %u %s (pid %d) %s: %s", i, role, (int)m->pid, how,
			s->error[0] ? s->error : "no words");
	}
}

/*
 * Does a message the channel took live in the sender's process until it has
 * gone out? For pipe, uring and ring, a send returns once the bytes are in
 * the kernel's socket buffer or the shared ring, which outlive the sender.
 * ucx copies the message into a buffer UCX sends from, in the sender (its
 * send may return with the copy still posted, channel.h): a producer killed
 * then takes the last messages with it. Over TCP nothing else could promise
 * more: a process killed with unread data resets the connection, and the
 * kernel drops its send queue.
 */
static bool sender_holds_taken(void)
{
	return strcmp(opts.backend, "ucx") == 0;
}

/*
 * ucx: UCX's tcp transport (1.13, Debian 12) now and then fails one of its
 * own assertions and aborts inside ucp_worker_progress() in the survivor of
 * a kill, while it handles the dead peer's half-made connection (`tcp_ep.c:478
 * Assertion !(ep->flags & UCT_TCP_EP_FLAG_CTX_TYPE_TX)'; UCX's issues #4186
 * and #6161 are of that kind): 2 of 25 runs of stress_ucx_tcp_storm. A
 * survivor that died of SIGABRT while its peer had been killed is a death
 * the kill caused: accounted as killed (its blocks reaped, its messages
 * dropped with it, never lost), counted apart (ucx_aborts) and reported.
 * Our code calls neither abort() nor assert(); any other signal, or a
 * SIGABRT whose peer lived, stays a failure.
 */
static void note_ucx_aborts(struct pair *pr)
{
	struct member *both[2] = { &pr->prod, &pr->cons };

	if (strcmp(opts.backend, "ucx") != 0)
		return;
	for (int r = 0; r < 2; r++) {
		struct member *m = both[r], *peer = both[!r];

		if (!m->killed && peer->killed && !peer->aborted && WIFSIGNALED(m->status) &&
		    WTERMSIG(m->status) == SIGABRT) {
			m->killed = m->aborted = true;
			tot.ucx_aborts++;
		}
	}
}

/* Both processes of pair i are gone: add up the epoch and check it. */
static void end_epoch(unsigned i)
{
	struct pair *pr = &pairs[i];
	struct slot *sl = &slots[i];
	struct seg_check sc = { .pr = pr, .closed_after_send = sl->prod.closed_after_send };
	uint64_t taken = sl->prod.messages, got = sl->cons.messages;
	unsigned failures_before = tot.failures.n;
	bool hostile_run = opts.inject == INJECT_HOSTILE;

	pr->running = false;
	tot.epochs++;
	note_ucx_aborts(pr);
	tot.messages += got;
	tot.bytes += sl->cons.bytes;
	tot.sent += taken;
	tot.temporary += sl->cons.temporary;
	tot.reverified += sl->cons.reverified;
	tot.refused += sl->cons.refused;
	tot.closes += (uint64_t)sl->prod.closed_after_send;
	tot.closed_in_flight += (uint64_t)sl->prod.closed_in_flight;
	tot.closed_kept += (uint64_t)sl->prod.closed_kept;
	if (pr->cons.killed) {
		tot.dropped_in_kill += taken > got ? taken - got : 0;
	} else if (taken > got && pr->prod.killed && sender_holds_taken()) {
		/* ucx: what send took may still have been in the killed producer's
		 * own memory (UCX's copy of it, not yet written to the socket or
		 * the shared-memory FIFO): it died with it. Only the last ones can
		 * be (a hole is a sequence gap, failed on below), at most a window
		 * of them (the acks bound what is in flight); their blocks were
		 * handed over, so the consumer frees them as orphans. */
		tot.dropped_with_producer += taken - got;
		if (taken - got > opts.window)
			failure("pair %u epoch %u: %llu messages taken, %llu received: more than "
				"the window (%u) died with the producer",
				i, pr->epoch, (unsigned long long)taken, (unsigned long long)got,
				opts.window);
	} else if (taken > got) {
		tot.lost += taken - got;
		/* under a hostile peer, messages whose decode was refused are lost */
		if (!hostile_run)
			failure("pair %u epoch %u: %llu messages taken, %llu received", i,
				pr->epoch, (unsigned long long)taken, (unsigned long long)got);
	}
	/* orphans are expected only when the producer died between hand-over and
	 * send, or a hostile peer made a decode fail after the hand-over */
	if (pr->prod.killed || hostile_run)
		tot.orphans += (uint64_t)sl->cons.orphans;
	else if (sl->cons.orphans > 0) {
		tot.leaked_blocks += (uint64_t)sl->cons.orphans;
		failure("pair %u epoch %u: the consumer owned %lld blocks it never received", i,
			pr->epoch, (long long)sl->cons.orphans);
	}
	add_side(&pr->prod, &sl->prod, "producer", i);
	add_side(&pr->cons, &sl->cons, "consumer", i);
	if (sl->cons.gaps || sl->cons.dups)
		failure("pair %u epoch %u: %llu sequence gaps, %llu duplicates", i, pr->epoch,
			(unsigned long long)sl->cons.gaps, (unsigned long long)sl->cons.dups);
	if (sl->cons.corrupted)
		failure("pair %u epoch %u: %llu corrupted: %s", i, pr->epoch,
			(unsigned long long)sl->cons.corrupted, sl->cons.error);
	for (unsigned b = 0; b < HIST_BUCKETS; b++)
		tot.hist[b] += sl->hist[b];
	if (sl->max_latency_ns > tot.max_latency_ns)
		tot.max_latency_ns = sl->max_latency_ns;
	if (shmrig_segment_list(opts.prefix, check_segment, &sc) < 0)
		failure("pair %u epoch %u: segment_list: %s", i, pr->epoch, shmrig_last_error());
	tot.stale_segments += sc.stale;
	tot.swept_segments += sc.swept;
	tot.left_after_close += sc.left;
	if (tot.failures.n == failures_before)
		tot.kills_survived += (uint64_t)(pr->prod.killed && !pr->prod.aborted) +
				      (uint64_t)(pr->cons.killed && !pr->cons.aborted);
	pr->epoch++;
}

static struct member *find_member(pid_t pid, unsigned *pair)
{
	for (unsigned i = 0; i < opts.pairs; i++) {
		*pair = i;
		if (pairs[i].prod.pid == pid && pairs[i].prod.alive)
			return &pairs[i].prod;
		if (pairs[i].cons.pid == pid && pairs[i].cons.alive)
			return &pairs[i].cons;
	}
	return NULL;
}

/* Collect exited children; end the epochs whose both processes are gone. */
static void collect(bool restart)
{
	int status;
	pid_t pid;

	while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
		unsigned i;
		struct member *m = find_member(pid, &i);

		if (hostile.alive && pid == hostile.pid) {
			hostile.alive = false;
			hostile.status = status;
			continue;
		}
		if (!m)
			continue;
		m->alive = false;
		m->status = status;
		if (m == &pairs[i].prod && atomic_load(&slots[i].prod.self_killed)) {
			m->killed = true; /* --inject orphan: it killed itself in send */
			tot.kills++;
			tot.kills_by_phase[0][PH_SEND]++;
		}
		if (!pairs[i].prod.alive && !pairs[i].cons.alive) {
			end_epoch(i);
			/* after a failure the run winds down: its report is what counts */
			if (restart && !tot.failures.n)
				start_pair(i);
		}
	}
}

/* ---- faults ---- */

/* --inject hostile: the scribbling process, for the whole run. */
static void start_hostile(void)
{
	pid_t pid;

	hledger = mmap(NULL, sizeof(*hledger), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS,
		       -1, 0);
	if (hledger == MAP_FAILED)
		die("mmap of the hostile peer's ledger: %s", strerror(errno));
	fflush(NULL);
	pid = fork();
	if (pid < 0)
		die("fork: %s", strerror(errno));
	if (pid == 0)
		child_exit(hostile_main(&opts, hledger));
	hostile = (struct member){ .pid = pid, .alive = true };
}

static double exp_interval(double rate)
{
	return rate > 0 ? -log(1 - rng_unit(&drng)) / rate : INFINITY;
}

/* A random running pair with both processes alive, or -1. */
/*
 * A running pair, at random. A pair whose last epoch was killed before a
 * message got through is not killed again until one does: kills at start-up
 * are part of the run, but on a slow machine (valgrind, a loaded CI runner)
 * they must not starve it. -1: none can be killed now.
 */
static int pick_pair(void)
{
	unsigned start = (unsigned)(rng_next(&drng) % opts.pairs);

	for (unsigned k = 0; k < opts.pairs; k++) {
		unsigned i = (start + k) % opts.pairs;

		if (pairs[i].running && pairs[i].prod.alive && pairs[i].cons.alive &&
		    (!pairs[i].killed_empty || atomic_load(&slots[i].cons.messages) > 0))
			return (int)i;
	}
	return -1;
}

/*
 * Wait (busy, at most KILL_AIM_NS) until the worker is in a phase drawn at
 * random among those where a death hurts most: holding blocks it is encoding,
 * frames handed over but not sent, a decode half done. Returns the phase it is
 * in when we give up waiting or it gets there.
 */
#define KILL_AIM_NS 20000000u
/* A due kill that no pair could take is tried again this much later. */
#define KILL_RETRY_NS 1000000u
static int aim(struct side *s, int role)
{
	static const enum phase targets[2][4] = {
		{ PH_ENCODE, PH_SEND, PH_GENERATE, PH_WAIT },
		{ PH_DECODE, PH_VERIFY, PH_RELEASE, PH_WAIT },
	};
	enum phase want = targets[role][rng_next(&drng) % 4];
	uint64_t until = now_ns() + KILL_AIM_NS;
	int phase;

	do
		phase = atomic_load_explicit(&s->phase, memory_order_relaxed);
	while (phase != (int)want && now_ns() < until);
	return phase;
}

/* Kill one worker of a pair; false: no pair can be killed now. */
static bool kill_one(void)
{
	int i = pick_pair();
	int role = (int)(rng_next(&drng) % 2);
	struct member *m;
	struct side *s;
	int phase;

	if (i < 0)
		return false;
	m = role ? &pairs[i].cons : &pairs[i].prod;
	s = role ? &slots[i].cons : &slots[i].prod;
	phase = aim(s, role);
	if (kill(m->pid, SIGKILL) == 0) {
		m->killed = true;
		pairs[i].killed_empty = atomic_load(&slots[i].cons.messages) == 0;
		tot.kills++;
		tot.kills_by_phase[role][phase >= 0 && phase < PH_COUNT ? phase : 0]++;
	}
	return true;
}

static void stall_one(uint64_t now)
{
	int i = pick_pair();

	if (i < 0 || pairs[i].stalled_until)
		return;
	if (kill(pairs[i].cons.pid, SIGSTOP) == 0) {
		pairs[i].stalled_until = now + (uint64_t)opts.stall_ms * 1000000u;
		tot.stalls++;
	}
}

static void resume_stalled(uint64_t now, bool all)
{
	for (unsigned i = 0; i < opts.pairs; i++)
		if (pairs[i].stalled_until && (all || pairs[i].stalled_until <= now)) {
			if (pairs[i].cons.alive)
				kill(pairs[i].cons.pid, SIGCONT);
			pairs[i].stalled_until = 0;
		}
}

/* ---- progress and report ---- */

static uint64_t sum(const uint64_t *counts, unsigned n)
{
	uint64_t total = 0;

	for (unsigned i = 0; i < n; i++)
		total += counts[i];
	return total;
}

static uint64_t scribbles_done(void)
{
	uint64_t total = 0;

	for (unsigned k = 0; hledger && k < SC_KINDS; k++)
		total += hledger->scribbles[k];
	return total;
}

static uint64_t live_messages(void)
{
	uint64_t n = tot.messages;

	for (unsigned i = 0; i < opts.pairs; i++)
		if (pairs[i].running)
			n += slots[i].cons.messages;
	return n;
}

static void progress(uint64_t t0, uint64_t now)
{
	uint64_t bytes = tot.bytes, inflight = 0, held = 0;
	double secs = (double)(now - t0) / 1e9;

	for (unsigned i = 0; i < opts.pairs; i++) {
		if (!pairs[i].running)
			continue;
		bytes += slots[i].cons.bytes;
		if (slots[i].prod.messages > slots[i].cons.messages)
			inflight += slots[i].prod.messages - slots[i].cons.messages;
		held += slots[i].cons.held_blocks;
	}
	fprintf(stderr,
		"\r%6.1fs  %10llu msgs  %6.2f GB/s  in flight %3llu  held blocks %4llu  "
		"kills %llu  ",
		secs, (unsigned long long)live_messages(),
		secs > 0 ? (double)bytes / secs / 1e9 : 0, (unsigned long long)inflight,
		(unsigned long long)held, (unsigned long long)tot.kills);
}

static uint64_t percentile_ns(double q)
{
	uint64_t total = 0, seen = 0;

	for (unsigned b = 0; b < HIST_BUCKETS; b++)
		total += tot.hist[b];
	for (unsigned b = 0; b < HIST_BUCKETS && total; b++) {
		seen += tot.hist[b];
		if ((double)seen >= q * (double)total) {
			uint64_t up = hist_upper_ns(b);

			return up < tot.max_latency_ns ? up : tot.max_latency_ns;
		}
	}
	return 0;
}

static json_t *report_json(double secs, bool pass)
{
	json_t *kills = json_object(), *failures = json_array(), *sizes = json_array();
	static const char *const roles[2] = { "producer", "consumer" };

	for (int r = 0; r < 2; r++) {
		json_t *by = json_object();

		for (int p = 0; p < PH_COUNT; p++)
			if (tot.kills_by_phase[r][p])
				json_object_set_new(by, phase_names[p],
						    json_integer(
							    (json_int_t)tot.kills_by_phase[r][p]));
		json_object_set_new(kills, roles[r], by);
	}
	for (unsigned i = 0; i < tot.failures.n; i++)
		json_array_append_new(failures, json_string(tot.failures.text[i]));
	for (unsigned i = 0; i < opts.nsizes; i++)
		json_array_append_new(sizes,
				      json_pack("{s:f,s:I,s:I}", "weight", opts.sizes[i].weight,
						"min", (json_int_t)opts.sizes[i].min, "max",
						(json_int_t)opts.sizes[i].max));
	json_t *config =
		json_pack("{s:s,s:i,s:i,s:f,s:I,s:o,s:i,s:i,s:i,s:i,s:f,s:f,s:i,s:i,s:I,s:I,s:s}",
			  "backend", opts.backend, "pairs", (int)opts.pairs, "processes",
			  (int)(2 * opts.pairs), "duration_s", opts.duration_s, "messages_limit",
			  (json_int_t)opts.messages, "sizes", sizes, "window", (int)opts.window,
			  "slots", (int)opts.slots, "hold", (int)opts.hold_max, "hold_ms",
			  opts.hold_ms, "kill_rate", opts.kill_rate, "stall_rate", opts.stall_rate,
			  "stall_ms", opts.stall_ms, "send_timeout_ms", opts.send_timeout_ms,
			  "pool_limit", (json_int_t)opts.pool_limit, "seed", (json_int_t)opts.seed,
			  "prefix", opts.prefix);
	json_t *res = json_object();
	const char *tls = getenv("UCX_TLS");

	/* what the ucx workers ran over (--ucx-tls, or the environment's) */
	if (strcmp(opts.backend, "ucx") == 0)
		json_object_set_new(config, "ucx_tls", tls ? json_string(tls) : json_null());
	const struct {
		const char *key;
		uint64_t value;
	} counts[] = {
		{ "messages", tot.messages },
		{ "bytes", tot.bytes },
		{ "lost", tot.lost },
		{ "corrupted", tot.corrupted },
		{ "sequence_gaps", tot.gaps },
		{ "duplicates", tot.dups },
		{ "leaked_blocks", tot.leaked_blocks },
		{ "stale_segments", tot.stale_segments },
		{ "leaked_fds", tot.leaked_fds },
		{ "kills", tot.kills },
		{ "kills_survived", tot.kills_survived },
		{ "epochs", tot.epochs },
		{ "dropped_with_killed_consumer", tot.dropped_in_kill },
		{ "dropped_with_killed_producer", tot.dropped_with_producer },
		{ "ucx_segments_left", tot.ucx_left },
		{ "ucx_aborts", tot.ucx_aborts },
		{ "orphans_freed", tot.orphans },
		{ "blocks_reaped", tot.reaped },
		{ "segments_swept", tot.swept_segments },
		{ "stalls", tot.stalls },
		{ "send_timeouts", tot.timeouts },
		{ "enomem_backoffs", tot.enomem },
		{ "values_given_up", tot.skipped },
		{ "temporary_messages", tot.temporary },
		{ "held_values_reverified", tot.reverified },
		{ "decodes_refused", tot.refused },
		{ "errors_seen", sum(tot.errors, ERR_KINDS) - tot.errors[ERR_LEAK] },
		{ "replays_refused", tot.replays[REPLAY_CLAIMED] + tot.replays[REPLAY_STALE] },
		{ "replays_accepted", tot.replays[REPLAY_ACCEPTED] },
		{ "replays_refused_wrongly", tot.replays[REPLAY_WRONG] },
		{ "closes_after_send", tot.closes },
		{ "in_flight_at_close", tot.closed_in_flight },
		{ "segments_kept_at_close", tot.closed_kept },
		{ "segments_left_after_close", tot.left_after_close },
		{ "segments_swept_at_end", tot.swept_at_end },
		{ "hostile_scribbles", scribbles_done() },
	};
	json_t *errors = json_object(), *scribbles = json_object(), *first_errors = json_object();

	json_object_set_new(res, "seconds", json_real(secs));
	for (size_t i = 0; i < sizeof(counts) / sizeof(counts[0]); i++)
		json_object_set_new(res, counts[i].key, json_integer((json_int_t)counts[i].value));
	json_object_set_new(res, "gb_per_s",
			    json_real(secs > 0 ? (double)tot.bytes / secs / 1e9 : 0));
	json_object_set_new(res, "messages_per_s",
			    json_real(secs > 0 ? (double)tot.messages / secs : 0));
	json_object_set_new(res, "latency_ns",
			    json_pack("{s:I,s:I,s:I}", "p50", (json_int_t)percentile_ns(0.50),
				      "p99", (json_int_t)percentile_ns(0.99), "max",
				      (json_int_t)tot.max_latency_ns));
	json_object_set_new(res, "kills_by_phase", kills);
	for (unsigned k = 0; k < ERR_KINDS; k++)
		if (tot.errors[k])
			json_object_set_new(errors, err_names[k],
					    json_integer((json_int_t)tot.errors[k]));
	json_object_set_new(res, "errors_by_code", errors);
	for (unsigned k = 0; hledger && k < SC_KINDS; k++)
		json_object_set_new(scribbles, scribble_names[k],
				    json_integer((json_int_t)hledger->scribbles[k]));
	json_object_set_new(res, "scribbles_by_kind", scribbles);
	if (tot.enomem_words[0])
		json_object_set_new(first_errors, "ENOMEM", json_string(tot.enomem_words));
	for (unsigned k = 0; k < ERR_KINDS; k++)
		if (tot.error_words[k][0])
			json_object_set_new(first_errors, err_names[k],
					    json_string(tot.error_words[k]));
	return json_pack("{s:s,s:o,s:o,s:o,s:o,s:b}", "schema", "shmrig-stress/1", "config", config,
			 "results", res, "first_errors", first_errors, "failures", failures, "pass",
			 pass);
}

static void print_table(json_t *report)
{
	json_t *res = json_object_get(report, "results");
	const char *key;
	json_t *v;

	printf("\n%-30s %s\n", "shmrig-stress",
	       json_is_true(json_object_get(report, "pass")) ? "PASS" : "FAIL");
	json_object_foreach(res, key, v)
	{
		if (json_is_integer(v))
			printf("  %-28s %lld\n", key, (long long)json_integer_value(v));
		else if (json_is_real(v))
			printf("  %-28s %.3f\n", key, json_real_value(v));
	}
	v = json_object_get(res, "latency_ns");
	printf("  %-28s p50 %.1f us, p99 %.1f us, max %.1f us\n", "latency (encode to verified)",
	       (double)json_integer_value(json_object_get(v, "p50")) / 1e3,
	       (double)json_integer_value(json_object_get(v, "p99")) / 1e3,
	       (double)json_integer_value(json_object_get(v, "max")) / 1e3);
	json_object_foreach(json_object_get(report, "first_errors"), key, v)
		printf("  first %-22s %s\n", key, json_string_value(v));
	v = json_object_get(report, "failures");
	for (size_t i = 0; i < json_array_size(v); i++)
		printf("  FAILURE: %s\n", json_string_value(json_array_get(v, i)));
}

static void count_segment(void *arg, const char *name)
{
	(void)name;
	(*(unsigned *)arg)++;
}

static void unlink_segment(void *arg, const char *name)
{
	(void)arg;
	/* best effort: the segment is counted as stale already */
	(void)!shmrig_segment_unlink_name(opts.prefix, name);
}

/* Every --require counter is above zero (says which is not). */
static bool required(json_t *results)
{
	bool ok = true;

	for (unsigned i = 0; i < opts.nrequire; i++) {
		json_t *v = json_object_get(results, opts.require[i]);

		if (!json_is_integer(v)) {
			printf("  REQUIRED: %s is no counter of the results\n", opts.require[i]);
			ok = false;
		} else if (json_integer_value(v) <= 0) {
			printf("  REQUIRED: %s is 0: the run did not exercise it\n",
			       opts.require[i]);
			ok = false;
		}
	}
	return ok;
}

/* "ESTALE 3, EPERM 1" for the counts that are not zero. */
static void print_counts(const char *const *names, const uint64_t *counts, unsigned n)
{
	const char *sep = "";

	for (unsigned i = 0; i < n; i++)
		if (counts[i]) {
			printf("%s%s %llu", sep, names[i], (unsigned long long)counts[i]);
			sep = ", ";
		}
	printf("%s\n", *sep ? "" : "none");
}

/*
 * --inject hostile: no worker crashed or hung and none failed (`clean`, which
 * here does not count lost messages, leaked blocks and segments left), no
 * corrupted message was accepted, and the workers saw errors.
 */
static bool hostile_verdict(bool clean)
{
	/* a leak report at close is no detection: the leaked blocks are counted apart */
	uint64_t scribbles[SC_KINDS], errors = sum(tot.errors, ERR_KINDS) - tot.errors[ERR_LEAK];
	bool peer_ok = WIFEXITED(hostile.status) && WEXITSTATUS(hostile.status) == 0 &&
		       hledger->done;
	bool ok = clean && peer_ok && !tot.corrupted && errors > 0 && scribbles_done() > 0;

	for (unsigned k = 0; k < SC_KINDS; k++)
		scribbles[k] = hledger->scribbles[k];
	printf("  hostile peer: %llu scribbles in %llu segments: ",
	       (unsigned long long)scribbles_done(), (unsigned long long)hledger->segments);
	print_counts(scribble_names, scribbles, SC_KINDS);
	printf("  errors the workers saw (besides leak reports): %llu: ",
	       (unsigned long long)errors);
	print_counts(err_names, tot.errors, ERR_KINDS);
	printf("  reported, not failed on: %llu messages lost (%llu decodes refused), %llu "
	       "blocks leaked, %llu orphans freed, %llu segments left\n",
	       (unsigned long long)tot.lost, (unsigned long long)tot.refused,
	       (unsigned long long)tot.leaked_blocks, (unsigned long long)tot.orphans,
	       (unsigned long long)tot.stale_segments);
	if (!peer_ok)
		printf("  the hostile peer itself failed: %s\n",
		       hledger->error[0] ? hledger->error : "no words");
	printf("  injected hostile peer: %s\n",
	       ok ? "survived: no crash, no hang, no corrupted message accepted, errors seen "
		    "(exit 0)" :
	       tot.corrupted ? "CORRUPTED MESSAGES ACCEPTED (exit 1)" :
	       !errors       ? "NO ERROR SEEN (exit 1)" :
			       "A WORKER FAILED (exit 1)");
	return ok;
}

/* --inject: corruption and leaks must be caught; orphans freed, replays
 * refused, producers closed early: nothing else wrong. */
static bool injected_fault_caught(bool clean)
{
	static const char *const names[] = { "",        "corruption",      "leak", "orphans", "",
					     "replays", "close-after-send" };
	static const char *const replay_names[REPLAY_KINDS] = {
		[REPLAY_CLAIMED] = "refused ECLAIMED",
		[REPLAY_STALE] = "refused ESTALE (temporary)",
		[REPLAY_ACCEPTED] = "ACCEPTED",
		[REPLAY_WRONG] = "refused with another code",
	};
	bool caught;

	switch (opts.inject) {
	case INJECT_HOSTILE:
		return hostile_verdict(clean);
	case INJECT_CORRUPT:
		caught = tot.corrupted > 0;
		break;
	case INJECT_LEAK:
		caught = tot.leaked_blocks > 0;
		break;
	case INJECT_REPLAY:
		printf("  replays: ");
		print_counts(replay_names, tot.replays, REPLAY_KINDS);
		caught = clean && tot.replays[REPLAY_CLAIMED] > 0 &&
			 !tot.replays[REPLAY_ACCEPTED] && !tot.replays[REPLAY_WRONG];
		break;
	case INJECT_CLOSE_AFTER_SEND:
		printf("  producers closed after a send %llu times, %llu messages in flight: their "
		       "close kept %llu segments for their consumer; %llu were left after it "
		       "exited, %llu removed by the final sweep\n",
		       (unsigned long long)tot.closes, (unsigned long long)tot.closed_in_flight,
		       (unsigned long long)tot.closed_kept,
		       (unsigned long long)tot.left_after_close,
		       (unsigned long long)tot.swept_at_end);
		caught = clean && tot.closes > 0;
		break;
	default:
		caught = tot.orphans > 0 && clean;
		break;
	}
	printf("  injected %s: %s\n", names[opts.inject],
	       !caught                      ? "NOT CAUGHT (exit 1)" :
	       opts.inject == INJECT_ORPHAN ? "freed, nothing lost (exit 0)" :
	       opts.inject == INJECT_REPLAY ? "every replay refused, nothing else wrong (exit 0)" :
	       opts.inject == INJECT_CLOSE_AFTER_SEND ? "nothing lost, leaked or left (exit 0)" :
							"caught (exit 0)");
	return caught;
}

/*
 * The run's last clean-up: shmrig_pool_sweep() removes every segment of a
 * dead creator that no live process holds a block in (a worker's orphaned
 * segments, those a producer that closed early left to its consumer). What
 * it leaves is stale; under a hostile peer (which can make a segment
 * unreadable, and the sweep keeps what it cannot read) it is reported and
 * removed here, not failed on.
 */
static void final_sweep(void)
{
	struct shmrig_pool_opts po = { .size = sizeof(struct shmrig_pool_opts),
				       .prefix = opts.prefix,
				       .flags = SHMRIG_POOL_QUIET };
	shmrig_pool *pool;
	unsigned left = 0;
	int ret = shmrig_pool_open(&po, &pool);

	if (ret) {
		failure("final sweep: pool_open: %s", shmrig_last_error());
		return;
	}
	ret = shmrig_pool_sweep(pool);
	if (ret < 0)
		failure("final sweep: %s", shmrig_last_error());
	else
		tot.swept_at_end = (uint64_t)ret;
	tot.swept_segments += tot.swept_at_end;
	ret = shmrig_pool_close(pool); /* it allocated nothing: 0 */
	if (ret)
		failure("final sweep: pool_close: %s", shmrig_strerror(ret));
	if (shmrig_segment_list(opts.prefix, count_segment, &left) < 0)
		failure("final sweep: segment_list: %s", shmrig_last_error());
	if (!left)
		return;
	tot.stale_segments += left;
	if (opts.inject == INJECT_HOSTILE) /* best effort, as unlink_segment */
		(void)!shmrig_segment_list(opts.prefix, unlink_segment, NULL);
	else
		failure("%u segments with prefix %s remain after the run", left, opts.prefix);
}

/* Remove the entries of dir (our own directory); how many there were. */
static unsigned empty_dir(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *entry;
	unsigned count = 0;

	while (d && (entry = readdir(d)) != NULL)
		if (strcmp(entry->d_name, ".") != 0 && strcmp(entry->d_name, "..") != 0) {
			(void)!unlinkat(dirfd(d), entry->d_name, 0);
			count++;
		}
	if (d)
		closedir(d);
	return count;
}

/*
 * --backend ucx: UCX's posix transport makes a segment in /dev/shm per worker
 * and unlinks it once mapped; a worker killed in between leaves it there, and
 * /dev/shm is shared, with nothing in the name to say whose it is. So the
 * run's workers get a directory of their own (UCX_POSIX_DIR, named after the
 * prefix; unless the environment names one): what is in it at the end is
 * theirs, counted (ucx_segments_left) and removed with it. Before fork.
 */
static void ucx_dir_open(void)
{
	if (strcmp(opts.backend, "ucx") != 0 || getenv("UCX_POSIX_DIR"))
		return;
	snprintf(ucx_dir, sizeof(ucx_dir), "/dev/shm/shmrig-stress-ucx-%s", opts.prefix);
	if (mkdir(ucx_dir, 0700) && errno != EEXIST)
		die("mkdir %s: %s", ucx_dir, strerror(errno));
	/* an earlier run of this prefix that was killed: its, so ours to remove */
	empty_dir(ucx_dir);
	if (setenv("UCX_POSIX_DIR", ucx_dir, 1))
		die("setenv UCX_POSIX_DIR: %s", strerror(errno));
}

/* The run's end: what UCX left (killed workers' segments), removed; the directory too. */
static void ucx_dir_close(void)
{
	if (!ucx_dir[0])
		return;
	tot.ucx_left = empty_dir(ucx_dir);
	if (rmdir(ucx_dir))
		failure("rmdir %s: %s", ucx_dir, strerror(errno));
	/* only a SIGKILL between UCX's shm_open and its unlink leaves one */
	if (tot.ucx_left && !tot.kills)
		failure("UCX left %llu segments in %s and no worker was killed",
			(unsigned long long)tot.ucx_left, ucx_dir);
}

/* A backend this build lacks ("ucx" without libucx-dev) is a skip, said why
 * (exit 77); any other refusal is bad usage. */
static void check_backend(void)
{
	struct shmrig_channel_opts co = { .size = sizeof(struct shmrig_channel_opts),
					  .backend = opts.backend,
					  .slots = opts.slots };
	shmrig_channel_pair *chp;
	int ret = shmrig_channel_pair_create(&co, &chp);

	if (ret == -EOPNOTSUPP) {
		printf("skipped: --backend %s: %s\n", opts.backend, shmrig_last_error());
		exit(77);
	}
	if (ret)
		die("--backend %s: %s", opts.backend, shmrig_last_error());
	shmrig_channel_pair_free(chp);
}

/* The workers' pools will take the prefix: try it here (no segment is made). */
static int check_prefix(void)
{
	struct shmrig_pool_opts po = { .size = sizeof(struct shmrig_pool_opts),
				       .prefix = opts.prefix,
				       .flags = SHMRIG_POOL_QUIET };
	shmrig_pool *pool;
	int ret = shmrig_pool_open(&po, &pool);

	if (ret)
		die("--prefix: %s", shmrig_last_error());
	return shmrig_pool_close(pool);
}

/* Nothing went through: say why, from what the workers met. */
static void no_message_failure(void)
{
	const char *first_error = "";

	for (unsigned k = 0; k < ERR_KINDS && !first_error[0]; k++)
		first_error = tot.error_words[k];
	if (tot.enomem_words[0])
		failure("no message went through: the pool said -ENOMEM %llu times (%llu values "
			"given up); the first: %s",
			(unsigned long long)tot.enomem, (unsigned long long)tot.skipped,
			tot.enomem_words);
	else if (first_error[0])
		failure("no message went through; the first error: %s", first_error);
	else
		failure("no message went through");
}

/* ---- the run ---- */

/* Every running pair's two workers have their pool and channel open. */
static bool all_started(void)
{
	for (unsigned i = 0; i < opts.pairs; i++)
		if (pairs[i].running && (atomic_load(&slots[i].prod.phase) == PH_START ||
					 atomic_load(&slots[i].cons.phase) == PH_START))
			return false;
	return true;
}

static void run(void)
{
	uint64_t t0 = now_ns(), next_kill = UINT64_MAX, next_stall = UINT64_MAX;
	uint64_t next_progress = t0, deadline = 0, end_at = t0 + START_TIMEOUT_S * 1000000000ull;
	bool started = false, armed = false, stopping = false;
	sigset_t chld;

	sigemptyset(&chld);
	sigaddset(&chld, SIGCHLD);
	if (opts.inject == INJECT_HOSTILE)
		start_hostile();
	for (unsigned i = 0; i < opts.pairs; i++)
		if (start_pair(i))
			die("pair %u would not start: %s", i,
			    tot.failures.text[tot.failures.n - 1]);
	for (;;) {
		uint64_t now = now_ns(), wake = now + 100000000u;
		struct timespec ts;
		bool any = false;

		if (!started && (live_messages() > 0 || all_started())) {
			started = true;
			end_at = opts.duration_s > 0 ? now + (uint64_t)(opts.duration_s * 1e9) :
						       UINT64_MAX;
		}
		if (!armed && live_messages() > 0) {
			armed = true;
			next_kill = now + (uint64_t)fmin(exp_interval(opts.kill_rate) * 1e9, 1e18);
			next_stall =
				now + (uint64_t)fmin(exp_interval(opts.stall_rate) * 1e9, 1e18);
		}
		if (!stopping &&
		    (now >= end_at || (opts.messages && live_messages() >= opts.messages))) {
			if (!started)
				failure("the workers did not start in %d s", START_TIMEOUT_S);
			stopping = true;
			deadline = now + (uint64_t)FINISH_TIMEOUT_S * 1000000000u;
			resume_stalled(now, true);
			for (unsigned i = 0; i < opts.pairs; i++)
				atomic_store(&slots[i].stop, 1);
			if (hledger)
				atomic_store(&hledger->stop, 1);
		}
		if (!stopping && now >= next_kill) {
			/* a kill no pair can take now is due again at the next tick */
			if (kill_one())
				next_kill = now + (uint64_t)fmin(exp_interval(opts.kill_rate) * 1e9,
								 1e18);
			else
				next_kill = now + KILL_RETRY_NS;
		}
		if (!stopping && now >= next_stall) {
			stall_one(now);
			next_stall =
				now + (uint64_t)fmin(exp_interval(opts.stall_rate) * 1e9, 1e18);
		}
		resume_stalled(now, false);
		if (opts.progress && now >= next_progress) {
			progress(t0, now);
			next_progress = now + 250000000u;
		}
		collect(!stopping);
		for (unsigned i = 0; i < opts.pairs; i++)
			any |= pairs[i].running;
		if (stopping && !any && !hostile.alive)
			break;
		if (stopping && now > deadline) {
			if (hostile.alive) {
				kill(hostile.pid, SIGKILL);
				failure("the hostile peer did not stop in %d s: killed",
					FINISH_TIMEOUT_S);
			}
			for (unsigned i = 0; i < opts.pairs; i++) {
				if (pairs[i].prod.alive)
					kill(pairs[i].prod.pid, SIGKILL);
				if (pairs[i].cons.alive)
					kill(pairs[i].cons.pid, SIGKILL);
				if (pairs[i].running)
					failure("pair %u did not finish in %d s: killed", i,
						FINISH_TIMEOUT_S);
			}
			deadline = UINT64_MAX;
		}
		if (!stopping) {
			wake = next_kill < wake ? next_kill : wake;
			wake = next_stall < wake ? next_stall : wake;
		}
		wake = wake > now ? wake - now : 0;
		ts.tv_sec = (time_t)(wake / 1000000000u);
		ts.tv_nsec = (long)(wake % 1000000000u);
		sigtimedwait(&chld, NULL, &ts);
	}
	if (opts.progress) {
		progress(t0, now_ns());
		fputc('\n', stderr);
	}
}

int main(int argc, char **argv)
{
	sigset_t chld;
	struct fd_set_bits fds;
	int ret, fds_left;
	uint64_t t0;
	double secs;
	json_t *report;
	bool pass;

	setvbuf(stdout, NULL, _IOLBF, 0);
	parse_args(argc, argv);
	drng = opts.seed ^ 0x5eedull;
	signal(SIGPIPE, SIG_IGN);
	sigemptyset(&chld);
	sigaddset(&chld, SIGCHLD);
	sigprocmask(SIG_BLOCK, &chld, NULL);
	fds_snapshot(&fds);

	ret = check_prefix();
	if (!ret)
		ret = shmrig_registry_create(&opts.registry);
	if (!ret)
		ret = shmrig_registry_add_builtins(opts.registry);
	if (ret)
		die("registry: %s", shmrig_last_error());
	opts.fingerprint = shmrig_registry_fingerprint(opts.registry);
	if (workload_path) {
		ret = workload_main(&opts, workload_path, rate_scale, sample_ms);
		shmrig_registry_free(opts.registry);
		return ret;
	}
	check_backend();
	ucx_dir_open();
	slots = mmap(NULL, sizeof(*slots) * opts.pairs, PROT_READ | PROT_WRITE,
		     MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (slots == MAP_FAILED)
		die("mmap of the ledger: %s", strerror(errno));
	if (opts.progress)
		fprintf(stderr, "shmrig-stress: %u pairs over %s%s%s, prefix %s, seed %llu\n",
			opts.pairs, opts.backend, getenv("UCX_TLS") ? " UCX_TLS=" : "",
			getenv("UCX_TLS") ? getenv("UCX_TLS") : "", opts.prefix,
			(unsigned long long)opts.seed);

	t0 = now_ns();
	run();
	secs = (double)(now_ns() - t0) / 1e9;

	final_sweep();
	ucx_dir_close();
	munmap(slots, sizeof(*slots) * opts.pairs);
	shmrig_registry_free(opts.registry);
	fds_left = fds_new_since(&fds);
	if (fds_left) {
		tot.leaked_fds += (uint64_t)fds_left;
		failure("the driver has %d descriptors open that it did not have at the start",
			fds_left);
	}
	if (tot.messages == 0)
		no_message_failure();
	/* under a hostile peer, lost messages, leaks and segments left are expected */
	pass = tot.failures.n == 0 && !tot.corrupted && !tot.leaked_fds &&
	       (opts.inject == INJECT_HOSTILE ||
		(!tot.lost && !tot.leaked_blocks && !tot.stale_segments));
	report = report_json(secs, pass);
	if (!report)
		die("out of memory for the report");
	print_table(report);
	pass = pass && required(json_object_get(report, "results"));
	if (opts.inject)
		pass = injected_fault_caught(pass);
	if (opts.json_path && json_dump_file(report, opts.json_path, JSON_INDENT(2)))
		die("cannot write %s", opts.json_path);
	json_decref(report);
	if (hledger)
		munmap(hledger, sizeof(*hledger));
	return pass ? 0 : 1;
}
