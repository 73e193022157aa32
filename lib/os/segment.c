/* SPDX-License-Identifier: MIT */
#include "base/internal.h"
#include "os/segment_internal.h"
#include "os/liveness.h"
#include "os/prim.h"

#include <shmrig/segment.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdbool.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define HUGE_KB 2048ul
#define HUGE_SIZE (HUGE_KB * 1024)
/* The name's last 16 hex digits: 8 of the creator's pid namespace, then 8 random. */
#define RANDOM_HEX 16
#define PIDNS_HEX 8
#define KIND_SHM 's'     /* shm_open, base pages */
#define KIND_THP 't'     /* shm_open, advised MADV_HUGEPAGE (attach advises too) */
#define KIND_HUGETLB 'h' /* file on a hugetlbfs mount */
#define SHM_DIR "/dev/shm"

struct shmrig_segment {
	void *base;
	size_t size;
	size_t page_size;
	int fd;
	int node;
	enum shmrig_backing backing;
	char kind;
	char role;
	shmrig__procid creator; /* create only: the identity its name carries */
	uint32_t creator_ns;    /* create only: the pid namespace its name carries */
	char name[SHMRIG_NAME_MAX];
	char reason[256];
};

const char *shmrig_backing_name(enum shmrig_backing backing)
{
	switch (backing) {
	case SHMRIG_BACKING_HUGETLB:
		return "hugetlb";
	case SHMRIG_BACKING_THP:
		return "thp";
	case SHMRIG_BACKING_PLAIN:
		return "plain";
	default:
		return "auto";
	}
}

static const char *resolve_prefix(const char *prefix)
{
	return shmrig__option_string(prefix, "SHMRIG_PREFIX", SHMRIG_DEFAULT_PREFIX);
}

static bool is_hex(char c)
{
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
}

static unsigned hex_value(char c)
{
	return c <= '9' ? (unsigned)(c - '0') : (unsigned)(c - 'a' + 10);
}

int shmrig__segment_parse_name(const char *prefix, const char *name, pid_t *pid, uint64_t *start,
			       uint32_t *pidns)
{
	unsigned long long pid_value = 0, start_value = 0;
	uint32_t ns_value = 0;
	const char *p;
	size_t plen, len;
	int ret;

	prefix = resolve_prefix(prefix);
	ret = shmrig__check_prefix(prefix);
	if (ret)
		return ret;
	if (!name)
		return shmrig__fail(-EINVAL, "segment name is NULL");
	len = strnlen(name, SHMRIG_NAME_MAX);
	if (len == SHMRIG_NAME_MAX)
		return shmrig__fail(-EINVAL, "segment name is longer than %d bytes",
				    SHMRIG_NAME_MAX - 1);
	if (strchr(name, '/'))
		return shmrig__fail(-EINVAL, "segment name '%s' contains '/'", name);
	plen = strlen(prefix);
	if (strncmp(name, prefix, plen) != 0 || name[plen] != '-')
		return shmrig__fail(-EINVAL, "segment name '%s' does not carry the prefix '%s-'",
				    name, prefix);
	p = name + plen + 1;
	/* "<pid>-<start hex>-<kind><role><8 hex pid ns><8 hex random>" */
	if (*p < '1' || *p > '9')
		goto malformed;
	for (; *p >= '0' && *p <= '9'; p++) {
		pid_value = pid_value * 10 + (unsigned)(*p - '0');
		if (pid_value > INT_MAX)
			goto malformed;
	}
	if (*p++ != '-' || !is_hex(*p))
		goto malformed;
	for (int digits = 0; is_hex(*p); p++, digits++) {
		if (digits == 16)
			goto malformed;
		start_value = start_value * 16 + hex_value(*p);
	}
	if (*p++ != '-' || (*p != KIND_SHM && *p != KIND_THP && *p != KIND_HUGETLB))
		goto malformed;
	p++;
	if (*p < 'a' || *p > 'z')
		goto malformed;
	p++;
	for (int digits = 0; digits < RANDOM_HEX; digits++, p++) {
		if (!is_hex(*p))
			goto malformed;
		if (digits < PIDNS_HEX)
			ns_value = ns_value * 16 + hex_value(*p);
	}
	if (*p != '\0')
		goto malformed;
	if (pid)
		*pid = (pid_t)pid_value;
	if (start)
		*start = start_value;
	if (pidns)
		*pidns = ns_value;
	return 0;
malformed:
	return shmrig__fail(-EINVAL,
			    "segment name '%s' is not "
			    "<prefix>-<pid>-<start>-<kind><role><pidns><random>",
			    name);
}

