"""Lets resnest/train.py, eval.py and export.py run as files (msrun launches files, not modules).

Run as a file, a script has resnest/ on sys.path (as sys.path[0] with `python resnest/train.py`),
so resnest/*.py would shadow top-level modules of the same name. Each script puts the repository
root first to import this module; `use_repo_root` then takes resnest/ off sys.path.
"""

from __future__ import annotations

import sys
from pathlib import Path


def use_repo_root(script: str) -> None:
    script_dir = Path(script).resolve().parent
    repo_root = str(script_dir.parent)
    kept = [p for p in sys.path if p != repo_root and not (p and Path(p).resolve() == script_dir)]
    sys.path[:] = [repo_root, *kept]
