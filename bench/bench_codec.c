/* SPDX-License-Identifier: MIT */
/*
 * Codec and registry benchmarks: every shmrig figure next to its physical-limit
 * twin and the seed's way, registered side by side so that one run holds both.
 *
 *   codec/<codec>/encode/<size>         registry encode of a <size>-byte value into
 *                                       pool blocks, then discard of the frame (its
 *                                       blocks back to the cache) and free()
 *   codec/<codec>/decode/<size>         registry decode of that frame, then release
 *                                       of the value
 *   codec/memcpy/<size>                 the twin: memcpy of the same bytes into a
 *                                       pool block (pre-faulted shared memory)
 *   codec/seed_fresh_segment/<size>     the seed's encode: a fresh shm segment per
 *                                       message (shm_open, ftruncate, mmap, copy,
 *                                       munmap, close, shm_unlink)
 *   registry/dispatch/<n>               encode + decode + release of a 64-byte user
 *                                       value with n codecs of its kind registered,
 *                                       the first n-1 declining it (the worst case:
 *                                       encode asks every one in order)
 *
 * <codec> is each built-in: ndarray (one float64 array, decode is a view), table
 * (4 float64 columns in one pack, decode is views), dataset (2 groups of 2
 * 2-d float64 variables in one pack, decode is views) and bytes (the fallback:
 * one temporary buffer, decode copies out, so it grows with size by design).
 * Sizes: 64 B, 1 KiB, 64 KiB, 1 MiB, 16 MiB, 256 MiB; every codec's value holds
 * exactly <size> bytes of array data, the same bytes the twins copy.
 *
 * Method: the input bytes are deterministic (splitmix64 of the index; larger
 * inputs repeat the first MiB: no codec compresses, so repeats cost nothing).
 * Each body pins its thread to the first CPU, opens its own pool (max_bytes
 * 2 GiB, so that a 256 MiB block fits), warms it with untimed rounds of the
 * timed operation until two in a row agree (warm_up(): arenas and large
 * segments created and pre-faulted, the cache hot, the VM settled) and checks that no block is live before the timed loop; after it
 * every block is freed and shmrig_pool_close() must return 0. Batches shrink
 * with the bytes copied (1000 operations at 64 B, 16 at 1 MiB, 1 from 16 MiB
 * on; decodes of views always 1000) so that the shim stays out of small
 * figures and large ones still run few iterations.
 *
 * Decode claims one handed reference per ref of the frame (each becomes a
 * lease of the value, or is freed when temporary), and a frame's references
 * are claimed once. So before each batch of decodes, with the timer paused,
 * the frame's references are claimed, retained once per decode, and the frame
 * is handed to ourselves again (shmrig_frame_transfer_peer): the timed loop is
 * decode + shmrig_value_release() and nothing else.
 *
 * For ratios, run figure and twins interleaved, e.g.
 *
 *   build/bench/shmrig-bench --benchmark_filter='^(codec|registry)/' \
 *       --benchmark_min_time=0.05 --benchmark_repetitions=5 \
 *       --benchmark_enable_random_interleaving=true \
 *       --benchmark_out=codec.json --benchmark_out_format=json
 *
 * and compare medians: random interleaving shuffles the repetitions of every
 * benchmark, so a change of machine speed during the run lands on both sides of
 * a ratio instead of on one.
 */
#include "gbench.h"
#include "suite.h"

#include <shmrig/frame.h>
#include <shmrig/pool.h>
#include <shmrig/registry.h>
#include <shmrig/topo.h>

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <unistd.h>

/* Segments of these benchmarks carry this prefix, so a leftover is easy to tell. */
#define PREFIX "shmrigbench"
/* 256 MiB values, plus the blocks of a warm pool. */
#define POOL_MAX_BYTES ((size_t)2 << 30)
#define MAX_BATCH 1000
/* Bytes one batch may copy: 1000 at 64 B .. 16 at 1 MiB, 1 from 16 MiB on. */
#define BATCH_BYTES ((size_t)16 << 20)
#define DISPATCH_BYTES 64
/* Input bytes computed; larger inputs repeat them. */
#define PATTERN_BYTES ((size_t)1 << 20)
#define MAX_DISPATCH_CODECS 64

