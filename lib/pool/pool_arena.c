/* SPDX-License-Identifier: MIT */
/*
 * pool_arena: arenas of size-classed blocks.
 *
 * Only the creator allocates from an arena: it alone pops its free lists and
 * fills its private cache. Any process frees into it: the owner of a block
 * marks it REMOTE (one CAS on its word) and pushes it on the class's remote
 * list (one CAS on the head); the creator takes the whole remote list with
 * one exchange. A process that dies between the two steps leaves a REMOTE
 * block on no list, owned by a dead process: the creator's reap finds it
 * (shmrig__arena_recover) once every push of that process has been collected.
 *
 * Everything popped from a shared list is checked before it is used: its id
 * must name a block of a chunk of that class, and its state must be the one
 * the list promises, changed by our CAS; a list that fails is corrupt, and a
 * block is never handed out twice.
 */
#include "pool/pool_internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
		l.nblocks = l.payload_offset >= CHUNK ?
				    0 :
				    (uint32_t)((CHUNK - l.payload_offset) / size);
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

static size_t arena_hdr_size(uint32_t nchunks)
{
	return ext_desc_offset(nchunks) + (size_t)nchunks * EXT_DESCS * sizeof(struct desc);
}

static void init_layouts(struct seg_local *sl)
{
	size_t header = arena_hdr_size(sl->nchunks); /* ours, never the shared copy */

	for (unsigned c = 0; c < NCLASS; c++) {
		sl->layout0[c] = compute_layout(c, header);
		sl->layout[c] = compute_layout(c, 0);
	}
}

unsigned shmrig__chunk_class_read(const struct seg_local *sl, uint32_t chunk)
{
	uint32_t cp1;

	/* a creator knows every class it assigned: an unknown one is unassigned */
	if (sl->created)
		return NCLASS;
	cp1 = atomic_load_explicit(&sl->hdr->chunks[chunk].class_plus1, memory_order_acquire);
	return cp1 && cp1 <= NCLASS ? cp1 - 1 : NCLASS;
}

int shmrig__stamp_mismatch(const struct shmrig_ref *ref)
{
	return shmrig__fail(-SHMRIG_EBADREF,
			    "ref '%s': offset %llu: the block there is not of the class its "
			    "chunk says (the chunk is changing class)",
			    ref->name, (unsigned long long)ref->offset);
}

int shmrig__not_in_block(const struct shmrig_ref *ref)
{
	return shmrig__fail(-SHMRIG_EBADREF,
			    "ref '%s': offset %llu size %llu is not inside one block of the segment",
			    ref->name, (unsigned long long)ref->offset,
			    (unsigned long long)ref->size);
}

/* Is `id` a block of a chunk of class c? (validates links read from shared memory) */
static bool id_valid(struct seg_local *sl, uint32_t id, unsigned c)
{
	uint32_t chunk = id_chunk(id);

	return chunk < sl->nchunks && chunk_class(sl, chunk) == c &&
	       id_slot(id) < chunk_layout(sl, chunk, c)->nblocks;
}

/* The free list of class c, made again from the descriptors: every FREE block
 * of the class's chunks, linked afresh in address order (and counted again a
 * chunk). Only the creator changes FREE blocks, under its lock, so these are
 * exactly the blocks the list should hold. */
static void rebuild_free_list(struct seg_local *sl, unsigned c)
{
	uint32_t used = chunks_used(sl);
	_Atomic uint64_t *head = &sl->hdr->free_list[c].head;
	uint64_t old = atomic_load_explicit(head, memory_order_relaxed);
	uint32_t first = NIL;
	struct desc *prev = NULL;

	sl->ftail[c] = NIL;
	for (uint32_t chunk = 0; chunk < used; chunk++) {
		if (chunk_class(sl, chunk) != c)
			continue;
		sl->onlist[chunk] = 0;
		for (uint32_t slot = 0; slot < chunk_layout(sl, chunk, c)->nblocks; slot++) {
			uint32_t id = block_id(chunk, slot);
			struct desc *d = id_desc(sl, id, c);

			if (word_state(atomic_load_explicit(&d->word, memory_order_acquire)) !=
			    ST_FREE)
				continue;
			atomic_store_explicit(&d->next_free, NIL, memory_order_relaxed);
			if (prev)
				atomic_store_explicit(&prev->next_free, id, memory_order_relaxed);
			else
				first = id;
			prev = d;
			sl->ftail[c] = id;
			sl->onlist[chunk]++;
		}
	}
	atomic_store_explicit(head, ((uint64_t)((uint32_t)(old >> 32) + 1) << 32) | first,
			      memory_order_release);
}

