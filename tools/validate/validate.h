/* SPDX-License-Identifier: MIT */
#ifndef SHMRIG_VALIDATE_H
#define SHMRIG_VALIDATE_H

/*
 * shmrig-validate: the codec conformance kit (issue 13).
 *
 * The parent (main.c) never runs codec code: it asks a child for the codecs
 * of the subject, then runs each check of the catalogue against each codec in
 * a child of its own, with a timeout (runner.c), and reports (report.c).
 *
 *   subject    what is under test: a plugin's codecs (the built-in ones are
 *              the plugin "builtin"), and for each codec the kinds of value it
 *              is fed (a generator, an equality): the plugin's, or the kit's
 *              for built-in kinds (gen_builtin.c) (subject.c)
 *   target     one codec of a subject, in a registry of its own, in a child
 *   check      a named, levelled test of a target (catalogue.c, checks_*.c)
 *
 * Files: main.c (CLI), runner.c (child per check, timeout, verdict through a
 * pipe), catalogue.c (the one table of checks), subject.c, gen_builtin.c,
 * rng.c, meta_json.c (a second reading of frame metadata), check_common.c and
 * checks_*.c (the checks), report.c (lines, JSON, JUnit), known.c (the
 * known-failures list), golden.h and golden.c (the golden file format),
 * golden_write.c (--write-golden).
 */

#include <shmrig/plugin.h>
#include <shmrig/shmrig.h>

#include <jansson.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define VAL_NAME_MAX 32   /* codec and kind names: the registry's 31 bytes + NUL */
#define VAL_MAX_CODECS 64 /* codecs of one subject */
#define VAL_MAX_KINDS 8   /* kinds one codec is fed */
#define VAL_MSG_MAX 1024  /* a verdict's message */
#define VAL_DEFAULT_VALUES 200
#define VAL_DEFAULT_TIMEOUT_S 60.0
#define VAL_DEFAULT_MAX_BYTES ((size_t)4 << 20)
#define VAL_DEFAULT_REPETITIONS 3
#define VAL_DEFAULT_PREFIX "shmrigval"

#define VAL_EXIT_OK 0
#define VAL_EXIT_FAIL 1
#define VAL_EXIT_USAGE 2

/* ---- random numbers (rng.c): splitmix64, deterministic from a seed ---- */

struct val_rng {
	uint64_t state;
};

uint64_t val_mix(uint64_t x);
void val_rng_init(struct val_rng *rng, uint64_t seed, uint64_t stream);
uint64_t val_rand(struct val_rng *rng);
/* Uniform in [0, n); 0 when n is 0. */
uint64_t val_below(struct val_rng *rng, uint64_t n);
/* A size in [0, max]: log-uniform above 64, so small sizes are as common as large ones. */
uint64_t val_log_size(struct val_rng *rng, uint64_t max);
void val_fill(struct val_rng *rng, void *buf, size_t len);

/* ---- subjects, kinds and codecs (subject.c, gen_builtin.c) ---- */

/*
 * A kind of value a codec is fed. The shape of a plugin's kind
 * (struct shmrig_plugin_kind): indices below edge_cases are its edge cases,
 * the others random values of the seed; max_bytes bounds the value's data.
 */
struct val_kind {
	char name[VAL_NAME_MAX];
	enum shmrig_kind kind;
	char user_type[VAL_NAME_MAX]; /* SHMRIG_KIND_USER: the registry's type name */
	uint32_t edge_cases;
	int (*generate)(void *ctx, uint64_t seed, uint32_t index, size_t max_bytes,
			uint32_t user_type_tag, struct shmrig_value *out);
	/* A value of exactly `bytes` bytes of data (Throughput); NULL: generate() up to it. */
	int (*sized)(void *ctx, size_t bytes, uint32_t user_type_tag, struct shmrig_value *out);
	void (*release)(void *ctx, struct shmrig_value *value);
	/* true if equal; else false with the first difference in words in why */
	bool (*equal)(void *ctx, const struct shmrig_value *expected,
		      const struct shmrig_value *got, char *why, size_t why_len);
	/* The memory a decoded value points at: fn(arg, data, len, view) for
	 * each part, view true where the codec keeps a view of a persistent
	 * buffer, false where it copies out. NULL: the kit cannot tell. */
	void (*parts)(void *ctx, const struct shmrig_value *value,
		      void (*fn)(void *arg, const void *data, uint64_t len, bool view), void *arg);
	void *ctx;
	bool from_plugin; /* the plugin's generator (ctx: its struct shmrig_plugin_kind) */
};

extern const struct val_kind val_kind_ndarray, val_kind_table, val_kind_dataset, val_kind_bytes;
/* The built-in generator of a built-in kind; NULL for a user kind (only its
 * plugin can make values of it). */
