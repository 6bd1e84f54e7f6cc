"""Fast checks of the pieces without a model: batcher, protocol parsing, decoding, CLI."""

from __future__ import annotations

import asyncio
import io
import json
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from resnest.serve.batcher import BatchStats, DynamicBatcher, QueueFullError
from resnest.serve.errors import InferenceError
from resnest.serve.model import batch_buckets
from resnest.serve.preprocess import decode_image
from resnest.serve.protocol import parse_infer_request

REPO = Path(__file__).resolve().parents[2]


def _double(x: np.ndarray) -> np.ndarray:
    return x * 2


async def _run_batcher(sizes: list[int], max_batch: int, delay: float, queue: int = 64,
                       infer=_double) -> tuple[list[np.ndarray], list[BatchStats]]:
    stats: list[BatchStats] = []
    with ThreadPoolExecutor(1) as pool:
        batcher = DynamicBatcher(infer, pool, max_batch, delay, queue, stats.append)
        batcher.start()
        inputs = [np.full((n, 2), i, np.float32) for i, n in enumerate(sizes)]
        outputs = await asyncio.gather(*[batcher.submit(x) for x in inputs])
        await batcher.stop()
    return outputs, stats


def test_concurrent_requests_share_batches_and_get_their_own_rows() -> None:
    outputs, stats = asyncio.run(_run_batcher([1, 1, 2, 1, 3, 1], max_batch=4, delay=0.5))
    for i, out in enumerate(outputs):
        assert out.shape[0] == [1, 1, 2, 1, 3, 1][i]
        assert np.all(out == 2 * i)
    assert [s.batch_size for s in stats] == [4, 4, 1]  # arrival order kept, never over 4
    assert sum(len(s.queue_seconds) for s in stats) == 6


def test_batching_off_runs_one_request_per_call() -> None:
    _, stats = asyncio.run(_run_batcher([1] * 5, max_batch=1, delay=0.0))
    assert [s.batch_size for s in stats] == [1] * 5


def test_full_queue_raises_and_model_errors_reach_every_waiter() -> None:
    release = threading.Event()

    def slow(x: np.ndarray) -> np.ndarray:
        release.wait(5)
        return x

    async def flood() -> list[object]:
        with ThreadPoolExecutor(1) as pool:
            batcher = DynamicBatcher(slow, pool, 1, 0.0, 2)
            batcher.start()
            tasks = [asyncio.create_task(batcher.submit(np.zeros((1, 1))))]
            await asyncio.sleep(0.2)  # the first request is now inside the (blocked) model call
            tasks += [asyncio.create_task(batcher.submit(np.zeros((1, 1)))) for _ in range(5)]
            await asyncio.sleep(0.1)
            release.set()
            results = await asyncio.gather(*tasks, return_exceptions=True)
            await batcher.stop()
        return results

    results = asyncio.run(flood())
    assert sum(isinstance(r, QueueFullError) for r in results) == 3  # 1 running + 2 queued
    assert sum(isinstance(r, np.ndarray) for r in results) == 3

    def broken(x: np.ndarray) -> np.ndarray:
        raise ValueError("graph failed")

    with pytest.raises(ValueError, match="graph failed"):
        asyncio.run(_run_batcher([1, 1], max_batch=2, delay=0.1, infer=broken))


def test_batch_buckets() -> None:
    assert batch_buckets(1) == [1]
    assert batch_buckets(8) == [1, 2, 4, 8]
    assert batch_buckets(12) == [1, 2, 4, 8, 12]


def _request(**spec: object) -> bytes:
    return json.dumps({"inputs": [{"name": "input", **spec}]}).encode()


def test_protocol_parses_fp32_json_and_binary() -> None:
    x = np.arange(2 * 3 * 32 * 32, dtype=np.float32).reshape(2, 3, 32, 32)
    parsed = parse_infer_request(_request(shape=[2, 3, 32, 32], datatype="FP32",
                                          data=x.tolist()), None, 32, 8)
    assert parsed.fp32 is not None and np.array_equal(parsed.fp32, x)
    raw = x.astype("<f4").tobytes()
    header = _request(shape=[2, 3, 32, 32], datatype="FP32",
                      parameters={"binary_data_size": len(raw)})
    parsed = parse_infer_request(header + raw, str(len(header)), 32, 8)
    assert parsed.fp32 is not None and np.array_equal(parsed.fp32, x)


