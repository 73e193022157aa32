/* SPDX-License-Identifier: MIT */
/*
 * --write-golden DIR: how a codec's author makes its golden frames, from the
 * current code. For each codec: the edge cases of each kind it is fed, then
 * GOLDEN_WRITE_SEEDED seeded values (--seed), each of at most
 * GOLDEN_WRITE_VALUE_BYTES bytes of data, encoded, written as
 * DIR/CODEC-INDEX.golden (golden.h) and read back at once the way the check
 * reads it (a codec whose own frames do not come back is an error, not a
 * golden file).
 *
 * Golden data is kept, not replaced: a file whose frame, buffers and value
 * are already in DIR for the codec is not written again, and new files take
 * the indexes after the highest there. So after a deliberate change of
 * format, the old files stay (old data must still decode) and the new ones
 * join them. A file over GOLDEN_WRITE_MAX (64 KiB) is left out, said why.
 *
 * Codec code runs in a child, as everywhere in the kit: a codec that crashes
 * while writing is reported with its signal.
 */
#include "golden.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

struct existing {
	unsigned char **bytes;
	size_t *len;
	uint32_t n;
	uint32_t next_index;
};

static void existing_free(struct existing *e)
{
	for (uint32_t i = 0; i < e->n; i++)
		free(e->bytes[i]);
	free(e->bytes);
	free(e->len);
	memset(e, 0, sizeof(*e));
}

/* The codec's golden files already in dir, to keep and not write twice. 0 or -errno. */
static int existing_load(const char *dir, const char *codec, struct existing *e)
{
	struct golden_entry *entries;
	char why[512];
	uint32_t n;
	int ret = golden_list(dir, codec, &entries, &n, why, sizeof(why));

	memset(e, 0, sizeof(*e));
	if (ret) {
		fprintf(stderr, "shmrig-validate: --write-golden: %s\n", why);
		return ret;
	}
	e->bytes = calloc(n ? n : 1, sizeof(*e->bytes));
	e->len = calloc(n ? n : 1, sizeof(*e->len));
	if (!e->bytes || !e->len) {
		free(entries);
		existing_free(e);
		fprintf(stderr, "shmrig-validate: out of memory\n");
		return -ENOMEM;
	}
	for (uint32_t i = 0; i < n; i++) {
		char path[4096 + 256];

		if (entries[i].index >= e->next_index)
			e->next_index = entries[i].index + 1;
		snprintf(path, sizeof(path), "%s/%s", dir, entries[i].name);
		/* one that cannot be read is compared with nothing: it keeps its index */
		if (golden_read_file(path, &e->bytes[e->n], &e->len[e->n], why, sizeof(why)) == 0)
			e->n++;
	}
	free(entries);
	return 0;
}

static bool existing_has(const struct existing *e, const unsigned char *bytes, size_t len)
{
	for (uint32_t i = 0; i < e->n; i++)
		if (golden_same(e->bytes[i], e->len[i], bytes, len))
			return true;
	return false;
}

/* Write bytes to dir/CODEC-INDEX.golden at the first free index from e->next_index. */
static int write_new(const char *dir, const char *codec, struct existing *e,
		     const unsigned char *bytes, size_t len, char *path, size_t path_len)
{
	for (;;) {
		size_t done = 0;
		int fd;

		snprintf(path, path_len, "%s/%s-%03u%s", dir, codec, e->next_index++,
			 GOLDEN_SUFFIX);
		fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
		if (fd < 0 && errno == EEXIST)
			continue; /* a name we could not read: never overwritten */
		if (fd < 0)
			return -errno;
		while (done < len) {
			ssize_t n = write(fd, bytes + done, len - done);

			if (n < 0 && errno == EINTR)
				continue;
			if (n <= 0) {
				int ret = n < 0 ? -errno : -EIO;

				close(fd);
				unlink(path);
				return ret;
			}
			done += (size_t)n;
		}
		if (close(fd)) {
			int ret = -errno;

			unlink(path);
			return ret;
		}
		return 0;
	}
}

struct tally {
	uint32_t written, unchanged, left_out, declined, errors;
};

/* One value: encode, build its golden file, read it back, write it if new. */
static void write_value(struct val_ctx *ctx, shmrig_pool *pool, uint64_t self, const char *dir,
			struct existing *e, const struct val_value *v, struct tally *t)
{
	const struct val_target *target = ctx->target;
	const struct shmrig_plugin *info = target->subject->info;
	struct golden_meta m = {
		.plugin = info->name,
		.plugin_version = info->version,
		.codec = target->codec->name,
		.kind_name = v->kind->kind == SHMRIG_KIND_USER ? v->kind->user_type :
								 shmrig_kind_name(v->kind->kind),
		.kind = v->kind->kind,
		.gen_index = v->gen_index,
		.seed = v->seed,
		.max_bytes = GOLDEN_WRITE_VALUE_BYTES,
	};
	char name[96], why[VAL_MSG_MAX / 2], path[4096 + 256];
	unsigned char *bytes, *copy;
	struct golden g;
	size_t frame_len, len;
	void *frame;
	int ret;

