"""Progress and gathered results come from the contract's files (resnest/contract.py), written
here the way the trainer writes them, never from log lines."""

from __future__ import annotations

import json
from pathlib import Path

from launcher.gather import final_accuracy, gather_outputs
from launcher.progress import read_progress
from resnest.contract import EvalResult, metrics_file, write_eval_result


def write_metrics(out: Path, events: list[dict], tail: str = "") -> None:
    path = out / metrics_file(0)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(e) + "\n" for e in events) + tail)


STEPS = [
    {"event": "step", "epoch": 0, "step": 1, "global_step": 1, "loss": 2.0},
    {"event": "step", "epoch": 0, "step": 2, "global_step": 2, "loss": 1.0},
    {"event": "eval", "epoch": 0, "top1": 50.0, "top5": 100.0, "top1_correct": 6,
     "top5_correct": 12, "total": 12},
    {"event": "step", "epoch": 1, "step": 1, "global_step": 3, "loss": 0.5},
]


def test_progress_is_rank0s_last_step_and_a_half_line_is_skipped(tmp_path: Path) -> None:
    write_metrics(tmp_path, STEPS, tail='{"event": "step", "epoch": 1, "st')
    progress = read_progress(str(tmp_path), {"overrides": ["epochs=2"]})
    assert (progress.epoch, progress.step, progress.global_step, progress.loss) == (1, 1, 3, 0.5)
    assert progress.epochs_total == 2
    assert progress.describe() == "epoch 2/2, step 1 (global 3), loss 0.5000"


def test_epochs_total_unknown_when_the_config_is_only_on_the_cluster(tmp_path: Path) -> None:
    assert read_progress(None, {"config": "/in/the/pod.yaml"}).epochs_total is None
    assert read_progress(None, {"config": "/in/the/pod.yaml",
                                "overrides": ["epochs=7"]}).epochs_total == 7


def test_final_accuracy_prefers_the_eval_result_file(tmp_path: Path) -> None:
    write_metrics(tmp_path, STEPS)
    assert final_accuracy(tmp_path)["top1_correct"] == 6  # a running job: its last eval event
    write_eval_result(tmp_path, EvalResult(top1_correct=9, top5_correct=12, total=12,
                                           expected_total=12))
    final = final_accuracy(tmp_path)
    assert final == {"top1": 75.0, "top5": 100.0, "top1_correct": 9, "top5_correct": 12,
                     "total": 12}


def test_a_damaged_eval_result_is_a_warning_naming_it(tmp_path: Path) -> None:
    write_metrics(tmp_path, STEPS)
    (tmp_path / "eval.json").write_text('{"top1": 70.0')
    warnings: list[str] = []
    assert final_accuracy(tmp_path, warnings.append)["top1_correct"] == 6
    assert warnings == [(f"warning: {tmp_path / 'eval.json'} is not valid JSON (damaged or "
                         "half-written); using the last eval event of the metrics instead")]


def test_gather_copies_and_summarizes(tmp_path: Path) -> None:
    out, dest = tmp_path / "out", tmp_path / "dest"
    write_metrics(out, STEPS)
    (out / "checkpoints").mkdir()
    (out / "checkpoints" / "last.ckpt").write_bytes(b"w")
    dest.mkdir()
    summary = gather_outputs(out, dest, "job-1", "COMPLETED")
    assert [(r.epoch, r.top1, r.loss) for r in summary.epochs] == [(0, 50.0, 1.5), (1, None, 0.5)]
    assert (dest / "checkpoints" / "last.ckpt").read_bytes() == b"w"
    assert (dest / metrics_file(0)).is_file()
    assert json.loads((dest / "summary.json").read_text())["final"]["top1"] == 50.0
    assert summary.plot == str(dest / "curves.png") and (dest / "curves.png").stat().st_size > 0
