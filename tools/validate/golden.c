/* SPDX-License-Identifier: MIT */
/*
 * Golden files (golden.h has the format): read one from outside and parse it
 * strictly, build one from a frame the codec just encoded, and decode one
 * with a target's registry and compare it with the value it holds.
 *
 * A golden file comes from outside (a plugin's directory, a checkout): every
 * length and count is checked against the bytes that are left before it
 * sizes anything, so a file of n bytes costs at most a few times n in
 * memory, and parsing it is one pass.
 */
#include "golden.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* header fields (golden.h) */
enum {
	OFF_VERSION = 8,
	OFF_CRC = 12,
	OFF_LEN = 16,
	OFF_PLUGIN = 24,
	OFF_PLUGIN_VERSION = 56,
	OFF_CODEC = 120,
	OFF_KIND = 152,
	OFF_GEN_INDEX = 156,
	OFF_SEED = 160,
	OFF_MAX_BYTES = 168,
	OFF_KIND_NAME = 176,
	OFF_VALUE_LEN = 208,
	OFF_FRAME_LEN = 212,
	OFF_NBUFFERS = 216,
	OFF_RESERVED = 220,
};

/* the fewest bytes a serialized named array takes: a name's length, an array's header,
 * its data length (0-d, no shape, no name, no data) */
#define MIN_NAMED_ARRAY 28u
#define MIN_GROUP 12u /* a name's length, the variable count, 4 zero bytes */

static size_t pad8(size_t n)
{
	return (n + 7) & ~(size_t)7;
}

static uint32_t le32(const unsigned char *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t le64(const unsigned char *p)
{
	return (uint64_t)le32(p) | (uint64_t)le32(p + 4) << 32;
}

static void put_le32(unsigned char *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (unsigned char)(v >> (8 * i));
}

static void put_le64(unsigned char *p, uint64_t v)
{
	put_le32(p, (uint32_t)v);
	put_le32(p + 4, (uint32_t)(v >> 32));
}

/* CRC-32 as zlib computes it (reflected 0xEDB88320), so a script can check a file too. */
static uint32_t crc32_of(const unsigned char *p, size_t n, uint32_t crc)
{
	static uint32_t table[256];
	static bool ready;

	if (!ready) { /* a check's child is one thread */
		for (uint32_t i = 0; i < 256; i++) {
			uint32_t c = i;

			for (int k = 0; k < 8; k++)
				c = c & 1 ? 0xedb88320u ^ (c >> 1) : c >> 1;
			table[i] = c;
		}
		ready = true;
	}
	crc = ~crc;
	while (n--)
		crc = table[(crc ^ *p++) & 0xff] ^ (crc >> 8);
	return ~crc;
}

/* The file's CRC: over every byte, with the CRC field read as zero. */
static uint32_t file_crc(const unsigned char *bytes, size_t len)
{
	static const unsigned char zero[4];
	uint32_t crc = crc32_of(bytes, OFF_CRC, 0);

	crc = crc32_of(zero, 4, crc);
	return crc32_of(bytes + OFF_CRC + 4, len - OFF_CRC - 4, crc);
}

/* ---- reading ---- */

int golden_read_file(const char *path, unsigned char **bytes, size_t *len, char *why,
		     size_t why_len)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
	unsigned char *buf = NULL;
	size_t done = 0;
	struct stat st;
	int ret = 0;

	*bytes = NULL;
	*len = 0;
	if (fd < 0) {
		ret = -errno;
		snprintf(why, why_len, "cannot open: %s", strerror(errno));
		return ret;
	}
	if (fstat(fd, &st)) {
		ret = -errno;
		snprintf(why, why_len, "cannot stat: %s", strerror(errno));
	} else if (!S_ISREG(st.st_mode)) {
		ret = -EINVAL;
		snprintf(why, why_len, "not a regular file");
	} else if ((uint64_t)st.st_size > GOLDEN_READ_MAX) {
		ret = -EFBIG;
		snprintf(why, why_len, "%llu bytes, more than the %zu a golden file may have",
			 (unsigned long long)st.st_size, GOLDEN_READ_MAX);
	} else if (!(buf = malloc(st.st_size ? (size_t)st.st_size : 1))) {
		ret = -ENOMEM;
		snprintf(why, why_len, "out of memory");
	}
	while (!ret && done < (size_t)st.st_size) {
		ssize_t n = read(fd, buf + done, (size_t)st.st_size - done);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			ret = -errno;
			snprintf(why, why_len, "read: %s", strerror(errno));
		} else if (n == 0) {
			break; /* it shrank meanwhile: what was read is the file */
		}
		done += n > 0 ? (size_t)n : 0;
	}
	close(fd);
	if (ret) {
		free(buf);
		return ret;
	}
	*bytes = buf;
	*len = done;
	return 0;
}

