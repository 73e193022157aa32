/* SPDX-License-Identifier: MIT */
#ifndef SHMRIG_SEGMENT_H
#define SHMRIG_SEGMENT_H

/*
 * segment: one named shared-memory segment.
 *
 * Names are "<prefix>-<pid>-<start>-<kind><role><pidns><random>": the creator's pid
 * and start time (hex clock ticks since boot, so a reused pid is not mistaken
 * for the creator), a kind letter ('s': POSIX shm in /dev/shm, 't': the same advised
 * for transparent hugepages, 'h': a file on a hugetlbfs mount), the creator's role letter (what the segment holds, so that
 * a peer knows how to read it before trusting its contents), 8 hex digits of
 * the creator's pid namespace (the low 32 bits of the inode of
 * /proc/self/ns/pid: a pid is the creator's only in that namespace) and 8 hex
 * digits from getrandom(). Any process in the same pid namespace that knows a
 * name can attach it, whatever the backing: hugetlb segments are files on a
 * hugetlbfs mount (found in /proc/mounts, or $SHMRIG_HUGETLBFS), not memfds,
 * precisely so that a name is all a peer needs.
 *
 * Backing, unless the caller asks for one: hugetlb 2 MiB pages when a hugetlbfs
 * is mounted and enough pages are free, else shmem advised with MADV_HUGEPAGE
 * (when the kernel's shmem THP setting allows it), else plain pages. A backing
 * that cannot be had degrades to the next and says why in the reason string.
 * Space is reserved and every page faulted at creation, after the range is
 * bound to the requested NUMA node: a full /dev/shm or an empty hugepage pool
 * is -ENOMEM from create, never a SIGBUS at first write.
 */

#include <shmrig/common.h>
#include <shmrig/options.h>
#include <shmrig/topo.h>
#include <sys/types.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct shmrig_segment shmrig_segment;

/* SHMRIG_NAME_MAX, SHMRIG_PREFIX_MAX and SHMRIG_DEFAULT_PREFIX: shmrig/options.h */

enum shmrig_backing {
	SHMRIG_BACKING_AUTO = 0, /* request only: best available */
	SHMRIG_BACKING_HUGETLB,  /* hugetlbfs, 2 MiB pages */
	SHMRIG_BACKING_THP,      /* shmem with MADV_HUGEPAGE */
	SHMRIG_BACKING_PLAIN,    /* shmem, base pages */
};

/* Bind the segment's memory to opts.numa_node (else: where the creating thread runs). */
#define SHMRIG_SEG_BIND_NODE (1u << 0)
/* Fail with -ENOMEM instead of degrading when the requested backing cannot be had. */
#define SHMRIG_SEG_STRICT (1u << 1)
#define SHMRIG_SEG_FLAGS_ALL (SHMRIG_SEG_BIND_NODE | SHMRIG_SEG_STRICT)

/* Input, sized: SHMRIG_SIZED(struct shmrig_segment_opts) (shmrig/common.h). */
struct shmrig_segment_opts {
	uint32_t size;      /* sizeof where it was filled: SHMRIG_SIZED() */
	uint32_t flags;     /* SHMRIG_SEG_* */
	size_t bytes;       /* the segment's size, > 0; rounded up to the backing's page size */
	const char *prefix; /* NULL: $SHMRIG_PREFIX, else SHMRIG_DEFAULT_PREFIX */
	shmrig_topo *topo;  /* NULL: shmrig_topo_system() */
	int backing;        /* enum shmrig_backing */
	int numa_node;      /* OS node index, used with SHMRIG_SEG_BIND_NODE */
	uint32_t role;      /* 'a'..'z' recorded in the name; 0: 'g' (generic) */
};

/*
 * Create a new segment (exclusive, mode 0600), reserve, bind and pre-fault it.
 * Errors: -EINVAL bad options (unknown flag, bytes 0, bad prefix, no such
 * node, opts->size below 8); -E2BIG opts->size above SHMRIG_SIZED_MAX, or a
 * non-zero byte past this library's struct (shmrig/common.h); -ENOMEM no space in /dev/shm or no hugepages (with
 * SHMRIG_SEG_STRICT); -EMFILE, -ENFILE, -ENOENT... the creator's identity
 * (/proc/self/stat, /proc/self/ns/pid) cannot be read, so no name can be
 * given (at the fd limit, say: a later call tries again); other -errno from
 * the OS.
 */
