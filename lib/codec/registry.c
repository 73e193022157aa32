/* SPDX-License-Identifier: MIT */
/*
 * registry: ordered codecs, first-match encode, id-dispatched decode, and the
 * per-call encoder and decoder state that codecs see.
 */
#include "base/internal.h"
#include "pool/handover.h"
#include "codec/builtins.h"
#include "codec/meta.h"
#include "codec/flat.h"
#include "codec/storage.h"

#include <shmrig/frame.h>
#include <shmrig/registry.h>

#include <errno.h>
#include <pthread.h>
#include <stddef.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#define NAME_MAX_LEN 31
#define MAX_USER_TYPES 256

struct shmrig_registry {
	struct shmrig_codec codecs[SHMRIG_MAX_CODECS];
	int count;
	int fallback; /* id, or -1 */
	atomic_bool frozen;
	/* Per kind, the ids of the codecs that take it, in registration order:
	 * encode asks these only. Built when the registry freezes. */
	uint16_t *candidates[SHMRIG_KIND_COUNT];
	uint32_t ncandidates[SHMRIG_KIND_COUNT];
	char *user_types[MAX_USER_TYPES];
	int nuser_types;
	/* Per codec, the tag of its user_type; 0: it takes any user type. */
	uint32_t user_tags[SHMRIG_MAX_CODECS];
	uint32_t flags; /* SHMRIG_REGISTRY_*: set before the registry freezes */
	pthread_mutex_t freeze_lock;
	/* The metadata the last decode unpacked, kept for the next (one per
	 * registry; a decode that finds none, as when threads decode at once,
	 * makes its own) */
	_Atomic(struct meta_memo *) spare_memo;
};

/*
 * Metadata unpacked, with the bytes it came from: a stream of frames of one
 * shape (the same dtype and shape, a run of calls) has the same metadata every
 * time, and a decode whose metadata equals these bytes uses `obj` as it is,
 * checked and unpacked once (two thirds of a small decode). The bytes are our
 * copy: nothing is read again from the frame after the comparison.
 */
#define MEMO_BYTES 256
struct meta_memo {
	msgpack_zone *zone; /* obj's nodes */
	msgpack_object obj;
	size_t len; /* of bytes; 0: no valid obj */
	unsigned char bytes[MEMO_BYTES];
};

static struct meta_memo *memo_new(void)
{
	struct meta_memo *m = malloc(sizeof(*m));

	if (m && !(m->zone = msgpack_zone_new(MSGPACK_ZONE_CHUNK_SIZE))) {
		free(m);
		m = NULL;
	}
	if (m)
		m->len = 0;
	return m;
}

static void memo_free(struct meta_memo *m)
{
	if (m) {
		msgpack_zone_free(m->zone);
		free(m);
	}
}

/* A decode's memo back to the registry for the next (or freed, if another
 * decode put one back meanwhile). */
static void memo_put_back(shmrig_registry *reg, struct meta_memo *memo)
{
	struct meta_memo *none = NULL;

	if (!memo->len) /* nothing kept: give back what a large metadata took */
		msgpack_zone_clear(memo->zone);
	if (!atomic_compare_exchange_strong_explicit(&reg->spare_memo, &none, memo,
						     memory_order_release, memory_order_relaxed))
		memo_free(memo);
}

/*
 * m->obj = the metadata meta[0..len), checked and unpacked, or remembered.
 * msgpack-c's strings point into the bytes they were unpacked from: metadata
 * that fits is copied first and unpacked from our copy, which lives as long as
 * obj; larger metadata is unpacked from the frame, and obj is good only while
 * the caller's frame is (one decode).
 */
static int memo_unpack(struct meta_memo *m, const void *meta, size_t len)
{
	bool keep = len && len <= MEMO_BYTES;
	int ret;

	if (m->len && m->len == len && memcmp(m->bytes, meta, len) == 0)
		return 0;
	m->len = 0;
	msgpack_zone_clear(m->zone);
	if (keep)
		memcpy(m->bytes, meta, len);
	ret = shmrig__meta_unpack(keep ? m->bytes : meta, len, m->zone, &m->obj);
	if (!ret && keep)
		m->len = len;
	return ret;
}

/* Ref lists start in place, as the metadata does (meta.h): most are small, and
 * a malloc per encode would cost more than the rest of a small encode. */
#define INLINE_REFS 4
/* A flat encode's buffers up to this many bytes in all need no malloc. */
#define FLAT_SCRATCH 4096

struct flat_scratch {
	_Alignas(SHMRIG_POOL_MIN_BLOCK) unsigned char bytes[FLAT_SCRATCH];
	void *out;      /* the caller's buffer for the result, or NULL */
	size_t out_cap; /* its bytes */
};

/* A flat encode's buffer that did not fit the scratch: 64-aligned, as blocks are. */
struct flat_chunk {
	struct flat_chunk *next;
	_Alignas(SHMRIG_POOL_MIN_BLOCK) unsigned char data[];
};

struct shmrig_encoder {
	/* first: the shmrig_meta_put_*() calls (meta.c) reach it by a cast */
	struct shmrig__meta_writer meta;
	shmrig_pool *pool;
	const char *codec_name;
	struct shmrig_ref *refs;
	uint32_t nrefs;
	uint32_t cap;
	struct shmrig_ref inline_refs[INLINE_REFS];
	/* the pack: a block the following buffers are carved from */
	bool packing;
	struct shmrig_ref pack_ref;
	char *pack_data;
	size_t pack_used;
	/* shmrig__registry_encode_flat: buffers in host memory, no block; each
	 * ref's offset holds its buffer's address until the flat form is built */
	bool flat;
	size_t flat_used;                  /* bytes of *flat_scratch handed out */
	struct flat_chunk *flat_chunks;    /* buffers that did not fit the scratch */
	struct flat_scratch *flat_scratch; /* the flat encode's (its stack): apart,
					    * so the pool's encode keeps a small frame */
	/* SHMRIG_REGISTRY_GUARD: every buffer is followed by guard bytes (below) */
	struct encoder_guard {
		bool on;
		char **data;  /* per buffer (as refs): where it starts, its guard at content_size */
		uint32_t cap; /* entries of data */
		size_t pack_room;   /* bytes of the pack the codec may use: as if unguarded */
		size_t pack_offset; /* where the next buffer goes: pack_used plus the guards */
	} guard;
};

