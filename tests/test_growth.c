/* SPDX-License-Identifier: MIT */
/*
 * test_growth: the growth rule of sized structs (shmrig/common.h, "ABI: how
 * structs grow"), table-driven over every struct that crosses the ABI and may
 * grow. A caller's struct lives in a malloc'd buffer of exactly the bytes it
 * says it has, so ASan catches the library reading or writing past them.
 *
 * - bad sizes: 0 and 4 (in a 4-byte buffer: only the size may be read) are
 *   -EINVAL with words; 8192 is -E2BIG, and nothing of it is read or written;
 * - inputs, an old caller: one row per field boundary after size; the call
 *   takes the fields the caller has, and the others are seen to take their
 *   defaults;
 * - inputs, a newer caller: sizeof + 64 with a zero tail works like the full
 *   struct, SHMRIG_SIZED_MAX too; a non-zero byte in the tail (its first and
 *   its last) is -E2BIG naming the struct and the offset;
 * - outputs: a smaller size gets exactly the bytes of a full call's answer up
 *   to it (a canary after them stays), a larger one a zeroed tail, and size
 *   says how many bytes were filled;
 * - arrays: the stride is the first element's size (old, exact, newer); the
 *   bytes between elements are zeroed, elements past those filled and bytes
 *   past the last offered element are untouched;
 * - structs handed to a callback carry the library's sizeof, and
 *   SHMRIG_HAS_FIELD tells a newer reader's field from one it has
 *   (shmrig_block_info to a for_each_live callback; shmrig_handler_call to a
 *   handler, in the worker of a session started with newer-sized channel and
 *   pool options, which it hands on as its own copies).
 */
#include "helpers.h"

#include "transport/channel_internal.h" /* a pair's options as the library took them */
#include "session/session_internal.h"   /* a session's options and counters, likewise */

#include <shmrig/shmrig.h>

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define END(type, field) (offsetof(type, field) + sizeof(((type *)0)->field))
/* Does a caller's struct of `known` bytes hold `field`? */
#define HAS(known, type, field) (END(type, field) <= (known))

#define CANARY 0xa5
#define CANARY_LEN 16
#define NEWER 64 /* bytes a newer caller has past the library's struct */
#define OTHER_PREFIX "t_growth_x"
#define EIGHT_NODES "pack:8 numa:1 core:1 pu:1"
#define FAR_NODE 7 /* exists in EIGHT_NODES */

static unsigned rows; /* rows run, for the summary */
static shmrig_pool *pool;
static shmrig_registry *reg;          /* the built-in codecs, for sessions */
static shmrig_session *stats_session; /* no worker: its counters are set by hand */
static shmrig_topo *eight_nodes;      /* EIGHT_NODES, with the recording binder */

/* ---- helpers ---- */

static void set_size(void *buf, size_t size)
{
	uint32_t s = (uint32_t)size;

	memcpy(buf, &s, sizeof(s));
}

static uint32_t get_size(const void *buf)
{
	uint32_t s;

	memcpy(&s, buf, sizeof(s));
	return s;
}

/* A caller's struct of `size` bytes in a buffer of exactly that many: the
 * first bytes of `full` (the library's size), zero past it, size set. */
static void *caller_struct(const void *full, size_t full_size, size_t size)
{
	unsigned char *buf = malloc(size);

	assert_non_null(buf);
	memset(buf, 0, size);
	memcpy(buf, full, size < full_size ? size : full_size);
	set_size(buf, size);
	return buf;
}

static void *filled(size_t len, int byte)
{
	unsigned char *buf = malloc(len);

	assert_non_null(buf);
	memset(buf, byte, len);
	return buf;
}

static void assert_bytes(const void *buf, size_t from, size_t to, int byte, const char *what)
{
	const unsigned char *p = buf;

	for (size_t i = from; i < to; i++)
		if (p[i] != byte) {
			print_error("%s: byte %zu is 0x%02x, want 0x%02x\n", what, i, p[i], byte);
			fail();
		}
}

static void assert_error(int ret, int want, const char *name, const char *words)
{
	if (ret != want || !strstr(shmrig_last_error(), name) ||
	    !strstr(shmrig_last_error(), words))
		print_error("%s: got %d '%s', want %d with '%s'\n", name, ret, shmrig_last_error(),
			    want, words);
	assert_int_equal(ret, want);
	assert_non_null(strstr(shmrig_last_error(), name));
	assert_non_null(strstr(shmrig_last_error(), words));
}

/* The field boundaries a table row is cut at: 8 (size and the 4 bytes after
 * it), then the end of every field, ascending; 0 ends the list. */
#define BOUNDS(...) ((const size_t[]){ 8, __VA_ARGS__, 0 })

/* ---- the recording binder (topo_binder rows, segment_opts' topo) ---- */

static struct recording {
	unsigned thread_calls, area_calls;
	int cpu, node;
	void *ctx; /* the ctx the binder was called with */
} rec;

static int record_thread(void *ctx, shmrig_topo *topo, int cpu)
{
	(void)topo;
	rec.thread_calls++;
	rec.cpu = cpu;
	rec.ctx = ctx;
	return 0;
}

