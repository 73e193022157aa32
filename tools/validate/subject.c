/* SPDX-License-Identifier: MIT */
/*
 * Subjects: what is under test. A subject is a plugin's codecs, loaded with
 * shmrig_plugin_open(), or the built-in codecs through the same path
 * (shmrig_plugin_builtin(), the plugin "builtin"), and for each codec the
 * kinds of value it is fed: the plugin's own generators and equality for the
 * kinds it brings, the kit's (gen_builtin.c) for built-in kinds it brings none
 * for. Only a check's child opens a subject: codec code never runs in the kit.
 *
 * A target is one codec of a subject in a registry of its own (made in the
 * check's child), registered first so that values of its kinds go to it, with
 * the user type tags its kinds need.
 */
#include "validate.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- the plugin's kinds, as the kit calls them ---- */

static int plugin_generate(void *ctx, uint64_t seed, uint32_t index, size_t max_bytes,
			   uint32_t user_type_tag, struct shmrig_value *out)
{
	const struct shmrig_plugin_kind *k = ctx;

	memset(out, 0, sizeof(*out));
	return k->generate(k->ctx, seed, index, max_bytes, user_type_tag, out);
}

static void plugin_release(void *ctx, struct shmrig_value *value)
{
	const struct shmrig_plugin_kind *k = ctx;

	k->release(k->ctx, value);
}

static bool plugin_equal(void *ctx, const struct shmrig_value *expected,
			 const struct shmrig_value *got, char *why, size_t why_len)
{
	const struct shmrig_plugin_kind *k = ctx;

	/* the plugin's equal() need not cope with a value of another kind or type */
	if (got->kind != expected->kind || got->user_type != expected->user_type) {
		snprintf(why, why_len, "decoded a %s value of user type %u, expected %s of type %u",
			 shmrig_kind_name(got->kind) ? shmrig_kind_name(got->kind) : "invalid",
			 got->user_type, shmrig_kind_name(expected->kind), expected->user_type);
		return false;
	}
	if (k->equal(k->ctx, expected, got))
		return true;
	snprintf(why, why_len, "the plugin's equal() says it differs from the value encoded");
	return false;
}

const struct val_kind *val_builtin_kind(enum shmrig_kind kind)
{
	switch (kind) {
	case SHMRIG_KIND_BYTES:
		return &val_kind_bytes;
	case SHMRIG_KIND_NDARRAY:
		return &val_kind_ndarray;
	case SHMRIG_KIND_TABLE:
		return &val_kind_table;
	case SHMRIG_KIND_DATASET:
		return &val_kind_dataset;
	default:
		return NULL; /* a user kind: only its plugin can make values of it */
	}
}

/* The kinds codec c is fed: for each kind it takes, the plugin's generators of
 * that kind (of its user type), else the kit's own for a built-in kind. */
static void choose_kinds(struct val_subject *s, struct val_codec *c)
{
	for (int kind = 0; kind < SHMRIG_KIND_COUNT; kind++) {
		bool found = false;

		if (!(c->kinds & SHMRIG_KIND_BIT(kind)))
			continue;
		for (uint32_t i = 0; i < s->nplugin_kinds && c->nkinds < VAL_MAX_KINDS; i++) {
			const struct shmrig_plugin_kind *pk = s->plugin_kinds[i].ctx;

			if ((int)pk->kind != kind || (kind == SHMRIG_KIND_USER && c->user_type[0] &&
						      strcmp(pk->user_type, c->user_type) != 0))
				continue;
			c->gens[c->nkinds++] = &s->plugin_kinds[i];
			found = true;
		}
		if (!found && val_builtin_kind((enum shmrig_kind)kind) && c->nkinds < VAL_MAX_KINDS)
			c->gens[c->nkinds++] = val_builtin_kind((enum shmrig_kind)kind);
	}
}

/* ---- subjects ---- */