@pytest.mark.parametrize(("body", "message"), [
    (_request(shape=[1, 3, 32, 32], datatype="FP16", data=[]), "unsupported datatype"),
    (_request(shape=[1, 3, 32], datatype="FP32", data=[]), "must be [B, 3, 32, 32]"),
    (_request(shape=[0, 3, 32, 32], datatype="FP32", data=[]), "outside [1, 8]"),
    (_request(shape=[True, 3, 32, 32], datatype="FP32", data=[]), "list of integers"),
    (_request(shape=[1, 3, 32, 32], datatype="FP32", data=[[1.0, None]]), "not a list of"),
    (_request(shape=[2], datatype="BYTES", data=["aGk="]), "but 1 elements sent"),
    (json.dumps({"inputs": [{"name": "x"}]}).encode(), "named 'input'"),
    (json.dumps({"inputs": [], "outputs": []}).encode(), "exactly one tensor"),
    (json.dumps([1, 2]).encode(), "JSON object"),
    (b"\xff\xfe", "not valid JSON"),
])
def test_protocol_rejects_bad_requests(body: bytes, message: str) -> None:
    with pytest.raises(InferenceError, match=message.replace("[", r"\[")) as raised:
        parse_infer_request(body, None, 32, 8)
    assert raised.value.status == 400


def test_decode_rejects_bombs_before_decoding_pixels() -> None:
    buf = io.BytesIO()
    Image.new("L", (4000, 3000)).save(buf, format="PNG")
    with pytest.raises(InferenceError, match="4000x3000 pixels"):
        decode_image(buf.getvalue(), max_pixels=1_000_000)
    assert decode_image(buf.getvalue(), max_pixels=12_000_000).mode == "RGB"


