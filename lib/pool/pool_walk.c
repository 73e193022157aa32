/* SPDX-License-Identifier: MIT */
/*
 * pool_walk: everything that looks at every block: stats, for_each_live,
 * owner stats, reap, audit, the leak report at close, sweep.
 *
 * Reap asks about each owner once per call (a life cache), never reclaims on
 * "unknown", and returns a dead owner's block by the same two steps a remote
 * free takes (REMOTE by one CAS, then a push), so that a reaper that dies
 * half-way leaves what the next reap finds.
 */
#include "pool/pool_internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void shmrig__walk_blocks(struct seg_local *sl, block_fn fn, void *arg)
{
	uint32_t used;

	if (sl->large) {
		if (word_state(atomic_load_explicit(&sl->lhdr->desc.word, memory_order_acquire)) !=
		    ST_FREE)
			fn(arg, sl, &sl->lhdr->desc, NCLASS, 0, 0);
		return;
	}
	used = chunks_used(sl);
	for (uint32_t chunk = 0; chunk < used; chunk++) {
		unsigned c = chunk_class(sl, chunk);
		const struct layout *l;

		if (c == NCLASS)
			continue;
		l = chunk_layout(sl, chunk, c);
		for (uint32_t slot = 0; slot < l->nblocks; slot++) {
			uint32_t id = block_id(chunk, slot);
			struct desc *d = id_desc(sl, id, c);

			/* a stamp of another class: the chunk changed class while
			 * we walk it (or a peer wrote its class): not this block */
			if (word_state(atomic_load_explicit(&d->word, memory_order_acquire)) !=
				    ST_FREE &&
			    desc_class(d->content_size) == c + 1)
				fn(arg, sl, d, c, id, id_offset(sl, id, c));
		}
	}
}

static uint64_t block_capacity(const struct seg_local *sl, unsigned c)
{
	return c == NCLASS ? sl->capacity : class_size(c);
}

static void fill_info(struct shmrig_block_info *info, struct seg_local *sl, struct desc *d,
		      unsigned c, uint64_t offset)
{
	uint64_t w = atomic_load_explicit(&d->word, memory_order_acquire);
	uint64_t content = desc_bytes(d->content_size), capacity = block_capacity(sl, c);

	memset(info, 0, sizeof(*info));
	info->size = sizeof(*info);
	memcpy(info->ref.name, sl->name, sl->name_len + 1);
	info->ref.offset = offset;
	info->ref.size = capacity;
	/* a peer's word: capped, so a report never claims more than the block */
	info->ref.content_size = content < capacity ? content : capacity;
	info->ref.generation = word_gen(w);
	info->owner = shmrig__procid_pid(atomic_load_explicit(&d->owner, memory_order_acquire));
	info->tag = d->tag;
	info->refcount = word_refs(w);
}

/* Live for the accounting: allocated, or handed over and not yet claimed. */
static bool counts_live(uint64_t w)
{
	return word_state(w) == ST_LIVE || word_state(w) == ST_HANDED;
}

/* What one walk counts: the pool's totals and each class's (two sized outputs). */
struct walk_stats {
	struct shmrig_pool_stats pool;
	struct shmrig_pool_class_stats classes[NCLASS];
};

static void stats_one(void *arg, struct seg_local *sl, struct desc *d, unsigned c, uint32_t id,
		      uint64_t offset)
{
	struct walk_stats *stats = arg;
	uint64_t content = desc_bytes(d->content_size), capacity = block_capacity(sl, c);

	(void)id, (void)offset;
	if (!counts_live(atomic_load_explicit(&d->word, memory_order_acquire)))
		return;
	if (content > capacity)
		content = capacity;
	stats->pool.live_blocks++;
	stats->pool.live_bytes += content;
	if (c == NCLASS) {
		stats->pool.large_live_blocks++;
		stats->pool.large_live_bytes += content;
	} else {
		stats->classes[c].live_blocks++;
		stats->classes[c].live_bytes += content;
	}
}

