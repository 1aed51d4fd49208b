"""Example 1 (the reference's default): replicate a model on every NeuronCore the process
owns and run a batch split along dim 0.

    NRT_DYLIB_PATH=/path/to/libnrt_mock.so python examples/default.py [model.neff]
"""

import numpy as np

import neuron_dp
from _mock import model_path

AFFINE = {"kind": "affine", "scale": 2.0, "bias": 1.0}
path = model_path("default", AFFINE, [("x", "float32", (1, 8))], [("y", "float32", (1, 8))])

model = neuron_dp.DataParallel(path)  # torch_neuronx.DataParallel(model_neuron)
x = np.random.default_rng(0).standard_normal((len(model.cores) * 4, 8), dtype=np.float32)
y = model(x)
np.testing.assert_allclose(y, x * 2.0 + 1.0, rtol=1e-6)
print(f"ran {x.shape[0]} rows on {len(model.cores)} cores -> {y.shape}")
