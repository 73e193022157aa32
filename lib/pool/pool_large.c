/* SPDX-License-Identifier: MIT */
/*
 * pool_large: blocks above the largest class, each in a segment of its own
 * (payload at offset 0, page-aligned; the descriptor in a trailer at the end).
 *
 * The trailer's capacity is read once, when the segment is mapped, checked
 * against the mapping, and kept in seg_local: a peer that rewrites it later
 * moves nothing of ours. Freeing a large block is one CAS (LIVE -> FREE); the
 * creator reuses or unlinks free segments, others unmap them.
 */
#include "pool/pool_internal.h"

#include <errno.h>
#include <string.h>

static void fill_ref(struct seg_local *sl, size_t content_size, uint32_t flags,
		     struct shmrig_ref *ref, void **data)
{
	memset(ref, 0, sizeof(*ref));
	memcpy(ref->name, sl->name, sl->name_len + 1);
	ref->offset = 0;
	ref->size = sl->capacity;
	ref->content_size = content_size;
	ref->generation =
		word_gen(atomic_load_explicit(&sl->lhdr->desc.word, memory_order_relaxed));
	ref->temporary = (flags & SHMRIG_ALLOC_TEMPORARY) ? 1 : 0;
	*data = sl->base;
}

/* Make the free block of one of our large segments live for us: false if it
 * is not free any more (a peer wrote it): then it is not ours to hand out. */
static bool make_live(struct seg_local *sl, size_t content_size, uint32_t tag, uint32_t flags)
{
	struct desc *d = &sl->lhdr->desc;
	uint64_t w = atomic_load_explicit(&d->word, memory_order_acquire);

	if (word_state(w) != ST_FREE ||
	    !atomic_compare_exchange_strong_explicit(&d->word, &w,
						     word_make(word_gen(w), 0, 0, ST_CACHED),
						     memory_order_acq_rel, memory_order_relaxed))
		return false;
	d->content_size = content_size;
	d->tag = tag;
	atomic_store_explicit(&d->owner, sl->self, memory_order_relaxed);
	atomic_store_explicit(&d->word,
			      (flags & SHMRIG__ALLOC_HANDED) ? word_make(word_gen(w), 1, 1, ST_HANDED) :
							       word_make(word_gen(w), 1, 0, ST_LIVE),
			      memory_order_release);
	return true;
}

static bool seg_free(const struct seg_local *sl)
{
	return word_state(atomic_load_explicit(&sl->lhdr->desc.word, memory_order_acquire)) ==
	       ST_FREE;
}

/*
 * Large segments we created whose block is free (we freed it, a peer freed it,
 * or reap did): reuse one that fits, and unlink the rest beyond LARGE_KEEP or
 * when `need_room` bytes must be freed for a new segment.
 */
static struct seg_local *recycle(shmrig_pool *pool, size_t want, size_t need_room)
{
	struct seg_local *found = NULL, *sl, *next;
	unsigned kept = 0;

	for (sl = pool->segs; sl; sl = next) {
		next = sl->next;
		if (!sl->large || !sl->created || !seg_free(sl))
			continue;
		if (!found && want && sl->capacity >= want && sl->capacity / 2 < want) {
			found = sl;
			continue;
		}
		if (kept < LARGE_KEEP &&
		    (!need_room || pool->created_bytes + need_room <= pool->max_bytes)) {
			kept++;
			continue;
		}
		shmrig__pool_drop_seg(pool, sl);
	}
	return found;
}

void shmrig__large_recycle_all(shmrig_pool *pool)
{
	recycle(pool, 0, 0);
}

void shmrig__large_make_room(shmrig_pool *pool, size_t need)
{
	recycle(pool, 0, need);
}

int shmrig__large_alloc(shmrig_pool *pool, size_t size, uint32_t flags, uint32_t tag,
			struct shmrig_ref *ref, void **data)
{
	size_t capacity = round_up(size, SHMRIG_POOL_MIN_BLOCK), seg_size;
	struct seg_local *sl = recycle(pool, capacity, 0);
	int ret;

	if (sl && make_live(sl, size, tag, flags)) {
		fill_ref(sl, size, flags, ref, data);
		return 0;
	}
	seg_size = round_up(capacity + LARGE_TRAILER, shmrig__page_size());
	recycle(pool, 0, seg_size);
	if (pool->created_bytes + seg_size > pool->max_bytes)
		return shmrig__fail(-ENOMEM,
				    "pool: a %zu-byte block would pass the limit of %zu bytes "
				    "(%zu in use)",
				    size, pool->max_bytes, pool->created_bytes);
	ret = shmrig__pool_create_seg(pool, seg_size, ROLE_LARGE, &sl);
	if (ret)
		return ret;
	shmrig__pool_insert(pool, sl);
	if (pool->created_bytes > pool->max_bytes) {
		/* hugetlb rounded the segment up past the limit */
		shmrig__pool_drop_seg(pool, sl);
		return shmrig__fail(-ENOMEM,
				    "pool: a %zu-byte block would pass the limit of %zu bytes",
				    size, pool->max_bytes);
	}
	sl->large = true;
	/* The trailer sits in the segment's last bytes, whatever the page size. */
	sl->lhdr = (struct large_hdr *)(sl->base + sl->size - LARGE_TRAILER);
	sl->capacity = (sl->size - LARGE_TRAILER) / SHMRIG_POOL_MIN_BLOCK * SHMRIG_POOL_MIN_BLOCK;
	sl->lhdr->version = LAYOUT_VERSION;
	sl->lhdr->capacity = sl->capacity;
	sl->lhdr->creator = sl->self;
	atomic_store_explicit(&sl->lhdr->desc.word, word_make(1, 0, 0, ST_FREE),
			      memory_order_relaxed);
	atomic_store_explicit((_Atomic uint64_t *)&sl->lhdr->magic, LARGE_MAGIC,
			      memory_order_release);
	make_live(sl, size, tag, flags);
	fill_ref(sl, size, flags, ref, data);
	return 0;
}

