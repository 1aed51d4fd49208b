"""Benchmarks of the Python front-end against the same engine calls from Rust.

Run through ``cargo xtask python-bench`` (release mock, release package, the Rust baseline
``benches/reference.rs``), or by hand:

    NRT_DYLIB_PATH=... NRT_MOCK_TOTAL_CORES=24 python bench/bench.py --reference PATH [--quick]

Scenarios (all on the mock, compiled batch 1, 64-byte rows):
  1. per-call overhead at exec_us 0, n = k rows, k = 1 and 24: median µs of ``model(x)`` and
     ``model.forward_into`` against Rust's ``forward_into`` (target: < 3 µs extra). Each side
     runs in its own process, in interleaved rounds (the order rotating every round), so a
     change in the machine's load shifts both sides alike; the extra is the median over the
     rounds of each round's difference. ``--baseline-package DIR`` adds a third side: the
     neuron_dp installed in DIR (``pip install --target DIR ...``), for before/after;
  2. throughput at exec_us 200, k = 24, n = 96 from 1 and 8 Python threads, as a ratio to
     the same number of Rust threads (target >= 0.95);
  3. the Batcher from 64 asyncio tasks (single-row requests, k = 8, exec_us 1000) against
     the Rust batcher from 64 threads, as a ratio of requests/s, in interleaved rounds (with
     the baseline package too, when given);
  4. the Batcher under an open loop (a rate sweep; latency from each request's scheduled
     time): the highest rate with p99 < 10 ms and every request served, Python (asyncio)
     against Rust, as a ratio.
Prints a table and a JSON line.
"""

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import threading
import time

import numpy as np

import neuron_dp
from neuron_dp.testing import write_mock_neff

FEATURES = 16  # 64-byte float32 rows


def neff(directory, exec_us, batch=1):
    name = f"bench{exec_us}b{batch}"
    return write_mock_neff(
        os.path.join(directory, name + ".neff"), name, {"kind": "affine", "scale": 2.0, "bias": 1.0},
        [("x", "float32", (batch, FEATURES))], [("y", "float32", (batch, FEATURES))], exec_us=exec_us,
    )


