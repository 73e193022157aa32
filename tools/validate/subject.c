/* SPDX-License-Identifier: MIT */
/*
 * Subjects: what is under test. A subject is a set of codecs that go into a
 * registry together, and for each codec the kinds of value it is fed. The
 * built-in codecs are one; a plugin (PLUGIN.so) will be another, through the
 * loader of shmrig/plugin.h, once it exists: the checks see only this.
 *
 * A target is one codec of a subject in a registry of its own (made in the
 * check's child), with the user type tags its kinds need.
 */
#include "validate.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- the built-in codecs ---- */

static int builtin_fill(struct val_subject *subject, uint32_t target, shmrig_registry *reg)
{
	(void)subject;
	(void)target; /* one built-in codec a kind: each takes its own */
	return shmrig_registry_add_builtins(reg);
}

static void builtin_close(struct val_subject *subject)
{
	free(subject);
}

static int builtin_open(struct val_subject **out)
{
	static const struct val_kind *const kinds[] = { &val_kind_ndarray, &val_kind_table,
							&val_kind_dataset, &val_kind_bytes };
	struct val_subject *s = calloc(1, sizeof(*s));

	if (!s)
		return -ENOMEM;
	snprintf(s->label, sizeof(s->label), "the built-in codecs");
	/* shmrig_registry_add_builtins's codecs: one each, named after its kind */
	for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++) {
		struct val_codec *c = &s->codecs[s->ncodecs++];

		snprintf(c->name, sizeof(c->name), "%s", kinds[i]->name);
		c->kinds = SHMRIG_KIND_BIT(kinds[i]->kind);
		c->nkinds = 1;
		c->gens[0] = kinds[i];
	}
	s->fill_registry = builtin_fill;
	s->close = builtin_close;
	*out = s;
	return 0;
}

/* ---- plugins ---- */

static int plugin_open(const char *path, struct val_subject **out, char *err, size_t err_len)
{
	(void)path;
	(void)out;
	snprintf(err, err_len,
		 "plugin mode is not built yet: it needs the plugin loader (shmrig/plugin.h, "
		 "commit \"codec: plugin ABI and loader\"), which has not landed; the built-in "
		 "codecs can be validated with --builtin");
	return -ENOSYS;
}

/* ---- subjects ---- */

int val_subject_open(const char *plugin, struct val_subject **out, char *err, size_t err_len)
{
	int ret;

	err[0] = '\0';
	if (plugin)
		return plugin_open(plugin, out, err, err_len);
	ret = builtin_open(out);
	if (ret)
		snprintf(err, err_len, "out of memory");
	return ret;
}

void val_subject_close(struct val_subject *subject)
{
	if (subject)
		subject->close(subject);
}

int val_subject_find(const struct val_subject *subject, const char *name)
{
	for (uint32_t i = 0; i < subject->ncodecs; i++)
		if (strcmp(subject->codecs[i].name, name) == 0)
			return (int)i;
	return -1;
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
	ret = subject->fill_registry(subject, codec, t->reg);
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

int val_value_make(const struct val_target *t, uint64_t seed, uint32_t index, size_t max_bytes,
		   struct val_value *out, char *err, size_t err_len)
{
	const struct val_codec *c = t->codec;
	uint32_t k, sub = index;
	int ret;

	memset(out, 0, sizeof(*out));
	if (!c->nkinds) {
		snprintf(err, err_len, "codec '%s' has no kind of value the kit can make", c->name);
		return -ENOTSUP;
	}
	/* every edge case of every kind first, then random values of the kinds in turn */
	for (k = 0; k < c->nkinds && sub >= c->gens[k]->edge_cases; k++)
		sub -= c->gens[k]->edge_cases;
	if (k == c->nkinds) {
		k = sub % c->nkinds;
		sub = c->gens[k]->edge_cases + sub / c->nkinds;
	}
	out->kind = c->gens[k];
	out->index = index;
	out->gen_index = sub;
	out->seed = seed;
	ret = out->kind->generate(out->kind->ctx, seed, sub, max_bytes, t->tags[k], &out->value);
	if (ret) {
		char name[96];

		snprintf(err, err_len, "the generator of %s failed: %s",
			 val_value_name(out, name, sizeof(name)), shmrig_strerror(ret));
		out->kind->release(out->kind->ctx, &out->value);
		out->kind = NULL;
		return ret;
	}
	out->accepted = !c->can_encode || c->can_encode(c->can_encode_ctx, &out->value);
	return 0;
}

int val_value_sized(const struct val_target *t, size_t bytes, struct val_value *out, char *err,
		    size_t err_len)
{
	const struct val_kind *kind = t->codec->gens[0];
	int ret;

	memset(out, 0, sizeof(*out));
	if (!t->codec->nkinds) {
		snprintf(err, err_len, "codec '%s' has no kind of value the kit can make",
			 t->codec->name);
		return -ENOTSUP;
	}
	out->kind = kind;
	out->seed = 1;
	out->gen_index = kind->edge_cases;
	ret = kind->sized ? kind->sized(kind->ctx, bytes, t->tags[0], &out->value) :
			    kind->generate(kind->ctx, 1, kind->edge_cases, bytes, t->tags[0],
					   &out->value);
	if (ret) {
		snprintf(err, err_len, "the generator of a %zu-byte %s failed: %s", bytes,
			 kind->name, shmrig_strerror(ret));
		kind->release(kind->ctx, &out->value);
		out->kind = NULL;
		return ret;
	}
	out->accepted = !t->codec->can_encode ||
			t->codec->can_encode(t->codec->can_encode_ctx, &out->value);
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
