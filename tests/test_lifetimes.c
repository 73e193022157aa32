/* SPDX-License-Identifier: MIT */
/*
 * Lifetimes (issue 10): one test per hole the pool rework closed, numbered as
 * the items. Each test plays the hostile or unlucky peer (a frame
 * decoded twice, a ref to a block held for another value, a ring slot or a
 * shared word rewritten, a file with our prefix that is not ours, a death
 * between two steps), asserts what the code before the rework got wrong, then
 * checks the accounting: no live block left, the audit passes, no segment of
 * ours left in /dev/shm, every fd back.
 *
 * The white-box parts write shared memory as a peer would: they use the
 * layouts of pool_layout.h (the chunk layout recomputed here as pool_arena.c
 * computes it) and the ring's layout (channel_ring.c).
 */
#include "helpers.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdalign.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <shmrig/channel.h>
#include <shmrig/frame.h>
#include <shmrig/pool.h>
#include <shmrig/registry.h>
#include <shmrig/segment.h>
#include <shmrig/value.h>

#include "transport/channel_internal.h" /* a ring end's mapping, for a hostile producer (item 7) */
#include "os/liveness.h"         /* shmrig__self: an identity as descriptors record it */

#include "base/internal.h" /* SHMRIG_CACHELINE, which the layouts use */
#include "pool/pool_layout.h"

#define TIMEOUT_MS 60000
#define ARENA (4 * MiB)
#define POOL_MAX (512 * MiB)
#define CHURN 64
#define KiB ((size_t)1024)

/* ---- the fixture: every test ends with the accounting ---- */

struct fx {
	shmrig_pool *pool;
	shmrig_registry *reg;
	int fds;
};

static void fx_open_sized(struct fx *fx, size_t arena_size)
{
	fx->fds = th_count_fds();
	fx->pool = th_open_pool(arena_size, POOL_MAX);
	assert_non_null(fx->pool);
	assert_int_equal(shmrig_registry_create(&fx->reg), 0);
	assert_int_equal(shmrig_registry_add_builtins(fx->reg), 0);
}

static void fx_open(struct fx *fx)
{
	fx_open_sized(fx, ARENA);
}

/* Nothing live, the audit passes, the pool closes clean, no segment of ours is
 * left and every fd is back. */
static void fx_close(struct fx *fx)
{
	assert_int_equal(th_live_blocks(fx->pool), 0);
	assert_int_equal(shmrig_pool_audit(fx->pool), 0);
	shmrig_registry_free(fx->reg);
	assert_int_equal(shmrig_pool_close(fx->pool), 0);
	assert_int_equal(th_count_segments(th_prefix()), 0);
	assert_int_equal(th_count_fds(), fx->fds);
}

/* ---- frames by hand ---- */

#define HEADER_SIZE sizeof(struct shmrig_frame_header)
#define REF_SIZE sizeof(struct shmrig_ref)

/* The codec and metadata of `frame` with other refs: what a peer can write. */
static void *frame_with_refs(const void *frame, size_t len, const struct shmrig_ref *refs,
			     uint32_t nrefs, size_t *out_len)
{
	struct shmrig_frame f;

	assert_int_equal(shmrig_frame_parse(frame, len, &f), 0);
	return th_frame_build(f.codec_id, refs, nrefs, f.meta, f.meta_len, out_len);
}

/* ---- values: every buffer holds th_fill(seed + its index) ---- */

enum shape {
	ONE_ARRAY, /* ndarray: one persistent block */
	TABLE,     /* two persistent buffers packed in one block */
	DATASET,   /* the same, in a group */
	BYTES      /* one temporary buffer */
};

static struct shmrig_array u8_array(void *data, size_t n)
{
	struct shmrig_array a = { .dtype = SHMRIG_DTYPE_UINT8, .ndim = 1, .order = 'C' };

	a.shape[0] = n;
	a.data = data;
	return a;
}

/* Encode a value of `shape` whose buffers hold `bytes` bytes each. 0 or -errno
 * (usable in children). */
static int encode_rc(shmrig_registry *reg, shmrig_pool *pool, enum shape shape, size_t bytes,
		     unsigned seed, void **frame, size_t *len)
{
	unsigned char *a = malloc(bytes), *b = malloc(bytes);
	struct shmrig_named_array arrays[2];
	struct shmrig_group group = { .name = "g", .nvariables = 2 };
	struct shmrig_value v = { .kind = SHMRIG_KIND_NDARRAY };
	int ret;

	if (!a || !b) {
		free(a);
		free(b);
		return -ENOMEM;
	}
	th_fill(a, bytes, seed);
	th_fill(b, bytes, seed + 1);
	arrays[0] = (struct shmrig_named_array){ .name = "a", .array = u8_array(a, bytes) };
	arrays[1] = (struct shmrig_named_array){ .name = "b", .array = u8_array(b, bytes) };
	group.variables = arrays;
	switch (shape) {
	case ONE_ARRAY:
		v.array = arrays[0].array;
		break;
	case TABLE:
		v.kind = SHMRIG_KIND_TABLE;
		v.table.nrows = bytes;
		v.table.ncolumns = 2;
		v.table.columns = arrays;
		break;
	case DATASET:
		v.kind = SHMRIG_KIND_DATASET;
		v.dataset.ngroups = 1;
		v.dataset.groups = &group;
		break;
	case BYTES:
		v.kind = SHMRIG_KIND_BYTES;
		v.bytes.data = a;
		v.bytes.len = bytes;
		break;
	}
	ret = shmrig_registry_encode(reg, pool, &v, frame, len);
	free(a);
	free(b);
	return ret;
}

static void *encode(struct fx *fx, enum shape shape, size_t bytes, unsigned seed, size_t *len)
{
	void *frame = NULL;

	assert_int_equal(encode_rc(fx->reg, fx->pool, shape, bytes, seed, &frame, len), 0);
	return frame;
}

static bool bytes_intact(const void *data, size_t bytes, unsigned seed)
{
	return data && th_first_mismatch(data, bytes, seed) == bytes;
}

/* Does a decoded value still hold what encode_rc() put in? */
static bool value_intact(const struct shmrig_value *v, size_t bytes, unsigned seed)
{
	switch (v->kind) {
	case SHMRIG_KIND_NDARRAY:
		return bytes_intact(v->array.data, bytes, seed);
	case SHMRIG_KIND_TABLE:
		return v->table.ncolumns == 2 &&
		       bytes_intact(v->table.columns[0].array.data, bytes, seed) &&
		       bytes_intact(v->table.columns[1].array.data, bytes, seed + 1);
	case SHMRIG_KIND_DATASET:
		return v->dataset.ngroups == 1 && v->dataset.groups[0].nvariables == 2 &&
		       bytes_intact(v->dataset.groups[0].variables[0].array.data, bytes, seed) &&
		       bytes_intact(v->dataset.groups[0].variables[1].array.data, bytes, seed + 1);
	case SHMRIG_KIND_BYTES:
		return v->bytes.len == bytes && bytes_intact(v->bytes.data, bytes, seed);
	default:
		return false;
	}
}

/* Allocate and scribble over n blocks of `size`: a block freed under a value
 * comes back here. 0 or -errno (usable in children). */
static int churn_rc(shmrig_pool *pool, size_t size, struct shmrig_ref *refs, unsigned n)
{
	for (unsigned i = 0; i < n; i++) {
		void *data;
		int ret = shmrig_pool_alloc(pool, size, 0, 0, &refs[i], &data);

		if (ret)
			return ret;
		memset(data, 0x5a, refs[i].size);
	}
	return 0;
}

static void churn(shmrig_pool *pool, size_t size, struct shmrig_ref *refs, unsigned n)
{
	assert_int_equal(churn_rc(pool, size, refs, n), 0);
}

static void unchurn(shmrig_pool *pool, struct shmrig_ref *refs, unsigned n)
{
	for (unsigned i = 0; i < n; i++)
		assert_int_equal(shmrig_pool_free(pool, &refs[i]), 0);
}

/* ---- peers: a forked child with two pipes (no stray fds) ---- */

typedef int (*peer_fn)(int in, int out);

static int run_peer_fn(int in, int out, void *arg)
{
	return (*(peer_fn *)arg)(in, out);
}

/* A child that runs fn(in, out) (it opens what it needs itself). */
static struct th_peer spawn_peer(peer_fn fn)
{
	return th_peer_spawn(run_peer_fn, &fn);
}

static int finish_peer(struct th_peer *p)
{
	return th_peer_finish(p, TIMEOUT_MS);
}

static void send_frame(int fd, const void *frame, size_t len)
{
	uint64_t n = len;

	assert_int_equal(th_write_all(fd, &n, sizeof(n)), 0);
	assert_int_equal(th_write_all(fd, frame, len), 0);
}

/* A frame from a pipe (8-aligned, malloc'd), NULL on EOF or error. */
static void *recv_frame(int fd, size_t *len)
{
	uint64_t n;
	void *frame;

	if (th_read_all(fd, &n, sizeof(n)) || n > (64u << 20))
		return NULL;
	frame = aligned_alloc(8, (n / 8 + 1) * 8);
	if (frame && th_read_all(fd, frame, n)) {
		free(frame);
		return NULL;
	}
	*len = n;
	return frame;
}

/* ---- /proc and /dev/shm ---- */

/* A field of /proc/self/status in kB, -1 if absent. */
static long status_kb(const char *key)
{
	char buf[4096], *p;
	int fd = open("/proc/self/status", O_RDONLY | O_CLOEXEC);
	ssize_t n;

	if (fd < 0)
		return -1;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return -1;
	buf[n] = '\0';
	p = strstr(buf, key);
	return p ? atol(p + strlen(key)) : -1;
}

