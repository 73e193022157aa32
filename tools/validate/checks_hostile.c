/* SPDX-License-Identifier: MIT */
/*
 * Required.Hostile.Mutations: frames a peer could send. Each value is
 * encoded, and a mutated copy of its frame is decoded: every decode must
 * either succeed (its value is then released) or fail with an error; after
 * the original frames are discarded, the pool must hold no live block, and at
 * the end its shared metadata must pass the audit. A crash or a hang is the
 * runner's to report, naming the mutation (val_at).
 *
 * The run is bounded and seeded: MUTATIONS_PER_VALUE mutations per value of
 * at most HOSTILE_MAX_BYTES, taking the kinds of mutation in turn, each drawn
 * from (--seed, value, mutation). Kinds:
 *   bit flips         1-4 bits anywhere in the frame
 *   truncation        the frame cut short
 *   header lies       buffer count or meta length changed, or a codec id
 *                     nobody has
 *   foreign frames    a frame of another codec of the subject, relabelled as
 *                     the codec's own (it must refuse what it did not write)
 *   swapped refs      two refs exchanged, or one taken from another frame
 *   ref counts        a ref dropped or duplicated (the header agrees)
 *   ref fields        content_size, offset, size, generation or the temporary
 *                     flag changed
 *   lying meta        an integer of the metadata replaced (0, 1, huge, off by
 *                     one) or a container's count changed
 *   random meta       a random JSON-compatible document built of the frame's
 *                     own keys, or random bytes
 * Memory: the child's data segment is capped (RLIMIT_DATA), so a codec that
 * believes a lying count fails to allocate instead of taking the machine.
 */
#include "validate.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#define MUTATIONS_PER_VALUE 8
#define HOSTILE_MAX_BYTES ((size_t)64 << 10)
#define HOSTILE_POOL_MAX ((size_t)256 << 20)
#define HOSTILE_DATA_LIMIT ((rlim_t)1 << 30)
#define RANDOM_META_MAX 4096

#if defined(__SANITIZE_ADDRESS__)
#define UNDER_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define UNDER_ASAN 1
#endif
#endif

enum mutation {
	BIT_FLIPS,
	TRUNCATION,
	HEADER_LIES,
	SWAPPED_REFS,
	REF_COUNTS,
	REF_FIELDS,
	LYING_META,
	RANDOM_META,
	FOREIGN_FRAME,
	NMUTATIONS
};

/* A frame being built: header, refs, meta. */
struct parts {
	struct shmrig_frame_header h;
	struct shmrig_ref refs[64];
	uint32_t nrefs;
	unsigned char meta[RANDOM_META_MAX + 64];
	size_t meta_len;
};

struct mutant {
	void *buf;
	size_t len;
	char what[160];
};

/* A frame from parts, 8-aligned like any frame (the header's counts as they are). */
static int assemble(const struct parts *p, struct mutant *m)
{
	size_t len = sizeof(p->h) + p->nrefs * sizeof(struct shmrig_ref) + p->meta_len;

	m->buf = aligned_alloc(8, (len + 7) & ~(size_t)7);
	if (!m->buf)
		return -ENOMEM;
	memcpy(m->buf, &p->h, sizeof(p->h));
	memcpy((char *)m->buf + sizeof(p->h), p->refs, p->nrefs * sizeof(struct shmrig_ref));
	memcpy((char *)m->buf + len - p->meta_len, p->meta, p->meta_len);
	m->len = len;
	return 0;
}

/* The frame's parts, with the header's counts agreeing after a change. */
static void split(const void *frame, const struct shmrig_frame *f, struct parts *p)
{
	memcpy(&p->h, frame, sizeof(p->h));
	p->nrefs = f->nbuffers < 64 ? f->nbuffers : 64;
	memcpy(p->refs, f->buffers, p->nrefs * sizeof(struct shmrig_ref));
	p->meta_len = f->meta_len < sizeof(p->meta) ? f->meta_len : sizeof(p->meta);
	memcpy(p->meta, f->meta, p->meta_len);
}

