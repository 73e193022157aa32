/* SPDX-License-Identifier: MIT */
/*
 * test_plugin: the plugin loader (shmrig/plugin.h) against the test plugins
 * of tests/plugins/ (built as tp_*.so in $SHMRIG_TEST_PLUGINS):
 *
 * - tp_good loads, and what shmrig_plugin_info() gives is a checked copy (the
 *   library's sizes, strings and arrays of its own, the content the plugin's);
 *   its user kind round-trips through a registry, edge cases and seeded
 *   values, bit-exact by the plugin's equality, no block left;
 * - every way to be refused, each with its code and its words: NULL
 *   arguments, no file, a file that is no shared object, a directory, no
 *   entry symbol, an undefined symbol, another ABI, another major version, a
 *   newer minor version, a descriptor of size 0, a bad codec name, a kind
 *   without equal, a NULL descriptor, a newer-sized codec that asks for
 *   something; a newer-sized codec with a zero tail loads;
 * - "builtin" is the four built-in codecs in order: a registry filled from it
 *   has add_builtins' fingerprint, and works after the handle is closed;
 * - register: the plugin's user type keeps a tag it had, twice is -EEXIST, a
 *   frozen registry -EBUSY;
 * - struct shmrig_codec's user_type: a codec of the size before it registers
 *   and takes every user type; with it, values of other types are not offered
 *   to it; register checks it;
 * - no fd, no memory (valgrind) and no block is left by loading, failing
 *   and unloading.
 */
#include "helpers.h"

#include <dlfcn.h>
#include <errno.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <shmrig/plugin.h>
#include <shmrig/shmrig.h>

#define MAX_BYTES (256 * 1024) /* the generator's bound for the round trips */

#define STR_(x) #x
#define STR(x) STR_(x)
/* "0.2": the version the words of an EPROTO name */
#define OURS STR(SHMRIG_VERSION_MAJOR) "." STR(SHMRIG_VERSION_MINOR)
/* tp_major99's: "99.1" */
#define MAJOR99 "99." STR(SHMRIG_VERSION_MINOR)
#define SEEDED 40 /* seeded values after the edge cases, per seed */

static char plugins_dir[PATH_MAX];

/* The path of test plugin `name` (tp_good, ...). */
static const char *plugin_path(const char *name)
{
	static char path[PATH_MAX + 64];

	snprintf(path, sizeof(path), "%s/%s.so", plugins_dir, name);
	return path;
}

static shmrig_plugin_handle *open_plugin(const char *name)
{
	shmrig_plugin_handle *h = NULL;
	int ret = shmrig_plugin_open(plugin_path(name), &h);

	if (ret)
		fail_msg("plugin_open %s: %d %s", name, ret, shmrig_last_error());
	assert_non_null(h);
	return h;
}

/* `err` with every one of the words (NULL-terminated) in the last error. */
static void assert_error(int ret, int err, const char *const *words)
{
	if (ret != err)
		fail_msg("got %d (%s), want %d; last error: %s", ret, shmrig_strerror(ret), err,
			 shmrig_last_error());
	for (; *words; words++)
		if (!strstr(shmrig_last_error(), *words))
			fail_msg("'%s' is not in the error: %s", *words, shmrig_last_error());
}

static shmrig_pool *open_pool(void)
{
	shmrig_pool *pool = th_open_pool(8 * MiB, 256 * MiB);

	assert_non_null(pool);
	return pool;
}

static void close_pool(shmrig_pool *pool)
{
	assert_int_equal(th_live_blocks(pool), 0);
	assert_int_equal(shmrig_pool_audit(pool), 0);
	assert_int_equal(shmrig_pool_close(pool), 0);
	assert_int_equal(th_count_segments(th_prefix()), 0);
}

static int group_setup(void **state)
{
	const char *dir = getenv("SHMRIG_TEST_PLUGINS");

	if (!dir || !*dir) {
		fprintf(stderr, "SHMRIG_TEST_PLUGINS is not set (meson sets it)\n");
		return 1;
	}
	if (!realpath(dir, plugins_dir)) {
		fprintf(stderr, "SHMRIG_TEST_PLUGINS=%s: %s\n", dir, strerror(errno));
		return 1;
	}
	return th_sweep_leftovers(state);
}

