/* SPDX-License-Identifier: MIT */
/*
 * shmrig's channel over its "ucx" backend, beside UCX's own ucx_perftest in
 * the same run (issue 17).
 *
 *   channel/ucx/<tls>/rtt/<B>   a round trip of B bytes (64 B to 64 MiB):
 *                               shmrig_channel_send() of B bytes to an echo
 *                               peer, shmrig_channel_recv() of its answer
 *   channel/ucx/<tls>/bw/<B>    bandwidth: the caller sends B-byte messages
 *                               one after another (each send returns once UCX
 *                               has sent it), a peer takes and drops them;
 *                               after each batch the caller asks for an
 *                               acknowledgement and waits for it, so the time
 *                               covers bytes delivered (bytes = B a message)
 *   twin/ucx_perftest/<tls>/rtt/<B>  ucx_perftest -t stream_lat, the same
 *                               sizes and transports: UCX's own figure for a
 *                               UCP stream round trip
 *   twin/ucx_perftest/<tls>/bw/<B>   ucx_perftest -t stream_bw
 *
 * <tls>:
 *   tcp    UCX_TLS=tcp,self. The ends are made by shmrig_channel_listen() on
 *          127.0.0.1 (port 0) in the peer and shmrig_channel_connect() in the
 *          caller: the way ends on two hosts meet (UCX's sockaddr connection
 *          manager), here over loopback.
 *   posix  UCX_TLS=posix,self: UCX's shared-memory transport. A forked pair
 *          (shmrig_channel_pair_create() before fork, shmrig_channel_open() in
 *          each process): listen/connect needs tcp (channel.h).
 * UCX_TLS (and UCX_POSIX_DIR, below) are set in this process's environment
 * for the run only (the backend reads UCX's configuration from it when an end
 * is made; the forked peer inherits it) and restored after.
 *
 * Why stream_lat and stream_bw for the twins: the "ucx" backend moves its
 * messages with UCP's stream API (ucp_stream_send_nbx, a WAITALL
 * ucp_stream_recv_nbx), so UCX's stream tests are its own figure for the same
 * calls over the same transports; tag_lat would measure tag matching, which
 * the channel does not use. ucx_perftest exchanges worker addresses over its
 * own socket (-p), so both transports run between two processes of one host.
 *
 * Method, as bench_channel.c: the caller on the topology's CPU 0, the peer on
 * CPU 1 (ucx_perftest: -c with the same two CPUs, client on CPU 0, server on
 * CPU 1); manual wall time per batch; each round trip's time for the counters
 * p50_us and p99_us; one round trip checked byte for byte before timing (the
 * timed ones check the length and both ends of the message). Every wait is
 * bounded (BENCH_PEER_TIMEOUT_MS on the channel, a deadline for
 * ucx_perftest), the peer is reaped every run, and a segment UCX left is an
 * error: each run gives UCX's posix transport a directory of its own
 * (UCX_POSIX_DIR, bench_ucx_dir_check(): bench/suite.h), removed after the run. The 16 MiB and 64 MiB rows run one
 * message a batch: a round trip over loopback TCP takes tens of ms there.
 *
 * ucx_perftest's figures: run once per benchmark run with -f -v (the final
 * line, CSV), a fixed count of iterations for the size (below) after a
 * warm-up. Its latency tests report ONE-WAY latency (each round trip halved):
 * the twin's rtt row is twice its overall mean (the row's time, like ours,
 * is the mean round trip) and its counter median_us twice its median (-R 50:
 * the median of the halved round trips, so exactly the median round trip, to
 * hold against our p50_us); one_way_ns is its own figure. ucx_perftest gives
 * no 99th percentile in the same run, so the twin has no p50_us/p99_us pair
 * (scripts/report's round-trip section wants both). Its
 * bandwidth is in MB/s of 2^20 bytes (UCS_MBYTE): the bw row's time per
 * message is B / (that * 2^20) s, bytes = B a message. ucx_perftest polls
 * UCX without sleeping (-E poll, its default); the channel spins briefly and
 * then sleeps on UCX's event fd (channel_ucx.c), as an application would. A
 * row is skipped, with the reason, when ucx_perftest is missing or exits
 * without a figure (a transport it cannot use): never a made-up figure.
 */
#include "gbench.h"
#include "suite.h"

#include <shmrig/shmrig.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#define FINGERPRINT 0x62656e6368ull /* both ends of a bare channel agree on it */
#define ACK_SIZE 8                  /* the message that asks for an acknowledgement */
#define ADDRESS_MAX 128
#define LABEL_MAX 256
#define OUTPUT_MAX 65536 /* ucx_perftest's output kept (its last bytes) */
#define PERFTEST_DEADLINE_MS 120000
#define PERFTEST_LISTEN_MS 10000 /* the server listens within this, or the run fails */

