/* SPDX-License-Identifier: MIT */
/*
 * Reports: the line per check, the JSON report (--json), JUnit XML (--junit)
 * and the Google Benchmark JSON of the Throughput figures (--bench-json).
 *
 * Messages come from codecs (their errors, their names): in XML every byte
 * that is not valid UTF-8, or a character XML 1.0 does not allow, is written
 * as the text \xNN, and markup characters as entities, so that a CI server's
 * parser takes the file whatever a plugin said.
 */
#include "validate.h"

#include <errno.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#ifndef SHMRIG_VALIDATE_VERSION
#define SHMRIG_VALIDATE_VERSION "unknown"
#define SHMRIG_VALIDATE_BUILDTYPE "unknown"
#define SHMRIG_VALIDATE_DEBUG_CHECKS "unknown"
#define SHMRIG_VALIDATE_SANITIZE "unknown"
#define SHMRIG_VALIDATE_C_COMPILER "unknown"
#endif

const char *val_verdict_name(enum val_verdict verdict)
{
	static const char *const names[] = { "pass", "fail", "skip", "xfail" };

	return names[verdict];
}

/* ---- lines ---- */

void val_report_line(FILE *out, const struct val_result *r)
{
	static const char *const words[] = { "PASS", "FAIL", "SKIP", "XFAIL" };

	fprintf(out, "%s %s [%s]", words[r->verdict], r->check->name, r->codec);
	if (r->check->run && r->verdict != VAL_SKIP && r->verdict != VAL_XFAIL)
		fprintf(out, " (%u value%s, %.2f s)", r->values, r->values == 1 ? "" : "s",
			r->seconds);
	if (r->verdict == VAL_XFAIL)
		fprintf(out, ": %s",
			r->known_reason && r->known_reason[0] ? r->known_reason :
								"listed in the known failures");
	else if (r->message[0])
		fprintf(out, ": %s", r->message);
	fputc('\n', out);
}

/* ---- JSON ---- */

static int write_json(const char *path, json_t *doc, char *err, size_t err_len)
{
	int ret = json_dump_file(doc, path, JSON_INDENT(1) | JSON_ENSURE_ASCII);

	json_decref(doc);
	if (ret) {
		snprintf(err, err_len, "%s: cannot write: %s", path, strerror(errno));
		return -EIO;
	}
	return 0;
}

static void count(const struct val_result *results, size_t n, int counts[4])
{
	memset(counts, 0, 4 * sizeof(int));
	for (size_t i = 0; i < n; i++)
		counts[results[i].verdict]++;
}

int val_report_json(const char *path, const struct val_report_info *info,
		    const struct val_result *results, size_t n, char *err, size_t err_len)
{
	json_t *doc, *list = json_array();
	int counts[4];

	count(results, n, counts);
	for (size_t i = 0; list && i < n; i++) {
		const struct val_result *r = &results[i];
		json_t *known = r->known_reason ? json_pack("{s:s, s:i}", "reason", r->known_reason,
							    "line", r->known_line) :
						  json_null();

		json_array_append_new(list,
				      json_pack("{s:s, s:s, s:s, s:s, s:s, s:i, s:f, s:o, s:b}",
						"check", r->check->name, "codec", r->codec, "level",
						val_level_name(r->check->level), "status",
						val_verdict_name(r->verdict), "message", r->message,
						"values", (int)r->values, "seconds", r->seconds,
						"known_failure", known, "unexpected_pass",
						r->unexpected_pass));
	}
	doc = json_pack("{s:s, s:s, s:s, s:s?, s:I, s:i, s:I, s:f, s:s, s:s?, s:o, "
			"s:{s:i, s:i, s:i, s:i, s:i}, s:f}",
			"schema", "shmrig-validate/1", "version", SHMRIG_VALIDATE_VERSION,
			"subject", info->subject, "plugin", info->plugin, "seed",
			(json_int_t)info->opt->seed, "values", (int)info->opt->values, "max_bytes",
			(json_int_t)info->opt->max_bytes, "timeout_s", info->opt->timeout_s,
			"level", info->level, "check", info->check_regex, "results", list,
			"summary", "passed", counts[VAL_PASS], "failed", counts[VAL_FAIL],
			"skipped", counts[VAL_SKIP], "expected_failures", counts[VAL_XFAIL],
			"total", (int)n, "seconds", info->seconds);
	if (!doc) {
		snprintf(err, err_len, "%s: out of memory", path);
		return -ENOMEM;
	}
	return write_json(path, doc, err, err_len);
}

