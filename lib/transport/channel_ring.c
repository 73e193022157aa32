/* SPDX-License-Identifier: MIT */
/*
 * The "ring" backend: two single-producer single-consumer rings in one
 * shared-memory segment; ring d carries what end d sends to end !d.
 *
 * The segment is created and unlinked in pair_create, before fork: the child
 * inherits the mapping, so nobody ever attaches it by name and no /dev/shm
 * entry can outlive a crash. The memory goes when the last mapping does.
 *
 * Each ring is a control block (four 64-byte lines, below) and `slots` slots
 * of `slot_size` bytes. A message takes one slot: a slot_hdr, then its bytes;
 * a message that does not fit spills into a temporary pool block that is
 * handed to the peer (shmrig_pool_transfer) before it is published, and the
 * slot carries the block's ref instead.
 *
 * Steady state is syscall-free: the producer writes slots and publishes its
 * index with one release store per batch; the consumer polls that index. A
 * side with nothing to do spins briefly, then says it is sleeping and waits on
 * a futex in slices, each ending with a check that the peer lives. The other
 * side calls FUTEX_WAKE only when it sees that flag. The flip side: a send
 * learns that the peer died only when it has to wait (the ring is full) or
 * spills (the hand-over needs a live peer); until then messages to a dead
 * peer are accepted and go nowhere, as a recv after it is -EPIPE anyway.
 *
 * Who owns a spill block: the sender until pool_transfer, then the receiver,
 * who frees it once it has copied the message out. If the receiver dies
 * first, reap() returns it (its owner is dead). If the sender dies between
 * the transfer and the publish, the block is the live receiver's but was
 * never published: the receiver finds it past the final tail and frees it
 * (reclaim_orphans). A receiver that closes frees the spills it has not read;
 * a sender that closes waits (bounded) until its spills are taken, because
 * they live in its pool, which it closes next.
 *
 * Nothing here trusts the peer: indices, lengths, flags and refs read from
 * shared memory are checked (-EBADMSG), and the ring's geometry comes from
 * this process's copy of the pair, never from the segment.
 */
#include "transport/channel_internal.h"
#include "base/internal.h"
#include "pool/handover.h"

#include <errno.h>
#include <linux/futex.h>
#include <stdalign.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define SLICE_MS 100
/*
 * How long a side with nothing to do spins before it sleeps: SPIN_PAUSES
 * pause instructions, as long as most round trips take, without reading the
 * clock. A side that waits for an answer (it sent since it last received:
 * the peer is working for it) then spins on for about four times what its
 * recent answers took beyond that (struct spin), at most SPIN_MAX_NS, timed
 * by the clock; and when answers have been taking longer than SPIN_MAX_NS (a
 * slow peer, or cores so busy that the peer waits for one, when spinning
 * holds a CPU someone needs) it sleeps at once, as a pipe does. A peer that
 * answers within the spin costs no syscall; a consumer between the messages
 * of a stream spins no longer than before, so a slow stream burns no core.
 */
#define SPIN_PAUSES 512 /* first, without the clock: ~5-20 us here */
#define SPIN_MAX_NS 500000
#define SPIN_NONE (-1) /* budget: sleep at once */
#define SPIN_CHECK 32  /* pauses between looks at the clock */
#define DEFAULT_SLOT_SIZE 4096u
#define DEFAULT_SLOTS 256u
#define MIN_SLOT_SIZE 128u
#define MAX_SLOT_SIZE (16u << 20)
#define MAX_SLOTS (1u << 24)
#define MAX_RING_BYTES ((size_t)512 << 20) /* slots * slot_size, per direction */
#define SPILL_TAG 0x4c505352u              /* "RSPL": spill blocks in leak reports */

/*
 * Index words are 31-bit counters of messages published (tail) or consumed
 * (head), wrapping; (tail - head) & IDX_MASK is the fill level. The top bit
 * says the writer closed its end. Index and closed flag share the word
 * because the word is also the futex: closing changes the value a sleeping
 * peer waits on, so the close cannot slip between its check and its sleep.
 */
#define IDX_MASK 0x7fffffffu
#define IDX_CLOSED 0x80000000u

/* One ring's control block. Each word has its own line: tail and head are
 * written by different processes, and the sleeping flags, read on every
 * publish, change rarely and should stay cached on the reader's side. */
