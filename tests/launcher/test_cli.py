"""The click CLI: every --help, lazy imports, dry runs, clear errors with exit code 2."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from launcher.cli import COMMANDS, cli

OWN_COMMANDS = sorted(set(COMMANDS) - {"build"})  # build belongs to the image area


def test_top_level_help_lists_every_command(runner: CliRunner) -> None:
    result = runner.invoke(cli, ["--help"])
    assert result.exit_code == 0
    for name in COMMANDS:
        assert name in result.output


@pytest.mark.parametrize("name", OWN_COMMANDS)
def test_every_command_help(runner: CliRunner, name: str) -> None:
    result = runner.invoke(cli, [name, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage: cli " + name in result.output or f"Usage: rlaunch {name}" in result.output


@pytest.mark.parametrize("argv", [["--help"], ["submit", "--help"], ["logs", "--help"],
                                  ["list", "--help"], ["ranktable", "--help"]])
def test_help_imports_no_heavy_module(argv: list[str]) -> None:
    # yaml, jinja2, rich and the training config are needed only once a command does work.
    heavy = ["mindspore", "kubernetes", "matplotlib", "numpy", "yaml", "jinja2", "rich",
             "resnest.config"]
    code = (
        "import sys\nfrom launcher.cli import cli\n"
        f"try:\n    cli({argv!r})\nexcept SystemExit:\n    pass\n"
        f"print([m for m in {heavy!r} if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip().splitlines()[-1] == "[]", out


def test_submit_dry_run_prints_script_and_writes_nothing(runner: CliRunner, state_dir: Path) -> None:
    result = runner.invoke(cli, ["submit", "--backend", "slurm", "--gpus", "8", "--nodes", "2",
                                 "--data-dir", "/d", "--output-dir", "/o", "--dry-run"])
    assert result.exit_code == 0, result.output
    assert "#SBATCH --nodes=2" in result.output
    assert "--worker_num=16 --local_worker_num=8" in result.output
    assert "sbatch --parsable" in result.output
    assert not state_dir.exists()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--gpus", "8", "--ascend", "8"], "--gpus and --ascend cannot be used together"),
        (["--ascend", "3"], "--ascend 3 is not allowed: devices per node must be 1, 2, 4 or 8"),
        (["--ascend", "4", "--ascend-devices", "2-5"], "must sit within devices 0-3 or 4-7"),
        (["--name", "Bad Name"], "name 'Bad Name' is not a valid job name"),
        (["--backend", "local", "--data-dir", "/nonexistent/x"], "--data-dir '/nonexistent/x' does not exist"),
        (["--backend", "local", "--nodes", "2"], "the local backend runs on this one machine"),
        (["--env", "NOEQUALS"], "'NOEQUALS' must look like KEY=VALUE"),
        (["--opt", "nope=1"], "--opt nope is not an option of the slurm backend"),
        (["--scheduler-arg", "script.sh"], "must be an sbatch option starting with '-'"),
        (["--time", "$(reboot)"], "is not a Slurm time"),
    ],
)
def test_bad_input_exit_2_one_clear_line(runner: CliRunner, state_dir: Path, tmp_path: Path,
                                         argv: list[str], message: str) -> None:
    base = ["submit", "--data-dir", str(tmp_path), "--output-dir", str(tmp_path / "o")]
    if "--backend" not in argv:
        base += ["--backend", "slurm"]
    result = runner.invoke(cli, [*base, *argv, "--dry-run"])
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert not state_dir.exists()


def test_submit_file_and_flags_precedence(runner: CliRunner, tmp_path: Path) -> None:
    job = tmp_path / "job.yaml"
    job.write_text("name: from-file\nbackend: slurm\nnodes: 3\ndevice_kind: gpu\n"
                   "devices_per_node: 4\ndata_dir: /d\noutput_dir: /o\noverrides: [epochs=5]\n")
    result = runner.invoke(cli, ["submit", "--file", str(job), "--nodes", "2", "--set", "lr=0.1",
                                 "--dry-run"])
    assert result.exit_code == 0, result.output
    assert "#SBATCH --job-name=from-file" in result.output
    assert "#SBATCH --nodes=2" in result.output
    assert "#SBATCH --gpus-per-node=4" in result.output
    assert "--set epochs=5 --set lr=0.1" in result.output


def test_unknown_job_is_a_clear_error(runner: CliRunner) -> None:
    for command in ("status", "logs", "cancel", "gather"):
        result = runner.invoke(cli, [command, "nope-123"])
        assert result.exit_code == 2
        assert "job 'nope-123' is not in the job store" in result.output


def test_list_empty_and_json(runner: CliRunner) -> None:
    result = runner.invoke(cli, ["list", "--json"])
    assert result.exit_code == 0 and json.loads(result.output) == []
