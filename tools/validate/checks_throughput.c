/* SPDX-License-Identifier: MIT */
/*
 * Recommended.Throughput: encode and decode of a value of 1 KiB, 1 MiB and
 * 64 MiB beside memcpy of the same bytes into a pool block, in the same
 * process, REPETITIONS times each, in turn (a change of machine speed lands
 * on every figure). The figures are Google Benchmark records (--bench-json),
 * named as shmrig-bench names them, so that scripts/report pairs each with its
 * memcpy twin and scripts/compare compares two runs:
 *
 *   codec/<codec>/encode/<size>   encode, then discard of the frame and free()
 *   codec/<codec>/decode/<size>   decode, then release of the value
 *   codec/memcpy/<size>           the twin: memcpy of the frame's bytes
 *
 * The method is shmrig-bench's (bench/bench_codec.c): the value's data are
 * the frame's bytes; a frame is decoded many times by claiming its references,
 * retaining them once per decode and handing it to ourselves again, untimed;
 * each figure is warmed up once, and runs batches until MIN_TIME_NS.
 * The check measures and reports; it fails only when an operation fails.
 */
#include "validate.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define MIN_TIME_NS 50e6
#define KiB ((size_t)1 << 10)
#define MiB ((size_t)1 << 20)

static const size_t sizes[] = { KiB, MiB, 64 * MiB };

