/* SPDX-License-Identifier: MIT */
/*
 * shmrig-bench: the benchmark suite. Records what the figures depend on in the
 * JSON "context" (next to Google Benchmark's own: date, CPU count and caches,
 * library_build_type), registers the suite's benchmarks and hands every
 * --benchmark_* flag to Google Benchmark.
 *
 * Repetitions and min-time come from the command line only (gbench.h says why).
 * The host name is not recorded by us; Google Benchmark's context has one.
 */
#include "gbench.h"
#include "suite.h"

#include <shmrig/topo.h>

#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>
#include <unistd.h>

#define UNKNOWN "unknown"

/* From bench/meson.build. */
#ifndef SHMRIG_BENCH_VERSION
#error "SHMRIG_BENCH_VERSION not defined: build with meson"
#endif

/*
 * The value after "key:" on the first line of a /proc file that starts with
 * key, leading blanks and the newline removed; false if there is none.
 */
static bool proc_field(const char *path, const char *key, char *value, size_t value_size)
{
	size_t key_len = strlen(key);
	char line[512];
	bool found = false;
	FILE *file = fopen(path, "r");

	if (!file)
		return false;
	while (!found && fgets(line, sizeof(line), file)) {
		char *start;

		if (strncmp(line, key, key_len) != 0)
			continue;
		start = line + key_len;
		/* /proc/cpuinfo pads the key with tabs before the colon. */
		start += strspn(start, " \t");
		if (*start != ':')
			continue;
		start += 1 + strspn(start + 1, " \t");
		start[strcspn(start, "\n")] = '\0';
		snprintf(value, value_size, "%s", start);
		found = true;
	}
	fclose(file);
	return found;
}

/* CPUs this process may run on (what nproc prints), else those online. */
static long usable_cpus(void)
{
	cpu_set_t set;

	if (sched_getaffinity(0, sizeof(set), &set) == 0)
		return CPU_COUNT(&set);
	return sysconf(_SC_NPROCESSORS_ONLN);
}

static void add_context_int(const char *key, long value)
{
	char text[32];

	snprintf(text, sizeof(text), "%ld", value);
	gbench_add_context(key, text);
}

static void add_context_proc(const char *key, const char *path, const char *field)
{
	char value[256];

	gbench_add_context(key, proc_field(path, field, value, sizeof(value)) ? value : UNKNOWN);
}

static void record_context(void)
{
	const char *git_rev = getenv("SHMRIG_GIT_REV");
	shmrig_topo *topo = shmrig_topo_system();
	struct utsname uts;

	gbench_add_context("shmrig_version", SHMRIG_BENCH_VERSION);
	gbench_add_context("shmrig_git_rev", git_rev && *git_rev ? git_rev : UNKNOWN);
	/* The build of shmrig under test; libbenchmark's own is library_build_type. */
	gbench_add_context("shmrig_build_type", SHMRIG_BENCH_BUILDTYPE);
	gbench_add_context("shmrig_debug_checks", SHMRIG_BENCH_DEBUG_CHECKS);
	/* Non-zero only in scripts/compare's proof: the spins every alloc makes on purpose
	 * (-Dproof_slowdown=true, $SHMRIG_PROOF_SPINS as the library reads it). */
	gbench_add_context("shmrig_proof_slowdown",
			   SHMRIG_BENCH_PROOF_SLOWDOWN && getenv("SHMRIG_PROOF_SPINS") ?
			   getenv("SHMRIG_PROOF_SPINS") : "0");
	gbench_add_context("shmrig_sanitize", SHMRIG_BENCH_SANITIZE);
	gbench_add_context("c_compiler", SHMRIG_BENCH_C_COMPILER);
	gbench_add_context("benchmark_version", SHMRIG_BENCH_BENCHMARK_VERSION);

	add_context_proc("cpu_model", "/proc/cpuinfo", "model name");
	add_context_int("nproc", usable_cpus());
	if (topo)
		add_context_int("numa_nodes", shmrig_topo_num_nodes(topo));
	else
		gbench_add_context("numa_nodes", UNKNOWN);
	add_context_proc("hugepages_free", "/proc/meminfo", "HugePages_Free");
	/* Free hugepages are counted in pages of this size (the default one). */
	add_context_proc("hugepage_size", "/proc/meminfo", "Hugepagesize");
	if (uname(&uts) == 0) {
		gbench_add_context("kernel_release", uts.release);
		gbench_add_context("machine", uts.machine);
	} else {
		gbench_add_context("kernel_release", UNKNOWN);
		gbench_add_context("machine", UNKNOWN);
	}
}

int main(int argc, char **argv)
{
	record_context();
#ifdef HAVE_BENCH_POOL
	bench_pool_register();
#endif
#ifdef HAVE_BENCH_CODEC
	bench_codec_register();
#endif
#ifdef HAVE_BENCH_CHANNEL
	bench_channel_register();
#endif
#ifdef HAVE_BENCH_CHANNEL_UCX
	bench_channel_ucx_register();
#endif
#ifdef HAVE_BENCH_WIRE
	bench_wire_register();
#endif
#ifdef HAVE_BENCH_PEER_SEED
	bench_peer_seed_register();
#endif
#ifdef HAVE_BENCH_PEER_UCX
	bench_peer_ucx_register();
#endif
#ifdef HAVE_BENCH_PEER_IOX
	bench_peer_iox_register();
#endif
	return gbench_main(argc, argv);
}
