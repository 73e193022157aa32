/* SPDX-License-Identifier: MIT */
#ifndef SHMRIG_TOPO_H
#define SHMRIG_TOPO_H

/*
 * topo: the machine's CPUs and NUMA nodes, through hwloc.
 *
 * A topology is loaded once per handle. shmrig_topo_system() returns the
 * process-wide handle of the real machine (loaded on first use, thread-safe,
 * released at exit). Tests build their own from an hwloc synthetic description
 * or an XML file to exercise multi-node placement on a one-node machine.
 *
 * On synthetic and XML topologies hwloc's bind calls do nothing and succeed, so
 * every binding decision goes through a binder (struct shmrig_topo_binder). The
 * default binder calls hwloc; a test injects one that records what was asked.
 */

#include <shmrig/common.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct shmrig_topo shmrig_topo;

/* What a binder is asked to do. `node` is an OS NUMA node index (as in
 * /sys/devices/system/node/nodeN), `cpu` an OS CPU index. */
struct shmrig_topo_binder {
	uint32_t size; /* sizeof where it was filled: SHMRIG_SIZED() (input, shmrig/common.h) */
	/* bind the calling thread to one CPU; 0 or -errno */
	int (*bind_thread_cpu)(void *ctx, shmrig_topo *topo, int cpu);
	/* bind [addr, addr+len) to one node; addr and len page-aligned; 0 or -errno */
	int (*bind_area_node)(void *ctx, shmrig_topo *topo, void *addr, size_t len, int node);
	void *ctx;
};

/* The real machine's topology; NULL (and shmrig_last_error() set) if hwloc fails. */
SHMRIG_API shmrig_topo *shmrig_topo_system(void);

/*
 * Load a topology from an hwloc synthetic description (e.g.
 * "pack:2 numa:1 core:2 pu:1") or, if `desc` names an existing file, from XML.
 * Errors: -EINVAL bad description (message says why), -ENOMEM.
 */
SHMRIG_NODISCARD SHMRIG_API int shmrig_topo_load(const char *desc, shmrig_topo **out);

/* Free a topology from shmrig_topo_load(). NULL and the system handle are ignored. */
SHMRIG_API void shmrig_topo_free(shmrig_topo *topo);

/*
 * Replace the binder (copied; NULL restores hwloc's; an operation left NULL
 * stays hwloc's). Not thread-safe against concurrent binds.
 * Errors: -EINVAL NULL topo, binder->size below 8; -E2BIG binder->size above
 * SHMRIG_SIZED_MAX, or a non-zero byte past this library's struct
 * (shmrig/common.h). On error the binder in place stays.
 */
SHMRIG_NODISCARD SHMRIG_API int shmrig_topo_set_binder(shmrig_topo *topo,
						       const struct shmrig_topo_binder *binder);

/* Counts of NUMA nodes and of CPUs (PUs) in the topology, >= 1; -EINVAL a NULL topo. */
SHMRIG_NODISCARD SHMRIG_API int shmrig_topo_num_nodes(const shmrig_topo *topo);
SHMRIG_NODISCARD SHMRIG_API int shmrig_topo_num_cpus(const shmrig_topo *topo);

/* OS index of the i-th node / CPU (0 <= i < count); -EINVAL out of range. */
SHMRIG_NODISCARD SHMRIG_API int shmrig_topo_node_os_index(const shmrig_topo *topo, int i);
SHMRIG_NODISCARD SHMRIG_API int shmrig_topo_cpu_os_index(const shmrig_topo *topo, int i);

/* Does a node with this OS index exist? 1 or 0. */
SHMRIG_API int shmrig_topo_node_exists(const shmrig_topo *topo, int node);

/* The NUMA node (OS index) local to CPU `cpu` (OS index); -EINVAL if no such CPU. */
SHMRIG_NODISCARD SHMRIG_API int shmrig_topo_cpu_node(const shmrig_topo *topo, int cpu);

/* The CPU the calling thread runs on now (OS index), or -errno. */
SHMRIG_NODISCARD SHMRIG_API int shmrig_topo_current_cpu(void);

/* Bind the calling thread to CPU `cpu`. -EINVAL no such CPU; else the binder's error. */
SHMRIG_NODISCARD SHMRIG_API int shmrig_topo_bind_thread(shmrig_topo *topo, int cpu);

/*
 * Bind the pages of [addr, addr+len) to node `node` before they are first
 * touched. addr is rounded down and len up to the base page size.
 * -EINVAL no such node (message lists the nodes there are); else the binder's error.
 */
SHMRIG_NODISCARD SHMRIG_API int shmrig_topo_bind_area(shmrig_topo *topo, void *addr, size_t len,
						      int node);

/*
 * Where the pages of [addr, addr+len) really are: the OS index of the single
 * node holding them, -ENOENT if they are on several nodes or none is faulted,
 * -errno if hwloc cannot tell (hwloc_get_area_memlocation).
 */
SHMRIG_NODISCARD SHMRIG_API int shmrig_topo_area_node(shmrig_topo *topo, const void *addr,
						      size_t len);

#ifdef __cplusplus
}
#endif

#endif
