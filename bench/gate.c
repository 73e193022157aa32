/* SPDX-License-Identifier: MIT */
/*
 * shmrig-gate: the deterministic workloads of the instruction gate
 * (scripts/perf-gate). No Google Benchmark: only the library and a loop.
 *
 *   shmrig-gate [--spin OP:K] OP N [N ...]
 *
 * Sets OP up, runs WARMUP iterations, then for each N runs exactly N
 * iterations between CALLGRIND_ZERO_STATS and CALLGRIND_DUMP_STATS_AT("OP N"),
 * so that every callgrind dump holds the cost of N operations and nothing
 * else. scripts/perf-gate gives two counts (1000 and 11000) and divides the
 * difference of the two dumps by 10000: what a region costs once (the client
 * requests, the loop's entry) cancels. Outside callgrind the client requests
 * do nothing and the program is a plain, quick self-check of the operations.
 *
 * Every input is fixed (no time, no randomness, no pid in a measured path),
 * so the counts are the same run after run on one build and machine class.
 * What is measured is CPU-bound: copies stay at 64 bytes, because callgrind
 * counts a `rep movsb` as one instruction per byte.
 *
 *   pool_alloc_free                 shmrig_pool_alloc(64 B) + shmrig_pool_free
 *                                   (the per-process cache path)
 *   registry_encode_decode_bytes64  encode a 64-byte bytes value with the
 *                                   built-in codecs, decode the frame, release
 *   registry_dispatch_64codecs      encode + decode + release through a
 *                                   registry of 64 codecs of one kind where
 *                                   only the last accepts; they write 4 bytes
 *                                   of metadata and no buffer, so the choice
 *                                   and the registry's own work dominate
 *   frame_parse                     shmrig_frame_parse of a frame with 4 refs
 *   ring_send_recv                  one 64-byte send and one recv on a "ring"
 *                                   channel end (see below)
 *
 * The ring needs a peer, and a peer we wait for spins a varying number of
 * times. So nobody waits in the measured regions: the peer (a fork, which
 * callgrind follows into its own output file) opens its end, publishes every
 * message the parent will receive, says so through a pipe, and then blocks on
 * that pipe, off the ring. The ring has a slot for every message in each
 * direction, so the parent's sends never find it full, its recvs never find
 * it empty, and no side is ever asleep on the futex: each send and recv takes
 * the same path every time.
 *
 * --spin OP:K adds K iterations of a volatile loop to every iteration of OP
 * (only OP; other ops ignore it): a deliberate slowdown, which
 * `scripts/perf-gate --self-test` calibrates and must see flagged.
 *
 * Exit status: 0, 1 an operation failed, 2 bad usage.
 */
#include <shmrig/shmrig.h>

#include <alloca.h>
#include <stdalign.h>
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include <valgrind/callgrind.h>

#define GATE_PREFIX "gate"
#define GATE_ARENA_SIZE ((size_t)2 << 20)
#define WARMUP 100u
#define MAX_REGIONS 8
#define MAX_COUNT 1000000ul /* per region: bounds the ring's size */
#define MSG_SIZE 64
#define DISPATCH_CODECS 64
#define PARSE_REFS 4
#define RING_SLOT_SIZE 128u
#define TIMEOUT_MS 10000
#define STACK_PAGE 4096u
#define STACK_PHASE 2048u /* the measured loop's frames start here in their page */

struct gate {
	shmrig_pool *pool;
	shmrig_registry *reg;
	struct shmrig_value bytes64;
	unsigned char payload[MSG_SIZE];
	/* frame_parse: the frame, 8-byte aligned */
	uint64_t frame[(sizeof(struct shmrig_frame_header) +
			PARSE_REFS * sizeof(struct shmrig_ref) + 16) /
		       8];
	size_t frame_len;
	/* ring_send_recv */
	shmrig_channel *ch;
	pid_t peer;
	int release_fd; /* closing it lets the peer go */
};

