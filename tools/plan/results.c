/* SPDX-License-Identifier: MIT */
/* The benchmark suite's results, and the CPU plan from them: see results.h. */
#include "results.h"

#include "model.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const kinds[PLAN_KINDS] = { "ndarray", "table", "dataset", "bytes" };
static const char *const backends[PLAN_BACKENDS] = { "pipe", "uring", "ring" };

int plan_kind_index(const char *codec)
{
	for (unsigned i = 0; i < PLAN_KINDS; i++)
		if (strcmp(codec, kinds[i]) == 0)
			return (int)i;
	return -1;
}

int plan_backend_index(const char *backend)
{
	for (unsigned i = 0; i < PLAN_BACKENDS; i++)
		if (strcmp(backend, backends[i]) == 0)
			return (int)i;
	return -1;
}

/* Seconds from a row's time and its time_unit. */
static int row_seconds(json_t *row, const char *key, double *out)
{
	json_t *t = json_object_get(row, key), *unit = json_object_get(row, "time_unit");
	const char *u = json_is_string(unit) ? json_string_value(unit) : "ns";
	double scale = strcmp(u, "ns") == 0 ? 1e-9 :
		       strcmp(u, "us") == 0 ? 1e-6 :
		       strcmp(u, "ms") == 0 ? 1e-3 :
		       strcmp(u, "s") == 0  ? 1 :
					      0;

	if (!json_is_number(t) || !scale || !(json_number_value(t) > 0) ||
	    !isfinite(json_number_value(t)))
		return -EINVAL;
	*out = json_number_value(t) * scale;
	return 0;
}

static int row_number(json_t *row, const char *key, double *out)
{
	json_t *v = json_object_get(row, key);

	if (!json_is_number(v) || !(json_number_value(v) > 0) || !isfinite(json_number_value(v)))
		return -EINVAL;
	*out = json_number_value(v);
	return 0;
}

/* A figure of one run name: the median aggregate wins over the repetitions' mean. */
struct figure {
	double median, sum;
	unsigned count;
	bool has_median;
};

static double figure_value(const struct figure *f)
{
	return f->has_median ? f->median : f->count ? f->sum / f->count : 0;
}

static void figure_add(struct figure *f, bool is_median, double v)
{
	if (is_median) {
		f->median = v;
		f->has_median = true;
	} else {
		f->sum += v;
		f->count++;
	}
}

/* The parsed rows of interest before they become curves. */
struct collect {
	struct figure encode[PLAN_KINDS][PLAN_RESULTS_MAX_SIZES],
		decode[PLAN_KINDS][PLAN_RESULTS_MAX_SIZES];
	double encode_size[PLAN_KINDS][PLAN_RESULTS_MAX_SIZES],
		decode_size[PLAN_KINDS][PLAN_RESULTS_MAX_SIZES];
	unsigned encode_n[PLAN_KINDS], decode_n[PLAN_KINDS];
	struct figure channel_rate[PLAN_BACKENDS], channel_share[PLAN_BACKENDS];
	struct figure paced[PLAN_BACKENDS];
	struct figure memcpy_bw[PLAN_RESULTS_MAX_SIZES];
	double memcpy_sizes[PLAN_RESULTS_MAX_SIZES];
	unsigned memcpy_n;
};

/* The figure of `size` in a table of sizes, added if new (NULL: the table is full). */
static struct figure *figure_of(struct figure *figs, double *sizes, unsigned *n, double size)
{
	for (unsigned i = 0; i < *n; i++)
		if (sizes[i] == size)
			return &figs[i];
	if (*n == PLAN_RESULTS_MAX_SIZES)
		return NULL;
	sizes[*n] = size;
	return &figs[(*n)++];
}

static void note_error(struct plan_cost_curve *c, json_t *row)
{
	json_t *m = json_object_get(row, "error_message");

	if (!c->errored++)
		snprintf(c->first_error, sizeof(c->first_error), "%.150s",
			 json_is_string(m) ? json_string_value(m) : "no message");
}

/* Parse "codec/<kind>/<op>/<size>" and the like; returns the fields it found. */
static int split_name(const char *name, char parts[5][32])
{
	int n = 0;
	const char *p = name;

	while (*p && n < 5) {
		const char *slash = strchr(p, '/');
		size_t len = slash ? (size_t)(slash - p) : strlen(p);

		if (len >= 32)
			return -1;
		memcpy(parts[n], p, len);
		parts[n][len] = '\0';
		n++;
		if (!slash)
			break;
		p = slash + 1;
	}
	return n;
}

