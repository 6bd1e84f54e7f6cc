"""Per-rank log merging: prefixes, one rank, restarts in order, follow until finished."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from launcher.rank_logs import iter_rank_logs, job_messages


def write_logs(root: Path) -> None:
    for restart, ranks in ((0, {0: "a0\n", 1: "[rank 1] b0\n"}), (1, {0: "a1\npartial"})):
        folder = root / f"restart-{restart}"
        folder.mkdir(parents=True)
        for rank, text in ranks.items():
            (folder / f"worker_{rank}.log").write_text(text)
    (root / "restart-0" / "scheduler.log").write_text("not a rank\n")


def test_merged_prefixed_in_restart_order(tmp_path: Path) -> None:
    write_logs(tmp_path)
    assert list(iter_rank_logs(tmp_path)) == [
        "[rank 0] a0", "[rank 1] b0", "[rank 0] a1", "[rank 0] partial",
    ]
    assert list(iter_rank_logs(tmp_path, rank=1)) == ["[rank 1] b0"]
    assert list(iter_rank_logs(tmp_path / "missing")) == []


def test_follow_waits_for_new_lines_until_finished(tmp_path: Path) -> None:
    folder = tmp_path / "restart-0"
    folder.mkdir()
    log = folder / "worker_0.log"
    log.write_text("first\n")
    done = threading.Event()

    def writer() -> None:
        time.sleep(0.3)
        with log.open("a") as fh:
            fh.write("second\n")
        time.sleep(0.3)
        done.set()

    threading.Thread(target=writer).start()
    lines = list(iter_rank_logs(tmp_path, follow=True, finished=done.is_set, poll_seconds=0.05))
    assert lines == ["[rank 0] first", "[rank 0] second"]


def test_job_messages_keep_only_launcher_lines(tmp_path: Path) -> None:
    out = tmp_path / "slurm-7.out"
    out.write_text("rlaunch: job 7 restart 0/3\nnoise from msrun tail\n"
                   "slurmstepd: error: *** JOB 7 CANCELLED ***\n")
    assert list(job_messages([out, tmp_path / "missing.out"])) == [
        "[job] rlaunch: job 7 restart 0/3", "[job] slurmstepd: error: *** JOB 7 CANCELLED ***",
    ]
