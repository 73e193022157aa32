/* SPDX-License-Identifier: MIT */
#include "base/internal.h"
#include "pool/handover.h"
#include "codec/meta.h"
#include "pool/ref_check.h"
#include "codec/flat.h"

#include <shmrig/frame.h>

#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
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

/* ---- flat frames: a frame with its payload, for a peer on another host ---- */

/* Are the `len` bytes at p all zero? (Padding, and a flat ref's block fields.) */
static bool all_zero(const void *p, size_t len)
{
	const unsigned char *bytes = p;

	for (size_t i = 0; i < len; i++)
		if (bytes[i])
			return false;
	return true;
}

/* all_zero of a multiple of 8 bytes, a word at a time (inlined: no call). */
static inline bool all_zero_words(const void *p, size_t len)
{
	uint64_t any = 0;

	for (size_t i = 0; i < len; i += sizeof(uint64_t)) {
		uint64_t w;

		memcpy(&w, (const char *)p + i, sizeof(w));
		any |= w;
	}
	return !any;
}

/* Give back the references a failed take claimed: handed to us again,
 * unclaimed, as they were (a block all of whose references were claimed goes
 * back whole; one with a reference the frame did not name was never ours to
 * take whole, and its claim failed first). Best effort: the take failed. */
static void unclaim(shmrig_pool *pool, const struct shmrig_frame *f, const uint8_t *claimed)
{
	for (uint32_t i = 0; i < f->nbuffers; i++)
		if (claimed[i])
			(void)!shmrig__pool_hand_out(pool, &f->buffers[i], 1);
}

int shmrig__frame_take(shmrig_pool *pool, const void *frame, size_t len, struct shmrig_frame *f,
		       void **data)
{
	uint8_t small[64], *claimed = small;
	int ret = shmrig_frame_parse(frame, len, f);

	if (ret || !f->nbuffers)
		return ret;
	if (f->nbuffers > sizeof(small)) {
		claimed = malloc(f->nbuffers);
		if (!claimed)
			return shmrig__fail(-ENOMEM, "frame: out of memory");
	}
	memset(claimed, 0, f->nbuffers);
	/* Take every reference the frame hands us (a frame decoded or sent
	 * already fails here); on failure the ones taken go back. */
	ret = shmrig__pool_claim_refs(pool, f->buffers, f->nbuffers, claimed, data);
	if (ret) {
		char why[512];

		snprintf(why, sizeof(why), "%s", shmrig_last_error());
		unclaim(pool, f, claimed);
		shmrig__fail(ret, "%s", why);
	}
	if (claimed != small)
		free(claimed);
	return ret;
}

void shmrig__frame_release(shmrig_pool *pool, const struct shmrig_frame *f)
{
	/* A free that fails leaves the block ours: pool_close reports it (the
	 * claim proved it ours). */
	for (uint32_t i = 0; i < f->nbuffers; i++)
		(void)!shmrig_pool_free(pool, &f->buffers[i]);
}

void shmrig__frame_bare(const void *frame, size_t len, void *out)
{
	struct shmrig_frame_header h;

	memcpy(out, frame, len);
	memcpy(&h, frame, sizeof(h));
	for (uint32_t i = 0; i < h.nbuffers; i++) {
		/* the ref names no block on the other side: sizes and flag only */
		struct shmrig_ref *ref =
			(struct shmrig_ref *)((char *)out + sizeof(struct shmrig_frame_header)) + i;

		memset(ref->name, 0, sizeof(ref->name));
		ref->offset = 0;
		ref->generation = 0;
	}
}