extern char **environ;

struct ucx_transport {
	const char *name; /* in the row's name */
	const char *tls;  /* UCX_TLS */
	bool listen;      /* ends by listen/connect (else a forked pair) */
};

static const struct ucx_transport transports[] = {
	{ "tcp", "tcp,self", true },
	{ "posix", "posix,self", false },
};
static const int64_t sizes[] = { 64, 4096, 65536, 1 << 20, 16 << 20, 64 << 20 };

/* ---- UCX_TLS for one run ---- */

struct saved_env {
	char *tls, *dir; /* the previous UCX_TLS, UCX_POSIX_DIR (malloc'ed), NULL if unset */
};

static int env_swap(const char *name, const char *value, char **saved)
{
	const char *old = getenv(name);

	*saved = old ? strdup(old) : NULL;
	if (old && !*saved)
		return -ENOMEM;
	return setenv(name, value, 1) ? -errno : 0;
}

static int env_set(struct saved_env *saved, const char *tls, const char *dir)
{
	int ret = env_swap("UCX_TLS", tls, &saved->tls);

	return ret ? ret : env_swap("UCX_POSIX_DIR", dir, &saved->dir);
}

static void env_put_back(const char *name, char **saved)
{
	if (*saved)
		setenv(name, *saved, 1);
	else
		unsetenv(name);
	free(*saved);
	*saved = NULL;
}

static void env_restore(struct saved_env *saved)
{
	env_put_back("UCX_TLS", &saved->tls);
	env_put_back("UCX_POSIX_DIR", &saved->dir);
}

/* ---- the channel rows ---- */

enum peer_mode {
	PEER_ECHO, /* send every message back */
	PEER_SINK, /* drop messages; answer an ACK_SIZE message with one */
};

/* Stop the benchmark with "<what>: <shmrig's words>" (err < 0) or "<what>". */
static void fail(gbench_state *st, const char *what, int err)
{
	char message[512];

	if (err < 0)
		snprintf(message, sizeof(message), "failed: %s: %s (%s)", what,
			 shmrig_strerror(err), shmrig_last_error());
	else
		snprintf(message, sizeof(message), "failed: %s", what);
	gbench_skip(st, message);
}

/*
 * Echo or sink until the caller's empty message: 0, else 1 (the caller
 * closed or died first). The peer closes first, on that message: the end
 * that closes second waits for an acknowledgement of its goodbye that nobody
 * sends (channel_ucx.c's say_goodbye: the first closer has stopped reading),
 * up to the open timeout over posix, where no endpoint error tells it
 * sooner; the caller, closing second, learns at once (tcp) or from our pid
 * (posix, within 0.1 s).
 */
static int peer_loop(shmrig_channel *ch, enum peer_mode mode)
{
	int ret;

	for (;;) {
		void *msg;
		size_t len;

		ret = shmrig_channel_recv(ch, &msg, &len, -1);
		if (ret)
			break;
		if (len == 0) {
			free(msg);
			return 0;
		}
		if (mode == PEER_ECHO || len == ACK_SIZE)
			ret = shmrig_channel_send(ch, msg, len, BENCH_PEER_TIMEOUT_MS);
		free(msg);
		if (ret)
			break;
	}
	return 1;
}

/* The forked pair's peer (posix). */
static int pair_peer(shmrig_channel_pair *pair, pid_t parent, const struct bench_pinning *pin,
		     enum peer_mode mode)
{
	shmrig_channel *ch;
	int ret = shmrig_topo_bind_thread(pin->topo, pin->peer_cpu);

	if (!ret)
		ret = shmrig_channel_open(pair, 1, parent, NULL, FINGERPRINT, &ch);
	shmrig_channel_pair_free(pair);
	if (ret)
		return 1;
	ret = peer_loop(ch, mode);
	shmrig_channel_close(ch);
	return ret;
}

/*
 * The listening peer (tcp): listen on 127.0.0.1, port 0; write the address
 * (ADDRESS_MAX bytes, NUL-padded) to `out`, or an empty one if listening
 * failed; accept one connection; serve it.
 */
static int listen_peer(int out, const struct bench_pinning *pin, enum peer_mode mode)
{
	struct shmrig_channel_opts opts = { .size = sizeof(struct shmrig_channel_opts),
					    .backend = "ucx" };
	char address[ADDRESS_MAX] = "";
	shmrig_channel_listener *listener = NULL;
	shmrig_channel *ch = NULL;
	int ret = shmrig_topo_bind_thread(pin->topo, pin->peer_cpu);

	if (!ret)
		ret = shmrig_channel_listen(&opts, "127.0.0.1:0", &listener);
	if (!ret)
		ret = shmrig_channel_listener_address(listener, address, sizeof(address));
	if (ret) /* why, for the caller to say: "!" and the words */
		snprintf(address, sizeof(address), "!%s", shmrig_last_error());
	if (bench_write_all(out, address, sizeof(address)) || ret) {
		shmrig_channel_listener_close(listener);
		return 1;
	}
	close(out);
	ret = shmrig_channel_accept(listener, NULL, FINGERPRINT, BENCH_PEER_TIMEOUT_MS, &ch);
	shmrig_channel_listener_close(listener);
	if (ret)
		return 1;
	ret = peer_loop(ch, mode);
	shmrig_channel_close(ch);
	return ret;
}