static const int64_t sizes[] = { 64, 1 << 10, 64 << 10, 1 << 20, 16 << 20, 256 << 20 };

static uint64_t splitmix64(uint64_t x)
{
	x += 0x9e3779b97f4a7c15ull;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
	return x ^ (x >> 31);
}

static int64_t batch_for(size_t size)
{
	size_t batch = BATCH_BYTES / size;

	return batch < 1 ? 1 : batch > MAX_BATCH ? MAX_BATCH : (int64_t)batch;
}

/* size bytes (a multiple of 8) of deterministic input, page-aligned; NULL: ENOMEM. */
static uint64_t *make_input(size_t size)
{
	size_t bytes = (size + 4095) & ~(size_t)4095;
	uint64_t *words = aligned_alloc(4096, bytes);

	if (!words)
		return NULL;
#ifdef MADV_POPULATE_WRITE
	/* Set-up time only: one call faults every page, where the fill below would
	 * take a fault a page (~17 us each on the development VM: 1 s at 256 MiB). */
	madvise(words, bytes, MADV_POPULATE_WRITE);
#endif
	/* The first MiB from splitmix64, then copies of it: a fill at memcpy speed. */
	for (size_t i = 0; i < size / 8 && i < PATTERN_BYTES / 8; i++)
		words[i] = splitmix64(i);
	for (size_t done = PATTERN_BYTES; done < size; done += PATTERN_BYTES)
		memcpy((char *)words + done, words,
		       size - done < PATTERN_BYTES ? size - done : PATTERN_BYTES);
	return words;
}

/* What a benchmark body holds: a warm pool, the registry, the input. */
struct bench {
	shmrig_pool *pool;
	shmrig_registry *reg;
	uint64_t *input;
};

static bool bench_open(gbench_state *st, struct bench *b, size_t size)
{
	struct shmrig_pool_opts opts = { .size = sizeof(struct shmrig_pool_opts),
					 .prefix = PREFIX,
					 .max_bytes = POOL_MAX_BYTES };
	int ret;

	memset(b, 0, sizeof(*b));
	if (!bench_pin(st))
		return false;
	b->input = make_input(size);
	ret = b->input ? 0 : -ENOMEM;
	if (!ret)
		ret = shmrig_pool_open(&opts, &b->pool);
	if (!ret)
		ret = shmrig_registry_create(&b->reg);
	if (!ret)
		ret = shmrig_registry_add_builtins(b->reg);
	if (ret) {
		bench_fail(st, "set up", ret);
		shmrig_registry_free(b->reg);
		if (b->pool) /* best effort: the set-up failed already */
			(void)!shmrig_pool_close(b->pool);
		free(b->input);
		return false;
	}
	return true;
}

/* Fails the benchmark unless the pool has no live block. */
static bool check_no_live(gbench_state *st, struct bench *b, const char *when)
{
	struct shmrig_pool_stats stats = SHMRIG_SIZED(struct shmrig_pool_stats);
	int ret = shmrig_pool_stats(b->pool, &stats);

	if (!ret && stats.live_blocks)
		ret = -SHMRIG_ELEAK;
	if (ret)
		bench_fail(st, when, ret);
	return ret == 0;
}

static void bench_close(gbench_state *st, struct bench *b)
{
	int ret = shmrig_pool_close(b->pool);

	if (ret)
		bench_fail(st, "pool_close", ret);
	shmrig_registry_free(b->reg);
	free(b->input);
}

/*
 * The untimed warm-up: op, again until two runs in a row take times within a
 * quarter of each other, at most WARM_MAX runs. On the development VM the
 * first runs after a set-up that faulted in hundreds of MiB can stall for
 * 80-360 ms with no page fault counted (a 256 MiB memcpy: 15 ms, then once
 * 364.7 ms; a bytes decode 17 ms, then once 218.4 ms), and such runs came right
 * after a warm-up that faulted (300-570 ms). With one warm-up run, that stall
 * fell in the first timed iteration, which Google Benchmark reports alone
 * once it exceeds the min time: a median of 3 repetitions at 6.6x memcpy.
 */
#define WARM_MAX 8

