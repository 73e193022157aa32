/* SPDX-License-Identifier: MIT */
/* The mean capacity model: see model.h. */
#include "model.h"

#include <math.h>
#include <string.h>

#define NCLASS SHMRIG_POOL_NUM_CLASSES
#define DESC_BYTES 32u /* a block's descriptor (pool_layout.h, struct desc) */
#define EXT_DESCS 32u  /* classes with at most this many blocks a chunk keep descriptors outside */
#define LARGE_TRAILER 128u
#define CHUNKS_PER_ARENA_MAX ((uint64_t)(SHMRIG_POOL_ARENA_MAX / SHMRIG_POOL_CHUNK))

static uint64_t round_up(uint64_t x, uint64_t to)
{
	return (x + to - 1) / to * to;
}

/* ceil() that does not turn 10.000000000001 (a sum of probabilities) into 11. */
static uint64_t ceil_count(double x)
{
	return x <= 1e-9 ? 0 : (uint64_t)ceil(x - 1e-9);
}

uint64_t plan_class_size(unsigned c)
{
	return (uint64_t)SHMRIG_POOL_MIN_BLOCK << c;
}

/*
 * The packing of lib/pool/pool_arena.c's compute_layout() for a chunk with no
 * arena header in it: below 64 KiB each block has its 32-byte descriptor in
 * the chunk, payloads aligned to min(class, 4 KiB); above, descriptors live in
 * the arena header and the chunk is all payload. test_plan checks the figures.
 */
uint64_t plan_blocks_per_chunk(unsigned c)
{
	uint64_t size = plan_class_size(c), align = size < 4096 ? size : 4096;
	uint64_t n;

	if (SHMRIG_POOL_CHUNK / size <= EXT_DESCS)
		return SHMRIG_POOL_CHUNK / size;
	n = SHMRIG_POOL_CHUNK / (size + DESC_BYTES);
	while (n && round_up(n * DESC_BYTES, align) + n * size > SHMRIG_POOL_CHUNK)
		n--;
	return n;
}

unsigned plan_class_of(uint64_t bytes)
{
	for (unsigned c = 0; c < NCLASS; c++)
		if (bytes <= plan_class_size(c))
			return c;
	return NCLASS;
}

/* A large block's segment: its payload (64-byte multiple) and trailer, in 2 MiB pages. */
uint64_t plan_large_segment(uint64_t bytes)
{
	return round_up(round_up(bytes, SHMRIG_POOL_MIN_BLOCK) + LARGE_TRAILER, PLAN_HUGEPAGE);
}

/* The share of log-uniform [a, b] (a < b) inside [lo, hi]. */
static double log_share(double a, double b, double lo, double hi)
{
	double from = a > lo ? a : lo, to = b < hi ? b : hi;

	return to > from ? log(to / from) / log(b / a) : 0;
}

void plan_size_split(const struct plan_flow *f, double prob[NCLASS + 1], double *large_segment_out)
{
	double total = 0, large_bytes = 0;

	memset(prob, 0, sizeof(double) * (NCLASS + 1));
	for (unsigned i = 0; i < f->nsizes; i++)
		total += f->sizes[i].weight;
	for (unsigned i = 0; i < f->nsizes; i++) {
		const struct plan_size_item *it = &f->sizes[i];
		double w = it->weight / total, a = (double)it->min, b = (double)it->max;
		double page = (double)PLAN_HUGEPAGE, lo, share;

		if (it->min == it->max) {
			unsigned c = plan_class_of(it->min);

			prob[c] += w;
			if (c == NCLASS)
				large_bytes += w * (double)plan_large_segment(it->min);
			continue;
		}
		for (unsigned c = 0; c < NCLASS; c++)
			prob[c] += w * log_share(a, b, c ? (double)plan_class_size(c - 1) : 0,
						 (double)plan_class_size(c));
		lo = (double)SHMRIG_POOL_MAX_CLASS_BLOCK;
		share = log_share(a, b, lo, b);
		if (share <= 0)
			continue;
		prob[NCLASS] += w * share;
		/* segment m * 2 MiB holds sizes in ((m-1) * 2 MiB - 128, m * 2 MiB - 128] */
		for (uint64_t m = (uint64_t)((a > lo ? a : lo) + LARGE_TRAILER) / PLAN_HUGEPAGE + 1;
		     (double)(m - 1) * page - LARGE_TRAILER < b; m++)
			large_bytes += w * (double)m * page *
				       log_share(a, b,
						 fmax((double)(m - 1) * page - LARGE_TRAILER, lo),
						 (double)m * page - LARGE_TRAILER);
	}
	*large_segment_out = prob[NCLASS] > 0 ? large_bytes / prob[NCLASS] : 0;
}

uint64_t plan_pool_bytes(uint64_t chunks, uint64_t large_bytes)
{
	uint64_t arenas = (chunks + CHUNKS_PER_ARENA_MAX - 2) / (CHUNKS_PER_ARENA_MAX - 1);

	return (chunks + arenas) * SHMRIG_POOL_CHUNK + large_bytes;
}

