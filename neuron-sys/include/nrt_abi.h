/*
 * nrt_abi.h - this project's own declaration of the libnrt C ABI.
 *
 * Written from the behaviour and layouts described in ARCHITECTURE.md ("libnrt facts the
 * binding relies on"), from AWS's public runtime documentation; no text is taken from AWS's headers. Names follow libnrt's
 * C names so that the generated Rust items carry them too.
 *
 * Target: Linux x86-64 (LP64). Every enum below has small non-negative values, so a C
 * compiler gives it the size and alignment of `int`. The Rust side models each enum as a
 * 4-byte integer plus named constants, never as a Rust `enum`, because libnrt may return
 * values this file does not list.
 *
 * Functions are declared as pointer typedefs (`<name>_fn`), not prototypes: the library is
 * opened at run time with dlopen, and the Rust loader resolves each symbol into a field of
 * the matching typedef. `cargo xtask bindgen` turns this file into neuron-sys/src/bindings.rs.
 *
 * Must compile as C99 on its own: `cc -std=c99 -Wall -Wextra -Werror -fsyntax-only nrt_abi.h`.
 */
#ifndef NEURON_SYS_NRT_ABI_H
#define NEURON_SYS_NRT_ABI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---------------------------------------------------------------------------------------- */
/* Constants (ARCHITECTURE.md, "Struct layouts").                                            */
/* ---------------------------------------------------------------------------------------- */

/** Bytes in `nrt_tensor_info_t::name`, including the terminating NUL. */
#define NRT_TENSOR_NAME_MAX 256
/** Bytes in `nrt_version_t::rt_detail`. */
#define RT_VERSION_DETAIL_LEN 128
/** Bytes in `nrt_version_t::git_hash`. */
#define GIT_HASH_LEN 64

/* ---------------------------------------------------------------------------------------- */
/* Status codes (ARCHITECTURE.md, "Status codes"). 0 is success; unknown values must be     */
/* tolerated.                                                                               */
/* ---------------------------------------------------------------------------------------- */

typedef enum NRT_STATUS {
    NRT_SUCCESS = 0,
    NRT_FAILURE = 1,
    NRT_INVALID = 2,
    NRT_INVALID_HANDLE = 3,
    NRT_RESOURCE = 4,
    NRT_TIMEOUT = 5,
    NRT_HW_ERROR = 6,
    NRT_QUEUE_FULL = 7,
    NRT_LOAD_NOT_ENOUGH_NC = 9,
    NRT_UNSUPPORTED_NEFF_VERSION = 10,
    NRT_FAIL_HOST_MEM_ALLOC = 11,
    NRT_UNINITIALIZED = 13,
    NRT_CLOSED = 14,
    NRT_QUEUE_EMPTY = 15,
    NRT_EXEC_UNIT_UNRECOVERABLE = 101,
    NRT_EXEC_BAD_INPUT = 1002,
    NRT_EXEC_COMPLETED_WITH_NUM_ERR = 1003,
    NRT_EXEC_COMPLETED_WITH_ERR = 1004,
    NRT_EXEC_NC_BUSY = 1005,
    NRT_EXEC_OOB = 1006,
    NRT_COLL_PENDING = 1100,
    NRT_EXEC_HW_ERR_COLLECTIVES = 1200,
    NRT_EXEC_HW_ERR_HBM_UE = 1201,
    NRT_EXEC_HW_ERR_NC_UE = 1202,
    NRT_EXEC_HW_ERR_DMA_ABORT = 1203,
    NRT_EXEC_SW_NQ_OVERFLOW = 1204,
    NRT_EXEC_HW_ERR_REPAIRABLE_HBM_UE = 1205,
    NRT_NETWORK_PROXY_FAILURE = 1206
} NRT_STATUS;

/* ---------------------------------------------------------------------------------------- */
/* Enums (ARCHITECTURE.md, "Dtype encodings").                                               */
/* ---------------------------------------------------------------------------------------- */

/** Where a tensor's storage lives. */
typedef enum nrt_tensor_placement_t {
    NRT_TENSOR_PLACEMENT_DEVICE = 0,
    NRT_TENSOR_PLACEMENT_HOST = 1, /* deprecated, at most 4 MB */
    NRT_TENSOR_PLACEMENT_VIRTUAL = 2
} nrt_tensor_placement_t;