static void agree(struct parts *p)
{
	p->h.nbuffers = p->nrefs;
	p->h.meta_len = (uint32_t)p->meta_len;
}

static int copy_raw(const void *frame, size_t len, struct mutant *m)
{
	m->buf = aligned_alloc(8, (len + 8) & ~(size_t)7);
	if (!m->buf)
		return -ENOMEM;
	memcpy(m->buf, frame, len);
	m->len = len;
	return 0;
}

/* ---- MessagePack for lying and random metadata ---- */

struct mp {
	unsigned char *buf;
	size_t len, cap;
};

static void mp_byte(struct mp *w, unsigned char b)
{
	if (w->len < w->cap)
		w->buf[w->len] = b;
	w->len++;
}

static void mp_be(struct mp *w, uint64_t v, unsigned bytes)
{
	for (unsigned i = bytes; i-- > 0;)
		mp_byte(w, (unsigned char)(v >> (8 * i)));
}

static void mp_uint(struct mp *w, uint64_t v)
{
	if (v < 128)
		mp_byte(w, (unsigned char)v);
	else if (v <= UINT8_MAX)
		mp_byte(w, 0xcc), mp_be(w, v, 1);
	else if (v <= UINT16_MAX)
		mp_byte(w, 0xcd), mp_be(w, v, 2);
	else if (v <= UINT32_MAX)
		mp_byte(w, 0xce), mp_be(w, v, 4);
	else
		mp_byte(w, 0xcf), mp_be(w, v, 8);
}

static void mp_str(struct mp *w, const char *s, size_t len)
{
	if (len < 32)
		mp_byte(w, (unsigned char)(0xa0 | len));
	else
		mp_byte(w, 0xd9), mp_be(w, len, 1);
	for (size_t i = 0; i < len; i++)
		mp_byte(w, (unsigned char)s[i]);
}

/* The k-th of the '\0'-separated keys. */
static const char *nth_key(const char *keys, uint32_t nkeys, uint64_t k)
{
	const char *key = keys;

	for (uint64_t i = 0; i < k % nkeys; i++)
		key += strlen(key) + 1;
	return key;
}

/* A random JSON-compatible document, its map keys mostly the frame's own. */
static void mp_random(struct mp *w, struct val_rng *rng, unsigned depth, const char *keys,
		      uint32_t nkeys)
{
	static const uint64_t lies[] = {
		0,         1,         2,     63,         64,
		255,       4096,      65535, UINT32_MAX, (uint64_t)UINT32_MAX + 1,
		INT64_MAX, UINT64_MAX
	};
	static const char *const words[] = { "C", "F", "float64", "int8", "bool", "x", "" };
	uint64_t pick = val_below(rng, depth >= 4 ? 6 : 8);

	switch (pick) {
	case 0:
		mp_byte(w, val_below(rng, 2) ? 0xc0 : 0xc2 + (unsigned char)val_below(rng, 2));
		break;
	case 1:
	case 2:
		mp_uint(w, lies[val_below(rng, sizeof(lies) / sizeof(lies[0]))]);
		break;
	case 3:
		mp_byte(w, 0xd3);
		mp_be(w, 0 - (1 + val_below(rng, 1000)), 8); /* -1..-1000, two's complement */
		break;
	case 4: {
		double d = (double)(int64_t)val_rand(rng) / 1e9;
		uint64_t bits;

		memcpy(&bits, &d, sizeof(bits));
		mp_byte(w, 0xcb);
		mp_be(w, bits, 8);
		break;
	}
	case 5: {
		const char *s = words[val_below(rng, sizeof(words) / sizeof(words[0]))];

		if (nkeys && val_below(rng, 2))
			s = nth_key(keys, nkeys, val_rand(rng));
		mp_str(w, s, strlen(s));
		break;
	}
	case 6: {
		uint64_t n = val_below(rng, 5);

		mp_byte(w, (unsigned char)(0x90 | n));
		for (uint64_t i = 0; i < n; i++)
			mp_random(w, rng, depth + 1, keys, nkeys);
		break;
	}
	default: {
		uint64_t n = val_below(rng, 5);

		mp_byte(w, (unsigned char)(0x80 | n));
		for (uint64_t i = 0; i < n; i++) {
			/* distinct keys: the k-th key plus its position when there are few */
			char key[48];

			if (nkeys && i < nkeys)
				snprintf(key, sizeof(key), "%s",
					 nth_key(keys, nkeys, val_rand(rng) + i));
			else
				snprintf(key, sizeof(key), "k%llu", (unsigned long long)i);
			mp_str(w, key, strlen(key));
			mp_random(w, rng, depth + 1, keys, nkeys);
		}
		break;
	}
	}
}