static int record_area(void *ctx, shmrig_topo *topo, void *addr, size_t len, int node)
{
	(void)topo, (void)addr, (void)len;
	rec.area_calls++;
	rec.node = node;
	rec.ctx = ctx;
	return 0;
}

static const struct shmrig_topo_binder recording_binder = {
	.size = sizeof(struct shmrig_topo_binder),
	.bind_thread_cpu = record_thread,
	.bind_area_node = record_area,
	.ctx = &rec,
};

/* ---- inputs: what each call makes of an old, full or newer caller ---- */

/*
 * An input row: `fill` sets every field to a value other than its default;
 * `call` makes the call with the caller's struct and undoes it. With known 0
 * it only returns the call's result; otherwise `known` is how many bytes of
 * fields the caller has (min(size, sizeof)), and it checks the call's result
 * and, field by field, that a field the caller has was taken and one it does
 * not have took its default.
 */
struct input_row {
	const char *name;
	size_t size;
	const size_t *bounds;
	void (*fill)(void *full);
	int (*call)(const void *opts, size_t known);
};

/* pool_opts: seen through shmrig_pool_info() and the node check of open. */
static void fill_pool_opts(void *full)
{
	struct shmrig_pool_opts *o = full;

	o->flags = SHMRIG_POOL_QUIET | SHMRIG_POOL_BIND_NODE;
	o->prefix = OTHER_PREFIX;
	o->arena_size = 4 * MiB;
	o->max_bytes = 32 * MiB;
	o->backing = SHMRIG_BACKING_PLAIN;
	o->numa_node = FAR_NODE;
	o->topo = eight_nodes;
}

static int call_pool_opts(const void *opts, size_t known)
{
#define P(field) HAS(known, struct shmrig_pool_opts, field)
	struct shmrig_pool_info info = SHMRIG_SIZED(struct shmrig_pool_info);
	shmrig_pool *p;
	int ret = shmrig_pool_open(opts, &p);

	if (!known) {
		if (!ret)
			assert_int_equal(shmrig_pool_close(p), 0);
		return ret;
	}
	/* node 7 is the synthetic topology's; without it, the machine's, which has none */
	if (P(numa_node) && !P(topo) && !shmrig_topo_node_exists(shmrig_topo_system(), FAR_NODE)) {
		assert_error(ret, -EINVAL, "pool_open", "no NUMA node 7");
		return ret;
	}
	assert_int_equal(ret, 0);
	assert_int_equal(shmrig_pool_info(p, &info), 0);
	assert_string_equal(info.prefix, P(prefix) ? OTHER_PREFIX : th_prefix());
	assert_int_equal(info.arena_size, P(arena_size) ? 4 * MiB : 64 * MiB);
	assert_int_equal(info.max_bytes, P(max_bytes) ? 32 * MiB : 1024 * MiB);
	assert_int_equal(info.backing, P(backing) ? SHMRIG_BACKING_PLAIN : SHMRIG_BACKING_AUTO);
	assert_int_equal(shmrig_pool_close(p), 0);
	return ret;
#undef P
}

/* segment_opts: seen in the segment's name, role, node, backing, and the binder. */
static void fill_segment_opts(void *full)
{
	struct shmrig_segment_opts *o = full;

	o->flags = SHMRIG_SEG_BIND_NODE;
	o->bytes = 8192;
	o->prefix = OTHER_PREFIX;
	o->topo = eight_nodes;
	o->backing = SHMRIG_BACKING_PLAIN;
	o->numa_node = FAR_NODE;
	o->role = 'x';
}

static int call_segment_opts(const void *opts, size_t known)
{
#define S(field) HAS(known, struct shmrig_segment_opts, field)
	shmrig_segment *seg = NULL;
	const char *prefix;
	int ret;

	memset(&rec, 0, sizeof(rec));
	ret = shmrig_segment_create(opts, &seg);
	if (!known || ret) {
		if (!ret) {
			assert_int_equal(shmrig_segment_unlink(seg), 0);
			shmrig_segment_close(seg);
		}
		if (known) /* bytes 0, the default, is no segment */
			assert_error(ret, S(bytes) ? 0 : -EINVAL, "segment_create", "bytes 0");
		return ret;
	}
	assert_true(S(bytes));
	prefix = S(prefix) ? OTHER_PREFIX : th_prefix();
	assert_int_equal(strncmp(shmrig_segment_name(seg), prefix, strlen(prefix)), 0);
	assert_int_equal(shmrig_segment_name(seg)[strlen(prefix)], '-');
	/* the topology given gets the binding (its binder records it); else the machine's */
	if (S(topo))
		assert_true(rec.area_calls >= 1 && rec.node == (S(numa_node) ? FAR_NODE : 0));
	else
		assert_int_equal(rec.area_calls, 0);
	assert_int_equal(shmrig_segment_node(seg), S(numa_node) ? FAR_NODE : 0);
	if (S(backing))
		assert_true(shmrig_segment_backing(seg) == SHMRIG_BACKING_PLAIN &&
			    !strstr(shmrig_segment_reason(seg), "hugetlb"));
	else /* auto tries hugetlb first */
		assert_true(shmrig_segment_backing(seg) != SHMRIG_BACKING_PLAIN ||
			    strstr(shmrig_segment_reason(seg), "hugetlb"));
	assert_int_equal(shmrig_segment_role(seg), S(role) ? 'x' : 'g');
	assert_int_equal(shmrig_segment_unlink(seg), 0);
	shmrig_segment_close(seg);
	return ret;
#undef S
}

