"""Command line of the server: ``python -m resnest.serve --model M.onnx|M.mindir|C.ckpt ...``.

Bad arguments exit with code 2 and one line naming the value and what is allowed, before
anything heavy is imported.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any

from resnest.contract import INTEGER_WORDS, NUMBER_WORDS, integer_from_text, number_from_text
from resnest.serve.config import ServeConfig, read_labels
from resnest.serve.engine import ENGINE_CHOICES, EngineChoiceError, resolve_engine
from resnest.serve.model import DEVICE_TARGETS, ModelSpec


def _integer(text: str) -> int:
    value = integer_from_text(text)
    if value is None:
        raise argparse.ArgumentTypeError(f"{text!r} is not {INTEGER_WORDS}")
    return value


def _positive_int(text: str) -> int:
    value = _integer(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} must be >= 1")
    return value


def _non_negative_int(text: str) -> int:
    value = _integer(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"{value} must be >= 0")
    return value


def _non_negative_float(text: str) -> float:
    value = number_from_text(text)
    if value is None:
        raise argparse.ArgumentTypeError(f"{text!r} is not {NUMBER_WORDS}")
    if value < 0:
        raise argparse.ArgumentTypeError(f"{value} must be >= 0")
    return value


def _port(text: str) -> int:
    value = _positive_int(text)
    if value > 65535:
        raise argparse.ArgumentTypeError(f"{value} is not a TCP port (1-65535)")
    return value


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m resnest.serve",
        description="Serve a ResNeSt classifier over the KServe v2 REST protocol.")
    p.add_argument("--model", required=True, type=Path, action="append",
                   help="exported .onnx or .mindir model, or a .ckpt checkpoint (then --arch/"
                        "--num-classes); repeat for MINDIRs exported at several static batch sizes")
    p.add_argument("--engine", choices=ENGINE_CHOICES, default="auto",
                   help="inference engine; auto: onnxruntime for .onnx (CPU), mindspore for "
                        ".mindir/.ckpt")
    p.add_argument("--threads", type=_non_negative_int, default=0,
                   help="compute threads; 0: the CPUs this process may use (cgroup quota and "
                        "affinity) for onnxruntime, MindSpore's own default for mindspore")
    p.add_argument("--config", type=Path,
                   help="training YAML config: net_name, num_classes, crop_size as defaults")
    p.add_argument("--arch", help="architecture of a .ckpt model, e.g. resnest50")
    p.add_argument("--num-classes", type=_positive_int, help="classes of a .ckpt model")
    p.add_argument("--device", choices=sorted(DEVICE_TARGETS), default="cpu")
    p.add_argument("--device-id", type=_non_negative_int, default=0)
    p.add_argument("--host", default="0.0.0.0")
    p.add_argument("--port", type=_port, default=8000)
    p.add_argument("--model-name", default="resnest", help="name in the /v2/models/NAME paths")
    p.add_argument("--image-size", type=_positive_int,
                   help="model input size S of [B,3,S,S] (default: the MINDIR's, else config "
                        "crop_size, else 224)")
    p.add_argument("--labels", type=Path, help="class names, one per line, in index order")
    p.add_argument("--max-batch-size", type=_positive_int, default=8,
                   help="images per model call; 1 turns dynamic batching off")
    p.add_argument("--max-queue-delay-ms", type=_non_negative_float, default=5.0,
                   help="how long a batch waits for more requests")
    p.add_argument("--max-queue-size", type=_positive_int, default=64,
                   help="requests waiting for a batch before new ones get 503")
    p.add_argument("--max-request-batch", type=_positive_int, default=32,
                   help="largest batch one request may send")
    p.add_argument("--max-body-mb", type=_non_negative_float, default=16.0,
                   help="request body limit in MiB (413 above)")
    p.add_argument("--max-image-pixels", type=_positive_int, default=25_000_000,
                   help="largest decoded image (width*height) accepted")
    p.add_argument("--decode-threads", type=_positive_int, default=2)
    p.add_argument("--shutdown-timeout", type=_non_negative_float, default=30.0,
                   help="seconds to drain in-flight requests after SIGTERM")
    p.add_argument("--access-log", action="store_true")
    p.add_argument("--log-level", default="INFO",
                   choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    return p


def _training_config(path: Path) -> dict[str, Any]:
    import yaml

    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    if not isinstance(data, dict):
        raise TypeError(f"--config {path}: expected a YAML mapping")
    return data


def config_from_args(argv: list[str] | None = None) -> ServeConfig:
    """Parse and validate; exits with code 2 and one line on a bad value."""
    parser = build_parser()
    args = parser.parse_args(argv)
    for path in args.model:
        if not path.is_file():
            parser.error(f"--model {path}: no such file")
        if path.suffix not in (".onnx", ".mindir", ".ckpt"):
            parser.error(f"--model {path}: expected a .onnx, .mindir or .ckpt file")
    is_ckpt = args.model[0].suffix == ".ckpt"
    if len(args.model) > 1 and any(p.suffix != ".mindir" for p in args.model):
        parser.error("--model: only .mindir files may be repeated (one per static batch size)")
    try:
        engine = resolve_engine(args.engine, args.model[0], args.device)
    except EngineChoiceError as exc:
        parser.error(str(exc))
    defaults: dict[str, Any] = {}
    if args.config is not None:
        try:
            defaults = _training_config(args.config)
        except (OSError, ValueError, TypeError) as exc:
            parser.error(f"--config {args.config}: {exc}")
    arch = args.arch or defaults.get("net_name")
    num_classes = args.num_classes or defaults.get("num_classes")
    image_size = args.image_size or defaults.get("crop_size")
    if is_ckpt and not (arch and num_classes):
        parser.error(f"--model {args.model[0]} is a checkpoint: give --arch and --num-classes "
                     "(or --config with net_name and num_classes)")
    if arch is not None:
        from resnest.models import list_models

        if arch not in list_models():
            parser.error(f"--arch {arch!r}: choose one of {', '.join(list_models())}")
    if image_size is not None and (not isinstance(image_size, int) or image_size < 32):
        parser.error(f"--image-size {image_size}: must be an integer >= 32")
    if args.max_body_mb <= 0:
        parser.error(f"--max-body-mb {args.max_body_mb}: must be > 0")
    labels: list[str] = []
    if args.labels is not None:
        try:
            labels = read_labels(args.labels)
        except OSError as exc:
            parser.error(f"--labels {args.labels}: {exc.strerror or exc}")
    return ServeConfig(
        model=ModelSpec(paths=tuple(args.model), device=args.device, device_id=args.device_id,
                        arch=arch, num_classes=num_classes, image_size=image_size, engine=engine,
                        threads=args.threads),
        model_name=args.model_name, host=args.host, port=args.port, labels=labels,
        max_batch_size=args.max_batch_size, max_queue_delay_ms=args.max_queue_delay_ms,
        max_queue_size=args.max_queue_size, max_request_batch=args.max_request_batch,
        max_body_bytes=int(args.max_body_mb * 1024 * 1024),
        max_image_pixels=args.max_image_pixels, decode_threads=args.decode_threads,
        shutdown_timeout_s=args.shutdown_timeout, access_log=args.access_log,
    )


def main(argv: list[str] | None = None) -> int:
    config = config_from_args(argv)
    logging.basicConfig(level=build_parser().parse_args(argv).log_level,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    from resnest.serve.app import serve

    return serve(config)
