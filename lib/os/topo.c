/* SPDX-License-Identifier: MIT */
#include <shmrig/topo.h>

#include "base/internal.h"
#include "os/prim.h"

#include <errno.h>
#include <hwloc.h>
#include <pthread.h>
#include <sched.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

struct shmrig_topo {
	hwloc_topology_t hw;
	/* Both function pointers are always set: missing ones are hwloc's. */
	struct shmrig_topo_binder binder;
	/* The process-wide handle of shmrig_topo_system(): never freed. */
	bool is_system;
};

/* hwloc reports failure as -1 with errno; errno 0 would turn failure into success. */
static int hwloc_errno(void)
{
	return errno > 0 ? -errno : -EIO;
}

static int hwloc_bind_thread_cpu(void *ctx, shmrig_topo *topo, int cpu)
{
	hwloc_bitmap_t cpuset = hwloc_bitmap_alloc();
	int ret = 0;

	(void)ctx;
	if (!cpuset)
		return -ENOMEM;
	hwloc_bitmap_only(cpuset, (unsigned)cpu);
	if (hwloc_set_cpubind(topo->hw, cpuset, HWLOC_CPUBIND_THREAD))
		ret = hwloc_errno();
	hwloc_bitmap_free(cpuset);
	return ret;
}

static int hwloc_bind_area_node(void *ctx, shmrig_topo *topo, void *addr, size_t len, int node)
{
	hwloc_bitmap_t nodeset = hwloc_bitmap_alloc();
	int ret = 0;

	(void)ctx;
	if (!nodeset)
		return -ENOMEM;
	hwloc_bitmap_only(nodeset, (unsigned)node);
	/*
	 * Not HWLOC_MEMBIND_STRICT: on Linux that adds MPOL_MF_STRICT, which
	 * fails if pages already faulted elsewhere cannot be moved. We bind
	 * before first touch, so there is nothing to move.
	 */
	if (hwloc_set_area_membind(topo->hw, addr, len, nodeset, HWLOC_MEMBIND_BIND,
				   HWLOC_MEMBIND_BYNODESET))
		ret = hwloc_errno();
	hwloc_bitmap_free(nodeset);
	return ret;
}

static const struct shmrig_topo_binder hwloc_binder = {
	.size = sizeof(struct shmrig_topo_binder),
	.bind_thread_cpu = hwloc_bind_thread_cpu,
	.bind_area_node = hwloc_bind_area_node,
	.ctx = NULL,
};

/*
 * The real machine, loaded once and kept for the life of the process: threads
 * may still use it while others exit, so there is no safe moment to destroy it.
 * A failure is remembered with its message, because shmrig_last_error() is
 * per thread and later callers must see why too.
 */
static pthread_once_t system_once = PTHREAD_ONCE_INIT;
static shmrig_topo system_topo;
static int system_err;
static char system_msg[256];

static void load_system(void)
{
	int ret;

	if (hwloc_topology_init(&system_topo.hw)) {
		system_err = hwloc_errno();
		snprintf(system_msg, sizeof(system_msg), "hwloc_topology_init: %s",
			 shmrig_strerror(system_err));
		return;
	}
	if (hwloc_topology_load(system_topo.hw)) {
		ret = hwloc_errno();
		hwloc_topology_destroy(system_topo.hw);
		system_topo.hw = NULL;
		system_err = ret;
		snprintf(system_msg, sizeof(system_msg),
			 "hwloc cannot load this machine's topology: %s", shmrig_strerror(ret));
		return;
	}
	system_topo.binder = hwloc_binder;
	system_topo.is_system = true;
}

shmrig_topo *shmrig_topo_system(void)
{
	pthread_once(&system_once, load_system);
	if (system_err) {
		shmrig__fail(system_err, "%s", system_msg);
		return NULL;
	}
	return &system_topo;
}

int shmrig_topo_load(const char *desc, shmrig_topo **out)
{
	shmrig_topo *topo;
	struct stat st;
	bool is_file;
	int ret;

	if (!desc || !out)
		return shmrig__fail(-EINVAL, "shmrig_topo_load: %s is NULL", desc ? "out" : "desc");
	topo = calloc(1, sizeof(*topo));
	if (!topo)
		return shmrig__fail(-ENOMEM, "shmrig_topo_load: out of memory");
	if (hwloc_topology_init(&topo->hw)) {
		ret = hwloc_errno();
		free(topo);
		return shmrig__fail(ret, "hwloc_topology_init: %s", shmrig_strerror(ret));
	}

	is_file = stat(desc, &st) == 0 && !S_ISDIR(st.st_mode);
	if (is_file ? hwloc_topology_set_xml(topo->hw, desc) :
		      hwloc_topology_set_synthetic(topo->hw, desc)) {
		ret = errno == ENOMEM ? -ENOMEM : -EINVAL;
		hwloc_topology_destroy(topo->hw);
		free(topo);
		if (is_file)
			return shmrig__fail(ret, "%s is not an hwloc XML topology", desc);
		return shmrig__fail(ret,
				    "\"%s\" is neither a file nor an hwloc synthetic description "
				    "(e.g. \"pack:2 numa:1 core:2 pu:1\")",
				    desc);
	}
	if (hwloc_topology_load(topo->hw)) {
		ret = errno == ENOMEM ? -ENOMEM : -EINVAL;
		hwloc_topology_destroy(topo->hw);
		free(topo);
		return shmrig__fail(ret, "hwloc cannot build a topology from %s%s%s",
				    is_file ? "" : "\"", desc, is_file ? "" : "\"");
	}
	topo->binder = hwloc_binder;
	*out = topo;
	return 0;
}