/* Reset VmHWM (the peak resident set) to the current RSS: false if this
 * kernel or sandbox does not let us. */
static bool reset_peak_rss(void)
{
	int fd = open("/proc/self/clear_refs", O_WRONLY | O_CLOEXEC);
	bool ok;

	if (fd < 0)
		return false;
	ok = write(fd, "5", 1) == 1;
	close(fd);
	return ok;
}

/* Read calls and bytes read by this process so far (/proc/self/io, one read). */
struct reads {
	long long calls;
	long long bytes;
};

static struct reads reads_so_far(void)
{
	struct reads r = { -1, -1 };
	char buf[1024], *calls, *bytes;
	int fd = open("/proc/self/io", O_RDONLY | O_CLOEXEC);
	ssize_t n;

	if (fd < 0)
		return r;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return r;
	buf[n] = '\0';
	calls = strstr(buf, "syscr:");
	bytes = strstr(buf, "rchar:");
	if (calls && bytes) {
		r.calls = atoll(calls + 6);
		r.bytes = atoll(bytes + 6);
	}
	return r;
}

/* Bytes of memory a /dev/shm file holds (its allocated blocks). */
static long long file_bytes(const char *name)
{
	char path[128];
	struct stat st;

	snprintf(path, sizeof(path), "/dev/shm/%s", name);
	if (stat(path, &st))
		return -1;
	return (long long)st.st_blocks * 512;
}

/*
 * A file with a real segment name of our prefix and role 'a' (an arena as far
 * as the name says): a 2 MiB segment with `hdr` written at its start, then
 * grown, sparse, to `size` bytes. Unlink it with shmrig_segment_unlink_name.
 */
static void craft_arena_file(char *name, size_t size, const void *hdr, size_t hdr_len)
{
	struct shmrig_segment_opts opts = {
		.size = sizeof(struct shmrig_segment_opts),
		.prefix = th_prefix(),
		.bytes = 2 * MiB,
		.backing = SHMRIG_BACKING_PLAIN,
		.role = 'a',
	};
	shmrig_segment *seg;
	char path[128];
	int fd;

	assert_int_equal(shmrig_segment_create(&opts, &seg), 0);
	snprintf(name, SHMRIG_NAME_MAX, "%s", shmrig_segment_name(seg));
	if (hdr)
		memcpy(shmrig_segment_base(seg), hdr, hdr_len);
	shmrig_segment_close(seg);
	snprintf(path, sizeof(path), "/%s", name);
	fd = shm_open(path, O_RDWR | O_CLOEXEC, 0);
	assert_true(fd >= 0);
	assert_int_equal(ftruncate(fd, (off_t)size), 0);
	close(fd);
}

/* A ref into segment `name`: what a peer can put in a frame. */
static struct shmrig_ref ref_into(const char *name, uint64_t offset, uint64_t size)
{
	struct shmrig_ref ref;

	memset(&ref, 0, sizeof(ref));
	snprintf(ref.name, sizeof(ref.name), "%s", name);
	ref.offset = offset;
	ref.size = size;
	ref.content_size = size;
	ref.generation = 1;
	return ref;
}

/* [start, end) of this process's mapping of /dev/shm/name; false if none. */
static bool mapping_of(const char *name, uintptr_t *start, uintptr_t *end)
{
	FILE *maps = fopen("/proc/self/maps", "re");
	char line[512];
	bool found = false;

	if (!maps)
		return false;
	while (!found && fgets(line, sizeof(line), maps)) {
		unsigned long lo, hi;

		if (strstr(line, name) && sscanf(line, "%lx-%lx", &lo, &hi) == 2) {
			*start = lo;
			*end = hi;
			found = true;
		}
	}
	fclose(maps);
	return found;
}

/* Is [p, p + len) mapped in this process? (asks the kernel: no fault if not) */
static bool is_mapped(const void *p, size_t len)
{
	size_t page = (size_t)sysconf(_SC_PAGESIZE);
	uintptr_t start = (uintptr_t)p / page * page;
	size_t pages = ((uintptr_t)p + len - start + page - 1) / page;
	unsigned char *vec = malloc(pages);
	bool mapped;

	assert_non_null(vec);
	mapped = mincore((void *)start, pages * page, vec) == 0;
	free(vec);
	return mapped;
}

/* ---- an arena as a peer sees it: its own mapping, the layout recomputed ---- */

static size_t align_up(size_t x, size_t align)
{
	return (x + align - 1) / align * align;
}

static size_t ext_descs_at(uint32_t nchunks)
{
	return align_up(sizeof(struct arena_hdr) + nchunks * sizeof(struct chunk_info), 64);
}

static size_t header_size(uint32_t nchunks)
{
	return ext_descs_at(nchunks) + (size_t)nchunks * EXT_DESCS * sizeof(struct desc);
}

struct chunk_layout {
	uint32_t nblocks;
	size_t desc_offset;
	size_t payload_offset;
	bool external;
};

/* pool_arena.c's compute_layout: blocks of class c after `header` bytes of a chunk. */
static struct chunk_layout layout_of(unsigned c, size_t header)
{
	size_t size = (size_t)SHMRIG_POOL_MIN_BLOCK << c, align = size < 4096 ? size : 4096;
	size_t n = (CHUNK - header) / (size + sizeof(struct desc));
	struct chunk_layout l = { 0 };

	if (CHUNK / size <= EXT_DESCS) {
		l.external = true;
		l.payload_offset = align_up(header, align);
		l.nblocks = l.payload_offset >= CHUNK ? 0 :
							(uint32_t)((CHUNK - l.payload_offset) / size);
		return l;
	}
	while (n && align_up(header + n * sizeof(struct desc), align) + n * size > CHUNK)
		n--;
	l.nblocks = (uint32_t)n;
	l.desc_offset = header;
	l.payload_offset = align_up(header + n * sizeof(struct desc), align);
	return l;
}

struct arena_view {
	shmrig_segment *seg;
	char *base;
	uint32_t nchunks;
	struct arena_hdr *hdr;
};

static void view_open(struct arena_view *v, const char *name)
{
	assert_int_equal(shmrig_segment_attach(th_prefix(), name, &v->seg), 0);
	v->base = shmrig_segment_base(v->seg);
	v->nchunks = (uint32_t)(shmrig_segment_size(v->seg) / CHUNK);
	v->hdr = (struct arena_hdr *)v->base;
}

static struct desc *view_desc(const struct arena_view *v, uint32_t id, unsigned c)
{
	uint32_t chunk = id >> SLOT_BITS, slot = id & ((1u << SLOT_BITS) - 1);
	struct chunk_layout l = layout_of(c, chunk ? 0 : header_size(v->nchunks));

	if (l.external)
		return (struct desc *)(v->base + ext_descs_at(v->nchunks)) +
		       (size_t)chunk * EXT_DESCS + slot;
	return (struct desc *)(v->base + (size_t)chunk * CHUNK + l.desc_offset) + slot;
}

/* The descriptor of the block `ref` names (checked: its generation matches). */
static struct desc *view_block(const struct arena_view *v, const struct shmrig_ref *ref,
			       uint32_t *id, unsigned *c)
{
	uint32_t chunk = (uint32_t)(ref->offset / CHUNK);
	struct chunk_layout l;
	struct desc *d;

	*c = atomic_load(&v->hdr->chunks[chunk].class_plus1) - 1;
	l = layout_of(*c, chunk ? 0 : header_size(v->nchunks));
	*id = chunk << SLOT_BITS | (uint32_t)((ref->offset % CHUNK - l.payload_offset) >> (6 + *c));
	d = view_desc(v, *id, *c);
	assert_int_equal(word_gen(atomic_load(&d->word)), ref->generation);
	return d;
}

/* ---- 5: a frame decoded twice ---- */

#define SIZE5 3000
#define SEED5 50

static int child_decode_twice(int in, int out)
{
	static shmrig_pool *pool;
	static shmrig_registry *reg;
	static void *frame;
	struct shmrig_value v1, v2;
	int second;
	bool intact;
	size_t len;
	char go;

	pool = th_open_pool(ARENA, POOL_MAX);
	CHILD_CHECK(pool);
	CHILD_CHECK(shmrig_registry_create(&reg) == 0 && shmrig_registry_add_builtins(reg) == 0);
	frame = recv_frame(in, &len);
	CHILD_CHECK(frame);
	CHILD_CHECK(shmrig_registry_decode(reg, pool, frame, len, &v1) == 0);
	second = shmrig_registry_decode(reg, pool, frame, len, &v2);
	if (second == 0) /* as its caller would; the parent fails on `second` */
		(void)!shmrig_value_release(&v2);
	CHILD_CHECK(th_write_all(out, &second, sizeof(second)) == 0);
	/* the parent allocates in its arena, where v1's block is */
	CHILD_CHECK(th_read_all(in, &go, 1) == 0);
	intact = value_intact(&v1, SIZE5, SEED5 + 1);
	CHILD_CHECK(shmrig_value_release(&v1) == 0);
	free(frame);
	shmrig_registry_free(reg);
	CHILD_CHECK(shmrig_pool_close(pool) == 0);
	return intact ? 0 : 2;
}

