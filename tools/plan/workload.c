/* SPDX-License-Identifier: MIT */
/*
 * The workload file: see workload.h for the format. Every check names the
 * field path; the first error wins and nothing is half-filled.
 */
#include "workload.h"

#include <shmrig/options.h>

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int fail(char *err, size_t errlen, const char *path, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

static int fail(char *err, size_t errlen, const char *path, const char *fmt, ...)
{
	char msg[256];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	snprintf(err, errlen, "%s%s%s", path, *path ? ": " : "", msg);
	return -EINVAL;
}

/* Keys an object may have: anything else is a typo and an error. */
static int check_keys(json_t *obj, const char *const *allowed, char *err, size_t errlen,
		      const char *path)
{
	const char *key;
	json_t *value;

	json_object_foreach(obj, key, value)
	{
		bool known = false;

		for (const char *const *a = allowed; *a; a++)
			known = known || strcmp(key, *a) == 0;
		if (!known) {
			char list[256] = "";

			for (const char *const *a = allowed; *a; a++) {
				size_t used = strlen(list);

				snprintf(list + used, sizeof(list) - used, "%s%s",
					 a == allowed ? "" : ", ", *a);
			}
			return fail(err, errlen, path, "unknown key '%.64s' (known: %s)", key,
				    list);
		}
	}
	return 0;
}

/* A number in [min, max]; integer-only when `integer`. */
static int get_number(json_t *obj, const char *key, bool required, bool integer, double min,
		      double max, double *out, char *err, size_t errlen, const char *path)
{
	json_t *v = json_object_get(obj, key);
	char field[192];
	double x;

	snprintf(field, sizeof(field), "%s.%s", path, key);
	if (!v) {
		if (required)
			return fail(err, errlen, field, "missing (a number in [%g, %g])", min, max);
		return 0;
	}
	if (integer && !json_is_integer(v))
		return fail(err, errlen, field, "must be an integer in [%g, %g]", min, max);
	if (!json_is_number(v))
		return fail(err, errlen, field, "must be a number in [%g, %g]", min, max);
	x = json_number_value(v);
	if (!isfinite(x) || x < min || x > max)
		return fail(err, errlen, field, "%g is out of range [%g, %g]", x, min, max);
	*out = x;
	return 0;
}

static int get_choice(json_t *obj, const char *key, const char *const *choices, char *out,
		      size_t outlen, char *err, size_t errlen, const char *path)
{
	json_t *v = json_object_get(obj, key);
	char field[192], list[128] = "";

	snprintf(field, sizeof(field), "%s.%s", path, key);
	for (const char *const *c = choices; *c; c++) {
		size_t used = strlen(list);

		snprintf(list + used, sizeof(list) - used, "%s'%s'", c == choices ? "" : ", ", *c);
	}
	if (!v)
		return 0;
	if (!json_is_string(v))
		return fail(err, errlen, field, "must be a string, one of %s", list);
	for (const char *const *c = choices; *c; c++)
		if (strcmp(json_string_value(v), *c) == 0) {
			snprintf(out, outlen, "%s", *c);
			return 0;
		}
	return fail(err, errlen, field, "'%.64s' is not one of %s", json_string_value(v), list);
}

static int get_name(json_t *obj, char *out, char *err, size_t errlen, const char *path)
{
	json_t *v = json_object_get(obj, "name");
	char field[192];

	snprintf(field, sizeof(field), "%s%sname", path, *path ? "." : "");
	if (!v)
		return 0;
	if (!json_is_string(v) || json_string_length(v) == 0 ||
	    json_string_length(v) >= PLAN_MAX_NAME)
		return fail(err, errlen, field, "must be a string of 1 to %u characters",
			    PLAN_MAX_NAME - 1);
	for (const char *c = json_string_value(v); *c; c++)
		if ((unsigned char)*c < 0x20)
			return fail(err, errlen, field, "must not hold control characters");
	snprintf(out, PLAN_MAX_NAME, "%s", json_string_value(v));
	return 0;
}

int plan_parse_size_spec(const char *spec, struct plan_size_item *items, unsigned max_items,
			 char *err, size_t errlen)
{
	unsigned n = 0, index = 0;
	const char *p = spec;

	if (!*spec)
		return fail(err, errlen, "",
			    "empty (expected weight:min-max[,...], e.g. 90:64-4K)");
	while (*p) {
		const char *end = strchr(p, ',');
		size_t len = end ? (size_t)(end - p) : strlen(p);
		char item[64], *colon, *dash, *num_end;
		struct plan_size_item it;
		size_t min, max;

		index++;
		if (len == 0 || len >= sizeof(item))
			return fail(err, errlen, "", "item %u: %s", index,
				    len ? "too long" : "empty (two commas, or a trailing one)");
		memcpy(item, p, len);
		item[len] = '\0';
		if (n == max_items)
			return fail(err, errlen, "", "more than %u items", max_items);
		colon = strchr(item, ':');
		dash = colon ? strchr(colon, '-') : NULL;
		if (!colon || !dash)
			return fail(err, errlen, "", "item %u ('%s'): not weight:min-max", index,
				    item);
		*colon = *dash = '\0';
		it.weight = strtod(item, &num_end);
		if (num_end == item || *num_end || !isfinite(it.weight) || !(it.weight > 0) ||
		    it.weight > 1e9)
			return fail(err, errlen, "",
				    "item %u: weight '%s' is not a number in (0, 1e9]", index,
				    item);
		if (shmrig_parse_size(colon + 1, &min) || shmrig_parse_size(dash + 1, &max))
			return fail(err, errlen, "",
				    "item %u: '%s-%s' is not min-max (sizes: digits, then K, M or G)",
				    index, colon + 1, dash + 1);
		if (min == 0 || min > max || max > PLAN_MAX_VALUE_BYTES)
			return fail(err, errlen, "",
				    "item %u: need 1 <= min <= max <= 64G, got %zu-%zu", index, min,
				    max);
		it.min = min;
		it.max = max;
		items[n++] = it;
		if (!end)
			break;
		p = end + 1;
		if (!*p)
			return fail(err, errlen, "", "item %u: empty (a trailing comma)",
				    index + 1);
	}
	return (int)n;
}

static int parse_sizes(json_t *flow, struct plan_flow *f, char *err, size_t errlen,
		       const char *path)
{
	json_t *v = json_object_get(flow, "sizes");
	char field[192];
	size_t i;
	json_t *bin;

	snprintf(field, sizeof(field), "%s.sizes", path);
	if (!v)
		return fail(
			err, errlen, field,
			"missing (a histogram [[bytes, weight], ...] or ranges \"weight:min-max,...\")");
	if (json_is_string(v)) {
		char sub[256];
		int n = plan_parse_size_spec(json_string_value(v), f->sizes, PLAN_MAX_SIZE_ITEMS,
					     sub, sizeof(sub));

		if (n < 0)
			return fail(err, errlen, field, "%s", sub);
		f->nsizes = (unsigned)n;
		return 0;
	}
	if (!json_is_array(v))
		return fail(
			err, errlen, field,
			"must be a histogram [[bytes, weight], ...] or a string \"weight:min-max,...\"");
	if (json_array_size(v) == 0)
		return fail(err, errlen, field, "empty histogram");
	if (json_array_size(v) > PLAN_MAX_SIZE_ITEMS)
		return fail(err, errlen, field, "more than %u bins", PLAN_MAX_SIZE_ITEMS);
	json_array_foreach(v, i, bin)
	{
		char binpath[224];
		json_t *bytes, *weight;
		double w;

		snprintf(binpath, sizeof(binpath), "%s[%zu]", field, i);
		if (!json_is_array(bin) || json_array_size(bin) != 2)
			return fail(err, errlen, binpath, "must be [bytes, weight]");
		bytes = json_array_get(bin, 0);
		weight = json_array_get(bin, 1);
		if (!json_is_integer(bytes) || json_integer_value(bytes) < 1 ||
		    (uint64_t)json_integer_value(bytes) > PLAN_MAX_VALUE_BYTES)
			return fail(err, errlen, binpath,
				    "bytes must be an integer in [1, %" PRIu64 "]",
				    PLAN_MAX_VALUE_BYTES);
		if (!json_is_number(weight))
			return fail(err, errlen, binpath, "weight must be a number in (0, 1e9]");
		w = json_number_value(weight);
		if (!isfinite(w) || !(w > 0) || w > 1e9)
			return fail(err, errlen, binpath, "weight %g is out of range (0, 1e9]", w);
		f->sizes[i].weight = w;
		f->sizes[i].min = f->sizes[i].max = (uint64_t)json_integer_value(bytes);
	}
	f->nsizes = (unsigned)json_array_size(v);
	return 0;
}

static int parse_hold(json_t *flow, struct plan_flow *f, char *err, size_t errlen, const char *path)
{
	static const char *const keys[] = { "mean_ms", "p99_ms", NULL };
	json_t *v = json_object_get(flow, "hold");
	char field[192];
	double mean = 0, p99 = -1;
	int ret;

	snprintf(field, sizeof(field), "%s.hold", path);
	if (!v)
		return 0;
	if (json_is_number(v)) {
		mean = json_number_value(v);
		if (!isfinite(mean) || mean < 0 || mean > 3.6e6)
			return fail(err, errlen, field, "%g ms is out of range [0, 3.6e6]", mean);
		f->hold_mean_ms = f->hold_p99_ms = mean;
		return 0;
	}
	if (!json_is_object(v))
		return fail(err, errlen, field,
			    "must be milliseconds (a constant) or {\"mean_ms\": .., \"p99_ms\": ..}");
	ret = check_keys(v, keys, err, errlen, field);
	if (!ret)
		ret = get_number(v, "mean_ms", true, false, 0, 3.6e6, &mean, err, errlen, field);
	if (!ret)
		ret = get_number(v, "p99_ms", false, false, 0, 3.6e7, &p99, err, errlen, field);
	if (ret)
		return ret;
	if (p99 < 0)
		p99 = mean;
	if (p99 < mean)
		return fail(err, errlen, field, "p99_ms %g is below mean_ms %g", p99, mean);
	f->hold_mean_ms = mean;
	f->hold_p99_ms = p99;
	return 0;
}

static int parse_numa(json_t *flow, struct plan_flow *f, char *err, size_t errlen, const char *path)
{
	static const char *const keys[] = { "producer", "consumer", NULL };
	json_t *v = json_object_get(flow, "numa");
	char field[192];
	double producer = 0, consumer = 0;
	int ret;

	snprintf(field, sizeof(field), "%s.numa", path);
	if (!v)
		return 0;
	if (!json_is_object(v))
		return fail(err, errlen, field, "must be {\"producer\": NODE, \"consumer\": NODE}");
	ret = check_keys(v, keys, err, errlen, field);
	if (!ret)
		ret = get_number(v, "producer", false, true, 0, 1023, &producer, err, errlen,
				 field);
	if (!ret)
		ret = get_number(v, "consumer", false, true, 0, 1023, &consumer, err, errlen,
				 field);
	f->producer_node = (int)producer;
	f->consumer_node = (int)consumer;
	return ret;
}

static int parse_flow(json_t *flow, struct plan_flow *f, char *err, size_t errlen, const char *path)
{
	static const char *const keys[] = { "name",    "producers", "consumers", "rate",
					    "arrival", "sizes",     "codec",     "hold",
					    "window",  "flight_ms", "backend",   "numa",
					    NULL };
	static const char *const arrivals[] = { "poisson", "constant", NULL };
	static const char *const codecs[] = { "bytes", "ndarray", "table", "dataset", NULL };
	static const char *const backends[] = { "ring", "pipe", "uring", NULL };
	double producers = 1, consumers = 1, window = 8;
	char arrival[16] = "poisson";
	int ret;

	if (!json_is_object(flow))
		return fail(err, errlen, path, "must be an object");
	memset(f, 0, sizeof(*f));
	snprintf(f->codec, sizeof(f->codec), "bytes");
	snprintf(f->backend, sizeof(f->backend), "ring");
	ret = check_keys(flow, keys, err, errlen, path);
	if (!ret)
		ret = get_name(flow, f->name, err, errlen, path);
	if (!ret)
		ret = get_number(flow, "producers", false, true, 1, 4096, &producers, err, errlen,
				 path);
	if (!ret)
		ret = get_number(flow, "consumers", false, true, 1, 4096, &consumers, err, errlen,
				 path);
	if (!ret)
		ret = get_number(flow, "rate", true, false, 1e-6, 1e9, &f->rate, err, errlen, path);
	if (!ret)
		ret = get_choice(flow, "arrival", arrivals, arrival, sizeof(arrival), err, errlen,
				 path);
	if (!ret)
		ret = parse_sizes(flow, f, err, errlen, path);
	if (!ret)
		ret = get_choice(flow, "codec", codecs, f->codec, sizeof(f->codec), err, errlen,
				 path);
	if (!ret)
		ret = parse_hold(flow, f, err, errlen, path);
	if (!ret)
		ret = get_number(flow, "window", false, true, 1, 65536, &window, err, errlen, path);
	if (!ret)
		ret = get_number(flow, "flight_ms", false, false, 0, 60000, &f->flight_ms, err,
				 errlen, path);
	if (!ret)
		ret = get_choice(flow, "backend", backends, f->backend, sizeof(f->backend), err,
				 errlen, path);
	if (!ret)
		ret = parse_numa(flow, f, err, errlen, path);
	if (ret)
		return ret;
	f->producers = (unsigned)producers;
	f->consumers = (unsigned)consumers;
	f->window = (unsigned)window;
	f->arrival = strcmp(arrival, "constant") == 0 ? PLAN_ARRIVAL_CONSTANT :
							PLAN_ARRIVAL_POISSON;
	return 0;
}

int plan_workload_parse(const char *text, size_t len, struct plan_workload *wl, char *err,
			size_t errlen)
{
	static const char *const keys[] = { "name", "flows", NULL };
	struct plan_workload *out;
	json_error_t jerr;
	json_t *root, *flows, *flow;
	size_t i;
	int ret = 0;

	if (len == 0)
		return fail(err, errlen, "", "empty file (expected a JSON object with \"flows\")");
	if (len > PLAN_MAX_FILE_BYTES) {
		snprintf(err, errlen, "file too large: %zu bytes (a workload is at most %zu)", len,
			 PLAN_MAX_FILE_BYTES);
		return -EFBIG;
	}
	root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
	if (!root)
		return fail(err, errlen, "", "not JSON: line %d, column %d: %s", jerr.line,
			    jerr.column, jerr.text);
	out = calloc(1, sizeof(*out));
	if (!out) {
		json_decref(root);
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	if (!json_is_object(root)) {
		ret = fail(err, errlen, "", "the top level must be an object with \"flows\"");
		goto done;
	}
	ret = check_keys(root, keys, err, errlen, "(top level)");
	if (!ret)
		ret = get_name(root, out->name, err, errlen, "");
	if (ret)
		goto done;
	flows = json_object_get(root, "flows");
	if (!flows) {
		ret = fail(err, errlen, "flows", "missing (an array of flows)");
		goto done;
	}
	if (!json_is_array(flows) || json_array_size(flows) == 0 ||
	    json_array_size(flows) > PLAN_MAX_FLOWS) {
		ret = fail(err, errlen, "flows", "must be an array of 1 to %u flows",
			   PLAN_MAX_FLOWS);
		goto done;
	}
	json_array_foreach(flows, i, flow)
	{
		char path[32];

		snprintf(path, sizeof(path), "flows[%zu]", i);
		ret = parse_flow(flow, &out->flows[i], err, errlen, path);
		if (ret)
			goto done;
		if (!out->flows[i].name[0])
			snprintf(out->flows[i].name, PLAN_MAX_NAME, "flow%zu", i);
	}
	out->nflows = (unsigned)json_array_size(flows);
	if (!out->name[0])
		snprintf(out->name, PLAN_MAX_NAME, "workload");
	*wl = *out;
done:
	free(out);
	json_decref(root);
	return ret;
}

int plan_read_file(const char *path, size_t max, char **text_out, size_t *len_out, char *err,
		   size_t errlen)
{
	struct stat st;
	char *text;
	ssize_t got;
	size_t len = 0, cap;
	int fd, ret;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		ret = -errno;
		snprintf(err, errlen, "%s: %s", path, strerror(-ret));
		return ret;
	}
	if (fstat(fd, &st) || !S_ISREG(st.st_mode)) {
		close(fd);
		snprintf(err, errlen, "%s: not a regular file", path);
		return -EINVAL;
	}
	if ((uint64_t)st.st_size > max) {
		close(fd);
		snprintf(err, errlen, "%s: file too large (%lld bytes; at most %zu)", path,
			 (long long)st.st_size, max);
		return -EFBIG;
	}
	/* what fstat said and one byte more: a file that grew is refused, never held */
	cap = (size_t)st.st_size + 1;
	text = malloc(cap + 1);
	if (!text) {
		close(fd);
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	while (len < cap && (got = read(fd, text + len, cap - len)) != 0) {
		if (got < 0) {
			ret = -errno;
			free(text);
			close(fd);
			snprintf(err, errlen, "%s: %s", path, strerror(-ret));
			return ret;
		}
		len += (size_t)got;
	}
	close(fd);
	if (len > max || len == cap) {
		free(text);
		snprintf(err, errlen, "%s: file too large or growing (at most %zu bytes)", path,
			 max);
		return -EFBIG;
	}
	text[len] = '\0';
	*text_out = text;
	*len_out = len;
	return 0;
}

int plan_workload_load(const char *path, struct plan_workload *wl, char *err, size_t errlen)
{
	char *text;
	size_t len;
	int ret = plan_read_file(path, PLAN_MAX_FILE_BYTES, &text, &len, err, errlen);

	if (ret)
		return ret;
	{
		char sub[512];

		ret = plan_workload_parse(text, len, wl, sub, sizeof(sub));
		if (ret)
			snprintf(err, errlen, "%s: %s", path, sub);
	}
	free(text);
	return ret;
}