/* ---- the mutations ---- */

static void lying_meta(struct parts *p, struct val_rng *rng, char *what, size_t what_len)
{
	static const uint64_t lies[] = { 0,         1,          255,
					 65536,     UINT32_MAX, (uint64_t)UINT32_MAX + 1,
					 INT64_MAX, UINT64_MAX };
	struct val_meta_item items[256];
	unsigned char rest[sizeof(p->meta)];
	uint32_t n = val_meta_items(p->meta, p->meta_len, items, 256);
	const struct val_meta_item *it;
	struct mp w = { .buf = p->meta, .cap = sizeof(p->meta) };
	uint64_t lie;
	size_t tail;

	if (!n) {
		snprintf(what, what_len, "lying meta: no integer to change; meta emptied");
		p->meta_len = 0;
		return;
	}
	it = &items[val_below(rng, n)];
	if (it->container) {
		unsigned char *b = &p->meta[it->offset];
		int delta = val_below(rng, 2) ? 1 : -1;

		if (it->width == 1) { /* fixarray or fixmap: the count in the low 4 bits */
			unsigned count = (*b & 0x0f) + (unsigned)delta;

			*b = (unsigned char)((*b & 0xf0) | (count & 0x0f));
		} else { /* array/map 16/32: a huge count, or off by one */
			uint64_t count = val_below(rng, 2) ? UINT32_MAX : 1;

			for (unsigned i = it->width - 1; i >= 1; i--, count >>= 8)
				b[i] = (unsigned char)count;
		}
		snprintf(what, what_len, "lying meta: a container count at byte %u changed",
			 it->offset);
		return;
	}
	/* an integer: write the lie, then the rest of the document after it */
	tail = p->meta_len - it->offset - it->width;
	memcpy(rest, p->meta + it->offset + it->width, tail);
	w.len = it->offset;
	lie = lies[val_below(rng, sizeof(lies) / sizeof(lies[0]))];
	mp_uint(&w, lie);
	if (w.len + tail > w.cap) {
		snprintf(what, what_len, "lying meta: no room; unchanged");
		return;
	}
	memcpy(p->meta + w.len, rest, tail);
	p->meta_len = w.len + tail;
	snprintf(what, what_len, "lying meta: the integer at byte %u became %llu", it->offset,
		 (unsigned long long)lie);
}

