//! Shared helpers for the mock's integration tests: find and open the built cdylib, call its
//! C ABI through safe wrappers, and run a test body in a child process with its own
//! environment (libnrt allows one runtime per process, and the runtime reads its environment
//! at `nrt_init`).
//!
//! Child processes: the workspace's one harness, `nrt_mock::testing`. `in_child("name", env)`
//! re-executes the current test binary to run only test `name`, with a clean mock
//! environment, a private `NRT_MOCK_LOCK_DIR` and `env`, and a timeout; in the parent it
//! asserts the child passed and returns `false`, in the child it returns `true` so the body
//! runs. `ChildTest` is the same with more options and an outcome to assert on.
#![allow(dead_code, unreachable_pub, unused_imports)]

use std::ffi::{CString, c_char, c_void};
use std::path::PathBuf;
use std::sync::OnceLock;

use neuron_sys::bindings::*;
use nrt_mock::control::Mock;
use nrt_mock::counters::Counters;
use nrt_mock::neff::MockModel;

pub use nrt_mock::testing::{ChildTest, child_only, in_child, is_child};

/// The mock library (`nrt_mock::testing::library_path`): `$NRT_DYLIB_PATH`, else
/// `target/<profile>/libnrt_mock.so` derived from this test executable.
pub fn lib_path() -> PathBuf {
    nrt_mock::testing::library_path()
}

macro_rules! api_struct {
    ($($field:ident : $ty:ty),* $(,)?) => {
        /// Every export of the mock, resolved from the cdylib.
        pub struct Api { $(pub $field: $ty,)* pub mock: Mock }
        fn load_api() -> Api {
            let path = lib_path();
            // SAFETY: the mock's initialisers have no preconditions; the library is leaked
            // below, so the function pointers stay valid for the process.
            let lib = unsafe { libloading::Library::new(&path) }.expect("open mock");
            let lib: &'static libloading::Library = Box::leak(Box::new(lib));
            Api {
                $($field: {
                    let name = concat!(stringify!($field), "\0");
                    // SAFETY: the symbol's type is the loader's typedef, which the mock pins
                    // its export to at compile time.
                    *unsafe { lib.get::<$ty>(name.as_bytes()) }.expect(name)
                },)*
                mock: Mock::open(&path).expect("mock controls"),
            }
        }
    };
}

api_struct! {
    nrt_init: nrt_init_fn,
    nrt_close: nrt_close_fn,
    nrt_get_version: nrt_get_version_fn,
    nrt_get_status_as_str: nrt_get_status_as_str_fn,
    nrt_get_total_nc_count: nrt_get_total_nc_count_fn,
    nrt_get_visible_nc_count: nrt_get_visible_nc_count_fn,
    nrt_get_total_vnc_count: nrt_get_total_vnc_count_fn,
    nrt_get_visible_vnc_count: nrt_get_visible_vnc_count_fn,
    nrt_load: nrt_load_fn,
    nrt_unload: nrt_unload_fn,
    nrt_get_model_tensor_info: nrt_get_model_tensor_info_fn,
    nrt_free_model_tensor_info: nrt_free_model_tensor_info_fn,
    nrt_get_model_info: nrt_get_model_info_fn,
    nrt_get_model_instance_count: nrt_get_model_instance_count_fn,
    nrt_allocate_tensor_set: nrt_allocate_tensor_set_fn,
    nrt_destroy_tensor_set: nrt_destroy_tensor_set_fn,
    nrt_add_tensor_to_tensor_set: nrt_add_tensor_to_tensor_set_fn,
    nrt_get_tensor_from_tensor_set: nrt_get_tensor_from_tensor_set_fn,
    nrt_execute: nrt_execute_fn,
    nrt_execute_repeat: nrt_execute_repeat_fn,
    nrt_tensor_allocate: nrt_tensor_allocate_fn,
    nrt_tensor_free: nrt_tensor_free_fn,
    nrt_tensor_read: nrt_tensor_read_fn,
    nrt_tensor_write: nrt_tensor_write_fn,
    nrt_tensor_get_size: nrt_tensor_get_size_fn,
    nrt_tensor_allocate_empty: nrt_tensor_allocate_empty_fn,
    nrt_tensor_attach_buffer: nrt_tensor_attach_buffer_fn,
    nrt_tensor_allocate_slice: nrt_tensor_allocate_slice_fn,
    nrt_tensor_get_va: nrt_tensor_get_va_fn,
    nrt_tensor_memset: nrt_tensor_memset_fn,
    nrt_tensor_copy: nrt_tensor_copy_fn,
}