static void test_05_decode_twice(void **state)
{
	static struct fx fx; /* static: reachable in forked children (valgrind) */
	static void *frame;
	struct shmrig_ref churned[CHURN];
	struct shmrig_value v1, v2;
	struct th_peer peer;
	int second;
	size_t len;
	char go = 'g';

	(void)state;
	fx_open(&fx);
	/* In this process: encode hands the blocks to us, the first decode claims them. */
	frame = encode(&fx, ONE_ARRAY, SIZE5, SEED5, &len);
	assert_int_equal(shmrig_registry_decode(fx.reg, fx.pool, frame, len, &v1), 0);
	second = shmrig_registry_decode(fx.reg, fx.pool, frame, len, &v2);
	if (second == 0) /* the case fails on `second` below */
		(void)!shmrig_value_release(&v2);
	churn(fx.pool, SIZE5, churned, CHURN);
	assert_true(value_intact(&v1, SIZE5, SEED5));
	assert_int_equal(second, -SHMRIG_ECLAIMED);
	assert_int_equal(th_live_blocks(fx.pool), 1 + CHURN);
	unchurn(fx.pool, churned, CHURN);
	assert_int_equal(shmrig_value_release(&v1), 0);
	free(frame);

	/* Across processes: transferred to a child, which decodes it twice. */
	peer = spawn_peer(child_decode_twice);
	frame = encode(&fx, ONE_ARRAY, SIZE5, SEED5 + 1, &len);
	assert_int_equal(shmrig_frame_transfer(fx.pool, frame, len, peer.pid), 0);
	send_frame(peer.to_child, frame, len);
	assert_int_equal(th_read_all(peer.from_child, &second, sizeof(second)), 0);
	churn(fx.pool, SIZE5, churned, CHURN);
	assert_int_equal(th_write_all(peer.to_child, &go, 1), 0);
	assert_int_equal(finish_peer(&peer), 0); /* 2: its value changed under it */
	assert_int_equal(second, -SHMRIG_ECLAIMED);
	unchurn(fx.pool, churned, CHURN);
	free(frame);
	fx_close(&fx);
}

/* ---- 6: `temporary` set on a buffer a codec keeps a view of ---- */

#define SIZE6 5000
#define SEED6 60

static void test_06_temporary_on_view(void **state)
{
	static const struct {
		enum shape shape;
		uint32_t buffer;
	} cases[] = { { ONE_ARRAY, 0 }, { TABLE, 1 }, { DATASET, 0 } };
	struct shmrig_ref churned[CHURN];
	struct shmrig_value held, v;
	struct fx fx;
	void *frame;
	size_t len;

	(void)state;
	fx_open(&fx);
	/* a value held all along: the bad frames must not touch it */
	frame = encode(&fx, ONE_ARRAY, SIZE6, SEED6, &len);
	assert_int_equal(shmrig_registry_decode(fx.reg, fx.pool, frame, len, &held), 0);
	free(frame);
	for (unsigned i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		unsigned seed = SEED6 + 10 * (i + 1);
		struct shmrig_ref ref;
		void *bad;
		int ret;

		frame = encode(&fx, cases[i].shape, SIZE6, seed, &len);
		bad = th_frame_copy(frame, len);
		ref = th_frame_ref(bad, cases[i].buffer);
		ref.temporary = 1;
		th_frame_set_ref(bad, cases[i].buffer, &ref);
		ret = shmrig_registry_decode(fx.reg, fx.pool, bad, len, &v);
		if (ret == 0) {
			void *data;

			/* the old way: a view of a block decode freed as temporary */
			fprintf(stderr, "# case %u: decode took it; the view's block: attach %d\n",
				i, shmrig_pool_attach(fx.pool, &ref, &data));
			(void)!shmrig_value_release(&v); /* the case fails on ret below */
		}
		assert_int_equal(ret, -EBADMSG);
		/* the frame's blocks were ours: decode freed them, and nothing else */
		assert_int_equal(th_live_blocks(fx.pool), shmrig_value_leases(&held));
		free(bad);
		free(frame);
	}
	churn(fx.pool, SIZE6, churned, CHURN);
	assert_true(value_intact(&held, SIZE6, SEED6));
	unchurn(fx.pool, churned, CHURN);
	assert_int_equal(shmrig_value_release(&held), 0);
	fx_close(&fx);
}

/* ---- 7: a ref to a block we hold for another value ---- */

#define SIZE7 3000
#define SEED7 70
#define RING_SLOT 4096u
#define RING_SLOTS 16u
#define RING_CTL 256u /* struct ring_ctl: tail, head and two flags, a line each */
#define RING_IDX_MASK 0x7fffffffu
#define RING_SLOT_SPILL 1u
#define RING_FINGERPRINT 0x11fe71e5ull

static _Atomic uint32_t *ring_tail(unsigned char *base, unsigned ring)
{
	return (_Atomic uint32_t *)(base + ring * RING_CTL);
}

static unsigned char *ring_slot(unsigned char *base, unsigned ring, uint32_t index)
{
	return base + 2 * RING_CTL +
	       ((size_t)ring * RING_SLOTS + (index & (RING_SLOTS - 1))) * RING_SLOT;
}

/* A slot that says "spilled: this block is yours", as a hostile producer writes it. */
static void put_spill_slot(unsigned char *slot, const struct shmrig_ref *ref)
{
	uint32_t hdr[2] = { (uint32_t)ref->content_size, RING_SLOT_SPILL };

	memcpy(slot, hdr, sizeof(hdr));
	memcpy(slot + sizeof(hdr), ref, sizeof(*ref));
}

static shmrig_channel_pair *ring_pair;

/* End 1, no pool: publishes a spill slot naming the parent's own block, then
 * writes another past its tail and dies (an "unpublished spill"). */
static int child_hostile_ring(int in, int out)
{
	static shmrig_channel *ch;
	struct shmrig_ref ref;
	unsigned char *base;
	uint32_t tail;
	char sync;
	int ret;

	ret = shmrig_channel_open(ring_pair, 1, getppid(), NULL, RING_FINGERPRINT, &ch);
	shmrig_channel_pair_free(ring_pair);
	CHILD_CHECK(ret == 0);
	base = shmrig_segment_base(*(shmrig_segment **)ch->backend);
	CHILD_CHECK(th_read_all(in, &ref, sizeof(ref)) == 0);
	tail = atomic_load_explicit(ring_tail(base, 1), memory_order_relaxed) & RING_IDX_MASK;
	put_spill_slot(ring_slot(base, 1, tail), &ref);
	atomic_store_explicit(ring_tail(base, 1), (tail + 1) & RING_IDX_MASK,
			      memory_order_release);
	CHILD_CHECK(th_write_all(out, "a", 1) == 0);
	CHILD_CHECK(th_read_all(in, &sync, 1) == 0);
	put_spill_slot(ring_slot(base, 1, tail + 1), &ref);
	CHILD_CHECK(th_write_all(out, "c", 1) == 0);
	/* exit without closing: a close would store our stale tail */
	return 0;
}

static void ring_spill_naming_our_block(struct fx *fx)
{
	struct shmrig_channel_opts opts = { .size = sizeof(struct shmrig_channel_opts),
					    .backend = "ring",
					    .slot_size = RING_SLOT,
					    .slots = RING_SLOTS };
	static shmrig_channel *ch;
	struct shmrig_ref block;
	unsigned char *data;
	struct th_peer peer;
	size_t len;
	char sync;
	void *msg;
	int ret;

	assert_int_equal(shmrig_pool_alloc(fx->pool, SIZE7, 0, 7, &block, (void **)&data), 0);
	th_fill(data, SIZE7, SEED7 + 2);
	assert_int_equal(shmrig_channel_pair_create(&opts, &ring_pair), 0);
	peer = spawn_peer(child_hostile_ring);
	assert_int_equal(shmrig_channel_open(ring_pair, 0, peer.pid, fx->pool, RING_FINGERPRINT,
					     &ch),
			 0);
	shmrig_channel_pair_free(ring_pair);
	assert_int_equal(th_write_all(peer.to_child, &block, sizeof(block)), 0);
	assert_int_equal(th_read_all(peer.from_child, &sync, 1), 0);

	/* published: take_spill must not claim, copy and free our block */
	ret = shmrig_channel_recv(ch, &msg, &len, TIMEOUT_MS);
	if (ret == 0)
		free(msg);
	assert_int_equal(ret, -EBADMSG);
	assert_int_equal(shmrig_pool_attach(fx->pool, &block, (void **)&data), 0);
	assert_true(bytes_intact(data, SIZE7, SEED7 + 2));

	/* past the tail of a dead producer: reclaim_orphans must not free it */
	assert_int_equal(th_write_all(peer.to_child, "b", 1), 0);
	assert_int_equal(th_read_all(peer.from_child, &sync, 1), 0);
	assert_int_equal(finish_peer(&peer), 0);
	assert_int_equal(shmrig_channel_recv(ch, &msg, &len, TIMEOUT_MS), -EPIPE);
	assert_int_equal(shmrig_pool_attach(fx->pool, &block, (void **)&data), 0);
	assert_true(bytes_intact(data, SIZE7, SEED7 + 2));
	assert_int_equal(th_live_blocks(fx->pool), 1);
	shmrig_channel_close(ch);
	assert_int_equal(shmrig_pool_free(fx->pool, &block), 0);
}