void shmrig_topo_free(shmrig_topo *topo)
{
	if (!topo || topo->is_system)
		return;
	hwloc_topology_destroy(topo->hw);
	free(topo);
}

int shmrig_topo_set_binder(shmrig_topo *topo, const struct shmrig_topo_binder *binder)
{
	struct shmrig_topo_binder local;
	int ret;

	if (!topo)
		return shmrig__fail(-EINVAL, "topo_set_binder: topo is NULL");
	if (!binder) {
		topo->binder = hwloc_binder;
		return 0;
	}
	ret = shmrig__sized_in(&local, sizeof(local), binder,
			       "topo_set_binder: struct shmrig_topo_binder");
	if (ret)
		return ret;
	/* A binder may override one operation only; the other stays hwloc's. */
	if (!local.bind_thread_cpu)
		local.bind_thread_cpu = hwloc_bind_thread_cpu;
	if (!local.bind_area_node)
		local.bind_area_node = hwloc_bind_area_node;
	topo->binder = local;
	return 0;
}

static int null_topo(const char *func)
{
	return shmrig__fail(-EINVAL, "%s: topo is NULL", func);
}

int shmrig_topo_num_nodes(const shmrig_topo *topo)
{
	if (!topo)
		return null_topo(__func__);
	return hwloc_get_nbobjs_by_type(topo->hw, HWLOC_OBJ_NUMANODE);
}

int shmrig_topo_num_cpus(const shmrig_topo *topo)
{
	if (!topo)
		return null_topo(__func__);
	return hwloc_get_nbobjs_by_type(topo->hw, HWLOC_OBJ_PU);
}

static int os_index_of(const shmrig_topo *topo, hwloc_obj_type_t type, int i, const char *what)
{
	int count = hwloc_get_nbobjs_by_type(topo->hw, type);
	hwloc_obj_t obj;

	if (i < 0 || i >= count)
		return shmrig__fail(-EINVAL, "no %s at index %d (there are %d)", what, i, count);
	obj = hwloc_get_obj_by_type(topo->hw, type, (unsigned)i);
	return (int)obj->os_index;
}

int shmrig_topo_node_os_index(const shmrig_topo *topo, int i)
{
	if (!topo)
		return null_topo(__func__);
	return os_index_of(topo, HWLOC_OBJ_NUMANODE, i, "NUMA node");
}

int shmrig_topo_cpu_os_index(const shmrig_topo *topo, int i)
{
	if (!topo)
		return null_topo(__func__);
	return os_index_of(topo, HWLOC_OBJ_PU, i, "CPU");
}

static hwloc_obj_t node_obj(const shmrig_topo *topo, int node)
{
	if (node < 0)
		return NULL;
	return hwloc_get_numanode_obj_by_os_index(topo->hw, (unsigned)node);
}

static hwloc_obj_t cpu_obj(const shmrig_topo *topo, int cpu)
{
	if (cpu < 0)
		return NULL;
	return hwloc_get_pu_obj_by_os_index(topo->hw, (unsigned)cpu);
}

int shmrig_topo_node_exists(const shmrig_topo *topo, int node)
{
	return topo && node_obj(topo, node) ? 1 : 0;
}

/* -EINVAL naming the nodes there are: "no NUMA node 7 (nodes: 0, 1)". */
static int no_such_node(const shmrig_topo *topo, int node)
{
	char list[128] = "";
	size_t used = 0;
	hwloc_obj_t obj = NULL;

	while ((obj = hwloc_get_next_obj_by_type(topo->hw, HWLOC_OBJ_NUMANODE, obj))) {
		char item[16];
		int n = snprintf(item, sizeof(item), "%s%u", used ? ", " : "", obj->os_index);

		/* Always keep room to end a long list with ", ..." after a whole number. */
		if (used + (size_t)n + sizeof(", ...") > sizeof(list)) {
			strcpy(list + used, ", ...");
			break;
		}
		memcpy(list + used, item, (size_t)n + 1);
		used += (size_t)n;
	}
	return shmrig__fail(-EINVAL, "no NUMA node %d (nodes: %s)", node, list);
}

