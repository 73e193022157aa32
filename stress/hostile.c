/* SPDX-License-Identifier: MIT */
/*
 * The hostile peer (--inject hostile): one more process that attaches the pool
 * segments of the run (it lists the run's prefix in /dev/shm) and scribbles on
 * what the pool shares: arena header fields, free- and remote-list heads,
 * descriptors of blocks others hold, large trailers. The producers and
 * consumers must see errors, never accept wrong data, crash or hang.
 *
 * It knows the layouts as the pool does: it maps each segment and lets the
 * library's own checks (shmrig__arena_check, shmrig__large_check) compute the
 * geometry, so that every write lands on the field it means and never on a
 * payload (a write to payload bytes would be caught by the checksums, and
 * prove nothing about the pool).
 *
 * It writes nothing a legitimate peer writes: no word that says FREE on a
 * large block, no REMOTE state, no pushes of blocks that look freed (nor a
 * FREE word on a block it pushed), no owner that is or will be dead (reap
 * frees a dead owner's blocks). A pool checks what peers write; it cannot
 * tell a forged free from a real one, and such a forgery would hand out a
 * block its holder still reads.
 *
 * Some writes are undone after a moment (a header field a new mapper reads,
 * a chunk's class, next_chunk past the end): the window is what a mapper or
 * the creator may see; the rest stay.
 */
#include "stress.h"

#include "pool/pool_internal.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define HOSTILE_SEGS 64
#define HOSTILE_PERIOD_US 2000 /* between scribbles, on average */
#define LIST_PERIOD_NS 20000000u
#define HOLD_US_MAX 2000 /* an undone write stays this long at most */
#define SCAN_MAX 4096    /* descriptors looked at for a held block, per chunk tried */
#define PUSHED_MAX 256   /* blocks of one segment we put on a list, remembered */

const char *const scribble_names[SC_KINDS] = {
	[SC_ARENA_FIELD] = "arena_field",
	[SC_NEXT_CHUNK] = "next_chunk",
	[SC_CHUNK_CLASS] = "chunk_class",
	[SC_CLOSED] = "closed",
	[SC_FREE_LIVE] = "free_live",
	[SC_FREE_RANGE] = "free_range",
	[SC_FREE_CYCLE] = "free_cycle",
	[SC_REMOTE_LIVE] = "remote_live",
	[SC_REMOTE_RANGE] = "remote_range",
	[SC_REMOTE_CYCLE] = "remote_cycle",
	[SC_STATE] = "state",
	[SC_OWNER] = "owner",
	[SC_LARGE_CAPACITY] = "large_capacity",
	[SC_LARGE_FIELD] = "large_field",
};

/* "all", or names of enum scribble separated by commas. 0 or -EINVAL. */
int parse_scribbles(const char *spec, uint32_t *mask)
{
	char buf[512], *save, *tok;

	if (strcmp(spec, "all") == 0) {
		*mask = (1u << SC_KINDS) - 1;
		return 0;
	}
	snprintf(buf, sizeof(buf), "%s", spec);
	*mask = 0;
	for (tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		unsigned k;

		for (k = 0; k < SC_KINDS && strcmp(tok, scribble_names[k]) != 0; k++)
			;
		if (k == SC_KINDS)
			return -EINVAL;
		*mask |= 1u << k;
	}
	return *mask ? 0 : -EINVAL;
}

/* A segment of the run as the hostile peer mapped it. */
struct target {
	struct seg_local sl; /* geometry from the library's checks of the header, read once */
	char name[SHMRIG_NAME_MAX];
	bool arena;
	pid_t creator;
	bool listed; /* in the last listing */
	bool fresh;  /* nothing written yet: likely not mapped by a consumer either */
	/* Blocks we put on a free or remote list (free_live, free_cycle): they
	 * must never also get a word that says FREE from us, or the two writes
	 * together are a forged free (see the top). Past PUSHED_MAX, no FREE. */
	uint32_t pushed[PUSHED_MAX];
	unsigned npushed;
};

struct hostile {
	const struct stress_opts *o;
	struct hostile_ledger *ledger;
	struct target targets[HOSTILE_SEGS];
	unsigned ntargets;
	uint64_t rng;
	shmrig__procid driver; /* our parent's identity (bad_owner) */
};

static uint64_t draw(struct hostile *h, uint64_t n)
{
	return n ? rng_next(&h->rng) % n : 0;
}

static void sleep_us(uint64_t us)
{
	struct timespec ts = { .tv_sec = (time_t)(us / 1000000u),
			       .tv_nsec = (long)(us % 1000000u) * 1000 };

	nanosleep(&ts, NULL);
}

