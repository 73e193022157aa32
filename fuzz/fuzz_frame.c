/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer target: frames from a peer that cannot be trusted.
 *
 * Each input is a frame. It goes through shmrig_frame_parse,
 * shmrig_frame_to_json and shmrig_registry_decode (the built-in codecs, a
 * pool opened once). Nothing may crash, hang or leak host memory (ASan,
 * UBSan and libFuzzer's leak check see to that), and no pool block may stay
 * live after a decode and the release of its value (checked here).
 *
 * Refs in fuzzed frames name no segment, so decode stops at the first buffer
 * it attaches. To let the codecs get further, a ref whose name is empty is
 * replaced, before decode, by a fresh block of this pool: its name, offset,
 * size and generation become the block's; its content_size (clamped to the
 * block) and temporary flag stay the input's. Decode must have freed every
 * one of them when it returns (its own, or by the release of its value): each
 * ref must then be stale. The seeds in fuzz/corpus are real frames with their
 * names emptied that way.
 *
 *   SHMRIG_FUZZ_WRITE_SEEDS=DIR fuzz_frame   writes those seeds to DIR and exits.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <shmrig/frame.h>
#include <shmrig/pool.h>
#include <shmrig/registry.h>
#include <shmrig/value.h>

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Refs substituted per input, and the most bytes a substituted block gets. */
#define MAX_SUBSTITUTED 16
#define MAX_BLOCK (64u << 10)

static shmrig_pool *pool;
static shmrig_registry *reg;

static void die(const char *what, int ret)
{
	fprintf(stderr, "fuzz_frame: %s: %s (%s)\n", what, shmrig_strerror(ret),
		shmrig_last_error());
	abort();
}

static void close_pool(void)
{
	shmrig_registry_free(reg);
	shmrig_pool_close(pool);
}

/* ---- seeds ---- */

static void write_seed(const char *dir, const char *name, const struct shmrig_value *value)
{
	struct shmrig_frame_header h;
	char path[4096];
	size_t len;
	void *frame;
	FILE *file;
	int ret = shmrig_registry_encode(reg, pool, value, &frame, &len);

	if (ret)
		die("encode", ret);
	ret = shmrig_frame_discard(pool, frame, len);
	if (ret)
		die("discard", ret);
	/* empty names: the target substitutes blocks of its own */
	memcpy(&h, frame, sizeof(h));
	for (uint32_t i = 0; i < h.nbuffers; i++) {
		struct shmrig_ref *ref = (struct shmrig_ref *)((char *)frame + sizeof(h)) + i;

		memset(ref->name, 0, sizeof(ref->name));
		ref->offset = 0;
		ref->generation = 0;
	}
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	file = fopen(path, "wb");
	if (!file || fwrite(frame, 1, len, file) != len || fclose(file)) {
		perror(path);
		exit(1);
	}
	printf("%s: %zu bytes\n", path, len);
	free(frame);
}

