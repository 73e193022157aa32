/* SPDX-License-Identifier: MIT */
/*
 * What every check does in its child: verdicts and their words, progress and
 * "where am I" records to the parent, a pool of the run's prefix, the next
 * value the codec takes, encode with the frame checked, decode compared with
 * the value that was encoded.
 */
#include "validate.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Checks' pools: small arenas, pre-faulted quickly; values above 1 MiB get segments anyway. */
#define CHECK_ARENA_SIZE ((size_t)16 << 20)

static enum val_verdict verdict(struct val_ctx *ctx, enum val_verdict v, const char *fmt,
				va_list ap)
{
	vsnprintf(ctx->message, sizeof(ctx->message), fmt, ap);
	return v;
}

enum val_verdict val_fail(struct val_ctx *ctx, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	verdict(ctx, VAL_FAIL, fmt, ap);
	va_end(ap);
	return VAL_FAIL;
}

enum val_verdict val_skip(struct val_ctx *ctx, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	verdict(ctx, VAL_SKIP, fmt, ap);
	va_end(ap);
	return VAL_SKIP;
}

enum val_verdict val_pass(struct val_ctx *ctx, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	verdict(ctx, VAL_PASS, fmt, ap);
	va_end(ap);
	return VAL_PASS;
}

/* One line of JSON to the parent; small records are one write (atomic below PIPE_BUF). */
static void send_record(struct val_ctx *ctx, const char *key, const char *fmt, va_list ap)
{
	char text[512];
	json_t *record;
	char *line;

	if (ctx->report_fd < 0)
		return;
	vsnprintf(text, sizeof(text), fmt, ap);
	record = json_pack("{s:s}", key, text);
	line = record ? json_dumps(record, JSON_COMPACT) : NULL;
	if (line) {
		size_t len = strlen(line);

		line[len] = '\n'; /* json_dumps's NUL becomes the record's end */
		(void)!write(ctx->report_fd, line, len + 1);
	}
	free(line);
	json_decref(record);
}

void val_progress(struct val_ctx *ctx, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	send_record(ctx, "progress", fmt, ap);
	va_end(ap);
}

void val_at(struct val_ctx *ctx, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	send_record(ctx, "at", fmt, ap);
	va_end(ap);
}

const char *val_error(int err, char *buf, size_t len)
{
	const char *detail = shmrig_last_error();

	if (detail && detail[0])
		snprintf(buf, len, "%s (%s)", shmrig_strerror(err), detail);
	else
		snprintf(buf, len, "%s", shmrig_strerror(err));
	return buf;
}

void val_child_detach(struct val_ctx *ctx)
{
	if (ctx->report_fd >= 0)
		close(ctx->report_fd);
	ctx->report_fd = -1;
}

/* ---- pools ---- */

int val_pool_open(struct val_ctx *ctx, size_t arena_size, size_t max_bytes, shmrig_pool **out)
{
	struct shmrig_pool_opts opts = SHMRIG_SIZED(struct shmrig_pool_opts);

	opts.flags = SHMRIG_POOL_QUIET;
	opts.prefix = ctx->opt->prefix;
	opts.arena_size = arena_size ? arena_size : CHECK_ARENA_SIZE;
	opts.max_bytes = max_bytes;
	return shmrig_pool_open(&opts, out);
}

int val_pool_close(shmrig_pool *pool)
{
	return pool ? shmrig_pool_close(pool) : 0;
}

uint64_t val_live_blocks(shmrig_pool *pool)
{
	struct shmrig_pool_stats stats = SHMRIG_SIZED(struct shmrig_pool_stats);

	return shmrig_pool_stats(pool, &stats) ? UINT64_MAX : stats.live_blocks;
}

uint32_t val_segments(shmrig_pool *pool)
{
	struct shmrig_pool_stats stats = SHMRIG_SIZED(struct shmrig_pool_stats);

	return shmrig_pool_stats(pool, &stats) ? UINT32_MAX : stats.segments;
}

/* ---- values, encode, decode ---- */

int val_next(struct val_iter *it, struct val_value *v)
{
	struct val_ctx *ctx = it->ctx;
	char err[512];

	while (it->index < ctx->opt->values) {
		uint32_t index = it->index++;
		int ret = val_value_make(ctx->target, ctx->opt->seed, index,
					 it->max_bytes ? it->max_bytes : ctx->opt->max_bytes, v,
					 err, sizeof(err));

		if (ret) {
			val_fail(ctx, "%s", err);
			return ret;
		}
		if (v->accepted)
			return 0;
		it->declined++;
		val_value_free(v);
	}
	return 1;
}

