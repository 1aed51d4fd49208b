"""Shared by the examples: the NEFF to run (a path given on the command line, or a mock NEFF
written to a temporary directory when running against the mock libnrt)."""

import os
import sys
import tempfile

from neuron_dp.testing import write_mock_neff


def model_path(name, op, inputs, outputs, exec_us=0):
    """sys.argv[1] if given, else a freshly written mock NEFF of this shape."""
    if len(sys.argv) > 1:
        return sys.argv[1]
    directory = tempfile.mkdtemp(prefix="neuron-dp-example-")
    return write_mock_neff(os.path.join(directory, f"{name}.neff"), name, op, inputs, outputs, exec_us)
