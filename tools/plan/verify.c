/* SPDX-License-Identifier: MIT */
/* shmrig-plan --verify: see verify.h. */
#include "verify.h"

#include "model.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define NSLOT (SHMRIG_POOL_NUM_CLASSES + 1)

static int bad(char *err, size_t errlen, const char *field, const char *what)
{
	snprintf(err, errlen, "%s: %s", field, what);
	return -EINVAL;
}

/* A finite number >= 0 (at most max), required or not. */
static int get_nonneg(json_t *obj, const char *key, int required, double max, double *out,
		      char *err, size_t errlen, const char *path)
{
	json_t *v = json_object_get(obj, key);
	char field[96];

	snprintf(field, sizeof(field), "%s%s", path, key);
	if (!v) {
		if (required)
			return bad(err, errlen, field, "missing");
		return 0;
	}
	if (!json_is_number(v) || !isfinite(json_number_value(v)) || json_number_value(v) < 0 ||
	    json_number_value(v) > max)
		return bad(err, errlen, field, "must be a number >= 0");
	*out = json_number_value(v);
	return 0;
}

static int parse_class(json_t *obj, struct plan_measured_class *c, char *err, size_t errlen,
		       const char *path)
{
	int ret = get_nonneg(obj, "live_mean", 1, 1e12, &c->live_mean, err, errlen, path);

	if (!ret)
		ret = get_nonneg(obj, "live_p99", 1, 1e12, &c->live_p99, err, errlen, path);
	if (!ret)
		ret = get_nonneg(obj, "live_p999", 0, 1e12, &c->live_p999, err, errlen, path);
	if (!ret)
		ret = get_nonneg(obj, "live_max", 0, 1e12, &c->live_max, err, errlen, path);
	c->present = !ret;
	return ret;
}

int plan_stress_parse(const char *text, size_t len, struct plan_measured *out, char *err,
		      size_t errlen)
{
	json_t *root, *v, *classes;
	json_error_t jerr;
	double x = 0;
	int ret = 0;

	memset(out, 0, sizeof(*out));
	if (len > PLAN_STRESS_MAX_BYTES)
		return bad(err, errlen, "the stress JSON", "too large");
	root = json_loadb(text, len, 0, &jerr);
	if (!root) {
		snprintf(err, errlen, "not JSON: line %d: %s", jerr.line, jerr.text);
		return -EINVAL;
	}
	v = json_object_get(root, "kind");
	if (!json_is_object(root) || !json_is_string(v) ||
	    strcmp(json_string_value(v), "shmrig-stress-workload") != 0) {
		json_decref(root);
		return bad(err, errlen, "kind", "not \"shmrig-stress-workload\"");
	}
	ret = get_nonneg(root, "duration_s", 1, 1e7, &out->duration_s, err, errlen, "");
	if (!ret)
		ret = get_nonneg(root, "rate_scale", 1, 1e9, &out->rate_scale, err, errlen, "");
	if (!ret)
		ret = get_nonneg(root, "offered_rate", 1, 1e12, &out->offered_rate, err, errlen,
				 "");
	if (!ret)
		ret = get_nonneg(root, "achieved_rate", 1, 1e12, &out->achieved_rate, err, errlen,
				 "");
	{
		static const char *const counts[] = { "messages", "enomem", "checksum_failures",
						      "lost_blocks" };
		uint64_t *dst[] = { &out->messages, &out->enomem, &out->checksum_failures,
				    &out->lost_blocks };

		for (unsigned i = 0; i < 4 && !ret; i++) {
			x = 0;
			ret = get_nonneg(root, counts[i], i < 2, 1e18, &x, err, errlen, "");
			*dst[i] = (uint64_t)x;
		}
	}
	if (!ret)
		ret = get_nonneg(root, "replay_own_us_per_message", 0, 1e12, &out->replay_own_us,
				 err, errlen, "");
	if (!ret)
		ret = get_nonneg(root, "replay_own_producer_us_per_message", 0, 1e12,
				 &out->replay_own_producer_us, err, errlen, "");
	if (out->replay_own_producer_us > out->replay_own_us)
		out->replay_own_producer_us = out->replay_own_us;
	v = json_object_get(root, "latency_us");
	if (!ret && !json_is_object(v))
		ret = bad(err, errlen, "latency_us", "missing or not an object");
	if (!ret)
		ret = get_nonneg(v, "p50", 0, 1e15, &out->latency_p50_us, err, errlen,
				 "latency_us.");
	if (!ret)
		ret = get_nonneg(v, "p99", 1, 1e15, &out->latency_p99_us, err, errlen,
				 "latency_us.");
	if (!ret)
		ret = get_nonneg(v, "p999", 0, 1e15, &out->latency_p999_us, err, errlen,
				 "latency_us.");
	if (!ret)
		ret = get_nonneg(v, "max", 0, 1e15, &out->latency_max_us, err, errlen,
				 "latency_us.");
	classes = json_object_get(root, "classes");
	if (!ret && (!json_is_array(classes) || json_array_size(classes) > 64))
		ret = bad(err, errlen, "classes", "missing or not an array (of at most 64)");
	for (size_t i = 0; !ret && i < json_array_size(classes); i++) {
		json_t *c = json_array_get(classes, i), *idx = json_object_get(c, "class");
		char path[48];
		json_int_t k;

		snprintf(path, sizeof(path), "classes[%zu].", i);
		if (!json_is_object(c) || !json_is_integer(idx)) {
			ret = bad(err, errlen, path, "must be an object with an integer \"class\"");
			break;
		}
		k = json_integer_value(idx);
		if (k < 0 || k >= SHMRIG_POOL_NUM_CLASSES) {
			ret = bad(err, errlen, path, "class out of range");
			break;
		}
		ret = parse_class(c, &out->classes[k], err, errlen, path);
	}
	v = json_object_get(root, "large");
	if (!ret && v) {
		if (!json_is_object(v))
			ret = bad(err, errlen, "large", "must be an object");
		else
			ret = parse_class(v, &out->classes[NSLOT - 1], err, errlen, "large.");
	}
	json_decref(root);
	return ret;
}