def reference(binary, path, mode, cores, rows, threads, seconds):
    out = subprocess.run(
        [binary, path, mode, str(cores), str(rows), str(threads), str(seconds)],
        check=True, capture_output=True, text=True,
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


def overhead(path, k, seconds):
    """Median and p90 µs of ``model(x)`` and ``model.forward_into`` in this process."""
    model = neuron_dp.DataParallel(path, device_ids=list(range(k)))
    x = np.full((k, FEATURES), 0.5, dtype=np.float32)
    out = np.empty_like(x)
    results = {}
    for name, call in (("call", lambda: model(x)), ("forward_into", lambda: model.forward_into(x, out))):
        for _ in range(200):
            call()
        samples = []
        end = time.perf_counter() + seconds
        while time.perf_counter() < end or len(samples) < 100:
            t = time.perf_counter_ns()
            call()
            samples.append((time.perf_counter_ns() - t) / 1000)
        samples.sort()
        results[name] = {"median_us": samples[len(samples) // 2], "p90_us": samples[int(len(samples) * 0.9)]}
    del model
    return results


def in_worker(mode, path, n, seconds, package=None):
    """Runs ``overhead`` or ``batcher`` in a fresh interpreter; `package` (a directory) is
    imported instead of the installed neuron_dp when given."""
    env = dict(os.environ)
    if package:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [package, env.get("PYTHONPATH")]))
    out = subprocess.run(
        [sys.executable, os.path.abspath(__file__), "--worker", mode, path, str(n), str(seconds)],
        check=True, capture_output=True, text=True, env=env,
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


def python_overhead(path, k, seconds, package=None):
    return in_worker("overhead", path, k, seconds, package)


def median(values):
    values = sorted(values)
    middle = len(values) // 2
    return values[middle] if len(values) % 2 else (values[middle - 1] + values[middle]) / 2


def overhead_rounds(binary, path, k, seconds, rounds, baseline=None):
    """Interleaved rounds of the Rust baseline, this package and (optionally) the baseline
    package, each in its own process; returns per-side medians and per-round extras."""
    sides = [("rust", lambda: reference(binary, path, "overhead", k, k, 1, seconds)),
             ("python", lambda: python_overhead(path, k, seconds))]
    if baseline:
        sides.append(("baseline", lambda: python_overhead(path, k, seconds, baseline)))
    per_round = []
    for r in range(rounds):
        shift = r % len(sides)
        measured = {name: run() for name, run in sides[shift:] + sides[:shift]}
        per_round.append(measured)
    result = {"k": k, "rounds": rounds, "per_round": per_round,
              "rust_median_us": median([m["rust"]["median_us"] for m in per_round])}
    for side in [name for name, _ in sides if name != "rust"]:
        for call in ("call", "forward_into"):
            extras = [m[side][call]["median_us"] - m["rust"]["median_us"] for m in per_round]
            result[f"{side}_{call}_median_us"] = median([m[side][call]["median_us"] for m in per_round])
            result[f"{side}_{call}_extra_us"] = {"median": median(extras), "min": min(extras), "max": max(extras)}
    return result


def throughput(path, k, rows, threads, seconds):
    model = neuron_dp.DataParallel(path, device_ids=list(range(k)))
    counts = [0] * threads
    start = time.perf_counter()

    def worker(i):
        x = np.full((rows, FEATURES), 0.5, dtype=np.float32)
        out = np.empty_like(x)
        while time.perf_counter() - start < seconds:
            model.forward_into(x, out)
            counts[i] += 1

    ts = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    elapsed = time.perf_counter() - start
    del model
    return sum(counts) * rows / elapsed


def batcher(path, tasks, seconds):
    """`tasks` asyncio tasks each awaiting one single-row request at a time (closed loop)."""
    model = neuron_dp.DataParallel(path, device_ids=list(range(8)))
    latencies = []

    with neuron_dp.Batcher(model, max_delay_us=1000) as b:
        async def client():
            x = np.full((1, FEATURES), 0.5, dtype=np.float32)
            end = time.perf_counter() + seconds
            while time.perf_counter() < end:
                t = time.perf_counter()
                await b.infer_async(x)
                latencies.append((time.perf_counter() - t) * 1e6)

        async def main():
            await asyncio.gather(*(client() for _ in range(tasks)))

        start = time.perf_counter()
        asyncio.run(main())
        elapsed = time.perf_counter() - start
    latencies.sort()
    stats = b.stats()
    del b, model  # frees the cores for the Rust side's next round
    return {
        "requests_per_s": len(latencies) / elapsed,
        "p50_us": latencies[len(latencies) // 2],
        "p99_us": latencies[int(len(latencies) * 0.99)],
        "mean_batch_rows": stats["mean_batch_rows"],
    }


def open_loop(path, rate, seconds):
    """Single-row requests submitted with ``infer_async`` at `rate` per second for `seconds`
    (an open loop: on schedule whether or not earlier ones finished), each timed from its
    scheduled time to its future's completion on the loop; QueueFullError counts as never
    served."""
    model = neuron_dp.DataParallel(path, device_ids=list(range(8)))
    total = int(rate * seconds)
    latencies = []
    refused = 0

    with neuron_dp.Batcher(model, max_delay_us=1000) as b:
        async def generate():
            nonlocal refused
            x = np.full((1, FEATURES), 0.5, dtype=np.float32)
            finished = 0

            def done(future, scheduled):
                nonlocal finished
                finished += 1
                if future.exception() is None:
                    latencies.append((time.perf_counter() - scheduled) * 1e6)

            # Futures are not kept here (a server would not keep them either): the
            # batcher holds each until it completes.
            start = time.perf_counter() + 0.01
            sent = 0
            while sent < total:
                now = time.perf_counter()
                due = 0 if now < start else min(total, int((now - start) * rate) + 1)
                while sent < due:
                    try:
                        future = b.infer_async(x)
                    except neuron_dp.QueueFullError:
                        refused += 1
                    else:
                        future.add_done_callback(lambda f, s=start + sent / rate: done(f, s))
                    sent += 1
                await asyncio.sleep(0.0002)
            give_up = time.perf_counter() + 60  # a stuck request counts as unserved
            while finished < total - refused and time.perf_counter() < give_up:
                await asyncio.sleep(0.001)

        asyncio.run(generate())
    del b, model
    latencies.sort()
    served = len(latencies)

    def at(q):
        i = int((total - 1) * q)
        return latencies[i] if i < served else None  # unserved requests are infinitely late

    return {"rate": rate, "requests": total, "unserved": total - served, "p50_us": at(0.5), "p99_us": at(0.99)}


def sustained(binary, path, rates, seconds):
    """The open-loop sweep on both sides, Rust and Python alternating first; the sustained
    rate is the highest swept rate at which every request was served with p99 < 10 ms."""
    rows = []
    for i, rate in enumerate(rates):
        sides = [("rust", lambda: reference(binary, path, "open", 8, 1, rate, seconds)),
                 ("python", lambda: in_worker("open", path, rate, seconds))]
        order = sides if i % 2 == 0 else sides[::-1]
        rows.append({"rate": rate, **{name: run() for name, run in order}})

    def best(side):
        ok = [r["rate"] for r in rows
              if r[side]["unserved"] == 0 and r[side]["p99_us"] is not None and r[side]["p99_us"] < 10_000]
        return max(ok, default=0)

    return {"sweep": rows, "rust_sustained": best("rust"), "python_sustained": best("python")}


def batcher_rounds(binary, path, tasks, seconds, rounds, baseline=None):
    """Interleaved rounds of the Rust batcher (`tasks` client threads), the Python one
    (`tasks` asyncio tasks) and optionally the baseline package's, each in its own process,
    the order rotating."""
    sides = [("rust", lambda: reference(binary, path, "batcher", 8, 1, tasks, seconds)),
             ("python", lambda: in_worker("batcher", path, tasks, seconds))]
    if baseline:
        sides.append(("baseline", lambda: in_worker("batcher", path, tasks, seconds, baseline)))
    per_round = []
    for r in range(rounds):
        shift = r % len(sides)
        per_round.append({name: run() for name, run in sides[shift:] + sides[:shift]})
    result = {"rounds": per_round}
    for side in [name for name, _ in sides if name != "rust"]:
        ratios = [m[side]["requests_per_s"] / m["rust"]["requests_per_s"] for m in per_round]
        result[f"{side}_ratio"] = {"median": median(ratios), "min": min(ratios), "max": max(ratios)}
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reference", help="the built benches/reference.rs binary")
    parser.add_argument("--quick", action="store_true", help="shorter runs")
    parser.add_argument("--baseline-package", metavar="DIR",
                        help="also measure the neuron_dp installed in DIR (overhead and batcher)")
    parser.add_argument("--worker", nargs=4, metavar=("MODE", "NEFF", "N", "SECONDS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        mode, path, n, seconds = args.worker
        run = {"overhead": overhead, "batcher": batcher, "open": open_loop}[mode]
        print(json.dumps(run(path, int(n), float(seconds))))
        return
    if not args.reference:
        parser.error("--reference is required")
    seconds = 1.0 if args.quick else 3.0
    results = {"overhead": [], "throughput": [], "batcher": None}
    with tempfile.TemporaryDirectory() as d:
        zero, busy, serve = neff(d, 0), neff(d, 200), neff(d, 1000, batch=8)
        rounds = 5 if args.quick else 9
        each = 0.3 if args.quick else 0.5
        print(f"1. per-call overhead, exec_us 0, batch 1, n = k rows of 64 B: median µs per call; "
              f"{rounds} interleaved rounds of {each} s per side, median over rounds [min, max of the extra]")
        sides = ["python"] + (["baseline"] if args.baseline_package else [])
        print("| k | side | Rust forward_into | Python model(x) | Python forward_into | extra µs, model(x) | extra µs, forward_into |")
        print("|---|---|---|---|---|---|---|")
        for k in (1, 24):
            row = overhead_rounds(args.reference, zero, k, each, rounds, args.baseline_package)
            results["overhead"].append(row)
            for side in sides:
                call, into = row[f"{side}_call_extra_us"], row[f"{side}_forward_into_extra_us"]
                print(f"| {k} | {side} | {row['rust_median_us']:.1f} | {row[f'{side}_call_median_us']:.1f} "
                      f"| {row[f'{side}_forward_into_median_us']:.1f} "
                      f"| {call['median']:.2f} [{call['min']:.2f}, {call['max']:.2f}] "
                      f"| {into['median']:.2f} [{into['min']:.2f}, {into['max']:.2f}] |")
        print()
        print("2. throughput, exec_us 200, k = 24, batch 1, n = 96: rows/s")
        print("| threads | Rust | Python forward_into | Python / Rust |")
        print("|---|---|---|---|")
        for threads in (1, 8):
            rust = reference(args.reference, busy, "throughput", 24, 96, threads, seconds)["rows_per_s"]
            py = throughput(busy, 24, 96, threads, seconds)
            results["throughput"].append({"threads": threads, "rust_rows_per_s": rust, "python_rows_per_s": py})
            print(f"| {threads} | {rust:.0f} | {py:.0f} | {py / rust:.3f} |")
        print()
        rounds = 3
        seconds = 1.0 if args.quick else 2.0
        b = batcher_rounds(args.reference, serve, 64, seconds, rounds, args.baseline_package)
        results["batcher"] = b
        sides = ["rust", "python"] + (["baseline"] if args.baseline_package else [])
        print(f"3. Batcher, 64 closed-loop clients (Rust: threads, Python: asyncio tasks), single-row requests, "
              f"k = 8, exec_us 1000, batch 8, max_delay 1 ms; {rounds} interleaved rounds of {seconds} s per side")
        print("| round | side | requests/s | p50 µs | p99 µs | mean batch rows |")
        print("|---|---|---|---|---|---|")
        for r, measured in enumerate(b["rounds"]):
            for side in sides:
                m = measured[side]
                print(f"| {r + 1} | {side} | {m['requests_per_s']:.0f} | {m['p50_us']:.0f} | {m['p99_us']:.0f} "
                      f"| {m['mean_batch_rows']:.1f} |")
        for side in sides[1:]:
            ratio = b[f"{side}_ratio"]
            print(f"{side} / Rust requests/s: {ratio['median']:.3f} (median; rounds {ratio['min']:.3f}-{ratio['max']:.3f})")
        print()
        rates = [10000, 20000, 30000, 40000, 50000] if args.quick else list(range(5000, 60001, 5000))
        open_seconds = 1.0 if args.quick else 2.0
        s = sustained(args.reference, serve, rates, open_seconds)
        results["sustained"] = s
        print(f"4. Batcher, open loop: single-row requests at a fixed rate for {open_seconds} s, k = 8, exec_us 1000, "
              f"batch 8, max_delay 1 ms; latency from each request's scheduled time (unserved = infinitely late)")
        print("| rate/s | Rust p50 µs | Rust p99 µs | Rust unserved | Python p50 µs | Python p99 µs | Python unserved |")
        print("|---|---|---|---|---|---|---|")
        fmt = lambda v: "inf" if v is None else f"{v:.0f}"  # noqa: E731
        for row in s["sweep"]:
            r, p = row["rust"], row["python"]
            print(f"| {row['rate']} | {fmt(r['p50_us'])} | {fmt(r['p99_us'])} | {r['unserved']} "
                  f"| {fmt(p['p50_us'])} | {fmt(p['p99_us'])} | {p['unserved']} |")
        ratio = s["python_sustained"] / s["rust_sustained"] if s["rust_sustained"] else float("nan")
        print(f"sustained at p99 < 10 ms: Rust {s['rust_sustained']}/s, Python {s['python_sustained']}/s, "
              f"Python / Rust {ratio:.3f}")
    print(json.dumps(results))


if __name__ == "__main__":
    main()