int shmrig_segment_parse_name(const char *prefix, const char *name, pid_t *pid, uint64_t *start)
{
	return shmrig__segment_parse_name(prefix, name, pid, start, NULL);
}

static char name_kind(const char *name)
{
	/* Only for validated names: "<kind><role>" precede the random digits. */
	return name[strlen(name) - RANDOM_HEX - 2];
}

/* Path of a validated name: "/name" for shm_open, or "<hugetlbfs>/name". */
static int name_path(const char *name, char *path, size_t len)
{
	if (name_kind(name) == KIND_HUGETLB) {
		char dir[PATH_MAX];
		int ret = shmrig__hugetlbfs_dir(HUGE_KB, dir, sizeof(dir));

		if (ret)
			return shmrig__fail(ret,
					    "segment '%s' is hugetlb, but no hugetlbfs is mounted",
					    name);
		if ((size_t)snprintf(path, len, "%s/%s", dir, name) >= len)
			return shmrig__fail(-ENAMETOOLONG, "hugetlbfs path too long");
		return 0;
	}
	snprintf(path, len, "/%s", name);
	return 0;
}

static int open_path(const char *name, const char *path, int flags)
{
	int fd;

	if (name_kind(name) == KIND_HUGETLB)
		fd = open(path, flags | O_CLOEXEC, 0600);
	else
		fd = shm_open(path, flags, 0600);
	return fd < 0 ? -errno : fd;
}

static int unlink_path(const char *name, const char *path)
{
	int ret = name_kind(name) == KIND_HUGETLB ? unlink(path) : shm_unlink(path);

	return ret ? -errno : 0;
}

/* A new name for seg (its creator, pid namespace and role are set). The pid
 * namespace takes 8 of what were 16 random digits, so that names keep their
 * length; a collision of the 32 random bits left is an EEXIST that
 * create_file() retries. */
static int make_name(const char *prefix, char kind, struct shmrig_segment *seg)
{
	uint32_t rnd;
	int ret = shmrig__random(&rnd, sizeof(rnd));

	if (ret)
		return shmrig__fail(ret, "getrandom: %s", strerror(-ret));
	snprintf(seg->name, SHMRIG_NAME_MAX, "%s-%d-%x-%c%c%08x%08x", prefix,
		 (int)shmrig__procid_pid(seg->creator), (unsigned)(uint32_t)seg->creator, kind,
		 seg->role, (unsigned)seg->creator_ns, (unsigned)rnd);
	return 0;
}