static int mutate(enum mutation kind, struct val_rng *rng, const void *frame, size_t len,
		  const struct shmrig_frame *f, const void *other_frame,
		  const struct shmrig_frame *other, int ncodecs, struct parts *p, struct mutant *m)
{
	unsigned other_codec = other->codec_id;

	size_t what_len = sizeof(m->what);
	char *what = m->what;

	split(frame, f, p);
	switch (kind) {
	case BIT_FLIPS: {
		int ret = copy_raw(frame, len, m);
		unsigned flips = 1 + (unsigned)val_below(rng, 4);
		size_t first = 0;

		for (unsigned i = 0; !ret && i < flips; i++) {
			size_t bit = (size_t)val_below(rng, (uint64_t)len * 8);

			((unsigned char *)m->buf)[bit / 8] ^= (unsigned char)(1u << (bit % 8));
			first = i ? first : bit;
		}
		snprintf(what, what_len, "bit flips: %u, the first at bit %zu of %zu bytes", flips,
			 first, len);
		return ret;
	}
	case TRUNCATION: {
		size_t cut = (size_t)val_below(rng, len);

		snprintf(what, what_len, "truncation to %zu of %zu bytes", cut, len);
		return copy_raw(frame, cut, m);
	}
	case HEADER_LIES:
		switch (val_below(rng, 4)) {
		case 0:
			p->h.nbuffers += val_below(rng, 2) ? 1 : UINT32_MAX; /* +1 or -1 */
			snprintf(what, what_len, "header lies: nbuffers %u -> %u", f->nbuffers,
				 p->h.nbuffers);
			break;
		case 1:
			p->h.meta_len += val_below(rng, 2) ? 1 : UINT32_MAX;
			snprintf(what, what_len, "header lies: meta_len %u -> %u", f->meta_len,
				 p->h.meta_len);
			break;
		case 2:
			p->h.nbuffers = UINT32_MAX;
			p->h.meta_len = UINT32_MAX;
			snprintf(what, what_len, "header lies: nbuffers and meta_len 0xffffffff");
			break;
		default: /* a codec nobody has (other codecs are theirs to test) */
			p->h.codec_id = (uint16_t)(ncodecs + (int)val_below(rng, 16));
			snprintf(what, what_len, "header lies: codec id %u -> %u", f->codec_id,
				 p->h.codec_id);
			break;
		}
		return assemble(p, m);
	case SWAPPED_REFS:
		if (p->nrefs >= 2) {
			uint32_t a = (uint32_t)val_below(rng, p->nrefs);
			uint32_t b = (a + 1 + (uint32_t)val_below(rng, p->nrefs - 1)) % p->nrefs;
			struct shmrig_ref tmp = p->refs[a];

			p->refs[a] = p->refs[b];
			p->refs[b] = tmp;
			snprintf(what, what_len, "swapped refs: buffers %u and %u", a, b);
		} else if (p->nrefs && other->nbuffers) {
			p->refs[0] = other->buffers[val_below(rng, other->nbuffers)];
			snprintf(what, what_len, "swapped refs: buffer 0 from another frame");
		} else {
			snprintf(what, what_len, "swapped refs: no buffer to swap; unchanged");
		}
		agree(p);
		return assemble(p, m);
	case REF_COUNTS:
		if (p->nrefs && val_below(rng, 2)) {
			uint32_t drop = (uint32_t)val_below(rng, p->nrefs);

			memmove(&p->refs[drop], &p->refs[drop + 1],
				(p->nrefs - drop - 1) * sizeof(p->refs[0]));
			p->nrefs--;
			snprintf(what, what_len, "ref counts: buffer %u dropped", drop);
		} else if (p->nrefs && p->nrefs < 64) {
			uint32_t dup = (uint32_t)val_below(rng, p->nrefs);

			p->refs[p->nrefs++] = p->refs[dup];
			snprintf(what, what_len, "ref counts: buffer %u twice", dup);
		} else if (other->nbuffers && p->nrefs < 64) {
			p->refs[p->nrefs++] = other->buffers[0];
			snprintf(what, what_len, "ref counts: a buffer of another frame added");
		} else {
			snprintf(what, what_len, "ref counts: nothing to change");
		}
		agree(p);
		return assemble(p, m);
	case REF_FIELDS:
		if (p->nrefs) {
			uint32_t i = (uint32_t)val_below(rng, p->nrefs);
			struct shmrig_ref *r = &p->refs[i];

			switch (val_below(rng, 6)) {
			case 0:
				r->content_size = val_below(rng, 2) ? 0 : r->size;
				snprintf(what, what_len, "ref fields: buffer %u content_size %llu",
					 i, (unsigned long long)r->content_size);
				break;
			case 1:
				r->content_size += r->content_size < r->size ? 1 : UINT64_MAX;
				snprintf(what, what_len,
					 "ref fields: buffer %u content_size off by one", i);
				break;
			case 2:
				r->offset += val_below(rng, 2) ? 64 : (uint64_t)-64;
				snprintf(what, what_len, "ref fields: buffer %u offset moved", i);
				break;
			case 3:
				r->size = val_below(rng, 2) ? r->size * 2 : r->content_size;
				snprintf(what, what_len, "ref fields: buffer %u size %llu", i,
					 (unsigned long long)r->size);
				break;
			case 4:
				r->generation++;
				snprintf(what, what_len, "ref fields: buffer %u generation + 1", i);
				break;
			default:
				r->temporary ^= 1;
				snprintf(what, what_len,
					 "ref fields: buffer %u temporary flag flipped", i);
				break;
			}
		} else {
			snprintf(what, what_len, "ref fields: no buffer; unchanged");
		}
		return assemble(p, m);
	case LYING_META:
		lying_meta(p, rng, what, what_len);
		agree(p);
		return assemble(p, m);
	case FOREIGN_FRAME: /* `other` is another codec's frame here, when there is one */
		split(other_frame, other, p);
		p->h.codec_id = f->codec_id;
		snprintf(what, what_len, "foreign frame: a frame of codec %u read as codec %u's",
			 other_codec, f->codec_id);
		return assemble(p, m);
	default: { /* RANDOM_META */
		char keys[1024];
		uint32_t nkeys = val_meta_keys(f->meta, f->meta_len, keys, sizeof(keys));
		struct mp w = { .buf = p->meta, .cap = RANDOM_META_MAX };

		if (val_below(rng, 4) == 0) {
			w.len = 1 + (size_t)val_below(rng, 64);
			val_fill(rng, p->meta, w.len);
			snprintf(what, what_len, "random meta: %zu random bytes", w.len);
		} else {
			mp_random(&w, rng, 0, keys, nkeys);
			if (w.len > w.cap)
				w.len = w.cap; /* cut short: a truncated document */
			snprintf(what, what_len, "random meta: a %zu-byte document", w.len);
		}
		p->meta_len = w.len;
		agree(p);
		return assemble(p, m);
	}
	}
}

