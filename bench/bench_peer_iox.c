/* SPDX-License-Identifier: MIT */
/*
 * A peer twin (issue 15): iceoryx, what a user would take instead of shmrig
 * for zero-copy IPC, measured in the same run as shmrig's own rows
 * (channel/ring/rtt, session/ring/echo/<B> in bench_channel.c).
 *
 *   peer/iceoryx/echo/<B>   a publish/subscribe round trip of B bytes (64 B,
 *                           4 KiB, 64 KiB, 1 MiB, 4 MiB) through iceoryx's C
 *                           binding: the caller loans a chunk of B bytes,
 *                           copies its payload in (as shmrig's encode copies
 *                           into the pool) and publishes it on service
 *                           "request"; the echo process takes the sample,
 *                           loans a reply chunk, copies the sample's bytes
 *                           into it, publishes it on "reply" and releases the
 *                           sample; the caller takes the reply and releases
 *                           it. Time per round trip (bytes = B per call)
 *
 * Processes. iceoryx 2.0's runtime is one per process, for the life of the
 * process: iox_runtime_shutdown() only unblocks publishers, nothing tears the
 * runtime down or lets it reconnect to another RouDi. So shmrig-bench itself
 * never initialises one (it runs every row, and each row's run has a RouDi of
 * its own): it forks the caller side ("ping", CPU 0), which forks the echo
 * side ("pong", binding itself to CPU 1), and each of the two calls
 * iox_runtime_init() after the fork, with its own name. shmrig-bench drives
 * ping through a pipe: "run n round trips", and ping answers with the wall
 * time they took (CLOCK_MONOTONIC, read in ping around the n round trips, so
 * the pipe is outside the time). shmrig-bench waits in read(2) meanwhile, so
 * it takes no CPU from ping on CPU 0. ping also records each round trip's time
 * (the clock read after the publish, while the echo works: suite.h) in a
 * histogram in a shared anonymous mapping, which shmrig-bench reads for the
 * counters p50_us and p99_us once ping is reaped. Both iceoryx processes end
 * with exit(), not _exit(): the runtime's destructor unregisters them from
 * RouDi.
 *
 * Waiting. A side that waits for a sample tries iox_sub_take_chunk() up to
 * SPIN_TAKES times with a pause between (the ring channel's 512 pauses; an
 * empty take and a pause cost about 36 ns on the 2-CPU EPYC VM, so about 18 us
 * against the ring's 10), then sleeps on a WaitSet (HAS_DATA state) in slices
 * of SLICE_MS, checking after each that its peer lives: the ring channel's
 * spin-then-futex, so both answer a quick peer without a syscall and neither
 * burns a CPU while the other copies 4 MiB. A WaitSet costs the publisher a
 * semaphore post per sample (no syscall while nobody sleeps). A dead peer is
 * an error within bounds, never a hang: ping reaps pong with waitpid(WNOHANG)
 * in each slice and gives up after BENCH_PEER_TIMEOUT_MS; pong ends when ping
 * is gone (orphaned) or says stop; shmrig-bench reads each answer with a
 * bound and kills what does not end in time.
 *
 * RouDi. Each run starts its own iox-roudi with a config file written to a
 * temporary directory (mempools of 64 B to 4 MiB, iceoryx adds its 40-byte
 * chunk header to each; IN_FLIGHT chunks each, more than a round trip holds:
 * the request loaned, queued or held, and the reply the same), waits until it
 * says it is ready (bounded: ROUDI_READY_MS), and stops it after the run
 * (SIGINT, reaped within ROUDI_STOP_MS, else SIGKILL). RouDi owns
 * /dev/shm/iceoryx_mgmt, /dev/shm/<group name>, /tmp/roudi, /tmp/roudi.lock
 * and /tmp/iox-unique-roudi.lock, each runtime /tmp/<runtime name> and its
 * .lock; a clean stop removes them. A run that had to kill removes what is
 * left itself (they were all absent when it started: a run checks that
 * first), and a clean stop that left one behind is an error. If shmrig-bench
 * dies, RouDi gets SIGTERM (PR_SET_PDEATHSIG) and ping sees EOF: both end
 * cleanly and ping removes the temporary directory. If another RouDi runs
 * (anyone's), or its files are there, the rows are skipped and nothing is
 * touched; so are they when iox-roudi is missing or cannot start here.
 * Cost: a RouDi takes about 0.6 s to start (it clears its 63 MiB management
 * segment; the data segment is 43 MiB of tmpfs, touched as used) and 0.15 s
 * to stop, outside the time, once per run of the body; Google Benchmark runs
 * a body a few times a repetition while it sizes the iteration count, so a
 * row costs about a second a run more than shmrig's rows. RouDi gets the CPUs
 * shmrig-bench had before pinning; it is idle during a run but for its 100 ms
 * discovery loop.
 *
 * The payload is checked once before timing: the reply equals the request.
 */
#include "gbench.h"
#include "suite.h"

#include <stdint.h>

