"""Lets resnest/train.py, eval.py and export.py run as files (msrun launches files, not modules).

Run as a file, a script has resnest/ as sys.path[0], which is where it finds this module, as a
top-level one. `use_repo_root` puts the repository root there instead, so `import resnest...`
works and resnest/*.py files cannot shadow top-level modules of the same name.
"""

from __future__ import annotations

import sys
from pathlib import Path


def use_repo_root(script: str) -> None:
    script_dir = Path(script).resolve().parent
    repo_root = str(script_dir.parent)
    if sys.path and Path(sys.path[0]).resolve() == script_dir:
        sys.path[0] = repo_root
    else:
        sys.path.insert(0, repo_root)