struct ring_ctl {
	alignas(SHMRIG_CACHELINE) _Atomic uint32_t tail;              /* producer writes */
	alignas(SHMRIG_CACHELINE) _Atomic uint32_t head;              /* consumer writes */
	alignas(SHMRIG_CACHELINE) _Atomic uint32_t consumer_sleeping; /* may wait on tail */
	alignas(SHMRIG_CACHELINE) _Atomic uint32_t producer_sleeping; /* may wait on head */
};

struct slot_hdr {
	uint32_t len;   /* message bytes (for a spill: the block's content size) */
	uint32_t flags; /* SLOT_SPILL */
};
#define SLOT_SPILL 1u /* the slot holds a struct shmrig_ref, not the bytes */

/* Two processes read these: their layout is fixed, and the futex words are
 * plain lock-free 32-bit integers (the kernel compares them as such). */
_Static_assert(sizeof(_Atomic uint32_t) == sizeof(uint32_t), "futex word is 32 bits");
_Static_assert(ATOMIC_INT_LOCK_FREE == 2, "shared atomics must be lock-free");
_Static_assert(offsetof(struct ring_ctl, tail) == 0, "ring_ctl layout");
_Static_assert(offsetof(struct ring_ctl, head) == 64, "ring_ctl layout");
_Static_assert(offsetof(struct ring_ctl, consumer_sleeping) == 128, "ring_ctl layout");
_Static_assert(offsetof(struct ring_ctl, producer_sleeping) == 192, "ring_ctl layout");
_Static_assert(sizeof(struct ring_ctl) == 4 * SHMRIG_CACHELINE, "ring_ctl layout");
_Static_assert(alignof(struct ring_ctl) == SHMRIG_CACHELINE, "ring_ctl layout");
_Static_assert(sizeof(struct slot_hdr) == 8, "slot_hdr layout");
_Static_assert(sizeof(struct slot_hdr) + sizeof(struct shmrig_ref) <= MIN_SLOT_SIZE,
	       "a spill's ref fits the smallest slot");
_Static_assert(MAX_SLOTS <= IDX_MASK / 2, "fill levels up to MAX_SLOTS fit the index mask");

/* Segment layout: ring_ctl[2], then ring 0's slots, then ring 1's. */
#define SLOTS_OFFSET (2 * sizeof(struct ring_ctl))
_Static_assert(SLOTS_OFFSET % SHMRIG_CACHELINE == 0, "slots start on a line");

struct ring_pair {
	shmrig_segment *seg; /* NULL once open took it */
	uint32_t slot_size;
	uint32_t slots;
};

/* Waits for answers so far, beyond the first SPIN_PAUSES: their mean (an
 * EWMA of 1/8), and the spin it makes (see SPIN_PAUSES). */
struct spin {
	int64_t avg_ns;
	int64_t budget_ns;
};

/* One direction as seen by one end. `mine` and `peers` are private copies:
 * our own index is never re-read from shared memory, and the peer's is
 * re-read only when the cached value says we must wait. */
struct ring_dir {
	struct ring_ctl *ctl;
	unsigned char *slots;
	uint32_t mine;  /* tail if we produce here, head if we consume */
	uint32_t peers; /* the peer's index as last read, without IDX_CLOSED */
};

struct ring_end {
	shmrig_segment *seg; /* the mapping, taken from the pair at open */
	struct ring_dir out; /* ring `end`: we produce */
	struct ring_dir in;  /* ring `!end`: we consume */
	uint32_t slot_size;
	uint32_t slots;
	bool peer_gone;  /* the peer died (seen once, sticky) */
	bool answer_due; /* we sent since we last received */
	struct spin spin;
	bool spilled; /* we sent a spill; spill_end is the index after the last one */
	uint32_t spill_end;
};

static unsigned char *slot_at(const struct ring_end *re, const struct ring_dir *d, uint32_t index)
{
	return d->slots + (size_t)(index & (re->slots - 1)) * re->slot_size;
}

/* The slot header, each field loaded once: what we check is what we
 * use, whatever the peer writes meanwhile. */
static struct slot_hdr read_hdr(const unsigned char *slot)
{
	const struct slot_hdr *shared = (const struct slot_hdr *)slot;

	return (struct slot_hdr){
		.len = __atomic_load_n(&shared->len, __ATOMIC_RELAXED),
		.flags = __atomic_load_n(&shared->flags, __ATOMIC_RELAXED),
	};
}

static uint32_t inline_max(const struct ring_end *re)
{
	return re->slot_size - (uint32_t)sizeof(struct slot_hdr);
}

