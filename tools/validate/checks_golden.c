/* SPDX-License-Identifier: MIT */
/*
 * Recommended.Golden.Frames: every golden file of the codec (golden.h) in the
 * subject's directory decodes, with today's code, to the value it holds. This
 * is what catches a change of format that old data does not survive: the
 * round-trip checks cannot, since they encode and decode with the same code.
 *
 * The directory: --golden DIR; else a plugin's golden_dir, relative to the
 * directory of the .so; else, for the built-in codecs, the golden frames the
 * kit ships: the source tree's (tools/validate/golden/builtin) when the kit
 * runs from its build directory, the installed copy
 * (share/shmrig/golden/builtin) otherwise. No golden file for the codec is a
 * SKIP saying where the kit looked; a file that does not parse, decode or
 * compare equal is a FAIL naming it and why. Every file is tried, and the
 * pool must hold no live block after each.
 */
#include "golden.h"

#include <errno.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#ifndef SHMRIG_VALIDATE_GOLDEN_INSTALLED
#define SHMRIG_VALIDATE_GOLDEN_INSTALLED "/usr/local/share/shmrig/golden/builtin"
#endif

/* The built-in codecs' golden frames: the source tree's when we run from the build tree. */
static const char *builtin_dir(void)
{
#if defined(SHMRIG_VALIDATE_BUILD_DIR) && defined(SHMRIG_VALIDATE_GOLDEN_SOURCE)
	char exe[PATH_MAX], here[PATH_MAX], build[PATH_MAX];
	ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);

	if (n > 0) {
		exe[n] = '\0';
		if (realpath(dirname(exe), here) && realpath(SHMRIG_VALIDATE_BUILD_DIR, build) &&
		    strcmp(here, build) == 0)
			return SHMRIG_VALIDATE_GOLDEN_SOURCE;
	}
#endif
	return SHMRIG_VALIDATE_GOLDEN_INSTALLED;
}

/* Where the codec's golden files are: 0 with dir set, or 1 (a SKIP) with why. */
static int find_dir(struct val_ctx *ctx, char *dir, size_t len, char *why, size_t why_len)
{
	const struct shmrig_plugin *info = ctx->target->subject->info;
	const char *plugin = ctx->opt->plugin_path;
	struct stat st;

	if (ctx->opt->golden_dir) {
		snprintf(dir, len, "%s", ctx->opt->golden_dir);
	} else if (plugin) {
		char so[PATH_MAX];

		if (!info->golden_dir) {
			snprintf(why, why_len,
				 "plugin '%s' ships no golden frames (its golden_dir is NULL; "
				 "--golden DIR names a directory of them)",
				 info->name);
			return 1;
		}
		if (!realpath(plugin, so)) {
			snprintf(why, why_len, "%.300s: %s", plugin, strerror(errno));
			return 1;
		}
		snprintf(dir, len, "%s/%s", dirname(so), info->golden_dir);
	} else {
		snprintf(dir, len, "%s", builtin_dir());
	}
	if (stat(dir, &st)) {
		snprintf(why, why_len, "no golden frames: %.300s: %s", dir, strerror(errno));
		return 1;
	}
	if (!S_ISDIR(st.st_mode)) {
		snprintf(why, why_len, "no golden frames: %.300s is not a directory", dir);
		return 1;
	}
	return 0;
}

enum val_verdict val_check_golden_frames(struct val_ctx *ctx)
{
	const char *codec = ctx->target->codec->name;
	char dir[PATH_MAX], why[VAL_MSG_MAX / 2], err[VAL_MSG_MAX / 2];
	char first[VAL_MSG_MAX], first_leak[VAL_MSG_MAX];
	struct golden_entry *entries = NULL;
	uint32_t n = 0, failed = 0, leaked = 0;
	shmrig_pool *pool = NULL;
	uint64_t self;
	int ret;

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
	return val_skip(ctx, "golden frames are little-endian, and this host is not");
#endif
	if (find_dir(ctx, dir, sizeof(dir), why, sizeof(why)))
		return val_skip(ctx, "%s", why);
	if (golden_list(dir, codec, &entries, &n, why, sizeof(why)))
		return val_fail(ctx, "%s", why);
	if (!n) {
		free(entries);
		return val_skip(ctx, "no golden frames for codec '%s' in %s (%s-INDEX%s)", codec,
				dir, codec, GOLDEN_SUFFIX);
	}
	ret = val_pool_open(ctx, 0, 0, &pool);
	if (!ret)
		ret = shmrig_pool_peer(pool, getpid(), &self);
	if (ret) {
		free(entries);
		(void)!val_pool_close(pool); /* failed already */
		return val_fail(ctx, "a pool to decode in: %s", val_error(ret, err, sizeof(err)));
	}
	first[0] = first_leak[0] = '\0';
	for (uint32_t i = 0; i < n; i++) {
		char path[PATH_MAX + 256];
		uint64_t live = val_live_blocks(pool);
		unsigned char *bytes;
		struct golden g;
		size_t len;

		snprintf(path, sizeof(path), "%s/%s", dir, entries[i].name);
		val_at(ctx, "golden file %s", path);
		ret = golden_read_file(path, &bytes, &len, why, sizeof(why));
		if (!ret) {
			ret = golden_parse(bytes, len, &g, why, sizeof(why));
			if (!ret) {
				ret = golden_verify(ctx->target, pool, self, &g, why, sizeof(why));
				if (ret) {
					size_t used = strlen(why);

					snprintf(why + used, sizeof(why) - used,
						 " (written by %s %s)", g.plugin, g.plugin_version);
				}
			}
			golden_free(&g);
		}
		ctx->values++;
		if (ret && failed++ == 0)
			snprintf(first, sizeof(first), "%.400s: %s", path, why);
		/* whether it decoded or not, it may leave no block behind */
		if (val_live_blocks(pool) != live && leaked++ == 0)
			snprintf(first_leak, sizeof(first_leak),
				 "%.400s: %llu blocks live after it, %llu before", path,
				 (unsigned long long)val_live_blocks(pool),
				 (unsigned long long)live);
	}
	free(entries);
	ret = val_pool_close(pool);
	if (leaked)
		return val_fail(ctx, "%u of %u golden files leave blocks live; the first: %s",
				leaked, n, first_leak);
	if (failed > 1)
		return val_fail(ctx, "%u of %u golden files fail; the first: %s", failed, n, first);
	if (failed)
		return val_fail(ctx, "%s", first);
	if (ret)
		return val_fail(ctx, "pool_close: %s", val_error(ret, err, sizeof(err)));
	return val_pass(ctx, "%u golden files in %s", n, dir);
}