static void drop_target(struct hostile *h, unsigned i)
{
	shmrig_segment_close(h->targets[i].sl.seg);
	h->targets[i] = h->targets[--h->ntargets];
}

/* Map a segment the listing shows, if the pool's own checks take it. */
static void add_target(struct hostile *h, const char *name)
{
	struct target *t = &h->targets[h->ntargets];
	shmrig_segment *seg;
	char role;
	int ret;

	if (shmrig__segment_attach_lazy(h->o->prefix, name, &seg))
		return; /* gone already, or not a name of ours */
	role = shmrig_segment_role(seg);
	memset(t, 0, sizeof(*t));
	t->sl.seg = seg;
	t->sl.base = shmrig_segment_base(seg);
	t->sl.size = shmrig_segment_size(seg);
	t->sl.name = t->name;
	snprintf(t->name, sizeof(t->name), "%s", name);
	t->sl.name_len = strlen(t->name);
	if (role == ROLE_ARENA)
		ret = shmrig__arena_check(&t->sl);
	else if (role == ROLE_LARGE)
		ret = shmrig__large_check(&t->sl, SIZE_MAX / 2);
	else
		ret = -EINVAL;
	if (ret) {
		/* not published yet (the magic is written last), or not a pool segment */
		shmrig_segment_close(seg);
		return;
	}
	/* attach checked the name; a creator we could not read (0) would pass
	 * kill(0, 0) in refresh and keep the target forever */
	if (shmrig_segment_parse_name(h->o->prefix, name, &t->creator, NULL)) {
		shmrig_segment_close(seg);
		return;
	}
	t->arena = role == ROLE_ARENA;
	t->listed = t->fresh = true;
	h->ntargets++;
	atomic_fetch_add(&h->ledger->segments, 1);
}

static void listed(void *arg, const char *name)
{
	struct hostile *h = arg;

	for (unsigned i = 0; i < h->ntargets; i++)
		if (strcmp(h->targets[i].name, name) == 0) {
			h->targets[i].listed = true;
			return;
		}
	if (h->ntargets < HOSTILE_SEGS)
		add_target(h, name);
}

/* Follow the listing: map new segments, unmap those that are gone. An arena
 * whose name went (a `closed` scribble makes a consumer unlink it) stays
 * while its creator runs: it still allocates from it. */
static void refresh(struct hostile *h)
{
	for (unsigned i = 0; i < h->ntargets; i++)
		h->targets[i].listed = false;
	if (shmrig_segment_list(h->o->prefix, listed, h) < 0)
		return; /* we cannot tell which went: keep them all until the next listing */
	for (unsigned i = 0; i < h->ntargets;)
		if (!h->targets[i].listed &&
		    !(h->targets[i].arena && kill(h->targets[i].creator, 0) == 0))
			drop_target(h, i);
		else
			i++;
}

/* Write `bad` over a 64-bit field, and put the old value back after a moment
 * unless someone else changed the field meanwhile. */
static void flash64(struct hostile *h, _Atomic uint64_t *field, uint64_t bad)
{
	uint64_t old = atomic_exchange(field, bad);

	sleep_us(draw(h, HOLD_US_MAX));
	atomic_compare_exchange_strong(field, &bad, old);
}

static void flash32(struct hostile *h, _Atomic uint32_t *field, uint32_t bad)
{
	uint32_t old = atomic_exchange(field, bad);

	sleep_us(draw(h, HOLD_US_MAX));
	atomic_compare_exchange_strong(field, &bad, old);
}

/* ---- arenas ---- */

static uint32_t used_chunks(struct seg_local *sl)
{
	uint32_t used = atomic_load(&sl->hdr->next_chunk);

	return used < sl->nchunks ? used : sl->nchunks;
}

/* A block someone holds (LIVE, HANDED, or CACHED with `cached`), of class
 * `want` (NCLASS: any): false if none was found in a few chunks. Held blocks
 * are few and close together (caches hand out the last freed first): each
 * chunk tried is scanned from a random slot on. */
static bool pick_held(struct hostile *h, struct seg_local *sl, unsigned want, bool cached,
		      unsigned *cls, uint32_t *id, struct desc **d)
{
	uint32_t used = used_chunks(sl);

	for (unsigned tries = 0; used && tries < 8; tries++) {
		uint32_t chunk = (uint32_t)draw(h, used), start, n;
		unsigned c = chunk_class(sl, chunk);
		const struct layout *l;

		if (c == NCLASS || (want != NCLASS && c != want))
			continue;
		l = chunk_layout(sl, chunk, c);
		n = l->nblocks < SCAN_MAX ? l->nblocks : SCAN_MAX;
		start = (uint32_t)draw(h, l->nblocks);
		for (uint32_t k = 0; k < n; k++) {
			unsigned st;

			*id = block_id(chunk, (start + k) % l->nblocks);
			*d = id_desc(sl, *id, c);
			st = word_state(atomic_load(&(*d)->word));
			if (st == ST_LIVE || st == ST_HANDED || (cached && st == ST_CACHED)) {
				*cls = c;
				return true;
			}
		}
	}
	return false;
}

