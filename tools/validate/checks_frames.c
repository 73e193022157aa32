/* SPDX-License-Identifier: MIT */
/*
 * The checks that read the frames a codec makes: its metadata
 * (Required.Meta.JsonCompatible, Recommended.Meta.SizeLimit), its refs
 * (Required.Refs.InBounds, Required.Refs.Aligned), its temporary flags
 * (Required.Buffers.TemporaryFlags) and the bytes past its buffers' content
 * (Required.Buffers.NoWritePastContent).
 */
#include "validate.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define META_SIZE_LIMIT ((uint32_t)64 << 10)
#define ALIGNMENT 64u

/* ---- a frame of each value, for checks that look at frames ---- */

struct frame_visit {
	struct val_ctx *ctx;
	shmrig_pool *pool;
	const struct val_value *v;
	void *frame;
	size_t len;
	struct shmrig_frame f;
	char name[96];
};

/* Encode every value and call fn on its frame (then dropped); fn returns 0 or a FAIL. */
static enum val_verdict each_frame(struct val_ctx *ctx,
				   int (*fn)(struct frame_visit *fv, void *arg), void *arg)
{
	struct val_iter it = { .ctx = ctx };
	char err[VAL_MSG_MAX / 2];
	struct frame_visit fv = { .ctx = ctx };
	struct val_value v;
	int ret = val_pool_open(ctx, 0, 0, &fv.pool);

	if (ret)
		return val_fail(ctx, "pool_open: %s", val_error(ret, err, sizeof(err)));
	while ((ret = val_next(&it, &v)) == 0) {
		fv.v = &v;
		val_at(ctx, "%s", val_value_name(&v, fv.name, sizeof(fv.name)));
		ret = val_encode(ctx, fv.pool, &v, &fv.frame, &fv.len);
		/* val_encode parsed it already: this parse cannot fail */
		if (!ret)
			ret = shmrig_frame_parse(fv.frame, fv.len, &fv.f);
		if (!ret) {
			ret = fn(&fv, arg);
			val_frame_drop(fv.pool, fv.frame, fv.len);
		}
		val_value_free(&v);
		if (ret)
			return VAL_FAIL;
		ctx->values++;
	}
	if (ret < 0)
		return VAL_FAIL;
	return val_finish(ctx, &it, fv.pool);
}

/* Text of a JSON value for a message: at most `max` characters. */
static const char *json_text(const json_t *json, char *buf, size_t len, size_t max)
{
	char *text = json ? json_dumps(json, JSON_COMPACT | JSON_ENCODE_ANY | JSON_SORT_KEYS) :
			    NULL;

	snprintf(buf, len, "%.*s%s", (int)max, text ? text : "null",
		 text && strlen(text) > max ? "..." : "");
	free(text);
	return buf;
}

/* ---- Required.Meta.JsonCompatible ---- */

static int meta_json(struct frame_visit *fv, void *arg)
{
	char err[VAL_MSG_MAX / 2], why[256], a[200], b[200];
	json_t *doc, *mine;
	json_error_t jerr;
	char *text;
	int ret;

	(void)arg;
	ret = shmrig_frame_to_json(fv->frame, fv->len, fv->ctx->target->reg, &text);
	if (ret) {
		val_fail(fv->ctx, "%s: shmrig_frame_to_json refuses its frame: %s", fv->name,
			 val_error(ret, err, sizeof(err)));
		return ret;
	}
	/* flags 0: no NUL in strings, no bare values: what any JSON reader takes */
	doc = json_loads(text, 0, &jerr);
	free(text);
	if (!doc) {
		val_fail(fv->ctx, "%s: the JSON rendering of its frame does not parse back: %s",
			 fv->name, jerr.text);
		return -EBADMSG;
	}
	mine = val_meta_to_json(fv->f.meta, fv->f.meta_len, why, sizeof(why));
	if (!mine) {
		val_fail(fv->ctx, "%s: its metadata is not JSON-compatible: %s", fv->name, why);
		json_decref(doc);
		return -EBADMSG;
	}
	ret = json_equal(json_object_get(doc, "meta"), mine) ? 0 : -EBADMSG;
	if (ret)
		val_fail(fv->ctx,
			 "%s: its metadata parsed back from JSON differs from its bytes: JSON %s, "
			 "bytes %s",
			 fv->name, json_text(json_object_get(doc, "meta"), a, sizeof(a), 150),
			 json_text(mine, b, sizeof(b), 150));
	json_decref(mine);
	json_decref(doc);
	return ret;
}

