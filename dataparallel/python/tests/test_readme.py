"""The README's Python quick start runs as written, against the installed package and the mock.

The block is the ```python fence after the ``<!-- python-quick-start -->`` marker in the
repository's README.md; it runs in a fresh interpreter, in a directory holding the
``model.neff`` it names (a mock identity model, float32[1, 4] in and out).
"""

import pathlib
import subprocess
import sys

from neuron_dp.testing import write_mock_neff

README = pathlib.Path(__file__).resolve().parents[3] / "README.md"
MARKER = "<!-- python-quick-start -->"


def quick_start() -> str:
    text = README.read_text(encoding="utf-8")
    assert MARKER in text, f"{README} has no {MARKER} marker"
    after = text.split(MARKER, 1)[1].lstrip()
    assert after.startswith("```python\n"), "the marker must precede a ```python block"
    return after[len("```python\n") :].split("\n```", 1)[0]


def test_the_readme_quick_start_runs(tmp_path):
    write_mock_neff(tmp_path / "model.neff")
    script = tmp_path / "quick_start.py"
    script.write_text(quick_start(), encoding="utf-8")
    result = subprocess.run(
        [sys.executable, str(script)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    # The block prints the output's shape and the cores: five rows of four came back.
    assert result.stdout.startswith("(5, 4) [(0, "), result.stdout