	val_value_name(v, name, sizeof(name));
	if (val_encode(ctx, pool, v, &frame, &frame_len)) {
		fprintf(stderr, "shmrig-validate: --write-golden [%s]: %s\n", m.codec,
			ctx->message);
		t->errors++;
		return;
	}
	ret = golden_build(&m, &v->value, pool, frame, frame_len, &bytes, &len, why, sizeof(why));
	val_frame_drop(pool, frame, frame_len);
	if (ret) {
		fprintf(stderr, "shmrig-validate: --write-golden [%s]: %s: %s\n", m.codec, name,
			why);
		t->errors++;
		return;
	}
	if (len > GOLDEN_WRITE_MAX) {
		if (!ctx->opt->quiet)
			printf("  left out %s: its golden file would be %zu bytes (at most %zu)\n",
			       name, len, GOLDEN_WRITE_MAX);
		t->left_out++;
		free(bytes);
		return;
	}
	/* read back as the check reads it: a frame of ours that does not come back is no golden */
	copy = malloc(len);
	if (!copy) {
		fprintf(stderr, "shmrig-validate: out of memory\n");
		t->errors++;
		free(bytes);
		return;
	}
	memcpy(copy, bytes, len);
	ret = golden_parse(copy, len, &g, why, sizeof(why));
	if (!ret)
		ret = golden_verify(target, pool, self, &g, why, sizeof(why));
	golden_free(&g);
	if (ret) {
		fprintf(stderr,
			"shmrig-validate: --write-golden [%s]: %s does not come back from its "
			"golden file: %s\n",
			m.codec, name, why);
		t->errors++;
	} else if (existing_has(e, bytes, len)) {
		t->unchanged++;
	} else if ((ret = write_new(dir, m.codec, e, bytes, len, path, sizeof(path)))) {
		fprintf(stderr, "shmrig-validate: --write-golden: %s: %s\n", path, strerror(-ret));
		t->errors++;
	} else {
		if (!ctx->opt->quiet)
			printf("  wrote %s (%s, %zu bytes)\n", path, name, len);
		t->written++;
	}
	free(bytes);
}

static int write_codec(struct val_subject *s, uint32_t c, const char *dir,
		       const struct val_options *opt)
{
	struct val_ctx ctx = { .opt = opt, .check = "--write-golden", .report_fd = -1 };
	const struct val_codec *codec = &s->codecs[c];
	struct tally t = { 0 };
	struct existing e;
	struct val_target target;
	shmrig_pool *pool = NULL;
	uint32_t total = GOLDEN_WRITE_SEEDED;
	char err[VAL_MSG_MAX];
	uint64_t self;
	int ret;

	if (val_target_open(s, c, &target, err, sizeof(err))) {
		fprintf(stderr, "shmrig-validate: --write-golden [%s]: %s\n", codec->name, err);
		return VAL_EXIT_FAIL;
	}
	ctx.target = &target;
	if (existing_load(dir, codec->name, &e)) {
		val_target_close(&target);
		return VAL_EXIT_USAGE;
	}
	ret = val_pool_open(&ctx, 0, 0, &pool);
	if (!ret)
		ret = shmrig_pool_peer(pool, getpid(), &self);
	if (ret) {
		fprintf(stderr, "shmrig-validate: --write-golden [%s]: a pool: %s\n", codec->name,
			val_error(ret, err, sizeof(err)));
		(void)!val_pool_close(pool); /* failed already */
		existing_free(&e);
		val_target_close(&target);
		return VAL_EXIT_FAIL;
	}
	for (uint32_t k = 0; k < codec->nkinds; k++)
		total += codec->gens[k]->edge_cases;
	if (!codec->nkinds)
		total = 0;
	for (uint32_t index = 0; index < total; index++) {
		struct val_value v;

		if (val_value_make(&target, opt->seed, index, GOLDEN_WRITE_VALUE_BYTES, &v, err,
				   sizeof(err))) {
			fprintf(stderr, "shmrig-validate: --write-golden [%s]: %s\n", codec->name,
				err);
			t.errors++;
			continue;
		}
		if (v.accepted)
			write_value(&ctx, pool, self, dir, &e, &v, &t);
		else
			t.declined++;
		val_value_free(&v);
	}
	ret = val_pool_close(pool);
	if (ret) {
		fprintf(stderr, "shmrig-validate: --write-golden [%s]: pool_close: %s\n",
			codec->name, val_error(ret, err, sizeof(err)));
		t.errors++;
	}
	if (!codec->nkinds)
		fprintf(stderr,
			"shmrig-validate: --write-golden [%s]: no kind the kit can make "
			"values of\n",
			codec->name);
	printf("%s: %u golden files written, %u unchanged, %u left out (over %zu bytes), "
	       "%u declined by can_encode, %u errors (%s)\n",
	       codec->name, t.written, t.unchanged, t.left_out, GOLDEN_WRITE_MAX, t.declined,
	       t.errors, dir);
	existing_free(&e);
	val_target_close(&target);
	return t.errors || !codec->nkinds ? VAL_EXIT_FAIL : VAL_EXIT_OK;
}

