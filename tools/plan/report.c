/* SPDX-License-Identifier: MIT */
/* shmrig-plan's table, JSON and report: see report.h. */
#include "report.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#ifndef SHMRIG_PLAN_VERSION
#define SHMRIG_PLAN_VERSION "unknown"
#endif

#define NCLASS SHMRIG_POOL_NUM_CLASSES
#define NSLOT (NCLASS + 1)

static const char *human(uint64_t bytes, char *buf, size_t len)
{
	if (bytes >= ((uint64_t)1 << 30) && bytes % ((uint64_t)1 << 20) == 0)
		snprintf(buf, len, "%.2f GiB", (double)bytes / (1 << 30));
	else if (bytes >= ((uint64_t)1 << 20))
		snprintf(buf, len, "%.1f MiB", (double)bytes / (1 << 20));
	else if (bytes >= 1024)
		snprintf(buf, len, "%.1f KiB", (double)bytes / 1024);
	else
		snprintf(buf, len, "%" PRIu64 " B", bytes);
	return buf;
}

static const char *class_label(unsigned c, char *buf, size_t len)
{
	uint64_t size;

	if (c >= NCLASS) {
		snprintf(buf, len, "large");
		return buf;
	}
	size = plan_class_size(c);
	if (size >= (1u << 20))
		snprintf(buf, len, "%" PRIu64 "M", size >> 20);
	else if (size >= 1024)
		snprintf(buf, len, "%" PRIu64 "K", size >> 10);
	else
		snprintf(buf, len, "%" PRIu64, size);
	return buf;
}

void plan_file_name(const char *name, char *out, size_t len)
{
	size_t i;

	for (i = 0; name[i] && i + 1 < len; i++) {
		char c = name[i];

		out[i] = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
					 (c >= '0' && c <= '9') || c == '-' || c == '_' ||
					 (c == '.' && i > 0) ?
				 c :
				 '_';
	}
	out[i] = '\0';
}

static const char *si(double x, const char *unit, char *buf, size_t len)
{
	if (x >= 1e9)
		snprintf(buf, len, "%.3g G%s", x / 1e9, unit);
	else if (x >= 1e6)
		snprintf(buf, len, "%.3g M%s", x / 1e6, unit);
	else if (x >= 1e3)
		snprintf(buf, len, "%.3g k%s", x / 1e3, unit);
	else
		snprintf(buf, len, "%.3g %s", x, unit);
	return buf;
}

/* ---- the table ---- */

static void print_sim_header(FILE *out, const struct plan_sim_result *sim)
{
	fprintf(out,
		"simulated %.4g s after a warm-up of %.3g s (seed %" PRIu64 ", %" PRIu64
		" events, %u samples %.3g ms apart)%s\n",
		sim->simulated_s, sim->warmup_s, sim->seed, sim->events, sim->samples,
		sim->sample_interval_s * 1000,
		sim->event_capped ? "; cut short by the event cap (--sim-events)" : "");
	if (sim->short_warmup)
		fprintf(out,
			"WARNING: the warm-up (%.3g s) is shorter than the longest block lives "
			"(%.3g s): the tail is not at steady state; raise --sim-events\n",
			sim->warmup_s, sim->longest_life_s);
}

static void print_flow(FILE *out, const struct plan_run *run, unsigned i)
{
	const struct plan_flow *f = &run->wl->flows[i];
	const struct plan_flow_need *n = &run->mean->flows[i], *t = &run->tail->flows[i];
	const struct plan_sim_flow *sf = &run->sim->flows[i];
	char b1[32], b2[32];

	fprintf(out,
		"\nflow '%s': %u producer%s (node %d) -> %u consumer%s (node %d), %g msg/s %s, "
		"%s over %s, window %u\n",
		f->name, f->producers, f->producers == 1 ? "" : "s", f->producer_node, f->consumers,
		f->consumers == 1 ? "" : "s", f->consumer_node, f->rate,
		f->arrival == PLAN_ARRIVAL_POISSON ? "poisson" : "constant", f->codec, f->backend,
		f->window);
	fprintf(out,
		"  in flight %.3g messages%s, hold %g ms mean: a block lives %.4g ms, "
		"%.4g messages live (Little)\n",
		n->in_flight, n->window_bound ? " (capped by the window)" : "", f->hold_mean_ms,
		n->live_per_message * 1000, n->live_per_message * f->rate);
	fprintf(out, "  simulated: %.4g msgs/s allocated, %.3g us mean wait for the window",
		sf->achieved_rate, sf->window_wait_mean_s * 1e6);
	if (sf->producers_simulated < f->producers)
		fprintf(out, "; %u of %u producers simulated, totals rescaled",
			sf->producers_simulated, f->producers);
	fprintf(out, "%s\n",
		sf->window_saturated ? "\n  WINDOW SATURATED: rate / producers > window / flight: "
				       "the producers' queues grow without bound" :
				       "");
	fprintf(out, "  %-6s %7s %9s %9s %8s %8s %8s %10s %9s %7s %10s %7s\n", "class", "P",
		"mean(L)", "sim mean", "p99", "p99.9", "max", "1 prod.", "per chunk", "chunks",
		"bytes", "@mean");
	fprintf(out, "  %-6s %7s %9s %9s %8s %8s %8s %10s %9s %7s %10s %7s\n", "", "", "", "", "",
		"", "", "p99.9", "", "(p99.9)", "(p99.9)", "chunks");
	for (unsigned c = 0; c < NCLASS; c++) {
		const struct plan_stat *st = &sf->blocks[c];

		if (n->classes[c].probability <= 0 && st->max == 0)
			continue;
		fprintf(out,
			"  %-6s %7.4f %9.4g %9.4g %8.4g %8.4g %8.4g %10.4g %9" PRIu64 " %7" PRIu64
			" %10s %7" PRIu64 "\n",
			class_label(c, b1, sizeof(b1)), n->classes[c].probability,
			n->classes[c].blocks, st->mean, st->p99, st->p999, st->max,
			sf->blocks_per_producer[c].p999, plan_blocks_per_chunk(c),
			t->classes[c].chunks, human(t->classes[c].bytes, b2, sizeof(b2)),
			n->classes[c].chunks);
	}
	if (n->large_probability > 0)
		fprintf(out,
			"  %-6s %7.4f %9.4g %9.4g %8.4g %8.4g %8.4g %10.4g %9s %7s %10s  "
			"(segments of %s on average, and %u kept for reuse a producer)\n",
			"large", n->large_probability, n->large_blocks, sf->blocks[NCLASS].mean,
			sf->blocks[NCLASS].p99, sf->blocks[NCLASS].p999, sf->blocks[NCLASS].max,
			sf->blocks_per_producer[NCLASS].p999, "-", "-",
			human(t->large_bytes, b1, sizeof(b1)),
			human((uint64_t)n->large_segment_bytes, b2, sizeof(b2)), PLAN_LARGE_CACHE);
	if (t->arena_size)
		fprintf(out,
			"  each producer (p99.9): %" PRIu64 " chunk%s in %" PRIu64
			" arena%s: SHMRIG_ARENA_SIZE=%" PRIu64 "M SHMRIG_POOL_MAX=%" PRIu64
			"M   (at the mean: %" PRIu64 " chunks, SHMRIG_POOL_MAX=%" PRIu64 "M)\n",
			t->chunks_per_producer, t->chunks_per_producer == 1 ? "" : "s",
			t->arenas_per_producer, t->arenas_per_producer == 1 ? "" : "s",
			t->arena_size >> 20, t->pool_max >> 20, n->chunks_per_producer,
			n->pool_max >> 20);
	else
		fprintf(out,
			"  each producer: large blocks only: SHMRIG_POOL_MAX=%" PRIu64
			"M   (at the mean: %" PRIu64 "M)\n",
			t->pool_max >> 20, n->pool_max >> 20);
	fprintf(out, "  the flow's producers: %s (at the mean: %s); live bytes p99.9 %s\n",
		human(t->pool_bytes, b1, sizeof(b1)), human(n->pool_bytes, b2, sizeof(b2)),
		human((uint64_t)sf->bytes.p999, (char[32]){ 0 }, 32));
}

