//! Tensors against the mock libnrt: byte and typed access, bounds checks, memset, slices,
//! and caller buffers attached as storage (zero-copy, proven with the mock's counters).

mod common;

use neuron_rt::{DeviceId, Error, Placement, Runtime, Tensor, TensorSet};
use nrt_mock::testing::in_child;
use proptest::prelude::*;

fn device_tensor(size: usize, name: &str) -> Tensor {
    Tensor::allocate_device(&common::runtime(), DeviceId::new(0), size, name)
        .unwrap_or_else(|e| panic!("allocating `{name}`: {e}"))
}

#[test]
fn write_read_round_trip() {
    let mut tensor = device_tensor(64, "bytes");
    assert_eq!(tensor.size(), 64);
    assert_eq!(tensor.name(), "bytes");
    assert_eq!(tensor.placement(), Placement::Device(DeviceId::new(0)));

    let data: Vec<u8> = (0..64u8).map(|b| b.wrapping_mul(37)).collect();
    tensor.write(0, &data).expect("write all");
    let mut back = vec![0u8; 64];
    tensor.read(0, &mut back).expect("read all");
    assert_eq!(back, data);

    tensor.write(10, &[0xAA; 5]).expect("write part");
    let mut part = [0u8; 7];
    tensor.read(9, &mut part).expect("read part");
    assert_eq!(part, [data[9], 0xAA, 0xAA, 0xAA, 0xAA, 0xAA, data[15]]);

    // Empty accesses at the very end are in bounds.
    tensor.write(64, &[]).expect("empty write at the end");
    tensor.read(64, &mut []).expect("empty read at the end");
}

#[test]
fn host_tensors_work_like_device_tensors() {
    let mut tensor = Tensor::allocate_host(&common::runtime(), 16, "host").expect("host");
    assert_eq!(tensor.placement(), Placement::Host);
    tensor.write_slice(0, &[1u32, 2, 3, 4]).expect("write");
    assert_eq!(tensor.to_vec::<u32>().expect("read"), [1, 2, 3, 4]);
}

#[test]
fn out_of_bounds_is_caught_before_libnrt() {
    let mut tensor = device_tensor(16, "small");
    // `OutOfBounds` (not `Nrt`) shows the check ran before any libnrt call.
    let err = tensor.write(10, &[0; 7]).expect_err("past the end");
    match &err {
        Error::OutOfBounds {
            op,
            tensor,
            offset,
            len,
            size,
        } => {
            assert_eq!(*op, "nrt_tensor_write");
            assert_eq!(tensor, "small");
            assert_eq!((*offset, *len, *size), (10, 7, 16));
        }
        other => panic!("expected OutOfBounds, got {other:?}"),
    }
    let text = err.to_string();
    assert!(
        text.contains("10..17") && text.contains("16 bytes"),
        "{text}"
    );
    assert!(text.contains("`small`"), "{text}");

    let mut out = [0u8; 1];
    let err = tensor.read(16, &mut out).expect_err("one past the end");
    assert!(
        matches!(
            err,
            Error::OutOfBounds {
                op: "nrt_tensor_read",
                ..
            }
        ),
        "{err:?}"
    );
    // An offset that overflows does not wrap around.
    let err = tensor.read(usize::MAX, &mut out).expect_err("overflow");
    assert!(matches!(err, Error::OutOfBounds { .. }), "{err:?}");
    let err = tensor.write(17, &[]).expect_err("empty write past the end");
    assert!(matches!(err, Error::OutOfBounds { .. }), "{err:?}");
    let err = tensor.memset(8, 0, 9).expect_err("memset past the end");
    assert!(
        matches!(
            err,
            Error::OutOfBounds {
                op: "nrt_tensor_memset",
                ..
            }
        ),
        "{err:?}"
    );
    let err = tensor.slice(12, 8, "s").expect_err("slice past the end");
    assert!(matches!(err, Error::OutOfBounds { .. }), "{err:?}");
    // Typed: element 3 of f32 is bytes 12..16, element 4 is past the end.
    tensor.write_slice(3, &[1.5f32]).expect("last element");
    let err = tensor.write_slice(4, &[1.5f32]).expect_err("element 4");
    assert!(
        matches!(
            err,
            Error::OutOfBounds {
                offset: 16,
                len: 4,
                ..
            }
        ),
        "{err:?}"
    );
    let mut two = [0f32; 2];
    let err = tensor
        .read_slice(usize::MAX / 2, &mut two)
        .expect_err("huge index");
    assert!(matches!(err, Error::OutOfBounds { .. }), "{err:?}");
}

