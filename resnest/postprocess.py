"""Top-1/top-5 accuracy of the Ascend 310 program's result files (the seed's postprocess.py).

    python -m resnest.postprocess --result-dir result_Files --label-file imagenet_label.json

Each `<image name>_0.bin` in the result folder holds one image's float32 logits; the label
file maps image names to class indices (`python -m resnest.imagenet_labels`). Prints the
seed's line `Total data: N, top1 accuracy: X, top5 accuracy: Y` and writes the counts as JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from resnest.evaluation import count_topk_correct

RESULT_SUFFIX = "_0.bin"  # first (only) model output of each image


class PostprocessError(ValueError):
    """Result or label files that cannot be scored."""


@dataclass(frozen=True)
class Accuracy:
    """Counts over the scored images; top1/top5 are fractions in [0, 1]."""

    total: int
    top1_correct: int
    top5_correct: int
    top1: float
    top5: float
    num_classes: int
    labels_without_result: int  # images in the label file that have no result file


def load_labels(label_file: str | Path) -> dict[str, int]:
    """The {image name: class index} JSON written by resnest.imagenet_labels."""
    try:
        data = json.loads(Path(label_file).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise PostprocessError(f"cannot read label file {str(label_file)!r}: {exc}") from exc
    if not isinstance(data, dict) or not all(
            isinstance(k, str) and isinstance(v, int) and not isinstance(v, bool) and v >= 0
            for k, v in data.items()):
        raise PostprocessError(f"label file {str(label_file)!r} must be a JSON object mapping "
                               "image names to class indices >= 0")
    return data


def load_logits(result_dir: str | Path) -> tuple[list[str], np.ndarray]:
    """Image names (sorted) and their logits [N, classes] from `<name>_0.bin` files."""
    result_dir = Path(result_dir)
    if not result_dir.is_dir():
        raise PostprocessError(f"result dir {str(result_dir)!r} is not a folder")
    files = sorted(result_dir.glob(f"*{RESULT_SUFFIX}"))
    if not files:
        raise PostprocessError(f"no *{RESULT_SUFFIX} result files in {str(result_dir)!r}")
    names = [f.name[: -len(RESULT_SUFFIX)] for f in files]
    sizes = {f.stat().st_size for f in files}
    if len(sizes) != 1 or 0 in sizes or min(sizes) % 4:
        raise PostprocessError(f"result files in {str(result_dir)!r} must all hold the same "
                               f"non-zero number of float32 logits; found file sizes (bytes) "
                               f"{sorted(sizes)}")
    # One preallocated array: 50,000 ImageNet results are 200 MB, not twice that.
    logits = np.empty((len(files), sizes.pop() // 4), dtype=np.float32)
    for row, path in zip(logits, files, strict=True):
        row[:] = np.fromfile(path, dtype=np.float32)
    return names, logits


def score(names: Sequence[str], logits: np.ndarray, labels: dict[str, int]) -> Accuracy:
    """Top-1/top-5 counts of `logits` (one row per name) against `labels`."""
    unlabelled = [n for n in names if n not in labels]
    if unlabelled:
        raise PostprocessError(f"{len(unlabelled)} result file(s) have no label, e.g. "
                               f"{unlabelled[0]!r}; was the label file made from the same val set?")
    num_classes = logits.shape[1]
    targets = np.array([labels[n] for n in names])
    if targets.max() >= num_classes:
        raise PostprocessError(f"label {targets.max()} is out of range for {num_classes} logits")
    # The very counting resnest.eval uses, so both report the same numbers on the same logits.
    top1_correct, top5_correct, total = count_topk_correct(
        logits, targets, np.ones(len(names), dtype=bool))
    return Accuracy(total=total, top1_correct=top1_correct, top5_correct=top5_correct,
                    top1=top1_correct / total, top5=top5_correct / total,
                    num_classes=num_classes, labels_without_result=len(set(labels) - set(names)))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m resnest.postprocess",
        description="Top-1/top-5 accuracy of <name>_0.bin logits files against a label file.")
    parser.add_argument("--result-dir", required=True, help="folder of <image name>_0.bin files")
    parser.add_argument("--label-file", required=True,
                        help="JSON {image name: class index} (python -m resnest.imagenet_labels)")
    parser.add_argument("--output", default="acc.json",
                        help="where to write the counts as JSON (default: acc.json)")
    args = parser.parse_args(argv)
    try:
        labels = load_labels(args.label_file)
        names, logits = load_logits(args.result_dir)
        accuracy = score(names, logits, labels)
        Path(args.output).write_text(json.dumps(
            {**asdict(accuracy), "result_dir": str(args.result_dir),
             "label_file": str(args.label_file)}, indent=2) + "\n")
    except (PostprocessError, OSError) as exc:
        print(f"postprocess: error: {exc}", file=sys.stderr)
        return 1
    if accuracy.labels_without_result:
        print(f"postprocess: note: {accuracy.labels_without_result} labelled image(s) have no "
              "result file and were not scored", file=sys.stderr)
    print(f"Total data: {accuracy.total}, top1 accuracy: {accuracy.top1}, "
          f"top5 accuracy: {accuracy.top5}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