static int bad(char *why, size_t why_len, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static int bad(char *why, size_t why_len, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(why, why_len, fmt, ap);
	va_end(ap);
	return -EBADMSG;
}

/* A NUL-padded name field: 1..width-1 printable ASCII bytes (they end up in messages). */
static int name_field(const unsigned char *p, size_t width, const char *what, char *out, char *why,
		      size_t why_len)
{
	size_t n = 0;

	while (n < width && p[n])
		n++;
	if (n == width)
		return bad(why, why_len, "the %s field (%zu bytes) is not NUL-terminated", what,
			   width);
	if (n == 0)
		return bad(why, why_len, "the %s field is empty", what);
	for (size_t i = 0; i < n; i++)
		if (p[i] < 0x20 || p[i] > 0x7e)
			return bad(why, why_len,
				   "the %s field has byte 0x%02x at %zu (printable ASCII only)",
				   what, p[i], i);
	for (size_t i = n; i < width; i++)
		if (p[i])
			return bad(why, why_len, "the %s field has bytes after its NUL", what);
	memcpy(out, p, n);
	out[n] = '\0';
	return 0;
}

static bool all_zero(const unsigned char *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (p[i])
			return false;
	return true;
}

/* The expected value's bytes, read in order. */
struct reader {
	struct golden *g;
	const unsigned char *p;
	size_t left;
	char *why;
	size_t why_len;
};

static int take(struct reader *r, size_t n, const char *what, const unsigned char **out)
{
	if (n > r->left)
		return bad(r->why, r->why_len,
			   "the expected value is cut short: %s needs %zu bytes, %zu are left",
			   what, n, r->left);
	*out = r->p;
	r->p += n;
	r->left -= n;
	return 0;
}

static int take32(struct reader *r, const char *what, uint32_t *v)
{
	const unsigned char *p = NULL;
	int ret = take(r, 4, what, &p);

	if (!ret)
		*v = le32(p);
	return ret;
}

static int take64(struct reader *r, const char *what, uint64_t *v)
{
	const unsigned char *p = NULL;
	int ret = take(r, 8, what, &p);

	if (!ret)
		*v = le64(p);
	return ret;
}

/* Zeroed memory the parsed value's description lives in, freed with the golden file. */
static void *galloc(struct reader *r, size_t n, size_t size)
{
	struct golden *g = r->g;
	void *p;

	if (g->nallocs == g->cap_allocs) {
		uint32_t cap = g->cap_allocs ? 2 * g->cap_allocs : 16;
		void **grown = realloc(g->allocs, cap * sizeof(*grown));

		if (!grown)
			return NULL;
		g->allocs = grown;
		g->cap_allocs = cap;
	}
	p = calloc(n ? n : 1, size);
	if (p)
		g->allocs[g->nallocs++] = p;
	return p;
}

static int oom(struct reader *r)
{
	snprintf(r->why, r->why_len, "out of memory");
	return -ENOMEM;
}

static int read_name(struct reader *r, const char *what, const char **out)
{
	const unsigned char *p = NULL;
	uint32_t len;
	char *name;
	int ret = take32(r, what, &len);

	if (ret)
		return ret;
	if (len > GOLDEN_NAME_MAX)
		return bad(r->why, r->why_len,
			   "the expected value: %s is %u bytes long, at most %u", what, len,
			   GOLDEN_NAME_MAX);
	ret = take(r, len, what, &p);
	if (ret)
		return ret;
	if (memchr(p, '\0', len))
		return bad(r->why, r->why_len, "the expected value: %s holds a NUL byte", what);
	name = galloc(r, (size_t)len + 1, 1);
	if (!name)
		return oom(r);
	memcpy(name, p, len);
	*out = name;
	return 0;
}

static int read_array(struct reader *r, const char *what, struct shmrig_array *a)
{
	const unsigned char *head = NULL, *data = NULL;
	uint64_t nbytes, want;
	uint32_t dtype, ndim;
	int ret = take(r, 16, what, &head);

	if (ret)
		return ret;
	dtype = le32(head);
	ndim = le32(head + 4);
	memset(a, 0, sizeof(*a));
	if (dtype == SHMRIG_DTYPE_INVALID || dtype >= SHMRIG_DTYPE_COUNT)
		return bad(r->why, r->why_len, "the expected value: %s has dtype %u", what, dtype);
	if (ndim > SHMRIG_MAX_DIMS)
		return bad(r->why, r->why_len,
			   "the expected value: %s has %u dimensions, at most %d", what, ndim,
			   SHMRIG_MAX_DIMS);
	if (head[8] != 'C' && head[8] != 'F')
		return bad(r->why, r->why_len, "the expected value: %s has order 0x%02x", what,
			   head[8]);
	if (!all_zero(head + 9, 7))
		return bad(r->why, r->why_len,
			   "the expected value: %s has padding that is not zero", what);
	a->dtype = (enum shmrig_dtype)dtype;
	a->ndim = ndim;
	a->order = (char)head[8];
	for (uint32_t d = 0; d < ndim; d++) {
		ret = take64(r, what, &a->shape[d]);
		if (ret)
			return ret;
	}
	ret = take64(r, what, &nbytes);
	if (ret)
		return ret;
	if (shmrig_array_nbytes(a, &want))
		return bad(r->why, r->why_len,
			   "the expected value: %s has a shape whose size overflows", what);
	if (nbytes != want)
		return bad(r->why, r->why_len,
			   "the expected value: %s says %llu bytes of data, its shape %llu", what,
			   (unsigned long long)nbytes, (unsigned long long)want);
	ret = take(r, (size_t)nbytes, what, &data);
	if (ret)
		return ret;
	a->data = nbytes ? (void *)data : NULL; /* the file's bytes: ours until golden_free */
	return 0;
}

static int read_named(struct reader *r, const char *what, uint32_t i, struct shmrig_named_array *na)
{
	char where[64];
	int ret;

	snprintf(where, sizeof(where), "%s %u's name", what, i);
	ret = read_name(r, where, &na->name);
	snprintf(where, sizeof(where), "%s %u", what, i);
	return ret ? ret : read_array(r, where, &na->array);
}

static int read_value(struct reader *r, enum shmrig_kind kind, struct shmrig_value *v)
{
	const unsigned char *pad = NULL;
	uint32_t zero;
	int ret = 0;

	memset(v, 0, sizeof(*v));
	v->kind = kind;
	switch (kind) {
	case SHMRIG_KIND_BYTES: {
		const unsigned char *data = NULL;

		ret = take64(r, "the byte count", &v->bytes.len);
		if (!ret && v->bytes.len > r->left)
			return bad(r->why, r->why_len,
				   "the expected value: %llu bytes, %zu are left",
				   (unsigned long long)v->bytes.len, r->left);
		if (!ret)
			ret = take(r, (size_t)v->bytes.len, "the bytes", &data);
		if (!ret)
			v->bytes.data = v->bytes.len ? data : NULL;
		return ret;
	}
	case SHMRIG_KIND_NDARRAY:
		return read_array(r, "the array", &v->array);
	case SHMRIG_KIND_TABLE:
		if ((ret = take64(r, "the row count", &v->table.nrows)) ||
		    (ret = take32(r, "the column count", &v->table.ncolumns)) ||
		    (ret = take(r, 4, "padding", &pad)))
			return ret;
		if (!all_zero(pad, 4))
			return bad(r->why, r->why_len,
				   "the expected value: table padding is not zero");
		if (v->table.ncolumns > r->left / MIN_NAMED_ARRAY)
			return bad(r->why, r->why_len,
				   "the expected value: %u columns cannot fit in the %zu bytes left",
				   v->table.ncolumns, r->left);
		v->table.columns = galloc(r, v->table.ncolumns, sizeof(*v->table.columns));
		if (!v->table.columns)
			return oom(r);
		for (uint32_t i = 0; !ret && i < v->table.ncolumns; i++)
			ret = read_named(r, "column", i, &v->table.columns[i]);
		return ret;
	case SHMRIG_KIND_DATASET:
		if ((ret = take32(r, "the group count", &v->dataset.ngroups)) ||
		    (ret = take32(r, "padding", &zero)))
			return ret;
		if (zero)
			return bad(r->why, r->why_len,
				   "the expected value: dataset padding is not zero");
		if (v->dataset.ngroups > r->left / MIN_GROUP)
			return bad(r->why, r->why_len,
				   "the expected value: %u groups cannot fit in the %zu bytes left",
				   v->dataset.ngroups, r->left);
		v->dataset.groups = galloc(r, v->dataset.ngroups, sizeof(*v->dataset.groups));
		if (!v->dataset.groups)
			return oom(r);
		for (uint32_t gi = 0; !ret && gi < v->dataset.ngroups; gi++) {
			struct shmrig_group *group = &v->dataset.groups[gi];
			char where[64];

			snprintf(where, sizeof(where), "group %u's name", gi);
			if ((ret = read_name(r, where, &group->name)) ||
			    (ret = take32(r, "a variable count", &group->nvariables)) ||
			    (ret = take32(r, "padding", &zero)))
				break;
			if (zero)
				return bad(r->why, r->why_len,
					   "the expected value: group %u padding is not zero", gi);
			if (group->nvariables > r->left / MIN_NAMED_ARRAY)
				return bad(r->why, r->why_len,
					   "the expected value: group %u: %u variables cannot fit in "
					   "the %zu bytes left",
					   gi, group->nvariables, r->left);
			group->variables = galloc(r, group->nvariables, sizeof(*group->variables));
			if (!group->variables)
				return oom(r);
			snprintf(where, sizeof(where), "group %u variable", gi);
			for (uint32_t i = 0; !ret && i < group->nvariables; i++)
				ret = read_named(r, where, i, &group->variables[i]);
		}
		return ret;
	default:
		return bad(r->why, r->why_len, "kind %d has no serialized value", (int)kind);
	}
}

int golden_parse(unsigned char *bytes, size_t len, struct golden *g, char *why, size_t why_len)
{
	uint32_t version, crc, value_len, frame_len, nbuffers, kind;
	struct shmrig_frame_header h;
	struct shmrig_frame f;
	uint64_t file_len;
	size_t at = GOLDEN_HEADER_SIZE;
	int ret;

	memset(g, 0, sizeof(*g));
	g->bytes = bytes;
	g->len = len;
	if (len < 8 || memcmp(bytes, GOLDEN_MAGIC, 8) != 0)
		return bad(why, why_len, "not a golden file (no \"" GOLDEN_MAGIC "\" magic)");
	if (len < GOLDEN_HEADER_SIZE)
		return bad(why, why_len, "truncated: %zu bytes, shorter than the %u-byte header",
			   len, GOLDEN_HEADER_SIZE);
	version = le32(bytes + OFF_VERSION);
	if (version != GOLDEN_FORMAT_VERSION)
		return bad(why, why_len, "golden file format version %u, this kit reads version %u",
			   version, GOLDEN_FORMAT_VERSION);
	file_len = le64(bytes + OFF_LEN);
	if (file_len != len)
		return bad(why, why_len, "%s: the header says %llu bytes, the file has %zu",
			   file_len > len ? "truncated" : "bytes past the end",
			   (unsigned long long)file_len, len);
	crc = le32(bytes + OFF_CRC);
	if (crc != file_crc(bytes, len))
		return bad(why, why_len, "damaged: its CRC-32 says 0x%08x, its bytes give 0x%08x",
			   crc, file_crc(bytes, len));
	if ((ret = name_field(bytes + OFF_PLUGIN, 32, "plugin name", g->plugin, why, why_len)) ||
	    (ret = name_field(bytes + OFF_PLUGIN_VERSION, 64, "plugin version", g->plugin_version,
			      why, why_len)) ||
	    (ret = name_field(bytes + OFF_CODEC, 32, "codec name", g->codec, why, why_len)) ||
	    (ret = name_field(bytes + OFF_KIND_NAME, 32, "kind name", g->kind_name, why, why_len)))
		return ret;
	kind = le32(bytes + OFF_KIND);
	if (kind >= SHMRIG_KIND_COUNT)
		return bad(why, why_len, "value kind %u is no kind", kind);
	g->kind = (enum shmrig_kind)kind;
	if (g->kind != SHMRIG_KIND_USER && strcmp(g->kind_name, shmrig_kind_name(g->kind)) != 0)
		return bad(why, why_len, "kind name '%s' for a value of kind %s", g->kind_name,
			   shmrig_kind_name(g->kind));
	g->gen_index = le32(bytes + OFF_GEN_INDEX);
	g->seed = le64(bytes + OFF_SEED);
	g->max_bytes = le64(bytes + OFF_MAX_BYTES);
	if (g->max_bytes > GOLDEN_GEN_MAX_BYTES)
		return bad(why, why_len,
			   "asks its generator for values up to %llu bytes, at most %llu",
			   (unsigned long long)g->max_bytes,
			   (unsigned long long)GOLDEN_GEN_MAX_BYTES);
	value_len = le32(bytes + OFF_VALUE_LEN);
	frame_len = le32(bytes + OFF_FRAME_LEN);
	nbuffers = le32(bytes + OFF_NBUFFERS);
	if (le32(bytes + OFF_RESERVED))
		return bad(why, why_len, "the reserved header field is not zero");
	if ((g->kind == SHMRIG_KIND_USER) != (value_len == 0))
		return bad(why, why_len, "a %s value with %u bytes of expected value",
			   shmrig_kind_name(g->kind), value_len);

	/* the expected value: parsed last, once the sections are known to add up */
	if (pad8(value_len) > len - at)
		return bad(why, why_len, "the expected value (%u bytes) runs past the end",
			   value_len);
	if (!all_zero(bytes + at + value_len, pad8(value_len) - value_len))
		return bad(why, why_len, "the padding after the expected value is not zero");
	at += pad8(value_len);

	/* the frame, in an 8-aligned copy (refs hold 64-bit fields) */
	if (frame_len < sizeof(h) || pad8(frame_len) > len - at)
		return bad(why, why_len,
			   "a %u-byte frame does not fit the %zu bytes after the value", frame_len,
			   len - at);
	if (!all_zero(bytes + at + frame_len, pad8(frame_len) - frame_len))
		return bad(why, why_len, "the padding after the frame is not zero");
	g->frame = aligned_alloc(8, pad8(frame_len));
	if (!g->frame) {
		snprintf(why, why_len, "out of memory");
		return -ENOMEM;
	}
	memcpy(g->frame, bytes + at, frame_len);
	g->frame_len = frame_len;
	at += pad8(frame_len);
	ret = shmrig_frame_parse(g->frame, g->frame_len, &f);
	if (ret)
		return bad(why, why_len, "its frame does not parse: %s", shmrig_last_error());
	memcpy(&h, g->frame, sizeof(h));
	if (h.codec_id != 0)
		return bad(why, why_len, "its frame's codec id is %u, a golden frame's is 0",
			   h.codec_id);
	if (f.nbuffers != nbuffers)
		return bad(why, why_len, "the header says %u buffers, the frame %u", nbuffers,
			   f.nbuffers);
	g->nbuffers = nbuffers;
	g->buffers = calloc(nbuffers ? nbuffers : 1, sizeof(*g->buffers));
	if (!g->buffers) {
		snprintf(why, why_len, "out of memory");
		return -ENOMEM;
	}
	for (uint32_t i = 0; i < nbuffers; i++) {
		struct shmrig_ref ref;

		memcpy(&ref, &f.buffers[i], sizeof(ref));
		if (!all_zero((const unsigned char *)ref.name, sizeof(ref.name)) || ref.offset ||
		    ref.generation)
			return bad(why, why_len,
				   "buffer %u's ref names a block (segment name, offset or "
				   "generation not zero)",
				   i);
		if (ref.content_size > len - at || pad8((size_t)ref.content_size) > len - at)
			return bad(why, why_len,
				   "buffer %u: %llu bytes of content, %zu bytes left in the file",
				   i, (unsigned long long)ref.content_size, len - at);
		g->buffers[i] = bytes + at;
		if (!all_zero(bytes + at + ref.content_size,
			      pad8((size_t)ref.content_size) - (size_t)ref.content_size))
			return bad(why, why_len, "the padding after buffer %u is not zero", i);
		at += pad8((size_t)ref.content_size);
	}
	if (at != len)
		return bad(why, why_len, "%zu bytes after the last buffer", len - at);

	if (g->kind != SHMRIG_KIND_USER) {
		struct reader r = { g, bytes + GOLDEN_HEADER_SIZE, value_len, why, why_len };

		ret = read_value(&r, g->kind, &g->expected);
		if (ret)
			return ret;
		if (r.left)
			return bad(why, why_len, "%zu bytes after the expected value", r.left);
	}
	return 0;
}

void golden_free(struct golden *g)
{
	for (uint32_t i = 0; i < g->nallocs; i++)
		free(g->allocs[i]);
	free(g->allocs);
	free(g->buffers);
	free(g->frame);
	free(g->bytes);
	memset(g, 0, sizeof(*g));
}

/* ---- building ---- */

struct builder {
	unsigned char *p;
	size_t len, cap;
	int err;
	char *why;
	size_t why_len;
};

static void put(struct builder *b, const void *data, size_t n)
{
	if (b->err)
		return;
	if (n > GOLDEN_READ_MAX - b->len) {
		b->err = -EFBIG;
		snprintf(b->why, b->why_len, "the golden file would pass %zu bytes",
			 GOLDEN_READ_MAX);
		return;
	}
	if (b->len + n > b->cap) {
		size_t cap = b->cap ? b->cap : 4096;
		unsigned char *grown;

		while (cap < b->len + n)
			cap *= 2;
		grown = realloc(b->p, cap);
		if (!grown) {
			b->err = -ENOMEM;
			snprintf(b->why, b->why_len, "out of memory");
			return;
		}
		b->p = grown;
		b->cap = cap;
	}
	if (n)
		memcpy(b->p + b->len, data, n);
	b->len += n;
}

static void put32(struct builder *b, uint32_t v)
{
	unsigned char p[4];

	put_le32(p, v);
	put(b, p, 4);
}

static void put64(struct builder *b, uint64_t v)
{
	unsigned char p[8];

	put_le64(p, v);
	put(b, p, 8);
}

static void put_pad8(struct builder *b)
{
	static const unsigned char zero[8];

	put(b, zero, pad8(b->len) - b->len);
}

static void put_name(struct builder *b, const char *name, const char *what)
{
	size_t len = name ? strlen(name) : 0;

	if (len > GOLDEN_NAME_MAX) {
		b->err = b->err ? b->err : -ENAMETOOLONG;
		snprintf(b->why, b->why_len, "%s is %zu bytes long, a golden file holds %u", what,
			 len, GOLDEN_NAME_MAX);
		return;
	}
	put32(b, (uint32_t)len);
	put(b, name, len);
}

static void put_array(struct builder *b, const struct shmrig_array *a)
{
	unsigned char head[16] = { 0 };
	uint64_t nbytes;

	if (b->err)
		return;
	if (shmrig_array_nbytes(a, &nbytes) || (nbytes && !a->data)) {
		b->err = -EINVAL;
		snprintf(b->why, b->why_len, "the value holds an array that is not valid");
		return;
	}
	put_le32(head, (uint32_t)a->dtype);
	put_le32(head + 4, a->ndim);
	head[8] = (unsigned char)a->order;
	put(b, head, sizeof(head));
	for (uint32_t d = 0; d < a->ndim; d++)
		put64(b, a->shape[d]);
	put64(b, nbytes);
	if (nbytes > GOLDEN_READ_MAX) {
		b->err = b->err ? b->err : -EFBIG;
		snprintf(b->why, b->why_len, "an array of %llu bytes", (unsigned long long)nbytes);
		return;
	}
	put(b, a->data, (size_t)nbytes);
}

static void put_value(struct builder *b, const struct shmrig_value *v)
{
	switch (v->kind) {
	case SHMRIG_KIND_BYTES:
		put64(b, v->bytes.len);
		if (v->bytes.len > GOLDEN_READ_MAX) {
			b->err = b->err ? b->err : -EFBIG;
			snprintf(b->why, b->why_len, "%llu bytes",
				 (unsigned long long)v->bytes.len);
			return;
		}
		put(b, v->bytes.data, (size_t)v->bytes.len);
		break;
	case SHMRIG_KIND_NDARRAY:
		put_array(b, &v->array);
		break;
	case SHMRIG_KIND_TABLE:
		put64(b, v->table.nrows);
		put32(b, v->table.ncolumns);
		put32(b, 0);
		for (uint32_t i = 0; i < v->table.ncolumns; i++) {
			put_name(b, v->table.columns[i].name, "a column name");
			put_array(b, &v->table.columns[i].array);
		}
		break;
	case SHMRIG_KIND_DATASET:
		put32(b, v->dataset.ngroups);
		put32(b, 0);
		for (uint32_t g = 0; g < v->dataset.ngroups; g++) {
			const struct shmrig_group *group = &v->dataset.groups[g];

			put_name(b, group->name, "a group name");
			put32(b, group->nvariables);
			put32(b, 0);
			for (uint32_t i = 0; i < group->nvariables; i++) {
				put_name(b, group->variables[i].name, "a variable name");
				put_array(b, &group->variables[i].array);
			}
		}
		break;
	default:
		b->err = -EINVAL;
		snprintf(b->why, b->why_len, "a value of kind %d cannot be written out",
			 (int)v->kind);
	}
}

static int put_field(unsigned char *field, size_t width, const char *text, const char *what,
		     char *why, size_t why_len)
{
	size_t n = strlen(text);

	if (n == 0 || n >= width) {
		snprintf(why, why_len, "the %s '%s' does not fit a golden file's %zu bytes", what,
			 text, width - 1);
		return -ENAMETOOLONG;
	}
	memcpy(field, text, n);
	return 0;
}

int golden_build(const struct golden_meta *m, const struct shmrig_value *value, shmrig_pool *pool,
		 const void *frame, size_t frame_len, unsigned char **out, size_t *out_len,
		 char *why, size_t why_len)
{
	struct builder b = { .why = why, .why_len = why_len };
	unsigned char header[GOLDEN_HEADER_SIZE] = { 0 };
	struct shmrig_frame_header h;
	struct shmrig_frame f;
	unsigned char *normal;
	size_t value_at;
	int ret;

	*out = NULL;
	*out_len = 0;
	ret = shmrig_frame_parse(frame, frame_len, &f);
	if (ret) {
		snprintf(why, why_len, "the frame does not parse: %s", shmrig_last_error());
		return ret;
	}
	if (frame_len > UINT32_MAX) {
		snprintf(why, why_len, "a frame of %zu bytes", frame_len);
		return -EFBIG;
	}
	if ((ret = put_field(header + OFF_PLUGIN, 32, m->plugin, "plugin name", why, why_len)) ||
	    (ret = put_field(header + OFF_PLUGIN_VERSION, 64, m->plugin_version, "plugin version",
			     why, why_len)) ||
	    (ret = put_field(header + OFF_CODEC, 32, m->codec, "codec name", why, why_len)) ||
	    (ret = put_field(header + OFF_KIND_NAME, 32, m->kind_name, "kind name", why, why_len)))
		return ret;
	put(&b, header, sizeof(header));
	value_at = b.len;
	if (m->kind != SHMRIG_KIND_USER)
		put_value(&b, value);
	if (!b.err && b.len - value_at > UINT32_MAX) {
		b.err = -EFBIG;
		snprintf(why, why_len, "an expected value of %zu bytes", b.len - value_at);
	}
	put_le32(header + OFF_VALUE_LEN, (uint32_t)(b.len - value_at));
	put_pad8(&b);

	/* the frame, with what names the writer's process cleared */
	normal = malloc(frame_len);
	if (!normal) {
		free(b.p);
		snprintf(why, why_len, "out of memory");
		return -ENOMEM;
	}
	memcpy(normal, frame, frame_len);
	memcpy(&h, normal, sizeof(h));
	h.codec_id = 0;
	memcpy(normal, &h, sizeof(h));
	for (uint32_t i = 0; i < f.nbuffers; i++) {
		unsigned char *at = normal + sizeof(h) + i * sizeof(struct shmrig_ref);
		struct shmrig_ref ref;

		memcpy(&ref, at, sizeof(ref));
		memset(ref.name, 0, sizeof(ref.name));
		ref.offset = 0;
		ref.generation = 0;
		memcpy(at, &ref, sizeof(ref));
	}
	put(&b, normal, frame_len);
	free(normal);
	put_pad8(&b);

	/* each buffer's content, read where the frame's ref says */
	for (uint32_t i = 0; i < f.nbuffers && !b.err; i++) {
		struct shmrig_ref ref;
		void *data;

		memcpy(&ref, &f.buffers[i], sizeof(ref));
		ret = shmrig_pool_attach(pool, &ref, &data);
		if (ret) {
			b.err = ret;
			snprintf(why, why_len, "buffer %u does not attach: %s", i,
				 shmrig_last_error());
			break;
		}
		if (ref.content_size > GOLDEN_READ_MAX) {
			b.err = -EFBIG;
			snprintf(why, why_len, "buffer %u holds %llu bytes", i,
				 (unsigned long long)ref.content_size);
			break;
		}
		put(&b, data, (size_t)ref.content_size);
		put_pad8(&b);
	}
	if (b.err) {
		free(b.p);
		return b.err;
	}

	memcpy(header, GOLDEN_MAGIC, 8);
	put_le32(header + OFF_VERSION, GOLDEN_FORMAT_VERSION);
	put_le64(header + OFF_LEN, b.len);
	put_le32(header + OFF_KIND, (uint32_t)m->kind);
	put_le32(header + OFF_GEN_INDEX, m->gen_index);
	put_le64(header + OFF_SEED, m->seed);
	put_le64(header + OFF_MAX_BYTES, m->max_bytes);
	put_le32(header + OFF_FRAME_LEN, (uint32_t)frame_len);
	put_le32(header + OFF_NBUFFERS, f.nbuffers);
	memcpy(b.p, header, sizeof(header));
	put_le32(b.p + OFF_CRC, file_crc(b.p, b.len));
	*out = b.p;
	*out_len = b.len;
	return 0;
}

bool golden_same(const unsigned char *a, size_t a_len, const unsigned char *b, size_t b_len)
{
	if (a_len != b_len || a_len < GOLDEN_HEADER_SIZE)
		return false;
	/* all but the CRC and the plugin version (which the CRC covers) */
	return memcmp(a, b, OFF_CRC) == 0 &&
	       memcmp(a + OFF_LEN, b + OFF_LEN, OFF_PLUGIN_VERSION - OFF_LEN) == 0 &&
	       memcmp(a + OFF_CODEC, b + OFF_CODEC, a_len - OFF_CODEC) == 0;
}

/* ---- decoding and comparing ---- */

/* The user kind's value, made again by the codec's generator of that type. */
static int regenerate(const struct val_target *t, const struct golden *g, struct val_value *v,
		      char *why, size_t why_len)
{
	char err[VAL_MSG_MAX / 2];

	for (uint32_t k = 0; k < t->codec->nkinds; k++) {
		const struct val_kind *kind = t->codec->gens[k];

		if (kind->kind != SHMRIG_KIND_USER || strcmp(kind->user_type, g->kind_name) != 0)
			continue;
		if (val_value_kind(t, k, g->gen_index, g->seed, (size_t)g->max_bytes, v, err,
				   sizeof(err))) {
			snprintf(why, why_len, "%s", err);
			return -EINVAL;
		}
		return 0;
	}
	snprintf(why, why_len,
		 "its value is of user type '%s', and codec '%s' is fed no generator of it",
		 g->kind_name, t->codec->name);
	return -ENOENT;
}

int golden_verify(const struct val_target *t, shmrig_pool *pool, uint64_t self,
		  const struct golden *g, char *why, size_t why_len)
{
	const struct val_kind *kind = val_builtin_kind(g->kind);
	struct val_value generated = { 0 };
	struct shmrig_value got;
	struct shmrig_frame_header h;
	uint64_t live = val_live_blocks(pool);
	char err[VAL_MSG_MAX / 2], words[VAL_MSG_MAX / 2];
	uint32_t made = 0;
	void *frame;
	int ret;

	if (strcmp(g->codec, t->codec->name) != 0) {
		snprintf(why, why_len, "written for codec '%s', not '%s'", g->codec,
			 t->codec->name);
		return -EINVAL;
	}
	if (!kind) {
		ret = regenerate(t, g, &generated, why, why_len);
		if (ret)
			return ret;
	}
	frame = aligned_alloc(8, pad8(g->frame_len));
	if (!frame) {
		val_value_free(&generated);
		snprintf(why, why_len, "out of memory");
		return -ENOMEM;
	}
	memcpy(frame, g->frame, g->frame_len);
	memcpy(&h, frame, sizeof(h));
	h.codec_id = (uint16_t)t->codec_id;
	memcpy(frame, &h, sizeof(h));

	/* each buffer into a block of ours; the ref keeps its content_size and flag */
	for (ret = 0; made < g->nbuffers; made++) {
		unsigned char *at =
			(unsigned char *)frame + sizeof(h) + made * sizeof(struct shmrig_ref);
		struct shmrig_ref ref, block;
		void *data;

		memcpy(&ref, at, sizeof(ref));
		ret = shmrig_pool_alloc(pool, (size_t)ref.content_size,
					ref.temporary ? SHMRIG_ALLOC_TEMPORARY : 0, 0, &block,
					&data);
		if (ret) {
			snprintf(why, why_len, "a %llu-byte block for buffer %u: %s",
				 (unsigned long long)ref.content_size, made,
				 val_error(ret, err, sizeof(err)));
			break;
		}
		memcpy(data, g->buffers[made], (size_t)ref.content_size);
		block.content_size = ref.content_size;
		block.temporary = ref.temporary;
		memcpy(at, &block, sizeof(block));
	}
	if (ret) {
		for (uint32_t i = 0; i < made; i++) {
			struct shmrig_ref block;

			memcpy(&block, (unsigned char *)frame + sizeof(h) + i * sizeof(block),
			       sizeof(block));
			(void)!shmrig_pool_free(pool, &block); /* failed already */
		}
		goto out;
	}
	/* handed to ourselves, as a frame from a peer would be: decode claims each ref */
	ret = shmrig_frame_transfer_peer(pool, frame, g->frame_len, self);
	if (ret) {
		snprintf(why, why_len, "handing the frame to ourselves: %s",
			 val_error(ret, err, sizeof(err)));
		(void)!shmrig_frame_discard(pool, frame, g->frame_len); /* failed already */
		goto out;
	}
	ret = shmrig_registry_decode(t->reg, pool, frame, g->frame_len, &got);
	if (ret) {
		snprintf(why, why_len, "decode: %s", val_error(ret, err, sizeof(err)));
		/* decode freed what it claimed; what it never got to is still handed to us */
		(void)!shmrig_frame_discard(pool, frame, g->frame_len);
		goto out;
	}
	words[0] = '\0';
	if (kind ? !kind->equal(NULL, &g->expected, &got, words, sizeof(words)) :
		   !val_value_equal(&generated, &got, words, sizeof(words))) {
		snprintf(why, why_len, "decodes to another value than it holds: %s", words);
		ret = -EBADMSG;
	}
	{
		int released = shmrig_value_release(&got);

		if (released && !ret) {
			snprintf(why, why_len, "value_release: %s",
				 val_error(released, err, sizeof(err)));
			ret = released;
		}
	}
out:
	if (!ret && val_live_blocks(pool) != live) {
		snprintf(why, why_len, "%llu blocks live after the value's release, %llu before",
			 (unsigned long long)val_live_blocks(pool), (unsigned long long)live);
		ret = -EBADMSG;
	}
	free(frame);
	val_value_free(&generated);
	return ret;
}

/* ---- directories ---- */

bool golden_file_name(const char *name, const char *codec, uint32_t *index)
{
	size_t codec_len = strlen(codec), len = strlen(name), suffix = strlen(GOLDEN_SUFFIX);
	uint64_t n = 0;
	size_t digits;

	if (len <= codec_len + 1 + suffix || strncmp(name, codec, codec_len) != 0 ||
	    name[codec_len] != '-' || strcmp(name + len - suffix, GOLDEN_SUFFIX) != 0)
		return false;
	digits = len - suffix - codec_len - 1;
	if (digits > 9)
		return false;
	for (size_t i = codec_len + 1; i < len - suffix; i++) {
		if (name[i] < '0' || name[i] > '9')
			return false;
		n = n * 10 + (uint64_t)(name[i] - '0');
	}
	*index = (uint32_t)n;
	return true;
}

static int by_index(const void *a, const void *b)
{
	const struct golden_entry *x = a, *y = b;

	if (x->index != y->index)
		return x->index < y->index ? -1 : 1;
	return strcmp(x->name, y->name);
}

int golden_list(const char *dir, const char *codec, struct golden_entry **entries, uint32_t *n,
		char *why, size_t why_len)
{
	DIR *d = opendir(dir);
	struct golden_entry *list;
	struct dirent *de;
	uint32_t count = 0;
	int ret = 0;

	*entries = NULL;
	*n = 0;
	if (!d) {
		ret = -errno;
		snprintf(why, why_len, "%s: %s", dir, strerror(errno));
		return ret;
	}
	list = calloc(GOLDEN_MAX_FILES, sizeof(*list));
	if (!list) {
		closedir(d);
		snprintf(why, why_len, "out of memory");
		return -ENOMEM;
	}
	while ((de = readdir(d))) {
		uint32_t index;

		if (strlen(de->d_name) >= sizeof(list->name) ||
		    !golden_file_name(de->d_name, codec, &index))
			continue;
		if (count == GOLDEN_MAX_FILES) {
			snprintf(why, why_len, "%s: more than %u golden files for codec '%s'", dir,
				 GOLDEN_MAX_FILES, codec);
			ret = -E2BIG;
			break;
		}
		snprintf(list[count].name, sizeof(list[count].name), "%s", de->d_name);
		list[count++].index = index;
	}
	closedir(d);
	if (ret) {
		free(list);
		return ret;
	}
	qsort(list, count, sizeof(*list), by_index);
	*entries = list;
	*n = count;
	return 0;
}