static void walk_stats(shmrig_pool *pool, struct walk_stats *stats)
{
	memset(stats, 0, sizeof(*stats));
	stats->pool.size = sizeof(stats->pool);
	for (unsigned c = 0; c < NCLASS; c++) {
		stats->classes[c].size = sizeof(stats->classes[c]);
		stats->classes[c].block_size = (uint32_t)class_size(c);
	}
	pool_enter(pool);
	for (struct seg_local *sl = pool->segs; sl; sl = sl->next) {
		stats->pool.segments++;
		shmrig__walk_blocks(sl, stats_one, stats);
		if (!sl->large && sl->cache)
			for (unsigned c = 0; c < NCLASS; c++)
				stats->pool.cached_blocks += sl->ncache[c];
	}
	stats->pool.created_bytes = pool->created_bytes;
	pool_leave(pool);
}

int shmrig_pool_stats(shmrig_pool *pool, struct shmrig_pool_stats *stats)
{
	static const char what[] = "pool_stats: struct shmrig_pool_stats";
	struct walk_stats local;
	size_t stride;
	int ret = shmrig__pool_check(pool);

	if (ret)
		return ret;
	if (!stats)
		return shmrig__fail(-EINVAL, "pool_stats: NULL stats");
	/* the caller's size first: a bad one costs no walk */
	ret = shmrig__sized_stride(stats, what, &stride);
	if (ret)
		return ret;
	walk_stats(pool, &local);
	return shmrig__sized_out(stats, &local.pool, sizeof(local.pool), what);
}

int shmrig_pool_class_stats(shmrig_pool *pool, struct shmrig_pool_class_stats *out, size_t max)
{
	struct walk_stats local;
	size_t stride;
	int ret = shmrig__pool_check(pool);

	if (ret)
		return ret;
	if (!max)
		return NCLASS;
	if (!out)
		return shmrig__fail(-EINVAL, "pool_class_stats: NULL out");
	ret = shmrig__sized_stride(out, "pool_class_stats: struct shmrig_pool_class_stats",
				   &stride);
	if (ret)
		return ret;
	walk_stats(pool, &local);
	for (size_t c = 0; c < NCLASS && c < max; c++)
		shmrig__sized_put((char *)out + c * stride, stride, &local.classes[c],
				  sizeof(local.classes[c]));
	return NCLASS;
}

/*
 * for_each_live calls its callback outside the pool's critical section (so
 * that the callback may use the pool), a batch at a time: the position between
 * batches is a segment name and a block index, looked up again each time.
 * Segments mapped by a callback are not visited; blocks are visited as they
 * are when their batch is taken.
 */
#define INFO_BATCH 256u

struct batch {
	struct shmrig_block_info info[INFO_BATCH];
	uint32_t n;
};

/* Collect live blocks of sl from index *pos on; false when the batch is full
 * (*pos then names the next block to look at). */
static bool collect_from(struct seg_local *sl, uint64_t *pos, struct batch *batch)
{
	uint32_t used;

	if (sl->large) {
		if (*pos == 0 &&
		    counts_live(atomic_load_explicit(&sl->lhdr->desc.word, memory_order_acquire))) {
			if (batch->n == INFO_BATCH)
				return false;
			fill_info(&batch->info[batch->n++], sl, &sl->lhdr->desc, NCLASS, 0);
		}
		*pos = 1;
		return true;
	}
	used = chunks_used(sl);
	for (; *pos < (uint64_t)used << SLOT_BITS; (*pos)++) {
		uint32_t id = (uint32_t)*pos;
		unsigned c = chunk_class(sl, id_chunk(id));
		struct desc *d;

		if (c == NCLASS || id_slot(id) >= chunk_layout(sl, id_chunk(id), c)->nblocks) {
			*pos = (uint64_t)(id_chunk(id) + 1) << SLOT_BITS;
			(*pos)--; /* the loop's increment */
			continue;
		}
		d = id_desc(sl, id, c);
		if (!counts_live(atomic_load_explicit(&d->word, memory_order_acquire)) ||
		    desc_class(d->content_size) != c + 1)
			continue;
		if (batch->n == INFO_BATCH)
			return false;
		fill_info(&batch->info[batch->n++], sl, d, c, id_offset(sl, id, c));
	}
	return true;
}