/*
 * The workload's own buffers (the payload, the frame) sit at a fixed offset
 * in a page of their own: glibc's copy and string routines take other paths
 * for other alignments and near a page's end, so an edit elsewhere in this
 * file must not move them.
 */
static alignas(4096) struct gate gate_state = { .release_fd = -1 };

struct op {
	const char *name;
	int (*setup)(struct gate *g, unsigned long total);
	int (*run)(struct gate *g);
	int (*teardown)(struct gate *g); /* NULL: nothing to do; 0 or 1 */
};

/* The slowdown: stores the compiler may not drop. */
static volatile unsigned long spin_sink;

static void spin(unsigned long k)
{
	for (unsigned long i = 0; i < k; i++)
		spin_sink = i;
}

static int fail(const char *what, int err)
{
	fprintf(stderr, "shmrig-gate: %s: %s (%s)\n", what, shmrig_strerror(err),
		shmrig_last_error());
	return err;
}

static int open_pool(struct gate *g)
{
	struct shmrig_pool_opts opts = {
		.size = sizeof(struct shmrig_pool_opts),
		.prefix = GATE_PREFIX,
		.arena_size = GATE_ARENA_SIZE,
		/* plain pages: the backing never depends on the hugepages free */
		.backing = SHMRIG_BACKING_PLAIN,
	};
	int ret = shmrig_pool_open(&opts, &g->pool);

	return ret ? fail("pool_open", ret) : 0;
}

/* ---- pool_alloc_free ---- */

static int pool_setup(struct gate *g, unsigned long total)
{
	(void)total;
	return open_pool(g);
}

static int pool_run(struct gate *g)
{
	struct shmrig_ref ref;
	void *data;
	int ret = shmrig_pool_alloc(g->pool, MSG_SIZE, 0, 0, &ref, &data);

	if (ret)
		return fail("pool_alloc", ret);
	ret = shmrig_pool_free(g->pool, &ref);
	return ret ? fail("pool_free", ret) : 0;
}

/* ---- registry_encode_decode_bytes64 ---- */

static int encode_decode(struct gate *g, const struct shmrig_value *value)
{
	struct shmrig_value out;
	void *frame;
	size_t len;
	int ret = shmrig_registry_encode(g->reg, g->pool, value, &frame, &len);

	if (ret)
		return fail("encode", ret);
	ret = shmrig_registry_decode(g->reg, g->pool, frame, len, &out);
	free(frame);
	if (ret)
		return fail("decode", ret);
	ret = shmrig_value_release(&out);
	return ret ? fail("value_release", ret) : 0;
}

static int bytes_setup(struct gate *g, unsigned long total)
{
	int ret;

	(void)total;
	ret = open_pool(g);
	if (ret)
		return ret;
	ret = shmrig_registry_create(&g->reg);
	if (!ret)
		ret = shmrig_registry_add_builtins(g->reg);
	if (ret)
		return fail("registry", ret);
	for (size_t i = 0; i < sizeof(g->payload); i++)
		g->payload[i] = (unsigned char)(i * 37 + 11);
	g->bytes64 = (struct shmrig_value){
		.kind = SHMRIG_KIND_BYTES,
		.bytes = { .data = g->payload, .len = sizeof(g->payload) },
	};
	return 0;
}

static int bytes_run(struct gate *g)
{
	return encode_decode(g, &g->bytes64);
}

/* ---- registry_dispatch_64codecs ---- */

static const bool accepts[DISPATCH_CODECS] = { [DISPATCH_CODECS - 1] = true };

static bool dispatch_can_encode(void *ctx, const struct shmrig_value *value)
{
	(void)value;
	return *(const bool *)ctx;
}

/* Metadata {"n": 1}: the smallest map, no buffer. */
static int dispatch_encode(void *ctx, struct shmrig_encoder *enc, const struct shmrig_value *value)
{
	int ret;

	(void)ctx;
	(void)value;
	ret = shmrig_meta_put_map(enc, 1);
	if (!ret)
		ret = shmrig_meta_put_str(enc, "n");
	return ret ? ret : shmrig_meta_put_int(enc, 1);
}