enum val_verdict val_check_meta_json(struct val_ctx *ctx)
{
	return each_frame(ctx, meta_json, NULL);
}

/* ---- Recommended.Meta.SizeLimit ---- */

struct meta_size {
	uint32_t largest;
	char largest_name[96];
};

static int meta_size(struct frame_visit *fv, void *arg)
{
	struct meta_size *ms = arg;

	if (fv->f.meta_len > ms->largest) {
		ms->largest = fv->f.meta_len;
		snprintf(ms->largest_name, sizeof(ms->largest_name), "%s", fv->name);
	}
	if (fv->f.meta_len <= META_SIZE_LIMIT)
		return 0;
	val_fail(fv->ctx, "%s: %u bytes of metadata, above the limit of %u", fv->name,
		 fv->f.meta_len, META_SIZE_LIMIT);
	return -E2BIG;
}

enum val_verdict val_check_meta_size(struct val_ctx *ctx)
{
	struct meta_size ms = { 0 };
	enum val_verdict verdict = each_frame(ctx, meta_size, &ms);

	if (verdict == VAL_PASS && !ctx->message[0])
		val_pass(ctx, "largest metadata %u bytes, %s", ms.largest, ms.largest_name);
	return verdict;
}

/* ---- where buffers are: live blocks and mappings ---- */

struct live_set {
	struct shmrig_block_info blocks[256];
	uint32_t n;
	bool overflow;
};

static void collect_live(void *arg, const struct shmrig_block_info *info)
{
	struct live_set *set = arg;

	if (set->n < sizeof(set->blocks) / sizeof(set->blocks[0]))
		set->blocks[set->n++] = *info;
	else
		set->overflow = true;
}

/* The live block a ref lies in, or NULL. */
static const struct shmrig_block_info *block_of(const struct live_set *set,
						const struct shmrig_ref *ref)
{
	for (uint32_t b = 0; b < set->n; b++) {
		const struct shmrig_ref *block = &set->blocks[b].ref;

		if (strcmp(block->name, ref->name) == 0 && ref->offset >= block->offset &&
		    ref->size <= block->size &&
		    ref->offset - block->offset <= block->size - ref->size)
			return &set->blocks[b];
	}
	return NULL;
}

/* ---- Required.Refs.InBounds ---- */

struct parts_check {
	const struct shmrig_frame *f;
	const char *const *addr; /* each buffer's data, mapped here */
	const char *problem;     /* the first part out of place */
	uint64_t problem_len;
	bool problem_view;
};

static void check_part(void *arg, const void *data, uint64_t len, bool view)
{
	struct parts_check *pc = arg;
	const char *p = data;

	if (pc->problem || len == 0)
		return;
	for (uint32_t i = 0; i < pc->f->nbuffers; i++) {
		const struct shmrig_ref *ref = &pc->f->buffers[i];
		const char *start = pc->addr[i];

		/* a view lies inside the content of one persistent buffer */
		if (view && !ref->temporary && p >= start &&
		    (uint64_t)(p - start) <= ref->content_size &&
		    len <= ref->content_size - (uint64_t)(p - start))
			return;
		/* a copy overlaps no buffer */
		if (!view && p < start + ref->size && start < p + len)
			break;
		if (!view && i + 1 == pc->f->nbuffers)
			return;
	}
	if (!view && pc->f->nbuffers == 0)
		return;
	pc->problem = p;
	pc->problem_len = len;
	pc->problem_view = view;
}

