/* SPDX-License-Identifier: MIT */
#ifndef SHMRIG_PLUGIN_H
#define SHMRIG_PLUGIN_H

/*
 * plugin: codecs in a shared object, loaded at run time (issue 13).
 *
 * A codec plugin is a shared object exporting one symbol,
 * SHMRIG_PLUGIN_ENTRY_NAME, a function returning its descriptor: its codecs
 * (struct shmrig_codec, registered as they are), and for each kind of value
 * it brings, a seeded generator of test values and a bit-exact equality, so
 * that a conformance kit can test the codecs without knowing the kind:
 *
 *     static const struct shmrig_codec codecs[] = { { .size = sizeof(struct shmrig_codec),
 *             .name = "acme.delta", .kinds = SHMRIG_KIND_BIT(SHMRIG_KIND_USER),
 *             .user_type = "acme.series", .encode = delta_encode, .decode = delta_decode } };
 *     static const struct shmrig_plugin_kind kinds[] = { {
 *             .size = sizeof(struct shmrig_plugin_kind), .kind = SHMRIG_KIND_USER,
 *             .user_type = "acme.series", .generate = gen, .edge_cases = 3,
 *             .release = release, .equal = equal } };
 *     static const struct shmrig_plugin plugin = { .size = sizeof(struct shmrig_plugin),
 *             .abi = SHMRIG_PLUGIN_ABI, .version_major = SHMRIG_VERSION_MAJOR,
 *             .version_minor = SHMRIG_VERSION_MINOR, .name = "acme", .version = "1.0.0",
 *             .ncodecs = 1, .codecs = codecs, .nkinds = 1, .kinds = kinds };
 *     SHMRIG_PLUGIN_DEFINE(plugin)
 *
 * A plugin does not link libshmrig: the shmrig_ functions it calls
 * (shmrig_encoder_buffer, ...) are those of the program that loads it, which
 * links libshmrig.so, or links it statically and exports its symbols
 * (-rdynamic), so that plugin and program share one library.
 *
 * The descriptor and everything it points to are read once, at
 * shmrig_plugin_open(), checked, and copied into the handle: only the copy is
 * used after that. Function pointers and ctx stay the plugin's, so the handle
 * must outlive every registry its codecs are registered in.
 */

#include <stdbool.h>
#include <stdint.h>

#include <shmrig/codec.h>
#include <shmrig/common.h>
#include <shmrig/registry.h>
#include <shmrig/value.h>
#include <shmrig/version.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The plugin ABI this header describes: a plugin of another ABI is refused. */
#define SHMRIG_PLUGIN_ABI 1
/* The one symbol a plugin exports: a shmrig_plugin_entry_fn. */
#define SHMRIG_PLUGIN_ENTRY_NAME "shmrig_plugin_v1"

/*
 * One kind of value a plugin brings test values for. Input, sized: the
 * growth rule (shmrig/common.h); in an array, every element's size is the
 * first one's (the stride).
 */
struct shmrig_plugin_kind {
	uint32_t size;  /* sizeof where it was filled: sizeof(struct shmrig_plugin_kind) */
	uint32_t flags; /* none yet: 0 */
	/* SHMRIG_KIND_USER for a user kind; a built-in kind is allowed too (a
	 * plugin may bring a generator for ndarrays it encodes specially) */
	enum shmrig_kind kind;
	/* SHMRIG_KIND_USER: the type name (shmrig_registry_user_type()); else NULL */
	const char *user_type;
	/*
	 * Make test value number `index` for `seed` into *out; `max_bytes`
	 * bounds its data size. Indexes 0..edge_cases-1 are the plugin's edge
	 * cases (empty, odd alignment, maximal dimensions...), the ones after
	 * them seeded values with sizes from tiny to max_bytes, log-uniform. The
	 * same (seed, index, max_bytes) gives the same value. out->user_type is
	 * set to the caller's `user_type_tag` (the registry's tag of user_type).
	 * 0 or -errno.
	 */
	int (*generate)(void *ctx, uint64_t seed, uint32_t index, uint64_t max_bytes,
			uint32_t user_type_tag, struct shmrig_value *out);
	uint32_t edge_cases; /* how many of the indexes are edge cases */
	/* Frees what generate made (never a decoded value: shmrig_value_release). */
	void (*release)(void *ctx, struct shmrig_value *value);
	/* Bit-exact equality of two values of this kind (generated or decoded). */
	bool (*equal)(void *ctx, const struct shmrig_value *a, const struct shmrig_value *b);
	void *ctx; /* handed to the three functions above */
};

/*
 * What the entry symbol returns. Input, sized (the growth rule). Its first
 * four fields stay where they are in every ABI, so that a mismatch can always
 * be read and reported.
 */
