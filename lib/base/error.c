/* SPDX-License-Identifier: MIT */
#include "base/internal.h"

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static _Thread_local char last_error[512];

static const char *const lib_messages[] = {
	[SHMRIG_ESTALE - SHMRIG_EBASE] = "stale reference: the block was freed and reused",
	[SHMRIG_ENOTLIVE - SHMRIG_EBASE] = "block is not allocated",
	[SHMRIG_EBADREF - SHMRIG_EBASE] = "reference does not address a block",
	[SHMRIG_ECORRUPT - SHMRIG_EBASE] = "shared metadata is corrupt",
	[SHMRIG_ELEAK - SHMRIG_EBASE] = "live blocks remained at close",
	[SHMRIG_EFORK - SHMRIG_EBASE] = "handle belongs to another process",
	[SHMRIG_ECLAIMED - SHMRIG_EBASE] = "block was claimed already (a frame decoded twice?)",
};

const char *shmrig_strerror(int err)
{
	if (err == INT_MIN)
		return "unknown shmrig error";
	if (err < 0)
		err = -err;
	if (err == 0)
		return "success";
	if (err > SHMRIG_EBASE && err < SHMRIG_ELAST)
		return lib_messages[err - SHMRIG_EBASE];
	if (err < SHMRIG_EBASE)
		return strerror(err);
	return "unknown shmrig error";
}

const char *shmrig_last_error(void)
{
	return last_error;
}

int shmrig__fail(int err, const char *fmt, ...)
{
	/* Formatted aside first: callers may pass shmrig_last_error() itself as
	 * an argument (adding context to an inner failure's words), and
	 * vsnprintf into the buffer it reads from is undefined. */
	char message[sizeof(last_error)];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(message, sizeof(message), fmt, ap);
	va_end(ap);
	memcpy(last_error, message, sizeof(last_error));
	return err;
}

void shmrig__clear_error(void)
{
	last_error[0] = '\0';
}

void shmrig__warn_once(int *key, const char *fmt, ...)
{
	va_list ap;

	if (__atomic_exchange_n(key, 1, __ATOMIC_RELAXED))
		return;
	fputs("shmrig: warning: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}
