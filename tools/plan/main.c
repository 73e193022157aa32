/* SPDX-License-Identifier: MIT */
/*
 * shmrig-plan: how much shared memory and how many hugepages a workload needs
 * (issue 14, first slice: the mean by Little's law; see model.h).
 *
 * Exit status: 0 a plan, 1 the JSON could not be written, 2 bad usage or a
 * bad workload file (the message names the field).
 */
#include "model.h"
#include "workload.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef SHMRIG_PLAN_VERSION
#define SHMRIG_PLAN_VERSION "unknown"
#endif

#define MAX_WHAT_IF 16
#define NCLASS SHMRIG_POOL_NUM_CLASSES

static const char tail_note[] =
	"mean occupancy only (Little's law): a pool sized at the mean runs short about half "
	"the time; p99/p99.9 by simulation is the next slice of issue 14";

static void usage(FILE *out)
{
	fprintf(out,
		"usage: shmrig-plan WORKLOAD.json [--json FILE] [--what-if KEY=xF]...\n"
		"\n"
		"Plans the shared memory of a workload: per size class the mean live blocks\n"
		"(Little's law, L = rate x P(class) x (flight + hold)), chunks and bytes; large\n"
		"blocks; pool bytes and 2 MiB hugepages per NUMA node, SHMRIG_ARENA_SIZE and\n"
		"SHMRIG_POOL_MAX for each flow's producers, and the /dev/shm size. The mean only\n"
		"in this version: the tail (p99, by simulation) is to come.\n"
		"\n"
		"  --json FILE      also write the plan as JSON (schema shmrig-plan/1; '-': stdout)\n"
		"  --what-if K=xF   re-plan with every flow's K multiplied by F, without editing\n"
		"                   the file: rate, hold or flight (e.g. --what-if rate=x2)\n"
		"  --help           this text\n"
		"\n"
		"The workload file: tools/plan/workload.h; an example: examples/workloads/.\n"
		"Exit status: 0 a plan; 1 the JSON could not be written; 2 bad usage or file.\n");
}

static void die_usage(const char *fmt, const char *arg)
{
	fprintf(stderr, "shmrig-plan: ");
	fprintf(stderr, fmt, arg);
	fprintf(stderr, "\n(shmrig-plan --help for usage)\n");
	exit(2);
}

struct what_if {
	char key[16];
	double factor;
	const char *text;
};

static void parse_what_if(const char *text, struct what_if *w)
{
	const char *eq = strchr(text, '=');
	char *end;

	w->text = text;
	if (!eq || eq - text >= (long)sizeof(w->key) || eq[1] != 'x')
		die_usage("--what-if '%s': expected KEY=xF, e.g. rate=x2", text);
	memcpy(w->key, text, (size_t)(eq - text));
	w->key[eq - text] = '\0';
	if (strcmp(w->key, "rate") && strcmp(w->key, "hold") && strcmp(w->key, "flight"))
		die_usage("--what-if '%s': KEY is rate, hold or flight", text);
	errno = 0;
	w->factor = strtod(eq + 2, &end);
	if (end == eq + 2 || *end || errno || !isfinite(w->factor) || !(w->factor > 0) ||
	    w->factor > 1e6)
		die_usage("--what-if '%s': F must be a number in (0, 1e6]", text);
}

/* Apply to every flow; the results must stay in the ranges the file is held to. */
static void apply_what_if(struct plan_workload *wl, const struct what_if *w)
{
	for (unsigned i = 0; i < wl->nflows; i++) {
		struct plan_flow *f = &wl->flows[i];

		if (strcmp(w->key, "rate") == 0)
			f->rate *= w->factor;
		else if (strcmp(w->key, "hold") == 0) {
			f->hold_mean_ms *= w->factor;
			f->hold_p99_ms *= w->factor;
		} else
			f->flight_ms *= w->factor;
		if (f->rate > 1e9 || f->hold_mean_ms > 3.6e6 || f->flight_ms > 60000)
			die_usage("--what-if '%s' takes a flow past its range (rate 1e9, hold 3.6e6 ms, "
				  "flight 60000 ms)",
				  w->text);
	}
}

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
	uint64_t size = plan_class_size(c);

	if (size >= (1u << 20))
		snprintf(buf, len, "%" PRIu64 "M", size >> 20);
	else if (size >= 1024)
		snprintf(buf, len, "%" PRIu64 "K", size >> 10);
	else
		snprintf(buf, len, "%" PRIu64, size);
	return buf;
}