static void print_settings(FILE *out, const struct plan_run *run)
{
	const struct plan_result *r = run->tail, *m = run->mean;
	char b[32], b2[32];

	fprintf(out, "\nper node (blocks live on their producer's node; sized at p99.9)\n");
	fprintf(out, "  %-6s %14s %10s %14s %14s %14s\n", "node", "pool bytes", "hugepages",
		"at the mean", "live p99", "live p99.9");
	for (unsigned k = 0; k < r->nnodes; k++) {
		const struct plan_sim_node *sn = NULL;

		for (unsigned j = 0; j < run->sim->nnodes; j++)
			if (run->sim->nodes[j].node == r->nodes[k].node)
				sn = &run->sim->nodes[j];
		fprintf(out, "  %-6d %14s %10" PRIu64 " %14s %14s %14s\n", r->nodes[k].node,
			human(r->nodes[k].pool_bytes, b, sizeof(b)), r->nodes[k].hugepages,
			human(m->nodes[k].pool_bytes, b2, sizeof(b2)),
			sn ? human((uint64_t)sn->bytes.p99, (char[32]){ 0 }, 32) : "-",
			sn ? human((uint64_t)sn->bytes.p999, (char[32]){ 0 }, 32) : "-");
	}
	fprintf(out, "\nsettings (p99.9; the mean would need %" PRIu64 " hugepages)\n",
		m->hugepages);
	fprintf(out, "  sysctl vm.nr_hugepages=%" PRIu64 "\n", r->hugepages);
	for (unsigned k = 0; k < r->nnodes; k++)
		fprintf(out,
			"  echo %" PRIu64
			" > /sys/devices/system/node/node%d/hugepages/hugepages-2048kB/nr_hugepages\n",
			r->nodes[k].hugepages, r->nodes[k].node);
	fprintf(out, "  boot line: hugepagesz=2M hugepages=%" PRIu64, r->hugepages);
	if (r->nnodes > 1 || (r->nnodes == 1 && r->nodes[0].node != 0)) {
		fprintf(out, "   (per node: hugepagesz=2M hugepages=");
		for (unsigned k = 0; k < r->nnodes; k++)
			fprintf(out, "%s%d:%" PRIu64, k ? "," : "", r->nodes[k].node,
				r->nodes[k].hugepages);
		fprintf(out, ")");
	}
	fprintf(out,
		"\n  mount -o remount,size=%" PRIu64
		"M /dev/shm   (at least %s: segments fall back "
		"to /dev/shm without free hugepages; channels' own segments not counted)\n",
		(r->dev_shm_bytes + ((1u << 20) - 1)) >> 20, human(r->dev_shm_bytes, b, sizeof(b)));
	for (unsigned i = 0; i < r->nflows; i++) {
		fprintf(out, "  flow '%s', each producer: ", run->wl->flows[i].name);
		if (r->flows[i].arena_size)
			fprintf(out, "SHMRIG_ARENA_SIZE=%" PRIu64 "M ",
				r->flows[i].arena_size >> 20);
		fprintf(out, "SHMRIG_POOL_MAX=%" PRIu64 "M\n", r->flows[i].pool_max >> 20);
	}
}