#define ECHO_SIZES_COUNT 5
static const int64_t echo_sizes[ECHO_SIZES_COUNT] = { 64, 4 << 10, 64 << 10, 1 << 20, 4 << 20 };

#ifndef HAVE_ICEORYX

static void bm_iox_echo(gbench_state *st, void *arg)
{
	(void)arg;
	bench_unavailable(st, "iceoryx's C binding (Debian: libiceoryx-binding-c-dev) was not "
			      "found when shmrig-bench was configured");
}

#else

#include <iceoryx_binding_c/enums.h>
#include <iceoryx_binding_c/log.h>
#include <iceoryx_binding_c/notification_info.h>
#include <iceoryx_binding_c/publisher.h>
#include <iceoryx_binding_c/runtime.h>
#include <iceoryx_binding_c/subscriber.h>
#include <iceoryx_binding_c/wait_set.h>

#include <shmrig/shmrig.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define ROUDI_READY_MS 10000 /* it takes about 0.6 s here */
#define ROUDI_STOP_MS 10000  /* about 0.15 s */
#define ROUDI_READY_LINE "RouDi is ready for clients"
#define CONNECT_MS 10000 /* RouDi connects ports in its 100 ms discovery loop */
#define SPIN_TAKES 512
#define SLICE_MS 100
#define PEER_TIMEOUT_MS BENCH_PEER_TIMEOUT_MS
/* ping's answer to the first command: its setup, the connection and the check */
#define SETUP_TIMEOUT_MS (2 * CONNECT_MS + PEER_TIMEOUT_MS)
/* Chunks of each mempool: a round trip holds at most two a service (loaned
 * or queued, and held), RouDi's introspection publishers take a few. */
#define IN_FLIGHT 8
#define SERVICE "shmrig-bench"
#define INSTANCE "peer-iox"
#define TMP_PREFIX "/tmp/" /* iceoryx 2.0 on Linux: sockets and locks, not $TMPDIR */
#define MAX_OWNED 9        /* paths RouDi and the two runtimes own */
#define WHAT_MAX 200
#ifdef SHMRIG_BENCH_IOX_ROUDI
#define ROUDI_PATH SHMRIG_BENCH_IOX_ROUDI /* from bench/meson.build */
#else
#define ROUDI_PATH "" /* not found when configured: the rows are skipped */
#endif

/* Mempool chunk payloads: 64 B to 4 MiB by 4 (iceoryx adds the chunk header). */
static const unsigned long mempool_sizes[] = {
	64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304,
};

/* ping's answer: status 0, or 1 and what went wrong; seconds the batch took. */
struct ping_result {
	int32_t status;
	double seconds;
	char what[WHAT_MAX];
};
_Static_assert(sizeof(struct ping_result) <= PIPE_BUF, "one atomic write");

struct roudi {
	pid_t pid;          /* while it runs */
	bool started;       /* we forked it: what it owns is ours to remove */
	char dir[PATH_MAX]; /* ours: the config and RouDi's output */
	char config[PATH_MAX + 16];
	char log[PATH_MAX + 16];
	char owned[MAX_OWNED][PATH_MAX];
	int nowned;
};

/* What a run's processes share: written before the forks, read-only after,
 * but for `stop` and `lat`, which live in shared anonymous mappings. */
struct iox_echo {
	size_t bytes;
	const struct bench_pinning *pin;
	const struct roudi *roudi;
	pid_t bench; /* shmrig-bench */
	char ping_name[64];
	char pong_name[64];
	_Atomic int *stop;     /* ping sets it when the run is over */
	struct bench_lat *lat; /* ping records the timed round trips, shmrig-bench reads */
};

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void sleep_ms(long ms)
{
	struct timespec tick = { .tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000 };

	nanosleep(&tick, NULL);
}

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
	__builtin_ia32_pause();
#elif defined(__aarch64__)
	__asm__ __volatile__("yield" ::: "memory");
#endif
}

/* "exited with N" or "killed by signal N", for a wait status. */
static const char *describe_status(int status, char *buf, size_t size)
{
	if (WIFEXITED(status))
		snprintf(buf, size, "exited with %d", WEXITSTATUS(status));
	else if (WIFSIGNALED(status))
		snprintf(buf, size, "killed by signal %d", WTERMSIG(status));
	else
		snprintf(buf, size, "wait status %d", status);
	return buf;
}

static void fill_payload(unsigned char *payload, size_t bytes)
{
	for (size_t i = 0; i < bytes; i++)
		payload[i] = (unsigned char)(i * 131 + 7);
}

/* ---- RouDi ---- */

