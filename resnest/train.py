"""Train ResNeSt data-parallel on whatever devices the launcher gave this process.

    python -m resnest.train --data-dir D --output-dir O [--config F] [--set key=value ...]
    msrun --worker_num=N ... resnest/train.py --data-dir D --output-dir O ...

Resumes from the newest valid checkpoint in O/checkpoints. On SIGTERM/SIGUSR1 it saves a
checkpoint and exits with `resnest.contract.REQUEUE_EXIT_CODE` (75) so the launcher requeues
the job. `RLAUNCH_DEVICE_KIND` (set by the launcher) picks the device; when that device is not
here the run fails with one line and exit 1 (exit 2 for a malformed or contradicting request).
"""

from __future__ import annotations

import time

PROCESS_START = time.time()  # first thing: time-to-first-step counts imports and graph compile

import argparse
import json
import os
import signal
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a file (msrun launches files, not modules)
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from resnest._as_script import use_repo_root

    use_repo_root(__file__)

from resnest.config import ConfigError, TrainConfig, add_config_arguments, config_from_args
from resnest.contract import (
    CHECKPOINTS_DIR,
    CONFIG_FILE,
    EVENT_DONE,
    EVENT_EVAL,
    EVENT_STEP,
    LAST_CHECKPOINT,
    REQUEUE_EXIT_CODE,
    REQUEUE_MARKER_ENV,
    USAGE_EXIT_CODE,
    EvalResult,
)
from resnest.data.pipeline import DataError
from resnest.distributed import DeviceRequestError, DeviceUnavailableError
from resnest.pretrained import CLASSIFIER_PREFIX, PretrainedError

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