_Static_assert(offsetof(struct shmrig_encoder, meta) == 0, "meta.c casts an encoder to its writer");

struct shmrig_decoder {
	shmrig_pool *pool;
	const char *codec_name;
	const struct shmrig_frame *frame;
	const msgpack_object *meta;
	uint8_t *asked;   /* per buffer: 0 not yet, 1 handed out */
	uint8_t *claimed; /* per buffer: 1 its reference is ours (claimed at the start) */
	void **data;      /* per buffer: where it is mapped (claimed ones) */
	struct shmrig_value_storage *storage;
	bool flat; /* data[] views a flat form's bytes (ours until decode returns): no
		    * block, nothing claimed; a view is a copy in the storage */
};

int shmrig_registry_create(shmrig_registry **out)
{
	shmrig_registry *reg;

	if (!out)
		return shmrig__fail(-EINVAL, "registry_create: NULL out");
	reg = calloc(1, sizeof(*reg));
	if (!reg)
		return shmrig__fail(-ENOMEM, "registry_create: out of memory");
	reg->fallback = -1;
	pthread_mutex_init(&reg->freeze_lock, NULL);
	*out = reg;
	return 0;
}

void shmrig_registry_free(shmrig_registry *reg)
{
	if (!reg)
		return;
	for (int k = 0; k < SHMRIG_KIND_COUNT; k++)
		free(reg->candidates[k]);
	for (int i = 0; i < reg->nuser_types; i++)
		free(reg->user_types[i]);
	memo_free(atomic_load(&reg->spare_memo));
	pthread_mutex_destroy(&reg->freeze_lock);
	free(reg);
}

/* Id of a codec by name, -1 if none (no error recorded: register uses it). */
static int find(const shmrig_registry *reg, const char *name)
{
	for (int i = 0; i < reg->count; i++)
		if (strcmp(reg->codecs[i].name, name) == 0)
			return i;
	return -1;
}

int shmrig_registry_register(shmrig_registry *reg, const struct shmrig_codec *user_codec)
{
	struct shmrig_codec local;
	const struct shmrig_codec *codec = &local;
	int ret;

	if (!reg || !user_codec)
		return shmrig__fail(-EINVAL, "register: NULL argument");
	ret = shmrig__sized_in(&local, sizeof(local), user_codec, "register: struct shmrig_codec");
	if (ret)
		return ret;
	if (atomic_load(&reg->frozen))
		return shmrig__fail(-EBUSY, "register '%s': the registry is in use (frozen)",
				    codec->name ? codec->name : "?");
	if (!shmrig__valid_name(codec->name, NAME_MAX_LEN))
		return shmrig__fail(-EINVAL, "register: codec name must be 1..%d of [A-Za-z0-9_.-]",
				    NAME_MAX_LEN);
	if (!codec->kinds || codec->kinds >> SHMRIG_KIND_COUNT)
		return shmrig__fail(-EINVAL,
				    "register '%s': kinds 0x%x is not a set of value kinds",
				    codec->name, codec->kinds);
	if (!codec->encode || !codec->decode)
		return shmrig__fail(-EINVAL, "register '%s': encode and decode are required",
				    codec->name);
	if (codec->flags & ~SHMRIG_CODEC_FLAGS_ALL)
		return shmrig__fail(-EINVAL, "register '%s': unknown flags 0x%x", codec->name,
				    codec->flags & ~SHMRIG_CODEC_FLAGS_ALL);
	if (find(reg, codec->name) >= 0)
		return shmrig__fail(-EEXIST, "register: a codec named '%s' is registered already",
				    codec->name);
	if ((codec->flags & SHMRIG_CODEC_FALLBACK) && reg->fallback >= 0)
		return shmrig__fail(-EEXIST, "register '%s': '%s' is the fallback already",
				    codec->name, reg->codecs[reg->fallback].name);
	if (reg->count == SHMRIG_MAX_CODECS)
		return shmrig__fail(-ENOSPC, "register '%s': %d codecs is the limit", codec->name,
				    SHMRIG_MAX_CODECS);
	if (codec->user_type) {
		if (!(codec->kinds & SHMRIG_KIND_BIT(SHMRIG_KIND_USER)))
			return shmrig__fail(-EINVAL,
					    "register '%s': user_type '%s' but kinds has no "
					    "SHMRIG_KIND_USER",
					    codec->name, codec->user_type);
		if (!shmrig__valid_name(codec->user_type, NAME_MAX_LEN))
			return shmrig__fail(-EINVAL,
					    "register '%s': user_type must be 1..%d of [A-Za-z0-9_.-]",
					    codec->name, NAME_MAX_LEN);
		/* the last check: a failed register adds no type */
		ret = shmrig_registry_user_type(reg, codec->user_type);
		if (ret < 0)
			return ret;
	}
	reg->user_tags[reg->count] = codec->user_type ? (uint32_t)ret : 0;
	reg->codecs[reg->count] = *codec;
	if (codec->flags & SHMRIG_CODEC_FALLBACK)
		reg->fallback = reg->count;
	return reg->count++;
}

int shmrig_registry_set_flags(shmrig_registry *reg, uint32_t flags)
{
	if (!reg)
		return shmrig__fail(-EINVAL, "registry_set_flags: NULL registry");
	if (flags & ~SHMRIG_REGISTRY_FLAGS_ALL)
		return shmrig__fail(-EINVAL, "registry_set_flags: unknown flags 0x%x",
				    flags & ~SHMRIG_REGISTRY_FLAGS_ALL);
	/* encodes read the flags without a lock: they must not change once one may run */
	if (atomic_load(&reg->frozen))
		return shmrig__fail(-EBUSY, "registry_set_flags: the registry is in use (frozen)");
	reg->flags = flags;
	return 0;
}

