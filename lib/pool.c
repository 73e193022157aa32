/* SPDX-License-Identifier: MIT */
/*
 * pool: arenas of size-classed blocks and large blocks in segments of their own.
 *
 * Shared layout of an arena (every field two processes read is asserted below):
 *
 *   chunk 0: [arena_hdr][chunk_info x nchunks][big-class descriptors x nchunks x 32]
 *            [descriptors] [payload blocks]
 *   chunk i: [descriptors] [payload blocks]
 *
 * Classes of 64 KiB and more have at most 32 blocks a chunk; their descriptors
 * live in the header's table (32 a chunk) so that the payload can start at the
 * chunk's first byte: a 1 MiB chunk-mate of an in-chunk descriptor array would
 * waste half the chunk.
 *
 * A chunk is 2 MiB and serves one size class, chosen when the creator first
 * needs it. Its layout (how many blocks, where descriptors and payloads start)
 * is computed from the class and the header size, never read from shared
 * memory, so a peer cannot make us index outside the segment.
 *
 * A large block's segment holds the payload at offset 0 and a large_hdr (with
 * the block's one descriptor) in its last LARGE_TRAILER bytes.
 *
 * The segment's role letter ('a' arena, 'l' large) tells which layout to read
 * before any byte of it is trusted.
 */
#include "internal.h"
#include "prim.h"

#include <shmrig/pool.h>

#include <errno.h>
#include <pthread.h>
#include <poll.h>
#include <signal.h>
#include <stdalign.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#define ARENA_MAGIC 0x414e455241524853ull /* "SHRARENA" */
#define LARGE_MAGIC 0x454752414c524853ull /* "SHRLARGE" */
#define LAYOUT_VERSION 1u
#define ROLE_ARENA 'a'
#define ROLE_LARGE 'l'
#define CHUNK ((size_t)SHMRIG_POOL_CHUNK)
#define NCLASS SHMRIG_POOL_NUM_CLASSES
#define NIL UINT32_MAX
#define SLOT_BITS 16
/* 1 GiB arenas at most: the header (about 1 KiB a chunk) then stays inside chunk 0. */
#define MAX_CHUNKS 512u
#define LARGE_TRAILER 128u
#define DEFAULT_ARENA_SIZE ((size_t)64 << 20)
#define DEFAULT_MAX_BYTES ((size_t)1 << 30)
/* Per-process cache of free blocks, per arena and class. */
#define CACHE_CAP 64u
#define CACHE_BATCH 32u
/* Free large segments kept mapped for reuse by the process that made them. */
#define LARGE_KEEP 4u

/* Descriptor word: generation (bits 63..32) | refcount (31..8) | state (7..0). */
enum {
	ST_FREE = 0,
	ST_CACHED = 1,
	ST_LIVE = 2
};
#define REF_MAX ((1u << 24) - 1)

static inline uint64_t word_make(uint32_t gen, uint32_t refs, unsigned state)
{
	return ((uint64_t)gen << 32) | ((uint64_t)refs << 8) | state;
}
static inline uint32_t word_gen(uint64_t w)
{
	return (uint32_t)(w >> 32);
}
static inline uint32_t word_refs(uint64_t w)
{
	return (uint32_t)(w >> 8) & REF_MAX;
}
static inline unsigned word_state(uint64_t w)
{
	return (unsigned)(w & 0xff);
}

/*
 * Block descriptor, in shared memory. `word` changes by one atomic store or CAS
 * per transition; `owner` is written by the owner only (or the reaper once the
 * owner is dead), with one atomic store, before the block is published.
 */
struct desc {
	_Atomic uint64_t word;
	_Atomic uint64_t owner; /* shmrig__procid */
	uint64_t content_size;
	uint32_t tag;
	_Atomic uint32_t next_free; /* block id of the next free block in the class list */
};
_Static_assert(sizeof(struct desc) == 32, "descriptor layout is shared");

struct chunk_info {
	_Atomic uint32_t class_plus1; /* 0: unassigned */
	uint32_t reserved;
};
_Static_assert(sizeof(struct chunk_info) == 8, "chunk table layout is shared");

struct arena_hdr {
	uint64_t magic;
	uint32_t version;
	uint32_t nchunks;
	uint64_t arena_size;
	uint64_t creator; /* shmrig__procid */
	_Atomic uint32_t next_chunk;
	uint32_t hdr_size;
	uint8_t pad[24];
	/* Free list heads {tag:32, block id:32}, one cache line each: pushes by one
	 * process into one class do not slow another class. */
	struct {
		alignas(SHMRIG_CACHELINE) _Atomic uint64_t head;
	} free_list[NCLASS];
	struct chunk_info chunks[];
};
_Static_assert(offsetof(struct arena_hdr, free_list) == 64, "arena header layout is shared");
_Static_assert(sizeof(struct arena_hdr) == 64 + 64 * NCLASS, "arena header layout is shared");

struct large_hdr {
	uint64_t magic;
	uint32_t version;
	uint32_t reserved;
	uint64_t capacity; /* payload bytes at offset 0 */
	uint64_t creator;
	struct desc desc;
	uint8_t pad[LARGE_TRAILER - 64];
};
_Static_assert(sizeof(struct large_hdr) == LARGE_TRAILER, "large trailer layout is shared");

struct layout {
	uint32_t nblocks;
	uint32_t desc_offset;    /* from the chunk's start, unless external */
	uint32_t payload_offset; /* from the chunk's start */
	bool external;           /* descriptors in the header's table */
};

/* Header table slots a chunk, for classes with at most this many blocks a chunk. */
#define EXT_DESCS 32u
_Static_assert(sizeof(struct arena_hdr) + SHMRIG_CACHELINE +
			       MAX_CHUNKS * (sizeof(struct chunk_info) +
					     EXT_DESCS * sizeof(struct desc)) <
		       CHUNK / 2,
	       "the largest arena's header must leave chunk 0 usable");

/* This process's view of one mapped segment. */
struct seg_local {
	shmrig_segment *seg;
	const char *name; /* the segment's, and its length: refs are filled and matched by it */
	size_t name_len;
	char *base;
	size_t size;
	bool created;        /* by this pool: it unlinks it at close */
	shmrig__procid self; /* this process: cached, as a pool does not outlive a fork */
	bool large;
	struct seg_local *next;      /* all segments, newest first */
	struct seg_local *hash_next; /* bucket chain */
	/* arenas */
	struct arena_hdr *hdr;
	uint32_t nchunks;
	struct layout layout0[NCLASS]; /* chunk 0, after the header */
	struct layout layout[NCLASS];  /* other chunks */
	uint32_t ncache[NCLASS];
	uint32_t *cache; /* [NCLASS][CACHE_CAP], created arenas only */
	/* large */
	struct large_hdr *lhdr;
};

struct slab {
	bool open;
	size_t capacity;
	struct shmrig_ref ref; /* the whole block */
	char *data;
	size_t used;
};

#define HASH_BUCKETS 64

struct shmrig_pool {
	/* Who may be inside the pool's process-local state: see pool_enter(). */
	shmrig__lock lock;
	const char *opener; /* thread_mark of the thread that opened it */
	_Atomic bool shared; /* another thread came: everybody takes the lock */
	_Atomic int busy;    /* the opener is inside without the lock */
	unsigned fork_epoch;
	char prefix[SHMRIG_PREFIX_MAX + 1];
	size_t arena_size;
	size_t max_bytes;
	size_t created_bytes;
	int backing;
	int numa_node;
	uint32_t flags;
	shmrig_topo *topo;
	struct seg_local *segs;
	struct seg_local *buckets[HASH_BUCKETS];
	struct seg_local *last; /* the segment the last ref resolved to */
	struct slab slab;
	/* Identities of recent transfer targets: reading /proc/PID/stat costs
	 * ~9 us, more than the rest of a small message's round trip. */
	struct {
		pid_t pid;
		int pidfd; /* -1: empty */
		shmrig__procid id;
	} targets[4];
	unsigned next_target;
	/* info of the last segment created */
	enum shmrig_backing last_backing;
	size_t last_page_size;
	int last_node;
	char last_reason[256];
};

/*
 * The pool's process-local state (segment list, caches, slab) is used by one
 * thread at a time. While only the thread that opened the pool has used it,
 * that thread goes in without an atomic read-modify-write: it says it is busy
 * and checks that nobody else came (an asymmetric Dekker: compiler barriers
 * here, membarrier() on the rare side). The first other thread takes the
 * lock, sets `shared`, makes every thread of the process pass a full barrier
 * (membarrier), and waits until the opener is out; from then on everybody
 * takes the lock. Without membarrier the pool is shared from the start.
 */
/* A thread's identity, cheaper than pthread_self(): the address of its own copy. */
static _Thread_local char thread_mark;

static void pool_enter_locked(shmrig_pool *pool)
{
	shmrig__lock_take(&pool->lock);
	if (SHMRIG_UNLIKELY(!atomic_load_explicit(&pool->shared, memory_order_relaxed))) {
		atomic_store_explicit(&pool->shared, true, memory_order_relaxed);
		shmrig__membarrier();
		while (atomic_load_explicit(&pool->busy, memory_order_acquire))
			shmrig__cpu_relax();
	}
}

