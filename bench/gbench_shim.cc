// SPDX-License-Identifier: MIT
//
// gbench_shim.cc: gbench.h over Google Benchmark 1.7, the only C++ in shmrig.
//
// A gbench_state is the benchmark::State the runner hands a body, a
// gbench_benchmark the CBenchmark (a benchmark::internal::Benchmark) that
// gbench_register() created: both are pointer casts.
//
// No C++ exception may unwind through a C frame: the bodies are C, compiled
// without -fexceptions, so nothing in them would run on the way out. Every
// entry point therefore catches: inside a body an exception (bad_alloc from a
// counter's map node, a label's string) becomes SkipWithError, and a
// registration call returns NULL.
//
// Google Benchmark checks misuse with BM_CHECK, which aborts the process, or
// with assert(). Arguments a C caller can get wrong are checked here first:
// inside a body they stop the benchmark with an error, at registration they
// return NULL and make gbench_main() refuse to run, so a mistyped setup never
// produces a partial set of results that could pass for a complete one.

#include "gbench.h"

#include <benchmark/benchmark.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <regex.h>
#include <string>
#include <vector>
#include <time.h>

namespace {

using benchmark::State;
using benchmark::internal::Benchmark;

// A benchmark whose body is a C function. A class of its own, rather than
// RegisterBenchmark() with a lambda, reaches the protected ArgsCnt(): Google
// Benchmark aborts when one benchmark gets argument lists of different
// lengths, the shim refuses the call first.
struct CBenchmark final : Benchmark {
	CBenchmark(const char *name, gbench_fn body_fn, void *body_arg)
	    : Benchmark(name), fn(body_fn), arg(body_arg)
	{
	}

	void Run(State &st) override;

	// May argument lists of `count` values be added? (none added yet: any)
	bool takes_args(int count) const
	{
		return ArgsCnt() == -1 || ArgsCnt() == count;
	}

	gbench_fn fn;
	void *arg;
};

// SHMRIG_BENCH_REFERENCE=1 (read once by gbench_main()): a reference is
// measured interleaved with every body, for scripts/compare.
//
// The reference is a fixed chain of dependent integer multiply-adds, timed. A
// slice of it runs between two batches of the timed loop (gbench_loop(), with
// the timer paused) once at least REFERENCE_EVERY_NS of the loop have passed
// since the last slice, so the slices sample the moments the body ran, and
// their median is the speed the CPU had then: a VM's vCPU that changes speed
// during a run changes the reference with the body, and the body's time divided
// by it keeps what the code does. (A slice that lost the CPU to another process
// is an outlier the median drops: time lost that way is not the reference's to
// cancel; scripts/compare takes CPU time for that.) A run takes about
// REFERENCE_STEPS' time in REFERENCE_EVERY_NS (~3 % here) longer, outside the
// timed region; a body whose loop is one long batch gets one slice after it.
bool reference_on = false;
constexpr int REFERENCE_STEPS = 2000;               // ~3-6 us
constexpr std::int64_t REFERENCE_EVERY_NS = 100000; // of the loop

// Per thread: each thread of a benchmark runs its own State.
struct reference_acc {
	bool started; // the loop has begun: its timer runs between batches
	bool paused;  // the body paused the timer (gbench_pause), or the loop ended
	std::int64_t last_ns;
	std::vector<double> slices_ns;
};
thread_local reference_acc reference;

std::int64_t monotonic_ns() noexcept
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (std::int64_t)t.tv_sec * 1000000000 + t.tv_nsec;
}

void reference_slice()
{
	std::int64_t t0 = monotonic_ns(), t1;
	std::uint64_t x = (std::uint64_t)t0 | 1u;

	for (int i = 0; i < REFERENCE_STEPS; i++)
		x = x * 6364136223846793005u + 1442695040888963407u + (x >> 29);
	benchmark::DoNotOptimize(x);
	t1 = monotonic_ns();
	reference.slices_ns.push_back((double)(t1 - t0));
	reference.last_ns = t1;
}