int shmrig_pool_for_each_live(shmrig_pool *pool,
			      void (*fn)(void *arg, const struct shmrig_block_info *info),
			      void *arg)
{
	char (*names)[SHMRIG_NAME_MAX] = NULL;
	struct batch *batch;
	size_t nsegs = 0;
	int count = 0, ret = shmrig__pool_check(pool);

	if (ret)
		return ret;
	batch = malloc(sizeof(*batch));
	if (!batch)
		return shmrig__fail(-ENOMEM, "pool_for_each_live: out of memory");
	/* The segments as they are now, by name: a callback may map or unmap
	 * some; each is looked up again for each batch of it. */
	pool_enter(pool);
	for (struct seg_local *sl = pool->segs; sl; sl = sl->next)
		nsegs++;
	names = nsegs ? malloc(nsegs * sizeof(*names)) : NULL;
	if (names) {
		size_t i = 0;

		for (struct seg_local *sl = pool->segs; sl; sl = sl->next)
			memcpy(names[i++], sl->name, sl->name_len + 1);
	}
	pool_leave(pool);
	if (nsegs && !names) {
		free(batch);
		return shmrig__fail(-ENOMEM, "pool_for_each_live: out of memory");
	}
	for (size_t i = 0; i < nsegs; i++) {
		uint64_t pos = 0;
		bool done = false;

		while (!done) {
			struct seg_local *sl;

			batch->n = 0;
			pool_enter(pool);
			for (sl = pool->segs; sl && strcmp(sl->name, names[i]) != 0; sl = sl->next)
				;
			/* gone (a callback freed its last block): nothing more in it */
			done = !sl || collect_from(sl, &pos, batch);
			pool_leave(pool);
			for (uint32_t k = 0; k < batch->n; k++, count++)
				if (fn)
					fn(arg, &batch->info[k]);
		}
	}
	free(names);
	free(batch);
	return count;
}

struct owner_ctx {
	struct shmrig_owner_stats *owners;
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
		ctx->owners[i].size = sizeof(*grown);
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
	size_t stride = 0;
	int ret;

	if (max && !out)
		return shmrig__fail(-EINVAL, "pool_owner_stats: NULL out");
	if (max) {
		ret = shmrig__sized_stride(out, "pool_owner_stats: struct shmrig_owner_stats",
					   &stride);
		if (ret)
			return ret;
	}
	ret = shmrig_pool_for_each_live(pool, owner_one, &ctx);
	if (ret >= 0 && ctx.err)
		ret = shmrig__fail(ctx.err, "pool_owner_stats: out of memory");
	if (ret >= 0 && ctx.count) {
		qsort(ctx.owners, ctx.count, sizeof(*ctx.owners), by_pid);
		for (size_t i = 0; i < ctx.count && i < max; i++)
			shmrig__sized_put((char *)out + i * stride, stride, &ctx.owners[i],
					  sizeof(ctx.owners[i]));
	}
	if (ret >= 0)
		ret = (int)ctx.count;
	free(ctx.owners);
	return ret;
}

/* ---- reap ---- */

struct reap_ctx {
	struct shmrig__life_cache *lives;
	shmrig__procid self;
	struct dead_pushers pushers; /* of the segment being walked */
	int count;
};

