"""Example 5 (the reference's disable_dynamic_batching()): every batch must then be exactly
cores x compiled batch rows; anything else is an InputError before any device call.

    NRT_DYLIB_PATH=/path/to/libnrt_mock.so python examples/disable_dynamic_batching.py [model.neff]
"""

import numpy as np

import neuron_dp
from _mock import model_path

path = model_path("static", "identity", [("x", "float32", (4, 16))], [("y", "float32", (4, 16))])

model = neuron_dp.DataParallel(path, device_ids=[0, 1])
model.disable_dynamic_batching()
x = np.ones((2 * 4, 16), dtype=np.float32)
np.testing.assert_array_equal(model(x), x)
print("8 rows = 2 cores x compiled batch 4: ok")
try:
    model(np.ones((5, 16), dtype=np.float32))
except neuron_dp.InputError as error:
    print("5 rows refused:", error)
else:
    raise SystemExit("5 rows should have been refused")
