/* SPDX-License-Identifier: MIT */
/*
 * Required.Lifetimes.*: block lifetimes by the pool's own accounting.
 *
 *   Accounting          after encode, the live blocks are exactly the blocks of
 *                       the frame's buffers, each holding one reference per
 *                       buffer in it; after decode, exactly the blocks of its
 *                       persistent buffers (one reference, one lease each);
 *                       after release, none
 *   Churn               10,000 round trips: no live block between them, and
 *                       no more segments or descriptors at the end than after
 *                       the first pass
 *   DecodeTwiceRefused  the second decode of a frame is refused, takes nothing
 *                       from the first decode's value, and frees nothing
 */
#include "validate.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define CHURN_ROUND_TRIPS 10000
#define CHURN_VALUES 32 /* distinct values, each round-tripped in turn */
/* past the largest class (1 MiB): blocks with segments of their own come and go */
#define CHURN_MAX_BYTES (((size_t)1 << 20) + ((size_t)64 << 10))
#define CHURN_CHECK_EVERY 100 /* a stats walk per this many round trips */

/* ---- Accounting ---- */

struct live_blocks {
	struct shmrig_block_info *blocks;
	uint32_t n, cap;
	bool overflow;
};

static void collect(void *arg, const struct shmrig_block_info *info)
{
	struct live_blocks *lb = arg;

	if (lb->n < lb->cap)
		lb->blocks[lb->n++] = *info;
	else
		lb->overflow = true;
}

static int walk(shmrig_pool *pool, struct live_blocks *lb)
{
	int ret;

	lb->n = 0;
	lb->overflow = false;
	ret = shmrig_pool_for_each_live(pool, collect, lb);
	return ret < 0 ? ret : 0;
}

/* Index of the live block buffer `ref` lies in, or -1. */
static int block_index(const struct live_blocks *lb, const struct shmrig_ref *ref)
{
	for (uint32_t b = 0; b < lb->n; b++) {
		const struct shmrig_ref *block = &lb->blocks[b].ref;

		if (strcmp(block->name, ref->name) == 0 && ref->offset >= block->offset &&
		    ref->size <= block->size &&
		    ref->offset - block->offset <= block->size - ref->size)
			return (int)b;
	}
	return -1;
}

/*
 * The live blocks must be exactly those holding the frame's buffers that
 * `counts` (all of them, or the persistent ones), each with one reference per
 * such buffer in it. 0, or a FAIL message naming `when` and -EBADMSG.
 */
static int expect_blocks(struct val_ctx *ctx, shmrig_pool *pool, struct live_blocks *lb,
			 const struct shmrig_frame *f, bool persistent_only, const char *name,
			 const char *when)
{
	uint32_t *refs;
	char err[VAL_MSG_MAX / 2];
	int ret = walk(pool, lb);

	if (ret) {
		val_fail(ctx, "pool_for_each_live: %s", val_error(ret, err, sizeof(err)));
		return ret;
	}
	if (lb->overflow) {
		val_fail(ctx, "%s %s: more than %u live blocks", name, when, lb->cap);
		return -E2BIG;
	}
	refs = calloc(lb->n ? lb->n : 1, sizeof(*refs));
	if (!refs) {
		val_fail(ctx, "out of memory");
		return -ENOMEM;
	}
	for (uint32_t i = 0; i < f->nbuffers && !ret; i++) {
		const struct shmrig_ref *ref = &f->buffers[i];
		int b;

		if (persistent_only && ref->temporary)
			continue;
		b = block_index(lb, ref);
		if (b < 0) {
			val_fail(ctx, "%s %s: buffer %u%s lies in no live block", name, when, i,
				 ref->temporary ? " (temporary)" : "");
			ret = -EBADMSG;
			break;
		}
		refs[b]++;
	}
	for (uint32_t b = 0; b < lb->n && !ret; b++) {
		const struct shmrig_block_info *info = &lb->blocks[b];

		if (!refs[b]) {
			val_fail(ctx,
				 "%s %s: a live block of %llu bytes (offset %llu) holds none of "
				 "the frame's %sbuffers",
				 name, when, (unsigned long long)info->ref.size,
				 (unsigned long long)info->ref.offset,
				 persistent_only ? "persistent " : "");
			ret = -EBADMSG;
		} else if (info->refcount != refs[b]) {
			val_fail(ctx,
				 "%s %s: a block holds %u references, the frame has %u %sbuffers "
				 "in it",
				 name, when, info->refcount, refs[b],
				 persistent_only ? "persistent " : "");
			ret = -EBADMSG;
		} else if (info->owner != getpid()) {
			val_fail(ctx, "%s %s: a block of the frame is owned by pid %d, not by us",
				 name, when, (int)info->owner);
			ret = -EBADMSG;
		}
	}
	free(refs);
	return ret;
}

