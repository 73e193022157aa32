/* SPDX-License-Identifier: MIT */
#ifndef SHMRIG_POOL_INTERNAL_H
#define SHMRIG_POOL_INTERNAL_H

/*
 * The pool's process-local state, shared by its files:
 *   pool.c        the front end: handle, segment table, refs, alloc/free,
 *                 transfer and claim
 *   pool_arena.c  arenas: layouts, free and remote lists, caches, chunks
 *   pool_large.c  large blocks in segments of their own
 *   pool_walk.c   walks over every block: stats, reap, audit, leaks, sweep
 */

#include "base/internal.h"
#include "os/liveness.h"
#include "os/segment_internal.h"
#include "pool/handover.h"
#include "pool/pool_layout.h"
#include "pool/ref_check.h"
#include "os/prim.h"

#include <shmrig/pool.h>

#include <string.h>

/* Internal alloc flag: the block starts HANDED to the caller (see
 * shmrig__pool_alloc_handed). */
#define SHMRIG__ALLOC_HANDED (1u << 31)

/* Per-process cache of free blocks, per arena and class. */
#define CACHE_CAP 64u /* a power of two: the cache is a ring */
#define CACHE_BATCH 32u
/* Free large segments kept mapped for reuse by the process that made them. */
#define LARGE_KEEP 4u
#define HASH_BUCKETS 64

struct layout {
	uint32_t nblocks;
	uint32_t desc_offset;    /* from the chunk's start, unless external */
	uint32_t payload_offset; /* from the chunk's start */
	bool external;           /* descriptors in the header's table */
};

/*
 * This process's view of one mapped segment. Everything here was read once
 * from the segment, checked, and is the only copy used afterwards: a peer that
 * rewrites the shared header cannot move our bounds.
 */
struct seg_local {
	shmrig_segment *seg;
	const char *name; /* the segment's, and its length: refs are filled and matched by it */
	size_t name_len;
	char ref_name[SHMRIG_NAME_MAX]; /* name, zero-padded: a ref's name field in one copy */
	char *base;
	size_t size;
	bool created; /* by this pool: it unlinks it when nobody else holds a block */
	bool large;
	shmrig__procid self;         /* this process (a pool does not outlive a fork) */
	struct seg_local *next;      /* all segments, newest first */
	struct seg_local *hash_next; /* bucket chain */
	/* arenas */
	struct arena_hdr *hdr;
	uint32_t nchunks;
	struct layout layout0[NCLASS]; /* chunk 0, after the header */
	struct layout layout[NCLASS];  /* other chunks */
	/* Created arenas: a ring of free blocks a class, [NCLASS][CACHE_CAP]:
	 * ncache of them from cfirst on, taken oldest first (see list_push) */
	uint32_t ncache[NCLASS];
	uint32_t cfirst[NCLASS];
	uint32_t last_taken[NCLASS]; /* the block taken last (shmrig__cache_put) */
	uint32_t *cache;
	uint32_t next_chunk; /* created arenas: the first unclaimed chunk (ours alone) */
	/* Created arenas: class + 1 of each chunk (0 unassigned), the one copy
	 * the creator uses, since it alone assigns classes; and how many blocks
	 * of each chunk are on its class's free list, kept as it pushes and pops
	 * (which chunks may be empty: reclaim_chunk). Other processes read a
	 * chunk's class from the segment for each ref, since it can change. */
	uint8_t classes[MAX_CHUNKS];
	uint16_t onlist[MAX_CHUNKS];
	/* Created arenas: the last block of each class's free list (NIL: empty),
	 * where frees join it, ours alone (list_push) */
	uint32_t ftail[NCLASS];
	/* large */
	struct large_hdr *lhdr;
	uint64_t capacity; /* the trailer's, read once */
	uint32_t held;     /* references to its block this process holds (not created) */
};

struct slab {
	bool open;
	size_t capacity;
	struct shmrig_ref ref; /* the whole block */
	char *data;
	size_t used;
};

