/* SPDX-License-Identifier: MIT */
/*
 * Peer rows: UCX (UCP tag matching over its shared-memory transports) in the
 * same run as shmrig's own channel and session rows (issue 15).
 *
 *   peer/ucx/<tls>/rtt/<B>     a round trip of B bytes (64 B to 4 MiB): the
 *                              caller sends B bytes with ucp_tag_send_nbx, a
 *                              forked peer receives them into its buffer with
 *                              ucp_tag_recv_nbx and sends the same bytes back
 *   peer/ucx/<tls>/bw/1048576  bandwidth: the caller streams 1 MiB messages
 *                              with up to 16 sends outstanding, the peer keeps
 *                              16 receives posted; after each batch the caller
 *                              asks for an acknowledgement and waits for it, so
 *                              the time covers bytes delivered (bytes = B a
 *                              message)
 *
 * <tls> is the UCX_TLS list of both processes, set with ucp_config_modify()
 * (never the environment, which would leak into the other rows): posix
 * (posix,self), sysv (sysv,self), cma (cma,posix,self: the rendezvous of large
 * messages reads the sender's pages with process_vm_readv, where ptrace
 * permits). The label names the transport UCX chose for each lane of the
 * caller's endpoint (ucp_ep_print_info).
 *
 * Method, as bench_channel.c: the caller on CPU 0, the forked peer on CPU 1,
 * both busy-polling with ucp_worker_progress() (as ucx_perftest does for
 * latency); manual wall time per batch, and each round trip's time for the
 * counters p50_us and p99_us (the clock read after the send, suite.h). Both
 * processes create their UCP context and worker after the fork (UCX does not
 * survive a fork with a live context) and exchange worker addresses through
 * two pipes made before it.
 * One round trip is checked before timing (the echo equals what was sent). A
 * transport UCX cannot run here (context, worker or endpoint creation, or that
 * checked round trip, fails with "unreachable", "no such device",
 * "unsupported"...) skips the row with UCX's words, on whichever side it
 * failed. Every wait is bounded: BENCH_PEER_TIMEOUT_MS of polling without
 * progress, and a peer that died (waitpid WNOHANG, or the caller's pipe closed
 * for the peer) ends the wait at once, as an error. Teardown every run:
 * endpoints closed with a flush, worker and context destroyed, the peer reaped,
 * and no /dev/shm entry nor SysV segment of UCX's left behind (checked: a
 * leftover is an error).
 */
#include "gbench.h"
#include "suite.h"

#include <stdint.h>
#include <stdio.h>

#define RTT_SIZE_MAX ((int64_t)4 << 20)
#define BW_SIZE ((int64_t)1 << 20)

struct ucx_tls {
	const char *name; /* in the row's name, and the transport one lane must use */
	const char *tls;  /* UCX_TLS */
};

static const struct ucx_tls tls_table[] = {
	{ "posix", "posix,self" },
	{ "sysv", "sysv,self" },
	{ "cma", "cma,posix,self" },
};
static const int64_t rtt_sizes[] = { 64, 4096, 65536, 1 << 20, RTT_SIZE_MAX };

#ifndef HAVE_UCX

static void bm_ucx_missing(gbench_state *st, void *arg)
{
	(void)arg;
	bench_unavailable(st, "UCX not built in (libucx-dev missing at configure time)");
}

#define BM_RTT bm_ucx_missing
#define BM_BW bm_ucx_missing

#else

#include <ucp/api/ucp.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define BW_WINDOW 16      /* sends outstanding (caller), receives posted (peer) */
#define BW_BATCH 32       /* messages a timed batch, then an acknowledgement */
#define CONTROL_SIZE 8    /* the payload of ACK_REQ, ACK and STOP */
#define CHECK_SPINS 4096  /* progress calls between two looks at the clock and the peer */
#define ADDRESS_MAX 65536 /* a worker address from the peer longer than this is refused */
#define LABEL_MAX 256

/* Tags: the peer receives any tag (mask 0) and acts on it. */
enum {
	TAG_DATA = 1, /* rtt: echo it; bw: echo the first, then just take them */
	TAG_ECHO,     /* the data sent back */
	TAG_ACK_REQ,  /* bw: answer with ACK once everything before is received */
	TAG_ACK,
	TAG_STOP, /* the run is over: close and exit */
};
#define TAG_EXACT UINT64_MAX

/* Where a failure happened: the peer reports it through its pipe. */
enum stage {
	STAGE_CONFIG = 1,
	STAGE_INIT,
	STAGE_WORKER,
	STAGE_ADDRESS,
	STAGE_EP_CREATE,
	STAGE_CHECK, /* the round trip before timing: the first send */
	STAGE_RUN,
	STAGE_CLOSE,
	/* not UCX's: status holds -errno */
	STAGE_EXCHANGE,   /* the pipes */
	STAGE_PEER_SETUP, /* the peer's pinning and buffers */
};