/*
 * Store our index (or closed flag) and wake the peer if it sleeps on it.
 *
 * release: everything we wrote or read in the slots before this store (a
 * message's bytes; a consumed slot's last read) is ordered before it, so the
 * peer that sees the new index sees a whole message, or a slot we are done with.
 *
 * seq_cst fence: the peer about to sleep stores its sleeping flag, fences, and
 * re-reads this word (wait_change). Without a fence on both sides each load
 * could be served before the other side's store leaves its store buffer: the
 * peer would sleep on the old value and we would not wake it (a lost wakeup).
 * With both fences, at least one of us sees the other's store.
 */
static void store_and_wake(_Atomic uint32_t *word, uint32_t value, _Atomic uint32_t *peer_sleeping)
{
	atomic_store_explicit(word, value, memory_order_release);
	atomic_thread_fence(memory_order_seq_cst);
	if (atomic_load_explicit(peer_sleeping, memory_order_relaxed))
		shmrig__futex_wake(word, 1); /* one reader per word */
}

/* A wait for an answer took `waited_ns`: learn from it. */
static void spin_learn(struct spin *sp, int64_t waited_ns)
{
	int64_t avg = sp->avg_ns + (waited_ns - sp->avg_ns) / 8;

	sp->avg_ns = avg;
	if (avg > SPIN_MAX_NS)
		sp->budget_ns = SPIN_NONE; /* sleep at once, as a pipe does */
	else
		sp->budget_ns = avg * 4 > SPIN_MAX_NS ? SPIN_MAX_NS : avg * 4;
}

/*
 * Wait until the peer changes *word from `seen`: spin (SPIN_PAUSES, and what
 * `sp` learnt of waits for answers, which this one then teaches it), then
 * sleep on the futex in slices, each ending with a check that the peer
 * lives. *start is when this call's waiting began (set on the first slice;
 * < 0 until then).
 * 0 the word moved; -EPIPE the peer is gone; -ETIMEDOUT; -errno.
 */
static int wait_change(struct shmrig_channel *ch, struct spin *sp, _Atomic uint32_t *word,
		       uint32_t seen, _Atomic uint32_t *sleeping, int64_t *start, int timeout_ms)
{
	bool sleep_now = sp && sp->budget_ns == SPIN_NONE;
	int64_t began = 0;
	int ret = 0;

	/* acquire, here and below: if the word moved, what the peer wrote
	 * before moving it (slots, or its last reads of them) is visible.
	 * First SPIN_PAUSES pauses without the clock (a round trip of the ring
	 * takes less): most waits end here, and cost no clock read. */
	for (unsigned i = 0; i < SPIN_PAUSES && !sleep_now; i++) {
		if (atomic_load_explicit(word, memory_order_acquire) != seen) {
			if (sp)
				spin_learn(sp, 0);
			return 0;
		}
		shmrig__cpu_relax();
	}
	/* Waiting for an answer: on, for what the recent answers took (the
	 * time from here, a sleep's too, teaches sp). */
	if (sp) {
		int64_t deadline;

		began = shmrig__now_ns();
		deadline = began + sp->budget_ns;
		for (unsigned i = 1; !sleep_now; i++) {
			if (atomic_load_explicit(word, memory_order_acquire) != seen) {
				spin_learn(sp, shmrig__now_ns() - began);
				return 0;
			}
			shmrig__cpu_relax();
			if (i % SPIN_CHECK == 0 && shmrig__now_ns() >= deadline)
				break;
		}
	}
	if (*start < 0)
		*start = shmrig__now_ms();
	for (;;) {
		int left = shmrig__remaining_ms(*start, timeout_ms);

		atomic_store_explicit(sleeping, 1, memory_order_relaxed);
		/* Make our flag visible before we look at the word once more:
		 * the other half of store_and_wake's fence. */
		atomic_thread_fence(memory_order_seq_cst);
		if (atomic_load_explicit(word, memory_order_acquire) != seen)
			break;
		if (left != 0) {
			/* The kernel re-compares *word with `seen` under its own
			 * lock: a store made since our load fails the wait at once. */
			ret = shmrig__futex_wait(word, seen,
						 left < 0 || left > SLICE_MS ? SLICE_MS : left);
			if (ret) {
				ret = shmrig__fail(ret, "channel: futex wait: %s", strerror(-ret));
				break;
			}
			if (atomic_load_explicit(word, memory_order_acquire) != seen)
				break;
		}
		if (!shmrig__channel_peer_alive(ch)) {
			ret = shmrig__fail(-EPIPE, "channel: peer pid %d is gone", (int)ch->peer);
			break;
		}
		if (left == 0) {
			ret = shmrig__fail(-ETIMEDOUT, "channel: timed out after %d ms",
					   timeout_ms);
			break;
		}
	}
	/* A peer that still sees 1 makes one needless FUTEX_WAKE: harmless. */
	atomic_store_explicit(sleeping, 0, memory_order_relaxed);
	if (!ret && sp)
		spin_learn(sp, shmrig__now_ns() - began);
	return ret;
}

