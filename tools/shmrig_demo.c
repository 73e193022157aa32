/* SPDX-License-Identifier: MIT */
/*
 * shmrig-demo: an end-to-end check of the pool across two processes.
 *
 * The parent allocates N blocks, fills each with a deterministic pseudo-random
 * stream (splitmix64 seeded by the block index) and hashes it (XXH3-64). A
 * forked child opens its own pool handle on the same prefix, attaches every
 * block by its ref and hashes it again; it reports through a pipe and its exit
 * status. The parent then shows what the pool says about itself (backing,
 * live blocks per class and per owner), frees everything, closes the pool
 * (which must find no leak), sweeps, and writes a JSON record.
 *
 * scripts/run drives it and names the JSON file; see README.md.
 * Exit status: 0 verified and no leak, 1 any failure, 2 bad usage.
 */
#include <shmrig/shmrig.h>

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <jansson.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <xxhash.h>

#ifndef SHMRIG_DEMO_VERSION
#define SHMRIG_DEMO_VERSION "unknown"
#endif

/* Bump when a field of the JSON record changes meaning or goes away. */
#define DEMO_SCHEMA "shmrig-demo/1"

#define DEMO_DEFAULT_BLOCKS 64ul
#define DEMO_DEFAULT_SIZE ((size_t)1 << 20)
#define DEMO_DEFAULT_TIMEOUT_S 60u
/* The tag of block i is DEMO_TAG_BASE + i: distinct, and recognisable in a
 * leak report. The block limit keeps i inside the low 24 bits. */
#define DEMO_TAG_BASE 0xde000000u
#define DEMO_MAX_BLOCKS (1ul << 20)
#define DEMO_MAX_OWNERS 16
#define DEMO_MSG_MAX 256

struct demo_config {
	unsigned long blocks;
	size_t size;
	const char *prefix; /* NULL: the pool's default ($SHMRIG_PREFIX, else "shmrig") */
	const char *json_path;
	unsigned timeout_s;
};

struct block {
	struct shmrig_ref ref;
	void *data;
	uint64_t hash; /* XXH3-64 of the first config.size bytes, computed by the parent */
};

/*
 * What the child sends back. It is written once, with one write() of less than
 * PIPE_BUF bytes, so the parent reads all of it or nothing.
 */
struct child_report {
	uint64_t attached;
	uint64_t mismatches;
	uint64_t attach_errors;
	uint64_t live_blocks_seen; /* live_blocks of the child's own shmrig_pool_stats() */
	int64_t first_bad_block;   /* -1: none */
	int32_t open_rc;
	int32_t close_rc;
	double verify_ms;
	char message[DEMO_MSG_MAX]; /* the first failure, in words; "" if none */
};

struct machine_info {
	char arch[65];
	char kernel[160];
	char cpu_model[256];
	long nproc;
	long long mem_total_kib;
	long long hugepages_total;
	long long hugepages_free;
	long long hugepage_size_kib;
	char thp_shmem[32];
};

/* Everything one run found out: the table and the JSON are both made from this. */
struct demo_run {
	bool pool_opened;
	char prefix[SHMRIG_PREFIX_MAX + 1];
	size_t arena_size;
	size_t max_bytes;
	char backing[16];
	size_t page_size;
	int numa_node;
	char reason[512];
	int pages_node; /* node holding the first block's pages, or -errno */

	uint64_t allocated;
	uint64_t content_bytes; /* sum of ref.content_size over the allocated blocks */
	double fill_ms;

	bool have_stats;
	struct shmrig_pool_stats stats;
	unsigned class_count; /* classes shown: at most SHMRIG_POOL_NUM_CLASSES */
	struct shmrig_pool_class_stats classes[SHMRIG_POOL_NUM_CLASSES];
	int owner_count; /* distinct owners; may exceed DEMO_MAX_OWNERS */
	struct shmrig_owner_stats owners[DEMO_MAX_OWNERS];
	bool accounting_ok;

	bool child_ran;
	pid_t child_pid;
	int child_status; /* exit code, 128 + signal, or -1: timed out */
	bool report_ok;   /* a complete report came through the pipe */
	struct child_report report;
	bool verified;

	uint64_t freed;
	uint64_t free_errors;
	int64_t live_after_free; /* -1: unknown */
	int close_rc;
	int segments_left; /* segments this process created that still exist after close */
	int swept;

	char error[512]; /* the first failure, in words; "" if none */
	bool ok;
};

static void usage(FILE *out, const char *argv0)
{
	fprintf(out,
		"Usage: %s [options]\n"
		"\n"
		"Allocate blocks in a shmrig pool, fill and hash them, verify them from a\n"
		"forked child that attaches every block by reference, report the pool's\n"
		"accounting, free everything and check that nothing leaked.\n"
		"\n"
		"  -n, --blocks N      number of blocks (default %lu, at most %lu)\n"
		"  -s, --size BYTES    bytes per block, with K, M or G (default 1M)\n"
		"  -p, --prefix P      segment name prefix (default $SHMRIG_PREFIX, else \"%s\")\n"
		"  -j, --json FILE     also write the result as JSON to FILE\n"
		"  -t, --timeout SEC   give the child this long to verify (default %u)\n"
		"  -h, --help          this text\n"
		"\n"
		"Environment: SHMRIG_GIT_REV (recorded in the JSON), and the pool's\n"
		"SHMRIG_PREFIX, SHMRIG_ARENA_SIZE, SHMRIG_POOL_MAX, SHMRIG_HUGETLBFS.\n"
		"Exit status: 0 verified and no leak, 1 a failure, 2 bad usage.\n",
		argv0, DEMO_DEFAULT_BLOCKS, DEMO_MAX_BLOCKS, SHMRIG_DEFAULT_PREFIX,
		DEMO_DEFAULT_TIMEOUT_S);
}

