/* SPDX-License-Identifier: MIT */
/*
 * Liveness (issue 10): only a known death reclaims a segment.
 *   a. a sweep at the fd limit (and one fd below it) leaves a live peer's
 *      segment and its caller's own; a live peer is "unknown" there
 *   b. a process whose main thread called pthread_exit() lives on
 *   c. an identity first asked for at the fd limit is an error, not start 0
 *   d. a creator in another pid namespace is not judged, nor attached
 *   e. root's sweep leaves another user's file (and a symlink) with a dead name
 * Through the public API wherever it can be, so that the same source builds
 * against the tree before liveness.c; only the three answers are white-box.
 */
#include "helpers.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <shmrig/pool.h>
#include <shmrig/segment.h>

#include "os/liveness.h"

#define TIMEOUT_MS 60000
/* The fd limit set where a case runs out of fds: small, so that filling it is cheap. */
#define FD_LIMIT 64
#define NOBODY 65534

/* Names the children write for the parent (shared, anonymous). */
struct shared_names {
	char names[2][SHMRIG_NAME_MAX];
};

static struct shared_names *shared_names_new(void)
{
	struct shared_names *shared = mmap(NULL, sizeof(*shared), PROT_READ | PROT_WRITE,
					   MAP_SHARED | MAP_ANONYMOUS, -1, 0);

	assert_true(shared != MAP_FAILED);
	memset(shared, 0, sizeof(*shared));
	return shared;
}

/* Field `field` of /proc/PID/stat (numbered from 1; 3 and up); 0 if unreadable.
 * For field 3 (the state), the state letter. */
static uint64_t stat_field(pid_t pid, int field)
{
	char path[64], buf[1024], *p;
	FILE *f;
	size_t n;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	f = fopen(path, "re");
	if (!f)
		return 0;
	n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	p = strrchr(buf, ')');
	if (!p)
		return 0;
	p += 2;
	if (field == 3)
		return (uint64_t)(unsigned char)*p;
	for (int i = 3; i < field; i++) {
		p = strchr(p, ' ');
		if (!p)
			return 0;
		p++;
	}
	return strtoull(p, NULL, 10);
}

static uint64_t start_time_of(pid_t pid)
{
	return stat_field(pid, 22);
}

/* The identity a name gives its creator, or 0 if it does not parse. */
static shmrig__procid creator_of(const char *name)
{
	uint64_t start;
	pid_t pid;

	if (shmrig_segment_parse_name(NULL, name, &pid, &start))
		return 0;
	return shmrig__procid_make(pid, start);
}

/* Does /dev/shm hold `name` (no fd needed: this works at the fd limit)? */
static bool shm_exists(const char *name)
{
	char path[PATH_MAX];
	struct stat st;

	snprintf(path, sizeof(path), "/dev/shm/%s", name);
	return lstat(path, &st) == 0;
}

static shmrig_segment *create_plain(int *err)
{
	struct shmrig_segment_opts opts = { .size = sizeof(struct shmrig_segment_opts),
					    .bytes = 4096,
					    .backing = SHMRIG_BACKING_PLAIN };
	shmrig_segment *seg = NULL;

	*err = shmrig_segment_create(&opts, &seg);
	return *err ? NULL : seg;
}

/* ---- running out of fds ---- */

struct fd_fill {
	int fds[FD_LIMIT];
	int count;
	struct rlimit saved;
};

/* Lower the fd limit to FD_LIMIT and open /dev/null until EMFILE. 0 or -1. */
static int fill_fds(struct fd_fill *fill)
{
	struct rlimit lim;

	fill->count = 0;
	if (getrlimit(RLIMIT_NOFILE, &fill->saved))
		return -1;
	lim = fill->saved;
	lim.rlim_cur = FD_LIMIT;
	if (setrlimit(RLIMIT_NOFILE, &lim))
		return -1;
	for (;;) {
		int fd = open("/dev/null", O_RDONLY | O_CLOEXEC);

		if (fd < 0)
			return errno == EMFILE && fill->count > 0 ? 0 : -1;
		if (fill->count == FD_LIMIT) {
			close(fd);
			return -1;
		}
		fill->fds[fill->count++] = fd;
	}
}