static int warm_up(int (*op)(void *ctx), void *ctx)
{
	uint64_t last = 0;

	for (int i = 0; i < WARM_MAX; i++) {
		uint64_t t0 = bench_now_ns();
		int ret = op(ctx);
		uint64_t t = bench_now_ns() - t0;

		if (ret)
			return ret;
		if (i && 4 * t <= 5 * last && 4 * last <= 5 * t)
			break;
		last = t;
	}
	return 0;
}

/* ---- the values ---- */

enum codec_case {
	CASE_NDARRAY,
	CASE_TABLE,
	CASE_DATASET,
	CASE_BYTES,
	CASE_COUNT
};

static const char *const case_names[CASE_COUNT] = { "ndarray", "table", "dataset", "bytes" };

/* A value over the input's bytes; it points into this struct, which must stay put. */
struct input_value {
	struct shmrig_value value;
	struct shmrig_named_array arrays[4];
	struct shmrig_group groups[2];
};

static void float64_array(struct shmrig_array *a, const void *data, uint64_t rows, uint64_t cols)
{
	memset(a, 0, sizeof(*a));
	a->dtype = SHMRIG_DTYPE_FLOAT64;
	a->ndim = cols ? 2 : 1;
	a->shape[0] = rows;
	a->shape[1] = cols;
	a->order = 'C';
	a->data = (void *)data;
}

/* size is a multiple of 64: four quarters of whole float64 pairs. */
static void build_value(struct input_value *in, enum codec_case c, const uint64_t *input,
			size_t size)
{
	static const char *const names[4] = { "v0", "v1", "v2", "v3" };
	size_t quarter = size / 4 / sizeof(double); /* elements */

	memset(in, 0, sizeof(*in));
	for (int i = 0; i < 4; i++)
		in->arrays[i].name = names[i];
	switch (c) {
	case CASE_NDARRAY:
		in->value.kind = SHMRIG_KIND_NDARRAY;
		float64_array(&in->value.array, input, size / sizeof(double), 0);
		break;
	case CASE_TABLE:
		in->value.kind = SHMRIG_KIND_TABLE;
		in->value.table.nrows = quarter;
		in->value.table.ncolumns = 4;
		in->value.table.columns = in->arrays;
		for (int i = 0; i < 4; i++)
			float64_array(&in->arrays[i].array, input + i * quarter, quarter, 0);
		break;
	case CASE_DATASET:
		in->value.kind = SHMRIG_KIND_DATASET;
		in->value.dataset.ngroups = 2;
		in->value.dataset.groups = in->groups;
		for (int g = 0; g < 2; g++) {
			in->groups[g].name = g ? "g1" : "g0";
			in->groups[g].nvariables = 2;
			in->groups[g].variables = &in->arrays[2 * g];
		}
		for (int i = 0; i < 4; i++)
			float64_array(&in->arrays[i].array, input + i * quarter, quarter / 2, 2);
		break;
	case CASE_BYTES:
	case CASE_COUNT:
		in->value.kind = SHMRIG_KIND_BYTES;
		in->value.bytes.data = input;
		in->value.bytes.len = size;
		break;
	}
}

/* ---- encode ---- */

static int encode_discard(struct bench *b, const struct shmrig_value *value)
{
	void *frame;
	size_t len;
	int ret = shmrig_registry_encode(b->reg, b->pool, value, &frame, &len);

	if (ret)
		return ret;
	ret = shmrig_frame_discard(b->pool, frame, len);
	free(frame);
	return ret;
}

struct encode_op {
	struct bench *b;
	const struct shmrig_value *value;
};

static int encode_op(void *ctx)
{
	struct encode_op *op = ctx;

	return encode_discard(op->b, op->value);
}

static void bm_encode(gbench_state *st, void *arg)
{
	enum codec_case c = (enum codec_case)(intptr_t)arg;
	size_t size = (size_t)gbench_range(st, 0);
	int64_t batch = batch_for(size);
	struct input_value in;
	struct bench b;
	int ret;

	if (!bench_open(st, &b, size))
		return;
	build_value(&in, c, b.input, size);
	ret = warm_up(encode_op, &(struct encode_op){ &b, &in.value });
	if (ret)
		bench_fail(st, "encode (warm-up)", ret);
	else if (check_no_live(st, &b, "live blocks after the warm-up"))
		while (gbench_loop(st, batch)) {
			for (int64_t i = 0; i < batch && !ret; i++)
				ret = encode_discard(&b, &in.value);
			if (ret) {
				bench_fail(st, "encode", ret);
				break;
			}
		}
	bench_close(st, &b);
	gbench_set_bytes_processed(st, gbench_iterations(st) * (int64_t)size);
	gbench_set_items_processed(st, gbench_iterations(st));
}