struct shmrig_plugin {
	uint32_t size;          /* sizeof where it was filled: sizeof(struct shmrig_plugin) */
	uint32_t abi;           /* SHMRIG_PLUGIN_ABI */
	uint32_t version_major; /* SHMRIG_VERSION_MAJOR it was built against */
	uint32_t version_minor; /* SHMRIG_VERSION_MINOR it was built against */
	const char *name;       /* [A-Za-z0-9_.-], 1..31 bytes */
	const char *version;    /* the plugin's own version: 1..63 printable ASCII bytes */
	uint32_t ncodecs;
	uint32_t nkinds;
	const struct shmrig_codec *codecs;      /* ncodecs; stride codecs[0].size */
	const struct shmrig_plugin_kind *kinds; /* nkinds; stride kinds[0].size */
	/* NULL, or a directory of golden frames, relative to the .so's directory */
	const char *golden_dir;
};

typedef const struct shmrig_plugin *(*shmrig_plugin_entry_fn)(void);

/* Exported from a plugin even when it is built with -fvisibility=hidden. */
#if defined(__GNUC__) || defined(__clang__)
#define SHMRIG_API_EXPORT __attribute__((visibility("default")))
#else
#define SHMRIG_API_EXPORT
#endif
#ifdef __cplusplus
#define SHMRIG_PLUGIN_LINKAGE extern "C"
#else
#define SHMRIG_PLUGIN_LINKAGE
#endif

/* Define the entry symbol of a plugin, returning &desc (a struct shmrig_plugin). */
#define SHMRIG_PLUGIN_DEFINE(desc)                                                                 \
	SHMRIG_PLUGIN_LINKAGE SHMRIG_API_EXPORT const struct shmrig_plugin *shmrig_plugin_v1(      \
		void);                                                                             \
	SHMRIG_PLUGIN_LINKAGE SHMRIG_API_EXPORT const struct shmrig_plugin *shmrig_plugin_v1(void) \
	{                                                                                          \
		return &(desc);                                                                    \
	}

typedef struct shmrig_plugin_handle shmrig_plugin_handle;

/*
 * Load the plugin at `path` (a file: a name without '/' is in the current
 * directory, not searched for as dlopen() would) with RTLD_NOW|RTLD_LOCAL,
 * call its entry, and copy and check its descriptor: the growth rule for the
 * descriptor, each codec and each kind; abi == SHMRIG_PLUGIN_ABI;
 * version_major == SHMRIG_VERSION_MAJOR and version_minor <= ours; name and
 * version valid; each codec valid as shmrig_registry_register() checks it,
 * names unique; each kind with generate, release and equal, no flags, a valid
 * user_type exactly when it is SHMRIG_KIND_USER, no kind twice; golden_dir
 * relative.
 * Errors: -EINVAL a NULL argument; -ENOENT no such file; -EACCES and other
 * errors of stat(); -ENOEXEC not loadable or no entry symbol (the message
 * has dlerror()'s words); -EPROTO another plugin ABI or shmrig version
 * ("plugin 'x.so' built for ABI 2 / shmrig 0.1, this is ABI 1 / shmrig
 * 0.1"); -EBADMSG a bad descriptor (the message names the field, e.g.
 * "codecs[1].name"); -ENOMEM.
 */
SHMRIG_NODISCARD SHMRIG_API int shmrig_plugin_open(const char *path, shmrig_plugin_handle **out);

/*
 * The checked copy of the descriptor: the library's sizes (codecs[0].size ==
 * sizeof(struct shmrig_codec)), strings copied, golden_dir as the plugin gave
 * it. Valid until shmrig_plugin_close(); NULL for a NULL handle.
 */
SHMRIG_API const struct shmrig_plugin *shmrig_plugin_info(const shmrig_plugin_handle *h);

/*
 * Register the plugin's user types (shmrig_registry_user_type(), in the
 * order of its kinds), then its codecs, in their order. Returns 0. A codec
 * that fails leaves the ones before it registered (a registry has no
 * unregister).
 * Errors: -EINVAL a NULL argument; those of shmrig_registry_user_type() and
 * shmrig_registry_register() (-EEXIST a codec of that name is there already,
 * -EBUSY the registry is frozen, -ENOSPC).
 */
SHMRIG_NODISCARD SHMRIG_API int shmrig_plugin_register(const shmrig_plugin_handle *h,
						       shmrig_registry *reg);

/* Unload: only once every registry its codecs are in is freed. NULL is ignored. */
SHMRIG_API void shmrig_plugin_close(shmrig_plugin_handle *h);

/*
 * The built-in codecs as a plugin: name "builtin", version the library's,
 * codecs "ndarray", "table", "dataset" and "bytes" (the fallback), no kinds.
 * shmrig_registry_add_builtins() registers through it. Its codecs' names
 * are the library's own: a registry filled from it does not need the handle
 * kept open. Errors: -EINVAL NULL out; -ENOMEM.
 */
SHMRIG_NODISCARD SHMRIG_API int shmrig_plugin_builtin(shmrig_plugin_handle **out);

#ifdef __cplusplus
}
#endif

#endif
