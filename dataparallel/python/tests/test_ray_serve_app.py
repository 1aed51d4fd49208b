"""examples/ray_serve_app.py's request handling, without Ray: the deployment class is built in
this process and called with starlette requests, to check how it answers overload and bad
bodies. (Not in test_ray_serve.py: while its local Ray runs, the replicas hold every core.)"""

import asyncio
import json
import pathlib
import sys

import pytest

pytest.importorskip("ray.serve")

from neuron_dp.testing import write_mock_neff  # noqa: E402
from starlette.requests import Request  # noqa: E402  (installed with ray[serve])

EXAMPLES = pathlib.Path(__file__).resolve().parent.parent / "examples"


def post(body, content_type):
    """A starlette request as Serve's proxy would hand it to the deployment."""
    async def receive():
        return {"type": "http.request", "body": body, "more_body": False}

    scope = {"type": "http", "method": "POST", "path": "/", "query_string": b"",
             "headers": [(b"content-type", content_type.encode())]}
    return Request(scope, receive)


def test_a_full_queue_is_503_and_bad_bodies_are_400(tmp_path):
    # 0.5 s batches of one row, two in flight and room for one more queued: 6 requests at
    # once overflow the queue.
    sys.path.insert(0, str(EXAMPLES))
    try:
        import ray_serve_app
    finally:
        sys.path.remove(str(EXAMPLES))
    neff = write_mock_neff(tmp_path / "slow.neff", "slow", {"kind": "affine", "scale": 2.0, "bias": 0.0},
                           [("x", "float32", (1, 2))], [("y", "float32", (1, 2))], exec_us=500_000)
    replica = ray_serve_app.NeuronModel.func_or_class(neff, max_batch_rows=1, max_queue=1)
    row = json.dumps({"inputs": [[1.0, 2.0]]}).encode()

    async def main():
        return await asyncio.gather(*(replica(post(row, "application/json")) for _ in range(6)))

    with replica.batcher:
        answers = asyncio.run(main())
        bad = [asyncio.run(replica(post(body, kind))) for body, kind in (
            (b"{not json", "application/json"), (b'{"inputs": [[1, 2, 3]]}', "application/json"),
            (b"", "application/x-npy"), (b"junk", "application/x-npy"))]
    statuses = sorted(a.status_code for a in answers)
    assert set(statuses) == {200, 503} and 503 in statuses and 200 in statuses, statuses
    for answer in answers:
        body = json.loads(answer.body)
        if answer.status_code == 200:
            assert body["outputs"] == [[2.0, 4.0]]
        else:
            assert "queue is full" in body["error"] and answer.headers["retry-after"] == "1"
    assert [b.status_code for b in bad] == [400, 400, 400, 400], [b.body for b in bad]
