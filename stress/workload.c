/* SPDX-License-Identifier: MIT */
/*
 * --workload: the driver of the open-loop replay of a workload file (issue
 * 14; the workers: replay.c, the layout: stress.h). It loads the file with
 * the plan's own parser, starts every flow's producers and consumers, gives
 * them one time 0, waits for them (killing what hangs), and then adds up:
 * rates offered and achieved, latency percentiles per flow and overall, and
 * the pool's occupancy, the producers' samples summed on the run's time grid
 * (in all, and per NUMA node of the producers), after a warm-up.
 *
 * The report: a table, and with --json the "shmrig-stress-workload" object
 * that shmrig-plan --verify reads (README.md in this directory).
 */
#include "stress.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#define START_TIMEOUT_NS 30000000000ull  /* every channel open */
#define FINISH_TIMEOUT_NS 60000000000ull /* after the end of the schedule */
#define START_DELAY_NS 20000000u         /* time 0: this long after every worker is ready */
#define WARMUP_FRACTION 0.1
#define WARMUP_MAX_S 0.5
#define WARMUP_LONGEST_FRACTION 0.4
#define MAX_OCCUPANCY_POINTS 1000

static struct failures failures;

#define failure(...) failures_add(&failures, __VA_ARGS__)

__attribute__((format(printf, 1, 2), noreturn)) static void die(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "shmrig-stress: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(2);
}

/* What each process is, in the driver's view. */
struct wproc {
	unsigned flow, index;
	bool producer;
	pid_t pid;
	bool alive, killed;
	int status;
};

static struct wl_run run;
static struct wproc *procs;

/* ---- the run ---- */

static size_t ledger_bytes(size_t *procs_at, size_t *links_at, size_t *samples_at)
{
	size_t at = (sizeof(struct wl_ledger) + 63) / 64 * 64;

	*procs_at = at;
	at += (run.nprocs * sizeof(struct wl_proc) + 63) / 64 * 64;
	*links_at = at;
	at += (run.nlinks * sizeof(struct wl_link) + 63) / 64 * 64;
	*samples_at = at;
	return at + (size_t)run.nprocs * run.nsamples * sizeof(struct wl_sample);
}

static void layout(const struct plan_workload *wl)
{
	size_t procs_at, links_at, samples_at, bytes;
	char *base;

	for (unsigned f = 0; f < wl->nflows; f++) {
		const struct plan_flow *fl = &wl->flows[f];

		run.first_proc[f] = run.nprocs;
		run.first_link[f] = run.nlinks;
		run.nprocs += fl->producers + fl->consumers;
		run.nlinks += fl->producers > fl->consumers ? fl->producers : fl->consumers;
		if (run.nprocs > WL_MAX_PROCS)
			die("--workload: %u processes or more; the replay runs %u at most",
			    run.nprocs, WL_MAX_PROCS);
	}
	if ((double)run.nprocs * run.nsamples * sizeof(struct wl_sample) > WL_MAX_SAMPLE_BYTES)
		die("--workload: %u samples of %u processes would take more than %zu MiB: a "
		    "larger --sample-ms or a shorter --duration",
		    run.nsamples, run.nprocs, WL_MAX_SAMPLE_BYTES >> 20);
	bytes = ledger_bytes(&procs_at, &links_at, &samples_at);
	base = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (base == MAP_FAILED)
		die("mmap of the ledger (%zu bytes): %s", bytes, strerror(errno));
	run.ledger = (struct wl_ledger *)base;
	run.procs = (struct wl_proc *)(base + procs_at);
	run.links = (struct wl_link *)(base + links_at);
	run.samples = (struct wl_sample *)(base + samples_at);
	procs = calloc(run.nprocs, sizeof(*procs));
	run.pairs = calloc(run.nlinks, sizeof(*run.pairs));
	if (!procs || !run.pairs)
		die("out of memory");
	for (unsigned f = 0; f < wl->nflows; f++)
		for (unsigned i = 0; i < wl->flows[f].producers + wl->flows[f].consumers; i++) {
			struct wproc *p = &procs[run.first_proc[f] + i];

			p->flow = f;
			p->producer = i < wl->flows[f].producers;
			p->index = p->producer ? i : i - wl->flows[f].producers;
		}
}

