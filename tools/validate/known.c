/* SPDX-License-Identifier: MIT */
/*
 * The known-failures list (--known-failures FILE): checks expected to fail,
 * one a line, kept honest both ways (Protobuf's failure lists):
 *
 *     # comments and blank lines are ignored
 *     Required.Hostile.Mutations [mycodec]   # crashes on truncated frames, issue 42
 *     Recommended.Meta.SizeLimit             # every codec: our schemas are large
 *
 * A listed check that fails is an expected failure (XFAIL); one that passes
 * is a failure of the run ("... passes now: remove it from the known
 * failures"). A line that is not `CHECK_NAME [CODEC] # reason`, names no
 * check of the catalogue or no codec of the subject, or repeats an entry, is
 * a usage error naming the file and the line.
 */
#include "validate.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LINE_MAX_LEN 4096

static char *trim(char *s)
{
	char *end;

	while (isspace((unsigned char)*s))
		s++;
	end = s + strlen(s);
	while (end > s && isspace((unsigned char)end[-1]))
		*--end = '\0';
	return s;
}

static bool codec_name_ok(const char *name, size_t len)
{
	if (len == 0 || len >= VAL_NAME_MAX)
		return false;
	for (size_t i = 0; i < len; i++)
		if (!isalnum((unsigned char)name[i]) && !strchr("_.-", name[i]))
			return false;
	return true;
}

static int parse_line(struct val_known *known, char *line, int lineno, char *err, size_t err_len)
{
	struct val_known_entry e = { .line = lineno };
	char *hash = strchr(line, '#'), *body, *space, *codec = NULL;

	if (hash) {
		snprintf(e.reason, sizeof(e.reason), "%s", trim(hash + 1));
		*hash = '\0';
	}
	body = trim(line);
	if (!*body)
		return 0;
	space = body + strcspn(body, " \t");
	if (*space) {
		*space = '\0';
		codec = trim(space + 1);
	}
	if (!val_check_find(body)) {
		snprintf(err, err_len,
			 "%s:%d: no check named '%.100s' (shmrig-validate --list names "
			 "them)",
			 known->path, lineno, body);
		return -EINVAL;
	}
	snprintf(e.check, sizeof(e.check), "%s", body);
	if (codec) {
		size_t len = strlen(codec);

		if (len < 3 || codec[0] != '[' || codec[len - 1] != ']' ||
		    !codec_name_ok(codec + 1, len - 2)) {
			snprintf(err, err_len,
				 "%s:%d: '%.100s' after the check's name is not [CODEC]: write "
				 "CHECK_NAME [CODEC] # reason",
				 known->path, lineno, codec);
			return -EINVAL;
		}
		snprintf(e.codec, sizeof(e.codec), "%.*s", (int)(len - 2), codec + 1);
	}
	for (size_t i = 0; i < known->n; i++)
		if (strcmp(known->entries[i].check, e.check) == 0 &&
		    strcmp(known->entries[i].codec, e.codec) == 0) {
			snprintf(err, err_len, "%s:%d: %s%s%s%s is listed already, on line %d",
				 known->path, lineno, e.check, e.codec[0] ? " [" : "", e.codec,
				 e.codec[0] ? "]" : "", known->entries[i].line);
			return -EINVAL;
		}
	if (known->n % 16 == 0) {
		struct val_known_entry *grown =
			realloc(known->entries, (known->n + 16) * sizeof(*grown));

		if (!grown) {
			snprintf(err, err_len, "%s: out of memory", known->path);
			return -ENOMEM;
		}
		known->entries = grown;
	}
	known->entries[known->n++] = e;
	return 0;
}

int val_known_load(const char *path, struct val_known *known, char *err, size_t err_len)
{
	char line[LINE_MAX_LEN + 2];
	int lineno = 0, ret = 0;
	FILE *f;

	memset(known, 0, sizeof(*known));
	snprintf(known->path, sizeof(known->path), "%s", path);
	f = fopen(path, "r");
	if (!f) {
		ret = -errno;
		snprintf(err, err_len, "%s: cannot read: %s", path, strerror(errno));
		return ret;
	}
	while (!ret && fgets(line, sizeof(line), f)) {
		size_t len = strlen(line);

		lineno++;
		if (len > LINE_MAX_LEN || (len && line[len - 1] != '\n' && !feof(f))) {
			snprintf(err, err_len, "%s:%d: longer than %d bytes", path, lineno,
				 LINE_MAX_LEN);
			ret = -EINVAL;
			break;
		}
		ret = parse_line(known, line, lineno, err, err_len);
	}
	if (!ret && ferror(f)) {
		ret = -EIO;
		snprintf(err, err_len, "%s: cannot read: %s", path, strerror(errno));
	}
	fclose(f);
	if (ret)
		val_known_free(known);
	return ret;
}

int val_known_check_codecs(const struct val_known *known, const struct val_discovery *d, char *err,
			   size_t err_len)
{
	for (size_t i = 0; i < known->n; i++) {
		const struct val_known_entry *e = &known->entries[i];
		bool found = !e->codec[0];

		for (uint32_t c = 0; !found && c < d->ncodecs; c++)
			found = strcmp(d->codecs[c], e->codec) == 0;
		if (!found) {
			snprintf(err, err_len, "%s:%d: no codec '%s' in %s", known->path, e->line,
				 e->codec, d->label);
			return -EINVAL;
		}
	}
	return 0;
}

const struct val_known_entry *val_known_find(const struct val_known *known, const char *check,
					     const char *codec)
{
	const struct val_known_entry *any = NULL;

	for (size_t i = 0; i < known->n; i++) {
		const struct val_known_entry *e = &known->entries[i];

		if (strcmp(e->check, check) != 0)
			continue;
		if (strcmp(e->codec, codec) == 0)
			return e; /* this codec's own line wins over one for every codec */
		if (!e->codec[0])
			any = e;
	}
	return any;
}

void val_known_free(struct val_known *known)
{
	free(known->entries);
	known->entries = NULL;
	known->n = 0;
}
