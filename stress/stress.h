/* SPDX-License-Identifier: MIT */
/*
 * shmrig-stress: what the driver (main.c), the workers (worker.c) and the
 * payloads (payload.c) share.
 *
 * Each pair is a producer and a consumer over one channel. The driver maps a
 * ledger (MAP_SHARED, before any fork) with one slot per pair; each worker
 * writes only its own side of its pair's slot, the driver reads them. A slot
 * describes one epoch of its pair (one producer and one consumer process): it
 * is zeroed before the pair is started again, after the driver has added its
 * figures to the run's totals.
 */
#ifndef SHMRIG_STRESS_H
#define SHMRIG_STRESS_H

#include <shmrig/shmrig.h>

#include "workload.h" /* tools/plan: struct plan_size_item, the workload file */

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define STRESS_MAX_PAIRS 64
#define STRESS_MAX_SIZE_CLASSES PLAN_MAX_SIZE_ITEMS
#define STRESS_MAX_HOLD 64

/* Latency histogram: 4 buckets per power of two of nanoseconds. */
#define HIST_SUB_BITS 2
#define HIST_SUB (1u << HIST_SUB_BITS)
#define HIST_BUCKETS (64 * HIST_SUB)

struct stress_opts {
	const char *backend;
	unsigned pairs;
	double duration_s; /* 0: until `messages` */
	uint64_t messages; /* 0: until `duration_s` */
	/* weight, then bytes in [min, max], log-uniform (plan_parse_size_spec) */
	struct plan_size_item sizes[STRESS_MAX_SIZE_CLASSES];
	unsigned nsizes;
	unsigned window;   /* messages in flight per pair */
	unsigned slots;    /* ring: slots per direction (0: the channel's default) */
	unsigned hold_max; /* persistent values a consumer holds at most */
	int hold_ms;       /* held for a random time in [0, hold_ms] */
	double kill_rate;  /* SIGKILLs per second, of a random worker */
	double stall_rate; /* SIGSTOPs per second, of a random consumer */
	int stall_ms;      /* how long a stalled consumer stays stopped */
	int send_timeout_ms;
	size_t pool_limit; /* each worker's pool max_bytes; 0: the pool's default */
	uint64_t seed;
	const char *json_path;
	/* --require: counters that must not be zero (the scenario did what it claims) */
	const char *require[8];
	unsigned nrequire;
	/* --inject: a fault the checks must catch */
	enum {
		INJECT_NONE,
		INJECT_CORRUPT,
		INJECT_LEAK,
		INJECT_ORPHAN,
		INJECT_HOSTILE,          /* a peer scribbles on the pool's shared structures */
		INJECT_REPLAY,           /* consumers decode frames a second time */
		INJECT_CLOSE_AFTER_SEND, /* producers close their pool and exit after a send */
	} inject;
	uint32_t scribbles; /* --inject hostile: the kinds (1 << enum scribble) it may do */
	char prefix[32];
	bool progress;
	uint64_t fingerprint;
	shmrig_registry *registry;
};

/*
 * Errors a worker counts instead of failing (under --inject hostile, where a
 * peer's scribbles must show as errors), by the code the library returned.
 */
enum err_kind {
	ERR_STALE,   /* -SHMRIG_ESTALE */
	ERR_NOTLIVE, /* -SHMRIG_ENOTLIVE */
	ERR_BADREF,  /* -SHMRIG_EBADREF */
	ERR_CORRUPT, /* -SHMRIG_ECORRUPT */
	ERR_CLAIMED, /* -SHMRIG_ECLAIMED */
	ERR_LEAK,    /* -SHMRIG_ELEAK (pool close) */
	ERR_PERM,    /* -EPERM */
	ERR_BUSY,    /* -EBUSY */
	ERR_BADMSG,  /* -EBADMSG */
	ERR_NOENT,   /* -ENOENT */
	ERR_INVAL,   /* -EINVAL */
	ERR_OTHER,
	ERR_KINDS
};

extern const char *const err_names[ERR_KINDS];
enum err_kind err_kind_of(int code);

/* What a replayed frame's second decode returned (--inject replay). */
enum replay_outcome {
	REPLAY_CLAIMED,  /* -SHMRIG_ECLAIMED: persistent buffers, claimed by the first decode */
	REPLAY_STALE,    /* -SHMRIG_ESTALE: temporary buffers, freed by the first decode */
	REPLAY_ACCEPTED, /* decoded again: a failure */
	REPLAY_WRONG,    /* refused with another code: a failure */
	REPLAY_KINDS
};

