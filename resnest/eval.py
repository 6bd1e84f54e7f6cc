"""Evaluate a checkpoint or an exported model on DATA/val; top-1/top-5 counts summed across
ranks (AllReduce).

    python -m resnest.eval --data-dir D --checkpoint C [--output-dir O] [--config F] [--set k=v ...]
    python -m resnest.eval --data-dir D --model M.onnx|M.mindir [--engine auto|onnxruntime|mindspore]

C is a .ckpt file or a training output folder (its best, else last, checkpoint). M is a model
written by `resnest.export`, run by the same engine code as the server (resnest.serve.engine):
ONNX Runtime for .onnx on CPU, MindSpore for MINDIR. Prints the seed's `after allreduce eval:
...` lines and writes the result to O/eval.json (default: next to the run folder of C, or the
current folder).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a file (msrun launches files, not modules)
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from resnest._as_script import use_repo_root

    use_repo_root(__file__)

from resnest.config import ConfigError, add_config_arguments, config_from_args
from resnest.contract import EvalResult, write_eval_result
from resnest.data.pipeline import DataError
from resnest.serve.engine import ENGINE_CHOICES, EngineChoiceError, resolve_engine

DEVICE_OF_TARGET = {"CPU": "cpu", "GPU": "gpu", "Ascend": "ascend"}


def default_output_dir(checkpoint: Path) -> Path:
    """A run's folder if the checkpoint sits in RUN/checkpoints/, else the current folder."""
    parent = checkpoint.resolve().parent
    return parent.parent if parent.name == "checkpoints" else Path.cwd()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m resnest.eval", description=__doc__.split("\n")[0])
    parser.add_argument("--data-dir", required=True, type=Path, help="folder with val/<class>/*")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--checkpoint", type=Path, help=".ckpt file or run folder")
    source.add_argument("--model", type=Path, help="exported .onnx or .mindir model")
    parser.add_argument("--engine", choices=ENGINE_CHOICES, default="auto",
                        help="engine for --model; auto: onnxruntime for .onnx, mindspore else")
    parser.add_argument("--output-dir", type=Path, default=None, help="where eval.json goes")
    add_config_arguments(parser)
    return parser


def evaluate_exported(model: Path, engine: str, data_dir: Path, config: Any, info: Any,
                      device: str) -> EvalResult:
    """Top-1/top-5 of an exported model over this rank's val slice, counts allreduced.

    The server's ModelRunner runs it, so batches are handled as when serving: as they come on
    ONNX Runtime (dynamic batch), padded to the exported static size on MINDIR.
    """
    import numpy as np

    from resnest.data.pipeline import create_eval_dataset
    from resnest.distributed import allreduce_sum
    from resnest.evaluation import count_topk_correct
    from resnest.serve.engine import available_cpus
    from resnest.serve.model import ModelRunner, ModelSpec

    # MindSpore's CPU threads were set by setup_runtime already (they can be set once).
    threads = 0
    if engine == "onnxruntime":
        threads = config.cpu_threads or max(1, available_cpus() // max(1, info.world_size))
    runner = ModelRunner(ModelSpec(paths=(model,), device=device, device_id=info.local_rank,
                                   image_size=config.crop_size, engine=engine, threads=threads),
                         max_batch_size=config.test_batch_size)
    runner.load()
    dataset, expected_total = create_eval_dataset(data_dir, config, info.rank, info.world_size)
    top1 = top5 = seen = 0
    for images, labels in dataset.create_tuple_iterator(output_numpy=True, num_epochs=1):
        logits = runner.predict(images)
        c1, c5, n = count_topk_correct(logits, labels, np.ones(len(labels), bool))
        top1, top5, seen = top1 + c1, top5 + c5, seen + n
    s1, s5, total = allreduce_sum([top1, top5, seen], info)
    return EvalResult(round(s1), round(s5), round(total), expected_total)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        config = config_from_args(args)
        if not (args.data_dir / "val").is_dir():
            raise DataError(f"--data-dir {str(args.data_dir)!r} has no val/ folder")
        engine = None
        if args.model is not None:
            if not args.model.is_file():
                raise FileNotFoundError(f"--model {str(args.model)!r}: no such file")
            from resnest.distributed import resolve_device_target

            device = DEVICE_OF_TARGET[resolve_device_target(config.device_target)]
            engine = resolve_engine(args.engine, args.model, device)
            source = args.model
        else:
            if args.engine == "onnxruntime":
                raise EngineChoiceError("--engine onnxruntime runs an exported --model M.onnx, "
                                        "not a --checkpoint")
            from resnest.checkpoint import resolve_checkpoint_path

            source = resolve_checkpoint_path(args.checkpoint)
    except (ConfigError, DataError, FileNotFoundError, EngineChoiceError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    from resnest.distributed import setup_runtime
    from resnest.run_log import RunLog

    info, device_target = setup_runtime(config.device_target, config.cpu_threads)
    log = RunLog(info.rank)
    if engine is not None:
        log.info(f"evaluating {source} with {engine} on {info.world_size} rank(s), "
                 f"device={device_target}")
        try:
            result = evaluate_exported(source, engine, args.data_dir, config, info,
                                       DEVICE_OF_TARGET[device_target])
        except ValueError as exc:  # the model does not load, or does not fit crop_size
            print(f"error: {exc}", file=sys.stderr)
            return 1
    else:
        from resnest.evaluation import evaluate
        from resnest.network import create_network, load_network_weights

        net = create_network(config)
        try:
            load_network_weights(net, source)
        except ValueError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        log.info(f"evaluating {source} on {info.world_size} rank(s), device={device_target}")
        result = evaluate(net, args.data_dir, config, info)
    for line in result.seed_log_lines():
        log.info(line)
    if result.total != result.expected_total:
        log.warning(f"error: counted {result.total} images but val has {result.expected_total}")
        return 1
    if info.rank == 0:
        output_dir = args.output_dir or (default_output_dir(source) if engine is None
                                         else Path.cwd())
        output_dir.mkdir(parents=True, exist_ok=True)
        extra: dict[str, Any] = {"world_size": info.world_size, "net_name": config.net_name}
        if engine is None:
            extra["checkpoint"] = str(source)
        else:
            extra.update(model=str(source), engine=engine)
        written = write_eval_result(output_dir, result, **extra)  # type: ignore[arg-type]
        log.info(f"wrote {written}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