static int accounting_value(struct val_ctx *ctx, shmrig_pool *pool, const struct val_value *v,
			    void *arg)
{
	struct live_blocks *lb = arg;
	char name[96], err[VAL_MSG_MAX / 2];
	struct shmrig_value out;
	struct shmrig_frame f;
	uint32_t persistent = 0, leases;
	void *frame;
	size_t len;
	int ret;

	val_value_name(v, name, sizeof(name));
	if (val_live_blocks(pool) != 0) {
		val_fail(ctx, "before %s: %llu blocks live, 0 expected", name,
			 (unsigned long long)val_live_blocks(pool));
		return -EBADMSG;
	}
	ret = val_encode(ctx, pool, v, &frame, &len);
	if (ret)
		return ret;
	ret = shmrig_frame_parse(frame, len, &f);
	for (uint32_t i = 0; !ret && i < f.nbuffers; i++)
		persistent += !f.buffers[i].temporary;
	if (!ret)
		ret = expect_blocks(ctx, pool, lb, &f, false, name, "after encode");
	if (ret) {
		val_frame_drop(pool, frame, len);
		return ret;
	}
	ret = val_decode_equal(ctx, pool, v, frame, len, &out);
	if (!ret) {
		ret = expect_blocks(ctx, pool, lb, &f, true, name, "after decode");
		leases = shmrig_value_leases(&out);
		if (!ret && leases != persistent) {
			val_fail(ctx,
				 "%s after decode: the value holds %u leases, the frame has %u "
				 "persistent buffers",
				 name, leases, persistent);
			ret = -EBADMSG;
		}
		if (shmrig_value_release(&out) && !ret) {
			val_fail(ctx, "%s: value_release: %s", name,
				 val_error(-EIO, err, sizeof(err)));
			ret = -EIO;
		}
	}
	free(frame);
	if (!ret && val_live_blocks(pool) != 0) {
		val_fail(ctx, "%s after release: %llu blocks live, 0 expected", name,
			 (unsigned long long)val_live_blocks(pool));
		ret = -EBADMSG;
	}
	return ret;
}

enum val_verdict val_check_lifetimes_accounting(struct val_ctx *ctx)
{
	struct live_blocks lb = { .cap = SHMRIG_FRAME_MAX_BUFFERS };
	enum val_verdict verdict;

	lb.blocks = malloc(lb.cap * sizeof(*lb.blocks));
	if (!lb.blocks)
		return val_fail(ctx, "out of memory");
	verdict = val_each_value(ctx, accounting_value, &lb);
	free(lb.blocks);
	return verdict;
}

/* ---- Churn ---- */

static int count_fds(void)
{
	DIR *dir = opendir("/proc/self/fd");
	struct dirent *entry;
	int n = 0;

	if (!dir)
		return -1;
	while ((entry = readdir(dir)))
		n += entry->d_name[0] != '.';
	closedir(dir);
	return n - 1; /* the directory's own */
}

enum val_verdict val_check_lifetimes_churn(struct val_ctx *ctx)
{
	struct val_iter it = { .ctx = ctx, .max_bytes = CHURN_MAX_BYTES };
	struct val_value *values = calloc(CHURN_VALUES, sizeof(*values));
	char err[VAL_MSG_MAX / 2], name[96];
	uint32_t nvalues = 0, segments = 0;
	int fds = 0, ret = 0;
	shmrig_pool *pool = NULL;

