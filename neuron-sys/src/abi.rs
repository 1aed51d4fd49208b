//! Compile-time assertions that pin the libnrt ABI facts this workspace relies on
//! (ARCHITECTURE.md, "libnrt facts the binding relies on"). A wrong header edit fails the build here,
//! long before it could corrupt memory at run time.

use core::mem::{align_of, offset_of, size_of};

use crate::bindings::*;

// Struct layouts: `nrt_tensor_info_t` is 296 bytes, 8-byte aligned.
const _: () = assert!(size_of::<nrt_tensor_info_t>() == 296);
const _: () = assert!(align_of::<nrt_tensor_info_t>() == 8);
const _: () = assert!(offset_of!(nrt_tensor_info_t, name) == 0);
const _: () = assert!(offset_of!(nrt_tensor_info_t, usage) == 256);
const _: () = assert!(offset_of!(nrt_tensor_info_t, size) == 264);
const _: () = assert!(offset_of!(nrt_tensor_info_t, dtype) == 272);
const _: () = assert!(offset_of!(nrt_tensor_info_t, shape) == 280);
const _: () = assert!(offset_of!(nrt_tensor_info_t, ndim) == 288);
const _: () = assert!(NRT_TENSOR_NAME_MAX == 256);

// Struct layouts: the info array is a u64 count with entries from offset 8.
const _: () = assert!(size_of::<nrt_tensor_info_array_t>() == 8);
const _: () = assert!(offset_of!(nrt_tensor_info_array_t, tensor_count) == 0);
const _: () = assert!(offset_of!(nrt_tensor_info_array_t, tensor_array) == 8);

// Struct layouts: `nrt_version_t` is 224 bytes.
const _: () = assert!(size_of::<nrt_version_t>() == 224);
const _: () = assert!(offset_of!(nrt_version_t, rt_major) == 0);
const _: () = assert!(offset_of!(nrt_version_t, rt_minor) == 8);
const _: () = assert!(offset_of!(nrt_version_t, rt_patch) == 16);
const _: () = assert!(offset_of!(nrt_version_t, rt_maintenance) == 24);
const _: () = assert!(offset_of!(nrt_version_t, rt_detail) == 32);
const _: () = assert!(offset_of!(nrt_version_t, git_hash) == 160);
const _: () = assert!(RT_VERSION_DETAIL_LEN == 128 && GIT_HASH_LEN == 64);

// Struct layouts: `nrt_model_info_t` starts as one u32.
const _: () = assert!(size_of::<nrt_model_info_t>() == 4);
const _: () = assert!(offset_of!(nrt_model_info_t, vnc) == 0);

// Struct layouts: every C enum is 4 bytes.
const _: () = assert!(size_of::<NRT_STATUS>() == 4);
const _: () = assert!(size_of::<nrt_tensor_placement_t>() == 4);
const _: () = assert!(size_of::<nrt_framework_type_t>() == 4);
const _: () = assert!(size_of::<nrt_tensor_usage_t>() == 4);
const _: () = assert!(size_of::<nrt_dtype_t>() == 4);

// Status codes: the values the rest of the workspace names.
const _: () = assert!(NRT_SUCCESS == 0 && NRT_FAILURE == 1 && NRT_INVALID == 2);
const _: () = assert!(NRT_RESOURCE == 4 && NRT_TIMEOUT == 5 && NRT_LOAD_NOT_ENOUGH_NC == 9);
const _: () = assert!(NRT_UNINITIALIZED == 13 && NRT_CLOSED == 14);
const _: () = assert!(NRT_EXEC_UNIT_UNRECOVERABLE == 101 && NRT_EXEC_BAD_INPUT == 1002);

// Dtype encodings: the newer numbering, of runtime 2.30 and later.
const _: () = assert!(NRT_DTYPE_FLOAT32 == 0xA && NRT_DTYPE_UINT64 == 0x1);
const _: () = assert!(NRT_DTYPE_INT64 == 0xC && NRT_DTYPE_BFLOAT16 == 0x6);

// Function pointers are one machine word, so `Option<fn>` is too (the loader relies on it).
const _: () = assert!(size_of::<nrt_init_fn>() == size_of::<usize>());