/** Which framework is calling `nrt_init`; only tags the caller for tooling. */
typedef enum nrt_framework_type_t {
    NRT_FRAMEWORK_TYPE_INVALID = 0,
    NRT_FRAMEWORK_TYPE_NO_FW = 1,
    NRT_FRAMEWORK_TYPE_TENSORFLOW = 2,
    NRT_FRAMEWORK_TYPE_PYTORCH = 3,
    NRT_FRAMEWORK_TYPE_MXNET = 4,
    NRT_FRAMEWORK_TYPE_PRECHECK = 5
} nrt_framework_type_t;

/** Whether a model tensor is an input or an output. */
typedef enum nrt_tensor_usage_t {
    NRT_TENSOR_USAGE_INPUT = 0,
    NRT_TENSOR_USAGE_OUTPUT = 1
} nrt_tensor_usage_t;

/**
 * Element types, in the hardware encoding used by runtime 2.30 and later (reference 4.5,
 * column B). Older runtimes may report the sequential encoding (column A); the safe layer
 * decodes by runtime version and treats the dtype as advisory next to `size`.
 */
typedef enum nrt_dtype_t {
    NRT_DTYPE_UNKNOWN = 0x0,
    NRT_DTYPE_UINT64 = 0x1,
    NRT_DTYPE_INT8 = 0x2,
    NRT_DTYPE_UINT8 = 0x3,
    NRT_DTYPE_INT16 = 0x4,
    NRT_DTYPE_UINT16 = 0x5,
    NRT_DTYPE_BFLOAT16 = 0x6,
    NRT_DTYPE_FLOAT16 = 0x7,
    NRT_DTYPE_INT32 = 0x8,
    NRT_DTYPE_UINT32 = 0x9,
    NRT_DTYPE_FLOAT32 = 0xA,
    NRT_DTYPE_FP32R = 0xB,
    NRT_DTYPE_INT64 = 0xC,
    NRT_DTYPE_FP8_E3 = 0xD,
    NRT_DTYPE_FP8_E4 = 0xE,
    NRT_DTYPE_FP8_E5 = 0xF
} nrt_dtype_t;

/* ---------------------------------------------------------------------------------------- */
/* Opaque handles.                                                                           */
/* ---------------------------------------------------------------------------------------- */

/** A loaded model; only ever held by pointer. */
typedef struct nrt_model nrt_model_t;
/** A tensor; only ever held by pointer. */
typedef struct nrt_tensor nrt_tensor_t;
/** A name -> tensor container; libnrt makes it a plain `void`. */
typedef void nrt_tensor_set_t;

/* ---------------------------------------------------------------------------------------- */
/* Structs (ARCHITECTURE.md, "Struct layouts").                                              */
/* ---------------------------------------------------------------------------------------- */

/** One model input or output: 296 bytes, 8-byte aligned. */
typedef struct nrt_tensor_info_t {
    char name[NRT_TENSOR_NAME_MAX]; /* offset 0: NUL-terminated tensor-set key */
    nrt_tensor_usage_t usage;       /* offset 256 */
    size_t size;                    /* offset 264: bytes */
    nrt_dtype_t dtype;              /* offset 272: advisory */
    uint32_t *shape;                /* offset 280: `ndim` entries, owned by the array */
    uint32_t ndim;                  /* offset 288 */
} nrt_tensor_info_t;

/**
 * The runtime-allocated array returned by `nrt_get_model_tensor_info`: a 64-bit count at
 * offset 0, then `tensor_count` entries from offset 8. Freed only by
 * `nrt_free_model_tensor_info`.
 */
typedef struct nrt_tensor_info_array_t {
    uint64_t tensor_count;
    nrt_tensor_info_t tensor_array[];
} nrt_tensor_info_array_t;

/** Runtime library version: 224 bytes. */
typedef struct nrt_version_t {
    uint64_t rt_major;
    uint64_t rt_minor;
    uint64_t rt_patch;
    uint64_t rt_maintenance;
    char rt_detail[RT_VERSION_DETAIL_LEN];
    char git_hash[GIT_HASH_LEN];
} nrt_version_t;

/** Versioned model description; may grow at the end. */
typedef struct nrt_model_info_t {
    uint32_t vnc; /* logical core the model is loaded on */
} nrt_model_info_t;

/* ---------------------------------------------------------------------------------------- */
/* Functions, as pointer typedefs. Required since the first public                          */
/* headers: init/close/version, the nc counts, load/unload/execute, tensor info, the four    */
/* tensor-set calls, tensor allocate/free/read/write/get_size. Everything else is optional. */
/* ---------------------------------------------------------------------------------------- */

/* 3.1 Initialisation, version, status */
typedef NRT_STATUS (*nrt_init_fn)(nrt_framework_type_t framework, const char *fw_version,
                                  const char *fal_version);