static const char *stage_words(int stage)
{
	switch (stage) {
	case STAGE_CONFIG: return "ucp_config_read/modify";
	case STAGE_INIT: return "ucp_init";
	case STAGE_WORKER: return "ucp_worker_create";
	case STAGE_ADDRESS: return "ucp_worker_get_address";
	case STAGE_EP_CREATE: return "ucp_ep_create";
	case STAGE_CHECK: return "the first round trip";
	case STAGE_RUN: return "the timed run";
	case STAGE_CLOSE: return "ucp_ep_close_nbx";
	case STAGE_EXCHANGE: return "the address exchange";
	case STAGE_PEER_SETUP: return "pinning and buffers";
	default: return "an unknown stage";
	}
}

/* A note on the peer's pipe: its hello (status UCS_OK and its address), or why it failed. */
struct peer_note {
	int32_t stage;
	int32_t status;
	uint32_t address_length;
};

enum peer_mode {
	MODE_ECHO, /* rtt */
	MODE_SINK, /* bw */
};

/* One process's end: its UCP objects, and how to tell that the other is gone. */
struct side {
	ucp_context_h context;
	ucp_worker_h worker;
	ucp_address_t *address;
	size_t address_length;
	ucp_ep_h ep;
	bool is_caller;
	pid_t other;        /* the caller: the peer's pid; the peer: the caller's */
	int hangup_fd;      /* the peer: the caller's pipe, which hangs up when it gives up */
	bool other_gone;    /* seen dead (or hung up) */
	bool other_reaped;  /* the caller: waitpid already took the status */
	int other_status;   /* its wait status then */
	unsigned spins;     /* progress calls since the last look */
	bool progressed;    /* since the last look */
	double last_progress_s;
	/* the first failure */
	int fail_stage;
	ucs_status_t fail_status;
	const char *fail_words; /* when not UCX's (a mismatch, a timeout, a dead peer) */
};

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void side_init(struct side *side, bool is_caller, pid_t other, int hangup_fd)
{
	memset(side, 0, sizeof(*side));
	side->is_caller = is_caller;
	side->other = other;
	side->hangup_fd = hangup_fd;
	side->last_progress_s = now_s();
}

/* Remember the first failure; returns status for chaining. */
static ucs_status_t side_fail(struct side *side, int stage, ucs_status_t status, const char *words)
{
	if (!side->fail_stage) {
		side->fail_stage = stage;
		side->fail_status = status;
		side->fail_words = words;
	}
	return status;
}

/* Is the other process still there? Dead (or hung up) is final. */
static bool other_alive(struct side *side)
{
	if (side->other_gone)
		return false;
	if (side->is_caller) {
		int status;
		pid_t got = waitpid(side->other, &status, WNOHANG);

		if (got == side->other) {
			side->other_reaped = true;
			side->other_status = status;
			side->other_gone = true;
		} else if (got < 0 && errno != EINTR) {
			side->other_gone = true;
		}
	} else {
		struct pollfd hangup = { .fd = side->hangup_fd, .events = POLLIN };

		/* the pipe holds nothing more after the address: readable means closed */
		if (getppid() != side->other || poll(&hangup, 1, 0) != 0)
			side->other_gone = true;
	}
	return !side->other_gone;
}

/* One progress call; every CHECK_SPINS, the clock and the other process.
 * UCS_OK to go on, else why the wait must end. */
static ucs_status_t progress(struct side *side, bool watch_other)
{
	double now;

	if (ucp_worker_progress(side->worker))
		side->progressed = true;
	if (++side->spins < CHECK_SPINS)
		return UCS_OK;
	side->spins = 0;
	now = now_s();
	if (side->progressed) {
		side->progressed = false;
		side->last_progress_s = now;
	}
	if (watch_other && !other_alive(side))
		return UCS_ERR_CONNECTION_RESET;
	if ((now - side->last_progress_s) * 1e3 > BENCH_PEER_TIMEOUT_MS)
		return UCS_ERR_TIMED_OUT;
	return UCS_OK;
}

/*
 * Wait for a request (NULL: done at once; an error pointer: failed) to
 * complete; for a receive, info gets its tag and length. The request is freed.
 * watch_other: a dead peer ends the wait (not while closing, when it may
 * rightly be gone).
 */
static ucs_status_t wait_request(struct side *side, void *request, ucp_tag_recv_info_t *info,
				 bool watch_other)
{
	ucs_status_t status;

	if (request == NULL)
		return UCS_OK;
	if (UCS_PTR_IS_ERR(request))
		return UCS_PTR_STATUS(request);
	for (;;) {
		status = info ? ucp_tag_recv_request_test(request, info)
			      : ucp_request_check_status(request);
		if (status != UCS_INPROGRESS)
			break;
		status = progress(side, watch_other);
		if (status != UCS_OK) {
			/* given up: cancel it; the worker's destruction completes it */
			ucp_request_cancel(side->worker, request);
			break;
		}
	}
	ucp_request_free(request);
	if (status == UCS_OK)
		side->progressed = true;
	return status;
}

/* Give a posted receive up (its sender failed): cancelled, completed, freed. */
static void abandon(struct side *side, void *request, ucp_tag_recv_info_t *info)
{
	if (request == NULL || UCS_PTR_IS_ERR(request))
		return;
	ucp_request_cancel(side->worker, request);
	wait_request(side, request, info, false);
}

static void *send_tag(struct side *side, const void *buffer, size_t length, ucp_tag_t tag)
{
	ucp_request_param_t param = { .op_attr_mask = 0 };

	return ucp_tag_send_nbx(side->ep, buffer, length, tag, &param);
}