/* channel_opts: the pair's options as the library took them (defaults applied). */
static void fill_channel_opts(void *full)
{
	struct shmrig_channel_opts *o = full;

	o->backend = "ring";
	o->slot_size = 128;
	o->slots = 8;
	o->open_timeout_ms = 1234;
}

static int call_channel_opts(const void *opts, size_t known)
{
#define C(field) HAS(known, struct shmrig_channel_opts, field)
	shmrig_channel_pair *pair;
	int ret = shmrig_channel_pair_create(opts, &pair);

	if (ret || !known) {
		if (!ret)
			shmrig_channel_pair_free(pair);
		if (known)
			assert_int_equal(ret, 0);
		return ret;
	}
	assert_string_equal(pair->opts.backend, C(backend) ? "ring" : "pipe");
	if (C(backend)) {
		assert_int_equal(pair->opts.slot_size, C(slot_size) ? 128 : 4096);
		assert_int_equal(pair->opts.slots, C(slots) ? 8 : 256);
	}
	assert_int_equal(pair->opts.open_timeout_ms, C(open_timeout_ms) ? 1234 : 5000);
	shmrig_channel_pair_free(pair);
	return ret;
#undef C
}

/* codec: seen by encoding a user value and a bytes value through a registry of it alone. */
static struct {
	unsigned can_calls, encode_calls;
	void *ctx; /* the ctx encode was called with */
} codec_seen;
static int codec_ctx;

static bool seen_can_encode(void *ctx, const struct shmrig_value *value)
{
	(void)ctx, (void)value;
	codec_seen.can_calls++;
	return true;
}

static int seen_encode(void *ctx, struct shmrig_encoder *enc, const struct shmrig_value *value)
{
	(void)value;
	codec_seen.encode_calls++;
	codec_seen.ctx = ctx;
	return shmrig_meta_put_map(enc, 0);
}

static int seen_decode(void *ctx, struct shmrig_decoder *dec, struct shmrig_value *out)
{
	(void)ctx, (void)dec, (void)out;
	return -ENOSYS;
}

static void fill_codec(void *full)
{
	struct shmrig_codec *o = full;

	o->kinds = SHMRIG_KIND_BIT(SHMRIG_KIND_USER);
	o->name = "growth";
	o->encode = seen_encode;
	o->decode = seen_decode;
	o->can_encode = seen_can_encode;
	o->ctx = &codec_ctx;
	o->flags = SHMRIG_CODEC_FALLBACK;
	o->user_type = "thing";
}

/* Encode a value through reg: the encode's result (the frame is discarded). */
static int encode_one(shmrig_registry *reg, const struct shmrig_value *value)
{
	void *frame;
	size_t len;
	int ret = shmrig_registry_encode(reg, pool, value, &frame, &len);

	if (!ret) {
		assert_int_equal(shmrig_frame_discard(pool, frame, len), 0);
		free(frame);
	}
	return ret;
}

static int call_codec(const void *codec, size_t known)
{
#define K(field) HAS(known, struct shmrig_codec, field)
	struct shmrig_value bytes = { .kind = SHMRIG_KIND_BYTES, .bytes = { "x", 1 } };
	struct shmrig_value user = { .kind = SHMRIG_KIND_USER, .user = &codec_ctx };
	shmrig_registry *reg;
	int tag, other, ret;

	assert_int_equal(shmrig_registry_create(&reg), 0);
	tag = shmrig_registry_user_type(reg, "thing");
	assert_true(tag > 0);
	other = shmrig_registry_user_type(reg, "other");
	assert_true(other > 0);
	user.user_type = (uint32_t)tag;
	ret = shmrig_registry_register(reg, codec);
	if (!known) {
		shmrig_registry_free(reg);
		return ret;
	}
	if (!K(name))
		assert_error(ret, -EINVAL, "register", "codec name");
	else if (!K(encode) || !K(decode))
		assert_error(ret, -EINVAL, "register 'growth'", "encode and decode are required");
	else
		assert_int_equal(ret, 0);
	if (ret) {
		shmrig_registry_free(reg);
		return ret;
	}
	memset(&codec_seen, 0, sizeof(codec_seen));
	assert_int_equal(encode_one(reg, &user), 0);
	assert_int_equal(codec_seen.encode_calls, 1);
	assert_int_equal(codec_seen.can_calls, K(can_encode) ? 1 : 0);
	assert_ptr_equal(codec_seen.ctx, K(ctx) ? &codec_ctx : NULL);
	/* no codec of its kind: the fallback if it is one, else none */
	assert_int_equal(encode_one(reg, &bytes), K(flags) ? 0 : -ENOTSUP);
	/* a user value of another type: a codec for "thing" is not offered it; one
	 * without user_type (an older caller's reads NULL) takes any type */
	user.user_type = (uint32_t)other;
	assert_int_equal(encode_one(reg, &user), K(user_type) ? -ENOTSUP : 0);
	shmrig_registry_free(reg);
	return 0;
#undef K
}

