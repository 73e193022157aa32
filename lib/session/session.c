/* SPDX-License-Identifier: MIT */
/*
 * session: a forked worker that serves named handlers over a channel.
 *
 * Every message is a msg_hdr, then a payload: a frame (CALL, RESULT), the
 * words of a failure (ERROR: NUL-terminated), the worker's procid (READY), or
 * nothing. The header is 40 bytes, so a frame after it is 8-byte aligned in the
 * channel's 8-aligned receive buffer, as frames must be.
 *
 *   worker -> caller   READY (after fork, once its pool and channel are open)
 *   caller -> worker   CALL id handler arg frame   -> RESULT id frame | ERROR id status text
 *                      PING id                     -> PONG id
 *                      SHUTDOWN id                 -> BYE id, then it exits
 *
 * Both ends are the same binary (a fork), so the layout cannot differ; what
 * arrives is still checked before use, and a worker that sends nonsense is
 * killed rather than trusted.
 *
 * Who owns the blocks: the caller hands a request's blocks to the worker
 * before it sends the CALL, and the worker hands the response's blocks to the
 * caller before it sends the RESULT. A reply the caller no longer waits for
 * (its call timed out) is discarded and its blocks freed. When the worker
 * ends, the caller reaps whatever the worker owned, and removes the segments
 * the worker created if it could not (it died).
 */
#include "transport/channel_internal.h"
#include "base/internal.h"
#include "os/liveness.h"
#include "os/prim.h"

#include <shmrig/frame.h>
#include <shmrig/session.h>

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <xxhash.h>

#define MSG_MAGIC 0x53534553u /* "SESS" */
#define HANDLER_NAME_MAX 31
/* Longest failure text carried in an ERROR. */
#define ERROR_TEXT_MAX 512
/* How long a worker whose channel closed may take to exit before it is killed. */
#define EXIT_GRACE_MS 5000

/* The worker's exit codes (signals aside). */
enum {
	EXIT_OK = 0,
	EXIT_LEAK = 3,  /* blocks of its own were live at its pool's close */
	EXIT_SETUP = 4, /* could not open its pool or its channel */
	EXIT_PROTO = 5, /* the caller's messages made no sense, or the channel failed */
};

enum msg_type {
	MSG_READY = 1,
	MSG_CALL,
	MSG_RESULT,
	MSG_ERROR,
	MSG_PING,
	MSG_PONG,
	MSG_SHUTDOWN,
	MSG_BYE,
	MSG_TYPE_END
};

struct msg_hdr {
	uint32_t magic;
	uint16_t type;
	uint16_t reserved0;
	uint64_t id;      /* correlation id: a reply carries its request's */
	double arg;       /* CALL: the caller's argument */
	uint32_t handler; /* CALL: index in the handler table (the worker's is a copy) */
	int32_t status;   /* ERROR: a negative errno-style code */
	uint64_t reserved1;
};
_Static_assert(sizeof(struct msg_hdr) == 40, "session header layout");
_Static_assert(sizeof(struct msg_hdr) % 8 == 0, "the frame after the header must stay 8-aligned");
_Static_assert(offsetof(struct msg_hdr, id) == 8, "session header layout");
_Static_assert(offsetof(struct msg_hdr, handler) == 24, "session header layout");

struct handler {
	char name[HANDLER_NAME_MAX + 1];
	shmrig_handler_fn fn;
	void *ctx;
};

enum state {
	STATE_IDLE,    /* no worker: never started, or shut down */
	STATE_RUNNING, /* a worker serves */
	STATE_DEAD,    /* the worker died or was killed; it has been reaped */
};

struct shmrig_session {
	shmrig_registry *reg;
	shmrig_pool *pool;
	unsigned fork_epoch; /* of the creating process */
	char prefix[SHMRIG_PREFIX_MAX + 1];
	struct shmrig_channel_opts channel_opts;
	bool has_worker_pool;
	struct shmrig_pool_opts worker_pool;
	int call_timeout_ms;
	int start_timeout_ms;
	struct handler *handlers;
	uint32_t nhandlers;
	uint32_t cap;
	enum state state;
	pid_t worker;
	shmrig__procid worker_id; /* from READY; 0 before */
	shmrig_channel *ch;
	uint64_t next_id;
	char last_end[160]; /* how the last worker ended, for later calls' messages */
	struct shmrig_session_stats stats;
};

struct scratch_node {
	struct scratch_node *next;
	max_align_t data[];
};

struct shmrig_handler_scratch {
	struct scratch_node *head;
};

/* The session a worker serves: its handles are the parent's memory, and a
 * leak checker run at the worker's exit must find them reachable. */
static struct shmrig_session *worker_session;

/* ---- small pieces ---- */

static int check_session(const struct shmrig_session *sess)
{
	if (!sess)
		return shmrig__fail(-EINVAL, "session is NULL");
	if (SHMRIG_UNLIKELY(sess->fork_epoch != shmrig__fork_epoch()))
		return shmrig__fail(-SHMRIG_EFORK,
				    "session handle was inherited through fork: it belongs to "
				    "the process that created it");
	return 0;
}

static int effective_timeout(const struct shmrig_session *sess, int timeout_ms)
{
	return timeout_ms == 0 ? sess->call_timeout_ms : timeout_ms;
}

/* Write "'a', 'b', ..." into buf: the handlers there are, for error messages. */
static const char *handler_list(const struct shmrig_session *sess, char *buf, size_t len)
{
	size_t used = 0;

	snprintf(buf, len, "none");
	for (uint32_t i = 0; i < sess->nhandlers && used < len; i++)
		used += (size_t)snprintf(buf + used, len - used, "%s'%s'", i ? ", " : "",
					 sess->handlers[i].name);
	return buf;
}

static int find_handler(const struct shmrig_session *sess, const char *name)
{
	for (uint32_t i = 0; i < sess->nhandlers; i++)
		if (strcmp(sess->handlers[i].name, name) == 0)
			return (int)i;
	return -1;
}

/* ---- messages ---- */

/* One buffer: the header, then `len` bytes of payload. NULL: ENOMEM. */
static void *msg_build(const struct msg_hdr *hdr, const void *payload, size_t len)
{
	char *msg = shmrig__msg_alloc(sizeof(*hdr) + len);

	if (!msg)
		return NULL;
	memcpy(msg, hdr, sizeof(*hdr));
	if (len)
		memcpy(msg + sizeof(*hdr), payload, len);
	return msg;
}

static int send_bare(shmrig_channel *ch, enum msg_type type, uint64_t id, int timeout_ms)
{
	struct msg_hdr hdr = { .magic = MSG_MAGIC, .type = (uint16_t)type, .id = id };

	return shmrig_channel_send(ch, &hdr, sizeof(hdr), timeout_ms);
}

