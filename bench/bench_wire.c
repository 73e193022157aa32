/* SPDX-License-Identifier: MIT */
/*
 * The wire record of a buffer (issue 12): what a receiver does with today's
 * 96-byte struct shmrig_ref before it can locate a block, next to what it
 * would do with a compact record (segment index + offset + generation against
 * a per-pool segment directory). The compact records are prototypes local to
 * this file; the library is not changed.
 *
 *   wire/receive/ref96/<n>  shmrig_frame_parse of a real frame of n buffers (a
 *                           table of n float64 columns of 64 B each, from
 *                           shmrig_registry_encode), then the pool's segment
 *                           step for each ref: the name compared with the
 *                           segment the last ref named (memcmp), else checked
 *                           terminated, hashed on its last 8 bytes into 64
 *                           buckets and compared along the chain (strcmp), as
 *                           lib/pool/pool.c resolve() and lookup() do. The first
 *                           ref of each frame misses, as in a session, where
 *                           the receiver's last ref was into its own arena.
 *   wire/receive/ref24/<n>  the twins: the same frame with compact records and
 *   wire/receive/ref16/<n>  the same meta; the header checks of
 *                           shmrig_frame_parse, each record checked against
 *                           the receiver's local copy of the directory (index
 *                           in range, offset 64-aligned, [offset, offset +
 *                           content size) inside the segment, for ref24 the
 *                           generation word's unused bits zero: no name),
 *                           then the segment step: one load from that
 *                           directory.
 *
 * Records: ref24 is { u32 segment, u32 generation (24 bits) + temporary bit,
 * u64 offset, u64 content size }; the block's capacity (today's ref->size)
 * is not sent, as the receiver's own view of the segment gives the block's
 * extent (the pool's locate works it out already). ref16 packs segment and
 * offset in one word as iceoryx2 does: { segment << 48 | offset | temporary,
 * generation << 40 | content size }.
 *
 * What follows the segment step (locating the block, the generation and
 * state check, the claim's atomic update) is the same for every record and
 * is not timed here. Nor is the copy of the frame through the ring: the
 * records' bytes matter there by the cache lines and ring slots they take.
 *
 * Method: deterministic input (column i, row r holds i * 8 + r). Each body
 * pins its thread to the first CPU, or keeps the one CPU it was started on
 * (taskset -c 1 is honoured), opens its own pool (2 MiB arenas: one chunk,
 * one size class each), builds the frames, checks once before timing that
 * every record parses and names the segment it should, and after the run
 * discards the frame, checks that no block is live and that
 * shmrig_pool_close() returns 0. 1000 frames a batch.
 */
#include "gbench.h"
#include "suite.h"

#include <shmrig/frame.h>
#include <shmrig/pool.h>
#include <shmrig/registry.h>

#include <errno.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PREFIX "shmrigwire"
#define ARENA_SIZE ((size_t)2 << 20)
#define BATCH 1000
#define MAX_COLUMNS 64
#define ROWS 8 /* float64 rows a column: 64 bytes */
/* Segments a directory holds here: the frame's and the receiver's own. */
#define DIR_MAX 4
#define NAME_BUCKETS 64
#define GEN_MASK ((1u << 24) - 1) /* the pool's generations are 24 bits */
#define COMPACT_TEMPORARY (1u << 24)
#define COMPACT16_OFFSET_MASK ((1ull << 48) - 2) /* bit 0 is the temporary flag */
#define COMPACT16_CONTENT_MASK ((1ull << 40) - 1)

/* ---- the compact records (prototypes) ---- */

struct compact24 {
	uint32_t segment;      /* index in the sender's segment directory */
	uint32_t generation;   /* bits 0-23 the block's generation, bit 24 temporary, others 0 */
	uint64_t offset;       /* 64-aligned */
	uint64_t content_size; /* bytes used from offset */
};
_Static_assert(sizeof(struct compact24) == 24, "compact24 is wire format");

struct compact16 {
	uint64_t where;  /* segment << 48 | offset (48 bits, 64-aligned) | temporary (bit 0) */
	uint64_t extent; /* generation << 40 | content size (40 bits) */
};
_Static_assert(sizeof(struct compact16) == 16, "compact16 is wire format");

enum format { FORMAT_REF96, FORMAT_REF24, FORMAT_REF16, FORMAT_COUNT };

static const char *const format_names[FORMAT_COUNT] = { "ref96", "ref24", "ref16" };
static const size_t record_sizes[FORMAT_COUNT] = { sizeof(struct shmrig_ref),
						   sizeof(struct compact24),
						   sizeof(struct compact16) };

/* The receiver's copy of a segment directory, read once from shared memory
 * and checked (as the pool keeps its own segment table): what an index names. */
struct directory {
	uint32_t count;
	uint64_t size[DIR_MAX];
	char *base[DIR_MAX];
	char name[DIR_MAX][SHMRIG_NAME_MAX];
};