static int write_child(const char *plugin, const char *const *codecs, int ncodecs, const char *dir,
		       const struct val_options *opt)
{
	struct val_subject *s;
	uint32_t chosen[VAL_MAX_CODECS], n = 0;
	char err[VAL_MSG_MAX];
	int status = VAL_EXIT_OK;

	if (val_subject_open(plugin, &s, err, sizeof(err))) {
		fprintf(stderr, "shmrig-validate: %s\n", err);
		return VAL_EXIT_FAIL;
	}
	for (int i = 0; i < ncodecs; i++) {
		int c = val_subject_find(s, codecs[i]);

		if (c < 0) {
			fprintf(stderr, "shmrig-validate: no codec '%s' in %s\n", codecs[i],
				s->label);
			val_subject_close(s);
			return VAL_EXIT_USAGE;
		}
		chosen[n++] = (uint32_t)c;
	}
	if (!ncodecs)
		for (uint32_t c = 0; c < s->ncodecs; c++)
			chosen[n++] = c;
	if (!opt->quiet)
		printf("shmrig-validate: writing golden frames of %s into %s\n", s->label, dir);
	for (uint32_t i = 0; i < n; i++) {
		int ret = write_codec(s, chosen[i], dir, opt);

		if (ret > status)
			status = ret;
		fflush(stdout);
	}
	val_subject_close(s);
	return status;
}

/* mkdir -p: 0, or -errno with why. */
static int make_dir(const char *dir, char *why, size_t why_len)
{
	char path[4096];
	size_t len = strlen(dir);

	if (!len || len >= sizeof(path)) {
		snprintf(why, why_len, "not a usable directory name");
		return -EINVAL;
	}
	memcpy(path, dir, len + 1);
	for (char *p = path + 1;; p++) {
		if (*p != '/' && *p != '\0')
			continue;
		{
			char c = *p;

			*p = '\0';
			if (mkdir(path, 0777) && errno != EEXIST) {
				int err = errno;

				snprintf(why, why_len, "cannot create %.300s: %s", path,
					 strerror(err));
				return -err;
			}
			*p = c;
		}
		if (!*p)
			break;
	}
	if (access(dir, W_OK | X_OK)) {
		int err = errno;

		snprintf(why, why_len, "not a writable directory: %s", strerror(err));
		return -err;
	}
	return 0;
}

int val_golden_write(const char *plugin, const char *const *codecs, int ncodecs, const char *dir,
		     const struct val_options *opt)
{
	char why[512];
	int status;
	pid_t pid;

	if (make_dir(dir, why, sizeof(why))) {
		fprintf(stderr, "shmrig-validate: --write-golden %s: %s\n", dir, why);
		return VAL_EXIT_USAGE;
	}
	fflush(NULL); /* nothing buffered here is written twice */
	pid = fork();
	if (pid < 0) {
		fprintf(stderr, "shmrig-validate: fork: %s\n", strerror(errno));
		return VAL_EXIT_FAIL;
	}
	if (pid == 0) {
		status = write_child(plugin, codecs, ncodecs, dir, opt);
		fflush(NULL);
		_exit(status);
	}
	while (waitpid(pid, &status, 0) < 0)
		if (errno != EINTR) {
			fprintf(stderr, "shmrig-validate: waitpid: %s\n", strerror(errno));
			return VAL_EXIT_FAIL;
		}
	val_sweep(opt->prefix);
	if (WIFSIGNALED(status)) {
		fprintf(stderr,
			"shmrig-validate: --write-golden: killed by SIG%s (%s) writing %s\n",
			sigabbrev_np(WTERMSIG(status)) ? sigabbrev_np(WTERMSIG(status)) : "?",
			strsignal(WTERMSIG(status)), dir);
		return VAL_EXIT_FAIL;
	}
	return WEXITSTATUS(status);
}