int shmrig_registry_user_type(shmrig_registry *reg, const char *name)
{
	if (!reg || !shmrig__valid_name(name, NAME_MAX_LEN))
		return shmrig__fail(-EINVAL, "user_type: bad registry or name");
	for (int i = 0; i < reg->nuser_types; i++)
		if (strcmp(reg->user_types[i], name) == 0)
			return i + 1;
	if (atomic_load(&reg->frozen))
		return shmrig__fail(-EBUSY, "user_type '%s': the registry is in use (frozen)",
				    name);
	if (reg->nuser_types == MAX_USER_TYPES)
		return shmrig__fail(-ENOSPC, "user_type '%s': %d types is the limit", name,
				    MAX_USER_TYPES);
	reg->user_types[reg->nuser_types] = strdup(name);
	if (!reg->user_types[reg->nuser_types])
		return shmrig__fail(-ENOMEM, "user_type: out of memory");
	return ++reg->nuser_types;
}

/* Write "'a', 'b', ..." into buf: the codecs there are, for error messages. */
static const char *codec_list(const shmrig_registry *reg, char *buf, size_t len)
{
	size_t used = 0;

	buf[0] = '\0';
	for (int i = 0; i < reg->count && used < len; i++)
		used += (size_t)snprintf(buf + used, len - used, "%s'%s'", i ? ", " : "",
					 reg->codecs[i].name);
	if (!reg->count)
		snprintf(buf, len, "none");
	return buf;
}

int shmrig_registry_lookup(const shmrig_registry *reg, const char *name)
{
	char list[512];
	int id;

	if (!reg || !name)
		return shmrig__fail(-EINVAL, "lookup: NULL argument");
	id = find(reg, name);
	if (id >= 0)
		return id;
	return shmrig__fail(-ENOENT, "no codec named '%s' (registered: %s)", name,
			    codec_list(reg, list, sizeof(list)));
}

const char *shmrig_registry_codec_name(const shmrig_registry *reg, int id)
{
	return reg && id >= 0 && id < reg->count ? reg->codecs[id].name : NULL;
}

int shmrig_registry_count(const shmrig_registry *reg)
{
	return reg ? reg->count : 0;
}

uint64_t shmrig_registry_fingerprint(const shmrig_registry *reg)
{
	XXH3_state_t *state = XXH3_createState();
	uint64_t hash;

	if (!reg || !state) {
		XXH3_freeState(state);
		return 0;
	}
	XXH3_64bits_reset(state);
	/* the NUL separates the names: ("ab", "c") and ("a", "bc") differ */
	for (int i = 0; i < reg->count; i++)
		XXH3_64bits_update(state, reg->codecs[i].name, strlen(reg->codecs[i].name) + 1);
	hash = XXH3_64bits_digest(state);
	XXH3_freeState(state);
	return hash;
}

/* Build the per-kind candidate lists once; after this the registry is read-only. */
static int freeze(shmrig_registry *reg)
{
	int ret = 0;

	if (SHMRIG_LIKELY(atomic_load_explicit(&reg->frozen, memory_order_acquire)))
		return 0;
	pthread_mutex_lock(&reg->freeze_lock);
	if (!atomic_load_explicit(&reg->frozen, memory_order_relaxed)) {
		for (int k = 0; k < SHMRIG_KIND_COUNT && !ret; k++) {
			reg->candidates[k] = malloc(((size_t)reg->count + 1) * sizeof(uint16_t));
			if (!reg->candidates[k]) {
				ret = shmrig__fail(-ENOMEM, "registry: out of memory");
				break;
			}
			for (int i = 0; i < reg->count; i++)
				if (reg->codecs[i].kinds & SHMRIG_KIND_BIT(k))
					reg->candidates[k][reg->ncandidates[k]++] = (uint16_t)i;
		}
		if (!ret)
			atomic_store_explicit(&reg->frozen, true, memory_order_release);
	}
	pthread_mutex_unlock(&reg->freeze_lock);
	return ret;
}

/* ---- encode ---- */

size_t shmrig_pack_size(size_t size)
{
	return (size + SHMRIG_POOL_MIN_BLOCK - 1) / SHMRIG_POOL_MIN_BLOCK * SHMRIG_POOL_MIN_BLOCK;
}

static int add_ref(struct shmrig_encoder *enc, const struct shmrig_ref *ref)
{
	if (enc->nrefs == SHMRIG_FRAME_MAX_BUFFERS)
		return shmrig__fail(-ENOSPC, "codec '%s': more than %u buffers", enc->codec_name,
				    SHMRIG_FRAME_MAX_BUFFERS);
	if (enc->nrefs == enc->cap) {
		uint32_t cap = enc->cap * 2;
		struct shmrig_ref *grown = malloc(cap * sizeof(*grown));

		if (!grown)
			return shmrig__fail(-ENOMEM, "encode: out of memory");
		memcpy(grown, enc->refs, enc->nrefs * sizeof(*grown));
		if (enc->refs != enc->inline_refs)
			free(enc->refs);
		enc->refs = grown;
		enc->cap = cap;
	}
	enc->refs[enc->nrefs] = *ref;
	return (int)enc->nrefs++;
}

/* Free a buffer of a failed encode: handed to us (claimed first) or not. */
static void drop_ref(shmrig_pool *pool, const struct shmrig_ref *ref)
{
	(void)!shmrig__pool_drop(pool, ref); /* best effort: the encode failed already */
}

/* ---- guards (SHMRIG_REGISTRY_GUARD) ----
 *
 * The bytes past a buffer's content_size are inside its block: the pool does
 * not see a codec write there, nor does a sanitizer (the block is shared
 * memory we mapped, all of it ours), and the receiver never reads them, so
 * the bug stays hidden until the bytes are someone's (the next buffer of a
 * pack, the next block of a class). With the flag each buffer gets GUARD
 * bytes of its own right at content_size, filled with a pattern of its index,
 * and the encode checks them when the codec returns.
 */
#define GUARD SHMRIG_REGISTRY_GUARD_BYTES

_Static_assert(GUARD % SHMRIG_POOL_MIN_BLOCK == 0, "a pack's buffers stay 64-byte aligned");

/*
 * The guard of buffer `index`: bytes that depend on the index, not a constant
 * a codec could write by accident. Each is odd and in 0x81..0xfd: never NUL,
 * 0xff, ASCII or an even fill byte (0xaa, 0xcc...), so a terminator, text or
 * a memset past the end always shows.
 */