/* ---- decode ---- */

/*
 * Give the frame `times` more decodes: claim what the last decode left
 * (one reference a ref), take `times` more references a ref, and hand the
 * frame to ourselves again, every reference unclaimed.
 */
static int rearm_frame(struct bench *b, const void *frame, size_t len, const struct shmrig_frame *f,
		       uint64_t self, int64_t times)
{
	int ret = 0;

	for (uint32_t i = 0; i < f->nbuffers && !ret; i++)
		ret = shmrig_pool_claim(b->pool, &f->buffers[i]);
	for (uint32_t i = 0; i < f->nbuffers && !ret; i++)
		for (int64_t t = 0; t < times && !ret; t++)
			ret = shmrig_pool_retain(b->pool, &f->buffers[i]);
	return ret ? ret : shmrig_frame_transfer_peer(b->pool, frame, len, self);
}

/* Minor page faults of this process so far. */
static int64_t minor_faults(void)
{
	struct rusage ru;

	return getrusage(RUSAGE_SELF, &ru) ? 0 : (int64_t)ru.ru_minflt;
}

static int decode_release(struct bench *b, const void *frame, size_t len)
{
	struct shmrig_value out;
	int ret = shmrig_registry_decode(b->reg, b->pool, frame, len, &out);

	if (ret)
		return ret;
	bench_escape(&out);
	return shmrig_value_release(&out);
}

struct decode_op {
	struct bench *b;
	const void *frame;
	size_t len;
	const struct shmrig_frame *f;
	uint64_t self;
};

/* One more decode of the frame, armed for it first. */
static int decode_op(void *ctx)
{
	struct decode_op *op = ctx;
	int ret = rearm_frame(op->b, op->frame, op->len, op->f, op->self, 1);

	return ret ? ret : decode_release(op->b, op->frame, op->len);
}

static void bm_decode(gbench_state *st, void *arg)
{
	enum codec_case c = (enum codec_case)(intptr_t)arg;
	size_t size = (size_t)gbench_range(st, 0);
	/* views cost the same at any size; bytes copies out */
	int64_t batch = c == CASE_BYTES ? batch_for(size) : MAX_BATCH;
	struct input_value in;
	struct shmrig_frame f;
	void *frame = NULL;
	int64_t faults = 0;
	struct bench b;
	uint64_t self;
	size_t len;
	int ret;

	if (!bench_open(st, &b, size))
		return;
	build_value(&in, c, b.input, size);
	ret = shmrig_pool_peer(b.pool, getpid(), &self);
	if (!ret)
		ret = shmrig_registry_encode(b.reg, b.pool, &in.value, &frame, &len);
	if (!ret)
		ret = shmrig_frame_parse(frame, len, &f);
	if (!ret)
		ret = warm_up(decode_op, &(struct decode_op){ &b, frame, len, &f, self });
	while (!ret && gbench_loop(st, batch)) {
		gbench_pause(st);
		ret = rearm_frame(&b, frame, len, &f, self, batch);
		faults -= minor_faults();
		gbench_resume(st);
		for (int64_t i = 0; i < batch && !ret; i++)
			ret = decode_release(&b, frame, len);
		gbench_pause(st);
		faults += minor_faults();
		gbench_resume(st);
	}
	if (ret)
		bench_fail(st, "decode", ret);
	if (frame) {
		/* a failed decode freed the frame's blocks, so only the first error counts */
		ret = shmrig_frame_discard(b.pool, frame, len);
		if (ret)
			bench_fail(st, "discard the frame", ret);
		free(frame);
		check_no_live(st, &b, "live blocks after the frame was discarded");
	}
	bench_close(st, &b);
	gbench_set_bytes_processed(st, gbench_iterations(st) * (int64_t)size);
	gbench_set_items_processed(st, gbench_iterations(st));
	/* page faults in the timed decodes: a copy-out that misses hostmem's
	 * kept memory faults on every fresh page (a 256 MiB decode ~65k). In
	 * the label, not a counter: a counter that is 0 in every repetition
	 * gets a cv of NaN, which is not JSON. */
	if (c == CASE_BYTES) {
		char label[96];

		snprintf(label, sizeof(label), "copies out: not a view; %.1f page faults a decode",
			 gbench_iterations(st) ? (double)faults / (double)gbench_iterations(st) :
						 0.0);
		gbench_set_label(st, label);
	}
}