static inline void pool_enter(shmrig_pool *pool)
{
	if (SHMRIG_LIKELY(pool->opener == &thread_mark)) {
		atomic_store_explicit(&pool->busy, 1, memory_order_relaxed);
		atomic_signal_fence(memory_order_seq_cst);
		if (SHMRIG_LIKELY(!atomic_load_explicit(&pool->shared, memory_order_relaxed)))
			return;
		atomic_store_explicit(&pool->busy, 0, memory_order_release);
	}
	pool_enter_locked(pool);
}

static inline void pool_leave(shmrig_pool *pool)
{
	if (SHMRIG_LIKELY(pool->opener == &thread_mark) &&
	    atomic_load_explicit(&pool->busy, memory_order_relaxed)) {
		atomic_signal_fence(memory_order_seq_cst);
		atomic_store_explicit(&pool->busy, 0, memory_order_release);
		return;
	}
	shmrig__lock_give(&pool->lock);
}

static inline size_t class_size(unsigned c)
{
	return (size_t)SHMRIG_POOL_MIN_BLOCK << c;
}

static inline size_t round_up(size_t x, size_t align)
{
	return (x + align - 1) / align * align;
}

/* Smallest class holding `size`, or NCLASS for a large block. */
static unsigned class_of(size_t size)
{
	if (size <= SHMRIG_POOL_MIN_BLOCK)
		return 0;
	if (size > SHMRIG_POOL_MAX_CLASS_BLOCK)
		return NCLASS;
	return (unsigned)(64 - __builtin_clzll((unsigned long long)size - 1)) - 6;
}

size_t shmrig_pool_block_size(size_t size)
{
	unsigned c = class_of(size);

	if (c < NCLASS)
		return class_size(c);
	return round_up(size, SHMRIG_POOL_MIN_BLOCK);
}

/* Pack as many blocks of class c as fit after `header` bytes of a chunk. */
static struct layout compute_layout(unsigned c, size_t header)
{
	size_t size = class_size(c), align = size < 4096 ? size : 4096;
	size_t n = (CHUNK - header) / (size + sizeof(struct desc));
	struct layout l;

	if (CHUNK / size <= EXT_DESCS) {
		l.external = true;
		l.desc_offset = 0;
		l.payload_offset = (uint32_t)round_up(header, align);
		l.nblocks = (uint32_t)((CHUNK - l.payload_offset) / size);
		return l;
	}
	l.external = false;
	while (n && round_up(header + n * sizeof(struct desc), align) + n * size > CHUNK)
		n--;
	l.nblocks = (uint32_t)n;
	l.desc_offset = (uint32_t)header;
	l.payload_offset = (uint32_t)round_up(header + n * sizeof(struct desc), align);
	return l;
}

/* Where the header's descriptor table starts, and where the header ends. */
static size_t ext_desc_offset(uint32_t nchunks)
{
	return round_up(sizeof(struct arena_hdr) + nchunks * sizeof(struct chunk_info),
			SHMRIG_CACHELINE);
}

static size_t arena_hdr_size(uint32_t nchunks)
{
	return ext_desc_offset(nchunks) + (size_t)nchunks * EXT_DESCS * sizeof(struct desc);
}

static void init_layouts(struct seg_local *sl)
{
	for (unsigned c = 0; c < NCLASS; c++) {
		sl->layout0[c] = compute_layout(c, sl->hdr->hdr_size);
		sl->layout[c] = compute_layout(c, 0);
	}
}

static inline uint32_t block_id(uint32_t chunk, uint32_t slot)
{
	return (chunk << SLOT_BITS) | slot;
}

static inline const struct layout *chunk_layout(const struct seg_local *sl, uint32_t chunk,
						unsigned c)
{
	return chunk == 0 ? &sl->layout0[c] : &sl->layout[c];
}

/* The descriptor array of a chunk of class c. */
static inline struct desc *chunk_descs(const struct seg_local *sl, uint32_t chunk, unsigned c)
{
	const struct layout *l = chunk_layout(sl, chunk, c);

	if (l->external)
		return (struct desc *)(sl->base + ext_desc_offset(sl->nchunks)) +
		       (size_t)chunk * EXT_DESCS;
	return (struct desc *)(sl->base + (size_t)chunk * CHUNK + l->desc_offset);
}

static inline struct desc *id_desc(const struct seg_local *sl, uint32_t id, unsigned c)
{
	return chunk_descs(sl, id >> SLOT_BITS, c) + (id & ((1u << SLOT_BITS) - 1));
}

static inline uint64_t id_offset(const struct seg_local *sl, uint32_t id, unsigned c)
{
	uint32_t chunk = id >> SLOT_BITS, slot = id & ((1u << SLOT_BITS) - 1);

	return chunk * CHUNK + chunk_layout(sl, chunk, c)->payload_offset + slot * class_size(c);
}

/* Is `id` a block of a chunk of class c? (validates links read from shared memory) */
static bool id_valid(const struct seg_local *sl, uint32_t id, unsigned c)
{
	uint32_t chunk = id >> SLOT_BITS, slot = id & ((1u << SLOT_BITS) - 1);

	return chunk < sl->nchunks &&
	       atomic_load_explicit(&sl->hdr->chunks[chunk].class_plus1, memory_order_acquire) ==
		       c + 1 &&
	       slot < chunk_layout(sl, chunk, c)->nblocks;
}

/* ---- shared free lists (Treiber stacks with an ABA tag) ---- */

/* Push the chain first..last (already linked through next_free). */
static void list_push(struct seg_local *sl, unsigned c, uint32_t first, struct desc *last)
{
	_Atomic uint64_t *head = &sl->hdr->free_list[c].head;
	uint64_t old = atomic_load_explicit(head, memory_order_relaxed), new_head;

	do {
		atomic_store_explicit(&last->next_free, (uint32_t)old, memory_order_relaxed);
		new_head = ((uint64_t)((uint32_t)(old >> 32) + 1) << 32) | first;
		/* release: the pushed descriptors' FREE state is visible to the popper */
	} while (!atomic_compare_exchange_weak_explicit(head, &old, new_head, memory_order_release,
							memory_order_relaxed));
}

/* Pop one block id, NIL if the list is empty. A link that fails validation
 * means the list is corrupt: report it as empty rather than follow it. */
static uint32_t list_pop(struct seg_local *sl, unsigned c)
{
	_Atomic uint64_t *head = &sl->hdr->free_list[c].head;
	uint64_t old = atomic_load_explicit(head, memory_order_acquire), new_head;
	uint32_t id, next;

	do {
		id = (uint32_t)old;
		if (id == NIL || !id_valid(sl, id, c))
			return NIL;
		next = atomic_load_explicit(&id_desc(sl, id, c)->next_free, memory_order_relaxed);
		/* A stale `next` (another process popped `id` meanwhile) is harmless:
		 * the head's tag has changed too, so the CAS fails and we retry. */
		new_head = ((uint64_t)((uint32_t)(old >> 32) + 1) << 32) | next;
	} while (!atomic_compare_exchange_weak_explicit(head, &old, new_head, memory_order_acquire,
							memory_order_acquire));
	return id;
}

/* ---- segment table ---- */

/* Names end in 16 random hex digits: hashing their last 8 bytes is enough. */
static unsigned name_hash(const char *name)
{
	size_t len = strlen(name);
	uint64_t tail = 0;

	memcpy(&tail, name + (len > 8 ? len - 8 : 0), len > 8 ? 8 : len);
	return (unsigned)((tail * 0x9e3779b97f4a7c15ull) >> 58) % HASH_BUCKETS;
}

static struct seg_local *lookup(shmrig_pool *pool, const char *name)
{
	for (struct seg_local *sl = pool->buckets[name_hash(name)]; sl; sl = sl->hash_next)
		if (strcmp(shmrig_segment_name(sl->seg), name) == 0)
			return sl;
	return NULL;
}

static void insert(shmrig_pool *pool, struct seg_local *sl)
{
	unsigned h = name_hash(shmrig_segment_name(sl->seg));

	sl->name = shmrig_segment_name(sl->seg);
	sl->name_len = strlen(sl->name);
	sl->hash_next = pool->buckets[h];
	pool->buckets[h] = sl;
	sl->next = pool->segs;
	pool->segs = sl;
}

static void remove_seg(shmrig_pool *pool, struct seg_local *sl)
{
	struct seg_local **pp = &pool->buckets[name_hash(shmrig_segment_name(sl->seg))];

	if (pool->last == sl)
		pool->last = NULL;
	for (; *pp; pp = &(*pp)->hash_next)
		if (*pp == sl) {
			*pp = sl->hash_next;
			break;
		}
	for (pp = &pool->segs; *pp; pp = &(*pp)->next)
		if (*pp == sl) {
			*pp = sl->next;
			break;
		}
}

