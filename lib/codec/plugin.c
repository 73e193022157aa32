/* SPDX-License-Identifier: MIT */
/*
 * plugin: the loader of codec plugins (shmrig/plugin.h), and the built-in
 * codecs as the plugin "builtin", registered through the same path.
 *
 * A plugin's descriptor is the plugin's memory: it is read once, each struct
 * by the growth rule into a zeroed copy of the library's size, each string
 * copied with a bound, and only the copies are checked and used (STYLE 17).
 * The codecs are checked by registering them into a scratch registry, so that
 * a plugin is held to exactly what shmrig_registry_register() holds a codec
 * to, and a bad one fails at load, naming the field, not later at register.
 */
#include "base/internal.h"
#include "codec/builtins.h"

#include <shmrig/plugin.h>

#include <dlfcn.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define NAME_MAX_LEN 31    /* a plugin's, a codec's or a user type's name */
#define VERSION_MAX_LEN 63 /* a plugin's version string */
#define MAX_KINDS 256      /* as many as a registry has user types */

/* The four fields every plugin ABI keeps in place, so that a mismatch can be
 * read and reported whatever the rest of the descriptor is. */
#define HEAD_SIZE (4 * sizeof(uint32_t))
_Static_assert(offsetof(struct shmrig_plugin, size) == 0, "plugin head: size");
_Static_assert(offsetof(struct shmrig_plugin, abi) == 4, "plugin head: abi");
_Static_assert(offsetof(struct shmrig_plugin, version_major) == 8, "plugin head: version_major");
_Static_assert(offsetof(struct shmrig_plugin, version_minor) == 12, "plugin head: version_minor");

#define STR_(x) #x
#define STR(x) STR_(x)
#define LIBRARY_VERSION \
	STR(SHMRIG_VERSION_MAJOR) "." STR(SHMRIG_VERSION_MINOR) "." STR(SHMRIG_VERSION_PATCH)

struct shmrig_plugin_handle {
	void *dl;                         /* dlopen()'s handle; NULL for "builtin" */
	struct shmrig_plugin info;        /* the checked copy, pointing at what is below */
	struct shmrig_codec *codecs;      /* info.ncodecs, the library's sizeof each */
	struct shmrig_plugin_kind *kinds; /* info.nkinds, likewise */
	char **strings;                   /* our copies of the plugin's strings */
	uint32_t nstrings;
	uint32_t strings_cap;
	bool copy_strings; /* false for "builtin": its strings are the library's */
};