/*
 * A shared list failed a check: the call that found it says so. A free list
 * is made again from the descriptors (nothing leaks, and a peer that corrupts
 * it again is caught again); of a remote list, the blocks past the bad link
 * stay REMOTE, and audit reports them.
 */
static int corrupt(struct seg_local *sl, unsigned c, bool remote, uint32_t id, const char *why)
{
	if (!remote)
		rebuild_free_list(sl, c);
	return shmrig__fail(-SHMRIG_ECORRUPT, "segment %s: class %u %s list: block %u.%u %s",
			    sl->name, c, remote ? "remote" : "free", id_chunk(id), id_slot(id),
			    why);
}

/*
 * ---- the free list: the creator's alone. A queue: blocks join at the tail
 * (ours, private) and leave at the head (in shared memory, with an ABA tag,
 * where a peer may write it: we check, not trust). First freed, first reused:
 * when values live about as long as each other, a chunk's blocks are taken
 * again in the order they were, so each chunk holds values of like age and
 * empties as they go (a stack hands the newest value the slot the oldest
 * left, and a chunk is held by one young value among old ones). ----
 */

/* Append the chain first..last (ids, already linked) at the tail. */
static void list_push(struct seg_local *sl, unsigned c, uint32_t first, uint32_t last)
{
	_Atomic uint64_t *head = &sl->hdr->free_list[c].head;
	uint64_t old = atomic_load_explicit(head, memory_order_relaxed), new_head;
	uint32_t tail = sl->ftail[c];

	atomic_store_explicit(&id_desc(sl, last, c)->next_free, NIL, memory_order_relaxed);
	sl->ftail[c] = last;
	if (tail != NIL && (uint32_t)old != NIL) {
		/* release: the chain's links are visible before the link to it */
		atomic_store_explicit(&id_desc(sl, tail, c)->next_free, first,
				      memory_order_release);
		return;
	}
	/* empty (or a peer emptied it: what it held is made again by the
	 * next check that fails, or found by audit) */
	do
		new_head = ((uint64_t)((uint32_t)(old >> 32) + 1) << 32) | first;
	while (!atomic_compare_exchange_weak_explicit(head, &old, new_head, memory_order_release,
						      memory_order_relaxed));
}

/* Move a block we just took (state CACHED by our CAS) to the cache's end. */
static void cache_add(struct seg_local *sl, unsigned c, uint32_t id)
{
	*shmrig__cache_at(sl, c, sl->ncache[c]++) = id;
}

/*
 * Pop one block into the cache: 1 done, 0 the list is empty, or
 * -SHMRIG_ECORRUPT. The block must be FREE, and our CAS makes it CACHED: a
 * head pointing at a live block, or a cycle, is caught here.
 */
static int list_pop(struct seg_local *sl, unsigned c)
{
	_Atomic uint64_t *head = &sl->hdr->free_list[c].head;
	uint64_t old = atomic_load_explicit(head, memory_order_acquire), new_head, w;
	uint32_t id, next;
	struct desc *d;

	do {
		id = (uint32_t)old;
		if (id == NIL)
			return 0;
		if (!id_valid(sl, id, c))
			return corrupt(sl, c, false, id, "is not a block of the class");
		next = atomic_load_explicit(&id_desc(sl, id, c)->next_free, memory_order_relaxed);
		new_head = ((uint64_t)((uint32_t)(old >> 32) + 1) << 32) | next;
	} while (!atomic_compare_exchange_weak_explicit(head, &old, new_head, memory_order_acquire,
							memory_order_acquire));
	if (next == NIL || id == sl->ftail[c])
		sl->ftail[c] = NIL; /* the list is empty now: the next push sets the head */
	sl->onlist[id_chunk(id)]--;
	d = id_desc(sl, id, c);
	w = atomic_load_explicit(&d->word, memory_order_acquire);
	if (word_state(w) != ST_FREE ||
	    !atomic_compare_exchange_strong_explicit(&d->word, &w,
						     word_make(word_gen(w), 0, 0, ST_CACHED),
						     memory_order_acq_rel, memory_order_relaxed))
		return corrupt(sl, c, false, id, "is not free");
	atomic_store_explicit(&d->owner, sl->self, memory_order_relaxed);
	cache_add(sl, c, id);
	return 1;
}