typedef void (*nrt_close_fn)(void);
typedef NRT_STATUS (*nrt_get_version_fn)(nrt_version_t *ver, size_t size);
typedef const char *(*nrt_get_status_as_str_fn)(NRT_STATUS status);

/* 3.2 NeuronCore counts */
typedef NRT_STATUS (*nrt_get_total_nc_count_fn)(uint32_t *nc_count);
typedef NRT_STATUS (*nrt_get_visible_nc_count_fn)(uint32_t *nc_count);
typedef NRT_STATUS (*nrt_get_total_vnc_count_fn)(uint32_t *vnc_count);
typedef NRT_STATUS (*nrt_get_visible_vnc_count_fn)(uint32_t *vnc_count);

/* 3.3 Model load / unload / introspection */
typedef NRT_STATUS (*nrt_load_fn)(const void *neff_bytes, size_t size, int32_t vnc,
                                  int32_t vnc_count, nrt_model_t **model);
typedef NRT_STATUS (*nrt_unload_fn)(nrt_model_t *model);
typedef NRT_STATUS (*nrt_get_model_tensor_info_fn)(nrt_model_t *model,
                                                   nrt_tensor_info_array_t **info);
typedef NRT_STATUS (*nrt_free_model_tensor_info_fn)(nrt_tensor_info_array_t *info);
typedef NRT_STATUS (*nrt_get_model_info_fn)(const nrt_model_t *model, nrt_model_info_t *info,
                                            size_t info_size_in, size_t *info_size_out);
typedef NRT_STATUS (*nrt_get_model_instance_count_fn)(nrt_model_t *model,
                                                      uint32_t *instance_count);

/* 3.4 Tensor sets */
typedef NRT_STATUS (*nrt_allocate_tensor_set_fn)(nrt_tensor_set_t **result);
typedef void (*nrt_destroy_tensor_set_fn)(nrt_tensor_set_t **tensor_set);
typedef NRT_STATUS (*nrt_add_tensor_to_tensor_set_fn)(nrt_tensor_set_t *tensor_set,
                                                      const char *tensor_name,
                                                      nrt_tensor_t *tensor);
typedef NRT_STATUS (*nrt_get_tensor_from_tensor_set_fn)(nrt_tensor_set_t *tensor_set,
                                                        const char *tensor_name,
                                                        nrt_tensor_t **tensor);

/* 3.5 Execution */
typedef NRT_STATUS (*nrt_execute_fn)(nrt_model_t *model, const nrt_tensor_set_t *input_set,
                                     nrt_tensor_set_t *output_set);
typedef NRT_STATUS (*nrt_execute_repeat_fn)(nrt_model_t *model,
                                            const nrt_tensor_set_t *input_set,
                                            nrt_tensor_set_t *output_set, int repeat_count);

/* 3.6 Tensors */
typedef NRT_STATUS (*nrt_tensor_allocate_fn)(nrt_tensor_placement_t tensor_placement, int vnc,
                                             size_t size, const char *name,
                                             nrt_tensor_t **tensor);
typedef void (*nrt_tensor_free_fn)(nrt_tensor_t **tensor);
typedef NRT_STATUS (*nrt_tensor_read_fn)(const nrt_tensor_t *tensor, void *buf, size_t offset,
                                         size_t size);
typedef NRT_STATUS (*nrt_tensor_write_fn)(nrt_tensor_t *tensor, const void *buf, size_t offset,
                                          size_t size);
typedef size_t (*nrt_tensor_get_size_fn)(const nrt_tensor_t *tensor);
typedef NRT_STATUS (*nrt_tensor_allocate_empty_fn)(const char *name, nrt_tensor_t **tensor);
typedef NRT_STATUS (*nrt_tensor_attach_buffer_fn)(nrt_tensor_t *tensor, void *buffer,
                                                  size_t size);
typedef NRT_STATUS (*nrt_tensor_allocate_slice_fn)(const nrt_tensor_t *tensor_source,
                                                   size_t offset, size_t size,
                                                   const char *name, nrt_tensor_t **tensor_slice);
typedef void *(*nrt_tensor_get_va_fn)(const nrt_tensor_t *tensor);
typedef NRT_STATUS (*nrt_tensor_memset_fn)(nrt_tensor_t *tensor, uint64_t offset, int value,
                                           size_t size);
typedef NRT_STATUS (*nrt_tensor_copy_fn)(const nrt_tensor_t *src, size_t src_offset,
                                         nrt_tensor_t *dst, size_t dst_offset, size_t size);

#endif /* NEURON_SYS_NRT_ABI_H */
