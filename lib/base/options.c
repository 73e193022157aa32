/* SPDX-License-Identifier: MIT */
#include <shmrig/options.h>
#include "base/internal.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

int shmrig_parse_size(const char *text, size_t *out)
{
	unsigned long long value, mult = 1;
	char *end;

	if (!text || !out)
		return shmrig__fail(-EINVAL, "parse_size: NULL argument");
	while (isspace((unsigned char)*text))
		text++;
	if (!isdigit((unsigned char)*text))
		return shmrig__fail(-EINVAL, "'%s' is not a size (digits, then K, M or G)", text);
	errno = 0;
	value = strtoull(text, &end, 10);
	if (errno == ERANGE)
		return shmrig__fail(-ERANGE, "size '%s' is too large", text);
	switch (toupper((unsigned char)*end)) {
	case 'K':
		mult = 1ULL << 10;
		end++;
		break;
	case 'M':
		mult = 1ULL << 20;
		end++;
		break;
	case 'G':
		mult = 1ULL << 30;
		end++;
		break;
	default:
		break;
	}
	if (mult > 1 && (strcasecmp(end, "iB") == 0 || strcasecmp(end, "B") == 0))
		end += strlen(end);
	if (*end != '\0')
		return shmrig__fail(-EINVAL, "'%s' is not a size (digits, then K, M or G)", text);
	if (value > SIZE_MAX / mult)
		return shmrig__fail(-ERANGE, "size '%s' is too large", text);
	*out = (size_t)(value * mult);
	return 0;
}

/*
 * The one table of SHMRIG_* variables read through shmrig__option_size() and
 * shmrig__option_string(), with what makes a value valid. A bad value warns
 * once per variable (its own flag: a second bad variable is reported too) and
 * the caller's default is used; the API value, checked by its caller, is
 * -EINVAL when bad (STYLE habit 10).
 */
struct env_option {
	const char *name;
	int (*check)(const char *value); /* a string: 0, or -errno with words; NULL: any */
	int warned;
};

static struct env_option env_options[] = {
	{ "SHMRIG_PREFIX", shmrig__check_prefix, 0 },
	{ "SHMRIG_ARENA_SIZE", NULL, 0 },
	{ "SHMRIG_POOL_MAX", NULL, 0 },
	/* channel_uring.c checks that it is 0 or 1 (and warns) itself */
	{ "SHMRIG_URING_SQPOLL", NULL, 0 },
};

/* A variable missing from the table above (add it there) is read unchecked
 * but for being a size, and its warnings share this entry's flag. */
static struct env_option unlisted = { "", NULL, 0 };

static struct env_option *env_option(const char *name)
{
	for (size_t i = 0; i < sizeof(env_options) / sizeof(env_options[0]); i++)
		if (strcmp(env_options[i].name, name) == 0)
			return &env_options[i];
	return &unlisted;
}

/* "64 MiB" for a multiple of 1 MiB, else bytes. */
static void size_words(size_t value, char *text, size_t text_size)
{
	if (value && value % ((size_t)1 << 30) == 0)
		snprintf(text, text_size, "%zu GiB", value >> 30);
	else if (value && value % ((size_t)1 << 20) == 0)
		snprintf(text, text_size, "%zu MiB", value >> 20);
	else
		snprintf(text, text_size, "%zu bytes", value);
}

/*
 * A warning is no failure: checking a variable keeps the caller's last error
 * (it may be reporting an earlier failure).
 */
#define SAVED_ERROR_SIZE 512 /* error.c's buffer */

size_t shmrig__option_size(size_t api_value, const char *env_name, size_t fallback, size_t max)
{
	struct env_option *option = env_option(env_name);
	char saved[SAVED_ERROR_SIZE], limit[32], default_words[32];
	const char *env;
	size_t value;
	int ret;

	if (api_value)
		return api_value;
	env = getenv(env_name);
	if (!env || !*env)
		return fallback;
	snprintf(saved, sizeof(saved), "%s", shmrig_last_error());
	ret = shmrig_parse_size(env, &value);
	shmrig__fail(0, "%s", saved);
	size_words(fallback, default_words, sizeof(default_words));
	if ((ret && ret != -ERANGE) || (!ret && value == 0)) {
		shmrig__warn_once(&option->warned,
				  "%s='%s' is not a size (digits, then K, M or G; above 0); using the "
				  "default (%s)",
				  env_name, env, default_words);
		return fallback;
	}
	if (ret == -ERANGE || value > max) {
		size_words(max, limit, sizeof(limit));
		shmrig__warn_once(&option->warned,
				  "%s='%s' is above the largest valid value (%s); using the "
				  "default (%s)",
				  env_name, env, limit, default_words);
		return fallback;
	}
	return value;
}

const char *shmrig__option_string(const char *api_value, const char *env_name, const char *fallback)
{
	struct env_option *option = env_option(env_name);
	char saved[SAVED_ERROR_SIZE];
	const char *env;
	int ret;

	if (api_value && *api_value)
		return api_value;
	env = getenv(env_name);
	if (!env || !*env)
		return fallback;
	if (!option->check)
		return env;
	snprintf(saved, sizeof(saved), "%s", shmrig_last_error());
	ret = option->check(env);
	if (ret)
		shmrig__warn_once(&option->warned,
				  "%s='%s' is not valid (%s); using the default ('%s')", env_name,
				  env, shmrig_last_error(), fallback ? fallback : "");
	shmrig__fail(0, "%s", saved);
	return ret ? fallback : env;
}

bool shmrig__valid_name(const char *name, size_t max_len)
{
	size_t len;

	if (!name)
		return false;
	len = strlen(name);
	if (len == 0 || len > max_len)
		return false;
	for (const char *p = name; *p; p++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
		      (*p >= '0' && *p <= '9') || *p == '_' || *p == '.' || *p == '-'))
			return false;
	return true;
}

int shmrig__check_prefix(const char *prefix)
{
	size_t len = strlen(prefix);

	if (len == 0 || len > SHMRIG_PREFIX_MAX)
		return shmrig__fail(-EINVAL, "prefix '%s' must have 1 to %d characters", prefix,
				    SHMRIG_PREFIX_MAX);
	for (const char *p = prefix; *p; p++)
		if (!(*p >= 'a' && *p <= 'z') && !(*p >= 'A' && *p <= 'Z') &&
		    !(*p >= '0' && *p <= '9') && *p != '_' && *p != '.')
			return shmrig__fail(-EINVAL,
					    "prefix '%s' may hold only letters, digits, '_' and '.'",
					    prefix);
	return 0;
}
