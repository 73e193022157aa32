/* SPDX-License-Identifier: MIT */
/*
 * shmrig-validate: the codec conformance kit's command line (README
 * "Validating a codec"). Parses the options, asks a child for the codecs of
 * the subject, runs every selected check against every selected codec (each
 * in a child: runner.c), applies the known-failures list, prints a line per
 * check and the summary line, and writes the JSON, JUnit and benchmark files.
 *
 * Exit status: 0 nothing unexpected happened (passes, skips, expected
 * failures); 1 a check failed, or a known failure passed; 2 bad usage, or
 * input the kit cannot use (an unreadable file, a bad known-failures line).
 */
#include "validate.h"

#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static const char usage[] =
	"usage: shmrig-validate [options] --builtin [CODEC...]\n"
	"       shmrig-validate [options] PLUGIN.so [CODEC...]\n"
	"       shmrig-validate --list [--check REGEX] [--level LEVEL]\n"
	"       shmrig-validate --write-golden DIR (--builtin | PLUGIN.so) [CODEC...]\n"
	"\n"
	"Runs the conformance checks of the catalogue (--list) against each codec of\n"
	"the built-in set or of a plugin (all of them, or the CODECs named). Every\n"
	"check runs in a child process with a timeout: a codec that crashes or hangs\n"
	"is a FAIL naming the signal and the check, never the end of the run. One\n"
	"line per check (PASS, FAIL, SKIP, XFAIL), then the last line\n"
	"`N passed, N failed, N skipped, N expected failures`.\n"
	"\n"
	"  --builtin              validate the built-in codecs (ndarray, table, dataset,\n"
	"                         bytes)\n"
	"  --list                 print each check, its level and what it checks\n"
	"  --check REGEX          only the checks whose name matches REGEX (POSIX\n"
	"                         extended, unanchored)\n"
	"  --level LEVEL          required: leave the Recommended.* checks out (reported\n"
	"                         as skipped); recommended: every check (default)\n"
	"  --seed N               seed of the generated values and mutations (default 1)\n"
	"  --values N             values each check goes through (default 200); the\n"
	"                         edge cases of each kind come first\n"
	"  --max-bytes SIZE       largest generated value, e.g. 512K (default 4M)\n"
	"  --timeout S            seconds a check may take (default 60)\n"
	"  --repetitions N        of each Throughput figure (default 3; scripts/compare\n"
	"                         needs 6 or more a side to flag a change)\n"
	"  --known-failures FILE  checks expected to fail, one a line:\n"
	"                         CHECK_NAME [CODEC] # reason; a listed check that\n"
	"                         passes is a failure (remove it from the list)\n"
	"  --json FILE            write the results as JSON\n"
	"  --junit FILE           write the results as JUnit XML\n"
	"  --bench-json FILE      write the Throughput figures as Google Benchmark JSON\n"
	"                         (scripts/report, scripts/compare read it)\n"
	"  --golden DIR           the golden frames Recommended.Golden.Frames decodes\n"
	"                         (default: the plugin's golden_dir, or the kit's own\n"
	"                         for --builtin)\n"
	"  --write-golden DIR     run no check: write golden frames of each codec into\n"
	"                         DIR (created if missing) as CODEC-INDEX.golden, from\n"
	"                         the current code: the edge cases and a few --seed\n"
	"                         values, small; files already there are kept\n"
	"  --prefix NAME          pool segment prefix (default $SHMRIG_PREFIX, else\n"
	"                         " VAL_DEFAULT_PREFIX ")\n"
	"  --quiet                print only failures, expected failures and the last\n"
	"                         line; no progress\n"
	"  --help                 this text\n"
	"\n"
	"Exit status: 0 nothing unexpected happened; 1 a check failed, a known\n"
	"failure passed, or the plugin does not load; 2 bad usage or unusable input.\n";

struct cli {
	struct val_options opt;
	bool builtin, list, help;
	const char *plugin;
	const char **codecs;
	int ncodecs;
	const char *check_regex;
	regex_t regex;
	bool have_regex;
	enum val_level level;
	const char *write_golden; /* --write-golden DIR */
	const char *known_path, *json_path, *junit_path, *bench_path;
	const char *prefix_from; /* "--prefix" or "$SHMRIG_PREFIX" */
};