struct shmrig_pool {
	/* Who may be inside the pool's process-local state: see pool_enter(). */
	shmrig__lock lock;
	const char *opener;  /* thread_mark of the thread that opened it */
	_Atomic bool shared; /* another thread came: everybody takes the lock */
	_Atomic int busy;    /* the opener is inside without the lock */
	unsigned fork_epoch;
	shmrig__procid self;
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
	/* the segments the last refs resolved to, the latest first: a caller's
	 * refs alternate between its own arena (requests) and its peer's
	 * (responses), and two spare each a lookup */
	struct seg_local *last[2];
	/* the arena (ours) each class's last block came from: alloc tries its
	 * cache first, with no walk over the segments; NULL: none yet */
	struct seg_local *hot[NCLASS];
	/* inside shmrig_pool_free_n: where its remote frees gather; else NULL */
	struct remote_run *run;
	struct slab slab;
	/* The last names that failed to attach, and how: a frame of many refs
	 * into a few bad segments opens each once, not once a ref. */
	struct {
		char name[SHMRIG_NAME_MAX];
		int err;
	} bad[8];
	unsigned next_bad;
	/* Recent targets of shmrig_pool_transfer(pid): a pidfd says whether that
	 * very process still runs, without reading /proc. */
	struct shmrig__watch targets[4];
	unsigned next_target;
	/* info of the last segment created */
	enum shmrig_backing last_backing;
	size_t last_page_size;
	int last_node;
	char last_reason[256];
};

/* The block a ref names, located in this process's view. */
struct block {
	struct seg_local *sl;
	struct desc *desc;
	uint64_t start; /* payload offset of the whole block */
	uint64_t size;  /* block capacity */
	unsigned cls;   /* NCLASS for large */
	uint32_t id;
};

static inline size_t class_size(unsigned c)
{
	return (size_t)SHMRIG_POOL_MIN_BLOCK << c;
}

static inline size_t round_up(size_t x, size_t align)
{
	return (x + align - 1) / align * align;
}

static inline uint32_t block_id(uint32_t chunk, uint32_t slot)
{
	return (chunk << SLOT_BITS) | slot;
}

static inline uint32_t id_chunk(uint32_t id)
{
	return id >> SLOT_BITS;
}

static inline uint32_t id_slot(uint32_t id)
{
	return id & ((1u << SLOT_BITS) - 1);
}

/* Where the header's descriptor table starts. */
static inline size_t ext_desc_offset(uint32_t nchunks)
{
	return round_up(sizeof(struct arena_hdr) + nchunks * sizeof(struct chunk_info),
			SHMRIG_CACHELINE);
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
	return chunk_descs(sl, id_chunk(id), c) + id_slot(id);
}

static inline uint64_t id_offset(const struct seg_local *sl, uint32_t id, unsigned c)
{
	uint32_t chunk = id_chunk(id);

	return chunk * CHUNK + chunk_layout(sl, chunk, c)->payload_offset +
	       id_slot(id) * class_size(c);
}

unsigned shmrig__chunk_class_read(const struct seg_local *sl, uint32_t chunk);

/*
 * The class of chunk `chunk` (0..NCLASS-1), or NCLASS if unassigned or bad.
 * The creator's own copy (classes[] is the creator's alone: it stays 0 in
 * every other process); anyone else's is read now, once for the ref at hand
 * (checked, and used for nothing else), since an empty chunk may have gone
 * to another class since the last one.
 */
static inline unsigned chunk_class(const struct seg_local *sl, uint32_t chunk)
{
	uint8_t cp1 = sl->classes[chunk];

	if (SHMRIG_LIKELY(cp1))
		return cp1 - 1u;
	return shmrig__chunk_class_read(sl, chunk);
}

/* Chunks of the arena that may be in use: ours, or the shared count capped. */
static inline uint32_t chunks_used(const struct seg_local *sl)
{
	uint32_t used;

	if (sl->created)
		return sl->next_chunk;
	used = atomic_load_explicit(&sl->hdr->next_chunk, memory_order_acquire);
	return used < sl->nchunks ? used : sl->nchunks;
}

/* Death points (meson -Ddeath_points=true): SIGKILL this process at a named
 * step when $SHMRIG_DEATH_POINT names it. No code otherwise. */
#if SHMRIG_DEATH_POINTS
void shmrig__death_point(const char *name);
#define DEATH_POINT(name) shmrig__death_point(name)
#else
#define DEATH_POINT(name) ((void)0)
#endif

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
/* A thread's identity, cheaper than pthread_self(): the address of its own copy.
 * Initial-exec: read at %fs plus a constant, not through __tls_get_addr (a
 * call of ~22 instructions, two per alloc/free pair); one byte of the static
 * TLS that glibc keeps for libraries, even for a dlopen()ed libshmrig. */
#define SHMRIG__TLS_FAST __attribute__((tls_model("initial-exec")))
extern _Thread_local char shmrig__thread_mark SHMRIG__TLS_FAST;
void shmrig__pool_enter_locked(shmrig_pool *pool);