int val_encode(struct val_ctx *ctx, shmrig_pool *pool, const struct val_value *v, void **frame,
	       size_t *len)
{
	const struct val_target *t = ctx->target;
	char name[96], err[VAL_MSG_MAX / 2];
	struct shmrig_frame f;
	int ret = shmrig_registry_encode(t->reg, pool, &v->value, frame, len);

	if (ret) {
		val_fail(ctx, "%s: encode: %s", val_value_name(v, name, sizeof(name)),
			 val_error(ret, err, sizeof(err)));
		return ret;
	}
	ret = shmrig_frame_parse(*frame, *len, &f);
	if (ret) {
		val_fail(ctx, "%s: encode made a frame that does not parse: %s",
			 val_value_name(v, name, sizeof(name)), val_error(ret, err, sizeof(err)));
		free(*frame);
		return ret;
	}
	if (f.codec_id != t->codec_id) {
		val_fail(ctx, "%s: encoded by codec '%s', not '%s'",
			 val_value_name(v, name, sizeof(name)),
			 shmrig_registry_codec_name(t->reg, f.codec_id), t->codec->name);
		val_frame_drop(pool, *frame, *len);
		return -EPROTO;
	}
	return 0;
}

int val_decode_equal(struct val_ctx *ctx, shmrig_pool *pool, const struct val_value *v,
		     const void *frame, size_t len, struct shmrig_value *out)
{
	char name[96], why[VAL_MSG_MAX / 2];
	int ret = shmrig_registry_decode(ctx->target->reg, pool, frame, len, out);

	if (ret) {
		val_fail(ctx, "%s: decode of its frame: %s", val_value_name(v, name, sizeof(name)),
			 val_error(ret, why, sizeof(why)));
		return ret;
	}
	if (!val_value_equal(v, out, why, sizeof(why))) {
		val_fail(ctx, "%s: the decoded value differs: %s",
			 val_value_name(v, name, sizeof(name)), why);
		(void)!shmrig_value_release(out); /* failed already */
		return -EBADMSG;
	}
	return 0;
}

void val_frame_drop(shmrig_pool *pool, void *frame, size_t len)
{
	(void)!shmrig_frame_discard(pool, frame, len); /* best effort: the blocks may be gone */
	free(frame);
}

enum val_verdict val_finish(struct val_ctx *ctx, const struct val_iter *it, shmrig_pool *pool)
{
	char err[VAL_MSG_MAX / 2];
	int ret = val_pool_close(pool);

	if (ret == -SHMRIG_ELEAK)
		return val_fail(ctx, "blocks were still live at pool close: %s",
				val_error(ret, err, sizeof(err)));
	if (ret)
		return val_fail(ctx, "pool_close: %s", val_error(ret, err, sizeof(err)));
	if (!ctx->values)
		return val_skip(ctx, "the codec declined all %u generated values (can_encode)",
				it->declined);
	if (it->declined && !ctx->message[0])
		return val_pass(ctx, "%u values declined by the codec's can_encode", it->declined);
	return VAL_PASS;
}

enum val_verdict val_each_value(struct val_ctx *ctx, val_value_fn fn, void *arg)
{
	struct val_iter it = { .ctx = ctx };
	char err[VAL_MSG_MAX / 2], name[96];
	struct val_value v;
	shmrig_pool *pool;
	bool failed = false;
	int ret = val_pool_open(ctx, 0, 0, &pool);

	if (ret)
		return val_fail(ctx, "pool_open: %s", val_error(ret, err, sizeof(err)));
	/* val_next: 0 a value, > 0 the end, < 0 it failed the check */
	while ((ret = val_next(&it, &v)) == 0) {
		val_at(ctx, "%s", val_value_name(&v, name, sizeof(name)));
		failed = fn(ctx, pool, &v, arg) != 0;
		val_value_free(&v);
		if (failed)
			break;
		ctx->values++;
	}
	if (failed || ret < 0) {
		(void)!val_pool_close(pool); /* failed already */
		return VAL_FAIL;
	}
	return val_finish(ctx, &it, pool);
}