/* ---- the remote list: anyone pushes, the creator takes all ---- */

void shmrig__arena_push_remote(struct seg_local *sl, unsigned c, const uint32_t *ids, uint32_t n)
{
	_Atomic uint64_t *head = &sl->hdr->remote[c].head;
	uint64_t old = atomic_load_explicit(head, memory_order_relaxed), pushes;

	for (uint32_t i = 0; i + 1 < n; i++)
		atomic_store_explicit(&id_desc(sl, ids[i], c)->next_free, ids[i + 1],
				      memory_order_relaxed);
	do {
		pushes = old >> 32;
		atomic_store_explicit(&id_desc(sl, ids[n - 1], c)->next_free, (uint32_t)old,
				      memory_order_relaxed);
		/* the list's j-th block, ids[j], is push number pushes + n - 1 - j */
		for (uint32_t j = 0; j < n; j++)
			atomic_store_explicit(&sl->hdr->remote[c]
						       .hint[(pushes + n - 1 - j) % REMOTE_HINTS],
					      ids[j], memory_order_relaxed);
		/* release: the blocks' REMOTE words (and the hints) are visible to the collector */
	} while (!atomic_compare_exchange_weak_explicit(head, &old, (pushes + n) << 32 | ids[0],
							memory_order_release,
							memory_order_relaxed));
}

void shmrig__arena_run_flush(struct remote_run *run)
{
	if (run->n)
		shmrig__arena_push_remote(run->sl, run->c, run->ids, run->n);
	run->n = 0;
}

/* How many hinted descriptors collect_remote has in flight ahead of its walk. */
#define HINT_AHEAD 12u

/* Ask for the line of the list's j-th block's descriptor, for writing, if its
 * hint names a block of the class (chain order: the last push first). */
static inline void prefetch_hinted(struct seg_local *sl, unsigned c, uint64_t pushes, uint64_t j)
{
	uint32_t id;

	if (j >= pushes || j >= REMOTE_HINTS)
		return;
	id = atomic_load_explicit(&sl->hdr->remote[c].hint[(pushes - 1 - j) % REMOTE_HINTS],
				  memory_order_relaxed);
	if (id_valid(sl, id, c))
		__builtin_prefetch(id_desc(sl, id, c), 1, 3);
}

/*
 * Take every block on the remote list of class c: into the cache while there
 * is room, the rest onto the free list. 0 or -SHMRIG_ECORRUPT (the blocks
 * before the bad link are kept; the rest of that chain is left to audit).
 */
static int collect_remote(struct seg_local *sl, unsigned c)
{
	_Atomic uint64_t *head = &sl->hdr->remote[c].head;
	uint32_t id, first = NIL, last = NIL;
	uint64_t taken, pushes, j = 0;

	/* Nothing there (the usual case): no locked instruction. */
	if ((uint32_t)atomic_load_explicit(head, memory_order_relaxed) == NIL)
		return 0;
	taken = atomic_exchange_explicit(head, NIL, memory_order_acquire);
	id = (uint32_t)taken;
	pushes = taken >> 32;
	for (; j < HINT_AHEAD; j++)
		prefetch_hinted(sl, c, pushes, j);
	/* A cycle is caught by the state (a block visited twice is no longer
	 * REMOTE), so the walk ends after at most one pass over the arena. A
	 * block on the list is written by nobody but its arena's creator, us:
	 * its pusher is done with it, and reapers leave REMOTE blocks alone. */
	for (j = HINT_AHEAD; id != NIL; j++) {
		struct desc *d;
		uint64_t w;
		uint32_t next;
		bool to_cache = sl->ncache[c] < CACHE_CAP;

		if (!id_valid(sl, id, c))
			return corrupt(sl, c, true, id, "is not a block of the class");
		prefetch_hinted(sl, c, pushes, j);
		d = id_desc(sl, id, c);
		next = atomic_load_explicit(&d->next_free, memory_order_relaxed);
		w = atomic_load_explicit(&d->word, memory_order_acquire);
		if (word_state(w) != ST_REMOTE) {
			if (first != NIL)
				list_push(sl, c, first, last);
			return corrupt(sl, c, true, id, "is not remote-freed");
		}
		atomic_store_explicit(&d->word,
				      word_make(word_gen(w), 0, 0, to_cache ? ST_CACHED : ST_FREE),
				      memory_order_relaxed);
		if (to_cache) {
			atomic_store_explicit(&d->owner, sl->self, memory_order_relaxed);
			cache_add(sl, c, id);
		} else {
			atomic_store_explicit(&d->next_free, first, memory_order_relaxed);
			if (first == NIL)
				last = id;
			first = id;
			sl->onlist[id_chunk(id)]++;
		}
		id = next;
	}
	if (first != NIL)
		list_push(sl, c, first, last);
	return 0;
}

