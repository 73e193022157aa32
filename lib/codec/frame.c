/* SPDX-License-Identifier: MIT */
#include "base/internal.h"
#include "pool/handover.h"
#include "codec/meta.h"
#include "pool/ref_check.h"

#include <shmrig/frame.h>

#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* Frozen layouts (shmrig/common.h, "ABI: how structs grow"): the wire records
 * and the view of a parsed header change only with SHMRIG_VERSION_MAJOR. */
_Static_assert(sizeof(struct shmrig_frame_header) == 24, "frame header is wire format");
_Static_assert(offsetof(struct shmrig_frame_header, magic) == 0, "frame header is wire format");
_Static_assert(offsetof(struct shmrig_frame_header, version) == 4, "frame header is wire format");
_Static_assert(offsetof(struct shmrig_frame_header, codec_id) == 6, "frame header is wire format");
_Static_assert(offsetof(struct shmrig_frame_header, nbuffers) == 8, "frame header is wire format");
_Static_assert(offsetof(struct shmrig_frame_header, meta_len) == 12, "frame header is wire format");
_Static_assert(offsetof(struct shmrig_frame_header, reserved) == 16, "frame header is wire format");
_Static_assert(sizeof(struct shmrig_frame_header) % 8 == 0, "refs follow 8-aligned");
_Static_assert(sizeof(struct shmrig_ref) == 96, "ref is wire format");
_Static_assert(offsetof(struct shmrig_ref, name) == 0, "ref is wire format");
_Static_assert(offsetof(struct shmrig_ref, offset) == SHMRIG_NAME_MAX, "ref is wire format");
_Static_assert(offsetof(struct shmrig_ref, size) == 72, "ref is wire format");
_Static_assert(offsetof(struct shmrig_ref, content_size) == 80, "ref is wire format");
_Static_assert(offsetof(struct shmrig_ref, generation) == 88, "ref is wire format");
_Static_assert(offsetof(struct shmrig_ref, temporary) == 92, "ref is wire format");
_Static_assert(offsetof(struct shmrig_ref, reserved) == 93, "ref is wire format");
#if UINTPTR_MAX == UINT64_MAX
_Static_assert(sizeof(struct shmrig_frame) == 32, "frame view is frozen");
_Static_assert(offsetof(struct shmrig_frame, codec_id) == 0, "frame view is frozen");
_Static_assert(offsetof(struct shmrig_frame, nbuffers) == 4, "frame view is frozen");
_Static_assert(offsetof(struct shmrig_frame, buffers) == 8, "frame view is frozen");
_Static_assert(offsetof(struct shmrig_frame, meta) == 16, "frame view is frozen");
_Static_assert(offsetof(struct shmrig_frame, meta_len) == 24, "frame view is frozen");
#endif

size_t shmrig_frame_size(uint32_t nbuffers, size_t meta_len)
{
	if (nbuffers > SHMRIG_FRAME_MAX_BUFFERS || meta_len > SHMRIG_FRAME_MAX_META)
		return 0;
	return sizeof(struct shmrig_frame_header) + (size_t)nbuffers * sizeof(struct shmrig_ref) +
	       meta_len;
}

int shmrig_frame_parse(const void *buf, size_t len, struct shmrig_frame *out)
{
	struct shmrig_frame_header h;
	size_t need;

	if (!buf || !out)
		return shmrig__fail(-EINVAL, "frame: NULL argument");
	if ((uintptr_t)buf % 8)
		return shmrig__fail(-EINVAL, "frame: buffer is not 8-byte aligned");
	if (len < sizeof(h))
		return shmrig__fail(-EBADMSG, "frame: %zu bytes, shorter than the %zu-byte header",
				    len, sizeof(h));
	memcpy(&h, buf, sizeof(h));
	if (h.magic != SHMRIG_FRAME_MAGIC)
		return shmrig__fail(-EBADMSG, "frame: bad magic 0x%08x", h.magic);
	if (h.version != SHMRIG_FRAME_VERSION)
		return shmrig__fail(-EBADMSG, "frame: version %u, this library reads version %u",
				    h.version, SHMRIG_FRAME_VERSION);
	if (h.reserved)
		return shmrig__fail(-EBADMSG, "frame: reserved header field is not zero");
	need = shmrig_frame_size(h.nbuffers, h.meta_len);
	if (!need)
		return shmrig__fail(-EBADMSG, "frame: %u buffers / %u meta bytes exceed the limits",
				    h.nbuffers, h.meta_len);
	if (need != len)
		return shmrig__fail(-EBADMSG,
				    "frame: %zu bytes, its header says %zu (%u buffers, %u meta bytes)",
				    len, need, h.nbuffers, h.meta_len);
	out->codec_id = h.codec_id;
	out->nbuffers = h.nbuffers;
	out->buffers = (const struct shmrig_ref *)((const char *)buf + sizeof(h));
	out->meta = (const char *)buf + len - h.meta_len;
	out->meta_len = h.meta_len;
	for (uint32_t i = 0; i < h.nbuffers; i++) {
		/* the pool's one check of a ref's own fields, the pool's one answer */
		int ret = shmrig__ref_check(&out->buffers[i]);

		if (ret)
			return shmrig__fail(ret, "frame: buffer %u: %s", i, shmrig_last_error());
	}
	return 0;
}

int shmrig_frame_transfer(shmrig_pool *pool, const void *buf, size_t len, pid_t pid)
{
	struct shmrig_frame f;
	int ret = shmrig_frame_parse(buf, len, &f);

	return ret ? ret : shmrig__pool_transfer_pid(pool, f.buffers, f.nbuffers, pid);
}

int shmrig_frame_transfer_peer(shmrig_pool *pool, const void *buf, size_t len, uint64_t target)
{
	struct shmrig_frame f;
	int ret = shmrig_frame_parse(buf, len, &f);

	return ret ? ret : shmrig__pool_transfer_refs(pool, f.buffers, f.nbuffers, target);
}

int shmrig_frame_discard(shmrig_pool *pool, const void *buf, size_t len)
{
	struct shmrig_frame f;
	int first = shmrig_frame_parse(buf, len, &f);

	if (first)
		return first;
	for (uint32_t i = 0; i < f.nbuffers; i++) {
		int ret = shmrig__pool_drop(pool, &f.buffers[i]);

		if (ret && !first)
			first = ret;
	}
	return first;
}
