/* SPDX-License-Identifier: MIT */
/*
 * shmrig-plan: how much shared memory and how many hugepages a workload needs,
 * where it saturates, and whether a run agrees (issue 14). The mean by
 * Little's law (model.h), the tail by simulation (sim.h), CPU from the
 * benchmark suite's results (results.h), the outputs (report.h) and the
 * verification by shmrig-stress --workload (verify.h).
 *
 * Exit status: 0 a plan (and with --verify, predicted and measured agree);
 * 1 a verification that disagrees, or an output that could not be written;
 * 2 bad usage or a bad workload or results file (the message names the field);
 * 3 --verify cannot judge: the stress tool is missing or failed to run.
 */
#include "model.h"
#include "report.h"
#include "results.h"
#include "sim.h"
#include "verify.h"
#include "workload.h"

#include <shmrig/options.h>

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define MAX_WHAT_IF 16
#define EXIT_DISAGREE 1
#define EXIT_USAGE 2
#define EXIT_CANNOT_JUDGE 3

static void usage(FILE *out)
{
	fprintf(out,
		"usage: shmrig-plan WORKLOAD.json [--json FILE] [--what-if KEY=xF]... [--seed N]\n"
		"                   [--sim-events N] [--results RESULTS.json] [--pool-limit BYTES]\n"
		"                   [--report DIR] [--verify [--verify-seconds S] [--verify-steps N]]\n"
		"\n"
		"Plans the shared memory of a workload. Per flow and size class: the mean live\n"
		"blocks by Little's law (L = rate x P(class) x (flight + hold)) and the mean, p99,\n"
		"p99.9 and max from a seeded simulation of arrivals, windows and holds; chunks and\n"
		"bytes sized at the p99.9 of one producer's pool (the mean's beside them); large\n"
		"blocks; pool bytes and 2 MiB hugepages per NUMA node; the sysctl, boot, sysfs and\n"
		"/dev/shm lines; SHMRIG_ARENA_SIZE and SHMRIG_POOL_MAX for each flow's producers.\n"
		"\n"
		"  --json FILE         also write the plan as JSON (schema shmrig-plan/2; '-': stdout\n"
		"                      and no table)\n"
		"  --what-if K=xF      re-plan with every flow's K multiplied by F, without editing\n"
		"                      the file: rate, hold or flight (e.g. --what-if rate=x2)\n"
		"  --seed N            the simulation's seed (default 1): same seed, same plan\n"
		"  --sim-events N      the simulation's event cap (default %u, at most %u); the\n"
		"                      plan says how long was simulated\n"
		"  --results FILE      the benchmark suite's JSON from this machine class\n"
		"                      (results/<machine>/<stamp>.json of scripts/run): encode,\n"
		"                      decode and transport core-seconds a second per flow, memory\n"
		"                      bandwidth, the resource that saturates first and the rate\n"
		"                      where it does, the headroom. Without it, no CPU figures.\n"
		"  --pool-limit BYTES  a producer's pool limit (SHMRIG_POOL_MAX; K/M/G): the size\n"
		"                      class that runs out first under it, in the simulation\n"
		"  --brief             the plan on one screen: a line a flow (live blocks, each\n"
		"                      producer's SHMRIG_POOL_MAX), the hugepages and /dev/shm lines,\n"
		"                      what saturates first\n"
		"  --report DIR        write DIR/<workload>.md, DIR/<workload>.json and SVG plots\n"
		"                      (gnuplot: occupancy over time; with --verify, throughput and\n"
		"                      p99 latency against the offered rate)\n"
		"  --verify            run shmrig-stress --workload (the one next to this program's\n"
		"                      build directory, ../stress/shmrig-stress, or $SHMRIG_STRESS)\n"
		"                      at rate x1, x2, x4... until it saturates (achieved < 90 %% of\n"
		"                      offered, p99 latency > 10 x the first step's, or ENOMEM), and\n"
		"                      compare: throughput and the mean and p99 live blocks of each\n"
		"                      class predicted to hold >= 10 blocks must agree within 20 %%\n"
		"  --verify-seconds S  each step's duration (default 10; the whole stepping stops\n"
		"                      after 6 steps' worth)\n"
		"  --verify-steps N    at most N steps (1 to %u, default 6)\n"
		"  --help              this text\n"
		"\n"
		"The workload file: tools/plan/workload.h; examples: examples/workloads/.\n"
		"Exit status: 0 a plan (with --verify: it agrees); 1 the verification disagrees,\n"
		"or an output could not be written; 2 bad usage, workload or results file;\n"
		"3 --verify cannot judge (shmrig-stress missing or failed).\n",
		PLAN_SIM_DEFAULT_EVENTS, PLAN_SIM_MAX_EVENTS, PLAN_VERIFY_MAX_STEPS);
}

