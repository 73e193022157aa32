/* SPDX-License-Identifier: MIT */
/*
 * Codecs across processes: the parent encodes, hands the frame's blocks to a
 * child and sends it the frame; the child decodes with its own registry and
 * checks a checksum of the value, then frees the blocks into the parent's
 * arenas. Also: a child that decodes blocks it was not given, and a child
 * killed while it owns a frame's blocks.
 */
#include "helpers.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include <xxhash.h>

#include <shmrig/frame.h>
#include <shmrig/registry.h>

#define TIMEOUT_MS 60000

static shmrig_pool *open_pool(void)
{
	return th_open_pool(8 * MiB, 512 * MiB);
}

static shmrig_registry *builtin_registry(void)
{
	shmrig_registry *reg = NULL;

	if (shmrig_registry_create(&reg))
		return NULL;
	if (shmrig_registry_add_builtins(reg)) {
		shmrig_registry_free(reg);
		return NULL;
	}
	return reg;
}

/* ---- a checksum of everything a value says: description and bytes ---- */

static void hash_u64(XXH3_state_t *st, uint64_t x)
{
	XXH3_64bits_update(st, &x, sizeof(x));
}

static void hash_str(XXH3_state_t *st, const char *s)
{
	XXH3_64bits_update(st, s, strlen(s) + 1);
}

static void hash_array(XXH3_state_t *st, const struct shmrig_array *a)
{
	uint64_t nbytes = 0;

	hash_u64(st, (uint64_t)a->dtype);
	hash_u64(st, a->ndim);
	for (uint32_t d = 0; d < a->ndim; d++)
		hash_u64(st, a->shape[d]);
	hash_u64(st, (uint64_t)a->order);
	/* a description it refuses (nbytes 0) is hashed above: it differs from the sender's */
	(void)!shmrig_array_nbytes(a, &nbytes);
	if (nbytes)
		XXH3_64bits_update(st, a->data, (size_t)nbytes);
}

static void hash_named(XXH3_state_t *st, const struct shmrig_named_array *arrays, uint32_t n)
{
	for (uint32_t i = 0; i < n; i++) {
		hash_str(st, arrays[i].name);
		hash_array(st, &arrays[i].array);
	}
}

static uint64_t value_checksum(const struct shmrig_value *v)
{
	XXH3_state_t *st = XXH3_createState();
	uint64_t hash;

	if (!st)
		return 0;
	XXH3_64bits_reset(st);
	hash_u64(st, (uint64_t)v->kind);
	switch (v->kind) {
	case SHMRIG_KIND_BYTES:
		hash_u64(st, v->bytes.len);
		if (v->bytes.len)
			XXH3_64bits_update(st, v->bytes.data, (size_t)v->bytes.len);
		break;
	case SHMRIG_KIND_NDARRAY:
		hash_array(st, &v->array);
		break;
	case SHMRIG_KIND_TABLE:
		hash_u64(st, v->table.nrows);
		hash_u64(st, v->table.ncolumns);
		hash_named(st, v->table.columns, v->table.ncolumns);
		break;
	case SHMRIG_KIND_DATASET:
		hash_u64(st, v->dataset.ngroups);
		for (uint32_t g = 0; g < v->dataset.ngroups; g++) {
			hash_str(st, v->dataset.groups[g].name);
			hash_u64(st, v->dataset.groups[g].nvariables);
			hash_named(st, v->dataset.groups[g].variables,
				   v->dataset.groups[g].nvariables);
		}
		break;
	default:
		break;
	}
	hash = XXH3_64bits_digest(st);
	XXH3_freeState(st);
	return hash;
}

/* ---- the values sent ---- */

enum {
	ROWS = 1000,
	NVALUES = 10
};

/* Host memory behind the values: static, so forked children find it reachable. */
static double *large;            /* 3 MiB */
static int16_t small[3 * 5 * 7]; /* 3-d, F order */
static uint64_t scalar = 0x0123456789abcdefull;
static int64_t ids[ROWS];
static float xs[ROWS];
static bool oks[ROWS];
static uint8_t pixels[8][8];
static double weights[5];
static unsigned char *blob; /* 100 KiB */

static struct shmrig_named_array columns[] = {
	{ "id", { .dtype = SHMRIG_DTYPE_INT64, .ndim = 1, .shape = { ROWS }, .order = 'C' } },
	{ "x", { .dtype = SHMRIG_DTYPE_FLOAT32, .ndim = 1, .shape = { ROWS }, .order = 'C' } },
	{ "ok", { .dtype = SHMRIG_DTYPE_BOOL, .ndim = 1, .shape = { ROWS }, .order = 'C' } },
};
static struct shmrig_named_array image_vars[] = {
	{ "pixels", { .dtype = SHMRIG_DTYPE_UINT8, .ndim = 2, .shape = { 8, 8 }, .order = 'F' } },
};
static struct shmrig_named_array model_vars[] = {
	{ "weights", { .dtype = SHMRIG_DTYPE_FLOAT64, .ndim = 1, .shape = { 5 }, .order = 'C' } },
	{ "scale", { .dtype = SHMRIG_DTYPE_UINT64, .ndim = 0, .order = 'C' } },
};
static struct shmrig_group groups[] = {
	{ .name = "image", .nvariables = 1, .variables = image_vars },
	{ .name = "model", .nvariables = 2, .variables = model_vars },
};