struct ucx_run {
	struct bench_pinning pin;
	struct saved_env env;
	struct bench_ucx_dir dir;
	shmrig_channel *ch;
	pid_t peer;
};

static void run_end(gbench_state *st, struct ucx_run *run, bool failed)
{
	/* the empty message: the peer closes its end and exits with 0 (peer_loop) */
	if (!failed && run->ch) {
		void *msg = NULL;
		size_t len;
		int ret = shmrig_channel_send(run->ch, "", 0, BENCH_PEER_TIMEOUT_MS);

		if (!ret) /* its goodbye: -EPIPE; anything else is wrong */
			ret = shmrig_channel_recv(run->ch, &msg, &len, BENCH_PEER_TIMEOUT_MS);
		free(msg);
		if (ret != -EPIPE) {
			fail(st, "the peer's close", ret < 0 ? ret : -EPROTO);
			failed = true;
		}
	}
	shmrig_channel_close(run->ch);
	run->ch = NULL;
	if (run->peer > 0) {
		if (failed) {
			kill(run->peer, SIGKILL);
			bench_reap_child(run->peer);
		} else {
			bench_check_peer_exit(st, run->peer);
		}
	}
	env_restore(&run->env);
	bench_pin_end(&run->pin);
	bench_ucx_dir_check(st, &run->dir);
}

/* Pin, set UCX_TLS, start the peer, make our end. false: the benchmark is
 * stopped (and everything cleaned up). */
static bool run_start(gbench_state *st, struct ucx_run *run, const struct ucx_transport *tr,
		      enum peer_mode mode)
{
	struct shmrig_channel_opts opts = { .size = sizeof(struct shmrig_channel_opts),
					    .backend = "ucx" };
	shmrig_channel_pair *pair = NULL;
	int pipefd[2] = { -1, -1 };
	int ret;

	memset(run, 0, sizeof(*run));
	ret = bench_ucx_dir_make(&run->dir);
	if (ret) {
		bench_fail_os(st, "mkdtemp /dev/shm/shmrig-bench-ucx-XXXXXX", ret);
		return false;
	}
	if (!bench_pin_start(st, &run->pin)) {
		bench_ucx_dir_check(st, &run->dir);
		return false;
	}
	ret = env_set(&run->env, tr->tls, run->dir.path);
	if (ret) {
		bench_fail_os(st, "setenv UCX_TLS, UCX_POSIX_DIR", ret);
		env_restore(&run->env);
		bench_pin_end(&run->pin);
		bench_ucx_dir_check(st, &run->dir);
		return false;
	}
	/* a forked pair even for listen/connect: a library without UCX says so here */
	ret = shmrig_channel_pair_create(&opts, &pair);
	if (ret == -EOPNOTSUPP) {
		bench_unavailable(st, "the library has no UCX (libucx-dev missing at configure "
				      "time)");
		goto fail_early;
	}
	if (ret) {
		fail(st, "channel_pair_create", ret);
		goto fail_early;
	}
	if (tr->listen) {
		shmrig_channel_pair_free(pair);
		pair = NULL;
		if (pipe2(pipefd, O_CLOEXEC)) {
			bench_fail_os(st, "pipe", -errno);
			goto fail_early;
		}
	}
	/* no UCP object lives here yet: each process makes its own after the fork */
	fflush(NULL);
	run->peer = fork();
	if (run->peer < 0) {
		bench_fail_os(st, "fork", -errno);
		goto fail_early;
	}
	if (run->peer == 0) {
		if (tr->listen) {
			close(pipefd[0]);
			_exit(listen_peer(pipefd[1], &run->pin, mode));
		}
		_exit(pair_peer(pair, getppid(), &run->pin, mode));
	}
	if (tr->listen) {
		char address[ADDRESS_MAX];

		close(pipefd[1]);
		ret = bench_read_all(pipefd[0], address, sizeof(address), BENCH_PEER_TIMEOUT_MS);
		close(pipefd[0]);
		if (ret || !address[0] || address[0] == '!' ||
		    !memchr(address, '\0', sizeof(address))) {
			char why[ADDRESS_MAX + 64];

			snprintf(why, sizeof(why), "the peer could not listen on 127.0.0.1: %.*s",
				 ADDRESS_MAX - 1,
				 !ret && address[0] == '!' &&
						 memchr(address, '\0', sizeof(address)) ?
					 address + 1 :
					 "no address from it");
			fail(st, why, -1);
			run_end(st, run, true);
			return false;
		}
		ret = shmrig_channel_connect(&opts, address, NULL, FINGERPRINT,
					     BENCH_PEER_TIMEOUT_MS, &run->ch);
	} else {
		ret = shmrig_channel_open(pair, 0, run->peer, NULL, FINGERPRINT, &run->ch);
		shmrig_channel_pair_free(pair);
	}
	if (ret) {
		fail(st, tr->listen ? "channel_connect" : "channel_open", ret);
		run_end(st, run, true);
		return false;
	}
	gbench_set_label(st, shmrig_channel_notes(run->ch));
	return true;

fail_early:
	if (pipefd[0] >= 0) {
		close(pipefd[0]);
		close(pipefd[1]);
	}
	shmrig_channel_pair_free(pair);
	env_restore(&run->env);
	bench_pin_end(&run->pin);
	bench_ucx_dir_check(st, &run->dir);
	return false;
}

