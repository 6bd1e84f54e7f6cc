"""Export a checkpoint to MINDIR, ONNX or AIR with a fixed input shape.

    python -m resnest.export --checkpoint C --format MINDIR|ONNX|AIR --batch-size B --image-size S --out P

MINDIR and ONNX are written on any device. AIR (for the Ascend 310 toolchain) can only be
written by MindSpore running on an Ascend device; elsewhere this says so and exits 2.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a file
    _repo_root = str(Path(__file__).resolve().parents[1])
    if sys.path and Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
        sys.path[0] = _repo_root
    else:
        sys.path.insert(0, _repo_root)

from resnest.config import ConfigError, add_config_arguments, config_from_args

FORMATS = {"MINDIR": ".mindir", "ONNX": ".onnx", "AIR": ".air"}


def export_network(net: object, fmt: str, batch_size: int, image_size: int, out: Path) -> Path:
    """Write `net` for input [batch_size, 3, image_size, image_size]; return the file written."""
    import mindspore as ms
    import numpy as np

    suffix = FORMATS[fmt]
    base = out.with_suffix("") if out.suffix.lower() == suffix else out
    base.parent.mkdir(parents=True, exist_ok=True)
    net.set_train(False)  # type: ignore[attr-defined]
    example = ms.Tensor(np.zeros((batch_size, 3, image_size, image_size), np.float32))
    ms.export(net, example, file_name=str(base), file_format=fmt)
    return base.with_name(base.name + suffix)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m resnest.export", description=__doc__.split("\n")[0])
    parser.add_argument("--checkpoint", required=True, type=Path, help=".ckpt file or run folder")
    parser.add_argument("--format", required=True, type=str.upper, help="MINDIR, ONNX or AIR")
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--out", required=True, type=Path, help="output file (suffix added if absent)")
    add_config_arguments(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.format not in FORMATS:
            raise ConfigError(f"--format {args.format!r}: allowed values are {', '.join(FORMATS)}")
        if args.batch_size < 1:
            raise ConfigError(f"--batch-size {args.batch_size}: must be >= 1")
        if args.image_size < 32:
            raise ConfigError(f"--image-size {args.image_size}: must be >= 32")
        config = config_from_args(args)
        from resnest.checkpoint import resolve_checkpoint_path

        checkpoint = resolve_checkpoint_path(args.checkpoint)
    except (ConfigError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    from resnest.distributed import resolve_device_target
    from resnest.network import create_network, load_network_weights

    device_target = resolve_device_target(config.device_target)
    if args.format == "AIR" and device_target != "Ascend":
        print(f"error: --format AIR needs an Ascend device (MindSpore writes AIR only through the "
              f"Ascend backend); this machine has {device_target}. Export MINDIR or ONNX here, or "
              "run this command on an Ascend host.", file=sys.stderr)
        return 2
    import mindspore as ms

    from resnest.distributed import select_device

    select_device(device_target)
    ms.set_context(mode=ms.GRAPH_MODE)
    net = create_network(config)
    try:
        load_network_weights(net, checkpoint)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    written = export_network(net, args.format, args.batch_size, args.image_size, args.out)
    print(f"exported {checkpoint} as {args.format} [{args.batch_size},3,{args.image_size},"
          f"{args.image_size}] to {written}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