/* A class with a chunk in this arena (NCLASS if none). */
static unsigned pick_class(struct hostile *h, struct seg_local *sl)
{
	uint32_t used = used_chunks(sl);

	for (unsigned tries = 0; used && tries < 8; tries++) {
		unsigned c = chunk_class(sl, (uint32_t)draw(h, used));

		if (c != NCLASS)
			return c;
	}
	return NCLASS;
}

/* An id the lists of class c must refuse: past the arena, past a chunk's
 * blocks, in a chunk of another class, or the id before NIL. */
static uint32_t bad_id(struct hostile *h, struct seg_local *sl, unsigned c)
{
	uint32_t used = used_chunks(sl);

	switch (draw(h, 4)) {
	case 0:
		return block_id(sl->nchunks + (uint32_t)draw(h, 100), 0);
	case 1:
		for (uint32_t chunk = 0; chunk < used; chunk++)
			if (chunk_class(sl, chunk) == c)
				return block_id(chunk, chunk_layout(sl, chunk, c)->nblocks +
							       (uint32_t)draw(h, 8));
		return NIL - 1;
	case 2:
		for (uint32_t chunk = 0; chunk < used; chunk++)
			if (chunk_class(sl, chunk) != c && chunk_class(sl, chunk) != NCLASS)
				return block_id(chunk, 0);
		return NIL - 1;
	default:
		return NIL - 1;
	}
}

/* Point a list head (free: {tag, id}; remote: {0, id}) at `id`. */
static void set_head(_Atomic uint64_t *head, bool tagged, uint32_t id)
{
	uint64_t old = atomic_load(head);
	uint64_t tag = tagged ? (uint64_t)((uint32_t)(old >> 32) + 1) << 32 : 0;

	while (!atomic_compare_exchange_weak(head, &old, tag | id))
		tag = tagged ? (uint64_t)((uint32_t)(old >> 32) + 1) << 32 : 0;
}

/* Remember a block we put on a list (see struct target). */
static void note_pushed(struct target *t, uint32_t id)
{
	if (t->npushed < PUSHED_MAX)
		t->pushed[t->npushed] = id;
	t->npushed++;
}

/* May we write a FREE word on block id? Not if we ever put it on a list. */
static bool may_say_free(const struct target *t, uint32_t id)
{
	if (t->npushed > PUSHED_MAX)
		return false;
	for (unsigned i = 0; i < t->npushed; i++)
		if (t->pushed[i] == id)
			return false;
	return true;
}

static bool scribble_list(struct hostile *h, struct target *t, enum scribble kind)
{
	struct seg_local *sl = &t->sl;
	bool remote = kind >= SC_REMOTE_LIVE;
	enum scribble what = remote ? kind - (SC_REMOTE_LIVE - SC_FREE_LIVE) : kind;
	unsigned c = pick_class(h, sl);
	_Atomic uint64_t *head;
	struct desc *d;
	uint32_t id;

	if (c == NCLASS)
		return false;
	head = remote ? &sl->hdr->remote[c].head : &sl->hdr->free_list[c].head;
	switch (what) {
	case SC_FREE_LIVE:
		if (!pick_held(h, sl, c, false, &c, &id, &d))
			return false;
		note_pushed(t, id);
		set_head(head, !remote, id);
		return true;
	case SC_FREE_RANGE:
		set_head(head, !remote, bad_id(h, sl, c));
		return true;
	default: /* a one-element cycle: the head block's link to itself */
		id = (uint32_t)atomic_load(head);
		if (id != NIL && id_chunk(id) < used_chunks(sl) &&
		    chunk_class(sl, id_chunk(id)) == c &&
		    id_slot(id) < chunk_layout(sl, id_chunk(id), c)->nblocks) {
			atomic_store(&id_desc(sl, id, c)->next_free, id);
			return true;
		}
		/* an empty list: a held block linked to itself becomes the head */
		if (!pick_held(h, sl, c, false, &c, &id, &d))
			return false;
		note_pushed(t, id);
		atomic_store(&d->next_free, id);
		set_head(head, !remote, id);
		return true;
	}
}

