"""Train ResNeSt data-parallel on whatever devices the launcher gave this process.

    python -m resnest.train --data-dir D --output-dir O [--config F] [--set key=value ...]
    msrun --worker_num=N ... resnest/train.py --data-dir D --output-dir O ...

Resumes from the newest valid checkpoint in O/checkpoints. On SIGTERM/SIGUSR1 it saves a
checkpoint and exits with EXIT_REQUEUE (75) so the launcher requeues the job.
"""

from __future__ import annotations

import time

PROCESS_START = time.time()  # first thing: time-to-first-step counts imports and graph compile

import argparse
import json
import signal
import sys
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a file (msrun launches files, not modules)
    _repo_root = str(Path(__file__).resolve().parents[1])
    if sys.path and Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
        sys.path[0] = _repo_root  # do not let resnest/*.py shadow top-level modules
    else:
        sys.path.insert(0, _repo_root)

from resnest.config import ConfigError, TrainConfig, add_config_arguments, config_from_args
from resnest.data.pipeline import DataError

EXIT_REQUEUE = 75  # EX_TEMPFAIL: "stopped on request, checkpoint saved, run me again"
STOP_SIGNALS = (signal.SIGTERM, signal.SIGUSR1)


class StopRequest:
    """Set by SIGTERM/SIGUSR1; the loop checks it between steps (never mid-step)."""

    def __init__(self) -> None:
        self.signal_name: str | None = None

    def install(self) -> None:
        for sig in STOP_SIGNALS:
            signal.signal(sig, self._handle)

    def _handle(self, signum: int, _frame: Any) -> None:
        self.signal_name = signal.Signals(signum).name

    @property
    def requested(self) -> bool:
        return self.signal_name is not None


def amp_level_for(config: TrainConfig, device_target: str) -> str:
    if config.amp_level != "auto":
        return config.amp_level
    return {"Ascend": "O3", "GPU": "O2"}.get(device_target, "O0")


