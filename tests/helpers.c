/* SPDX-License-Identifier: MIT */
#include "helpers.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <shmrig/channel.h>
#include <shmrig/frame.h>
#include <shmrig/pool.h>
#include <shmrig/segment.h>
#include <shmrig/value.h>

static unsigned char fill_byte(size_t i, unsigned seed)
{
	return (unsigned char)(i * 131 + seed + (i >> 12));
}

void th_fill(unsigned char *p, size_t len, unsigned seed)
{
	for (size_t i = 0; i < len; i++)
		p[i] = fill_byte(i, seed);
}

size_t th_first_mismatch(const unsigned char *p, size_t len, unsigned seed)
{
	for (size_t i = 0; i < len; i++)
		if (p[i] != fill_byte(i, seed))
			return i;
	return len;
}

int th_count_fds(void)
{
	DIR *dir = opendir("/proc/self/fd");
	struct dirent *ent;
	int count = 0;

	if (!dir)
		return -1;
	while ((ent = readdir(dir)))
		if (ent->d_name[0] != '.')
			count++;
	closedir(dir);
	return count - 1;
}

static void count_one(void *arg, const char *name)
{
	(void)name;
	(*(int *)arg)++;
}

int th_count_segments(const char *prefix)
{
	int count = 0;

	if (shmrig_segment_list(prefix, count_one, &count) < 0)
		return -1;
	return count;
}

struct count_of {
	const char *prefix;
	pid_t pid;
	int count;
};

static void count_of_one(void *arg, const char *name)
{
	struct count_of *ctx = arg;
	pid_t pid;

	if (shmrig_segment_parse_name(ctx->prefix, name, &pid, NULL) == 0 && pid == ctx->pid)
		ctx->count++;
}

int th_count_segments_of(const char *prefix, pid_t pid)
{
	struct count_of ctx = { prefix, pid, 0 };

	if (shmrig_segment_list(prefix, count_of_one, &ctx) < 0)
		return -1;
	return ctx.count;
}

/*
 * A test binary run by hand (no $SHMRIG_PREFIX) must not create segments with
 * the library's default prefix, which its own leak counts would never see and
 * a crash would leave behind: before main, the prefix becomes t_<pid>, for the
 * library and th_prefix() alike, and forked children inherit it.
 */
__attribute__((constructor)) static void th_default_prefix(void)
{
	const char *env = getenv("SHMRIG_PREFIX");
	char buf[32];

	if (env && *env)
		return;
	snprintf(buf, sizeof(buf), "t_%d", (int)getpid());
	setenv("SHMRIG_PREFIX", buf, 1);
}

const char *th_prefix(void)
{
	return getenv("SHMRIG_PREFIX");
}

static int decode_status(int status)
{
	if (WIFEXITED(status))
		return WEXITSTATUS(status);
	if (WIFSIGNALED(status))
		return 128 + WTERMSIG(status);
	return -1;
}

static void kill_and_reap(pid_t pid)
{
	int status;

	kill(-pid, SIGKILL);
	kill(pid, SIGKILL);
	waitpid(pid, &status, 0);
}

int th_wait_child(pid_t pid, unsigned timeout_ms)
{
	int pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
	int status;

	if (pidfd >= 0) {
		struct pollfd pfd = { .fd = pidfd, .events = POLLIN };
		int ready;

		do
			ready = poll(&pfd, 1, (int)timeout_ms);
		while (ready < 0 && errno == EINTR);
		close(pidfd);
		if (ready == 0) {
			kill_and_reap(pid);
			return -1;
		}
	} else {
		/* No pidfd (valgrind 3.19 lacks pidfd_open): poll the exit status
		 * every millisecond up to the deadline, so a hung child still ends. */
		struct timespec tick = { 0, 1000000 };

		for (unsigned waited = 0;; waited++) {
			pid_t done = waitpid(pid, &status, WNOHANG);

			if (done == pid)
				return decode_status(status);
			if (done < 0 && errno != EINTR)
				return -1;
			if (waited >= timeout_ms) {
				kill_and_reap(pid);
				return -1;
			}
			nanosleep(&tick, NULL);
		}
	}
	while (waitpid(pid, &status, 0) < 0)
		if (errno != EINTR)
			return -1;
	return decode_status(status);
}

