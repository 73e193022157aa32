/* SPDX-License-Identifier: MIT */
/*
 * Frames to a remote "ucx" end, flat (the payload copied once into the
 * message) against bare (each buffer sent straight from its block, received
 * straight into a block of the peer's pool): a measurement, not a test (it
 * asserts no speed; meson builds it, nobody runs it but by hand).
 *
 *   UCX_TLS=tcp,self SHMRIG_PREFIX=bz build-h/tests/bench_ucx_frames [TRIALS]
 *
 * Method: one process listens on 127.0.0.1, a forked child (forked before
 * any UCX object exists) connects twice: the first connection's sending end
 * is made with SHMRIG_UCX_FRAMES=flat, the second with =bare, so both ways
 * run in one pair of processes. Per payload size (64 B, 64 KiB, 1 MiB,
 * 16 MiB, 64 MiB) and trial, flat and bare alternate (which goes first
 * alternates too): a trial sends N frames of one buffer of that size (blocks
 * allocated and handed as encode leaves them; the content is not rewritten,
 * so encode's copy is left out of both) and ends when the peer, which
 * receives each frame into its pool and discards it, answers a byte after
 * the N-th. Reported: the median time per frame of each way over the trials,
 * its throughput, and flat/bare (above 1: bare is faster).
 */
#include "helpers.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <shmrig/channel.h>
#include <shmrig/frame.h>
#include <shmrig/pool.h>

#define FINGERPRINT 0xbe4c4f4a5e5e1234ull
#define TIMEOUT_MS 60000
#define MAX_TRIALS 64

static const struct shmrig_channel_opts ucx_opts = { .size = sizeof(struct shmrig_channel_opts),
						     .backend = "ucx" };

/* the frames: buffers of `size` bytes each */
static const struct {
	uint32_t buffers;
	size_t size;
} shapes[] = {
	{ 1, 64 },
	{ 1, 4 << 10 },
	{ 1, 16 << 10 },
	{ 1, 64 << 10 },
	{ 1, 256 << 10 },
	{ 1, 1 << 20 },
	{ 1, 16 << 20 },
	{ 1, 64 << 20 },
	/* many small buffers: copied behind the frame by bare, received one by one */
	{ 256, 256 },
	{ 64, 16 << 10 },
};

/* frames per trial: about 64 MiB of payload, at least 3, at most 2000 */
static unsigned frames_for(size_t size)
{
	size_t n = (64u << 20) / size;

	return n < 3 ? 3 : n > 2000 ? 2000 : (unsigned)n;
}

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void die(const char *what, int ret)
{
	fprintf(stderr, "bench_ucx_frames: %s: %d %s\n", what, ret, shmrig_last_error());
	exit(1);
}

/* ---- the peer: receives frames into its pool, discards them, acks each trial ---- */

static int peer(int address_fd)
{
	char address[128] = { 0 };
	shmrig_pool *pool = th_open_pool(8u << 20, 512u << 20);
	shmrig_channel *ch[2];
	int ret;

	if (!pool || th_read_all(address_fd, address, sizeof(address)))
		return 2;
	for (int i = 0; i < 2; i++) {
		ret = shmrig_channel_connect(&ucx_opts, address, pool, FINGERPRINT, TIMEOUT_MS,
					     &ch[i]);
		if (ret)
			die("connect", ret);
	}
	for (;;) {
		uint32_t cmd[2]; /* channel, frames */
		void *msg;
		size_t len;

		ret = shmrig_channel_recv(ch[0], &msg, &len, TIMEOUT_MS);
		if (ret)
			die("recv (command)", ret);
		memcpy(cmd, msg, sizeof(cmd));
		free(msg);
		if (cmd[0] > 1)
			break;
		for (uint32_t i = 0; i < cmd[1]; i++) {
			ret = shmrig_channel_recv(ch[cmd[0]], &msg, &len, TIMEOUT_MS);
			if (ret)
				die("recv (frame)", ret);
			ret = shmrig_frame_discard(pool, msg, len);
			if (ret)
				die("discard", ret);
			free(msg);
		}
		ret = shmrig_channel_send(ch[cmd[0]], "k", 1, TIMEOUT_MS);
		if (ret)
			die("ack", ret);
	}
	shmrig_channel_close(ch[0]);
	shmrig_channel_close(ch[1]);
	return shmrig_pool_close(pool) ? 3 : 0;
}

/* ---- the sender ---- */

/* A frame of n buffers of `size` bytes, handed to ourselves as encode leaves them. */
static void *make_frame(shmrig_pool *pool, uint64_t self, uint32_t n, size_t size, size_t *len)
{
	static struct shmrig_ref refs[256];
	void *data, *frame;

	for (uint32_t i = 0; i < n; i++) {
		int ret = shmrig_pool_alloc(pool, size, 0, 0, &refs[i], &data);

		if (ret)
			die("pool_alloc", ret);
		ret = shmrig_pool_transfer_peer(pool, &refs[i], self);
		if (ret)
			die("transfer_peer", ret);
	}
	frame = th_frame_build(1, refs, n, NULL, 0, len);
	if (!frame)
		die("frame_build", -ENOMEM);
	return frame;
}

