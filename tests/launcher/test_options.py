"""Backend options are declared once (launcher/options.py): `rlaunch options` lists them, `--opt`
values are read as their declared type, and the Ascend chip is a job spec field every backend
and `rlaunch ranktable` know."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from launcher.backends import BACKENDS, get_backend
from launcher.cli import cli
from launcher.options import declared


@pytest.mark.parametrize("backend", sorted(BACKENDS))
def test_options_lists_every_declared_option(runner: CliRunner, backend: str) -> None:
    result = runner.invoke(cli, ["options", "--backend", backend])
    assert result.exit_code == 0, result.output
    names = list(declared(get_backend(backend).options_type))
    listed = [line.split()[0] for line in result.output.splitlines() if not line.startswith(" ")]
    assert listed == (names or ["the"])


def test_options_shows_type_default_and_help(runner: CliRunner) -> None:
    result = runner.invoke(cli, ["options", "--backend", "slurm"])
    assert "signal_seconds  (integer; default 120)" in result.output
    assert "hccn_conf  (string; default /etc/hccn.conf; ascend jobs only)" in result.output
    assert "Seconds before the time limit to checkpoint and requeue." in result.output


def k8s_dry_run(runner: CliRunner, *args: str) -> dict[str, dict]:
    result = runner.invoke(cli, ["submit", "--backend", "k8s", "--data-dir", "/d",
                                 "--output-dir", "/o", *args, "--dry-run"])
    assert result.exit_code == 0, result.output
    return {d["kind"]: d for d in yaml.safe_load_all(result.stdout) if d}


def test_opt_text_is_not_retyped_by_yaml(runner: CliRunner) -> None:
    """`0x1f`, `1e3`, `yes`, `null` are the strings typed, for string options."""
    docs = k8s_dry_run(runner, "--gpus", "1", "--opt", "namespace=0x1f",
                       "--opt", "service_account=1e3", "--opt", "priority_class=yes")
    assert docs["JobSet"]["metadata"]["namespace"] == "0x1f"
    pod = docs["JobSet"]["spec"]["replicatedJobs"][0]["template"]["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "1e3"
    assert pod["priorityClassName"] == "yes"


def test_job_file_options_are_named_by_file_and_key(runner: CliRunner, tmp_path: Path) -> None:
    job = tmp_path / "job.yaml"
    job.write_text("backend: slurm\ndata_dir: /d\noutput_dir: /o\nbackend_options:\n"
                   "  signal_seconds: '017'\n")
    result = runner.invoke(cli, ["submit", "--file", str(job), "--dry-run"])
    assert result.exit_code == 2
    assert (f"{job}: backend_options.signal_seconds '017' is not a whole number"
            in result.output)
    # A flag for the same key is named as the flag.
    result = runner.invoke(cli, ["submit", "--file", str(job), "--opt", "signal_seconds=x",
                                 "--dry-run"])
    assert "--opt signal_seconds 'x' is not a whole number" in result.output


def test_slurm_16_card_910b_servers(runner: CliRunner) -> None:
    result = runner.invoke(cli, ["submit", "--backend", "slurm", "--ascend", "16",
                                 "--ascend-chip", "910b", "--data-dir", "/d", "--output-dir",
                                 "/o", "--dry-run"])
    assert result.exit_code == 0, result.output
    assert "#SBATCH --gres=npu:16" in result.output
    assert "#SBATCH --exclusive" not in result.output  # the whole server
    upper = runner.invoke(cli, ["submit", "--backend", "slurm", "--ascend", "8",
                                "--ascend-devices", "8-15", "--ascend-chip", "910b",
                                "--data-dir", "/d", "--output-dir", "/o", "--dry-run"])
    assert upper.exit_code == 0, upper.output
    assert "#SBATCH --exclusive" in upper.output  # half a 16-card server


def test_ranktable_takes_cards_up_to_15_on_910b(runner: CliRunner, tmp_path: Path) -> None:
    ips = tmp_path / "ips.json"
    ips.write_text(json.dumps({"10.0.0.1": [f"192.168.1.{c}" for c in range(16)]}))
    result = runner.invoke(cli, ["ranktable", "--device-ips", str(ips), "--server", "10.0.0.1",
                                 "--ascend-chip", "910b", "--devices", "0-15"])
    assert result.exit_code == 0, result.output
    table = json.loads(result.stdout)
    assert [d["device_id"] for d in table["server_list"][0]["device"]] == [
        str(c) for c in range(16)]
    strict = runner.invoke(cli, ["ranktable", "--device-ips", str(ips), "--server", "10.0.0.1",
                                 "--devices", "0-15"])
    assert strict.exit_code == 2 and "card 15 is out of range 0-7" in strict.output