/* ---- the creator's cache ---- */

/* Hand the oldest `count` cached blocks back to the free list (one CAS). */
static void cache_flush(struct seg_local *sl, unsigned c, uint32_t count)
{
	struct desc *prev = NULL;
	uint32_t first = NIL, id = NIL;

	if (count > sl->ncache[c])
		count = sl->ncache[c];
	if (!count)
		return;
	for (uint32_t i = 0; i < count; i++) {
		struct desc *d;
		uint64_t w;

		id = *shmrig__cache_at(sl, c, i);
		d = id_desc(sl, id, c);
		w = atomic_load_explicit(&d->word, memory_order_relaxed);
		atomic_store_explicit(&d->word, word_make(word_gen(w), 0, 0, ST_FREE),
				      memory_order_relaxed);
		if (prev)
			atomic_store_explicit(&prev->next_free, id, memory_order_relaxed);
		else
			first = id;
		prev = d;
		sl->onlist[id_chunk(id)]++;
	}
	list_push(sl, c, first, id);
	sl->cfirst[c] = (sl->cfirst[c] + count) & (CACHE_CAP - 1);
	sl->ncache[c] -= count;
}

/* Give chunk `chunk` (unassigned) to class c, its descriptors stamped and
 * FREE at generation `gen`: its blocks go to our cache (up to a batch) and
 * the free list. */
static void assign_chunk(struct seg_local *sl, uint32_t chunk, unsigned c, uint32_t gen)
{
	const struct layout *l = chunk_layout(sl, chunk, c);
	struct desc *descs = chunk_descs(sl, chunk, c);
	uint32_t n = l->nblocks, keep = n < CACHE_BATCH ? n : CACHE_BATCH;

	sl->classes[chunk] = (uint8_t)(c + 1);
	for (uint32_t i = 0; i < n; i++) {
		atomic_store_explicit(&descs[i].owner, sl->self, memory_order_relaxed);
		descs[i].content_size = desc_stamp(c, 0);
		atomic_store_explicit(&descs[i].word,
				      word_make(gen, 0, 0, i < keep ? ST_CACHED : ST_FREE),
				      memory_order_relaxed);
		atomic_store_explicit(&descs[i].next_free, i + 1 < n ? block_id(chunk, i + 1) : NIL,
				      memory_order_relaxed);
	}
	/* release: a reader that sees the class sees the stamps under it */
	atomic_store_explicit(&sl->hdr->chunks[chunk].class_plus1, c + 1, memory_order_release);
	for (uint32_t i = 0; i < keep; i++)
		cache_add(sl, c, block_id(chunk, i));
	sl->onlist[chunk] = (uint16_t)(n - keep);
	if (keep < n)
		list_push(sl, c, block_id(chunk, keep), block_id(chunk, n - 1));
}

/* Assign the next unused chunk of arena sl to class c. false if the arena
 * has none left. */
static bool claim_chunk(struct seg_local *sl, unsigned c)
{
	uint32_t chunk = sl->next_chunk;

	/* Only the creator claims chunks, under its pool lock, counting in its
	 * own copy: the shared next_chunk is what others read, never what we
	 * trust (a peer that lowered it would make us claim a chunk in use). */
	if (chunk >= sl->nchunks)
		return false;
	if (chunk_layout(sl, chunk, c)->nblocks == 0) {
		/* chunk 0 may be too small for the largest classes; skip it for them */
		if (chunk != 0 || sl->nchunks == 1)
			return false;
		sl->next_chunk = 1;
		atomic_store_explicit(&sl->hdr->next_chunk, 1, memory_order_relaxed);
		return false;
	}
	sl->next_chunk = chunk + 1;
	/* Generations start at 1, so that a zeroed ref never matches a block. */
	assign_chunk(sl, chunk, c, 1);
	/* after the class: a walker in another process caps what it reads by it */
	atomic_store_explicit(&sl->hdr->next_chunk, chunk + 1, memory_order_release);
	return true;
}