static int dispatch_decode(void *ctx, struct shmrig_decoder *dec, struct shmrig_value *out)
{
	(void)ctx;
	(void)dec;
	out->kind = SHMRIG_KIND_BYTES;
	out->bytes.data = NULL;
	out->bytes.len = 0;
	return 0;
}

static int dispatch_setup(struct gate *g, unsigned long total)
{
	static char names[DISPATCH_CODECS][8];
	int ret;

	(void)total;
	ret = open_pool(g);
	if (ret)
		return ret;
	ret = shmrig_registry_create(&g->reg);
	if (ret)
		return fail("registry_create", ret);
	for (int i = 0; i < DISPATCH_CODECS; i++) {
		struct shmrig_codec codec = {
			.size = sizeof(struct shmrig_codec),
			.name = names[i],
			.kinds = SHMRIG_KIND_BIT(SHMRIG_KIND_BYTES),
			.can_encode = dispatch_can_encode,
			.encode = dispatch_encode,
			.decode = dispatch_decode,
			.ctx = (void *)&accepts[i],
		};

		snprintf(names[i], sizeof(names[i]), "c%02d", i);
		ret = shmrig_registry_register(g->reg, &codec);
		if (ret < 0)
			return fail("registry_register", ret);
	}
	for (size_t i = 0; i < sizeof(g->payload); i++)
		g->payload[i] = (unsigned char)i;
	g->bytes64 = (struct shmrig_value){
		.kind = SHMRIG_KIND_BYTES,
		.bytes = { .data = g->payload, .len = sizeof(g->payload) },
	};
	return 0;
}

/* ---- frame_parse ---- */

static int parse_setup(struct gate *g, unsigned long total)
{
	static const unsigned char meta[] = { 0x81, 0xa1, 'n', 0x01 }; /* {"n": 1} */
	struct shmrig_frame_header h = {
		.magic = SHMRIG_FRAME_MAGIC,
		.version = SHMRIG_FRAME_VERSION,
		.codec_id = 3,
		.nbuffers = PARSE_REFS,
		.meta_len = sizeof(meta),
	};
	unsigned char *p = (unsigned char *)g->frame;

	(void)total;
	g->frame_len = shmrig_frame_size(PARSE_REFS, sizeof(meta));
	if (g->frame_len > sizeof(g->frame))
		return fail("frame_size", -EOVERFLOW);
	memcpy(p, &h, sizeof(h));
	for (int i = 0; i < PARSE_REFS; i++) {
		struct shmrig_ref ref = {
			.offset = (uint64_t)i * 4096,
			.size = 4096,
			.content_size = 4000 + (uint64_t)i,
			.generation = 7,
		};

		snprintf(ref.name, sizeof(ref.name), GATE_PREFIX "-gate-%d", i);
		memcpy(p + sizeof(h) + (size_t)i * sizeof(ref), &ref, sizeof(ref));
	}
	memcpy(p + g->frame_len - sizeof(meta), meta, sizeof(meta));
	return 0;
}

static int parse_run(struct gate *g)
{
	struct shmrig_frame f;
	int ret = shmrig_frame_parse(g->frame, g->frame_len, &f);

	return ret ? fail("frame_parse", ret) : 0;
}

/* ---- ring_send_recv ---- */

/* The peer: open end 1, publish `total` messages, report, wait to be let go. */
static int ring_peer(shmrig_channel_pair *pair, pid_t parent, unsigned long total, int ready_fd,
		     int release_fd)
{
	unsigned char msg[MSG_SIZE];
	shmrig_channel *ch;
	char byte = 1;
	int ret;

	ret = shmrig_channel_open(pair, 1, parent, NULL, 0, &ch);
	shmrig_channel_pair_free(pair);
	if (ret)
		return fail("peer: channel_open", ret);
	for (unsigned long i = 0; i < total; i++) {
		memset(msg, (int)(i & 0xff), sizeof(msg));
		ret = shmrig_channel_send(ch, msg, sizeof(msg), TIMEOUT_MS);
		if (ret)
			return fail("peer: send", ret);
	}
	if (write(ready_fd, &byte, 1) != 1)
		return fail("peer: write", -errno);
	/* Off the ring until the parent is done: EOF when it closes its end. */
	while (read(release_fd, &byte, 1) < 0 && errno == EINTR)
		;
	shmrig_channel_close(ch);
	return 0;
}

