/* SPDX-License-Identifier: MIT */
/*
 * session wire: the messages between caller and worker (session_internal.h
 * describes them). Building one, sending those that carry no frame, and the
 * one check of what arrives. CALL and RESULT are built by their senders
 * (session.c, worker.c) around an encoded frame with shmrig__session_msg_build.
 */
#include "session/session_internal.h"
#include "codec/flat.h"
#include "transport/channel_internal.h"
#include "base/internal.h"
#include "os/liveness.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* One buffer: the header, then `len` bytes of payload. NULL: ENOMEM. */
void *shmrig__session_msg_build(const struct msg_hdr *hdr, const void *payload, size_t len)
{
	char *msg = shmrig__msg_alloc(sizeof(*hdr) + len);

	if (!msg)
		return NULL;
	memcpy(msg, hdr, sizeof(*hdr));
	if (len)
		memcpy(msg + sizeof(*hdr), payload, len);
	return msg;
}

int shmrig__session_send_bare(shmrig_channel *ch, enum msg_type type, uint64_t id, int timeout_ms)
{
	struct msg_hdr hdr = { .magic = MSG_MAGIC, .type = (uint16_t)type, .id = id };

	return shmrig_channel_send(ch, &hdr, sizeof(hdr), timeout_ms);
}

/* ERROR id status text, the text cut at ERROR_TEXT_MAX. */
int shmrig__session_send_error(shmrig_channel *ch, uint64_t id, int status, const char *text)
{
	struct msg_hdr hdr = { .magic = MSG_MAGIC, .type = MSG_ERROR, .id = id, .status = status };
	char words[ERROR_TEXT_MAX];
	void *msg;
	int ret;

	snprintf(words, sizeof(words), "%s", text);
	msg = shmrig__session_msg_build(&hdr, words, strlen(words) + 1);
	if (!msg)
		return -ENOMEM;
	ret = shmrig_channel_send(ch, msg, sizeof(hdr) + strlen(words) + 1, -1);
	free(msg);
	return ret;
}

/*
 * A READY_REMOTE's names: `count` of them (at most SHMRIG_SESSION_MAX_HANDLERS),
 * each a valid handler name with its NUL, no name twice, and nothing after the
 * last. Every byte is looked at before any is used.
 */
static int check_names(const char *names, size_t len, uint32_t count)
{
	size_t at = 0;

	if (count > SHMRIG_SESSION_MAX_HANDLERS || len > READY_NAMES_MAX)
		return shmrig__fail(-EPROTO,
				    "session: the worker says it has %u handlers in %zu bytes "
				    "(at most %d handlers, %d bytes)",
				    count, len, SHMRIG_SESSION_MAX_HANDLERS, READY_NAMES_MAX);
	for (uint32_t i = 0; i < count; i++) {
		const char *end = at < len ? memchr(names + at, '\0', len - at) : NULL;

		if (!end)
			return shmrig__fail(-EPROTO,
					    "session: the worker's handler name %u of %u is cut off "
					    "(%zu bytes)",
					    i + 1, count, len);
		if (!shmrig__valid_name(names + at, HANDLER_NAME_MAX))
			return shmrig__fail(-EPROTO,
					    "session: the worker's handler name %u is not 1..%d of "
					    "[A-Za-z0-9_.-]",
					    i + 1, HANDLER_NAME_MAX);
		for (size_t other = 0; other < at;) {
			if (strcmp(names + other, names + at) == 0)
				return shmrig__fail(-EPROTO,
						    "session: the worker names handler '%s' twice",
						    names + at);
			other += strlen(names + other) + 1;
		}
		at = (size_t)(end - names) + 1;
	}
	if (at != len)
		return shmrig__fail(-EPROTO,
				    "session: %zu bytes follow the worker's %u handler names",
				    len - at, count);
	return 0;
}

/*
 * Check what arrived and copy its header out. The payload is whatever follows;
 * its kind is checked per type (a frame is checked by whoever decodes it).
 * 0 or -EPROTO (the message says what is wrong).
 */
int shmrig__session_msg_check(const void *msg, size_t len, struct msg_hdr *hdr)
{
	size_t payload;

	if (len < sizeof(*hdr))
		return shmrig__fail(-EPROTO, "session: a %zu-byte message (the header is %zu)", len,
				    sizeof(*hdr));
	memcpy(hdr, msg, sizeof(*hdr));
	payload = len - sizeof(*hdr);
	if (hdr->magic != MSG_MAGIC || hdr->type == 0 || hdr->type >= MSG_TYPE_END ||
	    hdr->reserved1 || (hdr->flags & ~MSG_FLAT) ||
	    (hdr->flags && hdr->type != MSG_CALL && hdr->type != MSG_RESULT))
		return shmrig__fail(-EPROTO,
				    "session: bad message header (magic %08x, type %u, flags %x)",
				    hdr->magic, hdr->type, hdr->flags);
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
	case MSG_READY_REMOTE:
		return check_names((const char *)msg + sizeof(*hdr), payload, hdr->handler);
	default:
		if (payload)
			return shmrig__fail(-EPROTO, "session: message type %u carries %zu bytes",
					    hdr->type, payload);
		return 0;
	}
}