/* The pid of a process named `comm` (any user's), or 0. */
static pid_t find_process(const char *comm)
{
	DIR *proc = opendir("/proc");
	struct dirent *entry;
	pid_t found = 0;

	if (!proc)
		return 0;
	while (!found && (entry = readdir(proc))) {
		char path[300], name[64];
		FILE *file;

		if (entry->d_name[0] < '1' || entry->d_name[0] > '9')
			continue;
		snprintf(path, sizeof(path), "/proc/%s/comm", entry->d_name);
		file = fopen(path, "r");
		if (!file)
			continue; /* it ended meanwhile */
		if (fgets(name, sizeof(name), file)) {
			name[strcspn(name, "\n")] = '\0';
			if (strcmp(name, comm) == 0)
				found = (pid_t)atol(entry->d_name);
		}
		fclose(file);
	}
	closedir(proc);
	return found;
}

static void add_owned(struct roudi *roudi, const char *prefix, const char *name, const char *suffix)
{
	if (roudi->nowned < MAX_OWNED)
		snprintf(roudi->owned[roudi->nowned++], PATH_MAX, "%s%s%s", prefix, name, suffix);
}

/* What RouDi and the runtimes create (iceoryx 2.0.3 on Linux). The data
 * segment is named after the group RouDi runs as (the config's default writer). */
static void list_owned(struct roudi *roudi, const struct iox_echo *echo)
{
	struct group *group = getgrgid(getegid());

	roudi->nowned = 0;
	add_owned(roudi, "/dev/shm/", "iceoryx_mgmt", "");
	if (group)
		add_owned(roudi, "/dev/shm/", group->gr_name, "");
	add_owned(roudi, TMP_PREFIX, "roudi", "");
	add_owned(roudi, TMP_PREFIX, "roudi", ".lock");
	add_owned(roudi, TMP_PREFIX, "iox-unique-roudi", ".lock");
	add_owned(roudi, TMP_PREFIX, echo->ping_name, "");
	add_owned(roudi, TMP_PREFIX, echo->ping_name, ".lock");
	add_owned(roudi, TMP_PREFIX, echo->pong_name, "");
	add_owned(roudi, TMP_PREFIX, echo->pong_name, ".lock");
}

/* The first path RouDi would own that exists, or NULL. */
static const char *owned_present(const struct roudi *roudi)
{
	struct stat info;

	for (int i = 0; i < roudi->nowned; i++)
		if (lstat(roudi->owned[i], &info) == 0)
			return roudi->owned[i];
	return NULL;
}

static int write_config(const char *path)
{
	FILE *file = fopen(path, "wx");
	int ret = 0;

	if (!file)
		return -errno;
	fprintf(file, "# shmrig-bench peer/iceoryx: written and removed by the run\n"
		      "[general]\nversion = 1\n\n[[segment]]\n");
	for (size_t i = 0; i < sizeof(mempool_sizes) / sizeof(mempool_sizes[0]); i++)
		fprintf(file, "\n[[segment.mempool]]\nsize = %lu\ncount = %d\n", mempool_sizes[i],
			IN_FLIGHT);
	if (ferror(file))
		ret = -EIO;
	if (fclose(file) && !ret)
		ret = -errno;
	return ret;
}

/* The last non-empty line of RouDi's output (what it said before it ended). */
static void last_log_line(const char *path, char *line, size_t size)
{
	char buf[512];
	FILE *file = fopen(path, "r");

	snprintf(line, size, "no output");
	if (!file)
		return;
	while (fgets(buf, sizeof(buf), file)) {
		size_t len = strcspn(buf, "\n");

		if (len >= size)
			len = size - 1; /* the start of a long line says enough */
		if (len) {
			memcpy(line, buf, len);
			line[len] = '\0';
		}
	}
	fclose(file);
}

static bool log_says_ready(const char *path)
{
	char buf[512];
	bool ready = false;
	FILE *file = fopen(path, "r");

	if (!file)
		return false;
	while (!ready && fgets(buf, sizeof(buf), file))
		ready = strstr(buf, ROUDI_READY_LINE) != NULL;
	fclose(file);
	return ready;
}

/* Remove the config, the log and the directory (what we created). */
static void remove_files(const struct roudi *roudi)
{
	if (!roudi->dir[0])
		return;
	unlink(roudi->config);
	unlink(roudi->log);
	rmdir(roudi->dir);
}

static void remove_dir(struct roudi *roudi)
{
	remove_files(roudi);
	roudi->dir[0] = '\0';
}

/* The forked child that becomes iox-roudi; never returns. */
static void roudi_exec(const struct roudi *roudi, const struct bench_pinning *pin, pid_t parent)
{
	int null_fd = open("/dev/null", O_RDONLY);
	int log_fd = open(roudi->log, O_WRONLY | O_CREAT | O_TRUNC, 0600);

	/* If shmrig-bench dies, RouDi gets SIGTERM and shuts down cleanly,
	 * removing its files. */
	prctl(PR_SET_PDEATHSIG, SIGTERM);
	if (getppid() != parent || null_fd < 0 || log_fd < 0)
		_exit(126);
	sched_setaffinity(0, sizeof(pin->saved), &pin->saved);
	dup2(null_fd, 0);
	dup2(log_fd, 1);
	dup2(log_fd, 2);
	execl(ROUDI_PATH, "iox-roudi", "-c", roudi->config, (char *)NULL);
	dprintf(2, "exec %s: %s\n", ROUDI_PATH, strerror(errno));
	_exit(127);
}

