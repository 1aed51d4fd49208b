"""Example 4 (the reference's dynamic batching, on by default): any batch size runs, as
pieces of the compiled batch, the last zero-padded and its outputs trimmed.

    NRT_DYLIB_PATH=/path/to/libnrt_mock.so python examples/dynamic_batching.py [model.neff]
"""

import numpy as np

import neuron_dp
from _mock import model_path

AFFINE = {"kind": "affine", "scale": 0.5, "bias": 0.0}
path = model_path("dynamic", AFFINE, [("x", "float32", (4, 16))], [("y", "float32", (4, 16))])

model = neuron_dp.DataParallel(path, device_ids=[0, 1], set_dynamic_batching=True)
for rows in (1, 5, 8, 37):
    x = np.ones((rows, 16), dtype=np.float32)
    y = model(x)
    assert y.shape == (rows, 16)
    np.testing.assert_array_equal(y, x * 0.5)
    pieces = sum(c["pieces"] for c in model.plan(rows))
    print(f"{rows:3d} rows -> {pieces} executions of the compiled batch of 4")