/* ---- a good plugin ---- */

/* The plugin's own descriptor, as its entry returns it. */
static const struct shmrig_plugin *raw_descriptor(const char *name, void **dl)
{
	shmrig_plugin_entry_fn entry;
	void *symbol;

	/* loaded already by the handle: this only takes a reference */
	*dl = dlopen(plugin_path(name), RTLD_NOW | RTLD_LOCAL | RTLD_NOLOAD);
	assert_non_null(*dl);
	symbol = dlsym(*dl, SHMRIG_PLUGIN_ENTRY_NAME);
	assert_non_null(symbol);
	memcpy(&entry, &symbol, sizeof(entry));
	return entry();
}

static void test_good_info(void **state)
{
	shmrig_plugin_handle *h = open_plugin("tp_good");
	const struct shmrig_plugin *info = shmrig_plugin_info(h), *raw;
	void *dl;

	(void)state;
	assert_non_null(info);
	assert_int_equal(info->size, sizeof(struct shmrig_plugin));
	assert_int_equal(info->abi, SHMRIG_PLUGIN_ABI);
	assert_int_equal(info->version_major, SHMRIG_VERSION_MAJOR);
	assert_int_equal(info->version_minor, SHMRIG_VERSION_MINOR);
	assert_string_equal(info->name, "tp_good");
	assert_string_equal(info->version, "1.2.3");
	assert_string_equal(info->golden_dir, "golden/tp_good");
	assert_int_equal(info->ncodecs, 1);
	assert_int_equal(info->nkinds, 1);
	assert_int_equal(info->codecs[0].size, sizeof(struct shmrig_codec));
	assert_string_equal(info->codecs[0].name, "tp.blob");
	assert_string_equal(info->codecs[0].user_type, "tp.blob");
	assert_int_equal(info->codecs[0].kinds, SHMRIG_KIND_BIT(SHMRIG_KIND_USER));
	assert_int_equal(info->kinds[0].size, sizeof(struct shmrig_plugin_kind));
	assert_int_equal(info->kinds[0].kind, SHMRIG_KIND_USER);
	assert_string_equal(info->kinds[0].user_type, "tp.blob");
	assert_int_equal(info->kinds[0].edge_cases, 3);

	/* a copy: the same content, none of the plugin's memory but its functions */
	raw = raw_descriptor("tp_good", &dl);
	assert_ptr_not_equal(info, raw);
	assert_ptr_not_equal(info->name, raw->name);
	assert_ptr_not_equal(info->version, raw->version);
	assert_ptr_not_equal(info->golden_dir, raw->golden_dir);
	assert_ptr_not_equal(info->codecs, raw->codecs);
	assert_ptr_not_equal(info->codecs[0].name, raw->codecs[0].name);
	assert_ptr_not_equal(info->codecs[0].user_type, raw->codecs[0].user_type);
	assert_ptr_not_equal(info->kinds, raw->kinds);
	assert_ptr_not_equal(info->kinds[0].user_type, raw->kinds[0].user_type);
	assert_ptr_equal(info->codecs[0].encode, raw->codecs[0].encode);
	assert_ptr_equal(info->kinds[0].generate, raw->kinds[0].generate);
	assert_int_equal(dlclose(dl), 0);

	assert_null(shmrig_plugin_info(NULL));
	shmrig_plugin_close(h);
	shmrig_plugin_close(NULL);
}