static int refs_inbounds(struct frame_visit *fv, void *arg)
{
	struct val_ctx *ctx = fv->ctx;
	const struct val_kind *kind = fv->v->kind;
	struct live_set *set = arg;
	char err[VAL_MSG_MAX / 2];
	const char **addr;
	struct shmrig_value out;
	int ret;

	set->n = 0;
	set->overflow = false;
	ret = shmrig_pool_for_each_live(fv->pool, collect_live, set);
	if (ret < 0) {
		val_fail(ctx, "pool_for_each_live: %s", val_error(ret, err, sizeof(err)));
		return ret;
	}
	addr = calloc(fv->f.nbuffers ? fv->f.nbuffers : 1, sizeof(*addr));
	if (!addr) {
		val_fail(ctx, "out of memory");
		return -ENOMEM;
	}
	for (uint32_t i = 0; i < fv->f.nbuffers; i++) {
		const struct shmrig_ref *ref = &fv->f.buffers[i];
		void *data;

		if (ref->content_size > ref->size) {
			val_fail(ctx, "%s: buffer %u: content_size %llu > size %llu", fv->name, i,
				 (unsigned long long)ref->content_size,
				 (unsigned long long)ref->size);
			ret = -EBADMSG;
			break;
		}
		ret = shmrig_pool_attach(fv->pool, ref, &data);
		if (ret) {
			val_fail(ctx, "%s: buffer %u: the pool refuses its ref: %s", fv->name, i,
				 val_error(ret, err, sizeof(err)));
			break;
		}
		addr[i] = data;
		if (!set->overflow && !block_of(set, ref)) {
			val_fail(ctx,
				 "%s: buffer %u (offset %llu, %llu bytes) lies in no live block",
				 fv->name, i, (unsigned long long)ref->offset,
				 (unsigned long long)ref->size);
			ret = -EBADMSG;
			break;
		}
	}
	if (!ret && kind->parts) {
		/* the decoded value points into its persistent buffers only */
		struct parts_check pc = { .f = &fv->f, .addr = addr };

		ret = val_decode_equal(ctx, fv->pool, fv->v, fv->frame, fv->len, &out);
		if (!ret) {
			kind->parts(kind->ctx, &out, check_part, &pc);
			if (pc.problem)
				val_fail(ctx,
					 pc.problem_view ?
						 "%s: the decoded value views %llu bytes that are "
						 "not inside one persistent buffer of its frame" :
						 "%s: the decoded value's %llu bytes, copied out, "
						 "are inside a buffer of its frame",
					 fv->name, (unsigned long long)pc.problem_len);
			ret = shmrig_value_release(&out);
			if (ret)
				val_fail(ctx, "value_release: %s",
					 val_error(ret, err, sizeof(err)));
			else if (pc.problem)
				ret = -EFAULT;
		}
	}
	free(addr);
	return ret;
}

enum val_verdict val_check_refs_inbounds(struct val_ctx *ctx)
{
	struct live_set *set = malloc(sizeof(*set));
	enum val_verdict verdict;

	if (!set)
		return val_fail(ctx, "out of memory");
	verdict = each_frame(ctx, refs_inbounds, set);
	free(set);
	return verdict;
}

/* ---- Required.Refs.Aligned ---- */