const struct val_kind *val_builtin_kind(enum shmrig_kind kind);

struct val_codec {
	char name[VAL_NAME_MAX];
	uint32_t kinds;               /* SHMRIG_KIND_BIT()s */
	char user_type[VAL_NAME_MAX]; /* the user type it takes, "" for any or none */
	struct shmrig_codec codec;    /* the vtable, as the plugin loader checked it */
	uint32_t nkinds;
	const struct val_kind *gens[VAL_MAX_KINDS];
};

#define VAL_MAX_PLUGIN_KINDS 64

/*
 * What is under test: a plugin's codecs (shmrig_plugin_open()), or the
 * built-in ones (shmrig_plugin_builtin(): the same path), and for each codec
 * the kinds it is fed: the plugin's generators for its kinds, the kit's own
 * (gen_builtin.c) for built-in kinds the plugin brings none for.
 */
struct val_subject {
	char label[256]; /* "the built-in codecs", "plugin 'acme' 1.0 (PATH)" */
	uint32_t ncodecs;
	struct val_codec codecs[VAL_MAX_CODECS];
	struct val_kind plugin_kinds[VAL_MAX_PLUGIN_KINDS]; /* the plugin's, wrapped */
	uint32_t nplugin_kinds;
	shmrig_plugin_handle *handle;
	const struct shmrig_plugin *info;
};

/* plugin NULL: the built-in codecs. 0, or -errno with why in err ("cannot load ..."). */
int val_subject_open(const char *plugin, struct val_subject **out, char *err, size_t err_len);
void val_subject_close(struct val_subject *subject);
/* Index of the codec named `name`, -1 if none. */
int val_subject_find(const struct val_subject *subject, const char *name);

/* One codec of a subject, in a registry of its own (a child's). */
struct val_target {
	struct val_subject *subject;
	const struct val_codec *codec;
	shmrig_registry *reg;
	int codec_id;                 /* in reg */
	uint32_t tags[VAL_MAX_KINDS]; /* user type tag of each of codec->gens */
};

int val_target_open(struct val_subject *subject, uint32_t codec, struct val_target *target,
		    char *err, size_t err_len);
void val_target_close(struct val_target *target);

/* A generated value with what made it (for equality and messages). */
struct val_value {
	struct shmrig_value value;
	const struct val_kind *kind;
	uint32_t index;     /* in the target's sequence */
	uint32_t gen_index; /* what the kind's generator was asked for */
	uint64_t seed;
	bool accepted; /* the codec's can_encode takes it */
};

/*
 * Value `index` of the target's sequence for `seed`: first every edge case
 * of each kind, then random values of the kinds in turn, each of its own seed.
 * 0 or -errno (why in err).
 */
int val_value_make(const struct val_target *target, uint64_t seed, uint32_t index, size_t max_bytes,
		   struct val_value *out, char *err, size_t err_len);
/* Value gen_index of the target's kind k (its k-th generator), as val_value_make. */
int val_value_kind(const struct val_target *target, uint32_t k, uint32_t gen_index, uint64_t seed,
		   size_t max_bytes, struct val_value *out, char *err, size_t err_len);
/* A value of exactly `bytes` bytes of data of the target's first kind (Throughput);
 * -ENOTSUP (err untouched) when its generator cannot make one: a plugin's kind. */
int val_value_sized(const struct val_target *target, size_t bytes, struct val_value *out, char *err,
		    size_t err_len);
void val_value_free(struct val_value *value);
bool val_value_equal(const struct val_value *expected, const struct shmrig_value *got, char *why,
		     size_t why_len);
/* "value 17 (table, edge case 3)": for messages */
const char *val_value_name(const struct val_value *value, char *buf, size_t len);

/* ---- the catalogue (catalogue.c) ---- */

enum val_level {
	VAL_REQUIRED,
	VAL_RECOMMENDED
};
enum val_verdict {
	VAL_PASS,
	VAL_FAIL,
	VAL_SKIP,
	VAL_XFAIL
};

struct val_options {
	uint64_t seed;
	uint32_t values;      /* per check */
	size_t max_bytes;     /* largest generated value */
	double timeout_s;     /* per check */
	uint32_t repetitions; /* of each Throughput figure */
	const char *prefix;   /* pool segments */
	bool quiet;
	const char *selftest;    /* $SHMRIG_VALIDATE_SELFTEST */
	const char *plugin_path; /* PLUGIN.so, NULL for --builtin (its golden_dir is relative) */
	const char *golden_dir;  /* --golden DIR: golden frames instead of the subject's own */
};