static inline void pool_enter(shmrig_pool *pool)
{
	if (SHMRIG_LIKELY(pool->opener == &shmrig__thread_mark)) {
		atomic_store_explicit(&pool->busy, 1, memory_order_relaxed);
		atomic_signal_fence(memory_order_seq_cst);
		if (SHMRIG_LIKELY(!atomic_load_explicit(&pool->shared, memory_order_relaxed)))
			return;
		atomic_store_explicit(&pool->busy, 0, memory_order_release);
	}
	shmrig__pool_enter_locked(pool);
}

static inline void pool_leave(shmrig_pool *pool)
{
	if (SHMRIG_LIKELY(pool->opener == &shmrig__thread_mark) &&
	    atomic_load_explicit(&pool->busy, memory_order_relaxed)) {
		atomic_signal_fence(memory_order_seq_cst);
		atomic_store_explicit(&pool->busy, 0, memory_order_release);
		return;
	}
	shmrig__lock_give(&pool->lock);
}

/* ---- pool_arena.c ---- */
int shmrig__arena_new(shmrig_pool *pool, struct seg_local **out);
int shmrig__arena_check(struct seg_local *sl);
/*
 * The hot path is inline (DPDK's mempool cache get/put): a block from the
 * cache, made live; freed back into the cache. Refill, flush and the remote
 * free are out of line.
 */
int shmrig__arena_take_slow(struct seg_local *sl, unsigned c, uint32_t *id);
bool shmrig__cached_block_intact(struct seg_local *sl, unsigned c, uint32_t id);
/*
 * Blocks of one arena and class that a shmrig_pool_free_n call freed remotely
 * (REMOTE, still ours, on no list yet): pushed with one CAS when the call ends,
 * when a block of another arena or class comes, or when REMOTE_RUN_MAX are
 * waiting. A death before the push leaves them as one death between a remote
 * free's two steps leaves one block: REMOTE, owned by the dead, found by reap.
 */
#define REMOTE_RUN_MAX 64u
struct remote_run {
	struct seg_local *sl;
	unsigned c;
	uint32_t n;
	uint32_t ids[REMOTE_RUN_MAX];
};
void shmrig__arena_run_flush(struct remote_run *run);
/* run: NULL, or the free_n call's run for a remote free to join */
void shmrig__arena_release_slow(struct seg_local *sl, struct block *b, uint64_t word,
				struct remote_run *run);

/*
 * The creator's cache of class c is a ring: blocks are taken from its front,
 * oldest first, so that blocks are used again in the order they were freed
 * (see list_push: values of like age share chunks, which then empty
 * together). One exception keeps a short-lived value's block hot: a block
 * freed before any other of its class was taken goes back to the front, to
 * be taken next (an encode's scratch, a value freed where it was made).
 */
static inline uint32_t *shmrig__cache_at(struct seg_local *sl, unsigned c, uint32_t i)
{
	return &sl->cache[c * CACHE_CAP + ((sl->cfirst[c] + i) & (CACHE_CAP - 1))];
}

static inline uint32_t shmrig__cache_get(struct seg_local *sl, unsigned c)
{
	uint32_t id = sl->cache[c * CACHE_CAP + sl->cfirst[c]];

	sl->cfirst[c] = (sl->cfirst[c] + 1) & (CACHE_CAP - 1);
	sl->ncache[c]--;
	sl->last_taken[c] = id;
	return id;
}

static inline void shmrig__cache_put(struct seg_local *sl, unsigned c, uint32_t id)
{
	if (id == sl->last_taken[c]) {
		sl->cfirst[c] = (sl->cfirst[c] - 1) & (CACHE_CAP - 1);
		sl->cache[c * CACHE_CAP + sl->cfirst[c]] = id;
		sl->ncache[c]++;
		return;
	}
	*shmrig__cache_at(sl, c, sl->ncache[c]++) = id;
}

/* A block of class c for the creator: 0 with *id, -ENOSPC (the arena has no
 * room), -SHMRIG_ECORRUPT (a shared list failed a check: it is abandoned, and
 * the next call goes on without it). */
static inline bool shmrig__arena_take_cached(struct seg_local *sl, unsigned c, uint32_t *id)
{
	if (!SHMRIG_LIKELY(sl->ncache[c]))
		return false;
	*id = shmrig__cache_get(sl, c);
	return SHMRIG_DEBUG_CHECKS < 1 ||
	       SHMRIG_LIKELY(word_state(atomic_load_explicit(&id_desc(sl, *id, c)->word,
							     memory_order_acquire)) == ST_CACHED) ||
	       shmrig__cached_block_intact(sl, c, *id);
}