/* topo_binder: seen by binding through a fresh synthetic topology. */
static void fill_topo_binder(void *full)
{
	memcpy(full, &recording_binder, sizeof(recording_binder));
}

static int call_topo_binder(const void *binder, size_t known)
{
#define B(field) HAS(known, struct shmrig_topo_binder, field)
	size_t page = (size_t)sysconf(_SC_PAGESIZE);
	shmrig_topo *topo;
	void *area;
	int ret;

	assert_int_equal(shmrig_topo_load(EIGHT_NODES, &topo), 0);
	ret = shmrig_topo_set_binder(topo, binder);
	if (ret || !known) {
		shmrig_topo_free(topo);
		if (known)
			assert_int_equal(ret, 0);
		return ret;
	}
	memset(&rec, 0, sizeof(rec));
	area = aligned_alloc(page, page);
	assert_non_null(area);
	/* hwloc's own binder does nothing on a synthetic topology, and succeeds */
	assert_int_equal(shmrig_topo_bind_thread(topo, 3), 0);
	assert_int_equal(rec.thread_calls, B(bind_thread_cpu) ? 1 : 0);
	assert_int_equal(shmrig_topo_bind_area(topo, area, page, 5), 0);
	assert_int_equal(rec.area_calls, B(bind_area_node) ? 1 : 0);
	if (B(bind_thread_cpu))
		assert_ptr_equal(rec.ctx, B(ctx) ? &rec : NULL);
	free(area);
	shmrig_topo_free(topo);
	return ret;
#undef B
}

/* session_opts: the session's own copy of them (the structs they point to included). */
static struct shmrig_channel_opts nested_channel;
static struct shmrig_pool_opts nested_pool;

static void fill_session_opts(void *full)
{
	struct shmrig_session_opts *o = full;

	nested_channel = SHMRIG_SIZED(struct shmrig_channel_opts);
	nested_channel.backend = "ring";
	nested_channel.open_timeout_ms = 777;
	nested_pool = SHMRIG_SIZED(struct shmrig_pool_opts);
	nested_pool.arena_size = 4 * MiB;
	o->channel = &nested_channel;
	o->worker_pool = &nested_pool;
	o->call_timeout_ms = 1111;
	o->start_timeout_ms = 2222;
}

static int call_session_opts(const void *opts, size_t known)
{
#define O(field) HAS(known, struct shmrig_session_opts, field)
	shmrig_session *sess;
	int ret = shmrig_session_create(opts, reg, pool, &sess);

	if (ret || !known) {
		if (!ret)
			shmrig_session_free(sess);
		if (known)
			assert_int_equal(ret, 0);
		return ret;
	}
	assert_int_equal(sess->call_timeout_ms, O(call_timeout_ms) ? 1111 : 30000);
	assert_int_equal(sess->start_timeout_ms, O(start_timeout_ms) ? 2222 : 5000);
	/* the channel's open timeout defaults to the start timeout */
	assert_int_equal(sess->channel_opts.size, sizeof(struct shmrig_channel_opts));
	if (O(channel))
		assert_string_equal(sess->channel_opts.backend, "ring");
	else
		assert_null(sess->channel_opts.backend);
	assert_int_equal(sess->channel_opts.open_timeout_ms,
			 O(channel) ? 777 : sess->start_timeout_ms);
	assert_int_equal(sess->has_worker_pool, O(worker_pool));
	if (O(worker_pool)) {
		assert_int_equal(sess->worker_pool.size, sizeof(struct shmrig_pool_opts));
		assert_int_equal(sess->worker_pool.arena_size, 4 * MiB);
	}
	shmrig_session_free(sess);
	return ret;
#undef O
}

static const struct input_row inputs[] = {
	{ "struct shmrig_pool_opts", sizeof(struct shmrig_pool_opts),
	  BOUNDS(END(struct shmrig_pool_opts, prefix), END(struct shmrig_pool_opts, arena_size),
		 END(struct shmrig_pool_opts, max_bytes), END(struct shmrig_pool_opts, backing),
		 END(struct shmrig_pool_opts, numa_node), END(struct shmrig_pool_opts, topo)),
	  fill_pool_opts, call_pool_opts },
	{ "struct shmrig_segment_opts", sizeof(struct shmrig_segment_opts),
	  BOUNDS(END(struct shmrig_segment_opts, bytes), END(struct shmrig_segment_opts, prefix),
		 END(struct shmrig_segment_opts, topo), END(struct shmrig_segment_opts, backing),
		 END(struct shmrig_segment_opts, numa_node), END(struct shmrig_segment_opts, role)),
	  fill_segment_opts, call_segment_opts },
	{ "struct shmrig_channel_opts", sizeof(struct shmrig_channel_opts),
	  BOUNDS(END(struct shmrig_channel_opts, backend),
		 END(struct shmrig_channel_opts, slot_size), END(struct shmrig_channel_opts, slots),
		 END(struct shmrig_channel_opts, open_timeout_ms)),
	  fill_channel_opts, call_channel_opts },
	{ "struct shmrig_codec", sizeof(struct shmrig_codec),
	  BOUNDS(END(struct shmrig_codec, name), END(struct shmrig_codec, encode),
		 END(struct shmrig_codec, decode), END(struct shmrig_codec, can_encode),
		 END(struct shmrig_codec, ctx), END(struct shmrig_codec, flags),
		 END(struct shmrig_codec, user_type)),
	  fill_codec, call_codec },
	{ "struct shmrig_topo_binder", sizeof(struct shmrig_topo_binder),
	  BOUNDS(END(struct shmrig_topo_binder, bind_thread_cpu),
		 END(struct shmrig_topo_binder, bind_area_node),
		 END(struct shmrig_topo_binder, ctx)),
	  fill_topo_binder, call_topo_binder },
	{ "struct shmrig_session_opts", sizeof(struct shmrig_session_opts),
	  BOUNDS(END(struct shmrig_session_opts, channel),
		 END(struct shmrig_session_opts, worker_pool),
		 END(struct shmrig_session_opts, call_timeout_ms),
		 END(struct shmrig_session_opts, start_timeout_ms)),
	  fill_session_opts, call_session_opts },
};

