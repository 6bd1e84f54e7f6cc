"""Images/s of our MindSpore resnest50 against the official PyTorch resnest50, same run, same CPU.

    .venv/bin/python benchmarks/model_throughput.py [--batch 8] [--image-size 224] [--iters 5]

Measures inference (eval mode, no grad) and one training step (forward, label-smoothing
cross-entropy, backward, SGD momentum update) at batch 8, 224x224, random weights and data.
Ours runs in GRAPH_MODE in this process; PyTorch runs in a subprocess of the reference venv
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
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1,
                        help="compute threads for both frameworks (0: each one's default)")
    parser.add_argument("--peer", choices=("torch",), help=argparse.SUPPRESS)
    parser.add_argument("--peer-python", type=Path, default=DEFAULT_PEER_PYTHON)
    parser.add_argument("--skip-peer", action="store_true", help="measure MindSpore only")
    args = parser.parse_args()
    for name in ("batch", "image_size", "iters"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")

    if args.peer == "torch":
        print(RESULT_PREFIX + json.dumps(measure_torch(args)), flush=True)
        return

    load_before = os.getloadavg()
    print(f"{args.arch}, batch {args.batch}, {args.image_size}x{args.image_size}, CPU, "
          f"{os.cpu_count()} cores, threads={args.threads or 'default'}, "
          f"load average {load_before[0]:.2f}", flush=True)
    results = [measure_mindspore(args)]
    if not args.skip_peer:
        results.append(run_peer(args))
    load_after = os.getloadavg()

    print(f"{'framework':<38} {'infer img/s':>12} {'train img/s':>12} {'warm-up s (i/t)':>16}")
    for r in results:
        warm = f"{r['infer_warmup_s']:.1f}/{r['train_warmup_s']:.1f}"
        print(f"{r['framework']:<38} {r['infer_img_s']:>12.2f} {r['train_img_s']:>12.2f} "
              f"{warm:>16}")
    if len(results) == 2:
        ours, peer = results
        print(f"ratio MindSpore/PyTorch: inference {ours['infer_img_s'] / peer['infer_img_s']:.2f}x,"
              f" training {ours['train_img_s'] / peer['train_img_s']:.2f}x")
    print(f"load average after: {load_after[0]:.2f}")
    print(RESULT_PREFIX + json.dumps({"results": results, "load_average": [load_before[0],
                                                                            load_after[0]]}))


if __name__ == "__main__":
    main()