static void test_07_ref_to_held_block(void **state)
{
	static struct fx fx; /* static: reachable in forked children (valgrind) */
	struct shmrig_ref churned[CHURN], ref, temp;
	struct shmrig_value v1, v2;
	void *frame, *bad, *bytes_frame;
	size_t len, bad_len, bytes_len;
	int ret;

	(void)state;
	fx_open(&fx);
	frame = encode(&fx, ONE_ARRAY, SIZE7, SEED7, &len);
	assert_int_equal(shmrig_registry_decode(fx.reg, fx.pool, frame, len, &v1), 0);
	ref = th_frame_ref(frame, 0);

	/* a second frame with v1's buffer, persistent: it would be leased twice */
	bad = th_frame_copy(frame, len);
	ret = shmrig_registry_decode(fx.reg, fx.pool, bad, len, &v2);
	if (ret == 0) /* the case fails on ret below */
		(void)!shmrig_value_release(&v2);
	assert_int_equal(ret, -SHMRIG_ECLAIMED);
	free(bad);

	/* ... and temporary (bytes): decode would copy it out and free it */
	bytes_frame = encode(&fx, BYTES, SIZE7, SEED7 + 1, &bytes_len);
	temp = ref;
	temp.temporary = 1;
	bad = frame_with_refs(bytes_frame, bytes_len, &temp, 1, &bad_len);
	ret = shmrig_registry_decode(fx.reg, fx.pool, bad, bad_len, &v2);
	if (ret == 0) /* the case fails on ret below */
		(void)!shmrig_value_release(&v2);
	assert_int_equal(ret, -SHMRIG_ECLAIMED);
	free(bad);
	assert_int_equal(shmrig_frame_discard(fx.pool, bytes_frame, bytes_len), 0);
	free(bytes_frame);

	/* a claim of it by hand */
	assert_int_equal(shmrig_pool_claim(fx.pool, &ref), -SHMRIG_ECLAIMED);

	assert_int_equal(th_live_blocks(fx.pool), 1);
	churn(fx.pool, SIZE7, churned, CHURN);
	assert_true(value_intact(&v1, SIZE7, SEED7));
	unchurn(fx.pool, churned, CHURN);
	assert_int_equal(shmrig_value_release(&v1), 0);
	free(frame);

	ring_spill_naming_our_block(&fx);
	fx_close(&fx);
}

/* ---- 8: many refs into one segment that fails validation ---- */

#define MANY_REFS 1000
#define BAD_SEGMENT_SIZE (256 * MiB)
#define MEMORY_SLACK (64 * MiB)

/* IN_OPEN events on the watch (each open of the file is one). */
static int count_opens(int watch)
{
	char buf[4096] __attribute__((aligned(__alignof__(struct inotify_event))));
	int opens = 0;
	ssize_t n;

	while ((n = read(watch, buf, sizeof(buf))) > 0)
		for (char *p = buf; p < buf + n;) {
			const struct inotify_event *ev = (const struct inotify_event *)p;

			opens += (ev->mask & IN_OPEN) != 0;
			p += sizeof(*ev) + ev->len;
		}
	return opens;
}

static void test_08_many_refs_one_bad_segment(void **state)
{
	char name[SHMRIG_NAME_MAX], path[128], why[512];
	struct shmrig_ref *refs;
	struct shmrig_value v;
	long long allocated;
	long rss, peak = 0;
	bool peak_known;
	size_t len, bad_len;
	void *frame, *bad;
	int watch, opens, ret;
	struct fx fx;

	(void)state;
	fx_open(&fx);
	/* an ndarray frame's codec and metadata, with 1000 refs into the bad file */
	frame = encode(&fx, ONE_ARRAY, 64, 80, &len);
	craft_arena_file(name, BAD_SEGMENT_SIZE, NULL, 0);
	allocated = file_bytes(name);
	refs = calloc(MANY_REFS, sizeof(*refs));
	assert_non_null(refs);
	for (unsigned i = 0; i < MANY_REFS; i++)
		refs[i] = ref_into(name, CHUNK + 64 * i, 64);
	bad = frame_with_refs(frame, len, refs, MANY_REFS, &bad_len);
	assert_int_equal(shmrig_frame_discard(fx.pool, frame, len), 0);

	/* Count the opens of the file: open and close alternate, so inotify
	 * cannot merge two opens into one event. */
	watch = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
	assert_true(watch >= 0);
	snprintf(path, sizeof(path), "/dev/shm/%s", name);
	assert_true(inotify_add_watch(watch, path, IN_OPEN | IN_CLOSE) >= 0);
	peak_known = reset_peak_rss();
	rss = status_kb("VmRSS:");
	ret = shmrig_registry_decode(fx.reg, fx.pool, bad, bad_len, &v);
	snprintf(why, sizeof(why), "%s", shmrig_last_error());
	if (peak_known)
		peak = status_kb("VmHWM:") - rss;
	opens = count_opens(watch);
	close(watch);
	fprintf(stderr, "# %d open(s) of the bad segment; peak RSS +%ld kB\n", opens, peak);

	assert_int_equal(ret, -SHMRIG_ECORRUPT);
	assert_non_null(strstr(why, name));
	assert_true(opens <= 1);
	if (peak_known)
		assert_true(peak < (long)(MEMORY_SLACK / 1024));
	else
		fprintf(stderr, "# /proc/self/clear_refs refused: peak RSS not checked\n");
	assert_true(file_bytes(name) - allocated < (long long)MiB);
	assert_int_equal(shmrig_segment_unlink_name(th_prefix(), name), 0);
	free(bad);
	free(refs);
	free(frame);
	fx_close(&fx);
}

/* ---- 9: a large block's capacity rewritten by a peer after we attached it ---- */

#define SIZE9 (3 * MiB + 64)
#define SEED9 90
#define HUGE_CAPACITY (1ull << 40)

/* The trailer of a large block: the segment's last LARGE_TRAILER bytes, right
 * after its capacity (the segment is capacity + trailer bytes). */
static struct large_hdr *trailer_of(void *data, const struct shmrig_ref *ref)
{
	return (struct large_hdr *)((char *)data + ref->size);
}

/* The creator: hands one large block over, rewrites its trailer once the
 * parent has it mapped; makes a second one bad before anyone attaches it. */
static int child_rewrite_capacity(int in, int out)
{
	static shmrig_pool *pool;
	struct shmrig_ref large, second;
	struct large_hdr *trailer;
	void *data, *second_data;
	char sync;

	pool = th_open_pool(ARENA, POOL_MAX);
	CHILD_CHECK(pool);
	CHILD_CHECK(shmrig_pool_alloc(pool, SIZE9, 0, 9, &large, &data) == 0);
	th_fill(data, SIZE9, SEED9);
	CHILD_CHECK(shmrig_pool_transfer(pool, &large, getppid()) == 0);
	CHILD_CHECK(th_write_all(out, &large, sizeof(large)) == 0);
	CHILD_CHECK(th_read_all(in, &sync, 1) == 0); /* it claimed and attached it */
	trailer = trailer_of(data, &large);
	trailer->capacity = HUGE_CAPACITY;
	trailer->desc.content_size = HUGE_CAPACITY;
	CHILD_CHECK(shmrig_pool_alloc(pool, SIZE9 - MiB, 0, 9, &second, &second_data) == 0);
	trailer_of(second_data, &second)->capacity = HUGE_CAPACITY;
	CHILD_CHECK(th_write_all(out, &second, sizeof(second)) == 0);
	CHILD_CHECK(th_read_all(in, &sync, 1) == 0); /* done, and it freed the first */
	CHILD_CHECK(shmrig_pool_free(pool, &second) == 0);
	CHILD_CHECK(shmrig_pool_close(pool) == 0);
	return 0;
}

struct large_seen {
	uint64_t size;
	uint64_t content_size;
	int count;
};

static void see_large(void *arg, const struct shmrig_block_info *info)
{
	struct large_seen *seen = arg;

	seen->size = info->ref.size;
	seen->content_size = info->ref.content_size;
	seen->count++;
}

static void test_09_large_capacity_rewritten(void **state)
{
	static struct fx fx; /* static: reachable in forked children (valgrind) */
	struct shmrig_ref large, second, bad;
	struct large_seen seen = { 0 };
	struct shmrig_pool_stats st = SHMRIG_SIZED(struct shmrig_pool_stats);
	uintptr_t start = 0, end = 0;
	unsigned char *data, *again;
	struct th_peer peer;
	int ret;

	(void)state;
	fx_open(&fx);
	peer = spawn_peer(child_rewrite_capacity);
	assert_int_equal(th_read_all(peer.from_child, &large, sizeof(large)), 0);
	assert_int_equal(shmrig_pool_claim(fx.pool, &large), 0);
	assert_int_equal(shmrig_pool_attach(fx.pool, &large, (void **)&data), 0);
	assert_true(bytes_intact(data, SIZE9, SEED9));
	assert_int_equal(th_write_all(peer.to_child, "r", 1), 0);
	assert_int_equal(th_read_all(peer.from_child, &second, sizeof(second)), 0);

	/* a ref as long as the new "capacity" says: outside our mapping */
	bad = large;
	bad.size = HUGE_CAPACITY / 2;
	bad.content_size = 0;
	ret = shmrig_pool_attach(fx.pool, &bad, (void **)&again);
	assert_int_equal(ret, -SHMRIG_EBADREF);
	bad = large;
	bad.offset = large.size;
	bad.size = 64;
	bad.content_size = 0;
	assert_int_equal(shmrig_pool_attach(fx.pool, &bad, (void **)&again), -SHMRIG_EBADREF);
	/* the real ref: the same pointer, inside the mapping, the same bytes */
	assert_int_equal(shmrig_pool_attach(fx.pool, &large, (void **)&again), 0);
	assert_ptr_equal(again, data);
	assert_true(mapping_of(large.name, &start, &end));
	assert_true((uintptr_t)again >= start && (uintptr_t)again + large.size <= end);
	assert_true(bytes_intact(again, SIZE9, SEED9));
	/* stats and walks report our copy of the capacity, not the peer's */
	assert_int_equal(shmrig_pool_stats(fx.pool, &st), 0);
	assert_int_equal(st.large_live_blocks, 1);
	assert_true(st.large_live_bytes <= large.size);
	assert_int_equal(shmrig_pool_for_each_live(fx.pool, see_large, &seen), 1);
	assert_int_equal(seen.size, large.size);
	assert_true(seen.content_size <= large.size);
	assert_int_equal(shmrig_pool_free(fx.pool, &large), 0);
	/* a trailer rewritten before we map it: refused at attach */
	assert_int_equal(shmrig_pool_attach(fx.pool, &second, (void **)&again), -SHMRIG_ECORRUPT);
	assert_int_equal(th_write_all(peer.to_child, "d", 1), 0);
	assert_int_equal(finish_peer(&peer), 0);
	fx_close(&fx);
}