@pytest.mark.parametrize(("args", "message"), [
    (["--model", "/nonexistent.mindir"], "no such file"),
    (["--model", "{tmp}/m.pt"], "expected a .onnx, .mindir or .ckpt"),
    (["--model", "{tmp}/m.onnx", "--engine", "mindspore"], "--engine mindspore cannot load"),
    (["--model", "{tmp}/m.mindir", "--engine", "onnxruntime"], "runs .onnx models"),
    (["--model", "{tmp}/m.onnx", "--device", "ascend"], "runs on --device cpu only"),
    (["--model", "{tmp}/m.onnx", "--engine", "tensorrt"], "invalid choice"),
    (["--model", "{tmp}/m.onnx", "--threads", "-1"], "must be >= 0"),
    (["--model", "{tmp}/m.onnx", "--model", "{tmp}/m.onnx"], "only .mindir files may be repeated"),
    (["--model", "{tmp}/m.ckpt"], "give --arch and --num-classes"),
    (["--model", "{tmp}/m.ckpt", "--arch", "resnet50", "--num-classes", "3"], "choose one of"),
    (["--model", "{tmp}/m.mindir", "--port", "70000"], "not a TCP port"),
    (["--model", "{tmp}/m.mindir", "--max-batch-size", "0"], "must be >= 1"),
    (["--model", "{tmp}/m.mindir", "--device", "tpu"], "invalid choice"),
])
def test_cli_rejects_bad_arguments_in_one_line(tmp_path: Path, args: list[str],
                                               message: str) -> None:
    for name in ("m.onnx", "m.ckpt", "m.mindir", "m.pt"):
        (tmp_path / name).write_bytes(b"x")
    argv = [a.replace("{tmp}", str(tmp_path)) for a in args]
    result = subprocess.run([sys.executable, "-m", "resnest.serve", *argv], check=False, cwd=REPO,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert message in result.stderr.strip().splitlines()[-1]
    assert "Traceback" not in result.stderr


def test_engine_defaults_follow_the_model_format_and_device() -> None:
    from resnest.serve.engine import resolve_engine

    assert resolve_engine("auto", Path("m.onnx"), "cpu") == "onnxruntime"
    assert resolve_engine("auto", Path("m.mindir"), "cpu") == "mindspore"
    assert resolve_engine("auto", Path("m.ckpt"), "ascend") == "mindspore"
    assert resolve_engine("mindspore", Path("m.mindir"), "gpu") == "mindspore"


def _cgroup(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


def test_threads_come_from_the_cgroup_quota_and_affinity(tmp_path: Path) -> None:
    """cgroup v2 ``cpu.max`` ("QUOTA PERIOD" or "max PERIOD") and v1 ``cpu.cfs_quota_us`` /
    ``cpu.cfs_period_us`` (-1: no quota), as the kernel's cgroup docs define them, found
    through ``/proc/self/cgroup`` ("0::/PATH" v2, "N:cpu,cpuacct:/PATH" v1)."""
    import os

    from resnest.serve.engine import available_cpus

    affinity = len(os.sched_getaffinity(0))

    def cpus(files: dict[str, str], proc: str) -> int:
        root = tmp_path / f"case{len(list(tmp_path.iterdir()))}"
        root.mkdir()
        _cgroup(root, files)
        (root / "proc-self-cgroup").write_text(proc)
        return available_cpus(root, root / "proc-self-cgroup")

    # A container (cgroup namespace): its own cgroup is the mount's root.
    assert cpus({"cpu.max": "150000 100000\n"}, "0::/\n") == min(affinity, 2)  # 1.5 -> 2
    assert cpus({"cpu.max": "100000 100000\n"}, "0::/\n") == 1
    assert cpus({"cpu.max": "max 100000\n"}, "0::/\n") == affinity
    # A host path: the pod's quota sits on an ancestor of the container's cgroup.
    assert cpus({"kubepods/pod1/cpu.max": "100000 100000\n", "kubepods/pod1/c1/cpu.max":
                 "max 100000\n"}, "0::/kubepods/pod1/c1\n") == 1
    v1 = {"cpu,cpuacct/docker/abc/cpu.cfs_quota_us": "50000\n",
          "cpu,cpuacct/docker/abc/cpu.cfs_period_us": "100000\n"}
    assert cpus(v1, "4:memory:/docker/abc\n3:cpu,cpuacct:/docker/abc\n") == 1
    none = {"cpu/cpu.cfs_quota_us": "-1\n", "cpu/cpu.cfs_period_us": "100000\n"}
    assert cpus(none, "3:cpu,cpuacct:/\n") == affinity
    assert cpus({}, "") == affinity


def test_cpus_follow_the_affinity_mask_not_the_host(tmp_path: Path) -> None:
    """Under `taskset -c 0` (what a Slurm cpuset or a pinned container gives) one thread."""
    code = ("from pathlib import Path; from resnest.serve.engine import available_cpus; "
            f"print(available_cpus(Path({str(tmp_path)!r})))")
    result = subprocess.run(["taskset", "-c", "0", sys.executable, "-c", code], cwd=REPO,
                            capture_output=True, text=True, timeout=60, check=True)
    assert result.stdout.strip() == "1"


def _conv_bn_reshape_model(batch: int, rng: np.random.Generator):
    """x[B,3,8,8] -> Conv(3->4, bias) -> BatchNormalization -> Reshape([B, -1]) -> y."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    def init(name: str, value: np.ndarray) -> onnx.TensorProto:
        return numpy_helper.from_array(value, name)

    inits = [init("w", rng.normal(size=(4, 3, 3, 3)).astype(np.float32)),
             init("b", rng.normal(size=4).astype(np.float32)),
             init("gamma", rng.uniform(0.5, 2, 4).astype(np.float32)),
             init("beta", rng.normal(size=4).astype(np.float32)),
             init("mean", rng.normal(size=4).astype(np.float32)),
             init("var", rng.uniform(0.5, 2, 4).astype(np.float32))]
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("BatchNormalization", ["c", "gamma", "beta", "mean", "var"], ["n"],
                              epsilon=1e-5),
             helper.make_node("Constant", [], ["shape"],
                              value=init("shape_value", np.array([batch, -1], np.int64))),
             helper.make_node("Reshape", ["n", "shape"], ["y"])]
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [batch, 256])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 11)])


def test_onnx_rewrite_folds_batch_norm_and_frees_the_batch() -> None:
    import onnx
    import onnxruntime as ort

    from resnest.export import fold_batch_norms, make_batch_dynamic, relative_error

    rng = np.random.default_rng(0)
    model = _conv_bn_reshape_model(3, rng)
    x3 = rng.normal(size=(3, 3, 8, 8)).astype(np.float32)
    before = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    want = before.run(None, {"x": x3})[0]
    assert fold_batch_norms(model) == 1
    assert make_batch_dynamic(model, 3) == 1
    onnx.checker.check_model(model, full_check=True)
    assert [n.op_type for n in model.graph.node] == ["Conv", "Reshape"]
    assert model.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"
    after = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    assert relative_error(after.run(None, {"x": x3})[0], want) < 1e-6
    x5 = np.concatenate([x3, x3[:2]])
    got5 = after.run(None, {"x": x5})[0]
    assert got5.shape == (5, 256)
    assert relative_error(got5[3:], want[:2]) < 1e-6