/* ERROR id status text, the text cut at ERROR_TEXT_MAX. */
static int send_error(shmrig_channel *ch, uint64_t id, int status, const char *text)
{
	struct msg_hdr hdr = { .magic = MSG_MAGIC, .type = MSG_ERROR, .id = id, .status = status };
	char words[ERROR_TEXT_MAX];
	void *msg;
	int ret;

	snprintf(words, sizeof(words), "%s", text);
	msg = msg_build(&hdr, words, strlen(words) + 1);
	if (!msg)
		return -ENOMEM;
	ret = shmrig_channel_send(ch, msg, sizeof(hdr) + strlen(words) + 1, -1);
	free(msg);
	return ret;
}

/*
 * Check what arrived and copy its header out. The payload is whatever follows;
 * its kind is checked per type (a frame is checked by whoever decodes it).
 * 0 or -EPROTO (the message says what is wrong).
 */
static int msg_check(const void *msg, size_t len, struct msg_hdr *hdr)
{
	size_t payload;

	if (len < sizeof(*hdr))
		return shmrig__fail(-EPROTO, "session: a %zu-byte message (the header is %zu)", len,
				    sizeof(*hdr));
	memcpy(hdr, msg, sizeof(*hdr));
	payload = len - sizeof(*hdr);
	if (hdr->magic != MSG_MAGIC || hdr->type == 0 || hdr->type >= MSG_TYPE_END ||
	    hdr->reserved0 || hdr->reserved1)
		return shmrig__fail(-EPROTO, "session: bad message header (magic %08x, type %u)",
				    hdr->magic, hdr->type);
	switch (hdr->type) {
	case MSG_CALL:
	case MSG_RESULT:
		return 0;
	case MSG_ERROR:
		if (hdr->status >= 0 || hdr->status == INT32_MIN || payload == 0 ||
		    payload > ERROR_TEXT_MAX || ((const char *)msg)[len - 1] != '\0')
			return shmrig__fail(-EPROTO, "session: malformed error message");
		return 0;
	case MSG_READY:
		if (payload != sizeof(shmrig__procid))
			return shmrig__fail(-EPROTO, "session: malformed ready message");
		return 0;
	default:
		if (payload)
			return shmrig__fail(-EPROTO, "session: message type %u carries %zu bytes",
					    hdr->type, payload);
		return 0;
	}
}

/* ---- the checksum ---- */

static int hash_array(XXH3_state_t *state, const struct shmrig_array *array)
{
	uint64_t nbytes;
	int ret = shmrig_array_nbytes(array, &nbytes);

	if (ret)
		return ret;
	if (nbytes && !array->data)
		return shmrig__fail(-EINVAL, "checksum: an array of %llu bytes has no data",
				    (unsigned long long)nbytes);
	if (nbytes)
		XXH3_64bits_update(state, array->data, (size_t)nbytes);
	return 0;
}

static int hash_named(XXH3_state_t *state, const struct shmrig_named_array *arrays, uint32_t n)
{
	if (n && !arrays)
		return shmrig__fail(-EINVAL, "checksum: %u arrays but no array list", n);
	for (uint32_t i = 0; i < n; i++) {
		int ret = hash_array(state, &arrays[i].array);

		if (ret)
			return ret;
	}
	return 0;
}

int shmrig_session_checksum(const struct shmrig_value *value, uint64_t *out)
{
	XXH3_state_t *state;
	int ret = 0;

	if (!value || !out)
		return shmrig__fail(-EINVAL, "checksum: NULL argument");
	state = XXH3_createState();
	if (!state)
		return shmrig__fail(-ENOMEM, "checksum: out of memory");
	XXH3_64bits_reset(state);
	switch (value->kind) {
	case SHMRIG_KIND_BYTES:
		if (value->bytes.len && !value->bytes.data)
			ret = shmrig__fail(-EINVAL, "checksum: %llu bytes but no data",
					   (unsigned long long)value->bytes.len);
		else if (value->bytes.len)
			XXH3_64bits_update(state, value->bytes.data, (size_t)value->bytes.len);
		break;
	case SHMRIG_KIND_NDARRAY:
		ret = hash_array(state, &value->array);
		break;
	case SHMRIG_KIND_TABLE:
		ret = hash_named(state, value->table.columns, value->table.ncolumns);
		break;
	case SHMRIG_KIND_DATASET:
		if (value->dataset.ngroups && !value->dataset.groups)
			ret = shmrig__fail(-EINVAL, "checksum: %u groups but no group list",
					   value->dataset.ngroups);
		for (uint32_t g = 0; !ret && g < value->dataset.ngroups; g++)
			ret = hash_named(state, value->dataset.groups[g].variables,
					 value->dataset.groups[g].nvariables);
		break;
	case SHMRIG_KIND_USER:
		ret = shmrig__fail(-ENOTSUP, "checksum: a user value's bytes are its codec's");
		break;
	default:
		ret = shmrig__fail(-EINVAL, "checksum: unknown value kind %d", (int)value->kind);
	}
	if (!ret)
		*out = XXH3_64bits_digest(state);
	XXH3_freeState(state);
	return ret;
}

/* ---- handlers ---- */

void *shmrig_handler_alloc(struct shmrig_handler_call *call, size_t size)
{
	struct scratch_node *node;

	if (!call || !call->scratch || size > SIZE_MAX - sizeof(*node))
		return NULL;
	node = calloc(1, sizeof(*node) + size);
	if (!node)
		return NULL;
	node->next = call->scratch->head;
	call->scratch->head = node;
	return node->data;
}

int shmrig_handler_error(int err, const char *fmt, ...)
{
	char words[ERROR_TEXT_MAX];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(words, sizeof(words), fmt, ap);
	va_end(ap);
	return shmrig__fail(err, "%s", words);
}

static int echo_handler(void *ctx, struct shmrig_handler_call *call)
{
	(void)ctx;
	call->response = *call->request;
	/* a view of the request: the session releases the request itself */
	call->response.storage = NULL;
	return 0;
}

static int checksum_handler(void *ctx, struct shmrig_handler_call *call)
{
	uint64_t *sum = shmrig_handler_alloc(call, sizeof(*sum));
	int ret;

	(void)ctx;
	if (!sum)
		return shmrig_handler_error(-ENOMEM, "checksum: out of memory");
	ret = shmrig_session_checksum(call->request, sum);
	if (ret)
		return ret;
	call->response = (struct shmrig_value){
		.kind = SHMRIG_KIND_NDARRAY,
		.array = { .dtype = SHMRIG_DTYPE_UINT64,
			   .ndim = 1,
			   .shape = { 1 },
			   .order = 'C',
			   .data = sum },
	};
	return 0;
}

