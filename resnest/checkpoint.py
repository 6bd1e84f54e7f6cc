"""Crash-safe checkpoints in OUT/checkpoints/ with a manifest.

Each checkpoint is written to a temporary file, fsynced, hashed and renamed into place; only then
does the manifest (itself replaced atomically) name it. A process killed at any point therefore
leaves the previous manifest and checkpoint intact. On resume, entries whose file is missing or
whose SHA-256 does not match are skipped with a warning. `last.ckpt` / `best.ckpt` are hard links
to the newest / highest-top-1 checkpoint, and the manifest's "last" / "best" name them too.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from resnest.contract import (
    BEST_CHECKPOINT,
    CHECKPOINT_MANIFEST,
    CHECKPOINTS_DIR,
    LAST_CHECKPOINT,
)

# Fault injection for the crash test: seconds to sleep between writing the temporary file and
# renaming it, so a test can kill -9 the process while a checkpoint write is in flight.
WRITE_DELAY_ENV = "RESNEST_FAULT_CKPT_WRITE_DELAY_S"


@dataclass
class CheckpointEntry:
    file: str  # name inside the checkpoints folder
    epoch: int  # epoch being trained when saved (0-based)
    step: int  # steps of that epoch already done; == steps_per_epoch at an epoch's end
    global_step: int
    sha256: str
    time: float
    top1: float | None = None


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_json_atomic(path: Path, data: Any) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w") as f:
        json.dump(data, f, indent=2)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _link_atomic(target: Path, link: Path) -> None:
    tmp = link.with_name(f".{link.name}.tmp")
    tmp.unlink(missing_ok=True)
    os.link(target, tmp)
    os.replace(tmp, link)


class CheckpointManager:
    """Writes, lists, validates and prunes the checkpoints of one run."""

    def __init__(self, folder: str | Path, keep: int = 3, warn: Callable[[str], None] = print) -> None:
        self.folder = Path(folder)
        self.keep = keep
        self.warn = warn

    @property
    def manifest_path(self) -> Path:
        return self.folder / CHECKPOINT_MANIFEST

    def read_manifest(self) -> dict[str, Any]:
        if not self.manifest_path.exists():
            return {"checkpoints": [], "last": None, "best": None}
        try:
            data = json.loads(self.manifest_path.read_text())
            data["checkpoints"] = [CheckpointEntry(**e) for e in data.get("checkpoints", [])]
            return data
        except (ValueError, TypeError) as exc:
            self.warn(f"warning: ignoring unreadable checkpoint manifest {self.manifest_path}: {exc}")
            return {"checkpoints": [], "last": None, "best": None}

    def save(self, write: Callable[[str], None], epoch: int, step: int, global_step: int,
             top1: float | None = None) -> CheckpointEntry:
        """Call `write(tmp_path)` (e.g. mindspore.save_checkpoint) and publish the result."""
        self.folder.mkdir(parents=True, exist_ok=True)
        name = f"epoch{epoch:04d}-step{global_step:08d}.ckpt"
        final = self.folder / name
        tmp = self.folder / f".{name}.tmp"
        write(str(tmp))
        written = tmp if tmp.exists() else Path(f"{tmp}.ckpt")  # some writers append .ckpt
        # save_checkpoint leaves the file 0400; fsync works on a read-only descriptor too.
        with open(written, "rb") as f:
            os.fsync(f.fileno())
        delay = float(os.environ.get(WRITE_DELAY_ENV, "0") or 0)
        if delay > 0:
            time.sleep(delay)
        entry = CheckpointEntry(name, epoch, step, global_step, sha256_of(written), time.time(), top1)
        os.replace(written, final)
        _fsync_dir(self.folder)

        manifest = self.read_manifest()
        entries: list[CheckpointEntry] = [e for e in manifest["checkpoints"] if e.file != name]
        entries.append(entry)
        best = manifest.get("best")
        best_entry = next((e for e in entries if e.file == best), None)
        if top1 is not None and (best_entry is None or best_entry.top1 is None
                                 or top1 >= best_entry.top1):
            best = name
        removed = self._prune(entries, keep_also=best)
        entries = [e for e in entries if e not in removed]
        if best not in {e.file for e in entries}:
            best = None
        _link_atomic(final, self.folder / LAST_CHECKPOINT)
        if best is not None:
            _link_atomic(self.folder / best, self.folder / BEST_CHECKPOINT)
        _write_json_atomic(self.manifest_path, {
            "checkpoints": [asdict(e) for e in entries], "last": name, "best": best,
        })
        for e in removed:
            (self.folder / e.file).unlink(missing_ok=True)
        return entry

    def _prune(self, entries: list[CheckpointEntry], keep_also: str | None) -> list[CheckpointEntry]:
        newest_first = sorted(entries, key=lambda e: e.global_step, reverse=True)
        kept = newest_first[: self.keep]
        return [e for e in newest_first[self.keep:] if e.file != keep_also and e not in kept]

    def mark_best(self, top1: float) -> None:
        """Record the eval top-1 of the newest checkpoint and move `best` if it improved."""
        manifest = self.read_manifest()
        entries: list[CheckpointEntry] = manifest["checkpoints"]
        if not entries or manifest.get("last") is None:
            return
        last = next((e for e in entries if e.file == manifest["last"]), None)
        if last is None:
            return
        last.top1 = top1
        best = next((e for e in entries if e.file == manifest.get("best")), None)
        if best is None or best.top1 is None or top1 >= best.top1:
            manifest["best"] = last.file
            _link_atomic(self.folder / last.file, self.folder / BEST_CHECKPOINT)
        _write_json_atomic(self.manifest_path, {
            "checkpoints": [asdict(e) for e in entries], "last": manifest["last"],
            "best": manifest["best"],
        })

    def remove_partial_writes(self) -> list[Path]:
        """Delete temporary files a killed writer left behind; they were never published."""
        if not self.folder.is_dir():
            return []
        leftovers = [p for p in self.folder.glob(".*.tmp*") if p.is_file()]
        for path in leftovers:
            self.warn(f"warning: removing partial checkpoint write {path}")
            path.unlink(missing_ok=True)
        return leftovers

    def latest_valid(self) -> CheckpointEntry | None:
        """Newest checkpoint whose file exists and matches its recorded checksum."""
        entries = sorted(self.read_manifest()["checkpoints"], key=lambda e: e.global_step, reverse=True)
        for entry in entries:
            path = self.folder / entry.file
            if not path.exists():
                self.warn(f"warning: checkpoint {path} is missing; trying an older one")
                continue
            if sha256_of(path) != entry.sha256:
                self.warn(f"warning: checkpoint {path} is corrupt (checksum mismatch); "
                          "trying an older one")
                continue
            return entry
        return None


def resolve_checkpoint_path(path: str | Path) -> Path:
    """A .ckpt file, or a run/checkpoints folder (its manifest's best, else last)."""
    path = Path(path)
    if path.is_file():
        return path
    for folder in (path / CHECKPOINTS_DIR, path):
        manifest = folder / CHECKPOINT_MANIFEST
        if manifest.exists():
            data = json.loads(manifest.read_text())
            name = data.get("best") or data.get("last")
            if name and (folder / name).exists():
                return folder / name
    raise FileNotFoundError(f"checkpoint {str(path)!r} is not a .ckpt file nor a run folder "
                            "with checkpoints/manifest.json")