int th_run_child(int (*fn)(void *arg), void *arg, unsigned timeout_ms)
{
	pid_t pid;

	fflush(NULL);
	pid = fork();
	if (pid < 0)
		return -1;
	if (pid == 0) {
		setpgid(0, 0);
		_exit(fn(arg) & 0xff);
	}
	setpgid(pid, pid);
	return th_wait_child(pid, timeout_ms);
}

int th_write_all(int fd, const void *buf, size_t len)
{
	const char *p = buf;

	while (len) {
		ssize_t n = write(fd, p, len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

int th_read_all(int fd, void *buf, size_t len)
{
	char *p = buf;

	while (len) {
		ssize_t n = read(fd, p, len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

uint64_t th_live_blocks(struct shmrig_pool *pool)
{
	struct shmrig_pool_stats st = SHMRIG_SIZED(struct shmrig_pool_stats);

	assert_int_equal(shmrig_pool_stats(pool, &st), 0);
	return st.live_blocks;
}

struct shmrig_pool *th_open_pool(size_t arena_size, size_t max_bytes)
{
	struct shmrig_pool_opts opts = {
		.size = sizeof(struct shmrig_pool_opts),
		.arena_size = arena_size,
		.max_bytes = max_bytes,
		.backing = SHMRIG_BACKING_PLAIN,
		.flags = SHMRIG_POOL_QUIET,
	};
	shmrig_pool *pool = NULL;

	return shmrig_pool_open(&opts, &pool) ? NULL : pool;
}

int th_sweep_leftovers(void **state)
{
	(void)state;
	return shmrig_segment_sweep(th_prefix()) < 0;
}

static void unlink_one(void *arg, const char *name)
{
	(void)arg;
	fprintf(stderr, "# removing leftover segment %s\n", name);
	/* best effort: one that stays is counted by the next case's leak check */
	(void)!shmrig_segment_unlink_name(th_prefix(), name);
}

int th_remove_leftovers(void **state)
{
	(void)state;
	return shmrig_segment_list(th_prefix(), unlink_one, NULL) < 0;
}

struct th_peer th_peer_spawn(int (*fn)(int in, int out, void *arg), void *arg)
{
	int down[2], up[2];
	struct th_peer p;

	assert_int_equal(pipe2(down, O_CLOEXEC), 0);
	assert_int_equal(pipe2(up, O_CLOEXEC), 0);
	fflush(NULL);
	p.pid = fork();
	assert_true(p.pid >= 0);
	if (p.pid == 0) {
		setpgid(0, 0);
		for (int fd = 3; fd < 1024; fd++)
			if (fd != down[0] && fd != up[1])
				close(fd);
		_exit(fn(down[0], up[1], arg));
	}
	setpgid(p.pid, p.pid);
	close(down[0]);
	close(up[1]);
	p.to_child = down[1];
	p.from_child = up[0];
	return p;
}

int th_peer_finish(struct th_peer *peer, unsigned timeout_ms)
{
	if (peer->to_child >= 0)
		close(peer->to_child);
	peer->to_child = -1;
	close(peer->from_child);
	return th_wait_child(peer->pid, timeout_ms);
}

uint32_t th_pidns(void)
{
	struct stat st;

	assert_int_equal(stat("/proc/self/ns/pid", &st), 0);
	return (uint32_t)st.st_ino;
}

uint32_t th_name_pidns(const char *name)
{
	char digits[9];

	memcpy(digits, name + strlen(name) - 16, 8);
	digits[8] = '\0';
	return (uint32_t)strtoul(digits, NULL, 16);
}

void *th_frame_build(uint16_t codec_id, const struct shmrig_ref *refs, uint32_t nbuffers,
		     const void *meta, uint32_t meta_len, size_t *len)
{
	struct shmrig_frame_header h = {
		.magic = SHMRIG_FRAME_MAGIC,
		.version = SHMRIG_FRAME_VERSION,
		.codec_id = codec_id,
		.nbuffers = nbuffers,
		.meta_len = meta_len,
	};
	size_t refs_size = (size_t)nbuffers * sizeof(struct shmrig_ref);
	size_t size = sizeof(h) + refs_size + meta_len;
	char *frame = aligned_alloc(8, (size / 8 + 1) * 8);

	assert_non_null(frame);
	memcpy(frame, &h, sizeof(h));
	if (nbuffers)
		memcpy(frame + sizeof(h), refs, refs_size);
	if (meta_len)
		memcpy(frame + sizeof(h) + refs_size, meta, meta_len);
	*len = size;
	return frame;
}

void *th_frame_copy(const void *frame, size_t len)
{
	void *copy = aligned_alloc(8, (len / 8 + 1) * 8);

	assert_non_null(copy);
	memcpy(copy, frame, len);
	return copy;
}

struct shmrig_ref th_frame_ref(const void *frame, uint32_t i)
{
	struct shmrig_ref ref;

	memcpy(&ref, (const char *)frame + sizeof(struct shmrig_frame_header) + i * sizeof(ref),
	       sizeof(ref));
	return ref;
}

void th_frame_set_ref(void *frame, uint32_t i, const struct shmrig_ref *ref)
{
	memcpy((char *)frame + sizeof(struct shmrig_frame_header) + i * sizeof(*ref), ref,
	       sizeof(*ref));
}

const char *th_ucx_skip_reason(void)
{
	static char reason[512];
	struct shmrig_channel_opts opts = { .size = sizeof(opts), .backend = "ucx" };
	shmrig_channel_pair *pair;
	int ret;

	ret = shmrig_channel_pair_create(&opts, &pair);
	if (ret == 0) {
		shmrig_channel_pair_free(pair);
		return NULL;
	}
	snprintf(reason, sizeof(reason), "no ucx backend: %s", shmrig_last_error());
	return reason;
}

/* ---- values ---- */

static void assert_array_equal(const struct shmrig_array *a, const struct shmrig_array *b)
{
	uint64_t nbytes;

	assert_int_equal(a->dtype, b->dtype);
	assert_int_equal(a->ndim, b->ndim);
	assert_int_equal(a->order, b->order);
	for (uint32_t d = 0; d < a->ndim; d++)
		assert_int_equal(a->shape[d], b->shape[d]);
	assert_int_equal(shmrig_array_nbytes(a, &nbytes), 0);
	if (nbytes)
		assert_memory_equal(a->data, b->data, nbytes);
}

static void assert_named_equal(const struct shmrig_named_array *a,
			       const struct shmrig_named_array *b, uint32_t n)
{
	for (uint32_t i = 0; i < n; i++) {
		assert_string_equal(a[i].name, b[i].name);
		assert_array_equal(&a[i].array, &b[i].array);
	}
}

void th_assert_value_equal(const struct shmrig_value *a, const struct shmrig_value *b)
{
	assert_int_equal(a->kind, b->kind);
	switch (a->kind) {
	case SHMRIG_KIND_BYTES:
		assert_int_equal(a->bytes.len, b->bytes.len);
		if (a->bytes.len)
			assert_memory_equal(a->bytes.data, b->bytes.data, a->bytes.len);
		break;
	case SHMRIG_KIND_NDARRAY:
		assert_array_equal(&a->array, &b->array);
		break;
	case SHMRIG_KIND_TABLE:
		assert_int_equal(a->table.nrows, b->table.nrows);
		assert_int_equal(a->table.ncolumns, b->table.ncolumns);
		assert_named_equal(a->table.columns, b->table.columns, a->table.ncolumns);
		break;
	case SHMRIG_KIND_DATASET:
		assert_int_equal(a->dataset.ngroups, b->dataset.ngroups);
		for (uint32_t g = 0; g < a->dataset.ngroups; g++) {
			assert_string_equal(a->dataset.groups[g].name, b->dataset.groups[g].name);
			assert_int_equal(a->dataset.groups[g].nvariables,
					 b->dataset.groups[g].nvariables);
			assert_named_equal(a->dataset.groups[g].variables,
					   b->dataset.groups[g].variables,
					   a->dataset.groups[g].nvariables);
		}
		break;
	default:
		fail();
	}
}