static int scale_handler(void *ctx, struct shmrig_handler_call *call)
{
	const struct shmrig_value *req = call->request;
	uint64_t nbytes, count;
	void *out;

	(void)ctx;
	if (req->kind != SHMRIG_KIND_NDARRAY ||
	    (req->array.dtype != SHMRIG_DTYPE_FLOAT32 && req->array.dtype != SHMRIG_DTYPE_FLOAT64))
		return shmrig_handler_error(-EINVAL,
					    "takes a float32 or float64 ndarray, not %s %s",
					    req->kind == SHMRIG_KIND_NDARRAY ? "an ndarray of" :
									       "a value of kind",
					    req->kind == SHMRIG_KIND_NDARRAY ?
						    shmrig_dtype_name(req->array.dtype) :
						    shmrig_kind_name(req->kind));
	if (shmrig_array_nbytes(&req->array, &nbytes) || nbytes > SIZE_MAX)
		return shmrig_handler_error(-EINVAL, "scale: bad array");
	out = shmrig_handler_alloc(call, nbytes ? (size_t)nbytes : 1);
	if (!out)
		return shmrig_handler_error(-ENOMEM, "scale: out of memory for %llu bytes",
					    (unsigned long long)nbytes);
	count = nbytes / shmrig_dtype_size(req->array.dtype);
	if (req->array.dtype == SHMRIG_DTYPE_FLOAT32) {
		const float *in = req->array.data;
		float factor = (float)call->arg, *o = out;

		for (uint64_t i = 0; i < count; i++)
			o[i] = in[i] * factor;
	} else {
		const double *in = req->array.data;
		double *o = out;

		for (uint64_t i = 0; i < count; i++)
			o[i] = in[i] * call->arg;
	}
	call->response.kind = SHMRIG_KIND_NDARRAY;
	call->response.array = req->array;
	call->response.array.data = out;
	return 0;
}

int shmrig_session_handler(shmrig_session *sess, const char *name, shmrig_handler_fn fn, void *ctx)
{
	int ret = check_session(sess);

	if (ret)
		return ret;
	if (!shmrig__valid_name(name, HANDLER_NAME_MAX) || !fn)
		return shmrig__fail(-EINVAL,
				    "session_handler: the name must be 1..%d of [A-Za-z0-9_.-], "
				    "and fn not NULL",
				    HANDLER_NAME_MAX);
	if (sess->state == STATE_RUNNING)
		return shmrig__fail(-EBUSY,
				    "session_handler '%s': worker %d is running; register before "
				    "it starts",
				    name, (int)sess->worker);
	if (find_handler(sess, name) >= 0)
		return shmrig__fail(-EEXIST, "session_handler: '%s' is registered already", name);
	if (sess->nhandlers == SHMRIG_SESSION_MAX_HANDLERS)
		return shmrig__fail(-ENOSPC, "session_handler '%s': %d handlers is the limit", name,
				    SHMRIG_SESSION_MAX_HANDLERS);
	if (sess->nhandlers == sess->cap) {
		uint32_t cap = sess->cap ? sess->cap * 2 : 8;
		struct handler *grown = realloc(sess->handlers, cap * sizeof(*grown));

		if (!grown)
			return shmrig__fail(-ENOMEM, "session_handler: out of memory");
		sess->handlers = grown;
		sess->cap = cap;
	}
	snprintf(sess->handlers[sess->nhandlers].name, sizeof(sess->handlers[0].name), "%s", name);
	sess->handlers[sess->nhandlers].fn = fn;
	sess->handlers[sess->nhandlers].ctx = ctx;
	sess->nhandlers++;
	return 0;
}

int shmrig_session_add_builtin_handlers(shmrig_session *sess)
{
	int ret = shmrig_session_handler(sess, "echo", echo_handler, NULL);

	if (!ret)
		ret = shmrig_session_handler(sess, "checksum", checksum_handler, NULL);
	if (!ret)
		ret = shmrig_session_handler(sess, "scale", scale_handler, NULL);
	return ret;
}

/* ---- the worker ---- */

struct worker {
	struct shmrig_session *sess;
	shmrig_pool *pool;
	shmrig_channel *ch;
	pid_t caller;
};

/*
 * The caller's signal handlers are the caller's: a test runner's SIGSEGV
 * handler, say, would longjmp into the caller's copy of its state. A crash in
 * a handler must end the worker, so every caught signal goes back to its
 * default action. Ignored signals stay ignored, as across exec.
 */
static void reset_signals(void)
{
	sigset_t none;

	for (int sig = 1; sig < NSIG; sig++) {
		struct sigaction old;

		if (sig == SIGKILL || sig == SIGSTOP || sigaction(sig, NULL, &old))
			continue;
		if (!(old.sa_flags & SA_SIGINFO) && old.sa_handler == SIG_IGN)
			continue;
		if (!(old.sa_flags & SA_SIGINFO) && old.sa_handler == SIG_DFL)
			continue;
		signal(sig, SIG_DFL);
	}
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
}

static void scratch_free(struct shmrig_handler_scratch *scratch)
{
	while (scratch->head) {
		struct scratch_node *next = scratch->head->next;

		free(scratch->head);
		scratch->head = next;
	}
}

/*
 * The RESULT message for a response: encoded (copied into new blocks of our
 * pool) behind a header. 0, or an error with `why` saying what failed.
 */
static int build_result(struct worker *w, uint64_t id, const struct shmrig_value *response,
			void **msg, size_t *len, char *why, size_t whylen)
{
	struct msg_hdr hdr = { .magic = MSG_MAGIC, .type = MSG_RESULT, .id = id };
	void *frame;
	size_t frame_len;
	int ret;

	ret = shmrig_registry_encode(w->sess->reg, w->pool, response, &frame, &frame_len);
	if (ret) {
		snprintf(why, whylen, "encoding the response: %s", shmrig_last_error());
		return ret;
	}
	*msg = msg_build(&hdr, frame, frame_len);
	if (!*msg) {
		(void)!shmrig_frame_discard(w->pool, frame, frame_len); /* best effort */
		free(frame);
		snprintf(why, whylen, "out of memory for the reply");
		return -ENOMEM;
	}
	free(frame);
	*len = sizeof(hdr) + frame_len;
	return 0;
}

