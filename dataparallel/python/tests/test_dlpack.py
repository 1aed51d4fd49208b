"""The DLPack path with a capsule built by hand (what a torch bfloat16 tensor hands over),
so bfloat16 inputs are tested without torch: numpy has no bfloat16."""

import ctypes

import numpy as np
import pytest

import neuron_dp

CAPSULE_NAME = b"dltensor"  # must outlive the capsules that point to it


class DLDevice(ctypes.Structure):
    _fields_ = [("device_type", ctypes.c_int32), ("device_id", ctypes.c_int32)]


class DLDataType(ctypes.Structure):
    _fields_ = [("code", ctypes.c_uint8), ("bits", ctypes.c_uint8), ("lanes", ctypes.c_uint16)]


class DLTensor(ctypes.Structure):
    _fields_ = [
        ("data", ctypes.c_void_p),
        ("device", DLDevice),
        ("ndim", ctypes.c_int32),
        ("dtype", DLDataType),
        ("shape", ctypes.POINTER(ctypes.c_int64)),
        ("strides", ctypes.POINTER(ctypes.c_int64)),
        ("byte_offset", ctypes.c_uint64),
    ]


class DLManagedTensor(ctypes.Structure):
    _fields_ = [("dl_tensor", DLTensor), ("manager_ctx", ctypes.c_void_p), ("deleter", ctypes.c_void_p)]


_capsule_new = ctypes.pythonapi.PyCapsule_New
_capsule_new.restype = ctypes.py_object
_capsule_new.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_void_p]


class Producer:
    """Exports `array`'s memory as a DLPack tensor of the given type code and bits."""

    def __init__(self, array, code, bits, device_type=1, strides=None):
        self.array = array
        self.shape = (ctypes.c_int64 * array.ndim)(*array.shape)
        self.strides = None if strides is None else (ctypes.c_int64 * array.ndim)(*strides)
        self.managed = DLManagedTensor()
        t = self.managed.dl_tensor
        t.data = array.ctypes.data
        t.device = DLDevice(device_type, 0)
        t.ndim = array.ndim
        t.dtype = DLDataType(code, bits, 1)
        t.shape = self.shape
        t.strides = self.strides

    def __dlpack__(self, **kwargs):
        return _capsule_new(ctypes.addressof(self.managed), CAPSULE_NAME, None)


def test_bfloat16_inputs_through_dlpack(neff):
    path = neff("bf", "identity", [("x", "bfloat16", (1, 4))], [("y", "bfloat16", (1, 4))])
    model = neuron_dp.DataParallel(path, device_ids=[0, 1])
    bits = (np.arange(12, dtype=np.uint16) + 0x3F80).reshape(3, 4)  # bfloat16 1.0 and up
    y = model(Producer(bits, code=4, bits=16))
    assert y.dtype == np.uint16, "numpy callers get bfloat16 outputs as their raw bits"
    np.testing.assert_array_equal(y, bits)


def test_dlpack_tensors_the_engine_cannot_read_are_refused(neff):
    path = neff("f", "identity", [("x", "float32", (1, 4))], [("y", "float32", (1, 4))])
    model = neuron_dp.DataParallel(path, device_ids=[0])
    x = np.ones((2, 4), dtype=np.float32)
    with pytest.raises(neuron_dp.InputError, match="CPU"):
        model(Producer(x, code=2, bits=32, device_type=2))
    with pytest.raises(neuron_dp.InputError, match="not supported"):
        model(Producer(x, code=5, bits=32))
    with pytest.raises(neuron_dp.InputError, match="not contiguous"):
        model(Producer(x, code=2, bits=32, strides=(1, 2)))
    np.testing.assert_array_equal(model(Producer(x, code=2, bits=32, strides=(4, 1))), x)