#[test]
fn typed_access_with_f32() {
    let mut tensor = device_tensor(32, "floats");
    let values = [
        1.0f32,
        -2.5,
        3.25,
        f32::MAX,
        f32::MIN_POSITIVE,
        -0.0,
        7.0,
        1e-3,
    ];
    tensor.write_slice(0, &values).expect("write_slice");
    let all: Vec<f32> = tensor.to_vec().expect("to_vec");
    assert_eq!(all.len(), 8);
    for (a, b) in all.iter().zip(&values) {
        assert_eq!(a.to_bits(), b.to_bits());
    }
    tensor
        .write_slice(2, &[9.0f32, 10.0])
        .expect("write at element 2");
    let mut mid = [0f32; 4];
    tensor.read_slice(1, &mut mid).expect("read_slice");
    assert_eq!(mid, [-2.5, 9.0, 10.0, f32::MIN_POSITIVE]);

    // A size that is not a whole number of elements.
    let odd = device_tensor(10, "odd");
    let err = odd.to_vec::<f32>().expect_err("10 bytes of f32");
    assert!(matches!(err, Error::InvalidArgument { .. }), "{err:?}");
    assert!(err.to_string().contains("10 bytes"), "{err}");
    assert_eq!(odd.to_vec::<u16>().expect("u16").len(), 5);
}

#[test]
fn memset_sets_the_range_only() {
    let mut tensor = device_tensor(16, "memset");
    tensor.write(0, &[1; 16]).expect("write");
    tensor.memset(4, 0xEE, 8).expect("memset");
    let mut back = [0u8; 16];
    tensor.read(0, &mut back).expect("read");
    let mut want = [1u8; 16];
    want[4..12].fill(0xEE);
    assert_eq!(back, want);
    tensor.memset(0, 0, 0).expect("empty memset");
}

#[test]
fn slices_alias_their_parent() {
    let mut parent = device_tensor(32, "parent");
    parent.write_slice(0, &[0u32; 8]).expect("zero");
    {
        let mut middle = parent.slice_mut(8, 16, "middle").expect("slice_mut");
        assert_eq!(middle.size(), 16);
        assert_eq!(middle.name(), "middle");
        middle.write(0, &[7; 4]).expect("write through the slice");
        middle.memset(12, 9, 4).expect("memset through the slice");
        let err = middle.write(14, &[0; 4]).expect_err("past the slice's end");
        assert!(
            matches!(err, Error::OutOfBounds { size: 16, .. }),
            "{err:?}"
        );
    }
    let mut back = [0u8; 32];
    parent.read(0, &mut back).expect("read parent");
    let mut want = [0u8; 32];
    want[8..12].fill(7);
    want[20..24].fill(9);
    assert_eq!(back, want, "writes through slice_mut show in the parent");

    // Writes to the parent show in a read-only slice.
    parent.write(24, &[5; 8]).expect("write parent");
    let tail = parent.slice(20, 12, "tail").expect("slice");
    let mut tail_bytes = [0u8; 12];
    tail.read(0, &mut tail_bytes).expect("read slice");
    assert_eq!(tail_bytes, [9, 9, 9, 9, 5, 5, 5, 5, 5, 5, 5, 5]);
    // Two read-only slices may coexist.
    let head = parent.slice(0, 4, "head").expect("second slice");
    assert_eq!(head.to_vec::<u8>().expect("head"), [0; 4]);
}

