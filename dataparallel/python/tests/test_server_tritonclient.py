"""The HTTP server (neuron-dp-server) answers Triton's own Python client, tritonclient[http],
unchanged: readiness, metadata, and inference with JSON and with binary tensor data, of one
model and of two served together, over the mock libnrt on a loopback port.

``cargo xtask python-test`` builds the server and names it in NEURON_DP_SERVER_BIN.
"""

import os
import pathlib
import re
import subprocess
import sys
import threading

import numpy as np
import pytest
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from neuron_dp.testing import write_mock_neff

ADDRESS = re.compile(r"http://(127\.0\.0\.1:\d+)/")


class Server:
    """The server binary on a port the OS picks; its log says which.

    Serves ``neff`` as ``name``, or with ``models`` ({name: neff}) each as ``--model``."""

    def __init__(self, neff: str = None, name: str = None, models: dict = None) -> None:
        binary = os.environ.get("NEURON_DP_SERVER_BIN")
        if not binary:
            pytest.fail("set NEURON_DP_SERVER_BIN to the neuron-dp-server binary (cargo xtask python-test does)")
        env = dict(os.environ, RUST_LOG="info", NRT_MOCK_TOTAL_CORES="2")
        args = [neff, "--model-name", name] if neff else []
        for model, path in (models or {}).items():
            args += ["--model", f"{model}={path}"]
        self.process = subprocess.Popen(
            [binary, "serve", *args, "--host", "127.0.0.1", "--port", "0"],
            env=env,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.log = []
        found = threading.Event()
        self.url = None

        def read() -> None:
            for line in self.process.stderr:
                self.log.append(line)
                match = ADDRESS.search(line)
                if match and self.url is None:
                    self.url = match.group(1)
                    found.set()
            found.set()

        self.reader = threading.Thread(target=read, daemon=True)
        self.reader.start()
        if not found.wait(120) or self.url is None:
            self.stop()
            pytest.fail("the server did not say where it listens:\n" + "".join(self.log))

    def stop(self) -> int:
        """SIGTERM, then the exit status once the whole log is read."""
        if self.process.poll() is None:
            self.process.terminate()
        status = self.process.wait(timeout=60)
        self.reader.join(timeout=60)
        return status


@pytest.fixture
def affine(tmp_path):
    neff = write_mock_neff(
        tmp_path / "demo.neff",
        "demo",
        {"kind": "affine", "scale": 2.0, "bias": 1.0},
        [("x", "float32", (2, 4))],
        [("y", "float32", (2, 4))],
    )
    server = Server(neff, "demo")
    yield server
    assert server.stop() == 0, "".join(server.log)


README = pathlib.Path(__file__).resolve().parents[3] / "README.md"
EXAMPLE = "<!-- tritonclient-example -->"


def readme_example() -> tuple:
    """The README's tritonclient example: the ```python block after its marker, and the
    ```text block after that (what it prints)."""
    after = README.read_text(encoding="utf-8").split(EXAMPLE, 1)[1].lstrip()
    assert after.startswith("```python\n"), "the marker must precede a ```python block"
    code, rest = after[len("```python\n") :].split("\n```", 1)
    printed = rest.split("```text\n", 1)[1].split("\n```", 1)[0]
    return code, printed + "\n"


def test_the_readme_example_runs_as_written(tmp_path):
    # The README's model: affine 2 x + 1 over float32 [8, 4], named affine.
    neff = write_mock_neff(
        tmp_path / "affine.neff",
        "affine",
        {"kind": "affine", "scale": 2.0, "bias": 1.0},
        [("x", "float32", (8, 4))],
        [("y", "float32", (8, 4))],
    )
    server = Server(neff, "affine")
    try:
        code, printed = readme_example()
        assert "localhost:8000" in code
        script = tmp_path / "example.py"
        script.write_text(code.replace("localhost:8000", server.url), encoding="utf-8")
        result = subprocess.run(
            [sys.executable, str(script)], capture_output=True, text=True, timeout=120
        )
        assert result.returncode == 0, result.stdout + result.stderr
        assert result.stdout == printed
    finally:
        assert server.stop() == 0, "".join(server.log)


def test_readiness_and_metadata(affine):
    client = httpclient.InferenceServerClient(url=affine.url)
    assert client.is_server_live()
    assert client.is_server_ready()
    assert client.is_model_ready("demo")
    assert not client.is_model_ready("other")
    meta = client.get_model_metadata("demo")
    assert meta["name"] == "demo"
    assert meta["inputs"] == [{"name": "x", "datatype": "FP32", "shape": [-1, 4]}]
    assert meta["outputs"] == [{"name": "y", "datatype": "FP32", "shape": [-1, 4]}]
    assert client.get_server_metadata()["name"]


@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
def test_infer_gives_the_models_values(affine, binary):
    client = httpclient.InferenceServerClient(url=affine.url)
    x = np.arange(12, dtype=np.float32).reshape(3, 4) - 5.5
    tensor = httpclient.InferInput("x", list(x.shape), "FP32")
    tensor.set_data_from_numpy(x, binary_data=binary)
    wanted = httpclient.InferRequestedOutput("y", binary_data=binary)
    result = client.infer("demo", [tensor], outputs=[wanted], request_id="r-7")
    np.testing.assert_array_equal(result.as_numpy("y"), x * 2 + 1)
    assert result.get_response()["id"] == "r-7"


def test_a_bad_request_is_the_clients_exception(affine):
    client = httpclient.InferenceServerClient(url=affine.url)
    x = np.zeros((1, 5), dtype=np.float32)  # the model takes rows of 4
    tensor = httpclient.InferInput("x", list(x.shape), "FP32")
    tensor.set_data_from_numpy(x)
    with pytest.raises(InferenceServerException) as error:
        client.infer("demo", [tensor])
    assert "400" in str(error.value.status()), error.value
    assert "\n" not in error.value.message()


def test_several_inputs_and_outputs_of_other_datatypes(tmp_path):
    neff = write_mock_neff(
        tmp_path / "pair.neff",
        "pair",
        "identity",
        [("ids", "int64", (1, 3)), ("mask", "float16", (1, 2))],
        [("ids_out", "int64", (1, 3)), ("mask_out", "float16", (1, 2))],
    )
    server = Server(neff, "pair")
    try:
        client = httpclient.InferenceServerClient(url=server.url)
        ids = np.array([[1, -2, 3], [2**40, 0, -(2**40)]], dtype=np.int64)
        mask = np.array([[0.5, -1.0], [65504.0, 0.25]], dtype=np.float16)
        inputs = [httpclient.InferInput("ids", [2, 3], "INT64"), httpclient.InferInput("mask", [2, 2], "FP16")]
        inputs[0].set_data_from_numpy(ids)
        inputs[1].set_data_from_numpy(mask, binary_data=True)
        result = client.infer("pair", inputs)
        np.testing.assert_array_equal(result.as_numpy("ids_out"), ids)
        np.testing.assert_array_equal(result.as_numpy("mask_out"), mask)
    finally:
        assert server.stop() == 0, "".join(server.log)


def test_two_models_in_one_server(tmp_path):
    affine = write_mock_neff(
        tmp_path / "affine.neff",
        "affine",
        {"kind": "affine", "scale": -3.0, "bias": 0.5},
        [("x", "float32", (2, 4))],
        [("y", "float32", (2, 4))],
    )
    pair = write_mock_neff(
        tmp_path / "pair.neff",
        "pair",
        "identity",
        [("ids", "int64", (1, 3)), ("mask", "float16", (1, 2))],
        [("ids_out", "int64", (1, 3)), ("mask_out", "float16", (1, 2))],
    )
    server = Server(models={"scaled": affine, "pair": pair})
    try:
        client = httpclient.InferenceServerClient(url=server.url)
        assert client.is_server_ready()
        assert client.is_model_ready("scaled") and client.is_model_ready("pair")
        assert not client.is_model_ready("affine")  # served under the name given, not the file's
        scaled = client.get_model_metadata("scaled")
        assert scaled["name"] == "scaled"
        assert scaled["inputs"] == [{"name": "x", "datatype": "FP32", "shape": [-1, 4]}]
        meta = client.get_model_metadata("pair")
        assert meta["name"] == "pair"
        assert meta["inputs"] == [
            {"name": "ids", "datatype": "INT64", "shape": [-1, 3]},
            {"name": "mask", "datatype": "FP16", "shape": [-1, 2]},
        ]
        assert meta["outputs"] == [
            {"name": "ids_out", "datatype": "INT64", "shape": [-1, 3]},
            {"name": "mask_out", "datatype": "FP16", "shape": [-1, 2]},
        ]
        with pytest.raises(InferenceServerException) as error:
            client.get_model_metadata("affine")
        assert "404" in str(error.value.status()), error.value

        x = np.arange(8, dtype=np.float32).reshape(2, 4)
        tensor = httpclient.InferInput("x", [2, 4], "FP32")
        tensor.set_data_from_numpy(x, binary_data=True)
        result = client.infer("scaled", [tensor])
        np.testing.assert_array_equal(result.as_numpy("y"), x * -3 + 0.5)
        assert result.get_response()["model_name"] == "scaled"

        ids = np.array([[5, -6, 2**50]], dtype=np.int64)
        mask = np.array([[0.25, -8.0]], dtype=np.float16)
        inputs = [httpclient.InferInput("ids", [1, 3], "INT64"), httpclient.InferInput("mask", [1, 2], "FP16")]
        inputs[0].set_data_from_numpy(ids)
        inputs[1].set_data_from_numpy(mask)
        result = client.infer("pair", inputs, outputs=[httpclient.InferRequestedOutput("mask_out")])
        np.testing.assert_array_equal(result.as_numpy("mask_out"), mask)
        assert result.as_numpy("ids_out") is None
        assert result.get_response()["model_name"] == "pair"
    finally:
        assert server.stop() == 0, "".join(server.log)
    log = "".join(server.log)
    assert 'model "scaled" stopped: 1 requests completed' in log, log
    assert 'model "pair" stopped: 1 requests completed' in log, log
