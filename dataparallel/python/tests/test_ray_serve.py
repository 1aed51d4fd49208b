"""examples/ray_serve_app.py on a local Ray: 2 replicas x 4 NeuronCores over an 8-core mock,
>= 1000 HTTP requests through Serve's proxy on loopback, disjoint physical cores per replica,
and a third replica that must wait for cores rather than share one."""

import io
import json
import os
import pathlib
import socket
import sys
import threading
import time
import urllib.request

import numpy as np
import pytest

serve = pytest.importorskip("ray.serve")
ray = pytest.importorskip("ray")

from neuron_dp.testing import write_mock_neff  # noqa: E402

EXAMPLES = pathlib.Path(__file__).resolve().parent.parent / "examples"
REQUESTS = 1200
CLIENTS = 8
# Upper bound on waiting for Ray to (not) place the third replica; no timing is asserted.
SETTLE_S = 8


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def serve_app(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ray")
    neff = write_mock_neff(tmp / "cid.neff", "cid", "core_id", [("x", "float32", (1, 2))], [("c", "int32", (1, 1))])
    # Serve's proxy must answer its readiness check within 5 s by default, or the controller
    # kills it: on a loaded 2-CPU machine starting it can take longer. Ray's processes read
    # these when they start, from the environment ray.init hands them.
    patience = {"RAY_SERVE_PROXY_READY_CHECK_TIMEOUT_S": "120", "RAY_SERVE_PROXY_HEALTH_CHECK_TIMEOUT_S": "60"}
    saved = {
        k: os.environ.get(k)
        for k in ("NRT_MOCK_TOTAL_CORES", "NRT_MOCK_LOCK_DIR", "NEURON_RT_VISIBLE_CORES", *patience)
    }
    os.environ.update(patience)
    # Replica processes inherit these from the raylet started by ray.init: an 8-core mock
    # and a lock directory of their own (this test process may still hold cores elsewhere).
    os.environ["NRT_MOCK_TOTAL_CORES"] = "8"
    os.environ["NRT_MOCK_LOCK_DIR"] = str(tmp / "locks")
    os.environ.pop("NEURON_RT_VISIBLE_CORES", None)
    (tmp / "locks").mkdir()
    sys.path.insert(0, str(EXAMPLES))
    port = free_port()
    ray.init(resources={"neuron_cores": 8}, num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        import ray_serve_app

        serve.run(ray_serve_app.app_builder({"neff": neff, "replicas": "2", "cores_per_replica": "4"}),
                  name="neuron", route_prefix="/")
        yield f"http://127.0.0.1:{port}/", neff, ray_serve_app
    finally:
        serve.shutdown()
        ray.shutdown()
        sys.path.remove(str(EXAMPLES))
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def call(url, i):
    """One request (JSON or .npy by parity); returns (replica's physical cores, answer)."""
    rows = 1 + i % 4
    x = np.full((rows, 2), i, dtype=np.float32)
    if i % 2:
        buf = io.BytesIO()
        np.save(buf, x)
        req = urllib.request.Request(url, data=buf.getvalue(), headers={"content-type": "application/x-npy"})
        with urllib.request.urlopen(req, timeout=60) as r:
            cores = tuple(int(c) for c in r.headers["X-Neuron-Cores"].split(","))
            y = np.load(io.BytesIO(r.read()))
    else:
        req = urllib.request.Request(url, data=json.dumps({"inputs": x.tolist()}).encode(),
                                     headers={"content-type": "application/json"})
        with urllib.request.urlopen(req, timeout=60) as r:
            body = json.loads(r.read())
        cores = tuple(p for _, p in body["cores"])
        y = np.asarray(body["outputs"])
    assert y.shape == (rows, 1), (i, y.shape)
    assert set(y.ravel().tolist()) <= set(cores), "every row ran on the answering replica's cores"
    return cores


def test_two_replicas_on_disjoint_cores_serve_http(serve_app):
    url, _, _ = serve_app
    seen, errors = [], []

    def client(c):
        try:
            for i in range(c, REQUESTS, CLIENTS):
                seen.append(call(url, i))
        except Exception as e:  # reported below
            errors.append(e)

    threads = [threading.Thread(target=client, args=(c,)) for c in range(CLIENTS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(seen) == REQUESTS
    replicas = set(seen)
    assert len(replicas) == 2, replicas
    a, b = (set(r) for r in replicas)
    assert not a & b, "replicas share no physical core"
    assert a | b == set(range(8)), "together they use all 8"
    with urllib.request.urlopen(url + "metrics", timeout=60) as r:
        metrics = json.loads(r.read())
    assert metrics["engine"]["rows"] > 0 and metrics["batcher"]["completed"] > 0


def test_a_third_replica_waits_for_cores(serve_app):
    url, neff, app_module = serve_app
    app = app_module.app_builder({"neff": neff, "replicas": "3", "cores_per_replica": "4"})
    # Do not wait for the application to be running: it cannot be, with 12 cores asked of 8.
    serve.run_many([serve.RunTarget(app, name="neuron", route_prefix="/")],
                   wait_for_applications_running=False)
    deadline = time.monotonic() + SETTLE_S
    states = {}
    while time.monotonic() < deadline:
        states = serve.status().applications["neuron"].deployments["NeuronModel"].replica_states
        assert states.get("RUNNING", 0) <= 2, f"a third replica ran without free cores: {states}"
        time.sleep(0.5)
    assert states.get("RUNNING", 0) == 2, states
    assert sum(states.values()) >= 3, f"the third replica is waiting to be scheduled: {states}"
    # The two running replicas keep answering from their own cores.
    replicas = {call(url, i) for i in range(16)}
    assert all(len(r) == 4 for r in replicas)