/* generate, encode, decode, compare and release value `index` of `seed`. */
static void round_trip(shmrig_registry *reg, shmrig_pool *pool,
		       const struct shmrig_plugin_kind *kind, uint32_t tag, int codec_id,
		       uint64_t seed, uint32_t index)
{
	struct shmrig_value in, out, again;
	struct shmrig_frame f;
	void *frame;
	size_t len;

	assert_int_equal(kind->generate(kind->ctx, seed, index, MAX_BYTES, tag, &in), 0);
	assert_int_equal(in.kind, SHMRIG_KIND_USER);
	assert_int_equal(in.user_type, tag);
	/* the same seed and index: the same value */
	assert_int_equal(kind->generate(kind->ctx, seed, index, MAX_BYTES, tag, &again), 0);
	assert_true(kind->equal(kind->ctx, &in, &again));
	kind->release(kind->ctx, &again);

	if (shmrig_registry_encode(reg, pool, &in, &frame, &len))
		fail_msg("encode seed %llu index %u: %s", (unsigned long long)seed, index,
			 shmrig_last_error());
	assert_int_equal(shmrig_frame_parse(frame, len, &f), 0);
	assert_int_equal(f.codec_id, codec_id);
	assert_int_equal(shmrig_registry_decode(reg, pool, frame, len, &out), 0);
	free(frame);
	assert_int_equal(out.kind, SHMRIG_KIND_USER);
	assert_int_equal(out.user_type, tag); /* set by the registry: the codec's user_type */
	assert_true(kind->equal(kind->ctx, &in, &out));
	assert_true(kind->equal(kind->ctx, &out, &in));
	kind->release(kind->ctx, &in);
	/* a temporary buffer, copied out: nothing of the pool is held */
	assert_int_equal(th_live_blocks(pool), 0);
	assert_int_equal(shmrig_value_release(&out), 0);
}

static void test_good_round_trip(void **state)
{
	shmrig_plugin_handle *h = open_plugin("tp_good");
	const struct shmrig_plugin *info = shmrig_plugin_info(h);
	const struct shmrig_plugin_kind *kind = &info->kinds[0];
	struct shmrig_value a, b;
	shmrig_pool *pool = open_pool();
	shmrig_registry *reg;
	void *frame;
	size_t len;
	int tag, id, other;

	(void)state;
	assert_int_equal(shmrig_registry_create(&reg), 0);
	assert_int_equal(shmrig_registry_add_builtins(reg), 0);
	assert_int_equal(shmrig_plugin_register(h, reg), 0);
	assert_int_equal(shmrig_registry_count(reg), 5);
	id = shmrig_registry_lookup(reg, "tp.blob");
	assert_int_equal(id, 4);
	tag = shmrig_registry_user_type(reg, "tp.blob");
	assert_true(tag > 0);
	other = shmrig_registry_user_type(reg, "tp.other");
	assert_true(other > 0 && other != tag);

	for (uint64_t seed = 1; seed <= 3; seed++)
		for (uint32_t index = 0; index < kind->edge_cases + SEEDED; index++)
			round_trip(reg, pool, kind, (uint32_t)tag, id, seed * 0x5eed, index);

	/* the edge cases are what they say, and equal tells values apart */
	assert_int_equal(kind->generate(kind->ctx, 7, 2, 1000, (uint32_t)tag, &a), 0);
	assert_int_equal(kind->generate(kind->ctx, 8, 2, 1000, (uint32_t)tag, &b), 0);
	assert_false(kind->equal(kind->ctx, &a, &b)); /* same size, other bytes */
	kind->release(kind->ctx, &b);
	assert_int_equal(kind->generate(kind->ctx, 7, 0, 1000, (uint32_t)tag, &b), 0);
	assert_false(kind->equal(kind->ctx, &a, &b)); /* the empty one */
	kind->release(kind->ctx, &b);
	assert_int_equal(kind->generate(kind->ctx, 7, 1, 1000, (uint32_t)tag, &b), 0);
	assert_false(kind->equal(kind->ctx, &a, &b));
	kind->release(kind->ctx, &b);

	/* a user value of another type is not offered to the plugin's codec: the
	 * fallback ("bytes") takes bytes only, so no codec takes it */
	a.user_type = (uint32_t)other;
	assert_int_equal(shmrig_registry_encode(reg, pool, &a, &frame, &len), -ENOTSUP);
	kind->release(kind->ctx, &a);

	shmrig_registry_free(reg);
	shmrig_plugin_close(h);
	close_pool(pool);
}

/* ---- refusals ---- */

struct refusal {
	const char *name; /* a test plugin, or a path as it is when it starts with '/' or '.' */
	int err;
	const char *words[4];
};

