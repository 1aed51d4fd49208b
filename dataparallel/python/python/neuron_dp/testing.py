"""Helpers for tests and examples that run against the mock Neuron runtime (nrt-mock).

:func:`write_mock_neff` writes a mock NEFF: the NEFF container (a 1024-byte header) around
the JSON model description the mock runs (see neuron-sys/mock/src/neff.rs in the
repository). It is the same file ``cargo xtask mock-neff`` writes, without needing cargo.
"""

import hashlib
import json
import os
import struct
from typing import Any, Dict, Iterable, Optional, Sequence, Tuple, Union

__all__ = ["write_mock_neff", "mock_neff_bytes"]

_HEADER_SIZE = 1024
_BUILD_VERSION = b"nrt-mock 0.1.0"

TensorSpec = Tuple[str, str, Sequence[int]]


def _tensors(specs: Iterable[TensorSpec]) -> list:
    return [{"name": n, "dtype": d, "shape": [int(x) for x in s]} for n, d, s in specs]


def mock_neff_bytes(
    name: str,
    op: Union[str, Dict[str, Any]],
    inputs: Sequence[TensorSpec],
    outputs: Sequence[TensorSpec],
    exec_us: int = 0,
    exec_us_per_row: int = 0,
) -> bytes:
    """The bytes of a mock NEFF.

    Args:
        name: the model name (1 to 255 bytes).
        op: ``"identity"``, ``"add"``, ``"core_id"``, or a dict such as
            ``{"kind": "affine", "scale": 2.0, "bias": 1.0}`` or
            ``{"kind": "rowsum", "out_features": 4}``.
        inputs: ``(name, dtype, shape)`` per input; dim 0 is the compiled batch.
        outputs: ``(name, dtype, shape)`` per output.
        exec_us: simulated device time per execution, in microseconds.
        exec_us_per_row: extra simulated time per compiled row.
    """
    payload = {
        "format": "nrt-mock-model",
        "version": 1,
        "name": name,
        "op": {"kind": op} if isinstance(op, str) else dict(op),
        "inputs": _tensors(inputs),
        "outputs": _tensors(outputs),
        "exec_us": int(exec_us),
        "exec_us_per_row": int(exec_us_per_row),
    }
    body = json.dumps(payload).encode()
    encoded = name.encode()
    if not 1 <= len(encoded) <= 255 or b"\0" in encoded:
        raise ValueError("name must be 1 to 255 bytes without NUL")
    header = bytearray(_HEADER_SIZE)
    struct.pack_into("<QQQQQ", header, 0, 1, _HEADER_SIZE, len(body), 2, 0)
    header[40 : 40 + len(_BUILD_VERSION)] = _BUILD_VERSION
    struct.pack_into("<I", header, 168, 1)
    header[204:220] = hashlib.sha256(encoded + b"\0" + body).digest()[:16]
    header[220 : 220 + len(encoded)] = encoded
    struct.pack_into("<I", header, 476, 1)
    struct.pack_into("<I", header, 552, 1)
    return bytes(header) + body


def write_mock_neff(
    path: Union[str, "os.PathLike[str]"],
    name: str = "model",
    op: Union[str, Dict[str, Any]] = "identity",
    inputs: Optional[Sequence[TensorSpec]] = None,
    outputs: Optional[Sequence[TensorSpec]] = None,
    exec_us: int = 0,
    exec_us_per_row: int = 0,
) -> str:
    """Writes a mock NEFF (see :func:`mock_neff_bytes`) and returns its path as a string.

    The default is an identity model ``x: float32[1, 4] -> y: float32[1, 4]``.
    """
    inputs = inputs if inputs is not None else [("x", "float32", (1, 4))]
    outputs = outputs if outputs is not None else [("y", "float32", (1, 4))]
    data = mock_neff_bytes(name, op, inputs, outputs, exec_us, exec_us_per_row)
    with open(path, "wb") as f:
        f.write(data)
    return os.fspath(path)
