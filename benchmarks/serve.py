"""Serving overhead and dynamic batching per inference engine, against direct engine calls.

    python benchmarks/serve.py [--arch resnest14d] [--image-size 32] [--requests 128]
                               [--engines mindspore,onnxruntime] [--threads N]

Exports the model to MINDIR (one graph per static batch size 1/2/4/8, the MindSpore engine) and
to ONNX (``resnest.export``'s dynamic-batch graph, the onnxruntime engine). For each engine it
times direct calls in this process (``GraphCell`` / ``InferenceSession``), then starts
``python -m resnest.serve --engine E`` on 127.0.0.1 with batching off (--max-batch-size 1) and on
(--max-batch-size 8) and drives it with an aiohttp client at concurrency 1 and 32 (binary FP32
tensors, the KServe v2 binary-data extension). Prints throughput, p50/p99 latency and the
ratios. Weights are random: speed does not depend on them. The client shares the machine's
cores with the server, as a sidecar load generator would.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
BATCHES = (1, 2, 4, 8)
_T0 = time.perf_counter()


def progress(message: str) -> None:
    print(f"[{time.perf_counter() - _T0:7.1f}s] {message}", file=sys.stderr, flush=True)


@dataclass
class Result:
    name: str
    concurrency: int
    images: int
    seconds: float
    latencies: list[float]
    server_request_ms: float = float("nan")  # mean, from the server's own histograms
    server_compute_ms: float = float("nan")  # mean model call (one batch)
    mean_batch: float = float("nan")

    @property
    def throughput(self) -> float:
        return self.images / self.seconds

    def pct(self, q: float) -> float:
        return float(np.percentile(self.latencies, q)) * 1000

    def row(self) -> str:
        return (f"| {self.name} | {self.concurrency} | {self.throughput:8.1f} | "
                f"{self.pct(50):8.2f} | {self.pct(99):8.2f} | {self.server_request_ms:8.2f} | "
                f"{self.server_compute_ms:8.2f} | {self.mean_batch:5.2f} |")


def export_model(out: Path, arch: str, size: int, num_classes: int,
                 engines: list[str]) -> dict[str, list[Path]]:
    """Model files per engine: MINDIRs at each static batch size, one dynamic-batch ONNX."""
    import mindspore as ms

    from resnest.export import write_onnx
    from resnest.models import create_model

    net = create_model(arch, num_classes=num_classes, final_drop=0.0, last_gamma=False)
    net.set_train(False)
    paths: dict[str, list[Path]] = {}
    if "mindspore" in engines:
        paths["mindspore"] = []
        for batch in BATCHES:
            progress(f"exporting {arch} batch {batch} to MINDIR")
            name = out / f"{arch}_b{batch}"
            ms.export(net, ms.Tensor(np.zeros((batch, 3, size, size), np.float32)),
                      file_name=str(name), file_format="MINDIR")
            paths["mindspore"].append(name.with_suffix(".mindir"))
    if "onnxruntime" in engines:
        progress(f"exporting {arch} to ONNX (dynamic batch)")
        paths["onnxruntime"] = [write_onnx(net, size, out / arch)]
    return paths


class DirectModel:
    """The exported model called in this process, the way an in-process user would."""

    def __init__(self, engine: str, paths: list[Path], batch: int, size: int,
                 threads: int) -> None:
        x = np.random.default_rng(0).normal(size=(batch, 3, size, size)).astype(np.float32)
        if engine == "onnxruntime":
            from resnest.serve.engine import OnnxRuntimeModel

            session = OnnxRuntimeModel(paths[0], threads)
            self._run = lambda: session(x)
            self.what = "InferenceSession"
        else:
            import mindspore as ms
            from mindspore import nn

            path = paths[BATCHES.index(batch)]
            cell, tensor = nn.GraphCell(ms.load(str(path))), ms.Tensor(x)
            self._run = lambda: cell(tensor).asnumpy()
            self.what = "GraphCell"
        self.batch = batch
        for _ in range(3):
            self.call()

    def call(self) -> float:
        t = time.perf_counter()
        self._run()
        return time.perf_counter() - t


def direct(model: DirectModel, calls: int) -> Result:
    latencies = [model.call() for _ in range(calls)]
    return Result(f"direct {model.what}, batch {model.batch}", 1, calls * model.batch,
                  sum(latencies), latencies, server_compute_ms=1000 * float(np.mean(latencies)),
                  mean_batch=model.batch)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_server(engine: str, paths: list[Path], max_batch: int, delay_ms: float,
                 threads: int) -> tuple[subprocess.Popen, str]:
    port = free_port()
    args = [sys.executable, "-m", "resnest.serve", "--host", "127.0.0.1", "--port", str(port),
            "--engine", engine, "--threads", str(threads),
            "--max-batch-size", str(max_batch), "--max-queue-delay-ms", str(delay_ms),
            "--max-queue-size", "512", "--log-level", "WARNING"]
    for path in paths:
        args += ["--model", str(path)]
    process = subprocess.Popen(args, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"server exited: {process.stderr.read().decode()[-2000:]}")
        try:
            with urllib.request.urlopen(url + "/v2/health/ready", timeout=2) as response:
                if response.status == 200:
                    return process, url
        except OSError:
            time.sleep(0.3)
    process.kill()
    raise SystemExit("server did not become ready")


async def drive(url: str, body: bytes, headers: dict[str, str], concurrency: int,
                requests: int) -> tuple[float, list[float]]:
    import aiohttp

    latencies: list[float] = []
    remaining = requests
    async with aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=concurrency)) as session:
        async def client() -> None:
            nonlocal remaining
            while remaining > 0:
                remaining -= 1
                t = time.perf_counter()
                async with session.post(url, data=body, headers=headers) as response:
                    await response.read()
                    if response.status != 200:
                        raise SystemExit(f"HTTP {response.status}")
                latencies.append(time.perf_counter() - t)

        for _ in range(concurrency):  # warm connections
            async with session.post(url, data=body, headers=headers) as response:
                await response.read()
        started = time.perf_counter()
        await asyncio.gather(*[client() for _ in range(concurrency)])
        return time.perf_counter() - started, latencies


def server_means(url: str) -> dict[str, float]:
    """Sums and counts of the server's histograms, from /metrics."""
    with urllib.request.urlopen(url + "/metrics", timeout=10) as response:
        text = response.read().decode()
    values: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("#") or " " not in line:
            continue
        key, value = line.rsplit(" ", 1)
        for name in ("resnest_request_duration_seconds", "resnest_compute_duration_seconds",
                     "resnest_batch_size"):
            for part in ("_sum", "_count"):
                prefix = name + part
                if key == prefix or key == prefix + '{endpoint="/v2/models/{model}/infer"}':
                    values[prefix] = float(value)
    return values


