/* SPDX-License-Identifier: MIT */
/*
 * The runner: every piece of codec code runs in a child, never in the kit.
 *
 * A child gets its own process group (its forks too: CrossProcess's decoding
 * process), no core dumps, and one pipe to the parent, on which it writes
 * records, one JSON object a line: {"progress": ...} for people, {"at": ...}
 * where it is (named in the verdict if it dies there), and last its verdict.
 * The parent reads them until EOF or the timeout; at the timeout it kills the
 * whole group. A child that dies by a signal is a FAIL naming the signal and
 * the check; one that exits without a verdict, or later than its timeout, is
 * a FAIL too. After each child the parent kills what is left of its group
 * (the kit is a subreaper, so orphans are its to reap) and sweeps the pool
 * segments dead processes left with the run's prefix.
 */
#include "validate.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAX_RECORD_BYTES ((size_t)16 << 20) /* the longest record (line) a child may write */
#define PROGRESS_AFTER_S 2.0                /* a check this long shows progress */
#define PROGRESS_EVERY_S 2.0
#define HEARTBEAT_S 15.0 /* a check silent this long: "still running", and where */

volatile int val_interrupted;

static void on_signal(int sig)
{
	val_interrupted = sig;
}

void val_runner_init(void)
{
	struct sigaction sa = { .sa_handler = on_signal };

	/* orphans of a killed child (its decoding process) become ours to reap */
	(void)prctl(PR_SET_CHILD_SUBREAPER, 1);
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
}

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static const char *signal_name(int sig, char *buf, size_t len)
{
	const char *abbrev = sigabbrev_np(sig);

	if (abbrev)
		snprintf(buf, len, "SIG%s (%s)", abbrev, strsignal(sig));
	else
		snprintf(buf, len, "signal %d", sig);
	return buf;
}

/* ---- one child ---- */

struct outcome {
	bool timed_out, interrupted, signaled;
	int status; /* exit status, or the signal */
	double seconds;
	char at[512];  /* the child's last "at" record */
	json_t *last;  /* its last record that was neither progress nor at */
	bool too_much; /* it wrote a line longer than MAX_RECORD_BYTES */
};

struct watch {
	const char *what; /* "Required.X [codec]" for progress lines */
	bool quiet;
	double start, last_progress;
};

static void record(struct outcome *out, struct watch *w, const char *line)
{
	json_t *rec = json_loads(line, 0, NULL);
	const char *text;

	if (!rec || !json_is_object(rec)) {
		json_decref(rec);
		return; /* not ours: ignored */
	}
	if ((text = json_string_value(json_object_get(rec, "at")))) {
		snprintf(out->at, sizeof(out->at), "%s", text);
	} else if ((text = json_string_value(json_object_get(rec, "progress")))) {
		double now = now_s();

		if (!w->quiet && now - w->start >= PROGRESS_AFTER_S &&
		    now - w->last_progress >= PROGRESS_EVERY_S) {
			fprintf(stderr, "  ... %s: %s (%.0f s)\n", w->what, text, now - w->start);
			w->last_progress = now;
		}
	} else {
		json_decref(out->last);
		out->last = rec;
		return;
	}
	json_decref(rec);
}

/* Reap `pid`, waiting until `deadline` at most; false if it did not end in time. */
static bool reap_until(pid_t pid, int *status, double deadline)
{
	for (;;) {
		pid_t got = waitpid(pid, status, WNOHANG);

		if (got == pid)
			return true;
		if (got < 0 && errno != EINTR)
			return true; /* not ours any more: nothing to wait for */
		if (now_s() >= deadline || val_interrupted)
			return false;
		usleep(10000);
	}
}

/* Kill what is left of the group and reap it (orphans come to us: subreaper). */
static void kill_group(pid_t pgid)
{
	int status;

	kill(-pgid, SIGKILL);
	while (waitpid(-pgid, &status, 0) > 0 || errno == EINTR)
		;
}