// Between two batches (the timer running, not paused by the body): a slice when due.
void reference_between_batches(State &st)
{
	if (!reference.started) {
		reference.started = true;
		reference.last_ns = monotonic_ns();
		return;
	}
	if (reference.paused || st.error_occurred() ||
	    monotonic_ns() - reference.last_ns < REFERENCE_EVERY_NS)
		return;
	st.PauseTiming();
	reference_slice();
	st.ResumeTiming();
}

// Set by a registration or configuration call that failed; gbench_main() then
// refuses to run. Registration happens on one thread, before gbench_main().
bool registration_failed = false;

State &state_of(gbench_state *st)
{
	return *reinterpret_cast<State *>(st);
}

const State &state_of(const gbench_state *st)
{
	return *reinterpret_cast<const State *>(st);
}

CBenchmark *benchmark_of(gbench_benchmark *b)
{
	return reinterpret_cast<CBenchmark *>(b);
}

gbench_benchmark *handle_of(CBenchmark *b)
{
	return reinterpret_cast<gbench_benchmark *>(b);
}

gbench_benchmark *registration_error(const char *function, const char *why)
{
	std::fprintf(stderr, "gbench: %s: %s\n", function, why);
	registration_failed = true;
	return nullptr;
}

// Stop the running benchmark with `message`. Google Benchmark requires that
// SkipWithError is called at most once per thread; the first message is the
// one reported.
void skip(State &st, const char *message) noexcept
{
	if (st.error_occurred())
		return;
	try {
		st.SkipWithError(message);
	} catch (...) {
		// It copies the message into a std::string: without memory even for
		// that, the benchmark runs on and only stderr has the error.
		std::fprintf(stderr, "gbench: cannot record the error: %s\n", message);
	}
}

// Run f inside a body; an exception stops the benchmark instead of reaching C.
template <typename F> void in_body(State &st, F f) noexcept
{
	try {
		f();
	} catch (const std::exception &e) {
		skip(st, e.what());
	} catch (...) {
		skip(st, "unknown C++ exception");
	}
}

// The body; with the reference on, its slices (see reference_between_batches)
// become the counters ref_ns, the median time of one slice, and ref_n, how many.
void CBenchmark::Run(State &st)
{
	if (reference_on) {
		reference.started = reference.paused = false;
		reference.slices_ns.clear();
	}
	fn(reinterpret_cast<gbench_state *>(&st), arg);
	if (!reference_on)
		return;
	in_body(st, [&st] {
		std::vector<double> &v = reference.slices_ns;

		if (v.empty())
			reference_slice();
		std::nth_element(v.begin(), v.begin() + v.size() / 2, v.end());
		st.counters["ref_ns"] =
		    benchmark::Counter(v[v.size() / 2], benchmark::Counter::kAvgThreads);
		st.counters["ref_n"] =
		    benchmark::Counter((double)v.size(), benchmark::Counter::kAvgThreads);
	});
}

// Run f on a registered benchmark, unless the call is invalid: `invalid` says
// why (nullptr: valid), and a call that adds argument lists of `arg_count`
// values must match the lists added before. NULL in gives NULL out, so a failed
// call early in a chain (already reported) does not crash the rest of it.
template <typename F>
gbench_benchmark *configure(gbench_benchmark *b, const char *function, int arg_count,
			    const char *invalid, F f)
{
	if (!b) {
		registration_failed = true;
		return nullptr;
	}
	if (invalid)
		return registration_error(function, invalid);
	if (arg_count && !benchmark_of(b)->takes_args(arg_count))
		return registration_error(function, "argument lists of different lengths");
	try {
		f(benchmark_of(b));
		return b;
	} catch (const std::exception &e) {
		return registration_error(function, e.what());
	} catch (...) {
		return registration_error(function, "unknown C++ exception");
	}
}