/* Hand a RESULT's blocks to the caller, then send it. 0 or the channel's error. */
static int send_result(struct worker *w, void *msg, size_t len)
{
	void *frame = (char *)msg + sizeof(struct msg_hdr);
	size_t frame_len = len - sizeof(struct msg_hdr);
	int ret;

	/* From here on the blocks are the caller's, whether or not it lives to read them. */
	ret = shmrig_frame_transfer_peer(w->pool, frame, frame_len, shmrig__channel_peer_id(w->ch));
	if (ret) {
		/* the caller is gone: what we could not hand over is still ours;
		 * what was is not, and discard fails on those, rightly */
		(void)!shmrig_frame_discard(w->pool, frame, frame_len);
		ret = -EPIPE;
	} else {
		ret = shmrig_channel_send(w->ch, msg, len, -1);
	}
	free(msg);
	return ret;
}

/*
 * Serve one CALL: decode, run the handler, encode the response, release the
 * request, reply. The request's blocks are free before the reply leaves: a
 * caller holding the answer holds nothing else of the call. Returns 0 or the
 * channel's error (the caller is gone or the channel broke).
 */
static int serve_call(struct worker *w, const struct msg_hdr *hdr, const void *frame, size_t len)
{
	struct shmrig_session *sess = w->sess;
	struct shmrig_handler_scratch scratch = { NULL };
	struct shmrig_value request;
	struct shmrig_handler_call call;
	const struct handler *h;
	char why[ERROR_TEXT_MAX];
	void *msg = NULL;
	size_t msg_len = 0;
	int ret;

	if (hdr->handler >= sess->nhandlers) {
		/* best effort: -EPROTO is the answer */
		(void)!shmrig_frame_discard(w->pool, frame, len);
		snprintf(why, sizeof(why), "no handler number %u", hdr->handler);
		return send_error(w->ch, hdr->id, -EPROTO, why);
	}
	h = &sess->handlers[hdr->handler];
	ret = shmrig_registry_decode(sess->reg, w->pool, frame, len, &request);
	if (ret) {
		snprintf(why, sizeof(why), "handler '%s': decoding the request: %s", h->name,
			 shmrig_last_error());
		return send_error(w->ch, hdr->id, ret, why);
	}
	call = (struct shmrig_handler_call){
		.handler = h->name,
		.id = hdr->id,
		.arg = hdr->arg,
		.request = &request,
		.pool = w->pool,
		.registry = sess->reg,
		.scratch = &scratch,
	};
	/* a handler's failure must be told from one that left no words */
	shmrig__clear_error();
	ret = h->fn(h->ctx, &call);
	if (ret < 0) {
		snprintf(why, sizeof(why), "handler '%s': %s", h->name,
			 *shmrig_last_error() ? shmrig_last_error() : shmrig_strerror(ret));
	} else {
		char encode_why[ERROR_TEXT_MAX - 64];

		/* the response may view the request or the scratch: both live until now */
		ret = build_result(w, hdr->id, &call.response, &msg, &msg_len, encode_why,
				   sizeof(encode_why));
		if (ret)
			snprintf(why, sizeof(why), "handler '%s': %s", h->name, encode_why);
	}
	/* A block a release fails to free stays ours: counted at exit (EXIT_LEAK),
	 * and shutdown says -SHMRIG_ELEAK. The call's answer stands. */
	if (call.response.storage && call.response.storage != request.storage)
		(void)!shmrig_value_release(&call.response);
	(void)!shmrig_value_release(&request);
	scratch_free(&scratch);
	if (ret)
		return send_error(w->ch, hdr->id, ret, why);
	return send_result(w, msg, msg_len);
}

/* Serve until SHUTDOWN or until the caller is gone. Returns an exit code. */
static int serve(struct worker *w)
{
	for (;;) {
		struct msg_hdr hdr;
		void *msg;
		size_t len;
		int ret = shmrig_channel_recv(w->ch, &msg, &len, -1);

		if (ret == -EPIPE)
			return EXIT_OK; /* the caller closed its end, or died: nobody to serve */
		if (ret)
			return EXIT_PROTO;
		if (msg_check(msg, len, &hdr)) {
			free(msg);
			return EXIT_PROTO;
		}
		switch (hdr.type) {
		case MSG_CALL:
			ret = serve_call(w, &hdr, (char *)msg + sizeof(hdr), len - sizeof(hdr));
			break;
		case MSG_PING:
			ret = send_bare(w->ch, MSG_PONG, hdr.id, -1);
			break;
		case MSG_SHUTDOWN:
			free(msg);
			ret = send_bare(w->ch, MSG_BYE, hdr.id, -1);
			return ret && ret != -EPIPE ? EXIT_PROTO : EXIT_OK;
		default:
			ret = -EPROTO;
		}
		free(msg);
		if (ret == -EPIPE)
			return EXIT_OK;
		if (ret)
			return EXIT_PROTO;
	}
}

static void count_own(void *arg, const struct shmrig_block_info *info)
{
	uint64_t *count = arg;

	if (info->owner == getpid())
		(*count)++;
}

/* READY, carrying our procid: the caller removes our segments by it if we die. */
static int send_ready(shmrig_channel *ch)
{
	struct msg_hdr hdr = { .magic = MSG_MAGIC, .type = MSG_READY };
	shmrig__procid self;
	void *msg;
	int ret = shmrig__self(&self);

	if (ret)
		return shmrig__fail(ret, "session: cannot read the worker's identity: %s",
				    strerror(-ret));
	msg = msg_build(&hdr, &self, sizeof(self));
	if (!msg)
		return -ENOMEM;
	ret = shmrig_channel_send(ch, msg, sizeof(hdr) + sizeof(self), -1);
	free(msg);
	return ret;
}

static _Noreturn void worker_main(struct shmrig_session *sess, shmrig_channel_pair *pair,
				  pid_t caller, uint64_t fingerprint,
				  const struct shmrig_pool_opts *pool_opts)
{
	struct worker w = { .sess = sess, .caller = caller };
	uint64_t own = 0;
	int pool_ret, ret, code;
	bool leaked;

	worker_session = sess;
	reset_signals();
	pool_ret = shmrig_pool_open(pool_opts, &w.pool);
	/* Without a pool the channel still carries the words of why. */
	ret = shmrig_channel_open(pair, 1, caller, pool_ret ? NULL : w.pool, fingerprint, &w.ch);
	shmrig_channel_pair_free(pair);
	if (ret) {
		if (!pool_ret) /* exiting with EXIT_SETUP: nothing was allocated */
			(void)!shmrig_pool_close(w.pool);
		_exit(EXIT_SETUP);
	}
	if (pool_ret) {
		char why[ERROR_TEXT_MAX];

		snprintf(why, sizeof(why), "opening its pool: %s", shmrig_last_error());
		send_error(w.ch, 0, pool_ret, why);
		shmrig_channel_close(w.ch);
		_exit(EXIT_SETUP);
	}
	code = send_ready(w.ch) ? EXIT_PROTO : serve(&w);
	shmrig_channel_close(w.ch);
	/* Blocks the caller holds (responses) are the caller's to release; ours
	 * still live now are leaks. pool_close finds the same ones
	 * (-SHMRIG_ELEAK): its answer stands for a count that failed (-ENOMEM). */
	(void)!shmrig_pool_for_each_live(w.pool, count_own, &own);
	leaked = shmrig_pool_close(w.pool) == -SHMRIG_ELEAK;
	if (!code && (own || leaked))
		code = EXIT_LEAK;
	/* what handlers printed; the caller flushed its own buffers before fork */
	fflush(NULL);
	_exit(code);
}