/* ---- pair ---- */

static bool is_power_of_two(uint32_t x)
{
	return x && !(x & (x - 1));
}

static int ring_pair_create(struct shmrig_channel_pair *pair)
{
	uint32_t slot_size = pair->opts.slot_size ? pair->opts.slot_size : DEFAULT_SLOT_SIZE;
	uint32_t slots = pair->opts.slots ? pair->opts.slots : DEFAULT_SLOTS;
	struct shmrig_segment_opts seg_opts = SHMRIG_SIZED(struct shmrig_segment_opts);
	struct ring_pair *rp;
	int ret;

	seg_opts.backing = SHMRIG_BACKING_PLAIN;
	seg_opts.role = 'c';

	if (slot_size % SHMRIG_CACHELINE || slot_size < MIN_SLOT_SIZE || slot_size > MAX_SLOT_SIZE)
		return shmrig__fail(-EINVAL,
				    "channel: ring slot_size %u must be a multiple of 64 in [%u, %u]",
				    slot_size, MIN_SLOT_SIZE, MAX_SLOT_SIZE);
	if (!is_power_of_two(slots) || slots > MAX_SLOTS)
		return shmrig__fail(-EINVAL, "channel: ring slots %u must be a power of two <= %u",
				    slots, MAX_SLOTS);
	if ((size_t)slots * slot_size > MAX_RING_BYTES)
		return shmrig__fail(-EINVAL,
				    "channel: ring of %u slots of %u bytes is over %zu MiB a direction",
				    slots, slot_size, MAX_RING_BYTES >> 20);
	rp = calloc(1, sizeof(*rp));
	if (!rp)
		return shmrig__fail(-ENOMEM, "channel: out of memory");
	seg_opts.bytes = SLOTS_OFFSET + 2 * (size_t)slots * slot_size;
	ret = shmrig_segment_create(&seg_opts, &rp->seg);
	if (ret) {
		free(rp);
		return ret;
	}
	/* Both ends reach the memory through this mapping (fork copies it): the
	 * name is not needed any more, and without it nothing is left in
	 * /dev/shm whoever crashes. */
	ret = shmrig_segment_unlink(rp->seg);
	if (ret) {
		shmrig_segment_close(rp->seg);
		free(rp);
		return shmrig__fail(ret, "channel: unlinking the ring segment: %s", strerror(-ret));
	}
	rp->slot_size = slot_size;
	rp->slots = slots;
	pair->opts.slot_size = slot_size;
	pair->opts.slots = slots;
	pair->backend = rp;
	return 0;
}

static void ring_pair_free(struct shmrig_channel_pair *pair)
{
	struct ring_pair *rp = pair->backend;

	if (!rp)
		return;
	shmrig_segment_close(rp->seg);
	free(rp);
	pair->backend = NULL;
}

/* ---- open, close ---- */

static void init_dir(struct ring_dir *d, unsigned char *base, int ring, uint32_t slots,
		     uint32_t slot_size)
{
	d->ctl = (struct ring_ctl *)base + ring;
	d->slots = base + SLOTS_OFFSET + (size_t)ring * slots * slot_size;
	d->mine = 0;
	d->peers = 0;
}

static int ring_open(struct shmrig_channel *ch, struct shmrig_channel_pair *pair)
{
	struct ring_pair *rp = pair->backend;
	struct ring_end *re;
	unsigned char *base;

	if (!rp || !rp->seg)
		return shmrig__fail(-EINVAL, "channel: this ring pair is already open here");
	re = calloc(1, sizeof(*re));
	if (!re)
		return shmrig__fail(-ENOMEM, "channel: out of memory");
	/* The mapping moves into the channel: the caller frees the pair after open. */
	re->seg = rp->seg;
	rp->seg = NULL;
	re->slot_size = rp->slot_size;
	re->slots = rp->slots;
	base = shmrig_segment_base(re->seg);
	init_dir(&re->out, base, ch->end, re->slots, re->slot_size);
	init_dir(&re->in, base, !ch->end, re->slots, re->slot_size);
	ch->backend = re;
	if (ch->pool)
		snprintf(ch->notes, sizeof(ch->notes),
			 "ring: %u slots of %u bytes; spills above %u bytes", re->slots,
			 re->slot_size, inline_max(re));
	else
		snprintf(ch->notes, sizeof(ch->notes),
			 "ring: %u slots of %u bytes; no pool: sends above %u bytes refused",
			 re->slots, re->slot_size, inline_max(re));
	return 0;
}