/* The values, each with the codec that takes it and the leases its decode holds. */
struct sample {
	const char *codec;
	uint32_t leases;
	struct shmrig_value value;
};

static struct sample samples[NVALUES];

static void make_samples(void)
{
	struct shmrig_value v;

	large = malloc(3 * MiB);
	blob = malloc(100 * 1024);
	assert_non_null(large);
	assert_non_null(blob);
	th_fill((unsigned char *)large, 3 * MiB, 1);
	th_fill((unsigned char *)small, sizeof(small), 2);
	th_fill(blob, 100 * 1024, 3);
	th_fill(pixels[0], sizeof(pixels), 4);
	th_fill((unsigned char *)weights, sizeof(weights), 5);
	for (int i = 0; i < ROWS; i++) {
		ids[i] = (int64_t)i * -7919;
		xs[i] = (float)i / 3.0f;
		oks[i] = i % 5 == 0;
	}
	columns[0].array.data = ids;
	columns[1].array.data = xs;
	columns[2].array.data = oks;
	image_vars[0].array.data = pixels;
	model_vars[0].array.data = weights;
	model_vars[1].array.data = &scalar;

	v = (struct shmrig_value){ .kind = SHMRIG_KIND_NDARRAY };
	v.array = (struct shmrig_array){ .dtype = SHMRIG_DTYPE_FLOAT64,
					 .ndim = 2,
					 .shape = { 384, 1024 },
					 .order = 'C',
					 .data = large };
	samples[0] = (struct sample){ "ndarray", 1, v };
	v.array = (struct shmrig_array){ .dtype = SHMRIG_DTYPE_INT16,
					 .ndim = 3,
					 .shape = { 3, 5, 7 },
					 .order = 'F',
					 .data = small };
	samples[1] = (struct sample){ "ndarray", 1, v };
	v.array = (struct shmrig_array){
		.dtype = SHMRIG_DTYPE_UINT64, .ndim = 0, .order = 'C', .data = &scalar
	};
	samples[2] = (struct sample){ "ndarray", 1, v };
	v.array = (struct shmrig_array){
		.dtype = SHMRIG_DTYPE_FLOAT32, .ndim = 2, .shape = { 4, 0 }, .order = 'C'
	};
	samples[3] = (struct sample){ "ndarray", 1, v };

	v = (struct shmrig_value){ .kind = SHMRIG_KIND_TABLE };
	v.table = (struct shmrig_table){ .nrows = ROWS, .ncolumns = 3, .columns = columns };
	samples[4] = (struct sample){ "table", 3, v };
	v.table = (struct shmrig_table){ .nrows = 0, .ncolumns = 0 };
	samples[5] = (struct sample){ "table", 0, v };

	v = (struct shmrig_value){ .kind = SHMRIG_KIND_DATASET };
	v.dataset = (struct shmrig_dataset){ .ngroups = 2, .groups = groups };
	samples[6] = (struct sample){ "dataset", 3, v };
	v.dataset = (struct shmrig_dataset){ .ngroups = 0 };
	samples[7] = (struct sample){ "dataset", 0, v };

	v = (struct shmrig_value){ .kind = SHMRIG_KIND_BYTES };
	v.bytes.data = blob;
	v.bytes.len = 100 * 1024;
	samples[8] = (struct sample){ "bytes", 0, v };
	v.bytes.data = NULL;
	v.bytes.len = 0;
	samples[9] = (struct sample){ "bytes", 0, v };
}

static void free_samples(void)
{
	free(large);
	free(blob);
	large = NULL;
	blob = NULL;
}

/* ---- the wire between parent and child ---- */

struct message {
	uint64_t fingerprint; /* of the sender's registry */
	uint64_t checksum;    /* of the value encoded */
	uint64_t len;         /* frame bytes that follow */
};

struct reply {
	int32_t decode;  /* shmrig_registry_decode() */
	int32_t release; /* shmrig_value_release() */
	int32_t same_registry;
	int32_t same_checksum;
	uint32_t leases;
	uint32_t kind;
};

typedef int (*peer_fn)(shmrig_pool *pool, shmrig_registry *reg, int in, int out);