static void child_exit(int status)
{
	fflush(NULL);
	_exit(status);
}

/* Every link's channel pair, then every process (consumers first). */
static void start_all(void)
{
	for (unsigned f = 0; f < run.wl->nflows; f++) {
		const struct plan_flow *fl = &run.wl->flows[f];
		struct shmrig_channel_opts co = { .size = sizeof(struct shmrig_channel_opts),
						  .backend = fl->backend };

		for (unsigned l = run.first_link[f];
		     l < run.first_link[f] +
				 (fl->producers > fl->consumers ? fl->producers : fl->consumers);
		     l++)
			if (shmrig_channel_pair_create(&co, &run.pairs[l]))
				die("flow %s: channel (%s): %s", fl->name, fl->backend,
				    shmrig_last_error());
	}
	fflush(NULL);
	for (unsigned i = 0; i < run.nprocs; i++) {
		struct wproc *p = &procs[i];
		pid_t pid = fork();

		if (pid < 0) {
			failure("fork: %s", strerror(errno));
			atomic_store(&run.ledger->abort, 1);
			break;
		}
		if (pid == 0)
			child_exit(p->producer ? replay_producer(&run, p->flow, p->index, i) :
						 replay_consumer(&run, p->flow, p->index, i));
		p->pid = pid;
		p->alive = true;
		atomic_store(&run.procs[i].side.pid, (int)pid);
	}
	for (unsigned l = 0; l < run.nlinks; l++)
		shmrig_channel_pair_free(run.pairs[l]);
	atomic_store(&run.ledger->pids_set, 1);
}

static unsigned collect(void)
{
	unsigned alive = 0;
	int status;
	pid_t pid;

	while ((pid = waitpid(-1, &status, WNOHANG)) > 0)
		for (unsigned i = 0; i < run.nprocs; i++)
			if (procs[i].pid == pid && procs[i].alive) {
				procs[i].alive = false;
				procs[i].status = status;
				/* one that ends before the start: the others must not wait */
				if (!atomic_load(&run.ledger->start_ns) &&
				    (!WIFEXITED(status) || WEXITSTATUS(status) != 0))
					atomic_store(&run.ledger->abort, 1);
			}
	for (unsigned i = 0; i < run.nprocs; i++)
		alive += procs[i].alive;
	return alive;
}

static void wait_a_little(uint64_t ns)
{
	sigset_t chld;
	struct timespec ts = { .tv_sec = (time_t)(ns / 1000000000u),
			       .tv_nsec = (long)(ns % 1000000000u) };

	sigemptyset(&chld);
	sigaddset(&chld, SIGCHLD);
	sigtimedwait(&chld, NULL, &ts);
}

/* Time 0 once every worker is ready, then wait for them all (killing a hang). */
static void run_all(void)
{
	uint64_t deadline = now_ns() + START_TIMEOUT_NS;

	while (atomic_load(&run.ledger->ready) < (int)run.nprocs &&
	       !atomic_load(&run.ledger->abort) && now_ns() < deadline) {
		collect();
		wait_a_little(1000000u);
	}
	if (atomic_load(&run.ledger->ready) < (int)run.nprocs) {
		failure("%d of %u workers started", atomic_load(&run.ledger->ready), run.nprocs);
		atomic_store(&run.ledger->abort, 1);
		deadline = now_ns() + START_TIMEOUT_NS;
	} else {
		uint64_t start = now_ns() + START_DELAY_NS;

		atomic_store(&run.ledger->start_ns, start);
		deadline = start + run.duration_ns + FINISH_TIMEOUT_NS;
	}
	while (collect()) {
		if (now_ns() > deadline) {
			for (unsigned i = 0; i < run.nprocs; i++)
				if (procs[i].alive && kill(procs[i].pid, SIGKILL) == 0) {
					procs[i].killed = true;
					failure("flow %s %s %u (pid %d) did not finish: killed",
						run.wl->flows[procs[i].flow].name,
						procs[i].producer ? "producer" : "consumer",
						procs[i].index, (int)procs[i].pid);
				}
			deadline = UINT64_MAX;
		}
		wait_a_little(10000000u);
	}
}

