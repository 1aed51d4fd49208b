"""Type stubs for the native part of neuron_dp (the Rust extension ``neuron_dp._native``)."""

import asyncio
import os
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

__version__: str

ArrayLike = Any
"""A numpy array, or anything with the buffer protocol, ``__array_interface__`` or
``__dlpack__`` (e.g. a PyTorch CPU tensor). Must be C-contiguous unless ``allow_copy``."""

PathLike = Union[str, "os.PathLike[str]"]

class DataParallel:
    """A compiled model (NEFF) replicated on several NeuronCores; each call splits its batch
    along ``dim``, runs the pieces concurrently on the cores and gathers the outputs in row
    order. The interface of ``torch_neuronx.DataParallel``.

    Args:
        model: the NEFF path, or a list of NEFF paths of one model compiled at different
            batch sizes (each piece then runs on the bucket that pads least).
        device_ids: the cores to use: None (every core the process owns), a list of ints or
            ``"nc:N"`` strings, or a string ``"nc:0,nc:1"``. Zero-based within
            ``NEURON_RT_VISIBLE_CORES``.
        dim: the dimension to split inputs and gather outputs along.
        set_dynamic_batching: run any batch size as pieces of the compiled batch (dim 0 only).
        split_size: rows per chunk (default: split evenly over the cores); chunks are dealt
            round-robin over the cores.
        num_workers: worker threads in total (default: two per core).
        spread_small_calls: start calls with fewer chunks than cores on the next core, so
            many concurrent small calls share out the cores.
        pack: run each call as whole compiled batches (ceil(rows / compiled batch)
            executions, only the last one padded, on the next cores in turn) instead of one
            padded chunk per core; not with split_size.
        allow_copy: copy non-contiguous inputs (and convert lists) instead of refusing them.
        pin_cpus: pin worker threads to CPUs.

    Raises:
        LibraryNotFoundError: no Neuron runtime library could be loaded.
        ConfigError: bad device ids, an unreadable NEFF, or options that do not fit.
        DeviceError: the runtime failed to load the model on a core.
    """

    def __init__(
        self,
        model: Union[PathLike, Sequence[PathLike]],
        device_ids: Union[None, str, Sequence[Union[int, str]]] = None,
        dim: int = 0,
        set_dynamic_batching: bool = True,
        *,
        split_size: Optional[int] = None,
        num_workers: Optional[int] = None,
        spread_small_calls: bool = False,
        pack: bool = False,
        allow_copy: bool = False,
        pin_cpus: bool = False,
    ) -> None: ...
    def __call__(self, *inputs: ArrayLike, **named_inputs: ArrayLike) -> Any:
        """Runs a batch: inputs by position (model order) or by name. Returns one numpy array
        per model output (a tuple when there are several), newly allocated and written by the
        engine; torch tensors over the same memory when the inputs were torch tensors.
        bfloat16 outputs are numpy ``uint16`` arrays of the raw bits (``torch.bfloat16`` for
        torch callers). The GIL is released for the whole call.

        Raises:
            InputError: the inputs do not fit the model (before any device call).
            DeviceError: a core failed; ``.chunk``, ``.core``, ``.physical_core``, ``.status``.
            KeyboardInterrupt: Ctrl-C during a long call (after the wave in flight).
        """
    def forward_into(
        self,
        inputs: Union[ArrayLike, Sequence[ArrayLike], Mapping[str, ArrayLike]],
        outputs: Union[ArrayLike, Sequence[ArrayLike], Mapping[str, ArrayLike]],
    ) -> None:
        """Runs a batch into the caller's writable, C-contiguous output arrays (no
        allocation). Outputs must not overlap each other or an input."""
    def disable_dynamic_batching(self) -> None:
        """From now on every batch must be exactly cores x compiled batch rows."""
    @property
    def dynamic_batching(self) -> bool:
        """Whether dynamic batching is on."""
    @property
    def dim(self) -> int:
        """The split dimension."""
    @property
    def num_workers(self) -> int:
        """Worker threads."""
    @property
    def batch_sizes(self) -> List[int]:
        """The compiled batch sizes, ascending (one per NEFF)."""
    @property
    def cores(self) -> List[Tuple[int, Optional[int]]]:
        """``(logical, physical)`` per core, in device order; physical is None when the
        runtime chose the cores (``NEURON_RT_NUM_CORES``)."""
    @property
    def inputs(self) -> List[Dict[str, Any]]:
        """The model's inputs: ``{"name", "dtype", "shape"}`` (compiled shape)."""
    @property
    def outputs(self) -> List[Dict[str, Any]]:
        """The model's outputs: ``{"name", "dtype", "shape"}``."""
    def plan(self, rows: int) -> List[Dict[str, Any]]:
        """How ``rows`` rows would be split: per chunk its ``start``, ``rows``, ``core``,
        ``physical_core``, ``pieces``, ``pad_rows`` and ``batch_sizes``."""
    def metrics(self) -> Dict[str, Any]:
        """Totals (``rows``, ``pad_rows``, ``pad_ratio``, piece latency p50/p99 in µs) and per
        core ``executions``, ``busy_ns``, ``failures``, ``rows``, ``pad_rows``,
        ``busy_retries`` (executions the runtime refused as busy and the engine retried),
        latencies."""
    def health(self) -> List[Dict[str, Any]]:
        """Per core: ``state`` (``"healthy"`` or ``"quarantined"``), ``consecutive_failures``,
        ``last_status``, ``executions``."""
    def readmit(self, core: Union[int, str]) -> None:
        """Reloads the model on a quarantined core and takes it back into service."""