static const char *const mutation_names[NMUTATIONS] = {
	"bit flips",  "truncation", "header lies", "swapped refs",   "ref counts",
	"ref fields", "lying meta", "random meta", "foreign frames",
};

/*
 * A frame of another codec of the subject, for the value of this index
 * (values of a kind the codec under test takes go to it: then the frame is
 * its own, which is no foreign frame but harmless). 1 if there is no other
 * codec, or it declines the value.
 */
static int foreign_frame(struct val_ctx *ctx, shmrig_pool *pool, uint32_t index, void **frame,
			 size_t *len)
{
	const struct val_subject *subject = ctx->target->subject;
	uint32_t self = (uint32_t)(ctx->target->codec - subject->codecs), other;
	struct val_target t = *ctx->target;
	struct val_value v;
	char err[256];
	int ret;

	if (subject->ncodecs < 2)
		return 1;
	other = (self + 1 + index % (subject->ncodecs - 1)) % subject->ncodecs;
	t.codec = &subject->codecs[other];
	memset(t.tags, 0, sizeof(t.tags));
	for (uint32_t k = 0; k < t.codec->nkinds; k++) {
		int tag = 0;

		/* the same name gives the same tag, frozen registry or not */
		if (t.codec->gens[k]->kind == SHMRIG_KIND_USER)
			tag = shmrig_registry_user_type(t.reg, t.codec->gens[k]->user_type);
		if (tag < 0)
			return 1;
		t.tags[k] = (uint32_t)tag;
	}
	if (val_value_make(&t, ctx->opt->seed, index, HOSTILE_MAX_BYTES, &v, err, sizeof(err)))
		return 1;
	ret = v.accepted ? shmrig_registry_encode(t.reg, pool, &v.value, frame, len) : 1;
	val_value_free(&v);
	return ret ? 1 : 0;
}

enum val_verdict val_check_hostile_mutations(struct val_ctx *ctx)
{
	struct val_iter it = { .ctx = ctx, .max_bytes = HOSTILE_MAX_BYTES };
	uint64_t refused = 0, decoded = 0;
	int ncodecs = shmrig_registry_count(ctx->target->reg);
	char err[VAL_MSG_MAX / 2], name[96];
	struct parts *parts = malloc(sizeof(*parts));
	struct val_value v;
	shmrig_pool *pool = NULL;
	int ret;