static void count_segment(void *arg, const char *name)
{
	(void)name;
	(*(unsigned *)arg)++;
}

/* shmrig_pool_sweep() the segments of dead creators; what is left is stale. */
static unsigned sweep(void)
{
	struct shmrig_pool_opts po = { .size = sizeof(struct shmrig_pool_opts),
				       .prefix = run.o->prefix,
				       .flags = SHMRIG_POOL_QUIET };
	shmrig_pool *pool;
	unsigned left = 0;
	int ret = shmrig_pool_open(&po, &pool);

	if (ret) {
		failure("final sweep: pool_open: %s", shmrig_last_error());
		return 0;
	}
	if (shmrig_pool_sweep(pool) < 0)
		failure("final sweep: %s", shmrig_last_error());
	ret = shmrig_pool_close(pool);
	if (ret)
		failure("final sweep: pool_close: %s", shmrig_strerror(ret));
	if (shmrig_segment_list(run.o->prefix, count_segment, &left) < 0)
		failure("final sweep: segment_list: %s", shmrig_last_error());
	if (left)
		failure("%u segments with prefix %s remain after the run", left, run.o->prefix);
	return left;
}

/* ---- adding up ---- */

struct latency {
	uint64_t hist[WL_HIST_BUCKETS], max_ns, count;
};

struct flow_totals {
	uint64_t scheduled, unsent, sent, received, skipped, enomem, window_waits, window_wait_ns;
	uint64_t held_max, temporary;
	struct latency lat;
};

static struct {
	struct flow_totals flows[PLAN_MAX_FLOWS], all;
	uint64_t corrupted, lost, gaps, dups, leaked_blocks, leaked_fds, stale_segments;
	uint64_t samples_taken, samples_missed, sample_ns, own_cpu_ns, own_producer_ns;
	char enomem_words[256];
} tot;

static void add_latency(struct latency *to, const struct wl_proc *from)
{
	for (unsigned b = 0; b < WL_HIST_BUCKETS; b++) {
		to->hist[b] += from->hist[b];
		to->count += from->hist[b];
	}
	if (from->max_latency_ns > to->max_ns)
		to->max_ns = from->max_latency_ns;
}

static double percentile_us(const struct latency *l, double q)
{
	uint64_t seen = 0;

	for (unsigned b = 0; b < WL_HIST_BUCKETS && l->count; b++) {
		seen += l->hist[b];
		if ((double)seen >= q * (double)l->count) {
			double ns = wl_hist_mid_ns(b);

			return (ns < (double)l->max_ns ? ns : (double)l->max_ns) / 1e3;
		}
	}
	return 0;
}

