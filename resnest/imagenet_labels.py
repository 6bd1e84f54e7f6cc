"""Label file for Ascend 310 accuracy checks: image name -> class index (the seed's
create_imagenet2012_label.py).

    python -m resnest.imagenet_labels DATA/val -o imagenet_label.json

Classes are the sorted sub-folders of DATA/val, numbered the way training and
`resnest.eval` number them (`resnest.data.pipeline.list_images`). Keys are file names
without their extension, which is how the 310 program names its result files
(`<name>_0.bin`), so names must be unique across classes.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path


class LabelError(ValueError):
    """A validation folder that cannot be turned into a label file."""


def build_labels(val_dir: str | Path) -> dict[str, int]:
    """Map every image's file stem under `val_dir/<class>/` to its class index."""
    from resnest.data.pipeline import DataError, list_images

    try:
        images = list_images(val_dir)
    except DataError as exc:
        raise LabelError(str(exc)) from exc
    labels: dict[str, int] = {}
    first_seen: dict[str, Path] = {}
    for path, label in zip(images.files, images.labels, strict=True):
        if path.stem in labels:
            raise LabelError(f"two images are named {path.stem!r}: {first_seen[path.stem]} and "
                             f"{path}; result files are keyed by name, so names must be unique")
        labels[path.stem] = label
        first_seen[path.stem] = path
    return labels


def write_labels(labels: dict[str, int], output: str | Path) -> None:
    """Write the mapping as JSON, keys sorted (stable diffs)."""
    Path(output).write_text(json.dumps(labels, indent=0, sort_keys=True) + "\n")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m resnest.imagenet_labels",
        description="Write {image name without extension: class index} for DATA/val.")
    parser.add_argument("val_dir", help="validation folder: VAL/<class>/<image>")
    parser.add_argument("-o", "--output", default="imagenet_label.json",
                        help="label file to write (default: imagenet_label.json)")
    args = parser.parse_args(argv)
    try:
        labels = build_labels(args.val_dir)
        write_labels(labels, args.output)
    except (LabelError, OSError) as exc:
        print(f"imagenet_labels: error: {exc}", file=sys.stderr)
        return 1
    classes = len(set(labels.values()))
    print(f"wrote {len(labels)} labels in {classes} classes to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