/* What the hostile peer writes (--inject hostile); each a bit of `scribbles`. */
enum scribble {
	SC_ARENA_FIELD, /* arena header: magic, version, nchunks, hdr_size, arena_size */
	SC_NEXT_CHUNK,  /* arena header: next_chunk lowered to a chunk in use, or past the end */
	SC_CHUNK_CLASS, /* arena header: an assigned chunk's class changed */
	SC_CLOSED,      /* arena header or large trailer: closed set under a live creator */
	SC_FREE_LIVE,   /* a free-list head pointed at a live block */
	SC_FREE_RANGE,  /* a free-list head pointed at an id out of range */
	SC_FREE_CYCLE,  /* a free-list head block linked to itself */
	SC_REMOTE_LIVE, /* the same three on remote-list heads */
	SC_REMOTE_RANGE,
	SC_REMOTE_CYCLE,
	SC_STATE,          /* a descriptor word of a block someone holds */
	SC_OWNER,          /* a descriptor's owner of a block someone holds */
	SC_LARGE_CAPACITY, /* a large trailer's capacity */
	SC_LARGE_FIELD,    /* a large trailer's magic, version, descriptor word or owner */
	SC_KINDS
};

extern const char *const scribble_names[SC_KINDS];

/* The hostile peer's side of the ledger: it writes, the driver reads. */
struct hostile_ledger {
	_Atomic int stop; /* driver: stop scribbling and exit */
	_Atomic uint64_t scribbles[SC_KINDS];
	_Atomic uint64_t segments; /* pool segments it attached */
	_Atomic int done;
	char error[200];
};

/* What a worker is doing; read by the driver when it kills it. */
enum phase {
	PH_START = 0,
	PH_IDLE,     /* between messages */
	PH_GENERATE, /* building a value in host memory */
	PH_ENCODE,   /* registry encode: blocks being allocated and written */
	PH_SEND,     /* blocks handed over, frame being sent */
	PH_WAIT,     /* waiting for an ack (window full) or a message */
	PH_BACKOFF,  /* the pool said -ENOMEM */
	PH_DECODE,   /* registry decode */
	PH_VERIFY,   /* checksumming a decoded value */
	PH_RELEASE,  /* releasing a held value */
	PH_FINISH,   /* the epoch's end: reap, checks, close */
	PH_COUNT
};

extern const char *const phase_names[PH_COUNT];

/* One worker's side of a slot. Counters: that worker writes, the driver reads. */
struct side {
	_Atomic int phase;
	_Atomic int pid;
	_Atomic uint32_t held_blocks;
	_Atomic uint64_t messages;   /* producer: taken by the channel; consumer: received */
	_Atomic uint64_t bytes;      /* payload bytes of those */
	_Atomic uint64_t enomem;     /* producer: encodes refused with -ENOMEM (backed off) */
	_Atomic uint64_t skipped;    /* producer: values given up after backing off too long */
	_Atomic uint64_t timeouts;   /* producer: sends that timed out (sent again) */
	_Atomic uint64_t corrupted;  /* consumer: checksum or shape mismatch */
	_Atomic uint64_t reverified; /* consumer: held values checked again at release */
	_Atomic uint64_t gaps;       /* consumer: sequence numbers skipped */
	_Atomic uint64_t dups;       /* consumer: sequence numbers seen twice */
	_Atomic uint64_t temporary;  /* consumer: messages whose buffers were all temporary */
	_Atomic uint64_t refused;    /* consumer: messages whose decode failed (--inject hostile) */
	_Atomic uint64_t errors[ERR_KINDS]; /* errors counted, not failed on (--inject hostile) */
	/* The words of the first error of each kind met without failing: the call,
	 * the code and shmrig_last_error() ("encode: -ENOMEM: pool: a new ..."). The
	 * worker writes each once; the driver reads them after the worker is gone,
	 * bounded (a kill can cut one short). */
	char enomem_words[200];                 /* producer: the first -ENOMEM backed off from */
	char error_words[ERR_KINDS][160];       /* the first of each errors[] code */
	_Atomic uint64_t replays[REPLAY_KINDS]; /* consumer: second decodes (--inject replay) */
	/* written once, at the end of the epoch, by a worker that was not killed */
	_Atomic int self_killed;       /* --inject orphan: the producer killed itself */
	_Atomic int closed_after_send; /* --inject close-after-send: the producer closed, exits */
	int closed_in_flight;          /* ... with this many messages not acked yet */
	int closed_kept;               /* ... and its close left this many of its segments */
	_Atomic int done;              /* 1: the fields below are final */
	int64_t reaped;                /* blocks shmrig_pool_reap() returned */
	int64_t orphans;               /* consumer: blocks it owned but no value held (freed) */
	int64_t live_end;              /* blocks live in the segments it mapped, after its clean-up
				     * (a producer that closed after a send: blocks it owned) */
	int close_ret;                 /* shmrig_pool_close() */
	int audit_ret;                 /* producer: shmrig_pool_audit() of its arenas */
	int fds_leaked;                /* descriptors open at its end that were not at its start */
	char error[200];               /* the first failure, in words */
};