/* ---- the caller: the worker's end ---- */

/*
 * Wait for the worker to exit, at most timeout_ms (< 0: as long as it takes).
 * 0 with *status set, -ETIMEDOUT, or -ECHILD (it is not our child any more:
 * SIGCHLD ignored, or someone else waited for it).
 */
static int wait_exit(pid_t pid, int timeout_ms, int *status)
{
	int64_t start = shmrig__now_ms();
	/* A pidfd turns "wait with a timeout" into a poll. Without one (old
	 * kernels, valgrind before 3.20), poll the exit status every millisecond. */
	static bool no_pidfd; /* asked once: valgrind warns at every unknown syscall */
	int pidfd = -1, ret;

	if (!no_pidfd) {
		pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
		if (pidfd < 0 && errno == ENOSYS)
			no_pidfd = true;
	}

	for (;;) {
		pid_t done = waitpid(pid, status, WNOHANG);
		int left;

		if (done == pid) {
			ret = 0;
			break;
		}
		if (done < 0 && errno != EINTR) {
			ret = -errno;
			break;
		}
		left = shmrig__remaining_ms(start, timeout_ms);
		if (left == 0) {
			ret = -ETIMEDOUT;
			break;
		}
		if (pidfd >= 0) {
			struct pollfd pfd = { .fd = pidfd, .events = POLLIN };

			poll(&pfd, 1, left);
		} else {
			struct timespec tick = { 0, 1000000 };

			nanosleep(&tick, NULL);
		}
	}
	if (pidfd >= 0)
		close(pidfd);
	return ret;
}

/* "was killed by signal 9 (Killed)", "exited with status 4 (...)". */
static void describe_exit(int status, bool known, char *buf, size_t len)
{
	if (!known) {
		snprintf(buf, len, "ended (its exit status was collected elsewhere)");
	} else if (WIFSIGNALED(status)) {
		snprintf(buf, len, "was killed by signal %d (%s)", WTERMSIG(status),
			 strsignal(WTERMSIG(status)));
	} else if (WIFEXITED(status)) {
		int code = WEXITSTATUS(status);

		snprintf(buf, len, "exited with status %d%s", code,
			 code == EXIT_OK    ? "" :
			 code == EXIT_LEAK  ? " (blocks of its own were live at its close)" :
			 code == EXIT_SETUP ? " (it could not open its pool or channel)" :
			 code == EXIT_PROTO ? " (its channel failed)" :
					      "");
	} else {
		snprintf(buf, len, "ended with wait status 0x%x", (unsigned)status);
	}
}

struct dead_segments {
	const char *prefix;
	shmrig__procid id;
	char (*names)[SHMRIG_NAME_MAX];
	size_t count;
	size_t cap;
};

static void collect_dead(void *arg, const char *name)
{
	struct dead_segments *dead = arg;
	uint64_t start;
	pid_t pid;

	if (shmrig_segment_parse_name(dead->prefix, name, &pid, &start) ||
	    shmrig__procid_make(pid, start) != dead->id)
		return;
	if (dead->count == dead->cap) {
		size_t cap = dead->cap ? dead->cap * 2 : 16;
		char(*grown)[SHMRIG_NAME_MAX] = realloc(dead->names, cap * sizeof(*grown));

		if (!grown)
			return; /* left for shmrig_pool_sweep() */
		dead->names = grown;
		dead->cap = cap;
	}
	snprintf(dead->names[dead->count++], SHMRIG_NAME_MAX, "%s", name);
}

/*
 * Remove the segments a dead worker created (its pool could not). Nothing of
 * ours needs their names any more: replies in flight were drained, and what
 * we still view of them is mapped. Named by pid and start time, so a new
 * process that reused the pid is not touched. Returns how many.
 */
static int remove_segments_of(struct shmrig_session *sess, shmrig__procid id)
{
	struct dead_segments dead = { .prefix = sess->prefix, .id = id };
	int removed = 0;

	if (!id)
		return 0; /* it died before READY: it had created nothing */
	/* a scan that fails removes what it found: the rest is left for shmrig_pool_sweep() */
	(void)!shmrig_segment_list(sess->prefix, collect_dead, &dead);
	for (size_t i = 0; i < dead.count; i++)
		if (shmrig_segment_unlink_name(sess->prefix, dead.names[i]) == 0)
			removed++;
	free(dead.names);
	return removed;
}

/* Free the blocks of a reply nobody waits for (they were handed to us). */
static void discard_reply(struct shmrig_session *sess, const struct msg_hdr *hdr, void *msg,
			  size_t len)
{
	/* best effort: nobody to tell; what stays ours is reported at pool_close */
	if (hdr->type == MSG_RESULT)
		(void)!shmrig_frame_discard(sess->pool, (char *)msg + sizeof(*hdr),
					    len - sizeof(*hdr));
	free(msg);
}

enum end_how {
	END_EXITING, /* its channel closed, or it said BYE: it is on its way out */
	END_KILL,    /* kill it first */
};

/*
 * The worker is gone or must go: kill it if asked, wait for it (no zombie),
 * free the blocks of the replies it had sent, close the channel, reap the
 * blocks it owned, and remove the segments it leaves behind. `how_ended`
 * gets the words for its end; returns its wait status (-1 if unknown).
 */