static void guard_pattern(uint32_t index, unsigned char out[GUARD])
{
	for (unsigned w = 0; w < GUARD / 8; w++) {
		uint64_t z = 0x5348524947554152ull ^ ((uint64_t)index << 8 | w); /* "SHRIGUAR" */

		z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull; /* splitmix64's mix */
		z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
		z ^= z >> 31;
		for (unsigned b = 0; b < 8; b++)
			out[w * 8 + b] = (unsigned char)(0x81 + 2 * ((z >> (8 * b)) % 63));
	}
}

/* The first guard that changed: -EFAULT with the codec, the buffer and where. */
static int guard_check(const struct shmrig_encoder *enc)
{
	unsigned char want[GUARD];

	for (uint32_t i = 0; i < enc->nrefs; i++) {
		const unsigned char *guard =
			(const unsigned char *)enc->guard.data[i] + enc->refs[i].content_size;
		unsigned changed = 0, first = 0;

		guard_pattern(i, want);
		if (memcmp(guard, want, GUARD) == 0)
			continue;
		for (unsigned j = GUARD; j-- > 0;)
			if (guard[j] != want[j]) {
				changed++;
				first = j;
			}
		return shmrig__fail(-EFAULT,
				    "codec '%s' wrote past content_size of buffer %u (%u bytes, "
				    "first at offset +%u)",
				    enc->codec_name, i, changed, first);
	}
	return 0;
}

/* shmrig_encoder_buffer with a guard after the buffer (flags checked). */
static int guarded_buffer(struct shmrig_encoder *enc, size_t size, uint32_t alloc_flags,
			  void **data)
{
	uint32_t index = enc->nrefs;
	struct shmrig_ref ref;
	char *p;
	int ret;

	/* room to remember where it is first: a failure after the alloc would leak it */
	if (index == enc->guard.cap) {
		uint32_t cap = enc->guard.cap ? enc->guard.cap * 2 : INLINE_REFS;
		char **grown = realloc(enc->guard.data, cap * sizeof(*grown));

		if (!grown)
			return shmrig__fail(-ENOMEM, "encode: out of memory");
		enc->guard.data = grown;
		enc->guard.cap = cap;
	}
	if (enc->packing) {
		/* the room the codec sees is the unguarded pack's: the same buffers fit */
		size_t need = shmrig_pack_size(size ? size : 1);

		if (need > enc->guard.pack_room - enc->pack_used)
			return shmrig__fail(-ENOSPC,
					    "codec '%s': a %zu-byte buffer does not fit the pack "
					    "(%zu of %zu bytes used)",
					    enc->codec_name, size, enc->pack_used,
					    enc->guard.pack_room);
		ret = shmrig_pool_subref(enc->pool, &enc->pack_ref, enc->guard.pack_offset,
					 need + GUARD, size, alloc_flags, &ref);
		if (ret)
			return ret;
		p = enc->pack_data + enc->guard.pack_offset;
		enc->pack_used += need;
		enc->guard.pack_offset += need + GUARD;
	} else {
		void *block;

		/* past SIZE_MAX: the pool refuses it as over its limit, in its words */
		ret = shmrig__pool_alloc_handed(enc->pool,
						size <= SIZE_MAX - GUARD ? size + GUARD : SIZE_MAX,
						alloc_flags, 0, &ref, &block);
		if (ret)
			return ret;
		ref.content_size = size; /* the guard is past it */
		p = block;
	}
	guard_pattern(index, (unsigned char *)p + size);
	ret = add_ref(enc, &ref);
	if (ret < 0) {
		drop_ref(enc->pool, &ref);
		return ret;
	}
	enc->guard.data[index] = p;
	*data = p;
	return ret;
}

/* How much to allocate for a guarded pack of `capacity`, and the room the codec gets. */
static size_t guarded_pack_size(size_t capacity, size_t *room)
{
	size_t guards;

	/* no pool gives this much: let it refuse in its words */
	if (capacity > SIZE_MAX / 4) {
		*room = capacity;
		return SIZE_MAX;
	}
	*room = shmrig_pool_block_size(capacity);
	/* each buffer takes 64 bytes of the room at least, and a frame has so many */
	guards = *room / SHMRIG_POOL_MIN_BLOCK;
	if (guards > SHMRIG_FRAME_MAX_BUFFERS)
		guards = SHMRIG_FRAME_MAX_BUFFERS;
	return *room + guards * GUARD;
}

/* A flat encode's buffer: host memory, 64-aligned, in the scratch while it
 * lasts; its ref names no block (the flat form's), sized as a block or a
 * pack's part would be, its address in offset until build_flat. */
static int flat_buffer(struct shmrig_encoder *enc, size_t size, uint32_t alloc_flags, void **data)
{
	size_t need = shmrig_pack_size(size ? size : 1);
	struct shmrig_ref ref;
	unsigned char *p;
	int ret;

	if (enc->packing && need > enc->pack_ref.size - enc->pack_used)
		return shmrig__fail(-ENOSPC,
				    "codec '%s': a %zu-byte buffer does not fit the pack "
				    "(%zu of %llu bytes used)",
				    enc->codec_name, size, enc->pack_used,
				    (unsigned long long)enc->pack_ref.size);
	if (need <= FLAT_SCRATCH - enc->flat_used) {
		p = enc->flat_scratch->bytes + enc->flat_used;
		enc->flat_used += need;
	} else {
		struct flat_chunk *c;

		if (need > SIZE_MAX - sizeof(*c) - SHMRIG_POOL_MIN_BLOCK)
			return shmrig__fail(-ENOMEM, "encode: a %zu-byte buffer", size);
		c = aligned_alloc(SHMRIG_POOL_MIN_BLOCK, shmrig_pack_size(sizeof(*c)) + need);
		if (!c)
			return shmrig__fail(-ENOMEM, "encode: out of memory for %zu bytes", size);
		c->next = enc->flat_chunks;
		enc->flat_chunks = c;
		p = c->data;
	}
	memset(&ref, 0, sizeof(ref));
	ref.size = enc->packing ? need : shmrig_pool_block_size(size);
	ref.content_size = size;
	ref.temporary = alloc_flags & SHMRIG_ALLOC_TEMPORARY ? 1 : 0;
	ref.offset = (uintptr_t)p;
	if (enc->packing)
		enc->pack_used += need;
	ret = add_ref(enc, &ref);
	if (ret >= 0)
		*data = p;
	return ret;
}