static void unfill_fds(struct fd_fill *fill)
{
	while (fill->count)
		close(fill->fds[--fill->count]);
	setrlimit(RLIMIT_NOFILE, &fill->saved);
}

/* ---- a peer that holds a segment until told to go ---- */

/* Make a segment, write its name to name_out (shared memory) and 'r' to
 * `ready` ('e' if it failed), hold it until `go` ends, then unlink it: exit
 * status 0 only if it was still there (nobody swept it). */
static int create_and_hold(char *name_out, int ready, int go)
{
	char byte = 'e', sink;
	shmrig_segment *seg;
	int err, ret;

	seg = create_plain(&err);
	if (seg) {
		memcpy(name_out, shmrig_segment_name(seg), SHMRIG_NAME_MAX);
		byte = 'r';
	} else {
		fprintf(stderr, "pid %d in the new namespace: segment_create: %s\n", (int)getpid(),
			shmrig_last_error());
	}
	ret = th_write_all(ready, &byte, 1);
	while (seg && read(go, &sink, 1) > 0)
		;
	ret = ret || !seg || shmrig_segment_unlink(seg);
	shmrig_segment_close(seg);
	return ret ? 2 : 0;
}

/* The holder, as a th_peer: create_and_hold(name_out, out, in). */
static int hold_segment(int in, int out, void *name_out)
{
	return create_and_hold(name_out, out, in);
}

static int wait_ready(int fd)
{
	char byte = 0;

	return th_read_all(fd, &byte, 1) == 0 && byte == 'r' ? 0 : -1;
}


/* ---- a. sweep at the fd limit ---- */

static int child_sweep_at_limit(void *arg)
{
	const char *peer_name = ((struct shared_names *)arg)->names[0];
	shmrig__procid peer = creator_of(peer_name), mine_id;
	struct fd_fill fill;
	shmrig_segment *mine;
	int err;

	CHILD_CHECK(peer != 0);
	/* Our own segment first: the identity is read while fds are left. */
	mine = create_plain(&err);
	CHILD_CHECK(mine != NULL);
	mine_id = creator_of(shmrig_segment_name(mine));
	CHILD_CHECK(fill_fds(&fill) == 0);

	/* At the limit: /dev/shm itself cannot be opened, nothing is removed. */
	CHILD_CHECK(shmrig_segment_sweep(NULL) == -EMFILE);
	CHILD_CHECK(shm_exists(peer_name));
	CHILD_CHECK(shm_exists(shmrig_segment_name(mine)));

	/* One fd below: the directory opens, no /proc file does. */
	close(fill.fds[--fill.count]);
	CHILD_CHECK(shmrig_segment_sweep(NULL) == 0);
	CHILD_CHECK(shm_exists(peer_name));
	CHILD_CHECK(shm_exists(shmrig_segment_name(mine)));
	CHILD_CHECK(shmrig__life_of(peer) != SHMRIG__DEAD);

	/* At the limit again: a live peer is unknown, we are alive. */
	fill.fds[fill.count] = open("/dev/null", O_RDONLY | O_CLOEXEC);
	CHILD_CHECK(fill.fds[fill.count] >= 0);
	fill.count++;
	CHILD_CHECK(open("/dev/null", O_RDONLY | O_CLOEXEC) == -1 && errno == EMFILE);
	CHILD_CHECK(shmrig__life_of(peer) == SHMRIG__UNKNOWN);
	CHILD_CHECK(shmrig__life_of(mine_id) == SHMRIG__ALIVE);

	unfill_fds(&fill);
	CHILD_CHECK(shmrig__life_of(peer) == SHMRIG__ALIVE);
	CHILD_CHECK(shmrig_segment_sweep(NULL) == 0);
	CHILD_CHECK(shmrig_segment_unlink(mine) == 0);
	shmrig_segment_close(mine);
	return 0;
}