/* Unmap (and unlink, if ours) and forget a segment. */
static void drop_seg(shmrig_pool *pool, struct seg_local *sl)
{
	remove_seg(pool, sl);
	if (sl->created) {
		shmrig_segment_unlink(sl->seg);
		pool->created_bytes -= sl->size;
	}
	shmrig_segment_close(sl->seg);
	free(sl->cache);
	free(sl);
}

static int create_seg(shmrig_pool *pool, size_t size, char role, struct seg_local **out)
{
	struct shmrig_segment_opts so = {
		.prefix = pool->prefix,
		.size = size,
		.backing = pool->backing,
		.numa_node = pool->numa_node,
		.flags = (pool->flags & SHMRIG_POOL_BIND_NODE) ? SHMRIG_SEG_BIND_NODE : 0,
		.role = (uint32_t)role,
		.topo = pool->topo,
	};
	struct seg_local *sl = calloc(1, sizeof(*sl));
	int ret;

	if (!sl)
		return shmrig__fail(-ENOMEM, "pool: out of memory");
	ret = shmrig_segment_create(&so, &sl->seg);
	if (ret) {
		free(sl);
		return ret;
	}
	sl->base = shmrig_segment_base(sl->seg);
	sl->size = shmrig_segment_size(sl->seg);
	sl->self = shmrig__procid_self();
	sl->created = true;
	pool->created_bytes += sl->size;
	pool->last_backing = shmrig_segment_backing(sl->seg);
	pool->last_page_size = shmrig_segment_page_size(sl->seg);
	pool->last_node = shmrig_segment_node(sl->seg);
	snprintf(pool->last_reason, sizeof(pool->last_reason), "%s",
		 shmrig_segment_reason(sl->seg));
	*out = sl;
	return 0;
}

static int new_arena(shmrig_pool *pool, struct seg_local **out)
{
	uint32_t nchunks = (uint32_t)(pool->arena_size / CHUNK);
	struct seg_local *sl;
	int ret;

	if (pool->created_bytes + pool->arena_size > pool->max_bytes)
		return shmrig__fail(-ENOMEM,
				    "pool: a new %zu-byte arena would pass the limit of %zu bytes "
				    "(%zu in use)",
				    pool->arena_size, pool->max_bytes, pool->created_bytes);
	ret = create_seg(pool, pool->arena_size, ROLE_ARENA, &sl);
	if (ret)
		return ret;
	sl->cache = calloc(NCLASS * CACHE_CAP, sizeof(uint32_t));
	if (!sl->cache) {
		sl->next = sl->hash_next = NULL;
		insert(pool, sl);
		drop_seg(pool, sl);
		return shmrig__fail(-ENOMEM, "pool: out of memory");
	}
	sl->hdr = (struct arena_hdr *)sl->base;
	sl->nchunks = nchunks;
	sl->hdr->version = LAYOUT_VERSION;
	sl->hdr->nchunks = nchunks;
	sl->hdr->arena_size = sl->size;
	sl->hdr->creator = sl->self;
	sl->hdr->hdr_size = (uint32_t)arena_hdr_size(nchunks);
	for (unsigned c = 0; c < NCLASS; c++)
		atomic_store_explicit(&sl->hdr->free_list[c].head, NIL, memory_order_relaxed);
	init_layouts(sl);
	/* The magic last, with release: a peer that sees it sees a whole header. */
	atomic_store_explicit((_Atomic uint64_t *)&sl->hdr->magic, ARENA_MAGIC,
			      memory_order_release);
	insert(pool, sl);
	*out = sl;
	return 0;
}

/* Validate the header of an arena or large segment mapped from elsewhere. */
static int check_attached(struct seg_local *sl)
{
	const char *name = shmrig_segment_name(sl->seg);

	if (shmrig_segment_role(sl->seg) == ROLE_LARGE) {
		struct large_hdr *lh;

		if (sl->size < LARGE_TRAILER)
			goto corrupt;
		lh = (struct large_hdr *)(sl->base + sl->size - LARGE_TRAILER);
		if (atomic_load_explicit((_Atomic uint64_t *)&lh->magic, memory_order_acquire) !=
			    LARGE_MAGIC ||
		    lh->version != LAYOUT_VERSION || lh->capacity > sl->size - LARGE_TRAILER)
			goto corrupt;
		sl->large = true;
		sl->lhdr = lh;
		return 0;
	}
	if (shmrig_segment_role(sl->seg) != ROLE_ARENA || sl->size % CHUNK || sl->size < CHUNK)
		goto corrupt;
	sl->hdr = (struct arena_hdr *)sl->base;
	sl->nchunks = (uint32_t)(sl->size / CHUNK);
	if (atomic_load_explicit((_Atomic uint64_t *)&sl->hdr->magic, memory_order_acquire) !=
		    ARENA_MAGIC ||
	    sl->hdr->version != LAYOUT_VERSION || sl->hdr->nchunks != sl->nchunks ||
	    sl->hdr->hdr_size != arena_hdr_size(sl->nchunks))
		goto corrupt;
	init_layouts(sl);
	return 0;
corrupt:
	return shmrig__fail(-SHMRIG_ECORRUPT, "segment '%s' is not a valid shmrig pool segment",
			    name);
}

/*
 * Unmap large segments of other processes whose block has been freed: a
 * consumer that only looks at large blocks would otherwise keep every one of
 * them mapped (and their memory alive after the creator unlinks them).
 */
static void prune_foreign_large(shmrig_pool *pool)
{
	struct seg_local *sl, *next;

	for (sl = pool->segs; sl; sl = next) {
		next = sl->next;
		if (sl->large && !sl->created &&
		    word_state(atomic_load_explicit(&sl->lhdr->desc.word, memory_order_acquire)) ==
			    ST_FREE)
			drop_seg(pool, sl);
	}
}

static int attach_seg(shmrig_pool *pool, const char *name, struct seg_local **out)
{
	struct seg_local *sl = lookup(pool, name);
	int ret;

	if (sl) {
		*out = sl;
		return 0;
	}
	prune_foreign_large(pool);
	sl = calloc(1, sizeof(*sl));
	if (!sl)
		return shmrig__fail(-ENOMEM, "pool: out of memory");
	ret = shmrig_segment_attach(pool->prefix, name, &sl->seg);
	if (ret) {
		free(sl);
		return ret;
	}
	sl->base = shmrig_segment_base(sl->seg);
	sl->size = shmrig_segment_size(sl->seg);
	sl->self = shmrig__procid_self();
	ret = check_attached(sl);
	if (ret) {
		shmrig_segment_close(sl->seg);
		free(sl);
		return ret;
	}
	insert(pool, sl);
	*out = sl;
	return 0;
}

/* ---- locating the block a ref names ---- */

struct block {
	struct seg_local *sl;
	struct desc *desc;
	uint64_t start; /* payload offset of the whole block */
	uint64_t size;  /* block capacity */
	unsigned cls;   /* NCLASS for large */
	uint32_t id;
};

/* The fields of a ref whose name is known to be terminated. */
static int check_ref_fields(const struct shmrig_ref *ref)
{
	if (ref->reserved[0] || ref->reserved[1] || ref->reserved[2] || ref->temporary > 1)
		return shmrig__fail(-EINVAL, "ref '%s': reserved fields are not zero", ref->name);
	if (ref->content_size > ref->size)
		return shmrig__fail(-SHMRIG_EBADREF, "ref '%s': content_size %llu > size %llu",
				    ref->name, (unsigned long long)ref->content_size,
				    (unsigned long long)ref->size);
	if (ref->offset % SHMRIG_POOL_MIN_BLOCK)
		return shmrig__fail(-SHMRIG_EBADREF, "ref '%s': offset %llu is not 64-byte aligned",
				    ref->name, (unsigned long long)ref->offset);
	return 0;
}

/* Find the block holding [ref->offset, ref->offset + ref->size) in segment sl. */
static int locate(struct seg_local *sl, const struct shmrig_ref *ref, struct block *b)
{
	uint64_t off = ref->offset, size = ref->size;

	b->sl = sl;
	if (sl->large) {
		if (off > sl->lhdr->capacity || size > sl->lhdr->capacity - off)
			goto bounds;
		b->desc = &sl->lhdr->desc;
		b->start = 0;
		b->size = sl->lhdr->capacity;
		b->cls = NCLASS;
		b->id = 0;
		return 0;
	}
	uint64_t chunk = off / CHUNK, rel = off % CHUNK;
	uint32_t cp1;
	const struct layout *l;
	uint64_t slot, bsize;

	if (chunk >= sl->nchunks)
		goto bounds;
	cp1 = atomic_load_explicit(&sl->hdr->chunks[chunk].class_plus1, memory_order_acquire);
	if (cp1 == 0 || cp1 > NCLASS)
		goto bounds;
	b->cls = cp1 - 1;
	l = chunk_layout(sl, (uint32_t)chunk, b->cls);
	bsize = class_size(b->cls);
	if (rel < l->payload_offset)
		goto bounds;
	slot = (rel - l->payload_offset) >> (6 + b->cls); /* bsize is 64 << cls */
	if (slot >= l->nblocks)
		goto bounds;
	b->start = chunk * CHUNK + l->payload_offset + slot * bsize;
	b->size = bsize;
	if (size > b->start + bsize - off)
		goto bounds;
	b->id = block_id((uint32_t)chunk, (uint32_t)slot);
	b->desc = id_desc(sl, b->id, b->cls);
	return 0;
bounds:
	return shmrig__fail(-SHMRIG_EBADREF,
			    "ref '%s': offset %llu size %llu is not inside one block of the segment",
			    ref->name, (unsigned long long)off, (unsigned long long)size);
}

