/* SPDX-License-Identifier: MIT */
/*
 * shmrig-worker: a session's worker at an address, and a caller to try it.
 *
 *   shmrig-worker --listen ADDRESS   serve the built-in handlers (echo,
 *                                    checksum, scale) to callers one after
 *                                    another (shmrig_session_serve)
 *   shmrig-worker --call ADDRESS     connect a session to such a worker, call
 *                                    it N times with pseudo-random bytes, check
 *                                    every reply, print round trips
 *
 * The two processes share nothing (they may be on two hosts): requests and
 * replies travel flat over the "ucx" channel, each side keeps its blocks in
 * its own pool. Built only when the library has UCX. README "Across hosts".
 */
#include <shmrig/shmrig.h>

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <jansson.h>
#include <malloc.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#ifndef SHMRIG_WORKER_VERSION
#define SHMRIG_WORKER_VERSION "unknown"
#endif

/* Exit statuses (--help says them too). */
enum {
	EXIT_FINE = 0, /* --call: every reply checked; --listen: ended cleanly */
	EXIT_FAIL = 1, /* --call: a reply was wrong; --listen: could not set up or end */
	EXIT_USAGE = 2,
	EXIT_NO_WORKER = 3,   /* --call: could not connect (nobody serves, registries differ...) */
	EXIT_CALL_FAILED = 4, /* --call: a call failed (connection lost, the worker's error);
			       * --listen --once: the caller did not shut down */
};

#define DEFAULT_COUNT 100ul
#define MAX_COUNT 100000000ul
#define DEFAULT_SIZE ((size_t)64)
#define DEFAULT_TIMEOUT_MS 30000

struct config {
	const char *listen;  /* --listen ADDRESS */
	const char *call;    /* --call ADDRESS */
	const char *prefix;  /* NULL: $SHMRIG_PREFIX, else "shmrig" */
	const char *handler; /* --call: "echo" or "checksum" */
	size_t size;
	unsigned long count;
	int timeout_ms;
	bool once;
	bool json;
};

static void usage(FILE *out, const char *argv0)
{
	fprintf(out,
		"Usage: %s --listen ADDRESS [--prefix P] [--once] [--json]\n"
		"       %s --call ADDRESS [--handler echo|checksum] [--size BYTES] [--count N]\n"
		"                 [--timeout MS] [--prefix P] [--json]\n"
		"\n"
		"A shmrig session's worker at an address, over the \"ucx\" channel (tcp).\n"
		"\n"
		"--listen ADDRESS   serve the built-in handlers (echo, checksum, scale,\n"
		"                   echo_view) at\n"
		"                   HOST:PORT (PORT 0: any free port). The first line on stdout\n"
		"                   is \"listening on HOST:PORT\" (the port bound); then callers\n"
		"                   are served one after another, a line on stderr for each\n"
		"                   when it ends (calls served, how it ended; with --json also\n"
		"                   a JSON object a line on stdout). SIGINT or SIGTERM end it:\n"
		"                   the caller being served is disconnected, the pool closed.\n"
		"  --once           serve one caller, then exit\n"
		"--call ADDRESS     connect to a worker at HOST:PORT and call it --count times\n"
		"                   with --size pseudo-random bytes (the \"bytes\" codec), checking\n"
		"                   every reply: echo gives the same bytes back, checksum the\n"
		"                   request's shmrig_session_checksum. Prints calls, bytes, round\n"
		"                   trip p50/p99 (us) and MB/s (request and reply bytes, 10^6/s),\n"
		"                   or one JSON object with --json.\n"
		"  --handler H      echo (default) or checksum\n"
		"  --size BYTES     bytes per request, with K, M or G (default 64; 0 allowed)\n"
		"  --count N        calls (default %lu)\n"
		"  --timeout MS     each call's, and the connect's (default %d)\n"
		"-p, --prefix P     segment name prefix of this process's pool (default\n"
		"                   $SHMRIG_PREFIX, else \"%s\")\n"
		"-j, --json         JSON output\n"
		"-h, --help         this text\n"
		"\n"
		"Environment: UCX_TLS must allow tcp (\"tcp\", \"tcp,self\", ...); the pool's\n"
		"SHMRIG_ARENA_SIZE, SHMRIG_POOL_MAX.\n"
		"Exit status: 0 fine (--call: every reply checked; --listen: ended by a signal,\n"
		"or --once's caller shut down); 1 --call: a reply was wrong, --listen: could not\n"
		"listen or the pool leaked; 2 bad usage; 3 --call: could not connect; 4 --call:\n"
		"a call failed (the connection was lost, the worker's error), --listen --once:\n"
		"the caller went away without shutting down.\n",
		argv0, argv0, DEFAULT_COUNT, DEFAULT_TIMEOUT_MS, SHMRIG_DEFAULT_PREFIX);
}