/*
 * Run fn(fd, arg) in a child with a timeout; collect its records. The child
 * must _exit; fn's return is its exit status.
 */
static void run_child(int (*fn)(int fd, void *arg), void *arg, double timeout_s, struct watch *w,
		      struct outcome *out)
{
	size_t used = 0, cap = 65536;
	char *buf = NULL; /* the parent's, allocated after fork: the child must not inherit it */
	double deadline;
	int fds[2], status = 0;
	bool eof = false;
	pid_t pid;

	memset(out, 0, sizeof(*out));
	w->start = w->last_progress = now_s();
	deadline = w->start + timeout_s;
	if (pipe2(fds, O_CLOEXEC)) {
		out->status = 127;
		snprintf(out->at, sizeof(out->at), "the kit could not start a child: %s",
			 strerror(errno));
		return;
	}
	fflush(NULL); /* nothing buffered here is written twice */
	pid = fork();
	if (pid == 0) {
		struct rlimit no_core = { 0, 0 };

		setpgid(0, 0);
		setrlimit(RLIMIT_CORE, &no_core); /* a crashing plugin: no core files */
		signal(SIGINT, SIG_DFL);
		signal(SIGTERM, SIG_DFL);
		signal(SIGPIPE, SIG_DFL);
		close(fds[0]);
		status = fn(fds[1], arg);
		close(fds[1]);
		_exit(status);
	}
	close(fds[1]);
	if (pid < 0) {
		close(fds[0]);
		out->status = 127;
		snprintf(out->at, sizeof(out->at), "fork: %s", strerror(errno));
		return;
	}
	setpgid(pid, pid); /* also here: no race with the kill below */
	buf = malloc(cap);
	if (!buf) { /* nothing can be read: the child is killed below, a FAIL */
		out->too_much = true;
		eof = true;
	}
	while (!eof) {
		struct pollfd pfd = { .fd = fds[0], .events = POLLIN };
		double left = deadline - now_s();
		ssize_t n;

		if (left <= 0) {
			out->timed_out = true;
			break;
		}
		if (val_interrupted) {
			out->interrupted = true;
			break;
		}
		if (poll(&pfd, 1, left > 0.2 ? 200 : (int)(left * 1000) + 1) <= 0) {
			double now = now_s();

			if (!w->quiet && now - w->last_progress >= HEARTBEAT_S) {
				fprintf(stderr, "  ... %s: still running (%.0f s)%s%s\n", w->what,
					now - w->start, out->at[0] ? ", at " : "", out->at);
				w->last_progress = now;
			}
			continue;
		}
		if (used == cap) { /* a record longer than the buffer: a verdict with figures */
			char *grown = cap < MAX_RECORD_BYTES ? realloc(buf, cap * 2) : NULL;

			if (!grown) {
				out->too_much = true;
				break;
			}
			buf = grown;
			cap *= 2;
		}
		n = read(fds[0], buf + used, cap - used);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			eof = true;
			n = 0;
		}
		used += (size_t)n;
		/* every complete line is a record; what is left moves to the front once */
		{
			char *line = buf, *nl;

			while ((nl = memchr(line, '\n', used - (size_t)(line - buf)))) {
				*nl = '\0';
				record(out, w, line);
				line = nl + 1;
			}
			used -= (size_t)(line - buf);
			memmove(buf, line, used);
		}
	}
	close(fds[0]);
	free(buf);
	if (!out->timed_out && !out->interrupted && !reap_until(pid, &status, deadline))
		out->timed_out = !val_interrupted, out->interrupted = val_interrupted;
	if (out->timed_out || out->interrupted || out->too_much) {
		kill(-pid, SIGKILL);
		waitpid(pid, &status, 0);
	}
	kill_group(pid);
	out->seconds = now_s() - w->start;
	if (WIFSIGNALED(status)) {
		out->signaled = true;
		out->status = WTERMSIG(status);
	} else {
		out->status = WEXITSTATUS(status);
	}
}

/* ---- the child's side ---- */