/* Round trips (or bw messages) a timed batch: enough to amortize reading the
 * clock, one for the largest payloads. */
static int64_t per_batch(size_t bytes, bool bw)
{
	if (bw)
		return bytes >= (16u << 20) ? 1 : bytes >= (1u << 20) ? 16 : 64;
	return bytes >= (1u << 20) ? 1 : bytes >= (64u << 10) ? 4 : 64;
}

static unsigned char *make_message(size_t bytes)
{
	unsigned char *msg = malloc(bytes);

	for (size_t i = 0; msg && i < bytes; i++)
		msg[i] = (unsigned char)(i * 131 + 7);
	return msg;
}

/* One round trip: 0, or -errno / -EBADMSG (the benchmark is stopped, saying
 * why). check_all: compare every byte, else the length and both ends. */
static int round_trip(gbench_state *st, shmrig_channel *ch, const unsigned char *msg, size_t bytes,
		      struct bench_lat_batch *batch, bool check_all)
{
	void *back;
	size_t len;
	int ret = shmrig_channel_send(ch, msg, bytes, BENCH_PEER_TIMEOUT_MS);

	if (!ret) {
		if (batch)
			bench_lat_mark(batch); /* while the peer answers */
		ret = shmrig_channel_recv(ch, &back, &len, BENCH_PEER_TIMEOUT_MS);
	}
	if (ret) {
		fail(st, "round trip", ret);
		return ret;
	}
	if (len != bytes ||
	    (check_all ? memcmp(back, msg, bytes) != 0 :
			 memcmp(back, msg, 8) != 0 ||
				 memcmp((char *)back + bytes - 8, msg + bytes - 8, 8) != 0)) {
		fail(st, "the echo differs from the message", -1);
		ret = -EBADMSG;
	}
	free(back);
	return ret;
}

static void bm_channel_ucx_rtt(gbench_state *st, void *arg)
{
	const struct ucx_transport *tr = arg;
	size_t bytes = (size_t)gbench_range(st, 0);
	int64_t batch_size = per_batch(bytes, false);
	unsigned char *msg = make_message(bytes);
	struct bench_lat_batch batch;
	struct bench_lat lat;
	struct ucx_run run;
	double total_s = 0;
	int ret;

	bench_lat_init(&lat);
	if (!msg) {
		bench_fail_os(st, "out of memory", -ENOMEM);
		return;
	}
	if (!run_start(st, &run, tr, PEER_ECHO)) {
		free(msg);
		return;
	}
	/* Checked before timing: every byte comes back. */
	ret = round_trip(st, run.ch, msg, bytes, NULL, true);
	while (!ret && gbench_loop(st, batch_size)) {
		double batch_s;

		bench_lat_batch_start(&batch);
		for (int64_t i = 0; !ret && i < batch_size; i++)
			ret = round_trip(st, run.ch, msg, bytes, &batch, false);
		batch_s = bench_lat_batch_end(&batch, ret ? NULL : &lat);
		total_s += batch_s;
		if (!ret)
			gbench_set_iteration_time(st, batch_s);
	}
	if (!ret && gbench_iterations(st)) {
		gbench_set_bytes_processed(st, gbench_iterations(st) * (int64_t)bytes);
		gbench_counter(st, "one_way_ns", total_s * 1e9 / (double)gbench_iterations(st) / 2,
			       0);
		bench_lat_counters(st, &lat);
	}
	run_end(st, &run, ret != 0);
	free(msg);
}

/* Ask the sink for an acknowledgement and wait for it: everything sent before
 * has been taken. 0, or -errno (the benchmark is stopped, saying why). */
