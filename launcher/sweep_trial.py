"""Run inside one Slurm array task: print its trial's trainer arguments, NUL-terminated.

`python -m launcher.sweep_trial JOB_DIR/trials.json INDEX` reads the trials file that
`rlaunch sweep` wrote (treated as untrusted: the shape is checked, nothing is evaluated) and
writes the arguments of trial INDEX for `mapfile -d ''`, so the values reach the trainer as
separate words and never pass through shell parsing. Exit 1 with one line on stderr otherwise.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def trial_args(document: object, index: int) -> list[str]:
    """The `args` of trial `index` in a parsed trials.json; ValueError naming what is wrong."""
    trials = document.get("trials") if isinstance(document, dict) else None
    if not isinstance(trials, list):
        raise ValueError("it has no list of trials")  # noqa: TRY004 (bad content, not a bug)
    for trial in trials:
        if isinstance(trial, dict) and trial.get("index") == index:
            args = trial.get("args")
            if not isinstance(args, list) or not all(
                    isinstance(a, str) and "\x00" not in a for a in args):
                raise ValueError(f"trial {index} has no list of text arguments")
            return args
    raise ValueError(f"it has no trial {index}")


def main(argv: list[str]) -> int:
    if len(argv) != 2 or not argv[1].isdigit():
        print("usage: python -m launcher.sweep_trial TRIALS_JSON INDEX", file=sys.stderr)
        return 2
    path = Path(argv[0])
    try:
        args = trial_args(json.loads(path.read_text(encoding="utf-8")), int(argv[1]))
    except (OSError, UnicodeDecodeError, ValueError) as err:
        print(f"rlaunch: cannot use {path}: {err}", file=sys.stderr)
        return 1
    sys.stdout.write("".join(f"{a}\0" for a in args))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
