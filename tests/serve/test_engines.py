"""Both inference engines give the checkpoint's predictions, served and offline.

The tiny model is trained a few steps, saved as a checkpoint and exported twice: MINDIR
(MindSpore engine, static batch 1 and 4) and ONNX through ``resnest.export`` (ONNX Runtime
engine, dynamic batch, BN folded). Every path must give the checkpoint network's logits within
1e-5 relative (max |a - b| / max |b|): JPEG and tensor inputs, batch 1 and a full batch.
"""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from resnest.export import relative_error
from tests.serve.conftest import REPO, Server, TinyModel, http, start_server
from tests.serve.test_server import INFER, binary_fp32, logits_of

pytestmark = pytest.mark.integration

RTOL = 1e-5
FULL_BATCH = 8


def assert_equal_logits(got: np.ndarray, want: np.ndarray) -> None:
    assert got.shape == want.shape
    error = relative_error(got, want)
    assert error <= RTOL, f"relative error {error:.2e} > {RTOL:g}"


@pytest.fixture(scope="module")
def onnx_server(tiny_model: TinyModel, tmp_path_factory: pytest.TempPathFactory
                ) -> Iterator[Server]:
    """``--model model.onnx`` with the engine left to its default (auto)."""
    srv = start_server(["--model", str(tiny_model.dir / "model.onnx"),
                        "--max-batch-size", str(FULL_BATCH), "--max-queue-delay-ms", "2",
                        "--threads", "1"],
                       tmp_path_factory.mktemp("onnx-log") / "server.log")
    yield srv
    assert srv.stop() == 0, srv.log()


def _jpeg_request(jpegs: list[bytes]) -> bytes:
    return json.dumps({"inputs": [{"name": "input", "shape": [len(jpegs)], "datatype": "BYTES",
                                   "data": [base64.b64encode(j).decode() for j in jpegs]}]}
                      ).encode()


def test_onnx_is_served_by_onnxruntime_with_dynamic_batch(onnx_server: Server) -> None:
    status, meta = http("GET", onnx_server.url + "/v2/models/resnest")
    assert status == 200 and meta["platform"] == "onnxruntime_onnx"
    assert meta["parameters"]["max_batch_size"] == FULL_BATCH
    assert "1 intra-op threads (--threads)" in onnx_server.log()


@pytest.mark.parametrize("engine", ["onnxruntime", "mindspore"])
def test_served_tensor_predictions_equal_the_checkpoint(engine: str, onnx_server: Server,
                                                        server: Server,
                                                        tiny_model: TinyModel) -> None:
    srv, full = (onnx_server, FULL_BATCH) if engine == "onnxruntime" else (server, 4)
    inputs, expected = tiny_model.reference["full_inputs"], tiny_model.reference["full_logits"]
    for rows in (1, full):  # batch 1, and a full batch (one model call on either engine)
        data, headers = binary_fp32(inputs[:rows])
        status, body = http("POST", srv.url + INFER, data, headers)
        assert status == 200, body
        assert_equal_logits(logits_of(body), expected[:rows])


@pytest.mark.parametrize("engine", ["onnxruntime", "mindspore"])
def test_served_jpeg_predictions_equal_the_checkpoint(engine: str, onnx_server: Server,
                                                      server: Server,
                                                      tiny_model: TinyModel) -> None:
    srv = onnx_server if engine == "onnxruntime" else server
    jpegs = [(tiny_model.dir / f"image{i}.jpg").read_bytes() for i in range(3)]
    expected = tiny_model.reference["image_logits"]
    for rows in (slice(0, 1), slice(0, 3)):
        status, body = http("POST", srv.url + INFER, _jpeg_request(jpegs[rows]))
        assert status == 200, body
        assert_equal_logits(logits_of(body), expected[rows])