static void test_sweep_at_fd_limit(void **state)
{
	struct shared_names *shared = shared_names_new();
	struct th_peer peer = th_peer_spawn(hold_segment, shared->names[0]);
	int sweeper = -1, holder;

	(void)state;
	if (wait_ready(peer.from_child) == 0)
		sweeper = th_run_child(child_sweep_at_limit, shared, TIMEOUT_MS);
	holder = th_peer_finish(&peer, TIMEOUT_MS);
	munmap(shared, sizeof(*shared));
	assert_int_equal(sweeper, 0);
	assert_int_equal(holder, 0);
	assert_int_equal(th_count_segments(th_prefix()), 0);
}

/* ---- b. the main thread ended, another runs ---- */

static pthread_t main_thread;

static void *outlive_main(void *arg)
{
	int *fds = arg; /* ready write end, go read end */
	char byte = 'r', sink;

	/* Returns when the kernel has let go of the main thread (its tid is cleared). */
	if (pthread_join(main_thread, NULL))
		byte = 'e';
	if (th_write_all(fds[0], &byte, 1))
		_exit(3);
	while (read(fds[1], &sink, 1) > 0)
		;
	_exit(0); /* not reached: the parent kills us */
}

static _Noreturn void main_exits(char *name_out, int ready, int go)
{
	static int fds[2];
	shmrig_segment *seg;
	pthread_t thread;
	char fail = 'e';
	int err;

	seg = create_plain(&err);
	if (!seg) {
		th_write_all(ready, &fail, 1);
		_exit(2);
	}
	memcpy(name_out, shmrig_segment_name(seg), SHMRIG_NAME_MAX);
	fds[0] = ready;
	fds[1] = go;
	main_thread = pthread_self();
	if (pthread_create(&thread, NULL, outlive_main, fds)) {
		th_write_all(ready, &fail, 1);
		_exit(2);
	}
	pthread_exit(NULL);
}

static int run_main_exits(int in, int out, void *name_out)
{
	main_exits(name_out, out, in);
}

/* Wait (bounded) until /proc shows pid's main thread as a zombie: the state in
 * which the old code took the process for dead. No event says so; poll. */
static bool wait_zombie_leader(pid_t pid)
{
	struct timespec tick = { 0, 1000000 };

	for (int i = 0; i < 10000; i++) {
		if (stat_field(pid, 3) == 'Z')
			return true;
		nanosleep(&tick, NULL);
	}
	return false;
}

static void test_main_thread_exit(void **state)
{
	struct shared_names *shared = shared_names_new();
	const char *name = shared->names[0];
	int sweep_live = -1, sweep_dead = -1, status;
	struct th_peer peer;
	bool ok_ready, zombie = false, exists_live = false, exists_dead = true;
	enum shmrig__life life_live = 0, life_dead = 0;
	pid_t pid;

	(void)state;
	peer = th_peer_spawn(run_main_exits, shared->names[0]);
	pid = peer.pid;
	ok_ready = wait_ready(peer.from_child) == 0;
	if (ok_ready) {
		zombie = wait_zombie_leader(pid);
		life_live = shmrig__life_of(creator_of(name));
		sweep_live = shmrig_segment_sweep(NULL);
		exists_live = shm_exists(name);
	}
	kill(pid, SIGKILL);
	status = th_peer_finish(&peer, TIMEOUT_MS);
	if (ok_ready) {
		life_dead = shmrig__life_of(creator_of(name));
		sweep_dead = shmrig_segment_sweep(NULL);
		exists_dead = shm_exists(name);
	}

	assert_true(ok_ready);
	assert_true(zombie);
	assert_int_equal(sweep_live, 0);
	assert_true(exists_live);
	assert_int_equal(life_live, SHMRIG__ALIVE);
	assert_int_equal(status, 128 + SIGKILL);
	assert_int_equal(life_dead, SHMRIG__DEAD);
	assert_int_equal(sweep_dead, 1);
	assert_false(exists_dead);
	munmap(shared, sizeof(*shared));
	assert_int_equal(th_count_segments(th_prefix()), 0);
}