/* The header checks of shmrig_frame_parse, for records of record_size bytes. */
static int compact_header(const void *buf, size_t len, size_t record_size,
			  struct shmrig_frame_header *h)
{
	size_t need;

	if (!buf || (uintptr_t)buf % 8)
		return -EINVAL;
	if (len < sizeof(*h))
		return -EBADMSG;
	memcpy(h, buf, sizeof(*h));
	if (h->magic != SHMRIG_FRAME_MAGIC || h->version != SHMRIG_FRAME_VERSION || h->reserved)
		return -EBADMSG;
	if (h->nbuffers > SHMRIG_FRAME_MAX_BUFFERS || h->meta_len > SHMRIG_FRAME_MAX_META)
		return -EBADMSG;
	need = sizeof(*h) + (size_t)h->nbuffers * record_size + h->meta_len;
	return need == len ? 0 : -EBADMSG;
}

/* [offset, offset + content_size) inside segment `segment` of the directory. */
static inline bool in_segment(const struct directory *dir, uint64_t segment, uint64_t offset,
			      uint64_t content_size)
{
	return segment < dir->count && offset % SHMRIG_POOL_MIN_BLOCK == 0 &&
	       offset <= dir->size[segment] && content_size <= dir->size[segment] - offset;
}

/* The records' count, or -errno. noinline, as the library's parse is a call:
 * the loop cannot hoist it. */
__attribute__((noinline)) static int parse_compact24(const void *buf, size_t len,
						      const struct directory *dir)
{
	struct shmrig_frame_header h;
	const struct compact24 *records;
	int ret = compact_header(buf, len, sizeof(*records), &h);

	if (ret)
		return ret;
	records = (const struct compact24 *)((const char *)buf + sizeof(h));
	for (uint32_t i = 0; i < h.nbuffers; i++) {
		struct compact24 r;

		memcpy(&r, &records[i], sizeof(r)); /* each field read once */
		if (r.generation & ~(GEN_MASK | COMPACT_TEMPORARY) ||
		    !in_segment(dir, r.segment, r.offset, r.content_size))
			return -SHMRIG_EBADREF;
	}
	return (int)h.nbuffers;
}

__attribute__((noinline)) static int parse_compact16(const void *buf, size_t len,
						      const struct directory *dir)
{
	struct shmrig_frame_header h;
	const struct compact16 *records;
	int ret = compact_header(buf, len, sizeof(*records), &h);

	if (ret)
		return ret;
	records = (const struct compact16 *)((const char *)buf + sizeof(h));
	for (uint32_t i = 0; i < h.nbuffers; i++) {
		struct compact16 r;

		memcpy(&r, &records[i], sizeof(r));
		/* every bit has a meaning: bits 1-5 are the offset's, which must be 0 */
		if (!in_segment(dir, r.where >> 48, r.where & COMPACT16_OFFSET_MASK,
				r.extent & COMPACT16_CONTENT_MASK))
			return -SHMRIG_EBADREF;
	}
	return (int)h.nbuffers;
}

/* The segment step of a compact record: the index in range, the directory's entry. */
__attribute__((noinline)) static int index_step(const struct directory *dir, uint64_t segment)
{
	if (segment >= dir->count || !dir->base[segment])
		return -SHMRIG_EBADREF; /* (an entry not mapped yet would be attached here) */
	return (int)segment;
}

/* ---- today's segment step: by name, as lib/pool.c does it ---- */

struct name_table {
	const char *name[DIR_MAX];
	size_t name_len[DIR_MAX];
	int head[NAME_BUCKETS]; /* index + 1 of a bucket's first name; 0: empty */
	int next[DIR_MAX];      /* index + 1 of the next name in the bucket */
	int last;               /* the segment the last ref named; -1: none */
};

/* lib/pool.c name_hash(): names end in 16 random hex digits. */
static unsigned name_hash(const char *name)
{
	size_t len = strlen(name);
	uint64_t tail = 0;

	memcpy(&tail, name + (len > 8 ? len - 8 : 0), len > 8 ? 8 : len);
	return (unsigned)((tail * 0x9e3779b97f4a7c15ull) >> 58) % NAME_BUCKETS;
}

__attribute__((noinline)) static int name_step(struct name_table *t, const struct shmrig_ref *ref)
{
	if (t->last >= 0 && memcmp(ref->name, t->name[t->last], t->name_len[t->last] + 1) == 0)
		return t->last;
	if (strnlen(ref->name, SHMRIG_NAME_MAX) == SHMRIG_NAME_MAX)
		return -SHMRIG_EBADREF;
	for (int i = t->head[name_hash(ref->name)]; i; i = t->next[i - 1])
		if (strcmp(t->name[i - 1], ref->name) == 0)
			return t->last = i - 1;
	return -ENOENT;
}