static int await_ack(gbench_state *st, shmrig_channel *ch)
{
	static const uint64_t ack = 0x61636b; /* "ack" */
	void *answer;
	size_t len;
	int ret = shmrig_channel_send(ch, &ack, sizeof(ack), BENCH_PEER_TIMEOUT_MS);

	if (!ret)
		ret = shmrig_channel_recv(ch, &answer, &len, BENCH_PEER_TIMEOUT_MS);
	if (ret) {
		fail(st, "acknowledgement", ret);
		return ret;
	}
	free(answer);
	if (len != ACK_SIZE) {
		fail(st, "the acknowledgement has the wrong length", -1);
		return -EBADMSG;
	}
	return 0;
}

static void bm_channel_ucx_bw(gbench_state *st, void *arg)
{
	const struct ucx_transport *tr = arg;
	size_t bytes = (size_t)gbench_range(st, 0);
	int64_t batch_size = per_batch(bytes, true);
	unsigned char *msg = make_message(bytes);
	struct ucx_run run;
	int ret;

	if (!msg) {
		bench_fail_os(st, "out of memory", -ENOMEM);
		return;
	}
	if (!run_start(st, &run, tr, PEER_SINK)) {
		free(msg);
		return;
	}
	/* the first message and an acknowledgement before timing: the path is up */
	ret = shmrig_channel_send(run.ch, msg, bytes, BENCH_PEER_TIMEOUT_MS);
	if (ret)
		fail(st, "send", ret);
	else
		ret = await_ack(st, run.ch);
	while (!ret && gbench_loop(st, batch_size)) {
		uint64_t start = bench_now_ns();

		for (int64_t i = 0; !ret && i < batch_size; i++)
			ret = shmrig_channel_send(run.ch, msg, bytes, BENCH_PEER_TIMEOUT_MS);
		if (ret)
			fail(st, "send", ret);
		else
			ret = await_ack(st, run.ch);
		if (!ret)
			gbench_set_iteration_time(st, (double)(bench_now_ns() - start) * 1e-9);
	}
	if (!ret) {
		gbench_set_bytes_processed(st, gbench_iterations(st) * (int64_t)bytes);
		gbench_set_items_processed(st, gbench_iterations(st));
	}
	run_end(st, &run, ret != 0);
	free(msg);
}

/* ---- the ucx_perftest twins ---- */

#ifdef SHMRIG_BENCH_UCX_PERFTEST

/*
 * Iterations of one ucx_perftest run (one timed batch of the row), by
 * transport, test and size: about 0.1 s of measured time at the figures of
 * an idle 2-CPU machine, above scripts/run's --benchmark_min_time (0.05 s),
 * so that one run usually makes the row. Each batch is a run of its own: if
 * Google Benchmark wants more iterations, ucx_perftest runs again.
 */
static long perftest_iterations(const struct ucx_transport *tr, bool bw, size_t bytes)
{
	/* 64 B, 4 KiB, 64 KiB, 1 MiB, 16 MiB, 64 MiB */
	static const long tcp_lat[] = { 2000, 2000, 500, 32, 4, 2 };
	static const long tcp_bw[] = { 5000, 5000, 500, 100, 4, 2 };
	static const long posix_lat[] = { 40000, 40000, 4000, 200, 8, 2 };
	static const long posix_bw[] = { 200000, 25000, 10000, 200, 8, 2 };
	const long *table = tr->listen ? (bw ? tcp_bw : tcp_lat) : (bw ? posix_bw : posix_lat);
	size_t i = 0;

	while (i + 1 < sizeof(sizes) / sizeof(sizes[0]) && (int64_t)bytes > sizes[i])
		i++;
	return table[i];
}

/* A free TCP port on the loopback now (the server may still lose it to
 * another process: then it exits, and the run is tried again). */
static int free_port(void)
{
	struct sockaddr_in addr = { .sin_family = AF_INET,
				    .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof(addr);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), port = -1;

	if (fd < 0)
		return -errno;
	if (bind(fd, (struct sockaddr *)&addr, sizeof(addr)) == 0 &&
	    getsockname(fd, (struct sockaddr *)&addr, &len) == 0)
		port = ntohs(addr.sin_port);
	else
		port = -errno;
	close(fd);
	return port;
}

/* Does a socket listen on this TCP port (IPv4, any address), per /proc/net/tcp? */
static bool port_listening(int port)
{
	FILE *tcp = fopen("/proc/net/tcp", "r");
	char line[512];
	bool found = false;

	if (!tcp)
		return false;
	while (!found && fgets(line, sizeof(line), tcp)) {
		unsigned local_port, state;

		/* "  0: 00000000:3419 00000000:0000 0A ..." */
		if (sscanf(line, " %*d: %*x:%x %*x:%*x %x", &local_port, &state) == 2)
			found = local_port == (unsigned)port && state == 0x0A;
	}
	fclose(tcp);
	return found;
}

