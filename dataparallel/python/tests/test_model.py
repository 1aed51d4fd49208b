"""neuron_dp.DataParallel against the mock runtime: results, inputs, errors, reports."""

import array
import threading

import numpy as np
import pytest

import neuron_dp

AFFINE = {"kind": "affine", "scale": 2.0, "bias": 0.5}


def affine_model(neff, batch=2, features=4, **kwargs):
    path = neff(
        "affine", AFFINE, [("x", "float32", (batch, features))], [("y", "float32", (batch, features))]
    )
    return neuron_dp.DataParallel(path, **kwargs)


def rows(n, features=4):
    return np.arange(n * features, dtype=np.float32).reshape(n, features)


@pytest.mark.parametrize("n", [0, 1, 3, 8, 16, 17, 100])
def test_any_batch_size_matches_the_reference(neff, n):
    model = affine_model(neff)
    x = rows(n)
    y = model(x)
    assert isinstance(y, np.ndarray)
    assert y.shape == (n, 4) and y.dtype == np.float32
    np.testing.assert_array_equal(y, x * 2.0 + 0.5)


def test_several_inputs_by_position_and_by_keyword(neff):
    path = neff(
        "add", "add", [("a", "float32", (1, 3)), ("b", "float32", (1, 3))], [("s", "float32", (1, 3))]
    )
    model = neuron_dp.DataParallel(path)
    a, b = rows(5, 3), rows(5, 3) * 10
    np.testing.assert_array_equal(model(a, b), a + b)
    np.testing.assert_array_equal(model(b=b, a=a), a + b)
    with pytest.raises(neuron_dp.InputError, match="c"):
        model(a=a, c=b)


def test_several_outputs_come_back_as_a_tuple(neff):
    path = neff(
        "two",
        "identity",
        [("p", "float32", (2, 2)), ("q", "int32", (2, 3))],
        [("p_out", "float32", (2, 2)), ("q_out", "int32", (2, 3))],
    )
    model = neuron_dp.DataParallel(path)
    p = rows(7, 2)
    q = np.arange(21, dtype=np.int32).reshape(7, 3)
    y1, y2 = model(p, q)
    np.testing.assert_array_equal(y1, p)
    np.testing.assert_array_equal(y2, q)
    assert y2.dtype == np.int32


def test_forward_into_writes_the_callers_arrays(neff):
    model = affine_model(neff)
    x = rows(9)
    out = np.full((9, 4), -1, dtype=np.float32)
    assert model.forward_into([x], [out]) is None
    np.testing.assert_array_equal(out, x * 2.0 + 0.5)
    out2 = np.zeros_like(out)
    model.forward_into({"x": x}, {"y": out2})
    np.testing.assert_array_equal(out2, out)
    with pytest.raises(neuron_dp.InputError, match="shares memory"):
        model.forward_into(x, x)
    with pytest.raises(neuron_dp.InputError, match="read-only"):
        ro = np.zeros_like(out)
        ro.flags.writeable = False
        model.forward_into(x, ro)
    with pytest.raises(neuron_dp.InputError):
        model.forward_into(x, np.zeros((8, 4), dtype=np.float32))


def test_inputs_and_outputs_are_not_copied(neff, counters):
    """Bytes the mock moved == the payload: inputs written once, outputs read once."""
    model = affine_model(neff, batch=4, features=16)
    k = len(model.cores)
    x = rows(k * 4 * 3, 16)  # whole pieces on every core: no pad rows
    model(x)  # warm up
    counters.reset()
    y = model(x)
    c = counters.read()
    assert c.bytes_written == x.nbytes
    assert c.bytes_read == y.nbytes
    assert c.bytes_copied == 0
    out = np.empty_like(x)
    counters.reset()
    model.forward_into([x], [out])
    c = counters.read()
    assert (c.bytes_written, c.bytes_read, c.bytes_copied) == (x.nbytes, out.nbytes, 0)