/* ---- c. the first call meets the fd limit ---- */

static int child_create_first_at_limit(void *arg)
{
	struct fd_fill fill;
	shmrig_segment *seg;
	uint64_t start;
	pid_t pid;
	int err;

	(void)arg;
	/* A fresh child: nothing of its identity is known yet. */
	CHILD_CHECK(fill_fds(&fill) == 0);
	seg = create_plain(&err);
	CHILD_CHECK(seg == NULL);
	CHILD_CHECK(err == -EMFILE);
	unfill_fds(&fill);

	seg = create_plain(&err);
	CHILD_CHECK(seg != NULL);
	CHILD_CHECK(shmrig_segment_parse_name(NULL, shmrig_segment_name(seg), &pid, &start) == 0);
	CHILD_CHECK(shmrig_segment_unlink(seg) == 0);
	shmrig_segment_close(seg);
	CHILD_CHECK(pid == getpid());
	CHILD_CHECK(start == start_time_of(getpid()));
	CHILD_CHECK(start != 0);
	return 0;
}

static int child_pool_first_at_limit(void *arg)
{
	struct shmrig_pool_opts opts = { .size = sizeof(struct shmrig_pool_opts),
					 .backing = SHMRIG_BACKING_PLAIN,
					 .flags = SHMRIG_POOL_QUIET };
	shmrig_pool *pool = NULL;
	struct shmrig_ref ref;
	struct fd_fill fill;
	uint64_t start;
	void *data;
	pid_t pid;
	int ret;

	(void)arg;
	CHILD_CHECK(fill_fds(&fill) == 0);
	/* An open that touches no file may succeed; its first block cannot. */
	ret = shmrig_pool_open(&opts, &pool);
	CHILD_CHECK(ret == 0 || ret == -EMFILE);
	if (ret == 0)
		CHILD_CHECK(shmrig_pool_alloc(pool, 100, 0, 0, &ref, &data) == -EMFILE);
	unfill_fds(&fill);

	if (!pool)
		CHILD_CHECK(shmrig_pool_open(&opts, &pool) == 0);
	CHILD_CHECK(shmrig_pool_alloc(pool, 100, 0, 0, &ref, &data) == 0);
	CHILD_CHECK(shmrig_segment_parse_name(NULL, ref.name, &pid, &start) == 0);
	CHILD_CHECK(shmrig_pool_free(pool, &ref) == 0);
	CHILD_CHECK(shmrig_pool_close(pool) == 0);
	CHILD_CHECK(pid == getpid());
	CHILD_CHECK(start == start_time_of(getpid()));
	CHILD_CHECK(start != 0);
	return 0;
}

static void test_first_call_at_fd_limit(void **state)
{
	int create = th_run_child(child_create_first_at_limit, NULL, TIMEOUT_MS);
	int pool = th_run_child(child_pool_first_at_limit, NULL, TIMEOUT_MS);

	(void)state;
	assert_int_equal(create, 0);
	assert_int_equal(pool, 0);
	assert_int_equal(th_count_segments(th_prefix()), 0);
}

/* ---- d. a creator in another pid namespace ---- */

struct ns_arg {
	struct shared_names *shared;
	int ready; /* write end: one byte per creator ('r' made, 'e' failed, 's' skip) */
	int go;    /* read end: EOF ends the creators */
};

/*
 * Make the next fork in our pid namespace get a pid that names no process in
 * the root namespace (whose /proc we see): the creator the old code could not
 * find there. Best effort: without the privilege the pid is just the next one.
 */