static void die_usage(const char *fmt, const char *arg)
{
	fprintf(stderr, "shmrig-plan: ");
	fprintf(stderr, fmt, arg);
	fprintf(stderr, "\n(shmrig-plan --help for usage)\n");
	exit(EXIT_USAGE);
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

static double number_arg(const char *opt, const char *text, double min, double max)
{
	char *end;
	double v;

	errno = 0;
	v = strtod(text, &end);
	if (end == text || *end || errno || !isfinite(v) || v < min || v > max) {
		char msg[128];

		snprintf(msg, sizeof(msg), "%s '%%s': expected a number in [%g, %g]", opt, min,
			 max);
		die_usage(msg, text);
	}
	return v;
}

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

struct verify_opts {
	double seconds, base_scale;
	unsigned max_steps;
	uint64_t seed;
};

/*
 * --verify: the steps, the comparison, a status line. Returns the exit
 * status: 0 agrees, 1 disagrees, 3 cannot judge (*v then NULL-able: *ran 0).
 */
/*
 * With a CPU plan (--results), the saturation found by stepping is judged too:
 * the predicted scale (the CPU plan's headroom) must fall within 20 % of the
 * steps that bracket the measured one (or above the last step, if none fell
 * short). Appends the verdict to status; returns 1 when they disagree.
 */
static int judge_saturation(const struct verify_opts *vo, const struct plan_workload *wl,
			    const struct plan_cpu *cpu, const struct plan_verify *v, char *status,
			    size_t statuslen)
{
	/* scales of the planned rates, from what the steps offered and achieved */
	double unit = v->nsteps ? vo->base_scale / v->steps[0].offered_rate : 0;
	double predicted = cpu->headroom, good = v->last_good_achieved * unit;
	double bad = v->saturation_offered * unit, own_cores = 0;
	size_t used = strlen(status);
	int agrees;

	/* The replay does work a workload's own processes would not (it makes
	 * and checksums every payload, and samples the pools), measured at the
	 * first step a message on each side: added to each producer's and
	 * consumer's core and to the machine's CPUs, the plan is of the replay. */
	if (v->nsteps && v->steps[0].replay_own_us > 0) {
		double own_p = v->steps[0].replay_own_producer_us * 1e-6;
		double own_c = v->steps[0].replay_own_us * 1e-6 - own_p, rate = 0, machine;

		for (unsigned i = 0; i < wl->nflows; i++)
			rate += wl->flows[i].rate;
		own_cores = rate * (own_p + own_c);
		machine = cpu->num_cpus ? (cpu->machine_cores + own_cores) / cpu->num_cpus : 0;
		for (unsigned i = 0; i < wl->nflows; i++) {
			const struct plan_flow *f = &wl->flows[i];
			const struct plan_cpu_flow *c = &cpu->flows[i];
			double top = machine, load[PLAN_RES_COUNT];

			memcpy(load, c->load, sizeof(load));
			load[PLAN_RES_PRODUCER_CORE] += f->rate / f->producers * own_p;
			load[PLAN_RES_CONSUMER_CORE] += f->rate / f->consumers * own_c;
			for (unsigned res = 0; res < PLAN_RES_COUNT; res++)
				if (res != PLAN_RES_MACHINE && load[res] > top)
					top = load[res];
			if (top > 0 && 1 / top < predicted)
				predicted = 1 / top;
		}
	}
	if (!v->saturated && v->nsteps)
		good = v->steps[v->nsteps - 1].achieved_rate * unit;
	agrees = predicted >= 0.8 * good && (!v->saturated || predicted <= 1.2 * bad);
	if (v->saturated)
		snprintf(status + used, statuslen - used,
			 " Saturation: predicted at x%.3g the planned rates, measured between x%.3g "
			 "and x%.3g: %s.",
			 predicted, good, bad, agrees ? "agrees" : "DISAGREES");
	else
		snprintf(status + used, statuslen - used,
			 " Saturation: predicted at x%.3g the planned rates, not reached up to x%.3g: "
			 "%s.",
			 predicted, good, agrees ? "agrees" : "DISAGREES");
	if (own_cores > 0) {
		used = strlen(status);
		snprintf(status + used, statuslen - used,
			 " (With the replay's own work, %.3g us a message measured at x1 (%.3g in "
			 "the producers), %.3g cores; the workload alone: x%.3g.)",
			 v->steps[0].replay_own_us, v->steps[0].replay_own_producer_us, own_cores,
			 cpu->headroom);
	}
	if (!agrees) {
		int paced = 0;

		for (unsigned i = 0; i < cpu->nflows; i++)
			paced |= cpu->flows[i].paced;
		used = strlen(status);
		snprintf(status + used, statuslen - used,
			 " The CPU plan counts the suite's costs of a message (encode, decode, "
			 "the transport %s) and the replay's own work against a core a process and "
			 "the machine's CPUs; it leaves out new segments for large values, and the "
			 "queueing that lifts p99 latency before the CPUs are full (README, "
			 "Capacity planning).",
			 paced ? "of a message to a sleeping peer" :
				 "of a busy channel: the results have no paced rows");
	}
	return !agrees;
}

static int run_verify(const char *workload_path, const struct verify_opts *vo,
		      const struct plan_workload *wl, const struct plan_sim_result *sim,
		      const struct plan_cpu *cpu, struct plan_verify *v, int *ran, char *status,
		      size_t statuslen)
{
	char stress[4096], tmp[] = "/tmp/shmrig-plan-verify-XXXXXX", out[4200], log[4200];
	char err[1024], why[160];
	double start = now_s(), budget = 6 * vo->seconds;
	int ret = 0, exit_status = 0;

	memset(v, 0, sizeof(*v));
	*ran = 0;
	v->seconds_per_step = vo->seconds;
	plan_stress_path(stress, sizeof(stress));
	if (access(stress, X_OK)) {
		snprintf(status, statuslen,
			 "cannot judge: shmrig-stress not found at %.1500s (%s; build stress/, or set "
			 "SHMRIG_STRESS)",
			 stress, strerror(errno));
		return EXIT_CANNOT_JUDGE;
	}
	if (!mkdtemp(tmp)) {
		snprintf(status, statuslen, "cannot judge: no temporary directory: %s",
			 strerror(errno));
		return EXIT_CANNOT_JUDGE;
	}
	for (unsigned i = 0; i < vo->max_steps; i++) {
		double scale = vo->base_scale * ldexp(1, (int)i);
		struct plan_measured *m = &v->steps[v->nsteps];
		char *text = NULL;
		size_t len;

		if (i > 0 && now_s() - start + vo->seconds > budget)
			break;
		snprintf(out, sizeof(out), "%s/step%u.json", tmp, i);
		snprintf(log, sizeof(log), "%s/step%u.log", tmp, i);
		fprintf(stderr, "shmrig-plan: verify step %u: %s --rate-scale %g, %g s\n", i + 1,
			stress, scale, vo->seconds);
		ret = plan_stress_run(stress, workload_path, vo->seconds, scale, vo->seed, out, log,
				      3 * vo->seconds + 30, err, sizeof(err));
		if (!ret)
			ret = plan_read_file(out, PLAN_STRESS_MAX_BYTES, &text, &len, err,
					     sizeof(err));
		if (!ret) {
			char sub[512];

			ret = plan_stress_parse(text, len, m, sub, sizeof(sub));
			if (ret)
				snprintf(err, sizeof(err), "its JSON (%.400s): %.500s", out, sub);
		}
		free(text);
		if (ret) {
			FILE *f = fopen(log, "r");

			if (f) { /* the tail of what it said, for the reader */
				char line[512];

				fprintf(stderr, "shmrig-plan: the stress tool said:\n");
				while (fgets(line, sizeof(line), f))
					fprintf(stderr, "  | %s", line);
				fclose(f);
			}
			if (i == 0) {
				snprintf(status, statuslen, "cannot judge: %s", err);
				exit_status = EXIT_CANNOT_JUDGE;
				goto out;
			}
			v->saturated = 1;
			v->saturation_offered = v->steps[v->nsteps - 1].offered_rate * 2;
			snprintf(v->saturation_reason, sizeof(v->saturation_reason),
				 "the run at x%g failed: %.120s", scale, err);
			break;
		}
		v->nsteps++;
		if (i == 0) {
			plan_verify_compare(sim, v);
			*ran = 1;
		}
		if (plan_verify_saturated(v, i, why, sizeof(why))) {
			v->saturated = 1;
			v->saturation_offered = m->offered_rate;
			snprintf(v->saturation_reason, sizeof(v->saturation_reason), "%s", why);
			break;
		}
		v->last_good_achieved = m->achieved_rate;
	}
	if (v->pass) {
		unsigned judged = 0;

		for (unsigned i = 0; i < v->nrows; i++)
			judged += (unsigned)v->rows[i].judged;
		snprintf(status, statuslen,
			 "occupancy and throughput agree within 20 %% (%u judged rows).", judged);
	} else {
		size_t used;

		snprintf(status, statuslen,
			 "occupancy and throughput: %u judged row%s disagree%s by more than 20 %%:",
			 v->disagreements, v->disagreements == 1 ? "" : "s",
			 v->disagreements == 1 ? "s" : "");
		for (unsigned i = 0; i < v->nrows; i++) {
			const struct plan_verify_row *row = &v->rows[i];

			if (!row->judged || row->agrees)
				continue;
			used = strlen(status);
			snprintf(status + used, statuslen - used,
				 " %s predicted %.4g, measured %.4g;", row->what, row->predicted,
				 row->measured);
		}
		exit_status = EXIT_DISAGREE;
	}
	if (v->steps[0].enomem) {
		size_t used = strlen(status);

		snprintf(status + used, statuslen - used,
			 " (the first step had %" PRIu64
			 " ENOMEM: its pools were too small for it)",
			 v->steps[0].enomem);
	}
	if (cpu && judge_saturation(vo, wl, cpu, v, status, statuslen))
		exit_status = EXIT_DISAGREE;
	{
		const char *verdict = exit_status ? "FAIL: " : "PASS: ";
		size_t n = strlen(verdict), len = strnlen(status, statuslen - 1);

		if (len + n >= statuslen)
			len = statuslen - n - 1;
		memmove(status + n, status, len);
		memcpy(status, verdict, n);
		status[len + n] = 0;
	}
out:
	for (unsigned i = 0; i < PLAN_VERIFY_MAX_STEPS; i++) {
		snprintf(out, sizeof(out), "%s/step%u.json", tmp, i);
		snprintf(log, sizeof(log), "%s/step%u.log", tmp, i);
		unlink(out);
		unlink(log);
	}
	rmdir(tmp);
	return exit_status;
}

int main(int argc, char **argv)
{
	static const struct option options[] = { { "json", required_argument, 0, 'j' },
						 { "what-if", required_argument, 0, 'w' },
						 { "seed", required_argument, 0, 's' },
						 { "sim-events", required_argument, 0, 'e' },
						 { "results", required_argument, 0, 'r' },
						 { "pool-limit", required_argument, 0, 'l' },
						 { "report", required_argument, 0, 'R' },
						 { "verify", no_argument, 0, 'v' },
						 { "brief", no_argument, 0, 'b' },
						 { "verify-seconds", required_argument, 0, 'S' },
						 { "verify-steps", required_argument, 0, 'N' },
						 { "help", no_argument, 0, 'h' },
						 { 0, 0, 0, 0 } };
	struct what_if what_ifs[MAX_WHAT_IF];
	const char *what_if_texts[MAX_WHAT_IF];
	unsigned nwhat_ifs = 0;
	const char *json_path = NULL, *results_path = NULL, *report_dir = NULL;
	struct plan_sim_opts sim_opts = { .seed = 1 };
	struct verify_opts vo = { .seconds = 10, .base_scale = 1, .max_steps = 6 };
	int verify = 0, verify_ran = 0, status = 0, brief = 0;
	struct plan_workload *wl = NULL;
	struct plan_result *mean = NULL, *tail = NULL;
	struct plan_sim_result *sim = NULL;
	struct plan_results *results = NULL;
	struct plan_cpu *cpu = NULL;
	struct plan_verify *v = NULL;
	struct plan_run run;
	char err[2048], verify_status[2048] = "";
	int opt, ret;

	opterr = 0;
	while ((opt = getopt_long(argc, argv, ":h", options, NULL)) != -1) {
		switch (opt) {
		case 'j':
			json_path = optarg;
			break;
		case 'w':
			if (nwhat_ifs == MAX_WHAT_IF)
				die_usage("more than %s --what-if", "16");
			parse_what_if(optarg, &what_ifs[nwhat_ifs]);
			what_if_texts[nwhat_ifs] = optarg;
			nwhat_ifs++;
			break;
		case 's':
			sim_opts.seed =
				(uint64_t)number_arg("--seed", optarg, 0, 9007199254740992.0);
			break;
		case 'e':
			sim_opts.max_events = (uint64_t)number_arg("--sim-events", optarg, 1000,
								   PLAN_SIM_MAX_EVENTS);
			break;
		case 'b':
			brief = 1;
			break;
		case 'r':
			results_path = optarg;
			break;
		case 'l': {
			size_t bytes;

			if (shmrig_parse_size(optarg, &bytes) || bytes == 0)
				die_usage("--pool-limit '%s': expected a size in bytes (K, M, G), above 0",
					  optarg);
			sim_opts.pool_limit = bytes;
			break;
		}
		case 'R':
			report_dir = optarg;
			break;
		case 'v':
			verify = 1;
			break;
		case 'S':
			vo.seconds = number_arg("--verify-seconds", optarg, 0.1, 3600);
			break;
		case 'N':
			vo.max_steps = (unsigned)number_arg("--verify-steps", optarg, 1,
							    PLAN_VERIFY_MAX_STEPS);
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
	for (unsigned i = 0; i < nwhat_ifs; i++) {
		/* the stress tool replays the file: only a rate can be scaled for it */
		if (verify && strcmp(what_ifs[i].key, "rate") != 0)
			die_usage("--verify replays the file as written: only --what-if rate=xF can "
				  "go with it, not '%s'",
				  what_ifs[i].text);
		if (strcmp(what_ifs[i].key, "rate") == 0)
			vo.base_scale *= what_ifs[i].factor;
	}
	vo.seed = sim_opts.seed;
	wl = malloc(sizeof(*wl));
	mean = malloc(sizeof(*mean));
	tail = malloc(sizeof(*tail));
	sim = calloc(1, sizeof(*sim));
	if (!wl || !mean || !tail || !sim) {
		fprintf(stderr, "shmrig-plan: out of memory\n");
		status = 1;
		goto out;
	}
	if (plan_workload_load(argv[optind], wl, err, sizeof(err))) {
		fprintf(stderr, "shmrig-plan: %s\n", err);
		status = EXIT_USAGE;
		goto out;
	}
	for (unsigned i = 0; i < nwhat_ifs; i++)
		apply_what_if(wl, &what_ifs[i]);
	if (results_path) {
		results = malloc(sizeof(*results));
		cpu = malloc(sizeof(*cpu));
		if (!results || !cpu) {
			fprintf(stderr, "shmrig-plan: out of memory\n");
			status = 1;
			goto out;
		}
		if (plan_results_load(results_path, results, err, sizeof(err))) {
			fprintf(stderr, "shmrig-plan: --results %s\n", err);
			status = EXIT_USAGE;
			goto out;
		}
		if (plan_results_check(results, wl, err, sizeof(err))) {
			fprintf(stderr,
				"shmrig-plan: --results %s lacks what this workload needs: %s\n",
				results_path, err);
			status = EXIT_USAGE;
			goto out;
		}
		plan_cpu_model(wl, results, cpu);
	}
	plan_model(wl, mean);
	ret = plan_sim_run(wl, &sim_opts, sim);
	if (ret) {
		fprintf(stderr, "shmrig-plan: the simulation failed: %s\n", strerror(-ret));
		status = 1;
		goto out;
	}
	plan_model_tail(wl, mean, sim, tail);
	if (verify) {
		v = malloc(sizeof(*v));
		if (!v) {
			fprintf(stderr, "shmrig-plan: out of memory\n");
			status = 1;
			goto out;
		}
		status = run_verify(argv[optind], &vo, wl, sim, cpu, v, &verify_ran, verify_status,
				    sizeof(verify_status));
	}
	run = (struct plan_run){ .workload_path = argv[optind],
				 .wl = wl,
				 .mean = mean,
				 .tail = tail,
				 .sim = sim,
				 .results_path = results_path,
				 .results = results,
				 .cpu = cpu,
				 .pool_limit = sim_opts.pool_limit,
				 .verify = verify_ran ? v : NULL,
				 .verify_status = verify ? verify_status : NULL,
				 .what_ifs = what_if_texts,
				 .nwhat_ifs = nwhat_ifs };
	if (!json_path || strcmp(json_path, "-") != 0) /* --json -: the JSON alone */
		(brief ? plan_print_brief : plan_print_table)(stdout, &run);
	if (json_path) {
		json_t *root = plan_to_json(&run);
		int failed =
			strcmp(json_path, "-") == 0 ?
				json_dumpf(root, stdout, JSON_INDENT(2) | JSON_REAL_PRECISION(10)) :
				json_dump_file(root, json_path,
					       JSON_INDENT(2) | JSON_REAL_PRECISION(10));

		if (failed) {
			fprintf(stderr, "shmrig-plan: cannot write %s\n", json_path);
			if (!status)
				status = 1;
		}
		json_decref(root);
	}
	if (report_dir) {
		char note[512];

		if (plan_write_report(report_dir, &run, note, sizeof(note), err, sizeof(err))) {
			fprintf(stderr, "shmrig-plan: %s\n", err);
			if (!status)
				status = 1;
		} else if (note[0]) {
			fprintf(stderr, "shmrig-plan: report written to %s; %s\n", report_dir,
				note);
		}
	}
	if (verify && status == EXIT_CANNOT_JUDGE)
		fprintf(stderr, "shmrig-plan: --verify %s\n", verify_status);
	fflush(stdout);
out:
	if (sim)
		plan_sim_free(sim);
	free(wl);
	free(mean);
	free(tail);
	free(sim);
	free(results);
	free(cpu);
	free(v);
	return status;
}
