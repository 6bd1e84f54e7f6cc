"""Schedules follow `epochs` unless set explicitly; explicit misfits warn; the schedule line."""

from __future__ import annotations

import numpy as np
import pytest

from resnest.config import load_config, shipped_config_path
from resnest.lr_schedule import build_lr_schedule, describe_schedule

STEPS = 4


@pytest.mark.parametrize("epochs", [3, 15, 270])
def test_cosine_follows_epochs_and_ends_at_eta_min(epochs: int) -> None:
    config = load_config(shipped_config_path(), {"epochs": epochs, "warmup_epochs": 1,
                                                 "eta_min": 0.0005})
    assert config.effective_T_max() == epochs
    lr = build_lr_schedule(config, STEPS)
    assert len(lr) == epochs * STEPS
    assert lr[STEPS - 1] == pytest.approx(config.lr)  # warmup reaches the peak
    assert lr[-1] == pytest.approx(0.0005, rel=1e-5)  # the last step runs at eta_min
    assert all(np.diff(lr[STEPS:]) < 0)
    assert config.schedule_warnings() == []


def test_issue_run_epochs_15_no_longer_stays_near_the_peak() -> None:
    # the issue: --set epochs=15 --set lr=0.1 ended at lr 0.0992 because T_max stayed 270
    config = load_config(None, {"epochs": 15, "lr": 0.1})
    lr = build_lr_schedule(config, 45)
    assert lr[-1] == pytest.approx(0.0, abs=1e-7)
    assert "cosine over 15 epochs (from epochs)" in describe_schedule(config, lr, 45)


def test_explicit_t_max_is_kept_and_beyond_epochs_warns() -> None:
    short = load_config(None, {"epochs": 10, "T_max": 5, "warmup_epochs": 0})
    lr = build_lr_schedule(short, STEPS)
    assert short.schedule_warnings() == []
    assert lr[5 * STEPS - 1] == pytest.approx(0.0, abs=1e-7)  # reaches eta_min at T_max...
    assert lr[-1] == pytest.approx(0.0, abs=1e-7)  # ...and stays there
    long = load_config(None, {"epochs": 15, "T_max": 270})
    (warning,) = long.schedule_warnings()
    assert "T_max=270 is beyond epochs=15" in warning and "\n" not in warning
    assert build_lr_schedule(long, STEPS)[-1] > 0.9 * long.lr  # as asked: barely decays
    assert "(from T_max)" in describe_schedule(long, build_lr_schedule(long, STEPS), STEPS)


@pytest.mark.parametrize(
    ("epochs", "milestones"),
    [(3, [1, 2, 3]), (15, [2, 3, 5, 7, 8, 10, 12, 13, 15]),
     (270, [30, 60, 90, 120, 150, 180, 210, 240, 270])],
)
def test_step_milestones_follow_epochs(epochs: int, milestones: list[int]) -> None:
    config = load_config(None, {"epochs": epochs, "lr_scheduler": "step"})
    assert config.lr_milestones() == milestones
    assert config.schedule_warnings() == [] or epochs == 3  # warmup 5 > 3 epochs warns


def test_explicit_milestones_are_kept_and_late_ones_warn() -> None:
    config = load_config(None, {"epochs": 15, "lr_scheduler": "step", "lr_epochs": "5,10",
                                "warmup_epochs": 0, "lr_gamma": 0.5})
    assert config.lr_milestones() == [5, 10] and config.schedule_warnings() == []
    lr = build_lr_schedule(config, STEPS)
    np.testing.assert_allclose(lr[[0, 5 * STEPS, 10 * STEPS]], [0.025, 0.0125, 0.00625])
    late = load_config(None, {"epochs": 15, "lr_scheduler": "step",
                              "lr_epochs": "30,60,90", "warmup_epochs": 0})
    (warning,) = late.schedule_warnings()
    assert "lr_epochs milestones 30,60,90 are at or past epochs=15" in warning
    line = describe_schedule(late, build_lr_schedule(late, STEPS), STEPS)
    assert "at epochs 30,60,90 (from lr_epochs)" in line


def test_warmup_covering_the_run_warns() -> None:
    (warning,) = load_config(None, {"epochs": 3}).schedule_warnings()  # seed warmup is 5
    assert "warmup_epochs=5 covers the whole run" in warning


def test_schedule_line_names_warmup_decay_and_final_lr() -> None:
    config = load_config(None, {"epochs": 15, "warmup_epochs": 2, "lr": 0.025})
    lr = build_lr_schedule(config, 45)
    line = describe_schedule(config, lr, 45)
    assert line.startswith("schedule: 15 epochs x 45 steps, warmup 2 epochs, cosine over 15")
    assert "lr peak 0.025, final 0" in line
