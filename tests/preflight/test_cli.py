"""`rlaunch check` takes submit's job flags; `submit` runs the same checks first and queues
nothing when one fails; `--no-check` skips them; `--dry-run` asks no cluster."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner

from launcher.cli import cli


def make_set(root: Path, splits=("train", "val")) -> Path:
    for split in splits:
        for name in ("a", "b"):
            (root / split / name).mkdir(parents=True)
            (root / split / name / "x.jpg").write_bytes(b"x")
    return root


def test_check_help_shows_the_job_flags_and_its_own() -> None:
    result = CliRunner().invoke(cli, ["check", "--help"])
    assert result.exit_code == 0
    for flag in ("--gpus", "--partition", "--data-dir", "--deep", "--device-memory", "--json"):
        assert flag in result.output
    submit = CliRunner().invoke(cli, ["submit", "--help"]).output
    assert "--no-check" in submit and "only the job's own checks (no folders, no cluster)" in \
        " ".join(submit.split())


def test_check_passes_a_good_local_job(runner: CliRunner, tmp_path: Path) -> None:
    data = make_set(tmp_path / "d")
    result = runner.invoke(cli, ["check", "--cpus", "2", "--data-dir", str(data),
                                 "--output-dir", str(tmp_path / "o"), "--set", "num_classes=2"])
    assert result.exit_code == 0, result.output
    assert "PASS  data.layout" in result.output and "FAIL" not in result.output


def test_check_json_and_exit_2_for_a_data_dir_without_val(runner: CliRunner,
                                                          tmp_path: Path) -> None:
    data = make_set(tmp_path / "d", splits=("train",))
    result = runner.invoke(cli, ["check", "--cpus", "1", "--data-dir", str(data),
                                 "--output-dir", str(tmp_path / "o"), "--json"])
    assert result.exit_code == 2
    report = json.loads(result.stdout)
    assert report["ok"] is False
    layout = next(c for c in report["checks"] if c["name"] == "data.layout")
    assert layout["status"] == "fail" and "has no val/ folder" in layout["message"]


def test_submit_refuses_before_queueing_anything(runner: CliRunner, tmp_path: Path,
                                                 state_dir: Path) -> None:
    data = make_set(tmp_path / "d", splits=("train",))
    result = runner.invoke(cli, ["submit", "--cpus", "1", "--data-dir", str(data),
                                 "--output-dir", str(tmp_path / "o")])
    assert result.exit_code == 2
    assert "FAIL  data.layout" in result.stderr and "nothing was submitted" in result.stderr
    assert result.stdout == ""
    assert not state_dir.exists()


def test_submit_no_check_skips_the_checks(runner: CliRunner, tmp_path: Path) -> None:
    data = make_set(tmp_path / "d", splits=("train",))
    result = runner.invoke(cli, ["submit", "--cpus", "1", "--data-dir", str(data),
                                 "--output-dir", str(tmp_path / "o"), "--dry-run",
                                 "--no-check"])
    assert result.exit_code == 0 and "data.layout" not in result.stderr
    assert "msrun" in result.stdout


def test_dry_run_asks_no_cluster(runner: CliRunner, tmp_path: Path, monkeypatch) -> None:
    # No sinfo/scontrol/sacctmgr on PATH: a cluster check would fail; a dry run must not ask.
    monkeypatch.setenv("PATH", "/nonexistent")
    data = make_set(tmp_path / "d")
    result = runner.invoke(cli, ["submit", "--backend", "slurm", "--gpus", "8",
                                 "--data-dir", str(data), "--output-dir", str(tmp_path / "o"),
                                 "--set", "num_classes=2", "--dry-run"])
    assert result.exit_code == 0, result.output
    assert "slurm." not in result.stderr and "PASS  job.memory" in result.stderr
    checked = runner.invoke(cli, ["check", "--backend", "slurm", "--gpus", "8",
                                  "--data-dir", str(data), "--output-dir", str(tmp_path / "o"),
                                  "--set", "num_classes=2"])
    assert checked.exit_code == 2
    assert "FAIL  slurm.partition" in checked.output and "scontrol is not installed" in \
        checked.output


def test_check_and_usage_do_not_import_kubernetes_or_mindspore() -> None:
    code = ("import sys; from launcher.cli import cli\n"
            "try:\n    cli(['check', '--help'])\nexcept SystemExit: pass\n"
            "try:\n    cli(['usage', '--help'])\nexcept SystemExit: pass\n"
            "print(sorted(m for m in ('kubernetes', 'mindspore') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip().splitlines()[-1] == "[]"


def test_sweep_runs_the_checks_once_and_queues_nothing_when_one_fails(
        runner: CliRunner, tmp_path: Path, state_dir: Path) -> None:
    data = make_set(tmp_path / "d", splits=("train",))
    result = runner.invoke(cli, ["sweep", "--cpus", "1", "--data-dir", str(data),
                                 "--output-dir", str(tmp_path / "o"), "--grid", "lr=0.1,0.2,0.4"])
    assert result.exit_code == 2
    assert result.stderr.count("FAIL  data.layout") == 1  # once for the sweep, not per trial
    assert "nothing was submitted" in result.stderr
    assert result.stdout == ""
    assert not state_dir.exists()


def test_sweep_no_check_skips_the_checks(runner: CliRunner, tmp_path: Path) -> None:
    data = make_set(tmp_path / "d", splits=("train",))
    args = ["sweep", "--cpus", "1", "--data-dir", str(data), "--output-dir", str(tmp_path / "o"),
            "--grid", "lr=0.1,0.2", "--dry-run"]
    checked = runner.invoke(cli, args)
    assert checked.exit_code == 0 and "PASS  job." in checked.stderr  # a dry run: job checks only
    assert "data.layout" not in checked.stderr
    skipped = runner.invoke(cli, [*args, "--no-check"])
    assert skipped.exit_code == 0 and "PASS" not in skipped.stderr
    assert "trial-1/run.sh" in skipped.stdout
