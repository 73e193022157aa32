/* SPDX-License-Identifier: MIT */
/*
 * session handlers: the built-in handlers (echo, checksum, scale), the
 * checksum they and the stress driver share, and the scratch memory a handler
 * gets from shmrig_handler_alloc() for the length of one call.
 */
#include "session/session_internal.h"
#include "base/internal.h"

#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <xxhash.h>

struct scratch_node {
	struct scratch_node *next;
	max_align_t data[];
};

/* ---- the checksum ---- */

static int hash_array(XXH3_state_t *state, const struct shmrig_array *array)
{
	uint64_t nbytes;
	int ret = shmrig_array_nbytes(array, &nbytes);

	if (ret)
		return ret;
	if (nbytes && !array->data)
		return shmrig__fail(-EINVAL, "checksum: an array of %llu bytes has no data",
				    (unsigned long long)nbytes);
	if (nbytes)
		XXH3_64bits_update(state, array->data, (size_t)nbytes);
	return 0;
}

static int hash_named(XXH3_state_t *state, const struct shmrig_named_array *arrays, uint32_t n)
{
	if (n && !arrays)
		return shmrig__fail(-EINVAL, "checksum: %u arrays but no array list", n);
	for (uint32_t i = 0; i < n; i++) {
		int ret = hash_array(state, &arrays[i].array);

		if (ret)
			return ret;
	}
	return 0;
}

int shmrig_session_checksum(const struct shmrig_value *value, uint64_t *out)
{
	XXH3_state_t *state;
	int ret = 0;

	if (!value || !out)
		return shmrig__fail(-EINVAL, "checksum: NULL argument");
	state = XXH3_createState();
	if (!state)
		return shmrig__fail(-ENOMEM, "checksum: out of memory");
	XXH3_64bits_reset(state);
	switch (value->kind) {
	case SHMRIG_KIND_BYTES:
		if (value->bytes.len && !value->bytes.data)
			ret = shmrig__fail(-EINVAL, "checksum: %llu bytes but no data",
					   (unsigned long long)value->bytes.len);
		else if (value->bytes.len)
			XXH3_64bits_update(state, value->bytes.data, (size_t)value->bytes.len);
		break;
	case SHMRIG_KIND_NDARRAY:
		ret = hash_array(state, &value->array);
		break;
	case SHMRIG_KIND_TABLE:
		ret = hash_named(state, value->table.columns, value->table.ncolumns);
		break;
	case SHMRIG_KIND_DATASET:
		if (value->dataset.ngroups && !value->dataset.groups)
			ret = shmrig__fail(-EINVAL, "checksum: %u groups but no group list",
					   value->dataset.ngroups);
		for (uint32_t g = 0; !ret && g < value->dataset.ngroups; g++)
			ret = hash_named(state, value->dataset.groups[g].variables,
					 value->dataset.groups[g].nvariables);
		break;
	case SHMRIG_KIND_USER:
		ret = shmrig__fail(-ENOTSUP, "checksum: a user value's bytes are its codec's");
		break;
	default:
		ret = shmrig__fail(-EINVAL, "checksum: unknown value kind %d", (int)value->kind);
	}
	if (!ret)
		*out = XXH3_64bits_digest(state);
	XXH3_freeState(state);
	return ret;
}

/* ---- handlers ---- */

void *shmrig_handler_alloc(struct shmrig_handler_call *call, size_t size)
{
	struct scratch_node *node;

	if (!call || !call->scratch || size > SIZE_MAX - sizeof(*node))
		return NULL;
	node = calloc(1, sizeof(*node) + size);
	if (!node)
		return NULL;
	node->next = call->scratch->head;
	call->scratch->head = node;
	return node->data;
}

void shmrig__session_scratch_free(struct shmrig_handler_scratch *scratch)
{
	while (scratch->head) {
		struct scratch_node *next = scratch->head->next;

		free(scratch->head);
		scratch->head = next;
	}
}

int shmrig_handler_error(int err, const char *fmt, ...)
{
	char words[ERROR_TEXT_MAX];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(words, sizeof(words), fmt, ap);
	va_end(ap);
	return shmrig__fail(err, "%s", words);
}

static int echo_handler(void *ctx, struct shmrig_handler_call *call)
{
	(void)ctx;
	call->response = *call->request;
	/* a view of the request: the session releases the request itself */
	call->response.storage = NULL;
	return 0;
}

static int checksum_handler(void *ctx, struct shmrig_handler_call *call)
{
	uint64_t *sum = shmrig_handler_alloc(call, sizeof(*sum));
	int ret;

	(void)ctx;
	if (!sum)
		return shmrig_handler_error(-ENOMEM, "checksum: out of memory");
	ret = shmrig_session_checksum(call->request, sum);
	if (ret)
		return ret;
	call->response = (struct shmrig_value){
		.kind = SHMRIG_KIND_NDARRAY,
		.array = { .dtype = SHMRIG_DTYPE_UINT64,
			   .ndim = 1,
			   .shape = { 1 },
			   .order = 'C',
			   .data = sum },
	};
	return 0;
}

static int scale_handler(void *ctx, struct shmrig_handler_call *call)
{
	const struct shmrig_value *req = call->request;
	uint64_t nbytes, count;
	void *out;

	(void)ctx;
	if (req->kind != SHMRIG_KIND_NDARRAY ||
	    (req->array.dtype != SHMRIG_DTYPE_FLOAT32 && req->array.dtype != SHMRIG_DTYPE_FLOAT64))
		return shmrig_handler_error(-EINVAL,
					    "takes a float32 or float64 ndarray, not %s %s",
					    req->kind == SHMRIG_KIND_NDARRAY ? "an ndarray of" :
									       "a value of kind",
					    req->kind == SHMRIG_KIND_NDARRAY ?
						    shmrig_dtype_name(req->array.dtype) :
						    shmrig_kind_name(req->kind));
	if (shmrig_array_nbytes(&req->array, &nbytes) || nbytes > SIZE_MAX)
		return shmrig_handler_error(-EINVAL, "scale: bad array");
	out = shmrig_handler_alloc(call, nbytes ? (size_t)nbytes : 1);
	if (!out)
		return shmrig_handler_error(-ENOMEM, "scale: out of memory for %llu bytes",
					    (unsigned long long)nbytes);
	count = nbytes / shmrig_dtype_size(req->array.dtype);
	if (req->array.dtype == SHMRIG_DTYPE_FLOAT32) {
		const float *in = req->array.data;
		float factor = (float)call->arg, *o = out;

		for (uint64_t i = 0; i < count; i++)
			o[i] = in[i] * factor;
	} else {
		const double *in = req->array.data;
		double *o = out;

		for (uint64_t i = 0; i < count; i++)
			o[i] = in[i] * call->arg;
	}
	call->response.kind = SHMRIG_KIND_NDARRAY;
	call->response.array = req->array;
	call->response.array.data = out;
	return 0;
}

int shmrig_session_add_builtin_handlers(shmrig_session *sess)
{
	int ret = shmrig_session_handler(sess, "echo", echo_handler, NULL);

	if (!ret)
		ret = shmrig_session_handler(sess, "checksum", checksum_handler, NULL);
	if (!ret)
		ret = shmrig_session_handler(sess, "scale", scale_handler, NULL);
	if (!ret)
		ret = shmrig_session_handler(sess, "echo_view", echo_handler, NULL);
	if (!ret)
		sess->handlers[sess->nhandlers - 1].pass_back = true;
	return ret;
}