static void send_json(int fd, json_t *rec)
{
	char *line = json_dumps(rec, JSON_COMPACT);

	if (line) {
		size_t len = strlen(line), done = 0;

		line[len++] = '\n';
		while (done < len) {
			ssize_t n = write(fd, line + done, len - done);

			if (n < 0 && errno == EINTR)
				continue;
			if (n <= 0)
				break;
			done += (size_t)n;
		}
	}
	free(line);
	json_decref(rec);
}

/* $SHMRIG_VALIDATE_SELFTEST=crash[:CHECK] or hang[:CHECK] (default CHECK:
 * Required.RoundTrip.InProcess): that check's child crashes or hangs, as a
 * broken plugin would, for the tests of the runner. */
static void selftest(struct val_ctx *ctx)
{
	const char *spec = ctx->opt->selftest, *colon;
	const char *check = "Required.RoundTrip.InProcess";
	size_t mode_len;

	if (!spec || !spec[0])
		return;
	colon = strchr(spec, ':');
	mode_len = colon ? (size_t)(colon - spec) : strlen(spec);
	if (colon)
		check = colon + 1;
	if (strcmp(check, ctx->check) != 0)
		return;
	if (mode_len == 5 && strncmp(spec, "crash", 5) == 0) {
		val_at(ctx, "the self-test's crash");
		/* the default action, as for a wild store: a sanitizer's handler (or
		 * UBSan's null check) would turn it into an exit status */
		signal(SIGSEGV, SIG_DFL);
		raise(SIGSEGV);
	} else if (mode_len == 4 && strncmp(spec, "hang", 4) == 0) {
		val_at(ctx, "the self-test's hang");
		for (;;)
			pause();
	}
}

struct check_job {
	const struct val_check *check;
	const char *plugin;
	uint32_t codec_index;
	const struct val_options *opt;
};

/*
 * The prefix a codec's own pools get in a check's process: $SHMRIG_PREFIX is
 * set to it there, so what such a pool leaves when the process ends is the
 * codec's leak, told apart from the kit's segments (the kit names its own).
 */
static void codec_prefix(const struct val_options *opt, char *buf, size_t len)
{
	snprintf(buf, len, "%.*s_c", SHMRIG_PREFIX_MAX - 2, opt->prefix);
}

static void count_name(void *arg, const char *name)
{
	(void)name;
	(*(int *)arg)++;
}

static int check_child(int fd, void *arg)
{
	const struct check_job *job = arg;
	char own[SHMRIG_PREFIX_MAX + 1];
	struct val_ctx ctx = { .opt = job->opt, .check = job->check->name, .report_fd = fd };
	struct val_subject *subject = NULL;
	enum val_verdict verdict;
	struct val_target target;
	char err[VAL_MSG_MAX];
	json_t *rec;

	codec_prefix(job->opt, own, sizeof(own));
	setenv("SHMRIG_PREFIX", own, 1);
	if (val_subject_open(job->plugin, &subject, err, sizeof(err)) ||
	    job->codec_index >= subject->ncodecs) {
		verdict =
			val_fail(&ctx, "the subject does not open in the check's process: %s", err);
	} else if (val_target_open(subject, job->codec_index, &target, err, sizeof(err))) {
		verdict = val_fail(&ctx, "the codec's registry: %s", err);
	} else {
		ctx.target = &target;
		selftest(&ctx);
		verdict = job->check->run(&ctx);
		val_target_close(&target);
	}
	rec = json_pack("{s:s, s:s, s:i}", "verdict", val_verdict_name(verdict), "message",
			ctx.message, "values", (int)ctx.values);
	if (rec && ctx.bench)
		json_object_set_new(rec, "bench", ctx.bench);
	if (rec)
		send_json(fd, rec);
	val_subject_close(subject);
	return 0;
}

/* ---- the parent's side ---- */