void plan_size_flow(const struct plan_flow *f, const double blocks_per_producer[NCLASS],
		    double large_per_producer, struct plan_flow_need *n)
{
	uint64_t large_segments, large_bytes_per_producer;

	n->chunks_per_producer = 0;
	for (unsigned c = 0; c < NCLASS; c++) {
		struct plan_class_need *cn = &n->classes[c];

		cn->chunks = f->producers *
			     ceil_count(blocks_per_producer[c] / (double)plan_blocks_per_chunk(c));
		cn->bytes = cn->chunks * SHMRIG_POOL_CHUNK;
		n->chunks_per_producer += cn->chunks / f->producers;
	}
	large_segments = ceil_count(large_per_producer);
	if (n->large_probability > 0)
		large_segments += PLAN_LARGE_CACHE;
	large_bytes_per_producer =
		round_up((uint64_t)ceil((double)large_segments * n->large_segment_bytes),
			 PLAN_HUGEPAGE);
	n->large_bytes = large_bytes_per_producer * f->producers;
	/* chunk 0 of an arena holds its header: count it as serving no class */
	if (n->chunks_per_producer == 0) {
		n->arenas_per_producer = 0;
		n->arena_size = 0;
	} else if (n->chunks_per_producer + 1 <= CHUNKS_PER_ARENA_MAX) {
		n->arenas_per_producer = 1;
		n->arena_size = (n->chunks_per_producer + 1) * SHMRIG_POOL_CHUNK;
	} else {
		n->arenas_per_producer = (n->chunks_per_producer + CHUNKS_PER_ARENA_MAX - 2) /
					 (CHUNKS_PER_ARENA_MAX - 1);
		n->arena_size = SHMRIG_POOL_ARENA_MAX;
	}
	n->pool_max = n->arenas_per_producer * n->arena_size + large_bytes_per_producer;
	n->pool_bytes = n->pool_max * f->producers;
}

static void model_flow(const struct plan_flow *f, struct plan_flow_need *n)
{
	double prob[NCLASS + 1], per_producer_in_flight, live, hold_s = f->hold_mean_ms / 1000;
	double blocks_per_producer[NCLASS];

	memset(n, 0, sizeof(*n));
	plan_size_split(f, prob, &n->large_segment_bytes);
	/* Little's law on the flight alone; a producer has at most `window` unacknowledged */
	per_producer_in_flight = f->rate / f->producers * f->flight_ms / 1000;
	if (per_producer_in_flight > f->window) {
		per_producer_in_flight = f->window;
		n->window_bound = 1;
	}
	n->in_flight = per_producer_in_flight * f->producers;
	live = n->in_flight + f->rate * hold_s; /* mean live messages: one block each */
	n->live_per_message = live / f->rate;
	for (unsigned c = 0; c < NCLASS; c++) {
		n->classes[c].probability = prob[c];
		n->classes[c].blocks = prob[c] * live;
		blocks_per_producer[c] = n->classes[c].blocks / f->producers;
	}
	n->large_probability = prob[NCLASS];
	n->large_blocks = prob[NCLASS] * live;
	plan_size_flow(f, blocks_per_producer, n->large_blocks / f->producers, n);
}

void plan_total(const struct plan_workload *wl, struct plan_result *r)
{
	memset(r->classes, 0, sizeof(r->classes));
	r->large_blocks = 0;
	r->large_bytes = 0;
	r->pool_bytes = 0;
	r->hugepages = 0;
	r->nnodes = 0;
	for (unsigned i = 0; i < r->nflows; i++) {
		const struct plan_flow *f = &wl->flows[i];
		const struct plan_flow_need *n = &r->flows[i];
		unsigned k;

		for (unsigned c = 0; c < NCLASS; c++) {
			r->classes[c].blocks += n->classes[c].blocks;
			r->classes[c].chunks += n->classes[c].chunks;
			r->classes[c].bytes += n->classes[c].bytes;
		}
		r->large_blocks += n->large_blocks;
		r->large_bytes += n->large_bytes;
		r->pool_bytes += n->pool_bytes;
		/* blocks live where their producer allocated them: its node */
		for (k = 0; k < r->nnodes && r->nodes[k].node < f->producer_node; k++)
			;
		if (k == r->nnodes || r->nodes[k].node != f->producer_node) {
			memmove(&r->nodes[k + 1], &r->nodes[k],
				(r->nnodes - k) * sizeof(r->nodes[0]));
			memset(&r->nodes[k], 0, sizeof(r->nodes[0]));
			r->nodes[k].node = f->producer_node;
			r->nnodes++;
		}
		r->nodes[k].pool_bytes += n->pool_bytes;
	}
	for (unsigned k = 0; k < r->nnodes; k++) {
		r->nodes[k].hugepages = r->nodes[k].pool_bytes / PLAN_HUGEPAGE;
		r->hugepages += r->nodes[k].hugepages;
	}
	r->dev_shm_bytes = r->pool_bytes;
}

void plan_model(const struct plan_workload *wl, struct plan_result *r)
{
	memset(r, 0, sizeof(*r));
	r->nflows = wl->nflows;
	for (unsigned i = 0; i < wl->nflows; i++)
		model_flow(&wl->flows[i], &r->flows[i]);
	plan_total(wl, r);
}