static void print_settings(const struct plan_result *r)
{
	char b[32];

	printf("\nper node (blocks live on their producer's node)\n");
	printf("  %-6s %14s %10s\n", "node", "pool bytes", "hugepages");
	for (unsigned k = 0; k < r->nnodes; k++)
		printf("  %-6d %14s %10" PRIu64 "\n", r->nodes[k].node,
		       human(r->nodes[k].pool_bytes, b, sizeof(b)), r->nodes[k].hugepages);
	printf("\nsettings\n");
	printf("  sysctl vm.nr_hugepages=%" PRIu64 "\n", r->hugepages);
	for (unsigned k = 0; k < r->nnodes; k++)
		printf("  echo %" PRIu64
		       " > /sys/devices/system/node/node%d/hugepages/hugepages-2048kB/nr_hugepages\n",
		       r->nodes[k].hugepages, r->nodes[k].node);
	printf("  boot line: hugepagesz=2M hugepages=%" PRIu64, r->hugepages);
	if (r->nnodes > 1 || (r->nnodes == 1 && r->nodes[0].node != 0)) {
		printf("   (per node: hugepagesz=2M hugepages=");
		for (unsigned k = 0; k < r->nnodes; k++)
			printf("%s%d:%" PRIu64, k ? "," : "", r->nodes[k].node,
			       r->nodes[k].hugepages);
		printf(")");
	}
	printf("\n  /dev/shm: at least %s (segments fall back to /dev/shm without free hugepages;"
	       " channels' own segments not counted)\n",
	       human(r->dev_shm_bytes, b, sizeof(b)));
}

static void print_table(const struct plan_workload *wl, const struct plan_result *r,
			const struct what_if *what_ifs, unsigned nwhat_ifs)
{
	char b1[32], b2[32];

	printf("shmrig-plan %s: workload '%s', %u flow%s\n", SHMRIG_PLAN_VERSION, wl->name,
	       wl->nflows, wl->nflows == 1 ? "" : "s");
	printf("NOTE: %s\n", tail_note);
	for (unsigned i = 0; i < nwhat_ifs; i++)
		printf("what-if: %s\n", what_ifs[i].text);
	for (unsigned i = 0; i < wl->nflows; i++) {
		const struct plan_flow *f = &wl->flows[i];
		const struct plan_flow_need *n = &r->flows[i];

		printf("\nflow '%s': %u producer%s (node %d) -> %u consumer%s (node %d), %g msg/s %s, "
		       "%s over %s, window %u\n",
		       f->name, f->producers, f->producers == 1 ? "" : "s", f->producer_node,
		       f->consumers, f->consumers == 1 ? "" : "s", f->consumer_node, f->rate,
		       f->arrival == PLAN_ARRIVAL_POISSON ? "poisson" : "constant", f->codec,
		       f->backend, f->window);
		printf("  in flight %.3g messages%s, hold %g ms mean: a block lives %.4g ms, "
		       "%.4g messages live\n",
		       n->in_flight, n->window_bound ? " (capped by the window)" : "",
		       f->hold_mean_ms, n->live_per_message * 1000, n->live_per_message * f->rate);
		printf("  %-6s %8s %12s %12s %8s %12s\n", "class", "P", "mean blocks", "per chunk",
		       "chunks", "bytes");
		for (unsigned c = 0; c < NCLASS; c++) {
			const struct plan_class_need *cn = &n->classes[c];

			if (cn->probability <= 0)
				continue;
			printf("  %-6s %8.4f %12.4g %12" PRIu64 " %8" PRIu64 " %12s\n",
			       class_label(c, b1, sizeof(b1)), cn->probability, cn->blocks,
			       plan_blocks_per_chunk(c), cn->chunks,
			       human(cn->bytes, b2, sizeof(b2)));
		}
		if (n->large_probability > 0)
			printf("  %-6s %8.4f %12.4g %12s %8s %12s  (segments of %s on average, "
			       "and %u kept for reuse a producer)\n",
			       "large", n->large_probability, n->large_blocks, "-", "-",
			       human(n->large_bytes, b1, sizeof(b1)),
			       human((uint64_t)n->large_segment_bytes, b2, sizeof(b2)),
			       PLAN_LARGE_CACHE);
		if (n->arena_size)
			printf("  each producer: %" PRIu64 " chunk%s in %" PRIu64
			       " arena%s: SHMRIG_ARENA_SIZE=%" PRIu64 "M SHMRIG_POOL_MAX=%" PRIu64
			       "M\n",
			       n->chunks_per_producer, n->chunks_per_producer == 1 ? "" : "s",
			       n->arenas_per_producer, n->arenas_per_producer == 1 ? "" : "s",
			       n->arena_size >> 20, n->pool_max >> 20);
		else
			printf("  each producer: large blocks only: SHMRIG_POOL_MAX=%" PRIu64 "M\n",
			       n->pool_max >> 20);
		printf("  the flow's producers: %s\n", human(n->pool_bytes, b1, sizeof(b1)));
	}
	print_settings(r);
}