static void class_label(unsigned s, char *buf, size_t len)
{
	uint64_t size;

	if (s == NSLOT - 1) {
		snprintf(buf, len, "large");
		return;
	}
	size = plan_class_size(s);
	if (size >= (1u << 20))
		snprintf(buf, len, "%uM", (unsigned)(size >> 20));
	else if (size >= 1024)
		snprintf(buf, len, "%uK", (unsigned)(size >> 10));
	else
		snprintf(buf, len, "%u", (unsigned)size);
}

static void add_row(struct plan_verify *v, const char *what, double predicted, double measured,
		    int judged)
{
	struct plan_verify_row *row = &v->rows[v->nrows++];

	snprintf(row->what, sizeof(row->what), "%s", what);
	row->predicted = predicted;
	row->measured = measured;
	row->judged = judged;
	row->agrees = predicted > 0 ?
			      fabs(measured - predicted) / predicted <= PLAN_VERIFY_TOLERANCE :
			      measured == 0;
	if (judged && !row->agrees)
		v->disagreements++;
}

void plan_verify_compare(const struct plan_sim_result *sim, struct plan_verify *v)
{
	const struct plan_measured *m = &v->steps[0];
	double predicted_rate = 0;

	v->nrows = 0;
	v->disagreements = 0;
	for (unsigned i = 0; i < sim->nflows; i++)
		predicted_rate += sim->flows[i].achieved_rate;
	add_row(v, "throughput (msgs/s)", predicted_rate, m->achieved_rate, 1);
	for (unsigned s = 0; s < NSLOT; s++) {
		const struct plan_stat *p = &sim->blocks[s];
		const struct plan_measured_class *mc = &m->classes[s];
		int judged = p->mean >= PLAN_VERIFY_MIN_BLOCKS;
		char label[16], what[48];

		if (p->max == 0 && (!mc->present || (mc->live_max == 0 && mc->live_mean == 0)))
			continue;
		class_label(s, label, sizeof(label));
		snprintf(what, sizeof(what), "class %s mean", label);
		add_row(v, what, p->mean, mc->live_mean, judged);
		snprintf(what, sizeof(what), "class %s p99", label);
		add_row(v, what, p->p99, mc->live_p99, judged);
	}
	v->pass = v->disagreements == 0;
}

