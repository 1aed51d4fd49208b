"""Errors that depend on the process environment run in a fresh interpreter each: injected
device faults, a missing runtime library, and Ctrl-C during a long call."""

import os
import signal
import subprocess
import sys

import neuron_dp
from conftest import run_python

PRELUDE = """
import numpy as np, neuron_dp, sys
from neuron_dp.testing import write_mock_neff
path = write_mock_neff(sys.argv[1] if len(sys.argv) > 1 else "m.neff", "m", "identity",
                       [("x", "float32", (1, 4))], [("y", "float32", (1, 4))], exec_us=%d)
"""


def test_exception_hierarchy():
    assert issubclass(neuron_dp.InputError, ValueError)
    assert issubclass(neuron_dp.DeviceError, RuntimeError)
    assert issubclass(neuron_dp.LibraryNotFoundError, OSError)
    for cls in (neuron_dp.InputError, neuron_dp.DeviceError, neuron_dp.ConfigError,
                neuron_dp.LibraryNotFoundError, neuron_dp.QueueFullError,
                neuron_dp.DeadlineExceededError, neuron_dp.BatcherClosedError):
        assert issubclass(cls, neuron_dp.Error)


def test_device_error_names_chunk_core_and_status(tmp_path):
    code = PRELUDE % 0 + """
model = neuron_dp.DataParallel(path, device_ids=[0, 1, 2, 3])
x = np.ones((4, 4), dtype=np.float32)
try:
    model(x)
except neuron_dp.DeviceError as e:
    print("caught", e.chunk, e.core, e.physical_core, e.status, isinstance(e, RuntimeError))
    print("message", e)
np.testing.assert_array_equal(model(x[:2]), x[:2])
print("still usable")
"""
    result = run_python(code, {"NRT_MOCK_FAULTS": "2:1:6"}, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "caught 2 2 2 6 True" in result.stdout
    assert "still usable" in result.stdout


def test_missing_library_lists_the_paths_tried(tmp_path):
    missing = str(tmp_path / "no-such-libnrt.so")
    code = PRELUDE % 0 + """
try:
    neuron_dp.DataParallel(path)
except neuron_dp.LibraryNotFoundError as e:
    print("paths", e.paths)
    print("oserror", isinstance(e, OSError))
"""
    result = run_python(code, {"NRT_DYLIB_PATH": missing}, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert f"paths ['{missing}']" in result.stdout
    assert "oserror True" in result.stdout


def test_ctrl_c_interrupts_a_long_call_and_leaves_the_model_usable(tmp_path, counters):
    # 4 cores x 2000 rows of 20 ms each: 10 s if nothing stopped it.
    code = PRELUDE % 20000 + """
import ctypes, os
model = neuron_dp.DataParallel(path, device_ids=[0, 1, 2, 3])
x = np.ones((8000, 4), dtype=np.float32)
lib = ctypes.CDLL(os.environ["NRT_DYLIB_PATH"])
print("started", flush=True)
try:
    model(x)
    print("finished")
except KeyboardInterrupt:
    executions = model.metrics()["cores"]
    print("interrupted", sum(c["executions"] for c in executions), flush=True)
y = model(x[:8])
np.testing.assert_array_equal(y, x[:8])
print("usable")
"""
    proc = subprocess.Popen(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout.readline().strip() == "started"
        # Let the first wave start, then interrupt.
        import time

        time.sleep(0.5)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    lines = out.splitlines()
    interrupted = [l for l in lines if l.startswith("interrupted")]
    assert interrupted, out
    executions = int(interrupted[0].split()[1])
    assert 0 < executions < 8000, "stopped between waves, long before the whole batch ran"
    assert "usable" in lines