/* ---- JUnit XML ---- */

/* Length of the valid UTF-8 sequence at s (at most len bytes), 0 if invalid. */
static size_t utf8_len(const unsigned char *s, size_t len, uint32_t *cp)
{
	size_t n;

	if (s[0] < 0x80) {
		*cp = s[0];
		return 1;
	}
	if (s[0] >= 0xc2 && s[0] <= 0xdf)
		n = 2, *cp = s[0] & 0x1f;
	else if (s[0] >= 0xe0 && s[0] <= 0xef)
		n = 3, *cp = s[0] & 0x0f;
	else if (s[0] >= 0xf0 && s[0] <= 0xf4)
		n = 4, *cp = s[0] & 0x07;
	else
		return 0;
	if (n > len)
		return 0;
	for (size_t i = 1; i < n; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		*cp = (*cp << 6) | (s[i] & 0x3f);
	}
	if ((n == 3 && *cp < 0x800) || (n == 4 && *cp < 0x10000) || *cp > 0x10ffff ||
	    (*cp >= 0xd800 && *cp <= 0xdfff))
		return 0;
	return n;
}

/* Text for an attribute or an element: XML 1.0 characters only, markup as entities. */
static void xml_text(FILE *out, const char *text)
{
	const unsigned char *s = (const unsigned char *)text;
	size_t len = strlen(text);

	while (len) {
		uint32_t cp;
		size_t n = utf8_len(s, len, &cp);

		if (n == 0 || (cp < 0x20 && cp != '\t' && cp != '\n' && cp != '\r') ||
		    cp == 0xfffe || cp == 0xffff) {
			fprintf(out, "\\x%02x", s[0]); /* not XML: its byte, as text */
			n = 1;
		} else if (cp == '&') {
			fputs("&amp;", out);
		} else if (cp == '<') {
			fputs("&lt;", out);
		} else if (cp == '>') {
			fputs("&gt;", out);
		} else if (cp == '"') {
			fputs("&quot;", out);
		} else if (cp == '\'') {
			fputs("&apos;", out);
		} else if (cp == '\n' || cp == '\r' || cp == '\t') {
			fprintf(out, "&#%u;", cp); /* kept in attributes too */
		} else {
			fwrite(s, 1, n, out);
		}
		s += n;
		len -= n;
	}
}

static void xml_attr(FILE *out, const char *name, const char *value)
{
	fprintf(out, " %s=\"", name);
	xml_text(out, value);
	fputc('"', out);
}

