"""Data-parallel inference over AWS NeuronCores.

``neuron_dp.DataParallel`` has the interface of ``torch_neuronx.DataParallel`` (a user's code
changes in one line) over the ``dataparallel`` Rust engine: one compiled model (a NEFF)
replicated on several NeuronCores, each batch split along ``dim``, run concurrently, and
gathered in row order into numpy arrays (or torch tensors, when torch tensors came in).

    import neuron_dp
    model = neuron_dp.DataParallel("model.neff", device_ids=None, dim=0)
    y = model(x)

The runtime library is found as the Rust crates find it: ``$NRT_DYLIB_PATH``, then
``libnrt.so.1`` (aws-neuronx-runtime-lib).
"""

from ._errors import (
    BatcherClosedError,
    ConfigError,
    DeadlineExceededError,
    DeviceError,
    Error,
    InputError,
    LibraryNotFoundError,
    QueueFullError,
)
from ._native import Batcher, DataParallel, __version__, runtime_info

__all__ = [
    "Batcher",
    "BatcherClosedError",
    "ConfigError",
    "DataParallel",
    "DeadlineExceededError",
    "DeviceError",
    "Error",
    "InputError",
    "LibraryNotFoundError",
    "QueueFullError",
    "__version__",
    "runtime_info",
]