static const struct refusal refusals[] = {
	{ "tp_none", -ENOENT, { "tp_none.so'", "no such file" } },
	{ "tp_noentry",
	  -ENOEXEC,
	  { "tp_noentry.so'", "exports no entry symbol shmrig_plugin_v1", "not a shmrig plugin" } },
	{ "tp_undef",
	  -ENOEXEC,
	  { "cannot be loaded", "undefined symbol", "shmrig_no_such_function" } },
	{ "tp_abi2",
	  -EPROTO,
	  { "tp_abi2.so' built for ABI 2 / shmrig " OURS ", this is ABI 1 / shmrig " OURS } },
	{ "tp_major99",
	  -EPROTO,
	  { "built for ABI 1 / shmrig " MAJOR99 ", this is ABI 1 / shmrig " OURS } },
	{ "tp_minor",
	  -EPROTO,
	  { "built for ABI 1 / shmrig " STR(SHMRIG_VERSION_MAJOR) ".",
	    ", this is ABI 1 / shmrig " OURS, "no newer than the library's" } },
	{ "tp_size0",
	  -EBADMSG,
	  { "tp_size0.so'", "descriptor: struct shmrig_plugin",
	    "size not set: use SHMRIG_SIZED()" } },
	{ "tp_badname", -EBADMSG, { "codecs[1]: ", "codec name must be 1..31 of [A-Za-z0-9_.-]" } },
	{ "tp_noequal", -EBADMSG, { "kinds[0].equal is NULL" } },
	{ "tp_null", -EBADMSG, { "its entry shmrig_plugin_v1 returned NULL" } },
	{ "tp_tail", -EBADMSG, { "codecs[0]: byte ", " is not zero", "knows only the first" } },
};

static void test_refusals(void **state)
{
	char tmp[] = "/tmp/shmrig_test_plugin.XXXXXX", path[PATH_MAX];
	shmrig_plugin_handle *h;
	int fds = th_count_fds();
	FILE *f;

	(void)state;
	for (size_t i = 0; i < sizeof(refusals) / sizeof(refusals[0]); i++) {
		printf("# %s\n", refusals[i].name);
		h = (shmrig_plugin_handle *)&h; /* not NULL: a refusal sets it NULL */
		assert_error(shmrig_plugin_open(plugin_path(refusals[i].name), &h), refusals[i].err,
			     refusals[i].words);
		assert_null(h);
	}

	assert_error(shmrig_plugin_open(NULL, &h), -EINVAL, (const char *[]){ "NULL", NULL });
	assert_error(shmrig_plugin_open(plugin_path("tp_good"), NULL), -EINVAL,
		     (const char *[]){ "NULL", NULL });

	/* a file that is no shared object, and a directory */
	assert_non_null(mkdtemp(tmp));
	snprintf(path, sizeof(path), "%s/not_elf.so", tmp);
	f = fopen(path, "w");
	assert_non_null(f);
	fputs("this is text, not ELF\n", f);
	assert_int_equal(fclose(f), 0);
	assert_error(shmrig_plugin_open(path, &h), -ENOEXEC,
		     (const char *[]){ "not_elf.so': cannot be loaded: ", "not_elf.so: ", NULL });
	assert_error(shmrig_plugin_open(tmp, &h), -ENOEXEC,
		     (const char *[]){ "cannot be loaded", NULL });
	assert_int_equal(unlink(path), 0);
	assert_int_equal(rmdir(tmp), 0);

	/* a name without '/' is a file of the current directory, never searched for
	 * in the library path as dlopen() would: libc.so.6 is not found here */
	assert_error(shmrig_plugin_open("libc.so.6", &h), -ENOENT,
		     (const char *[]){ "plugin 'libc.so.6': no such file", NULL });
	assert_int_equal(th_count_fds(), fds);
}

/* A name without '/' is in the current directory. */
static void test_relative_name(void **state)
{
	char cwd[PATH_MAX];
	shmrig_plugin_handle *h;

	(void)state;
	assert_non_null(getcwd(cwd, sizeof(cwd)));
	assert_int_equal(chdir(plugins_dir), 0);
	assert_int_equal(shmrig_plugin_open("tp_good.so", &h), 0);
	assert_string_equal(shmrig_plugin_info(h)->name, "tp_good");
	shmrig_plugin_close(h);
	assert_int_equal(shmrig_plugin_open("./tp_stride.so", &h), 0);
	shmrig_plugin_close(h);
	assert_int_equal(chdir(cwd), 0);
}