static void print_cpu(FILE *out, const struct plan_run *run)
{
	char b1[32], b2[32];

	if (!run->cpu) {
		fprintf(out, "\nCPU: no results file (--results)\n");
		return;
	}
	fprintf(out, "\nCPU and bandwidth (results %s: %s, %s, rev %s)\n", run->results_path,
		run->results->cpu_model[0] ? run->results->cpu_model : "cpu unknown",
		run->results->date[0] ? run->results->date : "date unknown",
		run->results->git_rev[0] ? run->results->git_rev : "?");
	fprintf(out, "  %-12s %9s %9s %9s %9s | %-20s %12s %8s\n", "flow", "encode", "decode",
		"transport", "memory", "saturates first", "at msgs/s", "headroom");
	fprintf(out, "  %-12s %9s %9s %9s %9s |\n", "", "cores", "cores", "cores", "B/s");
	for (unsigned i = 0; i < run->cpu->nflows; i++) {
		const struct plan_cpu_flow *c = &run->cpu->flows[i];

		fprintf(out, "  %-12.12s %9.3g %9.3g %9.3g %9s | %-20s %12.4g %7.3gx\n",
			run->wl->flows[i].name, c->encode_cores, c->decode_cores,
			c->transport_cores, si(c->memory_bytes_per_s, "", b1, sizeof(b1)),
			plan_resource_name(c->first), c->saturation_rate, c->headroom);
	}
	for (unsigned i = 0; i < run->cpu->nflows; i++) {
		const struct plan_cpu_flow *c = &run->cpu->flows[i];

		fprintf(out,
			"  '%s' loads at the planned rate: producer core %.3g, consumer core %.3g, "
			"channel %.3g, window %.3g, memory %.3g, the machine's CPUs %.3g (1 = "
			"saturated); per message: encode %.3g us, decode %.3g us, transport %.3g us "
			"a side (%s)\n",
			run->wl->flows[i].name, c->load[PLAN_RES_PRODUCER_CORE],
			c->load[PLAN_RES_CONSUMER_CORE], c->load[PLAN_RES_CHANNEL],
			c->load[PLAN_RES_WINDOW], c->load[PLAN_RES_MEMORY_BANDWIDTH],
			c->load[PLAN_RES_MACHINE], c->encode_s * 1e6, c->decode_s * 1e6,
			c->transport_s * 1e6,
			c->paced ? "a paced stream's, channel/<backend>/paced" :
				   "a busy channel's, batch64: no paced row in the results");
	}
	fprintf(out,
		"  memory: %s/s needed of %s/s measured (memcpy of %s); CPUs: %.3g cores of the "
		"machine's %u needed; all rates scaled together, flow '%s' saturates first: %s "
		"at x%.3g the planned rates\n",
		si(run->cpu->memory_bytes_per_s, "B", b1, sizeof(b1)),
		si(run->cpu->memory_bandwidth, "B", b2, sizeof(b2)),
		human((uint64_t)run->results->memcpy_size, (char[32]){ 0 }, 32),
		run->cpu->machine_cores, run->cpu->num_cpus,
		run->wl->flows[run->cpu->first_flow].name,
		plan_resource_name(run->cpu->flows[run->cpu->first_flow].first),
		run->cpu->headroom);
}

static void print_pool_limit(FILE *out, const struct plan_run *run)
{
	char b[32], b2[32];

	if (!run->pool_limit)
		return;
	fprintf(out,
		"\npool limit %s a producer (SHMRIG_POOL_MAX; class chunks counted as their live "
		"blocks need them, with empty chunks returned)\n",
		human(run->pool_limit, b, sizeof(b)));
	for (unsigned i = 0; i < run->sim->nflows; i++) {
		const struct plan_sim_flow *sf = &run->sim->flows[i];

		if (sf->exhausted)
			fprintf(out,
				"  flow '%s': class %s runs out first, at %.4g s into the run "
				"(producer %u needed %s)\n",
				run->wl->flows[i].name,
				class_label(sf->exhaust_class, b, sizeof(b)), sf->exhaust_time_s,
				sf->exhaust_producer, human(sf->exhaust_need, b2, sizeof(b2)));
		else
			fprintf(out, "  flow '%s': none within the simulated time (%.4g s)\n",
				run->wl->flows[i].name, run->sim->warmup_s + run->sim->simulated_s);
	}
}

static void print_verify(FILE *out, const struct plan_run *run)
{
	const struct plan_verify *v = run->verify;

	if (!run->verify_status)
		return;
	fprintf(out, "\nverification: %s\n", run->verify_status);
	if (!v)
		return;
	fprintf(out, "  %-24s %12s %12s %9s  %s\n", "", "predicted", "measured", "diff", "judged");
	for (unsigned i = 0; i < v->nrows; i++) {
		const struct plan_verify_row *row = &v->rows[i];
		double diff = row->predicted > 0 ?
				      100 * (row->measured - row->predicted) / row->predicted :
				      0;

		fprintf(out, "  %-24s %12.5g %12.5g %8.1f%%  %s\n", row->what, row->predicted,
			row->measured, diff,
			!row->judged ? "no: under 10 blocks predicted" :
			row->agrees  ? "agrees (within 20 %)" :
				       "DISAGREES (over 20 %)");
	}
	fprintf(out, "  steps (%g s each):\n", v->seconds_per_step);
	for (unsigned i = 0; i < v->nsteps; i++)
		fprintf(out,
			"    rate x%-4g offered %10.5g achieved %10.5g msgs/s, p99 latency %9.4g us, "
			"ENOMEM %" PRIu64 "\n",
			v->steps[i].rate_scale, v->steps[i].offered_rate, v->steps[i].achieved_rate,
			v->steps[i].latency_p99_us, v->steps[i].enomem);
	if (v->saturated)
		fprintf(out, "  saturation: between %.5g msgs/s achieved and %.5g offered (%s)\n",
			v->last_good_achieved, v->saturation_offered, v->saturation_reason);
	else
		fprintf(out, "  saturation: not reached in %u steps (above %.5g msgs/s)\n",
			v->nsteps, v->last_good_achieved);
	if (run->cpu)
		fprintf(out, "  predicted saturation (--results): x%.3g the planned rates\n",
			run->cpu->headroom);
}