#define NINPUTS (sizeof(inputs) / sizeof(inputs[0]))

static void *full_input(const struct input_row *row)
{
	void *full = calloc(1, row->size);

	assert_non_null(full);
	row->fill(full);
	set_size(full, row->size);
	return full;
}

/* A bad size: the call fails with `want` and words, reading no more than `len` bytes. */
static void bad_size(const struct input_row *row, size_t size, size_t len, int want,
		     const char *words)
{
	void *buf = calloc(1, len);

	assert_non_null(buf);
	set_size(buf, size);
	assert_error(row->call(buf, 0), want, row->name, words);
	free(buf);
	rows++;
}

static void test_input_bad_sizes(void **state)
{
	(void)state;
	for (size_t i = 0; i < NINPUTS; i++) {
		bad_size(&inputs[i], 0, 4, -EINVAL, "size not set: use SHMRIG_SIZED()");
		bad_size(&inputs[i], 4, 4, -EINVAL, "size 4 is below 8");
		bad_size(&inputs[i], 7, 7, -EINVAL, "size 7 is below 8");
		/* refused before a byte past the size field is read: the buffer is 4 bytes */
		bad_size(&inputs[i], 8192, 4, -E2BIG, "size 8192 is above 4096");
		bad_size(&inputs[i], SHMRIG_SIZED_MAX + 1, 4, -E2BIG, "is above 4096");
	}
}

static void test_input_old_callers(void **state)
{
	(void)state;
	for (size_t i = 0; i < NINPUTS; i++) {
		const struct input_row *row = &inputs[i];
		void *full = full_input(row);

		for (const size_t *b = row->bounds; *b; b++) {
			void *buf = caller_struct(full, row->size, *b);

			assert_true(*b <= row->size);
			printf("# %s: an old caller of %zu bytes\n", row->name, *b);
			(void)row->call(buf, *b);
			free(buf);
			rows++;
		}
		/* the library's own size (a full struct; its tail padding included) */
		(void)row->call(full, row->size);
		rows++;
		free(full);
	}
}

static void test_input_newer_callers(void **state)
{
	(void)state;
	for (size_t i = 0; i < NINPUTS; i++) {
		const struct input_row *row = &inputs[i];
		size_t size = row->size + NEWER;
		void *full = full_input(row);
		unsigned char *buf = caller_struct(full, row->size, size);
		char words[64];

		printf("# %s: a newer caller of %zu bytes\n", row->name, size);
		/* a zero tail: what the newer caller adds is its default, so it works */
		(void)row->call(buf, row->size);
		rows++;
		/* a non-zero byte in the tail asks for what this library does not have */
		for (size_t at = row->size; at < size; at += size - row->size - 1) {
			buf[at] = 0x80;
			snprintf(words, sizeof(words), "byte %zu of %zu is not zero", at, size);
			assert_error(row->call(buf, 0), -E2BIG, row->name, words);
			buf[at] = 0;
			rows++;
		}
		free(buf);
		/* the largest size there is, with a zero tail */
		buf = caller_struct(full, row->size, SHMRIG_SIZED_MAX);
		(void)row->call(buf, row->size);
		rows++;
		free(buf);
		free(full);
	}
}

/* ---- outputs ---- */

struct output_row {
	const char *name;
	size_t size;
	const size_t *bounds;
	int (*get)(void *out);
};

static int get_pool_stats(void *out)
{
	return shmrig_pool_stats(pool, out);
}

static int get_pool_info(void *out)
{
	return shmrig_pool_info(pool, out);
}

static int get_session_stats(void *out)
{
	return shmrig_session_stats(stats_session, out);
}