/* Post a receive; *info is filled if it completes at once (NULL returned). */
static void *recv_tag(struct side *side, void *buffer, size_t length, ucp_tag_t tag,
		      ucp_tag_t mask, ucp_tag_recv_info_t *info)
{
	ucp_request_param_t param = { .op_attr_mask = UCP_OP_ATTR_FIELD_RECV_INFO,
				      .recv_info.tag_info = info };

	return ucp_tag_recv_nbx(side->worker, buffer, length, tag, mask, &param);
}

/* Send and wait for the send to complete. */
static ucs_status_t send_wait(struct side *side, const void *buffer, size_t length, ucp_tag_t tag)
{
	return wait_request(side, send_tag(side, buffer, length, tag), NULL, true);
}

/* Context, worker and address of this process, for the transports tls. */
static ucs_status_t side_open(struct side *side, const char *tls)
{
	ucp_params_t params = { .field_mask = UCP_PARAM_FIELD_FEATURES,
				.features = UCP_FEATURE_TAG };
	ucp_worker_params_t worker_params = { .field_mask = UCP_WORKER_PARAM_FIELD_THREAD_MODE,
					      .thread_mode = UCS_THREAD_MODE_SINGLE };
	ucp_config_t *config;
	ucs_status_t status = ucp_config_read(NULL, NULL, &config);

	if (status != UCS_OK)
		return side_fail(side, STAGE_CONFIG, status, NULL);
	status = ucp_config_modify(config, "TLS", tls);
	if (status != UCS_OK) {
		ucp_config_release(config);
		return side_fail(side, STAGE_CONFIG, status, NULL);
	}
	status = ucp_init(&params, config, &side->context);
	ucp_config_release(config);
	if (status != UCS_OK) {
		side->context = NULL;
		return side_fail(side, STAGE_INIT, status, NULL);
	}
	status = ucp_worker_create(side->context, &worker_params, &side->worker);
	if (status != UCS_OK)
		return side_fail(side, STAGE_WORKER, status, NULL);
	status = ucp_worker_get_address(side->worker, &side->address, &side->address_length);
	if (status != UCS_OK) {
		side->address = NULL;
		return side_fail(side, STAGE_ADDRESS, status, NULL);
	}
	return UCS_OK;
}

static ucs_status_t side_connect(struct side *side, const ucp_address_t *remote)
{
	ucp_ep_params_t params = { .field_mask = UCP_EP_PARAM_FIELD_REMOTE_ADDRESS |
						 UCP_EP_PARAM_FIELD_ERR_HANDLING_MODE,
				   .address = remote,
				   .err_mode = UCP_ERR_HANDLING_MODE_NONE };
	ucs_status_t status = ucp_ep_create(side->worker, &params, &side->ep);

	if (status != UCS_OK) {
		side->ep = NULL;
		return side_fail(side, STAGE_EP_CREATE, status, NULL);
	}
	return UCS_OK;
}

/* Close the endpoint (flushed; forced after a failure, when the peer may be
 * gone or stuck), destroy worker and context. A flush that does not complete
 * in time is reported. */
static void side_close(struct side *side, bool force)
{
	if (side->ep) {
		ucp_request_param_t param = { .op_attr_mask = UCP_OP_ATTR_FIELD_FLAGS,
					      .flags = force ? UCP_EP_CLOSE_FLAG_FORCE : 0 };
		ucs_status_t status;

		status = wait_request(side, ucp_ep_close_nbx(side->ep, &param), NULL, false);
		if (status != UCS_OK) {
			side_fail(side, STAGE_CLOSE, status, NULL);
			/* the worker's destruction releases what the close left */
		}
		side->ep = NULL;
	}
	if (side->address)
		ucp_worker_release_address(side->worker, side->address);
	side->address = NULL;
	if (side->worker)
		ucp_worker_destroy(side->worker);
	side->worker = NULL;
	if (side->context)
		ucp_cleanup(side->context);
	side->context = NULL;
}

/* Read the other's address (a length, then the bytes) into a malloc'ed buffer. */
static int read_address(int fd, const struct peer_note *note, ucp_address_t **address)
{
	void *bytes;
	int ret;

	if (note->address_length == 0 || note->address_length > ADDRESS_MAX)
		return -EPROTO;
	bytes = malloc(note->address_length);
	if (!bytes)
		return -ENOMEM;
	ret = bench_read_all(fd, bytes, note->address_length, BENCH_PEER_TIMEOUT_MS);
	if (ret) {
		free(bytes);
		return ret;
	}
	*address = bytes;
	return 0;
}

static int write_note(int fd, const struct side *side)
{
	struct peer_note note = { .stage = side->fail_stage,
				  .status = side->fail_stage ? side->fail_status : UCS_OK,
				  .address_length = side->fail_stage ? 0 : (uint32_t)side->address_length };
	int ret = bench_write_all(fd, &note, sizeof(note));

	if (!ret && note.address_length)
		ret = bench_write_all(fd, side->address, side->address_length);
	return ret;
}

/* ---- the peer (a forked child) ---- */