void plan_print_table(FILE *out, const struct plan_run *run)
{
	fprintf(out, "shmrig-plan %s: workload '%s', %u flow%s\n", SHMRIG_PLAN_VERSION,
		run->wl->name, run->wl->nflows, run->wl->nflows == 1 ? "" : "s");
	fprintf(out,
		"pools sized at the p99.9 of the simulated live blocks of one producer's pool; "
		"mean(L) is Little's law\n");
	print_sim_header(out, run->sim);
	for (unsigned i = 0; i < run->nwhat_ifs; i++)
		fprintf(out, "what-if: %s\n", run->what_ifs[i]);
	for (unsigned i = 0; i < run->wl->nflows; i++)
		print_flow(out, run, i);
	print_settings(out, run);
	print_cpu(out, run);
	print_pool_limit(out, run);
	print_verify(out, run);
}

void plan_print_brief(FILE *out, const struct plan_run *run)
{
	const struct plan_result *t = run->tail;
	char b1[32], b2[32];

	fprintf(out,
		"plan for workload '%s' (shmrig-plan --brief; sized at the p99.9 of a %.3g s simulation)\n",
		run->wl->name, run->sim->simulated_s);
	fprintf(out, "  %-12s %10s %12s %12s %10s %14s\n", "flow", "msgs/s", "live blocks",
		"sum p99.9", "pool max", "live bytes p99.9");
	for (unsigned i = 0; i < run->wl->nflows; i++) {
		const struct plan_sim_flow *sf = &run->sim->flows[i];
		double mean = 0, p999 = 0;

		for (unsigned c = 0; c <= NCLASS; c++) {
			mean += sf->blocks[c].mean;
			p999 += sf->blocks[c].p999;
		}
		fprintf(out, "  %-12.12s %10.4g %12.4g %12.4g %9" PRIu64 "M %14s\n",
			run->wl->flows[i].name, run->wl->flows[i].rate, mean, p999,
			t->flows[i].pool_max >> 20,
			human((uint64_t)sf->bytes.p999, b1, sizeof(b1)));
	}
	fprintf(out,
		"  set: sysctl vm.nr_hugepages=%" PRIu64 "  (boot: hugepagesz=2M hugepages=%" PRIu64
		"); /dev/shm at least %s; pools %s in all\n",
		t->hugepages, t->hugepages, human(t->dev_shm_bytes, b1, sizeof(b1)),
		human(t->pool_bytes, b2, sizeof(b2)));
	if (run->cpu)
		fprintf(out,
			"  CPU: flow '%s' saturates first, on %s, at x%.3g the planned rates\n",
			run->wl->flows[run->cpu->first_flow].name,
			plan_resource_name(run->cpu->flows[run->cpu->first_flow].first),
			run->cpu->headroom);
	else
		fprintf(out, "  CPU: no results file (--results)\n");
	fprintf(out, "  the whole plan: shmrig-plan %s%s%s\n", run->workload_path,
		run->results_path ? " --results " : "", run->results_path ? run->results_path : "");
}

/* ---- JSON ---- */

static json_t *stat_json(const struct plan_stat *s)
{
	return json_pack("{s:f,s:f,s:f,s:f}", "mean", s->mean, "p99", s->p99, "p999", s->p999,
			 "max", s->max);
}

static json_t *settings_json(const struct plan_result *r)
{
	json_t *nodes = json_array();
	char sysctl[64], boot[64], shm[96];

	for (unsigned k = 0; k < r->nnodes; k++) {
		char path[128];

		snprintf(path, sizeof(path),
			 "/sys/devices/system/node/node%d/hugepages/hugepages-2048kB/nr_hugepages",
			 r->nodes[k].node);
		json_array_append_new(nodes,
				      json_pack("{s:i,s:I,s:s}", "node", r->nodes[k].node,
						"hugepages", (json_int_t)r->nodes[k].hugepages,
						"sysfs", path));
	}
	snprintf(sysctl, sizeof(sysctl), "vm.nr_hugepages=%" PRIu64, r->hugepages);
	snprintf(boot, sizeof(boot), "hugepagesz=2M hugepages=%" PRIu64, r->hugepages);
	snprintf(shm, sizeof(shm), "mount -o remount,size=%" PRIu64 "M /dev/shm",
		 (r->dev_shm_bytes + ((1u << 20) - 1)) >> 20);
	return json_pack("{s:s,s:s,s:s,s:o}", "sysctl", sysctl, "boot", boot, "dev_shm", shm,
			 "hugepages_per_node", nodes);
}

