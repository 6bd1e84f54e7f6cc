"""Checkpoint manager: atomic publish, manifest, pruning, and skipping corrupt or partial files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from resnest.checkpoint import CheckpointManager, resolve_checkpoint_path


def fake_writer(payload: bytes):
    def write(path: str) -> None:
        Path(path).write_bytes(payload)

    return write


def test_save_publishes_manifest_links_and_prunes(tmp_path: Path) -> None:
    manager = CheckpointManager(tmp_path / "checkpoints", keep=2, warn=lambda m: None)
    for i in range(1, 5):
        manager.save(fake_writer(f"weights {i}".encode()), epoch=i - 1, step=10, global_step=10 * i)
    manifest = json.loads((manager.folder / "manifest.json").read_text())
    files = [e["file"] for e in manifest["checkpoints"]]
    assert files == ["epoch0002-step00000030.ckpt", "epoch0003-step00000040.ckpt"]
    assert manifest["last"] == "epoch0003-step00000040.ckpt"
    assert (manager.folder / "last.ckpt").read_bytes() == b"weights 4"
    assert sorted(p.name for p in manager.folder.glob("epoch*.ckpt")) == files
    assert not list(manager.folder.glob(".*tmp"))
    assert manager.latest_valid().global_step == 40


def test_best_checkpoint_survives_pruning(tmp_path: Path) -> None:
    manager = CheckpointManager(tmp_path, keep=1, warn=lambda m: None)
    manager.save(fake_writer(b"a"), 0, 5, 5)
    manager.mark_best(90.0)
    manager.save(fake_writer(b"b"), 1, 5, 10)
    manager.mark_best(50.0)
    manifest = json.loads(manager.manifest_path.read_text())
    assert manifest["best"] == "epoch0000-step00000005.ckpt"
    assert (tmp_path / "best.ckpt").read_bytes() == b"a"
    assert (tmp_path / "epoch0000-step00000005.ckpt").exists()
    assert resolve_checkpoint_path(tmp_path) == tmp_path / "epoch0000-step00000005.ckpt"


def test_corrupt_or_missing_newest_falls_back_with_warning(tmp_path: Path) -> None:
    warnings: list[str] = []
    manager = CheckpointManager(tmp_path, keep=3, warn=warnings.append)
    manager.save(fake_writer(b"good"), 0, 5, 5)
    newest = manager.save(fake_writer(b"newer"), 1, 5, 10)
    (tmp_path / newest.file).chmod(0o600)
    (tmp_path / newest.file).write_bytes(b"trunc")  # torn write
    assert manager.latest_valid().global_step == 5
    assert any("corrupt" in w for w in warnings)
    (tmp_path / newest.file).unlink()
    assert manager.latest_valid().global_step == 5
    assert any("missing" in w for w in warnings)


def test_a_leftover_temporary_file_is_never_used(tmp_path: Path) -> None:
    manager = CheckpointManager(tmp_path, warn=lambda m: None)
    manager.save(fake_writer(b"good"), 0, 5, 5)
    (tmp_path / ".epoch0001-step00000010.ckpt.tmp").write_bytes(b"half")
    assert manager.latest_valid().file == "epoch0000-step00000005.ckpt"


def test_unreadable_manifest_means_no_checkpoint(tmp_path: Path) -> None:
    warnings: list[str] = []
    (tmp_path / "manifest.json").write_text("{not json")
    assert CheckpointManager(tmp_path, warn=warnings.append).latest_valid() is None
    assert warnings and "manifest" in warnings[0]


def test_resolve_checkpoint_path_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="not a .ckpt file"):
        resolve_checkpoint_path(tmp_path / "nothing")


def test_partial_writes_are_removed(tmp_path: Path) -> None:
    manager = CheckpointManager(tmp_path, warn=lambda m: None)
    manager.save(fake_writer(b"good"), 0, 5, 5)
    leftover = tmp_path / ".epoch0001-step00000010.ckpt.tmp"
    leftover.write_bytes(b"half")
    assert manager.remove_partial_writes() == [leftover]
    assert not leftover.exists() and (tmp_path / "epoch0000-step00000005.ckpt").exists()