def test_non_contiguous_inputs_are_refused_or_copied_on_request(neff):
    model = affine_model(neff)
    x = rows(8)[::2]
    with pytest.raises(neuron_dp.InputError, match="ascontiguousarray"):
        model(x)
    with pytest.raises(ValueError):
        model(rows(4).T.copy().T)
    copying = affine_model(neff, allow_copy=True)
    np.testing.assert_array_equal(copying(x), x * 2.0 + 0.5)
    np.testing.assert_array_equal(copying([[1, 2, 3, 4]] * 3), np.array([[2.5, 4.5, 6.5, 8.5]] * 3, dtype=np.float32))
    with pytest.raises(neuron_dp.InputError, match="not an array"):
        model([[1.0, 2.0, 3.0, 4.0]])


def test_buffer_protocol_array_interface_and_dlpack(neff):
    model = affine_model(neff)
    x = rows(6)
    expected = x * 2.0 + 0.5

    class ArrayInterface:
        def __init__(self, a):
            self.__array_interface__ = a.__array_interface__
            self._a = a

    class DLPackOnly:
        def __init__(self, a):
            self._a = a

        def __dlpack__(self, **kwargs):
            return self._a.__dlpack__(**kwargs)

        def __dlpack_device__(self):
            return self._a.__dlpack_device__()

    np.testing.assert_array_equal(model(memoryview(x)), expected)
    np.testing.assert_array_equal(model(ArrayInterface(x)), expected)
    np.testing.assert_array_equal(model(DLPackOnly(x)), expected)
    flat = array.array("f", x.ravel().tolist())
    with pytest.raises(neuron_dp.InputError):
        model(flat)  # 1-D: the model wants [n, 4]
    with pytest.raises(neuron_dp.InputError, match="not contiguous"):
        model(DLPackOnly(rows(8)[::2]))


def test_dtype_and_shape_errors_are_input_errors(neff):
    model = affine_model(neff)
    with pytest.raises(neuron_dp.InputError, match="float64"):
        model(rows(4).astype(np.float64))
    with pytest.raises(neuron_dp.InputError):
        model(rows(4).astype(np.int32))
    with pytest.raises(neuron_dp.InputError):
        model(np.zeros((4, 5), dtype=np.float32))
    with pytest.raises(neuron_dp.InputError):
        model()
    err = pytest.raises(ValueError, model, np.zeros((4, 5), dtype=np.float32))
    assert isinstance(err.value, neuron_dp.Error)


def test_device_ids_select_cores_and_core_id_proves_them(neff):
    path = neff("cid", "core_id", [("x", "float32", (1, 2))], [("c", "int32", (1, 1))])
    model = neuron_dp.DataParallel(path, device_ids=[1, 3, 6])
    assert model.cores == [(1, 1), (3, 3), (6, 6)]
    ids = model(np.zeros((3, 2), dtype=np.float32))
    assert ids.ravel().tolist() == [1, 3, 6]
    by_name = neuron_dp.DataParallel(path, device_ids="nc:0,nc:2")
    assert [c[0] for c in by_name.cores] == [0, 2]
    mixed = neuron_dp.DataParallel(path, device_ids=["nc:4", 5])
    assert [c[0] for c in mixed.cores] == [4, 5]
    with pytest.raises(neuron_dp.ConfigError, match="out of range"):
        neuron_dp.DataParallel(path, device_ids=[99])
    with pytest.raises(neuron_dp.ConfigError):
        neuron_dp.DataParallel(path, device_ids=["gpu:0"])


def test_dim_other_than_zero(neff):
    path = neff("d1", "identity", [("x", "float32", (3, 2))], [("y", "float32", (3, 2))])
    model = neuron_dp.DataParallel(path, device_ids=[0, 1], dim=1)
    assert model.dim == 1 and not model.dynamic_batching
    x = np.arange(12, dtype=np.float32).reshape(3, 4)
    np.testing.assert_array_equal(model(x), x)
    with pytest.raises(neuron_dp.InputError):
        model(np.zeros((3, 5), dtype=np.float32))


def test_disable_dynamic_batching(neff):
    model = affine_model(neff, device_ids=[0, 1])
    assert model.dynamic_batching
    model.disable_dynamic_batching()
    assert not model.dynamic_batching
    x = rows(4)
    np.testing.assert_array_equal(model(x), x * 2.0 + 0.5)
    with pytest.raises(neuron_dp.InputError):
        model(rows(5))
    off = affine_model(neff, device_ids=[0, 1], set_dynamic_batching=False)
    with pytest.raises(neuron_dp.InputError):
        off(rows(3))
    assert len(off.plan(4)) == 2
    with pytest.raises(neuron_dp.InputError):
        off.plan(3)