/* ---- 10: a peer marks FREE a large block we own and read ---- */

#define SIZE10 (3 * MiB)
#define SEED10 100

static int child_mark_free(int in, int out)
{
	static shmrig_pool *pool;
	struct shmrig_ref refs[2];
	struct desc *desc;
	void *data, *small;
	char sync;

	pool = th_open_pool(ARENA, POOL_MAX);
	CHILD_CHECK(pool);
	CHILD_CHECK(shmrig_pool_alloc(pool, SIZE10, 0, 10, &refs[0], &data) == 0);
	th_fill(data, SIZE10, SEED10);
	CHILD_CHECK(shmrig_pool_alloc(pool, 200, 0, 10, &refs[1], &small) == 0);
	CHILD_CHECK(shmrig_pool_transfer(pool, &refs[0], getppid()) == 0);
	CHILD_CHECK(th_write_all(out, refs, sizeof(refs)) == 0);
	CHILD_CHECK(th_read_all(in, &sync, 1) == 0); /* it claimed and reads it */
	desc = &trailer_of(data, &refs[0])->desc;
	atomic_store(&desc->word, word_make(word_gen(atomic_load(&desc->word)), 0, 0, ST_FREE));
	CHILD_CHECK(th_write_all(out, "f", 1) == 0);
	CHILD_CHECK(th_read_all(in, &sync, 1) == 0);
	CHILD_CHECK(shmrig_pool_free(pool, &refs[1]) == 0);
	CHILD_CHECK(shmrig_pool_close(pool) == 0);
	return 0;
}

static void test_10_large_marked_free(void **state)
{
	static struct fx fx; /* static: reachable in forked children (valgrind) */
	struct shmrig_ref refs[2];
	unsigned char *data;
	struct th_peer peer;
	void *small;
	char sync;

	(void)state;
	fx_open(&fx);
	peer = spawn_peer(child_mark_free);
	assert_int_equal(th_read_all(peer.from_child, refs, sizeof(refs)), 0);
	assert_int_equal(shmrig_pool_claim(fx.pool, &refs[0]), 0);
	assert_int_equal(shmrig_pool_attach(fx.pool, &refs[0], (void **)&data), 0);
	assert_true(bytes_intact(data, SIZE10, SEED10));
	assert_int_equal(th_write_all(peer.to_child, "a", 1), 0);
	assert_int_equal(th_read_all(peer.from_child, &sync, 1), 0);
	/* mapping an unrelated segment used to unmap "free" foreign large blocks */
	assert_int_equal(shmrig_pool_attach(fx.pool, &refs[1], &small), 0);
	assert_true(is_mapped(data, refs[0].size));
	assert_true(bytes_intact(data, SIZE10, SEED10));
	assert_int_equal(shmrig_pool_reap(fx.pool), 0);
	assert_true(is_mapped(data, refs[0].size));
	/* the peer said it is free: it is not ours to free again */
	assert_int_equal(shmrig_pool_free(fx.pool, &refs[0]), -SHMRIG_ENOTLIVE);
	assert_int_equal(th_write_all(peer.to_child, "d", 1), 0);
	assert_int_equal(finish_peer(&peer), 0);
	fx_close(&fx);
}

/* ---- 11: a 4 GiB arena file (2048 chunks) with a plausible header ---- */

#define BIG_CHUNKS 2048u

static void test_11_arena_of_2048_chunks(void **state)
{
	size_t hdr_len = ext_descs_at(BIG_CHUNKS);
	struct arena_hdr *hdr = calloc(1, hdr_len);
	char name[SHMRIG_NAME_MAX];
	struct shmrig_pool_stats st = SHMRIG_SIZED(struct shmrig_pool_stats);
	struct shmrig_ref mine, ref;
	long long allocated;
	void *data;
	struct fx fx;

	(void)state;
	assert_non_null(hdr);
	fx_open(&fx);
	/* one block of our own, so that the walks have something to walk */
	assert_int_equal(shmrig_pool_alloc(fx.pool, 100, 0, 11, &mine, &data), 0);
	hdr->version = LAYOUT_VERSION;
	hdr->nchunks = BIG_CHUNKS;
	hdr->arena_size = (uint64_t)BIG_CHUNKS * CHUNK;
	assert_int_equal(shmrig__self((shmrig__procid *)&hdr->creator), 0);
	atomic_store(&hdr->next_chunk, BIG_CHUNKS);
	hdr->hdr_size = (uint32_t)header_size(BIG_CHUNKS);
	for (unsigned c = 0; c < NCLASS; c++) {
		atomic_store(&hdr->free_list[c].head, NIL);
		atomic_store(&hdr->remote[c].head, NIL);
	}
	for (unsigned i = 0; i < BIG_CHUNKS; i++)
		atomic_store(&hdr->chunks[i].class_plus1, 1);
	hdr->magic = ARENA_MAGIC;
	craft_arena_file(name, (size_t)BIG_CHUNKS * CHUNK, hdr, hdr_len);
	allocated = file_bytes(name);

	ref = ref_into(name, 1000 * CHUNK + 4096, 64);
	assert_int_equal(shmrig_pool_attach(fx.pool, &ref, &data), -SHMRIG_ECORRUPT);
	assert_true(file_bytes(name) - allocated < (long long)MiB);
	/* nothing of it entered our tables: every walk sees only our arena */
	assert_int_equal(shmrig_pool_stats(fx.pool, &st), 0);
	assert_int_equal(st.segments, 1);
	assert_int_equal(st.live_blocks, 1);
	assert_int_equal(shmrig_pool_for_each_live(fx.pool, NULL, NULL), 1);
	assert_int_equal(shmrig_pool_reap(fx.pool), 0);
	assert_int_equal(shmrig_pool_audit(fx.pool), 0);
	assert_int_equal(shmrig_pool_sweep(fx.pool), 0); /* its "creator" (we) is alive */
	assert_int_equal(shmrig_pool_free(fx.pool, &mine), 0);
	assert_int_equal(shmrig_segment_unlink_name(th_prefix(), name), 0);
	free(hdr);
	fx_close(&fx);
}

/* ---- 12: attaching a 1 GiB sparse file with a bad header commits nothing ---- */

#define GIB_FILE ((size_t)1 << 30)

static void test_12_sparse_gib_bad_header(void **state)
{
	char name[SHMRIG_NAME_MAX];
	long shmem_before, rss, peak = 0;
	struct shmrig_ref ref;
	long long allocated;
	bool peak_known;
	struct fx fx;
	void *data;
	int ret;

	(void)state;
	fx_open(&fx);
	craft_arena_file(name, GIB_FILE, NULL, 0); /* 512 chunks: a size an arena may have */
	allocated = file_bytes(name);
	ref = ref_into(name, CHUNK + 64, 64);
	shmem_before = status_kb("RssShmem:");
	peak_known = reset_peak_rss();
	rss = status_kb("VmRSS:");
	ret = shmrig_pool_attach(fx.pool, &ref, &data);
	if (peak_known)
		peak = status_kb("VmHWM:") - rss;
	fprintf(stderr, "# peak RSS +%ld kB, RssShmem %ld -> %ld kB, file %lld -> %lld bytes\n",
		peak, shmem_before, status_kb("RssShmem:"), allocated, file_bytes(name));
	assert_int_equal(ret, -SHMRIG_ECORRUPT);
	if (peak_known)
		assert_true(peak < (long)(MEMORY_SLACK / 1024));
	else
		fprintf(stderr, "# /proc/self/clear_refs refused: peak RSS not checked\n");
	assert_true(status_kb("RssShmem:") - shmem_before < (long)(MEMORY_SLACK / 1024));
	assert_true(file_bytes(name) - allocated < (long long)MiB);
	assert_int_equal(shmrig_segment_unlink_name(th_prefix(), name), 0);
	fx_close(&fx);
}

/* ---- 13: a free-list head at a live block; a one-element cycle ---- */

#define PICKS 64
#define PICK_TRIES 200

struct picks {
	struct shmrig_ref refs[PICKS];
	unsigned count;
	unsigned corrupt; /* allocations that answered -SHMRIG_ECORRUPT */
};

/* Allocate until p holds `until` blocks, counting -SHMRIG_ECORRUPT answers. */
static void pick(struct fx *fx, struct picks *p, size_t size, unsigned until)
{
	for (unsigned tries = 0; p->count < until && tries < PICK_TRIES; tries++) {
		void *data;
		int ret = shmrig_pool_alloc(fx->pool, size, 0, 13, &p->refs[p->count], &data);

		if (ret == -SHMRIG_ECORRUPT)
			p->corrupt++;
		else if (ret == 0)
			p->count++;
		else
			fail_msg("allocation: %d (%s)", ret, shmrig_last_error());
	}
}

