"""Scale-out with Ray Serve: each replica owns N NeuronCores and runs one DataParallel over
them, with a Batcher in front, answering JSON and numpy (.npy) requests over HTTP.

Ray sets NEURON_RT_VISIBLE_CORES for each replica from its ``neuron_cores`` resource, so a
replica sees only its own cores (logical nc:0..N-1) and two replicas never share one.

    serve run ray_serve_app:app_builder neff=/path/model.neff cores_per_replica=4 replicas=2

Requests (POST /):
    JSON:  {"inputs": [[...row...], ...]}  ->  {"outputs": [...], "cores": [[logical, physical], ...]}
    numpy: body = numpy.save() bytes, Content-Type: application/x-npy  ->  .npy bytes of the
           (first) output; the replica's physical cores are in the X-Neuron-Cores header.
GET /metrics returns the replica's engine metrics and batcher stats as JSON.

A request the model cannot take is 400; when the replica's batcher queue is full (``max_queue``
requests waiting) the answer is 503 with Retry-After, so clients and load balancers back off
instead of seeing a server error; a request that expired in the queue (``timeout_ms``) is 504.
"""

import io
import json
import os
from typing import Any, Dict

import numpy as np
from ray import serve
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

import neuron_dp

NPY = "application/x-npy"


@serve.deployment
class NeuronModel:
    def __init__(
        self,
        neff: str,
        max_batch_rows: int = 0,
        max_delay_us: int = 2000,
        max_queue: int = 0,
        timeout_ms: int = 0,
    ) -> None:
        self.model = neuron_dp.DataParallel(neff)
        self.batcher = neuron_dp.Batcher(
            self.model,
            max_batch_rows=max_batch_rows or None,
            max_delay_us=max_delay_us,
            max_queue=max_queue or None,
            timeout_ms=timeout_ms or None,
        )
        self.dtype = np.dtype(self.model.inputs[0]["dtype"])
        self.visible = os.environ.get("NEURON_RT_VISIBLE_CORES", "")

    def _info(self) -> Dict[str, Any]:
        return {"cores": [list(c) for c in self.model.cores], "visible": self.visible}

    async def __call__(self, request: Request) -> Response:
        if request.url.path.rstrip("/").endswith("metrics"):
            return JSONResponse({**self._info(), "engine": self.model.metrics(), "batcher": self.batcher.stats()})
        body = await request.body()
        npy = request.headers.get("content-type", "").startswith(NPY)
        try:
            if npy:
                x = np.load(io.BytesIO(body), allow_pickle=False)
            else:
                x = np.asarray(json.loads(body or b"{}")["inputs"], dtype=self.dtype)
            y = await self.batcher.infer_async(np.ascontiguousarray(x, dtype=self.dtype))
        except neuron_dp.QueueFullError as error:
            return JSONResponse({"error": str(error)}, status_code=503, headers={"Retry-After": "1"})
        except neuron_dp.DeadlineExceededError as error:
            return JSONResponse({"error": str(error)}, status_code=504)
        except (KeyError, TypeError, ValueError, EOFError) as error:  # InputError is a ValueError
            return JSONResponse({"error": str(error) or type(error).__name__}, status_code=400)
        if npy:
            first = y[0] if isinstance(y, tuple) else y
            out = io.BytesIO()
            np.save(out, first, allow_pickle=False)
            physical = ",".join(str(p) for _, p in self.model.cores)
            return Response(out.getvalue(), media_type=NPY, headers={"X-Neuron-Cores": physical})
        outputs = [o.tolist() for o in y] if isinstance(y, tuple) else y.tolist()
        return JSONResponse({"outputs": outputs, **self._info()})


def app_builder(args: Dict[str, str]):
    """``serve run ray_serve_app:app_builder neff=... cores_per_replica=4 replicas=2`` (and
    optionally ``max_batch_rows``, ``max_delay_us``, ``max_queue``, ``timeout_ms``,
    ``max_ongoing_requests``)."""
    cores = int(args.get("cores_per_replica", 4))
    return NeuronModel.options(
        num_replicas=int(args.get("replicas", 1)),
        ray_actor_options={"resources": {"neuron_cores": cores}, "num_cpus": 0},
        max_ongoing_requests=int(args.get("max_ongoing_requests", 64)),
    ).bind(
        args["neff"],
        int(args.get("max_batch_rows", 0)),
        int(args.get("max_delay_us", 2000)),
        int(args.get("max_queue", 0)),
        int(args.get("timeout_ms", 0)),
    )
