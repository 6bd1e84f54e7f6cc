"""The Slurm backend's view of job states, from scheduler output recorded on the
production-shaped cluster (scripts/slurm_cluster.sh up-production, Slurm 22.05.8): every final
state ends `status` and `logs -f`; one squeue call answers for all jobs; sacct answers for the
jobs slurmctld forgot; odd output is ignored, never trusted."""

from __future__ import annotations

import itertools
import json
import subprocess
from pathlib import Path

import pytest

from launcher.backends import base
from launcher.backends.base import BackendError, JobStatus
from launcher.backends.slurm_state import (
    BackoffPoll,
    SlurmAnswer,
    job_status,
    parse_sacct,
    parse_squeue,
    query_jobs,
)

# `squeue -h -t all -j 4,5,6,7,8,9 -o '%i|%T|%r'` as recorded (see RECORDED note in each test).
SQUEUE_RECORDED = """\
4|PENDING|BeginTime
5|RUNNING|None
6|COMPLETED|None
7|OUT_OF_MEMORY|OutOfMemory
8|TIMEOUT|TimeLimit
9|CANCELLED|None
"""
# `sacct -n -P -X -j 2,3,10,11 -o JobIDRaw,State,ExitCode` as recorded.
SACCT_RECORDED = """\
2|COMPLETED|0:0
3|CANCELLED by 1001|0:15
10|NODE_FAIL|0:0
11|PREEMPTED|0:15
"""


def answer_of(squeue: str = "", sacct: str | None = "") -> SlurmAnswer:
    wanted = [str(i) for i in range(1, 20)]
    jobs = parse_squeue(squeue, wanted)
    if sacct is not None:
        jobs.update(parse_sacct(sacct, [i for i in wanted if i not in jobs]))
    return SlurmAnswer(jobs, accounting=sacct is not None)


@pytest.mark.parametrize(("job_id", "state", "final"), [
    ("4", base.PENDING, False),      # a requeued job waiting out its BeginTime
    ("5", base.RUNNING, False),
    ("6", base.COMPLETED, True),
    ("7", base.FAILED, True),        # OUT_OF_MEMORY
    ("8", base.FAILED, True),        # TIMEOUT
    ("9", base.CANCELLED, True),
    ("2", base.COMPLETED, True),     # from sacct: slurmctld forgot it
    ("3", base.CANCELLED, True),     # sacct's "CANCELLED by <uid>"
    ("10", base.FAILED, True),       # NODE_FAIL
    ("11", base.FAILED, True),       # PREEMPTED and not requeued (PreemptMode=CANCEL)
])
def test_every_slurm_end_state_is_final_and_live_states_are_not(
    tmp_path: Path, job_id: str, state: str, final: bool
) -> None:
    status = job_status(job_id, tmp_path, answer_of(SQUEUE_RECORDED, SACCT_RECORDED))
    assert (status.state, status.finished) == (state, final)


def test_reasons_and_sources_are_shown(tmp_path: Path) -> None:
    answer = answer_of(SQUEUE_RECORDED, SACCT_RECORDED)
    assert job_status("4", tmp_path, answer).detail == "squeue PENDING (BeginTime)"
    assert job_status("7", tmp_path, answer).detail == "squeue OUT_OF_MEMORY (OutOfMemory)"
    assert job_status("3", tmp_path, answer).detail == "sacct CANCELLED"
    assert job_status("3", tmp_path, answer).exit_code == 0


def test_held_and_suspended_jobs_are_not_final_and_say_so(tmp_path: Path) -> None:
    answer = answer_of("12|REQUEUE_HOLD|JobHeldUser\n13|SUSPENDED|None\n14|SPECIAL_EXIT|None\n")
    held = job_status("12", tmp_path, answer)
    assert not held.finished and "scontrol release" in held.detail
    assert job_status("13", tmp_path, answer).detail == "squeue SUSPENDED (suspended)"
    assert not job_status("14", tmp_path, answer).finished


def test_a_job_slurm_no_longer_knows_is_final(tmp_path: Path) -> None:
    with_accounting = job_status("15", tmp_path, answer_of("", ""))
    assert with_accounting.finished and "no longer known to squeue or sacct" in with_accounting.detail
    without = job_status("15", tmp_path, answer_of("", None))
    assert without.finished and "no accounting" in without.detail