/* Validate a ref and find its block; the block must be live with the ref's generation. */
static int resolve(shmrig_pool *pool, const struct shmrig_ref *ref, struct block *b, uint64_t *word)
{
	struct seg_local *sl = pool->last;
	int ret;

	if (!ref)
		return shmrig__fail(-EINVAL, "ref is NULL");
	/* Most refs name the segment the one before named: equal to its
	 * (terminated) name, this one is terminated too; no lookup. */
	if (!sl || memcmp(ref->name, sl->name, sl->name_len + 1) != 0) {
		if (strnlen(ref->name, SHMRIG_NAME_MAX) == SHMRIG_NAME_MAX)
			return shmrig__fail(-EINVAL, "ref name is not terminated");
		ret = check_ref_fields(ref);
		if (!ret)
			ret = attach_seg(pool, ref->name, &sl);
		if (ret)
			return ret;
		pool->last = sl;
	} else {
		ret = check_ref_fields(ref);
		if (ret)
			return ret;
	}
	ret = locate(sl, ref, b);
	if (ret)
		return ret;
	*word = atomic_load_explicit(&b->desc->word, memory_order_acquire);
	if (word_gen(*word) != ref->generation)
		return shmrig__fail(-SHMRIG_ESTALE,
				    "ref '%s' offset %llu: generation %u, the block is at %u",
				    ref->name, (unsigned long long)ref->offset, ref->generation,
				    word_gen(*word));
	if (word_state(*word) != ST_LIVE)
		return shmrig__fail(-SHMRIG_ENOTLIVE,
				    "ref '%s' offset %llu: block is not allocated", ref->name,
				    (unsigned long long)ref->offset);
	return 0;
}

/* resolve(), and the block must be ours: what free, retain and transfer need. */
static int resolve_owned(shmrig_pool *pool, const struct shmrig_ref *ref, struct block *b,
			 uint64_t *word)
{
	int ret = resolve(pool, ref, b, word);
	uint64_t owner;

	if (ret)
		return ret;
	owner = atomic_load_explicit(&b->desc->owner, memory_order_acquire);
	if (owner != b->sl->self)
		return shmrig__fail(-EPERM, "ref '%s' offset %llu: block is owned by pid %d",
				    ref->name, (unsigned long long)ref->offset,
				    (int)shmrig__procid_pid(owner));
	return 0;
}

/* ---- pool ---- */

static int check_pool(shmrig_pool *pool)
{
	if (!pool)
		return shmrig__fail(-EINVAL, "pool is NULL");
	if (SHMRIG_UNLIKELY(pool->fork_epoch != shmrig__fork_epoch()))
		return shmrig__fail(-SHMRIG_EFORK,
				    "pool handle was inherited through fork: open a new pool");
	return 0;
}

int shmrig_pool_open(const struct shmrig_pool_opts *opts, shmrig_pool **out)
{
	static const struct shmrig_pool_opts defaults;
	shmrig_pool *pool;
	const char *prefix;
	int ret;

	if (!out)
		return shmrig__fail(-EINVAL, "pool_open: NULL out");
	if (!opts)
		opts = &defaults;
	if (opts->flags & ~SHMRIG_POOL_FLAGS_ALL)
		return shmrig__fail(-EINVAL, "pool_open: unknown flags 0x%x",
				    opts->flags & ~SHMRIG_POOL_FLAGS_ALL);
	for (size_t i = 0; i < sizeof(opts->reserved) / sizeof(opts->reserved[0]); i++)
		if (opts->reserved[i])
			return shmrig__fail(-EINVAL, "pool_open: reserved[%zu] is not zero", i);
	if (opts->backing < SHMRIG_BACKING_AUTO || opts->backing > SHMRIG_BACKING_PLAIN)
		return shmrig__fail(-EINVAL, "pool_open: unknown backing %d", opts->backing);
	prefix = shmrig__option_string(opts->prefix, "SHMRIG_PREFIX", SHMRIG_DEFAULT_PREFIX);
	ret = shmrig__check_prefix(prefix);
	if (ret)
		return ret;
	pool = calloc(1, sizeof(*pool));
	if (!pool)
		return shmrig__fail(-ENOMEM, "pool_open: out of memory");
	pool->fork_epoch = shmrig__fork_epoch();
	pool->opener = &thread_mark;
	pool->shared = shmrig__membarrier_register() != 0;
	snprintf(pool->prefix, sizeof(pool->prefix), "%s", prefix);
	pool->arena_size = round_up(shmrig__option_size(opts->arena_size, "SHMRIG_ARENA_SIZE",
							DEFAULT_ARENA_SIZE),
				    CHUNK);
	if (pool->arena_size / CHUNK > MAX_CHUNKS)
		pool->arena_size = MAX_CHUNKS * CHUNK;
	pool->max_bytes =
		shmrig__option_size(opts->max_bytes, "SHMRIG_POOL_MAX", DEFAULT_MAX_BYTES);
	pool->backing = opts->backing;
	pool->numa_node = opts->numa_node;
	pool->flags = opts->flags;
	pool->topo = opts->topo;
	pool->last_backing = (enum shmrig_backing)opts->backing;
	pool->last_node = -1;
	for (unsigned i = 0; i < sizeof(pool->targets) / sizeof(pool->targets[0]); i++)
		pool->targets[i].pidfd = -1;
	if ((opts->flags & SHMRIG_POOL_BIND_NODE) &&
	    !shmrig_topo_node_exists(opts->topo ? opts->topo : shmrig_topo_system(),
				     opts->numa_node)) {
		free(pool);
		return shmrig__fail(-EINVAL, "pool_open: no NUMA node %d", opts->numa_node);
	}
	*out = pool;
	return 0;
}

/* Make block `id` of arena sl live for the caller. */
static void give_block(struct seg_local *sl, unsigned c, uint32_t id, size_t content_size,
		       uint32_t tag, uint32_t flags, struct shmrig_ref *ref, void **data)
{
	struct desc *d = id_desc(sl, id, c);
	uint32_t gen = word_gen(atomic_load_explicit(&d->word, memory_order_relaxed));

	d->content_size = content_size;
	d->tag = tag;
	atomic_store_explicit(&d->owner, sl->self, memory_order_relaxed);
	/* We own it (cached) or just popped it (free, unreachable by others): a
	 * plain store publishes it, no atomic read-modify-write needed. */
	atomic_store_explicit(&d->word, word_make(gen, 1, ST_LIVE), memory_order_release);
	memset(ref, 0, sizeof(*ref));
	memcpy(ref->name, sl->name, sl->name_len + 1);
	ref->offset = id_offset(sl, id, c);
	ref->size = class_size(c);
	ref->content_size = content_size;
	ref->generation = gen;
	ref->temporary = (flags & SHMRIG_ALLOC_TEMPORARY) ? 1 : 0;
	*data = sl->base + ref->offset;
}

/* Move a free block into this process's cache: owned by us, state CACHED,
 * so that our death returns it through reap(). */
static void cache_put(struct seg_local *sl, unsigned c, uint32_t id, uint32_t gen)
{
	struct desc *d = id_desc(sl, id, c);

	atomic_store_explicit(&d->owner, sl->self, memory_order_relaxed);
	atomic_store_explicit(&d->word, word_make(gen, 0, ST_CACHED), memory_order_release);
	sl->cache[c * CACHE_CAP + sl->ncache[c]++] = id;
}

/* Hand the oldest CACHE_BATCH cached blocks back to the shared list (one CAS). */
static void cache_flush(struct seg_local *sl, unsigned c, uint32_t count)
{
	uint32_t *cache = &sl->cache[c * CACHE_CAP];
	struct desc *prev = NULL;
	uint32_t first = NIL;

	if (count > sl->ncache[c])
		count = sl->ncache[c];
	if (!count)
		return;
	for (uint32_t i = 0; i < count; i++) {
		struct desc *d = id_desc(sl, cache[i], c);
		uint64_t w = atomic_load_explicit(&d->word, memory_order_relaxed);

		atomic_store_explicit(&d->word, word_make(word_gen(w), 0, ST_FREE),
				      memory_order_relaxed);
		if (prev)
			atomic_store_explicit(&prev->next_free, cache[i], memory_order_relaxed);
		else
			first = cache[i];
		prev = d;
	}
	list_push(sl, c, first, prev);
	memmove(cache, cache + count, (sl->ncache[c] - count) * sizeof(*cache));
	sl->ncache[c] -= count;
}

/* Assign the next unused chunk of arena sl to class c; its blocks go to our
 * cache (up to a batch) and the shared list. false if the arena is full. */
