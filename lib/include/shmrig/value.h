/* SPDX-License-Identifier: MIT */
#ifndef SHMRIG_VALUE_H
#define SHMRIG_VALUE_H

/*
 * value: the C values codecs encode and decode.
 *
 * A value the caller builds points at the caller's memory and owns nothing.
 * A decoded value views pool memory: it holds a lease on every block it views
 * (and owns the small host allocations its description needs: column arrays,
 * names). shmrig_value_release() drops all of it; until then the views stay
 * valid, and the blocks stay allocated in the pool.
 */

#include <shmrig/common.h>

#ifdef __cplusplus
extern "C" {
#endif

enum shmrig_dtype {
	SHMRIG_DTYPE_INVALID = 0,
	SHMRIG_DTYPE_INT8,
	SHMRIG_DTYPE_INT16,
	SHMRIG_DTYPE_INT32,
	SHMRIG_DTYPE_INT64,
	SHMRIG_DTYPE_UINT8,
	SHMRIG_DTYPE_UINT16,
	SHMRIG_DTYPE_UINT32,
	SHMRIG_DTYPE_UINT64,
	SHMRIG_DTYPE_FLOAT32,
	SHMRIG_DTYPE_FLOAT64,
	SHMRIG_DTYPE_BOOL, /* one byte, 0 or 1 */
	SHMRIG_DTYPE_COUNT
};

/* Bytes per element; 0 for an invalid dtype. */
SHMRIG_API size_t shmrig_dtype_size(enum shmrig_dtype dtype);
/* numpy-style name ("int8", ..., "float64", "bool"); NULL for an invalid dtype. */
SHMRIG_API const char *shmrig_dtype_name(enum shmrig_dtype dtype);
/* The dtype of a name (length len, not necessarily terminated); INVALID if unknown. */
SHMRIG_API enum shmrig_dtype shmrig_dtype_from_name(const char *name, size_t len);

#define SHMRIG_MAX_DIMS 16

/* An n-dimensional array, contiguous in C (row-major) or F (column-major) order. */
struct shmrig_array {
	enum shmrig_dtype dtype;
	uint32_t ndim;                   /* 0 (a scalar) .. SHMRIG_MAX_DIMS */
	uint64_t shape[SHMRIG_MAX_DIMS]; /* first ndim used */
	char order;                      /* 'C' or 'F' */
	uint8_t reserved[7];
	void *data; /* nbytes of elements; may be NULL when nbytes is 0 */
};

/*
 * Elements and bytes of an array, with every overflow checked.
 * Errors: -EINVAL bad dtype, ndim or order; -EOVERFLOW the size does not fit.
 */
SHMRIG_NODISCARD SHMRIG_API int shmrig_array_nbytes(const struct shmrig_array *array,
						    uint64_t *nbytes);

struct shmrig_named_array {
	const char *name;
	struct shmrig_array array;
};

/* Columnar table: every column a 1-d array of nrows elements. */
struct shmrig_table {
	uint64_t nrows;
	uint32_t ncolumns;
	uint32_t reserved;
	struct shmrig_named_array *columns;
};

/* Named groups of named arrays of any shape (the seed's composite). */
struct shmrig_group {
	const char *name;
	uint32_t nvariables;
	uint32_t reserved;
	struct shmrig_named_array *variables;
};

struct shmrig_dataset {
	uint32_t ngroups;
	uint32_t reserved;
	struct shmrig_group *groups;
};

enum shmrig_kind {
	SHMRIG_KIND_BYTES = 0,
	SHMRIG_KIND_NDARRAY,
	SHMRIG_KIND_TABLE,
	SHMRIG_KIND_DATASET,
	SHMRIG_KIND_USER, /* a type tag from shmrig_registry_user_type() plus a pointer */
	SHMRIG_KIND_COUNT
};

#define SHMRIG_KIND_BIT(kind) (1u << (kind))

struct shmrig_value_storage; /* what a decoded value owns; opaque */

struct shmrig_value {
	enum shmrig_kind kind;
	uint32_t user_type; /* SHMRIG_KIND_USER */
	union {
		struct {
			const void *data;
			uint64_t len;
		} bytes;
		struct shmrig_array array;
		struct shmrig_table table;
		struct shmrig_dataset dataset;
		void *user;
	};
	struct shmrig_value_storage *storage; /* NULL for values the caller built */
};

/*
 * Drop everything a decoded value holds: its leases on pool blocks (each block
 * is freed when its last lease goes) and its host memory. The value is zeroed.
 * A value the caller built (storage NULL) is only zeroed. Returns 0, or the
 * first error of freeing a block (everything is released anyway).
 */
SHMRIG_NODISCARD SHMRIG_API int shmrig_value_release(struct shmrig_value *value);

/* Number of leases a decoded value holds: one a persistent buffer, so a table
 * of 4 columns packed in one block holds 4 (on that one block). */
SHMRIG_API uint32_t shmrig_value_leases(const struct shmrig_value *value);

/* Name of a kind: "bytes", "ndarray", "table", "dataset", "user"; NULL if invalid. */
SHMRIG_API const char *shmrig_kind_name(enum shmrig_kind kind);

#ifdef __cplusplus
}
#endif

#endif