static int no_such_cpu(const shmrig_topo *topo, int cpu)
{
	char list[128];

	hwloc_bitmap_list_snprintf(list, sizeof(list),
				   hwloc_topology_get_topology_cpuset(topo->hw));
	return shmrig__fail(-EINVAL, "no CPU %d (CPUs: %s)", cpu, list);
}

int shmrig_topo_cpu_node(const shmrig_topo *topo, int cpu)
{
	hwloc_obj_t obj;

	if (!topo)
		return null_topo(__func__);
	obj = cpu_obj(topo, cpu);
	if (!obj)
		return no_such_cpu(topo, cpu);
	/*
	 * In hwloc 2.x NUMA nodes are memory children of the object whose CPUs
	 * they are local to (package, group, die, or the root), possibly behind
	 * a memory-side cache. The closest ancestor with memory children holds
	 * the local node; if it has several (DRAM plus HBM or CXL memory), the
	 * first one is hwloc's ordinary memory. The root always has one.
	 */
	while (obj && !obj->memory_arity)
		obj = obj->parent;
	if (!obj)
		return shmrig__fail(-ENOENT, "CPU %d has no local NUMA node", cpu);
	obj = obj->memory_first_child;
	while (obj && obj->type != HWLOC_OBJ_NUMANODE)
		obj = obj->memory_first_child;
	if (!obj)
		return shmrig__fail(-ENOENT, "CPU %d has no local NUMA node", cpu);
	return (int)obj->os_index;
}

int shmrig_topo_current_cpu(void)
{
	int cpu = sched_getcpu();

	if (cpu < 0) {
		int ret = errno > 0 ? -errno : -EIO;

		return shmrig__fail(ret, "sched_getcpu: %s", shmrig_strerror(ret));
	}
	return cpu;
}

int shmrig_topo_bind_thread(shmrig_topo *topo, int cpu)
{
	int ret;

	if (!topo)
		return null_topo(__func__);
	if (!cpu_obj(topo, cpu))
		return no_such_cpu(topo, cpu);
	ret = topo->binder.bind_thread_cpu(topo->binder.ctx, topo, cpu);
	if (ret < 0)
		return shmrig__fail(ret, "cannot bind thread to CPU %d: %s", cpu,
				    shmrig_strerror(ret));
	return 0;
}

int shmrig_topo_bind_area(shmrig_topo *topo, void *addr, size_t len, int node)
{
	uintptr_t page = shmrig__page_size();
	uintptr_t start, end;
	int ret;

	if (!topo)
		return null_topo(__func__);
	if (!node_obj(topo, node))
		return no_such_node(topo, node);
	if (len > UINTPTR_MAX - (page - 1) || (uintptr_t)addr > UINTPTR_MAX - (page - 1) - len)
		return shmrig__fail(-EINVAL, "area %p + %zu wraps around the address space", addr,
				    len);
	/* Nothing to bind; mbind() would accept it too, but a binder need not. */
	if (!len)
		return 0;
	start = (uintptr_t)addr & ~(page - 1);
	end = ((uintptr_t)addr + len + page - 1) & ~(page - 1);
	ret = topo->binder.bind_area_node(topo->binder.ctx, topo, (void *)start, end - start, node);
	if (ret < 0)
		return shmrig__fail(ret, "cannot bind %p + %zu to NUMA node %d: %s", addr, len,
				    node, shmrig_strerror(ret));
	return 0;
}

int shmrig_topo_area_node(shmrig_topo *topo, const void *addr, size_t len)
{
	hwloc_bitmap_t nodeset;
	int ret, weight;

	if (!topo)
		return null_topo(__func__);
	/*
	 * A synthetic or XML topology describes no real pages: hwloc's calls on
	 * it do nothing and succeed, which would read as "nothing faulted".
	 */
	if (!hwloc_topology_is_thissystem(topo->hw))
		return shmrig__fail(-ENOTSUP,
				    "page locations are known only for this machine's topology, "
				    "not a loaded one");
	nodeset = hwloc_bitmap_alloc();
	if (!nodeset)
		return shmrig__fail(-ENOMEM, "shmrig_topo_area_node: out of memory");
	if (hwloc_get_area_memlocation(topo->hw, addr, len, nodeset, HWLOC_MEMBIND_BYNODESET)) {
		ret = hwloc_errno();
		hwloc_bitmap_free(nodeset);
		return shmrig__fail(ret, "cannot locate the pages of %p + %zu: %s", addr, len,
				    shmrig_strerror(ret));
	}
	weight = hwloc_bitmap_weight(nodeset);
	if (weight == 1)
		ret = hwloc_bitmap_first(nodeset);
	else if (weight == 0)
		ret = shmrig__fail(-ENOENT, "no page of %p + %zu is faulted in", addr, len);
	else
		ret = shmrig__fail(-ENOENT, "the pages of %p + %zu are on %d NUMA nodes", addr, len,
				   weight);
	hwloc_bitmap_free(nodeset);
	return ret;
}