static json_t *plan_json(const struct plan_workload *wl, const struct plan_result *r,
			 const struct what_if *what_ifs, unsigned nwhat_ifs)
{
	json_t *root = json_object(), *flows = json_array(), *nodes = json_array();
	json_t *what = json_array(), *per_node_boot = json_array();

	for (unsigned i = 0; i < nwhat_ifs; i++)
		json_array_append_new(what, json_string(what_ifs[i].text));
	for (unsigned i = 0; i < wl->nflows; i++) {
		const struct plan_flow *f = &wl->flows[i];
		const struct plan_flow_need *n = &r->flows[i];
		json_t *classes = json_array();

		for (unsigned c = 0; c < NCLASS; c++) {
			const struct plan_class_need *cn = &n->classes[c];

			if (cn->probability <= 0)
				continue;
			json_array_append_new(classes,
					      json_pack("{s:i,s:I,s:f,s:f,s:I,s:I,s:I}", "class",
							(int)c, "block_size",
							(json_int_t)plan_class_size(c),
							"probability", cn->probability,
							"mean_blocks", cn->blocks,
							"blocks_per_chunk",
							(json_int_t)plan_blocks_per_chunk(c),
							"chunks", (json_int_t)cn->chunks, "bytes",
							(json_int_t)cn->bytes));
		}
		json_array_append_new(
			flows,
			json_pack("{s:s,s:i,s:i,s:i,s:i,s:f,s:s,s:s,s:s,s:i,s:f,s:f,s:f,s:b,s:f,"
				  "s:o,s:{s:f,s:f,s:f,s:I},s:{s:I,s:I,s:I,s:I},s:I}",
				  "name", f->name, "producers", (int)f->producers, "consumers",
				  (int)f->consumers, "producer_node", f->producer_node,
				  "consumer_node", f->consumer_node, "rate", f->rate, "arrival",
				  f->arrival == PLAN_ARRIVAL_POISSON ? "poisson" : "constant",
				  "codec", f->codec, "backend", f->backend, "window",
				  (int)f->window, "flight_ms", f->flight_ms, "hold_mean_ms",
				  f->hold_mean_ms, "in_flight", n->in_flight, "window_bound",
				  n->window_bound, "live_per_message_s", n->live_per_message,
				  "classes", classes, "large", "probability", n->large_probability,
				  "mean_blocks", n->large_blocks, "mean_segment_bytes",
				  n->large_segment_bytes, "bytes", (json_int_t)n->large_bytes,
				  "per_producer", "chunks", (json_int_t)n->chunks_per_producer,
				  "arenas", (json_int_t)n->arenas_per_producer, "arena_size",
				  (json_int_t)n->arena_size, "pool_max", (json_int_t)n->pool_max,
				  "pool_bytes", (json_int_t)n->pool_bytes));
	}
	for (unsigned k = 0; k < r->nnodes; k++) {
		json_array_append_new(nodes,
				      json_pack("{s:i,s:I,s:I}", "node", r->nodes[k].node,
						"pool_bytes", (json_int_t)r->nodes[k].pool_bytes,
						"hugepages", (json_int_t)r->nodes[k].hugepages));
		json_array_append_new(per_node_boot,
				      json_pack("{s:i,s:I}", "node", r->nodes[k].node, "hugepages",
						(json_int_t)r->nodes[k].hugepages));
	}
	json_object_set_new(root, "schema", json_string("shmrig-plan/1"));
	json_object_set_new(root, "version", json_string(SHMRIG_PLAN_VERSION));
	json_object_set_new(root, "workload", json_string(wl->name));
	json_object_set_new(root, "statistic", json_string("mean"));
	json_object_set_new(root, "note", json_string(tail_note));
	json_object_set_new(root, "what_if", what);
	json_object_set_new(root, "flows", flows);
	json_object_set_new(root, "nodes", nodes);
	json_object_set_new(root, "totals",
			    json_pack("{s:f,s:I,s:I,s:I,s:I}", "large_mean_blocks", r->large_blocks,
				      "large_bytes", (json_int_t)r->large_bytes, "pool_bytes",
				      (json_int_t)r->pool_bytes, "hugepages_2m",
				      (json_int_t)r->hugepages, "dev_shm_bytes",
				      (json_int_t)r->dev_shm_bytes));
	{
		char sysctl[64], boot[64];

		snprintf(sysctl, sizeof(sysctl), "vm.nr_hugepages=%" PRIu64, r->hugepages);
		snprintf(boot, sizeof(boot), "hugepagesz=2M hugepages=%" PRIu64, r->hugepages);
		json_object_set_new(root, "settings",
				    json_pack("{s:s,s:s,s:o}", "sysctl", sysctl, "boot", boot,
					      "hugepages_per_node", per_node_boot));
	}
	return root;
}