static void reap_one(void *arg, struct seg_local *sl, struct desc *d, unsigned c, uint32_t id,
		     uint64_t offset)
{
	struct reap_ctx *ctx = arg;
	uint64_t w = atomic_load_explicit(&d->word, memory_order_acquire);
	shmrig__procid owner = atomic_load_explicit(&d->owner, memory_order_acquire);
	unsigned st = word_state(w);

	(void)offset;
	/* A REMOTE block's owner is its pusher: judged now, in this one walk,
	 * before shmrig__arena_recover takes the remote lists. */
	if (st == ST_REMOTE && sl->created) {
		shmrig__note_pusher(&ctx->pushers, ctx->lives, owner);
		return;
	}
	/* Cached blocks are the creator's; a dead creator's arena goes with sweep. */
	if ((st != ST_LIVE && st != ST_HANDED) || owner == ctx->self ||
	    shmrig__life_cached(ctx->lives, owner) != SHMRIG__DEAD)
		return;
	/* The owner is dead, so nobody but another reaper writes this word: the
	 * CAS makes sure only one of us returns the block. */
	if (!atomic_compare_exchange_strong_explicit(
		    &d->word, &w,
		    word_make(gen_next(word_gen(w)), 0, 0, c == NCLASS ? ST_FREE : ST_REMOTE),
		    memory_order_acq_rel, memory_order_relaxed))
		return;
	ctx->count++;
	if (c == NCLASS)
		return; /* a large segment's creator finds it free */
	atomic_store_explicit(&d->owner, ctx->self, memory_order_release);
	DEATH_POINT("reap");
	shmrig__arena_push_remote(sl, c, &id, 1);
}

int shmrig_pool_reap(shmrig_pool *pool)
{
	struct shmrig__life_cache *lives;
	struct reap_ctx ctx;
	int ret = shmrig__pool_check(pool);

	if (ret)
		return ret;
	lives = malloc(sizeof(*lives));
	if (!lives)
		return shmrig__fail(-ENOMEM, "pool_reap: out of memory");
	shmrig__life_cache_init(lives);
	ctx.lives = lives;
	ctx.self = pool->self;
	ctx.count = 0;
	pool_enter(pool);
	for (struct seg_local *sl = pool->segs; sl; sl = sl->next) {
		ctx.pushers.n = 0;
		shmrig__walk_blocks(sl, reap_one, &ctx);
		/* REMOTE blocks whose pusher died before pushing: returned too */
		ctx.count += shmrig__arena_recover(sl, &ctx.pushers);
	}
	shmrig__large_recycle_all(pool);
	shmrig__large_prune_foreign(pool);
	pool_leave(pool);
	free(lives);
	return ctx.count;
}

struct held_ctx {
	struct shmrig__life_cache *lives;
	shmrig__procid except;
	bool held;
};

static void held_one(void *arg, struct seg_local *sl, struct desc *d, unsigned c, uint32_t id,
		     uint64_t offset)
{
	struct held_ctx *ctx = arg;
	unsigned st = word_state(atomic_load_explicit(&d->word, memory_order_acquire));
	shmrig__procid owner = atomic_load_explicit(&d->owner, memory_order_acquire);

	(void)sl, (void)c, (void)id, (void)offset;
	if (ctx->held || (st != ST_LIVE && st != ST_HANDED) || owner == ctx->except)
		return;
	ctx->held = shmrig__life_cached(ctx->lives, owner) != SHMRIG__DEAD;
}

bool shmrig__seg_held(struct seg_local *sl, struct shmrig__life_cache *lives,
		      shmrig__procid except)
{
	struct held_ctx ctx = { .lives = lives, .except = except };

	shmrig__walk_blocks(sl, held_one, &ctx);
	return ctx.held;
}

/* ---- sweep ---- */

struct sweep_ctx {
	shmrig_pool *pool;
	struct shmrig__life_cache *lives;
};

/* Keep a dead creator's segment while a live process holds a block in it (a
 * frame it has not read yet, say), and when we cannot look (no memory, no fd).
 * One that is no valid pool segment (its creator died making it, before the
 * header was whole) nobody can have attached, so nobody holds a block in it. */