/* Codecs of a newer size with a zero tail: taken, copied at the library's size. */
static void test_newer_codecs(void **state)
{
	shmrig_plugin_handle *h = open_plugin("tp_stride");
	const struct shmrig_plugin *info = shmrig_plugin_info(h);
	shmrig_registry *reg;

	(void)state;
	assert_int_equal(info->ncodecs, 2);
	assert_int_equal(info->codecs[0].size, sizeof(struct shmrig_codec));
	assert_int_equal(info->codecs[1].size, sizeof(struct shmrig_codec));
	assert_string_equal(info->codecs[0].name, "tp.thing");
	assert_string_equal(info->codecs[1].name, "tp.thing2");
	assert_int_equal(shmrig_registry_create(&reg), 0);
	assert_int_equal(shmrig_plugin_register(h, reg), 0);
	assert_int_equal(shmrig_registry_lookup(reg, "tp.thing2"), 1);
	shmrig_registry_free(reg);
	shmrig_plugin_close(h);
}

/* ---- the built-in codecs as a plugin ---- */

static void test_builtin(void **state)
{
	static const char *const names[] = { "ndarray", "table", "dataset", "bytes" };
	uint8_t bytes[100] = { 1, 2, 3 };
	struct shmrig_value v = { .kind = SHMRIG_KIND_BYTES, .bytes = { bytes, sizeof(bytes) } };
	struct shmrig_value out;
	const struct shmrig_plugin *info;
	shmrig_registry *via_plugin, *via_builtins;
	shmrig_plugin_handle *h;
	shmrig_pool *pool = open_pool();
	void *frame;
	size_t len;

	(void)state;
	assert_int_equal(shmrig_plugin_builtin(&h), 0);
	info = shmrig_plugin_info(h);
	assert_string_equal(info->name, "builtin");
	assert_string_equal(info->version, OURS "." STR(SHMRIG_VERSION_PATCH));
	assert_int_equal(info->abi, SHMRIG_PLUGIN_ABI);
	assert_int_equal(info->ncodecs, 4);
	assert_int_equal(info->nkinds, 0);
	assert_null(info->kinds);
	assert_null(info->golden_dir);
	for (int i = 0; i < 4; i++) {
		assert_int_equal(info->codecs[i].size, sizeof(struct shmrig_codec));
		assert_string_equal(info->codecs[i].name, names[i]);
		assert_null(info->codecs[i].user_type);
	}
	assert_int_equal(info->codecs[3].flags, SHMRIG_CODEC_FALLBACK);

	assert_int_equal(shmrig_registry_create(&via_plugin), 0);
	assert_int_equal(shmrig_plugin_register(h, via_plugin), 0);
	assert_int_equal(shmrig_registry_create(&via_builtins), 0);
	assert_int_equal(shmrig_registry_add_builtins(via_builtins), 0);
	assert_int_equal(shmrig_registry_count(via_plugin), 4);
	for (int i = 0; i < 4; i++)
		assert_string_equal(shmrig_registry_codec_name(via_plugin, i), names[i]);
	assert_true(shmrig_registry_fingerprint(via_plugin) ==
		    shmrig_registry_fingerprint(via_builtins));
	/* twice into one registry: the registry's words */
	assert_error(shmrig_registry_add_builtins(via_builtins), -EEXIST,
		     (const char *[]){ "a codec named 'ndarray' is registered already", NULL });
	/* the built-in names are the library's: the registry outlives the handle */
	shmrig_plugin_close(h);
	assert_int_equal(shmrig_registry_lookup(via_plugin, "bytes"), 3);
	assert_int_equal(shmrig_registry_encode(via_plugin, pool, &v, &frame, &len), 0);
	assert_int_equal(shmrig_registry_decode(via_builtins, pool, frame, len, &out), 0);
	free(frame);
	assert_int_equal(out.bytes.len, sizeof(bytes));
	assert_memory_equal(out.bytes.data, bytes, sizeof(bytes));
	assert_int_equal(shmrig_value_release(&out), 0);

	assert_error(shmrig_plugin_builtin(NULL), -EINVAL, (const char *[]){ "NULL", NULL });
	assert_error(shmrig_registry_add_builtins(NULL), -EINVAL, (const char *[]){ "NULL", NULL });
	shmrig_registry_free(via_plugin);
	shmrig_registry_free(via_builtins);
	close_pool(pool);
}

/* ---- register ---- */