/* No block handed out twice: every (segment, offset) once. */
static unsigned duplicates(const struct picks *p)
{
	unsigned dups = 0;

	for (unsigned i = 0; i < p->count; i++)
		for (unsigned j = i + 1; j < p->count; j++)
			dups += p->refs[i].offset == p->refs[j].offset &&
				strcmp(p->refs[i].name, p->refs[j].name) == 0;
	return dups;
}

static void test_13_free_list_hostile(void **state)
{
	struct picks live_head = { .count = 0 }, cycle = { .count = 0 };
	struct arena_view view, view2;
	_Atomic uint64_t *head;
	struct desc *d;
	uint64_t old_head;
	uint32_t id;
	unsigned c;
	struct fx fx;

	(void)state;
	fx_open(&fx);
	/* the head at a live block (class 64 B): A = refs[0], then the rest of
	 * the cache (a new chunk caches 32 blocks), so that the next allocation
	 * pops the shared list */
	pick(&fx, &live_head, 64, 32);
	assert_int_equal(live_head.count, 32);
	view_open(&view, live_head.refs[0].name);
	view_block(&view, &live_head.refs[0], &id, &c);
	assert_int_equal(c, 0);
	head = &view.hdr->free_list[0].head;
	old_head = atomic_load(head);
	atomic_store(head, ((uint64_t)((uint32_t)(old_head >> 32) + 1) << 32) | id);
	pick(&fx, &live_head, 64, PICKS);

	/* a one-element cycle: class 128 B, in the next arena */
	pick(&fx, &cycle, 128, 32);
	assert_int_equal(cycle.count, 32);
	view_open(&view2, cycle.refs[0].name);
	view_block(&view2, &cycle.refs[0], &id, &c);
	assert_int_equal(c, 1);
	head = &view2.hdr->free_list[1].head;
	id = (uint32_t)atomic_load(head);
	assert_true(id != NIL);
	d = view_desc(&view2, id, 1);
	atomic_store(&d->next_free, id);
	pick(&fx, &cycle, 128, PICKS);

	fprintf(stderr, "# -SHMRIG_ECORRUPT answers: live head %u, cycle %u\n", live_head.corrupt,
		cycle.corrupt);
	assert_int_equal(live_head.count, PICKS);
	assert_int_equal(cycle.count, PICKS);
	assert_int_equal(duplicates(&live_head), 0);
	assert_int_equal(duplicates(&cycle), 0);
	/* each is said, and the list made again: the audit at close is clean */
	assert_true(live_head.corrupt >= 1);
	assert_true(cycle.corrupt >= 1);
	unchurn(fx.pool, live_head.refs, live_head.count);
	unchurn(fx.pool, cycle.refs, cycle.count);
	shmrig_segment_close(view.seg);
	shmrig_segment_close(view2.seg);
	fx_close(&fx);
}

/* ---- 13, more: the arena's geometry written by a peer ---- */

/* The segment a ref names, mapped as a peer maps it. */
static struct arena_hdr *peer_map(const struct shmrig_ref *ref, shmrig_segment **seg)
{
	assert_int_equal(shmrig_segment_attach(th_prefix(), ref->name, seg), 0);
	return shmrig_segment_base(*seg);
}

/* A peer lowers the shared next_chunk: the creator must not claim a chunk in
 * use again (it counts in its own copy), so no block is handed out inside a
 * live one and the live one stays intact. */
static void test_13_next_chunk_lowered(void **state)
{
	struct shmrig_ref big, small[64];
	shmrig_segment *seg;
	struct arena_hdr *h;
	uint32_t saved;
	char *bdata;
	void *data;
	unsigned n = 0;
	struct fx fx;

	(void)state;
	fx_open_sized(&fx, 8 * MiB);
	assert_int_equal(shmrig_pool_alloc(fx.pool, 64, 0, 0, &small[n++], &data), 0);
	assert_int_equal(shmrig_pool_alloc(fx.pool, 65536, 0, 0, &big, (void **)&bdata), 0);
	assert_int_equal(big.offset / CHUNK, 1);
	memset(bdata, 0xab, 65536);
	h = peer_map(&big, &seg);
	saved = atomic_load(&h->next_chunk);
	atomic_store(&h->next_chunk, 1); /* chunk 1 "is" unused */
	for (; n < 64; n++) {
		assert_int_equal(shmrig_pool_alloc(fx.pool, 4096, 0, 0, &small[n], &data), 0);
		assert_false(strcmp(small[n].name, big.name) == 0 && small[n].offset < big.offset + 65536 &&
			     small[n].offset + 4096 > big.offset);
	}
	for (size_t i = 0; i < 65536; i++)
		assert_int_equal((unsigned char)bdata[i], 0xab);
	assert_int_equal(atomic_load(&h->chunks[1].class_plus1), 11); /* 64 KiB, still */
	/* the creator's next claim wrote its own count back over the peer's */
	assert_true(atomic_load(&h->next_chunk) > saved);
	shmrig_segment_close(seg);
	assert_int_equal(shmrig_pool_free(fx.pool, &big), 0);
	while (n--)
		assert_int_equal(shmrig_pool_free(fx.pool, &small[n]), 0);
	fx_close(&fx);
}

/* A peer flips an assigned chunk's class and points that class's free list
 * into the chunk: the creator must judge by the class it assigned, so the pop
 * is refused (-SHMRIG_ECORRUPT) and no live 64 B block is overwritten. */
static void test_13_chunk_class_flipped(void **state)
{
	struct shmrig_ref big[64], small[100];
	unsigned char *sdata[100];
	int corrupt = 0, nbig = 0;
	shmrig_segment *seg;
	struct arena_hdr *h;
	uint64_t old;
	void *data;
	struct fx fx;

	(void)state;
	fx_open_sized(&fx, 8 * MiB);
	/* chunk 0: 4 KiB blocks; chunk 1: 64 B blocks */
	assert_int_equal(shmrig_pool_alloc(fx.pool, 4096, 0, 0, &big[nbig++], &data), 0);
	for (int i = 0; i < 100; i++) {
		assert_int_equal(shmrig_pool_alloc(fx.pool, 64, 0, 0, &small[i], (void **)&sdata[i]), 0);
		assert_int_equal(small[i].offset / CHUNK, 1);
		memset(sdata[i], 0x11, 64);
	}
	h = peer_map(&small[0], &seg);
	atomic_store(&h->chunks[1].class_plus1, 7); /* chunk 1 "is" 4 KiB now */
	old = atomic_load(&h->free_list[6].head);
	atomic_store(&h->free_list[6].head, ((old >> 32) + 1) << 32 | (1u << SLOT_BITS | 167));
	for (int i = 0; i < 63; i++) { /* empty the 4 KiB cache, then pop the list */
		int ret = shmrig_pool_alloc(fx.pool, 4096, 0, 0, &big[nbig], &data);

		if (ret == -SHMRIG_ECORRUPT) {
			corrupt++;
			continue;
		}
		assert_int_equal(ret, 0);
		assert_int_not_equal(big[nbig].offset / CHUNK, 1);
		memset(data, 0xee, 4096);
		nbig++;
	}
	assert_true(corrupt >= 1);
	for (int i = 0; i < 100; i++)
		for (int k = 0; k < 64; k++)
			assert_int_equal(sdata[i][k], 0x11);
	atomic_store(&h->chunks[1].class_plus1, 1); /* the peer is done */
	shmrig_segment_close(seg);
	while (nbig--)
		assert_int_equal(shmrig_pool_free(fx.pool, &big[nbig]), 0);
	for (int i = 0; i < 100; i++)
		assert_int_equal(shmrig_pool_free(fx.pool, &small[i]), 0);
	fx_close(&fx);
}

/* ---- 14: a death between marking a block freed and pushing it ---- */

#define SIZE14 (64 * KiB)
#define FIND_TRIES 96

/* Claims what it is handed (it owns it then), says so, exits holding it. */
static int child_take_and_die(int in, int out)
{
	static shmrig_pool *pool;
	struct shmrig_ref refs[2];

	pool = th_open_pool(ARENA, POOL_MAX);
	CHILD_CHECK(pool);
	CHILD_CHECK(th_read_all(in, refs, sizeof(refs)) == 0);
	for (unsigned i = 0; i < 2; i++)
		CHILD_CHECK(shmrig_pool_claim(pool, &refs[i]) == 0);
	CHILD_CHECK(th_write_all(out, "c", 1) == 0);
	(void)!shmrig_pool_close(pool); /* reports the two as leaks: they die with us */
	return 0;
}

/* Says who it is, and exits: the reaper that will have died. */
static int child_identity(int in, int out)
{
	shmrig__procid self;

	(void)in;
	CHILD_CHECK(shmrig__self(&self) == 0);
	return th_write_all(out, &self, sizeof(self)) ? 1 : 0;
}