static void write_seeds(const char *dir)
{
	static const double matrix[2][3] = { { 1, 2, 3 }, { 4, 5, 6 } };
	static const int64_t ids[4] = { 10, 20, 30, 40 };
	static const float weights[4] = { 0.5f, 1.5f, 2.5f, 3.5f };
	static const uint8_t flags[3] = { 1, 0, 1 };
	static const char text[] = "seed bytes";
	struct shmrig_named_array columns[2] = {
		{ "id",
		  { .dtype = SHMRIG_DTYPE_INT64,
		    .ndim = 1,
		    .shape = { 4 },
		    .order = 'C',
		    .data = (void *)ids } },
		{ "weight",
		  { .dtype = SHMRIG_DTYPE_FLOAT32,
		    .ndim = 1,
		    .shape = { 4 },
		    .order = 'C',
		    .data = (void *)weights } },
	};
	struct shmrig_named_array variables[2] = {
		{ "m",
		  { .dtype = SHMRIG_DTYPE_FLOAT64,
		    .ndim = 2,
		    .shape = { 2, 3 },
		    .order = 'F',
		    .data = (void *)matrix } },
		{ "flags",
		  { .dtype = SHMRIG_DTYPE_BOOL,
		    .ndim = 1,
		    .shape = { 3 },
		    .order = 'C',
		    .data = (void *)flags } },
	};
	struct shmrig_group group = { .name = "g", .nvariables = 2, .variables = variables };
	struct shmrig_value v;

	memset(&v, 0, sizeof(v));
	v.kind = SHMRIG_KIND_NDARRAY;
	v.array = variables[0].array;
	v.array.order = 'C';
	write_seed(dir, "ndarray", &v);

	memset(&v, 0, sizeof(v));
	v.kind = SHMRIG_KIND_TABLE;
	v.table.nrows = 4;
	v.table.ncolumns = 2;
	v.table.columns = columns;
	write_seed(dir, "table", &v);

	memset(&v, 0, sizeof(v));
	v.kind = SHMRIG_KIND_DATASET;
	v.dataset.ngroups = 1;
	v.dataset.groups = &group;
	write_seed(dir, "dataset", &v);

	memset(&v, 0, sizeof(v));
	v.kind = SHMRIG_KIND_BYTES;
	v.bytes.data = text;
	v.bytes.len = sizeof(text) - 1;
	write_seed(dir, "bytes", &v);
}

/* ---- the target ---- */

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	struct shmrig_pool_opts opts = {
		.prefix = "fz",
		.arena_size = 4u << 20,
		.max_bytes = 64u << 20,
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

/*
 * Give every ref with an empty name a live block of ours (see the top of the
 * file); their refs go to `blocks`. Returns how many.
 */
static unsigned substitute(void *frame, const struct shmrig_frame *f,
			   struct shmrig_ref blocks[MAX_SUBSTITUTED])
{
	unsigned done = 0;

	for (uint32_t i = 0; i < f->nbuffers && done < MAX_SUBSTITUTED; i++) {
		struct shmrig_ref ref, block;
		uint64_t want;
		void *data;
		int ret;

		memcpy(&ref, &f->buffers[i], sizeof(ref));
		if (ref.name[0])
			continue;
		want = ref.content_size < MAX_BLOCK ? ref.content_size : MAX_BLOCK;
		ret = shmrig_pool_alloc(pool, (size_t)want,
					ref.temporary ? SHMRIG_ALLOC_TEMPORARY : 0, 0, &block,
					&data);
		if (ret)
			die("pool_alloc", ret);
		memset(data, 0x5a, (size_t)want);
		block.content_size = ref.content_size < block.size ? ref.content_size : block.size;
		memcpy((char *)frame + sizeof(struct shmrig_frame_header) + i * sizeof(block),
		       &block, sizeof(block));
		blocks[done++] = block;
	}
	return done;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	/* a frame must be 8-byte aligned; the fuzzer's bytes need not be */
	void *frame = aligned_alloc(8, (size / 8 + 1) * 8);
	struct shmrig_ref blocks[MAX_SUBSTITUTED];
	struct shmrig_value value;
	struct shmrig_frame f;
	unsigned nblocks = 0;
	char *json = NULL;
	int parsed;

	if (!frame)
		return 0;
	memcpy(frame, data, size);
	parsed = shmrig_frame_parse(frame, size, &f);
	if (shmrig_frame_to_json(frame, size, reg, &json) == 0)
		free(json);
	if (parsed == 0)
		nblocks = substitute(frame, &f, blocks);
	if (shmrig_registry_decode(reg, pool, frame, size, &value) == 0)
		shmrig_value_release(&value);
	/*
	 * Decode frees every block of a frame it parsed, whatever else happened.
	 * (Attaching each costs little; shmrig_pool_stats would walk every block
	 * of the arena on every input.)
	 */
	for (unsigned i = 0; i < nblocks; i++) {
		void *data;

		if (shmrig_pool_attach(pool, &blocks[i], &data) == 0) {
			fprintf(stderr, "fuzz_frame: block %u (offset %llu) live after decode\n", i,
				(unsigned long long)blocks[i].offset);
			abort();
		}
	}
	free(frame);
	return 0;
}