	if (!parts)
		return val_fail(ctx, "out of memory");
#ifndef UNDER_ASAN
	{
		struct rlimit limit = { HOSTILE_DATA_LIMIT, HOSTILE_DATA_LIMIT };

		(void)setrlimit(RLIMIT_DATA, &limit); /* a bound, not a requirement */
	}
#endif
	if (it.max_bytes > ctx->opt->max_bytes)
		it.max_bytes = ctx->opt->max_bytes;
	ret = val_pool_open(ctx, 0, HOSTILE_POOL_MAX, &pool);
	if (ret) {
		free(parts);
		return val_fail(ctx, "pool_open: %s", val_error(ret, err, sizeof(err)));
	}
	while ((ret = val_next(&it, &v)) == 0) {
		val_value_name(&v, name, sizeof(name));
		if (v.index % 50 == 0)
			val_progress(ctx, "value %u of %u", v.index, ctx->opt->values);
		for (uint32_t k = 0; k < MUTATIONS_PER_VALUE && !ret; k++) {
			enum mutation kind =
				(enum mutation)((v.index * MUTATIONS_PER_VALUE + k) % NMUTATIONS);
			struct shmrig_frame f, other;
			struct mutant m = { 0 };
			struct shmrig_value out;
			void *frame, *frame2;
			size_t len, len2;
			struct val_rng rng;

			val_rng_init(&rng, ctx->opt->seed,
				     0x4d55544154450000ull + v.index * MUTATIONS_PER_VALUE + k);
			ret = val_encode(ctx, pool, &v, &frame, &len);
			if (ret)
				break;
			/* a second frame: refs to take from, handed to us like the first;
			 * another codec's for the foreign frames */
			if (kind != FOREIGN_FRAME ||
			    foreign_frame(ctx, pool, v.index * MUTATIONS_PER_VALUE + k, &frame2,
					  &len2))
				ret = val_encode(ctx, pool, &v, &frame2, &len2);
			if (ret) {
				val_frame_drop(pool, frame, len);
				break;
			}
			(void)!shmrig_frame_parse(frame, len, &f); /* val_encode parsed both */
			(void)!shmrig_frame_parse(frame2, len2, &other);
			ret = mutate(kind, &rng, frame, len, &f, frame2, &other, ncodecs, parts,
				     &m);
			if (ret) {
				val_fail(ctx, "out of memory for a mutated frame");
			} else {
				val_at(ctx, "%s, mutation %u of %u: %s", name, k + 1,
				       MUTATIONS_PER_VALUE, m.what);
				ret = shmrig_registry_decode(ctx->target->reg, pool, m.buf, m.len,
							     &out);
				if (ret == 0) {
					decoded++;
					ret = shmrig_value_release(&out);
					if (ret)
						val_fail(ctx,
							 "%s, mutation %u (%s): decoded, then "
							 "value_release: %s",
							 name, k + 1, m.what,
							 val_error(ret, err, sizeof(err)));
				} else {
					refused++;
					ret = 0;
				}
			}
			free(m.buf);
			val_frame_drop(pool, frame, len);
			val_frame_drop(pool, frame2, len2);
			if (!ret && val_live_blocks(pool) != 0) {
				val_fail(ctx,
					 "%s, mutation %u (%s): %llu blocks live after the decode "
					 "and the discard of the original frames, 0 expected",
					 name, k + 1, m.what,
					 (unsigned long long)val_live_blocks(pool));
				ret = -EBADMSG;
			}
		}
		val_value_free(&v);
		if (ret)
			break;
		ctx->values++;
	}
	free(parts);
	if (ret < 0)
		return VAL_FAIL;
	ret = shmrig_pool_audit(pool);
	if (ret)
		return val_fail(ctx, "after the mutation run the pool fails its audit: %s",
				val_error(ret, err, sizeof(err)));
	if (ctx->values)
		val_pass(ctx, "%llu mutated frames (%s ... %s): %llu refused, %llu decoded",
			 (unsigned long long)(refused + decoded), mutation_names[0],
			 mutation_names[NMUTATIONS - 1], (unsigned long long)refused,
			 (unsigned long long)decoded);
	return val_finish(ctx, &it, pool);
}
