/* SPDX-License-Identifier: MIT */
#include <shmrig/options.h>
#include "internal.h"

#include <ctype.h>
#include <errno.h>
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

size_t shmrig__option_size(size_t api_value, const char *env_name, size_t fallback)
{
	static int warned;
	const char *env;
	size_t value;

	if (api_value)
		return api_value;
	env = getenv(env_name);
	if (!env || !*env)
		return fallback;
	if (shmrig_parse_size(env, &value) || value == 0) {
		shmrig__warn_once(&warned, "%s='%s' is not a size; using the default", env_name,
				  env);
		return fallback;
	}
	return value;
}

const char *shmrig__option_string(const char *api_value, const char *env_name, const char *fallback)
{
	const char *env;

	if (api_value && *api_value)
		return api_value;
	env = getenv(env_name);
	return env && *env ? env : fallback;
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