static json_t *flow_json(const struct plan_run *run, unsigned i)
{
	const struct plan_flow *f = &run->wl->flows[i];
	const struct plan_flow_need *n = &run->mean->flows[i], *t = &run->tail->flows[i];
	const struct plan_sim_flow *sf = &run->sim->flows[i];
	json_t *classes = json_array(), *obj;

	for (unsigned c = 0; c < NCLASS; c++) {
		if (n->classes[c].probability <= 0 && sf->blocks[c].max == 0)
			continue;
		json_array_append_new(classes,
				      json_pack("{s:i,s:I,s:f,s:f,s:o,s:o,s:I,s:I,s:I,s:I,s:I}",
						"class", (int)c, "block_size",
						(json_int_t)plan_class_size(c), "probability",
						n->classes[c].probability, "mean_blocks",
						n->classes[c].blocks, "sim_blocks",
						stat_json(&sf->blocks[c]),
						"sim_blocks_per_producer",
						stat_json(&sf->blocks_per_producer[c]),
						"blocks_per_chunk",
						(json_int_t)plan_blocks_per_chunk(c), "chunks",
						(json_int_t)t->classes[c].chunks, "bytes",
						(json_int_t)t->classes[c].bytes, "chunks_at_mean",
						(json_int_t)n->classes[c].chunks, "bytes_at_mean",
						(json_int_t)n->classes[c].bytes));
	}
	obj = json_pack("{s:s,s:i,s:i,s:i,s:i,s:f,s:s,s:s,s:s,s:i,s:f,s:f,s:f,s:b,s:f,s:o,"
			"s:{s:f,s:f,s:o,s:o,s:f,s:I,s:I},"
			"s:{s:I,s:I,s:I,s:I,s:I},s:{s:I,s:I,s:I,s:I,s:I},s:I,s:I}",
			"name", f->name, "producers", (int)f->producers, "consumers",
			(int)f->consumers, "producer_node", f->producer_node, "consumer_node",
			f->consumer_node, "rate", f->rate, "arrival",
			f->arrival == PLAN_ARRIVAL_POISSON ? "poisson" : "constant", "codec",
			f->codec, "backend", f->backend, "window", (int)f->window, "flight_ms",
			f->flight_ms, "hold_mean_ms", f->hold_mean_ms, "in_flight", n->in_flight,
			"window_bound", n->window_bound, "live_per_message_s", n->live_per_message,
			"classes", classes, "large", "probability", n->large_probability,
			"mean_blocks", n->large_blocks, "sim_blocks",
			stat_json(&sf->blocks[NCLASS]), "sim_blocks_per_producer",
			stat_json(&sf->blocks_per_producer[NCLASS]), "mean_segment_bytes",
			n->large_segment_bytes, "bytes", (json_int_t)t->large_bytes,
			"bytes_at_mean", (json_int_t)n->large_bytes, "per_producer", "chunks",
			(json_int_t)t->chunks_per_producer, "arenas",
			(json_int_t)t->arenas_per_producer, "arena_size", (json_int_t)t->arena_size,
			"pool_max", (json_int_t)t->pool_max, "chunks_at_mean",
			(json_int_t)n->chunks_per_producer, "per_producer_at_mean", "chunks",
			(json_int_t)n->chunks_per_producer, "arenas",
			(json_int_t)n->arenas_per_producer, "arena_size", (json_int_t)n->arena_size,
			"pool_max", (json_int_t)n->pool_max, "pool_max_at_mean",
			(json_int_t)n->pool_max, "pool_bytes", (json_int_t)t->pool_bytes,
			"pool_bytes_at_mean", (json_int_t)n->pool_bytes);
	json_object_set_new(obj, "sim",
			    json_pack("{s:i,s:I,s:f,s:f,s:f,s:b,s:o}", "producers_simulated",
				      (int)sf->producers_simulated, "messages",
				      (json_int_t)sf->messages, "offered_rate", sf->offered_rate,
				      "achieved_rate", sf->achieved_rate, "window_wait_mean_s",
				      sf->window_wait_mean_s, "window_saturated",
				      sf->window_saturated, "live_bytes", stat_json(&sf->bytes)));
	if (run->pool_limit)
		json_object_set_new(obj, "pool_limit",
				    sf->exhausted ?
					    json_pack("{s:b,s:i,s:I,s:f,s:i,s:I}", "exhausted", 1,
						      "class", (int)sf->exhaust_class, "block_size",
						      (json_int_t)(sf->exhaust_class < NCLASS ?
									   plan_class_size(
										   sf->exhaust_class) :
									   0),
						      "time_s", sf->exhaust_time_s, "producer",
						      (int)sf->exhaust_producer, "bytes_needed",
						      (json_int_t)sf->exhaust_need) :
					    json_pack("{s:b}", "exhausted", 0));
	if (run->cpu) {
		const struct plan_cpu_flow *c = &run->cpu->flows[i];
		json_t *loads = json_object();

		for (unsigned res = 0; res < PLAN_RES_COUNT; res++)
			json_object_set_new(loads, plan_resource_name((enum plan_resource)res),
					    json_real(c->load[res]));
		json_object_set_new(obj, "cpu",
				    json_pack("{s:f,s:f,s:f,s:f,s:f,s:f,s:f,s:f,s:o,s:s,s:f,s:f}",
					      "encode_s_per_message", c->encode_s,
					      "decode_s_per_message", c->decode_s,
					      "transport_s_per_message", c->transport_s,
					      "encode_cores", c->encode_cores, "decode_cores",
					      c->decode_cores, "transport_cores",
					      c->transport_cores, "mean_value_bytes", c->mean_bytes,
					      "memory_bytes_per_s", c->memory_bytes_per_s, "loads",
					      loads, "saturates_first",
					      plan_resource_name(c->first), "saturation_rate",
					      c->saturation_rate, "headroom", c->headroom));
	}
	return obj;
}

static json_t *verify_json(const struct plan_run *run)
{
	const struct plan_verify *v = run->verify;
	json_t *rows, *steps, *obj;

	if (!v)
		return json_pack("{s:s,s:s}", "status", "cannot judge", "why", run->verify_status);
	rows = json_array();
	steps = json_array();
	for (unsigned i = 0; i < v->nrows; i++)
		json_array_append_new(rows,
				      json_pack("{s:s,s:f,s:f,s:b,s:b}", "what", v->rows[i].what,
						"predicted", v->rows[i].predicted, "measured",
						v->rows[i].measured, "judged", v->rows[i].judged,
						"agrees", v->rows[i].agrees));
	for (unsigned i = 0; i < v->nsteps; i++)
		json_array_append_new(steps, json_pack("{s:f,s:f,s:f,s:f,s:I}", "rate_scale",
						       v->steps[i].rate_scale, "offered_rate",
						       v->steps[i].offered_rate, "achieved_rate",
						       v->steps[i].achieved_rate, "latency_p99_us",
						       v->steps[i].latency_p99_us, "enomem",
						       (json_int_t)v->steps[i].enomem));
	obj = json_pack("{s:s,s:s,s:f,s:f,s:o,s:o,s:b}", "status", v->pass ? "pass" : "fail",
			"line", run->verify_status, "tolerance", PLAN_VERIFY_TOLERANCE,
			"min_blocks_judged", PLAN_VERIFY_MIN_BLOCKS, "rows", rows, "steps", steps,
			"saturated", v->saturated);
	if (v->saturated)
		json_object_set_new(obj, "saturation",
				    json_pack("{s:f,s:f,s:s}", "offered_rate",
					      v->saturation_offered, "last_good_achieved_rate",
					      v->last_good_achieved, "reason",
					      v->saturation_reason));
	return obj;
}