def weight_decay_groups(net: Any, config: TrainConfig,
                        backbone_lr: Any = None) -> list[dict[str, Any]]:
    """Parameter groups: no weight decay on BN gamma/beta and biases when disable_bn_wd;
    with `backbone_lr` (a schedule), every parameter but the classifier's learns at that rate."""
    params = net.trainable_params()
    groups: list[dict[str, Any]] = []
    parts = [params] if backbone_lr is None else [
        [p for p in params if not p.name.startswith(CLASSIFIER_PREFIX)],
        [p for p in params if p.name.startswith(CLASSIFIER_PREFIX)],
    ]
    for index, part in enumerate(parts):
        extra = {"lr": backbone_lr} if backbone_lr is not None and index == 0 else {}
        if not config.disable_bn_wd:
            groups.append({"params": part, "weight_decay": config.weight_decay, **extra})
            continue
        decay = [p for p in part if not is_no_decay_param(p.name)]
        no_decay = [p for p in part if is_no_decay_param(p.name)]
        groups += [{"params": decay, "weight_decay": config.weight_decay, **extra},
                   {"params": no_decay, "weight_decay": 0.0, **extra}]
    groups = [g for g in groups if g["params"]]
    if len(groups) > 1:
        groups.append({"order_params": params})
    return groups


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
    backbone_lr = None
    if config.backbone_lr_scale != 1.0 and not config.freeze_backbone:
        backbone_lr = ms.Tensor(lr * config.backbone_lr_scale)
        log.info(f"backbone lr = lr x {config.backbone_lr_scale:g}; classifier (fc) lr = lr")
    optimizer = nn.Momentum(weight_decay_groups(net, config, backbone_lr),
                            learning_rate=ms.Tensor(lr),
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


@dataclass
class Position:
    """Where the run is: the epoch being trained, steps of it done, and the optimizer step."""

    epoch: int = 0
    step: int = 0
    global_step: int = 0


class TrainingRun:
    """One training job in four steps: `resume`, `run_epoch` (per epoch), `stop`, `finish`.

    `train()` drives them; each returns the process exit code when the run must end early.
    """

    def __init__(self, data_dir: Path, output_dir: Path, config: TrainConfig) -> None:
        import mindspore as ms

        from resnest.checkpoint import CheckpointManager
        from resnest.data.pipeline import create_train_dataset
        from resnest.distributed import setup_runtime
        from resnest.lr_schedule import build_lr_schedule, describe_schedule
        from resnest.network import create_network
        from resnest.run_log import RunLog

        self.data_dir, self.output_dir, self.config = data_dir, output_dir, config
        self.stop_request = StopRequest()
        self.stop_request.install()
        self.info, self.device_target = setup_runtime(config.device_target, config.cpu_threads)
        self.log = RunLog(self.info.rank, output_dir)
        ms.set_seed(config.seed)
        self.dataset = create_train_dataset(data_dir, config, self.info.rank, self.info.world_size)
        self.steps_per_epoch = self.dataset.get_dataset_size()
        self.lr = build_lr_schedule(config, self.steps_per_epoch, self.info.world_size)
        # first line of the run: what the schedule really is, before anything can go wrong
        self.log.info(describe_schedule(config, self.lr, self.steps_per_epoch))
        for warning in config.schedule_warnings():
            self.log.info(warning)
        self.log.info(f"world_size={self.info.world_size} ({self.info.source}) "
                      f"device={self.device_target} net={config.net_name} "
                      f"classes={config.num_classes}")
        if self.info.rank == 0:
            output_dir.mkdir(parents=True, exist_ok=True)
            (output_dir / CONFIG_FILE).write_text(json.dumps(config.to_dict(), indent=2))
        self.net = create_network(config)
        self.checkpoints = CheckpointManager(output_dir / CHECKPOINTS_DIR, keep=config.ckpt_keep,
                                             warn=self.log.warning)
        self.position = Position()
        self.last_eval: EvalResult | None = None
        self.train_step: Any = None
        self.optimizer: Any = None
        self.start_global_step = 0

    # ---- resume -----------------------------------------------------------------------------
    def resume(self) -> None:
        """Continue from the newest valid checkpoint; a fresh run starts from `pretrained`.

        Resuming wins: a preempted fine-tune continues its own weights rather than restarting
        from the published ones.
        """
        import mindspore as ms
        import numpy as np

        if self.info.rank == 0:
            self.checkpoints.remove_partial_writes()
        entry = self.checkpoints.latest_valid()
        if entry is None and self.config.pretrained:
            self._load_pretrained()
        if self.config.freeze_backbone:
            from resnest.pretrained import freeze_backbone

            frozen = freeze_backbone(self.net)
            self.log.info(f"freeze_backbone: {len(frozen)} backbone tensors frozen, training fc only")
        self.train_step, self.optimizer = build_train_step(self.net, self.config, self.lr,
                                                           self.device_target, self.log)
        if entry is not None:
            params = ms.load_checkpoint(str(self.checkpoints.folder / entry.file))
            ms.load_param_into_net(self.train_step, params)
            if entry.step >= self.steps_per_epoch:
                self.position = Position(entry.epoch + 1, 0)
            else:
                self.position = Position(entry.epoch, entry.step)
            note = " (pretrained not reloaded: resuming wins)" if self.config.pretrained else ""
            self.log.info(f"resumed from {entry.file}: epoch {self.position.epoch + 1} step "
                          f"{self.position.step}{note}", all_ranks=True)
        self.position.global_step = (self.position.epoch * self.steps_per_epoch
                                     + self.position.step)
        self.start_global_step = self.position.global_step
        self.optimizer.global_step.set_data(
            ms.Tensor(np.array([self.position.global_step], dtype=np.int32)))

    def _load_pretrained(self) -> None:
        from resnest.pretrained import load_pretrained

        report = load_pretrained(self.net, self.config.pretrained, self.config.net_name)
        for line in report.log_lines():
            self.log.info(line)

    # ---- epoch ------------------------------------------------------------------------------
    def run_epoch(self, epoch: int) -> int | None:
        """Train one epoch (the rest of it when resumed mid-epoch); an exit code ends the run."""
        import numpy as np

        from resnest.data.pipeline import start_epoch
        from resnest.distributed import allreduce_sum, average_batchnorm_statistics

        config, info, pos = self.config, self.info, self.position
        skip_steps = pos.step if pos.epoch == epoch else 0
        pos.epoch, pos.step = epoch, skip_steps
        step_start = time.time()
        for images, labels in start_epoch(self.dataset, config.seed, epoch):
            if pos.step >= self.steps_per_epoch:
                break
            out = self.train_step(images, labels)
            loss = float((out[0] if isinstance(out, tuple) else out).asnumpy())
            now = time.time()
            step_time, step_start = now - step_start, now
            pos.step += 1
            pos.global_step += 1
            self._log_step(loss, step_time, now)
            if not np.isfinite(loss):
                self.log.warning(f"loss is {loss} at global step {pos.global_step}; stopping")
                return 1
            stopping = self.stop_request.requested
            if info.distributed:  # every rank must leave at the same step or collectives hang
                stopping = allreduce_sum([1.0 if stopping else 0.0], info)[0] > 0
            if stopping:
                return self.stop()
            if config.ckpt_every_steps and pos.global_step % config.ckpt_every_steps == 0 \
                    and pos.step < self.steps_per_epoch:
                average_batchnorm_statistics(self.net, info)
                self._save()
        average_batchnorm_statistics(self.net, info)
        pos.step = self.steps_per_epoch
        self._save()
        is_last = epoch + 1 == config.epochs
        if is_last or (config.eval_every_epochs and (epoch + 1) % config.eval_every_epochs == 0):
            self._evaluate(epoch)
        return None

    def _log_step(self, loss: float, step_time: float, now: float) -> None:
        config, pos = self.config, self.position
        img_per_s = config.batch_size / step_time if step_time > 0 else 0.0
        current_lr = float(self.lr[min(pos.global_step - 1, len(self.lr) - 1)])
        self.log.event(EVENT_STEP, epoch=pos.epoch, step=pos.step, global_step=pos.global_step,
                       loss=loss, lr=current_lr, img_per_s=img_per_s, time=now)
        if pos.global_step == self.start_global_step + 1:
            self.log.info(f"first step finished {now - PROCESS_START:.1f}s after process start "
                          "(imports, data, graph compile)")
        if pos.step % config.log_every_steps == 0 or pos.step in (1, self.steps_per_epoch):
            self.log.info(f"epoch {pos.epoch + 1}/{config.epochs} step {pos.step}/"
                          f"{self.steps_per_epoch} loss {loss:.4f} lr {current_lr:.6f} img/s "
                          f"{img_per_s * self.info.world_size:.1f}")

    def _save(self) -> None:
        import mindspore as ms

        if self.info.rank == 0:  # weights are identical on all ranks after each synchronous step
            pos = self.position
            entry = self.checkpoints.save(lambda p: ms.save_checkpoint(self.train_step, p),
                                          pos.epoch, pos.step, pos.global_step)
            self.log.info(f"saved checkpoint {entry.file}")

    def _evaluate(self, epoch: int) -> None:
        from resnest.evaluation import evaluate

        result = evaluate(self.net, self.data_dir, self.config, self.info)
        for line in result.seed_log_lines():
            self.log.info(line)
        self.log.event(EVENT_EVAL, epoch=epoch, top1=result.top1, top5=result.top5,
                       top1_correct=result.top1_correct, top5_correct=result.top5_correct,
                       total=result.total)
        if self.info.rank == 0:
            self.checkpoints.mark_best(result.top1)
        self.last_eval = result

    # ---- stop -------------------------------------------------------------------------------
    def stop(self) -> int:
        """Asked to stop (SIGTERM/SIGUSR1 on any rank): checkpoint, then exit to be requeued."""
        from resnest.distributed import allreduce_sum, average_batchnorm_statistics

        average_batchnorm_statistics(self.net, self.info)
        self._save()
        if self.info.rank == 0 and os.environ.get(REQUEUE_MARKER_ENV):
            # Right after the checkpoint is published, before the barrier: once the other ranks
            # pass it they exit, and msrun (or srun -K) may kill rank 0 before it writes anything.
            Path(os.environ[REQUEUE_MARKER_ENV]).write_text(
                f"{self.stop_request.signal_name or 'peer'}\n", encoding="utf-8")
        if self.info.distributed:
            # A barrier: msrun kills every worker once one exits non-zero, so no rank may exit
            # 75 before rank 0 has published the checkpoint.
            allreduce_sum([0.0], self.info)
        pos = self.position
        self.log.info(f"stopping on {self.stop_request.signal_name or 'a peer rank signal'} at "
                      f"epoch {pos.epoch + 1} step {pos.step}; exit {REQUEUE_EXIT_CODE} to be "
                      "requeued", all_ranks=True)
        return REQUEUE_EXIT_CODE

    # ---- finish -----------------------------------------------------------------------------
    def finish(self) -> int:
        """Write eval.json (evaluating once more if resumed after the last epoch) and `done`."""
        from resnest.contract import write_eval_result

        if self.last_eval is None:
            self._evaluate(self.config.epochs - 1)
        assert self.last_eval is not None
        if self.info.rank == 0:
            write_eval_result(self.output_dir, self.last_eval,
                              checkpoint=str(self.checkpoints.folder / LAST_CHECKPOINT),
                              world_size=self.info.world_size, net_name=self.config.net_name)
        self.log.event(EVENT_DONE, epoch=self.config.epochs - 1,
                       global_step=self.position.global_step,
                       param_checksum=parameter_checksum(self.net))
        self.log.info("training finished")
        return 0


def train(data_dir: Path, output_dir: Path, config: TrainConfig) -> int:
    """The training job; returns the process exit code."""
    run = TrainingRun(data_dir, output_dir, config)
    run.resume()
    for epoch in range(run.position.epoch, config.epochs):
        code = run.run_epoch(epoch)
        if code is not None:
            return code
    return run.finish()


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
        if config.pretrained and not Path(config.pretrained).is_file():
            raise PretrainedError(f"pretrained={config.pretrained!r}: no such file (give a .ckpt, "
                                  ".safetensors or .pth reachable where the job runs)")
        return train(args.data_dir, args.output_dir, config)
    except (ConfigError, DataError, DeviceRequestError, PretrainedError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return USAGE_EXIT_CODE
    except DeviceUnavailableError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