static int end_worker(struct shmrig_session *sess, enum end_how how, char *how_ended, size_t len,
		      int *reaped_out)
{
	pid_t pid = sess->worker;
	int status = -1, ret, reaped;
	bool known;

	if (how == END_KILL)
		kill(pid, SIGKILL);
	ret = wait_exit(pid, how == END_KILL ? -1 : EXIT_GRACE_MS, &status);
	if (ret == -ETIMEDOUT) {
		kill(pid, SIGKILL);
		ret = wait_exit(pid, -1, &status);
	}
	known = ret == 0;
	describe_exit(status, known, how_ended, len);
	if (sess->ch) {
		void *msg;
		size_t got;

		/* replies it sent before it went: their blocks are ours */
		while (shmrig_channel_recv(sess->ch, &msg, &got, 0) == 0) {
			struct msg_hdr hdr;

			if (msg_check(msg, got, &hdr) == 0)
				discard_reply(sess, &hdr, msg, got);
			else
				free(msg);
		}
		shmrig_channel_close(sess->ch);
		sess->ch = NULL;
	}
	/* requests in flight to it, blocks it held, its cached blocks in our arenas */
	reaped = shmrig_pool_reap(sess->pool);
	if (reaped > 0)
		sess->stats.blocks_reaped += (uint64_t)reaped;
	*reaped_out = reaped > 0 ? reaped : 0;
	if (!known || !WIFEXITED(status) || WEXITSTATUS(status) != EXIT_OK)
		sess->stats.segments_removed += (uint64_t)remove_segments_of(sess, sess->worker_id);
	snprintf(sess->last_end, sizeof(sess->last_end), "worker %d %s", (int)pid, how_ended);
	sess->worker = 0;
	sess->worker_id = 0;
	return known ? status : -1;
}

/* What we asked the worker, put in words only when something goes wrong. */
struct request {
	const char *kind;    /* "call", "ping", "shutdown", "its start" */
	uint64_t id;         /* 0: no id to name */
	const char *handler; /* a call's, else NULL */
};

static const char *request_words(const struct request *r, char *buf, size_t len)
{
	if (r->handler)
		snprintf(buf, len, "%s %llu ('%s')", r->kind, (unsigned long long)r->id,
			 r->handler);
	else if (r->id)
		snprintf(buf, len, "%s %llu", r->kind, (unsigned long long)r->id);
	else
		snprintf(buf, len, "%s", r->kind);
	return buf;
}

/* The worker died while we talked to it: end it and say so. Returns -EPIPE. */
static int lost_worker(struct shmrig_session *sess, const struct request *r)
{
	char how[128], during[80];
	pid_t pid = sess->worker;
	int reaped;

	end_worker(sess, END_EXITING, how, sizeof(how), &reaped);
	sess->state = STATE_DEAD;
	sess->stats.deaths++;
	return shmrig__fail(-EPIPE,
			    "session: worker %d %s during %s; %d block%s it held reaped "
			    "(restart the session)",
			    (int)pid, how, request_words(r, during, sizeof(during)), reaped,
			    reaped == 1 ? "" : "s");
}

/* The worker cannot be trusted or waited for any longer: kill it. Returns err
 * with `why` and how it ended. */
static int kill_worker(struct shmrig_session *sess, int err, const char *why)
{
	char how[128], words[ERROR_TEXT_MAX];
	pid_t pid = sess->worker;
	int reaped;

	snprintf(words, sizeof(words), "%s", why);
	end_worker(sess, END_KILL, how, sizeof(how), &reaped);
	sess->state = STATE_DEAD;
	sess->stats.deaths++;
	return shmrig__fail(err,
			    "session: worker %d %s, so it was killed: it %s; %d block%s it held "
			    "reaped (restart the session)",
			    (int)pid, words, how, reaped, reaped == 1 ? "" : "s");
}

/* Send a request. A request the worker may not have received whole ends it:
 * whatever blocks were handed to it then come back through reap. */
static int send_request(struct shmrig_session *sess, const void *msg, size_t len, int64_t start,
			int timeout_ms, const struct request *r)
{
	char why[256], what[80];
	int ret = shmrig_channel_send(sess->ch, msg, len, shmrig__remaining_ms(start, timeout_ms));

	if (!ret)
		return 0;
	if (ret == -EPIPE)
		return lost_worker(sess, r);
	snprintf(why, sizeof(why), "did not take %s (%s)", request_words(r, what, sizeof(what)),
		 shmrig_last_error());
	return kill_worker(sess, ret, why);
}

/*
 * Wait for the reply to request `id`, discarding late replies to earlier
 * ones. On success *msg (free it), *len and *hdr are the reply, whose type is
 * one of `types` (a bit per type).
 */
static int await_reply(struct shmrig_session *sess, uint64_t id, uint32_t types, int64_t start,
		       int timeout_ms, const struct request *r, void **msg, size_t *len,
		       struct msg_hdr *hdr)
{
	char what[80];

	for (;;) {
		int ret = shmrig_channel_recv(sess->ch, msg, len,
					      shmrig__remaining_ms(start, timeout_ms));

		if (ret == -ETIMEDOUT) {
			sess->stats.timeouts++;
			return shmrig__fail(-ETIMEDOUT,
					    "session: worker %d did not answer %s within %d ms",
					    (int)sess->worker, request_words(r, what, sizeof(what)),
					    timeout_ms);
		}
		if (ret == -EPIPE)
			return lost_worker(sess, r);
		if (ret == -EBADMSG)
			return kill_worker(sess, -EPROTO, "broke the channel's framing");
		if (ret)
			return ret;
		ret = msg_check(*msg, *len, hdr);
		if (ret) {
			char why[256];

			free(*msg);
			snprintf(why, sizeof(why), "sent a bad message: %s", shmrig_last_error());
			return kill_worker(sess, -EPROTO, why);
		}
		if (hdr->id != id) {
			/* the late answer to a call that timed out */
			sess->stats.stale_replies++;
			discard_reply(sess, hdr, *msg, *len);
			continue;
		}
		if (!(types & (1u << hdr->type))) {
			char why[256];

			discard_reply(sess, hdr, *msg, *len);
			snprintf(why, sizeof(why), "answered %s with a message of type %u",
				 request_words(r, what, sizeof(what)), hdr->type);
			return kill_worker(sess, -EPROTO, why);
		}
		return 0;
	}
}

/* 0 if a worker is running, else -EPIPE saying why not. */
static int check_running(const struct shmrig_session *sess)
{
	if (sess->state == STATE_RUNNING)
		return 0;
	if (sess->state == STATE_DEAD)
		return shmrig__fail(-EPIPE, "session: no worker: %s (restart the session)",
				    sess->last_end);
	return shmrig__fail(-EPIPE, "session: no worker is running (start the session)");
}

/* ---- the caller: the API ---- */