static const struct output_row outputs[] = {
	{ "struct shmrig_pool_stats", sizeof(struct shmrig_pool_stats),
	  BOUNDS(END(struct shmrig_pool_stats, live_blocks),
		 END(struct shmrig_pool_stats, live_bytes),
		 END(struct shmrig_pool_stats, large_live_blocks),
		 END(struct shmrig_pool_stats, large_live_bytes),
		 END(struct shmrig_pool_stats, created_bytes),
		 END(struct shmrig_pool_stats, cached_blocks)),
	  get_pool_stats },
	{ "struct shmrig_pool_info", sizeof(struct shmrig_pool_info),
	  BOUNDS(END(struct shmrig_pool_info, prefix), END(struct shmrig_pool_info, arena_size),
		 END(struct shmrig_pool_info, max_bytes), END(struct shmrig_pool_info, page_size),
		 END(struct shmrig_pool_info, reason), END(struct shmrig_pool_info, numa_node)),
	  get_pool_info },
	{ "struct shmrig_session_stats", sizeof(struct shmrig_session_stats),
	  BOUNDS(END(struct shmrig_session_stats, calls),
		 END(struct shmrig_session_stats, timeouts),
		 END(struct shmrig_session_stats, stale_replies),
		 END(struct shmrig_session_stats, starts), END(struct shmrig_session_stats, deaths),
		 END(struct shmrig_session_stats, blocks_reaped),
		 END(struct shmrig_session_stats, segments_removed)),
	  get_session_stats },
};

#define NOUTPUTS (sizeof(outputs) / sizeof(outputs[0]))

/* The answer to a caller of the library's own size. */
static void *full_output(const struct output_row *row)
{
	void *ref = filled(row->size, 0);

	set_size(ref, row->size);
	assert_int_equal(row->get(ref), 0);
	assert_int_equal(get_size(ref), row->size);
	return ref;
}

static void test_output_bad_sizes(void **state)
{
	(void)state;
	for (size_t i = 0; i < NOUTPUTS; i++) {
		const struct output_row *row = &outputs[i];
		static const struct {
			uint32_t size;
			size_t len;
			int want;
			const char *words;
		} bad[] = {
			{ 0, 4, -EINVAL, "size not set: use SHMRIG_SIZED()" },
			{ 4, 4, -EINVAL, "size 4 is below 8" },
			{ 8192, 8192, -E2BIG, "size 8192 is above 4096" },
		};

		for (size_t k = 0; k < sizeof(bad) / sizeof(bad[0]); k++) {
			unsigned char *buf = filled(bad[k].len, CANARY);

			set_size(buf, bad[k].size);
			assert_error(row->get(buf), bad[k].want, row->name, bad[k].words);
			assert_int_equal(get_size(buf), bad[k].size);
			assert_bytes(buf, 4, bad[k].len, CANARY, row->name); /* nothing written */
			free(buf);
			rows++;
		}
	}
}

static void test_output_sizes(void **state)
{
	(void)state;
	for (size_t i = 0; i < NOUTPUTS; i++) {
		const struct output_row *row = &outputs[i];
		unsigned char *ref = full_output(row);
		size_t larger = row->size + NEWER;
		unsigned char *buf;

		/* an old caller: exactly its bytes, in a buffer of that many, then
		 * with a canary after it */
		for (const size_t *b = row->bounds; *b; b++) {
			for (size_t canary = 0; canary <= CANARY_LEN; canary += CANARY_LEN) {
				buf = filled(*b + canary, CANARY);
				set_size(buf, *b);
				assert_int_equal(row->get(buf), 0);
				assert_int_equal(get_size(buf), *b);
				assert_memory_equal(buf + 4, ref + 4, *b - 4);
				assert_bytes(buf, *b, *b + canary, CANARY, row->name);
				free(buf);
			}
			rows++;
		}
		/* a newer caller: its tail zeroed, size says what was filled */
		buf = filled(larger + CANARY_LEN, CANARY);
		set_size(buf, larger);
		assert_int_equal(row->get(buf), 0);
		assert_int_equal(get_size(buf), row->size);
		assert_memory_equal(buf + 4, ref + 4, row->size - 4);
		assert_bytes(buf, row->size, larger, 0, row->name);
		assert_bytes(buf, larger, larger + CANARY_LEN, CANARY, row->name);
		free(buf);
		rows++;
		free(ref);
	}
}

/* ---- arrays ---- */

struct array_row {
	const char *name;
	size_t size;
	const size_t *bounds;
	size_t offered; /* elements of the caller's array */
	int (*get)(void *out, size_t max);
};

static int get_class_stats(void *out, size_t max)
{
	return shmrig_pool_class_stats(pool, out, max);
}

static int get_owner_stats(void *out, size_t max)
{
	return shmrig_pool_owner_stats(pool, out, max);
}

static const struct array_row arrays[] = {
	{ "struct shmrig_pool_class_stats", sizeof(struct shmrig_pool_class_stats),
	  BOUNDS(END(struct shmrig_pool_class_stats, live_blocks),
		 END(struct shmrig_pool_class_stats, live_bytes)),
	  SHMRIG_POOL_NUM_CLASSES, get_class_stats },
	/* this process is the only owner: three elements stay unfilled */
	{ "struct shmrig_owner_stats", sizeof(struct shmrig_owner_stats),
	  BOUNDS(END(struct shmrig_owner_stats, live_blocks),
		 END(struct shmrig_owner_stats, live_bytes)),
	  4, get_owner_stats },
};

#define NARRAYS (sizeof(arrays) / sizeof(arrays[0]))

/* Fill an array of `offered` elements `stride` apart (a canary after it) and check it
 * against ref (the library's own stride). Returns the count. */