/* Free a spilled block named in `slot` if it was handed to us and we can
 * claim it: a ref to any other block, ours or not, frees nothing. */
static void free_spill_in(struct shmrig_channel *ch, const unsigned char *slot)
{
	struct shmrig_ref ref;
	uint8_t claimed = 0;

	if (!(read_hdr(slot).flags & SLOT_SPILL))
		return;
	memcpy(&ref, slot + sizeof(struct slot_hdr), sizeof(ref));
	/* nobody to tell: a block that stays ours is reported at pool_close */
	if (shmrig__pool_claim_refs(ch->pool, &ref, 1, &claimed, NULL) == 0)
		(void)!shmrig_pool_free(ch->pool, &ref);
}

/*
 * The peer died. A spill it had handed to us (transferred) but not published
 * would stay ours forever: reap() frees the blocks of dead owners only. Such a
 * spill sits in a slot past the peer's final tail (the producer writes the
 * ref before the transfer), so free every block those slots name that the
 * pool says is ours. Slots we consumed had their spill flag cleared, and a
 * stale ref fails the pool's generation check anyway.
 */
static void reclaim_orphans(struct shmrig_channel *ch, struct ring_end *re)
{
	struct ring_dir *d = &re->in;
	uint32_t tail = atomic_load_explicit(&d->ctl->tail, memory_order_acquire) & IDX_MASK;
	uint32_t count = (tail - d->mine) & IDX_MASK;

	if (!ch->pool || count > re->slots)
		return;
	for (uint32_t i = count; i < re->slots; i++)
		free_spill_in(ch, slot_at(re, d, d->mine + i));
}

/*
 * Our spills are blocks of our pool, which the caller closes after the
 * channel: a pool close unlinks its segments (the peer could not attach a
 * block it has not taken yet) and reports blocks still live as leaks. So wait
 * until the peer has taken the last spill, closed its end or died, for at
 * most the open timeout. 0, or wait_change()'s error (-EPIPE: it died).
 */
static int wait_spills_taken(struct shmrig_channel *ch, struct ring_end *re)
{
	struct ring_dir *d = &re->out;
	int64_t start = -1;

	if (!re->spilled)
		return 0;
	for (;;) {
		uint32_t word = atomic_load_explicit(&d->ctl->head, memory_order_acquire);
		uint32_t pending = (d->mine - (word & IDX_MASK)) & IDX_MASK;
		int ret;

		/* taken: no more messages pending than were sent after it */
		if ((word & IDX_CLOSED) || pending > re->slots ||
		    pending <= ((d->mine - re->spill_end) & IDX_MASK))
			return 0;
		ret = wait_change(ch, NULL, &d->ctl->head, word, &d->ctl->producer_sleeping, &start,
				  ch->opts.open_timeout_ms);
		if (ret)
			return ret;
	}
}

static void ring_close(struct shmrig_channel *ch)
{
	struct ring_end *re = ch->backend;
	struct ring_dir *in;
	uint32_t tail, count;

	if (!re)
		return;
	in = &re->in;
	/* What we published stays readable; the peer gets -EPIPE after it. */
	store_and_wake(&re->out.ctl->tail, re->out.mine | IDX_CLOSED,
		       &re->out.ctl->consumer_sleeping);
	/* Spills waiting for us are ours: free them, or our pool would hold
	 * them until this process dies. A spill the peer publishes after this
	 * (it checks for IDX_CLOSED before each) is reaped only then. */
	tail = atomic_load_explicit(&in->ctl->tail, memory_order_acquire) & IDX_MASK;
	count = (tail - in->mine) & IDX_MASK;
	if (ch->pool && count <= re->slots)
		for (uint32_t i = 0; i < count; i++)
			free_spill_in(ch, slot_at(re, in, in->mine + i));
	if (count <= re->slots)
		in->mine = tail;
	store_and_wake(&in->ctl->head, in->mine | IDX_CLOSED, &in->ctl->producer_sleeping);
	/* Wait after our own drain, so that two ends closing at once do not
	 * wait on each other; a dead peer's orphans are ours to free. */
	if (!re->peer_gone &&
	    (!shmrig__channel_peer_alive(ch) || wait_spills_taken(ch, re) == -EPIPE))
		reclaim_orphans(ch, re);
	shmrig_segment_close(re->seg);
	free(re);
	ch->backend = NULL;
}