int shmrig_session_create(const struct shmrig_session_opts *opts, shmrig_registry *reg,
			  shmrig_pool *pool, shmrig_session **out)
{
	static const struct shmrig_session_opts defaults;
	struct shmrig_pool_info info;
	struct shmrig_session *sess;
	int ret;

	if (!reg || !pool || !out)
		return shmrig__fail(-EINVAL, "session_create: NULL reg, pool or out");
	if (!opts)
		opts = &defaults;
	if (opts->flags)
		return shmrig__fail(-EINVAL, "session_create: unknown flags 0x%x", opts->flags);
	for (size_t i = 0; i < sizeof(opts->reserved) / sizeof(opts->reserved[0]); i++)
		if (opts->reserved[i])
			return shmrig__fail(-EINVAL, "session_create: reserved[%zu] is not zero",
					    i);
	if (opts->call_timeout_ms < 0 || opts->start_timeout_ms < 0)
		return shmrig__fail(-EINVAL, "session_create: negative timeout");
	ret = shmrig_pool_info(pool, &info);
	if (ret)
		return ret;
	sess = calloc(1, sizeof(*sess));
	if (!sess)
		return shmrig__fail(-ENOMEM, "session_create: out of memory");
	sess->reg = reg;
	sess->pool = pool;
	sess->fork_epoch = shmrig__fork_epoch();
	snprintf(sess->prefix, sizeof(sess->prefix), "%s", info.prefix);
	if (opts->channel)
		sess->channel_opts = *opts->channel;
	sess->call_timeout_ms = opts->call_timeout_ms ? opts->call_timeout_ms :
							SHMRIG_SESSION_CALL_TIMEOUT_MS;
	sess->start_timeout_ms = opts->start_timeout_ms ? opts->start_timeout_ms :
							  SHMRIG_SESSION_START_TIMEOUT_MS;
	if (!sess->channel_opts.open_timeout_ms)
		sess->channel_opts.open_timeout_ms = sess->start_timeout_ms;
	if (opts->worker_pool) {
		sess->has_worker_pool = true;
		sess->worker_pool = *opts->worker_pool;
	}
	sess->state = STATE_IDLE;
	*out = sess;
	return 0;
}

/* The worker's pool options: given, or like the caller's pool; our prefix, quiet. */
static int worker_pool_opts(struct shmrig_session *sess, struct shmrig_pool_opts *opts)
{
	struct shmrig_pool_info info;
	int ret;

	if (sess->has_worker_pool) {
		*opts = sess->worker_pool;
	} else {
		ret = shmrig_pool_info(sess->pool, &info);
		if (ret)
			return ret;
		*opts = (struct shmrig_pool_opts){
			.arena_size = info.arena_size,
			.max_bytes = info.max_bytes,
			.backing = (int)info.backing,
			.numa_node = info.numa_node,
			.flags = info.numa_node >= 0 ? SHMRIG_POOL_BIND_NODE : 0,
		};
	}
	opts->prefix = sess->prefix;
	opts->flags |= SHMRIG_POOL_QUIET;
	return 0;
}

int shmrig_session_start(shmrig_session *sess)
{
	static const struct request starting = { .kind = "its start" };
	struct shmrig_pool_opts pool_opts;
	shmrig_channel_pair *pair;
	uint64_t fingerprint;
	struct msg_hdr hdr;
	int64_t start;
	pid_t caller = getpid(), pid;
	void *msg;
	size_t len;
	int ret = check_session(sess);

	if (ret)
		return ret;
	if (sess->state == STATE_RUNNING)
		return shmrig__fail(-EBUSY, "session_start: worker %d is running",
				    (int)sess->worker);
	ret = worker_pool_opts(sess, &pool_opts);
	if (ret)
		return ret;
	fingerprint = shmrig_registry_fingerprint(sess->reg);
	ret = shmrig_channel_pair_create(&sess->channel_opts, &pair);
	if (ret)
		return ret;
	/* else the worker would inherit, and one day print, what is buffered now */
	fflush(NULL);
	pid = fork();
	if (pid < 0) {
		ret = -errno;
		shmrig_channel_pair_free(pair);
		return shmrig__fail(ret, "session_start: fork: %s", strerror(-ret));
	}
	if (pid == 0)
		worker_main(sess, pair, caller, fingerprint, &pool_opts);
	start = shmrig__now_ms();
	sess->worker = pid;
	sess->worker_id = 0;
	sess->state = STATE_RUNNING;
	sess->stats.starts++;
	ret = shmrig_channel_open(pair, 0, pid, sess->pool, fingerprint, &sess->ch);
	shmrig_channel_pair_free(pair);
	if (ret) {
		char why[ERROR_TEXT_MAX];

		snprintf(why, sizeof(why), "%s", shmrig_last_error());
		sess->ch = NULL;
		if (ret == -EPIPE)
			return lost_worker(sess, &starting);
		kill_worker(sess, ret, "did not start");
		return shmrig__fail(ret, "session_start: %s; %s", why, sess->last_end);
	}
	ret = await_reply(sess, 0, 1u << MSG_READY | 1u << MSG_ERROR, start, sess->start_timeout_ms,
			  &starting, &msg, &len, &hdr);
	if (ret && sess->state == STATE_RUNNING) {
		char why[ERROR_TEXT_MAX];

		snprintf(why, sizeof(why), "did not get ready: %s", shmrig_last_error());
		return kill_worker(sess, ret, why);
	}
	if (ret)
		return ret;
	if (hdr.type == MSG_ERROR) {
		char why[ERROR_TEXT_MAX], how[128];
		int reaped;

		snprintf(why, sizeof(why), "%s", (char *)msg + sizeof(hdr));
		free(msg);
		end_worker(sess, END_EXITING, how, sizeof(how), &reaped);
		sess->state = STATE_DEAD;
		sess->stats.deaths++;
		return shmrig__fail(-ECHILD, "session_start: worker %d could not start: %s; it %s",
				    (int)pid, why, how);
	}
	memcpy(&sess->worker_id, (char *)msg + sizeof(hdr), sizeof(sess->worker_id));
	free(msg);
	/* it names the segments we remove if it dies: it must be itself */
	if (shmrig__procid_pid(sess->worker_id) != pid) {
		sess->worker_id = 0;
		return kill_worker(sess, -EPROTO, "said it was another process");
	}
	return 0;
}