def test_offline_runner_equals_the_checkpoint_on_both_engines(tiny_model: TinyModel) -> None:
    """The runner `resnest.eval --model` uses, in a fresh process per engine."""
    script = (
        "import sys, numpy as np\n"
        "from pathlib import Path\n"
        "from resnest.serve.model import ModelRunner, ModelSpec\n"
        "engine, out = sys.argv[1], Path(sys.argv[2])\n"
        "paths = (out / 'model.onnx',) if engine == 'onnxruntime' else "
        "tuple(sorted(out.glob('model_b*.mindir')))\n"
        "runner = ModelRunner(ModelSpec(paths=paths, engine=engine), max_batch_size=8)\n"
        "runner.load()\n"
        "ref = np.load(out / 'reference.npz')\n"
        "np.savez(out / f'offline_{engine}.npz',\n"
        "         one=runner.predict(ref['full_inputs'][:1]), full=runner.predict(ref['full_inputs']),\n"
        "         images=runner.predict(ref['image_inputs']))\n"
    )
    expected = tiny_model.reference
    for engine in ("onnxruntime", "mindspore"):
        subprocess.run([sys.executable, "-c", script, engine, str(tiny_model.dir)], cwd=REPO,
                       check=True, capture_output=True, timeout=300)
        with np.load(tiny_model.dir / f"offline_{engine}.npz") as got:
            assert_equal_logits(got["one"], expected["full_logits"][:1])
            assert_equal_logits(got["full"], expected["full_logits"])
            assert_equal_logits(got["images"], expected["image_logits"])


def _eval(args: list[str], out: Path) -> dict:
    settings = ["--set", "net_name=resnest14d", "--set", "num_classes=5", "--set", "crop_size=32",
                "--set", "test_batch_size=2", "--set", "device_target=CPU",
                "--set", "num_workers=1"]
    result = subprocess.run([sys.executable, "-m", "resnest.eval", *args, *settings,
                             "--output-dir", str(out)], cwd=REPO, capture_output=True, text=True,
                            timeout=300, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads((out / "eval.json").read_text())


def test_eval_of_an_exported_model_counts_as_the_checkpoint(tiny_model: TinyModel,
                                                            tmp_path: Path) -> None:
    data = tmp_path / "data"
    for i in range(3):  # 3 JPEGs in 3 classes: a short last batch (test_batch_size 2)
        folder = data / "val" / f"c{i}"
        folder.mkdir(parents=True)
        (folder / "a.jpg").write_bytes((tiny_model.dir / f"image{i}.jpg").read_bytes())
    by_checkpoint = _eval(["--data-dir", str(data), "--checkpoint",
                           str(tiny_model.dir / "model.ckpt")], tmp_path / "ckpt")
    by_onnx = _eval(["--data-dir", str(data), "--model", str(tiny_model.dir / "model.onnx")],
                    tmp_path / "onnx")
    by_mindir = _eval(["--data-dir", str(data), "--model", str(tiny_model.mindirs[-1])],
                      tmp_path / "mindir")  # static batch 4, padded from test_batch_size 2
    assert by_onnx["engine"] == "onnxruntime" and by_onnx["total"] == 3
    assert by_mindir["engine"] == "mindspore"
    counts = ("top1_correct", "top5_correct", "total", "expected_total")
    assert [by_onnx[k] for k in counts] == [by_checkpoint[k] for k in counts]
    assert [by_mindir[k] for k in counts] == [by_checkpoint[k] for k in counts]
    # The counts must follow the logits: the classes the checkpoint predicts for each image.
    predicted = tiny_model.reference["image_logits"].argmax(axis=1)
    assert by_onnx["top1_correct"] == int((predicted == np.arange(3)).sum())


def test_engine_and_model_that_do_not_go_together_exit_2(tiny_model: TinyModel) -> None:
    cases = [
        (["--model", str(tiny_model.dir / "model.onnx"), "--engine", "mindspore"],
         "--engine mindspore cannot load model.onnx"),
        (["--model", str(tiny_model.mindirs[0]), "--engine", "onnxruntime"],
         "--engine onnxruntime runs .onnx models"),
        (["--model", str(tiny_model.dir / "model.onnx"), "--device", "gpu"],
         "runs on --device cpu only"),
    ]
    for args, message in cases:
        result = subprocess.run([sys.executable, "-m", "resnest.serve", *args], cwd=REPO,
                                capture_output=True, text=True, timeout=60, check=False)
        assert result.returncode == 2, result.stderr
        assert message in result.stderr and "Traceback" not in result.stderr