/* ---- send ---- */

/*
 * Re-read the consumer's index. acquire: its last reads of the slots it freed
 * come before its store (release), so we may overwrite them now.
 * 0, -EPIPE (it closed its end) or -EBADMSG (an impossible index).
 */
static int read_head(struct shmrig_channel *ch, struct ring_end *re, uint32_t *word)
{
	struct ring_dir *d = &re->out;
	uint32_t w = atomic_load_explicit(&d->ctl->head, memory_order_acquire);
	uint32_t head = w & IDX_MASK;

	if (w & IDX_CLOSED)
		return shmrig__fail(-EPIPE, "channel: peer pid %d closed its end", (int)ch->peer);
	if (((d->mine - head) & IDX_MASK) > re->slots)
		return shmrig__fail(-EBADMSG, "channel: corrupt ring (consumer index %u, ours %u)",
				    head, d->mine);
	d->peers = head;
	*word = w;
	return 0;
}

/* Copy a message too big for a slot into a pool block and hand it to the
 * peer; the slot gets its ref. 0, -EPIPE, or the pool's error. */
static int put_spill(struct shmrig_channel *ch, struct ring_end *re, unsigned char *slot,
		     const void *msg, size_t len)
{
	struct slot_hdr hdr = { .len = (uint32_t)len, .flags = SLOT_SPILL };
	struct shmrig_ref ref;
	uint32_t head_word;
	void *data;
	int ret;

	/* A consumer that closed its end would never free the block. */
	ret = read_head(ch, re, &head_word);
	if (ret)
		return ret;
	ret = shmrig_pool_alloc(ch->pool, len, SHMRIG_ALLOC_TEMPORARY, SPILL_TAG, &ref, &data);
	if (ret)
		return ret;
	memcpy(data, msg, len);
	/* The ref is in the slot before the block changes hands: if we die
	 * between the transfer and the publish, the peer finds it there
	 * (reclaim_orphans). */
	memcpy(slot, &hdr, sizeof(hdr));
	memcpy(slot + sizeof(hdr), &ref, sizeof(ref));
	/* To the identity the hello verified: no syscall. A peer that died
	 * meanwhile is reap's business (the block is then a dead owner's). */
	ret = shmrig__pool_transfer_refs(ch->pool, &ref, 1, ch->peer_id);
	if (ret) {
		hdr.flags = 0;
		memcpy(slot, &hdr, sizeof(hdr));
		(void)!shmrig_pool_free(ch->pool, &ref); /* the transfer's error is the one */
		return ret;
	}
	return 0;
}

/* Write one message into the next slot (not yet published). */
static int put(struct shmrig_channel *ch, struct ring_end *re, const void *msg, size_t len)
{
	unsigned char *slot = slot_at(re, &re->out, re->out.mine);

	if (len <= inline_max(re)) {
		struct slot_hdr hdr = { .len = (uint32_t)len };

		memcpy(slot, &hdr, sizeof(hdr));
		if (len)
			memcpy(slot + sizeof(hdr), msg, len);
	} else {
		int ret = put_spill(ch, re, slot, msg, len);

		if (ret)
			return ret;
		re->spilled = true;
		re->spill_end = (re->out.mine + 1) & IDX_MASK;
	}
	re->out.mine = (re->out.mine + 1) & IDX_MASK;
	return 0;
}

