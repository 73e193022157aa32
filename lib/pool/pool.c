/* SPDX-License-Identifier: MIT */
/*
 * pool: the front end. The handle, the table of mapped segments, refs and
 * what a ref may do: alloc, free, retain, attach, transfer, claim, subref,
 * slab. Arenas are in pool_arena.c, large blocks in pool_large.c, the walks
 * over every block in pool_walk.c; every shared layout in pool_layout.h.
 *
 * A block's life: LIVE (allocated, owner = us) --transfer--> HANDED (owner =
 * the receiver, its references not claimed yet) --claim at decode--> LIVE
 * (owner = the receiver) --last free--> CACHED/FREE (creator) or REMOTE
 * (anyone else, until the creator collects it). Each arrow is one atomic
 * update of the descriptor word; a death between an arrow and the owner
 * store that follows it leaves the block owned by a dead process, which
 * reap() returns.
 */
#include "pool/pool_internal.h"
#include "pool/ref_check.h"

#include <errno.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define DEFAULT_ARENA_SIZE ((size_t)64 << 20)
#define DEFAULT_MAX_BYTES ((size_t)1 << 30)

_Thread_local char shmrig__thread_mark SHMRIG__TLS_FAST;

void shmrig__pool_enter_locked(shmrig_pool *pool)
{
	shmrig__lock_take(&pool->lock);
	if (SHMRIG_UNLIKELY(!atomic_load_explicit(&pool->shared, memory_order_relaxed))) {
		atomic_store_explicit(&pool->shared, true, memory_order_relaxed);
		shmrig__membarrier();
		while (atomic_load_explicit(&pool->busy, memory_order_acquire))
			shmrig__cpu_relax();
	}
}

#if SHMRIG_DEATH_POINTS
void shmrig__death_point(const char *name)
{
	const char *want = getenv("SHMRIG_DEATH_POINT");

	if (want && strcmp(want, name) == 0)
		raise(SIGKILL);
}
#endif

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
		if (strcmp(sl->name, name) == 0)
			return sl;
	return NULL;
}

int shmrig__pool_seg_span(shmrig_pool *pool, const char *name, void **base, size_t *size)
{
	struct seg_local *sl;

	pool_enter(pool);
	sl = lookup(pool, name);
	if (sl) {
		*base = sl->base;
		*size = sl->size;
	}
	pool_leave(pool);
	return sl ? 0 : -ENOENT;
}

void shmrig__pool_insert(shmrig_pool *pool, struct seg_local *sl)
{
	unsigned h;

	sl->name = shmrig_segment_name(sl->seg);
	sl->name_len = strlen(sl->name);
	memset(sl->ref_name, 0, sizeof(sl->ref_name));
	memcpy(sl->ref_name, sl->name, sl->name_len); /* < SHMRIG_NAME_MAX: names are */
	h = name_hash(sl->name);
	sl->hash_next = pool->buckets[h];
	pool->buckets[h] = sl;
	sl->next = pool->segs;
	pool->segs = sl;
}