void val_sweep(const char *prefix)
{
	struct shmrig_pool_opts opts = SHMRIG_SIZED(struct shmrig_pool_opts);
	shmrig_pool *pool;

	opts.flags = SHMRIG_POOL_QUIET;
	opts.prefix = prefix;
	if (shmrig_pool_open(&opts, &pool))
		return;
	(void)!shmrig_pool_sweep(pool); /* best effort: what is left is reported by nobody */
	(void)!shmrig_pool_close(pool);
}

/*
 * Segments the check's process left with the codec's prefix: a pool the codec
 * opened and never closed (blocks of the kit's pool it cannot leak: the
 * registry frees them on every path). They fail the check, then are swept.
 */
static void leaked_segments(const struct val_options *opt, struct val_result *r)
{
	char own[SHMRIG_PREFIX_MAX + 1], note[200];
	int n = 0;

	codec_prefix(opt, own, sizeof(own));
	if (shmrig_segment_list(own, count_name, &n) <= 0 || n <= 0)
		return;
	snprintf(note, sizeof(note),
		 "the codec's process left %d shared-memory segment%s of a pool of its own "
		 "(prefix %s): a pool it opened and never closed",
		 n, n == 1 ? "" : "s", own);
	if (r->verdict == VAL_FAIL) {
		size_t used = strlen(r->message);

		snprintf(r->message + used, sizeof(r->message) - used, "; and %s", note);
	} else {
		r->verdict = VAL_FAIL;
		snprintf(r->message, sizeof(r->message), "%s", note);
	}
	val_sweep(own);
}

void val_run(const struct val_check *check, const char *plugin, uint32_t codec_index,
	     const char *codec_name, const struct val_options *opt, struct val_result *r)
{
	struct check_job job = { check, plugin, codec_index, opt };
	char what[192], sig[64], at[600];
	struct watch w = { .what = what, .quiet = opt->quiet };
	struct outcome out;
	const char *verdict;

	memset(r, 0, sizeof(*r));
	r->check = check;
	snprintf(r->codec, sizeof(r->codec), "%s", codec_name);
	if (!check->run) {
		r->verdict = VAL_SKIP;
		snprintf(r->message, sizeof(r->message), "%s", check->skip_reason);
		return;
	}
	snprintf(what, sizeof(what), "%s [%s]", check->name, codec_name);
	run_child(check_child, &job, opt->timeout_s, &w, &out);
	r->seconds = out.seconds;
	at[0] = '\0';
	if (out.at[0])
		snprintf(at, sizeof(at), ", at %s", out.at);
	verdict = json_string_value(json_object_get(out.last, "verdict"));
	r->verdict = VAL_FAIL;
	if (out.interrupted) {
		snprintf(r->message, sizeof(r->message), "interrupted%s", at);
	} else if (out.timed_out) {
		snprintf(r->message, sizeof(r->message), "timed out after %g s in %s%s",
			 opt->timeout_s, what, at);
	} else if (out.signaled) {
		snprintf(r->message, sizeof(r->message), "killed by %s in %s%s",
			 signal_name(out.status, sig, sizeof(sig)), what, at);
	} else if (out.too_much) {
		snprintf(r->message, sizeof(r->message),
			 "the check's process wrote a record longer than %zu bytes",
			 MAX_RECORD_BYTES);
	} else if (out.status) {
		snprintf(r->message, sizeof(r->message),
			 "the check's process exited with status %d%s%s", out.status,
			 verdict ? " after its verdict" : " without a verdict", at);
	} else if (!verdict) {
		snprintf(r->message, sizeof(r->message), "the check's process gave no verdict%s",
			 at);
	} else {
		r->verdict = strcmp(verdict, "pass") == 0 ? VAL_PASS :
			     strcmp(verdict, "skip") == 0 ? VAL_SKIP :
							    VAL_FAIL;
		snprintf(r->message, sizeof(r->message), "%s",
			 json_string_value(json_object_get(out.last, "message")) ?
				 json_string_value(json_object_get(out.last, "message")) :
				 "");
		r->values = (uint32_t)json_integer_value(json_object_get(out.last, "values"));
		r->bench = json_incref(json_object_get(out.last, "bench"));
	}
	json_decref(out.last);
	val_sweep(opt->prefix);
	leaked_segments(opt, r);
}

