/* SPDX-License-Identifier: MIT */
/*
 * The catalogue: every check, in the order they run, in one table. A check is
 * named Level.Group.Name; Required ones must pass for a codec to conform,
 * Recommended ones are advice (--level required leaves them out). A check
 * whose run is NULL is registered but cannot run yet: it is reported SKIP
 * with its reason. Add a check here and in checks_*.c.
 */
#include "validate.h"

#include <string.h>

const struct val_check val_catalogue[] = {
	{ "Required.RoundTrip.InProcess", VAL_REQUIRED,
	  "every generated value comes back equal from encode and decode in one process",
	  val_check_roundtrip_inprocess, NULL },
	{ "Required.RoundTrip.CrossProcess", VAL_REQUIRED,
	  "encoded in one process, sent over a channel (pipe, then ring), decoded equal in another",
	  val_check_roundtrip_crossprocess, NULL },
	{ "Required.RoundTrip.Threads", VAL_REQUIRED,
	  "two threads encode and decode at once, one pool and one registry, every value equal",
	  val_check_roundtrip_threads, NULL },
	{ "Required.Meta.JsonCompatible", VAL_REQUIRED,
	  "metadata rendered as JSON (shmrig_frame_to_json) parses back (jansson) equal to its bytes",
	  val_check_meta_json, NULL },
	{ "Recommended.Meta.SizeLimit", VAL_RECOMMENDED,
	  "metadata of every value is at most 64 KiB", val_check_meta_size, NULL },
	{ "Required.Refs.InBounds", VAL_REQUIRED,
	  "every ref: content_size <= size, inside a live block (shmrig_pool_attach); views "
	  "inside persistent buffers",
	  val_check_refs_inbounds, NULL },
	{ "Required.Refs.Aligned", VAL_REQUIRED,
	  "every buffer starts 64-byte aligned, in the ref and where it is mapped",
	  val_check_refs_aligned, NULL },
	{ "Required.Buffers.TemporaryFlags", VAL_REQUIRED,
	  "frames mark buffers temporary exactly as the decoder reads them; no view of a "
	  "temporary buffer survives decode",
	  val_check_buffers_temporary, NULL },
	{ "Required.Buffers.NoWritePastContent", VAL_REQUIRED,
	  "nothing is written past content_size in a buffer (64 guard bytes after each, "
	  "SHMRIG_REGISTRY_GUARD)",
	  val_check_buffers_no_write_past, NULL },
	{ "Required.Lifetimes.Accounting", VAL_REQUIRED,
	  "live blocks after encode, decode and release are exactly what the frame declares",
	  val_check_lifetimes_accounting, NULL },
	{ "Required.Lifetimes.Churn", VAL_REQUIRED,
	  "10,000 round trips: no live block left, no growth of segments or descriptors",
	  val_check_lifetimes_churn, NULL },
	{ "Required.Lifetimes.DecodeTwiceRefused", VAL_REQUIRED,
	  "the second decode of a frame is refused (-SHMRIG_ECLAIMED) and takes or frees nothing",
	  val_check_lifetimes_decode_twice, NULL },
	{ "Required.Hostile.Mutations", VAL_REQUIRED,
	  "mutated frames (bit flips, truncation, swapped refs, lying counts, random meta) decode "
	  "or fail, never crash, hang or leak",
	  val_check_hostile_mutations, NULL },
	{ "Recommended.Golden.Frames", VAL_RECOMMENDED,
	  "committed golden frames (the plugin's golden_dir, the kit's for the built-ins, --golden "
	  "DIR) decode to the values they hold",
	  val_check_golden_frames, NULL },
	{ "Recommended.Throughput", VAL_RECOMMENDED,
	  "encode and decode GB/s at 1 KiB, 1 MiB, 64 MiB beside memcpy (--bench-json)",
	  val_check_throughput, NULL },
};

const size_t val_catalogue_len = sizeof(val_catalogue) / sizeof(val_catalogue[0]);

const struct val_check *val_check_find(const char *name)
{
	for (size_t i = 0; i < val_catalogue_len; i++)
		if (strcmp(val_catalogue[i].name, name) == 0)
			return &val_catalogue[i];
	return NULL;
}

const char *val_level_name(enum val_level level)
{
	return level == VAL_REQUIRED ? "required" : "recommended";
}
