"""The job store: ids, prefixes, listing, XDG location."""

from __future__ import annotations

from pathlib import Path

import pytest

from launcher.spec import JobSpec
from launcher.store import JobNotFoundError, JobStore, state_dir


def test_state_dir_follows_xdg(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("RLAUNCH_STATE_DIR", raising=False)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    assert state_dir() == tmp_path / "rlaunch"


def test_create_save_load_prefix_and_list(tmp_path: Path) -> None:
    store = JobStore(tmp_path)
    first = store.create(JobSpec(name="alpha", output_dir="/o"))
    store.save(first)
    second = store.create(JobSpec(name="beta"))
    second.created += 1
    store.save(second)
    assert store.load(first.id).spec == first.spec
    assert store.load("alp").id == first.id
    assert [r.id for r in store.list()] == [second.id, first.id]
    assert store.load(first.id).job_spec.output_dir == "/o"
    with pytest.raises(JobNotFoundError, match="not in the job store"):
        store.load("gamma")
    with pytest.raises(JobNotFoundError):
        store.load("../" + first.id)


def test_ambiguous_prefix(tmp_path: Path) -> None:
    store = JobStore(tmp_path)
    for _ in range(2):
        store.save(store.create(JobSpec(name="same")))
    with pytest.raises(JobNotFoundError, match="ambiguous"):
        store.load("same-")