/*
 * Every block of chunk `chunk` (class c) FREE? Then *gen is the generation
 * its blocks start at in the next class: past every generation of the
 * chunk's blocks, so that a ref from before (a replay, a stale copy) matches
 * none of them. Each class's generations start above the ones before it, so
 * the highest of the present class is above all earlier ones too.
 */
static bool chunk_empty(struct seg_local *sl, uint32_t chunk, unsigned c, uint32_t *gen)
{
	const struct layout *l = chunk_layout(sl, chunk, c);
	struct desc *descs = chunk_descs(sl, chunk, c);
	uint32_t top = 0;

	for (uint32_t i = 0; i < l->nblocks; i++) {
		uint64_t w = atomic_load_explicit(&descs[i].word, memory_order_acquire);

		if (word_state(w) != ST_FREE)
			return false;
		if (word_gen(w) > top)
			top = word_gen(w);
	}
	*gen = gen_next(top);
	return true;
}

/* Blocks of chunk `chunk` in our cache of class c. */
static uint32_t cached_in(const struct seg_local *sl, unsigned c, uint32_t chunk)
{
	uint32_t n = 0;

	for (uint32_t i = 0; i < sl->ncache[c]; i++)
		n += id_chunk(*shmrig__cache_at((struct seg_local *)sl, c, i)) == chunk;
	return n;
}

/*
 * The arena has no unused chunk left and class c no free block: a chunk of
 * another class whose every block is free goes to class c. What others freed
 * is collected first; a chunk is a candidate when its blocks on the free list
 * and in our cache are all it has, and it is taken only when its descriptors
 * say FREE, every one.
 *
 * The steps, each leaving what a reaper or an audit can read: the chunk is
 * unassigned (readers refuse refs into it: none is legitimate, every block
 * is free); its old class's free list is made again without it; it is
 * assigned to c like a fresh chunk. The creator is the one process that
 * changes classes, FREE blocks and the free lists, so nothing moves under it;
 * a creator that dies half-way leaves an unassigned chunk, which nobody reads.
 */
bool shmrig__arena_reclaim(struct seg_local *sl, unsigned c)
{
	uint32_t used = sl->next_chunk, gen;

	if (!sl->created || sl->large)
		return false;
	for (unsigned k = 0; k < NCLASS; k++)
		(void)collect_remote(sl, k); /* a corrupt remote list: said by the next take */
	for (uint32_t chunk = 0; chunk < used; chunk++) {
		unsigned old = chunk_class(sl, chunk);

		if (old == NCLASS || old == c || chunk_layout(sl, chunk, c)->nblocks == 0 ||
		    sl->onlist[chunk] + cached_in(sl, old, chunk) !=
			    chunk_layout(sl, chunk, old)->nblocks)
			continue;
		cache_flush(sl, old, sl->ncache[old]);
		if (!chunk_empty(sl, chunk, old, &gen))
			continue; /* a count that was off (a peer wrote the list): next one */
		sl->classes[chunk] = 0;
		atomic_store_explicit(&sl->hdr->chunks[chunk].class_plus1, 0, memory_order_release);
		rebuild_free_list(sl, old);
		DEATH_POINT("chunk_reclaim"); /* unassigned, the old list without it */
		assign_chunk(sl, chunk, c, gen);
		return true;
	}
	return false;
}

void shmrig__arena_count_chunks(const struct seg_local *sl, uint32_t counts[NCLASS])
{
	for (uint32_t chunk = 0; chunk < sl->next_chunk; chunk++) {
		unsigned c = chunk_class(sl, chunk);

		if (c < NCLASS)
			counts[c]++;
	}
}

/*
 * Debug level 1: a block in our cache is ours alone; if its descriptor says
 * otherwise, another process wrote where it must not. Leave the block alone
 * (a leak is better than handing out memory someone else uses) and say so.
 */