/* The environment of ours with UCX_TLS=tls and UCX_POSIX_DIR=dir in place of
 * any of theirs (for execve); tls_entry and dir_entry hold the two strings. */
static char **environment_with(const char *tls, const char *dir, char *tls_entry, char *dir_entry,
			       size_t entry_size)
{
	size_t n = 0, k = 0;
	char **env;

	while (environ[n])
		n++;
	env = calloc(n + 3, sizeof(*env));
	if (!env)
		return NULL;
	snprintf(tls_entry, entry_size, "UCX_TLS=%s", tls);
	snprintf(dir_entry, entry_size, "UCX_POSIX_DIR=%s", dir);
	for (size_t i = 0; i < n; i++)
		if (strncmp(environ[i], "UCX_TLS=", 8) != 0 &&
		    strncmp(environ[i], "UCX_POSIX_DIR=", 14) != 0)
			env[k++] = environ[i];
	env[k++] = tls_entry;
	env[k++] = dir_entry;
	env[k] = NULL;
	return env;
}

/* fork + execve argv with env; stdout and stderr to out_fd (or /dev/null if
 * < 0). The pid, or -errno. */
static pid_t spawn(char *const argv[], char *const env[], int out_fd)
{
	pid_t pid;

	fflush(NULL);
	pid = fork();
	if (pid < 0)
		return -errno;
	if (pid == 0) {
		int fd = out_fd >= 0 ? out_fd : open("/dev/null", O_WRONLY);

		if (fd < 0 || dup2(fd, 1) < 0 || dup2(fd, 2) < 0)
			_exit(127);
		execve(argv[0], argv, env);
		_exit(127);
	}
	return pid;
}

/* Kill (if it runs) and reap a child, bounded. */
static void stop_child(pid_t pid)
{
	if (pid > 0) {
		kill(pid, SIGKILL);
		bench_reap_child(pid);
	}
}

struct perftest_result {
	long iterations;
	double p50_us, mean_us; /* latency tests: one-way, as ucx_perftest prints them */
	double mb_per_s;        /* bandwidth tests: MB of 2^20 bytes a second */
};

/* The CSV after "iterations,..." in ucx_perftest -f -v's output. 0, or -EBADMSG. */
static int parse_perftest(const char *output, struct perftest_result *r)
{
	const char *header = strstr(output, "iterations,");
	double p50, avg, overall, avg_bw, overall_bw;
	long iterations;

	if (!header || !(header = strchr(header, '\n')))
		return -EBADMSG;
	/* iterations,50.0_percentile_lat,avg_lat,overall_lat,avg_bw,overall_bw,avg_mr,overall_mr */
	if (sscanf(header + 1, " %ld,%lf,%lf,%lf,%lf,%lf", &iterations, &p50, &avg, &overall,
		   &avg_bw, &overall_bw) != 6)
		return -EBADMSG;
	(void)avg;
	(void)avg_bw;
	if (iterations <= 0 || !isfinite(p50) || !isfinite(overall) || !isfinite(overall_bw) ||
	    p50 <= 0 || overall <= 0 || overall_bw <= 0)
		return -EBADMSG;
	r->iterations = iterations;
	r->p50_us = p50;
	r->mean_us = overall;
	r->mb_per_s = overall_bw;
	return 0;
}

/* The last line of the output that says something (for a skip's reason). */
static void last_line(const char *output, char *line, size_t size)
{
	size_t end = strlen(output);

	while (end && (output[end - 1] == '\n' || output[end - 1] == ' '))
		end--;
	size_t start = end;

	while (start && output[start - 1] != '\n')
		start--;
	snprintf(line, size, "%.*s", (int)(end - start), output + start);
}

/*
 * Run ucx_perftest once: the server (-p PORT, -c peer CPU), then, when it
 * listens, the client (127.0.0.1 -p PORT -t TEST -s B -n N -w W -c our CPU
 * -f -v); read the client's output (bounded), reap both (the server killed if
 * it is still there). 0 and *r; 1 the row was stopped (skipped or failed,
 * saying why); -EAGAIN the server could not take the port (try again).
 */