class Batcher:
    """Coalesces small requests from many threads or asyncio tasks into batches on one
    model (dim 0, dynamic batching). Each request's inputs are copied into the batch and its
    rows copied out: the price of batching.

    Close it when done: ``close()`` (or ``await aclose()``, or a ``with`` / ``async with``
    block) stops accepting requests, runs every request already queued to completion, and
    stops the batcher's threads. Requests submitted afterwards raise BatcherClosedError.
    Dropping an unclosed batcher drains it too.

        with neuron_dp.Batcher(model, max_batch_rows=32) as batcher:
            y = batcher.infer(x)

        async with neuron_dp.Batcher(model) as batcher:
            y = await batcher.infer_async(x)

    Args:
        model: the model to run batches on.
        max_batch_rows: most rows per batch (default: cores x largest compiled batch).
        max_delay_us: longest wait for more requests after the first of a batch.
        batches_in_flight: batches formed and run at once.
        max_queue: most queued requests; beyond it ``infer`` waits and ``infer_async``
            raises QueueFullError.
        timeout_ms: a request still queued after this long expires (DeadlineExceededError).
        allow_copy: accept non-contiguous inputs and lists.
        pack: run each batch as whole compiled batches, only the last one padded (default);
            False runs it with the model's own split (one padded chunk per core).
    """

    def __init__(
        self,
        model: DataParallel,
        max_batch_rows: Optional[int] = None,
        max_delay_us: Optional[int] = None,
        batches_in_flight: int = 2,
        max_queue: Optional[int] = None,
        timeout_ms: Optional[int] = None,
        allow_copy: bool = False,
        pack: bool = True,
    ) -> None: ...
    def infer(self, *inputs: ArrayLike, **named_inputs: ArrayLike) -> Any:
        """Submits one request and blocks (GIL released) until its outputs are ready.

        Raises:
            InputError: the request does not fit the model (nothing was queued).
            BatcherClosedError: the batcher is closed.
            DeadlineExceededError: it expired in the queue (``timeout_ms``); it was not run.
            DeviceError: the batch it ran in failed.
            KeyboardInterrupt: Ctrl-C while waiting (the request is cancelled if it has not
                joined a batch yet).
        """
    def infer_async(self, *inputs: ArrayLike, **named_inputs: ArrayLike) -> "asyncio.Future[Any]":
        """Submits one request from a running event loop; await the returned future.

        Raises (at once): InputError, QueueFullError (``max_queue`` requests are queued),
        BatcherClosedError. The future raises DeadlineExceededError or DeviceError."""
    def stats(self) -> Dict[str, Any]:
        """Counters (submitted, completed, failed, rejected_full, invalid, expired,
        abandoned, batches, rows) and latencies in µs; the final ones once closed."""
    @property
    def max_batch_rows(self) -> int:
        """Most rows per batch."""
    @property
    def closed(self) -> bool:
        """Whether ``close`` (or ``aclose``, or the end of a ``with`` block) has begun."""
    def close(self) -> None:
        """Stops accepting requests, runs every request already queued, and returns once
        all are complete (the futures of ``infer_async`` requests scheduled on their loops)
        and the batcher's threads have stopped. Calling it again waits for the same drain
        and returns. Ctrl-C interrupts the wait, not the drain. Blocks the calling thread:
        from an event loop use ``await aclose()``."""
    async def aclose(self) -> None:
        """``close()`` on the event loop's default executor, so the loop keeps running."""
    def __enter__(self) -> "Batcher": ...
    def __exit__(self, kind: Any, value: Any, traceback: Any) -> bool:
        """Closes the batcher; the block's exception, if any, propagates."""
    async def __aenter__(self) -> "Batcher": ...
    async def __aexit__(self, kind: Any, value: Any, traceback: Any) -> None:
        """Awaits ``aclose()``; the block's exception, if any, propagates."""

def runtime_info() -> Dict[str, Any]:
    """The loaded runtime: ``library``, ``version``, ``is_mock``, ``total_cores``,
    ``visible_cores`` (logical cores), ``lnc`` (physical cores per logical core: 2 on trn2 by
    default), ``physical_cores`` (the first physical core of each), ``engine_version``."""