	if (!values)
		return val_fail(ctx, "out of memory");
	if (it.max_bytes > ctx->opt->max_bytes)
		it.max_bytes = ctx->opt->max_bytes;
	while (nvalues < CHURN_VALUES && (ret = val_next(&it, &values[nvalues])) == 0)
		nvalues++;
	if (ret < 0)
		goto out;
	ret = val_pool_open(ctx, 0, 0, &pool);
	if (ret) {
		val_fail(ctx, "pool_open: %s", val_error(ret, err, sizeof(err)));
		goto out;
	}
	for (uint32_t n = 0; nvalues && n < CHURN_ROUND_TRIPS; n++) {
		const struct val_value *v = &values[n % nvalues];
		struct shmrig_value out;
		void *frame;
		size_t len;

		/* after one pass every size has its arena chunk or cached segment */
		if (n == nvalues) {
			segments = val_segments(pool);
			fds = count_fds();
		}
		if (n % 1000 == 0) {
			val_progress(ctx, "%u of %u round trips", n, CHURN_ROUND_TRIPS);
			val_at(ctx, "round trip %u, %s", n, val_value_name(v, name, sizeof(name)));
		}
		ret = val_encode(ctx, pool, v, &frame, &len);
		if (ret)
			goto out;
		/* compared on the first pass (RoundTrip.* compare every value) */
		if (n < nvalues) {
			ret = val_decode_equal(ctx, pool, v, frame, len, &out);
		} else {
			ret = shmrig_registry_decode(ctx->target->reg, pool, frame, len, &out);
			if (ret)
				val_fail(ctx, "round trip %u, %s: decode: %s", n,
					 val_value_name(v, name, sizeof(name)),
					 val_error(ret, err, sizeof(err)));
		}
		free(frame);
		if (ret)
			goto out;
		ret = shmrig_value_release(&out);
		if (ret) {
			val_fail(ctx, "round trip %u: value_release: %s", n,
				 val_error(ret, err, sizeof(err)));
			goto out;
		}
		ctx->values++;
		if ((n + 1) % CHURN_CHECK_EVERY && n + 1 != CHURN_ROUND_TRIPS)
			continue;
		if (val_live_blocks(pool) != 0) {
			val_fail(ctx, "after %u round trips %llu blocks are live, 0 expected",
				 n + 1, (unsigned long long)val_live_blocks(pool));
			ret = -EBADMSG;
			goto out;
		}
		if (n >= nvalues && val_segments(pool) > segments) {
			val_fail(ctx,
				 "after %u round trips the pool maps %u segments, %u after the first "
				 "%u",
				 n + 1, val_segments(pool), segments, nvalues);
			ret = -EBADMSG;
			goto out;
		}
	}
	if (nvalues && count_fds() > fds) {
		val_fail(ctx, "%d descriptors open after %u round trips, %d after the first %u",
			 count_fds(), CHURN_ROUND_TRIPS, fds, nvalues);
		ret = -EBADMSG;
	}
	if (!ret)
		val_pass(ctx, "%u round trips of %u distinct values, %u segments", ctx->values,
			 nvalues, segments);
out:
	for (uint32_t i = 0; i < nvalues; i++)
		val_value_free(&values[i]);
	free(values);
	if (ret)
		return VAL_FAIL;
	return val_finish(ctx, &it, pool);
}

/* ---- DecodeTwiceRefused ---- */

static int decode_twice(struct val_ctx *ctx, shmrig_pool *pool, const struct val_value *v,
			void *arg)
{
	(void)arg;
	char name[96], err[VAL_MSG_MAX / 2], why[VAL_MSG_MAX / 2];
	struct shmrig_value first, second;
	struct shmrig_frame f;
	bool temporary = false;
	uint64_t live;
	void *frame;
	size_t len;
	int ret;

	val_value_name(v, name, sizeof(name));
	ret = val_encode(ctx, pool, v, &frame, &len);
	if (ret)
		return ret;
	ret = shmrig_frame_parse(frame, len, &f);
	for (uint32_t i = 0; !ret && i < f.nbuffers; i++)
		temporary |= f.buffers[i].temporary;
	if (!ret)
		ret = val_decode_equal(ctx, pool, v, frame, len, &first);
	if (ret) {
		free(frame);
		return ret;
	}
	live = val_live_blocks(pool);
	ret = shmrig_registry_decode(ctx->target->reg, pool, frame, len, &second);
	if (ret == 0) {
		(void)!shmrig_value_release(&second);
		if (f.nbuffers) {
			val_fail(ctx, "%s: the second decode of its frame succeeded", name);
			ret = -EBADMSG;
		}
		/* a frame without buffers hands nothing over: decoding it again takes nothing */
	} else if (ret == -SHMRIG_ECLAIMED || (ret == -SHMRIG_ESTALE && temporary)) {
		/* refused: ECLAIMED, or ESTALE when the first ref was temporary, freed by now */
		ret = 0;
	} else {
		val_fail(ctx, "%s: the second decode failed with %s, not -SHMRIG_ECLAIMED", name,
			 val_error(ret, err, sizeof(err)));
	}
	if (!ret && val_live_blocks(pool) != live) {
		val_fail(ctx, "%s: %llu blocks live after the refused decode, %llu before", name,
			 (unsigned long long)val_live_blocks(pool), (unsigned long long)live);
		ret = -EBADMSG;
	}
	if (!ret && !val_value_equal(v, &first, why, sizeof(why))) {
		val_fail(ctx, "%s: the refused decode changed the first decode's value: %s", name,
			 why);
		ret = -EBADMSG;
	}
	if (shmrig_value_release(&first) && !ret) {
		val_fail(ctx, "%s: value_release: %s", name, val_error(-EIO, err, sizeof(err)));
		ret = -EIO;
	}
	free(frame);
	if (!ret && val_live_blocks(pool) != 0) {
		val_fail(ctx, "%s: %llu blocks live after release, 0 expected", name,
			 (unsigned long long)val_live_blocks(pool));
		ret = -EBADMSG;
	}
	return ret;
}

enum val_verdict val_check_lifetimes_decode_twice(struct val_ctx *ctx)
{
	return val_each_value(ctx, decode_twice, NULL);
}