static inline int shmrig__arena_take(struct seg_local *sl, unsigned c, uint32_t *id)
{
	if (shmrig__arena_take_cached(sl, c, id))
		return 0;
	return shmrig__arena_take_slow(sl, c, id);
}

/* Make block `id` live for the caller and fill its ref. */
static inline void shmrig__arena_give(struct seg_local *sl, unsigned c, uint32_t id,
				      size_t content_size, uint32_t tag, uint32_t flags,
				      struct shmrig_ref *ref, void **data)
{
	struct desc *d = id_desc(sl, id, c);
	uint32_t gen = word_gen(atomic_load_explicit(&d->word, memory_order_relaxed));

	desc_set_bytes(d, (uint32_t)content_size); /* at most 1 MiB: under the stamp */
	d->tag = tag;
	atomic_store_explicit(&d->owner, sl->self, memory_order_relaxed);
	/* A cached block is ours alone: a plain store publishes it, no atomic
	 * read-modify-write needed. Handed (an encoder's buffer): in flight to
	 * ourselves from the start, its one reference unclaimed. */
	atomic_store_explicit(&d->word,
			      (flags & SHMRIG__ALLOC_HANDED) ? word_make(gen, 1, 1, ST_HANDED) :
							       word_make(gen, 1, 0, ST_LIVE),
			      memory_order_release);
	memcpy(ref->name, sl->ref_name, sizeof(ref->name)); /* fixed size: inlined */
	ref->offset = id_offset(sl, id, c);
	ref->size = class_size(c);
	ref->content_size = content_size;
	shmrig__ref_set_tail(ref, gen, (flags & SHMRIG_ALLOC_TEMPORARY) ? 1 : 0);
	*data = sl->base + ref->offset;
}

/* -SHMRIG_EBADREF: the descriptor's class stamp is not the chunk's class. */
__attribute__((cold, noinline)) int shmrig__stamp_mismatch(const struct shmrig_ref *ref);
/* -SHMRIG_EBADREF: the ref's range is not inside one block of its arena. */
__attribute__((cold, noinline)) int shmrig__not_in_block(const struct shmrig_ref *ref);

/* The block holding [ref->offset, ref->offset + ref->size) in arena sl, from
 * the chunk's class alone (its descriptor is not read): false if there is none. */
static inline __attribute__((always_inline)) bool shmrig__arena_place(struct seg_local *sl,
								      const struct shmrig_ref *ref,
								      struct block *b)
{
	uint64_t off = ref->offset, size = ref->size;
	uint64_t chunk = off / CHUNK, rel = off % CHUNK, slot, bsize;
	const struct layout *l;

	b->sl = sl;
	if (chunk >= sl->nchunks)
		return false;
	b->cls = chunk_class(sl, (uint32_t)chunk);
	if (b->cls == NCLASS)
		return false;
	l = chunk_layout(sl, (uint32_t)chunk, b->cls);
	bsize = class_size(b->cls);
	if (rel < l->payload_offset)
		return false;
	slot = (rel - l->payload_offset) >> (6 + b->cls); /* bsize is 64 << cls */
	if (slot >= l->nblocks)
		return false;
	b->start = chunk * CHUNK + l->payload_offset + slot * bsize;
	b->size = bsize;
	if (size > b->start + bsize - off)
		return false;
	b->id = block_id((uint32_t)chunk, (uint32_t)slot);
	b->desc = id_desc(sl, b->id, b->cls);
	return true;
}

/* Find the block of the ref in arena sl, and check its descriptor's class stamp.
 * Always inlined, its errors out of line: at -O2 (the default build) gcc kept
 * it a call of 89 instructions on every free. */
static inline __attribute__((always_inline)) int shmrig__arena_locate(struct seg_local *sl,
								      const struct shmrig_ref *ref,
								      struct block *b)
{
	if (SHMRIG_UNLIKELY(!shmrig__arena_place(sl, ref, b)))
		return shmrig__not_in_block(ref);
	/* the creator's class is its own; anyone else's was read just now */
	if (!sl->created && SHMRIG_UNLIKELY(desc_class(b->desc->content_size) != b->cls + 1))
		return shmrig__stamp_mismatch(ref);
	return 0;
}