static int usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static int usage_error(const char *fmt, ...)
{
	va_list ap;

	fputs("shmrig-validate: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputs("\n(shmrig-validate --help lists the options)\n", stderr);
	return VAL_EXIT_USAGE;
}

static bool parse_u64(const char *text, uint64_t min, uint64_t max, uint64_t *out)
{
	char *end;
	unsigned long long v;

	if (!text[0] || text[0] == '-' || text[0] == '+')
		return false;
	errno = 0;
	v = strtoull(text, &end, 0);
	if (errno || *end || v < min || v > max)
		return false;
	*out = v;
	return true;
}

/* An output file must be writable where it is going, before any check runs. */
static int check_output(const char *flag, const char *path)
{
	char dir[4096];
	const char *slash = strrchr(path, '/');
	struct stat st;

	if (!path[0])
		return usage_error("%s: an empty file name", flag);
	if (stat(path, &st) == 0 && S_ISDIR(st.st_mode))
		return usage_error("%s %s: a directory, not a file name", flag, path);
	snprintf(dir, sizeof(dir), "%.*s", slash ? (int)(slash - path) + (slash == path) : 1,
		 slash ? path : ".");
	if (stat(dir, &st) || !S_ISDIR(st.st_mode))
		return usage_error("%s %s: no such directory %s", flag, path, dir);
	if (access(dir, W_OK))
		return usage_error("%s %s: directory %s is not writable", flag, path, dir);
	return 0;
}

static int parse(int argc, char **argv, struct cli *cli)
{
	enum {
		OPT_BUILTIN = 256,
		OPT_LIST,
		OPT_CHECK,
		OPT_LEVEL,
		OPT_SEED,
		OPT_VALUES,
		OPT_MAX_BYTES,
		OPT_TIMEOUT,
		OPT_REPETITIONS,
		OPT_KNOWN,
		OPT_JSON,
		OPT_JUNIT,
		OPT_BENCH,
		OPT_PREFIX,
		OPT_QUIET,
		OPT_HELP,
		OPT_GOLDEN,
		OPT_WRITE_GOLDEN
	};
	static const struct option options[] = {
		{ "builtin", no_argument, NULL, OPT_BUILTIN },
		{ "list", no_argument, NULL, OPT_LIST },
		{ "check", required_argument, NULL, OPT_CHECK },
		{ "level", required_argument, NULL, OPT_LEVEL },
		{ "seed", required_argument, NULL, OPT_SEED },
		{ "values", required_argument, NULL, OPT_VALUES },
		{ "max-bytes", required_argument, NULL, OPT_MAX_BYTES },
		{ "timeout", required_argument, NULL, OPT_TIMEOUT },
		{ "repetitions", required_argument, NULL, OPT_REPETITIONS },
		{ "known-failures", required_argument, NULL, OPT_KNOWN },
		{ "json", required_argument, NULL, OPT_JSON },
		{ "junit", required_argument, NULL, OPT_JUNIT },
		{ "bench-json", required_argument, NULL, OPT_BENCH },
		{ "prefix", required_argument, NULL, OPT_PREFIX },
		{ "quiet", no_argument, NULL, OPT_QUIET },
		{ "help", no_argument, NULL, OPT_HELP },
		{ "golden", required_argument, NULL, OPT_GOLDEN },
		{ "write-golden", required_argument, NULL, OPT_WRITE_GOLDEN },
		{ NULL, 0, NULL, 0 },
	};
	const char *env_prefix = getenv("SHMRIG_PREFIX");
	int opt, ret;
	uint64_t n;
	char *end;

	cli->opt.seed = 1;
	cli->opt.values = VAL_DEFAULT_VALUES;
	cli->opt.max_bytes = VAL_DEFAULT_MAX_BYTES;
	cli->opt.timeout_s = VAL_DEFAULT_TIMEOUT_S;
	cli->opt.repetitions = VAL_DEFAULT_REPETITIONS;
	cli->opt.prefix = env_prefix && env_prefix[0] ? env_prefix : VAL_DEFAULT_PREFIX;
	cli->prefix_from = env_prefix && env_prefix[0] ? "$SHMRIG_PREFIX" : "--prefix";
	cli->opt.selftest = getenv("SHMRIG_VALIDATE_SELFTEST");
	cli->level = VAL_RECOMMENDED;
	opterr = 0;
	while ((opt = getopt_long(argc, argv, ":", options, NULL)) != -1) {
		switch (opt) {
		case OPT_BUILTIN:
			cli->builtin = true;
			break;
		case OPT_LIST:
			cli->list = true;
			break;
		case OPT_CHECK: {
			char why[256];

			if (cli->have_regex)
				regfree(&cli->regex);
			ret = regcomp(&cli->regex, optarg, REG_EXTENDED | REG_NOSUB);
			if (ret) {
				regerror(ret, &cli->regex, why, sizeof(why));
				return usage_error("--check '%s': not a regular expression: %s",
						   optarg, why);
			}
			cli->have_regex = true;
			cli->check_regex = optarg;
			break;
		}
		case OPT_LEVEL:
			if (strcmp(optarg, "required") == 0)
				cli->level = VAL_REQUIRED;
			else if (strcmp(optarg, "recommended") == 0)
				cli->level = VAL_RECOMMENDED;
			else
				return usage_error("--level '%s': required or recommended", optarg);
			break;
		case OPT_SEED:
			if (!parse_u64(optarg, 0, UINT64_MAX, &cli->opt.seed))
				return usage_error("--seed '%s': not an integer >= 0", optarg);
			break;
		case OPT_VALUES:
			if (!parse_u64(optarg, 1, 10000000, &n))
				return usage_error("--values '%s': not an integer from 1 to 10000000",
						   optarg);
			cli->opt.values = (uint32_t)n;
			break;
		case OPT_MAX_BYTES: {
			size_t size;

			if (shmrig_parse_size(optarg, &size) || size < 1024 || size > (1u << 30))
				return usage_error("--max-bytes '%s': not a size from 1K to 1G",
						   optarg);
			cli->opt.max_bytes = size;
			break;
		}
		case OPT_TIMEOUT:
			errno = 0;
			cli->opt.timeout_s = strtod(optarg, &end);
			if (errno || end == optarg || *end || !isfinite(cli->opt.timeout_s) ||
			    cli->opt.timeout_s <= 0 || cli->opt.timeout_s > 86400)
				return usage_error("--timeout '%s': not a number of seconds above 0 "
						   "(at most 86400)",
						   optarg);
			break;
		case OPT_REPETITIONS:
			if (!parse_u64(optarg, 1, 1000, &n))
				return usage_error("--repetitions '%s': not an integer from 1 to 1000",
						   optarg);
			cli->opt.repetitions = (uint32_t)n;
			break;
		case OPT_KNOWN:
			cli->known_path = optarg;
			break;
		case OPT_JSON:
			cli->json_path = optarg;
			break;
		case OPT_JUNIT:
			cli->junit_path = optarg;
			break;
		case OPT_BENCH:
			cli->bench_path = optarg;
			break;
		case OPT_PREFIX:
			cli->opt.prefix = optarg;
			cli->prefix_from = "--prefix";
			break;
		case OPT_QUIET:
			cli->opt.quiet = true;
			break;
		case OPT_HELP:
			cli->help = true;
			return 0;
		case OPT_GOLDEN: {
			struct stat st;

			if (stat(optarg, &st) || !S_ISDIR(st.st_mode))
				return usage_error("--golden %s: not a directory", optarg);
			cli->opt.golden_dir = optarg;
			break;
		}
		case OPT_WRITE_GOLDEN:
			cli->write_golden = optarg;
			break;
		case ':':
			return usage_error("%s needs a value", argv[optind - 1]);
		default:
			if (optopt)
				return usage_error("unknown option -%c", optopt);
			return usage_error("unknown option %s", argv[optind - 1]);
		}
	}
	if (cli->list)
		return optind < argc ? usage_error("--list takes no subject") : 0;
	if (cli->write_golden && (cli->have_regex || cli->known_path || cli->json_path ||
				  cli->junit_path || cli->bench_path))
		return usage_error("--write-golden runs no check: no --check, --known-failures, "
				   "--json, --junit or --bench-json");
	if (!cli->builtin) {
		if (optind >= argc)
			return usage_error("what should be validated? --builtin, or a PLUGIN.so");
		cli->plugin = argv[optind++];
		if (access(cli->plugin, R_OK))
			return usage_error("%s: cannot read: %s", cli->plugin, strerror(errno));
	}
	cli->codecs = (const char **)&argv[optind];
	cli->ncodecs = argc - optind;
	cli->opt.plugin_path = cli->plugin;
	return 0;
}

static bool selected(const struct cli *cli, const struct val_check *check)
{
	return !cli->have_regex || regexec(&cli->regex, check->name, 0, NULL, 0) == 0;
}

static int list_checks(const struct cli *cli)
{
	size_t width = 0;

	for (size_t i = 0; i < val_catalogue_len; i++)
		if (strlen(val_catalogue[i].name) > width)
			width = strlen(val_catalogue[i].name);
	for (size_t i = 0; i < val_catalogue_len; i++) {
		const struct val_check *c = &val_catalogue[i];

		if (!selected(cli, c) || (cli->level == VAL_REQUIRED && c->level != VAL_REQUIRED))
			continue;
		printf("%-*s  %-11s  %s", (int)width, c->name, val_level_name(c->level),
		       c->description);
		if (!c->run)
			printf(" [not yet: %s]", c->skip_reason);
		putchar('\n');
	}
	return VAL_EXIT_OK;
}

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Known failures turn a FAIL into an XFAIL, and a PASS into a FAIL of the list. */
static void apply_known(const struct val_known *known, struct val_result *r)
{
	const struct val_known_entry *e = val_known_find(known, r->check->name, r->codec);

	if (!e)
		return;
	if (r->verdict == VAL_FAIL) {
		r->verdict = VAL_XFAIL;
		r->known_reason = e->reason;
		r->known_line = e->line;
	} else if (r->verdict == VAL_PASS) {
		r->verdict = VAL_FAIL;
		r->unexpected_pass = true;
		r->known_reason = e->reason;
		r->known_line = e->line;
		snprintf(r->message, sizeof(r->message),
			 "%s [%s] passes now: remove it from the known failures (%.400s:%d)",
			 r->check->name, r->codec, known->path, e->line);
	}
}

/* What main frees, whatever run() returned from. */
struct state {
	struct cli cli;
	struct val_known known;
	struct val_discovery d;
	struct val_result *results;
	size_t nresults;
};

static int run(int argc, char **argv, struct state *st)
{
	struct cli *cli = &st->cli;
	struct val_discovery *d = &st->d;
	struct val_report_info info = { 0 };
	uint32_t codecs[VAL_MAX_CODECS], ncodecs = 0;
	int counts[4] = { 0 }, ret, status;
	char err[VAL_MSG_MAX];
	double start = now_s();
	size_t nchecks = 0;

	ret = parse(argc, argv, cli);
	if (ret)
		return ret;
	if (cli->help) {
		fputs(usage, stdout);
		return VAL_EXIT_OK;
	}
	if (cli->list)
		return list_checks(cli);
	for (size_t i = 0; i < val_catalogue_len; i++)
		nchecks += selected(cli, &val_catalogue[i]);
	if (!nchecks)
		return usage_error("--check '%s' matches no check (shmrig-validate --list)",
				   cli->check_regex);
	if ((cli->json_path && (ret = check_output("--json", cli->json_path))) ||
	    (cli->junit_path && (ret = check_output("--junit", cli->junit_path))) ||
	    (cli->bench_path && (ret = check_output("--bench-json", cli->bench_path))))
		return ret;
	if (cli->known_path && val_known_load(cli->known_path, &st->known, err, sizeof(err)))
		return usage_error("--known-failures %s", err);
	{
		/* a prefix the pool refuses is the user's mistake, said now */
		struct shmrig_pool_opts po = SHMRIG_SIZED(struct shmrig_pool_opts);
		shmrig_pool *pool;

		po.prefix = cli->opt.prefix;
		po.flags = SHMRIG_POOL_QUIET;
		if (shmrig_pool_open(&po, &pool))
			return usage_error("%s '%s': %s", cli->prefix_from, cli->opt.prefix,
					   shmrig_last_error());
		(void)!shmrig_pool_close(pool); /* nothing allocated */
	}
	if (cli->write_golden)
		return val_golden_write(cli->plugin, cli->codecs, cli->ncodecs, cli->write_golden,
					&cli->opt);

	val_runner_init();
	ret = val_discover(cli->plugin, &cli->opt, d, err, sizeof(err));
	if (ret) {
		/* a plugin that does not load (or crashes loading) fails: no check can pass */
		fprintf(stderr, "shmrig-validate: %s\n", err);
		return VAL_EXIT_FAIL;
	}
	for (int i = 0; i < cli->ncodecs; i++) {
		uint32_t c = 0;

		while (c < d->ncodecs && strcmp(d->codecs[c], cli->codecs[i]))
			c++;
		if (c == d->ncodecs) {
			char names[1024] = "";
			size_t used = 0;

			for (uint32_t k = 0; k < d->ncodecs && used < sizeof(names); k++)
				used += (size_t)snprintf(names + used, sizeof(names) - used, "%s%s",
							 k ? ", " : "", d->codecs[k]);
			return usage_error("no codec '%s' in %s (%s)", cli->codecs[i], d->label,
					   names);
		}
		codecs[ncodecs++] = c;
	}
	if (!cli->ncodecs)
		for (uint32_t c = 0; c < d->ncodecs; c++)
			codecs[ncodecs++] = c;
	if (val_known_check_codecs(&st->known, d, err, sizeof(err)))
		return usage_error("--known-failures %s", err);

	if (!cli->opt.quiet) {
		printf("shmrig-validate: %s (", d->label);
		for (uint32_t i = 0; i < ncodecs; i++)
			printf("%s%s", i ? ", " : "", d->codecs[codecs[i]]);
		printf("); seed %llu, %u values a check, timeout %g s\n",
		       (unsigned long long)cli->opt.seed, cli->opt.values, cli->opt.timeout_s);
		fflush(stdout);
	}
	st->results = calloc(nchecks * ncodecs, sizeof(*st->results));
	if (!st->results) {
		fprintf(stderr, "shmrig-validate: out of memory\n");
		return VAL_EXIT_USAGE;
	}
	for (size_t i = 0; i < val_catalogue_len && !val_interrupted; i++) {
		const struct val_check *check = &val_catalogue[i];

		if (!selected(cli, check))
			continue;
		for (uint32_t k = 0; k < ncodecs && !val_interrupted; k++) {
			struct val_result *r = &st->results[st->nresults];

			if (cli->level == VAL_REQUIRED && check->level != VAL_REQUIRED) {
				memset(r, 0, sizeof(*r));
				r->check = check;
				snprintf(r->codec, sizeof(r->codec), "%s", d->codecs[codecs[k]]);
				r->verdict = VAL_SKIP;
				snprintf(r->message, sizeof(r->message),
					 "a recommended check, and --level required");
			} else {
				val_run(check, cli->plugin, codecs[k], d->codecs[codecs[k]],
					&cli->opt, r);
			}
			if (val_interrupted) {
				json_decref(r->bench);
				break;
			}
			apply_known(&st->known, r);
			st->nresults++;
			counts[r->verdict]++;
			if (!cli->opt.quiet || r->verdict == VAL_FAIL || r->verdict == VAL_XFAIL) {
				val_report_line(stdout, r);
				fflush(stdout);
			}
		}
	}

	info.subject = d->label;
	info.plugin = cli->plugin;
	info.opt = &cli->opt;
	info.level = val_level_name(cli->level);
	info.check_regex = cli->check_regex;
	info.seconds = now_s() - start;
	status = counts[VAL_FAIL] ? VAL_EXIT_FAIL : VAL_EXIT_OK;
	if ((cli->json_path &&
	     val_report_json(cli->json_path, &info, st->results, st->nresults, err, sizeof(err))) ||
	    (cli->junit_path && val_report_junit(cli->junit_path, &info, st->results, st->nresults,
						 err, sizeof(err))) ||
	    (cli->bench_path && val_report_bench(cli->bench_path, &info, st->results, st->nresults,
						 err, sizeof(err)))) {
		fprintf(stderr, "shmrig-validate: %s\n", err);
		status = VAL_EXIT_USAGE;
	}
	if (val_interrupted)
		fprintf(stderr, "shmrig-validate: interrupted; the counts are of the checks that "
				"ran\n");
	printf("%d passed, %d failed, %d skipped, %d expected failures\n", counts[VAL_PASS],
	       counts[VAL_FAIL], counts[VAL_SKIP], counts[VAL_XFAIL]);
	return val_interrupted ? 128 + val_interrupted : status;
}

int main(int argc, char **argv)
{
	struct state *st = calloc(1, sizeof(*st));
	int status;

	if (!st) {
		fprintf(stderr, "shmrig-validate: out of memory\n");
		return VAL_EXIT_USAGE;
	}
	status = run(argc, argv, st);
	for (size_t i = 0; i < st->nresults; i++)
		json_decref(st->results[i].bench);
	free(st->results);
	val_known_free(&st->known);
	if (st->cli.have_regex)
		regfree(&st->cli.regex);
	free(st);
	return status;
}