static int perftest_once(gbench_state *st, const struct bench_pinning *pin,
			 const struct ucx_transport *tr, const char *dir, const char *test,
			 size_t bytes, long iterations, struct perftest_result *r)
{
	char port_arg[16], size_arg[32], iters_arg[32], warmup_arg[32], server_cpu[16],
		client_cpu[16], tls_entry[96], dir_entry[96], message[512], line[256];
	char *output = calloc(1, OUTPUT_MAX), **env = NULL;
	pid_t server = -1, client = -1;
	int out[2] = { -1, -1 }, port = free_port(), status, ret = 1;
	size_t used = 0;
	uint64_t deadline;

	if (!output) {
		bench_fail_os(st, "out of memory", -ENOMEM);
		return 1;
	}
	if (port < 0) {
		bench_fail_os(st, "a free TCP port", port);
		goto out;
	}
	env = environment_with(tr->tls, dir, tls_entry, dir_entry, sizeof(tls_entry));
	if (!env || pipe2(out, O_CLOEXEC)) {
		bench_fail_os(st, env ? "pipe" : "out of memory", env ? -errno : -ENOMEM);
		goto out;
	}
	snprintf(port_arg, sizeof(port_arg), "%d", port);
	snprintf(size_arg, sizeof(size_arg), "%zu", bytes);
	snprintf(iters_arg, sizeof(iters_arg), "%ld", iterations);
	snprintf(warmup_arg, sizeof(warmup_arg), "%ld", iterations / 10 > 0 ? iterations / 10 : 1);
	snprintf(server_cpu, sizeof(server_cpu), "%d", pin->peer_cpu);
	snprintf(client_cpu, sizeof(client_cpu), "%d", pin->self_cpu);
	{
		char *server_argv[] = {
			SHMRIG_BENCH_UCX_PERFTEST, "-p", port_arg, "-c", server_cpu, NULL
		};

		server = spawn(server_argv, env, -1);
	}
	if (server < 0) {
		bench_fail_os(st, "fork ucx_perftest's server", server);
		goto out;
	}
	/* the client connects once, at once: start it when the server listens */
	deadline = bench_now_ns() + (uint64_t)PERFTEST_LISTEN_MS * 1000000u;
	while (!port_listening(port)) {
		struct timespec tick = { .tv_nsec = 1000000 };

		if (waitpid(server, &status, WNOHANG) == server) {
			server = -1;
			ret = -EAGAIN; /* the port was taken meanwhile, most likely */
			goto out;
		}
		if (bench_now_ns() > deadline) {
			fail(st, "ucx_perftest's server did not listen in 10 s", -1);
			goto out;
		}
		nanosleep(&tick, NULL);
	}
	{
		char *client_argv[] = { SHMRIG_BENCH_UCX_PERFTEST,
					"127.0.0.1",
					"-p",
					port_arg,
					"-t",
					(char *)test,
					"-s",
					size_arg,
					"-n",
					iters_arg,
					"-w",
					warmup_arg,
					"-c",
					client_cpu,
					"-f",
					"-v",
					NULL };

		client = spawn(client_argv, env, out[1]);
	}
	close(out[1]);
	out[1] = -1;
	if (client < 0) {
		bench_fail_os(st, "fork ucx_perftest's client", client);
		goto out;
	}
	/* its output until EOF (it exited), bounded */
	deadline = bench_now_ns() + (uint64_t)PERFTEST_DEADLINE_MS * 1000000u;
	for (;;) {
		struct pollfd in = { .fd = out[0], .events = POLLIN };
		int64_t left_ms = (int64_t)(deadline - bench_now_ns()) / 1000000;
		char chunk[4096];

		_Static_assert(sizeof(chunk) < OUTPUT_MAX, "a chunk fits the output kept");
		ssize_t n;

		if (bench_now_ns() >= deadline ||
		    poll(&in, 1, (int)(left_ms > 0 ? left_ms : 0)) == 0) {
			fail(st, "ucx_perftest did not finish in 120 s: killed", -1);
			goto out;
		}
		n = read(out[0], chunk, sizeof(chunk));
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		/* keep the last OUTPUT_MAX - 1 bytes (a chunk is smaller than that) */
		if (used + (size_t)n >= OUTPUT_MAX) {
			size_t drop = used + (size_t)n - (OUTPUT_MAX - 1);

			memmove(output, output + drop, used - drop);
			used -= drop;
		}
		memcpy(output + used, chunk, (size_t)n);
		used += (size_t)n;
		output[used] = '\0';
	}
	status = bench_reap_child(client);
	client = -1;
	if (status >= 0 && WIFEXITED(status) && WEXITSTATUS(status) == 0 &&
	    parse_perftest(output, r) == 0) {
		ret = 0;
		goto out;
	}
	/* no figure: a transport it cannot use, or it failed; its words */
	last_line(output, line, sizeof(line));
	snprintf(message, sizeof(message), "ucx_perftest -t %s, UCX_TLS=%s: %s (%s)", test, tr->tls,
		 status < 0                                    ? "killed" :
		 WIFEXITED(status) && WEXITSTATUS(status) == 0 ? "no figure in its output" :
								 "exited without a figure",
		 line[0] ? line : "no output");
	bench_unavailable(st, message);
out:
	/* after a figure the server ends with its client (reaped, killed if it is
	 * still there after BENCH_PEER_TIMEOUT_MS); after a failure it is killed */
	if (ret == 0)
		bench_reap_child(server);
	else
		stop_child(server);
	stop_child(client);
	if (out[0] >= 0)
		close(out[0]);
	if (out[1] >= 0)
		close(out[1]);
	free(env);
	free(output);
	return ret;
}