/* 0: go on; 1: --help was printed; 2: bad usage (message printed). */
static int parse_args(int argc, char **argv, struct config *cfg)
{
	enum {
		OPT_LISTEN = 256,
		OPT_CALL,
		OPT_ONCE,
		OPT_HANDLER,
		OPT_SIZE,
		OPT_COUNT,
		OPT_TIMEOUT
	};
	static const struct option options[] = {
		{ "listen", required_argument, NULL, OPT_LISTEN },
		{ "call", required_argument, NULL, OPT_CALL },
		{ "once", no_argument, NULL, OPT_ONCE },
		{ "handler", required_argument, NULL, OPT_HANDLER },
		{ "size", required_argument, NULL, OPT_SIZE },
		{ "count", required_argument, NULL, OPT_COUNT },
		{ "timeout", required_argument, NULL, OPT_TIMEOUT },
		{ "prefix", required_argument, NULL, 'p' },
		{ "json", no_argument, NULL, 'j' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	bool call_options = false;
	unsigned long value;
	char *end;
	int opt;

	*cfg = (struct config){ .handler = "echo",
				.size = DEFAULT_SIZE,
				.count = DEFAULT_COUNT,
				.timeout_ms = DEFAULT_TIMEOUT_MS };
	while ((opt = getopt_long(argc, argv, "p:jh", options, NULL)) != -1) {
		switch (opt) {
		case OPT_LISTEN:
			cfg->listen = optarg;
			break;
		case OPT_CALL:
			cfg->call = optarg;
			break;
		case OPT_ONCE:
			cfg->once = true;
			break;
		case OPT_HANDLER:
			if (strcmp(optarg, "echo") != 0 && strcmp(optarg, "checksum") != 0) {
				fprintf(stderr, "shmrig-worker: --handler '%s': echo or checksum\n",
					optarg);
				return 2;
			}
			cfg->handler = optarg;
			call_options = true;
			break;
		case OPT_SIZE:
			if (shmrig_parse_size(optarg, &cfg->size)) {
				fprintf(stderr, "shmrig-worker: --size '%s': %s\n", optarg,
					shmrig_last_error());
				return 2;
			}
			call_options = true;
			break;
		case OPT_COUNT:
			errno = 0;
			value = strtoul(optarg, &end, 10);
			if (errno || end == optarg || *end || optarg[0] == '-' || value == 0 ||
			    value > MAX_COUNT) {
				fprintf(stderr,
					"shmrig-worker: --count '%s': want a number from 1 to %lu\n",
					optarg, MAX_COUNT);
				return 2;
			}
			cfg->count = value;
			call_options = true;
			break;
		case OPT_TIMEOUT:
			errno = 0;
			value = strtoul(optarg, &end, 10);
			if (errno || end == optarg || *end || optarg[0] == '-' || value == 0 ||
			    value > 3600000) {
				fprintf(stderr,
					"shmrig-worker: --timeout '%s': want milliseconds from 1 to "
					"3600000\n",
					optarg);
				return 2;
			}
			cfg->timeout_ms = (int)value;
			call_options = true;
			break;
		case 'p':
			cfg->prefix = optarg;
			break;
		case 'j':
			cfg->json = true;
			break;
		case 'h':
			usage(stdout, argv[0]);
			return 1;
		default:
			usage(stderr, argv[0]);
			return 2;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "shmrig-worker: unexpected argument '%s' (see --help)\n",
			argv[optind]);
		return 2;
	}
	if (!cfg->listen == !cfg->call) {
		fprintf(stderr, "shmrig-worker: give one of --listen ADDRESS and --call ADDRESS "
				"(see --help)\n");
		return 2;
	}
	if (cfg->listen && call_options) {
		fprintf(stderr, "shmrig-worker: --handler, --size, --count and --timeout are "
				"--call's\n");
		return 2;
	}
	if (cfg->call && cfg->once) {
		fprintf(stderr, "shmrig-worker: --once is --listen's\n");
		return 2;
	}
	return 0;
}

/* ---- what both sides open ---- */

struct rig {
	shmrig_pool *pool;
	shmrig_registry *reg;
	shmrig_session *sess;
};

/* A pool, the built-in codecs, a session (at `address`, or one that serves
 * the built-in handlers). 0, or 1 with the reason printed. */
static int rig_open(struct rig *rig, const char *prefix, const char *address, int timeout_ms)
{
	struct shmrig_pool_opts pool_opts = SHMRIG_SIZED(struct shmrig_pool_opts);
	struct shmrig_session_opts opts = SHMRIG_SIZED(struct shmrig_session_opts);
	const char *step;
	int ret;

	*rig = (struct rig){ 0 };
	pool_opts.prefix = prefix;
	opts.address = address;
	opts.call_timeout_ms = timeout_ms;
	opts.start_timeout_ms = timeout_ms;
	step = "opening the pool";
	ret = shmrig_pool_open(&pool_opts, &rig->pool);
	if (!ret) {
		step = "making the registry";
		ret = shmrig_registry_create(&rig->reg);
	}
	if (!ret)
		ret = shmrig_registry_add_builtins(rig->reg);
	if (!ret) {
		step = "making the session";
		ret = shmrig_session_create(&opts, rig->reg, rig->pool, &rig->sess);
	}
	if (!ret && !address)
		ret = shmrig_session_add_builtin_handlers(rig->sess);
	if (ret) {
		fprintf(stderr, "shmrig-worker: %s: %s\n", step, shmrig_last_error());
		return 1;
	}
	return 0;
}

/* Free it all; 0, or 1 if the pool still held blocks of ours (printed). */
static int rig_close(struct rig *rig)
{
	int ret = 0;

	shmrig_session_free(rig->sess);
	shmrig_registry_free(rig->reg);
	if (rig->pool && shmrig_pool_close(rig->pool)) {
		fprintf(stderr, "shmrig-worker: closing the pool: %s\n", shmrig_last_error());
		ret = 1;
	}
	*rig = (struct rig){ 0 };
	return ret;
}

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* ---- --listen ---- */

/* The session that serves, for the signal handler: it only stores a flag. */
static shmrig_session *serving;
static volatile sig_atomic_t stop_signal;

static void on_stop_signal(int sig)
{
	stop_signal = sig;
	shmrig_session_serve_stop(serving);
}

static const char *ending_words(int ret)
{
	switch (ret) {
	case 0:
		return "shut down";
	case -EPIPE:
		return "went away";
	case -EPROTO:
		return "protocol error";
	case -EINTR:
		return "stopped by a signal";
	default:
		return "failed";
	}
}

static int run_listen(const struct config *cfg)
{
	struct sigaction action = { .sa_handler = on_stop_signal };
	struct shmrig_session_stats stats = SHMRIG_SIZED(struct shmrig_session_stats);
	shmrig_channel_listener *listener = NULL;
	char address[256];
	unsigned long callers = 0;
	struct rig rig;
	int ret, code = EXIT_FINE;

	if (rig_open(&rig, cfg->prefix, NULL, 0)) {
		(void)rig_close(&rig);
		return EXIT_FAIL;
	}
	ret = shmrig_channel_listen(NULL, cfg->listen, &listener);
	if (!ret)
		ret = shmrig_channel_listener_address(listener, address, sizeof(address));
	if (ret) {
		fprintf(stderr, "shmrig-worker: cannot listen on %s: %s\n", cfg->listen,
			shmrig_last_error());
		shmrig_channel_listener_close(listener);
		(void)rig_close(&rig);
		return EXIT_FAIL;
	}
	serving = rig.sess;
	sigemptyset(&action.sa_mask);
	sigaction(SIGINT, &action, NULL);
	sigaction(SIGTERM, &action, NULL);
	printf("listening on %s\n", address);
	fflush(stdout);

	while (!stop_signal) {
		uint64_t calls_before;
		double t0;
		char why[512];

		if (shmrig_session_stats(rig.sess, &stats))
			break; /* cannot fail: the arguments are right */
		calls_before = stats.calls;
		t0 = now_s();
		ret = shmrig_session_serve(rig.sess, listener, -1);
		snprintf(why, sizeof(why), "%s", ret ? shmrig_last_error() : "");
		(void)!shmrig_session_stats(rig.sess, &stats);
		/* stopped while waiting for a caller, or with one that made no call yet */
		if (ret == -EINTR && stats.calls == calls_before)
			break;
		if (ret == -EINVAL || ret == -SHMRIG_EFORK || ret == -ENOMEM) {
			fprintf(stderr, "shmrig-worker: serving: %s\n", why);
			code = EXIT_FAIL;
			break;
		}
		callers++;
		fprintf(stderr,
			"shmrig-worker: caller %lu: connected, %" PRIu64
			" calls served in %.3f s, %s%s%s\n",
			callers, stats.calls - calls_before, now_s() - t0, ending_words(ret),
			ret ? ": " : "", why);
		if (cfg->json) {
			json_t *obj = json_pack("{s:s, s:I, s:I, s:s, s:i, s:s}", "event", "caller",
						"caller", (json_int_t)callers, "calls",
						(json_int_t)(stats.calls - calls_before), "ended",
						ending_words(ret), "status", ret, "error", why);

			if (obj) {
				json_dumpf(obj, stdout, JSON_COMPACT);
				json_decref(obj);
				printf("\n");
				fflush(stdout);
			}
		}
		if (ret == -EINTR)
			break;
		if (cfg->once) {
			code = ret ? EXIT_CALL_FAILED : EXIT_FINE;
			break;
		}
	}
	if (stop_signal)
		fprintf(stderr, "shmrig-worker: %s: stopping after %lu caller%s\n",
			strsignal(stop_signal), callers, callers == 1 ? "" : "s");
	shmrig_channel_listener_close(listener);
	serving = NULL;
	if (rig_close(&rig) && code == EXIT_FINE)
		code = EXIT_FAIL;
	return code;
}

/* ---- --call ---- */

/* splitmix64: the request bytes, deterministic per seed. */
static void fill_random(unsigned char *p, size_t len, uint64_t seed)
{
	uint64_t x = seed;

	for (size_t i = 0; i < len; i += 8) {
		uint64_t z = (x += 0x9e3779b97f4a7c15ull);

		z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
		z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
		z ^= z >> 31;
		memcpy(p + i, &z, len - i < 8 ? len - i : 8);
	}
}

static int compare_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

/* The q-quantile (0..1) of n sorted values: the nearest rank. */
static double quantile(const double *sorted, unsigned long n, double q)
{
	unsigned long rank = (unsigned long)(q * (double)n + 0.999999);

	return sorted[rank == 0 ? 0 : rank > n ? n - 1 : rank - 1];
}

/* Is `reply` the right answer to `request`? NULL, or what is wrong. */
static const char *check_reply(const char *handler, const struct shmrig_value *request,
			       const struct shmrig_value *reply, char *buf, size_t len)
{
	if (strcmp(handler, "echo") == 0) {
		if (reply->kind != SHMRIG_KIND_BYTES)
			snprintf(buf, len, "echo answered a value of kind %s, not bytes",
				 shmrig_kind_name(reply->kind));
		else if (reply->bytes.len != request->bytes.len)
			snprintf(buf, len, "echo answered %" PRIu64 " bytes for %" PRIu64,
				 reply->bytes.len, request->bytes.len);
		else if (reply->bytes.len &&
			 memcmp(reply->bytes.data, request->bytes.data, reply->bytes.len) != 0)
			snprintf(buf, len, "echo answered other bytes");
		else
			return NULL;
	} else {
		uint64_t expect, got;

		if (shmrig_session_checksum(request, &expect)) {
			snprintf(buf, len, "checksum of the request: %s", shmrig_last_error());
			return buf;
		}
		if (reply->kind != SHMRIG_KIND_NDARRAY ||
		    reply->array.dtype != SHMRIG_DTYPE_UINT64 || reply->array.ndim != 1 ||
		    reply->array.shape[0] != 1 || !reply->array.data) {
			snprintf(buf, len, "checksum answered something else than one uint64");
			return buf;
		}
		memcpy(&got, reply->array.data, sizeof(got));
		if (got == expect)
			return NULL;
		snprintf(buf, len, "checksum answered %016" PRIx64 ", the request's is %016" PRIx64,
			 got, expect);
	}
	return buf;
}

static int run_call(const struct config *cfg)
{
	unsigned char *data = malloc(cfg->size ? cfg->size : 1);
	double *rtt = calloc(cfg->count, sizeof(*rtt));
	struct shmrig_value request = { .kind = SHMRIG_KIND_BYTES };
	unsigned long done = 0, checked = 0;
	double total_s = 0, reply_bytes = 0;
	char error[1024] = "";
	struct rig rig = { 0 };
	int code = EXIT_FINE, ret;

	if (!data || !rtt) {
		fprintf(stderr, "shmrig-worker: out of memory for %zu bytes\n", cfg->size);
		free(data);
		free(rtt);
		return EXIT_FAIL;
	}
	fill_random(data, cfg->size, 0x5eed);
	request.bytes.data = data;
	request.bytes.len = cfg->size;
	if (rig_open(&rig, cfg->prefix, cfg->call, cfg->timeout_ms)) {
		code = EXIT_FAIL;
		goto out;
	}
	ret = shmrig_session_start(rig.sess);
	if (ret) {
		snprintf(error, sizeof(error), "cannot connect: %s", shmrig_last_error());
		code = EXIT_NO_WORKER;
		goto out;
	}
	for (done = 0; done < cfg->count; done++) {
		struct shmrig_value reply;
		char wrong[256];
		const char *why;
		double t0;

		/* each request differs from the last (its first 8 bytes: the call's number) */
		if (cfg->size)
			memcpy(data, &done, cfg->size < sizeof(done) ? cfg->size : sizeof(done));
		t0 = now_s();
		ret = shmrig_session_call(rig.sess, cfg->handler, 0, &request, &reply, 0);
		rtt[done] = now_s() - t0;
		if (ret) {
			snprintf(error, sizeof(error), "call %lu of %lu failed (%s): %s", done + 1,
				 cfg->count, strerror(-ret), shmrig_last_error());
			code = EXIT_CALL_FAILED;
			break;
		}
		total_s += rtt[done];
		reply_bytes += strcmp(cfg->handler, "echo") == 0 ? (double)cfg->size : 8.0;
		why = check_reply(cfg->handler, &request, &reply, wrong, sizeof(wrong));
		(void)!shmrig_value_release(&reply); /* a failure shows at the pool's close */
		if (why) {
			snprintf(error, sizeof(error), "call %lu of %lu: %s", done + 1, cfg->count,
				 why);
			code = EXIT_FAIL;
			break;
		}
		checked++;
	}
	if (code != EXIT_CALL_FAILED && shmrig_session_shutdown(rig.sess, 0) && !error[0]) {
		snprintf(error, sizeof(error), "shutdown: %s", shmrig_last_error());
		code = EXIT_CALL_FAILED;
	}
out:
	if (rig_close(&rig) && code == EXIT_FINE) {
		snprintf(error, sizeof(error), "this process's pool held blocks at its close");
		code = EXIT_FAIL;
	}
	{
		double bytes = (double)cfg->size * (double)checked + reply_bytes;
		double mbps = total_s > 0 ? bytes / total_s / 1e6 : 0;
		double p50 = 0, p99 = 0;

		if (checked) {
			qsort(rtt, checked, sizeof(*rtt), compare_double);
			p50 = quantile(rtt, checked, 0.50) * 1e6;
			p99 = quantile(rtt, checked, 0.99) * 1e6;
		}
		if (cfg->json) {
			json_t *obj = json_pack(
				"{s:s, s:s, s:s, s:I, s:I, s:I, s:f, s:f, s:f, s:b, s:i, s:s?}",
				"tool", "shmrig-worker " SHMRIG_WORKER_VERSION, "address",
				cfg->call, "handler", cfg->handler, "size", (json_int_t)cfg->size,
				"count", (json_int_t)cfg->count, "checked", (json_int_t)checked,
				"p50_us", p50, "p99_us", p99, "mb_per_s", mbps, "ok",
				code == EXIT_FINE, "exit", code, "error", error[0] ? error : NULL);

			if (obj) {
				json_dumpf(obj, stdout, JSON_COMPACT);
				json_decref(obj);
			}
			printf("\n");
		} else {
			printf("%-10s %-10s %12s %12s %12s %10s\n", "handler", "calls", "bytes",
			       "p50 us", "p99 us", "MB/s");
			printf("%-10s %-10lu %12zu %12.1f %12.1f %10.1f\n", cfg->handler, checked,
			       cfg->size, p50, p99, mbps);
		}
		if (error[0])
			fprintf(stderr, "shmrig-worker: %s: %s\n", cfg->call, error);
	}
	free(data);
	free(rtt);
	return code;
}

int main(int argc, char **argv)
{
	struct config cfg;
	int rc = parse_args(argc, argv, &cfg);

	if (rc)
		return rc == 1 ? EXIT_FINE : EXIT_USAGE;
	/* a peer that goes away is an error code, not a signal */
	signal(SIGPIPE, SIG_IGN);
	/* Each call mallocs and frees buffers the size of its payload (the flat
	 * frame, the message, UCX's copy, the receive). Above glibc's mmap
	 * threshold each is a fresh mapping whose pages fault in at first touch,
	 * and the kernel's return of it costs again: on the 2-vCPU VM this was
	 * measured on, that made 1 MiB echoes 20-50x slower than the copies
	 * themselves. Keep freed memory for reuse instead (buffers up to 32 MiB,
	 * glibc's largest threshold), unless the environment says otherwise. */
	if (!getenv("MALLOC_MMAP_THRESHOLD_"))
		mallopt(M_MMAP_THRESHOLD, 32 << 20);
	if (!getenv("MALLOC_TRIM_THRESHOLD_"))
		mallopt(M_TRIM_THRESHOLD, 256 << 20);
	/* A worker started again on the port of one that died must get it at once,
	 * whatever the old connections' TIME_WAIT: SO_REUSEADDR on the listener, as
	 * servers do (the environment's value, if set, wins). */
	if (cfg.listen)
		setenv("UCX_TCP_CM_REUSEADDR", "y", 0);
	return cfg.listen ? run_listen(&cfg) : run_call(&cfg);
}
