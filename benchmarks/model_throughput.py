"""Images/s of our resnest50 in MindSpore and in ONNX Runtime (our export) against the official
PyTorch resnest50, same run, same CPU.

    .venv/bin/python benchmarks/model_throughput.py [--batch 8] [--image-size 224] [--iters 5]
                                                    [--threads N]

Measures inference (eval mode, no grad) and one training step (forward, label-smoothing
cross-entropy, backward, SGD momentum update) at batch 8, 224x224, random weights and data.
ONNX Runtime runs the same network with the same weights, written by `resnest.export`'s ONNX
path (dynamic batch, BN folded), on its CPU provider with --threads intra-op threads; it does
inference only. Ours runs in GRAPH_MODE in this process; PyTorch runs in a subprocess of the
reference venv
(.venv-ref, made by scripts/setup.sh) because the official package's module is also named
`resnest`: this same file is re-run there with `--peer torch`. Warm-up iterations (graph
compilation, allocator warm-up) are timed separately and not counted. The load average is
printed because the machine is shared: figures from a busy machine are lower bounds.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_PEER_PYTHON = REPO / ".venv-ref" / "bin" / "python"
RESULT_PREFIX = "RESULT "


def time_loop(step: Callable[[], None], warmup: int, iters: int) -> tuple[float, float]:
    """Seconds spent in the warm-up steps and mean seconds per timed step."""
    start = time.perf_counter()
    for _ in range(warmup):
        step()
    warm = time.perf_counter() - start
    start = time.perf_counter()
    for _ in range(iters):
        step()
    return warm, (time.perf_counter() - start) / iters


def measure_mindspore(args: argparse.Namespace) -> dict:
    import mindspore as ms
    import numpy as np
    from mindspore import nn

    from resnest.models import create_model

    ms.set_device("CPU")
    ms.set_context(mode=ms.GRAPH_MODE)
    if args.threads:
        ms.device_context.cpu.op_tuning.threads_num(args.threads)
    rng = np.random.default_rng(0)
    images = ms.Tensor(rng.normal(size=(args.batch, 3, args.image_size, args.image_size))
                       .astype(np.float32))
    labels = ms.Tensor(rng.integers(0, 1000, args.batch).astype(np.int32))

    net = create_model(args.arch, num_classes=1000)
    net.set_train(False)
    infer_warm, infer_step = time_loop(lambda: net(images).asnumpy(), args.warmup, args.iters)
    # Printed at once: on a busy machine the training phase can take many minutes more.
    print(f"MindSpore inference: {args.batch / infer_step:.3f} img/s "
          f"(warm-up {infer_warm:.1f} s)", flush=True)
    if not args.skip_onnx:
        args.onnx_result = measure_onnxruntime(args, net, images.asnumpy())

    loss = nn.CrossEntropyLoss(label_smoothing=0.1)
    optimizer = nn.Momentum(net.trainable_params(), learning_rate=0.01, momentum=0.9)
    train_step = nn.TrainOneStepCell(nn.WithLossCell(net, loss), optimizer)
    train_step.set_train(True)
    train_warm, train_time = time_loop(
        lambda: train_step(images, labels).asnumpy(), args.warmup, args.iters
    )
    return {
        "framework": f"MindSpore {ms.__version__} (GRAPH_MODE)",
        "threads": args.threads or "default",
        "infer_img_s": args.batch / infer_step,
        "train_img_s": args.batch / train_time,
        "infer_warmup_s": infer_warm,
        "train_warmup_s": train_warm,
    }


def measure_onnxruntime(args: argparse.Namespace, net: object, images: object) -> dict:
    """The same network and weights exported as `resnest.export` writes ONNX, run by ORT."""
    import tempfile

    import onnxruntime

    from resnest.export import write_onnx
    from resnest.serve.engine import OnnxRuntimeModel

    with tempfile.TemporaryDirectory(prefix="throughput-onnx-") as tmp:
        path = write_onnx(net, args.image_size, Path(tmp) / args.arch)
        model = OnnxRuntimeModel(path, threads=args.threads)
    infer_warm, infer_step = time_loop(lambda: model(images), args.warmup, args.iters)
    print(f"ONNX Runtime inference: {args.batch / infer_step:.3f} img/s "
          f"({model.threads} threads, warm-up {infer_warm:.1f} s)", flush=True)
    return {
        "framework": f"ONNX Runtime {onnxruntime.__version__} (CPU, our export)",
        "threads": model.threads,
        "infer_img_s": args.batch / infer_step,
        "train_img_s": None,
        "infer_warmup_s": infer_warm,
        "train_warmup_s": None,
    }


def measure_torch(args: argparse.Namespace) -> dict:
    import torch
    from resnest.torch import resnest50  # the official package (this runs in .venv-ref)

    if args.arch != "resnest50":
        raise SystemExit(f"--arch {args.arch!r}: the PyTorch peer has resnest50 only")
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    images = torch.randn(args.batch, 3, args.image_size, args.image_size)
    labels = torch.randint(0, 1000, (args.batch,))
    model = resnest50(pretrained=False)

    model.eval()

    def infer() -> None:
        with torch.no_grad():
            model(images)

    infer_warm, infer_step = time_loop(infer, args.warmup, args.iters)

    model.train()
    loss_fn = torch.nn.CrossEntropyLoss(label_smoothing=0.1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)

    def train() -> None:
        optimizer.zero_grad(set_to_none=True)
        loss_fn(model(images), labels).backward()
        optimizer.step()

    train_warm, train_time = time_loop(train, args.warmup, args.iters)
    return {
        "framework": f"PyTorch {torch.__version__} (eager)",
        "threads": torch.get_num_threads(),
        "infer_img_s": args.batch / infer_step,
        "train_img_s": args.batch / train_time,
        "infer_warmup_s": infer_warm,
        "train_warmup_s": train_warm,
    }


def run_peer(args: argparse.Namespace) -> dict:
    if not args.peer_python.is_file():
        raise SystemExit(f"{args.peer_python} is missing: run `bash scripts/setup.sh` first")
    command = [str(args.peer_python), str(Path(__file__).resolve()), "--peer", "torch",
               "--arch", args.arch, "--batch", str(args.batch),
               "--image-size", str(args.image_size), "--iters", str(args.iters),
               "--warmup", str(args.warmup), "--threads", str(args.threads)]
    # Run from a directory without our package so `resnest` is the official one.
    result = subprocess.run(command, cwd=Path(__file__).resolve().parent, check=False,
                            capture_output=True, text=True)
    lines = [ln for ln in result.stdout.splitlines() if ln.startswith(RESULT_PREFIX)]
    if result.returncode != 0 or not lines:
        raise SystemExit(f"PyTorch peer failed (exit {result.returncode}):\n{result.stderr}")
    return json.loads(lines[-1][len(RESULT_PREFIX):])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="resnest50")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--iters", type=int, default=5, help="timed iterations per phase")
    parser.add_argument("--warmup", type=int, default=1, help="untimed iterations per phase")
    parser.add_argument("--threads", type=int, default=None,
                        help="compute threads for every framework (default: the CPUs this "
                             "process may use; 0: each one's own default)")
    parser.add_argument("--peer", choices=("torch",), help=argparse.SUPPRESS)
    parser.add_argument("--peer-python", type=Path, default=DEFAULT_PEER_PYTHON)
    parser.add_argument("--skip-peer", action="store_true", help="leave out PyTorch")
    parser.add_argument("--skip-onnx", action="store_true", help="leave out ONNX Runtime")
    args = parser.parse_args()
    for name in ("batch", "image_size", "iters"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")

    if args.threads is None:  # the peer is always told; only our process reads its cgroup
        from resnest.serve.engine import available_cpus

        args.threads = available_cpus()
    if args.peer == "torch":
        print(RESULT_PREFIX + json.dumps(measure_torch(args)), flush=True)
        return

    load_before = os.getloadavg()
    print(f"{args.arch}, batch {args.batch}, {args.image_size}x{args.image_size}, CPU, "
          f"{os.cpu_count()} cores, threads={args.threads or 'default'}, "
          f"load average {load_before[0]:.2f}", flush=True)
    args.onnx_result = None
    ours = measure_mindspore(args)
    results = [ours]
    onnx = args.onnx_result
    if onnx is not None:
        results.append(onnx)
    peer = None
    if not args.skip_peer:
        peer = run_peer(args)
        results.append(peer)
    load_after = os.getloadavg()

    def number(value: float | None, digits: int) -> str:
        return "-" if value is None else f"{value:.{digits}f}"

    print(f"{'framework':<44} {'infer img/s':>12} {'train img/s':>12} {'warm-up s (i/t)':>16}")
    for r in results:
        warm = f"{number(r['infer_warmup_s'], 1)}/{number(r['train_warmup_s'], 1)}"
        print(f"{r['framework']:<44} {r['infer_img_s']:>12.2f} {number(r['train_img_s'], 2):>12} "
              f"{warm:>16}")
    if peer is not None:
        print(f"ratio MindSpore/PyTorch: inference {ours['infer_img_s'] / peer['infer_img_s']:.2f}x,"
              f" training {ours['train_img_s'] / peer['train_img_s']:.2f}x")
    if onnx is not None:
        line = f"ratio ONNX Runtime/MindSpore inference: {onnx['infer_img_s'] / ours['infer_img_s']:.2f}x"
        if peer is not None:
            line += f", ONNX Runtime/PyTorch: {onnx['infer_img_s'] / peer['infer_img_s']:.2f}x"
        print(line)
    print(f"load average after: {load_after[0]:.2f}")
    print(RESULT_PREFIX + json.dumps({"results": results, "load_average": [load_before[0],
                                                                            load_after[0]]}))


if __name__ == "__main__":
    main()