/* Stop our RouDi, reap it, remove what it left and our directory. A clean
 * stop that leaves a file behind, or one that had to kill, fails the run. */
static void roudi_stop(gbench_state *st, struct roudi *roudi)
{
	char message[PATH_MAX + 128], how[64];
	bool killed = false;
	int status = 0;

	if (roudi->pid > 0) {
		pid_t got = 0;
		int64_t start = now_ms();

		kill(roudi->pid, SIGINT);
		while (now_ms() - start < ROUDI_STOP_MS) {
			got = waitpid(roudi->pid, &status, WNOHANG);
			if (got != 0 && !(got < 0 && errno == EINTR))
				break;
			sleep_ms(1);
		}
		if (got != roudi->pid) {
			kill(roudi->pid, SIGKILL);
			while (waitpid(roudi->pid, &status, 0) < 0 && errno == EINTR)
				;
			killed = true;
		}
		roudi->pid = 0;
		if (killed) {
			gbench_skip(st, "failed: iox-roudi did not stop within 10 s of SIGINT: "
					"killed, its files removed");
		} else if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
			snprintf(message, sizeof(message), "failed: iox-roudi %s",
				 describe_status(status, how, sizeof(how)));
			gbench_skip(st, message);
		}
	}
	/* Our RouDi is gone and none ran before it: what is left is its. (A
	 * benchmark already stopped keeps its first message.) */
	for (int i = 0; roudi->started && i < roudi->nowned; i++) {
		if (unlink(roudi->owned[i]) == 0 && !killed) {
			snprintf(message, sizeof(message),
				 "failed: %s was left after iox-roudi stopped (removed)",
				 roudi->owned[i]);
			gbench_skip(st, message);
		}
	}
	roudi->started = false;
	remove_dir(roudi);
}

/*
 * Start a RouDi of our own and wait until it is ready. false: the benchmark
 * is stopped (skipped if another RouDi runs or ours cannot start here) and
 * nothing is left.
 */
static bool roudi_start(gbench_state *st, struct roudi *roudi, const struct iox_echo *echo,
			const struct bench_pinning *pin)
{
	char message[PATH_MAX + 256], line[256], how[64];
	const char *tmpdir = getenv("TMPDIR");
	const char *present;
	pid_t other, parent = getpid();
	int64_t start;
	int ret;

	memset(roudi, 0, sizeof(*roudi));
	if (!*ROUDI_PATH) {
		bench_unavailable(st, "iox-roudi (Debian: iceoryx) was not found when "
				      "shmrig-bench was configured");
		return false;
	}
	if (access(ROUDI_PATH, X_OK)) {
		snprintf(message, sizeof(message), "cannot run %s: %s", ROUDI_PATH,
			 strerror(errno));
		bench_unavailable(st, message);
		return false;
	}
	other = find_process("iox-roudi");
	if (other) {
		snprintf(message, sizeof(message),
			 "another iox-roudi runs (pid %d): one per machine, not touched",
			 (int)other);
		bench_unavailable(st, message);
		return false;
	}
	list_owned(roudi, echo);
	present = owned_present(roudi);
	if (present) {
		snprintf(message, sizeof(message),
			 "%s exists (another RouDi's, or left by one that crashed): not touched",
			 present);
		bench_unavailable(st, message);
		return false;
	}
	snprintf(roudi->dir, sizeof(roudi->dir), "%s/shmrig-iox-XXXXXX",
		 tmpdir && *tmpdir ? tmpdir : "/tmp");
	if (!mkdtemp(roudi->dir)) {
		roudi->dir[0] = '\0';
		bench_fail_os(st, "mkdtemp for iox-roudi's config", -errno);
		return false;
	}
	snprintf(roudi->config, sizeof(roudi->config), "%s/roudi.toml", roudi->dir);
	snprintf(roudi->log, sizeof(roudi->log), "%s/roudi.log", roudi->dir);
	ret = write_config(roudi->config);
	if (ret) {
		bench_fail_os(st, "write iox-roudi's config", ret);
		remove_dir(roudi);
		return false;
	}
	fflush(NULL);
	roudi->pid = fork();
	if (roudi->pid < 0) {
		roudi->pid = 0;
		bench_fail_os(st, "fork for iox-roudi", -errno);
		remove_dir(roudi);
		return false;
	}
	if (roudi->pid == 0)
		roudi_exec(roudi, pin, parent);
	roudi->started = true;
	start = now_ms();
	while (!log_says_ready(roudi->log)) {
		int status;
		pid_t got = waitpid(roudi->pid, &status, WNOHANG);

		if (got == roudi->pid) {
			/* It could not start here: no permission, no memory for its segments. */
			last_log_line(roudi->log, line, sizeof(line));
			snprintf(message, sizeof(message), "iox-roudi cannot start here (%s): %s",
				 describe_status(status, how, sizeof(how)), line);
			roudi->pid = 0;
			bench_unavailable(st, message);
			roudi_stop(st, roudi); /* removes what it may have left */
			return false;
		}
		if (now_ms() - start > ROUDI_READY_MS) {
			gbench_skip(st, "failed: iox-roudi not ready within 10 s");
			roudi_stop(st, roudi);
			return false;
		}
		sleep_ms(1);
	}
	return true;
}