static void add_reason(struct shmrig_segment *seg, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static void add_reason(struct shmrig_segment *seg, const char *fmt, ...)
{
	size_t used = strlen(seg->reason);
	va_list ap;

	if (used && used + 2 < sizeof(seg->reason)) {
		strcpy(seg->reason + used, "; ");
		used += 2;
	}
	va_start(ap, fmt);
	vsnprintf(seg->reason + used, sizeof(seg->reason) - used, fmt, ap);
	va_end(ap);
}

/* The bracketed word of /sys/kernel/mm/transparent_hugepage/shmem_enabled. */
static void shmem_thp_mode(char *mode, size_t len)
{
	char buf[128] = "";
	char *open_br, *close_br;
	FILE *f = fopen("/sys/kernel/mm/transparent_hugepage/shmem_enabled", "re");

	snprintf(mode, len, "unknown");
	if (!f)
		return;
	if (fgets(buf, sizeof(buf), f)) {
		open_br = strchr(buf, '[');
		close_br = open_br ? strchr(open_br, ']') : NULL;
		if (close_br) {
			*close_br = '\0';
			snprintf(mode, len, "%s", open_br + 1);
		}
	}
	fclose(f);
}

/*
 * Fault in every page for writing, so that no later access takes a page
 * fault. MADV_POPULATE_WRITE (Linux 5.14) does it in one call; before that,
 * touch one byte per page (the segment is new, so the bytes are zero).
 */
static int prefault(void *base, size_t size, size_t page)
{
#ifdef MADV_POPULATE_WRITE
	if (madvise(base, size, MADV_POPULATE_WRITE) == 0)
		return 0;
	if (errno != EINVAL)
		return -errno;
#endif
	for (size_t off = 0; off < size; off += page)
		((volatile char *)base)[off] = 0;
	return 0;
}

static int bind_node(struct shmrig_segment *seg, shmrig_topo *topo, int node)
{
	static int warned;
	int ret;

	if (node < 0)
		return 0;
	ret = shmrig_topo_bind_area(topo, seg->base, seg->size, node);
	if (ret) {
		shmrig__warn_once(&warned, "binding segment memory to NUMA node %d failed: %s",
				  node, shmrig_strerror(ret));
		add_reason(seg, "node %d: bind failed (%s)", node, shmrig_strerror(ret));
		return 0;
	}
	seg->node = node;
	return 0;
}

/*
 * The mapping keeps the memory; the name lets anyone reopen it. Holding the fd
 * would only cost one descriptor per segment (the seed's fd exhaustion) and
 * leak it into every forked child.
 */
static void close_fd(struct shmrig_segment *seg)
{
	close(seg->fd);
	seg->fd = -1;
}

/* Undo a half-made segment: unmap, close, unlink. */
static void discard(struct shmrig_segment *seg, const char *path)
{
	if (seg->base && seg->base != MAP_FAILED)
		munmap(seg->base, seg->size);
	seg->base = NULL;
	if (seg->fd >= 0) {
		close(seg->fd);
		unlink_path(seg->name, path);
	}
	seg->fd = -1;
}

static int create_file(struct shmrig_segment *seg, const char *prefix, char kind, char *path,
		       size_t path_len)
{
	for (int attempt = 0; attempt < 8; attempt++) {
		int ret = make_name(prefix, kind, seg);

		if (ret)
			return ret;
		ret = name_path(seg->name, path, path_len);
		if (ret)
			return ret;
		ret = open_path(seg->name, path, O_RDWR | O_CREAT | O_EXCL);
		if (ret != -EEXIST) {
			seg->fd = ret;
			return ret < 0 ? ret : 0;
		}
	}
	return -EEXIST;
}

/* Give the new file its size and map it shared, without populating. 0 or -errno. */
static int size_and_map(struct shmrig_segment *seg)
{
	if (ftruncate(seg->fd, (off_t)seg->size))
		return -errno;
	seg->base = mmap(NULL, seg->size, PROT_READ | PROT_WRITE, MAP_SHARED, seg->fd, 0);
	return seg->base == MAP_FAILED ? -errno : 0;
}

static int try_hugetlb(struct shmrig_segment *seg, const char *prefix, size_t size,
		       shmrig_topo *topo, int node)
{
	char dir[PATH_MAX], path[PATH_MAX];
	size_t need = (size + HUGE_SIZE - 1) / HUGE_SIZE;
	long free_pages;
	int ret;

	if (shmrig__hugetlbfs_dir(HUGE_KB, dir, sizeof(dir))) {
		add_reason(seg, "hugetlb: no hugetlbfs with 2 MiB pages is mounted");
		return -ENOENT;
	}
	free_pages = shmrig__hugepages_free(HUGE_KB);
	if (free_pages < (long)need) {
		add_reason(seg, "hugetlb: %ld free 2048 kB pages (need %zu)",
			   free_pages < 0 ? 0 : free_pages, need);
		return -ENOMEM;
	}
	seg->size = need * HUGE_SIZE;
	ret = create_file(seg, prefix, KIND_HUGETLB, path, sizeof(path));
	if (ret) {
		add_reason(seg, "hugetlb: create in %s: %s", dir, strerror(-ret));
		return ret;
	}
	/* A shared hugetlb mapping reserves its pages at mmap time: with too few
	 * free pages, this is where ENOMEM comes, not a SIGBUS later. */
	ret = size_and_map(seg);
	if (ret)
		goto fail;
	bind_node(seg, topo, node);
	ret = prefault(seg->base, seg->size, HUGE_SIZE);
	if (ret)
		goto fail;
	seg->backing = SHMRIG_BACKING_HUGETLB;
	seg->page_size = HUGE_SIZE;
	seg->kind = KIND_HUGETLB;
	return 0;
fail:
	add_reason(seg, "hugetlb: %s", strerror(-ret));
	discard(seg, path);
	return ret == -EINVAL || ret == -ENOSPC ? -ENOMEM : ret;
}

static int try_shmem(struct shmrig_segment *seg, const char *prefix, size_t size, bool thp,
		     shmrig_topo *topo, int node)
{
	size_t page = thp ? HUGE_SIZE : shmrig__page_size();
	char path[PATH_MAX];
	int ret;

	if (thp) {
		char mode[32];

		shmem_thp_mode(mode, sizeof(mode));
		if (strcmp(mode, "never") == 0 || strcmp(mode, "deny") == 0 ||
		    strcmp(mode, "unknown") == 0) {
			add_reason(seg, "thp: shmem_enabled is %s", mode);
			return -ENOTSUP;
		}
	}
	seg->size = (size + page - 1) / page * page;
	ret = create_file(seg, prefix, thp ? KIND_THP : KIND_SHM, path, sizeof(path));
	if (ret) {
		add_reason(seg, "shm: create: %s", strerror(-ret));
		return ret;
	}
	ret = size_and_map(seg);
	if (ret)
		goto fail;
	if (thp && madvise(seg->base, seg->size, MADV_HUGEPAGE)) {
		ret = -errno;
		goto fail;
	}
	/* Bind before the pages exist: tmpfs allocates them under the mapping's
	 * shared policy, which mbind() just set. */
	bind_node(seg, topo, node);
	/* Reserve every page now: a full /dev/shm fails here with ENOSPC rather
	 * than with SIGBUS at the first write into a hole. */
	ret = posix_fallocate(seg->fd, 0, (off_t)seg->size);
	if (ret) {
		ret = -ret;
		goto fail;
	}
	ret = prefault(seg->base, seg->size, shmrig__page_size());
	if (ret)
		goto fail;
	seg->backing = thp ? SHMRIG_BACKING_THP : SHMRIG_BACKING_PLAIN;
	seg->page_size = page;
	seg->kind = thp ? KIND_THP : KIND_SHM;
	return 0;
fail:
	add_reason(seg, "%s: %s", thp ? "thp" : "shm", strerror(-ret));
	discard(seg, path);
	return ret == -ENOSPC ? -ENOMEM : ret;
}

int shmrig_segment_create(const struct shmrig_segment_opts *user_opts, shmrig_segment **out)
{
	static int warned_degraded;
	struct shmrig_segment_opts local;
	const struct shmrig_segment_opts *opts = &local;
	struct shmrig_segment *seg;
	const char *prefix;
	shmrig_topo *topo;
	shmrig__procid self;
	uint32_t pidns;
	int node = -1, ret;

	if (!user_opts || !out)
		return shmrig__fail(-EINVAL, "segment_create: NULL argument");
	ret = shmrig__sized_in(&local, sizeof(local), user_opts,
			       "segment_create: struct shmrig_segment_opts");
	if (ret)
		return ret;
	if (opts->flags & ~SHMRIG_SEG_FLAGS_ALL)
		return shmrig__fail(-EINVAL, "segment_create: unknown flags 0x%x",
				    opts->flags & ~SHMRIG_SEG_FLAGS_ALL);
	if (opts->bytes == 0 || opts->bytes > (SIZE_MAX >> 2))
		return shmrig__fail(-EINVAL, "segment_create: bytes %zu is out of range",
				    opts->bytes);
	if (opts->role && (opts->role < 'a' || opts->role > 'z'))
		return shmrig__fail(-EINVAL, "segment_create: role must be a letter a-z");
	if (opts->backing < SHMRIG_BACKING_AUTO || opts->backing > SHMRIG_BACKING_PLAIN)
		return shmrig__fail(-EINVAL, "segment_create: unknown backing %d", opts->backing);
	prefix = resolve_prefix(opts->prefix);
	ret = shmrig__check_prefix(prefix);
	if (ret)
		return ret;
	topo = opts->topo ? opts->topo : shmrig_topo_system();
	if (opts->flags & SHMRIG_SEG_BIND_NODE) {
		if (!topo || !shmrig_topo_node_exists(topo, opts->numa_node))
			return shmrig__fail(-EINVAL, "segment_create: no NUMA node %d",
					    opts->numa_node);
		node = opts->numa_node;
	}
	/* The name carries who created it: without a true identity (at the fd
	 * limit, /proc/self/stat cannot be read) there is no name to give. */
	ret = shmrig__self(&self);
	if (ret == 0)
		ret = shmrig__self_pidns(&pidns);
	if (ret)
		return shmrig__fail(ret,
				    "segment_create: cannot read this process's identity "
				    "from /proc/self: %s",
				    strerror(-ret));

	seg = calloc(1, sizeof(*seg));
	if (!seg)
		return shmrig__fail(-ENOMEM, "segment_create: out of memory");
	seg->fd = -1;
	seg->node = -1;
	seg->role = opts->role ? (char)opts->role : 'g';
	seg->creator = self;
	seg->creator_ns = pidns;

	/* Degrade in order hugetlb -> thp -> plain, from the one asked for. */
	ret = -ENOMEM;
	switch (opts->backing) {
	case SHMRIG_BACKING_AUTO:
	case SHMRIG_BACKING_HUGETLB:
		ret = try_hugetlb(seg, prefix, opts->bytes, topo, node);
		if (ret == 0 || (opts->flags & SHMRIG_SEG_STRICT))
			break;
		/* fall through */
	case SHMRIG_BACKING_THP:
		ret = try_shmem(seg, prefix, opts->bytes, true, topo, node);
		if (ret == 0 || (opts->flags & SHMRIG_SEG_STRICT))
			break;
		/* fall through */
	case SHMRIG_BACKING_PLAIN:
		ret = try_shmem(seg, prefix, opts->bytes, false, topo, node);
		break;
	}
	if (ret) {
		ret = shmrig__fail(ret == -ENOTSUP || ret == -ENOENT ? -ENOMEM : ret,
				   "segment_create: no backing for %zu bytes: %s", opts->bytes,
				   seg->reason);
		free(seg);
		return ret;
	}
	if (opts->backing != SHMRIG_BACKING_AUTO &&
	    seg->backing != (enum shmrig_backing)opts->backing)
		shmrig__warn_once(&warned_degraded, "asked for %s pages, got %s (%s)",
				  shmrig_backing_name(opts->backing),
				  shmrig_backing_name(seg->backing), seg->reason);
	add_reason(seg, "got %s", shmrig_backing_name(seg->backing));
	close_fd(seg);
	*out = seg;
	return 0;
}

static int attach(const char *prefix, const char *name, bool populate, shmrig_segment **out)
{
	struct shmrig_segment *seg;
	char path[PATH_MAX];
	uint32_t name_ns, our_ns;
	struct stat st;
	int ret;

	if (!out)
		return shmrig__fail(-EINVAL, "segment_attach: NULL out");
	ret = shmrig__segment_parse_name(prefix, name, NULL, NULL, &name_ns);
	if (ret)
		return ret;
	ret = shmrig__self_pidns(&our_ns);
	if (ret)
		return shmrig__fail(ret, "segment '%s': cannot read our pid namespace: %s", name,
				    strerror(-ret));
	/* Sharing a pool means judging each other's liveness by pid, and a pid
	 * names another process (or none) in another pid namespace. */
	if (name_ns != our_ns)
		return shmrig__fail(-EXDEV,
				    "segment '%s' was created in another pid namespace (%08x, ours "
				    "is %08x): processes in different pid namespaces cannot share a "
				    "pool",
				    name, (unsigned)name_ns, (unsigned)our_ns);
	ret = name_path(name, path, sizeof(path));
	if (ret)
		return ret;
	seg = calloc(1, sizeof(*seg));
	if (!seg)
		return shmrig__fail(-ENOMEM, "segment_attach: out of memory");
	seg->node = -1;
	seg->kind = name_kind(name);
	seg->role = name[strlen(name) - RANDOM_HEX - 1];
	strcpy(seg->name, name);
	seg->fd = open_path(name, path, O_RDWR);
	if (seg->fd < 0) {
		ret = shmrig__fail(seg->fd, "segment '%s': %s", name, strerror(-seg->fd));
		free(seg);
		return ret;
	}
	if (fstat(seg->fd, &st)) {
		ret = -errno;
		goto fail;
	}
	if (st.st_size <= 0) {
		ret = -SHMRIG_ECORRUPT; /* a file with our name, but no segment we made */
		goto fail;
	}
	seg->size = (size_t)st.st_size;
	/* MAP_POPULATE maps the creator's already-faulted pages now, so that the
	 * first access from this process takes no fault either. */
	seg->base = mmap(NULL, seg->size, PROT_READ | PROT_WRITE,
			 MAP_SHARED | (populate ? MAP_POPULATE : 0), seg->fd, 0);
	if (seg->base == MAP_FAILED) {
		ret = -errno;
		goto fail;
	}
	if (seg->kind == KIND_HUGETLB) {
		seg->backing = SHMRIG_BACKING_HUGETLB;
		seg->page_size = HUGE_SIZE;
	} else if (seg->kind == KIND_THP) {
		/* our mapping needs its own advice to get huge PMDs */
		madvise(seg->base, seg->size, MADV_HUGEPAGE);
		seg->backing = SHMRIG_BACKING_THP;
		seg->page_size = HUGE_SIZE;
	} else {
		seg->backing = SHMRIG_BACKING_PLAIN;
		seg->page_size = shmrig__page_size();
	}
	snprintf(seg->reason, sizeof(seg->reason), "attached");
	close_fd(seg);
	*out = seg;
	return 0;
fail:
	ret = shmrig__fail(ret, "segment '%s': %s", name,
			   ret == -SHMRIG_ECORRUPT ? "an empty file, not a segment" :
						     strerror(-ret));
	if (seg->base && seg->base != MAP_FAILED)
		munmap(seg->base, seg->size);
	close(seg->fd);
	free(seg);
	return ret;
}

int shmrig_segment_attach(const char *prefix, const char *name, shmrig_segment **out)
{
	return attach(prefix, name, true, out);
}

int shmrig__segment_attach_lazy(const char *prefix, const char *name, shmrig_segment **out)
{
	return attach(prefix, name, false, out);
}

int shmrig__segment_populate(shmrig_segment *seg)
{
	int ret = prefault(seg->base, seg->size, seg->page_size);

	if (ret)
		return shmrig__fail(ret == -EFAULT || ret == -ENOMEM ? -ENOMEM : ret,
				    "segment '%s': populate %zu bytes: %s", seg->name, seg->size,
				    strerror(-ret));
	return 0;
}

void shmrig_segment_close(shmrig_segment *seg)
{
	if (!seg)
		return;
	if (seg->base)
		munmap(seg->base, seg->size);
	if (seg->fd >= 0)
		close(seg->fd);
	free(seg);
}

int shmrig_segment_unlink_name(const char *prefix, const char *name)
{
	char path[PATH_MAX];
	int ret = shmrig_segment_parse_name(prefix, name, NULL, NULL);

	if (ret)
		return ret;
	ret = name_path(name, path, sizeof(path));
	if (ret)
		return ret;
	ret = unlink_path(name, path);
	if (ret)
		return shmrig__fail(ret, "unlink segment '%s': %s", name, strerror(-ret));
	return 0;
}

int shmrig_segment_unlink(shmrig_segment *seg)
{
	char path[PATH_MAX];
	int ret;

	if (!seg)
		return shmrig__fail(-EINVAL, "segment_unlink: NULL segment");
	ret = name_path(seg->name, path, sizeof(path));
	if (ret)
		return ret;
	ret = unlink_path(seg->name, path);
	if (ret)
		return shmrig__fail(ret, "unlink segment '%s': %s", seg->name, strerror(-ret));
	return 0;
}

void *shmrig_segment_base(const shmrig_segment *seg)
{
	return seg->base;
}

size_t shmrig_segment_size(const shmrig_segment *seg)
{
	return seg->size;
}

const char *shmrig_segment_name(const shmrig_segment *seg)
{
	return seg->name;
}

enum shmrig_backing shmrig_segment_backing(const shmrig_segment *seg)
{
	return seg->backing;
}

size_t shmrig_segment_page_size(const shmrig_segment *seg)
{
	return seg->page_size;
}

const char *shmrig_segment_reason(const shmrig_segment *seg)
{
	return seg->reason;
}

int shmrig_segment_node(const shmrig_segment *seg)
{
	return seg->node;
}

char shmrig_segment_role(const shmrig_segment *seg)
{
	return seg->role;
}

/* A valid segment name found in a directory, with what its name says. */
struct seg_entry {
	int dirfd;
	const char *name;
	pid_t pid;
	uint64_t start;
	uint32_t pidns;
};

typedef int (*scan_fn)(void *arg, const struct seg_entry *entry);

/* Call fn(arg, entry) for each valid segment name with this prefix in `dir`. */
static int scan_dir(const char *dir, const char *prefix, scan_fn fn, void *arg)
{
	DIR *d = opendir(dir);
	char saved_error[256];
	struct dirent *ent;
	int count = 0;

	if (!d)
		return errno == ENOENT ?
			       0 :
			       shmrig__fail(-errno, "cannot list %s: %s", dir, strerror(errno));
	snprintf(saved_error, sizeof(saved_error), "%s", shmrig_last_error());
	while ((ent = readdir(d))) {
		struct seg_entry entry = { .dirfd = dirfd(d), .name = ent->d_name };

		if (strncmp(ent->d_name, prefix, strlen(prefix)) != 0 ||
		    ent->d_name[strlen(prefix)] != '-')
			continue;
		/* A stray file with our prefix is skipped; its parse error is not ours. */
		if (shmrig__segment_parse_name(prefix, ent->d_name, &entry.pid, &entry.start,
					       &entry.pidns)) {
			shmrig__fail(0, "%s", saved_error);
			continue;
		}
		count += fn(arg, &entry);
	}
	closedir(d);
	return count;
}

static int scan_all(const char *prefix, scan_fn fn, void *arg)
{
	char dir[PATH_MAX];
	int count, more;

	prefix = resolve_prefix(prefix);
	count = shmrig__check_prefix(prefix);
	if (count)
		return count;
	count = scan_dir(SHM_DIR, prefix, fn, arg);
	if (count < 0 || shmrig__hugetlbfs_dir(HUGE_KB, dir, sizeof(dir)))
		return count;
	more = scan_dir(dir, prefix, fn, arg);
	return more < 0 ? more : count + more;
}

struct sweep_ctx {
	const char *prefix;
	shmrig__procid self;
	uint32_t pidns;
	uid_t euid;
	bool (*keep)(void *arg, const char *name);
	void *arg;
};

/* Unlink one segment if, and only if, it is ours to judge and its creator is dead. 1 if unlinked. */
static int sweep_one(void *arg, const struct seg_entry *entry)
{
	const struct sweep_ctx *ctx = arg;
	shmrig__procid creator = shmrig__procid_make(entry->pid, entry->start);
	struct stat st;

	/* Only a regular file of our own, not followed through a symlink: a
	 * root sweep must not remove another user's file whose name claims a
	 * dead pid (anyone may write any name into /dev/shm). */
	if (fstatat(entry->dirfd, entry->name, &st, AT_SYMLINK_NOFOLLOW) || !S_ISREG(st.st_mode) ||
	    st.st_uid != ctx->euid)
		return 0;
	/* A pid of another pid namespace names another process here, or none. */
	if (entry->pidns != ctx->pidns || creator == ctx->self)
		return 0;
	/* Only "dead" reclaims: a creator we cannot judge (at the fd limit, say) keeps its segment. */
	if (shmrig__life_of(creator) != SHMRIG__DEAD)
		return 0;
	/* The pool's last word: a live process may still hold a block in it. */
	if (ctx->keep && ctx->keep(ctx->arg, entry->name))
		return 0;
	return shmrig_segment_unlink_name(ctx->prefix, entry->name) == 0;
}

int shmrig_segment_sweep(const char *prefix)
{
	return shmrig__segment_sweep(prefix, NULL, NULL);
}

int shmrig__segment_sweep(const char *prefix, bool (*keep)(void *arg, const char *name), void *arg)
{
	struct sweep_ctx ctx = {
		.prefix = resolve_prefix(prefix), .euid = geteuid(), .keep = keep, .arg = arg
	};
	int ret = shmrig__check_prefix(ctx.prefix);

	if (ret)
		return ret;
	ret = shmrig__self(&ctx.self);
	if (ret == 0)
		ret = shmrig__self_pidns(&ctx.pidns);
	if (ret)
		return shmrig__fail(ret,
				    "segment_sweep: cannot read this process's identity "
				    "from /proc/self, so cannot judge others: %s",
				    strerror(-ret));
	return scan_all(ctx.prefix, sweep_one, &ctx);
}

struct list_ctx {
	void (*fn)(void *arg, const char *name);
	void *arg;
};

static int list_one(void *arg, const struct seg_entry *entry)
{
	struct list_ctx *ctx = arg;

	if (ctx->fn)
		ctx->fn(ctx->arg, entry->name);
	return 1;
}

int shmrig_segment_list(const char *prefix, void (*fn)(void *arg, const char *name), void *arg)
{
	struct list_ctx ctx = { fn, arg };

	return scan_all(prefix, list_one, &ctx);
}