/* What a check runs with, in its child, and what it reports. */
struct val_ctx {
	const struct val_options *opt;
	const char *check;
	struct val_target *target;
	int report_fd;             /* the pipe to the parent */
	uint32_t values;           /* out: values the check went through */
	char message[VAL_MSG_MAX]; /* out: why (FAIL, SKIP), or a summary (PASS) */
	json_t *bench;             /* out: Google Benchmark entries (Throughput) */
};

typedef enum val_verdict (*val_check_fn)(struct val_ctx *ctx);

struct val_check {
	const char *name; /* Required.Group.Name or Recommended.Group.Name */
	enum val_level level;
	const char *description; /* one line */
	val_check_fn run;        /* NULL: registered, not runnable yet */
	const char *skip_reason; /* with run NULL */
};

extern const struct val_check val_catalogue[];
extern const size_t val_catalogue_len;
const struct val_check *val_check_find(const char *name);
const char *val_level_name(enum val_level level);

/* ---- check helpers (check_common.c), used in a check's child ---- */

enum val_verdict val_fail(struct val_ctx *ctx, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
enum val_verdict val_skip(struct val_ctx *ctx, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
enum val_verdict val_pass(struct val_ctx *ctx, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
/* Progress for people, shown on stderr when a check runs long. */
void val_progress(struct val_ctx *ctx, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Where the check is: named in the verdict if the child crashes or hangs there. */
void val_at(struct val_ctx *ctx, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* "Bad message: codec 'x': buffer 0 asked twice": the code's and the library's words. */
const char *val_error(int err, char *buf, size_t len);

/* A pool of the run's prefix, quiet at close; arena_size, max_bytes 0: defaults. */
int val_pool_open(struct val_ctx *ctx, size_t arena_size, size_t max_bytes, shmrig_pool **out);
/* Close; FAIL-worthy leaks are returned as -SHMRIG_ELEAK. */
int val_pool_close(shmrig_pool *pool);
/* Live blocks of the pool (UINT64_MAX if the stats fail). */
uint64_t val_live_blocks(shmrig_pool *pool);
uint32_t val_segments(shmrig_pool *pool);

/* Per value of a check: made, and accepted by the codec (a declined one is skipped). */
struct val_iter {
	struct val_ctx *ctx;
	uint32_t index;
	uint32_t declined;
	size_t max_bytes;
};
/* The next accepted value into *v (0), 1 when done, -errno on a generator failure (message set). */
int val_next(struct val_iter *it, struct val_value *v);

/* Encode v in the target's registry into a new frame (0), or a FAIL message and -errno.
 * A frame encoded by another codec of the registry is a FAIL too. */
int val_encode(struct val_ctx *ctx, shmrig_pool *pool, const struct val_value *v, void **frame,
	       size_t *len);
/* Decode and compare with v; the decoded value stays in *out on success. */
int val_decode_equal(struct val_ctx *ctx, shmrig_pool *pool, const struct val_value *v,
		     const void *frame, size_t len, struct shmrig_value *out);
/* Discard a frame we encoded and did not decode (best effort), and free it. */
void val_frame_drop(shmrig_pool *pool, void *frame, size_t len);

/* The end of a check over values: close the pool (a leak is a FAIL), SKIP if the codec
 * declined every value, else PASS (keeping a message the check set). */
enum val_verdict val_finish(struct val_ctx *ctx, const struct val_iter *it, shmrig_pool *pool);

/* A check over values: open a pool, call fn on every generated value (named in
 * the report), then val_finish. fn returns 0, or not 0 after failing the check. */
typedef int (*val_value_fn)(struct val_ctx *ctx, shmrig_pool *pool, const struct val_value *v,
			    void *arg);
enum val_verdict val_each_value(struct val_ctx *ctx, val_value_fn fn, void *arg);

/* Close the fds a grandchild must not hold (the report pipe). */
void val_child_detach(struct val_ctx *ctx);

/* ---- the checks (checks_*.c) ---- */

enum val_verdict val_check_roundtrip_inprocess(struct val_ctx *ctx);
enum val_verdict val_check_roundtrip_crossprocess(struct val_ctx *ctx);
enum val_verdict val_check_roundtrip_threads(struct val_ctx *ctx);
enum val_verdict val_check_meta_json(struct val_ctx *ctx);
enum val_verdict val_check_meta_size(struct val_ctx *ctx);
enum val_verdict val_check_refs_inbounds(struct val_ctx *ctx);
enum val_verdict val_check_refs_aligned(struct val_ctx *ctx);
enum val_verdict val_check_buffers_temporary(struct val_ctx *ctx);
enum val_verdict val_check_buffers_no_write_past(struct val_ctx *ctx);
enum val_verdict val_check_lifetimes_accounting(struct val_ctx *ctx);
enum val_verdict val_check_lifetimes_churn(struct val_ctx *ctx);
enum val_verdict val_check_lifetimes_decode_twice(struct val_ctx *ctx);
enum val_verdict val_check_hostile_mutations(struct val_ctx *ctx);
enum val_verdict val_check_golden_frames(struct val_ctx *ctx);
enum val_verdict val_check_throughput(struct val_ctx *ctx);

/* --write-golden DIR (golden_write.c): golden frames of the codecs named (all: ncodecs 0),
 * written in a child. Returns the exit status (VAL_EXIT_*). */
int val_golden_write(const char *plugin, const char *const *codecs, int ncodecs, const char *dir,
		     const struct val_options *opt);

/* ---- metadata, read a second time (meta_json.c) ---- */

/*
 * MessagePack metadata as JSON, read here without the library: the second
 * opinion the JsonCompatible check compares the library's rendering with.
 * NULL with why set if the bytes are not one JSON-compatible document (a
 * duplicate key, an integer JSON cannot hold exactly, a NUL in a string...).
 */
json_t *val_meta_to_json(const void *meta, size_t len, char *why, size_t why_len);

/* Offsets of the integers and container headers of a metadata document (for
 * the mutations that make counts lie). Returns how many, at most max. */
struct val_meta_item {
	uint32_t offset;
	uint8_t width; /* bytes of the item's header, type byte included */
	bool container;
};
uint32_t val_meta_items(const void *meta, size_t len, struct val_meta_item *items, uint32_t max);
/* The string keys of a metadata document, '\0'-separated into buf (for random metadata). */
uint32_t val_meta_keys(const void *meta, size_t len, char *buf, size_t buf_len);

/* ---- the parent: runner, known failures, reports ---- */

struct val_result {
	const struct val_check *check;
	char codec[VAL_NAME_MAX];
	enum val_verdict verdict;
	char message[VAL_MSG_MAX];
	uint32_t values;
	double seconds;
	bool unexpected_pass;     /* listed as a known failure, and passed */
	const char *known_reason; /* XFAIL and unexpected passes: the list's words */
	int known_line;
	json_t *bench; /* Throughput entries, owned */
};

/* The codecs of the subject, asked of a child (a plugin that crashes at load kills only it). */
struct val_discovery {
	char label[256];
	uint32_t ncodecs;
	char codecs[VAL_MAX_CODECS][VAL_NAME_MAX];
	char kinds[VAL_MAX_CODECS][128]; /* "ndarray" / "temperature (user), ndarray" */
};

/* 0 with d filled, or -errno with why in err (the child's words, a crash, a timeout). */
int val_discover(const char *plugin, const struct val_options *opt, struct val_discovery *d,
		 char *err, size_t err_len);
/* Run one check against one codec in a child; fills r (never fails: a crash is a FAIL). */
void val_run(const struct val_check *check, const char *plugin, uint32_t codec_index,
	     const char *codec_name, const struct val_options *opt, struct val_result *r);
/* Remove what dead children left with the prefix (after a crash or timeout). */
void val_sweep(const char *prefix);
/* Set by SIGINT/SIGTERM in the parent: stop after the current check. */
extern volatile int val_interrupted;
void val_runner_init(void);

struct val_known_entry {
	char check[128];
	char codec[VAL_NAME_MAX]; /* "" for every codec */
	char reason[512];
	int line;
	bool used;
};
struct val_known {
	char path[4096];
	size_t n;
	struct val_known_entry *entries;
};
/* 0, or -EINVAL / -errno with "FILE:LINE: why" in err. */
int val_known_load(const char *path, struct val_known *known, char *err, size_t err_len);
/* Codec names in the list must be the subject's. 0, or -EINVAL with err. */
int val_known_check_codecs(const struct val_known *known, const struct val_discovery *d, char *err,
			   size_t err_len);
const struct val_known_entry *val_known_find(const struct val_known *known, const char *check,
					     const char *codec);
void val_known_free(struct val_known *known);

struct val_report_info {
	const char *subject; /* label */
	const char *plugin;  /* NULL for --builtin */
	const struct val_options *opt;
	const char *level;
	const char *check_regex;
	double seconds;
};
void val_report_line(FILE *out, const struct val_result *r);
const char *val_verdict_name(enum val_verdict verdict);
/* 0 or -errno (what in err). */
int val_report_json(const char *path, const struct val_report_info *info,
		    const struct val_result *results, size_t n, char *err, size_t err_len);
int val_report_junit(const char *path, const struct val_report_info *info,
		     const struct val_result *results, size_t n, char *err, size_t err_len);
int val_report_bench(const char *path, const struct val_report_info *info,
		     const struct val_result *results, size_t n, char *err, size_t err_len);

#endif