bool shmrig__cached_block_intact(struct seg_local *sl, unsigned c, uint32_t id)
{
	static int warned;
	struct desc *d = id_desc(sl, id, c);
	uint64_t w = atomic_load_explicit(&d->word, memory_order_acquire);

	if (SHMRIG_LIKELY(word_state(w) == ST_CACHED))
		return true;
	shmrig__warn_once(&warned,
			  "segment %s: cached block %u.%u was changed by another process "
			  "(state %u); dropped",
			  sl->name, id_chunk(id), id_slot(id), word_state(w));
	return false;
}

int shmrig__arena_take_slow(struct seg_local *sl, unsigned c, uint32_t *id)
{
	int ret = 0;

	for (;;) {
		if (!sl->ncache[c]) {
			/* Refill: what others freed, then the free list, up to a batch.
			 * A corrupt list is said now, by this call; what was taken
			 * before it stays in the cache for the next. */
			ret = collect_remote(sl, c);
			while (!ret && sl->ncache[c] < CACHE_BATCH && (ret = list_pop(sl, c)) > 0)
				ret = 0;
			if (ret < 0)
				return ret;
			if (!sl->ncache[c] && !claim_chunk(sl, c))
				return -ENOSPC;
		}
		*id = shmrig__cache_get(sl, c);
		if (SHMRIG_DEBUG_CHECKS < 1 || shmrig__cached_block_intact(sl, c, *id))
			return 0;
	}
}

void shmrig__arena_release_slow(struct seg_local *sl, struct block *b, uint64_t word,
				struct remote_run *run)
{
	uint32_t next_gen = gen_next(word_gen(word));

	if (sl->created) {
		/* the cache is full: half of it goes to the free list first */
		cache_flush(sl, b->cls, CACHE_BATCH);
		atomic_store_explicit(&b->desc->word, word_make(next_gen, 0, 0, ST_CACHED),
				      memory_order_release);
		shmrig__cache_put(sl, b->cls, b->id);
		return;
	}
	/* Someone else's arena. Step 1: REMOTE, still owned by us. Step 2:
	 * push it where the creator collects. */
	atomic_store_explicit(&b->desc->word, word_make(next_gen, 0, 0, ST_REMOTE),
			      memory_order_release);
	DEATH_POINT("remote_free");
	if (!run) {
		shmrig__arena_push_remote(sl, b->cls, &b->id, 1);
		return;
	}
	if (run->n && (run->sl != sl || run->c != b->cls || run->n == REMOTE_RUN_MAX))
		shmrig__arena_run_flush(run);
	run->sl = sl;
	run->c = b->cls;
	run->ids[run->n++] = b->id;
}

/* ---- recovery of REMOTE blocks whose pusher died before pushing ---- */

static bool is_dead_pusher(const struct dead_pushers *dead, shmrig__procid id)
{
	for (uint32_t i = 0; i < dead->n; i++)
		if (dead->ids[i] == id)
			return true;
	return false;
}

void shmrig__note_pusher(struct dead_pushers *dead, struct shmrig__life_cache *lives,
			 shmrig__procid pusher)
{
	if (dead->n < DEAD_PUSHERS_MAX && !is_dead_pusher(dead, pusher) &&
	    shmrig__life_cached(lives, pusher) == SHMRIG__DEAD)
		dead->ids[dead->n++] = pusher;
}

struct recover_ctx {
	const struct dead_pushers *dead;
	int count;
};

static void recover_one(void *arg, struct seg_local *sl, struct desc *d, unsigned c, uint32_t id,
			uint64_t offset)
{
	struct recover_ctx *ctx = arg;
	uint64_t w = atomic_load_explicit(&d->word, memory_order_acquire);

	(void)offset;
	if (word_state(w) != ST_REMOTE ||
	    !is_dead_pusher(ctx->dead, atomic_load_explicit(&d->owner, memory_order_acquire)))
		return;
	if (!atomic_compare_exchange_strong_explicit(&d->word, &w,
						     word_make(word_gen(w), 0, 0, ST_FREE),
						     memory_order_acq_rel, memory_order_relaxed))
		return;
	list_push(sl, c, id, id);
	sl->onlist[id_chunk(id)]++;
	ctx->count++;
}