static bool claim_chunk(struct seg_local *sl, unsigned c)
{
	uint32_t chunk = atomic_load_explicit(&sl->hdr->next_chunk, memory_order_relaxed);
	const struct layout *l;
	struct desc *descs;
	uint32_t n, keep;

	/* Only the creator claims chunks (and under its pool lock). */
	if (chunk >= sl->nchunks)
		return false;
	l = chunk_layout(sl, chunk, c);
	if (l->nblocks == 0) {
		/* chunk 0 may be too small for the largest classes; skip it for them */
		if (chunk != 0 || sl->nchunks == 1)
			return false;
		atomic_store_explicit(&sl->hdr->next_chunk, 1, memory_order_relaxed);
		return false;
	}
	atomic_store_explicit(&sl->hdr->next_chunk, chunk + 1, memory_order_relaxed);
	descs = chunk_descs(sl, chunk, c);
	n = l->nblocks;
	/* Generations start at 1, so that a zeroed ref never matches a block. */
	for (uint32_t i = 0; i < n; i++) {
		atomic_store_explicit(&descs[i].word, word_make(1, 0, ST_FREE),
				      memory_order_relaxed);
		atomic_store_explicit(&descs[i].next_free, i + 1 < n ? block_id(chunk, i + 1) : NIL,
				      memory_order_relaxed);
	}
	atomic_store_explicit(&sl->hdr->chunks[chunk].class_plus1, c + 1, memory_order_release);
	keep = n < CACHE_BATCH ? n : CACHE_BATCH;
	for (uint32_t i = 0; i < keep; i++)
		cache_put(sl, c, block_id(chunk, i), 1);
	if (keep < n)
		list_push(sl, c, block_id(chunk, keep), &descs[n - 1]);
	return true;
}

/* A block of class c from arena sl: cache, shared list, new chunk. */
/*
 * Debug level 1: a block in our cache is ours alone; if its descriptor says
 * otherwise, another process wrote where it must not. Leave the block alone
 * (a leak is better than handing out memory someone else uses) and say so.
 */
static bool cached_block_intact(struct seg_local *sl, unsigned c, uint32_t id)
{
	static int warned;
	struct desc *d = id_desc(sl, id, c);
	uint64_t w = atomic_load_explicit(&d->word, memory_order_acquire);

	if (SHMRIG_LIKELY(word_state(w) == ST_CACHED &&
			  atomic_load_explicit(&d->owner, memory_order_relaxed) == sl->self))
		return true;
	shmrig__warn_once(&warned,
			  "segment %s: cached block %u.%u was changed by another process "
			  "(state %u); dropped",
			  shmrig_segment_name(sl->seg), id >> SLOT_BITS,
			  id & ((1u << SLOT_BITS) - 1), word_state(w));
	return false;
}

static uint32_t arena_take(struct seg_local *sl, unsigned c)
{
	uint32_t id;

	for (;;) {
		if (!sl->ncache[c]) {
			/* Refill: whatever the shared list has, up to a batch. */
			while (sl->ncache[c] < CACHE_BATCH && (id = list_pop(sl, c)) != NIL) {
				struct desc *d = id_desc(sl, id, c);

				cache_put(sl, c, id,
					  word_gen(atomic_load_explicit(&d->word,
									memory_order_relaxed)));
			}
			if (!sl->ncache[c] && !claim_chunk(sl, c))
				return NIL;
		}
		id = sl->cache[c * CACHE_CAP + --sl->ncache[c]];
		if (SHMRIG_DEBUG_CHECKS < 1 || cached_block_intact(sl, c, id))
			return id;
	}
}

static void large_fill_ref(struct seg_local *sl, size_t content_size, uint32_t flags,
			   struct shmrig_ref *ref, void **data)
{
	memset(ref, 0, sizeof(*ref));
	memcpy(ref->name, sl->name, sl->name_len + 1);
	ref->offset = 0;
	ref->size = sl->lhdr->capacity;
	ref->content_size = content_size;
	ref->generation =
		word_gen(atomic_load_explicit(&sl->lhdr->desc.word, memory_order_relaxed));
	ref->temporary = (flags & SHMRIG_ALLOC_TEMPORARY) ? 1 : 0;
	*data = sl->base;
}

static void large_make_live(struct seg_local *sl, size_t content_size, uint32_t tag)
{
	struct desc *d = &sl->lhdr->desc;
	uint32_t gen = word_gen(atomic_load_explicit(&d->word, memory_order_relaxed));

	d->content_size = content_size;
	d->tag = tag;
	atomic_store_explicit(&d->owner, sl->self, memory_order_relaxed);
	atomic_store_explicit(&d->word, word_make(gen, 1, ST_LIVE), memory_order_release);
}

/*
 * Large segments we created whose block is free (we freed it, a peer freed it,
 * or reap did): reuse one that fits, and unlink the rest beyond LARGE_KEEP or
 * when `need_room` bytes must be freed for a new segment.
 */
static struct seg_local *large_recycle(shmrig_pool *pool, size_t want, size_t need_room)
{
	struct seg_local *found = NULL, *sl, *next;
	unsigned kept = 0;

	for (sl = pool->segs; sl; sl = next) {
		next = sl->next;
		if (!sl->large || !sl->created ||
		    word_state(atomic_load_explicit(&sl->lhdr->desc.word, memory_order_acquire)) !=
			    ST_FREE)
			continue;
		if (!found && want && sl->lhdr->capacity >= want && sl->lhdr->capacity / 2 < want) {
			found = sl;
			continue;
		}
		if (kept < LARGE_KEEP &&
		    (!need_room || pool->created_bytes + need_room <= pool->max_bytes)) {
			kept++;
			continue;
		}
		drop_seg(pool, sl);
	}
	return found;
}

static int large_alloc(shmrig_pool *pool, size_t size, uint32_t flags, uint32_t tag,
		       struct shmrig_ref *ref, void **data)
{
	size_t capacity = round_up(size, SHMRIG_POOL_MIN_BLOCK), seg_size;
	struct seg_local *sl = large_recycle(pool, capacity, 0);
	int ret;

	if (sl) {
		large_make_live(sl, size, tag);
		large_fill_ref(sl, size, flags, ref, data);
		return 0;
	}
	seg_size = round_up(capacity + LARGE_TRAILER, shmrig__page_size());
	large_recycle(pool, 0, seg_size);
	if (pool->created_bytes + seg_size > pool->max_bytes)
		return shmrig__fail(-ENOMEM,
				    "pool: a %zu-byte block would pass the limit of %zu bytes "
				    "(%zu in use)",
				    size, pool->max_bytes, pool->created_bytes);
	ret = create_seg(pool, seg_size, ROLE_LARGE, &sl);
	if (ret)
		return ret;
	if (pool->created_bytes > pool->max_bytes) {
		/* hugetlb rounded the segment up past the limit */
		insert(pool, sl);
		drop_seg(pool, sl);
		return shmrig__fail(-ENOMEM,
				    "pool: a %zu-byte block would pass the limit of %zu bytes",
				    size, pool->max_bytes);
	}
	sl->large = true;
	/* The trailer sits in the segment's last bytes, whatever the page size. */
	sl->lhdr = (struct large_hdr *)(sl->base + sl->size - LARGE_TRAILER);
	sl->lhdr->version = LAYOUT_VERSION;
	sl->lhdr->capacity =
		(sl->size - LARGE_TRAILER) / SHMRIG_POOL_MIN_BLOCK * SHMRIG_POOL_MIN_BLOCK;
	sl->lhdr->creator = sl->self;
	atomic_store_explicit(&sl->lhdr->desc.word, word_make(1, 0, ST_FREE), memory_order_relaxed);
	atomic_store_explicit((_Atomic uint64_t *)&sl->lhdr->magic, LARGE_MAGIC,
			      memory_order_release);
	insert(pool, sl);
	large_make_live(sl, size, tag);
	large_fill_ref(sl, size, flags, ref, data);
	return 0;
}

static int class_alloc(shmrig_pool *pool, size_t size, uint32_t flags, uint32_t tag,
		       struct shmrig_ref *ref, void **data)
{
	unsigned c = class_of(size);
	struct seg_local *sl = NULL;
	uint32_t id;
	int ret;

	if (c == NCLASS)
		return large_alloc(pool, size, flags, tag, ref, data);
	for (sl = pool->segs; sl; sl = sl->next) {
		if (!sl->created || sl->large)
			continue;
		id = arena_take(sl, c);
		if (id != NIL)
			goto found;
	}
	ret = new_arena(pool, &sl);
	if (ret)
		return ret;
	id = arena_take(sl, c);
	if (id == NIL)
		return shmrig__fail(-ENOMEM, "pool: a new arena has no room for a %zu-byte block",
				    size);
found:
	give_block(sl, c, id, size, tag, flags, ref, data);
	return 0;
}

