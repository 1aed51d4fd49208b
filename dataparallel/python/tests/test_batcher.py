"""neuron_dp.Batcher: blocking infer from threads, infer_async from asyncio tasks, stats."""

import asyncio
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