/*
 * A REMOTE block on no list: its pusher died between its two steps. The
 * pushers were judged first (by reap's walk, shmrig__note_pusher); now take
 * the remote lists (every push of a process already dead is on them); what is
 * still REMOTE and owned by one of those dead pushers was never pushed. Only
 * the creator may do this: it alone collects.
 */
int shmrig__arena_recover(struct seg_local *sl, const struct dead_pushers *dead)
{
	struct recover_ctx ctx = { .dead = dead };

	if (!sl->created || sl->large || !dead->n)
		return 0;
	for (unsigned c = 0; c < NCLASS; c++)
		collect_remote(sl, c);
	shmrig__walk_blocks(sl, recover_one, &ctx);
	return ctx.count;
}

/* ---- creating and checking arenas ---- */

int shmrig__arena_new(shmrig_pool *pool, struct seg_local **out)
{
	uint32_t nchunks = (uint32_t)(pool->arena_size / CHUNK);
	struct seg_local *sl;
	int ret;

	/* free large segments kept for reuse give their room back first: only
	 * blocks in use may stand between us and the limit */
	if (pool->created_bytes + pool->arena_size > pool->max_bytes)
		shmrig__large_make_room(pool, pool->arena_size);
	if (pool->created_bytes + pool->arena_size > pool->max_bytes)
		return shmrig__fail(-ENOMEM,
				    "pool: a new %zu-byte arena would pass the limit of %zu bytes "
				    "(%zu in use)",
				    pool->arena_size, pool->max_bytes, pool->created_bytes);
	ret = shmrig__pool_create_seg(pool, pool->arena_size, ROLE_ARENA, &sl);
	if (ret)
		return ret;
	sl->cache = calloc(NCLASS * CACHE_CAP, sizeof(uint32_t));
	if (!sl->cache) {
		shmrig__pool_insert(pool, sl);
		shmrig__pool_drop_seg(pool, sl);
		return shmrig__fail(-ENOMEM, "pool: out of memory");
	}
	DEATH_POINT("arena_create"); /* the segment is there, its header is not */
	sl->hdr = (struct arena_hdr *)sl->base;
	sl->nchunks = nchunks;
	sl->hdr->version = LAYOUT_VERSION;
	sl->hdr->nchunks = nchunks;
	sl->hdr->arena_size = sl->size;
	sl->hdr->creator = sl->self;
	sl->hdr->hdr_size = (uint32_t)arena_hdr_size(nchunks);
	for (unsigned c = 0; c < NCLASS; c++) {
		atomic_store_explicit(&sl->hdr->free_list[c].head, NIL, memory_order_relaxed);
		atomic_store_explicit(&sl->hdr->remote[c].head, NIL, memory_order_relaxed);
		sl->ftail[c] = NIL;
		sl->last_taken[c] = NIL;
	}
	init_layouts(sl);
	/* The magic last, with release: a peer that sees it sees a whole header. */
	atomic_store_explicit((_Atomic uint64_t *)&sl->hdr->magic, ARENA_MAGIC,
			      memory_order_release);
	shmrig__pool_insert(pool, sl);
	*out = sl;
	return 0;
}

/*
 * Validate the header of an arena mapped from elsewhere. The geometry is our
 * own: the chunk count comes from the file's size (capped), and the header's
 * fields only have to agree with it.
 */
int shmrig__arena_check(struct seg_local *sl)
{
	if (sl->size % CHUNK || sl->size < CHUNK || sl->size / CHUNK > MAX_CHUNKS)
		return shmrig__fail(-SHMRIG_ECORRUPT,
				    "segment '%s': %zu bytes is not an arena size (2 MiB multiple, "
				    "at most %u chunks)",
				    sl->name, sl->size, MAX_CHUNKS);
	sl->hdr = (struct arena_hdr *)sl->base;
	sl->nchunks = (uint32_t)(sl->size / CHUNK);
	if (atomic_load_explicit((_Atomic uint64_t *)&sl->hdr->magic, memory_order_acquire) !=
		    ARENA_MAGIC ||
	    sl->hdr->version != LAYOUT_VERSION || sl->hdr->nchunks != sl->nchunks ||
	    sl->hdr->hdr_size != arena_hdr_size(sl->nchunks))
		return shmrig__fail(-SHMRIG_ECORRUPT,
				    "segment '%s' is not a valid shmrig arena (header)", sl->name);
	init_layouts(sl);
	return 0;
}