struct slot {
	struct side prod, cons;
	_Atomic int stop;                    /* driver: finish the epoch in order */
	_Atomic uint64_t hist[HIST_BUCKETS]; /* consumer: latency encode -> verified */
	_Atomic uint64_t max_latency_ns;
};

/* What travels before each frame (and alone for END and DONE). */
#define MSG_DATA 0x41544144u /* "DATA" */
#define MSG_END 0x21444e45u  /* "END!": the producer sent its last message */
#define MSG_DONE 0x454e4f44u /* "DONE": the consumer released everything */
#define MSG_ACK 0x214b4341u  /* "ACK!": one message taken by the consumer */
#define MSG_WARM 0x4d524157u /* "WARM": --workload, before time 0: decoded and dropped */

struct msg_hdr {
	uint32_t magic;
	uint32_t kind; /* enum shmrig_kind of the value */
	uint64_t seq;
	uint64_t checksum; /* shmrig_session_checksum() of the value */
	uint64_t nbytes;   /* payload bytes */
	uint64_t t0_ns;    /* CLOCK_MONOTONIC before encode */
	uint64_t reserved;
};

/* payload.c */
struct payload {
	struct shmrig_value value;
	uint64_t nbytes;
	/* storage behind value */
	unsigned char *buf;
	size_t cap;
	struct shmrig_named_array arrays[8];
	struct shmrig_group groups[2];
};

uint64_t rng_next(uint64_t *state);
double rng_unit(uint64_t *state);
size_t draw_size(const struct stress_opts *o, uint64_t *rng);
/* A random value of about `size` payload bytes in p (reusing p's buffer). 0 or -ENOMEM. */
int payload_make(struct payload *p, size_t size, uint64_t *rng);
/* The same, of the given kind (bytes, ndarray, table or dataset). */
int payload_make_kind(struct payload *p, enum shmrig_kind kind, size_t size, uint64_t *rng);
void payload_free(struct payload *p);

/* worker.c: run one side of a pair in a forked child; returns the exit status. */
int producer_main(const struct stress_opts *o, struct slot *slot, unsigned pair, unsigned epoch,
		  shmrig_channel_pair *chp, pid_t consumer);
int consumer_main(const struct stress_opts *o, struct slot *slot, unsigned pair, unsigned epoch,
		  shmrig_channel_pair *chp, pid_t producer);

/* hostile.c: the hostile peer, in a forked child; returns the exit status. */
int hostile_main(const struct stress_opts *o, struct hostile_ledger *ledger);
int parse_scribbles(const char *spec, uint32_t *mask);

/* ---- --workload: the open-loop replay of a workload file (workload.c, replay.c) ---- */

/*
 * A flow of P producers and C consumers has max(P, C) links, each a channel
 * pair: link k joins the flow's producer k % P and consumer k % C. With P == C
 * each process has one link; otherwise the side with fewer processes serves
 * several, round-robin (a producer sends its messages over its links in turn;
 * a consumer polls its links).
 *
 * The driver maps the ledger (MAP_SHARED, before any fork): a header, then one
 * wl_proc per process, one wl_link per link, and per process `nsamples`
 * wl_samples (a producer's pool on the run's time grid: sample k is taken at
 * start_ns + k * sample_ns, or as soon after as the producer gets to it). Each
 * worker writes only its own wl_proc, its links' side and its samples; the
 * driver reads them once the worker has exited.
 */
#define WL_LARGE SHMRIG_POOL_NUM_CLASSES /* in wl_sample.live: blocks above 1 MiB */
#define WL_CLASSES (SHMRIG_POOL_NUM_CLASSES + 1)
#define WL_HIST_SUB_BITS 4 /* latency: 16 buckets per power of two of ns, each 4.4 % wide */
#define WL_HIST_SUB (1u << WL_HIST_SUB_BITS)
#define WL_HIST_BUCKETS (64 * WL_HIST_SUB)
#define WL_MAX_PROCS 256u
#define WL_MAX_SAMPLE_BYTES ((size_t)256 << 20) /* every process's samples */

