"""Top-1 of our trainer against a PyTorch peer with the same recipe, over several seeds.

    .venv/bin/python benchmarks/train_accuracy.py [--seeds 1 2 3] [--epochs 15] [--lr 0.025]
        [--set key=value ...] [--json OUT]

Data: scikit-learn's bundled handwritten digits (real images, 10 classes), upsampled to 32 px
and written in the ImageNet layout (`resnest.data.digits`). Ours is `python -m resnest.train`
on those folders; the peer is `benchmarks/torch_peer_train.py` in `.venv-ref` (torch + the
official resnest package) on the very same decoded pixels, given our per-step lr array. Both
run one after the other, one compute thread each, so the figures come from the same machine
state. Prints each run, then mean and spread (sample standard deviation) and the difference.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

PEER_PYTHON = REPO / ".venv-ref" / "bin" / "python"
PEER_SCRIPT = REPO / "benchmarks" / "torch_peer_train.py"

# The recipe both trainers follow (the seed's, minus the two augmentations the peer does not
# implement: AutoAugment and colour jitter). Keys are resnest.config keys.
RECIPE = {
    "net_name": "resnest14d",
    "num_classes": 10,
    "crop_size": 32,
    "batch_size": 32,
    "test_batch_size": 64,
    "epochs": 15,
    "lr": 0.025,
    "warmup_epochs": 2,
    "weight_decay": 0.0001,
    "momentum": 0.9,
    "label_smoothing": 0.1,
    "disable_bn_wd": True,
    "last_gamma": True,
    "rrc_scale_min": 0.08,
    "rrc_scale_max": 1.0,
    "hflip": True,
    "autoaugment": "off",
    "color_jitter": 0.0,
    "num_workers": 1,
    "cpu_threads": 1,
    "log_every_steps": 1000,
}


def prepare_data(root: Path) -> tuple[Path, Path]:
    """The digits as folders (ours) and as one .npz of the same pixels (the peer)."""
    import numpy as np

    from resnest.data.digits import digits_arrays, split_indices, write_digits_folders

    folders = write_digits_folders(root / "digits")
    images, labels = digits_arrays()
    train, val = split_indices(labels, list(range(10)))
    npz = root / "digits.npz"
    np.savez(npz, train_x=images[train], train_y=labels[train], val_x=images[val],
             val_y=labels[val])
    return folders, npz


def run_ours(data: Path, out: Path, recipe: dict, seed: int) -> float:
    args = [sys.executable, "-m", "resnest.train", "--data-dir", str(data), "--output-dir",
            str(out)]
    for key, value in {**recipe, "seed": seed}.items():
        args += ["--set", f"{key}={value}"]
    env = dict(os.environ, GLOG_v="3", PYTHONUNBUFFERED="1")
    proc = subprocess.run(args, cwd=REPO, env=env, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"ours (seed {seed}) exited {proc.returncode}: {proc.stderr[-2000:]}"
                         f"{proc.stdout[-2000:]}")
    return float(json.loads((out / "eval.json").read_text())["top1"])


def peer_recipe(recipe: dict, train_images: int) -> dict:
    """The recipe with our per-step lr array and eval resize, as the peer reads it."""
    from resnest.config import load_config
    from resnest.data.pipeline import eval_resize_size
    from resnest.lr_schedule import build_lr_schedule

    config = load_config(None, recipe)
    steps_per_epoch = train_images // config.batch_size
    lr = build_lr_schedule(config, steps_per_epoch).tolist()
    return {**recipe, "lr_per_step": lr, "eval_resize": eval_resize_size(config),
            "threads": recipe["cpu_threads"]}


def run_peer(npz: Path, recipe_file: Path, seed: int) -> float:
    proc = subprocess.run([str(PEER_PYTHON), str(PEER_SCRIPT), str(npz), str(recipe_file),
                           "--seed", str(seed)], capture_output=True, text=True, check=False,
                          cwd="/tmp")  # never import this repo's `resnest` in the peer
    if proc.returncode != 0:
        raise SystemExit(f"peer (seed {seed}) exited {proc.returncode}: {proc.stderr[-2000:]}")
    return float(json.loads(proc.stdout.strip().splitlines()[-1])["top1"])


def summary(values: list[float]) -> str:
    spread = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.2f} +- {spread:.2f} (min {min(values):.2f}, " \
           f"max {max(values):.2f})"


def main() -> int:
    from resnest.config import ConfigError, coerce_value, parse_set_overrides

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--epochs", type=int, default=RECIPE["epochs"])
    parser.add_argument("--lr", type=float, default=RECIPE["lr"])
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="KEY=VALUE", help="change the recipe of both trainers")
    parser.add_argument("--only", choices=("ours", "peer"), default=None)
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args()
    if not PEER_PYTHON.exists():
        print(f"error: {PEER_PYTHON} is missing; run scripts/setup.sh", file=sys.stderr)
        return 1
    try:
        overrides = {k: coerce_value(k, v) for k, v in parse_set_overrides(args.overrides).items()}
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    recipe = {**RECIPE, "epochs": args.epochs, "lr": args.lr, **overrides}
    print(f"recipe: {json.dumps(recipe)}", flush=True)
    print(f"load at start (1/5/15 min): {os.getloadavg()}", flush=True)
    results: dict[str, list[float]] = {"ours": [], "peer": []}
    with tempfile.TemporaryDirectory(prefix="train-accuracy-") as tmp:
        root = Path(tmp)
        data, npz = prepare_data(root)
        import numpy as np

        train_images = len(np.load(npz)["train_y"])
        recipe_file = root / "recipe.json"
        recipe_file.write_text(json.dumps(peer_recipe(recipe, train_images)))
        for seed in args.seeds:
            for who in ("ours", "peer"):
                if args.only and who != args.only:
                    continue
                start = time.time()
                top1 = (run_ours(data, root / f"ours-{seed}", recipe, seed) if who == "ours"
                        else run_peer(npz, recipe_file, seed))
                results[who].append(top1)
                print(f"{who:4s} seed {seed}: top-1 {top1:.2f}%  ({time.time() - start:.0f} s)",
                      flush=True)
    for who, values in results.items():
        if values:
            print(f"{who:4s}: top-1 {summary(values)} over {len(values)} seeds")
    if results["ours"] and results["peer"]:
        diff = statistics.mean(results["ours"]) - statistics.mean(results["peer"])
        print(f"difference (ours - peer): {diff:+.2f} points")
    print(f"load at end (1/5/15 min): {os.getloadavg()}")
    if args.json:
        args.json.write_text(json.dumps({"recipe": recipe, "seeds": args.seeds, **results}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