static void aim_next_pid(void)
{
	long pid_max = 0;
	FILE *f = fopen("/proc/sys/kernel/pid_max", "re");

	if (!f)
		return;
	if (fscanf(f, "%ld", &pid_max) != 1)
		pid_max = 0;
	fclose(f);
	for (long pid = pid_max - 100; pid > pid_max / 2; pid--) {
		char path[64];

		snprintf(path, sizeof(path), "/proc/%ld", pid);
		if (access(path, F_OK) == 0)
			continue;
		f = fopen("/proc/sys/kernel/ns_last_pid", "we");
		if (f) {
			fprintf(f, "%ld", pid - 1);
			fclose(f);
		}
		return;
	}
}

/* pid 1 of the new namespace: a segment, and a child (pid N) with another. */
static _Noreturn void ns_init(struct ns_arg *arg)
{
	char fail = 'e';
	int held, status = 0;
	pid_t second;

	aim_next_pid();
	fflush(NULL);
	second = fork();
	if (second == 0)
		_exit(create_and_hold(arg->shared->names[1], arg->ready, arg->go));
	if (second < 0)
		th_write_all(arg->ready, &fail, 1);
	held = create_and_hold(arg->shared->names[0], arg->ready, arg->go);
	if (second > 0)
		status = th_wait_child(second, TIMEOUT_MS);
	/* Our exit ends the namespace: the second creator has ended first. */
	_exit(held ? held : second < 0 ? 3 : status ? 4 : 0);
}

static int child_unshare(struct ns_arg *arg)
{
	char skip[2] = { 's', 's' };
	pid_t init;

	if (unshare(CLONE_NEWPID)) {
		int err = errno;

		fprintf(stderr, "unshare(CLONE_NEWPID): %s\n", strerror(err));
		th_write_all(arg->ready, skip, sizeof(skip));
		return err == EPERM || err == EINVAL ? TEST_SKIP_EXIT : 2;
	}
	fflush(NULL);
	init = fork();
	if (init < 0)
		return 3;
	if (init == 0)
		ns_init(arg);
	return th_wait_child(init, TIMEOUT_MS);
}

/* The namespace test's child, as a th_peer: child_unshare with its two ends. */
static int run_unshare(int in, int out, void *shared)
{
	struct ns_arg arg = { .shared = shared, .ready = out, .go = in };

	return child_unshare(&arg) & 0xff;
}

static void test_pid_namespace(void **state)
{
	struct shared_names *shared = shared_names_new();
	int sweep = -1, attach[2] = { 0, 0 }, status;
	bool exists[2] = { false, false };
	uint32_t ns[2] = { 0, 0 };
	char bytes[2] = { 0, 0 };
	struct th_peer peer;
	pid_t first_pid = 0;

	(void)state;
	peer = th_peer_spawn(run_unshare, shared);
	if (th_read_all(peer.from_child, bytes, 2) == 0 && bytes[0] == 'r' && bytes[1] == 'r') {
		if (shmrig_segment_parse_name(NULL, shared->names[0], &first_pid, NULL))
			first_pid = 0;
		/* The root namespace's sweep sees both while they run. */
		sweep = shmrig_segment_sweep(NULL);
		for (int i = 0; i < 2; i++) {
			shmrig_segment *seg = NULL;

			exists[i] = shm_exists(shared->names[i]);
			ns[i] = th_name_pidns(shared->names[i]);
			attach[i] = shmrig_segment_attach(NULL, shared->names[i], &seg);
			shmrig_segment_close(seg);
		}
	}
	status = th_peer_finish(&peer, TIMEOUT_MS);
	if (bytes[0] == 's') {
		munmap(shared, sizeof(*shared));
		print_message("unshare(CLONE_NEWPID) is not permitted here: skipped\n");
		skip();
	}
	assert_int_equal(bytes[0], 'r');
	assert_int_equal(bytes[1], 'r');
	print_message("creators: %s, %s\n", shared->names[0], shared->names[1]);
	assert_int_equal(first_pid, 1);
	assert_int_equal(sweep, 0);
	assert_true(exists[0]);
	assert_true(exists[1]);
	assert_int_not_equal(ns[0], th_pidns());
	assert_int_equal(ns[1], ns[0]);
	assert_int_equal(attach[0], -EXDEV);
	assert_int_equal(attach[1], -EXDEV);
	assert_int_equal(status, 0);
	munmap(shared, sizeof(*shared));
	assert_int_equal(th_count_segments(th_prefix()), 0);
}