json_t *plan_to_json(const struct plan_run *run)
{
	const struct plan_sim_result *sim = run->sim;
	json_t *root = json_object(), *flows = json_array(), *nodes = json_array();
	json_t *what = json_array(), *wl_classes = json_array();

	for (unsigned i = 0; i < run->nwhat_ifs; i++)
		json_array_append_new(what, json_string(run->what_ifs[i]));
	for (unsigned i = 0; i < run->wl->nflows; i++)
		json_array_append_new(flows, flow_json(run, i));
	for (unsigned k = 0; k < run->tail->nnodes; k++) {
		json_t *node =
			json_pack("{s:i,s:I,s:I,s:I,s:I}", "node", run->tail->nodes[k].node,
				  "pool_bytes", (json_int_t)run->tail->nodes[k].pool_bytes,
				  "hugepages", (json_int_t)run->tail->nodes[k].hugepages,
				  "pool_bytes_at_mean", (json_int_t)run->mean->nodes[k].pool_bytes,
				  "hugepages_at_mean", (json_int_t)run->mean->nodes[k].hugepages);

		for (unsigned j = 0; j < sim->nnodes; j++)
			if (sim->nodes[j].node == run->tail->nodes[k].node) {
				json_object_set_new(node, "sim_live_blocks",
						    stat_json(&sim->nodes[j].blocks));
				json_object_set_new(node, "sim_live_bytes",
						    stat_json(&sim->nodes[j].bytes));
			}
		json_array_append_new(nodes, node);
	}
	for (unsigned s = 0; s < NSLOT; s++) {
		if (sim->blocks[s].max == 0)
			continue;
		json_array_append_new(wl_classes,
				      json_pack("{s:i,s:I,s:o}", "class", (int)s, "block_size",
						(json_int_t)(s < NCLASS ? plan_class_size(s) : 0),
						"sim_blocks", stat_json(&sim->blocks[s])));
	}
	json_object_set_new(root, "schema", json_string("shmrig-plan/2"));
	json_object_set_new(root, "version", json_string(SHMRIG_PLAN_VERSION));
	json_object_set_new(root, "workload", json_string(run->wl->name));
	json_object_set_new(root, "sized_at",
			    json_string("p99.9 of one producer's live blocks "
					"(simulated); *_at_mean: Little's law"));
	json_object_set_new(root, "what_if", what);
	json_object_set_new(root, "simulation",
			    json_pack("{s:I,s:f,s:f,s:f,s:i,s:I,s:b,s:b,s:f,s:o,s:o}", "seed",
				      (json_int_t)sim->seed, "warmup_s", sim->warmup_s,
				      "simulated_s", sim->simulated_s, "sample_interval_s",
				      sim->sample_interval_s, "samples", (int)sim->samples,
				      "events", (json_int_t)sim->events, "event_capped",
				      sim->event_capped, "short_warmup", sim->short_warmup,
				      "longest_life_s", sim->longest_life_s, "classes", wl_classes,
				      "live_bytes", stat_json(&sim->bytes)));
	json_object_set_new(root, "flows", flows);
	json_object_set_new(root, "nodes", nodes);
	json_object_set_new(root, "totals",
			    json_pack("{s:f,s:I,s:I,s:I,s:I,s:I,s:I}", "large_mean_blocks",
				      run->mean->large_blocks, "large_bytes",
				      (json_int_t)run->tail->large_bytes, "pool_bytes",
				      (json_int_t)run->tail->pool_bytes, "hugepages_2m",
				      (json_int_t)run->tail->hugepages, "dev_shm_bytes",
				      (json_int_t)run->tail->dev_shm_bytes, "pool_bytes_at_mean",
				      (json_int_t)run->mean->pool_bytes, "hugepages_2m_at_mean",
				      (json_int_t)run->mean->hugepages));
	json_object_set_new(root, "settings", settings_json(run->tail));
	if (run->cpu) {
		json_object_set_new(root, "cpu",
				    json_pack("{s:s,s:s,s:s,s:f,s:f,s:s,s:s,s:f}", "results",
					      run->results_path, "cpu_model",
					      run->results->cpu_model, "date", run->results->date,
					      "memory_bytes_per_s", run->cpu->memory_bytes_per_s,
					      "memory_bandwidth", run->cpu->memory_bandwidth,
					      "first_flow",
					      run->wl->flows[run->cpu->first_flow].name,
					      "saturates_first",
					      plan_resource_name(
						      run->cpu->flows[run->cpu->first_flow].first),
					      "headroom", run->cpu->headroom));
	} else {
		json_object_set_new(root, "cpu",
				    json_pack("{s:s}", "status", "no results file (--results)"));
	}
	if (run->pool_limit)
		json_object_set_new(root, "pool_limit", json_integer((json_int_t)run->pool_limit));
	if (run->verify_status)
		json_object_set_new(root, "verify", verify_json(run));
	return root;
}

/* ---- the report ---- */

/* A path inside a gnuplot single-quoted string: '' is a quote. */
static void gp_string(FILE *f, const char *s)
{
	fputc('\'', f);
	for (; *s; s++) {
		if (*s == '\'')
			fputc('\'', f);
		fputc(*s, f);
	}
	fputc('\'', f);
}