struct peer_args {
	const struct bench_pinning *pin;
	const char *tls;
	enum peer_mode mode;
	size_t bytes; /* its receive buffers */
	int from_caller; /* the caller's address, then its hang-up */
	int to_caller;   /* our hello, or why we failed */
};

/* Echo DATA until STOP; in MODE_SINK only the first, then take them in a window. */
static ucs_status_t peer_loop(struct side *side, const struct peer_args *args,
			      unsigned char **buffers)
{
	void *requests[BW_WINDOW] = { NULL };
	ucp_tag_recv_info_t infos[BW_WINDOW];
	const char *words = NULL;
	ucs_status_t status;
	bool stop = false;
	int next = 0;

	for (;;) {
		ucp_tag_recv_info_t info;

		status = wait_request(side, recv_tag(side, buffers[0], args->bytes, 0, 0, &info),
				      &info, true);
		if (status != UCS_OK)
			return side_fail(side, STAGE_RUN, status, NULL);
		if (info.sender_tag == TAG_STOP)
			return UCS_OK;
		if (info.sender_tag != TAG_DATA)
			return side_fail(side, STAGE_RUN, UCS_ERR_INVALID_PARAM,
					 "unexpected tag");
		status = send_wait(side, buffers[0], info.length, TAG_ECHO);
		if (status != UCS_OK)
			return side_fail(side, STAGE_RUN, status, NULL);
		if (args->mode == MODE_SINK)
			break;
	}
	/* the sink: BW_WINDOW receives posted, taken in order, each posted again */
	for (int i = 0; i < BW_WINDOW; i++)
		requests[i] = recv_tag(side, buffers[i], args->bytes, 0, 0, &infos[i]);
	while (!stop) {
		void *request = requests[next];
		ucp_tag_recv_info_t *info = &infos[next];

		requests[next] = NULL;
		status = wait_request(side, request, info, true);
		if (status != UCS_OK)
			break;
		if (info->sender_tag == TAG_STOP) {
			stop = true;
		} else if (info->sender_tag == TAG_ACK_REQ) {
			status = send_wait(side, buffers[next], CONTROL_SIZE, TAG_ACK);
		} else if (info->sender_tag != TAG_DATA) {
			status = UCS_ERR_INVALID_PARAM;
			words = "unexpected tag";
		}
		if (status != UCS_OK)
			break;
		if (!stop)
			requests[next] = recv_tag(side, buffers[next], args->bytes, 0, 0, info);
		next = (next + 1) % BW_WINDOW;
	}
	/* the receives still posted */
	for (int i = 0; i < BW_WINDOW; i++)
		abandon(side, requests[i], &infos[i]);
	if (status != UCS_OK)
		return side_fail(side, STAGE_RUN, status, words);
	return UCS_OK;
}

static int peer_main(const struct peer_args *args, pid_t caller)
{
	int nbuffers = args->mode == MODE_SINK ? BW_WINDOW : 1;
	unsigned char *buffers[BW_WINDOW] = { NULL };
	ucp_address_t *remote = NULL;
	struct peer_note note;
	struct side side;
	bool told;
	int ret;

	side_init(&side, false, caller, args->from_caller);
	ret = shmrig_topo_bind_thread(args->pin->topo, args->pin->peer_cpu);
	for (int i = 0; !ret && i < nbuffers; i++) {
		buffers[i] = aligned_alloc(4096, (args->bytes + 4095) / 4096 * 4096);
		if (!buffers[i])
			ret = -ENOMEM;
		else /* faulted in now, not in the first timed batch */
			memset(buffers[i], 0, args->bytes);
	}
	if (ret)
		side_fail(&side, STAGE_PEER_SETUP, ret, NULL);
	else
		side_open(&side, args->tls);
	/* the hello: our address, or why UCX could not start */
	told = side.fail_stage != 0;
	ret = write_note(args->to_caller, &side);
	if (!ret && !side.fail_stage)
		ret = bench_read_all(args->from_caller, &note, sizeof(note), BENCH_PEER_TIMEOUT_MS);
	if (!ret && !side.fail_stage)
		ret = read_address(args->from_caller, &note, &remote);
	if (ret && !side.fail_stage)
		side_fail(&side, STAGE_EXCHANGE, ret, NULL);
	if (!side.fail_stage && side_connect(&side, remote) == UCS_OK)
		peer_loop(&side, args, buffers);
	side_close(&side, side.fail_stage != 0);
	free(remote);
	for (int i = 0; i < nbuffers; i++)
		free(buffers[i]);
	if (!side.fail_stage)
		return 0;
	/* the caller reads why once it sees us gone */
	if (!told && side.fail_stage != STAGE_EXCHANGE)
		write_note(args->to_caller, &side);
	return 1;
}

/* ---- the caller ---- */

/* What UCX says when a transport cannot work here: the row is skipped. */
static bool transport_unavailable(ucs_status_t status)
{
	return status == UCS_ERR_UNREACHABLE || status == UCS_ERR_NO_DEVICE ||
	       status == UCS_ERR_UNSUPPORTED;
}

/* A failure of UCX (its status), not of the pipes or the peer's setup (-errno) */
static bool ucx_stage(int stage)
{
	return stage >= STAGE_CONFIG && stage <= STAGE_CLOSE;
}

