"""The examples run as documented (python examples/NAME.py, writing their own mock NEFFs)."""

import pathlib
import subprocess
import sys

import pytest

EXAMPLES = pathlib.Path(__file__).resolve().parent.parent / "examples"
SCRIPTS = ["default", "specify_cores", "dim_not_zero", "dynamic_batching", "disable_dynamic_batching"]


@pytest.mark.parametrize("name", SCRIPTS)
def test_example_runs(name, tmp_path):
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / f"{name}.py")],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip()
