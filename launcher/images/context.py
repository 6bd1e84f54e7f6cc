"""The build context: what .dockerignore lets through, and a version derived from its content."""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class IgnoreRule:
    """One .dockerignore line: a path pattern, `!` re-includes."""

    pattern: str
    negated: bool
    regex: re.Pattern[str]


def _pattern_regex(pattern: str) -> re.Pattern[str]:
    """Docker's matching: `*` and `?` stay inside one path component, `**` crosses them."""
    out = []
    i = 0
    while i < len(pattern):
        c = pattern[i]
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
            continue
        if pattern.startswith("**", i):
            out.append(".*")
            i += 2
            continue
        out.append({"*": "[^/]*", "?": "[^/]"}.get(c, re.escape(c)))
        i += 1
    return re.compile("".join(out) + r"\Z")


def read_dockerignore(context: Path) -> list[IgnoreRule]:
    """Parse CONTEXT/.dockerignore (absent: nothing is ignored)."""
    path = context / ".dockerignore"
    if not path.is_file():
        return []
    rules = []
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negated = line.startswith("!")
        pattern = os.path.normpath(line[1:].strip() if negated else line).lstrip("/")
        rules.append(IgnoreRule(pattern, negated, _pattern_regex(pattern)))
    return rules


def is_ignored(relpath: str, rules: Iterable[IgnoreRule]) -> bool:
    """A path is ignored if the last rule matching it (or a folder above it) excludes it."""
    parts = relpath.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    ignored = False
    for rule in rules:
        if any(rule.regex.match(p) for p in prefixes):
            ignored = not rule.negated
    return ignored


def _may_reinclude(dir_relpath: str, rules: list[IgnoreRule]) -> bool:
    """Whether some `!` rule could bring back a path under an ignored folder (else prune it)."""
    for rule in rules:
        if not rule.negated:
            continue
        literal = re.split(r"[*?\[]", rule.pattern, maxsplit=1)[0]
        if literal.startswith(dir_relpath + "/") or dir_relpath.startswith(literal.rstrip("/")):
            return True
        if not literal or rule.pattern.startswith("**"):
            return True
    return False


def context_files(context: Path) -> list[str]:
    """Relative paths (sorted, '/'-separated) of the files the builder would receive."""
    rules = read_dockerignore(context)
    found = []
    for dirpath, dirnames, filenames in os.walk(context):
        rel_dir = os.path.relpath(dirpath, context)
        rel_dir = "" if rel_dir == "." else rel_dir.replace(os.sep, "/")
        kept = []
        for name in sorted(dirnames):
            rel = f"{rel_dir}/{name}" if rel_dir else name
            if not is_ignored(rel, rules) or _may_reinclude(rel, rules):
                kept.append(name)
        dirnames[:] = kept
        for name in filenames:
            rel = f"{rel_dir}/{name}" if rel_dir else name
            if not is_ignored(rel, rules):
                found.append(rel)
    return sorted(found)


def content_version(
    context: Path, dockerfile: Path, build_args: Mapping[str, str], prefix: str = ""
) -> str:
    """`<prefix>-<12 hex>` over the context files, the Dockerfile and the build arguments."""
    digest = hashlib.sha256()
    for rel in context_files(context):
        digest.update(rel.encode() + b"\0")
        digest.update(hashlib.sha256((context / rel).read_bytes()).digest())
    digest.update(b"dockerfile\0" + dockerfile.read_bytes())
    digest.update(json.dumps(dict(sorted(build_args.items()))).encode())
    short = digest.hexdigest()[:12]
    return f"{prefix}-{short}" if prefix else short


def git_revision(context: Path) -> str:
    """The commit the context comes from, `-dirty` when the image's files differ from it."""
    try:
        rev = subprocess.run(
            ["git", "-C", str(context), "rev-parse", "HEAD"],
            capture_output=True, text=True, check=True, timeout=30,
        ).stdout.strip()
        tops = sorted({f.split("/")[0] for f in context_files(context)})
        dirty = subprocess.run(
            ["git", "-C", str(context), "status", "--porcelain", "--", *tops],
            capture_output=True, text=True, check=True, timeout=30,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return f"{rev}-dirty" if dirty else rev