static void flat_chunks_free(struct shmrig_encoder *enc)
{
	while (enc->flat_chunks) {
		struct flat_chunk *next = enc->flat_chunks->next;

		free(enc->flat_chunks);
		enc->flat_chunks = next;
	}
}

int shmrig_encoder_buffer(struct shmrig_encoder *enc, size_t size, uint32_t flags, void **data)
{
	uint32_t alloc_flags = (flags & SHMRIG_BUF_TEMPORARY) ? SHMRIG_ALLOC_TEMPORARY : 0;
	struct shmrig_ref ref;
	void *p;
	int ret;

	if (!enc || !data)
		return shmrig__fail(-EINVAL, "encoder_buffer: NULL argument");
	if (flags & ~SHMRIG_BUF_TEMPORARY)
		return shmrig__fail(-EINVAL, "encoder_buffer: unknown flags 0x%x", flags);
	if (enc->nrefs == SHMRIG_FRAME_MAX_BUFFERS)
		return add_ref(enc, NULL);
	if (SHMRIG_UNLIKELY(enc->guard.on))
		return guarded_buffer(enc, size, alloc_flags, data);
	if (enc->flat)
		return flat_buffer(enc, size, alloc_flags, data);
	if (enc->packing) {
		size_t need = shmrig_pack_size(size ? size : 1);

		if (need > enc->pack_ref.size - enc->pack_used)
			return shmrig__fail(-ENOSPC,
					    "codec '%s': a %zu-byte buffer does not fit the pack "
					    "(%zu of %llu bytes used)",
					    enc->codec_name, size, enc->pack_used,
					    (unsigned long long)enc->pack_ref.size);
		ret = shmrig_pool_subref(enc->pool, &enc->pack_ref, enc->pack_used, need, size,
					 alloc_flags, &ref);
		if (ret)
			return ret;
		p = enc->pack_data + enc->pack_used;
		enc->pack_used += need;
	} else {
		/* in flight to ourselves from the start: no hand-over pass later */
		ret = shmrig__pool_alloc_handed(enc->pool, size, alloc_flags, 0, &ref, &p);
		if (ret)
			return ret;
	}
	ret = add_ref(enc, &ref);
	if (ret < 0) {
		drop_ref(enc->pool, &ref);
		return ret;
	}
	*data = p;
	return ret;
}

int shmrig_encoder_pack(struct shmrig_encoder *enc, size_t capacity)
{
	void *data;
	int ret;

	if (!enc || capacity == 0)
		return shmrig__fail(-EINVAL, "encoder_pack: NULL encoder or capacity 0");
	if (enc->packing)
		return shmrig__fail(-EBUSY, "codec '%s': a pack is open already", enc->codec_name);
	if (SHMRIG_UNLIKELY(enc->guard.on)) {
		capacity = guarded_pack_size(capacity, &enc->guard.pack_room);
		enc->guard.pack_offset = 0;
	}
	if (enc->flat) {
		/* no block: only the pack's room, so that a codec sees what it would */
		memset(&enc->pack_ref, 0, sizeof(enc->pack_ref));
		enc->pack_ref.size = shmrig_pool_block_size(capacity);
		enc->pack_used = 0;
		enc->packing = true;
		return 0;
	}
	ret = shmrig_pool_alloc(enc->pool, capacity, 0, 0, &enc->pack_ref, &data);
	if (ret)
		return ret;
	enc->pack_data = data;
	enc->pack_used = 0;
	enc->packing = true;
	return 0;
}

/* Does codec `id` take user values of `tag`? (Any, if it names no user type.) */
static bool takes_user_type(const shmrig_registry *reg, int id, uint32_t tag)
{
	return !reg->user_tags[id] || reg->user_tags[id] == tag;
}

/* choose() for a user value: only the codecs of its user type or of any are asked. */
static int choose_user(const shmrig_registry *reg, const struct shmrig_value *value)
{
	uint32_t n = reg->ncandidates[SHMRIG_KIND_USER];
	const uint16_t *ids = reg->candidates[SHMRIG_KIND_USER];

	for (uint32_t i = 0; i < n; i++) {
		const struct shmrig_codec *c = &reg->codecs[ids[i]];

		if (takes_user_type(reg, ids[i], value->user_type) &&
		    (!c->can_encode || c->can_encode(c->ctx, value)))
			return ids[i];
	}
	if (reg->fallback >= 0 && takes_user_type(reg, reg->fallback, value->user_type))
		return reg->fallback;
	return shmrig__fail(-ENOTSUP, "no codec takes this user value (user type %u) and %s",
			    value->user_type,
			    reg->fallback >= 0 ? "the fallback is for another user type" :
						 "there is no fallback");
}

/* Pick the codec for a value: the first candidate of its kind that accepts it, else the fallback. */
static int choose(const shmrig_registry *reg, const struct shmrig_value *value)
{
	uint32_t n = reg->ncandidates[value->kind];
	const uint16_t *ids = reg->candidates[value->kind];

	/* apart: the user-type test stays out of this loop (perf-gate's dispatch) */
	if (SHMRIG_UNLIKELY(value->kind == SHMRIG_KIND_USER))
		return choose_user(reg, value);
	for (uint32_t i = 0; i < n; i++) {
		const struct shmrig_codec *c = &reg->codecs[ids[i]];

		if (!c->can_encode || c->can_encode(c->ctx, value))
			return ids[i];
	}
	if (reg->fallback >= 0)
		return reg->fallback;
	return shmrig__fail(-ENOTSUP, "no codec takes this %s value and there is no fallback",
			    shmrig_kind_name(value->kind));
}