/* ---- e. another user's file ---- */

static bool make_shm_file(const char *name, uid_t owner)
{
	int fd = shm_open(name, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	bool ok;

	if (fd < 0)
		return false;
	ok = ftruncate(fd, 4096) == 0 && (owner == geteuid() || fchown(fd, owner, owner) == 0);
	close(fd);
	return ok;
}

static void test_other_users_file(void **state)
{
	char foreign[SHMRIG_NAME_MAX], link[SHMRIG_NAME_MAX], own[SHMRIG_NAME_MAX];
	char link_path[PATH_MAX], own_path[PATH_MAX];
	bool made, foreign_left, link_left, own_left;
	uint32_t ns = th_pidns();
	int status, swept;
	pid_t dead;

	(void)state;
	if (geteuid() != 0) {
		print_message("not root: cannot give a file to another user; skipped\n");
		skip();
	}
	/* A pid that names no process: a child we have reaped. */
	fflush(NULL);
	dead = fork();
	assert_true(dead >= 0);
	if (dead == 0)
		_exit(0);
	assert_int_equal(waitpid(dead, &status, 0), dead);

	/* Well-formed names of our prefix and namespace, each claiming the dead pid. */
	snprintf(foreign, sizeof(foreign), "%s-%d-1-sg%08x89abcdef", th_prefix(), (int)dead,
		 (unsigned)ns);
	snprintf(link, sizeof(link), "%s-%d-2-sg%08x89abcdef", th_prefix(), (int)dead,
		 (unsigned)ns);
	snprintf(own, sizeof(own), "%s-%d-3-sg%08x89abcdef", th_prefix(), (int)dead, (unsigned)ns);
	snprintf(link_path, sizeof(link_path), "/dev/shm/%s", link);
	snprintf(own_path, sizeof(own_path), "/dev/shm/%s", own);
	/* nobody's file; a symlink to a file of ours (followed, it would look ours); ours */
	made = make_shm_file(foreign, NOBODY) && symlink(own_path, link_path) == 0 &&
	       make_shm_file(own, geteuid());

	swept = made ? shmrig_segment_sweep(NULL) : -1;
	foreign_left = shm_exists(foreign);
	link_left = shm_exists(link);
	own_left = shm_exists(own);
	shm_unlink(foreign);
	unlink(link_path);
	shm_unlink(own);

	assert_true(made);
	assert_int_equal(swept, 1);
	assert_true(foreign_left);
	assert_true(link_left);
	assert_false(own_left);
	assert_int_equal(th_count_segments(th_prefix()), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_teardown(test_sweep_at_fd_limit, th_remove_leftovers),
		cmocka_unit_test_teardown(test_main_thread_exit, th_remove_leftovers),
		cmocka_unit_test_teardown(test_first_call_at_fd_limit, th_remove_leftovers),
		cmocka_unit_test_teardown(test_pid_namespace, th_remove_leftovers),
		cmocka_unit_test_teardown(test_other_users_file, th_remove_leftovers),
	};

	/* The library's default prefix is the one the helpers count (also outside meson). */
	setenv("SHMRIG_PREFIX", th_prefix(), 0);
	return cmocka_run_group_tests(tests, th_sweep_leftovers, NULL);
}