/* ---- discovery: the codecs of the subject, from a child ---- */

struct discover_job {
	const char *plugin;
};

static int discover_child(int fd, void *arg)
{
	const struct discover_job *job = arg;
	struct val_subject *subject = NULL;
	char err[VAL_MSG_MAX];
	json_t *rec, *codecs;

	if (val_subject_open(job->plugin, &subject, err, sizeof(err))) {
		send_json(fd, json_pack("{s:s}", "error", err));
		return 0;
	}
	codecs = json_array();
	for (uint32_t i = 0; codecs && i < subject->ncodecs; i++) {
		const struct val_codec *c = &subject->codecs[i];
		char kinds[128] = "";
		size_t used = 0;

		for (uint32_t k = 0; k < c->nkinds && used < sizeof(kinds); k++)
			used += (size_t)snprintf(kinds + used, sizeof(kinds) - used, "%s%s%s",
						 k ? ", " : "", c->gens[k]->name,
						 c->gens[k]->from_plugin ?
							 " (the plugin's values)" :
							 " (the kit's values)");
		json_array_append_new(codecs,
				      json_pack("{s:s, s:s}", "name", c->name, "kinds", kinds));
	}
	rec = json_pack("{s:s, s:o}", "label", subject->label, "codecs", codecs);
	if (rec)
		send_json(fd, rec);
	val_subject_close(subject);
	return 0;
}

int val_discover(const char *plugin, const struct val_options *opt, struct val_discovery *d,
		 char *err, size_t err_len)
{
	struct discover_job job = { plugin };
	struct watch w = { .what = "loading the subject", .quiet = true };
	struct outcome out;
	const char *error;
	json_t *codecs;
	char sig[64];
	size_t i;

	memset(d, 0, sizeof(*d));
	run_child(discover_child, &job, opt->timeout_s, &w, &out);
	if (out.timed_out || out.interrupted || out.signaled || out.status || !out.last) {
		if (out.timed_out)
			snprintf(err, err_len, "loading %s timed out after %g s",
				 plugin ? plugin : "the built-in codecs", opt->timeout_s);
		else if (out.signaled)
			snprintf(err, err_len, "loading %s: killed by %s",
				 plugin ? plugin : "the built-in codecs",
				 signal_name(out.status, sig, sizeof(sig)));
		else
			snprintf(err, err_len, "loading %s: %s",
				 plugin ? plugin : "the built-in codecs",
				 out.interrupted ? "interrupted" : "no answer from its process");
		json_decref(out.last);
		val_sweep(opt->prefix);
		return -EIO;
	}
	error = json_string_value(json_object_get(out.last, "error"));
	if (error) {
		snprintf(err, err_len, "%s", error);
		json_decref(out.last);
		return -ENOEXEC;
	}
	snprintf(d->label, sizeof(d->label), "%s",
		 json_string_value(json_object_get(out.last, "label")) ?
			 json_string_value(json_object_get(out.last, "label")) :
			 "?");
	codecs = json_object_get(out.last, "codecs");
	for (i = 0; i < json_array_size(codecs) && i < VAL_MAX_CODECS; i++) {
		json_t *c = json_array_get(codecs, i);
		const char *name = json_string_value(json_object_get(c, "name"));
		const char *kinds = json_string_value(json_object_get(c, "kinds"));

		snprintf(d->codecs[i], sizeof(d->codecs[i]), "%s", name ? name : "?");
		snprintf(d->kinds[i], sizeof(d->kinds[i]), "%s", kinds ? kinds : "");
	}
	d->ncodecs = (uint32_t)i;
	json_decref(out.last);
	if (!d->ncodecs) {
		snprintf(err, err_len, "%s holds no codec", d->label);
		return -ENOENT;
	}
	return 0;
}