static void remove_seg(shmrig_pool *pool, struct seg_local *sl)
{
	struct seg_local **pp = &pool->buckets[name_hash(sl->name)];

	if (pool->last[1] == sl)
		pool->last[1] = NULL;
	if (pool->last[0] == sl) {
		pool->last[0] = pool->last[1];
		pool->last[1] = NULL;
	}
	for (unsigned c = 0; c < NCLASS; c++)
		if (pool->hot[c] == sl)
			pool->hot[c] = NULL;
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

/* Unmap and forget a segment, unlinking it if we created it. */
static void forget_seg(shmrig_pool *pool, struct seg_local *sl, bool unlink)
{
	remove_seg(pool, sl);
	if (sl->created)
		pool->created_bytes -= sl->size;
	/* best effort: a name already gone (swept) or not removable is sweep's business */
	if (unlink)
		(void)!shmrig_segment_unlink(sl->seg);
	shmrig_segment_close(sl->seg);
	free(sl->cache);
	free(sl);
}

void shmrig__pool_drop_seg(shmrig_pool *pool, struct seg_local *sl)
{
	forget_seg(pool, sl, sl->created);
}

/* The fields of a mapped segment's view that the segment itself gives. */
static void view_seg(shmrig_pool *pool, struct seg_local *sl)
{
	sl->base = shmrig_segment_base(sl->seg);
	sl->size = shmrig_segment_size(sl->seg);
	sl->name = shmrig_segment_name(sl->seg);
	sl->name_len = strlen(sl->name);
	sl->self = pool->self;
}

int shmrig__pool_create_seg(shmrig_pool *pool, size_t size, char role, struct seg_local **out)
{
	struct shmrig_segment_opts so = SHMRIG_SIZED(struct shmrig_segment_opts);
	struct seg_local *sl = calloc(1, sizeof(*sl));
	int ret;

	so.flags = (pool->flags & SHMRIG_POOL_BIND_NODE) ? SHMRIG_SEG_BIND_NODE : 0;
	so.bytes = size;
	so.prefix = pool->prefix;
	so.topo = pool->topo;
	so.backing = pool->backing;
	so.numa_node = pool->numa_node;
	so.role = (uint32_t)role;
	if (!sl)
		return shmrig__fail(-ENOMEM, "pool: out of memory");
	ret = shmrig_segment_create(&so, &sl->seg);
	if (ret) {
		free(sl);
		return ret;
	}
	view_seg(pool, sl);
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

/* Errors of an attach that will not change if we try the same name again. */
static bool attach_error_lasts(int err)
{
	return err == -ENOENT || err == -SHMRIG_ECORRUPT || err == -EINVAL || err == -EXDEV ||
	       err == -EACCES;
}

/*
 * Map a segment a ref names. Its header is checked before the body is
 * populated: a name from a peer (a sparse 1 GiB file with our prefix) costs
 * nothing but the header's page until it is known to be one of ours.
 */
static int map_seg(shmrig_pool *pool, const char *name, bool populate, struct seg_local **out)
{
	struct seg_local *sl = calloc(1, sizeof(*sl));
	int ret;

	if (!sl)
		return shmrig__fail(-ENOMEM, "pool: out of memory");
	ret = shmrig__segment_attach_lazy(pool->prefix, name, &sl->seg);
	if (ret) {
		free(sl);
		return ret;
	}
	view_seg(pool, sl);
	if (shmrig_segment_role(sl->seg) == ROLE_LARGE)
		ret = shmrig__large_check(sl, pool->max_bytes);
	else if (shmrig_segment_role(sl->seg) == ROLE_ARENA)
		ret = shmrig__arena_check(sl);
	else
		ret = shmrig__fail(-SHMRIG_ECORRUPT, "segment '%s' is not a pool segment", name);
	if (!ret && populate)
		ret = shmrig__segment_populate(sl->seg);
	if (ret) {
		shmrig__pool_unpeek_seg(sl);
		return ret;
	}
	*out = sl;
	return 0;
}

int shmrig__pool_peek_seg(shmrig_pool *pool, const char *name, struct seg_local **out)
{
	return map_seg(pool, name, false, out);
}

void shmrig__pool_unpeek_seg(struct seg_local *sl)
{
	shmrig_segment_close(sl->seg);
	free(sl);
}

static int attach_seg(shmrig_pool *pool, const char *name, struct seg_local **out)
{
	struct seg_local *sl = lookup(pool, name);
	int ret;

	if (sl) {
		*out = sl;
		return 0;
	}
	for (unsigned i = 0; i < sizeof(pool->bad) / sizeof(pool->bad[0]); i++)
		if (pool->bad[i].err && strcmp(name, pool->bad[i].name) == 0)
			return shmrig__fail(pool->bad[i].err,
					    "segment '%s' failed to attach before: %s", name,
					    shmrig_strerror(pool->bad[i].err));
	shmrig__large_prune_foreign(pool);
	ret = map_seg(pool, name, true, &sl);
	if (ret) {
		if (attach_error_lasts(ret)) {
			unsigned i = pool->next_bad++ % (sizeof(pool->bad) / sizeof(pool->bad[0]));

			snprintf(pool->bad[i].name, sizeof(pool->bad[i].name), "%s", name);
			pool->bad[i].err = ret;
		}
		return ret;
	}
	shmrig__pool_insert(pool, sl);
	*out = sl;
	return 0;
}

/*
 * The steps of alloc and free, inlined into every caller whatever the
 * compiler's estimate: called, each saved and restored registers and passed
 * its block through memory. pool_alloc_free (scripts/perf-gate) went from 472
 * to 396 instructions, pool/alloc_free/64 from 20.8 to 16.8 ns. Their callers
 * set `word` to 0 first: inlined, gcc -O2 cannot tell that it is read only
 * after resolve() set it (-Wmaybe-uninitialized).
 */
#define HOT static inline __attribute__((always_inline))

/* ---- refs ---- */

/* Does the ref name segment sl? Its name field equal to sl's terminated name.
 * Refs we filled are zero-padded (ref_name): one inlined compare of the whole
 * field, no call; any other (bytes after the terminator) takes memcmp. */
static inline bool names_equal(const struct shmrig_ref *ref, const struct seg_local *sl)
{
	_Static_assert(sizeof(ref->name) == 64 && sizeof(sl->ref_name) == 64, "four 16-byte words");
#ifdef __SSE2__
	/* 16 bytes a step, unrolled: at -O2 (the default build) gcc unrolls
	 * no loop here, and the loop below took 34 instructions a resolve */
#define NAME_XOR(i)                                                        \
	_mm_xor_si128(_mm_loadu_si128((const __m128i *)(ref->name + (i))), \
		      _mm_loadu_si128((const __m128i *)(sl->ref_name + (i))))
	__m128i diff = _mm_or_si128(_mm_or_si128(NAME_XOR(0), NAME_XOR(16)),
				    _mm_or_si128(NAME_XOR(32), NAME_XOR(48)));
#undef NAME_XOR

	return _mm_movemask_epi8(_mm_cmpeq_epi8(diff, _mm_setzero_si128())) == 0xffff;
#else
	uint64_t diff = 0;

	for (size_t i = 0; i < sizeof(ref->name); i += sizeof(uint64_t)) {
		uint64_t a, b;

		memcpy(&a, ref->name + i, sizeof(a));
		memcpy(&b, sl->ref_name + i, sizeof(b));
		diff |= a ^ b;
	}
	return !diff;
#endif
}

static inline bool names_seg(const struct shmrig_ref *ref, const struct seg_local *sl)
{
	return names_equal(ref, sl) || memcmp(ref->name, sl->name, sl->name_len + 1) == 0;
}

/* Validate a ref and find its block, live (or handed over) with the ref's generation. */
HOT int resolve(shmrig_pool *pool, const struct shmrig_ref *ref, struct block *b, uint64_t *word)
{
	struct seg_local *sl = pool->last[0];
	unsigned st;
	int ret;

	if (!ref)
		return shmrig__fail(-EINVAL, "ref is NULL");
	/* Most refs name a segment one of the last two named: equal to its
	 * (terminated) name, this one is terminated too; no lookup. */
	if (sl && names_seg(ref, sl)) {
		ret = shmrig__ref_fields_check(ref);
		if (ret)
			return ret;
	} else {
		sl = pool->last[1];
		if (sl && names_seg(ref, sl)) {
			ret = shmrig__ref_fields_check(ref);
		} else {
			ret = shmrig__ref_check(ref);
			if (!ret)
				ret = attach_seg(pool, ref->name, &sl);
		}
		if (ret)
			return ret;
		pool->last[1] = pool->last[0];
		pool->last[0] = sl;
	}
	ret = sl->large ? shmrig__large_locate(sl, ref, b) : shmrig__arena_locate(sl, ref, b);
	if (ret)
		return ret;
	*word = atomic_load_explicit(&b->desc->word, memory_order_acquire);
	if (word_gen(*word) != ref->generation)
		return shmrig__fail(-SHMRIG_ESTALE,
				    "ref '%s' offset %llu: generation %u, the block is at %u",
				    ref->name, (unsigned long long)ref->offset, ref->generation,
				    word_gen(*word));
	st = word_state(*word);
	if (st != ST_LIVE && st != ST_HANDED)
		return shmrig__fail(-SHMRIG_ENOTLIVE,
				    "ref '%s' offset %llu: block is not allocated", ref->name,
				    (unsigned long long)ref->offset);
	return 0;
}

/* resolve(), and the block must be ours: what free, retain, transfer and claim need. */
HOT int resolve_owned(shmrig_pool *pool, const struct shmrig_ref *ref, struct block *b,
		      uint64_t *word)
{
	int ret = resolve(pool, ref, b, word);
	uint64_t owner;

	if (ret)
		return ret;
	owner = atomic_load_explicit(&b->desc->owner, memory_order_acquire);
	if (owner != pool->self)
		return shmrig__fail(-EPERM, "ref '%s' offset %llu: block is owned by pid %d",
				    ref->name, (unsigned long long)ref->offset,
				    (int)shmrig__procid_pid(owner));
	return 0;
}

/* resolve_owned(), and one of the references must be ours to use: not one
 * handed to us that our decode has not claimed. */
HOT int resolve_usable(shmrig_pool *pool, const struct shmrig_ref *ref, struct block *b,
		       uint64_t *word)
{
	int ret = resolve_owned(pool, ref, b, word);

	if (ret)
		return ret;
	if (word_refs(*word) <= word_unclaimed(*word))
		return shmrig__fail(-EBUSY,
				    "ref '%s' offset %llu: the block was handed to us and is not "
				    "claimed yet (decode its frame first)",
				    ref->name, (unsigned long long)ref->offset);
	return 0;
}

/* ---- pool ---- */

int shmrig__pool_check(shmrig_pool *pool)
{
	if (!pool)
		return shmrig__fail(-EINVAL, "pool is NULL");
	if (SHMRIG_UNLIKELY(pool->fork_epoch != shmrig__fork_epoch()))
		return shmrig__fail(-SHMRIG_EFORK,
				    "pool handle was inherited through fork: open a new pool");
	return 0;
}

int shmrig_pool_open(const struct shmrig_pool_opts *user_opts, shmrig_pool **out)
{
	struct shmrig_pool_opts local = SHMRIG_SIZED(struct shmrig_pool_opts);
	const struct shmrig_pool_opts *opts = &local;
	shmrig__procid self;
	shmrig_pool *pool;
	const char *prefix;
	int ret;

	if (!out)
		return shmrig__fail(-EINVAL, "pool_open: NULL out");
	if (user_opts) {
		ret = shmrig__sized_in(&local, sizeof(local), user_opts,
				       "pool_open: struct shmrig_pool_opts");
		if (ret)
			return ret;
	}
	if (opts->flags & ~SHMRIG_POOL_FLAGS_ALL)
		return shmrig__fail(-EINVAL, "pool_open: unknown flags 0x%x",
				    opts->flags & ~SHMRIG_POOL_FLAGS_ALL);
	if (opts->backing < SHMRIG_BACKING_AUTO || opts->backing > SHMRIG_BACKING_PLAIN)
		return shmrig__fail(-EINVAL, "pool_open: unknown backing %d", opts->backing);
	/* The environment's value is checked by options.c (a bad one warns). */
	if (opts->arena_size > MAX_CHUNKS * CHUNK)
		return shmrig__fail(-EINVAL, "pool_open: arena_size %zu is above 1 GiB",
				    opts->arena_size);
	prefix = shmrig__option_string(opts->prefix, "SHMRIG_PREFIX", SHMRIG_DEFAULT_PREFIX);
	ret = shmrig__check_prefix(prefix);
	if (ret)
		return ret;
	/* Our identity goes into every block we own: without it, no pool. */
	ret = shmrig__self(&self);
	if (ret)
		return shmrig__fail(ret, "pool_open: this process's identity: %s",
				    shmrig_strerror(ret));
	if ((opts->flags & SHMRIG_POOL_BIND_NODE) &&
	    !shmrig_topo_node_exists(opts->topo ? opts->topo : shmrig_topo_system(),
				     opts->numa_node))
		return shmrig__fail(-EINVAL, "pool_open: no NUMA node %d", opts->numa_node);
	pool = calloc(1, sizeof(*pool));
	if (!pool)
		return shmrig__fail(-ENOMEM, "pool_open: out of memory");
	pool->fork_epoch = shmrig__fork_epoch();
	pool->self = self;
	pool->opener = &shmrig__thread_mark;
	pool->shared = shmrig__membarrier_register() != 0;
	snprintf(pool->prefix, sizeof(pool->prefix), "%s", prefix);
	pool->arena_size = round_up(shmrig__option_size(opts->arena_size, "SHMRIG_ARENA_SIZE",
							DEFAULT_ARENA_SIZE, MAX_CHUNKS * CHUNK),
				    CHUNK);
	pool->max_bytes = shmrig__option_size(opts->max_bytes, "SHMRIG_POOL_MAX", DEFAULT_MAX_BYTES,
					      SIZE_MAX);
	pool->backing = opts->backing;
	pool->numa_node = opts->numa_node;
	pool->flags = opts->flags;
	pool->topo = opts->topo;
	pool->last_backing = (enum shmrig_backing)opts->backing;
	pool->last_node = -1;
	for (unsigned i = 0; i < sizeof(pool->targets) / sizeof(pool->targets[0]); i++)
		pool->targets[i].pidfd = -1;
	*out = pool;
	return 0;
}

/* -ENOMEM at the pool's limit, in words: the class, the limit, and which
 * classes hold the chunks (none of them empty). */
__attribute__((cold, noinline)) static int no_room(shmrig_pool *pool, unsigned c, size_t size)
{
	uint32_t counts[NCLASS] = { 0 };
	char held[NCLASS * 24] = "";
	size_t len = 0;

	for (struct seg_local *sl = pool->segs; sl; sl = sl->next)
		if (sl->created && !sl->large)
			shmrig__arena_count_chunks(sl, counts);
	for (unsigned k = 0; k < NCLASS && len < sizeof(held); k++) {
		if (!counts[k])
			continue;
		len += (size_t)snprintf(held + len, sizeof(held) - len, "%s%zu B x%u",
					len ? ", " : "", class_size(k), counts[k]);
	}
	if (!len)
		return shmrig__fail(-ENOMEM,
				    "pool: no room for a %zu-byte value: class %u (%zu-byte blocks) "
				    "needs an arena, and a new %zu-byte arena would pass the pool's "
				    "limit of %zu bytes (max_bytes, $SHMRIG_POOL_MAX; %zu in use)",
				    size, c, class_size(c), pool->arena_size, pool->max_bytes,
				    pool->created_bytes);
	return shmrig__fail(-ENOMEM,
			    "pool: no room for a %zu-byte value: class %u (%zu-byte blocks) has "
			    "no free block and no chunk is empty (chunks by class: %s), and a "
			    "new %zu-byte arena would pass the pool's limit of %zu bytes "
			    "(max_bytes, $SHMRIG_POOL_MAX; %zu in use)",
			    size, c, class_size(c), held, pool->arena_size, pool->max_bytes,
			    pool->created_bytes);
}

/*
 * No arena of ours had a block of class c: an empty chunk of another class
 * goes to it before the pool grows (so that what the pool holds follows what
 * is live), else a new arena. 0 with *out and *id, or -errno.
 */
__attribute__((noinline)) static int class_grow(shmrig_pool *pool, unsigned c, size_t size,
						struct seg_local **out, uint32_t *id)
{
	struct seg_local *sl;
	int ret;

	for (sl = pool->segs; sl; sl = sl->next)
		if (sl->created && !sl->large && shmrig__arena_reclaim(sl, c) &&
		    !shmrig__arena_take(sl, c, id)) {
			*out = sl;
			return 0;
		}
	ret = shmrig__arena_new(pool, &sl);
	if (ret == -ENOMEM && pool->created_bytes + pool->arena_size > pool->max_bytes)
		return no_room(pool, c, size);
	if (ret)
		return ret;
	if (shmrig__arena_take(sl, c, id))
		return shmrig__fail(-ENOMEM, "pool: a new arena has no room for a %zu-byte block",
				    size);
	*out = sl;
	return 0;
}

/*
 * A block of class c from any arena of ours, or a new one: 0 with *out and
 * *id, or -errno. The arena it came from is the class's hot one from now on.
 */
__attribute__((noinline)) static int class_take(shmrig_pool *pool, unsigned c, size_t size,
						struct seg_local **out, uint32_t *id)
{
	struct seg_local *sl;
	int ret, corrupt = 0;

	for (sl = pool->segs; sl; sl = sl->next) {
		if (!sl->created || sl->large)
			continue;
		ret = shmrig__arena_take(sl, c, id);
		if (!ret)
			goto found;
		if (ret != -ENOSPC)
			corrupt = ret;
	}
	/* A corrupt list is said once, by the call that found it. */
	if (corrupt)
		return corrupt;
	ret = class_grow(pool, c, size, &sl, id);
	if (ret)
		return ret;
found:
	pool->hot[c] = sl;
	*out = sl;
	return 0;
}

HOT int class_alloc(shmrig_pool *pool, size_t size, uint32_t flags, uint32_t tag,
		    struct shmrig_ref *ref, void **data)
{
	unsigned c = class_of(size);
	struct seg_local *sl;
	uint32_t id;

	if (c == NCLASS)
		return shmrig__large_alloc(pool, size, flags, tag, ref, data);
	/* The usual case: the cache of the arena the last block came from, in
	 * straight-line code (the walk over the segments made gcc -O2 shuffle a
	 * dozen registers around it on every alloc). */
	sl = pool->hot[c];
	if (!SHMRIG_LIKELY(sl && shmrig__arena_take_cached(sl, c, &id))) {
		/* their own variables: sl's and id's addresses stay out of the usual path */
		struct seg_local *taken_sl;
		uint32_t taken_id;
		int ret = class_take(pool, c, size, &taken_sl, &taken_id);

		if (ret)
			return ret;
		sl = taken_sl;
		id = taken_id;
	}
	DEATH_POINT("alloc"); /* taken from the cache, not yet ours in the descriptor */
	shmrig__arena_give(sl, c, id, size, tag, flags, ref, data);
	return 0;
}

/* Return a block whose last reference is gone. */
HOT void release_block(shmrig_pool *pool, struct block *b, uint64_t word)
{
	struct seg_local *sl = b->sl;

	if (sl->large) {
		shmrig__large_release(pool, b, word);
		return;
	}
	shmrig__arena_release(sl, b, word, pool->run);
	/* The creator closed its pool and left the arena to its last owner: if
	 * that was us, nobody needs the name any more. */
	if (!sl->created && atomic_load_explicit(&sl->hdr->closed, memory_order_acquire)) {
		struct shmrig__life_cache lives;

		shmrig__life_cache_init(&lives);
		if (!shmrig__seg_held(sl, &lives, 0)) /* best effort, as in forget_seg */
			(void)!shmrig_segment_unlink(sl->seg);
	}
}

/* Drop one of our references to a resolved, usable block. */
HOT int unref(shmrig_pool *pool, struct block *b, uint64_t word)
{
	uint32_t refs = word_refs(word);

	if (refs > 1) {
		atomic_store_explicit(&b->desc->word,
				      word_make(word_gen(word), refs - 1, word_unclaimed(word),
						word_state(word)),
				      memory_order_release);
		if (b->sl->large && !b->sl->created && b->sl->held)
			b->sl->held--;
		return 0;
	}
	release_block(pool, b, word);
	return 0;
}

static int slab_alloc(shmrig_pool *pool, size_t size, uint32_t flags, struct shmrig_ref *ref,
		      void **data);

#if SHMRIG_PROOF_SLOWDOWN
/* The spins of the proof build: $SHMRIG_PROOF_SPINS, read once (0 to 1000000; anything
 * else is 0). One binary serves as A (0) and B (K) of scripts/compare --proof, so the
 * two differ in nothing but the spins, not in code layout. */
static unsigned long proof_spins(void)
{
	static _Atomic long spins = -1;
	long n = atomic_load_explicit(&spins, memory_order_relaxed);

	if (n < 0) {
		const char *env = getenv("SHMRIG_PROOF_SPINS");
		char *end;

		n = env ? strtol(env, &end, 10) : 0;
		if (!env || *end || n < 0 || n > 1000000)
			n = 0;
		atomic_store_explicit(&spins, n, memory_order_relaxed);
	}
	return (unsigned long)n;
}
#endif

int shmrig_pool_alloc(shmrig_pool *pool, size_t size, uint32_t flags, uint32_t tag,
		      struct shmrig_ref *ref, void **data)
{
	int ret = shmrig__pool_check(pool);

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
#if SHMRIG_PROOF_SLOWDOWN
	/* -Dproof_slowdown=true: the deliberate regression scripts/compare must flag. */
	for (volatile unsigned long spin = 0, n = proof_spins(); spin < n; spin++)
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

int shmrig__pool_alloc_handed(shmrig_pool *pool, size_t size, uint32_t flags, uint32_t tag,
			      struct shmrig_ref *ref, void **data)
{
	int ret = shmrig__pool_check(pool);

	if (ret)
		return ret;
	if (size > pool->max_bytes)
		return shmrig__fail(-ENOMEM,
				    "pool_alloc: %zu bytes is more than the pool's limit %zu", size,
				    pool->max_bytes);
	/* Never from the slab: a frame's blocks are handed over whole. */
	pool_enter(pool);
	ret = class_alloc(pool, size, flags | SHMRIG__ALLOC_HANDED, tag, ref, data);
	pool_leave(pool);
	return ret;
}

/* gcc 12 -O2 warns that `word` may be read uninitialized where free_one is
 * inlined: it cannot tell that resolve_usable() sets it whenever it returns 0
 * (its errors come back through shmrig__fail). Setting it first would cost
 * 11 of pool_alloc_free's 396 instructions. */
#if !defined(__clang__) /* clang has no such warning, and refuses the name */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
HOT int free_one(shmrig_pool *pool, const struct shmrig_ref *ref)
{
	struct block b;
	uint64_t word;
	int ret = resolve_usable(pool, ref, &b, &word);

	DEATH_POINT("free");
	return ret ? ret : unref(pool, &b, word);
}

/*
 * shmrig_pool_free's usual case in straight-line code, nothing out of line in
 * it: a ref naming, byte for byte, the arena of ours a ref named last; its
 * block live, ours, with one reference; its class's cache with room. Every
 * check of free_one() on that path, none skipped; any other case, and every
 * error, goes free_one()'s whole way (which checks all again and says what
 * was wrong). true: freed.
 */
static inline bool free_fast(shmrig_pool *pool, const struct shmrig_ref *ref)
{
	struct seg_local *sl = pool->last[0];
	struct block b;
	uint64_t word;
	uint32_t flags;

	if (!ref || !sl || !sl->created || sl->large || !names_equal(ref, sl))
		return false;
	memcpy(&flags, &ref->temporary, sizeof(flags)); /* shmrig__ref_fields_check */
	if (flags > 1 || ref->content_size > ref->size || ref->offset % SHMRIG_POOL_MIN_BLOCK ||
	    !shmrig__arena_place(sl, ref, &b))
		return false;
	word = atomic_load_explicit(&b.desc->word, memory_order_acquire);
	if (word_gen(word) != ref->generation || word_state(word) != ST_LIVE ||
	    word_refs(word) != 1 || word_unclaimed(word) != 0 ||
	    atomic_load_explicit(&b.desc->owner, memory_order_acquire) != pool->self ||
	    sl->ncache[b.cls] >= CACHE_CAP)
		return false;
	DEATH_POINT("free");
	shmrig__arena_release_cached(sl, b.desc, b.cls, b.id, word);
	return true;
}

__attribute__((noinline)) static int free_slow(shmrig_pool *pool, const struct shmrig_ref *ref)
{
	return free_one(pool, ref);
}

int shmrig_pool_free(shmrig_pool *pool, const struct shmrig_ref *ref)
{
	int ret = shmrig__pool_check(pool);

	if (ret)
		return ret;
	pool_enter(pool);
	ret = free_fast(pool, ref) ? 0 : free_slow(pool, ref);
	pool_leave(pool);
	return ret;
}

int shmrig_pool_free_n(shmrig_pool *pool, const struct shmrig_ref *refs, uint32_t n)
{
	struct remote_run run; /* ids: only the first run.n are read */
	char why[256];
	int first = shmrig__pool_check(pool);

	if (first)
		return first;
	if (n && !refs)
		return shmrig__fail(-EINVAL, "pool_free_n: refs is NULL");
	run.n = 0;
	pool_enter(pool);
	pool->run = &run;
	/* Every ref, even after one failed, as n calls of shmrig_pool_free. */
	for (uint32_t i = 0; i < n; i++) {
		int ret = free_one(pool, &refs[i]);

		if (ret && !first) {
			first = ret;
			snprintf(why, sizeof(why), "%s", shmrig_last_error());
		}
	}
	DEATH_POINT("remote_run"); /* the run's blocks REMOTE and ours, on no list */
	shmrig__arena_run_flush(&run);
	pool->run = NULL;
	pool_leave(pool);
	return first ? shmrig__fail(first, "%s", why) : 0;
}
#if !defined(__clang__)
#pragma GCC diagnostic pop
#endif

/* One more reference on a resolved live block. */
static int take_ref(const struct block *b, uint64_t word, const char *name)
{
	if (word_refs(word) >= REF_MAX)
		return shmrig__fail(-EOVERFLOW, "ref '%s': too many references", name);
	atomic_store_explicit(&b->desc->word,
			      word_make(word_gen(word), word_refs(word) + 1, word_unclaimed(word),
					word_state(word)),
			      memory_order_release);
	if (b->sl->large && !b->sl->created)
		b->sl->held++;
	return 0;
}

int shmrig_pool_retain(shmrig_pool *pool, const struct shmrig_ref *ref)
{
	struct block b;
	uint64_t word = 0;
	int ret = shmrig__pool_check(pool);

	if (ret)
		return ret;
	pool_enter(pool);
	ret = resolve_usable(pool, ref, &b, &word);
	if (!ret)
		ret = take_ref(&b, word, ref->name);
	pool_leave(pool);
	return ret;
}

int shmrig_pool_attach(shmrig_pool *pool, const struct shmrig_ref *ref, void **data)
{
	struct block b;
	uint64_t word = 0;
	int ret = shmrig__pool_check(pool);

	if (ret)
		return ret;
	if (!data)
		return shmrig__fail(-EINVAL, "pool_attach: NULL data");
	pool_enter(pool);
	ret = resolve(pool, ref, &b, &word);
	if (!ret)
		*data = b.sl->base + ref->offset;
	pool_leave(pool);
	return ret;
}

/* ---- handing blocks over, and claiming them ---- */

static int transfer_locked(shmrig_pool *pool, const struct shmrig_ref *refs, uint32_t n,
			   shmrig__procid target)
{
	for (uint32_t i = 0; i < n; i++) {
		const struct shmrig_ref *ref = &refs[i];
		struct block b;
		uint64_t word = 0, owner;
		int ret = resolve(pool, ref, &b, &word);

		if (ret)
			return ret;
		owner = atomic_load_explicit(&b.desc->owner, memory_order_acquire);
		/* A part of a block (a pack's buffer) whose block went to the
		 * target with another part of this frame is handed over already. */
		if (owner == target && word_state(word) == ST_HANDED)
			continue;
		if (owner != pool->self)
			return shmrig__fail(-EPERM,
					    "ref '%s' offset %llu: block is owned by pid %d",
					    ref->name, (unsigned long long)ref->offset,
					    (int)shmrig__procid_pid(owner));
		if (word_state(word) == ST_HANDED) {
			/* In flight to us (a frame we encoded, or one we relay):
			 * it moves on whole, as long as none of it was claimed. */
			if (word_unclaimed(word) != word_refs(word))
				return shmrig__fail(-EBUSY,
						    "ref '%s' offset %llu: part of the block was "
						    "claimed here: it cannot be sent on",
						    ref->name, (unsigned long long)ref->offset);
			atomic_store_explicit(&b.desc->owner, target, memory_order_release);
			if (b.sl->large && !b.sl->created)
				b.sl->held = 0;
			continue;
		}
		if (pool->slab.open && b.start == pool->slab.ref.offset &&
		    memcmp(b.sl->name, pool->slab.ref.name, b.sl->name_len + 1) == 0)
			return shmrig__fail(-EBUSY,
					    "ref '%s' offset %llu: a part of the open slab: seal it "
					    "before sending its parts",
					    ref->name, (unsigned long long)ref->offset);
		/* Every reference goes with the block, unclaimed: the receiver's
		 * decode claims them, once. The state first: if we die before the
		 * owner store, the block is HANDED and ours, and reap returns it.
		 * Plain stores: nobody else writes a live owner's block. */
		atomic_store_explicit(&b.desc->word,
				      word_make(word_gen(word), word_refs(word), word_refs(word),
						ST_HANDED),
				      memory_order_release);
		DEATH_POINT("transfer");
		atomic_store_explicit(&b.desc->owner, target, memory_order_release);
		if (b.sl->large && !b.sl->created)
			b.sl->held = 0;
	}
	return 0;
}

int shmrig__pool_transfer_refs(shmrig_pool *pool, const struct shmrig_ref *refs, uint32_t n,
			       shmrig__procid target)
{
	int ret = shmrig__pool_check(pool);

	if (ret || n == 0)
		return ret;
	pool_enter(pool);
	ret = transfer_locked(pool, refs, n, target);
	pool_leave(pool);
	return ret;
}

/*
 * The identity of a transfer target named by pid. A pidfd per recent target
 * says, with one poll() and no /proc read, whether that very process still
 * runs (callers that know their peer's identity, channels and sessions, use
 * shmrig__pool_transfer_refs and skip even that).
 */
static int target_id(shmrig_pool *pool, pid_t pid, shmrig__procid *id)
{
	const unsigned n = sizeof(pool->targets) / sizeof(pool->targets[0]);
	struct shmrig__watch *w;
	unsigned slot;
	int ret;

	if (pid <= 0)
		return shmrig__fail(-ESRCH, "pool_transfer: no process %d", (int)pid);
	for (slot = 0; slot < n; slot++) {
		w = &pool->targets[slot];
		if (w->pidfd < 0 || shmrig__procid_pid(w->id) != pid)
			continue;
		if (shmrig__watch_life(w, 0) != SHMRIG__DEAD) {
			*id = w->id;
			return 0;
		}
		shmrig__watch_close(w);
		break;
	}
	w = &pool->targets[pool->next_target++ % n];
	shmrig__watch_close(w);
	ret = shmrig__watch_open(w, pid);
	if (ret == -ESRCH)
		return shmrig__fail(-ESRCH, "pool_transfer: no live process %d", (int)pid);
	if (ret)
		return shmrig__fail(ret, "pool_transfer: process %d: %s", (int)pid,
				    shmrig_strerror(ret));
	*id = w->id;
	if (w->pidfd < 0)
		shmrig__watch_close(w); /* no pidfds here: nothing to keep */
	return 0;
}

int shmrig_pool_transfer(shmrig_pool *pool, const struct shmrig_ref *ref, pid_t pid)
{
	return shmrig__pool_transfer_pid(pool, ref, 1, pid);
}

int shmrig_pool_peer(shmrig_pool *pool, pid_t pid, uint64_t *peer)
{
	int ret = shmrig__pool_check(pool);

	if (ret)
		return ret;
	if (!peer)
		return shmrig__fail(-EINVAL, "pool_peer: NULL peer");
	pool_enter(pool);
	ret = target_id(pool, pid, peer);
	pool_leave(pool);
	return ret;
}

int shmrig_pool_transfer_peer(shmrig_pool *pool, const struct shmrig_ref *ref, uint64_t peer)
{
	return shmrig__pool_transfer_refs(pool, ref, 1, peer);
}

int shmrig__pool_hand_out(shmrig_pool *pool, const struct shmrig_ref *refs, uint32_t n)
{
	return shmrig__pool_transfer_refs(pool, refs, n, pool->self);
}

int shmrig__pool_transfer_pid(shmrig_pool *pool, const struct shmrig_ref *refs, uint32_t n,
			      pid_t pid)
{
	shmrig__procid target;
	int ret = shmrig__pool_check(pool);

	if (ret || n == 0)
		return ret;
	pool_enter(pool);
	ret = target_id(pool, pid, &target);
	if (!ret)
		ret = transfer_locked(pool, refs, n, target);
	pool_leave(pool);
	return ret;
}

/* Claim one reference of one ref (under the pool's lock); *data: its bytes. */
static int claim_one(shmrig_pool *pool, const struct shmrig_ref *ref, void **data)
{
	uint32_t unclaimed;
	struct block b;
	uint64_t word = 0;
	int ret = resolve_owned(pool, ref, &b, &word);

	if (ret)
		return ret;
	unclaimed = word_unclaimed(word);
	if (word_state(word) != ST_HANDED || unclaimed == 0)
		return shmrig__fail(-SHMRIG_ECLAIMED,
				    "ref '%s' offset %llu: every reference to the block was "
				    "claimed already (a frame decoded twice, or a ref to a "
				    "block we hold for another value)",
				    ref->name, (unsigned long long)ref->offset);
	/* A plain store: the pool's lock orders two decodes of one frame in this
	 * process (the second finds no unclaimed reference left), and no other
	 * process writes the word of a block a live process owns (pool_layout.h). */
	atomic_store_explicit(&b.desc->word,
			      word_make(word_gen(word), word_refs(word), unclaimed - 1,
					unclaimed == 1 ? ST_LIVE : ST_HANDED),
			      memory_order_release);
	DEATH_POINT("claim");
	if (b.sl->large && !b.sl->created)
		b.sl->held++;
	*data = b.sl->base + ref->offset;
	return 0;
}

/*
 * Ask for the descriptor lines of a batch of refs, for writing, before the
 * claims read and write them one after another: their transfers from the
 * sender's CPU then overlap instead of following each other. Only refs into
 * an arena of one of the last two segments resolved (no lookup, no attach);
 * any ref the claim would refuse costs at most a useless prefetch here.
 */
static void prefetch_descs(shmrig_pool *pool, const struct shmrig_ref *refs, uint32_t n)
{
	for (uint32_t i = 0; i < n; i++) {
		struct seg_local *sl = pool->last[0];
		struct block b;

		if (!sl || !names_seg(&refs[i], sl))
			sl = pool->last[1];
		if (sl && !sl->large && names_seg(&refs[i], sl) &&
		    shmrig__arena_place(sl, &refs[i], &b))
			__builtin_prefetch(b.desc, 1, 3);
	}
}

int shmrig__pool_claim_refs(shmrig_pool *pool, const struct shmrig_ref *refs, uint32_t n,
			    uint8_t *claimed, void **data)
{
	char why[256];
	int first = shmrig__pool_check(pool);

	if (first)
		return first;
	if (n && !refs)
		return shmrig__fail(-EINVAL, "pool_claim: refs is NULL");
	pool_enter(pool);
	if (n > 1)
		prefetch_descs(pool, refs, n);
	/* Every ref, even after one failed: what was handed to us with a bad
	 * frame is ours, and the caller frees it rather than hold it for ever. */
	for (uint32_t i = 0; i < n; i++) {
		void *p = NULL;
		int ret = claim_one(pool, &refs[i], &p);

		if (!ret && claimed)
			claimed[i] = 1;
		if (!ret && data)
			data[i] = p;
		if (ret && !first) {
			first = ret;
			snprintf(why, sizeof(why), "%s", shmrig_last_error());
		}
	}
	pool_leave(pool);
	return first ? shmrig__fail(first, "%s", why) : 0;
}

int shmrig_pool_claim(shmrig_pool *pool, const struct shmrig_ref *ref)
{
	uint8_t claimed = 0;

	return shmrig__pool_claim_refs(pool, ref, 1, &claimed, NULL);
}

int shmrig_pool_claim_n(shmrig_pool *pool, const struct shmrig_ref *refs, uint32_t n)
{
	return shmrig__pool_claim_refs(pool, refs, n, NULL, NULL);
}

int shmrig__pool_drop(shmrig_pool *pool, const struct shmrig_ref *ref)
{
	int ret = shmrig_pool_claim(pool, ref);

	if (ret == -SHMRIG_ECLAIMED)
		ret = 0; /* ours, claimed already */
	return ret ? ret : shmrig_pool_free(pool, ref);
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
	uint64_t word = 0;
	int ret;

	pool->slab.open = false;
	ret = resolve_usable(pool, &pool->slab.ref, &b, &word);
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
	uint64_t word = 0;
	int ret = resolve_usable(pool, block, &b, &word);

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
	int ret = shmrig__pool_check(pool);

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
	int ret = shmrig__pool_check(pool);

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
	int ret = shmrig__pool_check(pool);

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

int shmrig_pool_info(shmrig_pool *pool, struct shmrig_pool_info *info)
{
	struct shmrig_pool_info local = SHMRIG_SIZED(struct shmrig_pool_info);
	int ret = shmrig__pool_check(pool);

	if (ret)
		return ret;
	if (!info)
		return shmrig__fail(-EINVAL, "pool_info: NULL info");
	pool_enter(pool);
	local.prefix = pool->prefix;
	local.arena_size = pool->arena_size;
	local.max_bytes = pool->max_bytes;
	local.backing = pool->last_backing;
	local.page_size = pool->last_page_size;
	local.numa_node = pool->last_node;
	local.reason = pool->last_reason;
	pool_leave(pool);
	return shmrig__sized_out(info, &local, sizeof(local), "pool_info: struct shmrig_pool_info");
}

/* ---- close ---- */

static void mark_closed(struct seg_local *sl)
{
	atomic_store_explicit(sl->large ? &sl->lhdr->closed : &sl->hdr->closed, 1,
			      memory_order_release);
}

/*
 * Unmap everything. A segment we created goes away unless a process that is
 * not known to be dead holds a block in it (we sent it and exit, say): that
 * one stays, marked closed, for its last owner to unlink (or sweep()).
 */
void shmrig__pool_close_segments(shmrig_pool *pool)
{
	struct shmrig__life_cache lives;

	shmrig__life_cache_init(&lives);
	while (pool->segs) {
		struct seg_local *sl = pool->segs;
		bool unlink = sl->created;

		if (sl->created) {
			mark_closed(sl);
			DEATH_POINT("close");
			unlink = !shmrig__seg_held(sl, &lives, pool->self);
		}
		forget_seg(pool, sl, unlink);
	}
	for (unsigned i = 0; i < sizeof(pool->targets) / sizeof(pool->targets[0]); i++)
		shmrig__watch_close(&pool->targets[i]);
}
