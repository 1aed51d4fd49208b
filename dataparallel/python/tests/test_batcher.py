"""neuron_dp.Batcher: blocking infer from threads, infer_async from asyncio tasks, stats."""

import asyncio
import gc
import os
import signal
import subprocess
import sys
import time
import threading

import numpy as np
import pytest

import neuron_dp


@pytest.fixture
def model(neff):
    path = neff(
        "affine",
        {"kind": "affine", "scale": 3.0, "bias": -1.0},
        [("x", "float32", (4, 6))],
        [("y", "float32", (4, 6))],
        exec_us=200,
    )
    return neuron_dp.DataParallel(path, device_ids=[0, 1, 2, 3])


def request(i, n=1):
    return np.full((n, 6), float(i), dtype=np.float32)


def test_infer_from_threads(model):
    batcher = neuron_dp.Batcher(model, max_batch_rows=16, max_delay_us=500)
    assert batcher.max_batch_rows == 16
    errors = []

    def client(c):
        try:
            for i in range(25):
                x = request(c * 100 + i, 1 + i % 3)
                np.testing.assert_array_equal(batcher.infer(x), x * 3.0 - 1.0)
        except Exception as e:
            errors.append(e)

    threads = [threading.Thread(target=client, args=(c,)) for c in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    stats = batcher.stats()
    assert stats["completed"] == 150 and stats["failed"] == 0
    assert stats["batches"] <= 150 and stats["rows"] == sum(1 + i % 3 for i in range(25)) * 6


def test_batches_are_packed_unless_told_not_to(model):
    # One request of 5 rows is one batch; on 4 cores compiled at batch 4 it runs packed as
    # pieces of 4 and 1 (3 pad rows), else split as 2 + 1 + 1 + 1 (11 pad rows).
    for pack, pad_rows in [(True, 3), (False, 11)]:
        before = model.metrics()["pad_rows"]
        with neuron_dp.Batcher(model, pack=pack) as batcher:
            x = request(7, 5)
            np.testing.assert_array_equal(batcher.infer(x), x * 3.0 - 1.0)
        assert model.metrics()["pad_rows"] - before == pad_rows, pack


def test_infer_async_from_64_tasks(model):
    batcher = neuron_dp.Batcher(model, max_batch_rows=32, max_delay_us=1000, max_queue=256)

    async def main():
        async def one(i):
            x = request(i)
            y = await batcher.infer_async(x)
            return i, x, y

        return await asyncio.gather(*(one(i) for i in range(64)))

    for i, x, y in asyncio.run(main()):
        np.testing.assert_array_equal(y, x * 3.0 - 1.0)
    assert batcher.stats()["completed"] == 64


def test_bad_requests_raise(model):
    batcher = neuron_dp.Batcher(model, max_batch_rows=8)
    with pytest.raises(neuron_dp.InputError):
        batcher.infer(np.zeros((2, 5), dtype=np.float32))
    with pytest.raises(neuron_dp.InputError):
        batcher.infer(np.zeros((9, 6), dtype=np.float32))
    with pytest.raises(neuron_dp.ConfigError):
        neuron_dp.Batcher(model, max_batch_rows=0)

    async def bad():
        with pytest.raises(neuron_dp.InputError):
            batcher.infer_async(np.zeros((1, 5), dtype=np.float32))
        return await batcher.infer_async(request(1))

    np.testing.assert_array_equal(asyncio.run(bad()), request(1) * 3.0 - 1.0)
    assert batcher.stats()["invalid"] == 3


def threads_named(prefix):
    """This process's native threads whose name starts with `prefix` (Linux /proc)."""
    names = []
    for task in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{task}/comm") as f:
                names.append(f.read().strip())
        except OSError:  # the thread ended while listing
            pass
    return sum(1 for n in names if n.startswith(prefix))


def settled_threads(prefix, expected):
    """threads_named(prefix) once it equals `expected`, or after 10 s whatever it is: a new
    thread names itself only once it runs, and a stopping one leaves when it has exited."""
    for _ in range(1000):
        count = threads_named(prefix)
        if count == expected:
            return count
        threading.Event().wait(0.01)
    return threads_named(prefix)


def test_close_runs_queued_requests_then_refuses_new_ones(model):
    batcher = neuron_dp.Batcher(model, max_batch_rows=4, max_delay_us=100, max_queue=64)
    assert not batcher.closed

    async def main():
        # Submitted synchronously: all 24 are queued (6 batches of 4 rows) before close.
        futures = [batcher.infer_async(request(i)) for i in range(24)]
        await batcher.aclose()
        # close() returns only once every queued request is complete and scheduled.
        return [await f for f in futures]

    for i, y in enumerate(asyncio.run(main())):
        np.testing.assert_array_equal(y, request(i) * 3.0 - 1.0)
    assert batcher.closed
    stats = batcher.stats()
    assert stats["submitted"] == 24 and stats["completed"] == 24 and stats["abandoned"] == 0

    with pytest.raises(neuron_dp.BatcherClosedError, match="create a new neuron_dp.Batcher"):
        batcher.infer(request(1))

    async def after():
        with pytest.raises(neuron_dp.BatcherClosedError):
            batcher.infer_async(request(1))

    asyncio.run(after())
    batcher.close()  # idempotent
    assert batcher.stats()["submitted"] == 24
    assert issubclass(neuron_dp.BatcherClosedError, RuntimeError)


def test_close_waits_for_blocked_callers_and_every_answer_is_right(model):
    # max_queue=2 with 8 threads: most callers are blocked waiting for room when close runs.
    batcher = neuron_dp.Batcher(model, max_batch_rows=2, max_delay_us=100, max_queue=2)
    answered, refused, wrong = [], [], []
    started = threading.Barrier(9)

    def client(c):
        started.wait()
        for i in range(10_000):
            x = request(c * 10_000 + i)
            try:
                y = batcher.infer(x)
            except neuron_dp.BatcherClosedError:
                refused.append(c)
                return
            if not np.array_equal(y, x * 3.0 - 1.0):
                wrong.append((c, i))
            answered.append(c)
        wrong.append((c, "never refused"))

    threads = [threading.Thread(target=client, args=(c,)) for c in range(8)]
    for t in threads:
        t.start()
    started.wait()
    for _ in range(6000):  # until some requests have been answered (bounded: a minute)
        if len(answered) >= 40:
            break
        threading.Event().wait(0.01)
    batcher.close()
    for t in threads:
        t.join(timeout=60)
    assert not any(t.is_alive() for t in threads), "a caller hung after close"
    assert wrong == []
    assert sorted(refused) == list(range(8))
    assert batcher.stats()["completed"] == len(answered)


def test_with_block_closes_and_stops_the_threads(model):
    before = settled_threads("neuron-dp-async", 0)  # earlier tests' notifiers may be exiting
    with neuron_dp.Batcher(model, max_batch_rows=8) as batcher:
        assert settled_threads("neuron-dp-async", before + 1) == before + 1
        np.testing.assert_array_equal(batcher.infer(request(2)), request(2) * 3.0 - 1.0)
    assert batcher.closed
    assert settled_threads("neuron-dp-async", before) == before
    with pytest.raises(neuron_dp.BatcherClosedError):
        batcher.infer(request(2))

    # An exception in the block propagates, and the batcher is still closed.
    with pytest.raises(KeyError):
        with neuron_dp.Batcher(model, max_batch_rows=8) as other:
            raise KeyError("from the block")
    assert other.closed and settled_threads("neuron-dp-async", before) == before


def test_async_with_block_closes(model):
    before = settled_threads("neuron-dp-async", 0)  # earlier tests' notifiers may be exiting

    async def main():
        async with neuron_dp.Batcher(model, max_batch_rows=8, max_delay_us=100) as batcher:
            futures = [batcher.infer_async(request(i, 2)) for i in range(10)]
        # Leaving the block drained the queue: every future is done without waiting.
        assert all(f.done() for f in futures)
        return batcher, [f.result() for f in futures]

    batcher, outputs = asyncio.run(main())
    for i, y in enumerate(outputs):
        np.testing.assert_array_equal(y, request(i, 2) * 3.0 - 1.0)
    assert batcher.closed and settled_threads("neuron-dp-async", before) == before


def test_dropping_an_unclosed_batcher_stops_its_notifier(model):
    before = settled_threads("neuron-dp-async", 0)  # earlier tests' notifiers may be exiting
    batcher = neuron_dp.Batcher(model, max_batch_rows=8)
    batcher.infer(request(1))
    assert settled_threads("neuron-dp-async", before + 1) == before + 1
    del batcher
    gc.collect()
    # Not joined on drop (it needs the GIL the dropping thread holds): it exits on its own.
    assert settled_threads("neuron-dp-async", before) == before


def test_ctrl_c_interrupts_the_wait_in_close_not_the_drain(tmp_path):
    # 40 single-row requests of 100 ms on 2 cores, one row per batch: a drain of about 2 s.
    code = """
import signal, sys, threading, time
import numpy as np, neuron_dp
from neuron_dp.testing import write_mock_neff
path = write_mock_neff("m.neff", "m", {"kind": "affine", "scale": 2.0, "bias": 1.0},
                       [("x", "float32", (1, 4))], [("y", "float32", (1, 4))], exec_us=100000)
model = neuron_dp.DataParallel(path, device_ids=[0, 1])
batcher = neuron_dp.Batcher(model, max_batch_rows=1, max_delay_us=0, max_queue=64)
results = {}
def client(i):
    x = np.full((1, 4), float(i), dtype=np.float32)
    results[i] = np.array_equal(batcher.infer(x), x * 2.0 + 1.0)
threads = [threading.Thread(target=client, args=(i,)) for i in range(40)]
for t in threads:
    t.start()
while batcher.stats()["submitted"] < 40:
    time.sleep(0.01)
print("closing", flush=True)
try:
    batcher.close()
    print("close finished before the signal")
except KeyboardInterrupt:
    print("interrupted", batcher.closed, flush=True)
batcher.close()
for t in threads:
    t.join()
print("answers", len(results), all(results.values()), batcher.stats()["completed"])
"""
    proc = subprocess.Popen(
        [sys.executable, "-c", code], cwd=tmp_path, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True,
    )
    try:
        assert proc.stdout.readline().strip() == "closing"
        time.sleep(0.3)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert "interrupted True" in out, out
    assert "answers 40 True 40" in out, out


def test_timeout_ms_expires_a_request_still_queued(neff):
    # One batch of one row at a time, 200 ms each: the second request is still queued
    # long after its 50 ms deadline when the batcher thread is next free.
    path = neff("slow", {"kind": "affine", "scale": 3.0, "bias": -1.0},
                [("x", "float32", (1, 6))], [("y", "float32", (1, 6))], exec_us=200_000)
    model = neuron_dp.DataParallel(path, device_ids=[0])
    batcher = neuron_dp.Batcher(model, max_batch_rows=1, batches_in_flight=1, timeout_ms=50)

    async def main():
        first, second = batcher.infer_async(request(1)), batcher.infer_async(request(2))
        return await asyncio.gather(first, second, return_exceptions=True)

    first, second = asyncio.run(main())
    np.testing.assert_array_equal(first, request(1) * 3.0 - 1.0)
    assert isinstance(second, neuron_dp.DeadlineExceededError)
    assert isinstance(second, TimeoutError) and "was not run" in str(second)
    stats = batcher.stats()
    assert stats["expired"] == 1 and stats["completed"] == 1
    batcher.close()
