/* SPDX-License-Identifier: MIT */
/*
 * session wire: the messages between caller and worker (session_internal.h
 * describes them). Building one, sending those that carry no frame, and the
 * one check of what arrives. CALL and RESULT are built by their senders
 * (session.c, worker.c) around an encoded frame with shmrig__session_msg_build.
 */
#include "session/session_internal.h"
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
