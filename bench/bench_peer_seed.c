/* SPDX-License-Identifier: MIT */
/*
 * Peer twins: the seed's own code path, run by its own runtime, beside
 * shmrig's figure for the same work in the same run (issue 15).
 *
 *   peer/seed_python/echo/<B>   an echo round trip of a B-byte value the way
 *                               the Python seed moves values (64 B, 64 KiB,
 *                               1 MiB, 16 MiB): a fresh SharedMemory block,
 *                               the bytes copied in, a pickled dict over a
 *                               multiprocessing Pipe, the peer attaching it by
 *                               name and answering the same way
 *                               (bench/peers/seed_echo.py says exactly how).
 *                               Twin: session/<backend>/echo/<B> (bench_channel.c)
 *
 * Method. Each benchmark run starts one /usr/bin/python3 running
 * seed_echo.py (fork + exec, pipes on its stdin and stdout, no shell), which
 * starts its echo peer with multiprocessing; the caller's side runs on the
 * topology's CPU 0 and the peer on CPU 1, as in the session rows (the CPUs
 * are passed with --cpus; this thread is pinned to CPU 0 too, and waits in
 * read() while Python works). Each gbench batch of N iterations is one line
 * `N B` to the script, which runs N round trips and answers with the
 * nanoseconds of each (time.perf_counter_ns read before the first and after
 * each): their sum is the batch's manual time, so Python's own loop is the
 * clock and the pipes to this process are outside it, and each is a sample
 * for the counters p50_us and p99_us. The first batch of a run is preceded,
 * inside the script and untimed, by one round trip whose answer is compared
 * with the value. After the run: `quit`, a bounded wait, SIGKILL as a last
 * resort, reaped; the run is an error if the script did not exit with 0 or
 * left a block in /dev/shm (its blocks carry its pid in their name; any found
 * are removed).
 *
 * No /usr/bin/python3, an unreadable script, or a script that does not come
 * up (no `ready` line) skips the row with the reason; a figure is never made up.
 */
#include "gbench.h"
#include "suite.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* From bench/meson.build: the source tree's bench/peers. */
#ifndef SHMRIG_BENCH_PEERS_DIR
#error "SHMRIG_BENCH_PEERS_DIR not defined: build with meson"
#endif

#define PYTHON "/usr/bin/python3" /* Debian's: the script needs its standard library only */
#define SEED_SCRIPT SHMRIG_BENCH_PEERS_DIR "/seed_echo.py"
/* Block names of the script: shmrigbench-seedpy-<its pid>-<serial> */
#define SEED_BLOCK_PREFIX "shmrigbench-seedpy-"
#define START_TIMEOUT_MS 20000 /* the script waits 10 s for its peer */
#define BATCH_TIMEOUT_MS 60000 /* one batch: ~30 ms here; a hung script is an error */
#define TRIPS_MAX 64           /* round trips a batch, at most (trips_per_batch()) */
/* A line from the script: at most TRIPS_MAX numbers of up to 20 digits, with spaces. */
#define LINE_MAX_BYTES 2048
_Static_assert(LINE_MAX_BYTES >= TRIPS_MAX * 21 + 1, "an answer fits a line");

static const int64_t seed_sizes[] = { 64, 64 << 10, 1 << 20, 16 << 20 };

/* Round trips per batch (one line to the script): ~10-40 ms a batch here. */
static int64_t trips_per_batch(int64_t bytes)
{
	return bytes >= (16 << 20) ? 1 : bytes >= (1 << 20) ? 4 : bytes >= (64 << 10) ? 16 : 64;
}

struct seed_script {
	pid_t pid;
	int to_fd;                    /* its stdin */
	int from_fd;                  /* its stdout */
	char pending[LINE_MAX_BYTES]; /* read past the last line handed out */
	size_t pending_len;
};

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/*
 * The script's next line, without its newline, into line (size bytes).
 * 0, or -ETIMEDOUT (none within timeout_ms), -EPIPE (EOF first), -EMSGSIZE
 * (a line longer than size - 1), -errno.
 */