static int check_array(const struct array_row *row, const unsigned char *ref, int count,
		       size_t offered, size_t stride, size_t canary)
{
	size_t len = offered * stride, filled_size = stride < row->size ? stride : row->size;
	unsigned char *buf = filled(len + canary, CANARY);
	size_t nfilled;
	int ret;

	set_size(buf, stride);
	ret = row->get(buf, offered);
	assert_int_equal(ret, count);
	nfilled = (size_t)count < offered ? (size_t)count : offered;
	for (size_t e = 0; e < offered; e++) {
		const unsigned char *elem = buf + e * stride;

		if (e >= nfilled) { /* past those filled: untouched */
			assert_bytes(elem, 0, stride, CANARY, row->name);
			continue;
		}
		assert_int_equal(get_size(elem), filled_size);
		assert_memory_equal(elem + 4, ref + e * row->size + 4, filled_size - 4);
		/* between elements, past the library's struct: zeroed */
		assert_bytes(elem, filled_size, stride, 0, row->name);
	}
	assert_bytes(buf, len, len + canary, CANARY, row->name);
	free(buf);
	return ret;
}

static void test_arrays(void **state)
{
	(void)state;
	for (size_t i = 0; i < NARRAYS; i++) {
		const struct array_row *row = &arrays[i];
		unsigned char *ref = filled(row->offered * row->size, 0);
		int count;

		set_size(ref, row->size);
		count = row->get(ref, row->offered);
		assert_true(count > 0);
		/* max 0: the count, and out may be NULL */
		assert_int_equal(row->get(NULL, 0), count);
		rows++;
		/* old strides, exact buffers and with a canary */
		for (const size_t *b = row->bounds; *b; b++) {
			printf("# %s: stride %zu\n", row->name, *b);
			check_array(row, ref, count, row->offered, *b, 0);
			check_array(row, ref, count, row->offered, *b, CANARY_LEN);
			rows++;
		}
		/* a newer caller's stride: the bytes between elements are zeroed */
		check_array(row, ref, count, row->offered, row->size + 24, CANARY_LEN);
		rows++;
		/* fewer elements than there are: the count, and only those offered */
		if (count > 1) {
			check_array(row, ref, count, 2, row->size + 8, CANARY_LEN);
			rows++;
		}
		/* bad strides */
		for (uint32_t bad = 0; bad < 8; bad += 4) {
			unsigned char *buf = filled(row->size, CANARY);

			set_size(buf, bad);
			assert_error(row->get(buf, row->offered), -EINVAL, row->name,
				     bad ? "size 4 is below 8" : "size not set");
			assert_bytes(buf, 4, row->size, CANARY, row->name);
			free(buf);
			rows++;
		}
		{
			unsigned char *buf = filled(8192, CANARY);

			set_size(buf, 8192);
			assert_error(row->get(buf, 1), -E2BIG, row->name,
				     "size 8192 is above 4096");
			assert_bytes(buf, 4, 8192, CANARY, row->name);
			free(buf);
			rows++;
		}
		free(ref);
	}
}

/* ---- handed out: shmrig_block_info to a for_each_live callback ---- */

/* The struct as a reader built against a later version would see it. */
struct later_block_info {
	struct shmrig_block_info now;
	uint64_t added_later;
};

static void see_info(void *arg, const struct shmrig_block_info *info)
{
	unsigned *seen = arg;

	assert_int_equal(info->size, sizeof(struct shmrig_block_info));
	assert_true(SHMRIG_HAS_FIELD(info, struct shmrig_block_info, ref));
	assert_true(SHMRIG_HAS_FIELD(info, struct later_block_info, now.ref));
	assert_false(SHMRIG_HAS_FIELD(info, struct later_block_info, added_later));
	(*seen)++;
}

static void test_handed_out(void **state)
{
	unsigned seen = 0;

	(void)state;
	assert_int_equal(shmrig_pool_for_each_live(pool, see_info, &seen), 3);
	assert_int_equal(seen, 3);
	rows++;
}

/* ---- handed out: shmrig_handler_call to a handler, in a worker ---- */

struct later_handler_call {
	struct shmrig_handler_call now;
	uint64_t added_later;
};

/* Runs in the worker: no cmocka there; a wrong answer is the call's error. */
static int see_call(void *ctx, struct shmrig_handler_call *call)
{
	(void)ctx;
	if (call->size != sizeof(struct shmrig_handler_call))
		return shmrig_handler_error(-EPROTO, "call->size is %u, want %zu", call->size,
					    sizeof(struct shmrig_handler_call));
	if (!SHMRIG_HAS_FIELD(call, struct shmrig_handler_call, scratch) ||
	    !SHMRIG_HAS_FIELD(call, struct later_handler_call, now.scratch) ||
	    SHMRIG_HAS_FIELD(call, struct later_handler_call, added_later))
		return shmrig_handler_error(-EPROTO, "SHMRIG_HAS_FIELD answers wrong");
	return 0;
}

/*
 * A session whose options point to a newer caller's channel and pool options
 * (zero tails): the session keeps its own copies, of this library's size, and
 * hands those on to the channel and to the worker's pool; its handler is
 * handed a call of this library's size. Then the nested structs' own bad
 * sizes, each named.
 */