/* A new word for a block someone holds, none of which says "free me" (a FREE
 * word on no list only with may_free: an arena block we never put on a list;
 * a large block's FREE is its free). */
static uint64_t bad_word(struct hostile *h, uint64_t w, bool may_free)
{
	uint32_t gen = word_gen(w), refs = word_refs(w);

	switch (draw(h, may_free ? 5 : 4)) {
	case 0: /* no such state */
		return word_make(gen, refs, word_unclaimed(w),
				 ST_COUNT + (unsigned)draw(h, 16 - ST_COUNT));
	case 1: /* another generation: every ref to it is stale */
		return word_make(gen_next(gen), refs, word_unclaimed(w), word_state(w));
	case 2: /* more unclaimed references than references */
		return word_make(gen, refs, refs + 1, ST_HANDED);
	case 3: /* live with no reference */
		return word_make(gen, 0, 0, ST_LIVE);
	default: /* free, on no list */
		return word_make(gen, 0, 0, ST_FREE);
	}
}

/*
 * A wrong owner for a block someone holds: the driver, a real process that
 * outlives every worker, so the holder's free is refused and the block is
 * reported, never reaped. Not 0, a random identity or a worker's: each is, or
 * becomes, a dead owner, and reap would free the block while its holder
 * still reads it (a forged free the pool cannot tell from a real death).
 */
static uint64_t bad_owner(const struct hostile *h)
{
	return h->driver;
}

static bool scribble_arena(struct hostile *h, struct target *t, enum scribble kind)
{
	struct seg_local *sl = &t->sl;
	struct arena_hdr *hdr = sl->hdr;
	struct desc *d;
	unsigned c;
	uint32_t id;

	switch (kind) {
	case SC_ARENA_FIELD:
		switch (draw(h, 5)) {
		case 0:
			flash64(h, (_Atomic uint64_t *)&hdr->magic, ARENA_MAGIC ^ 1);
			break;
		case 1:
			flash32(h, (_Atomic uint32_t *)&hdr->version, LAYOUT_VERSION + 1);
			break;
		case 2:
			flash32(h, (_Atomic uint32_t *)&hdr->nchunks, sl->nchunks + 1);
			break;
		case 3:
			flash32(h, (_Atomic uint32_t *)&hdr->hdr_size, 64);
			break;
		default:
			flash64(h, (_Atomic uint64_t *)&hdr->arena_size, (uint64_t)sl->size * 4);
			break;
		}
		return true;
	case SC_NEXT_CHUNK: {
		uint32_t used = used_chunks(sl);

		/* back to a chunk in use, left there (the creator must not take it
		 * again when it next needs a chunk); or past the end, for a moment */
		if (used > 1 && draw(h, 2))
			atomic_store(&hdr->next_chunk, (uint32_t)draw(h, used));
		else
			flash32(h, &hdr->next_chunk, sl->nchunks + 7);
		return true;
	}
	case SC_CHUNK_CLASS: {
		uint32_t used = used_chunks(sl), chunk = (uint32_t)draw(h, used ? used : 1);
		uint32_t cp1 = atomic_load(&hdr->chunks[chunk].class_plus1);

		if (!used || cp1 == 0 || cp1 > NCLASS)
			return false;
		flash32(h, &hdr->chunks[chunk].class_plus1,
			draw(h, 3) ? 1 + (cp1 + (uint32_t)draw(h, NCLASS - 1)) % NCLASS :
				     (draw(h, 2) ? 0 : 200));
		return true;
	}
	case SC_CLOSED:
		atomic_store(&hdr->closed, 1);
		return true;
	case SC_FREE_LIVE:
	case SC_FREE_RANGE:
	case SC_FREE_CYCLE:
	case SC_REMOTE_LIVE:
	case SC_REMOTE_RANGE:
	case SC_REMOTE_CYCLE:
		return scribble_list(h, t, kind);
	case SC_STATE:
		if (!pick_held(h, sl, NCLASS, true, &c, &id, &d))
			return false;
		atomic_store(&d->word, bad_word(h, atomic_load(&d->word), may_say_free(t, id)));
		return true;
	case SC_OWNER:
		if (!pick_held(h, sl, NCLASS, false, &c, &id, &d))
			return false;
		atomic_store(&d->owner, bad_owner(h));
		return true;
	default:
		return false;
	}
}

/* ---- large blocks ---- */