/* READY, carrying our procid: the caller removes our segments by it if we die. */
int shmrig__session_send_ready(shmrig_channel *ch)
{
	struct msg_hdr hdr = { .magic = MSG_MAGIC, .type = MSG_READY };
	shmrig__procid self;
	void *msg;
	int ret = shmrig__self(&self);

	if (ret)
		return shmrig__fail(ret, "session: cannot read the worker's identity: %s",
				    strerror(-ret));
	msg = shmrig__session_msg_build(&hdr, &self, sizeof(self));
	if (!msg)
		return -ENOMEM;
	ret = shmrig_channel_send(ch, msg, sizeof(hdr) + sizeof(self), -1);
	free(msg);
	return ret;
}

/* READY_REMOTE: the names of the session's handlers, in its order. */
int shmrig__session_send_ready_remote(shmrig_channel *ch, const struct shmrig_session *sess)
{
	struct msg_hdr hdr = { .magic = MSG_MAGIC,
			       .type = MSG_READY_REMOTE,
			       .handler = sess->nhandlers };
	char names[READY_NAMES_MAX];
	size_t len = 0;
	void *msg;
	int ret;

	/* registration keeps every name valid and at most HANDLER_NAME_MAX long */
	for (uint32_t i = 0; i < sess->nhandlers; i++) {
		size_t n = strlen(sess->handlers[i].name) + 1;

		memcpy(names + len, sess->handlers[i].name, n);
		len += n;
	}
	msg = shmrig__session_msg_build(&hdr, names, len);
	if (!msg)
		return shmrig__fail(-ENOMEM, "session: out of memory");
	ret = shmrig_channel_send(ch, msg, sizeof(hdr) + len, -1);
	free(msg);
	return ret;
}

int shmrig__session_ready_names(const void *msg, const struct msg_hdr *hdr, handler_name **out)
{
	const char *names = (const char *)msg + sizeof(*hdr);
	handler_name *table = calloc(hdr->handler ? hdr->handler : 1, sizeof(*table));

	if (!table)
		return shmrig__fail(-ENOMEM, "session: out of memory");
	/* checked by msg_check: each name is NUL-terminated and fits */
	for (uint32_t i = 0; i < hdr->handler; i++) {
		size_t n = strlen(names) + 1;

		memcpy(table[i], names, n);
		names += n;
	}
	*out = table;
	return 0;
}

/* Payload bytes of `n` arrays, or UINT64_MAX: more than `limit` (it stops
 * there), a bad array, or no list for n > 0. Never wraps. */
static uint64_t arrays_payload(const struct shmrig_named_array *arrays, uint32_t n, uint64_t limit)
{
	uint64_t sum = 0;

	if (n && !arrays)
		return UINT64_MAX;
	for (uint32_t i = 0; i < n; i++) {
		uint64_t nbytes;

		if (shmrig_array_nbytes(&arrays[i].array, &nbytes) || nbytes > limit - sum)
			return UINT64_MAX;
		sum += nbytes;
	}
	return sum;
}

bool shmrig__session_small(const struct shmrig_value *v)
{
	const uint64_t limit = SESSION_FLAT_MAX;
	uint64_t sum = UINT64_MAX;

	switch (v->kind) {
	case SHMRIG_KIND_BYTES:
		sum = v->bytes.len;
		break;
	case SHMRIG_KIND_NDARRAY:
		if (shmrig_array_nbytes(&v->array, &sum))
			sum = UINT64_MAX;
		break;
	case SHMRIG_KIND_TABLE:
		sum = arrays_payload(v->table.columns, v->table.ncolumns, limit);
		break;
	case SHMRIG_KIND_DATASET:
		if (!v->dataset.groups && v->dataset.ngroups)
			break;
		sum = 0;
		for (uint32_t g = 0; g < v->dataset.ngroups && sum <= limit; g++) {
			const struct shmrig_group *grp = &v->dataset.groups[g];
			/* a group that does not fit what is left is UINT64_MAX */
			uint64_t part =
				arrays_payload(grp->variables, grp->nvariables, limit - sum);

			sum = part == UINT64_MAX ? UINT64_MAX : sum + part;
		}
		break;
	default: /* a user value: its codec knows, we do not */
		break;
	}
	return sum <= limit;
}

int shmrig__session_encode(struct shmrig_session *sess, shmrig_pool *pool,
			   const struct shmrig_value *v, struct msg_hdr *hdr, void **msg,
			   size_t *len, void **frame, size_t *frame_len)
{
	int ret = -EAGAIN;

	if (shmrig__session_small(v))
		ret = shmrig__registry_encode_flat(sess->reg, v, sizeof(*hdr), sess->send_buf,
						   sizeof(sess->send_buf), msg, len);
	if (ret == -EAGAIN) {
		ret = shmrig_registry_encode(sess->reg, pool, v, frame, frame_len);
		if (ret)
			return ret;
		/* a value whose frame shows it small goes flat too */
		ret = shmrig__frame_flatten_small(pool, *frame, *frame_len, sizeof(*hdr),
						  SESSION_FLAT_MAX, msg, len);
		if (ret == -EAGAIN)
			return ret; /* the frame, to hand over */
		if (ret)
			(void)!shmrig_frame_discard(pool, *frame, *frame_len); /* best effort */
		free(*frame);
	}
	if (ret)
		return ret;
	hdr->flags = MSG_FLAT;
	memcpy(*msg, hdr, sizeof(*hdr));
	*len += sizeof(*hdr);
	return 0;
}

void shmrig__session_msg_free(struct shmrig_session *sess, void *msg)
{
	if (msg != (void *)sess->send_buf && msg != (void *)sess->recv_buf)
		free(msg);
}