static int parse_size(const char *s, double *out)
{
	char *end;
	double v = strtod(s, &end);

	if (end == s || *end || !(v >= 1) || v > 1e15)
		return -1;
	*out = v;
	return 0;
}

static int cmp_pair(const void *a, const void *b)
{
	const double *x = a, *y = b;

	return x[0] < y[0] ? -1 : x[0] > y[0];
}

static void make_curve(struct plan_cost_curve *c, const struct figure *figs, const double *sizes,
		       unsigned n)
{
	double pairs[PLAN_RESULTS_MAX_SIZES][2];
	unsigned m = 0;

	for (unsigned i = 0; i < n; i++) {
		double v = figure_value(&figs[i]);

		if (v > 0) {
			pairs[m][0] = sizes[i];
			pairs[m][1] = v;
			m++;
		}
	}
	qsort(pairs, m, sizeof(pairs[0]), cmp_pair);
	c->n = m;
	for (unsigned i = 0; i < m; i++) {
		c->size[i] = pairs[i][0];
		c->seconds[i] = pairs[i][1];
	}
}

static int parse_row(json_t *row, size_t index, struct collect *co, struct plan_results *out,
		     char *err, size_t errlen)
{
	json_t *name = json_object_get(row, "run_name"), *type = json_object_get(row, "run_type");
	json_t *agg = json_object_get(row, "aggregate_name");
	char parts[5][32];
	bool is_median, errored;
	int n;

	if (!json_is_object(row)) {
		snprintf(err, errlen, "benchmarks[%zu]: must be an object", index);
		return -EINVAL;
	}
	if (!name)
		name = json_object_get(row, "name");
	if (!json_is_string(name)) {
		snprintf(err, errlen, "benchmarks[%zu].name: must be a string", index);
		return -EINVAL;
	}
	if (json_is_string(type) && strcmp(json_string_value(type), "aggregate") == 0) {
		/* medians only: means, stddevs and cvs of the same rows say nothing new */
		if (!json_is_string(agg) || strcmp(json_string_value(agg), "median") != 0)
			return 0;
		is_median = true;
	} else {
		is_median = false;
	}
	errored = json_is_true(json_object_get(row, "error_occurred"));
	n = split_name(json_string_value(name), parts);
	if (n == 4 && strcmp(parts[0], "codec") == 0 &&
	    (strcmp(parts[2], "encode") == 0 || strcmp(parts[2], "decode") == 0)) {
		int k = plan_kind_index(parts[1]);
		bool enc = parts[2][0] == 'e';
		struct figure *fig;
		double size, sec;

		if (k < 0 || parse_size(parts[3], &size))
			return 0;
		if (errored) {
			note_error(enc ? &out->encode[k] : &out->decode[k], row);
			return 0;
		}
		if (row_seconds(row, "cpu_time", &sec)) {
			snprintf(err, errlen,
				 "benchmarks[%zu] (%s): cpu_time must be a positive number "
				 "with a time_unit of ns, us, ms or s",
				 index, json_string_value(name));
			return -EINVAL;
		}
		fig = enc ? figure_of(co->encode[k], co->encode_size[k], &co->encode_n[k], size) :
			    figure_of(co->decode[k], co->decode_size[k], &co->decode_n[k], size);
		if (fig)
			figure_add(fig, is_median, sec);
	} else if (n == 3 && strcmp(parts[0], "codec") == 0 && strcmp(parts[1], "memcpy") == 0) {
		struct figure *fig;
		double size, bw;

		if (parse_size(parts[2], &size) || errored)
			return 0;
		if (row_number(row, "bytes_per_second", &bw)) {
			snprintf(err, errlen,
				 "benchmarks[%zu] (%s): bytes_per_second must be a "
				 "positive number",
				 index, json_string_value(name));
			return -EINVAL;
		}
		fig = figure_of(co->memcpy_bw, co->memcpy_sizes, &co->memcpy_n, size);
		if (fig)
			figure_add(fig, is_median, bw);
	} else if (n >= 3 && strcmp(parts[0], "channel") == 0 && strcmp(parts[2], "batch64") == 0 &&
		   (n == 3 || (n == 4 && strcmp(parts[3], "manual_time") == 0))) {
		int b = plan_backend_index(parts[1]);
		double rate, real, cpu;

		if (b < 0)
			return 0;
		if (errored) {
			out->channel_errored[b]++;
			return 0;
		}
		if (row_number(row, "items_per_second", &rate) ||
		    row_seconds(row, "real_time", &real) || row_seconds(row, "cpu_time", &cpu)) {
			snprintf(err, errlen,
				 "benchmarks[%zu] (%s): needs items_per_second, real_time "
				 "and cpu_time, positive numbers",
				 index, json_string_value(name));
			return -EINVAL;
		}
		figure_add(&co->channel_rate[b], is_median, rate);
		figure_add(&co->channel_share[b], is_median, cpu / real);
	} else if (n >= 3 && strcmp(parts[0], "channel") == 0 && strcmp(parts[2], "paced") == 0 &&
		   (n == 3 || (n == 4 && strcmp(parts[3], "manual_time") == 0))) {
		int b = plan_backend_index(parts[1]);
		double cpu_per_message;

		if (b < 0 || errored)
			return 0;
		if (row_seconds(row, "real_time", &cpu_per_message)) {
			snprintf(err, errlen,
				 "benchmarks[%zu] (%s): needs real_time, a positive number", index,
				 json_string_value(name));
			return -EINVAL;
		}
		figure_add(&co->paced[b], is_median, cpu_per_message);
	}
	return 0;
}