int main(int argc, char **argv)
{
	static const struct option options[] = { { "json", required_argument, 0, 'j' },
						 { "what-if", required_argument, 0, 'w' },
						 { "help", no_argument, 0, 'h' },
						 { 0, 0, 0, 0 } };
	struct what_if what_ifs[MAX_WHAT_IF];
	unsigned nwhat_ifs = 0;
	const char *json_path = NULL;
	struct plan_workload *wl;
	struct plan_result *r;
	char err[768];
	int opt, status = 0;

	opterr = 0;
	while ((opt = getopt_long(argc, argv, ":h", options, NULL)) != -1) {
		switch (opt) {
		case 'j':
			json_path = optarg;
			break;
		case 'w':
			if (nwhat_ifs == MAX_WHAT_IF)
				die_usage("more than %s --what-if", "16");
			parse_what_if(optarg, &what_ifs[nwhat_ifs++]);
			break;
		case 'h':
			usage(stdout);
			return 0;
		case ':':
			die_usage("%s needs a value", argv[optind - 1]);
			break;
		default:
			die_usage("unknown option '%s'", argv[optind - 1]);
		}
	}
	if (argc - optind != 1)
		die_usage("%s", argc - optind ? "one workload file, not several" :
						"which workload? (shmrig-plan WORKLOAD.json)");
	wl = malloc(sizeof(*wl));
	r = malloc(sizeof(*r));
	if (!wl || !r) {
		fprintf(stderr, "shmrig-plan: out of memory\n");
		return 1;
	}
	if (plan_workload_load(argv[optind], wl, err, sizeof(err))) {
		fprintf(stderr, "shmrig-plan: %s\n", err);
		free(wl);
		free(r);
		return 2;
	}
	for (unsigned i = 0; i < nwhat_ifs; i++)
		apply_what_if(wl, &what_ifs[i]);
	plan_model(wl, r);
	if (!json_path || strcmp(json_path, "-") != 0) /* --json -: the JSON alone */
		print_table(wl, r, what_ifs, nwhat_ifs);
	if (json_path) {
		json_t *root = plan_json(wl, r, what_ifs, nwhat_ifs);
		int ret =
			strcmp(json_path, "-") == 0 ?
				json_dumpf(root, stdout, JSON_INDENT(2) | JSON_REAL_PRECISION(10)) :
				json_dump_file(root, json_path,
					       JSON_INDENT(2) | JSON_REAL_PRECISION(10));

		if (ret) {
			fprintf(stderr, "shmrig-plan: cannot write %s\n", json_path);
			status = 1;
		}
		json_decref(root);
	}
	fflush(stdout);
	free(wl);
	free(r);
	return status;
}