def test_the_scripts_exit_code_file_decides_a_forgotten_job(tmp_path: Path) -> None:
    (tmp_path / "exit_code").write_text("0\n")
    assert job_status("15", tmp_path, answer_of("", None)).state == base.COMPLETED
    (tmp_path / "exit_code").write_text("75\n")
    status = job_status("15", tmp_path, answer_of("", None))
    assert (status.state, status.exit_code) == (base.FAILED, 75)
    (tmp_path / "exit_code").write_text("$(reboot)")
    assert job_status("15", tmp_path, answer_of("", None)).exit_code is None


def test_restarts_count_the_runs_the_script_started(tmp_path: Path) -> None:
    for name in ("restart-0", "restart-1", "restart-2", "restart-x", "restart-9.tmp"):
        (tmp_path / "logs" / name).mkdir(parents=True)
    assert job_status("5", tmp_path, answer_of(SQUEUE_RECORDED)).restarts == 2


def test_untrusted_lines_are_ignored() -> None:
    text = ("5|RUNNING|None\n"
            "6|REBOOTING_EVERYTHING|None\n"      # not a Slurm state
            "99|COMPLETED|None\n"                 # not asked about
            "5_1|RUNNING|None\n"                  # an array task id
            "7|TIMEOUT|$(touch PWNED)\x1b[2J\n"   # a reason no squeue prints
            "garbage\n")
    jobs = parse_squeue(text, ["5", "6", "7"])
    assert sorted(jobs) == ["5", "7"]
    assert jobs["7"].reason == ""
    assert parse_sacct("2|COMPLETED|0:0|extra\n2|COMPLETED\n", ["2"]) == {}


def fake_run(answers: dict[str, subprocess.CompletedProcess[str]], calls: list[list[str]]):
    def run(argv: list[str]) -> subprocess.CompletedProcess[str]:
        calls.append(argv)
        return answers[argv[0]]
    return run


def done(stdout: str = "", stderr: str = "", rc: int = 0) -> subprocess.CompletedProcess[str]:
    return subprocess.CompletedProcess([], rc, stdout, stderr)


def test_one_squeue_call_for_all_jobs_and_one_sacct_for_the_forgotten() -> None:
    calls: list[list[str]] = []
    answer = query_jobs(["5", "6", "2", "3", "5"], fake_run(
        {"squeue": done(SQUEUE_RECORDED), "sacct": done(SACCT_RECORDED)}, calls))
    assert [c[0] for c in calls] == ["squeue", "sacct"]
    assert calls[0][calls[0].index("-j") + 1] == "2,3,5,6"
    assert calls[1][calls[1].index("-j") + 1] == "2,3"
    assert sorted(answer.jobs) == ["2", "3", "5", "6"]


def test_no_sacct_call_when_squeue_knows_every_job() -> None:
    calls: list[list[str]] = []
    query_jobs(["5", "6"], fake_run({"squeue": done(SQUEUE_RECORDED)}, calls))
    assert [c[0] for c in calls] == ["squeue"]


def test_a_single_forgotten_job_goes_to_sacct_but_a_dead_controller_is_an_error() -> None:
    forgotten = done(stderr="slurm_load_jobs error: Invalid job id specified\n", rc=1)
    calls: list[list[str]] = []
    answer = query_jobs(["2"], fake_run({"squeue": forgotten, "sacct": done(SACCT_RECORDED)},
                                        calls))
    assert answer.jobs["2"].state == "COMPLETED"
    down = done(stderr="slurm_load_jobs error: Unable to contact slurm controller "
                       "(connect failure)\n", rc=1)
    with pytest.raises(BackendError, match="Unable to contact slurm controller"):
        query_jobs(["2"], fake_run({"squeue": down}, []))


def test_accounting_disabled_is_not_an_error() -> None:
    disabled = done(stderr="sacct: error: Slurm accounting storage is disabled\n", rc=1)
    answer = query_jobs(["2"], fake_run(
        {"squeue": done(stderr="Invalid job id specified", rc=1), "sacct": disabled}, []))
    assert answer == SlurmAnswer({}, accounting=False)