static int refs_aligned(struct frame_visit *fv, void *arg)
{
	char err[VAL_MSG_MAX / 2];

	(void)arg;
	for (uint32_t i = 0; i < fv->f.nbuffers; i++) {
		const struct shmrig_ref *ref = &fv->f.buffers[i];
		void *data;
		int ret;

		if (ref->offset % ALIGNMENT) {
			val_fail(fv->ctx, "%s: buffer %u at offset %llu, not %u-byte aligned",
				 fv->name, i, (unsigned long long)ref->offset, ALIGNMENT);
			return -EBADMSG;
		}
		ret = shmrig_pool_attach(fv->pool, ref, &data);
		if (ret) {
			val_fail(fv->ctx, "%s: buffer %u: the pool refuses its ref: %s", fv->name,
				 i, val_error(ret, err, sizeof(err)));
			return ret;
		}
		if ((uintptr_t)data % ALIGNMENT) {
			val_fail(fv->ctx, "%s: buffer %u is mapped at %p, not %u-byte aligned",
				 fv->name, i, data, ALIGNMENT);
			return -EBADMSG;
		}
	}
	return 0;
}

enum val_verdict val_check_refs_aligned(struct val_ctx *ctx)
{
	return each_frame(ctx, refs_aligned, NULL);
}

/* ---- Required.Buffers.TemporaryFlags ---- */

/*
 * Blocks allocated after decode to take the place of its freed temporary
 * buffers (the pool's cache hands the last freed block out first) and
 * scribbled on: a value that still views one of them changes.
 */
#define MAX_REUSE 64
#define SCRIBBLE 0xa5

static int scribble_temporaries(struct frame_visit *fv, const char *const *addr,
				struct shmrig_ref *reuse, uint32_t *nreuse)
{
	for (uint32_t i = 0; i < fv->f.nbuffers && *nreuse < MAX_REUSE; i++) {
		const struct shmrig_ref *ref = &fv->f.buffers[i];

		if (!ref->temporary)
			continue;
		/* a few tries each: the first is usually the block just freed */
		for (int tries = 0; tries < 4 && *nreuse < MAX_REUSE; tries++) {
			struct shmrig_ref *r = &reuse[*nreuse];
			void *data;
			int ret = shmrig_pool_alloc(fv->pool, ref->size, 0, 0, r, &data);

			if (ret)
				return ret;
			memset(data, SCRIBBLE, r->size);
			(*nreuse)++;
			if ((const char *)data <= addr[i] && addr[i] < (const char *)data + r->size)
				break;
		}
	}
	return 0;
}

static int buffers_temporary(struct frame_visit *fv, void *arg)
{
	struct val_ctx *ctx = fv->ctx;
	char err[VAL_MSG_MAX / 2], why[VAL_MSG_MAX / 2];
	struct shmrig_ref *reuse = arg;
	struct shmrig_value out;
	uint32_t persistent = 0, leases, nreuse = 0;
	const char **addr = calloc(fv->f.nbuffers ? fv->f.nbuffers : 1, sizeof(*addr));
	int ret = addr ? 0 : -ENOMEM;

	for (uint32_t i = 0; !ret && i < fv->f.nbuffers; i++) {
		void *data;

		persistent += !fv->f.buffers[i].temporary;
		ret = shmrig_pool_attach(fv->pool, &fv->f.buffers[i], &data);
		addr[i] = data;
	}
	if (ret) {
		free(addr);
		val_fail(ctx, "%s: attach: %s", fv->name, val_error(ret, err, sizeof(err)));
		return ret;
	}
	ret = shmrig_registry_decode(ctx->target->reg, fv->pool, fv->frame, fv->len, &out);
	if (ret) {
		val_error(ret, err, sizeof(err));
		free(addr);
		if (strstr(err, "temporary") || strstr(err, "persistent"))
			val_fail(ctx,
				 "%s: the frame marks a buffer otherwise than the decoder reads it: "
				 "%s",
				 fv->name, err);
		else
			val_fail(ctx, "%s: decode refuses the frame its encode made: %s", fv->name,
				 err);
		return ret;
	}
	leases = shmrig_value_leases(&out);
	if (leases != persistent) {
		val_fail(ctx,
			 "%s: the decoded value holds %u leases, its frame has %u persistent "
			 "buffers",
			 fv->name, leases, persistent);
		ret = -EBADMSG;
	}
	/* the temporary buffers are free now: reuse them, and the value must not change */
	if (!ret)
		ret = scribble_temporaries(fv, addr, reuse, &nreuse);
	if (ret && !ctx->message[0])
		val_fail(ctx, "%s: pool_alloc: %s", fv->name, val_error(ret, err, sizeof(err)));
	if (!ret && !val_value_equal(fv->v, &out, why, sizeof(why))) {
		val_fail(ctx,
			 "%s: the decoded value changed when the pool reused its temporary "
			 "buffers: the codec keeps a view of a temporary buffer (%s)",
			 fv->name, why);
		ret = -EFAULT;
	}
	for (uint32_t r = 0; r < nreuse; r++)
		(void)!shmrig_pool_free(fv->pool, &reuse[r]); /* ours: cannot fail */
	if (shmrig_value_release(&out) && !ret) {
		val_fail(ctx, "%s: value_release: %s", fv->name, shmrig_last_error());
		ret = -EIO;
	}
	free(addr);
	return ret;
}