static inline __attribute__((always_inline)) int ring_send_batch(struct shmrig_channel *ch,
								 const void *const *msgs,
								 const size_t *lens, uint32_t n,
								 int64_t *start, int timeout_ms)
{
	struct ring_end *re = ch->backend;
	struct ring_dir *d = &re->out;
	uint32_t published = d->mine;
	int ret = 0;

	/* Refuse before sending any of the batch. */
	if (!ch->pool)
		for (uint32_t i = 0; i < n; i++)
			if (lens[i] > inline_max(re))
				return shmrig__fail(-EMSGSIZE,
						    "channel: message %u is %zu bytes, a ring slot "
						    "holds %u, and this end has no pool to spill to",
						    i, lens[i], inline_max(re));
	for (uint32_t i = 0; i < n;) {
		uint32_t head_word = 0;

		if (((d->mine - d->peers) & IDX_MASK) == re->slots) {
			ret = read_head(ch, re, &head_word);
			if (ret)
				break;
			if (((d->mine - d->peers) & IDX_MASK) == re->slots) {
				/* Full. The consumer may be asleep waiting for what we
				 * wrote so far: publish it before we wait. */
				if (published != d->mine)
					store_and_wake(&d->ctl->tail, d->mine,
						       &d->ctl->consumer_sleeping);
				published = d->mine;
				ret = wait_change(ch, NULL, &d->ctl->head, head_word,
						  &d->ctl->producer_sleeping, start, timeout_ms);
				if (ret)
					break;
				continue;
			}
		}
		ret = put(ch, re, msgs[i], lens[i]);
		if (ret)
			break;
		i++;
	}
	/* One publish (and at most one wake) for the batch, also on error:
	 * what was written is sent, and a spill in it is the peer's already. */
	if (published != d->mine) {
		store_and_wake(&d->ctl->tail, d->mine, &d->ctl->consumer_sleeping);
		re->answer_due = true;
	}
	return ret;
}

static int ring_sendv(struct shmrig_channel *ch, const void *const *msgs, const size_t *lens,
		      uint32_t n, int timeout_ms)
{
	int64_t start = -1;

	return ring_send_batch(ch, msgs, lens, n, &start, timeout_ms);
}

static int ring_sendv_from(struct shmrig_channel *ch, const void *const *msgs, const size_t *lens,
			   uint32_t n, int64_t *start, int timeout_ms)
{
	return ring_send_batch(ch, msgs, lens, n, start, timeout_ms);
}

/* ---- recv ---- */

/* Release the slot at our head (and wake a producer waiting for room). */
static void consume(struct ring_end *re)
{
	struct ring_dir *d = &re->in;

	d->mine = (d->mine + 1) & IDX_MASK;
	store_and_wake(&d->ctl->head, d->mine, &d->ctl->producer_sleeping);
}

/* Release a spill's slot. Its flag is cleared first, so that a later
 * reclaim_orphans() never takes the slot's stale ref for an unpublished one. */
static void consume_spill(struct ring_end *re, unsigned char *slot)
{
	static const uint32_t no_flags;

	memcpy(slot + offsetof(struct slot_hdr, flags), &no_flags, sizeof(no_flags));
	consume(re);
}

/* Take a spilled message: its block is ours (the producer transferred it). */
static int take_spill(struct shmrig_channel *ch, struct ring_end *re, unsigned char *slot,
		      uint32_t len, void **msg)
{
	static int warned_free;
	struct shmrig_ref ref;
	uint8_t claimed = 0;
	void *data, *buf;
	int ret;

	/* Our copy: the peer cannot change what the pool checks. */
	memcpy(&ref, slot + sizeof(struct slot_hdr), sizeof(ref));
	if (!ch->pool) {
		consume_spill(re, slot);
		return shmrig__fail(-EBADMSG,
				    "channel: a spilled message (%u bytes) came, and this end has "
				    "no pool to take it",
				    len);
	}
	if (ref.content_size != len || len > SHMRIG_CHANNEL_MAX_MSG) {
		consume_spill(re, slot);
		return shmrig__fail(-EBADMSG,
				    "channel: spilled message of %u bytes names a block of %llu",
				    len, (unsigned long long)ref.content_size);
	}
	buf = shmrig__msg_alloc(len);
	if (!buf) /* the slot stays: the next recv takes it again */
		return shmrig__fail(-ENOMEM, "channel: out of memory for %u bytes", len);
	/* Claim it (it must have been handed to us, once), then read it. */
	ret = shmrig__pool_claim_refs(ch->pool, &ref, 1, &claimed, &data);
	if (ret) {
		if (claimed) /* best effort: the bad ref is what we report */
			(void)!shmrig_pool_free(ch->pool, &ref);
		free(buf);
		consume_spill(re, slot);
		return shmrig__fail(-EBADMSG, "channel: a spilled message's ref is bad: %s",
				    shmrig_last_error());
	}
	memcpy(buf, data, len);
	/* Free before the slot is released: a sender closing its end waits for
	 * the slot (wait_spills_taken), then closes the pool the block is in. */
	ret = shmrig_pool_free(ch->pool, &ref);
	if (ret)
		shmrig__warn_once(&warned_free, "channel: freeing a spill block: %s",
				  shmrig_last_error());
	consume_spill(re, slot);
	*msg = buf;
	return 0;
}