/* ---- frames ---- */

struct wire_bench {
	shmrig_pool *pool;
	shmrig_registry *reg;
	double columns[MAX_COLUMNS][ROWS];
	char column_names[MAX_COLUMNS][8];
	struct shmrig_named_array arrays[MAX_COLUMNS];
	void *frame; /* today's, from the registry */
	size_t len;
	void *compact; /* the same frame with compact records */
	size_t compact_len;
	struct shmrig_ref own; /* a block of the receiver's own, in another arena */
	int own_segment;
	struct directory dir;
	struct name_table names;
};

/*
 * Pin to the first CPU, as the suite does, unless the process was started on
 * one CPU (taskset -c N): then stay there. bench_pin() alone would move us to
 * the first CPU whatever taskset said (sched_setaffinity may widen a mask).
 */
static bool wire_pin(gbench_state *st)
{
	cpu_set_t set;

	if (sched_getaffinity(0, sizeof(set), &set) == 0 && CPU_COUNT(&set) == 1)
		return true;
	return bench_pin(st);
}

static bool wire_open(gbench_state *st, struct wire_bench *b)
{
	struct shmrig_pool_opts opts = { .size = sizeof(struct shmrig_pool_opts),
					 .prefix = PREFIX,
					 .arena_size = ARENA_SIZE };
	int ret;

	memset(b, 0, sizeof(*b));
	b->names.last = -1;
	if (!wire_pin(st))
		return false;
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
		return false;
	}
	return true;
}

static void wire_close(gbench_state *st, struct wire_bench *b)
{
	struct shmrig_pool_stats stats = SHMRIG_SIZED(struct shmrig_pool_stats);
	int ret = 0;

	if (b->frame)
		ret = shmrig_frame_discard(b->pool, b->frame, b->len);
	if (!ret && b->own.name[0])
		ret = shmrig_pool_free(b->pool, &b->own);
	if (!ret)
		ret = shmrig_pool_stats(b->pool, &stats);
	if (!ret && stats.live_blocks)
		ret = -SHMRIG_ELEAK;
	if (ret)
		bench_fail(st, "give the blocks back", ret);
	ret = shmrig_pool_close(b->pool);
	if (ret)
		bench_fail(st, "pool_close", ret);
	shmrig_registry_free(b->reg);
	free(b->frame);
	free(b->compact);
}

/* The directory index of the segment of a block we can attach, added if new. */
static int dir_add(struct wire_bench *b, const struct shmrig_ref *ref)
{
	struct directory *dir = &b->dir;
	void *data;
	unsigned h;
	int ret;

	for (uint32_t i = 0; i < dir->count; i++)
		if (strcmp(dir->name[i], ref->name) == 0)
			return (int)i;
	if (dir->count == DIR_MAX)
		return -ENOSPC;
	ret = shmrig_pool_attach(b->pool, ref, &data);
	if (ret)
		return ret;
	snprintf(dir->name[dir->count], SHMRIG_NAME_MAX, "%s", ref->name);
	dir->size[dir->count] = ARENA_SIZE;
	dir->base[dir->count] = (char *)data - ref->offset;
	h = name_hash(ref->name);
	b->names.name[dir->count] = dir->name[dir->count];
	b->names.name_len[dir->count] = strlen(ref->name);
	b->names.next[dir->count] = b->names.head[h];
	b->names.head[h] = (int)dir->count + 1;
	return (int)dir->count++;
}

/* One record of `format` for a ref into directory segment `segment`. */
static void put_record(enum format format, const struct shmrig_ref *ref, int segment, void *record)
{
	if (format == FORMAT_REF24) {
		struct compact24 r = {
			.segment = (uint32_t)segment,
			.generation = ref->generation | (ref->temporary ? COMPACT_TEMPORARY : 0),
			.offset = ref->offset,
			.content_size = ref->content_size,
		};

		memcpy(record, &r, sizeof(r));
	} else {
		struct compact16 r = {
			.where = (uint64_t)segment << 48 | ref->offset | ref->temporary,
			.extent = (uint64_t)ref->generation << 40 | ref->content_size,
		};

		memcpy(record, &r, sizeof(r));
	}
}

/*
 * Today's frame of a table of n columns (all in one pack block), the same
 * frame with compact records (for ref24/ref16), and a block of the
 * receiver's own in a second arena (2 MiB arenas hold one size class).
 */