def _delta(after: dict[str, float], before: dict[str, float], name: str) -> float:
    count = after.get(name + "_count", 0) - before.get(name + "_count", 0)
    return (after.get(name + "_sum", 0) - before.get(name + "_sum", 0)) / count if count else 0.0


def served(engine: str, paths: list[Path], size: int, requests: int, batching: bool,
           direct_1: DirectModel, threads: int) -> list[Result]:
    """Server results at concurrency 1 and 32, and direct batch-1 calls timed in alternation
    with the concurrency-1 requests (same minutes, same machine load)."""
    max_batch, delay = (BATCHES[-1], 2.0) if batching else (1, 0.0)
    process, url = start_server(engine, paths if batching else paths[:1], max_batch, delay,
                                threads)
    raw = np.random.default_rng(0).normal(size=(1, 3, size, size)).astype("<f4").tobytes()
    header = json.dumps({"inputs": [{"name": "input", "shape": [1, 3, size, size],
                                     "datatype": "FP32",
                                     "parameters": {"binary_data_size": len(raw)}}]}).encode()
    headers = {"Inference-Header-Content-Length": str(len(header))}
    progress(f"server ready (batching {'on' if batching else 'off'})")
    label = f"{engine} server, batching {'on (max 8, 2 ms)' if batching else 'off'}"
    results = []
    try:
        rounds, per_round = 4, max(requests // 16, 5)
        direct_latencies: list[float] = []
        for concurrency, count in [(1, rounds * per_round), (32, requests)]:
            progress(f"{label}: {count} requests at concurrency {concurrency}")
            before = server_means(url)
            seconds, latencies = 0.0, []
            for _ in range(rounds if concurrency == 1 else 1):
                if concurrency == 1:
                    direct_latencies += [direct_1.call() for _ in range(per_round)]
                part_seconds, part = asyncio.run(drive(
                    url + "/v2/models/resnest/infer", header + raw, headers, concurrency,
                    per_round if concurrency == 1 else count))
                seconds += part_seconds
                latencies += part
            after = server_means(url)
            results.append(Result(
                label, concurrency, count, seconds, latencies,
                server_request_ms=1000 * _delta(after, before, "resnest_request_duration_seconds"),
                server_compute_ms=1000 * _delta(after, before, "resnest_compute_duration_seconds"),
                mean_batch=_delta(after, before, "resnest_batch_size")))
        results.insert(0, Result(f"direct {direct_1.what}, batch 1 (alternating with {label})", 1,
                                 len(direct_latencies), sum(direct_latencies), direct_latencies,
                                 server_compute_ms=1000 * float(np.mean(direct_latencies)),
                                 mean_batch=1))
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)
    return results