/// The mock's exports (opened once per process).
pub fn api() -> &'static Api {
    static API: OnceLock<Api> = OnceLock::new();
    API.get_or_init(load_api)
}

/// Unwraps a resolved export.
#[macro_export]
macro_rules! f {
    ($name:ident) => {
        $crate::common::api().$name.expect(stringify!($name))
    };
}

/// Handles travel as `usize` so test threads can share them.
pub type H = usize;

pub fn init() -> NRT_STATUS {
    // SAFETY: NULL version strings are accepted by the mock (as by libnrt).
    unsafe { f!(nrt_init)(NRT_FRAMEWORK_TYPE_NO_FW, std::ptr::null(), std::ptr::null()) }
}

pub fn init_ok() {
    assert_eq!(init(), NRT_SUCCESS, "nrt_init");
}

pub fn close() {
    // SAFETY: no other call is in flight.
    unsafe { f!(nrt_close)() }
}

fn out_u32(func: unsafe extern "C" fn(*mut u32) -> NRT_STATUS) -> Result<u32, NRT_STATUS> {
    let mut n = u32::MAX;
    // SAFETY: `n` is a writable u32.
    let s = unsafe { func(&mut n) };
    if s == NRT_SUCCESS { Ok(n) } else { Err(s) }
}

pub fn total() -> Result<u32, NRT_STATUS> {
    out_u32(f!(nrt_get_total_nc_count))
}

pub fn visible() -> Result<u32, NRT_STATUS> {
    let v = out_u32(f!(nrt_get_visible_nc_count));
    assert_eq!(v, out_u32(f!(nrt_get_visible_vnc_count)));
    v
}

pub fn load_bytes(bytes: &[u8], vnc: i32) -> Result<H, NRT_STATUS> {
    let mut m = std::ptr::null_mut();
    // SAFETY: `bytes` is readable for its length and `m` writable.
    let s = unsafe { f!(nrt_load)(bytes.as_ptr().cast(), bytes.len(), vnc, -1, &mut m) };
    if s == NRT_SUCCESS { Ok(m as H) } else { Err(s) }
}

pub fn load(model: &MockModel, vnc: i32) -> H {
    load_bytes(&model.to_neff_bytes(), vnc).expect("nrt_load")
}

pub fn unload(m: H) -> NRT_STATUS {
    // SAFETY: the mock looks handles up instead of dereferencing them.
    unsafe { f!(nrt_unload)(m as *mut nrt_model_t) }
}

pub fn model_vnc(m: H) -> u32 {
    let mut info = nrt_model_info_t { vnc: u32::MAX };
    let mut n = 0usize;
    // SAFETY: `info` is writable for its size, `n` for a usize.
    let s = unsafe {
        f!(nrt_get_model_info)(
            m as *const nrt_model_t,
            &mut info,
            size_of_val(&info),
            &mut n,
        )
    };
    assert_eq!((s, n), (NRT_SUCCESS, 4));
    info.vnc
}

pub fn alloc(placement: nrt_tensor_placement_t, vnc: i32, size: usize) -> Result<H, NRT_STATUS> {
    let mut t = std::ptr::null_mut();
    // SAFETY: `t` is writable; the name is a valid C string.
    let s = unsafe { f!(nrt_tensor_allocate)(placement, vnc, size, c"t".as_ptr(), &mut t) };
    if s == NRT_SUCCESS { Ok(t as H) } else { Err(s) }
}

pub fn device(vnc: i32, size: usize) -> H {
    alloc(NRT_TENSOR_PLACEMENT_DEVICE, vnc, size).expect("nrt_tensor_allocate")
}

pub fn free(t: H) {
    let mut p = t as *mut nrt_tensor_t;
    // SAFETY: `p` is a readable and writable pointer variable.
    unsafe { f!(nrt_tensor_free)(&mut p) };
    assert!(p.is_null());
}

pub fn write(t: H, offset: usize, data: &[u8]) -> NRT_STATUS {
    // SAFETY: `data` is readable for its length.
    unsafe {
        f!(nrt_tensor_write)(
            t as *mut nrt_tensor_t,
            data.as_ptr().cast(),
            offset,
            data.len(),
        )
    }
}