static void add_up(void)
{
	for (unsigned i = 0; i < run.nprocs; i++) {
		const struct wproc *p = &procs[i];
		const struct wl_proc *w = &run.procs[i];
		struct flow_totals *ft = &tot.flows[p->flow];
		const char *role = p->producer ? "producer" : "consumer";
		const char *flow = run.wl->flows[p->flow].name;

		if (!tot.enomem_words[0] && w->side.enomem_words[0])
			snprintf(tot.enomem_words, sizeof(tot.enomem_words), "flow %s %s %u: %.*s",
				 flow, role, p->index, (int)sizeof(w->side.enomem_words),
				 w->side.enomem_words);
		tot.corrupted += w->side.corrupted;
		tot.own_cpu_ns += w->own_cpu_ns;
		if (p->producer)
			tot.own_producer_ns += w->own_cpu_ns + w->sample_ns;
		tot.leaked_fds += (uint64_t)(w->side.fds_leaked > 0 ? w->side.fds_leaked : 0);
		if (w->side.done && w->side.live_end > 0)
			tot.leaked_blocks += (uint64_t)w->side.live_end;
		if (p->producer) {
			ft->scheduled += w->scheduled;
			ft->unsent += w->unsent;
			ft->sent += w->side.messages;
			ft->skipped += w->side.skipped;
			ft->enomem += w->side.enomem;
			ft->window_waits += w->window_waits;
			ft->window_wait_ns += w->window_wait_ns;
			tot.samples_taken += w->samples;
			tot.samples_missed += w->samples_missed;
			tot.sample_ns += w->sample_ns;
		} else {
			ft->received += w->side.messages;
			ft->temporary += w->side.temporary;
			if (w->held_max > ft->held_max)
				ft->held_max = w->held_max;
			add_latency(&ft->lat, w);
			add_latency(&tot.all.lat, w);
		}
		if (p->killed)
			continue;
		if (!WIFEXITED(p->status) || WEXITSTATUS(p->status) != 0 || !w->side.done) {
			char how[64];

			if (WIFSIGNALED(p->status))
				snprintf(how, sizeof(how), "died of signal %d",
					 WTERMSIG(p->status));
			else
				snprintf(how, sizeof(how), "exited with %d",
					 WEXITSTATUS(p->status));
			failure("flow %s %s %u (pid %d) %s: %.*s", flow, role, p->index,
				(int)p->pid, how, (int)sizeof(w->side.error),
				w->side.error[0] ? w->side.error : "no words");
		}
	}
	for (unsigned l = 0; l < run.nlinks; l++) {
		const struct wl_link *k = &run.links[l];

		tot.gaps += k->gaps;
		tot.dups += k->dups;
		if (k->sent > k->received) {
			tot.lost += k->sent - k->received;
			failure("link %u: %llu messages sent, %llu received", l,
				(unsigned long long)k->sent, (unsigned long long)k->received);
		}
		if (k->gaps || k->dups)
			failure("link %u: %llu sequence gaps, %llu duplicates", l,
				(unsigned long long)k->gaps, (unsigned long long)k->dups);
	}
	for (unsigned f = 0; f < run.wl->nflows; f++) {
		const struct flow_totals *ft = &tot.flows[f];

		tot.all.scheduled += ft->scheduled;
		tot.all.unsent += ft->unsent;
		tot.all.sent += ft->sent;
		tot.all.received += ft->received;
		tot.all.skipped += ft->skipped;
		tot.all.enomem += ft->enomem;
		tot.all.window_waits += ft->window_waits;
		tot.all.window_wait_ns += ft->window_wait_ns;
	}
	if (tot.leaked_blocks)
		failure("%llu blocks live at the workers' end",
			(unsigned long long)tot.leaked_blocks);
	if (tot.leaked_fds)
		failure("%llu descriptors left open by the workers",
			(unsigned long long)tot.leaked_fds);
}

/* ---- occupancy ---- */

/* What a series follows: a class's live blocks (0 .. WL_LARGE), or these. */
enum {
	Q_BLOCKS = WL_CLASSES,
	Q_BYTES
};

static double quantity(const struct wl_sample *s, unsigned what)
{
	double v = 0;

	if (what < WL_CLASSES)
		return s->live[what];
	if (what == Q_BYTES)
		return (double)s->live_bytes;
	for (unsigned c = 0; c < WL_CLASSES; c++)
		v += s->live[c];
	return v;
}

/*
 * The sums on the grid over the producers selected (node < 0: all): each one's
 * sample at k, or when it missed k (busy sending), its last one before k; 0
 * before its first.
 */
static void grid_sums(int node, unsigned what, double *out)
{
	memset(out, 0, run.nsamples * sizeof(*out));
	for (unsigned i = 0; i < run.nprocs; i++) {
		const struct wl_sample *s = &run.samples[(size_t)i * run.nsamples];
		double last = 0;

		if (!procs[i].producer ||
		    (node >= 0 && run.wl->flows[procs[i].flow].producer_node != node))
			continue;
		for (unsigned k = 0; k < run.nsamples; k++) {
			if (s[k].taken)
				last = quantity(&s[k], what);
			out[k] += last;
		}
	}
}

struct occupancy {
	double mean, p99, p999, max;
};