/* Draw one plot: write its script to `script`, run gnuplot on it. */
static int run_gnuplot(const char *script, char *note, size_t notelen)
{
	char *argv[] = { "gnuplot", (char *)script, NULL };
	char log[4096 + 8];
	int ret;

	snprintf(log, sizeof(log), "%s.log", script);
	ret = plan_spawn(argv, log, 60);
	if (ret == -ENOENT)
		snprintf(note, notelen,
			 "plots skipped: gnuplot was not found on PATH "
			 "(Debian: apt-get install gnuplot-nox)");
	else if (ret == -ETIMEDOUT)
		snprintf(note, notelen, "plots skipped: gnuplot took over 60 s and was killed");
	else if (ret)
		snprintf(note, notelen, "plots skipped: gnuplot failed (status %d)", ret);
	return ret;
}

static int write_plots(const char *dir, const char *base, const struct plan_run *run,
		       int *drew_rates, char *note, size_t notelen)
{
	char tmp[] = "/tmp/shmrig-plan-XXXXXX", data[4096], script[4096], svg[4096];
	const struct plan_sim_result *sim = run->sim;
	FILE *f;
	int ret = 0;

	*drew_rates = 0;
	if (!mkdtemp(tmp)) {
		snprintf(note, notelen, "plots skipped: cannot make a temporary directory: %s",
			 strerror(errno));
		return 0;
	}
	snprintf(data, sizeof(data), "%s/occupancy.dat", tmp);
	snprintf(script, sizeof(script), "%s/occupancy.gp", tmp);
	snprintf(svg, sizeof(svg), "%s/%s-occupancy.svg", dir, base);
	f = fopen(data, "w");
	if (f) {
		/* every step-th sample: a plot of 2000 points shows what 10000 do, at a fifth
		 * of the SVG */
		unsigned step = sim->samples > 2000 ? sim->samples / 2000 : 1;

		fprintf(f,
			"# t_s live_blocks live_MiB (all flows, simulated, every %u-th sample)\n",
			step);
		for (unsigned g = 0; g < sim->samples; g += step)
			fprintf(f, "%.6f %.0f %.4f\n", sim->warmup_s + g * sim->sample_interval_s,
				sim->series_blocks[g], sim->series_bytes[g] / (1 << 20));
		fclose(f);
	}
	f = fopen(script, "w");
	if (f) {
		fprintf(f,
			"set terminal svg size 900,450 dynamic background rgb 'white'\nset output ");
		gp_string(f, svg);
		fprintf(f,
			"\nset title 'workload %s: live blocks, simulated (seed %" PRIu64
			")' noenhanced\n"
			"set xlabel 'time (s)'\nset ylabel 'live blocks'\nset y2label 'live MiB'\n"
			"set ytics nomirror\nset y2tics\nset key top left\nset grid\n"
			"plot ",
			base, sim->seed);
		gp_string(f, data);
		fprintf(f, " using 1:2 with lines lw 1 title 'live blocks', ");
		gp_string(f, data);
		fprintf(f, " using 1:3 axes x1y2 with lines lw 1 title 'live MiB'\n");
		fclose(f);
	}
	ret = run_gnuplot(script, note, notelen);
	if (!ret && run->verify && run->verify->nsteps) {
		const struct plan_verify *v = run->verify;

		snprintf(data, sizeof(data), "%s/rates.dat", tmp);
		snprintf(script, sizeof(script), "%s/rates.gp", tmp);
		snprintf(svg, sizeof(svg), "%s/%s-rates.svg", dir, base);
		f = fopen(data, "w");
		if (f) {
			fprintf(f, "# offered achieved p99_us (shmrig-stress --workload steps)\n");
			for (unsigned i = 0; i < v->nsteps; i++)
				fprintf(f, "%.6g %.6g %.6g\n", v->steps[i].offered_rate,
					v->steps[i].achieved_rate, v->steps[i].latency_p99_us);
			fclose(f);
		}
		f = fopen(script, "w");
		if (f) {
			fprintf(f, "set terminal svg size 900,450 dynamic background rgb 'white'\n"
				   "set output ");
			gp_string(f, svg);
			fprintf(f,
				"\nset title 'workload %s: measured against offered rate' noenhanced\n"
				"set xlabel 'offered (msgs/s)'\nset ylabel 'achieved (msgs/s)'\n"
				"set y2label 'p99 latency (us)'\nset logscale x\nset logscale y2\n"
				"set ytics nomirror\nset y2tics\nset key top left\nset grid\nplot ",
				base);
			gp_string(f, data);
			fprintf(f, " using 1:2 with linespoints title 'achieved', ");
			gp_string(f, data);
			fprintf(f, " using 1:1 with lines dt 2 title 'offered', ");
			gp_string(f, data);
			fprintf(f, " using 1:3 axes x1y2 with linespoints title 'p99 latency'\n");
			fclose(f);
		}
		ret = run_gnuplot(script, note, notelen);
		*drew_rates = !ret;
	}
	/* the temporary files are ours alone: remove them */
	{
		const char *names[] = { "occupancy.dat", "occupancy.gp", "occupancy.gp.log",
					"rates.dat",     "rates.gp",     "rates.gp.log" };

		for (unsigned i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
			snprintf(data, sizeof(data), "%s/%s", tmp, names[i]);
			unlink(data);
		}
		rmdir(tmp);
	}
	return ret;
}