/* A failure of setup or of the checked round trip, before timing */
static bool before_timing(int stage)
{
	return stage != STAGE_RUN && stage != STAGE_CLOSE;
}

struct run {
	struct bench_pinning pin;
	struct side side;
	unsigned char *out; /* what the caller sends */
	unsigned char *back; /* the echo */
	size_t bytes;
	pid_t peer;
	int to_peer;   /* our address, then closed to hang up */
	int from_peer; /* its notes */
	struct bench_ucx_dir dir; /* UCX_POSIX_DIR of both processes for this run */
	char *saved_dir;          /* the UCX_POSIX_DIR before it (malloc'ed), NULL if unset */
	bool pinned;
	bool reported; /* the benchmark is already stopped, with the peer's words */
};

/* Stop the benchmark for a failure of `who`: skipped when UCX says the
 * transport cannot run here (before timing), else failed. */
static void report(gbench_state *st, const char *who, int stage, ucs_status_t status,
		   const char *words, const char *tls)
{
	char message[512];

	if (!ucx_stage(stage))
		snprintf(message, sizeof(message), "%s: %s: %s", who, stage_words(stage),
			 strerror(-status));
	else
		snprintf(message, sizeof(message), "%s: %s: %s", who, stage_words(stage),
			 words ? words : ucs_status_string(status));
	if (!words && ucx_stage(stage) && before_timing(stage) &&
	    transport_unavailable(status)) {
		char why[600];

		snprintf(why, sizeof(why), "UCX cannot run UCX_TLS=%s here: %s", tls, message);
		bench_unavailable(st, why);
	} else {
		char failed[600];

		snprintf(failed, sizeof(failed), "failed: UCX_TLS=%s: %s", tls, message);
		gbench_skip(st, failed);
	}
}

/*
 * The peer's own account, if it left one: it failed and said why. Read
 * without waiting; true if it did (and the benchmark is stopped with it).
 */
static bool report_peer_note(gbench_state *st, struct run *run, const char *tls)
{
	struct pollfd in = { .fd = run->from_peer, .events = POLLIN };
	struct peer_note note;

	if (poll(&in, 1, 0) != 1 || !(in.revents & POLLIN))
		return false;
	if (read(run->from_peer, &note, sizeof(note)) != (ssize_t)sizeof(note) || !note.stage)
		return false;
	report(st, "peer", note.stage, note.status, NULL, tls);
	return true;
}

/* Why the caller's side failed: the peer's note if the peer died first, else ours. */
static void report_failure(gbench_state *st, struct run *run, const char *tls)
{
	struct side *side = &run->side;

	if (side->fail_status == UCS_ERR_CONNECTION_RESET && side->other_gone) {
		if (report_peer_note(st, run, tls))
			return;
		report(st, "caller", side->fail_stage, side->fail_status,
		       "the peer died", tls);
		return;
	}
	if (side->fail_status == UCS_ERR_TIMED_OUT && !side->fail_words) {
		report(st, "caller", side->fail_stage, side->fail_status,
		       "no progress for BENCH_PEER_TIMEOUT_MS", tls);
		return;
	}
	/* a failure of ours before timing may follow one of the peer's */
	if (before_timing(side->fail_stage) && report_peer_note(st, run, tls))
		return;
	report(st, "caller", side->fail_stage, side->fail_status, side->fail_words, tls);
}

/* After a run: a segment UCX left in the run's directory, or a SysV segment
 * created by either process, is a leak (an error, named). The environment
 * gets its UCX_POSIX_DIR back. */
static void check_leftovers(gbench_state *st, struct run *run)
{
	char message[512], line[512];
	FILE *sysv;

	bench_ucx_dir_check(st, &run->dir);
	if (run->saved_dir)
		setenv("UCX_POSIX_DIR", run->saved_dir, 1);
	else
		unsetenv("UCX_POSIX_DIR");
	free(run->saved_dir);
	run->saved_dir = NULL;
	/* key shmid perms size cpid lpid ...: cpid is the creator */
	sysv = fopen("/proc/sysvipc/shm", "r");
	if (!sysv)
		return;
	while (fgets(line, sizeof(line), sysv)) {
		long shmid, cpid;

		if (sscanf(line, "%*d %ld %*o %*u %ld", &shmid, &cpid) == 2 &&
		    (cpid == (long)getpid() || cpid == (long)run->peer)) {
			snprintf(message, sizeof(message),
				 "failed: UCX left SysV segment %ld (created by pid %ld)", shmid,
				 cpid);
			gbench_skip(st, message);
			break;
		}
	}
	fclose(sysv);
}

/*
 * The end of a run, after success or failure: the peer is told to stop (STOP
 * when all went well; after a failure it may be stuck, and is killed: its
 * note, if it left one, stays in the pipe), our side closed, the failure
 * reported, the peer reaped, leftovers checked.
 */