pub fn read(t: H, offset: usize, n: usize) -> Result<Vec<u8>, NRT_STATUS> {
    let mut v = vec![0u8; n];
    let s =
        // SAFETY: `v` is writable for n bytes.
        unsafe { f!(nrt_tensor_read)(t as *const nrt_tensor_t, v.as_mut_ptr().cast(), offset, n) };
    if s == NRT_SUCCESS { Ok(v) } else { Err(s) }
}

pub fn size(t: H) -> usize {
    // SAFETY: the mock looks handles up instead of dereferencing them.
    unsafe { f!(nrt_tensor_get_size)(t as *const nrt_tensor_t) }
}

pub fn new_set() -> H {
    let mut s = std::ptr::null_mut();
    // SAFETY: `s` is writable.
    assert_eq!(unsafe { f!(nrt_allocate_tensor_set)(&mut s) }, NRT_SUCCESS);
    s as H
}

pub fn destroy_set(s: H) {
    let mut p = s as *mut c_void;
    // SAFETY: `p` is a readable and writable pointer variable.
    unsafe { f!(nrt_destroy_tensor_set)(&mut p) };
    assert!(p.is_null());
}

pub fn add(set: H, name: &str, t: H) -> NRT_STATUS {
    let name = CString::new(name).unwrap();
    // SAFETY: `name` is a valid C string.
    unsafe {
        f!(nrt_add_tensor_to_tensor_set)(set as *mut c_void, name.as_ptr(), t as *mut nrt_tensor_t)
    }
}

pub fn get(set: H, name: &str) -> Result<H, NRT_STATUS> {
    let name = CString::new(name).unwrap();
    let mut t = 0x5a5a as *mut nrt_tensor_t;
    let s =
        // SAFETY: `name` is a valid C string and `t` writable.
        unsafe { f!(nrt_get_tensor_from_tensor_set)(set as *mut c_void, name.as_ptr(), &mut t) };
    if s == NRT_SUCCESS {
        Ok(t as H)
    } else {
        assert_eq!(t as usize, 0x5a5a, "output must be untouched on failure");
        Err(s)
    }
}

pub fn execute(m: H, ins: H, outs: H) -> NRT_STATUS {
    // SAFETY: the mock looks handles up instead of dereferencing them.
    unsafe {
        f!(nrt_execute)(
            m as *mut nrt_model_t,
            ins as *const c_void,
            outs as *mut c_void,
        )
    }
}

pub fn counters() -> Counters {
    api().mock.counters().expect("counters")
}

pub fn status_name(s: NRT_STATUS) -> String {
    // SAFETY: the mock returns a static NUL-terminated string.
    unsafe { std::ffi::CStr::from_ptr(f!(nrt_get_status_as_str)(s)) }
        .to_string_lossy()
        .into_owned()
}

/// A model loaded with device tensors for every input and output, in two sets.
pub struct Bound {
    pub model: H,
    pub ins: H,
    pub outs: H,
    pub inputs: Vec<H>,
    pub outputs: Vec<H>,
}

pub fn bind(spec: &MockModel, vnc: i32) -> Bound {
    let model = load(spec, vnc);
    let core = model_vnc(model) as i32;
    let (ins, outs) = (new_set(), new_set());
    let mk = |set: H, list: &[nrt_mock::neff::TensorSpec]| -> Vec<H> {
        list.iter()
            .map(|t| {
                let h = device(core, t.size_bytes().unwrap() as usize);
                assert_eq!(add(set, &t.name, h), NRT_SUCCESS);
                h
            })
            .collect()
    };
    let inputs = mk(ins, &spec.inputs);
    let outputs = mk(outs, &spec.outputs);
    Bound {
        model,
        ins,
        outs,
        inputs,
        outputs,
    }
}

pub fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

pub fn bytes_f32(b: &[u8]) -> Vec<f32> {
    b.chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect()
}

pub fn bytes_i32(b: &[u8]) -> Vec<i32> {
    b.chunks_exact(4)
        .map(|c| i32::from_le_bytes(c.try_into().unwrap()))
        .collect()
}

pub fn c(s: &str) -> CString {
    CString::new(s).unwrap()
}

pub const NULL: *const c_char = std::ptr::null();