/* 0: go on; 1: --help was printed; 2: bad usage (message printed). */
static int parse_args(int argc, char **argv, struct demo_config *cfg)
{
	static const struct option options[] = {
		{ "blocks", required_argument, NULL, 'n' },
		{ "size", required_argument, NULL, 's' },
		{ "prefix", required_argument, NULL, 'p' },
		{ "json", required_argument, NULL, 'j' },
		{ "timeout", required_argument, NULL, 't' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	unsigned long value;
	char *end;
	int opt, rc;

	*cfg = (struct demo_config){
		.blocks = DEMO_DEFAULT_BLOCKS,
		.size = DEMO_DEFAULT_SIZE,
		.timeout_s = DEMO_DEFAULT_TIMEOUT_S,
	};
	while ((opt = getopt_long(argc, argv, "n:s:p:j:t:h", options, NULL)) != -1) {
		switch (opt) {
		case 'n':
			errno = 0;
			value = strtoul(optarg, &end, 10);
			if (errno || end == optarg || *end || optarg[0] == '-' || value == 0 ||
			    value > DEMO_MAX_BLOCKS) {
				fprintf(stderr,
					"shmrig-demo: --blocks '%s': want a number from 1 to %lu\n",
					optarg, DEMO_MAX_BLOCKS);
				return 2;
			}
			cfg->blocks = value;
			break;
		case 's':
			rc = shmrig_parse_size(optarg, &cfg->size);
			if (rc || cfg->size == 0) {
				fprintf(stderr, "shmrig-demo: --size '%s': %s\n", optarg,
					rc ? shmrig_last_error() : "want at least 1 byte");
				return 2;
			}
			break;
		case 'p':
			cfg->prefix = optarg;
			break;
		case 'j':
			cfg->json_path = optarg;
			break;
		case 't':
			errno = 0;
			value = strtoul(optarg, &end, 10);
			if (errno || end == optarg || *end || optarg[0] == '-' || value == 0 ||
			    value > 3600) {
				fprintf(stderr,
					"shmrig-demo: --timeout '%s': want seconds from 1 to 3600\n",
					optarg);
				return 2;
			}
			cfg->timeout_s = (unsigned)value;
			break;
		case 'h':
			usage(stdout, argv[0]);
			return 1;
		default:
			usage(stderr, argv[0]);
			return 2;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "shmrig-demo: unexpected argument '%s' (see --help)\n",
			argv[optind]);
		return 2;
	}
	if (cfg->size > SIZE_MAX / cfg->blocks) {
		fprintf(stderr, "shmrig-demo: %lu blocks of %zu bytes do not fit in memory\n",
			cfg->blocks, cfg->size);
		return 2;
	}
	return 0;
}

static double now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* "what: <strerror> (<last error>)"; read shmrig_last_error() right after the failing call. */
static void describe_error(char *buf, size_t len, const char *what, int rc)
{
	const char *detail = shmrig_last_error();

	if (detail && *detail)
		snprintf(buf, len, "%s: %s (%s)", what, shmrig_strerror(rc), detail);
	else
		snprintf(buf, len, "%s: %s", what, shmrig_strerror(rc));
}

/* Print a failure and keep the first one for the summary and the JSON. */
static void run_fail(struct demo_run *run, const char *message)
{
	fprintf(stderr, "shmrig-demo: %s\n", message);
	if (!run->error[0])
		snprintf(run->error, sizeof(run->error), "%s", message);
}

/* For a failed shmrig call: the code in words, and what the library said. */
static void run_fail_rc(struct demo_run *run, const char *what, int rc)
{
	char message[sizeof(run->error)];

	describe_error(message, sizeof(message), what, rc);
	run_fail(run, message);
}

/* For a failed system call. */
static void run_fail_errno(struct demo_run *run, const char *what, int err)
{
	char message[sizeof(run->error)];

	snprintf(message, sizeof(message), "%s: %s", what, strerror(err));
	run_fail(run, message);
}

/* splitmix64 (Steele, Lea, Flood 2014): a fast, well-mixed, seedable stream. */
static uint64_t splitmix64(uint64_t *state)
{
	uint64_t z = (*state += 0x9e3779b97f4a7c15ull);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

/* The content of block `index`: the same bytes on every run and machine. */
static void fill_block(void *data, size_t size, uint64_t index)
{
	unsigned char *bytes = data;
	uint64_t state = index, word;
	size_t done;

	for (done = 0; done + sizeof(word) <= size; done += sizeof(word)) {
		word = splitmix64(&state);
		memcpy(bytes + done, &word, sizeof(word));
	}
	if (done < size) {
		word = splitmix64(&state);
		memcpy(bytes + done, &word, size - done);
	}
}

static void copy_string(char *dst, size_t len, const char *src)
{
	snprintf(dst, len, "%s", src ? src : "");
}

/* Stop at the first failure: the blocks allocated so far are freed later. */
static void allocate_and_fill(const struct demo_config *cfg, shmrig_pool *pool,
			      struct block *blocks, struct demo_run *run)
{
	double start = now_ms();
	char what[128];
	uint64_t i;
	int rc;

	for (i = 0; i < cfg->blocks; i++) {
		struct block *b = &blocks[i];

		rc = shmrig_pool_alloc(pool, cfg->size, 0, DEMO_TAG_BASE + (uint32_t)i, &b->ref,
				       &b->data);
		if (rc) {
			snprintf(what, sizeof(what), "allocating block %" PRIu64 " of %zu bytes", i,
				 cfg->size);
			run_fail_rc(run, what, rc);
			break;
		}
		run->allocated++;
		run->content_bytes += b->ref.content_size;
		if (b->ref.size < cfg->size) {
			snprintf(what, sizeof(what),
				 "block %" PRIu64 " has %" PRIu64 " usable bytes, asked for %zu", i,
				 b->ref.size, cfg->size);
			run_fail(run, what);
			break;
		}
		fill_block(b->data, cfg->size, i);
		b->hash = XXH3_64bits(b->data, cfg->size);
	}
	run->fill_ms = now_ms() - start;
}

static void read_pool_info(shmrig_pool *pool, struct demo_run *run)
{
	struct shmrig_pool_info info = SHMRIG_SIZED(struct shmrig_pool_info);
	int rc = shmrig_pool_info(pool, &info);

	if (rc) {
		run_fail_rc(run, "shmrig_pool_info", rc);
		return;
	}
	/* The strings live only until the next call on the pool: copy them. */
	copy_string(run->prefix, sizeof(run->prefix), info.prefix);
	copy_string(run->backing, sizeof(run->backing), shmrig_backing_name(info.backing));
	copy_string(run->reason, sizeof(run->reason), info.reason);
	run->arena_size = info.arena_size;
	run->max_bytes = info.max_bytes;
	run->page_size = info.page_size;
	run->numa_node = info.numa_node;
}

/* Per-class and per-owner accounting must match what this process allocated. */
static void read_accounting(shmrig_pool *pool, struct demo_run *run)
{
	char message[256];
	const struct shmrig_owner_stats *self = NULL;
	int rc, i, shown;

	run->stats = SHMRIG_SIZED(struct shmrig_pool_stats);
	rc = shmrig_pool_stats(pool, &run->stats);
	if (rc) {
		run_fail_rc(run, "shmrig_pool_stats", rc);
		return;
	}
	run->classes[0] = SHMRIG_SIZED(struct shmrig_pool_class_stats);
	rc = shmrig_pool_class_stats(pool, run->classes, SHMRIG_POOL_NUM_CLASSES);
	if (rc < 0) {
		run_fail_rc(run, "shmrig_pool_class_stats", rc);
		return;
	}
	run->class_count = rc < SHMRIG_POOL_NUM_CLASSES ? (unsigned)rc : SHMRIG_POOL_NUM_CLASSES;
	run->owners[0] = SHMRIG_SIZED(struct shmrig_owner_stats);
	rc = shmrig_pool_owner_stats(pool, run->owners, DEMO_MAX_OWNERS);
	if (rc < 0) {
		run_fail_rc(run, "shmrig_pool_owner_stats", rc);
		return;
	}
	run->have_stats = true;
	run->owner_count = rc;
	shown = rc < DEMO_MAX_OWNERS ? rc : DEMO_MAX_OWNERS;
	for (i = 0; i < shown; i++)
		if (run->owners[i].pid == getpid())
			self = &run->owners[i];

	if (run->stats.live_blocks != run->allocated ||
	    run->stats.live_bytes != run->content_bytes) {
		snprintf(message, sizeof(message),
			 "accounting: pool reports %" PRIu64 " live blocks / %" PRIu64
			 " bytes, this process allocated %" PRIu64 " / %" PRIu64,
			 run->stats.live_blocks, run->stats.live_bytes, run->allocated,
			 run->content_bytes);
		run_fail(run, message);
		return;
	}
	if (run->owner_count != 1 || !self || self->live_blocks != run->allocated ||
	    self->live_bytes != run->content_bytes) {
		snprintf(message, sizeof(message),
			 "accounting: expected one owner (pid %d) with %" PRIu64
			 " live blocks, pool reports %d owner(s)%s",
			 (int)getpid(), run->allocated, run->owner_count,
			 self ? "" : ", none of them this process");
		run_fail(run, message);
		return;
	}
	run->accounting_ok = true;
}

static void child_note(struct child_report *report, const char *message)
{
	if (!report->message[0])
		snprintf(report->message, sizeof(report->message), "%s", message);
}

/*
 * The child: a second process with its own pool handle. The refs and expected
 * hashes reach it through fork's copy of the parent's memory; a ref is plain
 * data (a segment name and offsets, no pointer), which is what lets it travel.
 * Only the parent's data pointers must not be used here, and are not.
 */
static int child_main(const struct demo_config *cfg, const char *prefix, const struct block *blocks,
		      uint64_t count, int report_fd)
{
	struct shmrig_pool_opts opts = { .size = sizeof(struct shmrig_pool_opts),
					 .prefix = prefix };
	struct child_report report = { .first_bad_block = -1 };
	struct shmrig_pool_stats stats = SHMRIG_SIZED(struct shmrig_pool_stats);
	shmrig_pool *pool = NULL;
	char message[DEMO_MSG_MAX], what[64];
	double start = now_ms();
	ssize_t written;
	uint64_t i;
	int rc;

	report.open_rc = shmrig_pool_open(&opts, &pool);
	if (report.open_rc) {
		describe_error(message, sizeof(message), "child: shmrig_pool_open", report.open_rc);
		child_note(&report, message);
		goto send;
	}
	for (i = 0; i < count; i++) {
		void *data;

		rc = shmrig_pool_attach(pool, &blocks[i].ref, &data);
		if (rc) {
			snprintf(what, sizeof(what), "child: attaching block %" PRIu64, i);
			describe_error(message, sizeof(message), what, rc);
			child_note(&report, message);
			report.attach_errors++;
			if (report.first_bad_block < 0)
				report.first_bad_block = (int64_t)i;
			continue;
		}
		report.attached++;
		if (XXH3_64bits(data, cfg->size) != blocks[i].hash) {
			snprintf(message, sizeof(message),
				 "child: block %" PRIu64 " (%s + %" PRIu64
				 ") does not hash as the parent wrote it",
				 i, blocks[i].ref.name, blocks[i].ref.offset);
			child_note(&report, message);
			report.mismatches++;
			if (report.first_bad_block < 0)
				report.first_bad_block = (int64_t)i;
		}
	}
	report.verify_ms = now_ms() - start;
	rc = shmrig_pool_stats(pool, &stats);
	if (rc) {
		describe_error(message, sizeof(message), "child: shmrig_pool_stats", rc);
		child_note(&report, message);
	} else {
		report.live_blocks_seen = stats.live_blocks;
	}
	report.close_rc = shmrig_pool_close(pool);
	if (report.close_rc) {
		describe_error(message, sizeof(message), "child: shmrig_pool_close",
			       report.close_rc);
		child_note(&report, message);
	}
send:
	written = write(report_fd, &report, sizeof(report));
	close(report_fd);
	if (written != (ssize_t)sizeof(report))
		return 2;
	return report.open_rc || report.close_rc || report.attach_errors || report.mismatches ||
	       report.attached != count;
}

static int decode_status(int status)
{
	if (WIFEXITED(status))
		return WEXITSTATUS(status);
	if (WIFSIGNALED(status))
		return 128 + WTERMSIG(status);
	return -1;
}

/*
 * Wait for `pid` for at most timeout_ms, then kill it. Returns its exit status
 * (0..255), 128 + signal if a signal ended it, -1 if it timed out, -2 if
 * waiting failed (*wait_errno says why). A pidfd lets poll() sleep until the
 * exit; without pidfd_open() (or if poll fails) a waitpid(WNOHANG) loop keeps
 * the same deadline. Either way this never blocks past the deadline.
 */
static int wait_child(pid_t pid, unsigned timeout_ms, int *wait_errno)
{
	double deadline = now_ms() + timeout_ms;
	int pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
	int status, ready;
	pid_t got;

	if (pidfd >= 0) {
		struct pollfd pfd = { .fd = pidfd, .events = POLLIN };

		do {
			double left = deadline - now_ms();

			ready = poll(&pfd, 1, left > 0 ? (int)left + 1 : 0);
		} while (ready < 0 && errno == EINTR);
		close(pidfd);
		if (ready == 0)
			goto timeout;
		if (ready > 0)
			goto reap;
	}
	for (;;) {
		struct timespec tick = { .tv_nsec = 10 * 1000 * 1000 };

		got = waitpid(pid, &status, WNOHANG);
		if (got == pid)
			return decode_status(status);
		if (got < 0 && errno != EINTR) {
			*wait_errno = errno;
			return -2;
		}
		if (now_ms() >= deadline)
			goto timeout;
		nanosleep(&tick, NULL);
	}
reap:
	/* The pidfd said the child has exited: this returns at once. */
	while (waitpid(pid, &status, 0) < 0) {
		if (errno != EINTR) {
			*wait_errno = errno;
			return -2;
		}
	}
	return decode_status(status);
timeout:
	kill(pid, SIGKILL);
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	return -1;
}

static void verify_in_child(const struct demo_config *cfg, const struct block *blocks,
			    struct demo_run *run)
{
	char message[DEMO_MSG_MAX + 128];
	int fds[2], wait_errno = 0;
	ssize_t got;
	pid_t pid;

	if (pipe2(fds, O_CLOEXEC)) {
		run_fail_errno(run, "pipe2", errno);
		return;
	}
	/* Nothing buffered may be written twice, once by each process. */
	fflush(NULL);
	pid = fork();
	if (pid < 0) {
		run_fail_errno(run, "fork", errno);
		close(fds[0]);
		close(fds[1]);
		return;
	}
	if (pid == 0) {
		close(fds[0]);
		_exit(child_main(cfg, run->prefix, blocks, run->allocated, fds[1]));
	}
	close(fds[1]);
	run->child_ran = true;
	run->child_pid = pid;
	run->child_status = wait_child(pid, cfg->timeout_s * 1000u, &wait_errno);
	/* The child is gone, so this read finds its whole report or end of file. */
	do
		got = read(fds[0], &run->report, sizeof(run->report));
	while (got < 0 && errno == EINTR);
	close(fds[0]);
	run->report_ok = got == (ssize_t)sizeof(run->report);
	if (!run->report_ok)
		run->report = (struct child_report){ .first_bad_block = -1 };
	run->report.message[sizeof(run->report.message) - 1] = '\0';

	if (run->child_status == -1) {
		snprintf(message, sizeof(message), "child %d did not finish within %u s; killed",
			 (int)pid, cfg->timeout_s);
	} else if (run->child_status == -2) {
		snprintf(message, sizeof(message), "waiting for child %d: %s", (int)pid,
			 strerror(wait_errno));
	} else if (run->child_status > 128) {
		snprintf(message, sizeof(message), "child %d was killed by signal %d (%s)",
			 (int)pid, run->child_status - 128, strsignal(run->child_status - 128));
	} else if (!run->report_ok) {
		snprintf(message, sizeof(message), "child %d exited %d without a report", (int)pid,
			 run->child_status);
	} else if (run->child_status != 0 || run->report.attached != run->allocated ||
		   run->report.mismatches || run->report.attach_errors) {
		snprintf(message, sizeof(message),
			 "verification failed: %" PRIu64 "/%" PRIu64 " attached, %" PRIu64
			 " mismatches, %" PRIu64 " attach errors; first: %s",
			 run->report.attached, run->allocated, run->report.mismatches,
			 run->report.attach_errors,
			 run->report.message[0] ? run->report.message : "(no message)");
	} else if (run->report.live_blocks_seen != run->allocated) {
		snprintf(message, sizeof(message),
			 "accounting: the child sees %" PRIu64
			 " live blocks, the parent holds %" PRIu64,
			 run->report.live_blocks_seen, run->allocated);
	} else {
		run->verified = true;
		return;
	}
	run_fail(run, message);
}

static void free_all(shmrig_pool *pool, const struct block *blocks, struct demo_run *run)
{
	struct shmrig_pool_stats after = SHMRIG_SIZED(struct shmrig_pool_stats);
	char what[64];
	uint64_t i;
	int rc;

	for (i = 0; i < run->allocated; i++) {
		rc = shmrig_pool_free(pool, &blocks[i].ref);
		if (rc) {
			run->free_errors++;
			snprintf(what, sizeof(what), "freeing block %" PRIu64, i);
			run_fail_rc(run, what, rc);
			continue;
		}
		run->freed++;
	}
	run->live_after_free = -1;
	rc = shmrig_pool_stats(pool, &after);
	if (rc) {
		run_fail_rc(run, "shmrig_pool_stats after free", rc);
		return;
	}
	run->live_after_free = (int64_t)after.live_blocks;
	if (after.live_blocks) {
		snprintf(what, sizeof(what), "%" PRIu64 " blocks still live after freeing all",
			 after.live_blocks);
		run_fail(run, what);
	}
}

struct own_segments {
	const char *prefix;
	pid_t self;
	int count;
};

static void count_own_segment(void *arg, const char *name)
{
	struct own_segments *own = arg;
	pid_t creator;

	if (shmrig_segment_parse_name(own->prefix, name, &creator, NULL) == 0 &&
	    creator == own->self)
		own->count++;
}

/* After close: nothing this process created may remain; remove what dead runs left. */
static void check_segments(struct demo_run *run)
{
	struct own_segments own = { .prefix = run->prefix, .self = getpid() };
	char message[128];
	int rc;

	rc = shmrig_segment_list(run->prefix, count_own_segment, &own);
	if (rc < 0) {
		run_fail_rc(run, "listing segments", rc);
	} else {
		run->segments_left = own.count;
		if (own.count) {
			snprintf(message, sizeof(message),
				 "%d segment(s) of this process remain after close", own.count);
			run_fail(run, message);
		}
	}
	rc = shmrig_segment_sweep(run->prefix);
	if (rc < 0)
		run_fail_rc(run, "sweeping segments of dead processes", rc);
	else
		run->swept = rc;
}

static void run_demo(const struct demo_config *cfg, struct demo_run *run)
{
	struct shmrig_pool_opts opts = { .size = sizeof(struct shmrig_pool_opts),
					 .prefix = cfg->prefix };
	shmrig_pool *pool = NULL;
	struct block *blocks;
	int rc;

	run->numa_node = -1;
	run->pages_node = -ENOENT;
	run->live_after_free = -1;
	copy_string(run->prefix, sizeof(run->prefix), cfg->prefix);
	blocks = calloc(cfg->blocks, sizeof(*blocks));
	if (!blocks) {
		run_fail(run, "out of memory for the block table");
		return;
	}
	rc = shmrig_pool_open(&opts, &pool);
	if (rc) {
		run_fail_rc(run, "shmrig_pool_open", rc);
		free(blocks);
		return;
	}
	run->pool_opened = true;

	allocate_and_fill(cfg, pool, blocks, run);
	/* After the first allocation the info describes a real segment. */
	read_pool_info(pool, run);
	if (run->allocated) {
		shmrig_topo *topo = shmrig_topo_system();

		run->pages_node = topo ? shmrig_topo_area_node(topo, blocks[0].data, cfg->size) :
					 -ENODEV;
	}
	if (run->allocated == cfg->blocks && !run->error[0]) {
		verify_in_child(cfg, blocks, run);
		read_accounting(pool, run);
	}
	free_all(pool, blocks, run);

	run->close_rc = shmrig_pool_close(pool);
	if (run->close_rc)
		run_fail_rc(run, "shmrig_pool_close (blocks leaked; see the report above)",
			    run->close_rc);
	if (run->prefix[0])
		check_segments(run);
	free(blocks);
}

/* --- machine description (nothing that names the host) --- */

static void read_file_line(const char *path, char *buf, size_t len)
{
	FILE *file = fopen(path, "r");

	buf[0] = '\0';
	if (!file)
		return;
	if (fgets(buf, (int)len, file))
		buf[strcspn(buf, "\n")] = '\0';
	fclose(file);
}

static void read_machine(struct machine_info *machine)
{
	struct utsname uts;
	char line[512], *value, *open_bracket, *close_bracket;
	FILE *file;
	long long number;

	*machine = (struct machine_info){ .hugepages_total = -1, .hugepages_free = -1 };
	if (uname(&uts) == 0) {
		copy_string(machine->arch, sizeof(machine->arch), uts.machine);
		snprintf(machine->kernel, sizeof(machine->kernel), "%s %s", uts.sysname,
			 uts.release);
	}
	machine->nproc = sysconf(_SC_NPROCESSORS_ONLN);

	file = fopen("/proc/cpuinfo", "r");
	while (file && fgets(line, sizeof(line), file)) {
		/* x86 and most others say "model name"; older arm kernels "Processor". */
		if (strncmp(line, "model name", 10) && strncmp(line, "Processor", 9))
			continue;
		value = strchr(line, ':');
		if (!value)
			continue;
		value += strspn(value + 1, " \t") + 1;
		value[strcspn(value, "\n")] = '\0';
		copy_string(machine->cpu_model, sizeof(machine->cpu_model), value);
		break;
	}
	if (file)
		fclose(file);

	file = fopen("/proc/meminfo", "r");
	while (file && fgets(line, sizeof(line), file)) {
		if (sscanf(line, "MemTotal: %lld", &number) == 1)
			machine->mem_total_kib = number;
		else if (sscanf(line, "HugePages_Total: %lld", &number) == 1)
			machine->hugepages_total = number;
		else if (sscanf(line, "HugePages_Free: %lld", &number) == 1)
			machine->hugepages_free = number;
		else if (sscanf(line, "Hugepagesize: %lld", &number) == 1)
			machine->hugepage_size_kib = number;
	}
	if (file)
		fclose(file);

	/* "always within_size advise [never] deny force": keep the selected word. */
	read_file_line("/sys/kernel/mm/transparent_hugepage/shmem_enabled", line, sizeof(line));
	open_bracket = strchr(line, '[');
	close_bracket = open_bracket ? strchr(open_bracket, ']') : NULL;
	if (close_bracket) {
		*close_bracket = '\0';
		copy_string(machine->thp_shmem, sizeof(machine->thp_shmem), open_bracket + 1);
	}
}

/* --- the human table --- */

static const char *human_bytes(char *buf, size_t len, uint64_t bytes)
{
	static const char *const units[] = { "B", "KiB", "MiB", "GiB", "TiB" };
	double value = (double)bytes;
	unsigned unit = 0;

	while (value >= 1024 && unit + 1 < sizeof(units) / sizeof(units[0])) {
		value /= 1024;
		unit++;
	}
	if (unit == 0)
		snprintf(buf, len, "%" PRIu64 " B", bytes);
	else if (value == (double)(uint64_t)value)
		snprintf(buf, len, "%" PRIu64 " %s", (uint64_t)value, units[unit]);
	else
		snprintf(buf, len, "%.1f %s", value, units[unit]);
	return buf;
}

/* Where the first block's pages are, as shmrig_topo_area_node() said. */
static void print_pages_node(int node)
{
	if (node >= 0)
		printf("  %-16s %d\n", "pages on node", node);
	else if (node == -ENOENT)
		printf("  %-16s several, or none faulted\n", "pages on node");
	else
		printf("  %-16s unknown (%s)\n", "pages on node", shmrig_strerror(node));
}

static void print_table(const struct demo_config *cfg, const struct demo_run *run,
			const struct machine_info *machine, const char *git_rev)
{
	char a[32], b[32];
	unsigned i;
	int shown, o;

	printf("shmrig-demo %s (git %s): %lu blocks of %s, prefix \"%s\"\n", SHMRIG_DEMO_VERSION,
	       git_rev, cfg->blocks, human_bytes(a, sizeof(a), cfg->size),
	       run->prefix[0] ? run->prefix : "?");
	printf("machine: %s, %ld CPUs, %s, %s; hugepages %lld free of %lld\n",
	       machine->cpu_model[0] ? machine->cpu_model : machine->arch, machine->nproc,
	       human_bytes(a, sizeof(a), (uint64_t)machine->mem_total_kib * 1024), machine->kernel,
	       machine->hugepages_free, machine->hugepages_total);

	if (run->pool_opened) {
		printf("\npool\n");
		printf("  %-16s %s\n", "backing", run->backing);
		printf("  %-16s %s\n", "page size",
		       run->page_size ? human_bytes(a, sizeof(a), run->page_size) : "-");
		printf("  %-16s %s\n", "reason", run->reason[0] ? run->reason : "-");
		if (run->numa_node >= 0)
			printf("  %-16s %d\n", "NUMA node", run->numa_node);
		else
			printf("  %-16s not bound\n", "NUMA node");
		if (run->allocated)
			print_pages_node(run->pages_node);
		printf("  %-16s %s\n", "arena size", human_bytes(a, sizeof(a), run->arena_size));
		printf("  %-16s %s\n", "max bytes", human_bytes(a, sizeof(a), run->max_bytes));
	}

	if (run->have_stats) {
		const struct shmrig_pool_stats *stats = &run->stats;

		printf("\nlive blocks per class (while held)\n");
		printf("  %-10s %12s %16s\n", "class", "live blocks", "live bytes");
		for (i = 0; i < run->class_count; i++) {
			const struct shmrig_pool_class_stats *class = &run->classes[i];

			if (!class->live_blocks)
				continue;
			printf("  %-10s %12" PRIu64 " %16" PRIu64 "\n",
			       human_bytes(a, sizeof(a), class->block_size), class->live_blocks,
			       class->live_bytes);
		}
		printf("  %-10s %12" PRIu64 " %16" PRIu64 "\n", "large", stats->large_live_blocks,
		       stats->large_live_bytes);
		printf("  %-10s %12" PRIu64 " %16" PRIu64 "\n", "total", stats->live_blocks,
		       stats->live_bytes);
		printf("  segments mapped %" PRIu32 ", created %s, cached free blocks %" PRIu64
		       "\n",
		       stats->segments, human_bytes(b, sizeof(b), stats->created_bytes),
		       stats->cached_blocks);

		printf("\nlive blocks per owner\n");
		printf("  %-10s %12s %16s\n", "pid", "live blocks", "live bytes");
		shown = run->owner_count < DEMO_MAX_OWNERS ? run->owner_count : DEMO_MAX_OWNERS;
		for (o = 0; o < shown; o++)
			printf("  %-10d %12" PRIu64 " %16" PRIu64 "%s\n", (int)run->owners[o].pid,
			       run->owners[o].live_blocks, run->owners[o].live_bytes,
			       run->owners[o].pid == getpid() ? "  (this process)" : "");
		if (run->owner_count > shown)
			printf("  ... and %d more\n", run->owner_count - shown);
	}

	if (run->child_ran) {
		printf("\nverification (child pid %d)\n", (int)run->child_pid);
		printf("  %-16s %" PRIu64 " of %" PRIu64 "\n", "attached", run->report.attached,
		       run->allocated);
		printf("  %-16s %" PRIu64 "\n", "mismatches", run->report.mismatches);
		printf("  %-16s %" PRIu64 "\n", "attach errors", run->report.attach_errors);
		printf("  %-16s %" PRIu64 "\n", "live seen", run->report.live_blocks_seen);
		printf("  %-16s %s\n", "result", run->verified ? "OK" : "FAILED");
		printf("  %-16s fill+hash %.1f ms (parent), attach+hash %.1f ms (child)\n",
		       "wall time", run->fill_ms, run->report.verify_ms);
	}

	if (run->pool_opened) {
		printf("\ncleanup\n");
		printf("  %-16s %" PRIu64 " of %" PRIu64 "\n", "freed", run->freed, run->allocated);
		if (run->live_after_free >= 0)
			printf("  %-16s %" PRId64 "\n", "live after free", run->live_after_free);
		printf("  %-16s %s\n", "pool close",
		       run->close_rc ? shmrig_strerror(run->close_rc) : "ok, no leak");
		printf("  %-16s %d\n", "segments left", run->segments_left);
		printf("  %-16s %d\n", "stale swept", run->swept);
	}

	if (run->ok)
		printf("\nresult: OK\n");
	else
		printf("\nresult: FAILED: %s\n", run->error[0] ? run->error : "see above");
}

/* --- the JSON record --- */

static json_t *json_text(const char *text)
{
	json_t *value = json_string(text ? text : "");

	/* json_string() refuses text that is not UTF-8. */
	return value ? value : json_null();
}

static json_t *json_uint(uint64_t value)
{
	return json_integer((json_int_t)value);
}

/* Wall times to a tenth of a millisecond: more digits would be noise. */
static json_t *json_ms(double ms)
{
	return json_real((double)(int64_t)(ms * 10 + 0.5) / 10);
}

static json_t *node_json(int node)
{
	return node >= 0 ? json_integer(node) : json_null();
}

static json_t *build_json(const struct demo_config *cfg, const struct demo_run *run,
			  const struct machine_info *machine, const char *git_rev)
{
	json_t *root = json_object(), *obj, *array, *item;
	char timestamp[32];
	struct tm tm;
	time_t now = time(NULL);
	unsigned i;
	int o, shown;

	strftime(timestamp, sizeof(timestamp), "%Y-%m-%dT%H:%M:%SZ", gmtime_r(&now, &tm));
	json_object_set_new(root, "schema", json_text(DEMO_SCHEMA));
	json_object_set_new(root, "version", json_text(SHMRIG_DEMO_VERSION));
	json_object_set_new(root, "git_rev", json_text(git_rev));
	json_object_set_new(root, "timestamp", json_text(timestamp));
	json_object_set_new(root, "ok", json_boolean(run->ok));
	json_object_set_new(root, "error", run->error[0] ? json_text(run->error) : json_null());

	obj = json_object();
	json_object_set_new(obj, "arch", json_text(machine->arch));
	json_object_set_new(obj, "cpu_model", json_text(machine->cpu_model));
	json_object_set_new(obj, "nproc", json_integer(machine->nproc));
	json_object_set_new(obj, "mem_total_kib", json_integer(machine->mem_total_kib));
	json_object_set_new(obj, "kernel", json_text(machine->kernel));
	json_object_set_new(obj, "hugepages_total", json_integer(machine->hugepages_total));
	json_object_set_new(obj, "hugepages_free", json_integer(machine->hugepages_free));
	json_object_set_new(obj, "hugepage_size_kib", json_integer(machine->hugepage_size_kib));
	json_object_set_new(obj, "thp_shmem_enabled", json_text(machine->thp_shmem));
	json_object_set_new(root, "machine", obj);

	obj = json_object();
	json_object_set_new(obj, "blocks", json_uint(cfg->blocks));
	json_object_set_new(obj, "size", json_uint(cfg->size));
	json_object_set_new(obj, "prefix", json_text(run->prefix));
	json_object_set_new(obj, "timeout_s", json_integer(cfg->timeout_s));
	json_object_set_new(root, "config", obj);

	if (run->pool_opened) {
		obj = json_object();
		json_object_set_new(obj, "backing", json_text(run->backing));
		json_object_set_new(obj, "page_size", json_uint(run->page_size));
		json_object_set_new(obj, "reason", json_text(run->reason));
		json_object_set_new(obj, "numa_node", node_json(run->numa_node));
		json_object_set_new(obj, "pages_node", node_json(run->pages_node));
		json_object_set_new(obj, "arena_size", json_uint(run->arena_size));
		json_object_set_new(obj, "max_bytes", json_uint(run->max_bytes));
		json_object_set_new(root, "pool", obj);
	}

	if (run->have_stats) {
		const struct shmrig_pool_stats *stats = &run->stats;

		obj = json_object();
		json_object_set_new(obj, "live_blocks", json_uint(stats->live_blocks));
		json_object_set_new(obj, "live_bytes", json_uint(stats->live_bytes));
		json_object_set_new(obj, "large_live_blocks", json_uint(stats->large_live_blocks));
		json_object_set_new(obj, "large_live_bytes", json_uint(stats->large_live_bytes));
		json_object_set_new(obj, "segments", json_uint(stats->segments));
		json_object_set_new(obj, "created_bytes", json_uint(stats->created_bytes));
		json_object_set_new(obj, "cached_blocks", json_uint(stats->cached_blocks));
		array = json_array();
		for (i = 0; i < run->class_count; i++) {
			const struct shmrig_pool_class_stats *class = &run->classes[i];

			item = json_object();
			json_object_set_new(item, "block_size", json_uint(class->block_size));
			json_object_set_new(item, "live_blocks", json_uint(class->live_blocks));
			json_object_set_new(item, "live_bytes", json_uint(class->live_bytes));
			json_array_append_new(array, item);
		}
		json_object_set_new(obj, "classes", array);
		json_object_set_new(root, "stats", obj);

		array = json_array();
		shown = run->owner_count < DEMO_MAX_OWNERS ? run->owner_count : DEMO_MAX_OWNERS;
		for (o = 0; o < shown; o++) {
			const struct shmrig_owner_stats *owner = &run->owners[o];

			item = json_object();
			json_object_set_new(item, "pid", json_integer(owner->pid));
			json_object_set_new(item, "self", json_boolean(owner->pid == getpid()));
			json_object_set_new(item, "live_blocks", json_uint(owner->live_blocks));
			json_object_set_new(item, "live_bytes", json_uint(owner->live_bytes));
			json_array_append_new(array, item);
		}
		json_object_set_new(root, "owners", array);
		json_object_set_new(root, "owner_count", json_integer(run->owner_count));
		json_object_set_new(root, "accounting_ok", json_boolean(run->accounting_ok));
	}

	if (run->child_ran) {
		const struct child_report *report = &run->report;

		obj = json_object();
		json_object_set_new(obj, "ok", json_boolean(run->verified));
		json_object_set_new(obj, "child_status", json_integer(run->child_status));
		json_object_set_new(obj, "report_received", json_boolean(run->report_ok));
		json_object_set_new(obj, "attached", json_uint(report->attached));
		json_object_set_new(obj, "mismatches", json_uint(report->mismatches));
		json_object_set_new(obj, "attach_errors", json_uint(report->attach_errors));
		json_object_set_new(obj, "live_blocks_seen", json_uint(report->live_blocks_seen));
		json_object_set_new(obj, "first_bad_block",
				    report->first_bad_block >= 0 ?
					    json_integer(report->first_bad_block) :
					    json_null());
		json_object_set_new(obj, "message",
				    report->message[0] ? json_text(report->message) : json_null());
		json_object_set_new(root, "verify", obj);
	}

	if (run->pool_opened) {
		obj = json_object();
		json_object_set_new(obj, "allocated", json_uint(run->allocated));
		json_object_set_new(obj, "freed", json_uint(run->freed));
		json_object_set_new(obj, "free_errors", json_uint(run->free_errors));
		json_object_set_new(obj, "live_after_free",
				    run->live_after_free >= 0 ? json_integer(run->live_after_free) :
								json_null());
		json_object_set_new(obj, "close_rc", json_integer(run->close_rc));
		json_object_set_new(obj, "close_error",
				    run->close_rc ? json_text(shmrig_strerror(run->close_rc)) :
						    json_null());
		json_object_set_new(obj, "segments_left", json_integer(run->segments_left));
		json_object_set_new(obj, "swept", json_integer(run->swept));
		json_object_set_new(root, "cleanup", obj);
	}

	obj = json_object();
	json_object_set_new(obj, "fill_and_hash", json_ms(run->fill_ms));
	json_object_set_new(obj, "child_attach_and_hash",
			    run->child_ran ? json_ms(run->report.verify_ms) : json_null());
	json_object_set_new(root, "wall_ms", obj);
	return root;
}

/* Write to FILE.tmp, then rename: a reader never sees half a record. */
static int write_json(const char *path, json_t *root)
{
	size_t len = strlen(path) + sizeof(".tmp");
	char *tmp = malloc(len);
	int rc = 0;

	if (!tmp) {
		fprintf(stderr, "shmrig-demo: out of memory\n");
		return -ENOMEM;
	}
	snprintf(tmp, len, "%s.tmp", path);
	if (json_dump_file(root, tmp, JSON_INDENT(2)) != 0) {
		fprintf(stderr, "shmrig-demo: cannot write %s (does the directory exist?)\n", tmp);
		rc = -EIO;
	} else if (rename(tmp, path) != 0) {
		rc = -errno;
		fprintf(stderr, "shmrig-demo: renaming %s to %s: %s\n", tmp, path, strerror(errno));
		unlink(tmp);
	}
	free(tmp);
	return rc;
}

int main(int argc, char **argv)
{
	struct demo_config cfg;
	struct demo_run run = { 0 };
	struct machine_info machine;
	const char *git_rev = getenv("SHMRIG_GIT_REV");
	json_t *root;
	int rc;

	rc = parse_args(argc, argv, &cfg);
	if (rc)
		return rc == 1 ? 0 : 2;
	if (!git_rev || !*git_rev)
		git_rev = "unknown";
	read_machine(&machine);

	run_demo(&cfg, &run);
	run.ok = !run.error[0] && run.verified && run.accounting_ok && run.close_rc == 0 &&
		 run.free_errors == 0 && run.live_after_free == 0 && run.segments_left == 0;

	print_table(&cfg, &run, &machine, git_rev);
	if (cfg.json_path) {
		root = build_json(&cfg, &run, &machine, git_rev);
		if (!root || write_json(cfg.json_path, root) != 0)
			run.ok = false;
		else
			printf("json: %s\n", cfg.json_path);
		json_decref(root);
	}
	return run.ok ? 0 : 1;
}