static void run_end(gbench_state *st, struct run *run, const char *tls)
{
	struct side *side = &run->side;
	bool failed = side->fail_stage || run->reported;

	if (!failed && side->ep) {
		uint64_t stop = 0;
		ucs_status_t status = send_wait(side, &stop, CONTROL_SIZE, TAG_STOP);

		if (status != UCS_OK) {
			side_fail(side, STAGE_CLOSE, status, "STOP not delivered");
			failed = true;
		}
	}
	if (failed && run->peer > 0 && !side->other_reaped)
		kill(run->peer, SIGKILL);
	side_close(side, failed);
	if (side->fail_stage)
		report_failure(st, run, tls);
	if (run->to_peer >= 0)
		close(run->to_peer);
	run->to_peer = -1;
	if (run->peer > 0) {
		if (failed) {
			if (!side->other_reaped)
				bench_reap_child(run->peer);
		} else if (side->other_reaped) {
			if (!WIFEXITED(side->other_status) || WEXITSTATUS(side->other_status))
				gbench_skip(st, "failed: the UCX peer ended early");
		} else {
			bench_check_peer_exit(st, run->peer);
		}
	}
	if (run->from_peer >= 0)
		close(run->from_peer);
	check_leftovers(st, run);
	free(run->out);
	free(run->back);
	if (run->pinned)
		bench_pin_end(&run->pin);
}

/* Pin, fork the peer, open our side, exchange addresses, connect, and check one
 * round trip of `bytes`. false: the benchmark is stopped (and all cleaned up). */
static bool run_start(gbench_state *st, struct run *run, const struct ucx_tls *tls,
		      enum peer_mode mode, size_t bytes)
{
	int to_peer[2] = { -1, -1 }, from_peer[2] = { -1, -1 };
	struct side *side = &run->side;
	ucp_address_t *remote = NULL;
	ucp_tag_recv_info_t info;
	struct peer_note note;
	void *receive;
	int ret;

	memset(run, 0, sizeof(*run));
	run->to_peer = run->from_peer = -1;
	run->bytes = bytes;
	side_init(side, true, -1, -1);
	/* UCX's posix segments of this run (both processes read it after the fork) */
	if (getenv("UCX_POSIX_DIR") && !(run->saved_dir = strdup(getenv("UCX_POSIX_DIR")))) {
		bench_fail_os(st, "out of memory", -ENOMEM);
		return false;
	}
	ret = bench_ucx_dir_make(&run->dir);
	if (!ret && setenv("UCX_POSIX_DIR", run->dir.path, 1))
		ret = -errno;
	if (ret) {
		bench_fail_os(st, "a directory for UCX's segments in /dev/shm", ret);
		check_leftovers(st, run);
		return false;
	}
	if (!bench_pin_start(st, &run->pin)) {
		check_leftovers(st, run);
		return false;
	}
	run->pinned = true;
	run->out = aligned_alloc(4096, (bytes + 4095) / 4096 * 4096);
	run->back = aligned_alloc(4096, (bytes + 4095) / 4096 * 4096);
	if (!run->out || !run->back) {
		bench_fail_os(st, "out of memory", -ENOMEM);
		run_end(st, run, tls->tls);
		return false;
	}
	for (size_t i = 0; i < bytes; i++)
		run->out[i] = (unsigned char)(i * 131 + 7);
	if (pipe2(to_peer, O_CLOEXEC) || pipe2(from_peer, O_CLOEXEC)) {
		bench_fail_os(st, "pipe", -errno);
		goto fail_pipes;
	}
	/* no UCP context is alive here: each process makes its own after the fork */
	fflush(NULL);
	run->peer = fork();
	if (run->peer < 0) {
		bench_fail_os(st, "fork", -errno);
		goto fail_pipes;
	}
	if (run->peer == 0) {
		struct peer_args args = { .pin = &run->pin,
					  .tls = tls->tls,
					  .mode = mode,
					  .bytes = bytes,
					  .from_caller = to_peer[0],
					  .to_caller = from_peer[1] };

		close(to_peer[1]);
		close(from_peer[0]);
		_exit(peer_main(&args, getppid()));
	}
	close(to_peer[0]);
	close(from_peer[1]);
	run->to_peer = to_peer[1];
	run->from_peer = from_peer[0];
	side->other = run->peer;

	if (side_open(side, tls->tls) != UCS_OK)
		goto fail;
	/* the peer's hello: its address, or why it could not start */
	ret = bench_read_all(run->from_peer, &note, sizeof(note), BENCH_PEER_TIMEOUT_MS);
	if (ret) {
		side_fail(side, STAGE_EXCHANGE, ret, NULL);
		goto fail;
	}
	if (note.stage) {
		report(st, "peer", note.stage, note.status, NULL, tls->tls);
		run->reported = true;
		goto fail;
	}
	ret = read_address(run->from_peer, &note, &remote);
	if (!ret)
		ret = write_note(run->to_peer, side);
	if (ret) {
		side_fail(side, STAGE_EXCHANGE, ret, NULL);
		goto fail;
	}
	ret = side_connect(side, remote) != UCS_OK;
	free(remote);
	if (ret)
		goto fail;