static int compare_doubles(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

/* Over the samples from `from` on: mean, p99, p99.9 (nearest rank), max. */
static struct occupancy occupancy_of(double *v, unsigned from)
{
	unsigned n = run.nsamples - from;
	struct occupancy o = { 0 };
	double *sorted = v + from;

	if (!n)
		return o;
	for (unsigned k = 0; k < n; k++)
		o.mean += sorted[k];
	o.mean /= n;
	qsort(sorted, n, sizeof(*sorted), compare_doubles); /* v is a scratch copy */
	o.p99 = sorted[(unsigned)ceil(0.99 * n) - 1];
	o.p999 = sorted[(unsigned)ceil(0.999 * n) - 1];
	o.max = sorted[n - 1];
	return o;
}

static json_t *occupancy_json(const struct occupancy *o, bool p999)
{
	json_t *j = json_pack("{s:f,s:f,s:f}", "live_mean", o->mean, "live_p99", o->p99, "live_max",
			      o->max);

	if (p999)
		json_object_set_new(j, "live_p999", json_real(o->p999));
	return j;
}

/* The classes and large blocks of the producers on `node` (< 0: all). */
static json_t *classes_json(int node, unsigned warm, double *scratch, json_t **large)
{
	json_t *classes = json_array();

	for (unsigned c = 0; c < WL_CLASSES; c++) {
		struct occupancy o;
		json_t *j;

		grid_sums(node, c, scratch);
		o = occupancy_of(scratch, warm);
		j = occupancy_json(&o, true);
		if (c == WL_LARGE) {
			*large = j;
			break;
		}
		json_object_set_new(j, "class", json_integer(c));
		json_object_set_new(j, "block_size",
				    json_integer((json_int_t)SHMRIG_POOL_MIN_BLOCK << c));
		json_array_append_new(classes, j);
	}
	return classes;
}

/* ---- the report ---- */

static json_t *latency_json(const struct latency *l)
{
	return json_pack("{s:f,s:f,s:f,s:f,s:I}", "p50", percentile_us(l, 0.50), "p99",
			 percentile_us(l, 0.99), "p999", percentile_us(l, 0.999), "max",
			 (double)l->max_ns / 1e3, "count", (json_int_t)l->count);
}

static json_t *report_json(const char *path, unsigned warm, bool pass)
{
	double secs = (double)run.duration_ns / 1e9,
	       *scratch = calloc(run.nsamples, sizeof(double));
	double *blocks = calloc(run.nsamples, sizeof(double)),
	       *bytes = calloc(run.nsamples, sizeof(double));
	json_t *flows = json_array(), *nodes = json_array(), *occupancy = json_array(), *large;
	json_t *fails = json_array(), *report, *classes;
	unsigned stride;
	int seen_nodes[PLAN_MAX_FLOWS], nnodes = 0;

	if (!scratch || !blocks || !bytes)
		die("out of memory for the report");
	classes = classes_json(-1, warm, scratch, &large);
	for (unsigned f = 0; f < run.wl->nflows; f++) {
		const struct plan_flow *fl = &run.wl->flows[f];
		const struct flow_totals *ft = &tot.flows[f];
		bool seen = false;

		json_array_append_new(
			flows,
			json_pack("{s:s,s:f,s:f,s:o,s:I,s:I,s:I,s:I,s:I,s:I,s:f,s:I,s:i,s:i,s:s,s:s,s:f,"
				  "s:i}",
				  "name", fl->name, "offered_rate", (double)ft->scheduled / secs,
				  "achieved_rate", (double)ft->received / secs, "latency_us",
				  latency_json(&ft->lat), "scheduled", (json_int_t)ft->scheduled,
				  "sent", (json_int_t)ft->sent, "received",
				  (json_int_t)ft->received, "not_sent", (json_int_t)ft->unsent,
				  "values_given_up", (json_int_t)ft->skipped, "window_waits",
				  (json_int_t)ft->window_waits, "window_wait_ms",
				  (double)ft->window_wait_ns / 1e6, "held_max",
				  (json_int_t)ft->held_max, "producers", (int)fl->producers,
				  "consumers", (int)fl->consumers, "backend", fl->backend, "codec",
				  fl->codec, "rate", fl->rate * run.rate_scale, "producer_node",
				  fl->producer_node));
		for (int n = 0; n < nnodes; n++)
			seen |= seen_nodes[n] == fl->producer_node;
		if (!seen)
			seen_nodes[nnodes++] = fl->producer_node;
	}
	for (int n = 0; n < nnodes; n++) {
		json_t *node_large,
			*node_classes = classes_json(seen_nodes[n], warm, scratch, &node_large);

		json_array_append_new(nodes,
				      json_pack("{s:i,s:o,s:o}", "node", seen_nodes[n], "classes",
						node_classes, "large", node_large));
	}
	grid_sums(-1, Q_BLOCKS, blocks);
	grid_sums(-1, Q_BYTES, bytes);
	stride = (run.nsamples + MAX_OCCUPANCY_POINTS - 1) / MAX_OCCUPANCY_POINTS;
	for (unsigned k = 0; k < run.nsamples; k += stride)
		json_array_append_new(occupancy,
				      json_pack("[f,I,I]", (double)k * (double)run.sample_ns / 1e9,
						(json_int_t)blocks[k], (json_int_t)bytes[k]));
	for (unsigned i = 0; i < failures.n; i++)
		json_array_append_new(fails, json_string(failures.text[i]));
	report = json_pack(
		"{s:s,s:s,s:s,s:f,s:f,s:I,s:f,s:f,s:I,s:I,s:I,s:I,s:o,s:f,s:I,s:o,s:o,s:o,s:o}",
		"kind", "shmrig-stress-workload", "workload", run.wl->name, "file", path,
		"duration_s", secs, "rate_scale", run.rate_scale, "seed", (json_int_t)run.o->seed,
		"offered_rate", (double)tot.all.scheduled / secs, "achieved_rate",
		(double)tot.all.received / secs, "messages", (json_int_t)tot.all.received, "enomem",
		(json_int_t)tot.all.enomem, "checksum_failures", (json_int_t)tot.corrupted,
		"lost_blocks", (json_int_t)tot.leaked_blocks, "latency_us",
		latency_json(&tot.all.lat), "sample_interval_ms", (double)run.sample_ns / 1e6,
		"samples", (json_int_t)run.nsamples, "classes", classes, "large", large, "flows",
		flows, "occupancy", occupancy);
	if (!report)
		die("out of memory for the report");
	json_object_set_new(report, "warmup_s",
			    json_real((double)warm * (double)run.sample_ns / 1e9));
	json_object_set_new(report, "warmup_rule",
			    json_string(
				    "the first 10 % of the duration or 0.5 s, whichever is less, "
				    "but at least a block's longest life (flight + p99 hold) "
				    "up to 40 % of the duration; occupancy statistics are over "
				    "the samples after it"));
	json_object_set_new(report, "nodes", nodes);
	json_object_set_new(report, "scheduled", json_integer((json_int_t)tot.all.scheduled));
	json_object_set_new(report, "sent", json_integer((json_int_t)tot.all.sent));
	json_object_set_new(report, "not_sent", json_integer((json_int_t)tot.all.unsent));
	json_object_set_new(report, "values_given_up", json_integer((json_int_t)tot.all.skipped));
	json_object_set_new(report, "lost_messages", json_integer((json_int_t)tot.lost));
	json_object_set_new(report, "window_waits", json_integer((json_int_t)tot.all.window_waits));
	json_object_set_new(report, "stale_segments", json_integer((json_int_t)tot.stale_segments));
	json_object_set_new(report, "leaked_fds", json_integer((json_int_t)tot.leaked_fds));
	json_object_set_new(report, "samples_taken", json_integer((json_int_t)tot.samples_taken));
	json_object_set_new(report, "samples_missed", json_integer((json_int_t)tot.samples_missed));
	json_object_set_new(report, "sample_cost_us",
			    json_real(tot.samples_taken ? (double)tot.sample_ns /
								  (double)tot.samples_taken / 1e3 :
							  0));
	/* the replay's own work a message (payloads, checksums, samples), which a
	 * workload's own processes would not do: shmrig-plan --verify adds it to
	 * the plan's CPU before it judges the saturation */
	json_object_set_new(report, "replay_own_us_per_message",
			    json_real(tot.all.received ? (double)(tot.own_cpu_ns + tot.sample_ns) /
								 (double)tot.all.received / 1e3 :
							 0));
	/* ... of which in the producers (payloads, a checksum, samples) */
	json_object_set_new(report, "replay_own_producer_us_per_message",
			    json_real(tot.all.received ? (double)tot.own_producer_ns /
								 (double)tot.all.received / 1e3 :
							 0));
	json_object_set_new(report, "processes", json_integer(run.nprocs));
	json_object_set_new(report, "prefix", json_string(run.o->prefix));
	if (tot.enomem_words[0])
		json_object_set_new(report, "first_enomem", json_string(tot.enomem_words));
	json_object_set_new(report, "failures", fails);
	json_object_set_new(report, "pass", json_boolean(pass));
	free(scratch);
	free(blocks);
	free(bytes);
	return report;
}

static double get_real(json_t *obj, const char *key)
{
	return json_number_value(json_object_get(obj, key));
}

static void print_latency(const char *what, json_t *lat)
{
	printf("  %-16s p50 %9.1f  p99 %9.1f  p99.9 %9.1f  max %9.1f us\n", what,
	       get_real(lat, "p50"), get_real(lat, "p99"), get_real(lat, "p999"),
	       get_real(lat, "max"));
}

static void print_table(json_t *r)
{
	json_t *v;
	size_t i;

	printf("\nshmrig-stress --workload %s  %s\n",
	       json_string_value(json_object_get(r, "workload")),
	       json_is_true(json_object_get(r, "pass")) ? "PASS" : "FAIL");
	printf("  %.1f s, rate scale %g, seed %lld, %lld processes\n", get_real(r, "duration_s"),
	       get_real(r, "rate_scale"), (long long)json_integer_value(json_object_get(r, "seed")),
	       (long long)json_integer_value(json_object_get(r, "processes")));
	printf("  %-16s %12s %12s %10s %10s %12s\n", "flow", "offered/s", "achieved/s", "not sent",
	       "win waits", "win wait ms");
	json_array_foreach(json_object_get(r, "flows"), i, v)
		printf("  %-16s %12.0f %12.0f %10lld %10lld %12.1f\n",
		       json_string_value(json_object_get(v, "name")), get_real(v, "offered_rate"),
		       get_real(v, "achieved_rate"),
		       (long long)json_integer_value(json_object_get(v, "not_sent")),
		       (long long)json_integer_value(json_object_get(v, "window_waits")),
		       get_real(v, "window_wait_ms"));
	printf("  %-16s %12.0f %12.0f\n", "all", get_real(r, "offered_rate"),
	       get_real(r, "achieved_rate"));
	printf("  latency (receipt - due), us:\n");
	json_array_foreach(json_object_get(r, "flows"), i, v)
		print_latency(json_string_value(json_object_get(v, "name")),
			      json_object_get(v, "latency_us"));
	print_latency("all", json_object_get(r, "latency_us"));
	printf("  live blocks, producers summed, %g ms samples after %.2f s of warm-up (%lld "
	       "samples missed):\n",
	       get_real(r, "sample_interval_ms"), get_real(r, "warmup_s"),
	       (long long)json_integer_value(json_object_get(r, "samples_missed")));
	printf("  %-8s %10s %10s %10s %10s %10s\n", "class", "block", "mean", "p99", "p99.9",
	       "max");
	json_array_foreach(json_object_get(r, "classes"), i, v) if (get_real(v, "live_max") > 0)
		printf("  %-8lld %10lld %10.1f %10.0f %10.0f %10.0f\n",
		       (long long)json_integer_value(json_object_get(v, "class")),
		       (long long)json_integer_value(json_object_get(v, "block_size")),
		       get_real(v, "live_mean"), get_real(v, "live_p99"), get_real(v, "live_p999"),
		       get_real(v, "live_max"));
	v = json_object_get(r, "large");
	printf("  %-8s %10s %10.1f %10.0f %10.0f %10.0f\n", "large", "> 1M",
	       get_real(v, "live_mean"), get_real(v, "live_p99"), get_real(v, "live_p999"),
	       get_real(v, "live_max"));
	printf("  messages %lld, enomem %lld, checksum failures %lld, lost messages %lld, "
	       "lost blocks %lld\n",
	       (long long)json_integer_value(json_object_get(r, "messages")),
	       (long long)json_integer_value(json_object_get(r, "enomem")),
	       (long long)json_integer_value(json_object_get(r, "checksum_failures")),
	       (long long)json_integer_value(json_object_get(r, "lost_messages")),
	       (long long)json_integer_value(json_object_get(r, "lost_blocks")));
	if (json_object_get(r, "first_enomem"))
		printf("  first ENOMEM: %s\n",
		       json_string_value(json_object_get(r, "first_enomem")));
	json_array_foreach(json_object_get(r, "failures"), i, v)
		printf("  FAILURE: %s\n", json_string_value(v));
}

int workload_main(struct stress_opts *o, const char *path, double rate_scale, double sample_ms)
{
	static struct plan_workload wl;
	struct fd_set_bits fds;
	char err[512];
	unsigned warm;
	json_t *report;
	bool pass;
	int ret = plan_workload_load(path, &wl, err, sizeof(err));
	int fds_left;

	if (ret)
		die("--workload: %s", err); /* err names the file and the field */
	run = (struct wl_run){ .o = o,
			       .wl = &wl,
			       .rate_scale = rate_scale,
			       .duration_ns = (uint64_t)(o->duration_s * 1e9),
			       .sample_ns = (uint64_t)(sample_ms * 1e6) };
	run.nsamples = (unsigned)(run.duration_ns / run.sample_ns);
	if (run.nsamples == 0)
		die("--sample-ms %g: longer than the --duration %g s", sample_ms, o->duration_s);
	/* the warm-up: 10 % of the duration or 0.5 s, whichever is less; but at
	 * least a block's longest life (flight + p99 hold), the time occupancy
	 * takes to climb to its steady state, up to 40 % of the duration */
	{
		double warm_s = fmin(WARMUP_FRACTION * o->duration_s, WARMUP_MAX_S);

		for (unsigned i = 0; i < wl.nflows; i++)
			warm_s = fmax(warm_s,
				      (wl.flows[i].flight_ms + wl.flows[i].hold_p99_ms) / 1e3);
		warm_s = fmin(warm_s, WARMUP_LONGEST_FRACTION * o->duration_s);
		warm = (unsigned)(warm_s * 1e9 / (double)run.sample_ns);
	}
	layout(&wl);
	fds_snapshot(&fds);
	if (o->progress)
		fprintf(stderr,
			"shmrig-stress: workload %s, %u flows, %u processes, %u links, "
			"prefix %s, %.1f s\n",
			wl.name, wl.nflows, run.nprocs, run.nlinks, o->prefix, o->duration_s);
	start_all();
	run_all();
	add_up();
	tot.stale_segments = sweep();
	fds_left = fds_new_since(&fds);
	if (fds_left > 0) {
		tot.leaked_fds += (uint64_t)fds_left;
		failure("the driver has %d descriptors open that it did not have at the start",
			fds_left);
	}
	if (tot.all.received == 0)
		failure("no message went through%s%s",
			tot.enomem_words[0] ? ": the first ENOMEM: " : "", tot.enomem_words);
	pass = failures.n == 0 && !tot.corrupted && !tot.lost && !tot.leaked_blocks &&
	       !tot.stale_segments && !tot.leaked_fds && !tot.gaps && !tot.dups;
	report = report_json(path, warm, pass);
	print_table(report);
	if (o->json_path && json_dump_file(report, o->json_path, JSON_INDENT(1)))
		die("cannot write %s", o->json_path);
	json_decref(report);
	free(procs);
	free(run.pairs);
	return pass ? 0 : 1;
}