static bool scribble_large(struct hostile *h, struct target *t, enum scribble kind)
{
	struct large_hdr *lh = t->sl.lhdr;
	uint64_t capacity = t->sl.capacity, w;

	switch (kind) {
	case SC_CLOSED:
		atomic_store(&lh->closed, 1);
		return true;
	case SC_LARGE_CAPACITY: {
		static const uint64_t add[] = { 0, 1, 64 };
		uint64_t bad;

		switch (draw(h, 4)) {
		case 0:
			bad = 0;
			break;
		case 1: /* past the mapping, or not a 64-byte multiple */
			bad = capacity * 2 + add[draw(h, 3)];
			break;
		case 2:
			bad = capacity - 1;
			break;
		default: /* smaller and well-formed: refs must not pass it */
			bad = SHMRIG_POOL_MIN_BLOCK;
			break;
		}
		if (draw(h, 2))
			flash64(h, (_Atomic uint64_t *)&lh->capacity, bad);
		else
			atomic_store((_Atomic uint64_t *)&lh->capacity, bad);
		return true;
	}
	case SC_LARGE_FIELD:
		switch (draw(h, 4)) {
		case 0:
			flash64(h, (_Atomic uint64_t *)&lh->magic, LARGE_MAGIC ^ 1);
			return true;
		case 1:
			flash32(h, (_Atomic uint32_t *)&lh->version, LAYOUT_VERSION + 1);
			return true;
		case 2:
			w = atomic_load(&lh->desc.word);
			if (word_state(w) != ST_LIVE && word_state(w) != ST_HANDED)
				return false;
			atomic_store(&lh->desc.word, bad_word(h, w, false));
			return true;
		default:
			w = atomic_load(&lh->desc.word);
			if (word_state(w) != ST_LIVE && word_state(w) != ST_HANDED)
				return false;
			atomic_store(&lh->desc.owner, bad_owner(h));
			return true;
		}
	default:
		return false;
	}
}

/* A segment for a scribble of `kind`: of the role it needs, and for a header
 * field half the time one written on by nobody yet (a mapper reads headers
 * once, when it maps). NULL if there is none. */
static struct target *pick_target(struct hostile *h, enum scribble kind)
{
	bool large = kind == SC_LARGE_CAPACITY || kind == SC_LARGE_FIELD;
	bool either = kind == SC_CLOSED;
	bool header = kind == SC_ARENA_FIELD || kind == SC_LARGE_CAPACITY || kind == SC_LARGE_FIELD;
	unsigned start = (unsigned)draw(h, h->ntargets), found = h->ntargets;

	for (unsigned k = 0; k < h->ntargets; k++) {
		unsigned i = (start + k) % h->ntargets;
		const struct target *t = &h->targets[i];

		if (!either && t->arena == large)
			continue;
		found = found == h->ntargets ? i : found;
		if (!header || t->fresh || draw(h, 2))
			return &h->targets[i];
	}
	return found < h->ntargets ? &h->targets[found] : NULL;
}

/* One scribble of an enabled kind; false if none could be done. */
static bool scribble(struct hostile *h)
{
	for (unsigned tries = 0; tries < 8; tries++) {
		enum scribble kind = (enum scribble)draw(h, SC_KINDS);
		struct target *t;

		if (!(h->o->scribbles & (1u << kind)) || !(t = pick_target(h, kind)))
			continue;
		if (t->arena ? scribble_arena(h, t, kind) : scribble_large(h, t, kind)) {
			t->fresh = false;
			atomic_fetch_add(&h->ledger->scribbles[kind], 1);
			return true;
		}
	}
	return false;
}

int hostile_main(const struct stress_opts *o, struct hostile_ledger *ledger)
{
	struct hostile *h = calloc(1, sizeof(*h));
	struct shmrig__watch watch;
	uint64_t next_list = 0;

	if (!h) {
		snprintf(ledger->error, sizeof(ledger->error), "out of memory");
		return 2;
	}
	h->o = o;
	h->ledger = ledger;
	h->rng = o->seed ^ 0x4057113ull;
	if (shmrig__watch_open(&watch, getppid())) {
		snprintf(ledger->error, sizeof(ledger->error), "the driver's identity: %s",
			 shmrig_last_error());
		free(h);
		return 2;
	}
	h->driver = watch.id;
	shmrig__watch_close(&watch);
	while (!atomic_load(&ledger->stop)) {
		uint64_t now = now_ns();

		if (now >= next_list) {
			refresh(h);
			next_list = now + LIST_PERIOD_NS;
		}
		scribble(h);
		sleep_us(draw(h, 2 * HOSTILE_PERIOD_US));
	}
	while (h->ntargets)
		drop_target(h, h->ntargets - 1);
	free(h);
	atomic_store(&ledger->done, 1);
	return 0;
}