/* ---- the two iceoryx processes ---- */

/*
 * ping and pong end on their own, and cleanly, when shmrig-bench is gone
 * (EOF on the command pipe; orphaned). A Ctrl-C to the process group, or a
 * RouDi shutting down (it gets SIGTERM when shmrig-bench dies, and sends it
 * to the runtimes it knows), must not kill them before they unregister: that
 * would leave their sockets in /tmp. Nor must ping's answer to a dead
 * shmrig-bench (SIGPIPE; the write fails with EPIPE instead).
 */
static void ignore_stop_signals(void)
{
	struct sigaction ignore = { .sa_handler = SIG_IGN };

	sigaction(SIGINT, &ignore, NULL);
	sigaction(SIGTERM, &ignore, NULL);
	sigaction(SIGPIPE, &ignore, NULL);
}

struct iox_end {
	iox_pub_storage_t pub_storage;
	iox_sub_storage_t sub_storage;
	iox_ws_storage_t ws_storage;
	iox_pub_t pub;
	iox_sub_t sub;
	iox_ws_t ws;
};

/* Publish on `out`, subscribe to `in`, the subscriber on a WaitSet. false:
 * something could not be set up (what says what). */
static bool end_open(struct iox_end *end, const char *out, const char *in, char *what)
{
	iox_pub_options_t pub_options;
	iox_sub_options_t sub_options;

	memset(end, 0, sizeof(*end));
	iox_pub_options_init(&pub_options);
	pub_options.historyCapacity = 0;
	iox_sub_options_init(&sub_options);
	sub_options.queueCapacity = IN_FLIGHT;
	sub_options.historyRequest = 0;
	end->pub = iox_pub_init(&end->pub_storage, SERVICE, INSTANCE, out, &pub_options);
	end->sub = iox_sub_init(&end->sub_storage, SERVICE, INSTANCE, in, &sub_options);
	end->ws = iox_ws_init(&end->ws_storage);
	if (!end->pub || !end->sub || !end->ws) {
		snprintf(what, WHAT_MAX, "iceoryx publisher, subscriber or waitset init");
		return false;
	}
	if (iox_ws_attach_subscriber_state(end->ws, end->sub, SubscriberState_HAS_DATA, 0, NULL) !=
	    WaitSetResult_SUCCESS) {
		snprintf(what, WHAT_MAX, "iox_ws_attach_subscriber_state");
		return false;
	}
	return true;
}

static void end_close(struct iox_end *end)
{
	if (end->ws)
		iox_ws_deinit(end->ws); /* detaches the subscriber */
	if (end->sub)
		iox_sub_deinit(end->sub);
	if (end->pub)
		iox_pub_deinit(end->pub);
	memset(end, 0, sizeof(*end));
}

/* Is the other side still there? NULL if so, else why not (in `what`). */
typedef const char *(*gone_fn)(void *ctx, char *what);

/*
 * The next sample: spin, then sleep on the WaitSet in slices, asking gone()
 * after each. timeout_ms < 0: no limit. 0, or -1 with what said in `what`.
 */
static int take_next(struct iox_end *end, const void **payload, int timeout_ms, gone_fn gone,
		     void *ctx, char *what)
{
	struct timespec slice = { .tv_sec = SLICE_MS / 1000,
				  .tv_nsec = (SLICE_MS % 1000) * 1000000 };
	iox_notification_info_t notes[1];
	int64_t start;

	for (int i = 0; i < SPIN_TAKES; i++) {
		if (iox_sub_take_chunk(end->sub, payload) == ChunkReceiveResult_SUCCESS)
			return 0;
		cpu_relax();
	}
	start = now_ms();
	for (;;) {
		enum iox_ChunkReceiveResult got = iox_sub_take_chunk(end->sub, payload);
		uint64_t missed;

		if (got == ChunkReceiveResult_SUCCESS)
			return 0;
		if (got != ChunkReceiveResult_NO_CHUNK_AVAILABLE) {
			snprintf(what, WHAT_MAX, "iox_sub_take_chunk: result %d", (int)got);
			return -1;
		}
		if (gone(ctx, what))
			return -1;
		if (timeout_ms >= 0 && now_ms() - start >= timeout_ms) {
			snprintf(what, WHAT_MAX, "no sample within %d ms", timeout_ms);
			return -1;
		}
		/* returns at once if a sample came meanwhile (a state, not an event) */
		iox_ws_timed_wait(end->ws, slice, notes, 1, &missed);
	}
}

/* ---- pong: the echo ---- */