static void test_14_death_between_mark_and_push(void **state)
{
	static struct fx fx; /* static: reachable in forked children (valgrind) */
	struct shmrig_ref blocks[2], found[FIND_TRIES];
	shmrig__procid reaper;
	struct arena_view view;
	struct th_peer owner, dead_reaper;
	bool seen[2] = { false, false };
	unsigned n = 0;
	int reaped;
	char sync;

	(void)state;
	fx_open_sized(&fx, 8 * MiB);
	owner = spawn_peer(child_take_and_die);
	for (unsigned i = 0; i < 2; i++) {
		void *data;

		assert_int_equal(shmrig_pool_alloc(fx.pool, SIZE14, 0, 14, &blocks[i], &data), 0);
		assert_int_equal(shmrig_pool_transfer(fx.pool, &blocks[i], owner.pid), 0);
	}
	assert_int_equal(th_write_all(owner.to_child, blocks, sizeof(blocks)), 0);
	assert_int_equal(th_read_all(owner.from_child, &sync, 1), 0);
	assert_int_equal(finish_peer(&owner), 0);
	dead_reaper = spawn_peer(child_identity);
	assert_int_equal(th_read_all(dead_reaper.from_child, &reaper, sizeof(reaper)), 0);
	assert_int_equal(finish_peer(&dead_reaper), 0);

	/* As they left it: block 0 marked freed by its owner (who died before
	 * the push); block 1 taken by a reaper (owner written) who died too. */
	view_open(&view, blocks[0].name);
	for (unsigned i = 0; i < 2; i++) {
		unsigned c;
		uint32_t id;
		struct desc *d = view_block(&view, &blocks[i], &id, &c);

		atomic_store(&d->word,
			     word_make(gen_next(word_gen(atomic_load(&d->word))), 0, 0, ST_REMOTE));
		if (i == 1)
			atomic_store(&d->owner, reaper);
	}
	shmrig_segment_close(view.seg);

	reaped = shmrig_pool_reap(fx.pool);
	fprintf(stderr, "# reap() returned %d\n", reaped);
	assert_true(reaped >= 0);
	assert_int_equal(shmrig_pool_audit(fx.pool), 0);
	while (n < FIND_TRIES && !(seen[0] && seen[1])) {
		void *data;

		assert_int_equal(shmrig_pool_alloc(fx.pool, SIZE14, 0, 14, &found[n], &data), 0);
		for (unsigned i = 0; i < 2; i++)
			seen[i] |= found[n].offset == blocks[i].offset &&
				   strcmp(found[n].name, blocks[i].name) == 0;
		n++;
	}
	assert_true(seen[0]);
	assert_true(seen[1]);
	unchurn(fx.pool, found, n);
	fx_close(&fx);
}

/* ---- 18: the remote list's prefetch hints written by a peer ---- */

#define N18 40
#define SEED18 180

/* Claims the refs it is handed with one call, frees them with one (one push
 * for the run), says how it went, exits. */
static int child_free_batch(int in, int out)
{
	static shmrig_pool *pool;
	struct shmrig_ref refs[N18];
	int rc;

	pool = th_open_pool(ARENA, POOL_MAX);
	CHILD_CHECK(pool);
	CHILD_CHECK(th_read_all(in, refs, sizeof(refs)) == 0);
	rc = shmrig_pool_claim_n(pool, refs, N18);
	if (!rc)
		rc = shmrig_pool_free_n(pool, refs, N18);
	CHILD_CHECK(th_write_all(out, &rc, sizeof(rc)) == 0);
	return shmrig_pool_close(pool) == 0 ? 0 : 1;
}

/*
 * The hints only say which descriptors the creator fetches ahead; the list is
 * its links. A peer writes every hint of the class to a live block, to ids of
 * no block and of another class, and the head's push count to nonsense, before
 * the remote frees and again before the creator collects: every freed block
 * still comes back exactly once, the live one never, and it stays intact.
 */
static void test_18_remote_hints_hostile(void **state)
{
	static struct fx fx; /* static: reachable in forked children (valgrind) */
	struct shmrig_ref refs[N18], live, found[4 * N18];
	bool seen[N18] = { false };
	struct arena_view view;
	struct th_peer peer;
	unsigned c, n = 0, back = 0;
	uint32_t live_id;
	void *data;
	int rc;

	(void)state;
	fx_open_sized(&fx, 8 * MiB);
	assert_int_equal(shmrig_pool_alloc(fx.pool, 64, 0, 18, &live, &data), 0);
	th_fill(data, 64, SEED18);
	peer = spawn_peer(child_free_batch);
	for (unsigned i = 0; i < N18; i++) {
		assert_int_equal(shmrig_pool_alloc(fx.pool, 64, 0, 18, &refs[i], &data), 0);
		assert_int_equal(shmrig_pool_transfer(fx.pool, &refs[i], peer.pid), 0);
	}
	view_open(&view, live.name);
	view_block(&view, &live, &live_id, &c);
	assert_int_equal(c, 0);
	for (unsigned round = 0; round < 2; round++) {
		_Atomic uint64_t *head = &view.hdr->remote[0].head;

		for (unsigned i = 0; i < REMOTE_HINTS; i++)
			atomic_store(&view.hdr->remote[0].hint[i], i % 3 == 0 ? live_id :
								   i % 3 == 1 ? 0xfffffff0u - i :
										1u + i);
		atomic_store(head, (0xfffffff9ull << 32) | (uint32_t)atomic_load(head));
		if (round == 0) {
			assert_int_equal(th_write_all(peer.to_child, refs, sizeof(refs)), 0);
			assert_int_equal(th_read_all(peer.from_child, &rc, sizeof(rc)), 0);
			assert_int_equal(rc, 0);
			assert_int_equal(finish_peer(&peer), 0);
		}
	}
	shmrig_segment_close(view.seg);
	assert_int_equal(th_live_blocks(fx.pool), 1);
	assert_int_equal(shmrig_pool_audit(fx.pool), 0);
	/* allocate until every freed block came back: the cache first, then the
	 * remote list the peer's one push made */
	while (n < 4 * N18 && back < N18) {
		assert_int_equal(shmrig_pool_alloc(fx.pool, 64, 0, 18, &found[n], &data), 0);
		assert_false(found[n].offset == live.offset &&
			     strcmp(found[n].name, live.name) == 0);
		for (unsigned i = 0; i < N18; i++)
			if (found[n].offset == refs[i].offset &&
			    strcmp(found[n].name, refs[i].name) == 0) {
				assert_false(seen[i]);
				seen[i] = true;
				back++;
			}
		n++;
	}
	assert_int_equal(back, N18);
	assert_int_equal(shmrig_pool_attach(fx.pool, &live, &data), 0);
	assert_int_equal(th_first_mismatch(data, 64, SEED18), 64);
	unchurn(fx.pool, found, n);
	assert_int_equal(shmrig_pool_free(fx.pool, &live), 0);
	assert_int_equal(shmrig_pool_audit(fx.pool), 0);
	fx_close(&fx);
}

/* ---- 15: send, then close and exit ---- */

#define SIZE15_SMALL (100 * KiB)
#define SIZE15_LARGE (3 * MiB)
#define SEED15 150

static int child_send_close_exit(int in, int out)
{
	static const size_t sizes[2] = { SIZE15_SMALL, SIZE15_LARGE };
	static shmrig_pool *pool;
	static shmrig_registry *reg;
	static void *frames[2];
	size_t lens[2];
	int closed;

	(void)in;
	pool = th_open_pool(ARENA, POOL_MAX);
	CHILD_CHECK(pool);
	CHILD_CHECK(shmrig_registry_create(&reg) == 0 && shmrig_registry_add_builtins(reg) == 0);
	for (unsigned i = 0; i < 2; i++) {
		uint64_t len;

		CHILD_CHECK(encode_rc(reg, pool, ONE_ARRAY, sizes[i], SEED15 + i, &frames[i],
				      &lens[i]) == 0);
		CHILD_CHECK(shmrig_frame_transfer(pool, frames[i], lens[i], getppid()) == 0);
		len = lens[i];
		CHILD_CHECK(th_write_all(out, &len, sizeof(len)) == 0);
		CHILD_CHECK(th_write_all(out, frames[i], lens[i]) == 0);
	}
	closed = shmrig_pool_close(pool);
	CHILD_CHECK(th_write_all(out, &closed, sizeof(closed)) == 0);
	for (unsigned i = 0; i < 2; i++)
		free(frames[i]);
	shmrig_registry_free(reg);
	return 0;
}

static void test_15_send_close_exit(void **state)
{
	static const size_t sizes[2] = { SIZE15_SMALL, SIZE15_LARGE };
	static struct fx fx; /* static: reachable in forked children (valgrind) */
	static void *frames[2];
	struct shmrig_value values[2];
	size_t lens[2];
	struct th_peer peer;
	int closed, left;

	(void)state;
	fx_open(&fx);
	peer = spawn_peer(child_send_close_exit);
	for (unsigned i = 0; i < 2; i++) {
		frames[i] = recv_frame(peer.from_child, &lens[i]);
		assert_non_null(frames[i]);
	}
	assert_int_equal(th_read_all(peer.from_child, &closed, sizeof(closed)), 0);
	assert_int_equal(finish_peer(&peer), 0); /* it is gone */
	left = th_count_segments_of(th_prefix(), peer.pid);
	for (unsigned i = 0; i < 2; i++) {
		assert_int_equal(shmrig_registry_decode(fx.reg, fx.pool, frames[i], lens[i],
							&values[i]),
				 0);
		assert_true(value_intact(&values[i], sizes[i], SEED15 + i));
	}
	assert_int_equal(closed, 0); /* it owned nothing at close: it had sent it all */
	assert_int_equal(left, 2);   /* its arena and the large block's segment */
	for (unsigned i = 0; i < 2; i++) {
		assert_int_equal(shmrig_value_release(&values[i]), 0);
		free(frames[i]);
	}
	/* we were the last owner: the segments went with our release */
	assert_int_equal(th_count_segments(th_prefix()), 0);
	fx_close(&fx);
}