int val_subject_open(const char *plugin, struct val_subject **out, char *err, size_t err_len)
{
	struct val_subject *s = calloc(1, sizeof(*s));
	const struct shmrig_plugin *info;
	char why[512];
	int ret;

	err[0] = '\0';
	if (!s) {
		snprintf(err, err_len, "out of memory");
		return -ENOMEM;
	}
	ret = plugin ? shmrig_plugin_open(plugin, &s->handle) : shmrig_plugin_builtin(&s->handle);
	if (ret) {
		snprintf(err, err_len, "cannot load %s: %s",
			 plugin ? plugin : "the built-in codecs", val_error(ret, why, sizeof(why)));
		free(s);
		return ret;
	}
	info = s->info = shmrig_plugin_info(s->handle);
	if (plugin)
		snprintf(s->label, sizeof(s->label), "plugin '%s' %s (%s)", info->name,
			 info->version, plugin);
	else
		snprintf(s->label, sizeof(s->label), "the built-in codecs");
	if (info->ncodecs > VAL_MAX_CODECS || info->nkinds > VAL_MAX_PLUGIN_KINDS) {
		snprintf(err, err_len, "%s: %u codecs and %u kinds, the kit takes %d and %d",
			 s->label, info->ncodecs, info->nkinds, VAL_MAX_CODECS,
			 VAL_MAX_PLUGIN_KINDS);
		val_subject_close(s);
		return -E2BIG;
	}
	for (uint32_t i = 0; i < info->nkinds; i++) {
		const struct shmrig_plugin_kind *pk = &info->kinds[i];
		struct val_kind *k = &s->plugin_kinds[s->nplugin_kinds++];

		if (pk->kind == SHMRIG_KIND_USER)
			snprintf(k->name, sizeof(k->name), "%s", pk->user_type);
		else
			snprintf(k->name, sizeof(k->name), "%s", shmrig_kind_name(pk->kind));
		k->kind = pk->kind;
		if (pk->user_type)
			snprintf(k->user_type, sizeof(k->user_type), "%s", pk->user_type);
		k->edge_cases = pk->edge_cases;
		k->generate = plugin_generate;
		k->release = plugin_release;
		k->equal = plugin_equal;
		k->ctx = (void *)pk;
		k->from_plugin = true;
	}
	for (uint32_t i = 0; i < info->ncodecs; i++) {
		struct val_codec *c = &s->codecs[s->ncodecs++];

		c->codec = info->codecs[i];
		snprintf(c->name, sizeof(c->name), "%s", c->codec.name);
		c->kinds = c->codec.kinds;
		if (c->codec.user_type)
			snprintf(c->user_type, sizeof(c->user_type), "%s", c->codec.user_type);
		choose_kinds(s, c);
	}
	*out = s;
	return 0;
}

void val_subject_close(struct val_subject *subject)
{
	if (!subject)
		return;
	shmrig_plugin_close(subject->handle);
	free(subject);
}

int val_subject_find(const struct val_subject *subject, const char *name)
{
	for (uint32_t i = 0; i < subject->ncodecs; i++)
		if (strcmp(subject->codecs[i].name, name) == 0)
			return (int)i;
	return -1;
}

/* The subject's user types and codecs, the target first: values of its kinds go to it. */
static int fill_registry(const struct val_subject *s, uint32_t target, shmrig_registry *reg)
{
	int ret = 0;

	for (uint32_t i = 0; i < s->nplugin_kinds && ret >= 0; i++)
		if (s->plugin_kinds[i].kind == SHMRIG_KIND_USER)
			ret = shmrig_registry_user_type(reg, s->plugin_kinds[i].user_type);
	if (ret >= 0)
		ret = shmrig_registry_register(reg, &s->codecs[target].codec);
	for (uint32_t i = 0; i < s->ncodecs && ret >= 0; i++)
		if (i != target)
			ret = shmrig_registry_register(reg, &s->codecs[i].codec);
	return ret < 0 ? ret : 0;
}

/* ---- targets ---- */

int val_target_open(struct val_subject *subject, uint32_t codec, struct val_target *t, char *err,
		    size_t err_len)
{
	int ret;

	memset(t, 0, sizeof(*t));
	t->subject = subject;
	t->codec = &subject->codecs[codec];
	ret = shmrig_registry_create(&t->reg);
	if (ret) {
		snprintf(err, err_len, "registry_create: %s", shmrig_strerror(ret));
		return ret;
	}
	ret = fill_registry(subject, codec, t->reg);
	if (ret < 0) {
		snprintf(err, err_len, "registering the codecs: %s (%s)", shmrig_strerror(ret),
			 shmrig_last_error());
		goto fail;
	}
	/* user types before the registry freezes (the first encode) */
	for (uint32_t k = 0; k < t->codec->nkinds; k++) {
		const struct val_kind *kind = t->codec->gens[k];

		if (kind->kind != SHMRIG_KIND_USER)
			continue;
		ret = shmrig_registry_user_type(t->reg, kind->user_type);
		if (ret < 0) {
			snprintf(err, err_len, "user type '%s': %s (%s)", kind->user_type,
				 shmrig_strerror(ret), shmrig_last_error());
			goto fail;
		}
		t->tags[k] = (uint32_t)ret;
	}
	t->codec_id = shmrig_registry_lookup(t->reg, t->codec->name);
	if (t->codec_id < 0) {
		ret = t->codec_id;
		snprintf(err, err_len, "%s", shmrig_last_error());
		goto fail;
	}
	return 0;
fail:
	shmrig_registry_free(t->reg);
	t->reg = NULL;
	return ret;
}