/* In the child: its own pool and registry (the builtins), then fn. */
static int with_pool_and_registry(int in, int out, void *arg)
{
	shmrig_pool *pool = open_pool();
	shmrig_registry *reg = builtin_registry();
	int status;

	if (!pool || !reg)
		return 99;
	status = (*(peer_fn *)arg)(pool, reg, in, out);
	shmrig_registry_free(reg);
	/* the child owns nothing at the end: its close has nothing to report */
	if (shmrig_pool_close(pool) && !status)
		status = 98;
	return status;
}

/* A child that opens its own pool and registry and runs fn(pool, reg, in,
 * out); its exit status is fn's. */
static struct th_peer spawn_peer(peer_fn fn)
{
	return th_peer_spawn(with_pool_and_registry, &fn);
}

static int finish_peer(struct th_peer *p)
{
	return th_peer_finish(p, TIMEOUT_MS);
}

/* Read one message into a malloc'd frame (8-aligned, as malloc is). */
static int receive(int in, struct message *msg, void **frame)
{
	if (th_read_all(in, msg, sizeof(*msg)))
		return -1;
	*frame = malloc(msg->len ? msg->len : 1);
	if (!*frame)
		return -1;
	if (th_read_all(in, *frame, msg->len)) {
		free(*frame);
		return -1;
	}
	return 0;
}

/* Decode every frame sent until EOF, verify it, release it, reply. */
static int child_decode_all(shmrig_pool *pool, shmrig_registry *reg, int in, int out)
{
	struct message msg;
	void *frame;

	while (receive(in, &msg, &frame) == 0) {
		struct reply r = { 0 };
		struct shmrig_value value;

		r.same_registry = msg.fingerprint == shmrig_registry_fingerprint(reg);
		r.decode = shmrig_registry_decode(reg, pool, frame, msg.len, &value);
		free(frame);
		if (r.decode == 0) {
			r.kind = value.kind;
			r.same_checksum = value_checksum(&value) == msg.checksum;
			r.leases = shmrig_value_leases(&value);
			r.release = shmrig_value_release(&value);
		}
		if (th_write_all(out, &r, sizeof(r)))
			return 20;
	}
	return 0;
}

/* Encode a sample; hand its blocks to the peer if `transfer`; send; the frame stays ours. */
static void send_sample(shmrig_registry *reg, shmrig_pool *pool, struct th_peer *peer,
			const struct sample *s, bool transfer, void **frame, size_t *len)
{
	struct shmrig_frame parsed;
	struct message msg;

	assert_int_equal(shmrig_registry_encode(reg, pool, &s->value, frame, len), 0);
	assert_int_equal(shmrig_frame_parse(*frame, *len, &parsed), 0);
	assert_string_equal(shmrig_registry_codec_name(reg, parsed.codec_id), s->codec);
	msg.fingerprint = shmrig_registry_fingerprint(reg);
	msg.checksum = value_checksum(&s->value);
	msg.len = *len;
	if (transfer) {
		int ret = shmrig_frame_transfer(pool, *frame, *len, peer->pid);

		if (ret)
			print_error("transfer of a %s frame: %s\n", s->codec, shmrig_last_error());
		assert_int_equal(ret, 0);
		/* the blocks are the child's now: we may not free them (nothing is freed) */
		if (parsed.nbuffers)
			assert_int_equal(shmrig_frame_discard(pool, *frame, *len), -EPERM);
	}
	assert_int_equal(th_write_all(peer->to_child, &msg, sizeof(msg)), 0);
	assert_int_equal(th_write_all(peer->to_child, *frame, *len), 0);
}

/* ---- every built-in codec across two processes ---- */

static void test_roundtrip_across(void **state)
{
	/* static: forked children inherit these, and valgrind must find them reachable */
	static shmrig_pool *pool;
	static shmrig_registry *reg;
	struct th_peer peer;

	(void)state;
	pool = open_pool();
	reg = builtin_registry();
	assert_non_null(pool);
	assert_non_null(reg);
	make_samples();
	peer = spawn_peer(child_decode_all);
	for (int i = 0; i < NVALUES; i++) {
		struct reply r;
		void *frame;
		size_t len;

		send_sample(reg, pool, &peer, &samples[i], true, &frame, &len);
		free(frame);
		assert_int_equal(th_read_all(peer.from_child, &r, sizeof(r)), 0);
		assert_int_equal(r.decode, 0);
		assert_true(r.same_registry);
		assert_int_equal(r.kind, samples[i].value.kind);
		assert_true(r.same_checksum);
		assert_int_equal(r.leases, samples[i].leases);
		assert_int_equal(r.release, 0);
		/* the child freed them into our arenas */
		assert_int_equal(th_live_blocks(pool), 0);
	}
	assert_int_equal(finish_peer(&peer), 0);
	assert_int_equal(th_live_blocks(pool), 0);
	assert_int_equal(shmrig_pool_audit(pool), 0);
	shmrig_registry_free(reg);
	assert_int_equal(shmrig_pool_close(pool), 0);
	assert_int_equal(th_count_segments(th_prefix()), 0);
	free_samples();
}