static void perftest_row(gbench_state *st, const struct ucx_transport *tr, bool bw)
{
	size_t bytes = (size_t)gbench_range(st, 0);
	const char *test = bw ? "stream_bw" : "stream_lat";
	long iterations = perftest_iterations(tr, bw, bytes);
	double total_s = 0, median_us_sum = 0;
	struct bench_pinning pin;
	struct bench_ucx_dir dir;
	char label[LABEL_MAX];
	int64_t runs = 0;
	int ret = bench_ucx_dir_make(&dir);

	if (ret) {
		bench_fail_os(st, "mkdtemp /dev/shm/shmrig-bench-ucx-XXXXXX", ret);
		return;
	}
	if (!bench_pin_start(st, &pin)) {
		bench_ucx_dir_check(st, &dir);
		return;
	}
	/* one batch, one ucx_perftest run of `iterations`: its time */
	while (!ret && gbench_loop(st, iterations)) {
		struct perftest_result r = { 0 };
		double batch_s;

		ret = -EAGAIN;
		for (int attempt = 0; attempt < 3 && ret == -EAGAIN; attempt++)
			ret = perftest_once(st, &pin, tr, dir.path, test, bytes, iterations, &r);
		if (ret == -EAGAIN)
			fail(st, "ucx_perftest's server exited before listening, 3 times", -1);
		if (ret)
			break;
		if (r.iterations != iterations) {
			fail(st, "ucx_perftest reports another count of iterations", -1);
			ret = -EBADMSG;
			break;
		}
		/* one-way latency from a *_lat test: a round trip is twice it */
		batch_s = (bw ? (double)bytes / (r.mb_per_s * 1048576.0) : 2 * r.mean_us * 1e-6) *
			  (double)iterations;
		gbench_set_iteration_time(st, batch_s);
		total_s += batch_s;
		median_us_sum += 2 * r.p50_us;
		runs++;
	}
	bench_pin_end(&pin);
	if (!ret && runs) {
		snprintf(label, sizeof(label), "ucx_perftest -t %s -n %ld (x%lld), UCX_TLS=%s%s",
			 test, iterations, (long long)runs, tr->tls, bw ? "" : ", one-way x2");
		gbench_set_label(st, label);
		gbench_set_bytes_processed(st, gbench_iterations(st) * (int64_t)bytes);
		if (bw) {
			gbench_set_items_processed(st, gbench_iterations(st));
		} else {
			/* the runs' medians, averaged (each the median of its own run) */
			gbench_counter(st, "median_us", median_us_sum / (double)runs, 0);
			gbench_counter(st, "one_way_ns",
				       total_s * 1e9 / (double)gbench_iterations(st) / 2, 0);
		}
	}
	bench_ucx_dir_check(st, &dir);
}

static void bm_perftest_rtt(gbench_state *st, void *arg)
{
	perftest_row(st, arg, false);
}

static void bm_perftest_bw(gbench_state *st, void *arg)
{
	perftest_row(st, arg, true);
}

#else

static void bm_perftest_missing(gbench_state *st, void *arg)
{
	(void)arg;
	bench_unavailable(st, "ucx_perftest not found at configure time (Debian: ucx-utils)");
}

#define bm_perftest_rtt bm_perftest_missing
#define bm_perftest_bw bm_perftest_missing

#endif /* SHMRIG_BENCH_UCX_PERFTEST */

/* ---- registration ---- */

static void register_sizes(const char *name, gbench_fn fn, void *arg)
{
	gbench_benchmark *b =
		gbench_unit(gbench_use_manual_time(gbench_register(name, fn, arg)), 'u');

	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++)
		b = gbench_arg(b, sizes[i]);
}

void bench_channel_ucx_register(void)
{
	char name[64];

	for (size_t i = 0; i < sizeof(transports) / sizeof(transports[0]); i++) {
		/* the names are copied by Google Benchmark; arg must live on */
		void *tr = (void *)&transports[i];

		snprintf(name, sizeof(name), "channel/ucx/%s/rtt", transports[i].name);
		register_sizes(name, bm_channel_ucx_rtt, tr);
		snprintf(name, sizeof(name), "channel/ucx/%s/bw", transports[i].name);
		register_sizes(name, bm_channel_ucx_bw, tr);
		snprintf(name, sizeof(name), "twin/ucx_perftest/%s/rtt", transports[i].name);
		register_sizes(name, bm_perftest_rtt, tr);
		snprintf(name, sizeof(name), "twin/ucx_perftest/%s/bw", transports[i].name);
		register_sizes(name, bm_perftest_bw, tr);
	}
}