/* Free a block whose last reference we dropped (word: as we read it, ours). */
/* The creator's free into its cache, which has room: the next generation. */
static inline void shmrig__arena_release_cached(struct seg_local *sl, struct desc *d, unsigned c,
						uint32_t id, uint64_t word)
{
	atomic_store_explicit(&d->word, word_make(gen_next(word_gen(word)), 0, 0, ST_CACHED),
			      memory_order_release);
	shmrig__cache_put(sl, c, id);
}

static inline void shmrig__arena_release(struct seg_local *sl, struct block *b, uint64_t word,
					 struct remote_run *run)
{
	if (SHMRIG_LIKELY(sl->created && sl->ncache[b->cls] < CACHE_CAP)) {
		shmrig__arena_release_cached(sl, b->desc, b->cls, b->id, word);
		return;
	}
	shmrig__arena_release_slow(sl, b, word, run);
}
/* Put REMOTE blocks (owned by us: freed by us, or a dead owner's whose word
 * our CAS made REMOTE) of arena sl and class c where its creator collects:
 * linked ids[0] first, with one CAS. */
void shmrig__arena_push_remote(struct seg_local *sl, unsigned c, const uint32_t *ids, uint32_t n);
/* The pushers of REMOTE blocks in an arena we created that are known dead,
 * noted while reap walks it (at most DEAD_PUSHERS_MAX; more wait a reap). */
#define DEAD_PUSHERS_MAX 64u
struct dead_pushers {
	shmrig__procid ids[DEAD_PUSHERS_MAX];
	uint32_t n;
};
void shmrig__note_pusher(struct dead_pushers *dead, struct shmrig__life_cache *lives,
			 shmrig__procid pusher);
/* Creator: REMOTE blocks on no list whose pusher is one of `dead` go back
 * (after every push of those pushers has been collected). Returns how many. */
int shmrig__arena_recover(struct seg_local *sl, const struct dead_pushers *dead);
/* Creator: give an empty chunk of another class to class c, so that the next
 * take finds blocks. true if it did (see pool_arena.c). */
bool shmrig__arena_reclaim(struct seg_local *sl, unsigned c);
/* Creator: chunks of arena sl per class, added to counts[NCLASS]. */
void shmrig__arena_count_chunks(const struct seg_local *sl, uint32_t counts[NCLASS]);
int shmrig__arena_audit(struct seg_local *sl);

/* ---- pool_large.c ---- */
int shmrig__large_alloc(shmrig_pool *pool, size_t size, uint32_t flags, uint32_t tag,
			struct shmrig_ref *ref, void **data);
int shmrig__large_check(struct seg_local *sl, size_t max_bytes);
int shmrig__large_locate(struct seg_local *sl, const struct shmrig_ref *ref, struct block *b);
void shmrig__large_release(shmrig_pool *pool, struct block *b, uint64_t word);
void shmrig__large_recycle_all(shmrig_pool *pool);
/* Unlink the free large segments kept for reuse that stand between the pool
 * and `need` more bytes under max_bytes. */
void shmrig__large_make_room(shmrig_pool *pool, size_t need);
/* Unmap large segments of others whose block we hold no reference to and is free. */
void shmrig__large_prune_foreign(shmrig_pool *pool);

/* ---- pool.c ---- */
void shmrig__pool_drop_seg(shmrig_pool *pool, struct seg_local *sl);
int shmrig__pool_create_seg(shmrig_pool *pool, size_t size, char role, struct seg_local **out);
void shmrig__pool_insert(shmrig_pool *pool, struct seg_local *sl);
int shmrig__pool_check(shmrig_pool *pool);

/* ---- pool_walk.c ---- */
typedef void (*block_fn)(void *arg, struct seg_local *sl, struct desc *d, unsigned c, uint32_t id,
			 uint64_t offset);
/* Call fn for every block of sl whose state is not FREE. */
void shmrig__walk_blocks(struct seg_local *sl, block_fn fn, void *arg);
/* Is any block of segment sl live or handed over, owned by a process other
 * than `except` that is not known to be dead? (close, the last owner's free
 * and sweep leave such segments in place) */
bool shmrig__seg_held(struct seg_local *sl, struct shmrig__life_cache *lives,
		      shmrig__procid except);
void shmrig__pool_close_segments(shmrig_pool *pool);
/* Attach segment `name` for a look (not in the table): 0 or -errno. */
int shmrig__pool_peek_seg(shmrig_pool *pool, const char *name, struct seg_local **out);
void shmrig__pool_unpeek_seg(struct seg_local *sl);

#endif