/* Return a block whose last reference is gone. Caller checked state and gen. */
static void release_block(shmrig_pool *pool, struct block *b, uint64_t word)
{
	uint32_t next_gen = word_gen(word) + 1;
	struct seg_local *sl = b->sl;

	if (next_gen == 0)
		next_gen = 1;
	if (sl->large) {
		atomic_store_explicit(&b->desc->word, word_make(next_gen, 0, ST_FREE),
				      memory_order_release);
		if (sl->created)
			large_recycle(pool, 0, 0);
		else
			drop_seg(pool, sl); /* the creator reuses or unlinks it */
		return;
	}
	if (sl->created) {
		if (sl->ncache[b->cls] == CACHE_CAP)
			cache_flush(sl, b->cls, CACHE_BATCH);
		cache_put(sl, b->cls, b->id, next_gen);
		return;
	}
	/* Someone else's arena: straight back to its shared list. */
	atomic_store_explicit(&b->desc->word, word_make(next_gen, 0, ST_FREE),
			      memory_order_relaxed);
	list_push(sl, b->cls, b->id, b->desc);
}

/* Drop one reference of a resolved, owned block. */
static int unref(shmrig_pool *pool, struct block *b, uint64_t word)
{
	uint32_t refs = word_refs(word);

	if (refs > 1) {
		atomic_store_explicit(&b->desc->word, word_make(word_gen(word), refs - 1, ST_LIVE),
				      memory_order_release);
		return 0;
	}
	release_block(pool, b, word);
	return 0;
}

static int slab_alloc(shmrig_pool *pool, size_t size, uint32_t flags, struct shmrig_ref *ref,
		      void **data);

int shmrig_pool_alloc(shmrig_pool *pool, size_t size, uint32_t flags, uint32_t tag,
		      struct shmrig_ref *ref, void **data)
{
	int ret = check_pool(pool);

	if (ret)
		return ret;
	if (flags & ~SHMRIG_ALLOC_TEMPORARY)
		return shmrig__fail(-EINVAL, "pool_alloc: unknown flags 0x%x",
				    flags & ~SHMRIG_ALLOC_TEMPORARY);
	if (!ref || !data)
		return shmrig__fail(-EINVAL, "pool_alloc: NULL ref or data");
	if (size > pool->max_bytes)
		return shmrig__fail(-ENOMEM,
				    "pool_alloc: %zu bytes is more than the pool's limit %zu", size,
				    pool->max_bytes);
#if SHMRIG_PROOF_SLOWDOWN > 0
	/* -Dproof_slowdown: the deliberate regression scripts/compare must flag. */
	for (volatile unsigned long spin = 0; spin < SHMRIG_PROOF_SLOWDOWN; spin++)
		;
#endif
	pool_enter(pool);
	if (pool->slab.open && size <= pool->slab.capacity)
		ret = slab_alloc(pool, size, flags, ref, data);
	else
		ret = class_alloc(pool, size, flags, tag, ref, data);
	pool_leave(pool);
	return ret;
}

int shmrig_pool_free(shmrig_pool *pool, const struct shmrig_ref *ref)
{
	struct block b;
	uint64_t word;
	int ret = check_pool(pool);

	if (ret)
		return ret;
	pool_enter(pool);
	ret = resolve_owned(pool, ref, &b, &word);
	if (!ret)
		ret = unref(pool, &b, word);
	pool_leave(pool);
	return ret;
}

/* One more reference on a resolved live block. */
static int take_ref(const struct block *b, uint64_t word, const char *name)
{
	if (word_refs(word) >= REF_MAX)
		return shmrig__fail(-EOVERFLOW, "ref '%s': too many references", name);
	atomic_store_explicit(&b->desc->word,
			      word_make(word_gen(word), word_refs(word) + 1, ST_LIVE),
			      memory_order_release);
	return 0;
}

int shmrig_pool_retain(shmrig_pool *pool, const struct shmrig_ref *ref)
{
	struct block b;
	uint64_t word;
	int ret = check_pool(pool);

	if (ret)
		return ret;
	pool_enter(pool);
	ret = resolve_owned(pool, ref, &b, &word);
	if (!ret)
		ret = take_ref(&b, word, ref->name);
	pool_leave(pool);
	return ret;
}

static int attach(shmrig_pool *pool, const struct shmrig_ref *ref, void **data, bool owned)
{
	struct block b;
	uint64_t word;
	int ret = check_pool(pool);

	if (ret)
		return ret;
	if (!data)
		return shmrig__fail(-EINVAL, "pool_attach: NULL data");
	pool_enter(pool);
	ret = owned ? resolve_owned(pool, ref, &b, &word) : resolve(pool, ref, &b, &word);
	if (!ret)
		*data = b.sl->base + ref->offset;
	pool_leave(pool);
	return ret;
}

int shmrig_pool_attach(shmrig_pool *pool, const struct shmrig_ref *ref, void **data)
{
	return attach(pool, ref, data, false);
}

int shmrig__pool_attach_owned(shmrig_pool *pool, const struct shmrig_ref *ref, void **data)
{
	return attach(pool, ref, data, true);
}

/*
 * The identity (pid + start time) of a transfer target. Reading it from
 * /proc/PID/stat costs ~9 us, more than the rest of a small message's round
 * trip, so recent targets are cached with a pidfd: a pidfd names one process,
 * never a later one that reuses its pid, and polling it says at once whether
 * that process has exited. Without pidfds (old kernels, valgrind) every
 * transfer reads /proc.
 */
static int target_id(shmrig_pool *pool, pid_t pid, shmrig__procid *id)
{
	const unsigned n = sizeof(pool->targets) / sizeof(pool->targets[0]);
	unsigned slot;
	int pidfd;

	if (pid <= 0)
		return shmrig__fail(-ESRCH, "pool_transfer: no process %d", (int)pid);
	for (slot = 0; slot < n; slot++) {
		struct pollfd pfd = { .fd = pool->targets[slot].pidfd, .events = POLLIN };

		if (pool->targets[slot].pid != pid)
			continue;
		if (poll(&pfd, 1, 0) == 0) {
			*id = pool->targets[slot].id;
			return 0;
		}
		/* it exited: forget it */
		close(pool->targets[slot].pidfd);
		pool->targets[slot].pid = 0;
		pool->targets[slot].pidfd = -1;
		break;
	}
	pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
	if (shmrig__procid_of(pid, id)) {
		if (pidfd >= 0)
			close(pidfd);
		return shmrig__fail(-ESRCH, "pool_transfer: no live process %d", (int)pid);
	}
	if (pidfd < 0)
		return 0;
	slot = pool->next_target++ % n;
	if (pool->targets[slot].pidfd >= 0)
		close(pool->targets[slot].pidfd);
	pool->targets[slot].pid = pid;
	pool->targets[slot].pidfd = pidfd;
	pool->targets[slot].id = *id;
	return 0;
}

static void forget_targets(shmrig_pool *pool)
{
	for (unsigned i = 0; i < sizeof(pool->targets) / sizeof(pool->targets[0]); i++)
		if (pool->targets[i].pidfd >= 0)
			close(pool->targets[i].pidfd);
}

int shmrig__pool_transfer_refs(shmrig_pool *pool, const struct shmrig_ref *refs, uint32_t n,
			       pid_t pid)
{
	shmrig__procid target;
	int ret = check_pool(pool);

	if (ret || n == 0)
		return ret;
	pool_enter(pool);
	/* once per frame, not per buffer: it costs a syscall */
	ret = target_id(pool, pid, &target);
	for (uint32_t i = 0; !ret && i < n; i++) {
		const struct shmrig_ref *ref = &refs[i];
		struct block b;
		uint64_t word, owner;

		ret = resolve(pool, ref, &b, &word);
		if (ret)
			break;
		owner = atomic_load_explicit(&b.desc->owner, memory_order_acquire);
		/* A part of a block (a pack's buffer, a slab's sub-allocation) whose
		 * block went to pid with another part is handed over already: a
		 * frame of several parts of one block transfers part by part. */
		if (owner == b.sl->self)
			atomic_store_explicit(&b.desc->owner, target, memory_order_release);
		else if (owner != target)
			ret = shmrig__fail(-EPERM, "ref '%s' offset %llu: block is owned by pid %d",
					   ref->name, (unsigned long long)ref->offset,
					   (int)shmrig__procid_pid(owner));
	}
	pool_leave(pool);
	return ret;
}

int shmrig_pool_transfer(shmrig_pool *pool, const struct shmrig_ref *ref, pid_t pid)
{
	return shmrig__pool_transfer_refs(pool, ref, 1, pid);
}

/* ---- slab ---- */

static int slab_start(shmrig_pool *pool)
{
	void *data;
	int ret = class_alloc(pool, pool->slab.capacity, 0, 0, &pool->slab.ref, &data);

	if (ret)
		return ret;
	pool->slab.data = data;
	pool->slab.used = 0;
	pool->slab.open = true;
	return 0;
}

/* Drop the slab's own reference; the block lives on while sub-blocks do. */
static int slab_stop(shmrig_pool *pool)
{
	struct block b;
	uint64_t word;
	int ret;

	pool->slab.open = false;
	ret = resolve(pool, &pool->slab.ref, &b, &word);
	if (!ret)
		ret = unref(pool, &b, word);
	return ret;
}