int shmrig__frame_flatten_small(shmrig_pool *pool, const void *frame, size_t len, size_t room,
				uint64_t max_payload, void **flat, size_t *flat_len)
{
	struct shmrig_frame f;
	void *small[64], **data = small;
	uint64_t payload = 0;
	size_t total, off;
	char *out;
	int ret;

	if (!pool || !frame || !flat || !flat_len)
		return shmrig__fail(-EINVAL, "frame_flatten: NULL argument");
	ret = shmrig_frame_parse(frame, len, &f);
	if (ret)
		return ret;
	/* Sizes first, and the memory: nothing is taken before the flat form
	 * is known to fit. A frame is at most a few hundred MiB: no overflow. */
	total = room + shmrig__pad8(len);
	for (uint32_t i = 0; i < f.nbuffers; i++) {
		uint64_t content_size = f.buffers[i].content_size;

		if (total > SIZE_MAX - 8 || content_size > SIZE_MAX - 8 - total)
			return shmrig__fail(-EOVERFLOW,
					    "frame_flatten: buffer %u (%llu bytes) takes the flat "
					    "frame past SIZE_MAX",
					    i, (unsigned long long)content_size);
		total += shmrig__pad8(content_size);
		payload += content_size;
		if (payload > max_payload)
			return -EAGAIN;
	}
	if (f.nbuffers > 64) {
		data = malloc((size_t)f.nbuffers * sizeof(*data));
		if (!data)
			return shmrig__fail(-ENOMEM, "frame_flatten: out of memory");
	}
	out = malloc(total);
	if (!out) {
		ret = shmrig__fail(-ENOMEM, "frame_flatten: out of memory for %zu bytes", total);
		goto done;
	}
	ret = shmrig__frame_take(pool, frame, len, &f, data);
	if (ret) {
		char why[512];

		snprintf(why, sizeof(why), "%s", shmrig_last_error());
		free(out);
		shmrig__fail(ret, "frame_flatten: %s", why);
		goto done;
	}
	off = room;
	shmrig__frame_bare(frame, len, out + off);
	memset(out + off + len, 0, shmrig__pad8(len) - len);
	off += shmrig__pad8(len);
	for (uint32_t i = 0; i < f.nbuffers; i++) {
		size_t content_size = (size_t)f.buffers[i].content_size;

		if (content_size)
			memcpy(out + off, data[i], content_size);
		memset(out + off + content_size, 0, shmrig__pad8(content_size) - content_size);
		off += shmrig__pad8(content_size);
	}
	/* The bytes carry the payload now. */
	shmrig__frame_release(pool, &f);
	*flat = out;
	*flat_len = total - room;
done:
	if (data != small)
		free(data);
	return ret;
}

int shmrig_frame_flatten(shmrig_pool *pool, const void *frame, size_t len, void **flat,
			 size_t *flat_len)
{
	return shmrig__frame_flatten_small(pool, frame, len, 0, UINT64_MAX, flat, flat_len);
}

int shmrig__frame_check_bare(const void *frame, size_t len, uint64_t max_payload,
			     struct shmrig_frame *f, uint64_t *payload)
{
	uint64_t total = 0;
	int ret = shmrig_frame_parse(frame, len, f);

	if (ret) {
		char why[512];

		/* a bad ref is -SHMRIG_EBADREF there: here all is the peer's */
		snprintf(why, sizeof(why), "%s", shmrig_last_error());
		return shmrig__fail(-EBADMSG, "flat %s", why);
	}
	for (uint32_t i = 0; i < f->nbuffers; i++) {
		const struct shmrig_ref *ref = &f->buffers[i];
		uint64_t content_size = ref->content_size;

		if (!all_zero_words(ref->name, sizeof(ref->name)) || ref->offset || ref->generation)
			return shmrig__fail(-EBADMSG,
					    "flat frame: ref %u names a block (its name, offset and "
					    "generation must be zero)",
					    i);
		if (content_size > max_payload - total)
			return shmrig__fail(-EBADMSG,
					    "flat frame: buffer %u is %llu bytes, only %llu are left",
					    i, (unsigned long long)content_size,
					    (unsigned long long)(max_payload - total));
		total += content_size;
	}
	*payload = total;
	return 0;
}

int shmrig__frame_bare_blocks(shmrig_pool *pool, void *frame, const struct shmrig_frame *f,
			      void **data)
{
	struct shmrig_ref *refs =
		(struct shmrig_ref *)((char *)frame + sizeof(struct shmrig_frame_header));
	uint32_t done;
	int ret = 0;

	/* One block per buffer, handed to us unclaimed as encode leaves them:
	 * the decode claims them. */
	for (done = 0; done < f->nbuffers; done++) {
		size_t content_size = (size_t)refs[done].content_size;
		uint32_t flags = refs[done].temporary ? SHMRIG_ALLOC_TEMPORARY : 0;
		struct shmrig_ref ref;

		ret = shmrig__pool_alloc_handed(pool, content_size, flags, 0, &ref, &data[done]);
		if (ret)
			break;
		refs[done] = ref;
	}
	if (ret && done) {
		char why[512];

		snprintf(why, sizeof(why), "%s", shmrig_last_error());
		for (uint32_t i = 0; i < done; i++)
			(void)!shmrig__pool_drop(pool, &refs[i]); /* best effort: it failed */
		shmrig__fail(ret, "%s", why);
	}
	return ret;
}

/* A flat form's header: the frame's length (*frame_len), within flat_len. */
static int flat_frame_len(const void *flat, size_t flat_len, size_t *frame_len)
{
	struct shmrig_frame_header h;

	if ((uintptr_t)flat % 8)
		return shmrig__fail(-EINVAL, "frame_unflatten: buffer is not 8-byte aligned");
	if (flat_len % 8 || flat_len < sizeof(h))
		return shmrig__fail(-EBADMSG,
				    "flat frame: %zu bytes (at least a %zu-byte header, a multiple "
				    "of 8)",
				    flat_len, sizeof(h));
	memcpy(&h, flat, sizeof(h));
	*frame_len = shmrig_frame_size(h.nbuffers, h.meta_len);
	if (!*frame_len || shmrig__pad8(*frame_len) > flat_len)
		return shmrig__fail(-EBADMSG,
				    "flat frame: its header says %u buffers and %u meta bytes, more "
				    "than its %zu bytes hold",
				    h.nbuffers, h.meta_len, flat_len);
	return 0;
}

