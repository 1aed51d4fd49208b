"""Example 3 (the reference's "dim != 0"): split the batch along another dimension. Dynamic
batching does not apply, so that dimension must split evenly over the cores.

    NRT_DYLIB_PATH=/path/to/libnrt_mock.so python examples/dim_not_zero.py [model.neff]
"""

import numpy as np

import neuron_dp
from _mock import model_path

# Compiled for [3, 2, 5]: dim 1 is the split dim, 2 rows of it per core.
path = model_path("dim1", "identity", [("x", "float32", (3, 2, 5))], [("y", "float32", (3, 2, 5))])

model = neuron_dp.DataParallel(path, device_ids=[0, 1], dim=1)
x = np.arange(3 * 4 * 5, dtype=np.float32).reshape(3, 4, 5)  # 2 cores x 2 on dim 1
y = model(x)
np.testing.assert_array_equal(y, x)
print(f"split {x.shape} along dim 1 over {len(model.cores)} cores -> {y.shape}")