/* Fail with `err`, the message prefixed with the plugin ("plugin 'x.so': ..."). */
static int fail(int err, const char *where, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static int fail(int err, const char *where, const char *fmt, ...)
{
	char message[400];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(message, sizeof(message), fmt, ap);
	va_end(ap);
	return shmrig__fail(err, "%s: %s", where, message);
}

/* A bad descriptor: -EBADMSG with the words of the check that failed inside
 * (the growth rule's, the registry's), after the field that holds them. */
static int bad_inner(const char *where, const char *field)
{
	return fail(-EBADMSG, where, "%s: %s", field, shmrig_last_error());
}

/*
 * Our copy of a string of the plugin (NULL stays NULL): at most max_len
 * bytes are read past which it must have ended.
 */
static int copy_string(shmrig_plugin_handle *h, const char *where, const char *field,
		       const char *src, size_t max_len, const char **out)
{
	size_t len;
	char *copy;

	*out = NULL;
	if (!src)
		return 0;
	len = strnlen(src, max_len + 1);
	if (len > max_len)
		return fail(-EBADMSG, where, "%s is longer than %zu bytes", field, max_len);
	if (!h->copy_strings) {
		*out = src;
		return 0;
	}
	if (h->nstrings == h->strings_cap) {
		uint32_t cap = h->strings_cap ? 2 * h->strings_cap : 8;
		char **grown = realloc(h->strings, cap * sizeof(*grown));

		if (!grown)
			return fail(-ENOMEM, where, "out of memory");
		h->strings = grown;
		h->strings_cap = cap;
	}
	copy = strndup(src, len);
	if (!copy)
		return fail(-ENOMEM, where, "out of memory");
	h->strings[h->nstrings++] = copy;
	*out = copy;
	return 0;
}

/* The size every element of an array must have: the first's (the stride). */
static int array_stride(const void *array, uint32_t count, const char *where, const char *what,
			size_t *stride)
{
	char field[64];

	if (!array)
		return fail(-EBADMSG, where, "%s is NULL but n%s is %u", what, what, count);
	snprintf(field, sizeof(field), "%s[0]", what);
	if (shmrig__sized_stride(array, field, stride))
		return fail(-EBADMSG, where, "%s", shmrig_last_error());
	return 0;
}

/* Element i of an array of sized structs: its size must be the stride; copied by the growth rule */
static int copy_element(void *local, size_t local_size, const void *array, size_t stride,
			uint32_t i, const char *where, const char *what)
{
	const unsigned char *element = (const unsigned char *)array + (size_t)i * stride;
	char field[64];
	uint32_t size;

	memcpy(&size, element, sizeof(size));
	if (size != stride)
		return fail(-EBADMSG, where,
			    "%s[%u].size is %u, not %zu as %s[0].size (the stride of the array)",
			    what, i, size, stride, what);
	snprintf(field, sizeof(field), "%s[%u]", what, i);
	if (shmrig__sized_in(local, local_size, element, field))
		return fail(-EBADMSG, where, "%s", shmrig_last_error());
	return 0;
}

/* The plugin's ABI and shmrig version are ours: read from the head before anything else. */
static int check_head(const struct shmrig_plugin *desc, const char *where)
{
	uint32_t head[4] = { 0 };

	memcpy(&head[0], desc, sizeof(head[0]));
	if (head[0] < HEAD_SIZE || head[0] > SHMRIG_SIZED_MAX) {
		struct shmrig_plugin local;

		/* the growth rule's words for a bad size, else ours */
		if (shmrig__sized_in(&local, sizeof(local), desc, "struct shmrig_plugin"))
			return bad_inner(where, "descriptor");
		return fail(-EBADMSG, where,
			    "descriptor: struct shmrig_plugin: size %u is below %zu (it has no "
			    "abi and version fields)",
			    head[0], HEAD_SIZE);
	}
	memcpy(head, desc, HEAD_SIZE);
	if (head[1] != SHMRIG_PLUGIN_ABI || head[2] != SHMRIG_VERSION_MAJOR ||
	    head[3] > SHMRIG_VERSION_MINOR)
		return shmrig__fail(-EPROTO,
				    "%s built for ABI %u / shmrig %u.%u, this is ABI %d / shmrig "
				    "%d.%d (a plugin needs the same ABI and major version, and a "
				    "minor version no newer than the library's)",
				    where, head[1], head[2], head[3], SHMRIG_PLUGIN_ABI,
				    SHMRIG_VERSION_MAJOR, SHMRIG_VERSION_MINOR);
	return 0;
}

static bool printable(const char *s)
{
	for (; *s; s++)
		if (*s < 0x20 || *s > 0x7e)
			return false;
	return true;
}

static int check_codecs(shmrig_plugin_handle *h, const struct shmrig_plugin *d, const char *where)
{
	shmrig_registry *scratch;
	char field[64];
	size_t stride;
	int ret;

	if (d->ncodecs > SHMRIG_MAX_CODECS)
		return fail(-EBADMSG, where, "ncodecs is %u, above %d (SHMRIG_MAX_CODECS)",
			    d->ncodecs, SHMRIG_MAX_CODECS);
	ret = array_stride(d->codecs, d->ncodecs, where, "codecs", &stride);
	if (ret)
		return ret;
	h->codecs = calloc(d->ncodecs, sizeof(*h->codecs));
	if (!h->codecs)
		return fail(-ENOMEM, where, "out of memory");
	ret = shmrig_registry_create(&scratch);
	if (ret)
		return fail(ret, where, "%s", shmrig_last_error());
	for (uint32_t i = 0; i < d->ncodecs && !ret; i++) {
		struct shmrig_codec *c = &h->codecs[i];

		ret = copy_element(c, sizeof(*c), d->codecs, stride, i, where, "codecs");
		snprintf(field, sizeof(field), "codecs[%u].name", i);
		if (!ret)
			ret = copy_string(h, where, field, c->name, NAME_MAX_LEN, &c->name);
		snprintf(field, sizeof(field), "codecs[%u].user_type", i);
		if (!ret)
			ret = copy_string(h, where, field, c->user_type, NAME_MAX_LEN,
					  &c->user_type);
		/* what register will hold it to, names unique and one fallback included */
		snprintf(field, sizeof(field), "codecs[%u]", i);
		if (!ret && shmrig_registry_register(scratch, c) < 0)
			ret = bad_inner(where, field);
	}
	shmrig_registry_free(scratch);
	return ret;
}

static int check_kind(shmrig_plugin_handle *h, uint32_t i, const char *where)
{
	struct shmrig_plugin_kind *k = &h->kinds[i];
	const char *missing = NULL;
	char field[64];
	int ret;

	snprintf(field, sizeof(field), "kinds[%u].user_type", i);
	ret = copy_string(h, where, field, k->user_type, NAME_MAX_LEN, &k->user_type);
	if (ret)
		return ret;
	if (k->flags)
		return fail(-EBADMSG, where, "kinds[%u].flags is 0x%x (no flag is defined yet)", i,
			    k->flags);
	if ((unsigned)k->kind >= SHMRIG_KIND_COUNT)
		return fail(-EBADMSG, where, "kinds[%u].kind %d is no value kind", i, (int)k->kind);
	if (k->kind == SHMRIG_KIND_USER && !shmrig__valid_name(k->user_type, NAME_MAX_LEN))
		return fail(-EBADMSG, where,
			    "kinds[%u].user_type: a user kind needs a type name of 1..%d "
			    "[A-Za-z0-9_.-]",
			    i, NAME_MAX_LEN);
	if (k->kind != SHMRIG_KIND_USER && k->user_type)
		return fail(-EBADMSG, where,
			    "kinds[%u].user_type is set, but the kind is %s (user_type is for "
			    "SHMRIG_KIND_USER)",
			    i, shmrig_kind_name(k->kind));
	if (!k->generate)
		missing = "generate";
	else if (!k->release)
		missing = "release";
	else if (!k->equal)
		missing = "equal";
	if (missing)
		return fail(-EBADMSG, where,
			    "kinds[%u].%s is NULL (generate, release and equal are required)", i,
			    missing);
	for (uint32_t j = 0; j < i; j++)
		if (h->kinds[j].kind == k->kind &&
		    (k->kind != SHMRIG_KIND_USER ||
		     strcmp(h->kinds[j].user_type, k->user_type) == 0))
			return fail(-EBADMSG, where, "kinds[%u] is kinds[%u] again (%s%s%s)", i, j,
				    shmrig_kind_name(k->kind), k->user_type ? " " : "",
				    k->user_type ? k->user_type : "");
	return 0;
}

static int check_kinds(shmrig_plugin_handle *h, const struct shmrig_plugin *d, const char *where)
{
	size_t stride;
	int ret;

	if (d->nkinds > MAX_KINDS)
		return fail(-EBADMSG, where, "nkinds is %u, above %d", d->nkinds, MAX_KINDS);
	ret = array_stride(d->kinds, d->nkinds, where, "kinds", &stride);
	if (ret)
		return ret;
	h->kinds = calloc(d->nkinds, sizeof(*h->kinds));
	if (!h->kinds)
		return fail(-ENOMEM, where, "out of memory");
	for (uint32_t i = 0; i < d->nkinds && !ret; i++) {
		ret = copy_element(&h->kinds[i], sizeof(h->kinds[i]), d->kinds, stride, i, where,
				   "kinds");
		if (!ret)
			ret = check_kind(h, i, where);
	}
	return ret;
}

/* Read the plugin's descriptor into h->info (and h's arrays and strings), checking everything. */
static int load_descriptor(shmrig_plugin_handle *h, const struct shmrig_plugin *desc,
			   const char *where)
{
	struct shmrig_plugin d;
	int ret;

	if (!desc)
		return fail(-EBADMSG, where, "its entry %s returned NULL",
			    SHMRIG_PLUGIN_ENTRY_NAME);
	ret = check_head(desc, where);
	if (ret)
		return ret;
	if (shmrig__sized_in(&d, sizeof(d), desc, "struct shmrig_plugin"))
		return bad_inner(where, "descriptor");
	ret = copy_string(h, where, "name", d.name, NAME_MAX_LEN, &d.name);
	if (!ret && !shmrig__valid_name(d.name, NAME_MAX_LEN))
		ret = fail(-EBADMSG, where, "name must be 1..%d of [A-Za-z0-9_.-]", NAME_MAX_LEN);
	if (!ret)
		ret = copy_string(h, where, "version", d.version, VERSION_MAX_LEN, &d.version);
	if (!ret && (!d.version || !d.version[0] || !printable(d.version)))
		ret = fail(-EBADMSG, where, "version must be 1..%d printable ASCII bytes",
			   VERSION_MAX_LEN);
	if (!ret)
		ret = copy_string(h, where, "golden_dir", d.golden_dir, PATH_MAX - 1,
				  &d.golden_dir);
	if (!ret && d.golden_dir && (!d.golden_dir[0] || d.golden_dir[0] == '/'))
		ret = fail(-EBADMSG, where, "golden_dir '%s' is not a path relative to the .so",
			   d.golden_dir);
	if (!ret && !d.ncodecs && !d.nkinds)
		ret = fail(-EBADMSG, where, "ncodecs and nkinds are 0: the plugin brings nothing");
	if (!ret && d.ncodecs)
		ret = check_codecs(h, &d, where);
	if (!ret && d.nkinds)
		ret = check_kinds(h, &d, where);
	if (ret)
		return ret;
	d.codecs = d.ncodecs ? h->codecs : NULL;
	d.kinds = d.nkinds ? h->kinds : NULL;
	h->info = d;
	return 0;
}

void shmrig_plugin_close(shmrig_plugin_handle *h)
{
	if (!h)
		return;
	for (uint32_t i = 0; i < h->nstrings; i++)
		free(h->strings[i]);
	free(h->strings);
	free(h->codecs);
	free(h->kinds);
	if (h->dl)
		dlclose(h->dl);
	free(h);
}

int shmrig_plugin_open(const char *path, shmrig_plugin_handle **out)
{
	char file[PATH_MAX], where[PATH_MAX + 16];
	const struct shmrig_plugin *desc;
	shmrig_plugin_entry_fn entry;
	shmrig_plugin_handle *h;
	struct stat st;
	void *symbol;
	int ret;

	if (!path || !out)
		return shmrig__fail(-EINVAL, "plugin_open: NULL argument");
	*out = NULL;
	snprintf(where, sizeof(where), "plugin '%s'", path);
	/* a path, never a name for dlopen() to search for in the library path */
	if (snprintf(file, sizeof(file), "%s%s", strchr(path, '/') ? "" : "./", path) >=
	    (int)sizeof(file))
		return fail(-ENAMETOOLONG, where, "the path is too long");
	if (stat(file, &st) != 0) {
		if (errno == ENOENT || errno == ENOTDIR)
			return fail(-ENOENT, where, "no such file");
		return fail(-errno, where, "%s", strerror(errno));
	}
	h = calloc(1, sizeof(*h));
	if (!h)
		return fail(-ENOMEM, where, "out of memory");
	h->copy_strings = true;
	/* RTLD_NOW: a missing symbol fails here, not in the middle of an encode;
	 * RTLD_LOCAL: the plugin's symbols do not resolve anyone else's. */
	h->dl = dlopen(file, RTLD_NOW | RTLD_LOCAL);
	if (!h->dl) {
		ret = fail(-ENOEXEC, where, "cannot be loaded: %s", dlerror());
		goto fail;
	}
	(void)dlerror();
	symbol = dlsym(h->dl, SHMRIG_PLUGIN_ENTRY_NAME);
	if (!symbol) {
		const char *why = dlerror();

		ret = fail(-ENOEXEC, where, "exports no entry symbol %s (%s): not a shmrig plugin",
			   SHMRIG_PLUGIN_ENTRY_NAME, why ? why : "it is NULL");
		goto fail;
	}
	/* POSIX: a symbol's address converts to a function pointer */
	memcpy(&entry, &symbol, sizeof(entry));
	desc = entry();
	ret = load_descriptor(h, desc, where);
	if (ret)
		goto fail;
	*out = h;
	return 0;
fail:
	shmrig_plugin_close(h);
	return ret;
}

const struct shmrig_plugin *shmrig_plugin_info(const shmrig_plugin_handle *h)
{
	return h ? &h->info : NULL;
}

int shmrig_plugin_register(const shmrig_plugin_handle *h, shmrig_registry *reg)
{
	int ret;

	if (!h || !reg)
		return shmrig__fail(-EINVAL, "plugin_register: NULL argument");
	for (uint32_t i = 0; i < h->info.nkinds; i++) {
		if (h->kinds[i].kind != SHMRIG_KIND_USER)
			continue;
		ret = shmrig_registry_user_type(reg, h->kinds[i].user_type);
		if (ret < 0)
			return ret;
	}
	for (uint32_t i = 0; i < h->info.ncodecs; i++) {
		ret = shmrig_registry_register(reg, &h->codecs[i]);
		if (ret < 0)
			return ret;
	}
	return 0;
}

int shmrig_plugin_builtin(shmrig_plugin_handle **out)
{
	struct shmrig_plugin desc = {
		.size = sizeof(desc),
		.abi = SHMRIG_PLUGIN_ABI,
		.version_major = SHMRIG_VERSION_MAJOR,
		.version_minor = SHMRIG_VERSION_MINOR,
		.name = "builtin",
		.version = LIBRARY_VERSION,
	};
	shmrig_plugin_handle *h;
	int ret;

	if (!out)
		return shmrig__fail(-EINVAL, "plugin_builtin: NULL out");
	*out = NULL;
	desc.codecs = shmrig__builtin_codecs(&desc.ncodecs);
	h = calloc(1, sizeof(*h));
	if (!h)
		return shmrig__fail(-ENOMEM, "plugin 'builtin': out of memory");
	/* the library's own strings: they live as long as it does */
	h->copy_strings = false;
	ret = load_descriptor(h, &desc, "plugin 'builtin'");
	if (ret) {
		shmrig_plugin_close(h);
		return ret;
	}
	*out = h;
	return 0;
}

int shmrig_registry_add_builtins(shmrig_registry *reg)
{
	shmrig_plugin_handle *builtin;
	int ret;

	if (!reg)
		return shmrig__fail(-EINVAL, "add_builtins: NULL registry");
	ret = shmrig_plugin_builtin(&builtin);
	if (ret)
		return ret;
	ret = shmrig_plugin_register(builtin, reg);
	/* the codecs' names are the library's: the registry needs no handle */
	shmrig_plugin_close(builtin);
	return ret;
}
