/* SPDX-License-Identifier: MIT */
/* The simulation of arrivals and holds: see sim.h. */
#include "sim.h"

#include "draw.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define NSLOT (SHMRIG_POOL_NUM_CLASSES + 1) /* the classes and large blocks */

/* A live block waiting for its free. */
struct live {
	double end;
	uint64_t bytes;
	unsigned slot;
};

/* Min-heap on end: the frees, in time order. */
struct heap {
	struct live *v;
	size_t n, cap;
};

static int heap_push(struct heap *h, struct live x)
{
	size_t i;

	if (h->n == h->cap) {
		size_t cap = h->cap ? h->cap * 2 : 1024;
		struct live *v = realloc(h->v, cap * sizeof(*v));

		if (!v)
			return -ENOMEM;
		h->v = v;
		h->cap = cap;
	}
	for (i = h->n++; i > 0 && h->v[(i - 1) / 2].end > x.end; i = (i - 1) / 2)
		h->v[i] = h->v[(i - 1) / 2];
	h->v[i] = x;
	return 0;
}

static struct live heap_pop(struct heap *h)
{
	struct live top = h->v[0], last = h->v[--h->n];
	size_t i = 0;

	for (;;) {
		size_t child = 2 * i + 1;

		if (child >= h->n)
			break;
		if (child + 1 < h->n && h->v[child + 1].end < h->v[child].end)
			child++;
		if (!(h->v[child].end < last.end))
			break;
		h->v[i] = h->v[child];
		i = child;
	}
	if (h->n)
		h->v[i] = last;
	return top;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

void plan_stat_of(double *values, size_t n, struct plan_stat *out)
{
	double sum = 0;

	memset(out, 0, sizeof(*out));
	if (!n)
		return;
	for (size_t i = 0; i < n; i++)
		sum += values[i];
	qsort(values, n, sizeof(*values), cmp_double);
	out->mean = sum / (double)n;
	/* the smallest value with at least that share of the samples at or below it */
	out->p99 = values[(size_t)ceil(0.99 * (double)n - 1e-9) - 1];
	out->p999 = values[(size_t)ceil(0.999 * (double)n - 1e-9) - 1];
	out->max = values[n - 1];
}

static uint64_t mix64(uint64_t z)
{
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

/* One producer's stream: its own seed from the run's, the flow's and its index. */
static uint64_t producer_seed(uint64_t seed, unsigned flow, unsigned producer)
{
	return mix64(seed + 0x9e3779b97f4a7c15ull) ^
	       mix64(((uint64_t)(flow + 1) << 32) | (uint64_t)(producer + 1));
}

/* What one flow's simulation keeps: samples per simulated producer and in total. */
struct flow_samples {
	unsigned producers;          /* simulated */
	unsigned samples;            /* per producer */
	double *per_producer[NSLOT]; /* [producer * samples + g], NULL: never live */
	double *total[NSLOT];        /* [g], the simulated producers' sum */
	double *bytes;               /* [g] */
};

static void flow_samples_free(struct flow_samples *fs)
{
	for (unsigned s = 0; s < NSLOT; s++) {
		free(fs->per_producer[s]);
		free(fs->total[s]);
	}
	free(fs->bytes);
	memset(fs, 0, sizeof(*fs));
}

/* The simulated time the caller asked for, and the grid it is sampled on. */
struct grid {
	double warmup, interval, end;
	unsigned samples;
	uint64_t events_left; /* a hard stop besides the duration */
};

/* One producer's state. */
struct producer {
	struct heap frees;
	double *window_ring; /* the allocation times of its last `window` messages */
	uint64_t live[NSLOT];
	double live_bytes;
	uint64_t chunks;      /* class chunks its live blocks need (--pool-limit) */
	uint64_t large_bytes; /* its live large segments */
	unsigned next_sample;
};

static void free_one(struct producer *p, const struct live *b)
{
	p->live[b->slot]--;
	p->live_bytes -= (double)b->bytes;
	if (b->slot == PLAN_SIM_LARGE)
		p->large_bytes -= b->bytes;
	else if (p->live[b->slot] % plan_blocks_per_chunk(b->slot) == 0)
		p->chunks--;
}

/* Take the frees and samples up to time t (a sample sees the frees at its time). */
static int advance(struct producer *p, const struct grid *g, struct flow_samples *fs,
		   unsigned index, double t, uint64_t *events)
{
	for (;;) {
		double sample_t = p->next_sample < g->samples ?
					  g->warmup + g->interval * p->next_sample :
					  INFINITY;
		double free_t = p->frees.n ? p->frees.v[0].end : INFINITY;

		if (free_t <= sample_t && free_t <= t) {
			struct live b = heap_pop(&p->frees);

			free_one(p, &b);
			(*events)++;
		} else if (sample_t <= t) {
			unsigned k = p->next_sample++;

			for (unsigned s = 0; s < NSLOT; s++) {
				if (!p->live[s])
					continue;
				if (!fs->per_producer[s]) {
					fs->per_producer[s] =
						calloc((size_t)fs->producers * fs->samples,
						       sizeof(double));
					fs->total[s] = calloc(fs->samples, sizeof(double));
					if (!fs->per_producer[s] || !fs->total[s])
						return -ENOMEM;
				}
				fs->per_producer[s][(size_t)index * fs->samples + k] =
					(double)p->live[s];
				fs->total[s][k] += (double)p->live[s];
			}
			fs->bytes[k] += p->live_bytes;
		} else {
			return 0;
		}
	}
}

/* Simulate producer `index` of flow `fi`. */
static int run_producer(const struct plan_flow *f, unsigned fi, unsigned index,
			const struct plan_sim_opts *o, struct grid *g, struct flow_samples *fs,
			struct plan_sim_flow *out, uint64_t *events, double *wait_sum)
{
	double rate = f->rate / f->producers, flight = f->flight_ms / 1000, arrival, gap;
	struct producer p;
	struct plan_rng rng;
	uint64_t k = 0;
	int ret = 0;

	memset(&p, 0, sizeof(p));
	p.window_ring = malloc(f->window * sizeof(double));
	if (!p.window_ring)
		return -ENOMEM;
	plan_rng_seed(&rng, producer_seed(o->seed, fi, index));
	gap = plan_draw_gap_s(f, rate, &rng);
	/* constant senders start at a random phase: in step, they would all send at once */
	arrival = f->arrival == PLAN_ARRIVAL_CONSTANT ? gap * plan_rng_uniform(&rng) : gap;
	while (*events < g->events_left) {
		double start = arrival, end;
		uint64_t size, bytes;
		unsigned slot;

		if (k >= f->window && p.window_ring[k % f->window] + flight > start)
			start = p.window_ring[k % f->window] + flight;
		if (!(start < g->end))
			break;
		ret = advance(&p, g, fs, index, start, events);
		if (ret)
			break;
		size = plan_draw_size(f, &rng);
		slot = plan_class_of(size);
		bytes = slot == PLAN_SIM_LARGE ? plan_large_segment(size) : plan_class_size(slot);
		end = start + flight + plan_draw_hold_s(f, &rng);
		ret = heap_push(&p.frees,
				(struct live){ .end = end, .bytes = bytes, .slot = slot });
		if (ret)
			break;
		(*events)++;
		p.live[slot]++;
		p.live_bytes += (double)bytes;
		if (slot == PLAN_SIM_LARGE)
			p.large_bytes += bytes;
		else if (p.live[slot] % plan_blocks_per_chunk(slot) == 1 ||
			 plan_blocks_per_chunk(slot) == 1)
			p.chunks++;
		if (o->pool_limit && !out->exhausted) {
			uint64_t need = plan_pool_bytes(p.chunks, p.large_bytes);

			if (need > o->pool_limit) {
				out->exhausted = 1;
				out->exhaust_class = slot;
				out->exhaust_time_s = start;
				out->exhaust_producer = index;
				out->exhaust_need = need;
			}
		}
		if (start >= g->warmup) {
			out->messages++;
			*wait_sum += start - arrival;
		}
		p.window_ring[k % f->window] = start;
		k++;
		arrival += plan_draw_gap_s(f, rate, &rng);
	}
	if (!ret)
		ret = advance(&p, g, fs, index, g->end, events);
	free(p.frees.v);
	free(p.window_ring);
	return ret;
}

/* The longest a flow's block lives, for the warm-up: flight and a far tail of the hold. */
static double life_of(const struct plan_flow *f)
{
	double hold = f->hold_p99_ms > f->hold_mean_ms ? 3 * f->hold_p99_ms : f->hold_mean_ms;

	return (f->flight_ms + hold) / 1000;
}

static int sum_into(double **dst, const double *src, unsigned n)
{
	if (!*dst) {
		*dst = calloc(n, sizeof(double));
		if (!*dst)
			return -ENOMEM;
	}
	for (unsigned i = 0; i < n; i++)
		(*dst)[i] += src[i];
	return 0;
}

/*
 * Statistics of one flow from its samples; its totals rescaled to all its
 * producers when fewer were simulated, then added to the workload's.
 */
static int flow_stats(const struct plan_flow *f, struct flow_samples *fs, struct plan_sim_flow *out,
		      double *wl_total[NSLOT], double *wl_bytes, double *node_blocks,
		      double *node_bytes, double *scratch)
{
	unsigned n = fs->samples, k = fs->producers;
	double scale = sqrt((double)f->producers / k);
	int ret;

	for (unsigned s = 0; s <= NSLOT; s++) {
		double *total = s < NSLOT ? fs->total[s] : fs->bytes, mean = 0;

		if (!total)
			continue;
		for (unsigned i = 0; i < n; i++)
			mean += total[i];
		mean /= n * (double)k; /* one producer's */
		if (k < f->producers)
			for (unsigned i = 0; i < n; i++)
				total[i] = f->producers * mean + (total[i] - k * mean) * scale;
		if (s < NSLOT) {
			ret = sum_into(&wl_total[s], total, n);
			if (ret)
				return ret;
			for (unsigned i = 0; i < n; i++)
				node_blocks[i] += total[i];
		} else {
			for (unsigned i = 0; i < n; i++) {
				wl_bytes[i] += total[i];
				node_bytes[i] += total[i];
			}
		}
		memcpy(scratch, total, n * sizeof(double));
		plan_stat_of(scratch, n, s < NSLOT ? &out->blocks[s] : &out->bytes);
		if (s < NSLOT) {
			/* one producer's pool: all simulated producers' samples together */
			size_t m = (size_t)n * k;

			memcpy(scratch, fs->per_producer[s], m * sizeof(double));
			plan_stat_of(scratch, m, &out->blocks_per_producer[s]);
		}
	}
	return 0;
}

int plan_sim_run(const struct plan_workload *wl, const struct plan_sim_opts *o,
		 struct plan_sim_result *r)
{
	uint64_t max_events = o->max_events ? o->max_events : PLAN_SIM_DEFAULT_EVENTS;
	double *wl_total[NSLOT] = { 0 }, *scratch = NULL, *node_blocks = NULL, *node_bytes = NULL;
	double sim_rate = 0, target, allowed;
	struct flow_samples fs;
	struct grid g;
	unsigned n = PLAN_SIM_SAMPLES;
	int ret = 0;

	memset(r, 0, sizeof(*r));
	memset(&fs, 0, sizeof(fs));
	if (max_events > PLAN_SIM_MAX_EVENTS || !(o->duration_s >= 0) || o->duration_s > 1e9)
		return -EINVAL;
	r->seed = o->seed;
	r->nflows = wl->nflows;
	r->samples = n;
	/* the warm-up: the longest a block lives; the duration: the events it may take */
	for (unsigned i = 0; i < wl->nflows; i++) {
		const struct plan_flow *f = &wl->flows[i];
		unsigned k = f->producers < PLAN_SIM_MAX_PRODUCERS ? f->producers :
								     PLAN_SIM_MAX_PRODUCERS;
		double rate = f->rate / f->producers;

		if (f->flight_ms > 0 && rate > f->window / (f->flight_ms / 1000))
			rate = f->window / (f->flight_ms / 1000);
		sim_rate += k * rate;
		if (life_of(f) > r->longest_life_s)
			r->longest_life_s = life_of(f);
	}
	r->warmup_s = r->longest_life_s > 1e-3 ? r->longest_life_s : 1e-3;
	target = o->duration_s > 0 ? o->duration_s :
				     (200 * r->warmup_s > 10 ? 200 * r->warmup_s : 10);
	/* an allocation and a free a message */
	allowed = (double)max_events / 2 / sim_rate;
	if (r->warmup_s + target > allowed) {
		r->event_capped = 1;
		if (allowed < 2 * r->warmup_s) {
			r->warmup_s = allowed / 2;
			r->short_warmup = 1;
		}
		target = allowed - r->warmup_s;
	}
	r->simulated_s = target;
	r->sample_interval_s = target / n;
	g = (struct grid){ .warmup = r->warmup_s,
			   .interval = r->sample_interval_s,
			   .end = r->warmup_s + target,
			   .samples = n,
			   .events_left = 2 * max_events };

	r->series_blocks = calloc(n, sizeof(double));
	r->series_bytes = calloc(n, sizeof(double));
	node_blocks = calloc((size_t)wl->nflows * n, sizeof(double));
	node_bytes = calloc((size_t)wl->nflows * n, sizeof(double));
	scratch = malloc((size_t)n * PLAN_SIM_MAX_PRODUCERS * sizeof(double));
	if (!r->series_blocks || !r->series_bytes || !node_blocks || !node_bytes || !scratch) {
		ret = -ENOMEM;
		goto out;
	}
	for (unsigned i = 0; i < wl->nflows && !ret; i++) {
		const struct plan_flow *f = &wl->flows[i];
		struct plan_sim_flow *out = &r->flows[i];
		double wait_sum = 0;
		unsigned node;

		/* flows of one node share its rows, in the order nodes are first seen */
		for (node = 0; node < r->nnodes && r->nodes[node].node != f->producer_node; node++)
			;
		if (node == r->nnodes)
			r->nodes[r->nnodes++].node = f->producer_node;
		fs.producers = f->producers < PLAN_SIM_MAX_PRODUCERS ? f->producers :
								       PLAN_SIM_MAX_PRODUCERS;
		fs.samples = n;
		fs.bytes = calloc(n, sizeof(double));
		if (!fs.bytes) {
			ret = -ENOMEM;
			break;
		}
		out->producers_simulated = fs.producers;
		out->offered_rate = f->rate;
		out->window_saturated = f->flight_ms > 0 &&
					f->rate / f->producers * f->flight_ms / 1000 > f->window;
		for (unsigned p = 0; p < fs.producers && !ret; p++)
			ret = run_producer(f, i, p, o, &g, &fs, out, &r->events, &wait_sum);
		if (!ret)
			ret = flow_stats(f, &fs, out, wl_total, r->series_bytes,
					 node_blocks + (size_t)node * n,
					 node_bytes + (size_t)node * n, scratch);
		if (out->messages)
			out->window_wait_mean_s = wait_sum / (double)out->messages;
		out->achieved_rate = (double)out->messages / target * f->producers / fs.producers;
		flow_samples_free(&fs);
	}
	if (ret)
		goto out;
	if (r->events >= g.events_left)
		r->event_capped = 1;
	if (r->warmup_s < r->longest_life_s)
		r->short_warmup = 1;
	for (unsigned s = 0; s < NSLOT; s++) {
		if (!wl_total[s])
			continue;
		for (unsigned i = 0; i < n; i++)
			r->series_blocks[i] += wl_total[s][i];
		plan_stat_of(wl_total[s], n, &r->blocks[s]);
	}
	memcpy(scratch, r->series_bytes, n * sizeof(double));
	plan_stat_of(scratch, n, &r->bytes);
	for (unsigned k = 0; k < r->nnodes; k++) {
		plan_stat_of(node_blocks + (size_t)k * n, n, &r->nodes[k].blocks);
		plan_stat_of(node_bytes + (size_t)k * n, n, &r->nodes[k].bytes);
	}
out:
	flow_samples_free(&fs);
	for (unsigned s = 0; s < NSLOT; s++)
		free(wl_total[s]);
	free(scratch);
	free(node_blocks);
	free(node_bytes);
	if (ret)
		plan_sim_free(r);
	return ret;
}

void plan_sim_free(struct plan_sim_result *r)
{
	free(r->series_blocks);
	free(r->series_bytes);
	r->series_blocks = NULL;
	r->series_bytes = NULL;
}

void plan_model_tail(const struct plan_workload *wl, const struct plan_result *mean,
		     const struct plan_sim_result *sim, struct plan_result *tail)
{
	*tail = *mean;
	for (unsigned i = 0; i < wl->nflows; i++) {
		const struct plan_sim_flow *sf = &sim->flows[i];
		double blocks[SHMRIG_POOL_NUM_CLASSES];

		for (unsigned c = 0; c < SHMRIG_POOL_NUM_CLASSES; c++)
			blocks[c] = sf->blocks_per_producer[c].p999;
		plan_size_flow(&wl->flows[i], blocks, sf->blocks_per_producer[PLAN_SIM_LARGE].p999,
			       &tail->flows[i]);
	}
	plan_total(wl, tail);
}
