/* SPDX-License-Identifier: MIT */
#ifndef SHMRIG_VALIDATE_GOLDEN_H
#define SHMRIG_VALIDATE_GOLDEN_H

/*
 * Golden frames (Recommended.Golden.Frames, --write-golden): frames a codec
 * wrote once, committed with the value they hold, decoded by today's code and
 * compared. A frame names its pool blocks by segment, so a golden file holds
 * the buffers' bytes too and the loader puts them in blocks of its own.
 *
 * File format, version 1 (CODEC-INDEX.golden). Integers little-endian; names
 * NUL-padded; every pad byte zero; a file is at most GOLDEN_READ_MAX bytes:
 *
 *   0   8   magic "SHMRIGGF"
 *   8   4   format version (1)
 *   12  4   CRC-32 (zlib's) of the whole file with these 4 bytes zero
 *   16  8   file length
 *   24  32  plugin name              } who wrote it: the plugin's name and
 *   56  64  plugin version           } version ("builtin", the library's)
 *   120 32  codec name
 *   152 4   value kind (enum shmrig_kind)
 *   156 4   generator index          } what made the expected value: the
 *   160 8   generator seed           } codec's generator of that kind, asked
 *   168 8   generator max_bytes      } for (seed, index, max_bytes)
 *   176 32  kind name: the user type of a user kind, else the kind's name
 *   208 4   value length: the expected value's bytes (0 for a user kind)
 *   212 4   frame length
 *   216 4   buffer count (the frame's)
 *   220 4   reserved (0)
 *   224     the expected value, padded to 8 (built-in kinds, below)
 *           the frame, padded to 8: shmrig's own frame bytes as the codec's
 *             encode made them (host order of a little-endian host), but
 *             for what names the writer's process: codec id 0, and in each
 *             ref the segment name, offset and generation zero
 *           each buffer's content_size bytes (its ref's), padded to 8
 *
 * A user kind's expected value is made again by the plugin's generator from
 * (seed, index, max_bytes) and compared with its equal(). A built-in kind's
 * value is in the file, so that a change of the kit's generators does not
 * pass for a change of format; compared with the kit's bit-exact equality:
 *
 *   bytes    u64 length, the bytes
 *   ndarray  array
 *   table    u64 rows, u32 columns, u32 0, then each column: name, array
 *   dataset  u32 groups, u32 0, then each group: name, u32 variables, u32 0,
 *            and each variable: name, array
 *   name     u32 length (at most GOLDEN_NAME_MAX), its bytes (no NUL)
 *   array    u32 dtype, u32 ndim, u8 order ('C'/'F'), 7 zero bytes,
 *            u64 shape[ndim], u64 data bytes (as the shape says), the data
 *
 * The loader is strict (every field checked, counts against the bytes left,
 * so what it allocates is bounded by the file's size), and names the field
 * that is wrong.
 */

#include "validate.h"

#define GOLDEN_MAGIC "SHMRIGGF"
#define GOLDEN_FORMAT_VERSION 1u
#define GOLDEN_HEADER_SIZE 224u
#define GOLDEN_SUFFIX ".golden"
#define GOLDEN_READ_MAX ((size_t)16 << 20)        /* a file the kit reads */
#define GOLDEN_WRITE_MAX ((size_t)64 << 10)       /* a file the kit writes */
#define GOLDEN_GEN_MAX_BYTES ((uint64_t)16 << 20) /* max_bytes a file may ask of a generator */
#define GOLDEN_NAME_MAX 4096u                     /* a column, group or variable name */
#define GOLDEN_MAX_FILES 4096u                    /* golden files read for one codec */
#define GOLDEN_WRITE_VALUE_BYTES 2048u            /* the data of a value --write-golden writes */
#define GOLDEN_WRITE_SEEDED 4u                    /* seeded values after the edge cases */

/* A parsed golden file. Everything points into memory it owns (golden_free). */
struct golden {
	char plugin[32], plugin_version[64], codec[32], kind_name[32];
	enum shmrig_kind kind;
	uint32_t gen_index;
	uint64_t seed, max_bytes;
	struct shmrig_value expected; /* a built-in kind's, parsed from the file */
	void *frame;                  /* an 8-aligned copy, as in the file (names zero) */
	size_t frame_len;
	uint32_t nbuffers;
	const unsigned char **buffers; /* each its ref's content_size bytes, in bytes */
	unsigned char *bytes;          /* the file */
	size_t len;
	void **allocs; /* what the expected value's description took */
	uint32_t nallocs, cap_allocs;
};

/* The file's bytes: 0, or -errno with why (a file over GOLDEN_READ_MAX is -EFBIG). */
int golden_read_file(const char *path, unsigned char **bytes, size_t *len, char *why,
		     size_t why_len);
/* Parse len bytes (taken: freed by golden_free, also on failure). 0, or -EBADMSG and why. */
int golden_parse(unsigned char *bytes, size_t len, struct golden *g, char *why, size_t why_len);
void golden_free(struct golden *g);

/* What a golden file says besides its frame and buffers. */
struct golden_meta {
	const char *plugin, *plugin_version, *codec, *kind_name;
	enum shmrig_kind kind;
	uint32_t gen_index;
	uint64_t seed, max_bytes;
};

/*
 * The bytes of a golden file for a frame the codec just encoded (its blocks
 * readable in pool), and the value it encodes (a built-in kind's is written
 * out; NULL for a user kind). 0, or -errno with why.
 */
int golden_build(const struct golden_meta *m, const struct shmrig_value *value, shmrig_pool *pool,
		 const void *frame, size_t frame_len, unsigned char **out, size_t *out_len,
		 char *why, size_t why_len);
/* Two golden files hold the same frame, buffers and value (the plugin version aside). */
bool golden_same(const unsigned char *a, size_t a_len, const unsigned char *b, size_t b_len);

/*
 * Decode a golden file with the target's registry and compare: its buffers
 * copied into blocks of `pool`, its frame's refs pointed at them (keeping
 * content_size and the temporary flags) and its codec id made the target's,
 * handed to ourselves (`self`, shmrig_pool_peer of our pid), decoded,
 * compared with the expected value, released; the pool's live blocks must be
 * as before. 0, or -errno with why.
 */
int golden_verify(const struct val_target *t, shmrig_pool *pool, uint64_t self,
		  const struct golden *g, char *why, size_t why_len);

/* "ndarray-003.golden" is a golden file of codec "ndarray" with index 3: true, *index set. */
bool golden_file_name(const char *name, const char *codec, uint32_t *index);

/* The golden files of a codec in dir, sorted by index. 0 (*n may be 0), or -errno with why. */
struct golden_entry {
	char name[256];
	uint32_t index;
};
int golden_list(const char *dir, const char *codec, struct golden_entry **entries, uint32_t *n,
		char *why, size_t why_len);

#endif
