"""Shared fixtures: mock NEFFs in a temporary directory, and the mock runtime's counters.

The tests run against the mock libnrt (nrt-mock): NRT_DYLIB_PATH must name it, as
``cargo xtask python-test`` (and ``cargo xtask mock-test``) arrange.
"""

import ctypes
import os
import subprocess
import sys

import pytest

# Fewer simulated cores than the mock's default 24: fewer worker threads on small machines.
os.environ.setdefault("NRT_MOCK_TOTAL_CORES", "8")

from neuron_dp.testing import write_mock_neff  # noqa: E402

MAX_CORES = 128


class Counters(ctypes.Structure):
    """nrt_mock_counters_t (neuron-sys/mock/src/counters.rs)."""

    _fields_ = [("executions", ctypes.c_uint64 * MAX_CORES)] + [
        (name, ctypes.c_uint64)
        for name in (
            "bytes_written",
            "bytes_read",
            "bytes_memset",
            "bytes_copied",
            "live_tensors",
            "live_models",
            "live_tensor_sets",
            "loads",
            "tensor_writes",
            "tensor_reads",
        )
    ]


def _mock_library() -> str:
    path = os.environ.get("NRT_DYLIB_PATH")
    if not path:
        pytest.fail("set NRT_DYLIB_PATH to the mock libnrt (cargo xtask python-test does)")
    return path


class MockCounters:
    """Reads the mock's counters through its exported C functions. The engine opened the same
    file, so ctypes gets the same loaded library and the same counters."""

    def __init__(self) -> None:
        self.lib = ctypes.CDLL(_mock_library())
        self.lib.nrt_mock_get_counters.argtypes = [ctypes.POINTER(Counters), ctypes.c_size_t]
        self.lib.nrt_mock_get_counters.restype = ctypes.c_int

    def read(self) -> Counters:
        out = Counters()
        status = self.lib.nrt_mock_get_counters(ctypes.byref(out), ctypes.sizeof(out))
        assert status == 0
        return out

    def reset(self) -> None:
        self.lib.nrt_mock_reset_counters()


@pytest.fixture
def counters() -> MockCounters:
    return MockCounters()


@pytest.fixture
def neff(tmp_path):
    """Writes a mock NEFF in the test's temporary directory: neff(name, op, inputs, outputs, ...)."""

    def make(name="model", op="identity", inputs=None, outputs=None, **kwargs):
        return write_mock_neff(tmp_path / f"{name}.neff", name, op, inputs, outputs, **kwargs)

    return make


def run_python(code: str, env_extra=None, timeout=120, **kwargs):
    """Runs `code` in a fresh interpreter (for environment-dependent behaviour: faults,
    library paths, signals) and returns the CompletedProcess."""
    env = dict(os.environ)
    env.update(env_extra or {})
    return subprocess.run(
        [sys.executable, "-c", code],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        **kwargs,
    )