/* What follows a flat form's checked frame (f, frame_len bytes) in `bytes`:
 * zero padding to 8, then each buffer's content_size bytes padded with zeros
 * to 8, and nothing more. */
static int check_flat_rest(const char *bytes, size_t flat_len, size_t frame_len,
			   const struct shmrig_frame *f)
{
	size_t off = shmrig__pad8(frame_len);

	if (!all_zero(bytes + frame_len, off - frame_len))
		return shmrig__fail(-EBADMSG,
				    "flat frame: the padding after the frame is not zero");
	for (uint32_t i = 0; i < f->nbuffers; i++) {
		uint64_t content_size = f->buffers[i].content_size;

		/* flat_len - off is a multiple of 8: content_size fits, so does its padding */
		if (content_size > flat_len - off)
			return shmrig__fail(-EBADMSG,
					    "flat frame: buffer %u is %llu bytes, only %zu are left",
					    i, (unsigned long long)content_size, flat_len - off);
		if (!all_zero(bytes + off + content_size,
			      shmrig__pad8((size_t)content_size) - (size_t)content_size))
			return shmrig__fail(-EBADMSG,
					    "flat frame: the padding after buffer %u is not zero",
					    i);
		off += shmrig__pad8((size_t)content_size);
	}
	if (off != flat_len)
		return shmrig__fail(-EBADMSG,
				    "flat frame: %zu bytes after the last buffer (%zu bytes, %u "
				    "buffers)",
				    flat_len - off, flat_len, f->nbuffers);
	return 0;
}

int shmrig__frame_flat_parse(const void *flat, size_t flat_len, struct shmrig_frame *f,
			     const void **data, uint32_t ndata)
{
	size_t frame_len, off;
	uint64_t payload;
	int ret = flat_frame_len(flat, flat_len, &frame_len);

	if (!ret)
		ret = shmrig__frame_check_bare(flat, frame_len, flat_len - shmrig__pad8(frame_len),
					       f, &payload);
	if (!ret)
		ret = check_flat_rest(flat, flat_len, frame_len, f);
	if (ret || !data)
		return ret;
	if (f->nbuffers > ndata)
		return shmrig__fail(-E2BIG, "flat frame: %u buffers, room for %u", f->nbuffers,
				    ndata);
	off = shmrig__pad8(frame_len);
	for (uint32_t i = 0; i < f->nbuffers; i++) {
		data[i] = (const char *)flat + off;
		off += shmrig__pad8((size_t)f->buffers[i].content_size);
	}
	return 0;
}

int shmrig_frame_unflatten(shmrig_pool *pool, const void *flat, size_t flat_len, void **frame,
			   size_t *len)
{
	const char *bytes = flat;
	struct shmrig_frame f;
	void *small[64], **data = small;
	uint64_t payload;
	size_t frame_len, off;
	char *out;
	int ret;

	if (!pool || !flat || !frame || !len)
		return shmrig__fail(-EINVAL, "frame_unflatten: NULL argument");
	ret = flat_frame_len(flat, flat_len, &frame_len);
	if (ret)
		return ret;
	/* Our copy of the frame from here (the refs of the result are written
	 * into it): each field is read once from the flat bytes. */
	out = malloc(shmrig__pad8(frame_len));
	if (!out)
		return shmrig__fail(-ENOMEM, "frame_unflatten: out of memory for %zu bytes",
				    frame_len);
	memcpy(out, bytes, frame_len);
	/* Every size against what is left, before a block is taken: the blocks
	 * then hold at most the flat bytes (each rounded up to its class). */
	ret = shmrig__frame_check_bare(out, frame_len, flat_len - shmrig__pad8(frame_len), &f,
				       &payload);
	if (!ret)
		ret = check_flat_rest(bytes, flat_len, frame_len, &f);
	if (ret)
		goto fail;
	if (f.nbuffers > 64) {
		data = malloc((size_t)f.nbuffers * sizeof(*data));
		if (!data) {
			ret = shmrig__fail(-ENOMEM, "frame_unflatten: out of memory");
			goto fail;
		}
	}
	ret = shmrig__frame_bare_blocks(pool, out, &f, data);
	if (ret)
		goto fail;
	off = shmrig__pad8(frame_len);
	for (uint32_t i = 0; i < f.nbuffers; i++) {
		size_t content_size = (size_t)f.buffers[i].content_size;

		if (content_size)
			memcpy(data[i], bytes + off, content_size);
		off += shmrig__pad8(content_size);
	}
	if (data != small)
		free(data);
	*frame = out;
	*len = frame_len;
	return 0;
fail:
	if (data != small)
		free(data);
	free(out);
	return ret;
}