static void test_register(void **state)
{
	shmrig_plugin_handle *h = open_plugin("tp_good");
	struct shmrig_value v = { .kind = SHMRIG_KIND_BYTES, .bytes = { "x", 1 } };
	shmrig_pool *pool = open_pool();
	shmrig_registry *reg;
	void *frame;
	size_t len;
	int tag;

	(void)state;
	assert_error(shmrig_plugin_register(NULL, NULL), -EINVAL, (const char *[]){ "NULL", NULL });
	assert_int_equal(shmrig_registry_create(&reg), 0);
	assert_error(shmrig_plugin_register(NULL, reg), -EINVAL, (const char *[]){ "NULL", NULL });
	assert_error(shmrig_plugin_register(h, NULL), -EINVAL, (const char *[]){ "NULL", NULL });
	/* a type the registry had keeps its tag */
	assert_int_equal(shmrig_registry_user_type(reg, "a.type"), 1);
	assert_int_equal(shmrig_registry_user_type(reg, "tp.blob"), 2);
	assert_int_equal(shmrig_plugin_register(h, reg), 0);
	assert_int_equal(shmrig_registry_user_type(reg, "tp.blob"), 2);
	assert_int_equal(shmrig_registry_lookup(reg, "tp.blob"), 0);
	/* twice: the registry's words */
	assert_error(shmrig_plugin_register(h, reg), -EEXIST,
		     (const char *[]){ "a codec named 'tp.blob' is registered already", NULL });
	shmrig_registry_free(reg);

	/* into a registry in use (frozen by an encode): its user type cannot be
	 * added; with the type there already, its codec cannot */
	for (int had_type = 0; had_type <= 1; had_type++) {
		assert_int_equal(shmrig_registry_create(&reg), 0);
		assert_int_equal(shmrig_registry_add_builtins(reg), 0);
		tag = had_type ? shmrig_registry_user_type(reg, "tp.blob") : 0;
		assert_int_equal(shmrig_registry_encode(reg, pool, &v, &frame, &len), 0);
		assert_int_equal(shmrig_frame_discard(pool, frame, len), 0);
		free(frame);
		assert_error(shmrig_plugin_register(h, reg), -EBUSY,
			     had_type ? (const char *[]){ "register 'tp.blob'", "frozen", NULL } :
					(const char *[]){ "user_type 'tp.blob'", "frozen", NULL });
		assert_int_equal(shmrig_registry_count(reg), 4);
		if (had_type)
			assert_int_equal(shmrig_registry_user_type(reg, "tp.blob"), tag);
		shmrig_registry_free(reg);
	}
	shmrig_plugin_close(h);
	close_pool(pool);
}

/* ---- struct shmrig_codec's user_type ---- */