/* Take the message at our head (the ring is not empty): into `buf` if it came
 * in the slot and fits `cap` bytes, else into a malloc'd copy. */
static inline __attribute__((always_inline)) int take(struct shmrig_channel *ch,
						      struct ring_end *re, void *buf, size_t cap,
						      void **msg, size_t *len)
{
	unsigned char *slot = slot_at(re, &re->in, re->in.mine);
	struct slot_hdr hdr = read_hdr(slot);
	int ret;

	if (hdr.flags & ~SLOT_SPILL) {
		consume(re);
		return shmrig__fail(-EBADMSG, "channel: ring slot has unknown flags 0x%x",
				    hdr.flags);
	}
	if (hdr.flags & SLOT_SPILL) {
		ret = take_spill(ch, re, slot, hdr.len, msg);
		if (!ret)
			*len = hdr.len;
		return ret;
	}
	if (hdr.len > inline_max(re)) {
		consume(re);
		return shmrig__fail(-EBADMSG, "channel: ring slot says %u bytes, holds at most %u",
				    hdr.len, inline_max(re));
	}
	if (!buf || hdr.len > cap)
		buf = shmrig__msg_alloc(hdr.len);
	if (!buf)
		return shmrig__fail(-ENOMEM, "channel: out of memory for %u bytes", hdr.len);
	memcpy(buf, slot + sizeof(hdr), hdr.len);
	consume(re);
	*msg = buf;
	*len = hdr.len;
	return 0;
}

static inline __attribute__((always_inline)) int ring_take_next(struct shmrig_channel *ch,
								void *buf, size_t cap, void **msg,
								size_t *len, int64_t *start,
								int timeout_ms)
{
	struct ring_end *re = ch->backend;
	struct ring_dir *d = &re->in;

	for (;;) {
		uint32_t tail_word, count;
		int ret;

		if (d->mine != d->peers) {
			ret = take(ch, re, buf, cap, msg, len);
			if (!ret)
				re->answer_due = false;
			return ret;
		}
		/* acquire: the producer's slot writes come before its tail store */
		tail_word = atomic_load_explicit(&d->ctl->tail, memory_order_acquire);
		count = ((tail_word & IDX_MASK) - d->mine) & IDX_MASK;
		if (count > re->slots)
			return shmrig__fail(-EBADMSG,
					    "channel: corrupt ring (producer index %u, ours %u)",
					    tail_word & IDX_MASK, d->mine);
		d->peers = tail_word & IDX_MASK;
		if (count)
			continue;
		/* Empty. The closed flag is stored with the final tail, so
		 * nothing was published that we have not taken. */
		if (tail_word & IDX_CLOSED)
			return shmrig__fail(-EPIPE, "channel: peer pid %d closed its end",
					    (int)ch->peer);
		if (re->peer_gone)
			return shmrig__fail(-EPIPE, "channel: peer pid %d is gone", (int)ch->peer);
		ret = wait_change(ch, re->answer_due ? &re->spin : NULL, &d->ctl->tail, tail_word,
				  &d->ctl->consumer_sleeping, start, timeout_ms);
		if (ret == -EPIPE) {
			/* Deliver what it published before it died, then -EPIPE. */
			re->peer_gone = true;
			reclaim_orphans(ch, re);
			continue;
		}
		if (ret)
			return ret;
	}
}

static int ring_recv(struct shmrig_channel *ch, void **msg, size_t *len, int timeout_ms)
{
	int64_t start = -1;

	return ring_take_next(ch, NULL, 0, msg, len, &start, timeout_ms);
}

static int ring_recv_from(struct shmrig_channel *ch, void *buf, size_t cap, void **msg, size_t *len,
			  int64_t *start, int timeout_ms)
{
	return ring_take_next(ch, buf, cap, msg, len, start, timeout_ms);
}

const struct channel_ops shmrig__channel_ring = {
	.name = "ring",
	.pair_create = ring_pair_create,
	.pair_free = ring_pair_free,
	.open = ring_open,
	.close = ring_close,
	.sendv = ring_sendv,
	.recv = ring_recv,
	.sendv_from = ring_sendv_from,
	.recv_from = ring_recv_from,
};
