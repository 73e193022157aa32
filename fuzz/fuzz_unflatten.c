/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer target: flat frames from another host, which cannot be trusted.
 *
 * Each input is a flat frame (shmrig_frame_flatten's form). It goes through
 * shmrig_frame_unflatten into a small pool with a byte limit (so that sizes
 * near the limit take the -ENOMEM path half way through the blocks); what
 * unflattens is decoded with the built-in registry and the value released,
 * and a frame that does not decode is discarded. Nothing may crash, hang or
 * leak host memory (ASan, UBSan and libFuzzer's leak check see to that), and
 * the oracle below holds on every input:
 *   1. unflatten fails, or returns a frame that shmrig_frame_parse accepts,
 *      of at most the flat length, whose every buffer is a live block of this
 *      pool, handed to us and not claimed, holding exactly the content bytes
 *      of the flat frame;
 *   2. when the input is done (unflatten failed, or the value decoded and
 *      was released, or the frame was discarded), the pool holds no live
 *      block: a failed unflatten frees what it took, and nothing is leaked.
 * The seeds in fuzz/corpus_unflatten are real flat frames of each built-in
 * codec (and one frame of no buffer).
 *
 *   SHMRIG_FUZZ_WRITE_SEEDS=DIR fuzz_unflatten   writes those seeds to DIR and exits.
 */
#include "seeds.h"

#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <shmrig/frame.h>
#include <shmrig/pool.h>
#include <shmrig/registry.h>
#include <shmrig/value.h>

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The pool's byte limit: two arenas of 1 MiB, and large blocks up to it. */
#define POOL_ARENA (1u << 20)
#define POOL_MAX (4u << 20)

static shmrig_pool *pool;
static shmrig_registry *reg;

static void die(const char *what, int ret)
{
	fprintf(stderr, "fuzz_unflatten: %s: %s (%s)\n", what, shmrig_strerror(ret),
		shmrig_last_error());
	abort();
}

static void violation(const char *fmt, ...)
{
	va_list ap;

	fputs("fuzz_unflatten: oracle violated: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	abort();
}

static void close_pool(void)
{
	int ret;

	shmrig_registry_free(reg);
	ret = shmrig_pool_close(pool);
	if (ret)
		die("pool_close", ret);
}

static uint64_t live_blocks(void)
{
	struct shmrig_pool_stats stats = { .size = sizeof(stats) };
	int ret = shmrig_pool_stats(pool, &stats);

	if (ret)
		die("pool_stats", ret);
	return stats.live_blocks;
}

/* ---- seeds ---- */

static void write_seed(const char *dir, const char *name, const struct shmrig_value *value)
{
	char path[4096];
	size_t len, flat_len;
	void *frame, *flat;
	FILE *file;
	int ret = shmrig_registry_encode(reg, pool, value, &frame, &len);

	if (ret)
		die("encode", ret);
	ret = shmrig_frame_flatten(pool, frame, len, &flat, &flat_len);
	if (ret)
		die("flatten", ret);
	free(frame);
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	file = fopen(path, "wb");
	if (!file || fwrite(flat, 1, flat_len, file) != flat_len || fclose(file)) {
		perror(path);
		exit(1);
	}
	printf("%s: %zu bytes\n", path, flat_len);
	free(flat);
}

static void write_seeds(const char *dir)
{
	static const char text[] = "seed bytes, flat";
	struct shmrig_value v;

	fuzz_seed_values(dir, text, write_seed);
	memset(&v, 0, sizeof(v));
	v.kind = SHMRIG_KIND_BYTES;
	v.bytes.data = text;
	v.bytes.len = 0;
	write_seed(dir, "bytes_empty", &v);
}

/* ---- the target ---- */

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	struct shmrig_pool_opts opts = {
		.size = sizeof(struct shmrig_pool_opts),
		.prefix = "fu",
		.arena_size = POOL_ARENA,
		.max_bytes = POOL_MAX,
		.backing = SHMRIG_BACKING_PLAIN,
		.flags = SHMRIG_POOL_QUIET,
	};
	const char *seeds = getenv("SHMRIG_FUZZ_WRITE_SEEDS");
	int ret;

	(void)argc;
	(void)argv;
	ret = shmrig_pool_open(&opts, &pool);
	if (ret)
		die("pool_open", ret);
	ret = shmrig_registry_create(&reg);
	if (!ret)
		ret = shmrig_registry_add_builtins(reg);
	if (ret)
		die("registry", ret);
	atexit(close_pool);
	if (seeds) {
		write_seeds(seeds);
		exit(0);
	}
	return 0;
}

/* Oracle 1: the frame unflatten returned, against the flat bytes it came from. */
static void check_frame(const void *frame, size_t len, const char *flat, size_t flat_len)
{
	struct shmrig_frame f;
	size_t off;
	int ret;

	if ((uintptr_t)frame % 8)
		violation("the frame is not 8-aligned");
	if (len > flat_len)
		violation("a %zu-byte frame from %zu flat bytes", len, flat_len);
	ret = shmrig_frame_parse(frame, len, &f);
	if (ret)
		violation("the frame does not parse: %s (%s)", shmrig_strerror(ret),
			  shmrig_last_error());
	if (live_blocks() != f.nbuffers)
		violation("%llu live blocks for a frame of %u buffers",
			  (unsigned long long)live_blocks(), f.nbuffers);
	off = (len + 7) & ~(size_t)7;
	for (uint32_t i = 0; i < f.nbuffers; i++) {
		size_t content_size = (size_t)f.buffers[i].content_size;
		void *data;

		if (off > flat_len || content_size > flat_len - off)
			violation("buffer %u: %zu bytes past the flat frame's end", i,
				  content_size);
		ret = shmrig_pool_attach(pool, &f.buffers[i], &data);
		if (ret)
			violation("buffer %u is not a live block: %s", i, shmrig_strerror(ret));
		if (content_size && memcmp(data, flat + off, content_size))
			violation("buffer %u does not hold the flat frame's bytes", i);
		off += (content_size + 7) & ~(size_t)7;
		/* handed to us, not claimed: a decode could claim it */
	}
	if (off != flat_len)
		violation("the buffers end at %zu, the flat frame at %zu", off, flat_len);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	/* a flat frame must be 8-byte aligned; the fuzzer's bytes need not be */
	void *flat = aligned_alloc(8, (size / 8 + 1) * 8);
	struct shmrig_value value;
	void *frame;
	size_t len;
	int ret;

	if (!flat)
		return 0;
	if (size)
		memcpy(flat, data, size);
	ret = shmrig_frame_unflatten(pool, flat, size, &frame, &len);
	if (ret == 0) {
		check_frame(frame, len, flat, size);
		ret = shmrig_registry_decode(reg, pool, frame, len, &value);
		if (ret == 0) {
			ret = shmrig_value_release(&value);
			if (ret)
				violation("releasing the decoded value: %s (%s)",
					  shmrig_strerror(ret), shmrig_last_error());
		} else {
			/* decode frees what it claimed; a ref it never reached is ours */
			(void)!shmrig_frame_discard(pool, frame, len);
		}
		free(frame);
	} else if (ret != -EBADMSG && ret != -ENOMEM) {
		violation("unflatten said %s (%s): a flat frame is -EBADMSG or -ENOMEM",
			  shmrig_strerror(ret), shmrig_last_error());
	}
	/* Oracle 2 */
	if (live_blocks())
		violation("%llu live blocks after the input (unflatten %s)",
			  (unsigned long long)live_blocks(),
			  ret ? "or decode failed" : "and release");
	free(flat);
	return 0;
}
