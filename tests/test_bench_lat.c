/* SPDX-License-Identifier: MIT */
/*
 * The round-trip histogram of shmrig-bench (bench/common.c, suite.h:
 * bench_lat_*), which gives the counters p50_us and p99_us: percentiles of
 * known samples, the precision over the whole range, samples beyond the top
 * bucket, a batch's samples, a histogram whose count disagrees with its
 * buckets. Plain checks, no cmocka: each failure is printed; exit 0 or 1.
 */
#include "suite.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

static int failures;

#define CHECK(cond, ...)                                                       \
	do {                                                                   \
		if (!(cond)) {                                                 \
			failures++;                                            \
			printf("FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond); \
			printf(__VA_ARGS__);                                   \
			printf("\n");                                          \
		}                                                              \
	} while (0)

/* got within rel (a fraction) of want */
static bool near(double got, double want, double rel)
{
	double diff = got > want ? got - want : want - got;

	return diff <= rel * want;
}

/* static: 31 KiB each, as a body keeps one */
static struct bench_lat lat;

static void known_samples(void)
{
	bench_lat_init(&lat);
	CHECK(bench_lat_percentile(&lat, 0.5) == 0, "empty: %g", bench_lat_percentile(&lat, 0.5));
	for (uint64_t ns = 1; ns <= 1000; ns++)
		bench_lat_record(&lat, ns);
	CHECK(lat.count == 1000 && lat.clamped == 0, "count %llu clamped %llu",
	      (unsigned long long)lat.count, (unsigned long long)lat.clamped);
	CHECK(near(bench_lat_percentile(&lat, 0.50), 500, 0.01), "p50 of 1..1000: %g",
	      bench_lat_percentile(&lat, 0.50));
	CHECK(near(bench_lat_percentile(&lat, 0.99), 990, 0.01), "p99 of 1..1000: %g",
	      bench_lat_percentile(&lat, 0.99));
	CHECK(near(bench_lat_percentile(&lat, 1.0), 1000, 0.01), "max of 1..1000: %g",
	      bench_lat_percentile(&lat, 1.0));
	/* below 128 ns a value has a bucket of its own: exact */
	CHECK(bench_lat_percentile(&lat, 0.001) == 1, "p0.1 of 1..1000: %g",
	      bench_lat_percentile(&lat, 0.001));
	CHECK(bench_lat_percentile(&lat, 0.1) == 100, "p10 of 1..1000: %g",
	      bench_lat_percentile(&lat, 0.1));
	/* q outside (0, 1]: the nearest end */
	CHECK(bench_lat_percentile(&lat, 0) == 1, "q 0: %g", bench_lat_percentile(&lat, 0));
	CHECK(near(bench_lat_percentile(&lat, 2), 1000, 0.01), "q 2: %g",
	      bench_lat_percentile(&lat, 2));

	/* a tail: p50 and p99 of a million quick trips and 1 % slow ones */
	bench_lat_init(&lat);
	for (int i = 0; i < 990000; i++)
		bench_lat_record(&lat, 700);
	for (int i = 0; i < 10000; i++)
		bench_lat_record(&lat, 50000);
	CHECK(near(bench_lat_percentile(&lat, 0.50), 700, 0.005), "p50: %g",
	      bench_lat_percentile(&lat, 0.50));
	CHECK(near(bench_lat_percentile(&lat, 0.99), 700, 0.005), "p99 (rank 990000): %g",
	      bench_lat_percentile(&lat, 0.99));
	CHECK(near(bench_lat_percentile(&lat, 0.995), 50000, 0.005), "p99.5: %g",
	      bench_lat_percentile(&lat, 0.995));
}

/* Any one sample from 1 ns to the top comes back within 0.4 % (the middle of its bucket). */
static void precision(void)
{
	int bad = 0;

	for (uint64_t ns = 1; ns <= BENCH_LAT_MAX_NS; ns = ns * 1031 / 1000 + 1) {
		double got;

		bench_lat_init(&lat);
		bench_lat_record(&lat, ns);
		got = bench_lat_percentile(&lat, 0.5);
		if (!near(got, (double)ns, 0.004) && bad++ < 5)
			CHECK(false, "one sample of %llu ns reads %g", (unsigned long long)ns, got);
	}
	/* the edges of the range */
	bench_lat_init(&lat);
	bench_lat_record(&lat, 10);
	bench_lat_record(&lat, 100000000000ull); /* 100 s */
	CHECK(bench_lat_percentile(&lat, 0.5) == 10, "10 ns: %g", bench_lat_percentile(&lat, 0.5));
	CHECK(near(bench_lat_percentile(&lat, 1), 1e11, 0.004), "100 s: %g",
	      bench_lat_percentile(&lat, 1));
	CHECK(lat.clamped == 0, "clamped %llu", (unsigned long long)lat.clamped);
}

/* Samples above the top bucket count there, and nothing overflows. */
static void clamping(void)
{
	bench_lat_init(&lat);
	bench_lat_record(&lat, BENCH_LAT_MAX_NS);
	CHECK(lat.clamped == 0, "the top value itself is not clamped");
	bench_lat_record(&lat, BENCH_LAT_MAX_NS + 1);
	bench_lat_record(&lat, UINT64_C(1) << 63);
	bench_lat_record(&lat, UINT64_MAX);
	CHECK(lat.count == 4 && lat.clamped == 3, "count %llu clamped %llu",
	      (unsigned long long)lat.count, (unsigned long long)lat.clamped);
	CHECK(lat.buckets[BENCH_LAT_BUCKETS - 1] == 4, "top bucket %llu",
	      (unsigned long long)lat.buckets[BENCH_LAT_BUCKETS - 1]);
	CHECK(near(bench_lat_percentile(&lat, 1), (double)BENCH_LAT_MAX_NS, 0.004),
	      "the top reads %g", bench_lat_percentile(&lat, 1));
}

/* A batch's samples: the spans between marks, the first joined to the tail. */
static void batches(void)
{
	static struct bench_lat_batch batch;
	uint64_t start = bench_now_ns() - 1000000;
	double seconds;

	bench_lat_init(&lat);
	batch.start_ns = start;
	batch.marks = 3;
	batch.mark_ns[0] = start + 100;
	batch.mark_ns[1] = start + 300;
	batch.mark_ns[2] = start + 600;
	seconds = bench_lat_batch_end(&batch, &lat);
	CHECK(lat.count == 3, "3 marks, %llu samples", (unsigned long long)lat.count);
	CHECK(bench_lat_percentile(&lat, 0.01) == 200, "the shortest: %g",
	      bench_lat_percentile(&lat, 0.01));
	CHECK(near(bench_lat_percentile(&lat, 0.5), 300, 0.004), "the middle: %g",
	      bench_lat_percentile(&lat, 0.5));
	/* the first trip: 100 ns before the first mark + from the last mark to the end */
	CHECK(bench_lat_percentile(&lat, 1) >= 0.99 * (100 + 1000000 - 600), "the first: %g",
	      bench_lat_percentile(&lat, 1));
	CHECK(seconds >= 1e-3 && seconds < 10, "batch time %g s", seconds);

	/* the real clock: marks in order, the samples add up to the batch */
	bench_lat_init(&lat);
	bench_lat_batch_start(&batch);
	for (int i = 0; i < 64; i++)
		bench_lat_mark(&batch);
	seconds = bench_lat_batch_end(&batch, &lat);
	CHECK(lat.count == 64, "64 marks, %llu samples", (unsigned long long)lat.count);
	CHECK(seconds > 0 && seconds < 1, "batch time %g s", seconds);

	/* more marks than the batch holds: timed, not recorded */
	bench_lat_init(&lat);
	bench_lat_batch_start(&batch);
	for (int i = 0; i < BENCH_LAT_BATCH_MAX + 1; i++)
		bench_lat_mark(&batch);
	seconds = bench_lat_batch_end(&batch, &lat);
	CHECK(lat.count == 0 && seconds > 0, "%llu samples, %g s", (unsigned long long)lat.count,
	      seconds);
}

/* A histogram filled by another process (bench_peer_iox.c) whose count says
 * more than its buckets hold: an answer from the buckets, no overrun. */
static void disagreeing_count(void)
{
	bench_lat_init(&lat);
	bench_lat_record(&lat, 5000);
	lat.count = 1000;
	CHECK(near(bench_lat_percentile(&lat, 0.99), 5000, 0.004), "%g",
	      bench_lat_percentile(&lat, 0.99));
	bench_lat_init(&lat);
	lat.count = UINT64_MAX;
	CHECK(bench_lat_percentile(&lat, 0.99) == 0, "no buckets: %g",
	      bench_lat_percentile(&lat, 0.99));
}

int main(void)
{
	known_samples();
	precision();
	clamping();
	batches();
	disagreeing_count();
	printf("test_bench_lat: %s\n", failures ? "FAILED" : "ok");
	return failures ? 1 : 0;
}