def test_a_follower_asks_the_scheduler_less_and_less_often() -> None:
    now = [0.0]
    asked: list[float] = []

    def status() -> JobStatus:
        asked.append(now[0])
        return JobStatus(base.RUNNING)

    poll = BackoffPoll(status, first=2.0, longest=60.0, clock=lambda: now[0])
    while now[0] < 3600:  # an hour of a follower checking every 0.5 s
        poll.finished()
        now[0] += 0.5
    gaps = [b - a for a, b in itertools.pairwise(asked)]
    assert gaps[:5] == [2.0, 4.0, 8.0, 16.0, 32.0]
    assert set(gaps[5:]) == {60.0}
    assert len(asked) < 70


def test_a_follower_stops_asking_once_the_job_is_final() -> None:
    answers = iter([JobStatus(base.RUNNING), JobStatus(base.FAILED)])
    now = [0.0]
    poll = BackoffPoll(lambda: next(answers), first=1.0, clock=lambda: now[0])
    results = []
    for _ in range(20):
        results.append(poll.finished())
        now[0] += 1.0
    assert results[0] is False and results[-1] is True and poll.asked == 2


def test_list_asks_squeue_once_for_all_slurm_jobs(
    state_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`rlaunch list` over three Slurm jobs: one squeue call, one sacct call for the one
    slurmctld forgot; the recorded answers set each job's state."""
    from click.testing import CliRunner

    from launcher.cli import cli
    from launcher.spec import JobSpec
    from launcher.store import JobStore

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "calls"
    for tool, output in (("squeue", "5|RUNNING|None\n6|COMPLETED|None\n"),
                         ("sacct", "2|CANCELLED by 1001|0:15\n")):
        (bin_dir / tool).write_text(f"#!/bin/sh\necho {tool} \"$@\" >> '{calls}'\n"
                                    f"printf '{output}'\n")
        (bin_dir / tool).chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")
    store = JobStore()
    for slurm_id in ("5", "6", "2"):
        record = store.create(JobSpec(backend="slurm", name=f"j{slurm_id}"))
        record.backend_id = slurm_id
        store.save(record)

    listed = CliRunner().invoke(cli, ["list", "--json"])
    assert listed.exit_code == 0, listed.output
    states = {e["backend_id"]: e["last_state"] for e in json.loads(listed.output)}
    assert states == {"5": "RUNNING", "6": "COMPLETED", "2": "CANCELLED"}
    lines = calls.read_text().splitlines()
    assert [line.split()[0] for line in lines] == ["squeue", "sacct"]
    assert "-j 2,5,6 " in lines[0] and "-j 2 " in lines[1]


def test_array_tasks_are_read_by_the_same_parser_and_only_when_asked_for() -> None:
    text = ("252_0|RUNNING|None\n"
            "252_1|PENDING|JobArrayTaskLimit\n"
            "252_7|COMPLETED|None\n"              # not a task of this sweep
            "252_2|FAILED|$(touch PWNED)\n"       # a reason no squeue prints
            "252_x|RUNNING|None\n"
            "252_1_1|RUNNING|None\n")
    wanted = ["252_0", "252_1", "252_2", "252_1_1"]
    jobs = parse_squeue(text, wanted)
    assert sorted(jobs) == ["252_0", "252_1", "252_2"]
    assert jobs["252_1"].reason == "JobArrayTaskLimit" and jobs["252_2"].reason == ""


def test_a_sweep_reads_every_trial_from_one_squeue_call(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    from launcher.backends import slurm_array

    calls: list[list[str]] = []
    answer = "252_0|COMPLETED|None\n252_1|RUNNING|None\n252_9|FAILED|None\n253_2|FAILED|None\n"
    monkeypatch.setattr(slurm_array, "_run", fake_run({"squeue": done(answer)}, calls))
    (tmp_path / "trial-0").mkdir()
    (tmp_path / "trial-0" / "exit_code").write_text("0")
    states = slurm_array.array_states("252", tmp_path, 3)
    assert len(calls) == 1 and "--array" in calls[0]
    assert [states[i].state for i in range(3)] == [base.COMPLETED, base.RUNNING, base.UNKNOWN]
    assert states[0].exit_code == 0 and states[1].detail == "slurm RUNNING"