static int build_frames(struct wire_bench *b, uint32_t n, enum format format)
{
	struct shmrig_value value = { .kind = SHMRIG_KIND_TABLE };
	size_t header = sizeof(struct shmrig_frame_header), rsize = record_sizes[format];
	struct shmrig_frame f;
	void *data;
	char *out;
	int ret;

	if (n < 1 || n > MAX_COLUMNS)
		return -EINVAL;
	for (uint32_t i = 0; i < n; i++) {
		snprintf(b->column_names[i], sizeof(b->column_names[i]), "c%u", i);
		for (int r = 0; r < ROWS; r++)
			b->columns[i][r] = (double)(i * ROWS + (uint32_t)r);
		b->arrays[i] = (struct shmrig_named_array){
			.name = b->column_names[i],
			.array = { .dtype = SHMRIG_DTYPE_FLOAT64,
				   .ndim = 1,
				   .shape = { ROWS },
				   .order = 'C',
				   .data = b->columns[i] },
		};
	}
	value.table.nrows = ROWS;
	value.table.ncolumns = n;
	value.table.columns = b->arrays;
	ret = shmrig_registry_encode(b->reg, b->pool, &value, &b->frame, &b->len);
	if (!ret)
		ret = shmrig_frame_parse(b->frame, b->len, &f);
	if (!ret)
		ret = shmrig_pool_alloc(b->pool, 64, 0, 0, &b->own, &data);
	if (ret)
		return ret;
	b->own_segment = dir_add(b, &b->own);
	if (b->own_segment < 0)
		return b->own_segment;
	b->compact_len = header + n * rsize + f.meta_len;
	/* 8-aligned as frames must be; aligned_alloc wants a multiple of 8 */
	b->compact = aligned_alloc(8, (b->compact_len + 7) & ~(size_t)7);
	if (!b->compact)
		return -ENOMEM;
	out = b->compact;
	memcpy(out, b->frame, header);
	for (uint32_t i = 0; i < n; i++) {
		int segment = dir_add(b, &f.buffers[i]);

		if (segment < 0)
			return segment;
		if (segment == b->own_segment)
			return -EAGAIN; /* the frame must be in another arena than ours */
		if (format != FORMAT_REF96)
			put_record(format, &f.buffers[i], segment, out + header + i * rsize);
	}
	memcpy(out + header + n * rsize, f.meta, f.meta_len);
	return 0;
}

/* Parse one frame and find each record's segment; `expect` is the frame's. */
static int receive(struct wire_bench *b, enum format format, int expect)
{
	const char *records = (const char *)b->compact + sizeof(struct shmrig_frame_header);
	struct shmrig_frame f;
	int count;

	switch (format) {
	case FORMAT_REF96:
		count = shmrig_frame_parse(b->frame, b->len, &f);
		b->names.last = b->own_segment; /* our last ref was into our own arena */
		for (uint32_t i = 0; !count && i < f.nbuffers; i++)
			if (name_step(&b->names, &f.buffers[i]) != expect)
				return -EFAULT;
		return count;
	case FORMAT_REF24:
		count = parse_compact24(b->compact, b->compact_len, &b->dir);
		for (int i = 0; i < count; i++)
			if (index_step(&b->dir, ((const struct compact24 *)records)[i].segment) !=
			    expect)
				return -EFAULT;
		return count < 0 ? count : 0;
	case FORMAT_REF16:
		count = parse_compact16(b->compact, b->compact_len, &b->dir);
		for (int i = 0; i < count; i++)
			if (index_step(&b->dir, ((const struct compact16 *)records)[i].where >> 48) !=
			    expect)
				return -EFAULT;
		return count < 0 ? count : 0;
	case FORMAT_COUNT:
		break;
	}
	return -EINVAL;
}

static void bm_receive(gbench_state *st, void *arg)
{
	enum format format = (enum format)(intptr_t)arg;
	uint32_t n = (uint32_t)gbench_range(st, 0);
	struct wire_bench *b = malloc(sizeof(*b));
	int expect = 0, ret;

	if (!b) {
		gbench_skip(st, "failed: out of memory");
		return;
	}
	if (!wire_open(st, b)) {
		free(b);
		return;
	}
	ret = build_frames(b, n, format);
	if (!ret) {
		expect = b->own_segment == 0 ? 1 : 0;
		ret = receive(b, format, expect); /* checked before timing */
	}
	while (!ret && gbench_loop(st, BATCH))
		for (int i = 0; i < BATCH && !ret; i++) {
			bench_escape(b->frame);
			bench_escape(b->compact);
			ret = receive(b, format, expect);
		}
	if (ret)
		bench_fail(st, "receive", ret);
	gbench_counter(st, "frame_bytes",
		       (double)(format == FORMAT_REF96 ? b->len : b->compact_len), 0);
	gbench_set_items_processed(st, gbench_iterations(st));
	wire_close(st, b);
	free(b);
}

void bench_wire_register(void)
{
	char name[64];

	for (int f = 0; f < FORMAT_COUNT; f++) {
		snprintf(name, sizeof(name), "wire/receive/%s", format_names[f]);
		gbench_arg(gbench_register(name, bm_receive, (void *)(intptr_t)f), MAX_COLUMNS);
	}
}