/* The frame's bytes (shmrig_frame_size(enc->nrefs, meta) of them) into `out`. */
static void write_frame(const struct shmrig_encoder *enc, int id, size_t size, char *out)
{
	struct shmrig_frame_header h = {
		.magic = SHMRIG_FRAME_MAGIC,
		.version = SHMRIG_FRAME_VERSION,
		.codec_id = (uint16_t)id,
		.nbuffers = enc->nrefs,
		.meta_len = (uint32_t)enc->meta.size,
	};

	memcpy(out, &h, sizeof(h));
	if (enc->nrefs)
		memcpy(out + sizeof(h), enc->refs, enc->nrefs * sizeof(*enc->refs));
	memcpy(out + size - enc->meta.size, enc->meta.data, enc->meta.size);
}

/* The frame's size, or 0 (with *err set) over the frame limit. */
static size_t frame_size(const struct shmrig_encoder *enc, int *err)
{
	size_t size = shmrig_frame_size(enc->nrefs, enc->meta.size);

	if (!size)
		*err = shmrig__fail(-E2BIG,
				    "codec '%s': %zu bytes of metadata is over the frame limit",
				    enc->codec_name, enc->meta.size);
	return size;
}

static void *build_frame(struct shmrig_encoder *enc, int id, size_t *len, int *err)
{
	size_t size = frame_size(enc, err);
	char *frame;

	if (!size)
		return NULL;
	/* malloc: 8-aligned, as frames must be (base/internal.h) */
	frame = malloc(shmrig__pad8(size));
	if (!frame) {
		*err = shmrig__fail(-ENOMEM, "encode: out of memory for a %zu-byte frame", size);
		return NULL;
	}
	write_frame(enc, id, size, frame);
	*len = size;
	return frame;
}

/*
 * A flat encode's result: shmrig_frame_flatten's form of its frame behind
 * `room` bytes (one allocation, *flat_len bytes after the room): the frame,
 * its refs naming no block, zeros to 8, each buffer's bytes and zeros to 8.
 */
static void *build_flat(struct shmrig_encoder *enc, int id, size_t room, size_t *flat_len, int *err)
{
	size_t frame_len = frame_size(enc, err), total, off;
	char *out;

	if (!frame_len)
		return NULL;
	total = room + shmrig__pad8(frame_len);
	for (uint32_t i = 0; i < enc->nrefs; i++) {
		uint64_t content_size = enc->refs[i].content_size;

		/* each in host memory already: no sum of them passes SIZE_MAX / 2 */
		total += shmrig__pad8((size_t)content_size);
	}
	out = total <= enc->flat_scratch->out_cap ? enc->flat_scratch->out : malloc(total);
	if (!out) {
		*err = shmrig__fail(-ENOMEM, "encode: out of memory for %zu bytes", total);
		return NULL;
	}
	write_frame(enc, id, frame_len, out + room);
	off = room + sizeof(struct shmrig_frame_header);
	for (uint32_t i = 0; i < enc->nrefs; i++, off += sizeof(struct shmrig_ref))
		memset(out + off + offsetof(struct shmrig_ref, offset), 0, sizeof(uint64_t));
	off = room + frame_len;
	memset(out + off, 0, shmrig__pad8(frame_len) - frame_len);
	off = room + shmrig__pad8(frame_len);
	for (uint32_t i = 0; i < enc->nrefs; i++) {
		size_t content_size = (size_t)enc->refs[i].content_size;

		memcpy(out + off, (const void *)(uintptr_t)enc->refs[i].offset, content_size);
		memset(out + off + content_size, 0, shmrig__pad8(content_size) - content_size);
		off += shmrig__pad8(content_size);
	}
	*flat_len = total - room;
	return out;
}

/*
 * The encode: with a pool, a frame whose buffers are blocks of it; flat (pool
 * NULL), the flat form behind `room` bytes, its buffers host memory that is
 * gone when this returns.
 */
static inline __attribute__((always_inline)) int encode(shmrig_registry *reg, shmrig_pool *pool,
							bool flat, struct flat_scratch *scratch,
							const struct shmrig_value *value,
							size_t room, void **frame, size_t *len)
{
	struct shmrig_encoder enc;
	const struct shmrig_codec *codec;
	int id, ret;

	if ((unsigned)value->kind >= SHMRIG_KIND_COUNT)
		return shmrig__fail(-EINVAL, "encode: unknown value kind %d", (int)value->kind);
	ret = freeze(reg);
	if (ret)
		return ret;
	id = choose(reg, value);
	if (id < 0)
		return id;
	codec = &reg->codecs[id];
	/* not zeroed whole: the inline buffers need no clearing */
	enc.pool = pool;
	enc.nrefs = 0;
	enc.packing = false;
	enc.codec_name = codec->name;
	enc.refs = enc.inline_refs;
	enc.cap = INLINE_REFS;
	enc.flat = flat; /* a constant at each call: the other mode's code folds away */
	enc.flat_used = 0;
	enc.flat_chunks = NULL;
	enc.flat_scratch = scratch;
	enc.guard.on = reg->flags & SHMRIG_REGISTRY_GUARD;
	enc.guard.data = NULL;
	enc.guard.cap = 0;
	shmrig__meta_writer_init(&enc.meta, codec->name);

	ret = codec->encode(codec->ctx, &enc, value);
	if (SHMRIG_UNLIKELY(ret > 0))
		ret = shmrig__fail(-EPROTO, "codec '%s': encode returned %d (0 or -errno)",
				   codec->name, ret);
	/* The pack's own reference goes: its buffers hold the block from now on. */
	if (!flat && enc.packing) {
		int freed = shmrig_pool_free(pool, &enc.pack_ref);

		if (!ret)
			ret = freed;
	}
	/* first: an overrun may be why the rest of what the codec did looks wrong */
	if (SHMRIG_UNLIKELY(enc.guard.on)) {
		if (!ret)
			ret = guard_check(&enc);
		free(enc.guard.data);
	}
	/* a failed write left the metadata incomplete, whatever the codec returned */
	if (!ret && enc.meta.error)
		ret = shmrig__fail(enc.meta.error,
				   "codec '%s' returned 0 after a metadata write failed (%s)",
				   codec->name,
				   enc.meta.error == -ENOSPC ? "over the limit" : "out of memory");
	/* metadata whose shape the writer saw whole is valid by construction
	 * (meta.h); anything else gets the check, and its words */
	if (!ret && !shmrig__meta_writer_whole(&enc.meta)) {
		ret = shmrig__meta_check(enc.meta.data, enc.meta.size);
		if (ret)
			shmrig__fail(ret, "codec '%s' wrote bad metadata: %s", codec->name,
				     shmrig_last_error());
	}
	if (flat) {
		if (!ret)
			*frame = build_flat(&enc, id, room, len, &ret);
		flat_chunks_free(&enc);
		goto done;
	}
	/* The frame's blocks are in flight from here: handed to ourselves,
	 * unclaimed, until a decode claims them (here or where they are sent)
	 * or shmrig_frame_discard takes them back. Buffers of their own were
	 * allocated so; a pack's are handed over now. */
	if (!ret && enc.packing)
		ret = shmrig__pool_hand_out(pool, enc.refs, enc.nrefs);
	if (!ret)
		*frame = build_frame(&enc, id, len, &ret);
	if (ret) {
		/* the drops record their own words (a pack's buffers are claimed
		 * already): keep the reason the encode failed for the caller */
		char why[512];

		snprintf(why, sizeof(why), "%s", shmrig_last_error());
		for (uint32_t i = 0; i < enc.nrefs; i++)
			drop_ref(pool, &enc.refs[i]);
		shmrig__fail(ret, "%s", why);
	}
done:
	shmrig__meta_writer_fini(&enc.meta);
	if (enc.refs != enc.inline_refs)
		free(enc.refs);
	return ret;
}