/* A ref to [offset, offset + size) of an owned block, holding one more reference on it. */
static int subref_locked(shmrig_pool *pool, const struct shmrig_ref *block, uint64_t offset,
			 uint64_t size, uint64_t content_size, uint32_t flags,
			 struct shmrig_ref *out)
{
	struct block b;
	uint64_t word;
	int ret = resolve_owned(pool, block, &b, &word);

	if (ret)
		return ret;
	if (offset % SHMRIG_POOL_MIN_BLOCK || offset > block->size || size > block->size - offset ||
	    content_size > size)
		return shmrig__fail(-EINVAL,
				    "subref: [%llu, +%llu) content %llu is not a 64-aligned part "
				    "of the %llu-byte block",
				    (unsigned long long)offset, (unsigned long long)size,
				    (unsigned long long)content_size,
				    (unsigned long long)block->size);
	ret = take_ref(&b, word, block->name);
	if (ret)
		return ret;
	*out = *block;
	out->offset += offset;
	out->size = size;
	out->content_size = content_size;
	out->temporary = (flags & SHMRIG_ALLOC_TEMPORARY) ? 1 : 0;
	return 0;
}

int shmrig_pool_subref(shmrig_pool *pool, const struct shmrig_ref *block, uint64_t offset,
		       uint64_t size, uint64_t content_size, uint32_t flags, struct shmrig_ref *out)
{
	int ret = check_pool(pool);

	if (ret)
		return ret;
	if (flags & ~SHMRIG_ALLOC_TEMPORARY)
		return shmrig__fail(-EINVAL, "subref: unknown flags 0x%x",
				    flags & ~SHMRIG_ALLOC_TEMPORARY);
	if (!out)
		return shmrig__fail(-EINVAL, "subref: NULL out");
	pool_enter(pool);
	ret = subref_locked(pool, block, offset, size, content_size, flags, out);
	pool_leave(pool);
	return ret;
}

static int slab_alloc(shmrig_pool *pool, size_t size, uint32_t flags, struct shmrig_ref *ref,
		      void **data)
{
	size_t need = round_up(size ? size : 1, SHMRIG_POOL_MIN_BLOCK);
	int ret;

	if (pool->slab.used + need > pool->slab.ref.size) {
		ret = slab_stop(pool);
		if (!ret)
			ret = slab_start(pool);
		if (ret)
			return ret;
	}
	ret = subref_locked(pool, &pool->slab.ref, pool->slab.used, need, size, flags, ref);
	if (ret)
		return ret;
	*data = pool->slab.data + pool->slab.used;
	pool->slab.used += need;
	return 0;
}

int shmrig_pool_slab_open(shmrig_pool *pool, size_t capacity)
{
	int ret = check_pool(pool);

	if (ret)
		return ret;
	if (capacity == 0 || capacity > pool->max_bytes)
		return shmrig__fail(-EINVAL, "slab_open: capacity %zu is out of range", capacity);
	pool_enter(pool);
	if (pool->slab.open) {
		ret = shmrig__fail(-EBUSY, "slab_open: a slab is already open");
	} else {
		pool->slab.capacity = capacity;
		ret = slab_start(pool);
	}
	pool_leave(pool);
	return ret;
}

int shmrig_pool_slab_seal(shmrig_pool *pool)
{
	int ret = check_pool(pool);

	if (ret)
		return ret;
	pool_enter(pool);
	if (!pool->slab.open)
		ret = shmrig__fail(-ENOENT, "slab_seal: no slab is open");
	else
		ret = slab_stop(pool);
	pool_leave(pool);
	return ret;
}

/* ---- walks: accounting, reap, leaks ---- */

/*
 * Call fn for every block of a segment in state LIVE or CACHED (with
 * `cached`), giving its descriptor, class, id and payload offset.
 */
typedef void (*block_fn)(void *arg, struct seg_local *sl, struct desc *d, unsigned c, uint32_t id,
			 uint64_t offset);

static void walk_blocks(struct seg_local *sl, block_fn fn, void *arg)
{
	if (sl->large) {
		if (word_state(atomic_load_explicit(&sl->lhdr->desc.word, memory_order_acquire)) !=
		    ST_FREE)
			fn(arg, sl, &sl->lhdr->desc, NCLASS, 0, 0);
		return;
	}
	uint32_t used = atomic_load_explicit(&sl->hdr->next_chunk, memory_order_acquire);

	if (used > sl->nchunks)
		used = sl->nchunks;
	for (uint32_t chunk = 0; chunk < used; chunk++) {
		uint32_t cp1 = atomic_load_explicit(&sl->hdr->chunks[chunk].class_plus1,
						    memory_order_acquire);
		const struct layout *l;

		if (cp1 == 0 || cp1 > NCLASS)
			continue;
		l = chunk_layout(sl, chunk, cp1 - 1);
		for (uint32_t slot = 0; slot < l->nblocks; slot++) {
			uint32_t id = block_id(chunk, slot);
			struct desc *d = id_desc(sl, id, cp1 - 1);

			if (word_state(atomic_load_explicit(&d->word, memory_order_acquire)) !=
			    ST_FREE)
				fn(arg, sl, d, cp1 - 1, id, id_offset(sl, id, cp1 - 1));
		}
	}
}

static void fill_info(struct shmrig_block_info *info, struct seg_local *sl, struct desc *d,
		      unsigned c, uint64_t offset)
{
	uint64_t w = atomic_load_explicit(&d->word, memory_order_acquire);

	memset(info, 0, sizeof(*info));
	strcpy(info->ref.name, shmrig_segment_name(sl->seg));
	info->ref.offset = offset;
	info->ref.size = c == NCLASS ? sl->lhdr->capacity : class_size(c);
	info->ref.content_size = d->content_size;
	info->ref.generation = word_gen(w);
	info->owner = shmrig__procid_pid(atomic_load_explicit(&d->owner, memory_order_acquire));
	info->tag = d->tag;
	info->refcount = word_refs(w);
}

struct stats_ctx {
	struct shmrig_pool_stats *stats;
	void (*fn)(void *arg, const struct shmrig_block_info *info);
	void *arg;
	int count;
};

static void stats_one(void *arg, struct seg_local *sl, struct desc *d, unsigned c, uint32_t id,
		      uint64_t offset)
{
	struct stats_ctx *ctx = arg;
	uint64_t w = atomic_load_explicit(&d->word, memory_order_acquire);

	(void)id;
	if (word_state(w) != ST_LIVE)
		return;
	ctx->count++;
	if (ctx->stats) {
		ctx->stats->live_blocks++;
		ctx->stats->live_bytes += d->content_size;
		if (c == NCLASS) {
			ctx->stats->large_live_blocks++;
			ctx->stats->large_live_bytes += d->content_size;
		} else {
			ctx->stats->classes[c].live_blocks++;
			ctx->stats->classes[c].live_bytes += d->content_size;
		}
	}
	if (ctx->fn) {
		struct shmrig_block_info info;

		fill_info(&info, sl, d, c, offset);
		ctx->fn(ctx->arg, &info);
	}
}

int shmrig_pool_stats(shmrig_pool *pool, struct shmrig_pool_stats *stats)
{
	struct stats_ctx ctx = { .stats = stats };
	int ret = check_pool(pool);

	if (ret)
		return ret;
	if (!stats)
		return shmrig__fail(-EINVAL, "pool_stats: NULL stats");
	memset(stats, 0, sizeof(*stats));
	for (unsigned c = 0; c < NCLASS; c++)
		stats->classes[c].block_size = class_size(c);
	pool_enter(pool);
	for (struct seg_local *sl = pool->segs; sl; sl = sl->next) {
		stats->segments++;
		walk_blocks(sl, stats_one, &ctx);
		if (!sl->large && sl->cache)
			for (unsigned c = 0; c < NCLASS; c++)
				stats->cached_blocks += sl->ncache[c];
	}
	stats->created_bytes = pool->created_bytes;
	pool_leave(pool);
	return 0;
}

int shmrig_pool_for_each_live(shmrig_pool *pool,
			      void (*fn)(void *arg, const struct shmrig_block_info *info),
			      void *arg)
{
	struct stats_ctx ctx = { .fn = fn, .arg = arg };
	int ret = check_pool(pool);

	if (ret)
		return ret;
	pool_enter(pool);
	for (struct seg_local *sl = pool->segs; sl; sl = sl->next)
		walk_blocks(sl, stats_one, &ctx);
	pool_leave(pool);
	return ctx.count;
}

struct owner_ctx {
	struct shmrig_owner_stats *owners;
	size_t max;
	size_t count;
	int err;
};

static void owner_one(void *arg, const struct shmrig_block_info *info)
{
	struct owner_ctx *ctx = arg;
	size_t i;

	for (i = 0; i < ctx->count; i++)
		if (ctx->owners[i].pid == info->owner)
			break;
	if (i == ctx->count) {
		struct shmrig_owner_stats *grown;

		grown = realloc(ctx->owners, (ctx->count + 1) * sizeof(*grown));
		if (!grown) {
			ctx->err = -ENOMEM;
			return;
		}
		ctx->owners = grown;
		memset(&ctx->owners[ctx->count++], 0, sizeof(*grown));
		ctx->owners[i].pid = info->owner;
	}
	ctx->owners[i].live_blocks++;
	ctx->owners[i].live_bytes += info->ref.content_size;
}