/* ---- the twins ---- */

struct memcpy_op {
	void *dst;
	const void *src;
	size_t size;
};

static int memcpy_op(void *ctx)
{
	struct memcpy_op *op = ctx;

	memcpy(op->dst, op->src, op->size);
	bench_escape(op->dst);
	return 0;
}

static void bm_memcpy(gbench_state *st, void *arg)
{
	size_t size = (size_t)gbench_range(st, 0);
	int64_t batch = batch_for(size);
	struct shmrig_ref ref;
	struct bench b;
	void *dst;
	int ret;

	(void)arg;
	if (!bench_open(st, &b, size))
		return;
	ret = shmrig_pool_alloc(b.pool, size, 0, 0, &ref, &dst);
	if (ret) {
		bench_fail(st, "alloc the destination", ret);
		bench_close(st, &b);
		return;
	}
	(void)warm_up(memcpy_op, &(struct memcpy_op){ dst, b.input, size });
	while (gbench_loop(st, batch)) {
		for (int64_t i = 0; i < batch; i++) {
			memcpy(dst, b.input, size);
			bench_escape(dst);
		}
	}
	ret = shmrig_pool_free(b.pool, &ref);
	if (ret)
		bench_fail(st, "free the destination", ret);
	bench_close(st, &b);
	gbench_set_bytes_processed(st, gbench_iterations(st) * (int64_t)size);
	gbench_set_items_processed(st, gbench_iterations(st));
}

static void bm_seed_fresh_segment(gbench_state *st, void *arg)
{
	size_t size = (size_t)gbench_range(st, 0);
	unsigned long serial = 0;
	uint64_t *input;
	int ret;

	(void)arg;
	if (!bench_pin(st))
		return;
	input = make_input(size);
	if (!input) {
		gbench_skip(st, "failed: out of memory for the input");
		return;
	}
	ret = bench_seed_segment("seedcodec", size, input, serial++);
	while (!ret && gbench_loop(st, 1))
		ret = bench_seed_segment("seedcodec", size, input, serial++);
	if (ret) {
		char message[256];

		snprintf(message, sizeof(message), "failed: seed encode: %s", strerror(-ret));
		gbench_skip(st, message);
	}
	free(input);
	gbench_set_bytes_processed(st, gbench_iterations(st) * (int64_t)size);
	gbench_set_items_processed(st, gbench_iterations(st));
}

/* ---- registry dispatch ---- */

/* What the dispatch codecs encode: the id of the one codec that takes it, and bytes. */
struct dispatch_value {
	uint32_t accept;
	unsigned char payload[DISPATCH_BYTES];
};

static uint32_t dispatch_ids[MAX_DISPATCH_CODECS];
static char dispatch_names[MAX_DISPATCH_CODECS][8];

static bool dispatch_can_encode(void *ctx, const struct shmrig_value *value)
{
	const struct dispatch_value *v = value->user;

	return *(const uint32_t *)ctx == v->accept;
}

static int dispatch_encode(void *ctx, struct shmrig_encoder *enc, const struct shmrig_value *value)
{
	const struct dispatch_value *v = value->user;
	void *data;
	int ret;

	(void)ctx;
	ret = shmrig_encoder_buffer(enc, sizeof(v->payload), 0, &data);
	if (ret < 0)
		return ret;
	memcpy(data, v->payload, sizeof(v->payload));
	return shmrig_meta_put_map(enc, 0);
}

static int dispatch_decode(void *ctx, struct shmrig_decoder *dec, struct shmrig_value *out)
{
	const void *data;
	uint64_t len;
	int ret;

	(void)ctx;
	out->kind = SHMRIG_KIND_USER;
	ret = shmrig_decoder_buffer(dec, 0, 0, &data, &len);
	if (ret)
		return ret;
	out->user = (void *)data; /* a view: the value leases the block */
	return len == DISPATCH_BYTES ? 0 : -EBADMSG;
}