/* Decoded user values of a codec without user_type keep the tag the codec set (none). */
static void test_codec_user_type(void **state)
{
	const size_t old_size = offsetof(struct shmrig_codec, user_type);
	shmrig_plugin_handle *h = open_plugin("tp_good");
	const struct shmrig_plugin *info = shmrig_plugin_info(h);
	const struct shmrig_plugin_kind *kind = &info->kinds[0];
	struct shmrig_codec codec = info->codecs[0];
	uint32_t size = (uint32_t)old_size;
	unsigned char *old;
	struct shmrig_value in, out;
	shmrig_pool *pool = open_pool();
	shmrig_registry *reg;
	void *frame;
	size_t len;
	int a, b;

	(void)state;
	/* the struct before user_type: its old sizeof, no padding it could hide in */
	assert_int_equal(old_size, offsetof(struct shmrig_codec, flags) + sizeof(uint32_t) + 4);
	assert_int_equal(sizeof(struct shmrig_codec), old_size + sizeof(const char *));

	/* a codec of the older size, in exactly its bytes: user_type reads as NULL,
	 * and it takes user values of every type */
	old = malloc(old_size);
	assert_non_null(old);
	memcpy(old, &codec, old_size);
	memcpy(old, &size, sizeof(size));
	assert_int_equal(shmrig_registry_create(&reg), 0);
	a = shmrig_registry_user_type(reg, "type.a");
	b = shmrig_registry_user_type(reg, "type.b");
	assert_int_equal(shmrig_registry_register(reg, (const struct shmrig_codec *)old), 0);
	free(old);
	for (int t = a; t <= b; t++) {
		assert_int_equal(kind->generate(kind->ctx, 1, 5, 4096, (uint32_t)t, &in), 0);
		assert_int_equal(shmrig_registry_encode(reg, pool, &in, &frame, &len), 0);
		assert_int_equal(shmrig_registry_decode(reg, pool, frame, len, &out), 0);
		free(frame);
		assert_true(kind->equal(kind->ctx, &in, &out));
		/* the registry knows no type for it: user_type is what the codec set */
		assert_int_equal(out.user_type, 0);
		kind->release(kind->ctx, &in);
		assert_int_equal(shmrig_value_release(&out), 0);
	}
	shmrig_registry_free(reg);

	/* with user_type, values of its type only; the type is resolved at register */
	assert_int_equal(shmrig_registry_create(&reg), 0);
	a = shmrig_registry_user_type(reg, "type.a");
	codec.user_type = "type.b";
	assert_int_equal(shmrig_registry_register(reg, &codec), 0);
	b = shmrig_registry_user_type(reg, "type.b");
	assert_int_equal(b, a + 1);
	assert_int_equal(kind->generate(kind->ctx, 1, 5, 4096, (uint32_t)a, &in), 0);
	assert_error(shmrig_registry_encode(reg, pool, &in, &frame, &len), -ENOTSUP,
		     (const char *[]){ "no codec takes this user value", NULL });
	in.user_type = (uint32_t)b;
	assert_int_equal(shmrig_registry_encode(reg, pool, &in, &frame, &len), 0);
	assert_int_equal(shmrig_registry_decode(reg, pool, frame, len, &out), 0);
	free(frame);
	assert_int_equal(out.user_type, b);
	assert_true(kind->equal(kind->ctx, &in, &out));
	kind->release(kind->ctx, &in);
	assert_int_equal(shmrig_value_release(&out), 0);
	shmrig_registry_free(reg);

	/* register checks it: a name, and a codec of user values */
	assert_int_equal(shmrig_registry_create(&reg), 0);
	codec.user_type = "bad type";
	assert_error(shmrig_registry_register(reg, &codec), -EINVAL,
		     (const char *[]){ "register 'tp.blob': user_type must be", NULL });
	codec.user_type = "";
	assert_error(shmrig_registry_register(reg, &codec), -EINVAL,
		     (const char *[]){ "user_type must be", NULL });
	codec.user_type = "type.c";
	codec.kinds = SHMRIG_KIND_BIT(SHMRIG_KIND_BYTES);
	assert_error(shmrig_registry_register(reg, &codec), -EINVAL,
		     (const char *[]){ "user_type 'type.c' but kinds has no SHMRIG_KIND_USER",
				       NULL });
	/* a refused codec added no type: the first one is tag 1 */
	assert_int_equal(shmrig_registry_user_type(reg, "type.x"), 1);
	assert_int_equal(shmrig_registry_count(reg), 0);
	shmrig_registry_free(reg);
	shmrig_plugin_close(h);
	close_pool(pool);
}

/* ---- leaks ---- */

static void test_no_leaks(void **state)
{
	int fds = th_count_fds();
	shmrig_plugin_handle *h;

	(void)state;
	for (int i = 0; i < 50; i++) {
		assert_int_equal(shmrig_plugin_open(plugin_path("tp_good"), &h), 0);
		shmrig_plugin_close(h);
		assert_int_equal(shmrig_plugin_open(plugin_path("tp_badname"), &h), -EBADMSG);
		assert_int_equal(shmrig_plugin_open(plugin_path("tp_noentry"), &h), -ENOEXEC);
		assert_int_equal(shmrig_plugin_builtin(&h), 0);
		shmrig_plugin_close(h);
	}
	assert_int_equal(th_count_fds(), fds);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_good_info),
		cmocka_unit_test(test_good_round_trip),
		cmocka_unit_test(test_refusals),
		cmocka_unit_test(test_relative_name),
		cmocka_unit_test(test_newer_codecs),
		cmocka_unit_test(test_builtin),
		cmocka_unit_test(test_register),
		cmocka_unit_test(test_codec_user_type),
		cmocka_unit_test(test_no_leaks),
	};

	return cmocka_run_group_tests(tests, group_setup, th_remove_leftovers);
}