static bool sweep_keep(void *arg, const char *name)
{
	struct sweep_ctx *ctx = arg;
	struct seg_local *sl;
	bool keep;
	int ret = shmrig__pool_peek_seg(ctx->pool, name, &sl);

	if (ret)
		return ret != -SHMRIG_ECORRUPT;
	keep = shmrig__seg_held(sl, ctx->lives, 0);
	shmrig__pool_unpeek_seg(sl);
	return keep;
}

int shmrig_pool_sweep(shmrig_pool *pool)
{
	struct sweep_ctx ctx = { .pool = pool };
	int ret = shmrig__pool_check(pool);

	if (ret)
		return ret;
	ctx.lives = malloc(sizeof(*ctx.lives));
	if (!ctx.lives)
		return shmrig__fail(-ENOMEM, "pool_sweep: out of memory");
	shmrig__life_cache_init(ctx.lives);
	ret = shmrig__segment_sweep(pool->prefix, sweep_keep, &ctx);
	free(ctx.lives);
	return ret;
}

/* ---- audit and close ---- */

int shmrig_pool_audit(shmrig_pool *pool)
{
	int ret = shmrig__pool_check(pool);

	if (ret)
		return ret;
	pool_enter(pool);
	for (struct seg_local *sl = pool->segs; sl && !ret; sl = sl->next)
		if (!sl->large)
			ret = shmrig__arena_audit(sl);
	pool_leave(pool);
	return ret;
}

struct leak_ctx {
	shmrig__procid self;
	bool quiet;
	int count;
};

/* A leak: a block we own at close (allocated, or handed to us and never decoded). */
static void leak_one(void *arg, struct seg_local *sl, struct desc *d, unsigned c, uint32_t id,
		     uint64_t offset)
{
	struct leak_ctx *ctx = arg;
	uint64_t w = atomic_load_explicit(&d->word, memory_order_acquire);
	struct shmrig_block_info info;

	(void)id;
	if (!counts_live(w) || atomic_load_explicit(&d->owner, memory_order_acquire) != ctx->self)
		return;
	ctx->count++;
	if (ctx->quiet)
		return;
	fill_info(&info, sl, d, c, offset);
	fprintf(stderr,
		"shmrig: leak: block %s+%llu size %llu content %llu tag %u owner pid %d refs %u%s\n",
		info.ref.name, (unsigned long long)info.ref.offset,
		(unsigned long long)info.ref.size, (unsigned long long)info.ref.content_size,
		info.tag, (int)info.owner, info.refcount,
		word_state(w) == ST_HANDED ? " (handed to us, never decoded)" : "");
}

int shmrig_pool_close(shmrig_pool *pool)
{
	struct leak_ctx ctx;
	int ret = shmrig__pool_check(pool);

	if (ret)
		return ret;
	pool_enter(pool);
	if (pool->slab.open) {
		struct shmrig_ref ref = pool->slab.ref;

		pool->slab.open = false;
		pool_leave(pool);
		/* a free that fails leaves the block ours: the walk below reports it */
		(void)!shmrig_pool_free(pool, &ref);
		pool_enter(pool);
	}
	if (SHMRIG_DEBUG_CHECKS >= 2) {
		for (struct seg_local *sl = pool->segs; sl; sl = sl->next)
			if (!sl->large && shmrig__arena_audit(sl))
				fprintf(stderr, "shmrig: %s\n", shmrig_last_error());
	}
	ctx.self = pool->self;
	ctx.quiet = pool->flags & SHMRIG_POOL_QUIET;
	ctx.count = 0;
	for (struct seg_local *sl = pool->segs; sl; sl = sl->next)
		shmrig__walk_blocks(sl, leak_one, &ctx);
	shmrig__pool_close_segments(pool);
	pool_leave(pool);
	free(pool);
	if (ctx.count)
		return shmrig__fail(-SHMRIG_ELEAK, "pool_close: %d live block%s at close",
				    ctx.count, ctx.count == 1 ? "" : "s");
	return 0;
}