int plan_verify_saturated(const struct plan_verify *v, unsigned i, char *why, size_t whylen)
{
	const struct plan_measured *m = &v->steps[i], *first = &v->steps[0];

	if (m->enomem) {
		snprintf(why, whylen, "%llu allocations failed with ENOMEM",
			 (unsigned long long)m->enomem);
		return 1;
	}
	if (m->achieved_rate < 0.9 * m->offered_rate) {
		snprintf(why, whylen, "achieved %.4g msgs/s, under 90 %% of the %.4g offered",
			 m->achieved_rate, m->offered_rate);
		return 1;
	}
	if (i > 0 && first->latency_p99_us > 0 && m->latency_p99_us > 10 * first->latency_p99_us) {
		snprintf(why, whylen, "p99 latency %.4g us, over 10 x the first step's %.4g us",
			 m->latency_p99_us, first->latency_p99_us);
		return 1;
	}
	return 0;
}

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

int plan_spawn(char *const argv[], const char *log, double timeout_s)
{
	double deadline = now_s() + timeout_s;
	pid_t pid, got;
	int status;

	fflush(NULL);
	pid = fork();
	if (pid < 0)
		return -errno;
	if (pid == 0) {
		int fd = open(log ? log : "/dev/null", O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC,
			      0644);

		/* its own group: a timeout kills it and whatever it forked */
		setpgid(0, 0);
		if (fd >= 0) {
			dup2(fd, STDOUT_FILENO);
			dup2(fd, STDERR_FILENO);
		}
		execvp(argv[0], argv);
		_exit(127);
	}
	setpgid(pid, pid); /* both sides: no race with the kill below */
	for (;;) {
		struct timespec nap = { 0, 10 * 1000 * 1000 };

		got = waitpid(pid, &status, WNOHANG);
		if (got == pid)
			break;
		if (got < 0 && errno != EINTR)
			return -errno;
		if (now_s() > deadline) {
			kill(-pid, SIGKILL);
			while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
				;
			return -ETIMEDOUT;
		}
		nanosleep(&nap, NULL);
	}
	if (WIFSIGNALED(status))
		return -EINTR;
	if (WEXITSTATUS(status) == 127)
		return -ENOENT;
	return WEXITSTATUS(status);
}

int plan_stress_run(const char *stress, const char *workload, double seconds, double scale,
		    uint64_t seed, const char *out_json, const char *log, double timeout_s,
		    char *err, size_t errlen)
{
	char duration[32], rate_scale[32], seed_text[32];
	char *argv[] = { (char *)stress, "--workload",   (char *)workload, "--duration",
			 duration,       "--rate-scale", rate_scale,       "--seed",
			 seed_text,      "--json",       (char *)out_json, NULL };
	int ret;

	if (access(stress, X_OK)) {
		snprintf(err, errlen, "%s: %s", stress, strerror(errno));
		return -ENOENT;
	}
	snprintf(duration, sizeof(duration), "%g", seconds);
	snprintf(rate_scale, sizeof(rate_scale), "%g", scale);
	snprintf(seed_text, sizeof(seed_text), "%llu", (unsigned long long)seed);
	ret = plan_spawn(argv, log, timeout_s);
	if (ret == 0)
		return 0;
	if (ret == -ENOENT)
		snprintf(err, errlen, "%s could not be executed", stress);
	else if (ret == -ETIMEDOUT)
		snprintf(err, errlen, "%s --rate-scale %g did not finish in %g s: killed", stress,
			 scale, timeout_s);
	else if (ret == -EINTR)
		snprintf(err, errlen, "%s --rate-scale %g was killed by a signal", stress, scale);
	else if (ret > 0)
		snprintf(err, errlen, "%s --rate-scale %g exited with status %d", stress, scale,
			 ret);
	else
		snprintf(err, errlen, "cannot run %s: %s", stress, strerror(-ret));
	return ret > 0 || ret == -EINTR ? -ECHILD : ret;
}

void plan_stress_path(char *out, size_t len)
{
	const char *env = getenv("SHMRIG_STRESS");
	char self[PATH_MAX];
	ssize_t n;

	if (env && *env) {
		snprintf(out, len, "%s", env);
		return;
	}
	n = readlink("/proc/self/exe", self, sizeof(self) - 1);
	if (n <= 0) {
		snprintf(out, len, "shmrig-stress");
		return;
	}
	self[n] = '\0';
	*strrchr(self, '/') = '\0';
	snprintf(out, len, "%s/../stress/shmrig-stress", self);
}