/*
 * A child decodes a frame whose blocks were not handed to it: decode refuses
 * with -EPERM (a view of blocks their owner may free at any time is no value)
 * and cannot free them either. The blocks stay live and the parent's, who
 * discards them.
 */
static void test_decode_not_transferred(void **state)
{
	static shmrig_pool *pool;
	static shmrig_registry *reg;
	static const int picks[] = { 1, 4, 8 }; /* ndarray, table (a pack), bytes (temporary) */
	struct th_peer peer;

	(void)state;
	pool = open_pool();
	reg = builtin_registry();
	assert_non_null(pool);
	assert_non_null(reg);
	make_samples();
	peer = spawn_peer(child_decode_all);
	for (size_t i = 0; i < sizeof(picks) / sizeof(picks[0]); i++) {
		const struct sample *s = &samples[picks[i]];
		struct reply r;
		void *frame;
		size_t len;

		send_sample(reg, pool, &peer, s, false, &frame, &len);
		assert_int_equal(th_read_all(peer.from_child, &r, sizeof(r)), 0);
		assert_int_equal(r.decode, -EPERM);
		/* still live, still ours */
		assert_int_equal(th_live_blocks(pool), 1);
		assert_int_equal(shmrig_frame_discard(pool, frame, len), 0);
		assert_int_equal(th_live_blocks(pool), 0);
		free(frame);
	}
	assert_int_equal(finish_peer(&peer), 0);
	assert_int_equal(shmrig_pool_audit(pool), 0);
	shmrig_registry_free(reg);
	assert_int_equal(shmrig_pool_close(pool), 0);
	assert_int_equal(th_count_segments(th_prefix()), 0);
	free_samples();
}

/* ---- a receiver killed while it owns a frame's blocks ---- */

enum {
	HELD = 3
};
static const int held[HELD] = { 0, 4, 8 }; /* a large block, a pack, a temporary block */

/* Receive the frames, say so, and wait to be killed without decoding. */
static int child_hold(shmrig_pool *pool, shmrig_registry *reg, int in, int out)
{
	static void *frames[HELD]; /* reachable when valgrind looks at the killed child */
	struct message msg;
	char ready = 'r';

	(void)pool;
	(void)reg;
	for (int i = 0; i < HELD; i++)
		if (receive(in, &msg, &frames[i]))
			return 30;
	if (th_write_all(out, &ready, 1))
		return 31;
	th_read_all(in, &ready, 1); /* until killed: the parent closes nothing before */
	return 32;
}

static void test_reap_killed_receiver(void **state)
{
	static shmrig_pool *pool;
	static shmrig_registry *reg;
	void *frames[HELD];
	size_t lens[HELD];
	struct th_peer peer;
	char ready;

	(void)state;
	pool = open_pool();
	reg = builtin_registry();
	assert_non_null(pool);
	assert_non_null(reg);
	make_samples();
	peer = spawn_peer(child_hold);
	for (int i = 0; i < HELD; i++)
		send_sample(reg, pool, &peer, &samples[held[i]], true, &frames[i], &lens[i]);
	assert_int_equal(th_read_all(peer.from_child, &ready, 1), 0);
	assert_int_equal(th_live_blocks(pool), HELD);
	assert_int_equal(shmrig_pool_reap(pool), 0); /* the owner is alive */

	assert_int_equal(kill(peer.pid, SIGKILL), 0);
	assert_int_equal(finish_peer(&peer), 128 + SIGKILL);
	assert_int_equal(th_live_blocks(pool), HELD);
	assert_int_equal(shmrig_pool_reap(pool), HELD);
	assert_int_equal(th_live_blocks(pool), 0);
	assert_int_equal(shmrig_pool_audit(pool), 0);
	for (int i = 0; i < HELD; i++) {
		struct shmrig_value value;

		/* the frames name freed blocks now */
		assert_int_equal(shmrig_frame_discard(pool, frames[i], lens[i]), -SHMRIG_ESTALE);
		assert_int_equal(shmrig_registry_decode(reg, pool, frames[i], lens[i], &value),
				 -SHMRIG_ESTALE);
		free(frames[i]);
	}
	assert_int_equal(th_live_blocks(pool), 0);
	shmrig_registry_free(reg);
	assert_int_equal(shmrig_pool_close(pool), 0);
	assert_int_equal(th_count_segments(th_prefix()), 0);
	free_samples();
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_roundtrip_across),
		cmocka_unit_test(test_decode_not_transferred),
		cmocka_unit_test(test_reap_killed_receiver),
	};

	return cmocka_run_group_tests(tests, th_sweep_leftovers, NULL);
}