static double now_ns(clockid_t clock)
{
	struct timespec ts;

	clock_gettime(clock, &ts);
	return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static int64_t batch_for(uint64_t bytes)
{
	return bytes <= 4 * KiB ? 256 : bytes <= 64 * KiB ? 16 : 1;
}

struct bench {
	struct val_ctx *ctx;
	shmrig_pool *pool;
	const struct val_value *v;
	uint64_t bytes; /* the frame's content bytes */
	void *frame;    /* decode: the frame decoded again and again */
	size_t len;
	struct shmrig_frame f;
	uint64_t self;
	void *dst; /* memcpy: a pool block */
	const void *src;
};

enum op {
	ENCODE,
	DECODE,
	MEMCPY
};
static const char *const op_names[] = { "encode", "decode", "memcpy" };

/* Give the frame `times` more decodes (bench_codec.c's rearm_frame). */
static int rearm(struct bench *b, int64_t times)
{
	int ret = 0;

	for (uint32_t i = 0; i < b->f.nbuffers && !ret; i++)
		ret = shmrig_pool_claim(b->pool, &b->f.buffers[i]);
	for (uint32_t i = 0; i < b->f.nbuffers && !ret; i++)
		for (int64_t t = 0; t < times && !ret; t++)
			ret = shmrig_pool_retain(b->pool, &b->f.buffers[i]);
	return ret ? ret : shmrig_frame_transfer_peer(b->pool, b->frame, b->len, b->self);
}

static int run_op(struct bench *b, enum op op, int64_t batch)
{
	int ret = 0;

	for (int64_t i = 0; i < batch && !ret; i++) {
		void *frame;
		size_t len;
		struct shmrig_value out;

		switch (op) {
		case ENCODE:
			ret = shmrig_registry_encode(b->ctx->target->reg, b->pool, &b->v->value,
						     &frame, &len);
			if (!ret) {
				ret = shmrig_frame_discard(b->pool, frame, len);
				free(frame);
			}
			break;
		case DECODE:
			ret = shmrig_registry_decode(b->ctx->target->reg, b->pool, b->frame, b->len,
						     &out);
			if (!ret)
				ret = shmrig_value_release(&out);
			break;
		default:
			memcpy(b->dst, b->src, (size_t)b->bytes);
			__asm__ volatile("" : : "r"(b->dst) : "memory"); /* keep the copy */
			break;
		}
	}
	return ret;
}

/* One repetition of one figure: a Google Benchmark iteration record. */
static int measure(struct bench *b, enum op op, size_t size, uint32_t repetition, double *ns_per_op)
{
	int64_t batch = batch_for(b->bytes);
	double start, cpu_start, elapsed = 0, cpu = 0;
	int64_t iterations = 0;
	char name[96];
	json_t *entry;
	int ret = 0;

	if (op == DECODE)
		ret = rearm(b, 1);
	if (!ret)
		ret = run_op(b, op, 1); /* warm-up: arenas, segments, caches */
	while (!ret && (elapsed < MIN_TIME_NS || iterations == 0)) {
		if (op == DECODE)
			ret = rearm(b, batch);
		if (ret)
			break;
		start = now_ns(CLOCK_MONOTONIC);
		cpu_start = now_ns(CLOCK_THREAD_CPUTIME_ID);
		ret = run_op(b, op, batch);
		cpu += now_ns(CLOCK_THREAD_CPUTIME_ID) - cpu_start;
		elapsed += now_ns(CLOCK_MONOTONIC) - start;
		iterations += batch;
	}
	if (ret)
		return ret;
	*ns_per_op = elapsed / (double)iterations;
	if (op == MEMCPY)
		snprintf(name, sizeof(name), "codec/memcpy/%zu", size);
	else
		snprintf(name, sizeof(name), "codec/%s/%s/%zu", b->ctx->target->codec->name,
			 op_names[op], size);
	entry = json_pack("{s:s, s:s, s:s, s:i, s:i, s:i, s:I, s:f, s:f, s:s, s:f, s:f}", "name",
			  name, "run_name", name, "run_type", "iteration", "repetitions",
			  (int)b->ctx->opt->repetitions, "repetition_index", (int)repetition,
			  "threads", 1, "iterations", (json_int_t)iterations, "real_time",
			  *ns_per_op, "cpu_time", cpu / (double)iterations, "time_unit", "ns",
			  "bytes_per_second", (double)b->bytes * 1e9 / *ns_per_op,
			  "items_per_second", 1e9 / *ns_per_op);
	if (entry && b->bytes != size) { /* a plugin's value: the size it has */
		char label[64];

		snprintf(label, sizeof(label), "%llu bytes", (unsigned long long)b->bytes);
		json_object_set_new(entry, "label", json_string(label));
	}
	if (!entry || json_array_append_new(b->ctx->bench, entry))
		return -ENOMEM;
	return 0;
}

static int compare_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

static const char *human_size(size_t size, char *buf, size_t len)
{
	if (size >= MiB)
		snprintf(buf, len, "%zu MiB", size / MiB);
	else
		snprintf(buf, len, "%zu KiB", size / KiB);
	return buf;
}

/*
 * The value of a figure of `size` bytes. The kit's kinds make it exactly; a
 * plugin's generator makes values up to a max_bytes, so the largest of its
 * edge cases and first seeded values that fits is taken (the edge cases
 * usually hold one of max_bytes), sized by its frame's buffers.
 */
static int figure_value(struct val_ctx *ctx, shmrig_pool *pool, size_t size, struct val_value *v,
			char *err, size_t err_len)
{
	const struct val_kind *kind = ctx->target->codec->nkinds ? ctx->target->codec->gens[0] :
								   NULL;
	uint64_t best_bytes = 0;
	int64_t best = -1;
	int ret = val_value_sized(ctx->target, size, v, err, err_len);

	if (ret != -ENOTSUP || !kind)
		return ret;
	for (uint32_t i = 0; i < kind->edge_cases + 8 && i < 64; i++) {
		struct shmrig_frame f;
		uint64_t bytes = 0;
		void *frame;
		size_t len;

		if (val_value_kind(ctx->target, 0, i, 1, size, v, err, err_len))
			continue;
		ret = v->accepted ? shmrig_registry_encode(ctx->target->reg, pool, &v->value,
							   &frame, &len) :
				    -ENOTSUP;
		val_value_free(v);
		if (ret)
			continue;
		if (!shmrig_frame_parse(frame, len, &f))
			for (uint32_t b = 0; b < f.nbuffers; b++)
				bytes += f.buffers[b].content_size;
		val_frame_drop(pool, frame, len);
		if (bytes <= size && bytes > best_bytes) {
			best = i;
			best_bytes = bytes;
		}
		if (best_bytes >= size - size / 8)
			break;
	}
	if (best < 0) {
		snprintf(err, err_len, "no value of its generator up to %zu bytes encodes", size);
		return -ENOTSUP;
	}
	return val_value_kind(ctx->target, 0, (uint32_t)best, 1, size, v, err, err_len);
}

/* Every figure of one size; the medians' GB/s appended to summary. */
static int one_size(struct val_ctx *ctx, shmrig_pool *pool, size_t size, char *summary,
		    size_t summary_len)
{
	struct bench b = { .ctx = ctx, .pool = pool };
	uint32_t reps = ctx->opt->repetitions;
	double *ns[3];
	char err[VAL_MSG_MAX / 2], label[32];
	struct shmrig_ref dst_ref;
	struct val_value v;
	size_t used = strlen(summary);
	int ret = figure_value(ctx, pool, size, &v, err, sizeof(err));

	if (ret) {
		val_fail(ctx, "%s", err);
		return ret;
	}
	human_size(size, label, sizeof(label));
	if (!v.accepted) {
		snprintf(summary + used, summary_len - used, "%s%s: declined", used ? "; " : "",
			 label);
		val_value_free(&v);
		return 0;
	}
	b.v = &v;
	val_progress(ctx, "%s values", label);
	val_at(ctx, "%s value", label);
	ret = shmrig_pool_peer(pool, getpid(), &b.self);
	if (!ret)
		ret = shmrig_registry_encode(ctx->target->reg, pool, &v.value, &b.frame, &b.len);
	if (!ret)
		ret = shmrig_frame_parse(b.frame, b.len, &b.f);
	for (uint32_t i = 0; !ret && i < b.f.nbuffers; i++)
		b.bytes += b.f.buffers[i].content_size;
	/* the twin copies the same bytes: the value's own (the first part of it) */
	if (!ret)
		ret = shmrig_pool_alloc(pool, b.bytes ? (size_t)b.bytes : 1, 0, 0, &dst_ref,
					&b.dst);
	if (ret) {
		val_fail(ctx, "%s value: %s", label, val_error(ret, err, sizeof(err)));
		if (b.frame)
			val_frame_drop(pool, b.frame, b.len);
		val_value_free(&v);
		return ret;
	}
	b.src = malloc(b.bytes ? (size_t)b.bytes : 1);
	if (b.src)
		memset((void *)b.src, 0x5a, (size_t)b.bytes);
	ns[0] = calloc(3 * (size_t)reps, sizeof(double));
	ns[1] = ns[0] + reps;
	ns[2] = ns[1] + reps;
	for (uint32_t r = 0; b.src && ns[0] && !ret && r < reps; r++)
		for (int op = ENCODE; !ret && op <= MEMCPY; op++) {
			ret = measure(&b, (enum op)op, size, r, &ns[op][r]);
			if (ret)
				val_fail(ctx, "%s value: %s: %s", label, op_names[op],
					 val_error(ret, err, sizeof(err)));
		}
	if (!b.src || !ns[0]) {
		val_fail(ctx, "out of memory");
		ret = -ENOMEM;
	}
	free((void *)b.src);
	val_frame_drop(pool, b.frame, b.len);
	if (shmrig_pool_free(pool, &dst_ref) && !ret)
		ret = -EIO;
	val_value_free(&v);
	if (ret) {
		free(ns[0]);
		return ret;
	}
	for (int op = ENCODE; op <= MEMCPY; op++)
		qsort(ns[op], reps, sizeof(double), compare_double);
	used = strlen(summary);
	snprintf(summary + used, summary_len - used,
		 "%s%s: encode %.2f, decode %.2f, memcpy %.2f GB/s", used ? "; " : "", label,
		 (double)b.bytes / ns[ENCODE][reps / 2], (double)b.bytes / ns[DECODE][reps / 2],
		 (double)b.bytes / ns[MEMCPY][reps / 2]);
	free(ns[0]);
	ctx->values++;
	return 0;
}

enum val_verdict val_check_throughput(struct val_ctx *ctx)
{
	char err[VAL_MSG_MAX / 2], summary[VAL_MSG_MAX];
	struct val_iter it = { .ctx = ctx };
	shmrig_pool *pool;
	int ret;

	ctx->bench = json_array();
	if (!ctx->bench)
		return val_fail(ctx, "out of memory");
	ret = val_pool_open(ctx, 0, 0, &pool);
	if (ret)
		return val_fail(ctx, "pool_open: %s", val_error(ret, err, sizeof(err)));
	summary[0] = '\0';
	for (size_t s = 0; s < sizeof(sizes) / sizeof(sizes[0]); s++)
		if (one_size(ctx, pool, sizes[s], summary, sizeof(summary)))
			return VAL_FAIL;
	if (!ctx->values) {
		(void)!val_pool_close(pool); /* nothing was allocated */
		return val_skip(ctx, "the codec declined the values of every size (%s)", summary);
	}
	val_pass(ctx, "%s", summary);
	return val_finish(ctx, &it, pool);
}