static int read_line(struct seed_script *s, char *line, size_t size, int timeout_ms)
{
	int64_t deadline = now_ms() + timeout_ms;

	for (;;) {
		char *newline = memchr(s->pending, '\n', s->pending_len);
		struct pollfd pfd = { .fd = s->from_fd, .events = POLLIN };
		int64_t left;
		ssize_t n;

		if (newline) {
			size_t len = (size_t)(newline - s->pending);

			if (len >= size)
				return -EMSGSIZE;
			memcpy(line, s->pending, len);
			line[len] = '\0';
			s->pending_len -= len + 1;
			memmove(s->pending, newline + 1, s->pending_len);
			return 0;
		}
		if (s->pending_len == sizeof(s->pending))
			return -EMSGSIZE;
		left = deadline - now_ms();
		if (left <= 0)
			return -ETIMEDOUT;
		n = poll(&pfd, 1, (int)left);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (n == 0)
			return -ETIMEDOUT;
		n = read(s->from_fd, s->pending + s->pending_len,
			 sizeof(s->pending) - s->pending_len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (n == 0)
			return -EPIPE;
		s->pending_len += (size_t)n;
	}
}

static int write_line(struct seed_script *s, const char *line)
{
	return bench_write_all(s->to_fd, line, strlen(line));
}

/*
 * Fork and exec the script with pipes on its stdin and stdout (its stderr is
 * ours: a traceback is seen). 0, or -errno with nothing left open.
 */
static int script_spawn(struct seed_script *s, const struct bench_pinning *pin)
{
	int to[2] = { -1, -1 }, from[2] = { -1, -1 };
	char cpus[32];
	char *const argv[] = { PYTHON, "-I", SEED_SCRIPT, "--cpus", cpus, NULL };
	int ret = 0;

	snprintf(cpus, sizeof(cpus), "%d,%d", pin->self_cpu, pin->peer_cpu);
	if (pipe2(to, O_CLOEXEC) || pipe2(from, O_CLOEXEC)) {
		ret = -errno;
		goto fail;
	}
	fflush(NULL);
	s->pid = fork();
	if (s->pid < 0) {
		ret = -errno;
		goto fail;
	}
	if (s->pid == 0) {
		/* async-signal-safe calls only until exec; dup2 clears O_CLOEXEC */
		if (dup2(to[0], STDIN_FILENO) < 0 || dup2(from[1], STDOUT_FILENO) < 0)
			_exit(127);
		/* none of ours that lacks O_CLOEXEC goes to Python either */
		close_range(3, ~0u, 0);
		execv(PYTHON, argv);
		_exit(127);
	}
	close(to[0]);
	close(from[1]);
	s->to_fd = to[1];
	s->from_fd = from[0];
	s->pending_len = 0;
	return 0;
fail:
	for (int i = 0; i < 2; i++) {
		if (to[i] >= 0)
			close(to[i]);
		if (from[i] >= 0)
			close(from[i]);
	}
	return ret;
}

/* Remove blocks the script (pid) left in /dev/shm: how many. */
static int remove_leftover_blocks(pid_t pid)
{
	char prefix[64], name[NAME_MAX + 2];
	struct dirent *entry;
	DIR *dir = opendir("/dev/shm");
	int found = 0;

	if (!dir)
		return 0;
	snprintf(prefix, sizeof(prefix), SEED_BLOCK_PREFIX "%d-", (int)pid);
	while ((entry = readdir(dir))) {
		if (strncmp(entry->d_name, prefix, strlen(prefix)) != 0)
			continue;
		snprintf(name, sizeof(name), "/%s", entry->d_name);
		shm_unlink(name);
		found++;
	}
	closedir(dir);
	return found;
}

/*
 * End the script: `quit` (unless it is known dead), its pipes closed, a
 * bounded wait (bench_reap_child: SIGKILL after BENCH_PEER_TIMEOUT_MS), reaped.
 * If ok, anything wrong stops the benchmark: an error line, an exit status
 * other than 0, a block left in /dev/shm.
 */
static void script_stop(gbench_state *st, struct seed_script *s, bool ok)
{
	char line[LINE_MAX_BYTES], message[LINE_MAX_BYTES + 64];
	int status, leftovers;

	/* quit, then its last words: none, or `error: ...` */
	if (write_line(s, "quit\n") == 0) {
		close(s->to_fd);
		s->to_fd = -1;
		if (read_line(s, line, sizeof(line), BENCH_PEER_TIMEOUT_MS) == 0 && ok) {
			snprintf(message, sizeof(message), "failed: seed_echo.py at quit: %s",
				 line);
			gbench_skip(st, message);
			ok = false;
		}
	}
	if (s->to_fd >= 0)
		close(s->to_fd);
	close(s->from_fd);
	status = bench_reap_child(s->pid);
	leftovers = remove_leftover_blocks(s->pid);
	if (!ok)
		return;
	if (status < 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
		snprintf(message, sizeof(message),
			 status < 0          ? "failed: seed_echo.py did not end in time: killed" :
			 WIFSIGNALED(status) ? "failed: seed_echo.py killed by signal %d" :
					       "failed: seed_echo.py exited with %d",
			 status < 0          ? 0 :
			 WIFSIGNALED(status) ? WTERMSIG(status) :
					       WEXITSTATUS(status));
		gbench_skip(st, message);
	} else if (leftovers) {
		snprintf(message, sizeof(message),
			 "failed: seed_echo.py left %d blocks in /dev/shm (removed)", leftovers);
		gbench_skip(st, message);
	}
}

/*
 * Start the script and wait for its `ready ...` line, which goes into label.
 * false: the row is skipped with the reason (and the script reaped).
 */
static bool script_start(gbench_state *st, struct seed_script *s, const struct bench_pinning *pin,
			 char *label, size_t label_size)
{
	char line[LINE_MAX_BYTES], why[LINE_MAX_BYTES + 128];
	int ret, status;

	if (access(PYTHON, X_OK)) {
		snprintf(why, sizeof(why), "no %s (%s): Debian's python3 runs the seed's twin",
			 PYTHON, strerror(errno));
		bench_unavailable(st, why);
		return false;
	}
	if (access(SEED_SCRIPT, R_OK)) {
		snprintf(why, sizeof(why), "cannot read %s: %s", SEED_SCRIPT, strerror(errno));
		bench_unavailable(st, why);
		return false;
	}
	ret = script_spawn(s, pin);
	if (ret) {
		bench_fail_os(st, "start " PYTHON, ret);
		return false;
	}
	ret = read_line(s, line, sizeof(line), START_TIMEOUT_MS);
	if (ret == 0 && strncmp(line, "ready ", 6) == 0) {
		snprintf(label, label_size, "seed's way, %s", line + 6);
		return true;
	}
	/* did not come up: kill it (a hung start), reap it, say what we saw */
	kill(s->pid, SIGKILL);
	close(s->to_fd);
	close(s->from_fd);
	status = bench_reap_child(s->pid);
	remove_leftover_blocks(s->pid);
	if (ret == 0)
		snprintf(why, sizeof(why), "seed_echo.py did not start: %s", line);
	else if (ret == -EPIPE && status >= 0 && WIFEXITED(status))
		snprintf(why, sizeof(why), "seed_echo.py did not start: exited with %d",
			 WEXITSTATUS(status));
	else
		snprintf(why, sizeof(why), "seed_echo.py did not start: %s", strerror(-ret));
	bench_unavailable(st, why);
	return false;
}

/*
 * The answer to a batch of trips round trips: exactly trips numbers of
 * nanoseconds, each > 0 and below the batch's timeout, one space between.
 * Their sum, or 0 if the line is not that.
 */
static uint64_t parse_answer(const char *line, int64_t trips, uint64_t *trip_ns)
{
	const char *p = line;
	uint64_t sum = 0;

	for (int64_t i = 0; i < trips; i++) {
		char *end;

		if (i && *p++ != ' ')
			return 0;
		if (*p < '0' || *p > '9') /* strtoull would take a sign or spaces */
			return 0;
		errno = 0;
		trip_ns[i] = strtoull(p, &end, 10);
		if (errno || trip_ns[i] == 0 || trip_ns[i] >= (uint64_t)BATCH_TIMEOUT_MS * 1000000)
			return 0;
		sum += trip_ns[i];
		p = end;
	}
	return *p ? 0 : sum;
}

/* One batch: `trips bytes` to the script, the nanoseconds of each round trip
 * back, recorded in lat, and their sum in elapsed_ns. 0 or -errno (the
 * benchmark is stopped, saying why). */
static int run_batch(gbench_state *st, struct seed_script *s, int64_t trips, int64_t bytes,
		     struct bench_lat *lat, uint64_t *elapsed_ns)
{
	char line[LINE_MAX_BYTES], message[LINE_MAX_BYTES + 64];
	uint64_t trip_ns[TRIPS_MAX];
	int ret;

	if (trips < 1 || trips > TRIPS_MAX) {
		gbench_skip(st, "failed: seed_echo.py batch: round trips out of range");
		return -EINVAL;
	}
	snprintf(line, sizeof(line), "%" PRId64 " %" PRId64 "\n", trips, bytes);
	ret = write_line(s, line);
	if (!ret)
		ret = read_line(s, line, sizeof(line), BATCH_TIMEOUT_MS);
	if (ret) {
		bench_fail_os(st, "seed_echo.py batch", ret);
		return ret;
	}
	*elapsed_ns = parse_answer(line, trips, trip_ns);
	if (*elapsed_ns == 0) {
		snprintf(message, sizeof(message),
			 "failed: seed_echo.py answered (want %" PRId64 " times in ns): %.200s",
			 trips, line);
		gbench_skip(st, message);
		return -EBADMSG;
	}
	for (int64_t i = 0; i < trips; i++)
		bench_lat_record(lat, trip_ns[i]);
	return 0;
}

static void bm_seed_python_echo(gbench_state *st, void *arg)
{
	int64_t bytes = gbench_range(st, 0), trips = trips_per_batch(bytes);
	struct sigaction ignore = { .sa_handler = SIG_IGN }, saved_sigpipe;
	struct bench_pinning pin;
	struct seed_script script;
	struct bench_lat lat;
	char label[LINE_MAX_BYTES + 32];
	int ret = 0;

	(void)arg;
	bench_lat_init(&lat);
	if (!bench_pin_start(st, &pin))
		return;
	/* A dead script is an EPIPE to report, not a SIGPIPE that ends the suite. */
	sigaction(SIGPIPE, &ignore, &saved_sigpipe);
	if (!script_start(st, &script, &pin, label, sizeof(label)))
		goto out;
	gbench_set_label(st, label);
	while (!ret && gbench_loop(st, trips)) {
		uint64_t elapsed_ns;

		ret = run_batch(st, &script, trips, bytes, &lat, &elapsed_ns);
		if (!ret)
			gbench_set_iteration_time(st, (double)elapsed_ns / 1e9);
	}
	if (!ret) {
		gbench_set_bytes_processed(st, gbench_iterations(st) * bytes);
		bench_lat_counters(st, &lat);
	}
	script_stop(st, &script, ret == 0);
out:
	sigaction(SIGPIPE, &saved_sigpipe, NULL);
	bench_pin_end(&pin);
}

void bench_peer_seed_register(void)
{
	gbench_benchmark *b =
		gbench_unit(gbench_use_manual_time(gbench_register("peer/seed_python/echo",
								   bm_seed_python_echo, NULL)),
			    'u');

	for (size_t i = 0; i < sizeof(seed_sizes) / sizeof(seed_sizes[0]); i++)
		b = gbench_arg(b, seed_sizes[i]);
}
