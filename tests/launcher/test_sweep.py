"""`rlaunch sweep`: the search space, every trial checked like a submit, one Slurm array from one
sbatch call (the array script really run for one task), one squeue call for the status of every
trial, one scancel for all, and one Kubernetes workload per trial with names within limits."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from launcher.backends import get_backend
from launcher.backends.k8s import SERVICE_NAME_RE
from launcher.backends.slurm import SlurmBackend, snapshot_code
from launcher.backends.slurm_array import render_array
from launcher.cli import cli
from launcher.spec import JobSpec
from launcher.sweep import MAX_TRIALS, SweepError, parse_space, trial_job_id
from launcher.sweep_trial import trial_args

from .conftest import HOSTILE
from .test_hostile import assert_nothing_executed, fake_bin

CALL_LOG = """#!/bin/bash
printf '%s\\0' "$(basename "$0")" "$@" >> "$CALLS"; printf '\\n' >> "$CALLS"
"""


def calls(path: Path) -> list[list[str]]:
    """Each recorded call: program name then its arguments."""
    if not path.exists():
        return []
    return [line.split("\0") for line in path.read_text().split("\0\n") if line]


@pytest.fixture
def slurm_bin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """sbatch/squeue/scancel stand-ins that record each call; sbatch prints array id 4242, squeue
    prints the lines in $SQUEUE_OUT."""
    bin_dir = tmp_path / "slurm-bin"
    bin_dir.mkdir()
    scripts = {
        "sbatch": CALL_LOG + "echo 4242\n",
        "squeue": CALL_LOG + 'cat "$SQUEUE_OUT"\n',
        "scancel": CALL_LOG,
        "sinfo": "#!/bin/bash\nexit 1\n",
    }
    for name, text in scripts.items():
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    monkeypatch.setenv("CALLS", str(tmp_path / "calls"))
    return bin_dir


def test_grid_is_the_product_in_flag_order() -> None:
    space = parse_space(("lr=0.05,0.1,0.2", "batch_size=64,128"), (), None, 0)
    trials = space.trials()
    assert [t.values for t in trials][:3] == [
        {"lr": "0.05", "batch_size": "64"}, {"lr": "0.05", "batch_size": "128"},
        {"lr": "0.1", "batch_size": "64"}]
    assert len(trials) == 6 and [t.index for t in trials] == list(range(6))
    assert trials[5].overrides == ["lr=0.2", "batch_size=128"]


def test_random_draws_are_seeded_and_within_their_ranges() -> None:
    ranges = ("lr=loguniform:1e-3:1e-1", "weight_decay=uniform:0:1e-4", "epochs=int:2:5",
              "net_name=choice:resnest14d,resnest26d")
    first = parse_space((), ranges, 50, 7).trials()
    assert first == parse_space((), ranges, 50, 7).trials()
    assert first != parse_space((), ranges, 50, 8).trials()
    lrs = [float(t.values["lr"]) for t in first]
    assert all(1e-3 <= v <= 1e-1 for v in lrs)
    # log-uniform: about as many draws below 1e-2 (the geometric middle) as above it
    assert 10 < sum(v < 1e-2 for v in lrs) < 40
    assert all(0 <= float(t.values["weight_decay"]) <= 1e-4 for t in first)
    assert {t.values["epochs"] for t in first} == {"2", "3", "4", "5"}
    assert {t.values["net_name"] for t in first} == {"resnest14d", "resnest26d"}


def test_grid_and_random_combine_per_grid_point() -> None:
    trials = parse_space(("batch_size=64,128",), ("lr=loguniform:1e-3:1e-1",), 3, 1).trials()
    assert len(trials) == 6
    assert [t.values["batch_size"] for t in trials] == ["64", "128"] * 3


@pytest.mark.parametrize(("grid", "ranges", "samples", "says"), [
    ((), (), None, "a sweep needs --grid"),
    (("lr=0.1,0.1",), (), None, "lists a value twice"),
    (("lr",), (), None, "must look like KEY=VALUES"),
    (("lr=0.1", "lr=0.2"), (), None, "--grid lr is given twice"),
    ((), ("lr=uniform:1:0",), 2, "LOW 1 is above HIGH 0"),
    ((), ("lr=uniform:0:nan",), 2, "is not a finite number"),
    ((), ("lr=int:1.5:3",), 2, "int bounds must be integers"),
    ((), ("lr=choice:",), 2, "give the choices"),
    ((), ("lr=uniform:0:1",), None, "--range needs --random N"),
    (("lr=" + ",".join(str(i) for i in range(1, 40)), "batch_size=" + ",".join(
        str(i) for i in range(1, 40))), (), None, f"at most {MAX_TRIALS} per sweep"),
])
def test_bad_spaces_are_one_clear_error(grid: tuple[str, ...], ranges: tuple[str, ...],
                                        samples: int | None, says: str) -> None:
    with pytest.raises(SweepError, match=None) as err:
        parse_space(grid, ranges, samples, 0)
    assert says in str(err.value) and "\n" not in str(err.value)


def sweep_args(*extra: str, backend: str = "slurm") -> list[str]:
    """A sweep of made-up folders on a fake scheduler: the preflight checks are skipped
    (tests/preflight/test_cli.py tests that a sweep runs them)."""
    return ["sweep", "--no-check", "--backend", backend, "--cpus", "1", "--data-dir", "/d",
            "--output-dir", "/o", *extra]


def test_slurm_sweep_is_one_array_from_one_sbatch_call(runner: CliRunner, state_dir: Path,
                                                       slurm_bin: Path, tmp_path: Path) -> None:
    result = runner.invoke(cli, sweep_args("--grid", "lr=0.05,0.1,0.2", "--grid",
                                           "batch_size=64,128", "--max-parallel", "2"))
    assert result.exit_code == 0, result.output
    sweep_id = result.output.strip().splitlines()[-1]
    made = calls(tmp_path / "calls")
    assert [c[0] for c in made] == ["sbatch"]
    assert made[0][-1] == str(state_dir / "jobs" / sweep_id / "sbatch.sh")
    assert f"--output={state_dir / 'jobs' / sweep_id}/slurm-%A_%a.out" in made[0]
    job_dir = state_dir / "jobs" / sweep_id
    script = (job_dir / "sbatch.sh").read_text()
    assert "#SBATCH --array=0-5%2\n" in script
    # a task signals and requeues itself, never the array (whose id one task's job id equals)
    assert 'scancel --signal=USR1 "$THIS_TASK"' in script
    assert 'scontrol requeue "$THIS_TASK"' in script
    document = json.loads((job_dir / "trials.json").read_text())
    assert trial_args(document, 5) == ["--output-dir", "/o/trial-5", "--set", "lr=0.2", "--set",
                                       "batch_size=128"]
    record = json.loads((job_dir / "record.json").read_text())
    assert record["backend_id"] == "4242"
    assert record["extra"]["sweep"]["parameters"] == ["lr", "batch_size"]


def test_hundred_trials_one_sbatch_call(runner: CliRunner, state_dir: Path, slurm_bin: Path,
                                        tmp_path: Path) -> None:
    values = ",".join(f"{0.001 * (i + 1):.3f}" for i in range(100))
    result = runner.invoke(cli, sweep_args("--grid", f"lr={values}", "--max-parallel", "8"))
    assert result.exit_code == 0, result.output
    assert [c[0] for c in calls(tmp_path / "calls")] == ["sbatch"]
    sweep_id = result.output.strip().splitlines()[-1]
    assert "#SBATCH --array=0-99%8" in (state_dir / "jobs" / sweep_id / "sbatch.sh").read_text()


def test_status_of_every_trial_from_one_squeue_call(runner: CliRunner, state_dir: Path,
                                                    slurm_bin: Path, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    values = ",".join(f"{0.001 * (i + 1):.3f}" for i in range(100))
    sweep_id = runner.invoke(cli, sweep_args("--grid", f"lr={values}")).output.split()[-1]
    # squeue's own lines: some tasks running, one pending, one failed; task 99 no longer
    # listed but its exit code file says it finished; a line of another job is ignored.
    lines = ["4242_0|RUNNING|None", "4242_1|COMPLETED|None", "4242_2|PENDING|JobArrayTaskLimit",
             "4242_3|FAILED|NonZeroExitCode", "4243_4|RUNNING|None", "garbage"]
    (tmp_path / "squeue.out").write_text("\n".join(lines) + "\n")
    monkeypatch.setenv("SQUEUE_OUT", str(tmp_path / "squeue.out"))
    (state_dir / "jobs" / sweep_id / "trial-99").mkdir()
    (state_dir / "jobs" / sweep_id / "trial-99" / "exit_code").write_text("0\n")
    result = runner.invoke(cli, ["status", sweep_id, "--json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)["trials"]
    assert [c[0] for c in calls(tmp_path / "calls")] == ["sbatch", "squeue"]
    assert "--jobs=4242" in calls(tmp_path / "calls")[1]
    assert [r["state"] for r in rows[:5]] == ["RUNNING", "COMPLETED", "PENDING", "FAILED",
                                              "UNKNOWN"]
    assert "JobArrayTaskLimit" in rows[2]["detail"]
    assert rows[99]["state"] == "COMPLETED" and rows[99]["exit_code"] == 0
    table = runner.invoke(cli, ["status", sweep_id]).output
    assert "best top-1" in table and "0.100" in table


def test_cancel_all_is_one_scancel_and_one_trial_is_its_task(
        runner: CliRunner, state_dir: Path, slurm_bin: Path, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    sweep_id = runner.invoke(cli, sweep_args("--grid", "lr=0.05,0.1,0.2")).output.split()[-1]
    assert runner.invoke(cli, ["cancel", sweep_id]).exit_code == 0
    assert runner.invoke(cli, ["cancel", sweep_id, "--trial", "2"]).exit_code == 0
    made = calls(tmp_path / "calls")
    assert made[1:] == [["scancel", "--", "4242"], ["scancel", "--", "4242_2"]]
    # once slurmctld no longer lists the tasks, they stay CANCELLED (not UNKNOWN or FAILED)
    (tmp_path / "squeue.out").write_text("")
    monkeypatch.setenv("SQUEUE_OUT", str(tmp_path / "squeue.out"))
    (state_dir / "jobs" / sweep_id / "trial-0").mkdir(exist_ok=True)
    (state_dir / "jobs" / sweep_id / "trial-0" / "exit_code").write_text("75\n")
    rows = json.loads(runner.invoke(cli, ["status", sweep_id, "--json"]).output)["trials"]
    assert [r["state"] for r in rows] == ["CANCELLED"] * 3
    bad = runner.invoke(cli, ["cancel", sweep_id, "--trial", "3"])
    assert bad.exit_code == 2
    assert f"sweep {sweep_id} has 3 trials (0-2); there is no trial 3" in bad.output


def test_a_bad_trial_value_stops_the_sweep_before_anything(runner: CliRunner, state_dir: Path,
                                                            slurm_bin: Path,
                                                            tmp_path: Path) -> None:
    result = runner.invoke(cli, sweep_args("--grid", "lr=0.1,0.2", "--grid",
                                           "batch_size=64,0"))
    assert result.exit_code == 2
    assert "Error: trial 1 (lr=0.1, batch_size=0): batch_size=0" in result.output
    assert calls(tmp_path / "calls") == [] and not state_dir.exists()


def test_array_task_reads_its_trial_without_shell_parsing(tmp_path: Path) -> None:
    """The rendered array script, really run as task 1 with stand-in srun/msrun: the trial's
    values arrive as separate words, byte for byte, and nothing hostile runs."""
    bin_dir = fake_bin(tmp_path)
    record_to = tmp_path / "calls.jsonl"
    code_dir = tmp_path / "checkout"
    (code_dir / "resnest").mkdir(parents=True)
    (code_dir / "resnest" / "train.py").write_text("")
    spec = JobSpec(backend="slurm", device_kind="cpu", devices_per_node=1, data_dir="/d",
                   output_dir="/o", python=str(bin_dir / "python"), code_dir=str(code_dir),
                   job_id="sw-abcdef").validate()
    hostile = [h for h in HOSTILE if "\n" not in h]
    document = json.dumps({"trials": [
        {"index": i, "values": {}, "args": ["--output-dir", f"/o/trial-{i}", "--set", f"k={h}"]}
        for i, h in enumerate(hostile)]})
    backend = get_backend("slurm")
    assert isinstance(backend, SlurmBackend)
    rendered = render_array(backend, spec, backend.options_of(spec), document, len(hostile), 2)
    job_dir = tmp_path / "sweep dir"
    rendered.write(job_dir)
    snapshot_code(code_dir, job_dir / "code")  # what `submit` does
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "RECORD_TO": str(record_to),
           "SLURM_JOB_ID": "124", "SLURM_ARRAY_JOB_ID": "124", "SLURM_ARRAY_TASK_ID": "1",
           "SLURM_JOB_NODELIST": "node0", "SLURMD_NODENAME": "node0",
           "PYTHONPATH": os.getcwd()}
    done = subprocess.run(["bash", "sbatch.sh"], cwd=job_dir, env=env, capture_output=True,
                          text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    call = json.loads(record_to.read_text().splitlines()[-1])
    assert call["argv"][-6:] == ["--data-dir", "/d", "--output-dir", "/o/trial-1", "--set",
                                 f"k={hostile[1]}"]
    assert (job_dir / "trial-1" / "exit_code").read_text().strip() == "0"
    assert (job_dir / "trial-1" / "logs" / "restart-0").is_dir()
    assert_nothing_executed(tmp_path)


@pytest.mark.parametrize(("text", "says"), [
    ('{"trials": 3}', "no list of trials"),
    ('{"trials": [{"index": 0, "args": ["a", 1]}]}', "trial 0 has no list of text arguments"),
    ('{"trials": []}', "it has no trial 0"),
    ("[", "Expecting value"),
])
def test_a_damaged_trials_file_ends_the_task_with_one_line(tmp_path: Path, text: str,
                                                           says: str) -> None:
    (tmp_path / "trials.json").write_text(text)
    done = subprocess.run([sys.executable, "-m", "launcher.sweep_trial",
                           str(tmp_path / "trials.json"), "0"], capture_output=True, text=True,
                          check=False)
    assert done.returncode == 1 and done.stdout == ""
    assert says in done.stderr and len(done.stderr.splitlines()) == 1


def test_kubernetes_one_workload_per_trial_names_unique_and_within_limits(
        runner: CliRunner, state_dir: Path) -> None:
    result = runner.invoke(cli, sweep_args(
        "--name", "a" * 40, "--grid", "lr=" + ",".join(f"0.0{i}" for i in range(1, 10)),
        "--grid", "batch_size=32,64", backend="k8s") + ["--dry-run"])
    assert result.exit_code == 0, result.output
    docs = [d for d in yaml.safe_load_all(result.output) if d]
    workloads = [d for d in docs if d["kind"] == "JobSet"]
    assert len(workloads) == 18
    names = [w["metadata"]["name"] for w in workloads]
    assert len(set(names)) == 18
    sweep_id = names[0].rsplit("-t", 1)[0]
    assert names == [trial_job_id(sweep_id, i) for i in range(18)]
    outputs = set()
    for workload in workloads:
        name = workload["metadata"]["name"]
        # the longest name a pod gets as its host name: <jobset>-node-<job>-<pod>
        assert SERVICE_NAME_RE.fullmatch(name) and len(f"{name}-node-0-0") <= 63
        text = json.dumps(workload)
        outputs |= {a for a in text.split('"') if a.startswith("/o/trial-")}
    assert len(outputs) == 18
    # the longest trial id any sweep can have still leaves room for the pod suffixes
    assert len(trial_job_id("a" * 40 + "-abcdef", MAX_TRIALS - 1) + "-node-99-0") <= 63
    assert not state_dir.exists()


def test_plot_and_summary_have_no_nan(tmp_path: Path) -> None:
    from launcher.commands.sweep import _finite
    from launcher.sweep_plot import plot_sweep

    trials = [{"trial": i, "values": {"lr": lr}, "state": "COMPLETED",
               "final": {"top1": top1}, "epochs": [{"epoch": 0, "top1": top1}],
               "curve": [(1, 1.5), (2, 1.0 + i)]}
              for i, (lr, top1) in enumerate([("0.01", 50.0), ("0.1", 75.0), ("1", 25.0)])]
    assert plot_sweep(["lr"], trials, tmp_path / "sweep.png") == tmp_path / "sweep.png"
    assert (tmp_path / "sweep.png").stat().st_size > 5000
    text = json.dumps(_finite({"a": math.nan, "b": [math.inf, 1.0]}), allow_nan=False)
    assert json.loads(text) == {"a": None, "b": [None, 1.0]}


def test_sweep_help_imports_no_heavy_module() -> None:
    heavy = ["mindspore", "kubernetes", "matplotlib", "numpy", "jinja2", "rich"]
    code = ("import sys\nfrom launcher.cli import cli\n"
            "try:\n    cli(['sweep', '--help'])\nexcept SystemExit:\n    pass\n"
            f"print([m for m in {heavy!r} if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip().splitlines()[-1] == "[]", out


def test_list_shows_a_sweep_as_one_row_with_its_overall_state(
        runner: CliRunner, state_dir: Path, slurm_bin: Path, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    sweep_id = runner.invoke(cli, sweep_args("--grid", "lr=0.05,0.1")).output.split()[-1]
    (tmp_path / "squeue.out").write_text("4242_0|COMPLETED|None\n4242_1|RUNNING|None\n")
    monkeypatch.setenv("SQUEUE_OUT", str(tmp_path / "squeue.out"))
    listed = json.loads(runner.invoke(cli, ["list", "--json"]).output)
    assert [(r["id"], r["last_state"]) for r in listed] == [(sweep_id, "RUNNING")]
    (tmp_path / "squeue.out").write_text("4242_0|COMPLETED|None\n4242_1|FAILED|None\n")
    listed = json.loads(runner.invoke(cli, ["list", "--json"]).output)
    assert listed[0]["last_state"] == "FAILED"


def test_trials_left_by_a_dead_runner_say_so(runner: CliRunner, state_dir: Path) -> None:
    job_dir = state_dir / "jobs" / "rn-abc123"
    job_dir.mkdir(parents=True)
    extra = {"sweep": {"parameters": ["lr"], "max_parallel": 1, "mode": "bounded", "seed": 0,
                       "trials": [{"index": 0, "values": {"lr": "0.1"}}],
                       "trial_files": ["run.sh"]}}
    (job_dir / "record.json").write_text(json.dumps({
        "id": "rn-abc123", "backend": "local", "spec": {"name": "rn", "output_dir": "/o"},
        "job_dir": str(job_dir), "output_dir": "/o", "backend_id": "runner 1", "created": 1.0,
        "files": [], "last_state": "SUBMITTED", "extra": extra}))
    (job_dir / "runner.pid").write_text("999999999 1\n")
    rows = json.loads(runner.invoke(cli, ["status", "rn-abc123", "--json"]).output)["trials"]
    assert rows[0]["state"] == "FAILED" and "runner is not running" in rows[0]["detail"]