int shmrig__large_check(struct seg_local *sl, size_t max_bytes)
{
	struct large_hdr *lh;
	uint64_t capacity;

	if (sl->size <= LARGE_TRAILER || sl->size % SHMRIG_POOL_MIN_BLOCK ||
	    sl->size > max_bytes + (size_t)LARGE_TRAILER + (2u << 20))
		goto corrupt;
	lh = (struct large_hdr *)(sl->base + sl->size - LARGE_TRAILER);
	/* Read once: from here on only our copy counts. */
	capacity = *(volatile uint64_t *)&lh->capacity;
	if (atomic_load_explicit((_Atomic uint64_t *)&lh->magic, memory_order_acquire) !=
		    LARGE_MAGIC ||
	    lh->version != LAYOUT_VERSION || capacity == 0 ||
	    capacity > sl->size - LARGE_TRAILER || capacity % SHMRIG_POOL_MIN_BLOCK)
		goto corrupt;
	sl->large = true;
	sl->lhdr = lh;
	sl->capacity = capacity;
	return 0;
corrupt:
	return shmrig__fail(-SHMRIG_ECORRUPT, "segment '%s' is not a valid shmrig large block",
			    sl->name);
}

int shmrig__large_locate(struct seg_local *sl, const struct shmrig_ref *ref, struct block *b)
{
	b->sl = sl;
	if (ref->offset > sl->capacity || ref->size > sl->capacity - ref->offset)
		return shmrig__fail(-SHMRIG_EBADREF,
				    "ref '%s': offset %llu size %llu is not inside the %llu-byte "
				    "block",
				    ref->name, (unsigned long long)ref->offset,
				    (unsigned long long)ref->size, (unsigned long long)sl->capacity);
	b->desc = &sl->lhdr->desc;
	b->start = 0;
	b->size = sl->capacity;
	b->cls = NCLASS;
	b->id = 0;
	return 0;
}

/* Foreign large segments whose block is free and of which we hold nothing:
 * the segment list is newest first; unmap those past the first LARGE_KEEP. */
static void keep_foreign(shmrig_pool *pool)
{
	struct seg_local *sl, *next;
	unsigned kept = 0;

	for (sl = pool->segs; sl; sl = next) {
		next = sl->next;
		if (sl->large && !sl->created && !sl->held && seg_free(sl) && kept++ >= LARGE_KEEP)
			shmrig__pool_drop_seg(pool, sl);
	}
}

void shmrig__large_release(shmrig_pool *pool, struct block *b, uint64_t word)
{
	struct seg_local *sl = b->sl;

	if (!atomic_compare_exchange_strong_explicit(&b->desc->word, &word,
						     word_make(gen_next(word_gen(word)), 0, 0,
							       ST_FREE),
						     memory_order_acq_rel, memory_order_relaxed))
		return; /* a peer rewrote it: not ours to return */
	if (sl->created) {
		recycle(pool, 0, 0);
		return;
	}
	sl->held = 0;
	/* The creator closed its pool and left the segment to its last owner: us. */
	if (atomic_load_explicit(&sl->lhdr->closed, memory_order_acquire)) {
		(void)!shmrig_segment_unlink(sl->seg); /* best effort, as in forget_seg */
		shmrig__pool_drop_seg(pool, sl);
		return;
	}
	/* The creator reuses or unlinks it. It stays mapped here meanwhile: a
	 * creator that reuses it sends it to us again (a worker's responses),
	 * and mapping 16 MiB anew cost a populate (~1.7 ms) and an unmap (~1
	 * ms) a call. At most LARGE_KEEP such, the newest; a new name's attach
	 * unmaps them all (shmrig__large_prune_foreign). */
	keep_foreign(pool);
}

/*
 * Unmap large segments of other processes whose block is free and of which we
 * hold no reference: a consumer that only looks at large blocks would
 * otherwise keep every one of them mapped. What we hold stays mapped, whatever
 * a peer writes into the descriptor.
 */
void shmrig__large_prune_foreign(shmrig_pool *pool)
{
	struct seg_local *sl, *next;

	for (sl = pool->segs; sl; sl = next) {
		next = sl->next;
		if (sl->large && !sl->created && !sl->held && seg_free(sl))
			shmrig__pool_drop_seg(pool, sl);
	}
}
