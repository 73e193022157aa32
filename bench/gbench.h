/* SPDX-License-Identifier: MIT */
#ifndef SHMRIG_GBENCH_H
#define SHMRIG_GBENCH_H

/*
 * gbench: Google Benchmark (1.7) for benchmark bodies written in C.
 *
 * bench/gbench_shim.cc is the only C++ in the project; it wraps
 * benchmark::State and the registration API. A body is a C function that
 * drives the loop itself:
 *
 *   static void bm_alloc(gbench_state *st, void *arg)
 *   {
 *           size_t size = (size_t)gbench_range(st, 0);
 *           ... set up (not timed) ...
 *           while (gbench_loop(st, 1000))      // batches of 1000 iterations
 *                   for (int i = 0; i < 1000; i++)
 *                           ... one operation ...
 *           gbench_set_items_processed(st, gbench_iterations(st));
 *   }
 *
 * Register it with gbench_register() (+ gbench_arg() ...) before gbench_main();
 * in shmrig-bench, from the suite's bench_<name>_register() (suite.h).
 *
 * gbench_loop() runs Google Benchmark's KeepRunningBatch(batch): Debian's
 * libbenchmark is a debug build, and a per-iteration KeepRunning() would put
 * its overhead into the figures. Bodies run `batch` operations per true.
 *
 * Repetitions and min-time are set on the command line
 * (--benchmark_repetitions, --benchmark_min_time), not per benchmark, so that
 * names stay stable against a baseline.
 *
 * SHMRIG_BENCH_REFERENCE=1 in the environment (scripts/compare sets it) adds a
 * counter ref_ns to every run: the median time of a fixed chain of integer
 * multiply-adds run between the body's batches, with the timer paused, at
 * most every 0.1 ms of the loop (gbench_shim.cc). It tracks the CPU's speed
 * at the moments the body ran, so figure / ref_ns cancels a change of speed.
 * The slices cost a run ~3 % more wall time outside the timed region; a body
 * that pauses the timer (gbench_pause) gets no slice while paused.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct gbench_state gbench_state;         /* a benchmark::State */
typedef struct gbench_benchmark gbench_benchmark; /* a registered benchmark */

typedef void (*gbench_fn)(gbench_state *st, void *arg);

/* Register fn under `name`; arg is passed to every run. NULL on failure. */
gbench_benchmark *gbench_register(const char *name, gbench_fn fn, void *arg);

/* Configure a registered benchmark (each returns b, for chaining). An invalid
 * call (lo > hi, mult < 2, threads < 1, an unknown unit, argument lists of
 * different lengths) returns NULL, and NULL b gives NULL: a chain stays safe.
 * Either failure is reported on stderr and makes gbench_main() refuse to run. */
gbench_benchmark *gbench_arg(gbench_benchmark *b, int64_t x);
gbench_benchmark *gbench_args2(gbench_benchmark *b, int64_t x, int64_t y);
/* Arguments lo, the powers of mult between, and hi (RangeMultiplier + Range):
 * 3..100 by 8 gives 3, 8, 64, 100. */
gbench_benchmark *gbench_range_mult(gbench_benchmark *b, int64_t lo, int64_t hi, int mult);
gbench_benchmark *gbench_arg_name(gbench_benchmark *b, const char *name);
gbench_benchmark *gbench_threads(gbench_benchmark *b, int threads);
/* The body reports its own time per batch with gbench_set_iteration_time(). */
gbench_benchmark *gbench_use_manual_time(gbench_benchmark *b);
/* Unit of the reported time: 'n' ns, 'u' us, 'm' ms, 's' s. */
gbench_benchmark *gbench_unit(gbench_benchmark *b, char unit);

/* ---- inside a body ---- */

/* Run another batch of `batch` iterations? (KeepRunningBatch) */
bool gbench_loop(gbench_state *st, int64_t batch);
int64_t gbench_range(const gbench_state *st, int index);
int64_t gbench_iterations(const gbench_state *st);
int gbench_thread_index(const gbench_state *st);
int gbench_thread_count(const gbench_state *st);
void gbench_pause(gbench_state *st);  /* PauseTiming */
void gbench_resume(gbench_state *st); /* ResumeTiming */
/* Manual time: seconds the last batch took (with gbench_use_manual_time). */
void gbench_set_iteration_time(gbench_state *st, double seconds);
void gbench_set_bytes_processed(gbench_state *st, int64_t bytes);
void gbench_set_items_processed(gbench_state *st, int64_t items);
void gbench_set_label(gbench_state *st, const char *label);

/* User counters; flags combine: rate (per second), average over threads,
 * inverted (1/x: seconds per unit). */
#define GBENCH_COUNTER_RATE (1u << 0)
#define GBENCH_COUNTER_AVG_THREADS (1u << 1)
#define GBENCH_COUNTER_INVERT (1u << 2)
void gbench_counter(gbench_state *st, const char *name, double value, unsigned flags);

/* Stop this benchmark with an error message (SkipWithError); return from the body after. */
void gbench_skip(gbench_state *st, const char *message);

/* Context recorded in the JSON output ("context" object): key = value. */
void gbench_add_context(const char *key, const char *value);

/* Initialize (passes every --benchmark_* flag through), run the registered
 * benchmarks, shut down; once per process. Returns the process exit status,
 * each failure reported on stderr:
 *   0  the benchmarks that match the filter ran (a benchmark stopped by
 *      gbench_skip() does not change that);
 *   1  a failed registration (nothing runs), or an exception from the run;
 *   2  a command line refused before running: an unrecognized argument or a
 *      value Google Benchmark cannot parse, a --benchmark_repetitions (or
 *      $BENCHMARK_REPETITIONS) that is not an integer >= 1, a
 *      --benchmark_filter that is no regular expression, or one that matches
 *      no benchmark (also with --benchmark_list_tests). */
int gbench_main(int argc, char **argv);

#ifdef __cplusplus
}
#endif

#endif