int plan_write_report(const char *dir, const struct plan_run *run, char *note, size_t notelen,
		      char *err, size_t errlen)
{
	char base[PLAN_MAX_NAME], path[4096];
	const struct plan_result *r = run->tail;
	json_t *root;
	int drew_rates = 0, plotted;
	FILE *f;

	note[0] = '\0';
	if (mkdir(dir, 0755) && errno != EEXIST) {
		snprintf(err, errlen, "--report %s: %s", dir, strerror(errno));
		return -errno;
	}
	plan_file_name(run->wl->name, base, sizeof(base));
	snprintf(path, sizeof(path), "%s/%s.json", dir, base);
	root = plan_to_json(run);
	if (json_dump_file(root, path, JSON_INDENT(2) | JSON_REAL_PRECISION(10))) {
		json_decref(root);
		snprintf(err, errlen, "cannot write %s", path);
		return -EIO;
	}
	json_decref(root);
	plotted = write_plots(dir, base, run, &drew_rates, note, notelen) == 0;
	snprintf(path, sizeof(path), "%s/%s.md", dir, base);
	f = fopen(path, "w");
	if (!f) {
		snprintf(err, errlen, "cannot write %s: %s", path, strerror(errno));
		return -errno;
	}
	fprintf(f, "# Capacity plan: workload `%s`\n\n", run->wl->name);
	fprintf(f, "Made by `shmrig-plan %s` from `%s`%s%s%s.\n\n", SHMRIG_PLAN_VERSION,
		run->workload_path, run->results_path ? " and the benchmark results `" : "",
		run->results_path ? run->results_path : "", run->results_path ? "`" : "");
	fprintf(f, "## Settings\n\n```sh\n");
	fprintf(f, "sysctl vm.nr_hugepages=%" PRIu64 "\n", r->hugepages);
	for (unsigned k = 0; k < r->nnodes; k++)
		fprintf(f,
			"echo %" PRIu64
			" > /sys/devices/system/node/node%d/hugepages/hugepages-2048kB/nr_hugepages\n",
			r->nodes[k].hugepages, r->nodes[k].node);
	fprintf(f, "# or on the kernel command line: hugepagesz=2M hugepages=%" PRIu64 "\n",
		r->hugepages);
	fprintf(f, "mount -o remount,size=%" PRIu64 "M /dev/shm\n",
		(r->dev_shm_bytes + ((1u << 20) - 1)) >> 20);
	for (unsigned i = 0; i < r->nflows; i++) {
		fprintf(f, "# flow '%s', each producer:\n", run->wl->flows[i].name);
		if (r->flows[i].arena_size)
			fprintf(f, "SHMRIG_ARENA_SIZE=%" PRIu64 "M ", r->flows[i].arena_size >> 20);
		fprintf(f, "SHMRIG_POOL_MAX=%" PRIu64 "M\n", r->flows[i].pool_max >> 20);
	}
	fprintf(f,
		"```\n\nThe mean (Little's law) would need %" PRIu64
		" hugepages; a pool sized at the mean runs short about half the time.\n\n",
		run->mean->hugepages);
	fprintf(f, "## The plan\n\n```text\n");
	plan_print_table(f, run);
	fprintf(f, "```\n\n## Plots\n\n");
	if (plotted) {
		fprintf(f,
			"Live blocks and bytes over the simulated time, all flows:\n\n"
			"![occupancy](%s-occupancy.svg)\n\n",
			base);
		if (drew_rates)
			fprintf(f,
				"Throughput and p99 latency against the offered rate "
				"(shmrig-stress --workload, stepped):\n\n![rates](%s-rates.svg)\n\n",
				base);
		else
			fprintf(f, "No throughput plot: no verification ran (--verify).\n\n");
	} else {
		fprintf(f, "%s.\n\n", note);
	}
	fprintf(f,
		"## Assumptions\n\n"
		"- Each producer is an independent sender at rate / producers; arrivals Poisson "
		"(exponential gaps) or constant (a random phase each); sizes and holds drawn as "
		"tools/plan/draw.h says, the very draws shmrig-stress --workload replays.\n"
		"- A message's block is live from its allocation for flight_ms (constant) plus the "
		"hold. A producer has at most `window` messages in flight; one whose window is full "
		"queues its arrivals (FIFO) and allocates when the oldest arrives.\n"
		"- Each producer allocates from its own pool, on its own NUMA node: chunks are "
		"sized per producer at the p99.9 of one producer's live blocks of each class, "
		"ceil(p99.9 / blocks per chunk), summed over classes, plus each arena's header "
		"chunk. Large blocks (above 1 MiB) get a 2 MiB-rounded segment each, and %u are kept "
		"for reuse.\n"
		"- Empty chunks return to the arena for any class (issue 14's pool change): "
		"--pool-limit counts the chunks live blocks need at each instant.\n"
		"- The simulation is seeded and bounded (an event cap): see its line above for "
		"how long was simulated. Fewer than %u producers of a flow are simulated one by "
		"one; more are represented by %u, their totals rescaled.\n"
		"- CPU figures (with --results): costs interpolated log-log between the measured "
		"sizes per codec kind (flat below the smallest, proportional above the largest); "
		"transport is the sender's CPU per message of channel/<backend>/batch64, counted on "
		"both sides; one channel per producer; memory traffic one pass a byte for encode "
		"and one more for the bytes codec's decode, against the largest memcpy measured.\n\n",
		PLAN_LARGE_CACHE, PLAN_SIM_MAX_PRODUCERS + 1, PLAN_SIM_MAX_PRODUCERS);
	if (run->verify) {
		fprintf(f,
			"## Verification\n\n%s\n\nOccupancy per class is judged when at least "
			"%.0f blocks are predicted on average: smaller counts are shown but not "
			"judged, since a few blocks either way is a large share of a small "
			"count.\n\n",
			run->verify_status, PLAN_VERIFY_MIN_BLOCKS);
		fprintf(f,
			"| | predicted | measured | diff | judged |\n|---|---:|---:|---:|---|\n");
		for (unsigned i = 0; i < run->verify->nrows; i++) {
			const struct plan_verify_row *row = &run->verify->rows[i];

			fprintf(f, "| %s | %.5g | %.5g | %+.1f %% | %s |\n", row->what,
				row->predicted, row->measured,
				row->predicted > 0 ?
					100 * (row->measured - row->predicted) / row->predicted :
					0,
				!row->judged ? "no (under 10 blocks)" :
				row->agrees  ? "agrees" :
					       "**disagrees**");
		}
		fprintf(f, "\n");
	} else if (run->verify_status) {
		fprintf(f, "## Verification\n\nNot judged: %s\n\n", run->verify_status);
	}
	if (fclose(f)) {
		snprintf(err, errlen, "cannot write %s", path);
		return -EIO;
	}
	return 0;
}