/* One trial: seconds per frame. */
static double trial(shmrig_channel *control, shmrig_channel *ch, uint32_t which, shmrig_pool *pool,
		    uint64_t self, uint32_t nbuffers, size_t size, unsigned n)
{
	uint32_t cmd[2] = { which, n };
	double t0;
	void *msg;
	size_t len;
	int ret = shmrig_channel_send(control, cmd, sizeof(cmd), TIMEOUT_MS);

	if (ret)
		die("send (command)", ret);
	t0 = now_s();
	for (unsigned i = 0; i < n; i++) {
		void *frame = make_frame(pool, self, nbuffers, size, &len);

		ret = shmrig_channel_send_frame(ch, frame, len, -1);
		if (ret)
			die("send_frame", ret);
		free(frame);
	}
	ret = shmrig_channel_recv(ch, &msg, &len, TIMEOUT_MS);
	if (ret)
		die("recv (ack)", ret);
	free(msg);
	return (now_s() - t0) / n;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

static double median(double *v, unsigned n)
{
	qsort(v, n, sizeof(*v), cmp_double);
	return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

int main(int argc, char **argv)
{
	unsigned trials = argc > 1 ? (unsigned)atoi(argv[1]) : 7;
	char address[128] = { 0 };
	shmrig_channel_listener *l;
	shmrig_channel *ch[2];
	shmrig_pool *pool;
	uint64_t self;
	int fds[2], status, ret;
	pid_t pid;

	if (trials < 1 || trials > MAX_TRIALS)
		trials = 7;
	if (th_ucx_skip_reason()) {
		printf("skipped: %s\n", th_ucx_skip_reason());
		return 77;
	}
	if (pipe(fds))
		return 1;
	pid = fork();
	if (pid == 0) {
		close(fds[1]);
		_exit(peer(fds[0]));
	}
	close(fds[0]);
	pool = th_open_pool(8u << 20, 512u << 20);
	if (!pool)
		return 1;
	ret = shmrig_pool_peer(pool, getpid(), &self);
	if (ret)
		die("pool_peer", ret);
	ret = shmrig_channel_listen(&ucx_opts, "127.0.0.1:0", &l);
	if (!ret)
		ret = shmrig_channel_listener_address(l, address, sizeof(address));
	if (ret)
		die("listen", ret);
	if (th_write_all(fds[1], address, sizeof(address)))
		return 1;
	/* the mode is read when the end is made: flat first, bare second */
	for (int i = 0; i < 2; i++) {
		setenv("SHMRIG_UCX_FRAMES", i ? "bare" : "flat", 1);
		ret = shmrig_channel_accept(l, pool, FINGERPRINT, TIMEOUT_MS, &ch[i]);
		if (ret)
			die("accept", ret);
	}
	printf("%s, UCX_TLS=%s, %u trials, flat and bare alternating; medians\n",
	       shmrig_channel_notes(ch[0]), getenv("UCX_TLS") ? getenv("UCX_TLS") : "(all)",
	       trials);
	printf("%8s %10s %7s %12s %12s %10s %10s %10s\n", "buffers", "each", "frames", "flat us",
	       "bare us", "flat MB/s", "bare MB/s", "flat/bare");
	for (size_t s = 0; s < sizeof(shapes) / sizeof(shapes[0]); s++) {
		double flat[MAX_TRIALS], bare[MAX_TRIALS], mf, mb;
		uint32_t nb = shapes[s].buffers;
		size_t size = shapes[s].size, payload = nb * size;
		unsigned n = frames_for(payload);

		/* one round of each first, untimed: segments made, pages touched */
		(void)trial(ch[0], ch[0], 0, pool, self, nb, size, 1);
		(void)trial(ch[0], ch[1], 1, pool, self, nb, size, 1);
		for (unsigned t = 0; t < trials; t++) {
			if (t % 2) {
				bare[t] = trial(ch[0], ch[1], 1, pool, self, nb, size, n);
				flat[t] = trial(ch[0], ch[0], 0, pool, self, nb, size, n);
			} else {
				flat[t] = trial(ch[0], ch[0], 0, pool, self, nb, size, n);
				bare[t] = trial(ch[0], ch[1], 1, pool, self, nb, size, n);
			}
		}
		mf = median(flat, trials);
		mb = median(bare, trials);
		printf("%8u %10zu %7u %12.1f %12.1f %10.0f %10.0f %10.2f\n", nb, size, n, mf * 1e6,
		       mb * 1e6, payload / mf / 1e6, payload / mb / 1e6, mf / mb);
		fflush(stdout);
	}
	{
		uint32_t stop[2] = { 2, 0 };

		ret = shmrig_channel_send(ch[0], stop, sizeof(stop), TIMEOUT_MS);
		if (ret)
			die("send (stop)", ret);
	}
	shmrig_channel_close(ch[0]);
	shmrig_channel_close(ch[1]);
	shmrig_channel_listener_close(l);
	if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status) || WEXITSTATUS(status)) {
		fprintf(stderr, "bench_ucx_frames: the peer failed (status 0x%x)\n", status);
		return 1;
	}
	if (th_live_blocks(pool)) {
		fprintf(stderr, "bench_ucx_frames: blocks left live\n");
		return 1;
	}
	return shmrig_pool_close(pool) ? 1 : 0;
}