SHMRIG_NODISCARD SHMRIG_API int shmrig_segment_create(const struct shmrig_segment_opts *opts,
						      shmrig_segment **out);

/*
 * Attach an existing segment by name, mapped read-write. The name is validated
 * against `prefix` (NULL: the default) first.
 * Errors: -EINVAL bad name; -EXDEV the name was made in another pid namespace
 * (processes in different pid namespaces cannot judge each other's liveness,
 * so they cannot share a pool); -ENOENT no such segment; -SHMRIG_ECORRUPT an
 * empty file (named like one, but no segment we made); -ENOMEM; other -errno
 * (that of /proc/self/ns/pid when it cannot be read).
 */
SHMRIG_NODISCARD SHMRIG_API int shmrig_segment_attach(const char *prefix, const char *name,
						      shmrig_segment **out);

/* Unmap and close. Does not remove the name. NULL is ignored. */
SHMRIG_API void shmrig_segment_close(shmrig_segment *seg);

/* Remove the segment's name (the memory lives until every mapping is gone). 0 or -errno. */
SHMRIG_NODISCARD SHMRIG_API int shmrig_segment_unlink(shmrig_segment *seg);

/* Remove a segment by name, after validating it. 0, -EINVAL, -ENOENT or -errno. */
SHMRIG_NODISCARD SHMRIG_API int shmrig_segment_unlink_name(const char *prefix, const char *name);

SHMRIG_API void *shmrig_segment_base(const shmrig_segment *seg);
SHMRIG_API size_t shmrig_segment_size(const shmrig_segment *seg);
SHMRIG_API const char *shmrig_segment_name(const shmrig_segment *seg);
SHMRIG_API enum shmrig_backing shmrig_segment_backing(const shmrig_segment *seg);
/* Page size backing the segment: 2 MiB for hugetlb and advised THP, else the base page. */
SHMRIG_API size_t shmrig_segment_page_size(const shmrig_segment *seg);
/* Why this backing: e.g. "hugetlb: 0 free 2048 kB pages (need 32); thp: shmem_enabled is never". */
SHMRIG_API const char *shmrig_segment_reason(const shmrig_segment *seg);
/* NUMA node the segment was bound to, -1 if not bound. */
SHMRIG_API int shmrig_segment_node(const shmrig_segment *seg);
/* The role letter from the segment's name. */
SHMRIG_API char shmrig_segment_role(const shmrig_segment *seg);

/* "hugetlb", "thp", "plain" or "auto". */
SHMRIG_API const char *shmrig_backing_name(enum shmrig_backing backing);

/*
 * Check a name received from elsewhere: our prefix, then "-pid-start-", the
 * kind and role letters and 16 hex digits (pid namespace, random); no '/', bounded length.
 * 0 or -EINVAL (message says what is wrong). With non-NULL pid/start, returns the
 * creator's identity (a pid in the creator's pid namespace).
 */
SHMRIG_NODISCARD SHMRIG_API int shmrig_segment_parse_name(const char *prefix, const char *name,
							  pid_t *pid, uint64_t *start);

/*
 * Remove every segment with this prefix (in /dev/shm and the hugetlbfs mount)
 * whose creator is known to be dead. A file is removed only if all hold: it is
 * a regular file (not a symlink, never followed) owned by our effective uid;
 * its name carries our pid namespace; its creator is not us; and the creator
 * is dead by a fact the kernel keeps (no process has its pid, the pid's holder
 * has another start time, or its whole thread group has exited). A creator
 * whose life cannot be told (at the fd limit, say) keeps its segment.
 * Returns how many were removed, or -errno: of the directory scan, or that of
 * reading our own identity (/proc/self), without which nobody can be judged.
 */
SHMRIG_NODISCARD SHMRIG_API int shmrig_segment_sweep(const char *prefix);

/*
 * Call fn for every existing segment name with this prefix (both backings).
 * Returns the count, or -errno. For tests and tools (leak checks by accounting).
 */
SHMRIG_NODISCARD SHMRIG_API int shmrig_segment_list(const char *prefix,
						    void (*fn)(void *arg, const char *name),
						    void *arg);

#ifdef __cplusplus
}
#endif

#endif