def report(engine: str, rows: dict[str, Result]) -> None:
    direct_8, direct_off, off_1, off_32, direct_on, on_1, on_32 = (
        rows[k] for k in ("direct_8", "direct_off", "off_1", "off_32", "direct_on", "on_1",
                          "on_32"))
    print(f"\n{engine}:")
    print(f"  server / direct throughput at batch 1, concurrency 1:  "
          f"{off_1.throughput / direct_off.throughput:.3f} (batching off), "
          f"{on_1.throughput / direct_on.throughput:.3f} (batching on)  "
          f"(p50 overhead {off_1.pct(50) - direct_off.pct(50):+.2f} ms; inside the server "
          f"{off_1.server_request_ms - off_1.server_compute_ms:+.2f} ms beyond the model call)")
    print(f"  batching on / off throughput at concurrency 32:        "
          f"{on_32.throughput / off_32.throughput:.3f}")
    normalised = (on_32.throughput / direct_on.throughput) / (
        off_32.throughput / direct_off.throughput)
    print(f"    same, each normalised by its alternating direct rate: {normalised:.3f}"
          "  (the machine's load drifts between phases)")
    print(f"  batching on / direct batch-8 throughput:               "
          f"{on_32.throughput / direct_8.throughput:.3f}")
    print(f"  batching on / off p50 latency at concurrency 1:        "
          f"{on_1.pct(50) / off_1.pct(50):.3f}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="resnest14d")
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--num-classes", type=int, default=10)
    parser.add_argument("--requests", type=int, default=128)
    parser.add_argument("--engines", default="mindspore,onnxruntime",
                        help="comma-separated: mindspore, onnxruntime")
    parser.add_argument("--threads", type=int, default=0,
                        help="engine compute threads in the server and the direct calls "
                             "(0: the CPUs this process may use)")
    args = parser.parse_args()
    engines = [e for e in args.engines.split(",") if e]
    if not engines or any(e not in ("mindspore", "onnxruntime") for e in engines):
        parser.error(f"--engines {args.engines!r}: a comma-separated list of mindspore, "
                     "onnxruntime")
    import mindspore as ms

    from resnest.serve.engine import available_cpus

    threads = args.threads or available_cpus()
    ms.set_device("CPU")
    ms.set_context(mode=ms.GRAPH_MODE)
    ms.device_context.cpu.op_tuning.threads_num(threads)
    load_before = os.getloadavg()[0]
    results: dict[str, dict[str, Result]] = {}
    with tempfile.TemporaryDirectory(prefix="serve-bench-") as tmp:
        paths = export_model(Path(tmp), args.arch, args.image_size, args.num_classes, engines)
        for engine in engines:
            progress(f"{engine}: direct calls")
            model_1 = DirectModel(engine, paths[engine], 1, args.image_size, threads)
            rows = {"direct_8": direct(DirectModel(engine, paths[engine], BATCHES[-1],
                                                   args.image_size, threads),
                                       max(args.requests // 16, 5))}
            rows["direct_off"], rows["off_1"], rows["off_32"] = served(
                engine, paths[engine], args.image_size, args.requests, False, model_1, threads)
            rows["direct_on"], rows["on_1"], rows["on_32"] = served(
                engine, paths[engine], args.image_size, args.requests, True, model_1, threads)
            results[engine] = rows
    print(f"\n{args.arch}, {args.image_size}x{args.image_size}, {args.num_classes} classes, "
          f"CPU ({os.cpu_count()} cores, {threads} engine threads), {args.requests} requests at "
          f"concurrency 32, load average {load_before:.2f} before / {os.getloadavg()[0]:.2f} "
          "after\n")
    print("| what | concurrency | img/s | p50 ms | p99 ms | server request ms (mean) | "
          "model call ms (mean) | images per call |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for rows in results.values():
        for key in ("direct_8", "direct_off", "off_1", "off_32", "direct_on", "on_1", "on_32"):
            print(rows[key].row())
    for engine, rows in results.items():
        report(engine, rows)
    if len(results) == 2:
        ms_rows, ort_rows = results["mindspore"], results["onnxruntime"]
        print("\nonnxruntime / mindspore, same run:")
        for key, what in (("direct_8", "direct batch-8 calls"),
                          ("off_1", "server, batching off, concurrency 1"),
                          ("on_32", "server, batching on, concurrency 32")):
            print(f"  {what}: throughput {ort_rows[key].throughput / ms_rows[key].throughput:.2f}x"
                  f", p50 {ort_rows[key].pct(50) / ms_rows[key].pct(50):.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