static void test_session_nested_and_handed(void **state)
{
	struct shmrig_session_opts opts = SHMRIG_SIZED(struct shmrig_session_opts);
	struct shmrig_channel_opts channel = SHMRIG_SIZED(struct shmrig_channel_opts);
	struct shmrig_pool_opts worker_pool = SHMRIG_SIZED(struct shmrig_pool_opts);
	struct shmrig_value request = { .kind = SHMRIG_KIND_BYTES, .bytes = { "x", 1 } }, response;
	unsigned char *newer_channel, *newer_pool;
	shmrig_session *sess;

	(void)state;
	channel.backend = "pipe";
	worker_pool.arena_size = 4 * MiB;
	worker_pool.backing = SHMRIG_BACKING_PLAIN;
	newer_channel = caller_struct(&channel, sizeof(channel), sizeof(channel) + NEWER);
	newer_pool = caller_struct(&worker_pool, sizeof(worker_pool), sizeof(worker_pool) + NEWER);
	opts.channel = (const void *)newer_channel;
	opts.worker_pool = (const void *)newer_pool;
	assert_int_equal(shmrig_session_create(&opts, reg, pool, &sess), 0);
	assert_int_equal(sess->channel_opts.size, sizeof(struct shmrig_channel_opts));
	assert_int_equal(sess->worker_pool.size, sizeof(struct shmrig_pool_opts));
	assert_int_equal(shmrig_session_handler(sess, "see_call", see_call, NULL), 0);
	assert_int_equal(shmrig_session_start(sess), 0);
	if (shmrig_session_call(sess, "see_call", 0, &request, &response, 0)) {
		print_error("see_call: %s\n", shmrig_last_error());
		fail();
	}
	assert_int_equal(shmrig_value_release(&response), 0);
	assert_int_equal(shmrig_session_shutdown(sess, 0), 0);
	shmrig_session_free(sess);
	rows++;

	newer_channel[sizeof(channel)] = 1;
	assert_error(shmrig_session_create(&opts, reg, pool, &sess), -E2BIG,
		     "struct shmrig_channel_opts", "is not zero");
	newer_channel[sizeof(channel)] = 0;
	rows++;
	set_size(newer_pool, 0);
	assert_error(shmrig_session_create(&opts, reg, pool, &sess), -EINVAL,
		     "struct shmrig_pool_opts", "size not set");
	rows++;
	free(newer_channel);
	free(newer_pool);
}

/* ---- the group ---- */

static struct shmrig_ref held[3];

static int setup(void **state)
{
	static const size_t sizes[] = { 64, 5000, 3 * MiB };
	void *data;

	(void)state;
	/* defaults the input rows expect (the prefix: ours, also when run by hand) */
	setenv("SHMRIG_PREFIX", th_prefix(), 0);
	unsetenv("SHMRIG_ARENA_SIZE");
	unsetenv("SHMRIG_POOL_MAX");
	if (th_sweep_leftovers(state) || shmrig_segment_sweep(OTHER_PREFIX) < 0)
		return 1;
	if (shmrig_topo_load(EIGHT_NODES, &eight_nodes) ||
	    shmrig_topo_set_binder(eight_nodes, &recording_binder))
		return 1;
	/* blocks in two classes and a large one: outputs with something to say */
	pool = th_open_pool(4 * MiB, 64 * MiB);
	if (!pool || shmrig_registry_create(&reg) || shmrig_registry_add_builtins(reg) ||
	    shmrig_session_create(NULL, reg, pool, &stats_session))
		return 1;
	/* counters with something to say (a session without a worker has none) */
	stats_session->stats = (struct shmrig_session_stats){
		.size = sizeof(struct shmrig_session_stats),
		.calls = 11,
		.timeouts = 12,
		.stale_replies = 13,
		.starts = 14,
		.deaths = 15,
		.blocks_reaped = 16,
		.segments_removed = 17,
	};
	for (size_t i = 0; i < 3; i++)
		if (shmrig_pool_alloc(pool, sizes[i], 0, (uint32_t)i, &held[i], &data))
			return 1;
	return 0;
}

static int teardown(void **state)
{
	int ret = 0;

	for (size_t i = 0; i < 3; i++)
		ret |= shmrig_pool_free(pool, &held[i]);
	shmrig_session_free(stats_session);
	shmrig_registry_free(reg);
	ret |= shmrig_pool_close(pool);
	shmrig_topo_free(eight_nodes);
	printf("# %u rows\n", rows);
	ret |= th_count_segments(th_prefix()) || th_count_segments(OTHER_PREFIX);
	return ret ? 1 : th_remove_leftovers(state);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_input_bad_sizes),
		cmocka_unit_test(test_input_old_callers),
		cmocka_unit_test(test_input_newer_callers),
		cmocka_unit_test(test_output_bad_sizes),
		cmocka_unit_test(test_output_sizes),
		cmocka_unit_test(test_arrays),
		cmocka_unit_test(test_handed_out),
		cmocka_unit_test(test_session_nested_and_handed),
	};

	return cmocka_run_group_tests_name("growth", tests, setup, teardown);
}