static int ring_setup(struct gate *g, unsigned long total)
{
	struct shmrig_channel_opts opts = { .size = sizeof(struct shmrig_channel_opts),
					    .backend = "ring",
					    .slot_size = RING_SLOT_SIZE };
	shmrig_channel_pair *pair;
	int ready[2], release[2];
	char byte;
	int ret;

	/* a slot for every message, plus the hello */
	opts.slots = 1;
	while (opts.slots < total + 1)
		opts.slots *= 2;
	ret = shmrig_channel_pair_create(&opts, &pair);
	if (ret)
		return fail("channel_pair_create", ret);
	if (pipe2(ready, O_CLOEXEC) || pipe2(release, O_CLOEXEC)) {
		shmrig_channel_pair_free(pair);
		return fail("pipe", -errno);
	}
	fflush(NULL);
	g->peer = fork();
	if (g->peer < 0) {
		shmrig_channel_pair_free(pair);
		return fail("fork", -errno);
	}
	if (g->peer == 0) {
		close(ready[0]);
		close(release[1]);
		_exit(ring_peer(pair, getppid(), total, ready[1], release[0]) ? 1 : 0);
	}
	close(ready[1]);
	close(release[0]);
	g->release_fd = release[1];
	ret = shmrig_channel_open(pair, 0, g->peer, NULL, 0, &g->ch);
	shmrig_channel_pair_free(pair);
	if (ret) {
		close(ready[0]);
		return fail("channel_open", ret);
	}
	/* Every message is published before the first measured recv. */
	ret = read(ready[0], &byte, 1) == 1 ? 0 : -EPIPE;
	close(ready[0]);
	return ret ? fail("peer did not publish its messages", ret) : 0;
}

static int ring_run(struct gate *g)
{
	static const unsigned char msg[MSG_SIZE];
	void *got;
	size_t len;
	int ret = shmrig_channel_send(g->ch, msg, sizeof(msg), TIMEOUT_MS);

	if (ret)
		return fail("send", ret);
	ret = shmrig_channel_recv(g->ch, &got, &len, TIMEOUT_MS);
	if (ret)
		return fail("recv", ret);
	free(got);
	return len == MSG_SIZE ? 0 : fail("recv: wrong length", -EBADMSG);
}

static int ring_teardown(struct gate *g)
{
	int status = 0;

	shmrig_channel_close(g->ch);
	g->ch = NULL;
	if (g->peer <= 0)
		return 0;
	close(g->release_fd);
	while (waitpid(g->peer, &status, 0) < 0 && errno == EINTR)
		;
	if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
		return 0;
	fprintf(stderr, "shmrig-gate: the ring peer ended with status 0x%x\n", status);
	return 1;
}

static const struct op ops[] = {
	{ "pool_alloc_free", pool_setup, pool_run, NULL },
	{ "registry_encode_decode_bytes64", bytes_setup, bytes_run, NULL },
	{ "registry_dispatch_64codecs", dispatch_setup, bytes_run, NULL },
	{ "frame_parse", parse_setup, parse_run, NULL },
	{ "ring_send_recv", ring_setup, ring_run, ring_teardown },
};

static __attribute__((noinline)) int run_loop(const struct op *op, struct gate *g, unsigned long n,
					      unsigned long spins)
{
	for (unsigned long i = 0; i < n; i++) {
		if (op->run(g))
			return 1;
		if (spins)
			spin(spins);
	}
	return 0;
}

/*
 * Run n iterations: the only code between the client requests.
 *
 * Where the stack is depends on the environment's size and argv (a longer
 * checkout path, one more variable in CI) and on the callers' frames. glibc's
 * copy and string routines take other paths for other alignments and near a
 * page's end, so a buffer on the stack (a ref, an encoder) at another offset
 * costs other counts. So the loop runs on a stack moved to the same offset in
 * its page every time, whoever calls.
 */