int shmrig_registry_encode(shmrig_registry *reg, shmrig_pool *pool,
			   const struct shmrig_value *value, void **frame, size_t *len)
{
	if (!reg || !pool || !value || !frame || !len)
		return shmrig__fail(-EINVAL, "encode: NULL argument");
	return encode(reg, pool, false, NULL, value, 0, frame, len);
}

int shmrig__registry_encode_flat(shmrig_registry *reg, const struct shmrig_value *value,
				 size_t room, void *buf, size_t cap, void **out, size_t *flat_len)
{
	struct flat_scratch scratch;

	if (!reg || !value || !out || !flat_len || room % 8 || ((uintptr_t)buf % 8) ||
	    (cap && !buf))
		return shmrig__fail(-EINVAL, "encode: NULL argument, room %zu or buffer %p", room,
				    buf);
	scratch.out = buf;
	scratch.out_cap = cap;
	if (reg->flags & SHMRIG_REGISTRY_GUARD)
		return -EAGAIN; /* guards watch blocks: the caller encodes into the pool */
	return encode(reg, NULL, true, &scratch, value, room, out, flat_len);
}

/* ---- decode ---- */

const shmrig_meta *shmrig_decoder_meta(struct shmrig_decoder *dec)
{
	return dec ? shmrig__meta_node(dec->meta) : NULL;
}

uint32_t shmrig_decoder_nbuffers(struct shmrig_decoder *dec)
{
	return dec->frame->nbuffers;
}

int shmrig_decoder_buffer(struct shmrig_decoder *dec, uint32_t index, uint32_t flags,
			  const void **data, uint64_t *len)
{
	const struct shmrig_ref *ref;
	bool temporary = flags & SHMRIG_BUF_TEMPORARY;
	void *p;
	int ret;

	if (!dec || !data || !len)
		return shmrig__fail(-EINVAL, "decoder_buffer: NULL argument");
	if (flags & ~SHMRIG_BUF_TEMPORARY)
		return shmrig__fail(-EINVAL, "decoder_buffer: unknown flags 0x%x",
				    flags & ~SHMRIG_BUF_TEMPORARY);
	if (index >= dec->frame->nbuffers)
		return shmrig__fail(-EBADMSG, "codec '%s': buffer %u asked, the frame has %u",
				    dec->codec_name, index, dec->frame->nbuffers);
	if (dec->asked[index])
		return shmrig__fail(-EBADMSG, "codec '%s': buffer %u asked twice", dec->codec_name,
				    index);
	ref = &dec->frame->buffers[index];
	/* A codec that keeps a view needs a block that outlives decode; one that
	 * copies out needs one decode may free: the frame must say the same. */
	if (ref->temporary != temporary)
		return shmrig__fail(-EBADMSG,
				    "codec '%s': buffer %u is %s in the frame, the codec reads it as "
				    "%s",
				    dec->codec_name, index,
				    ref->temporary ? "temporary" : "persistent",
				    temporary ? "temporary (copied out)" : "persistent (a view)");
	/* Claimed at the start of decode: ours, so nobody frees it under us. */
	p = dec->data[index];
	if (dec->flat) {
		/* the message's bytes die with decode: a view gets its own copy */
		if (!ref->temporary) {
			void *copy = shmrig__storage_alloc_raw(dec->storage,
							       ref->content_size ?
								       (size_t)ref->content_size :
								       1);

			if (!copy)
				return shmrig__fail(-ENOMEM, "decode: out of memory");
			memcpy(copy, p, (size_t)ref->content_size);
			p = copy;
		}
	} else if (!ref->temporary) {
		ret = shmrig__storage_lease(dec->storage, ref);
		if (ret)
			return shmrig__fail(ret, "decode: out of memory");
	}
	dec->asked[index] = 1;
	*data = p;
	*len = ref->content_size;
	return 0;
}

void *shmrig_decoder_alloc(struct shmrig_decoder *dec, size_t size)
{
	return shmrig__storage_alloc(dec->storage, size);
}

void *shmrig__decoder_alloc_raw(struct shmrig_decoder *dec, size_t size)
{
	return shmrig__storage_alloc_raw(dec->storage, size);
}

char *shmrig_decoder_strdup(struct shmrig_decoder *dec, const shmrig_meta *str)
{
	const char *bytes;
	size_t len;
	char *copy;

	if (!dec || shmrig_meta_str(str, &bytes, &len))
		return NULL;
	copy = shmrig__storage_alloc(dec->storage, len + 1);
	if (copy)
		memcpy(copy, bytes, len);
	return copy;
}

/*
 * After the codec: free the references we claimed that no value leases: the
 * temporary buffers, and any buffer the codec did not take (it is nobody's
 * then). A reference we did not claim is not ours: untouched.
 */
