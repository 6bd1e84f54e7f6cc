"""The server over real HTTP on 127.0.0.1, serving a MINDIR exported from a trained ResNeSt."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import re
import struct
import time
from pathlib import Path

import aiohttp
import numpy as np
import pytest
from PIL import Image

from tests.serve.conftest import IMAGE_SIZE, Server, TinyModel, http, start_server

pytestmark = pytest.mark.integration

INFER = "/v2/models/resnest/infer"
CLASSIFY = "/v2/models/resnest/classify"


def fp32_body(array: np.ndarray) -> bytes:
    return json.dumps({"inputs": [{"name": "input", "shape": list(array.shape),
                                   "datatype": "FP32", "data": array.ravel().tolist()}]}).encode()


def binary_fp32(array: np.ndarray) -> tuple[bytes, dict[str, str]]:
    """The binary-data extension: JSON header, then the raw little-endian floats."""
    raw = array.astype("<f4").tobytes()
    header = json.dumps({"inputs": [{"name": "input", "shape": list(array.shape),
                                     "datatype": "FP32",
                                     "parameters": {"binary_data_size": len(raw)}}]}).encode()
    return header + raw, {"Inference-Header-Content-Length": str(len(header))}


def logits_of(body: dict) -> np.ndarray:
    out = body["outputs"][0]
    assert out["name"] == "logits" and out["datatype"] == "FP32"
    return np.asarray(out["data"], np.float32).reshape(out["shape"])


def test_health_and_metadata(server: Server) -> None:
    assert http("GET", server.url + "/v2/health/live") == (200, {"live": True})
    assert http("GET", server.url + "/v2/health/ready") == (200, {"ready": True})
    assert http("GET", server.url + "/v2/models/resnest/ready") == (200, {"ready": True})
    status, meta = http("GET", server.url + "/v2/models/resnest")
    assert status == 200
    assert meta["name"] == "resnest" and meta["platform"] == "mindspore_mindir"
    assert meta["inputs"][0] == {"name": "input", "datatype": "FP32",
                                 "shape": [-1, 3, IMAGE_SIZE, IMAGE_SIZE]}
    assert meta["outputs"] == [{"name": "logits", "datatype": "FP32", "shape": [-1, 5]}]
    assert http("GET", server.url + "/v2/models/other")[0] == 404
    status, body = http("GET", server.url + "/no/such/path")
    assert status == 404 and "error" in body


def test_fp32_predictions_equal_direct_model_calls(server: Server, tiny_model: TinyModel) -> None:
    inputs, expected = tiny_model.reference["fp32_inputs"], tiny_model.reference["fp32_logits"]
    for rows in (slice(0, 1), slice(0, 3)):  # batch 1 (b1 graph) and 3 (padded into b4 graph)
        status, body = http("POST", server.url + INFER, fp32_body(inputs[rows]))
        assert status == 200, body
        np.testing.assert_allclose(logits_of(body), expected[rows], rtol=1e-4, atol=1e-5)
    data, headers = binary_fp32(inputs)
    status, body = http("POST", server.url + INFER, data, headers)
    assert status == 200, body
    np.testing.assert_allclose(logits_of(body), expected, rtol=1e-4, atol=1e-5)


def test_image_inputs_use_eval_preprocessing(server: Server, tiny_model: TinyModel) -> None:
    jpegs = [(tiny_model.dir / f"image{i}.jpg").read_bytes() for i in range(3)]
    expected = tiny_model.reference["image_logits"]
    body = json.dumps({"id": "req-7", "inputs": [{
        "name": "input", "shape": [3], "datatype": "BYTES",
        "data": [base64.b64encode(j).decode() for j in jpegs]}]}).encode()
    status, answer = http("POST", server.url + INFER, body)
    assert status == 200, answer
    assert answer["id"] == "req-7"
    np.testing.assert_allclose(logits_of(answer), expected, rtol=1e-4, atol=1e-5)

    status, answer = http("POST", server.url + CLASSIFY + "?top_k=3", jpegs[1],
                          {"Content-Type": "image/jpeg"})
    assert status == 200, answer
    probs = np.exp(expected[1] - expected[1].max())
    probs /= probs.sum()
    best = np.argsort(-probs)[:3]
    assert [p["class_index"] for p in answer["predictions"]] == best.tolist()
    assert [p["label"] for p in answer["predictions"]] == [f"class-{i}" for i in best]
    np.testing.assert_allclose([p["probability"] for p in answer["predictions"]], probs[best],
                               rtol=1e-4)


def test_classify_accepts_multipart_upload(server: Server, tiny_model: TinyModel) -> None:
    jpeg = (tiny_model.dir / "image0.jpg").read_bytes()
    boundary = "resnest-boundary"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; "
            f"filename=\"a.jpg\"\r\nContent-Type: image/jpeg\r\n\r\n").encode() + jpeg + \
        f"\r\n--{boundary}--\r\n".encode()
    status, answer = http("POST", server.url + CLASSIFY, body,
                          {"Content-Type": f"multipart/form-data; boundary={boundary}"})
    assert status == 200, answer
    assert len(answer["predictions"]) == 5
    assert abs(sum(p["probability"] for p in answer["predictions"]) - 1) < 1e-6


def _png_bomb() -> bytes:
    """A 10000x10000 one-bit PNG: a few KiB on the wire, 100 Mpixel (300 MB RGB) decoded."""
    buf = io.BytesIO()
    Image.new("1", (10_000, 10_000)).save(buf, format="PNG")
    return buf.getvalue()


def _infer_json(**spec: object) -> bytes:
    return json.dumps({"inputs": [{"name": "input", **spec}]}).encode()


BAD_REQUESTS = {
    "not JSON": (INFER, b"{not json", 400, "not valid JSON"),
    "no inputs": (INFER, b"{}", 400, "'inputs'"),
    "wrong tensor shape": (INFER, _infer_json(shape=[1, 3, 16, 16], datatype="FP32",
                                              data=[0.0] * 768), 400, "shape"),
    "shape and data disagree": (INFER, _infer_json(shape=[1, 3, 32, 32], datatype="FP32",
                                                   data=[0.0] * 10), 400, "needs 3072 values"),
    "wrong dtype": (INFER, _infer_json(shape=[1, 3, 32, 32], datatype="INT64",
                                       data=[0] * 3072), 400, "unsupported datatype"),
    "strings as FP32": (INFER, _infer_json(shape=[1, 3, 32, 32], datatype="FP32",
                                           data=["x"] * 3072), 400, "not a list of numbers"),
    "batch over limit": (INFER, _infer_json(shape=[33, 3, 32, 32], datatype="FP32", data=[]),
                         400, "outside [1, 32]"),
    "bad base64": (INFER, _infer_json(shape=[1], datatype="BYTES", data=["!!!"]), 400,
                   "base64"),
    "not an image": (CLASSIFY, b"hello, this is text", 400, "not an image"),
    "empty image": (CLASSIFY, b"", 400, "empty image"),
    "decompression bomb": (CLASSIFY, _png_bomb(), 400, "image too large"),
    "body over limit": (CLASSIFY, b"\xff" * (2 * 1024 * 1024), 413, "too large"),
}


@pytest.mark.parametrize("case", sorted(BAD_REQUESTS))
def test_bad_input_gets_its_status(server: Server, tiny_model: TinyModel, case: str) -> None:
    path, body, status, message = BAD_REQUESTS[case]
    got, answer = http("POST", server.url + path, body)
    assert got == status, answer
    assert message in answer["error"]
    assert http("GET", server.url + "/v2/health/ready")[0] == 200


def test_truncated_image_is_rejected_and_server_keeps_serving(server: Server,
                                                              tiny_model: TinyModel) -> None:
    jpeg = (tiny_model.dir / "image2.jpg").read_bytes()
    status, answer = http("POST", server.url + CLASSIFY, jpeg[: len(jpeg) // 2])
    assert status == 400, answer
    assert "truncated" in answer["error"]
    assert http("POST", server.url + CLASSIFY, jpeg)[0] == 200


def test_binary_extension_mismatch_is_rejected(server: Server) -> None:
    data, headers = binary_fp32(np.zeros((1, 3, IMAGE_SIZE, IMAGE_SIZE), np.float32))
    status, answer = http("POST", server.url + INFER, data[:-4], headers)
    assert status == 400 and "binary_data_size" in answer["error"]
    status, answer = http("POST", server.url + INFER, data,
                          {"Inference-Header-Content-Length": "999999999"})
    assert status == 400 and "outside the body" in answer["error"]
    length_prefixed = struct.pack("<I", 100) + b"abc"
    header = json.dumps({"inputs": [{"name": "input", "shape": [1], "datatype": "BYTES",
                                     "parameters": {"binary_data_size": 7}}]}).encode()
    status, answer = http("POST", server.url + INFER, header + length_prefixed,
                          {"Inference-Header-Content-Length": str(len(header))})
    assert status == 400 and "truncated" in answer["error"]


async def _hammer(url: str, bodies: list[bytes], clients: int,
                  headers: dict[str, str] | None = None) -> list[int]:
    """Send every body, ``clients`` at a time; return the status codes."""
    queue: asyncio.Queue[bytes] = asyncio.Queue()
    for body in bodies:
        queue.put_nowait(body)
    statuses: list[int] = []
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=clients)) as session:
        async def client() -> None:
            while not queue.empty():
                body = queue.get_nowait()
                async with session.post(url, data=body, headers=headers) as response:
                    await response.read()
                    statuses.append(response.status)
        await asyncio.gather(*[client() for _ in range(clients)])
    return statuses


def _metric(text: str, name: str, labels: str = "") -> float:
    match = re.search(rf"^{re.escape(name)}{re.escape(labels)} (\S+)$", text, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


def test_concurrent_load_has_no_errors_and_bounded_memory(server: Server,
                                                          tiny_model: TinyModel) -> None:
    inputs = tiny_model.reference["fp32_inputs"][:1]
    data, headers = binary_fp32(inputs)
    url = server.url + INFER
    warm = asyncio.run(_hammer(url, [data] * 300, 32, headers))
    assert set(warm) == {200}
    rss_before = server.rss_kib()
    statuses = asyncio.run(_hammer(url, [data] * 2000, 32, headers))
    rss_after = server.rss_kib()
    assert len(statuses) == 2000 and set(statuses) == {200}
    # Leaks per request would show as tens of MiB over 2000 requests; allocator noise does not.
    assert rss_after - rss_before < 64 * 1024, (rss_before, rss_after)
    metrics = http("GET", server.url + "/metrics")[1]
    batches = _metric(metrics, "resnest_batch_size_count")
    images = _metric(metrics, "resnest_batch_size_sum")
    assert images > batches > 0, "32 concurrent clients never shared a batch"
    assert _metric(metrics, "resnest_requests_total",
                   '{code="200",endpoint="/v2/models/{model}/infer"}') >= 2300
    assert _metric(metrics, "resnest_queue_duration_seconds_count") >= 2300


def test_metrics_count_errors_by_status(server: Server) -> None:
    http("POST", server.url + CLASSIFY, b"not an image")
    metrics = http("GET", server.url + "/metrics")[1]
    assert _metric(metrics, "resnest_requests_total",
                   '{code="400",endpoint="/v2/models/{model}/classify"}') >= 1
    assert "resnest_request_duration_seconds_bucket" in metrics
    assert _metric(metrics, "resnest_model_ready") == 1


def test_flood_gets_503_from_the_bounded_queue(tiny_model: TinyModel, tmp_path: Path) -> None:
    srv = start_server(["--model", str(tiny_model.mindirs[0]), "--max-batch-size", "1",
                        "--max-queue-size", "2"], tmp_path / "flood.log")
    try:
        data, headers = binary_fp32(tiny_model.reference["fp32_inputs"][:1])
        statuses = asyncio.run(_hammer(srv.url + INFER, [data] * 300, 100, headers))
        assert set(statuses) <= {200, 503}
        assert statuses.count(503) > 0 and statuses.count(200) > 0
        assert http("GET", srv.url + "/v2/health/ready")[0] == 200
        assert http("POST", srv.url + INFER, data, headers)[0] == 200
    finally:
        assert srv.stop() == 0, srv.log()


async def _inflight_then_sigterm(srv: Server, data: bytes, headers: dict[str, str]) -> list[int]:
    async with aiohttp.ClientSession() as session:
        async def one() -> int:
            async with session.post(srv.url + INFER, data=data, headers=headers) as response:
                await response.read()
                return response.status
        tasks = [asyncio.create_task(one()) for _ in range(3)]
        await asyncio.sleep(0.7)  # requests are now queued, waiting out the 3 s batch delay
        assert not any(t.done() for t in tasks)
        srv.process.terminate()
        return list(await asyncio.gather(*tasks))


def test_sigterm_drains_in_flight_requests(tiny_model: TinyModel, tmp_path: Path) -> None:
    args = [arg for path in tiny_model.mindirs for arg in ("--model", str(path))]
    srv = start_server([*args, "--max-batch-size", "4", "--max-queue-delay-ms", "3000"],
                       tmp_path / "drain.log")
    data, headers = binary_fp32(tiny_model.reference["fp32_inputs"][:1])
    started = time.monotonic()
    statuses = asyncio.run(_inflight_then_sigterm(srv, data, headers))
    assert statuses == [200, 200, 200], srv.log()
    assert srv.process.wait(timeout=60) == 0, srv.log()
    assert time.monotonic() - started < 60
    with pytest.raises(OSError):
        http("GET", srv.url + "/v2/health/live", timeout=5)


def test_checkpoint_model_with_arch(tiny_model: TinyModel, tmp_path: Path) -> None:
    srv = start_server(["--model", str(tiny_model.dir / "model.ckpt"), "--arch", "resnest14d",
                        "--num-classes", "5", "--image-size", str(IMAGE_SIZE),
                        "--max-batch-size", "1"], tmp_path / "ckpt.log")
    try:
        inputs = tiny_model.reference["fp32_inputs"][:2]
        status, body = http("POST", srv.url + INFER, fp32_body(inputs))
        assert status == 200, body
        np.testing.assert_allclose(logits_of(body), tiny_model.reference["fp32_logits"][:2],
                                   rtol=1e-4, atol=1e-5)
        assert http("GET", srv.url + "/v2/models/resnest")[1]["platform"] == "mindspore_checkpoint"
    finally:
        assert srv.stop() == 0, srv.log()


def test_model_that_fails_to_load_exits_non_zero(tmp_path: Path) -> None:
    broken = tmp_path / "broken.mindir"
    broken.write_bytes(b"this is not a MINDIR protobuf")
    with pytest.raises(AssertionError, match="server exited with 1") as raised:
        start_server(["--model", str(broken)], tmp_path / "broken.log", ready_timeout=120)
    assert "model failed to load" in str(raised.value)