struct pong_ctx {
	pid_t ping;
	_Atomic int *stop;
};

static const char *pong_gone(void *ctx, char *what)
{
	struct pong_ctx *pong = ctx;

	if (atomic_load_explicit(pong->stop, memory_order_acquire))
		return snprintf(what, WHAT_MAX, "stop"), what;
	if (getppid() != pong->ping)
		return snprintf(what, WHAT_MAX, "ping is gone"), what;
	return NULL;
}

/* The echo child's exit status: 0 after ping said stop. */
static int pong_main(const struct iox_echo *echo, pid_t ping)
{
	struct pong_ctx ctx = { .ping = ping, .stop = echo->stop };
	char what[WHAT_MAX];
	struct iox_end end;
	int status = 1;

	ignore_stop_signals();
	if (shmrig_topo_bind_thread(echo->pin->topo, echo->pin->peer_cpu))
		return 1;
	iox_set_loglevel(Iceoryx_LogLevel_Error);
	iox_runtime_init(echo->pong_name);
	if (!end_open(&end, "reply", "request", what)) {
		fprintf(stderr, "peer/iceoryx echo: %s\n", what);
		end_close(&end);
		return 1;
	}
	for (;;) {
		const void *sample;
		void *reply;

		if (take_next(&end, &sample, -1, pong_gone, &ctx, what)) {
			status = atomic_load_explicit(echo->stop, memory_order_acquire) ? 0 : 1;
			break;
		}
		/* ping wakes us with one more sample after it set stop */
		if (atomic_load_explicit(echo->stop, memory_order_relaxed)) {
			iox_sub_release_chunk(end.sub, sample);
			status = 0;
			break;
		}
		if (iox_pub_loan_chunk(end.pub, &reply, (uint32_t)echo->bytes) !=
		    AllocationResult_SUCCESS) {
			iox_sub_release_chunk(end.sub, sample);
			break;
		}
		memcpy(reply, sample, echo->bytes);
		iox_pub_publish_chunk(end.pub, reply);
		iox_sub_release_chunk(end.sub, sample);
	}
	end_close(&end);
	return status;
}

/* ---- ping: the caller side ---- */

struct ping_ctx {
	pid_t pong;
	bool reaped;
	int status; /* pong's, once reaped */
};

static const char *ping_gone(void *ctx, char *what)
{
	struct ping_ctx *ping = ctx;
	char how[64];

	if (!ping->reaped && waitpid(ping->pong, &ping->status, WNOHANG) == ping->pong)
		ping->reaped = true;
	if (!ping->reaped)
		return NULL;
	snprintf(what, WHAT_MAX, "the echo process %d %s", (int)ping->pong,
		 describe_status(ping->status, how, sizeof(how)));
	return what;
}

/* One round trip (marked in batch, if not NULL); 0, or -1 with what said in `what`. */
static int round_trip(struct iox_end *end, const unsigned char *payload, size_t bytes,
		      struct ping_ctx *ctx, const void **reply, struct bench_lat_batch *batch,
		      char *what)
{
	void *chunk;
	enum iox_AllocationResult loaned = iox_pub_loan_chunk(end->pub, &chunk, (uint32_t)bytes);

	if (loaned != AllocationResult_SUCCESS) {
		snprintf(what, WHAT_MAX, "iox_pub_loan_chunk(%zu): result %d", bytes, (int)loaned);
		return -1;
	}
	memcpy(chunk, payload, bytes);
	iox_pub_publish_chunk(end->pub, chunk);
	if (batch)
		bench_lat_mark(batch); /* while the echo works */
	return take_next(end, reply, PEER_TIMEOUT_MS, ping_gone, ctx, what);
}

/* Wait until both services are connected (RouDi's discovery loop does it). */
static int await_connection(struct iox_end *end, struct ping_ctx *ctx, char *what)
{
	int64_t start = now_ms();

	while (!iox_pub_has_subscribers(end->pub) ||
	       iox_sub_get_subscription_state(end->sub) != SubscribeState_SUBSCRIBED) {
		if (ping_gone(ctx, what))
			return -1;
		if (now_ms() - start > CONNECT_MS) {
			snprintf(what, WHAT_MAX,
				 "publisher and subscriber not connected within %d ms", CONNECT_MS);
			return -1;
		}
		sleep_ms(1);
	}
	return 0;
}

static int send_result(int fd, int32_t status, double seconds, const char *what)
{
	struct ping_result result = { .status = status, .seconds = seconds };

	snprintf(result.what, sizeof(result.what), "%s", what ? what : "");
	return write(fd, &result, sizeof(result)) == (ssize_t)sizeof(result) ? 0 : -1;
}