static int by_pid(const void *a, const void *b)
{
	pid_t x = ((const struct shmrig_owner_stats *)a)->pid;
	pid_t y = ((const struct shmrig_owner_stats *)b)->pid;

	return (x > y) - (x < y);
}

int shmrig_pool_owner_stats(shmrig_pool *pool, struct shmrig_owner_stats *out, size_t max)
{
	struct owner_ctx ctx = { 0 };
	int ret;

	if (max && !out)
		return shmrig__fail(-EINVAL, "pool_owner_stats: NULL out");
	ret = shmrig_pool_for_each_live(pool, owner_one, &ctx);
	if (ret >= 0 && ctx.err)
		ret = shmrig__fail(ctx.err, "pool_owner_stats: out of memory");
	if (ret >= 0 && ctx.count) {
		qsort(ctx.owners, ctx.count, sizeof(*ctx.owners), by_pid);
		if (max)
			memcpy(out, ctx.owners, (ctx.count < max ? ctx.count : max) * sizeof(*out));
	}
	if (ret >= 0)
		ret = (int)ctx.count;
	free(ctx.owners);
	return ret;
}

static void reap_one(void *arg, struct seg_local *sl, struct desc *d, unsigned c, uint32_t id,
		     uint64_t offset)
{
	uint64_t w = atomic_load_explicit(&d->word, memory_order_acquire);
	uint64_t owner = atomic_load_explicit(&d->owner, memory_order_acquire);
	uint32_t next_gen = word_gen(w) + 1;

	(void)offset;
	if (word_state(w) == ST_FREE || shmrig__proc_alive(owner))
		return;
	if (next_gen == 0)
		next_gen = 1;
	/* The owner is dead, so nobody else writes this descriptor but another
	 * reaper: the CAS makes sure only one of us returns the block. */
	if (!atomic_compare_exchange_strong_explicit(&d->word, &w, word_make(next_gen, 0, ST_FREE),
						     memory_order_acq_rel, memory_order_relaxed))
		return;
	if (c < NCLASS)
		list_push(sl, c, id, d);
	(*(int *)arg)++;
}

int shmrig_pool_reap(shmrig_pool *pool)
{
	int count = 0, ret = check_pool(pool);

	if (ret)
		return ret;
	pool_enter(pool);
	for (struct seg_local *sl = pool->segs; sl; sl = sl->next)
		walk_blocks(sl, reap_one, &count);
	large_recycle(pool, 0, 0);
	prune_foreign_large(pool);
	pool_leave(pool);
	return count;
}

int shmrig_pool_sweep(shmrig_pool *pool)
{
	int ret = check_pool(pool);

	if (ret)
		return ret;
	return shmrig_segment_sweep(pool->prefix);
}

static int audit_arena(struct seg_local *sl)
{
	const char *name = shmrig_segment_name(sl->seg);
	uint64_t blocks[NCLASS] = { 0 }, accounted[NCLASS] = { 0 };
	uint32_t used = atomic_load_explicit(&sl->hdr->next_chunk, memory_order_acquire);

	if (used > sl->nchunks)
		return shmrig__fail(-SHMRIG_ECORRUPT, "audit %s: next_chunk %u > %u chunks", name,
				    used, sl->nchunks);
	for (uint32_t chunk = 0; chunk < used; chunk++) {
		uint32_t cp1 = atomic_load_explicit(&sl->hdr->chunks[chunk].class_plus1,
						    memory_order_acquire);

		if (cp1 > NCLASS)
			return shmrig__fail(-SHMRIG_ECORRUPT, "audit %s: chunk %u has class %u",
					    name, chunk, cp1);
		if (!cp1)
			continue;
		blocks[cp1 - 1] += chunk_layout(sl, chunk, cp1 - 1)->nblocks;
		for (uint32_t slot = 0; slot < chunk_layout(sl, chunk, cp1 - 1)->nblocks; slot++) {
			struct desc *d = id_desc(sl, block_id(chunk, slot), cp1 - 1);
			unsigned st =
				word_state(atomic_load_explicit(&d->word, memory_order_acquire));

			if (st == ST_LIVE || st == ST_CACHED)
				accounted[cp1 - 1]++;
			else if (st != ST_FREE)
				return shmrig__fail(-SHMRIG_ECORRUPT,
						    "audit %s: block %u.%u state %u", name, chunk,
						    slot, st);
		}
	}
	for (unsigned c = 0; c < NCLASS; c++) {
		uint64_t head =
			atomic_load_explicit(&sl->hdr->free_list[c].head, memory_order_acquire);
		uint32_t id = (uint32_t)head;

		for (uint64_t steps = 0; id != NIL; steps++) {
			struct desc *d;

			if (!id_valid(sl, id, c) || steps >= blocks[c])
				return shmrig__fail(-SHMRIG_ECORRUPT,
						    "audit %s: class %u free list is broken at %u "
						    "(step %llu)",
						    name, c, id, (unsigned long long)steps);
			d = id_desc(sl, id, c);
			if (word_state(atomic_load_explicit(&d->word, memory_order_acquire)) !=
			    ST_FREE)
				return shmrig__fail(-SHMRIG_ECORRUPT,
						    "audit %s: class %u free list holds a used block",
						    name, c);
			accounted[c]++;
			id = atomic_load_explicit(&d->next_free, memory_order_relaxed);
		}
		if (accounted[c] != blocks[c])
			return shmrig__fail(-SHMRIG_ECORRUPT,
					    "audit %s: class %u has %llu blocks, %llu accounted for",
					    name, c, (unsigned long long)blocks[c],
					    (unsigned long long)accounted[c]);
	}
	return 0;
}

int shmrig_pool_audit(shmrig_pool *pool)
{
	int ret = check_pool(pool);

	if (ret)
		return ret;
	pool_enter(pool);
	for (struct seg_local *sl = pool->segs; sl && !ret; sl = sl->next)
		if (!sl->large)
			ret = audit_arena(sl);
	pool_leave(pool);
	return ret;
}

int shmrig_pool_info(shmrig_pool *pool, struct shmrig_pool_info *info)
{
	int ret = check_pool(pool);

	if (ret)
		return ret;
	if (!info)
		return shmrig__fail(-EINVAL, "pool_info: NULL info");
	pool_enter(pool);
	info->prefix = pool->prefix;
	info->arena_size = pool->arena_size;
	info->max_bytes = pool->max_bytes;
	info->backing = pool->last_backing;
	info->page_size = pool->last_page_size;
	info->numa_node = pool->last_node;
	info->reason = pool->last_reason;
	pool_leave(pool);
	return 0;
}

struct leak_ctx {
	shmrig__procid self;
	bool quiet;
	int count;
};

static void leak_one(void *arg, struct seg_local *sl, struct desc *d, unsigned c, uint32_t id,
		     uint64_t offset)
{
	struct leak_ctx *ctx = arg;
	uint64_t w = atomic_load_explicit(&d->word, memory_order_acquire);
	uint64_t owner = atomic_load_explicit(&d->owner, memory_order_acquire);
	struct shmrig_block_info info;

	(void)id;
	if (word_state(w) != ST_LIVE || (!sl->created && owner != ctx->self))
		return;
	ctx->count++;
	if (ctx->quiet)
		return;
	fill_info(&info, sl, d, c, offset);
	fprintf(stderr,
		"shmrig: leak: block %s+%llu size %llu content %llu tag %u owner pid %d refs %u\n",
		info.ref.name, (unsigned long long)info.ref.offset,
		(unsigned long long)info.ref.size, (unsigned long long)info.ref.content_size,
		info.tag, (int)info.owner, info.refcount);
}

int shmrig_pool_close(shmrig_pool *pool)
{
	struct leak_ctx ctx;
	int ret = check_pool(pool);

	if (ret)
		return ret;
	pool_enter(pool);
	if (pool->slab.open)
		slab_stop(pool);
	if (SHMRIG_DEBUG_CHECKS >= 2) {
		for (struct seg_local *sl = pool->segs; sl; sl = sl->next)
			if (!sl->large && audit_arena(sl))
				fprintf(stderr, "shmrig: %s\n", shmrig_last_error());
	}
	ctx.self = shmrig__procid_self();
	ctx.quiet = pool->flags & SHMRIG_POOL_QUIET;
	ctx.count = 0;
	for (struct seg_local *sl = pool->segs; sl; sl = sl->next)
		walk_blocks(sl, leak_one, &ctx);
	while (pool->segs)
		drop_seg(pool, pool->segs);
	forget_targets(pool);
	pool_leave(pool);
	free(pool);
	if (ctx.count)
		return shmrig__fail(-SHMRIG_ELEAK, "pool_close: %d live block%s at close",
				    ctx.count, ctx.count == 1 ? "" : "s");
	return 0;
}