enum val_verdict val_check_buffers_temporary(struct val_ctx *ctx)
{
	struct shmrig_ref *reuse = malloc(MAX_REUSE * sizeof(*reuse));
	enum val_verdict verdict;

	if (!reuse)
		return val_fail(ctx, "out of memory");
	verdict = each_frame(ctx, buffers_temporary, reuse);
	free(reuse);
	return verdict;
}

/* ---- Required.Buffers.NoWritePastContent ---- */

/*
 * Every value encoded by a registry with SHMRIG_REGISTRY_GUARD: the encoder
 * puts 64 bytes of a pattern right after each buffer's content_size and checks
 * them when the codec returns, failing the encode with -EFAULT and where. The
 * bytes past content_size are inside the pool's block, so neither the pool
 * nor a sanitizer sees a codec write there: the guard does.
 */

static int no_write_past(struct val_ctx *ctx, shmrig_pool *pool, const struct val_value *v,
			 void *arg)
{
	uint64_t *buffers = arg;
	char name[96], err[VAL_MSG_MAX / 2];
	struct shmrig_frame f;
	void *frame;
	size_t len;
	int ret;

	val_value_name(v, name, sizeof(name));
	ret = shmrig_registry_encode(ctx->target->reg, pool, &v->value, &frame, &len);
	if (ret == -EFAULT) {
		/* the library's words name the codec, the buffer and the bytes */
		val_fail(ctx, "%s: %s", name, shmrig_last_error());
		return ret;
	}
	if (ret) {
		val_fail(ctx, "%s: encode with guards: %s", name, val_error(ret, err, sizeof(err)));
		return ret;
	}
	ret = shmrig_frame_parse(frame, len, &f);
	if (ret) {
		val_fail(ctx, "%s: encode made a frame that does not parse: %s", name,
			 val_error(ret, err, sizeof(err)));
		free(frame);
		return ret;
	}
	*buffers += f.nbuffers;
	val_frame_drop(pool, frame, len);
	return 0;
}

enum val_verdict val_check_buffers_no_write_past(struct val_ctx *ctx)
{
	char err[VAL_MSG_MAX / 2];
	enum val_verdict verdict;
	uint64_t buffers = 0;
	int ret;

	/* before the first encode freezes the target's registry */
	ret = shmrig_registry_set_flags(ctx->target->reg, SHMRIG_REGISTRY_GUARD);
	if (ret)
		return val_fail(ctx, "registry_set_flags: %s", val_error(ret, err, sizeof(err)));
	verdict = val_each_value(ctx, no_write_past, &buffers);
	if (verdict == VAL_PASS && !ctx->message[0])
		val_pass(ctx, "%llu buffers guarded, none written past content_size",
			 (unsigned long long)buffers);
	return verdict;
}
