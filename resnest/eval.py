"""Evaluate a checkpoint on DATA/val with top-1/top-5 counts summed across ranks (AllReduce).

    python -m resnest.eval --data-dir D --checkpoint C [--output-dir O] [--config F] [--set k=v ...]

C is a .ckpt file or a training output folder (its best, else last, checkpoint). Prints the seed's
`after allreduce eval: ...` lines and writes the result to O/eval.json (default: next to the
run folder of C, or the current folder).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a file (msrun launches files, not modules)
    _repo_root = str(Path(__file__).resolve().parents[1])
    if sys.path and Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
        sys.path[0] = _repo_root
    else:
        sys.path.insert(0, _repo_root)

from resnest.config import ConfigError, add_config_arguments, config_from_args
from resnest.data.pipeline import DataError


def default_output_dir(checkpoint: Path) -> Path:
    """A run's folder if the checkpoint sits in RUN/checkpoints/, else the current folder."""
    parent = checkpoint.resolve().parent
    return parent.parent if parent.name == "checkpoints" else Path.cwd()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m resnest.eval", description=__doc__.split("\n")[0])
    parser.add_argument("--data-dir", required=True, type=Path, help="folder with val/<class>/*")
    parser.add_argument("--checkpoint", required=True, type=Path, help=".ckpt file or run folder")
    parser.add_argument("--output-dir", type=Path, default=None, help="where eval.json goes")
    add_config_arguments(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        config = config_from_args(args)
        if not (args.data_dir / "val").is_dir():
            raise DataError(f"--data-dir {str(args.data_dir)!r} has no val/ folder")
        from resnest.checkpoint import resolve_checkpoint_path

        checkpoint = resolve_checkpoint_path(args.checkpoint)
    except (ConfigError, DataError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    from resnest.distributed import setup_runtime
    from resnest.evaluation import evaluate
    from resnest.network import create_network, load_network_weights
    from resnest.run_log import RunLog

    info, device_target = setup_runtime(config.device_target, config.cpu_threads)
    log = RunLog(info.rank)
    net = create_network(config)
    try:
        load_network_weights(net, checkpoint)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    log.info(f"evaluating {checkpoint} on {info.world_size} rank(s), device={device_target}")
    result = evaluate(net, args.data_dir, config, info)
    for line in result.seed_log_lines():
        log.info(line)
    if result.total != result.expected_total:
        log.warning(f"error: counted {result.total} images but val has {result.expected_total}")
        return 1
    if info.rank == 0:
        output_dir = args.output_dir or default_output_dir(checkpoint)
        output_dir.mkdir(parents=True, exist_ok=True)
        payload = {**result.to_dict(), "checkpoint": str(checkpoint), "world_size": info.world_size,
                   "net_name": config.net_name}
        (output_dir / "eval.json").write_text(json.dumps(payload, indent=2))
        log.info(f"wrote {output_dir / 'eval.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