def weight_decay_groups(net: Any, config: TrainConfig) -> list[dict[str, Any]]:
    """Parameter groups: no weight decay on BN gamma/beta and biases when disable_bn_wd."""
    params = net.trainable_params()
    if not config.disable_bn_wd:
        return [{"params": params, "weight_decay": config.weight_decay}]
    no_decay = [p for p in params if is_no_decay_param(p.name)]
    decay = [p for p in params if not is_no_decay_param(p.name)]
    return [
        {"params": decay, "weight_decay": config.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
        {"order_params": params},
    ]


def is_no_decay_param(name: str) -> bool:
    leaf = name.rsplit(".", 1)[-1]
    return leaf in ("gamma", "beta", "bias")


def build_train_step(net: Any, config: TrainConfig, lr: Any, device_target: str,
                     log: Any) -> tuple[Any, Any]:
    """The one-step training cell (AMP, loss scale) and its optimizer."""
    import mindspore as ms
    from mindspore import nn
    from mindspore.amp import DynamicLossScaleManager, FixedLossScaleManager, build_train_network

    from resnest.loss import label_smoothing_cross_entropy

    amp_level = amp_level_for(config, device_target)
    dynamic = config.is_dynamic_loss_scale
    if dynamic and device_target == "CPU":
        log.warning("warning: MindSpore has no dynamic loss scale on CPU; using a fixed loss scale")
        dynamic = False
    if dynamic:
        manager = DynamicLossScaleManager(config.loss_scale, 2, 2000)
        opt_loss_scale = 1.0
    else:
        # without overflow checks the optimizer divides the scaled gradients back
        manager = FixedLossScaleManager(config.loss_scale, drop_overflow_update=False)
        opt_loss_scale = config.loss_scale
    optimizer = nn.Momentum(weight_decay_groups(net, config), learning_rate=ms.Tensor(lr),
                            momentum=config.momentum, loss_scale=opt_loss_scale)
    loss_fn = label_smoothing_cross_entropy(config.num_classes, config.label_smoothing)
    train_step = build_train_network(net, optimizer, loss_fn, level=amp_level,
                                     loss_scale_manager=manager)
    train_step.set_train()
    log.info(f"amp_level={amp_level} loss_scale={config.loss_scale:g} "
             f"({'dynamic' if dynamic else 'fixed'})")
    return train_step, optimizer


def parameter_checksum(net: Any) -> str:
    """Digest of the trained weights: equal on every rank iff gradients were really averaged.

    BatchNorm running statistics are left out: each rank keeps its own (as in the seed).
    """
    import hashlib

    digest = hashlib.sha256()
    for p in sorted(net.trainable_params(), key=lambda p: p.name):
        digest.update(p.name.encode())
        digest.update(p.asnumpy().tobytes())
    return digest.hexdigest()


def train(data_dir: Path, output_dir: Path, config: TrainConfig) -> int:
    """The training job; returns the process exit code."""
    import mindspore as ms
    import numpy as np

    from resnest.checkpoint import CheckpointManager
    from resnest.data.pipeline import create_train_dataset
    from resnest.distributed import allreduce_sum, average_batchnorm_statistics, setup_runtime
    from resnest.evaluation import evaluate
    from resnest.lr_schedule import build_lr_schedule
    from resnest.network import create_network
    from resnest.run_log import RunLog

    stop = StopRequest()
    stop.install()
    info, device_target = setup_runtime(config.device_target, config.cpu_threads)
    log = RunLog(info.rank, output_dir)
    log.info(f"world_size={info.world_size} ({info.source}) device={device_target} "
             f"net={config.net_name} classes={config.num_classes}")
    ms.set_seed(config.seed)
    if info.rank == 0:
        output_dir.mkdir(parents=True, exist_ok=True)
        (output_dir / "config.json").write_text(json.dumps(config.to_dict(), indent=2))

    dataset = create_train_dataset(data_dir, config, info.rank, info.world_size)
    steps_per_epoch = dataset.get_dataset_size()
    lr = build_lr_schedule(config, steps_per_epoch, info.world_size)
    net = create_network(config)
    train_step, optimizer = build_train_step(net, config, lr, device_target, log)

    checkpoints = CheckpointManager(output_dir / "checkpoints", keep=config.ckpt_keep, warn=log.warning)
    if info.rank == 0:
        checkpoints.remove_partial_writes()
    start_epoch, skip_steps = 0, 0
    resume = checkpoints.latest_valid()
    if resume is not None:
        params = ms.load_checkpoint(str(checkpoints.folder / resume.file))
        ms.load_param_into_net(train_step, params)
        if resume.step >= steps_per_epoch:
            start_epoch, skip_steps = resume.epoch + 1, 0
        else:
            start_epoch, skip_steps = resume.epoch, resume.step
        log.info(f"resumed from {resume.file}: epoch {start_epoch + 1} step {skip_steps}",
                 all_ranks=True)
    global_step = start_epoch * steps_per_epoch + skip_steps
    optimizer.global_step.set_data(ms.Tensor(np.array([global_step], dtype=np.int32)))

    def save(epoch: int, step: int) -> None:
        if info.rank == 0:  # weights are identical on all ranks after each synchronous step
            entry = checkpoints.save(lambda p: ms.save_checkpoint(train_step, p), epoch, step,
                                     global_step)
            log.info(f"saved checkpoint {entry.file}")

    first_step_logged = False
    last_eval = None
    for epoch in range(start_epoch, config.epochs):
        steps_this_epoch = steps_per_epoch - skip_steps
        iterator = dataset.create_tuple_iterator(num_epochs=1)
        step_start = time.time()
        step = skip_steps
        for images, labels in iterator:
            if step - skip_steps >= steps_this_epoch:
                break
            out = train_step(images, labels)
            loss = float((out[0] if isinstance(out, tuple) else out).asnumpy())
            now = time.time()
            step_time, step_start = now - step_start, now
            step += 1
            global_step += 1
            img_per_s = config.batch_size / step_time if step_time > 0 else 0.0
            current_lr = float(lr[min(global_step - 1, len(lr) - 1)])
            log.event("step", epoch=epoch, step=step, global_step=global_step, loss=loss,
                      lr=current_lr, img_per_s=img_per_s, time=now)
            if not first_step_logged:
                first_step_logged = True
                log.info(f"first step finished {now - PROCESS_START:.1f}s after process start "
                         "(imports, data, graph compile)")
            if step % config.log_every_steps == 0 or step == steps_per_epoch or step == 1:
                log.info(f"epoch {epoch + 1}/{config.epochs} step {step}/{steps_per_epoch} "
                         f"loss {loss:.4f} lr {current_lr:.6f} img/s {img_per_s * info.world_size:.1f}")
            if not np.isfinite(loss):
                log.warning(f"loss is {loss} at global step {global_step}; stopping")
                return 1
            stopping = stop.requested
            if info.distributed:  # every rank must leave at the same step or collectives hang
                stopping = allreduce_sum([1.0 if stopping else 0.0], info)[0] > 0
            if stopping:
                average_batchnorm_statistics(net, info)
                save(epoch, step)
                if info.distributed:
                    # A barrier: msrun kills every worker once one exits non-zero, so no rank
                    # may exit 75 before rank 0 has published the checkpoint.
                    allreduce_sum([0.0], info)
                log.info(f"stopping on {stop.signal_name or 'a peer rank signal'} at epoch "
                         f"{epoch + 1} step {step}; exit {EXIT_REQUEUE} to be requeued", all_ranks=True)
                return EXIT_REQUEUE
            if config.ckpt_every_steps and global_step % config.ckpt_every_steps == 0 \
                    and step < steps_per_epoch:
                average_batchnorm_statistics(net, info)
                save(epoch, step)
        skip_steps = 0
        average_batchnorm_statistics(net, info)
        save(epoch, steps_per_epoch)
        is_last = epoch + 1 == config.epochs
        if is_last or (config.eval_every_epochs and (epoch + 1) % config.eval_every_epochs == 0):
            last_eval = evaluate(net, data_dir, config, info)
            for line in last_eval.seed_log_lines():
                log.info(line)
            log.event("eval", epoch=epoch, top1=last_eval.top1, top5=last_eval.top5,
                      top1_correct=last_eval.top1_correct, top5_correct=last_eval.top5_correct,
                      total=last_eval.total)
            if info.rank == 0:
                checkpoints.mark_best(last_eval.top1)

    if last_eval is None:  # resumed after the last epoch had finished: evaluate once more
        last_eval = evaluate(net, data_dir, config, info)
        for line in last_eval.seed_log_lines():
            log.info(line)
    if info.rank == 0:
        result = {**last_eval.to_dict(), "checkpoint": str(checkpoints.folder / "last.ckpt"),
                  "world_size": info.world_size, "net_name": config.net_name}
        (output_dir / "eval.json").write_text(json.dumps(result, indent=2))
    log.event("done", epoch=config.epochs - 1, global_step=global_step,
              param_checksum=parameter_checksum(net))
    log.info("training finished")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m resnest.train", description=__doc__.split("\n")[0])
    parser.add_argument("--data-dir", required=True, type=Path, help="folder with train/ and val/")
    parser.add_argument("--output-dir", required=True, type=Path,
                        help="checkpoints/, metrics/, eval.json go here; resumes from it")
    add_config_arguments(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        config = config_from_args(args)
        for split in ("train", "val"):
            if not (args.data_dir / split).is_dir():
                raise DataError(f"--data-dir {str(args.data_dir)!r} has no {split}/ folder; "
                                "expected DATA/train/<class>/*.JPEG and DATA/val/<class>/*.JPEG")
        return train(args.data_dir, args.output_dir, config)
    except (ConfigError, DataError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