int plan_results_parse(const char *text, size_t len, struct plan_results *out, char *err,
		       size_t errlen)
{
	struct collect *co;
	json_error_t jerr;
	json_t *root, *rows, *ctx;
	int ret = 0;

	memset(out, 0, sizeof(*out));
	if (len > PLAN_RESULTS_MAX_BYTES) {
		snprintf(err, errlen, "file too large: %zu bytes (at most %zu)", len,
			 PLAN_RESULTS_MAX_BYTES);
		return -EFBIG;
	}
	root = json_loadb(text, len, 0, &jerr);
	if (!root) {
		snprintf(err, errlen, "not JSON: line %d: %s", jerr.line, jerr.text);
		return -EINVAL;
	}
	rows = json_object_get(root, "benchmarks");
	if (!json_is_object(root) || !json_is_array(rows)) {
		snprintf(err, errlen,
			 "not the benchmark suite's JSON: no \"benchmarks\" array (the "
			 "file scripts/run writes as results/<machine>/<stamp>.json)");
		json_decref(root);
		return -EINVAL;
	}
	ctx = json_object_get(root, "context");
	if (json_is_object(ctx)) {
		json_t *v;

		if (json_is_string(v = json_object_get(ctx, "cpu_model")))
			snprintf(out->cpu_model, sizeof(out->cpu_model), "%s",
				 json_string_value(v));
		if (json_is_string(v = json_object_get(ctx, "date")))
			snprintf(out->date, sizeof(out->date), "%s", json_string_value(v));
		if (json_is_string(v = json_object_get(ctx, "shmrig_git_rev")))
			snprintf(out->git_rev, sizeof(out->git_rev), "%s", json_string_value(v));
		v = json_object_get(ctx, "num_cpus");
		if (json_is_integer(v) && json_integer_value(v) > 0 &&
		    json_integer_value(v) <= 65536)
			out->num_cpus = (unsigned)json_integer_value(v);
	}
	co = calloc(1, sizeof(*co));
	if (!co) {
		json_decref(root);
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	for (size_t i = 0; i < json_array_size(rows) && !ret; i++)
		ret = parse_row(json_array_get(rows, i), i, co, out, err, errlen);
	if (!ret) {
		double best = 0;

		for (unsigned k = 0; k < PLAN_KINDS; k++) {
			make_curve(&out->encode[k], co->encode[k], co->encode_size[k],
				   co->encode_n[k]);
			make_curve(&out->decode[k], co->decode[k], co->decode_size[k],
				   co->decode_n[k]);
		}
		for (unsigned b = 0; b < PLAN_BACKENDS; b++) {
			out->channel_rate[b] = figure_value(&co->channel_rate[b]);
			out->channel_cpu_share[b] = figure_value(&co->channel_share[b]);
			out->paced_cpu_s[b] = figure_value(&co->paced[b]);
			if (out->channel_cpu_share[b] > 1)
				out->channel_cpu_share[b] = 1;
		}
		/* the largest copy is the one that streams from memory, not a cache */
		for (unsigned i = 0; i < co->memcpy_n; i++)
			if (co->memcpy_sizes[i] > best && figure_value(&co->memcpy_bw[i]) > 0) {
				best = co->memcpy_sizes[i];
				out->memcpy_size = best;
				out->memcpy_bandwidth = figure_value(&co->memcpy_bw[i]);
			}
	}
	free(co);
	json_decref(root);
	return ret;
}

int plan_results_load(const char *path, struct plan_results *out, char *err, size_t errlen)
{
	char *text, sub[512];
	size_t len;
	int ret = plan_read_file(path, PLAN_RESULTS_MAX_BYTES, &text, &len, err, errlen);

	if (ret)
		return ret;
	ret = plan_results_parse(text, len, out, sub, sizeof(sub));
	if (ret)
		snprintf(err, errlen, "%s: %s", path, sub);
	free(text);
	return ret;
}

static void append(char *err, size_t errlen, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* Another missing piece, after the ones err already names. */
static void append(char *err, size_t errlen, const char *fmt, ...)
{
	size_t used = strlen(err);
	va_list ap;

	if (used + 3 >= errlen)
		return;
	if (used) {
		snprintf(err + used, errlen - used, "; ");
		used += 2;
	}
	va_start(ap, fmt);
	vsnprintf(err + used, errlen - used, fmt, ap);
	va_end(ap);
}

static void check_curve(const struct plan_cost_curve *c, const char *kind, const char *op,
			char *err, size_t errlen)
{
	if (c->n)
		return;
	if (c->errored)
		append(err, errlen, "codec/%s/%s/<size>: all %u rows errored ('%s')", kind, op,
		       c->errored, c->first_error);
	else
		append(err, errlen, "codec/%s/%s/<size>: no rows", kind, op);
}

int plan_results_check(const struct plan_results *r, const struct plan_workload *wl, char *err,
		       size_t errlen)
{
	bool kind_needed[PLAN_KINDS] = { false }, backend_needed[PLAN_BACKENDS] = { false };

	err[0] = '\0';
	for (unsigned i = 0; i < wl->nflows; i++) {
		int k = plan_kind_index(wl->flows[i].codec),
		    b = plan_backend_index(wl->flows[i].backend);

		if (k >= 0)
			kind_needed[k] = true;
		if (b >= 0)
			backend_needed[b] = true;
	}
	for (unsigned k = 0; k < PLAN_KINDS; k++) {
		if (!kind_needed[k])
			continue;
		check_curve(&r->encode[k], kinds[k], "encode", err, errlen);
		check_curve(&r->decode[k], kinds[k], "decode", err, errlen);
	}
	for (unsigned b = 0; b < PLAN_BACKENDS; b++) {
		if (!backend_needed[b] || r->channel_rate[b] > 0)
			continue;
		if (r->channel_errored[b])
			append(err, errlen, "channel/%s/batch64: all %u rows errored", backends[b],
			       r->channel_errored[b]);
		else
			append(err, errlen, "channel/%s/batch64: no rows", backends[b]);
	}
	if (!(r->memcpy_bandwidth > 0))
		append(err, errlen, "codec/memcpy/<size>: no rows");
	return err[0] ? -EINVAL : 0;
}

double plan_cost_at(const struct plan_cost_curve *c, double size)
{
	unsigned i;

	if (!c->n)
		return 0;
	if (size <= c->size[0])
		return c->seconds[0];
	if (size >= c->size[c->n - 1])
		return c->seconds[c->n - 1] * size / c->size[c->n - 1];
	for (i = 1; i < c->n && c->size[i] < size; i++)
		;
	/* log-log between the two measured sizes around it */
	return exp(log(c->seconds[i - 1]) + (log(size) - log(c->size[i - 1])) /
						    (log(c->size[i]) - log(c->size[i - 1])) *
						    (log(c->seconds[i]) - log(c->seconds[i - 1])));
}

/* The mean of g(size) over a flow's sizes; ranges log-uniform, 64 points each. */
static double size_mean(const struct plan_flow *f, const struct plan_cost_curve *c)
{
	double total = 0, sum = 0;

	for (unsigned i = 0; i < f->nsizes; i++)
		total += f->sizes[i].weight;
	for (unsigned i = 0; i < f->nsizes; i++) {
		const struct plan_size_item *it = &f->sizes[i];
		double w = it->weight / total, a = log((double)it->min), b = log((double)it->max);
		double v = 0;

		if (it->min == it->max) {
			v = c ? plan_cost_at(c, (double)it->min) : (double)it->min;
		} else {
			for (int k = 0; k < 64; k++) {
				double size = exp(a + (b - a) * (k + 0.5) / 64);

				v += (c ? plan_cost_at(c, size) : size) / 64;
			}
		}
		sum += w * v;
	}
	return sum;
}

static const char *const resource_names[PLAN_RES_COUNT] = {
	"a producer's core", "a consumer's core", "the channel",
	"the window",        "memory bandwidth",  "the machine's CPUs"
};

const char *plan_resource_name(enum plan_resource res)
{
	return res < PLAN_RES_COUNT ? resource_names[res] : "?";
}

void plan_cpu_model(const struct plan_workload *wl, const struct plan_results *r,
		    struct plan_cpu *out)
{
	memset(out, 0, sizeof(*out));
	out->nflows = wl->nflows;
	out->memory_bandwidth = r->memcpy_bandwidth;
	out->num_cpus = r->num_cpus;
	for (unsigned i = 0; i < wl->nflows; i++) {
		const struct plan_flow *f = &wl->flows[i];
		struct plan_cpu_flow *c = &out->flows[i];
		int k = plan_kind_index(f->codec), b = plan_backend_index(f->backend);
		double per_producer = f->rate / f->producers, per_consumer = f->rate / f->consumers;

		c->encode_s = k >= 0 ? size_mean(f, &r->encode[k]) : 0;
		c->decode_s = k >= 0 ? size_mean(f, &r->decode[k]) : 0;
		/* a message's share of the sender's time on a channel kept busy */
		c->transport_s = b >= 0 && r->channel_rate[b] > 0 ?
					 r->channel_cpu_share[b] / r->channel_rate[b] :
					 0;
		/* a stream's message to a peer that sleeps between messages: what it
		 * costs both sides, half a side (a busy channel's share is far less) */
		if (b >= 0 && r->paced_cpu_s[b] > 0) {
			c->transport_s = r->paced_cpu_s[b] / 2;
			c->paced = 1;
		}
		c->mean_bytes = size_mean(f, NULL);
		/* encode writes the value into the pool; bytes' decode copies it out again */
		c->copies = strcmp(f->codec, "bytes") == 0 ? 2 : 1;
		c->encode_cores = f->rate * c->encode_s;
		c->decode_cores = f->rate * c->decode_s;
		c->transport_cores = 2 * f->rate * c->transport_s; /* a send and a receive */
		c->memory_bytes_per_s = f->rate * c->mean_bytes * c->copies;
		out->memory_bytes_per_s += c->memory_bytes_per_s;
		out->machine_cores += c->encode_cores + c->decode_cores + c->transport_cores;
		c->load[PLAN_RES_PRODUCER_CORE] = per_producer * (c->encode_s + c->transport_s);
		c->load[PLAN_RES_CONSUMER_CORE] = per_consumer * (c->decode_s + c->transport_s);
		c->load[PLAN_RES_CHANNEL] =
			b >= 0 && r->channel_rate[b] > 0 ? per_producer / r->channel_rate[b] : 0;
		c->load[PLAN_RES_WINDOW] = per_producer * f->flight_ms / 1000 / f->window;
	}
	out->headroom = INFINITY;
	for (unsigned i = 0; i < wl->nflows; i++) {
		struct plan_cpu_flow *c = &out->flows[i];
		double top = 0;

		c->load[PLAN_RES_MEMORY_BANDWIDTH] =
			out->memory_bandwidth > 0 ?
				out->memory_bytes_per_s / out->memory_bandwidth :
				0;
		/* every process of every flow runs on the same CPUs */
		c->load[PLAN_RES_MACHINE] = out->num_cpus ? out->machine_cores / out->num_cpus : 0;
		c->first = PLAN_RES_PRODUCER_CORE;
		for (unsigned res = 0; res < PLAN_RES_COUNT; res++)
			if (c->load[res] > top) {
				top = c->load[res];
				c->first = (enum plan_resource)res;
			}
		c->headroom = top > 0 ? 1 / top : INFINITY;
		c->saturation_rate = wl->flows[i].rate * c->headroom;
		if (c->headroom < out->headroom) {
			out->headroom = c->headroom;
			out->first_flow = i;
		}
	}
}