void val_target_close(struct val_target *t)
{
	shmrig_registry_free(t->reg);
	t->reg = NULL;
}

/* ---- values ---- */

/* The codec takes no kind the kit can make values of: why, in err. */
static int no_kinds(const struct val_codec *c, char *err, size_t err_len)
{
	snprintf(err, err_len,
		 "codec '%s' takes no kind the kit can make values of (a user type%s%s with no "
		 "generator in its plugin)",
		 c->name, c->user_type[0] ? " " : "", c->user_type);
	return -ENOTSUP;
}

int val_value_kind(const struct val_target *t, uint32_t k, uint32_t gen_index, uint64_t seed,
		   size_t max_bytes, struct val_value *out, char *err, size_t err_len)
{
	const struct val_codec *c = t->codec;
	int ret;

	memset(out, 0, sizeof(*out));
	if (k >= c->nkinds)
		return no_kinds(c, err, err_len);
	out->kind = c->gens[k];
	out->index = gen_index;
	out->gen_index = gen_index;
	out->seed = seed;
	ret = out->kind->generate(out->kind->ctx, seed, gen_index, max_bytes, t->tags[k],
				  &out->value);
	if (ret) {
		char name[96];

		snprintf(err, err_len, "the generator of %s failed: %s",
			 val_value_name(out, name, sizeof(name)), shmrig_strerror(ret));
		out->kind->release(out->kind->ctx, &out->value);
		out->kind = NULL;
		return ret;
	}
	out->accepted = !c->codec.can_encode || c->codec.can_encode(c->codec.ctx, &out->value);
	return 0;
}

int val_value_make(const struct val_target *t, uint64_t seed, uint32_t index, size_t max_bytes,
		   struct val_value *out, char *err, size_t err_len)
{
	const struct val_codec *c = t->codec;
	uint32_t k, sub = index;
	int ret;

	if (!c->nkinds) {
		memset(out, 0, sizeof(*out));
		return no_kinds(c, err, err_len);
	}
	/* every edge case of every kind first, then random values of the kinds in turn */
	for (k = 0; k < c->nkinds && sub >= c->gens[k]->edge_cases; k++)
		sub -= c->gens[k]->edge_cases;
	if (k == c->nkinds) {
		k = sub % c->nkinds;
		sub = c->gens[k]->edge_cases + sub / c->nkinds;
	}
	ret = val_value_kind(t, k, sub, seed, max_bytes, out, err, err_len);
	out->index = index;
	return ret;
}

int val_value_sized(const struct val_target *t, size_t bytes, struct val_value *out, char *err,
		    size_t err_len)
{
	const struct val_kind *kind = t->codec->nkinds ? t->codec->gens[0] : NULL;
	int ret;

	memset(out, 0, sizeof(*out));
	if (!kind || !kind->sized)
		return kind ? -ENOTSUP : no_kinds(t->codec, err, err_len);
	out->kind = kind;
	out->seed = 1;
	out->gen_index = kind->edge_cases;
	ret = kind->sized(kind->ctx, bytes, t->tags[0], &out->value);
	if (ret) {
		snprintf(err, err_len, "the generator of a %zu-byte %s failed: %s", bytes,
			 kind->name, shmrig_strerror(ret));
		kind->release(kind->ctx, &out->value);
		out->kind = NULL;
		return ret;
	}
	out->accepted = !t->codec->codec.can_encode ||
			t->codec->codec.can_encode(t->codec->codec.ctx, &out->value);
	return 0;
}

void val_value_free(struct val_value *v)
{
	if (v->kind)
		v->kind->release(v->kind->ctx, &v->value);
	v->kind = NULL;
}

bool val_value_equal(const struct val_value *expected, const struct shmrig_value *got, char *why,
		     size_t why_len)
{
	why[0] = '\0';
	if (expected->kind->equal(expected->kind->ctx, &expected->value, got, why, why_len))
		return true;
	if (!why[0])
		snprintf(why, why_len, "the %s kind's equal() says the decoded value differs",
			 expected->kind->name);
	return false;
}

const char *val_value_name(const struct val_value *v, char *buf, size_t len)
{
	if (v->gen_index < v->kind->edge_cases)
		snprintf(buf, len, "value %u (%s edge case %u)", v->index, v->kind->name,
			 v->gen_index);
	else
		snprintf(buf, len, "value %u (%s, random, seed %llu)", v->index, v->kind->name,
			 (unsigned long long)v->seed);
	return buf;
}