int val_report_junit(const char *path, const struct val_report_info *info,
		     const struct val_result *results, size_t n, char *err, size_t err_len)
{
	FILE *out = fopen(path, "w");
	char host[256] = "", stamp[32] = "", number[64], name[512];
	time_t now = time(NULL);
	struct tm tm;
	int counts[4];

	if (!out) {
		snprintf(err, err_len, "%s: cannot write: %s", path, strerror(errno));
		return -errno;
	}
	count(results, n, counts);
	gethostname(host, sizeof(host) - 1);
	if (gmtime_r(&now, &tm))
		strftime(stamp, sizeof(stamp), "%Y-%m-%dT%H:%M:%S", &tm);
	fputs("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites", out);
	xml_attr(out, "name", "shmrig-validate");
	/* expected failures count as skipped: JUnit has no word for them */
	fprintf(out, " tests=\"%zu\" failures=\"%d\" errors=\"0\" skipped=\"%d\" time=\"%.3f\">\n",
		n, counts[VAL_FAIL], counts[VAL_SKIP] + counts[VAL_XFAIL], info->seconds);
	fputs("  <testsuite", out);
	snprintf(name, sizeof(name), "shmrig-validate: %s", info->subject);
	xml_attr(out, "name", name);
	fprintf(out, " tests=\"%zu\" failures=\"%d\" errors=\"0\" skipped=\"%d\" time=\"%.3f\"", n,
		counts[VAL_FAIL], counts[VAL_SKIP] + counts[VAL_XFAIL], info->seconds);
	xml_attr(out, "timestamp", stamp);
	xml_attr(out, "hostname", host);
	fputs(">\n    <properties>\n", out);
	snprintf(number, sizeof(number), "%llu", (unsigned long long)info->opt->seed);
	fputs("      <property", out);
	xml_attr(out, "name", "seed");
	xml_attr(out, "value", number);
	fputs("/>\n      <property", out);
	snprintf(number, sizeof(number), "%u", info->opt->values);
	xml_attr(out, "name", "values");
	xml_attr(out, "value", number);
	fputs("/>\n      <property", out);
	xml_attr(out, "name", "level");
	xml_attr(out, "value", info->level);
	fputs("/>\n      <property", out);
	snprintf(name, sizeof(name), "%d", counts[VAL_XFAIL]);
	xml_attr(out, "name", "expected_failures");
	xml_attr(out, "value", name);
	fputs("/>\n    </properties>\n", out);
	for (size_t i = 0; i < n; i++) {
		const struct val_result *r = &results[i];

		fputs("    <testcase", out);
		snprintf(name, sizeof(name), "shmrig-validate.%s", r->codec);
		xml_attr(out, "classname", name);
		xml_attr(out, "name", r->check->name);
		fprintf(out, " time=\"%.3f\"", r->seconds);
		if (r->verdict == VAL_PASS) {
			fputs("/>\n", out);
			continue;
		}
		fputs(">\n      ", out);
		if (r->verdict == VAL_FAIL) {
			fputs("<failure", out);
			xml_attr(out, "type", r->unexpected_pass ? "UNEXPECTED PASS" : "FAIL");
			xml_attr(out, "message", r->message);
			fputc('>', out);
			xml_text(out, r->message);
			fputs("</failure>\n", out);
		} else {
			fputs("<skipped", out);
			if (r->verdict == VAL_XFAIL) {
				snprintf(name, sizeof(name), "expected failure: %s",
					 r->known_reason && r->known_reason[0] ?
						 r->known_reason :
						 "listed in the known failures");
				xml_attr(out, "message", name);
				fputc('>', out);
				xml_text(out, r->message);
				fputs("</skipped>\n", out);
			} else {
				xml_attr(out, "message", r->message);
				fputs("/>\n", out);
			}
		}
		fputs("    </testcase>\n", out);
	}
	fputs("  </testsuite>\n</testsuites>\n", out);
	if (fclose(out)) {
		snprintf(err, err_len, "%s: cannot write: %s", path, strerror(errno));
		return -EIO;
	}
	return 0;
}

/* ---- Google Benchmark JSON ---- */

static long usable_cpus(void)
{
	cpu_set_t set;

	if (sched_getaffinity(0, sizeof(set), &set) == 0)
		return CPU_COUNT(&set);
	return sysconf(_SC_NPROCESSORS_ONLN);
}

/* A field of a /proc file ("model name" of cpuinfo, "HugePages_Free" of meminfo), or "unknown". */
static void proc_field(const char *path, const char *field, char *buf, size_t len)
{
	FILE *f = fopen(path, "r");
	size_t field_len = strlen(field);
	char line[512];

	snprintf(buf, len, "unknown");
	while (f && fgets(line, sizeof(line), f)) {
		char *colon = strchr(line, ':');

		if (strncmp(line, field, field_len) == 0 && colon) {
			colon += strspn(colon + 1, " \t");
			colon++;
			colon[strcspn(colon, "\n")] = '\0';
			snprintf(buf, len, "%s", colon);
			break;
		}
	}
	if (f)
		fclose(f);
}

