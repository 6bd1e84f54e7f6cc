"""The README and docs/ stay true: every relative link resolves, and the README's commands exist."""

from __future__ import annotations

import importlib.util
import re
import shlex
from pathlib import Path

import click
import pytest

from launcher.cli import COMMANDS, cli

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), ROOT / "benchmarks" / "RESULTS.md"]
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def github_anchor(heading: str) -> str:
    """The id GitHub gives a heading: lowercase, punctuation dropped, spaces to '-'."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def anchors_of(page: Path) -> set[str]:
    return {github_anchor(line.lstrip("#")) for line in page.read_text().splitlines()
            if line.startswith("#")}


def relative_links(page: Path) -> list[str]:
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.DOTALL)
    return [t for t in LINK.findall(text) if not re.match(r"[a-z]+:", t)]


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_resolves(page: Path) -> None:
    broken = []
    for target in relative_links(page):
        path_part, _, anchor = target.partition("#")
        dest = (page.parent / path_part).resolve() if path_part else page
        if not dest.exists():
            broken.append(f"{target}: no such file")
        elif anchor and dest.suffix == ".md" and anchor not in anchors_of(dest):
            broken.append(f"{target}: no heading #{anchor} in {dest.name}")
    assert not broken, f"{page.name}: " + "; ".join(broken)


def test_readme_stays_a_front_door() -> None:
    assert len((ROOT / "README.md").read_text().splitlines()) <= 200


def readme_shell_lines() -> list[str]:
    """Commands in the README's bash blocks, continuation lines joined, comments dropped."""
    blocks = re.findall(r"```bash\n(.*?)```", (ROOT / "README.md").read_text(), flags=re.DOTALL)
    lines = []
    for block in blocks:
        joined = block.replace("\\\n", " ")
        for line in joined.splitlines():
            line = line.split(" #", 1)[0].strip()
            if line and not line.startswith("#"):
                lines.extend(part.strip() for part in line.split(";") if part.strip())
    return lines


def rlaunch_invocations() -> list[list[str]]:
    calls = []
    for line in readme_shell_lines():
        line = re.sub(r"^\w+=\$\((.*)\)$", r"\1", line)  # job=$(rlaunch submit ...)
        words = shlex.split(line)
        if words and words[0] == "rlaunch":
            calls.append(words[1:])
    return calls


def test_readme_has_rlaunch_examples() -> None:
    assert len(rlaunch_invocations()) >= 6


@pytest.mark.parametrize("argv", rlaunch_invocations(), ids=lambda a: " ".join(a[:3]))
def test_readme_rlaunch_commands_and_flags_exist(argv: list[str]) -> None:
    name = argv[0]
    assert name in COMMANDS, f"rlaunch {name} is not a command"
    command = cli.get_command(click.Context(cli), name)
    assert command is not None
    flags = {opt for p in command.params for opt in (*p.opts, *p.secondary_opts)}
    used = {w.split("=", 1)[0] for w in argv[1:] if w.startswith("--")}
    assert used <= flags, f"rlaunch {name}: unknown flags {sorted(used - flags)}"


def test_readme_scripts_and_modules_exist() -> None:
    for line in readme_shell_lines():
        words = shlex.split(line)
        if words[:1] == ["bash"]:
            assert (ROOT / words[1]).is_file(), words[1]
    for module in re.findall(r"python -m ([\w.]+)", (ROOT / "README.md").read_text()):
        assert importlib.util.find_spec(module) is not None, module
