"""The images this project builds: one Dockerfile per target under docker/."""

from __future__ import annotations

import os
import re
from pathlib import Path

from launcher.images.context import context_files, is_ignored, read_dockerignore

TARGETS = ("ascend", "gpu", "cpu")


def dockerfile_for(context: Path, target: str) -> Path:
    return context / "docker" / f"{target}.Dockerfile"


def copy_sources(dockerfile: Path) -> list[str]:
    """The context paths that COPY/ADD lines (not `--from=` another stage) read."""
    sources = []
    text = re.sub(r"\\\n", " ", dockerfile.read_text())
    for line in text.splitlines():
        words = line.strip().split()
        if not words or words[0].upper() not in ("COPY", "ADD"):
            continue
        args = [w for w in words[1:] if not w.startswith("--")]
        if any(w.startswith("--from") for w in words[1:]) or len(args) < 2:
            continue
        sources.extend(args[:-1])
    return sources


def missing_from_context(context: Path, target: str) -> list[str]:
    """COPY sources of a target's Dockerfile that the context lacks or .dockerignore drops."""
    rules = read_dockerignore(context)
    missing = []
    for src in copy_sources(dockerfile_for(context, target)):
        rel = os.path.normpath(src).lstrip("/")
        path = context / rel
        files = context_files(context)
        usable = path.exists() and not is_ignored(rel, rules)
        if not usable or not any(f == rel or f.startswith(rel + "/") for f in files):
            missing.append(src)
    return missing
