/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer target: frames from a peer that cannot be trusted.
 *
 * Each input is a frame. It goes through shmrig_frame_parse,
 * shmrig_frame_to_json and shmrig_registry_decode (the built-in codecs, a
 * pool opened once). Nothing may crash, hang or leak host memory (ASan,
 * UBSan and libFuzzer's leak check see to that), and the oracle below holds:
 * a decoded value views only live blocks this process holds, and decode never
 * takes what it was not handed.
 *
 * Refs in fuzzed frames name no segment, so decode would stop at the first
 * buffer. Before decode, two kinds of ref are replaced:
 *   - a ref whose name is empty becomes a fresh block of this pool, handed
 *     over to this very process (shmrig_pool_transfer_peer), as a peer's
 *     frame would hand it: its name, offset, size and generation become the
 *     block's; its content_size (clamped to the block) and temporary flag stay
 *     the input's;
 *   - a ref whose name is "\x01" (first byte 1, the rest 0) becomes a ref to
 *     a part of the held block: a block this process allocated at start and
 *     holds for the whole run (never handed over), filled with HELD_BYTE. The
 *     input's offset picks the part (64-aligned, inside the block); its
 *     content_size (clamped) and temporary flag stay.
 * The oracle, checked on every input (any violation prints what and aborts):
 *   1. decode of a frame naming the held block fails; after decode and the
 *      release of the value the held block is live, still held (claiming it is
 *      refused) and its bytes are unchanged;
 *   2. after a successful decode, every pool view of the value (ndarray data,
 *      table columns, dataset variables) lies inside one live block this
 *      process owns, other than the held block, which keeps one reference;
 *   3. after a successful decode of a frame with buffers, decoding the same
 *      bytes again fails, and leaves the value's blocks live;
 *   4. every substituted block is freed (its ref is stale) when decode
 *      returns and the value is released, whether decode succeeded or not:
 *      decode claims every ref it can and frees what it claimed on an error.
 * The seeds in fuzz/corpus are real frames with their names emptied.
 *
 *   SHMRIG_FUZZ_WRITE_SEEDS=DIR fuzz_frame   writes those seeds to DIR and exits.
 */
#include "seeds.h"

#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <shmrig/frame.h>
#include <shmrig/pool.h>
#include <shmrig/registry.h>
#include <shmrig/value.h>

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Refs substituted per input, and the most bytes a substituted block gets. */
#define MAX_SUBSTITUTED 16
#define MAX_BLOCK (64u << 10)
/* The held block: its size and the byte it is filled with. */
#define HELD_SIZE 4096u
#define HELD_BYTE 0xa5

static shmrig_pool *pool;
static shmrig_registry *reg;
/* This process as a transfer target: substituted blocks are handed to it. */
static uint64_t self_peer;
/* A block this process holds for the whole run; never handed over. */
static struct shmrig_ref held;
static void *held_data;

static void die(const char *what, int ret)
{
	fprintf(stderr, "fuzz_frame: %s: %s (%s)\n", what, shmrig_strerror(ret),
		shmrig_last_error());
	abort();
}

static void violation(const char *fmt, ...)
{
	va_list ap;

	fputs("fuzz_frame: oracle violated: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	abort();
}

/* At exit, between inputs: the held block is the only one left, so a close
 * that finds another (-SHMRIG_ELEAK) is an input's leak the oracles missed. */
static void close_pool(void)
{
	int ret;

	if (held_data) {
		ret = shmrig_pool_free(pool, &held);
		if (ret)
			die("pool_free (held block)", ret);
	}
	shmrig_registry_free(reg);
	ret = shmrig_pool_close(pool);
	if (ret)
		die("pool_close", ret);
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
	fuzz_seed_values(dir, "seed bytes", write_seed);
}

/* ---- the target ---- */

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	struct shmrig_pool_opts opts = {
		.size = sizeof(struct shmrig_pool_opts),
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
	ret = shmrig_pool_peer(pool, getpid(), &self_peer);
	if (ret)
		die("pool_peer", ret);
	ret = shmrig_pool_alloc(pool, HELD_SIZE, 0, 0, &held, &held_data);
	if (ret)
		die("pool_alloc (held block)", ret);
	memset(held_data, HELD_BYTE, held.size);
	return 0;
}

/* The name that asks for the held block: "\x01", the rest zero. */
static bool names_held(const struct shmrig_ref *ref)
{
	static const char name[SHMRIG_NAME_MAX] = "\x01";

	return memcmp(ref->name, name, sizeof(name)) == 0;
}

/* The ref replacing `ref` in the frame: a part of the held block (see the top of the file). */
static struct shmrig_ref held_part(const struct shmrig_ref *ref)
{
	struct shmrig_ref part = held;
	uint64_t skip = ref->offset % held.size / SHMRIG_POOL_MIN_BLOCK * SHMRIG_POOL_MIN_BLOCK;

	part.offset += skip;
	part.size -= skip;
	part.content_size = ref->content_size < part.size ? ref->content_size : part.size;
	part.temporary = ref->temporary;
	return part;
}

/*
 * Replace the refs with an empty name by fresh blocks handed to this process,
 * and those named "\x01" by parts of the held block (see the top of the file).
 * The fresh blocks' refs go to `blocks`; returns how many. `*nheld` counts the
 * refs to the held block.
 */
static unsigned substitute(void *frame, const struct shmrig_frame *f,
			   struct shmrig_ref blocks[MAX_SUBSTITUTED], unsigned *nheld)
{
	struct shmrig_ref *refs =
		(struct shmrig_ref *)((char *)frame + sizeof(struct shmrig_frame_header));
	unsigned done = 0;

	*nheld = 0;
	for (uint32_t i = 0; i < f->nbuffers; i++) {
		struct shmrig_ref ref, block;
		uint64_t want;
		void *data;
		int ret;

		memcpy(&ref, &f->buffers[i], sizeof(ref));
		if (names_held(&ref)) {
			block = held_part(&ref);
			memcpy(&refs[i], &block, sizeof(block));
			++*nheld;
			continue;
		}
		if (ref.name[0] || done == MAX_SUBSTITUTED)
			continue;
		want = ref.content_size < MAX_BLOCK ? ref.content_size : MAX_BLOCK;
		ret = shmrig_pool_alloc(pool, (size_t)want,
					ref.temporary ? SHMRIG_ALLOC_TEMPORARY : 0, 0, &block,
					&data);
		if (ret)
			die("pool_alloc", ret);
		memset(data, 0x5a, (size_t)want);
		/* as a peer's frame would: the block is handed over, unclaimed */
		ret = shmrig_pool_transfer_peer(pool, &block, self_peer);
		if (ret)
			die("pool_transfer_peer", ret);
		block.content_size = ref.content_size < block.size ? ref.content_size : block.size;
		memcpy(&refs[i], &block, sizeof(block));
		blocks[done++] = block;
	}
	return done;
}

/* ---- the oracle ---- */

/* [start, end) of a block in this process's address space */
struct range {
	uintptr_t start, end;
};

/* Live blocks this process owns, collected by shmrig_pool_for_each_live. */
struct owned {
	struct shmrig_block_info *infos;
	size_t count, cap;
	bool out_of_memory;
};

static void collect_owned(void *arg, const struct shmrig_block_info *info)
{
	struct owned *owned = arg;

	if (info->owner != getpid())
		return;
	if (owned->count == owned->cap) {
		size_t cap = owned->cap ? 2 * owned->cap : 32;
		struct shmrig_block_info *grown = realloc(owned->infos, cap * sizeof(*grown));

		if (!grown) {
			owned->out_of_memory = true;
			return;
		}
		owned->infos = grown;
		owned->cap = cap;
	}
	owned->infos[owned->count++] = *info;
}

static bool same_block(const struct shmrig_ref *a, const struct shmrig_ref *b)
{
	return strncmp(a->name, b->name, sizeof(a->name)) == 0 && a->offset == b->offset;
}

/*
 * The address ranges of the live blocks this process owns, but the held block
 * (a value may not view it), which must still have exactly one reference.
 * Returns how many; *ranges is malloc'd.
 */
static size_t owned_ranges(struct range **ranges)
{
	struct owned owned = { 0 };
	size_t n = 0;
	bool held_seen = false;
	int ret = shmrig_pool_for_each_live(pool, collect_owned, &owned);

	if (ret < 0)
		die("pool_for_each_live", ret);
	if (owned.out_of_memory)
		die("collecting live blocks", -ENOMEM);
	*ranges = malloc((owned.count ? owned.count : 1) * sizeof(**ranges));
	if (!*ranges)
		die("collecting live blocks", -ENOMEM);
	for (size_t i = 0; i < owned.count; i++) {
		const struct shmrig_block_info *info = &owned.infos[i];
		void *data;

		if (same_block(&info->ref, &held)) {
			if (info->refcount != 1)
				violation("the held block has %u references after decode, not 1",
					  info->refcount);
			held_seen = true;
			continue;
		}
		/* a block we cannot attach gives no range: nothing may view it */
		if (shmrig_pool_attach(pool, &info->ref, &data))
			continue;
		(*ranges)[n].start = (uintptr_t)data;
		(*ranges)[n].end = (uintptr_t)data + info->ref.size;
		n++;
	}
	if (!held_seen)
		violation("the held block is not live after decode");
	free(owned.infos);
	return n;
}

static void check_view(const char *what, uint32_t i, uint32_t j, const struct shmrig_array *array,
		       const struct range *ranges, size_t nranges)
{
	uintptr_t data = (uintptr_t)array->data;
	uint64_t nbytes;

	if (shmrig_array_nbytes(array, &nbytes))
		violation("%s %u/%u: decoded with a bad description", what, i, j);
	if (!array->data && nbytes == 0)
		return;
	for (size_t k = 0; k < nranges; k++)
		if (data >= ranges[k].start && data <= ranges[k].end &&
		    nbytes <= ranges[k].end - data)
			return;
	violation("%s %u/%u: [%p, +%llu) is not inside a live block this process owns", what, i, j,
		  array->data, (unsigned long long)nbytes);
}

/* Oracle 2: every pool view of a decoded value lies inside a live block of ours. */
static void check_views(const struct shmrig_value *value)
{
	struct range *ranges;
	size_t nranges = owned_ranges(&ranges);

	switch (value->kind) {
	case SHMRIG_KIND_NDARRAY:
		check_view("ndarray", 0, 0, &value->array, ranges, nranges);
		break;
	case SHMRIG_KIND_TABLE:
		for (uint32_t i = 0; i < value->table.ncolumns; i++)
			check_view("table column", i, 0, &value->table.columns[i].array, ranges,
				   nranges);
		break;
	case SHMRIG_KIND_DATASET:
		for (uint32_t i = 0; i < value->dataset.ngroups; i++) {
			const struct shmrig_group *group = &value->dataset.groups[i];

			for (uint32_t j = 0; j < group->nvariables; j++)
				check_view("dataset variable", i, j, &group->variables[j].array,
					   ranges, nranges);
		}
		break;
	default:
		break; /* bytes are copied out of their temporary buffer: no view */
	}
	free(ranges);
}

/* Oracle 3: a frame's refs are taken once; a failed replay leaves the value's blocks live. */
static void check_replay(const void *frame, size_t size, const struct shmrig_ref *blocks,
			 unsigned nblocks)
{
	struct shmrig_value again;
	int ret = shmrig_registry_decode(reg, pool, frame, size, &again);

	if (ret == 0)
		violation("the same frame decoded twice");
	for (unsigned i = 0; i < nblocks; i++) {
		void *data;

		if (!blocks[i].temporary && shmrig_pool_attach(pool, &blocks[i], &data))
			violation("block %u (offset %llu), leased by the value, freed by a "
				  "replay that failed (%s)",
				  i, (unsigned long long)blocks[i].offset, shmrig_strerror(ret));
	}
}

/* Oracle 1: the held block is live, still held (not handed: claiming it is refused), unchanged. */
static void check_held(void)
{
	const unsigned char *bytes;
	void *data;
	int ret = shmrig_pool_attach(pool, &held, &data);

	if (ret)
		violation("the held block is gone after decode: attach says %s",
			  shmrig_strerror(ret));
	ret = shmrig_pool_claim(pool, &held);
	if (ret != -SHMRIG_ECLAIMED)
		violation("claiming the held block says %s, not that it is claimed already",
			  ret ? shmrig_strerror(ret) : "ok");
	bytes = data;
	for (size_t i = 0; i < held.size; i++)
		if (bytes[i] != HELD_BYTE)
			violation("the held block's byte %zu is 0x%02x, not 0x%02x", i, bytes[i],
				  HELD_BYTE);
}

/*
 * Oracle 4: every block handed to us with a frame is gone when decode returns
 * (and the value is released), whether decode succeeded or not: decode claims
 * every ref it can, even past one it cannot, and frees what it claimed on an
 * error. (Attaching each costs little; shmrig_pool_stats would walk every
 * block of the arena per input.)
 */
static void check_freed(const struct shmrig_ref *blocks, unsigned nblocks, bool decoded)
{
	for (unsigned i = 0; i < nblocks; i++) {
		void *view;

		if (shmrig_pool_attach(pool, &blocks[i], &view) == 0)
			violation("block %u (offset %llu) live after %s decode (and release)", i,
				  (unsigned long long)blocks[i].offset,
				  decoded ? "a successful" : "a failed");
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	/* a frame must be 8-byte aligned; the fuzzer's bytes need not be */
	void *frame = aligned_alloc(8, (size / 8 + 1) * 8);
	struct shmrig_ref blocks[MAX_SUBSTITUTED];
	struct shmrig_value value;
	struct shmrig_frame f;
	unsigned nblocks = 0, nheld = 0;
	char *json = NULL;
	bool decoded;
	int parsed, released;

	if (!frame)
		return 0;
	memcpy(frame, data, size);
	parsed = shmrig_frame_parse(frame, size, &f);
	if (shmrig_frame_to_json(frame, size, reg, &json) == 0)
		free(json);
	if (parsed == 0)
		nblocks = substitute(frame, &f, blocks, &nheld);
	decoded = shmrig_registry_decode(reg, pool, frame, size, &value) == 0;
	if (decoded) {
		if (nheld)
			violation("decode took %u ref(s) to the held block, never handed over",
				  nheld);
		check_views(&value);
		/* a frame without buffers takes nothing: decoding it twice is fine */
		if (parsed == 0 && f.nbuffers)
			check_replay(frame, size, blocks, nblocks);
		released = shmrig_value_release(&value);
		if (released)
			violation("releasing the decoded value: %s (%s)", shmrig_strerror(released),
				  shmrig_last_error());
	}
	check_held();
	check_freed(blocks, nblocks, decoded);
	free(frame);
	return 0;
}