int val_report_bench(const char *path, const struct val_report_info *info,
		     const struct val_result *results, size_t n, char *err, size_t err_len)
{
	json_t *benchmarks = json_array(), *families = json_object(), *context, *doc;
	char date[40] = "", host[256] = "", cpu[256], number[32], nodes[32], free_pages[64],
	     page_size[64];
	shmrig_topo *topo = shmrig_topo_system();
	time_t now = time(NULL);
	const char *git_rev = getenv("SHMRIG_GIT_REV");
	struct utsname uts;
	struct tm tm;

	if (gmtime_r(&now, &tm))
		strftime(date, sizeof(date), "%Y-%m-%dT%H:%M:%S+00:00", &tm);
	gethostname(host, sizeof(host) - 1);
	proc_field("/proc/cpuinfo", "model name", cpu, sizeof(cpu));
	proc_field("/proc/meminfo", "HugePages_Free", free_pages, sizeof(free_pages));
	proc_field("/proc/meminfo", "Hugepagesize", page_size, sizeof(page_size));
	if (topo && shmrig_topo_num_nodes(topo) > 0)
		snprintf(nodes, sizeof(nodes), "%d", shmrig_topo_num_nodes(topo));
	else
		snprintf(nodes, sizeof(nodes), "unknown");
	snprintf(number, sizeof(number), "%ld", usable_cpus());
	if (uname(&uts))
		memset(&uts, 0, sizeof(uts));
	context = json_pack("{s:s, s:s, s:s, s:i, s:i, s:b, s:[], s:s, s:s, s:s, s:s, s:s, s:s, "
			    "s:s, s:s, s:s, s:s, s:s, s:s}",
			    "date", date, "host_name", host, "executable", "shmrig-validate",
			    "num_cpus", (int)usable_cpus(), "mhz_per_cpu", 0, "cpu_scaling_enabled",
			    0, "caches", "library_build_type", "none", "shmrig_version",
			    SHMRIG_VALIDATE_VERSION, "shmrig_git_rev",
			    git_rev && *git_rev ? git_rev : "unknown", "shmrig_build_type",
			    SHMRIG_VALIDATE_BUILDTYPE, "shmrig_debug_checks",
			    SHMRIG_VALIDATE_DEBUG_CHECKS, "shmrig_sanitize",
			    SHMRIG_VALIDATE_SANITIZE, "shmrig_proof_slowdown", "0", "c_compiler",
			    SHMRIG_VALIDATE_C_COMPILER, "cpu_model", cpu, "nproc", number,
			    "kernel_release", uts.release, "machine", uts.machine);
	if (context)
		json_object_update_new(context, json_pack("{s:s, s:s, s:s}", "numa_nodes", nodes,
							  "hugepages_free", free_pages,
							  "hugepage_size", page_size));
	if (context && info->plugin)
		json_object_set_new(context, "shmrig_validate_plugin", json_string(info->plugin));
	/* every figure of the run in order; family indices by name, as Google Benchmark's */
	for (size_t i = 0; benchmarks && families && i < n; i++) {
		size_t k;
		json_t *entry;

		json_array_foreach(results[i].bench, k, entry)
		{
			const char *name = json_string_value(json_object_get(entry, "name"));
			json_t *copy = json_deep_copy(entry);
			json_t *family = name ? json_object_get(families, name) : NULL;

			if (!copy || !name)
				continue;
			if (!family) {
				family = json_integer((json_int_t)json_object_size(families));
				json_object_set_new(families, name, family);
			}
			json_object_set(copy, "family_index", family);
			json_object_set_new(copy, "per_family_instance_index", json_integer(0));
			json_array_append_new(benchmarks, copy);
		}
	}
	json_decref(families);
	doc = json_pack("{s:o, s:o}", "context", context, "benchmarks", benchmarks);
	if (!doc) {
		snprintf(err, err_len, "%s: out of memory", path);
		return -ENOMEM;
	}
	return write_json(path, doc, err, err_len);
}
