"""Templates ship inside the package: a normal (non-editable) install finds and renders them."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from launcher.templating import templates_dir

REPO = Path(__file__).resolve().parents[2]


def test_templates_dir_in_checkout_has_every_template() -> None:
    for name in ("slurm/sbatch.sh.j2", "local/run.sh.j2", "ascend/rank_table.json.j2"):
        assert (templates_dir() / name).is_file()


@pytest.mark.integration
def test_non_editable_install_renders_templates(tmp_path: Path) -> None:
    source = tmp_path / "src"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, source / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info")
    for name in ("launcher", "resnest", "templates"):
        shutil.copytree(REPO / name, source / name, symlinks=True, ignore=ignore)
    target = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
         "--disable-pip-version-check", "--target", str(target), str(source)],
        check=True, capture_output=True, timeout=600, cwd=tmp_path,
    )
    installed = target / "launcher" / "templates"
    assert (installed / "slurm" / "sbatch.sh.j2").is_file() and not installed.is_symlink()
    code = (
        "import launcher, sys\n"
        "from launcher.backends import get_backend\n"
        "from launcher.spec import JobSpec\n"
        "from launcher.templating import templates_dir\n"
        "spec = JobSpec(backend='slurm', device_kind='gpu', devices_per_node=8, data_dir='/d',"
        " output_dir='/o', code_dir='/c', python='/p/bin/python')\n"
        "print(launcher.__file__)\nprint(templates_dir())\n"
        "slurm = get_backend('slurm')\n"
        "print(slurm.render(spec, slurm.options_of(spec)).files['sbatch.sh'].count('#SBATCH'))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True,
        cwd=tmp_path, env={"PYTHONPATH": str(target), "PATH": "/usr/bin:/bin"},
    ).stdout.splitlines()
    assert out[0].startswith(str(target)) and out[1].startswith(str(target))
    assert int(out[2]) >= 5