/* A registry of n codecs of the user kind, each taking only values addressed to it. */
static int dispatch_registry(int n, shmrig_registry **out)
{
	shmrig_registry *reg;
	int ret = shmrig_registry_create(&reg);

	for (int i = 0; i < n && !ret; i++) {
		struct shmrig_codec codec = {
			.size = sizeof(struct shmrig_codec),
			.name = dispatch_names[i],
			.kinds = SHMRIG_KIND_BIT(SHMRIG_KIND_USER),
			.can_encode = dispatch_can_encode,
			.encode = dispatch_encode,
			.decode = dispatch_decode,
			.ctx = &dispatch_ids[i],
		};

		ret = shmrig_registry_register(reg, &codec);
		ret = ret < 0 ? ret : 0;
	}
	if (ret) {
		shmrig_registry_free(reg);
		return ret;
	}
	*out = reg;
	return 0;
}

static int round_trip(struct bench *b, const struct shmrig_value *value)
{
	void *frame;
	size_t len;
	int ret = shmrig_registry_encode(b->reg, b->pool, value, &frame, &len);

	if (ret)
		return ret;
	ret = decode_release(b, frame, len);
	free(frame);
	return ret;
}

static void bm_dispatch(gbench_state *st, void *arg)
{
	int n = (int)gbench_range(st, 0);
	struct dispatch_value v = { .accept = (uint32_t)(n - 1) };
	struct shmrig_value value = { .kind = SHMRIG_KIND_USER, .user = &v };
	shmrig_registry *reg;
	struct bench b;
	int ret;

	(void)arg;
	if (n < 1 || n > MAX_DISPATCH_CODECS) {
		gbench_skip(st, "failed: registry/dispatch: 1 to 64 codecs");
		return;
	}
	if (!bench_open(st, &b, DISPATCH_BYTES))
		return;
	ret = dispatch_registry(n, &reg);
	if (ret) {
		bench_fail(st, "register the codecs", ret);
		bench_close(st, &b);
		return;
	}
	/* the builtins' registry is not used here: the dispatch one replaces it */
	shmrig_registry_free(b.reg);
	b.reg = reg;
	memcpy(v.payload, b.input, sizeof(v.payload));
	ret = round_trip(&b, &value);
	if (!ret && shmrig_registry_count(reg) != n)
		ret = -EINVAL;
	if (ret)
		bench_fail(st, "round trip (warm-up)", ret);
	else if (check_no_live(st, &b, "live blocks after the warm-up"))
		while (gbench_loop(st, MAX_BATCH)) {
			for (int i = 0; i < MAX_BATCH && !ret; i++)
				ret = round_trip(&b, &value);
			if (ret) {
				bench_fail(st, "round trip", ret);
				break;
			}
		}
	bench_close(st, &b);
	gbench_set_items_processed(st, gbench_iterations(st));
}

/* ---- registration ---- */

static void each_size(gbench_benchmark *bm)
{
	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++)
		gbench_arg(bm, sizes[i]);
}

void bench_codec_register(void)
{
	char name[64];

	for (int i = 0; i < MAX_DISPATCH_CODECS; i++) {
		dispatch_ids[i] = (uint32_t)i;
		snprintf(dispatch_names[i], sizeof(dispatch_names[i]), "d%d", i);
	}
	for (int c = 0; c < CASE_COUNT; c++) {
		snprintf(name, sizeof(name), "codec/%s/encode", case_names[c]);
		each_size(gbench_register(name, bm_encode, (void *)(intptr_t)c));
		snprintf(name, sizeof(name), "codec/%s/decode", case_names[c]);
		each_size(gbench_register(name, bm_decode, (void *)(intptr_t)c));
	}
	each_size(gbench_register("codec/memcpy", bm_memcpy, NULL));
	each_size(gbench_unit(gbench_register("codec/seed_fresh_segment", bm_seed_fresh_segment,
					      NULL),
			      'u'));
	gbench_arg(gbench_arg(gbench_arg(gbench_register("registry/dispatch", bm_dispatch, NULL),
					 1),
			      8),
		   64);
}