struct wl_sample {
	uint32_t taken; /* 1: written */
	uint32_t live[WL_CLASSES];
	uint64_t live_bytes; /* content bytes of every live block */
};

struct wl_link {
	uint64_t sent;     /* producer: messages the channel took */
	uint64_t received; /* consumer: messages decoded */
	uint64_t gaps, dups;
};

struct wl_proc {
	struct side side; /* pid (set by the driver), counters, end-of-run checks, error */
	/* producer */
	uint64_t scheduled;      /* schedule points before the end: sent, given up or not sent */
	uint64_t unsent;         /* ... that it had not got to when the run ended (behind) */
	uint64_t window_waits;   /* messages due with the window full */
	uint64_t window_wait_ns; /* ... and how long they waited for it */
	uint64_t samples, samples_missed, sample_ns; /* taken, grid points skipped, time spent */
	/* both sides: the thread CPU time of the replay's own work on values
	 * (making payloads, checksums), not the library's */
	uint64_t own_cpu_ns;
	/* consumer */
	uint64_t hist[WL_HIST_BUCKETS]; /* latency: receipt - scheduled send */
	uint64_t max_latency_ns;
	uint64_t held_max; /* values held at once, at most */
};

struct wl_ledger {
	_Atomic int pids_set;      /* driver: every process forked, side.pid set */
	_Atomic int ready;         /* workers: how many have their channels open */
	_Atomic int abort;         /* driver: a worker failed to start; give up */
	_Atomic uint64_t start_ns; /* driver: the schedule's time 0, CLOCK_MONOTONIC (0: not yet) */
};

/* The run's layout, the same in every process (computed before fork). */
struct wl_run {
	const struct stress_opts *o;
	const struct plan_workload *wl;
	double rate_scale;
	uint64_t duration_ns, sample_ns;
	unsigned nprocs, nlinks, nsamples;
	unsigned first_proc[PLAN_MAX_FLOWS]; /* producers, then consumers */
	unsigned first_link[PLAN_MAX_FLOWS];
	struct wl_ledger *ledger;
	struct wl_proc *procs;
	struct wl_link *links;
	struct wl_sample *samples;   /* nprocs * nsamples */
	shmrig_channel_pair **pairs; /* one per link */
};

/* workload.c: the driver of --workload; returns the exit status. */
int workload_main(struct stress_opts *o, const char *path, double rate_scale, double sample_ms);

/* replay.c: process `proc` of the run, in a forked child; returns the exit status. */
int replay_producer(const struct wl_run *run, unsigned flow, unsigned index, unsigned proc);
int replay_consumer(const struct wl_run *run, unsigned flow, unsigned index, unsigned proc);
unsigned wl_hist_bucket(uint64_t ns);
/* A bucket's middle, geometric: within 2.2 % of any latency in it. */
double wl_hist_mid_ns(unsigned bucket);

uint64_t now_ns(void);
/* This thread's CPU time, ns. */
uint64_t thread_cpu_ns(void);
/* What went wrong in a run, in words, the first STRESS_MAX_FAILURES kept. */
#define STRESS_MAX_FAILURES 16
struct failures {
	unsigned n;
	char text[STRESS_MAX_FAILURES][512];
};
__attribute__((format(printf, 2, 3))) void failures_add(struct failures *f, const char *fmt, ...);
/* Live blocks of the pool this process owns (for_each_live), or -errno. */
int64_t own_live_blocks(shmrig_pool *pool);
/* The descriptors open now (below FD_SET_MAX), and how many are open now that were not then. */
#define FD_SET_MAX 1024
struct fd_set_bits {
	uint64_t bits[FD_SET_MAX / 64];
};
void fds_snapshot(struct fd_set_bits *set);
int fds_new_since(const struct fd_set_bits *then);
/* Log-linear buckets: below 2^bits a value is its own bucket; above, each power
 * of two has 2^bits buckets. log_bucket_low: a bucket's lowest value and width. */
unsigned log_bucket(uint64_t ns, unsigned bits);
uint64_t log_bucket_low(unsigned bucket, unsigned bits, uint64_t *width);
unsigned hist_bucket(uint64_t ns);
uint64_t hist_upper_ns(unsigned bucket);

#endif