static void settle_buffers(struct shmrig_decoder *dec)
{
	for (uint32_t i = 0; i < dec->frame->nbuffers; i++) {
		const struct shmrig_ref *ref = &dec->frame->buffers[i];

		/* a free that fails leaves the block ours: pool_close reports it */
		if (dec->claimed[i] && (!dec->asked[i] || ref->temporary))
			(void)!shmrig_pool_free(dec->pool, ref);
	}
}

/* Decode parsed frame f: its blocks claimed here, or with flat_data, a flat
 * form's buffers (shmrig__registry_decode_flat). */
static inline __attribute__((always_inline)) int decode_frame(shmrig_registry *reg,
							      shmrig_pool *pool,
							      const struct shmrig_frame *fp,
							      const void *const *flat_data,
							      struct shmrig_value *out)
{
	struct shmrig_decoder dec = { .pool = pool, .flat = flat_data != NULL };
	const struct shmrig_frame f = *fp;
	const struct shmrig_codec *codec;
	struct meta_memo *memo;
	/* per buffer: asked, claimed, and where it is: on the stack up to 64 */
	struct {
		void *data[64];
		uint8_t flags[2 * 64];
	} small;
	uint8_t *flags;
	void **data;
	char list[512], why[512];
	int ret;

	dec.frame = &f;
	if (f.nbuffers <= 64) {
		data = small.data;
		flags = small.flags;
	} else {
		data = malloc((size_t)f.nbuffers * (sizeof(*data) + 2));
		if (!data)
			return shmrig__fail(-ENOMEM, "decode: out of memory");
		flags = (uint8_t *)(data + f.nbuffers);
	}
	memset(flags, 0, 2 * (size_t)f.nbuffers);
	dec.asked = flags;
	dec.claimed = flags + f.nbuffers;
	dec.data = data;
	/* Claim every reference the frame hands us, first: a frame decoded twice,
	 * or naming blocks that are not ours to take, fails here, having taken
	 * (and then freeing) only what was handed to us. A flat form's bytes
	 * are ours already. */
	if (flat_data)
		memcpy(data, flat_data, (size_t)f.nbuffers * sizeof(*data));
	ret = f.nbuffers && !flat_data ?
		      shmrig__pool_claim_refs(pool, f.buffers, f.nbuffers, dec.claimed, data) :
		      0;
	if (ret)
		goto settle;
	if (f.codec_id >= reg->count) {
		ret = shmrig__fail(-ENOENT, "frame: codec id %u is unknown (registered: %s)",
				   f.codec_id, codec_list(reg, list, sizeof(list)));
		goto settle;
	}
	codec = &reg->codecs[f.codec_id];
	dec.codec_name = codec->name;
	memo = atomic_exchange_explicit(&reg->spare_memo, NULL, memory_order_acquire);
	if (!memo && !(memo = memo_new())) {
		ret = shmrig__fail(-ENOMEM, "decode: out of memory");
		goto settle;
	}
	ret = memo_unpack(memo, f.meta, f.meta_len);
	if (ret)
		goto unpacked;
	dec.meta = &memo->obj;
	dec.storage = shmrig__storage_new(pool);
	if (!dec.storage) {
		ret = shmrig__fail(-ENOMEM, "decode: out of memory");
		goto unpacked;
	}
	out->storage = dec.storage;
	ret = codec->decode(codec->ctx, &dec, out);
	if (SHMRIG_UNLIKELY(ret > 0))
		ret = shmrig__fail(-EPROTO, "codec '%s': decode returned %d (0 or -errno)",
				   codec->name, ret);
	/* the storage is the registry's, whatever the codec did to `out` */
	out->storage = dec.storage;
	/* a codec of one user type decodes values of that type: its tag here */
	if (out->kind == SHMRIG_KIND_USER && reg->user_tags[f.codec_id])
		out->user_type = reg->user_tags[f.codec_id];
	for (uint32_t i = 0; !ret && i < f.nbuffers; i++)
		if (!dec.asked[i])
			ret = shmrig__fail(-EBADMSG, "codec '%s' left buffer %u of %u unread",
					   codec->name, i, f.nbuffers);
	if (ret) {
		/* frees the leases taken; keep the codec's words for the caller */
		snprintf(why, sizeof(why), "%s", shmrig_last_error());
		(void)!shmrig_value_release(out);
		shmrig__fail(ret, "%s", why);
	}
unpacked:
	memo_put_back(reg, memo);
settle:
	/* frees that fail here must not replace the reason decode failed */
	if (ret)
		snprintf(why, sizeof(why), "%s", shmrig_last_error());
	settle_buffers(&dec);
	if (ret)
		shmrig__fail(ret, "%s", why);
	if (data != small.data)
		free(data);
	return ret;
}

int shmrig_registry_decode(shmrig_registry *reg, shmrig_pool *pool, const void *frame, size_t len,
			   struct shmrig_value *out)
{
	struct shmrig_frame f;
	int ret;

	if (!reg || !pool || !out)
		return shmrig__fail(-EINVAL, "decode: NULL argument");
	memset(out, 0, sizeof(*out));
	ret = freeze(reg);
	if (!ret)
		ret = shmrig_frame_parse(frame, len, &f);
	return ret ? ret : decode_frame(reg, pool, &f, NULL, out);
}

int shmrig__registry_decode_flat(shmrig_registry *reg, shmrig_pool *pool, const void *flat,
				 size_t flat_len, struct shmrig_value *out)
{
	const void *small[64], **data = small;
	struct shmrig_frame f;
	int ret;

	if (!reg || !pool || !flat || !out)
		return shmrig__fail(-EINVAL, "decode: NULL argument");
	memset(out, 0, sizeof(*out));
	ret = freeze(reg);
	if (!ret)
		ret = shmrig__frame_flat_parse(flat, flat_len, &f, data, 64);
	if (ret == -E2BIG) {
		/* over 64 buffers: checked, and parsed again with room for all */
		data = malloc((size_t)f.nbuffers * sizeof(*data));
		if (!data)
			return shmrig__fail(-ENOMEM, "decode: out of memory");
		ret = shmrig__frame_flat_parse(flat, flat_len, &f, data, f.nbuffers);
	}
	if (!ret)
		ret = decode_frame(reg, pool, &f, data, out);
	if (data != small)
		free(data);
	return ret;
}
