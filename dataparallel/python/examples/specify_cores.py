"""Example 2 (the reference's "specify NeuronCores"): replicate on chosen cores only, given
as "nc:N" strings or integers, zero-based within NEURON_RT_VISIBLE_CORES.

    NRT_DYLIB_PATH=/path/to/libnrt_mock.so python examples/specify_cores.py [model.neff]
"""

import numpy as np

import neuron_dp
from _mock import model_path

path = model_path("cores", "core_id", [("x", "float32", (1, 8))], [("core", "int32", (1, 1))])

model = neuron_dp.DataParallel(path, device_ids=["nc:0", "nc:1"])
print("cores (logical, physical):", model.cores)
x = np.zeros((4, 8), dtype=np.float32)
ran_on = model(x).ravel().tolist()
print("each row ran on physical core:", ran_on)
assert ran_on == [0, 0, 1, 1]