#[test]
fn tensor_names_with_nul_are_rejected() {
    let err = Tensor::allocate_device(&common::runtime(), DeviceId::new(0), 4, "a\0b")
        .expect_err("NUL in name");
    assert!(matches!(err, Error::InvalidArgument { .. }), "{err:?}");
    let mut set = TensorSet::new(&common::runtime()).expect("set");
    let err = set
        .insert("x\0", device_tensor(4, "x"))
        .expect_err("NUL in set key");
    assert!(matches!(err, Error::InvalidArgument { .. }), "{err:?}");
}

#[test]
fn wrong_core_is_an_invalid_argument() {
    let runtime = common::runtime();
    let err = Tensor::allocate_device(&runtime, DeviceId::new(99), 4, "far")
        .expect_err("nc:99 is not ours");
    match &err {
        Error::InvalidArgument { op, message } => {
            assert_eq!(*op, "nrt_tensor_allocate");
            assert!(message.contains("nc:99"), "{message}");
            assert!(message.contains("NEURON_RT_VISIBLE_CORES"), "{message}");
        }
        other => panic!("expected InvalidArgument, got {other:?}"),
    }
}

#[test]
fn attached_buffers_are_used_without_copies() {
    if !in_child("attached_buffers_are_used_without_copies", &[]) {
        return;
    }
    let runtime = Runtime::init().expect("init");
    let model = common::load(&runtime, &common::affine(), 0);
    let info = &model.inputs()[0];
    let n = info.elements();
    assert_eq!(info.size, n * 4);

    let x = common::values(n, 0.5);
    let mut y = vec![0f32; n];
    common::mock().reset_counters();
    {
        let input = Tensor::attach(&runtime, bytemuck::cast_slice(&x), "x0").expect("attach");
        assert_eq!(input.placement(), Placement::Attached);
        assert_eq!(input.size(), n * 4);
        let mut output = Tensor::attach_mut(&runtime, bytemuck::cast_slice_mut(&mut y), "y0")
            .expect("attach_mut");
        let mut inputs = TensorSet::new(&runtime).expect("inputs");
        inputs.add("x0", &input).expect("add input");
        let mut outputs = TensorSet::new(&runtime).expect("outputs");
        outputs.add_mut("y0", &mut output).expect("add output");
        model.execute(&inputs, &mut outputs).expect("execute");
        model.execute(&inputs, &mut outputs).expect("execute again");

        // A read-only attachment cannot receive outputs.
        let mut bad = TensorSet::new(&runtime).expect("set");
        bad.add("y0", &input).expect("add read-only");
        let err = model
            .execute(&inputs, &mut bad)
            .expect_err("read-only output");
        assert!(matches!(err, Error::InvalidArgument { .. }), "{err:?}");
        assert!(err.to_string().contains("y0"), "{err}");
    }
    let want: Vec<f32> = x.iter().map(|v| v * 2.0 + 1.0).collect();
    assert_eq!(y, want);
    let counters = common::counters();
    assert_eq!(counters.bytes_written, 0, "inputs were not copied in");
    assert_eq!(counters.bytes_read, 0, "outputs were not copied out");
    assert_eq!(counters.executions[0], 2);
    assert_eq!(
        (
            counters.live_tensors,
            counters.live_tensor_sets,
            counters.live_models
        ),
        (0, 0, 1),
        "only the model is left"
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    /// Reads and writes at any offset and length never panic, fail exactly when the range
    /// leaves the tensor, and round-trip when they succeed.
    #[test]
    fn bounds_checks_match_the_range(offset in 0usize..80, len in 0usize..80, byte: u8) {
        const SIZE: usize = 48;
        let mut tensor = device_tensor(SIZE, "prop");
        let data = vec![byte; len];
        let fits = offset + len <= SIZE;
        let written = tensor.write(offset, &data);
        prop_assert_eq!(written.is_ok(), fits, "write {:?}", written);
        let mut out = vec![0u8; len];
        let read = tensor.read(offset, &mut out);
        prop_assert_eq!(read.is_ok(), fits, "read {:?}", read);
        let memset = tensor.memset(offset, byte, len);
        prop_assert_eq!(memset.is_ok(), fits, "memset {:?}", memset);
        if fits {
            prop_assert_eq!(out, data);
        } else {
            for err in [written.unwrap_err(), read.unwrap_err(), memset.unwrap_err()] {
                let is_oob = matches!(err, Error::OutOfBounds { offset: o, len: l, size: SIZE, .. } if o == offset && l == len);
                prop_assert!(is_oob, "{:?}", err);
            }
        }
    }

    /// Typed element access at huge indices never overflows or panics.
    #[test]
    fn typed_bounds_never_panic(first in any::<usize>(), len in 0usize..6) {
        let mut tensor = device_tensor(16, "typed");
        let data = vec![1.0f32; len];
        let fits = first.checked_mul(4).and_then(|o| o.checked_add(len * 4)).is_some_and(|end| end <= 16);
        prop_assert_eq!(tensor.write_slice(first, &data).is_ok(), fits);
        let mut out = vec![0f32; len];
        prop_assert_eq!(tensor.read_slice(first, &mut out).is_ok(), fits);
    }
}

#[test]
fn failed_attach_keeps_the_empty_handle_on_runtimes_that_crash_freeing_it() {
    // The mock aborts, as runtimes before 2.29.40 crash, when an empty tensor is freed after
    // a failed attach.
    if !nrt_mock::testing::in_child(
        "failed_attach_keeps_the_empty_handle_on_runtimes_that_crash_freeing_it",
        &[("NRT_MOCK_RUNTIME_VERSION", "2.29.0")],
    ) {
        return;
    }
    let runtime = neuron_rt::Runtime::init().expect("init");
    assert!(!runtime.frees_failed_attach_safely());
    let error = neuron_rt::Tensor::attach(&runtime, &[], "empty").expect_err("size 0");
    assert_eq!(error.status(), Some(neuron_rt::Status::Invalid), "{error}");
    // The kept handle serves the next attach, which works and frees normally.
    let buffer = [7u8; 16];
    let attached = neuron_rt::Tensor::attach(&runtime, &buffer, "x").expect("attach");
    let mut out = [0u8; 16];
    attached.read(0, &mut out).expect("read");
    assert_eq!(out, buffer);
    drop(attached);
    let error = neuron_rt::Tensor::attach(&runtime, &[], "again").expect_err("size 0");
    assert_eq!(error.status(), Some(neuron_rt::Status::Invalid), "{error}");
    // Keeping the handle keeps nothing else alive: the last Runtime closes libnrt, which
    // releases the kept handle.
    drop(runtime);
    assert_eq!(common::raw_allocate_set_status(), neuron_rt::Status::Closed);
}

#[test]
fn tensors_of_4_gib_are_refused_on_runtimes_that_overflow_them() {
    if !nrt_mock::testing::in_child(
        "tensors_of_4_gib_are_refused_on_runtimes_that_overflow_them",
        &[("NRT_MOCK_RUNTIME_VERSION", "2.30.49")],
    ) {
        return;
    }
    let runtime = neuron_rt::Runtime::init().expect("init");
    assert_eq!(runtime.max_tensor_bytes(), Some((4 << 30) - 1));
    // The mock, like those runtimes, would allocate 64 bytes for this and report success.
    let error = neuron_rt::Tensor::allocate_device(
        &runtime,
        neuron_rt::DeviceId::new(0),
        (4 << 30) + 64,
        "huge",
    )
    .expect_err("refused before libnrt overflows it");
    let message = error.to_string();
    assert!(
        message.contains("4 GiB") && message.contains("plan choice"),
        "{message}"
    );
    // Below the limit nothing changes.
    neuron_rt::Tensor::allocate_device(&runtime, neuron_rt::DeviceId::new(0), 64, "small")
        .expect("small tensor");
}