def test_split_size_workers_spread_and_buckets(neff):
    x = rows(23)
    expected = x * 2.0 + 0.5
    split = affine_model(neff, device_ids=[0, 1, 2], split_size=5)
    assert [c["rows"] for c in split.plan(23)] == [5, 5, 5, 5, 3]
    np.testing.assert_array_equal(split(x), expected)
    few = affine_model(neff, num_workers=2)
    assert few.num_workers == 2
    np.testing.assert_array_equal(few(x), expected)
    spread = affine_model(neff, spread_small_calls=True)
    for _ in range(3):
        np.testing.assert_array_equal(spread(x[:1]), expected[:1])
    # Packed: 5 rows on 2 cores run as 3 whole compiled batches of 2, not chunks of 3 and 2.
    assert [c["rows"] for c in affine_model(neff, device_ids=[0, 1]).plan(5)] == [3, 2]
    packed = affine_model(neff, device_ids=[0, 1], pack=True)
    assert [c["rows"] for c in packed.plan(5)] == [2, 2, 1]
    np.testing.assert_array_equal(packed(x[:5]), expected[:5])
    assert packed.metrics()["pad_rows"] == 1
    with pytest.raises(neuron_dp.ConfigError):
        affine_model(neff, pack=True, split_size=2)
    b1 = neff("b1", AFFINE, [("x", "float32", (1, 4))], [("y", "float32", (1, 4))])
    b8 = neff("b8", AFFINE, [("x", "float32", (8, 4))], [("y", "float32", (8, 4))])
    buckets = neuron_dp.DataParallel([b1, b8], device_ids=[0])
    assert buckets.batch_sizes == [1, 8]
    assert buckets.plan(9)[0]["batch_sizes"] == [8, 1]
    np.testing.assert_array_equal(buckets(x), expected)
    with pytest.raises(neuron_dp.ConfigError):
        affine_model(neff, split_size=0)


def test_reports(neff):
    model = affine_model(neff, device_ids=[0, 1])
    model(rows(8))
    m = model.metrics()
    assert m["rows"] == 8 and m["pad_rows"] == 0
    assert [c["core"] for c in m["cores"]] == [0, 1]
    assert sum(c["executions"] for c in m["cores"]) == 4
    assert [c["busy_retries"] for c in m["cores"]] == [0, 0]
    h = model.health()
    assert [c["state"] for c in h] == ["healthy", "healthy"]
    model.readmit(1)
    model.readmit("nc:0")
    with pytest.raises(neuron_dp.ConfigError):
        model.readmit(5)
    assert model.inputs == [{"name": "x", "dtype": "float32", "shape": [2, 4]}]
    assert model.outputs[0]["name"] == "y"
    info = neuron_dp.runtime_info()
    assert info["is_mock"] and info["visible_cores"] == 8 and info["lnc"] == 1
    assert "DataParallel" in repr(model)


def test_eight_python_threads_share_one_model(neff):
    model = affine_model(neff)
    errors = []

    def worker(seed):
        try:
            for i in range(30):
                x = rows(1 + (seed * 7 + i) % 40) + seed
                np.testing.assert_array_equal(model(x), x * 2.0 + 0.5)
        except Exception as e:  # reported below
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(s,)) for s in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


def test_torch_tensors_in_torch_tensors_out(neff):
    torch = pytest.importorskip("torch")
    model = affine_model(neff)
    x = torch.arange(24, dtype=torch.float32).reshape(6, 4)
    y = model(x)
    assert isinstance(y, torch.Tensor)
    assert torch.equal(y, x * 2.0 + 0.5)
    path = neff("bf", "identity", [("x", "bfloat16", (1, 4))], [("y", "bfloat16", (1, 4))])
    bf = neuron_dp.DataParallel(path)
    xb = torch.randn(5, 4).to(torch.bfloat16)
    yb = bf(xb)
    assert yb.dtype == torch.bfloat16 and torch.equal(yb, xb)