	/* Checked before timing: the bytes come back unchanged. */
	memset(run->back, 0, bytes);
	receive = recv_tag(side, run->back, bytes, TAG_ECHO, TAG_EXACT, &info);
	if (UCS_PTR_IS_ERR(receive)) {
		side_fail(side, STAGE_CHECK, UCS_PTR_STATUS(receive), NULL);
		goto fail;
	}
	{
		ucs_status_t status = send_wait(side, run->out, bytes, TAG_DATA);

		if (status == UCS_OK)
			status = wait_request(side, receive, &info, true);
		else
			abandon(side, receive, &info);
		if (status != UCS_OK) {
			side_fail(side, STAGE_CHECK, status, NULL);
			goto fail;
		}
	}
	if (info.length != bytes || memcmp(run->out, run->back, bytes)) {
		side_fail(side, STAGE_CHECK, UCS_ERR_INVALID_PARAM,
			  "the echo differs from the message");
		goto fail;
	}
	return true;

fail:
	run_end(st, run, tls->tls);
	return false;
fail_pipes:
	for (int i = 0; i < 2; i++) {
		if (to_peer[i] >= 0)
			close(to_peer[i]);
		if (from_peer[i] >= 0)
			close(from_peer[i]);
	}
	run->peer = 0;
	run_end(st, run, tls->tls);
	return false;
}

/* Append the lane of a ucp_ep_print_info() line, "#  lane[0]:  1:posix/memory.0
 * md[1]  -> md[1]/posix/sysdev[255] am am_bw#0", as "posix/memory.0 am am_bw#0";
 * *found is set if its transport is `transport`. */
static size_t append_lane(char *label, size_t used, size_t size, const char *lane,
			  const char *transport_wanted, bool *found)
{
	const char *transport = strchr(lane, ':'), *arrow = strstr(lane, "->"), *roles;
	size_t transport_length, roles_length;

	if (!transport || !arrow)
		return used;
	transport += 1 + strspn(transport + 1, " ");
	if (strchr(transport, ':') && strchr(transport, ':') < arrow)
		transport = strchr(transport, ':') + 1; /* the resource index */
	transport_length = strcspn(transport, " ");
	if (strncmp(transport, transport_wanted, strlen(transport_wanted)) == 0 &&
	    transport[strlen(transport_wanted)] == '/')
		*found = true;
	roles = arrow + 2 + strspn(arrow + 2, " ");
	roles += strcspn(roles, " "); /* the remote md and device */
	roles += strspn(roles, " ");
	roles_length = strlen(roles);
	used += (size_t)snprintf(label + used, size - used, "%s%.*s %.*s", used ? ", " : "",
				 (int)transport_length, transport, (int)roles_length, roles);
	return used < size ? used : size;
}

/*
 * The label: what UCX chose for the caller's endpoint, from
 * ucp_ep_print_info(): the transport and role of each lane, and the size from
 * which a tag send is a rendezvous ("posix/memory.0 am am_bw#0, cma/memory.0
 * rma_bw#0; rndv from 8256 B"). false if no lane uses the row's transport:
 * UCX left it out (cma where process_vm_readv is not permitted) and ran the
 * others; the row is then skipped with the lanes UCX chose, rather than
 * reported under a name it did not measure. Best effort otherwise: no label
 * if the text changes.
 */
static bool set_lanes_label(gbench_state *st, struct run *run, const struct ucx_tls *tls)
{
	char label[LABEL_MAX] = "", rndv[64] = "", *text = NULL, *line, *save = NULL;
	size_t text_size = 0, used = 0;
	FILE *stream = open_memstream(&text, &text_size);
	bool found = false;

	if (!stream)
		return true;
	ucp_ep_print_info(run->side.ep, stream);
	fclose(stream);
	for (line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		const char *lane = strstr(line, "lane["), *tag = strstr(line, "tag_send:");
		const char *mark = strstr(line, "..<rndv>");

		if (lane)
			used = append_lane(label, used, sizeof(label), lane, tls->name, &found);
		/* "tag_send: 0..<egr/short>..93..<egr/bcopy>..8256..<rndv>..(inf)" */
		if (tag && mark && !rndv[0]) {
			const char *number = mark;

			while (number > tag && (number[-1] >= '0' && number[-1] <= '9'))
				number--;
			if (number < mark)
				snprintf(rndv, sizeof(rndv), "; rndv from %.*s B", (int)(mark - number),
					 number);
		}
	}
	free(text);
	if (used && !found) {
		char why[LABEL_MAX + 128];

		snprintf(why, sizeof(why), "UCX_TLS=%s: UCX put no %s lane on the endpoint (%s)",
			 tls->tls, tls->name, label);
		bench_unavailable(st, why);
		return false;
	}
	if (used && used < sizeof(label))
		snprintf(label + used, sizeof(label) - used, "%s", rndv);
	gbench_set_label(st, label);
	return true;
}

/* Round trips a timed batch: enough to amortize reading the clock, few for large payloads. */
static int64_t round_trips_per_batch(size_t bytes)
{
	return bytes >= (1 << 20) ? 1 : bytes >= (64 << 10) ? 4 : 64;
}