// gbench_main()'s exit status for a command line it refuses.
constexpr int usage_error = 2;

// A repetition count as Google Benchmark reads one (a 32-bit integer), and >= 1:
// it takes a negative count into a std::vector's reserve(), which throws from
// deep in the runner ("vector::reserve"), and a count of 0 as "run nothing".
bool valid_repetitions(const char *text)
{
	char *end;
	long value;

	errno = 0;
	value = std::strtol(text, &end, 10);
	return end != text && *end == '\0' && errno == 0 && value >= 1 && value <= INT32_MAX;
}

// Refuse (on stderr) a bad repetition count before Google Benchmark sees it:
// the last --benchmark_repetitions=N wins, as in its own parsing, and
// $BENCHMARK_REPETITIONS is its default.
bool repetitions_ok(int argc, char **argv)
{
	static const char flag[] = "--benchmark_repetitions=";
	const char *value = std::getenv("BENCHMARK_REPETITIONS");
	const char *source = "BENCHMARK_REPETITIONS=";

	if (value && !*value)
		value = nullptr;
	for (int i = 1; i < argc; i++)
		if (std::strncmp(argv[i], flag, sizeof(flag) - 1) == 0) {
			value = argv[i] + sizeof(flag) - 1;
			source = flag;
		}
	if (!value || valid_repetitions(value))
		return true;
	std::fprintf(stderr, "gbench: %s%s: the repetitions must be an integer from 1 to %d\n",
		     source, value, INT32_MAX);
	return false;
}

// Refuse (on stderr) a --benchmark_filter that is no regular expression, so
// that it is told apart from one that matches nothing. Read as Google
// Benchmark 1.7 reads it (FindBenchmarks): "" and "all" match everything, a
// leading '-' negates the rest, which is a POSIX extended regular expression
// (std::regex::extended in Debian's build). Checked with regcomp: gcc 12's
// std::regex trips -Wmaybe-uninitialized under the sanitizers' optimization.
bool filter_ok(const std::string &filter)
{
	std::string pattern = filter;
	regex_t compiled;
	char why[256];
	int ret;

	if (pattern.empty() || pattern == "all")
		return true;
	if (pattern[0] == '-')
		pattern.erase(0, 1);
	ret = regcomp(&compiled, pattern.c_str(), REG_EXTENDED | REG_NOSUB);
	if (ret == 0) {
		regfree(&compiled);
		return true;
	}
	regerror(ret, &compiled, why, sizeof(why));
	std::fprintf(stderr, "gbench: --benchmark_filter=%s is not a regular expression: %s\n",
		     filter.c_str(), why);
	return false;
}

} // namespace