/* ---- audit ---- */

struct audit_ctx {
	uint64_t blocks[NCLASS];
	uint64_t remote[NCLASS]; /* REMOTE */
	uint64_t free_blocks[NCLASS];
};

int shmrig__arena_audit(struct seg_local *sl)
{
	struct audit_ctx ctx;
	uint32_t used = atomic_load_explicit(&sl->hdr->next_chunk, memory_order_acquire);

	memset(&ctx, 0, sizeof(ctx));
	if (used > sl->nchunks || (sl->created && used != sl->next_chunk))
		return shmrig__fail(-SHMRIG_ECORRUPT,
				    "audit %s: next_chunk %u (%u chunks, %u ours)", sl->name, used,
				    sl->nchunks, sl->next_chunk);
	for (uint32_t chunk = 0; chunk < used; chunk++) {
		uint32_t cp1 = atomic_load_explicit(&sl->hdr->chunks[chunk].class_plus1,
						    memory_order_acquire);
		const struct layout *l;

		if (cp1 > NCLASS || (sl->created && cp1 != sl->classes[chunk]))
			return shmrig__fail(-SHMRIG_ECORRUPT, "audit %s: chunk %u has class %u",
					    sl->name, chunk, cp1);
		if (!cp1)
			continue;
		l = chunk_layout(sl, chunk, cp1 - 1);
		ctx.blocks[cp1 - 1] += l->nblocks;
		for (uint32_t slot = 0; slot < l->nblocks; slot++) {
			struct desc *d = id_desc(sl, block_id(chunk, slot), cp1 - 1);
			uint64_t w = atomic_load_explicit(&d->word, memory_order_acquire);
			unsigned st = word_state(w);

			if (st >= ST_COUNT || word_unclaimed(w) > word_refs(w) ||
			    (st == ST_HANDED) != (word_unclaimed(w) > 0))
				return shmrig__fail(-SHMRIG_ECORRUPT,
						    "audit %s: block %u.%u word 0x%llx", sl->name,
						    chunk, slot, (unsigned long long)w);
			if (st == ST_FREE)
				ctx.free_blocks[cp1 - 1]++;
			else if (st == ST_REMOTE)
				ctx.remote[cp1 - 1]++;
		}
	}
	for (unsigned c = 0; c < NCLASS; c++) {
		static const struct {
			const char *name;
			unsigned state;
		} lists[] = { { "free", ST_FREE }, { "remote", ST_REMOTE } };

		for (unsigned k = 0; k < 2; k++) {
			uint64_t head = atomic_load_explicit(k ? &sl->hdr->remote[c].head :
								 &sl->hdr->free_list[c].head,
							     memory_order_acquire);
			uint64_t steps = 0;

			for (uint32_t id = (uint32_t)head; id != NIL; steps++) {
				struct desc *d;

				if (!id_valid(sl, id, c) || steps >= ctx.blocks[c])
					return shmrig__fail(-SHMRIG_ECORRUPT,
							    "audit %s: class %u %s list is broken "
							    "at %u (step %llu)",
							    sl->name, c, lists[k].name, id,
							    (unsigned long long)steps);
				d = id_desc(sl, id, c);
				if (word_state(
					    atomic_load_explicit(&d->word, memory_order_acquire)) !=
				    lists[k].state)
					return shmrig__fail(-SHMRIG_ECORRUPT,
							    "audit %s: class %u %s list holds a "
							    "block in another state",
							    sl->name, c, lists[k].name);
				id = atomic_load_explicit(&d->next_free, memory_order_relaxed);
			}
			/* Every free block is on the free list; a REMOTE block may be
			 * on none while its pusher is being reaped. */
			if (!k && steps != ctx.free_blocks[c])
				return shmrig__fail(-SHMRIG_ECORRUPT,
						    "audit %s: class %u has %llu free blocks, %llu "
						    "on its free list",
						    sl->name, c,
						    (unsigned long long)ctx.free_blocks[c],
						    (unsigned long long)steps);
			if (k && steps > ctx.remote[c])
				return shmrig__fail(-SHMRIG_ECORRUPT,
						    "audit %s: class %u remote list is longer "
						    "than its remote blocks",
						    sl->name, c);
		}
	}
	return 0;
}