static __attribute__((noinline)) int run_region(const struct op *op, struct gate *g,
						unsigned long n, unsigned long spins)
{
	uintptr_t sp = (uintptr_t)__builtin_frame_address(0);
	/* + 16: never an empty allocation; a constant shift changes no phase */
	volatile char *pad = alloca((sp - STACK_PHASE) % STACK_PAGE + 16);

	pad[0] = 0;
	return run_loop(op, g, n, spins);
}

static void usage(FILE *out)
{
	fprintf(out, "usage: shmrig-gate [--spin OP:K] OP N [N ...]\noperations:");
	for (size_t i = 0; i < sizeof(ops) / sizeof(ops[0]); i++)
		fprintf(out, " %s", ops[i].name);
	fprintf(out, "\n");
}

static bool parse_count(const char *s, unsigned long max, unsigned long *out)
{
	char *end;
	unsigned long v;

	errno = 0;
	v = strtoul(s, &end, 10);
	if (errno || end == s || *end || s[0] == '-' || v > max)
		return false;
	*out = v;
	return true;
}

int main(int argc, char **argv)
{
	const char *spin_op = NULL;
	unsigned long spins = 0, counts[MAX_REGIONS], total = WARMUP;
	const struct op *op = NULL;
	struct gate *g = &gate_state;
	int nregions = 0, argi = 1, ret = 0;

	if (argi + 1 < argc && strcmp(argv[argi], "--spin") == 0) {
		char *colon = strchr(argv[argi + 1], ':');

		if (!colon || !parse_count(colon + 1, 1000000, &spins)) {
			usage(stderr);
			return 2;
		}
		*colon = '\0';
		spin_op = argv[argi + 1];
		argi += 2;
	}
	if (argi < argc && (strcmp(argv[argi], "-h") == 0 || strcmp(argv[argi], "--help") == 0)) {
		usage(stdout);
		return 0;
	}
	if (argc - argi < 2 || argc - argi - 1 > MAX_REGIONS) {
		usage(stderr);
		return 2;
	}
	for (size_t i = 0; i < sizeof(ops) / sizeof(ops[0]); i++)
		if (strcmp(argv[argi], ops[i].name) == 0)
			op = &ops[i];
	if (!op) {
		fprintf(stderr, "shmrig-gate: no operation '%s'\n", argv[argi]);
		usage(stderr);
		return 2;
	}
	for (int i = argi + 1; i < argc; i++) {
		if (!parse_count(argv[i], MAX_COUNT, &counts[nregions])) {
			fprintf(stderr, "shmrig-gate: bad count '%s' (0..%lu)\n", argv[i],
				MAX_COUNT);
			return 2;
		}
		total += counts[nregions++];
	}
	if (!spin_op || strcmp(spin_op, op->name) != 0)
		spins = 0;

	if (op->setup(g, total) || run_region(op, g, WARMUP, spins)) {
		ret = 1;
		goto out;
	}
	for (int r = 0; r < nregions; r++) {
		char label[96];

		snprintf(label, sizeof(label), "%s %lu", op->name, counts[r]);
		CALLGRIND_ZERO_STATS;
		if (run_region(op, g, counts[r], spins)) {
			ret = 1;
			goto out;
		}
		CALLGRIND_DUMP_STATS_AT(label);
		printf("shmrig-gate: %s: %lu iterations measured%s\n", op->name, counts[r],
		       RUNNING_ON_VALGRIND ? "" : " (not under callgrind: nothing counted)");
	}
out:
	if (op->teardown && op->teardown(g))
		ret = 1;
	shmrig_registry_free(g->reg);
	if (g->pool) {
		int close_ret = shmrig_pool_close(g->pool);

		if (close_ret) {
			fail("pool_close", close_ret);
			ret = 1;
		}
	}
	return ret;
}