/* Set up, check the payload once, then run the batches shmrig-bench asks for. */
static int ping_run(const struct iox_echo *echo, struct iox_end *end, struct ping_ctx *ctx,
		    int cmd_fd, int result_fd)
{
	unsigned char *payload = malloc(echo->bytes);
	struct bench_lat_batch timed;
	char what[WHAT_MAX] = "";
	const void *reply;
	int ret = -1;

	if (!payload) {
		send_result(result_fd, 1, 0, "out of memory");
		return -1;
	}
	fill_payload(payload, echo->bytes);
	iox_set_loglevel(Iceoryx_LogLevel_Error);
	iox_runtime_init(echo->ping_name);
	if (!end_open(end, "request", "reply", what) || await_connection(end, ctx, what) ||
	    round_trip(end, payload, echo->bytes, ctx, &reply, NULL, what))
		goto out;
	/* Checked before timing: the reply holds the request's bytes. */
	if (memcmp(reply, payload, echo->bytes)) {
		iox_sub_release_chunk(end->sub, reply);
		snprintf(what, WHAT_MAX, "the reply differs from the request");
		goto out;
	}
	iox_sub_release_chunk(end->sub, reply);
	if (send_result(result_fd, 0, 0, NULL))
		goto out_quiet;
	for (;;) {
		int64_t batch;
		double batch_s;
		ssize_t got = read(cmd_fd, &batch, sizeof(batch));

		if (got < 0 && errno == EINTR)
			continue;
		if (got != (ssize_t)sizeof(batch) || batch <= 0) {
			/* EOF: the run is over (or shmrig-bench is gone) */
			ret = 0;
			goto out_quiet;
		}
		bench_lat_batch_start(&timed);
		for (int64_t i = 0; i < batch; i++) {
			if (round_trip(end, payload, echo->bytes, ctx, &reply, &timed, what))
				goto out;
			iox_sub_release_chunk(end->sub, reply);
		}
		/* recorded before the answer: shmrig-bench reads them after the last */
		batch_s = bench_lat_batch_end(&timed, echo->lat);
		if (send_result(result_fd, 0, batch_s, NULL))
			goto out_quiet;
	}
out:
	send_result(result_fd, 1, 0, what);
out_quiet:
	free(payload);
	return ret;
}

/* The caller side: forks the echo, runs, stops it. Its exit status. */
static int ping_main(const struct iox_echo *echo, int cmd_fd, int result_fd)
{
	struct ping_ctx ctx = { 0 };
	struct iox_end end;
	pid_t self = getpid();
	int ret;

	memset(&end, 0, sizeof(end));
	ignore_stop_signals();
	fflush(NULL);
	ctx.pong = fork();
	if (ctx.pong < 0) {
		send_result(result_fd, 1, 0, "fork the echo process");
		return 1;
	}
	if (ctx.pong == 0) {
		close(cmd_fd);
		close(result_fd);
		exit(pong_main(echo, self)); /* exit(): see ping's */
	}
	ret = ping_run(echo, &end, &ctx, cmd_fd, result_fd);
	/* Stop the echo: the flag, and one more sample to wake it if it sleeps. */
	atomic_store_explicit(echo->stop, 1, memory_order_release);
	if (end.pub) {
		void *wake;

		if (iox_pub_loan_chunk(end.pub, &wake, 1) == AllocationResult_SUCCESS)
			iox_pub_publish_chunk(end.pub, wake);
	}
	if (!ctx.reaped) {
		ctx.status = bench_reap_child(ctx.pong);
		ctx.reaped = true;
	}
	end_close(&end);
	/* shmrig-bench died: its temporary directory is ours to remove (RouDi
	 * stops on its own, by the signal it gets when shmrig-bench dies) */
	if (getppid() != echo->bench)
		remove_files(echo->roudi);
	if (ctx.status < 0 || !WIFEXITED(ctx.status) || WEXITSTATUS(ctx.status) != 0)
		ret = -1;
	return ret ? 1 : 0;
}

/* ---- the benchmark: shmrig-bench's side ---- */

/* Read ping's answer within timeout_ms. 0, or -1 with the reason in `what`. */
static int read_result(int fd, struct ping_result *result, int timeout_ms, char *what, size_t size)
{
	struct pollfd ready = { .fd = fd, .events = POLLIN };
	int polled;
	ssize_t got;

	do
		polled = poll(&ready, 1, timeout_ms);
	while (polled < 0 && errno == EINTR);
	if (polled == 0) {
		snprintf(what, size, "no answer from the iceoryx caller within %d ms", timeout_ms);
		return -1;
	}
	do
		got = read(fd, result, sizeof(*result));
	while (got < 0 && errno == EINTR);
	if (got != (ssize_t)sizeof(*result)) {
		snprintf(what, size, "the iceoryx caller ended without an answer");
		return -1;
	}
	result->what[sizeof(result->what) - 1] = '\0';
	if (result->status) {
		snprintf(what, size, "%s", result->what);
		return -1;
	}
	return 0;
}

/* Calls per timed batch: each batch costs a pipe round trip to ping, untimed. */
static int64_t calls_per_batch(int64_t bytes)
{
	return bytes >= (1 << 20) ? 4 : bytes >= (64 << 10) ? 16 : 256;
}