extern "C" {

gbench_benchmark *gbench_register(const char *name, gbench_fn fn, void *arg)
{
	if (!name || !*name || !fn)
		return registration_error("gbench_register", "needs a name and a function");
	try {
		CBenchmark *b = new CBenchmark(name, fn, arg);

		// Takes ownership; the registry lives until the process exits.
		benchmark::internal::RegisterBenchmarkInternal(b);
		return handle_of(b);
	} catch (const std::exception &e) {
		return registration_error("gbench_register", e.what());
	} catch (...) {
		return registration_error("gbench_register", "unknown C++ exception");
	}
}

gbench_benchmark *gbench_arg(gbench_benchmark *b, int64_t x)
{
	return configure(b, "gbench_arg", 1, nullptr, [x](Benchmark *bm) { bm->Arg(x); });
}

gbench_benchmark *gbench_args2(gbench_benchmark *b, int64_t x, int64_t y)
{
	return configure(b, "gbench_args2", 2, nullptr, [x, y](Benchmark *bm) {
		bm->Args({ x, y });
	});
}

gbench_benchmark *gbench_range_mult(gbench_benchmark *b, int64_t lo, int64_t hi, int mult)
{
	const char *invalid = lo > hi || mult < 2 ? "needs lo <= hi and mult >= 2" : nullptr;

	return configure(b, "gbench_range_mult", 1, invalid, [lo, hi, mult](Benchmark *bm) {
		bm->RangeMultiplier(mult)->Range(lo, hi);
	});
}

// Names the one argument: Google Benchmark allows it only with single-value lists.
gbench_benchmark *gbench_arg_name(gbench_benchmark *b, const char *name)
{
	return configure(b, "gbench_arg_name", 1, name ? nullptr : "needs a name",
			 [name](Benchmark *bm) { bm->ArgName(name); });
}

gbench_benchmark *gbench_threads(gbench_benchmark *b, int threads)
{
	return configure(b, "gbench_threads", 0, threads < 1 ? "needs threads >= 1" : nullptr,
			 [threads](Benchmark *bm) { bm->Threads(threads); });
}

gbench_benchmark *gbench_use_manual_time(gbench_benchmark *b)
{
	return configure(b, "gbench_use_manual_time", 0, nullptr,
			 [](Benchmark *bm) { bm->UseManualTime(); });
}

gbench_benchmark *gbench_unit(gbench_benchmark *b, char unit)
{
	const char *invalid = nullptr;
	benchmark::TimeUnit time_unit = benchmark::kNanosecond;

	switch (unit) {
	case 'n':
		break;
	case 'u':
		time_unit = benchmark::kMicrosecond;
		break;
	case 'm':
		time_unit = benchmark::kMillisecond;
		break;
	case 's':
		time_unit = benchmark::kSecond;
		break;
	default:
		invalid = "unit must be 'n', 'u', 'm' or 's'";
	}
	return configure(b, "gbench_unit", 0, invalid,
			 [time_unit](Benchmark *bm) { bm->Unit(time_unit); });
}

bool gbench_loop(gbench_state *st, int64_t batch)
{
	State &state = state_of(st);

	// KeepRunningBatch asserts batch > 0; without assertions it would never stop.
	if (batch < 1) {
		skip(state, "gbench_loop: batch must be >= 1");
		return false;
	}
	try {
		bool more;

		if (reference_on)
			reference_between_batches(state);
		more = state.KeepRunningBatch(batch);
		if (!more)
			reference.paused = true; // the timer has stopped for good
		return more;
	} catch (const std::exception &e) {
		skip(state, e.what());
	} catch (...) {
		skip(state, "unknown C++ exception");
	}
	return false;
}

int64_t gbench_range(const gbench_state *st, int index)
{
	const State &state = state_of(st);

	if (index < 0) {
		// The runner's State is not const: only this interface says so.
		skip(const_cast<State &>(state), "gbench_range: negative index");
		return 0;
	}
	return state.range(static_cast<std::size_t>(index));
}

int64_t gbench_iterations(const gbench_state *st)
{
	return state_of(st).iterations();
}

int gbench_thread_index(const gbench_state *st)
{
	return state_of(st).thread_index();
}

int gbench_thread_count(const gbench_state *st)
{
	return state_of(st).threads();
}

// After SkipWithError the timer is stopped and Pause/ResumeTiming would abort:
// a body's error path may still reach these, so they do nothing then.
void gbench_pause(gbench_state *st)
{
	State &state = state_of(st);

	if (!state.error_occurred())
		in_body(state, [&state] { state.PauseTiming(); });
	reference.paused = true;
}

void gbench_resume(gbench_state *st)
{
	State &state = state_of(st);

	if (!state.error_occurred())
		in_body(state, [&state] { state.ResumeTiming(); });
	reference.paused = false;
}

void gbench_set_iteration_time(gbench_state *st, double seconds)
{
	State &state = state_of(st);

	if (!std::isfinite(seconds) || seconds < 0) {
		skip(state, "gbench_set_iteration_time: seconds must be finite and >= 0");
		return;
	}
	state.SetIterationTime(seconds);
}

void gbench_set_bytes_processed(gbench_state *st, int64_t bytes)
{
	State &state = state_of(st);

	in_body(state, [&state, bytes] { state.SetBytesProcessed(bytes); });
}

void gbench_set_items_processed(gbench_state *st, int64_t items)
{
	State &state = state_of(st);

	in_body(state, [&state, items] { state.SetItemsProcessed(items); });
}

void gbench_set_label(gbench_state *st, const char *label)
{
	State &state = state_of(st);

	if (!label) {
		skip(state, "gbench_set_label: NULL label");
		return;
	}
	in_body(state, [&state, label] { state.SetLabel(label); });
}

void gbench_counter(gbench_state *st, const char *name, double value, unsigned flags)
{
	const unsigned known = GBENCH_COUNTER_RATE | GBENCH_COUNTER_AVG_THREADS |
			       GBENCH_COUNTER_INVERT;
	State &state = state_of(st);
	int counter_flags = benchmark::Counter::kDefaults;

	if (!name || !*name) {
		skip(state, "gbench_counter: needs a name");
		return;
	}
	if (flags & ~known) {
		skip(state, "gbench_counter: unknown flag bits");
		return;
	}
	if (flags & GBENCH_COUNTER_RATE)
		counter_flags |= benchmark::Counter::kIsRate;
	if (flags & GBENCH_COUNTER_AVG_THREADS)
		counter_flags |= benchmark::Counter::kAvgThreads;
	if (flags & GBENCH_COUNTER_INVERT)
		counter_flags |= benchmark::Counter::kInvert;
	in_body(state, [&state, name, value, counter_flags] {
		state.counters[name] =
			benchmark::Counter(value,
					   static_cast<benchmark::Counter::Flags>(counter_flags));
	});
}

void gbench_skip(gbench_state *st, const char *message)
{
	skip(state_of(st), message ? message : "gbench_skip: no message");
}

void gbench_add_context(const char *key, const char *value)
{
	if (!key || !*key || !value) {
		registration_error("gbench_add_context", "needs a key and a value");
		return;
	}
	try {
		// A key added twice keeps its first value; Google Benchmark says so on stderr.
		benchmark::AddCustomContext(key, value);
	} catch (const std::exception &e) {
		registration_error("gbench_add_context", e.what());
	} catch (...) {
		registration_error("gbench_add_context", "unknown C++ exception");
	}
}

int gbench_main(int argc, char **argv)
{
	try {
		std::string filter;
		std::size_t matched;

		const char *reference = std::getenv("SHMRIG_BENCH_REFERENCE");

		if (!repetitions_ok(argc, argv))
			return usage_error;
		reference_on = reference && std::strcmp(reference, "1") == 0;
		// Consumes every --benchmark_* flag (and exits after --help).
		benchmark::Initialize(&argc, argv);
		// A flag it does not know, or whose value it cannot parse, is left in argv.
		if (benchmark::ReportUnrecognizedArguments(argc, argv))
			return usage_error;
		filter = benchmark::GetBenchmarkFilter();
		if (!filter_ok(filter))
			return usage_error;
		if (registration_failed) {
			std::fprintf(stderr, "gbench: a benchmark failed to register (see above); "
					     "not running\n");
			return 1;
		}
		matched = benchmark::RunSpecifiedBenchmarks();
		benchmark::Shutdown();
		// A mistyped filter must not pass for a run: no result is no success.
		if (matched == 0) {
			std::fprintf(stderr,
				     "gbench: no benchmark matches --benchmark_filter=%s "
				     "(--benchmark_list_tests=true lists them)\n",
				     filter.c_str());
			return usage_error;
		}
		return 0;
	} catch (const std::exception &e) {
		std::fprintf(stderr, "gbench: %s\n", e.what());
	} catch (...) {
		std::fprintf(stderr, "gbench: unknown C++ exception\n");
	}
	return 1;
}

} // extern "C"