static void bm_ucx_rtt(gbench_state *st, void *arg)
{
	const struct ucx_tls *tls = arg;
	size_t bytes = (size_t)gbench_range(st, 0);
	int64_t batch = round_trips_per_batch(bytes);
	struct bench_lat_batch timed;
	struct bench_lat lat;
	struct run run;
	double total_s = 0;
	ucs_status_t status = UCS_OK;

	bench_lat_init(&lat);
	if (!run_start(st, &run, tls, MODE_ECHO, bytes))
		return;
	if (!set_lanes_label(st, &run, tls))
		status = UCS_ERR_UNSUPPORTED;
	while (status == UCS_OK && gbench_loop(st, batch)) {
		double batch_s;

		bench_lat_batch_start(&timed);
		for (int64_t i = 0; status == UCS_OK && i < batch; i++) {
			ucp_tag_recv_info_t info;
			void *receive = recv_tag(&run.side, run.back, bytes, TAG_ECHO, TAG_EXACT,
						 &info);

			status = send_wait(&run.side, run.out, bytes, TAG_DATA);
			if (status == UCS_OK) {
				bench_lat_mark(&timed); /* while the peer answers */
				status = wait_request(&run.side, receive, &info, true);
			} else {
				abandon(&run.side, receive, &info);
			}
		}
		batch_s = bench_lat_batch_end(&timed, status == UCS_OK ? &lat : NULL);
		total_s += batch_s;
		if (status == UCS_OK)
			gbench_set_iteration_time(st, batch_s);
		else
			side_fail(&run.side, STAGE_RUN, status, NULL);
	}
	if (status == UCS_OK && gbench_iterations(st)) {
		gbench_set_bytes_processed(st, gbench_iterations(st) * (int64_t)bytes);
		gbench_counter(st, "one_way_ns", total_s * 1e9 / (double)gbench_iterations(st) / 2,
			       0);
		bench_lat_counters(st, &lat);
	}
	run_end(st, &run, tls->tls);
}

/* Wait for the oldest of the outstanding sends. */
static ucs_status_t wait_oldest(struct side *side, void **window, int *oldest, int *outstanding)
{
	ucs_status_t status = wait_request(side, window[*oldest], NULL, true);

	window[*oldest] = NULL;
	*oldest = (*oldest + 1) % BW_WINDOW;
	(*outstanding)--;
	return status;
}

static void bm_ucx_bw(gbench_state *st, void *arg)
{
	const struct ucx_tls *tls = arg;
	size_t bytes = (size_t)gbench_range(st, 0);
	uint64_t control = 0, answer = 0;
	ucs_status_t status = UCS_OK;
	struct run run;

	if (!run_start(st, &run, tls, MODE_SINK, bytes))
		return;
	if (!set_lanes_label(st, &run, tls))
		status = UCS_ERR_UNSUPPORTED;
	while (status == UCS_OK && gbench_loop(st, BW_BATCH)) {
		void *window[BW_WINDOW] = { NULL };
		int oldest = 0, outstanding = 0;
		double start = now_s();
		ucp_tag_recv_info_t info;
		void *receive;

		for (int i = 0; status == UCS_OK && i < BW_BATCH; i++) {
			if (outstanding == BW_WINDOW)
				status = wait_oldest(&run.side, window, &oldest, &outstanding);
			if (status != UCS_OK)
				break;
			window[(oldest + outstanding) % BW_WINDOW] =
				send_tag(&run.side, run.out, bytes, TAG_DATA);
			outstanding++;
		}
		while (outstanding) {
			ucs_status_t done = wait_oldest(&run.side, window, &oldest, &outstanding);

			if (status == UCS_OK)
				status = done;
		}
		/* every message before it has been received when the ACK comes */
		if (status == UCS_OK) {
			receive = recv_tag(&run.side, &answer, sizeof(answer), TAG_ACK, TAG_EXACT,
					   &info);
			status = send_wait(&run.side, &control, CONTROL_SIZE, TAG_ACK_REQ);
			if (status == UCS_OK)
				status = wait_request(&run.side, receive, &info, true);
			else
				abandon(&run.side, receive, &info);
		}
		if (status == UCS_OK)
			gbench_set_iteration_time(st, now_s() - start);
		else
			side_fail(&run.side, STAGE_RUN, status, NULL);
	}
	if (status == UCS_OK)
		gbench_set_bytes_processed(st, gbench_iterations(st) * (int64_t)bytes);
	run_end(st, &run, tls->tls);
}

#define BM_RTT bm_ucx_rtt
#define BM_BW bm_ucx_bw

#endif /* HAVE_UCX */

/* ---- registration ---- */

void bench_peer_ucx_register(void)
{
	char name[64];

	for (size_t i = 0; i < sizeof(tls_table) / sizeof(tls_table[0]); i++) {
		/* the names are copied by Google Benchmark; arg must live on */
		void *tls = (void *)&tls_table[i];
		gbench_benchmark *b;

		snprintf(name, sizeof(name), "peer/ucx/%s/rtt", tls_table[i].name);
		b = gbench_unit(gbench_use_manual_time(gbench_register(name, BM_RTT, tls)), 'u');
		for (size_t j = 0; j < sizeof(rtt_sizes) / sizeof(rtt_sizes[0]); j++)
			b = gbench_arg(b, rtt_sizes[j]);
		snprintf(name, sizeof(name), "peer/ucx/%s/bw", tls_table[i].name);
		gbench_arg(gbench_unit(gbench_use_manual_time(gbench_register(name, BM_BW, tls)),
				       'u'),
			   BW_SIZE);
	}
}