static void bm_iox_echo(gbench_state *st, void *arg)
{
	size_t bytes = (size_t)gbench_range(st, 0);
	int64_t batch = calls_per_batch((int64_t)bytes);
	int cmd[2] = { -1, -1 }, result[2] = { -1, -1 };
	char what[WHAT_MAX + 64], label[160];
	struct ping_result answer;
	struct bench_pinning pin;
	struct iox_echo echo;
	struct roudi roudi;
	pid_t ping = -1;
	bool ok;

	(void)arg;
	memset(&echo, 0, sizeof(echo));
	echo.bytes = bytes;
	echo.pin = &pin;
	echo.roudi = &roudi;
	echo.bench = getpid();
	/* unique on the machine: RouDi refuses a second runtime of one name */
	snprintf(echo.ping_name, sizeof(echo.ping_name), "shmrig-bench-ping-%d", (int)getpid());
	snprintf(echo.pong_name, sizeof(echo.pong_name), "shmrig-bench-pong-%d", (int)getpid());
	if (!bench_pin_start(st, &pin))
		return;
	if (!roudi_start(st, &roudi, &echo, &pin))
		goto unpin;
	echo.stop = mmap(NULL, sizeof(*echo.stop), PROT_READ | PROT_WRITE,
			 MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (echo.stop == MAP_FAILED) {
		echo.stop = NULL;
		bench_fail_os(st, "mmap", -errno);
		goto stop_roudi;
	}
	echo.lat = mmap(NULL, sizeof(*echo.lat), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS,
			-1, 0);
	if (echo.lat == MAP_FAILED) {
		echo.lat = NULL;
		bench_fail_os(st, "mmap", -errno);
		goto stop_roudi;
	}
	bench_lat_init(echo.lat);
	if (pipe2(cmd, O_CLOEXEC) || pipe2(result, O_CLOEXEC)) {
		bench_fail_os(st, "pipe", -errno);
		goto stop_roudi;
	}
	fflush(NULL);
	ping = fork();
	if (ping < 0) {
		bench_fail_os(st, "fork", -errno);
		goto stop_roudi;
	}
	if (ping == 0) {
		close(cmd[1]);
		close(result[0]);
		/* exit(), not _exit(): the runtime's destructor unregisters from RouDi */
		exit(ping_main(&echo, cmd[0], result[1]));
	}
	close(cmd[0]);
	close(result[1]);
	cmd[0] = result[1] = -1;
	ok = read_result(result[0], &answer, SETUP_TIMEOUT_MS, what, sizeof(what)) == 0;
	if (!ok) {
		char message[sizeof(what) + 32];

		snprintf(message, sizeof(message), "failed: %s", what);
		gbench_skip(st, message);
	}
	snprintf(label, sizeof(label),
		 "iceoryx %s C binding, %zu B each way, echo on cpu %d, spin then WaitSet",
		 SHMRIG_BENCH_ICEORYX_VERSION, bytes, pin.peer_cpu);
	gbench_set_label(st, label);
	while (ok && gbench_loop(st, batch)) {
		ok = write(cmd[1], &batch, sizeof(batch)) == (ssize_t)sizeof(batch) &&
		     read_result(result[0], &answer, 2 * PEER_TIMEOUT_MS, what, sizeof(what)) == 0;
		if (!ok) {
			char message[sizeof(what) + 32];

			snprintf(message, sizeof(message), "failed: round trips: %s", what);
			gbench_skip(st, message);
			break;
		}
		gbench_set_iteration_time(st, answer.seconds);
	}
	if (ok)
		gbench_set_bytes_processed(st, gbench_iterations(st) * (int64_t)bytes);
	/* EOF ends ping, which stops the echo */
	close(cmd[1]);
	cmd[1] = -1;
	bench_check_peer_exit(st, ping);
	if (ok) /* ping has written its last and is gone */
		bench_lat_counters(st, echo.lat);
stop_roudi:
	for (int i = 0; i < 2; i++) {
		if (cmd[i] >= 0)
			close(cmd[i]);
		if (result[i] >= 0)
			close(result[i]);
	}
	if (echo.stop)
		munmap(echo.stop, sizeof(*echo.stop));
	if (echo.lat)
		munmap(echo.lat, sizeof(*echo.lat));
	roudi_stop(st, &roudi);
unpin:
	bench_pin_end(&pin);
}

#endif /* HAVE_ICEORYX */

void bench_peer_iox_register(void)
{
	gbench_benchmark *b =
		gbench_unit(gbench_use_manual_time(
				    gbench_register("peer/iceoryx/echo", bm_iox_echo, NULL)),
			    'u');

	for (int i = 0; i < ECHO_SIZES_COUNT; i++)
		b = gbench_arg(b, echo_sizes[i]);
#ifdef HAVE_ICEORYX
	gbench_add_context("iceoryx_version", SHMRIG_BENCH_ICEORYX_VERSION);
#else
	gbench_add_context("iceoryx_version", "not built");
#endif
}