/* ---- 16: for_each_live whose callback uses the pool ---- */

#define WALKED 300

struct reentry {
	shmrig_pool *pool;
	bool free_odd; /* free the visited block when its tag is odd */
	unsigned calls;
	unsigned errors;
};

static void reenter(void *arg, const struct shmrig_block_info *info)
{
	struct reentry *r = arg;
	struct shmrig_pool_stats st = SHMRIG_SIZED(struct shmrig_pool_stats);
	struct shmrig_ref ref;
	void *data;

	r->calls++;
	if (shmrig_pool_alloc(r->pool, 100, 0, 0, &ref, &data) || shmrig_pool_free(r->pool, &ref))
		r->errors++;
	/* now and then a new segment (a large block) while the walk is between batches */
	if (r->calls % 100 == 1 &&
	    (shmrig_pool_alloc(r->pool, 3 * MiB, 0, 0, &ref, &data) ||
	     shmrig_pool_free(r->pool, &ref)))
		r->errors++;
	if (shmrig_pool_stats(r->pool, &st))
		r->errors++;
	if (r->free_odd && (info->tag & 1)) {
		struct shmrig_ref victim = info->ref;

		if (shmrig_pool_free(r->pool, &victim))
			r->errors++;
	}
}

static void *use_pool(void *arg)
{
	struct shmrig_ref ref;
	void *data;

	if (shmrig_pool_alloc(arg, 64, 0, 0, &ref, &data) || shmrig_pool_free(arg, &ref))
		return arg;
	return NULL;
}

static void *walk_from_thread(void *arg)
{
	struct reentry *r = arg;

	return shmrig_pool_for_each_live(r->pool, reenter, r) == WALKED / 2 ? NULL : arg;
}

/* In a child: a deadlock there is a timeout here, not a hung test. */
static int child_reentrant_walks(void *arg)
{
	static shmrig_pool *pool;
	static struct shmrig_ref *refs;
	struct reentry r = { 0 };
	pthread_t thread;
	void *result;

	(void)arg;
	pool = th_open_pool(ARENA, POOL_MAX);
	refs = calloc(WALKED, sizeof(*refs));
	CHILD_CHECK(pool && refs);
	for (unsigned i = 0; i < WALKED; i++) {
		void *data;

		CHILD_CHECK(shmrig_pool_alloc(pool, 64, 0, i, &refs[i], &data) == 0);
	}
	/* the opener alone */
	r = (struct reentry){ .pool = pool, .free_odd = true };
	CHILD_CHECK(shmrig_pool_for_each_live(pool, reenter, &r) == WALKED);
	CHILD_CHECK(r.calls == WALKED && r.errors == 0);
	/* after a second thread used the pool: everybody takes the lock */
	CHILD_CHECK(pthread_create(&thread, NULL, use_pool, pool) == 0);
	CHILD_CHECK(pthread_join(thread, &result) == 0 && result == NULL);
	r = (struct reentry){ .pool = pool };
	CHILD_CHECK(shmrig_pool_for_each_live(pool, reenter, &r) == WALKED / 2);
	CHILD_CHECK(r.calls == WALKED / 2 && r.errors == 0);
	/* and from that other thread */
	r = (struct reentry){ .pool = pool };
	CHILD_CHECK(pthread_create(&thread, NULL, walk_from_thread, &r) == 0);
	CHILD_CHECK(pthread_join(thread, &result) == 0 && result == NULL);
	CHILD_CHECK(r.calls == WALKED / 2 && r.errors == 0);
	for (unsigned i = 0; i < WALKED; i += 2)
		CHILD_CHECK(shmrig_pool_free(pool, &refs[i]) == 0);
	CHILD_CHECK(shmrig_pool_audit(pool) == 0);
	CHILD_CHECK(shmrig_pool_close(pool) == 0);
	free(refs);
	return 0;
}

static void test_16_walk_callback_reenters(void **state)
{
	int fds = th_count_fds();

	(void)state;
	assert_int_equal(th_run_child(child_reentrant_walks, NULL, TIMEOUT_MS), 0);
	assert_int_equal(th_count_segments(th_prefix()), 0);
	assert_int_equal(th_count_fds(), fds);
}

/* ---- 17: reap over 200k live blocks of one live peer ---- */

#define HELD_BLOCKS 200000u
/* A read of /proc/PID/stat is one read() of about 300 bytes; the old reap made
 * one per block. Under valgrind, its scheduler's lock adds 1-byte pipe reads
 * (a dozen or so over this reap): the call count has room for them, the byte
 * count bounds the /proc reads to about a dozen. */
#define REAP_READ_CALLS_MAX 64
#define REAP_READ_BYTES_MAX 4096

/* Holds HELD_BLOCKS blocks; sends one ref per arena; frees all when told. */
static int child_hold_many(int in, int out)
{
	static shmrig_pool *pool;
	static struct shmrig_ref *refs;
	uint32_t arenas = 0;
	char sync;

	pool = th_open_pool(64 * MiB, POOL_MAX);
	refs = malloc(HELD_BLOCKS * sizeof(*refs));
	CHILD_CHECK(pool && refs);
	for (uint32_t i = 0; i < HELD_BLOCKS; i++) {
		void *data;

		CHILD_CHECK(shmrig_pool_alloc(pool, 64, 0, 17, &refs[i], &data) == 0);
		arenas += i == 0 || strcmp(refs[i].name, refs[i - 1].name) != 0;
	}
	CHILD_CHECK(th_write_all(out, &arenas, sizeof(arenas)) == 0);
	for (uint32_t i = 0; i < HELD_BLOCKS; i++)
		if (i == 0 || strcmp(refs[i].name, refs[i - 1].name) != 0)
			CHILD_CHECK(th_write_all(out, &refs[i], sizeof(refs[i])) == 0);
	CHILD_CHECK(th_read_all(in, &sync, 1) == 0);
	for (uint32_t i = 0; i < HELD_BLOCKS; i++)
		CHILD_CHECK(shmrig_pool_free(pool, &refs[i]) == 0);
	CHILD_CHECK(shmrig_pool_close(pool) == 0);
	free(refs);
	return 0;
}

static void test_17_reap_many_live(void **state)
{
	static struct fx fx; /* static: reachable in forked children (valgrind) */
	struct reads before, after;
	struct th_peer peer;
	uint32_t arenas;
	int reaped;

	(void)state;
	fx_open(&fx);
	peer = spawn_peer(child_hold_many);
	assert_int_equal(th_read_all(peer.from_child, &arenas, sizeof(arenas)), 0);
	assert_true(arenas >= 1 && arenas < 64);
	for (uint32_t i = 0; i < arenas; i++) {
		struct shmrig_ref ref;
		void *data;

		assert_int_equal(th_read_all(peer.from_child, &ref, sizeof(ref)), 0);
		assert_int_equal(shmrig_pool_attach(fx.pool, &ref, &data), 0);
	}
	assert_int_equal(th_live_blocks(fx.pool), HELD_BLOCKS);
	/* how it asks: count this process's reads (the first reads_so_far()
	 * counts itself: one call, about 100 bytes) */
	before = reads_so_far();
	reaped = shmrig_pool_reap(fx.pool);
	after = reads_so_far();
	fprintf(stderr, "# reap over %u live blocks: %lld read() calls, %lld bytes\n",
		HELD_BLOCKS, after.calls - before.calls, after.bytes - before.bytes);
	assert_int_equal(reaped, 0);
	assert_int_equal(th_live_blocks(fx.pool), HELD_BLOCKS);
	assert_true(before.calls >= 0 && after.calls >= 0);
	assert_true(after.calls - before.calls <= REAP_READ_CALLS_MAX);
	assert_true(after.bytes - before.bytes <= REAP_READ_BYTES_MAX);
	assert_int_equal(th_write_all(peer.to_child, "d", 1), 0);
	assert_int_equal(finish_peer(&peer), 0);
	fx_close(&fx);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_teardown(test_05_decode_twice, th_remove_leftovers),
		cmocka_unit_test_teardown(test_06_temporary_on_view, th_remove_leftovers),
		cmocka_unit_test_teardown(test_07_ref_to_held_block, th_remove_leftovers),
		cmocka_unit_test_teardown(test_08_many_refs_one_bad_segment, th_remove_leftovers),
		cmocka_unit_test_teardown(test_09_large_capacity_rewritten, th_remove_leftovers),
		cmocka_unit_test_teardown(test_10_large_marked_free, th_remove_leftovers),
		cmocka_unit_test_teardown(test_11_arena_of_2048_chunks, th_remove_leftovers),
		cmocka_unit_test_teardown(test_12_sparse_gib_bad_header, th_remove_leftovers),
		cmocka_unit_test_teardown(test_13_free_list_hostile, th_remove_leftovers),
		cmocka_unit_test_teardown(test_13_next_chunk_lowered, th_remove_leftovers),
		cmocka_unit_test_teardown(test_13_chunk_class_flipped, th_remove_leftovers),
		cmocka_unit_test_teardown(test_14_death_between_mark_and_push, th_remove_leftovers),
		cmocka_unit_test_teardown(test_15_send_close_exit, th_remove_leftovers),
		cmocka_unit_test_teardown(test_16_walk_callback_reenters, th_remove_leftovers),
		cmocka_unit_test_teardown(test_17_reap_many_live, th_remove_leftovers),
		cmocka_unit_test_teardown(test_18_remote_hints_hostile, th_remove_leftovers),
	};

	return cmocka_run_group_tests(tests, th_sweep_leftovers, NULL);
}