int shmrig_session_call(shmrig_session *sess, const char *handler, double arg,
			const struct shmrig_value *request, struct shmrig_value *response,
			int timeout_ms)
{
	struct msg_hdr hdr = { .magic = MSG_MAGIC, .type = MSG_CALL, .arg = arg };
	struct request r = { .kind = "call", .handler = handler };
	char list[512];
	int64_t start = shmrig__now_ms();
	void *frame, *msg;
	size_t len;
	int index, ret;

	if (response)
		memset(response, 0, sizeof(*response));
	ret = check_session(sess);
	if (ret)
		return ret;
	if (!handler || !request || !response)
		return shmrig__fail(-EINVAL, "session_call: NULL handler, request or response");
	index = find_handler(sess, handler);
	if (index < 0)
		return shmrig__fail(-ENOENT, "session_call: no handler '%s' (registered: %s)",
				    handler, handler_list(sess, list, sizeof(list)));
	ret = check_running(sess);
	if (ret)
		return ret;
	timeout_ms = effective_timeout(sess, timeout_ms);
	hdr.id = ++sess->next_id;
	hdr.handler = (uint32_t)index;
	r.id = hdr.id;

	ret = shmrig_registry_encode(sess->reg, sess->pool, request, &frame, &len);
	if (ret)
		return ret;
	msg = msg_build(&hdr, frame, len);
	if (!msg) {
		(void)!shmrig_frame_discard(sess->pool, frame, len); /* best effort */
		free(frame);
		return shmrig__fail(-ENOMEM, "session_call: out of memory");
	}
	free(frame);
	frame = (char *)msg + sizeof(hdr);
	/* The worker owns the request's blocks before it can see them. */
	ret = shmrig_frame_transfer_peer(sess->pool, frame, len, shmrig__channel_peer_id(sess->ch));
	if (ret) {
		/* what was not handed over is still ours; what was comes back by reap
		 * (discard fails on those, rightly) */
		(void)!shmrig_frame_discard(sess->pool, frame, len);
		free(msg);
		return lost_worker(sess, &r);
	}
	ret = send_request(sess, msg, sizeof(hdr) + len, start, timeout_ms, &r);
	free(msg);
	if (ret)
		return ret;

	ret = await_reply(sess, hdr.id, 1u << MSG_RESULT | 1u << MSG_ERROR, start, timeout_ms, &r,
			  &msg, &len, &hdr);
	if (ret)
		return ret;
	sess->stats.calls++;
	if (hdr.type == MSG_ERROR) {
		ret = shmrig__fail(hdr.status, "session: worker %d: %s", (int)sess->worker,
				   (char *)msg + sizeof(hdr));
		free(msg);
		return ret;
	}
	ret = shmrig_registry_decode(sess->reg, sess->pool, (char *)msg + sizeof(hdr),
				     len - sizeof(hdr), response);
	free(msg);
	return ret;
}

int shmrig_session_ping(shmrig_session *sess, int timeout_ms)
{
	struct msg_hdr hdr = { .magic = MSG_MAGIC, .type = MSG_PING };
	int64_t start = shmrig__now_ms();
	struct request r = { .kind = "ping" };
	void *msg;
	size_t len;
	int ret = check_session(sess);

	if (!ret)
		ret = check_running(sess);
	if (ret)
		return ret;
	timeout_ms = effective_timeout(sess, timeout_ms);
	hdr.id = ++sess->next_id;
	r.id = hdr.id;
	ret = send_request(sess, &hdr, sizeof(hdr), start, timeout_ms, &r);
	if (!ret)
		ret = await_reply(sess, hdr.id, 1u << MSG_PONG, start, timeout_ms, &r, &msg, &len,
				  &hdr);
	if (!ret)
		free(msg);
	return ret;
}

int shmrig_session_shutdown(shmrig_session *sess, int timeout_ms)
{
	struct msg_hdr hdr = { .magic = MSG_MAGIC, .type = MSG_SHUTDOWN };
	int64_t start = shmrig__now_ms();
	struct request r = { .kind = "shutdown" };
	char how[128];
	pid_t pid;
	void *msg;
	size_t len;
	int ret = check_session(sess), status, reaped;

	if (ret)
		return ret;
	if (sess->state != STATE_RUNNING)
		return 0;
	pid = sess->worker;
	timeout_ms = effective_timeout(sess, timeout_ms);
	hdr.id = ++sess->next_id;
	r.id = hdr.id;
	ret = send_request(sess, &hdr, sizeof(hdr), start, timeout_ms, &r);
	if (!ret)
		ret = await_reply(sess, hdr.id, 1u << MSG_BYE, start, timeout_ms, &r, &msg, &len,
				  &hdr);
	if (ret && sess->state == STATE_RUNNING) {
		/* timed out, or our side failed: either way the worker must go */
		char why[ERROR_TEXT_MAX];

		if (ret == -ETIMEDOUT)
			snprintf(why, sizeof(why), "did not stop within %d ms", timeout_ms);
		else
			snprintf(why, sizeof(why), "could not be asked to stop: %s",
				 shmrig_last_error());
		return kill_worker(sess, ret, why);
	}
	if (ret)
		return ret;
	free(msg);
	/* It said BYE: it closes its pool and exits. */
	status = end_worker(sess, END_EXITING, how, sizeof(how), &reaped);
	sess->state = STATE_IDLE;
	if (status >= 0 && WIFEXITED(status) && WEXITSTATUS(status) == EXIT_OK)
		return 0;
	if (status >= 0 && WIFEXITED(status) && WEXITSTATUS(status) == EXIT_LEAK)
		return shmrig__fail(-SHMRIG_ELEAK, "session: worker %d %s (reaped)", (int)pid, how);
	return shmrig__fail(-ECHILD, "session: worker %d %s after shutdown", (int)pid, how);
}

int shmrig_session_restart(shmrig_session *sess)
{
	int ret = check_session(sess);

	if (ret)
		return ret;
	/* The old worker is gone whatever shutdown says (a leak, a kill: in the
	 * stats); restart answers for the new one, as documented. */
	if (sess->state == STATE_RUNNING)
		(void)!shmrig_session_shutdown(sess, 0);
	return shmrig_session_start(sess);
}

pid_t shmrig_session_worker_pid(const shmrig_session *sess)
{
	return sess && sess->state == STATE_RUNNING ? sess->worker : 0;
}

int shmrig_session_stats(const shmrig_session *sess, struct shmrig_session_stats *out)
{
	if (!sess || !out)
		return shmrig__fail(-EINVAL, "session_stats: NULL argument");
	*out = sess->stats;
	return 0;
}

void shmrig_session_free(shmrig_session *sess)
{
	/* In another process the handle, its channel included, is the creator's:
	 * closing the channel here could close it for the creator (a ring's
	 * closed flag is shared memory). Leave it all alone, as an inherited pool. */
	if (!sess || check_session(sess))
		return;
	(void)!shmrig_session_shutdown(sess, 0); /* free has nobody to tell */
	if (sess->state == STATE_RUNNING)
		kill_worker(sess, -ECHILD, "could not be shut down");
	free(sess->handlers);
	free(sess);
}
